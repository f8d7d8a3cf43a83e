// Used when the library is built without the CUDA engine.
#include "cnncert/cuda.hpp"

namespace cnncert {
bool cuda_compiled() { return false; }
bool cuda_emulated() { return false; }
CudaLibraries cuda_libraries() { return {}; }
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_info() { return "no GPU support: cnncert was built without CUDA (-DCNNCERT_CUDA=OFF or no toolkit)"; }
std::string cuda_smoke_test() { return "no usable GPU: built without CUDA"; }
}  // namespace cnncert

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"

namespace cnncert {
void cuda_use_device(int ordinal) {
  throw InvalidArgument("GPU " + std::to_string(ordinal) + ": " + cuda_device_info());
}
std::unique_ptr<BoundEngine> make_gpu_engine(const Network&, size_t) {
  throw InvalidArgument("--device gpu: " + cuda_device_info());
}
}  // namespace cnncert

#include "batched_engine.hpp"

namespace cnncert::batched {
std::unique_ptr<Ops> make_cuda_ops(size_t, bool, int64_t) { throw InvalidArgument("--device gpu: " + cuda_device_info()); }
}  // namespace cnncert::batched
