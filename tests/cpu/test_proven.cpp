// PROVEN: probability formulas against exact and Monte Carlo values, the Gaussian region, and
// end-to-end Monte Carlo checks of reported noise levels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/proven.hpp"
#include "common/net_factory.hpp"
#include "common/test_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

TEST(Proven, HoeffdingFormula) {
  // exp(−μ²/(2 ε² ‖a‖²)) and the uniform variance proxy ε²/3
  EXPECT_DOUBLE_EQ(hoeffding_failure(1.0, 2.0, 0.5, false), std::exp(-1.0 / (2 * 0.25 * 4)));
  EXPECT_DOUBLE_EQ(hoeffding_failure(1.0, 2.0, 0.5, true), std::exp(-3.0 / (2 * 0.25 * 4)));
  EXPECT_EQ(hoeffding_failure(-0.1, 2.0, 0.5, false), 1.0);
  EXPECT_EQ(hoeffding_failure(0.0, 2.0, 0.5, false), 1.0);
}

TEST(Proven, NormalCdfTails) {
  EXPECT_NEAR(normal_cdf(0), 0.5, 1e-16);
  EXPECT_NEAR(normal_cdf(1.959963984540054), 0.975, 1e-12);
  // far tail through erfc: 1 − Φ(−10) must not round to 0
  EXPECT_NEAR(normal_cdf(-10) / 7.619853024160527e-24, 1.0, 1e-9);
}

TEST(Proven, HoeffdingBoundsTheMonteCarloFailureRate) {
  // a linear margin g(x0 + δ) = μ + aᵀδ with uniform δ ∈ [−ε, ε]^d
  std::mt19937_64 rng(3);
  const int d = 50;
  std::vector<double> a = randn(rng, d, 1.0);
  double l2 = 0;
  for (double v : a) l2 += v * v;
  l2 = std::sqrt(l2);
  const double eps = 0.1, mu = 1.2 * eps * l2;  // bound ≈ exp(−0.72) (proxy: exp(−2.16))
  for (bool proxy : {false, true}) {
    const double bound = hoeffding_failure(mu, l2, eps, proxy);
    std::uniform_real_distribution<double> u(-eps, eps);
    const int n = 200000;
    int fails = 0;
    for (int s = 0; s < n; ++s) {
      double g = mu;
      for (int i = 0; i < d; ++i) g += a[static_cast<size_t>(i)] * u(rng);
      fails += g <= 0;
    }
    const double rate = static_cast<double>(fails) / n;
    EXPECT_LE(rate, bound + 4 * std::sqrt(bound / n)) << "proxy " << proxy;
    EXPECT_GT(rate, 0.0);  // the test is not vacuous
  }
}

TEST(Proven, GaussianBoxRadiusMatchesItsTail) {
  for (int64_t d : {1, 10, 784}) {
    const double tail = 5e-5;
    const double r = gaussian_box_radius(0.1, {}, d, tail);
    EXPECT_LE(gaussian_box_tail(0.1, {}, d, r), tail);
    EXPECT_GT(gaussian_box_tail(0.1, {}, d, r * 0.99), tail);
  }
  // one dimension: P[|X| > r] = erfc(r/(σ√2)) exactly
  EXPECT_NEAR(gaussian_box_tail(2.0, {}, 1, 3.0), std::erfc(3.0 / (2.0 * std::sqrt(2.0))), 1e-15);
  // diagonal variances: a zero-variance coordinate never leaves the box
  EXPECT_NEAR(gaussian_box_tail(1.0, {0.0, 4.0}, 2, 2.0), std::erfc(2.0 / (2.0 * std::sqrt(2.0))), 1e-15);
  // Monte Carlo for a moderate tail
  std::mt19937_64 rng(5);
  std::normal_distribution<double> g(0.0, 0.3);
  const int64_t d = 20;
  const double r = gaussian_box_radius(0.3, {}, d, 0.05);
  int out = 0;
  const int n = 100000;
  for (int s = 0; s < n; ++s) {
    bool o = false;
    for (int64_t i = 0; i < d; ++i) o = o || std::fabs(g(rng)) > r;
    out += o;
  }
  EXPECT_NEAR(static_cast<double>(out) / n, 0.05, 0.004);
}

