// Run-file keys declared once: each key's type, default, allowed values and one line of help. The
// trainer's sections, the tasks, the optimizers, the schedules and the data sources each declare
// theirs in this form (through their registries); the schema check, the defaults, the effective
// config, `perceiver train --help-config` and docs/run-files.md are all read from the declarations.
#pragma once

#include <string>
#include <vector>

namespace perceiver::datasets {

struct OptionSpec {
  std::string key;  // within its section: "seq_len", "max_steps"
  // int, float, bool, string, list, list[int|float|string], map, any, or enum[a, b, c]
  std::string type;
  // The default as YAML text. Empty: none, the key is required (`required`) or its default depends on
  // other settings, as `help` says.
  std::string default_value;
  std::string help;
  bool required = false;
};

using OptionSpecs = std::vector<OptionSpec>;

// The declaration of `key` in `specs`, or nullptr.
inline const OptionSpec* find_option(const OptionSpecs& specs, const std::string& key) {
  for (const auto& s : specs)
    if (s.key == key) return &s;
  return nullptr;
}

}  // namespace perceiver::datasets
