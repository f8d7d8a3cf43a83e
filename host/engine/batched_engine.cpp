// The batched bound engine: the GPU engine's algorithm over the primitive operations of `Ops`.
//
// Per call: the problems' centres and radii are uploaded once; then, in topological order, every
// node that feeds an activation or max-pool gets its bounds for all problems at once (identity
// rows over (problem, neuron) pairs, chunked to the memory budget, back-substituted to the
// input) and the consumer's relaxation is computed for all problems by one operation; finally
// the specification rows of all problems are back-substituted the same way. Upper and lower
// passes travel stacked in one tensor (2·half rows), so each layer is one convolution/GEMM call.
//
// The fast algorithm (the fast CPU engine's, unless BoundOptions::exact_cnncert):
// * rows only for the neurons that interval propagation (Ops::interval, from the bounds already
//   computed and the input region) and the outer bounds of a larger radius do not prove stable at
//   the node's skip level (detail::skip_levels; Ops::select_rows); the others keep those bounds;
// and in every mode:
// * patches: rows of a (C, H, W) node start as the C × 1 × 1 window at their neuron and stay
//   windows of each map through convolutions, pooling and element-wise nodes (per-row origins),
//   until the window covers the map; dense at dense layers, layout nodes and where branches meet.
//   On the host backend windowed and dense rows give bit-identical results (the same terms in the
//   same order); on the GPU they differ by rounding (the block reductions split the terms
//   differently, and dense convolutions may run in cuDNN).
// * fusions (the same terms, fewer passes over the rows; a row's terms in the same order, but on
//   networks with branches a fused pass may add them to the row's constant before those of
//   another branch's nodes, a rounding difference of that double sum): an
//   activation's relaxation pass adds the bias term of the conv or dense node below it
//   (fused_bias), and a windowed convolution whose input is an activation that it alone reads
//   relaxes the values it computes (fused_relaxation, Ops::conv_back_window_relax).
#include "engine/batched_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "cnncert/error.hpp"
#include "engine/engine_common.hpp"

