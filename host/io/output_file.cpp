// Output files checked up front and written atomically (output_file.hpp).
#include "io/output_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cnncert/error.hpp"

namespace cnncert::detail {

namespace {
std::string errno_text() {
  return std::strerror(errno);
}

// Writes all of `data` to `fd`, retrying short writes; false on an error.
bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}
// Temporary files that exist right now, removed by a terminating signal (Ctrl-C, kill) so that
// an interrupted run leaves nothing behind either. Slots hold the c_str() of OutputFile::temp_.
constexpr int kSlots = 16;
std::atomic<const char*> g_temps[kSlots];

extern "C" void remove_temps_and_reraise(int sig) {
  for (auto& slot : g_temps)
    if (const char* p = slot.load()) ::unlink(p);  // async-signal-safe
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void register_temp(const char* path) {
  static const bool installed = [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE})
      if (std::signal(sig, remove_temps_and_reraise) == SIG_IGN) std::signal(sig, SIG_IGN);  // keep nohup's choice
    return true;
  }();
  (void)installed;
  for (auto& slot : g_temps) {
    const char* expected = nullptr;
    if (slot.compare_exchange_strong(expected, path)) return;
  }  // all slots taken (more than 16 outputs at once): such a file is not removed on a signal
}

void unregister_temp(const char* path) {
  for (auto& slot : g_temps) {
    const char* expected = path;
    if (slot.compare_exchange_strong(expected, nullptr)) return;
  }
}
}  // namespace

namespace {
// "/dev/fd/N" or "/proc/self/fd/N": the descriptor N, else -1.
int fd_path(const std::string& p) {
  for (const char* prefix : {"/dev/fd/", "/proc/self/fd/"}) {
    const std::string pre(prefix);
    if (p.rfind(pre, 0) == 0 && p.size() > pre.size() && p.size() - pre.size() < 6 &&
        p.find_first_not_of("0123456789", pre.size()) == std::string::npos)
      return std::stoi(p.substr(pre.size()));
  }
  return -1;
}
}  // namespace

namespace {
std::ostream* g_data_stdout = nullptr;  // the real standard output once std::cout carries the text to stderr
}  // namespace

std::ostream& data_stdout() {
  return g_data_stdout ? *g_data_stdout : std::cout;
}

void route_text_to_stderr() {
  if (g_data_stdout) return;
  g_data_stdout = new std::ostream(std::cout.rdbuf());  // never destroyed: usable until the process ends
  std::cout.flush();
  std::cout.rdbuf(std::cerr.rdbuf());
}

OutputFile::OutputFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
  if (path_ == "/dev/stdout" || fd_path(path_) == 1) path_ = "-";
  if (is_stdout()) route_text_to_stderr();  // the standard output holds this file alone
  if (path_.empty() || is_stdout()) return;
  if (path_ == "/dev/stderr" || fd_path(path_) >= 0) {  // an open descriptor: written through a copy of it
    const int fd = path_ == "/dev/stderr" ? 2 : fd_path(path_);
    fd_ = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (fd_ < 0) fail("is not an open descriptor (" + errno_text() + ")");
    return;
  }
  target_ = path_;
  struct stat lst {};
  if (::lstat(path_.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    // A symbolic link: write to what it points to, and keep the link.
    char* real = ::realpath(path_.c_str(), nullptr);
    if (!real) fail("is a symbolic link to a missing file");
    target_ = real;
    std::free(real);
  }
  struct stat st {};
  const bool exists = ::stat(target_.c_str(), &st) == 0;
  if (exists) {
    if (S_ISDIR(st.st_mode)) fail("is a directory");
    if (!S_ISREG(st.st_mode)) {  // a device or pipe: written in place
      fd_ = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd_ < 0) fail("cannot be opened for writing (" + errno_text() + ")");
      return;
    }
    // Checked by the mode bits too: root may write anything, but a read-only file is not meant
    // to be replaced.
    if ((st.st_mode & 0222) == 0 || ::access(target_.c_str(), W_OK) != 0) fail("is read-only");
  }
  const std::filesystem::path target(target_);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) fail("its folder '" + dir.string() + "' does not exist");
  if (exists && st.st_nlink > 1) {  // a rename would split the hard links: write in place
    fd_ = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot be opened for writing (" + errno_text() + ")");
    in_place_ = true;
    return;
  }
  std::string templ = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  fd_ = ::mkostemp(templ.data(), O_CLOEXEC);
  if (fd_ < 0 && exists) {  // a writable file in a folder we cannot write: in place
    fd_ = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot be opened for writing (" + errno_text() + ")");
    in_place_ = true;
    return;
  }
  if (fd_ < 0) fail("cannot be created in '" + dir.string() + "' (" + errno_text() + ")");
  temp_ = templ;
  register_temp(temp_.c_str());
  if (exists) {  // the new file keeps the old one's mode and (where allowed) owner
    ::fchmod(fd_, st.st_mode & 07777);
    if (::fchown(fd_, st.st_uid, st.st_gid) != 0) { /* not allowed: keep ours */
    }
  } else {  // the mode a new file would get (mkstemp makes 0600)
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_, 0666 & ~mask);
  }
}

