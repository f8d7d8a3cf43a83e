// The CPU reference bound engine: CNN-Cert/CROWN back-substitution in double precision.
//
// Coefficient tensors ("A") are kept in receptive-field windows: for a row that starts at one
// neuron of a convolutional layer, only a window of each earlier feature map can be non-zero, so
// each row stores C × h × w values at a per-row offset (y0, x0). Windows grow through convolutions
// and pooling, are clipped to the feature map, and become the whole map at dense layers and
// layout nodes. Rows are processed in chunks, chunks (or problems) in parallel.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/shape_math.hpp"

namespace cnncert {

Norm parse_norm(const std::string& s) {
  if (s == "inf" || s == "linf" || s == "Linf" || s == "i") return Norm::Linf;
  if (s == "2" || s == "l2" || s == "L2") return Norm::L2;
  if (s == "1" || s == "l1" || s == "L1") return Norm::L1;
  throw InvalidArgument("unknown norm '" + s + "' (use inf, 2 or 1)");
}

const char* norm_name(Norm n) { return n == Norm::Linf ? "inf" : n == Norm::L2 ? "2" : "1"; }

Method parse_method(const std::string& s) {
  if (s == "fastlin") return {ReluRule::Fastlin, SmoothRule::CnnCert, s};
  if (s == "adaptive" || s == "cnncert") return {ReluRule::Adaptive, SmoothRule::CnnCert, s};
  if (s == "deepcert") return {ReluRule::Adaptive, SmoothRule::DeepCert, s};
  if (s == "crown") return {ReluRule::Adaptive, SmoothRule::Crown, s};
  throw InvalidArgument("unknown method '" + s + "' (use fastlin, adaptive, cnncert, deepcert or crown)");
}

void check_boundable(const Network& net) {
  for (const Node& n : net.nodes()) {
    if (n.op == OpKind::Activation && n.as<ActAttr>().kind == ActKind::LeakyRelu) {
      const double a = n.as<ActAttr>().alpha;
      if (!(a >= 0 && a <= 1))
        throw UnsupportedModel("node '" + n.name + "' (LeakyRelu): alpha " + std::to_string(a) +
                               " outside [0, 1] is not supported by the bound engines");
    }
  }
}

namespace cpu {
namespace {

/// Spatial view of a node: (C, H, W) for rank-3 tensors, (numel, 1, 1) otherwise.
struct Geometry {
  int64_t c = 1, h = 1, w = 1;
  int64_t size() const { return c * h * w; }
};

Geometry geometry(const Node& n) {
  if (n.shape.size() == 3) return {n.shape[0], n.shape[1], n.shape[2]};
  return {n.size(), 1, 1};
}

/// Coefficients of a chunk of rows at one node, each row over a window of the feature map.
struct Coeffs {
  int64_t rows = 0, c = 0, h = 0, w = 0;
  std::vector<int64_t> y0, x0;
  std::vector<double> a;
  int64_t win() const { return c * h * w; }
  double* row(int64_t r) { return a.data() + r * win(); }
  const double* row(int64_t r) const { return a.data() + r * win(); }
  void reset(int64_t rows_, int64_t c_, int64_t h_, int64_t w_) {
    rows = rows_, c = c_, h = h_, w = w_;
    a.assign(static_cast<size_t>(rows * c * h * w), 0.0);
    y0.assign(static_cast<size_t>(rows), 0);
    x0.assign(static_cast<size_t>(rows), 0);
  }
};

/// Window of size `size` inside [0, extent) covering [start, end) ∩ [0, extent).
int64_t place(int64_t start, int64_t size, int64_t extent) {
  const int64_t s = std::max<int64_t>(start, 0);
  return std::min(s, extent - size);
}

/// The whole feature map as the window of every row.
Coeffs to_full(const Coeffs& in, const Geometry& g) {
  if (in.h == g.h && in.w == g.w) return in;
  Coeffs out;
  out.reset(in.rows, g.c, g.h, g.w);
  for (int64_t r = 0; r < in.rows; ++r) {
    const double* src = in.row(r);
    double* dst = out.row(r);
    for (int64_t c = 0; c < in.c; ++c)
      for (int64_t y = 0; y < in.h; ++y)
        for (int64_t x = 0; x < in.w; ++x)
          dst[(c * g.h + in.y0[r] + y) * g.w + in.x0[r] + x] += src[(c * in.h + y) * in.w + x];
  }
  return out;
}

/// Adds `b` into `a` (both at the same node), widening the windows to their union.
void accumulate(Coeffs& a, Coeffs&& b, const Geometry& g) {
  if (a.rows == 0) {
    a = std::move(b);
    return;
  }
  CNNCERT_ASSERT(a.rows == b.rows && a.c == b.c);
  int64_t hs = 0, ws = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    hs = std::max(hs, std::max(a.y0[r] + a.h, b.y0[r] + b.h) - std::min(a.y0[r], b.y0[r]));
    ws = std::max(ws, std::max(a.x0[r] + a.w, b.x0[r] + b.w) - std::min(a.x0[r], b.x0[r]));
  }
  hs = std::min(hs, g.h);
  ws = std::min(ws, g.w);
  Coeffs out;
  out.reset(a.rows, a.c, hs, ws);
  for (int64_t r = 0; r < a.rows; ++r) {
    out.y0[r] = place(std::min(a.y0[r], b.y0[r]), hs, g.h);
    out.x0[r] = place(std::min(a.x0[r], b.x0[r]), ws, g.w);
    for (const Coeffs* src : {static_cast<const Coeffs*>(&a), static_cast<const Coeffs*>(&b)}) {
      const double* s = src->row(r);
      double* d = out.row(r);
      const int64_t dy = src->y0[r] - out.y0[r], dx = src->x0[r] - out.x0[r];
      for (int64_t c = 0; c < src->c; ++c)
        for (int64_t y = 0; y < src->h; ++y)
          for (int64_t x = 0; x < src->w; ++x) d[(c * hs + y + dy) * ws + x + dx] += s[(c * src->h + y) * src->w + x];
    }
  }
  a = std::move(out);
}

/// New windows of the input of a sliding-window op (conv or pooling) for the rows of `a`.
void grow_windows(const Coeffs& a, Coeffs& out, int64_t channels, const Geometry& in, int64_t kh, int64_t kw, int64_t sh,
                  int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw) {
  int64_t hs = 0, ws = 0;
  std::vector<int64_t> ys(static_cast<size_t>(a.rows)), xs(static_cast<size_t>(a.rows));
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t y_start = a.y0[r] * sh - pt, y_end = (a.y0[r] + a.h - 1) * sh - pt + dh * (kh - 1) + 1;
    const int64_t x_start = a.x0[r] * sw - pl, x_end = (a.x0[r] + a.w - 1) * sw - pl + dw * (kw - 1) + 1;
    ys[r] = std::max<int64_t>(y_start, 0);
    xs[r] = std::max<int64_t>(x_start, 0);
    hs = std::max(hs, std::min(y_end, in.h) - ys[r]);
    ws = std::max(ws, std::min(x_end, in.w) - xs[r]);
  }
  hs = std::clamp<int64_t>(hs, 1, in.h);
  ws = std::clamp<int64_t>(ws, 1, in.w);
  out.reset(a.rows, channels, hs, ws);
  for (int64_t r = 0; r < a.rows; ++r) {
    out.y0[r] = place(ys[r], hs, in.h);
    out.x0[r] = place(xs[r], ws, in.w);
  }
}

/// Output positions o in [0, n) whose input coordinate (start + o)·stride + off lies in [0, extent).
inline void valid_range(int64_t start, int64_t n, int64_t stride, int64_t off, int64_t extent, int64_t& lo, int64_t& hi) {
  // smallest o with (start + o)·stride + off ≥ 0
  const int64_t a = -off - start * stride;  // need o·stride ≥ a
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  // largest o with (start + o)·stride + off ≤ extent − 1
  const int64_t b = extent - 1 - off - start * stride;  // need o·stride ≤ b
  hi = b < 0 ? 0 : std::min(n, b / stride + 1);
  lo = std::min(lo, n);
  if (hi < lo) hi = lo;
}

/// Back through a convolution: A_in = conv_transpose(A), bias += ⟨A, b⟩.
Coeffs conv_back(const Coeffs& a, const ConvAttr& k, const Geometry& in, std::vector<double>& bias) {
  Coeffs out;
  grow_windows(a, out, in.c, in, k.kernel_h, k.kernel_w, k.stride_h, k.stride_w, k.pad_top, k.pad_left, k.dilation_h,
               k.dilation_w);
  const int64_t cpg_out = k.out_channels / k.groups, kk = k.kernel_h * k.kernel_w, plane = a.h * a.w;
  for (int64_t r = 0; r < a.rows; ++r) {
    const double* src = a.row(r);
    double* dst = out.row(r);
    double b = 0;
    for (int64_t co = 0; co < a.c; ++co) {
      const double* sp = src + co * plane;
      double sum = 0;
      bool any = false;
      for (int64_t i = 0; i < plane; ++i) {
        sum += sp[i];
        any = any || sp[i] != 0;
      }
      if (!any) continue;
      b += sum * k.bias[static_cast<size_t>(co)];
      const int64_t g = co / cpg_out;
      const double* wco = k.weight.data() + co * k.in_channels * kk;
      for (int64_t ky = 0; ky < k.kernel_h; ++ky) {
        int64_t oy_lo, oy_hi;
        const int64_t offy = ky * k.dilation_h - k.pad_top;
        valid_range(a.y0[r], a.h, k.stride_h, offy, in.h, oy_lo, oy_hi);
        for (int64_t kx = 0; kx < k.kernel_w; ++kx) {
          int64_t ox_lo, ox_hi;
          const int64_t offx = kx * k.dilation_w - k.pad_left;
          valid_range(a.x0[r], a.w, k.stride_w, offx, in.w, ox_lo, ox_hi);
          if (ox_lo >= ox_hi) continue;
          for (int64_t ci = 0; ci < k.in_channels; ++ci) {
            const double w = wco[ci * kk + ky * k.kernel_w + kx];
            if (w == 0) continue;
            double* dc = dst + (g * k.in_channels + ci) * out.h * out.w;
            for (int64_t oy = oy_lo; oy < oy_hi; ++oy) {
              const int64_t ry = (a.y0[r] + oy) * k.stride_h + offy - out.y0[r];
              const double* s_row = sp + oy * a.w;
              double* d_row = dc + ry * out.w + (a.x0[r] * k.stride_w + offx - out.x0[r]);
              if (k.stride_w == 1) {
                for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d_row[ox] += w * s_row[ox];
              } else {
                for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d_row[ox * k.stride_w] += w * s_row[ox];
              }
            }
          }
        }
      }
    }
    bias[static_cast<size_t>(r)] += b;
  }
  return out;
}

/// Back through a pooling window map with per-output-neuron slopes (out × kh × kw) and
/// intercepts for positive and negative coefficients.
Coeffs pool_back(const Coeffs& a, const PoolAttr& p, const Geometry& in, const Geometry& og, const std::vector<double>& slopes,
                 const std::vector<double>* beta_pos, const std::vector<double>* beta_neg, std::vector<double>& bias) {
  Coeffs out;
  grow_windows(a, out, in.c, in, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dilation_h,
               p.dilation_w);
  const int64_t kk = p.kernel_h * p.kernel_w;
  for (int64_t r = 0; r < a.rows; ++r) {
    const double* src = a.row(r);
    double* dst = out.row(r);
    double b = 0;
    for (int64_t c = 0; c < a.c; ++c)
      for (int64_t oy = 0; oy < a.h; ++oy) {
        const int64_t y = a.y0[r] + oy;
        for (int64_t ox = 0; ox < a.w; ++ox) {
          const double v = src[(c * a.h + oy) * a.w + ox];
          if (v == 0) continue;
          const int64_t x = a.x0[r] + ox;
          const int64_t j = (c * og.h + y) * og.w + x;
          if (beta_pos) b += v * (v > 0 ? (*beta_pos)[static_cast<size_t>(j)] : (*beta_neg)[static_cast<size_t>(j)]);
          const double* sl = slopes.data() + j * kk;
          for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
            const int64_t iy = y * p.stride_h - p.pad_top + ky * p.dilation_h;
            if (iy < 0 || iy >= in.h) continue;
            for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
              const int64_t ix = x * p.stride_w - p.pad_left + kx * p.dilation_w;
              if (ix < 0 || ix >= in.w) continue;
              const double s = sl[ky * p.kernel_w + kx];
              if (s != 0) dst[(c * out.h + iy - out.y0[r]) * out.w + ix - out.x0[r]] += v * s;
            }
          }
        }
      }
    bias[static_cast<size_t>(r)] += b;
  }
  return out;
}

