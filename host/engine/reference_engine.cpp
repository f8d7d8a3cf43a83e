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
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/shape_math.hpp"
#include "engine/batched_kernels.hpp"
#include "engine/engine_common.hpp"

namespace cnncert {

namespace cpu {
namespace {

using detail::Geometry;
using detail::geometry;

using detail::all_finite;
using detail::avgpool_slopes;
using detail::BufferPool;
using detail::layout_map;
using detail::parallel_for;
using detail::pool_geom;
using detail::PoolRelax;
using detail::Window;

/// Coefficients of a chunk of rows at one node. Stored position-major (a[pos · rows + r]) so
/// that every step of the back-substitution is an AXPY over the rows. Either `full` (the window
/// is the whole feature map) or a window of c × h × w at per-row offsets (y0, x0) with the same
/// relative structure for every row; entries at positions outside the map are always zero.
struct Coeffs {
  int64_t rows = 0, c = 0, h = 0, w = 0;
  bool full = true;
  std::vector<int64_t> y0, x0;
  std::vector<double> a;
  Coeffs() = default;
  Coeffs(const Coeffs&) = default;
  Coeffs(Coeffs&&) = default;
  Coeffs& operator=(const Coeffs&) = default;
  Coeffs& operator=(Coeffs&& o) noexcept {
    if (this != &o) {
      BufferPool::give(std::move(a));
      rows = o.rows, c = o.c, h = o.h, w = o.w, full = o.full;
      y0 = std::move(o.y0), x0 = std::move(o.x0), a = std::move(o.a);
    }
    return *this;
  }
  ~Coeffs() { BufferPool::give(std::move(a)); }
  int64_t win() const { return c * h * w; }
  double* at(int64_t pos) { return a.data() + pos * rows; }
  const double* at(int64_t pos) const { return a.data() + pos * rows; }
  void reset(int64_t rows_, int64_t c_, int64_t h_, int64_t w_, bool full_) {
    rows = rows_, c = c_, h = h_, w = w_, full = full_;
    BufferPool::give(std::move(a));
    a = BufferPool::take(static_cast<size_t>(rows * c * h * w));
    if (full) {
      y0.clear(), x0.clear();
    } else {
      y0.assign(static_cast<size_t>(rows), 0);
      x0.assign(static_cast<size_t>(rows), 0);
    }
  }
};

// y += alpha·x. Built for AVX2 too (picked at run time); no FMA contraction, so results are the
// same on every x86-64 machine. Not under ThreadSanitizer (-DCNNCERT_RACECHECK=ON): the clone's
// resolver runs while libraries are relocated, before the sanitizer is set up, and crashes there.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
void axpy(int64_t n, double alpha, const double* __restrict x, double* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

inline bool all_zero(int64_t n, const double* x) {
  for (int64_t i = 0; i < n; ++i)
    if (x[i] != 0) return false;
  return true;
}

/// The same coefficients over the whole feature map.
Coeffs to_full(Coeffs&& in, const Geometry& g) {
  if (in.full) return std::move(in);
  Coeffs out;
  out.reset(in.rows, g.c, g.h, g.w, true);
  const int64_t rows = in.rows;
  for (int64_t c = 0; c < in.c; ++c)
    for (int64_t py = 0; py < in.h; ++py)
      for (int64_t px = 0; px < in.w; ++px) {
        const double* src = in.at((c * in.h + py) * in.w + px);
        for (int64_t r = 0; r < rows; ++r) {
          if (src[r] == 0) continue;
          const int64_t y = in.y0[r] + py, x = in.x0[r] + px;  // in range: entries outside are zero
          out.a[static_cast<size_t>(((c * g.h + y) * g.w + x) * rows + r)] += src[r];
        }
      }
  return out;
}

/// Zeroes the entries of windowed rows that fall outside the feature map.
void mask_outside(Coeffs& a, const Geometry& g) {
  if (a.full) return;
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t y0 = a.y0[r], x0 = a.x0[r];
    if (y0 >= 0 && x0 >= 0 && y0 + a.h <= g.h && x0 + a.w <= g.w) continue;
    for (int64_t c = 0; c < a.c; ++c)
      for (int64_t py = 0; py < a.h; ++py) {
        const bool row_out = y0 + py < 0 || y0 + py >= g.h;
        for (int64_t px = 0; px < a.w; ++px)
          if (row_out || x0 + px < 0 || x0 + px >= g.w)
            a.a[static_cast<size_t>(((c * a.h + py) * a.w + px) * a.rows + r)] = 0;
      }
  }
}

/// A window as large as the map in either direction is replaced by the whole map.
Coeffs settle(Coeffs&& a, const Geometry& g) {
  if (!a.full && (a.h >= g.h || a.w >= g.w)) return to_full(std::move(a), g);
  return std::move(a);
}

/// Adds `b` into `a` (both at the same node).
void accumulate(Coeffs& a, Coeffs&& b, const Geometry& g) {
  if (a.rows == 0) {
    a = std::move(b);
    return;
  }
  CNNCERT_ASSERT(a.rows == b.rows && a.c == b.c);
  if (!a.full && !b.full) {
    // Same relative structure when the offsets differ by a constant: merge into the union window.
    const int64_t dy = b.y0[0] - a.y0[0], dx = b.x0[0] - a.x0[0];
    bool uniform = true;
    for (int64_t r = 1; r < a.rows && uniform; ++r) uniform = b.y0[r] - a.y0[r] == dy && b.x0[r] - a.x0[r] == dx;
    if (uniform) {
      const int64_t sy = std::min<int64_t>(0, dy), sx = std::min<int64_t>(0, dx);
      const int64_t h = std::max(a.h, dy + b.h) - sy, w = std::max(a.w, dx + b.w) - sx;
      Coeffs out;
      out.reset(a.rows, a.c, h, w, false);
      for (int64_t r = 0; r < a.rows; ++r) out.y0[r] = a.y0[r] + sy, out.x0[r] = a.x0[r] + sx;
      for (const Coeffs* src : {static_cast<const Coeffs*>(&a), static_cast<const Coeffs*>(&b)}) {
        const int64_t oy = src == &a ? -sy : dy - sy, ox = src == &a ? -sx : dx - sx;
        for (int64_t c = 0; c < src->c; ++c)
          for (int64_t py = 0; py < src->h; ++py)
            for (int64_t px = 0; px < src->w; ++px)
              axpy(a.rows, 1.0, src->at((c * src->h + py) * src->w + px), out.at((c * h + py + oy) * w + px + ox));
      }
      a = settle(std::move(out), g);
      return;
    }
  }
  a = to_full(std::move(a), g);
  const Coeffs fb = to_full(std::move(b), g);
  axpy(static_cast<int64_t>(a.a.size()), 1.0, fb.a.data(), a.a.data());
}

/// Back through a sliding-window linear map: sets up the input's coefficients (whole map, or windows
/// grown by the kernel) and calls `scatter` for every non-zero output position with the input
/// coordinate, in the new coefficients, of its window's start; tap (ky, kx) is that plus
/// k.tap_y(ky), k.tap_x(kx). The op adds its own weights from there.
Coeffs window_back(const Coeffs& a, const Window& k, const Geometry& in,
                   const std::function<void(int64_t co, int64_t oy, int64_t ox, const double* src, Coeffs& out,
                                            int64_t base_y, int64_t base_x)>& scatter) {
  // Input coordinates of the new coefficients start at 0 (whole map) or, for windows, at each
  // row's window start: output position o of a window row is then at k.start_y(o) − k.start_y(0) (and k.start_x).
  Coeffs out;
  int64_t origin_y = 0, origin_x = 0;
  if (a.full) {
    out.reset(a.rows, in.c, in.h, in.w, true);
  } else {
    out.reset(a.rows, in.c, k.span_y(a.h), k.span_x(a.w), false);
    for (int64_t r = 0; r < a.rows; ++r) out.y0[r] = k.start_y(a.y0[r]), out.x0[r] = k.start_x(a.x0[r]);
    origin_y = k.start_y(0), origin_x = k.start_x(0);
  }
  for (int64_t co = 0; co < a.c; ++co)
    for (int64_t oy = 0; oy < a.h; ++oy)
      for (int64_t ox = 0; ox < a.w; ++ox) {
        const double* src = a.at((co * a.h + oy) * a.w + ox);
        if (all_zero(a.rows, src)) continue;
        scatter(co, oy, ox, src, out, k.start_y(oy) - origin_y, k.start_x(ox) - origin_x);
      }
  mask_outside(out, in);
  return settle(std::move(out), in);
}

/// Back through a convolution: A_in = conv_transpose(A), bias += ⟨A, b⟩.
Coeffs conv_back(const Coeffs& a, const ConvAttr& k, const Geometry& in, std::vector<double>& bias) {
  const Window win = k.window();
  const int64_t cpg_out = k.out_channels / k.groups, kk = k.kernel_h * k.kernel_w, rows = a.rows;
  return window_back(a, win, in,
                     [&](int64_t co, int64_t, int64_t, const double* src, Coeffs& out, int64_t by, int64_t bx) {
                       axpy(rows, k.bias[static_cast<size_t>(co)], src, bias.data());
                       const int64_t g = co / cpg_out;
                       const double* wco = k.weight.data() + co * k.in_channels * kk;
                       for (int64_t ky = 0; ky < k.kernel_h; ++ky) {
                         const int64_t y = by + win.tap_y(ky);
                         if (y < 0 || y >= out.h) continue;
                         for (int64_t kx = 0; kx < k.kernel_w; ++kx) {
                           const int64_t x = bx + win.tap_x(kx);
                           if (x < 0 || x >= out.w) continue;
                           for (int64_t ci = 0; ci < k.in_channels; ++ci) {
                             const double wv = wco[ci * kk + ky * k.kernel_w + kx];
                             if (wv != 0)
                               axpy(rows, wv, src, out.at(((g * k.in_channels + ci) * out.h + y) * out.w + x));
                           }
                         }
                       }
                     });
}

/// Back through pooling with per-output-neuron slopes (out × kh × kw) and intercepts for
/// positive and negative coefficients (none for average pooling).
Coeffs pool_back(const Coeffs& a, const PoolAttr& p, const Geometry& in, const Geometry& og,
                 const std::vector<double>& slopes, const std::vector<double>* beta_pos,
                 const std::vector<double>* beta_neg, std::vector<double>& bias) {
  const Window win = p.window();
  const int64_t kk = p.kernel_h * p.kernel_w, rows = a.rows;
  return window_back(
      a, win, in, [&](int64_t c, int64_t oy, int64_t ox, const double* src, Coeffs& out, int64_t by, int64_t bx) {
        for (int64_t r = 0; r < rows; ++r) {
          const double v = src[r];
          if (v == 0) continue;
          const int64_t j = a.full ? (c * og.h + oy) * og.w + ox : (c * og.h + a.y0[r] + oy) * og.w + a.x0[r] + ox;
          if (beta_pos)
            bias[static_cast<size_t>(r)] +=
                v * (v > 0 ? (*beta_pos)[static_cast<size_t>(j)] : (*beta_neg)[static_cast<size_t>(j)]);
          const double* sl = slopes.data() + j * kk;
          for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
            const int64_t y = by + win.tap_y(ky);
            if (y < 0 || y >= out.h) continue;
            for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
              const int64_t x = bx + win.tap_x(kx);
              if (x < 0 || x >= out.w) continue;
              const double s = sl[ky * p.kernel_w + kx];
              if (s != 0) out.a[static_cast<size_t>(((c * out.h + y) * out.w + x) * rows + r)] += v * s;
            }
          }
        }
      });
}

/// Element-wise linear map with separate (slope, intercept) for positive and negative
/// coefficients: A ← A⁺ ⊙ α_pos + A⁻ ⊙ α_neg, bias += ⟨A⁺, β_pos⟩ + ⟨A⁻, β_neg⟩.
void elementwise_back(Coeffs& a, const Geometry& g, const double* alpha_pos, const double* beta_pos,
                      const double* alpha_neg, const double* beta_neg, std::vector<double>& bias) {
  const int64_t rows = a.rows;
  double* b = bias.data();
  std::vector<int64_t> row_base;
  if (!a.full) {
    row_base.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) row_base[static_cast<size_t>(r)] = a.y0[r] * g.w + a.x0[r];
  }
  for (int64_t c = 0; c < a.c; ++c)
    for (int64_t py = 0; py < a.h; ++py)
      for (int64_t px = 0; px < a.w; ++px) {
        double* v = a.at((c * a.h + py) * a.w + px);
        if (a.full) {
          const int64_t j = (c * g.h + py) * g.w + px;
          const double ap = alpha_pos[j], bp = beta_pos[j], an = alpha_neg[j], bn = beta_neg[j];
          for (int64_t r = 0; r < rows; ++r) {
            const double x = v[r];
            const bool pos = x > 0;
            b[r] += x * (pos ? bp : bn);
            v[r] = x * (pos ? ap : an);
          }
        } else {
          const int64_t base = (c * g.h + py) * g.w + px;
          for (int64_t r = 0; r < rows; ++r) {
            const double x = v[r];
            if (x == 0) continue;  // also every position outside the map
            const int64_t j = base + row_base[static_cast<size_t>(r)];
            if (x > 0) {
              b[r] += x * beta_pos[j];
              v[r] = x * alpha_pos[j];
            } else {
              b[r] += x * beta_neg[j];
              v[r] = x * alpha_neg[j];
            }
          }
        }
      }
}

