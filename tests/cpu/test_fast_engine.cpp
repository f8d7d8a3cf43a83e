// The fast CPU engine (host/engine/fast_engine.cpp) against the plain reference engine.
//
// Tolerance. The fast engine keeps its coefficients in float32 (bias terms, bounds and the
// concretization in double); the reference computes in double with the same relaxations. They
// differ by float32 rounding, so the comparison uses engine_compare.hpp's tolerance derived from
// it (float_tol) at kFastRtol = 1e-5: 1e-5 · (1 + |bound|) + 1e-5 · width (see kFastRtol).
// Relaxation decisions within that rounding of a tie (l ≈ 0, u ≈ −l) could move a bound more;
// the random weights here do not produce them. Soundness checks evaluate the double network at
// sampled points and allow the float rounding (kFloatSoundTol): back-substitution runs on the
// float32-rounded weights with float32 rounding at every step; interval propagation (which only
// decides which rows to skip) uses the double weights, widened for its rounding.
//
// Row skipping (the default) replaces the relaxation of a neuron that interval propagation proves
// stable by its exact linear function. That tightens most bounds it changes, but it is not a
// theorem that it never loosens one: back-substitution is not monotone in the relaxations (the
// sign-dependent choices of later layers, and Fast-Lin's bound-dependent lower slope, can turn a
// pointwise tighter relaxation into a slightly looser final bound). The tests measure it: on the
// random families 3 of 1494 bounds come out looser, by at most 0.5 % of the bound's width, and 81
// tighter; none looser on the real networks. `exact_cnncert` reproduces the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <sstream>

#include "cnncert/certify.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "common/cli_util.hpp"
#include "common/engine_compare.hpp"
#include "common/test_util.hpp"
#include "engine/engine_common.hpp"

namespace cnncert::test {
namespace {

/// The fast engine rounds only its coefficients (and the weights they meet) to float32: 2⁻²⁴ ≈
/// 6e-8 per operation, a few operations per coefficient and layer, up to 8 layers, and sums of
/// many such terms. 1e-5 · (1 + |bound| + width) is about 13× the largest difference seen (8e-7
/// of the scale, on the 6-layer sigmoid MLP), ten times tighter than the GPU algorithm's 1e-4
/// (float everywhere).
constexpr double kFastRtol = 1e-5;

/// Every value of `got` equals `want` within the float tolerance (bounds, intermediate bounds,
/// linear terms).
void expect_equal(const std::vector<BoundResult>& got, const std::vector<BoundResult>& want, const std::string& what) {
  compare_results(got, want, what, kFastRtol);
}

double fast_tol(double ref, double width) {
  return float_tol(ref, width, kFastRtol);
}

TEST(FastEngine, ExactModeMatchesTheReferenceOnEveryFamilyMethodAndNorm) {
  uint64_t seed = 300;
  for (const EngineCase& c : engine_cases()) {
    const Network net = random_network(c.family, c.act, ++seed);
    BoundOptions o = options_of(c, true);
    o.want_intermediate = o.want_linear = true;
    const auto ps = margin_problems(net, 3, eps_of(c.norm), seed * 7);
    expect_equal(make_fast_engine(net, 1)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), case_name(c));
  }
}

TEST(FastEngine, RowSkippingSkipsRowsAndRarelyLoosensABound) {
  // Radii from small (most neurons stable: rows skipped) to large (most unstable).
  uint64_t seed = 500;
  Tightness t{fast_tol};
  double skipped = 0, computed = 0;
  for (const EngineCase& c : engine_cases())
    for (double scale : {0.1, 1.0}) {
      const Network net = random_network(c.family, c.act, ++seed);
      const BoundOptions o = options_of(c, false);
      const auto ps = margin_problems(net, 3, scale * eps_of(c.norm), seed * 3);
      auto fast = make_fast_engine(net, 1);
      t.add(fast->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), case_name(c));
      if (c.act == ActKind::Relu || c.act == ActKind::LeakyRelu)  // only their rows can be skipped
        skipped += fast->stats().rows_skipped, computed += fast->stats().rows_computed;
    }
  std::printf("rows skipped %.0f of %.0f; of %d bounds %d tighter, %d looser (worst by %.3g of the width)\n", skipped,
              skipped + computed, t.rows, t.tighter, t.looser, t.worst_looser);
  EXPECT_GT(skipped, 0.2 * (skipped + computed)) << "interval propagation proved almost nothing stable";
  EXPECT_LE(t.looser, t.rows / 100) << "more than 1 % of the bounds looser than the reference";
  EXPECT_LE(t.worst_looser, 0.01) << "a bound looser than the reference by more than 1 % of its width";
  EXPECT_GT(t.tighter, 10 * t.looser);
}

TEST(FastEngine, DefaultModeBoundsAreSound) {
  // Row skipping must stay sound: sampled and gradient-searched points of the region stay inside.
  uint64_t seed = 700;
  for (const EngineCase& c : engine_cases()) {
    const Network net = random_network(c.family, c.act, ++seed);
    const BoundProblem p = margin_problem(net, random_input(seed, net.input_size()), eps_of(c.norm));
    const auto r = make_fast_engine(net, 1)->bound({p}, options_of(c, false));
    ASSERT_TRUE(r[0].error.empty()) << r[0].error;
    SCOPED_TRACE(case_name(c));
    check_sound(net, p, r[0], c.norm, seed, 40, 10, nullptr, kFloatSoundTol);
  }
}

