#pragma once
// Move-only RAII device memory.
#include <cstddef>
#include <cstdio>
#include <vector>

#include "check.cuh"

namespace cnncert::cuda {

/// Device array of `size()` elements of T; move-only (copies go through upload/download).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_) CNNCERT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }

  void upload(const std::vector<T>& h, cudaStream_t s) {
    CNNCERT_ASSERT(h.size() == n_);
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  std::vector<T> download(cudaStream_t s) const {
    std::vector<T> h(n_);
    CNNCERT_CUDA_CHECK(cudaMemcpyAsync(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost, s));
    CNNCERT_CUDA_CHECK(cudaStreamSynchronize(s));
    return h;
  }

 private:
  void release() noexcept {
    if (p_) {
      const cudaError_t st = cudaFree(p_);
      if (st != cudaSuccess) std::fprintf(stderr, "cnncert: cudaFree failed: %s\n", cudaGetErrorString(st));
    }
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace cnncert::cuda
