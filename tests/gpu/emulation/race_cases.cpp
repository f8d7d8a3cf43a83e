// Kernels with and without a data race, for the emulator's race check (built with
// -DCNNCERT_RACECHECK=ON only; docs/CUDA_EMULATION.md). `cnncert_race_cases NAME` runs one case and
// prints its checksum. CTest expects ThreadSanitizer to report a data race in each racy case, naming
// its kernel, and no report at all in each clean one; the clean cases are the racy ones with the
// missing barrier put back or the conflicting writes spread over distinct elements.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "check.cuh"
#include "device_buffer.cuh"

namespace {

constexpr int kThreads = 64, kBlocks = 8;  // 8 blocks: two per worker of the race check

/// Each thread reads its neighbour's element of shared memory, written in the same phase.
__global__ void racy_neighbour_kernel(int* out) {
  __shared__ int s[kThreads];
  s[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
  out[blockIdx.x * kThreads + threadIdx.x] = s[(threadIdx.x + 1) % kThreads];
}

/// The same with the barrier between the write and the read.
__global__ void neighbour_kernel(int* out) {
  __shared__ int s[kThreads];
  s[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
  __syncthreads();
  out[blockIdx.x * kThreads + threadIdx.x] = s[(threadIdx.x + 1) % kThreads];
}

/// A tree reduction through shared memory, as the engine's block_reduce; every thread reads the
/// result. Without the trailing barrier, a second reduction's first write races with the reads.
template <bool kTrailingBarrier>
__device__ int block_sum(int v) {
  __shared__ int s[kThreads];
  s[threadIdx.x] = v;
  __syncthreads();
  for (unsigned w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  const int r = s[0];
  if (kTrailingBarrier) __syncthreads();
  return r;
}

__global__ void racy_reduce_twice_kernel(const int* in, int* out) {
  const int v = in[blockIdx.x * kThreads + threadIdx.x];
  const int a = block_sum<false>(v), b = block_sum<false>(2 * v);
  if (threadIdx.x == 0) out[blockIdx.x] = a + b;
}

__global__ void reduce_twice_kernel(const int* in, int* out) {
  const int v = in[blockIdx.x * kThreads + threadIdx.x];
  const int a = block_sum<true>(v), b = block_sum<true>(2 * v);
  if (threadIdx.x == 0) out[blockIdx.x] = a + b;
}

/// Thread 0 of every block adds to the same element: blocks are not ordered.
__global__ void racy_blocks_kernel(int* out) {
  if (threadIdx.x == 0) out[0] += static_cast<int>(blockIdx.x) + 1;
}

/// Each block adds to its own element.
__global__ void blocks_kernel(int* out) {
  if (threadIdx.x == 0) out[blockIdx.x] += static_cast<int>(blockIdx.x) + 1;
}

/// A grid-stride loop over n elements that a grid of fewer threads covers in several rounds; the
/// next launch reads what this one wrote (launches are ordered).
__global__ void stride_write_kernel(int* out, int n) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += static_cast<int>(blockDim.x * gridDim.x))
    out[i] = i;
}
__global__ void stride_sum_kernel(const int* in, int n, int* out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += in[i];
  out[0] = sum;
}

long long checksum(const std::vector<int>& v) {
  long long s = 0;
  for (const int x : v) s += x;
  return s;
}

long long run_case(const char* name) {
  namespace cc = cnncert::cuda;
  cc::DeviceBuffer<int> out(kBlocks * kThreads), in(kBlocks * kThreads);
  CNNCERT_CUDA_CHECK(cudaMemsetAsync(out.data(), 0, kBlocks * kThreads * sizeof(int), nullptr));
  std::vector<int> h(kBlocks * kThreads);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<int>(i % 13);
  in.upload(h, nullptr);
  const std::string n = name;
  if (n == "shared-neighbour-racy")
    CNNCERT_LAUNCH(racy_neighbour_kernel, kBlocks, kThreads, 0, nullptr, out.data());
  else if (n == "shared-neighbour")
    CNNCERT_LAUNCH(neighbour_kernel, kBlocks, kThreads, 0, nullptr, out.data());
  else if (n == "reduce-twice-racy")
    CNNCERT_LAUNCH(racy_reduce_twice_kernel, kBlocks, kThreads, 0, nullptr, in.data(), out.data());
  else if (n == "reduce-twice")
    CNNCERT_LAUNCH(reduce_twice_kernel, kBlocks, kThreads, 0, nullptr, in.data(), out.data());
  else if (n == "blocks-racy")
    CNNCERT_LAUNCH(racy_blocks_kernel, kBlocks, kThreads, 0, nullptr, out.data());
  else if (n == "blocks")
    CNNCERT_LAUNCH(blocks_kernel, kBlocks, kThreads, 0, nullptr, out.data());
  else if (n == "grid-stride") {
    CNNCERT_LAUNCH(stride_write_kernel, 3, kThreads, 0, nullptr, in.data(), kBlocks * kThreads);
    CNNCERT_LAUNCH(stride_sum_kernel, 2, kThreads, 0, nullptr, in.data(), kBlocks * kThreads, out.data());
  } else {
    std::fprintf(stderr, "unknown race case '%s'\n", name);
    return -1;
  }
  return checksum(out.download(nullptr));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cnncert_race_cases NAME\n");
    return 2;
  }
  try {
    const long long sum = run_case(argv[1]);
    if (sum < 0) return 2;
    std::printf("race case %s: ran, checksum %lld\n", argv[1], sum);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "race case %s: %s\n", argv[1], e.what());
    return 1;
  }
  return 0;
}
