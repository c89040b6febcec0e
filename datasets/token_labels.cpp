#include "datasets/token_labels.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "datasets/common.h"
#include "datasets/file_store.h"
#include "datasets/fortunes.h"
#include "datasets/loader.h"
#include "datasets/sources.h"
#include "perceiver/io/json_io.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return is_space(c); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The entity type of an O/B-X/I-X tag ("" for O).
std::string type_of(const std::string& tag) { return tag == "O" ? std::string() : tag.substr(2); }

std::map<std::string, int64_t> ids_of(const std::vector<std::string>& names) {
  std::map<std::string, int64_t> ids;
  for (size_t i = 0; i < names.size(); ++i) ids.emplace(names[i], static_cast<int64_t>(i));
  return ids;
}

int64_t id_of(const std::map<std::string, int64_t>& ids, const std::string& tag, const std::string& where) {
  const auto it = ids.find(tag);
  if (it == ids.end()) throw std::runtime_error(where + ": label '" + tag + "' is not among the set's labels");
  return it->second;
}

}  // namespace

// ---- offsets, tags ----

std::pair<int64_t, int64_t> char_span_to_bytes(const std::string& text, int64_t start, int64_t end) {
  if (start < 0 || start > end)
    throw std::invalid_argument("character span [" + std::to_string(start) + ", " + std::to_string(end) +
                                ") is not a span (need 0 <= start <= end)");
  int64_t chars = 0, byte_start = -1, byte_end = -1;
  for (size_t b = 0; b <= text.size(); ++b) {
    if (b < text.size() && is_continuation(text[b])) continue;
    // b begins character `chars` (or is the end of the text, at chars == the text's length)
    if (chars == start) byte_start = static_cast<int64_t>(b);
    if (chars == end) {
      byte_end = static_cast<int64_t>(b);
      break;
    }
    ++chars;
  }
  if (byte_end < 0)
    throw std::invalid_argument("character span [" + std::to_string(start) + ", " + std::to_string(end) +
                                ") ends past the text's " + std::to_string(chars - 1) + " characters");
  return {byte_start, byte_end};
}

int64_t byte_to_char_offset(const std::string& text, int64_t byte_offset) {
  if (byte_offset < 0 || byte_offset > static_cast<int64_t>(text.size()))
    throw std::invalid_argument("byte offset " + std::to_string(byte_offset) + " is outside the text's " +
                                std::to_string(text.size()) + " bytes");
  int64_t chars = 0;
  for (int64_t b = 0; b < byte_offset; ++b) chars += is_continuation(text[static_cast<size_t>(b)]) ? 0 : 1;
  return chars;
}

bool is_iob_tag(const std::string& tag) {
  return tag == "O" || (tag.size() > 2 && (tag[0] == 'B' || tag[0] == 'I') && tag[1] == '-');
}

std::vector<std::string> iob1_to_iob2(const std::vector<std::string>& tags) {
  std::vector<std::string> out = tags;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!is_iob_tag(out[i])) throw std::invalid_argument("tag '" + out[i] + "' is not O, B-TYPE or I-TYPE");
    if (out[i][0] != 'I') continue;
    // I- starts an entity unless it continues one of its type.
    if (i == 0 || out[i - 1] == "O" || type_of(out[i - 1]) != type_of(out[i])) out[i][0] = 'B';
  }
  return out;
}

std::vector<std::string> iob2_label_names(const std::vector<std::string>& types) {
  std::set<std::string> tags;
  for (const auto& t : types) {
    if (t.empty()) throw std::invalid_argument("an entity type must not be empty");
    tags.insert("B-" + t);
    tags.insert("I-" + t);
  }
  std::vector<std::string> names{"O"};
  names.insert(names.end(), tags.begin(), tags.end());
  return names;
}

