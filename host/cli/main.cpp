// The `cnncert` command: info, predict, certify, bounds, proven, convert, gpu.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/cluster.hpp"
#include "cli/options.hpp"
#include "cnncert/baselines.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/cnncert.hpp"
#include "cnncert/convert.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/proven.hpp"
#include "cnncert/vnnlib.hpp"
#include "engine/engine_common.hpp"
#include "io/npy.hpp"
#include "io/output_file.hpp"

namespace {

using cnncert::InvalidArgument;
using json = nlohmann::json;

constexpr int kExitBadInput = 2;

using cnncert::detail::parse_list;
using cnncert::detail::parse_number;

/// Options shared by every command that reads images.
struct InputOptions {
  std::string model, images, labels, csv_layout = "hwc";
  cnncert::detail::ConventionOptions convention;
  int64_t count = 0, offset = 0;
  CLI::Option* count_option = nullptr;  // count() == 0: -n not given, all images

  void add(CLI::App& app) {
    app.add_option("MODEL", model, "ONNX model file")->required();
    app.add_option("IMAGES", images, "images: .npy, ERAN .csv, MNIST idx (.gz), CIFAR-10 .bin")->required();
    count_option = app.add_option("-n,--count", count, "number of images, at least 1 (omit it for all images)");
    app.add_option("--offset", offset, "skip this many images first");
    app.add_option("--labels", labels, "labels file (.npy or idx) when the images carry none");
    convention.add(app);
    app.add_option("--csv-layout", csv_layout, "pixel order in CSV rows: hwc (ERAN, default) or chw");
  }

  cnncert::Preprocess preprocess() const { return convention.resolve(model); }

