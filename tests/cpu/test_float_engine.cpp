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
#include "engine/engine_common.hpp"
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

TEST(FloatEngine, SpecificationCoefficientsFloatCannotHoldStaySound) {
  for (const bool exact : {false, true})
    expect_inexact_specification_corrected([](const Network& net) { return make_float_engine(net); }, kFloatRtol,
                                           exact);
}

TEST(FloatEngine, ProblemsWithDifferentRowCountsAndEmptySpecs) {
  const Network net = random_network(Family::Cnn, ActKind::Relu, 3);
  auto ps = margin_problems(net, 3, 0.03, 11);
  ps[1].rows = 0;
  ps[1].spec.clear();
  ps[2].rows = 1;
  ps[2].spec.resize(static_cast<size_t>(net.output_size()));
  BoundOptions o;
  o.exact_cnncert = true;  // (this and the comparisons below: the reference's algorithm)
  compare_results(make_float_engine(net)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), "mixed rows");
  EXPECT_TRUE(make_float_engine(net)->bound({}, o).empty());
}

TEST(FloatEngine, InputBoxesMatchTheCpuEngines) {
  // exact mode against the reference, the default mode against the fast CPU engine (the same rows)
  compare_input_boxes([](const Network& net) { return make_float_engine(net); },
                      [](const Network& net) { return make_fast_engine(net, 1); });
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
  o.exact_cnncert = true;
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

// ---- the fast algorithm (the default): rows only for neurons that interval propagation (and
// the outer bounds of a larger radius) do not prove stable, as the fast CPU engine does ----

/// The GPU algorithm's tolerance (float everywhere). The float engine bounds the float32-rounded
/// network; check_sound evaluates the double one (kFloatSoundTol).
double ftol(double ref, double width) {
  return float_tol(ref, width);
}

TEST(FloatEngine, RowSkippingSkipsTheFastEnginesRowsAndRarelyLoosensABound) {
  // The same selection as the fast CPU engine (in double, with double weights): the rows skipped
  // agree up to decisions within rounding of 0; the bounds are the reference's or tighter, up to
  // the rare loosening that test_fast_engine.cpp explains (and float rounding).
  uint64_t seed = 500;
  Tightness t{ftol};
  double skipped = 0, computed = 0, skipped_fast = 0;
  for (const EngineCase& c : engine_cases())
    for (double scale : {0.1, 1.0}) {
      const Network net = random_network(c.family, c.act, ++seed);
      const BoundOptions o = options_of(c, false);
      const auto ps = margin_problems(net, 3, scale * eps_of(c.norm), seed * 3);
      auto flt = make_float_engine(net);
      auto fast = make_fast_engine(net, 1);
      t.add(flt->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), case_name(c));
      fast->bound(ps, o);
      skipped_fast += fast->stats().rows_skipped;
      if (c.act == ActKind::Relu || c.act == ActKind::LeakyRelu)  // only their rows can be skipped
        skipped += flt->stats().rows_skipped, computed += flt->stats().rows_computed;
      else
        EXPECT_EQ(flt->stats().rows_skipped, 0) << case_name(c);
    }
  std::printf(
      "rows skipped %.0f of %.0f (fast CPU engine: %.0f); of %d bounds %d tighter, %d looser (worst by %.3g "
      "of the width)\n",
      skipped, skipped + computed, skipped_fast, t.rows, t.tighter, t.looser, t.worst_looser);
  EXPECT_GT(skipped, 0.2 * (skipped + computed)) << "interval propagation proved almost nothing stable";
  EXPECT_NEAR(skipped, skipped_fast, 0.001 * (skipped + computed)) << "not the fast CPU engine's selection";
  EXPECT_LE(t.looser, t.rows / 100) << "more than 1 % of the bounds looser than the reference";
  EXPECT_LE(t.worst_looser, 0.01) << "a bound looser than the reference by more than 1 % of its width";
  EXPECT_GT(t.tighter, 10 * t.looser);
}

TEST(FloatEngine, DefaultModeBoundsAreSound) {
  // Sampled and gradient-searched points of the region stay inside the bounds, with and without
  // clipping to a box.
  uint64_t seed = 700;
  for (const EngineCase& c : engine_cases())
    for (bool clip : {false, true}) {
      if (clip && c.norm != Norm::Linf) continue;
      const Network net = random_network(c.family, c.act, ++seed);
      BoundProblem p = margin_problem(net, random_input(seed, net.input_size()), eps_of(c.norm));
      BoundOptions o = options_of(c, false);
      if (clip) {
        for (double& v : p.x0) v = 0.5 + 0.4 * std::tanh(v);
        o.clip_to_box = true, o.box_lo = 0, o.box_hi = 1;
        p.eps = 0.3;
      }
      const auto r = make_float_engine(net)->bound({p}, o);
      ASSERT_TRUE(r[0].error.empty()) << r[0].error;
      SCOPED_TRACE(case_name(c) + (clip ? " clipped" : ""));
      check_sound(net, p, r[0], c.norm, seed, 40, 10, clip ? &o : nullptr, kFloatSoundTol);
    }
}