/// Element-wise linear map with separate (slope, intercept) for positive and negative
/// coefficients: A ← A⁺ ⊙ α_pos + A⁻ ⊙ α_neg, bias += ⟨A⁺, β_pos⟩ + ⟨A⁻, β_neg⟩.
void elementwise_back(Coeffs& a, const Geometry& g, const double* alpha_pos, const double* beta_pos,
                      const double* alpha_neg, const double* beta_neg, std::vector<double>& bias) {
  for (int64_t r = 0; r < a.rows; ++r) {
    double* v = a.row(r);
    double b = 0;
    for (int64_t c = 0; c < a.c; ++c)
      for (int64_t y = 0; y < a.h; ++y) {
        const int64_t base = (c * g.h + a.y0[r] + y) * g.w + a.x0[r];
        double* vr = v + (c * a.h + y) * a.w;
        for (int64_t x = 0; x < a.w; ++x) {
          const double val = vr[x];
          if (val == 0) continue;
          const int64_t j = base + x;
          if (val > 0) {
            vr[x] = val * alpha_pos[j];
            b += val * beta_pos[j];
          } else {
            vr[x] = val * alpha_neg[j];
            b += val * beta_neg[j];
          }
        }
      }
    bias[static_cast<size_t>(r)] += b;
  }
}

