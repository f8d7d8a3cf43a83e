// Network IR: builder with shape inference, and the batched forward pass in float/double.
#include "cnncert/network.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <sstream>

#include "cnncert/error.hpp"
#include "cnncert/shape_math.hpp"
#include "util/numeric.hpp"

namespace cnncert {

namespace {
std::atomic<int64_t> g_max_tensor_elements{(int64_t{1} << 31) - 1};
}

int64_t max_tensor_elements() {
  return g_max_tensor_elements.load(std::memory_order_relaxed);
}

void set_max_tensor_elements(int64_t n) {
  CNNCERT_CHECK(n >= 1, "the tensor element limit must be at least 1, got " << n);
  g_max_tensor_elements.store(n, std::memory_order_relaxed);
}

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  CNNCERT_CHECK(a >= 0 && b >= 0, what << ": negative size " << (a < 0 ? a : b));
  int64_t r = 0;
  const int64_t limit = max_tensor_elements();
  CNNCERT_CHECK(!__builtin_mul_overflow(a, b, &r) && r <= limit,
                what << ": more than " << limit << " elements (" << a << " x " << b << ")");
  return r;
}

namespace {
// The product of `s`, or -1 when a dimension is negative or the product exceeds the limit.
int64_t numel_or_minus_one(const Shape& s) {
  const int64_t limit = max_tensor_elements();
  int64_t n = 1;
  for (int64_t d : s)
    if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > limit) return -1;
  return n;
}
}  // namespace

int64_t numel(const Shape& s) {
  const int64_t n = numel_or_minus_one(s);
  CNNCERT_CHECK(n >= 0, "shape " << shape_str(s) << " has a negative dimension or more than " << max_tensor_elements()
                                 << " elements");
  return n;
}

int64_t checked_numel(const Shape& s, const std::string& what) {
  for (int64_t d : s) CNNCERT_CHECK(d >= 1, what << ": shape " << shape_str(s) << " has a dimension below 1");
  const int64_t n = numel_or_minus_one(s);
  CNNCERT_CHECK(n >= 0,
                what << ": shape " << shape_str(s) << " has more than " << max_tensor_elements() << " elements");
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

const char* op_name(OpKind k) {
  return op_traits(k).name;
}

const char* act_name(ActKind k) {
  return act_traits(k).name;
}

template <class A>
const A& Node::as() const {
  const A* p = std::get_if<A>(&attr);
  CNNCERT_ASSERT(p != nullptr);
  return *p;
}
template <class A>
A& Node::as() {
  A* p = std::get_if<A>(&attr);
  CNNCERT_ASSERT(p != nullptr);
  return *p;
}
template const ConvAttr& Node::as<ConvAttr>() const;
template const DenseAttr& Node::as<DenseAttr>() const;
template const ScaleShiftAttr& Node::as<ScaleShiftAttr>() const;
template const ActAttr& Node::as<ActAttr>() const;
template const PoolAttr& Node::as<PoolAttr>() const;
template const TransposeAttr& Node::as<TransposeAttr>() const;
template const PadAttr& Node::as<PadAttr>() const;
template ConvAttr& Node::as<ConvAttr>();
template DenseAttr& Node::as<DenseAttr>();
template ScaleShiftAttr& Node::as<ScaleShiftAttr>();
template ActAttr& Node::as<ActAttr>();
template PoolAttr& Node::as<PoolAttr>();
template TransposeAttr& Node::as<TransposeAttr>();
template PadAttr& Node::as<PadAttr>();

int64_t Node::parameter_count() const {
  if (auto* c = std::get_if<ConvAttr>(&attr)) return static_cast<int64_t>(c->weight.size() + c->bias.size());
  if (auto* d = std::get_if<DenseAttr>(&attr)) return static_cast<int64_t>(d->weight.size() + d->bias.size());
  if (auto* s = std::get_if<ScaleShiftAttr>(&attr)) return static_cast<int64_t>(s->scale.size() + s->shift.size());
  return 0;
}

int64_t Network::activation_neurons() const {
  int64_t n = 0;
  for (const Node& node : nodes_)
    if (node.op == OpKind::Activation) n += node.size();
  return n;
}

// ---------------------------------------------------------------------------------------------
// Builder

namespace {
std::string label(const NetworkBuilder::Info& info, const char* op) {
  std::string s = "node '" + (info.name.empty() ? std::string("?") : info.name) + "'";
  s += " (" + (info.onnx_op.empty() ? std::string(op) : info.onnx_op) + ")";
  return s;
}

using detail::all_finite;

void check_window(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                  std::initializer_list<int64_t> pads, const std::string& who) {
  const bool positive = kh > 0 && kw > 0 && sh > 0 && sw > 0 && dh > 0 && dw > 0 &&
                        std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p >= 0; });
  CNNCERT_CHECK(positive, who << ": kernel, stride and dilation must be positive and pads non-negative");
  const bool bounded = kh <= kMaxWindowValue && kw <= kMaxWindowValue && sh <= kMaxWindowValue &&
                       sw <= kMaxWindowValue && dh <= kMaxWindowValue && dw <= kMaxWindowValue &&
                       std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p <= kMaxWindowValue; });
  CNNCERT_CHECK(bounded, who << ": kernel, stride, dilation and pads must be at most " << kMaxWindowValue);
}
}  // namespace

