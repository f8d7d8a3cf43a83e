#pragma once
// Pieces of the CPU reference engine that the batched engine reuses, so that both engines
// index layout nodes and weigh average pools the same way.
#include <cstdint>
#include <vector>

#include "cnncert/network.hpp"

namespace cnncert::detail {

/// For a Reshape/Transpose/Pad node `n` with input `src`: the input element each output element
/// reads (−1 for padding).
std::vector<int64_t> layout_map(const Node& n, const Node& src);
/// Slopes of average-pool node `n` over input `src`: out_size × kernel_h·kernel_w values
/// (1/count on counted taps).
std::vector<double> avgpool_slopes(const Node& n, const Node& src);

}  // namespace cnncert::detail