namespace cnncert::batched {
namespace {

using cnncert::detail::Geometry;
using cnncert::detail::geometry;

/// Move-only owner of a block of device memory.
class Buf {
 public:
  Buf() = default;
  Buf(Ops& ops, size_t bytes) : ops_(&ops), bytes_(bytes) { p_ = bytes ? ops.alloc(bytes) : nullptr; }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : ops_(o.ops_), p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  Buf& operator=(Buf&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = o.ops_, p_ = o.p_, bytes_ = o.bytes_;
      o.p_ = nullptr, o.bytes_ = 0;
    }
    return *this;
  }
  ~Buf() { reset(); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void reset() noexcept {
    if (p_) ops_->release(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  Ops* ops_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

template <class T>
Buf upload(Ops& ops, const std::vector<T>& v) {
  Buf b(ops, v.size() * sizeof(T));
  if (!v.empty()) ops.to_device(b.as<void>(), v.data(), v.size() * sizeof(T));
  return b;
}

template <class T>
std::vector<T> download(Ops& ops, const Buf& b, size_t n) {
  std::vector<T> v(n);
  if (n) ops.to_host(v.data(), b.as<T>(), n * sizeof(T));
  return v;
}

/// The network's constants in float32, which the engine computes in; a value beyond float32's
/// range is refused (it would become infinite).
std::vector<float> to_float(const std::vector<double>& v) {
  cnncert::detail::check_float32_range(v, "a network constant", "GPU engine");
  return std::vector<float>(v.begin(), v.end());
}

/// Network constants on the device.
struct NodeConst {
  Buf weight, bias, scale, shift, inv, map, avg_slopes;
  ConvGeom conv;
  PoolGeom pool;
  IntervalStep step;  // interval propagation through the node (pointers into the buffers above)
};

class BatchedEngine final : public BoundEngine {
 public:
  BatchedEngine(const Network& net, std::unique_ptr<Ops> ops) : net_(net), ops_(std::move(ops)) {
    check_boundable(net_);
    Ops& o = *ops_;
    const auto& nodes = net_.nodes();
    geo_.resize(nodes.size());
    consts_.resize(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      const Node& n = nodes[i];
      geo_[i] = geometry(n);
      if (n.op == OpKind::Input) continue;
      const Node& src = nodes[static_cast<size_t>(n.inputs[0])];
      const Geometry gi = geometry(src), g = geo_[i];
      NodeConst& c = consts_[i];
      switch (n.op) {
        case OpKind::Conv: {
          const ConvAttr& a = n.as<ConvAttr>();
          c.conv = {a.window(), gi.c, gi.h, gi.w, g.c, g.h, g.w, a.groups};
          c.weight = upload(o, to_float(a.weight));
          c.bias = upload(o, to_float(a.bias));
          break;
        }
        case OpKind::Dense: {
          const DenseAttr& a = n.as<DenseAttr>();
          c.weight = upload(o, to_float(a.weight));
          c.bias = upload(o, to_float(a.bias));
          break;
        }
        case OpKind::ScaleShift:
          c.scale = upload(o, to_float(n.as<ScaleShiftAttr>().scale));
          c.shift = upload(o, to_float(n.as<ScaleShiftAttr>().shift));
          break;
        case OpKind::MaxPool:
        case OpKind::AvgPool: {
          c.pool = cnncert::detail::pool_geom(n, gi);
          if (n.op == OpKind::AvgPool) c.avg_slopes = upload(o, to_float(cnncert::detail::avgpool_slopes(n, src)));
          break;
        }
        case OpKind::Transpose:
        case OpKind::Pad: {
          const std::vector<int64_t> m = cnncert::detail::layout_map(n, src);
          std::vector<int64_t> inv(static_cast<size_t>(src.size()), -1);
          for (size_t k = 0; k < m.size(); ++k)
            if (m[k] >= 0) {
              CNNCERT_ASSERT(inv[static_cast<size_t>(m[k])] < 0);  // layout nodes read each input once
              inv[static_cast<size_t>(m[k])] = static_cast<int64_t>(k);
            }
          c.inv = upload(o, inv);
          c.map = upload(o, m);
          break;
        }
        default: break;
      }
      c.step = interval_step(n, src, c);
    }
    levels_ = cnncert::detail::skip_levels(net_);
    consumers_.assign(nodes.size(), 0);
    for (const Node& n : nodes)
      for (const int i : n.inputs) ++consumers_[static_cast<size_t>(i)];
    any_skippable_ = cnncert::detail::any_skippable(net_, levels_);
  }

  bool uses_outer_bounds(const BoundOptions& o) const override { return !o.exact_cnncert && any_skippable_; }

  std::string name() const override { return ops_->name(); }

  EngineStats stats() const override {
    EngineStats s = stats_;
    s.backsub_flops = ops_->backsub_flops();
    const PathCounts c = ops_->path_counts();
    s.conv_cudnn = c.conv_library, s.conv_cudnn_failed = c.conv_library_failed, s.conv_own_kernel = c.conv_own;
    s.conv_windowed = c.conv_windowed;
    s.gemm_cublas = c.gemm_library, s.gemm_own_kernel = c.gemm_own;
    s.gpu_launches = c.launches, s.gpu_syncs = c.syncs;
    const CostCounts m = ops_->cost_counts();
    s.model_flops = m.flops, s.model_bytes = m.bytes, s.model_launches = m.launches, s.model_syncs = m.syncs;
    return s;
  }

  std::vector<BoundResult> bound(const std::vector<BoundProblem>& problems, const BoundOptions& options) override {
    check_bound_problems(net_, problems, options);
    std::vector<BoundResult> out(problems.size());
    if (problems.empty()) return out;
    ++stats_.calls;
    ops_->set_problems(static_cast<int64_t>(problems.size()));
    Batch b(*ops_, net_, problems, options);
    const auto& nodes = net_.nodes();
    using clock = std::chrono::steady_clock;
    auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
    const std::vector<int> schedule = cnncert::detail::bound_schedule(net_);
    const auto layers = static_cast<int64_t>(schedule.size()) + 1;
    int64_t layers_done = 0;
    for (const int k : schedule) {
      const Node& node = nodes[static_cast<size_t>(k)];
      if (options.layer_progress) options.layer_progress(layers_done++, layers);
      const int src = node.inputs[0];
      if (!b.lo.count(src)) {
        const auto t0 = clock::now();
        if (!pool_input_from_activation(b, k)) compute_bounds(b, src);
        stats_.seconds_bounds += since(t0);
        if (options.want_intermediate) b.reported.push_back(src);  // downloaded with the results
      }
      // No wait here: the device runs ahead, and the host waits only where it needs data (the
      // rows to compute, the results). On a GPU the phase times are split at those waits.
      const auto t1 = clock::now();
      relax(b, k);
      stats_.seconds_relax += since(t1);
    }
    if (options.layer_progress) options.layer_progress(layers_done, layers);  // the specification rows
    const auto t2 = clock::now();
    final_rows(b, out);
    stats_.seconds_final += since(t2);
    return out;
  }

 private:
  /// State of one bound() call.
  struct Batch {
    Batch(Ops& o, const Network& net, const std::vector<BoundProblem>& pr, const BoundOptions& opt)
        : problems(pr), options(opt) {
      problem_count = pr.size();
      const bool boxes =
          opt.clip_to_box || std::any_of(pr.begin(), pr.end(), [](const BoundProblem& p) { return p.has_box(); });
      std::vector<double> x0, x_hi, eps;
      for (const auto& p : pr) {
        if (boxes) {  // every region as a box (boxes need the ℓ∞ norm; a ball is the box x0 ± eps)
          const ::cnncert::detail::InputBox box = ::cnncert::detail::input_box(p, opt);
          for (size_t j = 0; j < p.x0.size(); ++j) {
            x0.push_back(box.active() ? box.lo[j] : p.x0[j] - p.eps);
            x_hi.push_back(box.active() ? box.hi[j] : p.x0[j] + p.eps);
          }
        } else {
          x0.insert(x0.end(), p.x0.begin(), p.x0.end());
        }
        eps.push_back(p.eps);
      }
      this->x0 = upload(o, x0);
      if (boxes) this->x_hi = upload(o, x_hi);
      this->eps = upload(o, eps);
      flags = upload(o, std::vector<int>(problem_count, 0));
      error.assign(problem_count, "");
      norm = cnncert::detail::region_norm(opt.norm, boxes);
      // (before any work: refuses coefficients beyond float32)
      for (const auto& p : pr)
        spec_inexact = cnncert::detail::spec_inexact_in_float32(p.spec, "GPU engine") || spec_inexact;
      if (opt.exact_cnncert && !spec_inexact) return;
      // The input region as intervals (the ℓ2 and ℓ1 balls lie inside the ℓ∞ ball): interval
      // propagation's starting point, for row selection and for the specification's rounding
      // (spec_rounding, also with exact_cnncert); the problems' outer bounds where they apply.
      std::vector<double> lo, hi;
      for (const auto& p : pr) {
        const ::cnncert::detail::InputBox box = ::cnncert::detail::input_box(p, opt);
        for (size_t j = 0; j < p.x0.size(); ++j) {
          double l = box.active() ? box.lo[j] : p.x0[j] - p.eps, u = box.active() ? box.hi[j] : p.x0[j] + p.eps;
          widen_interval(l, u);
          lo.push_back(l), hi.push_back(u);
        }
        if (!opt.exact_cnncert) outer.push_back(::cnncert::detail::usable_outer(net, p, opt));
      }
      in_lo = upload(o, lo), in_hi = upload(o, hi);
      interval_ok.assign(net.nodes().size(), 0);
    }
    const std::vector<BoundProblem>& problems;
    const BoundOptions& options;
    size_t problem_count = 0;
    bool spec_inexact = false;  // some specification coefficient is not a float32 number
    RegionNorm norm = RegionNorm::Linf;
    Buf x0, x_hi, eps, flags;  // x0: centres, or the lower corners of boxes (norm Box) and x_hi the upper ones
    std::vector<std::string> error;
    std::map<int, Buf> lo, hi;                  // bounds of nodes that need them (problems × size, double)
    std::map<int, Buf> al, bl, au, bu;          // activation relaxations (problems × size, float)
    std::map<int, Buf> slopes, beta_u, beta_l;  // max-pool relaxations
    // Interval propagation (not with exact_cnncert): the input region's intervals, per node the
    // propagated intervals of nodes without bounds (valid where interval_ok), per problem its
    // usable outer bounds by node.
    Buf in_lo, in_hi;
    std::map<int, Buf> ilo, ihi;
    std::vector<char> interval_ok;
    std::vector<std::vector<const NodeBounds*>> outer;
    std::vector<int> reported;  // with want_intermediate: the nodes whose bounds are reported, in order
  };

  /// The interval propagation step of node n (input src) over the constants c.
  static IntervalStep interval_step(const Node& n, const Node& src, const NodeConst& c) {
    IntervalStep s;
    s.n_in = src.size(), s.n_out = n.size();
    switch (n.op) {
      case OpKind::Conv:
        s.op = IntervalOp::Conv, s.conv = c.conv, s.w = c.weight.as<float>(), s.b = c.bias.as<float>();
        break;
      case OpKind::Dense: s.op = IntervalOp::Dense, s.w = c.weight.as<float>(), s.b = c.bias.as<float>(); break;
      case OpKind::ScaleShift:
        s.op = IntervalOp::ScaleShift, s.w = c.scale.as<float>(), s.b = c.shift.as<float>();
        break;
      case OpKind::Activation: {
        const ActAttr& a = n.as<ActAttr>();
        s.op = IntervalOp::Activation, s.act.kind = a.kind, s.act.alpha = a.alpha;
        break;
      }
      case OpKind::MaxPool: s.op = IntervalOp::MaxPool, s.pool = c.pool; break;
      case OpKind::AvgPool: s.op = IntervalOp::AvgPool, s.pool = c.pool, s.w = c.avg_slopes.as<float>(); break;
      case OpKind::Add: s.op = IntervalOp::Add; break;
      case OpKind::Transpose:
      case OpKind::Pad: s.op = IntervalOp::Layout, s.map = c.map.as<int64_t>(); break;
      case OpKind::Reshape:  // a copy (interval_node)
      case OpKind::Input: break;
    }
    return s;
  }

  /// Bounds of node k for interval propagation (lower or upper): its bounds when known, else its
  /// intervals.
  static const double* interval_bound(const Batch& b, int k, bool upper) {
    const std::map<int, Buf>& known = upper ? b.hi : b.lo;
    const auto it = known.find(k);
    return (it != known.end() ? it->second : (upper ? b.ihi : b.ilo).at(k)).as<double>();
  }
  static const double* interval_lo(const Batch& b, int k) { return interval_bound(b, k, false); }
  static const double* interval_hi(const Batch& b, int k) { return interval_bound(b, k, true); }

  /// Propagates intervals to every node up to `upto` that has neither bounds nor valid intervals.
  void intervals(Batch& b, int upto) {
    Ops& o = *ops_;
    const auto problems = static_cast<int64_t>(b.problem_count);
    for (int k = 0; k <= upto; ++k) {
      const auto i = static_cast<size_t>(k);
      if (b.interval_ok[i] || b.lo.count(k)) continue;
      const Node& n = net_.node(k);
      const size_t bytes = static_cast<size_t>(problems * n.size()) * sizeof(double);
      Buf lo(o, bytes), hi(o, bytes);
      if (n.op == OpKind::Input || n.op == OpKind::Reshape) {  // the region, or the same values
        o.copy(lo.as<void>(), n.op == OpKind::Input ? b.in_lo.as<void>() : interval_lo(b, n.inputs[0]), bytes);
        o.copy(hi.as<void>(), n.op == OpKind::Input ? b.in_hi.as<void>() : interval_hi(b, n.inputs[0]), bytes);
      } else {
        const bool add = n.op == OpKind::Add;
        o.interval(consts_[i].step, problems, interval_lo(b, n.inputs[0]), interval_hi(b, n.inputs[0]),
                   add ? interval_lo(b, n.inputs[1]) : nullptr, add ? interval_hi(b, n.inputs[1]) : nullptr,
                   lo.as<double>(), hi.as<double>());
      }
      b.ilo[k] = std::move(lo), b.ihi[k] = std::move(hi);
      b.interval_ok[i] = 1;
    }
  }

  /// Node k got bounds: the intervals after it are to be propagated again from them.
  static void invalidate_intervals_after(Batch& b, int k) {
    for (size_t j = static_cast<size_t>(k) + 1; j < b.interval_ok.size(); ++j) b.interval_ok[j] = 0;
  }

  /// Rows (per pass) of one chunk of a back-substitution starting at node `start`.
  int64_t chunk_rows(int start) const {
    int64_t max_size = 1;
    for (int k = 0; k <= start; ++k) max_size = std::max(max_size, net_.node(k).size());
    // The upper and lower pass of a row, and up to four such tensors alive at once (a residual
    // branch waiting, a layer's input and output).
    const double per_row = 2.0 * 4.0 * static_cast<double>(max_size) * sizeof(float);
    const double by_budget = static_cast<double>(ops_->memory_budget()) / per_row;
    const double by_index =
        static_cast<double>(std::numeric_limits<int32_t>::max()) / (2.0 * static_cast<double>(max_size));
    return std::max<int64_t>(1, static_cast<int64_t>(std::min({by_budget, by_index, 1e6})));
  }

  /// A back-substitution tensor at a node: 2·half dense rows of the node's size, or (patches)
  /// rows that hold a window of the node's map (WinGeom, origins `org` on the host and `dorg` on
  /// the device, 2 per row of the upper half).
  struct Coef {
    Buf a;
    bool windowed = false;
    bool bias_done = false;  // the node's bias term is in (fused into the relaxation above it)
    bool relaxed = false;    // the node's relaxation is applied (fused into the convolution above it)
    WinGeom win;
    std::vector<int64_t> org;
    Buf dorg;
  };

  /// Windowed rows of a (C, H, W) node: each of `half` (problem, neuron) rows starts as the
  /// C × 1 × 1 window at its neuron's position.
  Coef window_start(int k, int64_t half, const std::vector<int64_t>& pos) {
    Ops& o = *ops_;
    const Geometry& g = geo_[static_cast<size_t>(k)];
    Coef c;
    c.windowed = true;
    c.win = {g.c, 1, 1, g.h, g.w};
    c.org.resize(static_cast<size_t>(2 * half));
    std::vector<int64_t> channel(static_cast<size_t>(half));
    for (size_t r = 0; r < pos.size(); ++r) {
      const int64_t plane = g.h * g.w, n = pos[r];
      channel[r] = n / plane, c.org[2 * r] = (n % plane) / g.w, c.org[2 * r + 1] = n % g.w;
    }
    c.dorg = upload(o, c.org);
    const Buf dchannel = upload(o, channel);  // (released in stream order: after the identity)
    c.a = Buf(o, static_cast<size_t>(2 * half * g.c) * sizeof(float));
    o.identity(half, g.c, dchannel.as<int64_t>(), c.a.as<float>());
    return c;
  }

  /// The rows of `c` (at node `node`) in dense form.
  Coef dense(Coef&& c, int node, int64_t half) {
    if (!c.windowed) return std::move(c);
    CNNCERT_ASSERT(!c.bias_done && !c.relaxed);  // (the fusions never leave windowed rows to be made dense)
    Coef d;
    d.a = Buf(*ops_, static_cast<size_t>(2 * half * net_.node(node).size()) * sizeof(float));
    ops_->window_to_dense(c.win, half, c.dorg.as<int64_t>(), c.a.as<float>(), d.a.as<float>());
    return d;
  }

  /// Windowed rows at the input of a sliding-window node (geometry `wg` of the op: conv or pool)
  /// for windowed rows `c` at its output: the input window's geometry and origins, or false when
  /// that window would be at least as large as the input map (then the rows go dense).
  template <class G>
  bool input_window(const G& wg, int64_t c_in, int64_t hin, int64_t win, int64_t half, const Coef& c, Coef& out) {
    const int64_t ih = wg.span_y(c.win.h), iw = wg.span_x(c.win.w);
    if (ih * iw >= hin * win) return false;
    out.windowed = true;
    out.win = {c_in, ih, iw, hin, win};
    out.org.resize(c.org.size());
    for (int64_t r = 0; r < half; ++r) {
      const auto i = static_cast<size_t>(2 * r);
      out.org[i] = wg.start_y(c.org[i]), out.org[i + 1] = wg.start_x(c.org[i + 1]);
    }
    out.dorg = upload(*ops_, out.org);
    out.a = Buf(*ops_, static_cast<size_t>(2 * half * out.win.size()) * sizeof(float));
    return true;
  }

  /// The element-wise pass (elementwise_back) over dense or windowed rows, with the bias pass of
  /// the node below when `then_bias` is given.
  void elementwise(Coef& c, int64_t half, int64_t size, const int* prob, int64_t stride, int64_t div, const float* al,
                   const float* bl, const float* au, const float* bu, double* bias, const float* then_bias = nullptr,
                   int64_t then_div = 1) {
    if (c.windowed)
      ops_->elementwise_back_window(c.win, half, c.dorg.as<int64_t>(), c.a.as<float>(), prob, stride, div, al, bl, au,
                                    bu, bias, then_bias, then_div);
    else
      ops_->elementwise_back(half, size, c.a.as<float>(), prob, stride, div, al, bl, au, bu, bias, then_bias, then_div);
  }

  /// The bias term that the relaxation at activation node k takes over from its input node (one
  /// pass over the rows instead of two, the same sums): the input's bias and divisor when it is a
  /// conv, or a dense node for dense rows, that k alone reads; else null.
  std::pair<const float*, int64_t> fused_bias(int k, const Coef& a) const {
    const int src = net_.node(k).inputs[0];
    const Node& s = net_.node(src);
    const auto i = static_cast<size_t>(src);
    if (consumers_[i] != 1) return {nullptr, 1};
    if (s.op == OpKind::Conv) return {consts_[i].bias.as<float>(), geo_[i].h * geo_[i].w};
    if (s.op == OpKind::Dense && !a.windowed) return {consts_[i].bias.as<float>(), 1};
    return {nullptr, 1};
  }

  /// The relaxation that a windowed convolution at the output of node `src` applies to its
  /// output rows `out` in the same pass (Ops::conv_back_window_relax): that of the activation
  /// `src` when the convolution alone reads it (the arguments its own pass would get); else false.
  bool fused_relaxation(Batch& b, int src, const Coef& out, const int* prob, double* bias, RelaxStep& rx) const {
    const Node& s = net_.node(src);
    if (s.op != OpKind::Activation || consumers_[static_cast<size_t>(src)] != 1) return false;
    const auto [then_bias, then_div] = fused_bias(src, out);
    rx = {prob,
          s.size(),
          1,
          b.al.at(src).as<float>(),
          b.bl.at(src).as<float>(),
          b.au.at(src).as<float>(),
          b.bu.at(src).as<float>(),
          bias,
          then_bias,
          then_div};
    return true;
  }

  /// Back-substitutes `a_start` (2·half rows at node `start`) to the input and concretizes: the
  /// upper half's bounds go to upper[r], the lower half's to lower[r]. `bias` (2·half doubles)
  /// starts at zero and ends as the rows' constant terms; `final_a` receives the input coefficients.
  /// Windowed rows stay windowed through convolutions, pooling and element-wise nodes until their
  /// window covers the map, and become dense at every other node or where two branches meet.
  void backsub(Batch& b, int start, int64_t half, Coef a_start, const int* prob, double* bias, double* upper,
               double* lower, Buf* final_a) {
    Ops& o = *ops_;
    const int64_t rows = 2 * half;
    std::map<int, Coef> pend;
    pend.emplace(start, std::move(a_start));
    const auto& nodes = net_.nodes();
    auto push = [&](int node, Coef&& c) {
      auto it = pend.find(node);
      if (it == pend.end()) {
        pend.emplace(node, std::move(c));
        return;
      }
      CNNCERT_ASSERT(!c.bias_done && !it->second.bias_done && !c.relaxed &&
                     !it->second.relaxed);  // fused only where one consumer reads the node
      it->second = dense(std::move(it->second), node, half);
      const Coef d = dense(std::move(c), node, half);
      o.add(rows * net_.node(node).size(), d.a.as<float>(), it->second.a.as<float>());
    };
    auto fresh = [&](int node) {
      Coef c;
      c.a = Buf(o, static_cast<size_t>(rows * net_.node(node).size()) * sizeof(float));
      return c;
    };
    for (int k = start; k >= 0; --k) {
      auto it = pend.find(k);
      if (it == pend.end()) continue;
      Coef a = std::move(it->second);
      pend.erase(it);
      const Node& n = nodes[static_cast<size_t>(k)];
      const OpKind op = n.op;
      const bool keeps_window = op == OpKind::Conv || op == OpKind::ScaleShift || op == OpKind::Activation ||
                                op == OpKind::MaxPool || op == OpKind::AvgPool || op == OpKind::Add ||
                                (op == OpKind::Input && !final_a);
      if (!keeps_window) a = dense(std::move(a), k, half);
      const Geometry& g = geo_[static_cast<size_t>(k)];
      const NodeConst& c = consts_[static_cast<size_t>(k)];
      if (op == OpKind::Input) {  // windowed rows without their dense form, unless it is asked for
        const double* x_hi = b.norm == RegionNorm::Box ? b.x_hi.as<double>() : nullptr;
        if (a.windowed)
          o.concretize_window(a.win, half, a.dorg.as<int64_t>(), a.a.as<float>(), prob, b.x0.as<double>(), x_hi,
                              b.eps.as<double>(), b.norm, bias, upper, lower);
        else
          o.concretize(half, g.size(), a.a.as<float>(), prob, b.x0.as<double>(), x_hi, b.eps.as<double>(), b.norm, bias,
                       upper, lower);
        if (final_a) *final_a = std::move(a.a);
        continue;
      }
      const int src = n.inputs[0];
      const int64_t size = g.size();
      const Geometry& gs = geo_[static_cast<size_t>(src)];
      switch (op) {
        case OpKind::Conv: {
          if (!a.bias_done)
            elementwise(a, half, size, prob, 0, g.h * g.w, nullptr, c.bias.as<float>(), nullptr, c.bias.as<float>(),
                        bias);
          a.bias_done = false;  // (consumed)
          Coef out;
          if (a.windowed && input_window(c.conv, gs.c, gs.h, gs.w, half, a, out)) {
            if (RelaxStep rx; fused_relaxation(b, src, out, prob, bias, rx)) {
              o.conv_back_window_relax(c.conv, half, a.win.h, a.win.w, a.dorg.as<int64_t>(), c.weight.as<float>(),
                                       a.a.as<float>(), out.win, out.dorg.as<int64_t>(), out.a.as<float>(), rx);
              out.relaxed = true, out.bias_done = rx.then_bias != nullptr;
            } else {
              o.conv_back_window(c.conv, half, a.win.h, a.win.w, a.dorg.as<int64_t>(), c.weight.as<float>(),
                                 a.a.as<float>(), out.a.as<float>());
            }
          } else {
            a = dense(std::move(a), k, half);
            out = fresh(src);
            o.conv_back(c.conv, rows, c.weight.as<float>(), a.a.as<float>(), out.a.as<float>());
          }
          push(src, std::move(out));
          break;
        }
        case OpKind::Dense: {
          if (!a.bias_done)
            o.elementwise_back(half, size, a.a.as<float>(), prob, 0, 1, nullptr, c.bias.as<float>(), nullptr,
                               c.bias.as<float>(), bias, nullptr, 1);
          a.bias_done = false;
          Coef out = fresh(src);
          o.dense_back(rows, size, net_.node(src).size(), c.weight.as<float>(), a.a.as<float>(), out.a.as<float>());
          push(src, std::move(out));
          break;
        }
        case OpKind::ScaleShift:
          elementwise(a, half, size, prob, 0, 1, c.scale.as<float>(), c.shift.as<float>(), c.scale.as<float>(),
                      c.shift.as<float>(), bias);
          push(src, std::move(a));
          break;
        case OpKind::Activation: {
          if (a.relaxed) {  // (by the convolution above, with the bias pass below when bias_done)
            a.relaxed = false;
            push(src, std::move(a));
            break;
          }
          const auto [then_bias, then_div] = fused_bias(k, a);
          elementwise(a, half, size, prob, size, 1, b.al.at(k).as<float>(), b.bl.at(k).as<float>(),
                      b.au.at(k).as<float>(), b.bu.at(k).as<float>(), bias, then_bias, then_div);
          a.bias_done = then_bias != nullptr;
          push(src, std::move(a));
          break;
        }
        case OpKind::MaxPool:
        case OpKind::AvgPool: {
          const bool max = op == OpKind::MaxPool;
          if (max)
            elementwise(a, half, size, prob, size, 1, nullptr, b.beta_l.at(k).as<float>(), nullptr,
                        b.beta_u.at(k).as<float>(), bias);
          const int64_t stride = max ? size * c.pool.kk() : 0;
          const float* slopes = max ? b.slopes.at(k).as<float>() : c.avg_slopes.as<float>();
          Coef out;
          if (a.windowed && input_window(c.pool, gs.c, gs.h, gs.w, half, a, out)) {
            o.pool_back_window(c.pool, half, a.win.h, a.win.w, a.dorg.as<int64_t>(), prob, stride, slopes,
                               a.a.as<float>(), out.a.as<float>());
          } else {
            a = dense(std::move(a), k, half);
            out = fresh(src);
            o.pool_back(c.pool, half, prob, stride, slopes, a.a.as<float>(), out.a.as<float>());
          }
          push(src, std::move(out));
          break;
        }
        case OpKind::Add: {
          Coef copy;
          const size_t bytes = static_cast<size_t>(rows * (a.windowed ? a.win.size() : size)) * sizeof(float);
          copy.a = Buf(o, bytes);
          o.copy(copy.a.as<void>(), a.a.as<void>(), bytes);
          copy.windowed = a.windowed, copy.win = a.win, copy.org = a.org;
          if (a.windowed) copy.dorg = upload(o, copy.org);
          push(src, std::move(a));
          push(n.inputs[1], std::move(copy));
          break;
        }
        case OpKind::Reshape: push(src, std::move(a)); break;  // same row-major order
        case OpKind::Transpose:
        case OpKind::Pad: {
          Coef out = fresh(src);
          o.gather(rows, size, net_.node(src).size(), c.inv.as<int64_t>(), a.a.as<float>(), out.a.as<float>());
          push(src, std::move(out));
          break;
        }
        case OpKind::Input: break;
      }
    }
    CNNCERT_ASSERT(pend.empty());
  }

  /// Bounds of node k for all problems: back-substitution rows for the neurons that interval
  /// propagation (with the outer bounds) does not settle at the node's skip level; for every
  /// neuron with exact_cnncert or where no skip applies.
  void compute_bounds(Batch& b, int k) {
    Ops& o = *ops_;
    const int64_t size = net_.node(k).size(), total = size * static_cast<int64_t>(b.problem_count);
    Buf lo(o, static_cast<size_t>(total) * sizeof(double)), hi(o, static_cast<size_t>(total) * sizeof(double));
    const SkipLevel level = levels_[static_cast<size_t>(k)];
    std::vector<int64_t> need;  // (problem, neuron) pairs as problem · size + neuron
    if (!b.options.exact_cnncert && level != SkipLevel::None) {
      intervals(b, k);
      // Bounds from a larger ball around the same centre (an earlier search step) hold here too:
      // intersected with the intervals, they prove more neurons stable. NaN = none.
      Buf olo, ohi;
      if (std::any_of(b.outer.begin(), b.outer.end(),
                      [k](const auto& v) { return !v.empty() && v[static_cast<size_t>(k)]; })) {
        std::vector<double> l(static_cast<size_t>(total), NAN), u(static_cast<size_t>(total), NAN);
        for (size_t p = 0; p < b.problem_count; ++p)
          if (const NodeBounds* nb = b.outer[p].empty() ? nullptr : b.outer[p][static_cast<size_t>(k)]) {
            std::copy(nb->lower.begin(), nb->lower.end(), l.begin() + static_cast<long>(p) * size);
            std::copy(nb->upper.begin(), nb->upper.end(), u.begin() + static_cast<long>(p) * size);
          }
        olo = upload(o, l), ohi = upload(o, u);
      }
      Buf dmask(o, static_cast<size_t>(total));
      o.select_rows(total, level, b.ilo.at(k).as<double>(), b.ihi.at(k).as<double>(), olo.as<double>(),
                    ohi.as<double>(), lo.as<double>(), hi.as<double>(), dmask.as<unsigned char>());
      const auto mask = download<unsigned char>(o, dmask, static_cast<size_t>(total));
      for (int64_t i = 0; i < total; ++i) {
        if (mask[static_cast<size_t>(i)] == kRowNeeded) need.push_back(i);
        stats_.rows_skipped_outer += mask[static_cast<size_t>(i)] == kRowSkippedByOuter ? 1 : 0;
      }
      stats_.rows_skipped += static_cast<double>(total - static_cast<int64_t>(need.size()));
    } else {
      need.resize(static_cast<size_t>(total));
      for (int64_t i = 0; i < total; ++i) need[static_cast<size_t>(i)] = i;
    }
    stats_.rows_computed += static_cast<double>(need.size());
    const int64_t chunk = chunk_rows(k), rows = static_cast<int64_t>(need.size());
    for (int64_t first = 0; first < rows; first += chunk) {
      const int64_t half = std::min(chunk, rows - first);
      const std::vector<int64_t> idx(need.begin() + first, need.begin() + first + half);
      std::vector<int> prob(static_cast<size_t>(half));
      std::vector<int64_t> pos(static_cast<size_t>(half));
      for (size_t r = 0; r < idx.size(); ++r) prob[r] = static_cast<int>(idx[r] / size), pos[r] = idx[r] % size;
      Buf dprob = upload(o, prob), didx = upload(o, idx);
      Coef a;
      if (geo_[static_cast<size_t>(k)].h * geo_[static_cast<size_t>(k)].w > 1) {  // patches
        a = window_start(k, half, pos);
      } else {
        const Buf dpos = upload(o, pos);
        a.a = Buf(o, static_cast<size_t>(2 * half * size) * sizeof(float));
        o.identity(half, size, dpos.as<int64_t>(), a.a.as<float>());
      }
      Buf bias(o, static_cast<size_t>(2 * half) * sizeof(double));
      o.zero(bias.as<void>(), bias.bytes());
      Buf up(o, static_cast<size_t>(half) * sizeof(double)), lw(o, static_cast<size_t>(half) * sizeof(double));
      backsub(b, k, half, std::move(a), dprob.as<int>(), bias.as<double>(), up.as<double>(), lw.as<double>(), nullptr);
      o.scatter(half, didx.as<int64_t>(), up.as<double>(), hi.as<double>());
      o.scatter(half, didx.as<int64_t>(), lw.as<double>(), lo.as<double>());
    }
    o.flag_nonfinite(static_cast<int64_t>(b.problem_count), size, lo.as<double>(), hi.as<double>(), k + 1,
                     b.flags.as<int>());
    b.lo.emplace(k, std::move(lo));
    b.hi.emplace(k, std::move(hi));
    invalidate_intervals_after(b, k);
  }

  /// MATH.md §2.5: a max-pool k reading a monotone activation takes [σ(l'), σ(u')] of that
  /// activation's pre-activation bounds as its input bounds (for ReLU [max(l',0), max(u',0)], the
  /// original CNN-Cert's rule), instead of a back-substitution. False when the rule does not apply.
  bool pool_input_from_activation(Batch& b, int k) {
    ActSpec s;
    int pre = -1;
    if (!cnncert::detail::maxpool_input_rule(net_, k, b.options.method, s, pre)) return false;
    const int src = net_.node(k).inputs[0];
    const Node& act = net_.node(src);
    CNNCERT_ASSERT(b.lo.count(pre));  // the activation (an earlier node) was relaxed from them
    Ops& o = *ops_;
    const int64_t total = act.size() * static_cast<int64_t>(b.problem_count);
    Buf lo(o, static_cast<size_t>(total) * sizeof(double)), hi(o, static_cast<size_t>(total) * sizeof(double));
    o.activation_bounds(total, s, b.lo.at(pre).as<double>(), b.hi.at(pre).as<double>(), lo.as<double>(),
                        hi.as<double>());
    o.flag_nonfinite(static_cast<int64_t>(b.problem_count), act.size(), lo.as<double>(), hi.as<double>(), src + 1,
                     b.flags.as<int>());
    b.lo.emplace(src, std::move(lo));
    b.hi.emplace(src, std::move(hi));
    invalidate_intervals_after(b, src);
    return true;
  }

  /// Marks the problems whose bounds at some node were not reliable_bound, naming the first such
  /// node (its index + 1 is the problem's flag, set on the device as the nodes were bounded and
  /// downloaded with the results), as the CPU engine reports; their intermediate bounds stop
  /// before it.
  void check_flags(Batch& b, const int* flags, std::vector<BoundResult>& out) {
    for (size_t p = 0; p < b.problem_count; ++p) {
      if (!flags[p]) continue;
      const int node = flags[p] - 1;
      CNNCERT_ASSERT(node >= 0 && node < static_cast<int>(net_.nodes().size()));
      if (b.error[p].empty()) b.error[p] = cnncert::detail::unreliable_bounds_error(net_.node(node).name);
      auto& im = out[p].intermediate;
      im.erase(std::find_if(im.begin(), im.end(), [node](const NodeBounds& nb) { return nb.node == node; }), im.end());
    }
  }

  /// Relaxation of activation/max-pool node k for all problems.
  void relax(Batch& b, int k) {
    Ops& o = *ops_;
    const Node& n = net_.node(k);
    const int src = n.inputs[0];
    const auto problems = static_cast<int64_t>(b.problem_count);
    const double* lo = b.lo.at(src).as<double>();
    const double* hi = b.hi.at(src).as<double>();
    if (n.op == OpKind::MaxPool) {
      const PoolGeom& g = consts_[static_cast<size_t>(k)].pool;
      Buf sl(o, static_cast<size_t>(problems * g.out_size() * g.kk()) * sizeof(float));
      Buf bu(o, static_cast<size_t>(problems * g.out_size()) * sizeof(float)),
          bl(o, static_cast<size_t>(problems * g.out_size()) * sizeof(float));
      o.relax_maxpool(g, problems, lo, hi, sl.as<float>(), bu.as<float>(), bl.as<float>());
      b.slopes.emplace(k, std::move(sl));
      b.beta_u.emplace(k, std::move(bu));
      b.beta_l.emplace(k, std::move(bl));
      return;
    }
    const ActAttr& a = n.as<ActAttr>();
    const ActSpec s{a.kind, a.alpha, b.options.method.relu, b.options.method.smooth};
    const int64_t count = problems * n.size();
    const size_t bytes = static_cast<size_t>(count) * sizeof(float);
    Buf al(o, bytes), bl(o, bytes), au(o, bytes), bu(o, bytes);
    o.relax_activation(count, s, lo, hi, al.as<float>(), bl.as<float>(), au.as<float>(), bu.as<float>());
    b.al.emplace(k, std::move(al));
    b.bl.emplace(k, std::move(bl));
    b.au.emplace(k, std::move(au));
    b.bu.emplace(k, std::move(bu));
  }

  /// The specification c of each row in float32 as c̃ = c − δ: where a coefficient is not a float
  /// (0.1), the bounds of δᵀy over the output's interval bounds y, added to those of c̃ᵀy, keep
  /// them sound for cᵀy (as in the fast engine). Returns the corrections of the flattened rows
  /// (owner, local), lower ones then upper ones, or nothing when every coefficient is a float.
  std::vector<double> spec_rounding(Batch& b, const std::vector<int>& owner, const std::vector<int64_t>& local) {
    const int64_t classes = net_.output_size();
    if (!b.spec_inexact) return {};
    const int outn = net_.output();
    intervals(b, outn);
    const size_t n = static_cast<size_t>(classes) * b.problem_count;
    std::vector<double> yl(n), yh(n);
    ops_->to_host(yl.data(), interval_lo(b, outn), n * sizeof(double));
    ops_->to_host(yh.data(), interval_hi(b, outn), n * sizeof(double));
    b.ilo.clear(), b.ihi.clear();  // (the last use of the intervals)
    std::fill(b.interval_ok.begin(), b.interval_ok.end(), 0);
    // The flattened rows are each problem's rows in turn.
    const size_t total = owner.size();
    std::vector<double> fix(2 * total, 0.0);
    size_t at = 0;
    for (size_t p = 0; p < b.problem_count; ++p) {
      const BoundProblem& pr = b.problems[p];
      CNNCERT_ASSERT(pr.rows == 0 || (owner[at] == static_cast<int>(p) && local[at] == 0));
      cnncert::detail::spec_rounding_bounds(pr.spec.data(), pr.rows, classes, yl.data() + p * classes,
                                            yh.data() + p * classes, fix.data() + at, fix.data() + total + at);
      at += static_cast<size_t>(pr.rows);
    }
    return fix;
  }

  /// The specification rows of every problem.
  void final_rows(Batch& b, std::vector<BoundResult>& out) {
    Ops& o = *ops_;
    const int outn = net_.output();
    const int64_t classes = net_.output_size(), n_in = net_.input_size();
    // Flattened (problem, row) pairs.
    std::vector<int> owner;
    std::vector<int64_t> local;
    for (size_t p = 0; p < b.problem_count; ++p)
      for (int64_t r = 0; r < b.problems[p].rows; ++r) owner.push_back(static_cast<int>(p)), local.push_back(r);
    const auto total = static_cast<int64_t>(owner.size());
    // The upper bounds, then the lower ones, the reported intermediate bounds (each node's lower
    // then upper, problems × size each) and the problems' flags: one download at the end.
    const int64_t slots = std::max<int64_t>(total, 1);
    size_t inter_slots = 0;
    for (const int k : b.reported) inter_slots += 2 * static_cast<size_t>(net_.node(k).size()) * b.problem_count;
    const size_t flag_slots = (b.problem_count * sizeof(int) + sizeof(double) - 1) / sizeof(double);
    Buf bounds(o, (static_cast<size_t>(2 * slots) + inter_slots + flag_slots) * sizeof(double));
    double* const up = bounds.as<double>();
    double* const lw = up + slots;
    const bool lin = b.options.want_linear;
    std::vector<float> a_lin;      // rows × n_in per pass, in flattened order
    std::vector<double> bias_lin;  // 2 × total
    if (lin) a_lin.resize(static_cast<size_t>(2 * total * n_in)), bias_lin.resize(static_cast<size_t>(2 * total));
    const std::vector<double> fix = spec_rounding(b, owner, local);  // lower fixes, then upper ones
    const int64_t chunk = chunk_rows(outn);
    for (int64_t first = 0; first < total; first += chunk) {
      const int64_t half = std::min(chunk, total - first);
      std::vector<int> prob(owner.begin() + first, owner.begin() + first + half);
      std::vector<float> init(static_cast<size_t>(2 * half * classes));
      for (int64_t r = 0; r < half; ++r) {
        const BoundProblem& p = b.problems[static_cast<size_t>(owner[static_cast<size_t>(first + r)])];
        const int64_t lr = local[static_cast<size_t>(first + r)];
        for (int64_t c = 0; c < classes; ++c) {
          const auto v = static_cast<float>(p.spec[static_cast<size_t>(lr * classes + c)]);
          init[static_cast<size_t>(r * classes + c)] = v;
          init[static_cast<size_t>((half + r) * classes + c)] = v;
        }
      }
      Buf dprob = upload(o, prob);
      Coef a;
      a.a = upload(o, init);
      Buf bias(o, static_cast<size_t>(2 * half) * sizeof(double));
      o.zero(bias.as<void>(), bias.bytes());
      Buf final_a;
      backsub(b, outn, half, std::move(a), dprob.as<int>(), bias.as<double>(), up + first, lw + first,
              lin ? &final_a : nullptr);
      if (lin) {
        const auto fa = download<float>(o, final_a, static_cast<size_t>(2 * half * n_in));
        const auto fb = download<double>(o, bias, static_cast<size_t>(2 * half));
        for (int64_t r = 0; r < half; ++r) {
          std::copy_n(fa.begin() + r * n_in, n_in, a_lin.begin() + (first + r) * n_in);                   // upper
          std::copy_n(fa.begin() + (half + r) * n_in, n_in, a_lin.begin() + (total + first + r) * n_in);  // lower
          bias_lin[static_cast<size_t>(first + r)] = fb[static_cast<size_t>(r)];
          bias_lin[static_cast<size_t>(total + first + r)] = fb[static_cast<size_t>(half + r)];
        }
      }
    }
    double* at_inter = lw + slots;
    for (const int k : b.reported) {
      const size_t n = static_cast<size_t>(net_.node(k).size()) * b.problem_count;
      o.copy(at_inter, b.lo.at(k).as<void>(), n * sizeof(double));
      o.copy(at_inter + n, b.hi.at(k).as<void>(), n * sizeof(double));
      at_inter += 2 * n;
    }
    o.copy(at_inter, b.flags.as<void>(), b.problem_count * sizeof(int));
    const auto both = download<double>(o, bounds, static_cast<size_t>(2 * slots) + inter_slots + flag_slots);
    auto from = both.begin() + 2 * slots;
    for (const int k : b.reported) {
      const auto size = static_cast<long>(net_.node(k).size()), n = size * static_cast<long>(b.problem_count);
      for (size_t p = 0; p < b.problem_count; ++p) {
        const auto lo = from + static_cast<long>(p) * size, hi = lo + n;
        out[p].intermediate.push_back({k, std::vector<double>(lo, lo + size), std::vector<double>(hi, hi + size)});
      }
      from += 2 * n;
    }
    std::vector<int> flags(b.problem_count);
    std::memcpy(flags.data(), &*from, flags.size() * sizeof(int));
    check_flags(b, flags.data(), out);
    std::vector<double> upper(both.begin(), both.begin() + total),
        lower(both.begin() + slots, both.begin() + slots + total);
    if (!fix.empty())
      for (int64_t r = 0; r < total; ++r) {
        const auto q = static_cast<size_t>(r), qu = static_cast<size_t>(total + r);
        lower[q] += fix[q], upper[q] += fix[qu];
        if (lin) bias_lin[q] += fix[qu], bias_lin[qu] += fix[q];
      }
    int64_t at = 0;
    const double inf = std::numeric_limits<double>::infinity();
    for (size_t p = 0; p < b.problem_count; ++p) {
      BoundResult& res = out[p];
      const int64_t rows = b.problems[p].rows;
      res.upper.assign(upper.begin() + at, upper.begin() + at + rows);
      res.lower.assign(lower.begin() + at, lower.begin() + at + rows);
      if (lin) {
        res.a_upper.assign(a_lin.begin() + at * n_in, a_lin.begin() + (at + rows) * n_in);
        res.a_lower.assign(a_lin.begin() + (total + at) * n_in, a_lin.begin() + (total + at + rows) * n_in);
        res.b_upper.assign(bias_lin.begin() + at, bias_lin.begin() + at + rows);
        res.b_lower.assign(bias_lin.begin() + total + at, bias_lin.begin() + total + at + rows);
      }
      at += rows;
      if (b.error[p].empty() && !(cnncert::detail::all_finite(res.lower) && cnncert::detail::all_finite(res.upper)))
        b.error[p] = cnncert::detail::kNonFiniteOutputError;
      if (!b.error[p].empty()) {
        res.error = b.error[p];
        res.lower.assign(static_cast<size_t>(rows), -inf);
        res.upper.assign(static_cast<size_t>(rows), inf);
        res.a_lower.clear(), res.a_upper.clear(), res.b_lower.clear(), res.b_upper.clear();
      }
    }
  }

  const Network& net_;
  std::unique_ptr<Ops> ops_;
  std::vector<Geometry> geo_;
  std::vector<NodeConst> consts_;
  std::vector<SkipLevel> levels_;  // detail::skip_levels
  std::vector<int> consumers_;     // per node, the nodes that read it
  bool any_skippable_ = false;     // some node's rows may be skipped (else outer bounds are of no use)
  EngineStats stats_;
};

}  // namespace

std::unique_ptr<BoundEngine> make_batched_engine(const Network& net, std::unique_ptr<Ops> ops) {
  return std::make_unique<BatchedEngine>(net, make_metered_ops(std::move(ops)));
}

}  // namespace cnncert::batched
