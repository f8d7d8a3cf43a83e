// The batched engine's primitive operations on the GPU: cuDNN backward-data convolution and
// cuBLAS GEMM for the back-substitution through conv and dense layers, custom kernels for the
// relaxations and everything element-wise, one block per row for the per-row reductions (bias
// terms, concretization) so that sums are computed in a fixed order: results are bit-identical
// run to run. The element bodies are those of host/engine/batched_kernels.hpp, which the CPU tests run.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "check.cuh"
#include "cnncert/cuda.hpp"
#include "cnncert/engine.hpp"
#include "device_api.cuh"
#include "device_buffer.cuh"
#include "engine/batched_engine.hpp"

namespace cnncert::batched {
namespace {

constexpr int kBlock = 256;

/// Most blocks of a grid-stride loop by default (the loop repeats beyond).
constexpr int64_t kMaxGridBlocks = 65535 * 16;

/// `for (i in 0..n)` spread over the whole grid: thread t of the grid takes t, t + threads, … (a
/// grid-stride loop, so any n runs on a grid of at most kMaxGridBlocks blocks).
#define FOR_EACH_INDEX_IN_GRID(i, n)                                                     \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

/// Sums (or maxes, for `use_max`) one double per thread of the block in a fixed tree order;
/// thread 0 gets the result.
__device__ double block_reduce(double v, bool use_max) {
  __shared__ double s[kBlock];
  s[threadIdx.x] = v;
  __syncthreads();
  for (unsigned w = kBlock / 2; w > 0; w /= 2) {
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

/// The end of a per-row relaxation pass (one block per row): the block's sums of the row's bias
/// terms, and of the fused bias pass's when `has_then` (uniform in the block), added to bias[r].
__device__ void add_row_bias(int64_t r, double sum, double then_sum, bool has_then, double* bias) {
  sum = block_reduce(sum, false);
  if (has_then) then_sum = block_reduce(then_sum, false);
  if (threadIdx.x == 0) {
    bias[r] += sum;
    if (has_then) bias[r] += then_sum;
  }
}

__global__ void conv_back_kernel(ConvGeom g, int64_t rows, const float* w, const float* a, float* out) {
  const int64_t in_size = g.cin * g.hin * g.win, out_size = g.cout * g.hout * g.wout;
  FOR_EACH_INDEX_IN_GRID(e, rows * in_size) {
    const int64_t r = e / in_size, rem = e % in_size;
    const int64_t ci = rem / (g.hin * g.win), y = (rem / g.win) % g.hin, x = rem % g.win;
    out[e] = conv_back_elem(g, a + r * out_size, w, ci, y, x);
  }
}

/// out (rows × n_in) = a (rows × n_out) · W (n_out × n_in): 16×16 tiles, fixed summation order.
__global__ void dense_back_kernel(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a,
                                  float* out) {
  __shared__ float ta[16][17], tw[16][17];
  // rows on grid x (up to 2³¹ − 1 blocks), columns on grid y
  const int64_t r = static_cast<int64_t>(blockIdx.x) * 16 + threadIdx.y,
                i = static_cast<int64_t>(blockIdx.y) * 16 + threadIdx.x;
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

// One block per row. With then_bias, each thread also sums the bias pass of the node below over
// the new coefficients, in the order a second launch would, reduced and added after the first.
__global__ void elementwise_kernel(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div,
                                   const float* al, const float* bl, const float* au, const float* bu, double* bias,
                                   const float* then_bias, int64_t then_div) {
  const int64_t r = blockIdx.x;
  const int64_t base = prob[r % half] * stride;
  const bool upper = r < half;
  float* row = a + r * size;
  double sum = 0, then_sum = 0;
  for (int64_t j = threadIdx.x; j < size; j += blockDim.x) {
    sum += elementwise_elem(row[j], upper, al, bl, au, bu, base + j / div);
    if (then_bias) then_sum += elementwise_elem(row[j], upper, nullptr, then_bias, nullptr, then_bias, j / then_div);
  }
  add_row_bias(r, sum, then_sum, then_bias != nullptr, bias);
}

__global__ void pool_back_kernel(PoolGeom g, int64_t half, const int* prob, int64_t stride, const float* slopes,
                                 const float* a, float* out) {
  const int64_t in_size = g.in_size(), out_size = g.out_size();
  FOR_EACH_INDEX_IN_GRID(e, 2 * half * in_size) {
    const int64_t r = e / in_size, rem = e % in_size;
    const int64_t c = rem / (g.hin * g.win), y = (rem / g.win) % g.hin, x = rem % g.win;
    out[e] = pool_back_elem(g, a + r * out_size, slopes + prob[r % half] * stride, c, y, x);
  }
}

__global__ void conv_back_window_kernel(ConvGeom g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                                        const float* wt, const float* a, float* out) {
  const int64_t ih = g.span_y(h), iw = g.span_x(w), in_size = g.cin * ih * iw, out_size = g.cout * h * w;
  FOR_EACH_INDEX_IN_GRID(e, 2 * half * in_size) {
    const int64_t r = e / in_size, rem = e % in_size;
    const int64_t ci = rem / (ih * iw), y = (rem / iw) % ih, x = rem % iw;
    out[e] =
        conv_back_window_elem(g, h, w, org[2 * (r % half)], org[2 * (r % half) + 1], a + r * out_size, wt, ci, y, x);
  }
}

// conv_back_window_kernel and elementwise_window_kernel in one: one block per row; each thread
// computes its elements of the output window (the elements elementwise_window_kernel's thread
// would take, in the same order), relaxes them at once and sums their bias terms, so the
// reductions are those of the two launches.
__global__ void conv_back_window_relax_kernel(ConvGeom g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                                              const float* wt, const float* a, WinGeom wg, const int64_t* out_org,
                                              float* out, RelaxStep rx) {
  const int64_t r = blockIdx.x, size = wg.size(), ih = g.span_y(h), iw = g.span_x(w);
  const int64_t oy0 = org[2 * (r % half)], ox0 = org[2 * (r % half) + 1];
  const int64_t y0 = out_org[2 * (r % half)], x0 = out_org[2 * (r % half) + 1];
  const int64_t base = rx.prob[r % half] * rx.stride;
  const bool upper = r < half;
  const float* a_row = a + r * g.cout * h * w;
  float* row = out + r * size;
  double sum = 0, then_sum = 0;
  for (int64_t e = threadIdx.x; e < size; e += blockDim.x) {
    float v = conv_back_window_elem(g, h, w, oy0, ox0, a_row, wt, e / (ih * iw), (e / iw) % ih, e % iw);
    const int64_t m = wg.map_index(y0, x0, e);
    if (m >= 0) {
      sum += elementwise_elem(v, upper, rx.al, rx.bl, rx.au, rx.bu, base + m / rx.div);
      if (rx.then_bias)
        then_sum += elementwise_elem(v, upper, nullptr, rx.then_bias, nullptr, rx.then_bias, m / rx.then_div);
    }
    row[e] = v;
  }
  add_row_bias(r, sum, then_sum, rx.then_bias != nullptr, rx.bias);
}

__global__ void pool_back_window_kernel(PoolGeom g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                                        const int* prob, int64_t stride, const float* slopes, const float* a,
                                        float* out) {
  const int64_t ih = g.span_y(h), iw = g.span_x(w), in_size = g.c * ih * iw, out_size = g.c * h * w;
  FOR_EACH_INDEX_IN_GRID(e, 2 * half * in_size) {
    const int64_t r = e / in_size, rem = e % in_size;
    const int64_t c = rem / (ih * iw), y = (rem / iw) % ih, x = rem % iw;
    out[e] = pool_back_window_elem(g, h, w, org[2 * (r % half)], org[2 * (r % half) + 1], a + r * out_size,
                                   slopes + prob[r % half] * stride, c, y, x);
  }
}

__global__ void elementwise_window_kernel(WinGeom wg, int64_t half, const int64_t* org, float* a, const int* prob,
                                          int64_t stride, int64_t div, const float* al, const float* bl,
                                          const float* au, const float* bu, double* bias, const float* then_bias,
                                          int64_t then_div) {
  const int64_t r = blockIdx.x, size = wg.size();
  const int64_t base = prob[r % half] * stride, y0 = org[2 * (r % half)], x0 = org[2 * (r % half) + 1];
  const bool upper = r < half;
  float* row = a + r * size;
  double sum = 0, then_sum = 0;
  for (int64_t e = threadIdx.x; e < size; e += blockDim.x) {
    const int64_t m = wg.map_index(y0, x0, e);
    if (m < 0) continue;
    sum += elementwise_elem(row[e], upper, al, bl, au, bu, base + m / div);
    if (then_bias) then_sum += elementwise_elem(row[e], upper, nullptr, then_bias, nullptr, then_bias, m / then_div);
  }
  add_row_bias(r, sum, then_sum, then_bias != nullptr, bias);
}

__global__ void window_to_dense_kernel(WinGeom wg, int64_t half, const int64_t* org, const float* a, float* out) {
  const int64_t size = wg.size(), dense = wg.c * wg.map_h * wg.map_w;
  FOR_EACH_INDEX_IN_GRID(e, 2 * half * size) {
    const int64_t r = e / size, m = wg.map_index(org[2 * (r % half)], org[2 * (r % half) + 1], e % size);
    if (m >= 0) out[r * dense + m] = a[e];
  }
}

__global__ void add_kernel(int64_t n, const float* x, float* y) {
  FOR_EACH_INDEX_IN_GRID(i, n) y[i] += x[i];
}

__global__ void gather_kernel(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a,
                              float* out) {
  FOR_EACH_INDEX_IN_GRID(e, rows * n_in) {
    const int64_t r = e / n_in, i = e % n_in;
    out[e] = inv[i] >= 0 ? a[r * n_out + inv[i]] : 0.0f;
  }
}

__global__ void identity_kernel(int64_t half, int64_t size, const int64_t* pos, float* out) {
  FOR_EACH_INDEX_IN_GRID(r, 2 * half) out[r * size + pos[r % half]] = 1.0f;
}

__global__ void concretize_kernel(int64_t half, int64_t n, const float* a, const int* prob, const double* x0,
                                  const double* x_hi, const double* eps, RegionNorm norm, const double* bias,
                                  double* upper, double* lower) {
  const int64_t r = blockIdx.x;
  const int p = prob[r % half];
  const float* row = a + r * n;
  const double* x = x0 + p * n;
  const double* xh = norm == RegionNorm::Box ? x_hi + p * n : nullptr;
  double centre = 0, nrm = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    concretize_elem(row[j], x[j], xh ? xh[j] : 0.0, norm, centre, nrm);
  centre = block_reduce(centre, false);
  nrm = block_reduce(nrm, norm == RegionNorm::L1);
  if (threadIdx.x == 0) {
    store_bound(r, half, concretize_finish(r < half, centre, nrm, bias[r], eps[p], norm), upper, lower);
  }
}

__global__ void concretize_window_kernel(WinGeom wg, int64_t half, const int64_t* org, const float* a, const int* prob,
                                         const double* x0, const double* x_hi, const double* eps, RegionNorm norm,
                                         const double* bias, double* upper, double* lower) {
  const int64_t r = blockIdx.x, size = wg.size(), n = wg.c * wg.map_h * wg.map_w;
  const int p = prob[r % half];
  const int64_t y0 = org[2 * (r % half)], ox = org[2 * (r % half) + 1];
  const float* row = a + r * size;
  const double* x = x0 + p * n;
  const double* xh = norm == RegionNorm::Box ? x_hi + p * n : nullptr;
  double centre = 0, nrm = 0;
  for (int64_t e = threadIdx.x; e < size; e += blockDim.x) {
    const int64_t m = wg.map_index(y0, ox, e);
    if (m >= 0) concretize_elem(row[e], x[m], xh ? xh[m] : 0.0, norm, centre, nrm);
  }
  centre = block_reduce(centre, false);
  nrm = block_reduce(nrm, norm == RegionNorm::L1);
  if (threadIdx.x == 0) {
    store_bound(r, half, concretize_finish(r < half, centre, nrm, bias[r], eps[p], norm), upper, lower);
  }
}

__global__ void relax_activation_kernel(int64_t count, ActSpec s, const double* lo, const double* hi, float* al,
                                        float* bl, float* au, float* bu) {
  FOR_EACH_INDEX_IN_GRID(i, count) {
    const Relaxation<double> r = relax_activation(s, lo[i], hi[i]);
    al[i] = static_cast<float>(r.alpha_l), bl[i] = static_cast<float>(r.beta_l);
    au[i] = static_cast<float>(r.alpha_u), bu[i] = static_cast<float>(r.beta_u);
  }
}

__global__ void activation_bounds_kernel(int64_t count, ActSpec s, const double* lo, const double* hi, double* out_lo,
                                         double* out_hi) {
  FOR_EACH_INDEX_IN_GRID(i, count) activation_range(s, lo[i], hi[i], out_lo[i], out_hi[i]);
}

__global__ void relax_maxpool_kernel(PoolGeom g, int64_t problems, const double* lo, const double* hi, float* slopes,
                                     float* beta_u, float* beta_l) {
  const int64_t out_size = g.out_size(), in_size = g.in_size(), kk = g.kk();
  FOR_EACH_INDEX_IN_GRID(j, problems * out_size) {
    const int64_t p = j / out_size, rem = j % out_size;
    const int64_t c = rem / (g.hout * g.wout), y = (rem / g.wout) % g.hout, x = rem % g.wout;
    double bu = 0, bl = 0;
    relax_maxpool_window(g, c, y, x, lo + p * in_size, hi + p * in_size, slopes + j * kk, bu, bl);
    beta_u[j] = static_cast<float>(bu), beta_l[j] = static_cast<float>(bl);
  }
}

__global__ void interval_kernel(IntervalStep s, int64_t problems, const double* lo, const double* hi, const double* lo2,
                                const double* hi2, double* out_lo, double* out_hi) {
  FOR_EACH_INDEX_IN_GRID(e, problems * s.n_out) {
    const int64_t p = e / s.n_out, j = e % s.n_out;
    interval_elem(s, lo + p * s.n_in, hi + p * s.n_in, lo2 ? lo2 + p * s.n_out : nullptr,
                  hi2 ? hi2 + p * s.n_out : nullptr, j, out_lo[e], out_hi[e]);
  }
}

__global__ void select_rows_kernel(int64_t count, SkipLevel level, const double* lo, const double* hi,
                                   const double* outer_lo, const double* outer_hi, double* out_lo, double* out_hi,
                                   unsigned char* mask) {
  FOR_EACH_INDEX_IN_GRID(i, count)
  mask[i] = select_elem(level, lo[i], hi[i], outer_lo, outer_hi, i, out_lo[i], out_hi[i]);
}

__global__ void scatter_kernel(int64_t n, const int64_t* idx, const double* src, double* dst) {
  FOR_EACH_INDEX_IN_GRID(i, n) dst[idx[i]] = src[i];
}

__global__ void flag_nonfinite_kernel(int64_t problems, int64_t size, const double* lo, const double* hi, int code,
                                      int* flags) {
  FOR_EACH_INDEX_IN_GRID(i, problems * size) {
    // Every writer of one launch writes the same code; a flag set by an earlier launch stays.
    if ((!reliable_bound(lo[i]) || !reliable_bound(hi[i])) && flags[i / size] == 0) flags[i / size] = code;
  }
}

struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept {
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
  }
};
struct PoolDeleter {
  void operator()(cudaMemPool_t p) const noexcept { cudaMemPoolDestroy(p); }
};
using StreamHandle = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDeleter>;
using PoolHandle = std::unique_ptr<std::remove_pointer_t<cudaMemPool_t>, PoolDeleter>;
#if CNNCERT_HAVE_CUBLAS
struct CublasDeleter {
  void operator()(cublasHandle_t h) const noexcept { cublasDestroy(h); }
};
using CublasHandle = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, CublasDeleter>;
#endif
#if CNNCERT_HAVE_CUDNN
struct CudnnDeleter {
  void operator()(cudnnHandle_t h) const noexcept { cudnnDestroy(h); }
};
using CudnnHandle = std::unique_ptr<std::remove_pointer_t<cudnnHandle_t>, CudnnDeleter>;
#endif

/// A kernel launch of CudaOps, counted in its statistics.
#define COUNTED_LAUNCH(...)      \
  do {                           \
    ++paths_.launches;           \
    CNNCERT_LAUNCH(__VA_ARGS__); \
  } while (0)

class CudaOps final : public Ops {
 public:
  CudaOps(size_t budget, bool use_libs, int64_t max_grid_blocks)
      : use_libs_(use_libs), max_blocks_(max_grid_blocks > 0 ? max_grid_blocks : kMaxGridBlocks) {
    init(budget);
  }
  // Members release in reverse order: library handles, plans and workspace, then the pool and
  // the stream (whose deleter waits for the work still queued).
  ~CudaOps() override {
    if (stream_) cudaStreamSynchronize(stream_.get());
  }

  std::string name() const override { return "gpu"; }
  size_t memory_budget() const override { return budget_; }

  void* alloc(size_t bytes) override {
    void* p = nullptr;
    CNNCERT_CUDA_CHECK(cudaMallocFromPoolAsync(&p, bytes ? bytes : 1, pool_.get(), stream()));
    return p;
  }
  void release(void* p) noexcept override { cudaFreeAsync(p, stream()); }
  void to_device(void* dst, const void* src, size_t bytes) override {
    // From pageable memory the call returns once the data is staged: the caller may free `src`.
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
    ++paths_.syncs;
    CNNCERT_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
  }
  void zero(void* dst, size_t bytes) override { CNNCERT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream())); }
  double backsub_flops() const override { return flops_; }
  PathCounts path_counts() const override { return paths_; }

  void conv_back(const ConvGeom& g, int64_t rows, const float* w, const float* a, float* out) override {
    if (rows == 0) return;
    flops_ += conv_back_flops(g, rows);
#if CNNCERT_HAVE_CUDNN
    if (use_libs_) {
      Plan& plan = conv_plan(g, rows);
      if (plan.usable) {
        const float one = 1, zero = 0;
        const cudnnStatus_t st =
            cudnnConvolutionBackwardData(cudnn_.get(), &one, plan.w, w, plan.dy, a, plan.conv, plan.algo,
                                         workspace_.data(), plan.workspace, &zero, plan.dx, out);
        ++paths_.launches;
        if (st == CUDNN_STATUS_SUCCESS) {
          ++paths_.conv_library;
          return;
        }
        // A failure at execution time: this geometry runs the own kernel from now on (counted,
        // so that a test can tell); a sticky runtime fault still fails the launch below.
        if (paths_.conv_library_failed++ == 0)
          std::fprintf(stderr, "cnncert: cuDNN backward-data convolution failed (%s); the own kernel runs instead\n",
                       cudnnGetErrorString(st));
        plan.usable = false;
      }
    }
#endif
    ++paths_.conv_own;
    COUNTED_LAUNCH(conv_back_kernel, grid(rows * g.cin * g.hin * g.win), kBlock, 0, stream(), g, rows, w, a, out);
  }

  void dense_back(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a, float* out) override {
    if (rows == 0 || n_in == 0) return;
    flops_ += 2.0 * static_cast<double>(rows) * static_cast<double>(n_out) * static_cast<double>(n_in);
#if CNNCERT_HAVE_CUBLAS
    if (use_libs_) {
      // Row-major out (rows × n_in) is column-major (n_in × rows) = W_cm (n_in × n_out) · a_cm (n_out × rows).
      const float one = 1, zero = 0;
      CNNCERT_CUBLAS(cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n_in),
                                 static_cast<int>(rows), static_cast<int>(n_out), &one, w, static_cast<int>(n_in), a,
                                 static_cast<int>(n_out), &zero, out, static_cast<int>(n_in)));
      ++paths_.gemm_library;
      ++paths_.launches;
      return;
    }
#endif
    CNNCERT_CHECK((n_in + 15) / 16 <= 65535, "dense layer too wide for the GEMM kernel: " << n_in << " inputs");
    CNNCERT_CHECK((rows + 15) / 16 <= 2147483647, "too many rows for the GEMM kernel: " << rows);
    ++paths_.gemm_own;
    const dim3 block(16, 16), blocks(static_cast<unsigned>((rows + 15) / 16), static_cast<unsigned>((n_in + 15) / 16));
    COUNTED_LAUNCH(dense_back_kernel, blocks, block, 0, stream(), rows, n_out, n_in, w, a, out);
  }