/// Back through a dense layer: A_in = Wᵀ·A over the whole input, bias += ⟨A, b⟩.
Coeffs dense_back(Coeffs&& a_in, const DenseAttr& d, const Geometry& og, const Geometry& in,
                  std::vector<double>& bias) {
  const Coeffs a = to_full(std::move(a_in), og);
  const int64_t rows = a.rows;
  Coeffs out;
  out.reset(rows, in.c, in.h, in.w, true);
  for (int64_t o = 0; o < d.out_features; ++o) {
    const double* src = a.at(o);
    if (all_zero(rows, src)) continue;
    axpy(rows, d.bias[static_cast<size_t>(o)], src, bias.data());
    const double* w = d.weight.data() + o * d.in_features;
    for (int64_t i = 0; i < d.in_features; ++i)
      if (w[i] != 0) axpy(rows, w[i], src, out.at(i));
  }
  return out;
}

/// Back through a pure re-indexing: input element src_of[k] feeds output element k.
Coeffs reindex_back(Coeffs&& a_in, const Geometry& og, const Geometry& in, const std::vector<int64_t>& src_of) {
  const Coeffs a = to_full(std::move(a_in), og);
  Coeffs out;
  out.reset(a.rows, in.c, in.h, in.w, true);
  for (size_t k = 0; k < src_of.size(); ++k)
    if (src_of[k] >= 0) axpy(a.rows, 1.0, a.at(static_cast<int64_t>(k)), out.at(src_of[k]));
  return out;
}

