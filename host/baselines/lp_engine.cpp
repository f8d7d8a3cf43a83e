// LP baseline: triangle relaxation of unstable ReLUs, solved with GLPK's simplex.
#include <cmath>
#include <functional>
#include <mutex>

#include "cnncert/error.hpp"
#include "cnncert/lp.hpp"
#include "engine/engine_common.hpp"

#if defined(CNNCERT_HAVE_GLPK)
#include <glpk.h>
#endif

namespace cnncert {

namespace {

void check_lp_network(const Network& net) {
  for (const Node& n : net.nodes()) {
    if (n.op == OpKind::MaxPool)
      throw UnsupportedModel("the LP baseline applies to ReLU networks without max-pooling (node '" + n.name +
                             "' is a MaxPool)");
    if (n.op == OpKind::Activation && n.as<ActAttr>().kind != ActKind::Relu)
      throw UnsupportedModel(std::string("the LP baseline applies to ReLU networks (node '") + n.name + "' is " +
                             act_name(n.as<ActAttr>().kind) + ")");
  }
}

}  // namespace

#if defined(CNNCERT_HAVE_GLPK)

bool lp_available() {
  return true;
}

namespace {

/// Sparse LP under construction (1-based GLPK indexing happens at load time).
struct LpBuilder {
  std::vector<double> col_lo, col_hi;
  std::vector<bool> col_free;
  std::vector<int> ia, ja;
  std::vector<double> ar;
  std::vector<double> row_lo, row_hi;
  std::vector<int> row_type;

  int add_col(double lo, double hi, bool free) {
    col_lo.push_back(lo), col_hi.push_back(hi), col_free.push_back(free);
    return static_cast<int>(col_lo.size());  // 1-based
  }
  int add_row(int type, double lo, double hi) {
    row_type.push_back(type), row_lo.push_back(lo), row_hi.push_back(hi);
    return static_cast<int>(row_lo.size());
  }
  void coef(int row, int col, double v) {
    if (v == 0) return;
    ia.push_back(row), ja.push_back(col), ar.push_back(v);
  }
};

struct GlpDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

class LpEngine final : public BoundEngine {
 public:
  LpEngine(const Network& net, int threads) : net_(net), relax_(make_cpu_engine(net, threads)) {
    check_lp_network(net);
  }
  std::string name() const override { return "lp"; }

  std::vector<BoundResult> bound(const std::vector<BoundProblem>& problems, const BoundOptions& options) override {
    CNNCERT_CHECK(options.norm == Norm::Linf, "the LP baseline supports the l-inf norm only");
    BoundOptions inter = options;
    inter.method = parse_method("adaptive");  // intermediate bounds of CNN-Cert-Ada
    inter.want_intermediate = true;
    inter.want_linear = false;
    const std::vector<BoundResult> pre = relax_->bound(problems, inter);
    std::vector<BoundResult> out(problems.size());
    for (size_t i = 0; i < problems.size(); ++i) out[i] = solve(problems[i], pre[i], options);
    return out;
  }

 private:
  BoundResult solve(const BoundProblem& p, const BoundResult& pre, const BoundOptions& o) const {
    BoundResult res;
    res.lower.assign(static_cast<size_t>(p.rows), -INFINITY);
    res.upper.assign(static_cast<size_t>(p.rows), INFINITY);
    if (!pre.error.empty()) {
      res.error = pre.error;
      return res;
    }
    LpBuilder lp;
    const std::vector<std::vector<int>> var = build(p, pre, o, lp);
    std::unique_ptr<glp_prob, GlpDeleter> prob = load(lp);
    optimise(prob.get(), lp, var[static_cast<size_t>(net_.output())], p, o, res);
    if (!res.error.empty()) {
      for (double& v : res.lower) v = -INFINITY;
      for (double& v : res.upper) v = INFINITY;
    }
    return res;
  }

