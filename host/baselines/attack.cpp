// Gradient attacks (MATH.md §5): upper bounds on the minimal distortion that makes a target class
// reach the protected class. Gradients come from the network's own backward pass
// (Network::input_gradient); everything is deterministic given AttackOptions.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>

#include "baselines/baseline_checks.hpp"
#include "cnncert/baselines.hpp"
#include "cnncert/error.hpp"

namespace cnncert {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_attack_args(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, const AttackOptions& o,
                       const char* who) {
  detail::check_classes(net, x0, c, t, who);
  if (o.clip_to_box) {
    CNNCERT_CHECK(o.box_lo < o.box_hi, who << ": empty box [" << o.box_lo << ", " << o.box_hi << "]");
    for (double v : x0)
      CNNCERT_CHECK(v >= o.box_lo && v <= o.box_hi,
                    who << ": the input lies outside the box [" << o.box_lo << ", " << o.box_hi << "]");
  }
}

/// g(x) = f_c(x) − f_t(x) for the target (or the strongest other class when untargeted).
struct Margin {
  double g = kInf;
  int64_t target = -1;
};

class Objective {
 public:
  Objective(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t)
      : net_(net), x0_(x0), c_(c), t_(t) {}

  Margin margin(const std::vector<double>& x) const {
    const auto y = net_.forward(x.data(), 1);
    Margin m;
    m.target = t_;
    if (t_ < 0) {
      double best = -kInf;
      for (int64_t j = 0; j < static_cast<int64_t>(y.size()); ++j)
        if (j != c_ && (m.target < 0 || y[static_cast<size_t>(j)] > best)) {
          best = y[static_cast<size_t>(j)];
          m.target = j;
        }
    }
    m.g = y[static_cast<size_t>(c_)] - y[static_cast<size_t>(m.target)];
    return m;
  }

  /// ∇_x (f_c − f_target)(x).
  std::vector<double> gradient(const std::vector<double>& x, int64_t target) {
    std::vector<double> s(static_cast<size_t>(net_.output_size()), 0.0);
    s[static_cast<size_t>(c_)] = 1;
    s[static_cast<size_t>(target)] = -1;
    ++evaluations;
    return net_.input_gradient(x.data(), s.data());
  }

  /// Moves x towards x0 along the segment while it stays adversarial (x must be adversarial).
  std::vector<double> refine(const std::vector<double>& x) const {
    double lo = 0, hi = 1;
    std::vector<double> y(x.size());
    for (int i = 0; i < 40; ++i) {
      const double mid = 0.5 * (lo + hi);
      for (size_t j = 0; j < x.size(); ++j) y[j] = x0_[j] + mid * (x[j] - x0_[j]);
      if (margin(y).g <= 0)
        hi = mid;
      else
        lo = mid;
    }
    if (hi == 1) return x;
    for (size_t j = 0; j < x.size(); ++j) y[j] = x0_[j] + hi * (x[j] - x0_[j]);
    return y;
  }

  int64_t evaluations = 0;

 private:
  const Network& net_;
  const std::vector<double>& x0_;
  int64_t c_, t_;
};

/// Euclidean projection of d onto the ℓ1 ball of radius eps (sort-based).
void project_l1(std::vector<double>& d, double eps) {
  double s = 0;
  for (double v : d) s += std::fabs(v);
  if (s <= eps) return;
  std::vector<double> a(d.size());
  for (size_t i = 0; i < d.size(); ++i) a[i] = std::fabs(d[i]);
  std::sort(a.begin(), a.end(), std::greater<>());
  double cum = 0, theta = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    cum += a[i];
    const double th = (cum - eps) / static_cast<double>(i + 1);
    if (i + 1 == a.size() || a[i + 1] <= th) {
      theta = th;
      break;
    }
  }
  for (double& v : d) v = (v > 0 ? 1 : -1) * std::max(std::fabs(v) - theta, 0.0);
}

struct Found {
  std::vector<double> x;
  double distortion = kInf;
};

/// One PGD search at radius eps (restarts); the first adversarial point reached, refined.
std::optional<std::vector<double>> pgd_at(Objective& obj, const std::vector<double>& x0, double eps, Norm p,
                                          const AttackOptions& o, std::mt19937_64& rng) {
  const size_t n = x0.size();
  for (int r = 0; r < o.pgd_restarts; ++r) {
    std::vector<double> x = x0;
    if (r > 0) {
      const auto off = sample_uniform_ball(p, static_cast<int64_t>(n), eps, 1, rng());
      for (size_t i = 0; i < n; ++i) x[i] += off[i];
      project_to_ball(x, x0, eps, p, o);
    }
    for (int k = 0; k <= o.pgd_steps; ++k) {
      const Margin m = obj.margin(x);
      if (m.g <= 0) return x;
      if (k == o.pgd_steps) break;
      const auto g = obj.gradient(x, m.target);  // descend g
      const double eta = o.pgd_step_size * eps * (2 * k < o.pgd_steps ? 1.0 : 4 * k < 3 * o.pgd_steps ? 0.5 : 0.25);
      if (!pgd_move(x, g, x0, eta, eps, p, o)) break;
    }
  }
  return std::nullopt;
}

