// ONNX graph → Network: constant folding, shape inference, BatchNorm/bias folding.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/shape_math.hpp"
#include "io/read_file.hpp"
#include "onnx/onnx_model.hpp"

namespace cnncert {
namespace {

using detail::OnnxAttribute;
using detail::OnnxNode;
using detail::OnnxTensor;

/// A constant tensor known at import time (full shape, no batch convention).
struct Const {
  std::vector<int64_t> dims;
  std::vector<double> v;
  bool is_int = false;  // integer element type (matters for Div and Cast)
};

/// A tensor of the graph: either a constant or the output of a builder node (whose per-sample
/// shape excludes the batch dimension).
struct Value {
  std::optional<Const> c;
  int node = -1;
  /// The ONNX tensor has no batch dimension (a model whose input is rank 1, or rank 2 with a
  /// first dimension above 1): its ONNX shape is the per-sample shape itself.
  bool batchless = false;
};

/// The geometry of a 2-D ConvTranspose: groups, channels, kernel, strides, dilations, output
/// padding, pads and output size.
struct TransposedWindow {
  int64_t groups = 1, cin = 0, cout_g = 0, cout = 0, kh = 0, kw = 0;
  std::vector<int64_t> stride, dil, outpad, pads;
  int64_t oh = 0, ow = 0;
  /// The window without its pads: its span over the input is the unpadded output's extent.
  detail::Window unpadded() const { return {kh, kw, stride[0], stride[1], 0, 0, dil[0], dil[1]}; }
  /// The output extent along axis i (0: H, 1: W) of an input of shape `in` before any padding is cut.
  int64_t full_extent(int i, const Shape& in) const {
    return (i == 0 ? unpadded().span_y(in[1]) : unpadded().span_x(in[2])) + outpad[static_cast<size_t>(i)];
  }
};

class Importer {
 public:
  Importer(const detail::OnnxModel& m, std::string what) : m_(m), what_(std::move(what)) {}
  Network run();

 private:
  [[noreturn]] void unsupported(const OnnxNode& n, const std::string& why) const {
    throw UnsupportedModel(what_ + ": node '" + node_name(n) + "' (op " + n.op_type + "): " + why);
  }
  static std::string node_name(const OnnxNode& n) {
    return n.name.empty() ? (n.outputs.empty() ? std::string("?") : n.outputs[0]) : n.name;
  }
  NetworkBuilder::Info info(const OnnxNode& n) const { return {node_name(n), n.op_type}; }

  const Value& get(const OnnxNode& n, size_t i) const {
    if (i >= n.inputs.size() || n.inputs[i].empty()) unsupported(n, "missing input #" + std::to_string(i));
    auto it = values_.find(n.inputs[i]);
    if (it == values_.end() && non_numeric_.count(n.inputs[i]))
      unsupported(n, "initializer '" + n.inputs[i] + "' holds no numbers (a string tensor?)");
    if (it == values_.end()) unsupported(n, "input '" + n.inputs[i] + "' is not produced by any earlier node");
    return it->second;
  }
  bool has_input(const OnnxNode& n, size_t i) const { return i < n.inputs.size() && !n.inputs[i].empty(); }
  const Const& get_const(const OnnxNode& n, size_t i, const char* what) const {
    const Value& v = get(n, i);
    if (!v.c) unsupported(n, std::string(what) + " must be a constant (initializer), not a computed tensor");
    return *v.c;
  }
  int get_dyn(const OnnxNode& n, size_t i) const {
    const Value& v = get(n, i);
    // A constant where a computed tensor is needed (e.g. Relu of an initializer): such ops are not
    // folded at import (found by fuzzing; was an internal assertion).
    if (v.c) unsupported(n, "input '" + n.inputs[i] + "' is a constant; this operation needs a computed tensor here");
    return v.node;
  }
  const Shape& shape(int node) { return b_.node(node).shape; }

  void bind(const std::string& name, Value v) {
    auto it = values_.find(name);
    if (it != values_.end() && !it->second.c) --aliases_[it->second.node];
    if (!v.c) ++aliases_[v.node];
    values_[name] = std::move(v);
  }
  void unbind(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return;
    if (!it->second.c) --aliases_[it->second.node];
    values_.erase(it);
  }
  void set(const OnnxNode& n, size_t out, Value v) {
    if (out < n.outputs.size() && !n.outputs[out].empty()) bind(n.outputs[out], std::move(v));
  }
  /// True when input i of n is a builder node of one of `kinds` that nothing else uses, so it
  /// may be modified in place (folding a following BatchNorm/bias into it).
  bool foldable(const OnnxNode& n, size_t i, std::initializer_list<OpKind> kinds) {
    const Value& v = get(n, i);
    if (v.c || v.node <= 0 || !single_consumer(n.inputs[i]) || aliases_[v.node] != 1) return false;
    const OpKind k = b_.node(v.node).op;
    return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
  }
  /// After folding n into the node behind its input i: n's output now names that node.
  void rebind_folded(const OnnxNode& n, size_t i) {
    const int id = get(n, i).node;
    Node& node = b_.node(id);
    node.onnx_op += "+" + n.op_type;
    unbind(n.inputs[i]);
    set_node(n, id);
  }
  void set_node(const OnnxNode& n, int id) { set(n, 0, Value{std::nullopt, id, out_batchless_}); }
  /// Whether computed input i of n has no batch dimension.
  bool batchless(const OnnxNode& n, size_t i) const { return !get(n, i).c && get(n, i).batchless; }
  /// The ONNX shape of computed input i: its per-sample shape, behind a batch dimension of 1 unless
  /// it has none.
  Shape onnx_shape(const OnnxNode& n, size_t i) {
    const Shape& s = shape(get_dyn(n, i));
    if (batchless(n, i)) return s;
    Shape full{1};
    full.insert(full.end(), s.begin(), s.end());
    return full;
  }
  /// Sets the result's per-sample shape from an ONNX shape `t` derived from a batchless tensor:
  /// one with a leading 1 (and more) is read as batch 1 from here on; returns the per-sample shape.
  Shape from_batchless(const Shape& t) {
    if (t.size() >= 2 && t[0] == 1) {
      out_batchless_ = false;
      return Shape(t.begin() + 1, t.end());
    }
    out_batchless_ = true;
    return t.empty() ? Shape{1} : t;
  }
  void set_const(const OnnxNode& n, Const c) {
    // Every constant's values match its dims: the folding code below relies on it.
    if (numel(c.dims) != static_cast<int64_t>(c.v.size()))
      unsupported(n, "constant of shape " + shape_str(c.dims) + " has " + std::to_string(c.v.size()) + " values");
    set(n, 0, Value{std::move(c), -1});
  }

  int64_t attr_i(const OnnxNode& n, const char* name, int64_t def) const {
    const OnnxAttribute* a = n.find(name);
    return a ? a->i : def;
  }
  double attr_f(const OnnxNode& n, const char* name, double def) const {
    const OnnxAttribute* a = n.find(name);
    return a ? a->f : def;
  }
  std::vector<int64_t> attr_ints(const OnnxNode& n, const char* name) const {
    const OnnxAttribute* a = n.find(name);
    return a ? a->ints : std::vector<int64_t>{};
  }
  std::string attr_s(const OnnxNode& n, const char* name, const std::string& def) const {
    const OnnxAttribute* a = n.find(name);
    return a ? a->s : def;
  }

  void import_node(const OnnxNode& n);
  void fold_constant(const OnnxNode& n);
  /// Input i of n, which must be a constant (every input of a folded node is).
  const Const& const_input(const OnnxNode& n, size_t i) const { return get_const(n, i, "input"); }
  Const fold_cast(const OnnxNode& n) const;
  Const fold_shape_or_size(const OnnxNode& n) const;
  Const fold_unary(const OnnxNode& n) const;
  Const fold_constant_of_shape(const OnnxNode& n) const;
  Const fold_arithmetic(const OnnxNode& n) const;
  Const fold_gather(const OnnxNode& n) const;
  std::vector<int64_t> const_axes(const OnnxNode& n) const;
  Const fold_unsqueeze(const OnnxNode& n) const;
  Const fold_squeeze(const OnnxNode& n) const;
  Const fold_concat(const OnnxNode& n) const;
  Const fold_flatten(const OnnxNode& n) const;
  Const fold_reshape(const OnnxNode& n) const;
  Const fold_transpose(const OnnxNode& n) const;
  Const fold_slice(const OnnxNode& n) const;
  void conv(const OnnxNode& n);
  void gemm(const OnnxNode& n);
  void matmul(const OnnxNode& n);
  void elementwise(const OnnxNode& n);
  void clip(const OnnxNode& n);
  void reduce_spatial(const OnnxNode& n);
  void batchnorm(const OnnxNode& n);
  void pool(const OnnxNode& n, bool is_max, bool global);
  void reshape_like(const OnnxNode& n);
  Shape flatten_shape(const OnnxNode& n, const Shape& in, const Shape& full, bool nb);
  Shape reshape_shape(const OnnxNode& n, const Shape& in, const Shape& full, bool nb);
  Shape squeeze_shape(const OnnxNode& n, const Shape& full, bool nb);
  Shape batchless_squeeze(const OnnxNode& n, std::vector<int64_t> axes, Shape f) const;
  Shape batched_unsqueeze(const OnnxNode& n, std::vector<int64_t> axes, Shape f) const;
  Shape batched_squeeze(const OnnxNode& n, const std::vector<int64_t>& axes, const Shape& f) const;
  void transpose(const OnnxNode& n);
  void pad(const OnnxNode& n);
  void concat(const OnnxNode& n);
  void conv_transpose(const OnnxNode& n);
  TransposedWindow conv_transpose_window(const OnnxNode& n, const Shape& in, const Const& w) const;
  std::vector<int64_t> conv_transpose_pads(const OnnxNode& n, const Shape& in, const TransposedWindow& g) const;
  void check_conv_transpose_cost(const OnnxNode& n, const Const& w, const TransposedWindow& g, int64_t in_size,
                                 int64_t out_size) const;
  int gated_product(const OnnxNode& n, int a, int b);
  /// window() for a ConvAttr or PoolAttr `a` of known kernel size: sets its strides, pads, dilations.
  template <class A>
  void set_window(const OnnxNode& n, const Shape& in, A& a) const {
    int64_t stride[2], pads[4], dil[2];
    window(n, in, a.kernel_h, a.kernel_w, stride, pads, dil);
    a.stride_h = stride[0], a.stride_w = stride[1], a.dilation_h = dil[0], a.dilation_w = dil[1];
    a.pad_top = pads[0], a.pad_left = pads[1], a.pad_bottom = pads[2], a.pad_right = pads[3];
  }
  void window(const OnnxNode& n, const Shape& in, int64_t kh, int64_t kw, int64_t* stride, int64_t* pads,
              int64_t* dil) const;
  int scale_shift(const OnnxNode& n, int x, std::vector<double> scale, std::vector<double> shift);
  std::vector<double> broadcast_to(const OnnxNode& n, const Const& c, const Shape& per_sample) const;
  bool single_consumer(const std::string& tensor) const {
    auto it = consumers_.find(tensor);
    return it != consumers_.end() && it->second == 1;
  }

