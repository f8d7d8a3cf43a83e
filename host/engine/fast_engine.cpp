// The fast CPU bound engine: the reference engine's back-substitution (same relaxations, same
// bound schedule), organised for speed, with float32 coefficients (bias terms, bounds and
// intervals in double).
//
// * Receptive-field windows ("patches"), as in the reference: through convolutions and pooling a
//   row's coefficients are a window of the map at the row's own offset, the same shape for all
//   rows of a chunk, replaced by the whole map where the window covers it and at dense layers.
// * Coefficients are stored position-major (a[pos · n + r]) with the upper-bound and the
//   lower-bound pass stacked (rows [0, R) and [R, 2R)), so a convolution's back-substitution is
//   GEMMs (wide ones: per input row, Wᵀ times the gathered taps, the kernel as the inner dimension;
//   else Wᵀ · A over positions × rows, then a col2im of row vectors; narrow ones: long AXPYs) and
//   a dense layer's is one GEMM, through BLAS when the build has it.
// * Rows only for neurons that need them: before the back-substitution of a node whose bounds
//   only feed ReLU/LeakyReLU relaxations, interval propagation from the latest bounds proves
//   neurons stable (l ≥ 0 or u ≤ 0); those get the interval as bounds (their relaxation is the
//   exact linear function either way) and no row. The interval is intersected with the problem's
//   outer bounds (BoundProblem::outer: a failed search step's bounds at a larger radius) when it
//   has them. Before a max-pool that reads a ReLU only neurons proven ≤ 0 are skipped (the
//   max-pool's input bounds are [0, 0] for them either way). With BoundOptions::exact_cnncert every
//   neuron gets a row, as in the original CNN-Cert.
// * Threads: problems in parallel when there are enough of them, else the chunks of a layer, as
//   many at once as the memory budget holds. The chunking depends on the network and the budget
//   only, and BLAS runs single-threaded inside, so the results are bit-identical for any thread
//   count (for a given budget).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "engine/batched_kernels.hpp"
#include "engine/engine_common.hpp"

#ifdef CNNCERT_HAVE_BLAS
#include <cblas.h>
#endif

// Hot loops get an AVX2 clone chosen at run time (GCC on x86-64); the build stays portable. Not
// under ThreadSanitizer: the resolver runs before the sanitizer is set up (reference_engine.cpp).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CNNCERT_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define CNNCERT_AVX2_CLONE
#endif