AttackResult finish(Objective& obj, const std::vector<double>& x0, Norm p, Found best) {
  AttackResult r;
  r.gradient_evaluations = obj.evaluations;
  if (best.x.empty()) {
    r.distortion = kInf;
    return r;
  }
  r.found = true;
  const Margin m = obj.margin(best.x);
  CNNCERT_ASSERT(m.g <= 0);
  r.margin = m.g;
  r.target = m.target;
  r.distortion = lp_distance(best.x, x0, p);
  r.x = std::move(best.x);
  return r;
}

}  // namespace

/// Projects x onto the p-ball of radius eps around x0, then clips to the box. Clipping keeps the
/// point in the ball because x0 lies in the box (each coordinate only moves towards x0's side).
void project_to_ball(std::vector<double>& x, const std::vector<double>& x0, double eps, Norm p,
                     const AttackOptions& o) {
  std::vector<double> d(x.size());
  for (size_t i = 0; i < x.size(); ++i) d[i] = x[i] - x0[i];
  if (p == Norm::Linf) {
    for (double& v : d) v = std::clamp(v, -eps, eps);
  } else if (p == Norm::L2) {
    const double s = lp_norm(d, Norm::L2);
    if (s > eps)
      for (double& v : d) v *= eps / s;
  } else {
    project_l1(d, eps);
  }
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = x0[i] + d[i];
    if (o.clip_to_box) x[i] = std::clamp(x[i], o.box_lo, o.box_hi);
  }
}

bool pgd_move(std::vector<double>& x, const std::vector<double>& g, const std::vector<double>& x0, double eta,
              double eps, Norm p, const AttackOptions& o) {
  const size_t n = x0.size();
  CNNCERT_CHECK(x.size() == n && g.size() == n, "PGD move: the point, the gradient and the centre differ in size");
  if (p == Norm::Linf) {
    for (size_t i = 0; i < n; ++i) x[i] -= eta * (g[i] > 0 ? 1 : g[i] < 0 ? -1 : 0);
  } else if (p == Norm::L2) {
    const double s = lp_norm(g, Norm::L2);
    if (!(s > 0) || !std::isfinite(s)) return false;
    for (size_t i = 0; i < n; ++i) x[i] -= eta * g[i] / s;
  } else {
    // steepest ℓ1 descent moves few coordinates: the largest |g_i| that can still move
    std::vector<size_t> idx;
    idx.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (g[i] == 0 || !std::isfinite(g[i])) continue;
      if (o.clip_to_box && ((g[i] < 0 && x[i] >= o.box_hi) || (g[i] > 0 && x[i] <= o.box_lo))) continue;
      idx.push_back(i);
    }
    if (idx.empty()) return false;
    const size_t kk = std::min(
        idx.size(), std::max<size_t>(1, static_cast<size_t>(std::ceil(o.pgd_l1_sparsity * static_cast<double>(n)))));
    std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(kk - 1), idx.end(),
                     [&](size_t a, size_t b) {
                       return std::fabs(g[a]) > std::fabs(g[b]) || (std::fabs(g[a]) == std::fabs(g[b]) && a < b);
                     });
    for (size_t j = 0; j < kk; ++j) x[idx[j]] -= eta / static_cast<double>(kk) * (g[idx[j]] > 0 ? 1 : -1);
  }
  project_to_ball(x, x0, eps, p, o);
  return true;
}

AttackResult pgd_attack(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                        const AttackOptions& o) {
  check_attack_args(net, x0, c, t, o, "PGD attack");
  CNNCERT_CHECK(o.pgd_steps >= 1 && o.pgd_restarts >= 1 && o.pgd_bisection_steps >= 0,
                "PGD attack: steps and restarts must be positive, bisection steps non-negative");
  CNNCERT_CHECK(o.pgd_step_size > 0 && std::isfinite(o.pgd_step_size), "PGD attack: the step size must be positive");
  CNNCERT_CHECK(o.pgd_l1_sparsity > 0 && o.pgd_l1_sparsity <= 1, "PGD attack: the ℓ1 sparsity must be in (0, 1]");
  CNNCERT_CHECK(o.pgd_eps_max >= 0, "PGD attack: eps_max must be non-negative");
  Objective obj(net, x0, c, t);
  std::mt19937_64 rng(o.seed);
  Found best;
  const Margin m0 = obj.margin(x0);
  if (m0.g <= 0) {
    best.x = x0;
    best.distortion = 0;
    return finish(obj, x0, p, std::move(best));
  }
  const auto record = [&](std::vector<double> x) {
    if (o.refine_segment) x = obj.refine(x);
    const double d = lp_distance(x, x0, p);
    if (d < best.distortion) {
      best.distortion = d;
      best.x = std::move(x);
    }
  };
  // ε cap: the farthest point of the box, or far beyond the linearized distance
  const auto g0 = obj.gradient(x0, m0.target);
  const double gq = lp_norm(g0, dual_norm(p));
  double guess = gq > 0 ? m0.g / gq : 1.0;
  double cap = o.pgd_eps_max;
  if (cap == 0) {
    if (o.clip_to_box) {
      std::vector<double> far(x0.size());
      for (size_t i = 0; i < x0.size(); ++i) far[i] = std::max(x0[i] - o.box_lo, o.box_hi - x0[i]);
      cap = lp_norm(far, p);
    } else {
      cap = 1e6 * guess;
    }
  }
  guess = std::min(guess, cap);
  double lo = 0, hi = kInf, eps = guess;
  for (int i = 0; i < 64; ++i) {
    if (auto x = pgd_at(obj, x0, eps, p, o, rng)) {
      record(std::move(*x));
      hi = std::min(eps, best.distortion);
      break;
    }
    lo = eps;
    if (eps >= cap) break;
    eps = std::min(2 * eps, cap);
  }
  if (hi == kInf) return finish(obj, x0, p, std::move(best));
  for (int i = 0; i < o.pgd_bisection_steps && hi > lo; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (auto x = pgd_at(obj, x0, mid, p, o, rng)) {
      record(std::move(*x));
      hi = std::min(mid, best.distortion);
    } else {
      lo = mid;
    }
  }
  return finish(obj, x0, p, std::move(best));
}

