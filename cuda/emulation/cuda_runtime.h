#pragma once
// CPU emulation of the part of the CUDA runtime that cuda/ uses (build option
// CNNCERT_CUDA_EMULATION=ON; docs/CUDA_EMULATION.md). The project's .cu files compile as C++
// against this header instead of the toolkit's: device memory is host memory with guard bytes,
// which host code cannot touch and a kernel only in its arguments' arrays (DeviceAccess), streams
// run their work at once in issue order, and a kernel launch (CNNCERT_LAUNCH in check.cuh) runs
// every block in turn on the calling thread, each of its threads as a fiber, so that
// __syncthreads() is a real barrier and __shared__ storage is one per block. Launch limits,
// barrier divergence, host pointers given to kernels and writes just past an allocation are
// reported like the hardware reports faults (sticky errors); an access to protected device memory
// stops the process with the stack. cuBLAS and cuDNN are stand-ins (cublas_v2.h, cudnn.h) or absent. Built
// with ThreadSanitizer (the race check), the blocks run on 4 host threads at once instead, and
// data races between threads and blocks are reported (emulation.cpp).
// Test builds only: nothing here is fast, and no GPU is involved.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define CNNCERT_CUDA_EMULATION_RUNTIME 1

// ---- device-code keywords ---------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Thread-local storage of the library's own (not dlopen'ed) kind: no lookup call per access.
#define CNNCERT_EMU_TLS thread_local __attribute__((tls_model("initial-exec")))
// One copy per running block: a host thread runs one block at a time.
#define __shared__ static CNNCERT_EMU_TLS

// ---- runtime types ----------------------------------------------------------------------------
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

struct CUstream_st;
using cudaStream_t = CUstream_st*;
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;

enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

struct CUmemPoolHandle_st;
using cudaMemPool_t = CUmemPoolHandle_st*;
enum cudaMemPoolAttr : int { cudaMemPoolAttrReleaseThreshold = 4 };
enum cudaMemAllocationType : int { cudaMemAllocationTypeInvalid = 0, cudaMemAllocationTypePinned = 1 };
enum cudaMemAllocationHandleType : int { cudaMemHandleTypeNone = 0 };
enum cudaMemLocationType : int { cudaMemLocationTypeInvalid = 0, cudaMemLocationTypeDevice = 1 };
struct cudaMemLocation {
  cudaMemLocationType type;
  int id;
};
struct cudaMemPoolProps {
  cudaMemAllocationType allocType;
  cudaMemAllocationHandleType handleTypes;
  cudaMemLocation location;
  void* win32SecurityAttributes;
  size_t maxSize;
  unsigned char reserved[56];
};

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
};

// ---- runtime API (cuda/emulation/emulation.cpp) -----------------------------------------------
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaDeviceGetMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props);
cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);
cudaError_t cudaMallocFromPoolAsync(void** p, size_t bytes, cudaMemPool_t pool, cudaStream_t s);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}

// ---- kernels ----------------------------------------------------------------------------------
namespace cnncert::emu {

/// The built-in variables of the emulated thread running now (one per host thread).
struct ThreadVars {
  uint3 thread_idx{0, 0, 0}, block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1}, grid_dim{1, 1, 1};
};
extern CNNCERT_EMU_TLS ThreadVars g_vars;

/// The barrier of the running block.
void syncthreads();

/// Whether [p, p + bytes) lies inside one device allocation (for the library stand-ins).
bool device_range(const void* p, size_t bytes);
/// While one is alive, the device allocations that the given pointers point into (or just past)
/// may be read and written from the host: the emulator's own work (a kernel on its arguments',
/// copies, memsets) and the library stand-ins' computations; other pointers are ignored (the
/// first non-null one is `stray()`).
/// Everywhere else device memory is kept inaccessible, so that host code reading it through a
/// pointer, which a GPU would not allow, and a kernel reading past its arrays stop at once with
/// the stack (emulation.cpp, "device memory").
class DeviceAccess {
 public:
  DeviceAccess(const void* const* pointers, size_t n);
  DeviceAccess(std::initializer_list<const void*> pointers);
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
  /// The first damaged guard byte of the open allocations ("" when none is).
  std::string damaged() const;
  /// The position of the first non-null pointer that lies in no allocation, or n when none does.
  size_t stray() const { return stray_; }

 private:
  std::vector<std::pair<uintptr_t, size_t>> opened_;  // address, size
  size_t stray_ = 0;
};
/// Whether host code is stopped at device memory (false where the address space could not be
/// reserved, and in the race check's build).
bool host_access_checked();
/// Reports a fault as the hardware would (printed, then a sticky cudaErrorIllegalAddress).
void device_fault(const char* what);
/// Whether a fault is pending (sticky): library calls then fail, as on a GPU.
bool device_faulted();

/// Runs `run(ctx)` as every thread of a grid (after checking the launch configuration like the
/// hardware does), with access to the allocations that `pointers` (the arguments' pointers;
/// pointer i belongs to argument argument_of[i]) point into; errors go where the runtime's go
/// (cudaGetLastError, sticky faults). A pointer that lies in no allocation makes a valid launch a
/// fault instead (sticky cudaErrorIllegalAddress, printed with the kernel and the argument), as a
/// GPU would fault reading it.
void launch_erased(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t s, void (*run)(void*),
                   void* ctx, const void* const* pointers, const size_t* argument_of, size_t n_pointers);

/// Adds the non-null pointers that kernel argument `index` holds to `pointers` (and `index` to
/// `argument_of` for each): a pointer argument, or the pointers of a struct for which
/// `device_pointers(v)` (found by argument-dependent lookup, next to the struct) lists them.
/// Other arguments hold no pointers.
template <class T>
void add_kernel_pointers(size_t index, const T& v, std::vector<const void*>& pointers,
                         std::vector<size_t>& argument_of) {
  const auto add = [&](const void* p) {
    if (p != nullptr) pointers.push_back(p), argument_of.push_back(index);
  };
  if constexpr (std::is_pointer_v<T>)
    add(v);
  else if constexpr (requires { device_pointers(v); })
    for (const void* p : device_pointers(v)) add(p);
}

/// Kernel launch: the arguments are converted to the kernel's parameter types once, as a launch
/// copies them, and every emulated thread calls the kernel with that copy. A pointer among them
/// that is not device memory (a host array passed by mistake, which works here and faults on a
/// GPU) is a fault, and the kernel does not run (stricter than a GPU, which faults only where the
/// pointer is read).
template <class... P, class... A>
void launch(const char* kernel, void (*fn)(P...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t s,
            A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  struct Ctx {
    void (*fn)(P...);
    std::tuple<std::decay_t<P>...> args;
  } ctx{fn, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
  std::vector<const void*> pointers;
  std::vector<size_t> argument_of;
  std::apply(
      [&](const auto&... v) {
        size_t i = 0;
        (void)i;  // (a kernel without parameters)
        (add_kernel_pointers(i++, v, pointers, argument_of), ...);
      },
      ctx.args);
  launch_erased(
      kernel, grid, block, shared_bytes, s,
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        std::apply(c->fn, c->args);
      },
      &ctx, pointers.data(), argument_of.data(), pointers.size());
}

}  // namespace cnncert::emu

#define threadIdx (::cnncert::emu::g_vars.thread_idx)
#define blockIdx (::cnncert::emu::g_vars.block_idx)
#define blockDim (::cnncert::emu::g_vars.block_dim)
#define gridDim (::cnncert::emu::g_vars.grid_dim)
inline void __syncthreads() {
  ::cnncert::emu::syncthreads();
}