  const detail::OnnxModel& m_;
  std::string what_;
  NetworkBuilder b_;
  std::map<std::string, Value> values_;
  std::set<std::string> non_numeric_;     // initializers without numbers (string tensors)
  std::map<std::string, int> consumers_;  // number of uses of each tensor (graph outputs count)
  std::map<int, int> aliases_;            // builder node → number of tensor names bound to it
  std::string output_name_;
  bool out_batchless_ = false;  // the node being imported produces a batchless tensor
  bool any_batchless_ = false;  // some computed input of the node being imported is batchless
  int64_t dense_weights_ = 0;   // weights of the dense maps ConvTransposes became so far
};

// ---- helpers ----------------------------------------------------------------------------------

/// Element count of a constant's dims (0 allowed), by checked multiplication.
int64_t count_of(const std::vector<int64_t>& dims) {
  return numel(dims);
}

/// Constant folding that can amplify (ConstantOfShape, broadcasting, Gather, Concat) may create at
/// most this many elements beyond those of its inputs: real models fold shape vectors, while a
/// crafted 100-byte file could otherwise claim gigabytes below the per-tensor limit.
constexpr int64_t kMaxFoldedGrowth = int64_t{1} << 24;

void check_folded_size(const std::vector<int64_t>& out_dims, int64_t input_elements) {
  const int64_t out = count_of(out_dims);
  if (out > input_elements && out - input_elements > kMaxFoldedGrowth)
    throw InvalidArgument("constant folding would create a constant of shape " + shape_str(out_dims) + " (" +
                          std::to_string(out) + " elements from " + std::to_string(input_elements) + ")");
}

/// Integer values of a constant (shapes, axes, indices); values outside ±2^62 or not finite are
/// rejected rather than cast (a cast of such a double is undefined behaviour). With `saturate`
/// (Slice starts/ends: exporters write INT64_MAX for "to the end", and the values are clamped to the
/// axis length anyway) they are clamped to ±2^62 instead; only NaN is rejected.
std::vector<int64_t> as_ints(const Const& c, bool saturate = false) {
  constexpr double kLimit = 4611686018427387904.0;  // 2^62
  std::vector<int64_t> r;
  r.reserve(c.v.size());
  for (double x : c.v) {
    if (saturate && !std::isnan(x)) x = std::clamp(x, -kLimit, kLimit);
    if (!(x >= -kLimit && x <= kLimit))
      throw InvalidArgument("integer constant " + std::to_string(x) + " is out of range");
    r.push_back(static_cast<int64_t>(x));
  }
  return r;
}

bool is_int_type(int32_t t) {
  return t != 1 && t != 10 && t != 11 && t != 16;
}

Const from_tensor(const OnnxTensor& t) {
  return Const{t.dims, t.values, is_int_type(t.data_type)};
}

// Numpy-style broadcast of two constants with an element-wise function.
template <class F>
Const broadcast_binary(const Const& a, const Const& b, F f) {
  const size_t rank = std::max(a.dims.size(), b.dims.size());
  std::vector<int64_t> da(rank, 1), db(rank, 1), out(rank);
  std::copy(a.dims.begin(), a.dims.end(), da.begin() + static_cast<long>(rank - a.dims.size()));
  std::copy(b.dims.begin(), b.dims.end(), db.begin() + static_cast<long>(rank - b.dims.size()));
  for (size_t i = 0; i < rank; ++i) {
    if (da[i] != db[i] && da[i] != 1 && db[i] != 1) throw InvalidArgument("shapes do not broadcast");
    out[i] = std::max(da[i], db[i]);
  }
  check_folded_size(out, static_cast<int64_t>(a.v.size() + b.v.size()));
  Const r{out, std::vector<double>(static_cast<size_t>(count_of(out)))};
  std::vector<int64_t> idx(rank, 0);
  for (size_t k = 0; k < r.v.size(); ++k) {
    int64_t ia = 0, ib = 0;
    for (size_t i = 0; i < rank; ++i) {
      ia = ia * da[i] + (da[i] == 1 ? 0 : idx[i]);
      ib = ib * db[i] + (db[i] == 1 ? 0 : idx[i]);
    }
    r.v[k] = f(a.v[static_cast<size_t>(ia)], b.v[static_cast<size_t>(ib)]);
    for (size_t i = rank; i-- > 0;) {
      if (++idx[i] < out[i]) break;
      idx[i] = 0;
    }
  }
  return r;
}

// Expands a constant to the per-sample shape of a dynamic tensor (numpy broadcasting against
// the full shape [batch] + per_sample; the constant must not vary along the batch axis).
std::vector<double> Importer::broadcast_to(const OnnxNode& n, const Const& c, const Shape& per_sample) const {
  Shape full{1};
  full.insert(full.end(), per_sample.begin(), per_sample.end());
  if (c.dims.size() > full.size()) unsupported(n, "constant operand has more dimensions than the tensor");
  std::vector<int64_t> dc(full.size(), 1);
  std::copy(c.dims.begin(), c.dims.end(), dc.begin() + static_cast<long>(full.size() - c.dims.size()));
  if (dc[0] != 1) unsupported(n, "constant operand varies along the batch dimension");
  for (size_t i = 1; i < full.size(); ++i)
    if (dc[i] != 1 && dc[i] != full[i])
      unsupported(n, "constant of shape " + shape_str(c.dims) + " does not broadcast to " + shape_str(full));
  Const ones{full, std::vector<double>(static_cast<size_t>(count_of(full)), 0.0)};
  return broadcast_binary(ones, c, [](double, double y) { return y; }).v;
}

// ---- driver -----------------------------------------------------------------------------------

Network Importer::run() {
  const auto& g = m_.graph;
  b_.source(what_);
  std::set<std::string> init_names;
  for (const auto& t : g.initializers) {
    // A string tensor (or any without numbers) cannot be a weight: its values do not match its
    // dims, which every later use relies on (found by fuzzing: a Gemm read such a weight).
    // Such a tensor is an error only where a node uses it.
    init_names.insert(t.name);
    int64_t count = -1;
    try {
      count = count_of(t.dims);
    } catch (const InvalidArgument&) {  // too large for a number tensor: cannot match its values
    }
    if (count != static_cast<int64_t>(t.values.size())) {
      non_numeric_.insert(t.name);
      continue;
    }
    bind(t.name, Value{from_tensor(t), -1});
  }
  for (const auto& n : g.nodes)
    for (const auto& i : n.inputs) ++consumers_[i];
  for (const auto& o : g.outputs) ++consumers_[o.name];

  // The one real (non-initializer) input.
  const detail::OnnxValueInfo* input = nullptr;
  for (const auto& vi : g.inputs) {
    if (init_names.count(vi.name)) continue;
    if (input)
      throw UnsupportedModel(what_ + ": the model has more than one input ('" + input->name + "', '" + vi.name + "')");
    input = &vi;
  }
  if (!input) throw UnsupportedModel(what_ + ": the model has no input");
  if (input->elem_type != 1 && input->elem_type != 11 && input->elem_type != 0)
    throw UnsupportedModel(what_ + ": input '" + input->name + "' has element type " +
                           std::to_string(input->elem_type) + ", only float inputs are supported");
  if (!input->has_shape || input->dims.empty())
    throw UnsupportedModel(what_ + ": input '" + input->name + "' needs a known shape");
  // Rank 1 ([features]) and rank 2 with a first dimension above 1 ([rows, columns]) have no batch
  // dimension; otherwise the first dimension is the batch (1 or symbolic).
  const bool no_batch = input->dims.size() == 1 || (input->dims.size() == 2 && input->dims[0] > 1);
  if (!no_batch && input->dims[0] != -1 && input->dims[0] != 1)
    throw UnsupportedModel(what_ + ": input '" + input->name + "' has a fixed batch dimension of " +
                           std::to_string(input->dims[0]) + " (expected 1 or symbolic)");
  Shape in_shape(input->dims.begin() + (no_batch ? 0 : 1), input->dims.end());
  for (int64_t d : in_shape)
    if (d <= 0) throw UnsupportedModel(what_ + ": input '" + input->name + "' has a symbolic non-batch dimension");
  const int in_id = b_.input(in_shape, {input->name, "Input"});
  bind(input->name, Value{std::nullopt, in_id, no_batch});
  if (no_batch) b_.note("input '" + input->name + "' of shape " + shape_str(in_shape) + " has no batch dimension");

  if (g.outputs.empty()) throw UnsupportedModel(what_ + ": the model has no output");
  if (g.outputs.size() > 1)
    b_.note("the model has " + std::to_string(g.outputs.size()) + " outputs; using the first, '" + g.outputs[0].name +
            "'");
  output_name_ = g.outputs[0].name;

  // An ONNX graph is in SSA form: each tensor has one producer (the input, an initializer or one
  // node's output). A second producer would silently replace the first one's value.
  {
    std::set<std::string> produced(init_names.begin(), init_names.end());
    produced.insert(input->name);
    for (const auto& n : g.nodes)
      for (const auto& o : n.outputs)
        if (!o.empty() && !produced.insert(o).second)
          throw InvalidArgument(what_ + ": node '" + node_name(n) + "' (op " + n.op_type + ") writes tensor '" + o +
                                "', which has another producer (an ONNX tensor has exactly one)");
  }

  for (const auto& n : g.nodes) {
    try {
      import_node(n);
    } catch (const InvalidArgument& e) {
      // Errors of the shared helpers (checked sizes, integer constants) get the node's name.
      const std::string msg = e.what();
      if (msg.rfind("node '", 0) == 0) throw;
      throw InvalidArgument("node '" + node_name(n) + "' (op " + n.op_type + "): " + msg, e.where());
    }
  }

  auto it = values_.find(output_name_);
  if (it == values_.end())
    throw UnsupportedModel(what_ + ": output '" + output_name_ + "' is not produced by any node");
  if (it->second.c) throw UnsupportedModel(what_ + ": output '" + output_name_ + "' is a constant");
  Network net = b_.build(it->second.node);
  return net;
}

// ---- nodes --------------------------------------------------------------------------------------

namespace {
/// Ops a tensor without a batch dimension may go through (see Importer::import_node).
const std::set<std::string> kBatchlessOps = {
    "Identity", "Dropout", "Cast",    "Shape",   "Relu",      "LeakyRelu", "Sigmoid", "Tanh",    "Atan",      "Erf",
    "Softplus", "Elu",     "Gelu",    "MatMul",  "Add",       "Sub",       "Mul",     "Div",     "Neg",       "Clip",
    "Concat",   "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Pad",     "Softmax", "LogSoftmax"};

const std::set<std::string> kConstFoldable = {
    "Identity",        "Dropout", "Cast", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape",
    "Flatten",         "Add",     "Sub",  "Mul",   "Div",    "Transpose", "Neg",     "Sqrt",   "Reciprocal",
    "ConstantOfShape", "Slice",   "Size"};

// Normalizes an axis against a rank (negative axes count from the end).
int64_t norm_axis(int64_t axis, size_t rank) {
  return axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
}
}  // namespace

void Importer::import_node(const OnnxNode& n) {
  const std::string& op = n.op_type;
  if (!n.domain.empty() && n.domain != "ai.onnx")
    unsupported(n, "operator from the custom domain '" + n.domain + "' is not supported");
  for (size_t i = 0; i < n.inputs.size(); ++i)
    if (!n.inputs[i].empty()) get(n, i);  // every input must exist

  if (op == "Constant") {
    const OnnxAttribute* a = n.find("value");
    if (a && a->has_t) return set_const(n, from_tensor(a->t));
    if ((a = n.find("value_float"))) return set_const(n, Const{{}, {a->f}, false});
    if ((a = n.find("value_floats")))
      return set_const(n, Const{{static_cast<int64_t>(a->floats.size())}, a->floats, false});
    if ((a = n.find("value_int"))) return set_const(n, Const{{}, {static_cast<double>(a->i)}, true});
    if ((a = n.find("value_ints"))) {
      Const c{{static_cast<int64_t>(a->ints.size())}, {}, true};
      for (int64_t v : a->ints) c.v.push_back(static_cast<double>(v));
      return set_const(n, c);
    }
    unsupported(n, "constant without a supported value attribute");
  }

  bool all_const = true, any_batchless = false, all_batchless = true;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    if (n.inputs[i].empty() || get(n, i).c) continue;
    all_const = false;
    any_batchless = any_batchless || get(n, i).batchless;
    all_batchless = all_batchless && get(n, i).batchless;
  }
  if (all_const && kConstFoldable.count(op)) return fold_constant(n);
  // A tensor without a batch dimension goes through the ops whose meaning does not depend on one
  // (those below that take axes read them without a batch axis). The result has none when no
  // computed operand has one (a batched operand broadcasts the result to the batched rank).
  out_batchless_ = any_batchless && all_batchless;
  any_batchless_ = any_batchless;
  if (any_batchless && !kBatchlessOps.count(op))
    unsupported(n, "needs a batch dimension, and this tensor has none (the model's input is " +
                       shape_str(b_.node(0).shape) +
                       " without one): only MatMul, element-wise ops, activations, Concat, Transpose, Pad and reshapes "
                       "are supported before a reshape to a leading 1");

