#include "cnncert/images.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "cnncert/error.hpp"
#include "io/npy.hpp"
#include "io/read_file.hpp"

namespace cnncert {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSupportedFormats =
    "supported: .npy; .csv (label,pixels per line); MNIST idx (*-ubyte, *.idx*, optionally .gz); "
    "CIFAR-10 binary (*.bin)";
constexpr int64_t kCifarImageBytes = 3 * 32 * 32;
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string chw_text(int64_t c, int64_t h, int64_t w) {
  return std::to_string(c) + "×" + std::to_string(h) + "×" + std::to_string(w);
}

void check_file(const std::string& path, const char* what) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  CNNCERT_CHECK(fs::exists(st), path << ": no such file");
  CNNCERT_CHECK(!fs::is_directory(st), path << ": is a directory, not " << what);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CNNCERT_CHECK(in, path << ": cannot open for reading");
  std::ostringstream os;
  os << in.rdbuf();
  CNNCERT_CHECK(!in.bad(), path << ": read error");
  return os.str();
}

uint64_t regular_file_size(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  CNNCERT_CHECK(!ec, path << ": cannot determine the file size (" << ec.message() << ")");
  return size;
}

// Image shape for rows of `d` values: `chw` when given (checked), else 784 → 1×28×28,
// 3072 → 3×32×32. Returns false when it cannot be guessed.
bool resolve_chw(const std::string& path, const std::vector<int64_t>& chw, int64_t d, int64_t out[3],
                 int64_t flat_size) {
  if (!chw.empty()) {
    CNNCERT_CHECK(chw.size() == 3, path << ": the image shape must be (C, H, W), got " << chw.size() << " values");
    CNNCERT_CHECK(
        chw[0] > 0 && chw[1] > 0 && chw[2] > 0 && chw[0] <= (1 << 20) && chw[1] <= (1 << 20) && chw[2] <= (1 << 20),
        path << ": invalid image shape " << chw_text(chw[0], chw[1], chw[2]));
    const int64_t n = chw[0] * chw[1] * chw[2];
    CNNCERT_CHECK(n == d, path << ": the given image shape " << chw_text(chw[0], chw[1], chw[2]) << " has " << n
                               << " values but the file has " << d << " per image");
    std::copy(chw.begin(), chw.end(), out);
    return true;
  }
  if (d == 784) {
    out[0] = 1, out[1] = 28, out[2] = 28;
    return true;
  }
  if (d == 3072) {
    out[0] = 3, out[1] = 32, out[2] = 32;
    return true;
  }
  if (flat_size > 0 && d == flat_size) {  // a model input that is no image: the values as they are
    out[0] = 1, out[1] = 1, out[2] = d;
    return true;
  }
  return false;
}

// Number of images to read after checking offset/limit against the `total` in the file.
int64_t take_count(const std::string& path, int64_t total, const LoadOptions& o) {
  CNNCERT_CHECK(o.offset >= 0, path << ": the offset must be >= 0, got " << o.offset);
  CNNCERT_CHECK(o.limit >= -1, path << ": the limit must be >= 0 (or -1 for all), got " << o.limit);
  CNNCERT_CHECK(total > 0, path << ": the file contains no images");
  CNNCERT_CHECK(o.offset < total,
                path << ": offset " << o.offset << " is beyond the last image (the file has " << total << " images)");
  const int64_t rest = total - o.offset;
  return o.limit < 0 ? rest : std::min(rest, o.limit);
}

void check_finite(const ImageSet& set, int64_t offset) {
  const int64_t d = set.image_size();
  for (size_t i = 0; i < set.pixels.size(); ++i) {
    if (!std::isfinite(set.pixels[i])) {
      const int64_t image = offset + static_cast<int64_t>(i) / d;
      CNNCERT_CHECK(false, set.source << ": image " << image << " contains a NaN or Inf value (at index "
                                      << static_cast<int64_t>(i) % d << ")");
    }
  }
}

