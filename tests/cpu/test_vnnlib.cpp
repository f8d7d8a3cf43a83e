// VNN-LIB properties: the reader on hand-written edge cases and bad files, the answers on the
// shipped model (unsat only when every case is refuted, and then no sampled or attacked input of
// the box is a counterexample; sat only with a counterexample that the forward pass confirms), the
// CLI's result file, and the properties of ../shared/data/vnnlib.
#include <gtest/gtest.h>

#include <random>
#include <sstream>

#include "cnncert/baselines.hpp"
#include "cnncert/cnncert.hpp"
#include "common/cli_util.hpp"

namespace cnncert::test {
namespace {

std::string declare(int64_t xs, int64_t ys) {
  std::string s;
  for (int64_t i = 0; i < xs; ++i) s += "(declare-const X_" + std::to_string(i) + " Real)\n";
  for (int64_t j = 0; j < ys; ++j) s += "(declare-const Y_" + std::to_string(j) + " Real)\n";
  return s;
}

TEST(Vnnlib, ReadsBoxesAndDisjunctionsOfConjunctions) {
  const std::string text = "; a comment\n" + declare(2, 3) +
                           "(assert (<= X_0 0.5))\n(assert (>= X_0 -0.5))\n"
                           "(assert (and (<= X_1 1e-1) (>= X_1 (- 0.25))))\n"
                           "(assert (or (and (>= Y_1 Y_0) (<= (+ Y_2 (* 2 Y_0)) 3))\n"
                           "            (and (<= (- Y_2 Y_0) -1.5))))\n";
  const VnnProperty p = parse_vnnlib(text, "t.vnnlib");
  EXPECT_EQ(p.inputs, 2);
  EXPECT_EQ(p.outputs, 3);
  ASSERT_EQ(p.cases.size(), 2u);
  for (const auto& c : p.cases) {
    EXPECT_EQ(c.lower, (std::vector<double>{-0.5, -0.25}));
    EXPECT_EQ(c.upper, (std::vector<double>{0.5, 0.1}));
  }
  ASSERT_EQ(p.cases[0].outputs.size(), 2u);
  // Y_1 ≥ Y_0  ⇔  Y_0 − Y_1 ≤ 0;  Y_2 + 2 Y_0 ≤ 3.
  EXPECT_EQ(p.cases[0].outputs[0].coef, (std::vector<double>{1, -1, 0}));
  EXPECT_EQ(p.cases[0].outputs[0].bound, 0);
  EXPECT_EQ(p.cases[0].outputs[1].coef, (std::vector<double>{2, 0, 1}));
  EXPECT_EQ(p.cases[0].outputs[1].bound, 3);
  ASSERT_EQ(p.cases[1].outputs.size(), 1u);
  EXPECT_EQ(p.cases[1].outputs[0].coef, (std::vector<double>{-1, 0, 1}));
  EXPECT_EQ(p.cases[1].outputs[0].bound, -1.5);
}

TEST(Vnnlib, InputBoxesInsideTheDisjunctionMakeSeparateCases) {
  // ACAS-Xu style: two input regions, each with its own output condition; the outer asserts AND in.
  const std::string text = declare(1, 2) +
                           "(assert (<= Y_0 Y_1))\n(assert (or (and (>= X_0 0) (<= X_0 1))\n"
                           "(and (>= X_0 2) (<= X_0 3) (>= Y_0 5))))\n";
  const VnnProperty p = parse_vnnlib(text);
  ASSERT_EQ(p.cases.size(), 2u);
  EXPECT_EQ(p.cases[0].lower[0], 0);
  EXPECT_EQ(p.cases[0].upper[0], 1);
  EXPECT_EQ(p.cases[0].outputs.size(), 1u);
  EXPECT_EQ(p.cases[1].lower[0], 2);
  EXPECT_EQ(p.cases[1].upper[0], 3);
  EXPECT_EQ(p.cases[1].outputs.size(), 2u);
}

TEST(Vnnlib, BadFilesNameTheLine) {
  const std::string d = declare(1, 2);  // lines 1-3
  const std::vector<std::pair<std::string, std::string>> cases = {
      {d + "(assert (<= X_0 1)", ":4: '(' opened here is not closed"},
      {d + "(assert (<= X_0 1)))", ":4: unexpected ')'"},
      {d + "(assert (<= X_0 abc))", ":4: 'abc' is neither a number nor a variable"},
      {d + "(assert (<= X_3 1))", ":4: X_3 is used before it is declared"},
      {d + "(assert (<= (* X_0 Y_0) 1))", ":4: a product of two variables is not linear"},
      {d + "\n(assert (=> X_0 1))", ":5: unsupported formula '(=> ...)'"},
      {d + "(assert (<= (exp X_0) 1))", ":4: unsupported expression '(exp ...)'"},
      {d + "(push 1)", ":4: unknown command 'push'"},
      {d + "(assert ())", ":4: empty list"},
      {"(declare-const X_0 Int)", ":1: only Real variables"},
      {"(declare-const Z_0 Real)", ":1: variables are named X_i"},
      {"(declare-const X_0 Real)\n(declare-const X_0 Real)", ":2: X_0 is declared twice"},
      {"(declare-const X_1 Real)(declare-const Y_0 Real)(assert (<= Y_0 0))", "X_0 is not declared"},
      {d, "has no assert"},
      {"", "declares no input variable"},
  };
  for (const auto& [text, needle] : cases) {
    try {
      parse_vnnlib(text, "bad.vnnlib");
      ADD_FAILURE() << "accepted:\n" << text;
    } catch (const Error& e) {  // InvalidArgument (bad syntax) or UnsupportedModel (beyond the reader): exit 2 alike
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_vnnlib(d + "(assert (<= X_0 1)"), InvalidArgument);
  EXPECT_THROW(parse_vnnlib(d + "(assert (=> X_0 1))"), UnsupportedModel);
  // Well-formed, but not a property the engines can check.
  EXPECT_THROW(parse_vnnlib(d + "(assert (<= X_0 1))(assert (<= Y_0 Y_1))"), UnsupportedModel);  // no lower bound
  EXPECT_THROW(parse_vnnlib(d + "(assert (<= (+ X_0 Y_0) 1))"), UnsupportedModel);               // X and Y mixed
  EXPECT_THROW(parse_vnnlib(declare(2, 2) + "(assert (<= (+ X_0 X_1) 1))"), UnsupportedModel);   // not a box
}

/// A robustness property of the shipped model around an image: the box of radius `eps` (in the
/// network's input space, clipped to the pixel range [−0.5, 0.5]), counterexample = some other
/// class reaching the predicted one.
std::string robustness_property(const Network& net, const std::vector<double>& x, double eps, int64_t* predicted) {
  const auto y = net.forward(x.data(), 1);
  const int64_t c = std::max_element(y.begin(), y.end()) - y.begin();
  *predicted = c;
  std::ostringstream s;
  s.precision(17);
  s << declare(static_cast<int64_t>(x.size()), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i)
    s << "(assert (<= X_" << i << " " << std::min(0.5, x[i] + eps) << "))\n(assert (>= X_" << i << " "
      << std::max(-0.5, x[i] - eps) << "))\n";
  s << "(assert (or\n";
  for (size_t k = 0; k < y.size(); ++k)
    if (static_cast<int64_t>(k) != c) s << "  (and (>= Y_" << k << " Y_" << c << "))\n";
  s << "))\n";
  return s.str();
}

struct Shipped {
  Network net = import_onnx(kModel);
  std::vector<double> x;
  Shipped() {
    const ImageSet set = load_images(kImages, {.offset = 0, .limit = 1});
    x = preprocess(set, *load_sidecar(kModel), net);
  }
};

/// Whether any input of case `c` found by sampling (corners, random points) or by PGD satisfies it.
bool falsified_by_search(const Network& net, const VnnCase& c) {
  std::mt19937_64 rng(7);
  const size_t n = c.lower.size();
  std::vector<double> x(n);
  auto holds = [&] {
    const auto y = net.forward(x.data(), 1);
    for (const auto& oc : c.outputs) {
      double s = 0;
      for (size_t j = 0; j < y.size(); ++j) s += oc.coef[j] * y[j];
      if (!(s <= oc.bound)) return false;
    }
    return true;
  };
  for (int k = 0; k < 300; ++k) {
    for (size_t i = 0; i < n; ++i) {
      std::uniform_real_distribution<double> u(c.lower[i], c.upper[i]);
      x[i] = k < 2 ? (k == 0 ? c.lower[i] : c.upper[i]) : k < 100 ? ((rng() & 1) ? c.lower[i] : c.upper[i]) : u(rng);
    }
    if (holds()) return true;
  }
  return false;
}

TEST(Vnnlib, SmallBoxIsUnsatAndNoSearchedInputContradictsIt) {
  Shipped s;
  int64_t c;
  const VnnProperty p = parse_vnnlib(robustness_property(s.net, s.x, 0.01, &c));
  const VnnResult r = verify_vnnlib(s.net, p, {});
  ASSERT_EQ(r.answer, VnnAnswer::Unsat) << r.note;
  EXPECT_EQ(r.cases_refuted, 9);
  for (const auto& k : p.cases) EXPECT_FALSE(falsified_by_search(s.net, k));
  EXPECT_TRUE(r.x.empty());
}

TEST(Vnnlib, LargeBoxIsSatWithACounterexampleInsideTheBox) {
  Shipped s;
  int64_t c;
  const VnnProperty p = parse_vnnlib(robustness_property(s.net, s.x, 0.3, &c));
  const VnnResult r = verify_vnnlib(s.net, p, {});
  ASSERT_EQ(r.answer, VnnAnswer::Sat) << r.note;
  ASSERT_EQ(r.x.size(), s.x.size());
  const auto y = s.net.forward(r.x.data(), 1);
  EXPECT_EQ(y, r.y);
  const int64_t now = std::max_element(y.begin(), y.end()) - y.begin();
  EXPECT_TRUE(now != c || std::count(y.begin(), y.end(), y[static_cast<size_t>(c)]) > 1)
      << "the prediction did not change";
  for (size_t i = 0; i < r.x.size(); ++i) {
    EXPECT_GE(r.x[i], p.cases[0].lower[i]);
    EXPECT_LE(r.x[i], p.cases[0].upper[i]);
  }
  // Without the attack the same property is only unknown: sat needs a counterexample.
  VnnOptions bounds_only;
  bounds_only.attack = false;
  EXPECT_EQ(verify_vnnlib(s.net, p, bounds_only).answer, VnnAnswer::Unknown);
}

TEST(Vnnlib, BoxAsAffineInputIsTheSameNetwork) {
  Shipped s;
  std::vector<double> scale(s.x.size()), shift(s.x.size()), z(s.x.size());
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  for (size_t i = 0; i < s.x.size(); ++i) scale[i] = 0.1 * u(rng), shift[i] = s.x[i], z[i] = u(rng);
  const Network boxed = with_input_affine(s.net, scale, shift);
  std::vector<double> x(s.x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = shift[i] + scale[i] * z[i];
  const auto a = boxed.forward(z.data(), 1), b = s.net.forward(x.data(), 1);
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-12 * (1 + std::fabs(b[k])));
  EXPECT_THROW(with_input_affine(s.net, {1.0}, {0.0}), InvalidArgument);
}

TEST(Vnnlib, CliWritesTheResultFileAndBadInputIsExit2) {
  Shipped s;
  const auto dir = scratch_dir("vnnlib_cli");
  int64_t c;
  write_file(dir / "small.vnnlib", robustness_property(s.net, s.x, 0.01, &c));
  write_file(dir / "large.vnnlib", robustness_property(s.net, s.x, 0.3, &c));
  const Result u =
      cli("vnnlib " + kModel + " " + (dir / "small.vnnlib").string() + " --result " + (dir / "u.txt").string());
  EXPECT_EQ(u.code, 0) << u.err;
  EXPECT_EQ(u.out, "unsat\n");
  EXPECT_EQ(read_file(dir / "u.txt"), "unsat\n");
  const Result t =
      cli("vnnlib " + kModel + " " + (dir / "large.vnnlib").string() + " --result " + (dir / "s.txt").string());
  EXPECT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(t.out, "sat\n");
  // VNN-COMP's counterexample: ((X_0 v) (X_1 v) ... (Y_9 v)), which re-runs to the same outputs.
  std::istringstream in(read_file(dir / "s.txt"));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "sat");
  std::vector<double> x, y;
  while (std::getline(in, line)) {
    const auto open = line.find('('), us = line.find('_', open), sp = line.find(' ', us);
    ASSERT_NE(sp, std::string::npos) << line;
    const std::string var = line.substr(line.find_first_not_of(" (", 0), 1);
    (var == "X" ? x : y).push_back(std::stod(line.substr(sp + 1)));
  }
  ASSERT_EQ(x.size(), s.x.size());
  ASSERT_EQ(y.size(), 10u);
  const auto again = s.net.forward(x.data(), 1);
  for (size_t k = 0; k < y.size(); ++k) EXPECT_DOUBLE_EQ(again[k], y[k]);
  // Compressed model and property (as VNN-COMP ships them) read directly.
  ASSERT_EQ(std::system(("gzip -c " + kModel + " > " + (dir / "net.onnx.gz").string() + " && gzip -c " +
                         (dir / "small.vnnlib").string() + " > " + (dir / "small.vnnlib.gz").string())
                            .c_str()),
            0);
  const Result gz = cli("vnnlib " + (dir / "net.onnx.gz").string() + " " + (dir / "small.vnnlib.gz").string());
  EXPECT_EQ(gz.code, 0) << gz.err;
  EXPECT_EQ(gz.out, "unsat\n");
  write_file(dir / "broken.vnnlib.gz", "\x1f\x8b not really gzip");
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "broken.vnnlib.gz").string()), "broken.vnnlib.gz");
  write_file(dir / "bad.vnnlib", declare(784, 10) + "(assert (<= X_0 1)\n");
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "bad.vnnlib").string()), "bad.vnnlib:795:");
  write_file(dir / "few.vnnlib", declare(3, 10) + "(assert (<= X_0 1))");
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "few.vnnlib").string()), "");
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "missing.vnnlib").string()), "cannot open the property file");
  expect_bad_input(cli("vnnlib " + kModel + " " + (dir / "small.vnnlib").string() + " --norm 2"),
                   "--norm, --clip and --eps-space do not apply");
}

