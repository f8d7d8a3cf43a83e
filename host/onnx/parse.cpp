// Decoding of ONNX ModelProto bytes into the plain structs of onnx_model.hpp.
#include <cmath>
#include <cstring>

#include "onnx/onnx_model.hpp"
#include "onnx/protobuf.hpp"

namespace cnncert::detail {
namespace {

enum : int32_t {
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
  kBfloat16 = 16
};

double half_to_double(uint16_t h) {
  const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0)
    v = std::ldexp(mant, -24);
  else if (exp == 31)
    v = mant ? std::nan("") : INFINITY;
  else
    v = std::ldexp(mant + 1024, exp - 25);
  return sign ? -v : v;
}

double bf16_to_double(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Reads a repeated scalar field that may be packed (wire 2) or not.
template <class F>
void repeated(PbReader& r, uint32_t wire, uint32_t scalar_wire, const std::string* what, F&& read_one) {
  if (wire == 2) {
    PbReader sub(r.bytes(), what);
    while (!sub.at_end()) read_one(sub);
  } else if (wire == scalar_wire) {
    read_one(r);
  } else {
    r.fail("unexpected wire type for a repeated field");
  }
}

size_t elem_size(int32_t t) {
  switch (t) {
    case kFloat:
    case kInt32:
    case kUint32: return 4;
    case kDouble:
    case kInt64:
    case kUint64: return 8;
    case kFloat16:
    case kBfloat16:
    case kInt16:
    case kUint16: return 2;
    case kUint8:
    case kInt8:
    case kBool: return 1;
    default: return 0;
  }
}

double raw_elem(const char* p, int32_t t) {
  switch (t) {
    case kFloat: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case kDouble: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case kInt64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case kUint64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case kInt32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case kUint32: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case kInt16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case kUint16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case kFloat16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return half_to_double(v);
    }
    case kBfloat16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return bf16_to_double(v);
    }
    case kInt8: return static_cast<int8_t>(*p);
    case kUint8:
    case kBool: return static_cast<uint8_t>(*p);
    default: return 0;
  }
}

OnnxTensor parse_tensor(std::string_view data, const std::string* what) {
  PbReader r(data, what);
  OnnxTensor t;
  std::string_view raw;
  bool has_raw = false, external = false;
  std::vector<double> typed;  // from float_data/int32_data/int64_data/double_data/uint64_data
  std::vector<uint64_t> int32_raw;
  uint32_t field, wire;
  while (r.next(field, wire)) {
    switch (field) {
      case 1:
        repeated(r, wire, 0, what, [&](PbReader& s) { t.dims.push_back(static_cast<int64_t>(s.varint())); });
        break;
      case 2: t.data_type = static_cast<int32_t>(r.varint()); break;
      case 4: repeated(r, wire, 5, what, [&](PbReader& s) { typed.push_back(s.f32()); }); break;
      case 5: repeated(r, wire, 0, what, [&](PbReader& s) { int32_raw.push_back(s.varint()); }); break;
      case 7:
        repeated(r, wire, 0, what,
                 [&](PbReader& s) { typed.push_back(static_cast<double>(static_cast<int64_t>(s.varint()))); });
        break;
      case 8: t.name = std::string(r.bytes()); break;
      case 9:
        raw = r.bytes();
        has_raw = true;
        break;
      case 10: repeated(r, wire, 1, what, [&](PbReader& s) { typed.push_back(s.f64()); }); break;
      case 11:
        repeated(r, wire, 0, what, [&](PbReader& s) { typed.push_back(static_cast<double>(s.varint())); });
        break;
      case 14: external = r.varint() == 1; break;
      default: r.skip(wire);
    }
  }
  if (external)
    throw InvalidArgument(*what + ": tensor '" + t.name +
                          "' stores its data in an external file, which is not supported");
  for (int64_t d : t.dims)
    if (d < 0) r.fail("negative tensor dimension in '" + t.name + "'");
  uint64_t count = 1;
  for (int64_t d : t.dims) {
    if (d != 0 && count > (uint64_t(1) << 40) / static_cast<uint64_t>(d))
      r.fail("tensor '" + t.name + "' is too large");
    count *= static_cast<uint64_t>(d);
  }
  if (t.data_type == kString) {
    t.values.clear();
    return t;  // string tensors carry no numbers; only their presence matters
  }
  if (has_raw) {
    const size_t es = elem_size(t.data_type);
    if (es == 0)
      throw InvalidArgument(*what + ": tensor '" + t.name + "' has unsupported element type " +
                            std::to_string(t.data_type));
    if (raw.size() != count * es)
      r.fail("tensor '" + t.name + "' has " + std::to_string(raw.size()) + " bytes of data, expected " +
             std::to_string(count * es));
    t.values.resize(count);
    for (uint64_t i = 0; i < count; ++i) t.values[i] = raw_elem(raw.data() + i * es, t.data_type);
  } else if (!int32_raw.empty()) {
    // int32_data also carries int8/uint8/int16/uint16/bool and the bits of float16/bfloat16.
    t.values.resize(int32_raw.size());
    for (size_t i = 0; i < int32_raw.size(); ++i) {
      const auto bits = static_cast<uint32_t>(int32_raw[i]);
      if (t.data_type == kFloat16)
        t.values[i] = half_to_double(static_cast<uint16_t>(bits));
      else if (t.data_type == kBfloat16)
        t.values[i] = bf16_to_double(static_cast<uint16_t>(bits));
      else
        t.values[i] = static_cast<double>(static_cast<int32_t>(bits));
    }
  } else {
    t.values = std::move(typed);
  }
  if (t.values.size() != count)
    r.fail("tensor '" + t.name + "' has " + std::to_string(t.values.size()) + " values, its shape needs " +
           std::to_string(count));
  return t;
}

