#pragma once
// Argument checks shared by the baselines (Lipschitz, attacks, CLEVER).
#include <cstdint>
#include <vector>

#include "cnncert/network.hpp"

namespace cnncert::detail {

/// x0 matches the network input and is finite; c is a class; t is −1 or another class.
/// Throws InvalidArgument prefixed with `who`.
void check_classes(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, const char* who);

}  // namespace cnncert::detail