TEST(FastEngine, WithoutSkippableNeuronsTheDefaultEqualsTheReference) {
  // Smooth activations and max-pool inputs need every neuron's bounds: nothing is skipped, and
  // the default mode is the reference's algorithm.
  for (const EngineCase& c : engine_cases()) {
    if (c.act == ActKind::Relu || c.act == ActKind::LeakyRelu) continue;
    const Network net = random_network(c.family, c.act, 41);
    const BoundOptions o = options_of(c, false);
    const auto ps = margin_problems(net, 2, eps_of(c.norm), 9);
    auto fast = make_fast_engine(net, 1);
    expect_equal(fast->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), case_name(c));
    EXPECT_EQ(fast->stats().rows_skipped, 0) << case_name(c);
  }
}

/// Exact mode (the reference's algorithm) with every node's bounds returned, for a norm.
BoundOptions exact_with_intermediate(Norm norm) {
  BoundOptions o;
  o.norm = norm;
  o.exact_cnncert = true;
  o.want_intermediate = true;
  return o;
}

TEST(FastEngine, WideConvolutionsOnWindowsMatchTheReference) {
  // The gather form on windows (not whole maps): it runs where the input window is no larger
  // than the rows' window, i.e. for 1 × 1 kernels, so 16-channel 1 × 1 convolutions between 3 × 3
  // ones on a 12 × 12 map (a deep neuron's window grows 1, 3, ..., 9, and the 3 × 3 ones take
  // the scatter form on windows).
  std::mt19937_64 rng(4048);
  NetworkBuilder b;
  int h = b.activation(b.conv(b.input({1, 12, 12}), random_conv(rng, 1, 16, 3, 1, 1)), ActKind::Relu);
  for (int i = 0; i < 4; ++i) {
    h = b.activation(b.conv(h, random_conv(rng, 16, 16, 1)), ActKind::Relu);
    h = b.activation(b.conv(h, random_conv(rng, 16, 16, 3, 1, 1)), ActKind::Relu);
  }
  h = b.reshape(h, {16 * 12 * 12});
  const Network net = b.build(b.dense(h, random_dense(rng, 16 * 12 * 12, 3)));
  const BoundOptions o =
      exact_with_intermediate(Norm::Linf);  // (the deep neurons are stable here: compare their bounds)
  const auto ps = margin_problems(net, 1, 0.002, 63);
  expect_equal(make_fast_engine(net, 2)->bound(ps, o), make_cpu_engine(net, 2)->bound(ps, o), "windows");
}

TEST(FastEngine, NarrowConvolutionKernelsMatchTheReference) {
  // Narrow convolutions add a kernel row's taps three at a time where they overlap and one by one
  // at the edges: kernel widths 5 (3 + 2 taps), 4 with padding 3 (taps that reach no column of
  // small windows), 2, 1, a dilated 3, with windows and whole maps.
  std::mt19937_64 rng(77);
  NetworkBuilder b;
  auto relu = [&](int h) { return b.activation(h, ActKind::Relu); };
  int h = relu(b.conv(b.input({1, 9, 9}), random_conv(rng, 1, 4, 5, 1, 2)));
  h = relu(b.conv(h, random_conv(rng, 4, 3, 4, 1, 3)));  // 12 × 12
  h = relu(b.conv(h, random_conv(rng, 3, 4, 2)));        // 11 × 11
  ConvAttr dilated = random_conv(rng, 4, 4, 3, 1, 1);
  dilated.dilation_h = dilated.dilation_w = 2;
  h = relu(b.conv(h, dilated));                    // 9 × 9
  h = relu(b.conv(h, random_conv(rng, 4, 2, 1)));  // 9 × 9
  h = b.reshape(h, {2 * 9 * 9});
  const Network net = b.build(b.dense(h, random_dense(rng, 2 * 9 * 9, 4)));
  for (Norm norm : {Norm::Linf, Norm::L1}) {
    const BoundOptions o = exact_with_intermediate(norm);
    const auto ps = margin_problems(net, 2, norm == Norm::Linf ? 0.02 : 0.3, 62);
    expect_equal(make_fast_engine(net, 1)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), norm_name(norm));
  }
}

