// VNN-LIB properties (include/cnncert/vnnlib.hpp): an own s-expression reader, the property as a
// disjunction of (input box, output constraints) cases, and their verification.
#include "cnncert/vnnlib.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "cnncert/baselines.hpp"
#include "cnncert/error.hpp"
#include "io/read_file.hpp"

namespace cnncert {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kMaxVariables = int64_t{1} << 26;  // far beyond any benchmark's input
constexpr size_t kMaxCases = 100000;                 // the disjunctive normal form of the asserts
constexpr size_t kMaxAtoms = 20000000;               // constraints over all its cases

// ---- s-expressions ------------------------------------------------------------------------------

struct Expr {
  std::string atom;         // empty for a list
  std::vector<Expr> items;  // a list's elements
  int line = 0;
  bool is_list() const { return atom.empty(); }
};

class Reader {
 public:
  Reader(const std::string& text, std::string source) : t_(text), src_(std::move(source)) {}

  /// The next top-level expression; false at the end.
  bool next(Expr& e) {
    skip();
    if (i_ >= t_.size()) return false;
    e = read(0);
    return true;
  }

  [[noreturn]] void fail(int line, const std::string& what) const {
    throw InvalidArgument(src_ + ":" + std::to_string(line) + ": " + what);
  }
  /// Valid SMT-LIB that this reader does not handle.
  [[noreturn]] void unsupported(int line, const std::string& what) const {
    throw UnsupportedModel(src_ + ":" + std::to_string(line) + ": " + what);
  }
  const std::string& source() const { return src_; }

 private:
  void skip() {
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == ';') {
        while (i_ < t_.size() && t_[i_] != '\n') ++i_;
      } else if (c == '\n') {
        ++line_, ++i_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++i_;
      } else {
        return;
      }
    }
  }

  Expr read(int depth) {
    if (depth > 1000) fail(line_, "expressions nested too deeply");
    skip();
    if (i_ >= t_.size()) fail(line_, "unexpected end of file (a '(' is not closed)");
    Expr e;
    e.line = line_;
    if (t_[i_] == ')') fail(line_, "unexpected ')'");
    if (t_[i_] == '(') {
      ++i_;
      for (;;) {
        skip();
        if (i_ >= t_.size()) fail(e.line, "'(' opened here is not closed");
        if (t_[i_] == ')') {
          ++i_;
          break;
        }
        e.items.push_back(read(depth + 1));
      }
      if (e.items.empty()) fail(e.line, "empty list '()'");
      return e;
    }
    const size_t b = i_;
    while (i_ < t_.size() && !std::isspace(static_cast<unsigned char>(t_[i_])) && t_[i_] != '(' && t_[i_] != ')' &&
           t_[i_] != ';')
      ++i_;
    e.atom = t_.substr(b, i_ - b);
    return e;
  }

  const std::string& t_;
  std::string src_;
  size_t i_ = 0;
  int line_ = 1;
};

// ---- linear expressions and constraints ---------------------------------------------------------

/// Σ coef·variable + constant; variables are X_i (index i) and Y_j (index −1 − j).
struct Linear {
  std::map<int64_t, double> terms;
  double constant = 0;
};

/// An atomic constraint lhs ≤ 0.
struct Atom {
  Linear lhs;
  int line = 0;
};

using Dnf = std::vector<std::vector<Atom>>;  // OR of ANDs

class Parser {
 public:
  Parser(const std::string& text, const std::string& source) : r_(text, source) {}

  VnnProperty run() {
    Expr e;
    Dnf all{{}};  // the asserts so far, ANDed: one empty case
    bool any_assert = false;
    while (r_.next(e)) {
      if (!e.is_list() || e.items[0].is_list()) r_.fail(e.line, "expected (declare-const ...) or (assert ...)");
      const std::string& head = e.items[0].atom;
      if (head == "declare-const") {
        declare(e);
      } else if (head == "assert") {
        if (e.items.size() != 2) r_.fail(e.line, "assert takes one formula");
        all = conjoin(all, formula(e.items[1]), e.line);
        any_assert = true;
      } else if (head == "check-sat" || head == "get-model" || head == "exit" || head == "set-logic" ||
                 head == "set-info" || head == "set-option") {
        continue;  // SMT-LIB commands that say nothing about the property
      } else {
        r_.fail(e.line, "unknown command '" + head + "' (VNN-LIB uses declare-const and assert)");
      }
    }
    if (x_ == 0) throw InvalidArgument(r_.source() + ": declares no input variable X_0");
    if (y_ == 0) throw InvalidArgument(r_.source() + ": declares no output variable Y_0");
    if (!any_assert) throw InvalidArgument(r_.source() + ": has no assert");
    check_declared(x_declared_, "X"), check_declared(y_declared_, "Y");
    VnnProperty p;
    p.inputs = x_, p.outputs = y_;
    for (auto& term : all) p.cases.push_back(to_case(term));
    return p;
  }

