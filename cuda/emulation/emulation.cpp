// The CPU emulation of the CUDA runtime declared in cuda_runtime.h (test builds only).
#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"

// Built with ThreadSanitizer (-DCNNCERT_RACECHECK=ON): the race check of docs/CUDA_EMULATION.md.
#if defined(__SANITIZE_THREAD__)
#define CNNCERT_EMU_RACECHECK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CNNCERT_EMU_RACECHECK 1
#endif
#endif
#ifndef CNNCERT_EMU_RACECHECK
#define CNNCERT_EMU_RACECHECK 0
#endif
#if CNNCERT_EMU_RACECHECK
#include <sanitizer/tsan_interface.h>
// exported by the runtime, not declared by its header
extern "C" void __tsan_ignore_thread_begin();
extern "C" void AnnotateIgnoreSyncBegin(const char* file, int line);
extern "C" void AnnotateIgnoreSyncEnd(const char* file, int line);
#endif

namespace cnncert::emu {

CNNCERT_EMU_TLS ThreadVars g_vars;

namespace {

constexpr size_t kDeviceMemory = size_t(4) << 30;  // what the emulated device offers
constexpr size_t kGuard = 64;                      // guard bytes on each side of an allocation
constexpr unsigned char kGuardByte = 0xA5;
constexpr unsigned char kFreshByte = 0xFF;  // new memory reads as NaN, not as zeros
constexpr size_t kSharedPerBlock = 48 << 10;
constexpr size_t kFiberStack = 64 << 10;  // kernels are shallow

struct Device {
  std::mutex m;
  std::map<uintptr_t, size_t> allocs;  // user address → size
  size_t used = 0;
  std::atomic<cudaError_t> sticky{cudaSuccess};  // a fault: later device calls return it (until reset)
};
Device& device() {
  static Device d;
  return d;
}
thread_local cudaError_t t_last = cudaSuccess;

// ---- device memory: host memory that host code cannot touch -----------------------------------
//
// On a GPU, host code that dereferences a device pointer crashes (or reads another address
// space's garbage), and a kernel that reads past its array reads garbage or faults; on the host
// backend and in a plain emulation both go unseen, so such a bug would first show on the first GPU
// run. So device allocations come from one reserved range of address space (the arena), and each
// allocation's pages are inaccessible (PROT_NONE) except while the emulator works on that
// allocation (a DeviceAccess): a kernel on the allocations its arguments point into, a copy or
// memset on its operands, the fill of new memory, the guard checks, a library stand-in on its
// operands. Host code that touches device memory anywhere else, and a kernel that touches any
// allocation but its arguments', gets a segmentation fault, reported with the address, the kernel
// and the stack, and the process ends there. Each allocation ends exactly on a page boundary,
// followed by a page that is never accessible, so a kernel reading or writing just past its array
// faults too; the rest of its first page before it is guard bytes. (A host array passed to a
// kernel is caught at the launch: launch() in cuda_runtime.h.) Blocks are powers of two of at least two pages, reused
// after a free (a free list per size). Off in the race check's build, whose sanitizer keeps its
// own view of the address space, and where the range cannot be reserved; device memory is then
// plain malloc'ed memory with guard bytes on both sides.
class Arena {
 public:
  static Arena& get() {
    static Arena* a = new Arena;  // never destroyed: allocations may outlive main()'s statics
    return *a;
  }
  bool protecting() const { return base_ != nullptr; }

  /// Where an allocation of `size` bytes lies in its block: the user region ends `pages` bytes
  /// into the block (guard bytes before it, at least 64), then an inaccessible page, so the first
  /// element past the end of an array is inaccessible. Its start is then aligned to the largest
  /// power of two dividing its size, which for an array is at least its element type's alignment
  /// (a GPU aligns to 256).
  struct Layout {
    size_t pages, block;
  };
  Layout layout(size_t size) const {
    const size_t pages = (size + kLead + page_ - 1) / page_ * page_;
    return {pages, pages + page_};
  }
  static constexpr size_t kLead = 64;  // guard bytes before an allocation, at least