std::vector<std::string> sentences_of(const std::string& text) {
  std::vector<std::string> out;
  auto emit = [&](size_t from, size_t to) {
    const auto s = trim(std::string_view(text).substr(from, to - from));
    if (!s.empty()) out.emplace_back(s);
  };
  size_t start = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') && is_space(text[i + 1])) {
      emit(start, i + 1);
      start = i + 1;
    }
  }
  emit(start, text.size());
  return out;
}

TokenLabelSet token_label_set_from(std::vector<LabelledBytes> examples, std::vector<std::string> label_names) {
  const auto n = static_cast<int64_t>(label_names.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    const auto& e = examples[i];
    if (e.labels.size() != e.text.size())
      throw std::invalid_argument("token_label_set_from: example " + std::to_string(i) + " has " +
                                  std::to_string(e.text.size()) + " bytes but " + std::to_string(e.labels.size()) +
                                  " labels");
    for (const int64_t l : e.labels)
      if (l != kIgnoreLabel && (l < 0 || l >= n))
        throw std::invalid_argument("token_label_set_from: example " + std::to_string(i) + " has label id " +
                                    std::to_string(l) + " outside the " + std::to_string(n) + " label names");
  }
  auto data = std::make_shared<const std::vector<LabelledBytes>>(std::move(examples));
  TokenLabelSet out;
  out.count = static_cast<int64_t>(data->size());
  out.get = [data](int64_t i) { return data->at(static_cast<size_t>(i)); };
  out.label_names = std::move(label_names);
  return out;
}

TokenLabelSet with_label_names(TokenLabelSet set, const std::vector<std::string>& label_names) {
  if (set.label_names == label_names) return set;
  const auto ids = ids_of(label_names);
  std::vector<int64_t> map;
  std::string missing;
  for (const auto& name : set.label_names) {
    const auto it = ids.find(name);
    if (it == ids.end()) missing += (missing.empty() ? "" : ", ") + name;
    map.push_back(it == ids.end() ? kIgnoreLabel : it->second);
  }
  if (!missing.empty())
    throw std::invalid_argument("labels " + missing + " are not among the " + std::to_string(label_names.size()) +
                                " labels the data is scored with");
  TokenLabelSet out;
  out.count = set.count;
  out.label_names = label_names;
  out.get = [get = std::move(set.get), map = std::move(map)](int64_t i) {
    auto e = get(i);
    for (auto& l : e.labels)
      if (l != kIgnoreLabel) l = map.at(static_cast<size_t>(l));
    return e;
  };
  return out;
}

// ---- reading files ----
namespace {

constexpr size_t kChunk = size_t{1} << 20;
constexpr size_t kMaxLine = size_t{64} << 20;

// A file, or the files of a folder (recursive, sorted; names starting with '.' skipped) whose extension
// is one of `extensions` (empty: any).
std::vector<fs::path> files_of(const fs::path& path, const std::vector<std::string>& extensions, const std::string& what) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied)) {
      const auto name = e.path().filename().string();
      if (!e.is_regular_file() || name.empty() || name[0] == '.') continue;
      if (!extensions.empty() &&
          std::find(extensions.begin(), extensions.end(), e.path().extension().string()) == extensions.end())
        continue;
      files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw std::runtime_error("no " + what + " files in folder '" + path.string() + "'");
  } else if (fs::exists(path, ec)) {
    files.push_back(path);
  } else {
    throw std::runtime_error(what + " path '" + path.string() + "' does not exist");
  }
  return files;
}

// Calls on_line(offset, line_number (1-based), line) for every line of `path` ('\n' removed, a final
// '\r' kept), reading in chunks.
template <typename OnLine>
void scan_lines(const fs::path& path, OnLine&& on_line) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open file '" + path.string() + "'");
  std::vector<char> buffer(kChunk);
  std::string line;
  int64_t line_start = 0, pos = 0, number = 1;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    for (size_t i = 0; i < got; ++i, ++pos) {
      if (buffer[i] == '\n') {
        on_line(line_start, number++, std::string_view(line));
        line.clear();
        line_start = pos + 1;
      } else {
        line += buffer[i];
        if (line.size() > kMaxLine)
          throw std::runtime_error(path.string() + ":" + std::to_string(number) + ": line is longer than 64 MB");
      }
    }
  }
  if (in.bad()) throw std::runtime_error("error while reading file '" + path.string() + "'");
  if (!line.empty()) on_line(line_start, number, std::string_view(line));
}

