// PerceiverTokenizer: HF's byte-level tokenizer for Perceiver IO language models.
// Ids 0-5 are [PAD] [BOS] [EOS] [MASK] [CLS] [SEP]; byte b is id b + 6 (262 ids in all). Encoding, padding,
// truncation and decoding follow transformers' PreTrainedTokenizer exactly (see tokenizer.cpp for the quirks).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace perceiver {

// One encoded sequence (HF's BatchEncoding entry for one example).
struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;
  std::optional<std::vector<int64_t>> special_tokens_mask;  // set when return_special_tokens_mask
  std::optional<int64_t> length;                             // set when return_length
};

enum class Padding { None, Longest, MaxLength };
enum class Truncation { DoNotTruncate, LongestFirst, OnlyFirst, OnlySecond };
enum class Side { Right, Left };

// HF's names: "longest" | "max_length" | "do_not_pad", and "longest_first" | "only_first" | "only_second" |
// "do_not_truncate". Anything else throws.
Padding parse_padding(const std::string& name);
Truncation parse_truncation(const std::string& name);
const char* to_string(Side side);

// The keyword arguments of HF's tokenizer(text, text_pair, ...).
struct EncodeOptions {
  bool add_special_tokens = true;
  Padding padding = Padding::None;  // padding=False
  // Unset is HF's truncation=None: longest_first when max_length is given and padding is off, else none.
  std::optional<Truncation> truncation;
  std::optional<int64_t> max_length;  // unset: model_max_length wherever padding/truncation needs one
  std::optional<int64_t> pad_to_multiple_of;
  bool return_special_tokens_mask = false;
  bool return_length = false;
  bool split_special_tokens = false;  // treat "[MASK]" etc. in the text as plain bytes
  Side padding_side = Side::Right;
  Side truncation_side = Side::Right;
};

// The keyword arguments of HF's tokenizer.decode(ids, ...).
struct DecodeOptions {
  bool skip_special_tokens = false;
  bool clean_up_tokenization_spaces = false;  // HF's default for this tokenizer
};

struct SpecialToken {
  const char* name;     // "pad", "bos", ...
  const char* content;  // "[PAD]", ...
  int64_t id;
};

class PerceiverTokenizer {
 public:
  static constexpr int64_t pad_token_id = 0;
  static constexpr int64_t bos_token_id = 1;
  static constexpr int64_t eos_token_id = 2;
  static constexpr int64_t mask_token_id = 3;
  static constexpr int64_t cls_token_id = 4;
  static constexpr int64_t sep_token_id = 5;
  static constexpr int64_t num_special_tokens = 6;
  // HF's tokenizer.vocab_size counts the bytes only; len(tokenizer) (= the model's config.vocab_size) is num_ids.
  static constexpr int64_t vocab_size = 256;
  static constexpr int64_t num_ids = num_special_tokens + vocab_size;
  static constexpr int64_t model_max_length = 2048;

  // The six special tokens in id order; there is no unknown token.
  static const std::vector<SpecialToken>& special_tokens();
  static std::vector<std::string> model_input_names();
  static bool is_special_id(int64_t id) { return id >= 0 && id < num_special_tokens; }

  // Tokens as HF returns them: special-token strings, and each byte b as the UTF-8 text of the code point b.
  std::vector<std::string> tokenize(const std::string& text, bool split_special_tokens = false) const;
  // Ids outside [0, num_ids) throw.
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids,
                                                 bool skip_special_tokens = false) const;

  // text is taken as UTF-8 bytes (invalid UTF-8 passes through byte by byte); pair makes [CLS] A [SEP] B [SEP].
  Encoding encode(const std::string& text, const std::optional<std::string>& pair = std::nullopt,
                  const EncodeOptions& options = {}) const;
  // Batched as HF's tokenizer(list): sequences are padded together (padding=longest pads to the batch's longest).
  std::vector<Encoding> batch_encode(const std::vector<std::string>& texts, const EncodeOptions& options = {}) const;
  std::vector<Encoding> batch_encode(const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
                                     const EncodeOptions& options = {}) const;

  // Bytes joined and decoded as Python's bytes.decode("utf-8", errors="replace"); special tokens appear as their
  // text unless skipped. Ids outside [0, num_ids) throw, naming the id and its position.
  std::string decode(const std::vector<int64_t>& ids, const DecodeOptions& options = {}) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
    return decode(ids, DecodeOptions{skip_special_tokens, false});
  }
  std::vector<std::string> batch_decode(const std::vector<std::vector<int64_t>>& batch,
                                        const DecodeOptions& options = {}) const;

 private:
  std::vector<Encoding> batch_encode_impl(const std::vector<std::string>& texts,
                                          const std::vector<std::string>* pairs, const EncodeOptions& options) const;
};

// Python's bytes.decode("utf-8", errors="replace"): each maximal invalid subpart becomes one U+FFFD.
std::string utf8_decode_replace(std::string_view bytes);
// The unit of `bytes` at `i` that utf8_decode_replace decodes as one character: a well-formed UTF-8
// sequence, or a maximal invalid subpart (one U+FFFD). length >= 1.
struct Utf8Unit {
  size_t length = 1;
  bool valid = true;
};
Utf8Unit utf8_unit(std::string_view bytes, size_t i);

// HF's clean_up_tokenization: " ." -> ".", " 's" -> "'s", ... applied in HF's order.
std::string clean_up_tokenization(std::string text);

// (B, L) int64 input_ids and attention_mask for the model; ragged rows are right-padded with [PAD] / 0.
struct ModelInputs {
  torch::Tensor input_ids;
  torch::Tensor attention_mask;
};
ModelInputs to_model_inputs(const std::vector<Encoding>& batch);

}  // namespace perceiver
