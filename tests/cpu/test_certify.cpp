// The certification driver: search sequences of MATH.md §3, targets, skipping, batching, and
// end-to-end soundness of certified radii on real networks.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "cnncert/baselines.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/onnx.hpp"
#include "common/engine_compare.hpp"
#include "common/net_factory.hpp"
#include "common/test_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

/// An engine whose margin lower bound is θ − eps (certified iff eps < θ), recording its calls.
class ThresholdEngine : public BoundEngine {
 public:
  explicit ThresholdEngine(double theta, double nan_above = INFINITY) : theta_(theta), nan_above_(nan_above) {}
  std::string name() const override { return "threshold"; }
  std::vector<BoundResult> bound(const std::vector<BoundProblem>& ps, const BoundOptions&) override {
    calls.push_back({});
    std::vector<BoundResult> out;
    for (const auto& p : ps) {
      calls.back().push_back(p.eps);
      BoundResult r;
      const double v = p.eps > nan_above_ ? std::nan("") : theta_ - p.eps;
      r.lower.assign(static_cast<size_t>(p.rows), v);
      r.upper.assign(static_cast<size_t>(p.rows), v + 1);
      if (std::isnan(v)) r.error = "bounds are NaN";
      out.push_back(r);
    }
    return out;
  }
  std::vector<std::vector<double>> calls;  // eps of every problem of every call

 private:
  double theta_, nan_above_;
};

/// Logits = input (4 classes): the prediction is the largest input.
Network identity_net() {
  NetworkBuilder b;
  int x = b.input({4});
  return b.build(b.dense(x, DenseAttr{4, 4, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, {0, 0, 0, 0}}));
}

TEST(Certify, CnnCertSearchFollowsTheLogSpaceBisection) {
  const Network net = identity_net();
  ThresholdEngine e(0.0123);
  CertifyOptions o;
  o.target = TargetMode::Runnerup;
  const auto r = certify(net, e, {0.1, 0.9, 0.3, 0.2}, {1}, o);
  ASSERT_EQ(e.calls.size(), 15u);
  // λ from ln .05: fail, −1 fail, −2 ok, −1.5 ok, −1.25 fail, −1.375 fail ... (θ = e^(λ0 − 1.40))
  const double l0 = std::log(0.05);
  const double expect[] = {l0, l0 - 1, l0 - 2, l0 - 1.5, l0 - 1.25, l0 - 1.375};
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(std::log(e.calls[i][0]), expect[i], 1e-12) << "step " << i;
  ASSERT_EQ(r[0].targets.size(), 1u);
  EXPECT_EQ(r[0].targets[0].target, 2);  // runner-up logit 0.3
  const double eps = r[0].targets[0].eps;
  EXPECT_LT(eps, 0.0123);                          // only certified radii are reported
  EXPECT_GT(eps, 0.0123 * std::exp(-1.0 / 1000));  // bracket after 15 steps is < 2^-10 wide in log space
  EXPECT_EQ(r[0].targets[0].steps, 15);
}