  void elementwise_back(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div,
                        const float* al, const float* bl, const float* au, const float* bu, double* bias,
                        const float* then_bias, int64_t then_div) override {
    if (half == 0) return;
    COUNTED_LAUNCH(elementwise_kernel, static_cast<unsigned>(2 * half), kBlock, 0, stream(), half, size, a, prob,
                   stride, div, al, bl, au, bu, bias, then_bias, then_div);
  }

  void pool_back(const PoolGeom& g, int64_t half, const int* prob, int64_t stride, const float* slopes, const float* a,
                 float* out) override {
    COUNTED_LAUNCH(pool_back_kernel, grid(2 * half * g.in_size()), kBlock, 0, stream(), g, half, prob, stride, slopes,
                   a, out);
  }

  void conv_back_window(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org, const float* wt,
                        const float* a, float* out) override {
    if (half == 0) return;
    flops_ += conv_back_window_flops(g, half, h, w);
    ++paths_.conv_windowed;
    COUNTED_LAUNCH(conv_back_window_kernel, grid(2 * half * g.cin * g.span_y(h) * g.span_x(w)), kBlock, 0, stream(), g,
                   half, h, w, org, wt, a, out);
  }

  void conv_back_window_relax(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                              const float* wt, const float* a, const WinGeom& out_wg, const int64_t* out_org,
                              float* out, const RelaxStep& rx) override {
    CNNCERT_ASSERT(out_wg.c == g.cin && out_wg.h == g.span_y(h) && out_wg.w == g.span_x(w) && out_wg.map_h == g.hin &&
                   out_wg.map_w == g.win);
    if (half == 0) return;
    flops_ += conv_back_window_flops(g, half, h, w);
    ++paths_.conv_windowed;
    COUNTED_LAUNCH(conv_back_window_relax_kernel, static_cast<unsigned>(2 * half), kBlock, 0, stream(), g, half, h, w,
                   org, wt, a, out_wg, out_org, out, rx);
  }

