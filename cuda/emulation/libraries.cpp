// Stand-ins for the cuBLAS and cuDNN calls of cuda/cuda_ops.cu under the CPU emulation
// (cublas_v2.h, cudnn.h; docs/CUDA_EMULATION.md). Each call checks its arguments as the library
// documents, checks that every operand lies inside a device allocation (a GPU would fault), and
// computes the documented result with plain loops, summing each output's terms in the order of
// the engine's own kernels (taps row by row, then output channels; GEMM terms in k order), so
// that with full float32 math the results are bit-identical to them. Test builds only.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cudnn.h"

namespace {

using cnncert::emu::device_fault;
using cnncert::emu::device_faulted;
using cnncert::emu::device_range;

/// Counts down the failures a test asked for (emu::cublas_fail_next_calls, cudnn_fail_next_executions).
bool take_failure(std::atomic<int>& left_to_fail) {
  for (int left = left_to_fail.load(); left > 0;)
    if (left_to_fail.compare_exchange_weak(left, left - 1)) return true;
  return false;
}

std::atomic<int> g_sgemm_fail_next{0}, g_conv_fail_next{0};  // the failures still to give

/// Rounds to TF32 (10 explicit mantissa bits; to nearest, ties to even: the hardware's conversion
/// may break ties otherwise or truncate, which matters only for telling full float32 apart).
float tf32(float x) {
  if (!std::isfinite(x)) return x;
  uint32_t b = 0;
  std::memcpy(&b, &x, sizeof b);
  b += 0xFFFu + ((b >> 13) & 1u);
  b &= ~0x1FFFu;
  std::memcpy(&x, &b, sizeof b);
  return x;
}

/// An operand outside device memory: a fault on a GPU (reported there at a later call).
bool operand_ok(const void* p, size_t bytes, const char* call, const char* what) {
  if (bytes == 0 || device_range(p, bytes)) return true;
  device_fault((std::string(call) + ": " + what + " (" + std::to_string(bytes) +
                " bytes) does not lie inside one device allocation")
                   .c_str());
  return false;
}

}  // namespace

// ---- cuBLAS -------------------------------------------------------------------------------------

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cublasAtomicsMode_t atomics = CUBLAS_ATOMICS_NOT_ALLOWED;
};

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int m = mode & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
  if (m != CUBLAS_DEFAULT_MATH && m != CUBLAS_TENSOR_OP_MATH && m != CUBLAS_PEDANTIC_MATH &&
      m != CUBLAS_TF32_TENSOR_OP_MATH && m != CUBLAS_FP32_EMULATED_BF16X9_MATH &&
      m != CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH)
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = static_cast<cublasMath_t>(m);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetAtomicsMode(cublasHandle_t handle, cublasAtomicsMode_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_ATOMICS_NOT_ALLOWED && mode != CUBLAS_ATOMICS_ALLOWED) return CUBLAS_STATUS_INVALID_VALUE;
  handle->atomics = mode;
  return CUBLAS_STATUS_SUCCESS;
}