namespace cnncert {
namespace fast {
namespace {

using detail::Geometry;
using detail::geometry;
using detail::parallel_for;

// ---- buffers ------------------------------------------------------------------------------------

/// The coefficients' precision. float32 as on the GPU (and as in the original CNN-Cert code): twice
/// the SIMD width and half the memory traffic of double. Bias terms, bounds, intervals and the
/// concretization accumulate in double.
using Real = float;
using Pool = detail::BufferPoolOf<Real>;
using detail::Window;

/// Bytes of coefficient tensors alive (all threads), and the peak since the last reset.
std::atomic<int64_t> g_live_bytes{0}, g_peak_bytes{0};

void count_bytes(int64_t delta) {
  const int64_t now = g_live_bytes += delta;
  int64_t peak = g_peak_bytes.load();
  while (now > peak && !g_peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

/// Coefficients of a chunk's n stacked rows at one node, position-major (a[pos · n + r]). Either
/// `full` (positions = the whole map) or a window of c × h × w positions per row at the row's own
/// offset (y0[r], x0[r]) in the map, the same shape for every row (CNN-Cert's receptive fields);
/// window entries outside the map are always zero.
struct Rows {
  int64_t n = 0, c = 0, h = 0, w = 0;
  bool full = true;
  std::vector<int64_t> y0, x0;
  std::vector<Real> a;
  Rows() = default;
  Rows(int64_t n_, int64_t c_, int64_t h_, int64_t w_, bool full_)
      : n(n_), c(c_), h(h_), w(w_), full(full_), a(Pool::take(static_cast<size_t>(n_ * c_ * h_ * w_))) {
    if (!full) y0.assign(static_cast<size_t>(n), 0), x0.assign(static_cast<size_t>(n), 0);
    count_bytes(bytes());
  }
  Rows(const Rows& o) : n(o.n), c(o.c), h(o.h), w(o.w), full(o.full), y0(o.y0), x0(o.x0), a(Pool::take(o.a.size())) {
    std::copy(o.a.begin(), o.a.end(), a.begin());
    count_bytes(bytes());
  }
  Rows(Rows&& o) noexcept
      : n(o.n), c(o.c), h(o.h), w(o.w), full(o.full), y0(std::move(o.y0)), x0(std::move(o.x0)), a(std::move(o.a)) {
    o.a.clear(), o.n = 0;
  }
  Rows& operator=(Rows&& o) noexcept {
    if (this != &o) {
      release();
      n = o.n, c = o.c, h = o.h, w = o.w, full = o.full;
      y0 = std::move(o.y0), x0 = std::move(o.x0), a = std::move(o.a);
      o.a.clear(), o.n = 0;
    }
    return *this;
  }
  Rows& operator=(const Rows&) = delete;
  ~Rows() { release(); }
  int64_t bytes() const { return static_cast<int64_t>(a.size() * sizeof(Real)); }
  void release() {
    count_bytes(-bytes());
    Pool::give(std::move(a));
    a.clear();
  }
  bool empty() const { return n == 0; }
  Real* at(int64_t pos) { return a.data() + pos * n; }
  const Real* at(int64_t pos) const { return a.data() + pos * n; }
  /// Map index of window position (ch, y, x) of row r.
  int64_t map_index(const Geometry& g, int64_t ch, int64_t y, int64_t x, int64_t r) const {
    return full ? (ch * g.h + y) * g.w + x
                : (ch * g.h + y0[static_cast<size_t>(r)] + y) * g.w + x0[static_cast<size_t>(r)] + x;
  }
};

// y += alpha·x, with an AVX2 clone picked at run time (no FMA contraction: the same results on
// every x86-64 machine, as in the reference engine).
CNNCERT_AVX2_CLONE
void axpy(int64_t n, Real alpha, const Real* __restrict x, Real* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

/// y += alpha·x into double accumulators (the bias terms).
CNNCERT_AVX2_CLONE
void axpy_acc(int64_t n, double alpha, const Real* __restrict x, double* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * static_cast<double>(x[i]);
}

/// y += a0·x0 + a1·x1 (+ a2·x2): two or three taps of a convolution row in one pass over y.
CNNCERT_AVX2_CLONE
void axpy2(int64_t n, Real a0, const Real* __restrict x0, Real a1, const Real* __restrict x1, Real* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a0 * x0[i] + a1 * x1[i];
}
CNNCERT_AVX2_CLONE
void axpy3(int64_t n, Real a0, const Real* __restrict x0, Real a1, const Real* __restrict x1, Real a2,
           const Real* __restrict x2, Real* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i];
}

#ifdef CNNCERT_HAVE_BLAS
/// Row-major C = op(A) · B in the precision of the coefficients.
[[maybe_unused]] void blas_gemm(CBLAS_TRANSPOSE op, int m, int n, int k, const float* a, int lda, const float* b,
                                int ldb, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, op, CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
[[maybe_unused]] void blas_gemm(CBLAS_TRANSPOSE op, int m, int n, int k, const double* a, int lda, const double* b,
                                int ldb, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, op, CblasNoTrans, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}
#endif

/// C (M × N) = op(A) · B, C overwritten: op(A) = Aᵀ for A: K × M (`trans_a`), else A: M × K
/// (leading dimension lda); B: K × N (ldb). Returns the floating-point operations.
double gemm(bool trans_a, int64_t m, int64_t n, int64_t k, const Real* a, int64_t lda, const Real* b, int64_t ldb,
            Real* c, int64_t ldc) {
#ifdef CNNCERT_HAVE_BLAS
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  CNNCERT_CHECK(m <= kMaxInt && n <= kMaxInt && k <= kMaxInt && lda <= kMaxInt && ldb <= kMaxInt && ldc <= kMaxInt,
                "a back-substitution GEMM is too large for BLAS's int sizes (use a smaller memory budget)");
  const auto op = trans_a ? CblasTrans : CblasNoTrans;
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  blas_gemm(op, M, N, K, a, static_cast<int>(lda), b, static_cast<int>(ldb), c, static_cast<int>(ldc));
#else
  for (int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, Real(0));
  for (int64_t p = 0; p < k; ++p)
    for (int64_t i = 0; i < m; ++i) {
      const Real v = trans_a ? a[p * lda + i] : a[i * lda + p];
      if (v != 0) axpy(n, v, b + p * ldb, c + i * ldc);
    }
#endif
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

/// One kernel tap of interval propagation through a convolution, along a row of the map: centres
/// mo += w·mi, radii ro += |w|·ri, magnitudes ao += |w|·ai (inputs at stride `stride`).
CNNCERT_AVX2_CLONE
void interval_taps(int64_t n, int64_t stride, double w, const double* __restrict mi, const double* __restrict ri,
                   const double* __restrict ai, double* __restrict mo, double* __restrict ro, double* __restrict ao) {
  const double aw = std::fabs(w);
  if (stride == 1) {
    for (int64_t q = 0; q < n; ++q) mo[q] += w * mi[q], ro[q] += aw * ri[q], ao[q] += aw * ai[q];
    return;
  }
  for (int64_t q = 0; q < n; ++q)
    mo[q] += w * mi[q * stride], ro[q] += aw * ri[q * stride], ao[q] += aw * ai[q * stride];
}

/// The same coefficients over the whole map.
Rows to_full(Rows&& in, const Geometry& g) {
  if (in.full) return std::move(in);
  Rows out(in.n, g.c, g.h, g.w, true);
  for (int64_t ch = 0; ch < in.c; ++ch)
    for (int64_t y = 0; y < in.h; ++y)
      for (int64_t x = 0; x < in.w; ++x) {
        const Real* v = in.at((ch * in.h + y) * in.w + x);
        for (int64_t r = 0; r < in.n; ++r)
          if (v[r] != 0) out.a[static_cast<size_t>(in.map_index(g, ch, y, x, r) * in.n + r)] += v[r];
      }
  return out;
}

/// Zeroes the window entries of rows that fall outside the map.
void mask_outside(Rows& a, const Geometry& g) {
  if (a.full) return;
  std::vector<int64_t> crossing, zero;  // rows whose window leaves the map; those outside at (y, x)
  for (int64_t r = 0; r < a.n; ++r) {
    const int64_t y0 = a.y0[static_cast<size_t>(r)], x0 = a.x0[static_cast<size_t>(r)];
    if (y0 < 0 || x0 < 0 || y0 + a.h > g.h || x0 + a.w > g.w) crossing.push_back(r);
  }
  if (crossing.empty()) return;
  for (int64_t y = 0; y < a.h; ++y)
    for (int64_t x = 0; x < a.w; ++x) {
      zero.clear();
      for (int64_t r : crossing) {
        const int64_t yy = a.y0[static_cast<size_t>(r)] + y, xx = a.x0[static_cast<size_t>(r)] + x;
        if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) zero.push_back(r);
      }
      for (int64_t ch = 0; ch < a.c && !zero.empty(); ++ch) {
        Real* v = a.at((ch * a.h + y) * a.w + x);
        for (int64_t r : zero) v[r] = 0;
      }
    }
}

/// A window as large as the map in either direction becomes the whole map.
Rows settle(Rows&& a, const Geometry& g) {
  if (!a.full && (a.h >= g.h || a.w >= g.w)) return to_full(std::move(a), g);
  return std::move(a);
}

/// dst += src (both at the node of geometry g).
void accumulate(Rows& dst, Rows&& src, const Geometry& g) {
  if (dst.empty()) {
    dst = std::move(src);
    return;
  }
  CNNCERT_ASSERT(dst.n == src.n && dst.c == src.c);
  if (!dst.full && !src.full) {
    // Offsets differing by a constant: the union window keeps the rows' common structure.
    const int64_t dy = src.y0[0] - dst.y0[0], dx = src.x0[0] - dst.x0[0];
    bool uniform = true;
    for (size_t r = 1; r < dst.y0.size() && uniform; ++r)
      uniform = src.y0[r] - dst.y0[r] == dy && src.x0[r] - dst.x0[r] == dx;
    if (uniform) {
      const int64_t sy = std::min<int64_t>(0, dy), sx = std::min<int64_t>(0, dx);
      const int64_t h = std::max(dst.h, dy + src.h) - sy, w = std::max(dst.w, dx + src.w) - sx;
      Rows out(dst.n, dst.c, h, w, false);
      for (size_t r = 0; r < out.y0.size(); ++r) out.y0[r] = dst.y0[r] + sy, out.x0[r] = dst.x0[r] + sx;
      for (const Rows* p : {&dst, &src}) {
        const int64_t oy = p == &dst ? -sy : dy - sy, ox = p == &dst ? -sx : dx - sx;
        for (int64_t ch = 0; ch < p->c; ++ch)
          for (int64_t y = 0; y < p->h; ++y)
            for (int64_t x = 0; x < p->w; ++x)
              axpy(p->n, 1.0, p->at((ch * p->h + y) * p->w + x), out.at((ch * h + y + oy) * w + x + ox));
      }
      dst = settle(std::move(out), g);
      return;
    }
  }
  dst = to_full(std::move(dst), g);
  const Rows f = to_full(std::move(src), g);
  axpy(static_cast<int64_t>(dst.a.size()), 1.0, f.a.data(), dst.a.data());
}

/// The coefficients at the input of a sliding-window op: the whole input map for full rows, or
/// windows grown by the kernel that start at each row's window start k.start_y(y0), k.start_x(x0).
/// Output position o reads, through tap t, coordinate k.in_y(o, t) − origin_y (and k.in_x − origin_x)
/// of the new coefficients: the origin is 0 for the whole map and k.start_y(0), k.start_x(0) for windows.
Rows window_input(const Rows& a, const Window& k, const Geometry& in, int64_t& origin_y, int64_t& origin_x) {
  if (a.full) {
    origin_y = origin_x = 0;
    return Rows(a.n, in.c, in.h, in.w, true);
  }
  origin_y = k.start_y(0), origin_x = k.start_x(0);
  Rows out(a.n, in.c, k.span_y(a.h), k.span_x(a.w), false);
  for (size_t r = 0; r < out.y0.size(); ++r) out.y0[r] = k.start_y(a.y0[r]), out.x0[r] = k.start_x(a.x0[r]);
  return out;
}

/// Convolutions with fewer output channels (per group) than this use direct AXPYs, not a GEMM.
constexpr int64_t kGemmMinK = 16;
/// Convolutions with at least this many input and output channels (per group) gather their taps
/// (one GEMM per row of the convolution's input with the kernel as the inner dimension) instead of
/// scattering them.
constexpr int64_t kGatherMinChannels = 16;

/// Scratch memory of one thread for the convolution GEMMs.
struct Scratch {
  std::vector<Real> cols;
  int64_t max_cols = int64_t{1} << 20;  ///< values of cols at most (but one output row of the window)
  double flops = 0;
};

/// The transposed convolution A_in = conv_transpose(A) of conv_back (without the bias), in gather
/// form: row iy of input channel ci is Σ over (co, ky, kx) of W[co, ci, ky, kx] times the row of A
/// that tap reads, so per piece of an input row one GEMM of Wᵀ (cin × cout·kk) with the gathered
/// taps (cout·kk × columns · rows): no scatter, and the kernel as the GEMM's inner dimension.
void conv_back_gather(const Rows& a, const ConvAttr& k, const Real* weight, const Window& win, int64_t origin_y,
                      int64_t origin_x, Rows& out, Scratch& s) {
  const int64_t n = a.n, cin_g = k.in_channels, cout_g = k.out_channels / k.groups, kk = k.kernel_h * k.kernel_w;
  const int64_t K = cout_g * kk, m = cin_g * kk;
  // Columns of one GEMM: as many input columns as the scratch holds (at least one).
  const int64_t piece = std::clamp<int64_t>(s.max_cols / std::max<int64_t>(K * n, 1), 1, out.w);
  if (static_cast<int64_t>(s.cols.size()) < K * piece * n) s.cols.resize(static_cast<size_t>(K * piece * n));
  std::vector<Real> wt(static_cast<size_t>(cin_g * K));  // Wᵀ of one group: wt[ci · K + co · kk + t]
  for (int64_t g = 0; g < k.groups; ++g) {
    for (int64_t co = 0; co < cout_g; ++co)
      for (int64_t ci = 0; ci < cin_g; ++ci)
        for (int64_t t = 0; t < kk; ++t)
          wt[static_cast<size_t>(ci * K + co * kk + t)] = weight[(g * cout_g + co) * m + ci * kk + t];
    for (int64_t iy = 0; iy < out.h; ++iy)
      for (int64_t ix0 = 0; ix0 < out.w; ix0 += piece) {
        const int64_t width = std::min(piece, out.w - ix0), cols = width * n;
        bool any = false;
        for (int64_t co = 0; co < cout_g; ++co)
          for (int64_t ky = 0; ky < k.kernel_h; ++ky) {
            const int64_t oy = win.out_y(iy + origin_y, ky, a.h);
            for (int64_t kx = 0; kx < k.kernel_w; ++kx) {
              Real* b = s.cols.data() + ((co * k.kernel_h + ky) * k.kernel_w + kx) * cols;
              for (int64_t ix = 0; ix < width; ++ix) {
                const int64_t ox = oy < 0 ? -1 : win.out_x(ix0 + ix + origin_x, kx, a.w);
                if (ox < 0) {
                  std::fill_n(b + ix * n, n, Real(0));
                  continue;
                }
                const Real* src = a.at(((g * cout_g + co) * a.h + oy) * a.w + ox);
                std::copy(src, src + n, b + ix * n);
                any = true;
              }
            }
          }
        if (!any) continue;  // no tap reaches this piece: it stays zero
        s.flops += gemm(false, cin_g, cols, K, wt.data(), K, s.cols.data(), cols,
                        out.at(((g * cin_g) * out.h + iy) * out.w + ix0), out.h * out.w * n);
      }
  }
}

/// Back through a convolution: bias += ⟨A, b⟩ and A_in = conv_transpose(A), by one of three
/// paths: long AXPYs (few output channels), the gather form (wide convolutions, conv_back_gather),
/// or one GEMM (Wᵀ · A over output positions × rows) per block of window rows, then a col2im of
/// row vectors.
Rows conv_back(const Rows& a, const ConvAttr& k, const Real* weight, const Geometry& in, double* bias, Scratch& s) {
  const int64_t n = a.n, hw = a.h * a.w;
  for (int64_t co = 0; co < a.c; ++co) {
    const double b = k.bias[static_cast<size_t>(co)];
    if (b != 0)
      for (int64_t p = 0; p < hw; ++p) axpy_acc(n, b, a.at(co * hw + p), bias);
  }
  const Window win = k.window();
  int64_t origin_y, origin_x;
  Rows out = window_input(a, win, in, origin_y, origin_x);
  const int64_t cin_g = k.in_channels, cout_g = k.out_channels / k.groups, kk = k.kernel_h * k.kernel_w, m = cin_g * kk;
  if (cout_g < kGemmMinK && k.stride_w == 1) {
    // Few output channels: a GEMM would be all memory traffic. With unit column stride the taps of
    // one window row are contiguous, so each (co, ci, ky, window row) is one long pass that adds
    // all of a kernel row's taps (three at a time) where they overlap, and AXPYs at the edges.
    struct Tap {
      Real w;
      int64_t off, lo, hi;  // window column ox reads column ox + off, for ox in [lo, hi)
    };
    std::vector<Tap> taps;
    for (int64_t co = 0; co < a.c; ++co) {
      const int64_t g = co / cout_g;
      const Real* wco = weight + co * m;
      for (int64_t ci = 0; ci < cin_g; ++ci)
        for (int64_t ky = 0; ky < k.kernel_h; ++ky) {
          taps.clear();
          for (int64_t kx = 0; kx < k.kernel_w; ++kx) {
            const Real wv = wco[(ci * k.kernel_h + ky) * k.kernel_w + kx];
            const int64_t off = win.in_x(0, kx) - origin_x;
            const int64_t ox0 = std::max(-off, int64_t{0}), ox1 = std::min(a.w, out.w - off);
            if (wv != 0 && ox1 > ox0) taps.push_back({wv, off, ox0, ox1});
          }
          for (size_t t0 = 0; t0 < taps.size(); t0 += 3) {
            const size_t nt = std::min<size_t>(3, taps.size() - t0);
            const Tap* tp = taps.data() + t0;
            // Output columns [L, R) that every tap of the group reaches.
            int64_t L = std::numeric_limits<int64_t>::min(), R = std::numeric_limits<int64_t>::max();
            for (size_t t = 0; t < nt; ++t)
              L = std::max(L, tp[t].lo + tp[t].off), R = std::min(R, tp[t].hi + tp[t].off);
            for (int64_t oy = 0; oy < a.h; ++oy) {
              const int64_t iy = win.in_y(oy, ky) - origin_y;
              if (iy < 0 || iy >= out.h) continue;
              const Real* src = a.at((co * a.h + oy) * a.w);
              Real* dst = out.at(((g * cin_g + ci) * out.h + iy) * out.w);
              // Each tap alone outside [L, R) (everywhere when the taps share no column).
              const int64_t cut0 = R > L ? L : std::numeric_limits<int64_t>::max(), cut1 = R > L ? R : cut0;
              for (size_t t = 0; t < nt; ++t) {
                const int64_t lo = tp[t].lo + tp[t].off, hi = tp[t].hi + tp[t].off;
                const int64_t e0 = std::min(hi, cut0), e1 = std::max(e0, std::min(hi, cut1));
                if (e0 > lo) axpy((e0 - lo) * n, tp[t].w, src + (lo - tp[t].off) * n, dst + lo * n);
                if (hi > e1) axpy((hi - e1) * n, tp[t].w, src + (e1 - tp[t].off) * n, dst + e1 * n);
              }
              if (R <= L) continue;
              const int64_t len = (R - L) * n;
              if (nt == 3)
                axpy3(len, tp[0].w, src + (L - tp[0].off) * n, tp[1].w, src + (L - tp[1].off) * n, tp[2].w,
                      src + (L - tp[2].off) * n, dst + L * n);
              else if (nt == 2)
                axpy2(len, tp[0].w, src + (L - tp[0].off) * n, tp[1].w, src + (L - tp[1].off) * n, dst + L * n);
              else
                axpy(len, tp[0].w, src + (L - tp[0].off) * n, dst + L * n);
            }
            for (size_t t = 0; t < nt; ++t) s.flops += 2.0 * static_cast<double>(a.h * (tp[t].hi - tp[t].lo) * n);
          }
        }
    }
    mask_outside(out, in);
    return settle(std::move(out), in);
  }
  // The gather form computes every tap of every input position, also those that read outside a
  // window of A (zeros), and copies the taps that BLAS then packs again: worth it only where the
  // input window is no larger than A's ('same' padding on whole maps, 1 × 1 kernels). With a
  // larger input window the scatter form below was faster (2026-12-02, float32: mnist_cnn_7layer
  // 6.0 → 4.9 s/image with 1× instead of 1.5× as the limit; biasfield and resnet_2b unchanged).
  if (cout_g >= kGatherMinChannels && cin_g >= kGatherMinChannels && out.h * out.w <= a.h * a.w) {
    conv_back_gather(a, k, weight, win, origin_y, origin_x, out, s);
    mask_outside(out, in);
    return settle(std::move(out), in);
  }
  // Columns per GEMM: whole window rows while they fit s.max_cols, else pieces of one window row
  // (at least one window position).
  const int64_t per_pos = m * n, per_row = per_pos * a.w;
  const int64_t block = std::clamp<int64_t>(s.max_cols / std::max<int64_t>(per_row, 1), 1, a.h);
  const int64_t piece = block > 1 || per_row <= s.max_cols ? a.w : std::clamp<int64_t>(s.max_cols / per_pos, 1, a.w);
  const int64_t need = block > 1 || piece == a.w ? per_row * block : per_pos * piece;
  if (static_cast<int64_t>(s.cols.size()) < need) s.cols.resize(static_cast<size_t>(need));
  for (int64_t g = 0; g < k.groups; ++g) {
    const Real* wg = weight + g * cout_g * m;
    for (int64_t by = 0; by < a.h; by += block)
      for (int64_t bx = 0; bx < a.w; bx += piece) {
        // Window rows [by, by + rows_here), columns [bx, bx + width): contiguous in A.
        const int64_t rows_here = std::min(block, a.h - by), width = std::min(piece, a.w - bx),
                      cols = rows_here * width * n;
        s.flops += gemm(true, m, cols, cout_g, wg, m, a.a.data() + (g * cout_g * hw + by * a.w + bx) * n, hw * n,
                        s.cols.data(), cols);
        for (int64_t ci = 0; ci < cin_g; ++ci)
          for (int64_t ky = 0; ky < k.kernel_h; ++ky)
            for (int64_t kx = 0; kx < k.kernel_w; ++kx) {
              const Real* crow = s.cols.data() + ((ci * k.kernel_h + ky) * k.kernel_w + kx) * cols;
              for (int64_t oy = 0; oy < rows_here; ++oy) {
                const int64_t iy = win.in_y(by + oy, ky) - origin_y;
                if (iy < 0 || iy >= out.h) continue;
                for (int64_t ox = 0; ox < width; ++ox) {
                  const int64_t ix = win.in_x(bx + ox, kx) - origin_x;
                  if (ix < 0 || ix >= out.w) continue;
                  axpy(n, 1.0, crow + (oy * width + ox) * n, out.at(((g * cin_g + ci) * out.h + iy) * out.w + ix));
                }
              }
            }
      }
  }
  mask_outside(out, in);
  return settle(std::move(out), in);
}

/// Back through a dense layer: bias += ⟨A, b⟩, A_in = Wᵀ · A over the whole input.
Rows dense_back(Rows&& a_in, const DenseAttr& d, const Real* weight, const Geometry& og, const Geometry& in,
                double* bias, Scratch& s) {
  const Rows a = to_full(std::move(a_in), og);
  const int64_t n = a.n;
  for (int64_t o = 0; o < d.out_features; ++o) {
    const double b = d.bias[static_cast<size_t>(o)];
    if (b != 0) axpy_acc(n, b, a.at(o), bias);
  }
  Rows out(n, in.c, in.h, in.w, true);
  s.flops += gemm(true, d.in_features, n, d.out_features, weight, d.in_features, a.a.data(), n, out.a.data(), n);
  return out;
}

/// An element-wise linear relaxation packed per neuron as (α_U, β_U, α_L, β_L): one cache line
/// serves both signs of a row's coefficient.
std::vector<double> pack_relaxation(const double* au, const double* bu, const double* al, const double* bl,
                                    size_t size) {
  std::vector<double> pk(4 * size);
  for (size_t j = 0; j < size; ++j)
    pk[4 * j] = au ? au[j] : 1, pk[4 * j + 1] = bu[j], pk[4 * j + 2] = al ? al[j] : 1, pk[4 * j + 3] = bl[j];
  return pk;
}

/// Concretization terms of n rows: row r's coefficient v[r] at input element index(r), whose
/// centre (or a box's lower corner) is xc and a box's upper corner xh (batched::concretize_elem;
/// the norm fixed per instance so that the loop vectorizes; a zero coefficient adds ±0).
template <batched::RegionNorm N, class Index>
inline __attribute__((always_inline)) void concretize_terms(int64_t n, const Real* __restrict v, Index index,
                                                            const double* __restrict xc, const double* __restrict xh,
                                                            double* __restrict ce, double* __restrict no) {
  using batched::RegionNorm;
  for (int64_t r = 0; r < n; ++r) {
    const double c = v[r];
    const int64_t j = index(r);
    if constexpr (N == RegionNorm::Box) {
      batched::concretize_elem(c, xc[j], xh[j], N, ce[r], no[r]);
    } else {
      ce[r] += c * xc[j];
      if constexpr (N == RegionNorm::Linf) no[r] += std::fabs(c);
      if constexpr (N == RegionNorm::L2) no[r] += c * c;
      if constexpr (N == RegionNorm::L1) no[r] = std::fabs(c) > no[r] ? std::fabs(c) : no[r];
    }
  }
}

/// concretize_terms for the norm `rn`.
template <class Index>
inline __attribute__((always_inline)) void concretize_terms(batched::RegionNorm rn, int64_t n, const Real* v,
                                                            Index index, const double* xc, const double* xh, double* ce,
                                                            double* no) {
  using batched::RegionNorm;
  switch (rn) {
    case RegionNorm::Linf: return concretize_terms<RegionNorm::Linf>(n, v, index, xc, xh, ce, no);
    case RegionNorm::L2: return concretize_terms<RegionNorm::L2>(n, v, index, xc, xh, ce, no);
    case RegionNorm::L1: return concretize_terms<RegionNorm::L1>(n, v, index, xc, xh, ce, no);
    case RegionNorm::Box: return concretize_terms<RegionNorm::Box>(n, v, index, xc, xh, ce, no);
  }
}

/// The concretization over a whole input map: `count` positions of n stacked rows each
/// (contiguous), position p at input element p.
CNNCERT_AVX2_CLONE
void full_concretize(int64_t count, int64_t n, const Real* __restrict a, const double* __restrict xc,
                     const double* __restrict xh, batched::RegionNorm rn, double* __restrict ce,
                     double* __restrict no) {
  for (int64_t p = 0; p < count; ++p)
    concretize_terms(
        rn, n, a + p * n, [p](int64_t) { return p; }, xc, xh, ce, no);
}

/// One window position of the concretization for n rows: row r's input element is base[r] + at.
/// Branch-free as window_relax: a row's position outside the map has coefficient 0, reads a
/// clamped index and adds ±0.
CNNCERT_AVX2_CLONE
void window_concretize(int64_t n, const Real* __restrict v, const int64_t* __restrict base, int64_t at, int64_t last,
                       const double* __restrict xc, const double* __restrict xh, batched::RegionNorm rn,
                       double* __restrict ce, double* __restrict no) {
  concretize_terms(
      rn, n, v, [&](int64_t r) { return std::clamp<int64_t>(at + base[r], 0, last); }, xc, xh, ce, no);
}

/// elementwise_back over a whole map: `count` positions of n stacked rows each (contiguous),
/// position p's relaxation at pk + 4p.
CNNCERT_AVX2_CLONE
void full_relax(int64_t count, int64_t n, Real* __restrict a, const double* __restrict pk, bool slopes,
                double* __restrict bias) {
  const int64_t half = n / 2;
  for (int64_t p = 0; p < count; ++p) {
    Real* v = a + p * n;
    const double* q = pk + 4 * p;
    const double su = slopes ? q[0] : 1, sl = slopes ? q[2] : 1, tu = q[1], tl = q[3];
    if (su == sl && tu == tl) {  // the same linear function for both signs (stable neuron, affine op)
      if (tu != 0)
        for (int64_t r = 0; r < n; ++r) bias[r] += v[r] * tu;
      if (su != 1)
        for (int64_t r = 0; r < n; ++r) v[r] = static_cast<Real>(v[r] * su);
      continue;
    }
    for (int64_t r = 0; r < half; ++r) {
      const double z = v[r];
      const bool pos = z > 0;
      bias[r] += z * (pos ? tu : tl);
      v[r] = static_cast<Real>(z * (pos ? su : sl));
    }
    for (int64_t r = half; r < n; ++r) {
      const double z = v[r];
      const bool pos = z > 0;
      bias[r] += z * (pos ? tl : tu);
      v[r] = static_cast<Real>(z * (pos ? sl : su));
    }
  }
}

/// One window position of elementwise_back for `count` rows: row r's neuron is at pk + at +
/// base[r]; a positive coefficient takes the pair at offset `pos` (0: upper, 2: lower), a negative
/// one the other. Branch-free so that it vectorizes (gathers): a row's position outside the map
/// has coefficient 0 (mask_outside), so it may read any neuron's pair (the index is clamped to
/// the map) and adds ±0.
CNNCERT_AVX2_CLONE
void window_relax(int64_t count, Real* __restrict v, const int64_t* __restrict base, int64_t at, int64_t last,
                  const double* __restrict pk, int64_t pos, bool slopes, double* __restrict bias) {
  const int64_t neg = 2 - pos;
  if (slopes)
    for (int64_t r = 0; r < count; ++r) {
      const double z = v[r];
      const int64_t j = std::clamp<int64_t>(at + base[r], 0, last) + (z > 0 ? pos : neg);
      bias[r] += z * pk[j + 1];
      v[r] = static_cast<Real>(z * pk[j]);
    }
  else
    for (int64_t r = 0; r < count; ++r) {
      const double z = v[r];
      const int64_t j = std::clamp<int64_t>(at + base[r], 0, last) + (z > 0 ? pos : neg);
      bias[r] += z * pk[j + 1];
    }
}

/// Element-wise linear relaxation `pk` (pack_relaxation): in the upper half (rows [0, half)) a
/// positive coefficient takes (α_U, β_U) and a negative one (α_L, β_L); the lower half the
/// reverse. Without `slopes` only the bias terms (the coefficients stay).
void elementwise_back(Rows& a, const Geometry& g, const double* pk, bool slopes, double* bias) {
  const int64_t n = a.n, half = n / 2;
  if (a.full) {
    full_relax(a.c * a.h * a.w, n, a.a.data(), pk, slopes, bias);
    return;
  }
  std::vector<int64_t> base(static_cast<size_t>(n));
  const int64_t last = 4 * (g.c * g.h * g.w - 1);
  for (size_t r = 0; r < base.size(); ++r) base[r] = 4 * (a.y0[r] * g.w + a.x0[r]);
  for (int64_t ch = 0; ch < a.c; ++ch)
    for (int64_t y = 0; y < a.h; ++y)
      for (int64_t x = 0; x < a.w; ++x) {
        Real* v = a.at((ch * a.h + y) * a.w + x);
        // (α, β) of the upper relaxation at offset 0, of the lower one at offset 2
        const int64_t at = 4 * ((ch * g.h + y) * g.w + x);
        window_relax(half, v, base.data(), at, last, pk, 0, slopes, bias);
        window_relax(n - half, v + half, base.data() + half, at, last, pk, 2, slopes, bias + half);
      }
}

/// Back through pooling with per-output-neuron slopes (out × kk) and, for max-pooling, the
/// upper and lower intercepts (packed as an element-wise relaxation's, applied like one).
Rows pool_back(Rows&& a, const PoolAttr& p, const Geometry& og, const Geometry& in, const double* slopes,
               const double* betas, double* bias) {
  if (betas) elementwise_back(a, og, betas, false, bias);
  const Window win = p.window();
  int64_t origin_y, origin_x;
  Rows out = window_input(a, win, in, origin_y, origin_x);
  const int64_t kk = p.kernel_h * p.kernel_w;
  for (int64_t ch = 0; ch < a.c; ++ch)
    for (int64_t oy = 0; oy < a.h; ++oy)
      for (int64_t ox = 0; ox < a.w; ++ox) {
        const Real* v = a.at((ch * a.h + oy) * a.w + ox);
        for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
          const int64_t iy = win.in_y(oy, ky) - origin_y;
          if (iy < 0 || iy >= out.h) continue;
          for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
            const int64_t ix = win.in_x(ox, kx) - origin_x;
            if (ix < 0 || ix >= out.w) continue;
            Real* o = out.at((ch * out.h + iy) * out.w + ix);
            const int64_t q = ky * p.kernel_w + kx;
            if (a.full) {
              const auto w = static_cast<Real>(slopes[((ch * og.h + oy) * og.w + ox) * kk + q]);
              if (w != 0) axpy(a.n, w, v, o);
              continue;
            }
            for (int64_t r = 0; r < a.n; ++r)
              if (v[r] != 0) o[r] += static_cast<Real>(v[r] * slopes[a.map_index(og, ch, oy, ox, r) * kk + q]);
          }
        }
      }
  mask_outside(out, in);
  return settle(std::move(out), in);
}

// ---- interval propagation ------------------------------------------------------------------------

}  // namespace

/// The fast engine.
class FastEngine final : public BoundEngine {
 public:
  FastEngine(const Network& net, int threads, size_t memory_bytes)
      : net_(net), threads_(threads > 0 ? threads : default_threads()), memory_(memory_bytes) {
    check_boundable(net_);
#if defined(CNNCERT_HAVE_BLAS) && defined(CNNCERT_HAVE_OPENBLAS)
    openblas_set_num_threads(1);  // our threads run the chunks; BLAS inside each is serial
#endif
    const auto& nodes = net_.nodes();
    const size_t n = nodes.size();
    geo_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      geo_[i] = geometry(nodes[i]);
      const OpKind op = nodes[i].op;
      if (op_traits(op).role == OpRole::Layout)
        maps_[static_cast<int>(i)] = detail::layout_map(nodes[i], nodes[static_cast<size_t>(nodes[i].inputs[0])]);
      if (op == OpKind::Conv || op == OpKind::Dense) {
        const std::vector<double>& w =
            op == OpKind::Conv ? nodes[i].as<ConvAttr>().weight : nodes[i].as<DenseAttr>().weight;
        detail::check_float32_range(w, "a weight of node '" + nodes[i].name + "'", "fast engine");
        weights_[static_cast<int>(i)].assign(w.begin(), w.end());
      }
      if (op == OpKind::ScaleShift) {
        const ScaleShiftAttr& at = nodes[i].as<ScaleShiftAttr>();
        packed_[static_cast<int>(i)] =
            pack_relaxation(at.scale.data(), at.shift.data(), at.scale.data(), at.shift.data(), at.scale.size());
      }
      if (op == OpKind::AvgPool)
        avg_slopes_[static_cast<int>(i)] =
            detail::avgpool_slopes(nodes[i], nodes[static_cast<size_t>(nodes[i].inputs[0])]);
    }
    skippable_ = detail::skip_levels(net_);  // (its comment says which neurons may go without a row)
    any_skippable_ = detail::any_skippable(net_, skippable_);
    for (size_t i = 0; i < n; ++i) max_size_ = std::max(max_size_, nodes[i].size());
  }