uint32_t be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Sequential reader over a plain or gzip-compressed file.
class ByteReader {
 public:
  ByteReader(const std::string& path, bool gz) : path_(path) {
    if (gz) {
      gz_ = std::make_unique<detail::GzipReader>(path);
    } else {
      file_ = std::fopen(path.c_str(), "rb");
      CNNCERT_CHECK(file_ != nullptr, path << ": cannot open for reading");
    }
  }
  ~ByteReader() {
    if (file_) std::fclose(file_);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  /// Reads up to n bytes; fewer only at the end of the data. A gzip stream cut short or corrupt
  /// is an error (detail::GzipReader).
  size_t read(unsigned char* dst, size_t n) {
    if (gz_) return gz_->read(dst, n);
    size_t done = 0;
    while (done < n) {
      const size_t r = std::fread(dst + done, 1, n - done, file_);
      CNNCERT_CHECK(!std::ferror(file_), path_ << ": read error");
      if (r == 0) break;
      done += r;
    }
    return done;
  }

  /// Appends up to n bytes to `out` in bounded chunks, so that a header overstating the size cannot
  /// make us allocate more than the data actually present. Returns the number appended.
  uint64_t read_into(std::vector<unsigned char>& out, uint64_t n) {
    uint64_t done = 0;
    while (done < n) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n - done, uint64_t{1} << 22));
      const size_t old = out.size();
      out.resize(old + chunk);
      const size_t r = read(out.data() + old, chunk);
      out.resize(old + r);
      done += r;
      if (r < chunk) break;
    }
    return done;
  }

  /// Skips up to n bytes; returns the number skipped.
  uint64_t skip(uint64_t n) {
    std::vector<unsigned char> scratch(static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 20)));
    uint64_t done = 0;
    while (done < n) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n - done, scratch.size()));
      const size_t r = read(scratch.data(), chunk);
      done += r;
      if (r < chunk) break;
    }
    return done;
  }

  /// At the declared end of the data: a further byte means a wrong header. For gzip, reading on
  /// also makes the reader check the stream's trailer (checksum and length).
  void expect_end(const std::string& what) {
    unsigned char extra;
    CNNCERT_CHECK(read(&extra, 1) == 0, path_ << ": unexpected bytes after " << what);
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::unique_ptr<detail::GzipReader> gz_;
};

bool is_gz_name(const std::string& path) {
  return ends_with(lower(path), ".gz");
}

// True for MNIST idx names: `*-ubyte` or an extension starting with `.idx`, optionally `.gz`.
bool is_idx_name(const std::string& path) {
  std::string name = lower(fs::path(path).filename().string());
  if (ends_with(name, ".gz")) name.resize(name.size() - 3);
  return ends_with(name, "-ubyte") || fs::path(name).extension().string().rfind(".idx", 0) == 0;
}

constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;

// All labels of an idx labels file; their count must be `expected`.
std::vector<int64_t> read_idx_labels(const std::string& path, int64_t expected, const std::string& images) {
  check_file(path, "an idx labels file");
  const bool gz = is_gz_name(path);
  ByteReader r(path, gz);
  unsigned char hdr[8];
  CNNCERT_CHECK(r.read(hdr, 8) == 8, path << ": not an MNIST idx labels file (shorter than its 8-byte header)");
  const uint32_t magic = be32(hdr);
  CNNCERT_CHECK(magic == kIdxLabelsMagic,
                path << ": not an MNIST idx labels file (magic 0x" << std::hex << magic << ", expected 0x00000801)");
  const int64_t n = be32(hdr + 4);
  CNNCERT_CHECK(n == expected, path << ": has " << n << " labels but " << images << " has " << expected << " images");
  if (!gz) {
    const uint64_t data = regular_file_size(path) - 8;
    CNNCERT_CHECK(data >= static_cast<uint64_t>(n),
                  path << ": truncated: expected " << n << " label bytes, found " << data);
    CNNCERT_CHECK(data == static_cast<uint64_t>(n), path << ": " << data - n << " unexpected bytes after the labels");
  }
  std::vector<unsigned char> bytes;
  const uint64_t got = r.read_into(bytes, static_cast<uint64_t>(n));
  CNNCERT_CHECK(got == static_cast<uint64_t>(n),
                path << ": truncated: expected " << n << " label bytes, found " << got);
  r.expect_end("the labels");
  return std::vector<int64_t>(bytes.begin(), bytes.end());
}

