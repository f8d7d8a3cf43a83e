#pragma once
// Parsing of the command-line values shared by `cnncert` and `cnncert-bench` (internal).
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "cnncert/error.hpp"
#include "cnncert/images.hpp"

namespace cnncert::detail {

/// The whole of `text` as a double: a value below the smallest normal double (1e-308) is read as
/// it is (subnormal, or 0), one beyond the largest is std::out_of_range, anything else
/// std::invalid_argument.
inline double whole_double(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) throw std::invalid_argument("empty");
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) throw std::invalid_argument("junk");
  if (errno == ERANGE && std::isinf(v)) throw std::out_of_range("overflow");
  return v;
}

/// Parses "0.5", "1/255" or "1e-3"; InvalidArgument naming `option` otherwise.
inline double parse_number(const std::string& text, const std::string& option) {
  const auto slash = text.find('/');
  try {
    if (slash != std::string::npos) {
      const double a = whole_double(text.substr(0, slash)), b = whole_double(text.substr(slash + 1));
      if (b == 0) throw std::invalid_argument("zero");
      return a / b;
    }
    return whole_double(text);
  } catch (const std::out_of_range&) {
    throw InvalidArgument(option + ": '" + text + "' is beyond the largest number (about 1.8e308)");
  } catch (const std::exception&) {
    throw InvalidArgument(option + ": '" + text + "' is not a number");
  }
}

/// The comma-separated items of `text`.
inline std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

/// Parses a comma-separated list of finite numbers.
inline std::vector<double> parse_list(const std::string& text, const std::string& option) {
  std::vector<double> out;
  for (const std::string& item : split_commas(text)) out.push_back(parse_number(item, option));
  if (out.empty()) throw InvalidArgument(option + ": empty list");
  for (double v : out)
    if (!std::isfinite(v)) throw InvalidArgument(option + ": values must be finite");
  return out;
}

/// The model's input convention: its sidecar (if any) with the given --scale/--mean/--std/--layout
/// values (empty = keep) on top, checked.
inline Preprocess input_convention(const std::string& model, const std::string& scale, const std::string& mean,
                                   const std::string& std_dev, const std::string& layout,
                                   const std::string& sidecar = "") {
  Preprocess p = sidecar.empty() ? load_sidecar(model).value_or(Preprocess{}) : read_sidecar(sidecar);
  if (!scale.empty()) p.scale = parse_number(scale, "--scale");
  if (!mean.empty()) p.mean = parse_list(mean, "--mean");
  if (!std_dev.empty()) p.std = parse_list(std_dev, "--std");
  if (!layout.empty()) p.layout = parse_layout(layout);
  // Same rule as the sidecar's: a pixel scale is positive (a negative one would mirror the images).
  if (!std::isfinite(p.scale) || !(p.scale > 0)) throw InvalidArgument("--scale must be positive and finite");
  for (double s : p.std)
    if (!(s > 0)) throw InvalidArgument("--std values must be positive");
  return p;
}

/// --scale/--mean/--std/--layout, on top of the model's sidecar or --sidecar (see input_convention).
struct ConventionOptions {
  std::string scale, mean, std, layout, sidecar;

  /// Whether the user said anything about the convention: flags, --sidecar, or MODEL.json.
  bool given(const std::string& model) const {
    std::error_code ec;
    return !scale.empty() || !mean.empty() || !std.empty() || !layout.empty() || !sidecar.empty() ||
           std::filesystem::exists(model + ".json", ec);
  }

  void add(CLI::App& app) {
    app.add_option("--sidecar", sidecar, "the input convention as JSON (instead of MODEL.json beside the model)");
    app.add_option("--scale", scale, "pixel scale, e.g. 1/255 (default: sidecar MODEL.json, else 1)");
    app.add_option("--mean", mean, "per-channel mean subtracted after scaling, e.g. 0.4914,0.4822,0.4465");
    app.add_option("--std", std, "per-channel standard deviation divided by after the mean");
    app.add_option("--layout", layout,
                   "element order of the model input: NCHW, NHWC, flat or colmajor (MATLAB/CORA: y + H*(x + W*c))");
  }
  Preprocess resolve(const std::string& model) const {
    return input_convention(model, scale, mean, std, layout, sidecar);
  }
};

}  // namespace cnncert::detail
