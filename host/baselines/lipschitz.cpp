// Global Lipschitz certificate (MATH.md §5): a Lipschitz constant per node of the DAG, from
// induced norms of the linear layers and slopes of the non-linear ones.
//
// ℓ2 norms of large layers. Power iteration gives θ_k = ‖A v‖²/‖v‖² with v = (AᵀA)^k b, which is
// a lower bound on σ² = λ_1(AᵀA). For an upper bound write a_i = λ_i/λ_1 and β_i = u_iᵀb in the
// eigenbasis of AᵀA; θ_k < (1 − ε)λ_1 means Σ a_i^{2k}(a_i − (1 − ε))β_i² < 0. The i = 1 term is
// εβ_1², and every negative term is at most (1 − ε)^{2k+1}β_i² in size, so failure needs
// β_1²/‖b‖² < (1 − ε)^{2k+1}/ε =: s². For b uniform on the sphere of R^n (n ≥ 3) the coordinate
// u = β_1/‖b‖ has density c_n(1 − u²)^{(n−3)/2} ≤ c_n ≤ sqrt((n − 1)/(2π)) (Wendel's inequality for
// Γ(n/2)/Γ((n−1)/2)), so P(failure) ≤ 2s·c_n ≤ sqrt(2(n − 1)/π)·(1 − ε)^{k+1/2}/√ε (and ≤ s for
// n ≤ 2). We pick the smallest ε with that bound ≤ failure_probability and return
// sqrt(θ_k/(1 − ε)), capped by the deterministic upper bounds ‖A‖_F and sqrt(‖A‖_1‖A‖_∞). The
// estimate is therefore an upper bound except with probability failure_probability over the
// (seeded) start vector, independently of the spectrum's gap; with k = 1000, n ≈ 3000 and 1e-9 the
// inflation of σ is about 1.3%.
//
// Small layers (min(m, n) ≤ exact_max_dim) are handled exactly: the Gram matrix is formed with the
// layer's own forward and transposed passes, diagonalized by cyclic Jacobi rotations, and λ_max is
// bounded by Gershgorin discs of the final (nearly diagonal) matrix plus a rounding allowance.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>

#include "baselines/baseline_checks.hpp"
#include "cnncert/baselines.hpp"
#include "cnncert/error.hpp"

namespace cnncert {

Norm dual_norm(Norm p) {
  switch (p) {
    case Norm::Linf: return Norm::L1;
    case Norm::L1: return Norm::Linf;
    case Norm::L2: return Norm::L2;
  }
  return Norm::L2;
}

double lp_norm(const double* v, int64_t n, Norm p) {
  double s = 0;
  switch (p) {
    case Norm::Linf:
      for (int64_t i = 0; i < n; ++i) s = std::max(s, std::fabs(v[i]));
      return s;
    case Norm::L1:
      for (int64_t i = 0; i < n; ++i) s += std::fabs(v[i]);
      return s;
    case Norm::L2: {
      // scaled to avoid overflow/underflow
      double m = 0;
      for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(v[i]));
      if (m == 0 || !std::isfinite(m)) return m;
      for (int64_t i = 0; i < n; ++i) {
        const double r = v[i] / m;
        s += r * r;
      }
      return m * std::sqrt(s);
    }
  }
  return s;
}

double lp_norm(const std::vector<double>& v, Norm p) {
  return lp_norm(v.data(), static_cast<int64_t>(v.size()), p);
}

double lp_distance(const std::vector<double>& a, const std::vector<double>& b, Norm p) {
  CNNCERT_CHECK(a.size() == b.size(), "lp_distance: sizes " << a.size() << " and " << b.size() << " differ");
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return lp_norm(d, p);
}

