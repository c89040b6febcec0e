#include "datasets/fortunes.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <stdexcept>

namespace perceiver::datasets {
namespace fs = std::filesystem;

std::vector<FortuneSource> default_fortune_sources(const fs::path& root) {
  using E = LegacyEncoding;
  return {
      {"cs", root / "cs", false, {"klasik-sk"}, E::kNone},  // klasik-sk is Slovak
      {"de", root / "de", false, {"asciiart", "translations"}, E::kLatin1},  // translations: English/German pairs
      {"en", root, false, {"brasil", "ascii-art"}, E::kLatin1},  // top-level files only; the it/ symlinks are skipped
      {"es", root / "es", false, {"varios.fortunes-pre"}, E::kLatin1},  // es/off (offensive) left out
      {"it", root / "it", false, {"banner"}, E::kLatin1},
      {"pl", root / "pl", false, {}, E::kNone},
      {"pt", root / "brasil", false, {}, E::kLatin1},
      {"ru", root / "ru", false, {}, E::kKoi8r},
  };
}

std::vector<std::string> parse_fortune_entries(const std::string& bytes) {
  std::vector<std::string> entries;
  std::string current;
  auto flush = [&] {
    while (!current.empty() && (current.back() == '\n' || current.back() == ' ' || current.back() == '\t'))
      current.pop_back();
    const size_t start = current.find_first_not_of("\n");
    if (start != std::string::npos) entries.push_back(current.substr(start));
    current.clear();
  };
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) end = bytes.size();
    std::string_view line(bytes.data() + pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "%") {
      flush();
    } else {
      current.append(line);
      current += '\n';
    }
    pos = end + 1;
  }
  flush();
  return entries;
}

std::string strip_fortune_attribution(const std::string& entry) {
  auto is_indented = [](std::string_view line) { return !line.empty() && (line[0] == ' ' || line[0] == '\t'); };
  size_t cut = std::string::npos;  // start of the attribution, if the entry ends with one
  size_t pos = 0;
  while (pos < entry.size()) {
    size_t end = entry.find('\n', pos);
    if (end == std::string::npos) end = entry.size();
    const std::string_view line(entry.data() + pos, end - pos);
    const size_t first = line.find_first_not_of(" \t");
    const bool blank = first == std::string_view::npos;
    if (!blank && !is_indented(line)) {
      cut = std::string::npos;  // prose after an indented "--" line: that was no attribution
    } else if (!blank && cut == std::string::npos && line.substr(first, 2) == "--") {
      cut = pos;
    }
    pos = end + 1;
  }
  if (cut == std::string::npos) return entry;
  std::string out = entry.substr(0, cut);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\t')) out.pop_back();
  return out;
}

