#pragma once
// The plugin's implementations of include/cnncert/cuda.hpp (cuda/device.cu) and of the CUDA Ops
// (cuda/cuda_ops.cu), in their own namespace: inside the plugin nothing may bind to libcnncert's
// public functions of the same name (host/engine/cuda_plugin.hpp).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cnncert/cuda.hpp"

namespace cnncert::batched {
class Ops;
}

namespace cnncert::cuda_device {
bool cuda_emulated();
CudaLibraries cuda_libraries();
bool cuda_available();
int cuda_device_count();
void cuda_use_device(int ordinal);
std::string cuda_device_info();
std::string cuda_smoke_test();
std::unique_ptr<batched::Ops> make_cuda_ops(size_t budget_bytes, bool use_cudnn, int64_t max_grid_blocks);
}  // namespace cnncert::cuda_device
