#pragma once
// Element-level bodies of the batched (GPU) engine's operations, shared by the CUDA kernels
// (cuda/cuda_ops.cu) and the host float implementation (host/engine/host_ops.cpp), so that the logic
// the GPU runs is also what the CPU tests exercise. Only arithmetic here: no allocation, no I/O.
//
// Layout: a coefficient tensor of a batch holds 2·half rows; rows [0, half) are the upper-bound
// pass, rows [half, 2·half) the lower-bound pass of the same linear functions. Row r belongs to
// problem prob[r % half]. Each row is the node's tensor in row-major (C, H, W) order.
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