TEST(FloatEngine, OuterBoundsOfALargerRadiusSkipMoreRowsStaySoundAndRarelyLoosen) {
  expect_outer_bounds_skip_more_rows([](const Network& net) { return make_float_engine(net); }, ftol, kFloatSoundTol,
                                     true);
}

TEST(FloatEngine, MismatchedOuterBoundsAreIgnored) {
  // Bogus outer bounds (every neuron ≥ 0) change the result when they apply, and are ignored for
  // a smaller radius, another centre or another norm.
  const Network net = random_network(Family::Cnn, ActKind::Relu, 31);
  BoundProblem p = margin_problem(net, random_input(3, net.input_size()), 0.05);
  BoundOptions o;
  o.want_intermediate = true;
  const auto plain = make_float_engine(net)->bound({p}, o)[0];
  auto bogus = [&](double eps, const std::vector<double>& x0, Norm norm) {
    auto ob = std::make_shared<OuterBounds>();
    ob->x0 = x0, ob->eps = eps, ob->norm = norm;
    for (const NodeBounds& nb : plain.intermediate)
      ob->nodes.push_back({nb.node, std::vector<double>(nb.lower.size(), 0.0), nb.upper});
    return ob;
  };
  BoundProblem q = p;
  q.outer = bogus(0.06, p.x0, Norm::Linf);
  EXPECT_NE(make_float_engine(net)->bound({q}, o)[0].lower, plain.lower) << "matching outer bounds were not used";
  std::vector<double> other = p.x0;
  other[0] += 1e-3;
  for (const auto& ob : {bogus(0.04, p.x0, Norm::Linf), bogus(0.06, other, Norm::Linf), bogus(0.06, p.x0, Norm::L2)}) {
    q.outer = ob;
    EXPECT_EQ(make_float_engine(net)->bound({q}, o)[0].lower, plain.lower);
  }
}

TEST(FloatEngine, AProblemWhoseBoundsBecomeUnreliableFailsAloneNamingTheFirstNode) {
  expect_unreliable_problem_fails_alone([](const Network& net) { return make_float_engine(net); });
}

TEST(FloatEngine, CostModelCountsEachProblemsArraysOncePerCall) {
  // elementwise_back of 4 rows per pass (8 rows) of 10 values with one problem's relaxation
  // (4 parameter arrays of 10): the rows are read and written (8 · 10 · 2 floats), each parameter
  // array read once (4 · 10 floats), the 8 biases read and written (16 doubles); 3 FLOPs per
  // row value. Without set_problems every row counts as its own problem (4 · 4 · 10 floats).
  auto count = [](bool hint) {
    auto o = batched::make_metered_ops(batched::make_host_ops(1 << 20));
    if (hint) o->set_problems(1);
    std::vector<float> a(80, 0.5f), al(10, 0.25f), bl(10, 0.5f), au(10, 0.75f), bu(10, 1.0f);
    std::vector<double> bias(8, 0.0);
    const std::vector<int> prob(4, 0);
    o->elementwise_back(4, 10, a.data(), prob.data(), 10, 1, al.data(), bl.data(), au.data(), bu.data(), bias.data(),
                        nullptr, 1);
    return o->cost_counts();
  };
  const batched::CostCounts once = count(true), per_row = count(false);
  EXPECT_EQ(once.bytes, 4.0 * (8 * 10 * 2 + 4 * 10) + 8.0 * 16);
  EXPECT_EQ(per_row.bytes, 4.0 * (8 * 10 * 2 + 4 * 4 * 10) + 8.0 * 16);
  EXPECT_EQ(once.flops, 3.0 * 80);
  EXPECT_EQ(once.launches, 1);
  EXPECT_EQ(once.syncs, 0);
}