  std::string name() const override {
    return "cpu";
  }

  bool uses_outer_bounds(const BoundOptions& o) const override {
    return !o.exact_cnncert && any_skippable_;
  }

  EngineStats stats() const override {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    return stats_;
  }

  std::vector<BoundResult> bound(const std::vector<BoundProblem>& problems, const BoundOptions& options) override {
    check_bound_problems(net_, problems, options);
    std::vector<BoundResult> out(problems.size());
    const int threads = workers();
    const bool outer = static_cast<int64_t>(problems.size()) >= threads;
    {
      std::lock_guard<std::mutex> lock(stats_mutex_);
      ++stats_.calls;
    }
    g_peak_bytes = g_live_bytes.load();
    parallel_for(static_cast<int64_t>(problems.size()), outer ? threads : 1, [&](int64_t i) {
      out[static_cast<size_t>(i)] =
          solve(problems[static_cast<size_t>(i)], options, outer ? 1 : threads, !outer || threads == 1);
    });
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats_.peak_tensor_bytes =
        std::max(stats_.peak_tensor_bytes, static_cast<double>(g_peak_bytes.load() - g_live_bytes.load()));
    return out;
  }

 private:
  /// Rows (per pass) of one chunk: four stacked tensors of the largest node within three quarters
  /// of the memory budget, at most 256. Independent of the thread count (so are the results).
  int64_t max_rows() const {
    const double per_row = 2.0 * 4.0 * static_cast<double>(max_size_) * sizeof(Real);
    return std::clamp<int64_t>(static_cast<int64_t>(0.75 * static_cast<double>(memory_) / per_row), 1, 256);
  }

