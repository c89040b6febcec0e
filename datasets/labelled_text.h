// Labelled text for sequence classification: CSV/TSV (RFC 4180 quoting) and JSONL readers with label maps,
// and the embedded language-identification set built from Debian's fortunes packages.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "datasets/common.h"

namespace perceiver::datasets {

struct LabelledText {
  std::vector<std::string> texts;   // valid UTF-8
  std::vector<int64_t> labels;      // index into id2label
  std::vector<std::string> label_names;  // the raw label field of each text (multi-label lists, numbers)
  std::vector<std::string> id2label;  // sorted label names
  std::map<std::string, int64_t> label2id;
  int64_t skipped = 0;  // rows dropped: invalid UTF-8, missing field, bad JSON, wrong column count

  // Counts per label id.
  std::vector<int64_t> label_counts() const;
};

struct LabelledReadOptions {
  std::string text_field = "text";   // CSV header name / JSON key (or a 0-based column index without header)
  std::string label_field = "label";
  char delimiter = 0;                // 0: '\t' for .tsv, ',' otherwise
  bool header = true;                // CSV/TSV first row names the columns
  std::string list_separator = "|";  // joins a JSONL label list into one label field
};

// Format from the extension: .jsonl, .tsv, anything else CSV.
LabelledText read_labelled_text(const std::filesystem::path& path, const LabelledReadOptions& options = {});

// RFC 4180 rows (quoted fields may hold delimiters, doubled quotes and newlines). Throws on an unterminated quote.
std::vector<std::vector<std::string>> parse_delimited(const std::string& bytes, char delimiter);

// Builds label maps from raw (text, label name) pairs: ids follow sorted label names.
LabelledText make_labelled(std::vector<std::string> texts, const std::vector<std::string>& label_names);

// Multi-label targets: each raw label field split on `separator` (blank parts dropped) into a
// multi-hot (N, L) float tensor. The label set is the sorted union unless `id2label` is given (an
// evaluation set scored with the training labels); a label outside it is an error naming it.
struct MultiLabelTargets {
  torch::Tensor targets;
  std::vector<std::string> id2label;
};
MultiLabelTargets multi_label_targets(const std::vector<std::string>& raw, const std::string& separator,
                                      const std::string& source, std::vector<std::string> id2label = {});

// Regression targets: each raw label field a number -> (N,) float; an error names the first bad one.
torch::Tensor regression_targets(const std::vector<std::string>& raw, const std::string& source);

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