TEST(FastEngine, WideConvolutionsMatchTheReference) {
  // The random families' convolutions are narrow (≤ 3 channels: direct AXPYs). Here every path of
  // conv_back: 1 → 16 (scatter GEMM), 16 → 16 and a dilated 16 → 16 (gather GEMM on whole maps,
  // scatter on windows), 16 → 32 and a grouped 32 → 32 (the same, 2 groups), a strided 32 → 16
  // (scatter: the gather would waste 3 of 4 taps), and a budget small enough that the gather
  // GEMMs split a row into pieces.
  std::mt19937_64 rng(2024);
  NetworkBuilder b;
  auto relu = [&](int h) { return b.activation(h, ActKind::Relu); };
  int h = relu(b.conv(b.input({1, 8, 8}), random_conv(rng, 1, 16, 3, 1, 1)));
  h = relu(b.conv(h, random_conv(rng, 16, 16, 3, 1, 1)));
  ConvAttr dilated = random_conv(rng, 16, 16, 3, 1, 2);
  dilated.dilation_h = dilated.dilation_w = 2;
  h = relu(b.conv(h, dilated));
  h = relu(b.conv(h, random_conv(rng, 16, 32, 3, 1, 1)));
  ConvAttr grouped = random_conv(rng, 16, 32, 3, 1, 1);
  grouped.groups = 2;
  h = relu(b.conv(h, grouped));
  h = relu(b.conv(h, random_conv(rng, 32, 16, 3, 2, 1)));
  h = b.reshape(h, {16 * 4 * 4});
  const Network net = b.build(b.dense(h, random_dense(rng, 16 * 4 * 4, 4)));
  for (Norm norm : {Norm::Linf, Norm::L2}) {
    const BoundOptions o = exact_with_intermediate(norm);
    const auto ps = margin_problems(net, 2, norm == Norm::Linf ? 0.01 : 0.05, 61);
    const auto ref = make_cpu_engine(net, 1)->bound(ps, o);
    expect_equal(make_fast_engine(net, 2)->bound(ps, o), ref, std::string("default budget, ") + norm_name(norm));
    expect_equal(make_fast_engine(net, 1, 1)->bound(ps, o), ref, std::string("1 MiB budget, ") + norm_name(norm));
  }
}

/// Plain interval propagation of one convolution (no widening): [lo, hi] of each output from the
/// inputs' [il, ih], taps in the padding skipped; `mag` receives Σ |w| · (|mid| + rad) + |b|.
void plain_conv_interval(const ConvAttr& c, const detail::Geometry& in, const detail::Geometry& out,
                         const std::vector<double>& il, const std::vector<double>& ih, std::vector<double>& lo,
                         std::vector<double>& hi, std::vector<double>& mag) {
  const int64_t cin_g = c.in_channels, cout_g = c.out_channels / c.groups;
  lo.assign(static_cast<size_t>(out.c * out.h * out.w), 0), hi = lo, mag = lo;
  for (int64_t co = 0; co < out.c; ++co)
    for (int64_t oy = 0; oy < out.h; ++oy)
      for (int64_t ox = 0; ox < out.w; ++ox) {
        double mid = c.bias[static_cast<size_t>(co)], rad = 0, m = std::fabs(mid);
        for (int64_t ci = 0; ci < cin_g; ++ci)
          for (int64_t ky = 0; ky < c.kernel_h; ++ky)
            for (int64_t kx = 0; kx < c.kernel_w; ++kx) {
              const int64_t iy = oy * c.stride_h - c.pad_top + ky * c.dilation_h,
                            ix = ox * c.stride_w - c.pad_left + kx * c.dilation_w;
              if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
              const auto j = static_cast<size_t>(((co / cout_g * cin_g + ci) * in.h + iy) * in.w + ix);
              const double w = c.weight[static_cast<size_t>(((co * cin_g + ci) * c.kernel_h + ky) * c.kernel_w + kx)];
              const double mi = (il[j] + ih[j]) / 2, ri = (ih[j] - il[j]) / 2;
              mid += w * mi, rad += std::fabs(w) * ri, m += std::fabs(w) * (std::fabs(mi) + ri);
            }
        const auto q = static_cast<size_t>((co * out.h + oy) * out.w + ox);
        lo[q] = mid - rad, hi[q] = mid + rad, mag[q] = m;
      }
}

