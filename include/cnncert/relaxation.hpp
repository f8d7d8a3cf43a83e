#pragma once
/// \file relaxation.hpp
/// Linear relaxations of activations (MATH.md §2), usable from host and device code.
/// Every function returns lines  alpha_l·z + beta_l ≤ σ(z) ≤ alpha_u·z + beta_u  on [l, u].

#include <cmath>

#include "cnncert/shape_math.hpp"  // CNNCERT_HD

namespace cnncert {

/// Relaxation of one neuron.
template <class T>
struct Relaxation {
  T alpha_l, beta_l, alpha_u, beta_u;
};

/// ReLU lower-bound slope rule for unstable neurons.
enum class ReluRule {
  Fastlin,   ///< α_L = u/(u−l) (CNN-Cert-Relu, Fast-Lin); active iff l > 0
  Adaptive,  ///< α_L = 1 if u ≥ −l else 0 (CNN-Cert-Ada, CROWN-Ada); active iff l ≥ 0
};

/// Relaxation family for sigmoid, tanh, arctan and erf.
enum class SmoothRule {
  CnnCert,   ///< CNN-Cert's general-activation bounds (§2.2)
  DeepCert,  ///< DeepCert's fine-grained bounds (§2.3)
  Crown,     ///< sound CROWN-style bounds (§2.4)
};

/// The smooth (S-shaped: convex below 0, concave above) activations.
enum class Smooth { Sigmoid, Tanh, Atan, Erf };

namespace detail {

template <class T>
CNNCERT_HD inline T smooth_f(Smooth s, T z) {
  switch (s) {
    case Smooth::Sigmoid: return T(1) / (T(1) + exp(-z));
    case Smooth::Tanh: return tanh(z);
    case Smooth::Erf: return erf(z);
    default: return atan(z);
  }
}

template <class T>
CNNCERT_HD inline T smooth_df(Smooth s, T z) {
  switch (s) {
    case Smooth::Sigmoid: {
      const T y = T(1) / (T(1) + exp(-z));
      return y * (T(1) - y);
    }
    case Smooth::Tanh: {
      const T y = tanh(z);
      return T(1) - y * y;
    }
    case Smooth::Erf: return T(1.12837916709551257390) * exp(-z * z);  // 2/√π e^(−z²)
    default: return T(1) / (T(1) + z * z);
  }
}

/// Tangent line of σ at d.
template <class T>
CNNCERT_HD inline void tangent(Smooth s, T d, T& alpha, T& beta) {
  alpha = smooth_df(s, d);
  beta = smooth_f(s, d) - alpha * d;
}

/// Line through (p, σ(p)) with slope k.
template <class T>
CNNCERT_HD inline void through(Smooth s, T p, T k, T& alpha, T& beta) {
  alpha = k;
  beta = smooth_f(s, p) - p * k;
}

constexpr int kBisectionSteps = 20;

/// §2.2 mixed case (l < 0 < u), upper line.
template <class T>
CNNCERT_HD inline void cnncert_mixed_upper(Smooth s, T l, T u, T& alpha, T& beta) {
  const T fl = smooth_f(s, l);
  T lo = 0, hi = u;
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    if ((smooth_f(s, g) - fl) / (g - l) >= smooth_df(s, g))
      hi = g;
    else
      lo = g;
  }
  const T d = hi;
  const T slope = (smooth_f(s, d) - fl) / (d - l);
  if (smooth_df(s, d) < slope)
    tangent(s, d, alpha, beta);
  else
    through(s, l, slope, alpha, beta);
}

/// §2.2 mixed case (l < 0 < u), lower line.
template <class T>
CNNCERT_HD inline void cnncert_mixed_lower(Smooth s, T l, T u, T& alpha, T& beta) {
  const T fu = smooth_f(s, u);
  T lo = l, hi = 0;
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    if ((fu - smooth_f(s, g)) / (u - g) >= smooth_df(s, g))
      lo = g;
    else
      hi = g;
  }
  const T d = lo;
  const T slope = (smooth_f(s, d) - fu) / (d - u);
  if (smooth_df(s, d) < slope)
    tangent(s, d, alpha, beta);
  else
    through(s, u, slope, alpha, beta);
}

