#pragma once
// Seeded random networks of the families the engines bound, and soundness oracles
// (sampling and projected gradient search inside the perturbation ball).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cnncert/baselines.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/network.hpp"

namespace cnncert::test {

inline std::vector<double> randn(std::mt19937_64& rng, size_t n, double scale) {
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

inline ConvAttr random_conv(std::mt19937_64& rng, int64_t in_c, int64_t out_c, int64_t k, int64_t stride = 1,
                            int64_t pad = 0) {
  ConvAttr c;
  c.out_channels = out_c;
  c.in_channels = in_c;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = stride;
  c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = pad;
  c.weight = randn(rng, static_cast<size_t>(out_c * in_c * k * k), 1.0 / std::sqrt(static_cast<double>(in_c * k * k)));
  c.bias = randn(rng, static_cast<size_t>(out_c), 0.1);
  return c;
}

inline DenseAttr random_dense(std::mt19937_64& rng, int64_t in, int64_t out) {
  DenseAttr d;
  d.in_features = in;
  d.out_features = out;
  d.weight = randn(rng, static_cast<size_t>(in * out), 1.0 / std::sqrt(static_cast<double>(in)));
  d.bias = randn(rng, static_cast<size_t>(out), 0.1);
  return d;
}

/// Network families for the engine tests.
enum class Family { Mlp, Cnn, CnnMaxPool, CnnAvgPoolPadded, Residual, BatchNormStrided };

inline const char* family_name(Family f) {
  switch (f) {
    case Family::Mlp: return "mlp";
    case Family::Cnn: return "cnn";
    case Family::CnnMaxPool: return "cnn_maxpool";
    case Family::CnnAvgPoolPadded: return "cnn_avgpool_padded";
    case Family::Residual: return "residual";
    case Family::BatchNormStrided: return "bn_strided";
  }
  return "?";
}

/// Every activation kind, and the general ones (relaxation.hpp's construction) alone.
inline constexpr ActKind kAllActs[] = {ActKind::Relu, ActKind::LeakyRelu, ActKind::Sigmoid, ActKind::Tanh,
                                       ActKind::Atan, ActKind::Erf,       ActKind::Elu,     ActKind::Softplus,
                                       ActKind::Gelu, ActKind::GeluTanh,  ActKind::Silu};
inline constexpr ActKind kGeneralActs[] = {ActKind::Elu, ActKind::Softplus, ActKind::Gelu, ActKind::GeluTanh,
                                           ActKind::Silu};

/// A small random network of a family with activation `act` on a (1, 8, 8) input, 4 classes.
inline Network random_network(Family f, ActKind act, uint64_t seed) {
  std::mt19937_64 rng(seed);
  NetworkBuilder b;
  int x = b.input({1, 8, 8});
  auto A = [&](int h) { return b.activation(h, act, 0.1); };
  int h = x;
  switch (f) {
    case Family::Mlp:
      h = b.reshape(x, {64});
      h = A(b.dense(h, random_dense(rng, 64, 12)));
      h = A(b.dense(h, random_dense(rng, 12, 10)));
      break;
    case Family::Cnn:
      h = A(b.conv(x, random_conv(rng, 1, 3, 3)));
      h = A(b.conv(h, random_conv(rng, 3, 2, 3)));
      h = b.reshape(h, {2 * 4 * 4});
      break;
    case Family::CnnMaxPool: {
      h = A(b.conv(x, random_conv(rng, 1, 3, 3, 1, 1)));
      PoolAttr p;
      p.kernel_h = p.kernel_w = 2;
      p.stride_h = p.stride_w = 2;
      h = b.max_pool(h, p);
      h = A(b.conv(h, random_conv(rng, 3, 2, 3)));
      h = b.reshape(h, {2 * 2 * 2});
      h = A(b.dense(h, random_dense(rng, 8, 6)));
      break;
    }
    case Family::CnnAvgPoolPadded: {
      h = A(b.conv(x, random_conv(rng, 1, 2, 3, 1, 1)));
      PoolAttr p;
      p.kernel_h = p.kernel_w = 3;
      p.stride_h = p.stride_w = 2;
      p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
      h = b.avg_pool(h, p);
      ConvAttr c = random_conv(rng, 2, 3, 2, 1, 0);
      c.pad_top = 1;  // asymmetric
      c.dilation_h = 2;
      h = A(b.conv(h, c));
      h = b.reshape(h, {numel(Shape{3, 3, 3})});
      break;
    }
    case Family::Residual: {
      h = A(b.conv(x, random_conv(rng, 1, 2, 3, 1, 1)));
      int r = A(b.conv(h, random_conv(rng, 2, 2, 3, 1, 1)));
      r = b.conv(r, random_conv(rng, 2, 2, 3, 1, 1));
      h = A(b.add(h, r));
      int down = b.conv(h, random_conv(rng, 2, 3, 1, 2, 0));
      int main = A(b.conv(h, random_conv(rng, 2, 3, 3, 2, 1)));
      main = b.conv(main, random_conv(rng, 3, 3, 3, 1, 1));
      h = A(b.add(main, down));
      h = b.reshape(h, {3 * 4 * 4});
      break;
    }
    case Family::BatchNormStrided: {
      h = b.conv(x, random_conv(rng, 1, 3, 3, 2, 1));
      ScaleShiftAttr s;
      const int64_t n = 3 * 4 * 4;
      for (int64_t i = 0; i < n; ++i) {
        s.scale.push_back(0.5 + 0.25 * static_cast<double>((i / 16) % 3));
        s.shift.push_back(0.1 * static_cast<double>(i / 16) - 0.1);
      }
      h = A(b.scale_shift(h, s));
      h = b.transpose(h, {1, 2, 0});
      h = b.reshape(h, {n});
      h = A(b.dense(h, random_dense(rng, n, 8)));
      break;
    }
  }
  const int64_t flat = b.node(h).size();
  return b.build(b.dense(h, random_dense(rng, flat, 4)));
}

/// All margins f_c − f_t of the class c predicted at x0, over the ball of radius eps.
inline BoundProblem margin_problem(const Network& net, std::vector<double> x0, double eps) {
  const auto y = net.forward(x0.data(), 1);
  const int64_t c = std::max_element(y.begin(), y.end()) - y.begin();
  std::vector<int64_t> t;
  for (int64_t k = 0; k < net.output_size(); ++k)
    if (k != c) t.push_back(k);
  BoundProblem p;
  p.x0 = std::move(x0);
  p.eps = eps;
  p.rows = static_cast<int64_t>(t.size());
  p.spec = margin_spec(net.output_size(), c, t);
  return p;
}

inline std::vector<double> random_input(uint64_t seed, int64_t n) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> x(static_cast<size_t>(n));
  for (double& v : x) v = u(rng);
  return x;
}

/// `count` random inputs (seeds first_seed, first_seed + 1, …), concatenated.
inline std::vector<double> random_inputs(uint64_t first_seed, int count, int64_t n) {
  std::vector<double> x;
  for (int i = 0; i < count; ++i) {
    const auto v = random_input(first_seed + static_cast<uint64_t>(i), n);
    x.insert(x.end(), v.begin(), v.end());
  }
  return x;
}

/// Projects x − x0 onto the ball (and the box when given): the attacks' project_to_ball.
inline void project(std::vector<double>& x, const std::vector<double>& x0, double eps, Norm norm,
                    const BoundOptions* box = nullptr) {
  AttackOptions o;
  if (box) o.clip_to_box = box->clip_to_box, o.box_lo = box->box_lo, o.box_hi = box->box_hi;
  project_to_ball(x, x0, eps, norm, o);
}

/// Values of the spec rows at x.
inline std::vector<double> spec_values(const Network& net, const BoundProblem& p, const std::vector<double>& x) {
  const auto y = net.forward(x.data(), 1);
  std::vector<double> v(static_cast<size_t>(p.rows), 0.0);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t k = 0; k < net.output_size(); ++k)
      v[static_cast<size_t>(r)] += p.spec[static_cast<size_t>(r * net.output_size() + k)] * y[static_cast<size_t>(k)];
  return v;
}

