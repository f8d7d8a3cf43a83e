// The pieces of engine_common.hpp that are not inline.
#include "engine/engine_common.hpp"

#include "cnncert/error.hpp"

namespace cnncert::detail {

std::vector<int> bound_schedule(const Network& net) {
  std::vector<int> s;
  const auto& nodes = net.nodes();
  for (size_t k = 0; k < nodes.size(); ++k)
    if (nodes[k].op == OpKind::Activation || nodes[k].op == OpKind::MaxPool) s.push_back(static_cast<int>(k));
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

}  // namespace cnncert::detail