/// DeepCert's search for σ′(d) = k on the concave side (returns hi).
template <class T>
CNNCERT_HD inline T deepcert_concave_point(Smooth s, T lo, T hi, T k) {
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    const T dg = smooth_df(s, g);
    if (k > dg)
      hi = g;
    else if (k < dg)
      lo = g;
    else
      return g;
  }
  return hi;
}

/// DeepCert's search for σ′(d) = k on the convex side (returns lo).
template <class T>
CNNCERT_HD inline T deepcert_convex_point(Smooth s, T lo, T hi, T k) {
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    const T dg = smooth_df(s, g);
    if (k > dg)
      lo = g;
    else if (k < dg)
      hi = g;
    else
      return g;
  }
  return lo;
}

}  // namespace detail

/// ReLU relaxation (§2.1).
template <class T>
CNNCERT_HD inline Relaxation<T> relax_relu(T l, T u, ReluRule rule) {
  const bool active = rule == ReluRule::Adaptive ? l >= T(0) : l > T(0);
  if (u <= T(0)) return {T(0), T(0), T(0), T(0)};
  if (active) return {T(1), T(0), T(1), T(0)};
  const T slope = u / (u - l);
  const T alpha_l = rule == ReluRule::Fastlin ? slope : (u >= -l ? T(1) : T(0));
  return {alpha_l, T(0), slope, -l * slope};
}

/// LeakyReLU max(z, a·z), 0 ≤ a ≤ 1: chord above; below a line through 0 with slope in [a, 1]
/// (the chord's slope for Fastlin, 1 or a by the adaptive rule).
template <class T>
CNNCERT_HD inline Relaxation<T> relax_leaky_relu(T l, T u, T a, ReluRule rule) {
  const bool active = rule == ReluRule::Adaptive ? l >= T(0) : l > T(0);
  if (u <= T(0)) return {a, T(0), a, T(0)};
  if (active) return {T(1), T(0), T(1), T(0)};
  const T slope = (u - a * l) / (u - l);
  const T alpha_l = rule == ReluRule::Fastlin ? slope : (u >= -l ? T(1) : a);
  return {alpha_l, T(0), slope, u - slope * u};
}

/// Sigmoid/tanh/arctan relaxation (§2.2–2.4).
template <class T>
CNNCERT_HD inline Relaxation<T> relax_smooth(Smooth s, T l, T u, SmoothRule rule) {
  using namespace detail;
  Relaxation<T> r{};
  if (u == l) {
    tangent(s, u, r.alpha_u, r.beta_u);
    tangent(s, l, r.alpha_l, r.beta_l);
    return r;
  }
  const T fl = smooth_f(s, l), fu = smooth_f(s, u);
  const T k = (fu - fl) / (u - l);
  const T m = (l + u) / 2;
  if (l >= T(0)) {  // concave side
    if (rule == SmoothRule::DeepCert)
      tangent(s, deepcert_concave_point(s, l, u, k), r.alpha_u, r.beta_u);
    else
      tangent(s, m, r.alpha_u, r.beta_u);
    through(s, l, k, r.alpha_l, r.beta_l);
    return r;
  }
  if (u <= T(0)) {  // convex side
    through(s, l, k, r.alpha_u, r.beta_u);
    if (rule == SmoothRule::DeepCert)
      tangent(s, deepcert_convex_point(s, l, u, k), r.alpha_l, r.beta_l);
    else
      tangent(s, m, r.alpha_l, r.beta_l);
    return r;
  }
  if (rule == SmoothRule::DeepCert) {
    const T dfu = smooth_df(s, u), dfl = smooth_df(s, l);
    // The conditions as DeepCert codes them (⇔ σ′(u) > k and σ′(l) < k, resp. the reverse).
    const bool u_steep = fu - dfu * (u - l) < fl, l_flat = fl + dfl * (u - l) < fu;
    const bool u_flat = fu - dfu * (u - l) > fl, l_steep = fl + dfl * (u - l) > fu;
    if (u_steep && l_flat) {
      through(s, l, k, r.alpha_u, r.beta_u);
      tangent(s, deepcert_convex_point(s, l, T(0), k), r.alpha_l, r.beta_l);
      return r;
    }
    if (u_flat && l_steep) {
      through(s, l, k, r.alpha_l, r.beta_l);
      tangent(s, deepcert_concave_point(s, T(0), u, k), r.alpha_u, r.beta_u);
      return r;
    }
  }
  if (rule == SmoothRule::Crown) {
    if (smooth_df(s, u) >= k) {
      through(s, l, k, r.alpha_u, r.beta_u);
    } else {
      T lo = 0, hi = u;  // invariant: (σ(hi) − σ(l))/(hi − l) ≥ σ′(hi)
      for (int i = 0; i < kBisectionSteps; ++i) {
        const T g = (lo + hi) / 2;
        if ((smooth_f(s, g) - fl) / (g - l) >= smooth_df(s, g))
          hi = g;
        else
          lo = g;
      }
      tangent(s, hi, r.alpha_u, r.beta_u);
    }
    if (smooth_df(s, l) >= k) {
      through(s, l, k, r.alpha_l, r.beta_l);
    } else {
      T lo = l, hi = 0;  // invariant: (σ(u) − σ(lo))/(u − lo) ≥ σ′(lo)
      for (int i = 0; i < kBisectionSteps; ++i) {
        const T g = (lo + hi) / 2;
        if ((fu - smooth_f(s, g)) / (u - g) >= smooth_df(s, g))
          lo = g;
        else
          hi = g;
      }
      tangent(s, lo, r.alpha_l, r.beta_l);
    }
    return r;
  }
  cnncert_mixed_upper(s, l, u, r.alpha_u, r.beta_u);
  cnncert_mixed_lower(s, l, u, r.alpha_l, r.beta_l);
  return r;
}

