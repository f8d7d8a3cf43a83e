// Reading input files, plain or gzip-compressed (host/io/read_file.hpp).
#include "io/read_file.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cnncert/error.hpp"

#ifdef CNNCERT_HAVE_ZLIB
#include <zlib.h>
#endif

namespace cnncert::detail {

#ifdef CNNCERT_HAVE_ZLIB
struct GzipReader::State {
  std::FILE* file = nullptr;
  z_stream z{};
  bool z_ready = false;
  bool done = false;  // the last member's trailer was checked and no input follows
  unsigned char in[1 << 16];
  ~State() {  // also when the constructor throws
    if (z_ready) inflateEnd(&z);
    if (file) std::fclose(file);
  }
};

GzipReader::GzipReader(const std::string& path) : path_(path), s_(std::make_unique<State>()) {
  s_->file = std::fopen(path.c_str(), "rb");
  if (!s_->file) throw InvalidArgument(path + ": cannot open for reading (no such file or not readable)");
  // 16 + 15: a gzip wrapper (not zlib's), the largest window.
  if (inflateInit2(&s_->z, 16 + MAX_WBITS) != Z_OK) throw InvalidArgument(path + ": cannot start gzip decompression");
  s_->z_ready = true;
}

size_t GzipReader::read(unsigned char* dst, size_t n) {
  State& s = *s_;
  const auto refill = [&] {  // the next piece of the file; false at its end
    const size_t got = std::fread(s.in, 1, sizeof s.in, s.file);
    if (std::ferror(s.file)) throw InvalidArgument(path_ + ": read error");
    s.z.next_in = s.in;
    s.z.avail_in = static_cast<uInt>(got);
    return got > 0;
  };
  size_t done = 0;
  while (done < n && !s.done) {
    if (s.z.avail_in == 0 && !refill())
      throw InvalidArgument(path_ + ": truncated gzip file (it ends inside the compressed stream)");
    const size_t want = std::min<size_t>(n - done, size_t{1} << 30);
    s.z.next_out = dst + done;
    s.z.avail_out = static_cast<uInt>(want);
    const int rc = inflate(&s.z, Z_NO_FLUSH);
    done += want - s.z.avail_out;
    if (rc == Z_STREAM_END) {
      // The member's checksum and length matched. Another member may follow; anything else is
      // not part of a gzip file.
      if (s.z.avail_in == 0 && !refill()) {
        s.done = true;
      } else if (s.z.next_in[0] == 0x1f && (s.z.avail_in == 1 || s.z.next_in[1] == 0x8b)) {
        // (a header split across two reads: inflate checks the rest)
        inflateReset(&s.z);
      } else {
        throw InvalidArgument(path_ + ": corrupt gzip data (bytes after the end of the compressed stream)");
      }
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      throw InvalidArgument(path_ + ": corrupt gzip data (" +
                            (s.z.msg ? s.z.msg : "inflate error " + std::to_string(rc)) + ")");
    }
  }
  return done;
}
#else
struct GzipReader::State {};
GzipReader::GzipReader(const std::string& path) : path_(path) {
  throw InvalidArgument(path +
                        ": reading .gz files needs zlib, and cnncert was built without it (gunzip the file first)");
}
size_t GzipReader::read(unsigned char*, size_t) {
  return 0;
}
#endif
GzipReader::~GzipReader() = default;

std::string read_whole_file(const std::string& path, const std::string& what, size_t max_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InvalidArgument(path + ": is a directory, not " + what);
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  std::string bytes;
  char buf[1 << 16];
  const auto append = [&](size_t n, const char* grows) {
    bytes.append(buf, n);
    if (bytes.size() > max_bytes)
      throw InvalidArgument(path + ": " + what + grows + std::to_string(max_bytes >> 20) + " MiB");
  };
  if (!gz) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw InvalidArgument(path + ": cannot open " + what + " (no such file or not readable)");
    while (f.read(buf, sizeof buf) || f.gcount() > 0)  // in pieces, so that /dev/zero stops at the limit
      append(static_cast<size_t>(f.gcount()), " is larger than ");
    if (f.bad()) throw InvalidArgument(path + ": error while reading " + what);
  } else {
    // A stream cut short is an error (GzipReader), not a shorter file: a property read short
    // would lose constraints (more counterexamples, a wrong "sat").
    GzipReader f(path);
    size_t n;
    while ((n = f.read(reinterpret_cast<unsigned char*>(buf), sizeof buf)) > 0)
      append(n, " decompresses to more than ");
  }
  return bytes;
}

}  // namespace cnncert::detail