// All labels of an explicit labels file (.npy or idx); their count must be `expected`.
std::vector<int64_t> read_labels_file(const std::string& path, int64_t expected, const std::string& images) {
  check_file(path, "a labels file");
  if (ends_with(lower(path), ".npy")) {
    const detail::NpyArray a = detail::read_npy(path);
    const bool shape_ok = a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[1] == 1);
    CNNCERT_CHECK(shape_ok,
                  path << ": labels must be a 1-D array (N,) or (N, 1), got " << a.shape.size() << " dimensions");
    CNNCERT_CHECK(a.shape[0] == expected,
                  path << ": has " << a.shape[0] << " labels but " << images << " has " << expected << " images");
    std::vector<int64_t> labels(a.data.size());
    for (size_t i = 0; i < a.data.size(); ++i) {
      const double v = a.data[i];
      CNNCERT_CHECK(std::isfinite(v) && v == std::floor(v) && v >= -1 && v < 9.0e15,
                    path << ": label " << i << " is " << v << ", not an integer class (or -1)");
      labels[i] = static_cast<int64_t>(v);
    }
    return labels;
  }
  CNNCERT_CHECK(is_idx_name(path), path << ": unsupported labels file (expected .npy or MNIST idx labels, "
                                           "*-ubyte / *.idx*, optionally .gz)");
  return read_idx_labels(path, expected, images);
}

// Labels [offset, offset+take) of `total` from `options.labels_path`, or from `sibling` when it
// exists; nullopt when neither applies.
std::optional<std::vector<int64_t>> external_labels(const std::string& images, const LoadOptions& o, int64_t total,
                                                    int64_t take, const std::string& sibling) {
  std::string path = o.labels_path;
  if (path.empty()) {
    std::error_code ec;
    if (sibling.empty() || !fs::is_regular_file(sibling, ec)) return std::nullopt;
    path = sibling;
  }
  std::vector<int64_t> all = read_labels_file(path, total, images);
  return std::vector<int64_t>(all.begin() + o.offset, all.begin() + o.offset + take);
}

ImageSet load_npy_images(const std::string& path, const LoadOptions& o) {
  const detail::NpyArray a = detail::read_npy(path);
  const size_t nd = a.shape.size();
  CNNCERT_CHECK(nd >= 1 && nd <= 4, path << ": expected images of shape (N, C, H, W), (N, H, W), (N, D) or (D), "
                                            "got an array with "
                                         << nd << " dimensions");
  int64_t total = 0, chw[3] = {0, 0, 0};
  if (nd == 4 || nd == 3) {
    total = a.shape[0];
    if (nd == 4)
      std::copy(a.shape.begin() + 1, a.shape.end(), chw);
    else
      chw[0] = 1, chw[1] = a.shape[1], chw[2] = a.shape[2];
    CNNCERT_CHECK(chw[0] > 0 && chw[1] > 0 && chw[2] > 0,
                  path << ": image shape " << chw_text(chw[0], chw[1], chw[2]) << " has a zero dimension");
    CNNCERT_CHECK(o.chw.empty() || (o.chw.size() == 3 && std::equal(o.chw.begin(), o.chw.end(), chw)),
                  path << ": the file holds " << chw_text(chw[0], chw[1], chw[2])
                       << " images (a 4-D array is read as N, C, H, W) but a different image shape was given");
  } else {
    total = nd == 2 ? a.shape[0] : 1;
    const int64_t d = a.shape[nd - 1];
    CNNCERT_CHECK(d > 0, path << ": images have no values");
    CNNCERT_CHECK(resolve_chw(path, o.chw, d, chw, o.flat_size),
                  path << ": cannot infer the image shape from " << d << " values per image (784 = 1×28×28 and "
                       << "3072 = 3×32×32 are recognised); give the shape (C, H, W) explicitly");
  }
  const int64_t take = take_count(path, total, o);
  ImageSet set;
  set.source = path;
  set.count = take;
  set.channels = chw[0], set.height = chw[1], set.width = chw[2];
  const int64_t d = set.image_size();
  set.pixels.assign(a.data.begin() + o.offset * d, a.data.begin() + (o.offset + take) * d);
  check_finite(set, o.offset);
  std::string sibling;
  if (ends_with(lower(path), ".npy")) sibling = path.substr(0, path.size() - 4) + ".labels.npy";
  set.labels = external_labels(path, o, total, take, sibling).value_or(std::vector<int64_t>(take, -1));
  return set;
}

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

