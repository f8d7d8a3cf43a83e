#pragma once
// Error-checking macros for CUDA runtime calls and kernel launches (device-side headers only).
#include <cuda_runtime.h>

#include <string>

#include "cnncert/error.hpp"

/// Throws cnncert::CudaError with file:line, the expression and the decoded status.
#define CNNCERT_CUDA_CHECK(expr)                                                                      \
  do {                                                                                                \
    const cudaError_t cnncert_st_ = (expr);                                                           \
    if (cnncert_st_ != cudaSuccess) {                                                                 \
      throw ::cnncert::CudaError(std::string(#expr) + " failed: " + cudaGetErrorName(cnncert_st_) + " (" + \
                                     cudaGetErrorString(cnncert_st_) + ") at " + __FILE__ + ":" +     \
                                     std::to_string(__LINE__),                                        \
                                 static_cast<int>(cnncert_st_),                                       \
                                 ::cnncert::detail::source_location(__FILE__, __LINE__));             \
    }                                                                                                 \
  } while (0)

/// Checks the last kernel launch on `stream` (launch configuration errors).
#define CNNCERT_CHECK_LAUNCH(stream) \
  do {                               \
    (void)(stream);                  \
    CNNCERT_CUDA_CHECK(cudaGetLastError()); \
  } while (0)
