#include "datasets/labelled_text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "datasets/fortunes.h"
#include "datasets/labelled_text_index.h"
#include "datasets/sources.h"
#include "perceiver/io/json_io.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

std::vector<int64_t> LabelledText::label_counts() const {
  std::vector<int64_t> counts(id2label.size(), 0);
  for (const int64_t l : labels) ++counts.at(l);
  return counts;
}

LabelledText make_labelled(std::vector<std::string> texts, const std::vector<std::string>& label_names) {
  if (texts.size() != label_names.size())
    throw std::invalid_argument("make_labelled: " + std::to_string(texts.size()) + " texts but " +
                                std::to_string(label_names.size()) + " labels");
  LabelledText out;
  const std::set<std::string> names(label_names.begin(), label_names.end());
  out.id2label.assign(names.begin(), names.end());
  for (size_t i = 0; i < out.id2label.size(); ++i) out.label2id[out.id2label[i]] = static_cast<int64_t>(i);
  out.labels.reserve(label_names.size());
  for (const auto& n : label_names) out.labels.push_back(out.label2id.at(n));
  out.texts = std::move(texts);
  out.label_names = label_names;
  return out;
}

MultiLabelTargets multi_label_targets(const std::vector<std::string>& raw, const std::string& separator,
                                      const std::string& source, std::vector<std::string> id2label) {
  if (separator.empty()) throw std::invalid_argument(source + ": the label separator must not be empty");
  auto split = [&](const std::string& field) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= field.size()) {
      const size_t end = std::min(field.find(separator, start), field.size());
      auto part = field.substr(start, end - start);
      const auto first = part.find_first_not_of(" \t"), last = part.find_last_not_of(" \t");
      if (first != std::string::npos) parts.push_back(part.substr(first, last - first + 1));
      start = end + separator.size();
    }
    return parts;
  };
  std::vector<std::vector<std::string>> rows;
  rows.reserve(raw.size());
  for (const auto& field : raw) rows.push_back(split(field));
  const bool fixed = !id2label.empty();
  if (!fixed) {
    std::set<std::string> names;
    for (const auto& row : rows) names.insert(row.begin(), row.end());
    id2label.assign(names.begin(), names.end());
  }
  std::map<std::string, int64_t> ids;
  for (size_t i = 0; i < id2label.size(); ++i) ids[id2label[i]] = static_cast<int64_t>(i);
  MultiLabelTargets out;
  out.targets = torch::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(id2label.size())});
  auto acc = out.targets.accessor<float, 2>();
  for (size_t r = 0; r < rows.size(); ++r) {
    for (const auto& name : rows[r]) {
      const auto it = ids.find(name);
      if (it == ids.end())
        throw std::runtime_error(source + ": row " + std::to_string(r + 1) + ": label '" + name +
                                 "' is not among the training labels");
      acc[static_cast<int64_t>(r)][it->second] = 1.0f;
    }
  }
  out.id2label = std::move(id2label);
  return out;
}

torch::Tensor regression_targets(const std::vector<std::string>& raw, const std::string& source) {
  std::vector<float> values;
  values.reserve(raw.size());
  for (size_t r = 0; r < raw.size(); ++r) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(raw[r], &used);
    } catch (const std::exception&) {
      used = 0;
    }
    while (used < raw[r].size() && std::isspace(static_cast<unsigned char>(raw[r][used]))) ++used;
    if (used == 0 || used != raw[r].size() || !std::isfinite(v))
      throw std::runtime_error(source + ": row " + std::to_string(r + 1) + ": regression label '" + raw[r] +
                               "' is not a finite number");
    values.push_back(static_cast<float>(v));
  }
  return torch::tensor(values, torch::kFloat);
}

LabelledText read_labelled_text(const fs::path& path, const LabelledReadOptions& options) {
  const auto rows = open_labelled_text(path, options);
  std::vector<std::string> texts;
  texts.reserve(static_cast<size_t>(rows.size()));
  for (int64_t i = 0; i < rows.size(); ++i) texts.push_back(rows.texts->text(i));
  LabelledText out = make_labelled(std::move(texts), rows.label_names);
  out.skipped = rows.skipped;
  return out;
}

// ---- sources (datasets/sources.h) ----
namespace {

LabelledTexts fortunes_source(SourceOptions& s, const std::string&) {
  FortuneLangIdOptions o;
  o.max_bytes = static_cast<size_t>(s.get_int("max_bytes"));
  o.min_bytes = static_cast<size_t>(s.get_int("min_bytes"));
  o.validation_fraction = s.get_double("validation_fraction");
  o.test_fraction = s.get_double("test_fraction");
  o.balance = s.get_bool("balance");
  o.split_seed = static_cast<uint64_t>(s.get_int("split_seed"));
  const auto split = s.has("split") ? s.get_string("split") : s.is_train() ? "train" : "validation";
  if (split != "train" && split != "validation" && split != "test")
    s.fail("split", "must be train, validation or test, found '" + split + "'");
  auto splits = fortune_language_id(o);
  return LabelledTexts::in_memory(
      std::move(split == "train" ? splits.train : split == "validation" ? splits.validation : splits.test));
}

LabelledTexts labelled_text_source(SourceOptions& s, const std::string& label_separator) {
  LabelledReadOptions o;
  o.text_field = s.get_string("text_field");
  o.label_field = s.get_string("label_field");
  o.list_separator = label_separator;  // JSONL label lists are split again on it
  auto out = open_labelled_text(s.required("path"), o);
  if (out.skipped > 0) spdlog::warn("{}: skipped {} malformed rows", s.path(), out.skipped);
  return out;
}

}  // namespace

const SourceRegistry<LabelledTextSource>& labelled_text_sources() {
  static const SourceRegistry<LabelledTextSource> registry = {
      {"fortunes",
       {fortunes_source,
        "language identification: Debian's fortune files in several languages, cut into sentence pieces, in memory",
        {{"split", "enum[train, validation, test]", "",
          "the pieces read; default train for data.train, validation otherwise"},
         {"max_bytes", "int", "256", "fortunes are cut at sentence ends into pieces of at most this many bytes"},
         {"min_bytes", "int", "24", "pieces shorter than this many bytes are dropped"},
         {"validation_fraction", "float", "0.1", "share of each language's pieces in the validation split"},
         {"test_fraction", "float", "0.1", "share of each language's pieces in the test split"},
         {"balance", "bool", "false", "cap every language at the smallest language's count (per split)"},
         {"split_seed", "int", "0", "seed of the deterministic train/validation/test split"}}}},
      {"labelled_text",
       {labelled_text_source, "labelled texts from a CSV, TSV or JSONL file (format from the extension), read row by row",
        {{"path", "string", "", "the CSV, TSV or JSONL file", true},
         {"text_field", "string", "text",
          "the column (header name, or 0-based index without header) or JSON key that holds the text"},
         {"label_field", "string", "label",
          "the column or JSON key that holds the label (a name, a label list or a number, as task.problem_type says)"}}}},
  };
  return registry;
}

}  // namespace perceiver::datasets