bool parse_number(std::string_view tok, double& v) {
  if (!tok.empty() && tok.front() == '+') tok.remove_prefix(1);
  if (tok.empty()) return false;
  const auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
  return ec == std::errc() && ptr == tok.data() + tok.size();
}

std::string quoted_token(std::string_view tok) {
  std::string s(tok.substr(0, 40));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return "'" + s + (tok.size() > 40 ? "...'" : "'");
}

ImageSet load_csv_images(const std::string& path, const LoadOptions& o) {
  const std::string text = read_text_file(path);
  // Non-empty lines with their 1-based line numbers.
  std::vector<std::pair<std::string_view, int64_t>> rows;
  {
    std::string_view rest(text);
    int64_t line_no = 0;
    while (!rest.empty()) {
      ++line_no;
      const size_t nl = rest.find('\n');
      const std::string_view line = trim(rest.substr(0, nl));
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      if (!line.empty()) rows.emplace_back(line, line_no);
    }
  }
  CNNCERT_CHECK(!rows.empty(), path << ": empty file (no images)");
  const int64_t first_len = static_cast<int64_t>(std::count(rows[0].first.begin(), rows[0].first.end(), ',')) + 1;
  int64_t chw[3];
  CNNCERT_CHECK(first_len >= 2, path << ":" << rows[0].second << ": expected 'label,v1,...,vD', found one value");
  CNNCERT_CHECK(resolve_chw(path, o.chw, first_len - 1, chw, o.flat_size),
                path << ":" << rows[0].second << ": cannot infer the image shape from " << first_len - 1
                     << " values per row (784 = 1×28×28 and 3072 = 3×32×32 are recognised); give the shape "
                        "(C, H, W) explicitly");
  const int64_t total = static_cast<int64_t>(rows.size());
  const int64_t take = take_count(path, total, o);

  ImageSet set;
  set.source = path;
  set.count = take;
  set.channels = chw[0], set.height = chw[1], set.width = chw[2];
  const int64_t c_n = chw[0], hw = chw[1] * chw[2], d = set.image_size();
  set.pixels.resize(static_cast<size_t>(take * d));
  set.labels.resize(static_cast<size_t>(take));
  std::vector<double> row(static_cast<size_t>(d));
  for (int64_t k = 0; k < take; ++k) {
    const int64_t image = o.offset + k;
    const auto [line, line_no] = rows[static_cast<size_t>(image)];
    const int64_t found = static_cast<int64_t>(std::count(line.begin(), line.end(), ',')) + 1;
    CNNCERT_CHECK(found == d + 1, path << ":" << line_no << ": expected " << d + 1 << " values (label + " << d
                                       << " pixels), found " << found);
    size_t pos = 0;
    for (int64_t col = 0; col <= d; ++col) {
      const size_t comma = line.find(',', pos);
      const std::string_view tok = trim(line.substr(pos, comma == std::string_view::npos ? comma : comma - pos));
      pos = comma + 1;
      double v = 0;
      CNNCERT_CHECK(parse_number(tok, v),
                    path << ":" << line_no << ": column " << col + 1 << ": not a number: " << quoted_token(tok));
      CNNCERT_CHECK(std::isfinite(v), path << ":" << line_no << ": column " << col + 1 << ": image " << image
                                           << " contains a NaN or Inf value");
      if (col == 0) {
        CNNCERT_CHECK(v == std::floor(v) && v >= -1 && v < 9.0e15,
                      path << ":" << line_no << ": column 1: the label must be an integer class (or -1), got "
                           << quoted_token(tok));
        set.labels[static_cast<size_t>(k)] = static_cast<int64_t>(v);
      } else {
        row[static_cast<size_t>(col - 1)] = v;
      }
    }
    double* dst = set.pixels.data() + k * d;
    if (o.csv_hwc) {
      // Row value (h*W + w)*C + c goes to c*H*W + h*W + w.
      for (int64_t p = 0; p < hw; ++p)
        for (int64_t c = 0; c < c_n; ++c) dst[c * hw + p] = row[static_cast<size_t>(p * c_n + c)];
    } else {
      std::copy(row.begin(), row.end(), dst);
    }
  }
  if (!o.labels_path.empty()) set.labels = *external_labels(path, o, total, take, {});
  return set;
}