namespace {

enum class WeightMap { Same, Abs, Square };

double map_weight(double w, WeightMap m) {
  switch (m) {
    case WeightMap::Same: return w;
    case WeightMap::Abs: return std::fabs(w);
    case WeightMap::Square: return w * w;
  }
  return w;
}

/// The linear part of one node as a one-node network (bias and shift zeroed), with its weights
/// mapped by `m`: forward is A·x, input_gradient(·, y) is Aᵀ·y.
Network linear_part(const Network& net, int index, WeightMap m) {
  const Node& n = net.node(index);
  const Node& src = net.node(n.inputs.at(0));
  NetworkBuilder b;
  const int x = b.input(src.shape);
  int y = x;
  switch (n.op) {
    case OpKind::Conv: {
      ConvAttr a = n.as<ConvAttr>();
      for (double& w : a.weight) w = map_weight(w, m);
      a.bias.assign(a.bias.size(), 0.0);
      y = b.conv(x, std::move(a));
      break;
    }
    case OpKind::Dense: {
      DenseAttr a = n.as<DenseAttr>();
      for (double& w : a.weight) w = map_weight(w, m);
      a.bias.assign(a.bias.size(), 0.0);
      y = b.dense(x, std::move(a));
      break;
    }
    case OpKind::ScaleShift: {
      ScaleShiftAttr a = n.as<ScaleShiftAttr>();
      for (double& w : a.scale) w = map_weight(w, m);
      a.shift.assign(a.shift.size(), 0.0);
      y = b.scale_shift(x, std::move(a));
      break;
    }
    case OpKind::AvgPool:
      CNNCERT_ASSERT(m != WeightMap::Square);
      y = b.avg_pool(x, n.as<PoolAttr>());
      break;
    case OpKind::Reshape: y = b.reshape(x, n.shape); break;
    case OpKind::Transpose: y = b.transpose(x, n.as<TransposeAttr>().perm); break;
    case OpKind::Pad: y = b.pad(x, n.as<PadAttr>().begin, n.as<PadAttr>().end); break;
    default: CNNCERT_ASSERT(false);
  }
  return b.build(y);
}

bool is_linear(OpKind k) {
  return op_traits(k).linear && op_traits(k).inputs == 1;
}

struct LinearOp {
  Network a;
  int64_t n = 0, m = 0;  // input and output sizes
  std::vector<double> apply(const std::vector<double>& x) const { return a.forward(x.data(), 1); }
  std::vector<double> adjoint(const std::vector<double>& y) const {
    const std::vector<double> zero(static_cast<size_t>(n), 0.0);
    return a.input_gradient(zero.data(), y.data());
  }
};

double max_of(const std::vector<double>& v) {
  double r = 0;
  for (double x : v) r = std::max(r, x);
  return r;
}

/// λ_max of a symmetric k×k matrix (row-major), an upper bound up to a rounding allowance.
double symmetric_lambda_max_upper(std::vector<double> g, int64_t k) {
  auto at = [&](int64_t i, int64_t j) -> double& { return g[static_cast<size_t>(i * k + j)]; };
  double fro = 0;
  for (double v : g) fro += v * v;
  fro = std::sqrt(fro);
  if (fro == 0) return 0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i + 1; j < k; ++j) off += at(i, j) * at(i, j);
    if (std::sqrt(off) <= 1e-15 * fro) break;
    for (int64_t p = 0; p < k; ++p)
      for (int64_t q = p + 1; q < k; ++q) {
        const double apq = at(p, q);
        if (std::fabs(apq) <= 1e-300) continue;
        const double theta = (at(q, q) - at(p, p)) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double cs = 1 / std::sqrt(t * t + 1), sn = t * cs;
        for (int64_t r = 0; r < k; ++r) {  // columns p, q
          const double grp = at(r, p), grq = at(r, q);
          at(r, p) = cs * grp - sn * grq;
          at(r, q) = sn * grp + cs * grq;
        }
        for (int64_t r = 0; r < k; ++r) {  // rows p, q
          const double gpr = at(p, r), gqr = at(q, r);
          at(p, r) = cs * gpr - sn * gqr;
          at(q, r) = sn * gpr + cs * gqr;
        }
      }
  }
  double ub = 0;
  for (int64_t i = 0; i < k; ++i) {
    double r = at(i, i);
    for (int64_t j = 0; j < k; ++j)
      if (j != i) r += std::fabs(at(i, j));
    ub = std::max(ub, r);
  }
  // The rotations are orthogonal up to rounding: the computed matrix is within ~k·eps·‖G‖_F of a
  // matrix similar to G.
  return ub + 64.0 * static_cast<double>(k) * DBL_EPSILON * fro;
}

