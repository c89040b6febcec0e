#include "datasets/text_corpus.h"

#include <algorithm>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "datasets/byte_vocab.h"
#include "datasets/common.h"
#include "datasets/sources.h"
#include "datasets/text_index.h"
#include "perceiver/io/json_io.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string_view> split_lines(std::string_view bytes) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < bytes.size()) {
    size_t end = bytes.find('\n', start);
    if (end == std::string_view::npos) end = bytes.size();
    std::string_view line = bytes.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

void read_jsonl(std::string_view bytes, const std::string& field, TextCorpus& out) {
  for (const std::string_view line : split_lines(bytes))
    if (auto text = jsonl_document(line, field, out.invalid_lines)) out.documents.push_back(std::move(*text));
}

void read_plain(std::string_view bytes, TextUnit unit, TextCorpus& out) {
  std::string current;
  auto flush = [&] {
    if (!current.empty()) out.documents.push_back(std::move(current));
    current.clear();
  };
  for (const std::string_view line : split_lines(bytes)) {
    if (!is_valid_utf8(line)) {
      ++out.invalid_lines;
      continue;
    }
    switch (unit) {
      case TextUnit::kLine:
        if (!is_blank(line)) out.documents.emplace_back(line);
        break;
      case TextUnit::kParagraph:
        if (is_blank(line)) {
          flush();
        } else {
          if (!current.empty()) current += '\n';
          current += line;
        }
        break;
      case TextUnit::kFile:
        current += line;
        current += '\n';
        break;
    }
  }
  if (unit == TextUnit::kFile && is_blank(current)) current.clear();
  flush();
}

bool wanted(const fs::path& p, const std::vector<std::string>& extensions) {
  if (extensions.empty()) return true;
  const std::string ext = p.extension().string();
  return std::any_of(extensions.begin(), extensions.end(), [&](const std::string& e) { return e.empty() || e == ext; });
}

}  // namespace

std::optional<std::string> jsonl_document(std::string_view line, const std::string& field, int64_t& invalid_lines) {
  if (is_blank(line)) return std::nullopt;
  if (!is_valid_utf8(line)) {
    ++invalid_lines;
    return std::nullopt;
  }
  const auto obj = parse_json_or_discard(line);
  if (!obj.is_object() || !obj.contains(field) || !obj[field].is_string()) {
    ++invalid_lines;
    return std::nullopt;
  }
  auto text = obj[field].get<std::string>();
  if (text.empty()) return std::nullopt;
  return text;
}

bool reads_as_jsonl(const fs::path& file, const TextReadOptions& options) {
  return options.jsonl || file.extension() == ".jsonl";
}

std::vector<fs::path> text_files(const fs::path& path, const TextReadOptions& options) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied)) {
      if (entry.is_regular_file() && wanted(entry.path(), options.extensions)) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  } else if (fs::exists(path, ec)) {
    files.push_back(path);
  } else {
    throw std::runtime_error("text corpus path '" + path.string() + "' does not exist");
  }
  return files;
}

TextCorpus read_text_file(const fs::path& path, const TextReadOptions& options) {
  TextCorpus out;
  const std::string bytes = read_file_bytes(path);
  out.files = 1;
  if (reads_as_jsonl(path, options)) {
    read_jsonl(bytes, options.jsonl_field, out);
  } else {
    read_plain(bytes, options.unit, out);
  }
  return out;
}

TextCorpus read_text(const fs::path& path, const TextReadOptions& options) {
  TextCorpus out;
  for (const auto& f : text_files(path, options)) {
    TextCorpus part = read_text_file(f, options);
    out.files += part.files;
    out.invalid_lines += part.invalid_lines;
    for (auto& d : part.documents) out.documents.push_back(std::move(d));
  }
  if (out.invalid_lines > 0)
    spdlog::warn("text corpus '{}': skipped {} invalid line(s) (bad UTF-8 or JSON) in {} file(s)", path.string(),
                 out.invalid_lines, out.files);
  return out;
}

