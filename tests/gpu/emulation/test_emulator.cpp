// The CPU emulation of CUDA itself (emulated build only): barriers and shared memory behave as on
// the hardware, launch limits and faults are reported as errors of the kinds the hardware reports
// (at the launch itself, where a GPU reports a fault at a later call), and errors reach the
// project's checks (cuda/check.cuh) attributed to the call that caused them. With the cuBLAS/cuDNN
// stand-ins: they check what the libraries check, fault on operands outside device memory, follow
// the math mode, and the engine's fallback after a cuDNN failure at execution time runs.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "check.cuh"
#include "cnncert/cuda.hpp"
#include "cnncert/error.hpp"
#include "device_buffer.cuh"
#include "engine/batched_engine.hpp"
#include "engine/batched_kernels.hpp"
#if CNNCERT_EMULATED_CUDA_LIBS
#include "common/engine_compare.hpp"
#include "common/net_factory.hpp"
#include "cublas_v2.h"
#include "cudnn.h"
#endif

namespace {

/// Block sums through shared memory with a tree of barriers (as the engine's reductions).
__global__ void block_sum_kernel(const int* in, int* out) {
  __shared__ int s[256];
  s[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

__global__ void index_kernel(int* out) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b = blockIdx.x + gridDim.x * blockIdx.y;
  out[b * blockDim.x * blockDim.y * blockDim.z + t] = static_cast<int>(b * 10000 + t);
}

/// Threads 1.. reach a barrier that thread 0 skips: undefined on the hardware, an error here.
__global__ void divergent_kernel(int* out) {
  if (threadIdx.x != 0) __syncthreads();
  out[threadIdx.x] = 1;
}

/// Thread 0 reaches a barrier that the others skip (the fiber path of the emulator).
__global__ void divergent_after_first_kernel(int* out) {
  if (threadIdx.x == 0) __syncthreads();
  out[threadIdx.x] = 1;
}

/// Each thread reads its neighbour's write without a barrier between: a race. The emulation runs
/// threads in order on one launch and in reverse on the next, so the race shows as different
/// results.
__global__ void racy_kernel(int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

/// Writes one element past its array.
__global__ void overrun_kernel(float* out, int n) {
  if (threadIdx.x == 0) out[n] = 1.0f;
}

/// out[0] = a[i] (a read anywhere relative to a).
__global__ void read_at_kernel(const float* a, int i, float* out) {
  if (threadIdx.x == 0) out[0] = a[i];
}

/// Sets y[0] = 1 (its struct argument's pointers are only checked at the launch).
__global__ void relax_step_kernel(cnncert::batched::RelaxStep, float* y) {
  if (threadIdx.x == 0) y[0] = 1.0f;
}
__global__ void interval_step_kernel(cnncert::batched::IntervalStep, float* y) {
  if (threadIdx.x == 0) y[0] = 1.0f;
}

class Emulator : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cnncert::cuda_emulated()); }
  // Clears the sticky fault some tests cause. A reset frees every allocation, those of buffers that
  // outlive a test too (test_ops.cpp keeps its backends, with their cuDNN workspace, per process),
  // so it runs only after a fault; tests that fault need their own process (as ctest runs them).
  void TearDown() override {
    if (cnncert::emu::device_faulted()) cudaDeviceReset();
  }
};

TEST_F(Emulator, BarriersAndSharedMemoryGiveBlockSums) {
  const int blocks = 3, threads = 256;
  std::vector<int> h(blocks * threads);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<int>(i % 97);
  cnncert::cuda::DeviceBuffer<int> in(h.size()), out(blocks);
  in.upload(h, nullptr);
  CNNCERT_LAUNCH(block_sum_kernel, blocks, threads, 0, nullptr, in.data(), out.data());
  const auto got = out.download(nullptr);
  for (int b = 0; b < blocks; ++b) {
    int want = 0;
    for (int t = 0; t < threads; ++t) want += h[static_cast<size_t>(b * threads + t)];
    EXPECT_EQ(got[static_cast<size_t>(b)], want) << "block " << b;
  }
}