TEST(FastEngine, IntervalsThroughConvolutionsOfEveryGeometryAreThePlainOnes) {
  // The neurons that interval propagation proves stable report its bounds: they must be the plain
  // interval bounds (to its widening) for asymmetric pads, dilation, groups, a kernel taller than
  // its input (the zero-padded one-pass path) and a strided convolution (the row-by-row path).
  std::mt19937_64 rng(8080);
  auto conv = [&](int64_t cin_g, int64_t cout, int64_t groups, int64_t kh, int64_t kw, int64_t stride, int64_t dil,
                  std::array<int64_t, 4> pads) {
    ConvAttr c = random_conv(rng, cin_g, cout, 1);
    c.groups = groups, c.kernel_h = kh, c.kernel_w = kw, c.stride_h = c.stride_w = stride;
    c.dilation_h = c.dilation_w = dil;
    c.pad_top = pads[0], c.pad_left = pads[1], c.pad_bottom = pads[2], c.pad_right = pads[3];
    c.weight = randn(rng, static_cast<size_t>(cout * cin_g * kh * kw), 0.4);
    return c;
  };
  const std::vector<ConvAttr> convs = {
      conv(1, 4, 2, 3, 3, 1, 2, {1, 2, 0, 1}),  // {2, 5, 6} → {4, 2, 5}: grouped, dilated, asymmetric pads
      conv(4, 3, 1, 4, 3, 1, 1, {2, 1, 1, 1}),  // → {3, 2, 5}: a kernel 4 high over 2 rows
      conv(3, 3, 1, 3, 3, 2, 1, {1, 0, 1, 2}),  // → {3, 1, 3}: strided
  };
  NetworkBuilder b;
  int h = b.input({2, 5, 6});
  std::vector<int> conv_nodes;
  for (const ConvAttr& c : convs) {
    h = b.conv(h, c);
    conv_nodes.push_back(h);
    h = b.activation(h, ActKind::Relu);
  }
  h = b.reshape(h, {3 * 1 * 3});
  const Network net = b.build(b.dense(h, random_dense(rng, 9, 3)));
  BoundOptions o;
  o.want_intermediate = true;
  int checked = 0;
  for (double eps : {0.02, 0.1}) {
    const BoundProblem p = margin_problem(net, random_input(81, net.input_size()), eps);
    const BoundResult r = make_fast_engine(net, 1)->bound({p}, o)[0];
    ASSERT_TRUE(r.error.empty()) << r.error;
    std::vector<double> il(p.x0), ih(p.x0);  // the input ball
    for (size_t j = 0; j < il.size(); ++j) il[j] -= eps, ih[j] += eps;
    for (size_t i = 0; i < convs.size(); ++i) {
      const Node& nd = net.node(conv_nodes[i]);
      const detail::Geometry in = detail::geometry(net.node(nd.inputs[0])), out = detail::geometry(nd);
      std::vector<double> lo, hi, mag;
      plain_conv_interval(convs[i], in, out, il, ih, lo, hi, mag);
      const NodeBounds* got = nullptr;
      for (const NodeBounds& nb : r.intermediate)
        if (nb.node == conv_nodes[i]) got = &nb;
      ASSERT_NE(got, nullptr) << "conv " << i;
      ASSERT_EQ(got->lower.size(), lo.size());
      for (size_t q = 0; q < lo.size(); ++q) {
        const double slack = 1e-9 * (1 + mag[q]);  // the widening: ≤ 1e-12 of the bounds and terms · 2⁻⁵⁰ · mag
        if (lo[q] <= slack && hi[q] >= -slack) continue;  // not proven stable: it has a row
        ++checked;
        EXPECT_NEAR(got->lower[q], lo[q], slack) << "conv " << i << " neuron " << q << " eps " << eps;
        EXPECT_NEAR(got->upper[q], hi[q], slack) << "conv " << i << " neuron " << q << " eps " << eps;
      }
      // the next convolution's inputs: the ReLU of this one's bounds
      il.resize(got->lower.size()), ih.resize(got->lower.size());
      for (size_t q = 0; q < il.size(); ++q) il[q] = std::max(got->lower[q], 0.0), ih[q] = std::max(got->upper[q], 0.0);
    }
  }
  std::printf("stable neurons compared with the plain intervals: %d\n", checked);
  EXPECT_GT(checked, 20) << "too few neurons proven stable to compare";
}

TEST(FastEngine, SpecificationCoefficientsFloatCannotHoldStaySound) {
  for (const bool exact : {false, true})
    expect_inexact_specification_corrected([](const Network& net) { return make_fast_engine(net, 1); }, kFastRtol,
                                           exact);
}

TEST(FastEngine, WeightsBeyondFloat32AreRefused) {
  NetworkBuilder b;
  const int x = b.input({2});
  const Network net = b.build(b.dense(x, DenseAttr{1, 2, {1e39, 1}, {0}}));
  EXPECT_THROW(make_fast_engine(net, 1), InvalidArgument);
  EXPECT_THROW(make_float_engine(net), InvalidArgument);  // the GPU engine's algorithm, in float32 too
  EXPECT_NO_THROW(make_cpu_engine(net, 1));
}

TEST(FastEngine, OuterBoundsOfALargerRadiusSkipMoreRowsStaySoundAndRarelyLoosen) {
  expect_outer_bounds_skip_more_rows([](const Network& net) { return make_fast_engine(net, 1); }, fast_tol,
                                     kFloatSoundTol, false);
}

