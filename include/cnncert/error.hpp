#pragma once
/// \file error.hpp
/// Exception types and checking macros used throughout cnncert.

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <string>

namespace cnncert {

namespace detail {
/// A message as one line of printable text: control characters (a newline, a NUL from a corrupt
/// file, ...) become \xNN, and beyond 2000 characters the rest is left out (with a count).
inline std::string one_line(const std::string& msg) {
  constexpr size_t kMax = 2000;
  std::string out;
  out.reserve(std::min(msg.size(), kMax) + 32);
  size_t i = 0;
  for (; i < msg.size() && out.size() < kMax; ++i) {
    const auto c = static_cast<unsigned char>(msg[i]);
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
      continue;
    }
    static const char* hex = "0123456789abcdef";
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  if (i < msg.size()) out += "... (" + std::to_string(msg.size() - i) + " more characters)";
  return out;
}
}  // namespace detail

/// Base class of every exception cnncert throws. `what()` is a one-line message meant for users (detail::one_line);
/// `where()` is the source location that raised it (for bug reports).
class Error : public std::runtime_error {
 public:
  /// Creates an error with a user-facing message and the source location that raised it.
  explicit Error(const std::string& msg, std::string where = {})
      : std::runtime_error(detail::one_line(msg)), where_(std::move(where)) {}
  /// Source location ("file:line") that raised the error, empty if unknown.
  const std::string& where() const noexcept { return where_; }

 private:
  std::string where_;
};

/// Bad user input: a file that is missing or malformed, an option out of range, a shape mismatch.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// An ONNX model uses an operator or attribute cnncert does not handle (the message names the node).
class UnsupportedModel : public Error {
 public:
  using Error::Error;
};

/// A broken internal invariant: a bug in cnncert.
class InternalError : public Error {
 public:
  using Error::Error;
};

/// A CUDA runtime, cuBLAS or cuDNN call failed; carries the library status code.
class CudaError : public Error {
 public:
  /// Creates the error with the decoded message and the raw status code.
  CudaError(const std::string& msg, int code, std::string where = {}) : Error(msg, std::move(where)), code_(code) {}
  /// The raw status code returned by the failing call.
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace detail {
inline std::string source_location(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}
}  // namespace detail

}  // namespace cnncert

/// Throws cnncert::InvalidArgument with the streamed message `msg` when `cond` is false.
#define CNNCERT_CHECK(cond, msg)                                                                                   \
  do {                                                                                                             \
    if (!(cond)) {                                                                                                 \
      std::ostringstream cnncert_os_;                                                                              \
      cnncert_os_ << msg;                                                                                          \
      throw ::cnncert::InvalidArgument(cnncert_os_.str(), ::cnncert::detail::source_location(__FILE__, __LINE__)); \
    }                                                                                                              \
  } while (0)

/// Throws cnncert::UnsupportedModel with the streamed message `msg` when `cond` is false.
#define CNNCERT_CHECK_MODEL(cond, msg)                                                                              \
  do {                                                                                                              \
    if (!(cond)) {                                                                                                  \
      std::ostringstream cnncert_os_;                                                                               \
      cnncert_os_ << msg;                                                                                           \
      throw ::cnncert::UnsupportedModel(cnncert_os_.str(), ::cnncert::detail::source_location(__FILE__, __LINE__)); \
    }                                                                                                               \
  } while (0)

/// Throws cnncert::InternalError naming the failed expression when `cond` is false.
#define CNNCERT_ASSERT(cond)                                                                              \
  do {                                                                                                    \
    if (!(cond)) {                                                                                        \
      throw ::cnncert::InternalError(std::string("internal error: assertion failed: ") + #cond + " at " + \
                                         ::cnncert::detail::source_location(__FILE__, __LINE__),          \
                                     ::cnncert::detail::source_location(__FILE__, __LINE__));             \
    }                                                                                                     \
  } while (0)
