// Image loaders, the .npy reader and preprocessing. Every file is written by the test itself into a
// fresh temporary directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cnncert/error.hpp"
#include "cnncert/images.hpp"
#include "cnncert/network.hpp"
#include "io/npy.hpp"

namespace fs = std::filesystem;
using cnncert::ImageSet;
using cnncert::InvalidArgument;
using cnncert::Layout;
using cnncert::load_images;
using cnncert::LoadOptions;
using cnncert::Preprocess;
using cnncert::detail::read_npy;
using cnncert::detail::write_npy;

namespace {

// A fresh temporary directory, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = std::string("cnncert_images_") + std::to_string(std::random_device{}()) + "_" +
                             std::to_string(counter++) + "_" + (info ? info->name() : "x");
    dir_ = fs::temp_directory_path() / name;
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  fs::path dir_;
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(f) << path;
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

template <class T>
void put_le(std::string& out, T v) {
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  for (size_t i = 0; i < sizeof(T); ++i) out += static_cast<char>((u >> (8 * i)) & 0xff);
}

void put_be32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// A .npy file with the given format version, header dict text (unpadded) and raw data bytes.
std::string raw_npy(int major, const std::string& dict, const std::string& data) {
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  const std::string header = dict + "\n";
  if (major == 1)
    put_le<uint16_t>(out, static_cast<uint16_t>(header.size()));
  else
    put_le<uint32_t>(out, static_cast<uint32_t>(header.size()));
  return out + header + data;
}

std::string npy_dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
}

// gzip container around stored (uncompressed) deflate blocks: a valid .gz any inflater reads,
// written without linking zlib into the test.
uint32_t crc32_of(const std::string& s) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char b : s) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::string gzip_stored(const std::string& data) {
  std::string out("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, data.size() - pos);
    out += static_cast<char>(pos + n == data.size() ? 1 : 0);
    put_le<uint16_t>(out, static_cast<uint16_t>(n));
    put_le<uint16_t>(out, static_cast<uint16_t>(~n & 0xffff));
    out.append(data, pos, n);
    pos += n;
  } while (pos < data.size());
  put_le<uint32_t>(out, crc32_of(data));
  put_le<uint32_t>(out, static_cast<uint32_t>(data.size()));
  return out;
}

// MNIST idx images: n images of h×w with pixel (i, p) = (7*i + p) % 256.
std::string idx_images(uint32_t n, uint32_t h, uint32_t w) {
  std::string out;
  put_be32(out, 0x00000803);
  put_be32(out, n);
  put_be32(out, h);
  put_be32(out, w);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t p = 0; p < h * w; ++p) out += static_cast<char>((7 * i + p) % 256);
  return out;
}

std::string idx_labels(uint32_t n) {
  std::string out;
  put_be32(out, 0x00000801);
  put_be32(out, n);
  for (uint32_t i = 0; i < n; ++i) out += static_cast<char>((3 * i + 1) % 10);
  return out;
}

// Runs f and expects an InvalidArgument whose message contains every one of `parts`.
template <class F>
void expect_invalid(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected cnncert::InvalidArgument, nothing was thrown";
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nshould contain: " << p;
  }
}

std::vector<double> iota_values(size_t n, double start = 0.0) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i);
  return v;
}

cnncert::Network input_only_network(cnncert::Shape shape) {
  cnncert::NetworkBuilder b;
  b.input(std::move(shape));
  return b.build(0);
}

std::string shared_images_dir() {
#ifdef CNNCERT_SHARED_DATA_DIR
  const fs::path p = fs::path(CNNCERT_SHARED_DATA_DIR) / "images";
  std::error_code ec;
  if (fs::is_directory(p, ec)) return p.string();
#endif
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// .npy reader

TEST(Npy, RoundTripFloat64IsExact) {
  TempDir tmp;
  const std::string f = tmp.path("a.npy");
  const std::vector<double> v = {0.0, -1.5, 1e-300, 3.141592653589793, -2.5e10, 255.0};
  write_npy(f, {2, 3}, v, false);
  const auto a = read_npy(f);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.dtype, "<f8");
  EXPECT_EQ(a.data, v);
  // np.save pads the header so that the data starts at a multiple of 64 bytes.
  EXPECT_EQ((fs::file_size(f) - 6 * 8) % 64, 0u);
}

TEST(Npy, RoundTripFloat32RoundsToFloat) {
  TempDir tmp;
  const std::string f = tmp.path("a.npy");
  const std::vector<double> v = {0.1, -0.7, 1.0 / 3.0, 100.0};
  write_npy(f, {4}, v, true);
  const auto a = read_npy(f);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(a.dtype, "<f4");
  ASSERT_EQ(a.data.size(), 4u);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(a.data[i], static_cast<double>(static_cast<float>(v[i])));
  EXPECT_NE(a.data[0], 0.1);  // really stored as float
}

TEST(Npy, ReadsUint8) {
  TempDir tmp;
  const std::string f = tmp.path("u8.npy");
  write_file(f, raw_npy(1, npy_dict("|u1", "(2, 2)"), std::string("\x00\x01\x80\xff", 4)));
  const auto a = read_npy(f);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a.dtype, "|u1");
  EXPECT_EQ(a.data, (std::vector<double>{0, 1, 128, 255}));
}

TEST(Npy, ReadsIntegerBoolAndHalfDtypes) {
  TempDir tmp;
  struct Case {
    std::string descr;
    std::string data;
    std::vector<double> expected;
  };
  std::vector<Case> cases;
  {
    std::string d;
    put_le<int8_t>(d, -128), put_le<int8_t>(d, 127);
    cases.push_back({"|i1", d, {-128, 127}});
  }
  {
    std::string d;
    put_le<int16_t>(d, -300), put_le<int16_t>(d, 300);
    cases.push_back({"<i2", d, {-300, 300}});
  }
  {
    std::string d;
    put_le<uint16_t>(d, 65535), put_le<uint16_t>(d, 1);
    cases.push_back({"<u2", d, {65535, 1}});
  }
  {
    std::string d;
    put_le<int32_t>(d, -5), put_le<int32_t>(d, 70000);
    cases.push_back({"<i4", d, {-5, 70000}});
  }
  {
    std::string d;
    put_le<uint32_t>(d, 4000000000u), put_le<uint32_t>(d, 0);
    cases.push_back({"<u4", d, {4000000000.0, 0}});
  }
  {
    std::string d;
    put_le<int64_t>(d, -(int64_t{1} << 40)), put_le<int64_t>(d, 9);
    cases.push_back({"<i8", d, {-1099511627776.0, 9}});
  }
  {
    std::string d;
    put_le<uint64_t>(d, uint64_t{1} << 63), put_le<uint64_t>(d, 2);
    cases.push_back({"<u8", d, {9223372036854775808.0, 2}});
  }
  {
    std::string d("\x00\x01", 2);
    cases.push_back({"|b1", d, {0, 1}});
  }
  {
    std::string d;
    put_le<uint16_t>(d, 0x3c00), put_le<uint16_t>(d, 0xc000);  // 1.0, -2.0
    cases.push_back({"<f2", d, {1.0, -2.0}});
  }
  {
    std::string d;
    put_le<uint16_t>(d, 0x3800), put_le<uint16_t>(d, 0x0001);  // 0.5, smallest subnormal 2^-24
    cases.push_back({"<f2", d, {0.5, std::ldexp(1.0, -24)}});
  }
  for (const Case& c : cases) {
    const std::string f = tmp.path("t.npy");
    write_file(f, raw_npy(1, npy_dict(c.descr, "(2,)"), c.data));
    const auto a = read_npy(f);
    EXPECT_EQ(a.dtype, c.descr);
    EXPECT_EQ(a.data, c.expected) << c.descr;
  }
}

