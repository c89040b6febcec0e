// Plain-text corpora for byte-level masked language modelling: readers (files, directories, JSONL),
// byte windows mapped to PerceiverTokenizer ids, and the embedded King James Bible (Debian bible-kjv-text).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "datasets/text_stream.h"

namespace perceiver::datasets {

enum class TextUnit { kFile, kParagraph, kLine };

struct TextReadOptions {
  TextUnit unit = TextUnit::kFile;     // what one document is for plain-text files
  std::string jsonl_field = "text";    // field read from each JSONL object
  bool jsonl = false;                  // every file is JSONL whatever its extension (else only .jsonl files)
  std::vector<std::string> extensions = {".txt", ".text", ".md", ".jsonl"};  // directory scan filter ("" = all)
};

struct TextCorpus {
  std::vector<std::string> documents;  // valid UTF-8, never empty
  int64_t files = 0;
  int64_t invalid_lines = 0;  // lines skipped: invalid UTF-8, bad JSON, missing/non-string field
};

// The files a corpus path names: a directory's files that pass options.extensions (recursive, sorted
// by path), or the path itself; throws naming the path when it does not exist.
std::vector<std::filesystem::path> text_files(const std::filesystem::path& path, const TextReadOptions& options = {});
// Whether `file` is read as JSONL (options.jsonl, or a .jsonl extension).
bool reads_as_jsonl(const std::filesystem::path& file, const TextReadOptions& options = {});

// One JSONL line's `field`, when it is a document (a non-empty string). Blank lines and empty texts give
// nothing; bad UTF-8, bad JSON and a missing or non-string field also count in `invalid_lines`.
std::optional<std::string> jsonl_document(std::string_view line, const std::string& field, int64_t& invalid_lines);

// One file: `.jsonl` reads `jsonl_field` of each line, anything else is plain text split by `unit`.
TextCorpus read_text_file(const std::filesystem::path& path, const TextReadOptions& options = {});
// A directory (recursive, files in sorted path order) or a single file.
TextCorpus read_text(const std::filesystem::path& path, const TextReadOptions& options = {});

// Byte ids of `text` (byte b -> b + 6), int64 1-D.
torch::Tensor text_to_ids(const std::string& text);
// Inverse of text_to_ids, dropping special ids.
std::string ids_to_text(const torch::Tensor& ids);

// Concatenates the documents and cuts the bytes into (N, length) int64 id windows, all at once (the
// trainer reads windows one by one through ByteWindowDataset instead).
torch::Tensor make_byte_windows(const std::vector<std::string>& documents, const WindowOptions& options);
// 1 where id != [PAD], int64 like the ids.
torch::Tensor attention_mask_from_ids(const torch::Tensor& ids);

// ---- King James Bible (Debian bible-kjv-text) ----
struct BibleVerse {
  std::string reference;  // e.g. "Ge1:1"
  std::string text;
};

// /usr/lib/bible.data located through dpkg's file list; throws (asking to run scripts/setup.sh) when missing.
std::filesystem::path kjv_data_path();
// Parses bible-kjv's "EC02 Compressed Data File" (independently LZW-compressed 64 KiB windows) into verses.
std::vector<BibleVerse> read_kjv(const std::filesystem::path& path = kjv_data_path());

struct KjvSplitOptions {
  int64_t holdout_every = 20;  // verse i goes to validation when i % holdout_every == holdout_every - 1
};
struct TextSplit {
  std::vector<std::string> train;
  std::vector<std::string> validation;
};
TextSplit split_kjv(const std::vector<BibleVerse>& verses, const KjvSplitOptions& options = {});

// Decoder for the Unix `compress` (.Z) code stream without its 3-byte header, as bible.data stores it.
std::string lzw_decompress(const std::string& codes, int max_bits = 16, bool block_mode = true);

}  // namespace perceiver::datasets