ImageSet load_idx_images(const std::string& path, const LoadOptions& o) {
  const bool gz = is_gz_name(path);
  ByteReader r(path, gz);
  unsigned char hdr[16];
  CNNCERT_CHECK(r.read(hdr, 4) == 4, path << ": not an MNIST idx file (shorter than its 4-byte magic)");
  const uint32_t magic = be32(hdr);
  CNNCERT_CHECK(magic != kIdxLabelsMagic,
                path << ": this is an idx labels file (magic 0x00000801), not images; pass it as the labels file");
  CNNCERT_CHECK(magic == kIdxImagesMagic, path << ": not an MNIST idx image file (magic 0x" << std::hex << magic
                                               << ", expected 0x00000803 = unsigned bytes, 3 dimensions)");
  CNNCERT_CHECK(r.read(hdr + 4, 12) == 12, path << ": truncated: the file ends inside the idx header");
  const int64_t n = be32(hdr + 4), h = be32(hdr + 8), w = be32(hdr + 12);
  CNNCERT_CHECK(h > 0 && w > 0, path << ": idx header gives images of " << h << "×" << w);
  const uint64_t image_bytes = static_cast<uint64_t>(h) * static_cast<uint64_t>(w);
  uint64_t data_bytes = 0;
  CNNCERT_CHECK(!__builtin_mul_overflow(image_bytes, static_cast<uint64_t>(n), &data_bytes),
                path << ": idx header gives an impossible size " << n << "×" << h << "×" << w);
  if (!gz) {
    const uint64_t have = regular_file_size(path) - 16;
    CNNCERT_CHECK(have >= data_bytes, path << ": truncated: header says " << n << " images of " << h << "×" << w << " ("
                                           << data_bytes << " bytes) but the file has " << have << " bytes of data");
    CNNCERT_CHECK(have == data_bytes, path << ": " << have - data_bytes << " unexpected bytes after the data (" << n
                                           << " images of " << h << "×" << w << ")");
  }
  const int64_t take = take_count(path, n, o);
  const auto truncated = [&](uint64_t upto) {
    return std::string(": truncated: header says ") + std::to_string(n) + " images of " + std::to_string(h) + "×" +
           std::to_string(w) + " but the data ends before byte " + std::to_string(upto);
  };
  const uint64_t skip = static_cast<uint64_t>(o.offset) * image_bytes;
  CNNCERT_CHECK(r.skip(skip) == skip, path << truncated(skip));
  std::vector<unsigned char> bytes;
  const uint64_t want = static_cast<uint64_t>(take) * image_bytes;
  CNNCERT_CHECK(r.read_into(bytes, want) == want, path << truncated(skip + want));
  if (o.offset + take == n) {
    // At the declared end: any further data means a wrong header (and, for gzip, this makes
    // the reader verify the stream's checksum).
    r.expect_end("the data (" + std::to_string(n) + " images of " + std::to_string(h) + "×" + std::to_string(w) + ")");
  }

  ImageSet set;
  set.source = path;
  set.count = take;
  set.channels = 1, set.height = h, set.width = w;
  set.pixels.assign(bytes.begin(), bytes.end());
  std::string sibling;
  const fs::path p(path);
  std::string name = p.filename().string();
  for (const auto& [from, to] : {std::pair{"images-idx3", "labels-idx1"}, std::pair{"images.idx3", "labels.idx1"}}) {
    const size_t at = name.find(from);
    if (at != std::string::npos) {
      sibling = (p.parent_path() / name.replace(at, std::string_view(from).size(), to)).string();
      break;
    }
  }
  set.labels = external_labels(path, o, n, take, sibling).value_or(std::vector<int64_t>(take, -1));
  return set;
}

