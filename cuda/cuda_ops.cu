// The batched engine's primitive operations on the GPU: cuDNN backward-data convolution and
// cuBLAS GEMM for the back-substitution through conv and dense layers, custom kernels for the
// relaxations and everything element-wise, one block per row for the per-row reductions (bias
// terms, concretization) so that sums are computed in a fixed order: results are bit-identical
// run to run. The element bodies are those of host/batched_kernels.hpp, which the CPU tests run.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <sstream>

#include "batched_engine.hpp"
#include "check.cuh"
#include "cnncert/cuda.hpp"
#include "cnncert/engine.hpp"

#if CNNCERT_HAVE_CUBLAS
#include <cublas_v2.h>
#endif
#if CNNCERT_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace cnncert::batched {
namespace {

constexpr int kBlock = 256;

#if CNNCERT_HAVE_CUBLAS
void cublas_check(cublasStatus_t st, const char* what, int line) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string(what) + " failed: cuBLAS status " + std::to_string(static_cast<int>(st)) + " at cuda_ops.cu:" +
                        std::to_string(line),
                    static_cast<int>(st));
}
#define CNNCERT_CUBLAS(expr) cublas_check((expr), #expr, __LINE__)
#endif

#if CNNCERT_HAVE_CUDNN
void cudnn_check(cudnnStatus_t st, const char* what, int line) {
  if (st != CUDNN_STATUS_SUCCESS)
    throw CudaError(std::string(what) + " failed: " + cudnnGetErrorString(st) + " at cuda_ops.cu:" + std::to_string(line),
                    static_cast<int>(st));
}
#define CNNCERT_CUDNN(expr) cudnn_check((expr), #expr, __LINE__)
#endif

/// Grid for a grid-stride loop over n elements.
unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 16 ? 65535 * 16 : blocks));
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

