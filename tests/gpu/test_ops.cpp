// Every primitive of the batched engine's CUDA backend alone against the host backend (llm.c's
// rule: each kernel is checked by itself before the engine is), on seeded random inputs: rows of
// length 1, empty inputs, sizes that make the per-thread and grid-stride loops repeat (a backend
// whose grids are capped at 2 blocks), every activation, norm and pooling geometry the engine
// uses. Label gpu: real kernels on a GPU, the CPU emulation in the emulated build (CI).
//
// Expected agreement, by primitive:
// * element-wise kernels (the same bodies of batched_kernels.hpp, no FMA contraction on either
//   side) and the own convolution and GEMM kernels (the same summation order as the host loops):
//   bit-identical;
// * per-row reductions in double (bias terms, concretization): the GPU sums in a block tree, the
//   host in index order, so they differ by at most the rounding of an n-term sum,
//   n · 2⁻⁵³ · Σ|term|, checked with twice that;
// * smooth activations on a real GPU: its exp/tanh/atan differ from the host's libm by an ulp or
//   two, and the relaxation's tangent searches start from those values, so the float32 slopes and
//   intercepts (all O(1) here) may differ by a few float ulps: 8e-6 absolute, a guess with margin
//   that no GPU has confirmed yet (exact under the emulation, where the same libm runs);
// * cuDNN and cuBLAS on a GPU against the own kernels (their stand-ins under the emulation sum in
//   the own kernels' order: bit-identical): two float32 sums of the same T terms
//   in different orders each err by at most (T − 1) · 2⁻²⁴ · Σ|term|, with Σ|term| ≤ T · max|a| ·
//   max|w| (both ≤ 1 here), so they differ by at most 2 · T² · 2⁻²⁴.
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/batched_engine.hpp"
#include "gpu_test_util.hpp"