 private:
  void declare(const Expr& e) {
    if (e.items.size() != 3 || e.items[1].is_list() || e.items[2].is_list())
      r_.fail(e.line, "expected (declare-const NAME Real)");
    if (e.items[2].atom != "Real") r_.fail(e.line, "only Real variables are supported, got '" + e.items[2].atom + "'");
    const auto [is_x, index] = variable(e.items[1]);
    if (index < 0) r_.fail(e.line, "variables are named X_i (inputs) and Y_j (outputs), got '" + e.items[1].atom + "'");
    auto& seen = is_x ? x_declared_ : y_declared_;
    if (static_cast<int64_t>(seen.size()) <= index) seen.resize(static_cast<size_t>(index) + 1, 0);
    if (seen[static_cast<size_t>(index)]) r_.fail(e.line, e.items[1].atom + " is declared twice");
    seen[static_cast<size_t>(index)] = 1;
    (is_x ? x_ : y_) = std::max(is_x ? x_ : y_, index + 1);
  }

  void check_declared(const std::vector<char>& seen, const char* name) const {
    for (size_t i = 0; i < seen.size(); ++i)
      if (!seen[i])
        throw InvalidArgument(r_.source() + ": " + name + "_" + std::to_string(i) +
                              " is not declared (variables must be numbered from 0 without gaps)");
  }

