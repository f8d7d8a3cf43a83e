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
#include "cli/report.hpp"
#include "cnncert/cnncert.hpp"
#include "io/npy.hpp"

namespace cnncert::cli {

using json = nlohmann::json;
using detail::parse_number;

namespace {

/// --level as a number (-1 without it), checked.
double parse_level(const ProvenCliOptions& pc) {
  if (pc.level_text.empty()) return -1;
  if (pc.no_worst_case)
    throw InvalidArgument("--no-worst-case applies to the search; --level reports one probability bound");
  const double level = parse_number(pc.level_text, "--level");
  if (!std::isfinite(level) || level < 0)
    throw InvalidArgument("--level (noise scale) must be finite and non-negative");
  return level;
}

/// The PROVEN options the command line asks for, checked (all but --covariance, which needs the
/// model's input size), and --level in `level`.
ProvenOptions proven_options(const BoundCliOptions& bo, const SearchCliOptions& so, const ProvenCliOptions& pc,
                             double& level) {
  (void)so.seed();  // a bad --seed fails first
  if (!(pc.confidence > 0 && pc.confidence < 1)) throw InvalidArgument("--confidence must lie in (0, 1)");
  if (bo.eps_space != "input")
    throw InvalidArgument("--eps-space applies to certify and bounds (proven measures noise in the input space)");
  level = parse_level(pc);
  ProvenOptions po;
  po.base = so.options(bo);
  po.noise.kind = parse_noise(pc.noise);
  po.noise.uniform_variance_proxy = pc.proxy;
  po.confidence = pc.confidence;
  po.worst_case = !pc.no_worst_case;
  if (pc.proxy && po.noise.kind != NoiseKind::Uniform)
    throw InvalidArgument("--uniform-proxy applies to --noise uniform only");
  if (level >= 0 && !so.csv.empty()) throw InvalidArgument("--csv applies to the search; --level writes --json only");
  return po;
}

/// --level: the probability bound at one noise level, top-1 over all other classes.
void report_level(const Network& net, BoundEngine& engine, const std::vector<double>& x, const ImageSet& set,
                  const InputOptions& in, const ProvenOptions& po, const ProvenCliOptions& pc, double level,
                  Report& report) {
  check_classes(set.labels, net.output_size(), in.offset, "label");
  std::vector<int64_t> predicted;
  const auto problems = prediction_problems(net, x, 0.0, false, predicted);
  const double confidence = po.confidence;
  const auto fail = proven_failure_bounds(net, engine, problems, po.noise, level, confidence, po.base.bound);
  json jimages = json::array();
  for (int64_t i = 0; i < set.count; ++i) {
    const double f = fail[static_cast<size_t>(i)];
    // (These lines are --level's result, its summary: kept under -q.)
    report.summary() << "image " << in.offset + i << ": P[prediction kept] >= " << std::setprecision(8) << 1 - f
                     << (f <= 1 - confidence ? "  (certified at " : "  (not certified at ") << confidence << ")\n";
    jimages.push_back({{"image", in.offset + i}, {"failure_bound", f}, {"certified", f <= 1 - confidence}});
  }
  report.json(
      {{"model", in.model}, {"noise", pc.noise}, {"level", level}, {"confidence", confidence}, {"images", jimages}});
}

/// The sums of the summary.
struct ProvenTotals {
  double sum_noise = 0, sum_worst = 0, sum_ratio = 0;
  int64_t n = 0, n_ratio = 0, skipped = 0;
};

/// One image's text lines and CSV rows; returns its JSON entry.
json report_image(const ProvenImage& im, const ProvenOptions& po, Report& report, ProvenTotals& totals) {
  json ji{{"image", im.image}, {"label", im.label}, {"predicted", im.predicted}, {"skipped", im.skipped}};
  std::ostream &text = report.text(), &csv = report.csv();
  if (im.skipped) {
    ++totals.skipped;
    ji["reason"] = im.skip_reason;
    text << "image " << im.image << ": skipped (" << im.skip_reason << ")\n";
    return ji;
  }
  const char* level_name = po.noise.kind == NoiseKind::Gaussian ? "sigma" : "eps";
  json jt = json::array();
  for (const auto& t : im.targets) {
    ++totals.n;
    totals.sum_noise += t.noise;
    totals.sum_worst += po.worst_case ? t.worst_case : 0.0;
    if (po.worst_case && t.worst_case > 0) totals.sum_ratio += t.ratio, ++totals.n_ratio;
    const std::string tname = t.target < 0 ? std::string("top-1") : std::to_string(t.target);
    text << "image " << im.image << ": label " << im.label << ", target " << tname << ", " << level_name << " "
         << std::setprecision(6) << t.noise << " at " << po.confidence;
    if (po.worst_case) text << ", worst-case " << t.worst_case << ", ratio " << std::setprecision(4) << t.ratio;
    text << "\n";
    csv << im.image << "," << im.label << "," << im.predicted << "," << tname << "," << std::setprecision(10) << t.noise
        << ",";
    if (po.worst_case)
      csv << t.worst_case << "," << t.ratio;
    else
      csv << ",";
    csv << "," << t.note << "\n";
    json jtt{{"target", t.target}, {"noise", t.noise}};
    if (po.worst_case) jtt["worst_case"] = t.worst_case, jtt["ratio"] = t.ratio;
    jt.push_back(jtt);
  }
  ji["targets"] = jt;
  return ji;
}

/// The searches' text lines, summary, CSV table and JSON document.
void report_proven(const ProvenRun& run, const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                   const ProvenCliOptions& pc, const ProvenOptions& po, Report& report) {
  report.csv() << "image,label,predicted,target,noise,worst_case,ratio,note\n";
  ProvenTotals t;
  json jimages = json::array();
  for (const auto& im : run.images) jimages.push_back(report_image(im, po, report, t));
  const double avg_noise = t.n ? t.sum_noise / static_cast<double>(t.n) : 0,
               avg_worst = t.n ? t.sum_worst / static_cast<double>(t.n) : 0;
  const double avg_ratio = t.n_ratio ? t.sum_ratio / static_cast<double>(t.n_ratio) : 0;
  const char* level_name = po.noise.kind == NoiseKind::Gaussian ? "sigma" : "eps";
  std::ostream& text = report.summary();
  // Its own precision: the per-image lines leave theirs on the stream, and -q has none of them.
  text << "[PROVEN " << pc.noise << ", confidence " << std::setprecision(6) << po.confidence
       << "] method = " << bo.method << ", target = " << so.target << ", " << t.n << " searches, " << t.skipped
       << " skipped\n";
  text << "avg probabilistic " << level_name << " = " << std::setprecision(5) << avg_noise;
  if (po.worst_case)
    text << ", avg worst-case radius (L" << bo.norm << ") = " << avg_worst << ", avg ratio = " << std::setprecision(4)
         << avg_ratio;
  text << "\ntime: ";
  if (po.worst_case) text << "worst case " << std::setprecision(3) << run.worst_case_seconds << " s, ";
  text << "probabilistic " << std::setprecision(3) << run.proven_seconds << " s\n";
  json j{{"model", in.model},   {"noise", pc.noise},      {"confidence", po.confidence},
         {"method", bo.method}, {"norm", bo.norm},        {"target", so.target},
         {"seed", so.seed()},   {"avg_noise", avg_noise}, {"proven_seconds", run.proven_seconds},
         {"images", jimages}};
  if (po.worst_case)
    j["avg_worst_case"] = avg_worst, j["avg_ratio"] = avg_ratio, j["worst_case_seconds"] = run.worst_case_seconds;
  report.json(j);
}

}  // namespace

int run_proven(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
               const ProvenCliOptions& pc) {
  double level = -1;
  ProvenOptions po = proven_options(bo, so, pc, level);
  Report report(so.quiet, so.json, so.csv);
  const Network net = import_onnx(in.model);
  report.notes(net);
  check_boundable(net);
  if (!pc.cov_path.empty()) {
    if (po.noise.kind != NoiseKind::Gaussian) throw InvalidArgument("--covariance applies to --noise gaussian only");
    po.noise.covariance = detail::read_npy(pc.cov_path).data;
    validate_covariance(po.noise.covariance, net.input_size(), pc.cov_path);
  }
  const ImageSet set = in.load(net);
  const std::vector<double> x = preprocess(set, in.preprocess(), net);
  auto engine = bo.engine(net);
  if (level >= 0) {
    report_level(net, *engine, x, set, in, po, pc, level, report);
  } else {
    Progress progress(!so.quiet, so.progress);
    attach(progress, po.base);
    const auto run = proven_certify(net, *engine, x, set.labels, po, in.offset);
    report_proven(run, in, bo, so, pc, po, report);
  }
  report.commit();
  return 0;
}

}  // namespace cnncert::cli