TEST(Npy, ReadsFormatVersions2And3) {
  TempDir tmp;
  std::string data;
  put_le<float>(data, 1.25f), put_le<float>(data, -4.0f), put_le<float>(data, 0.5f);
  for (int major : {1, 2, 3}) {
    const std::string f = tmp.path("v" + std::to_string(major) + ".npy");
    write_file(f, raw_npy(major, npy_dict("<f4", "(1, 3)"), data));
    const auto a = read_npy(f);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 3})) << "version " << major;
    EXPECT_EQ(a.data, (std::vector<double>{1.25, -4.0, 0.5})) << "version " << major;
  }
}

TEST(Npy, ParsesHeaderVariants) {
  TempDir tmp;
  std::string d3;
  put_le<double>(d3, 1.0), put_le<double>(d3, 2.0), put_le<double>(d3, 3.0);
  std::string d1;
  put_le<double>(d1, 7.0);
  struct Case {
    std::string dict;
    std::string data;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {"{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3,)}", d3, {3}},  // double quotes
      {"{'shape': (3, 1), 'fortran_order': False, 'descr': '<f8'}", d3, {3, 1}},     // key order
      {"{'descr':'<f8','fortran_order':False,'shape':(1,3,),}", d3, {1, 3}},         // no spaces
      {"  {'descr': '<f8', 'fortran_order': False, 'shape': (3L,), }   ", d3, {3}},  // Python 2 long
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (), }", d1, {}},           // 0-d array
      {"{'descr': '<f8', 'fortran_order': True, 'shape': (3,), }", d3, {3}},         // 1-D: same in F order
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': [1, (2, 3)]}", d3, {3}},  // unknown key
  };
  for (const Case& c : cases) {
    const std::string f = tmp.path("h.npy");
    write_file(f, raw_npy(1, c.dict, c.data));
    const auto a = read_npy(f);
    EXPECT_EQ(a.shape, c.shape) << c.dict;
    EXPECT_EQ(a.data.size(), c.data.size() / 8) << c.dict;
    EXPECT_EQ(a.data.front(), c.data.size() == 8 ? 7.0 : 1.0) << c.dict;
  }
}

TEST(Npy, MissingFile) {
  TempDir tmp;
  const std::string f = tmp.path("missing.npy");
  expect_invalid([&] { read_npy(f); }, {f, "no such file"});
}

TEST(Npy, TruncatedData) {
  TempDir tmp;
  const std::string f = tmp.path("trunc.npy");
  write_file(f, raw_npy(1, npy_dict("<f8", "(2, 4)"), std::string(10, '\0')));
  expect_invalid([&] { read_npy(f); }, {"trunc.npy", "truncated", "expected 64 bytes of data", "found 10"});
}

TEST(Npy, TrailingBytes) {
  TempDir tmp;
  const std::string f = tmp.path("long.npy");
  write_file(f, raw_npy(1, npy_dict("|u1", "(2,)"), std::string(5, '\0')));
  expect_invalid([&] { read_npy(f); }, {"long.npy", "3 unexpected bytes"});
}

TEST(Npy, BadMagic) {
  TempDir tmp;
  const std::string f = tmp.path("magic.npy");
  write_file(f, "PK\x03\x04 this is a zip file, not an npy file");
  expect_invalid([&] { read_npy(f); }, {"magic.npy", "not a .npy file (bad magic)"});
  write_file(f, "");
  expect_invalid([&] { read_npy(f); }, {"magic.npy", "bad magic"});
}

TEST(Npy, FortranOrderRejected) {
  TempDir tmp;
  const std::string f = tmp.path("fortran.npy");
  write_file(f, raw_npy(1, npy_dict("<f8", "(2, 3)", true), std::string(48, '\0')));
  expect_invalid([&] { read_npy(f); }, {"fortran.npy", "Fortran-order"});
}

TEST(Npy, UnsupportedDtypes) {
  TempDir tmp;
  const std::string f = tmp.path("dtype.npy");
  write_file(f, raw_npy(1, npy_dict(">f4", "(2,)"), std::string(8, '\0')));
  expect_invalid([&] { read_npy(f); }, {"dtype.npy", "unsupported dtype '>f4'", "big-endian"});
  for (const std::string descr : {"<c16", "<U3", "|O", "<f16", "<i3", "<f4x", "f"}) {
    write_file(f, raw_npy(1, npy_dict(descr, "(1,)"), std::string(16, '\0')));
    expect_invalid([&] { read_npy(f); }, {"dtype.npy", "unsupported dtype"});
  }
  write_file(f, raw_npy(1, "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
                        std::string(8, '\0')));
  expect_invalid([&] { read_npy(f); }, {"dtype.npy", "unsupported dtype", "structured"});
}

TEST(Npy, UnsupportedVersion) {
  TempDir tmp;
  const std::string f = tmp.path("v9.npy");
  write_file(f, raw_npy(9, npy_dict("<f8", "(1,)"), std::string(8, '\0')));
  expect_invalid([&] { read_npy(f); }, {"v9.npy", "unsupported .npy format version 9.0"});
}

