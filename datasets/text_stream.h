// A text corpus as one byte stream (its documents joined by a separator) read by byte range, and the
// masked-LM windows cut from it on demand. In-memory corpora (the embedded KJV) and indexed files on
// disk (datasets/text_index.h) are both TextStreams, so the windows never depend on where text lives.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datasets/loader.h"

namespace perceiver::datasets {

class TextStream {
 public:
  virtual ~TextStream() = default;
  virtual int64_t size() const = 0;  // bytes, separators included
  // Copies bytes [offset, offset + count) to out; throws BadExample when a file behind them is unreadable.
  virtual void read(int64_t offset, int64_t count, char* out) const = 0;
  // Up to max_count documents spread evenly over the corpus, for fill-in demos: the documents themselves
  // where the stream holds them, else the separator-delimited text around evenly spaced offsets (at
  // most max_bytes each). Unreadable parts are passed over.
  virtual std::vector<std::string> sample_documents(int64_t max_count, int64_t max_bytes) const = 0;
};

// Documents held in memory (small embedded corpora).
class MemoryTextStream : public TextStream {
 public:
  MemoryTextStream(std::vector<std::string> documents, const std::string& separator);
  int64_t size() const override { return static_cast<int64_t>(bytes_.size()); }
  void read(int64_t offset, int64_t count, char* out) const override;
  std::vector<std::string> sample_documents(int64_t max_count, int64_t max_bytes) const override;

 private:
  std::vector<std::string> documents_;
  std::string bytes_;
};

struct WindowOptions {
  int64_t length = 2048;         // ids per window, specials included
  bool add_cls_sep = true;       // [CLS] window [SEP]
  bool pad_last = true;          // keep the final short window, padded with [PAD]; else drop it
  std::string separator = "\n";  // bytes placed between consecutive documents
};

// Window i holds the stream's bytes [i * body, (i + 1) * body) as PerceiverTokenizer ids (byte + 6),
// with body = length - 2 when wrapped in [CLS] ... [SEP]: examples {"input_ids", "attention_mask"},
// both int64 of `length`. Bytes are read when a window is asked for.
class ByteWindowDataset : public Dataset {
 public:
  ByteWindowDataset(std::shared_ptr<const TextStream> stream, const WindowOptions& options);
  int64_t size() const override { return windows_; }
  Example get(int64_t index) const override;
  const TextStream& stream() const { return *stream_; }

 private:
  std::shared_ptr<const TextStream> stream_;
  WindowOptions options_;
  int64_t body_ = 0;
  int64_t windows_ = 0;
};

}  // namespace perceiver::datasets