  void pool_back_window(const PoolGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org, const int* prob,
                        int64_t stride, const float* slopes, const float* a, float* out) override {
    if (half == 0) return;
    COUNTED_LAUNCH(pool_back_window_kernel, grid(2 * half * g.c * g.span_y(h) * g.span_x(w)), kBlock, 0, stream(), g,
                   half, h, w, org, prob, stride, slopes, a, out);
  }

  void elementwise_back_window(const WinGeom& wg, int64_t half, const int64_t* org, float* a, const int* prob,
                               int64_t stride, int64_t div, const float* al, const float* bl, const float* au,
                               const float* bu, double* bias, const float* then_bias, int64_t then_div) override {
    if (half == 0) return;
    COUNTED_LAUNCH(elementwise_window_kernel, static_cast<unsigned>(2 * half), kBlock, 0, stream(), wg, half, org, a,
                   prob, stride, div, al, bl, au, bu, bias, then_bias, then_div);
  }

  void window_to_dense(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, float* out) override {
    zero(out, static_cast<size_t>(2 * half * wg.c * wg.map_h * wg.map_w) * sizeof(float));
    if (half == 0) return;
    COUNTED_LAUNCH(window_to_dense_kernel, grid(2 * half * wg.size()), kBlock, 0, stream(), wg, half, org, a, out);
  }

