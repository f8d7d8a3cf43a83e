// The batched engine's primitive operations on the CPU, in float32 like the GPU: the same
// element bodies (batched_kernels.hpp) the CUDA kernels call, in plain loops. Lets the CPU tests
// run the GPU engine's algorithm (chunking, batching, stacking, layouts) against the double
// precision reference engine. Convolutions and GEMMs are direct loops here; on the GPU they are
// cuDNN and cuBLAS calls, compared with these in the GPU tests.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cnncert/error.hpp"
#include "engine/batched_engine.hpp"

namespace cnncert::batched {
namespace {

class HostOps final : public Ops {
 public:
  explicit HostOps(size_t budget) : budget_(budget) {}
  std::string name() const override { return "host-float"; }
  size_t memory_budget() const override { return budget_; }

  void* alloc(size_t bytes) override {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }

  double backsub_flops() const override { return flops_; }

  void conv_back(const ConvGeom& g, int64_t rows, const float* w, const float* a, float* out) override {
    flops_ += conv_back_flops(g, rows);
    const int64_t in_size = g.cin * g.hin * g.win, out_size = g.cout * g.hout * g.wout;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t ci = 0; ci < g.cin; ++ci)
        for (int64_t y = 0; y < g.hin; ++y)
          for (int64_t x = 0; x < g.win; ++x)
            out[r * in_size + (ci * g.hin + y) * g.win + x] = conv_back_elem(g, a + r * out_size, w, ci, y, x);
  }

  void dense_back(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a, float* out) override {
    flops_ += 2.0 * static_cast<double>(rows) * static_cast<double>(n_out) * static_cast<double>(n_in);
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out + r * n_in;
      for (int64_t i = 0; i < n_in; ++i) o[i] = 0;
      for (int64_t k = 0; k < n_out; ++k) {
        const float v = a[r * n_out + k];
        if (v == 0) continue;
        const float* wk = w + k * n_in;
        for (int64_t i = 0; i < n_in; ++i) o[i] += v * wk[i];
      }
    }
  }

  void elementwise_back(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div,
                        const float* al, const float* bl, const float* au, const float* bu, double* bias,
                        const float* then_bias, int64_t then_div) override {
    for (int64_t r = 0; r < 2 * half; ++r) {
      const int64_t base = prob[r % half] * stride;
      const bool upper = r < half;
      double sum = 0, then_sum = 0;
      float* row = a + r * size;
      for (int64_t j = 0; j < size; ++j) {
        sum += elementwise_elem(row[j], upper, al, bl, au, bu, base + j / div);
        if (then_bias)
          then_sum += elementwise_elem(row[j], upper, nullptr, then_bias, nullptr, then_bias, j / then_div);
      }
      bias[r] += sum;
      if (then_bias) bias[r] += then_sum;
    }
  }

