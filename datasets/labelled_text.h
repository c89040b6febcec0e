// Labelled text for sequence classification: CSV/TSV (datasets/csv.h) and JSONL readers with label
// maps, and multi-label / regression targets. The fortunes language-ID set is in datasets/fortunes.h.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "datasets/common.h"
#include "datasets/csv.h"

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

}  // namespace perceiver::datasets
