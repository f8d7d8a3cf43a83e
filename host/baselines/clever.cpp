// CLEVER (MATH.md §5): an extreme-value estimate of the local Lipschitz constant of the margin
// g_t = f_c − f_t. Dual-norm gradient norms are sampled uniformly in the p-ball, the maximum of
// each batch is taken, and a reverse Weibull distribution is fitted to the batch maxima by
// maximum likelihood; its location estimates max ‖∇g_t‖_q over the ball. Not a certificate.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <random>
#include <thread>

#include "baselines/baseline_checks.hpp"
#include "cnncert/baselines.hpp"
#include "cnncert/error.hpp"
#include "util/splitmix.hpp"

namespace cnncert {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

using detail::splitmix64;

}  // namespace

std::vector<double> sample_uniform_ball(Norm p, int64_t dim, double radius, int64_t count, uint64_t seed) {
  CNNCERT_CHECK(dim >= 1 && count >= 0, "sample_uniform_ball: dimension must be positive and count non-negative");
  CNNCERT_CHECK(radius >= 0 && std::isfinite(radius), "sample_uniform_ball: radius must be finite and non-negative");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::normal_distribution<double> gauss(0.0, 1.0);
  const auto d = static_cast<size_t>(dim);
  std::vector<double> out(static_cast<size_t>(count) * d);
  for (int64_t s = 0; s < count; ++s) {
    double* v = out.data() + static_cast<size_t>(s) * d;
    switch (p) {
      case Norm::Linf:
        for (size_t i = 0; i < d; ++i) v[i] = radius * (2 * unif(rng) - 1);
        break;
      case Norm::L2: {
        double nrm = 0;
        do {
          for (size_t i = 0; i < d; ++i) v[i] = gauss(rng);
          nrm = lp_norm(v, dim, Norm::L2);
        } while (nrm == 0);
        // radius of a uniform point: P(r ≤ ρ) = (ρ/R)^dim; 1 − U lies in (0, 1]
        const double r = radius * std::exp(std::log(1 - unif(rng)) / static_cast<double>(dim));
        for (size_t i = 0; i < d; ++i) v[i] *= r / nrm;
        break;
      }
      case Norm::L1: {
        // (E_1..E_dim)/(E_1 + … + E_{dim+1}) is uniform on {y ≥ 0, Σy ≤ 1}; random signs fill the ball
        double total = 0;
        for (size_t i = 0; i < d; ++i) {
          v[i] = -std::log(1 - unif(rng));
          total += v[i];
        }
        total += -std::log(1 - unif(rng));
        if (total == 0) total = 1;  // probability zero; keeps the point at the centre
        for (size_t i = 0; i < d; ++i) v[i] *= (rng() & 1 ? radius : -radius) / total;
        break;
      }
    }
  }
  return out;
}

double reverse_weibull_log_likelihood(const std::vector<double>& samples, const ReverseWeibull& d) {
  if (!(d.scale > 0 && d.shape > 0)) return -kInf;
  const double n = static_cast<double>(samples.size());
  double ll = n * (std::log(d.shape) - d.shape * std::log(d.scale));
  for (double y : samples) {
    const double z = d.location - y;
    if (!(z > 0)) return -kInf;
    ll += (d.shape - 1) * std::log(z) - std::pow(z / d.scale, d.shape);
  }
  return ll;
}

