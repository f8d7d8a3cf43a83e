// libFuzzer target: the ONNX importer (protobuf decoding, constant folding, shape inference,
// BatchNorm/bias folding), then, for small imported networks, the forward pass and one bound
// computation of the CPU reference engine.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cnncert/engine.hpp"
#include "cnncert/network.hpp"
#include "cnncert/onnx.hpp"
#include "fuzz_common.hpp"

namespace {

using namespace cnncert;

constexpr int64_t kMaxForwardElements = int64_t{1} << 16;     // sum of node sizes for forward()
constexpr double kMaxForwardMacs = double(int64_t{1} << 24);  // multiply-adds of one forward pass
constexpr int64_t kMaxBoundNeurons = 2048;                    // activation neurons for bound()
constexpr int64_t kMaxBoundInput = 1024;
constexpr int64_t kMaxBoundNodes = 64;

// Multiply-adds of one forward pass (an estimate that keeps legal-but-slow models out).
double forward_macs(const Network& net) {
  double macs = 0;
  for (const Node& n : net.nodes()) {
    if (n.op == OpKind::Conv) {
      const auto& a = n.as<ConvAttr>();
      macs += double(n.size()) * double(a.in_channels) * double(a.kernel_h) * double(a.kernel_w);
    } else if (n.op == OpKind::Dense) {
      const auto& a = n.as<DenseAttr>();
      macs += double(a.in_features) * double(a.out_features);
    } else if (n.op == OpKind::MaxPool || n.op == OpKind::AvgPool) {
      const auto& a = n.as<PoolAttr>();
      macs += double(n.size()) * double(a.kernel_h) * double(a.kernel_w);
    } else {
      macs += double(n.size());
    }
  }
  return macs;
}

// CNNCERT_FUZZ_VERBOSE=1: say how far each input got (to check that seeds reach the engine).
void stage(const char* what, const Network& net) {
  static const bool verbose = std::getenv("CNNCERT_FUZZ_VERBOSE") != nullptr;
  if (verbose)
    std::fprintf(stderr, "%s: %zu nodes, input %s, %lld activation neurons\n", what, net.nodes().size(),
                 shape_str(net.input_shape()).c_str(), static_cast<long long>(net.activation_neurons()));
}

void run_one(const std::string& bytes) {
  const Network net = import_onnx_bytes(bytes, "fuzz.onnx");
  stage("imported", net);

  // Invariants every imported network has.
  CNNCERT_FUZZ_EXPECT(!net.nodes().empty() && net.nodes()[0].op == OpKind::Input, "node 0 is the input");
  CNNCERT_FUZZ_EXPECT(net.output() >= 0 && net.output() < static_cast<int>(net.nodes().size()), "output node exists");
  int64_t total = 0;
  for (size_t i = 0; i < net.nodes().size(); ++i) {
    const Node& n = net.nodes()[i];
    for (int p : n.inputs) CNNCERT_FUZZ_EXPECT(p >= 0 && p < static_cast<int>(i), "inputs precede their node");
    const int64_t s = n.size();
    CNNCERT_FUZZ_EXPECT(s >= 1, "every node has at least one element");
    total = total > kMaxForwardElements ? total : total + s;
  }
  if (total > kMaxForwardElements || net.input_size() > kMaxForwardElements) return;
  if (forward_macs(net) > kMaxForwardMacs) return;

  // Forward pass on a deterministic input.
  const int64_t in_size = net.input_size();
  std::vector<double> x0(static_cast<size_t>(in_size), 0.5);
  const std::vector<double> y = net.forward(x0.data(), 1);
  CNNCERT_FUZZ_EXPECT(static_cast<int64_t>(y.size()) == net.output_size(), "forward returns output_size values");
  const std::vector<float> xf(x0.begin(), x0.end());
  const std::vector<float> yf = net.forward(xf.data(), 1);
  CNNCERT_FUZZ_EXPECT(yf.size() == y.size(), "float forward returns output_size values");
  stage("forward done", net);

  // One bound computation on a tiny l-inf ball, for small networks the engines accept.
  if (net.activation_neurons() > kMaxBoundNeurons || in_size > kMaxBoundInput ||
      static_cast<int64_t>(net.nodes().size()) > kMaxBoundNodes)
    return;
  for (double v : y)
    if (!std::isfinite(v)) return;  // the engine reports non-finite bounds as errors anyway
  check_boundable(net);

  const int64_t out = net.output_size();
  BoundProblem p;
  p.x0 = x0;
  p.eps = 1e-3;
  if (out >= 2) {  // margins f_c - f_t of the predicted class c (as the certification driver asks)
    const int64_t c = std::max_element(y.begin(), y.end()) - y.begin();
    // At most 16 targets: the spec is rows × outputs, and a crafted net may have 2^22 outputs (a
    // full margin matrix of those ran the harness itself out of memory in the campaign).
    for (int64_t t = 0; t < out && p.rows < 16; ++t) {
      if (t == c) continue;
      std::vector<double> row(static_cast<size_t>(out), 0.0);
      row[static_cast<size_t>(c)] = 1.0;
      row[static_cast<size_t>(t)] -= 1.0;
      p.spec.insert(p.spec.end(), row.begin(), row.end());
      ++p.rows;
    }
  } else {
    p.spec = {1.0};
    p.rows = 1;
  }
  BoundOptions o;
  o.norm = Norm::Linf;
  // The method is a deterministic function of the input, so every method gets exercised.
  static const char* const kMethods[] = {"adaptive", "fastlin", "crown", "deepcert"};
  o.method = parse_method(kMethods[bytes.size() % 4]);
  auto engine = make_cpu_engine(net, 1);
  const std::vector<BoundResult> r = engine->bound({p}, o);
  CNNCERT_FUZZ_EXPECT(r.size() == 1, "one result per problem");
  stage(("bound done (" + o.method.name + (r[0].error.empty() ? "" : ", error: " + r[0].error) + ")").c_str(), net);
  if (!r[0].error.empty()) return;  // NaN/Inf on the way: reported, not a bound
  CNNCERT_FUZZ_EXPECT(
      static_cast<int64_t>(r[0].lower.size()) == p.rows && static_cast<int64_t>(r[0].upper.size()) == p.rows,
      "one bound per spec row");
  // Soundness at the centre: every row's value at x0 lies within its bounds.
  for (int64_t k = 0; k < p.rows; ++k) {
    double v = 0, mag = 0;
    for (int64_t j = 0; j < out; ++j) {
      v += p.spec[static_cast<size_t>(k * out + j)] * y[static_cast<size_t>(j)];
      mag += std::abs(y[static_cast<size_t>(j)]);
    }
    const double lo = r[0].lower[static_cast<size_t>(k)], hi = r[0].upper[static_cast<size_t>(k)];
    if (!std::isfinite(lo) || !std::isfinite(hi) || !std::isfinite(v)) continue;
    const double tol = 1e-6 * (1.0 + mag + std::abs(lo) + std::abs(hi));
    CNNCERT_FUZZ_EXPECT(lo <= v + tol && v <= hi + tol, "bounds contain the value at the centre: row " +
                                                            std::to_string(k) + ": lower " + std::to_string(lo) +
                                                            ", value " + std::to_string(v) + ", upper " +
                                                            std::to_string(hi) + " (method " + o.method.name + ")");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Legal-but-huge tensors are rejected at 4 Mi elements instead of 2^31, so a crafted model
  // cannot claim gigabytes (libFuzzer's -rss_limit_mb would report that as an OOM finding).
  cnncert::set_max_tensor_elements(int64_t{1} << 22);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  return cnncert::fuzz::guarded([&] { run_one(bytes); });
}