std::string without_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return std::string(line);
}

// A stretch of an indexed file: a JSONL line, or a CoNLL sentence's lines.
struct Record {
  int64_t offset = 0;
  int64_t length = 0;
  int64_t line = 0;  // its first line's number
  int32_t file = 0;
};

std::string read_record(const FileStamp& file, const Record& r) {
  std::string bytes(static_cast<size_t>(r.length), '\0');
  read_stamped(file, r.offset, r.length, bytes.data());
  return bytes;
}

void check_unchanged(const FileStamp& before, const fs::path& path) {
  if (FileStamp::of(path) != before)
    throw std::runtime_error("'" + path.string() + "' changed while it was being read; read it again once it is complete");
}

// ---- jsonl: {"text": ..., "spans": [{"start", "end", "label"}]} with character offsets ----

struct ByteSpan {
  int64_t begin, end;
  std::string label;
};
struct SpanText {
  std::string text;
  std::vector<ByteSpan> spans;  // sorted, not overlapping, not empty
};

struct JsonlKeys {
  std::string text, spans;
};

// The line's text and byte spans; nullopt for a line that is skipped (blank, not UTF-8, not a JSON object,
// no string under the text key, an empty text); throws std::runtime_error "<where>: ..." for a line whose
// spans are wrong.
std::optional<SpanText> parse_span_line(std::string_view line, const JsonlKeys& keys, const std::string& where,
                                        int64_t& invalid) {
  if (is_blank(line)) return std::nullopt;
  if (!is_valid_utf8(line)) {
    ++invalid;
    return std::nullopt;
  }
  const auto obj = parse_json_or_discard(line);
  if (!obj.is_object() || !obj.contains(keys.text) || !obj[keys.text].is_string()) {
    ++invalid;
    return std::nullopt;
  }
  SpanText out;
  out.text = obj[keys.text].get<std::string>();
  if (out.text.empty()) return std::nullopt;
  if (!obj.contains(keys.spans) || !obj[keys.spans].is_array())
    throw std::runtime_error(where + ": no '" + keys.spans + "' list of spans (spans_key)");
  struct CharSpan {
    int64_t start, end;
    std::string label;
  };
  std::vector<CharSpan> spans;
  int64_t index = 0;
  for (const auto& span : obj[keys.spans]) {
    const std::string at = where + ": span " + std::to_string(index++);
    if (!span.is_object()) throw std::runtime_error(at + " is not an object {start, end, label}: " + json_excerpt(span));
    for (const auto& [key, value] : span.items())
      if (key != "start" && key != "end" && key != "label")
        throw std::runtime_error(at + " has an unknown key '" + excerpt(key) + "' (known: end, label, start)");
    for (const char* key : {"start", "end"})
      if (!span.contains(key) || !span[key].is_number_integer())
        throw std::runtime_error(at + " needs an integer '" + key + "' (a character offset)");
    if (!span.contains("label") || !span["label"].is_string() || span["label"].get<std::string>().empty() ||
        span["label"].get<std::string>() == "O")
      throw std::runtime_error(at + " needs a 'label', an entity type other than O");
    spans.push_back({span["start"].get<int64_t>(), span["end"].get<int64_t>(), span["label"].get<std::string>()});
    try {
      char_span_to_bytes(out.text, spans.back().start, spans.back().end);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(at + ": " + e.what());
    }
    if (spans.back().start == spans.back().end) spans.pop_back();  // labels no character
  }
  std::stable_sort(spans.begin(), spans.end(), [](const CharSpan& a, const CharSpan& b) { return a.start < b.start; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].start < spans[i - 1].end)
      throw std::runtime_error(where + ": spans [" + std::to_string(spans[i - 1].start) + ", " +
                               std::to_string(spans[i - 1].end) + ") " + excerpt(spans[i - 1].label) + " and [" +
                               std::to_string(spans[i].start) + ", " + std::to_string(spans[i].end) + ") " +
                               excerpt(spans[i].label) + " overlap");
  for (auto& s : spans) {
    const auto [b, e] = char_span_to_bytes(out.text, s.start, s.end);
    out.spans.push_back({b, e, std::move(s.label)});
  }
  return out;
}