ImageSet load_cifar_images(const std::string& path, const LoadOptions& o) {
  const uint64_t size = regular_file_size(path);
  CNNCERT_CHECK(size > 0, path << ": empty file (no images)");
  CNNCERT_CHECK(size % kCifarRecordBytes == 0, path << ": size " << size << " bytes is not a multiple of "
                                                    << kCifarRecordBytes
                                                    << " (a CIFAR-10 record is 1 label byte + 3072 pixel bytes)");
  const int64_t total = static_cast<int64_t>(size / kCifarRecordBytes);
  const int64_t take = take_count(path, total, o);
  ByteReader r(path, false);
  const uint64_t skip = static_cast<uint64_t>(o.offset) * kCifarRecordBytes;
  const uint64_t want = static_cast<uint64_t>(take) * kCifarRecordBytes;
  std::vector<unsigned char> bytes;
  CNNCERT_CHECK(r.skip(skip) == skip && r.read_into(bytes, want) == want, path << ": read error (file shrank?)");

  ImageSet set;
  set.source = path;
  set.count = take;
  set.channels = 3, set.height = 32, set.width = 32;
  set.pixels.resize(static_cast<size_t>(take * kCifarImageBytes));
  set.labels.resize(static_cast<size_t>(take));
  for (int64_t k = 0; k < take; ++k) {
    const unsigned char* rec = bytes.data() + k * kCifarRecordBytes;
    CNNCERT_CHECK(rec[0] <= 9, path << ": record " << o.offset + k << " has label " << int{rec[0]}
                                    << ", not a CIFAR-10 class 0-9 (is this a CIFAR-100 file?)");
    set.labels[static_cast<size_t>(k)] = rec[0];
    std::copy(rec + 1, rec + kCifarRecordBytes, set.pixels.begin() + k * kCifarImageBytes);
  }
  if (!o.labels_path.empty()) set.labels = *external_labels(path, o, total, take, {});
  return set;
}

// Per-channel values of mean/std: empty → `fallback`, size 1 → broadcast, size C → as is.
std::vector<double> per_channel(const std::vector<double>& v, int64_t channels, double fallback, const char* what,
                                const std::string& source) {
  if (v.empty()) return std::vector<double>(static_cast<size_t>(channels), fallback);
  CNNCERT_CHECK(v.size() == 1 || static_cast<int64_t>(v.size()) == channels,
                source << ": " << v.size() << " " << what << " values for " << channels << "-channel images (give 1 or "
                       << channels << ")");
  if (v.size() == 1) return std::vector<double>(static_cast<size_t>(channels), v[0]);
  return v;
}

}  // namespace

ImageSet load_images(const std::string& path, const LoadOptions& options) {
  check_file(path, "an image file");
  const std::string name = lower(fs::path(path).filename().string());
  if (ends_with(name, ".npy")) return load_npy_images(path, options);
  if (ends_with(name, ".csv")) return load_csv_images(path, options);
  if (is_idx_name(path)) return load_idx_images(path, options);
  if (ends_with(name, ".bin")) return load_cifar_images(path, options);
  CNNCERT_CHECK(false, path << ": unknown image format (" << kSupportedFormats << ")");
  return {};
}

Layout parse_layout(const std::string& s) {
  const std::string l = lower(s);
  if (l == "nchw") return Layout::NCHW;
  if (l == "nhwc") return Layout::NHWC;
  if (l == "flat") return Layout::Flat;
  if (l == "colmajor" || l == "column-major") return Layout::ColumnMajor;
  CNNCERT_CHECK(false, "unknown layout '" << s << "' (expected NCHW, NHWC, flat or colmajor)");
  return Layout::NCHW;
}

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::NCHW: return "NCHW";
    case Layout::NHWC: return "NHWC";
    case Layout::Flat: return "flat";
    case Layout::ColumnMajor: return "colmajor";
  }
  return "?";
}