  if (op == "Identity" || op == "Dropout" || op == "Cast") {
    if (op == "Dropout" && n.outputs.size() > 1 && !n.outputs[1].empty() && consumers_.count(n.outputs[1]))
      unsupported(n, "the dropout mask output is used");
    if (op == "Cast") {
      const int64_t to = attr_i(n, "to", 1);
      if (to != 1 && to != 11 && to != 10) unsupported(n, "cast of a computed tensor to a non-float type");
    }
    return set(n, 0, get(n, 0));
  }
  if (op == "Shape") {
    Const c{{}, {}, true};
    for (int64_t d : onnx_shape(n, 0)) c.v.push_back(static_cast<double>(d));
    const auto rank = static_cast<int64_t>(c.v.size());
    int64_t start = std::clamp(norm_axis(attr_i(n, "start", 0), static_cast<size_t>(rank)), int64_t{0}, rank);
    int64_t end = std::clamp(norm_axis(attr_i(n, "end", rank), static_cast<size_t>(rank)), int64_t{0}, rank);
    c.v = std::vector<double>(c.v.begin() + start, c.v.begin() + std::max(start, end));
    c.dims = {static_cast<int64_t>(c.v.size())};
    return set_const(n, c);
  }
  if (op == "Relu") return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Relu, 0.0, info(n)));
  if (op == "LeakyRelu")
    return set_node(n, b_.activation(get_dyn(n, 0), ActKind::LeakyRelu, attr_f(n, "alpha", 0.01), info(n)));
  if (op == "Sigmoid") return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Sigmoid, 0.0, info(n)));
  if (op == "Tanh") return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Tanh, 0.0, info(n)));
  if (op == "Atan") return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Atan, 0.0, info(n)));
  if (op == "Erf") return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Erf, 0.0, info(n)));
  if (op == "Softplus") return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Softplus, 0.0, info(n)));
  if (op == "Elu") {
    const double alpha = attr_f(n, "alpha", 1.0);
    if (!(alpha >= 0 && alpha <= 1e6)) unsupported(n, "alpha " + std::to_string(alpha) + " is not in [0, 1e6]");
    return set_node(n, b_.activation(get_dyn(n, 0), ActKind::Elu, alpha, info(n)));
  }
  if (op == "Gelu") {  // opset 20
    const std::string approx = attr_s(n, "approximate", "none");
    if (approx != "none" && approx != "tanh") unsupported(n, "approximate '" + approx + "' is not 'none' or 'tanh'");
    return set_node(n,
                    b_.activation(get_dyn(n, 0), approx == "none" ? ActKind::Gelu : ActKind::GeluTanh, 0.0, info(n)));
  }
  if (op == "Concat") return concat(n);
  if (op == "ConvTranspose") return conv_transpose(n);
  if (op == "Neg") {
    const int x = get_dyn(n, 0);
    const auto size = static_cast<size_t>(b_.node(x).size());
    return set_node(n, scale_shift(n, x, std::vector<double>(size, -1.0), std::vector<double>(size, 0.0)));
  }
  if (op == "Conv") return conv(n);
  if (op == "Gemm") return gemm(n);
  if (op == "MatMul") return matmul(n);
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return elementwise(n);
  if (op == "BatchNormalization") return batchnorm(n);
  if (op == "MaxPool") return pool(n, true, false);
  if (op == "AveragePool") return pool(n, false, false);
  if (op == "GlobalAveragePool") return pool(n, false, true);
  if (op == "Clip") return clip(n);
  if (op == "ReduceMean" || op == "ReduceSum") return reduce_spatial(n);
  if (op == "Flatten" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze") return reshape_like(n);
  if (op == "Transpose") return transpose(n);
  if (op == "Pad") return pad(n);
  if (op == "Softmax" || op == "LogSoftmax") {
    if (n.outputs.size() == 1 && n.outputs[0] == output_name_ && consumers_[n.outputs[0]] == 1) {
      b_.note("trailing " + op + " '" + node_name(n) + "' stripped: certification works on the logits");
      b_.stripped_output(op);
      return set(n, 0, get(n, 0));
    }
    unsupported(n, op + " is only supported as the last operation (it is stripped; bounds are on logits)");
  }
  unsupported(
      n,
      "operator not supported (cnncert bounds Conv, ConvTranspose, Gemm/MatMul, Add/Sub/Mul/Div by "
      "constants, Neg, BatchNormalization, Relu/LeakyRelu/Sigmoid/Tanh/Atan/Erf/Elu/Softplus/Gelu, x*Sigmoid(x), "
      "Clip, MaxPool/AveragePool/GlobalAveragePool, ReduceMean/ReduceSum, residual Add, Concat and layout ops)");
}

void Importer::fold_constant(const OnnxNode& n) {
  const std::string& op = n.op_type;
  if (op == "Identity" || op == "Dropout") return set_const(n, const_input(n, 0));
  if (op == "Cast") return set_const(n, fold_cast(n));
  if (op == "Shape" || op == "Size") return set_const(n, fold_shape_or_size(n));
  if (op == "Neg" || op == "Sqrt" || op == "Reciprocal") return set_const(n, fold_unary(n));
  if (op == "ConstantOfShape") return set_const(n, fold_constant_of_shape(n));
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return set_const(n, fold_arithmetic(n));
  if (op == "Gather") return set_const(n, fold_gather(n));
  if (op == "Unsqueeze") return set_const(n, fold_unsqueeze(n));
  if (op == "Squeeze") return set_const(n, fold_squeeze(n));
  if (op == "Concat") return set_const(n, fold_concat(n));
  if (op == "Flatten") return set_const(n, fold_flatten(n));
  if (op == "Reshape") return set_const(n, fold_reshape(n));
  if (op == "Transpose") return set_const(n, fold_transpose(n));
  if (op == "Slice") return set_const(n, fold_slice(n));
  unsupported(n, "cannot fold this constant operation");
}

// Cast: the values truncated when the target type is an integer one.
Const Importer::fold_cast(const OnnxNode& n) const {
  Const c = const_input(n, 0);
  const int64_t to = attr_i(n, "to", 1);
  c.is_int = is_int_type(static_cast<int32_t>(to));
  if (c.is_int)
    for (double& x : c.v) x = std::trunc(x);
  return c;
}

// Shape: the input's dims as a 1-D integer constant; Size: its element count as a scalar.
Const Importer::fold_shape_or_size(const OnnxNode& n) const {
  const Const& c = const_input(n, 0);
  if (n.op_type == "Size") return Const{{}, {static_cast<double>(c.v.size())}, true};
  Const r{{static_cast<int64_t>(c.dims.size())}, {}, true};
  for (int64_t d : c.dims) r.v.push_back(static_cast<double>(d));
  return r;
}

// Neg, Sqrt, Reciprocal element by element (the latter two give floats).
Const Importer::fold_unary(const OnnxNode& n) const {
  const std::string& op = n.op_type;
  Const c = const_input(n, 0);
  for (double& x : c.v) x = op == "Neg" ? -x : op == "Sqrt" ? std::sqrt(x) : 1.0 / x;
  if (op != "Neg") c.is_int = false;
  return c;
}

// ConstantOfShape: a tensor of the given dims filled with the `value` attribute (0 by default).
Const Importer::fold_constant_of_shape(const OnnxNode& n) const {
  const auto dims = as_ints(const_input(n, 0));
  double value = 0;
  bool is_int = false;
  if (const OnnxAttribute* a = n.find("value"); a && a->has_t && !a->t.values.empty()) {
    value = a->t.values[0];
    is_int = is_int_type(a->t.data_type);
  }
  check_folded_size(dims, 0);
  return Const{dims, std::vector<double>(static_cast<size_t>(count_of(dims)), value), is_int};
}

// Add, Sub, Mul, Div with numpy broadcasting (Div of two integer constants truncates).
Const Importer::fold_arithmetic(const OnnxNode& n) const {
  const std::string& op = n.op_type;
  const Const& a = const_input(n, 0);
  const Const& b = const_input(n, 1);
  const bool ints = a.is_int && b.is_int;
  Const r;
  try {
    r = broadcast_binary(a, b, [&](double x, double y) {
      if (op == "Add") return x + y;
      if (op == "Sub") return x - y;
      if (op == "Mul") return x * y;
      return ints ? std::trunc(x / y) : x / y;
    });
  } catch (const InvalidArgument&) {
    unsupported(n,
                "constant operands of shapes " + shape_str(a.dims) + " and " + shape_str(b.dims) + " do not broadcast");
  }
  r.is_int = ints;
  return r;
}