  /// A block of the smallest power of two ≥ `bytes`, or null when the arena is full.
  unsigned char* take(size_t bytes) {
    const int cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(m_);
    auto& list = free_[static_cast<size_t>(cls)];
    if (!list.empty()) {
      unsigned char* b = list.back();
      list.pop_back();
      return b;
    }
    const size_t size = size_t(1) << cls;
    if (size > kReserve - top_) return nullptr;
    unsigned char* b = base_ + top_;
    top_ += size;
    return b;
  }
  /// Returns a block for reuse; the pages of a large one go back to the system (it is filled
  /// again when reused).
  void give(unsigned char* block, size_t bytes) {
    const int cls = size_class(bytes);
    if (cls >= 20) (void)madvise(block, size_t(1) << cls, MADV_DONTNEED);
    std::lock_guard<std::mutex> lock(m_);
    free_[static_cast<size_t>(cls)].push_back(block);
  }
  /// Returns a block for good (after cudaDeviceReset: a buffer that outlived the reset must not
  /// alias a new allocation); its pages go back to the system, its addresses stay inaccessible.
  void retire(unsigned char* block, size_t bytes) {
    (void)madvise(block, size_t(1) << size_class(bytes), MADV_DONTNEED);
  }
  /// Opens (or closes) the `pages` bytes at `start` of one allocation; nested opens count.
  void open(unsigned char* start, size_t pages) {
    std::lock_guard<std::mutex> lock(m_);
    if (open_[start]++ == 0) protect(start, pages, PROT_READ | PROT_WRITE);
  }
  void close(unsigned char* start, size_t pages) {
    std::lock_guard<std::mutex> lock(m_);
    auto it = open_.find(start);
    if (it == open_.end()) {
      std::fprintf(stderr, "cnncert CUDA emulation: an allocation closed that was not open\n");
      std::abort();
    }
    if (--it->second == 0) {
      protect(start, pages, PROT_NONE);
      open_.erase(it);
    }
  }
  /// Whether the allocation whose pages start at `start` is open.
  bool is_open(unsigned char* start) {
    std::lock_guard<std::mutex> lock(m_);
    return open_.count(start) != 0;
  }
  /// Whether `p` lies in the part of the arena handed out so far (live, free or retired blocks).
  bool holds(const void* p) const {
    const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(base_);
    return base_ && a >= b && a - b < top_;
  }

 private:
  // Address space only. Blocks are reused at their own size, never split or merged, so the used
  // part is the sum over sizes of each size's peak: far below this for the tests' networks.
  static constexpr size_t kReserve = size_t(64) << 30;
  Arena() {
    if (CNNCERT_EMU_RACECHECK) return;
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    page_ = static_cast<size_t>(page);
    while ((size_t(1) << min_class_) < 2 * page_) ++min_class_;
    void* p = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<unsigned char*>(p);
    void* frames[4];
    backtrace(frames, 4);  // loads the unwinder now, not in the signal handler
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_);
  }
  int size_class(size_t bytes) const {
    int c = min_class_;
    while ((size_t(1) << c) < bytes) ++c;
    return c;
  }
  static void protect(unsigned char* p, size_t n, int prot) {
    if (mprotect(p, n, prot) != 0) {
      std::perror("cnncert CUDA emulation: mprotect of device memory");
      std::abort();
    }
  }
  static void on_fault(int, siginfo_t* info, void*);
  unsigned char* base_ = nullptr;
  size_t top_ = 0;  // bytes of the arena handed out so far
  size_t page_ = 4096;
  int min_class_ = 13;
  std::vector<unsigned char*> free_[64];
  std::map<unsigned char*, int> open_;  // open allocations (their first page) and their DeviceAccess count
  std::mutex m_;
  struct sigaction previous_ {};
};

cudaError_t fail(cudaError_t e) {
  t_last = e;
  return e;
}

/// A fault the hardware would report as a sticky error: printed, and returned by every later call.
cudaError_t fault(cudaError_t e, const std::string& what) {
  std::fprintf(stderr, "cnncert CUDA emulation: %s\n", what.c_str());
  device().sticky = e;
  return fail(e);
}

cudaError_t sticky() {
  const cudaError_t e = device().sticky;
  return e == cudaSuccess ? e : fail(e);
}

/// Where an allocation at user address `user` of `size` bytes lives: the start of its memory
/// (its arena block, or what malloc returned), the bytes that a DeviceAccess opens (none without
/// the arena), its guard bytes before (from the block's start in the arena) and after (none in
/// the arena: the inaccessible page follows).
struct Placement {
  unsigned char* start;
  size_t open_bytes, block_bytes, lead, tail;
};
Placement placement(uintptr_t user, size_t size) {
  const Arena& arena = Arena::get();
  auto* u = reinterpret_cast<unsigned char*>(user);
  if (!arena.protecting()) return {u - kGuard, 0, 0, kGuard, kGuard};
  const Arena::Layout l = arena.layout(size);
  unsigned char* start = u + size - l.pages;
  return {start, l.pages, l.block, static_cast<size_t>(u - start), 0};
}

/// Opens (closes) the pages of the allocation at `user` of `size` bytes (nothing without the arena).
void open_allocation(uintptr_t user, size_t size) {
  if (const Placement pl = placement(user, size); pl.open_bytes) Arena::get().open(pl.start, pl.open_bytes);
}
void close_allocation(uintptr_t user, size_t size) {
  if (const Placement pl = placement(user, size); pl.open_bytes) Arena::get().close(pl.start, pl.open_bytes);
}

/// Opens one allocation while alive (the emulator's own work on it).
class OpenAllocation {
 public:
  OpenAllocation(uintptr_t user, size_t size) : user_(user), size_(size) { open_allocation(user, size); }
  ~OpenAllocation() { close_allocation(user_, size_); }
  OpenAllocation(const OpenAllocation&) = delete;
  OpenAllocation& operator=(const OpenAllocation&) = delete;

