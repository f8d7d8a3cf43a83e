// Device discovery and a smoke test of the CUDA toolchain (kernel launch, copies, streams): the
// plugin's side of include/cnncert/cuda.hpp (host/engine/cuda_plugin.cpp forwards the public functions).
#include <cmath>
#include <memory>
#include <sstream>

#include "check.cuh"
#include "cnncert/cuda.hpp"
#include "device_api.cuh"
#include "device_buffer.cuh"

namespace cnncert {
namespace cuda {
namespace {

struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDeleter>;

Stream make_stream() {
  cudaStream_t s = nullptr;
  CNNCERT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

__global__ void affine_relu_kernel(const double* x, double scale, double shift, double* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = fmax(scale * x[i] + shift, 0.0);
}

void affine_relu(const double* x, double scale, double shift, double* y, int n, cudaStream_t stream) {
  CNNCERT_ASSERT(n >= 0);
  if (n == 0) return;
  const int block = 256;
  CNNCERT_LAUNCH(affine_relu_kernel, (n + block - 1) / block, block, 0, stream, x, scale, shift, y, n);
}

}  // namespace
}  // namespace cuda

namespace cuda_device {

bool cuda_emulated() {
#if CNNCERT_CUDA_EMULATION_RUNTIME
  return true;
#else
  return false;
#endif
}

CudaLibraries cuda_libraries() {
  CudaLibraries l;
#if CNNCERT_HAVE_CUBLAS
  l.cublas = true;
#endif
#if CNNCERT_HAVE_CUDNN
  l.cudnn = true;
#endif
  return l;
}

bool cuda_available() {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return false;
  }
  return n > 0;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void cuda_use_device(int ordinal) {
  const int n = cuda_device_count();
  if (ordinal < 0 || ordinal >= n)
    throw InvalidArgument("GPU " + std::to_string(ordinal) + " does not exist (" + std::to_string(n) + " usable)");
  if (cudaSetDevice(ordinal) != cudaSuccess) {
    cudaGetLastError();
    throw InvalidArgument("cannot select GPU " + std::to_string(ordinal));
  }
}

std::string cuda_device_info() {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable GPU: ") + cudaGetErrorString(st);
  }
  if (n == 0) return "no usable GPU: no CUDA device found";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "no usable GPU: cannot query device 0";
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::ostringstream os;
  os << p.name << ", " << (p.totalGlobalMem >> 20) << " MiB, compute capability " << p.major << "." << p.minor
     << ", CUDA runtime " << runtime / 1000 << "." << (runtime % 1000) / 10 << ", driver " << driver / 1000 << "."
     << (driver % 1000) / 10 << (n > 1 ? ", " + std::to_string(n) + " devices" : std::string());
  return os.str();
}

std::string cuda_smoke_test() {
  if (!cuda_available()) return "no usable GPU";
  auto stream = cuda::make_stream();
  const int n = 1000;
  std::vector<double> h(n);
  for (int i = 0; i < n; ++i) h[i] = std::sin(0.37 * i);
  cuda::DeviceBuffer<double> x(n), y(n);
  x.upload(h, stream.get());
  cuda::affine_relu(x.data(), 2.0, -0.5, y.data(), n, stream.get());
  const std::vector<double> out = y.download(stream.get());
  for (int i = 0; i < n; ++i) {
    const double want = std::fmax(2.0 * h[i] - 0.5, 0.0);
    if (out[i] != want) {
      std::ostringstream os;
      os << "element " << i << ": GPU " << out[i] << ", CPU " << want;
      return os.str();
    }
  }
  return "";
}

}  // namespace cuda_device
}  // namespace cnncert
