// libFuzzer target: the .npy reader (host/io/npy.cpp) and the .npy image loader, with a sibling
// labels file. Input: the images file, optionally followed by a second .npy file (from its
// "\x93NUMPY" magic on) that is written as the sibling X.labels.npy.
#include <cstdint>
#include <string>
#include <string_view>

#include "cnncert/images.hpp"
#include "fuzz_common.hpp"
#include "io/npy.hpp"

namespace {

void read_and_touch(const std::string& path) {
  const cnncert::detail::NpyArray a = cnncert::detail::read_npy(path);
  int64_t n = 1;
  for (int64_t d : a.shape) {
    CNNCERT_FUZZ_EXPECT(d >= 0, "npy dimensions are non-negative");
    n *= d;  // the data is in memory, so the product of the shape fits
  }
  CNNCERT_FUZZ_EXPECT(static_cast<int64_t>(a.data.size()) == n, "data has product(shape) values");
  double sum = 0;
  for (double v : a.data) sum += v;
  (void)sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  static const std::string images = cnncert::fuzz::scratch("x.npy");
  static const std::string labels = cnncert::fuzz::scratch("x.labels.npy");
  // The labels file starts at the second npy magic, if any.
  const std::string_view magic("\x93NUMPY", 6);
  const size_t second = in.size() > 6 ? in.find(magic, 1) : std::string_view::npos;
  const std::string_view img = second == std::string_view::npos ? in : in.substr(0, second);
  cnncert::fuzz::write_file(images, img);
  if (second != std::string_view::npos)
    cnncert::fuzz::write_file(labels, in.substr(second));
  else
    cnncert::fuzz::remove_file(labels);

  cnncert::fuzz::guarded([&] { read_and_touch(images); });
  if (second != std::string_view::npos) cnncert::fuzz::guarded([&] { read_and_touch(labels); });
  cnncert::fuzz::guarded([&] { cnncert::fuzz::load_and_touch(images); });
  // Flat rows with an explicit image shape (what --chw does), so short rows reach the copy.
  cnncert::fuzz::guarded([&] {
    cnncert::LoadOptions o;
    o.chw = {1, 2, 2};
    cnncert::fuzz::load_and_touch(images, o);
  });
  return 0;
}
