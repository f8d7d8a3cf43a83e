// `certify` (one process, a --shard, or the ranks of an MPI launch) and `bounds`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cli/report.hpp"
#include "cnncert/cnncert.hpp"
#include "cnncert/cuda.hpp"
#include "io/output_file.hpp"

namespace cnncert::cli {

using json = nlohmann::json;

namespace {

std::vector<int64_t> read_targets(const std::string& path, int64_t skip, int64_t count) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InvalidArgument(path + ": is a directory, not a targets file");
  std::ifstream f(path);
  if (!f) throw InvalidArgument(path + ": cannot open the targets file");
  std::vector<int64_t> all;
  std::string line;
  int line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const std::string tok = line.substr(b, line.find_last_not_of(" \t\r") - b + 1);
    if (tok == "untargeted" || tok == "-1") {
      all.push_back(-1);
      continue;
    }
    try {
      size_t used = 0;
      const long long v = std::stoll(tok, &used);
      if (used != tok.size() || v < 0) throw std::invalid_argument("bad");
      all.push_back(v);
    } catch (const std::exception&) {
      throw InvalidArgument(path + ":" + std::to_string(line_no) + ": '" + tok + "' is not a class index");
    }
  }
  if (static_cast<int64_t>(all.size()) < skip + count)
    throw InvalidArgument(path + ": " + std::to_string(all.size()) + " targets for " + std::to_string(skip + count) +
                          " images (one target class per image)");
  return std::vector<int64_t>(all.begin() + skip, all.begin() + skip + count);
}

/// The images one process certifies: every `count`-th image of those -n/--offset select, starting
/// at the `index`-th (`--shard K/N`, or one MPI rank's part).
struct Shard {
  int64_t index = 0, count = 1;
};

/// Parses --shard K/N (0 ≤ K < N).
Shard parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  auto whole = [](const std::string& t) {
    return !t.empty() && t.size() <= 9 && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  const std::string k = slash == std::string::npos ? "" : text.substr(0, slash),
                    n = slash == std::string::npos ? "" : text.substr(slash + 1);
  if (!whole(k) || !whole(n))
    throw InvalidArgument("--shard needs K/N with whole numbers 0 <= K < N, got '" + text + "'");
  Shard s{std::stoll(k), std::stoll(n)};
  if (s.count < 1 || s.index >= s.count) throw InvalidArgument("--shard needs K/N with 0 <= K < N, got '" + text + "'");
  return s;
}

/// The results of one process's certification, with what the report says about the engine.
struct CertifyRun {
  std::vector<ImageResult> results;
  double seconds = 0;
  std::string engine, engine_mode;
};

json to_json(const CertifyRun& run) {
  json images = json::array();
  for (const auto& r : run.results) {
    json targets = json::array();
    for (const auto& t : r.targets)
      targets.push_back({{"target", t.target},
                         {"eps", t.eps},
                         {"steps", t.steps},
                         {"note", t.note},
                         {"steps_by_attack", t.steps_by_attack},
                         {"attack_eps", std::isfinite(t.attack_eps) ? json(t.attack_eps) : json(nullptr)}});
    images.push_back({{"image", r.image},
                      {"label", r.label},
                      {"predicted", r.predicted},
                      {"skipped", r.skipped},
                      {"reason", r.skip_reason},
                      {"seconds", r.seconds},
                      {"targets", targets}});
  }
  return {{"results", images}, {"seconds", run.seconds}, {"engine", run.engine}, {"engine_mode", run.engine_mode}};
}

/// The inverse of to_json (doubles travel as their shortest round-trip text: exact).
CertifyRun certify_run_from_json(const json& j) {
  CertifyRun run;
  run.seconds = j.at("seconds").get<double>();
  run.engine = j.at("engine").get<std::string>();
  run.engine_mode = j.at("engine_mode").get<std::string>();
  for (const auto& ji : j.at("results")) {
    ImageResult r;
    r.image = ji.at("image").get<int64_t>(), r.label = ji.at("label").get<int64_t>(),
    r.predicted = ji.at("predicted").get<int64_t>();
    r.skipped = ji.at("skipped").get<bool>(), r.skip_reason = ji.at("reason").get<std::string>();
    r.seconds = ji.at("seconds").get<double>();
    for (const auto& jt : ji.at("targets"))
      r.targets.push_back({jt.at("target").get<int64_t>(), jt.at("eps").get<double>(), jt.at("steps").get<int>(),
                           jt.at("note").get<std::string>(), jt.at("steps_by_attack").get<int>(),
                           jt.at("attack_eps").is_null() ? INFINITY : jt.at("attack_eps").get<double>()});
    run.results.push_back(std::move(r));
  }
  return run;
}