int NetworkBuilder::push(Node n) {
  // Every shape is checked once, here: dimensions >= 1, the element count by checked arithmetic
  // and within max_tensor_elements(). Nothing downstream multiplies unchecked dimensions.
  checked_numel(n.shape, "node '" + n.name + "' (" + n.onnx_op + ")");
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size()) - 1;
}

const Node& NetworkBuilder::in(int x, const Info& info) const {
  CNNCERT_CHECK(x >= 0 && x < static_cast<int>(nodes_.size()), label(info, "?")
                                                                   << ": input node " << x << " does not exist");
  return nodes_[static_cast<size_t>(x)];
}

int NetworkBuilder::input(Shape shape, Info info) {
  CNNCERT_CHECK(nodes_.empty(), "the input must be the first node");
  CNNCERT_CHECK(!shape.empty(), "the input shape must not be empty");
  checked_numel(shape, "input '" + (info.name.empty() ? std::string("input") : info.name) + "'");
  Node n;
  n.op = OpKind::Input;
  n.name = info.name.empty() ? "input" : info.name;
  n.onnx_op = "Input";
  n.shape = std::move(shape);
  return push(std::move(n));
}

int NetworkBuilder::conv(int x, ConvAttr a, Info info) {
  const Node& src = in(x, info);
  const std::string who = label(info, "Conv");
  CNNCERT_CHECK(src.shape.size() == 3, who << ": convolution needs a (C, H, W) input, got " << shape_str(src.shape));
  CNNCERT_CHECK(a.groups >= 1 && a.out_channels > 0 && a.in_channels > 0 && a.out_channels % a.groups == 0,
                who << ": bad groups/in/out channels");
  check_window(a.kernel_h, a.kernel_w, a.stride_h, a.stride_w, a.dilation_h, a.dilation_w,
               {a.pad_top, a.pad_left, a.pad_bottom, a.pad_right}, who);
  CNNCERT_CHECK(
      checked_mul(a.in_channels, a.groups, who) == src.shape[0],
      who << ": weight expects " << a.in_channels * a.groups << " input channels, input has " << src.shape[0]);
  const int64_t weight_count = checked_numel({a.out_channels, a.in_channels, a.kernel_h, a.kernel_w}, who + ": weight");
  CNNCERT_CHECK(static_cast<int64_t>(a.weight.size()) == weight_count,
                who << ": weight has " << a.weight.size() << " values, expected " << weight_count);
  if (a.bias.empty()) a.bias.assign(static_cast<size_t>(a.out_channels), 0.0);
  CNNCERT_CHECK(static_cast<int64_t>(a.bias.size()) == a.out_channels, who << ": bias size mismatch");
  const int64_t oh = window_out_size(src.shape[1], a.kernel_h, a.stride_h, a.pad_top, a.pad_bottom, a.dilation_h);
  const int64_t ow = window_out_size(src.shape[2], a.kernel_w, a.stride_w, a.pad_left, a.pad_right, a.dilation_w);
  CNNCERT_CHECK(oh > 0 && ow > 0, who << ": kernel does not fit the input " << shape_str(src.shape));
  Node n;
  n.op = OpKind::Conv;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "Conv" : info.onnx_op;
  n.inputs = {x};
  n.shape = {a.out_channels, oh, ow};
  n.attr = std::move(a);
  return push(std::move(n));
}

