// The CPU reference bound engine: hand-computed bounds, exactness at eps = 0, monotonicity,
// CNN = dense equivalence, Fast-Lin's closed form, and soundness by sampling and gradient search.
#include <gtest/gtest.h>

#include "cnncert/certify.hpp"
#include "cnncert/convert.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/vnnlib.hpp"
#include "common/engine_compare.hpp"
#include "common/net_factory.hpp"
#include "common/test_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

const char* kMethods[] = {"fastlin", "adaptive", "deepcert", "crown"};
const Norm kNorms[] = {Norm::Linf, Norm::L2, Norm::L1};
const Family kFamilies[] = {
    Family::Mlp, Family::Cnn, Family::CnnMaxPool, Family::CnnAvgPoolPadded, Family::Residual, Family::BatchNormStrided};

BoundOptions opts(Norm norm, const std::string& method) {
  BoundOptions o;
  o.norm = norm;
  o.method = parse_method(method);
  return o;
}

BoundProblem logit_problem(const Network& net, std::vector<double> x0, double eps) {
  BoundProblem p;
  p.x0 = std::move(x0);
  p.eps = eps;
  p.rows = net.output_size();
  p.spec.assign(static_cast<size_t>(p.rows * p.rows), 0.0);
  for (int64_t k = 0; k < p.rows; ++k) p.spec[static_cast<size_t>(k * p.rows + k)] = 1.0;
  return p;
}

Network two_relu_net(double w2a, double w2b) {
  NetworkBuilder b;
  int x = b.input({2});
  int h = b.activation(b.dense(x, DenseAttr{2, 2, {1, 1, 1, -1}, {0, 0}}), ActKind::Relu);
  return b.build(b.dense(h, DenseAttr{1, 2, {w2a, w2b}, {0}}));
}

TEST(Engine, HandComputedTwoNeuronNetwork) {
  // y = relu(x1 + x2) + relu(x1 − x2) on the l-inf ball of radius 1 around 0: both neurons lie in
  // [−2, 2]; upper lines 0.5 z + 1. Fast-Lin lower lines 0.5 z → y ∈ [x1 − …] = [−1, 3].
  // Adaptive (tie u = −l → slope 1): lower = 2 x1 → −2.
  const Network net = two_relu_net(1, 1);
  auto engine = make_cpu_engine(net, 1);
  BoundProblem p{{0, 0}, 1.0, {1.0}, 1};
  auto r = engine->bound({p}, opts(Norm::Linf, "fastlin"));
  EXPECT_NEAR(r[0].lower[0], -1.0, 1e-15);
  EXPECT_NEAR(r[0].upper[0], 3.0, 1e-15);
  r = engine->bound({p}, opts(Norm::Linf, "adaptive"));
  EXPECT_NEAR(r[0].lower[0], -2.0, 1e-15);
  EXPECT_NEAR(r[0].upper[0], 3.0, 1e-15);
  // l2 ball: neuron bounds ±√2; upper = x1 + √2 → √2 + 1 (max of x1 on the ball is 1)
  r = engine->bound({p}, opts(Norm::L2, "fastlin"));
  EXPECT_NEAR(r[0].upper[0], 1 + std::sqrt(2.0), 1e-14);
  EXPECT_NEAR(r[0].lower[0], -1.0, 1e-14);
  // y = relu(x1 + x2) − relu(x1 − x2): upper = 0.5(x1+x2) + 1 − 0.5(x1−x2) = x2 + 1 → 2
  const Network net2 = two_relu_net(1, -1);
  r = make_cpu_engine(net2, 1)->bound({p}, opts(Norm::Linf, "fastlin"));
  EXPECT_NEAR(r[0].upper[0], 2.0, 1e-15);
  EXPECT_NEAR(r[0].lower[0], -2.0, 1e-15);
}

TEST(Engine, MaxPoolOfTwoInputsByHand) {
  // max(x1, x2) over x ∈ [0, 2] × [1, 2] (l-inf ball radius 0.5 around (1, 1.5), then … ) :
  // use a box via x0 and eps directly: x1 ∈ [0.5, 1.5], x2 ∈ [1, 2].
  NetworkBuilder b;
  int x = b.input({1, 1, 2});
  PoolAttr p;
  p.kernel_h = 1;
  p.kernel_w = 2;
  const Network net = b.build(b.max_pool(x, p));
  // γ = (Σ u/(u−l) − 1) / Σ 1/(u−l) = (1.5 + 2 − 1) / (1 + 1) = 1.25, clamped to [1, 1.5];
  // w1 = (1.5 − 1.25)/1 = 0.25, w2 = (2 − 1.25)/1 = 0.75 (sum 1)
  // upper: 0.25 x1 + 0.75 x2 + 1.25 − (0.25·0.5 + 0.75·1) = … + 0.375 → max 0.375+0.375+1.5 = 2.25
  // lower (Σw = 1): 0.25 x1 + 0.75 x2 → min 0.125 + 0.75 = 0.875
  auto r = make_cpu_engine(net, 1)->bound({BoundProblem{{1.0, 1.5}, 0.5, {1.0}, 1}}, opts(Norm::Linf, "adaptive"));
  EXPECT_NEAR(r[0].upper[0], 2.25, 1e-14);
  EXPECT_NEAR(r[0].lower[0], 0.875, 1e-14);
}

