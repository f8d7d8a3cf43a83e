// The pieces of engine_common.hpp that are not inline.
#include "engine/engine_common.hpp"

#include <cmath>
#include <string>

#include "cnncert/error.hpp"

namespace cnncert {

Norm parse_norm(const std::string& s) {
  if (s == "inf" || s == "linf" || s == "Linf" || s == "i") return Norm::Linf;
  if (s == "2" || s == "l2" || s == "L2") return Norm::L2;
  if (s == "1" || s == "l1" || s == "L1") return Norm::L1;
  throw InvalidArgument("unknown norm '" + s + "' (use inf, 2 or 1)");
}

const char* norm_name(Norm n) {
  return n == Norm::Linf ? "inf" : n == Norm::L2 ? "2" : "1";
}

Method parse_method(const std::string& s) {
  if (s == "fastlin") return {ReluRule::Fastlin, SmoothRule::CnnCert, s};
  if (s == "adaptive" || s == "cnncert") return {ReluRule::Adaptive, SmoothRule::CnnCert, s};
  if (s == "deepcert") return {ReluRule::Adaptive, SmoothRule::DeepCert, s};
  if (s == "crown") return {ReluRule::Adaptive, SmoothRule::Crown, s};
  throw InvalidArgument("unknown method '" + s + "' (use fastlin, adaptive, cnncert, deepcert or crown)");
}

void check_boundable(const Network& net) {
  for (const Node& n : net.nodes()) {
    if (n.op == OpKind::Activation && n.as<ActAttr>().kind == ActKind::LeakyRelu) {
      const double a = n.as<ActAttr>().alpha;
      if (!(a >= 0 && a <= 1))
        throw UnsupportedModel("node '" + n.name + "' (LeakyRelu): alpha " + std::to_string(a) +
                               " outside [0, 1] is not supported by the bound engines");
    }
    if (n.op == OpKind::Activation && n.as<ActAttr>().kind == ActKind::Elu && !(n.as<ActAttr>().alpha >= 0))
      throw UnsupportedModel("node '" + n.name + "' (Elu): a negative alpha is not supported by the bound engines");
  }
}

void check_bound_problems(const Network& net, const std::vector<BoundProblem>& problems, const BoundOptions& options) {
  for (const auto& p : problems) {
    CNNCERT_CHECK(static_cast<int64_t>(p.x0.size()) == net.input_size(),
                  "bound problem: x0 has " << p.x0.size() << " values, the network input needs " << net.input_size());
    CNNCERT_CHECK(p.rows >= 0 && static_cast<int64_t>(p.spec.size()) == p.rows * net.output_size(),
                  "bound problem: the specification must have rows × " << net.output_size() << " values");
    CNNCERT_CHECK(std::isfinite(p.eps) && p.eps >= 0, "bound problem: eps must be finite and non-negative");
    for (double v : p.x0) CNNCERT_CHECK(std::isfinite(v), "bound problem: x0 contains NaN or Inf");
    if (!p.has_box()) continue;
    CNNCERT_CHECK(options.norm == Norm::Linf, "bound problem: an input box needs the l-inf norm");
    CNNCERT_CHECK(p.x_lower.size() == p.x0.size() && p.x_upper.size() == p.x0.size(),
                  "bound problem: the box needs " << net.input_size() << " lower and upper values");
    for (size_t j = 0; j < p.x0.size(); ++j) {
      CNNCERT_CHECK(std::isfinite(p.x_lower[j]) && std::isfinite(p.x_upper[j]),
                    "bound problem: the box contains NaN or Inf");
      CNNCERT_CHECK(p.x_lower[j] <= p.x0[j] && p.x0[j] <= p.x_upper[j],
                    "bound problem: input " << j << ": x0 = " << p.x0[j] << " lies outside its box [" << p.x_lower[j]
                                            << ", " << p.x_upper[j] << "]");
    }
  }
  CNNCERT_CHECK(!options.clip_to_box || options.norm == Norm::Linf,
                "input box clipping applies to the l-inf norm only");
  if (options.clip_to_box) {
    CNNCERT_CHECK(options.box_lo < options.box_hi,
                  "the input box [" << options.box_lo << ", " << options.box_hi << "] is empty");
    // A centre outside the box would make the clipped region empty (or not contain x0): fail closed.
    for (const auto& p : problems)
      for (double v : p.x0)
        CNNCERT_CHECK(v >= options.box_lo && v <= options.box_hi,
                      "an input value " << v << " lies outside the box [" << options.box_lo << ", " << options.box_hi
                                        << "] (check --clip against the network's input range)");
  }
}

namespace detail {

std::vector<const NodeBounds*> usable_outer(const Network& net, const BoundProblem& p, const BoundOptions& o) {
  const OuterBounds* ob = p.outer.get();
  if (!ob || p.has_box() || !(ob->eps >= p.eps) || ob->norm != o.norm || ob->x0 != p.x0 ||
      ob->clip_to_box != o.clip_to_box || (o.clip_to_box && (ob->box_lo != o.box_lo || ob->box_hi != o.box_hi)))
    return {};
  std::vector<const NodeBounds*> by_node(net.nodes().size(), nullptr);
  for (const NodeBounds& nb : ob->nodes) {
    if (nb.node < 0 || static_cast<size_t>(nb.node) >= by_node.size()) return {};
    const auto size = static_cast<size_t>(net.node(nb.node).size());
    if (nb.lower.size() != size || nb.upper.size() != size) return {};
    by_node[static_cast<size_t>(nb.node)] = &nb;
  }
  return by_node;
}

std::vector<SkipLevel> skip_levels(const Network& net) {
  const auto& nodes = net.nodes();
  const size_t n = nodes.size();
  std::vector<SkipLevel> level(n, SkipLevel::Stable);
  std::vector<std::vector<int>> users(n);
  for (size_t i = 0; i < n; ++i)
    for (int in : nodes[i].inputs) users[static_cast<size_t>(in)].push_back(static_cast<int>(i));
  for (size_t i = 0; i < n; ++i)
    for (int u : users[i]) {
      const Node& un = nodes[static_cast<size_t>(u)];
      if (un.op == OpKind::MaxPool) level[i] = SkipLevel::None;
      if (un.op != OpKind::Activation) continue;
      const ActKind kind = un.as<ActAttr>().kind;
      if (kind != ActKind::Relu && kind != ActKind::LeakyRelu)
        level[i] = SkipLevel::None;  // stable = one sign: a bend at 0
      for (int uu : users[static_cast<size_t>(u)])
        if (nodes[static_cast<size_t>(uu)].op == OpKind::MaxPool)
          level[i] = std::min(level[i], kind == ActKind::Relu ? SkipLevel::NonPositive : SkipLevel::None);
    }
  return level;
}

bool any_skippable(const Network& net, const std::vector<SkipLevel>& levels) {
  for (int k : bound_schedule(net))
    if (levels[static_cast<size_t>(net.node(k).inputs[0])] != SkipLevel::None) return true;
  return false;
}

/// Index maps of layout nodes (output element → input element, −1 for padding).
std::vector<int64_t> layout_map(const Node& n, const Node& src) {
  const int64_t size = n.size();
  std::vector<int64_t> m(static_cast<size_t>(size));
  if (n.op == OpKind::Reshape) {
    for (int64_t k = 0; k < size; ++k) m[static_cast<size_t>(k)] = k;
    return m;
  }
  const size_t rank = src.shape.size();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t i = rank; i-- > 1;) in_strides[i - 1] = in_strides[i] * src.shape[i];
  std::vector<int64_t> idx(rank, 0);
  for (int64_t k = 0; k < size; ++k) {
    int64_t s = 0;
    bool pad = false;
    for (size_t i = 0; i < rank; ++i) {
      if (n.op == OpKind::Transpose) {
        s += idx[i] * in_strides[static_cast<size_t>(n.as<TransposeAttr>().perm[i])];
      } else {
        const int64_t v = idx[i] - n.as<PadAttr>().begin[i];
        if (v < 0 || v >= src.shape[i]) pad = true;
        s += v * in_strides[i];
      }
    }
    m[static_cast<size_t>(k)] = pad ? -1 : s;
    for (size_t i = rank; i-- > 0;) {
      if (++idx[i] < n.shape[i]) break;
      idx[i] = 0;
    }
  }
  return m;
}

/// Slopes of an average pool as a per-output-neuron map (1/count on counted positions).
std::vector<double> avgpool_slopes(const Node& n, const Geometry& in) {
  const PoolAttr& p = n.as<PoolAttr>();
  const Geometry og = geometry(n);
  const Window win = p.window();
  const int64_t kk = win.kk();
  std::vector<double> s(static_cast<size_t>(og.size() * kk), 0.0);
  for (int64_t c = 0; c < og.c; ++c)
    for (int64_t y = 0; y < og.h; ++y)
      for (int64_t x = 0; x < og.w; ++x) {
        const double inv = 1.0 / static_cast<double>(win.avg_divisor(in.h, in.w, y, x, p.count_include_pad));
        double* sl = s.data() + ((c * og.h + y) * og.w + x) * kk;
        for (int64_t ky = 0; ky < p.kernel_h; ++ky)
          for (int64_t kx = 0; kx < p.kernel_w; ++kx) sl[ky * p.kernel_w + kx] = inv;
      }
  return s;
}

std::vector<double> avgpool_slopes(const Node& n, const Node& src) {
  return avgpool_slopes(n, geometry(src));
}

std::vector<int> bound_schedule(const Network& net) {
  std::vector<int> s;
  const auto& nodes = net.nodes();
  for (size_t k = 0; k < nodes.size(); ++k)
    if (op_traits(nodes[k].op).relaxed) s.push_back(static_cast<int>(k));
  return s;
}

bool maxpool_input_rule(const Network& net, int k, const Method& m, batched::ActSpec& spec, int& pre) {
  const Node& pool = net.node(k);
  if (pool.op != OpKind::MaxPool) return false;
  const Node& act = net.node(pool.inputs[0]);
  if (act.op != OpKind::Activation) return false;
  const ActAttr& a = act.as<ActAttr>();
  spec = batched::ActSpec{a.kind, a.alpha, m.relu, m.smooth};
  if (!batched::activation_monotone(spec)) return false;
  pre = act.inputs[0];
  return true;
}

void activation_of_bounds(const batched::ActSpec& s, const std::vector<double>& lo, const std::vector<double>& hi,
                          std::vector<double>& out_lo, std::vector<double>& out_hi) {
  CNNCERT_ASSERT(lo.size() == hi.size());
  out_lo.resize(lo.size()), out_hi.resize(hi.size());
  for (size_t i = 0; i < lo.size(); ++i) batched::activation_range(s, lo[i], hi[i], out_lo[i], out_hi[i]);
}

void relax_activation_node(const Node& n, const Method& m, const std::vector<double>& lo, const std::vector<double>& hi,
                           std::vector<double>& al, std::vector<double>& bl, std::vector<double>& au,
                           std::vector<double>& bu) {
  const ActAttr& a = n.as<ActAttr>();
  const batched::ActSpec spec{a.kind, a.alpha, m.relu, m.smooth};
  const size_t size = lo.size();
  al.resize(size), bl.resize(size), au.resize(size), bu.resize(size);
  for (size_t i = 0; i < size; ++i) {
    const Relaxation<double> r = batched::relax_activation(spec, lo[i], hi[i]);
    al[i] = r.alpha_l, bl[i] = r.beta_l, au[i] = r.alpha_u, bu[i] = r.beta_u;
  }
}

PoolRelax relax_maxpool_node(const Node& n, const Geometry& in, const std::vector<double>& lo,
                             const std::vector<double>& hi) {
  const batched::PoolGeom pg = pool_geom(n, in);
  const int64_t kk = pg.kk();
  PoolRelax r;
  r.slopes.assign(static_cast<size_t>(pg.out_size() * kk), 0.0);
  r.beta_u.assign(static_cast<size_t>(pg.out_size()), 0.0);
  r.beta_l.assign(static_cast<size_t>(pg.out_size()), 0.0);
  for (int64_t c = 0; c < pg.c; ++c)
    for (int64_t y = 0; y < pg.hout; ++y)
      for (int64_t x = 0; x < pg.wout; ++x) {
        const int64_t j = (c * pg.hout + y) * pg.wout + x;
        batched::relax_maxpool_window(pg, c, y, x, lo.data(), hi.data(), r.slopes.data() + j * kk,
                                      r.beta_u[static_cast<size_t>(j)], r.beta_l[static_cast<size_t>(j)]);
      }
  return r;
}

void check_float32_range(const std::vector<double>& values, const std::string& what, const char* engine) {
  for (const double v : values) {
    CNNCERT_CHECK(!std::isnan(v), what << " is NaN");
    CNNCERT_CHECK(std::fabs(v) <= std::numeric_limits<float>::max(), what << " (" << v
                                                                          << ") is beyond float32, which the " << engine
                                                                          << " computes in (use --engine reference)");
  }
}

bool spec_inexact_in_float32(const std::vector<double>& spec, const char* engine) {
  check_float32_range(spec, "a specification coefficient", engine);
  return std::any_of(spec.begin(), spec.end(),
                     [](double c) { return static_cast<double>(static_cast<float>(c)) != c; });
}

void spec_rounding_bounds(const double* spec, int64_t rows, int64_t classes, const double* yl, const double* yh,
                          double* lo, double* hi) {
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    double l = 0, h = 0;
    for (int64_t c = 0; c < classes; ++c) {
      const double coef = spec[r * classes + c], d = coef - static_cast<double>(static_cast<float>(coef));
      if (d == 0) continue;
      if (!std::isfinite(yl[c]) || !std::isfinite(yh[c])) {  // no interval: fail closed
        l = -inf, h = inf;
        break;
      }
      l += std::min(d * yl[c], d * yh[c]), h += std::max(d * yl[c], d * yh[c]);
    }
    lo[r] = l - (1e-12 * std::fabs(l) + batched::kWidenFloor),
    hi[r] = h + (1e-12 * std::fabs(h) + batched::kWidenFloor);
  }
}

}  // namespace detail
}  // namespace cnncert
