#pragma once
// What a subcommand writes, and where (internal to the command): the one place for the rules of
// the outputs, which every subcommand follows by writing through a Report.
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cnncert/network.hpp"
#include "io/output_file.hpp"

namespace cnncert::cli {

/// "cnncert: warning: TEXT" on stderr: a warning that matters, said also under -q.
void warn(const std::string& text);

/// The outputs of one run of a subcommand, and the rule of -q ("print only the summary"):
/// * data: the result files (--json, --csv, vnnlib's --result, convert's -o). Each is opened, and
///   so checked, when the Report is made or the output added (before the computation starts), and
///   commit() writes them whole, all of them or none (detail::OutputFile). "-" is the standard
///   output, which then carries that data alone. Written also under -q.
/// * summary(): the summary (certify's "avg robustness" lines, predict's accuracy, vnnlib's
///   answer, ...): the standard output, or the standard error once a data output is the standard
///   output. Written also under -q: it is what -q keeps.
/// * text(): the rest of the human text (per-image lines, tables): where summary() goes; nothing
///   under -q.
/// * log(): human text for the standard error only (the notes of the model import, vnnlib's
///   account of its answer); nothing under -q.
/// * warn(): warnings that matter, on stderr, also under -q. Errors are exceptions, said by main().
/// The progress display (progress.hpp) is off under -q unless --progress asks for it.
class Report {
 public:
  /// `json_path`/`csv_path`: the --json and --csv outputs (empty: none).
  explicit Report(bool quiet, const std::string& json_path = "", const std::string& csv_path = "");
  Report(const Report&) = delete;
  Report& operator=(const Report&) = delete;

  /// Adds another data output (`what` names its option in errors); the same file as an output
  /// already added is an InvalidArgument (one would silently replace the other).
  detail::OutputFile& add_output(const std::string& path, const std::string& what);

  bool quiet() const { return quiet_; }
  std::ostream& summary();
  std::ostream& text();
  std::ostream& log();
  void notes(const Network& net);

  bool wants_json() const { return json_->enabled(); }
  bool wants_csv() const { return csv_->enabled(); }
  /// The document of --json (ignored without --json).
  void json(const nlohmann::json& doc);
  /// The table of --csv (discarded without --csv).
  std::ostream& csv() { return csv_->stream(); }

  /// Writes every data output (see above).
  void commit();

 private:
  bool quiet_;
  std::vector<std::unique_ptr<detail::OutputFile>> outputs_;
  std::vector<std::pair<std::string, std::string>> names_;  // each output's path as given, and option
  detail::OutputFile *json_ = nullptr, *csv_ = nullptr;
  std::ostream discard_{nullptr};  // text() and log() under -q
};

}  // namespace cnncert::cli