TEST(Engine, EpsZeroGivesTheExactLogits) {
  for (Family f : kFamilies)
    for (ActKind act : kAllActs) {
      SCOPED_TRACE(std::string(family_name(f)) + " " + act_name(act));
      const Network net = random_network(f, act, 11);
      const auto x0 = random_input(5, net.input_size());
      const auto y = net.forward(x0.data(), 1);
      for (const char* m : kMethods) {
        const auto r = make_cpu_engine(net, 1)->bound({logit_problem(net, x0, 0.0)}, opts(Norm::Linf, m));
        for (size_t k = 0; k < y.size(); ++k) {
          EXPECT_NEAR(r[0].lower[k], y[k], 1e-9 * (1 + std::fabs(y[k]))) << m;
          EXPECT_NEAR(r[0].upper[k], y[k], 1e-9 * (1 + std::fabs(y[k]))) << m;
        }
      }
    }
}

TEST(Engine, BoundsAreSoundOnEveryFamilyMethodAndNorm) {
  uint64_t seed = 100;
  for (Family f : kFamilies)
    for (ActKind act : kAllActs)
      for (Norm norm : kNorms)
        for (const char* m : kMethods) {
          ++seed;
          SCOPED_TRACE(std::string(family_name(f)) + " " + act_name(act) + " norm " + norm_name(norm) + " " + m +
                       " seed " + std::to_string(seed));
          const Network net = random_network(f, act, seed);
          const auto x0 = random_input(seed, net.input_size());
          const double eps = norm == Norm::Linf ? 0.05 : norm == Norm::L2 ? 0.3 : 1.0;
          const BoundProblem p = logit_problem(net, x0, eps);
          const auto r = make_cpu_engine(net, 1)->bound({p}, opts(norm, m));
          ASSERT_TRUE(r[0].error.empty()) << r[0].error;
          for (int64_t k = 0; k < p.rows; ++k)
            ASSERT_LE(r[0].lower[static_cast<size_t>(k)], r[0].upper[static_cast<size_t>(k)]);
          check_sound(net, p, r[0], norm, seed, 60, 10);
        }
}

TEST(Engine, InputBoxClippingIsSoundAndTighter) {
  const Network net = random_network(Family::CnnMaxPool, ActKind::Relu, 3);
  const auto x0 = random_input(9, net.input_size());
  BoundOptions o = opts(Norm::Linf, "adaptive");
  const BoundProblem p = logit_problem(net, x0, 0.3);
  const auto loose = make_cpu_engine(net, 1)->bound({p}, o);
  o.clip_to_box = true;
  o.box_lo = 0;
  o.box_hi = 1;
  const auto tight = make_cpu_engine(net, 1)->bound({p}, o);
  bool strictly = false;
  for (int64_t k = 0; k < p.rows; ++k) {
    EXPECT_LE(tight[0].upper[static_cast<size_t>(k)], loose[0].upper[static_cast<size_t>(k)] + 1e-12);
    EXPECT_GE(tight[0].lower[static_cast<size_t>(k)], loose[0].lower[static_cast<size_t>(k)] - 1e-12);
    strictly = strictly || tight[0].upper[static_cast<size_t>(k)] < loose[0].upper[static_cast<size_t>(k)] - 1e-9;
  }
  EXPECT_TRUE(strictly);
  check_sound(net, p, tight[0], Norm::Linf, 4, 100, 10, &o);
}

TEST(Engine, InputBoxMustContainTheCentre) {
  const Network net = random_network(Family::Mlp, ActKind::Relu, 3);
  BoundOptions o = opts(Norm::Linf, "adaptive");
  o.clip_to_box = true;
  o.box_lo = 0;
  o.box_hi = 1;
  auto x0 = random_input(9, net.input_size());
  x0[0] = -0.5;  // e.g. CNN-Cert's [-0.5, 0.5] inputs with a [0, 1] box: the region would be empty
  EXPECT_THROW(make_cpu_engine(net, 1)->bound({logit_problem(net, x0, 0.1)}, o), InvalidArgument);
  o.box_lo = 2;
  EXPECT_THROW(make_cpu_engine(net, 1)->bound({logit_problem(net, random_input(9, net.input_size()), 0.1)}, o),
               InvalidArgument);
}

/// A random box around x0 (half-widths in [0, 0.2), some zero), with x0 inside it.
void random_box(const std::vector<double>& x0, uint64_t seed, BoundProblem& p) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  p.x_lower.resize(x0.size()), p.x_upper.resize(x0.size());
  for (size_t j = 0; j < x0.size(); ++j) {
    const double below = j % 7 == 0 ? 0 : 0.2 * u(rng), above = j % 5 == 0 ? 0 : 0.2 * u(rng);
    p.x_lower[j] = x0[j] - below, p.x_upper[j] = x0[j] + above;
  }
}

/// The engines the box tests run: reference, fast CPU, float (the batched engine on the host).
std::vector<std::unique_ptr<BoundEngine>> all_engines(const Network& net) {
  std::vector<std::unique_ptr<BoundEngine>> e;
  e.push_back(make_cpu_engine(net, 1));
  e.push_back(make_fast_engine(net, 1));
  e.push_back(make_float_engine(net));
  return e;
}

