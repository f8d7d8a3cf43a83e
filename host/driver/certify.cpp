// Certification driver: predictions, targets, and the batched certified-radius search.
#include "cnncert/certify.hpp"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "cnncert/baselines.hpp"
#include "cnncert/error.hpp"
#include "util/splitmix.hpp"

namespace cnncert {

TargetMode parse_target_mode(const std::string& s) {
  if (s == "random") return TargetMode::Random;
  if (s == "runnerup" || s == "top2") return TargetMode::Runnerup;
  if (s == "least") return TargetMode::Least;
  if (s == "all") return TargetMode::All;
  if (s == "untargeted") return TargetMode::Untargeted;
  throw InvalidArgument("unknown target '" + s + "' (use random, runnerup, least, all or untargeted)");
}

const char* target_mode_name(TargetMode m) {
  switch (m) {
    case TargetMode::Random: return "random";
    case TargetMode::Runnerup: return "runnerup";
    case TargetMode::Least: return "least";
    case TargetMode::All: return "all";
    case TargetMode::Untargeted: return "untargeted";
  }
  return "?";
}

SearchMode parse_search_mode(const std::string& s) {
  if (s == "cnncert") return SearchMode::CnnCert;
  if (s == "deepcert") return SearchMode::DeepCert;
  throw InvalidArgument("unknown search '" + s + "' (use cnncert or deepcert)");
}

std::vector<double> margin_spec(int64_t classes, int64_t predicted, const std::vector<int64_t>& targets) {
  // rows × classes values: checked (a crafted model may have millions of outputs)
  const int64_t n = checked_mul(static_cast<int64_t>(targets.size()), classes, "the margin specification");
  std::vector<double> spec(static_cast<size_t>(n), 0.0);
  for (size_t r = 0; r < targets.size(); ++r) {
    spec[r * static_cast<size_t>(classes) + static_cast<size_t>(predicted)] += 1.0;
    spec[r * static_cast<size_t>(classes) + static_cast<size_t>(targets[r])] -= 1.0;
  }
  return spec;
}

std::vector<BoundProblem> prediction_problems(const Network& net, const std::vector<double>& inputs, double eps,
                                              bool logits, std::vector<int64_t>& predicted) {
  const int64_t n_in = net.input_size(), classes = net.output_size();
  CNNCERT_CHECK(n_in > 0 && inputs.size() % static_cast<size_t>(n_in) == 0,
                "the inputs do not match the network input size");
  const auto count = static_cast<int64_t>(inputs.size()) / n_in;
  const std::vector<double> out = net.forward(inputs.data(), count);
  std::vector<BoundProblem> problems;
  predicted.clear();
  for (int64_t i = 0; i < count; ++i) {
    BoundProblem p;
    p.x0.assign(inputs.begin() + i * n_in, inputs.begin() + (i + 1) * n_in);
    p.eps = eps;
    const double* l = out.data() + i * classes;
    const int64_t c = std::max_element(l, l + classes) - l;
    predicted.push_back(c);
    if (logits) {
      p.rows = classes;
      p.spec.assign(static_cast<size_t>(checked_mul(classes, classes, "the logit rows")), 0.0);
      for (int64_t k = 0; k < classes; ++k) p.spec[static_cast<size_t>(k * classes + k)] = 1.0;
    } else {
      std::vector<int64_t> t;
      for (int64_t k = 0; k < classes; ++k)
        if (k != c) t.push_back(k);
      p.rows = classes - 1;
      p.spec = margin_spec(classes, c, t);
    }
    problems.push_back(std::move(p));
  }
  return problems;
}

namespace {

using detail::splitmix64;

/// One radius search: an image and its specification rows.
struct Item {
  size_t image;  // index into the results
  size_t target_slot;
  std::vector<double> spec;
  int64_t rows;
  // search state
  double lambda = 0, lambda_min = -INFINITY, lambda_max = INFINITY;  // cnncert
  double eps = 0, eps_min = 0, eps_max = INFINITY;                   // deepcert
  int steps = 0;
  bool done = false;
  double certified = 0;
  bool any_certified = false;
  std::string note;
  /// The intermediate bounds of the latest step that failed: every later step's radius is smaller
  /// (both searches only go below a failed radius), so they hold there too (BoundProblem::outer).
  std::shared_ptr<const OuterBounds> outer;
  // counterexamples (CertifyOptions::attack_moves)
  double adv_dist = INFINITY;  // ‖adv_x − x0‖: the nearest counterexample found
  std::vector<double> adv_x;
  double attack_floor = 0;  // an attack failed at this radius: none at radii ≤ it
  int attack_failures = 0;
  int steps_by_attack = 0;
};

/// Bytes of outer bounds the items keep; beyond it, further items keep none. A search whose steps'
/// intermediate bounds (all items at once) would exceed it asks for none. (While a step's batch
/// is alive, the bounds an item replaced live on in its problem: up to twice this.)
constexpr double kOuterBoundsBudget = 2048.0 * 1024 * 1024;

/// An item stops looking for counterexamples after this many attacks that found none (each costs
/// CertifyOptions::attack_moves + 1 point evaluations; one that finds a point decides a step).
constexpr int kAttackFailures = 2;

double current_eps(const Item& it, SearchMode m) {
  return m == SearchMode::CnnCert ? std::exp(it.lambda) : it.eps;
}

void step(Item& it, bool ok, const CertifyOptions& o) {
  ++it.steps;
  if (o.search == SearchMode::CnnCert) {
    if (ok) {
      it.lambda_min = it.lambda;
      it.lambda = std::min(it.lambda + 1, (it.lambda_max + it.lambda_min) / 2);
    } else {
      it.lambda_max = it.lambda;
      it.lambda = std::max(it.lambda - 1, (it.lambda_max + it.lambda_min) / 2);
    }
    if (it.steps >= o.cnncert_steps) it.done = true;
    return;
  }
  if (ok) {
    it.eps_min = it.eps;
    it.eps = std::min(2 * it.eps, (it.eps_max + it.eps_min) / 2);
  } else {
    it.eps_max = it.eps;
    it.eps = std::max(it.eps / 2, (it.eps_max + it.eps_min) / 2);
  }
  if (it.eps - it.eps_min < o.deepcert_tolerance) it.done = true;
  if (it.steps >= o.deepcert_max_steps) {
    it.done = true;
    it.note = "search stopped after " + std::to_string(it.steps) + " steps";
  }
}

double bytes_of(const OuterBounds& ob) {
  double b = static_cast<double>(ob.x0.size()) * sizeof(double);
  for (const NodeBounds& nb : ob.nodes) b += static_cast<double>(nb.lower.size() + nb.upper.size()) * sizeof(double);
  return b;
}

/// Keeps the bounds of a failed step for the item's later steps, within kOuterBoundsBudget.
void keep_outer_bounds(Item& it, const BoundProblem& p, const BoundOptions& bo, std::vector<NodeBounds>&& nodes,
                       double& total_bytes) {
  auto ob = std::make_shared<OuterBounds>();
  ob->x0 = p.x0, ob->eps = p.eps, ob->norm = bo.norm;
  ob->clip_to_box = bo.clip_to_box, ob->box_lo = bo.box_lo, ob->box_hi = bo.box_hi;
  ob->nodes = std::move(nodes);
  const double old_bytes = it.outer ? bytes_of(*it.outer) : 0, new_bytes = bytes_of(*ob);
  if (total_bytes - old_bytes + new_bytes > kOuterBoundsBudget) return;  // keep what it has
  total_bytes += new_bytes - old_bytes;
  it.outer = std::move(ob);
}

/// The smallest of an item's margins (spec rows · logits y) and its row; NaN (row −1) when a
/// margin is not finite.
double smallest_margin(const Item& it, const std::vector<double>& y, int64_t* row = nullptr) {
  const size_t classes = y.size();
  double m = INFINITY;
  int64_t best = -1;
  for (int64_t r = 0; r < it.rows; ++r) {
    double v = 0;
    for (size_t c = 0; c < classes; ++c) v += it.spec[static_cast<size_t>(r) * classes + c] * y[c];
    if (!std::isfinite(v)) {
      best = -1, m = NAN;
      break;
    }
    if (best < 0 || v < m) best = r, m = v;
  }
  if (row) *row = best;
  return m;
}

/// Each point's smallest margin and that margin's gradient (empty when there is none). Through
/// the engine: a problem of radius 0 at the point, whose linear lower bound of a margin is the
/// margin's linearization there (its coefficients the gradient, to the engine's precision); those
/// values only guide the attack, a counterexample is then checked by the network's forward pass.
/// Otherwise the network's double forward and backward passes, whose values are exact.
void evaluate_points(const Network& net, BoundEngine& engine, bool via_engine, const BoundOptions& bo,
                     const std::vector<Item*>& items, const std::vector<std::vector<double>>& points,
                     std::vector<double>& value, std::vector<std::vector<double>>& gradient) {
  const int64_t n_in = net.input_size(), classes = net.output_size();
  value.assign(points.size(), INFINITY);
  gradient.assign(points.size(), {});
  if (via_engine) {
    std::vector<BoundProblem> problems(points.size());
    for (size_t k = 0; k < points.size(); ++k) {
      problems[k].x0 = points[k], problems[k].eps = 0;
      problems[k].spec = items[k]->spec, problems[k].rows = items[k]->rows;
    }
    BoundOptions po = bo;
    po.want_linear = true, po.want_intermediate = false, po.want_upper = false, po.layer_progress = nullptr;
    const std::vector<BoundResult> res = engine.bound(problems, po);
    for (size_t k = 0; k < points.size(); ++k) {
      const BoundResult& r = res[k];
      const auto rows = static_cast<size_t>(items[k]->rows);
      if (!r.error.empty() || r.lower.size() != rows || r.a_lower.size() != rows * static_cast<size_t>(n_in)) continue;
      const size_t best = static_cast<size_t>(std::min_element(r.lower.begin(), r.lower.end()) - r.lower.begin());
      value[k] = r.lower[best];
      gradient[k].assign(r.a_lower.begin() + static_cast<long>(best) * n_in,
                         r.a_lower.begin() + static_cast<long>(best + 1) * n_in);
    }
    return;
  }
  for (size_t k = 0; k < points.size(); ++k) {
    int64_t best = -1;
    const double m = smallest_margin(*items[k], net.forward(points[k].data(), 1), &best);
    if (best < 0) continue;
    value[k] = m;
    gradient[k] = net.input_gradient(points[k].data(), items[k]->spec.data() + best * classes);
  }
}

/// Looks for a counterexample in each item's ball of radius eps[k] (see CertifyOptions::attack_moves):
/// PGD from the centre, or from the item's latest counterexample pulled into the ball, all items
/// moving together (one evaluation of all their points per move). Records the points found
/// (adv_x, adv_dist); an item without one raises its attack_floor to eps[k] and counts the failure.
void attack_items(const Network& net, BoundEngine& engine, bool via_engine, const BoundOptions& bo,
                  const CertifyOptions& o, const std::vector<double>& inputs, const std::vector<Item*>& items,
                  const std::vector<double>& eps) {
  const int64_t n_in = net.input_size();
  const int moves = o.attack_moves;
  AttackOptions ao;
  ao.clip_to_box = bo.clip_to_box, ao.box_lo = bo.box_lo, ao.box_hi = bo.box_hi;
  // Points stay in a ball slightly smaller than the step's, so that the distance of a point found,
  // computed with rounding and rounded up, does not come out above the step's radius.
  std::vector<double> radius(items.size());
  std::vector<std::vector<double>> x0(items.size()), x(items.size());
  for (size_t k = 0; k < items.size(); ++k) {
    const Item& it = *items[k];
    radius[k] = eps[k] * (1 - 1e-9);
    x0[k].assign(inputs.begin() + static_cast<long>(it.image) * n_in,
                 inputs.begin() + static_cast<long>(it.image + 1) * n_in);
    x[k] = x0[k];
    if (!it.adv_x.empty() && it.adv_dist > 0) {  // a counterexample farther out: pull it in
      const double t = radius[k] / it.adv_dist;
      for (int64_t i = 0; i < n_in; ++i)
        x[k][static_cast<size_t>(i)] += t * (it.adv_x[static_cast<size_t>(i)] - x0[k][static_cast<size_t>(i)]);
      project_to_ball(x[k], x0[k], radius[k], bo.norm, ao);
    }
  }
  std::vector<size_t> live(items.size());
  for (size_t k = 0; k < live.size(); ++k) live[k] = k;
  std::vector<bool> found(items.size(), false);
  for (int step = 0; step <= moves && !live.empty(); ++step) {
    std::vector<Item*> its;
    std::vector<std::vector<double>> pts;
    for (const size_t k : live) its.push_back(items[k]), pts.push_back(x[k]);
    std::vector<double> value;
    std::vector<std::vector<double>> grad;
    evaluate_points(net, engine, via_engine, bo, its, pts, value, grad);
    std::vector<size_t> still;
    for (size_t j = 0; j < live.size(); ++j) {
      const size_t k = live[j];
      Item& it = *items[k];
      // a candidate of the engine's is checked by the network's own forward pass (its values are exact)
      if (value[j] <= 0 && (!via_engine || smallest_margin(it, net.forward(x[k].data(), 1)) <= 0)) {
        // the distance rounded up (its sum of n terms may round below the exact one by n ulps), so
        // that a step decided by it holds the point for sure
        const double d = lp_distance(x[k], x0[k], bo.norm) * (1 + static_cast<double>(n_in + 4) * DBL_EPSILON);
        if (d < it.adv_dist) it.adv_dist = d, it.adv_x = x[k];
        found[k] = true;
        continue;
      }
      if (grad[j].empty() || step == moves) continue;
      const double eta = 0.25 * radius[k] * (2 * step < moves ? 1.0 : 4 * step < 3 * moves ? 0.5 : 0.25);
      if (pgd_move(x[k], grad[j], x0[k], eta, radius[k], bo.norm, ao)) still.push_back(k);
    }
    live = std::move(still);
  }
  for (size_t k = 0; k < items.size(); ++k)
    if (!found[k]) {
      items[k]->attack_floor = std::max(items[k]->attack_floor, eps[k]);
      ++items[k]->attack_failures;
    }
}

}  // namespace

void check_classes(const std::vector<int64_t>& classes_of_images, int64_t classes, int64_t first_index,
                   const char* what) {
  for (size_t i = 0; i < classes_of_images.size(); ++i) {
    const int64_t c = classes_of_images[i];
    CNNCERT_CHECK(c >= -1 && c < classes, "image " << first_index + static_cast<int64_t>(i) << ": " << what << " " << c
                                                   << " is not a class of the model (0.." << classes - 1 << ")");
  }
}

std::vector<ImageResult> certify(const Network& net, BoundEngine& engine, const std::vector<double>& inputs,
                                 const std::vector<int64_t>& labels, const CertifyOptions& o, int64_t first_index) {
  const int64_t n_in = net.input_size(), classes = net.output_size();
  CNNCERT_CHECK(n_in > 0 && inputs.size() % static_cast<size_t>(n_in) == 0,
                "certify: inputs do not match the network input size");
  const int64_t count = static_cast<int64_t>(inputs.size()) / n_in;
  CNNCERT_CHECK(labels.empty() || static_cast<int64_t>(labels.size()) == count, "certify: one label per image needed");
  CNNCERT_CHECK(o.targets.empty() || static_cast<int64_t>(o.targets.size()) == count,
                "certify: the targets file has " << o.targets.size() << " entries for " << count << " images");
  CNNCERT_CHECK(classes >= 2, "certify: the network has fewer than two outputs");
  CNNCERT_CHECK(o.start_eps > 0 && std::isfinite(o.start_eps), "certify: the starting eps must be positive");
  CNNCERT_CHECK(o.attack_moves >= 0 && o.attack_moves <= 10000,
                "certify: the attack moves must be in 0..10000, got " << o.attack_moves);
  CNNCERT_CHECK(o.image_indices.empty() || static_cast<int64_t>(o.image_indices.size()) == count,
                "certify: " << o.image_indices.size() << " image indices for " << count << " images");
  auto index_of = [&](int64_t i) {
    return o.image_indices.empty() ? first_index + i : o.image_indices[static_cast<size_t>(i)];
  };
  for (int64_t i = 0; i < count; ++i) {
    CNNCERT_CHECK(index_of(i) >= 0, "certify: image indices must not be negative");
    for (const auto* v : {&labels, &o.targets}) {
      const int64_t c = v->empty() ? -1 : (*v)[static_cast<size_t>(i)];
      CNNCERT_CHECK(c >= -1 && c < classes, "image " << index_of(i) << ": " << (v == &labels ? "label" : "target")
                                                     << " " << c << " is not a class of the model (0.." << classes - 1
                                                     << ")");
    }
  }
  const auto t0 = std::chrono::steady_clock::now();

  const std::vector<double> logits = net.forward(inputs.data(), count);
  std::vector<ImageResult> results(static_cast<size_t>(count));
  std::vector<Item> items;
  for (int64_t i = 0; i < count; ++i) {
    ImageResult& r = results[static_cast<size_t>(i)];
    r.image = index_of(i);
    const double* l = logits.data() + i * classes;
    r.predicted = std::max_element(l, l + classes) - l;
    r.label = labels.empty() ? r.predicted : labels[static_cast<size_t>(i)];  // -1 stays: unknown
    if (std::any_of(l, l + classes, [](double v) { return !std::isfinite(v); })) {
      r.skipped = true;
      r.skip_reason = "non-finite logits";
      continue;
    }
    if (r.label >= 0 && r.predicted != r.label) {
      r.skipped = true;
      r.skip_reason = "misclassified";
      continue;
    }
    const int64_t c = r.predicted;
    std::vector<std::vector<int64_t>> groups;  // one radius search per group of targets
    if (!o.targets.empty()) {
      const int64_t t = o.targets[static_cast<size_t>(i)];
      if (t == c) {
        r.skipped = true;
        r.skip_reason = "target equals the predicted class";
        continue;
      }
      if (t == -1) {
        groups.emplace_back();
        for (int64_t k = 0; k < classes; ++k)
          if (k != c) groups.back().push_back(k);
      } else {
        groups.push_back({t});
      }
    } else {
      switch (o.target) {
        case TargetMode::Random: {
          const uint64_t h = splitmix64(o.seed ^ splitmix64(static_cast<uint64_t>(r.image)));
          int64_t t = static_cast<int64_t>(h % static_cast<uint64_t>(classes - 1));
          if (t >= c) ++t;
          groups.push_back({t});
          break;
        }
        case TargetMode::Runnerup:
        case TargetMode::Least: {
          int64_t best = -1;
          for (int64_t k = 0; k < classes; ++k) {
            if (k == c) continue;
            if (best < 0 || (o.target == TargetMode::Runnerup ? l[k] > l[best] : l[k] < l[best])) best = k;
          }
          groups.push_back({best});
          break;
        }
        case TargetMode::All:
          for (int64_t k = 0; k < classes; ++k)
            if (k != c) groups.push_back({k});
          break;
        case TargetMode::Untargeted:
          groups.emplace_back();
          for (int64_t k = 0; k < classes; ++k)
            if (k != c) groups.back().push_back(k);
          break;
      }
    }
    for (auto& g : groups) {
      Item it;
      it.image = static_cast<size_t>(i);
      it.target_slot = r.targets.size();
      TargetResult tr;
      tr.target = g.size() == 1 ? g[0] : -1;
      r.targets.push_back(tr);
      it.spec = margin_spec(classes, c, g);
      it.rows = static_cast<int64_t>(g.size());
      it.lambda = std::log(o.start_eps);
      it.eps = o.start_eps;
      items.push_back(std::move(it));
    }
  }

  const int64_t total = static_cast<int64_t>(items.size());
  int64_t done = 0;
  BoundOptions bo = o.bound;
  bo.want_upper = false;      // the decision needs the lower bounds only
  double bytes_per_item = 0;  // the bounds of every activation's and max-pool's input (what engines return)
  for (const Node& nd : net.nodes())
    if (nd.op == OpKind::Activation || nd.op == OpKind::MaxPool)
      bytes_per_item += 2.0 * sizeof(double) * static_cast<double>(net.node(nd.inputs[0]).size());
  const bool keep_outer =
      engine.uses_outer_bounds(bo) && bytes_per_item * static_cast<double>(items.size()) <= kOuterBoundsBudget;
  if (keep_outer) bo.want_intermediate = true;
  double outer_bytes = 0;
  const bool attack = o.attack_moves > 0 && !o.decide && !o.region_of_level;
  const bool attack_via_engine = engine.uses_outer_bounds(bo);  // radius 0: about one backward pass
  // Whether a counterexample found lies in the ball of the item's current step (then it decides it).
  const auto decided_by_attack = [&](const Item& it) { return attack && current_eps(it, o.search) >= it.adv_dist; };
  // The search step of an item with its outcome; a finished item gives its outer bounds back.
  const auto advance = [&](Item& it, bool ok) {
    step(it, ok, o);
    if (it.done) {
      ++done;
      if (it.outer) outer_bytes -= bytes_of(*it.outer);
      it.outer.reset();
    }
  };
  while (done < total) {
    if (attack) {
      std::vector<Item*> attackers;
      std::vector<double> radii;
      for (Item& it : items) {
        const double e = current_eps(it, o.search);
        if (it.done || !std::isfinite(e) || !(e < it.adv_dist) || !(e > it.attack_floor) ||
            it.attack_failures >= kAttackFailures)
          continue;
        attackers.push_back(&it);
        radii.push_back(e);
      }
      if (!attackers.empty()) attack_items(net, engine, attack_via_engine, bo, o, inputs, attackers, radii);
    }
    std::vector<size_t> active;
    std::vector<BoundProblem> batch;
    for (size_t k = 0; k < items.size(); ++k) {
      if (items[k].done) continue;
      if (decided_by_attack(items[k])) {
        ++items[k].steps_by_attack;
        advance(items[k], false);
        continue;
      }
      active.push_back(k);
      BoundProblem p;
      const size_t img = items[k].image;
      p.x0.assign(inputs.begin() + static_cast<long>(img) * n_in, inputs.begin() + static_cast<long>(img + 1) * n_in);
      const double level = current_eps(items[k], o.search);
      p.eps = o.region_of_level ? o.region_of_level(level) : level;
      p.spec = items[k].spec;
      p.rows = items[k].rows;
      p.outer = items[k].outer;
      batch.push_back(std::move(p));
    }
    // Radii the engine cannot represent are not certified.
    std::vector<BoundResult> res(batch.size());
    std::vector<BoundProblem> valid;
    std::vector<size_t> valid_idx;
    for (size_t b = 0; b < batch.size(); ++b) {
      if (std::isfinite(batch[b].eps) && batch[b].eps >= 0) {
        valid_idx.push_back(b);
        valid.push_back(std::move(batch[b]));
      } else {
        res[b].error = "eps out of range";
      }
    }
    if (!valid.empty()) {
      std::vector<BoundResult> r = engine.bound(valid, bo);
      for (size_t v = 0; v < valid_idx.size(); ++v) {
        res[valid_idx[v]] = std::move(r[v]);
        batch[valid_idx[v]] = std::move(valid[v]);
      }
    }
    for (size_t b = 0; b < active.size(); ++b) {
      Item& it = items[active[b]];
      BoundResult& br = res[b];
      bool ok = br.error.empty() && !br.lower.empty();
      if (ok && o.decide) {
        ok = o.decide(batch[b], br, current_eps(it, o.search), &it.note);
      } else {
        for (double v : br.lower) ok = ok && std::isfinite(v) && v > 0;
      }
      if (!br.error.empty() && it.note.empty())
        it.note = "not certified at eps " + std::to_string(current_eps(it, o.search)) + ": " + br.error;
      if (ok) {
        it.certified = current_eps(it, o.search);
        it.any_certified = true;
      }
      if (keep_outer && !ok && br.error.empty() && !br.intermediate.empty())
        keep_outer_bounds(it, batch[b], bo, std::move(br.intermediate), outer_bytes);
      advance(it, ok);
    }
    if (o.progress) {
      if (o.search == SearchMode::CnnCert) {  // a fixed number of steps: report steps for a smooth ETA
        int64_t steps = 0;
        for (const Item& it : items) steps += it.steps;
        o.progress(steps, total * o.cnncert_steps);
      } else {
        o.progress(done, total);
      }
    }
  }

  for (const Item& it : items) {
    TargetResult& tr = results[it.image].targets[it.target_slot];
    // Only radii that were actually certified are reported (e^{λ_min} / ε_min are such radii).
    tr.eps = it.any_certified ? it.certified : 0.0;
    if (o.search == SearchMode::CnnCert && it.any_certified) tr.eps = std::exp(it.lambda_min);
    if (o.search == SearchMode::DeepCert) tr.eps = it.eps_min;
    tr.steps = it.steps;
    tr.note = it.note;
    tr.steps_by_attack = it.steps_by_attack;
    tr.attack_eps = it.adv_dist;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t certified_images =
      std::count_if(results.begin(), results.end(), [](const ImageResult& r) { return !r.skipped; });
  for (ImageResult& r : results)
    if (!r.skipped) r.seconds = seconds / static_cast<double>(std::max<int64_t>(certified_images, 1));
  return results;
}

}  // namespace cnncert