AttackResult cw_l2_attack(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t,
                          const AttackOptions& o) {
  check_attack_args(net, x0, c, t, o, "CW attack");
  CNNCERT_CHECK(o.cw_iterations >= 1 && o.cw_binary_steps >= 1,
                "CW attack: iterations and binary steps must be positive");
  CNNCERT_CHECK(o.cw_initial_const > 0 && o.cw_learning_rate > 0 && o.cw_confidence >= 0,
                "CW attack: the constant and learning rate must be positive, the confidence non-negative");
  Objective obj(net, x0, c, t);
  const size_t n = x0.size();
  Found best;
  if (obj.margin(x0).g <= 0) {
    best.x = x0;
    best.distortion = 0;
    return finish(obj, x0, Norm::L2, std::move(best));
  }
  // x(w) = lo + (hi − lo)(tanh w + 1)/2 with a box, x0 + w without.
  const double half = 0.5 * (o.box_hi - o.box_lo);
  std::vector<double> w0(n, 0.0);
  if (o.clip_to_box)
    for (size_t i = 0; i < n; ++i) w0[i] = std::atanh(std::clamp((x0[i] - o.box_lo) / half - 1, -1 + 1e-6, 1 - 1e-6));
  const auto to_x = [&](const std::vector<double>& w, std::vector<double>& x) {
    for (size_t i = 0; i < n; ++i) x[i] = o.clip_to_box ? o.box_lo + half * (std::tanh(w[i]) + 1) : x0[i] + w[i];
  };
  double lower = 0, upper = 1e10, cst = o.cw_initial_const;
  std::vector<double> w(n), x(n), mom(n), vel(n), grad(n);
  const double b1 = 0.9, b2 = 0.999, adam_eps = 1e-8;
  for (int bs = 0; bs < o.cw_binary_steps; ++bs) {
    w = w0;
    std::fill(mom.begin(), mom.end(), 0.0);
    std::fill(vel.begin(), vel.end(), 0.0);
    bool success = false;
    double p1 = 1, p2 = 1;
    for (int it = 0; it < o.cw_iterations; ++it) {
      to_x(w, x);
      const Margin m = obj.margin(x);
      if (m.g <= 0) {
        success = true;
        const double d = lp_distance(x, x0, Norm::L2);
        if (d < best.distortion) {
          best.distortion = d;
          best.x = x;
        }
      }
      for (size_t i = 0; i < n; ++i) grad[i] = 2 * (x[i] - x0[i]);
      if (m.g + o.cw_confidence > 0) {
        const auto gg = obj.gradient(x, m.target);
        for (size_t i = 0; i < n; ++i) grad[i] += cst * gg[i];
      }
      p1 *= b1;
      p2 *= b2;
      for (size_t i = 0; i < n; ++i) {
        double gw = grad[i];
        if (o.clip_to_box) {
          const double th = std::tanh(w[i]);
          gw *= half * (1 - th * th);
        }
        mom[i] = b1 * mom[i] + (1 - b1) * gw;
        vel[i] = b2 * vel[i] + (1 - b2) * gw * gw;
        w[i] -= o.cw_learning_rate * (mom[i] / (1 - p1)) / (std::sqrt(vel[i] / (1 - p2)) + adam_eps);
      }
    }
    if (success) {
      upper = std::min(upper, cst);
      cst = 0.5 * (lower + upper);
    } else {
      lower = std::max(lower, cst);
      cst = upper < 1e9 ? 0.5 * (lower + upper) : cst * 10;
    }
  }
  if (!best.x.empty() && o.refine_segment) {
    best.x = obj.refine(best.x);
    best.distortion = lp_distance(best.x, x0, Norm::L2);
  }
  return finish(obj, x0, Norm::L2, std::move(best));
}

}  // namespace cnncert