TEST(Engine, AnInputBoxEqualsTheBallItDescribes) {
  for (Family f : kFamilies)
    for (ActKind act : {ActKind::Relu, ActKind::Tanh, ActKind::Gelu}) {
      SCOPED_TRACE(std::string(family_name(f)) + " " + act_name(act));
      const Network net = random_network(f, act, 21);
      const BoundProblem ball = logit_problem(net, random_input(5, net.input_size()), 0.04);
      BoundProblem box = ball;
      box.eps = 123;  // unused with a box
      box.x_lower = box.x_upper = ball.x0;
      for (size_t j = 0; j < ball.x0.size(); ++j) box.x_lower[j] -= 0.04, box.x_upper[j] += 0.04;
      const auto engines = all_engines(net);
      for (size_t e = 0; e < engines.size(); ++e) {
        const BoundOptions o = opts(Norm::Linf, act == ActKind::Relu ? "adaptive" : "crown");
        const auto a = engines[e]->bound({ball}, o)[0], b = engines[e]->bound({box, ball}, o)[0];
        // The reference to rounding; the fast engine (float32 coefficients) and the float engine:
        // centre ± radius against the corners, rounded to float.
        const double tol = e == 0 ? 1e-12 : 1e-5;
        for (size_t k = 0; k < a.lower.size(); ++k) {
          EXPECT_NEAR(a.lower[k], b.lower[k], tol * (1 + std::fabs(a.lower[k]))) << engines[e]->name();
          EXPECT_NEAR(a.upper[k], b.upper[k], tol * (1 + std::fabs(a.upper[k]))) << engines[e]->name();
        }
      }
    }
}

TEST(Engine, PerElementBoxesAreSoundAndEqualAnAffineInputLayer) {
  uint64_t seed = 300;
  for (Family f : kFamilies)
    for (ActKind act : {ActKind::Relu, ActKind::Sigmoid, ActKind::Silu}) {
      ++seed;
      SCOPED_TRACE(std::string(family_name(f)) + " " + act_name(act) + " seed " + std::to_string(seed));
      const Network net = random_network(f, act, seed);
      BoundProblem p = logit_problem(net, random_input(seed, net.input_size()), 0);
      random_box(p.x0, seed, p);
      const BoundOptions o = opts(Norm::Linf, act == ActKind::Relu ? "adaptive" : "crown");
      // The same region as the unit ℓ∞ ball through an input layer x = centre + radius ⊙ u.
      std::vector<double> centre(p.x0.size()), radius(p.x0.size());
      for (size_t j = 0; j < p.x0.size(); ++j)
        centre[j] = (p.x_lower[j] + p.x_upper[j]) / 2, radius[j] = (p.x_upper[j] - p.x_lower[j]) / 2;
      const Network affine = with_input_affine(net, radius, centre);
      BoundProblem q = logit_problem(affine, std::vector<double>(p.x0.size(), 0.0), 1.0);
      const BoundResult want = make_cpu_engine(affine, 1)->bound({q}, o)[0];
      const auto engines = all_engines(net);
      std::mt19937_64 rng(seed);
      std::uniform_real_distribution<double> u(0, 1);
      for (size_t e = 0; e < engines.size(); ++e) {
        const BoundResult r = engines[e]->bound({p}, o)[0];
        ASSERT_TRUE(r.error.empty()) << r.error;
        const double tol = e == 0 ? 1e-9 : e == 1 ? kFloatSoundTol : 1e-4;  // (the fast engine: float32 coefficients)
        for (size_t k = 0; k < r.lower.size(); ++k) {
          if (e == 0) {  // the reference: the two formulations agree up to rounding
            EXPECT_NEAR(r.lower[k], want.lower[k], 1e-9 * (1 + std::fabs(want.lower[k])));
            EXPECT_NEAR(r.upper[k], want.upper[k], 1e-9 * (1 + std::fabs(want.upper[k])));
          }
        }
        for (int s = 0; s < 200; ++s) {  // corners first, then inside
          std::vector<double> x(p.x0.size());
          for (size_t j = 0; j < x.size(); ++j) {
            const double t = s < 100 ? (u(rng) < 0.5 ? 0.0 : 1.0) : u(rng);
            x[j] = p.x_lower[j] + t * (p.x_upper[j] - p.x_lower[j]);
          }
          const auto y = net.forward(x.data(), 1);
          for (size_t k = 0; k < y.size(); ++k) {
            ASSERT_GE(y[k], r.lower[k] - tol * (1 + std::fabs(y[k]))) << engines[e]->name() << " sample " << s;
            ASSERT_LE(y[k], r.upper[k] + tol * (1 + std::fabs(y[k]))) << engines[e]->name() << " sample " << s;
          }
        }
      }
    }
}

TEST(Engine, BoxesAreClippedAndCheckedLikeBalls) {
  const Network net = random_network(Family::Cnn, ActKind::Relu, 8);
  std::vector<double> x0 = random_input(3, net.input_size());
  for (double& v : x0) v = 0.15 + 0.7 * v;  // inside the clipping box below
  BoundProblem p = logit_problem(net, x0, 0);
  random_box(p.x0, 3, p);
  BoundOptions o = opts(Norm::Linf, "adaptive");
  o.clip_to_box = true, o.box_lo = 0.1, o.box_hi = 0.9;  // cuts some boxes
  BoundProblem clipped = p;
  for (size_t j = 0; j < p.x0.size(); ++j)
    clipped.x_lower[j] = std::max(p.x_lower[j], 0.1), clipped.x_upper[j] = std::min(p.x_upper[j], 0.9);
  for (const auto& e : all_engines(net)) {
    const auto a = e->bound({p}, o)[0];
    BoundOptions plain = o;
    plain.clip_to_box = false;
    const auto b = e->bound({clipped}, plain)[0];
    for (size_t k = 0; k < a.lower.size(); ++k)
      EXPECT_NEAR(a.lower[k], b.lower[k], 1e-6 * (1 + std::fabs(b.lower[k]))) << e->name();
  }
  // Bad boxes: sizes, NaN, x0 outside, another norm.
  auto expect_bad = [&](BoundProblem q, Norm norm) {
    for (const auto& e : all_engines(net))
      EXPECT_THROW(e->bound({q}, opts(norm, "adaptive")), InvalidArgument) << e->name();
  };
  BoundProblem q = clipped;
  q.x_upper.pop_back();
  expect_bad(q, Norm::Linf);
  q = clipped, q.x_lower[3] = std::nan("");
  expect_bad(q, Norm::Linf);
  q = clipped, q.x0[2] = q.x_upper[2] + 0.01;
  expect_bad(q, Norm::Linf);
  expect_bad(clipped, Norm::L2);
}

