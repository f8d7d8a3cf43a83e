#pragma once
/// \file network.hpp
/// The network IR: an immutable DAG of nodes over per-sample tensors, with a batched forward pass.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "cnncert/activations.hpp"
#include "cnncert/shape_math.hpp"

namespace cnncert {

/// Per-sample tensor shape (the batch dimension is never part of it), row-major.
using Shape = std::vector<int64_t>;

/// The most elements any one tensor may have: 2^31 − 1 by default (sizes fit 32-bit library calls), far above any real
/// model (the largest ones have ~10^8 weights per tensor and ~10^7 activations per sample). Shapes read from a file or
/// derived by the importer are checked against it before they size a buffer.
int64_t max_tensor_elements();
/// Lowers (or raises) that limit for this process, e.g. for a server or a fuzzer that must bound
/// the memory a crafted model can claim. `n` must be at least 1.
void set_max_tensor_elements(int64_t n);

/// `a * b` for sizes (a, b >= 0); throws InvalidArgument naming `what` when the product exceeds
/// max_tensor_elements() (so it can never overflow).
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);
/// Number of elements of a shape (1 for a scalar shape). Checked: throws InvalidArgument when a
/// dimension is negative or the product exceeds max_tensor_elements(); never overflows.
int64_t numel(const Shape& s);
/// numel() of a shape whose every dimension must be at least 1; errors name `what`.
int64_t checked_numel(const Shape& s, const std::string& what);
/// "(C, H, W)"-style text of a shape.
std::string shape_str(const Shape& s);

/// Kind of an IR node.
enum class OpKind { Input, Conv, Dense, ScaleShift, Activation, MaxPool, AvgPool, Add, Reshape, Transpose, Pad };

/// What an op kind is, for the code that treats kinds by their role rather than one by one.
enum class OpRole {
  Input,        ///< the network input
  Affine,       ///< a weighted map: Conv, Dense, ScaleShift
  Elementwise,  ///< an activation (act_traits in activations.hpp says which)
  Pooling,      ///< a sliding window without weights: MaxPool, AvgPool
  Merge,        ///< several operands into one: Add
  Layout,       ///< moves or pads values without arithmetic: Reshape, Transpose, Pad
};

struct OpTraits {
  const char* name;  ///< "Conv", "Dense", ...
  OpRole role;
  int inputs;    ///< operands (0 for the input)
  bool linear;   ///< an affine map of its inputs
  bool relaxed;  ///< nonlinear: the engines bound its input and relax it (the bound schedule)
};

/// The table of op kinds.
constexpr OpTraits op_traits(OpKind k) {
  switch (k) {
    case OpKind::Input: return {"Input", OpRole::Input, 0, false, false};
    case OpKind::Conv: return {"Conv", OpRole::Affine, 1, true, false};
    case OpKind::Dense: return {"Dense", OpRole::Affine, 1, true, false};
    case OpKind::ScaleShift: return {"ScaleShift", OpRole::Affine, 1, true, false};
    case OpKind::Activation: return {"Activation", OpRole::Elementwise, 1, false, true};
    case OpKind::MaxPool: return {"MaxPool", OpRole::Pooling, 1, false, true};
    case OpKind::AvgPool: return {"AvgPool", OpRole::Pooling, 1, true, false};
    case OpKind::Add: return {"Add", OpRole::Merge, 2, true, false};
    case OpKind::Reshape: return {"Reshape", OpRole::Layout, 1, true, false};
    case OpKind::Transpose: return {"Transpose", OpRole::Layout, 1, true, false};
    case OpKind::Pad: return {"Pad", OpRole::Layout, 1, true, false};
  }
  return {"?", OpRole::Input, 0, false, false};
}

/// Name of an op kind ("Conv", "Dense", ...): op_traits(k).name.
const char* op_name(OpKind k);
/// Name of an activation ("Relu", "Sigmoid", ...): act_traits(k).name.
const char* act_name(ActKind k);

/// 2-D convolution over a (C, H, W) input. Weight layout [out][in/groups][kh][kw].
struct ConvAttr {
  int64_t out_channels = 0, in_channels = 0, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1, groups = 1;
  std::vector<double> weight;  ///< out_channels * in_channels/groups * kernel_h * kernel_w
  std::vector<double> bias;    ///< out_channels (zeros when the model has none)
  detail::Window window() const {
    return {kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, pad_bottom, pad_right};
  }
};

/// Dense layer y = W x + b over the flattened input. Weight layout [out][in], row-major.
struct DenseAttr {
  int64_t out_features = 0, in_features = 0;
  std::vector<double> weight;  ///< out_features * in_features
  std::vector<double> bias;    ///< out_features
};

/// Element-wise y = scale ⊙ x + shift with one value per element of the tensor (BatchNorm,
/// input normalization, Add/Sub/Mul/Div by constants).
struct ScaleShiftAttr {
  std::vector<double> scale, shift;
};

/// Element-wise activation; `alpha` is LeakyRelu's negative slope, or Elu's alpha.
struct ActAttr {
  ActKind kind = ActKind::Relu;
  double alpha = 0.01;
};

/// Max or average pooling over a (C, H, W) input; padded positions never win a max, and count
/// towards an average only with `count_include_pad`.
struct PoolAttr {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  bool ceil_mode = false;
  bool count_include_pad = false;
  detail::Window window() const {
    return {kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, pad_bottom, pad_right};
  }
};

/// Permutation of the axes of the per-sample tensor: output axis i is input axis perm[i].
struct TransposeAttr {
  std::vector<int64_t> perm;
};

/// Zero padding of every per-sample axis by `begin[i]` before and `end[i]` after.
struct PadAttr {
  std::vector<int64_t> begin, end;
};