namespace {

/// Profile over (scale, shape) at a fixed location μ > max y: the shape solves
/// h(k) = 1/k + mean(ln u) − Σu^k ln u/Σu^k = 0 with u = z/max z (h decreases from +∞ to
/// mean(ln u) < 0), and scale^k = mean(z^k).
ReverseWeibull profile(const std::vector<double>& y, double mu) {
  const size_t n = y.size();
  std::vector<double> lu(n);
  double zmax = 0;
  for (double v : y) zmax = std::max(zmax, mu - v);
  double mean_lu = 0, sum_lz = 0;
  for (size_t i = 0; i < n; ++i) {
    const double z = mu - y[i];
    lu[i] = std::log(z / zmax);
    mean_lu += lu[i];
    sum_lz += std::log(z);
  }
  mean_lu /= static_cast<double>(n);
  // h and h' at k (weights u^k = exp(k ln u) ≤ 1, with u = 1 for the largest z)
  const auto eval = [&](double k, double& h, double& dh, double& mean_uk) {
    double s0 = 0, s1 = 0, s2 = 0;
    for (double l : lu) {
      const double w = std::exp(k * l);
      s0 += w;
      s1 += w * l;
      s2 += w * l * l;
    }
    const double m1 = s1 / s0;
    h = 1 / k + mean_lu - m1;
    dh = -1 / (k * k) - (s2 / s0 - m1 * m1);
    mean_uk = s0 / static_cast<double>(n);
  };
  double h = 0, dh = 0, muk = 0;
  double lo = 1e-3, hi = 1.0;
  eval(hi, h, dh, muk);
  while (h > 0 && hi < 1e8) {
    lo = hi;
    hi *= 4;
    eval(hi, h, dh, muk);
  }
  for (eval(lo, h, dh, muk); h < 0 && lo > 1e-8;) {
    hi = lo;
    lo /= 4;
    eval(lo, h, dh, muk);
  }
  double k = std::sqrt(lo * hi);
  for (int it = 0; it < 200; ++it) {
    eval(k, h, dh, muk);
    if (h > 0)
      lo = k;
    else
      hi = k;
    double next = k - h / dh;
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);  // bisection when Newton leaves the bracket
    if (std::fabs(next - k) <= 1e-13 * k || hi - lo <= 1e-13 * hi) {
      k = next;
      break;
    }
    k = next;
  }
  eval(k, h, dh, muk);
  ReverseWeibull d;
  d.location = mu;
  d.shape = k;
  d.scale = zmax * std::exp(std::log(muk) / k);
  const double nn = static_cast<double>(n);
  d.log_likelihood = nn * std::log(k) - nn * k * std::log(d.scale) + (k - 1) * sum_lz - nn;
  return d;
}

}  // namespace

ReverseWeibull fit_reverse_weibull(const std::vector<double>& samples) {
  CNNCERT_CHECK(samples.size() >= 3, "reverse Weibull fit: needs at least 3 samples, got " << samples.size());
  for (double v : samples) CNNCERT_CHECK(std::isfinite(v), "reverse Weibull fit: a sample is not finite");
  const auto [mn_it, mx_it] = std::minmax_element(samples.begin(), samples.end());
  const double ymin = *mn_it, ymax = *mx_it, range = ymax - ymin;
  if (range <= 1e-12 * std::max(1.0, std::fabs(ymax))) {
    ReverseWeibull d;
    d.location = ymax;
    d.shape = kInf;
    d.scale = 0;
    d.log_likelihood = kInf;
    d.kind = WeibullFit::Constant;
    return d;
  }
  // log-spaced scan of the offset location − max over [1e-8, 1e3]·range
  const int kScan = 221;
  const double la = std::log(1e-8 * range), lb = std::log(1e3 * range);
  std::vector<ReverseWeibull> scan(kScan);
  int best = 0;
  for (int i = 0; i < kScan; ++i) {
    const double off = std::exp(la + (lb - la) * i / (kScan - 1));
    scan[static_cast<size_t>(i)] = profile(samples, ymax + off);
    if (scan[static_cast<size_t>(i)].log_likelihood > scan[static_cast<size_t>(best)].log_likelihood) best = i;
  }
  if (best == 0) {
    // likelihood increasing towards the sample maximum (shape < 1): the MLE sits on the boundary
    ReverseWeibull d = scan[0];
    d.location = ymax;
    d.kind = WeibullFit::AtSampleMax;
    return d;
  }
  if (best == kScan - 1) {
    // still increasing 1000 ranges above the maximum: the data look Gumbel-like and the location
    // is not identifiable; an estimate that far out would only reflect the scan's end
    ReverseWeibull d = scan[static_cast<size_t>(best)];
    d.location = ymax;
    d.shape = d.scale = kInf;
    d.kind = WeibullFit::Unbounded;
    return d;
  }
  // golden-section refinement of the log-offset between the neighbours of the best scan point
  auto ll_at = [&](double lo) { return profile(samples, ymax + std::exp(lo)); };
  double a = la + (lb - la) * (best - 1) / (kScan - 1), b = la + (lb - la) * (best + 1) / (kScan - 1);
  const double gr = (std::sqrt(5.0) - 1) / 2;
  double x1 = b - gr * (b - a), x2 = a + gr * (b - a);
  ReverseWeibull f1 = ll_at(x1), f2 = ll_at(x2);
  for (int it = 0; it < 100 && b - a > 1e-12; ++it) {
    if (f1.log_likelihood >= f2.log_likelihood) {
      b = x2;
      x2 = x1;
      f2 = f1;
      x1 = b - gr * (b - a);
      f1 = ll_at(x1);
    } else {
      a = x1;
      x1 = x2;
      f1 = f2;
      x2 = a + gr * (b - a);
      f2 = ll_at(x2);
    }
  }
  ReverseWeibull r = f1.log_likelihood >= f2.log_likelihood ? f1 : f2;
  if (scan[static_cast<size_t>(best)].log_likelihood > r.log_likelihood) r = scan[static_cast<size_t>(best)];
  return r;
}

