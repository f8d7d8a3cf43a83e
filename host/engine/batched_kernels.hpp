#pragma once
// Element-level bodies of the batched (GPU) engine's operations, shared by the CUDA kernels
// (cuda/cuda_ops.cu) and the host float implementation (host/engine/host_ops.cpp), so that the logic
// the GPU runs is also what the CPU tests exercise. Only arithmetic here: no allocation, no I/O.
//
// Layout: a coefficient tensor of a batch holds 2·half rows; rows [0, half) are the upper-bound
// pass, rows [half, 2·half) the lower-bound pass of the same linear functions. Row r belongs to
// problem prob[r % half]. Each row is the node's tensor in row-major (C, H, W) order.
#include <array>
#include <cmath>
#include <cstdint>

#include "cnncert/network.hpp"
#include "cnncert/relaxation.hpp"
#include "cnncert/shape_math.hpp"

namespace cnncert::batched {

/// Geometry of a convolution (weights [out][in/groups][kh][kw]) between two (C, H, W) maps.
struct ConvGeom : detail::Window {
  int64_t cin = 1, hin = 1, win = 1, cout = 1, hout = 1, wout = 1, groups = 1;
};

/// Geometry of a pooling window (also used for max-pool relaxations).
struct PoolGeom : detail::Window {
  int64_t c = 1, hin = 1, win = 1, hout = 1, wout = 1;
  CNNCERT_HD int64_t in_size() const { return c * hin * win; }
  CNNCERT_HD int64_t out_size() const { return c * hout * wout; }
};

/// Floating-point operations of conv_back over `rows` rows: a multiply and an add per output
/// value and tap (padding taps included, as a library convolution computes them).
inline double conv_back_flops(const ConvGeom& g, int64_t rows) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(g.cout * g.hout * g.wout) *
         static_cast<double>(g.cin / g.groups * g.kh * g.kw);
}

/// conv_transpose of one row at one input element (ci, iy, ix): Σ over taps and output
/// channels of the row's coefficient times the weight.
CNNCERT_HD inline float conv_back_elem(const ConvGeom& g, const float* a_row, const float* w, int64_t ci, int64_t iy,
                                       int64_t ix) {
  const int64_t cin_g = g.cin / g.groups, cout_g = g.cout / g.groups;
  const int64_t grp = ci / cin_g, cl = ci % cin_g;
  float sum = 0;
  g.for_each_output(g.hout, g.wout, iy, ix, [&](int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
    for (int64_t co = grp * cout_g; co < (grp + 1) * cout_g; ++co)
      sum += a_row[(co * g.hout + oy) * g.wout + ox] * w[((co * cin_g + cl) * g.kh + ky) * g.kw + kx];
  });
  return sum;
}

/// Pooling back-substitution of one row at one input element (c, iy, ix): Σ over the windows
/// that contain it of the row's coefficient times that window's slope at this tap.
/// `slopes` holds out_size × kk values of the row's problem.
CNNCERT_HD inline float pool_back_elem(const PoolGeom& g, const float* a_row, const float* slopes, int64_t c,
                                       int64_t iy, int64_t ix) {
  float sum = 0;
  g.for_each_output(g.hout, g.wout, iy, ix, [&](int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
    const int64_t j = (c * g.hout + oy) * g.wout + ox;
    sum += a_row[j] * slopes[j * g.kk() + ky * g.kw + kx];
  });
  return sum;
}

// ---- patches: rows that hold a window of their node's map (the fast algorithm) ----

/// The window of a (C, map_h, map_w) map that windowed rows hold: all c channels, h rows and w
/// columns from each row's own origin (y0, x0) (origins: 2 values per row of the upper half, the
/// lower half's rows use their upper twin's). A window may reach outside the map; its values
/// there are 0.
struct WinGeom {
  int64_t c = 1, h = 1, w = 1, map_h = 1, map_w = 1;
  CNNCERT_HD int64_t size() const { return c * h * w; }
  /// The map index of window element e of a row with origin (y0, x0), or −1 outside the map.
  CNNCERT_HD int64_t map_index(int64_t y0, int64_t x0, int64_t e) const {
    const int64_t ch = e / (h * w), y = y0 + (e / w) % h, x = x0 + e % w;
    return (y < 0 || y >= map_h || x < 0 || x >= map_w) ? -1 : (ch * map_h + y) * map_w + x;
  }
};