/// One node of the DAG. Nodes are stored in topological order; `inputs` index earlier nodes.
struct Node {
  OpKind op = OpKind::Input;
  std::string name;     ///< ONNX node (or tensor) name, for messages
  std::string onnx_op;  ///< ONNX op type(s) this node came from, e.g. "Conv+BatchNormalization"
  std::vector<int> inputs;
  Shape shape;  ///< per-sample output shape
  std::variant<std::monostate, ConvAttr, DenseAttr, ScaleShiftAttr, ActAttr, PoolAttr, TransposeAttr, PadAttr> attr;

  /// Typed access to the attributes (throws InternalError on a mismatch).
  template <class A>
  const A& as() const;
  template <class A>
  A& as();
  /// Number of elements of the output. The shape was checked when the node was built
  /// (NetworkBuilder: dimensions >= 1, checked product within the element limit then), so the
  /// product needs no check here, and a later set_max_tensor_elements() does not affect it.
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  /// Number of trainable parameters (weights and biases, scale and shift).
  int64_t parameter_count() const;
};

/// An immutable network. Build one with NetworkBuilder or import_onnx().
class Network {
 public:
  /// All nodes in topological order; node 0 is the input.
  const std::vector<Node>& nodes() const { return nodes_; }
  /// Node by index.
  const Node& node(int i) const { return nodes_.at(static_cast<size_t>(i)); }
  /// Index of the output node.
  int output() const { return output_; }
  /// Per-sample input shape.
  const Shape& input_shape() const { return nodes_.front().shape; }
  /// Per-sample output shape.
  const Shape& output_shape() const { return nodes_.at(static_cast<size_t>(output_)).shape; }
  /// Number of elements of one input sample.
  int64_t input_size() const { return nodes_.front().size(); }
  /// Number of outputs (classes).
  int64_t output_size() const { return nodes_.at(static_cast<size_t>(output_)).size(); }
  /// Total number of activation neurons (outputs of Activation nodes).
  int64_t activation_neurons() const;
  /// Notes the importer left for the user (e.g. "trailing Softmax stripped").
  const std::vector<std::string>& notes() const { return notes_; }
  /// Where the network came from (file path or "built in code").
  const std::string& source() const { return source_; }
  /// The normalization the importer removed after the logits ("Softmax", "LogSoftmax"), or "":
  /// bounds are on the logits, which a property about the model's outputs must allow for.
  const std::string& stripped_output() const { return stripped_output_; }

  /// Forward pass of `batch` samples stored contiguously (batch × input_size()); returns
  /// batch × output_size() values. Computes in T (float or double).
  template <class T>
  std::vector<T> forward(const T* x, int64_t batch) const;
  /// Forward pass that keeps the value of every node: result[node] has batch × node.size() values.
  template <class T>
  std::vector<std::vector<T>> forward_all(const T* x, int64_t batch) const;
  /// Gradient of ⟨grad_out, f(x)⟩ with respect to the input x of one sample (the network's own
  /// backward pass; at a max-pool tie the first maximum gets the gradient, ReLU'(0) = 0).
  std::vector<double> input_gradient(const double* x, const double* grad_out) const;

 private:
  friend class NetworkBuilder;
  friend Network with_input_affine(const Network&, const std::vector<double>&, const std::vector<double>&);
  std::vector<Node> nodes_;
  int output_ = 0;
  std::vector<std::string> notes_;
  std::string source_ = "built in code";
  std::string stripped_output_;
};

/// Builds a Network node by node, inferring and checking shapes as it goes (throws
/// InvalidArgument naming the node on a mismatch).
class NetworkBuilder {
 public:
  /// Optional names attached to a node for messages.
  struct Info {
    std::string name;
    std::string onnx_op;
  };
  /// The input node; must be added first.
  int input(Shape shape, Info info = {});
  int conv(int x, ConvAttr a, Info info = {});
  int dense(int x, DenseAttr a, Info info = {});
  int scale_shift(int x, ScaleShiftAttr a, Info info = {});
  int activation(int x, ActKind kind, double alpha = 0.01, Info info = {});
  int max_pool(int x, PoolAttr a, Info info = {});
  int avg_pool(int x, PoolAttr a, Info info = {});
  int add(int a, int b, Info info = {});
  int reshape(int x, Shape shape, Info info = {});
  int transpose(int x, std::vector<int64_t> perm, Info info = {});
  int pad(int x, std::vector<int64_t> begin, std::vector<int64_t> end, Info info = {});

  /// Node access while building (the importer folds BatchNorm into a preceding Conv this way).
  Node& node(int i) { return nodes_.at(static_cast<size_t>(i)); }
  /// Number of nodes so far.
  int size() const { return static_cast<int>(nodes_.size()); }
  /// Adds a note that the finished network reports.
  void note(std::string text) { notes_.push_back(std::move(text)); }
  /// Sets the source description.
  void source(std::string s) { source_ = std::move(s); }
  void stripped_output(std::string op) { stripped_output_ = std::move(op); }
  /// Finishes the network with `output` as its output node. Nodes that do not feed the output
  /// are dropped. Checks every weight is finite.
  Network build(int output);

 private:
  int push(Node n);
  /// A MaxPool or AvgPool node (`onnx_name` is its default ONNX op and error label).
  int pool(int x, PoolAttr a, Info info, OpKind op, const char* onnx_name);
  const Node& in(int x, const Info& info) const;
  std::vector<Node> nodes_;
  std::string stripped_output_;
  std::vector<std::string> notes_;
  std::string source_ = "built in code";
};

}  // namespace cnncert