/// Smallest ε with sqrt(2(n−1)/π)·(1−ε)^{k+1/2}/√ε ≤ delta (see the file comment).
double power_inflation(int64_t n, int k, double delta) {
  const double coef = std::max(1.0, std::sqrt(2.0 * static_cast<double>(n - 1) / std::numbers::pi));
  auto log_bound = [&](double e) { return std::log(coef) + (k + 0.5) * std::log1p(-e) - 0.5 * std::log(e); };
  const double target = std::log(delta);
  double lo = 0, hi = 1;  // log_bound decreases from +∞ to −∞ on (0, 1)
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= 0 || mid >= 1) break;
    if (log_bound(mid) <= target)
      hi = mid;
    else
      lo = mid;
  }
  return hi;
}

void linear_norm(const Network& net, int index, Norm p, const LipschitzOptions& o, NodeLipschitz& out) {
  const Node& node = net.node(index);
  if (node.op == OpKind::ScaleShift) {
    double s = 0;
    for (double v : node.as<ScaleShiftAttr>().scale) s = std::max(s, std::fabs(v));
    out.factor = out.estimate = s;
    out.method = "max-scale";
    return;
  }
  const Node& src = net.node(node.inputs.at(0));
  LinearOp abs_op{linear_part(net, index, WeightMap::Abs), src.size(), node.size()};
  const std::vector<double> ones_in(static_cast<size_t>(abs_op.n), 1.0), ones_out(static_cast<size_t>(abs_op.m), 1.0);
  const double row = max_of(abs_op.apply(ones_in));     // ‖A‖_∞
  const double col = max_of(abs_op.adjoint(ones_out));  // ‖A‖_1
  if (p == Norm::Linf) {
    out.factor = out.estimate = row;
    out.method = "row-sum";
    return;
  }
  if (p == Norm::L1) {
    out.factor = out.estimate = col;
    out.method = "column-sum";
    return;
  }
  // ℓ2: deterministic caps first
  double cap = std::sqrt(row * col);
  out.method = "sqrt(l1*linf)";
  if (node.op != OpKind::AvgPool) {
    LinearOp sq{linear_part(net, index, WeightMap::Square), abs_op.n, abs_op.m};
    double f2 = 0;
    for (double v : sq.apply(ones_in)) f2 += v;
    const double fro = std::sqrt(f2) * (1 + 1e-12);
    if (fro < cap) {
      cap = fro;
      out.method = "frobenius";
    }
  }
  LinearOp op{linear_part(net, index, WeightMap::Same), abs_op.n, abs_op.m};
  const int64_t k = std::min(op.n, op.m);
  if (k <= o.exact_max_dim) {
    std::vector<double> g(static_cast<size_t>(k * k));
    std::vector<double> e(static_cast<size_t>(k), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      std::fill(e.begin(), e.end(), 0.0);
      e[static_cast<size_t>(j)] = 1;
      const std::vector<double> col_j = op.n <= op.m ? op.adjoint(op.apply(e)) : op.apply(op.adjoint(e));
      for (int64_t i = 0; i < k; ++i) g[static_cast<size_t>(i * k + j)] = col_j[static_cast<size_t>(i)];
    }
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i + 1; j < k; ++j) {
        const double s = 0.5 * (g[static_cast<size_t>(i * k + j)] + g[static_cast<size_t>(j * k + i)]);
        g[static_cast<size_t>(i * k + j)] = g[static_cast<size_t>(j * k + i)] = s;
      }
    const double sigma = std::sqrt(std::max(0.0, symmetric_lambda_max_upper(std::move(g), k)));
    out.estimate = sigma;
    if (sigma <= cap) {
      out.factor = sigma;
      out.method = "jacobi";
    } else {
      out.factor = cap;
    }
    return;
  }
  CNNCERT_CHECK(o.power_iterations >= 1, "power_iterations must be at least 1");
  CNNCERT_CHECK(o.failure_probability > 0 && o.failure_probability < 1, "failure_probability must be in (0, 1)");
  std::mt19937_64 rng(o.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index + 1));
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(op.n));
  for (double& x : v) x = gauss(rng);
  auto normalize = [](std::vector<double>& x) {
    const double s = lp_norm(x, Norm::L2);
    if (s > 0)
      for (double& t : x) t /= s;
    return s;
  };
  normalize(v);
  for (int it = 0; it < o.power_iterations; ++it) {
    v = op.adjoint(op.apply(v));
    if (normalize(v) == 0) break;
  }
  const double vn = lp_norm(v, Norm::L2);
  const double theta = vn > 0 ? std::pow(lp_norm(op.apply(v), Norm::L2) / vn, 2) : 0.0;
  out.estimate = std::sqrt(theta);
  const double eps = power_inflation(op.n, o.power_iterations, o.failure_probability);
  const double ub = std::sqrt(theta / (1 - eps)) * (1 + 1e-12);
  if (vn > 0 && ub < cap) {
    out.factor = ub;
    out.method = "power";
  } else {
    out.factor = cap;
  }
}

