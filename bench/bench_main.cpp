// cnncert-bench: times full certifications (the 15-step CNN-Cert search) per image and reports
// seconds per image (median of repeats) and the peak memory of each run (every run is a fresh
// child process, so its peak resident set is its own).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench_util.hpp"
#include "cli/options.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/cnncert.hpp"
#include "engine/engine_common.hpp"
#include "environment.hpp"
#include "io/output_file.hpp"

namespace {

using json = nlohmann::json;

struct Config {
  std::string name, model, images;
  cnncert::Preprocess pre;
  int64_t count = 100;      ///< images on the GPU (and on the CPU for the small networks)
  int64_t cpu_count = 100;  ///< images on the CPU engine
};

/// The networks of issue 3's benchmark with the input conventions of ../shared/data/README.md.
std::vector<Config> suite(const std::string& root, const std::string& data, int64_t n, int64_t n_large,
                          int64_t n_cpu_huge, bool with_gpu) {
  const std::string mnist = data + "/images/mnist/t10k-images-idx3-ubyte.gz",
                    cifar = data + "/images/eran/cifar10_test.csv";
  std::vector<Config> s;
  cnncert::Preprocess shipped =
      cnncert::load_sidecar(root + "/models/mnist_cnn_3layer_5_3.onnx").value_or(cnncert::Preprocess{});
  s.push_back({"mnist_cnn_3layer_5_3 (shipped)", root + "/models/mnist_cnn_3layer_5_3.onnx",
               root + "/data/mnist_test_100.npy", shipped, n, n});
  cnncert::Preprocess unit;
  unit.scale = 1.0 / 255;
  s.push_back(
      {"mnist_verivital_convnet_maxpool", data + "/nets/mnist_verivital_convnet_maxpool.onnx", mnist, unit, n, n});
  cnncert::Preprocess oval = unit;
  oval.mean = {0.485, 0.456, 0.406};
  oval.std = {0.225};
  s.push_back({"cifar_oval21_base_kw", data + "/nets/cifar_oval21_base_kw.onnx", cifar, oval, n, n});
  cnncert::Preprocess res = unit;
  res.mean = {0.4914, 0.4822, 0.4465};
  res.std = {0.2471, 0.2435, 0.2616};
  s.push_back({"cifar_resnet_2b", data + "/nets/cifar_resnet_2b.onnx", cifar, res, with_gpu ? n : n_large, n_large});
  // Issue 13's networks: the deep MLPs, the zoo's ResNet and 7-layer CNN, the 45 056-ReLU all-conv net.
  s.push_back({"mnist_fc_256x2", data + "/nets/mnist_fc_256x2.onnx", mnist, unit, n, n});
  s.push_back({"mnist_eran_sigmoid_6x200", data + "/nets/mnist_eran_sigmoid_6x200.onnx", mnist, unit, n, n_large});
  const std::string zoo_images = root + "/data/mnist_test_100.npy";
  for (const char* z : {"mnist_resnet_3", "mnist_cnn_7layer"}) {
    const std::string path = root + "/models/" + z + ".onnx";
    s.push_back({z, path, zoo_images, cnncert::load_sidecar(path).value_or(cnncert::Preprocess{}), n,
                 std::string(z) == "mnist_cnn_7layer" ? n_cpu_huge : n_large});
  }
  cnncert::Preprocess bf = unit;
  bf.mean = {0.485, 0.456, 0.406};
  bf.std = {0.229, 0.224, 0.225};
  s.push_back(
      {"cifar_biasfield_base_allconv", data + "/nets/cifar_biasfield_base_allconv.onnx", cifar, bf, n, n_cpu_huge});
  return s;
}

struct Run {
  double seconds_per_image = 0, avg_eps = 0, total_seconds = 0;
  int64_t certified_images = 0, skipped = 0;
  long peak_kb = 0;
  std::string error;
  std::vector<double> radii;  ///< per image (−1 = skipped)
  json stats;                 ///< the engine's phase times and FLOPs
};

/// One certification in a child process; the parent reads its result and its peak memory.
Run run_child(const Config& c, const std::string& norm, const std::string& method, int threads,
              const std::string& device, size_t float_mib, int attack_moves) {
  int fd[2];
  if (pipe(fd) != 0) {
    Run r;
    r.error = "pipe failed";
    return r;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    json out;
    try {
      const cnncert::Network net = cnncert::import_onnx(c.model);
      cnncert::LoadOptions lo;
      lo.limit = device == "gpu" ? c.count : c.cpu_count;
      const cnncert::ImageSet set = cnncert::load_images(c.images, lo);
      const auto x = cnncert::preprocess(set, c.pre, net);
      cnncert::CertifyOptions o;
      o.bound.norm = cnncert::parse_norm(norm);
      o.bound.method = cnncert::parse_method(method);
      o.attack_moves = attack_moves;
      cnncert::EngineOptions eo;
      eo.device = cnncert::parse_device(device == "gpu" ? "gpu" : "cpu");
      eo.cpu_engine = device == "reference" ? cnncert::CpuEngine::Reference : cnncert::CpuEngine::Fast;
      o.bound.exact_cnncert = device == "cpu-exact";
      eo.threads = threads;
      auto engine = device == "float" ? cnncert::make_float_engine(net, float_mib) : cnncert::make_engine(net, eo);
      const auto t0 = std::chrono::steady_clock::now();
      const auto res = cnncert::certify(net, *engine, x, set.labels, o);
      const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      int64_t n = 0, skipped = 0;
      double sum = 0;
      std::vector<double> radii;
      int64_t steps = 0, steps_by_attack = 0;
      for (const auto& r : res) {
        for (const auto& t : r.targets) steps += t.steps, steps_by_attack += t.steps_by_attack;
        if (r.skipped) {
          ++skipped;
          radii.push_back(-1);
          continue;
        }
        ++n;
        sum += r.targets[0].eps;
        radii.push_back(r.targets[0].eps);
      }
      const cnncert::EngineStats st = engine->stats();
      out = {{"total", total},
             {"n", n},
             {"skipped", skipped},
             {"avg_eps", n ? sum / static_cast<double>(n) : 0.0},
             {"radii", radii},
             {"stats",
              {{"calls", st.calls},
               {"seconds_bounds", st.seconds_bounds},
               {"seconds_relax", st.seconds_relax},
               {"seconds_final", st.seconds_final},
               {"backsub_flops", st.backsub_flops},
               {"rows_computed", st.rows_computed},
               {"rows_skipped", st.rows_skipped},
               {"rows_skipped_outer", st.rows_skipped_outer},
               {"peak_tensor_bytes", st.peak_tensor_bytes},
               {"conv_cudnn", st.conv_cudnn},
               {"conv_cudnn_failed", st.conv_cudnn_failed},
               {"conv_own_kernel", st.conv_own_kernel},
               {"conv_windowed", st.conv_windowed},
               {"gemm_cublas", st.gemm_cublas},
               {"gemm_own_kernel", st.gemm_own_kernel},
               {"gpu_launches", st.gpu_launches},
               {"gpu_syncs", st.gpu_syncs},
               {"model_flops", st.model_flops},
               {"model_bytes", st.model_bytes},
               {"model_launches", st.model_launches},
               {"model_syncs", st.model_syncs},
               {"search_steps", steps},
               {"steps_by_attack", steps_by_attack}}}};
    } catch (const std::exception& e) {
      out = {{"error", e.what()}};
    }
    const std::string s = out.dump();
    if (write(fd[1], s.data(), s.size()) < 0) _exit(1);
    close(fd[1]);
    _exit(0);
  }
  close(fd[1]);
  std::string text;
  char buf[4096];
  ssize_t k;
  while ((k = read(fd[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(k));
  close(fd[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  Run r;
  r.peak_kb = ru.ru_maxrss;
  if (text.empty()) {
    r.error = "child failed (status " + std::to_string(status) + ")";
    return r;
  }
  const json j = json::parse(text);
  if (j.contains("error")) {
    r.error = j["error"];
    return r;
  }
  r.total_seconds = j["total"];
  r.certified_images = j["n"];
  r.skipped = j["skipped"];
  r.avg_eps = j["avg_eps"];
  r.radii = j["radii"].get<std::vector<double>>();
  r.stats = j["stats"];
  r.seconds_per_image = r.certified_images ? r.total_seconds / static_cast<double>(r.certified_images) : 0;
  return r;
}

}  // namespace

int run_compare(int argc, char** argv);
int run_proven_bench(int argc, char** argv);

namespace {

/// Where the shipped models/ and data/ are, found from the executable (not the build machine's
/// paths): $CNNCERT_ROOT; an install (<prefix>/bin/cnncert-bench → <prefix>/share/cnncert); a build
/// tree inside the source tree (build/cnncert-bench → .); else the source tree it was built from.
std::string default_root() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("CNNCERT_ROOT"); env && *env) return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (const fs::path& p : {exe.parent_path().parent_path() / "share" / "cnncert", exe.parent_path().parent_path()})
      if (fs::is_directory(p / "models", ec) && fs::is_directory(p / "data", ec)) return p.string();
  return CNNCERT_SOURCE_DIR;
}

/// The shared data (real networks, images): $CNNCERT_SHARED_DATA, else shared/data beside the root
/// (the project's layout: ../shared/data next to the source tree).
std::string default_data(const std::string& root) {
  if (const char* env = std::getenv("CNNCERT_SHARED_DATA"); env && *env) return env;
  return (std::filesystem::path(root).parent_path() / "shared" / "data").string();
}

/// The command line of a benchmark run.
struct BenchArgs {
  std::string root, data, json_path, norms = "inf,2", method = "adaptive";
  std::string model, images, devices = "reference,cpu", only;
  int64_t n = 100, n_large = 10, n_cpu_huge = 2;
  int repeat = 3, threads = 0;
  size_t float_mib = 1024;
  int attack_moves = cnncert::CertifyOptions{}.attack_moves;
};

/// Declares the options of `app`, their defaults those of `a`.
void add_options(CLI::App& app, BenchArgs& a) {
  app.add_option("--data", a.data, "shared data directory (real networks and images)")->capture_default_str();
  app.add_option("--root", a.root, "source tree with models/ and data/ (the shipped networks and images)")
      ->capture_default_str();
  app.add_option("-n,--count", a.n, "images per network (at least 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--count-large", a.n_large, "CPU images for the ResNet (slow on a CPU)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--count-huge", a.n_cpu_huge, "CPU images for the 45k-ReLU all-conv network and mnist_cnn_7layer")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--repeat", a.repeat, "runs per configuration (the median is reported)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--norms", a.norms, "comma-separated norms")->capture_default_str();
  app.add_option("--method", a.method, "relaxation method")->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--float-memory", a.float_mib,
                 "MiB of coefficient tensors for --devices float (its chunks: give it a GPU's budget to count the "
                 "GPU's launches; windowed rows use far less than the budget)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option(
         "--devices", a.devices,
         "comma-separated engines to time, interleaved run by run: reference (the plain CPU engine), cpu (the fast "
         "engine), cpu-exact (the fast engine with --exact-cnncert), float (the GPU engine's algorithm on the CPU, "
         "in float32: slow, but it measures the GPU cost model), gpu; speedup = first engine's time / this one's")
      ->capture_default_str();
  app.add_option("--attack-moves", a.attack_moves,
                 "PGD moves per search step looking for a counterexample that decides it without bounds (0 = "
                 "off; CertifyOptions::attack_moves)")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  app.add_option("--model", a.model, "benchmark this model only (with --images; conventions from its sidecar)");
  app.add_option("--images", a.images, "images for --model");
  app.add_option("--only", a.only,
                 "benchmark only the suite's networks whose name contains one of these comma-separated words");
  app.add_option("--json", a.json_path, "write the results as JSON");
}

/// Whether every device is known and, when the GPU is among them, it is available (else says why
/// on stderr).
bool devices_usable(const std::vector<std::string>& device_list, bool with_gpu) {
  for (const auto& d : device_list)
    if (d != "cpu" && d != "gpu" && d != "reference" && d != "cpu-exact" && d != "float") {
      std::cerr << "cnncert-bench: unknown device '" << d << "' (use reference, cpu, cpu-exact, float, gpu)\n";
      return false;
    }
  if (with_gpu) {  // asked in a child: the GPU runs happen in forked children (environment.hpp)
    const cnncert::bench::GpuInfo gpu = cnncert::bench::gpu_info_in_child();
    if (!gpu.available) {
      std::cerr << "cnncert-bench: --devices gpu: " << gpu.info << "\n";
      return false;
    }
  }
  return true;
}

/// Opens the --json output before hours of benchmarks; false (with the error on stderr) when it
/// cannot be written.
bool open_json_output(const std::string& json_path, cnncert::detail::OutputFile& json_out) {
  try {
    json_out = cnncert::detail::OutputFile(json_path, "--json");
  } catch (const cnncert::Error& e) {
    std::cerr << "cnncert-bench: error: " << e.what() << "\n";
    return false;
  }
  return true;
}

/// What is wrong with the command line's method, norms, devices and paths (empty: nothing), said
/// before any work: a bad option is an error, not a table of error cells. (A suite network whose
/// files are missing, e.g. without the shared data, stays a "skipped" row.)
std::string bad_arguments(const BenchArgs& a, const std::vector<std::string>& norms,
                          const std::vector<std::string>& devices) {
  try {
    (void)cnncert::parse_method(a.method);
    for (const std::string& n : norms) (void)cnncert::parse_norm(n);
  } catch (const cnncert::Error& e) {
    return e.what();
  }
  if (norms.empty()) return "--norms names no norm";
  if (devices.empty()) return "--devices names no engine";
  namespace fs = std::filesystem;
  if (!a.model.empty()) {
    if (!fs::is_regular_file(a.model)) return "--model " + a.model + ": no such file";
    if (a.images.empty()) return "--model needs --images";
    if (!fs::exists(a.images)) return "--images " + a.images + ": no such file";
  } else if (!a.images.empty()) {
    return "--images needs --model";
  } else if (!fs::is_directory(a.root)) {
    return "--root " + a.root + ": no such folder";
  }
  return "";
}

/// The configurations to time: --model alone, else the suite (its networks named by --only).
std::vector<Config> configs_to_run(const BenchArgs& a, bool with_gpu) {
  std::vector<Config> configs;
  if (!a.model.empty()) {
    configs.push_back(
        {a.model, a.model, a.images, cnncert::load_sidecar(a.model).value_or(cnncert::Preprocess{}), a.n, a.n});
    return configs;
  }
  configs = suite(a.root, a.data, a.n, a.n_large, a.n_cpu_huge, with_gpu);
  if (!a.only.empty()) {
    const auto words = cnncert::detail::split_commas(a.only);
    std::erase_if(configs, [&](const Config& c) {
      return std::none_of(words.begin(), words.end(),
                          [&](const std::string& w) { return c.name.find(w) != std::string::npos; });
    });
  }
  return configs;
}

/// The machine, the method and the repeat count, and the one-thread GEMM peak (measured here).
json bench_environment(const BenchArgs& a) {
  json env = cnncert::bench::environment();
  env["method"] = a.method;
  env["attack_moves"] = a.attack_moves;
  env["repeat"] = a.repeat;
  env["gemm_peak_gflops_one_thread"] = cnncert::detail::gemm_peak_gflops();
  return env;
}

/// Prints the environment, the GEMM peak, the search and the table's column heads.
void print_header(const json& env, const std::string& method, int attack_moves, double gemm_peak) {
  std::cout << cnncert::bench::environment_line(env) << "\n";
  std::cout << "GEMM peak (one thread, 1024^3 sgemm: the fast engine's precision, best of 5): " << std::fixed
            << std::setprecision(1) << gemm_peak << " GFLOP/s" << std::defaultfloat << "\n";
  std::cout << "method " << method << ", CNN-Cert search (15 steps from 0.05), random targets (seed 1215)";
  std::cout << ", counterexamples first: " << attack_moves << " PGD moves\n\n";
  std::cout << std::left << std::setw(34) << "network" << std::setw(6) << "norm" << std::setw(11) << "engine"
            << std::setw(8) << "images" << std::setw(11) << "avg eps" << std::setw(12) << "s/image" << std::setw(11)
            << "total s" << std::setw(20) << "spread s/image" << std::setw(10) << "peak MiB" << std::setw(9)
            << "speedup"
            << "GFLOP/s, phases (bounds/relax/final s), radii = first engine's, rows skipped, GFLOP/image\n";
}

/// The first engine's results, which the others are compared with.
struct Baseline {
  double median = 0;
  std::vector<double> radii;
};

/// How many images either engine certified, and of those how many radii differ by more than the
/// search's resolution.
struct RadiiMatch {
  int64_t compared = 0, differing = 0;
};

/// Compares the radii of the images both engines certified (−1 = skipped by both: not compared).
RadiiMatch compare_radii(const std::vector<double>& first, const std::vector<double>& radii) {
  RadiiMatch m;
  for (size_t i = 0; i < std::min(first.size(), radii.size()); ++i) {
    const double a = first[i], b = radii[i];
    if (a < 0 && b < 0) continue;
    ++m.compared;
    if (std::fabs(a - b) > 1e-3 * std::max(std::fabs(a), 1e-12)) ++m.differing;
  }
  return m;
}

/// The GPU counters (cuDNN/own convolutions, cuBLAS/own GEMMs, launches, syncs) into the table's
/// last column and the row, for runs that used the GPU.
void add_gpu_counters(const json& st, std::ostringstream& extra, json& row) {
  if (st.value("gpu_launches", int64_t{0}) <= 0) return;
  extra << ", conv cuDNN/failed/own " << st.value("conv_cudnn", int64_t{0}) << "/"
        << st.value("conv_cudnn_failed", int64_t{0}) << "/" << st.value("conv_own_kernel", int64_t{0}) << " (windowed "
        << st.value("conv_windowed", int64_t{0}) << ")"
        << ", GEMM cuBLAS/own " << st.value("gemm_cublas", int64_t{0}) << "/" << st.value("gemm_own_kernel", int64_t{0})
        << ", " << st.value("gpu_launches", int64_t{0}) << " launches, " << st.value("gpu_syncs", int64_t{0})
        << " syncs";
  for (const char* k : {"conv_cudnn", "conv_cudnn_failed", "conv_own_kernel", "conv_windowed", "gemm_cublas",
                        "gemm_own_kernel", "gpu_launches", "gpu_syncs"})
    row[k] = st.value(k, int64_t{0});
}

/// The GPU cost model of a batched-engine run (GPU or host-float, EngineStats::model_*) for 100
/// images, and the time it implies on an H200: 60 TFLOP/s fp32, 4.8 TB/s, 5 µs per launch or host
/// wait, the three terms added (no overlap assumed: an upper estimate of the model). FLOPs and bytes
/// grow with the images and are scaled to 100 from the run's; launches and waits are the run's own:
/// the search bounds all its images in one batch per step, so they grow only with the chunks (with
/// a GPU's budget, one per node; on the shipped CNN 10 images gave 1487 launches and 255 waits,
/// 100 images 1510 and 255).
void add_cost_model(const json& st, int64_t images, std::ostringstream& extra, json& row) {
  if (st.value("model_launches", int64_t{0}) <= 0 || images <= 0) return;
  const double per = 100.0 / static_cast<double>(images);
  const double flops = st.value("model_flops", 0.0) * per, bytes = st.value("model_bytes", 0.0) * per;
  const auto launches = static_cast<double>(st.value("model_launches", int64_t{0})),
             syncs = static_cast<double>(st.value("model_syncs", int64_t{0}));
  const double t_flops = flops / 60e12, t_bytes = bytes / 4.8e12, t_calls = (launches + syncs) * 5e-6;
  extra << "; H200 model for 100 images: " << std::setprecision(3) << flops / 1e12 << " TFLOP, " << bytes / 1e12
        << " TB (scaled from " << images << "), " << std::setprecision(0) << launches << " launches, " << syncs
        << " syncs (this batch) -> " << std::setprecision(3) << t_flops + t_bytes + t_calls << " s (" << t_flops
        << " + " << t_bytes << " + " << t_calls << ")";
  row["model_100_images"] = {
      {"flops", flops},           {"bytes", bytes},           {"launches", launches},
      {"syncs", syncs},           {"images_run", images},     {"seconds_h200", t_flops + t_bytes + t_calls},
      {"seconds_flops", t_flops}, {"seconds_bytes", t_bytes}, {"seconds_calls", t_calls}};
}

/// The table's last column for engine number d (GFLOP/s, phase times, radii agreement with the
/// first engine, rows skipped, GFLOP/image, GPU counters, fraction of the GEMM peak); adds the
/// same figures to the row.
std::string stats_column(const Run& first_run, size_t d, const Baseline& base, double gemm_peak, json& row) {
  std::ostringstream extra;
  const json& st = first_run.stats;
  const double busy = st.value("seconds_bounds", 0.0) + st.value("seconds_final", 0.0);
  const double gflops = busy > 0 ? st.value("backsub_flops", 0.0) / busy / 1e9 : 0.0;
  // Radii of the images both engines certified: same within the search's resolution.
  const RadiiMatch m = compare_radii(base.radii, first_run.radii);
  extra << std::fixed << std::setprecision(0) << gflops << ", " << std::setprecision(3)
        << st.value("seconds_bounds", 0.0) << "/" << st.value("seconds_relax", 0.0) << "/"
        << st.value("seconds_final", 0.0);
  if (d > 0 && m.compared) extra << ", " << (m.compared - m.differing) << "/" << m.compared << " radii = first";
  const double rc = st.value("rows_computed", 0.0), rs = st.value("rows_skipped", 0.0);
  if (rc + rs > 0)
    extra << ", rows " << std::setprecision(0) << 100 * rs / (rc + rs) << "% skipped ("
          << 100 * st.value("rows_skipped_outer", 0.0) / (rc + rs) << "% by larger radii)";
  if (st.value("search_steps", int64_t{0}) > 0)
    extra << ", " << st.value("steps_by_attack", int64_t{0}) << "/" << st.value("search_steps", int64_t{0})
          << " steps decided by a counterexample";
  row["search_steps"] = st.value("search_steps", int64_t{0});
  row["steps_by_attack"] = st.value("steps_by_attack", int64_t{0});
  extra << ", " << std::setprecision(3)
        << st.value("backsub_flops", 0.0) / 1e9 / std::max<double>(1, static_cast<double>(first_run.certified_images))
        << " GFLOP/image";
  add_gpu_counters(st, extra, row);
  add_cost_model(st, first_run.certified_images + first_run.skipped, extra, row);
  row["gflop_per_image"] =
      st.value("backsub_flops", 0.0) / 1e9 / std::max<double>(1, static_cast<double>(first_run.certified_images));
  row["gflops_backsub"] = gflops;
  if (gemm_peak > 0 && gflops > 0) {
    extra << " (" << std::setprecision(0) << 100 * gflops / gemm_peak << "% of the GEMM peak)";
    row["fraction_of_gemm_peak"] = gflops / gemm_peak;
  }
  row["radii_compared"] = m.compared;
  row["radii_differing"] = m.differing;
  return extra.str();
}

/// Every engine run `repeat` times on one configuration and norm, interleaved: repeat i runs every
/// engine once before repeat i + 1 (noisy machines). The runs per engine.
std::vector<std::vector<Run>> interleaved_runs(const Config& c, const std::string& norm, const BenchArgs& a,
                                               const std::vector<std::string>& device_list) {
  std::vector<std::vector<Run>> all_runs(device_list.size());
  for (int i = 0; i < a.repeat; ++i)
    for (size_t d = 0; d < device_list.size(); ++d)
      all_runs[d].push_back(run_child(c, norm, a.method, a.threads, device_list[d], a.float_mib, a.attack_moves));
  return all_runs;
}

/// Prints the table's line for engine number d's runs and adds its row to `rows`; the first
/// engine's results become the baseline.
void report_engine(const Config& c, const std::string& norm, size_t d, const std::string& device,
                   const std::vector<Run>& runs, double gemm_peak, Baseline& base, json& rows) {
  if (!runs[0].error.empty()) {
    std::cout << std::setw(34) << c.name << std::setw(6) << norm << std::setw(11) << device
              << "error: " << runs[0].error << "\n";
    return;
  }
  std::vector<double> t, totals;
  long peak = 0;
  for (const Run& r : runs)
    t.push_back(r.seconds_per_image), totals.push_back(r.total_seconds), peak = std::max(peak, r.peak_kb);
  std::sort(t.begin(), t.end());  // sorted for the spread and the JSON
  const double median = cnncert::bench::median(t), total = cnncert::bench::median(totals);
  std::ostringstream spread;
  spread << std::fixed << std::setprecision(5) << t.front() << ".." << t.back();
  json row{{"network", c.name},
           {"norm", norm},
           {"device", device},
           {"images", runs[0].certified_images},
           {"skipped", runs[0].skipped},
           {"avg_eps", runs[0].avg_eps},
           {"seconds_per_image_median", median},
           {"seconds_per_image_all", t},
           {"total_seconds_median", total},
           {"peak_rss_mib", static_cast<double>(peak) / 1024.0},
           {"engine_stats", runs[0].stats}};
  std::string speedup = "";
  if (d == 0) base = {median, runs[0].radii};
  if (d > 0 && base.median > 0 && median > 0) {
    std::ostringstream sp;
    sp << std::fixed << std::setprecision(1) << base.median / median << "x";
    speedup = sp.str();
    row["speedup_vs_cpu"] = base.median / median;
  }
  const std::string extra = stats_column(runs[0], d, base, gemm_peak, row);
  std::cout << std::setw(34) << c.name << std::setw(6) << norm << std::setw(11) << device << std::setw(8)
            << runs[0].certified_images << std::setw(11) << std::setprecision(5) << runs[0].avg_eps << std::setw(12)
            << std::setprecision(4) << median << std::setw(11) << std::setprecision(4) << total << std::setw(20)
            << spread.str() << std::setw(10) << peak / 1024 << std::setw(9) << speedup << extra << "\n";
  rows.push_back(row);
}

/// Times one configuration under every norm and engine, printing a line and adding a row per
/// engine and norm (a line saying so when its model is missing).
void bench_config(const Config& c, const BenchArgs& a, const std::vector<std::string>& norm_list,
                  const std::vector<std::string>& device_list, double gemm_peak, json& rows) {
  if (!std::ifstream(c.model)) {
    std::cout << std::setw(34) << c.name << "skipped: " << c.model << " not found\n";
    return;
  }
  for (const std::string& norm : norm_list) {
    Baseline base;
    const std::vector<std::vector<Run>> all_runs = interleaved_runs(c, norm, a, device_list);
    for (size_t d = 0; d < device_list.size(); ++d)
      report_engine(c, norm, d, device_list[d], all_runs[d], gemm_peak, base, rows);
  }
}

/// Writes the environment and the rows to the --json output and checks stdout; the exit status.
int write_results(cnncert::detail::OutputFile& json_out, const json& env, const json& rows) {
  try {
    json_out.stream() << json{{"environment", env}, {"results", rows}}.dump(2) << "\n";
    json_out.commit();
    cnncert::detail::check_stdout();
  } catch (const cnncert::Error& e) {
    std::cerr << "cnncert-bench: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "compare") return run_compare(argc - 1, argv + 1);
  if (argc > 1 && std::string(argv[1]) == "proven") return run_proven_bench(argc - 1, argv + 1);
  CLI::App app{"cnncert-bench: certification time per image and peak memory, CPU and GPU engines"};
  BenchArgs a;
  a.root = default_root(), a.data = default_data(a.root);
  add_options(app, a);
  cnncert::bench::one_line_parse_errors(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;  // bad input
  }

  const std::vector<std::string> norm_list = cnncert::detail::split_commas(a.norms),
                                 device_list = cnncert::detail::split_commas(a.devices);
  if (const std::string why = bad_arguments(a, norm_list, device_list); !why.empty()) {
    std::cerr << "cnncert-bench: " << why << "\n";
    return 2;
  }
  const bool with_gpu = std::find(device_list.begin(), device_list.end(), "gpu") != device_list.end();
  if (!devices_usable(device_list, with_gpu)) return 2;
  cnncert::detail::OutputFile json_out;
  if (!open_json_output(a.json_path, json_out)) return 2;
  const std::vector<Config> configs = configs_to_run(a, with_gpu);
  if (configs.empty()) {
    std::cerr << "cnncert-bench: no network of the suite matches --only " << a.only << "\n";
    return 2;
  }

  const json env = bench_environment(a);
  const double gemm_peak = env["gemm_peak_gflops_one_thread"];
  print_header(env, a.method, a.attack_moves, gemm_peak);
  json rows = json::array();
  for (const Config& c : configs) bench_config(c, a, norm_list, device_list, gemm_peak, rows);
  return write_results(json_out, env, rows);
}
