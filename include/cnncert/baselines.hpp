#pragma once
/// \file baselines.hpp
/// Comparison baselines of MATH.md §5 that do not use the bound engine: the global Lipschitz
/// certificate, gradient attacks (PGD, Carlini–Wagner ℓ2) that give upper bounds on the minimal
/// distortion, and the CLEVER robustness estimate.
///
/// Conventions shared by every function here: `x0` is one network input (input_size() values,
/// already preprocessed); `c` is the class to protect; `t` is the target class, or −1 for
/// "untargeted" (any class other than c). The margin of a target is g_t(x) = f_c(x) − f_t(x); the
/// prediction "flips" to t when g_t(x) ≤ 0. Bad arguments throw InvalidArgument.

#include <cstdint>
#include <string>
#include <vector>

#include "cnncert/engine.hpp"
#include "cnncert/network.hpp"

namespace cnncert {

// ---------------------------------------------------------------------------------------------
// Norm helpers

/// The dual norm q of p (1/p + 1/q = 1): ∞ ↔ 1, 2 ↔ 2.
Norm dual_norm(Norm p);

/// ‖v‖_p of `n` values.
double lp_norm(const double* v, int64_t n, Norm p);
/// ‖v‖_p.
double lp_norm(const std::vector<double>& v, Norm p);
/// ‖a − b‖_p (same sizes).
double lp_distance(const std::vector<double>& a, const std::vector<double>& b, Norm p);

/// `count` points drawn uniformly from the ℓp ball of radius `radius` in R^dim, as offsets from
/// the centre (count × dim values, row-major). ℓ∞: uniform cube; ℓ2: Gaussian direction times
/// radius·U^(1/dim); ℓ1: exponential spacings with random signs (a uniform point of the simplex
/// {y ≥ 0, Σy ≤ 1} is (E_1..E_dim)/(E_1+…+E_{dim+1})). Deterministic given `seed`.
std::vector<double> sample_uniform_ball(Norm p, int64_t dim, double radius, int64_t count, uint64_t seed);

// ---------------------------------------------------------------------------------------------
// Global Lipschitz certificate

/// Options of the Lipschitz constant computation.
struct LipschitzOptions {
  /// ℓ2 only: a linear layer whose smaller dimension is at most this is handled exactly: its
  /// Gram matrix (min(m, n)² entries) is formed with the layer's forward and transposed passes and
  /// λ_max is found with the cyclic Jacobi method plus a Gershgorin bound on the final matrix.
  int64_t exact_max_dim = 128;
  /// ℓ2, larger layers: power iterations on WᵀW (a fixed number: the bound below needs it).
  int power_iterations = 1000;
  /// ℓ2, larger layers: the power-iteration value θ_k ≤ σ² is inflated to θ_k/(1 − ε) with ε chosen
  /// so that θ_k < (1 − ε)σ² has probability at most this over the random start vector (see
  /// lipschitz.cpp for the derivation). The result is also capped by the deterministic bounds
  /// ‖W‖_F and sqrt(‖W‖_1‖W‖_∞).
  double failure_probability = 1e-9;
  /// Seed of the power iteration start vectors.
  uint64_t seed = 20240601;
};

/// The Lipschitz factor of one node and the Lipschitz constant of the map input → node output.
struct NodeLipschitz {
  int node = 0;
  std::string name;
  OpKind op = OpKind::Input;
  /// An upper bound on the node's own Lipschitz constant w.r.t. ‖·‖_p (the induced norm for a
  /// linear node, the largest slope for an activation, (max windows per input)^(1/p) for a
  /// max-pool, 1 for reshape/transpose/pad/input, unused (1) for Add).
  double factor = 1;
  /// ℓ2 power iteration: the raw (lower) estimate sqrt(θ_k); otherwise equal to `factor`.
  double estimate = 1;
  /// How `factor` was obtained: "identity", "row-sum", "column-sum", "max-scale", "jacobi",
  /// "power", "frobenius", "sqrt(l1*linf)", "slope", "max-pool", "sum".
  std::string method;
  /// Lipschitz constant of input → this node's output: factor·L(input), L(a)+L(b) for Add.
  double lipschitz = 1;
};

/// Per-node Lipschitz factors of a network for one norm (independent of the input point).
struct LipschitzNorms {
  Norm norm = Norm::Linf;
  std::vector<NodeLipschitz> nodes;  ///< one per network node, in node order
};

/// Computes the Lipschitz factor of every node (MATH.md §5): induced norms of linear layers
/// (p = ∞: max row sum of |W|; p = 1: max column sum; p = 2: largest singular value, see
/// LipschitzOptions), activation slopes (ReLU/tanh/arctan 1, sigmoid 1/4, leaky ReLU max(1, |α|)),
/// max-pool (max number of windows an input lies in)^(1/p), and Lipschitz constants added at a
/// residual Add.
LipschitzNorms lipschitz_norms(const Network& net, Norm p, const LipschitzOptions& options = {});

/// The global Lipschitz certificate of one (x0, c, t).
struct LipschitzResult {
  /// Certified radius: no x with ‖x − x0‖_p < radius has g_t(x) ≤ 0 (0 when g_t(x0) ≤ 0).
  double radius = 0;
  int64_t target = -1;  ///< the target (for t = −1: the one with the smallest radius)
  double margin = 0;    ///< g_t(x0)
  /// g_t restricted to the trailing linear layers is sᵀ·h(x) + const for the output h of node
  /// `spec_node` (the last non-linear node or Add; the last Dense in the usual case, where s is
  /// W_m[c] − W_m[t]); spec_norm = ‖s‖_q.
  int spec_node = 0;
  double spec_norm = 0;
  double lipschitz = 0;               ///< Lipschitz constant of g_t: spec_norm · L(spec_node)
  std::vector<NodeLipschitz> layers;  ///< the per-node factors used
};

/// Global Lipschitz certificate with precomputed norms (reuse them across inputs).
LipschitzResult global_lipschitz(const Network& net, const LipschitzNorms& norms, const std::vector<double>& x0,
                                 int64_t c, int64_t t);
/// Global Lipschitz certificate, computing the norms.
LipschitzResult global_lipschitz(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                                 const LipschitzOptions& options = {});
/// radius = (f_c − f_t)(x0) / (‖W_m[c] − W_m[t]‖_q · Π_k ‖W_k‖_{p→p}) (MATH.md §5).
double global_lipschitz_radius(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p);

// ---------------------------------------------------------------------------------------------
// Attacks

/// Options of the attacks. An attack is deterministic given these.
struct AttackOptions {
  /// Restrict adversarial points to the box [box_lo, box_hi] (one value for all inputs).
  bool clip_to_box = false;
  double box_lo = 0, box_hi = 1;
  uint64_t seed = 1;  ///< random restarts of PGD