/// Keeps images shard.index, shard.index + shard.count, ... of `set` (numbered as in the whole run)
/// and their targets, in `o`.
ImageSet select_shard(const ImageSet& set, const std::vector<int64_t>& targets, const Shard& shard, int64_t offset,
                      CertifyOptions& o) {
  if (shard.count <= 1) {
    o.targets = targets;
    return set;
  }
  ImageSet part = set;
  part.pixels.clear(), part.labels.clear(), part.count = 0;
  const int64_t n = set.image_size();
  for (int64_t i = shard.index; i < set.count; i += shard.count) {
    part.pixels.insert(part.pixels.end(), set.pixels.begin() + i * n, set.pixels.begin() + (i + 1) * n);
    if (!set.labels.empty()) part.labels.push_back(set.labels[static_cast<size_t>(i)]);
    if (!targets.empty()) o.targets.push_back(targets[static_cast<size_t>(i)]);
    o.image_indices.push_back(offset + i);
    ++part.count;
  }
  return part;
}

/// Certifies this process's shard of the images; `report` is null on the ranks other than 0 (they
/// write nothing but errors).
CertifyRun certify_images(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                          const std::string& targets_file, const Shard& shard, Report* report) {
  CertifyOptions o = so.options(bo);
  Network net = import_onnx(in.model);
  if (report) report->notes(net);
  check_boundable(net);
  Preprocess pre = in.preprocess();
  ImageSet set = in.load(net);
  apply_eps_space(bo.eps_space, net, pre, set);
  std::vector<int64_t> targets;
  if (!targets_file.empty()) targets = read_targets(targets_file, in.offset, set.count);
  const std::vector<int64_t> all_labels = set.labels;
  set = select_shard(set, targets, shard, in.offset, o);
  const std::vector<double> x = set.count ? preprocess(set, pre, net) : std::vector<double>{};
  CertifyRun run;
  auto engine = bo.engine(net);
  run.engine = engine->name(), run.engine_mode = bo.mode(*engine);
  // Every label and target of the selected images is checked, also those of other shards, so that
  // a shard fails where the whole run would.
  check_classes(all_labels, net.output_size(), in.offset, "label");
  check_classes(targets, net.output_size(), in.offset, "target");
  if (set.count == 0) return run;  // a shard beyond the images
  Progress progress(report && !report->quiet(), report && so.progress);
  attach(progress, o);
  const auto t0 = std::chrono::steady_clock::now();
  run.results = certify(net, *engine, x, set.labels, o, in.offset);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

/// The sums of a certification's summary.
struct CertifyTotals {
  double sum_eps = 0;
  int64_t targets = 0, images = 0, skipped = 0;
};

/// One image's text lines and CSV rows; returns its JSON entry.
json report_image(const ImageResult& r, Report& report, CertifyTotals& totals) {
  json ji{{"image", r.image}, {"label", r.label}, {"predicted", r.predicted}, {"skipped", r.skipped}};
  std::ostream &text = report.text(), &csv = report.csv();
  if (r.skipped) {
    ++totals.skipped;
    ji["reason"] = r.skip_reason;
    text << "image " << r.image << ": label " << r.label << ", predicted " << r.predicted << ", skipped ("
         << r.skip_reason << ")\n";
    csv << r.image << "," << r.label << "," << r.predicted << ",,,,," << r.skip_reason << "\n";
    return ji;
  }
  ++totals.images;
  // The images are certified together (one engine call per search step for all of them), so no
  // image has a time of its own: each gets an equal share of the batch's wall time, and each of its
  // (image, target) searches, a text line and a CSV row, an equal share of that.
  const double share = r.seconds / static_cast<double>(std::max<size_t>(r.targets.size(), 1));
  json jt = json::array();
  for (const auto& t : r.targets) {
    ++totals.targets;
    totals.sum_eps += t.eps;
    const std::string tname = t.target < 0 ? std::string("untargeted") : std::to_string(t.target);
    text << "image " << r.image << ": label " << r.label << ", target " << tname << ", eps_cert "
         << std::setprecision(6) << t.eps << ", batch avg " << std::setprecision(3) << share << " s"
         << (t.note.empty() ? "" : "  (" + t.note + ")") << "\n";
    csv << r.image << "," << r.label << "," << r.predicted << "," << tname << "," << std::setprecision(10) << t.eps
        << "," << t.steps << "," << share << "," << t.note << "\n";
    json j{{"target", t.target}, {"eps", t.eps}, {"steps", t.steps}, {"steps_by_attack", t.steps_by_attack}};
    if (std::isfinite(t.attack_eps)) j["attack_eps"] = t.attack_eps;
    if (!t.note.empty()) j["note"] = t.note;
    jt.push_back(j);
  }
  ji["targets"] = jt;
  ji["batch_avg_time_s"] = r.seconds;
  return ji;
}

/// Writes the text lines, the summary (kept under -q), the CSV table and the JSON document of a certification
/// (committed by the caller); `extra` goes into the JSON (shard, ranks, errors).
void report_certify(const CertifyRun& run, const InputOptions& in, const BoundCliOptions& bo,
                    const SearchCliOptions& so, const std::string& targets_file, Report& report, const json& extra) {
  CertifyTotals totals;
  json jimages = json::array();
  report.csv() << "image,label,predicted,target,eps,steps,batch_avg_time_per_target_s,note\n";
  for (const auto& r : run.results) jimages.push_back(report_image(r, report, totals));
  const double avg_eps = totals.targets ? totals.sum_eps / static_cast<double>(totals.targets) : 0.0;
  const double avg_time = totals.images ? run.seconds / static_cast<double>(totals.images) : 0.0;
  const uint64_t seed = so.seed();
  const bool random = parse_target_mode(so.target) == TargetMode::Random && targets_file.empty();
  std::ostream& text = report.summary();
  text << "[L" << bo.norm << "] method = " << bo.method << ", target = " << (targets_file.empty() ? so.target : "file")
       << (random ? " (seed " + std::to_string(seed) + ")" : "") << ", search = " << so.search
       << ", engine = " << run.engine_mode << ", images = " << totals.images << " certified, " << totals.skipped
       << " skipped\n";
  text << "avg robustness = " << std::setprecision(5) << std::fixed << avg_eps
       << ", avg run time = " << std::setprecision(4) << avg_time << " sec" << std::defaultfloat << "\n";
  if (!report.wants_json()) return;
  json j{{"model", in.model},
         {"images_file", in.images},
         {"norm", bo.norm},
         {"method", bo.method},
         {"target", targets_file.empty() ? so.target : "file:" + targets_file},
         {"seed", seed},
         {"search", so.search},
         {"engine", run.engine},
         {"engine_mode", run.engine_mode},
         {"exact_cnncert", bo.exact_cnncert},
         {"eps_space", bo.eps_space},
         {"avg_robustness", avg_eps},
         {"avg_run_time", avg_time},
         {"total_seconds", run.seconds}};
  for (const auto& [key, value] : extra.items()) j[key] = value;
  j["images"] = jimages;
  report.json(j);
}

/// Rank 0's outputs, opened before any rank computes (a failure there is the run's one error,
/// said by rank 0); null on the other ranks and on a failure.
std::unique_ptr<Report> open_root_outputs(const SearchCliOptions& so, int* exit_code) {
  std::unique_ptr<Report> report;
  std::string error;
  if (cluster().rank == 0) {
    try {
      report = std::make_unique<Report>(so.quiet, so.json, so.csv);
    } catch (...) {
      error = describe_failure().second;
    }
  }
  *exit_code = 0;
  if (!(error = broadcast_text(error)).empty()) {
    if (cluster().rank == 0) std::cerr << "cnncert: error: " << error << "\n";
    *exit_code = kExitBadInput;
  }
  return error.empty() ? std::move(report) : nullptr;
}

/// This rank's results as JSON, or its error ({"error", "code"}).
json certify_my_shard(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                      const std::string& targets_file, const std::string& shard_text, Report* report) {
  const Cluster& c = cluster();
  try {
    if (!shard_text.empty()) throw InvalidArgument("--shard and an MPI launch both split the images: use one of them");
    // A test hook (tests/cpu/test_shard.cpp): the rank named here fails as a broken rank would.
    const char* fail = std::getenv("CNNCERT_TEST_FAIL_RANK");
    if (fail && std::to_string(c.rank) == fail)
      throw InvalidArgument("rank " + std::to_string(c.rank) + " failed on purpose (CNNCERT_TEST_FAIL_RANK)");
    BoundCliOptions mine = bo;
    if (mine.threads == 0) mine.threads = default_threads();
    if (bo.device != "cpu" && cuda_device_count() > 0) cuda_use_device(c.local_rank % cuda_device_count());
    return to_json(certify_images(in, mine, so, targets_file, Shard{c.rank, c.size}, report));
  } catch (...) {
    const auto [code, text] = describe_failure();
    return {{"error", text}, {"code", code}};
  }
}

/// The ranks' results in image order, with each failed rank's error in `errors` and the worst
/// exit code in `code`.
CertifyRun merge_ranks(const std::vector<std::string>& texts, json& errors, int& code) {
  CertifyRun all;
  for (size_t r = 0; r < texts.size(); ++r) {
    const json j = json::parse(texts[r]);
    if (j.contains("error")) {
      errors.push_back({{"rank", r}, {"error", j.at("error")}});
      code = std::max(code, j.at("code").get<int>());
      continue;
    }
    CertifyRun part = certify_run_from_json(j);
    if (all.engine.empty()) all.engine = part.engine, all.engine_mode = part.engine_mode;
    for (auto& res : part.results) all.results.push_back(std::move(res));
  }
  std::sort(all.results.begin(), all.results.end(), [](const auto& a, const auto& b) { return a.image < b.image; });
  return all;
}

/// `certify` as one rank of an MPI launch: every rank certifies its shard (rank r takes images r,
/// r + N, ...; each rank's threads default to its share of the machine's cores; with GPUs, the
/// local rank picks the GPU); rank 0 gathers the results, writes the outputs and the summary as a
/// single process would, and reports each failed rank's error. A failed rank makes the run's exit
/// code non-zero; the other ranks' results are still written.
int run_certify_ranks(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                      const std::string& targets_file, const std::string& shard_text) {
  const Cluster& c = cluster();
  const auto t0 = std::chrono::steady_clock::now();
  int code = 0;
  std::unique_ptr<Report> report = open_root_outputs(so, &code);
  if (code != 0) return c.rank == 0 ? code : 0;
  const json mine = certify_my_shard(in, bo, so, targets_file, shard_text, report.get());
  // (Invalid UTF-8, e.g. in a file name of an error text, is replaced rather than thrown on.)
  const std::vector<std::string> texts = gather_text(mine.dump(-1, ' ', false, json::error_handler_t::replace));
  // Rank 0 reports a failed rank and returns the run's exit code: a non-zero code here would let
  // mpirun kill rank 0 while it writes the other ranks' results.
  if (c.rank != 0) return 0;
  json errors = json::array();
  CertifyRun all = merge_ranks(texts, errors, code);
  all.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool same_error = !errors.empty() && std::all_of(errors.begin(), errors.end(), [&](const json& e) {
    return e["error"] == errors[0]["error"];
  });
  if (static_cast<int>(errors.size()) == c.size && same_error) {  // e.g. a bad option: said once
    std::cerr << "cnncert: error: " << errors[0]["error"].get<std::string>() << "\n";
    return code;
  }
  for (const auto& e : errors)
    std::cerr << "cnncert: error: rank " << e["rank"].get<int>() << " of " << c.size << ": "
              << e["error"].get<std::string>() << "\n";
  json extra{{"ranks", c.size}};
  if (!errors.empty()) extra["errors"] = errors;
  report_certify(all, in, bo, so, targets_file, *report, extra);
  report->commit();
  if (!errors.empty())
    std::cerr << "cnncert: " << errors.size() << " of " << c.size
              << " ranks failed; the outputs hold the other ranks' images\n";
  return code;
}

/// One image's bounds (its text lines); returns its JSON entry.
json report_bounds_image(const BoundResult& r, int64_t image, int64_t label, int64_t c, int64_t classes, double eps,
                         bool logits, std::ostream& text) {
  text << "image " << image << " (label " << label << ", predicted " << c << ")"
       << (r.error.empty() ? "" : ": " + r.error) << "\n";
  json rows = json::array();
  bool verified = !logits && r.error.empty();
  int64_t row = 0;
  for (int64_t k = 0; k < classes; ++k) {
    if (!logits && k == c) continue;
    const double lo = r.lower[static_cast<size_t>(row)], hi = r.upper[static_cast<size_t>(row)];
    verified = verified && lo > 0;
    text << "  " << (logits ? "logit " : "margin " + std::to_string(c) + "-") << k << ": [" << std::setprecision(8)
         << lo << ", " << hi << "]\n";
    rows.push_back({{logits ? "class" : "target", k}, {"lower", lo}, {"upper", hi}});
    ++row;
  }
  if (!logits) text << "  " << (verified ? "certified" : "not certified") << " at eps " << eps << "\n";
  json ji{{"image", image}, {"label", label}, {"predicted", c}, {logits ? "logits" : "margins", rows}};
  if (!logits) ji["certified"] = verified;
  if (!r.error.empty()) ji["error"] = r.error;
  return ji;
}

}  // namespace

