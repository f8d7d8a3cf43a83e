// Baselines of MATH.md §5: global Lipschitz certificate (hand-computed values, soundness by
// sampling and gradients), attacks (closed-form minimal distortions, the shipped model), CLEVER
// (ball samplers, reverse Weibull MLE, linear networks).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>

#include "cnncert/baselines.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "common/net_factory.hpp"
#include "common/test_util.hpp"
#include "io/npy.hpp"

namespace cnncert {
namespace {

using test::Family;

/// Relative tolerance for values computed exactly up to double rounding.
constexpr double kExact = 1e-9;

double margin(const Network& net, const std::vector<double>& x, int64_t c, int64_t t) {
  const auto y = net.forward(x.data(), 1);
  if (t >= 0) return y[static_cast<size_t>(c)] - y[static_cast<size_t>(t)];
  double m = std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < y.size(); ++j)
    if (static_cast<int64_t>(j) != c) m = std::min(m, y[static_cast<size_t>(c)] - y[j]);
  return m;
}

int64_t argmax(const std::vector<double>& y) {
  return static_cast<int64_t>(std::max_element(y.begin(), y.end()) - y.begin());
}

/// input {d} → Dense(W: k×d, b).
Network linear_net(const std::vector<double>& w, const std::vector<double>& b, int64_t d) {
  NetworkBuilder nb;
  const int x = nb.input({d});
  DenseAttr a;
  a.in_features = d;
  a.out_features = static_cast<int64_t>(b.size());
  a.weight = w;
  a.bias = b;
  return nb.build(nb.dense(x, a));
}

/// 2 → Dense W1 → ReLU → Dense W2 → 2 with W1 = [[1, 2], [3, −1]], W2 = [[2, −1], [0.5, 1]].
Network tiny_mlp() {
  NetworkBuilder nb;
  const int x = nb.input({2});
  int h = nb.dense(x, DenseAttr{2, 2, {1, 2, 3, -1}, {0.5, -0.5}});
  h = nb.activation(h, ActKind::Relu);
  return nb.build(nb.dense(h, DenseAttr{2, 2, {2, -1, 0.5, 1}, {0, 0.1}}));
}

std::vector<Norm> all_norms() {
  return {Norm::Linf, Norm::L2, Norm::L1};
}

// ---------------------------------------------------------------------------------------------
// Global Lipschitz

TEST(BaselineLipschitz, HandComputedMlp) {
  const Network net = tiny_mlp();
  const std::vector<double> x0 = {1, 0.5};
  // h = [2.5, 2], logits = [3, 3.35]: c = 1, t = 0, margin 0.35, s = W2[1] − W2[0] = [−1.5, 2]
  const double sigma = std::sqrt((15 + std::sqrt(29.0)) / 2);  // ‖W1‖₂: λ_max([[10, −1], [−1, 5]])
  struct Case {
    Norm p;
    double w1_norm, spec_norm;
  };
  for (const Case& k : {Case{Norm::Linf, 4, 3.5}, Case{Norm::L1, 4, 2}, Case{Norm::L2, sigma, 2.5}}) {
    const auto r = global_lipschitz(net, x0, 1, 0, k.p);
    EXPECT_NEAR(r.margin, 0.35, 1e-12);
    EXPECT_EQ(r.spec_node, 2);  // the ReLU: the last Dense folds into s
    EXPECT_NEAR(r.spec_norm, k.spec_norm, 1e-12) << norm_name(k.p);
    EXPECT_NEAR(r.layers[1].factor, k.w1_norm, kExact * k.w1_norm) << norm_name(k.p) << " " << r.layers[1].method;
    EXPECT_NEAR(r.radius, 0.35 / (k.spec_norm * k.w1_norm), 3 * kExact * r.radius) << norm_name(k.p);
    EXPECT_DOUBLE_EQ(global_lipschitz_radius(net, x0, 1, 0, k.p), r.radius);
    // untargeted with two classes is the same target
    EXPECT_DOUBLE_EQ(global_lipschitz(net, x0, 1, -1, k.p).radius, r.radius);
  }
  EXPECT_EQ(global_lipschitz(net, x0, 1, 0, Norm::L2).layers[1].method, "jacobi");
  // misclassified point: radius 0
  EXPECT_EQ(global_lipschitz(net, x0, 0, 1, Norm::Linf).radius, 0.0);
}

TEST(BaselineLipschitz, ActivationSlopes) {
  // 1 → Dense(3) → act → Dense(2): L(g) = |w2_0 − w2_1| · slope · 3
  for (auto [act, slope] : {std::pair{ActKind::Relu, 1.0},
                            {ActKind::Sigmoid, 0.25},
                            {ActKind::Tanh, 1.0},
                            {ActKind::Atan, 1.0},
                            {ActKind::LeakyRelu, 1.0}}) {
    NetworkBuilder nb;
    const int x = nb.input({1});
    int h = nb.activation(nb.dense(x, DenseAttr{1, 1, {3}, {0.2}}), act, 0.1);
    const Network net = nb.build(nb.dense(h, DenseAttr{2, 1, {2, -0.5}, {0, 0}}));
    for (Norm p : all_norms()) {
      const auto r = global_lipschitz(net, {0.3}, 0, 1, p);
      EXPECT_NEAR(r.lipschitz, 2.5 * slope * 3, 1e-12) << act_name(act) << " " << norm_name(p);
    }
  }
  // leaky ReLU with a slope above 1
  NetworkBuilder nb;
  const int x = nb.input({1});
  const Network net = nb.build(nb.dense(nb.activation(x, ActKind::LeakyRelu, -2.0), DenseAttr{2, 1, {1, 0}, {0, 0}}));
  EXPECT_DOUBLE_EQ(global_lipschitz(net, {1.0}, 0, 1, Norm::Linf).lipschitz, 2.0);
}

TEST(BaselineLipschitz, ConvolutionNorms) {
  // 2×2 kernel on a 3×3 input: every output row holds the whole kernel, the centre input lies in
  // all four windows, so ‖A‖_∞ = ‖A‖_1 = Σ|w| = 6.5.
  NetworkBuilder nb;
  const int x = nb.input({1, 3, 3});
  ConvAttr c;
  c.out_channels = c.in_channels = 1;
  c.kernel_h = c.kernel_w = 2;
  c.weight = {1, -2, 3, 0.5};
  c.bias = {0.3};
  const int h = nb.conv(x, c);
  const Network net = nb.build(
      nb.dense(nb.reshape(nb.activation(h, ActKind::Relu), {4}), DenseAttr{2, 4, {1, 0, 0, 1, 0, 1, 1, 0}, {0, 0}}));
  const auto li = lipschitz_norms(net, Norm::Linf), l1 = lipschitz_norms(net, Norm::L1),
             l2 = lipschitz_norms(net, Norm::L2);
  EXPECT_DOUBLE_EQ(li.nodes[1].factor, 6.5);
  EXPECT_DOUBLE_EQ(l1.nodes[1].factor, 6.5);
  // ℓ2 against the dense matrix: σ² = λ_max(AAᵀ) by a long power iteration here
  std::vector<double> a(4 * 9);
  for (int j = 0; j < 9; ++j) {
    std::vector<double> e(9, 0.0);
    e[static_cast<size_t>(j)] = 1;
    const auto v = net.forward_all(e.data(), 1)[1];
    for (int i = 0; i < 4; ++i) a[static_cast<size_t>(i * 9 + j)] = v[static_cast<size_t>(i)] - 0.3;
  }
  std::vector<double> g(16, 0.0), u(4, 1.0);
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 9; ++j)
        g[static_cast<size_t>(i * 4 + k)] += a[static_cast<size_t>(i * 9 + j)] * a[static_cast<size_t>(k * 9 + j)];
  double lambda = 0;
  for (int it = 0; it < 20000; ++it) {
    std::vector<double> w(4, 0.0);
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 4; ++k)
        w[static_cast<size_t>(i)] += g[static_cast<size_t>(i * 4 + k)] * u[static_cast<size_t>(k)];
    lambda = lp_norm(w, Norm::L2) / lp_norm(u, Norm::L2);
    u = w;
    for (double& v : u) v /= lp_norm(w, Norm::L2);
  }
  EXPECT_EQ(l2.nodes[1].method, "jacobi");
  EXPECT_NEAR(l2.nodes[1].factor, std::sqrt(lambda), 1e-10 * std::sqrt(lambda));
  EXPECT_LT(l2.nodes[1].factor, 6.5);
}

