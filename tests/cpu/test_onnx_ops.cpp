// ONNX ops that real benchmark networks use beyond the CNN-Cert families: Clip (ReLU6, Hardtanh)
// imported as exact ReLU compositions, ReduceMean / ReduceSum over the spatial axes, Elu, Softplus,
// Gelu (opset 20) and PyTorch's exported GELU/SiLU patterns, Concat, ConvTranspose, and inputs
// without a batch dimension. Each is checked against its definition or against onnxruntime's
// outputs (tests/fixtures/ops, tools/make_op_fixtures.py), and the bounds through it against
// sampled inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "common/engine_compare.hpp"
#include "common/test_util.hpp"

namespace cnncert::test {
namespace {

Network import_bytes(const std::string& bytes) {
  return import_onnx_bytes(bytes, "ops.onnx");
}

/// A model y = op(x) over x of 8 values, with `extra` initializers.
std::string unary(const std::string& node, const std::vector<std::string>& inits, int64_t opset = 13) {
  return onnx_model({node}, inits, onnx_value("x", {-1, 8}), onnx_value("y", {-1, 8}), opset);
}

TEST(OnnxOps, ClipIsTheClampEverywhere) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(-9, 9);
  struct Case {
    std::string model;
    double lo, hi;
  };
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<Case> cases = {
      {unary(onnx_node("Clip", {"x", "lo", "hi"}, {"y"}), {onnx_tensor("lo", {}, {0}), onnx_tensor("hi", {}, {6})}), 0,
       6},  // ReLU6
      {unary(onnx_node("Clip", {"x", "lo", "hi"}, {"y"}), {onnx_tensor("lo", {}, {-1}), onnx_tensor("hi", {}, {1})}),
       -1, 1},  // Hardtanh
      {unary(onnx_node("Clip", {"x", "", "hi"}, {"y"}), {onnx_tensor("hi", {}, {2.5})}), -inf, 2.5},
      {unary(onnx_node("Clip", {"x", "lo"}, {"y"}), {onnx_tensor("lo", {}, {-0.5})}), -0.5, inf},
      {unary(onnx_node("Clip", {"x"}, {"y"}, {attr_float("min", -2), attr_float("max", 3)}), {}, 6), -2,
       3},  // opset 6 attributes
  };
  for (const auto& c : cases) {
    const Network net = import_bytes(c.model);
    for (int k = 0; k < 50; ++k) {
      std::vector<double> x(8);
      for (double& v : x) v = u(rng);
      x[0] = c.lo, x[1] = c.hi;  // the corners themselves
      const auto y = net.forward(x.data(), 1);
      for (size_t i = 0; i < 8; ++i)
        if (std::isfinite(x[i]))
          EXPECT_NEAR(y[i], std::clamp(x[i], c.lo, c.hi), 1e-12) << c.lo << " " << c.hi << " at " << x[i];
    }
  }
  EXPECT_THROW(import_bytes(unary(onnx_node("Clip", {"x", "lo", "hi"}, {"y"}),
                                  {onnx_tensor("lo", {}, {2}), onnx_tensor("hi", {}, {1})})),
               UnsupportedModel);
  EXPECT_THROW(import_bytes(unary(onnx_node("Clip", {"x", "x"}, {"y"}), {})), UnsupportedModel);  // computed bound
}

TEST(OnnxOps, BoundsThroughClipContainEverySampledOutput) {
  // x (4) → Gemm → Clip(-1, 1) → Gemm → y (3), random weights; bounds of every logit at ε = 0.3.
  std::mt19937_64 rng(5);
  std::normal_distribution<double> g(0, 1);
  std::vector<double> w1(16), w2(12);
  for (double& v : w1) v = g(rng);
  for (double& v : w2) v = g(rng);
  const std::string m = onnx_model(
      {onnx_node("Gemm", {"x", "W1"}, {"h"}, {attr_int("transB", 1)}), onnx_node("Clip", {"h", "lo", "hi"}, {"c"}),
       onnx_node("Gemm", {"c", "W2"}, {"y"}, {attr_int("transB", 1)})},
      {onnx_tensor("W1", {4, 4}, w1), onnx_tensor("W2", {3, 4}, w2), onnx_tensor("lo", {}, {-1}),
       onnx_tensor("hi", {}, {1})},
      onnx_value("x", {-1, 4}), onnx_value("y", {-1, 3}));
  const Network net = import_bytes(m);
  BoundProblem p;
  p.x0 = {0.2, -0.4, 0.1, 0.5};
  p.eps = 0.3;
  p.rows = 3;
  p.spec = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  for (int engine = 0; engine < 2; ++engine) {
    // the reference to rounding; the fast engine with float32 coefficients (engine_compare.hpp)
    const BoundResult r = (engine == 0 ? make_cpu_engine(net, 1) : make_fast_engine(net, 1))->bound({p}, {})[0];
    const double tol = engine == 0 ? 1e-9 : kFloatSoundTol;
    ASSERT_TRUE(r.error.empty()) << r.error;
    std::uniform_real_distribution<double> u(-1, 1);
    for (int k = 0; k < 2000; ++k) {
      std::vector<double> x(4);
      for (size_t i = 0; i < 4; ++i) x[i] = p.x0[i] + p.eps * (k < 16 ? ((k >> i) & 1 ? 1 : -1) : u(rng));
      const auto y = net.forward(x.data(), 1);
      for (size_t j = 0; j < 3; ++j) {
        EXPECT_GE(y[j], r.lower[j] - tol * (1 + std::fabs(y[j])));
        EXPECT_LE(y[j], r.upper[j] + tol * (1 + std::fabs(y[j])));
      }
    }
  }
}

TEST(OnnxOps, ReduceMeanAndSumOverTheSpatialAxes) {
  std::vector<double> x(2 * 3 * 4);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5 * static_cast<double>(i) - 3;
  auto model = [&](const std::string& op, int64_t keepdims) {
    const std::vector<int64_t> out = keepdims ? std::vector<int64_t>{-1, 2, 1, 1} : std::vector<int64_t>{-1, 2};
    return onnx_model({onnx_node(op, {"x"}, {"y"}, {attr_ints("axes", {2, 3}), attr_int("keepdims", keepdims)})}, {},
                      onnx_value("x", {-1, 2, 3, 4}), onnx_value("y", out));
  };
  for (const std::string op : {"ReduceMean", "ReduceSum"})
    for (int64_t keep : {0, 1}) {
      const Network net = import_bytes(model(op, keep));
      EXPECT_EQ(net.output_size(), 2);
      const auto y = net.forward(x.data(), 1);
      for (int c = 0; c < 2; ++c) {
        double sum = 0;
        for (int i = 0; i < 12; ++i) sum += x[static_cast<size_t>(c * 12 + i)];
        EXPECT_NEAR(y[static_cast<size_t>(c)], op == "ReduceSum" ? sum : sum / 12, 1e-12) << op << " keepdims " << keep;
      }
    }
  const std::string channels = onnx_model({onnx_node("ReduceMean", {"x"}, {"y"}, {attr_ints("axes", {1})})}, {},
                                          onnx_value("x", {-1, 2, 3, 4}), onnx_value("y", {-1, 1, 3, 4}));
  try {
    import_bytes(channels);
    FAIL() << "a reduction over channels was accepted";
  } catch (const UnsupportedModel& e) {
    EXPECT_NE(std::string(e.what()).find("spatial axes"), std::string::npos) << e.what();
  }
}

// ---- Fixtures from onnxruntime ------------------------------------------------------------------

struct OpFixture {
  const char* stem;
  Shape input_shape;
  std::vector<const char*> ops;  ///< node kinds (act_name / op_name) the import must contain
};

const std::vector<OpFixture> kOpFixtures = {
    {"elu_softplus", {6}, {"Elu", "Softplus"}}, {"gelu_opset20", {6}, {"Gelu", "GeluTanh"}},
    {"torch_gelu_silu", {6}, {"Gelu", "Silu"}}, {"concat_convtranspose", {2, 5, 5}, {"Pad", "Add", "Dense"}},
    {"rank1_mlp", {5}, {"Dense", "Relu"}},      {"rank2_nobatch", {4, 6}, {"Dense", "Tanh"}},
};

std::filesystem::path op_fixture(const std::string& file) {
  return source_dir() / "tests/fixtures/ops" / file;
}

bool has_kind(const Network& net, const std::string& kind) {
  for (const Node& n : net.nodes()) {
    if (n.op == OpKind::Activation && kind == act_name(n.as<ActAttr>().kind)) return true;
    if (n.op != OpKind::Activation && kind == op_name(n.op)) return true;
  }
  return false;
}

TEST(OnnxOps, NewOpsMatchOnnxruntimeOnTheFixtures) {
  for (const OpFixture& f : kOpFixtures) {
    SCOPED_TRACE(f.stem);
    const Network net = import_onnx(op_fixture(std::string(f.stem) + ".onnx").string());
    EXPECT_EQ(net.input_shape(), f.input_shape);
    for (const char* k : f.ops) EXPECT_TRUE(has_kind(net, k)) << "no " << k << " node";
    const auto in = detail::read_npy(op_fixture(std::string(f.stem) + ".input.npy").string());
    const auto want = detail::read_npy(op_fixture(std::string(f.stem) + ".logits.npy").string());
    const int64_t batch = in.shape[0];
    ASSERT_EQ(batch * net.input_size(), static_cast<int64_t>(in.data.size()));
    ASSERT_EQ(batch * net.output_size(), static_cast<int64_t>(want.data.size()));
    const auto got = net.forward(in.data.data(), batch);
    for (size_t i = 0; i < got.size(); ++i)  // onnxruntime computes in float32
      EXPECT_NEAR(got[i], want.data[i], 3e-5 * (1 + std::fabs(want.data[i]))) << "output " << i;
  }
}

TEST(OnnxOps, BoundsThroughTheNewOpsContainSampledOutputs) {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const OpFixture& f : kOpFixtures) {
    const Network net = import_onnx(op_fixture(std::string(f.stem) + ".onnx").string());
    const auto in = detail::read_npy(op_fixture(std::string(f.stem) + ".input.npy").string());
    BoundProblem p;
    p.x0.assign(in.data.begin(), in.data.begin() + net.input_size());
    p.eps = 0.05;
    p.rows = net.output_size();
    p.spec.assign(static_cast<size_t>(p.rows * p.rows), 0.0);
    for (int64_t r = 0; r < p.rows; ++r) p.spec[static_cast<size_t>(r * p.rows + r)] = 1;
    for (const char* method : {"crown", "deepcert", "adaptive"})
      for (int engine = 0; engine < 3; ++engine) {
        SCOPED_TRACE(std::string(f.stem) + " " + method + " engine " + std::to_string(engine));
        BoundOptions o;
        o.method = parse_method(method);
        auto e = engine == 0   ? make_cpu_engine(net, 1)
                 : engine == 1 ? make_fast_engine(net, 1)
                               : make_float_engine(net);
        const BoundResult r = e->bound({p}, o)[0];
        ASSERT_TRUE(r.error.empty()) << r.error;
        // the float engine rounds everything to float, the fast engine its coefficients (weights too)
        const double slack = engine == 2 ? 1e-4 : engine == 1 ? kFloatSoundTol : 1e-9;
        for (int k = 0; k < 300; ++k) {
          std::vector<double> x(p.x0);
          for (double& v : x)
            v += p.eps * (k < 150 ? (u(rng) > 0 ? 1 : -1) : u(rng));  // vertices of the box, then inside
          const auto y = net.forward(x.data(), 1);
          for (size_t j = 0; j < y.size(); ++j) {
            ASSERT_GE(y[j], r.lower[j] - slack * (1 + std::fabs(y[j])));
            ASSERT_LE(y[j], r.upper[j] + slack * (1 + std::fabs(y[j])));
          }
        }
        for (size_t j = 0; j < r.lower.size(); ++j)
          EXPECT_LT(r.upper[j] - r.lower[j], 50) << "bound " << j << " is useless";
      }
  }
}

