// The LP baseline: a hand-solved LP, never looser than the linear relaxations built on the same
// intermediate bounds, sound, and clear errors where it does not apply.
#include <gtest/gtest.h>

#include "cnncert/error.hpp"
#include "cnncert/lp.hpp"
#include "common/net_factory.hpp"

namespace cnncert::test {
namespace {

TEST(Lp, HandSolvedTwoNeuronNetwork) {
  if (!lp_available()) GTEST_SKIP() << "built without GLPK";
  // y = relu(x1 + x2) + relu(x1 − x2) on [−1, 1]²: both neurons in [−2, 2]. The triangle LP
  // gives min 0 (the true minimum; the linear relaxations give −1 or −2) and max x1 + 2 = 3.
  NetworkBuilder b;
  int x = b.input({2});
  int h = b.activation(b.dense(x, DenseAttr{2, 2, {1, 1, 1, -1}, {0, 0}}), ActKind::Relu);
  const Network net = b.build(b.dense(h, DenseAttr{1, 2, {1, 1}, {0}}));
  BoundOptions o;
  const auto r = make_lp_engine(net, 1)->bound({BoundProblem{{0, 0}, 1.0, {1.0}, 1}}, o);
  ASSERT_TRUE(r[0].error.empty()) << r[0].error;
  EXPECT_NEAR(r[0].lower[0], 0.0, 1e-9);
  EXPECT_NEAR(r[0].upper[0], 3.0, 1e-9);
}

TEST(Lp, NeverLooserThanTheLinearRelaxationsAndSound) {
  if (!lp_available()) GTEST_SKIP() << "built without GLPK";
  for (Family f : {Family::Mlp, Family::Cnn, Family::CnnAvgPoolPadded, Family::Residual, Family::BatchNormStrided}) {
    SCOPED_TRACE(family_name(f));
    const Network net = random_network(f, ActKind::Relu, 7);
    const auto x0 = random_input(8, net.input_size());
    BoundProblem p{x0, 0.05, {}, net.output_size()};
    p.spec.assign(static_cast<size_t>(p.rows * p.rows), 0.0);
    for (int64_t k = 0; k < p.rows; ++k) p.spec[static_cast<size_t>(k * p.rows + k)] = 1.0;
    BoundOptions o;
    const auto lp = make_lp_engine(net, 1)->bound({p}, o);
    ASSERT_TRUE(lp[0].error.empty()) << lp[0].error;
    // (the LP uses the adaptive method's intermediate bounds: it is tighter than that method)
    for (const char* m : {"adaptive"}) {
      o.method = parse_method(m);
      const auto lin = make_cpu_engine(net, 1)->bound({p}, o);
      for (int64_t k = 0; k < p.rows; ++k) {
        EXPECT_GE(lp[0].lower[static_cast<size_t>(k)], lin[0].lower[static_cast<size_t>(k)] - 1e-7) << m;
        EXPECT_LE(lp[0].upper[static_cast<size_t>(k)], lin[0].upper[static_cast<size_t>(k)] + 1e-7) << m;
      }
    }
    check_sound(net, p, lp[0], Norm::Linf, 9, 60, 10);
  }
}

TEST(Lp, DoesNotApplyToSigmoidOrMaxPoolOrOtherNorms) {
  EXPECT_THROW(make_lp_engine(random_network(Family::Mlp, ActKind::Sigmoid, 1), 1), UnsupportedModel);
  EXPECT_THROW(make_lp_engine(random_network(Family::CnnMaxPool, ActKind::Relu, 1), 1), UnsupportedModel);
  if (!lp_available()) return;
  const Network net = random_network(Family::Mlp, ActKind::Relu, 1);
  BoundOptions o;
  o.norm = Norm::L2;
  BoundProblem p{random_input(1, net.input_size()), 0.1, std::vector<double>(4, 0.25), 1};
  EXPECT_THROW(make_lp_engine(net, 1)->bound({p}, o), InvalidArgument);
}

}  // namespace
}  // namespace cnncert::test