LabelledBytes label_spans(const SpanText& t, const std::map<std::string, int64_t>& ids, const std::string& where) {
  LabelledBytes out;
  out.text = t.text;
  out.labels.assign(t.text.size(), id_of(ids, "O", where));
  for (const auto& s : t.spans) {
    const int64_t b = id_of(ids, "B-" + s.label, where), i = id_of(ids, "I-" + s.label, where);
    for (int64_t k = s.begin; k < s.end; ++k) out.labels[static_cast<size_t>(k)] = k == s.begin ? b : i;
  }
  return out;
}

TokenLabelSet jsonl_source(SourceOptions& s) {
  const fs::path path = s.required("path");
  const JsonlKeys keys{s.get_string("text_key"), s.get_string("spans_key")};
  const auto files = files_of(path, {".jsonl"}, "JSONL");
  std::vector<FileStamp> stamps;
  std::vector<Record> records;
  std::set<std::string> types;
  int64_t invalid = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    stamps.push_back(FileStamp::of(files[f]));
    scan_lines(files[f], [&](int64_t offset, int64_t number, std::string_view line) {
      const auto where = files[f].string() + ":" + std::to_string(number);
      const auto parsed = parse_span_line(line, keys, where, invalid);
      if (!parsed) return;
      for (const auto& span : parsed->spans) types.insert(span.label);
      records.push_back({offset, static_cast<int64_t>(line.size()), number, static_cast<int32_t>(f)});
    });
    check_unchanged(stamps.back(), files[f]);
  }
  if (invalid > 0)
    spdlog::warn("{}: skipped {} invalid line(s) (bad UTF-8 or JSON, no '{}' string) in {} file(s) of '{}'", s.path(),
                 invalid, keys.text, files.size(), path.string());
  if (records.empty())
    throw std::runtime_error("'" + path.string() + "' holds no text with spans (" + std::to_string(invalid) +
                             " invalid line(s) skipped)");
  TokenLabelSet out;
  out.count = static_cast<int64_t>(records.size());
  out.label_names = iob2_label_names({types.begin(), types.end()});
  out.get = [stamps = std::move(stamps), records = std::move(records), keys, ids = ids_of(out.label_names)](int64_t i) {
    const auto& r = records.at(static_cast<size_t>(i));
    const auto& file = stamps[static_cast<size_t>(r.file)];
    const auto where = file.path + ":" + std::to_string(r.line);
    const auto line = read_record(file, r);
    std::optional<SpanText> parsed;
    int64_t invalid = 0;
    try {
      parsed = parse_span_line(line, keys, where, invalid);
      if (parsed) return label_spans(*parsed, ids, where);
    } catch (const std::runtime_error&) {
    }
    throw BadExample(file.path, "line " + std::to_string(r.line) + " is no longer what was indexed");
  };
  return out;
}

// ---- conll: a token per line, blank lines between sentences ----

struct ConllOptions {
  int64_t token_column = 0, tag_column = -1;
  bool iob1 = false;
  bool all_bytes = false;  // label_bytes: all
  std::string separator = " ";
};

