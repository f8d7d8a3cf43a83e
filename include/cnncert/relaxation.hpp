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

/// Relaxation family for sigmoid, tanh and arctan.
enum class SmoothRule {
  CnnCert,   ///< CNN-Cert's general-activation bounds (§2.2)
  DeepCert,  ///< DeepCert's fine-grained bounds (§2.3)
  Crown,     ///< sound CROWN-style bounds (§2.4)
};

/// The smooth activations.
enum class Smooth { Sigmoid, Tanh, Atan };

namespace detail {

template <class T>
CNNCERT_HD inline T smooth_f(Smooth s, T z) {
  switch (s) {
    case Smooth::Sigmoid: return T(1) / (T(1) + exp(-z));
    case Smooth::Tanh: return tanh(z);
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
    if ((smooth_f(s, g) - fl) / (g - l) >= smooth_df(s, g)) hi = g;
    else lo = g;
  }
  const T d = hi;
  const T slope = (smooth_f(s, d) - fl) / (d - l);
  if (smooth_df(s, d) < slope) tangent(s, d, alpha, beta);
  else through(s, l, slope, alpha, beta);
}

/// §2.2 mixed case (l < 0 < u), lower line.
template <class T>
CNNCERT_HD inline void cnncert_mixed_lower(Smooth s, T l, T u, T& alpha, T& beta) {
  const T fu = smooth_f(s, u);
  T lo = l, hi = 0;
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    if ((fu - smooth_f(s, g)) / (u - g) >= smooth_df(s, g)) lo = g;
    else hi = g;
  }
  const T d = lo;
  const T slope = (smooth_f(s, d) - fu) / (d - u);
  if (smooth_df(s, d) < slope) tangent(s, d, alpha, beta);
  else through(s, u, slope, alpha, beta);
}

/// DeepCert's search for σ′(d) = k on the concave side (returns hi).
template <class T>
CNNCERT_HD inline T deepcert_concave_point(Smooth s, T lo, T hi, T k) {
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    const T dg = smooth_df(s, g);
    if (k > dg) hi = g;
    else if (k < dg) lo = g;
    else return g;
  }
  return hi;
}

/// DeepCert's search for σ′(d) = k on the convex side (returns lo).
template <class T>
CNNCERT_HD inline T deepcert_convex_point(Smooth s, T lo, T hi, T k) {
  for (int i = 0; i < kBisectionSteps; ++i) {
    const T g = (lo + hi) / 2;
    const T dg = smooth_df(s, g);
    if (k > dg) lo = g;
    else if (k < dg) hi = g;
    else return g;
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
    if (rule == SmoothRule::DeepCert) tangent(s, deepcert_concave_point(s, l, u, k), r.alpha_u, r.beta_u);
    else tangent(s, m, r.alpha_u, r.beta_u);
    through(s, l, k, r.alpha_l, r.beta_l);
    return r;
  }
  if (u <= T(0)) {  // convex side
    through(s, l, k, r.alpha_u, r.beta_u);
    if (rule == SmoothRule::DeepCert) tangent(s, deepcert_convex_point(s, l, u, k), r.alpha_l, r.beta_l);
    else tangent(s, m, r.alpha_l, r.beta_l);
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
        if ((smooth_f(s, g) - fl) / (g - l) >= smooth_df(s, g)) hi = g;
        else lo = g;
      }
      tangent(s, hi, r.alpha_u, r.beta_u);
    }
    if (smooth_df(s, l) >= k) {
      through(s, l, k, r.alpha_l, r.beta_l);
    } else {
      T lo = l, hi = 0;  // invariant: (σ(u) − σ(lo))/(u − lo) ≥ σ′(lo)
      for (int i = 0; i < kBisectionSteps; ++i) {
        const T g = (lo + hi) / 2;
        if ((fu - smooth_f(s, g)) / (u - g) >= smooth_df(s, g)) lo = g;
        else hi = g;
      }
      tangent(s, lo, r.alpha_l, r.beta_l);
    }
    return r;
  }
  cnncert_mixed_upper(s, l, u, r.alpha_u, r.beta_u);
  cnncert_mixed_lower(s, l, u, r.alpha_l, r.beta_l);
  return r;
}

}  // namespace cnncert
