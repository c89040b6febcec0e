// Typed reads of a run-file section for the tasks, with file:line errors (SectionReader), defaults
// from the section's declared keys (datasets::OptionSpec) and an unknown-key check: every key that is
// not declared is reported, so typos never pass silently.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "datasets/option_spec.h"
#include "datasets/sources.h"
#include "trainers/run_config_util.h"

namespace perceiver::trainers {

class TaskSection {
 public:
  TaskSection(const YAML::Node& node, const std::string& source, const std::string& path,
              const datasets::OptionSpecs& declared);

  // The run file's value, else the declared default ("is required" for an absent required key).
  // Reading an undeclared key, or an absent one declared without a default, is a std::logic_error.
  template <typename T>
  T get(const std::string& key) {
    const auto& spec = declaration(key);
    if (reader_.has(key)) return reader_.get<T>(key, T{}, type_name<T>());
    if (spec.required) reader_.fail(key, "is required");
    if (spec.default_value.empty())
      throw std::logic_error(key_path(key) + " has no declared default: read it with has() or get(key, fallback)");
    return parse_default<T>(spec);
  }
  // For a key whose default depends on other settings (declared without one): the run file's value,
  // else `fallback`. A key with a declared default is read with get(key), so no default is written twice.
  template <typename T>
  T get(const std::string& key, const T& fallback) {
    const auto& spec = declaration(key);
    if (!spec.default_value.empty())
      throw std::logic_error(key_path(key) + " is declared with default '" + spec.default_value +
                             "': read it with get(key)");
    return reader_.get<T>(key, fallback, type_name<T>());
  }
  bool has(const std::string& key) const;  // declared, present and not null
  std::string required(const std::string& key);
  YAML::Node node(const std::string& key) const;  // a declared key's value as written
  // More keys for this section (a data source's, once its `type` is known); a key declared again is kept as first declared.
  void declare(const datasets::OptionSpecs& specs);
  const datasets::OptionSpecs& declared() const { return declared_; }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const { reader_.fail(key, what); }
  const std::string& source() const { return source_; }
  std::string key_path(const std::string& key) const { return reader_.key_path(key); }

  // Throws one ConfigError naming every key of the section that is not declared, each with the closest
  // declared key and the list of them.
  void finish() const;

 private:
  const datasets::OptionSpec& declaration(const std::string& key) const;

  template <typename T>
  T parse_default(const datasets::OptionSpec& spec) const {
    try {
      return YAML::Load(spec.default_value).as<T>();
    } catch (const YAML::Exception&) {
      throw std::logic_error(key_path(spec.key) + ": declared default '" + spec.default_value + "' is not " +
                             type_name<T>());
    }
  }

  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else return "a list";
  }

  SectionReader reader_;
  YAML::Node node_;
  std::string source_;
  datasets::OptionSpecs declared_;
};

// A data source's section (data.train / data.eval) as datasets::SourceOptions: the sources in
// datasets/sources.h read it with the task section's typed reads, file:line errors and unknown-key
// check. Its keys: `type`, the chosen source's (declared by find_source) and the task's own
// (TaskInfo::source_options, e.g. image classification's `limit`, read through section()).
class SourceSection final : public datasets::SourceOptions {
 public:
  SourceSection(const YAML::Node& node, const std::string& source, const std::string& path,
                const datasets::OptionSpecs& task_options = {});
  std::string get_string(const std::string& key) override { return section_.get<std::string>(key); }
  int64_t get_int(const std::string& key) override { return section_.get<int64_t>(key); }
  double get_double(const std::string& key) override { return section_.get<double>(key); }
  bool get_bool(const std::string& key) override { return section_.get<bool>(key); }
  std::vector<double> get_doubles(const std::string& key) override { return section_.get<std::vector<double>>(key); }
  bool has(const std::string& key) override { return section_.has(key); }
  std::string required(const std::string& key) override { return section_.required(key); }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const override { section_.fail(key, what); }
  const std::string& path() const override { return path_; }
  void declare(const datasets::OptionSpecs& specs) override { section_.declare(specs); }
  // Task-level keys of the same section (e.g. `limit`) and the final unknown-key check.
  TaskSection& section() { return section_; }

 private:
  TaskSection section_;
  std::string path_;
};

// The key every source section has: which source of the kind reads it.
datasets::OptionSpec source_type_option();

// data.train and data.eval of a task whose sources are of `kind` (`sources`: their names): each a
// source section, `type:` one of them with that source's keys.
datasets::OptionSpecs train_eval_options(const std::string& kind, const std::vector<std::string>& sources);

// Keys of the `data` section that the trainer reads for its loaders; every task's data section accepts
// them (the trainer declares their types and defaults).
inline const std::vector<std::string>& loader_data_keys() {
  static const std::vector<std::string> keys = {"workers", "prefetch", "on_bad_example"};
  return keys;
}

// The `data` section as a task reads it: the task's keys (TaskInfo::data_options) and the loader's.
TaskSection data_section(const YAML::Node& data, const std::string& source, const datasets::OptionSpecs& data_options);

}  // namespace perceiver::trainers