  /// (true, i) for X_i, (false, j) for Y_j, index −1 for anything else.
  std::pair<bool, int64_t> variable(const Expr& e) const {
    const std::string& a = e.atom;
    if (a.size() < 3 || (a[0] != 'X' && a[0] != 'Y') || a[1] != '_') return {false, -1};
    if (a.size() > 12 || !std::all_of(a.begin() + 2, a.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return {false, -1};
    if (a.size() > 3 && a[2] == '0') r_.fail(e.line, "'" + a + "': a variable index has no leading zeros");
    const int64_t i = std::stoll(a.substr(2));
    if (i >= kMaxVariables) r_.fail(e.line, "variable index " + a + " is too large");
    return {a[0] == 'X', i};
  }

  bool number(const std::string& a, double& v) const {
    if (a.empty()) return false;
    const char c = a[0];
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.')) return false;
    char* end = nullptr;
    v = std::strtod(a.c_str(), &end);  // an underflow gives 0 or a subnormal, an overflow ±inf (rejected)
    return end == a.c_str() + a.size() && std::isfinite(v);
  }

  Linear linear(const Expr& e) const {
    Linear out;
    if (!e.is_list()) {
      double v;
      if (number(e.atom, v)) {
        out.constant = v;
        return out;
      }
      const auto [is_x, index] = variable(e);
      if (index < 0) r_.fail(e.line, "'" + e.atom + "' is neither a number nor a variable X_i / Y_j");
      if (index >= (is_x ? x_ : y_)) r_.fail(e.line, e.atom + " is used before it is declared");
      out.terms[is_x ? index : -1 - index] = 1.0;
      return out;
    }
    const std::string op = e.items[0].is_list() ? "" : e.items[0].atom;
    const size_t n = e.items.size() - 1;
    auto add = [](Linear& a, const Linear& b, double s) {
      for (const auto& [k, v] : b.terms) a.terms[k] += s * v;
      a.constant += s * b.constant;
    };
    if (op == "+" && n >= 1) {
      for (size_t i = 1; i <= n; ++i) add(out, linear(e.items[i]), 1.0);
      return out;
    }
    if (op == "-" && (n == 1 || n == 2)) {
      if (n == 1) {
        add(out, linear(e.items[1]), -1.0);
      } else {
        add(out, linear(e.items[1]), 1.0);
        add(out, linear(e.items[2]), -1.0);
      }
      return out;
    }
    if (op == "*" && n == 2) {
      const Linear a = linear(e.items[1]), b = linear(e.items[2]);
      const bool a_const = a.terms.empty(), b_const = b.terms.empty();
      if (!a_const && !b_const) r_.unsupported(e.line, "a product of two variables is not linear");
      add(out, a_const ? b : a, a_const ? a.constant : b.constant);
      return out;
    }
    r_.unsupported(e.line, "unsupported expression '(" + op + " ...)' (linear terms with +, -, * by a constant)");
  }

  Dnf formula(const Expr& e) const {
    if (!e.is_list() || e.items[0].is_list()) r_.fail(e.line, "expected a formula (<=, >=, and, or)");
    const std::string& op = e.items[0].atom;
    if (op == "<=" || op == ">=") {
      if (e.items.size() != 3) r_.fail(e.line, op + " takes two expressions");
      Linear a = linear(e.items[1]);
      const Linear b = linear(e.items[2]);
      const double s = op == "<=" ? 1.0 : -1.0;  // a ≤ b ⇔ a − b ≤ 0; a ≥ b ⇔ b − a ≤ 0
      Linear lhs;
      for (const auto& [k, v] : a.terms) lhs.terms[k] += s * v;
      for (const auto& [k, v] : b.terms) lhs.terms[k] -= s * v;
      lhs.constant = s * (a.constant - b.constant);
      for (auto it = lhs.terms.begin(); it != lhs.terms.end();) {  // terms that cancelled out are no terms
        if (!std::isfinite(it->second)) r_.fail(e.line, "a coefficient overflows to infinity or NaN");
        it = it->second == 0 ? lhs.terms.erase(it) : std::next(it);
      }
      if (!std::isfinite(lhs.constant)) r_.fail(e.line, "a constant overflows to infinity or NaN");
      return {{Atom{std::move(lhs), e.line}}};
    }
    if (op == "and") {
      Dnf out{{}};
      for (size_t i = 1; i < e.items.size(); ++i) out = conjoin(out, formula(e.items[i]), e.line);
      return out;
    }
    if (op == "or") {
      Dnf out;
      for (size_t i = 1; i < e.items.size(); ++i) {
        Dnf d = formula(e.items[i]);
        out.insert(out.end(), d.begin(), d.end());
        if (out.size() > kMaxCases)
          r_.fail(e.line, "the property has more than " + std::to_string(kMaxCases) + " cases");
      }
      if (out.empty()) r_.fail(e.line, "'or' needs at least one formula");
      return out;
    }
    r_.unsupported(e.line, "unsupported formula '(" + op + " ...)' (VNN-LIB properties use <=, >=, and, or)");
  }

  Dnf conjoin(const Dnf& a, const Dnf& b, int line) const {
    if (a.size() * b.size() > kMaxCases)
      r_.unsupported(
          line, "the property has more than " + std::to_string(kMaxCases) + " cases once its 'or's are multiplied out");
    size_t atoms = 0;  // every case holds its own copy of the shared constraints
    for (const auto& x : a) atoms += x.size() * b.size();
    for (const auto& y : b) atoms += y.size() * a.size();
    if (atoms > kMaxAtoms)
      r_.unsupported(line, "the property has more than " + std::to_string(kMaxAtoms) +
                               " constraints once its 'or's are multiplied out");
    Dnf out;
    for (const auto& x : a)
      for (const auto& y : b) {
        out.push_back(x);
        out.back().insert(out.back().end(), y.begin(), y.end());
      }
    return out;
  }

  VnnCase to_case(const std::vector<Atom>& atoms) const {
    VnnCase c;
    c.lower.assign(static_cast<size_t>(x_), -kInf);
    c.upper.assign(static_cast<size_t>(x_), kInf);
    for (const Atom& a : atoms) {
      bool has_x = false, has_y = false;
      for (const auto& [k, v] : a.lhs.terms)
        if (v != 0) (k >= 0 ? has_x : has_y) = true;
      if (has_x && has_y) r_.unsupported(a.line, "a constraint that mixes inputs X and outputs Y is not supported");
      if (!has_x && !has_y) {
        if (a.lhs.constant > 0)
          c.outputs.push_back({std::vector<double>(static_cast<size_t>(y_), 0.0), -1.0});  // 0 ≤ −1: never
        continue;  // a constant that always holds
      }
      if (has_x) {
        int64_t var = -1;
        double coef = 0;
        for (const auto& [k, v] : a.lhs.terms)
          if (v != 0) {
            if (var >= 0) r_.unsupported(a.line, "input constraints must bound one variable X_i by a constant");
            var = k, coef = v;
          }
        const double limit = -a.lhs.constant / coef;  // coef·X + constant ≤ 0
        if (coef > 0)
          c.upper[static_cast<size_t>(var)] = std::min(c.upper[static_cast<size_t>(var)], limit);
        else
          c.lower[static_cast<size_t>(var)] = std::max(c.lower[static_cast<size_t>(var)], limit);
        continue;
      }
      OutputConstraint oc;
      oc.coef.assign(static_cast<size_t>(y_), 0.0);
      for (const auto& [k, v] : a.lhs.terms)
        if (k < 0) oc.coef[static_cast<size_t>(-1 - k)] = v;  // (only Y terms are left here)
      oc.bound = -a.lhs.constant;
      c.outputs.push_back(std::move(oc));
    }
    for (int64_t i = 0; i < x_; ++i)
      if (!std::isfinite(c.lower[static_cast<size_t>(i)]) || !std::isfinite(c.upper[static_cast<size_t>(i)]))
        throw UnsupportedModel(r_.source() + ": X_" + std::to_string(i) + " has no " +
                               (std::isfinite(c.lower[static_cast<size_t>(i)]) ? "upper" : "lower") +
                               " bound (every input needs a box)");
    return c;
  }

  Reader r_;
  int64_t x_ = 0, y_ = 0;
  std::vector<char> x_declared_, y_declared_;
};

}  // namespace

VnnProperty parse_vnnlib(const std::string& text, const std::string& source) {
  return Parser(text, source).run();
}

VnnProperty load_vnnlib(const std::string& path) {
  return parse_vnnlib(detail::read_whole_file(path, "the property file", size_t{1} << 31), path);
}

const char* vnn_answer_name(VnnAnswer a) {
  switch (a) {
    case VnnAnswer::Unsat: return "unsat";
    case VnnAnswer::Sat: return "sat";
    case VnnAnswer::Unknown: return "unknown";
    case VnnAnswer::Timeout: return "timeout";
  }
  return "unknown";
}

namespace {

/// The centre and radius of [lo, hi] per input, the radius widened by a few ulps so that
/// centre ± radius covers the box despite the rounding of both.
void centre_radius(const std::vector<double>& lo, const std::vector<double>& hi, std::vector<double>& centre,
                   std::vector<double>& radius) {
  centre.resize(lo.size()), radius.resize(lo.size());
  for (size_t i = 0; i < lo.size(); ++i) {
    centre[i] = lo[i] + (hi[i] - lo[i]) / 2;
    const double scale = std::max({std::fabs(lo[i]), std::fabs(hi[i]), std::numeric_limits<double>::min()});
    radius[i] = (hi[i] - lo[i]) / 2 + 4 * std::numeric_limits<double>::epsilon() * scale;
  }
}

/// A constraint Σ coef·Y ≤ bound is proven impossible when the certified lower bound of Σ coef·Y
/// exceeds `bound` by more than the engines' unrounded arithmetic could account for.
bool proven_violated(double lower, double bound) {
  return lower > bound + 1e-9 * (1 + std::fabs(bound));
}

/// Whether outputs y satisfy every output constraint of case c.
template <class T>
bool satisfies(const VnnCase& c, const std::vector<T>& y) {
  for (T v : y)
    if (!std::isfinite(v)) return false;
  for (const auto& oc : c.outputs) {
    double s = 0;
    for (size_t j = 0; j < y.size(); ++j) s += oc.coef[j] * static_cast<double>(y[j]);
    if (!(s <= oc.bound)) return false;
  }
  return true;
}

/// Does x (inside the case's box) satisfy every output constraint of the case, by the forward pass
/// in double, and also in float32 (a checker that runs the ONNX model in float32, as VNN-COMP's
/// does, must see the same counterexample)?
bool is_counterexample(const Network& net, const VnnCase& c, const std::vector<double>& x, std::vector<double>& y) {
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] >= c.lower[i] && x[i] <= c.upper[i])) return false;
  y = net.forward(x.data(), 1);
  if (!satisfies(c, y)) return false;
  const std::vector<float> xf(x.begin(), x.end());  // (its rounding may leave the box by an ulp: checkers allow that)
  return satisfies(c, net.forward(xf.data(), 1));
}