TEST(Engine, MarginBoundsShrinkAsEpsShrinks) {
  for (Family f : kFamilies)
    for (const char* m : {"fastlin", "adaptive"}) {
      SCOPED_TRACE(std::string(family_name(f)) + " " + m);
      const Network net = random_network(f, ActKind::Relu, 21);
      const auto x0 = random_input(22, net.input_size());
      std::vector<BoundProblem> ps;
      for (double eps : {0.0, 0.001, 0.004, 0.016, 0.064, 0.256}) ps.push_back(margin_problem(net, x0, eps));
      const auto r = make_cpu_engine(net, 1)->bound(ps, opts(Norm::Linf, m));
      for (size_t i = 1; i < r.size(); ++i)
        for (size_t k = 0; k < r[i].lower.size(); ++k) {
          EXPECT_LE(r[i].lower[k], r[i - 1].lower[k] + 1e-12) << "eps step " << i;
          EXPECT_GE(r[i].upper[k], r[i - 1].upper[k] - 1e-12) << "eps step " << i;
        }
    }
}

TEST(Engine, CnnAndItsDenseRewriteGiveIdenticalBounds) {
  for (Family f :
       {Family::Cnn, Family::CnnMaxPool, Family::CnnAvgPoolPadded, Family::Residual, Family::BatchNormStrided})
    for (Norm norm : kNorms)
      for (const char* m : {"fastlin", "adaptive"}) {
        SCOPED_TRACE(std::string(family_name(f)) + " " + norm_name(norm) + " " + m);
        const Network cnn = random_network(f, ActKind::Relu, 31);
        const Network dense = convert_to_dense(cnn);
        ASSERT_EQ(std::count_if(dense.nodes().begin(), dense.nodes().end(),
                                [](const Node& n) { return n.op == OpKind::Conv; }),
                  0);
        const auto x0 = random_input(32, cnn.input_size());
        const BoundProblem p = margin_problem(cnn, x0, norm == Norm::Linf ? 0.03 : 0.2);
        const auto a = make_cpu_engine(cnn, 1)->bound({p}, opts(norm, m));
        const auto b = make_cpu_engine(dense, 1)->bound({p}, opts(norm, m));
        for (size_t k = 0; k < a[0].lower.size(); ++k) {
          EXPECT_NEAR(a[0].lower[k], b[0].lower[k], 1e-10 * (1 + std::fabs(a[0].lower[k])));
          EXPECT_NEAR(a[0].upper[k], b[0].upper[k], 1e-10 * (1 + std::fabs(a[0].upper[k])));
        }
      }
}

// Fast-Lin (Weng et al. 2018) for an MLP, written independently with dense matrices: with equal
// upper and lower slopes d = u/(u−l), Λ = W_m D_{m−1} … D_1 W_1 is shared; the intercepts add
// −l·d on the positive (upper) or negative (lower) entries of each unstable neuron's column.
struct FastLinMlp {
  std::vector<DenseAttr> layers;  // ReLU after every layer but the last

  void bounds_of_layer(size_t m, const std::vector<double>& x0, double eps, const std::vector<std::vector<double>>& lo,
                       const std::vector<std::vector<double>>& hi, std::vector<double>& out_l,
                       std::vector<double>& out_u) const {
    // Λ starts as W_m (rows × n_{m-1}); walk down.
    const DenseAttr& top = layers[m];
    std::vector<std::vector<double>> lam(static_cast<size_t>(top.out_features));
    std::vector<double> bu(top.bias), bl(top.bias);
    for (int64_t r = 0; r < top.out_features; ++r)
      lam[static_cast<size_t>(r)].assign(top.weight.begin() + r * top.in_features,
                                         top.weight.begin() + (r + 1) * top.in_features);
    for (size_t k = m; k-- > 0;) {
      const DenseAttr& w = layers[k];
      for (size_t r = 0; r < lam.size(); ++r) {
        std::vector<double> next(static_cast<size_t>(w.in_features), 0.0);
        for (int64_t j = 0; j < w.out_features; ++j) {
          const double l = lo[k][static_cast<size_t>(j)], u = hi[k][static_cast<size_t>(j)];
          const double d = u <= 0 ? 0 : l > 0 ? 1 : u / (u - l);
          double a = lam[r][static_cast<size_t>(j)];
          if (u > 0 && l <= 0) {  // unstable: intercept −l·d on the side that needs the upper line
            if (a > 0)
              bu[r] += a * (-l * d);
            else
              bl[r] += a * (-l * d);
          }
          a *= d;
          bu[r] += a * w.bias[static_cast<size_t>(j)];
          bl[r] += a * w.bias[static_cast<size_t>(j)];
          for (int64_t i = 0; i < w.in_features; ++i)
            next[static_cast<size_t>(i)] += a * w.weight[static_cast<size_t>(j * w.in_features + i)];
        }
        lam[r] = next;
      }
    }
    out_l.resize(lam.size());
    out_u.resize(lam.size());
    for (size_t r = 0; r < lam.size(); ++r) {
      double c = 0, n1 = 0;
      for (size_t i = 0; i < x0.size(); ++i) c += lam[r][i] * x0[i], n1 += std::fabs(lam[r][i]);
      out_u[r] = c + bu[r] + eps * n1;
      out_l[r] = c + bl[r] - eps * n1;
    }
  }
};