TEST_F(Emulator, EveryThreadOfA3DBlockAnd2DGridRunsOnce) {
  const dim3 grid(3, 2), block(4, 3, 2);
  cnncert::cuda::DeviceBuffer<int> out(6 * 24);
  CNNCERT_CUDA_CHECK(cudaMemsetAsync(out.data(), 0xFF, 6 * 24 * sizeof(int), nullptr));
  CNNCERT_LAUNCH(index_kernel, grid, block, 0, nullptr, out.data());
  const auto got = out.download(nullptr);
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < 24; ++t) EXPECT_EQ(got[static_cast<size_t>(b * 24 + t)], b * 10000 + t);
}

TEST_F(Emulator, LaunchLimitsFailLikeTheHardware) {
  cnncert::cuda::DeviceBuffer<int> out(4096);
  const auto launch_fails = [&](dim3 grid, dim3 block) {
    try {
      CNNCERT_LAUNCH(index_kernel, grid, block, 0, nullptr, out.data());
    } catch (const cnncert::CudaError& e) {
      EXPECT_NE(std::string(e.what()).find("cudaErrorInvalidConfiguration"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("launch of index_kernel"), std::string::npos) << e.what();
      return true;
    }
    return false;
  };
  EXPECT_TRUE(launch_fails(dim3(1), dim3(1025)));
  EXPECT_TRUE(launch_fails(dim3(1), dim3(32, 33)));
  EXPECT_TRUE(launch_fails(dim3(1), dim3(1, 1, 65)));
  EXPECT_TRUE(launch_fails(dim3(0), dim3(32)));
  EXPECT_TRUE(launch_fails(dim3(1, 65536), dim3(1)));
  EXPECT_FALSE(launch_fails(dim3(1), dim3(1024)));  // the limit itself is fine
  // a configuration error is not sticky: the next launch works
  EXPECT_FALSE(launch_fails(dim3(2), dim3(8)));
}

TEST_F(Emulator, DivergentBarrierIsAFault) {
  cnncert::cuda::DeviceBuffer<int> out(64);
  EXPECT_THROW(CNNCERT_LAUNCH(divergent_kernel, 1, 64, 0, nullptr, out.data()), cnncert::CudaError);
  // sticky, as a fault on the hardware: later calls fail too
  EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaErrorLaunchFailure);
}

TEST_F(Emulator, DivergentBarrierOnTheFiberPathIsAFault) {
  cnncert::cuda::DeviceBuffer<int> out(64);
  // both thread orders: once thread 0 runs first, once last
  EXPECT_THROW(CNNCERT_LAUNCH(divergent_after_first_kernel, 1, 64, 0, nullptr, out.data()), cnncert::CudaError);
  cudaDeviceReset();
  cnncert::cuda::DeviceBuffer<int> out2(64);
  EXPECT_THROW(CNNCERT_LAUNCH(divergent_after_first_kernel, 1, 64, 0, nullptr, out2.data()), cnncert::CudaError);
}

TEST_F(Emulator, AMissingBarrierChangesResultsBetweenLaunches) {
  cnncert::cuda::DeviceBuffer<int> out(64);
  CNNCERT_LAUNCH(racy_kernel, 1, 64, 0, nullptr, out.data());
  const auto a = out.download(nullptr);
  CNNCERT_LAUNCH(racy_kernel, 1, 64, 0, nullptr, out.data());
  const auto b = out.download(nullptr);
  EXPECT_NE(a, b) << "a race between threads went unnoticed";
}

