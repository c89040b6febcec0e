// Byte-level token classification data: texts with one label id per byte (IOB2 tags, -100 where a
// byte is not scored). Sources (datasets/sources.h, kind "token-labels"): jsonl (character-offset
// spans), conll (one token per line) and langseg (code-switched text generated from the fortunes
// language-ID set). Label names are "O" first, then the B-/I- tags sorted.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace perceiver::datasets {

// The label id of a byte that is not scored (PyTorch's cross-entropy ignore_index).
constexpr int64_t kIgnoreLabel = -100;

// A text and one label id per byte of it (-100: no label, e.g. a token's other bytes under
// label_bytes: first, or the spaces CoNLL tokens are joined with).
struct LabelledBytes {
  std::string text;
  std::vector<int64_t> labels;  // text.size() entries
};

// Texts with byte labels, read on demand; label ids index label_names (IOB2 tags: "O", "B-PER", "I-PER", ...;
// "O" first, then sorted). get(i) may throw BadExample (datasets/loader.h) when a file changed since it was indexed.
struct TokenLabelSet {
  int64_t count = 0;
  std::function<LabelledBytes(int64_t)> get;
  std::vector<std::string> label_names;
};

// Character offsets [start, end) of a UTF-8 text (code points) -> byte offsets; throws std::invalid_argument
// for offsets past the end, negative ones, or start > end.
std::pair<int64_t, int64_t> char_span_to_bytes(const std::string& text, int64_t start, int64_t end);

// Byte offset -> character offset (for predict's answers): the number of characters that begin before
// `byte_offset`, so an offset inside a multi-byte character rounds up to the next character. Throws
// std::invalid_argument outside [0, text.size()].
int64_t byte_to_char_offset(const std::string& text, int64_t byte_offset);

// IOB1 ("BIO" as CoNLL-2003 ships it: I- may start an entity, B- only between two adjacent entities of
// one type) -> IOB2 (every entity starts with B-). Throws std::invalid_argument for a tag that is not
// O, B-X or I-X.
std::vector<std::string> iob1_to_iob2(const std::vector<std::string>& tags);

// Whether `tag` is O, B-X or I-X (X not empty).
bool is_iob_tag(const std::string& tag);

// "O", then B-X and I-X for every entity type X of `types`, sorted: the label names of a set whose
// entities have those types.
std::vector<std::string> iob2_label_names(const std::vector<std::string>& types);

// The sentences of a text as langseg cuts them: a sentence ends after '.', '!' or '?' followed by
// whitespace; each is trimmed of whitespace, and empty ones are dropped.
std::vector<std::string> sentences_of(const std::string& text);

// An in-memory set (tests, programs that build their data themselves). Throws std::invalid_argument when a
// text's labels are not one per byte or an id is neither -100 nor an index into label_names.
TokenLabelSet token_label_set_from(std::vector<LabelledBytes> examples, std::vector<std::string> label_names);

// The same set with its ids re-expressed over `label_names` (an evaluation set scored with the training
// set's labels). Throws std::invalid_argument naming the labels of `set` that `label_names` lacks.
TokenLabelSet with_label_names(TokenLabelSet set, const std::vector<std::string>& label_names);

}  // namespace perceiver::datasets