TEST(Engine, DenseRewriteOfATooLargeNetworkIsAClearError) {
  const Network cnn = random_network(Family::Cnn, ActKind::Relu, 31);
  try {
    convert_to_dense(cnn, 100);
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("too large to convert"), std::string::npos) << e.what();
  }
}

TEST(Engine, FastlinOnAnMlpEqualsFastLinsClosedForm) {
  std::mt19937_64 rng(77);
  FastLinMlp ref;
  ref.layers = {random_dense(rng, 6, 7), random_dense(rng, 7, 5), random_dense(rng, 5, 3)};
  NetworkBuilder b;
  int h = b.input({6});
  for (size_t i = 0; i < ref.layers.size(); ++i) {
    h = b.dense(h, ref.layers[i]);
    if (i + 1 < ref.layers.size()) h = b.activation(h, ActKind::Relu);
  }
  const Network net = b.build(h);
  const auto x0 = random_input(78, 6);
  const double eps = 0.2;
  std::vector<std::vector<double>> lo(2), hi(2);
  std::vector<double> l, u;
  for (size_t m = 0; m < 3; ++m) {
    ref.bounds_of_layer(m, x0, eps, lo, hi, l, u);
    if (m < 2) lo[m] = l, hi[m] = u;
  }
  BoundOptions o = opts(Norm::Linf, "fastlin");
  o.want_intermediate = true;
  const auto r = make_cpu_engine(net, 1)->bound({logit_problem(net, x0, eps)}, o);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_NEAR(r[0].lower[k], l[k], 1e-12);
    EXPECT_NEAR(r[0].upper[k], u[k], 1e-12);
  }
  ASSERT_EQ(r[0].intermediate.size(), 2u);
  for (size_t m = 0; m < 2; ++m)
    for (size_t j = 0; j < lo[m].size(); ++j) {
      EXPECT_NEAR(r[0].intermediate[m].lower[j], lo[m][j], 1e-12);
      EXPECT_NEAR(r[0].intermediate[m].upper[j], hi[m][j], 1e-12);
    }
  // at least one neuron must have been unstable for this to test anything
  int unstable = 0;
  for (size_t m = 0; m < 2; ++m)
    for (size_t j = 0; j < lo[m].size(); ++j) unstable += lo[m][j] < 0 && hi[m][j] > 0;
  EXPECT_GT(unstable, 2);
}

TEST(Engine, LinearCoefficientsReproduceTheBounds) {
  const Network net = random_network(Family::Residual, ActKind::Tanh, 41);
  const auto x0 = random_input(42, net.input_size());
  BoundOptions o = opts(Norm::L2, "crown");
  o.want_linear = true;
  const BoundProblem p = margin_problem(net, x0, 0.2);
  const auto r = make_cpu_engine(net, 1)->bound({p}, o);
  const int64_t n = net.input_size();
  ASSERT_EQ(static_cast<int64_t>(r[0].a_lower.size()), p.rows * n);
  for (int64_t k = 0; k < p.rows; ++k) {
    double c = r[0].b_lower[static_cast<size_t>(k)], s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = r[0].a_lower[static_cast<size_t>(k * n + i)];
      c += a * x0[static_cast<size_t>(i)];
      s += a * a;
    }
    EXPECT_NEAR(c - 0.2 * std::sqrt(s), r[0].lower[static_cast<size_t>(k)], 1e-10);
  }
}

TEST(Engine, ThreadsAndBatchingDoNotChangeResults) {
  const Network net = random_network(Family::CnnMaxPool, ActKind::Sigmoid, 51);
  std::vector<BoundProblem> ps;
  for (int i = 0; i < 5; ++i)
    ps.push_back(margin_problem(net, random_input(60 + static_cast<uint64_t>(i), net.input_size()), 0.01 * (i + 1)));
  const auto one = make_cpu_engine(net, 1)->bound(ps, opts(Norm::Linf, "deepcert"));
  const auto two = make_cpu_engine(net, 2)->bound(ps, opts(Norm::Linf, "deepcert"));
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(one[i].lower, two[i].lower);
    const auto single = make_cpu_engine(net, 2)->bound({ps[i]}, opts(Norm::Linf, "deepcert"));
    EXPECT_EQ(one[i].lower, single[0].lower);
    EXPECT_EQ(one[i].upper, single[0].upper);
  }
}

