#pragma once
// Reading a whole input file, plain or gzip-compressed (internal).
#include <string>

namespace cnncert::detail {

/// The bytes of `path`, decompressed when it ends in ".gz"; `what` names the file in errors
/// ("the model file"). A missing, unreadable or corrupt file, a directory, or more than
/// `max_bytes` of content is an InvalidArgument naming the path.
std::string read_whole_file(const std::string& path, const std::string& what, size_t max_bytes = size_t{1} << 32);

}  // namespace cnncert::detail