class CpuEngine final : public BoundEngine {
 public:
  CpuEngine(const Network& net, int threads) : net_(net), threads_(threads > 0 ? threads : default_threads()) {
    check_boundable(net_);
    const auto& nodes = net_.nodes();
    geo_.resize(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      geo_[i] = geometry(nodes[i]);
      if (op_traits(nodes[i].op).role == OpRole::Layout)
        maps_[static_cast<int>(i)] = layout_map(nodes[i], nodes[static_cast<size_t>(nodes[i].inputs[0])]);
      if (nodes[i].op == OpKind::AvgPool)
        avg_slopes_[static_cast<int>(i)] = avgpool_slopes(nodes[i], geo_[static_cast<size_t>(nodes[i].inputs[0])]);
    }
  }

  std::string name() const override { return "cpu-reference"; }

  std::vector<BoundResult> bound(const std::vector<BoundProblem>& problems, const BoundOptions& options) override {
    check_bound_problems(net_, problems, options);
    std::vector<BoundResult> out(problems.size());
    // Many problems: one thread each. Few: threads share the row chunks of each problem.
    const bool outer = static_cast<int64_t>(problems.size()) >= threads_;
    parallel_for(static_cast<int64_t>(problems.size()), outer ? threads_ : 1, [&](int64_t i) {
      // Layer progress where problems run one after the other on the calling thread.
      out[static_cast<size_t>(i)] =
          solve(problems[static_cast<size_t>(i)], options, outer ? 1 : threads_, !outer || threads_ == 1);
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
    std::vector<std::vector<double>> lo, hi;                            // bounds of nodes that need them
    std::vector<std::vector<double>> slope_l, icpt_l, slope_u, icpt_u;  // activation relaxations: α_L, β_L, α_U, β_U
    std::map<int, PoolRelax> pools;                                     // max-pool relaxations
    detail::InputBox box;                                               // the region as a box (a box or a clipped ball)
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
      Coeffs coef_u = std::move(iu->second), coef_l = std::move(pend_l[k]);
      pend_u.erase(k);
      pend_l.erase(k);
      const Node& n = nodes[static_cast<size_t>(k)];
      const Geometry& g = geo_[static_cast<size_t>(k)];
      if (n.op == OpKind::Input) {
        concretize(s, coef_u, b_u, true, upper);
        concretize(s, coef_l, b_l, false, lower);
        if (final_u) *final_u = to_full(std::move(coef_u), g), *bias_u = b_u;
        if (final_l) *final_l = to_full(std::move(coef_l), g), *bias_l = b_l;
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
          push(src, conv_back(coef_u, c, gi, b_u), conv_back(coef_l, c, gi, b_l));
          break;
        }
        case OpKind::Dense: {
          const DenseAttr& d = n.as<DenseAttr>();
          push(src, dense_back(std::move(coef_u), d, g, gi, b_u), dense_back(std::move(coef_l), d, g, gi, b_l));
          break;
        }
        case OpKind::ScaleShift: {
          const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
          const double *sc = a.scale.data(), *sh = a.shift.data();
          elementwise_back(coef_u, g, sc, sh, sc, sh, b_u);
          elementwise_back(coef_l, g, sc, sh, sc, sh, b_l);
          push(src, std::move(coef_u), std::move(coef_l));
          break;
        }
        case OpKind::Activation: {
          const auto i = static_cast<size_t>(k);
          elementwise_back(coef_u, g, s.slope_u[i].data(), s.icpt_u[i].data(), s.slope_l[i].data(), s.icpt_l[i].data(),
                           b_u);
          elementwise_back(coef_l, g, s.slope_l[i].data(), s.icpt_l[i].data(), s.slope_u[i].data(), s.icpt_u[i].data(),
                           b_l);
          push(src, std::move(coef_u), std::move(coef_l));
          break;
        }
        case OpKind::MaxPool: {
          const PoolRelax& pr = s.pools.at(k);
          const PoolAttr& p = n.as<PoolAttr>();
          push(src, pool_back(coef_u, p, gi, g, pr.slopes, &pr.beta_u, &pr.beta_l, b_u),
               pool_back(coef_l, p, gi, g, pr.slopes, &pr.beta_l, &pr.beta_u, b_l));
          break;
        }
        case OpKind::AvgPool: {
          const auto& sl = avg_slopes_.at(k);
          const PoolAttr& p = n.as<PoolAttr>();
          push(src, pool_back(coef_u, p, gi, g, sl, nullptr, nullptr, b_u),
               pool_back(coef_l, p, gi, g, sl, nullptr, nullptr, b_l));
          break;
        }
        case OpKind::Add: {
          const int src2 = n.inputs[1];
          Coeffs cu = coef_u, cl = coef_l;
          push(src, std::move(coef_u), std::move(coef_l));
          push(src2, std::move(cu), std::move(cl));
          break;
        }
        case OpKind::Reshape:
        case OpKind::Transpose:
        case OpKind::Pad: {
          const auto& m = maps_.at(k);
          push(src, reindex_back(std::move(coef_u), g, gi, m), reindex_back(std::move(coef_l), g, gi, m));
          break;
        }
        case OpKind::Input: break;
      }
    }
  }

