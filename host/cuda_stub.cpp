// Used when the library is built without the CUDA engine.
#include "cnncert/cuda.hpp"

namespace cnncert {
bool cuda_compiled() { return false; }
bool cuda_available() { return false; }
std::string cuda_device_info() { return "no GPU support: cnncert was built without CUDA (-DCNNCERT_CUDA=OFF or no toolkit)"; }
std::string cuda_smoke_test() { return "no usable GPU: built without CUDA"; }
}  // namespace cnncert