TEST(Certify, DeepCertSearchStopsAtTheTolerance) {
  const Network net = identity_net();
  ThresholdEngine e(0.3333);
  CertifyOptions o;
  o.search = SearchMode::DeepCert;
  o.target = TargetMode::Least;
  const auto r = certify(net, e, {0.9, 0.1, 0.3, 0.2}, {0}, o);
  // 0.05 ok → 0.1 ok → 0.2 ok → 0.4 fail → max(0.2, 0.3) = 0.3 ok → ...
  const double expect[] = {0.05, 0.1, 0.2, 0.4, 0.3};
  for (size_t i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(e.calls[i][0], expect[i]);
  EXPECT_EQ(r[0].targets[0].target, 1);  // least likely
  EXPECT_LT(r[0].targets[0].eps, 0.3333);
  EXPECT_GT(r[0].targets[0].eps, 0.3333 - 2e-5);
}

TEST(Certify, NothingCertifiedGivesZeroAndNaNIsNeverCertified) {
  const Network net = identity_net();
  ThresholdEngine never(-1.0);
  CertifyOptions o;
  EXPECT_EQ(certify(net, never, {0.9, 0.1, 0.3, 0.2}, {0}, o)[0].targets[0].eps, 0.0);
  o.search = SearchMode::DeepCert;
  EXPECT_EQ(certify(net, never, {0.9, 0.1, 0.3, 0.2}, {0}, o)[0].targets[0].eps, 0.0);
  // margin would be positive up to 0.5, but the bounds are NaN above 0.02
  ThresholdEngine nan(0.5, 0.02);
  o.search = SearchMode::CnnCert;
  const auto r = certify(net, nan, {0.9, 0.1, 0.3, 0.2}, {0}, o);
  EXPECT_LE(r[0].targets[0].eps, 0.02);
  EXPECT_GT(r[0].targets[0].eps, 0.0);
  EXPECT_NE(r[0].targets[0].note.find("NaN"), std::string::npos) << r[0].targets[0].note;
}

TEST(Certify, DeepCertSearchIsBoundedWhenEverythingCertifies) {
  ThresholdEngine always(1e300);
  CertifyOptions o;
  o.search = SearchMode::DeepCert;
  o.deepcert_max_steps = 30;
  const auto r = certify(identity_net(), always, {0.9, 0.1, 0.3, 0.2}, {0}, o);
  EXPECT_EQ(r[0].targets[0].steps, 30);
  EXPECT_FALSE(r[0].targets[0].note.empty());
}

TEST(Certify, TargetsAndSkipping) {
  const Network net = identity_net();
  ThresholdEngine e(0.01);
  CertifyOptions o;
  const std::vector<double> x = {0.9, 0.1, 0.3, 0.2, /* misclassified: */ 0.1, 0.9, 0.3, 0.2};
  o.target = TargetMode::All;
  auto r = certify(net, e, x, {0, 0}, o);
  ASSERT_EQ(r[0].targets.size(), 3u);
  EXPECT_EQ(r[0].targets[0].target, 1);
  EXPECT_EQ(r[0].targets[2].target, 3);
  EXPECT_TRUE(r[1].skipped);
  EXPECT_EQ(r[1].skip_reason, "misclassified");
  // every search step is one engine call for all searches still running
  EXPECT_EQ(e.calls[0].size(), 3u);
  o.target = TargetMode::Untargeted;
  e.calls.clear();
  r = certify(net, e, x, {0, 1}, o);
  EXPECT_EQ(r[0].targets[0].target, -1);
  EXPECT_EQ(e.calls.size(), 15u);
  EXPECT_EQ(e.calls[0].size(), 2u);
  // explicit targets, including one equal to the prediction
  o.targets = {2, 1};
  r = certify(net, e, x, {0, 1}, o);
  EXPECT_EQ(r[0].targets[0].target, 2);
  EXPECT_TRUE(r[1].skipped);
  // label -1 = unknown: the prediction is certified and the label stays -1 in the result
  o.targets.clear();
  o.target = TargetMode::Runnerup;
  r = certify(net, e, x, {-1, -1}, o);
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(r[i].skipped) << r[i].skip_reason;
    EXPECT_EQ(r[i].label, -1);
    EXPECT_GT(r[i].targets.at(0).eps, 0.0);
  }
  EXPECT_EQ(r[1].predicted, 1);
  // a label or a target outside the classes is an error naming the image, before any engine call
  e.calls.clear();
  EXPECT_THROW(certify(net, e, x, {0, 4}, o), InvalidArgument);
  o.targets = {1, -2};
  EXPECT_THROW(certify(net, e, x, {0, 1}, o), InvalidArgument);
  EXPECT_TRUE(e.calls.empty());
}

TEST(Certify, RandomTargetsAreSeededAndNeverThePrediction) {
  const Network net = identity_net();
  ThresholdEngine e(0.01);
  std::vector<double> x;
  for (int i = 0; i < 40; ++i) {
    std::vector<double> v = {0.1, 0.2, 0.3, 0.4};
    v[static_cast<size_t>(i % 4)] = 0.9;
    x.insert(x.end(), v.begin(), v.end());
  }
  CertifyOptions o;
  auto targets = [&](uint64_t seed) {
    o.seed = seed;
    std::vector<int64_t> t;
    for (const auto& r : certify(net, e, x, {}, o)) {
      EXPECT_NE(r.targets[0].target, r.predicted);
      t.push_back(r.targets[0].target);
    }
    return t;
  };
  const auto a = targets(1), b = targets(1), c = targets(2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 4u);
}