TEST(Npy, HeaderLengthBeyondFile) {
  TempDir tmp;
  const std::string f = tmp.path("hlen.npy");
  std::string bytes("\x93NUMPY\x02\x00", 8);
  put_le<uint32_t>(bytes, 0xfffffff0u);
  bytes += "{'descr': '<f8'";
  write_file(f, bytes);
  expect_invalid([&] { read_npy(f); }, {"hlen.npy", "truncated", "header length 4294967280"});
}

TEST(Npy, ShapeOverflow) {
  TempDir tmp;
  const std::string f = tmp.path("huge.npy");
  write_file(f, raw_npy(1, npy_dict("<f8", "(4294967296, 4294967296, 4294967296)"), std::string(8, '\0')));
  expect_invalid([&] { read_npy(f); }, {"huge.npy", "too large"});
  // Fits in int64 but not in the file: reported as truncation, without allocating.
  write_file(f, raw_npy(1, npy_dict("<f8", "(1000000000, 1000000)"), std::string(8, '\0')));
  expect_invalid([&] { read_npy(f); }, {"huge.npy", "truncated"});
  write_file(f, raw_npy(1, npy_dict("<f8", "(99999999999999999999,)"), std::string(8, '\0')));
  expect_invalid([&] { read_npy(f); }, {"huge.npy", "too large"});
}

TEST(Npy, MalformedHeaders) {
  TempDir tmp;
  const std::string f = tmp.path("header.npy");
  const std::vector<std::string> dicts = {
      "{'descr': '<f8', 'fortran_order': False}",                                 // no shape
      "{'descr': '<f8', 'shape': (1,)}",                                          // no fortran_order
      "{'fortran_order': False, 'shape': (1,)}",                                  // no descr
      "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)",                   // unterminated dict
      "{'descr': '<f8, 'fortran_order': False, 'shape': (1,)}",                   // bad quoting
      "{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}",                      // not a bool
      "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",                 // negative dim
      "{'descr': '<f8', 'fortran_order': False, 'shape': [1]}",                   // list, not tuple
      "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} trailing",         // junk after the dict
      "{'descr': '<f8', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",  // duplicate key
      "not a dict at all",
      "",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)]}",
      std::string("{'descr': '<f8'\0\x01, 'shape': (1,)}", 33),
  };
  for (const std::string& d : dicts) {
    write_file(f, raw_npy(1, d, std::string(8, '\0')));
    expect_invalid([&] { read_npy(f); }, {"header.npy"});
  }
}

TEST(Npy, WriteChecksTheShape) {
  TempDir tmp;
  const std::string f = tmp.path("w.npy");
  expect_invalid([&] { write_npy(f, {2, 3}, std::vector<double>(5), false); }, {"w.npy", "needs 6 values"});
  expect_invalid([&] { write_npy(f, {-1}, {}, false); }, {"w.npy", "negative"});
}

// Every prefix and many random corruptions of a valid file either load or throw InvalidArgument:
// never a crash, a hang or another exception.
TEST(Npy, CorruptFilesNeverCrash) {
  TempDir tmp;
  const std::string good = tmp.path("good.npy");
  write_npy(good, {2, 3}, iota_values(6), true);
  const std::string bytes = read_file(good);
  const std::string f = tmp.path("bad.npy");
  auto try_load = [&](const std::string& content, const std::string& what) {
    write_file(f, content);
    try {
      read_npy(f);
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("bad.npy"), std::string::npos) << what << ": " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": unexpected exception type: " << e.what();
    }
  };
  for (size_t n = 0; n < bytes.size(); ++n) try_load(bytes.substr(0, n), "prefix " + std::to_string(n));
  const unsigned seed = 12345;
  std::mt19937 rng(seed);
  for (int t = 0; t < 1000; ++t) {
    std::string c = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) c[rng() % 128 % c.size()] = static_cast<char>(rng() & 0xff);
    try_load(c, "seed " + std::to_string(seed) + " trial " + std::to_string(t));
  }
}

// ---------------------------------------------------------------------------------------------
// .npy images

TEST(ImagesNpy, LoadsNCHW) {
  TempDir tmp;
  const std::string f = tmp.path("x.npy");
  write_npy(f, {2, 2, 2, 3}, iota_values(24, 0.5), false);
  const ImageSet s = load_images(f);
  EXPECT_EQ(s.count, 2);
  EXPECT_EQ(s.channels, 2);
  EXPECT_EQ(s.height, 2);
  EXPECT_EQ(s.width, 3);
  EXPECT_EQ(s.pixels, iota_values(24, 0.5));
  EXPECT_EQ(s.labels, (std::vector<int64_t>{-1, -1}));
  EXPECT_EQ(s.source, f);
}

TEST(ImagesNpy, ThreeDimensionsAreSingleChannel) {
  TempDir tmp;
  const std::string f = tmp.path("x.npy");
  write_npy(f, {3, 2, 4}, iota_values(24), true);
  const ImageSet s = load_images(f);
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.channels, 1);
  EXPECT_EQ(s.height, 2);
  EXPECT_EQ(s.width, 4);
  EXPECT_EQ(s.pixels, iota_values(24));
}

