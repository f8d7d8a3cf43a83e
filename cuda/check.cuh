#pragma once
// Error checks for CUDA runtime, cuBLAS and cuDNN calls, and the one way kernels are launched
// (CNNCERT_LAUNCH), which builds with nvcc and under the CPU emulation (cuda/emulation/).
#include <cuda_runtime.h>

#include <string>

#include "cnncert/error.hpp"

#if CNNCERT_HAVE_CUBLAS
#include <cublas_v2.h>
#endif
#if CNNCERT_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace cnncert::cuda {

/// Throws cnncert::CudaError for a failed runtime call: `what` failed, the decoded status, file:line.
[[noreturn]] inline void throw_cuda(cudaError_t st, const std::string& what, const char* file, int line) {
  // The failure is reported here: clear it from the runtime's last error, so that a caller that
  // catches this and carries on is not told about it again at its next launch (sticky faults stay).
  (void)cudaGetLastError();
  throw CudaError(what + " failed: " + cudaGetErrorName(st) + " (" + cudaGetErrorString(st) + ") at " + file + ":" +
                      std::to_string(line),
                  static_cast<int>(st), detail::source_location(file, line));
}

/// Before a launch: an error left by an earlier call that nobody checked would otherwise be
/// reported as this launch's failure, so it is reported as what it is.
inline void expect_no_pending_error(const char* kernel, const char* file, int line) {
  const cudaError_t st = cudaGetLastError();
  if (st != cudaSuccess)
    throw_cuda(st, std::string("an earlier CUDA call (found before launching ") + kernel + ")", file, line);
}

/// After a launch: its configuration errors (and sticky faults).
inline void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t st = cudaGetLastError();
  if (st != cudaSuccess) throw_cuda(st, std::string("launch of ") + kernel, file, line);
}

#if CNNCERT_HAVE_CUBLAS
inline void cublas_check(cublasStatus_t st, const char* what, const char* file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string(what) + " failed: cuBLAS status " + std::to_string(static_cast<int>(st)) + " at " +
                        file + ":" + std::to_string(line),
                    static_cast<int>(st), detail::source_location(file, line));
}
#endif
#if CNNCERT_HAVE_CUDNN
inline void cudnn_check(cudnnStatus_t st, const char* what, const char* file, int line) {
  if (st != CUDNN_STATUS_SUCCESS)
    throw CudaError(
        std::string(what) + " failed: " + cudnnGetErrorString(st) + " at " + file + ":" + std::to_string(line),
        static_cast<int>(st), detail::source_location(file, line));
}
#endif

}  // namespace cnncert::cuda

/// Throws cnncert::CudaError with file:line, the expression and the decoded status.
#define CNNCERT_CUDA_CHECK(expr)                                                                         \
  do {                                                                                                   \
    const cudaError_t cnncert_st_ = (expr);                                                              \
    if (cnncert_st_ != cudaSuccess) ::cnncert::cuda::throw_cuda(cnncert_st_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CNNCERT_CUBLAS(expr) ::cnncert::cuda::cublas_check((expr), #expr, __FILE__, __LINE__)
#define CNNCERT_CUDNN(expr) ::cnncert::cuda::cudnn_check((expr), #expr, __FILE__, __LINE__)

#if CNNCERT_CUDA_EMULATION_RUNTIME
#define CNNCERT_LAUNCH_RAW(kernel, grid, block, shared, stream, ...) \
  ::cnncert::emu::launch(#kernel, kernel, grid, block, shared, stream, __VA_ARGS__)
#else
#define CNNCERT_LAUNCH_RAW(kernel, grid, block, shared, stream, ...) \
  kernel<<<grid, block, shared, stream>>>(__VA_ARGS__)
#endif

/// Launches kernel<<<grid, block, shared, stream>>>(args...) and checks the launch; an error
/// pending from an earlier call is reported as such, not as this launch's.
#define CNNCERT_LAUNCH(kernel, grid, block, shared, stream, ...)           \
  do {                                                                     \
    ::cnncert::cuda::expect_no_pending_error(#kernel, __FILE__, __LINE__); \
    CNNCERT_LAUNCH_RAW(kernel, grid, block, shared, stream, __VA_ARGS__);  \
    ::cnncert::cuda::check_launch(#kernel, __FILE__, __LINE__);            \
  } while (0)