/// The element-wise relaxation that a fused back-substitution (Ops::conv_back_window_relax)
/// applies to its output rows: the arguments of elementwise_back_window after its rows.
struct RelaxStep {
  const int* prob = nullptr;
  int64_t stride = 0, div = 1;
  const float *al = nullptr, *bl = nullptr, *au = nullptr, *bu = nullptr;
  double* bias = nullptr;
  const float* then_bias = nullptr;
  int64_t then_div = 1;
};
/// The device arrays a RelaxStep points to (the CUDA emulation checks them at each launch).
inline std::array<const void*, 7> device_pointers(const RelaxStep& r) {
  return {r.prob, r.al, r.bl, r.au, r.bu, r.bias, r.then_bias};
}
// A member added to RelaxStep: a pointer goes into device_pointers above; then update the size.
static_assert(sizeof(void*) != 8 || sizeof(RelaxStep) == 80, "RelaxStep changed: check device_pointers");

/// Floating-point operations of conv_back_window over 2·half rows of (h, w) windows (as
/// conv_back_flops, per window value).
inline double conv_back_window_flops(const ConvGeom& g, int64_t half, int64_t h, int64_t w) {
  return 2.0 * static_cast<double>(2 * half * g.cout * h * w) * static_cast<double>(g.cin / g.groups * g.kh * g.kw);
}

/// conv_back_elem for windowed rows: the row holds an (h, w) window of the output map from
/// (oy0, ox0); the result is element (ci, wy, wx) of its window at the input, which starts at
/// (start_y(oy0), start_x(ox0)) and spans span_y(h) × span_x(w). The same terms in the same order
/// as conv_back_elem of the row made dense (0 outside the map).
CNNCERT_HD inline float conv_back_window_elem(const ConvGeom& g, int64_t h, int64_t w, int64_t oy0, int64_t ox0,
                                              const float* a_row, const float* wt, int64_t ci, int64_t wy, int64_t wx) {
  const int64_t iy = g.start_y(oy0) + wy, ix = g.start_x(ox0) + wx;
  if (iy < 0 || iy >= g.hin || ix < 0 || ix >= g.win) return 0;
  const int64_t cin_g = g.cin / g.groups, cout_g = g.cout / g.groups;
  const int64_t grp = ci / cin_g, cl = ci % cin_g;
  float sum = 0;
  g.for_each_output(g.hout, g.wout, iy, ix, [&](int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
    const int64_t ly = oy - oy0, lx = ox - ox0;
    if (ly < 0 || ly >= h || lx < 0 || lx >= w) return;
    for (int64_t co = grp * cout_g; co < (grp + 1) * cout_g; ++co)
      sum += a_row[(co * h + ly) * w + lx] * wt[((co * cin_g + cl) * g.kh + ky) * g.kw + kx];
  });
  return sum;
}

/// pool_back_elem for windowed rows (as conv_back_window_elem); `slopes` as for pool_back_elem.
CNNCERT_HD inline float pool_back_window_elem(const PoolGeom& g, int64_t h, int64_t w, int64_t oy0, int64_t ox0,
                                              const float* a_row, const float* slopes, int64_t c, int64_t wy,
                                              int64_t wx) {
  const int64_t iy = g.start_y(oy0) + wy, ix = g.start_x(ox0) + wx;
  if (iy < 0 || iy >= g.hin || ix < 0 || ix >= g.win) return 0;
  float sum = 0;
  g.for_each_output(g.hout, g.wout, iy, ix, [&](int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
    const int64_t ly = oy - oy0, lx = ox - ox0;
    if (ly < 0 || ly >= h || lx < 0 || lx >= w) return;
    const int64_t j = (c * g.hout + oy) * g.wout + ox;
    sum += a_row[(c * h + ly) * w + lx] * slopes[j * g.kk() + ky * g.kw + kx];
  });
  return sum;
}

/// One coefficient through an element-wise relaxation. The upper pass uses (α_U, β_U) for a
/// positive coefficient and (α_L, β_L) for a negative one; the lower pass the reverse.
/// Writes the new coefficient (when `al` is given) and returns the bias contribution.
CNNCERT_HD inline double elementwise_elem(float& v, bool upper, const float* al, const float* bl, const float* au,
                                          const float* bu, int64_t idx) {
  const float x = v;
  if (x == 0) return 0;
  const bool use_u = (x > 0) == upper;
  if (al) v = x * (use_u ? au[idx] : al[idx]);
  return static_cast<double>(x) * static_cast<double>(use_u ? bu[idx] : bl[idx]);
}

