// The run file's options, declared once (datasets/option_spec.h): the trainer's own sections here,
// the optimizer's and the schedule's in optim.cpp and schedule.cpp, each task's and each data
// source's through their registries. Everything a user sees of them is read from these tables: the
// schema check (unknown keys with file:line and the closest key, wrong types), the defaults, the
// effective config.yaml, `perceiver train --help-config` and docs/run-files.md.
#pragma once

#include <yaml-cpp/yaml.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/option_spec.h"
#include "trainers/run_config_util.h"

namespace perceiver::trainers {

using datasets::OptionSpec;
using datasets::OptionSpecs;

// The keys of one section of a run file ("trainer", "data", "data.train (type: text)", ...).
struct OptionSection {
  std::string path;  // dotted path in the run file
  std::string title;  // what the section is, for help and docs (e.g. "source `text`")
  std::string help;
  OptionSpecs options;
};

// The sections the trainer reads itself, in file order: model, task, data, optimizer, schedule,
// trainer, logging. `task` and `data` list only the trainer's keys; the task's come from task_sections.
const std::vector<OptionSection>& trainer_sections();

// One task's sections: its `task` keys, its `data` keys and, for each source of the kind it reads,
// the keys of a data.train / data.eval section of that type. Throws for an unknown task.
std::vector<OptionSection> task_sections(const std::string& task);

// The schema a run file is checked against: the trainer's sections (task and data stay open: the
// task checks them with its own declarations).
Schema schema_of(const std::vector<OptionSection>& sections);

// `perceiver train --help-config`: every key with its type, default and help, per section.
std::string help_text(const std::vector<OptionSection>& sections);
// docs/run-files.md: the same as Markdown tables.
std::string markdown(const std::vector<OptionSection>& sections);
// Every section of this build: the trainer's, then each task's.
std::vector<OptionSection> all_sections();
// The sections one run file uses: the trainer's, its task's, and those of the sources its
// data.train and data.eval name.
std::vector<OptionSection> run_sections(const YAML::Node& root);

// The declaration of a dotted key of the trainer's sections ("trainer.batch_size"); throws
// std::logic_error for a key nobody declared (a programming error, not a user's).
const OptionSpec& trainer_option(const std::string& dotted_key);

// A declared key's default (for sections read with their own SectionReader, such as `data`).
template <typename T>
T declared_default(const std::string& dotted_key) {
  const auto& spec = trainer_option(dotted_key);
  if (spec.default_value.empty()) throw std::logic_error(dotted_key + " has no declared default");
  return YAML::Load(spec.default_value).as<T>();
}

// The run file's value at a declared dotted key, else its declared default.
template <typename T>
T option(const YAML::Node& root, const std::string& dotted_key) {
  const auto& spec = trainer_option(dotted_key);
  const auto node = lookup(root, dotted_key);
  if (node.IsDefined() && !node.IsNull()) return node.as<T>();
  if (spec.default_value.empty()) throw std::logic_error(dotted_key + " has no declared default: read it with option_or");
  return YAML::Load(spec.default_value).as<T>();
}

// For keys whose default depends on other settings (declared without one, the help says how).
template <typename T>
T option_or(const YAML::Node& root, const std::string& dotted_key, const T& computed_default) {
  const auto& spec = trainer_option(dotted_key);
  if (!spec.default_value.empty())
    throw std::logic_error(dotted_key + " declares the default " + spec.default_value + ": read it with option");
  const auto node = lookup(root, dotted_key);
  return node.IsDefined() && !node.IsNull() ? node.as<T>() : computed_default;
}

// Writes every declared default that the run file leaves out into `root` (the trainer's sections and
// the task's): the effective config.yaml then shows every setting the run used.
void fill_defaults(YAML::Node& root);

}  // namespace perceiver::trainers
