// Network IR: shape inference and the forward pass of every node kind on hand-computed cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "cnncert/error.hpp"
#include "cnncert/network.hpp"
#include "cnncert/shape_math.hpp"

namespace cnncert {
namespace {

std::vector<double> run(const Network& net, const std::vector<double>& x) {
  return net.forward(x.data(), 1);
}

TEST(ShapeMath, WindowOutSize) {
  EXPECT_EQ(window_out_size(28, 3, 1, 0, 0, 1), 26);
  EXPECT_EQ(window_out_size(28, 5, 2, 2, 2, 1), 14);
  EXPECT_EQ(window_out_size(32, 4, 2, 1, 1, 1), 16);
  EXPECT_EQ(window_out_size(5, 3, 1, 0, 0, 2), 1);        // dilated span 5
  EXPECT_EQ(window_out_size(6, 3, 2, 0, 0, 1), 2);        // floor
  EXPECT_EQ(window_out_size(6, 3, 2, 0, 0, 1, true), 3);  // ceil mode keeps a partial window
  EXPECT_EQ(window_out_size(2, 3, 1, 0, 0, 1), 0);        // does not fit
}

// The window's inverse (for_each_output, the transposed direction) visits exactly the taps that
// the forward direction maps onto an input position, on random geometries; the span covers them.
TEST(ShapeMath, WindowForwardAndInverseAgree) {
  std::mt19937 rng(77);
  auto pick = [&](int hi) { return static_cast<int64_t>(std::uniform_int_distribution<int>(0, hi)(rng)); };
  for (int trial = 0; trial < 200; ++trial) {
    const detail::Window w{1 + pick(3), 1 + pick(3), 1 + pick(2), 1 + pick(2),
                           pick(2),     pick(2),     1 + pick(1), 1 + pick(1)};
    const int64_t in_h = 3 + pick(5), in_w = 3 + pick(5);
    const int64_t out_h = window_out_size(in_h, w.kh, w.sh, w.pt, w.pt, w.dh);
    const int64_t out_w = window_out_size(in_w, w.kw, w.sw, w.pl, w.pl, w.dw);
    if (out_h <= 0 || out_w <= 0) continue;
    std::vector<std::array<int64_t, 4>> forward, inverse;
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ++ox)
        w.for_each_input(in_h, in_w, oy, ox, [&](int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
          EXPECT_EQ(iy, oy * w.sh - w.pt + ky * w.dh);
          EXPECT_EQ(ix, ox * w.sw - w.pl + kx * w.dw);
          EXPECT_LE(iy - (oy * w.sh - w.pt), w.span_y(1) - 1);
          forward.push_back({iy * in_w + ix, oy, ox, ky * w.kw + kx});
        });
    for (int64_t iy = 0; iy < in_h; ++iy)
      for (int64_t ix = 0; ix < in_w; ++ix)
        w.for_each_output(out_h, out_w, iy, ix, [&](int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
          inverse.push_back({iy * in_w + ix, oy, ox, ky * w.kw + kx});
        });
    std::sort(forward.begin(), forward.end()), std::sort(inverse.begin(), inverse.end());
    ASSERT_EQ(forward, inverse) << "trial " << trial;
    EXPECT_EQ(w.span_y(out_h), (out_h - 1) * w.sh + (w.kh - 1) * w.dh + 1);
  }
}

TEST(Network, DenseReluByHand) {
  NetworkBuilder b;
  int x = b.input({2});
  DenseAttr d{2, 2, {1, -2, 3, 4}, {0.5, -20}};
  int y = b.activation(b.dense(x, d), ActKind::Relu);
  Network net = b.build(y);
  // [1*3 - 2*1 + 0.5, 3*3 + 4*1 - 20] = [1.5, -7] → relu → [1.5, 0]
  EXPECT_EQ(run(net, {3, 1}), (std::vector<double>{1.5, 0.0}));
  EXPECT_EQ(net.activation_neurons(), 2);
}

TEST(Network, ConvStridePadDilationByHand) {
  NetworkBuilder b;
  int x = b.input({1, 3, 3});
  ConvAttr c;
  c.out_channels = 1;
  c.in_channels = 1;
  c.kernel_h = c.kernel_w = 2;
  c.weight = {1, 2, 3, 4};
  c.bias = {10};
  c.pad_top = 1;  // asymmetric: one row on top only
  c.stride_h = 2;
  c.stride_w = 1;
  int y = b.conv(x, c);
  Network net = b.build(y);
  ASSERT_EQ(net.output_shape(), (Shape{1, 2, 2}));
  // input rows: [1 2 3; 4 5 6; 7 8 9]; padded with a zero row on top.
  // out(0,0): window rows -1..0, cols 0..1 → 3*1 + 4*2 = 11 (+10)
  // out(0,1): cols 1..2 → 3*2 + 4*3 = 18 (+10)
  // out(1,0): rows 1..2 → 1*4+2*5+3*7+4*8 = 67 (+10); out(1,1): 1*5+2*6+3*8+4*9 = 77 (+10)
  EXPECT_EQ(run(net, {1, 2, 3, 4, 5, 6, 7, 8, 9}), (std::vector<double>{21, 28, 77, 87}));

  NetworkBuilder b2;
  x = b2.input({1, 3, 3});
  ConvAttr d = c;
  d.pad_top = 0;
  d.stride_h = 1;
  d.dilation_h = d.dilation_w = 2;
  Network dil = b2.build(b2.conv(x, d));
  ASSERT_EQ(dil.output_shape(), (Shape{1, 1, 1}));
  // corners: 1*1 + 2*3 + 3*7 + 4*9 = 64
  EXPECT_EQ(run(dil, {1, 2, 3, 4, 5, 6, 7, 8, 9}), (std::vector<double>{74}));
}

TEST(Network, ConvMatchesADirectSumForEveryGeometry) {
  // Every output element against its defining sum (bias, then channels, rows and columns of the
  // kernel in order, taps outside the input skipped), bit for bit: strides, asymmetric padding,
  // dilation, groups, and taps that miss the input entirely.
  std::mt19937_64 rng(77);
  std::uniform_int_distribution<int64_t> pick(0, 2);
  std::normal_distribution<double> g(0.0, 1.0);
  int checked = 0;
  for (int trial = 0; trial < 60; ++trial) {
    ConvAttr c;
    c.groups = 1 + trial % 2;
    c.in_channels = 1 + pick(rng) % 2;
    c.out_channels = c.groups * (1 + pick(rng));
    c.kernel_h = 1 + pick(rng), c.kernel_w = 1 + pick(rng) + (trial % 3 == 0);
    c.stride_h = 1 + pick(rng), c.stride_w = 1 + pick(rng);
    c.pad_top = pick(rng), c.pad_left = pick(rng), c.pad_bottom = pick(rng),
    c.pad_right = pick(rng) + (trial % 5 == 0) * 2;
    c.dilation_h = 1 + pick(rng), c.dilation_w = 1 + pick(rng);
    const int64_t ic = c.in_channels * c.groups, ih = 3 + pick(rng), iw = 2 + pick(rng) * 2;
    c.weight.resize(static_cast<size_t>(c.out_channels * c.in_channels * c.kernel_h * c.kernel_w));
    for (double& w : c.weight) w = g(rng);
    c.weight[0] = 0;  // a zero weight is skipped
    c.bias.resize(static_cast<size_t>(c.out_channels));
    for (double& v : c.bias) v = g(rng);
    NetworkBuilder b;
    const int x = b.input({ic, ih, iw});
    int y = -1;
    try {
      y = b.conv(x, c);
    } catch (const Error&) {
      continue;  // an empty output: nothing to compare
    }
    const Network net = b.build(y);
    const Shape os = net.output_shape();
    std::vector<double> in(static_cast<size_t>(ic * ih * iw));
    for (double& v : in) v = g(rng);
    const std::vector<double> out = run(net, in);
    const int64_t cpg_out = c.out_channels / c.groups;
    for (int64_t o = 0; o < os[0]; ++o)
      for (int64_t r = 0; r < os[1]; ++r)
        for (int64_t q = 0; q < os[2]; ++q) {
          double acc = c.bias[static_cast<size_t>(o)];
          for (int64_t ci = 0; ci < c.in_channels; ++ci)
            for (int64_t ky = 0; ky < c.kernel_h; ++ky)
              for (int64_t kx = 0; kx < c.kernel_w; ++kx) {
                const double w =
                    c.weight[static_cast<size_t>(((o * c.in_channels + ci) * c.kernel_h + ky) * c.kernel_w + kx)];
                const int64_t yy = r * c.stride_h - c.pad_top + ky * c.dilation_h,
                              xx = q * c.stride_w - c.pad_left + kx * c.dilation_w;
                if (w == 0 || yy < 0 || yy >= ih || xx < 0 || xx >= iw) continue;
                acc += w * in[static_cast<size_t>(((o / cpg_out * c.in_channels + ci) * ih + yy) * iw + xx)];
              }
          EXPECT_EQ(out[static_cast<size_t>((o * os[1] + r) * os[2] + q)], acc) << "trial " << trial;
        }
    ++checked;
  }
  EXPECT_GT(checked, 30);
}

TEST(Network, GroupedConvKeepsGroupsApart) {
  NetworkBuilder b;
  int x = b.input({2, 1, 1});
  ConvAttr c;
  c.out_channels = 2;
  c.in_channels = 1;
  c.groups = 2;
  c.weight = {2, 3};
  Network net = b.build(b.conv(x, c));
  EXPECT_EQ(run(net, {5, 7}), (std::vector<double>{10, 21}));
}

TEST(Network, MaxPoolPaddingNeverWins) {
  NetworkBuilder b;
  int x = b.input({1, 2, 2});
  PoolAttr p;
  p.kernel_h = p.kernel_w = 2;
  p.stride_h = p.stride_w = 2;
  p.pad_top = p.pad_left = 1;
  p.pad_bottom = p.pad_right = 1;
  Network net = b.build(b.max_pool(x, p));
  ASSERT_EQ(net.output_shape(), (Shape{1, 2, 2}));
  EXPECT_EQ(run(net, {-1, -2, -3, -4}), (std::vector<double>{-1, -2, -3, -4}));
}

TEST(Network, NaNPassesThroughReluAndMaxPool) {
  // A NaN that a ReLU or a max-pool turned into a number would give a finite, meaningless output
  // (found by feeding finite inputs of ±1.7e308: the first layer's inf − inf became a class).
  NetworkBuilder b;
  int x = b.input({1, 2, 2});
  PoolAttr p;
  p.kernel_h = p.kernel_w = 2;
  p.stride_h = p.stride_w = 2;
  Network net = b.build(b.max_pool(b.activation(x, ActKind::Relu), p));
  const double nan = std::nan("");
  for (int at = 0; at < 4; ++at) {
    std::vector<double> in{1, -2, 3, 0.5};
    in[static_cast<size_t>(at)] = nan;
    const std::vector<double> y = run(net, in);
    ASSERT_EQ(y.size(), 1u);
    EXPECT_TRUE(std::isnan(y[0])) << "NaN at " << at << " gave " << y[0];
  }
  EXPECT_EQ(run(net, {1, -2, 3, 0.5}), (std::vector<double>{3}));
  EXPECT_EQ(run(net, {-1, -2, -3, -0.5}), (std::vector<double>{0}));
}

TEST(Errors, MessagesAreOneLineOfPrintableText) {
  const InvalidArgument e(std::string("node 'a\nb\0c\x7f' failed", 20));
  EXPECT_EQ(std::string(e.what()), "node 'a\\x0ab\\x00c\\x7f' failed");
  const InvalidArgument long_one(std::string(5000, 'x'));
  const std::string w = long_one.what();
  EXPECT_EQ(w.substr(0, 2000), std::string(2000, 'x'));
  EXPECT_EQ(w.substr(2000), "... (3000 more characters)");
  EXPECT_EQ(std::string(InvalidArgument("plain message").what()), "plain message");
}

TEST(Network, AvgPoolCountIncludePad) {
  for (bool include : {false, true}) {
    NetworkBuilder b;
    int x = b.input({1, 2, 2});
    PoolAttr p;
    p.kernel_h = p.kernel_w = 2;
    p.pad_top = p.pad_left = 1;
    p.count_include_pad = include;
    Network net = b.build(b.avg_pool(x, p));
    ASSERT_EQ(net.output_shape(), (Shape{1, 2, 2}));
    const auto y = run(net, {4, 8, 12, 16});
    // top-left window holds only the value 4: average 4 (or 4/4 with the three padded zeros)
    EXPECT_DOUBLE_EQ(y[0], include ? 1.0 : 4.0);
    EXPECT_DOUBLE_EQ(y[3], 10.0);  // full window
  }
}

TEST(Network, TransposeHwcToChw) {
  NetworkBuilder b;
  int x = b.input({2, 2, 3});  // H, W, C
  int y = b.transpose(x, {2, 0, 1});
  Network net = b.build(y);
  ASSERT_EQ(net.output_shape(), (Shape{3, 2, 2}));
  std::vector<double> in(12);
  for (int i = 0; i < 12; ++i) in[static_cast<size_t>(i)] = i;  // value = (h*2 + w)*3 + c
  const auto out = run(net, in);
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 2; ++h)
      for (int w = 0; w < 2; ++w) EXPECT_EQ(out[static_cast<size_t>((c * 2 + h) * 2 + w)], (h * 2 + w) * 3 + c);
}

