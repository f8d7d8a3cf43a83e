// Splitting a certification: `--shard K/N`, and `mpirun -np N cnncert certify` (one shard per rank,
// gathered at rank 0). The reference for both is the same certification run as one process: a
// shard must give each of its images the target and the radius the whole run gives it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "common/cli_util.hpp"

namespace cnncert::test {
namespace {

using nlohmann::json;

/// (image → its (target, eps) pairs, or "skipped") of a certify --json output.
using Radii = std::map<int64_t, std::vector<std::tuple<int64_t, double>>>;

Radii radii(const json& j) {
  Radii out;
  for (const auto& im : j.at("images")) {
    auto& v = out[im.at("image").get<int64_t>()];
    if (im.at("skipped").get<bool>())
      v.emplace_back(-99, -1.0);
    else
      for (const auto& t : im.at("targets")) v.emplace_back(t.at("target").get<int64_t>(), t.at("eps").get<double>());
  }
  return out;
}

/// certify of the shipped model on images [offset, offset + n), with `extra` options, as JSON.
json certify_json(const std::string& prefix, const std::string& extra, const std::filesystem::path& out,
                  int expected_code = 0) {
  const Result r = run(prefix + std::string(CNNCERT_CLI_PATH),
                       "certify " + kModel + " " + kImages + " -q --json " + out.string() + " " + extra);
  EXPECT_EQ(r.code, expected_code) << r.err;
  if (!std::filesystem::exists(out)) return json::object({{"images", json::array()}});
  return json::parse(read_file(out));
}

TEST(Shard, ShardsTogetherAreTheWholeRunImageForImage) {
  const auto dir = scratch_dir("shard_union");
  // Random targets (seeded by the image index) and an offset, so that numbering matters.
  const std::string opts = "-n 11 --offset 3 --target random --seed 7";
  const Radii whole = radii(certify_json("", opts, dir / "whole.json"));
  ASSERT_EQ(whole.size(), 11u);
  Radii joined;
  for (int k = 0; k < 3; ++k) {
    const json j =
        certify_json("", opts + " --shard " + std::to_string(k) + "/3", dir / ("s" + std::to_string(k) + ".json"));
    EXPECT_EQ(j.at("shard"), std::to_string(k) + "/3");
    for (const auto& [image, v] : radii(j)) {
      EXPECT_EQ((image - 3) % 3, k) << "shard " << k << " holds image " << image;
      EXPECT_TRUE(joined.emplace(image, v).second) << "image " << image << " in two shards";
    }
  }
  EXPECT_EQ(joined, whole);
}

TEST(Shard, TargetsFileFollowsTheImages) {
  const auto dir = scratch_dir("shard_targets");
  std::string targets;
  for (int i = 0; i < 6; ++i) targets += std::to_string((i * 3 + 1) % 10) + "\n";
  write_file(dir / "t.txt", targets);
  const std::string opts = "-n 6 --targets " + (dir / "t.txt").string();
  const Radii whole = radii(certify_json("", opts, dir / "whole.json"));
  const Radii odd = radii(certify_json("", opts + " --shard 1/2", dir / "odd.json"));
  ASSERT_EQ(odd.size(), 3u);
  for (const auto& [image, v] : odd) EXPECT_EQ(v, whole.at(image)) << "image " << image;
}

TEST(Shard, ShardBeyondTheImagesIsEmptyNotAnError) {
  const auto dir = scratch_dir("shard_empty");
  const json j = certify_json("", "-n 2 --shard 5/7", dir / "e.json");
  EXPECT_TRUE(j.at("images").empty());
}

TEST(Shard, BadShardsAreOneLineErrors) {
  for (const char* s : {"3/3", "1/0", "a/2", "-1/2", "1", "1/2/3", "/2", "2/", "99999999999/2"})
    expect_bad_input(cli("certify " + kModel + " " + kImages + " -n 2 -q --shard " + s), "--shard");
}

// ---- MPI ----------------------------------------------------------------------------------------

/// The mpirun prefix for `ranks` processes on this machine, or "" when the build has no MPI (or its
/// mpiexec is not Open MPI's, whose --oversubscribe and --allow-run-as-root these tests use).
std::string mpirun(int ranks) {
  const std::string exe = CNNCERT_MPIEXEC;
  if (exe.empty()) return "";
  static const bool open_mpi = [&] {  // "mpiexec (OpenRTE) 4.1.4" / "mpiexec (Open MPI) 5.0.3"
    const std::string v = run(exe, "--version").out;
    return v.find("OpenRTE") != std::string::npos || v.find("Open MPI") != std::string::npos;
  }();
  if (!open_mpi) return "";
  std::string p = exe + " -np " + std::to_string(ranks) + " --oversubscribe";
  if (::geteuid() == 0) p += " --allow-run-as-root";  // CI containers run as root
  return p + " ";
}

TEST(Mpi, RanksGiveTheSingleProcessRadii) {
  if (mpirun(2).empty()) GTEST_SKIP() << "cnncert was built without MPI (apt-get install libopenmpi-dev)";
  const auto dir = scratch_dir("mpi_equal");
  const std::string opts = "-n 10 --offset 1 --target random --threads 1";
  const Radii whole = radii(certify_json("", opts, dir / "whole.json"));
  ASSERT_EQ(whole.size(), 10u);
  for (int ranks : {2, 3}) {
    const json j = certify_json(mpirun(ranks), opts, dir / ("mpi" + std::to_string(ranks) + ".json"));
    EXPECT_EQ(j.value("ranks", 0), ranks);
    EXPECT_FALSE(j.contains("errors"));
    EXPECT_EQ(radii(j), whole) << ranks << " ranks";
  }
  // what the ranks send rank 0 includes the counterexample search's findings
  const std::string untargeted = "-n 4 --target untargeted --threads 1 --attack-moves 10";
  const json one = certify_json("", untargeted, dir / "one.json"),
             two = certify_json(mpirun(2), untargeted, dir / "two.json");
  EXPECT_EQ(radii(two), radii(one));
  int decided = 0;
  ASSERT_EQ(one.at("images").size(), two.at("images").size());
  for (size_t i = 0; i < one.at("images").size(); ++i)
    for (size_t t = 0; t < one["images"][i].value("targets", json::array()).size(); ++t) {
      const json &a = one["images"][i]["targets"][t], &b = two["images"][i]["targets"][t];
      EXPECT_EQ(a.at("steps_by_attack"), b.at("steps_by_attack"));
      EXPECT_EQ(a.value("attack_eps", -1.0), b.value("attack_eps", -1.0));
      decided += a.at("steps_by_attack").get<int>();
    }
  EXPECT_GT(decided, 0);
}

TEST(Mpi, AFailedRankIsReportedAndTheOthersResultsAreKept) {
  if (mpirun(3).empty()) GTEST_SKIP() << "cnncert was built without MPI (apt-get install libopenmpi-dev)";
  const auto dir = scratch_dir("mpi_fail");
  const Radii whole = radii(certify_json("", "-n 9", dir / "whole.json"));
  const std::string out = (dir / "mpi.json").string();
  const Result r =
      run("CNNCERT_TEST_FAIL_RANK=1 " + mpirun(3) + "-x CNNCERT_TEST_FAIL_RANK " + std::string(CNNCERT_CLI_PATH),
          "certify " + kModel + " " + kImages + " -n 9 -q --json " + out);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("cnncert: error: rank 1 of 3: rank 1 failed on purpose"), std::string::npos) << r.err;
  ASSERT_TRUE(std::filesystem::exists(out)) << r.err;
  const json j = json::parse(read_file(out));
  ASSERT_EQ(j.at("errors").size(), 1u);
  EXPECT_EQ(j["errors"][0]["rank"], 1);
  Radii expected;
  for (const auto& [image, v] : whole)
    if (image % 3 != 1) expected.emplace(image, v);
  EXPECT_EQ(radii(j), expected);
}

TEST(Mpi, AnErrorEveryRankMeetsIsSaidOnce) {
  if (mpirun(2).empty()) GTEST_SKIP() << "cnncert was built without MPI (apt-get install libopenmpi-dev)";
  const Result r = run(mpirun(2) + std::string(CNNCERT_CLI_PATH), "certify /nonexistent.onnx " + kImages + " -q");
  EXPECT_EQ(r.code, 2);
  const std::string needle = "cnncert: error: /nonexistent.onnx";
  const auto first = r.err.find(needle);
  ASSERT_NE(first, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(needle, first + 1), std::string::npos) << "said more than once:\n" << r.err;
}

TEST(Mpi, ProcessesThatCannotSeeEachOtherDoNotAllCertifyEveryImage) {
  // srun's environment for one of 3 tasks, without an MPI plugin (or a build without MPI): each
  // process is alone, so a certify without --shard would repeat the whole run 3 times.
  const std::string env = "SLURM_STEP_NUM_TASKS=3 " + std::string(CNNCERT_CLI_PATH);
  expect_bad_input(run(env, "certify " + kModel + " " + kImages + " -n 1 -q"), "each would certify every image");
  const Result shard = run(env, "certify " + kModel + " " + kImages + " -n 3 -q --shard 1/3");
  EXPECT_EQ(shard.code, 0) << shard.err;
  EXPECT_NE(shard.out.find("images = 1 certified"), std::string::npos) << shard.out;
  EXPECT_EQ(run(env, "info " + kModel).code, 0);
}

TEST(Mpi, RankZerosOutputProblemStopsTheRunBeforeAnyRankComputes) {
  if (mpirun(2).empty()) GTEST_SKIP() << "cnncert was built without MPI (apt-get install libopenmpi-dev)";
  const Result r = run(mpirun(2) + std::string(CNNCERT_CLI_PATH),
                       "certify " + kModel + " " + kImages + " -q --json /nonexistent/x.json");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cnncert: error: --json /nonexistent/x.json"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("rank"), std::string::npos) << "one error for the run, not per rank:\n" << r.err;
}

}  // namespace
}  // namespace cnncert::test
