#pragma once
// Helpers of the command-line tests: run a program, capture its outputs and exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>

#include "common/test_util.hpp"

namespace cnncert::test {

struct Result {
  int code = -1;
  std::string out, err;
};

/// Runs `program` with `args` (shell-quoted by the caller), capturing stdout and stderr.
inline Result run(const std::string& program, const std::string& args) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto err_path = dir / ("cnncert_cli_err_" + std::to_string(::getpid()));
  const std::string cmd = program + " " + args + " 2>" + err_path.string();
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err_path);
  std::filesystem::remove(err_path);
  return r;
}

/// Runs the cnncert command.
inline Result cli(const std::string& args) {
  return run(CNNCERT_CLI_PATH, args);
}

inline const std::string kModel = (source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string();
inline const std::string kImages = (source_dir() / "data/mnist_test_100.npy").string();

/// Exit code 2 and exactly one line on stderr that contains `needle`.
inline void expect_bad_input(const Result& r, const std::string& needle) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace cnncert::test
