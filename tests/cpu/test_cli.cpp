// The cnncert command: exit codes, one-line errors, and the predict/info outputs.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cnncert/cuda.hpp"
#include "common/cli_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

TEST(Cli, HelpEverywhere) {
  for (const char* args : {"--help", "info --help", "predict --help", "gpu --help"}) {
    const Result r = cli(args);
    EXPECT_EQ(r.code, 0) << args;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << args << ": " << r.out;
  }
  EXPECT_NE(cli("--version").out.find("cnncert"), std::string::npos);
}

TEST(Cli, PredictShippedModel) {
  const Result r = cli(kModel + " " + kImages);  // no subcommand
  EXPECT_EQ(r.code, 2);
  const Result p = cli("predict " + kModel + " " + kImages);
  ASSERT_EQ(p.code, 0) << p.err;
  // onnxruntime classifies 99 of the 100 shipped images correctly (tools/make_reference.py)
  EXPECT_NE(p.out.find("accuracy: 99/100"), std::string::npos) << p.out;
  const Result j = cli("predict " + kModel + " " + kImages + " -q -n 10 --offset 5 --json -");
  ASSERT_EQ(j.code, 0) << j.err;
  const auto json = nlohmann::json::parse(j.out);  // stdout holds the JSON alone
  EXPECT_NE(j.err.find("accuracy: "), std::string::npos) << "the summary goes to stderr with --json -: " << j.err;
  EXPECT_EQ(json["count"], 10);
  ASSERT_EQ(json["images"].size(), 10u);
  EXPECT_EQ(json["images"][0]["image"], 5);
  EXPECT_EQ(json["images"][0]["logits"].size(), 10u);
}

TEST(Cli, ModelsWithoutAnImageInputReadFlatRows) {
  // A rank-1 input (no batch dimension) of 5 values: (N, 5) rows are its inputs, not images.
  const auto dir = scratch_dir("cli_rank1");
  const std::string model = (source_dir() / "tests/fixtures/ops/rank1_mlp.onnx").string();
  const auto x = detail::read_npy((source_dir() / "tests/fixtures/ops/rank1_mlp.input.npy").string());
  const auto y = detail::read_npy((source_dir() / "tests/fixtures/ops/rank1_mlp.logits.npy").string());
  std::vector<double> labels;
  for (int64_t i = 0; i < y.shape[0]; ++i)  // onnxruntime's classes
    labels.push_back(static_cast<double>(std::max_element(y.data.begin() + i * 3, y.data.begin() + i * 3 + 3) -
                                         (y.data.begin() + i * 3)));
  detail::write_npy((dir / "x.npy").string(), {x.shape[0], 5}, x.data, true);
  detail::write_npy((dir / "x.labels.npy").string(), {x.shape[0]}, labels, false);
  const Result p = cli("predict " + model + " " + (dir / "x.npy").string() + " -q");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("accuracy: 8/8"), std::string::npos) << p.out;
  const Result c = cli("certify " + model + " " + (dir / "x.npy").string() + " -n 2");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("images = 2 certified"), std::string::npos) << c.out;
  // Rows of another length are still an error that says what is recognised.
  detail::write_npy((dir / "bad.npy").string(), {2, 7}, std::vector<double>(14, 0.5), true);
  const Result bad = cli("predict " + model + " " + (dir / "bad.npy").string());
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("cannot infer the image shape from 7"), std::string::npos) << bad.err;
}

