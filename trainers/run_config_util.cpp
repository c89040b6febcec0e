#include "trainers/run_config_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace perceiver::trainers {

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 2) + 1;
  for (const auto& c : candidates) {
    const size_t d = levenshtein(word, c);
    if (d < best_distance) best_distance = d, best = c;
  }
  return best;
}

namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!text.empty() && text.back() == sep) parts.emplace_back();
  return parts;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string describe(const YAML::Node& node) {
  if (node.IsMap()) return "a map";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

std::string type_name(const Schema& s) {
  switch (s.type) {
    case Schema::Type::Any: return "any";
    case Schema::Type::Int: return "int";
    case Schema::Type::Float: return "float";
    case Schema::Type::Bool: return "bool";
    case Schema::Type::String: return "string";
    case Schema::Type::List: return s.items ? "a list of " + type_name(*s.items) : "a list";
    case Schema::Type::Map: return "a map";
    case Schema::Type::Enum: return "one of " + join(s.allowed, ", ");
  }
  return "?";
}

template <typename T>
bool converts(const YAML::Node& node) {
  try {
    node.as<T>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

Schema parse_schema(const YAML::Node& node, const std::string& path) {
  Schema s;
  if (node.IsMap()) {
    s.type = Schema::Type::Map;
    for (const auto& kv : node) s.fields[kv.first.Scalar()] = parse_schema(kv.second, path + kv.first.Scalar() + ".");
    return s;
  }
  if (node.IsSequence()) {  // a list of values is an enum
    s.type = Schema::Type::Enum;
    for (const auto& v : node) s.allowed.push_back(v.Scalar());
    return s;
  }
  const std::string spec = node.IsScalar() ? trim(node.Scalar()) : "";
  const auto bracket = spec.find('[');
  const std::string head = spec.substr(0, bracket);
  std::string arg;
  if (bracket != std::string::npos) {
    if (spec.back() != ']') throw std::invalid_argument("schema: bad type '" + spec + "' at '" + path + "'");
    arg = spec.substr(bracket + 1, spec.size() - bracket - 2);
  }
  static const std::map<std::string, Schema::Type> kTypes = {
      {"any", Schema::Type::Any},   {"int", Schema::Type::Int},     {"float", Schema::Type::Float},
      {"bool", Schema::Type::Bool}, {"string", Schema::Type::String}, {"list", Schema::Type::List},
      {"map", Schema::Type::Map},   {"enum", Schema::Type::Enum}};
  const auto it = kTypes.find(head);
  if (it == kTypes.end()) {
    throw std::invalid_argument("schema: unknown type '" + spec + "' at '" + path.substr(0, path.size() - 1) + "'");
  }
  s.type = it->second;
  if (s.type == Schema::Type::Enum) {
    for (const auto& v : split(arg, ',')) {
      if (!trim(v).empty()) s.allowed.push_back(trim(v));
    }
    if (s.allowed.empty()) throw std::invalid_argument("schema: enum without values at '" + path + "'");
  } else if (s.type == Schema::Type::Map) {
    s.open = true;
    if (!arg.empty()) s.items = std::make_shared<Schema>(parse_schema(YAML::Node(arg), path));
  } else if (s.type == Schema::Type::List && !arg.empty()) {
    s.items = std::make_shared<Schema>(parse_schema(YAML::Node(arg), path));
  } else if (!arg.empty()) {
    throw std::invalid_argument("schema: type '" + head + "' takes no argument at '" + path + "'");
  }
  return s;
}

class Checker {
 public:
  explicit Checker(const RunConfig& config) : config_(config) {}

  void check(const YAML::Node& node, const Schema& schema, const std::string& path) {
    if (!node.IsDefined() || node.IsNull() || schema.type == Schema::Type::Any) return;
    switch (schema.type) {
      case Schema::Type::Map:
        if (!node.IsMap()) return wrong(node, schema, path);
        for (const auto& kv : node) {
          const std::string key = kv.first.Scalar();
          const std::string child = path.empty() ? key : path + "." + key;
          const auto field = schema.fields.find(key);
          if (field != schema.fields.end()) {
            check(kv.second, field->second, child);
          } else if (schema.open) {
            if (schema.items) check(kv.second, *schema.items, child);
          } else {
            unknown(kv.first, schema, path, key);
          }
        }
        return;
      case Schema::Type::List:
        if (!node.IsSequence()) return wrong(node, schema, path);
        if (schema.items) {
          for (size_t i = 0; i < node.size(); ++i) check(node[i], *schema.items, path + "[" + std::to_string(i) + "]");
        }
        return;
      case Schema::Type::Int:
        if (!node.IsScalar() || !converts<long long>(node)) wrong(node, schema, path);
        return;
      case Schema::Type::Float:
        if (!node.IsScalar() || !converts<double>(node)) wrong(node, schema, path);
        return;
      case Schema::Type::Bool:
        if (!node.IsScalar() || !converts<bool>(node)) wrong(node, schema, path);
        return;
      case Schema::Type::String:
        if (!node.IsScalar()) wrong(node, schema, path);
        return;
      case Schema::Type::Enum:
        if (!node.IsScalar() ||
            std::find(schema.allowed.begin(), schema.allowed.end(), node.Scalar()) == schema.allowed.end()) {
          std::string msg = where(node, path) + ": '" + path + "' must be " + type_name(schema) + ", found " +
                            describe(node);
          if (node.IsScalar()) {
            const auto guess = closest(node.Scalar(), schema.allowed);
            if (!guess.empty()) msg += " (did you mean '" + guess + "'?)";
          }
          problems_.push_back(msg);
        }
        return;
      case Schema::Type::Any:
        return;
    }
  }

  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::string where(const YAML::Node& node, const std::string& path) const {
    // Values set by an override carry the override's marks, which mean nothing in the file.
    for (const auto& [key, assignment] : config_.overridden) {
      if (path == key || path.rfind(key + ".", 0) == 0 || path.rfind(key + "[", 0) == 0) {
        return "override '" + assignment + "'";
      }
    }
    const auto mark = node.Mark();
    if (mark.is_null()) return config_.source;
    return config_.source + ":" + std::to_string(mark.line + 1);
  }

  void wrong(const YAML::Node& node, const Schema& schema, const std::string& path) {
    problems_.push_back(where(node, path) + ": '" + (path.empty() ? "<root>" : path) + "' must be " +
                        type_name(schema) + ", found " + describe(node));
  }

  void unknown(const YAML::Node& key_node, const Schema& schema, const std::string& parent, const std::string& key) {
    const std::string full = parent.empty() ? key : parent + "." + key;
    std::vector<std::string> valid;
    for (const auto& kv : schema.fields) valid.push_back(kv.first);
    std::string msg = where(key_node, full) + ": unknown key '" + full + "'";
    const auto guess = closest(key, valid);
    if (!guess.empty()) {
      msg += " (did you mean '" + (parent.empty() ? guess : parent + "." + guess) + "'?)";
    } else if (!valid.empty()) {
      msg += " (valid keys" + std::string(parent.empty() ? "" : " under '" + parent + "'") + ": " + join(valid, ", ") + ")";
    }
    problems_.push_back(msg);
  }

  const RunConfig& config_;
  std::vector<std::string> problems_;
};

}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(join(problems, "\n")), problems_(std::move(problems)) {}

RunConfig parse_run_config(const std::string& yaml_text, const std::string& source) {
  RunConfig config;
  config.source = source;
  try {
    config.root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError({source + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                       ": YAML syntax error: " + e.msg});
  }
  if (!config.root.IsDefined() || config.root.IsNull()) config.root.reset(YAML::Node(YAML::NodeType::Map));
  if (!config.root.IsMap()) throw ConfigError({source + ": a run file must be a map of settings, found " + describe(config.root)});
  return config;
}

RunConfig load_run_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError({file.string() + ": cannot open run file"});
  std::stringstream text;
  text << in.rdbuf();
  return parse_run_config(text.str(), file.string());
}

namespace {

// A copy without source marks: a mark of the parsed override text ("line 1") would be read as a
// line of the run file. SectionReader names command-line values by their null mark instead.
YAML::Node without_marks(const YAML::Node& node) {
  YAML::Node out(node.Type());
  if (node.IsScalar()) out = node.Scalar();
  if (node.IsSequence())
    for (const auto& item : node) out.push_back(without_marks(item));
  if (node.IsMap())
    for (const auto& kv : node) out[kv.first.Scalar()] = without_marks(kv.second);
  out.SetTag(node.Tag());  // keeps quoted scalars ("!") strings
  return out;
}

}  // namespace

void apply_override(RunConfig& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos) throw ConfigError({"override '" + assignment + "': expected KEY=VALUE"});
  const std::string key = trim(assignment.substr(0, eq));
  const auto parts = split(key, '.');
  if (key.empty() || std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) {
    throw ConfigError({"override '" + assignment + "': bad key '" + key + "' (expected a.b.c)"});
  }
  YAML::Node value;
  try {
    value = without_marks(YAML::Load(assignment.substr(eq + 1)));
  } catch (const YAML::ParserException& e) {
    throw ConfigError({"override '" + assignment + "': invalid YAML value: " + e.msg});
  }
  YAML::Node cur(config.root);  // copies share the node; reset() re-binds, operator= would overwrite
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const YAML::Node& ccur = cur;
    const YAML::Node existing = ccur[parts[i]];
    if (!existing.IsDefined() || existing.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
    } else if (!existing.IsMap()) {
      std::vector<std::string> prefix(parts.begin(), parts.begin() + i + 1);
      throw ConfigError({"override '" + assignment + "': '" + join(prefix, ".") + "' is " + describe(existing) +
                         ", not a map"});
    }
    YAML::Node next = cur[parts[i]];
    cur.reset(next);
  }
  cur[parts.back()] = value;
  config.overridden[key] = assignment;
}

