#pragma once
// Stand-in for the part of cuBLAS that cuda/cuda_ops.cu calls, under the CPU emulation
// (CNNCERT_CUDA_EMULATION=ON with CNNCERT_EMULATE_CUDA_LIBS=ON; docs/CUDA_EMULATION.md). The names,
// values and signatures are cuBLAS's; the bodies (libraries.cpp) compute what the BLAS definition
// of sgemm says (column-major C = alpha op(A) op(B) + beta C, C not read when beta is 0), check the
// arguments cuBLAS checks (sizes, leading dimensions) and, as a GPU would only report as a fault,
// that every matrix lies inside a device allocation. The modes that allow reduced precision in
// single-precision GEMMs (CUBLAS_TENSOR_OP_MATH, CUBLAS_TF32_TENSOR_OP_MATH,
// CUBLAS_FP32_EMULATED_BF16X9_MATH) round the operands to TF32 (a stand-in for any of them), so
// that asking for one changes the results here too. Test builds only.
#include "cuda_runtime.h"

enum cublasStatus_t : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasMath_t : int {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_FP32_EMULATED_BF16X9_MATH = 4,
  CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH = 8,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,  // a flag, or'ed into a mode
};
enum cublasAtomicsMode_t : int { CUBLAS_ATOMICS_NOT_ALLOWED = 0, CUBLAS_ATOMICS_ALLOWED = 1 };

struct cublasContext;
using cublasHandle_t = cublasContext*;

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasSetAtomicsMode(cublasHandle_t handle, cublasAtomicsMode_t mode);
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                           const float* beta, float* c, int ldc);

namespace cnncert::emu {
/// Test hook: the next `n` cublasSgemm calls with work to do return CUBLAS_STATUS_EXECUTION_FAILED
/// without touching their output, as a cuBLAS failing at execution time would.
void cublas_fail_next_calls(int n);
}  // namespace cnncert::emu
