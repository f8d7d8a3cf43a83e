#pragma once
// Comparison of a float32 batched engine (the GPU engine, or its algorithm run on the CPU) with
// the double-precision CPU reference engine. Shared by tests/cpu (host-float engine) and
// tests/gpu (CUDA engine).
//
// Tolerance. The engines differ only by float32 rounding: every coefficient of a row carries a
// relative error of about (number of operations on it) · 2⁻²⁴ ≈ 1e-6 per layer, and a bound is
// a sum of terms whose magnitudes add up to about |centre| + ε‖A‖ + |B|. So a bound may differ by
// a few 1e-6 of that scale per layer; with margins of safety for the deepest test networks
// (≤ 8 layers) we allow 1e-4 · (1 + |bound|) + 1e-4 · width, where width = upper − lower of the
// reference (the ε-dependent part of the scale). A relaxation decision that flips within that
// tolerance (an unstable neuron at l ≈ 0, the adaptive rule's u ≈ −l) can move a bound by more;
// the tests count such rows and allow none on the generic random networks used here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cnncert/certify.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/proven.hpp"
#include "common/net_factory.hpp"
#include "common/test_util.hpp"

namespace cnncert::test {

inline constexpr double kFloatRtol = 1e-4;

inline double float_tol(double ref, double width, double rtol = kFloatRtol) {
  return rtol * (1 + std::fabs(ref)) + rtol * std::fabs(width);
}

/// Soundness checks of a float32 engine evaluate the double network at sampled points. The
/// engine's bounds differ from exact ones of that network by its rounding: about 2⁻²⁴ of each
/// layer's sums (float32 weights and coefficients) per layer, so a sampled value may lie outside
/// them by that much; 1e-5 relative leaves a margin over 8 layers.
inline constexpr double kFloatSoundTol = 1e-5;

/// Problems for `net`: `count` random centres with different radii, all margins of the predicted class.
inline std::vector<BoundProblem> margin_problems(const Network& net, int count, double eps, uint64_t seed) {
  std::vector<BoundProblem> ps;
  for (int i = 0; i < count; ++i)
    ps.push_back(
        margin_problem(net, random_input(seed + static_cast<uint64_t>(i), net.input_size()), eps * (1 + 0.5 * i)));
  return ps;
}

/// Compares everything two engines return for the same batch, within float_tol at `rtol`; returns
/// the largest |difference| / tolerance seen (≤ 1 passes).
inline double compare_results(const std::vector<BoundResult>& got, const std::vector<BoundResult>& want,
                              const std::string& what, double rtol = kFloatRtol) {
  auto tol = [rtol](double ref, double width) { return float_tol(ref, width, rtol); };
  double worst = 0;
  EXPECT_EQ(got.size(), want.size()) << what;
  for (size_t p = 0; p < std::min(got.size(), want.size()); ++p) {
    const BoundResult &g = got[p], &w = want[p];
    EXPECT_EQ(g.error, w.error) << what << " problem " << p;
    EXPECT_EQ(g.lower.size(), w.lower.size()) << what;
    for (size_t r = 0; r < std::min(g.lower.size(), w.lower.size()); ++r) {
      const double width = w.upper[r] - w.lower[r];
      const double tl = tol(w.lower[r], width), tu = tol(w.upper[r], width);
      worst = std::max({worst, std::fabs(g.lower[r] - w.lower[r]) / tl, std::fabs(g.upper[r] - w.upper[r]) / tu});
      EXPECT_NEAR(g.lower[r], w.lower[r], tl) << what << " problem " << p << " row " << r;
      EXPECT_NEAR(g.upper[r], w.upper[r], tu) << what << " problem " << p << " row " << r;
    }
    // intermediate bounds: same nodes, same values within the tolerance
    EXPECT_EQ(g.intermediate.size(), w.intermediate.size()) << what;
    for (size_t i = 0; i < std::min(g.intermediate.size(), w.intermediate.size()); ++i) {
      const NodeBounds &gi = g.intermediate[i], &wi = w.intermediate[i];
      EXPECT_EQ(gi.node, wi.node) << what;
      EXPECT_EQ(gi.lower.size(), wi.lower.size()) << what;
      if (gi.lower.size() != wi.lower.size()) continue;
      for (size_t j = 0; j < wi.lower.size(); ++j) {
        const double width = wi.upper[j] - wi.lower[j];
        worst = std::max(worst, std::fabs(gi.lower[j] - wi.lower[j]) / tol(wi.lower[j], width));
        worst = std::max(worst, std::fabs(gi.upper[j] - wi.upper[j]) / tol(wi.upper[j], width));
        EXPECT_NEAR(gi.lower[j], wi.lower[j], tol(wi.lower[j], width))
            << what << " node " << wi.node << " neuron " << j;
        EXPECT_NEAR(gi.upper[j], wi.upper[j], tol(wi.upper[j], width))
            << what << " node " << wi.node << " neuron " << j;
      }
    }
    // linear coefficients and constants
    EXPECT_EQ(g.a_lower.size(), w.a_lower.size()) << what;
    EXPECT_EQ(g.b_lower.size(), w.b_lower.size()) << what;
    if (g.a_lower.size() == w.a_lower.size() && !w.a_lower.empty()) {
      double scale = 0;
      for (double v : w.a_lower) scale = std::max(scale, std::fabs(v));
      for (double v : w.a_upper) scale = std::max(scale, std::fabs(v));
      for (size_t j = 0; j < w.a_lower.size(); ++j) {
        EXPECT_NEAR(g.a_lower[j], w.a_lower[j], rtol * (scale + 1e-12)) << what << " a_lower " << j;
        EXPECT_NEAR(g.a_upper[j], w.a_upper[j], rtol * (scale + 1e-12)) << what << " a_upper " << j;
      }
      for (size_t r = 0; r < w.b_lower.size(); ++r) {
        EXPECT_NEAR(g.b_lower[r], w.b_lower[r], tol(w.b_lower[r], 1)) << what << " b_lower " << r;
        EXPECT_NEAR(g.b_upper[r], w.b_upper[r], tol(w.b_upper[r], 1)) << what << " b_upper " << r;
      }
    }
  }
  return worst;
}

struct EngineCase {
  Family family;
  ActKind act;
  Norm norm;
  const char* method;
};

/// Every family with ReLU under fastlin/adaptive, and with the smooth activations and LeakyReLU
/// under their methods, over the three norms.
inline std::vector<EngineCase> engine_cases() {
  std::vector<EngineCase> cases;
  const Family families[] = {Family::Mlp,        Family::Cnn,
                             Family::CnnMaxPool, Family::CnnAvgPoolPadded,
                             Family::Residual,   Family::BatchNormStrided};
  const Norm norms[] = {Norm::Linf, Norm::L2, Norm::L1};
  for (Family f : families)
    for (Norm n : norms) {
      cases.push_back({f, ActKind::Relu, n, "adaptive"});
      cases.push_back({f, ActKind::Relu, n, "fastlin"});
    }
  for (Family f : {Family::Mlp, Family::Cnn, Family::Residual})
    for (ActKind a : {ActKind::Sigmoid, ActKind::Tanh, ActKind::Atan})
      for (const char* m : {"cnncert", "deepcert", "crown"}) cases.push_back({f, a, Norm::Linf, m});
  for (Family f : {Family::Cnn, Family::CnnMaxPool}) cases.push_back({f, ActKind::LeakyRelu, Norm::L2, "adaptive"});
  for (Family f : {Family::Mlp, Family::CnnMaxPool, Family::Residual}) {
    cases.push_back({f, ActKind::Erf, Norm::Linf, "deepcert"});
    for (ActKind a : kGeneralActs) cases.push_back({f, a, Norm::Linf, "crown"});
  }
  return cases;
}

/// Runs every case through `test` and the CPU reference, in exact mode (BoundOptions::
/// exact_cnncert: every neuron gets its row, as in the reference); returns the worst ratio seen.
template <class MakeEngine>
double compare_on_random_networks(MakeEngine&& make_test_engine, int problems = 3, bool exact = true) {
  double worst = 0;
  uint64_t seed = 100;
  for (const EngineCase& c : engine_cases()) {
    ++seed;
    const Network net = random_network(c.family, c.act, seed);
    auto ref = make_cpu_engine(net, 1);
    auto test = make_test_engine(net);
    BoundOptions o;
    o.norm = c.norm;
    o.method = parse_method(c.method);
    o.want_intermediate = true;
    o.want_linear = true;
    o.exact_cnncert = exact;
    const double eps = c.norm == Norm::Linf ? 0.05 : c.norm == Norm::L2 ? 0.2 : 0.5;
    const auto ps = margin_problems(net, problems, eps, seed * 7);
    const std::string what =
        std::string(family_name(c.family)) + "/" + act_name(c.act) + "/" + norm_name(c.norm) + "/" + c.method;
    worst = std::max(worst, compare_results(test->bound(ps, o), ref->bound(ps, o), what));
  }
  return worst;
}

/// How `got` (row skipping) compares with `want` (the reference), row by row.
/// `tol(ref, width)` is the agreement expected of the same bound (rounding).
struct Tightness {
  std::function<double(double, double)> tol;
  int rows = 0, tighter = 0, looser = 0;
  double worst_looser = 0;  ///< largest loosening, relative to the reference's width upper − lower
  void add(const std::vector<BoundResult>& got, const std::vector<BoundResult>& want, const std::string& what) {
    EXPECT_EQ(got.size(), want.size()) << what;
    for (size_t p = 0; p < std::min(got.size(), want.size()); ++p) {
      EXPECT_EQ(got[p].error, want[p].error) << what;
      for (size_t r = 0; r < want[p].lower.size(); ++r) {
        const double l = want[p].lower[r], u = want[p].upper[r], t = tol(l, u - l);
        const double loss = std::max(l - got[p].lower[r], got[p].upper[r] - u);
        ++rows;
        if (loss > t) {
          ++looser;
          worst_looser = std::max(worst_looser, loss / (u - l));
          std::printf("  looser: %s problem %zu row %zu by %.3g of the width\n", what.c_str(), p, r, loss / (u - l));
        }
        tighter += got[p].lower[r] > l + t || got[p].upper[r] < u - t;
      }
    }
  }
};

inline BoundOptions options_of(const EngineCase& c, bool exact) {
  BoundOptions o;
  o.norm = c.norm;
  o.method = parse_method(c.method);
  o.exact_cnncert = exact;
  return o;
}

inline double eps_of(Norm n) {
  return n == Norm::Linf ? 0.05 : n == Norm::L2 ? 0.2 : 0.5;
}

inline std::string case_name(const EngineCase& c) {
  return std::string(family_name(c.family)) + "/" + act_name(c.act) + "/" + norm_name(c.norm) + "/" + c.method;
}

/// Outer bounds (BoundProblem::outer) of problem p computed at radius eps by `engine`.
inline std::shared_ptr<const OuterBounds> outer_at(BoundEngine& engine, const BoundProblem& p, double eps,
                                                   BoundOptions o) {
  BoundProblem q = p;
  q.eps = eps;
  o.want_intermediate = true;
  auto ob = std::make_shared<OuterBounds>();
  ob->x0 = p.x0, ob->eps = eps, ob->norm = o.norm;
  ob->clip_to_box = o.clip_to_box, ob->box_lo = o.box_lo, ob->box_hi = o.box_hi;
  ob->nodes = engine.bound({q}, o)[0].intermediate;
  return ob;
}

/// A search step below a failed radius passes that step's bounds (BoundProblem::outer): on every
/// ReLU/LeakyReLU family, outer bounds of a 1.1× radius (from the engine itself) must make the
/// engine skip more rows (some by them alone), stay sound (check_sound up to `sound_tol`) and
/// rarely loosen a bound against the reference (`tol`: the engine's rounding). With `exact_too`,
/// exact mode must still give the reference's bounds (it ignores them).
template <class MakeEngine>
void expect_outer_bounds_skip_more_rows(MakeEngine&& make_engine, const std::function<double(double, double)>& tol,
                                        double sound_tol, bool exact_too) {
  uint64_t seed = 900;
  Tightness t{tol};
  double skipped_plain = 0, skipped = 0, by_outer = 0;
  for (const EngineCase& c : engine_cases()) {
    if (c.act != ActKind::Relu && c.act != ActKind::LeakyRelu) continue;
    const Network net = random_network(c.family, c.act, ++seed);
    const BoundOptions o = options_of(c, false);
    std::vector<BoundProblem> ps = margin_problems(net, 3, eps_of(c.norm), seed * 5);
    auto plain = make_engine(net);
    plain->bound(ps, o);
    skipped_plain += plain->stats().rows_skipped;
    EXPECT_TRUE(plain->uses_outer_bounds(o));
    EXPECT_FALSE(plain->uses_outer_bounds(options_of(c, true)));
    auto first = make_engine(net);
    for (BoundProblem& p : ps) p.outer = outer_at(*first, p, 1.1 * p.eps, o);
    auto fresh = make_engine(net);
    const auto with = fresh->bound(ps, o);
    skipped += fresh->stats().rows_skipped, by_outer += fresh->stats().rows_skipped_outer;
    t.add(with, make_cpu_engine(net, 1)->bound(ps, o), case_name(c));
    SCOPED_TRACE(case_name(c));
    for (size_t i = 0; i < ps.size(); ++i)
      check_sound(net, ps[i], with[i], c.norm, seed + i, 20, 5, nullptr, sound_tol);
    if (exact_too) {
      const BoundOptions e = options_of(c, true);
      compare_results(make_engine(net)->bound(ps, e), make_cpu_engine(net, 1)->bound(ps, e), case_name(c));
    }
  }
  std::printf(
      "rows skipped: %.0f with outer bounds (%.0f by them alone), %.0f without; of %d bounds %d tighter, %d "
      "looser (worst by %.3g of the width)\n",
      skipped, by_outer, skipped_plain, t.rows, t.tighter, t.looser, t.worst_looser);
  EXPECT_GT(by_outer, 0) << "the outer bounds proved nothing stable";
  EXPECT_GT(skipped, skipped_plain);
  EXPECT_LE(t.looser, t.rows / 100) << "more than 1 % of the bounds looser than the reference";
  EXPECT_LE(t.worst_looser, 0.01) << "a bound looser than the reference by more than 1 % of its width";
}

/// Input boxes on a float32 engine: in one batch a plain ball, a box of its own (asymmetric
/// half-widths in [0, 0.2), some sides of width 0) and the ball again; then balls in [0, 1]
/// clipped to that box (clip_to_box), with a box problem among them. In CNN-Cert's exact mode
/// against the reference engine; in the default mode (rows for unstable neurons only) against
/// `make_same_algorithm` when given (the same algorithm on another backend).
template <class MakeEngine, class MakeSame = std::nullptr_t>
void compare_input_boxes(MakeEngine&& make_engine, MakeSame&& make_same_algorithm = nullptr) {
  uint64_t seed = 1300;
  for (Family f : {Family::Mlp, Family::Cnn, Family::CnnMaxPool, Family::CnnAvgPoolPadded, Family::Residual})
    for (ActKind act : {ActKind::Relu, ActKind::Tanh}) {
      const Network net = random_network(f, act, ++seed);
      std::mt19937_64 rng(seed);
      std::uniform_real_distribution<double> u(0, 1);
      auto boxed = [&](BoundProblem p) {
        p.x_lower = p.x_upper = p.x0;
        for (size_t j = 0; j < p.x0.size(); ++j) {
          if (j % 7 != 0) p.x_lower[j] -= 0.2 * u(rng);
          if (j % 5 != 0) p.x_upper[j] += 0.2 * u(rng);
        }
        return p;
      };
      std::vector<BoundProblem> own = margin_problems(net, 2, 0.04, seed * 7);
      own.insert(own.begin() + 1, boxed(own[0]));
      std::vector<BoundProblem> clipped = margin_problems(net, 2, 0.3, seed * 11);
      for (BoundProblem& p : clipped)
        for (double& v : p.x0) v = 0.5 + 0.4 * std::tanh(v);  // inside [0, 1]
      clipped.push_back(boxed(clipped[0]));
      for (const bool clip : {false, true})
        for (const bool exact : {true, false}) {
          BoundOptions o;
          o.method = parse_method(act == ActKind::Relu ? "adaptive" : "crown");
          o.exact_cnncert = exact;
          o.want_intermediate = true;
          o.clip_to_box = clip;
          const auto& ps = clip ? clipped : own;
          const std::string what = std::string(family_name(f)) + " " + act_name(act) + (clip ? " clipped" : " boxes") +
                                   (exact ? ", exact" : ", default mode");
          const auto got = make_engine(net)->bound(ps, o);
          for (const BoundResult& r : got) EXPECT_TRUE(r.error.empty()) << what << ": " << r.error;
          if (exact) {
            compare_results(got, make_cpu_engine(net, 1)->bound(ps, o), what);
          } else if constexpr (!std::is_same_v<std::decay_t<MakeSame>, std::nullptr_t>) {
            compare_results(got, make_same_algorithm(net)->bound(ps, o), what);
          }
        }
    }
}

/// Weights of 1e7: the first hidden layer's bounds stay below 1e12 for both problems, the
/// second's exceed it for the problem at x0 = 1 only. Its error names the second layer, its
/// intermediate bounds stop before it, and the other problem of the batch is unaffected: as the
/// reference engine reports (a batched engine's flags are downloaded once, with the results).
template <class MakeEngine>
void expect_unreliable_problem_fails_alone(MakeEngine&& make_engine) {
  NetworkBuilder nb;
  const int x = nb.input({1});
  const int h1 = nb.activation(nb.dense(x, DenseAttr{2, 1, {1e7, -1e7}, {1, 1}}), ActKind::Relu);
  const int h2 = nb.activation(nb.dense(h1, DenseAttr{2, 2, {1e7, 1, 1, -1e7}, {0, 0}}), ActKind::Relu);
  const Network net = nb.build(nb.dense(h2, DenseAttr{1, 2, {1, 1}, {0}}));
  const BoundProblem tame{{1e-6}, 1e-7, {1.0}, 1}, wild{{1.0}, 1e-3, {1.0}, 1};
  BoundOptions o;
  o.want_intermediate = true;
  for (const bool exact : {false, true}) {
    o.exact_cnncert = exact;
    const auto got = make_engine(net)->bound({wild, tame, wild}, o),
               ref = make_cpu_engine(net, 1)->bound({wild, tame, wild}, o);
    ASSERT_EQ(got.size(), 3u);
    for (size_t p = 0; p < 3; ++p) {
      SCOPED_TRACE(p);
      EXPECT_EQ(got[p].error, ref[p].error);
      ASSERT_EQ(got[p].intermediate.size(), ref[p].intermediate.size());
      for (size_t i = 0; i < got[p].intermediate.size(); ++i)
        EXPECT_EQ(got[p].intermediate[i].node, ref[p].intermediate[i].node);
    }
    EXPECT_NE(got[0].error.find("exceed 1e12"), std::string::npos) << got[0].error;
    EXPECT_TRUE(got[1].error.empty()) << got[1].error;
    EXPECT_EQ(got[1].intermediate.size(), 2u);
    EXPECT_EQ(got[0].intermediate.size(), 1u);  // the first layer's, before the unreliable one
    compare_results({got[1]}, {ref[1]}, exact ? "tame problem, exact" : "tame problem");
  }
}

/// Specification coefficients float32 cannot hold (0.1, 1/3): a float32 engine bounds the rounded
/// specification and adds the bounds of the rounding's part over the outputs' intervals. Its
/// results must contain the exact specification's values (sampled), stay within the float
/// tolerance (`rtol`) of the reference, differ from those of the pre-rounded specification (the
/// correction is there) by no more than its size, move the linear bounds' constants with them,
/// and a coefficient beyond float32 is refused. With `exact`, in exact_cnncert mode.
template <class MakeEngine>
void expect_inexact_specification_corrected(MakeEngine&& make_engine, double rtol, bool exact) {
  const Network net = random_network(Family::Cnn, ActKind::Relu, 44);
  BoundProblem p = margin_problem(net, random_input(45, net.input_size()), 0.03);
  const int64_t classes = net.output_size();
  p.rows = 2;
  p.spec.assign(static_cast<size_t>(2 * classes), 0.0);
  p.spec[0] = 0.1, p.spec[1] = -1.0 / 3, p.spec[static_cast<size_t>(classes)] = 1e-3 / 7,
  p.spec[static_cast<size_t>(classes) + 2] = 2.0 / 3;
  BoundOptions o;
  o.want_linear = true;
  o.exact_cnncert = exact;
  // A second problem with an exact specification shares the batch: its bounds are unchanged.
  const BoundProblem q = margin_problem(net, random_input(47, net.input_size()), 0.02);
  const auto got = make_engine(net)->bound({p, q}, o), ref = make_cpu_engine(net, 1)->bound({p, q}, o);
  compare_results(got, ref, "inexact specification", rtol);
  check_sound(net, p, got[0], Norm::Linf, 46, 100, 10, nullptr, kFloatSoundTol);
  // The specification rounded to float beforehand: the same back-substitution without the
  // correction, which moves each bound by about 6e-8 of the terms (both rows have an inexact
  // coefficient).
  BoundProblem rounded = p;
  for (double& v : rounded.spec) v = static_cast<double>(static_cast<float>(v));
  const auto plain = make_engine(net)->bound({rounded, q}, o);
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_NE(got[0].lower[r], plain[0].lower[r]) << "row " << r << ": no correction";
    EXPECT_NE(got[0].upper[r], plain[0].upper[r]) << "row " << r << ": no correction";
    EXPECT_NEAR(got[0].lower[r], plain[0].lower[r], 1e-6 * (1 + std::fabs(plain[0].lower[r])));
    EXPECT_NEAR(got[0].upper[r], plain[0].upper[r], 1e-6 * (1 + std::fabs(plain[0].upper[r])));
    EXPECT_NEAR(got[0].b_lower[r] - plain[0].b_lower[r], got[0].lower[r] - plain[0].lower[r],
                1e-14 * (1 + std::fabs(plain[0].b_lower[r]) + std::fabs(plain[0].lower[r])))
        << "row " << r;
    EXPECT_NEAR(got[0].b_upper[r] - plain[0].b_upper[r], got[0].upper[r] - plain[0].upper[r],
                1e-14 * (1 + std::fabs(plain[0].b_upper[r]) + std::fabs(plain[0].upper[r])))
        << "row " << r;
  }
  EXPECT_EQ(got[1].lower, plain[1].lower);
  EXPECT_EQ(got[1].upper, plain[1].upper);
  // The corrections themselves bracket the rounded-off part δᵀf(x) at sampled points of the ball
  // (δ = c − c̃ exactly in double): a correction of the wrong sign, or the lower and upper ones
  // swapped, fails here (the corrections are about 1e-8; the slack is the rounding of the sums).
  BoundProblem delta = p;
  for (size_t i = 0; i < delta.spec.size(); ++i) delta.spec[i] = p.spec[i] - rounded.spec[i];
  std::mt19937_64 rng(48);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int s = 0; s < 50; ++s) {
    std::vector<double> x = p.x0;
    for (double& v : x) v += p.eps * (s % 2 ? (u(rng) > 0 ? 1.0 : -1.0) : u(rng));
    const auto d = spec_values(net, delta, x);
    for (size_t r = 0; r < 2; ++r) {
      const double slack = 1e-13 * (1 + std::fabs(plain[0].lower[r]) + std::fabs(plain[0].upper[r]));
      EXPECT_LE(got[0].lower[r] - plain[0].lower[r], d[r] + slack) << "row " << r << " sample " << s;
      EXPECT_GE(got[0].upper[r] - plain[0].upper[r], d[r] - slack) << "row " << r << " sample " << s;
    }
  }
  p.spec[0] = 1e39;  // beyond float32
  EXPECT_THROW(make_engine(net)->bound({p}, o), InvalidArgument);
  p.spec[0] = NAN;
  try {
    make_engine(net)->bound({p}, o);
    ADD_FAILURE() << "a NaN coefficient was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

/// Margin problems (all targets of the predicted class, radius eps) at the first `count` reference
/// images of model `stem` (tests/fixtures/reference/STEM.input.npy).
inline std::vector<BoundProblem> fixture_problems(const Network& net, const std::string& stem, int count, double eps) {
  const std::vector<double> x = fixture_inputs(stem, 0, count);
  const auto n = static_cast<size_t>(net.input_size());
  std::vector<BoundProblem> ps;
  for (size_t i = 0; i * n < x.size(); ++i)
    ps.push_back(margin_problem(
        net, std::vector<double>(x.begin() + static_cast<long>(i * n), x.begin() + static_cast<long>((i + 1) * n)),
        eps));
  return ps;
}

/// Bounds, with the intermediate ones, of the first `count` reference images of a real network
/// (tests/fixtures/reference/STEM.input.npy, all margins at radius eps): engine `test` against
/// the CPU engine. Returns the largest |difference| / tolerance.
template <class MakeEngine>
double compare_on_fixtures(MakeEngine&& make_test_engine, const std::filesystem::path& onnx, const std::string& stem,
                           int count, double eps, Norm norm, const char* method) {
  const std::string what = onnx.filename().string() + " " + method;
  SCOPED_TRACE(what);
  const Network net = import_onnx(onnx.string());
  const std::vector<BoundProblem> ps = fixture_problems(net, stem, count, eps);
  BoundOptions o;
  o.norm = norm;
  o.method = parse_method(method);
  o.want_intermediate = true;
  o.exact_cnncert = true;  // every neuron's row, as in the reference
  const double worst = compare_results(make_test_engine(net)->bound(ps, o), make_cpu_engine(net)->bound(ps, o), what);
  std::printf("%s: largest |float - double| / tolerance %.3g\n", what.c_str(), worst);
  return worst;
}

/// How far two CNN-Cert searches (the default CertifyOptions: `cnncert_steps` steps in ln ε from
/// ln `start_eps`, ±1 until the radius is bracketed, then bisection) may end apart when one step
/// near radius `eps` decided differently: each run ends within its final step of the radius at the
/// differing step, so ln ε differ by at most twice the final step, 2^-(steps − unit steps) with
/// about ⌈|ln(eps / start)|⌉ + 1 unit steps. Returned as a relative tolerance on ε, at least 1e-3.
inline double search_rtol(double eps) {
  const CertifyOptions o;
  if (!(eps > 0)) return 1e-3;
  const double unit_steps = std::ceil(std::fabs(std::log(eps / o.start_eps))) + 1;
  const double d_ln = 2 * std::ldexp(1.0, -static_cast<int>(std::max(0.0, o.cnncert_steps - unit_steps)));
  return std::max(1e-3, std::expm1(d_ln));
}

/// Radii of two certify() runs (`ref` with the CPU engine `cpu`, `got` with a float engine):
/// the same decisions away from ties. Equal radii pass; where a search step decided differently
/// (a margin bound within float rounding of 0) the radii may differ by the bisection's late step
/// sizes (search_rtol), and the reference engine must confirm the float engine's radius up
/// to the float tolerance (its margin lower bound there ≥ −tolerance). Returns the number of
/// (image, target) pairs that differed.
inline int expect_same_radii(const Network& net, BoundEngine& cpu, const std::vector<double>& x,
                             const std::vector<ImageResult>& ref, const std::vector<ImageResult>& got,
                             const BoundOptions& bo, const std::string& what) {
  int differing = 0;
  EXPECT_EQ(ref.size(), got.size()) << what;
  double total = 0;
  for (const auto& im : ref)
    for (const auto& t : im.targets) total += t.eps;
  EXPECT_GT(total, 0) << what << ": nothing certified, the comparison would say nothing";
  const int64_t n = net.input_size();
  for (size_t i = 0; i < std::min(ref.size(), got.size()); ++i) {
    EXPECT_EQ(ref[i].skipped, got[i].skipped) << what << " image " << i;
    EXPECT_EQ(ref[i].targets.size(), got[i].targets.size()) << what << " image " << i;
    for (size_t t = 0; t < std::min(ref[i].targets.size(), got[i].targets.size()); ++t) {
      const double a = ref[i].targets[t].eps, b = got[i].targets[t].eps;
      if (a == b || std::fabs(a - b) <= 1e-9 * a) continue;
      ++differing;
      EXPECT_NEAR(b, a, search_rtol(a) * a) << what << " image " << i << " target " << ref[i].targets[t].target;
      if (b <= 0) continue;
      BoundProblem p;
      p.x0.assign(x.begin() + static_cast<long>(i) * n, x.begin() + static_cast<long>(i + 1) * n);
      p.eps = b;
      std::vector<int64_t> targets;
      const int64_t tgt = ref[i].targets[t].target;
      for (int64_t k = 0; k < net.output_size(); ++k)
        if (k != ref[i].predicted && (tgt < 0 || k == tgt)) targets.push_back(k);
      p.rows = static_cast<int64_t>(targets.size());
      p.spec = margin_spec(net.output_size(), ref[i].predicted, targets);
      const auto r = cpu.bound({p}, bo);
      const double lb = *std::min_element(r[0].lower.begin(), r[0].lower.end());
      const double width = r[0].upper[0] - r[0].lower[0];
      EXPECT_GE(lb, -float_tol(0, width)) << what << " image " << i << ": the reference does not confirm radius " << b;
    }
  }
  return differing;
}

/// Certified radii (all targets) of 6 random inputs on random ReLU networks of `families`:
/// engine `test` against the CPU engine, with expect_same_radii, in exact mode (the reference's
/// algorithm; the default's row skipping gives some larger radii).
template <class MakeEngine>
void compare_radii_on_random_networks(MakeEngine&& make_test_engine, std::initializer_list<Family> families, Norm norm,
                                      int images = 6) {
  for (Family f : families) {
    const Network net = random_network(f, ActKind::Relu, 31);
    const std::vector<double> x = random_inputs(500, images, net.input_size());
    CertifyOptions o;
    o.target = TargetMode::All;
    o.bound.norm = norm;
    o.bound.exact_cnncert = true;
    auto cpu = make_cpu_engine(net, 1);
    auto test = make_test_engine(net);
    expect_same_radii(net, *cpu, x, certify(net, *cpu, x, {}, o), certify(net, *test, x, {}, o), o.bound,
                      family_name(f));
  }
}

/// PROVEN's probabilistic radii with engine `test` against the CPU engine (uniform and Gaussian
/// noise, top-1): the same radii up to the searches' ties (≤ 1e-3 relative).
template <class MakeEngine>
void compare_proven(MakeEngine&& make_test_engine) {
  const Network net = random_network(Family::Cnn, ActKind::Relu, 12);
  const std::vector<double> x = random_inputs(900, 4, net.input_size());
  for (NoiseKind kind : {NoiseKind::Uniform, NoiseKind::Gaussian}) {
    ProvenOptions po;
    po.noise.kind = kind;
    po.base.target = TargetMode::Untargeted;
    auto cpu = make_cpu_engine(net, 1);
    auto test = make_test_engine(net);
    const ProvenRun a = proven_certify(net, *cpu, x, {}, po), b = proven_certify(net, *test, x, {}, po);
    ASSERT_EQ(a.images.size(), b.images.size());
    double total = 0;
    for (const auto& im : a.images)
      for (const auto& t : im.targets) total += t.noise;
    EXPECT_GT(total, 0) << "no noise level certified: the comparison would say nothing";
    for (size_t i = 0; i < a.images.size(); ++i) {
      ASSERT_EQ(a.images[i].targets.size(), b.images[i].targets.size());
      for (size_t t = 0; t < a.images[i].targets.size(); ++t) {
        const ProvenTarget &ta = a.images[i].targets[t], &tb = b.images[i].targets[t];
        // (both levels come from the CNN-Cert search of po.base: a tie decided differently ends
        // them up to search_rtol apart)
        EXPECT_NEAR(tb.noise, ta.noise, search_rtol(ta.noise) * ta.noise)
            << "image " << i << " noise " << static_cast<int>(kind);
        EXPECT_NEAR(tb.worst_case, ta.worst_case, search_rtol(ta.worst_case) * ta.worst_case) << "image " << i;
      }
    }
  }
}

}  // namespace cnncert::test