std::optional<Preprocess> load_sidecar(const std::string& model_path) {
  const std::string path = model_path + ".json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  return read_sidecar(path);
}

namespace {

/// The keys a sidecar may have: the convention, and informational ones (what trained the model).
/// Anything else is most likely a typo (e.g. "stdev") that would silently change nothing.
constexpr const char* kSidecarKeys[] = {
    "scale",      "mean",         "std",     "layout",  "dataset",    "notes",  "input_range",        "test_accuracy",
    "seed",       "architecture", "command", "trainer", "parameters", "epochs", "activation_neurons", "onnx_ops",
    "activation", "source",       "license", "comment", "description"};

}  // namespace

Preprocess read_sidecar(const std::string& path) {
  std::error_code ec;
  CNNCERT_CHECK(fs::exists(path, ec), path << ": cannot open the sidecar (no such file)");
  CNNCERT_CHECK(!fs::is_directory(path, ec), path << ": is a directory, not a JSON sidecar");
  const std::string text = read_text_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    CNNCERT_CHECK(false, path << ": malformed JSON: " << e.what());
  }
  CNNCERT_CHECK(j.is_object(),
                path << ": the sidecar must be a JSON object with keys scale, mean, std, layout, dataset");

  for (const auto& item : j.items()) {
    const std::string& key = item.key();
    if (key.rfind("x-", 0) == 0 || key.rfind("_", 0) == 0) continue;  // free-form additions
    CNNCERT_CHECK(std::find_if(std::begin(kSidecarKeys), std::end(kSidecarKeys),
                               [&](const char* k) { return key == k; }) != std::end(kSidecarKeys),
                  path << ": unknown key \"" << key << "\" (the convention keys are scale, mean, std, layout; "
                       << "informational ones dataset, notes, input_range, ...; prefix your own with \"x-\")");
  }
  Preprocess p;
  if (j.contains("scale")) {
    const auto& v = j["scale"];
    CNNCERT_CHECK(v.is_number() || v.is_string(), path << ": \"scale\" must be a number or a string such as \"1/255\"");
    if (v.is_string()) {  // as the command line takes it: "0.5", "1/255"
      const std::string t = v.get<std::string>();
      const auto slash = t.find('/');
      try {
        size_t used = 0;
        const std::string num = t.substr(0, slash);
        double x = std::stod(num, &used);
        if (used != num.size()) throw std::invalid_argument("trailing text");
        if (slash != std::string::npos) {
          const std::string den = t.substr(slash + 1);
          const double d = std::stod(den, &used);
          if (used != den.size() || d == 0) throw std::invalid_argument("bad denominator");
          x /= d;
        }
        p.scale = x;
      } catch (const std::exception&) {
        CNNCERT_CHECK(false, path << ": \"scale\" '" << t << "' is not a number (e.g. 0.5 or \"1/255\")");
      }
    } else {
      p.scale = v.get<double>();
    }
    CNNCERT_CHECK(std::isfinite(p.scale) && p.scale > 0,
                  path << ": \"scale\" must be positive and finite, got " << p.scale);
  }
  const auto numbers = [&](const char* key, bool positive) {
    std::vector<double> out;
    const auto& v = j[key];
    if (v.is_number()) {
      out.push_back(v.get<double>());
    } else {
      CNNCERT_CHECK(v.is_array() && !v.empty(), path << ": \"" << key
                                                     << "\" must be a number or a non-empty array "
                                                        "of numbers");
      for (const auto& e : v) {
        CNNCERT_CHECK(e.is_number(), path << ": \"" << key << "\" must contain only numbers, got " << e.dump());
        out.push_back(e.get<double>());
      }
    }
    for (double x : out) {
      CNNCERT_CHECK(std::isfinite(x), path << ": \"" << key << "\" values must be finite");
      CNNCERT_CHECK(!positive || x > 0, path << ": \"" << key << "\" values must be > 0, got " << x);
    }
    return out;
  };
  if (j.contains("mean")) p.mean = numbers("mean", false);
  if (j.contains("std")) p.std = numbers("std", true);
  if (j.contains("layout")) {
    CNNCERT_CHECK(j["layout"].is_string(), path << ": \"layout\" must be a string (NCHW, NHWC, flat or colmajor)");
    const std::string s = j["layout"].get<std::string>();
    try {
      p.layout = parse_layout(s);
    } catch (const InvalidArgument& e) {
      CNNCERT_CHECK(false, path << ": " << e.what());
    }
  }
  if (j.contains("dataset")) {
    CNNCERT_CHECK(j["dataset"].is_string(), path << ": \"dataset\" must be a string");
    p.dataset = j["dataset"].get<std::string>();
  }
  return p;
}