  void pool_back(const PoolGeom& g, int64_t half, const int* prob, int64_t stride, const float* slopes, const float* a,
                 float* out) override {
    const int64_t in_size = g.in_size(), out_size = g.out_size();
    for (int64_t r = 0; r < 2 * half; ++r) {
      const float* sl = slopes + prob[r % half] * stride;
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t y = 0; y < g.hin; ++y)
          for (int64_t x = 0; x < g.win; ++x)
            out[r * in_size + (c * g.hin + y) * g.win + x] = pool_back_elem(g, a + r * out_size, sl, c, y, x);
    }
  }

  void conv_back_window(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org, const float* wt,
                        const float* a, float* out) override {
    const int64_t in_size = g.cin * g.span_y(h) * g.span_x(w), out_size = g.cout * h * w;
    flops_ += conv_back_window_flops(g, half, h, w);
    for (int64_t r = 0; r < 2 * half; ++r)
      conv_window_row(g, h, w, org[2 * (r % half)], org[2 * (r % half) + 1], a + r * out_size, wt, out + r * in_size);
  }

  void pool_back_window(const PoolGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org, const int* prob,
                        int64_t stride, const float* slopes, const float* a, float* out) override {
    const int64_t ih = g.span_y(h), iw = g.span_x(w), in_size = g.c * ih * iw, out_size = g.c * h * w;
    for (int64_t r = 0; r < 2 * half; ++r) {
      const int64_t y0 = org[2 * (r % half)], x0 = org[2 * (r % half) + 1];
      const float* sl = slopes + prob[r % half] * stride;
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t y = 0; y < ih; ++y)
          for (int64_t x = 0; x < iw; ++x)
            out[r * in_size + (c * ih + y) * iw + x] =
                pool_back_window_elem(g, h, w, y0, x0, a + r * out_size, sl, c, y, x);
    }
  }

  void conv_back_window_relax(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                              const float* wt, const float* a, const WinGeom& out_wg, const int64_t* out_org,
                              float* out, const RelaxStep& rx) override {
    // Row by row: the row's convolution, then its relaxation while the row is still in cache.
    CNNCERT_ASSERT(out_wg.c == g.cin && out_wg.h == g.span_y(h) && out_wg.w == g.span_x(w) && out_wg.map_h == g.hin &&
                   out_wg.map_w == g.win);
    const int64_t out_size = g.cout * h * w;
    flops_ += conv_back_window_flops(g, half, h, w);
    for (int64_t r = 0; r < 2 * half; ++r) {
      conv_window_row(g, h, w, org[2 * (r % half)], org[2 * (r % half) + 1], a + r * out_size, wt,
                      out + r * out_wg.size());
      relax_window_row(out_wg, half, r, out_org, out, rx.prob, rx.stride, rx.div, rx.al, rx.bl, rx.au, rx.bu, rx.bias,
                       rx.then_bias, rx.then_div);
    }
  }

  void elementwise_back_window(const WinGeom& wg, int64_t half, const int64_t* org, float* a, const int* prob,
                               int64_t stride, int64_t div, const float* al, const float* bl, const float* au,
                               const float* bu, double* bias, const float* then_bias, int64_t then_div) override {
    for (int64_t r = 0; r < 2 * half; ++r)
      relax_window_row(wg, half, r, org, a, prob, stride, div, al, bl, au, bu, bias, then_bias, then_div);
  }

  void window_to_dense(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, float* out) override {
    const int64_t size = wg.size(), dense = wg.c * wg.map_h * wg.map_w;
    std::memset(out, 0, static_cast<size_t>(2 * half * dense) * sizeof(float));
    for (int64_t r = 0; r < 2 * half; ++r)
      for (int64_t e = 0; e < size; ++e) {
        const int64_t m = wg.map_index(org[2 * (r % half)], org[2 * (r % half) + 1], e);
        if (m >= 0) out[r * dense + m] = a[r * size + e];
      }
  }

  void add(int64_t n, const float* x, float* y) override {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
  }

  void gather(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a, float* out) override {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < n_in; ++i) out[r * n_in + i] = inv[i] >= 0 ? a[r * n_out + inv[i]] : 0.0f;
  }

  void identity(int64_t half, int64_t size, const int64_t* pos, float* out) override {
    std::memset(out, 0, static_cast<size_t>(2 * half * size) * sizeof(float));
    for (int64_t r = 0; r < 2 * half; ++r) out[r * size + pos[r % half]] = 1;
  }

  void concretize(int64_t half, int64_t n, const float* a, const int* prob, const double* x0, const double* x_hi,
                  const double* eps, RegionNorm norm, const double* bias, double* upper, double* lower) override {
    for (int64_t r = 0; r < 2 * half; ++r) {
      const int p = prob[r % half];
      double centre = 0, nrm = 0;
      for (int64_t j = 0; j < n; ++j)
        concretize_elem(a[r * n + j], x0[p * n + j], norm == RegionNorm::Box ? x_hi[p * n + j] : 0.0, norm, centre,
                        nrm);
      store_bound(r, half, concretize_finish(r < half, centre, nrm, bias[r], eps[p], norm), upper, lower);
    }
  }

  void concretize_window(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, const int* prob,
                         const double* x0, const double* x_hi, const double* eps, RegionNorm norm, const double* bias,
                         double* upper, double* lower) override {
    const int64_t size = wg.size(), n = wg.c * wg.map_h * wg.map_w;
    for (int64_t r = 0; r < 2 * half; ++r) {
      const int p = prob[r % half];
      const int64_t y0 = org[2 * (r % half)], ox = org[2 * (r % half) + 1];
      double centre = 0, nrm = 0;
      for (int64_t e = 0; e < size; ++e) {
        const int64_t m = wg.map_index(y0, ox, e);
        if (m >= 0)
          concretize_elem(a[r * size + e], x0[p * n + m], norm == RegionNorm::Box ? x_hi[p * n + m] : 0.0, norm, centre,
                          nrm);
      }
      store_bound(r, half, concretize_finish(r < half, centre, nrm, bias[r], eps[p], norm), upper, lower);
    }
  }

  void relax_activation(int64_t count, const ActSpec& s, const double* lo, const double* hi, float* al, float* bl,
                        float* au, float* bu) override {
    for (int64_t i = 0; i < count; ++i) {
      const Relaxation<double> r = batched::relax_activation(s, lo[i], hi[i]);
      al[i] = static_cast<float>(r.alpha_l), bl[i] = static_cast<float>(r.beta_l);
      au[i] = static_cast<float>(r.alpha_u), bu[i] = static_cast<float>(r.beta_u);
    }
  }

  void activation_bounds(int64_t count, const ActSpec& s, const double* lo, const double* hi, double* out_lo,
                         double* out_hi) override {
    for (int64_t i = 0; i < count; ++i) activation_range(s, lo[i], hi[i], out_lo[i], out_hi[i]);
  }

  void relax_maxpool(const PoolGeom& g, int64_t problems, const double* lo, const double* hi, float* slopes,
                     float* beta_u, float* beta_l) override {
    const int64_t kk = g.kk(), in_size = g.in_size(), out_size = g.out_size();
    for (int64_t p = 0; p < problems; ++p)
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t y = 0; y < g.hout; ++y)
          for (int64_t x = 0; x < g.wout; ++x) {
            const int64_t j = p * out_size + (c * g.hout + y) * g.wout + x;
            double bu_d = 0, bl_d = 0;
            relax_maxpool_window(g, c, y, x, lo + p * in_size, hi + p * in_size, slopes + j * kk, bu_d, bl_d);
            beta_u[j] = static_cast<float>(bu_d), beta_l[j] = static_cast<float>(bl_d);
          }
  }

  void interval(const IntervalStep& s, int64_t problems, const double* lo, const double* hi, const double* lo2,
                const double* hi2, double* out_lo, double* out_hi) override {
    for (int64_t p = 0; p < problems; ++p)
      for (int64_t j = 0; j < s.n_out; ++j) {
        const int64_t e = p * s.n_out + j;
        interval_elem(s, lo + p * s.n_in, hi + p * s.n_in, lo2 ? lo2 + p * s.n_out : nullptr,
                      hi2 ? hi2 + p * s.n_out : nullptr, j, out_lo[e], out_hi[e]);
      }
  }

  void select_rows(int64_t count, SkipLevel level, const double* lo, const double* hi, const double* outer_lo,
                   const double* outer_hi, double* out_lo, double* out_hi, unsigned char* mask) override {
    for (int64_t i = 0; i < count; ++i)
      mask[i] = select_elem(level, lo[i], hi[i], outer_lo, outer_hi, i, out_lo[i], out_hi[i]);
  }

  void scatter(int64_t n, const int64_t* idx, const double* src, double* dst) override {
    for (int64_t i = 0; i < n; ++i) dst[idx[i]] = src[i];
  }

  void flag_nonfinite(int64_t problems, int64_t size, const double* lo, const double* hi, int code,
                      int* flags) override {
    for (int64_t p = 0; p < problems; ++p)
      for (int64_t i = 0; i < size && flags[p] == 0; ++i)
        if (!reliable_bound(lo[p * size + i]) || !reliable_bound(hi[p * size + i])) flags[p] = code;
  }

 private:
  /// One windowed row (origin (y0, x0) at the output) through the convolution into its window at
  /// the input (`out`: cin · span_y(h) · span_x(w) values).
  static void conv_window_row(const ConvGeom& g, int64_t h, int64_t w, int64_t y0, int64_t x0, const float* a_row,
                              const float* wt, float* out) {
    const int64_t ih = g.span_y(h), iw = g.span_x(w);
    for (int64_t ci = 0; ci < g.cin; ++ci)
      for (int64_t y = 0; y < ih; ++y)
        for (int64_t x = 0; x < iw; ++x)
          out[(ci * ih + y) * iw + x] = conv_back_window_elem(g, h, w, y0, x0, a_row, wt, ci, y, x);
  }

  /// elementwise_back_window of row r of `a`.
  static void relax_window_row(const WinGeom& wg, int64_t half, int64_t r, const int64_t* org, float* a,
                               const int* prob, int64_t stride, int64_t div, const float* al, const float* bl,
                               const float* au, const float* bu, double* bias, const float* then_bias,
                               int64_t then_div) {
    const int64_t size = wg.size();
    const int64_t base = prob[r % half] * stride, y0 = org[2 * (r % half)], x0 = org[2 * (r % half) + 1];
    const bool upper = r < half;
    double sum = 0, then_sum = 0;
    float* row = a + r * size;
    for (int64_t e = 0; e < size; ++e) {
      const int64_t m = wg.map_index(y0, x0, e);
      if (m < 0) continue;
      sum += elementwise_elem(row[e], upper, al, bl, au, bu, base + m / div);
      if (then_bias) then_sum += elementwise_elem(row[e], upper, nullptr, then_bias, nullptr, then_bias, m / then_div);
    }
    bias[r] += sum;
    if (then_bias) bias[r] += then_sum;
  }

  size_t budget_;
  double flops_ = 0;
};

}  // namespace

std::unique_ptr<Ops> make_host_ops(size_t budget_bytes) {
  return std::make_unique<HostOps>(budget_bytes);
}

}  // namespace cnncert::batched