  /// The images for `net` (whose input size reads flat rows of a model that takes no image).
  cnncert::ImageSet load(const cnncert::Network& net) const {
    // -n is a count: 0 and negative values are errors alike (omitting -n means all images).
    const bool given = count_option && count_option->count() > 0;
    if (given && count < 1) throw InvalidArgument("-n/--count must be at least 1 (omit it for all images)");
    if (offset < 0) throw InvalidArgument("--offset must not be negative");
    if (csv_layout != "hwc" && csv_layout != "chw") throw InvalidArgument("--csv-layout must be hwc or chw");
    cnncert::LoadOptions o;
    o.offset = offset;
    o.limit = given ? count : -1;
    o.labels_path = labels;
    o.csv_hwc = csv_layout == "hwc";
    if (net.input_shape().size() != 3) o.flat_size = net.input_size();
    cnncert::ImageSet set = cnncert::load_images(images, o);
    if (!convention.given(model) && cnncert::cli::cluster().rank == 0 && !set.pixels.empty()) {
      // Without a convention the stored values go in as they are: say so, with what they look like.
      const auto [lo, hi] = std::minmax_element(set.pixels.begin(), set.pixels.end());
      std::cerr
          << "cnncert: warning: no input convention for " << model << " (no " << model
          << ".json sidecar, --sidecar or --scale/--mean/--std/--layout): the images go in as stored, NCHW, values in ["
          << *lo << ", " << *hi << "]\n";
    }
    return set;
  }
};

void print_notes(const cnncert::Network& net) {
  for (const auto& n : net.notes()) std::cerr << "note: " << n << "\n";
}

using cnncert::detail::OutputFile;

/// Writes `j` to an output opened (and so checked) before the computation.
void write_json(const json& j, OutputFile& out) {
  out.stream() << j.dump(2) << "\n";
  out.commit();
}

/// The --json and --csv outputs of a search, checked before it starts; the same file for both is an
/// error (one would silently replace the other).
std::pair<OutputFile, OutputFile> search_outputs(const std::string& json_path, const std::string& csv_path) {
  if (!json_path.empty() && json_path == csv_path)
    throw InvalidArgument("--json and --csv name the same file " + json_path);
  return {OutputFile(json_path, "--json"), OutputFile(csv_path, "--csv")};
}

std::string node_details(const cnncert::Node& n) {
  std::ostringstream os;
  switch (n.op) {
    case cnncert::OpKind::Conv: {
      const auto& a = n.as<cnncert::ConvAttr>();
      os << a.kernel_h << "x" << a.kernel_w << " s" << a.stride_h << "," << a.stride_w << " p" << a.pad_top << ","
         << a.pad_left << "," << a.pad_bottom << "," << a.pad_right;
      if (a.dilation_h != 1 || a.dilation_w != 1) os << " d" << a.dilation_h << "," << a.dilation_w;
      if (a.groups != 1) os << " g" << a.groups;
      break;
    }
    case cnncert::OpKind::Dense: {
      const auto& a = n.as<cnncert::DenseAttr>();
      os << a.in_features << "->" << a.out_features;
      break;
    }
    case cnncert::OpKind::Activation: os << cnncert::act_name(n.as<cnncert::ActAttr>().kind); break;
    case cnncert::OpKind::MaxPool:
    case cnncert::OpKind::AvgPool: {
      const auto& a = n.as<cnncert::PoolAttr>();
      os << a.kernel_h << "x" << a.kernel_w << " s" << a.stride_h << "," << a.stride_w << " p" << a.pad_top << ","
         << a.pad_left << "," << a.pad_bottom << "," << a.pad_right;
      if (n.op == cnncert::OpKind::AvgPool && a.count_include_pad) os << " incl-pad";
      break;
    }
    default: break;
  }
  return os.str();
}

int run_info(const std::string& model, const std::string& json_path) {
  OutputFile json_out(json_path, "--json");
  const cnncert::Network net = cnncert::import_onnx(model);
  print_notes(net);
  json j;
  j["model"] = model;
  j["input_shape"] = net.input_shape();
  j["output_shape"] = net.output_shape();
  j["activation_neurons"] = net.activation_neurons();
  json layers = json::array();
  int64_t params = 0;
  std::cout << "model: " << model << "\n";
  std::cout << std::left << std::setw(4) << "#" << std::setw(28) << "name" << std::setw(26) << "op" << std::setw(18)
            << "output shape" << std::setw(10) << "params" << std::setw(10) << "neurons"
            << "details\n";
  for (size_t i = 0; i < net.nodes().size(); ++i) {
    const cnncert::Node& n = net.nodes()[i];
    const int64_t neurons = n.op == cnncert::OpKind::Activation ? n.size() : 0;
    params += n.parameter_count();
    std::string name = n.name.size() > 26 ? n.name.substr(0, 23) + "..." : n.name;
    std::string op = n.onnx_op.size() > 24 ? n.onnx_op.substr(0, 21) + "..." : n.onnx_op;
    std::cout << std::left << std::setw(4) << i << std::setw(28) << name << std::setw(26) << op << std::setw(18)
              << cnncert::shape_str(n.shape) << std::setw(10) << n.parameter_count() << std::setw(10) << neurons
              << node_details(n) << "\n";
    json l;
    l["index"] = i;
    l["name"] = n.name;
    l["kind"] = cnncert::op_name(n.op);
    l["onnx_op"] = n.onnx_op;
    l["shape"] = n.shape;
    l["inputs"] = n.inputs;
    l["parameters"] = n.parameter_count();
    l["neurons"] = neurons;
    l["details"] = node_details(n);
    layers.push_back(l);
  }
  std::cout << "input " << cnncert::shape_str(net.input_shape()) << ", output "
            << cnncert::shape_str(net.output_shape()) << ", " << params << " parameters, " << net.activation_neurons()
            << " activation neurons\n";
  j["parameters"] = params;
  j["layers"] = layers;
  j["notes"] = net.notes();
  if (json_out.enabled()) write_json(j, json_out);
  return 0;
}

int run_predict(const InputOptions& in, const std::string& json_path, bool quiet) {
  OutputFile json_out(json_path, "--json");
  const cnncert::Network net = cnncert::import_onnx(in.model);
  print_notes(net);
  const cnncert::Preprocess pre = in.preprocess();
  const cnncert::ImageSet set = in.load(net);
  const std::vector<double> x = cnncert::preprocess(set, pre, net);
  const int64_t classes = net.output_size();
  cnncert::check_classes(set.labels, classes, in.offset, "label");
  std::vector<double> logits;
  constexpr int64_t kChunk = 256;  // bound the memory of intermediate activations
  for (int64_t first = 0; first < set.count; first += kChunk) {
    const int64_t n = std::min(kChunk, set.count - first);
    auto part = net.forward(x.data() + first * net.input_size(), n);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  int64_t labelled = 0, correct = 0;
  json images = json::array();
  for (int64_t i = 0; i < set.count; ++i) {
    const double* l = logits.data() + i * classes;
    for (int64_t k = 0; k < classes; ++k)
      if (!std::isfinite(l[k]))
        throw InvalidArgument(set.source + ": image " + std::to_string(in.offset + i) + " gives a non-finite logit");
    const int64_t pred = std::max_element(l, l + classes) - l;
    const int64_t label = set.labels.empty() ? -1 : set.labels[static_cast<size_t>(i)];
    if (label >= 0) {
      ++labelled;
      correct += pred == label;
    }
    if (!quiet)
      std::cout << "image " << in.offset + i << ": predicted " << pred
                << (label >= 0 ? (" label " + std::to_string(label) + (pred == label ? "" : "  (misclassified)")) : "")
                << "\n";
    json j;
    j["image"] = in.offset + i;
    j["label"] = label;
    j["predicted"] = pred;
    j["logits"] = std::vector<double>(l, l + classes);
    images.push_back(j);
  }
  if (labelled > 0)
    std::cout << "accuracy: " << correct << "/" << labelled << " (" << std::fixed << std::setprecision(2)
              << 100.0 * static_cast<double>(correct) / static_cast<double>(labelled) << "%)\n";
  else
    std::cout << set.count << " images classified (no labels)\n";
  // "Near chance": within a tenth of the way from chance to perfect (19 % for 10 classes, 55 % for 2).
  const double chance = 1.0 / static_cast<double>(std::max<int64_t>(classes, 1));
  if (classes >= 2 && labelled >= 20 &&
      static_cast<double>(correct) < (chance + 0.1 * (1 - chance)) * static_cast<double>(labelled))
    std::cerr << "cnncert: warning: the accuracy is near chance (" << classes
              << " classes): is the input convention right? "
              << "(--scale/--mean/--std/--layout, a sidecar; CSV pixel order: --csv-layout)\n";
  if (!json_path.empty()) {
    json j;
    j["model"] = in.model;
    j["images_file"] = in.images;
    j["count"] = set.count;
    j["labelled"] = labelled;
    j["correct"] = correct;
    j["accuracy"] = labelled ? static_cast<double>(correct) / static_cast<double>(labelled) : 0.0;
    j["images"] = images;
    write_json(j, json_out);
  }
  return 0;
}

/// Options of the bound computations (certify, bounds).
struct BoundCliOptions {
  std::string norm = "inf", method = "cnncert", clip, device = "cpu", cpu_engine = "fast", eps_space = "input";
  int threads = 0;
  int64_t gpu_memory = 0;
  bool exact_cnncert = false;

  void add(CLI::App& app) {
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
        "neurons that interval propagation proves stable, which can only differ where it proves more of them)");
  }

  /// The engine and its mode for the outputs: the two modes of the fast engine, else the engine name.
  std::string mode(const cnncert::BoundEngine& e) const {
    if (e.name() != "cpu") return e.name();
    return exact_cnncert ? "fast, exact CNN-Cert" : "fast, stable neurons by interval propagation";
  }

  /// The engine selection --device, --engine, --threads and --gpu-memory ask for.
  cnncert::EngineOptions engine_options() const {
    cnncert::EngineOptions e;
    e.device = cnncert::parse_device(device);
    e.threads = threads;
    e.cpu_engine = cnncert::parse_cpu_engine(cpu_engine);
    if (gpu_memory < 0) throw InvalidArgument("--gpu-memory must not be negative");
    e.gpu_memory_mib = static_cast<size_t>(gpu_memory);
    return e;
  }

  /// The engine --device asks for.
  std::unique_ptr<cnncert::BoundEngine> engine(const cnncert::Network& net) const {
    return cnncert::make_engine(net, engine_options());
  }

  cnncert::BoundOptions options() const {
    cnncert::BoundOptions o;
    o.norm = cnncert::parse_norm(norm);
    o.method = cnncert::parse_method(method);
    if (!clip.empty()) {
      const auto v = parse_list(clip, "--clip");
      if (v.size() != 2 || !(v[0] < v[1])) throw InvalidArgument("--clip needs LO,HI with LO < HI");
      if (o.norm != cnncert::Norm::Linf) throw InvalidArgument("--clip applies to --norm inf only");
      o.clip_to_box = true;
      o.box_lo = v[0];
      o.box_hi = v[1];
    }
    if (threads < 0) throw InvalidArgument("--threads must not be negative");
    o.exact_cnncert = exact_cnncert;
    return o;
  }
};

/// Options of the radius searches (certify, proven): targets, search, outputs.
struct SearchCliOptions {
  std::string target = "random", search = "cnncert", json, csv;
  std::string seed_text = "1215";
  bool quiet = false, progress = false;

