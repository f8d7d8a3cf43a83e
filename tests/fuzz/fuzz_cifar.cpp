// libFuzzer target: the CIFAR-10 binary loader (records of 1 label byte + 3072 pixel bytes).
#include <cstdint>
#include <string>
#include <string_view>

#include "cnncert/images.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = cnncert::fuzz::scratch("data_batch.bin");
  cnncert::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  cnncert::fuzz::guarded([&] { cnncert::fuzz::load_and_touch(path); });
  return 0;
}
