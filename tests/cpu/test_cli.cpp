// The cnncert command: exit codes, one-line errors, and the predict/info outputs.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "npy.hpp"
#include "test_util.hpp"

namespace cnncert::test {
namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

/// Runs the CLI with `args` (shell-quoted by the caller), capturing stdout and stderr.
Result cli(const std::string& args) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto err_path = dir / ("cnncert_cli_err_" + std::to_string(::getpid()));
  const std::string cmd = std::string(CNNCERT_CLI_PATH) + " " + args + " 2>" + err_path.string();
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err_path);
  std::filesystem::remove(err_path);
  return r;
}

const std::string kModel = (source_dir() / "models/mnist_cnn_3layer_5_3.onnx").string();
const std::string kImages = (source_dir() / "data/mnist_test_100.npy").string();

/// Exit code 2 and exactly one line on stderr that contains `needle`.
void expect_bad_input(const Result& r, const std::string& needle) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

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
  const auto json = nlohmann::json::parse(j.out.substr(j.out.find('{')));
  EXPECT_EQ(json["count"], 10);
  ASSERT_EQ(json["images"].size(), 10u);
  EXPECT_EQ(json["images"][0]["image"], 5);
  EXPECT_EQ(json["images"][0]["logits"].size(), 10u);
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

}  // namespace
}  // namespace cnncert::test
