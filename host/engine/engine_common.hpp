#pragma once
// What the bound engines share (the reference, the fast CPU and the batched/GPU engine): node
// geometry, the window of a sliding-window op, layout maps, average-pool slopes, the bound
// schedule with MATH.md §2.5's max-pool rule, the CPU engines' relaxations and buffer cache.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cnncert/engine.hpp"
#include "cnncert/network.hpp"
#include "cnncert/shape_math.hpp"
#include "engine/batched_kernels.hpp"
#include "util/numeric.hpp"

namespace cnncert::detail {

/// Spatial view of a node: (C, H, W) for rank-3 tensors, (numel, 1, 1) otherwise.
struct Geometry {
  int64_t c = 1, h = 1, w = 1;
  int64_t size() const { return c * h * w; }
};

inline Geometry geometry(const Node& n) {
  if (n.shape.size() == 3) return {n.shape[0], n.shape[1], n.shape[2]};
  return {n.size(), 1, 1};
}

/// The input region of a problem as per-element bounds, when it is a box: the problem's own box,
/// or the ℓ∞ ball x0 ± eps clipped to the options' box; empty for a plain ball (x0, eps, norm).
struct InputBox {
  std::vector<double> lo, hi;
  bool active() const { return !lo.empty(); }
};

inline InputBox input_box(const BoundProblem& p, const BoundOptions& o) {
  InputBox b;
  if (!p.has_box() && !o.clip_to_box) return b;
  const size_t n = p.x0.size();
  b.lo.resize(n), b.hi.resize(n);
  for (size_t j = 0; j < n; ++j) {
    double lo = p.has_box() ? p.x_lower[j] : p.x0[j] - p.eps, hi = p.has_box() ? p.x_upper[j] : p.x0[j] + p.eps;
    if (o.clip_to_box) lo = std::max(lo, o.box_lo), hi = std::min(hi, o.box_hi);
    b.lo[j] = lo, b.hi[j] = std::max(lo, hi);
  }
  return b;
}

/// The problem's outer bounds (BoundProblem::outer) when they apply to it under these options,
/// indexed by node (nullptr where a node has none); empty when they do not apply.
std::vector<const NodeBounds*> usable_outer(const Network& net, const BoundProblem& p, const BoundOptions& o);

/// The region norm of the concretization (batched_kernels.hpp): a box when per-element bounds
/// apply, else the ball's norm.
inline batched::RegionNorm region_norm(Norm norm, bool box) {
  if (box) return batched::RegionNorm::Box;
  return norm == Norm::Linf ? batched::RegionNorm::Linf
         : norm == Norm::L2 ? batched::RegionNorm::L2
                            : batched::RegionNorm::L1;
}

/// Window geometry of pooling node `n` over an input of geometry `in`.
inline batched::PoolGeom pool_geom(const Node& n, const Geometry& in) {
  const PoolAttr& p = n.as<PoolAttr>();
  const Geometry og = geometry(n);
  return {p.window(), in.c, in.h, in.w, og.h, og.w};
}

/// The activation/max-pool nodes, in the order every engine gives them their input bounds and
/// relaxes them; the last "layer" of a bound() call is the specification rows.
std::vector<int> bound_schedule(const Network& net);

using batched::skip_proven;
using batched::SkipLevel;

/// Per node, its skip level. Rows may be skipped for a node whose bounds feed only
/// ReLU/LeakyReLU relaxations (a stable neuron's relaxation is exact for any bounds proving it
/// stable): not for max-pool inputs, nor for smooth activations. The pre-activations of a ReLU
/// that a max-pool reads give the max-pool its input bounds [max(l, 0), max(u, 0)] (MATH.md
/// §2.5), which depend on l and u unless u ≤ 0 ([0, 0] for any such bounds): there only neurons
/// proven ≤ 0 are skipped (none for LeakyReLU, whose [αl, αu] always depends on them). Nodes that
/// get no bounds have level Stable (unused).
std::vector<SkipLevel> skip_levels(const Network& net);

/// Whether some node of the bound schedule has its input at a skip level other than None.
bool any_skippable(const Network& net, const std::vector<SkipLevel>& levels);

/// MATH.md §2.5: when max-pool node k reads a monotone activation, its input bounds are
/// [σ(l'), σ(u')] of that activation's pre-activation bounds (for ReLU [max(l',0), max(u',0)], the
/// original CNN-Cert's rule), not a back-substitution. Returns the activation's spec and sets
/// `pre` (the pre-activation node) when the rule applies.
bool maxpool_input_rule(const Network& net, int k, const Method& m, batched::ActSpec& spec, int& pre);

/// σ applied to bounds (the rule above) on the host.
void activation_of_bounds(const batched::ActSpec& s, const std::vector<double>& lo, const std::vector<double>& hi,
                          std::vector<double>& out_lo, std::vector<double>& out_hi);

/// Relaxation of activation node `n` for every neuron from its input bounds (CPU engines).
void relax_activation_node(const Node& n, const Method& m, const std::vector<double>& lo, const std::vector<double>& hi,
                           std::vector<double>& al, std::vector<double>& bl, std::vector<double>& au,
                           std::vector<double>& bu);

/// CNN-Cert's max-pool relaxation (MATH.md §2.5) of node n for one problem: per output neuron
/// kernel_h·kernel_w slopes and the upper and lower intercepts (CPU engines).
struct PoolRelax {
  std::vector<double> slopes, beta_u, beta_l;
};
PoolRelax relax_maxpool_node(const Node& n, const Geometry& in, const std::vector<double>& lo,
                             const std::vector<double>& hi);

/// The max-pool input rule and the relaxation of node k on a CPU engine's per-problem state `s`
/// (vectors lo, hi, al, bl, au, bu per node and a map `pools`), shared by the reference and the
/// fast engine. apply_maxpool_input_rule returns false when the rule does not apply.
template <class State>
bool apply_maxpool_input_rule(const Network& net, int k, State& s) {
  batched::ActSpec spec;
  int pre = -1;
  if (!maxpool_input_rule(net, k, s.o->method, spec, pre)) return false;
  const auto src = static_cast<size_t>(net.node(k).inputs[0]);
  activation_of_bounds(spec, s.lo[static_cast<size_t>(pre)], s.hi[static_cast<size_t>(pre)], s.lo[src], s.hi[src]);
  return true;
}
template <class State>
void relax_cpu_node(const Network& net, const std::vector<Geometry>& geo, int k, State& s) {
  const Node& n = net.node(k);
  const auto src = static_cast<size_t>(n.inputs[0]);
  if (n.op == OpKind::MaxPool) {
    s.pools[k] = relax_maxpool_node(n, geo[src], s.lo[src], s.hi[src]);
    return;
  }
  const auto i = static_cast<size_t>(k);
  relax_activation_node(n, s.o->method, s.lo[src], s.hi[src], s.slope_l[i], s.icpt_l[i], s.slope_u[i], s.icpt_u[i]);
}

/// Per-thread cache of coefficient buffers: the back-substitutions allocate and free same-sized
/// tensors at every step, and fresh large allocations cost page faults.
template <class T>
class BufferPoolOf {
 public:
  /// A buffer of n zeros.
  static std::vector<T> take(size_t n) {
    auto& free = list();
    for (size_t i = free.size(); i-- > 0;)
      if (free[i].capacity() >= n) {
        std::vector<T> v = std::move(free[i]);
        free.erase(free.begin() + static_cast<long>(i));
        v.assign(n, T(0));
        return v;
      }
    return std::vector<T>(n, T(0));
  }
  static void give(std::vector<T>&& v) {
    if (v.capacity() == 0) return;
    auto& free = list();
    if (free.size() >= 16) free.erase(free.begin());  // bound the cache
    free.push_back(std::move(v));
  }