// Gather: the slices of the data at the given indices along `axis`.
Const Importer::fold_gather(const OnnxNode& n) const {
  const Const& data = const_input(n, 0);
  const Const& idx = const_input(n, 1);
  if (data.dims.empty()) unsupported(n, "gather from a scalar");
  const int64_t axis = norm_axis(attr_i(n, "axis", 0), data.dims.size());
  if (axis < 0 || axis >= static_cast<int64_t>(data.dims.size())) unsupported(n, "axis out of range");
  const int64_t outer = count_of(std::vector<int64_t>(data.dims.begin(), data.dims.begin() + axis));
  const int64_t inner = count_of(std::vector<int64_t>(data.dims.begin() + axis + 1, data.dims.end()));
  const int64_t len = data.dims[static_cast<size_t>(axis)];
  Const r;
  r.is_int = data.is_int;
  r.dims.assign(data.dims.begin(), data.dims.begin() + axis);
  r.dims.insert(r.dims.end(), idx.dims.begin(), idx.dims.end());
  r.dims.insert(r.dims.end(), data.dims.begin() + axis + 1, data.dims.end());
  check_folded_size(r.dims, static_cast<int64_t>(data.v.size() + idx.v.size()));
  r.v.reserve(static_cast<size_t>(count_of(r.dims)));
  const std::vector<int64_t> indices = as_ints(idx);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k : indices) {
      if (k < 0) k += len;
      if (k < 0 || k >= len) unsupported(n, "gather index out of range");
      for (int64_t q = 0; q < inner; ++q) r.v.push_back(data.v[static_cast<size_t>((o * len + k) * inner + q)]);
    }
  return r;
}

// The axes of a Squeeze/Unsqueeze: its second input (opset 13) or its `axes` attribute.
std::vector<int64_t> Importer::const_axes(const OnnxNode& n) const {
  return has_input(n, 1) ? as_ints(const_input(n, 1)) : attr_ints(n, "axes");
}

// Unsqueeze: a dimension of 1 inserted at each of the axes.
Const Importer::fold_unsqueeze(const OnnxNode& n) const {
  Const c = const_input(n, 0);
  std::vector<int64_t> axes = const_axes(n);
  const size_t rank = c.dims.size() + axes.size();
  for (int64_t& a : axes) a = norm_axis(a, rank);
  std::sort(axes.begin(), axes.end());
  for (int64_t a : axes) {
    if (a < 0 || a > static_cast<int64_t>(c.dims.size())) unsupported(n, "axis out of range");
    c.dims.insert(c.dims.begin() + a, 1);
  }
  return c;
}

// Squeeze: the listed dimensions of 1 removed (all of them without axes).
Const Importer::fold_squeeze(const OnnxNode& n) const {
  Const c = const_input(n, 0);
  const std::vector<int64_t> axes = const_axes(n);
  std::vector<int64_t> dims;
  for (size_t i = 0; i < c.dims.size(); ++i) {
    const bool listed = std::any_of(axes.begin(), axes.end(),
                                    [&](int64_t a) { return norm_axis(a, c.dims.size()) == static_cast<int64_t>(i); });
    if ((axes.empty() && c.dims[i] == 1) || listed) {
      if (c.dims[i] != 1) unsupported(n, "squeeze of a dimension that is not 1");
      continue;
    }
    dims.push_back(c.dims[i]);
  }
  c.dims = dims;
  return c;
}

// Concat: the inputs joined along `axis` (equal dims elsewhere).
Const Importer::fold_concat(const OnnxNode& n) const {
  const Const& first = const_input(n, 0);
  const int64_t axis = norm_axis(attr_i(n, "axis", 0), first.dims.size());
  if (first.dims.empty() || axis < 0 || axis >= static_cast<int64_t>(first.dims.size())) unsupported(n, "bad axis");
  const int64_t outer = count_of(std::vector<int64_t>(first.dims.begin(), first.dims.begin() + axis));
  Const r{first.dims, {}, first.is_int};
  r.dims[static_cast<size_t>(axis)] = 0;
  std::vector<int64_t> inner_sizes;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const Const& c = const_input(n, i);
    if (c.dims.size() != first.dims.size()) unsupported(n, "inputs of different ranks");
    for (size_t d = 0; d < c.dims.size(); ++d)
      if (d != static_cast<size_t>(axis) && c.dims[d] != first.dims[d])
        unsupported(n,
                    "inputs of shapes " + shape_str(first.dims) + " and " + shape_str(c.dims) + " do not concatenate");
    int64_t& extent = r.dims[static_cast<size_t>(axis)];
    if (__builtin_add_overflow(extent, c.dims[static_cast<size_t>(axis)], &extent))
      unsupported(n, "concatenation too large");
    inner_sizes.push_back(static_cast<int64_t>(c.v.size()) / std::max<int64_t>(outer, 1));
  }
  int64_t inputs_total = 0;
  for (size_t i = 0; i < n.inputs.size(); ++i) inputs_total += static_cast<int64_t>(const_input(n, i).v.size());
  check_folded_size(r.dims, inputs_total);
  for (int64_t o = 0; o < outer; ++o)
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const Const& c = const_input(n, i);
      const int64_t len = inner_sizes[i];
      r.v.insert(r.v.end(), c.v.begin() + o * len, c.v.begin() + (o + 1) * len);
    }
  return r;
}

// Flatten: the dims before and from `axis` each multiplied into one.
Const Importer::fold_flatten(const OnnxNode& n) const {
  Const c = const_input(n, 0);
  const int64_t axis = norm_axis(attr_i(n, "axis", 1), c.dims.size());
  if (axis < 0 || axis > static_cast<int64_t>(c.dims.size())) unsupported(n, "flatten axis out of range");
  const int64_t a = count_of(std::vector<int64_t>(c.dims.begin(), c.dims.begin() + axis));
  c.dims = {a, count_of(std::vector<int64_t>(c.dims.begin() + axis, c.dims.end()))};
  return c;
}

// Reshape: the target shape, its 0s copied from the input (unless allowzero) and one -1 inferred.
Const Importer::fold_reshape(const OnnxNode& n) const {
  Const c = const_input(n, 0);
  std::vector<int64_t> target = as_ints(const_input(n, 1));
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !attr_i(n, "allowzero", 0)) target[i] = i < c.dims.size() ? c.dims[i] : 1;
    if (target[i] == -1) {
      if (infer >= 0) unsupported(n, "more than one -1 in the target shape");
      infer = static_cast<int64_t>(i);
    } else {
      if (target[i] < 0) unsupported(n, "negative dimension in the target shape");
      known = checked_mul(known, target[i], "reshape target");
    }
  }
  if (infer >= 0) target[static_cast<size_t>(infer)] = known ? static_cast<int64_t>(c.v.size()) / known : 0;
  if (count_of(target) != static_cast<int64_t>(c.v.size())) unsupported(n, "reshape changes the number of elements");
  c.dims = target;
  return c;
}

// Transpose by `perm` (reversed axes by default), through a one-node network's transpose.
Const Importer::fold_transpose(const OnnxNode& n) const {
  const Const& c = const_input(n, 0);
  std::vector<int64_t> perm = attr_ints(n, "perm");
  const size_t rank = c.dims.size();
  if (perm.empty())
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  if (perm.size() != rank) unsupported(n, "permutation rank mismatch");
  NetworkBuilder tb;  // reuse the network's transpose through a one-node network
  Shape s = c.dims.empty() ? Shape{1} : c.dims;
  int x = tb.input(s);
  int y = tb.transpose(x, perm);
  Network tn = tb.build(y);
  return Const{tn.output_shape(), tn.forward(c.v.data(), 1), c.is_int};
}

// Slice of a 1-D constant: one start, end and step (numpy semantics, clamped to the length).
Const Importer::fold_slice(const OnnxNode& n) const {
  const Const& c = const_input(n, 0);
  if (c.dims.size() != 1) unsupported(n, "slicing of constants is only supported for 1-D tensors");
  std::vector<int64_t> starts = has_input(n, 1) ? as_ints(const_input(n, 1), true) : attr_ints(n, "starts");
  std::vector<int64_t> ends = has_input(n, 2) ? as_ints(const_input(n, 2), true) : attr_ints(n, "ends");
  std::vector<int64_t> steps = has_input(n, 4) ? as_ints(const_input(n, 4)) : std::vector<int64_t>{1};
  if (starts.size() != 1 || ends.size() != 1 || steps.size() != 1 || steps[0] == 0) unsupported(n, "unsupported slice");
  if (steps[0] > (int64_t{1} << 40) || steps[0] < -(int64_t{1} << 40)) unsupported(n, "slice step out of range");
  const int64_t len = c.dims[0], step = steps[0];
  auto clampi = [&](int64_t v, int64_t lo, int64_t hi) { return std::clamp(v < 0 ? v + len : v, lo, hi); };
  const int64_t s = step > 0 ? clampi(starts[0], 0, len) : clampi(starts[0], -1, len - 1);
  const int64_t e = step > 0 ? clampi(ends[0], 0, len) : clampi(ends[0], -1, len - 1);
  Const r{{0}, {}, c.is_int};
  for (int64_t i = s; step > 0 ? i < e : i > e; i += step) r.v.push_back(c.v[static_cast<size_t>(i)]);
  r.dims[0] = static_cast<int64_t>(r.v.size());
  return r;
}

void Importer::window(const OnnxNode& n, const Shape& in, int64_t kh, int64_t kw, int64_t* stride, int64_t* pads,
                      int64_t* dil) const {
  const std::vector<int64_t> s = attr_ints(n, "strides"), p = attr_ints(n, "pads"), d = attr_ints(n, "dilations");
  if (!s.empty() && s.size() != 2) unsupported(n, "only 2-D strides are supported");
  if (!d.empty() && d.size() != 2) unsupported(n, "only 2-D dilations are supported");
  stride[0] = s.empty() ? 1 : s[0];
  stride[1] = s.empty() ? 1 : s[1];
  dil[0] = d.empty() ? 1 : d[0];
  dil[1] = d.empty() ? 1 : d[1];
  for (int64_t v : {stride[0], stride[1], dil[0], dil[1], kh, kw})
    if (v < 1 || v > kMaxWindowValue)
      unsupported(n, "kernel, strides and dilations must be between 1 and " + std::to_string(kMaxWindowValue));
  const std::string auto_pad = attr_s(n, "auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") {
    if (!p.empty() && p.size() != 4) unsupported(n, "pads must have 4 entries for a 2-D window");
    for (int i = 0; i < 4; ++i) pads[i] = p.empty() ? 0 : p[static_cast<size_t>(i)];
  } else if (auto_pad == "VALID") {
    for (int i = 0; i < 4; ++i) pads[i] = 0;
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const int64_t k[2] = {kh, kw};
    for (int a = 0; a < 2; ++a) {
      const int64_t extent = in[static_cast<size_t>(a) + 1];
      const int64_t out = (extent + stride[a] - 1) / stride[a];
      const detail::Window axis{k[a], 1, stride[a], 1, 0, 0, dil[a], 1};  // this axis as a window's rows
      const int64_t total = std::max<int64_t>(0, axis.span_y(out) - extent);
      const int64_t small = total / 2, big = total - small;
      pads[a] = auto_pad == "SAME_UPPER" ? small : big;
      pads[a + 2] = auto_pad == "SAME_UPPER" ? big : small;
    }
  } else {
    unsupported(n, "auto_pad '" + auto_pad + "' is not supported");
  }
}