  /// Threads that work at once: as many chunks (tensors and GEMM scratch) as fit the budget, at most
  /// the requested threads, at least one.
  int workers() const {
    const double per_thread =
        2.0 * 4.0 * static_cast<double>(max_size_) * sizeof(Real) * static_cast<double>(max_rows()) +
        static_cast<double>(make_scratch().max_cols) * sizeof(Real);
    return static_cast<int>(std::clamp<double>(std::floor(static_cast<double>(memory_) / per_thread), 1, threads_));
  }

  /// Scratch of one thread: GEMM columns of at most an eighth of the budget (2^20 doubles at most),
  /// independent of the thread count.
  Scratch make_scratch() const {
    Scratch s;
    s.max_cols = std::clamp<int64_t>(static_cast<int64_t>(memory_ / 8 / sizeof(Real)), 1, int64_t{1} << 20);
    return s;
  }

  static int default_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
  }

  using PoolRelax = detail::PoolRelax;

  struct State {
    const BoundProblem* p = nullptr;
    const BoundOptions* o = nullptr;
    int threads = 1;
    std::vector<std::vector<double>> lo, hi;                            // bounds of nodes that need them
    std::vector<std::vector<double>> slope_l, icpt_l, slope_u, icpt_u;  // activation relaxations: α_L, β_L, α_U, β_U
    std::map<int, PoolRelax> pools;
    std::map<int, std::vector<double>> packed;        // activations and max-pools: pack_relaxation
    std::vector<std::vector<double>> box_lo, box_hi;  // interval bounds (valid where box_ok)
    std::vector<char> box_ok;
    detail::InputBox region;               // the input region as a box (a box or a clipped ball)
    std::vector<const NodeBounds*> outer;  // BoundProblem::outer by node, when it applies
    EngineStats stats;
    std::mutex m;
  };