/// Projected sign-gradient descent, inside the case's box, on the most violated of its output
/// constraints (max_k coef_k·y − bound_k, a counterexample when ≤ 0 for all k): the cases that are
/// not one margin (which pgd_attack handles). Restarts at the centre, then at random points; the
/// step (a fraction of each input's half-width) halves at 1/2 and 3/4 of the steps. Found: `x` and
/// `y` re-check as a counterexample (is_counterexample); TimedOut: the time limit came first.
enum class PgdOutcome { Found, NotFound, TimedOut };
template <class Clock>
PgdOutcome pgd_case(const Network& net, const VnnCase& c, uint64_t seed, const Clock& out_of_time,
                    std::vector<double>& x_out, std::vector<double>& y_out) {
  constexpr int kSteps = 60, kRestarts = 4;
  const size_t n = c.lower.size();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  std::vector<double> x(n);
  for (int restart = 0; restart < kRestarts; ++restart) {
    for (size_t i = 0; i < n; ++i)
      x[i] = restart == 0 ? (c.lower[i] + c.upper[i]) / 2 : c.lower[i] + unit(rng) * (c.upper[i] - c.lower[i]);
    for (int step = 0; step <= kSteps; ++step) {
      if (out_of_time()) return PgdOutcome::TimedOut;
      const std::vector<double> y = net.forward(x.data(), 1);
      double worst = -std::numeric_limits<double>::infinity();
      const OutputConstraint* active = nullptr;
      for (const auto& oc : c.outputs) {
        double v = -oc.bound;
        for (size_t j = 0; j < y.size(); ++j) v += oc.coef[j] * y[j];
        if (!(v <= worst)) worst = v, active = &oc;
      }
      if (!std::isfinite(worst)) break;
      std::vector<double> checked;
      if (worst <= 0 && is_counterexample(net, c, x, checked)) {
        x_out = x, y_out = checked;
        return PgdOutcome::Found;
      }
      if (step == kSteps) break;
      const std::vector<double> g = net.input_gradient(x.data(), active->coef.data());  // d(coef·y)/dx
      const double frac = step < kSteps / 2 ? 0.25 : step < 3 * kSteps / 4 ? 0.125 : 0.0625;
      for (size_t i = 0; i < n; ++i) {
        const double half = (c.upper[i] - c.lower[i]) / 2;
        const double d = g[i] > 0 ? -1 : g[i] < 0 ? 1 : 0;  // down the violation
        x[i] = std::clamp(x[i] + d * frac * half, c.lower[i], c.upper[i]);
      }
    }
  }
  return PgdOutcome::NotFound;
}

}  // namespace