TEST(OnnxOps, ConcatIsExactWithConstantsAndAlongAnyAxis) {
  // y = Concat(axis 2)(x, K, x·2) over (N, 2, 3) inputs: (2, 3 + 1 + 3) per sample.
  const std::string m = onnx_model(
      {onnx_node("Mul", {"x", "two"}, {"x2"}), onnx_node("Concat", {"x", "K", "x2"}, {"y"}, {attr_int("axis", -1)})},
      {onnx_tensor("two", {}, {2}), onnx_tensor("K", {1, 2, 1}, {7, -7})}, onnx_value("x", {-1, 2, 3}),
      onnx_value("y", {-1, 2, 7}));
  const Network net = import_bytes(m);
  ASSERT_EQ(net.output_shape(), (Shape{2, 7}));
  const std::vector<double> x = {1, 2, 3, 4, 5, 6};
  const auto y = net.forward(x.data(), 1);
  const std::vector<double> want = {1, 2, 3, 7, 2, 4, 6, 4, 5, 6, -7, 8, 10, 12};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(y[i], want[i]) << i;
  const std::string batch_axis = onnx_model({onnx_node("Concat", {"x", "x"}, {"y"}, {attr_int("axis", 0)})}, {},
                                            onnx_value("x", {-1, 2, 3}), onnx_value("y", {-1, 2, 3}));
  EXPECT_THROW(import_bytes(batch_axis), UnsupportedModel);
  const std::string mismatch =
      onnx_model({onnx_node("Concat", {"x", "K"}, {"y"}, {attr_int("axis", 1)})}, {onnx_tensor("K", {1, 1, 2}, {1, 2})},
                 onnx_value("x", {-1, 2, 3}), onnx_value("y", {-1, 3, 3}));
  EXPECT_THROW(import_bytes(mismatch), UnsupportedModel);
  const std::string ranks =
      onnx_model({onnx_node("Flatten", {"x"}, {"f"}), onnx_node("Concat", {"x", "f"}, {"y"}, {attr_int("axis", 1)})},
                 {}, onnx_value("x", {-1, 2, 3}), onnx_value("y", {-1, 8}));
  EXPECT_THROW(import_bytes(ranks), UnsupportedModel);  // computed operands of different ranks
}