  // ---- interval propagation ----

  /// Interval bounds of node k: its bounds when known, else propagated from its inputs.
  const std::vector<double>& ilo(State& s, int k) {
    return s.lo[static_cast<size_t>(k)].empty() ? s.box_lo[static_cast<size_t>(k)] : s.lo[static_cast<size_t>(k)];
  }
  const std::vector<double>& ihi(State& s, int k) {
    return s.hi[static_cast<size_t>(k)].empty() ? s.box_hi[static_cast<size_t>(k)] : s.hi[static_cast<size_t>(k)];
  }

  void intervals(State& s, int upto) {
    for (int k = 0; k <= upto; ++k) {
      const auto i = static_cast<size_t>(k);
      if (s.box_ok[i] || !s.lo[i].empty()) continue;
      interval_node(s, k);
      s.box_ok[i] = 1;
    }
  }

  void interval_node(State& s, int k) {
    const Node& n = net_.node(k);
    const auto i = static_cast<size_t>(k);
    const int64_t size = n.size();
    std::vector<double>& lo = s.box_lo[i];
    std::vector<double>& hi = s.box_hi[i];
    lo.assign(static_cast<size_t>(size), 0.0), hi.assign(static_cast<size_t>(size), 0.0);
    const BoundOptions& o = *s.o;
    if (n.op == OpKind::Input) {
      for (int64_t j = 0; j < size; ++j) {
        const auto jj = static_cast<size_t>(j);
        double l = s.p->x0[jj] - s.p->eps, u = s.p->x0[jj] + s.p->eps;  // the ℓ2 and ℓ1 balls lie inside the ℓ∞ ball
        if (s.region.active()) l = s.region.lo[jj], u = s.region.hi[jj];
        batched::widen_interval(l, u);
        lo[static_cast<size_t>(j)] = l, hi[static_cast<size_t>(j)] = u;
      }
      return;
    }
    const int src = n.inputs[0];
    const std::vector<double>& sl = ilo(s, src);
    const std::vector<double>& sh = ihi(s, src);
    const Geometry& gi = geo_[static_cast<size_t>(src)];
    const Geometry& g = geo_[i];
    switch (n.op) {
      case OpKind::Conv: {
        // Three convolutions of the inputs' centres (by W), radii and magnitudes (by |W|), row by
        // row of the map; the widening counts every tap of the kernel (at least the real terms).
        const ConvAttr& c = n.as<ConvAttr>();
        const Window win = c.window();
        const int64_t cin_g = c.in_channels, cout_g = c.out_channels / c.groups, kk = c.kernel_h * c.kernel_w;
        const int64_t plane = g.h * g.w, sw = c.stride_w;
        auto finish = [&](int64_t co, const double* mid, const double* rad, const double* mag, int64_t stride) {
          for (int64_t oy = 0; oy < g.h; ++oy)
            for (int64_t ox = 0; ox < g.w; ++ox) {
              const int64_t q = oy * stride + ox;
              double l = mid[q] - rad[q], u = mid[q] + rad[q];
              batched::widen_interval(l, u, mag[q], cin_g * kk + 1);
              const auto at = static_cast<size_t>(co * plane + oy * g.w + ox);
              lo[at] = l, hi[at] = u;
            }
        };
        // Per output channel: the bias, then tap(group, ci, ky, kx, w) for every non-zero weight,
        // then the channel's bounds from outputs at row stride `stride`.
        std::vector<double> mid, rad, mag;
        auto each_channel = [&](int64_t stride, auto&& tap) {
          for (int64_t co = 0; co < g.c; ++co) {
            const double* wco = c.weight.data() + co * cin_g * kk;
            const double b = c.bias[static_cast<size_t>(co)];
            std::fill(mid.begin(), mid.end(), b), std::fill(rad.begin(), rad.end(), 0.0);
            std::fill(mag.begin(), mag.end(), std::fabs(b));
            for (int64_t ci = 0; ci < cin_g; ++ci)
              for (int64_t ky = 0; ky < c.kernel_h; ++ky)
                for (int64_t kx = 0; kx < c.kernel_w; ++kx) {
                  const double w = wco[(ci * c.kernel_h + ky) * c.kernel_w + kx];
                  if (w != 0) tap(co / cout_g, ci, ky, kx, w);
                }
            finish(co, mid.data(), rad.data(), mag.data(), stride);
          }
        };
        // Unit strides: the input planes zero-padded to cover every tap, and the outputs kept at the
        // padded row stride, so that each tap is one pass over all the output rows (the padding
        // adds exact zeros: the same sums as skipping those taps). Only while the padded plane is
        // not much larger than the input and output planes (a huge padding or dilation, which a
        // file may claim, takes the row-by-row loop below).
        const int64_t top = std::max<int64_t>(0, -win.in_y(0, 0)), left = std::max<int64_t>(0, -win.in_x(0, 0));
        const int64_t bottom = std::max<int64_t>(0, win.in_y(g.h - 1, c.kernel_h - 1) - (gi.h - 1));
        const int64_t right = std::max<int64_t>(0, win.in_x(g.w - 1, c.kernel_w - 1) - (gi.w - 1));
        const bool one_pass =
            c.stride_h == 1 && sw == 1 && (gi.h + top + bottom) * (gi.w + left + right) <= 4 * (gi.h * gi.w + plane);
        // The inputs' centres, radii and magnitudes, zero-padded for the one-pass form.
        const int64_t pt = one_pass ? top : 0, pl = one_pass ? left : 0;
        const int64_t wp = gi.w + (one_pass ? left + right : 0), pplane = (gi.h + (one_pass ? top + bottom : 0)) * wp;
        const auto padded = static_cast<size_t>(gi.c * pplane);
        std::vector<double> mid_in(padded, 0.0), rad_in(padded, 0.0), mag_in(padded, 0.0);
        for (int64_t ch = 0; ch < gi.c; ++ch)
          for (int64_t y = 0; y < gi.h; ++y)
            for (int64_t x = 0; x < gi.w; ++x) {
              const auto j = static_cast<size_t>((ch * gi.h + y) * gi.w + x);
              const auto q = static_cast<size_t>(ch * pplane + (y + pt) * wp + x + pl);
              mid_in[q] = (sl[j] + sh[j]) / 2, rad_in[q] = (sh[j] - sl[j]) / 2;
              mag_in[q] = std::fabs(sl[j]) + std::fabs(sh[j]);
            }
        if (one_pass) {
          // Outputs q = oy · wp + ox for ox < g.w; the columns in between are never read.
          const int64_t len = (g.h - 1) * wp + g.w;
          mid.resize(static_cast<size_t>(len)), rad.resize(mid.size()), mag.resize(mid.size());
          each_channel(wp, [&](int64_t grp, int64_t ci, int64_t ky, int64_t kx, double w) {
            const int64_t in0 = (grp * cin_g + ci) * pplane + (win.in_y(0, ky) + pt) * wp + win.in_x(0, kx) + pl;
            interval_taps(len, 1, w, mid_in.data() + in0, rad_in.data() + in0, mag_in.data() + in0, mid.data(),
                          rad.data(), mag.data());
          });
          break;
        }
        // Per kernel column: the output columns [first, last) whose tap lands inside the input.
        std::vector<int64_t> first(static_cast<size_t>(c.kernel_w)), last(static_cast<size_t>(c.kernel_w));
        for (int64_t kx = 0; kx < c.kernel_w; ++kx) {
          int64_t f = 0, e = g.w;
          while (f < g.w && win.in_x(f, kx) < 0) ++f;
          while (e > f && win.in_x(e - 1, kx) >= gi.w) --e;
          first[static_cast<size_t>(kx)] = f, last[static_cast<size_t>(kx)] = e;
        }
        mid.resize(static_cast<size_t>(plane)), rad.resize(mid.size()), mag.resize(mid.size());
        each_channel(g.w, [&](int64_t grp, int64_t ci, int64_t ky, int64_t kx, double w) {
          const int64_t f = first[static_cast<size_t>(kx)], len = last[static_cast<size_t>(kx)] - f;
          if (len <= 0) return;
          for (int64_t oy = 0; oy < g.h; ++oy) {
            const int64_t iy = win.in_y(oy, ky);
            if (iy < 0 || iy >= gi.h) continue;
            const int64_t in0 = ((grp * cin_g + ci) * gi.h + iy) * gi.w + win.in_x(f, kx);
            interval_taps(len, sw, w, mid_in.data() + in0, rad_in.data() + in0, mag_in.data() + in0,
                          mid.data() + oy * g.w + f, rad.data() + oy * g.w + f, mag.data() + oy * g.w + f);
          }
        });
        break;
      }
      case OpKind::Dense: {
        const DenseAttr& d = n.as<DenseAttr>();
        std::vector<double> mid_in(static_cast<size_t>(d.in_features)), rad_in(static_cast<size_t>(d.in_features));
        for (size_t j = 0; j < mid_in.size(); ++j) mid_in[j] = (sl[j] + sh[j]) / 2, rad_in[j] = (sh[j] - sl[j]) / 2;
        for (int64_t r = 0; r < d.out_features; ++r) {
          const double* w = d.weight.data() + r * d.in_features;
          double mid = d.bias[static_cast<size_t>(r)], rad = 0, mag = std::fabs(mid);
          for (int64_t j = 0; j < d.in_features; ++j) {
            const auto jj = static_cast<size_t>(j);
            mid += w[j] * mid_in[jj], rad += std::fabs(w[j]) * rad_in[jj];
            mag += std::fabs(w[j]) * (std::fabs(mid_in[jj]) + rad_in[jj]);
          }
          double l = mid - rad, u = mid + rad;
          batched::widen_interval(l, u, mag, d.in_features + 1);
          lo[static_cast<size_t>(r)] = l, hi[static_cast<size_t>(r)] = u;
        }
        break;
      }
      case OpKind::ScaleShift: {
        const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
        for (size_t j = 0; j < lo.size(); ++j) {
          const double x = a.scale[j] * sl[j] + a.shift[j], y = a.scale[j] * sh[j] + a.shift[j];
          double l = std::min(x, y), u = std::max(x, y);
          // (the shift may cancel the product: the slack counts both terms' magnitudes)
          batched::widen_interval(
              l, u, std::fabs(a.scale[j]) * (std::fabs(sl[j]) + std::fabs(sh[j])) + std::fabs(a.shift[j]), 2);
          lo[j] = l, hi[j] = u;
        }
        break;
      }
      case OpKind::Activation: {
        const ActAttr& a = n.as<ActAttr>();
        const batched::ActSpec spec{a.kind, a.alpha, o.method.relu, o.method.smooth};
        for (size_t j = 0; j < lo.size(); ++j) {  // the range (GELU/SiLU dip below both ends)
          double l = 0, u = 0;
          batched::activation_range(spec, sl[j], sh[j], l, u);
          batched::widen_interval(l, u);
          lo[j] = l, hi[j] = u;
        }
        break;
      }
      case OpKind::MaxPool:
      case OpKind::AvgPool: {
        const PoolAttr& p = n.as<PoolAttr>();
        const Window win = p.window();
        const bool avg = n.op == OpKind::AvgPool;
        const double* slopes = avg ? avg_slopes_.at(k).data() : nullptr;
        const int64_t kk = p.kernel_h * p.kernel_w;
        for (int64_t ch = 0; ch < g.c; ++ch)
          for (int64_t oy = 0; oy < g.h; ++oy)
            for (int64_t ox = 0; ox < g.w; ++ox) {
              const int64_t o_idx = (ch * g.h + oy) * g.w + ox;
              double l = avg ? 0 : -std::numeric_limits<double>::infinity(), u = l, mag = 0;
              win.for_each_input(gi.h, gi.w, oy, ox, [&](int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
                const auto j = static_cast<size_t>((ch * gi.h + iy) * gi.w + ix);
                if (avg) {
                  const double w = slopes[o_idx * kk + ky * p.kernel_w + kx];
                  l += w * sl[j], u += w * sh[j];
                  mag += w * (std::fabs(sl[j]) + std::fabs(sh[j]));
                } else {
                  l = std::max(l, sl[j]), u = std::max(u, sh[j]);
                }
              });
              batched::widen_interval(l, u, mag, kk);
              lo[static_cast<size_t>(o_idx)] = l, hi[static_cast<size_t>(o_idx)] = u;
            }
        break;
      }
      case OpKind::Add: {
        const std::vector<double>& tl = ilo(s, n.inputs[1]);
        const std::vector<double>& th = ihi(s, n.inputs[1]);
        for (size_t j = 0; j < lo.size(); ++j) {
          double l = sl[j] + tl[j], u = sh[j] + th[j];
          batched::widen_interval(l, u, std::fabs(sl[j]) + std::fabs(tl[j]) + std::fabs(sh[j]) + std::fabs(th[j]), 2);
          lo[j] = l, hi[j] = u;
        }
        break;
      }
      case OpKind::Reshape:
      case OpKind::Transpose:
      case OpKind::Pad: {
        const auto& m = maps_.at(k);
        for (size_t j = 0; j < lo.size(); ++j)
          if (m[j] >= 0) lo[j] = sl[static_cast<size_t>(m[j])], hi[j] = sh[static_cast<size_t>(m[j])];
        break;
      }
      case OpKind::Input: break;
    }
  }