// A write into an allocation's guard bytes (before it; without the arena also the 64 bytes after
// it): a sticky illegal address at the launch's check. (With the arena, the first byte after an
// allocation is on an inaccessible page: AKernelTouchingPastItsArrayStops.)
TEST_F(Emulator, WritePastAnAllocationIsAnIllegalAddress) {
  const bool arena = cnncert::emu::host_access_checked();
  cnncert::cuda::DeviceBuffer<float> out(10);
  try {
    CNNCERT_LAUNCH(overrun_kernel, 1, 32, 0, nullptr, out.data(), arena ? -1 : 10);
    ADD_FAILURE() << "no fault reported";
  } catch (const cnncert::CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("cudaErrorIllegalAddress"), std::string::npos) << e.what();
  }
}

TEST_F(Emulator, AKernelTouchingPastItsArrayStops) {
  if (!cnncert::emu::host_access_checked()) GTEST_SKIP() << "device memory is not protected in this build";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  cnncert::cuda::DeviceBuffer<float> out(10), neighbour(10), odd(9);
  EXPECT_DEATH(CNNCERT_LAUNCH(overrun_kernel, 1, 32, 0, nullptr, out.data(), 10),
               "kernel overrun_kernel, block \\(0,0,0\\), thread \\(0,0,0\\), touched device memory");
  EXPECT_DEATH(CNNCERT_LAUNCH(overrun_kernel, 1, 32, 0, nullptr, odd.data(), 9),  // (a size not a multiple of 8)
               "kernel overrun_kernel, .* touched device memory");
  // Reads too: the element just past an array, and another array that is not an argument.
  EXPECT_DEATH(CNNCERT_LAUNCH(read_at_kernel, 1, 1, 0, nullptr, out.data(), 10, out.data()),
               "kernel read_at_kernel, .* touched device memory");
  const auto offset = static_cast<int>(neighbour.data() - out.data());
  EXPECT_DEATH(CNNCERT_LAUNCH(read_at_kernel, 1, 1, 0, nullptr, out.data(), offset, out.data()),
               "kernel read_at_kernel, .* touched device memory");
  CNNCERT_LAUNCH(read_at_kernel, 1, 1, 0, nullptr, out.data(), 9, out.data());  // the last element: fine
}