std::vector<std::string_view> columns_of(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool is_docstart(std::string_view line) {
  const auto cols = columns_of(line);
  return !cols.empty() && cols[0] == "-DOCSTART-";
}

struct Sentence {
  std::vector<std::string> tokens, tags;  // tags as IOB2
};

// Reads one file's sentences, line by line: a column count fixed by the file's first token line.
class ConllReader {
 public:
  // `columns`: the file's column count when known (-1: from its first token line).
  ConllReader(const ConllOptions& o, std::string file, int64_t columns = -1)
      : o_(o), file_(std::move(file)), columns_(columns) {}
  int64_t columns() const { return columns_; }

  // A token line (neither blank nor -DOCSTART-) into `s`; errors name file:line.
  void add(std::string_view raw, int64_t number, Sentence& s) {
    const auto cols = columns_of(trim(raw));
    const auto where = file_ + ":" + std::to_string(number);
    if (columns_ < 0) columns_ = static_cast<int64_t>(cols.size());
    if (!resolved_) {
      token_ = resolve(o_.token_column, "token_column", where);
      tag_ = resolve(o_.tag_column, "tag_column", where);
      resolved_ = true;
    }
    if (static_cast<int64_t>(cols.size()) != columns_)
      throw std::runtime_error(where + ": " + std::to_string(cols.size()) + " columns, but the file's first token line has " +
                               std::to_string(columns_));
    const std::string tag(cols[static_cast<size_t>(tag_)]);
    if (!is_iob_tag(tag)) throw std::runtime_error(where + ": tag '" + excerpt(tag) + "' is not O, B-TYPE or I-TYPE");
    s.tokens.emplace_back(cols[static_cast<size_t>(token_)]);
    s.tags.push_back(tag);
  }
  void finish(Sentence& s) const {
    if (o_.iob1) s.tags = iob1_to_iob2(s.tags);
  }

 private:
  int64_t resolve(int64_t column, const char* key, const std::string& where) const {
    const int64_t c = column < 0 ? columns_ + column : column;
    if (c < 0 || c >= columns_)
      throw std::runtime_error(where + ": " + key + " " + std::to_string(column) + " is not among the line's " +
                               std::to_string(columns_) + " columns");
    return c;
  }
  const ConllOptions& o_;
  std::string file_;
  int64_t columns_ = -1, token_ = 0, tag_ = 0;
  bool resolved_ = false;
};

LabelledBytes label_sentence(const Sentence& s, const ConllOptions& o, const std::map<std::string, int64_t>& ids,
                             const std::string& where) {
  LabelledBytes out;
  const int64_t O = id_of(ids, "O", where);
  for (size_t t = 0; t < s.tokens.size(); ++t) {
    const auto& tag = s.tags[t];
    if (t > 0 && !o.separator.empty()) {
      int64_t sep = kIgnoreLabel;
      if (o.all_bytes) {  // inside an entity (this token continues the previous one's) or outside
        const bool inside = tag[0] == 'I' && s.tags[t - 1] != "O" && type_of(s.tags[t - 1]) == type_of(tag);
        sep = inside ? id_of(ids, "I-" + type_of(tag), where) : O;
      }
      out.text += o.separator;
      out.labels.insert(out.labels.end(), o.separator.size(), sep);
    }
    const int64_t first = id_of(ids, tag, where);
    const int64_t rest = !o.all_bytes ? kIgnoreLabel : tag == "O" ? O : id_of(ids, "I-" + type_of(tag), where);
    out.text += s.tokens[t];
    out.labels.push_back(first);
    out.labels.insert(out.labels.end(), s.tokens[t].size() - 1, rest);
  }
  return out;
}

TokenLabelSet conll_source(SourceOptions& s) {
  const fs::path path = s.required("path");
  ConllOptions o;
  o.token_column = s.get_int("token_column");
  o.tag_column = s.get_int("tag_column");
  const auto scheme = s.get_string("scheme");
  if (scheme != "iob2" && scheme != "iob1") s.fail("scheme", "must be iob2 or iob1, found '" + scheme + "'");
  o.iob1 = scheme == "iob1";
  const auto label_bytes = s.get_string("label_bytes");
  if (label_bytes != "first" && label_bytes != "all")
    s.fail("label_bytes", "must be first or all, found '" + label_bytes + "'");
  o.all_bytes = label_bytes == "all";
  o.separator = s.get_string("separator");
  const auto files = files_of(path, {}, "CoNLL");
  std::vector<FileStamp> stamps;
  std::vector<int64_t> columns;  // each file's column count
  std::vector<Record> records;
  std::set<std::string> types;
  int64_t invalid = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    stamps.push_back(FileStamp::of(files[f]));
    ConllReader reader(o, files[f].string());
    Sentence sentence;
    Record record;
    bool utf8 = true;
    auto flush = [&](int64_t end) {
      if (!sentence.tokens.empty()) {
        reader.finish(sentence);
        if (utf8) {
          for (const auto& tag : sentence.tags)
            if (tag != "O") types.insert(type_of(tag));
          record.length = end - record.offset;
          records.push_back(record);
        } else {
          ++invalid;
        }
      }
      sentence = {};
      utf8 = true;
    };
    scan_lines(files[f], [&](int64_t offset, int64_t number, std::string_view line) {
      if (is_blank(line) || is_docstart(line)) {
        flush(offset);
        return;
      }
      if (sentence.tokens.empty()) record = {offset, 0, number, static_cast<int32_t>(f)};
      utf8 = utf8 && is_valid_utf8(line);
      reader.add(line, number, sentence);
    });
    flush(stamps.back().size);
    check_unchanged(stamps.back(), files[f]);
    columns.push_back(reader.columns());
  }
  if (invalid > 0)
    spdlog::warn("{}: skipped {} sentence(s) that are not UTF-8 in {} file(s) of '{}'", s.path(), invalid, files.size(),
                 path.string());
  if (records.empty())
    throw std::runtime_error("'" + path.string() + "' holds no sentences (" + std::to_string(invalid) +
                             " that are not UTF-8 skipped)");
  TokenLabelSet out;
  out.count = static_cast<int64_t>(records.size());
  out.label_names = iob2_label_names({types.begin(), types.end()});
  out.get = [stamps = std::move(stamps), columns = std::move(columns), records = std::move(records), o,
             ids = ids_of(out.label_names)](int64_t i) {
    const auto& r = records.at(static_cast<size_t>(i));
    const auto& file = stamps[static_cast<size_t>(r.file)];
    const auto bytes = read_record(file, r);
    try {
      if (!is_valid_utf8(bytes)) throw std::runtime_error("not UTF-8");
      ConllReader reader(o, file.path, columns[static_cast<size_t>(r.file)]);
      Sentence sentence;
      int64_t number = r.line;
      size_t pos = 0;
      while (pos < bytes.size()) {
        size_t end = bytes.find('\n', pos);
        if (end == std::string::npos) end = bytes.size();
        const std::string_view line(bytes.data() + pos, end - pos);
        if (is_blank(line) || is_docstart(line)) throw std::runtime_error("sentence ends early");
        reader.add(line, number++, sentence);
        pos = end + 1;
      }
      if (sentence.tokens.empty()) throw std::runtime_error("no tokens");
      reader.finish(sentence);
      return label_sentence(sentence, o, ids, file.path + ":" + std::to_string(r.line));
    } catch (const std::exception&) {
    }
    throw BadExample(file.path, "the sentence at line " + std::to_string(r.line) + " is no longer what was indexed");
  };
  return out;
}