TEST(Cli, ACpuRunLoadsNoCudaLibraryAndTheGpuPluginLoadsOnDemand) {
  // The dynamic loader's log (glibc's LD_DEBUG) names every library a process loads.
  const std::string traced = std::string("LD_DEBUG=libs ") + CNNCERT_CLI_PATH;
  const Result cpu = run(traced, "certify " + kModel + " " + kImages + " -n 2 -q");
  ASSERT_EQ(cpu.code, 0) << cpu.err.substr(0, 2000);
  for (const char* lib : {"libcudart", "libcublas", "libcudnn", "libcnncert_cuda"})
    EXPECT_EQ(cpu.err.find(lib), std::string::npos) << "a CPU-only run loaded " << lib;
  if (std::string(CNNCERT_CUDA_PLUGIN_PATH).empty()) GTEST_SKIP() << "built without the CUDA engine";
  const Result gpu = run(traced, "certify " + kModel + " " + kImages + " -n 1 --device gpu -q");
  EXPECT_NE(gpu.err.find("libcnncert_cuda"), std::string::npos) << "--device gpu did not load the plugin";
  if (gpu.code != 0)
    EXPECT_NE(gpu.err.find("--device gpu: no usable GPU"), std::string::npos) << gpu.err.substr(gpu.err.size() - 500);
  // Without the plugin: the one-line error, exit 2.
  const Result missing = run(std::string("CNNCERT_CUDA_PLUGIN=/nonexistent/libcnncert_cuda.so ") + CNNCERT_CLI_PATH,
                             "certify " + kModel + " " + kImages + " -n 1 --device gpu");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(
      missing.err.find("the CUDA engine (libcnncert_cuda.so) could not be loaded: /nonexistent/libcnncert_cuda.so"),
      std::string::npos)
      << missing.err;
}

TEST(Cli, InfoReportsLayersAndNeurons) {
  const auto dir = scratch_dir("cli_info");
  const Result r = cli("info " + kModel + " --json " + (dir / "info.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Conv"), std::string::npos);
  const auto json = nlohmann::json::parse(read_file(dir / "info.json"));
  // 5×26×26 + 5×24×24 + 5×22×22 ReLUs
  EXPECT_EQ(json["activation_neurons"], 8680);
  EXPECT_EQ(json["output_shape"], nlohmann::json::array({10}));
  std::filesystem::remove_all(dir);
}

TEST(Cli, BadInputGivesOneLineAndExitCode2) {
  const auto dir = scratch_dir("cli_bad");
  expect_bad_input(cli("info " + (dir / "nope.onnx").string()), "nope.onnx");
  write_file(dir / "junk.onnx", "not a model at all");
  expect_bad_input(cli("predict " + (dir / "junk.onnx").string() + " " + kImages), "junk.onnx");
  const std::string sign = onnx_model({onnx_node("Sign", {"x"}, {"y"}, {}, "binarize")}, {}, onnx_value("x", {-1, 784}),
                                      onnx_value("y", {-1, 784}));
  write_file(dir / "sign.onnx", sign);
  expect_bad_input(cli("info " + (dir / "sign.onnx").string()), "op Sign");
  expect_bad_input(cli("predict " + kModel + " " + (dir / "missing.npy").string()), "missing.npy");
  // CIFAR-shaped images for an MNIST model
  detail::write_npy((dir / "cifar.npy").string(), {2, 3, 32, 32}, std::vector<double>(2 * 3072, 1.0), true);
  expect_bad_input(cli("predict " + kModel + " " + (dir / "cifar.npy").string()), "3072");
  std::vector<double> px(784, 0.5);
  px[100] = std::nan("");
  detail::write_npy((dir / "nan.npy").string(), {1, 1, 28, 28}, px, true);
  expect_bad_input(cli("predict " + kModel + " " + (dir / "nan.npy").string()), "nan.npy");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " --scale abc"), "--scale");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " --layout XYZ"), "XYZ");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " -n 0"), "count");
  const Result unknown = cli("predict " + kModel + " " + kImages + " --no-such-option");
  EXPECT_EQ(unknown.code, 2) << unknown.err;
  std::filesystem::remove_all(dir);
}

