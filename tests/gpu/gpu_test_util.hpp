#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cnncert/cuda.hpp"

namespace cnncert::test {

/// True when CNNCERT_REQUIRE_GPU=1: a missing GPU is then a failure, never a skip.
inline bool gpu_required() {
  const char* v = std::getenv("CNNCERT_REQUIRE_GPU");
  return v && std::string(v) == "1";
}

/// Fixture for GPU tests: skips without a usable GPU unless CNNCERT_REQUIRE_GPU=1.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_available()) return;
    if (gpu_required()) FAIL() << "CNNCERT_REQUIRE_GPU=1 but no GPU is usable: " << cuda_device_info();
    GTEST_SKIP() << "no usable GPU (" << cuda_device_info() << ")";
  }
};

}  // namespace cnncert::test