/// Largest number of pooling windows one input position lies in.
int64_t max_window_count(const PoolAttr& a, const Shape& is, const Shape& os) {
  const int64_t ih = is[1], iw = is[2], oh = os[1], ow = os[2];
  std::vector<int64_t> count(static_cast<size_t>(ih * iw), 0);
  const detail::Window win = a.window();
  for (int64_t r = 0; r < oh; ++r)
    for (int64_t q = 0; q < ow; ++q)
      win.for_each_input(ih, iw, r, q,
                         [&](int64_t, int64_t, int64_t yy, int64_t xx) { ++count[static_cast<size_t>(yy * iw + xx)]; });
  return *std::max_element(count.begin(), count.end());
}

}  // namespace

LipschitzNorms lipschitz_norms(const Network& net, Norm p, const LipschitzOptions& options) {
  CNNCERT_CHECK(options.exact_max_dim >= 0, "exact_max_dim must be non-negative");
  LipschitzNorms r;
  r.norm = p;
  r.nodes.resize(net.nodes().size());
  for (int i = 0; i < static_cast<int>(net.nodes().size()); ++i) {
    const Node& n = net.node(i);
    NodeLipschitz& out = r.nodes[static_cast<size_t>(i)];
    out.node = i;
    out.name = n.name;
    out.op = n.op;
    out.method = "identity";
    const double l_in = n.inputs.empty() ? 1.0 : r.nodes[static_cast<size_t>(n.inputs[0])].lipschitz;
    switch (n.op) {
      case OpKind::Input:
      case OpKind::Reshape:
      case OpKind::Transpose:
      case OpKind::Pad: break;  // isometries for every p
      case OpKind::Conv:
      case OpKind::Dense:
      case OpKind::ScaleShift:
      case OpKind::AvgPool: linear_norm(net, i, p, options, out); break;
      case OpKind::Activation:
        out.factor = out.estimate = act_lipschitz(n.as<ActAttr>().kind, n.as<ActAttr>().alpha);
        out.method = "slope";
        break;
      case OpKind::MaxPool: {
        // |max_W a − max_W b| ≤ max_{i∈W}|a_i − b_i|: 1 for ℓ∞; summing over windows counts each
        // input once per window it lies in, so (max count)^(1/p) for p = 1, 2 (attained by
        // perturbing one input that is the maximum of all its windows).
        const double m = static_cast<double>(max_window_count(n.as<PoolAttr>(), net.node(n.inputs[0]).shape, n.shape));
        out.factor = out.estimate = p == Norm::Linf ? 1.0 : p == Norm::L2 ? std::sqrt(m) : m;
        out.method = "max-pool";
        break;
      }
      case OpKind::Add:
        out.method = "sum";
        out.lipschitz = l_in + r.nodes[static_cast<size_t>(n.inputs[1])].lipschitz;
        continue;
    }
    out.lipschitz = out.factor * l_in;
  }
  return r;
}