TEST(OnnxOps, ConvTransposeMatchesItsDefinition) {
  // One input channel, one output channel, stride 2, a 2×2 kernel: each input value stamps the
  // kernel scaled by itself at (2i, 2j); bias 0.5.
  const std::string m = onnx_model({onnx_node("ConvTranspose", {"x", "W", "B"}, {"y"}, {attr_ints("strides", {2, 2})})},
                                   {onnx_tensor("W", {1, 1, 2, 2}, {1, 2, 3, 4}), onnx_tensor("B", {1}, {0.5})},
                                   onnx_value("x", {-1, 1, 2, 2}), onnx_value("y", {-1, 1, 4, 4}));
  const Network net = import_bytes(m);
  ASSERT_EQ(net.output_shape(), (Shape{1, 4, 4}));
  const std::vector<double> x = {1, -1, 2, 10};
  const auto y = net.forward(x.data(), 1);
  const double k[4] = {1, 2, 3, 4};
  for (int iy = 0; iy < 2; ++iy)
    for (int ix = 0; ix < 2; ++ix)
      for (int ky = 0; ky < 2; ++ky)
        for (int kx = 0; kx < 2; ++kx)
          EXPECT_DOUBLE_EQ(y[static_cast<size_t>((2 * iy + ky) * 4 + 2 * ix + kx)],
                           x[static_cast<size_t>(iy * 2 + ix)] * k[ky * 2 + kx] + 0.5);
  const std::string huge = onnx_model({onnx_node("ConvTranspose", {"x", "W"}, {"y"}, {attr_ints("strides", {4, 4})})},
                                      {onnx_tensor("W", {1, 8, 4, 4}, std::vector<double>(128, 0.1))},
                                      onnx_value("x", {-1, 1, 64, 64}), onnx_value("y", {-1, 8, 256, 256}));
  try {
    import_bytes(huge);
    FAIL() << "a 4096 × 524288 dense map was accepted";
  } catch (const UnsupportedModel& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  // A small map that would take 2^34 kernel taps to fill (a 1 × 16384 kernel over 2^20 inputs,
  // padded down to one output): refused before any work.
  const std::string slow =
      onnx_model({onnx_node("ConvTranspose", {"x", "W"}, {"y"}, {attr_ints("pads", {0, 524288, 0, 540670})})},
                 {onnx_tensor("W", {1, 1, 1, 16384}, std::vector<double>(16384, 0.1))},
                 onnx_value("x", {-1, 1, 1, 1 << 20}), onnx_value("y", {-1, 1, 1, 1}));
  try {
    import_bytes(slow);
    FAIL() << "2^34 taps were accepted";
  } catch (const UnsupportedModel& e) {
    EXPECT_NE(std::string(e.what()).find("too many kernel taps"), std::string::npos) << e.what();
  }
  // output_shape with an odd total padding: the ONNX text and onnxruntime place the extra row
  // differently, so it is refused; an even one is exact.
  auto with_shape = [&](int64_t out) {
    return onnx_model({onnx_node("ConvTranspose", {"x", "W"}, {"y"},
                                 {attr_ints("strides", {2, 2}), attr_ints("output_shape", {out, out})})},
                      {onnx_tensor("W", {1, 1, 3, 3}, std::vector<double>(9, 1.0))}, onnx_value("x", {-1, 1, 3, 3}),
                      onnx_value("y", {-1, 1, out, out}));
  };
  EXPECT_THROW(import_bytes(with_shape(6)), UnsupportedModel);  // full size 7: total padding 1
  EXPECT_EQ(import_bytes(with_shape(5)).output_shape(), (Shape{1, 5, 5}));
}

TEST(OnnxOps, ActivationAttributesAndPatternsAreChecked) {
  EXPECT_THROW(import_bytes(unary(onnx_node("Gelu", {"x"}, {"y"}, {attr_string("approximate", "erf")}), {}, 20)),
               UnsupportedModel);
  EXPECT_THROW(import_bytes(unary(onnx_node("Elu", {"x"}, {"y"}, {attr_float("alpha", -1)}), {})), UnsupportedModel);
  // x·(1 + Erf(x/1.5)): the GELU pattern with any divisor, rewritten exactly (no tolerance).
  const std::string gate = onnx_model({onnx_node("Div", {"x", "d"}, {"a"}), onnx_node("Erf", {"a"}, {"e"}),
                                       onnx_node("Add", {"e", "one"}, {"g"}), onnx_node("Mul", {"x", "g"}, {"y"})},
                                      {onnx_tensor("d", {}, {1.5}), onnx_tensor("one", {}, {1})},
                                      onnx_value("x", {-1, 8}), onnx_value("y", {-1, 8}));
  const Network gelu = import_bytes(gate);
  const std::vector<double> xs = {-4, -1.3, -0.2, 0, 0.3, 1, 2.5, 7};
  const auto gy = gelu.forward(xs.data(), 1);
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_NEAR(gy[i], xs[i] * (1 + std::erf(xs[i] / 1.5)), 1e-13) << xs[i];
  const Network elu = import_bytes(unary(onnx_node("Elu", {"x"}, {"y"}), {}));  // alpha defaults to 1
  const std::vector<double> x = {-2, -0.5, 0, 0.5, 3, -30, 1e-3, -1e-3};
  const auto y = elu.forward(x.data(), 1);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i] >= 0 ? x[i] : std::expm1(x[i]), 1e-15);
  // x·Sigmoid(z) with z ≠ x is a product of two computed tensors: refused with the reason.
  const std::string other = onnx_model(
      {onnx_node("Neg", {"x"}, {"z"}), onnx_node("Sigmoid", {"z"}, {"s"}), onnx_node("Mul", {"x", "s"}, {"y"})}, {},
      onnx_value("x", {-1, 8}), onnx_value("y", {-1, 8}));
  try {
    import_bytes(other);
    FAIL() << "x * Sigmoid(-x)... accepted";
  } catch (const UnsupportedModel& e) {
    EXPECT_NE(std::string(e.what()).find("not linear"), std::string::npos) << e.what();
  }
}

