// Labelled text at any size: a CSV, TSV or JSONL file indexed row by row in one streaming pass (each
// row's byte range and its label field), its texts read and parsed again when the loader asks for
// them. Rows are accepted or skipped exactly as read_labelled_text does.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "datasets/labelled_text.h"

namespace perceiver::datasets {

// Texts read one at a time; text() may throw BadExample (a file changed or vanished).
class TextRows {
 public:
  virtual ~TextRows() = default;
  virtual int64_t size() const = 0;
  virtual std::string text(int64_t index) const = 0;
};

// What every labelled-text source gives the task: texts on demand, labels in memory.
struct LabelledTexts {
  std::shared_ptr<const TextRows> texts;
  std::vector<int64_t> labels;           // index into id2label
  std::vector<std::string> label_names;  // the raw label field of each row
  std::vector<std::string> id2label;     // sorted label names
  int64_t skipped = 0;                   // rows left out: invalid UTF-8, missing field, bad JSON

  int64_t size() const { return texts ? texts->size() : 0; }
  // Texts already in memory (the embedded fortunes).
  static LabelledTexts in_memory(LabelledText text);
};

// The file's rows, as read_labelled_text would read them, without holding their texts.
LabelledTexts open_labelled_text(const std::filesystem::path& path, const LabelledReadOptions& options = {});

}  // namespace perceiver::datasets