TEST_F(Emulator, CopiesOutsideAllocationsAreInvalid) {
  cnncert::cuda::DeviceBuffer<float> buf(8);
  std::vector<float> h(16);
  EXPECT_EQ(cudaMemcpyAsync(buf.data(), h.data(), 16 * sizeof(float), cudaMemcpyHostToDevice, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(h.data(), buf.data() + 4, 5 * sizeof(float), cudaMemcpyDeviceToHost, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(h.data(), buf.data() + 4, 4 * sizeof(float), cudaMemcpyDeviceToHost, nullptr), cudaSuccess);
  cudaGetLastError();
}

// The mix-ups of the two address spaces that a GPU does not forgive and the host backend does.
// Host code dereferencing a device pointer: the process stops there, with a message and the stack.
TEST_F(Emulator, HostCodeThatTouchesDeviceMemoryStops) {
  if (!cnncert::emu::host_access_checked()) GTEST_SKIP() << "device memory is not protected in this build";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  cnncert::cuda::DeviceBuffer<float> buf(4);
  buf.upload(std::vector<float>{1, 2, 3, 4}, nullptr);
  float* p = buf.data();
  EXPECT_DEATH(
      {
        const volatile float* v = p + 2;
        std::printf("%f\n", static_cast<double>(*v));
      },
      "host code touched device memory at");
  EXPECT_DEATH(*static_cast<volatile float*>(p) = 0.0f, "host code touched device memory at");
  // The emulator's own accesses go on: copies, memsets and kernels (every other test), and the
  // values are those written.
  EXPECT_EQ(buf.download(nullptr), (std::vector<float>{1, 2, 3, 4}));
}

// A host array given to a kernel, directly or inside a struct argument (device_pointers): a fault
// at the launch, naming the kernel and the argument (on stderr), and the kernel does not run.
TEST_F(Emulator, AHostArrayPassedToAKernelIsAnIllegalAddress) {
  cnncert::cuda::DeviceBuffer<int> dev(64);
  std::vector<int> host(64, 7);
  try {
    CNNCERT_LAUNCH(block_sum_kernel, 1, 64, 0, nullptr, host.data(), dev.data());
    ADD_FAILURE() << "a host pointer went to a kernel unnoticed";
  } catch (const cnncert::CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("cudaErrorIllegalAddress"), std::string::npos) << e.what();
  }
}

// Each pointer member of the structs that carry pointers into kernels, in turn a host array: a
// fault naming the argument, and the kernel does not run; with device arrays it runs.
TEST_F(Emulator, AHostArrayInsideAStructArgumentIsAnIllegalAddress) {
  const auto launch_with = [](auto kernel, const auto& arg, const char* what) {
    cudaDeviceReset();  // (the previous case's fault)
    cnncert::cuda::DeviceBuffer<float> y(1), dev(4);
    y.upload(std::vector<float>{0}, nullptr);
    auto a = arg(dev.data());
    ::testing::internal::CaptureStderr();
    bool threw = false;
    try {
      CNNCERT_LAUNCH(kernel, 1, 1, 0, nullptr, a, y.data());
    } catch (const cnncert::CudaError& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("cudaErrorIllegalAddress"), std::string::npos) << what << ": " << e.what();
    }
    const std::string err = ::testing::internal::GetCapturedStderr();
    const cnncert::emu::DeviceAccess access{y.data()};  // (the test reads device memory itself)
    return std::make_tuple(threw, err, y.data()[0]);
  };
  float host[4] = {};
  using cnncert::batched::IntervalStep;
  using cnncert::batched::RelaxStep;
  {
    const auto [threw, err, y] = launch_with(
        relax_step_kernel,
        [](float* d) {
          RelaxStep r;
          r.al = r.bl = r.au = r.bu = r.then_bias = d;
          r.prob = reinterpret_cast<const int*>(d), r.bias = reinterpret_cast<double*>(d);
          return r;
        },
        "device arrays");
    EXPECT_FALSE(threw) << err;
    EXPECT_EQ(y, 1.0f) << "the kernel did not run";
  }
  // Each member in turn a host array, the first a device array, the others null.
  const auto each_member_on_host = [&](auto kernel, auto first, const char* type, const auto& cases) {
    for (const auto& [name, set] : cases) {
      const auto [threw, err, y] = launch_with(
          kernel,
          [&](float* d) {
            auto a = first(d);
            set(a);
            return a;
          },
          name);
      EXPECT_TRUE(threw) << type << "::" << name << " on the host went unnoticed";
      EXPECT_NE(err.find(": argument 0 (from 0) is not device memory"), std::string::npos) << name << ": " << err;
      EXPECT_EQ(y, 0.0f) << "the kernel ran with " << type << "::" << name << " on the host";
    }
  };
  const std::vector<std::pair<const char*, std::function<void(RelaxStep&)>>> relax_cases = {
      {"prob", [&](RelaxStep& r) { r.prob = reinterpret_cast<const int*>(host); }},
      {"al", [&](RelaxStep& r) { r.al = host; }},
      {"bl", [&](RelaxStep& r) { r.bl = host; }},
      {"au", [&](RelaxStep& r) { r.au = host; }},
      {"bu", [&](RelaxStep& r) { r.bu = host; }},
      {"bias", [&](RelaxStep& r) { r.bias = reinterpret_cast<double*>(host); }},
      {"then_bias", [&](RelaxStep& r) { r.then_bias = host; }},
  };
  each_member_on_host(
      relax_step_kernel,
      [](float* d) {
        RelaxStep r;
        r.al = d;
        return r;
      },
      "RelaxStep", relax_cases);
  const std::vector<std::pair<const char*, std::function<void(IntervalStep&)>>> interval_cases = {
      {"w", [&](IntervalStep& s) { s.w = host; }},
      {"b", [&](IntervalStep& s) { s.b = host; }},
      {"map", [&](IntervalStep& s) { s.map = reinterpret_cast<const int64_t*>(host); }},
  };
  each_member_on_host(
      interval_step_kernel,
      [](float* d) {
        IntervalStep s;
        s.w = d;
        return s;
      },
      "IntervalStep", interval_cases);
}

