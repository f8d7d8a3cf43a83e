#pragma once
/// \file certify.hpp
/// The certification driver (MATH.md §3): prediction, targets and the certified-radius search,
/// with every search step one engine call for all images still searching.

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "cnncert/engine.hpp"

namespace cnncert {

/// Which classes to certify against.
enum class TargetMode { Random, Runnerup, Least, All, Untargeted };
/// Parses "random", "runnerup" (or "top2"), "least", "all", "untargeted".
TargetMode parse_target_mode(const std::string& s);
/// Name of a target mode.
const char* target_mode_name(TargetMode m);

/// Radius search.
enum class SearchMode {
  CnnCert,   ///< log-space bisection from 0.05, 15 steps
  DeepCert,  ///< DeepCert's Algorithm 1 (doubling/halving to 1e-5)
};
/// Parses "cnncert" or "deepcert".
SearchMode parse_search_mode(const std::string& s);

/// Options of a certification run.
struct CertifyOptions {
  BoundOptions bound;  ///< norm, method, input box
  TargetMode target = TargetMode::Random;
  uint64_t seed = 1215;  ///< seed of the random targets (reported in the output)
  SearchMode search = SearchMode::CnnCert;
  int cnncert_steps = 15;
  double start_eps = 0.05;
  double deepcert_tolerance = 1e-5;
  int deepcert_max_steps = 200;  ///< guard against networks whose margin never fails
  /// Explicit target class per image (overrides `target` when not empty; −1 = untargeted).
  std::vector<int64_t> targets;
  /// The index of each image in the whole input set (empty: first_index + i). It numbers the
  /// images in the results and seeds their random targets, so a shard of a run (`--shard`, an MPI
  /// rank) that passes its images' indices gets the targets and radii the whole run would.
  std::vector<int64_t> image_indices;
  /// Called after every search step with (work done, total work): engine evaluations for the
  /// CNN-Cert search (a fixed number per item), finished items for DeepCert's.
  std::function<void(int64_t, int64_t)> progress;
  /// Generalizations used by PROVEN: the engine's radius for a search level (identity when
  /// empty), and the decision "certified at this level" from the problem and its bounds (default:
  /// every lower bound finite and > 0). `note` may be set to explain a failure.
  std::function<double(double level)> region_of_level;
  std::function<bool(const BoundProblem&, const BoundResult&, double level, std::string* note)> decide;
  /// Counterexamples first: before a search step bounds an item, up to this many projected-gradient
  /// moves (pgd_move, from the centre or from the item's latest counterexample pulled into the
  /// ball) look inside the step's ball for a point whose margin, by the network's own forward pass
  /// (Network::forward, double), is ≤ 0. Such a point decides the step "not certified" without
  /// bounds: sound bounds cannot prove a margin positive on a ball that holds it. With bounds that
  /// depend on the step alone (exact_cnncert, the reference engine) the search visits the same radii
  /// and returns the same radius. In the default mode a failed step passes its bounds on to the
  /// later ones (BoundProblem::outer) and a decided step has none to pass: later steps may prove
  /// fewer neurons stable, which moves a radius only where skipping rows can (rarely; the tests
  /// find none). A point found decides, for free, every later step whose radius is at least its
  /// distance. Attacks run only at radii above the largest one where an attack of the item failed,
  /// and an item stops after two attacks that found nothing (each costs moves + 1 point
  /// evaluations). Points are evaluated through the engine (a problem of radius 0 with
  /// want_linear: margin and gradient in one call) when it proves neurons stable before
  /// back-substituting them (BoundEngine::uses_outer_bounds), else by the network's double forward
  /// and backward passes. At most 10000; 0 (the default) turns it off; it is off whenever `decide`
  /// or `region_of_level` is set (PROVEN: a probabilistic certificate can hold on a ball that holds
  /// a counterexample). What it saves depends on how far above the radius the search starts:
  /// bench/RESULTS.md ("Counterexamples first") measures it; 10 is a good value.
  int attack_moves = 0;
};

/// Result of one (image, target) search.
struct TargetResult {
  int64_t target = -1;  ///< −1 for untargeted
  double eps = 0;       ///< certified radius (0 when nothing was certified)
  int steps = 0;        ///< search steps (bounded, or decided by a counterexample: steps_by_attack)
  std::string note;     ///< e.g. why a step was not certified (non-finite bounds)
  /// Of the steps, those a counterexample decided (CertifyOptions::attack_moves): no bounds computed.
  int steps_by_attack = 0;
  /// The distance ‖x − x0‖_p of the nearest counterexample found (CertifyOptions::attack_moves):
  /// an upper bound on the minimal adversarial perturbation, beside `eps`'s lower bound; +inf when
  /// none was found.
  double attack_eps = std::numeric_limits<double>::infinity();
};

/// Result of one image.
struct ImageResult {
  int64_t image = 0;                   ///< index in the input set
  int64_t label = -1, predicted = -1;  ///< label -1: unknown (the prediction was certified)
  bool skipped = false;                ///< misclassified (or no valid target): not certified
  std::string skip_reason;
  std::vector<TargetResult> targets;
  double seconds = 0;  ///< wall time of the batch divided among its images
};

/// Certifies images (count × input_size() values, already preprocessed) with `engine`.
/// `labels` may be empty, or -1 for an image, (then the prediction is taken as the label);
/// `first_index` numbers the images in the output. A label or a target of `options.targets`
/// outside the model's classes is an InvalidArgument (before any computation), not a skip.
std::vector<ImageResult> certify(const Network& net, BoundEngine& engine, const std::vector<double>& inputs,
                                 const std::vector<int64_t>& labels, const CertifyOptions& options,
                                 int64_t first_index = 0);

/// Throws InvalidArgument naming the image (first_index + i) when a value of `classes_of_images`
/// is neither -1 nor a class index below `classes`; `what` is "label" or "target".
void check_classes(const std::vector<int64_t>& classes_of_images, int64_t classes, int64_t first_index,
                   const char* what);

/// The margin specification rows e_c − e_t for the given targets.
std::vector<double> margin_spec(int64_t classes, int64_t predicted, const std::vector<int64_t>& targets);

/// One problem per input (`inputs`: count × input_size() values, preprocessed) at radius `eps`:
/// the margins f_c − f_k of its predicted class c against every other class k (in class order),
/// or with `logits` every logit. `predicted` receives c per input.
std::vector<BoundProblem> prediction_problems(const Network& net, const std::vector<double>& inputs, double eps,
                                              bool logits, std::vector<int64_t>& predicted);

}  // namespace cnncert
