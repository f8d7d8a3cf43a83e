// `attack`: adversarial examples (PGD, Carlini-Wagner), upper bounds beside certify's lower bounds.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "cnncert/baselines.hpp"
#include "cnncert/cnncert.hpp"
#include "engine/engine_common.hpp"

namespace cnncert::cli {

using json = nlohmann::json;
using detail::parse_list;

namespace {

/// The attack options the command line asks for, checked.
AttackOptions attack_options(const AttackCliOptions& ac, Norm norm) {
  if (ac.method != "pgd" && ac.method != "cw") throw InvalidArgument("--method must be pgd or cw");
  if (ac.method == "cw" && norm != Norm::L2) throw InvalidArgument("--method cw is an l2 attack (--norm 2)");
  if (ac.target != "untargeted" && ac.target != "runnerup" && ac.target != "least")
    throw InvalidArgument("--target must be untargeted, runnerup or least");
  if (ac.threads < 0) throw InvalidArgument("--threads must not be negative");
  AttackOptions ao;
  const bool digits =
      !ac.seed_text.empty() && ac.seed_text.size() <= 19 &&
      std::all_of(ac.seed_text.begin(), ac.seed_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) throw InvalidArgument("--seed must be a non-negative integer, got '" + ac.seed_text + "'");
  ao.seed = std::stoull(ac.seed_text);
  if (!ac.clip.empty()) {
    const auto v = parse_list(ac.clip, "--clip");
    if (v.size() != 2 || !(v[0] < v[1])) throw InvalidArgument("--clip needs LO,HI with LO < HI");
    ao.clip_to_box = true, ao.box_lo = v[0], ao.box_hi = v[1];
  }
  return ao;
}

/// One image's attack.
struct Row {
  int64_t label = -1, predicted = -1, target = -1;
  bool skipped = false;
  AttackResult r;
  double seconds = 0;  // this image's own attack (one image is one attack, on one thread)
};

/// Attacks every image (in parallel: each image is one attack), except the misclassified ones.
std::vector<Row> attack_images(const Network& net, const std::vector<double>& x, const ImageSet& set,
                               const AttackCliOptions& ac, Norm norm, const AttackOptions& ao) {
  const int64_t classes = net.output_size(), n_in = net.input_size();
  const std::vector<double> logits = net.forward(x.data(), set.count);
  std::vector<Row> rows(static_cast<size_t>(set.count));
  const int threads = ac.threads > 0 ? ac.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  detail::parallel_for(set.count, threads, [&](int64_t i) {
    Row& row = rows[static_cast<size_t>(i)];
    const double* l = logits.data() + i * classes;
    row.predicted = std::max_element(l, l + classes) - l;
    row.label = set.labels.empty() ? -1 : set.labels[static_cast<size_t>(i)];
    if (row.label >= 0 && row.label != row.predicted) {  // already misclassified: nothing to attack
      row.skipped = true;
      return;
    }
    if (ac.target != "untargeted") {
      for (int64_t k = 0; k < classes; ++k) {
        if (k == row.predicted) continue;
        if (row.target < 0 || (ac.target == "runnerup" ? l[k] > l[row.target] : l[k] < l[row.target])) row.target = k;
      }
    }
    const std::vector<double> x0(x.begin() + i * n_in, x.begin() + (i + 1) * n_in);
    const auto t0 = std::chrono::steady_clock::now();
    row.r = ac.method == "pgd" ? pgd_attack(net, x0, row.predicted, row.target, norm, ao)
                               : cw_l2_attack(net, x0, row.predicted, row.target, ao);
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
  return rows;
}

/// One image's text line and CSV row; returns its JSON entry.
json report_row(const Row& row, int64_t image, Report& report) {
  json ji{{"image", image}, {"label", row.label}, {"predicted", row.predicted}, {"skipped", row.skipped}};
  std::ostream &text = report.text(), &csv = report.csv();
  if (row.skipped) {
    text << "image " << image << ": label " << row.label << ", predicted " << row.predicted
         << ", skipped (misclassified)\n";
    csv << image << "," << row.label << "," << row.predicted << ",,,,\n";
    return ji;
  }
  text << "image " << image << ": label " << row.label << ", target "
       << (row.target < 0 ? std::string("untargeted") : std::to_string(row.target)) << ", ";
  if (row.r.found)
    text << "distortion " << std::setprecision(6) << row.r.distortion << " (reached class " << row.r.target << ")";
  else
    text << "no adversarial example found";
  text << ", time " << std::setprecision(3) << row.seconds << " s\n";
  csv << image << "," << row.label << "," << row.predicted << "," << row.target << "," << (row.r.found ? 1 : 0) << ","
      << std::setprecision(10) << (row.r.found ? row.r.distortion : std::numeric_limits<double>::infinity()) << ","
      << row.r.target << "\n";
  ji["target"] = row.target, ji["found"] = row.r.found, ji["time_s"] = row.seconds;
  if (row.r.found) ji["distortion"] = row.r.distortion, ji["reached"] = row.r.target;
  return ji;
}

/// The attacks' text lines, summary, CSV table and JSON document.
void report_attack(const std::vector<Row>& rows, double seconds, const InputOptions& in, const AttackCliOptions& ac,
                   Report& report) {
  report.csv() << "image,label,predicted,target,found,distortion,reached\n";
  json jimages = json::array();
  double sum = 0;
  int64_t found = 0, attacked = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    jimages.push_back(report_row(row, in.offset + static_cast<int64_t>(i), report));
    if (row.skipped) continue;
    ++attacked;
    if (row.r.found) ++found, sum += row.r.distortion;
  }
  const double avg = found ? sum / static_cast<double>(found) : 0.0;
  const int64_t skipped = static_cast<int64_t>(rows.size()) - attacked;
  std::ostream& text = report.summary();
  text << "[L" << ac.norm << "] attack = " << ac.method << ", target = " << ac.target << ", " << found << " of "
       << attacked << " attacked images fooled, " << skipped << " skipped\n";
  text << "avg distortion = " << std::setprecision(5) << std::fixed << avg
       << " (over the fooled images), time = " << std::setprecision(3) << seconds << " s" << std::defaultfloat << "\n";
  report.json({{"model", in.model},
               {"images_file", in.images},
               {"norm", ac.norm},
               {"method", ac.method},
               {"target", ac.target},
               {"avg_distortion", avg},
               {"found", found},
               {"attacked", attacked},
               {"seconds", seconds},
               {"images", jimages}});
}

}  // namespace

/// `attack`: adversarial examples per image, an upper bound on the minimal perturbation (the
/// counterpart of certify's lower bound), in the network's input space.
int run_attack(const InputOptions& in, const AttackCliOptions& ac) {
  const Norm norm = parse_norm(ac.norm);
  const AttackOptions ao = attack_options(ac, norm);
  Report report(ac.quiet, ac.json, ac.csv);
  const Network net = import_onnx(in.model);
  report.notes(net);
  const ImageSet set = in.load(net);
  const std::vector<double> x = preprocess(set, in.preprocess(), net);
  check_classes(set.labels, net.output_size(), in.offset, "label");
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Row> rows = attack_images(net, x, set, ac, norm, ao);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report_attack(rows, seconds, in, ac, report);
  report.commit();
  return 0;
}

}  // namespace cnncert::cli