// Freeing an allocation that the emulator's own work has open (another thread's copy, say): a
// fault, not a block handed out again while in use.
TEST_F(Emulator, FreeingAnAllocationInUseIsAFault) {
  if (!cnncert::emu::host_access_checked()) GTEST_SKIP() << "device memory is not protected in this build";
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 40), cudaSuccess);
  {
    const cnncert::emu::DeviceAccess in_use{p};
    EXPECT_EQ(cudaFree(p), cudaErrorIllegalAddress);
  }
}

// A device pointer on the host side of a copy (the CPU would touch it): refused.
TEST_F(Emulator, ACopyWhoseHostSideIsDeviceMemoryIsInvalid) {
  cnncert::cuda::DeviceBuffer<float> a(4), b(4);
  EXPECT_EQ(cudaMemcpyAsync(a.data(), b.data(), 4 * sizeof(float), cudaMemcpyHostToDevice, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(a.data(), b.data(), 4 * sizeof(float), cudaMemcpyDeviceToHost, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(a.data(), b.data(), 4 * sizeof(float), cudaMemcpyDeviceToDevice, nullptr), cudaSuccess);
  cudaGetLastError();
}

TEST_F(Emulator, AnEarlierUncheckedErrorIsNotBlamedOnTheNextLaunch) {
  cnncert::cuda::DeviceBuffer<int> out(64);
  int* bad = nullptr;
  (void)cudaMalloc(&bad, size_t(1) << 40);  // fails (out of memory), unchecked
  try {
    CNNCERT_LAUNCH(index_kernel, 1, 8, 0, nullptr, out.data());
    ADD_FAILURE() << "the pending error was lost";
  } catch (const cnncert::CudaError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("an earlier CUDA call"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaErrorMemoryAllocation"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(CNNCERT_LAUNCH(index_kernel, 1, 8, 0, nullptr, out.data()));
}

TEST_F(Emulator, TheEngineLeavesTheDefaultMemoryPoolAlone) {
  cudaMemPool_t pool = nullptr;
  ASSERT_EQ(cudaDeviceGetMemPool(&pool, 0), cudaSuccess);
  uint64_t before = 12345, after = 0;
  ASSERT_EQ(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &before), cudaSuccess);
  {
    auto ops = cnncert::batched::make_cuda_ops(1 << 20);
    void* p = ops->alloc(1000);
    ops->release(p);
  }
  ASSERT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &after), cudaSuccess);
  EXPECT_EQ(after, before);
}

TEST_F(Emulator, AnExplicitBudgetIsClampedToTheFreeMemory) {
  size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  auto ops = cnncert::batched::make_cuda_ops(free_b * 4);
  EXPECT_LE(ops->memory_budget(), free_b / 10 * 9);
  EXPECT_GT(ops->memory_budget(), 0u);
}

#if CNNCERT_EMULATED_CUDA_LIBS
TEST_F(Emulator, TheSgemmStandInChecksItsArgumentsAndOperands) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  // C (2 × 2) = A (2 × 3) · B (3 × 2), column-major: A = [1 2 3; 4 5 6], B = [1 0; 0 1; 1 1].
  const std::vector<float> a = {1, 4, 2, 5, 3, 6}, b = {1, 0, 1, 0, 1, 1};
  cnncert::cuda::DeviceBuffer<float> da(a.size()), db(b.size()), dc(4);
  da.upload(a, nullptr), db.upload(b, nullptr);
  const float one = 1, zero = 0;
  ASSERT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, da.data(), 2, db.data(), 3, &zero, dc.data(), 2),
            CUBLAS_STATUS_SUCCESS);  // C is fresh memory (NaN): beta 0 must not read it
  EXPECT_EQ(dc.download(nullptr), (std::vector<float>{4, 10, 5, 11}));
  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, da.data(), 1, db.data(), 3, &zero, dc.data(), 2),
            CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  // TF32 math rounds the operands: 1 + 2^-20 becomes 1.
  ASSERT_EQ(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
  const std::vector<float> fine = {1 + 0x1p-20f};
  cnncert::cuda::DeviceBuffer<float> dx(1), dy(1);
  dx.upload(fine, nullptr);
  ASSERT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dx.data(), 1, dx.data(), 1, &zero, dy.data(), 1),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(dy.download(nullptr)[0], 1.0f);
  // A host pointer as an operand: the call returns, the fault is sticky (as on a GPU).
  std::vector<float> host(6);
  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, host.data(), 2, db.data(), 3, &zero, dc.data(), 2),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorIllegalAddress);
  cublasDestroy(h);
}