TEST(OnnxOps, InputsWithoutABatchDimension) {
  // Rank 1: MatMul, Add and activations work; a Conv needs (N, C, H, W) and says so.
  const std::string conv = onnx_model({onnx_node("Conv", {"x", "W"}, {"y"})}, {onnx_tensor("W", {1, 1, 1, 1}, {1})},
                                      onnx_value("x", {8}), onnx_value("y", {8}));
  try {
    import_bytes(conv);
    FAIL() << "a Conv on a rank-1 tensor was accepted";
  } catch (const UnsupportedModel& e) {
    EXPECT_NE(std::string(e.what()).find("batch dimension"), std::string::npos) << e.what();
  }
  // Unsqueeze(0) gives the rank-1 tensor a batch of 1; a Gemm may follow.
  const std::string unsq = onnx_model(
      {onnx_node("Unsqueeze", {"x", "axes"}, {"u"}), onnx_node("Gemm", {"u", "W"}, {"y"}, {attr_int("transB", 1)})},
      {onnx_tensor("axes", {1}, {0}, true), onnx_tensor("W", {2, 8}, std::vector<double>(16, 0.5))},
      onnx_value("x", {8}), onnx_value("y", {1, 2}));
  const Network net = import_bytes(unsq);
  EXPECT_EQ(net.input_shape(), Shape{8});
  const std::vector<double> x(8, 1.0);
  EXPECT_DOUBLE_EQ(net.forward(x.data(), 1)[1], 4.0);
  // A fixed first dimension above 1 at rank 3 or more is still a batch and refused.
  EXPECT_THROW(import_bytes(onnx_model({onnx_node("Relu", {"x"}, {"y"})}, {}, onnx_value("x", {2, 3, 4}),
                                       onnx_value("y", {2, 3, 4}))),
               UnsupportedModel);
}

}  // namespace
}  // namespace cnncert::test