 private:
  uintptr_t user_;
  size_t size_;
};

/// The guard bytes of one open allocation: "" when intact, else what was overwritten.
std::string damaged_guard(uintptr_t addr, size_t size) {
  const auto* p = reinterpret_cast<const unsigned char*>(addr);
  const Placement pl = placement(addr, size);
  for (size_t i = 0; i < std::max(pl.lead, pl.tail); ++i) {
    const bool after = i < pl.tail && p[size + i] != kGuardByte,
               before = i < pl.lead && p[-1 - static_cast<ptrdiff_t>(i)] != kGuardByte;
    if (!after && !before) continue;
    std::ostringstream os;
    os << "a write outside the " << size << "-byte device allocation at 0x" << std::hex << addr << std::dec << " (byte "
       << (after ? i : i + 1) << (after ? " past its end)" : " before it)");
    return os.str();
  }
  return "";
}

/// The allocation that holds p (inside it or just past its end): its address and size, or
/// {0, 0}. The caller holds the device's lock.
std::pair<uintptr_t, size_t> allocation_of(const Device& d, const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = d.allocs.upper_bound(a);
  if (it == d.allocs.begin()) return {0, 0};
  --it;
  if (a - it->first > it->second) return {0, 0};
  return {it->first, it->second};
}

/// Whether [p, p + n) lies inside one device allocation.
bool on_device(const void* p, size_t n) {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.m);
  const auto [addr, size] = allocation_of(d, p);
  if (addr == 0) return false;
  return n <= size && reinterpret_cast<uintptr_t>(p) - addr <= size - n;
}

/// Returns the memory of the allocation at `addr` of `size` bytes (to the arena, for reuse or for
/// good, or to free()).
void release_block(uintptr_t addr, size_t size, bool for_good = false) {
  const Placement pl = placement(addr, size);
  Arena& arena = Arena::get();
  if (!arena.protecting())
    std::free(pl.start);
  else if (for_good)
    arena.retire(pl.start, pl.block_bytes);
  else
    arena.give(pl.start, pl.block_bytes);
}

/// Whether p is device memory for a copy's host side: inside an allocation, or in the arena at all
/// (a freed block's stale pointer).
bool device_side(const void* p) {
  return Arena::get().holds(p) || on_device(p, 1);
}

cudaError_t device_alloc(void** p, size_t bytes) {
  if (!p) return fail(cudaErrorInvalidValue);
  if (const cudaError_t e = sticky()) return e;
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.m);
  if (bytes > kDeviceMemory - d.used) return fail(cudaErrorMemoryAllocation);
  Arena& arena = Arena::get();
  unsigned char* user = nullptr;
  if (arena.protecting()) {
    const Arena::Layout l = arena.layout(bytes);
    unsigned char* block = arena.take(l.block);
    if (block) user = block + l.pages - bytes;
  } else if (auto* raw = static_cast<unsigned char*>(std::malloc(bytes + 2 * kGuard))) {
    user = raw + kGuard;
  }
  if (!user) return fail(cudaErrorMemoryAllocation);
  const auto addr = reinterpret_cast<uintptr_t>(user);
  {
    const OpenAllocation open(addr, bytes);
    const Placement pl = placement(addr, bytes);
    std::memset(user - pl.lead, kGuardByte, pl.lead);
    std::memset(user, kFreshByte, bytes);
    std::memset(user + bytes, kGuardByte, pl.tail);
  }
  d.allocs[addr] = bytes;
  d.used += bytes;
  *p = user;
  return cudaSuccess;
}

cudaError_t device_free(void* p) {
  if (!p) return cudaSuccess;
  if (const cudaError_t e = sticky()) return e;
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.m);
  auto it = d.allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == d.allocs.end()) return fail(cudaErrorInvalidValue);
  if (const Placement pl = placement(it->first, it->second); pl.open_bytes && Arena::get().is_open(pl.start))
    return fault(cudaErrorIllegalAddress,
                 "cudaFree of a device allocation that a copy, kernel or library call is using");
  {
    const OpenAllocation open(it->first, it->second);
    if (std::string damage = damaged_guard(it->first, it->second); !damage.empty())
      return fault(cudaErrorIllegalAddress, damage);
  }
  d.used -= it->second;
  release_block(it->first, it->second);
  d.allocs.erase(it);
  return cudaSuccess;
}

