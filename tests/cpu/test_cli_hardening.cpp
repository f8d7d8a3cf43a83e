// The cnncert command under hostile or mistaken input: crafted models, unwritable outputs, values
// that cannot be meant. Every case is exit code 2 with one line on stderr, and no result file is
// lost or left half-written.
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/cli_util.hpp"
#include "io/npy.hpp"

namespace cnncert::test {
namespace {

/// A model whose declared input (1, 1, 2^62 + 1, 16) has an element count that wraps to 16 in
/// int64, followed by a max-pool: the crash of the hardening issue.
std::string wrapped_shape_model() {
  const int64_t big = (int64_t{1} << 62) + 1;
  return onnx_model({onnx_node("MaxPool", {"x"}, {"y"}, {attr_ints("kernel_shape", {2, 2})}),
                     onnx_node("Flatten", {"y"}, {"f"}), onnx_node("Gemm", {"f", "W"}, {"z"}, {attr_int("transB", 1)})},
                    {onnx_tensor("W", {2, 8}, std::vector<double>(16, 0.5))}, onnx_value("x", {1, 1, big, 16}),
                    onnx_value("z", {1, 2}));
}

/// Files in `dir` (to see that nothing was left behind).
std::vector<std::string> listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(CliHardening, CraftedShapeModelIsRejectedByEverySubcommand) {
  const auto dir = scratch_dir("cli_crafted");
  const std::string model = (dir / "wrap.onnx").string();
  write_file(model, wrapped_shape_model());
  const std::string imgs = " " + kImages;
  for (const std::string args : {"info " + model, "predict " + model + imgs, "certify " + model + imgs + " -n 1",
                                 "bounds " + model + imgs + " --eps 0.01", "proven " + model + imgs + " -n 1",
                                 "convert " + model + " --to-dense -o " + (dir / "d.onnx").string()}) {
    SCOPED_TRACE(args);
    expect_bad_input(cli(args), "input 'x'");
  }
  EXPECT_EQ(listing(dir), std::vector<std::string>{"wrap.onnx"});  // no d.onnx, no temporary file
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, UnwritableOutputsFailBeforeTheComputation) {
  const auto dir = scratch_dir("cli_outputs");
  const std::string ro = (dir / "readonly.json").string();
  write_file(ro, "keep me\n");
  ASSERT_EQ(::chmod(ro.c_str(), 0444), 0);
  const std::string certify = "certify " + kModel + " " + kImages + " -n 1 -q";
  struct Case {
    std::string option, path, needle;
  };
  for (const Case& c :
       {Case{"--json", (dir / "no_such_folder/r.json").string(), "does not exist"},
        Case{"--json", dir.string(), "is a directory"}, Case{"--csv", dir.string(), "is a directory"},
        Case{"--json", ro, "read-only"}, Case{"--csv", (dir / "missing/r.csv").string(), "does not exist"}}) {
    SCOPED_TRACE(c.option + " " + c.path);
    const Result r = cli(certify + " " + c.option + " " + c.path);
    expect_bad_input(r, c.needle);
    EXPECT_NE(r.err.find(c.option), std::string::npos) << r.err;
    // refused before the computation: no certification line was printed
    EXPECT_EQ(r.out.find("avg robustness"), std::string::npos) << r.out;
  }
  EXPECT_EQ(read_file(ro), "keep me\n");
  // the other subcommands check their outputs as well
  expect_bad_input(cli("info " + kModel + " --json " + (dir / "x/i.json").string()), "does not exist");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " --json " + dir.string()), "is a directory");
  expect_bad_input(cli("bounds " + kModel + " " + kImages + " -n 1 --eps 0.01 --json " + ro), "read-only");
  expect_bad_input(cli("proven " + kModel + " " + kImages + " -n 1 --csv " + (dir / "x/p.csv").string()),
                   "does not exist");
  expect_bad_input(cli("convert " + kModel + " --to-dense -o " + (dir / "x/d.onnx").string()), "does not exist");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"readonly.json"});
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, FullDiskIsAnErrorAndNoPartialFileIsLeft) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  const std::string certify = "certify " + kModel + " " + kImages + " -n 1 -q";
  expect_bad_input(cli(certify + " --json /dev/full"), "No space left");
  expect_bad_input(cli(certify + " --csv /dev/full"), "No space left");
  // the results on a full standard output are lost too: an error, not exit 0
  expect_bad_input(cli(certify + " >/dev/full"), "standard output");
  const Result full = cli(certify + " --json - >/dev/full");  // (the summary goes to stderr: stdout holds the JSON)
  EXPECT_EQ(full.code, 2);
  EXPECT_NE(full.err.find("cnncert: error: cannot write to the standard output (No space left"), std::string::npos)
      << full.err;
  expect_bad_input(cli("predict " + kModel + " " + kImages + " >/dev/full"), "standard output");
}