int NetworkBuilder::dense(int x, DenseAttr a, Info info) {
  const Node& src = in(x, info);
  const std::string who = label(info, "Dense");
  CNNCERT_CHECK(a.in_features == src.size(), who << ": weight expects " << a.in_features << " inputs, input "
                                                 << shape_str(src.shape) << " has " << src.size());
  CNNCERT_CHECK(a.out_features > 0 && static_cast<int64_t>(a.weight.size()) ==
                                          checked_numel({a.out_features, a.in_features}, who + ": weight"),
                who << ": weight size mismatch");
  if (a.bias.empty()) a.bias.assign(static_cast<size_t>(a.out_features), 0.0);
  CNNCERT_CHECK(static_cast<int64_t>(a.bias.size()) == a.out_features, who << ": bias size mismatch");
  Node n;
  n.op = OpKind::Dense;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "Gemm" : info.onnx_op;
  n.inputs = {x};
  n.shape = {a.out_features};
  n.attr = std::move(a);
  return push(std::move(n));
}

int NetworkBuilder::scale_shift(int x, ScaleShiftAttr a, Info info) {
  const Node& src = in(x, info);
  const std::string who = label(info, "ScaleShift");
  CNNCERT_CHECK(
      static_cast<int64_t>(a.scale.size()) == src.size() && static_cast<int64_t>(a.shift.size()) == src.size(),
      who << ": scale/shift must have one value per element (" << src.size() << ")");
  Node n;
  n.op = OpKind::ScaleShift;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "ScaleShift" : info.onnx_op;
  n.inputs = {x};
  n.shape = src.shape;
  n.attr = std::move(a);
  return push(std::move(n));
}

int NetworkBuilder::activation(int x, ActKind kind, double alpha, Info info) {
  const Node& src = in(x, info);
  Node n;
  n.op = OpKind::Activation;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? act_name(kind) : info.onnx_op;
  n.inputs = {x};
  n.shape = src.shape;
  n.attr = ActAttr{kind, alpha};
  return push(std::move(n));
}

namespace {
Shape pool_shape(const Node& src, const PoolAttr& a, const std::string& who) {
  CNNCERT_CHECK(src.shape.size() == 3, who << ": pooling needs a (C, H, W) input, got " << shape_str(src.shape));
  check_window(a.kernel_h, a.kernel_w, a.stride_h, a.stride_w, a.dilation_h, a.dilation_w,
               {a.pad_top, a.pad_left, a.pad_bottom, a.pad_right}, who);
  CNNCERT_CHECK(
      a.pad_top < a.kernel_h && a.pad_bottom < a.kernel_h && a.pad_left < a.kernel_w && a.pad_right < a.kernel_w,
      who << ": padding must be smaller than the kernel");
  const int64_t oh =
      window_out_size(src.shape[1], a.kernel_h, a.stride_h, a.pad_top, a.pad_bottom, a.dilation_h, a.ceil_mode);
  const int64_t ow =
      window_out_size(src.shape[2], a.kernel_w, a.stride_w, a.pad_left, a.pad_right, a.dilation_w, a.ceil_mode);
  CNNCERT_CHECK(oh > 0 && ow > 0, who << ": window does not fit the input " << shape_str(src.shape));
  return {src.shape[0], oh, ow};
}
}  // namespace

int NetworkBuilder::pool(int x, PoolAttr a, Info info, OpKind op, const char* onnx_name) {
  const Node& src = in(x, info);
  Node n;
  n.op = op;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? onnx_name : info.onnx_op;
  n.inputs = {x};
  n.shape = pool_shape(src, a, label(info, onnx_name));
  n.attr = a;
  return push(std::move(n));
}

int NetworkBuilder::max_pool(int x, PoolAttr a, Info info) {
  return pool(x, std::move(a), std::move(info), OpKind::MaxPool, "MaxPool");
}

int NetworkBuilder::avg_pool(int x, PoolAttr a, Info info) {
  return pool(x, std::move(a), std::move(info), OpKind::AvgPool, "AveragePool");
}

int NetworkBuilder::add(int a, int b, Info info) {
  const Node& na = in(a, info);
  const Node& nb = in(b, info);
  CNNCERT_CHECK(na.shape == nb.shape, label(info, "Add") << ": operands have shapes " << shape_str(na.shape) << " and "
                                                         << shape_str(nb.shape));
  Node n;
  n.op = OpKind::Add;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "Add" : info.onnx_op;
  n.inputs = {a, b};
  n.shape = na.shape;
  return push(std::move(n));
}

int NetworkBuilder::reshape(int x, Shape shape, Info info) {
  const Node& src = in(x, info);
  CNNCERT_CHECK(!shape.empty() && checked_numel(shape, label(info, "Reshape")) == src.size(),
                label(info, "Reshape") << ": cannot reshape " << shape_str(src.shape) << " to " << shape_str(shape));
  Node n;
  n.op = OpKind::Reshape;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "Reshape" : info.onnx_op;
  n.inputs = {x};
  n.shape = std::move(shape);
  return push(std::move(n));
}