namespace {

struct SplitOutcome {
  bool refuted = false, sat = false, timeout = false;
  std::vector<double> x, y;
};

/// Branch and bound on the inputs of one case: depth first over pieces of its box, each bounded
/// on its own (as the unit ball of the network with the piece's affine input layer); a piece is
/// done when one constraint is proven violated on it, else its centre is tried as a counterexample
/// and it is bisected on the input whose coefficient in the open constraints' lower bounds is the
/// largest (in the piece's unit coordinates: the input that moves those bounds most).
template <class Clock>
SplitOutcome split_case(const Network& net, const VnnCase& c, const VnnOptions& o, const EngineOptions& eo,
                        const Clock& out_of_time, int64_t& boxes) {
  SplitOutcome out;
  const int64_t n = net.input_size(), rows = static_cast<int64_t>(c.outputs.size());
  struct Piece {
    std::vector<double> lo, hi;
  };
  std::vector<Piece> stack{{c.lower, c.upper}};
  BoundOptions bo = o.bound;
  bo.norm = Norm::Linf, bo.clip_to_box = false, bo.want_upper = false, bo.want_linear = true;
  BoundProblem bp;
  bp.x0.assign(static_cast<size_t>(n), 0.0);
  bp.eps = 1.0;
  bp.rows = rows;
  for (const auto& oc : c.outputs) bp.spec.insert(bp.spec.end(), oc.coef.begin(), oc.coef.end());
  int64_t used = 0;
  while (!stack.empty()) {
    if (out_of_time()) {
      out.timeout = true;
      return out;
    }
    if (used++ >= o.max_boxes) return out;  // left open: unknown
    ++boxes;
    Piece piece = std::move(stack.back());
    stack.pop_back();
    std::vector<double> centre, radius;
    centre_radius(piece.lo, piece.hi, centre, radius);
    if (o.attack && is_counterexample(net, c, centre, out.y)) {
      out.sat = true, out.x = centre;
      return out;
    }
    const BoundResult r = make_engine(with_input_affine(net, radius, centre), eo)->bound({bp}, bo)[0];
    if (!r.error.empty() || r.a_lower.size() != static_cast<size_t>(rows * n))
      return out;  // not bounded reliably: open
    std::vector<int64_t> open_rows;
    for (int64_t k = 0; k < rows; ++k)
      if (!proven_violated(r.lower[static_cast<size_t>(k)], c.outputs[static_cast<size_t>(k)].bound))
        open_rows.push_back(k);
    if (open_rows.size() < c.outputs.size()) continue;  // some constraint is impossible on this piece
    int64_t best = -1;
    double best_score = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (!(radius[static_cast<size_t>(i)] > 0)) continue;
      double score = 0;
      for (int64_t k : open_rows) score += std::fabs(r.a_lower[static_cast<size_t>(k * n + i)]);
      if (score > best_score) best_score = score, best = i;
    }
    if (best < 0) return out;  // a point that the bounds cannot decide: open
    Piece upper = piece;
    const auto b = static_cast<size_t>(best);
    piece.hi[b] = upper.lo[b] = centre[b];
    stack.push_back(std::move(upper));
    stack.push_back(std::move(piece));
  }
  out.refuted = true;
  return out;
}

/// The time since a verification started, against its timeout (none when not positive).
class Stopwatch {
 public:
  explicit Stopwatch(double timeout_seconds) : timeout_(timeout_seconds) {}
  double elapsed() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }
  bool out_of_time() const { return timeout_ > 0 && elapsed() > timeout_; }

 private:
  using clock = std::chrono::steady_clock;
  clock::time_point t0_ = clock::now();
  double timeout_;
};

