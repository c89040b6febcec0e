// Fill-mask (PerceiverForMaskedLM), as HF's fill-mask pipeline answers it, for a byte-level model.
//
// The model predicts every [MASK] in one pass, each independently. A span of adjacent [MASK]s is one
// gap of as many bytes: its candidates are byte strings scored by the product of their bytes'
// probabilities (the k best found exactly by a beam of width k over the span). Candidates are shown
// decoded as UTF-8 with invalid sequences replaced by U+FFFD (the tokenizer's decode, as HF's
// errors="replace"), so a candidate that ends inside a multi-byte character shows a U+FFFD; `tokens`
// keeps the exact ids. Each [MASK] also gets HF's own answer: its k best tokens with scores.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perceiver/models/runner.h"

namespace perceiver {

struct TokenScore {
  int64_t token = 0;
  std::string token_str;  // the token decoded on its own
  double score = 0;       // softmax probability at its position
};

struct SpanFilling {
  std::string text;             // the candidate bytes, decoded
  std::vector<int64_t> tokens;  // one id per [MASK] of the span
  double score = 0;             // product of the per-position probabilities
  std::string sequence;         // the input with this span filled (other [MASK]s left as they are)
};

struct MaskedSpan {
  int64_t start = 0;   // position of its first [MASK] in the encoded input (position 0 is [CLS])
  int64_t length = 0;  // number of [MASK]s
  std::vector<SpanFilling> top_k;                   // best first
  std::vector<std::vector<TokenScore>> positions;  // per [MASK]: its k best tokens, best first
};

struct MaskFill {
  std::string text;       // the input
  std::string filled;     // the input with every [MASK] replaced by its most likely byte
  std::string predicted;  // the most likely bytes alone, in order
  std::vector<MaskedSpan> spans;
  torch::Tensor logits;  // (L, vocabulary) at the L positions of the encoded input
};

struct FillMaskOptions {
  int64_t top_k = 5;
  int64_t batch_size = 16;  // texts per forward pass
  // kParallel: every [MASK] from one pass, each independently (HF's pipeline). kIterative (mask-predict):
  // one pass per [MASK]; each pass fills the masked byte the model is surest of, and the rest are
  // predicted again given it. A span's one candidate is then that filling, scored by the probabilities
  // its bytes had when they were chosen; `positions` and `logits` are those of the deciding pass.
  // kBeam: mask-predict that keeps the `beam_width` likeliest partial fillings of each text (each
  // extended at its surest masked position by its `beam_width` likeliest bytes) and answers with the
  // likeliest complete one.
  enum class Decode { kParallel, kIterative, kBeam } decode = Decode::kParallel;
  int64_t beam_width = 8;
};
// "parallel", "iterative" or "beam"; throws naming the choices.
FillMaskOptions::Decode parse_decode(const std::string& name);

// Texts are truncated to the model's max_position_embeddings; a text without a [MASK] there is an
// error naming it (checked before anything runs).
std::vector<MaskFill> fill_mask(ModelRunner& runner, const std::vector<std::string>& texts,
                                const FillMaskOptions& options = {});

}  // namespace perceiver