// ---- General activations: one construction from each function's convexity pieces ----------------

/// Activations relaxed by the general construction below (ELU, Softplus, GELU in its erf and tanh
/// forms, SiLU = x·sigmoid(x)). Each is described by f, f′ and a split of the real line into at most
/// three pieces on each of which f is convex or concave; no relaxation rule of MATH.md §2 applies to
/// them (the CNN-Cert/DeepCert/CROWN choice does not change their lines).
enum class General { Elu, Softplus, Gelu, GeluTanh, Silu };

namespace detail {

constexpr double kGeluTanhK = 0.79788456080286535588;  // √(2/π)
constexpr double kGeluTanhC = 0.044715;

/// f(z); `a` is ELU's alpha.
template <class T>
CNNCERT_HD inline T general_f(General g, T a, T z) {
  switch (g) {
    case General::Elu: return z >= T(0) ? z : a * expm1(z);
    case General::Softplus: return z > T(0) ? z + log1p(exp(-z)) : log1p(exp(z));
    case General::Gelu: return T(0.5) * z * (T(1) + erf(z * T(0.70710678118654752440)));
    case General::GeluTanh: return T(0.5) * z * (T(1) + tanh(T(kGeluTanhK) * (z + T(kGeluTanhC) * z * z * z)));
    default: return z / (T(1) + exp(-z));
  }
}

/// f′(z); at ELU's kink (z = 0) the left derivative when `left`, else the right one.
template <class T>
CNNCERT_HD inline T general_df(General g, T a, T z, bool left) {
  switch (g) {
    case General::Elu: return z < T(0) || (z == T(0) && left) ? a * exp(z) : T(1);
    case General::Softplus: return z >= T(0) ? T(1) / (T(1) + exp(-z)) : exp(z) / (T(1) + exp(z));
    case General::Gelu:
      return T(0.5) * (T(1) + erf(z * T(0.70710678118654752440))) + z * T(0.39894228040143267794) * exp(-z * z / T(2));
    case General::GeluTanh: {
      const T t = tanh(T(kGeluTanhK) * (z + T(kGeluTanhC) * z * z * z));
      return T(0.5) * (T(1) + t) + T(0.5) * z * (T(1) - t * t) * T(kGeluTanhK) * (T(1) + T(3 * kGeluTanhC) * z * z);
    }
    default: {
      const T s = T(1) / (T(1) + exp(-z));
      return s * (T(1) + z * (T(1) - s));
    }
  }
}

/// The convexity pieces of f: `count` pieces split at cut[0] < cut[1]; piece i is convex when
/// convex[i] (a linear piece counts as either).
struct Pieces {
  int count = 1;
  double cut[2] = {0, 0};
  bool convex[3] = {true, true, true};
};

CNNCERT_HD inline Pieces general_pieces(General g, double a) {
  Pieces p;
  switch (g) {
    case General::Elu:  // convex for z < 0, linear after; the kink at 0 is convex iff alpha ≤ 1
      if (a > 1) p.count = 2, p.cut[0] = 0, p.convex[0] = true, p.convex[1] = false;
      return p;
    case General::Softplus: return p;  // convex everywhere
    case General::Gelu:                // f″ = φ(z)(2 − z²)
      p.count = 3, p.cut[0] = -1.4142135623730950488, p.cut[1] = 1.4142135623730950488;
      break;
    case General::GeluTanh:  // f″ changes sign at ±1.41850400879083 (tests/cpu/test_relaxation.cpp checks it)
      p.count = 3, p.cut[0] = -1.4185040087908283, p.cut[1] = 1.4185040087908283;
      break;
    default:  // SiLU: f″ = σ′(z)(2 − z·tanh(z/2)), zero at ±2.39935728051547
      p.count = 3, p.cut[0] = -2.3993572805154675, p.cut[1] = 2.3993572805154675;
      break;
  }
  p.convex[0] = false, p.convex[1] = true, p.convex[2] = false;
  return p;
}

/// An upper bound of max over [p, q] of φ(z) = s·(f(z) − k·z) (s = ±1), where φ is concave on
/// [p, q] when `concave`, else convex: a convex φ peaks at an end; a concave one at φ′ = 0, which
/// bisection brackets in [lo, hi] with φ′(lo) > 0 ≥ φ′(hi), and the tangents at both ends of the
/// bracket bound the peak from above (a concave function lies below its tangents).
template <class T>
CNNCERT_HD inline T general_peak(General g, T a, T s, T k, T p, T q, bool concave) {
  auto phi = [&](T z) { return s * (general_f(g, a, z) - k * z); };
  auto dphi = [&](T z, bool left) { return s * (general_df(g, a, z, left) - k); };
  const T fp = phi(p), fq = phi(q);
  if (!concave || !(q > p)) return fp > fq ? fp : fq;
  const T dp = dphi(p, false), dq = dphi(q, true);
  if (dp <= T(0)) return fp;
  if (dq >= T(0)) return fq;
  T lo = p, hi = q, dlo = dp, dhi = dq;
  for (int i = 0; i < (sizeof(T) > 4 ? 60 : 30); ++i) {
    const T mid = lo + (hi - lo) / 2;
    if (!(mid > lo && mid < hi)) break;
    const T dm = dphi(mid, false);
    if (dm > T(0))
      lo = mid, dlo = dm;
    else
      hi = mid, dhi = dm;
  }
  const T from_lo = phi(lo) + dlo * (hi - lo), from_hi = phi(hi) - dhi * (hi - lo);
  const T peak = from_lo < from_hi ? from_lo : from_hi;
  return peak > fp && peak > fq ? peak : (fp > fq ? fp : fq);
}

/// The offset b that makes k·z + b an upper (s = 1: b = max f(z) − k z) or lower (s = −1:
/// b = min f(z) − k z) line of f on [l, u], piece by piece, widened by a rounding allowance.
template <class T>
CNNCERT_HD inline T general_offset(General g, T a, T s, T k, T l, T u) {
  const Pieces pc = general_pieces(g, static_cast<double>(a));
  T peak = -T(INFINITY), scale = T(1);
  for (int i = 0; i < pc.count; ++i) {
    const T p = i == 0 ? l : (T(pc.cut[i - 1]) > l ? T(pc.cut[i - 1]) : l);
    const T q = i == pc.count - 1 ? u : (T(pc.cut[i]) < u ? T(pc.cut[i]) : u);
    if (p > q) continue;
    // φ = s·(f − k z) is concave where s·f is: f concave for the upper line, convex for the lower.
    const bool concave = s > T(0) ? !pc.convex[i] : pc.convex[i];
    const T v = general_peak(g, a, s, k, p, q, concave);
    peak = v > peak ? v : peak;
    const T m = fabs(general_f(g, a, p)) + fabs(general_f(g, a, q)) + fabs(k) * (fabs(p) + fabs(q));
    scale = m > scale ? m : scale;
  }
  const T eps = sizeof(T) > 4 ? T(2.220446049250313e-16) : T(1.1920929e-7);
  const T widened = peak + T(64) * eps * scale;
  return s * widened;
}

}  // namespace detail