/// Back through a dense layer: A_in = A·W over the whole input, bias += A·b.
Coeffs dense_back(const Coeffs& a_in, const DenseAttr& d, const Geometry& og, const Geometry& in, std::vector<double>& bias) {
  const Coeffs a = to_full(a_in, og);
  Coeffs out;
  out.reset(a.rows, in.c, in.h, in.w);
  for (int64_t r = 0; r < a.rows; ++r) {
    const double* src = a.row(r);
    double* dst = out.row(r);
    double b = 0;
    for (int64_t o = 0; o < d.out_features; ++o) {
      const double v = src[o];
      if (v == 0) continue;
      b += v * d.bias[static_cast<size_t>(o)];
      const double* w = d.weight.data() + o * d.in_features;
      for (int64_t i = 0; i < d.in_features; ++i) dst[i] += v * w[i];
    }
    bias[static_cast<size_t>(r)] += b;
  }
  return out;
}

/// Back through a pure re-indexing: input element src_of[k] feeds output element k.
Coeffs reindex_back(const Coeffs& a_in, const Geometry& og, const Geometry& in, const std::vector<int64_t>& src_of) {
  const Coeffs a = to_full(a_in, og);
  Coeffs out;
  out.reset(a.rows, in.c, in.h, in.w);
  for (int64_t r = 0; r < a.rows; ++r) {
    const double* s = a.row(r);
    double* d = out.row(r);
    for (size_t k = 0; k < src_of.size(); ++k)
      if (src_of[k] >= 0) d[src_of[k]] += s[k];
  }
  return out;
}