TEST(BaselineLipschitz, PowerIterationIsAnUpperBound) {
  // a conv layer 1×8×8 → 3×6×6 (min dimension 64): the forced power-iteration bound against the exact one
  std::mt19937_64 rng(7);
  NetworkBuilder nb;
  const int x = nb.input({1, 8, 8});
  const int h = nb.activation(nb.conv(x, test::random_conv(rng, 1, 3, 3)), ActKind::Relu);
  const Network net = nb.build(nb.dense(nb.reshape(h, {108}), test::random_dense(rng, 108, 3)));
  LipschitzOptions power;
  power.exact_max_dim = 0;
  power.power_iterations = 300;
  const auto exact = lipschitz_norms(net, Norm::L2).nodes[1];
  const auto pw = lipschitz_norms(net, Norm::L2, power).nodes[1];
  ASSERT_EQ(exact.method, "jacobi");
  ASSERT_EQ(pw.method, "power");
  EXPECT_LE(pw.estimate, exact.factor * (1 + 1e-12));
  EXPECT_GT(pw.estimate, exact.factor * 0.999);  // converged
  EXPECT_GE(pw.factor, exact.factor);
  EXPECT_LT(pw.factor, exact.factor * 1.05);  // the probabilistic inflation for k = 300, n = 64
  // more iterations: a smaller inflation
  power.power_iterations = 3000;
  const auto pw2 = lipschitz_norms(net, Norm::L2, power).nodes[1];
  EXPECT_GE(pw2.factor, exact.factor);
  EXPECT_LT(pw2.factor, pw.factor);
}