  void add(CLI::App& app, const std::string& target_help) {
    app.add_option("--target", target, target_help)->capture_default_str();
    app.add_option("--seed", seed_text, "seed of the random targets (a non-negative integer)")->capture_default_str();
    app.add_option("--search", search, "cnncert (log-space, 15 steps) or deepcert (Algorithm 1, 1e-5)")
        ->capture_default_str();
    app.add_option("--json", json, "write the results as JSON to this file ('-' = stdout)");
    app.add_option("--csv", csv, "write the results as CSV to this file");
    app.add_flag("-q,--quiet", quiet, "print only the summary");
    app.add_flag(
        "--progress", progress,
        "show progress on stderr even when it is not a terminal, as lines (default: a bar on a terminal unless -q)");
  }

  uint64_t seed() const {
    const bool digits = !seed_text.empty() && seed_text.size() <= 19 &&
                        std::all_of(seed_text.begin(), seed_text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) throw InvalidArgument("--seed must be a non-negative integer below 10^19, got '" + seed_text + "'");
    return std::stoull(seed_text);
  }

  cnncert::CertifyOptions options(const BoundCliOptions& bo) const {
    cnncert::CertifyOptions o;
    o.bound = bo.options();
    o.target = cnncert::parse_target_mode(target);
    o.search = cnncert::parse_search_mode(search);
    o.seed = seed();
    return o;
  }
};

/// Progress of a long computation on stderr: a bar with the search step, the layer inside a long
/// step and an ETA, redrawn in place on a terminal; with `force` (--progress) also when stderr is
/// a log file, then as plain lines (one per search step, and per layer at most every 5 s).
/// Nothing otherwise.
class Progress {
 public:
  using clock = std::chrono::steady_clock;
  Progress(bool enabled, bool force)
      : tty_(::isatty(2) != 0), enabled_((enabled && tty_) || force), start_(clock::now()), last_line_(start_) {}

  /// `done` of `total` search steps are finished.
  void step(int64_t done, int64_t total) {
    done_ = done, total_ = total, layer_ = layers_ = 0;
    show(true);
  }
  /// Inside the current step: `done` of `total` layers are bounded.
  void layer(int64_t done, int64_t total) {
    layer_ = done, layers_ = total;
    show(false);
  }

 private:
  void show(bool step_end) {
    if (!enabled_ || total_ <= 0) return;
    const auto now = clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    if (!tty_ && !step_end && std::chrono::duration<double>(now - last_line_).count() < 5.0) return;
    last_line_ = now;
    double frac = static_cast<double>(done_) / static_cast<double>(total_);
    if (layers_ > 0 && done_ < total_)
      frac += static_cast<double>(layer_) / static_cast<double>(layers_) / static_cast<double>(total_);
    std::string text = std::to_string(done_) + "/" + std::to_string(total_) + " steps";
    if (layers_ > 0 && done_ < total_) text += ", layer " + std::to_string(layer_ + 1) + "/" + std::to_string(layers_);
    char tail[64];
    if (done_ < total_ && frac > 0)
      std::snprintf(tail, sizeof tail, ", %.1f s, ETA %.1f s", elapsed, elapsed / frac - elapsed);
    else
      std::snprintf(tail, sizeof tail, ", %.1f s", elapsed);
    if (tty_) {
      const int width = 30, filled = static_cast<int>(frac * width);
      std::fprintf(stderr, "\r\033[K[%s%s] %s%s", std::string(static_cast<size_t>(filled), '=').c_str(),
                   std::string(static_cast<size_t>(width - filled), ' ').c_str(), text.c_str(), tail);
      if (done_ == total_) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "progress: %s%s\n", text.c_str(), tail);
    }
    std::fflush(stderr);
  }

  bool tty_, enabled_;
  clock::time_point start_, last_line_;
  int64_t done_ = 0, total_ = 0, layer_ = 0, layers_ = 0;
};

/// Connects a Progress to the search's step callback and the engine's layer callback.
void attach(Progress& progress, cnncert::CertifyOptions& o) {
  o.progress = [&progress](int64_t d, int64_t t) { progress.step(d, t); };
  o.bound.layer_progress = [&progress](int64_t d, int64_t t) { progress.layer(d, t); };
}

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

/// --eps-space pixel: the network on q = pixel · scale, with x = (q − mean) / std as its first layer
/// (exact, per element), and the convention without mean and std; radii, --clip and --eps are then
/// measured in q (e.g. [0, 1] pixels for scale 1/255). No-op for --eps-space input.
void apply_eps_space(const std::string& space, cnncert::Network& net, cnncert::Preprocess& pre,
                     const cnncert::ImageSet& set) {
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
  cnncert::ImageSet probe;
  probe.count = 1, probe.channels = c_n, probe.height = set.height, probe.width = set.width;
  for (int64_t c = 0; c < c_n; ++c)
    probe.pixels.insert(probe.pixels.end(), static_cast<size_t>(set.height * set.width), static_cast<double>(c));
  cnncert::Preprocess arrange;
  arrange.layout = pre.layout;
  const std::vector<double> channel = cnncert::preprocess(probe, arrange, net);
  std::vector<double> scale(channel.size()), shift(channel.size());
  for (size_t i = 0; i < channel.size(); ++i) {
    const auto c = static_cast<size_t>(channel[i]);
    scale[i] = 1.0 / sd[c], shift[i] = -mean[c] / sd[c];
  }
  net = cnncert::with_input_affine(net, scale, shift);
  pre.mean.clear(), pre.std.clear();
}