/// Index maps of layout nodes (output element → input element, −1 for padding).
std::vector<int64_t> layout_map(const Node& n, const Node& src) {
  const int64_t size = n.size();
  std::vector<int64_t> m(static_cast<size_t>(size));
  if (n.op == OpKind::Reshape) {
    for (int64_t k = 0; k < size; ++k) m[static_cast<size_t>(k)] = k;
    return m;
  }
  const size_t rank = src.shape.size();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t i = rank; i-- > 1;) in_strides[i - 1] = in_strides[i] * src.shape[i];
  std::vector<int64_t> idx(rank, 0);
  for (int64_t k = 0; k < size; ++k) {
    int64_t s = 0;
    bool pad = false;
    for (size_t i = 0; i < rank; ++i) {
      if (n.op == OpKind::Transpose) {
        s += idx[i] * in_strides[static_cast<size_t>(n.as<TransposeAttr>().perm[i])];
      } else {
        const int64_t v = idx[i] - n.as<PadAttr>().begin[i];
        if (v < 0 || v >= src.shape[i]) pad = true;
        s += v * in_strides[i];
      }
    }
    m[static_cast<size_t>(k)] = pad ? -1 : s;
    for (size_t i = rank; i-- > 0;) {
      if (++idx[i] < n.shape[i]) break;
      idx[i] = 0;
    }
  }
  return m;
}

/// Relaxation of a max-pooling node for one problem (MATH.md §2.5).
struct PoolRelax {
  std::vector<double> slopes, beta_u, beta_l;
};

PoolRelax relax_maxpool(const Node& n, const Geometry& in, const std::vector<double>& lo, const std::vector<double>& hi) {
  const PoolAttr& p = n.as<PoolAttr>();
  const Geometry og = geometry(n);
  const int64_t kk = p.kernel_h * p.kernel_w;
  PoolRelax r;
  r.slopes.assign(static_cast<size_t>(og.size() * kk), 0.0);
  r.beta_u.assign(static_cast<size_t>(og.size()), 0.0);
  r.beta_l.assign(static_cast<size_t>(og.size()), 0.0);
  std::vector<int64_t> cand_pos, cand_idx;
  for (int64_t c = 0; c < og.c; ++c)
    for (int64_t y = 0; y < og.h; ++y)
      for (int64_t x = 0; x < og.w; ++x) {
        const int64_t j = (c * og.h + y) * og.w + x;
        // window members (padding excluded)
        cand_pos.clear();
        cand_idx.clear();
        double max_l = -std::numeric_limits<double>::infinity();
        for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
          const int64_t iy = y * p.stride_h - p.pad_top + ky * p.dilation_h;
          if (iy < 0 || iy >= in.h) continue;
          for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
            const int64_t ix = x * p.stride_w - p.pad_left + kx * p.dilation_w;
            if (ix < 0 || ix >= in.w) continue;
            const int64_t i = (c * in.h + iy) * in.w + ix;
            cand_pos.push_back(ky * p.kernel_w + kx);
            cand_idx.push_back(i);
            max_l = std::max(max_l, lo[static_cast<size_t>(i)]);
          }
        }
        // candidates: inputs that can be the maximum
        std::vector<size_t> s;
        for (size_t q = 0; q < cand_idx.size(); ++q)
          if (hi[static_cast<size_t>(cand_idx[q])] >= max_l) s.push_back(q);
        double* sl = r.slopes.data() + j * kk;
        double sum_w = 0, min_l = std::numeric_limits<double>::infinity(), max_u = -min_l, gamma = 0;
        size_t n_equal = 0;
        for (size_t q : s) {
          const double l = lo[static_cast<size_t>(cand_idx[q])], u = hi[static_cast<size_t>(cand_idx[q])];
          min_l = std::min(min_l, l);
          max_u = std::max(max_u, u);
          if (l == u) {
            if (n_equal == 0) gamma = l;
            ++n_equal;
          }
        }
        if (n_equal == 0) {
          double num = 0, den = 0, max_sl = -std::numeric_limits<double>::infinity(),
                 min_su = std::numeric_limits<double>::infinity();
          for (size_t q : s) {
            const double l = lo[static_cast<size_t>(cand_idx[q])], u = hi[static_cast<size_t>(cand_idx[q])];
            num += u / (u - l);
            den += 1 / (u - l);
            max_sl = std::max(max_sl, l);
            min_su = std::min(min_su, u);
          }
          gamma = std::clamp((num - 1) / den, max_sl, min_su);
        }
        double beta = gamma;
        for (size_t q : s) {
          const double l = lo[static_cast<size_t>(cand_idx[q])], u = hi[static_cast<size_t>(cand_idx[q])];
          if (l == u) continue;
          const double w = (u - gamma) / (u - l);
          sl[cand_pos[q]] = w;
          sum_w += w;
          beta -= w * l;
        }
        if (n_equal > 0) {
          const double g = std::clamp((1 - sum_w) / static_cast<double>(n_equal), 0.0, 1.0);
          for (size_t q : s) {
            const double l = lo[static_cast<size_t>(cand_idx[q])], u = hi[static_cast<size_t>(cand_idx[q])];
            if (l != u) continue;
            sl[cand_pos[q]] = g;
            sum_w += g;
            beta -= g * l;
          }
        }
        r.beta_u[static_cast<size_t>(j)] = beta;
        r.beta_l[static_cast<size_t>(j)] = sum_w <= 1 ? min_l * (1 - sum_w) : max_u * (1 - sum_w);
      }
  return r;
}

