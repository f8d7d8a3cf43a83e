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
// * cuDNN and cuBLAS (real GPU only) against the own kernels: two float32 sums of the same T terms
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
/// cuDNN/cuBLAS (only where they are compiled in and a real GPU runs).
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
    expect_agree(run(*b.ops), want, tol(b.library), what + " [" + b.name + "]");
  }
}

std::function<std::vector<double>(bool)> exact() {
  return [](bool) { return std::vector<double>{}; };
}

/// Tolerance of a double sum of n terms whose magnitudes add up to `abs_sum` (see the top).
double sum_tol(int64_t n, double abs_sum) {
  return 2.0 * static_cast<double>(n) * std::ldexp(1.0, -53) * abs_sum + 1e-300;
}

TEST_F(GpuTest, ConvBackMatchesTheHost) {
  struct Case {
    ConvGeom g;
    const char* name;
  };
  const auto geo = [](int64_t cin, int64_t hin, int64_t cout, int64_t k, int64_t s, int64_t pt, int64_t pl, int64_t d,
                      int64_t groups) {
    ConvGeom g;
    g.cin = cin, g.hin = g.win = hin, g.cout = cout, g.kh = g.kw = k, g.sh = g.sw = s, g.pt = pt, g.pl = pl,
    g.dh = g.dw = d;
    g.groups = groups;
    g.hout = (hin + 2 * pt - d * (k - 1) - 1) / s + 1;
    g.wout = (hin + 2 * pl - d * (k - 1) - 1) / s + 1;
    return g;
  };
  const std::vector<Case> cases = {
      {geo(3, 7, 4, 3, 1, 1, 1, 1, 1), "3x3 same padding"},   {geo(2, 9, 3, 3, 2, 0, 0, 1, 1), "stride 2"},
      {geo(2, 8, 2, 3, 1, 2, 2, 2, 1), "dilation 2"},         {geo(4, 6, 4, 3, 1, 1, 1, 1, 2), "2 groups"},
      {geo(2, 6, 3, 2, 2, 1, 0, 1, 1), "asymmetric padding"}, {geo(5, 4, 1, 1, 1, 0, 0, 1, 1), "1x1"},
      {geo(1, 1, 1, 1, 1, 0, 0, 1, 1), "1 element"},
  };
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
    }
}

TEST_F(GpuTest, DenseBackMatchesTheHost) {
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
      }
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
                                 dbl.get(), dau.get(), dbu.get(), db.get());
              return Outputs{da.read(), db.read()};
            },
            [&](bool) {
              return std::vector<double>{0.0, sum_tol(size, abs_sum)};
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
    for (int64_t first : {0, 2}) {
      const int64_t size = 4;
      const std::vector<float> out(static_cast<size_t>(2 * half * size), -7.25f);
      check_primitive(
          "identity half " + std::to_string(half) + " first " + std::to_string(first),
          [&](Ops& o) {
            Dev<float> dout(o, out);
            o.identity(half, size, first, dout.get());
            return Outputs{dout.read()};
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
  lo[3 * size + 150] = -1e13;                      // beyond kMaxReliableBound
  const std::vector<int> flags = {0, 0, 0, 0, 1};  // a flag already set stays set
  check_primitive(
      "flag_nonfinite",
      [&](Ops& o) {
        Dev<double> dlo(o, lo), dhi(o, hi);
        Dev<int> df(o, flags);
        o.flag_nonfinite(problems, size, dlo.get(), dhi.get(), df.get());
        return Outputs{df.read()};
      },
      exact());
  // and the expected flags themselves, so that a host bug cannot hide behind agreement
  auto host = make_host_ops(1 << 20);
  Dev<double> dlo(*host, lo), dhi(*host, hi);
  Dev<int> df(*host, flags);
  host->flag_nonfinite(problems, size, dlo.get(), dhi.get(), df.get());
  EXPECT_EQ(df.read(), (Values{0, 1, 1, 1, 1}));
}

}  // namespace
}  // namespace cnncert::test