TEST(CliHardening, FailedRunLeavesNoFileAndSuccessWritesItWhole) {
  const auto dir = scratch_dir("cli_partial");
  const std::string json_path = (dir / "r.json").string(), csv_path = (dir / "r.csv").string();
  write_file(dir / "targets.txt", "3\n");  // one target for two images: fails after the outputs were checked
  const Result bad = cli("certify " + kModel + " " + kImages + " -n 2 -q --json " + json_path + " --csv " + csv_path +
                         " --targets " + (dir / "targets.txt").string());
  expect_bad_input(bad, "targets");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"targets.txt"});
  const Result good = cli("certify " + kModel + " " + kImages + " -n 2 -q --json " + json_path + " --csv " + csv_path);
  ASSERT_EQ(good.code, 0) << good.err;
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"r.csv", "r.json", "targets.txt"}));
  EXPECT_EQ(nlohmann::json::parse(read_file(json_path))["images"].size(), 2u);
  const std::string csv = read_file(csv_path);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  // interrupted (SIGTERM after the outputs were opened): the temporary files go too
  std::filesystem::remove(json_path), std::filesystem::remove(csv_path);
  // (kill once the temporary file exists, at most 10 s later)
  const std::string cmd = std::string(CNNCERT_CLI_PATH) + " certify " + kModel + " " + kImages + " -q --json " +
                          json_path + " --csv " + csv_path +
                          " >/dev/null 2>&1 & pid=$!; i=0; while [ $i -lt 200 ] && ! ls -a " + dir.string() +
                          " | grep -q tmp-; do sleep 0.05; i=$((i+1)); done; kill -TERM $pid; wait $pid";
  const int status = std::system(("sh -c '" + cmd + "'").c_str());
  EXPECT_NE(status, 0) << "the run was not interrupted (finished within 1 s?)";
  EXPECT_EQ(listing(dir), std::vector<std::string>{"targets.txt"});
  ASSERT_EQ(cli("certify " + kModel + " " + kImages + " -n 2 -q --json " + json_path).code, 0);
  // a second run replaces the file (same permissions as a new file would get)
  struct stat st {};
  ASSERT_EQ(::stat(json_path.c_str(), &st), 0);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask) << "a result file gets the mode of any new file";
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, LinksAndStandardStreamsAreWrittenThrough) {
  const auto dir = scratch_dir("cli_links");
  const std::string predict = "predict " + kModel + " " + kImages + " -n 2 -q --json ";
  // a symbolic link: its target gets the results, the link stays a link
  write_file(dir / "real.json", "old\n");
  std::filesystem::create_symlink(dir / "real.json", dir / "link.json");
  ASSERT_EQ(cli(predict + (dir / "link.json").string()).code, 0);
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "link.json"));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "real.json"))["count"], 2);
  // a hard link: written in place, both names see the results
  std::filesystem::create_hard_link(dir / "real.json", dir / "hard.json");
  ASSERT_EQ(cli("predict " + kModel + " " + kImages + " -n 3 -q --json " + (dir / "hard.json").string()).code, 0);
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "real.json"))["count"], 3);
  // /dev/stdout is the standard output (not a file to replace)
  const Result out = cli(predict + "/dev/stdout");
  ASSERT_EQ(out.code, 0) << out.err;
  EXPECT_EQ(nlohmann::json::parse(out.out)["count"], 2);
  // the same file for --json and --csv would lose one of them
  expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 1 --json " + (dir / "x").string() + " --csv " +
                       (dir / "x").string()),
                   "same file");
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"hard.json", "link.json", "real.json"}));
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, ValuesThatCannotBeMeantAreRejected) {
  const auto dir = scratch_dir("cli_meant");
  // a label outside the model's 10 classes: an error naming the image, not a skip
  const std::string imgs = (dir / "imgs.npy").string();
  const auto images = detail::read_npy(kImages);
  detail::write_npy(imgs, {2, 28, 28}, std::vector<double>(images.data.begin(), images.data.begin() + 2 * 784), true);
  detail::write_npy((dir / "imgs.labels.npy").string(), {2}, {7, 12}, false);
  for (const std::string sub : {"certify", "predict", "proven"}) {
    SCOPED_TRACE(sub);
    expect_bad_input(cli(sub + " " + kModel + " " + imgs + " -q"),
                     "image 1: label 12 is not a class of the model (0..9)");
  }
  // a --targets class outside the classes
  write_file(dir / "targets.txt", "3\n10\n");
  expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 2 -q --targets " + (dir / "targets.txt").string()),
                   "image 1: target 10 is not a class");
  // --scale must be positive (as in the sidecar)
  expect_bad_input(cli("predict " + kModel + " " + kImages + " --scale -1/255"), "--scale must be positive");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " --scale 0"), "--scale must be positive");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " --scale 1x/255"), "not a number");
  // a negative seed (it used to wrap around to 2^64 - 4)
  expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 1 --seed -4"), "--seed");
  // directories given as files
  expect_bad_input(cli("predict " + dir.string() + " " + kImages), "is a directory");
  expect_bad_input(cli("predict " + kModel + " " + dir.string()), "is a directory");
  expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 1 --targets " + dir.string()), "is a directory");
  // -n: 0 and negative counts alike are errors; omitting -n means all images
  expect_bad_input(cli("predict " + kModel + " " + kImages + " -n 0"), "-n/--count must be at least 1");
  expect_bad_input(cli("predict " + kModel + " " + kImages + " -n -1"), "-n/--count must be at least 1");
  const Result all = cli("predict " + kModel + " " + kImages + " -q");
  EXPECT_EQ(all.code, 0) << all.err;
  EXPECT_NE(all.out.find("/100"), std::string::npos) << all.out;
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, EmptyValuesAndResultFilesOverInputsAreRefused) {
  const auto dir = scratch_dir("cli_empty");
  // An empty value is an error naming the option, not "no such output" (it used to write nothing).
  for (const std::string opt : {"--json", "--csv", "--sidecar", "--labels", "--targets", "--scale", "--shard"}) {
    SCOPED_TRACE(opt);
    expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 1 -q " + opt + " ''"), opt + ": empty value");
  }
  expect_bad_input(cli("convert " + kModel + " -o ''"), "--output: empty value");
  // A result file that is an input file: refused before any work, the input intact.
  const std::string imgs = (dir / "imgs.npy").string();
  std::filesystem::copy_file(kImages, imgs);
  const auto before = std::filesystem::file_size(imgs);
  expect_bad_input(cli("certify " + kModel + " " + imgs + " -n 1 -q --json " + imgs), "it would be overwritten");
  expect_bad_input(cli("predict " + kModel + " " + imgs + " -n 1 -q --json " + (dir / "." / "imgs.npy").string()),
                   "it would be overwritten");
  EXPECT_EQ(std::filesystem::file_size(imgs), before);
  EXPECT_NO_THROW(detail::read_npy(imgs));
  // Two spellings of one existing result file (only equal strings were caught before).
  const std::string out = (dir / "r.json").string();
  write_file(out, "old\n");
  expect_bad_input(
      cli("certify " + kModel + " " + kImages + " -n 1 -q --json " + out + " --csv " + (dir / "." / "r.json").string()),
      "name the same file");
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, NonFiniteValuesInsideTheNetworkAreNotAnAnswer) {
  const auto dir = scratch_dir("cli_nonfinite");
  // Finite pixels that are not finite once normalized.
  expect_bad_input(cli("predict " + kModel + " " + kImages + " -n 1 --scale 1 --mean 1e300 --std 1e-300"),
                   "not finite after scaling and normalization");
  // Finite inputs whose first layer overflows: the NaN reaches the logits (a ReLU used to turn it
  // into 0 and predict a class).
  const std::string big = (dir / "big.npy").string();
  std::vector<double> px(784);
  for (size_t i = 0; i < px.size(); ++i) px[i] = i % 2 ? 1.7e308 : -1.7e308;
  detail::write_npy(big, {1, 1, 28, 28}, px, false);  // float64: the values are finite
  expect_bad_input(cli("predict " + kModel + " " + big + " --scale 1"), "non-finite logit");
  // Numbers beyond the largest double are said so; those below the smallest normal one are numbers.
  expect_bad_input(cli("predict " + kModel + " " + kImages + " -n 1 --scale 1e400"), "beyond the largest number");
  const Result tiny = cli("predict " + kModel + " " + kImages + " -n 1 -q --scale 1e-310");
  EXPECT_EQ(tiny.code, 0) << tiny.err;
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, MalformedGraphsAndPropertiesAreErrorsNotAnswers) {
  const auto dir = scratch_dir("cli_graphs");
  // Two nodes writing one tensor (not SSA): the second used to replace the first silently.
  const std::string dup = (dir / "dup.onnx").string();
  write_file(dup, onnx_model({onnx_node("Relu", {"x"}, {"y"}), onnx_node("Sigmoid", {"x"}, {"y"})}, {},
                             onnx_value("x", {1, 4}), onnx_value("y", {1, 4})));
  expect_bad_input(cli("info " + dup), "writes tensor 'y', which has another producer");
  // Control characters of a corrupt file's names come out escaped, on one line.
  const std::string named = (dir / "named.onnx").string();
  write_file(named, onnx_model({onnx_node("Relu", {std::string("a\nb\0c", 5)}, {"y"})}, {}, onnx_value("x", {1, 4}),
                               onnx_value("y", {1, 4})));
  expect_bad_input(cli("info " + named), "a\\x0ab\\x00c");
  // One output: no margins to bound (it used to say "certified" with none).
  const std::string one = (dir / "one.onnx").string();
  write_file(one, onnx_model({onnx_node("Flatten", {"x"}, {"f"}),
                              onnx_node("Gemm", {"f", "W"}, {"z"}, {attr_int("transB", 1)})},
                             {onnx_tensor("W", {1, 784}, std::vector<double>(784, 0.01))},
                             onnx_value("x", {1, 1, 28, 28}), onnx_value("z", {1, 1})));
  expect_bad_input(cli("bounds " + one + " " + kImages + " -n 1 --eps 0.01"), "fewer than two outputs");
  // A VNN-LIB property whose every input box is empty: an error, not "unsat".
  std::string prop;
  for (int i = 0; i < 784; ++i) prop += "(declare-const X_" + std::to_string(i) + " Real)\n";
  for (int j = 0; j < 10; ++j) prop += "(declare-const Y_" + std::to_string(j) + " Real)\n";
  for (int i = 0; i < 784; ++i)
    prop += "(assert (>= X_" + std::to_string(i) + (i == 3 ? " 0.5))\n" : " 0.0))\n") + "(assert (<= X_" +
            std::to_string(i) + (i == 3 ? " 0.1))\n" : " 1.0))\n");
  prop += "(assert (>= Y_0 Y_1))\n";
  write_file(dir / "empty.vnnlib", prop);
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "empty.vnnlib").string()),
                   "input box is empty in every case (X_3");
  // Bounds whose difference overflows: no centre and radius (it failed inside the box transform).
  std::string wide = prop;
  wide.replace(wide.find("(assert (<= X_3 0.1))"), 21, "(assert (<= X_3 1e308))");
  wide.replace(wide.find("(assert (>= X_3 0.5))"), 21, "(assert (>= X_3 -1e308))");
  write_file(dir / "wide.vnnlib", wide);
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "wide.vnnlib").string()),
                   "X_3 lies in [-1e+308, 1e+308], whose width is not a finite number");
  // A timeout says how far it got (its account was empty).
  std::string fine = prop;
  fine.replace(fine.find("(assert (>= X_3 0.5))"), 21, "(assert (>= X_3 0.0))");
  write_file(dir / "fine.vnnlib", fine);
  const Result t = cli("vnnlib " + kModel + " " + (dir / "fine.vnnlib").string() + " --timeout 1e-9 --no-attack");
  EXPECT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(t.out, "timeout\n");
  EXPECT_NE(t.err.find("the time limit passed with 0 case(s) refuted and no counterexample"), std::string::npos)
      << t.err;
  // An all-zero covariance: no noise level to search for.
  detail::write_npy((dir / "cov.npy").string(), {784}, std::vector<double>(784, 0.0), false);
  expect_bad_input(
      cli("proven " + kModel + " " + kImages + " -n 1 -q --noise gaussian --covariance " + (dir / "cov.npy").string()),
      "every variance is zero");
  std::filesystem::remove_all(dir);
}