void Importer::conv(const OnnxNode& n) {
  if (get(n, 0).c) unsupported(n, "convolution of a constant input");
  const int x = get_dyn(n, 0);
  const Const& w = get_const(n, 1, "the weight");
  if (w.dims.size() != 4)
    unsupported(n, "only 2-D convolutions are supported (weight has rank " + std::to_string(w.dims.size()) + ")");
  const Shape& in = shape(x);
  if (in.size() != 3) unsupported(n, "input of shape " + shape_str(in) + " is not (C, H, W)");
  ConvAttr a;
  a.out_channels = w.dims[0];
  a.in_channels = w.dims[1];
  a.kernel_h = w.dims[2];
  a.kernel_w = w.dims[3];
  const std::vector<int64_t> ks = attr_ints(n, "kernel_shape");
  if (!ks.empty() && (ks.size() != 2 || ks[0] != a.kernel_h || ks[1] != a.kernel_w))
    unsupported(n, "kernel_shape does not match the weight");
  a.groups = attr_i(n, "group", 1);
  set_window(n, in, a);
  a.weight = w.v;
  if (has_input(n, 2)) {
    const Const& bias = get_const(n, 2, "the bias");
    if (static_cast<int64_t>(bias.v.size()) != a.out_channels)
      unsupported(n, "bias size does not match the output channels");
    a.bias = bias.v;
  }
  set_node(n, b_.conv(x, std::move(a), info(n)));
}

void Importer::gemm(const OnnxNode& n) {
  if (get(n, 0).c || !get(n, 1).c) unsupported(n, "only input × constant-weight products are supported");
  const int x = get_dyn(n, 0);
  if (attr_i(n, "transA", 0)) unsupported(n, "transA=1 on a computed input is not supported");
  const Const& w = get_const(n, 1, "the weight");
  if (w.dims.size() != 2) unsupported(n, "weight must be 2-D");
  const bool trans_b = attr_i(n, "transB", 0) != 0;
  const double alpha = attr_f(n, "alpha", 1.0), beta = attr_f(n, "beta", 1.0);
  DenseAttr a;
  a.in_features = trans_b ? w.dims[1] : w.dims[0];
  a.out_features = trans_b ? w.dims[0] : w.dims[1];
  if (shape(x).size() != 1)
    unsupported(n, "input of shape " + shape_str(shape(x)) + " is not a vector (add a Flatten before Gemm)");
  a.weight.resize(static_cast<size_t>(count_of(w.dims)));
  for (int64_t o = 0; o < a.out_features; ++o)
    for (int64_t i = 0; i < a.in_features; ++i)
      a.weight[static_cast<size_t>(o * a.in_features + i)] =
          alpha * (trans_b ? w.v[static_cast<size_t>(o * a.in_features + i)]
                           : w.v[static_cast<size_t>(i * a.out_features + o)]);
  if (has_input(n, 2)) {
    a.bias = broadcast_to(n, get_const(n, 2, "the bias"), {a.out_features});
    for (double& v : a.bias) v *= beta;
  }
  set_node(n, b_.dense(x, std::move(a), info(n)));
}

void Importer::matmul(const OnnxNode& n) {
  if (get(n, 0).c || !get(n, 1).c) unsupported(n, "only input × constant-weight products are supported");
  const int x = get_dyn(n, 0);
  const Const& w = get_const(n, 1, "the weight");
  if (w.dims.size() != 2) unsupported(n, "weight must be 2-D");
  const Shape in = shape(x);
  const int64_t k = w.dims[0], m = w.dims[1];
  if (in.back() != k) unsupported(n, "input " + shape_str(in) + " does not match the weight " + shape_str(w.dims));
  if (numel(in) != k) unsupported(n, "matrix products over more than one row per sample are not supported");
  DenseAttr a;
  a.in_features = k;
  a.out_features = m;
  a.weight.resize(static_cast<size_t>(count_of(w.dims)));
  for (int64_t o = 0; o < m; ++o)
    for (int64_t i = 0; i < k; ++i) a.weight[static_cast<size_t>(o * k + i)] = w.v[static_cast<size_t>(i * m + o)];
  int id = b_.dense(x, std::move(a), info(n));
  if (in.size() > 1) {
    Shape out = in;
    out.back() = m;
    id = b_.reshape(id, out, {node_name(n) + "/shape", "MatMul"});
  }
  set_node(n, id);
}

int Importer::scale_shift(const OnnxNode& n, int x, std::vector<double> scale, std::vector<double> shift) {
  return b_.scale_shift(x, ScaleShiftAttr{std::move(scale), std::move(shift)}, info(n));
}

void Importer::elementwise(const OnnxNode& n) {
  const std::string& op = n.op_type;
  const Value& va = get(n, 0);
  const Value& vb = get(n, 1);
  if (!va.c && !vb.c) {
    if (op == "Add") return set_node(n, b_.add(va.node, vb.node, info(n)));
    if (op == "Sub") {
      const int neg =
          b_.scale_shift(vb.node,
                         ScaleShiftAttr{std::vector<double>(static_cast<size_t>(b_.node(vb.node).size()), -1.0),
                                        std::vector<double>(static_cast<size_t>(b_.node(vb.node).size()), 0.0)},
                         {node_name(n) + "/neg", "Sub"});
      return set_node(n, b_.add(va.node, neg, info(n)));
    }
    if (op == "Mul")
      if (const int y = gated_product(n, va.node, vb.node); y >= 0) return set_node(n, y);
    unsupported(n,
                "the product or quotient of two computed tensors is not linear and cannot be bounded (x*Sigmoid(x) and "
                "x*(1+Erf(x/sqrt(2))) are recognized as SiLU and GELU)");
  }
  const bool const_first = va.c.has_value();
  const size_t dyn_index = const_first ? 1 : 0;
  const int x = const_first ? vb.node : va.node;
  const Const& c = const_first ? *va.c : *vb.c;
  const Shape xs = shape(x);
  if (out_batchless_ && c.dims.size() > xs.size()) out_batchless_ = false;  // the constant adds the (batch) rank
  std::vector<double> cv = broadcast_to(n, c, xs);
  const size_t size = cv.size();
  std::vector<double> scale(size, 1.0), shift(size, 0.0);
  if (op == "Add") {
    shift = cv;
  } else if (op == "Sub") {
    if (const_first) {
      std::fill(scale.begin(), scale.end(), -1.0);
      shift = cv;
    } else {
      for (size_t i = 0; i < size; ++i) shift[i] = -cv[i];
    }
  } else if (op == "Mul") {
    scale = cv;
  } else {  // Div
    if (const_first) unsupported(n, "division by a computed tensor is not linear and cannot be bounded");
    for (size_t i = 0; i < size; ++i) {
      if (cv[i] == 0) unsupported(n, "division by zero");
      scale[i] = 1.0 / cv[i];
    }
  }
  const bool identity = std::all_of(scale.begin(), scale.end(), [](double s) { return s == 1.0; }) &&
                        std::all_of(shift.begin(), shift.end(), [](double t) { return t == 0.0; });
  if (identity) return set_node(n, x);
  const bool pure_shift = std::all_of(scale.begin(), scale.end(), [](double s) { return s == 1.0; });
  // y = x + t after a Dense/Conv: fold t into the bias when it is constant per output channel.
  if (pure_shift && foldable(n, dyn_index, {OpKind::Dense, OpKind::Conv})) {
    Node& p = b_.node(x);
    const int64_t channels = p.op == OpKind::Dense ? p.as<DenseAttr>().out_features : p.as<ConvAttr>().out_channels;
    const int64_t per = static_cast<int64_t>(size) / channels;
    bool per_channel = true;
    for (int64_t ch = 0; ch < channels && per_channel; ++ch)
      for (int64_t k = 1; k < per; ++k)
        if (shift[static_cast<size_t>(ch * per + k)] != shift[static_cast<size_t>(ch * per)]) per_channel = false;
    if (per_channel) {
      std::vector<double>& bias = p.op == OpKind::Dense ? p.as<DenseAttr>().bias : p.as<ConvAttr>().bias;
      for (int64_t ch = 0; ch < channels; ++ch) bias[static_cast<size_t>(ch)] += shift[static_cast<size_t>(ch * per)];
      return rebind_folded(n, dyn_index);
    }
  }
  // Consecutive scale/shift nodes (e.g. Sub mean then Div std) compose into one.
  if (foldable(n, dyn_index, {OpKind::ScaleShift})) {
    ScaleShiftAttr& p = b_.node(x).as<ScaleShiftAttr>();
    for (size_t i = 0; i < size; ++i) {
      p.shift[i] = scale[i] * p.shift[i] + shift[i];
      p.scale[i] *= scale[i];
    }
    return rebind_folded(n, dyn_index);
  }
  set_node(n, scale_shift(n, x, std::move(scale), std::move(shift)));
}

void Importer::batchnorm(const OnnxNode& n) {
  if (attr_i(n, "training_mode", 0)) unsupported(n, "training mode batch normalization");
  for (size_t o = 1; o < n.outputs.size(); ++o)
    if (!n.outputs[o].empty() && consumers_.count(n.outputs[o])) unsupported(n, "running statistics outputs are used");
  if (get(n, 0).c) unsupported(n, "batch normalization of a constant");
  const int x = get_dyn(n, 0);
  const Const& gamma = get_const(n, 1, "scale");
  const Const& beta = get_const(n, 2, "bias");
  const Const& mean = get_const(n, 3, "mean");
  const Const& var = get_const(n, 4, "variance");
  const double eps = attr_f(n, "epsilon", 1e-5);
  const Shape xs = shape(x);
  const int64_t channels = xs[0];
  if (static_cast<int64_t>(gamma.v.size()) != channels || static_cast<int64_t>(beta.v.size()) != channels ||
      static_cast<int64_t>(mean.v.size()) != channels || static_cast<int64_t>(var.v.size()) != channels)
    unsupported(n, "parameters do not have one value per channel (" + std::to_string(channels) + ")");
  std::vector<double> s(static_cast<size_t>(channels)), t(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const auto i = static_cast<size_t>(c);
    if (!(var.v[i] + eps > 0)) unsupported(n, "variance + epsilon is not positive");
    s[i] = gamma.v[i] / std::sqrt(var.v[i] + eps);
    t[i] = beta.v[i] - mean.v[i] * s[i];
  }
  if (foldable(n, 0, {OpKind::Conv, OpKind::Dense})) {
    Node& p = b_.node(x);
    std::vector<double>& w = p.op == OpKind::Conv ? p.as<ConvAttr>().weight : p.as<DenseAttr>().weight;
    std::vector<double>& bias = p.op == OpKind::Conv ? p.as<ConvAttr>().bias : p.as<DenseAttr>().bias;
    const size_t per = w.size() / static_cast<size_t>(channels);
    for (size_t c = 0; c < static_cast<size_t>(channels); ++c) {
      for (size_t k = 0; k < per; ++k) w[c * per + k] *= s[c];
      bias[c] = bias[c] * s[c] + t[c];
    }
    return rebind_folded(n, 0);
  }
  const int64_t per = numel(xs) / channels;
  std::vector<double> scale(static_cast<size_t>(numel(xs))), shift(scale.size());
  for (size_t k = 0; k < scale.size(); ++k) {
    scale[k] = s[k / static_cast<size_t>(per)];
    shift[k] = t[k / static_cast<size_t>(per)];
  }
  set_node(n, scale_shift(n, x, std::move(scale), std::move(shift)));
}

