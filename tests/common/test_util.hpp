#pragma once
// Helpers shared by the CPU tests: data locations and a small ONNX writer for test models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/npy.hpp"
#include "onnx/protobuf.hpp"

namespace cnncert::test {

/// The project's source directory.
/// The source tree (CNNCERT_SOURCE_DIR overrides the configured one, for test binaries built on one
/// machine and run on another: tools/gpu-run.sh).
inline std::filesystem::path source_dir() {
  if (const char* env = std::getenv("CNNCERT_SOURCE_DIR")) return env;
  return CNNCERT_SOURCE_DIR;
}

/// ../shared/data (or CNNCERT_SHARED_DATA), empty when absent.
inline std::filesystem::path shared_data() {
  if (const char* env = std::getenv("CNNCERT_SHARED_DATA"))  // (tools/gpu-run.sh sets it always)
    return std::filesystem::exists(std::filesystem::path(env) / "nets") ? std::filesystem::path(env)
                                                                        : std::filesystem::path{};
  std::filesystem::path p = CNNCERT_SHARED_DATA_DIR;
  return std::filesystem::exists(p / "nets") ? p : std::filesystem::path{};
}

#define CNNCERT_REQUIRE_SHARED_DATA()                                                  \
  do {                                                                                 \
    if (::cnncert::test::shared_data().empty())                                        \
      GTEST_SKIP() << "../shared/data is absent: skipping the tests on real networks"; \
  } while (0)

/// Rows [first, first + count) (clipped to what is stored) of the reference inputs of model
/// `stem` in tests/fixtures/reference, concatenated.
inline std::vector<double> fixture_inputs(const std::string& stem, int64_t first, int64_t count) {
  const auto in = detail::read_npy((source_dir() / "tests/fixtures/reference" / (stem + ".input.npy")).string());
  const int64_t n = static_cast<int64_t>(in.data.size()) / in.shape[0];
  const int64_t end = std::min(first + count, in.shape[0]);
  return std::vector<double>(in.data.begin() + first * n, in.data.begin() + end * n);
}

/// The first `count` labels of the reference images of model `stem` (tests/fixtures/reference).
inline std::vector<int64_t> fixture_labels(const std::string& stem, int64_t count) {
  const auto lab = detail::read_npy((source_dir() / "tests/fixtures/reference" / (stem + ".labels.npy")).string());
  return std::vector<int64_t>(lab.data.begin(),
                              lab.data.begin() + std::min<int64_t>(count, static_cast<int64_t>(lab.data.size())));
}

/// A fresh scratch directory for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("cnncert_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f << bytes;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

/// Protobuf writer for ONNX test models built in code.
using Pb = detail::PbWriter;

/// TensorProto with float data (raw_data), or int64 data when `int64` is set.
inline std::string onnx_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<double>& v,
                               bool int64 = false) {
  Pb t;
  for (int64_t d : dims) t.varint(1, static_cast<uint64_t>(d));
  t.varint(2, int64 ? 7 : 1);
  t.bytes(8, name);
  std::string raw;
  for (double x : v) {
    if (int64) {
      const int64_t i = static_cast<int64_t>(x);
      raw.append(reinterpret_cast<const char*>(&i), 8);
    } else {
      const float f = static_cast<float>(x);
      raw.append(reinterpret_cast<const char*>(&f), 4);
    }
  }
  t.bytes(9, raw);
  return t.str();
}

inline std::string attr_int(const std::string& name, int64_t v) {
  return Pb().bytes(1, name).varint(3, static_cast<uint64_t>(v)).varint(20, 2).str();
}
inline std::string attr_float(const std::string& name, float v) {
  return Pb().bytes(1, name).f32(2, v).varint(20, 1).str();
}
inline std::string attr_ints(const std::string& name, const std::vector<int64_t>& v) {
  Pb a;
  a.bytes(1, name);
  for (int64_t x : v) a.varint(8, static_cast<uint64_t>(x));
  a.varint(20, 7);
  return a.str();
}
inline std::string attr_string(const std::string& name, const std::string& v) {
  return Pb().bytes(1, name).bytes(4, v).varint(20, 3).str();
}
inline std::string attr_tensor(const std::string& name, const std::string& tensor) {
  return Pb().bytes(1, name).bytes(5, tensor).varint(20, 4).str();
}

inline std::string onnx_node(const std::string& op, const std::vector<std::string>& in,
                             const std::vector<std::string>& out, const std::vector<std::string>& attrs = {},
                             const std::string& name = "") {
  Pb n;
  for (const auto& s : in) n.bytes(1, s);
  for (const auto& s : out) n.bytes(2, s);
  n.bytes(3, name.empty() ? out.at(0) + "_node" : name);
  n.bytes(4, op);
  for (const auto& a : attrs) n.bytes(5, a);
  return n.str();
}

/// ValueInfoProto of a float tensor; a dimension of -1 is written as the symbol "N".
inline std::string onnx_value(const std::string& name, const std::vector<int64_t>& dims) {
  Pb shape;
  for (int64_t d : dims)
    shape.bytes(1, d < 0 ? Pb().bytes(2, "N").str() : Pb().varint(1, static_cast<uint64_t>(d)).str());
  Pb tensor;
  tensor.varint(1, 1).bytes(2, shape.str());
  return Pb().bytes(1, name).bytes(2, Pb().bytes(1, tensor.str()).str()).str();
}

/// A whole ModelProto (opset 13 by default).
inline std::string onnx_model(const std::vector<std::string>& nodes, const std::vector<std::string>& initializers,
                              const std::string& input, const std::string& output, int64_t opset = 13) {
  Pb g;
  for (const auto& n : nodes) g.bytes(1, n);
  g.bytes(2, "test");
  for (const auto& t : initializers) g.bytes(5, t);
  g.bytes(11, input);
  g.bytes(12, output);
  Pb m;
  m.varint(1, 7);
  m.bytes(8, Pb().bytes(1, "").varint(2, static_cast<uint64_t>(opset)).str());
  m.bytes(7, g.str());
  return m.str();
}

}  // namespace cnncert::test