// ---- langseg: code-switched sentences from the fortunes languages ----

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

struct LangsegPools {
  std::vector<std::string> all_languages;            // of the fortunes set
  std::vector<std::string> languages;                // with at least one sentence in the split
  std::vector<std::vector<std::string>> sentences;  // per language
};

// The sentences of one split of the fortunes source's default split, per language. Sources alive at the
// same time (a train source made twice, tests) share them.
std::shared_ptr<const LangsegPools> langseg_pools(const std::string& split) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<const LangsegPools>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto alive = cache[split].lock()) return alive;
  auto splits = fortune_language_id();
  const LabelledText& part = split == "train" ? splits.train : split == "validation" ? splits.validation : splits.test;
  auto pools = std::make_shared<LangsegPools>();
  pools->all_languages = part.id2label;
  std::vector<std::vector<std::string>> by_label(part.id2label.size());
  for (size_t i = 0; i < part.texts.size(); ++i)
    for (auto& sentence : sentences_of(part.texts[i]))
      by_label[static_cast<size_t>(part.labels[i])].push_back(std::move(sentence));
  for (size_t l = 0; l < by_label.size(); ++l) {
    if (by_label[l].empty()) continue;
    pools->languages.push_back(part.id2label[l]);
    pools->sentences.push_back(std::move(by_label[l]));
  }
  cache[split] = pools;
  return pools;
}

