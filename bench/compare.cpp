// cnncert-bench compare: the comparisons of the CNN-Cert paper on one model — certified radii of
// every method on the same (image, target) pairs, attacks and CLEVER as upper references, and
// the time per image with speedups over the Fast-Lin dense baseline.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench_util.hpp"
#include "cli/options.hpp"
#include "cnncert/baselines.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/cnncert.hpp"
#include "cnncert/convert.hpp"
#include "cnncert/lp.hpp"
#include "environment.hpp"
#include "io/output_file.hpp"

namespace {

using json = nlohmann::json;
using Clock = cnncert::bench::Clock;

struct Row {
  std::string method, kind;    // kind: "certified", "upper" (attack), "estimate" (CLEVER)
  std::vector<double> radius;  // per (image, target) pair, in pair order
  double seconds_per_image = 0;
  int64_t images = 0;
  std::string status;  // why the method did not run
};

using cnncert::bench::mean;
using cnncert::bench::seconds_since;

/// The command line of `compare`.
struct CompareOptions {
  std::string norms = "inf,2,1", methods = "ada,relu,dense,deepcert,crown,lips,lp,pgd,cw,clever", json_path;
  cnncert::bench::ModelInput input{10};
  int64_t n_slow = 2, lp_max_neurons = 2000;
  uint64_t seed = 1215;
  double clever_radius_inf = 0.3, clever_radius_2 = 3.0, clever_radius_1 = 10.0;
  int clever_batches = 50, clever_samples = 100;

  void add(CLI::App& app) {
    input.add(app);
    app.add_option("--slow-count", n_slow, "images for the slow baselines (Fast-Lin dense, LP)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
        ->capture_default_str();
    app.add_option("--norms", norms, "comma-separated norms")->capture_default_str();
    app.add_option("--lp-max-neurons", lp_max_neurons, "skip the LP baseline on networks with more ReLUs")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
        ->capture_default_str();
    app.add_option("--methods", methods, "ada, relu, dense, deepcert, crown, lips, lp, pgd, cw, clever")
        ->capture_default_str();
    app.add_option("--seed", seed, "seed of the random targets (a non-negative integer below 2^63)")
        ->check(CLI::Range(uint64_t{0}, (uint64_t{1} << 63) - 1))
        ->capture_default_str();
    app.add_option("--json", json_path, "write the table as JSON");
    // (and their product at most 10^7 gradient samples per image and target: a bench run, not a hang)
    app.add_option("--clever-batches", clever_batches, "CLEVER: batches N_b (1 to 10000)")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    app.add_option("--clever-samples", clever_samples, "CLEVER: samples per batch N_s (1 to 10000)")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    app.add_option("--clever-radius-inf", clever_radius_inf, "CLEVER sampling radius for l-inf")->capture_default_str();
    app.add_option("--clever-radius-2", clever_radius_2, "CLEVER sampling radius for l2")->capture_default_str();
    app.add_option("--clever-radius-1", clever_radius_1, "CLEVER sampling radius for l1")->capture_default_str();
  }

  bool wanted(const std::string& m) const {
    const std::vector<std::string> want = cnncert::detail::split_commas(methods);
    return std::find(want.begin(), want.end(), m) != want.end();
  }
};

/// One norm's comparison: the model and images, and the (image, target) pairs every method gets
/// (CNN-Cert-Ada's random targets, fixed by the first row).
struct Comparison {
  const CompareOptions& opt;
  const cnncert::bench::LoadedInput& in;
  cnncert::Norm norm;
  cnncert::CertifyOptions base;
  std::vector<int64_t> targets, predicted;
  std::vector<size_t> pair_images;
  std::vector<Row> rows;

  Comparison(const CompareOptions& o, const cnncert::bench::LoadedInput& input, cnncert::Norm n)
      : opt(o),
        in(input),
        norm(n),
        targets(static_cast<size_t>(input.set.count), 0),
        predicted(static_cast<size_t>(input.set.count), 0) {
    base.bound.norm = norm;
    base.seed = opt.seed;
  }

  int64_t input_size() const { return in.net.input_size(); }
  std::vector<double> x0_of(size_t i) const {
    const long d = static_cast<long>(input_size());
    return std::vector<double>(in.x.begin() + static_cast<long>(i) * d, in.x.begin() + static_cast<long>(i + 1) * d);
  }