  void add(int64_t n, const float* x, float* y) override {
    COUNTED_LAUNCH(add_kernel, grid(n), kBlock, 0, stream(), n, x, y);
  }

  void gather(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a, float* out) override {
    COUNTED_LAUNCH(gather_kernel, grid(rows * n_in), kBlock, 0, stream(), rows, n_out, n_in, inv, a, out);
  }

  void identity(int64_t half, int64_t size, const int64_t* pos, float* out) override {
    zero(out, static_cast<size_t>(2 * half * size) * sizeof(float));
    COUNTED_LAUNCH(identity_kernel, grid(2 * half), kBlock, 0, stream(), half, size, pos, out);
  }

  void concretize(int64_t half, int64_t n, const float* a, const int* prob, const double* x0, const double* x_hi,
                  const double* eps, RegionNorm norm, const double* bias, double* upper, double* lower) override {
    if (half == 0) return;
    COUNTED_LAUNCH(concretize_kernel, static_cast<unsigned>(2 * half), kBlock, 0, stream(), half, n, a, prob, x0, x_hi,
                   eps, norm, bias, upper, lower);
  }

  void concretize_window(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, const int* prob,
                         const double* x0, const double* x_hi, const double* eps, RegionNorm norm, const double* bias,
                         double* upper, double* lower) override {
    if (half == 0) return;
    COUNTED_LAUNCH(concretize_window_kernel, static_cast<unsigned>(2 * half), kBlock, 0, stream(), wg, half, org, a,
                   prob, x0, x_hi, eps, norm, bias, upper, lower);
  }