TEST(ImagesNpy, FlatRowsGuessOrTakeTheShape) {
  TempDir tmp;
  const std::string f = tmp.path("flat.npy");
  write_npy(f, {2, 784}, iota_values(2 * 784), true);
  ImageSet s = load_images(f);
  EXPECT_EQ(s.count, 2);
  EXPECT_EQ(std::vector<int64_t>({s.channels, s.height, s.width}), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(s.pixels[784], 784.0);

  write_npy(f, {3072}, iota_values(3072), true);  // a single flat image
  s = load_images(f);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(std::vector<int64_t>({s.channels, s.height, s.width}), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(s.pixels, iota_values(3072));  // flat rows are CHW: no reordering

  write_npy(f, {2, 6}, iota_values(12), false);
  expect_invalid([&] { load_images(f); }, {"flat.npy", "cannot infer the image shape from 6 values"});
  LoadOptions o;
  o.chw = {2, 1, 3};
  s = load_images(f, o);
  EXPECT_EQ(std::vector<int64_t>({s.count, s.channels, s.height, s.width}), (std::vector<int64_t>{2, 2, 1, 3}));
  EXPECT_EQ(s.pixels, iota_values(12));
  o.chw = {1, 2, 2};
  expect_invalid([&] { load_images(f, o); }, {"flat.npy", "1×2×2 has 4 values", "6 per image"});
}

TEST(ImagesNpy, GivenShapeMustMatchA4DArray) {
  TempDir tmp;
  const std::string f = tmp.path("x.npy");
  write_npy(f, {1, 3, 2, 2}, iota_values(12), false);
  LoadOptions o;
  o.chw = {2, 2, 3};
  expect_invalid([&] { load_images(f, o); }, {"x.npy", "3×2×2"});
  o.chw = {3, 2, 2};
  EXPECT_EQ(load_images(f, o).pixels, iota_values(12));
}

TEST(ImagesNpy, SiblingAndExplicitLabels) {
  TempDir tmp;
  const std::string f = tmp.path("x.npy");
  write_npy(f, {4, 1, 1, 2}, iota_values(8), false);
  std::string labels;
  for (int64_t v : {3, 1, 4, 1}) put_le<int64_t>(labels, v);
  write_file(tmp.path("x.labels.npy"), raw_npy(1, npy_dict("<i8", "(4,)"), labels));
  EXPECT_EQ(load_images(f).labels, (std::vector<int64_t>{3, 1, 4, 1}));

  LoadOptions o;
  o.offset = 1;
  o.limit = 2;
  const ImageSet s = load_images(f, o);
  EXPECT_EQ(s.labels, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(s.pixels, (std::vector<double>{2, 3, 4, 5}));

  o = {};
  o.labels_path = tmp.path("other.npy");
  write_npy(o.labels_path, {4}, {9, 8, 7, 6}, true);
  EXPECT_EQ(load_images(f, o).labels, (std::vector<int64_t>{9, 8, 7, 6}));
  write_npy(o.labels_path, {3}, {9, 8, 7}, true);
  expect_invalid([&] { load_images(f, o); }, {"other.npy", "has 3 labels", "4 images"});
  write_npy(o.labels_path, {4}, {9, 8.5, 7, 6}, false);
  expect_invalid([&] { load_images(f, o); }, {"other.npy", "label 1 is 8.5"});
  o.labels_path = tmp.path("nope.npy");
  expect_invalid([&] { load_images(f, o); }, {"nope.npy", "no such file"});
}

TEST(ImagesNpy, OffsetAndLimit) {
  TempDir tmp;
  const std::string f = tmp.path("x.npy");
  write_npy(f, {4, 3}, iota_values(12), false);
  LoadOptions o;
  o.chw = {1, 1, 3};
  o.offset = 1;
  o.limit = 2;
  ImageSet s = load_images(f, o);
  EXPECT_EQ(s.count, 2);
  EXPECT_EQ(s.pixels, (std::vector<double>{3, 4, 5, 6, 7, 8}));
  o.offset = 3;
  o.limit = 10;
  s = load_images(f, o);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.pixels, (std::vector<double>{9, 10, 11}));
  o.offset = 4;
  expect_invalid([&] { load_images(f, o); }, {"x.npy", "offset 4", "4 images"});
  o.offset = -1;
  expect_invalid([&] { load_images(f, o); }, {"x.npy", "offset"});
  o.offset = 0;
  o.limit = -2;
  expect_invalid([&] { load_images(f, o); }, {"x.npy", "limit"});
}

TEST(ImagesNpy, NaNPixel) {
  TempDir tmp;
  const std::string f = tmp.path("nan.npy");
  std::vector<double> v = iota_values(12);
  v[7] = std::numeric_limits<double>::quiet_NaN();
  write_npy(f, {3, 1, 2, 2}, v, true);
  expect_invalid([&] { load_images(f); }, {"nan.npy", "image 1", "NaN"});
  v[7] = 1;
  v[9] = -std::numeric_limits<double>::infinity();
  write_npy(f, {3, 1, 2, 2}, v, false);
  LoadOptions o;
  o.offset = 2;  // the reported index is the image's index in the file
  expect_invalid([&] { load_images(f, o); }, {"nan.npy", "image 2"});
  o.offset = 0;
  o.limit = 2;  // the bad image is not read
  EXPECT_EQ(load_images(f, o).count, 2);
}

// ---------------------------------------------------------------------------------------------
// ERAN CSV

TEST(ImagesCsv, LoadsRowsAndLabels) {
  TempDir tmp;
  const std::string f = tmp.path("a.csv");
  write_file(f, "7,0,1,2,3\r\n\n  \n2, 1e2 ,+5,0.25,255\r\n");
  LoadOptions o;
  o.chw = {1, 2, 2};
  const ImageSet s = load_images(f, o);
  EXPECT_EQ(s.count, 2);
  EXPECT_EQ(s.labels, (std::vector<int64_t>{7, 2}));
  EXPECT_EQ(s.pixels, (std::vector<double>{0, 1, 2, 3, 100, 5, 0.25, 255}));
}

TEST(ImagesCsv, HwcRowsAreReorderedToChw) {
  TempDir tmp;
  const std::string f = tmp.path("rgb.csv");
  // One 3×1×2 image: pixel 0 = (r 10, g 20, b 30), pixel 1 = (r 11, g 21, b 31).
  write_file(f, "5,10,20,30,11,21,31\n");
  LoadOptions o;
  o.chw = {3, 1, 2};
  ImageSet s = load_images(f, o);
  EXPECT_EQ(s.pixels, (std::vector<double>{10, 11, 20, 21, 30, 31}));
  EXPECT_EQ(s.labels, (std::vector<int64_t>{5}));
  o.csv_hwc = false;
  s = load_images(f, o);
  EXPECT_EQ(s.pixels, (std::vector<double>{10, 20, 30, 11, 21, 31}));
}

TEST(ImagesCsv, GuessesTheShapeAndAppliesOffsetLimit) {
  TempDir tmp;
  const std::string f = tmp.path("m.csv");
  std::string text;
  for (int i = 0; i < 5; ++i) {
    text += std::to_string(i);
    for (int p = 0; p < 784; ++p) text += "," + std::to_string((i + p) % 256);
    text += "\n";
  }
  write_file(f, text);
  LoadOptions o;
  o.offset = 2;
  o.limit = 2;
  const ImageSet s = load_images(f, o);
  EXPECT_EQ(std::vector<int64_t>({s.count, s.channels, s.height, s.width}), (std::vector<int64_t>{2, 1, 28, 28}));
  EXPECT_EQ(s.labels, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s.pixels[0], 2.0);
  EXPECT_EQ(s.pixels[784 + 10], 13.0);
  o.offset = 5;
  expect_invalid([&] { load_images(f, o); }, {"m.csv", "offset 5", "5 images"});
}

TEST(ImagesCsv, MalformedToken) {
  TempDir tmp;
  const std::string f = tmp.path("bad.csv");
  write_file(f, "1,0,0,0,0\n2,0,abc,0,0\n");
  LoadOptions o;
  o.chw = {1, 2, 2};
  expect_invalid([&] { load_images(f, o); }, {"bad.csv:2", "column 3", "'abc'"});
  write_file(f, "1,0,0,,0\n");
  expect_invalid([&] { load_images(f, o); }, {"bad.csv:1", "column 4", "not a number"});
  write_file(f, "1.5,0,0,0,0\n");
  expect_invalid([&] { load_images(f, o); }, {"bad.csv:1", "label"});
}

TEST(ImagesCsv, WrongRowLength) {
  TempDir tmp;
  const std::string f = tmp.path("short.csv");
  write_file(f, "1,0,0,0,0\n2,0,0,0,0\n3,0,0,0\n");
  LoadOptions o;
  o.chw = {1, 2, 2};
  expect_invalid([&] { load_images(f, o); }, {"short.csv:3", "expected 5 values", "found 4"});
  write_file(f, "1,0,0,0\n");  // shape guessed from nothing recognisable
  expect_invalid([&] { load_images(f); }, {"short.csv:1", "cannot infer the image shape from 3 values"});
}

TEST(ImagesCsv, NaNPixel) {
  TempDir tmp;
  const std::string f = tmp.path("nan.csv");
  write_file(f, "1,0,0,0,0\n2,0,nan,0,0\n");
  LoadOptions o;
  o.chw = {1, 2, 2};
  expect_invalid([&] { load_images(f, o); }, {"nan.csv:2", "image 1", "NaN"});
  write_file(f, "1,0,0,inf,0\n");
  expect_invalid([&] { load_images(f, o); }, {"nan.csv:1", "image 0"});
}

TEST(ImagesCsv, EmptyFile) {
  TempDir tmp;
  const std::string f = tmp.path("empty.csv");
  write_file(f, "");
  expect_invalid([&] { load_images(f); }, {"empty.csv", "empty file"});
  write_file(f, "\n \r\n\t\n");
  expect_invalid([&] { load_images(f); }, {"empty.csv", "empty file"});
}

TEST(ImagesCsv, ExplicitLabelsOverrideTheFile) {
  TempDir tmp;
  const std::string f = tmp.path("a.csv");
  write_file(f, "1,0,0,0,0\n2,1,1,1,1\n");
  LoadOptions o;
  o.chw = {1, 2, 2};
  o.labels_path = tmp.path("l.npy");
  write_npy(o.labels_path, {2}, {8, 9}, false);
  o.offset = 1;
  EXPECT_EQ(load_images(f, o).labels, (std::vector<int64_t>{9}));
}

// ---------------------------------------------------------------------------------------------
// MNIST idx

TEST(ImagesIdx, LoadsImagesWithSiblingLabels) {
  TempDir tmp;
  const std::string f = tmp.path("t-images-idx3-ubyte");
  write_file(f, idx_images(3, 2, 3));
  write_file(tmp.path("t-labels-idx1-ubyte"), idx_labels(3));
  const ImageSet s = load_images(f);
  EXPECT_EQ(std::vector<int64_t>({s.count, s.channels, s.height, s.width}), (std::vector<int64_t>{3, 1, 2, 3}));
  EXPECT_EQ(s.labels, (std::vector<int64_t>{1, 4, 7}));
  ASSERT_EQ(s.pixels.size(), 18u);
  for (int i = 0; i < 3; ++i)
    for (int p = 0; p < 6; ++p) EXPECT_EQ(s.pixels[static_cast<size_t>(i * 6 + p)], (7 * i + p) % 256);

  LoadOptions o;
  o.offset = 1;
  o.limit = 1;
  const ImageSet t = load_images(f, o);
  EXPECT_EQ(t.count, 1);
  EXPECT_EQ(t.labels, (std::vector<int64_t>{4}));
  EXPECT_EQ(t.pixels, (std::vector<double>{7, 8, 9, 10, 11, 12}));
}

TEST(ImagesIdx, NoSiblingMeansUnknownLabels) {
  TempDir tmp;
  const std::string f = tmp.path("digits.idx3");
  write_file(f, idx_images(2, 1, 1));
  EXPECT_EQ(load_images(f).labels, (std::vector<int64_t>{-1, -1}));
  LoadOptions o;
  o.labels_path = tmp.path("my-labels.idx1-ubyte");
  write_file(o.labels_path, idx_labels(2));
  EXPECT_EQ(load_images(f, o).labels, (std::vector<int64_t>{1, 4}));
}

TEST(ImagesIdx, Gzip) {
  TempDir tmp;
  const std::string f = tmp.path("x-images-idx3-ubyte.gz");
  const std::string raw = idx_images(100, 28, 28);  // > 64 KiB: several deflate blocks
  write_file(f, gzip_stored(raw));
  write_file(tmp.path("x-labels-idx1-ubyte.gz"), gzip_stored(idx_labels(100)));
  ImageSet s;
  try {
    s = load_images(f);
  } catch (const InvalidArgument& e) {
    if (std::string(e.what()).find("built without it") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  EXPECT_EQ(s.count, 100);
  EXPECT_EQ(s.labels.size(), 100u);
  EXPECT_EQ(s.labels[99], (3 * 99 + 1) % 10);
  ASSERT_EQ(s.pixels.size(), 78400u);
  for (size_t k = 0; k < s.pixels.size(); ++k)
    ASSERT_EQ(s.pixels[k], static_cast<unsigned char>(raw[16 + k])) << "value " << k;

  LoadOptions o;
  o.offset = 90;  // skips across a block boundary
  o.limit = 3;
  const ImageSet t = load_images(f, o);
  EXPECT_EQ(t.count, 3);
  EXPECT_EQ(t.labels, (std::vector<int64_t>{(3 * 90 + 1) % 10, (3 * 91 + 1) % 10, (3 * 92 + 1) % 10}));
  EXPECT_EQ(t.pixels[0], (7 * 90) % 256);
  EXPECT_EQ(t.pixels[2 * 784 + 5], (7 * 92 + 5) % 256);

  // Truncated compressed stream.
  const std::string gz = gzip_stored(raw);
  write_file(f, gz.substr(0, gz.size() / 2));
  expect_invalid([&] { load_images(f); }, {"x-images-idx3-ubyte.gz", "truncated"});
  // Wrong checksum: detected when the whole stream is read.
  std::string bad = gz;
  bad[bad.size() - 6] ^= 0x55;
  write_file(f, bad);
  expect_invalid([&] { load_images(f); }, {"x-images-idx3-ubyte.gz", "corrupt gzip data"});
  // Every image present but the trailer (checksum and length) cut off: zlib's gzread reports a
  // clean end for this once the whole small file sits in its input buffer.
  const std::string small = tmp.path("s-images-idx3-ubyte.gz");
  const std::string small_gz = gzip_stored(idx_images(4, 3, 3));
  write_file(small, small_gz);
  EXPECT_EQ(load_images(small).count, 4);
  write_file(small, small_gz.substr(0, small_gz.size() - 8));
  expect_invalid([&] { load_images(small); }, {"s-images-idx3-ubyte.gz", "truncated gzip file"});
  write_file(small, small_gz + gzip_stored("x"));  // a second member: a byte after the images
  expect_invalid([&] { load_images(small); }, {"s-images-idx3-ubyte.gz", "unexpected bytes after"});
  write_file(small, small_gz + "junk");  // bytes that start no member
  expect_invalid([&] { load_images(small); }, {"s-images-idx3-ubyte.gz", "corrupt gzip data"});
  write_file(small, small_gz + "\x1f");  // a member cut off in its header
  expect_invalid([&] { load_images(small); }, {"s-images-idx3-ubyte.gz", "truncated gzip file"});
  // A second member whose header starts at the last byte of the reader's first 64 KiB: a stored
  // member of d bytes is d + 23 long, so d = 65512 (an idx file of 1 image of 1×65496).
  const std::string split = gzip_stored(idx_images(1, 1, 65496));
  ASSERT_EQ(split.size(), 65535u);
  write_file(small, split + gzip_stored("x"));
  expect_invalid([&] { load_images(small); }, {"s-images-idx3-ubyte.gz", "unexpected bytes after"});
}

TEST(ImagesIdx, Truncated) {
  TempDir tmp;
  const std::string f = tmp.path("t10k-images-idx3-ubyte");
  const std::string raw = idx_images(4, 3, 3);
  write_file(f, raw.substr(0, raw.size() - 5));
  expect_invalid([&] { load_images(f); }, {"t10k-images-idx3-ubyte", "truncated", "4 images of 3×3"});
  write_file(f, raw.substr(0, 10));
  expect_invalid([&] { load_images(f); }, {"t10k-images-idx3-ubyte", "truncated"});
  write_file(f, raw + "xx");
  expect_invalid([&] { load_images(f); }, {"t10k-images-idx3-ubyte", "unexpected bytes"});
  // Truncated sibling labels.
  write_file(f, raw);
  const std::string labels = idx_labels(4);
  write_file(tmp.path("t10k-labels-idx1-ubyte"), labels.substr(0, labels.size() - 1));
  expect_invalid([&] { load_images(f); }, {"t10k-labels-idx1-ubyte", "truncated"});
}

TEST(ImagesIdx, BadMagicAndCountMismatch) {
  TempDir tmp;
  const std::string f = tmp.path("a-images-idx3-ubyte");
  write_file(f, idx_labels(3));
  expect_invalid([&] { load_images(f); }, {"a-images-idx3-ubyte", "labels file"});
  std::string raw = idx_images(3, 2, 2);
  raw[2] = 0x0d;  // float data
  write_file(f, raw);
  expect_invalid([&] { load_images(f); }, {"a-images-idx3-ubyte", "not an MNIST idx image file"});
  write_file(f, idx_images(3, 2, 2));
  write_file(tmp.path("a-labels-idx1-ubyte"), idx_labels(2));
  expect_invalid([&] { load_images(f); }, {"a-labels-idx1-ubyte", "has 2 labels", "3 images"});
  write_file(tmp.path("a-labels-idx1-ubyte"), idx_images(3, 2, 2));
  expect_invalid([&] { load_images(f); }, {"a-labels-idx1-ubyte", "not an MNIST idx labels file"});
}

TEST(ImagesIdx, HugeHeaderDoesNotAllocate) {
  TempDir tmp;
  std::string raw;
  put_be32(raw, 0x00000803);
  put_be32(raw, 0xffffffffu);
  put_be32(raw, 0xffffu);
  put_be32(raw, 0xffffu);
  raw += std::string(100, '\0');
  write_file(tmp.path("big-images-idx3-ubyte"), raw);
  expect_invalid([&] { load_images(tmp.path("big-images-idx3-ubyte")); }, {"big-images-idx3-ubyte", "truncated"});
  // Compressed: the size is unknown up front, so the reader must stop at the end of the data.
  const std::string f = tmp.path("big-images-idx3-ubyte.gz");
  write_file(f, gzip_stored(raw));
  try {
    load_images(f);
    ADD_FAILURE() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    if (msg.find("built without it") != std::string::npos) GTEST_SKIP() << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10 binary

TEST(ImagesCifar, LoadsRecords) {
  TempDir tmp;
  const std::string f = tmp.path("data_batch.bin");
  std::string raw;
  for (int r = 0; r < 3; ++r) {
    raw += static_cast<char>(r + 3);
    for (int p = 0; p < 3072; ++p) raw += static_cast<char>((p + 11 * r) % 256);
  }
  write_file(f, raw);
  ImageSet s = load_images(f);
  EXPECT_EQ(std::vector<int64_t>({s.count, s.channels, s.height, s.width}), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(s.labels, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(s.pixels[1024], 0.0);  // CHW as stored: value 1024 % 256
  EXPECT_EQ(s.pixels[3072 + 5], 16.0);
  LoadOptions o;
  o.offset = 2;
  s = load_images(f, o);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.labels, (std::vector<int64_t>{5}));
  EXPECT_EQ(s.pixels[0], 22.0);
  EXPECT_EQ(s.pixels[3071], (3071 + 22) % 256);
}

TEST(ImagesCifar, SizeNotAMultipleOfTheRecord) {
  TempDir tmp;
  const std::string f = tmp.path("odd.bin");
  write_file(f, std::string(2 * 3073 + 5, '\x01'));
  expect_invalid([&] { load_images(f); }, {"odd.bin", "not a multiple of 3073"});
  write_file(f, "");
  expect_invalid([&] { load_images(f); }, {"odd.bin", "empty"});
  std::string rec(3073, '\0');
  rec[0] = 42;
  write_file(f, rec);
  expect_invalid([&] { load_images(f); }, {"odd.bin", "label 42"});
}

// ---------------------------------------------------------------------------------------------
// Format dispatch

TEST(ImagesFormat, MissingFile) {
  TempDir tmp;
  for (const std::string name : {"gone.npy", "gone.csv", "gone-images-idx3-ubyte.gz", "gone.bin", "gone.png"}) {
    const std::string f = tmp.path(name);
    expect_invalid([&] { load_images(f); }, {f + ": no such file"});
  }
}

TEST(ImagesFormat, UnknownExtensionListsTheFormats) {
  TempDir tmp;
  const std::string f = tmp.path("picture.png");
  write_file(f, "\x89PNG");
  expect_invalid([&] { load_images(f); }, {"picture.png", "unknown image format", ".npy", ".csv", "idx", ".bin"});
  expect_invalid([&] { load_images(tmp.path("")); }, {"is a directory"});
}

// ---------------------------------------------------------------------------------------------
// Layout and sidecar

TEST(ImagesLayout, ParseAndName) {
  EXPECT_EQ(cnncert::parse_layout("NCHW"), Layout::NCHW);
  EXPECT_EQ(cnncert::parse_layout("nhwc"), Layout::NHWC);
  EXPECT_EQ(cnncert::parse_layout("Flat"), Layout::Flat);
  EXPECT_EQ(cnncert::parse_layout("column-major"), Layout::ColumnMajor);
  for (Layout l : {Layout::NCHW, Layout::NHWC, Layout::Flat, Layout::ColumnMajor})
    EXPECT_EQ(cnncert::parse_layout(cnncert::layout_name(l)), l);
  expect_invalid([] { cnncert::parse_layout("CHWN"); }, {"CHWN", "NCHW, NHWC, flat or colmajor"});
  expect_invalid([] { cnncert::parse_layout(""); }, {"layout"});
}

TEST(ImagesSidecar, AbsentIsNullopt) {
  TempDir tmp;
  EXPECT_FALSE(cnncert::load_sidecar(tmp.path("model.onnx")).has_value());
}

TEST(ImagesSidecar, ReadsAllKeys) {
  TempDir tmp;
  const std::string model = tmp.path("model.onnx");
  write_file(model + ".json",
             R"({"scale": 0.00392156862745098, "mean": [0.4914, 0.4822, 0.4465], "std": 0.2,
                 "layout": "nhwc", "dataset": "cifar10", "comment": {"ignored": [1, 2]}})");
  const auto p = cnncert::load_sidecar(model);
  ASSERT_TRUE(p.has_value());
  EXPECT_DOUBLE_EQ(p->scale, 1.0 / 255.0);
  EXPECT_EQ(p->mean, (std::vector<double>{0.4914, 0.4822, 0.4465}));
  EXPECT_EQ(p->std, (std::vector<double>{0.2}));
  EXPECT_EQ(p->layout, Layout::NHWC);
  EXPECT_EQ(p->dataset, "cifar10");

  // The command line's forms of a scale, and free-form keys with the x- prefix.
  write_file(model + ".json", R"({"scale": "1/255", "x-origin": "converted by hand"})");
  EXPECT_DOUBLE_EQ(cnncert::load_sidecar(model)->scale, 1.0 / 255.0);
  write_file(model + ".json", R"({"scale": "0.5"})");
  EXPECT_DOUBLE_EQ(cnncert::load_sidecar(model)->scale, 0.5);

  write_file(model + ".json", "{}");
  const auto q = cnncert::load_sidecar(model);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->scale, 1.0);
  EXPECT_TRUE(q->mean.empty());
  EXPECT_TRUE(q->std.empty());
  EXPECT_EQ(q->layout, Layout::NCHW);
}

TEST(ImagesSidecar, MalformedJson) {
  TempDir tmp;
  const std::string model = tmp.path("net.onnx");
  write_file(model + ".json", "{\"scale\": 0.5,\n \"mean\": [0.1, }");
  expect_invalid([&] { cnncert::load_sidecar(model); }, {"net.onnx.json", "malformed JSON", "line 2"});
}

TEST(ImagesSidecar, InvalidValues) {
  TempDir tmp;
  const std::string model = tmp.path("net.onnx");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"std": [0.2, 0.0, 0.3]})", "\"std\""},
      {R"({"std": -1})", "\"std\""},
      {R"({"std": []})", "\"std\""},
      {R"({"mean": "0.5"})", "\"mean\""},
      {R"({"mean": [0.1, "x"]})", "\"mean\""},
      {R"({"scale": -2})", "\"scale\""},
      {R"({"scale": "1/0"})", "\"scale\""},
      {R"({"scale": "abc"})", "\"scale\""},
      {R"({"scale": "-1/255"})", "\"scale\""},
      {R"({"scale": "1/255x"})", "\"scale\""},
      {R"({"stdev": 0.2})", "unknown key \"stdev\""},
      {R"({"layout": "xyz"})", "xyz"},
      {R"({"layout": 3})", "\"layout\""},
      {R"({"dataset": 10})", "\"dataset\""},
      {R"([1, 2])", "JSON object"},
      {R"({"std": 1e999})", "net.onnx.json"},
  };
  for (const auto& [text, part] : cases) {
    write_file(model + ".json", text);
    expect_invalid([&] { cnncert::load_sidecar(model); }, {"net.onnx.json", part});
  }
}

// ---------------------------------------------------------------------------------------------
// Preprocessing

namespace {
// Two 2×1×2 images: image k, channel c, position q holds 10k + 2c + q.
ImageSet small_set() {
  ImageSet s;
  s.count = 2;
  s.channels = 2, s.height = 1, s.width = 2;
  s.pixels = {0, 1, 2, 3, 10, 11, 12, 13};
  s.labels = {0, 1};
  s.source = "small.npy";
  return s;
}
}  // namespace

TEST(ImagesPreprocess, NchwScaleMeanStd) {
  const ImageSet s = small_set();
  Preprocess p;
  p.scale = 0.5;
  p.mean = {1.0, 2.0};
  p.std = {2.0, 4.0};
  const auto net = input_only_network({2, 1, 2});
  const auto x = cnncert::preprocess(s, p, net);
  ASSERT_EQ(x.size(), 8u);
  for (int k = 0; k < 2; ++k)
    for (int c = 0; c < 2; ++c)
      for (int q = 0; q < 2; ++q) {
        const double px = 10 * k + 2 * c + q;
        EXPECT_DOUBLE_EQ(x[static_cast<size_t>(k * 4 + c * 2 + q)], (px * 0.5 - p.mean[c]) / p.std[c]);
      }
  // Flat is CHW order too, whatever the model's input shape.
  p.layout = Layout::Flat;
  EXPECT_EQ(cnncert::preprocess(s, p, input_only_network({4})), x);
}

TEST(ImagesPreprocess, NhwcInterleaves) {
  const ImageSet s = small_set();
  Preprocess p;
  p.layout = Layout::NHWC;
  const auto x = cnncert::preprocess(s, p, input_only_network({1, 2, 2}));
  EXPECT_EQ(x, (std::vector<double>{0, 2, 1, 3, 10, 12, 11, 13}));
}

TEST(ImagesPreprocess, ColumnMajorIsMatlabsFlattening) {
  // One 2×2×3 image (C, H, W) with pixel (c, y, x) = 100c + 10y + x; MATLAB flattens H×W×C with
  // the row index fastest: y + H·(x + W·c).
  ImageSet s;
  s.count = 1, s.channels = 2, s.height = 2, s.width = 3;
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) s.pixels.push_back(100 * c + 10 * y + x);
  Preprocess p;
  p.layout = cnncert::parse_layout("colmajor");
  EXPECT_STREQ(cnncert::layout_name(p.layout), "colmajor");
  const auto v = cnncert::preprocess(s, p, input_only_network({12}));
  EXPECT_EQ(v, (std::vector<double>{0, 10, 1, 11, 2, 12, 100, 110, 101, 111, 102, 112}));
}

