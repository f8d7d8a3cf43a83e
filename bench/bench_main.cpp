// cnncert-bench: times full certifications (the 15-step CNN-Cert search) per image and reports
// seconds per image (median of repeats) and the peak memory of each run (every run is a fresh
// child process, so its peak resident set is its own).
#include <CLI/CLI.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cnncert/certify.hpp"
#include "cnncert/cnncert.hpp"
#include "environment.hpp"

namespace {

using json = nlohmann::json;

struct Config {
  std::string name, model, images;
  cnncert::Preprocess pre;
  int64_t count = 100;
};

/// The networks of issue 3's benchmark with the input conventions of ../shared/data/README.md.
std::vector<Config> suite(const std::string& root, const std::string& data, int64_t n, int64_t n_large) {
  const std::string mnist = data + "/images/mnist/t10k-images-idx3-ubyte.gz", cifar = data + "/images/eran/cifar10_test.csv";
  std::vector<Config> s;
  cnncert::Preprocess shipped = cnncert::load_sidecar(root + "/models/mnist_cnn_3layer_5_3.onnx").value_or(cnncert::Preprocess{});
  s.push_back({"mnist_cnn_3layer_5_3 (shipped)", root + "/models/mnist_cnn_3layer_5_3.onnx", root + "/data/mnist_test_100.npy", shipped, n});
  cnncert::Preprocess unit;
  unit.scale = 1.0 / 255;
  s.push_back({"mnist_verivital_convnet_maxpool", data + "/nets/mnist_verivital_convnet_maxpool.onnx", mnist, unit, n});
  cnncert::Preprocess oval = unit;
  oval.mean = {0.485, 0.456, 0.406};
  oval.std = {0.225};
  s.push_back({"cifar_oval21_base_kw", data + "/nets/cifar_oval21_base_kw.onnx", cifar, oval, n});
  cnncert::Preprocess res = unit;
  res.mean = {0.4914, 0.4822, 0.4465};
  res.std = {0.2471, 0.2435, 0.2616};
  s.push_back({"cifar_resnet_2b", data + "/nets/cifar_resnet_2b.onnx", cifar, res, n_large});
  return s;
}

struct Run {
  double seconds_per_image = 0, avg_eps = 0, total_seconds = 0;
  int64_t certified_images = 0, skipped = 0;
  long peak_kb = 0;
  std::string error;
};

/// One certification in a child process; the parent reads its result and its peak memory.
Run run_child(const Config& c, const std::string& norm, const std::string& method, int threads) {
  int fd[2];
  if (pipe(fd) != 0) return Run{0, 0, 0, 0, 0, 0, "pipe failed"};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    json out;
    try {
      const cnncert::Network net = cnncert::import_onnx(c.model);
      cnncert::LoadOptions lo;
      lo.limit = c.count;
      const cnncert::ImageSet set = cnncert::load_images(c.images, lo);
      const auto x = cnncert::preprocess(set, c.pre, net);
      cnncert::CertifyOptions o;
      o.bound.norm = cnncert::parse_norm(norm);
      o.bound.method = cnncert::parse_method(method);
      auto engine = cnncert::make_cpu_engine(net, threads);
      const auto t0 = std::chrono::steady_clock::now();
      const auto res = cnncert::certify(net, *engine, x, set.labels, o);
      const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      int64_t n = 0, skipped = 0;
      double sum = 0;
      for (const auto& r : res) {
        if (r.skipped) {
          ++skipped;
          continue;
        }
        ++n;
        sum += r.targets[0].eps;
      }
      out = {{"total", total}, {"n", n}, {"skipped", skipped}, {"avg_eps", n ? sum / static_cast<double>(n) : 0.0}};
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
  r.seconds_per_image = r.certified_images ? r.total_seconds / static_cast<double>(r.certified_images) : 0;
  return r;
}

}  // namespace

int run_compare(int argc, char** argv);

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "compare") return run_compare(argc - 1, argv + 1);
  CLI::App app{"cnncert-bench: certification time per image and peak memory (CPU engine)"};
  std::string data = CNNCERT_DEFAULT_SHARED_DATA, root = CNNCERT_SOURCE_DIR, json_path, norms = "inf,2", method = "adaptive";
  std::string model, images;
  int64_t n = 100, n_large = 10;
  int repeat = 3, threads = 0;
  app.add_option("--data", data, "shared data directory (real networks and images)")->capture_default_str();
  app.add_option("-n,--count", n, "images per network")->capture_default_str();
  app.add_option("--count-large", n_large, "images for the ResNet (slow on a CPU)")->capture_default_str();
  app.add_option("--repeat", repeat, "runs per configuration (the median is reported)")->capture_default_str();
  app.add_option("--norms", norms, "comma-separated norms")->capture_default_str();
  app.add_option("--method", method, "relaxation method")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all)");
  app.add_option("--model", model, "benchmark this model only (with --images; conventions from its sidecar)");
  app.add_option("--images", images, "images for --model");
  app.add_option("--json", json_path, "write the results as JSON");
  CLI11_PARSE(app, argc, argv);

  std::vector<Config> configs;
  if (!model.empty()) {
    configs.push_back({model, model, images, cnncert::load_sidecar(model).value_or(cnncert::Preprocess{}), n});
  } else {
    configs = suite(root, data, n, n_large);
  }
  std::vector<std::string> norm_list;
  std::stringstream ns(norms);
  for (std::string t; std::getline(ns, t, ',');) norm_list.push_back(t);

  json env = cnncert::bench::environment();
  env["method"] = method;
  env["repeat"] = repeat;
  std::cout << cnncert::bench::environment_line(env) << "\n";
  std::cout << "method " << method << ", CNN-Cert search (15 steps from 0.05), random targets (seed 1215), CPU engine\n\n";
  std::cout << std::left << std::setw(34) << "network" << std::setw(6) << "norm" << std::setw(8) << "images" << std::setw(12)
            << "avg eps" << std::setw(14) << "s/image" << std::setw(22) << "spread (min..max)" << "peak MiB\n";
  json rows = json::array();
  for (const Config& c : configs) {
    if (!std::ifstream(c.model)) {
      std::cout << std::setw(34) << c.name << "skipped: " << c.model << " not found\n";
      continue;
    }
    for (const std::string& norm : norm_list) {
      std::vector<Run> runs;
      for (int i = 0; i < repeat; ++i) runs.push_back(run_child(c, norm, method, threads));
      if (!runs[0].error.empty()) {
        std::cout << std::setw(34) << c.name << std::setw(6) << norm << "error: " << runs[0].error << "\n";
        continue;
      }
      std::vector<double> t;
      long peak = 0;
      for (const Run& r : runs) t.push_back(r.seconds_per_image), peak = std::max(peak, r.peak_kb);
      std::sort(t.begin(), t.end());
      const double median = t[t.size() / 2];
      std::ostringstream spread;
      spread << std::fixed << std::setprecision(4) << t.front() << ".." << t.back();
      std::cout << std::setw(34) << c.name << std::setw(6) << norm << std::setw(8) << runs[0].certified_images << std::setw(12)
                << std::setprecision(5) << runs[0].avg_eps << std::setw(14) << std::setprecision(4) << median << std::setw(22)
                << spread.str() << peak / 1024 << "\n";
      rows.push_back({{"network", c.name}, {"norm", norm}, {"images", runs[0].certified_images}, {"skipped", runs[0].skipped},
                      {"avg_eps", runs[0].avg_eps}, {"seconds_per_image_median", median}, {"seconds_per_image_all", t},
                      {"peak_rss_mib", static_cast<double>(peak) / 1024.0}});
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << json{{"environment", env}, {"results", rows}}.dump(2) << "\n";
  return 0;
}
