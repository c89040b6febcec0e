// Token classification (PerceiverForTokenClassification, perceiver/models/heads.h) as HF's
// TokenClassificationPipeline answers it, for a byte-level model: one label per byte, grouped into
// entities with character offsets.
//
// Inputs. A text is fed as its plain byte ids (byte b -> b + 6, PerceiverTokenizer's ids), without
// [CLS]/[SEP] and with an attention mask of ones, so that row i of the logits is byte i of the text:
// what the token-classification training task feeds (its labels are one per byte). A text longer than
// the model's max_position_embeddings is cut into overlapping windows (byte_windows), each run on its
// own, and the logits are stitched back (stitch_logits): each byte is scored by the window in which it
// is farthest from an edge. Nothing is truncated.
//
// Aggregation (HF's aggregation_strategy, with bytes for tokens). Scores are softmax probabilities;
// entities whose label is an ignored one ("O") are dropped.
// - none: one entity per byte, its argmax label as it is named (B-PER, ...), score its probability.
// - simple: every byte takes its argmax label; consecutive bytes are grouped as HF's group_entities
//   does: a byte joins the group before it when its tag equals the group's last tag and it is not a
//   B- (a label without a B-/I- prefix continues like an I-); the group's label is the first member's
//   label after its first "-" (HF's split("-", 1)[-1]: B-PER -> PER), its score the mean of its
//   members' scores.
// - first / max / average: a label per word first, then the words grouped as simple groups bytes (the
//   group's score is the mean of its words' scores). Words are runs of non-whitespace bytes (ASCII
//   whitespace: space, \t, \n, \v, \f, \r); whitespace is in no word and is not scored, as a word-aware
//   tokenizer gives HF's pipeline no token for it, so "New" B-LOC + "York" I-LOC is one entity "New York"
//   whatever the space between them was labelled (a CoNLL-trained model never learns a label for it).
//   first: the word's first byte's argmax label and probability; max: the argmax label and probability
//   of the byte whose best probability is highest (the earliest on ties); average: the argmax of the
//   mean of the bytes' probability vectors, score that mean probability.
// Ties between labels go to the lower id (numpy's argmax).
//
// Decoding (not in HF's pipeline). `argmax` above labels each byte on its own. `viterbi` and
// `viterbi_separated` instead label the bytes with the likeliest valid IOB2 sequence (tag_decoding.h),
// each byte's score the probability of its label; they work with none, simple, first and max, which
// build on the bytes' labels (first/max take a word's label from its first/surest byte), and not with
// average, which chooses from mean probabilities.
//
// Offsets. Entities carry byte offsets and CHARACTER offsets: the characters whose bytes the entity's
// bytes touch (an entity that starts or ends inside a multi-byte character takes all of it), counted in
// the text decoded as UTF-8 with each maximal invalid sequence one U+FFFD (PerceiverTokenizer's decode,
// Python's errors="replace"), so that valid UTF-8 counts code points, as Python's str indices do.
// `word` is those characters.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "perceiver/models/runner.h"
#include "perceiver/pipelines/tag_decoding.h"

namespace perceiver {

// Windows of `window` positions over a sequence of `length`, consecutive ones overlapping by at least
// `overlap` (0 <= overlap < window); the last ends at length. One window when length <= window.
// Windows start every window - overlap positions; the last is moved back to end at `length` (so it
// overlaps the one before it by more). Throws std::invalid_argument for window < 1, an overlap outside
// [0, window) or a negative length.
struct ByteWindow {
  int64_t start = 0, end = 0;
};
std::vector<ByteWindow> byte_windows(int64_t length, int64_t window, int64_t overlap);

// Which window scores each position: the one where it is farthest from an edge (ties: the earlier).
// Returns, per window, the [begin, end) range of positions it owns; the owned ranges partition
// [0, length) (a window may own an empty range). The windows must be in order of start (and of end),
// start at 0, end at `length` and leave no gap; std::invalid_argument otherwise.
std::vector<ByteWindow> owned_ranges(const std::vector<ByteWindow>& windows, int64_t length);

// Per-position logits of a long text stitched from its windows (each position from its owning
// window). window_logits[i] is (windows[i].end - windows[i].start, num_labels); the result is
// (length, num_labels).
torch::Tensor stitch_logits(const std::vector<ByteWindow>& windows, const std::vector<torch::Tensor>& window_logits,
                            int64_t length);

enum class Aggregation { none, simple, first, max, average };
Aggregation parse_aggregation(const std::string& name);  // throws std::invalid_argument naming the known ones
const char* to_string(Aggregation aggregation);

struct TokenEntity {
  std::string label;  // none: the byte's label (B-PER); else the entity's tag (PER)
  double score = 0;
  int64_t start = 0, end = 0;  // CHARACTER offsets into the text
  std::string word;            // the characters [start, end)
  int64_t byte_start = 0, byte_end = 0;  // the bytes [byte_start, byte_end) the entity was made of
};

struct TokenClassificationResult {
  std::string text;
  std::vector<TokenEntity> entities;
  torch::Tensor logits;  // (bytes, num_labels), as the model returned them (stitched for long texts)
};

struct TokenClassificationOptions {
  Aggregation aggregation = Aggregation::simple;
  TagDecode decode = TagDecode::argmax;  // each byte's label: its own argmax, or the likeliest valid IOB2 sequence
  int64_t overlap = 32;     // least overlap of consecutive windows of a long text, in bytes (capped at half a window)
  int64_t batch_size = 16;  // windows per forward pass (the windows of all texts are batched together)
  std::vector<std::string> ignore_labels = {"O"};  // entities with these labels are left out (HF's ignore_labels)
};

// The options a training checkpoint's run.yaml implies: its task.decode (else the defaults).
TokenClassificationOptions token_classification_options_for(const ModelRunner& runner);

// PerceiverForTokenClassification on each text; an empty text gives no entities and (0, num_labels)
// logits. Windows are max_position_embeddings bytes, overlapping by min(overlap, window / 2) (as flow
// tiles cap theirs). Throws std::invalid_argument for another architecture, batch_size < 1 or a negative
// overlap.
std::vector<TokenClassificationResult> classify_tokens(ModelRunner& runner, const std::vector<std::string>& texts,
                                                       const TokenClassificationOptions& options = {});

// The entities of `text` from its per-byte probabilities (bytes, num_labels), labels named by
// id2label (an id it lacks is named by its number). Throws std::invalid_argument for a viterbi decoding with average.
std::vector<TokenEntity> aggregate(const std::string& text, const torch::Tensor& probabilities,
                                   const std::map<int64_t, std::string>& id2label, Aggregation aggregation,
                                   const std::vector<std::string>& ignore_labels = {"O"},
                                   TagDecode decode = TagDecode::argmax);

// The model's input ids for `bytes`: byte b -> b + 6, no special tokens; int64, 1-D.
torch::Tensor token_classification_ids(std::string_view bytes);

// Per byte of `text`, the index of the character it belongs to, counted as described above (a maximal
// invalid sequence is one character); text.size() entries.
std::vector<int64_t> byte_characters(std::string_view text);

}  // namespace perceiver
