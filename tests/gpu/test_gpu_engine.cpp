// The CUDA engine against the CPU reference engine (label gpu): every family, activation,
// method and norm of the CPU tests, real networks, certified radii, determinism, chunking, and
// cuDNN/cuBLAS against the engine's own kernels. Skipped without a GPU; CNNCERT_REQUIRE_GPU=1
// turns a missing GPU into a failure.
#include <cstdio>

#include "cnncert/certify.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/onnx.hpp"
#include "common/engine_compare.hpp"
#include "common/test_util.hpp"
#include "engine/batched_engine.hpp"
#include "gpu_test_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

TEST_F(GpuTest, EngineMatchesTheCpuEngineOnEveryFamilyMethodAndNorm) {
  const double worst = compare_on_random_networks([](const Network& net) { return make_gpu_engine(net); });
  std::printf("largest |gpu - cpu| / tolerance: %.3g\n", worst);
}

TEST_F(GpuTest, OwnKernelsMatchTheCpuEngine) {
  // Convolutions and GEMMs by the engine's own kernels instead of cuDNN/cuBLAS.
  const CudaLibraries libs = cuda_libraries();
  if (!libs.cublas && !libs.cudnn)
    GTEST_SKIP() << "built without cuDNN and cuBLAS: the test above already ran the own kernels";
  const double worst = compare_on_random_networks(
      [](const Network& net) { return batched::make_batched_engine(net, batched::make_cuda_ops(0, false)); });
  std::printf("largest |gpu (own kernels) - cpu| / tolerance: %.3g\n", worst);
}

TEST_F(GpuTest, ResultsAreBitIdenticalRunToRun) {
  for (Family f : {Family::Residual, Family::CnnMaxPool, Family::Mlp}) {
    const Network net = random_network(f, ActKind::Relu, 5);
    auto e = make_gpu_engine(net);
    BoundOptions o;
    o.want_linear = o.want_intermediate = true;
    const auto ps = margin_problems(net, 5, 0.05, 3);
    const auto a = e->bound(ps, o), b = e->bound(ps, o), c = make_gpu_engine(net)->bound(ps, o);
    for (size_t p = 0; p < ps.size(); ++p) {
      EXPECT_EQ(a[p].lower, b[p].lower);
      EXPECT_EQ(a[p].upper, b[p].upper);
      EXPECT_EQ(a[p].a_lower, b[p].a_lower);
      EXPECT_EQ(a[p].lower, c[p].lower);
      EXPECT_EQ(a[p].intermediate.size(), c[p].intermediate.size());
    }
  }
}

TEST_F(GpuTest, SmallMemoryBudgetsGiveTheSameBounds) {
  const Network net = random_network(Family::Residual, ActKind::Relu, 8);
  for (bool exact : {true, false}) {
    BoundOptions o;
    o.want_intermediate = true;
    o.exact_cnncert = exact;
    const auto ps = margin_problems(net, 6, 0.05, 9);
    const auto big = make_gpu_engine(net)->bound(ps, o);
    const auto tiny = batched::make_batched_engine(net, batched::make_cuda_ops(4096))->bound(ps, o);
    compare_results(tiny, big, exact ? "4 KiB budget, exact" : "4 KiB budget");
    if (exact) compare_results(tiny, make_cpu_engine(net, 1)->bound(ps, o), "4 KiB budget vs cpu");
  }
}