CleverResult clever_score(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                          const CleverOptions& o) {
  detail::check_classes(net, x0, c, t, "CLEVER");
  const int64_t k = net.output_size();
  CNNCERT_CHECK(o.radius > 0 && std::isfinite(o.radius),
                "CLEVER: the sampling radius must be positive (got " << o.radius << ")");
  CNNCERT_CHECK(o.batches >= 3, "CLEVER: at least 3 batches are needed for the Weibull fit (got " << o.batches << ")");
  CNNCERT_CHECK(o.samples >= 1, "CLEVER: samples per batch must be positive");
  CNNCERT_CHECK(o.threads >= 0, "CLEVER: threads must be non-negative");
  for (double v : x0) CNNCERT_CHECK(std::isfinite(v), "CLEVER: the input contains a non-finite value");
  if (o.clip_to_box) CNNCERT_CHECK(o.box_lo < o.box_hi, "CLEVER: empty box");

  std::vector<int64_t> targets;
  for (int64_t j = 0; j < k; ++j)
    if (j != c && (t < 0 || j == t)) targets.push_back(j);
  const Norm q = dual_norm(p);
  const int64_t n = net.input_size();
  const size_t nt = targets.size();
  // maxima[j * batches + b]; each batch draws from its own seed, so results do not depend on threads
  std::vector<double> maxima(nt * static_cast<size_t>(o.batches), 0.0);
  const auto run_batch = [&](int b) {
    const auto off =
        sample_uniform_ball(p, n, o.radius, o.samples, splitmix64(o.seed ^ splitmix64(static_cast<uint64_t>(b))));
    std::vector<double> x(static_cast<size_t>(n)), s(static_cast<size_t>(k), 0.0);
    for (int i = 0; i < o.samples; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double v = x0[static_cast<size_t>(j)] + off[static_cast<size_t>(i * n + j)];
        if (o.clip_to_box) v = std::clamp(v, o.box_lo, o.box_hi);
        x[static_cast<size_t>(j)] = v;
      }
      for (size_t ti = 0; ti < nt; ++ti) {
        std::fill(s.begin(), s.end(), 0.0);
        s[static_cast<size_t>(c)] = 1;
        s[static_cast<size_t>(targets[ti])] = -1;
        const double g = lp_norm(net.input_gradient(x.data(), s.data()), q);
        double& m = maxima[ti * static_cast<size_t>(o.batches) + static_cast<size_t>(b)];
        m = std::max(m, g);
      }
    }
  };
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min(threads, o.batches);
  if (threads <= 1) {
    for (int b = 0; b < o.batches; ++b) run_batch(b);
  } else {
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
    for (int w = 0; w < threads; ++w)
      pool.emplace_back([&, w] {
        try {
          for (int b = w; b < o.batches; b += threads) run_batch(b);
        } catch (...) {
          errors[static_cast<size_t>(w)] = std::current_exception();
        }
      });
    for (auto& th : pool) th.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

  const auto logits = net.forward(x0.data(), 1);
  CleverResult best;
  best.score = kInf;
  for (size_t ti = 0; ti < nt; ++ti) {
    CleverResult r;
    r.target = targets[ti];
    r.margin = logits[static_cast<size_t>(c)] - logits[static_cast<size_t>(r.target)];
    r.batch_maxima.assign(maxima.begin() + static_cast<std::ptrdiff_t>(ti * static_cast<size_t>(o.batches)),
                          maxima.begin() + static_cast<std::ptrdiff_t>((ti + 1) * static_cast<size_t>(o.batches)));
    r.max_gradient_norm = *std::max_element(r.batch_maxima.begin(), r.batch_maxima.end());
    r.fit = fit_reverse_weibull(r.batch_maxima);
    r.lipschitz = r.fit.location;
    if (r.margin <= 0)
      r.score = 0;
    else if (r.lipschitz <= 0)
      r.score = o.radius;
    else
      r.score = std::min(r.margin / r.lipschitz, o.radius);
    if (r.score < best.score || best.target < 0) best = std::move(r);
  }
  return best;
}

}  // namespace cnncert
