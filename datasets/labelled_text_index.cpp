#include "datasets/labelled_text_index.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "datasets/common.h"
#include "datasets/csv.h"
#include "datasets/file_store.h"
#include "datasets/loader.h"
#include "perceiver/io/json_io.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

constexpr size_t kChunk = size_t{1} << 20;
constexpr size_t kMaxRow = size_t{64} << 20;  // longer is no text row but, most likely, an unclosed quote

struct Row {
  int64_t offset;
  int64_t length;
};

class MemoryTextRows : public TextRows {
 public:
  explicit MemoryTextRows(std::vector<std::string> texts) : texts_(std::move(texts)) {}
  int64_t size() const override { return static_cast<int64_t>(texts_.size()); }
  std::string text(int64_t index) const override { return texts_.at(static_cast<size_t>(index)); }

 private:
  std::vector<std::string> texts_;
};

// Rows of one file, parsed again from their bytes when asked for.
class FileTextRows : public TextRows {
 public:
  FileTextRows(FileStamp file, std::vector<Row> rows, bool jsonl, char delimiter, int64_t text_column, std::string field)
      : file_(std::move(file)), rows_(std::move(rows)), jsonl_(jsonl), delimiter_(delimiter), column_(text_column),
        field_(std::move(field)) {}
  int64_t size() const override { return static_cast<int64_t>(rows_.size()); }
  std::string text(int64_t index) const override {
    const auto& row = rows_.at(static_cast<size_t>(index));
    std::string bytes(static_cast<size_t>(row.length), '\0');
    read_stamped(file_, row.offset, row.length, bytes.data());
    if (jsonl_) {
      const auto j = parse_json_or_discard(bytes);
      if (!j.is_object() || !j.contains(field_) || !j[field_].is_string())
        throw BadExample(file_.path, "row at byte " + std::to_string(row.offset) + " is no longer what was indexed");
      return j[field_].get<std::string>();
    }
    const auto fields = parse_delimited(bytes, delimiter_);
    if (fields.size() != 1 || static_cast<int64_t>(fields[0].size()) <= column_)
      throw BadExample(file_.path, "row at byte " + std::to_string(row.offset) + " is no longer what was indexed");
    return fields[0][static_cast<size_t>(column_)];
  }

 private:
  FileStamp file_;
  std::vector<Row> rows_;
  bool jsonl_;
  char delimiter_;
  int64_t column_;
  std::string field_;
};

// Finds where rows end as parse_delimited splits them: at a '\n' outside quotes. A quote opens only at
// the start of a field; inside quotes a doubled quote is a literal one.
class CsvRowEnds {
 public:
  explicit CsvRowEnds(char delimiter) : delimiter_(delimiter) {}
  // Whether byte c ends the current row.
  bool feed(char c) {
    if (quote_pending_) {
      quote_pending_ = false;
      if (c == '"') return false;  // a doubled quote: still inside
      in_quotes_ = false;
    } else if (cr_pending_) {
      cr_pending_ = false;
      if (c != '\n') at_field_start_ = false;  // that '\r' was text
    }
    if (in_quotes_) {
      if (c == '"') quote_pending_ = true;
      return false;
    }
    if (c == '"' && at_field_start_) {
      in_quotes_ = true;
      at_field_start_ = false;
    } else if (c == delimiter_ || c == '\n') {
      at_field_start_ = true;
      return c == '\n';
    } else if (c == '\r') {
      cr_pending_ = true;
    } else {
      at_field_start_ = false;
    }
    return false;
  }
  bool unterminated() const { return in_quotes_ && !quote_pending_; }

 private:
  char delimiter_;
  bool in_quotes_ = false, quote_pending_ = false, cr_pending_ = false, at_field_start_ = true;
};

// Calls on_row(offset, bytes) for every row of `path` (CSV rows, or JSONL lines), reading in chunks.
template <typename OnRow>
void scan_rows(const fs::path& path, bool jsonl, char delimiter, OnRow&& on_row) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open file '" + path.string() + "'");
  std::vector<char> buffer(kChunk);
  CsvRowEnds csv(delimiter);
  std::string row;
  int64_t row_start = 0, pos = 0, rows = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    for (size_t i = 0; i < got; ++i, ++pos) {
      const char c = buffer[i];
      if (jsonl ? c == '\n' : csv.feed(c)) {
        rows += on_row(row_start, row);
        row.clear();
        row_start = pos + 1;
      } else {
        row += c;
        if (row.size() > kMaxRow)
          throw std::runtime_error("'" + path.string() + "': row " + std::to_string(rows + 1) + " (at byte " +
                                   std::to_string(row_start) + ") is longer than 64 MB" +
                                   (jsonl ? "" : ": is a quoted field left open?"));
      }
    }
  }
  if (in.bad()) throw std::runtime_error("error while reading file '" + path.string() + "'");
  if (!jsonl && csv.unterminated())
    throw std::runtime_error("'" + path.string() + "': unterminated quoted field in row " + std::to_string(rows + 1));
  if (!row.empty()) on_row(row_start, row);
}