// C (m × n, column-major, leading dimension ldc) = alpha op(A) op(B) + beta C, op(A) m × k and
// op(B) k × n; C is not read when beta is 0 (BLAS). Quick return when m or n is 0.
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                           const float* beta, float* c, int ldc) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const auto op_ok = [](cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; };
  if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;  // real data: C is T
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (lda < std::max<int64_t>(1, a_rows) || ldb < std::max<int64_t>(1, b_rows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (take_failure(g_sgemm_fail_next) || device_faulted()) return CUBLAS_STATUS_EXECUTION_FAILED;
  const cnncert::emu::DeviceAccess access{a, b, c};  // (the library computes on its operands)
  const auto span = [](int64_t rows, int64_t cols, int64_t ld) {
    return rows == 0 || cols == 0 ? size_t(0) : static_cast<size_t>((cols - 1) * ld + rows) * sizeof(float);
  };
  const float al = *alpha, be = *beta;
  if (al == 0 || k == 0) {  // C = beta C, A and B not referenced (BLAS); nothing to do for beta 1
    if (be == 1) return CUBLAS_STATUS_SUCCESS;
    if (!operand_ok(c, span(m, n, ldc), "cublasSgemm", "C")) return CUBLAS_STATUS_SUCCESS;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) c[i + j * ldc] = be == 0 ? 0.0f : be * c[i + j * ldc];
    return CUBLAS_STATUS_SUCCESS;
  }
  if (!operand_ok(a, span(a_rows, a_cols, lda), "cublasSgemm", "A") ||
      !operand_ok(b, span(b_rows, b_cols, ldb), "cublasSgemm", "B") ||
      !operand_ok(c, span(m, n, ldc), "cublasSgemm", "C"))
    return CUBLAS_STATUS_SUCCESS;  // as on a GPU: the call returns, the fault is sticky
  const bool round = handle->math == CUBLAS_TENSOR_OP_MATH || handle->math == CUBLAS_TF32_TENSOR_OP_MATH ||
                     handle->math == CUBLAS_FP32_EMULATED_BF16X9_MATH;
  const auto rd = [round](float x) { return round ? tf32(x) : x; };
  std::vector<float> acc(static_cast<size_t>(m));
  for (int64_t j = 0; j < n; ++j) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t l = 0; l < k; ++l) {
      const float bv = rd(tb ? b[j + l * ldb] : b[l + j * ldb]);
      for (int64_t i = 0; i < m; ++i) acc[static_cast<size_t>(i)] += rd(ta ? a[l + i * lda] : a[i + l * lda]) * bv;
    }
    for (int64_t i = 0; i < m; ++i) {
      float v = al * acc[static_cast<size_t>(i)];
      if (be != 0) v += be * c[i + j * ldc];
      c[i + j * ldc] = v;
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

// ---- cuDNN --------------------------------------------------------------------------------------

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  int n = 0, c = 0, h = 0, w = 0;
};
struct cudnnFilterStruct {
  bool set = false;
  int k = 0, c = 0, h = 0, w = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1, groups = 1;
  cudnnConvolutionMode_t mode = CUDNN_CONVOLUTION;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

/// The checks shared by the algorithm query, the workspace query and the execution: set
/// descriptors, the input channels the filter's times the groups, output channels divisible by
/// the groups, and dy of the shape the forward convolution of dx would have.
cudnnStatus_t check_backward(cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy, cudnnConvolutionDescriptor_t cv,
                             cudnnTensorDescriptor_t dx) {
  if (!dy || !dy->set) return CUDNN_STATUS_BAD_PARAM;
  int n = 0, c = 0, h = 0, wd = 0;  // (checks the other three descriptors)
  if (const cudnnStatus_t st = cudnnGetConvolution2dForwardOutputDim(cv, dx, w, &n, &c, &h, &wd);
      st != CUDNN_STATUS_SUCCESS)
    return st;
  if (dy->n != n || dy->c != c || dy->h != h || dy->w != wd) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

size_t elems(int a, int b, int c, int d) {
  return static_cast<size_t>(a) * static_cast<size_t>(b) * static_cast<size_t>(c) * static_cast<size_t>(d);
}

/// Workspace of the emulated algorithms: ALGO_1 keeps a copy of the filter in it (so that a
/// workspace smaller than asked for is caught), ALGO_0 needs none.
size_t workspace_of(cudnnConvolutionBwdDataAlgo_t algo, const cudnnFilterStruct& w) {
  return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ? elems(w.k, w.c, w.h, w.w) * sizeof(float) : 0;
}

bool tensor_ops_allowed(cudnnMathType_t m) {
  return m != CUDNN_FMA_MATH;  // DEFAULT permits TF32 on Ampere and later
}

template <class T>
cudnnStatus_t create(T** out) {
  if (!out) return CUDNN_STATUS_BAD_PARAM;
  *out = new T;
  return CUDNN_STATUS_SUCCESS;
}
template <class T>
cudnnStatus_t destroy(T* p) {
  delete p;
  return CUDNN_STATUS_SUCCESS;
}
/// A 4-d tensor or filter descriptor (dims a, b, c, d: n c h w, or k c h w): positive dims, NCHW
/// float32 only (the emulated subset).
template <class D>
cudnnStatus_t set_4d(D* desc, cudnnTensorFormat_t format, cudnnDataType_t type, int a, int b, int c, int d) {
  if (!desc || a <= 0 || b <= 0 || c <= 0 || d <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  *desc = {true, a, b, c, d};
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

namespace cnncert::emu {
void cudnn_fail_next_executions(int n) {
  g_conv_fail_next = n;
}
void cublas_fail_next_calls(int n) {
  g_sgemm_fail_next = n;
}
}  // namespace cnncert::emu

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_UNKNOWN_STATUS";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  return create(handle);
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  return destroy(handle);
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) {
  return create(desc);
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  return destroy(desc);
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format, cudnnDataType_t type,
                                         int n, int c, int h, int w) {
  return set_4d(desc, format, type, n, c, h, w);
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) {
  return create(desc);
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  return destroy(desc);
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  return set_4d(desc, format, type, k, c, h, w);
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) {
  return create(desc);
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  return destroy(desc);
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute_type) {
  if (!desc || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0 ||
      (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION))
    return CUDNN_STATUS_BAD_PARAM;
  if (compute_type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  desc->set = true;
  desc->pad_h = pad_h, desc->pad_w = pad_w, desc->u = u, desc->v = v;
  desc->dil_h = dilation_h, desc->dil_w = dilation_w, desc->mode = mode;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int group_count) {
  if (!desc || group_count < 1) return CUDNN_STATUS_BAD_PARAM;
  desc->groups = group_count;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math_type) {
  if (!desc || math_type < CUDNN_DEFAULT_MATH || math_type > CUDNN_FMA_MATH) return CUDNN_STATUS_BAD_PARAM;
  desc->math = math_type;
  return CUDNN_STATUS_SUCCESS;
}
// Output size 1 + (in + 2 pad − ((filter − 1) dilation + 1)) / stride per spatial dimension.
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t conv,
                                                    const cudnnTensorDescriptor_t input,
                                                    const cudnnFilterDescriptor_t filter, int* n, int* c, int* h,
                                                    int* w) {
  if (!conv || !input || !filter || !n || !c || !h || !w || !conv->set || !input->set || !filter->set)
    return CUDNN_STATUS_BAD_PARAM;
  // (Output channels not divisible by the groups: cuDNN documents NOT_SUPPORTED at execution; the
  // stand-in refuses them here already. The engine's geometries always divide.)
  if (input->c != filter->c * conv->groups || filter->k % conv->groups != 0) return CUDNN_STATUS_BAD_PARAM;
  const int64_t eh = int64_t(filter->h - 1) * conv->dil_h + 1, ew = int64_t(filter->w - 1) * conv->dil_w + 1;
  const int64_t ph = int64_t(input->h) + 2 * conv->pad_h, pw = int64_t(input->w) + 2 * conv->pad_w;
  if (ph < eh || pw < ew) return CUDNN_STATUS_BAD_PARAM;
  *n = input->n, *c = filter->k;
  *h = static_cast<int>(1 + (ph - eh) / conv->u), *w = static_cast<int>(1 + (pw - ew) / conv->v);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}
// The emulated heuristics, best first: the non-deterministic ALGO_0, FFT tiling (deterministic,
// not executable here), the deterministic ALGO_1, Winograd (not supported); each with the
// descriptor's math type.
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t handle, const cudnnFilterDescriptor_t w_desc,
                                                          const cudnnTensorDescriptor_t dy_desc,
                                                          const cudnnConvolutionDescriptor_t conv_desc,
                                                          const cudnnTensorDescriptor_t dx_desc, int requested,
                                                          int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  if (!handle || !returned || !perf || requested < 1) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_backward(w_desc, dy_desc, conv_desc, dx_desc); st != CUDNN_STATUS_SUCCESS)
    return st;
  const cudnnMathType_t math = conv_desc->math;
  const size_t dx_bytes = elems(dx_desc->n, dx_desc->c, dx_desc->h, dx_desc->w) * sizeof(float);
  const cudnnConvolutionBwdDataAlgoPerf_t all[] = {
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_STATUS_SUCCESS, 1.0f, 0, CUDNN_NON_DETERMINISTIC, math, {}},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
       CUDNN_STATUS_SUCCESS,
       1.5f,
       4 * dx_bytes,
       CUDNN_DETERMINISTIC,
       math,
       {}},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
       CUDNN_STATUS_SUCCESS,
       2.0f,
       workspace_of(CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, *w_desc),
       CUDNN_DETERMINISTIC,
       math,
       {}},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, CUDNN_STATUS_NOT_SUPPORTED, -1.0f, 0, CUDNN_DETERMINISTIC, math, {}},
  };
  const int n = static_cast<int>(sizeof all / sizeof all[0]);
  *returned = requested < n ? requested : n;
  for (int i = 0; i < *returned; ++i) perf[i] = all[i];
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t w_desc,
                                                           const cudnnTensorDescriptor_t dy_desc,
                                                           const cudnnConvolutionDescriptor_t conv_desc,
                                                           const cudnnTensorDescriptor_t dx_desc,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  if (!handle || !bytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_backward(w_desc, dy_desc, conv_desc, dx_desc); st != CUDNN_STATUS_SUCCESS)
    return st;
  if (algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 && algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_1)
    return CUDNN_STATUS_NOT_SUPPORTED;  // not emulated
  *bytes = workspace_of(algo, *w_desc);
  return CUDNN_STATUS_SUCCESS;
}