/// Norm of the input region for concretization.
enum class RegionNorm : int { Linf = 0, L2 = 1, L1 = 2, Box = 3 };

/// Contribution of one input coefficient to a row's centre term and norm term: `x` is the
/// element's centre, or for a box (RegionNorm::Box) its lower bound and `x_hi` its upper bound.
CNNCERT_HD inline void concretize_elem(double coef, double x, double x_hi, RegionNorm n, double& centre, double& norm) {
  if (coef == 0) return;
  switch (n) {
    case RegionNorm::Box: {
      const double lo = x, hi = x_hi;
      centre += coef * (lo + hi) / 2;
      norm += fabs(coef) * ((hi - lo) / 2 > 0 ? (hi - lo) / 2 : 0.0);
      return;
    }
    case RegionNorm::Linf: norm += fabs(coef); break;
    case RegionNorm::L2: norm += coef * coef; break;
    case RegionNorm::L1: norm = fabs(coef) > norm ? fabs(coef) : norm; break;
  }
  centre += coef * x;
}

/// Combines two partial norm terms (sum, or max for the ℓ1 ball's ∞-norm).
CNNCERT_HD inline double combine_norm(RegionNorm n, double a, double b) {
  return n == RegionNorm::L1 ? (a > b ? a : b) : a + b;
}

/// The final value of a row from its centre and norm terms and bias.
CNNCERT_HD inline double concretize_finish(bool upper, double centre, double norm, double bias, double eps,
                                           RegionNorm n) {
  double r = norm;
  if (n != RegionNorm::Box) r = eps * (n == RegionNorm::L2 ? sqrt(norm) : norm);
  const double val = centre + bias;
  return upper ? val + r : val - r;
}

/// Stores row r's concretized bound: rows of the upper half in upper[r], of the lower half in
/// lower[r − half].
CNNCERT_HD inline void store_bound(int64_t r, int64_t half, double v, double* upper, double* lower) {
  if (r < half)
    upper[r] = v;
  else
    lower[r - half] = v;
}

/// An activation node's function and the relaxation rules of the method.
struct ActSpec {
  ActKind kind = ActKind::Relu;
  double alpha = 0.01;
  ReluRule relu = ReluRule::Adaptive;
  SmoothRule smooth = SmoothRule::CnnCert;
};

/// Relaxation of one activation neuron from its input bounds (MATH.md §2), in double.
CNNCERT_HD inline Relaxation<double> relax_activation(const ActSpec& s, double l, double u) {
  const ActTraits t = act_traits(s.kind);
  switch (t.family) {
    case ActFamily::PiecewiseLinear:  // each such kind has its own rule (a bend elsewhere than 0 needs one)
      if (s.kind == ActKind::Relu) return relax_relu(l, u, s.relu);
      if (s.kind == ActKind::LeakyRelu) return relax_leaky_relu(l, u, s.alpha, s.relu);
      break;
    case ActFamily::Smooth: return relax_smooth(t.smooth, l, u, s.smooth);
    case ActFamily::General: break;
  }
  if (t.family == ActFamily::General) return relax_general(t.general, s.alpha, l, u);
  return {NAN, NAN, NAN, NAN};  // no rule: NaN lines fail closed
}

/// Intermediate bounds beyond this magnitude are not trusted: the engines compute in floating point
/// without outward rounding (as CNN-Cert does), and at such magnitudes the rounding of a layer's
/// sums exceeds the effect of the input perturbation (a fuzzed residual net with 1e37 biases gave
/// "exact" bounds that excluded the network's value). Such a problem fails closed with an error:
/// not certified. Real networks stay many orders of magnitude below (|bounds| ~ 1..1e3).
constexpr double kMaxReliableBound = 1e12;

/// False for NaN, ±inf and |v| > kMaxReliableBound.
CNNCERT_HD inline bool reliable_bound(double v) {
  return fabs(v) <= kMaxReliableBound;
}

/// Whether the activation is monotone non-decreasing, so that [σ(l), σ(u)] bounds σ(z) on [l, u].
CNNCERT_HD inline bool activation_monotone(const ActSpec& s) {
  return act_monotone(s.kind, s.alpha);
}

