// Typed reads of a run-file section for the tasks, with file:line errors (SectionReader) and an
// unknown-key check: every key a task does not read is reported, so typos never pass silently.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "datasets/sources.h"
#include "trainers/run_config_util.h"

namespace perceiver::trainers {

class TaskSection {
 public:
  TaskSection(const YAML::Node& node, const std::string& source, const std::string& path)
      : reader_(node, source, path), node_(node), source_(source) {}

  template <typename T>
  T get(const std::string& key, const T& fallback) {
    used_.insert(key);
    return reader_.get<T>(key, fallback, type_name<T>());
  }
  std::string required(const std::string& key) {
    if (!reader_.has(key)) reader_.fail(key, "is required");
    return get<std::string>(key, "");
  }
  YAML::Node node(const std::string& key) {
    used_.insert(key);
    return reader_.node(key);
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const { reader_.fail(key, what); }
  const std::string& source() const { return source_; }
  std::string key_path(const std::string& key) const { return reader_.key_path(key); }

  // Throws for the first key that was never read, listing the keys this section accepts.
  void finish() const {
    if (!node_.IsDefined() || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const auto key = kv.first.as<std::string>();
      if (used_.count(key)) continue;
      const std::vector<std::string> known(used_.begin(), used_.end());
      const auto guess = closest(key, known);
      reader_.fail(key, "is not a known key here (" + (guess.empty() ? "" : "did you mean '" + guess + "'? ") +
                            "known: " + join(known, ", ") + ")");
    }
  }

 private:
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
  std::set<std::string> used_;
};

// A data source's section (data.train / data.eval) as datasets::SourceOptions: the sources in
// datasets/sources.h read it with the task section's typed reads, file:line errors and unknown-key check.
class SourceSection final : public datasets::SourceOptions {
 public:
  SourceSection(const YAML::Node& node, const std::string& source, const std::string& path)
      : section_(node, source, path), path_(path) {}
  std::string get_string(const std::string& key, const std::string& fallback) override {
    return section_.get<std::string>(key, fallback);
  }
  int64_t get_int(const std::string& key, int64_t fallback) override { return section_.get<int64_t>(key, fallback); }
  double get_double(const std::string& key, double fallback) override { return section_.get<double>(key, fallback); }
  bool get_bool(const std::string& key, bool fallback) override { return section_.get<bool>(key, fallback); }
  std::vector<double> get_doubles(const std::string& key, const std::vector<double>& fallback) override {
    return section_.get<std::vector<double>>(key, fallback);
  }
  std::string required(const std::string& key) override { return section_.required(key); }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const override { section_.fail(key, what); }
  const std::string& path() const override { return path_; }
  // Task-level keys of the same section (e.g. `limit`) and the final unknown-key check.
  TaskSection& section() { return section_; }

 private:
  TaskSection section_;
  std::string path_;
};

// Keys of the `data` section that the trainer reads for its loaders; every task's data section accepts them.
inline const std::vector<std::string>& loader_data_keys() {
  static const std::vector<std::string> keys = {"workers", "prefetch", "on_bad_example"};
  return keys;
}

// The `data` section as a task reads it, the loader's keys already accounted for.
inline TaskSection data_section(const YAML::Node& data, const std::string& source) {
  TaskSection d(data, source, "data");
  for (const auto& key : loader_data_keys()) d.node(key);
  return d;
}

// The `data` section of tasks whose only keys are `train` and `eval` (each read by the task).
inline void check_train_eval_section(const YAML::Node& data, const std::string& source) {
  TaskSection d = data_section(data, source);
  d.node("train");
  d.node("eval");
  d.finish();
}

}  // namespace perceiver::trainers