TEST(FastEngine, OuterBoundsThatDoNotApplyAreIgnored) {
  // Bogus outer bounds that claim every neuron non-negative (l ≥ 0) change the result when they
  // apply (so the check below could fail), and are ignored when anything does not match.
  const Network net = random_network(Family::Cnn, ActKind::Relu, 77);
  BoundOptions o;
  o.want_intermediate = true;
  BoundProblem p = margin_problem(net, random_input(78, net.input_size()), 0.05);
  auto bogus = [&](auto&& edit) {
    auto ob = std::make_shared<OuterBounds>(*outer_at(*make_fast_engine(net, 1), p, 0.05, o));
    for (NodeBounds& nb : ob->nodes)
      for (double& l : nb.lower) l = std::max(l, 0.0);
    edit(*ob);
    return ob;
  };
  auto run = [&](const BoundProblem& q, const BoundOptions& oo, double* by_outer = nullptr) {
    auto e = make_fast_engine(net, 1);
    auto r = e->bound({q}, oo);
    if (by_outer) *by_outer = e->stats().rows_skipped_outer;
    return r;
  };
  const auto plain = run(p, o);
  BoundProblem q = p;
  q.outer = bogus([](OuterBounds&) {});
  double applied = 0;
  const auto changed = run(q, o, &applied);
  EXPECT_GT(applied, 0);
  EXPECT_NE(changed[0].lower, plain[0].lower) << "matching outer bounds were not used";
  const std::vector<std::pair<const char*, std::function<void(OuterBounds&)>>> mismatches = {
      {"smaller eps", [](OuterBounds& b) { b.eps = 0.04; }},
      {"other centre", [](OuterBounds& b) { b.x0[3] += 1e-9; }},
      {"other norm", [](OuterBounds& b) { b.norm = Norm::L2; }},
      {"other box", [](OuterBounds& b) { b.clip_to_box = true; }},
      {"short node", [](OuterBounds& b) { b.nodes[0].upper.pop_back(); }},
      {"no such node", [](OuterBounds& b) { b.nodes[0].node = 1000; }},
  };
  for (const auto& [what, edit] : mismatches) {
    q.outer = bogus(edit);
    double used = -1;
    const auto r = run(q, o, &used);
    EXPECT_EQ(used, 0) << what;
    EXPECT_EQ(r[0].lower, plain[0].lower) << what;
    EXPECT_EQ(r[0].upper, plain[0].upper) << what;
  }
  {  // clipped to a box: outer bounds for another box are ignored, for the same box used
    BoundOptions clipped = o;
    clipped.clip_to_box = true;
    const auto clipped_plain = run(p, clipped);
    q.outer = bogus([](OuterBounds& b) { b.clip_to_box = true; });
    double used = 0;
    EXPECT_NE(run(q, clipped, &used)[0].lower, clipped_plain[0].lower);
    EXPECT_GT(used, 0);
    q.outer = bogus([](OuterBounds& b) { b.clip_to_box = true, b.box_hi = 0.9; });
    EXPECT_EQ(run(q, clipped, &used)[0].lower, clipped_plain[0].lower);
    EXPECT_EQ(used, 0);
  }
  q.outer = bogus([](OuterBounds&) {});
  BoundOptions exact = o;
  exact.exact_cnncert = true;  // exact mode back-substitutes every neuron: outer bounds play no part
  EXPECT_EQ(run(q, exact)[0].lower, run(p, exact)[0].lower);
  BoundProblem boxed = q;  // a box problem: its region is not the ball the bounds are for
  boxed.x_lower = boxed.x0, boxed.x_upper = boxed.x0;
  for (size_t j = 0; j < boxed.x0.size(); ++j) boxed.x_lower[j] -= 0.05, boxed.x_upper[j] += 0.05;
  BoundProblem boxed_plain = boxed;
  boxed_plain.outer.reset();
  EXPECT_EQ(run(boxed, o)[0].lower, run(boxed_plain, o)[0].lower);
}

/// The fast engine, recording what every problem of every call was given as outer bounds.
class RecordingEngine final : public BoundEngine {
 public:
  explicit RecordingEngine(const Network& net) : inner_(make_fast_engine(net, 1)) {}
  std::string name() const override { return "recording"; }
  bool uses_outer_bounds(const BoundOptions& o) const override { return inner_->uses_outer_bounds(o); }
  std::vector<BoundResult> bound(const std::vector<BoundProblem>& ps, const BoundOptions& o) override {
    auto r = inner_->bound(ps, o);
    for (size_t i = 0; i < ps.size(); ++i) {
      seen.push_back({ps[i].eps, ps[i].outer ? ps[i].outer->eps : -1, !r[i].lower.empty() && r[i].lower[0] > 0});
      if (ps[i].outer) EXPECT_EQ(ps[i].outer->x0, ps[i].x0);
    }
    return r;
  }
  EngineStats stats() const override { return inner_->stats(); }
  struct Step {
    double eps, outer_eps;
    bool certified;
  };
  std::vector<Step> seen;

 private:
  std::unique_ptr<BoundEngine> inner_;
};

TEST(FastEngine, TheSearchPassesEachFailedStepsBoundsToTheLaterSteps) {
  // One image, one target: the steps are the search's; each step after the first failure gets the
  // bounds of the latest failed step, whose radius is larger than its own.
  const Network net = random_network(Family::Cnn, ActKind::Relu, 12);
  const std::vector<double> x = random_inputs(13, 1, net.input_size());
  CertifyOptions o;
  RecordingEngine e(net);
  const auto res = certify(net, e, x, {}, o);
  ASSERT_EQ(res.size(), 1u);
  ASSERT_EQ(e.seen.size(), static_cast<size_t>(o.cnncert_steps));
  double failed = -1;  // the latest failed step's radius
  int with_outer = 0;
  for (const auto& st : e.seen) {
    EXPECT_EQ(st.outer_eps, failed) << "step at eps " << st.eps;
    if (st.outer_eps >= 0) {
      EXPECT_GT(st.outer_eps, st.eps);
      ++with_outer;
    }
    if (!st.certified) failed = st.eps;
  }
  EXPECT_GT(with_outer, 5);
  EXPECT_GT(e.stats().rows_skipped_outer, 0);
  o.bound.exact_cnncert = true;  // nothing to pass on in exact mode
  RecordingEngine exact(net);
  certify(net, exact, x, {}, o);
  for (const auto& st : exact.seen) EXPECT_EQ(st.outer_eps, -1);
}