TEST_F(GpuTest, FastAlgorithmMatchesTheHostBackend) {
  // The default mode (rows only for neurons interval propagation does not prove stable, outer
  // bounds of a larger radius) on every family against the same algorithm on the host: the same
  // rows skipped and the same bounds within float rounding.
  uint64_t seed = 500;
  double skipped = 0, by_outer = 0;
  for (const EngineCase& c : engine_cases()) {
    const Network net = random_network(c.family, c.act, ++seed);
    BoundOptions o = options_of(c, false);
    o.want_intermediate = true;
    std::vector<BoundProblem> ps = margin_problems(net, 2, 0.5 * eps_of(c.norm), seed * 3);
    for (bool outer : {false, true}) {
      if (outer) {
        auto e = make_float_engine(net);
        for (BoundProblem& p : ps) p.outer = outer_at(*e, p, 1.2 * p.eps, o);
      }
      auto gpu = make_gpu_engine(net), host = make_float_engine(net);
      const std::string what = case_name(c) + (outer ? " with outer bounds" : "");
      compare_results(gpu->bound(ps, o), host->bound(ps, o), what);
      // Under the emulation the bounds differ from the host's only in the order of the block
      // reductions' double sums: on these seeded cases no decision moves. On a GPU cuDNN/cuBLAS
      // round the float sums differently too, which may move a decision within rounding of 0.
      const EngineStats g = gpu->stats(), h = host->stats();
      const double slack = cuda_emulated() ? 0.0 : 1e-3 * (h.rows_skipped + h.rows_computed);
      EXPECT_NEAR(g.rows_skipped, h.rows_skipped, slack) << what;
      EXPECT_NEAR(g.rows_skipped_outer, h.rows_skipped_outer, slack) << what;
      EXPECT_NEAR(g.rows_computed, h.rows_computed, slack) << what;
      skipped += gpu->stats().rows_skipped, by_outer += gpu->stats().rows_skipped_outer;
    }
  }
  std::printf("rows skipped on the GPU: %.0f (%.0f by the outer bounds)\n", skipped, by_outer);
  EXPECT_GT(skipped, 0);
  EXPECT_GT(by_outer, 0);
}

TEST_F(GpuTest, InputBoxesMatchTheCpuEngines) {
  // Boxes of their own and balls clipped to [0, 1] (VNN-LIB regions, --clip): exact mode against
  // the reference, the default mode against the same algorithm on the host backend.
  compare_input_boxes([](const Network& net) { return make_gpu_engine(net); },
                      [](const Network& net) { return make_float_engine(net); });
}

TEST_F(GpuTest, AProblemWhoseBoundsBecomeUnreliableFailsAlone) {
  // The device's flags of non-finite or too large bounds, downloaded once with the results.
  expect_unreliable_problem_fails_alone([](const Network& net) { return make_gpu_engine(net); });
}

TEST_F(GpuTest, SpecificationCoefficientsFloatCannotHoldStaySound) {
  for (const bool exact : {false, true})
    expect_inexact_specification_corrected([](const Network& net) { return make_gpu_engine(net); }, kFloatRtol, exact);
}

TEST_F(GpuTest, AgreesWithTheSameAlgorithmOnTheCpu) {
  const Network net = random_network(Family::CnnAvgPoolPadded, ActKind::Tanh, 4);
  BoundOptions o;
  o.method = parse_method("deepcert");
  o.want_linear = true;
  const auto ps = margin_problems(net, 4, 0.05, 2);
  compare_results(make_gpu_engine(net)->bound(ps, o), make_float_engine(net)->bound(ps, o), "gpu vs host-float");
}

/// Under the CPU emulation every emulated thread is a fiber, and a real network takes minutes per
/// image: there one image, on the networks that tests name as `emulated`; on a GPU two, on all.
void compare_real(const std::filesystem::path& onnx, const std::string& stem, double eps, Norm norm, const char* method,
                  bool emulated = false) {
  if (cuda_emulated() && !emulated) {
    std::printf("%s: skipped under the CPU emulation (runs on a GPU)\n", stem.c_str());
    return;
  }
  compare_on_fixtures([](const Network& net) { return make_gpu_engine(net); }, onnx, stem, cuda_emulated() ? 1 : 2, eps,
                      norm, method);
}

TEST_F(GpuTest, ShippedModelsMatchTheCpuEngine) {
  const auto m = source_dir() / "models";
  compare_real(m / "mnist_cnn_3layer_5_3.onnx", "mnist_cnn_3layer_5_3", 0.02, Norm::Linf, "adaptive", true);
  compare_real(m / "mnist_cnn_3layer_5_3.onnx", "mnist_cnn_3layer_5_3", 0.3, Norm::L2, "fastlin");
}