// ---- the race check (ThreadSanitizer builds only) ---------------------------------------------
//
// Under ThreadSanitizer every emulated thread is a sanitizer fiber, and the switches between them
// carry no ordering of their own: the only happens-before edges inside a block are the ones the
// hardware gives, from every thread's code before a __syncthreads() to every thread's code after
// it. Blocks of a grid run concurrently on kRaceWorkers host threads (block i on worker i mod
// kRaceWorkers), so accesses of different blocks are unordered too, except on one worker, where
// block i is ordered before block i + kRaceWorkers (its fibers, stacks and __shared__ storage are
// reused). Launches are ordered after each other and with the host code around them, as on one
// stream. A conflicting pair of accesses to the same global or shared memory that is not ordered
// so is a data race, and the sanitizer reports it with both stacks. The emulator's own bookkeeping
// on the worker (which thread runs next, its built-in variables) is not device code and is not
// checked.
namespace race {
#if CNNCERT_EMU_RACECHECK
constexpr bool kOn = true;
void* current() {
  return __tsan_get_current_fiber();
}
void* create(size_t t) {
  void* f = __tsan_create_fiber(0);
  __tsan_set_fiber_name(f, ("emulated CUDA thread " + std::to_string(t)).c_str());
  return f;
}
void destroy(void* f) {
  __tsan_destroy_fiber(f);
}
void switch_to(void* f) {
  __tsan_switch_to_fiber(f, __tsan_switch_to_fiber_no_sync);
}
void release(void* token) {
  __tsan_release(token);
}
void acquire(void* token) {
  __tsan_acquire(token);
}
void ignore_this_thread() {
  __tsan_ignore_thread_begin();
}
void ignore_sync_begin() {
  AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
}
void ignore_sync_end() {
  AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
}
#else
constexpr bool kOn = false;
inline void* current() {
  return nullptr;
}
inline void* create(size_t) {
  return nullptr;
}
inline void destroy(void*) {}
inline void switch_to(void*) {}
inline void release(void*) {}
inline void acquire(void*) {}
inline void ignore_this_thread() {}
inline void ignore_sync_begin() {}
inline void ignore_sync_end() {}
#endif
}  // namespace race

// ---- fibers: the threads of one block ---------------------------------------------------------
//
// A context switch saves the callee-saved registers on the running stack and swaps stack
// pointers (x86-64: 21 instructions, no system call; elsewhere ucontext, which also saves the
// signal mask with a system call per switch and is several times slower). Not compatible with
// CET shadow stacks (-fcf-protection=return), which the project does not enable.

#if defined(__x86_64__)
extern "C" void cnncert_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .pushsection .text
  .globl cnncert_emu_switch
  .hidden cnncert_emu_switch
  .type cnncert_emu_switch, @function
cnncert_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cnncert_emu_switch, .-cnncert_emu_switch
  .popsection
)");

