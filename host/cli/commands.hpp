#pragma once
// The subcommands of `cnncert` (internal to the command): the option groups several of them share,
// and one entry point per subcommand. main.cpp declares the options with CLI11 and calls the entry
// point of the subcommand given; each group of subcommands lives in its own file:
//   inspect.cpp  info, predict, convert, gpu      certify.cpp  certify (shards, MPI ranks), bounds
//   proven.cpp   proven                           attack.cpp   attack
//   vnnlib.cpp   vnnlib                           common.cpp   what the option groups check and load
// and every one writes its text, JSON and CSV through a Report (report.hpp), the rules of -q and
// of `--json -` included.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "cli/options.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/images.hpp"
#include "cnncert/network.hpp"

namespace cnncert::cli {

/// The exit code of bad input (a file, an option, a model); 3 is an internal error.
constexpr int kExitBadInput = 2;

/// Options shared by every command that reads images.
struct InputOptions {
  std::string model, images, labels, csv_layout = "hwc";
  detail::ConventionOptions convention;
  int64_t count = 0, offset = 0;
  CLI::Option* count_option = nullptr;  // count() == 0: -n not given, all images

  void add(CLI::App& app);
  Preprocess preprocess() const { return convention.resolve(model); }
  /// The images for `net` (whose input size reads flat rows of a model that takes no image).
  ImageSet load(const Network& net) const;
};

/// Options of the bound computations (certify, bounds, proven, vnnlib).
struct BoundCliOptions {
  std::string norm = "inf", method = "cnncert", clip, device = "cpu", cpu_engine = "fast", eps_space = "input";
  int threads = 0;
  int64_t gpu_memory = 0;
  bool exact_cnncert = false;

  void add(CLI::App& app);
  /// The engine and its mode for the outputs: the two modes of the fast engine, else the engine name.
  std::string mode(const BoundEngine& e) const;
  /// The engine selection --device, --engine, --threads and --gpu-memory ask for.
  EngineOptions engine_options() const;
  /// The engine --device asks for.
  std::unique_ptr<BoundEngine> engine(const Network& net) const { return make_engine(net, engine_options()); }
  BoundOptions options() const;
};

/// Options of the radius searches (certify, proven): targets, search, outputs.
struct SearchCliOptions {
  std::string target = "random", search = "cnncert", json, csv;
  std::string seed_text = "1215";
  bool quiet = false, progress = false;
  int attack_moves = CertifyOptions{}.attack_moves;

  /// `quiet_help`: what -q keeps of this subcommand's text (its summary).
  void add(CLI::App& app, const std::string& target_help, const std::string& quiet_help);
  /// --attack-moves (certify only: PROVEN's decision is not the worst case's).
  void add_attack(CLI::App& app);
  uint64_t seed() const;
  CertifyOptions options(const BoundCliOptions& bo) const;
};

/// Options of `proven` beyond the input, bound and search options.
struct ProvenCliOptions {
  std::string noise = "uniform", cov_path, level_text;
  double confidence = 0.9999;
  bool proxy = false, no_worst_case = false;

  void add(CLI::App& app);
};

/// Options of `attack`.
struct AttackCliOptions {
  std::string norm = "inf", method = "pgd", target = "untargeted", clip, json, csv, seed_text = "1";
  int threads = 0;
  bool quiet = false;

  void add(CLI::App& app);
};

/// --eps-space pixel: the network on q = pixel · scale, with x = (q − mean) / std as its first layer
/// (exact, per element), and the convention without mean and std; radii, --clip and --eps are then
/// measured in q (e.g. [0, 1] pixels for scale 1/255). No-op for --eps-space input.
void apply_eps_space(const std::string& space, Network& net, Preprocess& pre, const ImageSet& set);

/// The exit code and the error text of the exception being handled (the same codes as main()).
std::pair<int, std::string> describe_failure();

// The subcommands; each returns the exit code and throws cnncert::Error on bad input.
int run_info(const std::string& model, const std::string& json_path, bool quiet);
int run_predict(const InputOptions& in, const std::string& json_path, bool quiet);
int run_convert(const std::string& model, const std::string& out_path, bool to_dense, bool quiet);
int run_gpu(bool quiet);
int run_certify(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                const std::string& targets_file, const std::string& shard_text);
int run_bounds(const InputOptions& in, const BoundCliOptions& bo, double eps, bool logits, const std::string& json_path,
               bool quiet);
int run_proven(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
               const ProvenCliOptions& pc);
int run_attack(const InputOptions& in, const AttackCliOptions& ac);
int run_vnnlib(const std::string& model, const std::string& property, const BoundCliOptions& bo, double timeout,
               bool attack, const std::string& result_path, bool quiet);

}  // namespace cnncert::cli
