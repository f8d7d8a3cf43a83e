#pragma once
// The subset of the ONNX protobuf schema cnncert reads (onnx.proto3 field numbers).
#include <cstdint>
#include <string>
#include <vector>

namespace cnncert::detail {

/// A decoded TensorProto; every element type is converted to double.
struct OnnxTensor {
  std::string name;
  int32_t data_type = 0;
  std::vector<int64_t> dims;
  std::vector<double> values;
};

struct OnnxAttribute {
  std::string name;
  int32_t type = 0;  // AttributeProto.AttributeType
  double f = 0;
  int64_t i = 0;
  std::string s;
  bool has_t = false;
  OnnxTensor t;
  std::vector<double> floats;
  std::vector<int64_t> ints;
};

struct OnnxNode {
  std::string name, op_type, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<OnnxAttribute> attributes;
  const OnnxAttribute* find(const std::string& attr) const {
    for (const auto& a : attributes)
      if (a.name == attr) return &a;
    return nullptr;
  }
};

struct OnnxValueInfo {
  std::string name;
  int32_t elem_type = 0;
  bool has_shape = false;
  std::vector<int64_t> dims;  // -1 = symbolic / unknown
};

struct OnnxGraph {
  std::vector<OnnxNode> nodes;
  std::vector<OnnxTensor> initializers;
  std::vector<OnnxValueInfo> inputs, outputs;
};

struct OnnxModel {
  int64_t ir_version = 0;
  int64_t opset = 0;  // default ("" / "ai.onnx") domain
  OnnxGraph graph;
  bool has_graph = false;
};

/// Decodes a serialized ModelProto; `what` names the file in error messages.
OnnxModel parse_onnx_model(const std::string& bytes, const std::string& what);

}  // namespace cnncert::detail
