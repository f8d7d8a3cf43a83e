#pragma once
// The CUDA engine as a plugin (libcnncert_cuda.so, cuda/): its one entry point returns this table.
// libcnncert loads it on the first use of the GPU (host/engine/cuda_plugin.cpp), so a CPU-only process
// never maps cudart, cuBLAS or cuDNN. The plugin references no symbol of libcnncert: everything it
// needs is inline in the headers, and libcnncert builds the engine from its Ops (make_gpu_engine).
// Both sides are built together by the same compiler: C++ types cross the boundary as they are.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cnncert/cuda.hpp"

namespace cnncert::batched {
class Ops;
}

namespace cnncert::detail {

/// Raised when a field is added, removed or changes meaning.
constexpr int kCudaPluginAbi = 1;

struct CudaPlugin {
  int abi = kCudaPluginAbi;
  const char* version = "";  ///< the cnncert version it was built as: must equal libcnncert's
  bool emulated = false;     ///< the kernels run under the CPU emulation (a test build)
  CudaLibraries (*libraries)() = nullptr;
  bool (*available)() = nullptr;
  int (*device_count)() = nullptr;
  void (*use_device)(int ordinal) = nullptr;
  std::string (*device_info)() = nullptr;
  std::string (*smoke_test)() = nullptr;
  /// The CUDA backend of the batched engine (batched::make_cuda_ops).
  std::unique_ptr<batched::Ops> (*make_ops)(size_t budget_bytes, bool use_cudnn, int64_t max_grid_blocks) = nullptr;
};

}  // namespace cnncert::detail

/// The plugin's entry point (the only symbol it exports).
extern "C" const cnncert::detail::CudaPlugin* cnncert_cuda_plugin();
