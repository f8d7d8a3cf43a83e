// Network → ONNX (opset 13; 20 when the network has a Gelu) writer, so rewritten networks (e.g. the dense Fast-Lin
// baseline) can be saved and used by other tools.
#include <cstring>
#include <fstream>

#include "cnncert/error.hpp"
#include "cnncert/onnx.hpp"
#include "onnx/protobuf.hpp"

namespace cnncert {
namespace {

using Pb = detail::PbWriter;

std::string tensor_f32(const std::string& name, const std::vector<int64_t>& dims, const std::vector<double>& v) {
  Pb t;
  for (int64_t d : dims) t.varint(1, static_cast<uint64_t>(d));
  t.varint(2, 1);
  t.bytes(8, name);
  std::string raw(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    std::memcpy(raw.data() + i * 4, &f, 4);
  }
  t.bytes(9, raw);
  return t.str();
}

std::string tensor_i64(const std::string& name, const std::vector<int64_t>& v) {
  Pb t;
  t.varint(1, v.size());
  t.varint(2, 7);
  t.bytes(8, name);
  std::string raw(v.size() * 8, '\0');
  std::memcpy(raw.data(), v.data(), v.size() * 8);
  t.bytes(9, raw);
  return t.str();
}

std::string attr_i(const std::string& n, int64_t v) {
  return Pb().bytes(1, n).varint(3, static_cast<uint64_t>(v)).varint(20, 2).str();
}
std::string attr_str(const std::string& n, const std::string& v) {
  return Pb().bytes(1, n).bytes(4, v).varint(20, 3).str();
}
std::string attr_f(const std::string& n, double v) {
  return Pb().bytes(1, n).f32(2, static_cast<float>(v)).varint(20, 1).str();
}
std::string attr_is(const std::string& n, const std::vector<int64_t>& v) {
  Pb a;
  a.bytes(1, n);
  for (int64_t x : v) a.varint(8, static_cast<uint64_t>(x));
  a.varint(20, 7);
  return a.str();
}

std::string node(const std::string& op, const std::vector<std::string>& in, const std::string& out,
                 const std::string& name, const std::vector<std::string>& attrs = {}) {
  Pb n;
  for (const auto& s : in) n.bytes(1, s);
  n.bytes(2, out);
  n.bytes(3, name);
  n.bytes(4, op);
  for (const auto& a : attrs) n.bytes(5, a);
  return n.str();
}

std::string value_info(const std::string& name, const Shape& per_sample) {
  Pb shape;
  shape.bytes(1, Pb().bytes(2, "N").str());
  for (int64_t d : per_sample) shape.bytes(1, Pb().varint(1, static_cast<uint64_t>(d)).str());
  Pb tensor;
  tensor.varint(1, 1).bytes(2, shape.str());
  return Pb().bytes(1, name).bytes(2, Pb().bytes(1, tensor.str()).str()).str();
}

}  // namespace

std::string export_onnx_bytes(const Network& net) {
  std::vector<std::string> nodes, inits;
  std::vector<std::string> names(net.nodes().size());
  uint64_t opset = 13;  // 20 when a Gelu needs it
  for (size_t k = 0; k < net.nodes().size(); ++k) {
    const Node& n = net.nodes()[k];
    const std::string id = "n" + std::to_string(k);
    const std::string out = k == static_cast<size_t>(net.output()) ? "logits" : id;
    names[k] = k == 0 ? "input" : out;
    if (k == 0) continue;
    const std::string x = names[static_cast<size_t>(n.inputs[0])];
    const Shape& in_shape = net.node(n.inputs[0]).shape;
    switch (n.op) {
      case OpKind::Input: break;
      case OpKind::Conv: {
        const ConvAttr& a = n.as<ConvAttr>();
        inits.push_back(tensor_f32(id + "_W", {a.out_channels, a.in_channels, a.kernel_h, a.kernel_w}, a.weight));
        inits.push_back(tensor_f32(id + "_B", {a.out_channels}, a.bias));
        nodes.push_back(
            node("Conv", {x, id + "_W", id + "_B"}, out, id,
                 {attr_is("kernel_shape", {a.kernel_h, a.kernel_w}), attr_is("strides", {a.stride_h, a.stride_w}),
                  attr_is("pads", {a.pad_top, a.pad_left, a.pad_bottom, a.pad_right}),
                  attr_is("dilations", {a.dilation_h, a.dilation_w}), attr_i("group", a.groups)}));
        break;
      }
      case OpKind::Dense: {
        const DenseAttr& a = n.as<DenseAttr>();
        std::string src = x;
        if (in_shape.size() != 1) {
          nodes.push_back(node("Flatten", {x}, id + "_flat", id + "_flatten", {attr_i("axis", 1)}));
          src = id + "_flat";
        }
        inits.push_back(tensor_f32(id + "_W", {a.out_features, a.in_features}, a.weight));
        inits.push_back(tensor_f32(id + "_B", {a.out_features}, a.bias));
        nodes.push_back(node("Gemm", {src, id + "_W", id + "_B"}, out, id, {attr_i("transB", 1)}));
        break;
      }
      case OpKind::ScaleShift: {
        const ScaleShiftAttr& a = n.as<ScaleShiftAttr>();
        Shape dims{1};
        dims.insert(dims.end(), n.shape.begin(), n.shape.end());
        inits.push_back(tensor_f32(id + "_scale", dims, a.scale));
        inits.push_back(tensor_f32(id + "_shift", dims, a.shift));
        nodes.push_back(node("Mul", {x, id + "_scale"}, id + "_mul", id + "_m"));
        nodes.push_back(node("Add", {id + "_mul", id + "_shift"}, out, id));
        break;
      }
      case OpKind::Activation: {
        const ActAttr& a = n.as<ActAttr>();
        std::vector<std::string> attrs;
        if (act_traits(a.kind).uses_alpha) attrs.push_back(attr_f("alpha", a.alpha));
        if (a.kind == ActKind::Silu) {  // x·sigmoid(x), as PyTorch writes it (the importer reads it back)
          nodes.push_back(node("Sigmoid", {x}, id + "_sigmoid", id + "_s"));
          nodes.push_back(node("Mul", {x, id + "_sigmoid"}, out, id));
        } else if (a.kind == ActKind::Gelu || a.kind == ActKind::GeluTanh) {  // opset 20's Gelu
          attrs.push_back(attr_str("approximate", a.kind == ActKind::Gelu ? "none" : "tanh"));
          nodes.push_back(node("Gelu", {x}, out, id, attrs));
          opset = 20;
        } else {
          nodes.push_back(node(act_name(a.kind), {x}, out, id, attrs));
        }
        break;
      }
      case OpKind::MaxPool:
      case OpKind::AvgPool: {
        const PoolAttr& a = n.as<PoolAttr>();
        std::vector<std::string> attrs = {attr_is("kernel_shape", {a.kernel_h, a.kernel_w}),
                                          attr_is("strides", {a.stride_h, a.stride_w}),
                                          attr_is("pads", {a.pad_top, a.pad_left, a.pad_bottom, a.pad_right}),
                                          attr_i("ceil_mode", a.ceil_mode ? 1 : 0)};
        if (n.op == OpKind::MaxPool) {
          attrs.push_back(attr_is("dilations", {a.dilation_h, a.dilation_w}));
        } else {
          CNNCERT_CHECK(a.dilation_h == 1 && a.dilation_w == 1,
                        "node '" << n.name << "': dilated average pooling cannot be written at opset 13");
          attrs.push_back(attr_i("count_include_pad", a.count_include_pad ? 1 : 0));
        }
        nodes.push_back(node(n.op == OpKind::MaxPool ? "MaxPool" : "AveragePool", {x}, out, id, attrs));
        break;
      }
      case OpKind::Add: nodes.push_back(node("Add", {x, names[static_cast<size_t>(n.inputs[1])]}, out, id)); break;
      case OpKind::Reshape: {
        std::vector<int64_t> target{-1};
        target.insert(target.end(), n.shape.begin(), n.shape.end());
        inits.push_back(tensor_i64(id + "_shape", target));
        nodes.push_back(node("Reshape", {x, id + "_shape"}, out, id));
        break;
      }
      case OpKind::Transpose: {
        std::vector<int64_t> perm{0};
        for (int64_t p : n.as<TransposeAttr>().perm) perm.push_back(p + 1);
        nodes.push_back(node("Transpose", {x}, out, id, {attr_is("perm", perm)}));
        break;
      }
      case OpKind::Pad: {
        const PadAttr& a = n.as<PadAttr>();
        std::vector<int64_t> pads{0};
        pads.insert(pads.end(), a.begin.begin(), a.begin.end());
        pads.push_back(0);
        pads.insert(pads.end(), a.end.begin(), a.end.end());
        inits.push_back(tensor_i64(id + "_pads", pads));
        nodes.push_back(node("Pad", {x, id + "_pads"}, out, id));
        break;
      }
    }
  }
  Pb g;
  for (const auto& n : nodes) g.bytes(1, n);
  g.bytes(2, "cnncert");
  for (const auto& t : inits) g.bytes(5, t);
  g.bytes(11, value_info("input", net.input_shape()));
  g.bytes(12, value_info("logits", net.output_shape()));
  Pb m;
  m.varint(1, 7);
  m.bytes(2, "cnncert");
  m.bytes(8, Pb().bytes(1, "").varint(2, opset).str());
  m.bytes(7, g.str());
  CNNCERT_CHECK(m.str().size() <= static_cast<size_t>(kOnnxMaxBytes),
                "the model is " << (m.str().size() >> 20) << " MiB as ONNX: more than the 2 GiB an ONNX file can hold");
  return m.str();
}

void export_onnx(const Network& net, const std::string& path) {
  const std::string bytes = export_onnx_bytes(net);
  std::ofstream f(path, std::ios::binary);
  CNNCERT_CHECK(f.good(), path << ": cannot write the model file");
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  CNNCERT_CHECK(f.good(), path << ": error while writing the model file");
}

}  // namespace cnncert
