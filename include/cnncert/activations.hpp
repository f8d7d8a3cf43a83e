#pragma once
/// \file activations.hpp
/// The activation kinds and their traits, in one table (act_traits): the name, how the bound
/// engines relax each kind, whether it is monotone, and its Lipschitz constant. The engines
/// (host and CUDA), the max-pool rule, the Lipschitz baseline and the IR's names read this table
/// instead of switching on the kind themselves. docs/ADDING_AN_ACTIVATION.md lists the few other
/// places a new activation touches.

#include <cmath>

#include "cnncert/relaxation.hpp"

namespace cnncert {

/// Element-wise activation functions.
/// Erf is S-shaped like tanh and relaxed by the sigmoid/tanh/arctan rules. Elu, Softplus, Gelu (erf form), GeluTanh
/// (tanh approximation) and Silu (x·sigmoid(x)) are relaxed by the general construction of relaxation.hpp; `alpha` is
/// LeakyRelu's negative slope and Elu's alpha.
enum class ActKind { Relu, LeakyRelu, Sigmoid, Tanh, Atan, Erf, Elu, Softplus, Gelu, GeluTanh, Silu };

/// How an activation is relaxed (MATH.md §2): the piecewise-linear ReLU rules, the S-shaped rules
/// (relax_smooth), or the general tangent/chord construction (relax_general).
enum class ActFamily { PiecewiseLinear, Smooth, General };

struct ActTraits {
  const char* name;  ///< the ONNX operator name (GeluTanh: Gelu with approximate="tanh"; Silu: x·Sigmoid(x))
  ActFamily family;  ///< which relaxation applies
  Smooth smooth;     ///< the S-shaped function (family Smooth)
  General general;   ///< the general function (family General)
  bool uses_alpha;   ///< reads ActAttr::alpha
  bool monotone;     ///< non-decreasing (kinds with alpha: when alpha >= 0)
  double lipschitz;  ///< sup |f′|, rounded up (kinds with alpha: max(this, |alpha|))
};

/// The table. The largest |f′| of GELU and SiLU is at their inflection points (f′(√2) for GELU).
CNNCERT_HD constexpr ActTraits act_traits(ActKind k) {
  using F = ActFamily;
  constexpr Smooth s0 = Smooth::Sigmoid;
  constexpr General g0 = General::Elu;
  switch (k) {
    case ActKind::Relu: return {"Relu", F::PiecewiseLinear, s0, g0, false, true, 1};
    case ActKind::LeakyRelu: return {"LeakyRelu", F::PiecewiseLinear, s0, g0, true, true, 1};
    case ActKind::Sigmoid: return {"Sigmoid", F::Smooth, Smooth::Sigmoid, g0, false, true, 0.25};
    case ActKind::Tanh: return {"Tanh", F::Smooth, Smooth::Tanh, g0, false, true, 1};
    case ActKind::Atan: return {"Atan", F::Smooth, Smooth::Atan, g0, false, true, 1};
    case ActKind::Erf: return {"Erf", F::Smooth, Smooth::Erf, g0, false, true, 1.1283791670955126};  // 2/√π
    case ActKind::Elu: return {"Elu", F::General, s0, General::Elu, true, true, 1};
    case ActKind::Softplus: return {"Softplus", F::General, s0, General::Softplus, false, true, 1};
    case ActKind::Gelu: return {"Gelu", F::General, s0, General::Gelu, false, false, 1.12890415};
    case ActKind::GeluTanh: return {"GeluTanh", F::General, s0, General::GeluTanh, false, false, 1.12899307};
    case ActKind::Silu: return {"Silu", F::General, s0, General::Silu, false, false, 1.09983933};
  }
  return {"?", F::General, s0, g0, false, false, INFINITY};
}

/// Whether σ is non-decreasing, so that [σ(l), σ(u)] bounds σ(z) on [l, u].
CNNCERT_HD inline bool act_monotone(ActKind k, double alpha) {
  const ActTraits t = act_traits(k);
  return t.monotone && (!t.uses_alpha || alpha >= 0);
}

/// sup |σ′| (an upper bound).
inline double act_lipschitz(ActKind k, double alpha) {
  const ActTraits t = act_traits(k);
  return t.uses_alpha ? std::fmax(t.lipschitz, std::fabs(alpha)) : t.lipschitz;
}

}  // namespace cnncert
