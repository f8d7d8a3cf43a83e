#pragma once
/// \file cuda.hpp
/// Whether the GPU engine is compiled in and usable. Host-only: no CUDA types.

#include <string>

namespace cnncert {

/// True when this build contains the CUDA engine: built with it, and (a CUDA build) its plugin
/// libcnncert_cuda.so loads; the first call of any function here loads it.
bool cuda_compiled();
/// True when the CUDA engine's sources were built for the CPU emulation (-DCNNCERT_CUDA_EMULATION=ON,
/// a test build: its "GPU" is the host, docs/CUDA_EMULATION.md).
bool cuda_emulated();
/// The NVIDIA libraries the CUDA engine was built with (without one, its own kernels run). Under the
/// emulation: its stand-ins of them (cuda/emulation, with -DCNNCERT_EMULATE_CUDA_LIBS=ON, the default).
struct CudaLibraries {
  bool cublas = false, cudnn = false;
};
CudaLibraries cuda_libraries();
/// True when the CUDA engine is compiled in and at least one GPU is usable.
bool cuda_available();
/// Number of usable GPUs (0 without CUDA, a driver or a device).
int cuda_device_count();
/// Makes GPU `ordinal` the one this thread's later GPU engines use (e.g. one GPU per MPI rank).
/// Throws InvalidArgument when there is no such GPU.
void cuda_use_device(int ordinal);
/// One line describing the GPU (name, memory, compute capability, runtime version), or why none
/// is usable.
std::string cuda_device_info();
/// Runs a small kernel on the GPU and compares it with the CPU: "" when it matches, else what
/// went wrong (also "no usable GPU"). Throws CudaError when a CUDA call fails.
std::string cuda_smoke_test();

}  // namespace cnncert