  /// The LP of problem `p`: columns for the input region and every neuron, rows for the affine
  /// maps and the ReLUs' triangle relaxations (from the intermediate bounds `pre`). Returns
  /// var[node][element]: the element's GLPK column, or 0 for the constant 0 (padding).
  std::vector<std::vector<int>> build(const BoundProblem& p, const BoundResult& pre, const BoundOptions& o,
                                      LpBuilder& lp) const {
    const auto& nodes = net_.nodes();
    std::vector<const NodeBounds*> bounds(nodes.size(), nullptr);
    for (const NodeBounds& b : pre.intermediate) bounds[static_cast<size_t>(b.node)] = &b;
    const detail::InputBox region = detail::input_box(p, o);
    std::vector<std::vector<int>> var(nodes.size());
    for (size_t k = 0; k < nodes.size(); ++k) {
      const Node& n = nodes[k];
      const size_t size = static_cast<size_t>(n.size());
      std::vector<int>& v = var[k];
      v.assign(size, 0);
      auto in = [&](int i) -> const std::vector<int>& {
        return var[static_cast<size_t>(n.inputs[static_cast<size_t>(i)])];
      };
      // z = Σ w·x + b as a new free column per element
      auto affine = [&](const std::function<void(size_t, const std::function<void(int, double)>&)>& terms,
                        const std::function<double(size_t)>& bias) {
        for (size_t e = 0; e < size; ++e) {
          v[e] = lp.add_col(0, 0, true);
          const double b = bias(e);
          const int row = lp.add_row(GLP_FX, b, b);
          lp.coef(row, v[e], 1.0);
          terms(e, [&](int col, double w) {
            if (col > 0) lp.coef(row, col, -w);
          });
        }
      };
      switch (n.op) {
        case OpKind::Input:
          for (size_t e = 0; e < size; ++e) {
            double lo = p.x0[e] - p.eps, hi = p.x0[e] + p.eps;
            if (region.active()) lo = region.lo[e], hi = region.hi[e];
            v[e] = lp.add_col(lo, hi, false);
          }
          break;
        case OpKind::Dense: {
          const DenseAttr& d = n.as<DenseAttr>();
          const auto& x = in(0);
          affine(
              [&](size_t e, const auto& add) {
                for (int64_t i = 0; i < d.in_features; ++i)
                  add(x[static_cast<size_t>(i)],
                      d.weight[e * static_cast<size_t>(d.in_features) + static_cast<size_t>(i)]);
              },
              [&](size_t e) { return d.bias[e]; });
          break;
        }
        case OpKind::Conv: {
          const ConvAttr& c = n.as<ConvAttr>();
          const Shape& is = nodes[static_cast<size_t>(n.inputs[0])].shape;
          const auto& x = in(0);
          const int64_t oh = n.shape[1], ow = n.shape[2], cpg = c.out_channels / c.groups;
          const detail::Window win = c.window();
          affine(
              [&](size_t e, const auto& add) {
                const int64_t o = static_cast<int64_t>(e) / (oh * ow), r = (static_cast<int64_t>(e) / ow) % oh,
                              q = static_cast<int64_t>(e) % ow;
                for (int64_t ci = 0; ci < c.in_channels; ++ci)
                  win.for_each_input(is[1], is[2], r, q, [&](int64_t ky, int64_t kx, int64_t y, int64_t xx) {
                    const int64_t ch = (o / cpg) * c.in_channels + ci;
                    add(x[static_cast<size_t>((ch * is[1] + y) * is[2] + xx)],
                        c.weight[static_cast<size_t>(((o * c.in_channels + ci) * c.kernel_h + ky) * c.kernel_w + kx)]);
                  });
              },
              [&](size_t e) { return c.bias[e / static_cast<size_t>(oh * ow)]; });
          break;
        }
        case OpKind::AvgPool: {
          // the linear map of the pool: its forward pass on unit vectors
          const Node& src = nodes[static_cast<size_t>(n.inputs[0])];
          NetworkBuilder one;
          const int xi = one.input(src.shape);
          const Network pool = one.build(one.avg_pool(xi, n.as<PoolAttr>()));
          std::vector<std::vector<std::pair<int64_t, double>>> cols(size);
          std::vector<double> unit(static_cast<size_t>(src.size()), 0.0);
          for (int64_t j = 0; j < src.size(); ++j) {
            unit[static_cast<size_t>(j)] = 1;
            const auto yv = pool.forward(unit.data(), 1);
            for (size_t e = 0; e < size; ++e)
              if (yv[e] != 0) cols[e].push_back({j, yv[e]});
            unit[static_cast<size_t>(j)] = 0;
          }
          const auto& x = in(0);
          affine(
              [&](size_t e, const auto& add) {
                for (const auto& [j, w] : cols[e]) add(x[static_cast<size_t>(j)], w);
              },
              [](size_t) { return 0.0; });
          break;
        }
        case OpKind::ScaleShift: {
          const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
          const auto& x = in(0);
          affine([&](size_t e, const auto& add) { add(x[e], a.scale[e]); }, [&](size_t e) { return a.shift[e]; });
          break;
        }
        case OpKind::Add: {
          const auto &x1 = in(0), &x2 = in(1);
          affine([&](size_t e, const auto& add) { add(x1[e], 1.0), add(x2[e], 1.0); }, [](size_t) { return 0.0; });
          break;
        }
        case OpKind::Activation:  // ReLU with the triangle relaxation
          CNNCERT_ASSERT(bounds[static_cast<size_t>(n.inputs[0])] != nullptr);
          v = add_relu(lp, *bounds[static_cast<size_t>(n.inputs[0])], in(0));
          break;
        case OpKind::Reshape:
        case OpKind::Transpose:
        case OpKind::Pad: {  // the input's columns, re-indexed (0 for padding)
          const std::vector<int64_t> m = detail::layout_map(n, nodes[static_cast<size_t>(n.inputs[0])]);
          for (size_t e = 0; e < size; ++e) v[e] = m[e] >= 0 ? in(0)[static_cast<size_t>(m[e])] : 0;
          break;
        }
        case OpKind::MaxPool: CNNCERT_ASSERT(false); break;
      }
    }
    return var;
  }

