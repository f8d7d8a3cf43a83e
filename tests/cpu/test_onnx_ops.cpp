// ONNX ops that real benchmark networks use beyond the CNN-Cert families: Clip (ReLU6, Hardtanh)
// imported as exact ReLU compositions, ReduceMean / ReduceSum over the spatial axes. Each is checked
// against its definition pointwise, and the bounds through it against sampled inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "test_util.hpp"

namespace cnncert::test {
namespace {

Network import_bytes(const std::string& bytes) { return import_onnx_bytes(bytes, "ops.onnx"); }

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
      {unary(onnx_node("Clip", {"x", "lo", "hi"}, {"y"}), {onnx_tensor("lo", {}, {0}), onnx_tensor("hi", {}, {6})}), 0, 6},  // ReLU6
      {unary(onnx_node("Clip", {"x", "lo", "hi"}, {"y"}), {onnx_tensor("lo", {}, {-1}), onnx_tensor("hi", {}, {1})}), -1, 1},  // Hardtanh
      {unary(onnx_node("Clip", {"x", "", "hi"}, {"y"}), {onnx_tensor("hi", {}, {2.5})}), -inf, 2.5},
      {unary(onnx_node("Clip", {"x", "lo"}, {"y"}), {onnx_tensor("lo", {}, {-0.5})}), -0.5, inf},
      {unary(onnx_node("Clip", {"x"}, {"y"}, {attr_float("min", -2), attr_float("max", 3)}), {}, 6), -2, 3},  // opset 6 attributes
  };
  for (const auto& c : cases) {
    const Network net = import_bytes(c.model);
    for (int k = 0; k < 50; ++k) {
      std::vector<double> x(8);
      for (double& v : x) v = u(rng);
      x[0] = c.lo, x[1] = c.hi;  // the corners themselves
      const auto y = net.forward(x.data(), 1);
      for (size_t i = 0; i < 8; ++i)
        if (std::isfinite(x[i])) EXPECT_NEAR(y[i], std::clamp(x[i], c.lo, c.hi), 1e-12) << c.lo << " " << c.hi << " at " << x[i];
    }
  }
  EXPECT_THROW(import_bytes(unary(onnx_node("Clip", {"x", "lo", "hi"}, {"y"}), {onnx_tensor("lo", {}, {2}), onnx_tensor("hi", {}, {1})})),
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
  const std::string m = onnx_model({onnx_node("Gemm", {"x", "W1"}, {"h"}, {attr_int("transB", 1)}),
                                    onnx_node("Clip", {"h", "lo", "hi"}, {"c"}), onnx_node("Gemm", {"c", "W2"}, {"y"}, {attr_int("transB", 1)})},
                                   {onnx_tensor("W1", {4, 4}, w1), onnx_tensor("W2", {3, 4}, w2), onnx_tensor("lo", {}, {-1}),
                                    onnx_tensor("hi", {}, {1})},
                                   onnx_value("x", {-1, 4}), onnx_value("y", {-1, 3}));
  const Network net = import_bytes(m);
  BoundProblem p;
  p.x0 = {0.2, -0.4, 0.1, 0.5};
  p.eps = 0.3;
  p.rows = 3;
  p.spec = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  for (auto make : {+[](const Network& n) { return make_cpu_engine(n, 1); }, +[](const Network& n) { return make_fast_engine(n, 1); }}) {
    const BoundResult r = make(net)->bound({p}, {})[0];
    ASSERT_TRUE(r.error.empty()) << r.error;
    std::uniform_real_distribution<double> u(-1, 1);
    for (int k = 0; k < 2000; ++k) {
      std::vector<double> x(4);
      for (size_t i = 0; i < 4; ++i) x[i] = p.x0[i] + p.eps * (k < 16 ? ((k >> i) & 1 ? 1 : -1) : u(rng));
      const auto y = net.forward(x.data(), 1);
      for (size_t j = 0; j < 3; ++j) {
        EXPECT_GE(y[j], r.lower[j] - 1e-9);
        EXPECT_LE(y[j], r.upper[j] + 1e-9);
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

}  // namespace
}  // namespace cnncert::test