struct LangsegOptions {
  int64_t min_languages = 2, max_languages = 4, max_bytes = 2048;
  uint64_t seed = 0;
};

LabelledBytes langseg_example(const LangsegPools& pools, const LangsegOptions& o,
                              const std::map<std::string, int64_t>& ids, int64_t index) {
  uint64_t state = o.seed * 0xD1B54A32D192ED03ULL ^ (static_cast<uint64_t>(index) + 1) * 0x8CB92BA72F3D8DD7ULL;
  splitmix64(state);
  const auto languages = static_cast<int64_t>(pools.languages.size());
  const int64_t hi = std::min(o.max_languages, languages);
  const int64_t k = o.min_languages + static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(hi - o.min_languages + 1));
  std::vector<size_t> order(pools.languages.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (int64_t i = 0; i < k; ++i) {  // the first k of a Fisher-Yates shuffle
    const auto j = static_cast<size_t>(i) + splitmix64(state) % static_cast<uint64_t>(languages - i);
    std::swap(order[static_cast<size_t>(i)], order[j]);
  }
  LabelledBytes out;
  const auto max_bytes = static_cast<size_t>(o.max_bytes);
  for (int64_t i = 0; i < k; ++i) {
    const size_t lang = order[static_cast<size_t>(i)];
    const auto& pool = pools.sentences[lang];
    std::string sentence = pool[splitmix64(state) % pool.size()];
    const size_t sep = out.text.empty() ? 0 : 1;
    if (out.text.size() + sep + sentence.size() > max_bytes) {
      if (!out.text.empty()) break;
      size_t cut = max_bytes;  // a first sentence longer than max_bytes: cut at a character boundary
      while (cut > 0 && is_continuation(sentence[cut])) --cut;
      sentence = std::string(trim(std::string_view(sentence).substr(0, cut)));
      if (sentence.empty()) break;
    }
    if (sep) {
      out.text += ' ';
      out.labels.push_back(ids.at("O"));
    }
    const int64_t b = ids.at("B-" + pools.languages[lang]), in = ids.at("I-" + pools.languages[lang]);
    out.text += sentence;
    out.labels.push_back(b);
    out.labels.insert(out.labels.end(), sentence.size() - 1, in);
  }
  return out;
}