/// σ(z) in double (the forward function of the activation).
CNNCERT_HD inline double activation_value(const ActSpec& s, double z) {
  const ActTraits t = act_traits(s.kind);
  switch (t.family) {
    case ActFamily::PiecewiseLinear:
      if (s.kind == ActKind::Relu) return z > 0 ? z : 0.0;
      if (s.kind == ActKind::LeakyRelu) return z >= 0 ? z : s.alpha * z;
      break;
    case ActFamily::Smooth: return cnncert::detail::smooth_f(t.smooth, z);
    case ActFamily::General: return cnncert::detail::general_f(t.general, s.alpha, z);
  }
  return z * NAN;  // no other kind: NaN bounds fail closed
}

/// Bounds of σ(z) for z in [l, u]: [σ(l), σ(u)] for a monotone activation, the range of the
/// general ones that are not (GELU and SiLU dip below both ends around their minimum).
CNNCERT_HD inline void activation_range(const ActSpec& s, double l, double u, double& lo, double& hi) {
  const ActTraits t = act_traits(s.kind);
  if (t.family == ActFamily::General && !t.monotone) {
    general_range(t.general, s.alpha, l, u, lo, hi);
    return;
  }
  lo = activation_value(s, l), hi = activation_value(s, u);
}

// ---- interval propagation and row selection (the fast algorithm's stability test) ----

/// Widening of every propagated interval: the interval arithmetic is not outward rounded. A sum
/// of `terms` products whose magnitudes add up to `mag` is off by at most about terms · 2⁻⁵³ · mag
/// (the standard bound for recursive summation); the slack is 8× that plus 1e-12 of the result,
/// so the intervals contain the exact ones (of the network as the engine holds it: float32
/// weights in the batched engine) and the stability decisions stay sound. The absolute floor
/// kWidenFloor covers the rounding near underflow (at most 2⁻¹⁰⁷⁵ per operation); it is far above
/// that so that a widened zero-width interval (a ReLU proven inactive: [0, 0]) times a weight stays
/// a normal number: with DBL_MIN, 8 % of the interval terms of the shipped CNN were subnormal,
/// which costs ~100 cycles each and made interval propagation half the fast engine's time.
constexpr double kWidenFloor = 0x1p-900;
CNNCERT_HD inline void widen_interval(double& lo, double& hi, double mag = 0, int64_t terms = 0) {
  const double m = 1e-12 * (fabs(lo) + fabs(hi)) + 8.0 * static_cast<double>(terms + 2) * 0x1p-53 * mag + kWidenFloor;
  lo -= m, hi += m;
}

/// The node kinds of interval propagation (every kind of op but the input).
enum class IntervalOp : int { Conv, Dense, ScaleShift, Activation, MaxPool, AvgPool, Add, Layout };

/// One node of interval propagation: its kind and constants ("device" pointers).
struct IntervalStep {
  IntervalOp op = IntervalOp::Layout;
  ConvGeom conv;                 ///< Conv
  PoolGeom pool;                 ///< MaxPool, AvgPool
  int64_t n_in = 0, n_out = 0;   ///< elements of the (first) input and of the output, per problem
  const float* w = nullptr;      ///< Conv/Dense weights, ScaleShift scales, AvgPool slopes (n_out × kk)
  const float* b = nullptr;      ///< Conv/Dense biases, ScaleShift shifts
  const int64_t* map = nullptr;  ///< Layout: the input element of each output element (−1: padding, 0)
  ActSpec act;                   ///< Activation
};
/// The device arrays an IntervalStep points to (the CUDA emulation checks them at each launch).
inline std::array<const void*, 3> device_pointers(const IntervalStep& s) {
  return {s.w, s.b, s.map};
}
// A member added to IntervalStep: a pointer goes into device_pointers above; then update the size.
static_assert(sizeof(void*) != 8 || sizeof(IntervalStep) == 328, "IntervalStep changed: check device_pointers");

