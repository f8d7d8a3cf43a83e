#pragma once
// The environment line printed with every benchmark result.
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
          {"gpu", cnncert::cuda_device_info()},
          {"date", date}};
}

inline std::string environment_line(const nlohmann::json& e) {
  return "cnncert-bench " + e["cnncert"].get<std::string>() + " | " + e["cpu"].get<std::string>() + ", " +
         std::to_string(e["cores"].get<int>()) + " cores | " + e["compiler"].get<std::string>() + " | " +
         e["build"].get<std::string>() + " | " + e["gpu"].get<std::string>() + " | " + e["date"].get<std::string>();
}

}  // namespace cnncert::bench
