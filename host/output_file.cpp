// Output files checked up front and written atomically (output_file.hpp).
#include "output_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cnncert/error.hpp"

namespace cnncert::detail {

namespace {
std::string errno_text() { return std::strerror(errno); }

// Writes all of `data` to `fd`, retrying short writes; false on an error.
bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
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
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
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

OutputFile::OutputFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
  if (path_.empty() || is_stdout()) return;
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("is a directory");
    if (!S_ISREG(st.st_mode)) {  // a device or pipe: written in place
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd_ < 0) fail("cannot be opened for writing (" + errno_text() + ")");
      return;
    }
    // Checked by the mode bits too: root may write anything, but a read-only file is not meant
    // to be replaced.
    if ((st.st_mode & 0222) == 0 || ::access(path_.c_str(), W_OK) != 0) fail("is read-only");
  }
  const std::filesystem::path target(path_);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) fail("its folder '" + dir.string() + "' does not exist");
  std::string templ = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  fd_ = ::mkstemp(templ.data());
  if (fd_ < 0) fail("cannot be created in '" + dir.string() + "' (" + errno_text() + ")");
  temp_ = templ;
  register_temp(temp_.c_str());
}

OutputFile::OutputFile(OutputFile&& o) noexcept { *this = std::move(o); }

OutputFile& OutputFile::operator=(OutputFile&& o) noexcept {
  if (this != &o) {
    discard();
    if (!o.temp_.empty()) unregister_temp(o.temp_.c_str());
    path_ = std::move(o.path_);
    what_ = std::move(o.what_);
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

OutputFile::~OutputFile() { discard(); }

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

void OutputFile::commit() {
  if (!enabled()) return;
  const std::string data = buffer_.str();
  if (is_stdout()) {
    std::cout << data;
    check_stdout();
    return;
  }
  if (!write_all(fd_, data)) fail("write failed (" + errno_text() + "); nothing was written");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("write failed at close (" + errno_text() + "); nothing was written");
  if (temp_.empty()) return;  // a device: written in place
  // The mode a new file would get (mkstemp makes 0600).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  struct stat st {};
  const mode_t mode = ::stat(path_.c_str(), &st) == 0 ? (st.st_mode & 07777) : (0666 & ~mask);
  ::chmod(temp_.c_str(), mode);
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("cannot be replaced (" + errno_text() + ")");
  unregister_temp(temp_.c_str());
  temp_.clear();
}

void check_stdout() {
  std::cout.flush();
  if (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::cout.clear();
    throw InvalidArgument("cannot write to the standard output (" + errno_text() + ")");
  }
}

}  // namespace cnncert::detail
