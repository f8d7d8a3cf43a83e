#pragma once
// Small numeric helpers shared by the IR, the engines and the baselines.
#include <algorithm>
#include <cmath>
#include <vector>

namespace cnncert::detail {

/// Every value finite (no NaN, no ±inf).
inline bool all_finite(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

}  // namespace cnncert::detail
