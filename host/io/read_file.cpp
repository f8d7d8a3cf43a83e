// Whole-file reads, plain or gzip-compressed (host/io/read_file.hpp).
#include "io/read_file.hpp"

#include <filesystem>
#include <fstream>

#include "cnncert/error.hpp"

#ifdef CNNCERT_HAVE_ZLIB
#include <zlib.h>
#endif

namespace cnncert::detail {

std::string read_whole_file(const std::string& path, const std::string& what, size_t max_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InvalidArgument(path + ": is a directory, not " + what);
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  std::string bytes;
  if (!gz) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw InvalidArgument(path + ": cannot open " + what + " (no such file or not readable)");
    char buf[1 << 16];
    while (f.read(buf, sizeof buf) || f.gcount() > 0) {  // in pieces, so that /dev/zero stops at the limit
      bytes.append(buf, static_cast<size_t>(f.gcount()));
      if (bytes.size() > max_bytes)
        throw InvalidArgument(path + ": " + what + " is larger than " + std::to_string(max_bytes >> 20) + " MiB");
    }
    if (f.bad()) throw InvalidArgument(path + ": error while reading " + what);
  } else {
#ifdef CNNCERT_HAVE_ZLIB
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) throw InvalidArgument(path + ": cannot open " + what + " (no such file or not readable)");
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) {
      bytes.append(buf, static_cast<size_t>(n));
      if (bytes.size() > max_bytes) {
        gzclose(f);
        throw InvalidArgument(path + ": " + what + " decompresses to more than " + std::to_string(max_bytes >> 20) +
                              " MiB");
      }
    }
    // A stream cut short ends with n == 0 and Z_BUF_ERROR: reading it as a shorter file would drop
    // constraints of a property (more counterexamples, a wrong "sat").
    int err = Z_OK;
    const char* msg = gzerror(f, &err);
    const std::string why = msg ? msg : "";
    gzclose(f);
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END))
      throw InvalidArgument(path + ": not a valid or a truncated gzip file (" +
                            (why.empty() ? std::string("read error") : why) + ")");
#else
    throw InvalidArgument(path + ": reading .gz needs zlib, and cnncert was built without it (gunzip the file first)");
#endif
  }
  if (bytes.size() > max_bytes)
    throw InvalidArgument(path + ": " + what + " is larger than " + std::to_string(max_bytes >> 20) + " MiB");
  return bytes;
}

}  // namespace cnncert::detail