void Importer::pool(const OnnxNode& n, bool is_max, bool global) {
  if (get(n, 0).c) unsupported(n, "pooling of a constant");
  if (n.outputs.size() > 1 && !n.outputs[1].empty() && consumers_.count(n.outputs[1]))
    unsupported(n, "the indices output of MaxPool is used");
  const int x = get_dyn(n, 0);
  const Shape in = shape(x);
  if (in.size() != 3) unsupported(n, "input of shape " + shape_str(in) + " is not (C, H, W)");
  PoolAttr a;
  if (global) {
    a.kernel_h = in[1];
    a.kernel_w = in[2];
  } else {
    const std::vector<int64_t> ks = attr_ints(n, "kernel_shape");
    if (ks.size() != 2) unsupported(n, "only 2-D pooling windows are supported");
    a.kernel_h = ks[0];
    a.kernel_w = ks[1];
    set_window(n, in, a);
    a.ceil_mode = attr_i(n, "ceil_mode", 0) != 0;
    a.count_include_pad = attr_i(n, "count_include_pad", 0) != 0;
  }
  set_node(n, is_max ? b_.max_pool(x, a, info(n)) : b_.avg_pool(x, a, info(n)));
}

// Clip (ReLU6, Hardtanh) as ReLUs, exactly: clip(x, lo, hi) = x + relu(lo − x) − relu(x − hi) for
// lo < hi (one bound: one of the two terms), exact in the pass-through range whatever the size of
// the bounds. Bounds of magnitude FLT_MAX or more (Clip-6's defaults, written out by some exporters)
// are none. The engines bound it with their ReLU relaxations (sound; no clipped-linear relaxation
// of its own yet).
void Importer::clip(const OnnxNode& n) {
  const int x = get_dyn(n, 0);
  constexpr double inf = std::numeric_limits<double>::infinity();
  auto bound = [&](size_t input, const char* attr, double def) {
    double v = def;
    if (has_input(n, input)) {  // opset ≥ 11: optional constant inputs
      const Value& in = get(n, input);
      if (!in.c) unsupported(n, std::string("a computed ") + attr + " bound is not supported");
      if (in.c->v.size() != 1) unsupported(n, std::string("the ") + attr + " bound must be a scalar");
      v = in.c->v[0];
    } else {
      v = attr_f(n, attr, def);  // opset < 11: attributes
    }
    if (std::fabs(v) >= static_cast<double>(std::numeric_limits<float>::max())) v = v > 0 ? inf : -inf;
    return v;
  };
  const double lo = bound(1, "min", -inf), hi = bound(2, "max", inf);
  if (std::isnan(lo) || std::isnan(hi)) unsupported(n, "a NaN bound");
  if (!(lo < hi)) unsupported(n, "min " + std::to_string(lo) + " is not below max " + std::to_string(hi));
  const auto size = static_cast<size_t>(b_.node(x).size());
  const std::string name = node_name(n);
  auto affine = [&](int v, double scale, double shift, const std::string& part) {
    return b_.scale_shift(v, ScaleShiftAttr{std::vector<double>(size, scale), std::vector<double>(size, shift)},
                          {name + "/" + part, "Clip"});
  };
  auto relu = [&](int v, const std::string& part) {
    return b_.activation(v, ActKind::Relu, 0.0, {name + "/" + part, "Clip"});
  };
  int y = x;
  if (std::isfinite(lo))
    y = b_.add(y, relu(affine(x, -1, lo, "min_minus_x"), "below_min"), {name + "/raise", "Clip"});  // + relu(lo − x)
  if (std::isfinite(hi))
    y = b_.add(y, affine(relu(affine(x, 1, -hi, "x_minus_max"), "above_max"), -1, 0, "neg"), {name + "/lower", "Clip"});
  set_node(n, y);
}

// ReduceMean / ReduceSum over the two spatial axes of a (C, H, W) map: a global average pool (and
// for the sum a scale by H·W); keepdims 0 drops the two axes.
void Importer::reduce_spatial(const OnnxNode& n) {
  const int x = get_dyn(n, 0);
  const Shape in = shape(x);
  if (has_input(n, 1) && !get(n, 1).c) unsupported(n, "computed axes are not supported");
  std::vector<int64_t> axes = has_input(n, 1) ? as_ints(*get(n, 1).c) : attr_ints(n, "axes");
  for (int64_t& a : axes) a = norm_axis(a, in.size() + 1);  // ONNX axes count the batch dimension
  std::sort(axes.begin(), axes.end());
  if (in.size() != 3 || axes != std::vector<int64_t>{2, 3})
    unsupported(n, "only the reduction over the spatial axes (2, 3) of an (N, C, H, W) map is supported, not axes of " +
                       shape_str(in));
  PoolAttr a;
  a.kernel_h = in[1], a.kernel_w = in[2];
  int y = b_.avg_pool(x, a, {node_name(n) + (n.op_type == "ReduceSum" ? "/mean" : ""), n.op_type});
  if (n.op_type == "ReduceSum") {
    const auto size = static_cast<size_t>(b_.node(y).size());
    y = b_.scale_shift(
        y,
        ScaleShiftAttr{std::vector<double>(size, static_cast<double>(in[1] * in[2])), std::vector<double>(size, 0.0)},
        info(n));
  }
  if (attr_i(n, "keepdims", 1) == 0) y = b_.reshape(y, Shape{in[0]}, {node_name(n) + "/squeeze", n.op_type});
  set_node(n, y);
}

void Importer::reshape_like(const OnnxNode& n) {
  const std::string& op = n.op_type;
  const int x = get_dyn(n, 0);
  const Shape in = shape(x);
  const bool nb = batchless(n, 0);
  const Shape full = onnx_shape(n, 0);
  const Shape out = op == "Flatten"   ? flatten_shape(n, in, full, nb)
                    : op == "Reshape" ? reshape_shape(n, in, full, nb)
                                      : squeeze_shape(n, full, nb);  // per sample
  if (out == in) return set_node(n, x);
  set_node(n, b_.reshape(x, out, info(n)));
}

// Flatten's per-sample shape: of a batchless tensor the two products before and from the axis;
// else the whole sample in one dimension (the axis may not reach into the batch).
Shape Importer::flatten_shape(const OnnxNode& n, const Shape& in, const Shape& full, bool nb) {
  const int64_t axis = norm_axis(attr_i(n, "axis", 1), full.size());
  if (nb) {
    if (axis < 0 || axis > static_cast<int64_t>(full.size())) unsupported(n, "flatten axis out of range");
    return from_batchless(
        {count_of(Shape(full.begin(), full.begin() + axis)), count_of(Shape(full.begin() + axis, full.end()))});
  }
  if (axis < 1) unsupported(n, "flattening into the batch dimension (axis 0) is not supported");
  if (axis > static_cast<int64_t>(full.size())) unsupported(n, "flatten axis out of range");
  const int64_t lead = count_of(Shape(full.begin() + 1, full.begin() + axis));
  if (lead != 1) unsupported(n, "flatten with axis " + std::to_string(axis) + " would mix samples of the batch");
  return {numel(in)};
}

// Reshape's per-sample shape: the constant target, its 0s copied from the input (unless
// allowzero) and one -1 inferred, less a leading batch 1.
Shape Importer::reshape_shape(const OnnxNode& n, const Shape& in, const Shape& full, bool nb) {
  std::vector<int64_t> target = as_ints(get_const(n, 1, "the target shape"));
  const bool allowzero = attr_i(n, "allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allowzero) {
      if (i >= full.size()) unsupported(n, "0 in the target shape has no matching input dimension");
      target[i] = full[i];
    }
    if (target[i] == -1) {
      if (infer >= 0) unsupported(n, "more than one -1 in the target shape");
      infer = static_cast<int64_t>(i);
    } else {
      if (target[i] < 1) unsupported(n, "target shape " + shape_str(target) + " has a dimension below 1");
      known = checked_mul(known, target[i], "reshape target");
    }
  }
  const int64_t total = numel(in);
  if (infer >= 0) {
    if (known <= 0 || total % known) unsupported(n, "cannot infer the -1 of the target shape");
    target[static_cast<size_t>(infer)] = total / known;
  }
  if (numel(target) != total)
    unsupported(n, "cannot reshape " + shape_str(in) + " (per sample) to " + shape_str(target));
  Shape out;
  if (nb)
    out = from_batchless(target);
  else if (!target.empty() && target[0] == 1 && target.size() > 1)
    out.assign(target.begin() + 1, target.end());
  else
    out = target;  // target without a batch dimension (models exported with batch 1)
  if (out.empty()) out = {1};
  return out;
}

// Squeeze's or Unsqueeze's per-sample shape, its axes from the second input or the attribute.
Shape Importer::squeeze_shape(const OnnxNode& n, const Shape& full, bool nb) {
  std::vector<int64_t> axes = has_input(n, 1) ? as_ints(get_const(n, 1, "axes")) : attr_ints(n, "axes");
  if (nb) return from_batchless(batchless_squeeze(n, axes, full));  // no batch axis to protect
  const Shape f = n.op_type == "Unsqueeze" ? batched_unsqueeze(n, axes, full) : batched_squeeze(n, axes, full);
  Shape out(f.begin() + 1, f.end());
  if (out.empty()) out = {1};
  return out;
}

// The ONNX shape f of a batchless tensor after Squeeze/Unsqueeze on any of its axes.
Shape Importer::batchless_squeeze(const OnnxNode& n, std::vector<int64_t> axes, Shape f) const {
  const size_t rank = n.op_type == "Unsqueeze" ? f.size() + axes.size() : f.size();
  for (int64_t& a : axes) a = norm_axis(a, rank);
  std::sort(axes.begin(), axes.end());
  if (n.op_type == "Unsqueeze") {
    for (int64_t a : axes) {
      if (a < 0 || a > static_cast<int64_t>(f.size())) unsupported(n, "axis " + std::to_string(a) + " is out of range");
      f.insert(f.begin() + a, 1);
    }
    return f;
  }
  for (int64_t a : axes)
    if (a < 0 || a >= static_cast<int64_t>(f.size())) unsupported(n, "axis " + std::to_string(a) + " is out of range");
  Shape g;
  for (size_t i = 0; i < f.size(); ++i) {
    const bool listed = std::binary_search(axes.begin(), axes.end(), static_cast<int64_t>(i));
    if (listed && f[i] != 1) unsupported(n, "squeeze of a dimension that is not 1");
    if (!listed && !(axes.empty() && f[i] == 1)) g.push_back(f[i]);
  }
  return g;
}

// The ONNX shape f (batch first) after Unsqueeze at axes behind the batch axis.
Shape Importer::batched_unsqueeze(const OnnxNode& n, std::vector<int64_t> axes, Shape f) const {
  const size_t rank = f.size() + axes.size();
  for (int64_t& a : axes) a = norm_axis(a, rank);
  std::sort(axes.begin(), axes.end());
  for (int64_t a : axes) {
    if (a < 1 || a > static_cast<int64_t>(f.size()))
      unsupported(n, "axis " + std::to_string(a) + " is out of range or the batch axis");
    f.insert(f.begin() + a, 1);
  }
  return f;
}

