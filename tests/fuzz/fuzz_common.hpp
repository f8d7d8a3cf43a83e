// Shared helpers of the libFuzzer targets (tests/fuzz/README.md).
//
// Policy: a cnncert::Error that means "input rejected with a message" (InvalidArgument,
// UnsupportedModel, ...) is the expected outcome for bad input and ends the run of that input.
// cnncert::InternalError (a broken invariant: a bug), any other exception, a crash, a sanitizer
// report, a leak or a timeout is a finding.
#pragma once

#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "cnncert/error.hpp"
#include "cnncert/images.hpp"

namespace cnncert::fuzz {

/// Aborts (a finding libFuzzer records with the input) after printing why.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "==cnncert-fuzz== FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

/// Checks an invariant the library promises; a violation is a finding.
#define CNNCERT_FUZZ_EXPECT(cond, msg)                                                                 \
  do {                                                                                                 \
    if (!(cond)) ::cnncert::fuzz::finding(std::string("expectation failed: ") + #cond + ": " + (msg)); \
  } while (0)

/// Runs `body`; an Error other than InternalError is the expected rejection of bad input.
template <class F>
int guarded(F&& body) {
  try {
    body();
  } catch (const cnncert::InternalError& e) {
    finding(std::string("cnncert::InternalError: ") + e.what() + " [" + e.where() + "]");
  } catch (const cnncert::Error& e) {
    // rejected with a message: fine (CNNCERT_FUZZ_VERBOSE=1 prints it, e.g. to check seeds)
    static const bool verbose = std::getenv("CNNCERT_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
  } catch (const std::exception& e) {
    finding(std::string("unexpected std::exception: ") + e.what());
  } catch (...) {
    finding("unexpected non-std exception");
  }
  return 0;
}

/// A per-process scratch directory (/dev/shm when usable, else /tmp), removed at exit. The
/// string is never destroyed, so the exit handler can still use it.
inline const std::string& scratch_dir() {
  static const std::string* const dir = [] {
    std::error_code ec;
    const char* base =
        std::filesystem::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    auto* d = new std::string(std::string(base) + "/cnncert-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(*d, ec);
    if (ec) finding("cannot create the scratch directory " + *d + ": " + ec.message());
    std::atexit([] {
      std::error_code e2;
      std::filesystem::remove_all(scratch_dir(), e2);
    });
    return d;
  }();
  return *dir;
}

/// Path of `name` inside the scratch directory.
inline std::string scratch(const std::string& name) {
  return scratch_dir() + "/" + name;
}

/// Writes `bytes` to `path` (replacing it); a failure here is a harness problem, not a finding
/// of the library, but it must not go unnoticed.
inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) finding("harness: cannot write " + path);
}

inline void remove_file(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

/// Reads every value of a loaded set and checks the ImageSet invariants images.hpp states.
inline double touch(const ImageSet& s) {
  CNNCERT_FUZZ_EXPECT(s.count > 0, "a loaded set has images");
  CNNCERT_FUZZ_EXPECT(s.channels > 0 && s.height > 0 && s.width > 0, "positive image shape");
  CNNCERT_FUZZ_EXPECT(static_cast<int64_t>(s.pixels.size()) == s.count * s.image_size(), "pixels = count x C x H x W");
  CNNCERT_FUZZ_EXPECT(static_cast<int64_t>(s.labels.size()) == s.count, "one label per image");
  double sum = 0;
  for (double v : s.pixels) {
    CNNCERT_FUZZ_EXPECT(std::isfinite(v), "loaded pixels are finite (loaders reject NaN/Inf)");
    sum += v;
  }
  for (int64_t l : s.labels) {
    CNNCERT_FUZZ_EXPECT(l >= -1, "labels are classes or -1");
    sum += static_cast<double>(l);
  }
  return sum;
}

/// Loads `path` with `o`, touches the result, and when it holds two or more images loads the
/// second one alone (offset/limit paths) and checks it matches.
inline void load_and_touch(const std::string& path, LoadOptions o = {}) {
  const ImageSet all = load_images(path, o);
  touch(all);
  if (all.count >= 2) {
    LoadOptions one = o;
    one.offset = o.offset + 1;
    one.limit = 1;
    const ImageSet s = load_images(path, one);
    touch(s);
    CNNCERT_FUZZ_EXPECT(s.count == 1 && s.image_size() == all.image_size(),
                        "offset/limit read one image of the same shape");
    const int64_t d = all.image_size();
    for (int64_t i = 0; i < d; ++i)
      CNNCERT_FUZZ_EXPECT(s.pixels[static_cast<size_t>(i)] == all.pixels[static_cast<size_t>(d + i)],
                          "image 1 read alone equals image 1 of the whole file");
    CNNCERT_FUZZ_EXPECT(s.labels[0] == all.labels[1], "label of image 1 read alone");
  }
}

/// Splits `data` at the first occurrence of `sep`: {before, after}; after is empty (and
/// `found` false) when there is none.
inline std::pair<std::string_view, std::string_view> split(std::string_view data, std::string_view sep, bool& found) {
  const size_t at = data.find(sep);
  found = at != std::string_view::npos;
  if (!found) return {data, {}};
  return {data.substr(0, at), data.substr(at + sep.size())};
}

}  // namespace cnncert::fuzz