int NetworkBuilder::transpose(int x, std::vector<int64_t> perm, Info info) {
  const Node& src = in(x, info);
  const std::string who = label(info, "Transpose");
  CNNCERT_CHECK(perm.size() == src.shape.size(),
                who << ": permutation rank " << perm.size() << " vs input rank " << src.shape.size());
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    CNNCERT_CHECK(sorted[i] == static_cast<int64_t>(i), who << ": not a permutation");
  Node n;
  n.op = OpKind::Transpose;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "Transpose" : info.onnx_op;
  n.inputs = {x};
  for (int64_t p : perm) n.shape.push_back(src.shape[static_cast<size_t>(p)]);
  n.attr = TransposeAttr{std::move(perm)};
  return push(std::move(n));
}

int NetworkBuilder::pad(int x, std::vector<int64_t> begin, std::vector<int64_t> end, Info info) {
  const Node& src = in(x, info);
  const std::string who = label(info, "Pad");
  CNNCERT_CHECK(begin.size() == src.shape.size() && end.size() == src.shape.size(), who << ": pads rank mismatch");
  Node n;
  n.op = OpKind::Pad;
  n.name = info.name;
  n.onnx_op = info.onnx_op.empty() ? "Pad" : info.onnx_op;
  n.inputs = {x};
  for (size_t i = 0; i < begin.size(); ++i) {
    CNNCERT_CHECK(begin[i] >= 0 && end[i] >= 0, who << ": negative pads (cropping) are not supported");
    CNNCERT_CHECK(begin[i] <= kMaxWindowValue && end[i] <= kMaxWindowValue, who << ": pads beyond " << kMaxWindowValue);
    n.shape.push_back(src.shape[i] + begin[i] + end[i]);
  }
  n.attr = PadAttr{std::move(begin), std::move(end)};
  return push(std::move(n));
}

Network NetworkBuilder::build(int output) {
  CNNCERT_CHECK(!nodes_.empty() && nodes_[0].op == OpKind::Input, "a network needs an input node");
  CNNCERT_CHECK(output >= 0 && output < size(), "output node " << output << " does not exist");
  // Keep only the nodes the output depends on (the input always stays first).
  std::vector<char> live(nodes_.size(), 0);
  live[static_cast<size_t>(output)] = 1;
  live[0] = 1;
  for (int i = output; i >= 0; --i)
    if (live[static_cast<size_t>(i)])
      for (int p : nodes_[static_cast<size_t>(i)].inputs) live[static_cast<size_t>(p)] = 1;
  std::vector<int> remap(nodes_.size(), -1);
  Network net;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!live[i]) continue;
    Node n = std::move(nodes_[i]);
    for (int& p : n.inputs) p = remap[static_cast<size_t>(p)];
    const std::string who = "node '" + n.name + "' (" + n.onnx_op + ")";
    if (auto* c = std::get_if<ConvAttr>(&n.attr))
      CNNCERT_CHECK(all_finite(c->weight) && all_finite(c->bias), who << ": weights contain NaN or Inf");
    if (auto* d = std::get_if<DenseAttr>(&n.attr))
      CNNCERT_CHECK(all_finite(d->weight) && all_finite(d->bias), who << ": weights contain NaN or Inf");
    if (auto* s = std::get_if<ScaleShiftAttr>(&n.attr))
      CNNCERT_CHECK(all_finite(s->scale) && all_finite(s->shift), who << ": constants contain NaN or Inf");
    if (auto* a = std::get_if<ActAttr>(&n.attr)) CNNCERT_CHECK(std::isfinite(a->alpha), who << ": alpha is NaN or Inf");
    remap[i] = static_cast<int>(net.nodes_.size());
    net.nodes_.push_back(std::move(n));
  }
  net.output_ = remap[static_cast<size_t>(output)];
  net.notes_ = std::move(notes_);
  net.source_ = std::move(source_);
  net.stripped_output_ = std::move(stripped_output_);
  nodes_.clear();
  notes_.clear();
  return net;
}

// ---------------------------------------------------------------------------------------------
// Forward pass