/// Everything two results hold, compared exactly.
void expect_identical(const std::vector<BoundResult>& a, const std::vector<BoundResult>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t p = 0; p < a.size(); ++p) {
    EXPECT_EQ(a[p].lower, b[p].lower) << what;
    EXPECT_EQ(a[p].upper, b[p].upper) << what;
    EXPECT_EQ(a[p].a_lower, b[p].a_lower) << what;
    EXPECT_EQ(a[p].a_upper, b[p].a_upper) << what;
    EXPECT_EQ(a[p].b_lower, b[p].b_lower) << what;
    EXPECT_EQ(a[p].b_upper, b[p].b_upper) << what;
    ASSERT_EQ(a[p].intermediate.size(), b[p].intermediate.size()) << what;
    for (size_t i = 0; i < a[p].intermediate.size(); ++i) {
      EXPECT_EQ(a[p].intermediate[i].lower, b[p].intermediate[i].lower) << what;
      EXPECT_EQ(a[p].intermediate[i].upper, b[p].intermediate[i].upper) << what;
    }
  }
}

TEST(FastEngine, RealNetworkResultsAreBitIdenticalForAnyThreadCountAndBudget) {
  // LeNet (convolutions with 6 and 16 channels: the AXPY and the GEMM paths, max pooling, dense
  // layers of several chunks): 1 thread against 7 (more threads than problems: the chunks of a
  // problem in parallel) at the default budget, and 1 against 4 with a 4 MiB budget (rows
  // chunked small, fewer threads at once).
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_lenet.onnx").string());
  const std::vector<BoundProblem> ps = fixture_problems(net, "mnist_cnn_lenet", 2, 0.02);
  BoundOptions o;
  o.want_intermediate = o.want_linear = true;
  expect_identical(make_fast_engine(net, 1)->bound(ps, o), make_fast_engine(net, 7)->bound(ps, o),
                   "lenet 1 vs 7 threads");
  expect_identical(make_fast_engine(net, 1, 4)->bound(ps, o), make_fast_engine(net, 4, 4)->bound(ps, o),
                   "lenet 4 MiB, 1 vs 4 threads");
  o.exact_cnncert = true;
  o.want_linear = false;
  expect_equal(make_fast_engine(net, 2, 4)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o),
               "lenet 4 MiB vs reference");
}

TEST(FastEngine, MaxPoolInputsAreSkippedOnlyWhereProvenNonPositive) {
  // The max-pool relaxation needs every input's bounds, and MATH.md §2.5 takes a max-pool's input
  // bounds [max(l, 0), max(u, 0)] from the pre-activations of the ReLU it reads. In the default
  // mode those nodes keep the reference's bounds except for neurons proven ≤ 0 (u ≤ 0: the
  // max-pool sees [0, 0] for any such bounds, so they get no row). LeNet: its second max-pool
  // reads a ReLU two convolutions deep, where interval bounds differ from back-substituted ones.
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_lenet.onnx").string());
  std::vector<int> pool_fed;
  for (const Node& nd : net.nodes()) {
    if (nd.op != OpKind::MaxPool) continue;
    const Node& in = net.node(nd.inputs[0]);
    pool_fed.push_back(nd.inputs[0]);
    if (in.op == OpKind::Activation) pool_fed.push_back(in.inputs[0]);
  }
  ASSERT_FALSE(pool_fed.empty());
  int skipped_nonpositive = 0;
  for (double eps : {0.005, 0.02}) {
    BoundOptions o;
    o.want_intermediate = true;
    const auto ps = fixture_problems(net, "mnist_cnn_lenet", 2, eps);
    const auto got = make_fast_engine(net, 1)->bound(ps, o), want = make_cpu_engine(net, 1)->bound(ps, o);
    int compared = 0;
    for (size_t p = 0; p < ps.size(); ++p)
      for (size_t i = 0; i < want[p].intermediate.size(); ++i) {
        const NodeBounds& w = want[p].intermediate[i];
        if (std::find(pool_fed.begin(), pool_fed.end(), w.node) == pool_fed.end()) continue;
        ++compared;
        const NodeBounds& g = got[p].intermediate[i];
        ASSERT_EQ(g.node, w.node);
        const bool pre_activation = net.node(w.node).op != OpKind::Activation;
        for (size_t j = 0; j < w.lower.size(); ++j) {
          const double tl = fast_tol(w.lower[j], w.upper[j] - w.lower[j]),
                       tu = fast_tol(w.upper[j], w.upper[j] - w.lower[j]);
          if (std::fabs(g.lower[j] - w.lower[j]) <= tl && std::fabs(g.upper[j] - w.upper[j]) <= tu) continue;
          // Otherwise only a neuron proven ≤ 0: a pre-activation with u ≤ 0 (where the reference
          // has u ≤ 0 too, only its lower bound differs), or the ReLU output [0, 0].
          skipped_nonpositive += pre_activation;
          EXPECT_LE(g.upper[j], 0) << "node " << w.node << " neuron " << j;
          if (!pre_activation) EXPECT_EQ(g.lower[j], 0) << "node " << w.node << " neuron " << j;
        }
      }
    EXPECT_GT(compared, 0);
  }
  EXPECT_GT(skipped_nonpositive, 0) << "no max-pool-fed neuron was proven <= 0";
}

