#pragma once
/// \file proven.hpp
/// PROVEN: probabilistic robustness certificates under random input noise (MATH.md §4).

#include <cstdint>
#include <string>
#include <vector>

#include "cnncert/certify.hpp"

namespace cnncert {

/// The random noise added to the input.
enum class NoiseKind {
  Uniform,    ///< independent, uniform on [−ε, ε]
  Bernoulli,  ///< independent, ±ε with probability 1/2
  Bounded,    ///< any independent zero-mean law bounded by ε
  Gaussian,   ///< N(0, σ²I), or N(0, σ²Σ) with a given covariance Σ
};
/// Parses "uniform", "bernoulli", "bounded", "gaussian".
NoiseKind parse_noise(const std::string& s);
/// Name of a noise kind.
const char* noise_name(NoiseKind k);

/// Noise model. The searched "noise level" is ε (bounded noise) or σ (Gaussian).
struct NoiseModel {
  NoiseKind kind = NoiseKind::Uniform;
  /// Uniform noise only: Hoeffding with the variance proxy ε²/3 instead of ε² (tighter, sound).
  bool uniform_variance_proxy = false;
  /// Gaussian only: empty = identity; d values = a diagonal; d×d values = a full covariance
  /// (row-major, symmetric positive semi-definite). Scaled by σ².
  std::vector<double> covariance;
};

/// Hoeffding bound on P[aᵀδ ≤ −μ] for independent zero-mean δ_i bounded by eps:
/// exp(−μ² / (2 v eps² ‖a‖₂²)) with v = 1 (or 1/3 with the uniform variance proxy); 1 when μ ≤ 0.
double hoeffding_failure(double mu, double a_l2, double eps, bool uniform_proxy);
/// Φ(z), accurate in the tails (through erfc).
double normal_cdf(double z);
/// The smallest r (up to a safe rounding) with P[X ∉ B∞(x0, r)] ≤ tail for X ~ N(x0, σ²·diag(v))
/// (`variances` empty = all 1): the exact product formula for independent coordinates.
double gaussian_box_radius(double sigma, const std::vector<double>& variances, int64_t dims, double tail);
/// P[X ∉ B∞(x0, r)] for X ~ N(x0, σ²·diag(v)) with independent coordinates; for correlated
/// coordinates with these variances it is an upper bound (Šidák's inequality: the probability of
/// the box is at least the product of the per-coordinate probabilities).
double gaussian_box_tail(double sigma, const std::vector<double>& variances, int64_t dims, double r);

/// Checks a covariance for `dims` inputs (size d or d×d, finite, non-negative variances,
/// symmetric PSD); throws InvalidArgument naming `what` otherwise.
void validate_covariance(const std::vector<double>& cov, int64_t dims, const std::string& what);

/// Options of a PROVEN run; `base` supplies the method, targets and search (its norm is the one
/// of the worst-case radius reported beside).
struct ProvenOptions {
  CertifyOptions base;
  NoiseModel noise;
  double confidence = 0.9999;
  /// Also search the worst-case radius (base.bound.norm) for the ratio. Without it a run costs
  /// one search, like a worst-case certification; worst_case and ratio are then NaN.
  bool worst_case = true;
};

/// One (image, target) result.
struct ProvenTarget {
  int64_t target = -1;  ///< −1 = top-1 (all other classes, union bound)
  double noise = 0;     ///< certified noise level (ε or σ) at the confidence
  double worst_case =
      0;             ///< worst-case certified radius (same method and search, base.bound.norm); NaN when not searched
  double ratio = 0;  ///< noise / worst_case (0 when the worst case is 0; NaN when not searched)
  std::string note;
};

/// One image.
struct ProvenImage {
  int64_t image = 0, label = -1, predicted = -1;
  bool skipped = false;
  std::string skip_reason;
  std::vector<ProvenTarget> targets;
};

/// Result of a run, with the time of the worst-case (0 when not searched) and of the
/// probabilistic searches.
struct ProvenRun {
  std::vector<ProvenImage> images;
  double worst_case_seconds = 0, proven_seconds = 0;
};

/// Upper bound on P[some row of `p` ≤ 0] (union bound over the rows) under the noise at `level`
/// (ε or σ), from the rows' final lower linear bounds in `r` (an engine result with want_linear,
/// valid on the l-inf box of radius p.eps, which must contain the bounded noise's support; for
/// Gaussian noise the probability of leaving that box is added). `r` must come from an l-inf run
/// (the result does not record the norm). NaN (fail closed) when the bounds are not finite or
/// missing, when bounded noise at `level` is not inside the box (level > p.eps), or when the
/// covariance does not fit.
double proven_failure_bound(const BoundProblem& p, const BoundResult& r, const NoiseModel& noise, double level);

/// Upper bounds on P[some spec row ≤ 0] (union bound over the rows) under the noise at `level`
/// (ε or σ), one per problem: the engine runs on the l-inf box of radius `level` (bounded noise)
/// or on the box that holds the Gaussian with probability ≥ 1 − δ/2, δ = 1 − confidence (the tail
/// is included in the bound). The problems' eps fields are ignored.
std::vector<double> proven_failure_bounds(const Network& net, BoundEngine& engine, std::vector<BoundProblem> problems,
                                          const NoiseModel& noise, double level, double confidence,
                                          const BoundOptions& bound);

/// Searches the largest noise level whose probability of keeping the prediction is at least
/// `confidence`, recomputing the bounds at each candidate, batched across images; and the
/// worst-case radius for comparison.
ProvenRun proven_certify(const Network& net, BoundEngine& engine, const std::vector<double>& inputs,
                         const std::vector<int64_t>& labels, const ProvenOptions& options, int64_t first_index = 0);

}  // namespace cnncert
