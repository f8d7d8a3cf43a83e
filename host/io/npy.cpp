#include "io/npy.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string_view>

#include "cnncert/error.hpp"

namespace cnncert::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic{"\x93NUMPY", 6};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw InvalidArgument(path + ": " + what, source_location(__FILE__, __LINE__));
}

// Header text quoted in a message: one line, bounded length.
std::string printable(std::string_view s, size_t max_len = 60) {
  std::string out;
  for (char c : s.substr(0, max_len)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max_len) out += "...";
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

std::string read_whole_file(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail(path, "no such file");
  if (fs::is_directory(st)) fail(path, "is a directory, not a .npy file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading");
  std::string bytes;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) bytes.append(buf, static_cast<size_t>(in.gcount()));
  if (in.bad()) fail(path, "read error");
  return bytes;
}

// A value of the header's Python dict literal. Anything other than a string, a bool, None or a
// tuple of non-negative integers is kept as Other (only its presence matters).
struct PyValue {
  enum class Kind { String, Bool, None, Tuple, Other } kind = Kind::Other;
  std::string str;
  bool flag = false;
  std::vector<int64_t> ints;
};

// Parses the header dict, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

  std::map<std::string, PyValue> parse_dict() {
    std::map<std::string, PyValue> dict;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      if (peek() != '\'' && peek() != '"') error("expected a quoted key");
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (dict.count(key)) error("duplicate key '" + printable(key) + "'");
      dict[key] = parse_value();
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() == '}') {
        ++pos_;
        break;
      } else {
        error("expected ',' or '}'");
      }
    }
    skip_ws();
    if (pos_ != s_.size()) error("unexpected text after the dict");
    return dict;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= s_.size(); }
  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  [[noreturn]] void error(const std::string& what) const {
    fail(path_, "malformed .npy header (" + what + " at offset " + std::to_string(pos_) + "): " + printable(s_));
  }
  void expect(char c) {
    if (peek() != c || at_end()) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool consume_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  std::string parse_string() {
    const char quote = s_[pos_++];
    std::string out;
    for (;;) {
      if (at_end()) error("unterminated string");
      char c = s_[pos_++];
      if (c == quote) return out;
      if (c == '\\') {
        if (at_end()) error("unterminated string");
        c = s_[pos_++];
      }
      out += c;
    }
  }

  PyValue parse_value() {
    PyValue v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = PyValue::Kind::String;
      v.str = parse_string();
    } else if (consume_word("True")) {
      v.kind = PyValue::Kind::Bool;
      v.flag = true;
    } else if (consume_word("False")) {
      v.kind = PyValue::Kind::Bool;
      v.flag = false;
    } else if (consume_word("None")) {
      v.kind = PyValue::Kind::None;
    } else if (c == '(' && try_parse_int_tuple(v.ints)) {
      v.kind = PyValue::Kind::Tuple;
    } else {
      skip_other();
    }
    return v;
  }

  // Parses "(d0, d1, ...)" of non-negative integers; on anything else rewinds and returns false.
  bool try_parse_int_tuple(std::vector<int64_t>& out) {
    const size_t start = pos_;
    ++pos_;  // '('
    for (;;) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        return true;
      }
      if (!(peek() >= '0' && peek() <= '9')) {
        pos_ = start;
        return false;
      }
      int64_t d = 0;
      while (peek() >= '0' && peek() <= '9') {
        const int digit = peek() - '0';
        if (d > (std::numeric_limits<int64_t>::max() - digit) / 10) error("dimension too large");
        d = d * 10 + digit;
        ++pos_;
      }
      if (peek() == 'L' || peek() == 'l') ++pos_;  // Python 2 long suffix
      out.push_back(d);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        pos_ = start;
        out.clear();
        return false;
      }
    }
  }

  // Skips a value we do not interpret (a list, a number, a nested dict) up to the next top-level
  // ',' or '}'.
  void skip_other() {
    int depth = 0;
    const size_t start = pos_;
    while (!at_end()) {
      const char c = peek();
      if (c == '\'' || c == '"') {
        parse_string();
        continue;
      }
      if (depth == 0 && (c == ',' || c == '}')) break;
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') {
        if (--depth < 0) error("unbalanced brackets");
      }
      ++pos_;
    }
    if (at_end() || pos_ == start) error("bad value");
  }

  std::string_view s_;
  const std::string& path_;
  size_t pos_ = 0;
};