// A JSON label as text: strings as they are, numbers and booleans as JSON writes them, a list of
// those joined with `separator` (multi-label); anything else is "" (the row is skipped).
std::string label_text(const nlohmann::json& v, const std::string& separator) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  if (v.is_array() && !v.empty()) {
    std::string out;
    for (const auto& item : v) {
      if (item.is_array() || item.is_object()) return {};
      const auto part = label_text(item, separator);
      if (part.empty()) return {};
      out += (out.empty() ? "" : separator) + part;
    }
    return out;
  }
  return {};
}

int64_t column_index(const std::vector<std::string>& header, const std::string& name, bool has_header,
                     const fs::path& path) {
  if (has_header) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) {
      std::string cols;
      for (const auto& h : header) cols += (cols.empty() ? "" : ", ") + h;
      throw std::runtime_error("'" + path.string() + "': no column '" + name + "' (columns: " + cols + ")");
    }
    return it - header.begin();
  }
  try {
    size_t used = 0;
    const int64_t idx = std::stoll(name, &used);
    if (used == name.size() && idx >= 0) return idx;
  } catch (const std::exception&) {
  }
  throw std::runtime_error("'" + path.string() + "': without a header the field '" + name +
                           "' must be a 0-based column index");
}

}  // namespace

LabelledTexts LabelledTexts::in_memory(LabelledText text) {
  LabelledTexts out;
  out.texts = std::make_shared<MemoryTextRows>(std::move(text.texts));
  out.labels = std::move(text.labels);
  out.label_names = std::move(text.label_names);
  out.id2label = std::move(text.id2label);
  out.skipped = text.skipped;
  return out;
}

LabelledTexts open_labelled_text(const fs::path& path, const LabelledReadOptions& options) {
  const auto stamp = FileStamp::of(path);
  const bool jsonl = path.extension() == ".jsonl";
  const char delimiter = options.delimiter != 0 ? options.delimiter : (path.extension() == ".tsv" ? '\t' : ',');
  LabelledTexts out;
  std::vector<Row> rows;
  bool header_pending = !jsonl && options.header;
  int64_t text_column = -1, label_column = -1;
  if (!jsonl && !options.header) {
    text_column = column_index({}, options.text_field, false, path);
    label_column = column_index({}, options.label_field, false, path);
  }
  scan_rows(path, jsonl, delimiter, [&](int64_t offset, const std::string& bytes) -> int64_t {
    const auto length = static_cast<int64_t>(bytes.size());
    if (jsonl) {
      if (bytes.find_first_not_of(" \t\r") == std::string::npos) return 1;
      const auto obj = is_valid_utf8(bytes) ? parse_json_or_discard(bytes) : nlohmann::json();
      const auto label = obj.is_object() && obj.contains(options.label_field)
                             ? label_text(obj[options.label_field], options.list_separator)
                             : std::string();
      if (!obj.is_object() || !obj.contains(options.text_field) || !obj[options.text_field].is_string() || label.empty()) {
        ++out.skipped;
        return 1;
      }
      rows.push_back({offset, length});
      out.label_names.push_back(label);
      return 1;
    }
    auto parsed = parse_delimited(bytes, delimiter);
    if (parsed.empty()) return 0;  // a blank line is no row
    auto& row = parsed.front();
    if (header_pending) {
      header_pending = false;
      text_column = column_index(row, options.text_field, true, path);
      label_column = column_index(row, options.label_field, true, path);
      return 1;
    }
    const auto ti = static_cast<size_t>(text_column), li = static_cast<size_t>(label_column);
    if (row.size() <= std::max(ti, li) || row[li].empty() || !is_valid_utf8(row[ti]) || !is_valid_utf8(row[li])) {
      ++out.skipped;
      return 1;
    }
    rows.push_back({offset, length});
    out.label_names.push_back(std::move(row[li]));
    return 1;
  });
  if (header_pending) throw std::runtime_error("'" + path.string() + "': empty file, expected a header row");
  if (FileStamp::of(path) != stamp)
    throw std::runtime_error("'" + path.string() + "' changed while it was being read; read it again once it is complete");
  out.texts = std::make_shared<FileTextRows>(stamp, std::move(rows), jsonl, delimiter, text_column, options.text_field);
  auto labels = sorted_ids(out.label_names);
  out.id2label = std::move(labels.names);
  out.labels = std::move(labels.ids);
  return out;
}

}  // namespace perceiver::datasets