// dx = alpha · (the gradient of the forward convolution of dx with w, applied to dy) + beta · dx
// (dx not read when beta is 0). In cross-correlation mode the forward output (n, k, p, q) reads
// input (c, p·u − pad_h + r·dil_h, q·v − pad_w + s·dil_w) through tap (r, s) of filter k, for the
// input channels c of k's group; convolution mode flips the taps.
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           const cudnnFilterDescriptor_t w_desc, const void* w,
                                           const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                           const cudnnConvolutionDescriptor_t conv_desc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workspace, size_t workspace_bytes,
                                           const void* beta, const cudnnTensorDescriptor_t dx_desc, void* dx) {
  if (!handle || !alpha || !beta || !w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_backward(w_desc, dy_desc, conv_desc, dx_desc); st != CUDNN_STATUS_SUCCESS)
    return st;
  if (algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 && algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_1)
    return CUDNN_STATUS_NOT_SUPPORTED;
  const size_t ws = workspace_of(algo, *w_desc);
  if (workspace_bytes < ws || (ws && !workspace)) return CUDNN_STATUS_BAD_PARAM;
  if (take_failure(g_conv_fail_next) || device_faulted()) return CUDNN_STATUS_EXECUTION_FAILED;
  const cnncert::emu::DeviceAccess access{w, dy, dx, workspace};  // (the library computes on its operands)
  const cudnnFilterStruct& fd = *w_desc;
  const cudnnTensorStruct &yd = *dy_desc, &xd = *dx_desc;
  const cudnnConvolutionStruct& cv = *conv_desc;
  const size_t w_bytes = elems(fd.k, fd.c, fd.h, fd.w) * sizeof(float);
  if (!operand_ok(w, w_bytes, "cudnnConvolutionBackwardData", "w") ||
      !operand_ok(dy, elems(yd.n, yd.c, yd.h, yd.w) * sizeof(float), "cudnnConvolutionBackwardData", "dy") ||
      !operand_ok(dx, elems(xd.n, xd.c, xd.h, xd.w) * sizeof(float), "cudnnConvolutionBackwardData", "dx") ||
      !operand_ok(workspace, ws, "cudnnConvolutionBackwardData", "the workspace"))
    return CUDNN_STATUS_SUCCESS;  // as on a GPU: the call returns, the fault is sticky
  const float* wt = static_cast<const float*>(w);
  if (ws) {
    std::memcpy(workspace, w, w_bytes);
    wt = static_cast<const float*>(workspace);
  }
  const bool round = tensor_ops_allowed(cv.math);
  const auto rd = [round](float x) { return round ? tf32(x) : x; };
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const auto* y = static_cast<const float*>(dy);
  auto* x = static_cast<float*>(dx);
  const int64_t k_per_group = fd.k / cv.groups, c_per_group = fd.c;
  for (int64_t n = 0; n < xd.n; ++n)
    for (int64_t c = 0; c < xd.c; ++c) {
      const int64_t grp = c / c_per_group, cl = c % c_per_group;
      for (int64_t ih = 0; ih < xd.h; ++ih)
        for (int64_t iw = 0; iw < xd.w; ++iw) {
          float sum = 0;
          for (int64_t r = 0; r < fd.h; ++r) {
            const int64_t ph = ih + cv.pad_h - r * cv.dil_h;
            if (ph < 0 || ph % cv.u != 0 || ph / cv.u >= yd.h) continue;
            for (int64_t s = 0; s < fd.w; ++s) {
              const int64_t pw = iw + cv.pad_w - s * cv.dil_w;
              if (pw < 0 || pw % cv.v != 0 || pw / cv.v >= yd.w) continue;
              const int64_t tr = cv.mode == CUDNN_CONVOLUTION ? fd.h - 1 - r : r;
              const int64_t ts = cv.mode == CUDNN_CONVOLUTION ? fd.w - 1 - s : s;
              for (int64_t k = grp * k_per_group; k < (grp + 1) * k_per_group; ++k)
                sum += rd(y[((n * yd.c + k) * yd.h + ph / cv.u) * yd.w + pw / cv.v]) *
                       rd(wt[((k * fd.c + cl) * fd.h + tr) * fd.w + ts]);
            }
          }
          float& out = x[((n * xd.c + c) * xd.h + ih) * xd.w + iw];
          float v = al * sum;
          if (be != 0) v += be * out;
          out = v;
        }
    }
  return CUDNN_STATUS_SUCCESS;
}