TokenLabelSet langseg_source(SourceOptions& s) {
  const auto split = s.has("split") ? s.get_string("split") : s.is_train() ? "train" : "validation";
  if (split != "train" && split != "validation" && split != "test")
    s.fail("split", "must be train, validation or test, found '" + split + "'");
  LangsegOptions o;
  const int64_t count = s.get_int("count");
  if (count < 1) s.fail("count", "must be at least 1, found " + std::to_string(count));
  o.min_languages = s.get_int("min_languages");
  o.max_languages = s.get_int("max_languages");
  if (o.min_languages < 1) s.fail("min_languages", "must be at least 1, found " + std::to_string(o.min_languages));
  if (o.max_languages < o.min_languages)
    s.fail("max_languages", "must be at least min_languages (" + std::to_string(o.min_languages) + "), found " +
                                std::to_string(o.max_languages));
  o.max_bytes = s.get_int("max_bytes");
  if (o.max_bytes < 16) s.fail("max_bytes", "must be at least 16, found " + std::to_string(o.max_bytes));
  o.seed = s.has("seed") ? static_cast<uint64_t>(s.get_int("seed"))
                         : (split == "train" ? 0 : split == "validation" ? 1 : 2);

  const auto pools = langseg_pools(split);
  if (static_cast<int64_t>(pools->languages.size()) < o.min_languages)
    s.fail("min_languages", std::to_string(o.min_languages) + " languages per text, but the " + split +
                                " split has sentences in only " + std::to_string(pools->languages.size()));
  TokenLabelSet out;
  out.count = count;
  out.label_names = iob2_label_names(pools->all_languages);  // every language, whether or not this split has it
  out.get = [pools, o, ids = ids_of(out.label_names)](int64_t i) { return langseg_example(*pools, o, ids, i); };
  return out;
}

}  // namespace

const SourceRegistry<TokenLabelSource>& token_label_sources() {
  static const SourceRegistry<TokenLabelSource> registry = {
      {"jsonl",
       {jsonl_source,
        "texts with labelled character spans, a JSONL file or a folder of .jsonl files ({\"text\": ..., \"spans\": "
        "[{\"start\": 0, \"end\": 5, \"label\": \"PER\"}]}), read line by line on demand",
        {{"path", "string", "", "a JSONL file or a folder of .jsonl files (recursive)", true},
         {"text_key", "string", "text", "the key of each line's text"},
         {"spans_key", "string", "spans",
          "the key of each line's span list; a span's start and end are character (code point) offsets, end "
          "exclusive, its bytes labelled B-<label> then I-<label>, other bytes O"}}}},
      {"conll",
       {conll_source,
        "CoNLL files (a token per line, columns split on spaces or tabs, blank lines between sentences, -DOCSTART- "
        "lines skipped), a file or a folder, each sentence's tokens joined into one text, read on demand",
        {{"path", "string", "", "a CoNLL file or a folder of them (recursive; names starting with '.' skipped)", true},
         {"token_column", "int", "0", "the column of the token (negative: counted from the last, -1)"},
         {"tag_column", "int", "-1", "the column of the tag, O, B-TYPE or I-TYPE (negative: from the last)"},
         {"scheme", "enum[iob2, iob1]", "iob2",
          "the tags' scheme: iob2 (every entity starts with B-) or iob1 (CoNLL-2003's: I- may start an entity), "
          "read as IOB2"},
         {"label_bytes", "enum[first, all]", "first",
          "first: a token's first byte carries its tag, its other bytes and the separators are not scored; all: "
          "every byte is labelled (B- only on a B- token's first byte, separators inside an entity I-, else O)"},
         {"separator", "string", "\" \"", "what a sentence's tokens are joined with"}}}},
      {"langseg",
       {langseg_source,
        "code-switched text, generated: sentences of 2 to 4 languages of the fortunes language-ID set joined with "
        "spaces, each sentence's bytes labelled B-/I-<language>, the spaces O",
        {{"split", "enum[train, validation, test]", "",
          "the fortunes split the sentences come from (the fortunes source's split); default train for "
          "data.train, validation otherwise"},
         {"count", "int", "20000",
          "texts in the set, each generated from its index; give data.eval fewer (e.g. count: 2000)"},
         {"min_languages", "int", "2", "the fewest languages in a text"},
         {"max_languages", "int", "4", "the most languages in a text"},
         {"max_bytes", "int", "2048", "a text ends before the sentence that would take it past this many bytes"},
         {"seed", "int", "",
          "text i is a function of (seed, i); default 0 for the train split, 1 for validation, 2 for test"}}}},
  };
  return registry;
}

}  // namespace perceiver::datasets