/// Slopes of an average pool as a per-output-neuron map (1/count on counted positions).
std::vector<double> avgpool_slopes(const Node& n, const Geometry& in) {
  const PoolAttr& p = n.as<PoolAttr>();
  const Geometry og = geometry(n);
  const int64_t kk = p.kernel_h * p.kernel_w;
  std::vector<double> s(static_cast<size_t>(og.size() * kk), 0.0);
  for (int64_t c = 0; c < og.c; ++c)
    for (int64_t y = 0; y < og.h; ++y)
      for (int64_t x = 0; x < og.w; ++x) {
        int64_t counted = 0, padded = 0;
        for (int64_t ky = 0; ky < p.kernel_h; ++ky)
          for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
            const int64_t iy = y * p.stride_h - p.pad_top + ky * p.dilation_h;
            const int64_t ix = x * p.stride_w - p.pad_left + kx * p.dilation_w;
            const bool inside = iy >= 0 && iy < in.h && ix >= 0 && ix < in.w;
            if (iy < in.h + p.pad_bottom && ix < in.w + p.pad_right) ++padded;
            counted += inside;
          }
        const double inv = 1.0 / static_cast<double>(p.count_include_pad ? padded : counted);
        double* sl = s.data() + ((c * og.h + y) * og.w + x) * kk;
        for (int64_t ky = 0; ky < p.kernel_h; ++ky)
          for (int64_t kx = 0; kx < p.kernel_w; ++kx) sl[ky * p.kernel_w + kx] = inv;
      }
  return s;
}

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

class CpuEngine final : public BoundEngine {
 public:
  CpuEngine(const Network& net, int threads) : net_(net), threads_(threads > 0 ? threads : default_threads()) {
    check_boundable(net_);
    const auto& nodes = net_.nodes();
    geo_.resize(nodes.size());
    needs_bounds_.assign(nodes.size(), false);
    for (size_t i = 0; i < nodes.size(); ++i) {
      geo_[i] = geometry(nodes[i]);
      if (nodes[i].op == OpKind::Activation || nodes[i].op == OpKind::MaxPool)
        needs_bounds_[static_cast<size_t>(nodes[i].inputs[0])] = true;
      if (nodes[i].op == OpKind::Transpose || nodes[i].op == OpKind::Pad || nodes[i].op == OpKind::Reshape)
        maps_[static_cast<int>(i)] = layout_map(nodes[i], nodes[static_cast<size_t>(nodes[i].inputs[0])]);
      if (nodes[i].op == OpKind::AvgPool)
        avg_slopes_[static_cast<int>(i)] = avgpool_slopes(nodes[i], geo_[static_cast<size_t>(nodes[i].inputs[0])]);
    }
  }

  std::string name() const override { return "cpu"; }

