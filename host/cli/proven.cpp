// `proven`: probabilistic robustness under random noise (PROVEN).
#include "cnncert/proven.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cnncert/cnncert.hpp"
#include "io/npy.hpp"
#include "io/output_file.hpp"

namespace cnncert::cli {

using json = nlohmann::json;
using detail::OutputFile;
using detail::parse_list;
using detail::parse_number;

int run_proven(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
               const ProvenCliOptions& pc) {
  const std::string &target = so.target, &json_path = so.json, &csv_path = so.csv;
  const std::string& noise = pc.noise;
  const double confidence = pc.confidence;
  const bool proxy = pc.proxy;
  const uint64_t seed = so.seed();
  const bool quiet = so.quiet;
  if (!(confidence > 0 && confidence < 1)) throw InvalidArgument("--confidence must lie in (0, 1)");
  if (bo.eps_space != "input")
    throw InvalidArgument("--eps-space applies to certify and bounds (proven measures noise in the input space)");
  double level = -1;
  if (!pc.level_text.empty()) {
    if (pc.no_worst_case)
      throw InvalidArgument("--no-worst-case applies to the search; --level reports one probability bound");
    level = parse_number(pc.level_text, "--level");
    if (!std::isfinite(level) || level < 0)
      throw InvalidArgument("--level (noise scale) must be finite and non-negative");
  }
  ProvenOptions po;
  po.base = so.options(bo);
  po.noise.kind = parse_noise(noise);
  po.noise.uniform_variance_proxy = proxy;
  po.confidence = confidence;
  po.worst_case = !pc.no_worst_case;
  if (proxy && po.noise.kind != NoiseKind::Uniform)
    throw InvalidArgument("--uniform-proxy applies to --noise uniform only");
  if (level >= 0 && !csv_path.empty()) throw InvalidArgument("--csv applies to the search; --level writes --json only");
  auto [json_out, csv_out] = search_outputs(json_path, csv_path);
  const Network net = import_onnx(in.model);
  print_notes(net);
  check_boundable(net);
  if (!pc.cov_path.empty()) {
    if (po.noise.kind != NoiseKind::Gaussian) throw InvalidArgument("--covariance applies to --noise gaussian only");
    po.noise.covariance = detail::read_npy(pc.cov_path).data;
    validate_covariance(po.noise.covariance, net.input_size(), pc.cov_path);
  }
  const ImageSet set = in.load(net);
  const std::vector<double> x = preprocess(set, in.preprocess(), net);
  auto engine = bo.engine(net);
  if (level >= 0) {  // the probability bound at one noise level, top-1 over all other classes
    const int64_t classes = net.output_size();
    check_classes(set.labels, classes, in.offset, "label");
    std::vector<int64_t> predicted;
    const auto problems = prediction_problems(net, x, 0.0, false, predicted);
    const auto fail = proven_failure_bounds(net, *engine, problems, po.noise, level, confidence, po.base.bound);
    json jimages = json::array();
    for (int64_t i = 0; i < set.count; ++i) {
      const double f = fail[static_cast<size_t>(i)];
      std::cout << "image " << in.offset + i << ": P[prediction kept] >= " << std::setprecision(8) << 1 - f
                << (f <= 1 - confidence ? "  (certified at " : "  (not certified at ") << confidence << ")\n";
      jimages.push_back({{"image", in.offset + i}, {"failure_bound", f}, {"certified", f <= 1 - confidence}});
    }
    if (json_out.enabled())
      write_json(
          {{"model", in.model}, {"noise", noise}, {"level", level}, {"confidence", confidence}, {"images", jimages}},
          json_out);
    return 0;
  }
  Progress progress(!quiet, so.progress);
  attach(progress, po.base);
  const auto run = proven_certify(net, *engine, x, set.labels, po, in.offset);
  std::ostream& csv = csv_out.stream();
  if (csv_out.enabled()) csv << "image,label,predicted,target,noise,worst_case,ratio,note\n";
  double sum_noise = 0, sum_worst = 0, sum_ratio = 0;
  int64_t n = 0, n_ratio = 0, skipped = 0;
  json jimages = json::array();
  const char* level_name = po.noise.kind == NoiseKind::Gaussian ? "sigma" : "eps";
  for (const auto& im : run.images) {
    json ji{{"image", im.image}, {"label", im.label}, {"predicted", im.predicted}, {"skipped", im.skipped}};
    if (im.skipped) {
      ++skipped;
      ji["reason"] = im.skip_reason;
      if (!quiet) std::cout << "image " << im.image << ": skipped (" << im.skip_reason << ")\n";
      jimages.push_back(ji);
      continue;
    }
    json jt = json::array();
    for (const auto& t : im.targets) {
      ++n;
      sum_noise += t.noise;
      sum_worst += po.worst_case ? t.worst_case : 0.0;
      if (po.worst_case && t.worst_case > 0) sum_ratio += t.ratio, ++n_ratio;
      const std::string tname = t.target < 0 ? std::string("top-1") : std::to_string(t.target);
      if (!quiet) {
        std::cout << "image " << im.image << ": label " << im.label << ", target " << tname << ", " << level_name << " "
                  << std::setprecision(6) << t.noise << " at " << confidence;
        if (po.worst_case)
          std::cout << ", worst-case " << t.worst_case << ", ratio " << std::setprecision(4) << t.ratio;
        std::cout << "\n";
      }
      if (csv_out.enabled()) {
        csv << im.image << "," << im.label << "," << im.predicted << "," << tname << "," << std::setprecision(10)
            << t.noise << ",";
        if (po.worst_case)
          csv << t.worst_case << "," << t.ratio;
        else
          csv << ",";
        csv << "," << t.note << "\n";
      }
      json jtt{{"target", t.target}, {"noise", t.noise}};
      if (po.worst_case) jtt["worst_case"] = t.worst_case, jtt["ratio"] = t.ratio;
      jt.push_back(jtt);
    }
    ji["targets"] = jt;
    jimages.push_back(ji);
  }
  const double avg_noise = n ? sum_noise / static_cast<double>(n) : 0,
               avg_worst = n ? sum_worst / static_cast<double>(n) : 0;
  const double avg_ratio = n_ratio ? sum_ratio / static_cast<double>(n_ratio) : 0;
  std::cout << "[PROVEN " << noise << ", confidence " << confidence << "] method = " << bo.method
            << ", target = " << target << ", " << n << " searches, " << skipped << " skipped\n";
  std::cout << "avg probabilistic " << level_name << " = " << std::setprecision(5) << avg_noise;
  if (po.worst_case)
    std::cout << ", avg worst-case radius (L" << bo.norm << ") = " << avg_worst
              << ", avg ratio = " << std::setprecision(4) << avg_ratio;
  std::cout << "\ntime: ";
  if (po.worst_case) std::cout << "worst case " << std::setprecision(3) << run.worst_case_seconds << " s, ";
  std::cout << "probabilistic " << std::setprecision(3) << run.proven_seconds << " s\n";
  if (!json_path.empty()) {
    json j{{"model", in.model},   {"noise", noise},         {"confidence", confidence},
           {"method", bo.method}, {"norm", bo.norm},        {"target", target},
           {"seed", seed},        {"avg_noise", avg_noise}, {"proven_seconds", run.proven_seconds},
           {"images", jimages}};
    if (po.worst_case)
      j["avg_worst_case"] = avg_worst, j["avg_ratio"] = avg_ratio, j["worst_case_seconds"] = run.worst_case_seconds;
    json_out.stream() << j.dump(2) << "\n";
  }
  detail::commit_all({&json_out, &csv_out});
  return 0;
}

}  // namespace cnncert::cli