// Saved on the stack at a switch: the callee-saved registers of the System V ABI (rbp, rbx,
// r12–r15) and the floating-point control words (MXCSR, x87), then the return address.
struct Context {
  void* sp = nullptr;
};
void switch_context(Context& from, Context& to) {
  cnncert_emu_switch(&from.sp, to.sp);
}
/// A context that starts `entry` (which never returns) on the given stack, with the caller's
/// floating-point control words.
void make_context(Context& c, char* stack, size_t size, void (*entry)()) {
  auto top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                              // entry's return address: never used
  *--sp = reinterpret_cast<void*>(entry);       // popped by the switch's ret
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12–r15
  uint32_t mxcsr = 0;
  uint16_t x87 = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(x87));
  uint64_t words = mxcsr | (static_cast<uint64_t>(x87) << 32);
  *--sp = reinterpret_cast<void*>(words);
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
};
void switch_context(Context& from, Context& to) {
  swapcontext(&from.uc, &to.uc);
}
void make_context(Context& c, char* stack, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

enum class FiberState { Ready, AtBarrier, Done };

struct Fiber {
  Context ctx;
  std::unique_ptr<char[]> stack;
  FiberState state = FiberState::Ready;
  uint3 tid{0, 0, 0};
  void* race_fiber = nullptr;  // the sanitizer's context of this thread (race check only)
  unsigned barriers = 0;       // barriers passed in this block (race check only)
};

struct Block {
  Context scheduler;
  std::vector<Fiber> fibers;
  size_t current = 0;
  bool in_fiber = false;
  bool in_kernel = false;
  bool divergent = false;  // a thread reached a barrier that the first thread did not
  bool reverse = false;    // threads run last to first (every other launch)
  uint64_t launches = 0;
  void (*run)(void*) = nullptr;
  void* ctx = nullptr;
  std::string error;
  // Race check only: the scheduler's sanitizer context, and the addresses whose release and
  // acquire order a block's start before its threads, its threads before its end, and every
  // thread's code before a barrier before every thread's code after it (barriers alternate
  // between two, so that a thread released early cannot pass its next barrier's writes to a
  // thread still leaving this one).
  void* race_scheduler = nullptr;
  char start_token = 0, end_token = 0, barrier_token[2] = {0, 0};
};
CNNCERT_EMU_TLS Block t_block;
CNNCERT_EMU_TLS const char* t_kernel = nullptr;  // the kernel this host thread runs (for fault reports)

/// SIGSEGV. A fault in the arena is a host access to device memory, or a kernel's access outside
/// the allocations it may touch: reported, with the stack. Then, and for any other SIGSEGV, the
/// previous disposition is restored and the fault repeated (a signal sent rather than a fault is
/// raised again), which ends the process as it would have without this handler.
void Arena::on_fault(int, siginfo_t* info, void*) {
  Arena& a = get();
  const bool is_fault = info->si_code > 0;
  if (is_fault && a.holds(info->si_addr)) {
    char msg[768];
    const char* kernel = t_kernel;
    const ThreadVars& v = g_vars;
    const int n =
        kernel && t_block.in_kernel
            ? std::snprintf(msg, sizeof msg,
                            "cnncert CUDA emulation: kernel %s, block (%u,%u,%u), thread (%u,%u,%u), touched device "
                            "memory at %p, outside the allocations its arguments point into (past an array's end, "
                            "or another array; on a GPU: an illegal address or garbage). ",
                            kernel, v.block_idx.x, v.block_idx.y, v.block_idx.z, v.thread_idx.x, v.thread_idx.y,
                            v.thread_idx.z, info->si_addr)
            : std::snprintf(msg, sizeof msg,
                            "cnncert CUDA emulation: host code touched device memory at %p, outside kernels, "
                            "copies and the libraries (on a GPU: a crash). ",
                            info->si_addr);
    if (n > 0) (void)!write(2, msg, std::min(static_cast<size_t>(n), sizeof msg - 1));
    static const char kStack[] = "Stack (addr2line -f -C -e FILE +OFFSET names a frame):\n";
    (void)!write(2, kStack, sizeof kStack - 1);
    void* frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
  }
  sigaction(SIGSEGV, &a.previous_, nullptr);
  if (!is_fault) raise(SIGSEGV);
}

uint3 thread_index(const dim3& b, size_t t) {
  return {static_cast<unsigned>(t % b.x), static_cast<unsigned>(t / b.x % b.y), static_cast<unsigned>(t / (b.x * b.y))};
}

void run_body(Block& blk) {
  try {
    blk.run(blk.ctx);
  } catch (const std::exception& e) {
    if (blk.error.empty()) blk.error = std::string("exception in device code: ") + e.what();
  } catch (...) {
    if (blk.error.empty()) blk.error = "exception in device code";
  }
}

[[noreturn]] void fiber_entry() {
  Block& blk = t_block;
  race::acquire(&blk.start_token);
  run_body(blk);
  Fiber& f = blk.fibers[blk.current];
  f.state = FiberState::Done;
  race::release(&blk.end_token);
  race::switch_to(blk.race_scheduler);
  switch_context(f.ctx, blk.scheduler);
  std::abort();  // a finished fiber is never resumed
}

void start_fiber(Block& blk, const dim3& b, size_t t) {
  Fiber& f = blk.fibers[t];
  f.tid = thread_index(b, t);
  if (!f.stack) f.stack.reset(new char[kFiberStack]);
  if (race::kOn && !f.race_fiber) f.race_fiber = race::create(t);
  make_context(f.ctx, f.stack.get(), kFiberStack, fiber_entry);
  f.state = FiberState::Ready;
  f.barriers = 0;
}

void resume(Block& blk, size_t t) {
  blk.current = t;
  g_vars.thread_idx = blk.fibers[t].tid;
  blk.in_fiber = true;
  race::switch_to(blk.fibers[t].race_fiber);
  switch_context(blk.scheduler, blk.fibers[t].ctx);
  blk.in_fiber = false;
}

/// Runs every thread of the current block, in index order on even launches and in reverse on odd
/// ones (so that a kernel reading another thread's write without a barrier between sees different
/// data from one launch to the next). The first thread runs as a fiber; when it finishes without
/// reaching a barrier, the kernel has none that all threads reach, and the others run as plain
/// calls (a barrier one of them reaches then is divergence, an error). Otherwise all run as
/// fibers, released together at each barrier. Under the race check, all run as fibers always.
void run_block_threads(Block& blk, const dim3& b) {
  const size_t n = static_cast<size_t>(b.x) * b.y * b.z;
  if (blk.fibers.size() < n) blk.fibers.resize(n);
  const auto thread_at = [&](size_t k) { return blk.reverse ? n - 1 - k : k; };
  const size_t first = thread_at(0);
  start_fiber(blk, b, first);
  resume(blk, first);
  if (!race::kOn && blk.fibers[first].state == FiberState::Done) {
    for (size_t k = 1; k < n && blk.error.empty(); ++k) {
      const size_t t = thread_at(k);
      g_vars.thread_idx = thread_index(b, t);
      run_body(blk);
      if (blk.divergent)
        blk.error = "__syncthreads() reached by thread " + std::to_string(t) + " but not by thread " +
                    std::to_string(first) + " (divergent barrier)";
    }
    return;
  }
  for (size_t k = 1; k < n; ++k) start_fiber(blk, b, thread_at(k));
  for (size_t round = 0;; ++round) {
    size_t done = 0, waiting = 0;
    for (size_t k = 0; k < n; ++k) {
      const size_t t = thread_at(k);
      Fiber& f = blk.fibers[t];
      if (f.state == FiberState::Ready) resume(blk, t);
      if (f.state == FiberState::Done)
        ++done;
      else
        f.state = FiberState::Ready, ++waiting;  // at the barrier: released for the next round
    }
    if (!blk.error.empty()) return;  // the waiting fibers are abandoned; their stacks are reused
    if (waiting == 0) return;
    if (done > 0) {
      blk.error = "__syncthreads() number " + std::to_string(round + 1) + " reached by " + std::to_string(waiting) +
                  " of " + std::to_string(n) + " threads, the others exited (divergent barrier)";
      return;
    }
  }
}

/// Runs one block's threads; under the race check, after everything before on this host thread
/// and before everything after.
void run_block(Block& blk, const dim3& b) {
  race::release(&blk.start_token);
  run_block_threads(blk, b);
  race::acquire(&blk.end_token);
  if (!race::kOn) return;
  for (Fiber& f : blk.fibers)  // abandoned after an error: a fresh sanitizer context next time
    if (f.race_fiber && f.state != FiberState::Done) race::destroy(f.race_fiber), f.race_fiber = nullptr;
}

/// A launch: its grid, its kernel, and its thread order.
struct GridPart {
  dim3 grid, block;
  void (*run)(void*);
  void* ctx;
  bool reverse;
};

/// Runs the blocks first, first + step, … of a grid on `blk` (the calling host thread's). Returns
/// the first failing block's linear index and its error, with the block's index appended, or the
/// grid's block count and "" when none failed.
std::pair<uint64_t, std::string> run_blocks(Block& blk, const GridPart& job, uint64_t first, uint64_t step) {
  blk.in_kernel = true;
  struct Leave {
    Block& b;
    ~Leave() { b.in_kernel = false; }
  } leave{blk};
  blk.reverse = job.reverse;
  blk.run = job.run;
  blk.ctx = job.ctx;
  blk.error.clear();
  blk.divergent = false;
  g_vars.block_dim = job.block;
  g_vars.grid_dim = job.grid;
  const uint64_t gx = job.grid.x, gxy = gx * job.grid.y, total = gxy * job.grid.z;
  for (uint64_t i = first; i < total; i += step) {
    const dim3 at(static_cast<unsigned>(i % gx), static_cast<unsigned>(i / gx % job.grid.y),
                  static_cast<unsigned>(i / gxy));
    g_vars.block_idx = {at.x, at.y, at.z};
    run_block(blk, job.block);
    if (!blk.error.empty())
      return {i, blk.error + " in block (" + std::to_string(at.x) + "," + std::to_string(at.y) + "," +
                     std::to_string(at.z) + ")"};
  }
  return {total, ""};
}

/// Race check only: the host threads that run a grid's blocks concurrently. Started at the first
/// launch and never stopped (they wait for work); one launch at a time. Their mutex and condition
/// variable order nothing for the sanitizer, which would otherwise order one worker's blocks
/// before another's whenever the second woke after the first had finished; the launch is ordered
/// after the host's code before it, and the host's code after it after every worker's blocks, by
/// explicit release and acquire.
class RaceWorkers {
 public:
  static constexpr unsigned kRaceWorkers = 4;
  static RaceWorkers& get() {
    static RaceWorkers* w = new RaceWorkers;  // never destroyed: its threads outlive main()
    return *w;
  }
  /// The error of the grid's lowest failing block, or "".
  std::string run(const GridPart& job) {
    std::lock_guard<std::mutex> one_launch(launch_m_);
    race::release(&go_token_);
    std::unique_lock<std::mutex> lock(m_);
    job_ = job;
    finished_ = 0;
    ++generation_;
    go_.notify_all();
    done_.wait(lock, [&] { return finished_ == kRaceWorkers; });
    for (char& done : done_tokens_) race::acquire(&done);
    const std::pair<uint64_t, std::string>* first = &errors_[0];
    for (const auto& e : errors_)
      if (e.first < first->first) first = &e;
    return first->second;
  }

 private:
  RaceWorkers() {
    for (unsigned w = 0; w < kRaceWorkers; ++w) std::thread([this, w] { serve(w); }).detach();
  }
  void serve(unsigned w) {
    race::ignore_this_thread();  // the scheduler's bookkeeping; its fibers are checked
    Block& blk = t_block;
    blk.race_scheduler = race::current();
    for (uint64_t seen = 0;;) {
      GridPart job{};
      race::ignore_sync_begin();
      {
        std::unique_lock<std::mutex> lock(m_);
        go_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      race::ignore_sync_end();
      race::acquire(&go_token_);
      auto error = run_blocks(blk, job, w, kRaceWorkers);
      race::release(&done_tokens_[w]);
      race::ignore_sync_begin();
      {
        std::lock_guard<std::mutex> lock(m_);
        errors_[w] = std::move(error);
        if (++finished_ == kRaceWorkers) done_.notify_one();
      }
      race::ignore_sync_end();
    }
  }
  std::mutex launch_m_, m_;
  std::condition_variable go_, done_;
  uint64_t generation_ = 0;
  unsigned finished_ = 0;
  GridPart job_{};
  std::pair<uint64_t, std::string> errors_[kRaceWorkers];
  char go_token_ = 0, done_tokens_[kRaceWorkers] = {};
};

}  // namespace

bool device_range(const void* p, size_t bytes) {
  return on_device(p, bytes);
}
DeviceAccess::DeviceAccess(const void* const* pointers, size_t n) : stray_(n) {
  {
    Device& d = device();
    std::lock_guard<std::mutex> lock(d.m);
    for (size_t i = 0; i < n; ++i) {
      if (!pointers[i]) continue;
      const auto alloc = allocation_of(d, pointers[i]);
      if (alloc.first == 0)
        stray_ = std::min(stray_, i);
      else if (std::find(opened_.begin(), opened_.end(), alloc) == opened_.end())
        opened_.push_back(alloc);
    }
  }
  for (const auto& [addr, size] : opened_) open_allocation(addr, size);
}
DeviceAccess::DeviceAccess(std::initializer_list<const void*> pointers)
    : DeviceAccess(pointers.begin(), pointers.size()) {}
DeviceAccess::~DeviceAccess() {
  for (const auto& [addr, size] : opened_) close_allocation(addr, size);
}
std::string DeviceAccess::damaged() const {
  for (const auto& [addr, size] : opened_)
    if (std::string damage = damaged_guard(addr, size); !damage.empty()) return damage;
  return "";
}
bool host_access_checked() {
  return Arena::get().protecting();
}
void device_fault(const char* what) {
  fault(cudaErrorIllegalAddress, what);
}
bool device_faulted() {
  return device().sticky != cudaSuccess;
}

void syncthreads() {
  Block& blk = t_block;
  if (!blk.in_kernel) return;
  if (!blk.in_fiber) {
    blk.divergent = true;
    return;
  }
  Fiber& f = blk.fibers[blk.current];
  f.state = FiberState::AtBarrier;
  void* token = &blk.barrier_token[f.barriers++ & 1];
  race::release(token);
  race::switch_to(blk.race_scheduler);
  switch_context(f.ctx, blk.scheduler);
  race::acquire(token);
}

void launch_erased(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t, void (*run)(void*),
                   void* ctx, const void* const* pointers, const size_t* argument_of, size_t n_pointers) {
  if (sticky()) return;
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  if (shared_bytes > kSharedPerBlock) {
    fail(cudaErrorInvalidValue);
    return;
  }
  const DeviceAccess access(pointers, n_pointers);  // the allocations its arguments point into
  if (const size_t i = access.stray(); i < n_pointers) {
    std::ostringstream os;
    os << "kernel " << kernel << ": argument " << argument_of[i] << " (from 0) is not device memory (" << pointers[i]
       << "; a host pointer? on a GPU: an illegal address)";
    fault(cudaErrorIllegalAddress, os.str());
    return;
  }
  Block& blk = t_block;
  if (blk.in_kernel) {
    fault(cudaErrorLaunchFailure,
          std::string("kernel ") + kernel + " launched from device code (not supported by the emulation)");
    return;
  }
  const GridPart job{grid, block, run, ctx, (blk.launches++ & 1) != 0};
  t_kernel = kernel;
  const std::string error = race::kOn ? RaceWorkers::get().run(job) : run_blocks(blk, job, 0, 1).second;
  t_kernel = nullptr;
  if (!error.empty()) {
    fault(cudaErrorLaunchFailure, std::string("kernel ") + kernel + ": " + error);
    return;
  }
  // Only kernels write outside an allocation (copies and memsets are range-checked), and a kernel
  // only into the allocations it may touch.
  const std::string damage = access.damaged();
  if (!damage.empty()) fault(cudaErrorIllegalAddress, std::string("kernel ") + kernel + ": " + damage);
}

}  // namespace cnncert::emu