namespace cnncert::test {
namespace {

using namespace cnncert::batched;

using Values = std::vector<double>;  // one output of a primitive, widened to double
using Outputs = std::vector<Values>;

/// A "device" array of one Ops, filled from host values; released with the object.
template <class T>
class Dev {
 public:
  Dev(Ops& ops, const std::vector<T>& v) : ops_(ops), n_(v.size()) {
    p_ = ops.alloc(n_ * sizeof(T));
    if (n_) ops.to_device(p_, v.data(), n_ * sizeof(T));
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { ops_.release(p_); }
  T* get() { return static_cast<T*>(p_); }
  Values read() const {
    std::vector<T> h(n_);
    if (n_) ops_.to_host(h.data(), p_, n_ * sizeof(T));
    return Values(h.begin(), h.end());
  }

 private:
  Ops& ops_;
  void* p_ = nullptr;
  size_t n_ = 0;
};

std::vector<float> random_floats(size_t n, uint64_t seed, double zero_share = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::uniform_real_distribution<double> z(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = z(rng) < zero_share ? 0.0f : u(rng);
  return v;
}

std::vector<double> random_doubles(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

/// The backends under test: the library path, the own kernels, and the own kernels with grids
/// capped at 2 blocks (every grid-stride loop repeats). `library` says which one calls
/// cuDNN/cuBLAS (where they are compiled in: the real libraries on a GPU, the stand-ins of
/// cuda/emulation under the emulation).
struct Backend {
  std::string name;
  std::unique_ptr<Ops> ops;
  bool library = false;
};

/// Made once per process (library handles are slow to create on a GPU) and never destroyed (no
/// CUDA calls from static destructors).
std::vector<Backend>& gpu_backends() {
  static auto* b = [] {
    auto* v = new std::vector<Backend>;
    const CudaLibraries libs = cuda_libraries();
    v->push_back({"gpu (cuDNN/cuBLAS where built)", make_cuda_ops(64 << 20, true), libs.cublas || libs.cudnn});
    v->push_back({"gpu own kernels", make_cuda_ops(64 << 20, false), false});
    v->push_back({"gpu own kernels, 2-block grids", make_cuda_ops(64 << 20, false, 2), false});
    return v;
  }();
  return *b;
}

/// Compares two runs' outputs: |got − want| ≤ tol[k] per output k (0 = bit-identical; NaN
/// equals NaN). Reports the first mismatches with their index.
void expect_agree(const Outputs& got, const Outputs& want, const std::vector<double>& tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].size(), want[k].size()) << what << " output " << k;
    int reported = 0;
    for (size_t i = 0; i < got[k].size() && reported < 5; ++i) {
      const double g = got[k][i], w = want[k][i];
      const double t = k < tol.size() ? tol[k] : 0.0;
      const bool ok = (std::isnan(g) && std::isnan(w)) || (t == 0 ? g == w : std::fabs(g - w) <= t);
      if (!ok) {
        ++reported;
        ADD_FAILURE() << what << ": output " << k << " element " << i << ": gpu " << g << ", host " << w
                      << " (tolerance " << t << ")";
      }
    }
  }
}

/// Runs `run` on the host backend and on every GPU backend and compares; `tol(library)` gives the
/// tolerances per output for a backend that does / does not use the libraries.
void check_primitive(const std::string& what, const std::function<Outputs(Ops&)>& run,
                     const std::function<std::vector<double>(bool library)>& tol) {
  auto host = make_host_ops(64 << 20);
  const Outputs want = run(*host);
  for (auto& b : gpu_backends()) {
    SCOPED_TRACE(what + " on " + b.name);
    // cuDNN/cuBLAS sum in their own orders on a GPU; their stand-ins under the emulation sum in
    // the own kernels' order, so there they must be bit-identical.
    expect_agree(run(*b.ops), want, tol(b.library && !cuda_emulated()), what + " [" + b.name + "]");
  }
}

std::function<std::vector<double>(bool)> exact() {
  return [](bool) { return std::vector<double>{}; };
}

/// Tolerance of a double sum of n terms whose magnitudes add up to `abs_sum` (see the top).
double sum_tol(int64_t n, double abs_sum) {
  return 2.0 * static_cast<double>(n) * std::ldexp(1.0, -53) * abs_sum + 1e-300;
}

/// A geometry whose every parameter differs between height and width: a swapped pair of
/// arguments (to cuDNN, say) changes the result.
ConvGeom non_square() {
  ConvGeom g;
  g.cin = 2, g.hin = 7, g.win = 9, g.cout = 3, g.kh = 3, g.kw = 2, g.sh = 2, g.sw = 1, g.pt = g.pb = 1, g.pl = g.pr = 0,
  g.dh = 1, g.dw = 2, g.groups = 1;
  g.hout = cnncert::window_out_size(g.hin, g.kh, g.sh, g.pt, g.pb, g.dh);  // 4
  g.wout = cnncert::window_out_size(g.win, g.kw, g.sw, g.pl, g.pr, g.dw);  // 7
  return g;
}

/// A square convolution geometry (top/left padding pt/pl, the same at the bottom/right).
ConvGeom conv_geo(int64_t cin, int64_t hin, int64_t cout, int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t d,
                  int64_t groups) {
  ConvGeom g;
  g.cin = cin, g.hin = g.win = hin, g.cout = cout, g.kh = g.kw = k, g.sh = g.sw = s, g.pt = pt, g.pl = pl,
  g.dh = g.dw = d;
  g.groups = groups;
  g.hout = (hin + 2 * pt - d * (k - 1) - 1) / s + 1;
  g.wout = (hin + 2 * pl - d * (k - 1) - 1) / s + 1;
  return g;
}

TEST_F(GpuTest, ConvBackMatchesTheHost) {
  struct Case {
    ConvGeom g;
    const char* name;
  };
  const auto geo = conv_geo;
  const std::vector<Case> cases = {
      {geo(3, 7, 4, 3, 1, 1, 1, 1, 1), "3x3 same padding"},   {geo(2, 9, 3, 3, 2, 0, 0, 1, 1), "stride 2"},
      {geo(2, 8, 2, 3, 1, 2, 2, 2, 1), "dilation 2"},         {geo(4, 6, 4, 3, 1, 1, 1, 1, 2), "2 groups"},
      {geo(2, 6, 3, 2, 2, 1, 0, 1, 1), "asymmetric padding"}, {geo(5, 4, 1, 1, 1, 0, 0, 1, 1), "1x1"},
      {geo(1, 1, 1, 1, 1, 0, 0, 1, 1), "1 element"},          {non_square(), "non-square"},
  };
  const PathCounts before = gpu_backends()[0].ops->path_counts();
  int64_t calls = 0;
  for (const auto& c : cases)
    for (int64_t rows : {0, 1, 5}) {
      const ConvGeom& g = c.g;
      const auto w = random_floats(static_cast<size_t>(g.cout * g.cin / g.groups * g.kh * g.kw), 11);
      const auto a = random_floats(static_cast<size_t>(rows * g.cout * g.hout * g.wout), 12, 0.2);
      const std::vector<float> out(static_cast<size_t>(rows * g.cin * g.hin * g.win), -7.25f);
      const double terms = static_cast<double>(g.cout / g.groups * g.kh * g.kw);
      check_primitive(
          std::string("conv_back ") + c.name + ", " + std::to_string(rows) + " rows",
          [&](Ops& o) {
            Dev<float> dw(o, w), da(o, a), dout(o, out);
            o.conv_back(g, rows, dw.get(), da.get(), dout.get());
            return Outputs{dout.read()};
          },
          [&](bool library) {
            return library ? std::vector<double>{2 * terms * terms * std::ldexp(1.0, -24)} : std::vector<double>{};
          });
      calls += rows > 0;
    }
  // The library backend really called cuDNN (real, or its stand-in under the emulation) and it
  // never failed. Every geometry here is one cuDNN expresses; whether a real cuDNN offers its
  // deterministic direct algorithm for each is for a GPU run to show, so the exact count is asserted
  // under the emulation only.
  const PathCounts after = gpu_backends()[0].ops->path_counts();
  if (cuda_libraries().cudnn) {
    EXPECT_EQ(after.conv_library_failed, before.conv_library_failed);
    EXPECT_GT(after.conv_library, before.conv_library);
    if (cuda_emulated()) EXPECT_EQ(after.conv_library - before.conv_library, calls);
  } else {
    EXPECT_EQ(after.conv_own - before.conv_own, calls);
  }
}

TEST_F(GpuTest, DenseBackMatchesTheHost) {
  const PathCounts before = gpu_backends()[0].ops->path_counts();
  int64_t calls = 0;
  for (int64_t rows : {0, 1, 17})
    for (int64_t n_out : {1, 33})
      for (int64_t n_in : {1, 40}) {
        const auto w = random_floats(static_cast<size_t>(n_out * n_in), 21);
        const auto a = random_floats(static_cast<size_t>(rows * n_out), 22, 0.2);
        const std::vector<float> out(static_cast<size_t>(rows * n_in), -7.25f);
        check_primitive(
            "dense_back " + std::to_string(rows) + "x" + std::to_string(n_out) + " -> " + std::to_string(n_in),
            [&](Ops& o) {
              Dev<float> dw(o, w), da(o, a), dout(o, out);
              o.dense_back(rows, n_out, n_in, dw.get(), da.get(), dout.get());
              return Outputs{dout.read()};
            },
            [&](bool library) {
              const double t = static_cast<double>(n_out);
              return library ? std::vector<double>{2 * t * t * std::ldexp(1.0, -24)} : std::vector<double>{};
            });
        calls += rows > 0;
      }
  // Every GEMM with rows went to cuBLAS (real, or its stand-in under the emulation) where built in.
  const PathCounts after = gpu_backends()[0].ops->path_counts();
  EXPECT_EQ((cuda_libraries().cublas ? after.gemm_library - before.gemm_library : after.gemm_own - before.gemm_own),
            calls);
}

TEST_F(GpuTest, ElementwiseBackMatchesTheHost) {
  // size 300 > 256 threads: each thread of a row's block takes two elements.
  for (int64_t half : {0, 1, 3})
    for (int64_t size : {1, 7, 300})
      for (bool coefficients : {true, false}) {
        const int64_t problems = 2, div = size > 1 ? 2 : 1, params = problems * ((size + div - 1) / div);
        const int64_t stride = params / problems;
        const auto a = random_floats(static_cast<size_t>(2 * half * size), 31, 0.25);
        std::vector<int> prob(static_cast<size_t>(std::max<int64_t>(half, 1)));
        for (size_t i = 0; i < prob.size(); ++i) prob[i] = static_cast<int>(i % problems);
        const auto al = random_floats(static_cast<size_t>(params), 32),
                   bl = random_floats(static_cast<size_t>(params), 33);
        const auto au = random_floats(static_cast<size_t>(params), 34),
                   bu = random_floats(static_cast<size_t>(params), 35);
        const auto bias = random_doubles(static_cast<size_t>(2 * half), 36);
        // the bias sums' tolerance from the terms' magnitudes (at most |x|·max|β| each)
        const double abs_sum = static_cast<double>(size) * 1.0;
        check_primitive(
            "elementwise_back half " + std::to_string(half) + " size " + std::to_string(size) +
                (coefficients ? "" : " (bias only)"),
            [&](Ops& o) {
              Dev<float> da(o, a), dal(o, al), dbl(o, bl), dau(o, au), dbu(o, bu);
              Dev<int> dp(o, prob);
              Dev<double> db(o, bias);
              o.elementwise_back(half, size, da.get(), dp.get(), stride, div, coefficients ? dal.get() : nullptr,
                                 dbl.get(), dau.get(), dbu.get(), db.get(), nullptr, 1);
              return Outputs{da.read(), db.read()};
            },
            [&](bool) {
              return std::vector<double>{0.0, sum_tol(size, abs_sum)};
            });
      }
}

TEST_F(GpuTest, FusedBiasPassEqualsTheTwoPasses) {
  // elementwise_back with then_bias (the relaxation and the bias pass of the conv below, in one
  // pass over the rows) gives, on each backend, exactly what the relaxation and then the bias
  // pass as a second call give; dense rows of a 2 × 12 × 12 map (288 values: some threads take
  // two) and windowed rows of it, channels by divisor 144 (a conv's bias is per output channel).
  const int64_t half = 3, problems = 2, size = 2 * 12 * 12, map_div = 144;
  const std::vector<int> prob = {0, 1, 1};
  const WinGeom wg{2, 3, 4, 12, 12};
  const std::vector<int64_t> org = {-1, 0, 0, 0, 10, 9};  // the first and third windows leave the map
  const auto al = random_floats(static_cast<size_t>(problems * size), 141),
             bl = random_floats(static_cast<size_t>(problems * size), 142),
             au = random_floats(static_cast<size_t>(problems * size), 143),
             bu = random_floats(static_cast<size_t>(problems * size), 144);
  const auto conv_bias = random_floats(2, 145);
  const auto bias = random_doubles(static_cast<size_t>(2 * half), 146);
  for (const bool windowed : {false, true}) {
    const int64_t n = windowed ? wg.size() : size;
    const auto a = random_floats(static_cast<size_t>(2 * half * n), windowed ? 147 : 148, 0.25);
    auto run = [&](Ops& o, bool fused) {
      Dev<float> da(o, a), dal(o, al), dbl(o, bl), dau(o, au), dbu(o, bu), dcb(o, conv_bias);
      Dev<int> dp(o, prob);
      Dev<int64_t> dorg(o, org);
      Dev<double> db(o, bias);
      if (windowed) {
        o.elementwise_back_window(wg, half, dorg.get(), da.get(), dp.get(), size, 1, dal.get(), dbl.get(), dau.get(),
                                  dbu.get(), db.get(), fused ? dcb.get() : nullptr, map_div);
        if (!fused)
          o.elementwise_back_window(wg, half, dorg.get(), da.get(), dp.get(), 0, map_div, nullptr, dcb.get(), nullptr,
                                    dcb.get(), db.get(), nullptr, 1);
      } else {
        o.elementwise_back(half, size, da.get(), dp.get(), size, 1, dal.get(), dbl.get(), dau.get(), dbu.get(),
                           db.get(), fused ? dcb.get() : nullptr, map_div);
        if (!fused)
          o.elementwise_back(half, size, da.get(), dp.get(), 0, map_div, nullptr, dcb.get(), nullptr, dcb.get(),
                             db.get(), nullptr, 1);
      }
      return Outputs{da.read(), db.read()};
    };
    check_primitive(
        windowed ? "fused elementwise_back_window" : "fused elementwise_back",
        [&](Ops& o) {
          const Outputs fused = run(o, true), two = run(o, false);
          EXPECT_EQ(fused, two) << o.name() << (windowed ? " windowed" : " dense");
          EXPECT_NE(fused[1], bias) << "no bias terms";
          return fused;
        },
        [&](bool) {
          return std::vector<double>{0.0, sum_tol(2 * n, static_cast<double>(2 * n))};
        });
  }
}

/// A square pooling window: c channels of hin × hin, k × k window, stride s, padding p.
PoolGeom pool_geom(int64_t c, int64_t hin, int64_t k, int64_t s, int64_t p) {
  PoolGeom g;
  g.c = c, g.hin = g.win = hin, g.kh = g.kw = k, g.sh = g.sw = s, g.pt = g.pl = p;
  g.hout = g.wout = (hin + 2 * p - k) / s + 1;
  return g;
}

TEST_F(GpuTest, PoolBackMatchesTheHost) {
  for (const PoolGeom& g : {pool_geom(2, 6, 2, 2, 0), pool_geom(3, 5, 3, 1, 1), pool_geom(1, 1, 1, 1, 0)})
    for (int64_t half : {1, 2})
      for (int64_t stride_problems : {0, 1}) {
        const int64_t problems = 2, stride = stride_problems * g.out_size() * g.kk();
        const auto slopes = random_floats(static_cast<size_t>(problems * g.out_size() * g.kk()), 41);
        const auto a = random_floats(static_cast<size_t>(2 * half * g.out_size()), 42, 0.2);
        const std::vector<int> prob = {1, 0};
        const std::vector<float> out(static_cast<size_t>(2 * half * g.in_size()), -7.25f);
        check_primitive(
            "pool_back k" + std::to_string(g.kh) + " half " + std::to_string(half) +
                (stride ? " per-problem slopes" : " shared slopes"),
            [&](Ops& o) {
              Dev<float> ds(o, slopes), da(o, a), dout(o, out);
              Dev<int> dp(o, prob);
              o.pool_back(g, half, dp.get(), stride, ds.get(), da.get(), dout.get());
              return Outputs{dout.read()};
            },
            exact());
      }
}

/// Windowed rows (patches) for a map of `wg`: random values in the map, 0 outside it; and the
/// same rows made dense by the test's own loop.
void windowed_rows(const WinGeom& wg, int64_t half, const std::vector<int64_t>& org, uint64_t seed,
                   std::vector<float>& a, std::vector<float>& dense) {
  a = random_floats(static_cast<size_t>(2 * half * wg.size()), seed, 0.2);
  const int64_t n = wg.c * wg.map_h * wg.map_w;
  dense.assign(static_cast<size_t>(2 * half * n), 0.0f);
  for (int64_t r = 0; r < 2 * half; ++r)
    for (int64_t ch = 0; ch < wg.c; ++ch)
      for (int64_t y = 0; y < wg.h; ++y)
        for (int64_t x = 0; x < wg.w; ++x) {
          const int64_t my = org[static_cast<size_t>(2 * (r % half))] + y,
                        mx = org[static_cast<size_t>(2 * (r % half) + 1)] + x;
          float& v = a[static_cast<size_t>(r * wg.size() + (ch * wg.h + y) * wg.w + x)];
          if (my < 0 || my >= wg.map_h || mx < 0 || mx >= wg.map_w)
            v = 0;
          else
            dense[static_cast<size_t>(r * n + (ch * wg.map_h + my) * wg.map_w + mx)] = v;
        }
}

/// Checks windowed results `win` (input windows of geometry `in`, origins `org_in`) against the
/// dense results `dense` of the same rows: equal inside the map, 0 outside it, and the dense
/// results 0 outside the windows.
void expect_window_of_dense(const WinGeom& in, int64_t half, const std::vector<int64_t>& org_in, const Values& win,
                            const Values& dense, const std::string& what) {
  const int64_t n = in.c * in.map_h * in.map_w;
  std::vector<char> covered(dense.size(), 0);
  int bad = 0;
  for (int64_t r = 0; r < 2 * half && bad < 5; ++r)
    for (int64_t e = 0; e < in.size() && bad < 5; ++e) {
      const int64_t m =
          in.map_index(org_in[static_cast<size_t>(2 * (r % half))], org_in[static_cast<size_t>(2 * (r % half) + 1)], e);
      const double got = win[static_cast<size_t>(r * in.size() + e)];
      const double want = m < 0 ? 0.0 : dense[static_cast<size_t>(r * n + m)];
      if (m >= 0) covered[static_cast<size_t>(r * n + m)] = 1;
      if (got != want)
        ++bad, ADD_FAILURE() << what << ": row " << r << " window element " << e << ": " << got << ", dense " << want;
    }
  for (size_t i = 0; i < dense.size() && bad < 5; ++i)
    if (!covered[i] && dense[i] != 0) ++bad, ADD_FAILURE() << what << ": dense element " << i << " outside the window";
}

/// The origins at the input of a sliding-window op (conv or pool geometry) of windows at `org`.
template <class G>
std::vector<int64_t> input_origins(const G& g, const std::vector<int64_t>& org) {
  std::vector<int64_t> in(org.size());
  for (size_t r = 0; r < org.size(); r += 2) in[r] = g.start_y(org[r]), in[r + 1] = g.start_x(org[r + 1]);
  return in;
}

TEST_F(GpuTest, WindowedRowsMatchTheHostAndTheDenseRows) {
  // Windows at the map's corner, partly outside it (negative origins, past the far edge) and inside.
  const int64_t half = 3;
  auto origins = [](int64_t map_h, int64_t map_w) { return std::vector<int64_t>{0, 0, -1, map_w - 2, map_h - 1, 1}; };
  const ConvGeom convs[] = {conv_geo(3, 7, 4, 3, 1, 1, 1, 1, 1), conv_geo(2, 9, 3, 3, 2, 0, 0, 1, 1),
                            conv_geo(2, 8, 2, 3, 1, 2, 2, 2, 1), conv_geo(4, 6, 4, 3, 1, 1, 1, 1, 2),
                            conv_geo(2, 6, 3, 2, 2, 1, 0, 1, 1)};
  for (const ConvGeom& g : convs)
    for (int64_t h : {1, 2}) {
      const int64_t w = 3;
      const WinGeom wout{g.cout, h, w, g.hout, g.wout};
      const WinGeom win{g.cin, g.span_y(h), g.span_x(w), g.hin, g.win};
      const auto org = origins(g.hout, g.wout), org_in = input_origins(g, org);
      std::vector<float> a, a_dense;
      windowed_rows(wout, half, org, 121, a, a_dense);
      const auto wt = random_floats(static_cast<size_t>(g.cout * g.cin / g.groups * g.kk()), 122);
      const std::string what = "conv_back_window k" + std::to_string(g.kh) + " s" + std::to_string(g.sh) + " d" +
                               std::to_string(g.dh) + " groups " + std::to_string(g.groups) + " h" + std::to_string(h);
      Outputs host;
      check_primitive(
          what,
          [&](Ops& o) {
            Dev<float> da(o, a), dw(o, wt),
                dout(o, std::vector<float>(static_cast<size_t>(2 * half * win.size()), -7.25f)),
                dd(o, std::vector<float>(static_cast<size_t>(2 * half * g.cout * g.hout * g.wout), -7.25f));
            Dev<int64_t> dorg(o, org);
            o.conv_back_window(g, half, h, w, dorg.get(), dw.get(), da.get(), dout.get());
            o.window_to_dense(wout, half, dorg.get(), da.get(), dd.get());
            Outputs r{dout.read(), dd.read()};
            if (o.name() == "host-float") host = r;
            return r;
          },
          exact());
      // against the dense primitive on the same rows made dense by the test
      auto h_ops = make_host_ops(64 << 20);
      Dev<float> da(*h_ops, a_dense), dw(*h_ops, wt),
          dout(*h_ops, std::vector<float>(static_cast<size_t>(2 * half * g.cin * g.hin * g.win), -7.25f));
      h_ops->conv_back(g, 2 * half, dw.get(), da.get(), dout.get());
      ASSERT_EQ(host.size(), 2u);
      expect_window_of_dense(win, half, org_in, host[0], dout.read(), what);
      EXPECT_EQ(host[1], Values(a_dense.begin(), a_dense.end())) << what << ": window_to_dense";
    }
  for (const PoolGeom& g : {pool_geom(2, 6, 2, 2, 0), pool_geom(3, 5, 3, 1, 1)})
    for (int64_t stride_problems : {0, 1}) {
      const int64_t h = 2, w = 2, problems = 2, stride = stride_problems * g.out_size() * g.kk();
      const WinGeom wout{g.c, h, w, g.hout, g.wout};
      const WinGeom win{g.c, g.span_y(h), g.span_x(w), g.hin, g.win};
      const auto org = origins(g.hout, g.wout), org_in = input_origins(g, org);
      std::vector<float> a, a_dense;
      windowed_rows(wout, half, org, 123, a, a_dense);
      const auto slopes = random_floats(static_cast<size_t>(problems * g.out_size() * g.kk()), 124);
      const std::vector<int> prob = {1, 0, 1};
      const std::string what = "pool_back_window k" + std::to_string(g.kh) + (stride ? " per-problem" : " shared");
      Outputs host;
      check_primitive(
          what,
          [&](Ops& o) {
            Dev<float> da(o, a), ds(o, slopes),
                dout(o, std::vector<float>(static_cast<size_t>(2 * half * win.size()), -7.25f));
            Dev<int64_t> dorg(o, org);
            Dev<int> dp(o, prob);
            o.pool_back_window(g, half, h, w, dorg.get(), dp.get(), stride, ds.get(), da.get(), dout.get());
            Outputs r{dout.read()};
            if (o.name() == "host-float") host = r;
            return r;
          },
          exact());
      auto h_ops = make_host_ops(64 << 20);
      Dev<float> da(*h_ops, a_dense), ds(*h_ops, slopes),
          dout(*h_ops, std::vector<float>(static_cast<size_t>(2 * half * g.in_size()), -7.25f));
      Dev<int> dp(*h_ops, prob);
      h_ops->pool_back(g, half, dp.get(), stride, ds.get(), da.get(), dout.get());
      ASSERT_EQ(host.size(), 1u);
      expect_window_of_dense(win, half, org_in, host[0], dout.read(), what);
    }
  // element-wise passes over windows of a 3 × 5 × 6 map (size 90 < 256: and a 4 × 20 × 20 one, 400 > 256)
  for (const WinGeom& wg : {WinGeom{3, 2, 3, 5, 6}, WinGeom{4, 10, 10, 20, 20}})
    for (int64_t div : {1, 30}) {
      const int64_t problems = 2, map = wg.c * wg.map_h * wg.map_w, stride = (map + div - 1) / div;
      const auto org = origins(wg.map_h, wg.map_w);
      std::vector<float> a, a_dense;
      windowed_rows(wg, half, org, 125, a, a_dense);
      const auto al = random_floats(static_cast<size_t>(problems * stride), 126),
                 bl = random_floats(static_cast<size_t>(problems * stride), 127),
                 au = random_floats(static_cast<size_t>(problems * stride), 128),
                 bu = random_floats(static_cast<size_t>(problems * stride), 129);
      const std::vector<int> prob = {0, 1, 1};
      const auto bias = random_doubles(static_cast<size_t>(2 * half), 130);
      const std::string what = "elementwise_back_window " + std::to_string(wg.size()) + " div " + std::to_string(div);
      Outputs host;
      check_primitive(
          what,
          [&](Ops& o) {
            Dev<float> da(o, a), dal(o, al), dbl(o, bl), dau(o, au), dbu(o, bu);
            Dev<int64_t> dorg(o, org);
            Dev<int> dp(o, prob);
            Dev<double> db(o, bias);
            o.elementwise_back_window(wg, half, dorg.get(), da.get(), dp.get(), stride, div, dal.get(), dbl.get(),
                                      dau.get(), dbu.get(), db.get(), nullptr, 1);
            Outputs r{da.read(), db.read()};
            if (o.name() == "host-float") host = r;
            return r;
          },
          [&](bool) {
            return std::vector<double>{0.0, sum_tol(wg.size(), static_cast<double>(wg.size()))};
          });
      // the dense pass over the same rows: the same coefficients, the same bias (same terms, same order)
      auto h_ops = make_host_ops(64 << 20);
      Dev<float> da(*h_ops, a_dense), dal(*h_ops, al), dbl(*h_ops, bl), dau(*h_ops, au), dbu(*h_ops, bu);
      Dev<int> dp(*h_ops, prob);
      Dev<double> db(*h_ops, bias);
      h_ops->elementwise_back(half, map, da.get(), dp.get(), stride, div, dal.get(), dbl.get(), dau.get(), dbu.get(),
                              db.get(), nullptr, 1);
      ASSERT_EQ(host.size(), 2u);
      std::vector<float> win_f(host[0].begin(), host[0].end());
      // densify the windowed result with the test's loop (out-of-map entries are 0 by construction)
      std::vector<float> d(static_cast<size_t>(2 * half * map), 0.0f);
      for (int64_t r = 0; r < 2 * half; ++r)
        for (int64_t e = 0; e < wg.size(); ++e) {
          const int64_t m =
              wg.map_index(org[static_cast<size_t>(2 * (r % half))], org[static_cast<size_t>(2 * (r % half) + 1)], e);
          if (m >= 0) d[static_cast<size_t>(r * map + m)] = win_f[static_cast<size_t>(r * wg.size() + e)];
        }
      EXPECT_EQ(Values(d.begin(), d.end()), da.read()) << what;
      EXPECT_EQ(host[1], db.read()) << what;
    }
}

TEST_F(GpuTest, FusedConvolutionAndRelaxationEqualsTheTwoCalls) {
  // conv_back_window_relax (a windowed convolution whose output rows the relaxation of the
  // activation below takes in the same pass, with or without that node's bias pass) gives, on
  // each backend, exactly what conv_back_window and then elementwise_back_window give. Windows
  // partly outside the map; 4 × 4 windows whose input window is 4 × 9 × 9 = 324 > 256 values for the
  // stride-2 conv, so that threads of a row's block take two elements (checked); two problems with
  // their own relaxations.
  const int64_t half = 3, problems = 2;
  const std::vector<int> prob = {0, 1, 1};
  const ConvGeom convs[] = {conv_geo(3, 7, 4, 3, 1, 1, 1, 1, 1), conv_geo(4, 16, 8, 3, 2, 1, 1, 1, 1),
                            conv_geo(4, 6, 4, 3, 1, 1, 1, 1, 2)};
  int64_t largest = 0;
  for (const ConvGeom& g : convs)
    for (const bool then_bias : {false, true}) {
      const int64_t h = 4, w = 4;
      const WinGeom wout{g.cout, h, w, g.hout, g.wout}, win{g.cin, g.span_y(h), g.span_x(w), g.hin, g.win};
      largest = std::max(largest, win.size());
      const std::vector<int64_t> org = {0, 0, -1, g.wout - 2, g.hout - 2, 1};
      const auto org_in = input_origins(g, org);
      std::vector<float> a, a_dense;
      windowed_rows(wout, half, org, 161, a, a_dense);
      const int64_t map = g.cin * g.hin * g.win;
      const auto wt = random_floats(static_cast<size_t>(g.cout * g.cin / g.groups * g.kk()), 162);
      const auto al = random_floats(static_cast<size_t>(problems * map), 163, 0.3),
                 bl = random_floats(static_cast<size_t>(problems * map), 164),
                 au = random_floats(static_cast<size_t>(problems * map), 165, 0.3),
                 bu = random_floats(static_cast<size_t>(problems * map), 166);
      const auto conv_bias = random_floats(static_cast<size_t>(g.cin), 167);
      const auto bias = random_doubles(static_cast<size_t>(2 * half), 168);
      const std::string what = std::string("conv_back_window_relax k") + std::to_string(g.kh) + " s" +
                               std::to_string(g.sh) + " groups " + std::to_string(g.groups) +
                               (then_bias ? ", with the bias pass" : "");
      auto run = [&](Ops& o, bool fused, bool relax = true) {
        Dev<float> da(o, a), dw(o, wt), dal(o, al), dbl(o, bl), dau(o, au), dbu(o, bu), dcb(o, conv_bias),
            dout(o, std::vector<float>(static_cast<size_t>(2 * half * win.size()), -7.25f));
        Dev<int> dp(o, prob);
        Dev<int64_t> dorg(o, org), dorg_in(o, org_in);
        Dev<double> db(o, bias);
        const float* tb = then_bias ? dcb.get() : nullptr;
        if (fused) {
          const RelaxStep rx{dp.get(), map, 1, dal.get(), dbl.get(), dau.get(), dbu.get(), db.get(), tb, g.hin * g.win};
          o.conv_back_window_relax(g, half, h, w, dorg.get(), dw.get(), da.get(), win, dorg_in.get(), dout.get(), rx);
        } else {
          o.conv_back_window(g, half, h, w, dorg.get(), dw.get(), da.get(), dout.get());
          if (relax)
            o.elementwise_back_window(win, half, dorg_in.get(), dout.get(), dp.get(), map, 1, dal.get(), dbl.get(),
                                      dau.get(), dbu.get(), db.get(), tb, g.hin * g.win);
        }
        return Outputs{dout.read(), db.read()};
      };
      check_primitive(
          what,
          [&](Ops& o) {
            const Outputs fused = run(o, true), two = run(o, false);
            EXPECT_EQ(fused, two) << what << " on " << o.name();
            EXPECT_NE(fused[1], bias) << "no bias terms";
            EXPECT_NE(fused[0], run(o, false, false)[0]) << "the relaxation changed no coefficient";
            return fused;
          },
          [&](bool library) {
            // the convolution is the own kernel on every backend (bit-identical), the bias sums
            // block reductions: at most 2 · size terms of magnitude ≤ |a·w| sums · max|β|
            (void)library;
            const double terms = static_cast<double>(2 * win.size()),
                         per = static_cast<double>(g.cout / g.groups * g.kk());
            return std::vector<double>{0.0, sum_tol(2 * win.size(), terms * per)};
          });
    }
  EXPECT_GT(largest, 256) << "no row has more elements than a block has threads";
}

TEST_F(GpuTest, AddGatherIdentityCopyAndZeroMatchTheHost) {
  for (int64_t n : {0, 1, 1000}) {
    const auto x = random_floats(static_cast<size_t>(n), 51), y = random_floats(static_cast<size_t>(n), 52);
    check_primitive(
        "add " + std::to_string(n),
        [&](Ops& o) {
          Dev<float> dx(o, x), dy(o, y);
          o.add(n, dx.get(), dy.get());
          return Outputs{dy.read()};
        },
        exact());
  }
  for (int64_t rows : {1, 3}) {
    const int64_t n_out = 5, n_in = 8;
    const std::vector<int64_t> inv = {4, -1, 0, 3, -1, 1, 2, 0};
    const auto a = random_floats(static_cast<size_t>(rows * n_out), 53);
    const std::vector<float> out(static_cast<size_t>(rows * n_in), -7.25f);
    check_primitive(
        "gather " + std::to_string(rows) + " rows",
        [&](Ops& o) {
          Dev<float> da(o, a), dout(o, out);
          Dev<int64_t> di(o, inv);
          o.gather(rows, n_out, n_in, di.get(), da.get(), dout.get());
          return Outputs{dout.read()};
        },
        exact());
  }
  for (int64_t half : {1, 3, 700})
    for (int64_t size : {1, 4}) {
      std::vector<int64_t> pos(static_cast<size_t>(half));
      for (int64_t r = 0; r < half; ++r) pos[static_cast<size_t>(r)] = (r * 3 + 1) % size;
      const std::vector<float> out(static_cast<size_t>(2 * half * size), -7.25f);
      check_primitive(
          "identity half " + std::to_string(half) + " size " + std::to_string(size),
          [&](Ops& o) {
            Dev<float> dout(o, out);
            Dev<int64_t> dpos(o, pos);
            o.identity(half, size, dpos.get(), dout.get());
            return Outputs{dout.read()};
          },
          exact());
    }
  for (int64_t n : {0, 1, 700}) {
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = n - 1 - i + 2;  // a permutation, shifted by 2
    const auto src = random_doubles(static_cast<size_t>(n), 55);
    const std::vector<double> dst(static_cast<size_t>(n + 3), -7.25);
    check_primitive(
        "scatter " + std::to_string(n),
        [&](Ops& o) {
          Dev<double> ds(o, src), dd(o, dst);
          Dev<int64_t> di(o, idx);
          o.scatter(n, di.get(), ds.get(), dd.get());
          return Outputs{dd.read()};
        },
        exact());
  }
  const auto v = random_floats(37, 54);
  check_primitive(
      "copy and zero",
      [&](Ops& o) {
        Dev<float> src(o, v), dst(o, std::vector<float>(37, -7.25f)), z(o, v);
        o.copy(dst.get(), src.get(), 20 * sizeof(float));
        o.zero(z.get(), 10 * sizeof(float));
        return Outputs{dst.read(), z.read()};
      },
      exact());
}

TEST_F(GpuTest, ConcretizeMatchesTheHost) {
  for (RegionNorm norm : {RegionNorm::Linf, RegionNorm::L2, RegionNorm::L1, RegionNorm::Box})
    for (int64_t half : {0, 1, 3})
      for (int64_t n : {1, 300}) {
        const int64_t problems = 2;
        const auto a = random_floats(static_cast<size_t>(2 * half * n), 61, 0.2);
        std::vector<int> prob(static_cast<size_t>(std::max<int64_t>(half, 1)));
        for (size_t i = 0; i < prob.size(); ++i) prob[i] = static_cast<int>((i + 1) % problems);
        const auto x0 = random_doubles(static_cast<size_t>(problems * n), 62, 0, 1);
        std::vector<double> x_hi =
            random_doubles(static_cast<size_t>(problems * n), 64, 0, 0.3);  // boxes: [x0, x0 + w]
        for (size_t j = 0; j < x_hi.size(); ++j) x_hi[j] += x0[j];
        const std::vector<double> eps = {0.03, 0.2};
        const auto bias = random_doubles(static_cast<size_t>(2 * half), 63);
        const std::vector<double> upper(static_cast<size_t>(half), -7.25), lower(static_cast<size_t>(half), -7.25);
        // |coef| ≤ 1, |x0| ≤ 1: the centre and norm sums have n terms of magnitude ≤ 1 (ℓ2: the
        // root of such a sum, times ε; ℓ1: a maximum, exact); the bias adds one more rounding.
        const double tol = sum_tol(n + 1, 2.0 * static_cast<double>(n) + 1);
        check_primitive(
            "concretize norm " + std::to_string(static_cast<int>(norm)) + " half " + std::to_string(half) + " n " +
                std::to_string(n),
            [&](Ops& o) {
              Dev<float> da(o, a);
              Dev<int> dp(o, prob);
              Dev<double> dx(o, x0), dh(o, x_hi), de(o, eps), db(o, bias), du(o, upper), dl(o, lower);
              o.concretize(half, n, da.get(), dp.get(), dx.get(), norm == RegionNorm::Box ? dh.get() : nullptr,
                           de.get(), norm, db.get(), du.get(), dl.get());
              return Outputs{du.read(), dl.read()};
            },
            [&](bool) {
              return std::vector<double>{tol, tol};
            });
      }
}

TEST_F(GpuTest, WindowedConcretizeMatchesTheHostAndTheDenseRows) {
  // Windows of a 3 × 12 × 12 input map (432 values) that leave it on every side; the entries
  // outside the map hold garbage, which concretize_window must skip. On the host the result is
  // that of concretize over the rows made dense, bit for bit; the CUDA one within the sums' tolerance.
  const WinGeom wg{3, 5, 7, 12, 12};
  const int64_t half = 3, problems = 2, n = 3 * 12 * 12;
  const std::vector<int64_t> org = {-2, -3, 4, 2, 9, 8};
  const std::vector<int> prob = {1, 0, 1};
  std::vector<float> a, a_dense;
  windowed_rows(wg, half, org, 151, a, a_dense);
  for (int64_t r = 0; r < 2 * half; ++r)
    for (int64_t e = 0; e < wg.size(); ++e)
      if (wg.map_index(org[static_cast<size_t>(2 * (r % half))], org[static_cast<size_t>(2 * (r % half) + 1)], e) < 0)
        a[static_cast<size_t>(r * wg.size() + e)] = 1e6f;  // outside the map: must not count
  const auto x0 = random_doubles(static_cast<size_t>(problems * n), 152, 0, 1);
  std::vector<double> x_hi = random_doubles(static_cast<size_t>(problems * n), 153, 0, 0.3);
  for (size_t j = 0; j < x_hi.size(); ++j) x_hi[j] += x0[j];
  const std::vector<double> eps = {0.03, 0.2};
  const auto bias = random_doubles(static_cast<size_t>(2 * half), 154);
  const std::vector<double> init(static_cast<size_t>(half), -7.25);
  for (RegionNorm norm : {RegionNorm::Linf, RegionNorm::L2, RegionNorm::L1, RegionNorm::Box}) {
    const std::string what = "concretize_window norm " + std::to_string(static_cast<int>(norm));
    const double* no_box = nullptr;
    Outputs host;
    check_primitive(
        what,
        [&](Ops& o) {
          Dev<float> da(o, a);
          Dev<int> dp(o, prob);
          Dev<int64_t> dorg(o, org);
          Dev<double> dx(o, x0), dh(o, x_hi), de(o, eps), db(o, bias), du(o, init), dl(o, init);
          o.concretize_window(wg, half, dorg.get(), da.get(), dp.get(), dx.get(),
                              norm == RegionNorm::Box ? dh.get() : no_box, de.get(), norm, db.get(), du.get(),
                              dl.get());
          Outputs r{du.read(), dl.read()};
          if (o.name() == "host-float") host = r;
          return r;
        },
        [&](bool) {
          const double tol = sum_tol(wg.size() + 1, 2.0 * static_cast<double>(wg.size()) + 1);
          return std::vector<double>{tol, tol};
        });
    auto h = make_host_ops(64 << 20);
    Dev<float> da(*h, a_dense);
    Dev<int> dp(*h, prob);
    Dev<double> dx(*h, x0), dh(*h, x_hi), de(*h, eps), db(*h, bias), du(*h, init), dl(*h, init);
    h->concretize(half, n, da.get(), dp.get(), dx.get(), norm == RegionNorm::Box ? dh.get() : no_box, de.get(), norm,
                  db.get(), du.get(), dl.get());
    EXPECT_EQ(host, (Outputs{du.read(), dl.read()})) << what;
  }
}

/// Neuron bounds that visit every case of a relaxation: unstable, both signs stable, a point
/// interval, wide and narrow intervals.
void neuron_bounds(int64_t count, uint64_t seed, std::vector<double>& lo, std::vector<double>& hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-4, 4);
  lo.resize(static_cast<size_t>(count));
  hi.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    double a = u(rng), b = u(rng);
    if (i % 7 == 3) b = a;                     // l = u
    if (i % 11 == 5) a = 0, b = std::fabs(b);  // l = 0
    lo[static_cast<size_t>(i)] = std::min(a, b), hi[static_cast<size_t>(i)] = std::max(a, b);
  }
}

