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
#include "cnncert/baselines.hpp"
#include "cnncert/cnncert.hpp"
#include "engine/engine_common.hpp"
#include "io/output_file.hpp"

namespace cnncert::cli {

using json = nlohmann::json;
using detail::OutputFile;
using detail::parse_list;
using detail::parse_number;

/// `attack`: adversarial examples per image, an upper bound on the minimal perturbation (the
/// counterpart of certify's lower bound), in the network's input space.
int run_attack(const InputOptions& in, const AttackCliOptions& ac) {
  const Norm norm = parse_norm(ac.norm);
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
  auto [json_out, csv_out] = search_outputs(ac.json, ac.csv);
  const Network net = import_onnx(in.model);
  print_notes(net);
  const ImageSet set = in.load(net);
  const std::vector<double> x = preprocess(set, in.preprocess(), net);
  const int64_t classes = net.output_size(), n_in = net.input_size();
  check_classes(set.labels, classes, in.offset, "label");
  const std::vector<double> logits = net.forward(x.data(), set.count);
  struct Row {
    int64_t label = -1, predicted = -1, target = -1;
    bool skipped = false;
    AttackResult r;
  };
  std::vector<Row> rows(static_cast<size_t>(set.count));
  const int threads = ac.threads > 0 ? ac.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const auto t0 = std::chrono::steady_clock::now();
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
    row.r = ac.method == "pgd" ? pgd_attack(net, x0, row.predicted, row.target, norm, ao)
                               : cw_l2_attack(net, x0, row.predicted, row.target, ao);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json jimages = json::array();
  std::ostream& csv = csv_out.stream();
  if (csv_out.enabled()) csv << "image,label,predicted,target,found,distortion,reached\n";
  double sum = 0;
  int64_t found = 0, attacked = 0;
  for (int64_t i = 0; i < set.count; ++i) {
    const Row& row = rows[static_cast<size_t>(i)];
    const int64_t image = in.offset + i;
    json ji{{"image", image}, {"label", row.label}, {"predicted", row.predicted}, {"skipped", row.skipped}};
    if (row.skipped) {
      if (!ac.quiet)
        std::cout << "image " << image << ": label " << row.label << ", predicted " << row.predicted
                  << ", skipped (misclassified)\n";
      if (csv_out.enabled()) csv << image << "," << row.label << "," << row.predicted << ",,,,\n";
      jimages.push_back(ji);
      continue;
    }
    ++attacked;
    if (row.r.found) ++found, sum += row.r.distortion;
    if (!ac.quiet) {
      std::cout << "image " << image << ": label " << row.label << ", target "
                << (row.target < 0 ? std::string("untargeted") : std::to_string(row.target)) << ", ";
      if (row.r.found)
        std::cout << "distortion " << std::setprecision(6) << row.r.distortion << " (reached class " << row.r.target
                  << ")\n";
      else
        std::cout << "no adversarial example found\n";
    }
    if (csv_out.enabled())
      csv << image << "," << row.label << "," << row.predicted << "," << row.target << "," << (row.r.found ? 1 : 0)
          << "," << std::setprecision(10) << (row.r.found ? row.r.distortion : std::numeric_limits<double>::infinity())
          << "," << row.r.target << "\n";
    ji["target"] = row.target, ji["found"] = row.r.found;
    if (row.r.found) ji["distortion"] = row.r.distortion, ji["reached"] = row.r.target;
    jimages.push_back(ji);
  }
  const double avg = found ? sum / static_cast<double>(found) : 0.0;
  std::cout << "[L" << ac.norm << "] attack = " << ac.method << ", target = " << ac.target << ", " << found << " of "
            << attacked << " attacked images fooled, " << set.count - attacked << " skipped\n";
  std::cout << "avg distortion = " << std::setprecision(5) << std::fixed << avg
            << " (over the fooled images), time = " << std::setprecision(3) << seconds << " s" << std::defaultfloat
            << "\n";
  if (json_out.enabled())
    json_out.stream() << json{{"model", in.model},   {"images_file", in.images}, {"norm", ac.norm},
                              {"method", ac.method}, {"target", ac.target},      {"avg_distortion", avg},
                              {"found", found},      {"attacked", attacked},     {"seconds", seconds},
                              {"images", jimages}}
                             .dump(2)
                      << "\n";
  detail::commit_all({&json_out, &csv_out});
  return 0;
}

}  // namespace cnncert::cli