  void relax_activation(int64_t count, const ActSpec& s, const double* lo, const double* hi, float* al, float* bl,
                        float* au, float* bu) override {
    COUNTED_LAUNCH(relax_activation_kernel, grid(count), kBlock, 0, stream(), count, s, lo, hi, al, bl, au, bu);
  }

  void activation_bounds(int64_t count, const ActSpec& s, const double* lo, const double* hi, double* out_lo,
                         double* out_hi) override {
    COUNTED_LAUNCH(activation_bounds_kernel, grid(count), kBlock, 0, stream(), count, s, lo, hi, out_lo, out_hi);
  }

  void relax_maxpool(const PoolGeom& g, int64_t problems, const double* lo, const double* hi, float* slopes,
                     float* beta_u, float* beta_l) override {
    COUNTED_LAUNCH(relax_maxpool_kernel, grid(problems * g.out_size()), kBlock, 0, stream(), g, problems, lo, hi,
                   slopes, beta_u, beta_l);
  }

  void interval(const IntervalStep& s, int64_t problems, const double* lo, const double* hi, const double* lo2,
                const double* hi2, double* out_lo, double* out_hi) override {
    COUNTED_LAUNCH(interval_kernel, grid(problems * s.n_out), kBlock, 0, stream(), s, problems, lo, hi, lo2, hi2,
                   out_lo, out_hi);
  }