namespace {

template <class T>
void conv_forward(const ConvAttr& a, const Shape& is, const Shape& os, const T* x, T* y) {
  const int64_t ic = is[0], ih = is[1], iw = is[2];
  const int64_t oc = os[0], oh = os[1], ow = os[2];
  const int64_t cpg_in = a.in_channels, cpg_out = oc / a.groups;
  const detail::Window win = a.window();
  for (int64_t o = 0; o < oc; ++o) {
    const int64_t g = o / cpg_out;
    T* yo = y + o * oh * ow;
    for (int64_t p = 0; p < oh * ow; ++p) yo[p] = static_cast<T>(a.bias[static_cast<size_t>(o)]);
    for (int64_t ci = 0; ci < cpg_in; ++ci) {
      const int64_t c = g * cpg_in + ci;
      const T* xc = x + c * ih * iw;
      for (int64_t ky = 0; ky < a.kernel_h; ++ky) {
        for (int64_t kx = 0; kx < a.kernel_w; ++kx) {
          const T w =
              static_cast<T>(a.weight[static_cast<size_t>(((o * cpg_in + ci) * a.kernel_h + ky) * a.kernel_w + kx)]);
          if (w == T(0)) continue;
          // the output columns whose tap lands inside the row: xx = q·stride + off ∈ [0, iw)
          const int64_t off = win.in_x(0, kx);
          int64_t q_lo = 0, q_hi = ow;
          while (q_lo < ow && win.in_x(q_lo, kx) < 0) ++q_lo;
          while (q_hi > q_lo && win.in_x(q_hi - 1, kx) >= iw) --q_hi;
          for (int64_t r = 0; r < oh; ++r) {
            const int64_t yy = win.in_y(r, ky);
            if (yy < 0 || yy >= ih) continue;
            const T* xrow = xc + yy * iw;
            T* yrow = yo + r * ow;
            if (a.stride_w == 1) {
              for (int64_t q = q_lo; q < q_hi; ++q) yrow[q] += w * xrow[q + off];
            } else {
              for (int64_t q = q_lo; q < q_hi; ++q) yrow[q] += w * xrow[win.in_x(q, kx)];
            }
          }
        }
      }
    }
  }
  (void)ic;
}

template <class T>
T activate(const ActAttr& a, T v) {
  switch (a.kind) {
    case ActKind::Relu: return v > T(0) || std::isnan(v) ? v : T(0);  // NaN stays NaN (found as a non-finite output)
    case ActKind::LeakyRelu: return v >= T(0) ? v : static_cast<T>(a.alpha) * v;
    case ActKind::Sigmoid: return T(1) / (T(1) + std::exp(-v));
    case ActKind::Tanh: return std::tanh(v);
    case ActKind::Atan: return std::atan(v);
    case ActKind::Erf: return std::erf(v);
    case ActKind::Elu:
    case ActKind::Softplus:
    case ActKind::Gelu:
    case ActKind::GeluTanh:
    case ActKind::Silu: return detail::general_f(act_traits(a.kind).general, static_cast<T>(a.alpha), v);
  }
  return v;
}

template <class T>
void pool_forward(const PoolAttr& a, bool is_max, const Shape& is, const Shape& os, const T* x, T* y) {
  const int64_t c_n = is[0], ih = is[1], iw = is[2], oh = os[1], ow = os[2];
  const detail::Window win = a.window();
  for (int64_t c = 0; c < c_n; ++c) {
    for (int64_t r = 0; r < oh; ++r) {
      for (int64_t q = 0; q < ow; ++q) {
        T acc = is_max ? -std::numeric_limits<T>::infinity() : T(0);
        win.for_each_input(ih, iw, r, q, [&](int64_t, int64_t, int64_t yy, int64_t xx) {
          const T v = x[(c * ih + yy) * iw + xx];
          if (!is_max)
            acc += v;
          else if (!std::isnan(acc) && (v > acc || std::isnan(v)))  // a NaN input makes the maximum NaN
            acc = v;
        });
        if (!is_max) acc /= static_cast<T>(win.avg_divisor(ih, iw, r, q, a.count_include_pad));
        y[(c * oh + r) * ow + q] = acc;
      }
    }
  }
}

template <class T>
void transpose_forward(const TransposeAttr& a, const Shape& is, const T* x, T* y) {
  const size_t rank = is.size();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t i = rank - 1; i > 0; --i) in_strides[i - 1] = in_strides[i] * is[i];
  Shape os(rank);
  for (size_t i = 0; i < rank; ++i) os[i] = is[static_cast<size_t>(a.perm[i])];
  const int64_t n = numel(is);
  std::vector<int64_t> idx(rank, 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t src = 0;
    for (size_t i = 0; i < rank; ++i) src += idx[i] * in_strides[static_cast<size_t>(a.perm[i])];
    y[k] = x[src];
    for (size_t i = rank; i-- > 0;) {
      if (++idx[i] < os[i]) break;
      idx[i] = 0;
    }
  }
}

