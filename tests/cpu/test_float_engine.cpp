// The GPU engine's algorithm (host/engine/batched_engine.cpp) run on the CPU in float32 through the
// host implementation of its primitive operations, compared with the double-precision CPU
// reference engine: every family, activation, method and norm; chunking; input box; the
// certified radii; engine selection. The CUDA implementation runs the same algorithm and the
// same element bodies; tests/gpu compares it with the CPU engine on a real GPU.
#include <gtest/gtest.h>

#include "cnncert/certify.hpp"
#include "cnncert/cuda.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "common/engine_compare.hpp"
#include "common/test_util.hpp"
#include "engine/batched_engine.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

TEST(FloatEngine, MatchesTheCpuEngineOnEveryFamilyMethodAndNorm) {
  const double worst = compare_on_random_networks([](const Network& net) { return make_float_engine(net); });
  std::printf("largest |float - double| / tolerance: %.3g\n", worst);
}

TEST(FloatEngine, ChunksOfAnySizeGiveBitIdenticalResults) {
  // A budget of a few rows per chunk: chunks start in the middle of a problem's neurons and
  // span problems; rows are independent, so every value must be exactly the same.
  for (Family f : {Family::Residual, Family::CnnMaxPool, Family::BatchNormStrided}) {
    const Network net = random_network(f, ActKind::Relu, 77);
    auto big = make_float_engine(net);
    auto tiny = batched::make_batched_engine(net, batched::make_host_ops(3000));
    BoundOptions o;
    o.want_intermediate = o.want_linear = true;
    const auto ps = margin_problems(net, 4, 0.05, 5);
    const auto a = big->bound(ps, o), b = tiny->bound(ps, o);
    ASSERT_EQ(a.size(), b.size());
    for (size_t p = 0; p < a.size(); ++p) {
      EXPECT_EQ(a[p].lower, b[p].lower) << family_name(f);
      EXPECT_EQ(a[p].upper, b[p].upper) << family_name(f);
      EXPECT_EQ(a[p].a_lower, b[p].a_lower) << family_name(f);
      ASSERT_EQ(a[p].intermediate.size(), b[p].intermediate.size());
      for (size_t i = 0; i < a[p].intermediate.size(); ++i)
        EXPECT_EQ(a[p].intermediate[i].lower, b[p].intermediate[i].lower);
    }
  }
}

TEST(FloatEngine, ProblemsWithDifferentRowCountsAndEmptySpecs) {
  const Network net = random_network(Family::Cnn, ActKind::Relu, 3);
  auto ps = margin_problems(net, 3, 0.03, 11);
  ps[1].rows = 0;
  ps[1].spec.clear();
  ps[2].rows = 1;
  ps[2].spec.resize(static_cast<size_t>(net.output_size()));
  BoundOptions o;
  compare_results(make_float_engine(net)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), "mixed rows");
  EXPECT_TRUE(make_float_engine(net)->bound({}, o).empty());
}

TEST(FloatEngine, InputBoxClippingMatchesTheCpuEngine) {
  const Network net = random_network(Family::CnnAvgPoolPadded, ActKind::Relu, 9);
  auto ps = margin_problems(net, 2, 0.3, 21);
  for (auto& p : ps)
    for (double& v : p.x0) v = 0.5 + 0.4 * std::tanh(v);  // inside [0, 1]
  BoundOptions o;
  o.clip_to_box = true;
  o.box_lo = 0, o.box_hi = 1;
  compare_results(make_float_engine(net)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), "clip");
}

TEST(FloatEngine, BadProblemsAreRejectedLikeTheCpuEngine) {
  const Network net = random_network(Family::Mlp, ActKind::Relu, 1);
  auto ps = margin_problems(net, 1, 0.1, 1);
  ps[0].x0[3] = std::nan("");
  EXPECT_THROW(make_float_engine(net)->bound(ps, {}), InvalidArgument);
  ps = margin_problems(net, 1, -0.1, 1);
  EXPECT_THROW(make_float_engine(net)->bound(ps, {}), InvalidArgument);
}

TEST(FloatEngine, CertifiedRadiiMatchTheCpuEngine) {
  compare_radii_on_random_networks([](const Network& net) { return make_float_engine(net); },
                                   {Family::Cnn, Family::Residual, Family::CnnMaxPool}, Norm::Linf);
}

TEST(FloatEngine, ShippedModelMatchesTheCpuEngine) {
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string());
  const std::vector<double> x = fixture_inputs("mnist_cnn_3layer_5_3", 0, 2);
  const int64_t n = net.input_size();
  std::vector<BoundProblem> ps;
  for (int i = 0; i < 2; ++i)
    ps.push_back(margin_problem(net, std::vector<double>(x.begin() + i * n, x.begin() + (i + 1) * n), 0.01 * (i + 1)));
  BoundOptions o;
  o.want_intermediate = true;
  const double worst =
      compare_results(make_float_engine(net, 256)->bound(ps, o), make_cpu_engine(net)->bound(ps, o), "shipped");
  std::printf("largest |float - double| / tolerance: %.3g\n", worst);
}

void compare_shared(const std::string& stem, double eps, Norm norm, const char* method) {
  compare_on_fixtures([](const Network& net) { return make_float_engine(net, 256); },
                      shared_data() / "nets" / (stem + ".onnx"), stem, 1, eps, norm, method);
}

TEST(FloatEngine, SharedNetworksMatchTheCpuEngine) {
  CNNCERT_REQUIRE_SHARED_DATA();
  compare_shared("mnist_verivital_convnet_maxpool", 0.004, Norm::Linf, "adaptive");
  compare_shared("mnist_marabou_cnn_maxpool2", 0.01, Norm::Linf, "fastlin");
  compare_shared("mnist_eran_sigmoid_6x200", 0.012, Norm::Linf, "deepcert");
  compare_shared("cifar_abcrown_convsmall_sigmoid", 0.005, Norm::L2, "cnncert");
}

TEST(FloatEngine, ProvenRadiiMatchTheCpuEngine) {
  compare_proven([](const Network& net) { return make_float_engine(net); });
}

TEST(EngineSelection, DevicesParseAndGpuFailsClearlyWithoutOne) {
  EXPECT_EQ(parse_device("cpu"), Device::Cpu);
  EXPECT_EQ(parse_device("gpu"), Device::Gpu);
  EXPECT_EQ(parse_device("auto"), Device::Auto);
  EXPECT_THROW(parse_device("tpu"), InvalidArgument);
  const Network net = random_network(Family::Mlp, ActKind::Relu, 1);
  EngineOptions o;
  o.device = Device::Auto;
  EXPECT_EQ(make_engine(net, o)->name(), cuda_available() ? "gpu" : "cpu");
  if (!cuda_available()) {
    o.device = Device::Gpu;
    try {
      make_engine(net, o);
      ADD_FAILURE() << "no exception";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("GPU"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace cnncert::test
