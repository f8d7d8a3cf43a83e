// The outputs of every subcommand (host/cli/report.hpp): -q prints only the summary (and the
// warnings that matter, and the data outputs), `--json -` / `--csv -` put the data alone on
// stdout, and the per-image times say whose time they are.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <vector>

#include "cnncert/cnncert.hpp"
#include "common/cli_util.hpp"
#include "io/npy.hpp"

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

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> v;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

/// The last `n` lines of `text`, each with its newline.
std::string last_lines(const std::string& text, size_t n) {
  const auto v = lines(text);
  std::string out;
  for (size_t i = v.size() - std::min(n, v.size()); i < v.size(); ++i) out += v[i] + "\n";
  return out;
}

/// `text` with the times ("0.1336 sec", "1.83 s") as "T": they differ from run to run.
std::string without_times(const std::string& text) {
  static const std::regex time(R"([0-9][0-9.e+-]*( sec| s)\b)");
  return std::regex_replace(text, time, "T$1");
}

/// The rank-1 model of tests/fixtures/ops (no sidecar, an input without a batch dimension: a note
/// and a warning) and its 8 rows with onnxruntime's classes as labels, in `dir`; returns the
/// arguments "MODEL ROWS".
std::string rank1_model_and_rows(const std::filesystem::path& dir) {
  const std::string model = (source_dir() / "tests/fixtures/ops/rank1_mlp.onnx").string();
  const auto x = detail::read_npy((source_dir() / "tests/fixtures/ops/rank1_mlp.input.npy").string());
  const auto y = detail::read_npy((source_dir() / "tests/fixtures/ops/rank1_mlp.logits.npy").string());
  std::vector<double> labels;
  for (int64_t i = 0; i < y.shape[0]; ++i)
    labels.push_back(static_cast<double>(std::max_element(y.data.begin() + i * 3, y.data.begin() + i * 3 + 3) -
                                         (y.data.begin() + i * 3)));
  detail::write_npy((dir / "x.npy").string(), {x.shape[0], 5}, x.data, true);
  detail::write_npy((dir / "x.labels.npy").string(), {x.shape[0]}, labels, false);
  return model + " " + (dir / "x.npy").string();
}

