// ONNX import: real networks against onnxruntime's logits, op coverage on models built in code,
// and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "cnncert/error.hpp"
#include "cnncert/images.hpp"
#include "cnncert/onnx.hpp"
#include "common/net_factory.hpp"
#include "common/test_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

using nlohmann::json;

/// Largest |a − b| relative to max(|b|∞, 1), row by row: the forward pass must match
/// onnxruntime to 1e-5 of the logits' scale.
double max_rel_error(const std::vector<double>& a, const std::vector<double>& b, int64_t classes) {
  double worst = 0;
  for (size_t r = 0; r * static_cast<size_t>(classes) < b.size(); ++r) {
    double scale = 1;
    for (int64_t k = 0; k < classes; ++k)
      scale = std::max(scale, std::fabs(b[r * static_cast<size_t>(classes) + static_cast<size_t>(k)]));
    for (int64_t k = 0; k < classes; ++k) {
      const size_t i = r * static_cast<size_t>(classes) + static_cast<size_t>(k);
      worst = std::max(worst, std::fabs(a[i] - b[i]) / scale);
    }
  }
  return worst;
}

void check_reference(const std::string& stem, const json& entry, const std::filesystem::path& onnx_path) {
  SCOPED_TRACE(stem);
  const auto dir = source_dir() / "tests/fixtures/reference";
  const Network net = import_onnx(onnx_path.string());
  const auto input = detail::read_npy((dir / (stem + ".input.npy")).string());
  const auto logits = detail::read_npy((dir / (stem + ".logits.npy")).string());
  const int64_t batch = input.shape.at(0);
  ASSERT_EQ(net.input_size() * batch, static_cast<int64_t>(input.data.size()));
  ASSERT_EQ(net.output_size(), entry["num_classes"].get<int64_t>());
  const auto out = net.forward(input.data.data(), batch);
  EXPECT_LE(max_rel_error(out, logits.data, net.output_size()), 1e-5);
  // float evaluation too (looser: float32 rounding through several layers)
  std::vector<float> xf(input.data.begin(), input.data.end());
  const auto outf = net.forward(xf.data(), batch);
  EXPECT_LE(max_rel_error(std::vector<double>(outf.begin(), outf.end()), logits.data, net.output_size()), 1e-4);
  // predictions match onnxruntime's
  const auto predicted = entry["predicted"].get<std::vector<int64_t>>();
  for (int64_t b = 0; b < batch; ++b) {
    const double* row = out.data() + b * net.output_size();
    EXPECT_EQ(std::max_element(row, row + net.output_size()) - row, predicted[static_cast<size_t>(b)]);
  }
}

json manifest() {
  std::ifstream f(source_dir() / "tests/fixtures/reference/manifest.json");
  return json::parse(f)["networks"];
}

