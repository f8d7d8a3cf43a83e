// Engine selection (--device cpu|gpu|auto) and the host-float engine.
#include "cnncert/cuda.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "engine/batched_engine.hpp"

namespace cnncert {

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::Cpu;
  if (s == "gpu" || s == "cuda") return Device::Gpu;
  if (s == "auto") return Device::Auto;
  throw InvalidArgument("unknown device '" + s + "' (use cpu, gpu or auto)");
}

CpuEngine parse_cpu_engine(const std::string& s) {
  if (s == "fast") return CpuEngine::Fast;
  if (s == "reference") return CpuEngine::Reference;
  throw InvalidArgument("unknown engine '" + s + "' (use fast or reference)");
}

std::unique_ptr<BoundEngine> make_engine(const Network& net, const EngineOptions& o) {
  if (o.device == Device::Gpu || (o.device == Device::Auto && cuda_available()))
    return make_gpu_engine(net, o.gpu_memory_mib);
  if (o.cpu_engine == CpuEngine::Reference) return make_cpu_engine(net, o.threads);
  return make_fast_engine(net, o.threads, o.cpu_memory_mib);
}

std::unique_ptr<BoundEngine> make_float_engine(const Network& net, size_t memory_mib) {
  CNNCERT_CHECK(memory_mib > 0, "the float engine needs a positive memory budget");
  return batched::make_batched_engine(net, batched::make_host_ops(memory_mib << 20));
}

}  // namespace cnncert