TEST_F(GpuTest, SharedNetworksMatchTheCpuEngine) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const auto nets = shared_data() / "nets";
  compare_real(nets / "mnist_verivital_convnet_maxpool.onnx", "mnist_verivital_convnet_maxpool", 0.004, Norm::Linf,
               "adaptive", true);
  compare_real(nets / "mnist_eran_sigmoid_6x200.onnx", "mnist_eran_sigmoid_6x200", 0.012, Norm::Linf, "deepcert");
  compare_real(nets / "cifar_resnet_2b.onnx", "cifar_resnet_2b", 2.0 / 255 / 0.25, Norm::Linf, "adaptive");
  compare_real(nets / "cifar_oval21_base_kw.onnx", "cifar_oval21_base_kw", 0.1, Norm::L2, "adaptive");
  compare_real(nets / "cifar_abcrown_convsmall_sigmoid.onnx", "cifar_abcrown_convsmall_sigmoid", 0.005, Norm::Linf,
               "cnncert");
  compare_real(nets / "mnist_colt_convmed_0.1.onnx", "mnist_colt_convmed_0.1", 0.05, Norm::Linf, "adaptive");
}

TEST_F(GpuTest, CertifiedRadiiMatchTheCpuEngine) {
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string());
  // A full radius search per image: under the CPU emulation (~15 s per bound of this CNN, minutes
  // per image) only the random networks below.
  if (!cuda_emulated()) {
    const auto x = fixture_inputs("mnist_cnn_3layer_5_3", 0, 10);  // (the fixture holds 4)
    CertifyOptions o;
    o.bound.exact_cnncert = true;  // the reference's algorithm
    auto cpu = make_cpu_engine(net);
    auto gpu = make_gpu_engine(net);
    const auto a = certify(net, *cpu, x, {}, o), b = certify(net, *gpu, x, {}, o);
    const int differing = expect_same_radii(net, *cpu, x, a, b, o.bound, "shipped");
    std::printf("radii differing (ties): %d of %zu images\n", differing, a.size());
  }
  compare_radii_on_random_networks([](const Network& net) { return make_gpu_engine(net); },
                                   {Family::Residual, Family::CnnMaxPool}, Norm::L2, cuda_emulated() ? 1 : 6);
}