void apply_overrides(RunConfig& config, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(config, a);
}

YAML::Node lookup(const YAML::Node& root, const std::string& dotted_key) {
  YAML::Node cur(root);
  for (const auto& part : split(dotted_key, '.')) {
    if (!cur.IsDefined() || !cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node& ccur = cur;
    const YAML::Node next = ccur[part];
    if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    cur.reset(next);
  }
  return cur;
}

SectionReader::SectionReader(YAML::Node section, std::string source, std::string path)
    : section_(std::move(section)), source_(std::move(source)), path_(std::move(path)) {
  if (section_.IsDefined() && !section_.IsNull() && !section_.IsMap()) {
    const auto mark = section_.Mark();
    throw ConfigError({source_ + (mark.is_null() ? "" : ":" + std::to_string(mark.line + 1)) + ": '" + path_ +
                       "' must be a map, found " + describe(section_)});
  }
}

bool SectionReader::has(const std::string& key) const {
  const YAML::Node value = node(key);
  return value.IsDefined() && !value.IsNull();
}

YAML::Node SectionReader::node(const std::string& key) const {
  if (!section_.IsDefined() || !section_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& section = section_;
  const YAML::Node value = section[key];
  return value.IsDefined() ? value : YAML::Node(YAML::NodeType::Undefined);
}

void SectionReader::fail(const std::string& key, const std::string& what) const {
  const YAML::Node value = node(key);
  const auto mark = value.IsDefined() ? value.Mark() : section_.Mark();
  // Only values set by a command-line override have no mark (see apply_override).
  const std::string where = mark.is_null() ? " (command-line override)" : ":" + std::to_string(mark.line + 1);
  throw ConfigError({source_ + where + ": '" + key_path(key) + "' " + what});
}

std::vector<std::pair<std::string, double>> SectionReader::pattern_map(const std::string& key,
                                                                      const char* value_name) const {
  std::vector<std::pair<std::string, double>> out;
  if (!has(key)) return out;
  const YAML::Node map = node(key);
  if (!map.IsMap()) fail(key, std::string("must be a map of pattern -> ") + value_name);
  for (const auto& kv : map) {
    try {
      out.emplace_back(kv.first.as<std::string>(), kv.second.as<double>());
    } catch (const YAML::Exception&) {
      fail(key, std::string("must map each pattern to ") + value_name + ", found '" + kv.first.Scalar() + "' -> " +
                    (kv.second.IsScalar() ? "'" + kv.second.Scalar() + "'" : "a collection"));
    }
  }
  return out;
}

Schema Schema::from_yaml(const std::string& text) {
  try {
    return parse_schema(YAML::Load(text), "");
  } catch (const YAML::ParserException& e) {
    throw std::invalid_argument("schema: YAML syntax error at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

void check_schema(const RunConfig& config, const Schema& schema) {
  Checker checker(config);
  checker.check(config.root, schema, "");
  if (!checker.problems().empty()) throw ConfigError(checker.problems());
}

size_t levenshtein(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string yaml_text(double value) {
  auto text = fmt::format("{}", value);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";  // stays a float when read back
  return text;
}

std::string yaml_text(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + yaml_text(values[i]);
  return out + "]";
}

std::string to_yaml(const YAML::Node& root) {
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

void write_yaml(const YAML::Node& root, const std::filesystem::path& file) {
  const auto tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(file.string() + ": cannot write config");
    out << to_yaml(root);
    if (!out.flush()) throw std::runtime_error(file.string() + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) throw std::runtime_error(file.string() + ": cannot rename from " + tmp + ": " + ec.message());
}

}  // namespace perceiver::trainers