int run_certify(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                const std::string& targets_file, const std::string& shard_text) {
  if (cluster().size > 1) return run_certify_ranks(in, bo, so, targets_file, shard_text);
  const Shard shard = shard_text.empty() ? Shard{} : parse_shard(shard_text);
  (void)so.options(bo);  // bad options fail before the outputs are checked
  Report report(so.quiet, so.json, so.csv);
  const CertifyRun run = certify_images(in, bo, so, targets_file, shard, &report);
  json extra = json::object();
  if (shard.count > 1) extra["shard"] = shard_text;
  report_certify(run, in, bo, so, targets_file, report, extra);
  report.commit();
  return 0;
}

int run_bounds(const InputOptions& in, const BoundCliOptions& bo, double eps, bool logits, const std::string& json_path,
               bool quiet) {
  if (!std::isfinite(eps) || eps <= 0) throw InvalidArgument("--eps must be a positive finite radius");
  const BoundOptions opt = bo.options();
  Report report(quiet, json_path);
  Network net = import_onnx(in.model);
  report.notes(net);
  check_boundable(net);
  if (!logits && net.output_size() < 2)
    throw InvalidArgument("bounds: the network has fewer than two outputs, so no margins (--logits bounds the output)");
  const ImageSet set = in.load(net);
  Preprocess pre = in.preprocess();
  apply_eps_space(bo.eps_space, net, pre, set);
  const std::vector<double> x = preprocess(set, pre, net);
  const int64_t classes = net.output_size();
  check_classes(set.labels, classes, in.offset, "label");
  std::vector<int64_t> predicted;
  const std::vector<BoundProblem> problems = prediction_problems(net, x, eps, logits, predicted);
  auto engine = bo.engine(net);
  BoundOptions with_progress = opt;
  Progress progress(!quiet, false);  // one engine call: its layers, on a terminal
  progress.step(0, 1);
  with_progress.layer_progress = [&progress](int64_t d, int64_t t) { progress.layer(d, t); };
  const auto res = engine->bound(problems, with_progress);
  progress.step(1, 1);
  json jimages = json::array();
  for (int64_t i = 0; i < set.count; ++i) {
    const int64_t label = set.labels.empty() ? -1 : set.labels[static_cast<size_t>(i)];
    jimages.push_back(report_bounds_image(res[static_cast<size_t>(i)], in.offset + i, label,
                                          predicted[static_cast<size_t>(i)], classes, eps, logits, report.text()));
  }
  report.json({{"model", in.model},
               {"eps", eps},
               {"eps_space", bo.eps_space},
               {"norm", bo.norm},
               {"method", bo.method},
               {"engine", engine->name()},
               {"images", jimages}});
  report.commit();
  return 0;
}

}  // namespace cnncert::cli
