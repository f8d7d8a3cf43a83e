// The outputs of every subcommand (host/cli/report.hpp): -q leaves only the data and the
// warnings, `--json -` / `--csv -` put the data alone on stdout, and the per-image times say
// whose time they are.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cnncert/cnncert.hpp"
#include "common/cli_util.hpp"

namespace cnncert::test {
namespace {

/// A VNN-LIB robustness property of the shipped model around its first image: the box of radius
/// `eps`, and "some other class reaches the predicted one" as the unsafe outputs.
std::string shipped_property(double eps) {
  const Network net = import_onnx(kModel);
  const ImageSet set = load_images(kImages, {.offset = 0, .limit = 1});
  const std::vector<double> x = preprocess(set, *load_sidecar(kModel), net);
  const auto y = net.forward(x.data(), 1);
  const size_t c = static_cast<size_t>(std::max_element(y.begin(), y.end()) - y.begin());
  std::ostringstream s;
  s.precision(17);
  for (size_t i = 0; i < x.size(); ++i) s << "(declare-const X_" << i << " Real)\n";
  for (size_t k = 0; k < y.size(); ++k) s << "(declare-const Y_" << k << " Real)\n";
  for (size_t i = 0; i < x.size(); ++i)
    s << "(assert (<= X_" << i << " " << x[i] + eps << "))\n(assert (>= X_" << i << " " << x[i] - eps << "))\n";
  s << "(assert (or\n";
  for (size_t k = 0; k < y.size(); ++k)
    if (k != c) s << "  (and (>= Y_" << k << " Y_" << c << "))\n";
  s << "))\n";
  return s.str();
}

const std::string kShipped = kModel + " " + kImages;

TEST(CliOutput, QuietWritesNothingButTheDataOnEverySubcommand) {
  const auto dir = scratch_dir("cli_output_quiet");
  write_file(dir / "small.vnnlib", shipped_property(0.001));
  const std::string dense = (dir / "dense.onnx").string();
  struct Case {
    std::string args, out;  // the arguments (without -q) and the whole stdout expected with -q
  };
  for (const Case& c :
       {Case{"info " + kModel, ""}, Case{"predict " + kShipped + " -n 3", ""},
        Case{"certify " + kShipped + " -n 1", ""}, Case{"bounds " + kShipped + " -n 1 --eps 0.001", ""},
        Case{"proven " + kShipped + " -n 1 --no-worst-case", ""}, Case{"attack " + kShipped + " -n 2", ""},
        Case{"convert " + kModel + " --to-dense -o " + dense, ""},
        // vnnlib keeps its answer line: VNN-COMP's scripts read it
        Case{"vnnlib " + kModel + " " + (dir / "small.vnnlib").string(), "unsat\n"}}) {
    SCOPED_TRACE(c.args);
    const Result loud = cli(c.args);
    ASSERT_EQ(loud.code, 0) << loud.err;
    EXPECT_FALSE(loud.out.empty() && loud.err.empty()) << "the run without -q says nothing: the test proves nothing";
    const Result quiet = cli(c.args + " -q");
    ASSERT_EQ(quiet.code, 0) << quiet.err;
    EXPECT_EQ(quiet.out, c.out);
    EXPECT_EQ(quiet.err, "");
  }
  EXPECT_TRUE(std::filesystem::exists(dense));  // -q kept the data output
  // gpu: the exit code alone answers under -q
  const Result gpu = cli("gpu"), gpu_quiet = cli("gpu -q");
  EXPECT_FALSE(gpu.out.empty());
  EXPECT_EQ(gpu_quiet.code, gpu.code);
  EXPECT_EQ(gpu_quiet.out, "");
  EXPECT_EQ(gpu_quiet.err, "");
  // Every subcommand's help lists -q.
  for (const char* sub : {"info", "predict", "certify", "bounds", "proven", "attack", "convert", "gpu", "vnnlib"})
    EXPECT_NE(cli(std::string(sub) + " --help").out.find("-q,--quiet"), std::string::npos) << sub;
  std::filesystem::remove_all(dir);
}

TEST(CliOutput, QuietKeepsTheWarningsThatMatter) {
  const auto dir = scratch_dir("cli_output_warn");
  const auto bare = dir / "bare.onnx";
  std::filesystem::copy_file(kModel, bare);
  const Result r = cli("certify " + bare.string() + " " + kImages + " -n 1 -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("warning: no input convention"), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

TEST(CliOutput, JsonDashIsTheOnlyThingOnStdout) {
  struct Case {
    std::string args, text;  // a piece of the human text, which goes to stderr instead
  };
  for (const Case& c : {Case{"info " + kModel, "activation neurons"}, Case{"predict " + kShipped + " -n 3", "accuracy"},
                        Case{"certify " + kShipped + " -n 2", "avg robustness"},
                        Case{"bounds " + kShipped + " -n 1 --eps 0.001", "margin"},
                        Case{"proven " + kShipped + " -n 1 --no-worst-case", "avg probabilistic"},
                        Case{"attack " + kShipped + " -n 2", "avg distortion"}}) {
    SCOPED_TRACE(c.args);
    const Result r = cli(c.args + " --json -");
    ASSERT_EQ(r.code, 0) << r.err;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out.substr(0, 500);
    EXPECT_TRUE(j.is_object());
    EXPECT_NE(r.err.find(c.text), std::string::npos) << r.err;
    const Result q = cli(c.args + " --json - -q");
    ASSERT_EQ(q.code, 0) << q.err;
    nlohmann::json jq;
    ASSERT_NO_THROW(jq = nlohmann::json::parse(q.out)) << q.out.substr(0, 500);
    for (const auto& [key, value] : j.items()) EXPECT_TRUE(jq.contains(key)) << key;
    EXPECT_EQ(q.err, "");
  }
  // --csv - likewise: the table alone, every row as wide as its header
  for (const std::string sub : {"certify", "proven", "attack"}) {
    SCOPED_TRACE(sub);
    const Result r = cli(sub + " " + kShipped + " -n 2 --csv -");
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream in(r.out);
    std::string header, line;
    std::getline(in, header);
    EXPECT_EQ(header.rfind("image,label,predicted,target,", 0), 0u) << r.out;
    int rows = 0;
    while (std::getline(in, line)) {
      EXPECT_EQ(std::count(line.begin(), line.end(), ','), std::count(header.begin(), header.end(), ',')) << line;
      ++rows;
    }
    EXPECT_EQ(rows, 2);
    EXPECT_NE(r.err.find("image 0:"), std::string::npos) << r.err;
  }
}

TEST(CliOutput, PerImageTimesSayWhoseTimeTheyAre) {
  // certify bounds all images together (one engine call per search step): an image's time is the
  // batch's wall time shared among its images, and says so.
  const Result c = cli("certify " + kShipped + " -n 3 --target all --json -");
  ASSERT_EQ(c.code, 0) << c.err;
  const auto cj = nlohmann::json::parse(c.out);
  double sum = 0;
  for (const auto& im : cj["images"]) {
    ASSERT_FALSE(im["skipped"].get<bool>());
    EXPECT_FALSE(im.contains("seconds"));
    EXPECT_FALSE(im.contains("time_s")) << "a share of a batch is not the image's own time";
    const double t = im["batch_avg_time_s"].get<double>();
    EXPECT_GT(t, 0.0);
    EXPECT_EQ(t, cj["images"][0]["batch_avg_time_s"].get<double>()) << "equal shares of one batch";
    sum += t;
  }
  EXPECT_LE(sum, cj["total_seconds"].get<double>() * (1 + 1e-9));
  EXPECT_NE(c.err.find(", batch avg "), std::string::npos) << c.err;
  // The CSV rows are (image, target) searches: each row's share, and the rows add up to the images.
  const Result csv = cli("certify " + kShipped + " -n 3 --target all -q --csv -");
  ASSERT_EQ(csv.code, 0) << csv.err;
  std::istringstream in(csv.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "image,label,predicted,target,eps,steps,batch_avg_time_s,note");
  int rows = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_GE(f.size(), 7u) << line;
    EXPECT_GT(std::stod(f[6]), 0.0) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 27);  // 3 images x 9 targets
  // attack runs one attack per image: each image's own time (with one thread they add up to at
  // most the run's time).
  const Result a = cli("attack " + kShipped + " -n 3 --threads 1 -q --json -");
  ASSERT_EQ(a.code, 0) << a.err;
  const auto aj = nlohmann::json::parse(a.out);
  double own = 0;
  for (const auto& im : aj["images"]) {
    if (im["skipped"].get<bool>()) continue;
    EXPECT_FALSE(im.contains("batch_avg_time_s"));
    EXPECT_GT(im["time_s"].get<double>(), 0.0);
    own += im["time_s"].get<double>();
  }
  EXPECT_GT(own, 0.0);
  EXPECT_LE(own, aj["seconds"].get<double>() * (1 + 1e-9));
}

}  // namespace
}  // namespace cnncert::test