  // ---- back-substitution ----

  /// Back-substitutes the n stacked rows `init` (at node `start`) to the input; `value` receives
  /// per stacked row the concretized bound (upper half: upper bounds, lower half: lower bounds),
  /// `final_a`/`bias` (optional) the input coefficients and constant terms.
  void backsub(State& s, int start, Rows&& init, std::vector<double>& value, Rows* final_a,
               std::vector<double>* bias_out, Scratch& scratch) const {
    const int64_t n = init.n;
    std::map<int, Rows> pend;
    pend.emplace(start, std::move(init));
    std::vector<double> bias(static_cast<size_t>(n), 0.0);
    double* b = bias.data();
    const auto& nodes = net_.nodes();
    for (int k = start; k >= 0; --k) {
      auto it = pend.find(k);
      if (it == pend.end()) continue;
      Rows a = std::move(it->second);
      pend.erase(it);
      const Node& nd = nodes[static_cast<size_t>(k)];
      const Geometry& g = geo_[static_cast<size_t>(k)];
      if (nd.op == OpKind::Input) {
        concretize(s, a, b, value);
        if (final_a) *final_a = to_full(std::move(a), g), *bias_out = bias;
        continue;
      }
      const int src = nd.inputs[0];
      const Geometry& gi = geo_[static_cast<size_t>(src)];
      auto push = [&](int node, Rows&& r) { accumulate(pend[node], std::move(r), geo_[static_cast<size_t>(node)]); };
      switch (nd.op) {
        case OpKind::Conv: push(src, conv_back(a, nd.as<ConvAttr>(), weights_.at(k).data(), gi, b, scratch)); break;
        case OpKind::Dense:
          push(src, dense_back(std::move(a), nd.as<DenseAttr>(), weights_.at(k).data(), g, gi, b, scratch));
          break;
        case OpKind::ScaleShift: {
          elementwise_back(a, g, packed_.at(k).data(), true, b);
          push(src, std::move(a));
          break;
        }
        case OpKind::Activation: {
          elementwise_back(a, g, s.packed.at(k).data(), true, b);
          push(src, std::move(a));
          break;
        }
        case OpKind::MaxPool: {
          push(src, pool_back(std::move(a), nd.as<PoolAttr>(), g, gi, s.pools.at(k).slopes.data(),
                              s.packed.at(k).data(), b));
          break;
        }
        case OpKind::AvgPool:
          push(src, pool_back(std::move(a), nd.as<PoolAttr>(), g, gi, avg_slopes_.at(k).data(), nullptr, b));
          break;
        case OpKind::Add: {
          Rows copy(a);
          push(src, std::move(a));
          push(nd.inputs[1], std::move(copy));
          break;
        }
        case OpKind::Reshape:
        case OpKind::Transpose:
        case OpKind::Pad: {
          Rows full = to_full(std::move(a), g);
          Rows out(n, gi.c, gi.h, gi.w, true);
          const auto& m = maps_.at(k);
          for (size_t j = 0; j < m.size(); ++j)
            if (m[j] >= 0) axpy(n, 1.0, full.at(static_cast<int64_t>(j)), out.at(m[j]));
          push(src, std::move(out));
          break;
        }
        case OpKind::Input: break;
      }
    }
  }

