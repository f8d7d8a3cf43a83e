// The GPU cost model's counter: an Ops that forwards every call to another and counts what the
// call costs a GPU, the same for every backend (so that the host-float engine measures on a CPU
// what the CUDA engine will issue): floating-point operations, bytes of device memory read and
// written (each array once, float32 coefficients and double bounds as the engine stores them),
// one kernel launch per call and per upload, one host wait per download or synchronization.
// bench/RESULTS.md turns the counts into a time on an H200. With CNNCERT_COST_BREAKDOWN set in the
// environment, the counts per primitive are printed to stderr when the engine is destroyed.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "engine/batched_engine.hpp"

namespace cnncert::batched {
namespace {

constexpr double kF = sizeof(float), kD = sizeof(double), kI = sizeof(int64_t);

class MeteredOps final : public Ops {
 public:
  explicit MeteredOps(std::unique_ptr<Ops> inner) : in_(std::move(inner)) {}
  ~MeteredOps() override {
    if (!breakdown_) return;
    for (const auto& [name, c] : by_primitive_)
      std::fprintf(stderr, "cost model: %-24s %10.4g GFLOP %10.4g GB %8lld launches %6lld waits\n", name.c_str(),
                   c.flops / 1e9, c.bytes / 1e9, static_cast<long long>(c.launches), static_cast<long long>(c.syncs));
  }

  std::string name() const override { return in_->name(); }
  size_t memory_budget() const override { return in_->memory_budget(); }
  void* alloc(size_t bytes) override { return in_->alloc(bytes); }
  void release(void* p) noexcept override { in_->release(p); }