OutputFile::OutputFile(OutputFile&& o) noexcept {
  *this = std::move(o);
}

OutputFile& OutputFile::operator=(OutputFile&& o) noexcept {
  if (this != &o) {
    discard();
    if (!o.temp_.empty()) unregister_temp(o.temp_.c_str());
    path_ = std::move(o.path_);
    what_ = std::move(o.what_);
    target_ = std::move(o.target_);
    in_place_ = o.in_place_;
    prepared_ = o.prepared_;
    temp_ = std::move(o.temp_);
    if (!temp_.empty()) register_temp(temp_.c_str());
    fd_ = o.fd_;
    buffer_ = std::move(o.buffer_);
    o.path_.clear();
    o.temp_.clear();
    o.fd_ = -1;
  }
  return *this;
}

OutputFile::~OutputFile() {
  discard();
}

void OutputFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) {
    ::unlink(temp_.c_str());
    unregister_temp(temp_.c_str());
  }
  temp_.clear();
}

void OutputFile::fail(const std::string& why) {
  discard();
  throw InvalidArgument(what_ + " " + path_ + ": " + why);
}

void OutputFile::prepare() {
  if (!enabled() || prepared_) return;
  prepared_ = true;
  const std::string data = std::move(buffer_).str();
  buffer_.str({});
  if (is_stdout()) {
    data_stdout() << data;
    check_stdout();
    return;
  }
  if (in_place_ && ::ftruncate(fd_, 0) != 0) fail("cannot be truncated (" + errno_text() + ")");
  if (!write_all(fd_, data)) fail("write failed (" + errno_text() + ")" + (in_place_ ? "" : "; nothing was written"));
  if (!temp_.empty() && ::fsync(fd_) != 0) fail("write failed at sync (" + errno_text() + "); nothing was written");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("write failed at close (" + errno_text() + ")");
}

void OutputFile::publish() {
  if (!enabled()) return;
  prepare();
  if (temp_.empty()) return;  // stdout, a device, a descriptor, or written in place
  if (::rename(temp_.c_str(), target_.c_str()) != 0) fail("cannot be replaced (" + errno_text() + ")");
  unregister_temp(temp_.c_str());
  temp_.clear();
}

void commit_all(std::initializer_list<OutputFile*> outputs) {
  for (OutputFile* o : outputs) o->prepare();
  for (OutputFile* o : outputs) o->publish();
}

void check_stdout() {
  std::ostream& out = data_stdout();
  out.flush();
  if (!out || std::fflush(stdout) != 0 || std::ferror(stdout)) {
    out.clear();
    throw InvalidArgument("cannot write to the standard output (" + errno_text() + ")");
  }
}

}  // namespace cnncert::detail