TEST(CliOutput, QuietPrintsOnlyTheSummaryOnEverySubcommand) {
  const auto dir = scratch_dir("cli_output_quiet");
  write_file(dir / "small.vnnlib", shipped_property(0.001));
  const std::string dense = (dir / "dense.onnx").string();
  struct Case {
    std::string args;                  // without -q
    std::vector<std::string> summary;  // the beginnings of the lines -q keeps, all of them, in order
    bool more;                         // the run without -q prints more than the summary on stdout
  };
  const std::vector<Case> cases{
      {"certify " + kShipped + " -n 3",
       {"[Linf] method = cnncert, target = random (seed 1215), search = cnncert, engine = fast",
        "avg robustness = 0.0"},
       true},
      {"predict " + kShipped + " -n 10", {"accuracy: 10/10 (100.00%)"}, true},
      {"proven " + kShipped + " -n 2",
       {"[PROVEN uniform, confidence 0.9999]", "avg probabilistic eps = ", "time: "},
       true},
      {"proven " + kShipped + " -n 2 --no-worst-case",
       {"[PROVEN uniform, confidence 0.9999]", "avg probabilistic eps = ", "time: probabilistic "},
       true},
      // --level has no summary beyond its lines: they are its result, and stay
      {"proven " + kShipped + " -n 2 --level 0.01",
       {"image 0: P[prediction kept] >= ", "image 1: P[prediction kept] >= "},
       false},
      {"attack " + kShipped + " -n 3", {"[Linf] attack = pgd, target = untargeted, ", "avg distortion = "}, true},
      {"info " + kModel, {"input (1, 28, 28), output (10), 24720 parameters, 8680 activation neurons"}, true},
      {"vnnlib " + kModel + " " + (dir / "small.vnnlib").string(), {"unsat"}, false},
      {"convert " + kModel + " --to-dense -o " + dense, {"wrote " + dense + ": "}, false},
      {"bounds " + kShipped + " -n 2 --eps 0.001", {}, true},  // no summary: no text
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const Result loud = cli(c.args);
    ASSERT_EQ(loud.code, 0) << loud.err;
    const Result quiet = cli(c.args + " -q");
    ASSERT_EQ(quiet.code, 0) << quiet.err;
    EXPECT_EQ(quiet.err, "");  // the shipped model: no warning, no note
    const auto got = lines(quiet.out);
    ASSERT_EQ(got.size(), c.summary.size()) << quiet.out;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].rfind(c.summary[i], 0), 0u) << got[i];
    if (c.args.find("--level") == std::string::npos)
      EXPECT_EQ(quiet.out.find("image "), std::string::npos) << "a per-image line under -q: " << quiet.out;
    // The summary is the end of the full output, as it is (times apart).
    EXPECT_EQ(without_times(quiet.out), without_times(last_lines(loud.out, got.size()))) << loud.out;
    if (c.more)
      EXPECT_GT(lines(loud.out).size(), got.size()) << "the run without -q prints no more: the test proves nothing";
    else
      EXPECT_EQ(without_times(loud.out), without_times(quiet.out));
  }
  // certify on the shipped images: the summary alone, with the shipped radius
  const Result all = cli("certify " + kShipped + " -q");
  ASSERT_EQ(all.code, 0) << all.err;
  ASSERT_EQ(lines(all.out).size(), 2u) << all.out;
  EXPECT_NE(all.out.find("images = 99 certified, 1 skipped\navg robustness = 0.03857, avg run time = "),
            std::string::npos)
      << all.out;
  EXPECT_TRUE(std::filesystem::exists(dense));  // -q kept the data output
  // vnnlib: -q drops the account of the answer on stderr
  const Result vnn = cli("vnnlib " + kModel + " " + (dir / "small.vnnlib").string());
  EXPECT_NE(vnn.err.find("cnncert: unsat in "), std::string::npos) << vnn.err;
  // gpu: its one-line answer is its summary (and the exit code answers too)
  const Result gpu = cli("gpu"), gpu_quiet = cli("gpu -q");
  EXPECT_EQ(gpu_quiet.code, gpu.code);
  EXPECT_EQ(lines(gpu_quiet.out).size(), 1u) << gpu_quiet.out;
  EXPECT_EQ(gpu_quiet.out, gpu.out);
  EXPECT_EQ(gpu_quiet.err, "");
  // Every subcommand's help says what -q means.
  for (const char* sub : {"info", "predict", "certify", "bounds", "proven", "attack", "convert", "gpu", "vnnlib"}) {
    const std::string help = cli(std::string(sub) + " --help").out;
    const auto at = help.find("-q,--quiet");
    ASSERT_NE(at, std::string::npos) << sub;
    EXPECT_NE(help.find("print only the summary", at), std::string::npos) << sub << ": " << help.substr(at, 200);
  }
  std::filesystem::remove_all(dir);
}

TEST(CliOutput, QuietKeepsTheWarningsThatMatterAndDropsTheNotes) {
  const auto dir = scratch_dir("cli_output_warn");
  const auto bare = dir / "bare.onnx";
  std::filesystem::copy_file(kModel, bare);
  // no input convention: said under -q too, beside the summary
  const Result r = cli("certify " + bare.string() + " " + kImages + " -n 1 -q");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(lines(r.out).size(), 2u) << r.out;
  EXPECT_EQ(r.out.find("avg robustness = "), r.out.find('\n') + 1) << r.out;
  EXPECT_NE(r.err.find("cnncert: warning: no input convention"), std::string::npos) << r.err;
  // an accuracy near chance: said under -q too
  const Result chance = cli("predict " + kShipped + " --scale 1 --mean 1000 -q");
  ASSERT_EQ(chance.code, 0) << chance.err;
  EXPECT_EQ(chance.out.rfind("accuracy: ", 0), 0u) << chance.out;
  EXPECT_EQ(lines(chance.out).size(), 1u) << chance.out;
  EXPECT_NE(chance.err.find("cnncert: warning: the accuracy is near chance"), std::string::npos) << chance.err;
  // a model whose import notes something: the note goes under -q, the warning stays
  const std::string rank1 = rank1_model_and_rows(dir);
  const Result loud = cli("predict " + rank1), quiet = cli("predict " + rank1 + " -q");
  ASSERT_EQ(loud.code, 0) << loud.err;
  ASSERT_EQ(quiet.code, 0) << quiet.err;
  EXPECT_NE(loud.err.find("note: input "), std::string::npos) << loud.err;
  EXPECT_EQ(quiet.err.find("note:"), std::string::npos) << quiet.err;
  EXPECT_NE(quiet.err.find("cnncert: warning: no input convention"), std::string::npos) << quiet.err;
  EXPECT_EQ(quiet.out, "accuracy: 8/8 (100.00%)\n");
  std::filesystem::remove_all(dir);
}

