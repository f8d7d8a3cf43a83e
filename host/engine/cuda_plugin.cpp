// include/cnncert/cuda.hpp, make_gpu_engine and batched::make_cuda_ops on the host side: the CUDA
// engine lives in a plugin (host/engine/cuda_plugin.hpp) that is loaded on the first call that needs it,
// so that a CPU-only run never maps the CUDA libraries (a process floor of ~210 MiB otherwise).
//   CNNCERT_CUDA_PLUGIN_FILE  the plugin's file name (a CUDA build): dlopen'ed from the directory
//                             of the library itself (dladdr), else by the dynamic loader's search;
//                             the environment variable CNNCERT_CUDA_PLUGIN names another file.
//   CNNCERT_CUDA_LINKED       the plugin's table is linked into the library (the CPU emulation).
//   neither                   a build without CUDA.
#include "engine/cuda_plugin.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "engine/batched_engine.hpp"

namespace cnncert {
namespace {

struct Plugin {
  const detail::CudaPlugin* table = nullptr;
  std::string why;  ///< why there is none (a whole "no GPU support: ..." sentence)
};

#if defined(CNNCERT_CUDA_PLUGIN_FILE) && !defined(CNNCERT_CUDA_LINKED)
int anchor;  // an address inside this library, for dladdr

/// The folder of `file` after resolving symbolic links ("" when it cannot be resolved).
std::string real_folder(const char* file) {
  char buf[PATH_MAX];
  if (!file || !*file || !::realpath(file, buf)) return "";
  std::string p = buf;
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "" : p.substr(0, slash + 1);
}

Plugin load() {
  // Candidates: $CNNCERT_CUDA_PLUGIN alone; else beside this library (its real folder: a symlinked
  // libcnncert.so, or the executable itself when libcnncert is linked in statically), beside the
  // executable, then the dynamic loader's search (RPATH, LD_LIBRARY_PATH, the system's folders).
  std::vector<std::string> paths;
  if (const char* env = std::getenv("CNNCERT_CUDA_PLUGIN"); env && *env) {
    paths.emplace_back(env);
  } else {
    Dl_info info{};
    if (dladdr(&anchor, &info) && info.dli_fname)
      if (const std::string d = real_folder(info.dli_fname); !d.empty()) paths.push_back(d + CNNCERT_CUDA_PLUGIN_FILE);
    if (const std::string d = real_folder("/proc/self/exe"); !d.empty()) paths.push_back(d + CNNCERT_CUDA_PLUGIN_FILE);
    paths.emplace_back(CNNCERT_CUDA_PLUGIN_FILE);
  }
  std::string errors;
  auto note = [&](const std::string& e) { errors += (errors.empty() ? "" : "; ") + e; };
  for (const std::string& p : paths) {
    const bool is_path = p.find('/') != std::string::npos;
    struct stat st {};
    if (is_path && ::stat(p.c_str(), &st) != 0) {  // not there: the next candidate
      note(p + ": " + std::strerror(errno));
      continue;
    }
    // A plugin that is there but does not load (or is of another build) ends the search: a stale
    // copy further down the search path must not be taken instead.
    void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);  // never closed: the CUDA runtime stays
    if (!h) {
      const char* e = dlerror();
      note(e ? e : p);
      if (is_path) break;
      continue;
    }
    using Entry = const detail::CudaPlugin* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(h, "cnncert_cuda_plugin"));
    const detail::CudaPlugin* t = entry ? entry() : nullptr;
    if (!t || t->abi != detail::kCudaPluginAbi ||
        std::strcmp(t->version ? t->version : "", CNNCERT_VERSION_STRING) != 0) {
      note(p + ": not the CUDA plugin of this cnncert (" CNNCERT_VERSION_STRING ")");
      break;
    }
    return {t, ""};
  }
  return {nullptr, "no GPU support: the CUDA engine (" + std::string(CNNCERT_CUDA_PLUGIN_FILE) +
                       ") could not be loaded: " + errors};
}
#elif defined(CNNCERT_CUDA_LINKED)
Plugin load() {
  return {cnncert_cuda_plugin(), ""};
}
#else
Plugin load() {
  return {nullptr, "no GPU support: cnncert was built without CUDA (-DCNNCERT_CUDA=OFF or no toolkit)"};
}
#endif

const Plugin& plugin() {
  static const Plugin p = load();
  return p;
}

}  // namespace

bool cuda_compiled() {
  return plugin().table != nullptr;
}
bool cuda_emulated() {
  return plugin().table && plugin().table->emulated;
}
CudaLibraries cuda_libraries() {
  return plugin().table ? plugin().table->libraries() : CudaLibraries{};
}
bool cuda_available() {
  return plugin().table && plugin().table->available();
}
int cuda_device_count() {
  return plugin().table ? plugin().table->device_count() : 0;
}

void cuda_use_device(int ordinal) {
  if (!plugin().table) throw InvalidArgument("GPU " + std::to_string(ordinal) + ": " + plugin().why);
  plugin().table->use_device(ordinal);
}

std::string cuda_device_info() {
  return plugin().table ? plugin().table->device_info() : plugin().why;
}

std::string cuda_smoke_test() {
  if (!plugin().table) return "no usable GPU: " + plugin().why;
  return plugin().table->smoke_test();
}

std::unique_ptr<BoundEngine> make_gpu_engine(const Network& net, size_t memory_mib) {
  return batched::make_batched_engine(net, batched::make_cuda_ops(memory_mib << 20));
}

namespace batched {
std::unique_ptr<Ops> make_cuda_ops(size_t budget_bytes, bool use_cudnn, int64_t max_grid_blocks) {
  if (!plugin().table) throw InvalidArgument("--device gpu: " + plugin().why);
  return plugin().table->make_ops(budget_bytes, use_cudnn, max_grid_blocks);
}
}  // namespace batched

}  // namespace cnncert