TEST_F(GpuTest, ActivationRelaxationsAndBoundsMatchTheHost) {
  const bool real_gpu = !cuda_emulated();
  for (ActKind kind : {ActKind::Relu, ActKind::LeakyRelu, ActKind::Sigmoid, ActKind::Tanh, ActKind::Atan, ActKind::Erf,
                       ActKind::Elu, ActKind::Softplus, ActKind::Gelu, ActKind::GeluTanh, ActKind::Silu})
    for (int rule = 0; rule < 3; ++rule) {
      ActSpec s;
      s.kind = kind;
      s.alpha = kind == ActKind::LeakyRelu && rule == 2 ? -0.2 : 0.1;
      s.relu = rule == 0 ? ReluRule::Fastlin : ReluRule::Adaptive;
      s.smooth = rule == 0 ? SmoothRule::CnnCert : rule == 1 ? SmoothRule::DeepCert : SmoothRule::Crown;
      const bool smooth = kind != ActKind::Relu && kind != ActKind::LeakyRelu;
      for (int64_t count : {0, 1, 1000}) {
        std::vector<double> lo, hi;
        neuron_bounds(count, 70 + static_cast<uint64_t>(rule), lo, hi);
        const std::vector<float> init(static_cast<size_t>(count), -7.25f);
        const std::vector<double> init_d(static_cast<size_t>(count), -7.25);
        // device libm on a real GPU (see the top): slopes and intercepts 8e-6, σ values 1e-14
        const double tf = real_gpu && smooth ? 8e-6 : 0.0, td = real_gpu && smooth ? 1e-14 : 0.0;
        check_primitive(
            std::string("relax_activation/activation_bounds ") + act_name(kind) + " rule " + std::to_string(rule) +
                " count " + std::to_string(count),
            [&](Ops& o) {
              Dev<double> dlo(o, lo), dhi(o, hi), olo(o, init_d), ohi(o, init_d);
              Dev<float> al(o, init), bl(o, init), au(o, init), bu(o, init);
              o.relax_activation(count, s, dlo.get(), dhi.get(), al.get(), bl.get(), au.get(), bu.get());
              Outputs r{al.read(), bl.read(), au.read(), bu.read()};
              if (activation_monotone(s)) {
                o.activation_bounds(count, s, dlo.get(), dhi.get(), olo.get(), ohi.get());
                r.push_back(olo.read());
                r.push_back(ohi.read());
              }
              return r;
            },
            [&](bool) { return std::vector<double>{tf, tf, tf, tf, td, td}; });
      }
    }
}