TEST(BaselineLipschitz, OverlappingMaxPool) {
  // 2×2 max-pool with stride 1 on 3×3: the centre lies in 4 windows: factor 1 (ℓ∞), 2 (ℓ2), 4 (ℓ1)
  NetworkBuilder nb;
  const int x = nb.input({1, 3, 3});
  PoolAttr p;
  p.kernel_h = p.kernel_w = 2;
  const int mp = nb.max_pool(x, p);
  const Network net = nb.build(nb.dense(nb.reshape(mp, {4}), DenseAttr{2, 4, {1, 1, 1, 1, 0, 0, 0, 0}, {0, 0}}));
  const double expected[] = {1, 2, 4};
  const auto norms = all_norms();
  for (size_t i = 0; i < 3; ++i) {
    const auto r = lipschitz_norms(net, norms[i]);
    EXPECT_EQ(r.nodes[1].factor, expected[i]) << norm_name(norms[i]);
  }
  // attained: the centre is the maximum of every window; moving it by δ moves all four outputs
  std::vector<double> xa = {0, 0, 0, 0, 1, 0, 0, 0, 0}, xb = xa;
  xb[4] += 0.5;
  const auto ya = net.forward_all(xa.data(), 1)[1], yb = net.forward_all(xb.data(), 1)[1];
  std::vector<double> dy(4), dx(9, 0.0);
  for (size_t i = 0; i < 4; ++i) dy[i] = yb[i] - ya[i];
  dx[4] = 0.5;
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(lp_norm(dy, norms[i]) / lp_norm(dx, norms[i]), expected[i], 1e-12);
  // non-overlapping windows are 1-Lipschitz for every p
  NetworkBuilder nb2;
  const int x2 = nb2.input({1, 4, 4});
  p.stride_h = p.stride_w = 2;
  const Network net2 =
      nb2.build(nb2.dense(nb2.reshape(nb2.max_pool(x2, p), {4}), DenseAttr{2, 4, std::vector<double>(8, 1.0), {0, 0}}));
  for (Norm q : all_norms()) EXPECT_EQ(lipschitz_norms(net2, q).nodes[1].factor, 1.0);
}

TEST(BaselineLipschitz, ResidualConstantsAdd) {
  // y = x + W x (W = [[1, 2], [3, −1]]): L(add) = 1 + ‖W‖_p
  NetworkBuilder nb;
  const int x = nb.input({2});
  const int h = nb.dense(x, DenseAttr{2, 2, {1, 2, 3, -1}, {0, 0}});
  const int s = nb.add(x, nb.activation(h, ActKind::Relu));
  const Network net = nb.build(nb.dense(nb.activation(s, ActKind::Relu), DenseAttr{2, 2, {1, 0, 0, 1}, {0, 0}}));
  const double sigma = std::sqrt((15 + std::sqrt(29.0)) / 2);
  EXPECT_DOUBLE_EQ(lipschitz_norms(net, Norm::Linf).nodes[3].lipschitz, 5.0);
  EXPECT_DOUBLE_EQ(lipschitz_norms(net, Norm::L1).nodes[3].lipschitz, 5.0);
  EXPECT_NEAR(lipschitz_norms(net, Norm::L2).nodes[3].lipschitz, 1 + sigma, kExact);
  const auto r = global_lipschitz(net, {1.0, 0.2}, 0, 1, Norm::Linf);
  EXPECT_EQ(r.spec_node, 4);
  EXPECT_NEAR(r.lipschitz, 2 * 5.0, 1e-12);  // ‖e_0 − e_1‖_1 · 5
}

TEST(BaselineLipschitz, LinearNetworkIsTight) {
  // no non-linearity: the chain folds to s = w_c − w_t on the input and radius = margin/‖s‖_q exactly
  std::mt19937_64 rng(3);
  const auto w = test::randn(rng, 3 * 10, 1.0);
  const Network net = linear_net(w, {0.5, 0.1, -0.2}, 10);
  const auto x0 = test::random_input(5, 10);
  const auto y = net.forward(x0.data(), 1);
  const int64_t c = argmax(y);
  for (Norm p : all_norms())
    for (int64_t t = 0; t < 3; ++t) {
      if (t == c) continue;
      std::vector<double> s(10);
      for (size_t i = 0; i < 10; ++i) s[i] = w[static_cast<size_t>(c) * 10 + i] - w[static_cast<size_t>(t) * 10 + i];
      const auto r = global_lipschitz(net, x0, c, t, p);
      EXPECT_EQ(r.spec_node, 0);
      const double expect = (y[static_cast<size_t>(c)] - y[static_cast<size_t>(t)]) / lp_norm(s, dual_norm(p));
      EXPECT_NEAR(r.radius, expect, 1e-8 * expect);
      EXPECT_LE(r.radius, expect);
    }
}