enum class Kind { Bool, Int, UInt, Float };
struct DType {
  Kind kind;
  int size;
};

const char* kSupportedDtypes = "supported: little-endian b1, i1, u1, i2, u2, i4, u4, i8, u8, f2, f4, f8";

DType parse_dtype(const std::string& path, const std::string& descr) {
  auto unsupported = [&](const std::string& why) {
    fail(path, "unsupported dtype '" + printable(descr) + "'" + why + " (" + kSupportedDtypes + ")");
  };
  if (descr.size() < 3) unsupported("");
  const char order = descr[0];
  Kind kind = Kind::Float;  // every other case below throws
  switch (descr[1]) {
    case 'b': kind = Kind::Bool; break;
    case 'i': kind = Kind::Int; break;
    case 'u': kind = Kind::UInt; break;
    case 'f': kind = Kind::Float; break;
    default: unsupported("");
  }
  int size = 0;
  const char* first = descr.data() + 2;
  const char* last = descr.data() + descr.size();
  auto [ptr, ec] = std::from_chars(first, last, size);
  if (ec != std::errc() || ptr != last) unsupported("");
  const bool ok_size = kind == Kind::Bool    ? size == 1
                       : kind == Kind::Float ? (size == 2 || size == 4 || size == 8)
                                             : (size == 1 || size == 2 || size == 4 || size == 8);
  if (!ok_size) unsupported("");
  const bool native_le = std::endian::native == std::endian::little;
  const bool ok_order = order == '<' || order == '|' || (order == '=' && native_le) || (order == '>' && size == 1);
  if (!ok_order) {
    unsupported(order == '>' || order == '='
                    ? std::string(": big-endian; convert with arr.astype('<") + descr[1] + std::to_string(size) + "')"
                    : std::string(""));
  }
  return {kind, size};
}