/// Checks lower ≤ spec·f(x) ≤ upper at random points of the ball and at the ends of projected
/// gradient searches that push each row down and up, up to `tol` relative (the float32 engines
/// bound the float32-rounded network: they pass float32's tolerance). Returns the number of
/// points checked.
inline int check_sound(const Network& net, const BoundProblem& p, const BoundResult& r, Norm norm, uint64_t seed,
                       int samples = 200, int pgd_steps = 20, const BoundOptions* box = nullptr, double tol = 1e-9) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  int checked = 0;
  auto check = [&](const std::vector<double>& x, const char* how) {
    const auto v = spec_values(net, p, x);
    for (int64_t k = 0; k < p.rows; ++k) {
      const double scale = 1 + std::fabs(v[static_cast<size_t>(k)]);
      EXPECT_GE(v[static_cast<size_t>(k)], r.lower[static_cast<size_t>(k)] - tol * scale)
          << how << " row " << k << " seed " << seed;
      EXPECT_LE(v[static_cast<size_t>(k)], r.upper[static_cast<size_t>(k)] + tol * scale)
          << how << " row " << k << " seed " << seed;
    }
    ++checked;
  };
  const size_t n = p.x0.size();
  for (int s = 0; s < samples; ++s) {
    std::vector<double> x(n);
    for (size_t i = 0; i < n; ++i) {
      const double v = u(rng);
      // half the samples on the corners/boundary
      x[i] = p.x0[i] + p.eps * (s % 2 ? (v > 0 ? 1.0 : -1.0) : v) * (norm == Norm::Linf ? 1.0 : 1.0);
    }
    if (norm == Norm::L1 && s % 2) {  // a vertex of the l1 ball
      x = p.x0;
      x[static_cast<size_t>(rng() % n)] += (u(rng) > 0 ? 1 : -1) * p.eps;
    }
    project(x, p.x0, p.eps, norm, box);
    check(x, "sample");
  }
  for (int64_t row = 0; row < p.rows; ++row)
    for (double dir : {-1.0, 1.0}) {
      std::vector<double> x = p.x0, g_out(static_cast<size_t>(net.output_size()));
      for (int64_t k = 0; k < net.output_size(); ++k)
        g_out[static_cast<size_t>(k)] = dir * p.spec[static_cast<size_t>(row * net.output_size() + k)];
      const double step = p.eps / 4;
      for (int it = 0; it < pgd_steps; ++it) {
        const auto g = net.input_gradient(x.data(), g_out.data());
        if (norm == Norm::Linf) {
          for (size_t i = 0; i < n; ++i) x[i] += step * (g[i] > 0 ? 1 : g[i] < 0 ? -1 : 0);
        } else if (norm == Norm::L2) {
          double s = 0;
          for (double v : g) s += v * v;
          s = std::sqrt(s) + 1e-300;
          for (size_t i = 0; i < n; ++i) x[i] += step * g[i] / s;
        } else {
          const size_t i = static_cast<size_t>(
              std::max_element(g.begin(), g.end(), [](double a, double b) { return std::fabs(a) < std::fabs(b); }) -
              g.begin());
          x[i] += step * (g[i] > 0 ? 1 : -1);
        }
        project(x, p.x0, p.eps, norm, box);
      }
      check(x, "gradient search");
    }
  return checked;
}

}  // namespace cnncert::test