TEST(Engine, BadProblemsAreRejected) {
  const Network net = random_network(Family::Mlp, ActKind::Relu, 1);
  auto e = make_cpu_engine(net, 1);
  BoundProblem p = logit_problem(net, random_input(1, net.input_size()), 0.1);
  BoundProblem short_x = p;
  short_x.x0.pop_back();
  EXPECT_THROW(e->bound({short_x}, opts(Norm::Linf, "fastlin")), InvalidArgument);
  BoundProblem nan_eps = p;
  nan_eps.eps = std::nan("");
  EXPECT_THROW(e->bound({nan_eps}, opts(Norm::Linf, "fastlin")), InvalidArgument);
  BoundProblem nan_x = p;
  nan_x.x0[3] = std::nan("");
  EXPECT_THROW(e->bound({nan_x}, opts(Norm::Linf, "fastlin")), InvalidArgument);
  EXPECT_THROW(parse_method("lp"), InvalidArgument);
  EXPECT_THROW(parse_norm("3"), InvalidArgument);
  // a huge radius overflows to non-finite bounds: reported, never certified
  BoundProblem huge = margin_problem(net, random_input(1, net.input_size()), 1.7e308);
  const auto r = e->bound({huge}, opts(Norm::Linf, "adaptive"));
  EXPECT_FALSE(r[0].error.empty());
  for (double v : r[0].lower) EXPECT_FALSE(v > 0);
}

// ---- real networks ------------------------------------------------------------------------------

void check_real_network(const std::filesystem::path& onnx, const std::vector<double>& x0, double eps, Norm norm,
                        const char* method) {
  SCOPED_TRACE(onnx.filename().string() + " " + method + " norm " + norm_name(norm));
  const Network net = import_onnx(onnx.string());
  const BoundProblem p = margin_problem(net, x0, eps);
  const auto r = make_cpu_engine(net)->bound({p}, opts(norm, method));
  ASSERT_TRUE(r[0].error.empty()) << r[0].error;
  check_sound(net, p, r[0], norm, 7, 20, 8);
}

std::vector<double> fixture_input(const std::string& stem, int index) {
  return fixture_inputs(stem, index, 1);
}

TEST(EngineRealNetworks, ShippedModelBoundsAreSound) {
  const auto model = source_dir() / "models/mnist_cnn_3layer_5_3.onnx";
  for (Norm norm : kNorms)
    check_real_network(model, fixture_input("mnist_cnn_3layer_5_3", 0),
                       norm == Norm::Linf ? 0.02
                       : norm == Norm::L2 ? 0.3
                                          : 1.0,
                       norm, "adaptive");
  check_real_network(model, fixture_input("mnist_cnn_3layer_5_3", 1), 0.02, Norm::Linf, "fastlin");
}

TEST(EngineRealNetworks, SharedNetworkBoundsAreSound) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const auto nets = shared_data() / "nets";
  check_real_network(nets / "mnist_verivital_convnet_maxpool.onnx", fixture_input("mnist_verivital_convnet_maxpool", 0),
                     0.004, Norm::Linf, "adaptive");
  check_real_network(nets / "mnist_marabou_cnn_maxpool2.onnx", fixture_input("mnist_marabou_cnn_maxpool2", 0), 0.01,
                     Norm::Linf, "fastlin");
  check_real_network(nets / "mnist_eran_sigmoid_6x200.onnx", fixture_input("mnist_eran_sigmoid_6x200", 0), 0.012,
                     Norm::Linf, "deepcert");
  check_real_network(nets / "mnist_nln_tansig_200_50.onnx", fixture_input("mnist_nln_tansig_200_50", 0), 1.0,
                     Norm::Linf, "crown");
  check_real_network(nets / "cifar_resnet_2b.onnx", fixture_input("cifar_resnet_2b", 0), 2.0 / 255 / 0.25, Norm::Linf,
                     "adaptive");
  check_real_network(nets / "cifar_oval21_base_kw.onnx", fixture_input("cifar_oval21_base_kw", 0), 0.1, Norm::L2,
                     "adaptive");
  check_real_network(nets / "cifar_abcrown_convsmall_sigmoid.onnx", fixture_input("cifar_abcrown_convsmall_sigmoid", 0),
                     0.005, Norm::Linf, "cnncert");
  check_real_network(nets / "mnist_colt_convmed_0.1.onnx", fixture_input("mnist_colt_convmed_0.1", 0), 0.05, Norm::Linf,
                     "adaptive");
  check_real_network(nets / "mnist_fc_256x2.onnx", fixture_input("mnist_fc_256x2", 1), 0.3, Norm::L2, "fastlin");
  check_real_network(nets / "mnist_marabou_fc_2x10.onnx", fixture_input("mnist_marabou_fc_2x10", 2), 1.0, Norm::L1,
                     "adaptive");
  check_real_network(nets / "mnist_marabou_sigmoid_64_32.onnx", fixture_input("mnist_marabou_sigmoid_64_32", 3), 0.02,
                     Norm::Linf, "crown");
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

// y = maxpool(σ(x1), σ(x2)) over a 1×2 window, x ∈ l-inf ball of radius 1.5 around (0.5, −0.2):
// pre-activation bounds z1 ∈ [−1, 2], z2 ∈ [−1.7, 1.3].
Network relu_maxpool_net(ActKind kind, double alpha = 0.01) {
  NetworkBuilder b;
  const int x = b.input({1, 1, 2});
  ConvAttr c;
  c.out_channels = c.in_channels = 1;
  c.weight = {1.0};
  c.bias = {0.0};
  const int a = b.activation(b.conv(x, c), kind, alpha);
  PoolAttr p;
  p.kernel_h = 1;
  p.kernel_w = 2;
  return b.build(b.max_pool(a, p));
}

