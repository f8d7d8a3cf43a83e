// libFuzzer target: the model sidecar MODEL.onnx.json (scale, mean, std, layout, dataset), then
// preprocess() of a tiny image set with what it gave (per-channel mean/std, NCHW/NHWC layout).
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "cnncert/images.hpp"
#include "cnncert/network.hpp"
#include "fuzz_common.hpp"

namespace {

void run_one(const std::string& model) {
  const std::optional<cnncert::Preprocess> p = cnncert::load_sidecar(model);
  CNNCERT_FUZZ_EXPECT(p.has_value(), "the sidecar exists, so it is read or rejected");
  CNNCERT_FUZZ_EXPECT(std::isfinite(p->scale) && p->scale > 0, "scale is positive and finite");
  for (double m : p->mean) CNNCERT_FUZZ_EXPECT(std::isfinite(m), "mean values are finite");
  for (double s : p->std) CNNCERT_FUZZ_EXPECT(std::isfinite(s) && s > 0, "std values are positive and finite");
  (void)cnncert::layout_name(p->layout);
  for (int64_t c : {int64_t{1}, int64_t{3}}) {
    cnncert::ImageSet set;
    set.count = 2;
    set.channels = c, set.height = 2, set.width = 2;
    set.pixels.resize(static_cast<size_t>(2 * c * 4));
    for (size_t i = 0; i < set.pixels.size(); ++i) set.pixels[i] = static_cast<double>(i * 17 % 256);
    set.labels = {0, 1};
    set.source = "fuzz-images";
    cnncert::NetworkBuilder b;
    const int x = b.input({c, 2, 2});
    const int y = b.reshape(x, {c * 4});
    const cnncert::Network net = b.build(y);
    cnncert::fuzz::guarded([&] {
      const std::vector<double> v = cnncert::preprocess(set, *p, net);
      CNNCERT_FUZZ_EXPECT(static_cast<int64_t>(v.size()) == 2 * c * 4, "preprocess returns count x input_size values");
      double sum = 0;
      for (double e : v) sum += e;
      (void)sum;
    });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string model = cnncert::fuzz::scratch("model.onnx");
  cnncert::fuzz::write_file(model + ".json", std::string_view(reinterpret_cast<const char*>(data), size));
  return cnncert::fuzz::guarded([&] { run_one(model); });
}
