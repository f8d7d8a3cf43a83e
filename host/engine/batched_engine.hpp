#pragma once
// The batched bound engine (DESIGN.md §3.2, the GPU engine's algorithm): one call bounds a whole
// batch of problems; every layer's intermediate bounds are computed for all problems at once,
// rows chunked to a memory budget. The algorithm is written once here against `Ops`, the few
// primitive operations on "device" memory; cuda/cuda_ops.cu implements them with CUDA kernels,
// cuDNN and cuBLAS, host/engine/host_ops.cpp with plain float loops on the CPU (so the CPU tests run
// the same algorithm the GPU runs).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cnncert/engine.hpp"
#include "engine/batched_kernels.hpp"

namespace cnncert::batched {

/// How often the convolution and GEMM back-substitutions ran on each path (GPU only).
struct PathCounts {
  int64_t conv_library = 0;         ///< cuDNN backward-data convolutions
  int64_t conv_library_failed = 0;  ///< cuDNN failed at execution time; the own kernel ran instead
  int64_t conv_own = 0;             ///< the engine's own kernel for a dense-row convolution
  int64_t conv_windowed = 0;        ///< windowed-row convolutions (own kernels only: no library form)
  int64_t gemm_library = 0;         ///< cuBLAS GEMMs
  int64_t gemm_own = 0;             ///< the engine's own GEMM kernel
  int64_t launches = 0;             ///< kernel launches and library calls (each launches ≥ 1 kernel)
  int64_t syncs = 0;                ///< host waits for the stream (downloads)
};

/// The cost model's counts of the operations issued so far (EngineStats::model_*).
struct CostCounts {
  double flops = 0, bytes = 0;
  int64_t launches = 0, syncs = 0;
};

/// Primitive operations of the batched engine. Pointers are "device" pointers of the
/// implementation (host memory for the host implementation). Rows: see batched_kernels.hpp.
class Ops {
 public:
  virtual ~Ops() = default;
  /// "gpu" or "host-float".
  virtual std::string name() const = 0;
  /// Bytes the coefficient tensors of one chunk may use.
  virtual size_t memory_budget() const = 0;

  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  /// Copies to the host; returns once the data is there.
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;