  /// Bounds of A·x + bias over the input region: upper half +, lower half −.
  void concretize(const State& s, const Rows& a, const double* bias, std::vector<double>& value) const {
    const Geometry& g = geo_[0];
    const std::vector<double>& x0 = s.p->x0;
    const bool box = s.region.active();
    const batched::RegionNorm rn = detail::region_norm(s.o->norm, box);
    const int64_t n = a.n, half = n / 2;
    std::vector<double> centre(static_cast<size_t>(n), 0.0), norm(static_cast<size_t>(n), 0.0);
    double* ce = centre.data();
    double* no = norm.data();
    std::vector<int64_t> base;  // windows: row r's position (0, y, x) is input element base[r] + (0, y, x)
    const int64_t last = g.c * g.h * g.w - 1;
    if (!a.full) {
      base.resize(static_cast<size_t>(n));
      for (size_t r = 0; r < base.size(); ++r) base[r] = a.y0[r] * g.w + a.x0[r];
    }
    // The element's centre, or a box's lower and upper corners (batched::concretize_elem).
    const double* xc = box ? s.region.lo.data() : x0.data();
    const double* xh = box ? s.region.hi.data() : nullptr;
    if (a.full)
      full_concretize(a.c * a.h * a.w, n, a.a.data(), xc, xh, rn, ce, no);
    else  // per row: its own input element
      for (int64_t ch = 0; ch < a.c; ++ch)
        for (int64_t y = 0; y < a.h; ++y)
          for (int64_t x = 0; x < a.w; ++x)
            window_concretize(n, a.at((ch * a.h + y) * a.w + x), base.data(), (ch * g.h + y) * g.w + x, last, xc, xh,
                              rn, ce, no);
    value.resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r)
      value[static_cast<size_t>(r)] = batched::concretize_finish(r < half, ce[r], no[r], bias[r], s.p->eps, rn);
  }

  /// Identity rows (stacked twice) for `neurons` of node k: full rows for flat nodes, 1 × 1
  /// windows (all channels) at the neurons' positions for feature maps.
  Rows identity_rows(int k, const std::vector<int64_t>& neurons) const {
    const Geometry& g = geo_[static_cast<size_t>(k)];
    const auto R = static_cast<int64_t>(neurons.size());
    const bool flat = g.h == 1 && g.w == 1;
    Rows r(2 * R, g.c, 1, 1, flat);
    for (int64_t i = 0; i < R; ++i) {
      const int64_t j = neurons[static_cast<size_t>(i)];
      const int64_t ch = j / (g.h * g.w), rem = j % (g.h * g.w);
      if (!flat)
        for (int64_t q : {i, R + i}) r.y0[static_cast<size_t>(q)] = rem / g.w, r.x0[static_cast<size_t>(q)] = rem % g.w;
      Real* v = r.at(ch);
      v[i] = 1, v[R + i] = 1;
    }
    return r;
  }

  /// The neurons of node k in chunks of at most max_rows() (the chunking does not depend on the
  /// thread count).
  std::vector<std::vector<int64_t>> chunks(const std::vector<int64_t>& need) const {
    const auto cap = static_cast<size_t>(max_rows());
    std::vector<std::vector<int64_t>> out;
    for (size_t i = 0; i < need.size(); i += cap)
      out.emplace_back(need.begin() + static_cast<long>(i),
                       need.begin() + static_cast<long>(std::min(need.size(), i + cap)));
    return out;
  }

  /// Bounds of node k: back-substitution rows for the neurons interval propagation does not prove
  /// stable (every neuron with exact_cnncert or where the rule does not apply).
  void compute_bounds(State& s, int k) {
    const int64_t size = net_.node(k).size();
    auto& lo = s.lo[static_cast<size_t>(k)];
    auto& hi = s.hi[static_cast<size_t>(k)];
    std::vector<double> l(static_cast<size_t>(size), 0.0), u(static_cast<size_t>(size), 0.0);
    std::vector<int64_t> need;
    const detail::SkipLevel skip = skippable_[static_cast<size_t>(k)];
    if (!s.o->exact_cnncert && skip != detail::SkipLevel::None) {
      intervals(s, k);
      const auto& bl = s.box_lo[static_cast<size_t>(k)];
      const auto& bh = s.box_hi[static_cast<size_t>(k)];
      // Bounds from a larger ball around the same centre (an earlier search step) hold here too:
      // intersected with the intervals, they prove more neurons stable.
      const NodeBounds* ob = s.outer.empty() ? nullptr : s.outer[static_cast<size_t>(k)];
      int64_t by_outer = 0;
      for (int64_t j = 0; j < size; ++j) {
        const auto jj = static_cast<size_t>(j);
        // Stable and reliable (finite, ≤ 1e12): no row. Otherwise the neuron gets its back-substitution.
        const unsigned char v = batched::select_elem(skip, bl[jj], bh[jj], ob ? ob->lower.data() : nullptr,
                                                     ob ? ob->upper.data() : nullptr, j, l[jj], u[jj]);
        if (v == batched::kRowNeeded) need.push_back(j);
        by_outer += v == batched::kRowSkippedByOuter ? 1 : 0;
      }
      s.stats.rows_skipped += static_cast<double>(size - static_cast<int64_t>(need.size()));
      s.stats.rows_skipped_outer += static_cast<double>(by_outer);
    } else {
      need.resize(static_cast<size_t>(size));
      for (int64_t j = 0; j < size; ++j) need[static_cast<size_t>(j)] = j;
    }
    s.stats.rows_computed += static_cast<double>(need.size());
    const auto groups = chunks(need);
    parallel_for(static_cast<int64_t>(groups.size()), s.threads, [&](int64_t ci) {
      const auto& neurons = groups[static_cast<size_t>(ci)];
      Scratch scratch = make_scratch();
      std::vector<double> value;
      backsub(s, k, identity_rows(k, neurons), value, nullptr, nullptr, scratch);
      const size_t R = neurons.size();
      for (size_t r = 0; r < R; ++r) {
        const auto j = static_cast<size_t>(neurons[r]);
        u[j] = value[r], l[j] = value[R + r];
      }
      std::lock_guard<std::mutex> lock(s.m);
      s.stats.backsub_flops += scratch.flops;
    });
    lo = std::move(l), hi = std::move(u);
    for (size_t j = static_cast<size_t>(k) + 1; j < s.box_ok.size(); ++j)
      s.box_ok[j] = 0;  // later intervals use these bounds
  }

