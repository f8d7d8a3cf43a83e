#pragma once
// Reading input files, plain or gzip-compressed (internal).
#include <memory>
#include <string>

namespace cnncert::detail {

/// The bytes of `path`, decompressed when it ends in ".gz"; `what` names the file in errors
/// ("the model file"). A missing, unreadable or corrupt file, a directory, or more than
/// `max_bytes` of content is an InvalidArgument naming the path.
std::string read_whole_file(const std::string& path, const std::string& what, size_t max_bytes = size_t{1} << 32);

/// Sequential decompression of a gzip file (one or more members, as `gzip` writes and
/// concatenates them). Unlike zlib's gzread, which returns a clean end of file for a stream
/// cut off inside its last block's trailer once the file's bytes are all buffered, a stream
/// that ends before its trailer is an error here, and so is any byte after the last member
/// that does not start another. Errors are InvalidArgument naming the path. Without zlib the
/// constructor throws.
class GzipReader {
 public:
  explicit GzipReader(const std::string& path);
  ~GzipReader();
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  /// Decompresses up to n bytes into dst; fewer only at the end of the last member, after its
  /// checksum and length were verified.
  size_t read(unsigned char* dst, size_t n);

 private:
  struct State;
  std::string path_;
  std::unique_ptr<State> s_;
};

}  // namespace cnncert::detail