  std::vector<BoundResult> bound(const std::vector<BoundProblem>& problems, const BoundOptions& options) override {
    for (const auto& p : problems) {
      CNNCERT_CHECK(static_cast<int64_t>(p.x0.size()) == net_.input_size(),
                    "bound problem: x0 has " << p.x0.size() << " values, the network input needs " << net_.input_size());
      CNNCERT_CHECK(p.rows >= 0 && static_cast<int64_t>(p.spec.size()) == p.rows * net_.output_size(),
                    "bound problem: the specification must have rows × " << net_.output_size() << " values");
      CNNCERT_CHECK(std::isfinite(p.eps) && p.eps >= 0, "bound problem: eps must be finite and non-negative");
      for (double v : p.x0) CNNCERT_CHECK(std::isfinite(v), "bound problem: x0 contains NaN or Inf");
    }
    CNNCERT_CHECK(!options.clip_to_box || options.norm == Norm::Linf, "input box clipping applies to the l-inf norm only");
    std::vector<BoundResult> out(problems.size());
    // Many problems: one thread each. Few: threads share the row chunks of each problem.
    const bool outer = static_cast<int64_t>(problems.size()) >= threads_;
    parallel_for(static_cast<int64_t>(problems.size()), outer ? threads_ : 1, [&](int64_t i) {
      out[static_cast<size_t>(i)] = solve(problems[static_cast<size_t>(i)], options, outer ? 1 : threads_);
    });
    return out;
  }

