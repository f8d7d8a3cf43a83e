// What several subcommands share: the option groups (their CLI11 declarations and checks), the
// images, --eps-space and the text of a failure.
#include <algorithm>
#include <iostream>
#include <new>
#include <sstream>

#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "cnncert/cnncert.hpp"

namespace cnncert::cli {

using detail::parse_list;

void InputOptions::add(CLI::App& app) {
  app.add_option("MODEL", model, "ONNX model file")->required();
  app.add_option("IMAGES", images, "images: .npy, ERAN .csv, MNIST idx (.gz), CIFAR-10 .bin")->required();
  count_option = app.add_option("-n,--count", count, "number of images, at least 1 (omit it for all images)");
  app.add_option("--offset", offset, "skip this many images first");
  app.add_option("--labels", labels, "labels file (.npy or idx) when the images carry none");
  convention.add(app);
  app.add_option("--csv-layout", csv_layout, "pixel order in CSV rows: hwc (ERAN, default) or chw");
}

ImageSet InputOptions::load(const Network& net) const {
  // -n is a count: 0 and negative values are errors alike (omitting -n means all images).
  const bool given = count_option && count_option->count() > 0;
  if (given && count < 1) throw InvalidArgument("-n/--count must be at least 1 (omit it for all images)");
  if (offset < 0) throw InvalidArgument("--offset must not be negative");
  if (csv_layout != "hwc" && csv_layout != "chw") throw InvalidArgument("--csv-layout must be hwc or chw");
  LoadOptions o;
  o.offset = offset;
  o.limit = given ? count : -1;
  o.labels_path = labels;
  o.csv_hwc = csv_layout == "hwc";
  if (net.input_shape().size() != 3) o.flat_size = net.input_size();
  ImageSet set = load_images(images, o);
  if (!convention.given(model) && cluster().rank == 0 && !set.pixels.empty()) {
    // Without a convention the stored values go in as they are: say so, with what they look like.
    const auto [lo, hi] = std::minmax_element(set.pixels.begin(), set.pixels.end());
    std::ostringstream range;
    range << "[" << *lo << ", " << *hi << "]";
    warn("no input convention for " + model + " (no " + model +
         ".json sidecar, --sidecar or --scale/--mean/--std/--layout): the images go in as stored, NCHW, values in " +
         range.str());
  }
  return set;
}

void BoundCliOptions::add(CLI::App& app) {
  app.add_option("--norm", norm, "perturbation norm: inf, 2 or 1")->capture_default_str();
  app.add_option(
         "--eps-space", eps_space,
         "where radii and --clip are measured: input (the network's input, after --scale/--mean/--std) or pixel "
         "(pixel * scale, before the mean and std: a ball there is an exact per-channel box of the input)")
      ->capture_default_str();
  app.add_option("--method", method, "relaxation: fastlin, adaptive, cnncert, deepcert or crown")
      ->capture_default_str();
  app.add_option("--clip", clip, "l-inf only: intersect the ball with the box LO,HI of the network input (e.g. 0,1)");
  app.add_option("--threads", threads, "CPU threads (default: all cores)");
  app.add_option("--device", device, "where to compute the bounds: cpu, gpu or auto (the GPU when one is usable)")
      ->capture_default_str();
  app.add_option("--gpu-memory", gpu_memory,
                 "GPU memory for the bound tensors in MiB (default: 70% of the free memory; at most 90% of it)");
  app.add_option("--engine", cpu_engine,
                 "CPU engine: fast, or reference (the plain algorithm that defines the results)")
      ->capture_default_str();
  app.add_flag(
      "--exact-cnncert", exact_cnncert,
      "back-substitute every neuron's bounds as the original CNN-Cert does (the fast engine's default skips "
      "neurons that interval propagation, or the search's bounds at a larger radius, prove stable, which can only "
      "differ where they prove more of them)");
}

std::string BoundCliOptions::mode(const BoundEngine& e) const {
  if (e.name() != "cpu") return e.name();
  return exact_cnncert ? "fast, exact CNN-Cert" : "fast, stable neurons by interval propagation and larger radii";
}

EngineOptions BoundCliOptions::engine_options() const {
  EngineOptions e;
  e.device = parse_device(device);
  e.threads = threads;
  e.cpu_engine = parse_cpu_engine(cpu_engine);
  if (gpu_memory < 0) throw InvalidArgument("--gpu-memory must not be negative");
  e.gpu_memory_mib = static_cast<size_t>(gpu_memory);
  return e;
}

BoundOptions BoundCliOptions::options() const {
  BoundOptions o;
  o.norm = parse_norm(norm);
  o.method = parse_method(method);
  if (!clip.empty()) {
    const auto v = parse_list(clip, "--clip");
    if (v.size() != 2 || !(v[0] < v[1])) throw InvalidArgument("--clip needs LO,HI with LO < HI");
    if (o.norm != Norm::Linf) throw InvalidArgument("--clip applies to --norm inf only");
    o.clip_to_box = true;
    o.box_lo = v[0];
    o.box_hi = v[1];
  }
  if (threads < 0) throw InvalidArgument("--threads must not be negative");
  o.exact_cnncert = exact_cnncert;
  return o;
}

void SearchCliOptions::add(CLI::App& app, const std::string& target_help, const std::string& quiet_help) {
  app.add_option("--target", target, target_help)->capture_default_str();
  app.add_option("--seed", seed_text, "seed of the random targets (a non-negative integer)")->capture_default_str();
  app.add_option("--search", search, "cnncert (log-space, 15 steps) or deepcert (Algorithm 1, 1e-5)")
      ->capture_default_str();
  app.add_option("--json", json, "write the results as JSON to this file ('-' = stdout)");
  app.add_option("--csv", csv, "write the results as CSV to this file");
  app.add_flag("-q,--quiet", quiet, quiet_help);
  app.add_flag(
      "--progress", progress,
      "show progress on stderr even when it is not a terminal, as lines (default: a bar on a terminal unless -q)");
}

void SearchCliOptions::add_attack(CLI::App& app) {
  app.add_option("--attack-moves", attack_moves,
                 "before bounding a search step, look for a counterexample in its ball with this many PGD moves "
                 "(0 = never; 10 is a good value, at most 10000); one found decides the step 'not certified' "
                 "without computing its bounds (sound bounds could not certify it), so the radii are those of the "
                 "search without it (exactly with --exact-cnncert; otherwise up to which neurons later steps "
                 "prove stable); JSON: steps_by_attack, attack_eps (the nearest counterexample's distance, an "
                 "upper bound beside the certified radius)")
      ->capture_default_str();
}

uint64_t SearchCliOptions::seed() const {
  const bool digits = !seed_text.empty() && seed_text.size() <= 19 &&
                      std::all_of(seed_text.begin(), seed_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) throw InvalidArgument("--seed must be a non-negative integer below 10^19, got '" + seed_text + "'");
  return std::stoull(seed_text);
}

CertifyOptions SearchCliOptions::options(const BoundCliOptions& bo) const {
  CertifyOptions o;
  o.bound = bo.options();
  o.target = parse_target_mode(target);
  o.search = parse_search_mode(search);
  o.seed = seed();
  if (attack_moves < 0 || attack_moves > 10000)
    throw InvalidArgument("--attack-moves must be in 0..10000, got " + std::to_string(attack_moves));
  o.attack_moves = attack_moves;
  return o;
}

void ProvenCliOptions::add(CLI::App& app) {
  app.add_option("--noise", noise, "uniform, bernoulli, bounded or gaussian")->capture_default_str();
  app.add_option("--confidence", confidence, "required probability of keeping the prediction")->capture_default_str();
  app.add_option("--covariance", cov_path, "Gaussian covariance (.npy: d diagonal values or a d x d matrix)");
  app.add_option("--level", level_text,
                 "report the probability bound at this noise level (eps or sigma) instead of searching");
  app.add_flag("--uniform-proxy", proxy, "uniform noise: Hoeffding with the variance proxy eps^2/3 (tighter)");
  app.add_flag("--no-worst-case", no_worst_case,
               "skip the worst-case radius search (no ratio): one search, the cost of a worst-case certification");
}

void AttackCliOptions::add(CLI::App& app) {
  app.add_option("--norm", norm, "perturbation norm: inf, 2 or 1 (cw: 2)")->capture_default_str();
  app.add_option("--method", method, "pgd (projected gradient descent, bisection over eps) or cw (Carlini-Wagner l2)")
      ->capture_default_str();
  app.add_option("--target", target, "untargeted (any other class), runnerup or least")->capture_default_str();
  app.add_option("--clip", clip, "keep the adversarial inputs in the box LO,HI of the network input (e.g. 0,1)");
  app.add_option("--seed", seed_text, "seed of PGD's random restarts")->capture_default_str();
  app.add_option("--threads", threads, "images attacked in parallel (default: all cores)");
  app.add_option("--json", json, "write the results as JSON to this file ('-' = stdout)");
  app.add_option("--csv", csv, "write the results as CSV to this file");
  app.add_flag("-q,--quiet", quiet,
               "print only the summary (its last 2 lines, '[L...] attack = ...' and 'avg distortion = ...'): no "
               "per-image lines, no notes; warnings, errors and the --json/--csv outputs are still written");
}

void apply_eps_space(const std::string& space, Network& net, Preprocess& pre, const ImageSet& set) {
  if (space == "input") return;
  if (space != "pixel") throw InvalidArgument("--eps-space must be input or pixel, got '" + space + "'");
  const int64_t c_n = set.channels;
  auto per_channel = [&](const std::vector<double>& v, double fallback, const char* what) {
    if (v.empty()) return std::vector<double>(static_cast<size_t>(c_n), fallback);
    if (v.size() == 1) return std::vector<double>(static_cast<size_t>(c_n), v[0]);
    if (static_cast<int64_t>(v.size()) != c_n)
      throw InvalidArgument(std::string("--") + what + " has " + std::to_string(v.size()) + " values for " +
                            std::to_string(c_n) + " channels");
    return v;
  };
  const std::vector<double> mean = per_channel(pre.mean, 0.0, "mean"), sd = per_channel(pre.std, 1.0, "std");
  // The channel of every model input element: one image whose pixels hold their channel index,
  // arranged by the convention's layout.
  ImageSet probe;
  probe.count = 1, probe.channels = c_n, probe.height = set.height, probe.width = set.width;
  for (int64_t c = 0; c < c_n; ++c)
    probe.pixels.insert(probe.pixels.end(), static_cast<size_t>(set.height * set.width), static_cast<double>(c));
  Preprocess arrange;
  arrange.layout = pre.layout;
  const std::vector<double> channel = preprocess(probe, arrange, net);
  std::vector<double> scale(channel.size()), shift(channel.size());
  for (size_t i = 0; i < channel.size(); ++i) {
    const auto c = static_cast<size_t>(channel[i]);
    scale[i] = 1.0 / sd[c], shift[i] = -mean[c] / sd[c];
  }
  net = with_input_affine(net, scale, shift);
  pre.mean.clear(), pre.std.clear();
}

std::pair<int, std::string> describe_failure() {
  try {
    throw;
  } catch (const InternalError& e) {
    return {3, std::string("internal error (please report): ") + e.what()};
  } catch (const std::bad_alloc&) {
    return {kExitBadInput, "out of memory"};
  } catch (const std::exception& e) {
    return {kExitBadInput, cnncert::detail::one_line(e.what())};
  } catch (...) {
    return {kExitBadInput, "unknown error"};
  }
}

}  // namespace cnncert::cli