torch::Tensor text_to_ids(const std::string& text) {
  auto ids = torch::empty({static_cast<int64_t>(text.size())}, torch::kInt64);
  auto* p = ids.data_ptr<int64_t>();
  for (size_t i = 0; i < text.size(); ++i) p[i] = byte_vocab::byte_to_id(static_cast<unsigned char>(text[i]));
  return ids;
}

std::string ids_to_text(const torch::Tensor& ids) {
  const auto flat = ids.to(torch::kInt64).contiguous().view(-1);
  const auto* p = flat.data_ptr<int64_t>();
  std::string out;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    if (p[i] >= byte_vocab::kByteOffset && p[i] < byte_vocab::kVocabSize)
      out += static_cast<char>(p[i] - byte_vocab::kByteOffset);
  }
  return out;
}

torch::Tensor make_byte_windows(const std::vector<std::string>& documents, const WindowOptions& options) {
  const ByteWindowDataset windows(std::make_shared<MemoryTextStream>(documents, options.separator), options);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < windows.size(); ++i) rows.push_back(windows.get(i).at("input_ids"));
  return rows.empty() ? torch::empty({0, options.length}, torch::kInt64) : torch::stack(rows);
}

torch::Tensor attention_mask_from_ids(const torch::Tensor& ids) {
  return ids.ne(byte_vocab::kPad).to(torch::kInt64);
}

// ---- compress(1) LZW ----
std::string lzw_decompress(const std::string& codes, int max_bits, bool block_mode) {
  if (max_bits < 9 || max_bits > 16) throw std::invalid_argument("LZW max_bits must be in [9, 16]");
  constexpr int64_t kClear = 256;
  const int64_t max_max_code = int64_t{1} << max_bits;
  std::vector<uint16_t> prefix(max_max_code, 0);
  std::vector<uint8_t> suffix(max_max_code, 0);
  for (int i = 0; i < 256; ++i) suffix[i] = static_cast<uint8_t>(i);

  const auto* in = reinterpret_cast<const unsigned char*>(codes.data());
  const int64_t total_bits = static_cast<int64_t>(codes.size()) * 8;
  int n_bits = 9;
  int64_t max_code = (1 << n_bits) - 1;
  int64_t free_ent = block_mode ? 257 : 256;
  int64_t pos = 0;          // bit position in the code stream
  int64_t group_start = 0;  // codes come in groups of n_bits bytes; width changes skip the rest of a group
  int64_t old_code = -1;
  uint8_t fin_char = 0;
  std::string out;
  std::vector<uint8_t> stack;

  auto realign = [&] {
    const int64_t group = int64_t{n_bits} * 8;
    const int64_t used = pos - group_start;
    pos = group_start + (used + group - 1) / group * group;
    group_start = pos;
  };

  while (true) {
    if (free_ent > max_code && n_bits < max_bits) {
      realign();
      ++n_bits;
      max_code = n_bits == max_bits ? max_max_code - 1 : (int64_t{1} << n_bits) - 1;
      // free_ent may equal max_max_code once the table is full: stay at max_bits.
    }
    if (pos + n_bits > total_bits) break;
    uint32_t window = 0;
    const int64_t byte = pos >> 3;
    for (int k = 0; k < 3 && byte + k < static_cast<int64_t>(codes.size()); ++k) window |= uint32_t{in[byte + k]} << (8 * k);
    int64_t code = (window >> (pos & 7)) & ((1u << n_bits) - 1);
    pos += n_bits;

    if (old_code == -1) {
      if (code >= 256) throw std::runtime_error("LZW stream: first code " + std::to_string(code) + " is not a literal");
      fin_char = static_cast<uint8_t>(code);
      old_code = code;
      out += static_cast<char>(fin_char);
      continue;
    }
    if (code == kClear && block_mode) {
      std::fill(prefix.begin(), prefix.begin() + 256, 0);
      free_ent = 256;  // the next add lands on 256 and is never referenced
      realign();
      n_bits = 9;
      max_code = (1 << n_bits) - 1;
      continue;
    }
    const int64_t in_code = code;
    stack.clear();
    if (code >= free_ent) {
      if (code > free_ent) throw std::runtime_error("LZW stream: corrupt code " + std::to_string(code));
      stack.push_back(fin_char);
      code = old_code;
    }
    while (code >= 256) {
      stack.push_back(suffix[code]);
      code = prefix[code];
    }
    fin_char = suffix[code];
    stack.push_back(fin_char);
    out.append(stack.rbegin(), stack.rend());
    if (free_ent < max_max_code) {
      prefix[free_ent] = static_cast<uint16_t>(old_code);
      suffix[free_ent] = fin_char;
      ++free_ent;
    }
    old_code = in_code;
  }
  return out;
}

