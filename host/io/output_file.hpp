#pragma once
/// \file output_file.hpp
/// Result files named on a command line (--json, --csv, -o): checked before the computation
/// starts, written whole at the end, never left half-written.

#include <initializer_list>
#include <sstream>
#include <string>

namespace cnncert::detail {

/// One output of a command. The constructor checks the path at once (so a typo fails before an
/// hour of certification): "-" and /dev/stdout are the standard output, which then holds this
/// output alone (route_text_to_stderr: the command's text goes to stderr); an existing directory, a
/// read-only file or a missing folder is an InvalidArgument naming the option. The text goes to
/// stream(); commit() writes it: a regular file through a temporary file beside it (beside the
/// link's target for a symbolic link) that is renamed over the target only after every byte was
/// written, synced and closed; a device or pipe (/dev/null, /dev/fd/N) directly; a file with
/// several hard links, or one in a folder that cannot take the temporary file, in place. Every
/// write, the flush and the close are checked; a failure is an InvalidArgument and removes the
/// temporary file, so no partial file is left behind (also not on SIGINT/SIGTERM/SIGHUP/SIGPIPE).
/// Without commit() (the computation failed) nothing is written.
class OutputFile {
 public:
  OutputFile() = default;
  /// `path` empty = no output (enabled() is false); `what` names it in errors, e.g. "--json".
  OutputFile(std::string path, std::string what);
  OutputFile(OutputFile&& o) noexcept;
  OutputFile& operator=(OutputFile&& o) noexcept;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();

  bool enabled() const { return !path_.empty(); }
  bool is_stdout() const { return path_ == "-"; }
  const std::string& path() const { return path_; }
  std::ostream& stream() { return buffer_; }
  /// Writes what stream() holds to the target; throws InvalidArgument when any write fails.
  void commit() {
    prepare();
    publish();
  }
  /// The two halves of commit(), for several outputs that must appear together: prepare() writes
  /// and closes the temporary file (or writes a device/stdout), publish() renames it into place.
  void prepare();
  void publish();

 private:
  void discard() noexcept;
  [[noreturn]] void fail(const std::string& why);

  std::string path_, what_, temp_;
  std::string target_;     // where the temporary file is renamed to (the resolved link target)
  int fd_ = -1;            // the open temporary file, device, or (in place) the target itself
  bool in_place_ = false;  // truncate and write the target itself at prepare()
  bool prepared_ = false;
  std::ostringstream buffer_;
};

/// Commits every output, all temporary files first and then the renames, so that a failed write
/// of one leaves none of them half there.
void commit_all(std::initializer_list<OutputFile*> outputs);

/// Flushes the standard output and throws InvalidArgument when anything written to it was lost
/// (e.g. `> /dev/full`).
void check_stdout();

/// From now on std::cout writes to the standard error, and data_stdout() is the standard output:
/// for a command whose result file is "-" (`--json -`), so that stdout parses as that file alone.
void route_text_to_stderr();
/// The standard output for result data (std::cout until route_text_to_stderr()).
std::ostream& data_stdout();

}  // namespace cnncert::detail