TEST_F(GpuTest, MaxPoolRelaxationMatchesTheHost) {
  for (const PoolGeom& g : {pool_geom(2, 6, 2, 2, 0), pool_geom(2, 5, 3, 2, 1), pool_geom(1, 1, 1, 1, 0)})
    for (int64_t problems : {1, 3}) {
      std::vector<double> lo, hi;
      neuron_bounds(problems * g.in_size(), 80, lo, hi);
      const std::vector<float> slopes(static_cast<size_t>(problems * g.out_size() * g.kk()), -7.25f);
      const std::vector<float> betas(static_cast<size_t>(problems * g.out_size()), -7.25f);
      check_primitive(
          "relax_maxpool k" + std::to_string(g.kh) + " problems " + std::to_string(problems),
          [&](Ops& o) {
            Dev<double> dlo(o, lo), dhi(o, hi);
            Dev<float> ds(o, slopes), dbu(o, betas), dbl(o, betas);
            o.relax_maxpool(g, problems, dlo.get(), dhi.get(), ds.get(), dbu.get(), dbl.get());
            return Outputs{ds.read(), dbu.read(), dbl.read()};
          },
          exact());
    }
}

TEST_F(GpuTest, NonFiniteFlagsMatchTheHost) {
  const int64_t problems = 5, size = 300;
  auto lo = random_doubles(static_cast<size_t>(problems * size), 91),
       hi = random_doubles(static_cast<size_t>(problems * size), 92);
  lo[1 * size + 299] = NAN;
  hi[2 * size + 0] = INFINITY;
  lo[3 * size + 150] = -1e13;  // beyond kMaxReliableBound
  hi[4 * size + 10] = NAN;     // (a flag already set stays as it is)
  const std::vector<int> flags = {0, 0, 0, 0, 7};
  check_primitive(
      "flag_nonfinite",
      [&](Ops& o) {
        Dev<double> dlo(o, lo), dhi(o, hi);
        Dev<int> df(o, flags);
        o.flag_nonfinite(problems, size, dlo.get(), dhi.get(), 3, df.get());
        return Outputs{df.read()};
      },
      exact());
  // and the expected flags themselves, so that a host bug cannot hide behind agreement
  auto host = make_host_ops(1 << 20);
  Dev<double> dlo(*host, lo), dhi(*host, hi);
  Dev<int> df(*host, flags);
  host->flag_nonfinite(problems, size, dlo.get(), dhi.get(), 3, df.get());
  EXPECT_EQ(df.read(), (Values{0, 3, 3, 3, 7}));
}