template <class T>
void pad_forward(const PadAttr& a, const Shape& is, const Shape& os, const T* x, T* y) {
  const size_t rank = is.size();
  const int64_t n_out = numel(os);
  std::fill(y, y + n_out, T(0));
  const int64_t n_in = numel(is);
  std::vector<int64_t> out_strides(rank, 1);
  for (size_t i = rank; i-- > 1;) out_strides[i - 1] = out_strides[i] * os[i];
  std::vector<int64_t> idx(rank, 0);
  for (int64_t k = 0; k < n_in; ++k) {
    int64_t dst = 0;
    for (size_t i = 0; i < rank; ++i) dst += (idx[i] + a.begin[i]) * out_strides[i];
    y[dst] = x[k];
    for (size_t i = rank; i-- > 0;) {
      if (++idx[i] < is[i]) break;
      idx[i] = 0;
    }
  }
}

template <class T>
void node_forward(const Node& n, const std::vector<std::vector<T>>& vals, const std::vector<Node>& nodes, int64_t batch,
                  std::vector<T>& out) {
  const int64_t osz = n.size();
  out.assign(static_cast<size_t>(batch * osz), T(0));
  const Node& src = nodes[static_cast<size_t>(n.inputs.at(0))];
  const int64_t isz = src.size();
  const std::vector<T>& xin = vals[static_cast<size_t>(n.inputs[0])];
  for (int64_t b = 0; b < batch; ++b) {
    const T* x = xin.data() + b * isz;
    T* y = out.data() + b * osz;
    switch (n.op) {
      case OpKind::Input: break;
      case OpKind::Conv: conv_forward(n.as<ConvAttr>(), src.shape, n.shape, x, y); break;
      case OpKind::Dense: {
        const DenseAttr& a = n.as<DenseAttr>();
        for (int64_t o = 0; o < a.out_features; ++o) {
          const double* w = a.weight.data() + o * a.in_features;
          T acc = static_cast<T>(a.bias[static_cast<size_t>(o)]);
          for (int64_t i = 0; i < a.in_features; ++i) acc += static_cast<T>(w[i]) * x[i];
          y[o] = acc;
        }
        break;
      }
      case OpKind::ScaleShift: {
        const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
        for (int64_t i = 0; i < osz; ++i)
          y[i] =
              static_cast<T>(a.scale[static_cast<size_t>(i)]) * x[i] + static_cast<T>(a.shift[static_cast<size_t>(i)]);
        break;
      }
      case OpKind::Activation: {
        const ActAttr& a = n.as<ActAttr>();
        for (int64_t i = 0; i < osz; ++i) y[i] = activate(a, x[i]);
        break;
      }
      case OpKind::MaxPool: pool_forward(n.as<PoolAttr>(), true, src.shape, n.shape, x, y); break;
      case OpKind::AvgPool: pool_forward(n.as<PoolAttr>(), false, src.shape, n.shape, x, y); break;
      case OpKind::Add: {
        const T* x2 = vals[static_cast<size_t>(n.inputs[1])].data() + b * osz;
        for (int64_t i = 0; i < osz; ++i) y[i] = x[i] + x2[i];
        break;
      }
      case OpKind::Reshape: std::copy(x, x + osz, y); break;
      case OpKind::Transpose: transpose_forward(n.as<TransposeAttr>(), src.shape, x, y); break;
      case OpKind::Pad: pad_forward(n.as<PadAttr>(), src.shape, n.shape, x, y); break;
    }
  }
}

}  // namespace

template <class T>
std::vector<std::vector<T>> Network::forward_all(const T* x, int64_t batch) const {
  CNNCERT_CHECK(batch >= 0, "negative batch size");
  std::vector<std::vector<T>> vals(nodes_.size());
  vals[0].assign(x, x + batch * input_size());
  for (size_t i = 1; i < nodes_.size(); ++i) node_forward(nodes_[i], vals, nodes_, batch, vals[i]);
  return vals;
}

template <class T>
std::vector<T> Network::forward(const T* x, int64_t batch) const {
  CNNCERT_CHECK(batch >= 0, "negative batch size");
  // Keep a value only until its last consumer has run.
  std::vector<int> last_use(nodes_.size(), 0);
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (int p : nodes_[i].inputs) last_use[static_cast<size_t>(p)] = static_cast<int>(i);
  last_use[static_cast<size_t>(output_)] = static_cast<int>(nodes_.size());
  std::vector<std::vector<T>> vals(nodes_.size());
  vals[0].assign(x, x + batch * input_size());
  for (size_t i = 1; i < nodes_.size(); ++i) {
    node_forward(nodes_[i], vals, nodes_, batch, vals[i]);
    for (int p : nodes_[i].inputs)
      if (last_use[static_cast<size_t>(p)] == static_cast<int>(i)) std::vector<T>().swap(vals[static_cast<size_t>(p)]);
  }
  return std::move(vals[static_cast<size_t>(output_)]);
}