TEST(OnnxReference, SharedNetworksMatchOnnxruntime) {
  CNNCERT_REQUIRE_SHARED_DATA();
  int checked = 0;
  const json m = manifest();
  for (const auto& [stem, entry] : m.items()) {
    if (entry["onnx_root"] != "shared_data") continue;
    check_reference(stem, entry, shared_data() / entry["onnx"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

TEST(OnnxReference, ShippedModelsMatchOnnxruntime) {
  int checked = 0;
  const json m = manifest();
  for (const auto& [stem, entry] : m.items()) {
    if (entry["onnx_root"] != "repo") continue;
    check_reference(stem, entry, source_dir() / entry["onnx"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

TEST(OnnxReference, EverySharedNetworkHasAFixture) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const json m = manifest();
  for (const auto& e : std::filesystem::directory_iterator(shared_data() / "nets")) {
    const std::string stem = e.path().stem().string();
    if (stem.find("sign") != std::string::npos) continue;
    EXPECT_TRUE(m.contains(stem)) << stem << " has no reference fixture: run tools/make_reference.py";
  }
}

TEST(OnnxReference, EveryShippedModelHasAFixtureAndItsAccuracy) {
  const json m = manifest();
  int models = 0;
  for (const auto& e : std::filesystem::directory_iterator(source_dir() / "models")) {
    if (e.path().extension() != ".onnx") continue;
    ++models;
    const std::string stem = e.path().stem().string();
    EXPECT_TRUE(m.contains(stem)) << stem << " has no reference fixture: run tools/make_reference.py";
    const auto side = load_sidecar(e.path().string());
    ASSERT_TRUE(side.has_value()) << stem << " has no sidecar";
    const json j = json::parse(read_file(e.path().string() + ".json"));
    EXPECT_TRUE(j.contains("test_accuracy")) << stem;
    EXPECT_GT(import_onnx(e.path().string()).activation_neurons(), 0) << stem;
  }
  EXPECT_GE(models, 11);
}

TEST(OnnxImport, SignNetworkIsRejectedAtTheSignNode) {
  CNNCERT_REQUIRE_SHARED_DATA();
  try {
    import_onnx((shared_data() / "nets/gtsrb_bnn_48_bn_maxpool_sign.onnx").string());
    FAIL() << "Sign accepted";
  } catch (const UnsupportedModel& e) {
    const std::string msg = e.what();
    // The Transpose, Conv, MaxPool and BatchNormalization before it imported; the error names Sign.
    EXPECT_NE(msg.find("op Sign"), std::string::npos) << msg;
    EXPECT_NE(msg.find("node '"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gtsrb_bnn_48_bn_maxpool_sign.onnx"), std::string::npos) << msg;
  }
}

TEST(OnnxImport, KnownStructureOfRealNetworks) {
  CNNCERT_REQUIRE_SHARED_DATA();
  // nln_tansig: trailing Softmax stripped with a note; dense layers written as convolutions.
  Network nln = import_onnx((shared_data() / "nets/mnist_nln_tansig_200_50.onnx").string());
  ASSERT_FALSE(nln.notes().empty());
  EXPECT_NE(nln.notes()[0].find("Softmax"), std::string::npos);
  EXPECT_EQ(nln.activation_neurons(), 250);
  // resnet_2b: two residual Adds, 6 244 ReLUs
  Network res = import_onnx((shared_data() / "nets/cifar_resnet_2b.onnx").string());
  EXPECT_EQ(std::count_if(res.nodes().begin(), res.nodes().end(), [](const Node& n) { return n.op == OpKind::Add; }),
            2);
  EXPECT_EQ(res.activation_neurons(), 6244);
  // eran sigmoid: Sub and Div of the input normalization merge into one scale/shift node
  Network eran = import_onnx((shared_data() / "nets/mnist_eran_sigmoid_6x200.onnx").string());
  EXPECT_EQ(
      std::count_if(eran.nodes().begin(), eran.nodes().end(), [](const Node& n) { return n.op == OpKind::ScaleShift; }),
      1);
  EXPECT_EQ(eran.activation_neurons(), 1200);
  // marabou sigmoid: MatMul + Add fold into dense layers
  Network mar = import_onnx((shared_data() / "nets/mnist_marabou_sigmoid_64_32.onnx").string());
  EXPECT_EQ(std::count_if(mar.nodes().begin(), mar.nodes().end(), [](const Node& n) { return n.op == OpKind::Dense; }),
            3);
  EXPECT_EQ(
      std::count_if(mar.nodes().begin(), mar.nodes().end(), [](const Node& n) { return n.op == OpKind::ScaleShift; }),
      0);
  const int64_t expected_neurons[][2] = {{0, 0}};
  (void)expected_neurons;
  EXPECT_EQ(import_onnx((shared_data() / "nets/mnist_verivital_convnet_maxpool.onnx").string()).activation_neurons(),
            23328);
  EXPECT_EQ(import_onnx((shared_data() / "nets/cifar_biasfield_base_allconv.onnx").string()).activation_neurons(),
            45056);
  EXPECT_EQ(import_onnx((shared_data() / "nets/mnist_marabou_cnn_maxpool2.onnx").string()).activation_neurons(), 6968);
  // 32×14×14 + 64×7×7 + 100 (the data README's 9,408 leaves out the dense layer's 100 ReLUs)
  EXPECT_EQ(import_onnx((shared_data() / "nets/mnist_colt_convmed_0.1.onnx").string()).activation_neurons(), 9508);
}

// ---- models built in code -----------------------------------------------------------------------

Network import_bytes(const std::string& bytes) {
  return import_onnx_bytes(bytes, "test.onnx");
}

TEST(OnnxImport, GemmTransposeAlphaBeta) {
  // W given as (K=2, N=3) with transB=0, alpha 2, beta 0.5
  const std::string m =
      onnx_model({onnx_node("Gemm", {"x", "W", "C"}, {"y"}, {attr_float("alpha", 2), attr_float("beta", 0.5)})},
                 {onnx_tensor("W", {2, 3}, {1, 2, 3, 4, 5, 6}), onnx_tensor("C", {3}, {2, 4, 6})},
                 onnx_value("x", {-1, 2}), onnx_value("y", {-1, 3}));
  Network net = import_bytes(m);
  const double x[2] = {1, -1};
  // x·W = [1-4, 2-5, 3-6] = [-3,-3,-3]; ×2 = -6; + 0.5*C = [-5, -4, -3]
  EXPECT_EQ(net.forward(x, 1), (std::vector<double>{-5, -4, -3}));

  const std::string t =
      onnx_model({onnx_node("Gemm", {"x", "W"}, {"y"}, {attr_int("transB", 1)})},
                 {onnx_tensor("W", {3, 2}, {1, 4, 2, 5, 3, 6})}, onnx_value("x", {-1, 2}), onnx_value("y", {-1, 3}));
  EXPECT_EQ(import_bytes(t).forward(x, 1), (std::vector<double>{-3, -3, -3}));
}

TEST(OnnxImport, MatMulAddFoldsIntoOneDenseLayer) {
  const std::string m = onnx_model({onnx_node("MatMul", {"x", "W"}, {"h"}), onnx_node("Add", {"h", "b"}, {"y"})},
                                   {onnx_tensor("W", {2, 2}, {1, 2, 3, 4}), onnx_tensor("b", {2}, {10, 20})},
                                   onnx_value("x", {-1, 2}), onnx_value("y", {-1, 2}));
  Network net = import_bytes(m);
  EXPECT_EQ(net.nodes().size(), 2u);
  const double x[2] = {1, 1};
  EXPECT_EQ(net.forward(x, 1), (std::vector<double>{14, 26}));
}

TEST(OnnxImport, ConvBatchNormFoldsExactly) {
  const std::vector<std::string> attrs = {attr_ints("kernel_shape", {1, 1})};
  const std::string m = onnx_model(
      {onnx_node("Conv", {"x", "W", "B"}, {"c"}, attrs),
       onnx_node("BatchNormalization", {"c", "g", "beta", "mu", "var"}, {"y"}, {attr_float("epsilon", 0.25)})},
      {onnx_tensor("W", {2, 1, 1, 1}, {2, -1}), onnx_tensor("B", {2}, {1, 0}), onnx_tensor("g", {2}, {3, 1}),
       onnx_tensor("beta", {2}, {0.5, 0}), onnx_tensor("mu", {2}, {1, 2}), onnx_tensor("var", {2}, {0.75, 3.75})},
      onnx_value("x", {-1, 1, 1, 1}), onnx_value("y", {-1, 2, 1, 1}));
  Network net = import_bytes(m);
  ASSERT_EQ(net.nodes().size(), 2u);
  EXPECT_EQ(net.node(1).onnx_op, "Conv+BatchNormalization");
  const double x[1] = {2};
  // conv: [5, -2]; BN: 3*(5-1)/sqrt(1) + 0.5 = 12.5 ; 1*(-2-2)/sqrt(4) = -2
  const auto y = net.forward(x, 1);
  EXPECT_NEAR(y[0], 12.5, 1e-12);
  EXPECT_NEAR(y[1], -2.0, 1e-12);
}

TEST(OnnxImport, ShapeGatherConcatReshapeChainFlattens) {
  // colt-style flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))
  const std::string m = onnx_model(
      {onnx_node("Shape", {"x"}, {"s"}), onnx_node("Gather", {"s", "zero"}, {"n"}, {attr_int("axis", 0)}),
       onnx_node("Unsqueeze", {"n", "ax"}, {"nu"}),
       onnx_node("Concat", {"nu", "minus1"}, {"shape"}, {attr_int("axis", 0)}),
       onnx_node("Reshape", {"x", "shape"}, {"f"}), onnx_node("Gemm", {"f", "W"}, {"y"}, {attr_int("transB", 1)})},
      {onnx_tensor("zero", {}, {0}, true), onnx_tensor("ax", {1}, {0}, true), onnx_tensor("minus1", {1}, {-1}, true),
       onnx_tensor("W", {1, 4}, {1, 2, 3, 4})},
      onnx_value("x", {-1, 1, 2, 2}), onnx_value("y", {-1, 1}));
  Network net = import_bytes(m);
  const double x[8] = {1, 1, 1, 1, 1, 0, 0, 1};
  EXPECT_EQ(net.forward(x, 2), (std::vector<double>{10, 5}));
}

TEST(OnnxImport, TrailingSoftmaxIsStrippedWithANote) {
  const std::string m = onnx_model({onnx_node("Relu", {"x"}, {"r"}), onnx_node("Softmax", {"r"}, {"y"})}, {},
                                   onnx_value("x", {-1, 3}), onnx_value("y", {-1, 3}));
  Network net = import_bytes(m);
  ASSERT_EQ(net.notes().size(), 1u);
  const double x[3] = {-1, 2, 3};
  EXPECT_EQ(net.forward(x, 1), (std::vector<double>{0, 2, 3}));
}

TEST(OnnxImport, NormalizationConstantsMergeIntoOneScaleShift) {
  const std::string m =
      onnx_model({onnx_node("Sub", {"x", "mean"}, {"a"}), onnx_node("Div", {"a", "std"}, {"y"})},
                 {onnx_tensor("mean", {1, 2, 1, 1}, {0.5, 1}), onnx_tensor("std", {1, 2, 1, 1}, {0.25, 2})},
                 onnx_value("x", {-1, 2, 1, 2}), onnx_value("y", {-1, 2, 1, 2}));
  Network net = import_bytes(m);
  ASSERT_EQ(net.nodes().size(), 2u);
  const double x[4] = {1, 0, 3, 5};
  EXPECT_EQ(net.forward(x, 1), (std::vector<double>{2, -2, 1, 2}));
}

TEST(OnnxImport, NhwcTransposeAndPoolingAttributes) {
  const std::string m = onnx_model(
      {onnx_node("Transpose", {"x"}, {"t"}, {attr_ints("perm", {0, 3, 1, 2})}),
       onnx_node("MaxPool", {"t"}, {"p"}, {attr_ints("kernel_shape", {2, 2}), attr_string("auto_pad", "VALID")}),
       onnx_node(
           "AveragePool", {"t"}, {"q"},
           {attr_ints("kernel_shape", {2, 2}), attr_ints("pads", {1, 1, 0, 0}), attr_int("count_include_pad", 1)}),
       onnx_node("GlobalAveragePool", {"q"}, {"g"}), onnx_node("Flatten", {"p"}, {"pf"}),
       onnx_node("Flatten", {"g"}, {"gf"}), onnx_node("Add", {"pf", "gf"}, {"y"})},
      {}, onnx_value("x", {-1, 2, 2, 1}), onnx_value("y", {-1, 1}));
  Network net = import_bytes(m);
  const double x[4] = {1, 2, 3, 4};  // HWC with C=1
  // max = 4; avg pool with one padded row/col on top-left, count_include_pad → windows:
  // [0,0;0,1]/4=0.25, [0,0;1,2]/4=0.75, [0,1;0,3]/4=1, [1,2;3,4]/4=2.5 → global mean 1.125
  EXPECT_NEAR(net.forward(x, 1).at(0), 4 + 1.125, 1e-12);
}

TEST(OnnxImport, UnsupportedOpNamesNodeAndOp) {
  const std::string m = onnx_model({onnx_node("Relu", {"x"}, {"r"}), onnx_node("Sign", {"r"}, {"y"}, {}, "the_sign")},
                                   {}, onnx_value("x", {-1, 3}), onnx_value("y", {-1, 3}));
  try {
    import_bytes(m);
    FAIL();
  } catch (const UnsupportedModel& e) {
    EXPECT_NE(std::string(e.what()).find("node 'the_sign' (op Sign)"), std::string::npos) << e.what();
  }
  // a product of two computed tensors is not linear
  const std::string mul =
      onnx_model({onnx_node("Mul", {"x", "x"}, {"y"})}, {}, onnx_value("x", {-1, 3}), onnx_value("y", {-1, 3}));
  EXPECT_THROW(import_bytes(mul), UnsupportedModel);
}

TEST(OnnxImport, NanWeightIsRejectedNamingTheNode) {
  const std::string m =
      onnx_model({onnx_node("Gemm", {"x", "W"}, {"y"}, {}, "fc_nan")}, {onnx_tensor("W", {2, 1}, {1, std::nan("")})},
                 onnx_value("x", {-1, 2}), onnx_value("y", {-1, 1}));
  try {
    import_bytes(m);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("fc_nan"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.onnx"), std::string::npos) << e.what();
  }
}

TEST(OnnxImport, MissingTruncatedAndNonOnnxFiles) {
  const auto dir = scratch_dir("onnx_bad");
  auto expect_error = [&](const std::filesystem::path& p, const std::string& needle) {
    try {
      import_onnx(p.string());
      FAIL() << p << " accepted";
    } catch (const InvalidArgument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p.filename().string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    }
  };
  expect_error(dir / "missing.onnx", "cannot open");
  write_file(dir / "empty.onnx", "");
  expect_error(dir / "empty.onnx", "empty");
  write_file(dir / "text.onnx", "this is not a model, just some text\n");
  expect_error(dir / "text.onnx", "ONNX");
  const std::string good = read_file(source_dir() / "models/mnist_cnn_3layer_5_3.onnx");
  ASSERT_GT(good.size(), 1000u);
  write_file(dir / "truncated.onnx", good.substr(0, good.size() / 2));
  expect_error(dir / "truncated.onnx", "truncated");
  // every prefix of a small model fails cleanly (no crash, no hang)
  const std::string small = onnx_model({onnx_node("Gemm", {"x", "W"}, {"y"})}, {onnx_tensor("W", {2, 1}, {1, 2})},
                                       onnx_value("x", {-1, 2}), onnx_value("y", {-1, 1}));
  for (size_t len = 0; len < small.size(); ++len) {
    try {
      import_onnx_bytes(small.substr(0, len), "prefix.onnx");
    } catch (const Error&) {
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(OnnxImport, CorruptedModelsFailCleanly) {
  // Random byte corruptions of a real model: every import either succeeds (the damage hit weight
  // bytes) or throws a cnncert::Error — never crashes, hangs or throws anything else.
  const std::string good = read_file(source_dir() / "models/mnist_cnn_lenet.onnx");
  ASSERT_GT(good.size(), 1000u);
  std::mt19937_64 rng(2024);
  int errors = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) {
      // bias towards the structure at the start of the file, where most of the framing lives
      const size_t pos = trial % 2 ? rng() % std::min<size_t>(bad.size(), 4096) : rng() % bad.size();
      bad[pos] = static_cast<char>(rng() & 0xff);
    }
    if (trial % 5 == 0) bad.resize(rng() % bad.size());
    try {
      const Network net = import_onnx_bytes(bad, "corrupt.onnx");
      std::vector<double> x(static_cast<size_t>(net.input_size()), 0.5);
      if (net.input_size() < 100000) net.forward(x.data(), 1);
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 50);  // the corruptions do hit the framing
}

TEST(OnnxExport, EveryFamilyRoundTrips) {
  for (Family f : {Family::Mlp, Family::Cnn, Family::CnnMaxPool, Family::CnnAvgPoolPadded, Family::Residual,
                   Family::BatchNormStrided})
    for (ActKind act : kAllActs) {
      SCOPED_TRACE(std::string(family_name(f)) + " " + act_name(act));
      const Network net = random_network(f, act, 3);
      const Network back = import_onnx_bytes(export_onnx_bytes(net), "roundtrip.onnx");
      ASSERT_EQ(back.input_shape(), net.input_shape());
      const auto x = random_input(4, net.input_size());
      const auto a = net.forward(x.data(), 1), b = back.forward(x.data(), 1);
      for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5 * (1 + std::fabs(a[k])));  // float32 weights
      EXPECT_EQ(back.activation_neurons(), net.activation_neurons());
    }
}

TEST(OnnxExport, PadAndTransposeRoundTrip) {
  NetworkBuilder b;
  int x = b.input({2, 3, 3});
  int y = b.pad(b.transpose(x, {1, 2, 0}), {1, 0, 0}, {0, 2, 1});
  const Network net = b.build(y);
  const Network back = import_onnx_bytes(export_onnx_bytes(net), "layout.onnx");
  const auto v = random_input(1, net.input_size());
  EXPECT_EQ(net.forward(v.data(), 1), back.forward(v.data(), 1));
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

/// Import must fail with an InvalidArgument/UnsupportedModel whose one-line message has `needle`.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  try {
    import_onnx_bytes(bytes, "crafted.onnx");
    ADD_FAILURE() << "accepted; expected an error with '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find("crafted.onnx"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(OnnxHardening, InputShapeWhoseProductWrapsIsRejected) {
  // (2^62 + 1) * 16 = 2^66 + 16 wraps to 16 in int64: buffers sized by 16, loops over 2^62 rows.
  const int64_t big = (int64_t{1} << 62) + 1;
  const std::string pool = attr_ints("kernel_shape", {2, 2});
  const std::string m = onnx_model({onnx_node("MaxPool", {"x"}, {"y"}, {pool})}, {}, onnx_value("x", {1, 1, big, 16}),
                                   onnx_value("y", {1, 1, 1, 8}));
  expect_rejected(m, "input 'x'");
  // no wrap-around, just more than 2^31 elements in one tensor
  expect_rejected(onnx_model({onnx_node("Relu", {"x"}, {"y"})}, {}, onnx_value("x", {1, 65536, 65536}),
                             onnx_value("y", {1, 65536, 65536})),
                  "elements");
  // within the limit for the input, beyond it after a padding node
  expect_rejected(
      onnx_model({onnx_node("Pad", {"x", "p"}, {"y"})}, {onnx_tensor("p", {6}, {0, 0, 0, 0, 1 << 24, 0}, true)},
                 onnx_value("x", {1, 256, 65536}), onnx_value("y", {1, 1, 1})),
      "node 'y_node'");
}

TEST(OnnxHardening, ReshapeTargetWhoseProductWrapsIsRejected) {
  // target (1, 2^62 + 1, 4): the product wraps to 4, the input's element count.
  const int64_t big = (int64_t{1} << 62) + 1;
  const std::string m = onnx_model({onnx_node("Reshape", {"x", "t"}, {"y"}, {}, "reshape_wrap")},
                                   {onnx_tensor("t", {3}, {1, static_cast<double>(big), 4}, true)},
                                   onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4}));
  expect_rejected(m, "reshape_wrap");
  // a negative dimension other than -1
  const std::string neg =
      onnx_model({onnx_node("Reshape", {"x", "t"}, {"y"}, {}, "reshape_neg")}, {onnx_tensor("t", {2}, {-2, -2}, true)},
                 onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4}));
  expect_rejected(neg, "reshape_neg");
}

TEST(OnnxHardening, WindowAttributesAreBoundedBeforeAnyArithmetic) {
  const std::string w = onnx_tensor("W", {1, 1, 2, 2}, {1, 1, 1, 1});
  // stride 0 with SAME padding divided by zero (SIGFPE) before the builder saw it
  expect_rejected(
      onnx_model({onnx_node("Conv", {"x", "W"}, {"y"},
                            {attr_ints("strides", {0, 1}), attr_string("auto_pad", "SAME_UPPER")}, "conv_s0")},
                 {w}, onnx_value("x", {-1, 1, 4, 4}), onnx_value("y", {-1, 1, 4, 4})),
      "conv_s0");
  // a dilation whose span overflows int64
  expect_rejected(
      onnx_model({onnx_node("Conv", {"x", "W"}, {"y"}, {attr_ints("dilations", {int64_t{1} << 62, 1})}, "conv_dil")},
                 {w}, onnx_value("x", {-1, 1, 4, 4}), onnx_value("y", {-1, 1, 4, 4})),
      "conv_dil");
  // groups so large that in_channels * groups wraps
  expect_rejected(
      onnx_model({onnx_node("Conv", {"x", "W"}, {"y"}, {attr_int("group", int64_t{1} << 62)}, "conv_groups")}, {w},
                 onnx_value("x", {-1, 1, 4, 4}), onnx_value("y", {-1, 1, 4, 4})),
      "conv_groups");
  // a pooling kernel beyond any input
  expect_rejected(
      onnx_model({onnx_node("MaxPool", {"x"}, {"y"}, {attr_ints("kernel_shape", {int64_t{1} << 40, 2})}, "pool_big")},
                 {}, onnx_value("x", {-1, 1, 4, 4}), onnx_value("y", {-1, 1, 4, 4})),
      "pool_big");
}

TEST(OnnxHardening, ConstantFoldingChecksSizesAndIntegers) {
  // ConstantOfShape asking for 2^40 elements from a 16-byte file
  expect_rejected(
      onnx_model({onnx_node("ConstantOfShape", {"s"}, {"c"}, {}, "cos_big"), onnx_node("Add", {"x", "c"}, {"y"})},
                 {onnx_tensor("s", {2}, {1 << 20, 1 << 20}, true)}, onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4})),
      "cos_big");
  // ... and 2^25 elements (below the per-tensor limit, but 256 MiB claimed by a tiny file)
  expect_rejected(
      onnx_model({onnx_node("ConstantOfShape", {"s"}, {"c"}, {}, "cos_growth"), onnx_node("Add", {"x", "c"}, {"y"})},
                 {onnx_tensor("s", {2}, {4096, 8192}, true)}, onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4})),
      "constant folding would create");
  // Concat of constants whose non-axis dimensions differ (read past the second input before)
  expect_rejected(onnx_model({onnx_node("Concat", {"a", "b"}, {"c"}, {attr_int("axis", 0)}, "concat_bad"),
                              onnx_node("Reshape", {"x", "c"}, {"y"})},
                             {onnx_tensor("a", {1, 2}, {1, 4}, true), onnx_tensor("b", {1, 1}, {1}, true)},
                             onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4})),
                  "concat_bad");
  // a float constant used as a shape whose value cannot be an integer (UB when cast)
  expect_rejected(onnx_model({onnx_node("Reshape", {"x", "t"}, {"y"}, {}, "reshape_inf")},
                             {onnx_tensor("t", {2}, {1, 1e30})}, onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4})),
                  "reshape_inf");
}