TEST_F(GpuTest, IntervalPropagationMatchesTheHostAndContainsTheValues) {
  struct Case {
    std::string name;
    IntervalStep s;
  };
  const int64_t problems = 3;
  // Constants live in host vectors; each backend gets its own copies (pointers set per run).
  const ConvGeom cg[] = {conv_geo(3, 7, 4, 3, 1, 1, 1, 1, 1), conv_geo(4, 6, 4, 3, 2, 1, 1, 1, 2),
                         conv_geo(2, 8, 2, 3, 1, 2, 2, 2, 1), conv_geo(2, 6, 3, 2, 2, 1, 0, 1, 1)};
  const PoolGeom pg[] = {pool_geom(2, 6, 2, 2, 0), pool_geom(2, 5, 3, 2, 1)};
  std::vector<Case> cases;
  for (const ConvGeom& g : cg) {
    IntervalStep s;
    s.op = IntervalOp::Conv, s.conv = g, s.n_in = g.cin * g.hin * g.win, s.n_out = g.cout * g.hout * g.wout;
    cases.push_back({"conv k" + std::to_string(g.kh) + " s" + std::to_string(g.sh) + " groups " +
                         std::to_string(g.groups) + " d" + std::to_string(g.dh),
                     s});
  }
  for (int64_t n_in : {1, 300}) {
    IntervalStep s;
    s.op = IntervalOp::Dense, s.n_in = n_in, s.n_out = 7;
    cases.push_back({"dense " + std::to_string(n_in), s});
  }
  for (const PoolGeom& g : pg)
    for (IntervalOp op : {IntervalOp::MaxPool, IntervalOp::AvgPool}) {
      IntervalStep s;
      s.op = op, s.pool = g, s.n_in = g.in_size(), s.n_out = g.out_size();
      cases.push_back({std::string(op == IntervalOp::MaxPool ? "max" : "avg") + "pool k" + std::to_string(g.kh), s});
    }
  for (IntervalOp op : {IntervalOp::ScaleShift, IntervalOp::Add, IntervalOp::Layout}) {
    IntervalStep s;
    s.op = op, s.n_in = 300, s.n_out = op == IntervalOp::Layout ? 250 : 300;
    cases.push_back({op == IntervalOp::ScaleShift ? "scale-shift" : op == IntervalOp::Add ? "add" : "layout", s});
  }
  for (ActKind kind : {ActKind::Relu, ActKind::LeakyRelu, ActKind::Sigmoid, ActKind::Tanh, ActKind::Gelu}) {
    IntervalStep s;
    s.op = IntervalOp::Activation, s.n_in = s.n_out = 1000, s.act.kind = kind, s.act.alpha = 0.1;
    cases.push_back({std::string("activation ") + act_name(kind), s});
  }
  const bool real_gpu = !cuda_emulated();
  for (const Case& c : cases) {
    const IntervalStep& st = c.s;
    std::vector<double> lo, hi, lo2, hi2;
    neuron_bounds(problems * st.n_in, 101, lo, hi);
    neuron_bounds(problems * st.n_out, 102, lo2, hi2);
    const size_t n_w = st.op == IntervalOp::Conv
                           ? static_cast<size_t>(st.conv.cout * st.conv.cin / st.conv.groups * st.conv.kk())
                       : st.op == IntervalOp::Dense   ? static_cast<size_t>(st.n_out * st.n_in)
                       : st.op == IntervalOp::AvgPool ? static_cast<size_t>(st.n_out * st.pool.kk())
                                                      : static_cast<size_t>(st.n_out);
    auto w = random_floats(n_w, 103, 0.1);
    if (st.op == IntervalOp::AvgPool)
      for (auto& x : w) x = std::fabs(x);
    const auto b = random_floats(static_cast<size_t>(st.n_out), 104);
    std::vector<int64_t> map(static_cast<size_t>(st.n_out));
    for (int64_t j = 0; j < st.n_out; ++j) map[static_cast<size_t>(j)] = j % 5 == 2 ? -1 : (j * 7) % st.n_in;
    const std::vector<double> init(static_cast<size_t>(problems * st.n_out), -7.25);
    const bool smooth =
        st.op == IntervalOp::Activation && st.act.kind != ActKind::Relu && st.act.kind != ActKind::LeakyRelu;
    const double tol = real_gpu && smooth ? 1e-14 : 0.0;  // device libm (see the top)
    Outputs host_out;
    check_primitive(
        "interval " + c.name,
        [&](Ops& o) {
          Dev<double> dlo(o, lo), dhi(o, hi), dlo2(o, lo2), dhi2(o, hi2), olo(o, init), ohi(o, init);
          Dev<float> dw(o, w), db(o, b);
          Dev<int64_t> dm(o, map);
          IntervalStep s = st;
          s.w = dw.get(), s.b = db.get(), s.map = dm.get();
          const bool add = s.op == IntervalOp::Add;
          o.interval(s, problems, dlo.get(), dhi.get(), add ? dlo2.get() : nullptr, add ? dhi2.get() : nullptr,
                     olo.get(), ohi.get());
          Outputs r{olo.read(), ohi.read()};
          if (o.name() == "host-float") host_out = r;
          return r;
        },
        [&](bool) {
          return std::vector<double>{tol, tol};
        });
    // Independent of the implementations: σ/W·x + b at random points of the input box lie inside.
    ASSERT_EQ(host_out.size(), 2u) << c.name;
    std::mt19937_64 rng(105);
    std::uniform_real_distribution<double> u01(0, 1);
    for (int trial = 0; trial < 20; ++trial)
      for (int64_t p = 0; p < problems; ++p) {
        std::vector<double> x(static_cast<size_t>(st.n_in)), x2(static_cast<size_t>(st.n_out));
        for (int64_t i = 0; i < st.n_in; ++i) {
          const auto k = static_cast<size_t>(p * st.n_in + i);
          x[static_cast<size_t>(i)] = trial == 0 ? lo[k] : trial == 1 ? hi[k] : lo[k] + u01(rng) * (hi[k] - lo[k]);
        }
        for (int64_t i = 0; i < st.n_out; ++i) {
          const auto k = static_cast<size_t>(p * st.n_out + i);
          x2[static_cast<size_t>(i)] = lo2[k] + u01(rng) * (hi2[k] - lo2[k]);
        }
        for (int64_t j = 0; j < st.n_out; ++j) {
          double y = 0;
          const auto J = static_cast<size_t>(j);
          switch (st.op) {
            case IntervalOp::Conv: {
              const ConvGeom& g = st.conv;
              const int64_t plane = g.hout * g.wout, co = j / plane, oy = (j % plane) / g.wout, ox = j % g.wout;
              const int64_t cin_g = g.cin / g.groups, grp = co / (g.cout / g.groups);
              y = b[static_cast<size_t>(co)];
              for (int64_t cl = 0; cl < cin_g; ++cl)
                for (int64_t ky = 0; ky < g.kh; ++ky)
                  for (int64_t kx = 0; kx < g.kw; ++kx) {
                    const int64_t iy = oy * g.sh - g.pt + ky * g.dh, ix = ox * g.sw - g.pl + kx * g.dw;
                    if (iy < 0 || iy >= g.hin || ix < 0 || ix >= g.win) continue;
                    y += w[static_cast<size_t>(((co * cin_g + cl) * g.kh + ky) * g.kw + kx)] *
                         x[static_cast<size_t>(((grp * cin_g + cl) * g.hin + iy) * g.win + ix)];
                  }
              break;
            }
            case IntervalOp::Dense:
              y = b[J];
              for (int64_t i = 0; i < st.n_in; ++i)
                y += w[static_cast<size_t>(j * st.n_in + i)] * x[static_cast<size_t>(i)];
              break;
            case IntervalOp::MaxPool:
            case IntervalOp::AvgPool: {
              const PoolGeom& g = st.pool;
              const int64_t plane = g.hout * g.wout, ch = j / plane, oy = (j % plane) / g.wout, ox = j % g.wout;
              const bool avg = st.op == IntervalOp::AvgPool;
              y = avg ? 0.0 : -INFINITY;
              for (int64_t ky = 0; ky < g.kh; ++ky)
                for (int64_t kx = 0; kx < g.kw; ++kx) {
                  const int64_t iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
                  if (iy < 0 || iy >= g.hin || ix < 0 || ix >= g.win) continue;
                  const double v = x[static_cast<size_t>((ch * g.hin + iy) * g.win + ix)];
                  y = avg ? y + w[static_cast<size_t>(j * g.kk() + ky * g.kw + kx)] * v : std::max(y, v);
                }
              break;
            }
            case IntervalOp::ScaleShift: y = w[J] * x[J] + b[J]; break;
            case IntervalOp::Add: y = x[J] + x2[J]; break;
            case IntervalOp::Layout: y = map[J] >= 0 ? x[static_cast<size_t>(map[J])] : 0.0; break;
            case IntervalOp::Activation: y = activation_value(st.act, x[J]); break;
          }
          const auto k = static_cast<size_t>(p * st.n_out + j);
          ASSERT_TRUE(host_out[0][k] <= y && y <= host_out[1][k])
              << c.name << ": problem " << p << " element " << j << " value " << y << " outside [" << host_out[0][k]
              << ", " << host_out[1][k] << "]";
        }
      }
  }
}