/// Relaxation of a general activation on [l, u]: for each side, candidate slopes (the chord, and
/// f′ at l, u, the midpoint and any convexity cut inside) each get the offset that makes the line
/// sound on the whole interval (detail::general_offset); the line with the least area between it
/// and f wins (the smallest value at the midpoint for the upper line, the largest for the lower).
/// On a convex interval this yields the chord above and the midpoint tangent below, on a concave
/// one the reverse, as the hand-made relaxations do. NaN or infinite ends give NaN lines.
template <class T>
CNNCERT_HD inline Relaxation<T> relax_general(General g, T a, T l, T u) {
  using namespace detail;
  Relaxation<T> r{};
  if (!(l <= u) || !(l - l == T(0)) || !(u - u == T(0))) {  // NaN or infinite ends: no line (fails closed)
    r.alpha_u = r.beta_u = r.alpha_l = r.beta_l = T(NAN);
    return r;
  }
  if (!(u > l)) {  // a point: any line through (l, f(l)), widened like the others
    const T k = general_df(g, a, l, false);
    r.alpha_u = r.alpha_l = k;
    r.beta_u = general_offset(g, a, T(1), k, l, l);
    r.beta_l = general_offset(g, a, T(-1), k, l, l);
    return r;
  }
  const T m = l / 2 + u / 2;  // (no overflow for finite ends)
  T slopes[6];
  int n = 0;
  slopes[n++] = (general_f(g, a, u) - general_f(g, a, l)) / (u - l);
  slopes[n++] = general_df(g, a, l, false);
  slopes[n++] = general_df(g, a, u, true);
  slopes[n++] = general_df(g, a, m, false);
  const Pieces pc = general_pieces(g, static_cast<double>(a));
  for (int i = 0; i + 1 < pc.count; ++i)
    if (T(pc.cut[i]) > l && T(pc.cut[i]) < u) slopes[n++] = general_df(g, a, T(pc.cut[i]), false);
  T best_u = T(INFINITY), best_l = -T(INFINITY);
  r.alpha_u = r.beta_u = r.alpha_l = r.beta_l = T(NAN);  // no finite candidate (infinite ends): fail closed
  for (int i = 0; i < n; ++i) {
    const T k = slopes[i];
    const T bu = general_offset(g, a, T(1), k, l, u), bl = general_offset(g, a, T(-1), k, l, u);
    if (k * m + bu < best_u) best_u = k * m + bu, r.alpha_u = k, r.beta_u = bu;
    if (k * m + bl > best_l) best_l = k * m + bl, r.alpha_l = k, r.beta_l = bl;
  }
  return r;
}

/// Range [f_lo, f_hi] of a general activation on [l, u]. ELU and Softplus are increasing; GELU and
/// SiLU decrease to one minimum (the constants below) and increase after it.
template <class T>
CNNCERT_HD inline void general_range(General g, T a, T l, T u, T& lo, T& hi) {
  using namespace detail;
  const T fl = general_f(g, a, l), fu = general_f(g, a, u);
  hi = fl > fu ? fl : fu;
  lo = fl < fu ? fl : fu;
  if (g == General::Elu || g == General::Softplus) return;  // increasing: the ends
  // The minimiser and minimum (slightly lowered: the constant is rounded) of each function.
  const double zmin = g == General::Silu   ? -1.278464542761074
                      : g == General::Gelu ? -0.7517915246935645
                                           : -0.7524614220710163;
  const double fmin = g == General::Silu   ? -0.2784645427610738
                      : g == General::Gelu ? -0.16997120747990369
                                           : -0.170040750571254;
  if (l < T(zmin) && T(zmin) < u) lo = T(fmin * (1 + 1e-9));
}

}  // namespace cnncert