// ---- the runtime API --------------------------------------------------------------------------

using namespace cnncert::emu;

struct CUstream_st {
  unsigned flags = 0;
};
struct CUmemPoolHandle_st {
  uint64_t release_threshold = 0;
};

namespace {
CUmemPoolHandle_st g_default_pool;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last;
  t_last = device().sticky;
  return e;
}

cudaError_t cudaGetDeviceCount(int* n) {
  if (!n) return fail(cudaErrorInvalidValue);
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  if (!d) return fail(cudaErrorInvalidValue);
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (!p) return fail(cudaErrorInvalidValue);
  if (d != 0) return fail(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "cnncert CUDA emulation on the CPU (not a GPU)");
  p->totalGlobalMem = kDeviceMemory;
  p->sharedMemPerBlock = kSharedPerBlock;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->major = 9, p->minor = 0;
  p->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue);
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  return cudaRuntimeGetVersion(v);
}

cudaError_t cudaDeviceSynchronize() {
  return sticky();
}
cudaError_t cudaDeviceReset() {
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.m);
  for (const auto& [addr, size] : d.allocs) release_block(addr, size, true);
  d.allocs.clear();
  d.used = 0;
  d.sticky = cudaSuccess;
  t_last = cudaSuccess;
  g_default_pool = CUmemPoolHandle_st{};
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return fail(cudaErrorInvalidValue);
  if (const cudaError_t e = sticky()) return e;
  Device& d = device();
  std::lock_guard<std::mutex> lock(d.m);
  *free_bytes = kDeviceMemory - d.used;
  *total_bytes = kDeviceMemory;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  if (!s) return fail(cudaErrorInvalidValue);
  if (const cudaError_t e = sticky()) return e;
  *s = new CUstream_st{flags};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return fail(cudaErrorInvalidResourceHandle);
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return sticky();
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  return device_alloc(p, bytes);
}
cudaError_t cudaFree(void* p) {
  return device_free(p);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  return device_free(p);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  if (const cudaError_t e = sticky()) return e;
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((dst_dev && !on_device(dst, bytes)) || (src_dev && !on_device(src, bytes))) return fail(cudaErrorInvalidValue);
  // The host side of a host↔device copy is read or written by the CPU: a device pointer there is
  // a mix-up that would crash on a GPU.
  if ((kind == cudaMemcpyHostToDevice && device_side(src)) || (kind == cudaMemcpyDeviceToHost && device_side(dst)))
    return fail(cudaErrorInvalidValue);
  const bool any = kind == cudaMemcpyDefault;  // (either side may be device memory)
  const DeviceAccess access{dst_dev || any ? dst : nullptr, src_dev || any ? src : nullptr};
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (const cudaError_t e = sticky()) return e;
  if (bytes == 0) return cudaSuccess;
  if (!on_device(dst, bytes)) return fail(cudaErrorInvalidValue);
  const DeviceAccess access{dst};
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaDeviceGetMemPool(cudaMemPool_t* pool, int device_id) {
  if (!pool) return fail(cudaErrorInvalidValue);
  if (device_id != 0) return fail(cudaErrorInvalidDevice);
  *pool = &g_default_pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props) {
  if (!pool || !props || props->allocType != cudaMemAllocationTypePinned ||
      props->location.type != cudaMemLocationTypeDevice || props->location.id != 0)
    return fail(cudaErrorInvalidValue);
  *pool = new CUmemPoolHandle_st{};
  return cudaSuccess;
}
cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool) {
  if (!pool || pool == &g_default_pool) return fail(cudaErrorInvalidValue);
  delete pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (!pool || !value || attr != cudaMemPoolAttrReleaseThreshold) return fail(cudaErrorInvalidValue);
  std::memcpy(&pool->release_threshold, value, sizeof(uint64_t));
  return cudaSuccess;
}
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (!pool || !value || attr != cudaMemPoolAttrReleaseThreshold) return fail(cudaErrorInvalidValue);
  std::memcpy(value, &pool->release_threshold, sizeof(uint64_t));
  return cudaSuccess;
}
cudaError_t cudaMallocFromPoolAsync(void** p, size_t bytes, cudaMemPool_t pool, cudaStream_t) {
  if (!pool) return fail(cudaErrorInvalidValue);
  return device_alloc(p, bytes);
}
