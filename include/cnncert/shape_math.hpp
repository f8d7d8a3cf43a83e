#pragma once
/// \file shape_math.hpp
/// Shape arithmetic shared by host and device code (convolution and pooling output sizes).

#include <cstdint>

#if defined(__CUDACC__)
#define CNNCERT_HD __host__ __device__
#else
#define CNNCERT_HD
#endif

namespace cnncert {

/// Kernel sizes, strides, dilations and pads above this are not meant by any model; bounding them
/// (NetworkBuilder and the importer check it) keeps every window computation below far from
/// int64 overflow.
constexpr int64_t kMaxWindowValue = int64_t{1} << 24;

/// Output extent of a convolution/pooling window along one axis. `ceil_mode` rounds the last
/// partial window up (ONNX pooling's ceil_mode=1); a window must start inside the padded input.
/// Returns a value <= 0 when the window does not fit.
CNNCERT_HD inline int64_t window_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                                          int64_t pad_end, int64_t dilation, bool ceil_mode = false) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t avail = in + pad_begin + pad_end - span;
  if (avail < 0 || stride <= 0) return 0;
  int64_t out = ceil_mode ? (avail + stride - 1) / stride + 1 : avail / stride + 1;
  // ONNX/PyTorch rule: the last window must start inside the input or left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad_begin) --out;
  return out;
}

namespace detail {
/// Geometry of a sliding window (convolution or pooling) along both axes.
struct Window {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  /// The window size at the input of `h` consecutive output positions (one axis).
  int64_t span_y(int64_t h) const { return (h - 1) * sh + dh * (kh - 1) + 1; }
  int64_t span_x(int64_t w) const { return (w - 1) * sw + dw * (kw - 1) + 1; }
  /// Calls f(ky, kx, iy, ix) for every tap of output position (oy, ox) that reads inside an
  /// in_h × in_w map (padding taps skipped): the forward direction of the window.
  template <class F>
  void for_each_input(int64_t in_h, int64_t in_w, int64_t oy, int64_t ox, F&& f) const {
    for (int64_t ky = 0; ky < kh; ++ky) {
      const int64_t iy = oy * sh - pt + ky * dh;
      if (iy < 0 || iy >= in_h) continue;
      for (int64_t kx = 0; kx < kw; ++kx) {
        const int64_t ix = ox * sw - pl + kx * dw;
        if (ix >= 0 && ix < in_w) f(ky, kx, iy, ix);
      }
    }
  }
};
}  // namespace detail

/// First input coordinate covered by output position `o` (may be negative inside padding).
CNNCERT_HD inline int64_t window_start(int64_t o, int64_t stride, int64_t pad_begin) {
  return o * stride - pad_begin;
}

}  // namespace cnncert