/// Whether constraint oc holds of the logits exactly when it holds of the outputs of the final
/// normalization `stripped`: for LogSoftmax (y − logsumexp y) when its coefficients sum to 0, for
/// Softmax (monotone in every difference) when it compares two outputs, Y_i ≤ Y_j.
bool invariant_under(const std::string& stripped, const OutputConstraint& oc) {
  double sum = 0;
  int plus = 0, minus = 0, other = 0;
  for (double v : oc.coef) {
    sum += v;
    if (v == 1)
      ++plus;
    else if (v == -1)
      ++minus;
    else if (v != 0)
      ++other;
  }
  return stripped == "LogSoftmax" ? sum == 0 : plus == 1 && minus == 1 && other == 0 && oc.bound == 0;
}

/// Throws unless the property's variables match the model's inputs and outputs, the model can be
/// bounded, and every constraint survives the importer's stripping of a final Softmax/LogSoftmax
/// (the engines bound logits).
void check_property_fits(const Network& net, const VnnProperty& p) {
  CNNCERT_CHECK(p.inputs == net.input_size(),
                "the property declares " << p.inputs << " inputs X_i, the model has " << net.input_size());
  CNNCERT_CHECK(p.outputs == net.output_size(),
                "the property declares " << p.outputs << " outputs Y_j, the model has " << net.output_size());
  check_boundable(net);
  if (!net.stripped_output().empty())
    for (const auto& c : p.cases)
      for (const auto& oc : c.outputs)
        if (!invariant_under(net.stripped_output(), oc))
          throw UnsupportedModel(
              "the model ends in " + net.stripped_output() +
              ", which cnncert strips to bound the logits, and a constraint of the property depends on it");
}

/// Sets `res` to Timeout; true (the answer is decided).
bool timed_out(VnnResult& res) {
  res.answer = VnnAnswer::Timeout;
  res.note =
      "the time limit passed with " + std::to_string(res.cases_refuted) + " case(s) refuted and no counterexample";
  return true;
}

/// The cases from ci on, not done yet, with the box of case ci (the cases of a robustness
/// property: one per other class); marks them done.
std::vector<size_t> take_same_box(const VnnProperty& p, size_t ci, std::vector<char>& done) {
  const VnnCase& c = p.cases[ci];
  std::vector<size_t> group;
  for (size_t cj = ci; cj < p.cases.size(); ++cj)
    if (!done[cj] && p.cases[cj].lower == c.lower && p.cases[cj].upper == c.upper) group.push_back(cj), done[cj] = 1;
  return group;
}

/// Whether no input satisfies the case's box (a lower bound above its upper one).
bool is_empty_box(const VnnCase& c, int64_t n) {
  bool empty_box = false;
  for (int64_t i = 0; i < n; ++i)
    empty_box = empty_box || c.lower[static_cast<size_t>(i)] > c.upper[static_cast<size_t>(i)];
  return empty_box;
}

/// The cases' input boxes: each must be bounded, with a width that is a finite number (the box
/// becomes a centre and a radius); a case whose box holds no input is vacuous (refute_by_box
/// refutes it), but a property all of whose boxes are empty has nothing to verify: almost surely
/// a mistake in it, not a proof.
void check_boxes(const Network& net, const VnnProperty& p) {
  const auto n = static_cast<size_t>(net.input_size());
  bool all_empty = !p.cases.empty();
  for (size_t ci = 0; ci < p.cases.size(); ++ci) {
    const VnnCase& c = p.cases[ci];
    if (is_empty_box(c, net.input_size())) continue;
    all_empty = false;
    for (size_t i = 0; i < n; ++i)
      CNNCERT_CHECK(std::isfinite(c.upper[i] - c.lower[i]),
                    "case " << ci << ": X_" << i << " lies in [" << c.lower[i] << ", " << c.upper[i]
                            << "], whose width is not a finite number (the input box must be bounded)");
  }
  if (!all_empty) return;
  const VnnCase& c = p.cases[0];
  size_t i = 0;
  while (!(c.lower[i] > c.upper[i])) ++i;
  throw InvalidArgument("the property's input box is empty in every case (X_" + std::to_string(i) + " >= " +
                        std::to_string(c.lower[i]) + " and <= " + std::to_string(c.upper[i]) + "): no input to verify");
}

/// Sets `res` to Sat when the box's centre is a counterexample of one of the group's cases.
bool centre_is_counterexample(const Network& net, const VnnProperty& p, const std::vector<size_t>& group,
                              const std::vector<double>& centre, VnnResult& res) {
  std::vector<double> y;
  for (size_t cj : group)
    if (is_counterexample(net, p.cases[cj], centre, y)) {
      res.answer = VnnAnswer::Sat, res.x = centre, res.y = y;
      res.note = "the centre of case " + std::to_string(cj) + " is a counterexample";
      return true;
    }
  return false;
}