  void to_device(void* dst, const void* src, size_t bytes) override {
    count(0, static_cast<double>(bytes), "to_device");
    in_->to_device(dst, src, bytes);
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    ++c_.syncs;
    c_.bytes += static_cast<double>(bytes);
    tally("to_host", 0, static_cast<double>(bytes), 0, 1);
    in_->to_host(dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    count(0, 2.0 * static_cast<double>(bytes), "copy");
    in_->copy(dst, src, bytes);
  }
  void zero(void* dst, size_t bytes) override {
    count(0, static_cast<double>(bytes), "zero");
    in_->zero(dst, bytes);
  }

  void conv_back(const ConvGeom& g, int64_t rows, const float* w, const float* a, float* out) override {
    const double r = static_cast<double>(rows), in = static_cast<double>(g.cin * g.hin * g.win),
                 out_n = static_cast<double>(g.cout * g.hout * g.wout),
                 taps = static_cast<double>(g.cin / g.groups * g.kk());
    count(conv_back_flops(g, rows), kF * (r * (in + out_n) + out_n / static_cast<double>(g.hout * g.wout) * taps),
          "conv_back");
    in_->conv_back(g, rows, w, a, out);
  }
  void dense_back(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a, float* out) override {
    const double r = static_cast<double>(rows), o = static_cast<double>(n_out), i = static_cast<double>(n_in);
    count(2 * r * o * i, kF * (r * (o + i) + o * i), "dense_back");
    in_->dense_back(rows, n_out, n_in, w, a, out);
  }
  void elementwise_back(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div,
                        const float* al, const float* bl, const float* au, const float* bu, double* bias,
                        const float* then_bias, int64_t then_div) override {
    const double n = 2.0 * static_cast<double>(half) * static_cast<double>(size);
    // The row (read, and written when relaxed), each parameter array once per problem, the bias;
    // the fused bias pass of the node below reads its (shared) bias once more.
    const double per_problem = std::min(stride ? static_cast<double>(stride) : 1e300, ceil_div(size, div));
    const double then_params = then_bias ? ceil_div(size, then_div) : 0;
    count((then_bias ? 6 : 3) * n,
          kF * (n * (al ? 2 : 1) + arrays(al, bl, au, bu) * problems_of(half, stride) * per_problem + then_params) +
              4 * kD * static_cast<double>(half),
          "elementwise_back");
    in_->elementwise_back(half, size, a, prob, stride, div, al, bl, au, bu, bias, then_bias, then_div);
  }
  void pool_back(const PoolGeom& g, int64_t half, const int* prob, int64_t stride, const float* slopes, const float* a,
                 float* out) override {
    const double r = 2.0 * static_cast<double>(half), o = static_cast<double>(g.out_size());
    count(
        2 * r * o * static_cast<double>(g.kk()),
        kF * (r * (static_cast<double>(g.in_size()) + o) + problems_of(half, stride) * o * static_cast<double>(g.kk())),
        "pool_back");
    in_->pool_back(g, half, prob, stride, slopes, a, out);
  }
  void conv_back_window(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org, const float* wt,
                        const float* a, float* out) override {
    const Cost c = conv_window_cost(g, half, h, w);
    count(c.flops, c.bytes, "conv_back_window");
    in_->conv_back_window(g, half, h, w, org, wt, a, out);
  }
  void conv_back_window_relax(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                              const float* wt, const float* a, const WinGeom& out_wg, const int64_t* out_org,
                              float* out, const RelaxStep& rx) override {
    // The two calls' counts less the relaxation's read and write of the rows (the convolution
    // writes the relaxed values).
    const Cost c = conv_window_cost(g, half, h, w),
               e = elementwise_window_cost(out_wg, half, rx.stride, rx.div, rx.al, rx.bl, rx.au, rx.bu, rx.then_bias,
                                           rx.then_div);
    const double n = 2.0 * static_cast<double>(half) * static_cast<double>(out_wg.size());
    count(c.flops + e.flops, c.bytes + e.bytes - kF * n * (rx.al ? 2 : 1), "conv_back_window_relax");
    in_->conv_back_window_relax(g, half, h, w, org, wt, a, out_wg, out_org, out, rx);
  }
  void pool_back_window(const PoolGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org, const int* prob,
                        int64_t stride, const float* slopes, const float* a, float* out) override {
    const double r = 2.0 * static_cast<double>(half), o = static_cast<double>(g.c * h * w);
    count(2 * r * o * static_cast<double>(g.kk()),
          kF * (r * (static_cast<double>(g.c * g.span_y(h) * g.span_x(w)) + o) +
                std::min(problems_of(half, stride) * static_cast<double>(g.out_size()), static_cast<double>(half) * o) *
                    static_cast<double>(g.kk())),
          "pool_back_window");  // the rows; each problem's slopes once, at most those of its rows' windows
    in_->pool_back_window(g, half, h, w, org, prob, stride, slopes, a, out);
  }
  void elementwise_back_window(const WinGeom& wg, int64_t half, const int64_t* org, float* a, const int* prob,
                               int64_t stride, int64_t div, const float* al, const float* bl, const float* au,
                               const float* bu, double* bias, const float* then_bias, int64_t then_div) override {
    const Cost c = elementwise_window_cost(wg, half, stride, div, al, bl, au, bu, then_bias, then_div);
    count(c.flops, c.bytes, "elementwise_back_window");
    in_->elementwise_back_window(wg, half, org, a, prob, stride, div, al, bl, au, bu, bias, then_bias, then_div);
  }
  void window_to_dense(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, float* out) override {
    const double r = 2.0 * static_cast<double>(half);
    count(0, kF * r * static_cast<double>(2 * wg.size() + wg.c * wg.map_h * wg.map_w),
          "window_to_dense");                             // zero, read, write
    ++c_.launches, tally("window_to_dense", 0, 0, 1, 0);  // the zeroing and the scatter
    in_->window_to_dense(wg, half, org, a, out);
  }
  void add(int64_t n, const float* x, float* y) override {
    count(static_cast<double>(n), 3 * kF * static_cast<double>(n), "add");
    in_->add(n, x, y);
  }
  void gather(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a, float* out) override {
    count(0, kF * static_cast<double>(rows) * static_cast<double>(n_out + n_in) + kI * static_cast<double>(n_in),
          "gather");
    in_->gather(rows, n_out, n_in, inv, a, out);
  }
  void identity(int64_t half, int64_t size, const int64_t* pos, float* out) override {
    count(0, kF * 2.0 * static_cast<double>(half) * static_cast<double>(size) + kI * static_cast<double>(half),
          "identity");
    ++c_.launches, tally("identity", 0, 0, 1, 0);  // the zeroing and the ones
    in_->identity(half, size, pos, out);
  }
  void concretize(int64_t half, int64_t n, const float* a, const int* prob, const double* x0, const double* x_hi,
                  const double* eps, RegionNorm norm, const double* bias, double* upper, double* lower) override {
    const double e = 2.0 * static_cast<double>(half) * static_cast<double>(n);
    // The rows, and each problem's centre (or box corners) once.
    count(4 * e, kF * e + kD * problems_of(half, 1) * static_cast<double>(n) * (norm == RegionNorm::Box ? 2 : 1),
          "concretize");
    in_->concretize(half, n, a, prob, x0, x_hi, eps, norm, bias, upper, lower);
  }
  void concretize_window(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, const int* prob,
                         const double* x0, const double* x_hi, const double* eps, RegionNorm norm, const double* bias,
                         double* upper, double* lower) override {
    const double e = 2.0 * static_cast<double>(half) * static_cast<double>(wg.size());
    const double n = static_cast<double>(wg.c * wg.map_h * wg.map_w);
    // The windows, and of each problem's centre (or box corners) at most the map or the windows.
    const double centres = std::min(problems_of(half, 1) * n, static_cast<double>(half * wg.size()));
    count(4 * e, kF * e + kD * centres * (norm == RegionNorm::Box ? 2 : 1) + kI * static_cast<double>(half),
          "concretize_window");
    in_->concretize_window(wg, half, org, a, prob, x0, x_hi, eps, norm, bias, upper, lower);
  }
  void relax_activation(int64_t count_n, const ActSpec& s, const double* lo, const double* hi, float* al, float* bl,
                        float* au, float* bu) override {
    count(20 * static_cast<double>(count_n), (2 * kD + 4 * kF) * static_cast<double>(count_n), "relax_activation");
    in_->relax_activation(count_n, s, lo, hi, al, bl, au, bu);
  }
  void activation_bounds(int64_t count_n, const ActSpec& s, const double* lo, const double* hi, double* out_lo,
                         double* out_hi) override {
    count(4 * static_cast<double>(count_n), 4 * kD * static_cast<double>(count_n), "activation_bounds");
    in_->activation_bounds(count_n, s, lo, hi, out_lo, out_hi);
  }
  void relax_maxpool(const PoolGeom& g, int64_t problems, const double* lo, const double* hi, float* slopes,
                     float* beta_u, float* beta_l) override {
    const double p = static_cast<double>(problems), o = static_cast<double>(g.out_size()),
                 kk = static_cast<double>(g.kk());
    count(10 * p * o * kk, p * (2 * kD * static_cast<double>(g.in_size()) + kF * o * (kk + 2)), "relax_maxpool");
    in_->relax_maxpool(g, problems, lo, hi, slopes, beta_u, beta_l);
  }
  void interval(const IntervalStep& s, int64_t problems, const double* lo, const double* hi, const double* lo2,
                const double* hi2, double* out_lo, double* out_hi) override {
    const double p = static_cast<double>(problems), o = static_cast<double>(s.n_out);
    double taps = 1;  // terms per output element
    if (s.op == IntervalOp::Conv) taps = static_cast<double>(s.conv.cin / s.conv.groups * s.conv.kk());
    if (s.op == IntervalOp::Dense) taps = static_cast<double>(s.n_in);
    if (s.op == IntervalOp::MaxPool || s.op == IntervalOp::AvgPool) taps = static_cast<double>(s.pool.kk());
    const double weights = s.op == IntervalOp::Dense  ? o * taps
                           : s.op == IntervalOp::Conv ? o / static_cast<double>(s.conv.hout * s.conv.wout) * taps
                                                      : 0;
    count(8 * p * o * taps, 2 * kD * p * (static_cast<double>(s.n_in) + o * (lo2 ? 2 : 1)) + kF * weights, "interval");
    in_->interval(s, problems, lo, hi, lo2, hi2, out_lo, out_hi);
  }
  void select_rows(int64_t count_n, SkipLevel level, const double* lo, const double* hi, const double* outer_lo,
                   const double* outer_hi, double* out_lo, double* out_hi, unsigned char* mask) override {
    const double n = static_cast<double>(count_n);
    count(6 * n, n * (kD * (outer_lo ? 6 : 4) + 1), "select_rows");
    in_->select_rows(count_n, level, lo, hi, outer_lo, outer_hi, out_lo, out_hi, mask);
  }
  void scatter(int64_t n, const int64_t* idx, const double* src, double* dst) override {
    count(0, static_cast<double>(n) * (kI + 2 * kD), "scatter");
    in_->scatter(n, idx, src, dst);
  }
  void flag_nonfinite(int64_t problems, int64_t size, const double* lo, const double* hi, int code,
                      int* flags) override {
    const double n = static_cast<double>(problems) * static_cast<double>(size);
    count(2 * n, 2 * kD * n, "flag_nonfinite");
    in_->flag_nonfinite(problems, size, lo, hi, code, flags);
  }

  void set_problems(int64_t problems) override {
    problems_ = problems;
    in_->set_problems(problems);
  }
  double backsub_flops() const override { return in_->backsub_flops(); }
  PathCounts path_counts() const override { return in_->path_counts(); }
  CostCounts cost_counts() const override { return c_; }

 private:
  struct Cost {
    double flops, bytes;
  };
  /// conv_back_window: the rows read and written, the weights, the origins.
  static Cost conv_window_cost(const ConvGeom& g, int64_t half, int64_t h, int64_t w) {
    const double r = 2.0 * static_cast<double>(half), out_n = static_cast<double>(g.cout * h * w),
                 in = static_cast<double>(g.cin * g.span_y(h) * g.span_x(w)),
                 taps = static_cast<double>(g.cin / g.groups * g.kk());
    return {conv_back_window_flops(g, half, h, w),
            kF * (r * (in + out_n) + static_cast<double>(g.cout) * taps) + kI * r};
  }
  /// elementwise_back_window: as elementwise_back, and the origins (2 per row of the upper half);
  /// a problem's parameters read are at most its map's or its rows' windows'.
  Cost elementwise_window_cost(const WinGeom& wg, int64_t half, int64_t stride, int64_t div, const float* al,
                               const float* bl, const float* au, const float* bu, const float* then_bias,
                               int64_t then_div) const {
    const double n = 2.0 * static_cast<double>(half) * static_cast<double>(wg.size());
    const double map = ceil_div(wg.c * wg.map_h * wg.map_w, div),
                 per_problem = stride ? std::min(static_cast<double>(stride), map) : map;
    // (each row element reads at most one value of each array)
    const double params = std::min(problems_of(half, stride) * per_problem, static_cast<double>(half * wg.size()));
    const double then_params =
        then_bias ? std::min(ceil_div(wg.c * wg.map_h * wg.map_w, then_div), static_cast<double>(half * wg.size())) : 0;
    return {(then_bias ? 6 : 3) * n, kF * (n * (al ? 2 : 1) + arrays(al, bl, au, bu) * params + then_params) +
                                         (4 * kD + 2 * kI) * static_cast<double>(half)};
  }
  void count(double flops, double bytes, const char* primitive) {
    c_.flops += flops, c_.bytes += bytes;
    ++c_.launches;
    tally(primitive, flops, bytes, 1, 0);
  }
  /// The per-primitive counts, kept only for CNNCERT_COST_BREAKDOWN (a map lookup per call).
  void tally(const char* primitive, double flops, double bytes, int64_t launches, int64_t syncs) {
    if (!breakdown_) return;
    CostCounts& t = by_primitive_[primitive];
    t.flops += flops, t.bytes += bytes, t.launches += launches, t.syncs += syncs;
  }
  /// The problems whose per-problem arrays (stride > 0; else one shared array) a call of `half`
  /// rows per pass reads: at most the call's problems (set_problems) and at most its rows.
  double problems_of(int64_t half, int64_t stride) const {
    if (!stride) return 1;
    return static_cast<double>(problems_ > 0 ? std::min(problems_, half) : half);
  }
  /// The distinct parameter arrays an element-wise pass reads (ScaleShift passes one array twice).
  static double arrays(const float* al, const float* bl, const float* au, const float* bu) {
    const float* seen[4] = {al, bl, au, bu};
    double n = 0;
    for (int i = 0; i < 4; ++i)
      if (seen[i] && std::find(seen, seen + i, seen[i]) == seen + i) ++n;
    return n;
  }
  static double ceil_div(int64_t a, int64_t b) { return static_cast<double>((a + b - 1) / std::max<int64_t>(b, 1)); }
  std::unique_ptr<Ops> in_;
  CostCounts c_;
  int64_t problems_ = 0;  // set_problems; 0 = unknown (every row its own problem)
  const bool breakdown_ = std::getenv("CNNCERT_COST_BREAKDOWN") != nullptr;
  std::map<std::string, CostCounts> by_primitive_;
};

}  // namespace

std::unique_ptr<Ops> make_metered_ops(std::unique_ptr<Ops> inner) {
  return std::make_unique<MeteredOps>(std::move(inner));
}

}  // namespace cnncert::batched