TEST(ImagesPreprocess, BroadcastAndDefaults) {
  const ImageSet s = small_set();
  Preprocess p;
  EXPECT_EQ(cnncert::preprocess(s, p, input_only_network({2, 1, 2})), s.pixels);
  p.mean = {1.0};
  p.std = {0.5};
  const auto x = cnncert::preprocess(s, p, input_only_network({2, 1, 2}));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_DOUBLE_EQ(x[i], (s.pixels[i] - 1.0) / 0.5);
}

TEST(ImagesPreprocess, FirstAndCount) {
  const ImageSet s = small_set();
  const auto net = input_only_network({2, 1, 2});
  EXPECT_EQ(cnncert::preprocess(s, {}, net, 1, 1), (std::vector<double>{10, 11, 12, 13}));
  EXPECT_EQ(cnncert::preprocess(s, {}, net, 1), (std::vector<double>{10, 11, 12, 13}));
  EXPECT_TRUE(cnncert::preprocess(s, {}, net, 2, 0).empty());
  expect_invalid([&] { cnncert::preprocess(s, {}, net, 1, 2); }, {"small.npy", "outside the 2 loaded images"});
  expect_invalid([&] { cnncert::preprocess(s, {}, net, 3); }, {"small.npy"});
}

TEST(ImagesPreprocess, ShapeMismatch) {
  ImageSet s;
  s.count = 1;
  s.channels = 1, s.height = 28, s.width = 28;
  s.pixels.assign(784, 0.0);
  s.labels = {7};
  s.source = "digits.csv";
  const auto net = input_only_network({28, 28, 3});
  expect_invalid([&] { cnncert::preprocess(s, {}, net); },
                 {"digits.csv", "1×28×28 = 784 values", "(28, 28, 3)", "needs 2352"});
}