/// Forwards to an engine and records the radius of every problem it bounds (0: a point the
/// counterexample search evaluates).
class CountingEngine : public BoundEngine {
 public:
  explicit CountingEngine(std::unique_ptr<BoundEngine> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  std::vector<BoundResult> bound(const std::vector<BoundProblem>& ps, const BoundOptions& o) override {
    for (const auto& p : ps) (p.eps > 0 ? balls : points)++;
    return inner_->bound(ps, o);
  }
  bool uses_outer_bounds(const BoundOptions& o) const override { return inner_->uses_outer_bounds(o); }
  int balls = 0, points = 0;

 private:
  std::unique_ptr<BoundEngine> inner_;
};

TEST(Certify, CounterexamplesDecideStepsWithoutChangingTheRadius) {
  // Logits = input, prediction 1, runner-up 2, margin x1 − x2 = 0.02: exact bounds (the reference
  // engine's on a linear network) certify the ℓ∞ ball iff ε < 0.01, the ℓ2 one iff ε < 0.02/√2,
  // the ℓ1 one iff ε < 0.02, and those are also the distances of the nearest counterexamples.
  const Network net = identity_net();
  const std::vector<double> x = {0.1, 0.14, 0.12, 0.0};
  for (const Norm p : {Norm::Linf, Norm::L2, Norm::L1}) {
    SCOPED_TRACE(norm_name(p));
    const double radius = p == Norm::Linf ? 0.01 : p == Norm::L2 ? 0.02 / std::sqrt(2.0) : 0.02;
    CertifyOptions o;
    o.bound.norm = p;
    o.target = TargetMode::Runnerup;
    o.attack_moves = 0;
    CountingEngine plain_engine(make_cpu_engine(net, 1));
    const TargetResult plain = certify(net, plain_engine, x, {}, o)[0].targets.at(0);
    o.attack_moves = 10;
    CountingEngine e(make_cpu_engine(net, 1));
    const TargetResult t = certify(net, e, x, {}, o)[0].targets.at(0);
    EXPECT_EQ(plain_engine.balls, 15);
    EXPECT_EQ(plain.steps_by_attack, 0);
    EXPECT_EQ(plain.attack_eps, INFINITY);
    EXPECT_EQ(t.eps, plain.eps);  // the same search: the same radius, to the bit
    EXPECT_EQ(t.steps, 15);
    EXPECT_LT(t.eps, radius);
    EXPECT_GT(t.eps, radius * (1 - 1e-3));
    // 0.05 and 0.0184 (ℓ∞) lie beyond the nearest counterexample: decided without bounds, and with
    // them the bisection's steps above the radius that the attack reaches
    EXPECT_GE(t.steps_by_attack, 2);
    EXPECT_EQ(e.balls, 15 - t.steps_by_attack);
    EXPECT_EQ(e.points, 0);  // the reference engine proves no neuron stable: the network's gradients
    // a counterexample is never nearer than the nearest one there is
    EXPECT_GE(t.attack_eps, radius * (1 - 1e-12));
    EXPECT_LT(t.attack_eps, 0.05);
    // DeepCert's search (doubling from 0.05, then bisection to 1e-5), inside the box [0, 1] (ℓ∞)
    o.search = SearchMode::DeepCert;
    o.bound.clip_to_box = p == Norm::Linf;
    o.attack_moves = 0;
    const TargetResult dplain = certify(net, plain_engine, x, {}, o)[0].targets.at(0);
    o.attack_moves = 10;
    const TargetResult d = certify(net, e, x, {}, o)[0].targets.at(0);
    EXPECT_EQ(d.eps, dplain.eps);
    EXPECT_EQ(d.steps, dplain.steps);
    EXPECT_GT(d.steps_by_attack, 0);
    EXPECT_GE(d.attack_eps, radius * (1 - 1e-12));
  }
}

TEST(Certify, ACounterexampleOverridesBoundsThatWouldCertify) {
  // An unsound engine claims margin 0.5 − ε > 0 where the margin 0.02 of the network above fails
  // beyond ε = 0.01: a step whose ball holds a counterexample found is not certified whatever the
  // bounds say (fail closed), so the search stays below the nearest counterexample found (the
  // attacks stop after two that found none, so the engine's claims win between 0.01 and it).
  const Network net = identity_net();
  const std::vector<double> x = {0.1, 0.14, 0.12, 0.0};
  CertifyOptions o;
  o.target = TargetMode::Runnerup;
  o.attack_moves = 10;
  ThresholdEngine e(0.5);
  const TargetResult t = certify(net, e, x, {}, o)[0].targets.at(0);
  EXPECT_GT(t.steps_by_attack, 0);
  EXPECT_LE(t.eps, t.attack_eps);
  EXPECT_LT(t.attack_eps, 0.05);
  EXPECT_GE(t.attack_eps, 0.01 * (1 - 1e-12));
  o.attack_moves = 0;  // (the default)
  EXPECT_EQ(CertifyOptions{}.attack_moves, 0);
  EXPECT_GT(certify(net, e, x, {}, o)[0].targets.at(0).eps, 0.4);  // the engine alone
  // PROVEN's decision (a probability) may hold on a ball with a counterexample: no attacks then
  o.attack_moves = 10;
  o.decide = [](const BoundProblem&, const BoundResult& r, double, std::string*) { return r.lower.at(0) > 0; };
  const TargetResult d = certify(net, e, x, {}, o)[0].targets.at(0);
  EXPECT_GT(d.eps, 0.4);
  EXPECT_EQ(d.steps_by_attack, 0);
  EXPECT_EQ(d.attack_eps, INFINITY);
  o.decide = nullptr;
  o.attack_moves = -1;
  EXPECT_THROW(certify(net, e, x, {}, o), InvalidArgument);
}

TEST(Certify, EnginesAtRadiusZeroGiveTheMarginAndItsGradient) {
  // The counterexample search's evaluation of a point through an engine that proves neurons
  // stable: a problem of radius 0 with want_linear; its lower bound is the margin there and its
  // coefficients the margin's gradient (Network::input_gradient), to float32 rounding.
  uint64_t seed = 70;
  for (const Family f : {Family::Cnn, Family::CnnMaxPool, Family::Residual, Family::BatchNormStrided})
    for (const ActKind act : {ActKind::Relu, ActKind::Tanh}) {
      const Network net = random_network(f, act, ++seed);
      const std::string what = std::string(family_name(f)) + (act == ActKind::Relu ? " relu" : " tanh");
      std::vector<BoundProblem> ps = margin_problems(net, 3, 0.0, seed);
      BoundOptions o;
      o.want_linear = true;
      for (auto& engine : {make_fast_engine(net, 1), make_float_engine(net)}) {
        const auto res = engine->bound(ps, o);
        for (size_t k = 0; k < ps.size(); ++k) {
          ASSERT_TRUE(res[k].error.empty()) << what << ": " << res[k].error;
          const std::vector<double> y = net.forward(ps[k].x0.data(), 1);
          const auto classes = static_cast<size_t>(net.output_size()), n = static_cast<size_t>(net.input_size());
          for (int64_t r = 0; r < ps[k].rows; ++r) {
            const double* row = ps[k].spec.data() + r * net.output_size();
            double m = 0;
            for (size_t c = 0; c < classes; ++c) m += row[c] * y[c];
            const std::vector<double> g = net.input_gradient(ps[k].x0.data(), row);
            const double scale = 1 + lp_norm(g, Norm::L1);
            EXPECT_NEAR(res[k].lower[static_cast<size_t>(r)], m, 1e-5 * (1 + std::fabs(m)) * scale)
                << what << " " << engine->name();
            double diff = 0;
            for (size_t i = 0; i < n; ++i)
              diff = std::max(diff, std::fabs(res[k].a_lower[static_cast<size_t>(r) * n + i] - g[i]));
            EXPECT_LT(diff, 1e-5 * scale) << what << " " << engine->name() << " row " << r;
          }
        }
      }
    }
}

TEST(Certify, CounterexamplesThroughTheEngineKeepTheRadii) {
  // Random ReLU networks, the fast engine (points evaluated through it) and the reference (the
  // network's gradients), all targets: the radii, step counts and outcomes with the counterexample
  // search equal those without; the ones found lie beyond the certified radii.
  int decided[2] = {0, 0};  // reference, fast
  for (const Family f : {Family::Cnn, Family::CnnMaxPool, Family::Residual}) {
    const Network net = random_network(f, ActKind::Relu, 41);
    const std::vector<double> x = random_inputs(600, 4, net.input_size());
    for (const bool fast : {true, false}) {
      CertifyOptions o;
      o.target = TargetMode::All;
      // The fast engine in its default mode evaluates points through itself; there a step decided
      // without bounds passes no outer bounds on, which changes only which neurons later steps
      // prove stable, not the radii on these cases. The reference: exact, the network's gradients.
      o.bound.exact_cnncert = !fast;
      CountingEngine e(fast ? make_fast_engine(net, 1) : make_cpu_engine(net, 1));
      o.attack_moves = 0;
      const auto plain = certify(net, e, x, {}, o);
      const int plain_balls = e.balls;
      e.balls = e.points = 0;
      o.attack_moves = 10;
      const auto got = certify(net, e, x, {}, o);
      const std::string what = std::string(family_name(f)) + (fast ? " fast" : " reference");
      EXPECT_EQ(e.points > 0, fast && e.uses_outer_bounds(o.bound)) << what;
      int by_attack = 0;
      for (size_t i = 0; i < plain.size(); ++i)
        for (size_t t = 0; t < plain[i].targets.size(); ++t) {
          const TargetResult &a = plain[i].targets[t], &b = got[i].targets.at(t);
          EXPECT_EQ(a.eps, b.eps) << what << " image " << i << " target " << a.target;
          EXPECT_EQ(a.steps, b.steps) << what;
          EXPECT_LE(b.eps, b.attack_eps) << what;
          by_attack += b.steps_by_attack;
        }
      EXPECT_EQ(e.balls, plain_balls - by_attack) << what;
      decided[fast] += by_attack;
    }
  }
  // (each way of evaluating points must find some, or the comparison would say nothing)
  EXPECT_GT(decided[0], 0) << "reference";
  EXPECT_GT(decided[1], 0) << "fast";
}

/// Certified radii on real networks: no sampled point or gradient search inside the ball of the
/// reported radius changes the prediction.
void check_certified_radius(const std::filesystem::path& onnx, const std::string& stem, Norm norm, const char* method,
                            int images) {
  SCOPED_TRACE(onnx.filename().string() + " " + norm_name(norm) + " " + method);
  const Network net = import_onnx(onnx.string());
  const std::vector<double> x = fixture_inputs(stem, 0, images);
  const std::vector<int64_t> lab = fixture_labels(stem, images);
  const int64_t n = net.input_size();
  auto engine = make_cpu_engine(net);
  CertifyOptions o;
  o.bound.norm = norm;
  o.bound.method = parse_method(method);
  o.target = TargetMode::Untargeted;
  const auto res = certify(net, *engine, x, lab, o);
  int certified = 0;
  for (const auto& r : res) {
    if (r.skipped) continue;
    const double eps = r.targets[0].eps;
    if (eps <= 0) continue;
    ++certified;
    std::vector<int64_t> t;
    for (int64_t k = 0; k < net.output_size(); ++k)
      if (k != r.predicted) t.push_back(k);
    BoundProblem p;
    p.x0.assign(x.begin() + r.image * n, x.begin() + (r.image + 1) * n);
    p.eps = eps;
    p.rows = static_cast<int64_t>(t.size());
    p.spec = margin_spec(net.output_size(), r.predicted, t);
    // the bounds at the certified radius are positive, and every point found keeps the class
    const auto b = engine->bound({p}, o.bound);
    for (double v : b[0].lower) ASSERT_GT(v, 0.0);
    check_sound(net, p, b[0], norm, 99, 40, 15);
  }
  EXPECT_GT(certified, 0);
}

TEST(CertifyRealNetworks, ShippedModelRadiiHoldUnderAttack) {
  const auto model = source_dir() / "models/mnist_cnn_3layer_5_3.onnx";
  check_certified_radius(model, "mnist_cnn_3layer_5_3", Norm::Linf, "adaptive", 2);
  check_certified_radius(model, "mnist_cnn_3layer_5_3", Norm::L2, "fastlin", 2);
  check_certified_radius(model, "mnist_cnn_3layer_5_3", Norm::L1, "adaptive", 1);
}

TEST(CertifyRealNetworks, SharedNetworkRadiiHoldUnderAttack) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const auto nets = shared_data() / "nets";
  check_certified_radius(nets / "mnist_verivital_convnet_maxpool.onnx", "mnist_verivital_convnet_maxpool", Norm::Linf,
                         "adaptive", 1);
  check_certified_radius(nets / "mnist_eran_sigmoid_6x200.onnx", "mnist_eran_sigmoid_6x200", Norm::L2, "deepcert", 2);
  check_certified_radius(nets / "cifar_resnet_2b.onnx", "cifar_resnet_2b", Norm::Linf, "adaptive", 2);
}

}  // namespace
}  // namespace cnncert::test