TEST_F(Emulator, TheConvolutionStandInChecksShapesWorkspaceAndMathType) {
  cudnnHandle_t h = nullptr;
  ASSERT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t dy = nullptr, dx = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t cv = nullptr;
  cudnnCreateTensorDescriptor(&dy), cudnnCreateTensorDescriptor(&dx), cudnnCreateFilterDescriptor(&w);
  cudnnCreateConvolutionDescriptor(&cv);
  // One 1 × 3 × 3 input, one 2 × 2 filter, no padding: a 2 × 2 output.
  ASSERT_EQ(cudnnSetTensor4dDescriptor(dx, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 3, 3), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 1, 2, 2), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetConvolution2dDescriptor(cv, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetConvolutionMathType(cv, CUDNN_FMA_MATH), CUDNN_STATUS_SUCCESS);
  int n = 0, c = 0, hh = 0, ww = 0;
  ASSERT_EQ(cudnnGetConvolution2dForwardOutputDim(cv, dx, w, &n, &c, &hh, &ww), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(std::vector<int>({n, c, hh, ww}), std::vector<int>({1, 1, 2, 2}));
  // dy of the wrong shape is refused.
  ASSERT_EQ(cudnnSetTensor4dDescriptor(dy, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 3, 3), CUDNN_STATUS_SUCCESS);
  size_t ws = 0;
  EXPECT_EQ(cudnnGetConvolutionBackwardDataWorkspaceSize(h, w, dy, cv, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &ws),
            CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(dy, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 2, 2), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnGetConvolutionBackwardDataWorkspaceSize(h, w, dy, cv, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &ws),
            CUDNN_STATUS_SUCCESS);
  ASSERT_GT(ws, 0u);
  // dx(i, j) = Σ over outputs (p, q) and taps (r, s) with (p + r, q + s) = (i, j) of dy(p, q) w(r, s).
  const std::vector<float> wt = {1, 2, 3, 1 + 0x1p-20f}, g = {1, 10, 100, 1000};
  cnncert::cuda::DeviceBuffer<float> dw(4), dg(4), dout(9);
  cnncert::cuda::DeviceBuffer<char> work(ws);
  dw.upload(wt, nullptr), dg.upload(g, nullptr);
  const float one = 1, zero = 0;
  EXPECT_EQ(cudnnConvolutionBackwardData(h, &one, w, dw.data(), dy, dg.data(), cv, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                         work.data(), ws - 1, &zero, dx, dout.data()),
            CUDNN_STATUS_BAD_PARAM);  // a workspace smaller than asked for
  ASSERT_EQ(cudnnConvolutionBackwardData(h, &one, w, dw.data(), dy, dg.data(), cv, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                         work.data(), ws, &zero, dx, dout.data()),
            CUDNN_STATUS_SUCCESS);
  const float d = 1 + 0x1p-20f;  // (its 2^-20 is lost to rounding in the sums at 1231, 2010 and 3100)
  EXPECT_EQ(dout.download(nullptr), (std::vector<float>{1, 2 + 10, 20, 3 + 100, 1000.0f + 200 + 30 + d, 2000 + 10 * d,
                                                        300, 3000 + 100 * d, 1000 * d}));
  // Without CUDNN_FMA_MATH tensor cores (TF32) may run: the stand-in rounds 1 + 2^-20 to 1.
  ASSERT_EQ(cudnnSetConvolutionMathType(cv, CUDNN_DEFAULT_MATH), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnConvolutionBackwardData(h, &one, w, dw.data(), dy, dg.data(), cv, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                         work.data(), ws, &zero, dx, dout.data()),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dout.download(nullptr)[8], 1000.0f);
  cudnnDestroyTensorDescriptor(dy), cudnnDestroyTensorDescriptor(dx), cudnnDestroyFilterDescriptor(w);
  cudnnDestroyConvolutionDescriptor(cv);
  cudnnDestroy(h);
}

TEST_F(Emulator, ACuDNNFailureAtExecutionRunsTheOwnKernelWithTheSameBounds) {
  using namespace cnncert;
  const Network net = test::random_network(test::Family::Cnn, ActKind::Relu, 3);
  const auto ps = test::margin_problems(net, 2, 0.02, 4);
  auto clean = batched::make_batched_engine(net, batched::make_cuda_ops(0));
  const auto want = clean->bound(ps, BoundOptions{});
  ASSERT_GT(clean->stats().conv_cudnn, 1);
  ASSERT_EQ(clean->stats().conv_own_kernel, 0);
  cnncert::emu::cudnn_fail_next_executions(1);
  auto failing = batched::make_batched_engine(net, batched::make_cuda_ops(0));
  const auto got = failing->bound(ps, BoundOptions{});
  const EngineStats s = failing->stats();
  EXPECT_EQ(s.conv_cudnn_failed, 1);
  EXPECT_GE(s.conv_own_kernel, 1);  // that call, and its geometry's later ones
  EXPECT_EQ(s.conv_cudnn + s.conv_own_kernel, clean->stats().conv_cudnn);
  ASSERT_EQ(got.size(), want.size());
  for (size_t p = 0; p < got.size(); ++p) {
    EXPECT_EQ(got[p].lower, want[p].lower);
    EXPECT_EQ(got[p].upper, want[p].upper);
  }
}

TEST_F(Emulator, ACuBLASFailureIsAnErrorNamingTheCallNotABound) {
  // cuBLAS has no fallback: a failed GEMM fails the engine call with the call and its status
  // (CUBLAS_STATUS_EXECUTION_FAILED = 13), and the next call, which succeeds, gives the bounds.
  using namespace cnncert;
  const Network net = test::random_network(test::Family::Mlp, ActKind::Relu, 3);
  const auto ps = test::margin_problems(net, 2, 0.02, 4);
  auto e = batched::make_batched_engine(net, batched::make_cuda_ops(0));
  const auto want = e->bound(ps, BoundOptions{});
  ASSERT_GT(e->stats().gemm_cublas, 0);
  cnncert::emu::cublas_fail_next_calls(1);
  try {
    e->bound(ps, BoundOptions{});
    ADD_FAILURE() << "the failed GEMM went unnoticed";
  } catch (const CudaError& err) {
    const std::string m = err.what();
    EXPECT_NE(m.find("cublasSgemm"), std::string::npos) << m;
    EXPECT_NE(m.find("cuBLAS status 13"), std::string::npos) << m;
  }
  const auto again = e->bound(ps, BoundOptions{});
  ASSERT_EQ(again.size(), want.size());
  for (size_t p = 0; p < want.size(); ++p) EXPECT_EQ(again[p].lower, want[p].lower);
}
#endif

}  // namespace