/// The CPU reference engine and the float engine (the batched algorithm on the host) of `net`,
/// the reference first, to run one check on both.
std::vector<std::unique_ptr<BoundEngine>> both_engines(const Network& net, int threads = 1) {
  std::vector<std::unique_ptr<BoundEngine>> e;
  e.push_back(make_cpu_engine(net, threads));
  e.push_back(make_float_engine(net));
  return e;
}

// MATH.md §2.5 for two candidates with l = (l1, l2), u = (u1, u2), none with l = u and max l below
// both u: γ = (Σ u/(u−l) − 1) / Σ 1/(u−l), w = (u − γ)/(u − l), β_U = γ − Σ w l.
struct PoolLine {
  double w1, w2, beta_u;
};
PoolLine pool_line(double l1, double u1, double l2, double u2) {
  const double g = (u1 / (u1 - l1) + u2 / (u2 - l2) - 1) / (1 / (u1 - l1) + 1 / (u2 - l2));
  const double w1 = (u1 - g) / (u1 - l1), w2 = (u2 - g) / (u2 - l2);
  return {w1, w2, g - w1 * l1 - w2 * l2};
}

// The intermediate bounds reported for the (one) activation node of `net`, or null.
const NodeBounds* activation_bounds(const Network& net, const BoundResult& r) {
  for (const NodeBounds& b : r.intermediate)
    if (net.node(b.node).op == OpKind::Activation) return &b;
  return nullptr;
}

TEST(Engine, MaxPoolAfterReluTakesTheOriginalCnnCertInputBounds) {
  // ReLU 1 is unstable with u ≥ −l (adaptive lower slope 1): back-substitution gives it [−1, 2], the
  // original CNN-Cert rule [max(l,0), max(u,0)] = [0, 2]. ReLU 2 (u < −l, slope 0) is [0, 1.3] either way.
  const Network net = relu_maxpool_net(ActKind::Relu);
  const BoundProblem p{{0.5, -0.2}, 1.5, {1.0}, 1};
  const PoolLine now = pool_line(0, 2, 0, 1.3), before = pool_line(-1, 2, 0, 1.3);
  ASSERT_NEAR(now.w1 + now.w2, 1.0, 1e-12);  // lower intercept (min l)(1 − Σw) = 0 in both cases
  // upper: the ReLU upper lines (chords) at their maxima, u1 = 2 and u2 = 1.3; lower: r1 ≥ z1 ≥ −1, r2 ≥ 0
  const double upper = now.w1 * 2 + now.w2 * 1.3 + now.beta_u, lower = -now.w1;
  const double upper_before = before.w1 * 2 + before.w2 * 1.3 + before.beta_u, lower_before = -before.w1;
  ASSERT_GT(std::fabs(upper - upper_before), 0.1);  // the two rules are told apart
  ASSERT_GT(std::fabs(lower - lower_before), 0.1);
  BoundOptions o = opts(Norm::Linf, "adaptive");
  o.want_intermediate = true;
  const auto engines = both_engines(net);
  for (const auto& e : engines) {
    SCOPED_TRACE(e->name());
    const double tol = e == engines.front() ? 1e-12 : 1e-5;
    const auto r = e->bound({p}, o);
    ASSERT_TRUE(r[0].error.empty()) << r[0].error;
    EXPECT_NEAR(r[0].upper[0], upper, tol);
    EXPECT_NEAR(r[0].lower[0], lower, tol);
    // the pool's input bounds are reported as the ReLU node's intermediate bounds
    const NodeBounds* it = activation_bounds(net, r[0]);
    ASSERT_NE(it, nullptr);
    EXPECT_NEAR(it->lower[0], 0.0, tol);
    EXPECT_NEAR(it->upper[0], 2.0, tol);
    EXPECT_NEAR(it->lower[1], 0.0, tol);
    EXPECT_NEAR(it->upper[1], 1.3, tol);
  }
}

TEST(Engine, BoundsBeyondFloatingPointReliabilityFailClosed) {
  // A bias of 1e30 before a ReLU: the ball's effect (1e-3) is far below the rounding of the sums,
  // so the bounds would be "exact" numbers that need not contain the network's value. Both engines
  // report an error (not certified) instead (found by fuzz_onnx on a crafted residual net).
  NetworkBuilder b;
  const int x = b.input({2});
  const int h = b.activation(b.dense(x, DenseAttr{2, 2, {1, -1, 1, 1}, {1e30, -1e30}}), ActKind::Relu);
  const Network net = b.build(b.dense(h, DenseAttr{1, 2, {1, 1}, {0}}));
  const BoundProblem p{{0.5, 0.25}, 1e-3, {1.0}, 1};
  for (const auto& e : both_engines(net)) {
    SCOPED_TRACE(e->name());
    const auto r = e->bound({p}, opts(Norm::Linf, "adaptive"));
    EXPECT_NE(r[0].error.find("exceed 1e12"), std::string::npos) << r[0].error;
  }
  // a certification of it certifies nothing
  const Network two = [] {
    NetworkBuilder c;
    const int in = c.input({2});
    const int a = c.activation(c.dense(in, DenseAttr{2, 2, {1, -1, 1, 1}, {1e30, -1e30}}), ActKind::Relu);
    return c.build(c.dense(a, DenseAttr{2, 2, {1, 0, 0, 1}, {0, 0}}));
  }();
  auto e2 = make_cpu_engine(two, 1);
  CertifyOptions co;
  const auto res = certify(two, *e2, {0.5, 0.25}, {}, co);
  ASSERT_EQ(res.size(), 1u);
  ASSERT_FALSE(res[0].skipped) << res[0].skip_reason;
  EXPECT_EQ(res[0].targets.at(0).eps, 0.0);
  // within the limit: an ordinary bound
  const Network tame = [] {
    NetworkBuilder c;
    const int in = c.input({2});
    const int a = c.activation(c.dense(in, DenseAttr{2, 2, {1, -1, 1, 1}, {1e6, -1e6}}), ActKind::Relu);
    return c.build(c.dense(a, DenseAttr{1, 2, {1, 1}, {0}}));
  }();
  const auto ok = make_cpu_engine(tame, 1)->bound({p}, opts(Norm::Linf, "adaptive"));
  EXPECT_TRUE(ok[0].error.empty()) << ok[0].error;
}