/// Interval bounds [l, u] of output element j of one problem from its input bounds lo/hi (and,
/// for Add, the second input's lo2/hi2), widened (widen_interval) except for pure copies.
CNNCERT_HD inline void interval_elem(const IntervalStep& s, const double* lo, const double* hi, const double* lo2,
                                     const double* hi2, int64_t j, double& l, double& u) {
  double mid = 0, rad = 0, mag = 0;
  int64_t terms = 0;
  auto term = [&](double w, double lj, double hj) {  // mid ± rad += w · [lj, hj]
    const double m = (lj + hj) / 2, r = (hj - lj) / 2;
    mid += w * m, rad += fabs(w) * r, mag += fabs(w) * (fabs(m) + r);
  };
  switch (s.op) {
    case IntervalOp::Conv: {
      const ConvGeom& g = s.conv;
      const int64_t plane = g.hout * g.wout, co = j / plane, oy = (j % plane) / g.wout, ox = j % g.wout;
      const int64_t cin_g = g.cin / g.groups, cout_g = g.cout / g.groups, grp = co / cout_g;
      mid = s.b[co], mag = fabs(mid), terms = cin_g * g.kk() + 1;
      for (int64_t cl = 0; cl < cin_g; ++cl) {
        const float* wc = s.w + (co * cin_g + cl) * g.kk();
        const int64_t base = (grp * cin_g + cl) * g.hin;
        g.for_each_input(g.hin, g.win, oy, ox, [&](int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
          const int64_t i = (base + iy) * g.win + ix;
          term(wc[ky * g.kw + kx], lo[i], hi[i]);
        });
      }
      break;
    }
    case IntervalOp::Dense: {
      const float* wr = s.w + j * s.n_in;
      mid = s.b[j], mag = fabs(mid), terms = s.n_in + 1;
      for (int64_t i = 0; i < s.n_in; ++i) term(wr[i], lo[i], hi[i]);
      break;
    }
    case IntervalOp::AvgPool: {
      const PoolGeom& g = s.pool;
      const int64_t plane = g.hout * g.wout, c = j / plane, oy = (j % plane) / g.wout, ox = j % g.wout;
      terms = g.kk();
      g.for_each_input(g.hin, g.win, oy, ox, [&](int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
        const int64_t i = (c * g.hin + iy) * g.win + ix;
        term(s.w[j * g.kk() + ky * g.kw + kx], lo[i], hi[i]);
      });
      break;
    }
    case IntervalOp::MaxPool: {
      const PoolGeom& g = s.pool;
      const int64_t plane = g.hout * g.wout, c = j / plane, oy = (j % plane) / g.wout, ox = j % g.wout;
      l = -INFINITY, u = -INFINITY;
      g.for_each_input(g.hin, g.win, oy, ox, [&](int64_t, int64_t, int64_t iy, int64_t ix) {
        const int64_t i = (c * g.hin + iy) * g.win + ix;
        l = lo[i] > l ? lo[i] : l, u = hi[i] > u ? hi[i] : u;
      });
      widen_interval(l, u, 0, g.kk());
      return;
    }
    case IntervalOp::ScaleShift: {
      const double x = s.w[j] * lo[j] + s.b[j], y = s.w[j] * hi[j] + s.b[j];
      l = x < y ? x : y, u = x < y ? y : x;
      widen_interval(l, u, fabs(s.w[j]) * (fabs(lo[j]) + fabs(hi[j])) + fabs(s.b[j]), 2);  // (the shift may cancel)
      return;
    }
    case IntervalOp::Activation:  // the range (GELU/SiLU dip below both ends)
      activation_range(s.act, lo[j], hi[j], l, u);
      widen_interval(l, u);
      return;
    case IntervalOp::Add:
      l = lo[j] + lo2[j], u = hi[j] + hi2[j];
      widen_interval(l, u, fabs(lo[j]) + fabs(lo2[j]) + fabs(hi[j]) + fabs(hi2[j]), 2);
      return;
    case IntervalOp::Layout: {
      const int64_t m = s.map[j];
      l = m >= 0 ? lo[m] : 0.0, u = m >= 0 ? hi[m] : 0.0;
      return;
    }
  }
  l = mid - rad, u = mid + rad;
  widen_interval(l, u, mag, terms);
}

/// Which neurons of a node may go without a back-substitution row when cheaper sound bounds
/// (interval propagation, outer bounds) settle them: none, only those proven ≤ 0, or any proven
/// stable (one sign). detail::skip_levels gives each node its level.
enum class SkipLevel : char { None = 0, NonPositive = 1, Stable = 2 };

/// Whether bounds [l, u] let a neuron go without a row at skip level `s`.
CNNCERT_HD inline bool skip_proven(SkipLevel s, double l, double u) {
  return s == SkipLevel::Stable ? !(l < 0 && u > 0) : s == SkipLevel::NonPositive && u <= 0;
}