// The ONNX shape f (batch first) after Squeeze of axes other than the batch axis.
Shape Importer::batched_squeeze(const OnnxNode& n, const std::vector<int64_t>& axes, const Shape& f) const {
  Shape g{1};
  for (size_t i = 1; i < f.size(); ++i) {
    const bool listed = std::any_of(axes.begin(), axes.end(),
                                    [&](int64_t a) { return norm_axis(a, f.size()) == static_cast<int64_t>(i); });
    if (listed && f[i] != 1) unsupported(n, "squeeze of a dimension that is not 1");
    if (listed || (axes.empty() && f[i] == 1)) continue;
    g.push_back(f[i]);
  }
  if (std::any_of(axes.begin(), axes.end(), [&](int64_t a) { return norm_axis(a, f.size()) == 0; }))
    unsupported(n, "squeeze of the batch axis");
  return g;
}

void Importer::transpose(const OnnxNode& n) {
  const int x = get_dyn(n, 0);
  const Shape in = shape(x);
  std::vector<int64_t> perm = attr_ints(n, "perm");
  const bool nb = batchless(n, 0);
  const size_t rank = in.size() + (nb ? 0 : 1);
  if (perm.empty())
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  if (perm.size() != rank) unsupported(n, "permutation does not match the input rank");
  for (int64_t p : perm)
    if (p < 0 || p >= static_cast<int64_t>(rank))
      unsupported(n, "permutation entry " + std::to_string(p) + " is out of range");
  if (nb) {  // as if behind a batch axis
    for (int64_t& p : perm) ++p;
    perm.insert(perm.begin(), 0);
  }
  if (perm[0] != 0) unsupported(n, "transposing the batch axis is not supported");
  std::vector<int64_t> p;
  bool identity = true;
  for (size_t i = 1; i < perm.size(); ++i) {
    p.push_back(perm[i] - 1);
    identity = identity && perm[i] == static_cast<int64_t>(i);
  }
  if (identity) return set_node(n, x);
  set_node(n, b_.transpose(x, p, info(n)));
}

void Importer::pad(const OnnxNode& n) {
  const std::string mode = attr_s(n, "mode", "constant");
  if (mode != "constant") unsupported(n, "only zero (constant) padding is supported, not '" + mode + "'");
  const int x = get_dyn(n, 0);
  const Shape in = shape(x);
  const bool nb = batchless(n, 0);
  const size_t rank = in.size() + (nb ? 0 : 1);
  std::vector<int64_t> pads = has_input(n, 1) ? as_ints(get_const(n, 1, "pads")) : attr_ints(n, "pads");
  double value = attr_f(n, "value", 0.0);
  if (has_input(n, 2)) {
    const Const& v = get_const(n, 2, "the padding value");
    value = v.v.empty() ? 0.0 : v.v[0];
  }
  if (value != 0.0) unsupported(n, "padding with a non-zero value");
  std::vector<int64_t> begin(rank, 0), end(rank, 0);
  if (has_input(n, 3)) {
    std::vector<int64_t> axes = as_ints(get_const(n, 3, "axes"));
    if (pads.size() != 2 * axes.size()) unsupported(n, "pads do not match the axes");
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t a = norm_axis(axes[i], rank);
      if (a < 0 || a >= static_cast<int64_t>(rank)) unsupported(n, "pad axis out of range");
      begin[static_cast<size_t>(a)] = pads[i];
      end[static_cast<size_t>(a)] = pads[i + axes.size()];
    }
  } else {
    if (pads.size() != 2 * rank) unsupported(n, "pads must have two entries per dimension");
    for (size_t i = 0; i < rank; ++i) {
      begin[i] = pads[i];
      end[i] = pads[i + rank];
    }
  }
  if (nb) begin.insert(begin.begin(), 0), end.insert(end.begin(), 0);  // as if behind a batch axis
  if (begin[0] || end[0]) unsupported(n, "padding of the batch axis");
  if (std::all_of(begin.begin(), begin.end(), [](int64_t v) { return v == 0; }) &&
      std::all_of(end.begin(), end.end(), [](int64_t v) { return v == 0; }))
    return set_node(n, x);
  set_node(n, b_.pad(x, std::vector<int64_t>(begin.begin() + 1, begin.end()),
                     std::vector<int64_t>(end.begin() + 1, end.end()), info(n)));
}

// Concat of computed tensors (and constants) along one axis, exactly, with the ops the engines
// bound: each computed operand zero-padded to the full extent at its offset, the pieces summed, and
// the constant operands placed by a shift.
void Importer::concat(const OnnxNode& n) {
  int first = -1;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    if (!has_input(n, i)) unsupported(n, "empty input name");
    if (first < 0 && !get(n, i).c) first = static_cast<int>(i);
  }
  CNNCERT_ASSERT(first >= 0);  // all-constant concatenations are folded
  // (import_node: out_batchless_ = every computed operand batchless, any_batchless_ = some)
  if (any_batchless_ != out_batchless_) unsupported(n, "concatenates tensors with and without a batch dimension");
  const bool all_nb = out_batchless_;
  const Shape ref = shape(get_dyn(n, static_cast<size_t>(first)));
  const size_t onnx_rank = ref.size() + (all_nb ? 0 : 1);
  const OnnxAttribute* axis_attr = n.find("axis");
  if (!axis_attr) unsupported(n, "the axis attribute is missing");
  const int64_t onnx_axis = norm_axis(axis_attr->i, onnx_rank);
  if (onnx_axis < 0 || onnx_axis >= static_cast<int64_t>(onnx_rank)) unsupported(n, "axis out of range");
  if (!all_nb && onnx_axis == 0) unsupported(n, "concatenation along the batch axis");
  const auto a = static_cast<size_t>(onnx_axis - (all_nb ? 0 : 1));
  // Per-sample shapes of the operands; they agree off the axis.
  std::vector<Shape> shapes;
  Shape out = ref;
  out[a] = 0;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    Shape si;
    if (const Value& v = get(n, i); v.c) {
      if (v.c->dims.size() != onnx_rank)
        unsupported(n, "constant operand of shape " + shape_str(v.c->dims) + " has the wrong rank");
      if (!all_nb && v.c->dims[0] != 1) unsupported(n, "constant operand varies along the batch dimension");
      si.assign(v.c->dims.begin() + (all_nb ? 0 : 1), v.c->dims.end());
    } else {
      si = shape(v.node);
    }
    if (si.size() != ref.size())
      unsupported(n, "operands of shapes " + shape_str(ref) + " and " + shape_str(si) + " have different ranks");
    for (size_t d = 0; d < ref.size(); ++d)
      if (d != a && si[d] != ref[d])
        unsupported(n, "operands of shapes " + shape_str(ref) + " and " + shape_str(si) + " do not concatenate");
    if (si[a] > kMaxWindowValue || out[a] + si[a] > kMaxWindowValue) unsupported(n, "concatenation too large");
    out[a] += si[a];
    shapes.push_back(si);
  }
  checked_numel(out, "concatenation");
  const int64_t outer = count_of(Shape(out.begin(), out.begin() + static_cast<long>(a)));
  const int64_t inner = count_of(Shape(out.begin() + static_cast<long>(a) + 1, out.end()));
  int y = -1;
  std::vector<double> shift;
  int64_t offset = 0;
  const std::string name = node_name(n);
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const int64_t len = shapes[i][a];
    if (const Value& v = get(n, i); v.c) {
      if (shift.empty()) shift.assign(static_cast<size_t>(numel(out)), 0.0);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < len; ++k)
          for (int64_t q = 0; q < inner; ++q)
            shift[static_cast<size_t>((o * out[a] + offset + k) * inner + q)] =
                v.c->v[static_cast<size_t>((o * len + k) * inner + q)];
    } else if (len > 0) {
      std::vector<int64_t> begin(out.size(), 0), end(out.size(), 0);
      begin[a] = offset, end[a] = out[a] - offset - len;
      int piece = v.node;
      if (begin[a] || end[a]) piece = b_.pad(v.node, begin, end, {name + "/place" + std::to_string(i), "Concat"});
      y = y < 0 ? piece : b_.add(y, piece, {name + "/sum" + std::to_string(i), "Concat"});
    }
    offset += len;
  }
  if (y < 0) unsupported(n, "every computed operand is empty");
  if (!shift.empty())
    y = b_.scale_shift(y, ScaleShiftAttr{std::vector<double>(shift.size(), 1.0), std::move(shift)}, info(n));
  set_node(n, y);
}

// The dense map of a ConvTranspose (bias zero): each input position's kernel spread over the output.
DenseAttr conv_transpose_dense(const Const& w, const Shape& in, const TransposedWindow& g, int64_t out_size) {
  const int64_t in_size = numel(in), oh = g.oh, ow = g.ow, cout_g = g.cout_g, kh = g.kh, kw = g.kw;
  DenseAttr d;
  d.in_features = in_size, d.out_features = out_size;
  d.weight.assign(static_cast<size_t>(in_size * out_size), 0.0);
  d.bias.assign(static_cast<size_t>(out_size), 0.0);
  const int64_t cin_g = g.cin / g.groups;
  // Input position (iy, ix) reaches output (oy, ox) through tap (ky, kx) exactly where a forward
  // window at "output" (iy, ix) over the (oh, ow) map would read (oy, ox).
  const detail::Window win{kh, kw, g.stride[0], g.stride[1], g.pads[0], g.pads[1], g.dil[0], g.dil[1]};
  for (int64_t c = 0; c < g.cin; ++c)
    for (int64_t iy = 0; iy < in[1]; ++iy)
      for (int64_t ix = 0; ix < in[2]; ++ix)
        win.for_each_input(oh, ow, iy, ix, [&](int64_t ky, int64_t kx, int64_t oy, int64_t ox) {
          const int64_t col = (c * in[1] + iy) * in[2] + ix;
          for (int64_t ol = 0; ol < cout_g; ++ol) {
            const int64_t o = (c / cin_g) * cout_g + ol, row = (o * oh + oy) * ow + ox;
            d.weight[static_cast<size_t>(row * in_size + col)] +=
                w.v[static_cast<size_t>(((c * cout_g + ol) * kh + ky) * kw + kx)];
          }
        });
  return d;
}

