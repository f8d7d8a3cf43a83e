#pragma once
// The progress display of the long subcommands (certify, bounds, proven), on stderr.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cnncert/certify.hpp"

namespace cnncert::cli {

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
inline void attach(Progress& progress, CertifyOptions& o) {
  o.progress = [&progress](int64_t d, int64_t t) { progress.step(d, t); };
  o.bound.layer_progress = [&progress](int64_t d, int64_t t) { progress.layer(d, t); };
}

}  // namespace cnncert::cli
