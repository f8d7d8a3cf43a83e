// `vnnlib`: a VNN-LIB property's answer (VNN-COMP).
#include "cnncert/vnnlib.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "cnncert/cnncert.hpp"

namespace cnncert::cli {

using json = nlohmann::json;

/// `vnnlib`: a VNN-LIB property's answer, in VNN-COMP's result format with --result.
int run_vnnlib(const std::string& model, const std::string& property, const BoundCliOptions& bo, double timeout,
               bool attack, const std::string& result_path, bool quiet) {
  if (!std::isfinite(timeout) || timeout < 0)
    throw InvalidArgument("--timeout must be a non-negative number of seconds");
  if (bo.norm != "inf" || !bo.clip.empty() || bo.eps_space != "input")
    throw InvalidArgument("vnnlib: the property gives the input box (--norm, --clip and --eps-space do not apply)");
  Report report(quiet);
  detail::OutputFile& out = report.add_output(result_path, "--result");
  const Network net = import_onnx(model);
  report.notes(net);
  const VnnProperty prop = load_vnnlib(property);
  VnnOptions vo;
  vo.bound = bo.options();
  vo.timeout_seconds = timeout;
  vo.attack = attack;
  const VnnResult r = verify_vnnlib(net, prop, vo, bo.engine_options());
  const char* answer = vnn_answer_name(r.answer);
  report.summary() << answer << "\n";  // (VNN-COMP's scripts read it)
  report.log() << "cnncert: " << answer << " in " << std::setprecision(3) << r.seconds << " s: " << r.note << "\n";
  std::ostream& f = out.stream();
  f << answer << "\n";
  if (r.answer == VnnAnswer::Sat) {  // the counterexample, as VNN-COMP reads it
    f << std::setprecision(17);
    for (size_t i = 0; i < r.x.size(); ++i) f << (i ? " (X_" : "((X_") << i << " " << r.x[i] << ")\n";
    for (size_t j = 0; j < r.y.size(); ++j)
      f << " (Y_" << j << " " << r.y[j] << ")" << (j + 1 == r.y.size() ? ")" : "") << "\n";
  }
  report.commit();
  return 0;
}

}  // namespace cnncert::cli