  /// Bounds of Σ A·x + B over the input region (upper or lower).
  void concretize(const State& s, const Coeffs& a, const std::vector<double>& b, bool upper,
                  std::vector<double>& out) const {
    const Geometry& g = geo_[0];
    const std::vector<double>& x0 = s.p->x0;
    const bool box = s.box.active();
    const batched::RegionNorm rn = detail::region_norm(s.o->norm, box);
    const int64_t rows = a.rows;
    std::vector<double> centre(static_cast<size_t>(rows), 0.0), norm(static_cast<size_t>(rows), 0.0);
    for (int64_t c = 0; c < a.c; ++c)
      for (int64_t py = 0; py < a.h; ++py)
        for (int64_t px = 0; px < a.w; ++px) {
          const double* v = a.at((c * a.h + py) * a.w + px);
          const int64_t base = (c * g.h + py) * g.w + px;
          for (int64_t r = 0; r < rows; ++r) {
            if (v[r] == 0) continue;
            const size_t j = static_cast<size_t>(a.full ? base : base + a.y0[r] * g.w + a.x0[r]);
            const size_t ri = static_cast<size_t>(r);
            batched::concretize_elem(v[r], box ? s.box.lo[j] : x0[j], box ? s.box.hi[j] : 0.0, rn, centre[ri],
                                     norm[ri]);
          }
        }
    out.resize(static_cast<size_t>(rows));
    for (size_t r = 0; r < static_cast<size_t>(rows); ++r)
      out[r] = batched::concretize_finish(upper, centre[r], norm[r], b[r], s.p->eps, rn);
  }

