// Whole-word fill-in on held-out text: in each of several documents one word is replaced by as many
// [MASK]s as it has bytes, the masked LM fills the gap (its most likely byte per position), and the
// bytes it got right are counted. A readable check of what a byte-level masked LM has learned, over
// texts the caller chooses (e.g. a run's held-out split), rather than one hand-picked sentence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perceiver/pipelines/fill_mask_pipeline.h"
#include "perceiver/models/runner.h"

namespace perceiver {

struct SpanFillOptions {
  int64_t count = 8;           // documents, spread evenly over the list
  int64_t min_word_bytes = 4;  // a word is a run of ASCII letters; shorter ones are not chosen
  uint64_t seed = 0;           // which word of a document is masked
  int64_t batch_size = 16;
  FillMaskOptions::Decode decode = FillMaskOptions::Decode::kParallel;  // how the gap is filled
};

struct SpanFillExample {
  int64_t document = 0;   // index into the documents given
  std::string masked;     // the text as the model saw it, the gap shown as '_' per byte
  std::string truth;      // the masked word
  std::string predicted;  // the model's bytes for the gap (decoded; invalid UTF-8 shows as U+FFFD)
  int64_t bytes_correct = 0;
};

struct SpanFillReport {
  std::vector<SpanFillExample> examples;
  int64_t bytes = 0;          // masked bytes over all examples
  int64_t bytes_correct = 0;  // of those, predicted exactly (position by position)
  int64_t words_correct = 0;  // gaps filled exactly
};

// Documents are cut to the model's max_position_embeddings - 2 bytes (room for [CLS] and [SEP]);
// a document without a word of min_word_bytes in that part is passed over for the next one.
SpanFillReport fill_word_spans(ModelRunner& runner, const std::vector<std::string>& documents,
                               const SpanFillOptions& options = {});

// <masked> -> "<predicted>" (truth "<truth>", k/n bytes) on one line (newlines shown as spaces).
std::string describe(const SpanFillExample& example);

}  // namespace perceiver