TEST(CliOutput, JsonDashIsTheOnlyThingOnStdout) {
  struct Case {
    std::string args, detail, summary;  // a piece of the per-image text and of the summary (empty: none)
  };
  for (const Case& c : {Case{"info " + kModel, "Conv", "activation neurons"},
                        Case{"predict " + kShipped + " -n 3", "image 0:", "accuracy"},
                        Case{"certify " + kShipped + " -n 2", "image 0:", "avg robustness"},
                        Case{"bounds " + kShipped + " -n 1 --eps 0.001", "margin", ""},
                        Case{"proven " + kShipped + " -n 1 --no-worst-case", "image 0:", "avg probabilistic"},
                        Case{"attack " + kShipped + " -n 2", "image 0:", "avg distortion"}}) {
    SCOPED_TRACE(c.args);
    const Result r = cli(c.args + " --json -");
    ASSERT_EQ(r.code, 0) << r.err;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out.substr(0, 500);
    EXPECT_TRUE(j.is_object());
    EXPECT_NE(r.err.find(c.detail), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.summary), std::string::npos) << r.err;
    // -q: the same JSON alone on stdout, the summary alone on stderr
    const Result q = cli(c.args + " --json - -q");
    ASSERT_EQ(q.code, 0) << q.err;
    nlohmann::json jq;
    ASSERT_NO_THROW(jq = nlohmann::json::parse(q.out)) << q.out.substr(0, 500);
    for (const auto& [key, value] : j.items()) EXPECT_TRUE(jq.contains(key)) << key;
    EXPECT_EQ(q.err.find(c.detail), std::string::npos) << q.err;
    if (c.summary.empty()) {
      EXPECT_EQ(q.err, "");
    } else {
      EXPECT_NE(q.err.find(c.summary), std::string::npos) << q.err;
      EXPECT_EQ(without_times(q.err), without_times(last_lines(r.err, lines(q.err).size()))) << r.err;
    }
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
    const Result q = cli(sub + " " + kShipped + " -n 2 --csv - -q");
    ASSERT_EQ(q.code, 0) << q.err;
    ASSERT_EQ(lines(q.out).size(), 3u) << q.out;  // the header and the 2 rows
    EXPECT_EQ(lines(q.out)[0], header);
    EXPECT_EQ(q.err.find("image "), std::string::npos) << q.err;
    EXPECT_NE(q.err.find("avg "), std::string::npos) << q.err;
  }
  // vnnlib --result -: the result file on stdout, beginning with the answer; the answer line on stderr
  const auto dir = scratch_dir("cli_output_vnn");
  write_file(dir / "small.vnnlib", shipped_property(0.001));
  const Result v = cli("vnnlib " + kModel + " " + (dir / "small.vnnlib").string() + " --result - -q");
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_EQ(v.out, "unsat\n");
  EXPECT_EQ(v.err, "unsat\n");
  std::filesystem::remove_all(dir);
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
  EXPECT_EQ(line, "image,label,predicted,target,eps,steps,batch_avg_time_per_target_s,note");
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
