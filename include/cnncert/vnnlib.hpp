#pragma once
/// \file vnnlib.hpp
/// VNN-LIB properties (VNN-COMP): an input box and output constraints whose satisfaction would be a
/// counterexample, and their verification by the bound engines plus an attack for counterexamples.

#include <cstdint>
#include <string>
#include <vector>

#include "cnncert/engine.hpp"
#include "cnncert/network.hpp"

namespace cnncert {

/// Σ_j coef[j]·Y_j ≤ bound over the network's outputs (one coefficient per output).
struct OutputConstraint {
  std::vector<double> coef;
  double bound = 0;
};

/// One case of a property's disjunction: every input X_i in [lower[i], upper[i]] and all of
/// `outputs` holding at once would be a counterexample.
struct VnnCase {
  std::vector<double> lower, upper;
  std::vector<OutputConstraint> outputs;
};

/// A property: a counterexample is an input that satisfies some case.
struct VnnProperty {
  int64_t inputs = 0, outputs = 0;  ///< declared X_0.. and Y_0..
  std::vector<VnnCase> cases;
};

/// Parses VNN-LIB text (`source` names it in errors, which give the line): declare-const of X_i
/// and Y_j (Real), and asserts of `<=`/`>=` between linear expressions (`+`, `-`, `*` by a
/// constant) of single variables, nested in `and`/`or`. Each case's inputs need a lower and an
/// upper bound by constants; input constraints that are not single-variable bounds, and
/// constraints that mix X and Y, are UnsupportedModel. Bad syntax is InvalidArgument.
VnnProperty parse_vnnlib(const std::string& text, const std::string& source = "vnnlib");

/// Reads and parses a .vnnlib file (also .vnnlib.gz).
VnnProperty load_vnnlib(const std::string& path);

/// The answers of VNN-COMP.
enum class VnnAnswer { Unsat, Sat, Unknown, Timeout };
const char* vnn_answer_name(VnnAnswer a);

/// How a property is checked.
struct VnnOptions {
  BoundOptions bound;          ///< method (norm and box are set per case)
  double timeout_seconds = 0;  ///< 0 = none; checked between the phases of each case
  bool attack = true;          ///< look for counterexamples (the box centre, then PGD)
  uint64_t seed = 1;
  /// Input splitting for cases the bounds leave open, on networks of at most this many inputs
  /// (ACAS-Xu style): the box is bisected on the input that most influences the open constraints'
  /// bounds, depth first, and the case is refuted when every piece is. 0 = no splitting.
  int64_t split_max_inputs = 64;
  int64_t max_boxes = 20000;  ///< pieces bounded per case at most (then the case stays open)
};

/// The outcome: for Sat the counterexample input (the network's input order) and its outputs.
struct VnnResult {
  VnnAnswer answer = VnnAnswer::Unknown;
  std::vector<double> x, y;
  int64_t cases_refuted = 0;  ///< cases whose constraints the bounds proved impossible
  int64_t boxes = 0;          ///< input pieces bounded by the splitting
  std::string note;           ///< what decided the answer, or why it is unknown
  double seconds = 0;
};

/// Checks `property` on `net`: Unsat when for every case some output constraint is proven
/// violated over the case's box (its lower bound above `bound`, by the engine `make_engine`
/// returns for the box's network); Sat only with an input inside a case's box whose outputs,
/// recomputed by the double-precision forward pass, satisfy every constraint of that case.
VnnResult verify_vnnlib(const Network& net, const VnnProperty& property, const VnnOptions& options,
                        const EngineOptions& engine = {});

/// The network x ↦ net(shift + scale ⊙ x) (one value per input element): a box
/// [shift − |scale|, shift + |scale|] of `net` is the ℓ∞ ball of radius 1 around 0 of the result.
Network with_input_affine(const Network& net, const std::vector<double>& scale, const std::vector<double>& shift);

}  // namespace cnncert