  /// MATH.md §2.5 (detail::maxpool_input_rule, as the reference engine).
  bool pool_input_from_activation(State& s, int k) const {
    if (!detail::apply_maxpool_input_rule(net_, k, s)) return false;
    const auto src = static_cast<size_t>(net_.node(k).inputs[0]);
    for (size_t j = src + 1; j < s.box_ok.size(); ++j) s.box_ok[j] = 0;  // later intervals use these bounds
    return true;
  }

  void relax_node(State& s, int k) const {
    detail::relax_cpu_node(net_, geo_, k, s);
    const auto i = static_cast<size_t>(k);
    const auto size = static_cast<size_t>(net_.node(k).size());
    if (net_.node(k).op == OpKind::MaxPool) {
      const PoolRelax& pr = s.pools.at(k);
      s.packed[k] = pack_relaxation(nullptr, pr.beta_u.data(), nullptr, pr.beta_l.data(), size);
      std::vector<double>().swap(s.pools.at(k).beta_u), std::vector<double>().swap(s.pools.at(k).beta_l);
    } else {
      s.packed[k] =
          pack_relaxation(s.slope_u[i].data(), s.icpt_u[i].data(), s.slope_l[i].data(), s.icpt_l[i].data(), size);
      // (only the packed form is read from here on)
      for (auto* v : {&s.slope_u[i], &s.icpt_u[i], &s.slope_l[i], &s.icpt_l[i]}) std::vector<double>().swap(*v);
    }
  }

  BoundResult solve(const BoundProblem& p, const BoundOptions& o, int threads, bool report_layers) {
    using clock = std::chrono::steady_clock;
    auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
    const auto& nodes = net_.nodes();
    State s;
    s.p = &p, s.o = &o, s.threads = threads;
    s.region = detail::input_box(p, o);
    if (!o.exact_cnncert) s.outer = detail::usable_outer(net_, p, o);
    const size_t n = nodes.size();
    s.lo.resize(n), s.hi.resize(n), s.slope_l.resize(n), s.icpt_l.resize(n), s.slope_u.resize(n), s.icpt_u.resize(n);
    s.box_lo.resize(n), s.box_hi.resize(n), s.box_ok.assign(n, 0);
    BoundResult res;
    const bool report = o.layer_progress && report_layers;
    const std::vector<int> schedule = detail::bound_schedule(net_);
    const auto layers = static_cast<int64_t>(schedule.size()) + 1;
    int64_t done = 0;
    auto finish_stats = [&] {
      std::lock_guard<std::mutex> lock(stats_mutex_);
      stats_.seconds_bounds += s.stats.seconds_bounds, stats_.seconds_relax += s.stats.seconds_relax;
      stats_.seconds_final += s.stats.seconds_final, stats_.backsub_flops += s.stats.backsub_flops;
      stats_.rows_computed += s.stats.rows_computed, stats_.rows_skipped += s.stats.rows_skipped;
      stats_.rows_skipped_outer += s.stats.rows_skipped_outer;
    };
    for (const int k : schedule) {
      const Node& node = nodes[static_cast<size_t>(k)];
      if (report) o.layer_progress(done++, layers);
      const int src = node.inputs[0];
      if (s.lo[static_cast<size_t>(src)].empty()) {
        const auto t0 = clock::now();
        if (!pool_input_from_activation(s, k)) compute_bounds(s, src);
        s.stats.seconds_bounds += since(t0);
        auto reliable = [](const std::vector<double>& v) {
          return std::all_of(v.begin(), v.end(), batched::reliable_bound);
        };
        if (!reliable(s.lo[static_cast<size_t>(src)]) || !reliable(s.hi[static_cast<size_t>(src)])) {
          res.error = detail::unreliable_bounds_error(nodes[static_cast<size_t>(src)].name);
          res.lower.assign(static_cast<size_t>(p.rows), -std::numeric_limits<double>::infinity());
          res.upper.assign(static_cast<size_t>(p.rows), std::numeric_limits<double>::infinity());
          finish_stats();
          return res;
        }
        if (o.want_intermediate)
          res.intermediate.push_back({src, s.lo[static_cast<size_t>(src)], s.hi[static_cast<size_t>(src)]});
      }
      const auto t1 = clock::now();
      relax_node(s, k);
      s.stats.seconds_relax += since(t1);
    }
    if (report) o.layer_progress(done, layers);
    const auto t2 = clock::now();
    // The specification rows on the output node, in chunks.
    const int out = net_.output();
    const Geometry& g = geo_[static_cast<size_t>(out)];
    const int64_t classes = net_.output_size(), n_in = net_.input_size();
    const bool lin = o.want_linear;
    res.lower.resize(static_cast<size_t>(p.rows)), res.upper.resize(static_cast<size_t>(p.rows));
    if (lin) {
      res.a_lower.resize(static_cast<size_t>(p.rows * n_in)), res.a_upper.resize(static_cast<size_t>(p.rows * n_in));
      res.b_lower.resize(static_cast<size_t>(p.rows)), res.b_upper.resize(static_cast<size_t>(p.rows));
    }
    // The specification in float32 as c̃ = c − δ. Where a coefficient is not a float, the bounds
    // of c̃ᵀy are corrected by those of δᵀy over the output's interval bounds (sound for cᵀy).
    const std::vector<Real> spec(p.spec.begin(), p.spec.end());
    std::vector<double> fix_lo(static_cast<size_t>(p.rows), 0.0), fix_hi(fix_lo.size(), 0.0);
    if (detail::spec_inexact_in_float32(p.spec, "fast engine")) {
      intervals(s, out);
      detail::spec_rounding_bounds(p.spec.data(), p.rows, classes, ilo(s, out).data(), ihi(s, out).data(),
                                   fix_lo.data(), fix_hi.data());
    }
    const int64_t cap = max_rows();
    Scratch scratch = make_scratch();
    for (int64_t first = 0; first < p.rows; first += cap) {
      const int64_t R = std::min(cap, p.rows - first);
      Rows init(2 * R, g.c, g.h, g.w, true);
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < classes; ++c) {
          const Real v = spec[static_cast<size_t>((first + r) * classes + c)];
          init.at(c)[r] = v, init.at(c)[R + r] = v;
        }
      std::vector<double> value, bias;
      Rows fa;
      backsub(s, out, std::move(init), value, lin ? &fa : nullptr, lin ? &bias : nullptr, scratch);
      for (int64_t r = 0; r < R; ++r) {
        const auto q = static_cast<size_t>(first + r);
        res.upper[q] = value[static_cast<size_t>(r)] + fix_hi[q];
        res.lower[q] = value[static_cast<size_t>(R + r)] + fix_lo[q];
        if (lin) bias[static_cast<size_t>(r)] += fix_hi[q], bias[static_cast<size_t>(R + r)] += fix_lo[q];
      }
      if (lin) {
        for (int64_t pos = 0; pos < n_in; ++pos)
          for (int64_t r = 0; r < R; ++r) {
            res.a_upper[static_cast<size_t>((first + r) * n_in + pos)] = fa.at(pos)[r];
            res.a_lower[static_cast<size_t>((first + r) * n_in + pos)] = fa.at(pos)[R + r];
          }
        for (int64_t r = 0; r < R; ++r)
          res.b_upper[static_cast<size_t>(first + r)] = bias[static_cast<size_t>(r)],
                                                  res.b_lower[static_cast<size_t>(first + r)] =
                                                      bias[static_cast<size_t>(R + r)];
      }
    }
    s.stats.backsub_flops += scratch.flops;
    s.stats.seconds_final += since(t2);
    detail::fail_closed_unless_finite(res);
    finish_stats();
    return res;
  }

  const Network& net_;
  int threads_;
  size_t memory_;
  int64_t max_size_ = 1;
  std::vector<Geometry> geo_;
  /// Per node, which neurons may go without a row: any proven stable, only those proven ≤ 0, none.
  std::vector<detail::SkipLevel> skippable_;
  bool any_skippable_ = false;  // some node's rows may be skipped (else outer bounds are of no use)
  std::map<int, std::vector<int64_t>> maps_;
  std::map<int, std::vector<double>> avg_slopes_;
  std::map<int, std::vector<double>> packed_;  // scale-shift nodes: pack_relaxation
  std::map<int, std::vector<Real>> weights_;   // conv and dense nodes: the weights in Real
  mutable std::mutex stats_mutex_;
  EngineStats stats_;
};

}  // namespace fast

namespace detail {
double gemm_peak_gflops(int64_t n, int repeats) {
#if defined(CNNCERT_HAVE_BLAS) && defined(CNNCERT_HAVE_OPENBLAS)
  openblas_set_num_threads(1);
#endif
  std::vector<fast::Real> x(static_cast<size_t>(n * n)), y(x.size()), c(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<fast::Real>(1.0 / static_cast<double>(1 + i % 7)),
    y[i] = static_cast<fast::Real>(1.0 / static_cast<double>(1 + i % 5));
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = fast::gemm(true, n, n, n, x.data(), n, y.data(), n, c.data(), n);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sec > 0) best = std::max(best, flops / sec / 1e9);
  }
  return best;
}
}  // namespace detail

std::unique_ptr<BoundEngine> make_fast_engine(const Network& net, int threads, size_t memory_mib) {
  CNNCERT_CHECK(memory_mib > 0, "the fast engine needs a positive memory budget");
  return std::make_unique<fast::FastEngine>(net, threads, memory_mib << 20);
}

}  // namespace cnncert
