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
/// Geometry of a sliding window (convolution or pooling) along both axes: kernel kh × kw, strides,
/// top/left pads, dilations, and the bottom/right pads (which only the average pool's divisor
/// reads). This is the one place where a window tap is mapped to an input position: every engine,
/// the forward pass, the baselines and the importer use these functions.
struct Window {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1, pb = 0, pr = 0;
  CNNCERT_HD int64_t kk() const { return kh * kw; }
  /// First input coordinate of output position `o`'s window (negative inside the padding).
  CNNCERT_HD int64_t start_y(int64_t o) const { return o * sh - pt; }
  CNNCERT_HD int64_t start_x(int64_t o) const { return o * sw - pl; }
  /// Offset of kernel tap `k` from the window's start.
  CNNCERT_HD int64_t tap_y(int64_t k) const { return k * dh; }
  CNNCERT_HD int64_t tap_x(int64_t k) const { return k * dw; }
  /// The input coordinate that output position `o` reads through tap `k`.
  CNNCERT_HD int64_t in_y(int64_t o, int64_t k) const { return start_y(o) + tap_y(k); }
  CNNCERT_HD int64_t in_x(int64_t o, int64_t k) const { return start_x(o) + tap_x(k); }
  /// The inverse: the output position (below `out`) that reads input coordinate `i` through tap
  /// `k`, or −1 when none does.
  CNNCERT_HD int64_t out_y(int64_t i, int64_t k, int64_t out) const { return source(i - in_y(0, k), sh, out); }
  CNNCERT_HD int64_t out_x(int64_t i, int64_t k, int64_t out) const { return source(i - in_x(0, k), sw, out); }
  /// The window size at the input of `h` consecutive output positions (one axis).
  CNNCERT_HD int64_t span_y(int64_t h) const { return in_y(h - 1, kh - 1) - start_y(0) + 1; }
  CNNCERT_HD int64_t span_x(int64_t w) const { return in_x(w - 1, kw - 1) - start_x(0) + 1; }
  /// Calls f(ky, kx, iy, ix) for every tap of output position (oy, ox) that reads inside an
  /// in_h × in_w map (padding taps skipped), ky outer and kx inner: the forward direction.
  template <class F>
  CNNCERT_HD void for_each_input(int64_t in_h, int64_t in_w, int64_t oy, int64_t ox, F&& f) const {
    for (int64_t ky = 0; ky < kh; ++ky) {
      const int64_t iy = in_y(oy, ky);
      if (iy < 0 || iy >= in_h) continue;
      for (int64_t kx = 0; kx < kw; ++kx) {
        const int64_t ix = in_x(ox, kx);
        if (ix >= 0 && ix < in_w) f(ky, kx, iy, ix);
      }
    }
  }
  /// Calls f(oy, ox, ky, kx) for every output position of an out_h × out_w map whose window reads
  /// input position (iy, ix) through tap (ky, kx): the gather form of the transposed window.
  template <class F>
  CNNCERT_HD void for_each_output(int64_t out_h, int64_t out_w, int64_t iy, int64_t ix, F&& f) const {
    for (int64_t ky = 0; ky < kh; ++ky) {
      const int64_t oy = out_y(iy, ky, out_h);
      if (oy < 0) continue;
      for (int64_t kx = 0; kx < kw; ++kx) {
        const int64_t ox = out_x(ix, kx, out_w);
        if (ox >= 0) f(oy, ox, ky, kx);
      }
    }
  }
  /// The average pool's divisor at output (oy, ox) over an in_h × in_w map: the taps inside the
  /// map, or with `include_pad` the taps inside the map and its explicit padding (ceil-mode
  /// overhang beyond the bottom/right pads never counts).
  CNNCERT_HD int64_t avg_divisor(int64_t in_h, int64_t in_w, int64_t oy, int64_t ox, bool include_pad) const {
    int64_t n = 0;
    for (int64_t ky = 0; ky < kh; ++ky)
      for (int64_t kx = 0; kx < kw; ++kx) {
        const int64_t iy = in_y(oy, ky), ix = in_x(ox, kx);
        n += include_pad ? (iy < in_h + pb && ix < in_w + pr) : (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w);
      }
    return n;
  }

 private:
  CNNCERT_HD static int64_t source(int64_t t, int64_t stride, int64_t out) {
    if (t < 0 || t % stride != 0) return -1;
    return t / stride < out ? t / stride : -1;
  }
};
}  // namespace detail

}  // namespace cnncert
