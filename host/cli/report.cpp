// The outputs of a subcommand (report.hpp).
#include "cli/report.hpp"

#include <iostream>

#include "cnncert/error.hpp"

namespace cnncert::cli {

void warn(const std::string& text) {
  std::cerr << "cnncert: warning: " << text << "\n";
}

Report::Report(bool quiet, const std::string& json_path, const std::string& csv_path) : quiet_(quiet) {
  json_ = &add_output(json_path, "--json");
  csv_ = &add_output(csv_path, "--csv");
}

detail::OutputFile& Report::add_output(const std::string& path, const std::string& what) {
  // Checked on the names as given, before any file is opened.
  for (size_t i = 0; i < outputs_.size(); ++i)
    if (!path.empty() && names_[i].first == path)
      throw InvalidArgument(names_[i].second + " and " + what + " name the same file " + path);
  // (A data output on the standard output sends std::cout, and so summary() and text(), to stderr.)
  outputs_.push_back(std::make_unique<detail::OutputFile>(path, what));
  names_.emplace_back(path, what);
  return *outputs_.back();
}

std::ostream& Report::summary() {
  return std::cout;
}

std::ostream& Report::text() {
  return quiet_ ? discard_ : std::cout;
}

std::ostream& Report::log() {
  return quiet_ ? discard_ : std::cerr;
}

void Report::notes(const Network& net) {
  for (const auto& n : net.notes()) log() << "note: " << n << "\n";
}

void Report::json(const nlohmann::json& doc) {
  if (json_->enabled()) json_->stream() << doc.dump(2) << "\n";
}

void Report::commit() {
  // All temporary files first, then the renames: a failed write leaves none of them half there.
  for (const auto& o : outputs_) o->prepare();
  for (const auto& o : outputs_) o->publish();
}

}  // namespace cnncert::cli