/// The results of one process's certification, with what the report says about the engine.
struct CertifyRun {
  std::vector<cnncert::ImageResult> results;
  double seconds = 0;
  std::string engine, engine_mode;
};

json to_json(const CertifyRun& run) {
  json images = json::array();
  for (const auto& r : run.results) {
    json targets = json::array();
    for (const auto& t : r.targets)
      targets.push_back({{"target", t.target}, {"eps", t.eps}, {"steps", t.steps}, {"note", t.note}});
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
    cnncert::ImageResult r;
    r.image = ji.at("image").get<int64_t>(), r.label = ji.at("label").get<int64_t>(),
    r.predicted = ji.at("predicted").get<int64_t>();
    r.skipped = ji.at("skipped").get<bool>(), r.skip_reason = ji.at("reason").get<std::string>();
    r.seconds = ji.at("seconds").get<double>();
    for (const auto& jt : ji.at("targets"))
      r.targets.push_back({jt.at("target").get<int64_t>(), jt.at("eps").get<double>(), jt.at("steps").get<int>(),
                           jt.at("note").get<std::string>()});
    run.results.push_back(std::move(r));
  }
  return run;
}

/// Certifies this process's shard of the images.
CertifyRun certify_images(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                          const std::string& targets_file, const Shard& shard, bool main_process) {
  cnncert::CertifyOptions o = so.options(bo);
  cnncert::Network net = cnncert::import_onnx(in.model);
  if (main_process) print_notes(net);
  cnncert::check_boundable(net);
  cnncert::Preprocess pre = in.preprocess();
  cnncert::ImageSet set = in.load(net);
  apply_eps_space(bo.eps_space, net, pre, set);
  std::vector<int64_t> targets;
  if (!targets_file.empty()) targets = read_targets(targets_file, in.offset, set.count);
  const std::vector<int64_t> all_labels = set.labels;
  if (shard.count > 1) {  // keep images index, index + count, ... (numbered as in the whole run)
    cnncert::ImageSet part = set;
    part.pixels.clear(), part.labels.clear(), part.count = 0;
    const int64_t n = set.image_size();
    for (int64_t i = shard.index; i < set.count; i += shard.count) {
      part.pixels.insert(part.pixels.end(), set.pixels.begin() + i * n, set.pixels.begin() + (i + 1) * n);
      if (!set.labels.empty()) part.labels.push_back(set.labels[static_cast<size_t>(i)]);
      if (!targets.empty()) o.targets.push_back(targets[static_cast<size_t>(i)]);
      o.image_indices.push_back(in.offset + i);
      ++part.count;
    }
    set = std::move(part);
  } else {
    o.targets = targets;
  }
  const std::vector<double> x = set.count ? cnncert::preprocess(set, pre, net) : std::vector<double>{};
  CertifyRun run;
  auto engine = bo.engine(net);
  run.engine = engine->name(), run.engine_mode = bo.mode(*engine);
  // Every label and target of the selected images is checked, also those of other shards, so that
  // a shard fails where the whole run would.
  cnncert::check_classes(all_labels, net.output_size(), in.offset, "label");
  cnncert::check_classes(targets, net.output_size(), in.offset, "target");
  if (set.count == 0) return run;  // a shard beyond the images
  Progress progress(main_process && !so.quiet, main_process && so.progress);
  attach(progress, o);
  const auto t0 = std::chrono::steady_clock::now();
  run.results = cnncert::certify(net, *engine, x, set.labels, o, in.offset);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

/// Prints the per-image lines and the summary of a certification and fills its --json/--csv
/// outputs (committed by the caller); `extra` goes into the JSON (shard, ranks, errors).
void report_certify(const CertifyRun& run, const InputOptions& in, const BoundCliOptions& bo,
                    const SearchCliOptions& so, const std::string& targets_file, OutputFile& json_out,
                    OutputFile& csv_out, const json& extra) {
  const bool quiet = so.quiet;
  double sum_eps = 0;
  int64_t n_targets = 0, n_images = 0, skipped = 0;
  json jimages = json::array();
  std::ostream& csv = csv_out.stream();
  if (csv_out.enabled()) csv << "image,label,predicted,target,eps,steps,seconds,note\n";
  for (const auto& r : run.results) {
    json ji;
    ji["image"] = r.image;
    ji["label"] = r.label;
    ji["predicted"] = r.predicted;
    ji["skipped"] = r.skipped;
    if (r.skipped) {
      ++skipped;
      ji["reason"] = r.skip_reason;
      if (!quiet)
        std::cout << "image " << r.image << ": label " << r.label << ", predicted " << r.predicted << ", skipped ("
                  << r.skip_reason << ")\n";
      if (csv_out.enabled()) csv << r.image << "," << r.label << "," << r.predicted << ",,,,," << r.skip_reason << "\n";
      jimages.push_back(ji);
      continue;
    }
    ++n_images;
    json jt = json::array();
    for (const auto& t : r.targets) {
      ++n_targets;
      sum_eps += t.eps;
      const std::string tname = t.target < 0 ? std::string("untargeted") : std::to_string(t.target);
      if (!quiet)
        std::cout << "image " << r.image << ": label " << r.label << ", target " << tname << ", eps_cert "
                  << std::setprecision(6) << t.eps << ", time " << std::setprecision(3)
                  << r.seconds / static_cast<double>(r.targets.size()) << " s"
                  << (t.note.empty() ? "" : "  (" + t.note + ")") << "\n";
      if (csv_out.enabled())
        csv << r.image << "," << r.label << "," << r.predicted << "," << tname << "," << std::setprecision(10) << t.eps
            << "," << t.steps << "," << r.seconds << "," << t.note << "\n";
      json j;
      j["target"] = t.target;
      j["eps"] = t.eps;
      j["steps"] = t.steps;
      if (!t.note.empty()) j["note"] = t.note;
      jt.push_back(j);
    }
    ji["targets"] = jt;
    ji["seconds"] = r.seconds;
    jimages.push_back(ji);
  }
  const double avg_eps = n_targets ? sum_eps / static_cast<double>(n_targets) : 0.0;
  const double avg_time = n_images ? run.seconds / static_cast<double>(n_images) : 0.0;
  const uint64_t seed = so.seed();
  const bool random = cnncert::parse_target_mode(so.target) == cnncert::TargetMode::Random && targets_file.empty();
  std::cout << "[L" << bo.norm << "] method = " << bo.method
            << ", target = " << (targets_file.empty() ? so.target : "file")
            << (random ? " (seed " + std::to_string(seed) + ")" : "") << ", search = " << so.search
            << ", engine = " << run.engine_mode << ", images = " << n_images << " certified, " << skipped
            << " skipped\n";
  std::cout << "avg robustness = " << std::setprecision(5) << std::fixed << avg_eps
            << ", avg run time = " << std::setprecision(4) << avg_time << " sec" << std::defaultfloat << "\n";
  if (json_out.enabled()) {
    json j;
    j["model"] = in.model;
    j["images_file"] = in.images;
    j["norm"] = bo.norm;
    j["method"] = bo.method;
    j["target"] = targets_file.empty() ? so.target : "file:" + targets_file;
    j["seed"] = seed;
    j["search"] = so.search;
    j["engine"] = run.engine;
    j["engine_mode"] = run.engine_mode;
    j["exact_cnncert"] = bo.exact_cnncert;
    j["eps_space"] = bo.eps_space;
    j["avg_robustness"] = avg_eps;
    j["avg_run_time"] = avg_time;
    j["total_seconds"] = run.seconds;
    for (const auto& [key, value] : extra.items()) j[key] = value;
    j["images"] = jimages;
    json_out.stream() << j.dump(2) << "\n";
  }
}

/// The exit code and the error text of a failure (the same codes as main()).
std::pair<int, std::string> describe_failure() {
  try {
    throw;
  } catch (const cnncert::InternalError& e) {
    return {3, std::string("internal error (please report): ") + e.what()};
  } catch (const std::bad_alloc&) {
    return {kExitBadInput, "out of memory"};
  } catch (const std::exception& e) {
    return {kExitBadInput, e.what()};
  } catch (...) {
    return {kExitBadInput, "unknown error"};
  }
}

/// `certify` as one rank of an MPI launch: every rank certifies its shard (rank r takes images r,
/// r + N, ...; each rank's threads default to its share of the machine's cores; with GPUs, the
/// local rank picks the GPU); rank 0 gathers the results, writes the outputs and the summary as a
/// single process would, and reports each failed rank's error. A failed rank makes the run's exit
/// code non-zero; the other ranks' results are still written.
int run_certify_ranks(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                      const std::string& targets_file, const std::string& shard_text) {
  const cnncert::cli::Cluster& c = cnncert::cli::cluster();
  const bool root = c.rank == 0;
  const auto t0 = std::chrono::steady_clock::now();
  // Rank 0 checks its outputs before any rank computes; a failure there is the run's one error.
  std::optional<std::pair<OutputFile, OutputFile>> outputs;
  std::string output_error;
  if (root) {
    try {
      outputs.emplace(search_outputs(so.json, so.csv));
    } catch (...) {
      output_error = describe_failure().second;
    }
  }
  if (!(output_error = cnncert::cli::broadcast_text(output_error)).empty()) {
    if (root) std::cerr << "cnncert: error: " << output_error << "\n";
    return root ? kExitBadInput : 0;
  }
  json mine;
  try {
    if (!shard_text.empty()) throw InvalidArgument("--shard and an MPI launch both split the images: use one of them");
    // A test hook (tests/cpu/test_shard.cpp): the rank named here fails as a broken rank would.
    const char* fail = std::getenv("CNNCERT_TEST_FAIL_RANK");
    if (fail && std::to_string(c.rank) == fail)
      throw InvalidArgument("rank " + std::to_string(c.rank) + " failed on purpose (CNNCERT_TEST_FAIL_RANK)");
    BoundCliOptions mine_bo = bo;
    if (mine_bo.threads == 0) mine_bo.threads = cnncert::cli::default_threads();
    if (bo.device != "cpu" && cnncert::cuda_device_count() > 0)
      cnncert::cuda_use_device(c.local_rank % cnncert::cuda_device_count());
    mine = to_json(certify_images(in, mine_bo, so, targets_file, Shard{c.rank, c.size}, root));
  } catch (...) {
    const auto [code, text] = describe_failure();
    mine = {{"error", text}, {"code", code}};
  }
  // (Invalid UTF-8, e.g. in a file name of an error text, is replaced rather than thrown on.)
  const std::vector<std::string> texts =
      cnncert::cli::gather_text(mine.dump(-1, ' ', false, json::error_handler_t::replace));
  // Rank 0 reports a failed rank and returns the run's exit code: a non-zero code here would let
  // mpirun kill rank 0 while it writes the other ranks' results.
  if (!root) return 0;
  CertifyRun all;
  json errors = json::array();
  int code = 0;
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
  if (!outputs) return code;  // rank 0 could not even open its outputs (said above)
  json extra{{"ranks", c.size}};
  if (!errors.empty()) extra["errors"] = errors;
  report_certify(all, in, bo, so, targets_file, outputs->first, outputs->second, extra);
  cnncert::detail::commit_all({&outputs->first, &outputs->second});
  if (!errors.empty())
    std::cerr << "cnncert: " << errors.size() << " of " << c.size
              << " ranks failed; the outputs hold the other ranks' images\n";
  return code;
}

int run_certify(const InputOptions& in, const BoundCliOptions& bo, const SearchCliOptions& so,
                const std::string& targets_file, const std::string& shard_text) {
  if (cnncert::cli::cluster().size > 1) return run_certify_ranks(in, bo, so, targets_file, shard_text);
  const Shard shard = shard_text.empty() ? Shard{} : parse_shard(shard_text);
  (void)so.options(bo);  // bad options fail before the outputs are checked
  auto [json_out, csv_out] = search_outputs(so.json, so.csv);
  const CertifyRun run = certify_images(in, bo, so, targets_file, shard, true);
  json extra = json::object();
  if (shard.count > 1) extra["shard"] = shard_text;
  report_certify(run, in, bo, so, targets_file, json_out, csv_out, extra);
  cnncert::detail::commit_all({&json_out, &csv_out});
  return 0;
}

int run_bounds(const InputOptions& in, const BoundCliOptions& bo, double eps, bool logits,
               const std::string& json_path) {
  if (!std::isfinite(eps) || eps <= 0) throw InvalidArgument("--eps must be a positive finite radius");
  const cnncert::BoundOptions opt = bo.options();
  OutputFile json_out(json_path, "--json");
  cnncert::Network net = cnncert::import_onnx(in.model);
  print_notes(net);
  cnncert::check_boundable(net);
  const cnncert::ImageSet set = in.load(net);
  cnncert::Preprocess pre = in.preprocess();
  apply_eps_space(bo.eps_space, net, pre, set);
  const std::vector<double> x = cnncert::preprocess(set, pre, net);
  const int64_t classes = net.output_size();
  cnncert::check_classes(set.labels, classes, in.offset, "label");
  std::vector<int64_t> predicted;
  const std::vector<cnncert::BoundProblem> problems = cnncert::prediction_problems(net, x, eps, logits, predicted);
  auto engine = bo.engine(net);
  cnncert::BoundOptions with_progress = opt;
  Progress progress(true, false);  // one engine call: its layers, on a terminal
  progress.step(0, 1);
  with_progress.layer_progress = [&progress](int64_t d, int64_t t) { progress.layer(d, t); };
  const auto res = engine->bound(problems, with_progress);
  progress.step(1, 1);
  json jimages = json::array();
  for (int64_t i = 0; i < set.count; ++i) {
    const auto& r = res[static_cast<size_t>(i)];
    const int64_t c = predicted[static_cast<size_t>(i)];
    const int64_t label = set.labels.empty() ? -1 : set.labels[static_cast<size_t>(i)];
    std::cout << "image " << in.offset + i << " (label " << label << ", predicted " << c << ")"
              << (r.error.empty() ? "" : ": " + r.error) << "\n";
    json ji;
    ji["image"] = in.offset + i;
    ji["label"] = label;
    ji["predicted"] = c;
    json rows = json::array();
    bool verified = !logits && r.error.empty();
    int64_t row = 0;
    for (int64_t k = 0; k < classes; ++k) {
      if (!logits && k == c) continue;
      const double lo = r.lower[static_cast<size_t>(row)], hi = r.upper[static_cast<size_t>(row)];
      verified = verified && lo > 0;
      std::cout << "  " << (logits ? "logit " : "margin " + std::to_string(c) + "-") << k << ": ["
                << std::setprecision(8) << lo << ", " << hi << "]\n";
      json jr;
      jr[logits ? "class" : "target"] = k;
      jr["lower"] = lo;
      jr["upper"] = hi;
      rows.push_back(jr);
      ++row;
    }
    if (!logits) std::cout << "  " << (verified ? "certified" : "not certified") << " at eps " << eps << "\n";
    ji[logits ? "logits" : "margins"] = rows;
    if (!logits) ji["certified"] = verified;
    if (!r.error.empty()) ji["error"] = r.error;
    jimages.push_back(ji);
  }
  if (!json_path.empty()) {
    json j;
    j["model"] = in.model;
    j["eps"] = eps;
    j["eps_space"] = bo.eps_space;
    j["norm"] = bo.norm;
    j["method"] = bo.method;
    j["engine"] = engine->name();
    j["images"] = jimages;
    write_json(j, json_out);
  }
  return 0;
}

/// Options of `proven` beyond the input, bound and search options.
struct ProvenCliOptions {
  std::string noise = "uniform", cov_path, level_text;
  double confidence = 0.9999;
  bool proxy = false, no_worst_case = false;

  void add(CLI::App& app) {
    app.add_option("--noise", noise, "uniform, bernoulli, bounded or gaussian")->capture_default_str();
    app.add_option("--confidence", confidence, "required probability of keeping the prediction")->capture_default_str();
    app.add_option("--covariance", cov_path, "Gaussian covariance (.npy: d diagonal values or a d x d matrix)");
    app.add_option("--level", level_text,
                   "report the probability bound at this noise level (eps or sigma) instead of searching");
    app.add_flag("--uniform-proxy", proxy, "uniform noise: Hoeffding with the variance proxy eps^2/3 (tighter)");
    app.add_flag("--no-worst-case", no_worst_case,
                 "skip the worst-case radius search (no ratio): one search, the cost of a worst-case certification");
  }
};

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
  cnncert::ProvenOptions po;
  po.base = so.options(bo);
  po.noise.kind = cnncert::parse_noise(noise);
  po.noise.uniform_variance_proxy = proxy;
  po.confidence = confidence;
  po.worst_case = !pc.no_worst_case;
  if (proxy && po.noise.kind != cnncert::NoiseKind::Uniform)
    throw InvalidArgument("--uniform-proxy applies to --noise uniform only");
  if (level >= 0 && !csv_path.empty()) throw InvalidArgument("--csv applies to the search; --level writes --json only");
  auto [json_out, csv_out] = search_outputs(json_path, csv_path);
  const cnncert::Network net = cnncert::import_onnx(in.model);
  print_notes(net);
  cnncert::check_boundable(net);
  if (!pc.cov_path.empty()) {
    if (po.noise.kind != cnncert::NoiseKind::Gaussian)
      throw InvalidArgument("--covariance applies to --noise gaussian only");
    po.noise.covariance = cnncert::detail::read_npy(pc.cov_path).data;
    cnncert::validate_covariance(po.noise.covariance, net.input_size(), pc.cov_path);
  }
  const cnncert::ImageSet set = in.load(net);
  const std::vector<double> x = cnncert::preprocess(set, in.preprocess(), net);
  auto engine = bo.engine(net);
  if (level >= 0) {  // the probability bound at one noise level, top-1 over all other classes
    const int64_t classes = net.output_size();
    cnncert::check_classes(set.labels, classes, in.offset, "label");
    std::vector<int64_t> predicted;
    const auto problems = cnncert::prediction_problems(net, x, 0.0, false, predicted);
    const auto fail =
        cnncert::proven_failure_bounds(net, *engine, problems, po.noise, level, confidence, po.base.bound);
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
  const auto run = cnncert::proven_certify(net, *engine, x, set.labels, po, in.offset);
  std::ostream& csv = csv_out.stream();
  if (csv_out.enabled()) csv << "image,label,predicted,target,noise,worst_case,ratio,note\n";
  double sum_noise = 0, sum_worst = 0, sum_ratio = 0;
  int64_t n = 0, n_ratio = 0, skipped = 0;
  json jimages = json::array();
  const char* level_name = po.noise.kind == cnncert::NoiseKind::Gaussian ? "sigma" : "eps";
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
  cnncert::detail::commit_all({&json_out, &csv_out});
  return 0;
}

/// Options of `attack`.
struct AttackCliOptions {
  std::string norm = "inf", method = "pgd", target = "untargeted", clip, json, csv, seed_text = "1";
  int threads = 0;
  bool quiet = false;

  void add(CLI::App& app) {
    app.add_option("--norm", norm, "perturbation norm: inf, 2 or 1 (cw: 2)")->capture_default_str();
    app.add_option("--method", method, "pgd (projected gradient descent, bisection over eps) or cw (Carlini-Wagner l2)")
        ->capture_default_str();
    app.add_option("--target", target, "untargeted (any other class), runnerup or least")->capture_default_str();
    app.add_option("--clip", clip, "keep the adversarial inputs in the box LO,HI of the network input (e.g. 0,1)");
    app.add_option("--seed", seed_text, "seed of PGD's random restarts")->capture_default_str();
    app.add_option("--threads", threads, "images attacked in parallel (default: all cores)");
    app.add_option("--json", json, "write the results as JSON to this file ('-' = stdout)");
    app.add_option("--csv", csv, "write the results as CSV to this file");
    app.add_flag("-q,--quiet", quiet, "print only the summary");
  }
};

/// `attack`: adversarial examples per image, an upper bound on the minimal perturbation (the
/// counterpart of certify's lower bound), in the network's input space.
int run_attack(const InputOptions& in, const AttackCliOptions& ac) {
  const cnncert::Norm norm = cnncert::parse_norm(ac.norm);
  if (ac.method != "pgd" && ac.method != "cw") throw InvalidArgument("--method must be pgd or cw");
  if (ac.method == "cw" && norm != cnncert::Norm::L2) throw InvalidArgument("--method cw is an l2 attack (--norm 2)");
  if (ac.target != "untargeted" && ac.target != "runnerup" && ac.target != "least")
    throw InvalidArgument("--target must be untargeted, runnerup or least");
  if (ac.threads < 0) throw InvalidArgument("--threads must not be negative");
  cnncert::AttackOptions ao;
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
  const cnncert::Network net = cnncert::import_onnx(in.model);
  print_notes(net);
  const cnncert::ImageSet set = in.load(net);
  const std::vector<double> x = cnncert::preprocess(set, in.preprocess(), net);
  const int64_t classes = net.output_size(), n_in = net.input_size();
  cnncert::check_classes(set.labels, classes, in.offset, "label");
  const std::vector<double> logits = net.forward(x.data(), set.count);
  struct Row {
    int64_t label = -1, predicted = -1, target = -1;
    bool skipped = false;
    cnncert::AttackResult r;
  };
  std::vector<Row> rows(static_cast<size_t>(set.count));
  const int threads = ac.threads > 0 ? ac.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const auto t0 = std::chrono::steady_clock::now();
  cnncert::detail::parallel_for(set.count, threads, [&](int64_t i) {
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
    row.r = ac.method == "pgd" ? cnncert::pgd_attack(net, x0, row.predicted, row.target, norm, ao)
                               : cnncert::cw_l2_attack(net, x0, row.predicted, row.target, ao);
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
  cnncert::detail::commit_all({&json_out, &csv_out});
  return 0;
}

/// `vnnlib`: a VNN-LIB property's answer, in VNN-COMP's result format with --result.
int run_vnnlib(const std::string& model, const std::string& property, const BoundCliOptions& bo, double timeout,
               bool attack, const std::string& result_path) {
  if (!std::isfinite(timeout) || timeout < 0)
    throw InvalidArgument("--timeout must be a non-negative number of seconds");
  if (bo.norm != "inf" || !bo.clip.empty() || bo.eps_space != "input")
    throw InvalidArgument("vnnlib: the property gives the input box (--norm, --clip and --eps-space do not apply)");
  OutputFile out(result_path, "--result");
  const cnncert::Network net = cnncert::import_onnx(model);
  print_notes(net);
  const cnncert::VnnProperty prop = cnncert::load_vnnlib(property);
  cnncert::VnnOptions vo;
  vo.bound = bo.options();
  vo.timeout_seconds = timeout;
  vo.attack = attack;
  const cnncert::VnnResult r = cnncert::verify_vnnlib(net, prop, vo, bo.engine_options());
  const char* answer = cnncert::vnn_answer_name(r.answer);
  std::cout << answer << "\n";
  std::cerr << "cnncert: " << answer << " in " << std::setprecision(3) << r.seconds << " s: " << r.note << "\n";
  if (out.enabled()) {
    std::ostream& f = out.stream();
    f << answer << "\n";
    if (r.answer == cnncert::VnnAnswer::Sat) {  // the counterexample, as VNN-COMP reads it
      f << std::setprecision(17);
      for (size_t i = 0; i < r.x.size(); ++i) f << (i ? " (X_" : "((X_") << i << " " << r.x[i] << ")\n";
      for (size_t j = 0; j < r.y.size(); ++j)
        f << " (Y_" << j << " " << r.y[j] << ")" << (j + 1 == r.y.size() ? ")" : "") << "\n";
    }
    out.commit();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun/srun (an MPI build): one rank of the run; MPI ends when main returns.
  if (const std::string why = cnncert::cli::cluster_start(&argc, &argv); !why.empty()) {
    std::cerr << "cnncert: error: " << why << "\n";
    return kExitBadInput;
  }
  struct ClusterGuard {
    ~ClusterGuard() { cnncert::cli::cluster_finish(); }
  } cluster_guard;
  CLI::App app{
      "cnncert: certified robustness bounds for convolutional neural networks (CNN-Cert, Fast-Lin, CROWN, "
      "DeepCert, PROVEN)"};
  app.set_version_flag("--version", std::string("cnncert ") + cnncert::version());
  app.require_subcommand(1);

  std::string json_path;
  bool quiet = false;

  CLI::App* info = app.add_subcommand("info", "print the layer table of an ONNX model");
  std::string info_model;
  info->add_option("MODEL", info_model, "ONNX model file")->required();
  info->add_option("--json", json_path, "also write the table as JSON to this file ('-' = stdout)");

  CLI::App* predict = app.add_subcommand("predict", "classify images and report the accuracy");
  InputOptions predict_inputs;
  predict_inputs.add(*predict);
  predict->add_option("--json", json_path, "write per-image results as JSON to this file ('-' = stdout)");
  predict->add_flag("-q,--quiet", quiet, "print only the summary");

  CLI::App* certify = app.add_subcommand("certify", "certified robustness radius per image (CNN-Cert search)");
  InputOptions certify_inputs;
  certify_inputs.add(*certify);
  BoundCliOptions certify_bounds;
  certify_bounds.add(*certify);
  SearchCliOptions certify_search;
  certify_search.add(*certify, "random, runnerup, least, all or untargeted");
  std::string targets_file;
  certify->add_option("--targets", targets_file, "file with one target class per image (overrides --target)");
  std::string shard;
  certify->add_option(
      "--shard", shard,
      "certify only images K, K+N, K+2N, ... (counted after --offset) of the selected images, numbered and "
      "targeted as in the whole run; K/N with 0 <= K < N (under mpirun each rank takes its shard itself)");

  CLI::App* bounds =
      app.add_subcommand("bounds", "certified lower/upper bounds of every margin (or logit) at a fixed eps");
  InputOptions bounds_inputs;
  bounds_inputs.add(*bounds);
  BoundCliOptions bounds_options;
  bounds_options.add(*bounds);
  double eps = -1;
  bool logits = false;
  bounds->add_option("--eps", eps, "radius of the perturbation ball (in the network's input space)")->required();
  bounds->add_flag("--logits", logits, "bound the logits instead of the margins f_c - f_t");
  bounds->add_option("--json", json_path, "write the bounds as JSON to this file ('-' = stdout)");

  CLI::App* proven = app.add_subcommand("proven", "probabilistic robustness under random noise (PROVEN)");
  InputOptions proven_inputs;
  proven_inputs.add(*proven);
  BoundCliOptions proven_bounds;
  proven_bounds.add(*proven);
  SearchCliOptions proven_search;
  proven_search.add(*proven, "random, runnerup, least, all or untargeted (top-1, union bound)");
  ProvenCliOptions proven_options;
  proven_options.add(*proven);

  CLI::App* convert =
      app.add_subcommand("convert", "rewrite a model (e.g. convolutions as dense layers: the Fast-Lin baseline)");
  std::string conv_model, conv_out;
  bool to_dense = false;
  convert->add_option("MODEL", conv_model, "ONNX model file")->required();
  convert->add_flag("--to-dense", to_dense, "unroll every convolution and average pooling into a dense layer");
  convert->add_option("-o,--output", conv_out, "output ONNX file")->required();

  CLI::App* gpu = app.add_subcommand("gpu", "report whether a usable GPU is present");

  CLI::App* attack = app.add_subcommand("attack",
                                        "adversarial examples (PGD, Carlini-Wagner): upper bounds on the minimal "
                                        "perturbation, beside certify's lower bounds");
  InputOptions attack_inputs;
  attack_inputs.add(*attack);
  AttackCliOptions attack_options;
  attack_options.add(*attack);

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
  BoundCliOptions vnnlib_bounds;
  vnnlib_bounds.add(*vnn);

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
      if (*info) return run_info(info_model, json_path);
      if (*certify)
        if (const std::string why = cnncert::cli::refuse_unsplit_certify(!shard.empty()); !why.empty())
          throw InvalidArgument(why);
      if (cnncert::cli::cluster().size > 1 && !*certify)
        throw InvalidArgument("under mpirun/srun only 'certify' splits its images across the ranks; run '" +
                              app.get_subcommands().front()->get_name() + "' as one process");
      if (*predict) return run_predict(predict_inputs, json_path, quiet);
      if (*certify) return run_certify(certify_inputs, certify_bounds, certify_search, targets_file, shard);
      if (*bounds) return run_bounds(bounds_inputs, bounds_options, eps, logits, json_path);
      if (*proven) return run_proven(proven_inputs, proven_bounds, proven_search, proven_options);
      if (*convert) {
        if (!to_dense) throw InvalidArgument("convert: nothing to do (use --to-dense)");
        if (conv_out == "-" || conv_out == "/dev/stdout")
          throw InvalidArgument("-o needs a file (the model is binary)");
        OutputFile out(conv_out, "-o");
        const cnncert::Network net = cnncert::import_onnx(conv_model);
        const cnncert::Network dense = cnncert::convert_to_dense(net);
        out.stream() << cnncert::export_onnx_bytes(dense);
        out.commit();
        int64_t weights = 0;
        for (const auto& n : dense.nodes()) weights += n.parameter_count();
        std::cout << "wrote " << conv_out << ": " << dense.nodes().size() << " nodes, " << weights << " parameters\n";
        return 0;
      }
      if (*attack) return run_attack(attack_inputs, attack_options);
      if (*vnn) return run_vnnlib(vnn_model, vnn_property, vnnlib_bounds, vnn_timeout, !vnn_no_attack, vnn_result);
      if (*gpu) {
        std::cout << cnncert::cuda_device_info() << "\n";
        return cnncert::cuda_available() ? 0 : 1;
      }
      return 0;
    }();
    // Results printed to the standard output count as written only once they were flushed.
    cnncert::detail::check_stdout();
    return rc;
  } catch (...) {
    // Under MPI every rank meets the same error here; rank 0 says it (certify's own errors travel
    // to rank 0 with the results).
    const auto [code, text] = describe_failure();
    if (cnncert::cli::cluster().rank == 0) std::cerr << "cnncert: " << (code == 3 ? "" : "error: ") << text << "\n";
    return code;
  }
  return 0;
}
