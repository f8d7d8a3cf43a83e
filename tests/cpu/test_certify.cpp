// The certification driver: search sequences of MATH.md §3, targets, skipping, batching, and
// end-to-end soundness of certified radii on real networks.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "cnncert/certify.hpp"
#include "cnncert/onnx.hpp"
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