TEST(Engine, MaxPoolAfterTanhAndLeakyRelu) {
  const BoundProblem p{{0.5, -0.2}, 1.5, {1.0}, 1};
  BoundOptions o = opts(Norm::Linf, "adaptive");
  o.want_intermediate = true;
  auto act_bounds = [&](const Network& net) {
    const auto r = make_cpu_engine(net, 1)->bound({p}, o);
    EXPECT_TRUE(r[0].error.empty()) << r[0].error;
    const NodeBounds* b = activation_bounds(net, r[0]);
    EXPECT_NE(b, nullptr) << "no activation bounds";
    return b ? *b : NodeBounds{};
  };
  // tanh is monotone: [tanh(l'), tanh(u')]
  const NodeBounds t = act_bounds(relu_maxpool_net(ActKind::Tanh));
  EXPECT_NEAR(t.lower[0], std::tanh(-1.0), 1e-12);
  EXPECT_NEAR(t.upper[1], std::tanh(1.3), 1e-12);
  // a LeakyRelu with a negative slope would not be monotone (the rule would not apply); the engines
  // reject such slopes altogether
  EXPECT_THROW(make_cpu_engine(relu_maxpool_net(ActKind::LeakyRelu, -0.5), 1)->bound({p}, o), Error);
  // LeakyRelu with a positive slope: [σ(l'), σ(u')] = [−0.1, 2] for the first neuron
  const NodeBounds lr = act_bounds(relu_maxpool_net(ActKind::LeakyRelu, 0.1));
  EXPECT_NEAR(lr.lower[0], -0.1, 1e-12);
  EXPECT_NEAR(lr.upper[0], 2.0, 1e-12);
}

TEST(Engine, LayerProgressCountsEveryBoundedLayerAndTheRows) {
  // two ReLU layers: their two input bounds, then the specification rows = 3 steps
  NetworkBuilder b;
  const int x = b.input({2});
  const int h1 = b.activation(b.dense(x, DenseAttr{2, 2, {1, -1, 1, 1}, {0, 0}}), ActKind::Relu);
  const int h2 = b.activation(b.dense(h1, DenseAttr{2, 2, {1, 1, -1, 1}, {0.1, 0}}), ActKind::Relu);
  const Network net = b.build(b.dense(h2, DenseAttr{1, 2, {1, 1}, {0}}));
  for (const auto& e : both_engines(net, 2)) {
    SCOPED_TRACE(e->name());
    std::vector<std::pair<int64_t, int64_t>> calls;
    BoundOptions o = opts(Norm::Linf, "adaptive");
    o.layer_progress = [&](int64_t d, int64_t t) { calls.emplace_back(d, t); };
    const BoundProblem p{{0.5, 0.25}, 0.1, {1.0}, 1};
    e->bound({p}, o);
    EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {1, 3}, {2, 3}}));
  }
}

TEST(Engine, MaxPoolAfterSigmoidUsesSigmoidOfThePreActivationBounds) {
  // Not the original's max(l,0), max(u,0) (no bound of σ there): [σ(l'), σ(u')].
  const Network net = relu_maxpool_net(ActKind::Sigmoid);
  const BoundProblem p{{0.5, -0.2}, 1.5, {1.0}, 1};
  auto sig = [](double z) { return 1 / (1 + std::exp(-z)); };
  for (const char* method : {"cnncert", "deepcert", "crown"}) {
    SCOPED_TRACE(method);
    BoundOptions o = opts(Norm::Linf, method);
    o.want_intermediate = true;
    const auto engines = both_engines(net);
    for (const auto& e : engines) {
      SCOPED_TRACE(e->name());
      const double tol = e == engines.front() ? 1e-12 : 1e-6;
      const auto r = e->bound({p}, o);
      ASSERT_TRUE(r[0].error.empty()) << r[0].error;
      const NodeBounds* it = activation_bounds(net, r[0]);
      ASSERT_NE(it, nullptr);
      EXPECT_NEAR(it->lower[0], sig(-1.0), tol);
      EXPECT_NEAR(it->upper[0], sig(2.0), tol);
      EXPECT_NEAR(it->lower[1], sig(-1.7), tol);
      EXPECT_NEAR(it->upper[1], sig(1.3), tol);
      // sound: the true range of max(σ(z1), σ(z2)) is [σ(−1), σ(2)]
      EXPECT_LE(r[0].lower[0], sig(-1.0) + tol);
      EXPECT_GE(r[0].upper[0], sig(2.0) - tol);
    }
  }
}

}  // namespace
}  // namespace cnncert::test
