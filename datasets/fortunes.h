// The embedded language-identification set: fortunes in eight languages from Debian's fortunes packages.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "datasets/common.h"
#include "datasets/labelled_text.h"

namespace perceiver::datasets {

// ---- Fortunes language identification ----
struct FortuneSource {
  std::string label;                    // language code, e.g. "de"
  std::filesystem::path path;           // a directory or one file
  bool recursive = false;
  std::vector<std::string> exclude;     // file names (not paths) left out
  LegacyEncoding fallback = LegacyEncoding::kNone;  // used for entries that are not valid UTF-8
};

// en (fortunes, fortunes-min top-level files), de, es, it, ru, cs, pl, pt (fortunes-br) under `root`.
// Files that are mostly another language or not prose are excluded (see the .cpp).
std::vector<FortuneSource> default_fortune_sources(const std::filesystem::path& root = "/usr/share/games/fortunes");

// Entries of a fortune file: text between lines holding only '%' (trailing blank lines trimmed).
std::vector<std::string> parse_fortune_entries(const std::string& bytes);

// Drops the attribution that ends many fortunes: from the first indented line starting with "--"
// ("\t\t-- Author, \"Title\"") to the end, when every line from there on is indented. Attributions are
// names and titles, often in another language than the fortune (English titles under it/, de/), so
// they are label noise for language identification. Column-0 "--" lines (dialogue) are kept.
std::string strip_fortune_attribution(const std::string& entry);

// Cuts an entry (whitespace collapsed) into pieces of at most max_bytes at sentence ends, then spaces,
// never inside a UTF-8 character; pieces shorter than min_bytes are dropped.
std::vector<std::string> split_sentences(const std::string& text, size_t max_bytes, size_t min_bytes);

struct FortuneLangIdOptions {
  std::filesystem::path root = "/usr/share/games/fortunes";
  size_t max_bytes = 256;
  size_t min_bytes = 24;
  double validation_fraction = 0.1;
  double test_fraction = 0.1;
  uint64_t split_seed = 0;
  bool balance = false;  // cap every label at the smallest label's count (per split, deterministic)
};

struct LabelledSplits {
  LabelledText train, validation, test;  // share id2label/label2id
  int64_t undecodable = 0;  // fortune entries that were neither UTF-8 nor decodable with the fallback
  int64_t files = 0;
  // label -> {train, validation, test} counts
  std::map<std::string, std::array<int64_t, 3>> counts() const;
  std::string report() const;  // one line per label with the three counts
};

// Throws (asking to run scripts/setup.sh) when a language's files are missing.
LabelledSplits fortune_language_id(const FortuneLangIdOptions& options = {});

}  // namespace perceiver::datasets