LipschitzResult global_lipschitz(const Network& net, const LipschitzNorms& norms, const std::vector<double>& x0,
                                 int64_t c, int64_t t) {
  detail::check_classes(net, x0, c, t, "global Lipschitz");
  CNNCERT_CHECK(norms.nodes.size() == net.nodes().size(),
                "global Lipschitz: the norms were computed for another network");
  const int64_t k = net.output_size();
  const auto logits = net.forward(x0.data(), 1);
  // Trailing linear nodes fold into the specification vector.
  std::vector<int> chain;
  int h = net.output();
  while (h != 0 && is_linear(net.node(h).op)) {
    chain.push_back(h);
    h = net.node(h).inputs[0];
  }
  std::vector<Network> adjoints;
  for (int i : chain) adjoints.push_back(linear_part(net, i, WeightMap::Same));
  const Norm q = dual_norm(norms.norm);
  LipschitzResult best;
  best.radius = std::numeric_limits<double>::infinity();
  for (int64_t tt = 0; tt < k; ++tt) {
    if (tt == c || (t >= 0 && tt != t)) continue;
    std::vector<double> s(static_cast<size_t>(k), 0.0);
    s[static_cast<size_t>(c)] = 1;
    s[static_cast<size_t>(tt)] = -1;
    for (size_t j = 0; j < chain.size(); ++j) {
      const Node& in = net.node(net.node(chain[j]).inputs[0]);
      const std::vector<double> zero(static_cast<size_t>(in.size()), 0.0);
      s = adjoints[j].input_gradient(zero.data(), s.data());
    }
    LipschitzResult r;
    r.target = tt;
    r.margin = logits[static_cast<size_t>(c)] - logits[static_cast<size_t>(tt)];
    r.spec_node = h;
    r.spec_norm = lp_norm(s, q);
    r.lipschitz = r.spec_norm * norms.nodes[static_cast<size_t>(h)].lipschitz;
    if (r.margin <= 0)
      r.radius = 0;
    else if (r.lipschitz == 0)
      r.radius = std::numeric_limits<double>::infinity();
    else
      r.radius = r.margin / r.lipschitz * (1 - 1e-9);  // absorbs the rounding of the forward pass
    if (r.radius < best.radius || best.target < 0) best = std::move(r);
  }
  best.layers = norms.nodes;
  return best;
}

LipschitzResult global_lipschitz(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p,
                                 const LipschitzOptions& options) {
  detail::check_classes(net, x0, c, t, "global Lipschitz");
  return global_lipschitz(net, lipschitz_norms(net, p, options), x0, c, t);
}

double global_lipschitz_radius(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, Norm p) {
  return global_lipschitz(net, x0, c, t, p).radius;
}

namespace detail {

void check_classes(const Network& net, const std::vector<double>& x0, int64_t c, int64_t t, const char* who) {
  CNNCERT_CHECK(static_cast<int64_t>(x0.size()) == net.input_size(),
                who << ": the input has " << x0.size() << " values, the network expects " << net.input_size());
  const int64_t k = net.output_size();
  CNNCERT_CHECK(k >= 2, who << ": the network has " << k << " output(s); at least 2 classes are needed");
  CNNCERT_CHECK(c >= 0 && c < k, who << ": class " << c << " is out of range [0, " << k << ")");
  CNNCERT_CHECK(t >= -1 && t < k && t != c,
                who << ": target " << t << " must be −1 (untargeted) or a class in [0, " << k << ") other than " << c);
  for (double v : x0) CNNCERT_CHECK(std::isfinite(v), who << ": the input contains a non-finite value");
}

}  // namespace detail

}  // namespace cnncert