/// Verdicts of select_elem.
enum : unsigned char { kRowSkipped = 0, kRowNeeded = 1, kRowSkippedByOuter = 2 };

/// Row selection of one neuron with interval bounds [l, u] and, when `olo` is given, outer
/// bounds [olo, ohi] (of a larger ball): [l, u] ∩ [olo, ohi] goes to out_l/out_u (a NaN outer
/// bound is ignored); returns kRowNeeded unless that proves the neuron at skip level `level` with
/// reliable bounds (kRowSkipped when the interval alone does, kRowSkippedByOuter otherwise).
CNNCERT_HD inline unsigned char select_elem(SkipLevel level, double l, double u, const double* olo, const double* ohi,
                                            int64_t i, double& out_l, double& out_u) {
  const bool by_interval = skip_proven(level, l, u);
  if (olo) {
    if (olo[i] > l) l = olo[i];
    if (ohi[i] < u) u = ohi[i];
  }
  out_l = l, out_u = u;
  if (!skip_proven(level, l, u) || !(l <= u) || !reliable_bound(l) || !reliable_bound(u)) return kRowNeeded;
  return by_interval ? kRowSkipped : kRowSkippedByOuter;
}

namespace detail {
template <class T>
CNNCERT_HD inline T clamp_like_std(T v, T lo, T hi) {
  return v < lo ? lo : (hi < v ? hi : v);
}
}  // namespace detail

/// CNN-Cert's max-pool relaxation (MATH.md §2.5) of the output neuron (c, oy, ox) from the
/// bounds `lo`, `hi` of the input map: slopes per window tap (kk values, 0 off the candidates
/// and on padding) and the upper and lower intercepts. Used by the CPU engine too.
template <class T, class S>
CNNCERT_HD inline void relax_maxpool_window(const PoolGeom& g, int64_t c, int64_t oy, int64_t ox, const T* lo,
                                            const T* hi, S* slopes, T& beta_u, T& beta_l) {
  const T inf = INFINITY;
  for (int64_t q = 0; q < g.kk(); ++q) slopes[q] = 0;
  // Visits the window members (padding excluded) in order: f(tap, input index).
  auto each = [&](auto&& f) {
    g.for_each_input(g.hin, g.win, oy, ox, [&](int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
      f(ky * g.kw + kx, (c * g.hin + iy) * g.win + ix);
    });
  };
  T max_l = -inf;
  each([&](int64_t, int64_t i) { max_l = lo[i] > max_l ? lo[i] : max_l; });
  // candidates: inputs that can be the maximum
  T min_l = inf, max_u = -inf, gamma = 0;
  int64_t n_equal = 0;
  each([&](int64_t, int64_t i) {
    if (!(hi[i] >= max_l)) return;
    min_l = lo[i] < min_l ? lo[i] : min_l;
    max_u = hi[i] > max_u ? hi[i] : max_u;
    if (lo[i] == hi[i]) {
      if (n_equal == 0) gamma = lo[i];
      ++n_equal;
    }
  });
  if (n_equal == 0) {
    T num = 0, den = 0, max_sl = -inf, min_su = inf;
    each([&](int64_t, int64_t i) {
      if (!(hi[i] >= max_l)) return;
      const T l = lo[i], u = hi[i];
      num += u / (u - l);
      den += 1 / (u - l);
      max_sl = l > max_sl ? l : max_sl;
      min_su = u < min_su ? u : min_su;
    });
    gamma = detail::clamp_like_std((num - 1) / den, max_sl, min_su);
  }
  T beta = gamma, sum_w = 0;
  each([&](int64_t q, int64_t i) {
    if (!(hi[i] >= max_l) || lo[i] == hi[i]) return;
    const T w = (hi[i] - gamma) / (hi[i] - lo[i]);
    slopes[q] = static_cast<S>(w);
    sum_w += w;
    beta -= w * lo[i];
  });
  if (n_equal > 0) {
    const T share = detail::clamp_like_std((1 - sum_w) / static_cast<T>(n_equal), T(0), T(1));
    each([&](int64_t q, int64_t i) {
      if (!(hi[i] >= max_l) || lo[i] != hi[i]) return;
      slopes[q] = static_cast<S>(share);
      sum_w += share;
      beta -= share * lo[i];
    });
  }
  beta_u = beta;
  beta_l = sum_w <= 1 ? min_l * (1 - sum_w) : max_u * (1 - sum_w);
}

}  // namespace cnncert::batched