TEST(FastEngine, ResultsAreBitIdenticalForAnyThreadCount) {
  for (Family f : {Family::Residual, Family::CnnMaxPool, Family::Mlp}) {
    const Network net = random_network(f, ActKind::Relu, 61);
    BoundOptions o;
    o.want_intermediate = o.want_linear = true;
    for (int count : {1, 5}) {  // one problem: threads share its chunks; five: a problem per thread
      const auto ps = margin_problems(net, count, 0.05, 13);
      const auto one = make_fast_engine(net, 1)->bound(ps, o);
      for (int threads : {2, 3}) {
        const auto many = make_fast_engine(net, threads)->bound(ps, o);
        for (size_t p = 0; p < ps.size(); ++p) {
          EXPECT_EQ(one[p].lower, many[p].lower) << family_name(f) << " threads " << threads;
          EXPECT_EQ(one[p].upper, many[p].upper) << family_name(f);
          EXPECT_EQ(one[p].a_lower, many[p].a_lower) << family_name(f);
          ASSERT_EQ(one[p].intermediate.size(), many[p].intermediate.size());
          for (size_t i = 0; i < one[p].intermediate.size(); ++i)
            EXPECT_EQ(one[p].intermediate[i].upper, many[p].intermediate[i].upper) << family_name(f);
        }
      }
    }
  }
}

TEST(FastEngine, MemoryBudgetChunksTheRowsAndIsRespected) {
  // LeNet: the rows of its first dense layer (120 neurons) are dense over the first convolution's
  // 6 × 24 × 24 = 3 456 outputs, 120 · 2 · 3456 · 4 B ≈ 3.3 MB per tensor in one chunk. With a
  // 1 MiB budget the rows must be chunked so that the coefficient tensors stay inside it, with
  // the same bounds.
  const Network net = import_onnx((source_dir() / "models/mnist_cnn_lenet.onnx").string());
  const std::vector<double> x = fixture_inputs("mnist_cnn_lenet", 0, 1);
  const auto ps = std::vector<BoundProblem>{margin_problem(net, x, 0.02)};
  BoundOptions o;
  o.exact_cnncert = true;
  auto small = make_fast_engine(net, 1, 1);
  auto large = make_fast_engine(net, 1);
  expect_equal(small->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), "1 MiB");
  const auto big = large->bound(ps, o);
  std::printf("peak coefficient tensors: %.2f MiB with a 1 MiB budget, %.2f MiB with 2048 MiB\n",
              small->stats().peak_tensor_bytes / 1048576.0, large->stats().peak_tensor_bytes / 1048576.0);
  EXPECT_LE(small->stats().peak_tensor_bytes, 1048576.0);
  EXPECT_GT(large->stats().peak_tensor_bytes, 2 * small->stats().peak_tensor_bytes);
}

TEST(FastEngine, InputBoxAndEmptySpecsMatchTheReference) {
  const Network net = random_network(Family::CnnAvgPoolPadded, ActKind::Relu, 9);
  auto ps = margin_problems(net, 3, 0.3, 21);
  for (auto& p : ps)
    for (double& v : p.x0) v = 0.5 + 0.4 * std::tanh(v);
  ps[1].rows = 0;
  ps[1].spec.clear();
  BoundOptions o;
  o.clip_to_box = true;
  o.box_lo = 0, o.box_hi = 1;
  o.exact_cnncert = true;
  expect_equal(make_fast_engine(net, 2)->bound(ps, o), make_cpu_engine(net, 1)->bound(ps, o), "clip");
  EXPECT_TRUE(make_fast_engine(net)->bound({}, o).empty());
  ps[0].x0[0] = std::nan("");
  EXPECT_THROW(make_fast_engine(net)->bound(ps, o), InvalidArgument);
  EXPECT_THROW(make_fast_engine(net, 1, 0), InvalidArgument);
}