  /// CNN-Cert-Ada (CNN-Cert on smooth activations) on every image: it fixes the pairs.
  Row certify_pairs(cnncert::BoundEngine& engine) {
    bool smooth = false;
    for (const auto& nd : in.net.nodes())
      if (nd.op == cnncert::OpKind::Activation && nd.as<cnncert::ActAttr>().kind != cnncert::ActKind::Relu &&
          nd.as<cnncert::ActAttr>().kind != cnncert::ActKind::LeakyRelu)
        smooth = true;
    Row r{smooth ? "CNN-Cert" : "CNN-Cert-Ada", "certified", {}, 0, 0, ""};
    cnncert::CertifyOptions o = base;
    o.bound.method = cnncert::parse_method("adaptive");
    const auto t0 = Clock::now();
    const auto res = cnncert::certify(in.net, engine, in.x, in.set.labels, o);
    const double total = seconds_since(t0);
    for (size_t i = 0; i < res.size(); ++i) {
      predicted[i] = res[i].predicted;
      if (res[i].skipped) {
        targets[i] = res[i].predicted;  // "target = prediction" makes certify() skip it again
        continue;
      }
      targets[i] = res[i].targets[0].target;
      pair_images.push_back(i);
      r.radius.push_back(res[i].targets[0].eps);
      ++r.images;
    }
    r.seconds_per_image = r.images ? total / static_cast<double>(r.images) : 0;
    return r;
  }

  /// `method` with `eng` on the pairs of the first `count` images.
  Row certify_row(const std::string& name, cnncert::BoundEngine& eng, const std::string& method, int64_t count) const {
    Row r{name, "certified", {}, 0, 0, ""};
    cnncert::CertifyOptions o = base;
    o.bound.method = cnncert::parse_method(method);
    o.targets = targets;
    o.targets.resize(static_cast<size_t>(count));
    std::vector<double> xs(in.x.begin(), in.x.begin() + count * input_size());
    std::vector<int64_t> labels(in.set.labels.begin(), in.set.labels.begin() + count);
    const auto t0 = Clock::now();
    const auto res = cnncert::certify(in.net, eng, xs, labels, o);
    const double total = seconds_since(t0);
    for (const auto& im : res)
      if (!im.skipped) r.radius.push_back(im.targets[0].eps), ++r.images;
    r.seconds_per_image = r.images ? total / static_cast<double>(r.images) : 0;
    return r;
  }

  /// The certified rows of the linear-bound methods and the LP.
  void add_certified_rows() {
    auto engine = cnncert::make_cpu_engine(in.net);
    const Row ada = certify_pairs(*engine);
    if (opt.wanted("ada")) rows.push_back(ada);
    const int64_t count = in.set.count, slow = std::min(opt.n_slow, in.set.count);
    if (opt.wanted("relu")) rows.push_back(certify_row("CNN-Cert-Relu", *engine, "fastlin", count));
    if (opt.wanted("dense")) {
      try {
        const cnncert::Network dense = cnncert::convert_to_dense(in.net);
        auto de = cnncert::make_cpu_engine(dense);
        rows.push_back(certify_row("Fast-Lin (dense)", *de, "fastlin", slow));
      } catch (const cnncert::Error& e) {
        rows.push_back({"Fast-Lin (dense)", "certified", {}, 0, 0, e.what()});
      }
    }
    if (opt.wanted("deepcert")) rows.push_back(certify_row("DeepCert", *engine, "deepcert", count));
    if (opt.wanted("crown")) rows.push_back(certify_row("CROWN (sound)", *engine, "crown", count));
    if (!opt.wanted("lp")) return;
    if (norm != cnncert::Norm::Linf) {
      rows.push_back({"LP", "certified", {}, 0, 0, "l-inf only"});
      return;
    }
    try {
      auto lpe = cnncert::make_lp_engine(in.net);  // throws first where the LP does not apply
      if (in.net.activation_neurons() > opt.lp_max_neurons)
        throw cnncert::InvalidArgument("network too large for the LP baseline (" +
                                       std::to_string(in.net.activation_neurons()) + " ReLUs > --lp-max-neurons " +
                                       std::to_string(opt.lp_max_neurons) + ")");
      rows.push_back(certify_row("LP", *lpe, "adaptive", slow));
    } catch (const cnncert::Error& e) {
      rows.push_back({"LP", "certified", {}, 0, 0, e.what()});
    }
  }