TEST(OnnxHardening, FuzzFindingsStayFixed) {
  // Relu of an initializer: an internal assertion before (found by fuzz_onnx), now a clear error.
  expect_rejected(
      onnx_model({onnx_node("Relu", {"b"}, {"r"}, {}, "relu_const"), onnx_node("Add", {"x", "r"}, {"y"})},
                 {onnx_tensor("b", {4}, {1, -1, 2, -2})}, onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4})),
      "relu_const");
  // A string tensor as a Gemm weight: dims (2, 1) but no numbers (read through a null pointer before).
  Pb str_w;
  str_w.varint(1, 2).varint(1, 1).varint(2, 8).bytes(8, "W");
  expect_rejected(onnx_model({onnx_node("Gemm", {"x", "W"}, {"y"})}, {str_w.str()}, onnx_value("x", {-1, 2}),
                             onnx_value("y", {-1, 1})),
                  "initializer 'W' holds no numbers");
  // Slice ends = INT64_MAX, as PyTorch exports x[..., 1:]: saturated, not rejected (and not an
  // undefined float-to-int cast).
  Pb ends;
  ends.varint(1, 1).varint(2, 7).bytes(8, "ends");
  const int64_t max = std::numeric_limits<int64_t>::max();
  ends.bytes(9, std::string(reinterpret_cast<const char*>(&max), 8));
  const std::string m =
      onnx_model({onnx_node("Shape", {"x"}, {"s"}), onnx_node("Slice", {"s", "st", "ends"}, {"t"}),
                  onnx_node("Reshape", {"x", "t"}, {"y"})},
                 {onnx_tensor("st", {1}, {0}, true), ends.str()}, onnx_value("x", {-1, 4}), onnx_value("y", {-1, 4}));
  const Network net = import_onnx_bytes(m, "slice.onnx");
  EXPECT_EQ(net.output_shape(), Shape{4});
}