// ConvTranspose as the dense linear map it is (each input position spreads its kernel over the
// output), followed by a reshape to (C_out, H_out, W_out). Exact; the matrices of all of a model's
// ConvTransposes together, and the work of filling them, are capped (a small crafted file must not
// claim gigabytes or hours).
void Importer::conv_transpose(const OnnxNode& n) {
  const int x = get_dyn(n, 0);
  const Const& w = get_const(n, 1, "the weight");
  const Shape in = shape(x);
  if (in.size() != 3) unsupported(n, "input of shape " + shape_str(in) + " is not (C, H, W)");
  if (w.dims.size() != 4)
    unsupported(
        n, "only 2-D transposed convolutions are supported (weight has rank " + std::to_string(w.dims.size()) + ")");
  const TransposedWindow g = conv_transpose_window(n, in, w);
  const Shape out{g.cout, g.oh, g.ow};
  const int64_t in_size = numel(in), out_size = checked_numel(out, "ConvTranspose output");
  check_conv_transpose_cost(n, w, g, in_size, out_size);
  dense_weights_ += in_size * out_size;
  DenseAttr d = conv_transpose_dense(w, in, g, out_size);
  if (has_input(n, 2)) {
    const Const& bias = get_const(n, 2, "the bias");
    if (static_cast<int64_t>(bias.v.size()) != g.cout) unsupported(n, "bias size does not match the output channels");
    for (int64_t o = 0; o < out_size; ++o)
      d.bias[static_cast<size_t>(o)] = bias.v[static_cast<size_t>(o / (g.oh * g.ow))];
  }
  const int y = b_.dense(x, std::move(d), {node_name(n) + "/dense", "ConvTranspose"});
  set_node(n, b_.reshape(y, out, info(n)));
}

// A ConvTranspose's groups, channels, kernel, strides, dilations, output padding, pads and output
// size from its attributes and weight, each checked.
TransposedWindow Importer::conv_transpose_window(const OnnxNode& n, const Shape& in, const Const& w) const {
  TransposedWindow g;
  g.groups = attr_i(n, "group", 1);
  g.cin = w.dims[0], g.kh = w.dims[2], g.kw = w.dims[3];
  if (g.groups < 1 || g.cin != in[0] || g.cin % g.groups)
    unsupported(n, "weight " + shape_str(w.dims) + " does not match the input " + shape_str(in) + " in " +
                       std::to_string(g.groups) + " groups");
  g.cout_g = w.dims[1], g.cout = checked_mul(g.cout_g, g.groups, "output channels");
  if (const auto ks = attr_ints(n, "kernel_shape"); !ks.empty() && (ks.size() != 2 || ks[0] != g.kh || ks[1] != g.kw))
    unsupported(n, "kernel_shape does not match the weight");
  auto pair = [&](const char* attr, int64_t def) {
    std::vector<int64_t> v = attr_ints(n, attr);
    if (v.empty()) v = {def, def};
    if (v.size() != 2) unsupported(n, std::string(attr) + " must have 2 entries");
    return v;
  };
  g.stride = pair("strides", 1), g.dil = pair("dilations", 1), g.outpad = pair("output_padding", 0);
  for (int64_t v : {g.stride[0], g.stride[1], g.dil[0], g.dil[1], g.kh, g.kw})
    if (v < 1 || v > kMaxWindowValue)
      unsupported(n, "kernel, strides and dilations must be between 1 and " + std::to_string(kMaxWindowValue));
  for (int i = 0; i < 2; ++i)
    if (g.outpad[i] < 0 || (g.outpad[i] >= g.stride[i] && g.outpad[i] >= g.dil[i]))
      unsupported(n, "output_padding must be below the stride or the dilation");
  g.pads = conv_transpose_pads(n, in, g);
  g.oh = g.full_extent(0, in) - g.pads[0] - g.pads[2];
  g.ow = g.full_extent(1, in) - g.pads[1] - g.pads[3];
  if (g.oh < 1 || g.ow < 1) unsupported(n, "the output would be empty");
  return g;
}

// A ConvTranspose's pads: the attribute, or those that auto_pad or output_shape imply.
std::vector<int64_t> Importer::conv_transpose_pads(const OnnxNode& n, const Shape& in,
                                                   const TransposedWindow& g) const {
  std::vector<int64_t> pads = attr_ints(n, "pads");
  if (pads.empty()) pads = {0, 0, 0, 0};
  if (pads.size() != 4) unsupported(n, "pads must have 4 entries");
  const std::string auto_pad = attr_s(n, "auto_pad", "NOTSET");
  std::vector<int64_t> out_shape = attr_ints(n, "output_shape");
  if (out_shape.size() == 4) out_shape.erase(out_shape.begin(), out_shape.begin() + 2);
  if (!out_shape.empty() && out_shape.size() != 2) unsupported(n, "output_shape must give H and W");
  if (auto_pad != "NOTSET" && auto_pad != "VALID" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER")
    unsupported(n, "auto_pad '" + auto_pad + "' is not supported");
  if (auto_pad == "VALID") pads = {0, 0, 0, 0};
  if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int i = 0; i < 2; ++i) {  // ONNX: total padding from the requested (or SAME: input × stride) size
      const int64_t full = g.full_extent(i, in);
      const int64_t want = out_shape.empty() ? in[1 + i] * g.stride[i] : out_shape[static_cast<size_t>(i)];
      const int64_t total = full - want;
      if (total < 0) unsupported(n, "output_shape is larger than the transposed convolution produces");
      // Where an odd padding's extra row goes differs between the ONNX text and onnxruntime: refuse
      // rather than guess.
      if (total % 2) unsupported(n, "an odd total padding from output_shape/auto_pad is ambiguous; give explicit pads");
      const bool upper = auto_pad != "SAME_LOWER";
      pads[static_cast<size_t>(i)] = upper ? total / 2 : total - total / 2;
      pads[static_cast<size_t>(i) + 2] = total - pads[static_cast<size_t>(i)];
    }
  }
  for (int64_t p : pads)
    if (p < 0 || p > kMaxWindowValue) unsupported(n, "pads must be between 0 and " + std::to_string(kMaxWindowValue));
  return pads;
}

// Refuses a ConvTranspose whose dense matrix would pass the model's cap on such weights, whose
// weight values do not match its shape, or whose kernel taps are too many to expand.
void Importer::check_conv_transpose_cost(const OnnxNode& n, const Const& w, const TransposedWindow& g, int64_t in_size,
                                         int64_t out_size) const {
  constexpr int64_t kMaxDenseWeights = int64_t{1} << 25, kMaxTaps = int64_t{1} << 28;
  if (out_size > (kMaxDenseWeights - dense_weights_) / in_size)
    unsupported(n, "too large to bound as a dense map (" + std::to_string(in_size) + " × " + std::to_string(out_size) +
                       " weights; the limit for all transposed convolutions of a model is 2^25)");
  if (static_cast<int64_t>(w.v.size()) != g.cin * g.cout_g * g.kh * g.kw)
    unsupported(n, "weight values do not match its shape");
  const double taps = static_cast<double>(in_size) * static_cast<double>(g.cout_g) * static_cast<double>(g.kh) *
                      static_cast<double>(g.kw);
  if (taps > static_cast<double>(kMaxTaps))
    unsupported(n, "too many kernel taps (" + std::to_string(taps) + ") to expand");
}

// x·g(x) for an element-wise gate g computed from x (possibly through a uniform scale of x itself):
// g = Sigmoid → SiLU; g = s·Erf(a·x) + t (PyTorch's erf GELU: a = 1/√2, s = t = 1, then · 0.5) →
// (√2·s/a)·GELU(√2·a·x) + (t − s)·x, exactly (x·Erf(a·x) = √2/a·GELU(√2·a·x) − x).
// Returns the node, or −1 when the product is not of this form.
int Importer::gated_product(const OnnxNode& n, int a, int b) {
  auto uniform = [&](int id, double& scale, double& shift) {
    const Node& node = b_.node(id);
    if (node.op != OpKind::ScaleShift) return false;
    const ScaleShiftAttr& s = node.as<ScaleShiftAttr>();
    scale = s.scale.front(), shift = s.shift.front();
    for (size_t i = 0; i < s.scale.size(); ++i)
      if (s.scale[i] != scale || s.shift[i] != shift) return false;
    return true;
  };
  auto is_act = [&](int id, ActKind k) {
    return b_.node(id).op == OpKind::Activation && b_.node(id).as<ActAttr>().kind == k;
  };
  const std::string name = node_name(n);
  auto scaled = [&](int v, double s, double t, const std::string& part) {
    if (s == 1 && t == 0) return v;
    const auto size = static_cast<size_t>(b_.node(v).size());
    return b_.scale_shift(v, ScaleShiftAttr{std::vector<double>(size, s), std::vector<double>(size, t)},
                          {name + "/" + part, "Mul"});
  };
  // The gate `g` as a chain of nodes from x0 (inclusive of g, exclusive of x0), at most 3 long.
  auto chain_to = [&](int g, int x0) {
    std::vector<int> chain;
    for (int cur = g; cur != x0; cur = b_.node(cur).inputs[0]) {
      double s, t;
      if (chain.size() == 3 || cur <= 0 ||
          !(uniform(cur, s, t) || is_act(cur, ActKind::Sigmoid) || is_act(cur, ActKind::Erf)))
        return std::vector<int>{};
      chain.push_back(cur);
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  };
  auto match = [&](int x0, double cx, int g) -> int {
    const std::vector<int> c = chain_to(g, x0);
    if (c.size() == 1 && is_act(c[0], ActKind::Sigmoid))
      return scaled(b_.activation(x0, ActKind::Silu, 0.0, {name + "/silu", "Sigmoid+Mul"}), cx, 0, "scale");
    double s1, t1, s2 = 1, t2 = 0;
    if ((c.size() == 2 || c.size() == 3) && uniform(c[0], s1, t1) && t1 == 0 && s1 != 0 && std::isfinite(s1) &&
        is_act(c[1], ActKind::Erf) && (c.size() == 2 || uniform(c[2], s2, t2))) {
      constexpr double kSqrt2 = 1.4142135623730951;
      const int z = scaled(x0, kSqrt2 * s1, 0, "gelu_input");  // (1 when a = 1/√2 exactly: no node)
      int y =
          scaled(b_.activation(z, ActKind::Gelu, 0.0, {name + "/gelu", "Erf+Mul"}), kSqrt2 * s2 / s1 * cx, 0, "scale");
      if (t2 != s2) y = b_.add(y, scaled(x0, (t2 - s2) * cx, 0, "linear"), {name + "/sum", "Erf+Mul"});
      return y;
    }
    return -1;
  };
  for (int order = 0; order < 2; ++order) {
    const int x = order ? b : a, g = order ? a : b;
    if (const int y = match(x, 1, g); y >= 0) return y;
    double s, t;
    if (x > 0 && uniform(x, s, t) && t == 0)
      if (const int y = match(b_.node(x).inputs[0], s, g); y >= 0) return y;
  }
  return -1;
}

}  // namespace

Network import_onnx_bytes(const std::string& bytes, const std::string& name) {
  if (bytes.empty()) throw InvalidArgument(name + ": empty file, not an ONNX model");
  const detail::OnnxModel model = detail::parse_onnx_model(bytes, name);
  Importer imp(model, name);
  try {
    return imp.run();
  } catch (const UnsupportedModel&) {
    throw;
  } catch (const InvalidArgument& e) {
    // Shape errors from the builder already name the node; add the file.
    const std::string msg = e.what();
    if (msg.rfind(name, 0) == 0) throw;
    throw InvalidArgument(name + ": " + msg, e.where());
  }
}

Network import_onnx(const std::string& path) {
  // (also .onnx.gz, as VNN-COMP ships its models)
  return import_onnx_bytes(detail::read_whole_file(path, "the model file"), path);
}

}  // namespace cnncert