/// Bounds the constraints of a group of cases with one box in one engine call (the box as the
/// unit ℓ∞ ball of x ↦ net(centre + radius ⊙ x)) and closes the cases that the bounds refute.
void refute_group(const Network& net, const VnnProperty& p, const std::vector<size_t>& group,
                  const std::vector<double>& centre, const std::vector<double>& radius, const VnnOptions& o,
                  const EngineOptions& eo, std::vector<char>& open, VnnResult& res) {
  const Network boxed = with_input_affine(net, radius, centre);
  BoundProblem bp;
  bp.x0.assign(static_cast<size_t>(net.input_size()), 0.0);
  bp.eps = 1.0;
  for (size_t cj : group)
    for (const auto& oc : p.cases[cj].outputs) bp.spec.insert(bp.spec.end(), oc.coef.begin(), oc.coef.end()), ++bp.rows;
  if (bp.rows == 0) return;  // cases without output constraints: every input is a counterexample
  auto engine = make_engine(boxed, eo);
  BoundOptions bo = o.bound;
  bo.norm = Norm::Linf, bo.clip_to_box = false, bo.want_upper = false;
  const BoundResult r = engine->bound({bp}, bo)[0];
  size_t row = 0;
  for (size_t cj : group) {
    bool refuted = false;
    for (const auto& oc : p.cases[cj].outputs) {
      // Σ coef·Y > bound on the whole box: this constraint, and so the case, cannot hold.
      refuted = refuted || (r.error.empty() && proven_violated(r.lower[row], oc.bound));
      ++row;
    }
    if (refuted) open[cj] = 0, ++res.cases_refuted;
  }
}

/// The bounds over each case's box, the cases with the same box together: closes the refuted
/// cases; true when `res` holds the answer (a box centre that is a counterexample, or the timeout).
bool refute_by_box(const Network& net, const VnnProperty& p, const VnnOptions& o, const EngineOptions& eo,
                   const Stopwatch& sw, std::vector<char>& open, VnnResult& res) {
  std::vector<char> done(p.cases.size(), 0);
  for (size_t ci = 0; ci < p.cases.size(); ++ci) {
    if (done[ci]) continue;
    const VnnCase& c = p.cases[ci];
    const std::vector<size_t> group = take_same_box(p, ci, done);
    const bool empty_box = is_empty_box(c, net.input_size());
    std::vector<double> centre, radius;
    centre_radius(c.lower, c.upper, centre, radius);
    if (empty_box) {  // no input satisfies these cases' box
      for (size_t cj : group) open[cj] = 0, ++res.cases_refuted;
      continue;
    }
    if (o.attack && centre_is_counterexample(net, p, group, centre, res)) return true;
    if (sw.out_of_time()) return timed_out(res);
    refute_group(net, p, group, centre, radius, o, eo, open, res);
    if (sw.out_of_time()) return timed_out(res);
  }
  return false;
}

/// Input splitting for small inputs: refutes each open case piece by piece (split_case); true when
/// `res` holds the answer (a counterexample at a piece's centre, or the timeout).
bool refute_by_splitting(const Network& net, const VnnProperty& p, const VnnOptions& o, const EngineOptions& eo,
                         const Stopwatch& sw, std::vector<char>& open, VnnResult& res) {
  if (!(o.split_max_inputs > 0 && net.input_size() <= o.split_max_inputs)) return false;
  const auto out_of_time = [&sw] { return sw.out_of_time(); };
  for (size_t ci = 0; ci < p.cases.size(); ++ci) {
    if (!open[ci] || p.cases[ci].outputs.empty()) continue;
    const SplitOutcome s = split_case(net, p.cases[ci], o, eo, out_of_time, res.boxes);
    if (s.sat) {
      res.answer = VnnAnswer::Sat, res.x = s.x, res.y = s.y;
      res.note = "a counterexample of case " + std::to_string(ci) + " at the centre of an input piece";
      return true;
    }
    if (s.timeout) return timed_out(res);
    if (s.refuted) open[ci] = 0, ++res.cases_refuted;
  }
  return false;
}

/// Sets `res` to Unsat when no case is left open.
bool all_refuted(const std::vector<char>& open, const VnnOptions& o, VnnResult& res) {
  if (!std::none_of(open.begin(), open.end(), [](char v) { return v != 0; })) return false;
  res.answer = VnnAnswer::Unsat;
  res.note = "every case has an output constraint proven impossible (" + std::string(o.bound.method.name) +
             (res.boxes ? ", inputs split into " + std::to_string(res.boxes) + " pieces)" : ")");
  return true;
}