TEST(Network, PadAddsZeros) {
  NetworkBuilder b;
  int x = b.input({1, 1, 2});
  Network net = b.build(b.pad(x, {0, 1, 0}, {0, 0, 1}));
  ASSERT_EQ(net.output_shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(run(net, {5, 6}), (std::vector<double>{0, 0, 0, 5, 6, 0}));
}

TEST(Network, ResidualAddAndActivations) {
  NetworkBuilder b;
  int x = b.input({3});
  int s = b.activation(x, ActKind::Sigmoid);
  int t = b.activation(x, ActKind::Tanh);
  int a = b.activation(x, ActKind::Atan);
  int l = b.activation(x, ActKind::LeakyRelu, 0.1);
  int y = b.add(b.add(s, t), b.add(a, l));
  Network net = b.build(y);
  const std::vector<double> in{-2, 0, 1.5};
  const auto out = run(net, in);
  for (size_t i = 0; i < 3; ++i) {
    const double v = in[i];
    const double want = 1 / (1 + std::exp(-v)) + std::tanh(v) + std::atan(v) + (v >= 0 ? v : 0.1 * v);
    EXPECT_NEAR(out[i], want, 1e-15);
  }
}

TEST(Network, FloatAndDoubleAgreeAndBatchesAreIndependent) {
  NetworkBuilder b;
  int x = b.input({1, 4, 4});
  ConvAttr c;
  c.out_channels = 2;
  c.in_channels = 1;
  c.kernel_h = c.kernel_w = 3;
  for (int i = 0; i < 18; ++i) c.weight.push_back(std::sin(i + 1.0));
  c.bias = {0.1, -0.2};
  int h = b.activation(b.conv(x, c), ActKind::Relu);
  h = b.reshape(h, {8});
  DenseAttr d{3, 8, {}, {0, 1, 2}};
  for (int i = 0; i < 24; ++i) d.weight.push_back(std::cos(i * 0.7));
  Network net = b.build(b.dense(h, d));
  std::vector<double> xs(32);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = std::sin(0.3 * static_cast<double>(i));
  std::vector<float> xf(xs.begin(), xs.end());
  const auto yd = net.forward(xs.data(), 2);
  const auto yf = net.forward(xf.data(), 2);
  const auto y1 = net.forward(xs.data() + 16, 1);
  ASSERT_EQ(yd.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(yd[i], yf[i], 1e-5);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(yd[3 + i], y1[i]);
  const auto all = net.forward_all(xs.data(), 2);
  EXPECT_EQ(all.back(), yd);
  EXPECT_EQ(all[1].size(), 2u * 2 * 2 * 2);
}

TEST(Network, BuilderRejectsBadShapesAndNonFiniteWeights) {
  NetworkBuilder b;
  int x = b.input({4});
  DenseAttr d{2, 3, std::vector<double>(6, 1.0), {}};
  EXPECT_THROW(b.dense(x, d), InvalidArgument);
  ConvAttr c;
  c.out_channels = 1;
  c.in_channels = 1;
  c.weight = {1};
  EXPECT_THROW(b.conv(x, c), InvalidArgument);  // not (C, H, W)
  EXPECT_THROW(b.reshape(x, {3}), InvalidArgument);
  EXPECT_THROW(b.transpose(x, {1}), InvalidArgument);

  NetworkBuilder nb;
  x = nb.input({2});
  DenseAttr bad{1, 2, {1.0, std::nan("")}, {0}};
  int y = nb.dense(x, bad, {"fc1", "Gemm"});
  try {
    nb.build(y);
    FAIL() << "NaN weight accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

TEST(Network, BuildDropsNodesThatDoNotFeedTheOutput) {
  NetworkBuilder b;
  int x = b.input({2});
  b.activation(x, ActKind::Tanh);  // dead branch
  int y = b.activation(x, ActKind::Relu);
  Network net = b.build(y);
  EXPECT_EQ(net.nodes().size(), 2u);
  EXPECT_EQ(net.output(), 1);
}

}  // namespace
}  // namespace cnncert