  // PGD
  int pgd_steps = 40;             ///< gradient steps per restart and ε
  int pgd_restarts = 2;           ///< restarts per ε (the first starts at x0, the others uniformly in the ball)
  double pgd_step_size = 0.1;     ///< step length as a fraction of ε (halved at 1/2 and 3/4 of the steps)
  double pgd_l1_sparsity = 0.01;  ///< ℓ1: fraction of the coordinates moved per step (at least one)
  int pgd_bisection_steps = 10;   ///< bisection steps over ε once an adversarial ε is known
  /// Largest ε tried; 0 = the farthest point of the box from x0 (with the box), else 1e6·(initial guess).
  double pgd_eps_max = 0;

  // Carlini–Wagner ℓ2
  int cw_iterations = 500;  ///< Adam iterations per value of the constant
  int cw_binary_steps = 8;  ///< binary search steps over the constant
  double cw_initial_const = 1e-2;
  double cw_learning_rate = 1e-2;
  double cw_confidence = 0;  ///< κ in max(g_t(x) + κ, 0)

  /// Finally move the best point towards x0 along the segment (bisection, 40 steps) while it
  /// stays adversarial: it can only reduce the distortion.
  bool refine_segment = true;
};

/// Result of an attack.
struct AttackResult {
  bool found = false;     ///< an adversarial point was found
  double distortion = 0;  ///< ‖x − x0‖_p of the point (infinity when none was found)
  std::vector<double> x;  ///< the adversarial point (empty when none)
  int64_t target = -1;    ///< the class that reached f_t(x) ≥ f_c(x)
  double margin = 0;      ///< g_target(x) ≤ 0 at the point
  int64_t gradient_evaluations = 0;
};

/// PGD with a bisection over ε: the smallest ε (within the bisection) at which projected gradient
/// descent on g_t inside the ε-ball (∩ box) reaches g_t(x) ≤ 0. Returns the real distance of the
/// best point found, an upper bound on the minimal distortion. Gradients by
/// Network::input_gradient.
AttackResult pgd_attack(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                        const AttackOptions& options = {});

/// One projected-gradient move descending g (the gradient of a margin at x): x − η·d with d the
/// steepest-descent direction of unit p-norm (ℓ∞: sign(g); ℓ2: g/‖g‖₂; ℓ1: the
/// ⌈pgd_l1_sparsity·n⌉ largest |g_i| that can still move inside the box, η shared among them),
/// then the projection onto the p-ball of radius eps around x0, clipped to the box when
/// options.clip_to_box. False (x unchanged) when g gives no direction. pgd_attack's move, for
/// callers with gradients of their own (the certification search's counterexamples).
bool pgd_move(std::vector<double>& x, const std::vector<double>& g, const std::vector<double>& x0, double eta,
              double eps, Norm p, const AttackOptions& options);
/// pgd_move's projection: onto the p-ball of radius eps around x0 (ℓ∞: clamping; ℓ2: scaling;
/// ℓ1: Euclidean, sort-based), then clipped to the box under options.clip_to_box (x0 in the box
/// keeps the point in the ball).
void project_to_ball(std::vector<double>& x, const std::vector<double>& x0, double eps, Norm p,
                     const AttackOptions& options);

/// Carlini–Wagner style ℓ2 attack: minimizes ‖δ‖₂² + C·max(g_t(x0 + δ) + κ, 0) with Adam (tanh
/// change of variables when a box is given), binary search over C. Returns the adversarial point
/// of smallest ℓ2 distortion seen (g_t ≤ 0).
AttackResult cw_l2_attack(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t,
                          const AttackOptions& options = {});

// ---------------------------------------------------------------------------------------------
// CLEVER

/// How a reverse Weibull fit ended.
enum class WeibullFit {
  Interior,     ///< the likelihood has its maximum at a location above the sample maximum
  AtSampleMax,  ///< the likelihood grows as location → sample maximum (shape < 1): location = max
  Unbounded,    ///< the likelihood grows as location → ∞ (Gumbel-like tail, no finite MLE):
                ///< location = sample maximum, shape = scale = ∞
  Constant,     ///< all samples are equal: location = their value, shape = ∞, scale = 0
};

/// A reverse Weibull distribution: F(y) = exp(−((location − y)/scale)^shape) for y < location, 1
/// above.
struct ReverseWeibull {
  double location = 0, scale = 0, shape = 0;
  double log_likelihood = 0;  ///< of the fitted samples (its supremum for Unbounded)
  WeibullFit kind = WeibullFit::Interior;
};

/// Log-likelihood of samples under a reverse Weibull (−infinity when a sample ≥ location).
double reverse_weibull_log_likelihood(const std::vector<double>& samples, const ReverseWeibull& d);

/// Maximum-likelihood fit of the three parameters, location ≥ max sample: for each location the
/// shape solves the profile score equation (safeguarded Newton on a bracket) and the scale is then
/// explicit; the profile likelihood over the location is maximized by a log-spaced scan of
/// location − max over [1e-8, 1e3]·(max − min) and golden-section refinement. When the maximum
/// lies at an end of the scan the MLE does not exist (see WeibullFit) and the location is the
/// sample maximum. Needs ≥ 3 samples.
ReverseWeibull fit_reverse_weibull(const std::vector<double>& samples);

/// Options of CLEVER.
struct CleverOptions {
  int batches = 50;   ///< N_b
  int samples = 100;  ///< N_s per batch
  double radius = 0;  ///< R: sampling radius and cap of the score (must be set)
  uint64_t seed = 1;
  /// Clip the sampled points to the box [box_lo, box_hi] (as CLEVER does for images).
  bool clip_to_box = false;
  double box_lo = 0, box_hi = 1;
  int threads = 0;  ///< worker threads for the gradients (0 = hardware concurrency)
};

/// CLEVER estimate of one (x0, c, t) (for t = −1 the smallest over all targets).
struct CleverResult {
  double score = 0;      ///< min(g_t(x0)/L̂, R): an estimate, not a certificate
  double lipschitz = 0;  ///< L̂ = fitted location
  double margin = 0;     ///< g_t(x0)
  int64_t target = -1;
  double max_gradient_norm = 0;      ///< largest sampled ‖∇g_t‖_q
  std::vector<double> batch_maxima;  ///< N_b values
  ReverseWeibull fit;
};

/// CLEVER (MATH.md §5): sampled dual-norm gradient norms of g_t uniformly in the p-ball of radius
/// R, maxima per batch, reverse Weibull MLE, score = g_t(x0)/location capped at R.
CleverResult clever_score(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                          const CleverOptions& options);

}  // namespace cnncert
