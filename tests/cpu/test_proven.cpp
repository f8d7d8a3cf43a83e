// PROVEN: probability formulas against exact and Monte Carlo values, the Gaussian region, and
// end-to-end Monte Carlo checks of reported noise levels.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/proven.hpp"
#include "net_factory.hpp"
#include "npy.hpp"
#include "test_util.hpp"

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

TEST(Proven, CovarianceValidation) {
  EXPECT_NO_THROW(validate_covariance({1, 0.5, 0.5, 1}, 2, "cov.npy"));
  EXPECT_NO_THROW(validate_covariance({1, 1, 1, 1}, 2, "cov.npy"));  // singular but PSD
  EXPECT_THROW(validate_covariance({1, 2, 2, 1}, 2, "cov.npy"), InvalidArgument);       // eigenvalue −1
  EXPECT_THROW(validate_covariance({1, 0.5, 0.4, 1}, 2, "cov.npy"), InvalidArgument);   // not symmetric
  EXPECT_THROW(validate_covariance({1, 1, 1}, 2, "cov.npy"), InvalidArgument);          // wrong size
  EXPECT_THROW(validate_covariance({1, -1}, 2, "cov.npy"), InvalidArgument);            // negative variance
  EXPECT_THROW(validate_covariance({1, std::nan("")}, 2, "cov.npy"), InvalidArgument);
  try {
    validate_covariance({1, 2, 2, 1}, 2, "cov.npy");
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("cov.npy"), std::string::npos);
  }
}

/// Monte Carlo misclassification rate of the network under the noise at `level` around x0.
double mc_error_rate(const Network& net, const std::vector<double>& x0, int64_t c, NoiseKind kind, double level, int n,
                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-level, level);
  std::normal_distribution<double> g(0.0, level);
  std::bernoulli_distribution coin(0.5);
  const int64_t d = net.input_size(), k = net.output_size();
  const int batch = 500;
  std::vector<double> xs(static_cast<size_t>(batch * d));
  int errors = 0;
  for (int done = 0; done < n; done += batch) {
    for (int b = 0; b < batch; ++b)
      for (int64_t i = 0; i < d; ++i) {
        const double z = kind == NoiseKind::Gaussian ? g(rng) : kind == NoiseKind::Bernoulli ? (coin(rng) ? level : -level) : u(rng);
        xs[static_cast<size_t>(b * d + i)] = x0[static_cast<size_t>(i)] + z;
      }
    const auto y = net.forward(xs.data(), batch);
    for (int b = 0; b < batch; ++b) {
      const double* row = y.data() + b * k;
      errors += (std::max_element(row, row + k) - row) != c;
    }
  }
  return static_cast<double>(errors) / n;
}

void check_end_to_end(const Network& net, const std::vector<double>& x, const std::vector<int64_t>& labels, NoiseKind kind,
                      double confidence, int draws) {
  SCOPED_TRACE(noise_name(kind));
  auto engine = make_cpu_engine(net);
  ProvenOptions po;
  po.noise.kind = kind;
  po.confidence = confidence;
  po.base.target = TargetMode::Untargeted;  // top-1: the probability of keeping the class
  const auto run = proven_certify(net, *engine, x, labels, po);
  int checked = 0;
  for (const auto& im : run.images) {
    if (im.skipped) continue;
    const auto& t = im.targets[0];
    if (kind != NoiseKind::Gaussian) EXPECT_GE(t.noise, t.worst_case) << "image " << im.image;
    if (t.noise <= 0) continue;
    const int64_t n = net.input_size();
    const std::vector<double> x0(x.begin() + im.image * n, x.begin() + (im.image + 1) * n);
    const double rate = mc_error_rate(net, x0, im.predicted, kind, t.noise, draws, 11 + static_cast<uint64_t>(im.image));
    const double delta = 1 - confidence;
    // a binomial count above δ·n by more than 5 standard deviations would refute the claim
    EXPECT_LE(rate, delta + 5 * std::sqrt(delta / draws)) << "image " << im.image << " level " << t.noise;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(ProvenEndToEnd, RandomNetworksKeepTheClaimedProbability) {
  for (Family f : {Family::Mlp, Family::CnnMaxPool}) {
    SCOPED_TRACE(family_name(f));
    const Network net = random_network(f, ActKind::Relu, 17);
    std::vector<double> x;
    for (uint64_t s = 0; s < 3; ++s) {
      const auto v = random_input(40 + s, net.input_size());
      x.insert(x.end(), v.begin(), v.end());
    }
    for (NoiseKind k : {NoiseKind::Uniform, NoiseKind::Bernoulli, NoiseKind::Gaussian})
      check_end_to_end(net, x, {}, k, 0.99, 20000);
  }
}

TEST(ProvenEndToEnd, ShippedModelKeepsTheClaimedProbability) {
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string());
  const auto in = detail::read_npy((source_dir() / "tests/fixtures/reference/mnist_cnn_3layer_5_3.input.npy").string());
  const auto lab = detail::read_npy((source_dir() / "tests/fixtures/reference/mnist_cnn_3layer_5_3.labels.npy").string());
  const int64_t n = net.input_size();
  std::vector<double> x(in.data.begin(), in.data.begin() + 2 * n);
  std::vector<int64_t> labels(lab.data.begin(), lab.data.begin() + 2);
  check_end_to_end(net, x, labels, NoiseKind::Uniform, 0.999, 10000);
  check_end_to_end(net, x, labels, NoiseKind::Gaussian, 0.999, 10000);
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