TEST(OnnxHardening, ElementLimitCanBeLoweredAndRestored) {
  const std::string m =
      onnx_model({onnx_node("Relu", {"x"}, {"y"})}, {}, onnx_value("x", {-1, 64}), onnx_value("y", {-1, 64}));
  EXPECT_EQ(max_tensor_elements(), (int64_t{1} << 31) - 1);
  EXPECT_NO_THROW(import_onnx_bytes(m, "ok.onnx"));
  const Network built = import_onnx_bytes(m, "ok.onnx");
  set_max_tensor_elements(32);
  expect_rejected(m, "more than 32 elements");
  EXPECT_EQ(built.input_size(), 64);  // a network built before keeps working
  EXPECT_EQ(built.forward(std::vector<double>(64, -1.0).data(), 1).size(), 64u);
  set_max_tensor_elements((int64_t{1} << 31) - 1);
  EXPECT_NO_THROW(import_onnx_bytes(m, "ok.onnx"));
  EXPECT_THROW(set_max_tensor_elements(0), InvalidArgument);
  EXPECT_THROW(numel({3, -1}), InvalidArgument);
  EXPECT_THROW(numel({int64_t{1} << 32, int64_t{1} << 32}), InvalidArgument);
  EXPECT_EQ(numel({0, int64_t{1} << 62}), 0);
}

}  // namespace
}  // namespace cnncert::test