  /// Identity rows for neurons [first, first + count) of node k.
  Coeffs identity_rows(int k, int64_t first, int64_t count) const {
    const Geometry& g = geo_[static_cast<size_t>(k)];
    Coeffs c;
    if (g.h == 1 && g.w == 1) {
      c.reset(count, g.c, 1, 1, true);
      for (int64_t r = 0; r < count; ++r) c.at(first + r)[r] = 1.0;
    } else {
      c.reset(count, g.c, 1, 1, false);
      for (int64_t r = 0; r < count; ++r) {
        const int64_t j = first + r;
        const int64_t ch = j / (g.h * g.w), rem = j % (g.h * g.w);
        c.y0[r] = rem / g.w;
        c.x0[r] = rem % g.w;
        c.at(ch)[r] = 1.0;
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
    const int64_t chunk = (g.h == 1 && g.w == 1) ? 256 : 512;
    const int64_t n_chunks = (size + chunk - 1) / chunk;
    parallel_for(n_chunks, s.threads, [&](int64_t ci) {
      const int64_t first = ci * chunk, count = std::min(chunk, size - first);
      std::vector<double> l, u;
      backsub(s, k, identity_rows(k, first, count), l, u, nullptr, nullptr, nullptr, nullptr);
      std::copy(l.begin(), l.end(), lo.begin() + first);
      std::copy(u.begin(), u.end(), hi.begin() + first);
    });
  }

  /// MATH.md §2.5 (detail::maxpool_input_rule): a max-pool k reading a monotone activation takes
  /// σ of that activation's pre-activation bounds as its input bounds. False when the rule does
  /// not apply (then the caller back-substitutes).
  bool pool_input_from_activation(State& s, int k) const { return detail::apply_maxpool_input_rule(net_, k, s); }

  void relax_node(State& s, int k) const { detail::relax_cpu_node(net_, geo_, k, s); }

  /// `report_layers`: call o.layer_progress (problems run one after the other on the calling thread).
  BoundResult solve(const BoundProblem& p, const BoundOptions& o, int threads, bool report_layers) const {
    const auto& nodes = net_.nodes();
    State s;
    s.p = &p;
    s.o = &o;
    s.box = detail::input_box(p, o);
    s.threads = threads;
    const size_t n = nodes.size();
    s.lo.resize(n), s.hi.resize(n), s.slope_l.resize(n), s.icpt_l.resize(n), s.slope_u.resize(n), s.icpt_u.resize(n);
    BoundResult res;
    // Progress by layer, only where one problem at a time runs on the calling thread.
    const bool report = o.layer_progress && report_layers;
    const std::vector<int> schedule = detail::bound_schedule(net_);
    const auto layers = static_cast<int64_t>(schedule.size()) + 1;
    int64_t layers_done = 0;
    for (const int k : schedule) {
      const Node& node = nodes[static_cast<size_t>(k)];
      if (report) o.layer_progress(layers_done++, layers);
      const int src = node.inputs[0];
      if (s.lo[static_cast<size_t>(src)].empty()) {
        if (!pool_input_from_activation(s, k)) compute_bounds(s, src);
        auto reliable = [](const std::vector<double>& v) {
          return std::all_of(v.begin(), v.end(), batched::reliable_bound);
        };
        if (!reliable(s.lo[static_cast<size_t>(src)]) || !reliable(s.hi[static_cast<size_t>(src)])) {
          res.error = detail::unreliable_bounds_error(nodes[static_cast<size_t>(src)].name);
          res.lower.assign(static_cast<size_t>(p.rows), -std::numeric_limits<double>::infinity());
          res.upper.assign(static_cast<size_t>(p.rows), std::numeric_limits<double>::infinity());
          return res;
        }
        if (o.want_intermediate)
          res.intermediate.push_back({src, s.lo[static_cast<size_t>(src)], s.hi[static_cast<size_t>(src)]});
      }
      relax_node(s, k);
    }
    // The specification rows on the output node.
    const int out = net_.output();
    const Geometry& g = geo_[static_cast<size_t>(out)];
    const int64_t classes = net_.output_size();
    Coeffs init;
    init.reset(p.rows, g.c, g.h, g.w, true);
    for (int64_t r = 0; r < p.rows; ++r)
      for (int64_t k = 0; k < classes; ++k) init.at(k)[r] = p.spec[static_cast<size_t>(r * classes + k)];
    Coeffs fl, fu;
    std::vector<double> bl, bu;
    const bool lin = o.want_linear;
    if (report) o.layer_progress(layers_done, layers);
    backsub(s, out, init, res.lower, res.upper, lin ? &fl : nullptr, lin ? &fu : nullptr, lin ? &bl : nullptr,
            lin ? &bu : nullptr);
    if (lin) {
      auto row_major = [&](const Coeffs& c) {
        std::vector<double> m(c.a.size());
        const int64_t n = c.win();
        for (int64_t pos = 0; pos < n; ++pos)
          for (int64_t r = 0; r < c.rows; ++r) m[static_cast<size_t>(r * n + pos)] = c.at(pos)[r];
        return m;
      };
      res.a_lower = row_major(fl), res.a_upper = row_major(fu);
      res.b_lower = std::move(bl), res.b_upper = std::move(bu);
    }
    detail::fail_closed_unless_finite(res);
    return res;
  }

  const Network& net_;
  int threads_;
  std::vector<Geometry> geo_;
  std::map<int, std::vector<int64_t>> maps_;
  std::map<int, std::vector<double>> avg_slopes_;
};

}  // namespace
}  // namespace cpu

std::unique_ptr<BoundEngine> make_cpu_engine(const Network& net, int threads) {
  return std::make_unique<cpu::CpuEngine>(net, threads);
}

}  // namespace cnncert
