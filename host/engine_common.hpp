#pragma once
// Pieces of the CPU reference engine that the batched engine reuses, so that both engines
// index layout nodes and weigh average pools the same way.
#include <cstdint>
#include <vector>

#include "cnncert/network.hpp"

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

/// For a Reshape/Transpose/Pad node `n` with input `src`: the input element each output element
/// reads (−1 for padding).
std::vector<int64_t> layout_map(const Node& n, const Node& src);
/// Slopes of average-pool node `n` over input `src`: out_size × kernel_h·kernel_w values
/// (1/count on counted taps).
std::vector<double> avgpool_slopes(const Node& n, const Node& src);

}  // namespace cnncert::detail
