#pragma once
// Helpers shared by the cnncert-bench modes: timing, averages, and the input-convention options
// of the one-model modes (compare, proven).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "cli_options.hpp"
#include "cnncert/images.hpp"

namespace cnncert::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

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

/// --scale/--mean/--std/--layout; unset values come from the model's sidecar.
struct ConventionOptions {
  std::string scale, mean, std, layout;

  void add(CLI::App& app) {
    app.add_option("--scale", scale, "pixel scale (default: the model's sidecar)");
    app.add_option("--mean", mean, "per-channel mean");
    app.add_option("--std", std, "per-channel std");
    app.add_option("--layout", layout, "NCHW, NHWC or flat");
  }
  Preprocess resolve(const std::string& model) const { return detail::input_convention(model, scale, mean, std, layout); }
};

}  // namespace cnncert::bench