template std::vector<float> Network::forward<float>(const float*, int64_t) const;
template std::vector<double> Network::forward<double>(const double*, int64_t) const;
template std::vector<std::vector<float>> Network::forward_all<float>(const float*, int64_t) const;
template std::vector<std::vector<double>> Network::forward_all<double>(const double*, int64_t) const;

}  // namespace cnncert

namespace cnncert {

std::vector<double> Network::input_gradient(const double* x, const double* grad_out) const {
  const auto vals = forward_all(x, 1);
  std::vector<std::vector<double>> grad(nodes_.size());
  grad[static_cast<size_t>(output_)].assign(grad_out, grad_out + output_size());
  for (size_t k = nodes_.size(); k-- > 1;) {
    if (grad[k].empty()) continue;
    const Node& n = nodes_[k];
    const std::vector<double>& g = grad[k];
    const int src = n.inputs[0];
    const Node& in = nodes_[static_cast<size_t>(src)];
    std::vector<double> gi(static_cast<size_t>(in.size()), 0.0);
    const std::vector<double>& xin = vals[static_cast<size_t>(src)];
    switch (n.op) {
      case OpKind::Input: break;
      case OpKind::Conv: {
        const ConvAttr& a = n.as<ConvAttr>();
        const int64_t ih = in.shape[1], iw = in.shape[2], oh = n.shape[1], ow = n.shape[2];
        const int64_t cpg_out = a.out_channels / a.groups;
        const detail::Window win = a.window();
        for (int64_t o = 0; o < a.out_channels; ++o)
          for (int64_t ci = 0; ci < a.in_channels; ++ci) {
            const int64_t c = (o / cpg_out) * a.in_channels + ci;
            for (int64_t ky = 0; ky < a.kernel_h; ++ky)
              for (int64_t kx = 0; kx < a.kernel_w; ++kx) {
                const double w =
                    a.weight[static_cast<size_t>(((o * a.in_channels + ci) * a.kernel_h + ky) * a.kernel_w + kx)];
                for (int64_t r = 0; r < oh; ++r) {
                  const int64_t yy = win.in_y(r, ky);
                  if (yy < 0 || yy >= ih) continue;
                  for (int64_t q = 0; q < ow; ++q) {
                    const int64_t xx = win.in_x(q, kx);
                    if (xx < 0 || xx >= iw) continue;
                    gi[static_cast<size_t>((c * ih + yy) * iw + xx)] +=
                        w * g[static_cast<size_t>((o * oh + r) * ow + q)];
                  }
                }
              }
          }
        break;
      }
      case OpKind::Dense: {
        const DenseAttr& a = n.as<DenseAttr>();
        for (int64_t o = 0; o < a.out_features; ++o)
          for (int64_t i = 0; i < a.in_features; ++i)
            gi[static_cast<size_t>(i)] +=
                a.weight[static_cast<size_t>(o * a.in_features + i)] * g[static_cast<size_t>(o)];
        break;
      }
      case OpKind::ScaleShift: {
        const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
        for (size_t i = 0; i < gi.size(); ++i) gi[i] = a.scale[i] * g[i];
        break;
      }
      case OpKind::Activation: {
        const ActAttr& a = n.as<ActAttr>();
        for (size_t i = 0; i < gi.size(); ++i) {
          const double z = xin[i];
          double d = 0;
          switch (a.kind) {
            case ActKind::Relu: d = z > 0 ? 1 : 0; break;
            case ActKind::LeakyRelu: d = z >= 0 ? 1 : a.alpha; break;
            case ActKind::Sigmoid: {
              const double s = 1 / (1 + std::exp(-z));
              d = s * (1 - s);
              break;
            }
            case ActKind::Tanh: d = 1 - std::tanh(z) * std::tanh(z); break;
            case ActKind::Atan: d = 1 / (1 + z * z); break;
            case ActKind::Erf: d = detail::smooth_df(Smooth::Erf, z); break;
            case ActKind::Elu:
            case ActKind::Softplus:
            case ActKind::Gelu:
            case ActKind::GeluTanh:
            case ActKind::Silu: d = detail::general_df(act_traits(a.kind).general, a.alpha, z, false); break;
          }
          gi[i] = d * g[i];
        }
        break;
      }
      case OpKind::MaxPool:
      case OpKind::AvgPool: {
        const PoolAttr& a = n.as<PoolAttr>();
        const int64_t ih = in.shape[1], iw = in.shape[2], oh = n.shape[1], ow = n.shape[2];
        const detail::Window win = a.window();
        for (int64_t c = 0; c < n.shape[0]; ++c)
          for (int64_t r = 0; r < oh; ++r)
            for (int64_t q = 0; q < ow; ++q) {
              const double go = g[static_cast<size_t>((c * oh + r) * ow + q)];
              int64_t best = -1;
              std::vector<int64_t> members;
              win.for_each_input(ih, iw, r, q, [&](int64_t, int64_t, int64_t yy, int64_t xx) {
                const int64_t i = (c * ih + yy) * iw + xx;
                members.push_back(i);
                if (best < 0 || xin[static_cast<size_t>(i)] > xin[static_cast<size_t>(best)]) best = i;
              });
              if (n.op == OpKind::MaxPool) {
                if (best >= 0) gi[static_cast<size_t>(best)] += go;
              } else {
                const double div = static_cast<double>(win.avg_divisor(ih, iw, r, q, a.count_include_pad));
                for (int64_t i : members) gi[static_cast<size_t>(i)] += go / div;
              }
            }
        break;
      }
      case OpKind::Add: gi = g; break;
      case OpKind::Reshape: gi = g; break;
      case OpKind::Transpose: {
        // forward: y[k] = x[src(k)]; reuse the forward pass on index values to find src(k)
        NetworkBuilder tb;
        const int xi = tb.input(in.shape);
        const Network t = tb.build(tb.transpose(xi, n.as<TransposeAttr>().perm));
        std::vector<double> idx(static_cast<size_t>(in.size()));
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<double>(i);
        const auto src_of = t.forward(idx.data(), 1);
        for (size_t k2 = 0; k2 < src_of.size(); ++k2) gi[static_cast<size_t>(src_of[k2])] += g[k2];
        break;
      }
      case OpKind::Pad: {
        NetworkBuilder tb;
        const int xi = tb.input(in.shape);
        const PadAttr& p = n.as<PadAttr>();
        const Network t = tb.build(tb.pad(xi, p.begin, p.end));
        std::vector<double> idx(static_cast<size_t>(in.size()));
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<double>(i + 1);
        const auto dst = t.forward(idx.data(), 1);
        for (size_t k2 = 0; k2 < dst.size(); ++k2)
          if (dst[k2] > 0) gi[static_cast<size_t>(dst[k2]) - 1] += g[k2];
        break;
      }
    }
    auto add_into = [&](int node, const std::vector<double>& v) {
      auto& t = grad[static_cast<size_t>(node)];
      if (t.empty())
        t = v;
      else
        for (size_t i = 0; i < v.size(); ++i) t[i] += v[i];
    };
    add_into(src, gi);
    if (n.op == OpKind::Add) add_into(n.inputs[1], g);
  }
  return grad[0].empty() ? std::vector<double>(static_cast<size_t>(input_size()), 0.0) : grad[0];
}

Network with_input_affine(const Network& net, const std::vector<double>& scale, const std::vector<double>& shift) {
  const int64_t n = net.input_size();
  CNNCERT_CHECK(static_cast<int64_t>(scale.size()) == n && static_cast<int64_t>(shift.size()) == n,
                "with_input_affine: scale and shift need one value per input element (" << n << ")");
  CNNCERT_CHECK(all_finite(scale) && all_finite(shift), "with_input_affine: scale and shift must be finite");
  Network out;
  out.nodes_.reserve(net.nodes_.size() + 1);
  out.nodes_.push_back(net.nodes_.front());  // the input
  Node affine;
  affine.op = OpKind::ScaleShift;
  affine.name = "input_box";
  affine.onnx_op = "ScaleShift";
  affine.inputs = {0};
  affine.shape = net.nodes_.front().shape;
  affine.attr = ScaleShiftAttr{scale, shift};
  out.nodes_.push_back(std::move(affine));
  for (size_t i = 1; i < net.nodes_.size(); ++i) {
    Node copy = net.nodes_[i];
    for (int& p : copy.inputs) p = p == 0 ? 1 : p + 1;
    out.nodes_.push_back(std::move(copy));
  }
  out.output_ = net.output_ + 1;
  out.notes_ = net.notes_;
  out.source_ = net.source_;
  out.stripped_output_ = net.stripped_output_;
  return out;
}

}  // namespace cnncert
