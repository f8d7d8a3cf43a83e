#pragma once
/// \file lp.hpp
/// The LP baseline (MATH.md §5): the triangle relaxation of every unstable ReLU, with the
/// intermediate bounds of the adaptive method, solved exactly by an LP solver (GLPK).

#include <memory>

#include "cnncert/engine.hpp"

namespace cnncert {

/// True when this build includes the LP solver.
bool lp_available();

/// A bound engine that solves one LP per specification row and direction (l-inf only; ReLU
/// networks without max-pooling). Throws UnsupportedModel naming the node otherwise, and
/// InvalidArgument for other norms at bound time. The bounds are those of the LP relaxation as
/// computed by the solver in floating point: a reference for comparison tables, not a certificate
/// with outward rounding.
std::unique_ptr<BoundEngine> make_lp_engine(const Network& net, int threads = 0);

}  // namespace cnncert
