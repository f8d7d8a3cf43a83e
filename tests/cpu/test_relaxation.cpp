// Linear relaxations of ReLU, LeakyReLU, sigmoid, tanh, arctan and erf (MATH.md §2), and of the general
// activations (ELU, Softplus, GELU, SiLU; relaxation.hpp's one construction): soundness over many
// intervals (f evaluated in long double), the exact definitions of MATH.md, tightness, and float.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cnncert/relaxation.hpp"

namespace cnncert::test {
namespace {

using LD = long double;
constexpr Smooth kSmooths[] = {Smooth::Sigmoid, Smooth::Tanh, Smooth::Atan, Smooth::Erf};
constexpr SmoothRule kRules[] = {SmoothRule::CnnCert, SmoothRule::DeepCert, SmoothRule::Crown};
constexpr uint64_t kSeed = 20240611;
constexpr double kTwoPowM20 = 1.0 / (1 << 20);

const char* name(Smooth s) {
  return s == Smooth::Sigmoid ? "sigmoid" : s == Smooth::Tanh ? "tanh" : s == Smooth::Erf ? "erf" : "atan";
}
const char* name(SmoothRule r) {
  return r == SmoothRule::CnnCert ? "cnncert" : r == SmoothRule::DeepCert ? "deepcert" : "crown";
}

constexpr LD kTwoOverSqrtPi = 1.1283791670955125738961589031215452L;
LD sig(Smooth s, LD z) {
  if (s == Smooth::Sigmoid) return 1.0L / (1.0L + std::exp(-z));
  if (s == Smooth::Erf) return std::erf(z);
  return s == Smooth::Tanh ? std::tanh(z) : std::atan(z);
}
LD dsig(Smooth s, LD z) {
  if (s == Smooth::Sigmoid) return 1.0L / (4.0L * std::cosh(z / 2) * std::cosh(z / 2));
  if (s == Smooth::Erf) return kTwoOverSqrtPi * std::exp(-z * z);
  return s == Smooth::Tanh ? 1.0L / (std::cosh(z) * std::cosh(z)) : 1.0L / (1.0L + z * z);
}
/// max |σ″| (sigmoid 1/(6√3), tanh 4/(3√3), arctan 3√3/8, erf 2√2/√(πe)), rounded up.
double d2sig_max(Smooth s) {
  return s == Smooth::Sigmoid ? 0.0963 : s == Smooth::Tanh ? 0.7699 : s == Smooth::Erf ? 0.9679 : 0.6496;
}
/// The d ≥ 0 with σ′(d) = k (closed forms of MATH.md §2.3); 0 when k ≥ max σ′.
LD inv_dsig(Smooth s, LD k) {
  if (k <= 0) return INFINITY;
  if (s == Smooth::Sigmoid) return 2 * std::acosh(std::max(1.0L, 1 / (2 * std::sqrt(k))));
  if (s == Smooth::Tanh) return std::acosh(std::max(1.0L, 1 / std::sqrt(k)));
  if (s == Smooth::Erf) return std::sqrt(std::max(0.0L, -std::log(k / kTwoOverSqrtPi)));
  return std::sqrt(std::max(0.0L, 1 / k - 1));
}

std::string describe(const char* what, double l, double u) {
  std::ostringstream o;
  o.precision(17);
  o << what << " on [" << l << ", " << u << "] (seed " << kSeed << ")";
  return o.str();
}

/// Largest normalised violation of  α_l·z + β_l ≤ f(z) ≤ α_u·z + β_u  over z in [l, u]: the
/// endpoints, the midpoint, 0, both tangent points of each line, and n uniform points. The
/// violation at z is divided by 1 + |z|·|α| + |β| (the scale of the rounding in the line).
template <class T, class F>
LD worst(const F& f, T l, T u, const Relaxation<T>& r, int n, LD* at = nullptr, Smooth s = Smooth::Sigmoid) {
  std::vector<LD> zs = {LD(l), LD(u), (LD(l) + LD(u)) / 2, 0.0L};
  for (LD a : {LD(r.alpha_l), LD(r.alpha_u)})
    for (LD d = inv_dsig(s, a); LD p : {d, -d}) zs.push_back(p);
  for (int i = 0; i < n; ++i) zs.push_back(LD(l) + (LD(u) - LD(l)) * i / std::max(1, n - 1));
  LD w = -INFINITY;
  for (LD z : zs) {
    if (!(z >= LD(l) && z <= LD(u))) continue;
    const LD fz = f(z);
    const LD lo = (LD(r.alpha_l) * z + LD(r.beta_l) - fz) / (1 + std::abs(z * r.alpha_l) + std::abs(LD(r.beta_l)));
    const LD up = (fz - LD(r.alpha_u) * z - LD(r.beta_u)) / (1 + std::abs(z * r.alpha_u) + std::abs(LD(r.beta_u)));
    if (std::max(lo, up) > w) {
      w = std::max(lo, up);
      if (at) *at = z;
    }
  }
  return w;
}

/// Fixed intervals: MATH.md §2.4's published-CROWN counterexamples, one-sided, straddling, narrow,
/// degenerate, tiny around 0, and very wide.
const std::vector<std::pair<double, double>> kFixed = {
    {-6.5, 13},  {-50, 50},   {-24, 48},     {-15, 30},     {-100, 100},   {-2, 40},        {-40, 2},  {-5, 5},
    {-0.5, 0.5}, {-1, 3},     {-3, 1},       {-10, 0.1},    {-0.1, 10},    {-3, 0.5},       {-0.5, 3}, {-8, 1},
    {-1, 8},     {-20, 1e-8}, {-1e-8, 20},   {-1e-6, 1e-6}, {-1e-9, 2e-9}, {-4, 4.0000001}, {0, 1},    {0, 50},
    {-50, 0},    {-1, 0},     {1, 1.000001}, {5, 5.0001},   {2, 2.01},     {-3, -2.99},     {30, 50},  {-50, -30},
    {0, 0},      {1.5, 1.5},  {-7, -7},      {1e-12, 1e-12}};

/// 20000 random intervals of the kinds above (fixed seed, printed on failure).
std::vector<std::pair<double, double>> random_intervals(int count) {
  std::mt19937_64 rng(kSeed);
  std::uniform_real_distribution<double> unit(0, 1);
  auto U = [&](double a, double b) { return a + (b - a) * unit(rng); };
  std::vector<std::pair<double, double>> v;
  for (int i = 0; i < count; ++i) {
    double l = 0, u = 0;
    switch (i % 6) {
      case 0: l = U(-15, 15), u = l + std::pow(10, U(-6, -2)); break;            // narrow
      case 1: l = -U(0, 50), u = U(0, 50); break;                                // wide, straddling
      case 2: l = U(0, 30), u = l + std::pow(10, U(-4, 1.5)); break;             // positive
      case 3: u = -U(0, 30), l = u - std::pow(10, U(-4, 1.5)); break;            // negative
      case 4: l = -std::pow(10, U(-9, -1)), u = std::pow(10, U(-9, -1)); break;  // tiny around 0
      default: l = u = U(-20, 20); break;                                        // degenerate
    }
    v.emplace_back(l, u);
  }
  return v;
}

/// Expects every interval of `ivs` to be sound for every activation and rule.
void expect_smooth_sound(const std::vector<std::pair<double, double>>& ivs, int points) {
  for (Smooth s : kSmooths)
    for (SmoothRule rule : kRules) {
      int bad = 0;
      for (auto [l, u] : ivs) {
        const auto r = relax_smooth(s, l, u, rule);
        LD at = 0;
        const LD w = worst([s](LD z) { return sig(s, z); }, l, u, r, points, &at, s);
        if (w > 1e-12L && ++bad <= 5)
          ADD_FAILURE() << describe((std::string(name(s)) + "/" + name(rule)).c_str(), l, u) << ": violation "
                        << double(w) << " at z = " << double(at);
      }
      EXPECT_EQ(bad, 0) << name(s) << "/" << name(rule);
    }
}

TEST(RelaxationSound, SmoothFixedIntervals) {
  expect_smooth_sound(kFixed, 20001);
}
TEST(RelaxationSound, SmoothRandomIntervals) {
  expect_smooth_sound(random_intervals(20000), 256);
}

TEST(RelaxationSound, ReluAndLeakyRelu) {
  auto ivs = random_intervals(20000);
  ivs.insert(ivs.end(), kFixed.begin(), kFixed.end());
  ivs.insert(ivs.end(), {{-2, 2}, {-2, 0}, {0, 2}, {-3, 1}, {-1, 3}});
  for (ReluRule rule : {ReluRule::Fastlin, ReluRule::Adaptive})
    for (double a : {0.0, 0.01, 0.2}) {  // a = 0: relax_relu; otherwise relax_leaky_relu
      const auto f = [a](LD z) { return z > 0 ? z : LD(a) * z; };
      for (auto [l, u] : ivs) {
        const auto r = a == 0 ? relax_relu(l, u, rule) : relax_leaky_relu(l, u, a, rule);
        EXPECT_LE(worst(f, l, u, r, 64), 1e-13L) << describe("leaky relu", l, u) << " a = " << a;
      }
    }
}

void expect_relax_eq(const Relaxation<double>& r, double al, double bl, double au, double bu) {
  EXPECT_DOUBLE_EQ(r.alpha_l, al);
  EXPECT_DOUBLE_EQ(r.beta_l, bl);
  EXPECT_DOUBLE_EQ(r.alpha_u, au);
  EXPECT_DOUBLE_EQ(r.beta_u, bu);
}

TEST(RelaxationRelu, InactiveAndActive) {
  for (ReluRule rule : {ReluRule::Fastlin, ReluRule::Adaptive}) {
    for (auto [l, u] : std::vector<std::pair<double, double>>{{-3, -1}, {-2, 0}, {-1, -1}, {0, 0}})
      expect_relax_eq(relax_relu(l, u, rule), 0, 0, 0, 0);
    for (auto [l, u] : std::vector<std::pair<double, double>>{{1, 3}, {1e-9, 1}, {2, 2}})
      expect_relax_eq(relax_relu(l, u, rule), 1, 0, 1, 0);
  }
  expect_relax_eq(relax_relu(0.0, 2.0, ReluRule::Adaptive), 1, 0, 1, 0);  // l = 0 is active
}

TEST(RelaxationRelu, Unstable) {
  for (auto [l, u] : std::vector<std::pair<double, double>>{{-1, 3}, {-3, 1}, {-0.25, 7.5}, {-2, 2}}) {
    const double au = u / (u - l), bu = -l * u / (u - l);
    expect_relax_eq(relax_relu(l, u, ReluRule::Fastlin), au, 0, au, bu);
    expect_relax_eq(relax_relu(l, u, ReluRule::Adaptive), u >= -l ? 1 : 0, 0, au, bu);
  }
  expect_relax_eq(relax_relu(-1.0, 3.0, ReluRule::Fastlin), 0.75, 0, 0.75, 0.75);
  expect_relax_eq(relax_relu(-3.0, 1.0, ReluRule::Adaptive), 0, 0, 0.25, 0.75);
  expect_relax_eq(relax_relu(-2.0, 2.0, ReluRule::Adaptive), 1, 0, 0.5, 1);  // tie u = −l → 1
  EXPECT_EQ(relax_relu(-2.0, 1.999999, ReluRule::Adaptive).alpha_l, 0);      // just below the tie → 0
  // Fastlin: l = 0 < u is unstable, which gives α = u/(u−l) = 1 and β_U = 0.
  expect_relax_eq(relax_relu(0.0, 2.0, ReluRule::Fastlin), 1, 0, 1, 0);
}

TEST(RelaxationLeakyRelu, Definitions) {
  for (double a : {0.01, 0.2})
    for (ReluRule rule : {ReluRule::Fastlin, ReluRule::Adaptive}) {
      expect_relax_eq(relax_leaky_relu(-3.0, -1.0, a, rule), a, 0, a, 0);
      expect_relax_eq(relax_leaky_relu(-3.0, 0.0, a, rule), a, 0, a, 0);
      expect_relax_eq(relax_leaky_relu(1.0, 3.0, a, rule), 1, 0, 1, 0);
      for (auto [l, u] : std::vector<std::pair<double, double>>{{-1, 3}, {-3, 1}, {-2, 2}}) {
        const auto r = relax_leaky_relu(l, u, a, rule);
        const double k = (u - a * l) / (u - l);  // the chord through (l, a·l) and (u, u)
        EXPECT_DOUBLE_EQ(r.alpha_u, k);
        EXPECT_NEAR(r.alpha_u * l + r.beta_u, a * l, 1e-15);
        EXPECT_NEAR(r.alpha_u * u + r.beta_u, u, 1e-15);
        EXPECT_EQ(r.beta_l, 0);
        EXPECT_DOUBLE_EQ(r.alpha_l, rule == ReluRule::Fastlin ? k : (u >= -l ? 1 : a));
      }
    }
}

/// Tangent of σ at d and the chord of [l, u], computed independently in long double.
Relaxation<LD> lines(Smooth s, LD d_lower, LD d_upper) {
  return {dsig(s, d_lower), sig(s, d_lower) - dsig(s, d_lower) * d_lower, dsig(s, d_upper),
          sig(s, d_upper) - dsig(s, d_upper) * d_upper};
}
LD chord_slope(Smooth s, LD l, LD u) {
  return (sig(s, u) - sig(s, l)) / (u - l);
}

#define EXPECT_CLOSE(a, b) EXPECT_NEAR(double(a), double(b), 1e-12 * (1 + std::abs(double(b))))

TEST(RelaxationCnnCert, OneSidedTangentAtMidpointAndChord) {
  for (Smooth s : kSmooths)
    for (SmoothRule rule : {SmoothRule::CnnCert, SmoothRule::Crown})  // Crown's one-sided = §2.2
      for (auto [l, u] : std::vector<std::pair<double, double>>{{0, 1}, {0.5, 4}, {2, 2.01}, {1, 30}}) {
        SCOPED_TRACE(describe(name(s), l, u));
        const LD k = chord_slope(s, l, u);
        const auto pos = relax_smooth(s, l, u, rule), neg = relax_smooth(s, -u, -l, rule);
        const auto tan_m = lines(s, (l + u) / 2.0L, (l + u) / 2.0L), tan_neg = lines(s, -(l + u) / 2.0L, 0);
        EXPECT_CLOSE(pos.alpha_u, tan_m.alpha_u);  // l ≥ 0: upper = tangent at m
        EXPECT_CLOSE(pos.beta_u, tan_m.beta_u);
        EXPECT_CLOSE(pos.alpha_l, k);  // lower = chord
        EXPECT_CLOSE(pos.beta_l, sig(s, l) - k * l);
        EXPECT_CLOSE(neg.alpha_u, k);  // u ≤ 0: upper = chord, lower = tangent at m (odd symmetry)
        EXPECT_CLOSE(neg.beta_u, sig(s, -u) + k * u);
        EXPECT_CLOSE(neg.alpha_l, tan_neg.alpha_l);
        EXPECT_CLOSE(neg.beta_l, tan_neg.beta_l);
      }
}

TEST(RelaxationSmooth, DegenerateIntervalGivesTangents) {
  for (Smooth s : kSmooths)
    for (SmoothRule rule : kRules)
      for (double z : {-7.0, -0.3, 0.0, 1e-9, 2.5, 40.0}) {
        SCOPED_TRACE(describe(name(s), z, z));
        const auto r = relax_smooth(s, z, z, rule);
        const auto t = lines(s, z, z);
        EXPECT_CLOSE(r.alpha_l, t.alpha_l);
        EXPECT_CLOSE(r.beta_l, t.beta_l);
        EXPECT_CLOSE(r.alpha_u, t.alpha_u);
        EXPECT_CLOSE(r.beta_u, t.beta_u);
      }
}

// §2.2/§2.4 mixed case: the upper line passes through (l, σ(l)) — exactly for the chord, up to the
// bisection error σ″max·(u−l)·u·2⁻²⁰ for the tangent at d_u — and the lower one through (u, σ(u)).
TEST(RelaxationCnnCert, MixedLinesPassThroughTheFarEndpoint) {
  for (Smooth s : kSmooths)
    for (SmoothRule rule : {SmoothRule::CnnCert, SmoothRule::Crown})
      for (auto [l, u] : kFixed) {
        if (!(l < 0 && u > 0)) continue;
        SCOPED_TRACE(describe((std::string(name(s)) + "/" + name(rule)).c_str(), l, u));
        const auto r = relax_smooth(s, l, u, rule);
        const double slack_u = d2sig_max(s) * (u - l) * u * kTwoPowM20,
                     slack_l = d2sig_max(s) * (u - l) * -l * kTwoPowM20;
        const LD gap_u = r.alpha_u * LD(l) + r.beta_u - sig(s, l), gap_l = sig(s, u) - r.alpha_l * LD(u) - r.beta_l;
        EXPECT_GE(double(gap_u), -1e-12);
        EXPECT_LE(double(gap_u), slack_u + 1e-12);
        EXPECT_GE(double(gap_l), -1e-12);
        EXPECT_LE(double(gap_l), slack_l + 1e-12);
      }
}

// DeepCert: the tangent of slope ≈ k is within σ″max·(u−l)·2⁻²⁰ of slope k, touches σ, and the other
// line is the chord.
void expect_deepcert_parallel(Smooth s, double l, double u, bool upper_is_tangent) {
  SCOPED_TRACE(describe(name(s), l, u));
  const auto r = relax_smooth(s, l, u, SmoothRule::DeepCert);
  const double k = (detail::smooth_f(s, u) - detail::smooth_f(s, l)) / (u - l);  // as the code rounds it
  const double tan_a = upper_is_tangent ? r.alpha_u : r.alpha_l, tan_b = upper_is_tangent ? r.beta_u : r.beta_l;
  EXPECT_NEAR(tan_a, k, d2sig_max(s) * (u - l) * kTwoPowM20 + 1e-14);
  // The bracket end named by §2.3 (hi on the concave side, lo on the convex one) has σ′(d) ≤ k.
  EXPECT_LE(tan_a, k * (1 + 1e-15));
  EXPECT_DOUBLE_EQ(upper_is_tangent ? r.alpha_l : r.alpha_u, k);  // chord
  EXPECT_NEAR(upper_is_tangent ? r.beta_l : r.beta_u, sig(s, l) - k * LD(l), 1e-13);
  // The tangent touches σ at the d with σ′(d) = k: d ≥ 0 on the concave side, d ≤ 0 on the convex one.
  const LD d = upper_is_tangent ? inv_dsig(s, k) : -inv_dsig(s, k);
  // Off by at most the bisection error e = (u−l)·2⁻²⁰ in d: a gap of σ″max·e²/2.
  const double e = (u - l) * kTwoPowM20;
  EXPECT_NEAR(double(tan_a * d + tan_b - sig(s, d)), 0.0, d2sig_max(s) * e * e / 2 + 1e-12 * (1 + std::abs(double(d))));
}

TEST(RelaxationDeepCert, OneSidedUpperParallelToChord) {
  for (Smooth s : kSmooths)
    for (auto [l, u] : std::vector<std::pair<double, double>>{{0, 1}, {0.5, 4}, {2, 2.01}, {1, 30}, {0, 50}}) {
      expect_deepcert_parallel(s, l, u, true);     // l ≥ 0: upper tangent, lower chord
      expect_deepcert_parallel(s, -u, -l, false);  // u ≤ 0: mirrored
    }
}

TEST(RelaxationDeepCert, MixedCases) {
  for (Smooth s : kSmooths) {
    expect_deepcert_parallel(s, -8, 1, false);  // σ′(u) > k, σ′(l) < k: upper chord, lower tangent
    expect_deepcert_parallel(s, -1, 8, true);   // the reverse
    // Neither (σ′(l), σ′(u) < k): the §2.2 mixed-case bounds.
    const auto d = relax_smooth(s, -1.0, 1.0, SmoothRule::DeepCert),
               c = relax_smooth(s, -1.0, 1.0, SmoothRule::CnnCert);
    ASSERT_LT(dsig(s, 1), chord_slope(s, -1, 1));
    expect_relax_eq(d, c.alpha_l, c.beta_l, c.alpha_u, c.beta_u);
  }
}

TEST(RelaxationCrown, ChordWhereTheEndSlopeIsSteeper) {
  for (Smooth s : kSmooths) {
    SCOPED_TRACE(name(s));
    ASSERT_GE(dsig(s, 0.5), chord_slope(s, -3, 0.5));
    const auto r = relax_smooth(s, -3.0, 0.5, SmoothRule::Crown);  // σ′(u) ≥ k: upper = chord
    const LD k = chord_slope(s, -3, 0.5);
    EXPECT_CLOSE(r.alpha_u, k);
    EXPECT_CLOSE(r.beta_u, sig(s, -3) + 3 * k);
    const auto m = relax_smooth(s, -0.5, 3.0, SmoothRule::Crown);  // σ′(l) ≥ k: lower = chord
    EXPECT_CLOSE(m.alpha_l, k);
    EXPECT_CLOSE(m.beta_l, sig(s, -0.5) + 0.5 * k);
  }
}

TEST(RelaxationCrown, SoundWherePublishedCrownIsNot) {  // MATH.md §2.4
  const std::vector<std::pair<Smooth, std::pair<double, double>>> cases = {{Smooth::Sigmoid, {-6.5, 13}},
                                                                           {Smooth::Sigmoid, {-50, 50}},
                                                                           {Smooth::Tanh, {-24, 48}},
                                                                           {Smooth::Atan, {-15, 30}}};
  for (auto [s, iv] : cases) {
    const auto r = relax_smooth(s, iv.first, iv.second, SmoothRule::Crown);
    EXPECT_LE(worst([s](LD z) { return sig(s, z); }, iv.first, iv.second, r, 200001, nullptr, s), 1e-12L)
        << describe(name(s), iv.first, iv.second);
  }
}

TEST(RelaxationTightness, MidpointGapShrinksWithWidth) {
  for (Smooth s : kSmooths)
    for (SmoothRule rule : kRules)
      for (double c : {-10.0, -3.0, -0.7, 0.0, 1e-5, 0.4, 2.0, 6.0}) {
        SCOPED_TRACE(describe((std::string(name(s)) + "/" + name(rule)).c_str(), c, c));
        double prev = INFINITY;
        for (double w : {10.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4}) {
          const auto r = relax_smooth(s, c - w / 2, c + w / 2, rule);
          const double gap = (r.alpha_u - r.alpha_l) * c + (r.beta_u - r.beta_l);
          EXPECT_GE(gap, -1e-13) << "w = " << w;
          EXPECT_LE(gap, prev + 1e-13) << "w = " << w;
          prev = gap;
        }
        EXPECT_LT(prev, 1e-6);
      }
}

TEST(RelaxationFloat, SmoothSound) {
  auto ivs = random_intervals(600);
  ivs.insert(ivs.end(), kFixed.begin(), kFixed.end());
  for (Smooth s : kSmooths)
    for (SmoothRule rule : kRules)
      for (auto [ld, ud] : ivs) {
        const float l = float(ld), u = float(ud);
        const auto r = relax_smooth<float>(s, l, u, rule);
        EXPECT_LE(worst([s](LD z) { return sig(s, z); }, l, u, r, 256, nullptr, s), 1e-5L)
            << describe((std::string(name(s)) + "/" + name(rule) + " float").c_str(), l, u);
      }
}

// ---- General activations ------------------------------------------------------------------------

struct GeneralCase {
  General g;
  double alpha;  // ELU's
  const char* name;
};
const GeneralCase kGenerals[] = {{General::Elu, 1.0, "elu(1)"},       {General::Elu, 0.5, "elu(0.5)"},
                                 {General::Elu, 2.0, "elu(2)"},       {General::Elu, 0.0, "elu(0)"},
                                 {General::Softplus, 0, "softplus"},  {General::Gelu, 0, "gelu"},
                                 {General::GeluTanh, 0, "gelu_tanh"}, {General::Silu, 0, "silu"}};

/// Each function from its definition, in long double (independent of relaxation.hpp's code).
LD gen_f(const GeneralCase& c, LD z) {
  switch (c.g) {
    case General::Elu: return z >= 0 ? z : c.alpha * std::expm1(z);
    case General::Softplus: return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
    case General::Gelu: return z / 2 * (1 + std::erf(z / std::sqrt(2.0L)));
    case General::GeluTanh: {
      const LD k = std::sqrt(2 / 3.14159265358979323846264338327950288L);
      return z / 2 * (1 + std::tanh(k * (z + 0.044715L * z * z * z)));
    }
    default: return z / (1 + std::exp(-z));
  }
}
/// f″ by central differences of f (long double), for the convexity cuts.
LD gen_d2(const GeneralCase& c, LD z) {
  const LD h = 1e-4L;
  return (gen_f(c, z + h) - 2 * gen_f(c, z) + gen_f(c, z - h)) / (h * h);
}

/// Intervals for the general activations: the smooth ones' plus some around each convexity cut,
/// the minimum of GELU/SiLU and far out on both sides.
std::vector<std::pair<double, double>> general_intervals(int random) {
  auto v = random_intervals(random);
  v.insert(v.end(), kFixed.begin(), kFixed.end());
  for (double c : {-2.3993572805154675, 2.3993572805154675, -1.4142135623730951, 1.4142135623730951, -1.27846, -0.7518})
    for (double w : {1e-6, 1e-3, 0.1, 1.0, 4.0}) v.insert(v.end(), {{c - w, c + w}, {c - w, c}, {c, c + w}});
  v.insert(v.end(), {{-200, -100}, {100, 200}, {-1e3, 1e3}, {-35, -30}, {-3, -2}, {-1.5, -1}, {0.2, 2.6}});
  return v;
}

TEST(RelaxationGeneral, SoundOnEveryInterval) {
  const auto ivs = general_intervals(10000);
  for (const GeneralCase& c : kGenerals) {
    int bad = 0;
    for (size_t i = 0; i < ivs.size(); ++i) {
      const auto [l, u] = ivs[i];
      const auto r = relax_general(c.g, c.alpha, l, u);
      LD at = 0;
      const LD w = worst([&](LD z) { return gen_f(c, z); }, l, u, r, i >= 10000 ? 4001 : 256, &at);
      if (!(w <= 1e-12L) && ++bad <= 5)
        ADD_FAILURE() << describe(c.name, l, u) << ": violation " << double(w) << " at z = " << double(at);
    }
    EXPECT_EQ(bad, 0) << c.name;
  }
}

TEST(RelaxationGeneral, InfiniteOrNaNEndsFailClosed) {
  const double inf = INFINITY;
  for (const GeneralCase& c : kGenerals)
    for (auto [l, u] :
         std::vector<std::pair<double, double>>{{-inf, 0}, {0, inf}, {-inf, inf}, {-1e308, 1e308}, {NAN, 1}}) {
      const auto r = relax_general(c.g, c.alpha, l, u);
      // No usable line for NaN or infinite ends (the engines' bounds then fail closed), else a sound one.
      const bool nan = std::isnan(r.alpha_l) && std::isnan(r.beta_l) && std::isnan(r.alpha_u) && std::isnan(r.beta_u);
      if (!std::isfinite(l) || !std::isfinite(u))
        EXPECT_TRUE(nan) << describe(c.name, l, u);
      else
        EXPECT_LE(worst([&](LD z) { return gen_f(c, z); }, l, u, r, 4001), 1e-12L) << describe(c.name, l, u);
    }
}

TEST(RelaxationGeneral, FloatIsSound) {
  const auto ivs = general_intervals(600);
  for (const GeneralCase& c : kGenerals)
    for (auto [ld, ud] : ivs) {
      const float l = float(ld), u = float(ud);
      const auto r = relax_general<float>(c.g, float(c.alpha), l, u);
      EXPECT_LE(worst([&](LD z) { return gen_f(c, z); }, l, u, r, 256), 1e-5L) << describe(c.name, l, u);
    }
}

TEST(RelaxationGeneral, ConvexityCutsAreTheInflectionPoints) {
  // On each side of each cut f″ has the sign the piece claims, and it changes at the cut.
  for (const GeneralCase& c : kGenerals) {
    const detail::Pieces p = detail::general_pieces(c.g, c.alpha);
    for (int i = 0; i < p.count; ++i) {
      const double lo = i == 0 ? -8 : p.cut[i - 1], hi = i == p.count - 1 ? 8 : p.cut[i];
      for (int k = 1; k < 50; ++k) {
        const LD z = lo + (hi - lo) * k / 50;
        if (std::abs(z) < 1e-3 && c.g == General::Elu) continue;  // the kink
        const LD d2 = gen_d2(c, z);
        if (p.convex[i])
          EXPECT_GE(double(d2), -1e-6) << c.name << " piece " << i << " z " << double(z);
        else
          EXPECT_LE(double(d2), 1e-6) << c.name << " piece " << i << " z " << double(z);
      }
      if (i + 1 < p.count && c.g != General::Elu) {
        const LD before = gen_d2(c, p.cut[i] - 1e-2), after = gen_d2(c, p.cut[i] + 1e-2);
        EXPECT_LT(double(before * after), 0) << c.name << " cut " << p.cut[i];
      }
    }
  }
}

TEST(RelaxationGeneral, ConvexIntervalGivesChordAboveAndMidpointTangentBelow) {
  // Softplus is convex everywhere, GELU and SiLU on [−√2, √2] and [−2.399, 2.399], ELU(α ≤ 1) too.
  struct Iv {
    GeneralCase c;
    double l, u;
  };
  for (const Iv& t :
       {Iv{kGenerals[4], -3, 5}, Iv{kGenerals[5], -1.2, 1.3}, Iv{kGenerals[7], -2, 1}, Iv{kGenerals[0], -2, 3}}) {
    SCOPED_TRACE(describe(t.c.name, t.l, t.u));
    const auto r = relax_general(t.c.g, t.c.alpha, t.l, t.u);
    const LD fl = gen_f(t.c, t.l), fu = gen_f(t.c, t.u);
    EXPECT_NEAR(double(r.alpha_u), double((fu - fl) / (t.u - t.l)), 1e-12);
    EXPECT_NEAR(double(r.alpha_u * t.l + r.beta_u), double(fl), 1e-12);
    const double m = (t.l + t.u) / 2;  // the lower line touches f at the midpoint
    EXPECT_NEAR(double(r.alpha_l * m + r.beta_l), double(gen_f(t.c, m)), 1e-12);
  }
  // On a concave interval (SiLU beyond its cut) the roles swap.
  const auto r = relax_general(General::Silu, 0.0, 3.0, 7.0);
  const LD f3 = gen_f(kGenerals[7], 3), f7 = gen_f(kGenerals[7], 7);
  EXPECT_NEAR(double(r.alpha_l), double((f7 - f3) / 4), 1e-12);
  EXPECT_NEAR(double(r.alpha_u * 5 + r.beta_u), double(gen_f(kGenerals[7], 5)), 1e-12);
}

TEST(RelaxationGeneral, GapShrinksWithTheInterval) {
  for (const GeneralCase& c : kGenerals)
    for (double centre : {-6.0, -2.4, -1.0, 0.0, 0.5, 1.4, 3.0}) {
      double prev = INFINITY;
      for (double w : {4.0, 1.0, 0.1, 1e-2, 1e-3}) {
        const double l = centre - w / 2, u = centre + w / 2;
        const auto r = relax_general(c.g, c.alpha, l, u);
        const double gap = (r.alpha_u - r.alpha_l) * centre + (r.beta_u - r.beta_l);
        EXPECT_GE(gap, -1e-12) << c.name << " " << centre << " w " << w;
        EXPECT_LE(gap, prev + 1e-12) << c.name << " " << centre << " w " << w;
        prev = gap;
      }
      // O(w²) for a smooth f; at ELU's kink O(w), like ReLU's: |1 − α|·w/4 (plus O(w²)) for the last w.
      const double limit = c.g == General::Elu && centre == 0 ? std::abs(1 - c.alpha) * 1e-3 / 4 * 1.01 + 1e-6 : 1e-5;
      EXPECT_LT(prev, limit) << c.name << " at " << centre;
    }
}

TEST(RelaxationGeneral, RangeContainsEverySampleAndIsTight) {
  for (const GeneralCase& c : kGenerals)
    for (auto [l, u] : general_intervals(2000)) {
      double lo = 0, hi = 0;
      general_range(c.g, c.alpha, l, u, lo, hi);
      LD smin = INFINITY, smax = -INFINITY;
      for (int k = 0; k <= 400; ++k) {
        const LD z = LD(l) + (LD(u) - LD(l)) * k / 400;
        smin = std::min(smin, gen_f(c, z)), smax = std::max(smax, gen_f(c, z));
      }
      for (LD z : {-1.278464542761074L, -0.7517915246935645L, -0.7524614220710163L})
        if (z >= l && z <= u) smin = std::min(smin, gen_f(c, z));
      const double tol = 1e-12 * (1 + std::abs(double(smax)));
      ASSERT_LE(lo, double(smin) + tol) << describe(c.name, l, u);
      ASSERT_GE(hi, double(smax) - tol) << describe(c.name, l, u);
      EXPECT_GE(lo, double(smin) - 1e-6 - (u - l) * 1e-3) << describe(c.name, l, u);  // tight up to the sampling
    }
}

}  // namespace
}  // namespace cnncert::test
