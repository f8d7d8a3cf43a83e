// PROVEN's probabilistic certificates (MATH.md §4, sound form) on top of the certification driver.
#include "cnncert/proven.hpp"

#include <chrono>
#include <cmath>
#include <limits>

#include "cnncert/error.hpp"

namespace cnncert {

NoiseKind parse_noise(const std::string& s) {
  if (s == "uniform") return NoiseKind::Uniform;
  if (s == "bernoulli") return NoiseKind::Bernoulli;
  if (s == "bounded") return NoiseKind::Bounded;
  if (s == "gaussian") return NoiseKind::Gaussian;
  throw InvalidArgument("unknown noise '" + s + "' (use uniform, bernoulli, bounded or gaussian)");
}

const char* noise_name(NoiseKind k) {
  switch (k) {
    case NoiseKind::Uniform: return "uniform";
    case NoiseKind::Bernoulli: return "bernoulli";
    case NoiseKind::Bounded: return "bounded";
    case NoiseKind::Gaussian: return "gaussian";
  }
  return "?";
}

double hoeffding_failure(double mu, double a_l2, double eps, bool uniform_proxy) {
  if (!(mu > 0)) return 1.0;
  const double v = uniform_proxy ? 1.0 / 3.0 : 1.0;
  const double denom = 2 * v * eps * eps * a_l2 * a_l2;
  if (denom == 0) return 0.0;  // no noise reaches the margin
  return std::min(1.0, std::exp(-mu * mu / denom));
}

double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

double gaussian_box_tail(double sigma, const std::vector<double>& variances, int64_t dims, double r) {
  // P[X ∉ box] = 1 − Π_i (1 − erfc(r / (σ_i √2))), computed as −expm1(Σ log1p(−erfc)). Exact for
  // independent coordinates; with a full covariance only its diagonal enters, and by Šidák's
  // inequality the product still bounds P[X ∈ box] from below, so the tail stays an upper bound.
  double log_inside = 0;
  for (int64_t i = 0; i < dims; ++i) {
    const double s = sigma * (variances.empty() ? 1.0 : std::sqrt(variances[static_cast<size_t>(i)]));
    if (s == 0) continue;
    const double q = std::erfc(r / (s * std::sqrt(2.0)));
    if (q >= 1) return 1.0;
    log_inside += std::log1p(-q);
  }
  return -std::expm1(log_inside);
}

double gaussian_box_radius(double sigma, const std::vector<double>& variances, int64_t dims, double tail) {
  CNNCERT_CHECK(tail > 0 && tail < 1, "the Gaussian tail must lie in (0, 1)");
  if (sigma == 0) return 0;
  double hi = sigma, lo = 0;
  double max_sd = 1;
  for (double v : variances) max_sd = std::max(max_sd, std::sqrt(v));
  hi = sigma * max_sd;
  while (gaussian_box_tail(sigma, variances, dims, hi) > tail) hi *= 2;
  for (int i = 0; i < 100; ++i) {
    const double mid = (lo + hi) / 2;
    if (gaussian_box_tail(sigma, variances, dims, mid) > tail)
      lo = mid;
    else
      hi = mid;
  }
  return hi;  // the safe end: its tail is ≤ the target
}

void validate_covariance(const std::vector<double>& cov, int64_t d, const std::string& what) {
  const size_t n = static_cast<size_t>(d);
  CNNCERT_CHECK(cov.size() == n || cov.size() == n * n, what << ": a covariance for " << d << " inputs needs " << d
                                                             << " (diagonal) or " << d << "x" << d << " values, found "
                                                             << cov.size());
  for (double v : cov) CNNCERT_CHECK(std::isfinite(v), what << ": the covariance contains NaN or Inf");
  // All variances zero: no noise, and no noise level to search for (the search would end at its limit).
  bool any_variance = false;
  for (size_t i = 0; i < n; ++i) any_variance = any_variance || cov[cov.size() == n ? i : i * n + i] > 0;
  CNNCERT_CHECK(any_variance, what << ": every variance is zero (no noise: nothing for the noise level to scale)");
  if (cov.size() == n) {
    for (double v : cov) CNNCERT_CHECK(v >= 0, what << ": negative variance " << v);
    return;
  }
  double scale = 0;
  for (size_t i = 0; i < n; ++i) {
    CNNCERT_CHECK(cov[i * n + i] >= 0, what << ": negative variance on the diagonal");
    scale = std::max(scale, cov[i * n + i]);
    for (size_t j = 0; j < i; ++j)
      CNNCERT_CHECK(std::fabs(cov[i * n + j] - cov[j * n + i]) <= 1e-12 * (1 + std::fabs(cov[i * n + j])),
                    what << ": the covariance is not symmetric (entry " << i << "," << j << ")");
  }
  // LDLᵀ without pivoting; a pivot clearly below zero means not positive semi-definite.
  std::vector<double> l(n * n, 0.0), diag(n, 0.0);
  const double tol = 1e-10 * std::max(scale, 1e-300);
  for (size_t j = 0; j < n; ++j) {
    double dj = cov[j * n + j];
    for (size_t k = 0; k < j; ++k) dj -= l[j * n + k] * l[j * n + k] * diag[k];
    CNNCERT_CHECK(dj >= -tol, what << ": the covariance is not positive semi-definite");
    diag[j] = dj;
    for (size_t i = j + 1; i < n; ++i) {
      double v = cov[i * n + j];
      for (size_t k = 0; k < j; ++k) v -= l[i * n + k] * l[j * n + k] * diag[k];
      l[i * n + j] = dj > tol ? v / dj : 0.0;
      CNNCERT_CHECK(dj > tol || std::fabs(v) <= 1e-8 * std::max(scale, 1e-300),
                    what << ": the covariance is not positive semi-definite");
    }
  }
}

namespace {

/// aᵀΣa for the covariance model (identity when empty).
double quad_form(const double* a, size_t n, const std::vector<double>& cov) {
  double s = 0;
  if (cov.empty()) {
    for (size_t i = 0; i < n; ++i) s += a[i] * a[i];
  } else if (cov.size() == n) {
    for (size_t i = 0; i < n; ++i) s += a[i] * a[i] * cov[i];
  } else {
    for (size_t i = 0; i < n; ++i) {
      if (a[i] == 0) continue;
      double row = 0;
      for (size_t j = 0; j < n; ++j) row += cov[i * n + j] * a[j];
      s += a[i] * row;
    }
  }
  return std::max(s, 0.0);
}

std::vector<double> diagonal(const std::vector<double>& cov, int64_t d) {
  if (cov.empty() || static_cast<int64_t>(cov.size()) == d) return cov;
  std::vector<double> v(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) v[static_cast<size_t>(i)] = cov[static_cast<size_t>(i * d + i)];
  return v;
}

/// Bound on P[some row ≤ 0] at `level` from the rows' lower linear bounds (valid on the box of
/// radius p.eps); NaN when the bounds are not finite.
double failure_bound(const BoundProblem& p, const BoundResult& r, const NoiseModel& noise,
                     const std::vector<double>& variances, int64_t d, double level) {
  const bool gaussian = noise.kind == NoiseKind::Gaussian;
  const bool proxy = noise.uniform_variance_proxy && noise.kind == NoiseKind::Uniform;
  if (static_cast<int64_t>(r.a_lower.size()) != p.rows * d || static_cast<int64_t>(r.b_lower.size()) != p.rows)
    return std::nan("");  // no linear bounds (an engine run without want_linear)
  double fail = gaussian ? gaussian_box_tail(level, variances, d, p.eps) : 0.0;
  for (int64_t k = 0; k < p.rows; ++k) {
    const double* a = r.a_lower.data() + k * d;
    double mu = r.b_lower[static_cast<size_t>(k)], l2 = 0;
    for (int64_t i = 0; i < d; ++i) mu += a[i] * p.x0[static_cast<size_t>(i)], l2 += a[i] * a[i];
    l2 = std::sqrt(l2);
    if (!std::isfinite(mu) || !std::isfinite(l2)) return std::nan("");
    if (gaussian) {
      const double s = level * std::sqrt(quad_form(a, static_cast<size_t>(d), noise.covariance));
      fail += s > 0 ? 0.5 * std::erfc(mu / (s * std::sqrt(2.0))) : (mu > 0 ? 0.0 : 1.0);
    } else if (!(r.lower[static_cast<size_t>(k)] > 0)) {  // else the worst case over the box is already positive
      fail += hoeffding_failure(mu, l2, level, proxy);
    }
  }
  return std::min(fail, 1.0);
}

}  // namespace

double proven_failure_bound(const BoundProblem& p, const BoundResult& r, const NoiseModel& noise, double level) {
  const int64_t d = static_cast<int64_t>(p.x0.size());
  const size_t cov = noise.covariance.size();
  const bool gaussian = noise.kind == NoiseKind::Gaussian;
  // Fail closed on what the bound cannot use: a level the box does not cover (the linear bounds
  // hold on the box of radius p.eps only), lower bounds missing, a covariance of the wrong size.
  if (!(level >= 0) || !std::isfinite(level) || !std::isfinite(p.eps)) return std::nan("");
  if (!gaussian && !(level <= p.eps)) return std::nan("");
  if (static_cast<int64_t>(r.lower.size()) != p.rows || !r.error.empty()) return std::nan("");
  if (cov != 0 && (!gaussian || (cov != static_cast<size_t>(d) && cov != static_cast<size_t>(d * d))))
    return std::nan("");
  return failure_bound(p, r, noise, diagonal(noise.covariance, d), d, level);
}

std::vector<double> proven_failure_bounds(const Network& net, BoundEngine& engine, std::vector<BoundProblem> problems,
                                          const NoiseModel& noise, double level, double confidence,
                                          const BoundOptions& bound) {
  CNNCERT_CHECK(confidence > 0 && confidence < 1, "--confidence must lie in (0, 1), got " << confidence);
  CNNCERT_CHECK(std::isfinite(level) && level >= 0, "the noise level must be finite and non-negative, got " << level);
  const int64_t d = net.input_size();
  const double delta = 1 - confidence;
  const std::vector<double> variances = diagonal(noise.covariance, d);
  const double region = noise.kind == NoiseKind::Gaussian ? gaussian_box_radius(level, variances, d, delta / 2) : level;
  for (auto& p : problems) p.eps = region;
  BoundOptions o = bound;
  o.norm = Norm::Linf;
  o.want_linear = true;
  const auto res = engine.bound(problems, o);
  std::vector<double> out;
  for (size_t i = 0; i < problems.size(); ++i) {
    const double f =
        res[i].error.empty() ? failure_bound(problems[i], res[i], noise, variances, d, level) : std::nan("");
    out.push_back(std::isfinite(f) ? f : 1.0);  // fail closed
  }
  return out;
}

ProvenRun proven_certify(const Network& net, BoundEngine& engine, const std::vector<double>& inputs,
                         const std::vector<int64_t>& labels, const ProvenOptions& po, int64_t first_index) {
  CNNCERT_CHECK(po.confidence > 0 && po.confidence < 1, "--confidence must lie in (0, 1), got " << po.confidence);
  const double delta = 1 - po.confidence;
  const int64_t d = net.input_size();
  const NoiseModel& noise = po.noise;
  if (noise.kind == NoiseKind::Gaussian && !noise.covariance.empty())
    validate_covariance(noise.covariance, d, "covariance");
  CNNCERT_CHECK(noise.kind == NoiseKind::Gaussian || noise.covariance.empty(),
                "a covariance applies to Gaussian noise only");

  ProvenRun run;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<ImageResult> worst;
  if (po.worst_case) {
    worst = certify(net, engine, inputs, labels, po.base, first_index);
    run.worst_case_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  CertifyOptions o = po.base;
  o.bound.norm = Norm::Linf;  // the region on which the linear bounds hold is an l-inf box
  o.bound.want_linear = true;
  const bool gaussian = noise.kind == NoiseKind::Gaussian;
  const std::vector<double> variances = diagonal(noise.covariance, d);
  // The box radius scales with σ (the tail depends on r/σ only): one bisection at σ = 1, widened
  // by 1e-12 against rounding and checked once; a full bisection per level only if that fails.
  const double unit_radius = gaussian ? gaussian_box_radius(1.0, variances, d, delta / 2) * (1 + 1e-12) : 0.0;
  const bool scales = gaussian && gaussian_box_tail(1.0, variances, d, unit_radius) <= delta / 2;
  if (gaussian)
    o.region_of_level = [&](double sigma) {
      return scales ? sigma * unit_radius : gaussian_box_radius(sigma, variances, d, delta / 2);
    };
  o.decide = [&](const BoundProblem& p, const BoundResult& r, double level, std::string* note) {
    const double fail = failure_bound(p, r, noise, variances, d, level);
    if (!std::isfinite(fail) && note && note->empty()) *note = "non-finite linear bound";
    return fail <= delta;
  };
  t0 = std::chrono::steady_clock::now();
  const std::vector<ImageResult> prob = certify(net, engine, inputs, labels, o, first_index);
  run.proven_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (size_t i = 0; i < prob.size(); ++i) {
    ProvenImage im;
    im.image = prob[i].image;
    im.label = prob[i].label;
    im.predicted = prob[i].predicted;
    im.skipped = prob[i].skipped;
    im.skip_reason = prob[i].skip_reason;
    for (size_t t = 0; t < prob[i].targets.size(); ++t) {
      ProvenTarget pt;
      pt.target = prob[i].targets[t].target;
      pt.noise = prob[i].targets[t].eps;
      if (po.worst_case) {
        pt.worst_case = worst[i].targets.size() > t ? worst[i].targets[t].eps : 0.0;
        pt.ratio = pt.worst_case > 0 ? pt.noise / pt.worst_case : 0.0;
      } else {
        pt.worst_case = pt.ratio = std::nan("");
      }
      pt.note = prob[i].targets[t].note;
      im.targets.push_back(pt);
    }
    run.images.push_back(std::move(im));
  }
  return run;
}

}  // namespace cnncert