  /// A row computed pair by pair with `f`.
  void add_per_pair(const std::string& name, const std::string& kind, const std::function<double(size_t)>& f) {
    Row r{name, kind, {}, 0, 0, ""};
    const auto t0 = Clock::now();
    for (size_t i : pair_images) r.radius.push_back(f(i)), ++r.images;
    r.seconds_per_image = r.images ? seconds_since(t0) / static_cast<double>(r.images) : 0;
    rows.push_back(r);
  }

  /// Global Lipschitz, the attacks and CLEVER, on the pairs.
  void add_per_pair_rows() {
    const cnncert::Network& net = in.net;
    if (opt.wanted("lips")) {
      const cnncert::LipschitzNorms ln = cnncert::lipschitz_norms(net, norm);  // once per network and norm
      add_per_pair("Global-Lips", "certified", [&](size_t i) {
        return cnncert::global_lipschitz(net, ln, x0_of(i), predicted[i], targets[i]).radius;
      });
    }
    if (opt.wanted("pgd"))
      add_per_pair("PGD attack", "upper", [&](size_t i) {
        const auto a = cnncert::pgd_attack(net, x0_of(i), predicted[i], targets[i], norm);
        return a.found ? a.distortion : INFINITY;
      });
    if (opt.wanted("cw") && norm == cnncert::Norm::L2)
      add_per_pair("CW-l2 attack", "upper", [&](size_t i) {
        const auto a = cnncert::cw_l2_attack(net, x0_of(i), predicted[i], targets[i]);
        return a.found ? a.distortion : INFINITY;
      });
    if (opt.wanted("clever"))
      add_per_pair("CLEVER", "estimate", [&](size_t i) {
        cnncert::CleverOptions co;
        co.batches = opt.clever_batches;
        co.samples = opt.clever_samples;
        co.radius = norm == cnncert::Norm::Linf ? opt.clever_radius_inf
                    : norm == cnncert::Norm::L2 ? opt.clever_radius_2
                                                : opt.clever_radius_1;
        return cnncert::clever_score(net, x0_of(i), predicted[i], targets[i], norm, co).score;
      });
  }
};

/// Soundness cross-check: the certified radii that exceed an attack's distortion (each said on stderr).
int count_violations(const std::vector<Row>& rows) {
  int violations = 0;
  for (const Row& a : rows) {
    if (a.kind != "upper") continue;
    for (const Row& c : rows) {
      if (c.kind != "certified") continue;
      for (size_t k = 0; k < std::min(a.radius.size(), c.radius.size()); ++k)
        if (c.radius[k] > a.radius[k]) {
          ++violations;
          std::cerr << "SOUNDNESS VIOLATION: " << c.method << " certified " << c.radius[k] << " > " << a.method
                    << " found " << a.radius[k] << " (pair " << k << ")\n";
        }
    }
  }
  return violations;
}

/// Prints one norm's table (the improvement over CNN-Cert-Relu, else CNN-Cert-Ada, and the speedup
/// over the Fast-Lin dense baseline) and returns its rows as JSON.
json print_table(const std::vector<Row>& rows, const std::string& norm_s, size_t pairs, int violations) {
  const Row* relu = nullptr;  // the baseline of the improvement column
  const Row* dense = nullptr;
  for (const Row& r : rows)
    if ((r.method == "CNN-Cert-Ada" || r.method == "CNN-Cert") && r.status.empty() && !relu) relu = &r;
  for (const Row& r : rows) {
    if (r.method == "CNN-Cert-Relu" && r.status.empty()) relu = &r;
    if (r.method == "Fast-Lin (dense)" && r.status.empty()) dense = &r;
  }
  std::cout << "\nnorm " << norm_s << " — " << pairs << " correctly classified images"
            << (violations ? ", " + std::to_string(violations) + " SOUNDNESS VIOLATIONS"
                : std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.kind == "upper"; })
                    ? ", certified radii below every attack"
                    : ", no attack run")
            << "\n";
  std::cout << std::left << std::setw(18) << "method" << std::setw(10) << "kind" << std::setw(8) << "images"
            << std::setw(13) << "avg radius" << std::setw(18) << ("vs " + (relu ? relu->method : std::string("-")))
            << std::setw(12) << "s/image"
            << "speedup vs Fast-Lin dense\n";
  json jrows = json::array();
  for (const Row& r : rows) {
    if (!r.status.empty()) {
      std::cout << std::setw(18) << r.method << "n/a: " << r.status << "\n";
      jrows.push_back({{"method", r.method}, {"status", r.status}});
      continue;
    }
    const double avg = mean(r.radius);
    std::ostringstream imp, speed;
    if (relu && r.kind == "certified") {
      // compare on the pairs both methods ran
      const size_t m = std::min(r.radius.size(), relu->radius.size());
      const double a = mean(std::vector<double>(r.radius.begin(), r.radius.begin() + static_cast<long>(m)));
      const double b = mean(std::vector<double>(relu->radius.begin(), relu->radius.begin() + static_cast<long>(m)));
      if (b > 0) imp << std::showpos << std::fixed << std::setprecision(1) << 100 * (a / b - 1) << "%";
    }
    if (dense && r.seconds_per_image > 0)
      speed << std::fixed << std::setprecision(1) << dense->seconds_per_image / r.seconds_per_image << "x";
    std::cout << std::setw(18) << r.method << std::setw(10) << r.kind << std::setw(8) << r.images << std::setw(13)
              << std::setprecision(5) << avg << std::setw(18) << imp.str() << std::setw(12) << std::setprecision(4)
              << r.seconds_per_image << speed.str() << "\n";
    jrows.push_back({{"method", r.method},
                     {"kind", r.kind},
                     {"images", r.images},
                     {"avg_radius", avg},
                     {"improvement", imp.str()},
                     {"speedup_vs_dense", speed.str()},
                     {"radii", r.radius},
                     {"seconds_per_image", r.seconds_per_image}});
  }
  return jrows;
}