/// A strongly correlated covariance Σ = L·Lᵀ for d inputs (row-major) and its factor L.
std::pair<std::vector<double>, std::vector<double>> correlated_covariance(int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> l(static_cast<size_t>(d * d), 0.0), cov(static_cast<size_t>(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) {
    l[static_cast<size_t>(i * d)] = 1.0;  // a common factor: every pair of coordinates correlated
    for (int64_t j = 1; j <= i; ++j) l[static_cast<size_t>(i * d + j)] = 0.5 * u(rng);
    if (i > 0) l[static_cast<size_t>(i * d + i)] = 0.3 + 0.5 * std::fabs(u(rng));
  }
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < d; ++k)
        cov[static_cast<size_t>(i * d + j)] += l[static_cast<size_t>(i * d + k)] * l[static_cast<size_t>(j * d + k)];
  return {cov, l};
}

TEST(Proven, GaussianBoxTailHoldsForCorrelatedNoise) {
  // With correlated coordinates the product of the per-coordinate probabilities is a lower bound
  // on P[X ∈ box] (Šidák's inequality), so the tail computed from the variances stays an upper
  // bound. Checked by sampling X = L·z.
  const int64_t d = 12;
  const auto [cov, l] = correlated_covariance(d, 9);
  EXPECT_NO_THROW(validate_covariance(cov, d, "cov"));
  std::vector<double> var(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) var[static_cast<size_t>(i)] = cov[static_cast<size_t>(i * d + i)];
  const double sigma = 0.5, r = gaussian_box_radius(sigma, var, d, 0.05);
  std::mt19937_64 rng(6);
  std::normal_distribution<double> g(0.0, 1.0);
  const int n = 100000;
  int out = 0;
  std::vector<double> z(static_cast<size_t>(d));
  for (int s = 0; s < n; ++s) {
    for (double& v : z) v = g(rng);
    bool o = false;
    for (int64_t i = 0; i < d; ++i) {
      double x = 0;
      for (int64_t j = 0; j <= i; ++j) x += l[static_cast<size_t>(i * d + j)] * z[static_cast<size_t>(j)];
      o = o || std::fabs(sigma * x) > r;
    }
    out += o;
  }
  const double rate = static_cast<double>(out) / n;
  EXPECT_LE(rate, 0.05 + 4 * std::sqrt(0.05 / n));
  EXPECT_GT(rate, 0.01);  // not vacuous: the box is tight enough to be left
}

TEST(Proven, CovarianceValidation) {
  EXPECT_NO_THROW(validate_covariance({1, 0.5, 0.5, 1}, 2, "cov.npy"));
  EXPECT_NO_THROW(validate_covariance({1, 1, 1, 1}, 2, "cov.npy"));                    // singular but PSD
  EXPECT_THROW(validate_covariance({1, 2, 2, 1}, 2, "cov.npy"), InvalidArgument);      // eigenvalue −1
  EXPECT_THROW(validate_covariance({1, 0.5, 0.4, 1}, 2, "cov.npy"), InvalidArgument);  // not symmetric
  EXPECT_THROW(validate_covariance({1, 1, 1}, 2, "cov.npy"), InvalidArgument);         // wrong size
  EXPECT_THROW(validate_covariance({1, -1}, 2, "cov.npy"), InvalidArgument);           // negative variance
  EXPECT_THROW(validate_covariance({1, std::nan("")}, 2, "cov.npy"), InvalidArgument);
  try {
    validate_covariance({1, 2, 2, 1}, 2, "cov.npy");
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("cov.npy"), std::string::npos);
  }
}

/// Monte Carlo failure rate of the network under the noise at `level` around x0: the rate of
/// draws whose prediction is not c (target −1, top-1) or whose logit of `target` is not below c's.
/// A factor `chol` (d×d, row-major, lower triangular) makes the Gaussian noise level·chol·z with
/// z ~ N(0, I), i.e. covariance level²·chol·cholᵀ.
double mc_failure_rate(const Network& net, const std::vector<double>& x0, int64_t c, int64_t target, NoiseKind kind,
                       double level, int n, uint64_t seed, const std::vector<double>& chol = {}) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-level, level);
  std::normal_distribution<double> g(0.0, level);
  std::bernoulli_distribution coin(0.5);
  const int64_t d = net.input_size(), k = net.output_size();
  const int batch = 500;
  std::vector<double> xs(static_cast<size_t>(batch * d)), z(static_cast<size_t>(d));
  int errors = 0;
  for (int done = 0; done < n; done += batch) {
    const int m = std::min(batch, n - done);
    for (int b = 0; b < m; ++b) {
      for (int64_t i = 0; i < d; ++i)
        z[static_cast<size_t>(i)] = kind == NoiseKind::Gaussian    ? g(rng)
                                    : kind == NoiseKind::Bernoulli ? (coin(rng) ? level : -level)
                                                                   : u(rng);
      for (int64_t i = 0; i < d; ++i) {
        double v = z[static_cast<size_t>(i)];
        if (!chol.empty()) {
          v = 0;
          for (int64_t j = 0; j <= i; ++j) v += chol[static_cast<size_t>(i * d + j)] * z[static_cast<size_t>(j)];
        }
        xs[static_cast<size_t>(b * d + i)] = x0[static_cast<size_t>(i)] + v;
      }
    }
    const auto y = net.forward(xs.data(), m);
    for (int b = 0; b < m; ++b) {
      const double* row = y.data() + b * k;
      errors += target < 0 ? (std::max_element(row, row + k) - row) != c : row[target] >= row[c];
    }
  }
  return static_cast<double>(errors) / n;
}

