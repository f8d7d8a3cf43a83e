// Clean accuracy of the real networks on the first 1000 MNIST test images, with the input
// conventions of ../shared/data/README.md; the expected counts are the ones listed there.
#include <gtest/gtest.h>

#include "cnncert/images.hpp"
#include "cnncert/onnx.hpp"
#include "common/test_util.hpp"

namespace cnncert::test {
namespace {

struct Case {
  const char* net;
  double scale;
  std::vector<double> mean, std;
  Layout layout;
  int64_t correct;  // of the first 1000 (data README)
};

TEST(PredictAccuracy, ReproducesTheDataReadme) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const ImageSet images =
      load_images((shared_data() / "images/mnist/t10k-images-idx3-ubyte.gz").string(), LoadOptions{0, 1000});
  ASSERT_EQ(images.count, 1000);
  const double s = 1.0 / 255;
  const std::vector<Case> cases = {
      {"mnist_eran_sigmoid_6x200", s, {}, {}, Layout::NCHW, 971},
      {"mnist_fc_256x2", s, {}, {}, Layout::Flat, 978},
      {"mnist_marabou_fc_2x10", s, {}, {}, Layout::NCHW, 922},
      {"mnist_marabou_sigmoid_64_32", s, {}, {}, Layout::Flat, 947},
      {"mnist_nln_tansig_200_50", 1.0, {}, {}, Layout::Flat, 968},
      {"mnist_verivital_convnet_maxpool", s, {}, {}, Layout::NCHW, 976},
      {"mnist_marabou_cnn_maxpool2", s, {}, {}, Layout::NHWC, 978},
      {"mnist_colt_convmed_0.1", s, {0.1307}, {0.3081}, Layout::NCHW, 990},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.net);
    const Network net = import_onnx((shared_data() / "nets" / (std::string(c.net) + ".onnx")).string());
    Preprocess p;
    p.scale = c.scale;
    p.mean = c.mean;
    p.std = c.std;
    p.layout = c.layout;
    const std::vector<double> x = preprocess(images, p, net);
    const std::vector<double> logits = net.forward(x.data(), images.count);
    int64_t correct = 0;
    for (int64_t i = 0; i < images.count; ++i) {
      const double* row = logits.data() + i * net.output_size();
      correct += (std::max_element(row, row + net.output_size()) - row) == images.labels[static_cast<size_t>(i)];
    }
    EXPECT_EQ(correct, c.correct);
  }
}

}  // namespace
}  // namespace cnncert::test