/// One norm: every method's row, the cross-check and the table; returns the norm's JSON.
json compare_norm(const CompareOptions& opt, const cnncert::bench::LoadedInput& in, const std::string& norm_s) {
  Comparison c(opt, in, cnncert::parse_norm(norm_s));
  c.add_certified_rows();
  c.add_per_pair_rows();
  const int violations = count_violations(c.rows);
  const json jrows = print_table(c.rows, norm_s, c.pair_images.size(), violations);
  return {{"norm", norm_s}, {"pairs", c.pair_images.size()}, {"violations", violations}, {"rows", jrows}};
}

}  // namespace

int run_compare(int argc, char** argv) {
  CLI::App app{"cnncert-bench compare: radii and times of every method on the same (image, target) pairs"};
  CompareOptions opt;
  opt.add(app);
  cnncert::bench::one_line_parse_errors(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (static_cast<int64_t>(opt.clever_batches) * opt.clever_samples > 10'000'000)
      throw cnncert::InvalidArgument("--clever-batches x --clever-samples must be at most 10^7 gradient samples");
    static const std::vector<std::string> known = {"ada",  "relu", "dense", "deepcert", "crown",
                                                   "lips", "lp",   "pgd",   "cw",       "clever"};
    const std::vector<std::string> methods = cnncert::detail::split_commas(opt.methods);
    if (methods.empty()) throw cnncert::InvalidArgument("--methods names no method");
    for (const std::string& m : methods)
      if (std::find(known.begin(), known.end(), m) == known.end()) {
        std::string list;
        for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
        throw cnncert::InvalidArgument("--methods: unknown method '" + m + "' (" + list + ")");
      }
    const std::vector<std::string> norms = cnncert::detail::split_commas(opt.norms);
    if (norms.empty()) throw cnncert::InvalidArgument("--norms names no norm");
    for (const std::string& n : norms) (void)cnncert::parse_norm(n);
    cnncert::detail::OutputFile json_out(opt.json_path, "--json");
    const cnncert::bench::LoadedInput in = opt.input.load();
    const json env = cnncert::bench::environment();
    std::cout << cnncert::bench::environment_line(env) << "\n";
    std::cout << "compare | " << opt.input.model << " | " << in.set.count << " images, random targets (seed "
              << opt.seed << "), CNN-Cert search | engines: cpu"
              << (cnncert::cuda_available() ? "" : " (no GPU engine run: no usable GPU)") << "\n";
    json jnorms = json::array();
    for (const std::string& norm_s : cnncert::detail::split_commas(opt.norms))
      jnorms.push_back(compare_norm(opt, in, norm_s));
    json_out.stream() << json{{"model", opt.input.model}, {"images", opt.input.images}, {"seed", opt.seed},
                              {"engine", "cpu"},          {"environment", env},         {"norms", jnorms}}
                             .dump(2)
                      << "\n";
    json_out.commit();
    cnncert::detail::check_stdout();
  } catch (const cnncert::Error& e) {
    std::cerr << "cnncert-bench: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
