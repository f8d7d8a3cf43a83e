// cnncert-bench proven: what PROVEN costs on top of a worst-case certification, on one model.
// Three runs per repeat, alternating block by block so that drifts of a noisy machine hit them alike:
//   worst case   the ℓ∞ worst-case search (`cnncert certify`);
//   + PROVEN     the same search (same steps, same radii) with PROVEN's work at every step: the
//                final linear bounds kept and the probability bound evaluated for every margin;
//   probabilistic  PROVEN's own search (`cnncert proven --no-worst-case`).
// Reports the median of each and the overheads, with the average radii and their ratio.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
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
#include "cnncert/certify.hpp"
#include "cnncert/cnncert.hpp"
#include "cnncert/proven.hpp"
#include "environment.hpp"
#include "io/output_file.hpp"

namespace {

using json = nlohmann::json;
using cnncert::bench::Clock;
using cnncert::bench::mean;
using cnncert::bench::median;
using cnncert::bench::seconds_since;

/// CPU seconds of this process (all threads, user + system): less sensitive than wall time to
/// time stolen by other tenants of a shared machine.
double cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/// Per-target radii of a certification in image order (skipped images left out).
std::vector<double> radii(const std::vector<cnncert::ImageResult>& res) {
  std::vector<double> r;
  for (const auto& im : res)
    if (!im.skipped)
      for (const auto& t : im.targets) r.push_back(t.eps);
  return r;
}

}  // namespace