/// Soundness of the certificate on random networks: the prediction never flips at sampled points
/// of the certified ball (boundary and interior, and the ends of PGD runs inside it), every
/// sampled gradient norm is below the Lipschitz constant, and attacks never beat the radius.
TEST(BaselineLipschitz, SoundOnRandomNetworks) {
  uint64_t seed = 100;
  for (Family f : {Family::Mlp, Family::Cnn, Family::CnnMaxPool, Family::CnnAvgPoolPadded, Family::Residual,
                   Family::BatchNormStrided})
    for (ActKind act : {ActKind::Relu, ActKind::Sigmoid, ActKind::Tanh}) {
      ++seed;
      const Network net = test::random_network(f, act, seed);
      const auto x0 = test::random_input(seed + 1000, net.input_size());
      const auto y = net.forward(x0.data(), 1);
      const int64_t c = argmax(y);
      const int64_t t = (c + 1 + static_cast<int64_t>(seed % 3)) % net.output_size();
      for (Norm p : all_norms()) {
        const auto r = global_lipschitz(net, x0, c, t, p);
        const std::string what = std::string(test::family_name(f)) + "/" + act_name(act) + "/" + norm_name(p) +
                                 " seed " + std::to_string(seed);
        ASSERT_GT(r.radius, 0) << what;
        ASSERT_TRUE(std::isfinite(r.radius)) << what;
        // points in the closed ball: half on its boundary
        const auto off = sample_uniform_ball(p, net.input_size(), r.radius, 200, seed);
        for (int s = 0; s < 200; ++s) {
          std::vector<double> xs(x0);
          double nrm = lp_norm(off.data() + s * net.input_size(), net.input_size(), p);
          const double scale = (s % 2 && nrm > 0) ? r.radius / nrm : 1.0;
          for (int64_t i = 0; i < net.input_size(); ++i)
            xs[static_cast<size_t>(i)] += scale * off[static_cast<size_t>(s * net.input_size() + i)];
          EXPECT_GT(margin(net, xs, c, t), 0) << what << " sample " << s;
        }
        // untargeted: the smallest radius over the targets, and no class wins inside it
        const auto ru = global_lipschitz(net, x0, c, -1, p);
        EXPECT_LE(ru.radius, r.radius) << what;
        const auto offu = sample_uniform_ball(p, net.input_size(), ru.radius, 50, seed + 3);
        for (int s = 0; s < 50; ++s) {
          std::vector<double> xs(x0);
          for (int64_t i = 0; i < net.input_size(); ++i)
            xs[static_cast<size_t>(i)] += offu[static_cast<size_t>(s * net.input_size() + i)];
          EXPECT_GT(margin(net, xs, c, -1), 0) << what << " untargeted sample " << s;
        }
        // gradient norms below the constant at random points further out
        std::vector<double> sg(static_cast<size_t>(net.output_size()), 0.0);
        sg[static_cast<size_t>(c)] = 1;
        sg[static_cast<size_t>(t)] = -1;
        const auto far = sample_uniform_ball(p, net.input_size(), 1.0, 30, seed + 7);
        for (int s = 0; s < 30; ++s) {
          std::vector<double> xs(x0);
          for (int64_t i = 0; i < net.input_size(); ++i)
            xs[static_cast<size_t>(i)] += far[static_cast<size_t>(s * net.input_size() + i)];
          EXPECT_LE(lp_norm(net.input_gradient(xs.data(), sg.data()), dual_norm(p)), r.lipschitz * (1 + 1e-9)) << what;
        }
        // the attack's distortion is an upper bound on the minimal one, the radius a lower bound
        AttackOptions ao;
        ao.pgd_steps = 20;
        ao.pgd_bisection_steps = 6;
        ao.pgd_restarts = 1;
        const auto a = pgd_attack(net, x0, c, t, p, ao);
        if (a.found) EXPECT_GE(a.distortion, r.radius) << what;
      }
    }
}

/// Real networks of ../shared/data (when present): the ℓ∞ global Lipschitz certificate lies below
/// a PGD attack's distortion, and no sampled gradient norm exceeds its Lipschitz constant
/// (residual, sigmoid and convolutional architectures).
TEST(BaselineLipschitz, RealNetworksBelowAttacks) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const auto ref = test::source_dir() / "tests/fixtures/reference";
  for (const std::string stem : {"mnist_fc_256x2", "mnist_eran_sigmoid_6x200", "mnist_colt_convmed_0.1",
                                 "cifar_oval21_base_kw", "cifar_resnet_2b"}) {
    const Network net = import_onnx((test::shared_data() / "nets" / (stem + ".onnx")).string());
    const auto images = detail::read_npy((ref / (stem + ".input.npy")).string());
    const std::vector<double> x0(images.data.begin(), images.data.begin() + net.input_size());
    const int64_t c = argmax(net.forward(x0.data(), 1));
    const auto lip = global_lipschitz(net, x0, c, -1, Norm::Linf);
    AttackOptions o;
    o.pgd_steps = 20;
    o.pgd_restarts = 1;
    o.pgd_bisection_steps = 6;
    const auto a = pgd_attack(net, x0, c, -1, Norm::Linf, o);
    ASSERT_TRUE(a.found) << stem;
    EXPECT_LT(lip.radius, a.distortion) << stem;
    std::vector<double> s(static_cast<size_t>(net.output_size()), 0.0);
    s[static_cast<size_t>(c)] = 1;
    s[static_cast<size_t>(lip.target)] = -1;
    const auto off = sample_uniform_ball(Norm::Linf, net.input_size(), 0.1, 5, 77);
    for (int k = 0; k < 5; ++k) {
      std::vector<double> x(x0);
      for (size_t i = 0; i < x.size(); ++i) x[i] += off[static_cast<size_t>(k) * x.size() + i];
      EXPECT_LE(lp_norm(net.input_gradient(x.data(), s.data()), Norm::L1), lip.lipschitz) << stem;
    }
    std::cout << "[ real ] " << stem << ": linf Lipschitz " << lip.radius << ", PGD " << a.distortion << "\n";
  }
}