TEST(FloatEngine, CostModelCountsTheFusedConvolutionAsTheTwoCallsLessTheirPassOverTheRows) {
  // conv_back_window_relax does the work of conv_back_window and elementwise_back_window (the
  // same FLOPs) in one launch, and its rows are written once by the convolution instead of also
  // being read and written by the relaxation: 2 · n floats fewer, n the output rows' values.
  batched::ConvGeom g;
  g.cin = 2, g.hin = g.win = 6, g.cout = 3, g.hout = g.wout = 6, g.kh = g.kw = 3, g.pt = g.pl = 1;
  const int64_t half = 2, h = 2, w = 3;
  const batched::WinGeom out_wg{g.cin, g.span_y(h), g.span_x(w), g.hin, g.win};
  const int64_t n = 2 * half * out_wg.size(), map = g.cin * g.hin * g.win;
  std::vector<float> a(static_cast<size_t>(2 * half * g.cout * h * w), 0.5f), wt(3 * 2 * 9, 0.25f),
      out(static_cast<size_t>(n)), params(static_cast<size_t>(map), 0.5f), conv_bias(2, 1.0f);
  std::vector<double> bias(static_cast<size_t>(2 * half), 0.0);
  const std::vector<int> prob(static_cast<size_t>(half), 0);
  const std::vector<int64_t> org = {0, 0, 3, 2}, out_org = {-1, -1, 2, 1};
  auto counts = [&](bool fused) {
    auto o = batched::make_metered_ops(batched::make_host_ops(1 << 20));
    o->set_problems(1);
    const float* p = params.data();
    if (fused) {
      const batched::RelaxStep rx{prob.data(), map, 1, p, p, p, p, bias.data(), conv_bias.data(), g.hin * g.win};
      o->conv_back_window_relax(g, half, h, w, org.data(), wt.data(), a.data(), out_wg, out_org.data(), out.data(), rx);
    } else {
      o->conv_back_window(g, half, h, w, org.data(), wt.data(), a.data(), out.data());
      o->elementwise_back_window(out_wg, half, out_org.data(), out.data(), prob.data(), map, 1, p, p, p, p, bias.data(),
                                 conv_bias.data(), g.hin * g.win);
    }
    return o->cost_counts();
  };
  const batched::CostCounts fused = counts(true), two = counts(false);
  EXPECT_EQ(fused.flops, two.flops);
  EXPECT_EQ(fused.bytes, two.bytes - 2.0 * 4.0 * static_cast<double>(n));
  EXPECT_EQ(fused.launches, two.launches - 1);
  EXPECT_EQ(fused.syncs, 0);
}

TEST(FloatEngine, CostModelCountsWhatTheEngineIssues) {
  // The GPU cost model (EngineStats::model_*): the convolution/GEMM FLOPs are part of it, one
  // host wait per call in exact mode (the results, with the flags) and one more per bounded node
  // otherwise (the rows to compute), the same counts for the same call (after the engine's
  // one-time uploads), and less work where rows are skipped.
  const Network net = random_network(Family::CnnMaxPool, ActKind::Relu, 17);
  const auto ps = margin_problems(net, 3, 0.01, 4);  // a small radius: most neurons stable
  BoundOptions exact;
  exact.exact_cnncert = true;
  auto e = make_float_engine(net), d = make_float_engine(net);
  const EngineStats s0 = e->stats();  // the network's constants, uploaded once
  EXPECT_GT(s0.model_launches, 0);
  e->bound(ps, exact);
  d->bound(ps, BoundOptions{});
  const EngineStats se = e->stats(), sd = d->stats();
  EXPECT_GE(se.model_flops, se.backsub_flops);
  EXPECT_GT(se.backsub_flops, 0);
  const auto nodes = static_cast<int64_t>(detail::bound_schedule(net).size());
  EXPECT_EQ(se.model_syncs - s0.model_syncs, 1);
  BoundOptions exact_all = exact;  // the intermediate bounds come with the results
  exact_all.want_intermediate = true;
  auto f = make_float_engine(net);
  const EngineStats f0 = f->stats();
  EXPECT_FALSE(f->bound(ps, exact_all)[0].intermediate.empty());
  EXPECT_EQ(f->stats().model_syncs - f0.model_syncs, 1);
  EXPECT_GT(sd.model_syncs - s0.model_syncs, 1);  // (no rows to select where no neuron can be skipped)
  EXPECT_LE(sd.model_syncs - s0.model_syncs, nodes + 1);
  EXPECT_GT(sd.rows_skipped, 0);
  EXPECT_LT(sd.model_flops, se.model_flops) << "skipped rows cost nothing";
  EXPECT_LT(sd.model_bytes, se.model_bytes);
  e->bound(ps, exact);
  const EngineStats twice = e->stats();
  EXPECT_EQ(twice.model_flops - se.model_flops, se.model_flops - s0.model_flops);
  EXPECT_EQ(twice.model_bytes - se.model_bytes, se.model_bytes - s0.model_bytes);
  EXPECT_EQ(twice.model_launches - se.model_launches, se.model_launches - s0.model_launches);
  EXPECT_EQ(twice.model_syncs - se.model_syncs, se.model_syncs - s0.model_syncs);
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
