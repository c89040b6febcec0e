// YAML run files: load with line numbers, dotted command-line overrides, schema checking with
// "did you mean" suggestions, and writing the effective config next to the run.
#pragma once

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace perceiver::trainers {

// All problems found in a config, one "where: what" line each.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

struct RunConfig {
  YAML::Node root;
  std::string source;  // file the config came from ("<string>" when parsed from text)
  std::map<std::string, std::string> overridden;  // dotted key -> the override that set it
};

// Throws ConfigError naming the file (and line:column for syntax errors).
RunConfig load_run_config(const std::filesystem::path& file);
RunConfig parse_run_config(const std::string& yaml_text, const std::string& source = "<string>");

// "a.b.c=value": value is parsed as YAML (scalar, [flow, list] or {flow: map}); missing maps are
// created. Throws ConfigError for a malformed assignment or a path through a non-map value.
void apply_override(RunConfig& config, const std::string& assignment);
void apply_overrides(RunConfig& config, const std::vector<std::string>& assignments);

// The node at a dotted path, or an invalid/undefined node (check with IsDefined()) when absent.
YAML::Node lookup(const YAML::Node& root, const std::string& dotted_key);

// The value at a dotted path as T, or `fallback` when the key is absent or null.
template <typename T>
T lookup_value(const YAML::Node& root, const std::string& dotted_key, const T& fallback) {
  const auto node = lookup(root, dotted_key);
  return node.IsDefined() && !node.IsNull() ? node.as<T>() : fallback;
}

// Typed reads from one section of a run file; errors name the file, line and dotted key.
class SectionReader {
 public:
  SectionReader(YAML::Node section, std::string source, std::string path);

  bool has(const std::string& key) const;  // present and not null
  YAML::Node node(const std::string& key) const;
  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  // `fallback` when absent or null; ConfigError "SOURCE:LINE: 'path.key' must be TYPE, found ..." otherwise.
  template <typename T>
  T get(const std::string& key, const T& fallback, const char* type_name) const;
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  // A map of name pattern -> float in file order (lr_multipliers, init_std); {} when absent.
  std::vector<std::pair<std::string, double>> pattern_map(const std::string& key, const char* value_name) const;

 private:
  YAML::Node section_;
  std::string source_, path_;
};

// Expected shape of a config. Leaves are typed; a map either lists its known keys or, when
// `open`, accepts any key (each value checked against `items` if set).
struct Schema {
  enum class Type { Any, Int, Float, Bool, String, List, Map, Enum };
  Type type = Type::Any;
  std::vector<std::string> allowed;       // Enum
  std::map<std::string, Schema> fields;   // Map with known keys
  bool open = false;                      // Map accepting any key
  std::shared_ptr<Schema> items;          // List element / open Map value type

  // From YAML text: a map of keys whose leaves are type names: any, int, float, bool, string,
  // list, list[TYPE], map (any keys), enum[a, b, c]. Throws std::invalid_argument on bad syntax.
  static Schema from_yaml(const std::string& text);
};

// Collects every unknown key and wrong type (null values are accepted as "unset") and throws one
// ConfigError: "FILE:LINE: unknown key 'a.b' (did you mean 'a.c'?)", "FILE:LINE: 'a.n' must be int, found 'x'".
void check_schema(const RunConfig& config, const Schema& schema);

size_t levenshtein(const std::string& a, const std::string& b);
// The candidate within a plausible typo distance of `word`, else "".
std::string closest(const std::string& word, const std::vector<std::string>& candidates);
std::string join(const std::vector<std::string>& items, const std::string& sep);

// A value as one line of YAML (flow style, quoted where YAML needs it): declared defaults.
template <typename T>
std::string yaml_text(const T& value) {
  YAML::Emitter out;
  out << YAML::Flow << value;
  return out.c_str();
}
// Numbers as the shortest text that reads back the same (0.001, not 0.0010000000000000000208).
std::string yaml_text(double value);
std::string yaml_text(const std::vector<double>& values);

// The effective config as YAML text / into a file (written to a temporary name, then renamed).
std::string to_yaml(const YAML::Node& root);
void write_yaml(const YAML::Node& root, const std::filesystem::path& file);

template <typename T>
T SectionReader::get(const std::string& key, const T& fallback, const char* type_name) const {
  if (!has(key)) return fallback;
  const YAML::Node value = node(key);
  try {
    return value.as<T>();
  } catch (const YAML::Exception&) {
    const std::string found = value.IsScalar() ? "'" + value.Scalar() + "'" : value.IsMap() ? "a map" : "a list";
    fail(key, std::string("must be ") + type_name + ", found " + found);
  }
}

}  // namespace perceiver::trainers