  /// The ReLU y = max(z, 0) of columns z, given z's bounds: y = 0 when u ≤ 0, y = z when l ≥ 0,
  /// else a column in [0, u] above the two lines y ≥ z and below the chord u(z − l)/(u − l).
  static std::vector<int> add_relu(LpBuilder& lp, const NodeBounds& b, const std::vector<int>& z) {
    std::vector<int> v(z.size(), 0);
    for (size_t e = 0; e < z.size(); ++e) {
      const double l = b.lower[e], u = b.upper[e];
      if (u <= 0) {
        v[e] = lp.add_col(0, 0, false);
      } else if (l >= 0) {
        v[e] = z[e];
      } else {
        v[e] = lp.add_col(0, u, false);
        const int r1 = lp.add_row(GLP_LO, 0, 0);  // y − z ≥ 0
        lp.coef(r1, v[e], 1.0);
        lp.coef(r1, z[e], -1.0);
        const int r2 = lp.add_row(GLP_UP, 0, -u * l / (u - l));  // y − u/(u−l) z ≤ −u l/(u−l)
        lp.coef(r2, v[e], 1.0);
        lp.coef(r2, z[e], -u / (u - l));
      }
    }
    return v;
  }
  /// The GLPK problem of the columns, rows and coefficients in `lp`.
  static std::unique_ptr<glp_prob, GlpDeleter> load(const LpBuilder& lp) {
    std::unique_ptr<glp_prob, GlpDeleter> prob(glp_create_prob());
    glp_prob* g = prob.get();
    glp_add_cols(g, static_cast<int>(lp.col_lo.size()));
    for (size_t j = 0; j < lp.col_lo.size(); ++j) {
      const int col = static_cast<int>(j) + 1;
      if (lp.col_free[j])
        glp_set_col_bnds(g, col, GLP_FR, 0, 0);
      else if (lp.col_lo[j] == lp.col_hi[j])
        glp_set_col_bnds(g, col, GLP_FX, lp.col_lo[j], lp.col_hi[j]);
      else
        glp_set_col_bnds(g, col, GLP_DB, lp.col_lo[j], lp.col_hi[j]);
    }
    glp_add_rows(g, static_cast<int>(lp.row_lo.size()));
    for (size_t i = 0; i < lp.row_lo.size(); ++i)
      glp_set_row_bnds(g, static_cast<int>(i) + 1, lp.row_type[i], lp.row_lo[i], lp.row_hi[i]);
    std::vector<int> ia{0}, ja{0};
    std::vector<double> ar{0};
    ia.insert(ia.end(), lp.ia.begin(), lp.ia.end());
    ja.insert(ja.end(), lp.ja.begin(), lp.ja.end());
    ar.insert(ar.end(), lp.ar.begin(), lp.ar.end());
    glp_load_matrix(g, static_cast<int>(lp.ar.size()), ia.data(), ja.data(), ar.data());
    return prob;
  }

  /// Minimises (and with want_upper maximises) every specification row of `p` over the LP, the
  /// output's columns being `outv`; a solver failure sets res.error.
  void optimise(glp_prob* g, const LpBuilder& lp, const std::vector<int>& outv, const BoundProblem& p,
                const BoundOptions& o, BoundResult& res) const {
    glp_smcp parm;
    glp_init_smcp(&parm);
    parm.msg_lev = GLP_MSG_OFF;
    parm.presolve = GLP_ON;
    const int64_t classes = net_.output_size();
    for (int64_t r = 0; r < p.rows; ++r) {
      for (int dir : {GLP_MIN, GLP_MAX}) {
        if (dir == GLP_MAX && !o.want_upper) continue;
        for (size_t j = 1; j <= lp.col_lo.size(); ++j) glp_set_obj_coef(g, static_cast<int>(j), 0.0);
        for (int64_t k = 0; k < classes; ++k) {
          const int col = outv[static_cast<size_t>(k)];
          if (col > 0)
            glp_set_obj_coef(g, col, glp_get_obj_coef(g, col) + p.spec[static_cast<size_t>(r * classes + k)]);
        }
        glp_set_obj_dir(g, dir);
        const int rc = glp_simplex(g, &parm);
        if (rc != 0 || glp_get_status(g) != GLP_OPT) {
          res.error = "the LP solver did not reach an optimum (code " + std::to_string(rc) + ")";
          continue;
        }
        (dir == GLP_MIN ? res.lower : res.upper)[static_cast<size_t>(r)] = glp_get_obj_val(g);
      }
    }
  }

  const Network& net_;
  std::unique_ptr<BoundEngine> relax_;
};

}  // namespace

std::unique_ptr<BoundEngine> make_lp_engine(const Network& net, int threads) {
  return std::make_unique<LpEngine>(net, threads);
}

#else

bool lp_available() {
  return false;
}

std::unique_ptr<BoundEngine> make_lp_engine(const Network& net, int) {
  check_lp_network(net);
  throw UnsupportedModel(
      "the LP baseline is not available: cnncert was built without GLPK (apt-get install libglpk-dev)");
}

#endif

}  // namespace cnncert