/// Sums (or maxes, for `use_max`) one double per thread of the block in a fixed tree order;
/// thread 0 gets the result.
__device__ double block_reduce(double v, bool use_max) {
  __shared__ double s[kBlock];
  s[threadIdx.x] = v;
  __syncthreads();
  for (int w = kBlock / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const double o = s[threadIdx.x + w];
      s[threadIdx.x] = use_max ? (o > s[threadIdx.x] ? o : s[threadIdx.x]) : s[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const double r = s[0];
  __syncthreads();
  return r;
}

__global__ void conv_back_kernel(ConvGeom g, int64_t rows, const float* w, const float* a, float* out) {
  const int64_t in_size = g.cin * g.hin * g.win, out_size = g.cout * g.hout * g.wout;
  GRID_STRIDE(e, rows * in_size) {
    const int64_t r = e / in_size, rem = e % in_size;
    const int64_t ci = rem / (g.hin * g.win), y = (rem / g.win) % g.hin, x = rem % g.win;
    out[e] = conv_back_elem(g, a + r * out_size, w, ci, y, x);
  }
}

/// out (rows × n_in) = a (rows × n_out) · W (n_out × n_in): 16×16 tiles, fixed summation order.
__global__ void dense_back_kernel(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a, float* out) {
  __shared__ float ta[16][17], tw[16][17];
  // rows on grid x (up to 2³¹ − 1 blocks), columns on grid y
  const int64_t r = blockIdx.x * 16 + threadIdx.y, i = blockIdx.y * 16 + threadIdx.x;
  float sum = 0;
  for (int64_t k0 = 0; k0 < n_out; k0 += 16) {
    const int64_t ka = k0 + threadIdx.x, kw = k0 + threadIdx.y;
    ta[threadIdx.y][threadIdx.x] = (r < rows && ka < n_out) ? a[r * n_out + ka] : 0.0f;
    tw[threadIdx.y][threadIdx.x] = (kw < n_out && i < n_in) ? w[kw * n_in + i] : 0.0f;
    __syncthreads();
    for (int k = 0; k < 16; ++k) sum += ta[threadIdx.y][k] * tw[k][threadIdx.x];
    __syncthreads();
  }
  if (r < rows && i < n_in) out[r * n_in + i] = sum;
}

__global__ void elementwise_kernel(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div,
                                   const float* al, const float* bl, const float* au, const float* bu, double* bias) {
  const int64_t r = blockIdx.x;
  const int64_t base = prob[r % half] * stride;
  const bool upper = r < half;
  float* row = a + r * size;
  double sum = 0;
  for (int64_t j = threadIdx.x; j < size; j += blockDim.x) sum += elementwise_elem(row[j], upper, al, bl, au, bu, base + j / div);
  sum = block_reduce(sum, false);
  if (threadIdx.x == 0) bias[r] += sum;
}

__global__ void pool_back_kernel(PoolGeom g, int64_t half, const int* prob, int64_t stride, const float* slopes, const float* a,
                                 float* out) {
  const int64_t in_size = g.in_size(), out_size = g.out_size();
  GRID_STRIDE(e, 2 * half * in_size) {
    const int64_t r = e / in_size, rem = e % in_size;
    const int64_t c = rem / (g.hin * g.win), y = (rem / g.win) % g.hin, x = rem % g.win;
    out[e] = pool_back_elem(g, a + r * out_size, slopes + prob[r % half] * stride, c, y, x);
  }
}

__global__ void add_kernel(int64_t n, const float* x, float* y) {
  GRID_STRIDE(i, n) y[i] += x[i];
}

__global__ void gather_kernel(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a, float* out) {
  GRID_STRIDE(e, rows * n_in) {
    const int64_t r = e / n_in, i = e % n_in;
    out[e] = inv[i] >= 0 ? a[r * n_out + inv[i]] : 0.0f;
  }
}

__global__ void identity_kernel(int64_t half, int64_t size, int64_t first, float* out) {
  GRID_STRIDE(r, 2 * half) out[r * size + (first + r % half) % size] = 1.0f;
}

__global__ void concretize_kernel(int64_t half, int64_t n, const float* a, const int* prob, const double* x0, const double* eps,
                                  RegionNorm norm, double box_lo, double box_hi, const double* bias, double* upper, double* lower) {
  const int64_t r = blockIdx.x;
  const int p = prob[r % half];
  const float* row = a + r * n;
  const double* x = x0 + p * n;
  double centre = 0, nrm = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) concretize_elem(row[j], x[j], eps[p], norm, box_lo, box_hi, centre, nrm);
  centre = block_reduce(centre, false);
  nrm = block_reduce(nrm, norm == RegionNorm::L1);
  if (threadIdx.x == 0) {
    const bool up = r < half;
    const double v = concretize_finish(up, centre, nrm, bias[r], eps[p], norm);
    if (up) upper[r] = v;
    else lower[r - half] = v;
  }
}

__global__ void relax_activation_kernel(int64_t count, ActSpec s, const double* lo, const double* hi, float* al, float* bl, float* au,
                                        float* bu) {
  GRID_STRIDE(i, count) {
    const Relaxation<double> r = relax_activation(s, lo[i], hi[i]);
    al[i] = static_cast<float>(r.alpha_l), bl[i] = static_cast<float>(r.beta_l);
    au[i] = static_cast<float>(r.alpha_u), bu[i] = static_cast<float>(r.beta_u);
  }
}

__global__ void activation_bounds_kernel(int64_t count, ActSpec s, const double* lo, const double* hi, double* out_lo,
                                         double* out_hi) {
  GRID_STRIDE(i, count) {
    out_lo[i] = activation_value(s, lo[i]);
    out_hi[i] = activation_value(s, hi[i]);
  }
}

__global__ void relax_maxpool_kernel(PoolGeom g, int64_t problems, const double* lo, const double* hi, float* slopes, float* beta_u,
                                     float* beta_l) {
  const int64_t out_size = g.out_size(), in_size = g.in_size(), kk = g.kk();
  GRID_STRIDE(j, problems * out_size) {
    const int64_t p = j / out_size, rem = j % out_size;
    const int64_t c = rem / (g.hout * g.wout), y = (rem / g.wout) % g.hout, x = rem % g.wout;
    double bu = 0, bl = 0;
    relax_maxpool_window(g, c, y, x, lo + p * in_size, hi + p * in_size, slopes + j * kk, bu, bl);
    beta_u[j] = static_cast<float>(bu), beta_l[j] = static_cast<float>(bl);
  }
}

__global__ void flag_nonfinite_kernel(int64_t problems, int64_t size, const double* lo, const double* hi, int* flags) {
  GRID_STRIDE(i, problems * size) {
    if (!reliable_bound(lo[i]) || !reliable_bound(hi[i])) flags[i / size] = 1;  // every writer writes 1
  }
}

class CudaOps final : public Ops {
 public:
  CudaOps(size_t budget, bool use_libs) : use_libs_(use_libs) {
    try {
      init(budget);
    } catch (...) {
      cleanup();
      throw;
    }
  }
  ~CudaOps() override { cleanup(); }

  std::string name() const override { return "gpu"; }
  size_t memory_budget() const override { return budget_; }

  void* alloc(size_t bytes) override {
    void* p = nullptr;
    CNNCERT_CUDA_CHECK(cudaMallocAsync(&p, bytes ? bytes : 1, stream_));
    return p;
  }
  void release(void* p) noexcept override { cudaFreeAsync(p, stream_); }
  void to_device(void* dst, const void* src, size_t bytes) override {
    // From pageable memory the call returns once the data is staged: the caller may free `src`.
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CNNCERT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void zero(void* dst, size_t bytes) override { CNNCERT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_)); }
  void synchronize() override { CNNCERT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  double backsub_flops() const override { return flops_; }

  void conv_back(const ConvGeom& g, int64_t rows, const float* w, const float* a, float* out) override {
    flops_ += 2.0 * static_cast<double>(rows) * static_cast<double>(g.cout * g.hout * g.wout) *
              static_cast<double>(g.cin / g.groups * g.kh * g.kw);
#if CNNCERT_HAVE_CUDNN
    if (use_libs_) {
      const Plan& plan = conv_plan(g, rows);
      if (plan.usable) {
        const float one = 1, zero = 0;
        CNNCERT_CUDNN(cudnnConvolutionBackwardData(cudnn_, &one, plan.w, w, plan.dy, a, plan.conv, plan.algo, workspace_,
                                                   plan.workspace, &zero, plan.dx, out));
        return;
      }
    }
#endif
    conv_back_kernel<<<grid_for(rows * g.cin * g.hin * g.win), kBlock, 0, stream_>>>(g, rows, w, a, out);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void dense_back(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a, float* out) override {
    flops_ += 2.0 * static_cast<double>(rows) * static_cast<double>(n_out) * static_cast<double>(n_in);
#if CNNCERT_HAVE_CUBLAS
    if (use_libs_) {
      // Row-major out (rows × n_in) is column-major (n_in × rows) = W_cm (n_in × n_out) · a_cm (n_out × rows).
      const float one = 1, zero = 0;
      CNNCERT_CUBLAS(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n_in), static_cast<int>(rows),
                                 static_cast<int>(n_out), &one, w, static_cast<int>(n_in), a, static_cast<int>(n_out), &zero, out,
                                 static_cast<int>(n_in)));
      return;
    }
#endif
    CNNCERT_CHECK((n_in + 15) / 16 <= 65535, "dense layer too wide for the GEMM kernel: " << n_in << " inputs");
    const dim3 block(16, 16), grid(static_cast<unsigned>((rows + 15) / 16), static_cast<unsigned>((n_in + 15) / 16));
    dense_back_kernel<<<grid, block, 0, stream_>>>(rows, n_out, n_in, w, a, out);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void elementwise_back(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div, const float* al,
                        const float* bl, const float* au, const float* bu, double* bias) override {
    if (half == 0) return;
    elementwise_kernel<<<static_cast<unsigned>(2 * half), kBlock, 0, stream_>>>(half, size, a, prob, stride, div, al, bl, au, bu, bias);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void pool_back(const PoolGeom& g, int64_t half, const int* prob, int64_t stride, const float* slopes, const float* a,
                 float* out) override {
    pool_back_kernel<<<grid_for(2 * half * g.in_size()), kBlock, 0, stream_>>>(g, half, prob, stride, slopes, a, out);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void add(int64_t n, const float* x, float* y) override {
    add_kernel<<<grid_for(n), kBlock, 0, stream_>>>(n, x, y);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void gather(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a, float* out) override {
    gather_kernel<<<grid_for(rows * n_in), kBlock, 0, stream_>>>(rows, n_out, n_in, inv, a, out);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void identity(int64_t half, int64_t size, int64_t first, float* out) override {
    zero(out, static_cast<size_t>(2 * half * size) * sizeof(float));
    identity_kernel<<<grid_for(2 * half), kBlock, 0, stream_>>>(half, size, first, out);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void concretize(int64_t half, int64_t n, const float* a, const int* prob, const double* x0, const double* eps, RegionNorm norm,
                  double box_lo, double box_hi, const double* bias, double* upper, double* lower) override {
    if (half == 0) return;
    concretize_kernel<<<static_cast<unsigned>(2 * half), kBlock, 0, stream_>>>(half, n, a, prob, x0, eps, norm, box_lo, box_hi, bias,
                                                                               upper, lower);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void relax_activation(int64_t count, const ActSpec& s, const double* lo, const double* hi, float* al, float* bl, float* au,
                        float* bu) override {
    relax_activation_kernel<<<grid_for(count), kBlock, 0, stream_>>>(count, s, lo, hi, al, bl, au, bu);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void activation_bounds(int64_t count, const ActSpec& s, const double* lo, const double* hi, double* out_lo,
                         double* out_hi) override {
    activation_bounds_kernel<<<grid_for(count), kBlock, 0, stream_>>>(count, s, lo, hi, out_lo, out_hi);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void relax_maxpool(const PoolGeom& g, int64_t problems, const double* lo, const double* hi, float* slopes, float* beta_u,
                     float* beta_l) override {
    relax_maxpool_kernel<<<grid_for(problems * g.out_size()), kBlock, 0, stream_>>>(g, problems, lo, hi, slopes, beta_u, beta_l);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

  void flag_nonfinite(int64_t problems, int64_t size, const double* lo, const double* hi, int* flags) override {
    flag_nonfinite_kernel<<<grid_for(problems * size), kBlock, 0, stream_>>>(problems, size, lo, hi, flags);
    CNNCERT_CHECK_LAUNCH(stream_);
  }

 private:
  void init(size_t budget) {
    CNNCERT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Freed memory stays in the stream-ordered pool while the engine runs (it allocates and
    // frees the same sizes at every layer); the destructor trims the pool again.
    int dev = 0;
    CNNCERT_CUDA_CHECK(cudaGetDevice(&dev));
    CNNCERT_CUDA_CHECK(cudaDeviceGetMemPool(&pool_, dev));
    uint64_t threshold = UINT64_MAX;
    CNNCERT_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
    size_t free_b = 0, total_b = 0;
    CNNCERT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    // cuDNN's workspace comes out of the same memory, the rest (bounds, relaxations, library
    // handles, pool fragmentation) out of the part not given to the coefficient tensors.
    ws_limit_ = std::max<size_t>(free_b / 16, size_t(64) << 20);
    if (budget == 0) budget = free_b / 10 * 7;
    budget_ = budget > ws_limit_ * 2 ? budget - ws_limit_ : budget / 2;
#if CNNCERT_HAVE_CUBLAS
    CNNCERT_CUBLAS(cublasCreate(&cublas_));
    CNNCERT_CUBLAS(cublasSetStream(cublas_, stream_));
    CNNCERT_CUBLAS(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));  // full FP32: no TF32 tensor-core math
    CNNCERT_CUBLAS(cublasSetAtomicsMode(cublas_, CUBLAS_ATOMICS_NOT_ALLOWED));  // deterministic
#endif
#if CNNCERT_HAVE_CUDNN
    CNNCERT_CUDNN(cudnnCreate(&cudnn_));
    CNNCERT_CUDNN(cudnnSetStream(cudnn_, stream_));
#endif
  }

  void cleanup() noexcept {
    if (stream_) cudaStreamSynchronize(stream_);
    plans_.clear();
    if (workspace_) cudaFreeAsync(workspace_, stream_);
    workspace_ = nullptr;
#if CNNCERT_HAVE_CUBLAS
    if (cublas_) cublasDestroy(cublas_);
    cublas_ = nullptr;
#endif
#if CNNCERT_HAVE_CUDNN
    if (cudnn_) cudnnDestroy(cudnn_);
    cudnn_ = nullptr;
#endif
    if (stream_) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    stream_ = nullptr;
    if (pool_) cudaMemPoolTrimTo(pool_, 0);
  }

#if CNNCERT_HAVE_CUDNN
  /// cuDNN descriptors and algorithm of one convolution geometry at one row count.
  struct Plan {
    bool usable = false;
    cudnnTensorDescriptor_t dy = nullptr, dx = nullptr;
    cudnnFilterDescriptor_t w = nullptr;
    cudnnConvolutionDescriptor_t conv = nullptr;
    cudnnConvolutionBwdDataAlgo_t algo{};
    size_t workspace = 0;
    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {
      if (dy) cudnnDestroyTensorDescriptor(dy);
      if (dx) cudnnDestroyTensorDescriptor(dx);
      if (w) cudnnDestroyFilterDescriptor(w);
      if (conv) cudnnDestroyConvolutionDescriptor(conv);
    }
  };

  const Plan& conv_plan(const ConvGeom& g, int64_t rows) {
    const std::array<int64_t, 16> key{rows,  g.cin, g.hin, g.win, g.cout, g.hout, g.wout, g.kh,
                                      g.kw,  g.sh,  g.sw,  g.pt,  g.pl,   g.dh,   g.dw,   g.groups};
    auto it = plans_.find(key);
    if (it != plans_.end()) return *it->second;
    if (plans_.size() >= 256) plans_.clear();  // chunk sizes vary; keep the cache bounded
    auto plan = std::make_unique<Plan>();
    const auto I = [](int64_t v) { return static_cast<int>(v); };
    CNNCERT_CUDNN(cudnnCreateTensorDescriptor(&plan->dy));
    CNNCERT_CUDNN(cudnnCreateTensorDescriptor(&plan->dx));
    CNNCERT_CUDNN(cudnnCreateFilterDescriptor(&plan->w));
    CNNCERT_CUDNN(cudnnCreateConvolutionDescriptor(&plan->conv));
    CNNCERT_CUDNN(cudnnSetTensor4dDescriptor(plan->dy, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(rows), I(g.cout), I(g.hout), I(g.wout)));
    CNNCERT_CUDNN(cudnnSetTensor4dDescriptor(plan->dx, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(rows), I(g.cin), I(g.hin), I(g.win)));
    CNNCERT_CUDNN(cudnnSetFilter4dDescriptor(plan->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, I(g.cout), I(g.cin / g.groups), I(g.kh), I(g.kw)));
    CNNCERT_CUDNN(cudnnSetConvolution2dDescriptor(plan->conv, I(g.pt), I(g.pl), I(g.sh), I(g.sw), I(g.dh), I(g.dw),
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CNNCERT_CUDNN(cudnnSetConvolutionGroupCount(plan->conv, I(g.groups)));
    CNNCERT_CUDNN(cudnnSetConvolutionMathType(plan->conv, CUDNN_FMA_MATH));  // no TF32/tensor cores
    // cuDNN pads symmetrically: usable when its output size is the network's (asymmetric padding
    // that only pads positions no window reaches), else the direct kernel runs.
    int n = 0, c = 0, h = 0, wd = 0;
    const bool dims_ok = cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->dx, plan->w, &n, &c, &h, &wd) == CUDNN_STATUS_SUCCESS;
    if (dims_ok && n == rows && c == g.cout && h == g.hout && wd == g.wout) {
      int max_algos = 0, returned = 0;
      CNNCERT_CUDNN(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnn_, &max_algos));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(max_algos, 1)));
      CNNCERT_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn_, plan->w, plan->dy, plan->conv, plan->dx, max_algos, &returned,
                                                                perf.data()));
      for (int i = 0; i < returned; ++i) {
        const auto& p = perf[static_cast<size_t>(i)];
        // Only the direct deterministic algorithm: FFT and Winograd variants are deterministic
        // too, but their float32 error scales with the largest value of a tile rather than with
        // each output's own terms, which the tolerance argument (and small coefficients) rely on.
        if (p.status != CUDNN_STATUS_SUCCESS || p.algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ||
            p.determinism != CUDNN_DETERMINISTIC || p.mathType == CUDNN_TENSOR_OP_MATH ||
            p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION || p.memory > ws_limit_)
          continue;
        plan->algo = p.algo;
        CNNCERT_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn_, plan->w, plan->dy, plan->conv, plan->dx, plan->algo,
                                                                   &plan->workspace));
        plan->usable = true;
        break;
      }
      if (plan->usable && plan->workspace > workspace_bytes_) {
        if (workspace_) CNNCERT_CUDA_CHECK(cudaFreeAsync(workspace_, stream_));
        workspace_ = nullptr;
        workspace_bytes_ = 0;
        CNNCERT_CUDA_CHECK(cudaMallocAsync(&workspace_, plan->workspace, stream_));
        workspace_bytes_ = plan->workspace;
      }
    }
    return *plans_.emplace(key, std::move(plan)).first->second;
  }

  cudnnHandle_t cudnn_ = nullptr;
  std::map<std::array<int64_t, 16>, std::unique_ptr<Plan>> plans_;
#else
  struct NoPlans {
    void clear() {}
  } plans_;
#endif
#if CNNCERT_HAVE_CUBLAS
  cublasHandle_t cublas_ = nullptr;
#endif
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  size_t ws_limit_ = 0;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  size_t budget_ = 0;
  bool use_libs_ = true;
  double flops_ = 0;
};

}  // namespace

std::unique_ptr<Ops> make_cuda_ops(size_t budget_bytes, bool use_cudnn) {
  if (!cuda_available()) throw InvalidArgument("--device gpu: " + cuda_device_info());
  return std::make_unique<CudaOps>(budget_bytes, use_cudnn);
}

}  // namespace cnncert::batched

namespace cnncert {

std::unique_ptr<BoundEngine> make_gpu_engine(const Network& net, size_t memory_mib) {
  return batched::make_batched_engine(net, batched::make_cuda_ops(memory_mib << 20));
}

}  // namespace cnncert