TEST(Cli, CertifyShippedModel) {
  const auto dir = scratch_dir("cli_certify");
  const Result r = cli("certify " + kModel + " " + kImages + " -n 3 --json " + (dir / "c.json").string() + " --csv " +
                       (dir / "c.csv").string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("avg robustness = "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("avg run time = "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("image 2: label 1, target"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_file(dir / "c.json"));
  ASSERT_EQ(j["images"].size(), 3u);
  for (const auto& im : j["images"]) {
    ASSERT_FALSE(im["skipped"].get<bool>());
    EXPECT_GT(im["targets"][0]["eps"].get<double>(), 0.0);
    EXPECT_NE(im["targets"][0]["target"].get<int>(), im["predicted"].get<int>());
  }
  EXPECT_EQ(j["seed"], 1215);
  const std::string csv = read_file(dir / "c.csv");
  EXPECT_EQ(csv.rfind("image,label,predicted,target,eps", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  // explicit targets
  write_file(dir / "targets.txt", "3\nuntargeted\n");
  const Result t =
      cli("certify " + kModel + " " + kImages + " -n 2 -q --targets " + (dir / "targets.txt").string() + " --json -");
  ASSERT_EQ(t.code, 0) << t.err;
  const auto jt = nlohmann::json::parse(t.out);
  EXPECT_EQ(jt["images"][0]["targets"][0]["target"], 3);
  EXPECT_EQ(jt["images"][1]["targets"][0]["target"], -1);
  std::filesystem::remove_all(dir);
}

TEST(Cli, CertifyCounterexamplesFirstKeepTheRadii) {
  // --attack-moves: steps whose ball holds a counterexample PGD finds are decided without bounds;
  // the radii are those of the plain search, and the JSON says how many steps that decided and the
  // nearest counterexample's distance (an upper bound beside the certified lower one).
  const std::string base = "certify " + kModel + " " + kImages + " -n 4 -q --target untargeted --json - ";
  const Result plain = cli(base), fast = cli(base + "--attack-moves 10");
  ASSERT_EQ(plain.code, 0) << plain.err;
  ASSERT_EQ(fast.code, 0) << fast.err;
  const auto a = nlohmann::json::parse(plain.out), b = nlohmann::json::parse(fast.out);
  ASSERT_EQ(a["images"].size(), b["images"].size());
  int decided = 0, found = 0;
  for (size_t i = 0; i < a["images"].size(); ++i) {
    if (a["images"][i]["skipped"].get<bool>()) continue;
    const auto &ta = a["images"][i]["targets"][0], &tb = b["images"][i]["targets"][0];
    EXPECT_EQ(ta["eps"].get<double>(), tb["eps"].get<double>()) << "image " << i;
    EXPECT_EQ(ta["steps_by_attack"].get<int>(), 0);
    EXPECT_FALSE(ta.contains("attack_eps"));
    decided += tb["steps_by_attack"].get<int>();
    if (tb.contains("attack_eps")) {
      ++found;
      EXPECT_GT(tb["attack_eps"].get<double>(), tb["eps"].get<double>()) << "image " << i;
    }
  }
  EXPECT_GT(decided, 0);
  EXPECT_GT(found, 0);
  expect_bad_input(cli(base + "--attack-moves -1"), "--attack-moves");
  EXPECT_EQ(cli(base + "--attack-moves many").code, 2);
}

TEST(Cli, BoundsAtATinyEpsAreTheLogitMargins) {
  const Result p = cli("predict " + kModel + " " + kImages + " -n 1 -q --json -");
  ASSERT_EQ(p.code, 0) << p.err;
  const auto pj = nlohmann::json::parse(p.out);
  const auto logits = pj["images"][0]["logits"].get<std::vector<double>>();
  const int c = pj["images"][0]["predicted"];
  // The reference engine (double precision) gives the margins to rounding and never a lower bound
  // above them; the default fast engine keeps its coefficients in float32 (the weights rounded to
  // float), so it is within float rounding of them: 2⁻²⁴ per layer, 1e-5 relative over 3 layers.
  const Result ref = cli("bounds " + kModel + " " + kImages + " -n 1 --eps 1e-12 --engine reference --json -");
  ASSERT_EQ(ref.code, 0) << ref.err;
  const Result b = cli("bounds " + kModel + " " + kImages + " -n 1 --eps 1e-12 --json -");
  ASSERT_EQ(b.code, 0) << b.err;
  const auto rj = nlohmann::json::parse(ref.out), bj = nlohmann::json::parse(b.out);
  ASSERT_EQ(rj["images"][0]["margins"].size(), 9u);
  for (const auto& m : rj["images"][0]["margins"]) {
    const double want = logits[static_cast<size_t>(c)] - logits[static_cast<size_t>(m["target"].get<int>())];
    EXPECT_NEAR(m["lower"].get<double>(), want, 1e-8);
    EXPECT_NEAR(m["upper"].get<double>(), want, 1e-8);
    EXPECT_LE(m["lower"].get<double>(), want + 1e-12);
    EXPECT_GE(m["upper"].get<double>(), want - 1e-12);
  }
  const auto& margins = bj["images"][0]["margins"];
  ASSERT_EQ(margins.size(), 9u);
  for (const auto& m : margins) {
    const double want = logits[static_cast<size_t>(c)] - logits[static_cast<size_t>(m["target"].get<int>())];
    EXPECT_NEAR(m["lower"].get<double>(), want, 1e-5 * (1 + std::fabs(want)));
    EXPECT_NEAR(m["upper"].get<double>(), want, 1e-5 * (1 + std::fabs(want)));
    EXPECT_LE(m["lower"].get<double>(), m["upper"].get<double>());
  }
  EXPECT_TRUE(bj["images"][0]["certified"].get<bool>());
  // at a large radius nothing is certified
  const Result big = cli("bounds " + kModel + " " + kImages + " -n 1 --eps 0.5 --json -");
  const auto bigj = nlohmann::json::parse(big.out);
  EXPECT_FALSE(bigj["images"][0]["certified"].get<bool>());
}

TEST(Cli, CertifyBadInput) {
  const auto dir = scratch_dir("cli_certify_bad");
  const std::string base = "certify " + kModel + " " + kImages + " -n 2 ";
  expect_bad_input(cli(base + "--method lp"), "unknown method 'lp'");
  expect_bad_input(cli(base + "--norm 3"), "unknown norm '3'");
  expect_bad_input(cli(base + "--target second"), "unknown target 'second'");
  expect_bad_input(cli(base + "--search linear"), "unknown search");
  expect_bad_input(cli(base + "--norm 2 --clip 0,1"), "--clip");
  expect_bad_input(cli(base + "--device tpu"), "unknown device 'tpu'");
  expect_bad_input(cli(base + "--device gpu --gpu-memory -5"), "--gpu-memory");
  if (!cuda_available()) expect_bad_input(cli(base + "--device gpu"), "--device gpu: no");
  expect_bad_input(cli("bounds " + kModel + " " + kImages + " --eps -1"), "--eps");
  expect_bad_input(cli("bounds " + kModel + " " + kImages + " --eps 0"), "--eps");
  expect_bad_input(cli("bounds " + kModel + " " + kImages + " --eps nan"), "--eps");
  write_file(dir / "targets.txt", "3\nseven\n");
  expect_bad_input(cli(base + "--targets " + (dir / "targets.txt").string()), "targets.txt:2");
  write_file(dir / "short.txt", "3\n");
  expect_bad_input(cli(base + "--targets " + (dir / "short.txt").string()), "one target class per image");
  // an op the engines cannot bound
  const std::string leaky =
      onnx_model({onnx_node("Flatten", {"x"}, {"f"}), onnx_node("Gemm", {"f", "W"}, {"h"}, {attr_int("transB", 1)}),
                  onnx_node("LeakyRelu", {"h"}, {"y"}, {attr_float("alpha", 2.0f)}, "steep")},
                 {onnx_tensor("W", {2, 784}, std::vector<double>(2 * 784, 0.01))}, onnx_value("x", {-1, 1, 28, 28}),
                 onnx_value("y", {-1, 2}));
  write_file(dir / "leaky.onnx", leaky);
  expect_bad_input(cli("certify " + (dir / "leaky.onnx").string() + " " + kImages + " -n 1"), "steep");
  std::filesystem::remove_all(dir);
}

TEST(Cli, ProvenReportsRatiosAndRejectsBadOptions) {
  const Result r = cli("proven " + kModel + " " + kImages + " -n 2 --json -");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const auto& im : j["images"]) {
    const auto& t = im["targets"][0];
    EXPECT_GE(t["noise"].get<double>(), t["worst_case"].get<double>());  // bounded noise
    EXPECT_GT(t["worst_case"].get<double>(), 0.0);
  }
  // without the worst-case search: the same probabilistic levels (that search does not depend on
  // the worst case), and no worst-case fields
  const Result only = cli("proven " + kModel + " " + kImages + " -n 2 --no-worst-case --json -");
  ASSERT_EQ(only.code, 0) << only.err;
  const auto jo = nlohmann::json::parse(only.out);
  ASSERT_EQ(jo["images"].size(), j["images"].size());
  for (size_t i = 0; i < j["images"].size(); ++i) {
    const auto &a = j["images"][i]["targets"][0], &b = jo["images"][i]["targets"][0];
    EXPECT_EQ(a["noise"].get<double>(), b["noise"].get<double>()) << "image " << i;
    EXPECT_FALSE(b.contains("worst_case"));
  }
  EXPECT_FALSE(jo.contains("avg_worst_case"));
  EXPECT_EQ(only.out.find("worst-case"), std::string::npos) << only.out;
  {  // the CSV keeps its 8 columns, with the worst-case ones empty
    const auto csv_dir = scratch_dir("cli_proven_csv");
    const std::string csv_path = (csv_dir / "p.csv").string();
    ASSERT_EQ(cli("proven " + kModel + " " + kImages + " -n 1 --no-worst-case -q --csv " + csv_path).code, 0);
    std::ifstream f(csv_path);
    std::string header, row;
    std::getline(f, header);
    std::getline(f, row);
    EXPECT_EQ(header, "image,label,predicted,target,noise,worst_case,ratio,note");
    std::vector<std::string> fields;
    std::stringstream ss(row);
    for (std::string field; std::getline(ss, field, ',');) fields.push_back(field);
    if (!row.empty() && row.back() == ',') fields.push_back("");
    ASSERT_EQ(fields.size(), 8u) << row;
    const double noise0 = jo["images"][0]["targets"][0]["noise"];
    EXPECT_NEAR(std::stod(fields[4]), noise0, 1e-8 * noise0);
    EXPECT_TRUE(fields[5].empty() && fields[6].empty()) << row;
    std::filesystem::remove_all(csv_dir);
  }
  const Result lvl = cli("proven " + kModel + " " + kImages + " -n 1 --level 0.01");
  ASSERT_EQ(lvl.code, 0) << lvl.err;
  EXPECT_NE(lvl.out.find("P[prediction kept] >= 1"), std::string::npos) << lvl.out;  // certain at a tiny level
  const auto dir = scratch_dir("cli_proven");
  const std::string base = "proven " + kModel + " " + kImages + " -n 1 ";
  expect_bad_input(cli(base + "--confidence 1.5"), "--confidence");
  expect_bad_input(cli(base + "--level 0.01 --no-worst-case"), "--no-worst-case");
  expect_bad_input(cli(base + "--confidence 0"), "--confidence");
  expect_bad_input(cli(base + "--level -0.1"), "--level");
  expect_bad_input(cli(base + "--level nan"), "--level");
  expect_bad_input(cli(base + "--noise laplace"), "unknown noise");
  detail::write_npy((dir / "cov.npy").string(), {3}, {1, 1, 1}, false);
  expect_bad_input(cli(base + "--noise gaussian --covariance " + (dir / "cov.npy").string()), "cov.npy");
  std::vector<double> neg(784, 1.0);
  neg[5] = -1;
  detail::write_npy((dir / "neg.npy").string(), {784}, neg, false);
  expect_bad_input(cli(base + "--noise gaussian --covariance " + (dir / "neg.npy").string()), "negative variance");
  std::filesystem::remove_all(dir);
}

TEST(Cli, FastLinDenseBaselineGivesTheSameRadiiAsCnnCertRelu) {
  const auto dir = scratch_dir("cli_convert");
  const std::string dense = (dir / "dense.onnx").string();
  const Result c = cli("convert " + kModel + " --to-dense -o " + dense);
  ASSERT_EQ(c.code, 0) << c.err;
  // the sidecar carries the input convention; the converted model needs the same one
  std::filesystem::copy_file(kModel + ".json", dense + ".json");
  const Result info = cli("info " + dense + " --json -");
  EXPECT_EQ(info.out.find("Conv "), std::string::npos);
  // one image: the dense baseline is slow by design
  const std::string opts = " -n 1 -q --method fastlin --json -";
  const Result a = cli("certify " + kModel + " " + kImages + opts);
  const Result b = cli("certify " + dense + " " + kImages + opts);
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  const auto ja = nlohmann::json::parse(a.out);
  const auto jb = nlohmann::json::parse(b.out);
  for (size_t i = 0; i < 1; ++i) {
    const double ea = ja["images"][i]["targets"][0]["eps"], eb = jb["images"][i]["targets"][0]["eps"];
    EXPECT_GT(ea, 0.0);
    EXPECT_NEAR(ea, eb, 1e-12 * ea) << "image " << i;
  }
  expect_bad_input(cli("convert " + kModel + " -o " + dense), "--to-dense");
  std::filesystem::remove_all(dir);
}

TEST(Bench, ProvenTimesThreeRunsWithTheSameRadii) {
  const Result r =
      run(CNNCERT_BENCH_PATH, "proven --model " + kModel + " --images " + kImages + " -n 4 --repeat 1 --block 1");
  ASSERT_EQ(r.code, 0) << r.err;
  // exit 0 also says that the run with PROVEN's per-step work kept the worst-case radii (the
  // bench fails otherwise)
  EXPECT_NE(r.out.find("same search + PROVEN evaluation at every step"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blocks of 1 images"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("probabilistic search"), std::string::npos) << r.out;
  const Result bad = run(CNNCERT_BENCH_PATH, "proven --model " + kModel + " --images " + kImages + " --repeat 0");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--repeat"), std::string::npos) << bad.err;
  // -n 0 divided by zero (SIGFPE); oversized CLEVER sampling ran out of memory or hung.
  for (const std::string args :
       {"proven --model " + kModel + " --images " + kImages + " -n 0",
        "compare --model " + kModel + " --images " + kImages + " --slow-count -1",
        "compare --model " + kModel + " --images " + kImages + " --methods clever --clever-samples 100000000",
        "compare --model " + kModel + " --images " + kImages + " --clever-batches 5000 --clever-samples 5000",
        "compare --model " + kModel + " --images " + kImages + " --methods foo",
        "compare --model " + kModel + " --images " + kImages + " --seed -1"}) {
    const Result r2 = run(CNNCERT_BENCH_PATH, args);
    EXPECT_EQ(r2.code, 2) << args << ": " << r2.err;
    EXPECT_EQ(std::count(r2.err.begin(), r2.err.end(), '\n'), 1) << args << ": " << r2.err;
  }
}

TEST(Bench, BadOptionsExitWithTwoAndTheFloatDeviceReportsTheCostModel) {
  // --repeat -1 used to crash (no run to report); a bad value or unknown option exits with 2.
  // Bad names and paths too, before any work (they used to be table cells of a run that exited 0).
  for (const char* args : {"--repeat -1", "--repeat 0", "-n -3", "-n 0", "--float-memory 0", "--bogus", "--devices tpu",
                           "--devices ''", "--method foo", "--norms 3", "--threads -5", "--only no_such_network",
                           "--model /no/such.onnx", "--root /no/such/folder"}) {
    const Result bad = run(CNNCERT_BENCH_PATH, args);
    EXPECT_EQ(bad.code, 2) << args << ": " << bad.err;
    EXPECT_FALSE(bad.err.empty()) << args;
  }
  const Result r = run(CNNCERT_BENCH_PATH, "--model " + kModel + " --images " + kImages +
                                               " -n 2 --repeat 1 --norms inf --devices cpu,float");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("H200 model for 100 images"), std::string::npos) << r.out;
}

TEST(Bench, CompareRunsTheMethodsThatApplyAndExplainsTheOthers) {
  const std::string sigmoid = (source_dir() / "models/mnist_cnn_4layer_5_3_sigmoid.onnx").string();
  const Result r = run(CNNCERT_BENCH_PATH, "compare --model " + sigmoid + " --images " + kImages +
                                               " -n 2 --norms inf --methods ada,lp,lips,pgd");
  EXPECT_EQ(r.code, 0) << r.err;
  const std::string& out = r.out;
  EXPECT_NE(out.find("LP                n/a: the LP baseline applies to ReLU networks"), std::string::npos) << out;
  EXPECT_NE(out.find("Global-Lips"), std::string::npos) << out;
  EXPECT_NE(out.find("certified radii below every attack"), std::string::npos) << out;
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

// A model without its sidecar: the warning says the convention is missing and what the inputs look
// like; --sidecar gives the convention from another file, with the same results as MODEL.json.
TEST(CliConventions, MissingConventionIsSaidAndSidecarFileGivesIt) {
  const auto dir = scratch_dir("cli_conventions");
  const auto bare = dir / "bare.onnx";
  std::filesystem::copy_file(kModel, bare, std::filesystem::copy_options::overwrite_existing);
  const Result warned = cli("predict " + bare.string() + " " + kImages + " -n 30 -q");
  EXPECT_EQ(warned.code, 0) << warned.err;
  EXPECT_NE(warned.err.find("warning: no input convention for " + bare.string()), std::string::npos) << warned.err;
  EXPECT_NE(warned.err.find("values in [0, 255]"), std::string::npos) << warned.err;
  EXPECT_EQ(warned.err.find("near chance"), std::string::npos)
      << warned.err;  // 83 % even so: ReLU nets forgive a scale
  // A convention far off (a mean of 1000 pixels) is near chance, and predict says so.
  const Result off = cli("predict " + bare.string() + " " + kImages + " -n 30 -q --mean 1000");
  EXPECT_NE(off.err.find("warning: the accuracy is near chance (10 classes)"), std::string::npos) << off.out << off.err;
  std::filesystem::copy_file(kModel + ".json", dir / "convention.json",
                             std::filesystem::copy_options::overwrite_existing);
  const Result with =
      cli("predict " + bare.string() + " " + kImages + " -n 30 -q --sidecar " + (dir / "convention.json").string());
  const Result shipped = cli("predict " + kModel + " " + kImages + " -n 30 -q");
  EXPECT_EQ(with.code, 0) << with.err;
  EXPECT_EQ(with.err, "");
  EXPECT_EQ(with.out, shipped.out);
  EXPECT_EQ(shipped.err, "");  // the shipped model has its sidecar: no warning
  const Result flags = cli("predict " + bare.string() + " " + kImages + " -n 30 -q --scale 1/255 --mean 0.5");
  EXPECT_EQ(flags.err, "");
  EXPECT_EQ(flags.out, shipped.out);
  expect_bad_input(cli("predict " + bare.string() + " " + kImages + " --sidecar " + (dir / "none.json").string()),
                   "none.json");
  write_file(dir / "typo.json", R"({"scale": "1/255", "stdev": [0.3]})");
  expect_bad_input(cli("predict " + bare.string() + " " + kImages + " --sidecar " + (dir / "typo.json").string()),
                   "unknown key \"stdev\"");
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

double lower_of(const nlohmann::json& j, size_t k) {
  return j["images"][0]["margins"][k]["lower"].get<double>();
}

// --eps-space pixel measures radii before the mean/std: x = (q − mean) / std, so a pixel ball of
// radius e is the input ball of radius e / std (one std for all channels here).
TEST(CliEpsSpace, PixelRadiiAreInputRadiiTimesTheStd) {
  const auto dir = scratch_dir("cli_eps_space");
  // The shipped convention has std 1: both spaces are the same ball, the radii equal exactly.
  const std::string certify = "certify " + kModel + " " + kImages + " -n 4 -q --json ";
  ASSERT_EQ(cli(certify + (dir / "in.json").string()).code, 0);
  ASSERT_EQ(cli(certify + (dir / "px.json").string() + " --eps-space pixel").code, 0);
  const auto in = nlohmann::json::parse(read_file(dir / "in.json")),
             px = nlohmann::json::parse(read_file(dir / "px.json"));
  EXPECT_EQ(px["eps_space"], "pixel");
  for (size_t i = 0; i < in["images"].size(); ++i)
    EXPECT_EQ(in["images"][i]["targets"], px["images"][i]["targets"]) << i;
  // With std 0.5, bounds at pixel radius 0.01 are the bounds at input radius 0.02.
  const std::string bounds = "bounds " + kModel + " " + kImages + " -n 1 --std 0.5 --json ";
  ASSERT_EQ(cli(bounds + (dir / "b_in.json").string() + " --eps 0.02").code, 0);
  ASSERT_EQ(cli(bounds + (dir / "b_px.json").string() + " --eps 0.01 --eps-space pixel").code, 0);
  const auto bi = nlohmann::json::parse(read_file(dir / "b_in.json")),
             bp = nlohmann::json::parse(read_file(dir / "b_px.json"));
  for (size_t k = 0; k < 9; ++k)
    EXPECT_NEAR(lower_of(bp, k), lower_of(bi, k), 1e-9 * (1 + std::fabs(lower_of(bi, k)))) << k;
  expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 1 --eps-space raw"),
                   "--eps-space must be input or pixel");
  expect_bad_input(cli("proven " + kModel + " " + kImages + " -n 1 --eps-space pixel"),
                   "--eps-space applies to certify and bounds");
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

// `attack` gives upper bounds: for the same (image, target) no certified radius (a proven lower
// bound) may exceed the distortion of an adversarial example.
TEST(CliAttack, DistortionsAreAboveTheCertifiedRadii) {
  const auto dir = scratch_dir("cli_attack");
  const std::string common = kModel + " " + kImages + " -n 5 -q --target runnerup --json ";
  const Result a = cli("attack " + common + (dir / "a.json").string() + " --csv " + (dir / "a.csv").string());
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(cli("certify " + common + (dir / "c.json").string()).code, 0);
  const auto aj = nlohmann::json::parse(read_file(dir / "a.json")),
             cj = nlohmann::json::parse(read_file(dir / "c.json"));
  ASSERT_EQ(aj["images"].size(), 5u);
  int compared = 0;
  for (size_t i = 0; i < 5; ++i) {
    const auto &ai = aj["images"][i], &ci = cj["images"][i];
    if (ai["skipped"].get<bool>()) continue;
    ASSERT_TRUE(ai["found"].get<bool>()) << i;
    EXPECT_EQ(ai["target"], ci["targets"][0]["target"]) << i;
    EXPECT_LT(ci["targets"][0]["eps"].get<double>(), ai["distortion"].get<double>()) << i;
    ++compared;
  }
  EXPECT_GE(compared, 4);
  EXPECT_NE(read_file(dir / "a.csv").find("image,label,predicted,target,found,distortion,reached\n"),
            std::string::npos);
  expect_bad_input(cli("attack " + kModel + " " + kImages + " -n 1 --method cw --norm inf"), "--norm 2");
  expect_bad_input(cli("attack " + kModel + " " + kImages + " -n 1 --method fgsm"), "--method must be pgd or cw");
  expect_bad_input(cli("attack " + kModel + " " + kImages + " -n 1 --target all"), "--target must be");
  expect_bad_input(cli("attack " + kModel + " " + kImages + " -n 1 --clip 1,0"), "--clip");
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

// The per-channel box of a pixel ball on a 3-channel NHWC model: output k sums the four pixels of
// channel k, so its exact bounds at pixel radius e have width 2 · 4e / std_k. A wrong channel of
// an element (the layout mapping) would give another channel's width.
TEST(CliEpsSpace, PixelBallIsThePerChannelBoxOfAnNhwcModel) {
  const auto dir = scratch_dir("cli_eps_space_nhwc");
  std::vector<double> w(3 * 12, 0.0);
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 12; ++i) w[static_cast<size_t>(k * 12 + i)] = i % 3 == k ? 1.0 : 0.0;  // (h, w, c) order
  write_file(
      dir / "sum.onnx",
      onnx_model({onnx_node("Flatten", {"x"}, {"f"}), onnx_node("Gemm", {"f", "W"}, {"y"}, {attr_int("transB", 1)})},
                 {onnx_tensor("W", {3, 12}, w)}, onnx_value("x", {-1, 2, 2, 3}), onnx_value("y", {-1, 3})));
  std::vector<double> px(2 * 3 * 2 * 2);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<double>((i * 37) % 256);
  cnncert::detail::write_npy((dir / "img.npy").string(), {2, 3, 2, 2}, px, false);
  const std::string std_dev[3] = {"0.5", "0.25", "2"};
  const Result r = cli("bounds " + (dir / "sum.onnx").string() + " " + (dir / "img.npy").string() +
                       " --logits --eps 0.01 --eps-space pixel --layout NHWC --scale 1/255 --mean 0.4,0.5,0.6 --std " +
                       std_dev[0] + "," + std_dev[1] + "," + std_dev[2] + " --json " + (dir / "b.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_file(dir / "b.json"));
  for (size_t im = 0; im < 2; ++im)
    for (size_t k = 0; k < 3; ++k) {
      const auto& row = j["images"][im]["logits"][k];
      const double width = row["upper"].get<double>() - row["lower"].get<double>();
      EXPECT_NEAR(width, 2 * 4 * 0.01 / std::stod(std_dev[k]), 1e-9) << "image " << im << " output " << k;
    }
}

}  // namespace
}  // namespace cnncert::test
