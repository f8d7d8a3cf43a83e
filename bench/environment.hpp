#pragma once
// The environment line printed with every benchmark result.
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cnncert/cuda.hpp"
#include "cnncert/version.hpp"

namespace cnncert::bench {

inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

/// Whether a GPU is usable and one line about it (cuda_device_info), asked in a child process: CUDA must
/// not be initialised in a process that then forks workers using the GPU (the benchmark's
/// children; CUDA does not survive a fork), and the parent's memory stays free of the CUDA
/// libraries (the plugin is not loaded there).
struct GpuInfo {
  bool available = false;
  std::string info = "unknown (the GPU query failed)";
};
inline GpuInfo gpu_info_in_child() {
  GpuInfo g;
  int fd[2];
  if (pipe(fd) != 0) return g;
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]), close(fd[1]);
    return g;
  }
  if (pid == 0) {
    close(fd[0]);
    const std::string s = std::string(cnncert::cuda_available() ? "1" : "0") + cnncert::cuda_device_info();
    const ssize_t written = write(fd[1], s.data(), s.size());
    _exit(written == static_cast<ssize_t>(s.size()) ? 0 : 1);
  }
  close(fd[1]);
  std::string s;
  char buf[512];
  for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!s.empty()) g.available = s[0] == '1', g.info = s.substr(1);
  return g;
}

/// CPU, cores, compiler, build flags, GPU and date.
inline nlohmann::json environment() {
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  return {{"cpu", cpu_model()},
          {"cores", static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))},
          {"compiler", std::string("gcc ") + __VERSION__},
          {"build", CNNCERT_BUILD_INFO},
          {"cnncert", cnncert::version()},
          {"gpu", gpu_info_in_child().info},
          {"date", date}};
}

inline std::string environment_line(const nlohmann::json& e) {
  return "cnncert-bench " + e["cnncert"].get<std::string>() + " | " + e["cpu"].get<std::string>() + ", " +
         std::to_string(e["cores"].get<int>()) + " cores | " + e["compiler"].get<std::string>() + " | " +
         e["build"].get<std::string>() + " | " + e["gpu"].get<std::string>() + " | " + e["date"].get<std::string>();
}

}  // namespace cnncert::bench