TEST(CliHardening, ConvertRefusesAModelTooLargeForAnOnnxFileBeforeUnrolling) {
  // Three 3×3 convolutions of a 128×128 map: each unrolls to a 16384 × 16384 matrix (2^28
  // weights, the per-node limit), together 3 GiB of float32, more than one protobuf holds.
  const auto dir = scratch_dir("cli_convert_big");
  const std::string model = (dir / "big.onnx").string();
  std::vector<std::string> nodes;
  const auto conv = [](const std::string& in, const std::string& out, const std::string& w) {
    return onnx_node("Conv", {in, w}, {out}, {attr_ints("kernel_shape", {3, 3}), attr_ints("pads", {1, 1, 1, 1})});
  };
  write_file(model, onnx_model({conv("x", "a", "W"), conv("a", "b", "W"), conv("b", "c", "W"),
                                onnx_node("Flatten", {"c"}, {"f"}),
                                onnx_node("Gemm", {"f", "D"}, {"z"}, {attr_int("transB", 1)})},
                               {onnx_tensor("W", {1, 1, 3, 3}, std::vector<double>(9, 0.1)),
                                onnx_tensor("D", {2, 16384}, std::vector<double>(2 * 16384, 0.01))},
                               onnx_value("x", {1, 1, 128, 128}), onnx_value("z", {1, 2})));
  ASSERT_EQ(cli("info " + model + " -q").code, 0);
  const Result r = cli("convert " + model + " --to-dense -o " + (dir / "d.onnx").string());
  expect_bad_input(r, "more than the 2 GiB an ONNX file can hold");
  EXPECT_FALSE(std::filesystem::exists(dir / "d.onnx"));
}