// ---- King James Bible ----
fs::path kjv_data_path() { return find_package_file("bible-kjv-text", "/bible.data", "/usr/lib/bible.data"); }

namespace {
uint32_t be32(const std::string& b, size_t off) {
  return (uint32_t{static_cast<unsigned char>(b[off])} << 24) | (uint32_t{static_cast<unsigned char>(b[off + 1])} << 16) |
         (uint32_t{static_cast<unsigned char>(b[off + 2])} << 8) | uint32_t{static_cast<unsigned char>(b[off + 3])};
}
}  // namespace

std::vector<BibleVerse> read_kjv(const fs::path& path) {
  // Layout (bible-kjv's compresslib): 80-byte magic area, then big-endian int32 fields
  // [unused, window size, window count, offsets[count + 1]]; each window is a compress(1) code stream
  // (16 bits, block mode) restarted at its own offset; the last offset is the file length.
  const std::string bytes = read_file_bytes(path);
  const std::string magic = "EC02Compressed Data File";
  if (bytes.size() < 96 || bytes.compare(0, magic.size(), magic) != 0)
    throw std::runtime_error("'" + path.string() + "' is not a bible-kjv data file (expected magic '" + magic + "')");
  const uint32_t count = be32(bytes, 88);
  const size_t table = 92;
  if (count == 0 || count > 100000 || table + (count + 1) * 4 > bytes.size())
    throw std::runtime_error("'" + path.string() + "': window table of " + std::to_string(count) +
                             " entries does not fit in " + std::to_string(bytes.size()) + " bytes");
  std::string text;
  for (uint32_t w = 0; w < count; ++w) {
    const uint32_t begin = be32(bytes, table + 4 * w);
    const uint32_t end = be32(bytes, table + 4 * (w + 1));
    if (begin > end || end > bytes.size())
      throw std::runtime_error("'" + path.string() + "': window " + std::to_string(w) + " spans [" +
                               std::to_string(begin) + ", " + std::to_string(end) + ") outside the file");
    text += lzw_decompress(bytes.substr(begin, end - begin));
  }
  std::vector<BibleVerse> verses;
  for (const std::string_view line : split_lines(text)) {
    // "Ge1:1 In the beginning ..."; the first line is a title without a reference.
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) continue;
    const std::string_view ref = line.substr(0, space);
    const size_t colon = ref.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 >= ref.size() ||
        !std::isdigit(static_cast<unsigned char>(ref[colon - 1])) || !std::isdigit(static_cast<unsigned char>(ref.back())))
      continue;
    verses.push_back({std::string(ref), std::string(line.substr(space + 1))});
  }
  if (verses.empty()) throw std::runtime_error("'" + path.string() + "': no verses found after decompression");
  return verses;
}

TextSplit split_kjv(const std::vector<BibleVerse>& verses, const KjvSplitOptions& options) {
  if (options.holdout_every < 2) throw std::invalid_argument("KJV holdout_every must be >= 2");
  TextSplit split;
  for (size_t i = 0; i < verses.size(); ++i) {
    auto& dst = static_cast<int64_t>(i % options.holdout_every) == options.holdout_every - 1 ? split.validation : split.train;
    dst.push_back(verses[i].text);
  }
  return split;
}