namespace {

std::string collapse_whitespace(const std::string& text) {
  std::string out;
  bool space = false;
  for (const char c : text) {
    const bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    if (ws) {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

// Largest cut <= limit that is not inside a UTF-8 sequence.
size_t utf8_floor(const std::string& s, size_t limit) {
  limit = std::min(limit, s.size());
  while (limit > 0 && limit < s.size() && (static_cast<unsigned char>(s[limit]) & 0xC0) == 0x80) --limit;
  return limit;
}

}  // namespace

std::vector<std::string> split_sentences(const std::string& text, size_t max_bytes, size_t min_bytes) {
  if (max_bytes < 8) throw std::invalid_argument("split_sentences: max_bytes must be >= 8");
  const std::string flat = collapse_whitespace(text);
  // Sentences end after . ! ? … followed by a space.
  std::vector<std::string> sentences;
  size_t start = 0;
  for (size_t i = 0; i + 1 < flat.size(); ++i) {
    const char c = flat[i];
    if ((c == '.' || c == '!' || c == '?') && flat[i + 1] == ' ') {
      sentences.push_back(flat.substr(start, i + 1 - start));
      start = i + 2;
    }
  }
  if (start < flat.size()) sentences.push_back(flat.substr(start));

  std::vector<std::string> pieces;
  std::string current;
  auto emit = [&](std::string piece) {
    if (piece.size() >= min_bytes) pieces.push_back(std::move(piece));
  };
  for (std::string s : sentences) {
    if (!current.empty() && current.size() + 1 + s.size() <= max_bytes) {
      current += ' ';
      current += s;
      continue;
    }
    if (!current.empty()) emit(std::move(current));
    current.clear();
    while (s.size() > max_bytes) {  // one long sentence: cut at the last space, else at a character boundary
      size_t cut = s.rfind(' ', max_bytes);
      if (cut == std::string::npos || cut == 0) cut = utf8_floor(s, max_bytes);
      if (cut == 0) cut = s.size();
      emit(s.substr(0, cut));
      s = s.substr(std::min(s.size(), cut + (s[std::min(cut, s.size() - 1)] == ' ' ? 1 : 0)));
    }
    current = std::move(s);
  }
  if (!current.empty()) emit(std::move(current));
  return pieces;
}

namespace {

bool skipped_name(const std::string& name) {
  auto ends = [&](const std::string& suf) {
    return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  return ends(".dat") || ends(".u8") || name.empty() || name[0] == '.';
}

std::vector<fs::path> fortune_files(const FortuneSource& src) {
  std::error_code ec;
  if (fs::is_regular_file(src.path, ec)) return {src.path};
  if (!fs::is_directory(src.path, ec))
    throw std::runtime_error("fortunes for '" + src.label + "' not found at '" + src.path.string() +
                             "'; run scripts/setup.sh to install the fortunes packages");
  std::vector<fs::path> files;
  auto consider = [&](const fs::directory_entry& e) {
    // Symlinks duplicate files of other languages (e.g. the top-level it/ links): only real files count.
    if (e.is_symlink() || !e.is_regular_file()) return;
    const std::string name = e.path().filename().string();
    if (skipped_name(name) || std::find(src.exclude.begin(), src.exclude.end(), name) != src.exclude.end()) return;
    files.push_back(e.path());
  };
  if (src.recursive) {
    for (const auto& e : fs::recursive_directory_iterator(src.path)) consider(e);
  } else {
    for (const auto& e : fs::directory_iterator(src.path)) consider(e);
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw std::runtime_error("no fortune files for '" + src.label + "' in '" + src.path.string() +
                             "'; run scripts/setup.sh to install the fortunes packages");
  return files;
}

}  // namespace

std::map<std::string, std::array<int64_t, 3>> LabelledSplits::counts() const {
  std::map<std::string, std::array<int64_t, 3>> out;
  const LabelledText* parts[3] = {&train, &validation, &test};
  for (const auto& name : train.id2label) out[name] = {0, 0, 0};
  for (int s = 0; s < 3; ++s)
    for (const int64_t l : parts[s]->labels) ++out[parts[s]->id2label.at(l)][s];
  return out;
}

std::string LabelledSplits::report() const {
  std::ostringstream os;
  os << "label  train  validation  test\n";
  for (const auto& [name, c] : counts()) os << name << "  " << c[0] << "  " << c[1] << "  " << c[2] << "\n";
  os << "undecodable entries skipped: " << undecodable << "\n";
  return os.str();
}

LabelledSplits fortune_language_id(const FortuneLangIdOptions& options) {
  if (options.validation_fraction < 0 || options.test_fraction < 0 ||
      options.validation_fraction + options.test_fraction >= 1)
    throw std::invalid_argument("fortune_language_id: validation + test fractions must lie in [0, 1)");
  std::vector<std::string> texts[3], names[3];
  LabelledSplits out;
  std::set<std::pair<std::string, std::string>> seen;  // (label, text): duplicates across files counted once
  for (const auto& src : default_fortune_sources(options.root)) {
    for (const auto& file : fortune_files(src)) {
      ++out.files;
      for (const auto& entry : parse_fortune_entries(read_file_bytes(file))) {
        const auto decoded = decode_to_utf8(strip_fortune_attribution(entry), src.fallback);
        if (!decoded) {
          ++out.undecodable;
          continue;
        }
        for (auto& piece : split_sentences(*decoded, options.max_bytes, options.min_bytes)) {
          if (!seen.emplace(src.label, piece).second) continue;
          // Split by content hash: stable across runs, and identical texts always land together.
          const double u = static_cast<double>(stable_hash(piece, options.split_seed) % 1000000) / 1e6;
          const int s = u < options.test_fraction ? 2 : (u < options.test_fraction + options.validation_fraction ? 1 : 0);
          texts[s].push_back(std::move(piece));
          names[s].push_back(src.label);
        }
      }
    }
  }
  if (options.balance) {
    for (int s = 0; s < 3; ++s) {
      std::map<std::string, std::vector<size_t>> by_label;
      for (size_t i = 0; i < names[s].size(); ++i) by_label[names[s][i]].push_back(i);
      size_t cap = SIZE_MAX;
      for (const auto& [_, idx] : by_label) cap = std::min(cap, idx.size());
      std::vector<size_t> keep;
      for (auto& [_, idx] : by_label) {
        std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
          const uint64_t ha = stable_hash(texts[s][a], options.split_seed + 1);
          const uint64_t hb = stable_hash(texts[s][b], options.split_seed + 1);
          return ha != hb ? ha < hb : a < b;
        });
        keep.insert(keep.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(cap));
      }
      std::sort(keep.begin(), keep.end());
      std::vector<std::string> t, n;
      for (const size_t i : keep) {
        t.push_back(std::move(texts[s][i]));
        n.push_back(std::move(names[s][i]));
      }
      texts[s] = std::move(t);
      names[s] = std::move(n);
    }
  }
  // Every split shares the label map of all languages, even one a split happens to lack.
  std::vector<std::string> all_labels;
  for (const auto& src : default_fortune_sources(options.root)) all_labels.push_back(src.label);
  LabelledText* parts[3] = {&out.train, &out.validation, &out.test};
  const LabelledText maps = make_labelled(std::vector<std::string>(all_labels.size()), all_labels);
  for (int s = 0; s < 3; ++s) {
    LabelledText& p = *parts[s];
    p.id2label = maps.id2label;
    p.label2id = maps.label2id;
    p.texts = std::move(texts[s]);
    for (const auto& n : names[s]) p.labels.push_back(maps.label2id.at(n));
  }
  return out;
}

}  // namespace perceiver::datasets