TEST(Vnnlib, SharedPropertiesAreAnsweredAndNeverWrongly) {
  CNNCERT_REQUIRE_SHARED_DATA();
  const std::vector<std::pair<std::string, std::string>> instances = {
      {"mnist_fc_256x2", "mnist_fc_prop_0_0.03"},
      {"mnist_verivital_convnet_maxpool", "verivital_maxpool_prop_4_0.004"},
      {"mnist_eran_sigmoid_6x200", "ffnnSIGMOID_6x200__mnist_spec_idx_3370_eps_0.01200"},
      {"cifar_oval21_base_kw", "cifar_base_kw-img4549-eps0.00392156862745098"},
      {"cifar_resnet_2b", "resnet2b_prop_0_eps_0.008"},
  };
  for (const auto& [net_name, prop_name] : instances) {
    const auto model = shared_data() / "nets" / (net_name + ".onnx");
    const auto prop_path = shared_data() / "vnnlib" / (prop_name + ".vnnlib");
    if (!std::filesystem::exists(model) || !std::filesystem::exists(prop_path)) continue;
    const Network net = import_onnx(model.string());
    const VnnProperty p = load_vnnlib(prop_path.string());
    const VnnResult r = verify_vnnlib(net, p, {});
    SCOPED_TRACE(prop_name + ": " + vnn_answer_name(r.answer) + " (" + r.note + ")");
    if (r.answer == VnnAnswer::Sat) {
      const auto y = net.forward(r.x.data(), 1);
      bool some_case = false;
      for (const auto& c : p.cases) {
        bool all = true;
        for (size_t i = 0; i < r.x.size(); ++i) all = all && r.x[i] >= c.lower[i] && r.x[i] <= c.upper[i];
        for (const auto& oc : c.outputs) {
          double s = 0;
          for (size_t j = 0; j < y.size(); ++j) s += oc.coef[j] * y[j];
          all = all && s <= oc.bound;
        }
        some_case = some_case || all;
      }
      EXPECT_TRUE(some_case) << "a counterexample that is not one";
    } else {
      EXPECT_NE(r.answer, VnnAnswer::Timeout);
      // Not a proof, but an independent check: no searched input of a refuted case contradicts it.
      if (r.answer == VnnAnswer::Unsat)
        for (const auto& c : p.cases) EXPECT_FALSE(falsified_by_search(net, c));
    }
  }
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

TEST(Vnnlib, HarnessScriptsRunABenchmarkFolder) {
  Shipped s;
  const auto dir = scratch_dir("vnnlib_bench");
  std::filesystem::copy_file(kModel, dir / "net.onnx", std::filesystem::copy_options::overwrite_existing);
  int64_t c;
  write_file(dir / "small.vnnlib", robustness_property(s.net, s.x, 0.01, &c));
  write_file(dir / "large.vnnlib", robustness_property(s.net, s.x, 0.3, &c));
  write_file(dir / "instances.csv", "net.onnx,small.vnnlib,60,unsat\nnet.onnx,large.vnnlib,60,sat\n");
  const std::string script = (source_dir() / "tools/vnncomp/run_benchmark.sh").string();
  const Result r = run("CNNCERT_CLI=" + std::string(CNNCERT_CLI_PATH) + " bash " + script,
                       dir.string() + " test " + (dir / "out").string());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("2 instances: 1 unsat, 1 sat, 0 unknown, 0 timeout"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("score 20\n"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(dir / "out/result_1.txt"), "unsat\n");
  EXPECT_EQ(read_file(dir / "out/result_2.txt").substr(0, 4), "sat\n");
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

// y = relu(x0) + relu(x1) − relu(x0 + x1) on [−1, 1]²: never negative (ReLU is subadditive), at most 1
// (x0 = 1, x1 = −1). One bound over the whole box only gives y ≥ −2, so y ≤ −0.5 needs pieces of
// the box to be refuted; y ≥ 0.7 happens only near a corner, which the pieces' centres reach.
TEST(Vnnlib, InputSplittingProvesWhatOneBoxCannotAndFindsCounterexamples) {
  const std::string m =
      onnx_model({onnx_node("Gemm", {"x", "W1"}, {"h"}, {attr_int("transB", 1)}), onnx_node("Relu", {"h"}, {"r"}),
                  onnx_node("Gemm", {"r", "W2"}, {"y"}, {attr_int("transB", 1)})},
                 {onnx_tensor("W1", {3, 2}, {1, 0, 0, 1, 1, 1}), onnx_tensor("W2", {1, 3}, {1, 1, -1})},
                 onnx_value("x", {-1, 2}), onnx_value("y", {-1, 1}));
  const Network net = import_onnx_bytes(m, "subadditive.onnx");
  const double x[2] = {1, -1};
  ASSERT_NEAR(net.forward(x, 1)[0], 1, 1e-12);
  const std::string box =
      declare(2, 1) + "(assert (<= X_0 1))(assert (>= X_0 -1))(assert (<= X_1 1))(assert (>= X_1 -1))\n";
  const VnnProperty never = parse_vnnlib(box + "(assert (<= Y_0 -0.5))");
  VnnOptions whole;
  whole.split_max_inputs = 0;
  EXPECT_EQ(verify_vnnlib(net, never, whole).answer, VnnAnswer::Unknown);
  const VnnResult split = verify_vnnlib(net, never, {});
  EXPECT_EQ(split.answer, VnnAnswer::Unsat) << split.note;
  EXPECT_GT(split.boxes, 1);
  const VnnResult happens = verify_vnnlib(net, parse_vnnlib(box + "(assert (>= Y_0 0.7))"), {});
  ASSERT_EQ(happens.answer, VnnAnswer::Sat) << happens.note;
  EXPECT_GE(net.forward(happens.x.data(), 1)[0], 0.7);
  VnnOptions few;
  few.max_boxes = 3;  // not enough pieces: open, never a guess
  EXPECT_EQ(verify_vnnlib(net, never, few).answer, VnnAnswer::Unknown);
  // Without splitting, PGD on the constraints (not a margin) finds the counterexamples the centre
  // is not: one constraint, and a conjunction that pins Y_0 to a band.
  for (const std::string cs : {"(assert (>= Y_0 0.7))", "(assert (and (>= Y_0 0.7) (<= Y_0 0.8)))"}) {
    const VnnProperty prop = parse_vnnlib(box + cs);
    const VnnResult pgd = verify_vnnlib(net, prop, whole);
    ASSERT_EQ(pgd.answer, VnnAnswer::Sat) << cs << ": " << pgd.note;
    EXPECT_NE(pgd.note.find("PGD on the constraints"), std::string::npos) << pgd.note;
    const double y = net.forward(pgd.x.data(), 1)[0];
    EXPECT_GE(y, 0.7) << cs;
    if (prop.cases[0].outputs.size() == 2) EXPECT_LE(y, 0.8);
    for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(pgd.x[i] >= -1 && pgd.x[i] <= 1);
    VnnOptions no_attack = whole;
    no_attack.attack = false;
    EXPECT_EQ(verify_vnnlib(net, prop, no_attack).answer, VnnAnswer::Unknown) << cs;
  }
}

}  // namespace
}  // namespace cnncert::test

namespace cnncert::test {
namespace {

TEST(Vnnlib, ReviewedEdgeCases) {
  // Terms that cancel out are no terms (they used to index an output by an input's number).
  const VnnProperty p = parse_vnnlib(declare(2, 2) +
                                     "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))\n"
                                     "(assert (<= (+ Y_0 (* 0 X_0) (- X_1 X_1)) 1))");
  ASSERT_EQ(p.cases.size(), 1u);
  EXPECT_EQ(p.cases[0].outputs[0].coef, (std::vector<double>{1, 0}));
  EXPECT_THROW(parse_vnnlib(declare(1, 1) + "(assert (<= (- (* 1e300 1e300) (* 1e300 1e300)) X_0))"), InvalidArgument);
  EXPECT_THROW(parse_vnnlib(declare(2, 1) + "(assert (<= X_01 1))"), InvalidArgument);
  // Underflow is a tiny number, SMT-LIB's housekeeping commands are ignored.
  const VnnProperty q = parse_vnnlib("(set-logic QF_LRA)" + declare(1, 1) +
                                     "(assert (<= X_0 1e-400))(assert (>= X_0 -1))(assert (<= Y_0 0))(check-sat)");
  EXPECT_EQ(q.cases[0].upper[0], 0.0);
  // A truncated .gz is an error, not a shorter property.
  const auto dir = scratch_dir("vnnlib_gz");
  write_file(dir / "p.vnnlib", declare(1, 1) + "(assert (<= X_0 1))(assert (>= X_0 -1))\n" + std::string(4000, ';') +
                                   "\n(assert (<= Y_0 0))\n");
  ASSERT_EQ(std::system(("gzip -c " + (dir / "p.vnnlib").string() + " > " + (dir / "p.vnnlib.gz").string()).c_str()),
            0);
  const std::string gz = read_file(dir / "p.vnnlib.gz");
  write_file(dir / "cut.vnnlib.gz", gz.substr(0, gz.size() - 12));
  EXPECT_NO_THROW(load_vnnlib((dir / "p.vnnlib.gz").string()));
  EXPECT_THROW(load_vnnlib((dir / "cut.vnnlib.gz").string()), InvalidArgument);
  // Cut off in its 8-byte trailer only, decompressing to exactly 64 KiB (the read buffer): every
  // byte of the property arrives, but the stream's checksum is missing. zlib's gzread calls
  // that a clean end once the whole file sits in its input buffer; it is an error here.
  std::string exact = declare(1, 1) + "(assert (<= X_0 1))(assert (>= X_0 -1))\n(assert (<= Y_0 0))\n";
  exact += std::string(65536 - exact.size(), ';');
  write_file(dir / "exact.vnnlib", exact);
  ASSERT_EQ(
      std::system(("gzip -c " + (dir / "exact.vnnlib").string() + " > " + (dir / "exact.vnnlib.gz").string()).c_str()),
      0);
  const std::string gz2 = read_file(dir / "exact.vnnlib.gz");
  EXPECT_NO_THROW(load_vnnlib((dir / "exact.vnnlib.gz").string()));
  write_file(dir / "no_trailer.vnnlib.gz", gz2.substr(0, gz2.size() - 8));
  EXPECT_THROW(load_vnnlib((dir / "no_trailer.vnnlib.gz").string()), InvalidArgument);
  // Members concatenated (`cat a.gz b.gz`) are one file, as gunzip reads them; bytes after the
  // last member that start none are an error.
  const std::string header = declare(1, 1) + "(assert (<= X_0 1))\n";
  write_file(dir / "a.vnnlib", header);
  write_file(dir / "b.vnnlib", "(assert (>= X_0 -1))\n(assert (<= Y_0 0))\n");
  ASSERT_EQ(std::system(("gzip -c " + (dir / "a.vnnlib").string() + " " + (dir / "b.vnnlib").string() + " > " +
                         (dir / "ab.vnnlib.gz").string())
                            .c_str()),
            0);
  const VnnProperty ab = load_vnnlib((dir / "ab.vnnlib.gz").string());
  ASSERT_EQ(ab.cases.size(), 1u);
  EXPECT_EQ(ab.cases[0].lower[0], -1.0);
  EXPECT_EQ(ab.cases[0].upper[0], 1.0);
  write_file(dir / "junk.vnnlib.gz", read_file(dir / "ab.vnnlib.gz") + "junk");
  EXPECT_THROW(load_vnnlib((dir / "junk.vnnlib.gz").string()), InvalidArgument);
}

TEST(Vnnlib, AStrippedSoftmaxOnlyAllowsConstraintsItCannotChange) {
  const std::string m =
      onnx_model({onnx_node("Gemm", {"x", "W"}, {"l"}, {attr_int("transB", 1)}), onnx_node("Softmax", {"l"}, {"y"})},
                 {onnx_tensor("W", {2, 2}, {1, 0, 0, 1})}, onnx_value("x", {-1, 2}), onnx_value("y", {-1, 2}));
  const Network net = import_onnx_bytes(m, "softmax.onnx");
  ASSERT_EQ(net.stripped_output(), "Softmax");
  const std::string box =
      declare(2, 2) + "(assert (<= X_0 1))(assert (>= X_0 0.5))(assert (<= X_1 0.2))(assert (>= X_1 0))\n";
  // Y_1 ≥ Y_0 compares two outputs: the same on probabilities and logits (here impossible: unsat).
  EXPECT_EQ(verify_vnnlib(net, parse_vnnlib(box + "(assert (>= Y_1 Y_0))"), {}).answer, VnnAnswer::Unsat);
  // Y_0 ≥ 0.9 is about a probability (which the logits, 0.5..1, say nothing about): refused.
  EXPECT_THROW(verify_vnnlib(net, parse_vnnlib(box + "(assert (>= Y_0 0.9))"), {}), UnsupportedModel);
}

}  // namespace
}  // namespace cnncert::test