// ---- sources (datasets/sources.h) ----
namespace {

std::shared_ptr<const TextStream> kjv_source(SourceOptions& s, const std::string& separator) {
  const auto split = s.has("split") ? s.get_string("split") : s.is_train() ? "train" : "validation";
  KjvSplitOptions o;
  o.holdout_every = s.get_int("holdout_every");
  const auto path = s.has("path") ? s.get_string("path") : "";
  if (split != "train" && split != "validation") s.fail("split", "must be train or validation, found '" + split + "'");
  auto parts = split_kjv(path.empty() ? read_kjv() : read_kjv(path), o);
  return std::make_shared<MemoryTextStream>(std::move(split == "train" ? parts.train : parts.validation), separator);
}

std::shared_ptr<const TextStream> indexed_text_source(SourceOptions& s, const std::string& separator, bool jsonl) {
  TextIndexOptions o;
  o.separator = separator;
  o.read.jsonl = jsonl;
  if (jsonl) {
    o.read.extensions = {".jsonl"};
  } else {
    const auto unit = s.get_string("unit");
    if (unit != "file" && unit != "line" && unit != "paragraph")
      s.fail("unit", "must be file, line or paragraph, found '" + unit + "'");
    o.read.unit = unit == "line" ? TextUnit::kLine : unit == "paragraph" ? TextUnit::kParagraph : TextUnit::kFile;
  }
  o.read.jsonl_field = s.get_string("jsonl_field");
  if (s.has("index_dir")) o.cache_dir = s.get_string("index_dir");
  const auto path = s.required("path");
  auto text = IndexedText::open(path, o);
  const auto& summary = text->summary();
  if (summary.invalid_lines > 0)
    spdlog::warn("{}: skipped {} invalid line(s) (bad UTF-8 or JSON) in {} file(s) of '{}'", s.path(), summary.invalid_lines,
                 summary.files, path);
  if (summary.bytes == 0) s.fail("path", "'" + path + "' holds no text");
  return text;
}

std::shared_ptr<const TextStream> text_source(SourceOptions& s, const std::string& separator) {
  return indexed_text_source(s, separator, false);
}
std::shared_ptr<const TextStream> jsonl_source(SourceOptions& s, const std::string& separator) {
  return indexed_text_source(s, separator, true);
}

// A source's own keys followed by those both indexed sources read.
OptionSpecs indexed_text_options(OptionSpecs specs) {
  specs.push_back({"jsonl_field", "string", "text", "the field of each JSONL object that holds its text"});
  specs.push_back({"index_dir", "string", "",
                   "where the index is kept; absent: $PERCEIVER_CACHE_DIR, else ~/.cache/perceiver-cpp"});
  return specs;
}

}  // namespace

const SourceRegistry<TextSource>& text_sources() {
  static const SourceRegistry<TextSource> registry = {
      {"kjv",
       {kjv_source,
        "the King James Bible (Debian's bible-kjv-text), in memory; every holdout_every-th verse is held out",
        {{"split", "enum[train, validation]", "",
          "the verses read: train or validation (the held-out ones); default train for data.train, validation "
          "otherwise"},
         {"holdout_every", "int", "20", "every holdout_every-th verse goes to the validation split (at least 2)"},
         {"path", "string", "",
          "bible-kjv's compressed data file (bible.data); absent: the installed bible-kjv-text package's"}}}},
      {"text",
       {text_source,
        "plain text, a file or a folder (recursive: .txt, .text, .md, .jsonl), indexed on disk and read on demand",
        indexed_text_options({{"path", "string", "", "a text file or a folder of them", true},
                              {"unit", "enum[file, line, paragraph]", "file",
                               "what one document is: a whole file, a line, or a paragraph (blank-line separated)"}})}},
      {"jsonl",
       {jsonl_source, "JSONL documents, a file or a folder of .jsonl files, indexed on disk and read on demand",
        indexed_text_options({{"path", "string", "", "a JSONL file or a folder of .jsonl files", true}})}},
  };
  return registry;
}

}  // namespace perceiver::datasets