TEST(BaselineLipschitz, BadArguments) {
  const Network net = tiny_mlp();
  EXPECT_THROW(global_lipschitz_radius(net, {1.0}, 0, 1, Norm::L2), InvalidArgument);
  EXPECT_THROW(global_lipschitz_radius(net, {1.0, 0.5}, 2, 1, Norm::L2), InvalidArgument);
  EXPECT_THROW(global_lipschitz_radius(net, {1.0, 0.5}, 1, 1, Norm::L2), InvalidArgument);
  EXPECT_THROW(global_lipschitz_radius(net, {1.0, 0.5}, 1, -2, Norm::L2), InvalidArgument);
  EXPECT_THROW(global_lipschitz_radius(net, {1.0, NAN}, 1, 0, Norm::L2), InvalidArgument);
  LipschitzOptions o;
  o.exact_max_dim = 0;
  o.power_iterations = 0;
  EXPECT_THROW(lipschitz_norms(net, Norm::L2, o), InvalidArgument);
  const auto norms = lipschitz_norms(test::random_network(Family::Mlp, ActKind::Relu, 1), Norm::L2);
  EXPECT_THROW(global_lipschitz(net, norms, {1.0, 0.5}, 1, 0), InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Attacks

struct LinearCase {
  Network net;
  std::vector<double> x0;
  int64_t c = 0, t = 1;
  std::vector<double> s;  // w_c − w_t
  double margin = 0;
};

LinearCase linear_case(uint64_t seed, int64_t d) {
  std::mt19937_64 rng(seed);
  LinearCase k;
  const auto w = test::randn(rng, static_cast<size_t>(2 * d), 1.0);
  k.x0 = test::random_input(seed + 1, d);
  k.net = linear_net(w, {0, 0}, d);
  const auto y = k.net.forward(k.x0.data(), 1);
  k.c = y[0] > y[1] ? 0 : 1;
  k.t = 1 - k.c;
  k.margin = y[static_cast<size_t>(k.c)] - y[static_cast<size_t>(k.t)];
  k.s.resize(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i)
    k.s[static_cast<size_t>(i)] = w[static_cast<size_t>(k.c * d + i)] - w[static_cast<size_t>(k.t * d + i)];
  return k;
}

void expect_adversarial(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                        const AttackResult& a, const std::string& what) {
  ASSERT_TRUE(a.found) << what;
  ASSERT_EQ(a.x.size(), x0.size()) << what;
  EXPECT_LE(margin(net, a.x, c, t), 0) << what;  // really flips
  EXPECT_NEAR(a.distortion, lp_distance(a.x, x0, p), 1e-12) << what;
  EXPECT_LE(a.margin, 0) << what;
}

TEST(BaselineAttack, LinearNetworkClosedForm) {
  for (uint64_t seed : {11, 12, 13}) {
    const LinearCase k = linear_case(seed, 20);
    for (Norm p : all_norms()) {
      const double exact = k.margin / lp_norm(k.s, dual_norm(p));
      const std::string what = std::string(norm_name(p)) + " seed " + std::to_string(seed);
      const auto a = pgd_attack(k.net, k.x0, k.c, k.t, p);
      expect_adversarial(k.net, k.x0, k.c, k.t, p, a, what);
      EXPECT_GE(a.distortion, exact * (1 - 1e-9)) << what;  // cannot beat the minimum
      EXPECT_LE(a.distortion, exact * 1.02) << what;
      EXPECT_EQ(a.target, k.t);
      const auto u = pgd_attack(k.net, k.x0, k.c, -1, p);
      expect_adversarial(k.net, k.x0, k.c, -1, p, u, what + " untargeted");
      EXPECT_LE(u.distortion, exact * 1.02) << what;
    }
    const double exact2 = k.margin / lp_norm(k.s, Norm::L2);
    const auto cw = cw_l2_attack(k.net, k.x0, k.c, k.t);
    expect_adversarial(k.net, k.x0, k.c, k.t, Norm::L2, cw, "cw seed " + std::to_string(seed));
    EXPECT_GE(cw.distortion, exact2 * (1 - 1e-9));
    EXPECT_LE(cw.distortion, exact2 * 1.02);
  }
}

TEST(BaselineAttack, BoxConstrainedClosedForm) {
  // g(x) = x1 + x2 − 0.05 at x0 = (0.05, 0.5) in [0, 1]²: the box stops x1 at 0, so the minimal
  // distortions are ℓ∞ 0.45 (unconstrained 0.25) and ℓ2 sqrt(0.05² + 0.45²) (unconstrained 0.354).
  const Network net = linear_net({1, 1, 0, 0}, {-0.05, 0}, 2);
  const std::vector<double> x0 = {0.05, 0.5};
  AttackOptions o;
  o.clip_to_box = true;
  o.box_lo = 0;
  o.box_hi = 1;
  const auto li = pgd_attack(net, x0, 0, 1, Norm::Linf, o);
  expect_adversarial(net, x0, 0, 1, Norm::Linf, li, "linf");
  EXPECT_NEAR(li.distortion, 0.45, 0.45 * 0.02);
  const double l2 = std::sqrt(0.05 * 0.05 + 0.45 * 0.45);
  const auto p2 = pgd_attack(net, x0, 0, 1, Norm::L2, o);
  expect_adversarial(net, x0, 0, 1, Norm::L2, p2, "l2");
  EXPECT_NEAR(p2.distortion, l2, l2 * 0.02);
  const auto p1 = pgd_attack(net, x0, 0, 1, Norm::L1, o);  // x2 alone moves: ℓ1 0.5 as without the box
  expect_adversarial(net, x0, 0, 1, Norm::L1, p1, "l1");
  EXPECT_NEAR(p1.distortion, 0.5, 0.5 * 0.02);
  const auto cw = cw_l2_attack(net, x0, 0, 1, o);
  expect_adversarial(net, x0, 0, 1, Norm::L2, cw, "cw");
  EXPECT_NEAR(cw.distortion, l2, l2 * 0.02);
  for (const auto* a : {&li, &p2, &p1, &cw})
    for (double v : a->x) {
      EXPECT_GE(v, 0);
      EXPECT_LE(v, 1);
    }
  // unreachable inside the box: nothing found
  const Network far = linear_net({1, 1, 0, 0}, {0.5, 0}, 2);
  EXPECT_FALSE(pgd_attack(far, x0, 0, 1, Norm::Linf, o).found);
  EXPECT_FALSE(pgd_attack(far, x0, 0, 1, Norm::L1, o).found);
  o.cw_binary_steps = 3;
  o.cw_iterations = 100;
  const auto none = cw_l2_attack(far, x0, 0, 1, o);
  EXPECT_FALSE(none.found);
  EXPECT_TRUE(std::isinf(none.distortion));
}

TEST(BaselineAttack, DeterministicAndAlreadyAdversarial) {
  const Network net = test::random_network(Family::Cnn, ActKind::Relu, 5);
  const auto x0 = test::random_input(6, net.input_size());
  const int64_t c = argmax(net.forward(x0.data(), 1));
  AttackOptions o;
  o.seed = 42;
  o.pgd_restarts = 3;
  const auto a = pgd_attack(net, x0, c, -1, Norm::L2, o), b = pgd_attack(net, x0, c, -1, Norm::L2, o);
  ASSERT_TRUE(a.found);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.distortion, b.distortion);
  // a class that already wins: distortion 0 at x0
  const int64_t other = (c + 1) % net.output_size();
  const auto z = pgd_attack(net, x0, other, c, Norm::Linf);
  EXPECT_TRUE(z.found);
  EXPECT_EQ(z.distortion, 0.0);
  EXPECT_EQ(z.x, x0);
}

TEST(BaselineAttack, BadArguments) {
  const Network net = tiny_mlp();
  const std::vector<double> x0 = {1, 0.5};
  EXPECT_THROW(pgd_attack(net, {1.0}, 1, 0, Norm::L2), InvalidArgument);
  EXPECT_THROW(pgd_attack(net, x0, 1, 1, Norm::L2), InvalidArgument);
  EXPECT_THROW(cw_l2_attack(net, x0, 5, 0), InvalidArgument);
  AttackOptions o;
  o.pgd_steps = 0;
  EXPECT_THROW(pgd_attack(net, x0, 1, 0, Norm::L2, o), InvalidArgument);
  o = {};
  o.clip_to_box = true;  // x0 = (1, 0.5) lies in [0, 1]; a narrower box does not hold it
  o.box_hi = 0.9;
  EXPECT_THROW(pgd_attack(net, x0, 1, 0, Norm::Linf, o), InvalidArgument);
  o = {};
  o.cw_learning_rate = 0;
  EXPECT_THROW(cw_l2_attack(net, x0, 1, 0, o), InvalidArgument);
}

/// The shipped MNIST CNN, first test image: PGD finds an adversarial example within ℓ∞ 0.3 and
/// every certificate (global Lipschitz, CNN-Cert) lies below the attacks' distortions.
TEST(BaselineAttack, ShippedModel) {
  const auto dir = test::source_dir();
  const Network net = import_onnx((dir / "models/mnist_cnn_3layer_5_3.onnx").string());
  const std::vector<double> x0 = test::fixture_inputs("mnist_cnn_3layer_5_3", 0, 1);
  const int64_t label = test::fixture_labels("mnist_cnn_3layer_5_3", 1).at(0);
  ASSERT_EQ(argmax(net.forward(x0.data(), 1)), label);
  AttackOptions o;
  o.clip_to_box = true;
  o.box_lo = -0.5;
  o.box_hi = 0.5;
  o.pgd_steps = 30;
  o.pgd_bisection_steps = 8;
  const auto a = pgd_attack(net, x0, label, -1, Norm::Linf, o);
  expect_adversarial(net, x0, label, -1, Norm::Linf, a, "mnist linf");
  EXPECT_LE(a.distortion, 0.3);
  EXPECT_NE(argmax(net.forward(a.x.data(), 1)), label);
  for (double v : a.x) {
    EXPECT_GE(v, -0.5);
    EXPECT_LE(v, 0.5);
  }
  o.cw_iterations = 100;
  o.cw_binary_steps = 5;
  o.cw_learning_rate = 0.05;
  const auto cw = cw_l2_attack(net, x0, label, a.target, o);
  expect_adversarial(net, x0, label, a.target, Norm::L2, cw, "mnist cw");

  const auto lip_inf = global_lipschitz(net, x0, label, a.target, Norm::Linf);
  const auto lip_2 = global_lipschitz(net, x0, label, a.target, Norm::L2);
  EXPECT_LT(lip_inf.radius, a.distortion);
  EXPECT_LT(lip_2.radius, cw.distortion);
  // CNN-Cert's certified radius for the same target lies below the attacks too
  auto engine = make_cpu_engine(net, 2);
  CertifyOptions co;
  co.targets = {a.target};
  co.bound.norm = Norm::Linf;
  const auto cert_inf = certify(net, *engine, x0, {label}, co).at(0).targets.at(0).eps;
  co.bound.norm = Norm::L2;
  const auto cert_2 = certify(net, *engine, x0, {label}, co).at(0).targets.at(0).eps;
  EXPECT_LE(cert_inf, a.distortion);
  EXPECT_LE(cert_2, cw.distortion);
  EXPECT_LE(lip_inf.radius, cert_inf);
  std::cout << "[ shipped ] label " << label << " target " << a.target << ": linf PGD " << a.distortion << ", CNN-Cert "
            << cert_inf << ", Lipschitz " << lip_inf.radius << "; l2 CW " << cw.distortion << ", CNN-Cert " << cert_2
            << ", Lipschitz " << lip_2.radius << "\n";
}

// ---------------------------------------------------------------------------------------------
// CLEVER

TEST(BaselineClever, UniformBallSamplers) {
  // P(‖x‖ ≤ R/2) = 2^−d for a uniform point of any ball in R^d
  for (Norm p : all_norms())
    for (int64_t d : {2, 3}) {
      const int n = 20000;
      const auto v = sample_uniform_ball(p, d, 2.0, n, 9);
      int inner = 0;
      std::vector<double> mean(static_cast<size_t>(d), 0.0);
      for (int s = 0; s < n; ++s) {
        const double r = lp_norm(v.data() + s * d, d, p);
        ASSERT_LE(r, 2.0 * (1 + 1e-12));
        inner += r <= 1.0;
        for (int64_t i = 0; i < d; ++i) mean[static_cast<size_t>(i)] += v[static_cast<size_t>(s * d + i)] / n;
      }
      const double expect = std::pow(0.5, static_cast<double>(d));
      const double sd = std::sqrt(expect * (1 - expect) / n);
      EXPECT_NEAR(static_cast<double>(inner) / n, expect, 5 * sd) << norm_name(p) << " d " << d;
      for (double m : mean) EXPECT_NEAR(m, 0.0, 0.05) << norm_name(p);
    }
  // ℓ1 in 2-D: the ball is a diamond; the quarter x, y > 0 holds a quarter of the points
  const auto v = sample_uniform_ball(Norm::L1, 2, 1.0, 20000, 3);
  int q = 0;
  for (int s = 0; s < 20000; ++s) q += v[static_cast<size_t>(2 * s)] > 0 && v[static_cast<size_t>(2 * s + 1)] > 0;
  EXPECT_NEAR(q / 20000.0, 0.25, 0.015);
  EXPECT_EQ(sample_uniform_ball(Norm::L2, 5, 1.0, 3, 1), sample_uniform_ball(Norm::L2, 5, 1.0, 3, 1));
}

std::vector<double> reverse_weibull_samples(double loc, double scale, double shape, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> y(static_cast<size_t>(n));
  for (double& v : y) v = loc - scale * std::pow(-std::log(1 - u(rng)), 1 / shape);  // inverse CDF
  return y;
}

TEST(BaselineClever, ReverseWeibullMle) {
  // The MLE of the location from n = 200 samples of (2.0, 0.5, 3) has a standard deviation of
  // about 0.045 (measured over 200 seeds): the tolerances below are about 2.2 of those.
  const auto y = reverse_weibull_samples(2.0, 0.5, 3.0, 200, 2024);
  const auto fit = fit_reverse_weibull(y);
  EXPECT_EQ(fit.kind, WeibullFit::Interior);
  EXPECT_NEAR(fit.location, 2.0, 0.05 * 2.0);
  EXPECT_NEAR(fit.shape, 3.0, 1.0);
  EXPECT_NEAR(fit.scale, 0.5, 0.15);
  EXPECT_GE(fit.location, *std::max_element(y.begin(), y.end()));
  // a maximum of the likelihood: above the truth and above nearby parameters
  EXPECT_NEAR(fit.log_likelihood, reverse_weibull_log_likelihood(y, fit), 1e-8 * std::fabs(fit.log_likelihood));
  EXPECT_GE(fit.log_likelihood, reverse_weibull_log_likelihood(y, {2.0, 0.5, 3.0}));
  for (double dl : {-1e-3, 1e-3})
    for (double ds : {-1e-3, 0.0, 1e-3})
      for (double dk : {-1e-2, 0.0, 1e-2}) {
        ReverseWeibull q{fit.location + dl, fit.scale + ds, fit.shape + dk};
        EXPECT_LE(reverse_weibull_log_likelihood(y, q), fit.log_likelihood + 1e-9);
      }
  // the mean over 20 seeds (standard deviation about 0.01) is within 1.5% of the truth
  double mean = 0;
  for (uint64_t s = 0; s < 20; ++s)
    mean += fit_reverse_weibull(reverse_weibull_samples(2.0, 0.5, 3.0, 200, s)).location / 20;
  EXPECT_NEAR(mean, 2.0, 0.03);
  // shape < 1: the likelihood is unbounded at the sample maximum
  const auto y2 = reverse_weibull_samples(1.0, 1.0, 0.5, 100, 5);
  const auto fit2 = fit_reverse_weibull(y2);
  EXPECT_EQ(fit2.kind, WeibullFit::AtSampleMax);
  EXPECT_EQ(fit2.location, *std::max_element(y2.begin(), y2.end()));
  // equal samples
  const auto flat = fit_reverse_weibull({1.5, 1.5, 1.5, 1.5});
  EXPECT_EQ(flat.location, 1.5);
  EXPECT_EQ(flat.kind, WeibullFit::Constant);
  // a light upper tail (exponential: Gumbel domain) has no finite location
  std::mt19937_64 rng(4);
  std::exponential_distribution<double> ex(1.0);
  std::vector<double> y3(200);
  for (double& v : y3) v = ex(rng);
  const auto fit3 = fit_reverse_weibull(y3);
  EXPECT_EQ(fit3.kind, WeibullFit::Unbounded);
  EXPECT_EQ(fit3.location, *std::max_element(y3.begin(), y3.end()));
  EXPECT_THROW(fit_reverse_weibull({1.0, 2.0}), InvalidArgument);
}

TEST(BaselineClever, LinearNetworkExact) {
  std::mt19937_64 rng(8);
  const int64_t d = 12;
  const auto w = test::randn(rng, static_cast<size_t>(3 * d), 1.0);
  const Network net = linear_net(w, {0.2, -0.1, 0.0}, d);
  const auto x0 = test::random_input(9, d);
  const auto y = net.forward(x0.data(), 1);
  const int64_t c = argmax(y);
  CleverOptions o;
  o.batches = 10;
  o.samples = 20;
  o.radius = 100;
  double smallest = 1e300;
  for (Norm p : all_norms()) {
    for (int64_t t = 0; t < 3; ++t) {
      if (t == c) continue;
      std::vector<double> s(static_cast<size_t>(d));
      for (int64_t i = 0; i < d; ++i)
        s[static_cast<size_t>(i)] = w[static_cast<size_t>(c * d + i)] - w[static_cast<size_t>(t * d + i)];
      const double lq = lp_norm(s, dual_norm(p));
      const auto r = clever_score(net, x0, c, t, p, o);
      EXPECT_NEAR(r.lipschitz, lq, 1e-12 * lq) << norm_name(p);
      const double m = y[static_cast<size_t>(c)] - y[static_cast<size_t>(t)];
      EXPECT_NEAR(r.score, m / lq, 1e-10 * m / lq);
      EXPECT_EQ(r.batch_maxima.size(), 10u);
      if (p == Norm::L2) smallest = std::min(smallest, r.score);
    }
  }
  EXPECT_NEAR(clever_score(net, x0, c, -1, Norm::L2, o).score, smallest, 1e-12);
  o.radius = 1e-3;  // the score is capped at R
  EXPECT_EQ(clever_score(net, x0, c, -1, Norm::L2, o).score, 1e-3);
}

TEST(BaselineClever, ReluNetwork) {
  const Network net = test::random_network(Family::CnnMaxPool, ActKind::Relu, 31);
  const auto x0 = test::random_input(32, net.input_size());
  const int64_t c = argmax(net.forward(x0.data(), 1));
  const int64_t t = (c + 1) % net.output_size();
  CleverOptions o;
  o.batches = 20;
  o.samples = 25;
  o.radius = 0.5;
  o.threads = 1;
  const auto a = clever_score(net, x0, c, t, Norm::L2, o);
  o.threads = 3;
  const auto b = clever_score(net, x0, c, t, Norm::L2, o);
  EXPECT_EQ(a.batch_maxima, b.batch_maxima);  // independent of the threads
  EXPECT_EQ(a.score, b.score);
  EXPECT_GE(a.lipschitz, a.max_gradient_norm);
  EXPECT_GT(a.score, 0);
  // sampled gradient norms never exceed the global Lipschitz constant
  const auto lip = global_lipschitz(net, x0, c, t, Norm::L2);
  EXPECT_LE(a.max_gradient_norm, lip.lipschitz);
  EXPECT_LE(a.score, o.radius);
  EXPECT_THROW(clever_score(net, x0, c, t, Norm::L2, CleverOptions{}), InvalidArgument);  // radius unset
  o.batches = 2;
  EXPECT_THROW(clever_score(net, x0, c, t, Norm::L2, o), InvalidArgument);
}

}  // namespace
}  // namespace cnncert