  /// out[r] = conv_transpose(a[r]) for `rows` rows (out: rows × cin·hin·win, overwritten).
  virtual void conv_back(const ConvGeom& g, int64_t rows, const float* w, const float* a, float* out) = 0;
  /// out = a · W for a: rows × n_out, W: n_out × n_in (row-major), out: rows × n_in (overwritten).
  virtual void dense_back(int64_t rows, int64_t n_out, int64_t n_in, const float* w, const float* a, float* out) = 0;
  /// For every row r of `a` (2·half rows of `size` values) and element j, with parameter index
  /// i = prob[r % half]·stride + j / div: bias[r] += the bias contribution of elementwise_elem,
  /// and, when `al` is given, a[r][j] becomes its relaxed coefficient. Then, when `then_bias` is
  /// given, the bias pass of the node below (a conv or dense node's bias: this call again with
  /// stride 0, div then_div, al = au = null, bl = bu = then_bias) over the new coefficients, its sum
  /// added after the first: the same values as the two calls, with the rows read once.
  virtual void elementwise_back(int64_t half, int64_t size, float* a, const int* prob, int64_t stride, int64_t div,
                                const float* al, const float* bl, const float* au, const float* bu, double* bias,
                                const float* then_bias, int64_t then_div) = 0;
  /// out[r] = pooling back-substitution of a[r] with the slopes of problem prob[r % half]
  /// (slopes + prob·stride; stride 0 = shared slopes).
  virtual void pool_back(const PoolGeom& g, int64_t half, const int* prob, int64_t stride, const float* slopes,
                         const float* a, float* out) = 0;
  /// Windowed rows (patches; origins `org`, WinGeom): conv_back of 2·half rows that hold an
  /// (h, w) window of the output map, into their windows at the input (conv_back_window_elem;
  /// out: 2·half × cin·span_y(h)·span_x(w), overwritten).
  virtual void conv_back_window(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                                const float* wt, const float* a, float* out) = 0;
  /// conv_back_window, then elementwise_back_window with `rx` over its output (the rows' windows
  /// at the input: geometry `out_wg`, origins `out_org`), in one pass over the output: on every
  /// backend the same values as the two calls, without writing and reading the rows between them.
  virtual void conv_back_window_relax(const ConvGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                                      const float* wt, const float* a, const WinGeom& out_wg, const int64_t* out_org,
                                      float* out, const RelaxStep& rx) = 0;
  /// pool_back of windowed rows (pool_back_window_elem), slopes as for pool_back.
  virtual void pool_back_window(const PoolGeom& g, int64_t half, int64_t h, int64_t w, const int64_t* org,
                                const int* prob, int64_t stride, const float* slopes, const float* a, float* out) = 0;
  /// elementwise_back of windowed rows (2·half rows of wg.size() values): the parameter index of
  /// element e is prob[r % half]·stride + wg.map_index(origin, e) / div; elements outside the map
  /// are skipped (they are 0); `then_bias` as for elementwise_back.
  virtual void elementwise_back_window(const WinGeom& wg, int64_t half, const int64_t* org, float* a, const int* prob,
                                       int64_t stride, int64_t div, const float* al, const float* bl, const float* au,
                                       const float* bu, double* bias, const float* then_bias, int64_t then_div) = 0;
  /// The dense rows (2·half × wg.c·map_h·map_w, overwritten) of windowed rows.
  virtual void window_to_dense(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, float* out) = 0;
  /// y += x (n values).
  virtual void add(int64_t n, const float* x, float* y) = 0;
  /// out[r][i] = inv[i] >= 0 ? a[r][inv[i]] : 0 (a: rows × n_out, out: rows × n_in).
  virtual void gather(int64_t rows, int64_t n_out, int64_t n_in, const int64_t* inv, const float* a, float* out) = 0;
  /// Zeroes out (2·half rows × size) and sets out[r][pos[r % half]] = 1 (pos: half values in [0, size)).
  virtual void identity(int64_t half, int64_t size, const int64_t* pos, float* out) = 0;
  /// Concretizes every row at the input: x0 (problems × n) the centres and eps per problem, or
  /// for RegionNorm::Box x0 the lower and x_hi the upper corners of each problem's box (x_hi is
  /// read for boxes only); rows of the upper half write upper[r], of the lower half lower[r − half].
  virtual void concretize(int64_t half, int64_t n, const float* a, const int* prob, const double* x0,
                          const double* x_hi, const double* eps, RegionNorm norm, const double* bias, double* upper,
                          double* lower) = 0;
  /// concretize for windowed rows (2·half rows of wg.size() values, origins `org`) of the input
  /// map (wg.c × wg.map_h × wg.map_w = n values): the terms of the window's elements inside the
  /// map, in the order of their map index (on the host the sums of concretize over the rows made
  /// dense, which add nothing for their zeros).
  virtual void concretize_window(const WinGeom& wg, int64_t half, const int64_t* org, const float* a, const int* prob,
                                 const double* x0, const double* x_hi, const double* eps, RegionNorm norm,
                                 const double* bias, double* upper, double* lower) = 0;
  /// Relaxations of `count` activation neurons from their bounds.
  virtual void relax_activation(int64_t count, const ActSpec& s, const double* lo, const double* hi, float* al,
                                float* bl, float* au, float* bu) = 0;
  /// [out_lo[i], out_hi[i]] = the range of σ on [lo[i], hi[i]] for `count` neurons
  /// (activation_range; [σ(lo), σ(hi)] for a monotone activation): the max-pool input bounds of
  /// MATH.md §2.5.
  virtual void activation_bounds(int64_t count, const ActSpec& s, const double* lo, const double* hi, double* out_lo,
                                 double* out_hi) = 0;
  /// Max-pool relaxations of `problems` problems (lo/hi: problems × in_size; slopes:
  /// problems × out_size × kk; betas: problems × out_size).
  virtual void relax_maxpool(const PoolGeom& g, int64_t problems, const double* lo, const double* hi, float* slopes,
                             float* beta_u, float* beta_l) = 0;
  /// Interval propagation through one node for `problems` problems (interval_elem): out_lo/out_hi
  /// (problems × s.n_out) from the input bounds lo/hi (problems × s.n_in) and, for Add, lo2/hi2
  /// (problems × s.n_out).
  virtual void interval(const IntervalStep& s, int64_t problems, const double* lo, const double* hi, const double* lo2,
                        const double* hi2, double* out_lo, double* out_hi) = 0;
  /// Row selection of `count` neurons at skip level `level` (select_elem): out_lo/out_hi get
  /// [lo, hi] ∩ [outer_lo, outer_hi] (outer_* may be null: no outer bounds), mask the verdicts.
  virtual void select_rows(int64_t count, SkipLevel level, const double* lo, const double* hi, const double* outer_lo,
                           const double* outer_hi, double* out_lo, double* out_hi, unsigned char* mask) = 0;
  /// dst[idx[i]] = src[i] for i < n.
  virtual void scatter(int64_t n, const int64_t* idx, const double* src, double* dst) = 0;
  /// flags[p] = code (> 0) for each problem p whose `size` values of lo or hi contain a NaN, an
  /// infinity or a magnitude beyond kMaxReliableBound (reliable_bound) and whose flag is still 0
  /// (the first code set stays; other flags unchanged).
  virtual void flag_nonfinite(int64_t problems, int64_t size, const double* lo, const double* hi, int code,
                              int* flags) = 0;

  /// The number of problems of the bound() call about to be issued: the cost model counts each
  /// problem's arrays (centres, relaxations) once per primitive call. The backends ignore it.
  virtual void set_problems(int64_t /*problems*/) {}
  /// Floating-point operations of the convolution and GEMM back-substitutions so far.
  virtual double backsub_flops() const { return 0; }
  /// Convolutions and GEMMs per path so far (zeros on the host).
  virtual PathCounts path_counts() const { return {}; }
  /// The cost model's counts so far (zeros except for make_metered_ops).
  virtual CostCounts cost_counts() const { return {}; }
};

/// `inner` with the cost model's counts (CostCounts) of every call; make_batched_engine wraps
/// its backend in it.
std::unique_ptr<Ops> make_metered_ops(std::unique_ptr<Ops> inner);

/// The host implementation (float32 on the CPU), with a memory budget in bytes.
std::unique_ptr<Ops> make_host_ops(size_t budget_bytes);

/// The CUDA implementation on the current device (cuda/cuda_ops.cu): `budget_bytes` for the
/// coefficient tensors and cuDNN's workspace (0 = 70 % of the free memory; more than 90 % of it
/// is clamped to that); `use_cudnn` = false replaces cuDNN and cuBLAS by the project's own kernels
/// (for comparisons); `max_grid_blocks` > 0 caps the grids of grid-stride loops (tests make the
/// loops repeat with it). Throws InvalidArgument without a GPU.
std::unique_ptr<Ops> make_cuda_ops(size_t budget_bytes, bool use_cudnn = true, int64_t max_grid_blocks = 0);

/// The batched engine over `ops`; reports itself as `ops->name()`.
std::unique_ptr<BoundEngine> make_batched_engine(const Network& net, std::unique_ptr<Ops> ops);

}  // namespace cnncert::batched