TEST(ImagesPreprocess, ChannelCountMismatch) {
  const ImageSet s = small_set();
  const auto net = input_only_network({2, 1, 2});
  Preprocess p;
  p.mean = {0.1, 0.2, 0.3};
  expect_invalid([&] { cnncert::preprocess(s, p, net); }, {"small.npy", "3 mean values", "2-channel"});
  p.mean.clear();
  p.std = {1.0, 0.0};
  expect_invalid([&] { cnncert::preprocess(s, p, net); }, {"small.npy", "std"});
}

// ---------------------------------------------------------------------------------------------
// Real data (../shared/data/images), skipped when absent

TEST(ImagesRealData, MnistIdxGzMatchesEranCsv) {
  const std::string dir = shared_images_dir();
  if (dir.empty()) GTEST_SKIP() << "shared data not found (CNNCERT_SHARED_DATA_DIR/images)";
  const std::string idx = dir + "/mnist/t10k-images-idx3-ubyte.gz";
  ImageSet s;
  try {
    s = load_images(idx);
  } catch (const InvalidArgument& e) {
    if (std::string(e.what()).find("built without it") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  EXPECT_EQ(std::vector<int64_t>({s.count, s.channels, s.height, s.width}), (std::vector<int64_t>{10000, 1, 28, 28}));
  ASSERT_EQ(s.labels.size(), 10000u);
  EXPECT_EQ(s.labels[0], 7);
  EXPECT_EQ(s.labels[1], 2);
  EXPECT_EQ(*std::max_element(s.pixels.begin(), s.pixels.end()), 255.0);

  const ImageSet csv = load_images(dir + "/eran/mnist_test.csv");
  EXPECT_EQ(csv.count, 100);
  EXPECT_EQ(csv.labels[0], 7);
  // ERAN's CSV holds the first 100 MNIST test images.
  EXPECT_TRUE(std::equal(csv.pixels.begin(), csv.pixels.end(), s.pixels.begin()));
  EXPECT_TRUE(std::equal(csv.labels.begin(), csv.labels.end(), s.labels.begin()));

  LoadOptions o;
  o.offset = 9999;
  o.limit = 5;
  const ImageSet last = load_images(idx, o);
  EXPECT_EQ(last.count, 1);
  EXPECT_EQ(last.labels[0], s.labels[9999]);

  Preprocess p;
  p.scale = 1.0 / 255.0;
  const auto x = cnncert::preprocess(csv, p, input_only_network({1, 28, 28}), 0, 1);
  ASSERT_EQ(x.size(), 784u);
  EXPECT_EQ(*std::max_element(x.begin(), x.end()), 1.0);
  EXPECT_EQ(*std::min_element(x.begin(), x.end()), 0.0);
}

TEST(ImagesRealData, EranCifarCsvIsHwc) {
  const std::string dir = shared_images_dir();
  if (dir.empty()) GTEST_SKIP() << "shared data not found (CNNCERT_SHARED_DATA_DIR/images)";
  const ImageSet s = load_images(dir + "/eran/cifar10_test.csv");
  EXPECT_EQ(std::vector<int64_t>({s.count, s.channels, s.height, s.width}), (std::vector<int64_t>{100, 3, 32, 32}));
  EXPECT_EQ(s.labels[0], 3);
  // The file starts "3,158,112,49,159,111,47": (r, g, b) of pixel 0 then pixel 1.
  EXPECT_EQ(s.pixels[0], 158.0);
  EXPECT_EQ(s.pixels[1], 159.0);
  EXPECT_EQ(s.pixels[1024], 112.0);
  EXPECT_EQ(s.pixels[1025], 111.0);
  EXPECT_EQ(s.pixels[2048], 49.0);
  EXPECT_EQ(s.pixels[2049], 47.0);
}
