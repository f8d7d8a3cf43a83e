#pragma once
// Minimal, bounds-checked reader of the protobuf wire format (enough for ONNX models). Any
// malformed input throws InvalidArgument; nothing is read past the end of the buffer.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "cnncert/error.hpp"

namespace cnncert::detail {

class PbReader {
 public:
  PbReader(std::string_view data, const std::string* what)
      : p_(data.data()), end_(data.data() + data.size()), what_(what) {}

  bool at_end() const { return p_ >= end_; }

  /// Reads the next field key; returns false at the end of the message.
  bool next(uint32_t& field, uint32_t& wire) {
    if (p_ >= end_) return false;
    const uint64_t key = varint();
    field = static_cast<uint32_t>(key >> 3);
    wire = static_cast<uint32_t>(key & 7);
    if (field == 0) fail("field number 0");
    return true;
  }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) fail("truncated varint");
      const uint8_t b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint too long");
  }

  uint32_t fixed32() {
    if (end_ - p_ < 4) fail("truncated fixed32");
    uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }

  uint64_t fixed64() {
    if (end_ - p_ < 8) fail("truncated fixed64");
    uint64_t v;
    std::memcpy(&v, p_, 8);
    p_ += 8;
    return v;
  }

  float f32() {
    const uint32_t u = fixed32();
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  double f64() {
    const uint64_t u = fixed64();
    double d;
    std::memcpy(&d, &u, 8);
    return d;
  }

  /// A length-delimited field (string, bytes, sub-message, packed repeated).
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) fail("length-delimited field runs past the end");
    std::string_view s(p_, static_cast<size_t>(n));
    p_ += n;
    return s;
  }

  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: fixed64(); break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail("unsupported wire type " + std::to_string(wire));
    }
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw InvalidArgument(*what_ + ": not a valid ONNX model (corrupt or truncated protobuf: " + why + ")");
  }

 private:
  const char* p_;
  const char* end_;
  const std::string* what_;
};

/// Minimal protobuf encoder (the ONNX writer and the tests' model builder use it).
class PbWriter {
 public:
  PbWriter& varint(uint32_t field, uint64_t v) {
    key(field, 0);
    raw(v);
    return *this;
  }
  PbWriter& f32(uint32_t field, float v) {
    key(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    buf_.append(b, 4);
    return *this;
  }
  PbWriter& bytes(uint32_t field, const std::string& s) {
    key(field, 2);
    raw(s.size());
    buf_ += s;
    return *this;
  }
  const std::string& str() const { return buf_; }

 private:
  void key(uint32_t field, uint32_t wire) { raw((uint64_t(field) << 3) | wire); }
  void raw(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  std::string buf_;
};

}  // namespace cnncert::detail