  void select_rows(int64_t count, SkipLevel level, const double* lo, const double* hi, const double* outer_lo,
                   const double* outer_hi, double* out_lo, double* out_hi, unsigned char* mask) override {
    COUNTED_LAUNCH(select_rows_kernel, grid(count), kBlock, 0, stream(), count, level, lo, hi, outer_lo, outer_hi,
                   out_lo, out_hi, mask);
  }

  void scatter(int64_t n, const int64_t* idx, const double* src, double* dst) override {
    COUNTED_LAUNCH(scatter_kernel, grid(n), kBlock, 0, stream(), n, idx, src, dst);
  }

  void flag_nonfinite(int64_t problems, int64_t size, const double* lo, const double* hi, int code,
                      int* flags) override {
    COUNTED_LAUNCH(flag_nonfinite_kernel, grid(problems * size), kBlock, 0, stream(), problems, size, lo, hi, code,
                   flags);
  }

 private:
  cudaStream_t stream() const {
    return stream_.get();
  }

  /// Blocks of a grid-stride loop over n elements (at least one, at most max_blocks_).
  unsigned grid(int64_t n) const {
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, max_blocks_));
  }

  void init(size_t budget) {
    cudaStream_t s = nullptr;
    CNNCERT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream_.reset(s);
    // The engine's own stream-ordered pool (the process's default pool stays as it was): freed
    // memory stays in it while the engine runs, since it allocates and frees the same sizes at
    // every layer, and goes back to the device with the engine.
    int dev = 0;
    CNNCERT_CUDA_CHECK(cudaGetDevice(&dev));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t pool = nullptr;
    CNNCERT_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
    pool_.reset(pool);
    uint64_t threshold = UINT64_MAX;
    CNNCERT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    size_t free_b = 0, total_b = 0;
    CNNCERT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    // Default: 70 % of the free memory; an explicit budget is clamped to 90 % of it. cuDNN's
    // workspace comes out of the budget, the rest (bounds, relaxations, library handles, pool
    // fragmentation) out of the part not given to it.
    ws_limit_ = std::max<size_t>(free_b / 16, size_t(64) << 20);
    const size_t most = free_b / 10 * 9;
    if (budget == 0) budget = free_b / 10 * 7;
    if (budget > most) {
      std::fprintf(stderr, "cnncert: GPU memory budget %zu MiB is more than 90%% of the free %zu MiB; using %zu MiB\n",
                   budget >> 20, free_b >> 20, most >> 20);
      budget = most;
    }
    budget_ = budget > ws_limit_ * 2 ? budget - ws_limit_ : budget / 2;
#if CNNCERT_HAVE_CUBLAS
    cublasHandle_t cb = nullptr;
    CNNCERT_CUBLAS(cublasCreate(&cb));
    cublas_.reset(cb);
    CNNCERT_CUBLAS(cublasSetStream(cb, stream()));
    CNNCERT_CUBLAS(cublasSetMathMode(cb, CUBLAS_DEFAULT_MATH));            // full FP32: no TF32 tensor-core math
    CNNCERT_CUBLAS(cublasSetAtomicsMode(cb, CUBLAS_ATOMICS_NOT_ALLOWED));  // deterministic
#endif
#if CNNCERT_HAVE_CUDNN
    cudnnHandle_t dn = nullptr;
    CNNCERT_CUDNN(cudnnCreate(&dn));
    cudnn_.reset(dn);
    CNNCERT_CUDNN(cudnnSetStream(dn, stream()));
#endif
  }

  StreamHandle stream_;
  PoolHandle pool_;
  cuda::DeviceBuffer<char> workspace_;
