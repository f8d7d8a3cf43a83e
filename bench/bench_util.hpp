#pragma once
// Helpers shared by the cnncert-bench modes: timing, averages, and the input-convention options
// of the one-model modes (compare, proven).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "cli/options.hpp"
#include "cnncert/images.hpp"
#include "cnncert/network.hpp"
#include "cnncert/onnx.hpp"

namespace cnncert::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

/// The upper median (the middle value of an odd count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// A network with its images, preprocessed into the network's input space.
struct LoadedInput {
  Network net;
  ImageSet set;
  std::vector<double> x;
};

/// Parse errors of a bench command on one line, as its other errors.
inline void one_line_parse_errors(CLI::App& app) {
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("cnncert-bench: error: ") + e.what() + " (see --help)\n";
  });
}

/// The model and images of the one-model modes: --model, --images, -n and the input convention
/// (unset values come from the model's sidecar).
struct ModelInput {
  std::string model, images;
  detail::ConventionOptions convention;
  int64_t count;

  explicit ModelInput(int64_t default_count) : count(default_count) {}

  void add(CLI::App& app) {
    app.add_option("--model", model, "ONNX model")->required();
    app.add_option("--images", images, "images")->required();
    app.add_option("-n,--count", count, "images (at least 1)")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
        ->capture_default_str();
    convention.add(app);
  }

  LoadedInput load() const {
    LoadOptions lo;
    lo.limit = count;
    LoadedInput in{import_onnx(model), load_images(images, lo), {}};
    in.x = preprocess(in.set, convention.resolve(model), in.net);
    return in;
  }
};

}  // namespace cnncert::bench