OnnxAttribute parse_attribute(std::string_view data, const std::string* what) {
  PbReader r(data, what);
  OnnxAttribute a;
  uint32_t field, wire;
  while (r.next(field, wire)) {
    switch (field) {
      case 1: a.name = std::string(r.bytes()); break;
      case 2: a.f = r.f32(); break;
      case 3: a.i = static_cast<int64_t>(r.varint()); break;
      case 4: a.s = std::string(r.bytes()); break;
      case 5:
        a.t = parse_tensor(r.bytes(), what);
        a.has_t = true;
        break;
      case 7: repeated(r, wire, 5, what, [&](PbReader& s) { a.floats.push_back(s.f32()); }); break;
      case 8:
        repeated(r, wire, 0, what, [&](PbReader& s) { a.ints.push_back(static_cast<int64_t>(s.varint())); });
        break;
      case 20: a.type = static_cast<int32_t>(r.varint()); break;
      default: r.skip(wire);
    }
  }
  return a;
}

OnnxNode parse_node(std::string_view data, const std::string* what) {
  PbReader r(data, what);
  OnnxNode n;
  uint32_t field, wire;
  while (r.next(field, wire)) {
    switch (field) {
      case 1: n.inputs.emplace_back(r.bytes()); break;
      case 2: n.outputs.emplace_back(r.bytes()); break;
      case 3: n.name = std::string(r.bytes()); break;
      case 4: n.op_type = std::string(r.bytes()); break;
      case 5: n.attributes.push_back(parse_attribute(r.bytes(), what)); break;
      case 7: n.domain = std::string(r.bytes()); break;
      default: r.skip(wire);
    }
  }
  return n;
}

OnnxValueInfo parse_value_info(std::string_view data, const std::string* what) {
  PbReader r(data, what);
  OnnxValueInfo v;
  uint32_t field, wire;
  while (r.next(field, wire)) {
    if (field == 1) {
      v.name = std::string(r.bytes());
    } else if (field == 2) {  // TypeProto
      PbReader type(r.bytes(), what);
      while (type.next(field, wire)) {
        if (field != 1) {
          type.skip(wire);
          continue;
        }  // tensor_type
        PbReader tt(type.bytes(), what);
        while (tt.next(field, wire)) {
          if (field == 1) {
            v.elem_type = static_cast<int32_t>(tt.varint());
          } else if (field == 2) {  // TensorShapeProto
            v.has_shape = true;
            PbReader shape(tt.bytes(), what);
            while (shape.next(field, wire)) {
              if (field != 1) {
                shape.skip(wire);
                continue;
              }
              PbReader dim(shape.bytes(), what);
              int64_t value = -1;
              while (dim.next(field, wire)) {
                if (field == 1)
                  value = static_cast<int64_t>(dim.varint());
                else
                  dim.skip(wire);
              }
              v.dims.push_back(value > 0 ? value : -1);
            }
          } else {
            tt.skip(wire);
          }
        }
      }
    } else {
      r.skip(wire);
    }
  }
  return v;
}

OnnxGraph parse_graph(std::string_view data, const std::string* what) {
  PbReader r(data, what);
  OnnxGraph g;
  uint32_t field, wire;
  while (r.next(field, wire)) {
    switch (field) {
      case 1: g.nodes.push_back(parse_node(r.bytes(), what)); break;
      case 5: g.initializers.push_back(parse_tensor(r.bytes(), what)); break;
      case 11: g.inputs.push_back(parse_value_info(r.bytes(), what)); break;
      case 12: g.outputs.push_back(parse_value_info(r.bytes(), what)); break;
      case 15: throw InvalidArgument(*what + ": sparse initializers are not supported");
      default: r.skip(wire);
    }
  }
  return g;
}

}  // namespace

OnnxModel parse_onnx_model(const std::string& bytes, const std::string& what) {
  PbReader r(bytes, &what);
  OnnxModel m;
  uint32_t field, wire;
  while (r.next(field, wire)) {
    if (field == 1 && wire == 0) {
      m.ir_version = static_cast<int64_t>(r.varint());
    } else if (field == 7 && wire == 2) {
      m.graph = parse_graph(r.bytes(), &what);
      m.has_graph = true;
    } else if (field == 8 && wire == 2) {
      PbReader op(r.bytes(), &what);
      std::string domain;
      int64_t version = 0;
      while (op.next(field, wire)) {
        if (field == 1)
          domain = std::string(op.bytes());
        else if (field == 2)
          version = static_cast<int64_t>(op.varint());
        else
          op.skip(wire);
      }
      if (domain.empty() || domain == "ai.onnx") m.opset = version;
    } else {
      r.skip(wire);
    }
  }
  if (!m.has_graph || m.ir_version <= 0)
    throw InvalidArgument(what + ": not an ONNX model (no graph or IR version found)");
  return m;
}

}  // namespace cnncert::detail
