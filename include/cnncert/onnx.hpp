#pragma once
/// \file onnx.hpp
/// ONNX import.

#include <cstdint>
#include <string>

#include "cnncert/network.hpp"

namespace cnncert {

/// Imports an ONNX model file into a Network: shapes inferred, constant subgraphs folded,
/// BatchNorm folded into a preceding Conv/Dense, a trailing Softmax stripped (with a note).
/// Throws InvalidArgument for a missing/unreadable/malformed file and UnsupportedModel naming the
/// node and op for anything that cannot be represented.
Network import_onnx(const std::string& path);

/// Same, from the bytes of a model in memory; `name` is used in messages.
Network import_onnx_bytes(const std::string& bytes, const std::string& name);

/// The largest ONNX file: one protobuf message, whose size protobuf holds in 31 bits.
inline constexpr int64_t kOnnxMaxBytes = (int64_t{1} << 31) - 1;

/// Serializes a network as an ONNX model (opset 13; weights as float32, so a re-imported model
/// equals this one up to float32 rounding of the weights). A model larger than kOnnxMaxBytes is
/// an InvalidArgument.
std::string export_onnx_bytes(const Network& net);
/// Writes export_onnx_bytes(net) to `path` (throws InvalidArgument when it cannot be written).
void export_onnx(const Network& net, const std::string& path);

}  // namespace cnncert