TEST_F(GpuTest, ConvolutionsAndGemmsRunOnTheExpectedPath) {
  // The shipped CNN's convolutions are valid-padded 3×3 (symmetric): the dense-row convolutions go
  // to cuDNN wherever it is built in (the real library on a GPU, its stand-in under the emulation)
  // and must not have failed; the dense layer goes to cuBLAS. Windowed rows (patches) always run the
  // own windowed kernels, counted apart. Without the libraries the own kernels run; asked for the
  // own kernels, no library call happens. (Under the CPU emulation, where a bound of the shipped CNN
  // takes seconds, a small random CNN with a dense layer instead.)
  const Network net = cuda_emulated() ? random_network(Family::Cnn, ActKind::Relu, 3)
                                      : import_onnx((source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string());
  const auto ps = margin_problems(net, 3, 0.02, 4);
  const CudaLibraries libs = cuda_libraries();
  auto lib = make_gpu_engine(net);
  lib->bound(ps, BoundOptions{});
  const EngineStats s = lib->stats();
  std::printf(
      "convolutions: cuDNN %lld, cuDNN failed %lld, own %lld, windowed %lld; GEMMs: cuBLAS %lld, own %lld; %lld "
      "launches, %lld syncs\n",
      static_cast<long long>(s.conv_cudnn), static_cast<long long>(s.conv_cudnn_failed),
      static_cast<long long>(s.conv_own_kernel), static_cast<long long>(s.conv_windowed),
      static_cast<long long>(s.gemm_cublas), static_cast<long long>(s.gemm_own_kernel),
      static_cast<long long>(s.gpu_launches), static_cast<long long>(s.gpu_syncs));
  EXPECT_GE(s.gpu_launches, s.conv_cudnn + s.conv_own_kernel + s.conv_windowed + s.gemm_cublas + s.gemm_own_kernel);
  EXPECT_GT(s.gpu_syncs, 0);
  EXPECT_EQ(s.conv_cudnn_failed, 0);
  EXPECT_GT(s.conv_windowed, 0);  // the fast algorithm's patches
  EXPECT_GT(libs.cudnn ? s.conv_cudnn : s.conv_own_kernel, 0);
  if (!libs.cudnn) EXPECT_EQ(s.conv_cudnn, 0);
  // Which geometries a real cuDNN offers its deterministic direct algorithm for is its own choice
  // (the others run the own kernel, correctly, as printed above); the stand-in offers it for all.
  if (libs.cudnn && cuda_emulated()) EXPECT_EQ(s.conv_own_kernel, 0);
  EXPECT_GT(libs.cublas ? s.gemm_cublas : s.gemm_own_kernel, 0);
  EXPECT_EQ(libs.cublas ? s.gemm_own_kernel : s.gemm_cublas, 0);
  if (gpu_required() && !cuda_emulated()) {
    EXPECT_TRUE(libs.cudnn) << "the device run builds with -DCNNCERT_REQUIRE_CUDA_LIBS=ON";
    EXPECT_TRUE(libs.cublas);
  }
  auto own = batched::make_batched_engine(net, batched::make_cuda_ops(0, false));
  own->bound(ps, BoundOptions{});
  const EngineStats t = own->stats();
  EXPECT_EQ(t.conv_cudnn + t.gemm_cublas, 0);
  EXPECT_GT(t.conv_own_kernel, 0);
  EXPECT_GT(t.conv_windowed, 0);
  EXPECT_GT(t.gemm_own_kernel, 0);
  if (cuda_emulated()) {
    // The same calls as the library run's (bit-identical bounds pick the same rows); on a GPU the
    // two runs' bounds differ by rounding, which could in principle change the rows selected.
    EXPECT_EQ(t.conv_own_kernel, s.conv_cudnn + s.conv_own_kernel);
    EXPECT_EQ(t.conv_windowed, s.conv_windowed);
  }
}

TEST_F(GpuTest, CounterexampleSearchMatchesTheHostBackend) {
  // CertifyOptions::attack_moves: before bounding a step, PGD looks for a counterexample, evaluating its
  // points through the engine (radius 0, want_linear: margins and gradients on the GPU). Against
  // the same algorithm on the host backend: the same radii (up to ties) and, under the emulation
  // (where only the order of the block reductions' double sums differs), the same steps decided by
  // a counterexample. On a GPU, cuDNN/cuBLAS round differently and a PGD path may step otherwise.
  int decided = 0;
  for (const Family f : {Family::Cnn, Family::CnnMaxPool}) {
    const Network net = random_network(f, ActKind::Relu, 41);
    const std::vector<double> x = random_inputs(600, cuda_emulated() ? 2 : 4, net.input_size());
    CertifyOptions o;
    o.target = TargetMode::All;
    o.attack_moves = 10;
    auto host = make_float_engine(net);
    auto gpu = make_gpu_engine(net);
    ASSERT_TRUE(gpu->uses_outer_bounds(o.bound));  // so the points go through the GPU
    const auto a = certify(net, *host, x, {}, o), b = certify(net, *gpu, x, {}, o);
    expect_same_radii(net, *host, x, a, b, o.bound, family_name(f));
    int on_host = 0, on_gpu = 0;
    for (size_t i = 0; i < a.size(); ++i)
      for (size_t t = 0; t < a[i].targets.size() && t < b[i].targets.size(); ++t) {
        on_host += a[i].targets[t].steps_by_attack, on_gpu += b[i].targets[t].steps_by_attack;
        EXPECT_LE(b[i].targets[t].eps, b[i].targets[t].attack_eps) << family_name(f);
      }
    if (cuda_emulated()) EXPECT_EQ(on_gpu, on_host) << family_name(f);
    decided += on_gpu;
  }
  EXPECT_GT(decided, 0) << "no step decided by a counterexample: the comparison would say nothing";
}

TEST_F(GpuTest, ProvenRadiiMatchTheCpuEngine) {
  compare_proven([](const Network& net) { return make_gpu_engine(net); });
}

}  // namespace
}  // namespace cnncert::test