 private:
  static int default_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
  }

  struct State {
    const BoundProblem* p;
    const BoundOptions* o;
    int threads;
    std::vector<std::vector<double>> lo, hi;              // bounds of nodes that need them
    std::vector<std::vector<double>> al, bl, au, bu;      // activation relaxations
    std::map<int, PoolRelax> pools;                       // max-pool relaxations
  };

  /// Back-substitutes the rows (`init` at node `start`) to the input; returns per row the
  /// concretized lower and upper bound and optionally the final coefficients.
  void backsub(State& s, int start, const Coeffs& init, std::vector<double>& lower, std::vector<double>& upper,
               Coeffs* final_l, Coeffs* final_u, std::vector<double>* bias_l, std::vector<double>* bias_u) const {
    const int64_t rows = init.rows;
    std::map<int, Coeffs> pend_u, pend_l;
    pend_u[start] = init;
    pend_l[start] = init;
    std::vector<double> b_u(static_cast<size_t>(rows), 0.0), b_l(static_cast<size_t>(rows), 0.0);
    const auto& nodes = net_.nodes();
    for (int k = start; k >= 0; --k) {
      auto iu = pend_u.find(k);
      if (iu == pend_u.end()) continue;
      Coeffs au = std::move(iu->second), al = std::move(pend_l[k]);
      pend_u.erase(k);
      pend_l.erase(k);
      const Node& n = nodes[static_cast<size_t>(k)];
      const Geometry& g = geo_[static_cast<size_t>(k)];
      if (n.op == OpKind::Input) {
        concretize(s, au, b_u, true, upper);
        concretize(s, al, b_l, false, lower);
        if (final_u) *final_u = to_full(au, g), *bias_u = b_u;
        if (final_l) *final_l = to_full(al, g), *bias_l = b_l;
        continue;
      }
      const int src = n.inputs[0];
      const Geometry& gi = geo_[static_cast<size_t>(src)];
      auto push = [&](int node, Coeffs&& cu, Coeffs&& cl) {
        accumulate(pend_u[node], std::move(cu), geo_[static_cast<size_t>(node)]);
        accumulate(pend_l[node], std::move(cl), geo_[static_cast<size_t>(node)]);
      };
      switch (n.op) {
        case OpKind::Conv: {
          const ConvAttr& c = n.as<ConvAttr>();
          push(src, conv_back(au, c, gi, b_u), conv_back(al, c, gi, b_l));
          break;
        }
        case OpKind::Dense: {
          const DenseAttr& d = n.as<DenseAttr>();
          push(src, dense_back(au, d, g, gi, b_u), dense_back(al, d, g, gi, b_l));
          break;
        }
        case OpKind::ScaleShift: {
          const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
          const double *sc = a.scale.data(), *sh = a.shift.data();
          elementwise_back(au, g, sc, sh, sc, sh, b_u);
          elementwise_back(al, g, sc, sh, sc, sh, b_l);
          push(src, std::move(au), std::move(al));
          break;
        }
        case OpKind::Activation: {
          const auto i = static_cast<size_t>(k);
          elementwise_back(au, g, s.au[i].data(), s.bu[i].data(), s.al[i].data(), s.bl[i].data(), b_u);
          elementwise_back(al, g, s.al[i].data(), s.bl[i].data(), s.au[i].data(), s.bu[i].data(), b_l);
          push(src, std::move(au), std::move(al));
          break;
        }
        case OpKind::MaxPool: {
          const PoolRelax& pr = s.pools.at(k);
          const PoolAttr& p = n.as<PoolAttr>();
          push(src, pool_back(au, p, gi, g, pr.slopes, &pr.beta_u, &pr.beta_l, b_u),
               pool_back(al, p, gi, g, pr.slopes, &pr.beta_l, &pr.beta_u, b_l));
          break;
        }
        case OpKind::AvgPool: {
          const auto& sl = avg_slopes_.at(k);
          const PoolAttr& p = n.as<PoolAttr>();
          push(src, pool_back(au, p, gi, g, sl, nullptr, nullptr, b_u), pool_back(al, p, gi, g, sl, nullptr, nullptr, b_l));
          break;
        }
        case OpKind::Add: {
          const int src2 = n.inputs[1];
          Coeffs cu = au, cl = al;
          push(src, std::move(au), std::move(al));
          push(src2, std::move(cu), std::move(cl));
          break;
        }
        case OpKind::Reshape:
        case OpKind::Transpose:
        case OpKind::Pad: {
          const auto& m = maps_.at(k);
          push(src, reindex_back(au, g, gi, m), reindex_back(al, g, gi, m));
          break;
        }
        case OpKind::Input: break;
      }
    }
  }

  /// Bounds of Σ A·x + B over the input region (upper or lower).
  void concretize(const State& s, const Coeffs& a, const std::vector<double>& b, bool upper, std::vector<double>& out) const {
    const Geometry& g = geo_[0];
    const std::vector<double>& x0 = s.p->x0;
    const double eps = s.p->eps;
    const BoundOptions& o = *s.o;
    out.resize(static_cast<size_t>(a.rows));
    for (int64_t r = 0; r < a.rows; ++r) {
      const double* v = a.row(r);
      double centre = 0, norm = 0;
      for (int64_t c = 0; c < a.c; ++c)
        for (int64_t y = 0; y < a.h; ++y)
          for (int64_t x = 0; x < a.w; ++x) {
            const double coef = v[(c * a.h + y) * a.w + x];
            if (coef == 0) continue;
            const size_t j = static_cast<size_t>((c * g.h + a.y0[r] + y) * g.w + a.x0[r] + x);
            if (o.clip_to_box) {
              const double lo = std::max(x0[j] - eps, o.box_lo), hi = std::min(x0[j] + eps, o.box_hi);
              centre += coef * (lo + hi) / 2;
              norm += std::fabs(coef) * std::max(0.0, (hi - lo) / 2);
              continue;
            }
            centre += coef * x0[j];
            switch (o.norm) {
              case Norm::Linf: norm += std::fabs(coef); break;
              case Norm::L2: norm += coef * coef; break;
              case Norm::L1: norm = std::max(norm, std::fabs(coef)); break;
            }
          }
      if (!o.clip_to_box) {
        if (o.norm == Norm::L2) norm = std::sqrt(norm);
        norm *= eps;
      }
      const double val = centre + b[static_cast<size_t>(r)];
      out[static_cast<size_t>(r)] = upper ? val + norm : val - norm;
    }
  }

  /// Identity rows for neurons [first, first + count) of node k.
  Coeffs identity_rows(int k, int64_t first, int64_t count) const {
    const Geometry& g = geo_[static_cast<size_t>(k)];
    Coeffs c;
    if (g.h == 1 && g.w == 1) {
      c.reset(count, g.c, 1, 1);
      for (int64_t r = 0; r < count; ++r) c.row(r)[first + r] = 1.0;
    } else {
      c.reset(count, g.c, 1, 1);
      for (int64_t r = 0; r < count; ++r) {
        const int64_t j = first + r;
        const int64_t ch = j / (g.h * g.w), rem = j % (g.h * g.w);
        c.y0[r] = rem / g.w;
        c.x0[r] = rem % g.w;
        c.row(r)[ch] = 1.0;
      }
    }
    return c;
  }

  void compute_bounds(State& s, int k) const {
    const int64_t size = net_.node(k).size();
    auto& lo = s.lo[static_cast<size_t>(k)];
    auto& hi = s.hi[static_cast<size_t>(k)];
    lo.assign(static_cast<size_t>(size), 0.0);
    hi.assign(static_cast<size_t>(size), 0.0);
    const Geometry& g = geo_[static_cast<size_t>(k)];
    // Flat rows are dense over the whole node: keep chunks smaller there.
    const int64_t chunk = (g.h == 1 && g.w == 1) ? 256 : 1024;
    const int64_t n_chunks = (size + chunk - 1) / chunk;
    parallel_for(n_chunks, s.threads, [&](int64_t ci) {
      const int64_t first = ci * chunk, count = std::min(chunk, size - first);
      std::vector<double> l, u;
      backsub(s, k, identity_rows(k, first, count), l, u, nullptr, nullptr, nullptr, nullptr);
      std::copy(l.begin(), l.end(), lo.begin() + first);
      std::copy(u.begin(), u.end(), hi.begin() + first);
    });
  }

  void relax_node(State& s, int k) const {
    const Node& n = net_.node(k);
    const int src = n.inputs[0];
    const auto& lo = s.lo[static_cast<size_t>(src)];
    const auto& hi = s.hi[static_cast<size_t>(src)];
    if (n.op == OpKind::MaxPool) {
      s.pools[k] = relax_maxpool(n, geo_[static_cast<size_t>(src)], lo, hi);
      return;
    }
    const ActAttr& a = n.as<ActAttr>();
    const size_t size = lo.size();
    auto& al = s.al[static_cast<size_t>(k)];
    auto& bl = s.bl[static_cast<size_t>(k)];
    auto& au = s.au[static_cast<size_t>(k)];
    auto& bu = s.bu[static_cast<size_t>(k)];
    al.resize(size), bl.resize(size), au.resize(size), bu.resize(size);
    const Method& m = s.o->method;
    for (size_t i = 0; i < size; ++i) {
      Relaxation<double> r{};
      switch (a.kind) {
        case ActKind::Relu: r = relax_relu(lo[i], hi[i], m.relu); break;
        case ActKind::LeakyRelu: r = relax_leaky_relu(lo[i], hi[i], a.alpha, m.relu); break;
        case ActKind::Sigmoid: r = relax_smooth(Smooth::Sigmoid, lo[i], hi[i], m.smooth); break;
        case ActKind::Tanh: r = relax_smooth(Smooth::Tanh, lo[i], hi[i], m.smooth); break;
        case ActKind::Atan: r = relax_smooth(Smooth::Atan, lo[i], hi[i], m.smooth); break;
      }
      al[i] = r.alpha_l, bl[i] = r.beta_l, au[i] = r.alpha_u, bu[i] = r.beta_u;
    }
  }

  static bool finite(const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  }

  BoundResult solve(const BoundProblem& p, const BoundOptions& o, int threads) const {
    const auto& nodes = net_.nodes();
    State s;
    s.p = &p;
    s.o = &o;
    s.threads = threads;
    const size_t n = nodes.size();
    s.lo.resize(n), s.hi.resize(n), s.al.resize(n), s.bl.resize(n), s.au.resize(n), s.bu.resize(n);
    BoundResult res;
    for (size_t k = 0; k < n; ++k) {
      const Node& node = nodes[k];
      if (node.op != OpKind::Activation && node.op != OpKind::MaxPool) continue;
      const int src = node.inputs[0];
      if (s.lo[static_cast<size_t>(src)].empty()) {
        compute_bounds(s, src);
        if (!finite(s.lo[static_cast<size_t>(src)]) || !finite(s.hi[static_cast<size_t>(src)])) {
          res.error = "the bounds of node '" + nodes[static_cast<size_t>(src)].name + "' are not finite";
          res.lower.assign(static_cast<size_t>(p.rows), -std::numeric_limits<double>::infinity());
          res.upper.assign(static_cast<size_t>(p.rows), std::numeric_limits<double>::infinity());
          return res;
        }
        if (o.want_intermediate) res.intermediate.push_back({src, s.lo[static_cast<size_t>(src)], s.hi[static_cast<size_t>(src)]});
      }
      relax_node(s, static_cast<int>(k));
    }
    // The specification rows on the output node.
    const int out = net_.output();
    const Geometry& g = geo_[static_cast<size_t>(out)];
    const int64_t classes = net_.output_size();
    Coeffs init;
    init.reset(p.rows, g.c, g.h, g.w);
    for (int64_t r = 0; r < p.rows; ++r)
      for (int64_t k = 0; k < classes; ++k) init.row(r)[k] = p.spec[static_cast<size_t>(r * classes + k)];
    Coeffs fl, fu;
    std::vector<double> bl, bu;
    const bool lin = o.want_linear;
    backsub(s, out, init, res.lower, res.upper, lin ? &fl : nullptr, lin ? &fu : nullptr, lin ? &bl : nullptr,
            lin ? &bu : nullptr);
    if (lin) {
      res.a_lower = std::move(fl.a), res.a_upper = std::move(fu.a);
      res.b_lower = std::move(bl), res.b_upper = std::move(bu);
    }
    if (!finite(res.lower) || !finite(res.upper)) {
      res.error = "the output bounds are not finite";
      for (double& v : res.lower) v = -std::numeric_limits<double>::infinity();
      for (double& v : res.upper) v = std::numeric_limits<double>::infinity();
    }
    return res;
  }

  const Network& net_;
  int threads_;
  std::vector<Geometry> geo_;
  std::vector<bool> needs_bounds_;
  std::map<int, std::vector<int64_t>> maps_;
  std::map<int, std::vector<double>> avg_slopes_;
};

}  // namespace
}  // namespace cpu

std::unique_ptr<BoundEngine> make_cpu_engine(const Network& net, int threads) {
  return std::make_unique<cpu::CpuEngine>(net, threads);
}

}  // namespace cnncert
