#pragma once
// Pieces of the CPU reference engine that the batched engine reuses, so that both engines
// index layout nodes and weigh average pools the same way.
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "batched_kernels.hpp"
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

/// Window geometry of pooling node `n` over an input of geometry `in`.
inline batched::PoolGeom pool_geom(const Node& n, const Geometry& in) {
  const PoolAttr& p = n.as<PoolAttr>();
  const Geometry og = geometry(n);
  return {in.c, in.h, in.w, og.h, og.w, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dilation_h, p.dilation_w};
}

/// The error of a problem whose intermediate bounds at node `name` fail reliable_bound.
inline std::string unreliable_bounds_error(const std::string& name) {
  return "the bounds of node '" + name + "' are not finite or exceed 1e12 in magnitude (not reliable in floating point)";
}

/// Every value finite (no NaN, no ±inf).
inline bool all_finite(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

/// For a Reshape/Transpose/Pad node `n` with input `src`: the input element each output element
/// reads (−1 for padding).
std::vector<int64_t> layout_map(const Node& n, const Node& src);
/// Slopes of average-pool node `n` over input `src`: out_size × kernel_h·kernel_w values
/// (1/count on counted taps).
std::vector<double> avgpool_slopes(const Node& n, const Node& src);

/// Calls f(i) for i in [0, n) on up to `threads` threads (dynamic assignment); rethrows the
/// first exception.
template <class F>
void parallel_for(int64_t n, int threads, F&& f) {
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex m;
  std::vector<std::thread> pool;
  const int t = static_cast<int>(std::min<int64_t>(threads, n));
  for (int k = 0; k < t; ++k)
    pool.emplace_back([&] {
      for (int64_t i; (i = next++) < n;) {
        try {
          f(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(m);
          if (!error) error = std::current_exception();
        }
      }
    });
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace cnncert::detail