 private:
  static std::vector<std::vector<T>>& list() {
    thread_local std::vector<std::vector<T>> free;
    return free;
  }
};
using BufferPool = BufferPoolOf<double>;

/// GFLOP/s of one thread's n × n × n GEMM through the fast engine's GEMM routine (BLAS when the
/// build has it), best of `repeats`: the peak the benchmark compares the back-substitution with.
double gemm_peak_gflops(int64_t n = 1024, int repeats = 5);

/// The error of a problem whose output bounds are not finite (every engine fails it closed).
inline constexpr const char* kNonFiniteOutputError = "the output bounds are not finite";

/// Fails `res` closed when its output bounds are not finite: the error, and bounds −∞ / +∞.
inline void fail_closed_unless_finite(BoundResult& res) {
  if (all_finite(res.lower) && all_finite(res.upper)) return;
  res.error = kNonFiniteOutputError;
  for (double& v : res.lower) v = -std::numeric_limits<double>::infinity();
  for (double& v : res.upper) v = std::numeric_limits<double>::infinity();
}

/// The error of a problem whose intermediate bounds at node `name` fail reliable_bound.
inline std::string unreliable_bounds_error(const std::string& name) {
  return "the bounds of node '" + name +
         "' are not finite or exceed 1e12 in magnitude (not reliable in floating point)";
}

/// The float32 engines hold weights and coefficients in float32: a value of `values` beyond its
/// range is an InvalidArgument naming `what` and the engine (pointing to --engine reference).
void check_float32_range(const std::vector<double>& values, const std::string& what, const char* engine);

/// Whether specification `spec` has a coefficient that float32 cannot hold exactly (0.1), which
/// spec_rounding_bounds then corrects for; refuses coefficients beyond float32's range
/// (check_float32_range).
bool spec_inexact_in_float32(const std::vector<double>& spec, const char* engine);

/// The float32 engines bound c̃ᵀy for a specification row c held as c̃ = float32(c). Per row r of
/// `rows` rows of `classes` coefficients, [lo[r], hi[r]] bounds δᵀy (δ = c − c̃, exact in double)
/// over the output's interval bounds [yl, yh] (`classes` values), widened outward for its own
/// rounding, ±∞ where an interval needed is not finite (fails closed): added to c̃ᵀy's bounds, it
/// keeps them sound for cᵀy.
void spec_rounding_bounds(const double* spec, int64_t rows, int64_t classes, const double* yl, const double* yh,
                          double* lo, double* hi);

/// For a Reshape/Transpose/Pad node `n` with input `src`: the input element each output element
/// reads (−1 for padding).
std::vector<int64_t> layout_map(const Node& n, const Node& src);
/// Slopes of average-pool node `n` over input `src`: out_size × kernel_h·kernel_w values
/// (1/count on counted taps).
std::vector<double> avgpool_slopes(const Node& n, const Node& src);
/// The same over an input of geometry `in`.
std::vector<double> avgpool_slopes(const Node& n, const Geometry& in);

/// Calls f(i) for i in [0, n) on up to `threads` threads (dynamic assignment); rethrows the
/// first exception.
template <class F>
void parallel_for(int64_t n, int threads, F&& f) {
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex m;
  std::vector<std::thread> pool;
  const int t = static_cast<int>(std::min<int64_t>(threads, n));
  for (int k = 0; k < t; ++k)
    pool.emplace_back([&] {
      for (int64_t i; (i = next++) < n;) {
        try {
          f(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(m);
          if (!error) error = std::current_exception();
        }
      }
    });
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace cnncert::detail