int run_proven_bench(int argc, char** argv) {
  CLI::App app{
      "cnncert-bench proven: PROVEN's cost over the worst-case certification (medians of interleaved repeats)"};
  std::string method = "adaptive", noise = "uniform", json_path, device = "cpu";
  cnncert::bench::ModelInput input(100);
  int repeat = 3, threads = 0;
  int64_t block = 10;
  double confidence = 0.9999;
  input.add(app);
  app.add_option("--repeat", repeat, "repeats (medians are reported)")->capture_default_str();
  app.add_option("--block", block, "images per block at most (the three runs alternate block by block; 3k blocks)")
      ->capture_default_str();
  app.add_option("--method", method, "relaxation method")->capture_default_str();
  app.add_option("--noise", noise, "uniform, bernoulli, bounded or gaussian")->capture_default_str();
  app.add_option("--confidence", confidence, "confidence of the probabilistic certificate")->capture_default_str();
  app.add_option("--device", device, "cpu or gpu")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--json", json_path, "write the results as JSON");
  cnncert::bench::one_line_parse_errors(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (repeat < 1) throw cnncert::InvalidArgument("--repeat must be at least 1");
    if (block < 1) throw cnncert::InvalidArgument("--block must be at least 1");
    if (!(confidence > 0 && confidence < 1)) throw cnncert::InvalidArgument("--confidence must lie in (0, 1)");
    cnncert::detail::OutputFile json_out(json_path, "--json");
    const cnncert::bench::LoadedInput in = input.load();
    const cnncert::Network& net = in.net;
    const cnncert::ImageSet& set = in.set;
    const std::vector<double>& x = in.x;
    const std::string& model = input.model;
    cnncert::EngineOptions eo;
    eo.device = cnncert::parse_device(device);
    eo.threads = threads;
    auto engine = cnncert::make_engine(net, eo);

    cnncert::CertifyOptions wc;
    wc.bound.norm = cnncert::Norm::Linf;
    wc.attack_moves = 0;  // PROVEN's decision takes no counterexamples: both searches bound every step
    wc.bound.method = cnncert::parse_method(method);
    cnncert::ProvenOptions po;
    po.base = wc;
    po.noise.kind = cnncert::parse_noise(noise);
    po.confidence = confidence;
    po.worst_case = false;
    // The worst-case search with PROVEN's per-step work; the decision stays the worst-case one
    // (every lower bound finite and > 0), so the steps and radii are those of the plain search.
    cnncert::CertifyOptions with_proven = wc;
    with_proven.bound.want_linear = true;
    // The noise level whose region is the searched box: ε itself for bounded noise; for Gaussian
    // noise the σ whose box (tail δ/2) has radius ε.
    const bool gaussian = po.noise.kind == cnncert::NoiseKind::Gaussian;
    const double unit_radius =
        gaussian ? cnncert::gaussian_box_radius(1.0, {}, net.input_size(), (1 - confidence) / 2) : 1.0;
    double evaluated = 0;  // keeps the evaluations observable
    with_proven.decide = [&](const cnncert::BoundProblem& p, const cnncert::BoundResult& r, double eps, std::string*) {
      evaluated += cnncert::proven_failure_bound(p, r, po.noise, eps / unit_radius);
      return std::all_of(r.lower.begin(), r.lower.end(), [](double v) { return std::isfinite(v) && v > 0; });
    };

    // a multiple of 3 blocks, so that each run goes first equally often
    const int64_t blocks = 3 * ((set.count + 3 * block - 1) / (3 * block)), size = (set.count + blocks - 1) / blocks;
    json env = cnncert::bench::environment();
    std::cout << cnncert::bench::environment_line(env) << "\n";
    std::cout << model << ": " << set.count << " images, method " << method
              << ", l-inf, CNN-Cert search, random targets (seed " << wc.seed << "), " << noise << " noise at "
              << confidence << ", " << device << " engine, " << repeat << " repeats, blocks of " << size << " images\n";
    {  // warm-up (thread pool, first-touch allocations) on the first images, not timed
      const int64_t k = std::min<int64_t>(set.count, 5);
      const std::vector<double> xk(x.begin(), x.begin() + k * net.input_size());
      const std::vector<int64_t> lk = set.labels.empty()
                                          ? std::vector<int64_t>{}
                                          : std::vector<int64_t>(set.labels.begin(), set.labels.begin() + k);
      cnncert::certify(net, *engine, xk, lk, with_proven);
    }
    // The images in blocks; in every block the three runs follow each other (in rotating order),
    // so that the drifts of a shared machine hit them alike. Results per image do not depend on
    // the blocks (the engine bounds every problem on its own; random targets follow the image index).
    using RunFn = std::function<std::vector<double>(const std::vector<double>&, const std::vector<int64_t>&, int64_t)>;
    const RunFn runs[3] = {[&](const std::vector<double>& xb, const std::vector<int64_t>& lb, int64_t f) {
                             return radii(cnncert::certify(net, *engine, xb, lb, wc, f));
                           },
                           [&](const std::vector<double>& xb, const std::vector<int64_t>& lb, int64_t f) {
                             return radii(cnncert::certify(net, *engine, xb, lb, with_proven, f));
                           },
                           [&](const std::vector<double>& xb, const std::vector<int64_t>& lb, int64_t f) {
                             std::vector<double> r;
                             for (const auto& im : cnncert::proven_certify(net, *engine, xb, lb, po, f).images)
                               if (!im.skipped)
                                 for (const auto& t : im.targets) r.push_back(t.noise);
                             return r;
                           }};
    const int64_t d = net.input_size();
    std::vector<double> wall[3], cpu[3], rad[3];
    for (int i = 0; i < repeat; ++i) {
      double w_sum[3] = {0, 0, 0}, c_sum[3] = {0, 0, 0};
      for (auto& r : rad) r.clear();
      for (int64_t first = 0, b = 0; first < set.count; first += size, ++b) {
        const int64_t end = std::min(set.count, first + size);
        const std::vector<double> xb(x.begin() + first * d, x.begin() + end * d);
        const std::vector<int64_t> lb =
            set.labels.empty() ? std::vector<int64_t>{}
                               : std::vector<int64_t>(set.labels.begin() + first, set.labels.begin() + end);
        for (int k = 0; k < 3; ++k) {
          const int v = static_cast<int>((k + b) % 3);
          const auto t0 = Clock::now();
          const double c0 = cpu_seconds();
          const std::vector<double> r = runs[v](xb, lb, first);
          w_sum[v] += seconds_since(t0), c_sum[v] += cpu_seconds() - c0;
          rad[v].insert(rad[v].end(), r.begin(), r.end());
        }
      }
      for (int v = 0; v < 3; ++v) wall[v].push_back(w_sum[v]), cpu[v].push_back(c_sum[v]);
    }
    const std::vector<double>&t_wc = wall[0], &t_with = wall[1], &t_prob = wall[2], &c_wc = cpu[0], &c_with = cpu[1],
          &c_prob = cpu[2], &r_wc = rad[0], &r_with = rad[1], &r_prob = rad[2];
    if (r_with != r_wc)
      throw std::runtime_error("the search with PROVEN's evaluation gave other radii than the plain one");
    if (!std::isfinite(evaluated)) std::cout << "note: some probability bounds were not finite (failed closed)\n";
    double ratio = 0;
    int64_t n_ratio = 0;
    for (size_t k = 0; k < r_wc.size() && k < r_prob.size(); ++k)
      if (r_wc[k] > 0) ratio += r_prob[k] / r_wc[k], ++n_ratio;
    ratio = n_ratio ? ratio / static_cast<double>(n_ratio) : 0;
    auto pct = [](double a, double b) { return b > 0 ? 100.0 * (a / b - 1) : 0.0; };
    std::cout << std::fixed << std::setprecision(3);
    std::cout << "searches " << r_wc.size() << ": avg worst-case eps " << std::setprecision(6) << mean(r_wc)
              << ", avg probabilistic eps " << mean(r_prob) << ", avg ratio " << std::setprecision(3) << ratio << "\n";
    const int wide = std::max(24, 12 + 6 * repeat);
    std::cout << std::left << std::setw(48) << "" << std::setw(wide) << "wall s: median (runs)" << std::setw(wide)
              << "CPU s: median (runs)"
              << "\n";
    auto line = [&](const char* name, const std::vector<double>& t, const std::vector<double>& c,
                    const std::string& extra) {
      std::ostringstream w, u;
      w << std::fixed << std::setprecision(2) << median(t) << " (";
      for (size_t k = 0; k < t.size(); ++k) w << (k ? " " : "") << t[k];
      u << std::fixed << std::setprecision(2) << median(c) << " (";
      for (size_t k = 0; k < c.size(); ++k) u << (k ? " " : "") << c[k];
      std::cout << std::left << std::setw(48) << name << std::setw(wide) << w.str() + ")" << std::setw(wide)
                << u.str() + ")" << extra << "\n";
    };
    // the median of the per-repeat ratios: pairs run back to back, so slow drifts cancel
    auto paired = [&](const std::vector<double>& a, const std::vector<double>& b) {
      std::vector<double> r;
      for (size_t k = 0; k < a.size(); ++k) r.push_back(pct(a[k], b[k]));
      return median(r);
    };
    auto over = [&](const char* what, const std::vector<double>& t, const std::vector<double>& c) {
      std::ostringstream o;
      o << std::fixed << std::setprecision(1) << what << " wall " << std::showpos << pct(median(t), median(t_wc))
        << " %, CPU " << pct(median(c), median(c_wc)) << " %; paired: wall " << paired(t, t_wc) << " %, CPU "
        << paired(c, c_wc) << " %";
      return o.str();
    };
    line("worst-case search", t_wc, c_wc, "");
    line("same search + PROVEN evaluation at every step", t_with, c_with, over("overhead", t_with, c_with));
    line("probabilistic search (proven --no-worst-case)", t_prob, c_prob, over("vs worst case", t_prob, c_prob));
    std::cout << "both searches (what `cnncert proven` runs for the ratio): " << std::setprecision(2)
              << median(t_wc) + median(t_prob) << " s wall (sum of the medians above, in blocks)\n";
    json_out.stream() << json{{"environment", env},
                              {"model", model},
                              {"images", set.count},
                              {"searches", r_wc.size()},
                              {"avg_worst_case", mean(r_wc)},
                              {"avg_probabilistic", mean(r_prob)},
                              {"avg_ratio", ratio},
                              {"seconds_worst_case", t_wc},
                              {"seconds_worst_case_with_proven", t_with},
                              {"seconds_probabilistic", t_prob},
                              {"cpu_seconds_worst_case", c_wc},
                              {"cpu_seconds_worst_case_with_proven", c_with},
                              {"cpu_seconds_probabilistic", c_prob},
                              {"overhead_per_step_percent_paired_wall", paired(t_with, t_wc)},
                              {"overhead_per_step_percent_paired_cpu", paired(c_with, c_wc)},
                              {"probabilistic_vs_worst_case_percent_paired_wall", paired(t_prob, t_wc)},
                              {"probabilistic_vs_worst_case_percent_paired_cpu", paired(c_prob, c_wc)},
                              {"overhead_per_step_percent_wall", pct(median(t_with), median(t_wc))},
                              {"overhead_per_step_percent_cpu", pct(median(c_with), median(c_wc))},
                              {"probabilistic_vs_worst_case_percent_wall", pct(median(t_prob), median(t_wc))},
                              {"probabilistic_vs_worst_case_percent_cpu", pct(median(c_prob), median(c_wc))}}
                             .dump(2)
                      << "\n";
    json_out.commit();
    cnncert::detail::check_stdout();
  } catch (const cnncert::Error& e) {
    std::cerr << "cnncert-bench proven: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cnncert-bench proven: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