/// One end-to-end configuration: noise, confidence, Monte Carlo draws per image, method, targets.
struct EndToEnd {
  NoiseKind kind = NoiseKind::Uniform;
  double confidence = 0.99;
  int draws = 20000;
  std::string method = "adaptive";
  TargetMode target = TargetMode::Untargeted;  // top-1: the probability of keeping the class
  std::vector<double> covariance, chol;        // Gaussian: a full covariance and its Cholesky factor
};

/// Runs PROVEN and checks every reported noise level by sampling; returns the levels checked.
int check_end_to_end(const Network& net, const std::vector<double>& x, const std::vector<int64_t>& labels,
                     const EndToEnd& e) {
  SCOPED_TRACE(std::string(noise_name(e.kind)) + ", " + e.method + ", " + target_mode_name(e.target));
  auto engine = make_cpu_engine(net);
  ProvenOptions po;
  po.noise.kind = e.kind;
  po.confidence = e.confidence;
  po.base.target = e.target;
  po.base.bound.method = parse_method(e.method);
  po.noise.covariance = e.covariance;
  const auto run = proven_certify(net, *engine, x, labels, po);
  int checked = 0;
  for (const auto& im : run.images) {
    if (im.skipped) continue;
    for (const auto& t : im.targets) {
      if (e.kind != NoiseKind::Gaussian) EXPECT_GE(t.noise, t.worst_case) << "image " << im.image;
      if (t.noise <= 0) continue;
      const int64_t n = net.input_size();
      const std::vector<double> x0(x.begin() + im.image * n, x.begin() + (im.image + 1) * n);
      const double rate = mc_failure_rate(net, x0, im.predicted, t.target, e.kind, t.noise, e.draws,
                                          11 + static_cast<uint64_t>(im.image), e.chol);
      const double delta = 1 - e.confidence;
      // a binomial count above δ·n by more than 5 standard deviations would refute the claim
      EXPECT_LE(rate, delta + 5 * std::sqrt(delta / e.draws)) << "image " << im.image << " level " << t.noise;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
  return checked;
}

TEST(ProvenEndToEnd, RandomNetworksKeepTheClaimedProbability) {
  for (Family f : {Family::Mlp, Family::CnnMaxPool}) {
    SCOPED_TRACE(family_name(f));
    const Network net = random_network(f, ActKind::Relu, 17);
    const std::vector<double> x = random_inputs(40, 3, net.input_size());
    for (NoiseKind k : {NoiseKind::Uniform, NoiseKind::Bernoulli, NoiseKind::Gaussian})
      check_end_to_end(net, x, {}, {k});
  }
}

TEST(ProvenEndToEnd, FullCovarianceKeepsTheClaimedProbability) {
  const Network net = random_network(Family::Mlp, ActKind::Relu, 17);
  const int64_t d = net.input_size();
  const std::vector<double> x = random_inputs(40, 3, d);
  EndToEnd e{NoiseKind::Gaussian};
  std::tie(e.covariance, e.chol) = correlated_covariance(d, 21);
  check_end_to_end(net, x, {}, e);
}

/// The first `count` reference images of a model and their labels.
std::pair<std::vector<double>, std::vector<int64_t>> reference_images(const std::string& stem, int64_t count) {
  return {fixture_inputs(stem, 0, count), fixture_labels(stem, count)};
}

TEST(ProvenEndToEnd, ShippedModelKeepsTheClaimedProbability) {
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string());
  const auto [x, labels] = reference_images("mnist_cnn_3layer_5_3", 2);
  const std::vector<double> x1(x.begin(), x.begin() + net.input_size());
  const std::vector<int64_t> label1(labels.begin(), labels.begin() + 1);
  // the default confidence 0.9999 with 10^5 draws (≈ 10 failures allowed on average)
  check_end_to_end(net, x1, label1, {NoiseKind::Uniform, 0.9999, 100000});
  check_end_to_end(net, x, labels, {NoiseKind::Gaussian, 0.999, 10000});
  check_end_to_end(net, x, labels, {NoiseKind::Bernoulli, 0.999, 10000, "adaptive", TargetMode::Random});
}

TEST(ProvenEndToEnd, EveryMethodKeepsTheClaimedProbability) {
  const Network relu = import_onnx((source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string());
  const auto [x, labels] = reference_images("mnist_cnn_3layer_5_3", 1);
  for (const char* m : {"fastlin", "adaptive"})
    check_end_to_end(relu, x, labels, {NoiseKind::Uniform, 0.999, 10000, m, TargetMode::Random});
  const Network sig = import_onnx((source_dir() / "models/mnist_cnn_4layer_5_3_sigmoid.onnx").string());
  const auto [xs, ls] = reference_images("mnist_cnn_4layer_5_3_sigmoid", 1);
  for (const char* m : {"cnncert", "deepcert", "crown"})
    check_end_to_end(sig, xs, ls, {NoiseKind::Uniform, 0.999, 10000, m, TargetMode::Random});
}

TEST(ProvenEndToEnd, RealNetworksKeepTheClaimedProbability) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const auto nets = shared_data() / "nets";
  struct Case {
    const char* stem;
    const char* method;
  };
  for (const Case c : {Case{"mnist_verivital_convnet_maxpool", "adaptive"}, Case{"cifar_oval21_base_kw", "adaptive"},
                       Case{"mnist_eran_sigmoid_6x200", "crown"}}) {
    SCOPED_TRACE(c.stem);
    const Network net = import_onnx((nets / (std::string(c.stem) + ".onnx")).string());
    const auto [x, labels] = reference_images(c.stem, 2);
    check_end_to_end(net, x, labels, {NoiseKind::Uniform, 0.999, 10000, c.method, TargetMode::Random});
  }
}

TEST(Proven, FailureBoundFailsClosedWithoutLinearBounds) {
  const Network net = random_network(Family::Mlp, ActKind::Relu, 1);
  auto engine = make_cpu_engine(net, 1);
  BoundProblem p;
  p.x0 = random_input(1, net.input_size());
  p.eps = 0.1;
  p.rows = 1;
  p.spec.assign(static_cast<size_t>(net.output_size()), 0.0);
  p.spec[0] = -1;  // −logit 0: positive at x0 (μ > 0) and not proven positive on the box
  BoundOptions o;
  const auto plain = engine->bound({p}, o);
  EXPECT_TRUE(std::isnan(proven_failure_bound(p, plain[0], {}, 0.1)));  // no linear bounds kept
  o.want_linear = true;
  const auto lin = engine->bound({p}, o);
  // the Hoeffding bound of the row, from its linear bound (0 where the worst case is positive)
  double mu = lin[0].b_lower[0], l2 = 0;
  for (size_t i = 0; i < p.x0.size(); ++i)
    mu += lin[0].a_lower[i] * p.x0[i], l2 += lin[0].a_lower[i] * lin[0].a_lower[i];
  ASSERT_LE(lin[0].lower[0], 0.0);  // else the bound is 0 without Hoeffding: the check below would not exercise it
  const double expected = hoeffding_failure(mu, std::sqrt(l2), 0.1, false);
  EXPECT_DOUBLE_EQ(proven_failure_bound(p, lin[0], {}, 0.1), expected);
  EXPECT_LT(expected, 1.0) << "mu " << mu;  // the exponential branch, not the mu <= 0 one
  // a smaller level lies inside the box, and its bound is no larger
  const double smaller = proven_failure_bound(p, lin[0], {}, 0.05);
  EXPECT_FALSE(std::isnan(smaller));
  EXPECT_LE(smaller, expected);
  // fail closed: noise beyond the box the bounds hold on, a NaN level, missing lower bounds,
  // a covariance that does not fit
  EXPECT_TRUE(std::isnan(proven_failure_bound(p, lin[0], {}, 0.2)));
  EXPECT_TRUE(std::isnan(proven_failure_bound(p, lin[0], {}, std::nan(""))));
  BoundResult shortened = lin[0];
  shortened.lower.clear();
  EXPECT_TRUE(std::isnan(proven_failure_bound(p, shortened, {}, 0.1)));
  NoiseModel bad;
  bad.kind = NoiseKind::Gaussian;
  bad.covariance = {1.0, 2.0, 3.0};
  EXPECT_TRUE(std::isnan(proven_failure_bound(p, lin[0], bad, 0.001)));
}

TEST(Proven, GaussianBoundIsExactOnALinearNetworkWithAFullCovariance) {
  // Without activations the linear bound is the margin itself, so Φ(−μ/s) with s² = σ²·wᵀΣw is
  // the exact failure probability; the bound adds only the box tail (≤ δ/2). A correlated Σ
  // makes s differ from what the diagonal alone would give.
  std::mt19937_64 rng(12);
  const int64_t d = 16;
  NetworkBuilder b;
  const int x = b.input({1, 4, 4});
  const Network net = b.build(b.dense(b.reshape(x, {d}), random_dense(rng, d, 3)));
  const auto [cov, l] = correlated_covariance(d, 31);
  BoundProblem p;
  p.x0 = random_input(5, d);
  const auto y0 = net.forward(p.x0.data(), 1);
  const int64_t c = std::max_element(y0.begin(), y0.end()) - y0.begin(), t = (c + 1) % 3;
  p.rows = 1;
  p.spec = margin_spec(3, c, {t});
  // w = Wᵀ(e_c − e_t), μ = g(x0), and the level σ with Φ(−μ/s) = Φ(−2)
  const DenseAttr& dense = net.nodes().back().as<DenseAttr>();
  std::vector<double> w(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i)
    w[static_cast<size_t>(i)] =
        dense.weight[static_cast<size_t>(c * d + i)] - dense.weight[static_cast<size_t>(t * d + i)];
  double wsw = 0, wdw = 0;
  for (int64_t i = 0; i < d; ++i) {
    wdw += w[static_cast<size_t>(i)] * w[static_cast<size_t>(i)] * cov[static_cast<size_t>(i * d + i)];
    for (int64_t j = 0; j < d; ++j)
      wsw += w[static_cast<size_t>(i)] * cov[static_cast<size_t>(i * d + j)] * w[static_cast<size_t>(j)];
  }
  const double mu = y0[static_cast<size_t>(c)] - y0[static_cast<size_t>(t)], sigma = mu / (2.0 * std::sqrt(wsw));
  const double exact = normal_cdf(-2.0);
  ASSERT_GT(std::fabs(std::sqrt(wdw / wsw) - 1), 0.2);  // the off-diagonal terms matter here
  NoiseModel noise;
  noise.kind = NoiseKind::Gaussian;
  noise.covariance = cov;
  auto engine = make_cpu_engine(net, 1);
  const double confidence = 0.999;
  const double bound = proven_failure_bounds(net, *engine, {p}, noise, sigma, confidence, BoundOptions{})[0];
  EXPECT_GE(bound, exact - 1e-12);
  EXPECT_LE(bound, exact + (1 - confidence) / 2 + 1e-12);
  // and sampling X = x0 + σ·L·z agrees with the exact value
  const double rate = mc_failure_rate(net, p.x0, c, t, NoiseKind::Gaussian, sigma, 100000, 8, l);
  EXPECT_NEAR(rate, exact, 4 * std::sqrt(exact * (1 - exact) / 100000));
}

TEST(Proven, BadOptionsAreRejected) {
  const Network net = random_network(Family::Mlp, ActKind::Relu, 1);
  auto engine = make_cpu_engine(net, 1);
  const auto x = random_input(1, net.input_size());
  ProvenOptions po;
  for (double c : {0.0, 1.0, -0.5, 2.0, std::nan("")}) {
    po.confidence = c;
    EXPECT_THROW(proven_certify(net, *engine, x, {}, po), InvalidArgument) << c;
  }
  po.confidence = 0.99;
  po.noise.kind = NoiseKind::Gaussian;
  po.noise.covariance = {1.0, 2.0};  // wrong size
  EXPECT_THROW(proven_certify(net, *engine, x, {}, po), InvalidArgument);
  EXPECT_THROW(parse_noise("laplace"), InvalidArgument);
}

}  // namespace
}  // namespace cnncert::test