TEST_F(GpuTest, RowSelectionMatchesTheHost) {
  const int64_t count = 1000;
  std::vector<double> lo, hi;
  neuron_bounds(count, 111, lo, hi);
  lo[5] = NAN, hi[6] = 2e12, lo[7] = -INFINITY;  // unreliable: rows
  auto olo = random_doubles(static_cast<size_t>(count), 112, -1, 0.5),
       ohi = random_doubles(static_cast<size_t>(count), 113, -0.5, 1);
  olo[9] = NAN;  // ignored
  const std::vector<double> init(static_cast<size_t>(count), -7.25);
  const std::vector<unsigned char> init_m(static_cast<size_t>(count), 7);
  for (SkipLevel level : {SkipLevel::None, SkipLevel::NonPositive, SkipLevel::Stable})
    for (bool outer : {false, true}) {
      Outputs host_out;
      check_primitive(
          "select_rows level " + std::to_string(static_cast<int>(level)) + (outer ? " with outer bounds" : ""),
          [&](Ops& o) {
            Dev<double> dlo(o, lo), dhi(o, hi), dolo(o, olo), dohi(o, ohi), l(o, init), u(o, init);
            Dev<unsigned char> m(o, init_m);
            o.select_rows(count, level, dlo.get(), dhi.get(), outer ? dolo.get() : nullptr,
                          outer ? dohi.get() : nullptr, l.get(), u.get(), m.get());
            Outputs r{l.read(), u.read(), m.read()};
            if (o.name() == "host-float") host_out = r;
            return r;
          },
          exact());
      // The verdicts themselves (so that a host bug cannot hide behind agreement).
      ASSERT_EQ(host_out.size(), 3u);
      for (int64_t i = 0; i < count; ++i) {
        const auto k = static_cast<size_t>(i);
        double l = lo[k], u = hi[k];
        if (outer && olo[k] > l) l = olo[k];
        if (outer && ohi[k] < u) u = ohi[k];
        const bool settled =
            level == SkipLevel::Stable ? (l >= 0 || u <= 0) : level == SkipLevel::NonPositive && u <= 0;
        const bool ok = settled && l <= u && std::fabs(l) <= 1e12 && std::fabs(u) <= 1e12;
        const bool by_interval =
            level == SkipLevel::Stable ? (lo[k] >= 0 || hi[k] <= 0) : level == SkipLevel::NonPositive && hi[k] <= 0;
        const double want = !ok ? kRowNeeded : by_interval ? kRowSkipped : kRowSkippedByOuter;
        EXPECT_EQ(host_out[2][k], want) << "element " << i;
        if (ok) EXPECT_TRUE(host_out[0][k] == l && host_out[1][k] == u) << "element " << i;
      }
    }
}

}  // namespace
}  // namespace cnncert::test