TEST(CliHardening, AMistypedCommandIsNamed) {
  // CLI11 alone says "A subcommand is required", as if none had been given.
  const Result r = cli("certfy " + kModel + " " + kImages);
  expect_bad_input(r, "unknown command 'certfy'");
  EXPECT_NE(r.err.find("certify"), std::string::npos) << r.err;                             // the list of commands
  expect_bad_input(cli("\"$(printf 'bad\\001name')\""), "unknown command 'bad\\x01name'");  // control byte escaped
  EXPECT_EQ(cli("info " + kModel + " -q").code, 0);
  EXPECT_EQ(cli("--version").code, 0);
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

TEST(CliProgress, LinesWhenForcedNothingOtherwiseOffATerminal) {
  const std::string certify = "certify " + kModel + " " + kImages + " -n 2 -q";
  // stderr is a file here: no progress unless --progress
  const Result quiet = cli(certify);
  ASSERT_EQ(quiet.code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "");
  const Result forced = cli(certify + " --progress");
  ASSERT_EQ(forced.code, 0) << forced.err;
  // one line per search step (2 images × 1 random target × 15 steps of the CNN-Cert search), plain
  // lines without carriage returns, ending at 30/30
  EXPECT_EQ(forced.err.find('\r'), std::string::npos);
  EXPECT_EQ(std::count(forced.err.begin(), forced.err.end(), '\n'), 15) << forced.err;
  EXPECT_NE(forced.err.find("progress: 2/30 steps"), std::string::npos) << forced.err;
  EXPECT_NE(forced.err.find("progress: 30/30 steps"), std::string::npos) << forced.err;
  // the results are the same with and without the display
  auto radius = [](const std::string& out) { return out.substr(out.find("avg robustness"), 26); };
  EXPECT_EQ(radius(forced.out), radius(quiet.out));
  const Result proven = cli("proven " + kModel + " " + kImages + " -n 1 -q --no-worst-case --progress");
  ASSERT_EQ(proven.code, 0) << proven.err;
  EXPECT_NE(proven.err.find("progress: 15/15 steps"), std::string::npos) << proven.err;
}

}  // namespace
}  // namespace cnncert::test