double half_to_double(uint16_t h) {
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  double v;
  if (e == 0) {
    v = std::ldexp(static_cast<double>(m), -24);
  } else if (e == 31) {
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else {
    v = std::ldexp(static_cast<double>(m + 1024), e - 25);
  }
  return (h & 0x8000) ? -v : v;
}

uint64_t load_le(const unsigned char* p, int size) {
  uint64_t u = 0;
  for (int i = size - 1; i >= 0; --i) u = (u << 8) | p[i];
  return u;
}

double decode(const unsigned char* p, DType t) {
  const uint64_t u = load_le(p, t.size);
  switch (t.kind) {
    case Kind::Bool: return u != 0 ? 1.0 : 0.0;
    case Kind::UInt: return static_cast<double>(u);
    case Kind::Int: {
      // Sign-extend from t.size bytes.
      const int shift = 64 - 8 * t.size;
      return static_cast<double>(static_cast<int64_t>(u << shift) >> shift);
    }
    case Kind::Float:
      if (t.size == 2) return half_to_double(static_cast<uint16_t>(u));
      if (t.size == 4) return static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(u)));
      return std::bit_cast<double>(u);
  }
  return 0.0;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  const std::string bytes = read_whole_file(path);
  const size_t size = bytes.size();
  if (size < kMagic.size() || std::string_view(bytes).substr(0, kMagic.size()) != kMagic)
    fail(path, "not a .npy file (bad magic)");
  if (size < 10) fail(path, "truncated: the file ends inside the .npy header");
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t header_start = 0;
  uint64_t header_len = 0;
  if (major == 1) {
    header_start = 10;
    header_len = load_le(u + 8, 2);
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(path, "truncated: the file ends inside the .npy header");
    header_start = 12;
    header_len = load_le(u + 8, 4);
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " (supported: 1.0, 2.0, 3.0)");
  }
  if (header_len > size - header_start) {
    fail(path, "truncated: header length " + std::to_string(header_len) + " but only " +
                   std::to_string(size - header_start) + " bytes follow");
  }
  const std::string_view header(bytes.data() + header_start, header_len);
  const auto dict = HeaderParser(header, path).parse_dict();

  auto get = [&](const char* key, PyValue::Kind kind, const char* what) -> const PyValue& {
    auto it = dict.find(key);
    if (it == dict.end()) fail(path, std::string("malformed .npy header (no '") + key + "' key): " + printable(header));
    if (it->second.kind != kind) {
      if (std::string_view(key) == "descr")
        fail(path, "unsupported dtype: structured arrays are not supported (" + std::string(kSupportedDtypes) + ")");
      fail(path, std::string("malformed .npy header ('") + key + "' must be " + what + "): " + printable(header));
    }
    return it->second;
  };
  const PyValue& descr = get("descr", PyValue::Kind::String, "a string");
  const PyValue& fortran = get("fortran_order", PyValue::Kind::Bool, "True or False");
  const PyValue& shape = get("shape", PyValue::Kind::Tuple, "a tuple of integers");

  const DType dtype = parse_dtype(path, descr.str);
  if (fortran.flag && shape.ints.size() > 1)
    fail(path, "Fortran-order arrays are not supported (save a C-order array, e.g. np.ascontiguousarray(x))");

  int64_t count = 1;
  for (int64_t d : shape.ints) {
    if (__builtin_mul_overflow(count, d, &count)) fail(path, "shape " + shape_text(shape.ints) + " is too large");
  }
  int64_t needed = 0;
  if (__builtin_mul_overflow(count, static_cast<int64_t>(dtype.size), &needed))
    fail(path, "shape " + shape_text(shape.ints) + " is too large");
  const size_t data_start = header_start + header_len;
  const uint64_t available = size - data_start;
  if (static_cast<uint64_t>(needed) > available) {
    fail(path, "truncated: expected " + std::to_string(needed) + " bytes of data for shape " + shape_text(shape.ints) +
                   " " + descr.str + ", found " + std::to_string(available));
  }
  if (static_cast<uint64_t>(needed) < available) {
    fail(path, std::to_string(available - static_cast<uint64_t>(needed)) + " unexpected bytes after the data (shape " +
                   shape_text(shape.ints) + " " + descr.str + " needs " + std::to_string(needed) + " bytes)");
  }

  NpyArray out;
  out.shape = shape.ints;
  out.dtype = descr.str;
  out.data.resize(static_cast<size_t>(count));
  const unsigned char* p = u + data_start;
  for (int64_t i = 0; i < count; ++i) out.data[static_cast<size_t>(i)] = decode(p + i * dtype.size, dtype);
  return out;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<double>& data,
               bool as_float32) {
  int64_t count = 1;
  for (int64_t d : shape) {
    CNNCERT_CHECK(d >= 0, path << ": negative dimension in shape " << shape_text(shape));
    CNNCERT_CHECK(!__builtin_mul_overflow(count, d, &count),
                  path << ": shape " << shape_text(shape) << " is too large");
  }
  CNNCERT_CHECK(static_cast<uint64_t>(count) == data.size(),
                path << ": shape " << shape_text(shape) << " needs " << count << " values, got " << data.size());

  std::string header = std::string("{'descr': '") + (as_float32 ? "<f4" : "<f8") +
                       "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // Pad so that the data starts at a multiple of 64 bytes; the header ends with '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  CNNCERT_CHECK(header.size() <= 0xffff, path << ": .npy header too long");

  std::string out;
  out.reserve(10 + header.size() + data.size() * (as_float32 ? 4 : 8));
  out.append(kMagic);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  for (double v : data) {
    const uint64_t bits = as_float32 ? std::bit_cast<uint32_t>(static_cast<float>(v)) : std::bit_cast<uint64_t>(v);
    const int n = as_float32 ? 4 : 8;
    for (int i = 0; i < n; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  CNNCERT_CHECK(f, path << ": cannot open for writing");
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  f.close();
  CNNCERT_CHECK(f, path << ": write failed");
}

}  // namespace cnncert::detail