TEST(FastEngine, ShippedAndSharedNetworksMatchTheReference) {
  auto check = [](const std::filesystem::path& onnx, const std::string& stem, double eps, Norm norm,
                  const char* method) {
    const Network net = import_onnx(onnx.string());
    const std::vector<BoundProblem> ps = fixture_problems(net, stem, 2, eps);
    BoundOptions o;
    o.norm = norm;
    o.method = parse_method(method);
    const auto ref = make_cpu_engine(net)->bound(ps, o);
    o.exact_cnncert = true;
    o.want_intermediate = true;
    auto want = make_cpu_engine(net)->bound(ps, o);
    expect_equal(make_fast_engine(net)->bound(ps, o), want, stem + " exact");
    o.exact_cnncert = false;
    o.want_intermediate = false;
    Tightness t{fast_tol};
    t.add(make_fast_engine(net)->bound(ps, o), ref, stem + " default");
    std::printf("%s: of %d bounds %d tighter, %d looser\n", stem.c_str(), t.rows, t.tighter, t.looser);
    EXPECT_EQ(t.looser, 0) << stem;
  };
  check(source_dir() / "models/mnist_cnn_3layer_5_3.onnx", "mnist_cnn_3layer_5_3", 0.03, Norm::Linf, "adaptive");
  CNNCERT_REQUIRE_SHARED_DATA();
  check(shared_data() / "nets/mnist_verivital_convnet_maxpool.onnx", "mnist_verivital_convnet_maxpool", 0.004,
        Norm::Linf, "adaptive");
  check(shared_data() / "nets/mnist_fc_256x2.onnx", "mnist_fc_256x2", 0.01, Norm::Linf, "fastlin");
  check(shared_data() / "nets/mnist_eran_sigmoid_6x200.onnx", "mnist_eran_sigmoid_6x200", 0.012, Norm::Linf,
        "deepcert");
  check(shared_data() / "nets/cifar_oval21_base_kw.onnx", "cifar_oval21_base_kw", 0.004, Norm::L2, "adaptive");
}

TEST(FastEngine, CertifiedRadiiMatchTheReferenceInExactMode) {
  for (Family f : {Family::Cnn, Family::Residual, Family::CnnMaxPool}) {
    const Network net = random_network(f, ActKind::Relu, 31);
    const std::vector<double> x = random_inputs(500, 6, net.input_size());
    CertifyOptions o;
    o.target = TargetMode::All;
    o.bound.exact_cnncert = true;
    auto ref = make_cpu_engine(net, 1);
    auto fast = make_fast_engine(net, 2);
    const auto a = certify(net, *ref, x, {}, o), b = certify(net, *fast, x, {}, o);
    ASSERT_EQ(a.size(), b.size());
    // equal radii up to a search step decided within float rounding of 0 (confirmed by the reference)
    expect_same_radii(net, *ref, x, a, b, o.bound, family_name(f));
    o.bound.exact_cnncert = false;  // the default: the same radii up to the rare looser bound (≤ 0.1 % smaller)
    const auto c = certify(net, *fast, x, {}, o);
    for (size_t i = 0; i < a.size(); ++i)
      for (size_t t = 0; t < a[i].targets.size(); ++t)
        EXPECT_GE(c[i].targets[t].eps, a[i].targets[t].eps * (1 - 1e-3)) << family_name(f);
  }
}

TEST(FastEngine, IsTheDefaultCpuEngine) {
  const Network net = random_network(Family::Cnn, ActKind::Relu, 3);
  EngineOptions e;
  EXPECT_EQ(make_engine(net, e)->name(), "cpu");
  e.cpu_engine = CpuEngine::Reference;
  EXPECT_EQ(make_engine(net, e)->name(), "cpu-reference");
  EXPECT_EQ(parse_cpu_engine("reference"), CpuEngine::Reference);
  EXPECT_THROW(parse_cpu_engine("slow"), InvalidArgument);
}

TEST(FastEngine, CliSaysWhichEngineRanAndExactEqualsTheReference) {
  // 6 images of the shipped model: the summary names the mode; --exact-cnncert and --engine
  // reference give the same radii in the CSV; a wrong engine name is bad input.
  const std::string base = kModel + " " + kImages + " -n 6 -q --csv - ";
  const Result fast = cli("certify " + base), exact = cli("certify " + base + "--exact-cnncert"),
               ref = cli("certify " + base + "--engine reference");
  ASSERT_EQ(fast.code, 0) << fast.err;
  ASSERT_EQ(exact.code, 0) << exact.err;
  ASSERT_EQ(ref.code, 0) << ref.err;
  // (with the CSV on stdout, the summary goes to stderr)
  EXPECT_NE(fast.err.find("engine = fast, stable neurons by interval propagation"), std::string::npos) << fast.err;
  EXPECT_NE(exact.err.find("engine = fast, exact CNN-Cert"), std::string::npos) << exact.err;
  EXPECT_NE(ref.err.find("engine = cpu-reference"), std::string::npos) << ref.err;
  EXPECT_EQ(fast.out.rfind("image,label,predicted,target,eps", 0), 0u) << "stdout holds the CSV alone: " << fast.out;
  // CSV rows (image,label,predicted,target,eps,...): the same eps column in exact and reference.
  auto eps_column = [](const std::string& out) {
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || !std::isdigit(static_cast<unsigned char>(line[0]))) continue;
      std::istringstream f(line);
      std::string field;
      for (int i = 0; i < 5 && std::getline(f, field, ','); ++i) {
      }
      v.push_back(field);
    }
    return v;
  };
  EXPECT_EQ(eps_column(exact.out).size(), 6u);
  EXPECT_EQ(eps_column(exact.out), eps_column(ref.out));
  expect_bad_input(cli("certify " + base + "--engine slow"), "unknown engine 'slow'");
}

}  // namespace
}  // namespace cnncert::test