#if CNNCERT_HAVE_CUBLAS
  CublasHandle cublas_;
#endif
#if CNNCERT_HAVE_CUDNN
  CudnnHandle cudnn_;
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
  std::map<std::array<int64_t, 16>, std::unique_ptr<Plan>> plans_;
  Plan& conv_plan(const ConvGeom& g, int64_t rows) {
    const std::array<int64_t, 16> key{rows, g.cin, g.hin, g.win, g.cout, g.hout, g.wout, g.kh,
                                      g.kw, g.sh,  g.sw,  g.pt,  g.pl,   g.dh,   g.dw,   g.groups};
    auto it = plans_.find(key);
    if (it != plans_.end()) return *it->second;
    if (plans_.size() >= 256) plans_.clear();  // chunk sizes vary; keep the cache bounded
    auto plan = std::make_unique<Plan>();
    const auto I = [](int64_t v) { return static_cast<int>(v); };
    CNNCERT_CUDNN(cudnnCreateTensorDescriptor(&plan->dy));
    CNNCERT_CUDNN(cudnnCreateTensorDescriptor(&plan->dx));
    CNNCERT_CUDNN(cudnnCreateFilterDescriptor(&plan->w));
    CNNCERT_CUDNN(cudnnCreateConvolutionDescriptor(&plan->conv));
    CNNCERT_CUDNN(cudnnSetTensor4dDescriptor(plan->dy, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(rows), I(g.cout),
                                             I(g.hout), I(g.wout)));
    CNNCERT_CUDNN(cudnnSetTensor4dDescriptor(plan->dx, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(rows), I(g.cin), I(g.hin),
                                             I(g.win)));
    CNNCERT_CUDNN(cudnnSetFilter4dDescriptor(plan->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, I(g.cout),
                                             I(g.cin / g.groups), I(g.kh), I(g.kw)));
    CNNCERT_CUDNN(cudnnSetConvolution2dDescriptor(plan->conv, I(g.pt), I(g.pl), I(g.sh), I(g.sw), I(g.dh), I(g.dw),
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CNNCERT_CUDNN(cudnnSetConvolutionGroupCount(plan->conv, I(g.groups)));
    CNNCERT_CUDNN(cudnnSetConvolutionMathType(plan->conv, CUDNN_FMA_MATH));  // no TF32/tensor cores
    // cuDNN pads symmetrically: usable when its output size is the network's (asymmetric padding
    // that only pads positions no window reaches), else the direct kernel runs.
    int n = 0, c = 0, h = 0, wd = 0;
    const bool dims_ok =
        cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->dx, plan->w, &n, &c, &h, &wd) == CUDNN_STATUS_SUCCESS;
    if (dims_ok && n == rows && c == g.cout && h == g.hout && wd == g.wout) {
      int max_algos = 0, returned = 0;
      CNNCERT_CUDNN(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnn_.get(), &max_algos));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(max_algos, 1)));
      CNNCERT_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn_.get(), plan->w, plan->dy, plan->conv, plan->dx,
                                                                max_algos, &returned, perf.data()));
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
        CNNCERT_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn_.get(), plan->w, plan->dy, plan->conv,
                                                                   plan->dx, plan->algo, &plan->workspace));
        plan->usable = true;
        break;
      }
      if (plan->usable && plan->workspace > workspace_.size()) {
        CNNCERT_CUDA_CHECK(cudaStreamSynchronize(stream()));  // the old workspace may be in use
        workspace_ = cuda::DeviceBuffer<char>();
        workspace_ = cuda::DeviceBuffer<char>(plan->workspace);
      }
    }
    return *plans_.emplace(key, std::move(plan)).first->second;
  }

#endif
  size_t ws_limit_ = 0;
  size_t budget_ = 0;
  bool use_libs_ = true;
  int64_t max_blocks_ = kMaxGridBlocks;
  double flops_ = 0;
  PathCounts paths_;
};

}  // namespace

}  // namespace cnncert::batched

namespace cnncert::cuda_device {

std::unique_ptr<batched::Ops> make_cuda_ops(size_t budget_bytes, bool use_cudnn, int64_t max_grid_blocks) {
  if (!cuda_available()) throw InvalidArgument("--device gpu: " + cuda_device_info());
  return std::make_unique<batched::CudaOps>(budget_bytes, use_cudnn, max_grid_blocks);
}

}  // namespace cnncert::cuda_device
