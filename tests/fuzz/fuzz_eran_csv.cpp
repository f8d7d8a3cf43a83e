// libFuzzer target: the ERAN CSV image loader ("label,v1,...,vD" per line), HWC and CHW layouts,
// with the image shape guessed (784, 3072 values) and given explicitly (1x2x2, 3x1x2, 2x1x1).
#include <cstdint>
#include <string>
#include <string_view>

#include "cnncert/images.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = cnncert::fuzz::scratch("x.csv");
  cnncert::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  cnncert::fuzz::guarded([&] { cnncert::fuzz::load_and_touch(path); });
  static const std::vector<std::vector<int64_t>> kShapes = {{1, 2, 2}, {3, 1, 2}, {2, 1, 1}};
  for (const auto& chw : kShapes)
    for (bool hwc : {true, false})
      cnncert::fuzz::guarded([&] {
        cnncert::LoadOptions o;
        o.chw = chw;
        o.csv_hwc = hwc;
        cnncert::fuzz::load_and_touch(path, o);
      });
  return 0;
}
