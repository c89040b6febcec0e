// Text files on disk as a TextStream, at any size. One streaming pass (bounded memory, progress in the
// log) builds an index that describes the corpus's byte stream as pieces of the files: 16 bytes per
// piece, and a piece spans every stretch of text whose bytes are the stream's own (a clean file with
// LF line ends is one piece whatever its size). Windows then read their bytes from the files on
// demand. The index lives in a cache folder, keyed on the path and the reading options, and records
// every file's size and modification time: a file added, removed or changed is re-indexed, never
// misread. JSONL is converted once into a packed file of its texts beside the index (parsing a line
// per window would re-parse long documents for every window they span).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "datasets/file_store.h"
#include "datasets/text_corpus.h"
#include "datasets/text_stream.h"

namespace perceiver::datasets {

struct TextIndexOptions {
  TextReadOptions read;             // documents per file, JSONL field, directory filter
  std::string separator = "\n";     // bytes between consecutive documents
  std::filesystem::path cache_dir;  // where indexes are kept; empty: default_cache_dir()
};

struct TextIndexSummary {
  std::filesystem::path index_file;
  int64_t files = 0;
  int64_t documents = 0;
  int64_t invalid_lines = 0;  // skipped: bad UTF-8, bad JSON, a missing or non-string field
  int64_t bytes = 0;          // of the stream, separators included
  int64_t pieces = 0;
  bool built = false;         // this open built (or rebuilt) the index
};

class IndexedText : public TextStream {
 public:
  // The corpus at `path` (a file or a directory), building its index first when it is missing or stale.
  static std::shared_ptr<const IndexedText> open(const std::filesystem::path& path, const TextIndexOptions& options);

  int64_t size() const override { return static_cast<int64_t>(bytes_); }
  void read(int64_t offset, int64_t count, char* out) const override;
  std::vector<std::string> sample_documents(int64_t max_count, int64_t max_bytes) const override;
  const TextIndexSummary& summary() const { return summary_; }

  struct Piece {
    uint64_t stream_start;  // where the piece starts in the stream
    uint64_t address;       // store << kOffsetBits | offset: where its bytes are
  };
  static constexpr int kOffsetBits = 40;  // 1 TiB per file

 private:
  IndexedText() = default;

  std::string pool_;               // store 0: "\n" and the separator, for bytes no file holds
  std::vector<FileStamp> stores_;  // stores 1..: the files bytes are read from (stores_[0] unused)
  std::vector<Piece> pieces_;
  uint64_t bytes_ = 0;
  std::string separator_;
  TextIndexSummary summary_;
};

}  // namespace perceiver::datasets