/// Whether the case is one margin Y_pc − Y_pt ≤ 0 (coef = e_pc − e_pt, bound 0: the form of
/// robustness properties), with its classes in pc and pt.
bool margin_classes(const VnnCase& c, int64_t classes, int64_t& pc, int64_t& pt) {
  const auto& coef = c.outputs[0].coef;
  pc = -1, pt = -1;
  bool margin = c.outputs.size() == 1 && c.outputs[0].bound == 0;
  for (int64_t j = 0; j < classes && margin; ++j) {
    const double v = coef[static_cast<size_t>(j)];
    if (v == 1 && pc < 0)
      pc = j;
    else if (v == -1 && pt < 0)
      pt = j;
    else if (v != 0)
      margin = false;
  }
  return margin && pc >= 0 && pt >= 0;
}

/// pgd_attack on the margin Y_pt − Y_pc inside the case's box; true with x a counterexample and y
/// its outputs, re-checked on the original network in double.
bool margin_attack(const Network& net, const VnnCase& c, int64_t pc, int64_t pt, const VnnOptions& o,
                   std::vector<double>& x, std::vector<double>& y) {
  const int64_t n = net.input_size();
  std::vector<double> centre, radius;
  centre_radius(c.lower, c.upper, centre, radius);
  const Network boxed = with_input_affine(net, radius, centre);
  AttackOptions ao;
  ao.seed = o.seed;
  ao.clip_to_box = true, ao.box_lo = -1, ao.box_hi = 1;
  ao.pgd_eps_max = 1;
  ao.pgd_bisection_steps = 0;
  ao.refine_segment = false;
  const AttackResult a = pgd_attack(boxed, std::vector<double>(static_cast<size_t>(n), 0.0), pc, pt, Norm::Linf, ao);
  if (!a.found) return false;
  x.assign(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {  // back to the network's input, kept inside the box
    const double v = centre[static_cast<size_t>(i)] +
                     radius[static_cast<size_t>(i)] * std::clamp(a.x[static_cast<size_t>(i)], -1.0, 1.0);
    x[static_cast<size_t>(i)] = std::clamp(v, c.lower[static_cast<size_t>(i)], c.upper[static_cast<size_t>(i)]);
  }
  return is_counterexample(net, c, x, y);
}

/// Counterexamples by PGD inside the box of each open case: pgd_attack for one margin
/// Y_t − Y_c ≥ 0, pgd_case for any other constraints; true when `res` holds the answer (Sat, or
/// the timeout).
bool attack_open_cases(const Network& net, const VnnProperty& p, const VnnOptions& o, const Stopwatch& sw,
                       const std::vector<char>& open, VnnResult& res) {
  if (!o.attack) return false;
  const auto out_of_time = [&sw] { return sw.out_of_time(); };
  for (size_t ci = 0; ci < p.cases.size(); ++ci) {
    if (!open[ci]) continue;
    const VnnCase& c = p.cases[ci];
    if (c.outputs.empty()) continue;  // (its centre was tried: any point is a counterexample)
    int64_t pc = -1, pt = -1;
    const bool margin = margin_classes(c, net.output_size(), pc, pt);
    if (sw.out_of_time()) return timed_out(res);
    if (!margin) {  // any other conjunction of linear constraints
      const PgdOutcome pgd = pgd_case(net, c, o.seed + ci, out_of_time, res.x, res.y);
      if (pgd == PgdOutcome::Found) {
        res.answer = VnnAnswer::Sat;
        res.note = "PGD on the constraints found a counterexample for case " + std::to_string(ci);
        return true;
      }
      if (pgd == PgdOutcome::TimedOut) return timed_out(res);
      continue;
    }
    std::vector<double> x, y;
    if (margin_attack(net, c, pc, pt, o, x, y)) {
      res.answer = VnnAnswer::Sat, res.x = x, res.y = y;
      res.note = "PGD found a counterexample for case " + std::to_string(ci);
      return true;
    }
  }
  return false;
}

}  // namespace

VnnResult verify_vnnlib(const Network& net, const VnnProperty& p, const VnnOptions& o, const EngineOptions& eo) {
  const Stopwatch sw(o.timeout_seconds);
  check_property_fits(net, p);
  check_boxes(net, p);
  VnnResult res;
  std::vector<char> open(p.cases.size(), 1);  // not refuted yet
  const bool decided = refute_by_box(net, p, o, eo, sw, open, res) ||
                       refute_by_splitting(net, p, o, eo, sw, open, res) || all_refuted(open, o, res) ||
                       attack_open_cases(net, p, o, sw, open, res);
  if (!decided) {
    res.answer = VnnAnswer::Unknown;
    res.note = std::to_string(res.cases_refuted) + " of " + std::to_string(p.cases.size()) +
               " cases refuted by the bounds; no counterexample found";
  }
  res.seconds = sw.elapsed();
  return res;
}

}  // namespace cnncert
