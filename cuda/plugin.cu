// The plugin's entry point (host/engine/cuda_plugin.hpp): the table of the CUDA engine's functions.
#include "device_api.cuh"
#include "engine/batched_engine.hpp"
#include "engine/cuda_plugin.hpp"

extern "C" __attribute__((visibility("default"))) const cnncert::detail::CudaPlugin* cnncert_cuda_plugin() {
  namespace d = cnncert::cuda_device;
  static const cnncert::detail::CudaPlugin table = [] {
    cnncert::detail::CudaPlugin t;
    t.abi = cnncert::detail::kCudaPluginAbi;
    t.version = CNNCERT_VERSION_STRING;
    t.emulated = d::cuda_emulated();
    t.libraries = &d::cuda_libraries;
    t.available = &d::cuda_available;
    t.device_count = &d::cuda_device_count;
    t.use_device = &d::cuda_use_device;
    t.device_info = &d::cuda_device_info;
    t.smoke_test = &d::cuda_smoke_test;
    t.make_ops = &d::make_cuda_ops;
    return t;
  }();
  return &table;
}