std::vector<double> preprocess(const ImageSet& set, const Preprocess& p, const Network& net, int64_t first,
                               int64_t count) {
  const std::string src = set.source.empty() ? std::string("images") : set.source;
  CNNCERT_CHECK(first >= 0 && first <= set.count,
                src << ": first image " << first << " is outside the " << set.count << " loaded images");
  CNNCERT_CHECK(count >= -1, src << ": image count must be >= 0 (or -1 for all), got " << count);
  if (count < 0) count = set.count - first;
  CNNCERT_CHECK(count <= set.count - first, src << ": images [" << first << ", " << first + count
                                                << ") are outside the " << set.count << " loaded images");
  const int64_t c_n = set.channels, hw = set.height * set.width, d = set.image_size();
  CNNCERT_CHECK(set.channels > 0 && set.height > 0 && set.width > 0,
                src << ": invalid image shape " << chw_text(set.channels, set.height, set.width));
  CNNCERT_CHECK(static_cast<int64_t>(set.pixels.size()) == set.count * d,
                src << ": image set holds " << set.pixels.size() << " values, expected " << set.count << " × " << d);
  CNNCERT_CHECK(static_cast<int64_t>(set.labels.size()) == set.count || set.labels.empty(),
                src << ": image set has " << set.labels.size() << " labels for " << set.count << " images");
  CNNCERT_CHECK(net.input_size() == d, src << ": images are C×H×W = " << chw_text(set.channels, set.height, set.width)
                                           << " = " << d << " values but the model input "
                                           << shape_str(net.input_shape()) << " needs " << net.input_size());
  CNNCERT_CHECK(std::isfinite(p.scale), src << ": the pixel scale must be finite, got " << p.scale);
  const std::vector<double> mean = per_channel(p.mean, c_n, 0.0, "mean", src);
  const std::vector<double> stdev = per_channel(p.std, c_n, 1.0, "std", src);
  for (int64_t c = 0; c < c_n; ++c) {
    CNNCERT_CHECK(std::isfinite(mean[c]), src << ": mean values must be finite");
    CNNCERT_CHECK(std::isfinite(stdev[c]) && stdev[c] > 0,
                  src << ": std values must be > 0 and finite, got " << stdev[c]);
  }

  std::vector<double> out(static_cast<size_t>(count * d));
  for (int64_t k = 0; k < count; ++k) {
    const double* src_px = set.pixels.data() + (first + k) * d;
    double* dst = out.data() + k * d;
    for (int64_t c = 0; c < c_n; ++c) {
      for (int64_t q = 0; q < hw; ++q) {
        const double v = (src_px[c * hw + q] * p.scale - mean[c]) / stdev[c];
        CNNCERT_CHECK(std::isfinite(v), src << ": image " << first + k << " has a value that is not finite after "
                                            << "scaling and normalization (pixel " << src_px[c * hw + q]
                                            << "; check the scale, mean and std)");
        const int64_t y = q / set.width, x = q % set.width;
        dst[p.layout == Layout::NHWC          ? q * c_n + c
            : p.layout == Layout::ColumnMajor ? y + set.height * (x + set.width * c)
                                              : c * hw + q] = v;
      }
    }
  }
  return out;
}

}  // namespace cnncert
