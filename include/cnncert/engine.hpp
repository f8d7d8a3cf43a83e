#pragma once
/// \file engine.hpp
/// The bound engine interface (DESIGN.md §3.2) and the CPU reference engine.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cnncert/network.hpp"
#include "cnncert/relaxation.hpp"

namespace cnncert {

/// Norm of the input perturbation ball.
enum class Norm { Linf, L2, L1 };
/// Parses "inf", "linf", "2", "l2", "1", "l1".
Norm parse_norm(const std::string& s);
/// "inf", "2" or "1".
const char* norm_name(Norm n);

/// A relaxation method: how ReLU-like and smooth activations are relaxed.
struct Method {
  ReluRule relu = ReluRule::Adaptive;
  SmoothRule smooth = SmoothRule::CnnCert;
  std::string name = "adaptive";
};
/// "fastlin" (CNN-Cert-Relu / Fast-Lin), "adaptive" (CNN-Cert-Ada), "cnncert" (= adaptive ReLU +
/// CNN-Cert's general activations), "deepcert", "crown" (sound CROWN-style sigmoid/tanh/arctan).
Method parse_method(const std::string& s);

/// Bounds of one node's outputs.
struct NodeBounds {
  int node = -1;
  std::vector<double> lower, upper;
};

/// Bounds that hold on a region containing a problem's: what a radius search knows from an
/// earlier step at a larger radius around the same centre (BoundProblem::outer). A ball of
/// radius eps around x0 under the same norm and box options contains every ball of a smaller
/// radius around x0, so its sound bounds are sound bounds there too. They must come from the same
/// network (the engine checks the node sizes only) and be sound: the engine trusts them.
struct OuterBounds {
  std::vector<double> x0;  ///< the centre they were computed for
  double eps = 0;          ///< the radius they were computed for
  Norm norm = Norm::Linf;  ///< with these options
  bool clip_to_box = false;
  double box_lo = 0, box_hi = 1;
  std::vector<NodeBounds> nodes;  ///< what BoundResult::intermediate returned there
};

/// One problem of a batch: an input region (a ball: a centre and a radius; or a box) and the
/// linear functions of the logits to bound.
struct BoundProblem {
  std::vector<double> x0;    ///< network input (input_size() values); inside the box when one is given
  double eps = 0;            ///< radius of the ball (unused with a box)
  std::vector<double> spec;  ///< rows × output_size(): row i is the linear function c_iᵀ·logits
  int64_t rows = 0;
  /// A box instead of the ball (both empty, or input_size() finite values each with
  /// x_lower ≤ x0 ≤ x_upper): the region is {x : x_lower ≤ x ≤ x_upper}, intersected with the
  /// options' box under clip_to_box; the norm must be ℓ∞. An ℓ∞ ball is the box x0 ± eps, and
  /// gives the same bounds either way.
  std::vector<double> x_lower, x_upper;
  bool has_box() const { return !x_lower.empty() || !x_upper.empty(); }
  /// Optional: bounds from a larger ball around the same centre (see OuterBounds). Engines that
  /// skip rows (the fast CPU engine without BoundOptions::exact_cnncert) use them only to prove
  /// neurons stable; they never replace a back-substituted bound. Ignored (as if absent) unless
  /// x0, the norm and the box options equal the problem's, eps ≥ the problem's eps, the problem is
  /// a ball (no box) and every node's bounds have the node's size.
  std::shared_ptr<const OuterBounds> outer;
};

/// Options shared by a batch.
struct BoundOptions {
  Norm norm = Norm::Linf;
  Method method;
  /// ℓ∞ only: intersect the ball with the box [box_lo, box_hi] (one value for all inputs).
  bool clip_to_box = false;
  double box_lo = 0, box_hi = 1;
  /// Also return the final linear coefficients of every row.
  bool want_linear = false;
  /// Also return the bounds [l, u] of every node that needed them.
  bool want_intermediate = false;
  /// The upper bounds of the rows are needed (the certification driver only needs the lower
  /// ones; engines for which the upper bound costs extra, like the LP, may then skip it and
  /// report +inf).
  bool want_upper = true;
  /// Called as (layers done, layers) while one bound() call works through the network (one
  /// "layer" = the bounds of one activation or max-pool input, the last one the specification
  /// rows), from the calling thread, for progress displays on long calls. Engines that spread a
  /// batch over threads problem by problem do not call it.
  std::function<void(int64_t, int64_t)> layer_progress;
  /// Reproduce the original CNN-Cert's algorithm: every neuron's intermediate bounds come from its
  /// own back-substitution (the reference engine's numbers; the fast CPU and the GPU engines
  /// equal them to float32 rounding). Off (the default), the fast CPU and the GPU (batched) engines first prove neurons
  /// stable by interval propagation from the latest bounds, intersected with the problem's outer
  /// bounds when it has some (BoundProblem::outer), and back-substitutes only the others
  /// (nodes whose bounds feed ReLU/LeakyReLU relaxations only; before a max-pool that reads a ReLU,
  /// only neurons proven ≤ 0, whose max-pool input bounds are [0, 0] either way). A neuron proven stable that
  /// CNN-Cert's own bounds leave unstable usually makes the result tighter than CNN-Cert's, but
  /// back-substitution is not monotone in the relaxations: rarely a bound comes out slightly looser
  /// (measured: 3 of 1494 bounds on random networks, by ≤ 0.5 % of the width). With
  /// want_intermediate, the skipped neurons report their (widened) interval bounds, intersected with the outer ones.
  /// The reference engine always runs exactly.
  bool exact_cnncert = false;
};

/// Result of one problem.
struct BoundResult {
  std::vector<double> lower, upper;  ///< one per spec row
  /// want_linear: lower(x) ≥ A_L·x + B_L and upper(x) ≤ A_U·x + B_U on the region, per row
  /// (rows × input_size() for A, rows for B).
  std::vector<double> a_lower, b_lower, a_upper, b_upper;
  std::vector<NodeBounds> intermediate;  ///< want_intermediate
  std::string error;                     ///< non-empty when the bounds could not be computed (NaN/Inf)
};

/// Where an engine's time went (engines that keep no statistics report zeros).
struct EngineStats {
  int64_t calls = 0;              ///< bound() calls
  double seconds_bounds = 0;      ///< intermediate bounds (back-substitution of identity rows)
  double seconds_relax = 0;       ///< relaxation parameters
  double seconds_final = 0;       ///< the specification rows
  double backsub_flops = 0;       ///< floating-point operations of convolution and GEMM back-substitution
  double rows_computed = 0;       ///< intermediate-bound neurons that got a back-substitution row
  double rows_skipped = 0;        ///< neurons that got no row (proven stable, or ≤ 0 before a max-pool)
  double rows_skipped_outer = 0;  ///< of those, the ones only BoundProblem::outer proved stable
  /// Fast CPU engine: the largest size of the coefficient tensors during one call (counted over the
  /// whole process: approximate when several engines run at once).
  double peak_tensor_bytes = 0;
  /// GPU engine: back-substitutions of dense rows through convolutions by cuDNN, by cuDNN that
  /// failed at execution time (the own kernel ran instead), by the own kernel; of windowed rows
  /// (always the own kernels: cuDNN has no per-row window); GEMMs by cuBLAS and by the own kernel
  /// (calls).
  int64_t conv_cudnn = 0, conv_cudnn_failed = 0, conv_own_kernel = 0, conv_windowed = 0, gemm_cublas = 0,
          gemm_own_kernel = 0;
  /// GPU engine: kernel launches (library calls counted once) and host waits for the GPU.
  int64_t gpu_launches = 0, gpu_syncs = 0;
  /// Batched engine (GPU and host-float), the GPU cost model's inputs, counted alike on both
  /// backends: floating-point operations and device-memory bytes of every primitive operation
  /// (each array read or written once), one kernel launch per primitive call and upload, and the
  /// host waits (downloads and synchronizations).
  double model_flops = 0, model_bytes = 0;
  int64_t model_launches = 0, model_syncs = 0;
};

/// Computes certified bounds of linear functions of the logits over an input region.
class BoundEngine {
 public:
  virtual ~BoundEngine() = default;
  /// Name for reports ("cpu", "gpu").
  virtual std::string name() const = 0;
  /// Bounds for every problem of the batch (each at its own centre and radius).
  virtual std::vector<BoundResult> bound(const std::vector<BoundProblem>& problems, const BoundOptions& options) = 0;
  /// Time per phase since the engine was made.
  virtual EngineStats stats() const { return {}; }
  /// Whether the engine uses BoundProblem::outer (under these options): a search then keeps the
  /// intermediate bounds of its failed steps to pass them on.
  virtual bool uses_outer_bounds(const BoundOptions&) const { return false; }
};

/// Throws UnsupportedModel when the network contains a node the engines cannot bound.
void check_boundable(const Network& net);

/// Throws InvalidArgument when a batch does not fit the network (sizes, NaN, negative eps, a
/// centre outside the clipping box, ...). Every engine checks its batch with it.
void check_bound_problems(const Network& net, const std::vector<BoundProblem>& problems, const BoundOptions& options);

/// The CPU reference engine: the plain algorithm that defines the results (double precision,
/// per-row receptive-field windows, `threads` worker threads over the problems; 0 = hardware
/// concurrency). Every faster engine is tested against it. Reports itself as "cpu-reference".
std::unique_ptr<BoundEngine> make_cpu_engine(const Network& net, int threads = 0);

/// The fast CPU engine (the default for Device::Cpu): the reference's algorithm with float32
/// coefficients and weights (bias terms, bounds and intervals in double; the results equal the
/// reference's to float rounding, about 2⁻²⁴ of each layer's sums per layer; specification
/// coefficients that float32 cannot hold are corrected for soundly; weights or coefficients beyond
/// float32's range are an InvalidArgument) and per-row receptive-field windows, GEMM-shaped back-substitution (BLAS
/// when the build has it), rows only for neurons not proven stable (see BoundOptions::exact_cnncert) and `threads`
/// worker threads (0 = all cores; as many run at once as the memory budget holds). `memory_mib`
/// bounds the coefficient tensors of all threads together: rows are chunked to it. For a given
/// budget, the results are bit-identical for any thread count. With OpenBLAS, it sets OpenBLAS's own
/// threading to one thread for the process, because the engine's threads run the GEMMs.
/// Reports itself as "cpu".
std::unique_ptr<BoundEngine> make_fast_engine(const Network& net, int threads = 0, size_t memory_mib = 2048);

/// Where bounds are computed: a CPU engine (EngineOptions::cpu_engine), the CUDA engine, or the GPU when one is
/// usable and the CPU otherwise.
enum class Device { Cpu, Gpu, Auto };
/// Parses "cpu", "gpu" or "auto".
Device parse_device(const std::string& s);

/// Which CPU engine Device::Cpu (and Device::Auto without a GPU) uses.
enum class CpuEngine { Fast, Reference };
/// Parses "fast" or "reference".
CpuEngine parse_cpu_engine(const std::string& s);

/// Engine selection and resources.
struct EngineOptions {
  Device device = Device::Cpu;
  CpuEngine cpu_engine = CpuEngine::Fast;  ///< the fast engine, or the plain reference
  int threads = 0;                         ///< CPU engine: worker threads (0 = all cores)
  size_t cpu_memory_mib = 2048;            ///< fast CPU engine: memory for the coefficient tensors
  size_t gpu_memory_mib =
      0;  ///< GPU engine: memory for the coefficient tensors (0 = 70 % of the free memory; clamped to 90 %)
};

/// The engine `o.device` asks for. Device::Gpu without a usable GPU throws InvalidArgument
/// saying why (no CUDA in this build, no device, driver error).
std::unique_ptr<BoundEngine> make_engine(const Network& net, const EngineOptions& o = {});

/// The CUDA engine (float32, batched across problems; DESIGN.md §3.2). Throws InvalidArgument
/// when no GPU is usable.
std::unique_ptr<BoundEngine> make_gpu_engine(const Network& net, size_t memory_mib = 0);

/// The CUDA engine's algorithm run on the CPU in float32 (same chunking, batching and element
/// operations, direct loops instead of cuDNN/cuBLAS): the CPU-side check of the GPU engine's
/// logic, and what the GPU engine is compared with operation by operation. Slow; for tests.
std::unique_ptr<BoundEngine> make_float_engine(const Network& net, size_t memory_mib = 64);

}  // namespace cnncert
