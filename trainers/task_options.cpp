#include "trainers/task_options.h"

#include <algorithm>

namespace perceiver::trainers {

TaskSection::TaskSection(const YAML::Node& node, const std::string& source, const std::string& path,
                         const datasets::OptionSpecs& declared)
    : reader_(node, source, path), node_(node), source_(source) {
  declare(declared);
}

void TaskSection::declare(const datasets::OptionSpecs& specs) {
  for (const auto& spec : specs)
    if (!datasets::find_option(declared_, spec.key)) declared_.push_back(spec);
}

const datasets::OptionSpec& TaskSection::declaration(const std::string& key) const {
  const auto* spec = datasets::find_option(declared_, key);
  if (!spec) throw std::logic_error(source_ + ": '" + key_path(key) + "' is read but not declared");
  return *spec;
}

bool TaskSection::has(const std::string& key) const {
  declaration(key);
  return reader_.has(key);
}

std::string TaskSection::required(const std::string& key) {
  declaration(key);
  if (!reader_.has(key)) reader_.fail(key, "is required");
  return reader_.get<std::string>(key, "", type_name<std::string>());
}

YAML::Node TaskSection::node(const std::string& key) const {
  declaration(key);
  return reader_.node(key);
}

void TaskSection::finish() const {
  if (!node_.IsDefined() || !node_.IsMap()) return;
  std::vector<std::string> known;
  for (const auto& spec : declared_) known.push_back(spec.key);
  std::sort(known.begin(), known.end());
  std::vector<std::string> problems;
  for (const auto& kv : node_) {
    const auto key = kv.first.as<std::string>();
    if (datasets::find_option(declared_, key)) continue;
    const auto guess = closest(key, known);
    // SectionReader words the problem (file:line, or the override that set it); all are reported at once.
    try {
      reader_.fail(key, "is not a known key here (" + (guess.empty() ? "" : "did you mean '" + guess + "'? ") +
                            "known: " + join(known, ", ") + ")");
    } catch (const ConfigError& e) {
      problems.insert(problems.end(), e.problems().begin(), e.problems().end());
    }
  }
  if (!problems.empty()) throw ConfigError(problems);
}

SourceSection::SourceSection(const YAML::Node& node, const std::string& source, const std::string& path,
                             const datasets::OptionSpecs& task_options)
    : section_(node, source, path, {source_type_option()}), path_(path) {
  section_.declare(task_options);
}

datasets::OptionSpec source_type_option() {
  return {"type", "string", "", "the data source that reads this section (its other keys are that source's)", true};
}

datasets::OptionSpecs train_eval_options(const std::string& kind, const std::vector<std::string>& sources) {
  const auto section = "a " + kind + " source section: `type` (" + join(sources, ", ") + ") and that source's keys";
  return {{"train", "map", "", "the training data, " + section, true},
          {"eval", "map", "", "the evaluation data, " + section, true}};
}

TaskSection data_section(const YAML::Node& data, const std::string& source, const datasets::OptionSpecs& data_options) {
  TaskSection d(data, source, "data", data_options);
  for (const auto& key : loader_data_keys()) d.declare({{key, "any", "", "the trainer's loader setting"}});
  return d;
}

}  // namespace perceiver::trainers
