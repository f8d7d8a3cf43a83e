// The `cnncert` command: the subcommands' options (CLI11) and the dispatch to their entry points
// (cli/commands.hpp says which file holds which subcommand).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "cnncert/cnncert.hpp"
#include "io/output_file.hpp"

namespace cli = cnncert::cli;
using cli::kExitBadInput;
using cnncert::InvalidArgument;

namespace {

/// Whether two paths name the same existing regular file (links and other spellings resolved).
bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(a, ec) || !fs::is_regular_file(b, ec)) return false;
  const bool same = fs::equivalent(a, b, ec);
  return !ec && same;
}

/// Checks of the chosen subcommand's options once they are parsed: a value given empty
/// (`--json ""`) is an error, not "no such output"; a result file (--json, --csv, --result, -o)
/// that is an input file of the command or another result file is refused before any work.
void check_option_values(const CLI::App& sub) {
  std::vector<std::pair<std::string, std::string>> outputs, others;  // (option, value)
  for (const CLI::Option* opt : sub.get_options()) {
    if (opt->count() == 0 || opt->get_expected_min() == 0) continue;  // not given, or a flag
    const std::string name = opt->get_name();
    const bool output =
        opt->check_name("--json") || opt->check_name("--csv") || opt->check_name("--result") || opt->check_name("-o");
    for (const std::string& v : opt->results()) {
      if (v.empty()) throw InvalidArgument(name + ": empty value");
      (output ? outputs : others).emplace_back(name, v);
    }
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t j = i + 1; j < outputs.size(); ++j)
      if (same_file(outputs[i].second, outputs[j].second))
        throw InvalidArgument(outputs[i].first + " and " + outputs[j].first + " name the same file " +
                              outputs[j].second);
    for (const auto& [name, value] : others)
      if (same_file(outputs[i].second, value))
        throw InvalidArgument(outputs[i].first + " " + outputs[i].second + " is the input file of " + name +
                              ": it would be overwritten");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun/srun (an MPI build): one rank of the run; MPI ends when main returns.
  if (const std::string why = cli::cluster_start(&argc, &argv); !why.empty()) {
    std::cerr << "cnncert: error: " << why << "\n";
    return kExitBadInput;
  }
  struct ClusterGuard {
    ~ClusterGuard() { cli::cluster_finish(); }
  } cluster_guard;
  CLI::App app{
      "cnncert: certified robustness bounds for convolutional neural networks (CNN-Cert, Fast-Lin, CROWN, "
      "DeepCert, PROVEN)"};
  app.set_version_flag("--version", std::string("cnncert ") + cnncert::version());
  app.require_subcommand(1);
  // Parse errors on one line, as every other error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("cnncert: error: ") + e.what() + " (see --help)\n";
  });

  std::string json_path;
  bool quiet = false;

  CLI::App* info = app.add_subcommand("info", "print the layer table of an ONNX model");
  std::string info_model;
  info->add_option("MODEL", info_model, "ONNX model file")->required();
  info->add_option("--json", json_path, "also write the table as JSON to this file ('-' = stdout)");
  info->add_flag("-q,--quiet", quiet,
                 "print only the summary (its last line: input, output, parameters, activation neurons): no layer "
                 "table, no notes; warnings, errors and the --json output are still written");

  CLI::App* predict = app.add_subcommand("predict", "classify images and report the accuracy");
  cli::InputOptions predict_inputs;
  predict_inputs.add(*predict);
  predict->add_option("--json", json_path, "write per-image results as JSON to this file ('-' = stdout)");
  predict->add_flag("-q,--quiet", quiet,
                    "print only the summary (the accuracy line): no per-image lines, no notes; warnings, errors and "
                    "the --json output are still written");

  CLI::App* certify = app.add_subcommand("certify", "certified robustness radius per image (CNN-Cert search)");
  cli::InputOptions certify_inputs;
  certify_inputs.add(*certify);
  cli::BoundCliOptions certify_bounds;
  certify_bounds.add(*certify);
  cli::SearchCliOptions certify_search;
  certify_search.add(*certify, "random, runnerup, least, all or untargeted",
                     "print only the summary (its last 2 lines, '[L...] method = ...' and 'avg robustness = ...'): "
                     "no per-image lines, no notes, no progress unless --progress; warnings, errors and the "
                     "--json/--csv outputs are still written");
  certify_search.add_attack(*certify);
  std::string targets_file;
  certify->add_option("--targets", targets_file, "file with one target class per image (overrides --target)");
  std::string shard;
  certify->add_option(
      "--shard", shard,
      "certify only images K, K+N, K+2N, ... (counted after --offset) of the selected images, numbered and "
      "targeted as in the whole run; K/N with 0 <= K < N (under mpirun each rank takes its shard itself)");

  certify->footer(
      "Times: the images are certified together (one engine call per search step), so an image has no time "
      "of its own. Each image gets an equal share of the batch's wall time (JSON: batch_avg_time_s), and each "
      "of its (image, target) searches an equal share of that (text: 'batch avg', CSV: batch_avg_time_s); "
      "'avg run time' and total_seconds are the whole certification's.");

  CLI::App* bounds =
      app.add_subcommand("bounds", "certified lower/upper bounds of every margin (or logit) at a fixed eps");
  cli::InputOptions bounds_inputs;
  bounds_inputs.add(*bounds);
  cli::BoundCliOptions bounds_options;
  bounds_options.add(*bounds);
  double eps = -1;
  bool logits = false;
  bounds->add_option("--eps", eps, "radius of the perturbation ball (in the network's input space)")->required();
  bounds->add_flag("--logits", logits, "bound the logits instead of the margins f_c - f_t");
  bounds->add_option("--json", json_path, "write the bounds as JSON to this file ('-' = stdout)");
  bounds->add_flag("-q,--quiet", quiet,
                   "print only the summary: bounds has none, so no text at all (no per-image bounds, no notes, no "
                   "progress); warnings, errors and the --json output are still written");

  CLI::App* proven = app.add_subcommand("proven", "probabilistic robustness under random noise (PROVEN)");
  cli::InputOptions proven_inputs;
  proven_inputs.add(*proven);
  cli::BoundCliOptions proven_bounds;
  proven_bounds.add(*proven);
  cli::SearchCliOptions proven_search;
  proven_search.add(*proven, "random, runnerup, least, all or untargeted (top-1, union bound)",
                    "print only the summary (its last 3 lines: '[PROVEN ...]', the averages, the times; with --level "
                    "its per-image lines, which are its result): no per-image search lines, no notes, no progress "
                    "unless --progress; warnings, errors and the --json/--csv outputs are still written");
  cli::ProvenCliOptions proven_options;
  proven_options.add(*proven);
  proven->footer(
      "Times: totals only (worst_case_seconds, proven_seconds): the images are searched together, so there "
      "is no per-image time.");

  CLI::App* convert =
      app.add_subcommand("convert", "rewrite a model (e.g. convolutions as dense layers: the Fast-Lin baseline)");
  std::string conv_model, conv_out;
  bool to_dense = false;
  convert->add_option("MODEL", conv_model, "ONNX model file")->required();
  convert->add_flag("--to-dense", to_dense, "unroll every convolution and average pooling into a dense layer");
  convert->add_option("-o,--output", conv_out, "output ONNX file")->required();
  convert->add_flag("-q,--quiet", quiet,
                    "print only the summary (the 'wrote FILE: ...' line, all that convert prints); the model and "
                    "errors are still written");

  CLI::App* gpu = app.add_subcommand("gpu", "report whether a usable GPU is present (exit code 0: yes, 1: no)");
  gpu->add_flag("-q,--quiet", quiet,
                "print only the summary (the one-line answer, all that gpu prints; the exit code answers too)");

  CLI::App* attack = app.add_subcommand("attack",
                                        "adversarial examples (PGD, Carlini-Wagner): upper bounds on the minimal "
                                        "perturbation, beside certify's lower bounds");
  cli::InputOptions attack_inputs;
  attack_inputs.add(*attack);
  cli::AttackCliOptions attack_options;
  attack_options.add(*attack);
  attack->footer(
      "Times: every image is attacked on its own (images run in parallel, one per thread), so its time is "
      "its own (text: 'time', JSON: time_s); seconds is the run's wall time.");

  CLI::App* vnn = app.add_subcommand("vnnlib",
                                     "check a VNN-LIB property (VNN-COMP): unsat (verified), sat (with a "
                                     "counterexample), unknown or timeout");
  std::string vnn_model, vnn_property, vnn_result;
  double vnn_timeout = 0;
  bool vnn_no_attack = false;
  vnn->add_option("MODEL", vnn_model, "ONNX model file")->required();
  vnn->add_option("PROPERTY", vnn_property, "VNN-LIB property (.vnnlib or .vnnlib.gz)")->required();
  vnn->add_option("--timeout", vnn_timeout, "give up after this many seconds (checked between the cases; 0 = none)");
  vnn->add_option("--result", vnn_result, "write the answer (and a counterexample) in VNN-COMP's result format");
  vnn->add_flag("--no-attack", vnn_no_attack, "bounds only: never look for a counterexample");
  vnn->add_flag("-q,--quiet", quiet,
                "print only the summary (the answer line, unsat/sat/unknown/timeout, which VNN-COMP reads): no "
                "account of the answer on stderr, no notes; warnings, errors and the --result file are still "
                "written");
  cli::BoundCliOptions vnnlib_bounds;
  vnnlib_bounds.add(*vnn);

  // `cnncert certfy ...`: CLI11 would say "a subcommand is required", as if none had been given.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sub->check_name(argv[1]);
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "cnncert: error: unknown command '" << cnncert::detail::one_line(argv[1]) << "' (commands: " << names
                << "; see --help)\n";
      return kExitBadInput;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitBadInput;
  }

  try {
    const int rc = [&]() -> int {
      for (const CLI::App* sub : app.get_subcommands()) check_option_values(*sub);
      if (*info) return cli::run_info(info_model, json_path, quiet);
      if (*certify)
        if (const std::string why = cli::refuse_unsplit_certify(!shard.empty()); !why.empty())
          throw InvalidArgument(why);
      if (cli::cluster().size > 1 && !*certify)
        throw InvalidArgument("under mpirun/srun only 'certify' splits its images across the ranks; run '" +
                              app.get_subcommands().front()->get_name() + "' as one process");
      if (*predict) return cli::run_predict(predict_inputs, json_path, quiet);
      if (*certify) return cli::run_certify(certify_inputs, certify_bounds, certify_search, targets_file, shard);
      if (*bounds) return cli::run_bounds(bounds_inputs, bounds_options, eps, logits, json_path, quiet);
      if (*proven) return cli::run_proven(proven_inputs, proven_bounds, proven_search, proven_options);
      if (*convert) return cli::run_convert(conv_model, conv_out, to_dense, quiet);
      if (*attack) return cli::run_attack(attack_inputs, attack_options);
      if (*vnn)
        return cli::run_vnnlib(vnn_model, vnn_property, vnnlib_bounds, vnn_timeout, !vnn_no_attack, vnn_result, quiet);
      if (*gpu) return cli::run_gpu(quiet);
      return 0;
    }();
    // Results printed to the standard output count as written only once they were flushed.
    cnncert::detail::check_stdout();
    return rc;
  } catch (...) {
    // Under MPI every rank meets the same error here; rank 0 says it (certify's own errors travel
    // to rank 0 with the results).
    const auto [code, text] = cli::describe_failure();
    if (cli::cluster().rank == 0) std::cerr << "cnncert: " << (code == 3 ? "" : "error: ") << text << "\n";
    return code;
  }
  return 0;
}
