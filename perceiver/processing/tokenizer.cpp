#include "perceiver/processing/tokenizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

namespace perceiver {

namespace {

constexpr int64_t kNumSpecial = PerceiverTokenizer::num_special_tokens;
constexpr int64_t kNumIds = PerceiverTokenizer::num_ids;

// One piece of the input after splitting on special-token strings.
struct Piece {
  bool special = false;
  int64_t id = 0;         // when special
  std::string_view text;  // otherwise: raw bytes
};

// HF splits on added tokens with a trie (leftmost, longest). Every special token here is "[" + capitals + "]"
// and none is a prefix of another, so a leftmost scan gives the same cuts. Matching on UTF-8 bytes equals
// matching on code points because the tokens are ASCII.
std::vector<Piece> split_special(std::string_view text, bool split_special_tokens) {
  std::vector<Piece> pieces;
  if (split_special_tokens) {
    if (!text.empty()) pieces.push_back({false, 0, text});
    return pieces;
  }
  const auto& specials = PerceiverTokenizer::special_tokens();
  size_t start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    bool matched = false;
    if (text[pos] == '[') {
      for (const auto& token : specials) {
        const std::string_view content(token.content);
        if (text.compare(pos, content.size(), content) == 0) {
          if (pos > start) pieces.push_back({false, 0, text.substr(start, pos - start)});
          pieces.push_back({true, token.id, {}});
          pos += content.size();
          start = pos;
          matched = true;
          break;
        }
      }
    }
    if (!matched) ++pos;
  }
  if (start < text.size()) pieces.push_back({false, 0, text.substr(start)});
  return pieces;
}

std::vector<int64_t> text_to_ids(std::string_view text, bool split_special_tokens) {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (const auto& piece : split_special(text, split_special_tokens)) {
    if (piece.special) {
      ids.push_back(piece.id);
    } else {
      for (const char c : piece.text) ids.push_back(static_cast<unsigned char>(c) + kNumSpecial);
    }
  }
  return ids;
}

// HF's byte tokens are chr(b): the code point b, which as UTF-8 is one byte below 0x80 and two above.
std::string byte_token(unsigned char b) {
  std::string s;
  if (b < 0x80) {
    s.push_back(static_cast<char>(b));
  } else {
    s.push_back(static_cast<char>(0xC0 | (b >> 6)));
    s.push_back(static_cast<char>(0x80 | (b & 0x3F)));
  }
  return s;
}

void check_id(int64_t id, size_t position, const char* where) {
  if (id < 0 || id >= kNumIds) {
    throw std::runtime_error(std::string("PerceiverTokenizer::") + where + ": id " + std::to_string(id) +
                            " at position " + std::to_string(position) + " is out of range [0, " +
                            std::to_string(kNumIds) + ")");
  }
}

// Strategies after HF's _get_padding_truncation_strategies.
struct Resolved {
  Padding padding;
  Truncation truncation;
  std::optional<int64_t> max_length;
};

Resolved resolve(const EncodeOptions& o) {
  if (o.max_length && *o.max_length < 0) {
    throw std::runtime_error("PerceiverTokenizer: max_length must be >= 0, got " + std::to_string(*o.max_length));
  }
  if (o.pad_to_multiple_of && *o.pad_to_multiple_of <= 0) {
    throw std::runtime_error("PerceiverTokenizer: pad_to_multiple_of must be > 0, got " +
                                std::to_string(*o.pad_to_multiple_of));
  }
  Resolved r{o.padding, Truncation::DoNotTruncate, o.max_length};
  // HF: "Truncation was not explicitly activated but max_length is provided": defaults to longest_first.
  if (o.truncation) {
    r.truncation = *o.truncation;
  } else if (o.max_length && o.padding == Padding::None) {
    r.truncation = Truncation::LongestFirst;
  }
  if (!r.max_length) {
    if (r.padding == Padding::MaxLength || r.truncation != Truncation::DoNotTruncate) {
      r.max_length = PerceiverTokenizer::model_max_length;
    }
  }
  if (r.truncation != Truncation::DoNotTruncate && r.padding != Padding::None && o.pad_to_multiple_of &&
      r.max_length && *r.max_length % *o.pad_to_multiple_of != 0) {
    throw std::runtime_error("PerceiverTokenizer: truncation and padding are both on but max_length (" +
                                std::to_string(*r.max_length) + ") is not a multiple of pad_to_multiple_of (" +
                                std::to_string(*o.pad_to_multiple_of) + ")");
  }
  return r;
}

// Removes n tokens from one end of v (all of them when n >= size, like Python's slicing).
void drop(std::vector<int64_t>& v, int64_t n, Side side) {
  if (n <= 0) return;
  const auto k = static_cast<size_t>(std::min<int64_t>(n, static_cast<int64_t>(v.size())));
  if (side == Side::Right) {
    v.resize(v.size() - k);
  } else {
    v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k));
  }
}

// HF's truncate_sequences. Where the chosen sequence is too short to lose n tokens HF only logs an error and
// leaves both untouched; so do we.
void truncate_sequences(std::vector<int64_t>& ids, std::optional<std::vector<int64_t>>& pair, int64_t n,
                        Truncation strategy, Side side) {
  if (n <= 0) return;
  const auto len_ids = static_cast<int64_t>(ids.size());
  if (strategy == Truncation::OnlyFirst || (strategy == Truncation::LongestFirst && !pair)) {
    if (len_ids > n) drop(ids, n, side);
  } else if (strategy == Truncation::LongestFirst) {
    // Equivalent to removing one token at a time from the longer sequence (the pair on ties).
    const auto len_pair = static_cast<int64_t>(pair->size());
    const int64_t first_remove = std::min(std::abs(len_pair - len_ids), n);
    const int64_t second_remove = n - first_remove;
    int64_t ids_to_move = 0;
    int64_t pair_to_move = 0;
    if (len_ids > len_pair) {
      ids_to_move = first_remove + second_remove / 2;
      pair_to_move = second_remove - second_remove / 2;
    } else {
      ids_to_move = second_remove / 2;
      pair_to_move = first_remove + second_remove - second_remove / 2;
    }
    drop(ids, ids_to_move, side);
    drop(*pair, pair_to_move, side);
  } else if (strategy == Truncation::OnlySecond && pair) {
    if (static_cast<int64_t>(pair->size()) > n) drop(*pair, n, side);
  }
}

// HF's prepare_for_model without the padding step: truncation, special tokens, special-tokens mask.
Encoding prepare_for_model(std::vector<int64_t> ids, std::optional<std::vector<int64_t>> pair, const Resolved& r,
                           const EncodeOptions& o) {
  const int64_t num_added = o.add_special_tokens ? (pair ? 3 : 2) : 0;
  const int64_t total = static_cast<int64_t>(ids.size()) + (pair ? static_cast<int64_t>(pair->size()) : 0) + num_added;
  // HF tests `max_length and ...`: max_length 0 never truncates.
  if (r.truncation != Truncation::DoNotTruncate && r.max_length && *r.max_length > 0 && total > *r.max_length) {
    truncate_sequences(ids, pair, total - *r.max_length, r.truncation, o.truncation_side);
  }
  Encoding e;
  auto& seq = e.input_ids;
  std::vector<int64_t> special_mask;
  if (o.add_special_tokens) {
    seq.push_back(PerceiverTokenizer::cls_token_id);
    seq.insert(seq.end(), ids.begin(), ids.end());
    seq.push_back(PerceiverTokenizer::sep_token_id);
    if (pair) {
      seq.insert(seq.end(), pair->begin(), pair->end());
      seq.push_back(PerceiverTokenizer::sep_token_id);
    }
    // Only the added [CLS]/[SEP] count: a "[MASK]" written in the text is 0 here, as in HF.
    special_mask.assign(seq.size(), 0);
    special_mask.front() = 1;
    special_mask[ids.size() + 1] = 1;
    special_mask.back() = 1;
  } else {
    seq = std::move(ids);
    if (pair) seq.insert(seq.end(), pair->begin(), pair->end());
    special_mask.assign(seq.size(), 0);
  }
  if (o.return_special_tokens_mask) e.special_tokens_mask = std::move(special_mask);
  return e;
}

// HF's _pad for one example (the attention mask is always requested: it is in model_input_names).
void pad_one(Encoding& e, Padding padding, std::optional<int64_t> max_length, const EncodeOptions& o) {
  const auto len = static_cast<int64_t>(e.input_ids.size());
  if (padding == Padding::Longest) max_length = len;
  if (max_length && o.pad_to_multiple_of && *max_length % *o.pad_to_multiple_of != 0) {
    max_length = (*max_length / *o.pad_to_multiple_of + 1) * *o.pad_to_multiple_of;
  }
  e.attention_mask.assign(e.input_ids.size(), 1);
  if (padding == Padding::None || !max_length || len >= *max_length) return;
  const auto diff = static_cast<size_t>(*max_length - len);
  auto extend = [&](std::vector<int64_t>& v, int64_t value) {
    v.insert(o.padding_side == Side::Right ? v.end() : v.begin(), diff, value);
  };
  extend(e.attention_mask, 0);
  if (e.special_tokens_mask) extend(*e.special_tokens_mask, 1);
  extend(e.input_ids, PerceiverTokenizer::pad_token_id);
}

}  // namespace

Padding parse_padding(const std::string& name) {
  if (name == "longest") return Padding::Longest;
  if (name == "max_length") return Padding::MaxLength;
  if (name == "do_not_pad") return Padding::None;
  throw std::runtime_error("padding: expected 'longest', 'max_length' or 'do_not_pad', got '" + name + "'");
}

Truncation parse_truncation(const std::string& name) {
  if (name == "longest_first") return Truncation::LongestFirst;
  if (name == "only_first") return Truncation::OnlyFirst;
  if (name == "only_second") return Truncation::OnlySecond;
  if (name == "do_not_truncate") return Truncation::DoNotTruncate;
  throw std::runtime_error(
      "truncation: expected 'longest_first', 'only_first', 'only_second' or 'do_not_truncate', got '" + name + "'");
}

const char* to_string(Side side) { return side == Side::Right ? "right" : "left"; }

const std::vector<SpecialToken>& PerceiverTokenizer::special_tokens() {
  static const std::vector<SpecialToken> tokens = {
      {"pad", "[PAD]", pad_token_id},   {"bos", "[BOS]", bos_token_id}, {"eos", "[EOS]", eos_token_id},
      {"mask", "[MASK]", mask_token_id}, {"cls", "[CLS]", cls_token_id}, {"sep", "[SEP]", sep_token_id},
  };
  return tokens;
}

std::vector<std::string> PerceiverTokenizer::model_input_names() { return {"input_ids", "attention_mask"}; }

std::vector<std::string> PerceiverTokenizer::tokenize(const std::string& text, bool split_special_tokens) const {
  std::vector<std::string> tokens;
  for (const auto& piece : split_special(text, split_special_tokens)) {
    if (piece.special) {
      tokens.emplace_back(special_tokens()[static_cast<size_t>(piece.id)].content);
    } else {
      for (const char c : piece.text) tokens.push_back(byte_token(static_cast<unsigned char>(c)));
    }
  }
  return tokens;
}

std::vector<std::string> PerceiverTokenizer::convert_ids_to_tokens(const std::vector<int64_t>& ids,
                                                                   bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    check_id(id, i, "convert_ids_to_tokens");
    if (is_special_id(id)) {
      if (!skip_special_tokens) tokens.emplace_back(special_tokens()[static_cast<size_t>(id)].content);
    } else {
      tokens.push_back(byte_token(static_cast<unsigned char>(id - num_special_tokens)));
    }
  }
  return tokens;
}

Encoding PerceiverTokenizer::encode(const std::string& text, const std::optional<std::string>& pair,
                                    const EncodeOptions& options) const {
  const Resolved r = resolve(options);
  std::optional<std::vector<int64_t>> pair_ids;
  if (pair) pair_ids = text_to_ids(*pair, options.split_special_tokens);
  Encoding e = prepare_for_model(text_to_ids(text, options.split_special_tokens), std::move(pair_ids), r, options);
  if (e.input_ids.empty()) {
    // HF's pad() returns an empty single example untouched, even with padding="max_length".
    e.attention_mask.clear();
  } else {
    pad_one(e, r.padding, r.max_length, options);
  }
  // Single examples report the padded length (batches the unpadded one, see batch_encode_impl).
  if (options.return_length) e.length = static_cast<int64_t>(e.input_ids.size());
  return e;
}

std::vector<Encoding> PerceiverTokenizer::batch_encode(const std::vector<std::string>& texts,
                                                       const EncodeOptions& options) const {
  return batch_encode_impl(texts, nullptr, options);
}

std::vector<Encoding> PerceiverTokenizer::batch_encode(const std::vector<std::string>& texts,
                                                       const std::vector<std::string>& pairs,
                                                       const EncodeOptions& options) const {
  if (pairs.size() != texts.size()) {
    throw std::runtime_error("PerceiverTokenizer::batch_encode: " + std::to_string(texts.size()) + " texts but " +
                                std::to_string(pairs.size()) + " text pairs");
  }
  return batch_encode_impl(texts, &pairs, options);
}

std::vector<Encoding> PerceiverTokenizer::batch_encode_impl(const std::vector<std::string>& texts,
                                                            const std::vector<std::string>* pairs,
                                                            const EncodeOptions& options) const {
  const Resolved r = resolve(options);
  std::vector<Encoding> batch;
  batch.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::optional<std::vector<int64_t>> pair_ids;
    if (pairs) pair_ids = text_to_ids((*pairs)[i], options.split_special_tokens);
    batch.push_back(prepare_for_model(text_to_ids(texts[i], options.split_special_tokens), std::move(pair_ids), r,
                                      options));
    // HF computes the batch's lengths before padding.
    if (options.return_length) batch.back().length = static_cast<int64_t>(batch.back().input_ids.size());
  }
  Padding padding = r.padding;
  std::optional<int64_t> max_length = r.max_length;
  if (padding == Padding::Longest) {
    int64_t longest = 0;
    for (const auto& e : batch) longest = std::max(longest, static_cast<int64_t>(e.input_ids.size()));
    max_length = longest;
    padding = Padding::MaxLength;
  }
  for (auto& e : batch) pad_one(e, padding, max_length, options);
  return batch;
}

std::string PerceiverTokenizer::decode(const std::vector<int64_t>& ids, const DecodeOptions& options) const {
  // Special tokens join the byte string as their text before the one UTF-8 decode, as HF's
  // convert_tokens_to_string does: a skipped token lets the bytes around it form one character.
  std::string bytes;
  bytes.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    check_id(id, i, "decode");
    if (is_special_id(id)) {
      if (!options.skip_special_tokens) bytes += special_tokens()[static_cast<size_t>(id)].content;
    } else {
      bytes.push_back(static_cast<char>(static_cast<unsigned char>(id - num_special_tokens)));
    }
  }
  std::string text = utf8_decode_replace(bytes);
  if (options.clean_up_tokenization_spaces) text = clean_up_tokenization(std::move(text));
  return text;
}

std::vector<std::string> PerceiverTokenizer::batch_decode(const std::vector<std::vector<int64_t>>& batch,
                                                          const DecodeOptions& options) const {
  std::vector<std::string> texts;
  texts.reserve(batch.size());
  for (const auto& ids : batch) texts.push_back(decode(ids, options));
  return texts;
}

Utf8Unit utf8_unit(std::string_view bytes, size_t i) {
  const auto b = static_cast<unsigned char>(bytes[i]);
  if (b < 0x80) return {1, true};
  // Continuation count and the allowed range of the first continuation byte (Unicode Table 3-7); the
  // narrower ranges exclude overlongs, surrogates and code points above U+10FFFF.
  int need = 0;
  unsigned lo = 0x80;
  unsigned hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    return {1, false};  // 0x80-0xC1, 0xF5-0xFF never start a character
  }
  size_t j = i + 1;
  for (int k = 0; k < need && j < bytes.size(); ++k, ++j) {
    const auto c = static_cast<unsigned char>(bytes[j]);
    if (c < (k == 0 ? lo : 0x80u) || c > (k == 0 ? hi : 0xBFu)) break;
  }
  return {j - i, j - i == static_cast<size_t>(need) + 1};
}

std::string utf8_decode_replace(std::string_view bytes) {
  static const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const auto unit = utf8_unit(bytes, i);
    // One U+FFFD for a maximal invalid subpart; decoding resumes at the offending byte.
    if (unit.valid) out.append(bytes.substr(i, unit.length));
    else out += kReplacement;
    i += unit.length;
  }
  return out;
}

std::string clean_up_tokenization(std::string text) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},  {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kRules) {
    const std::string_view f(from);
    const std::string_view t(to);
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    for (size_t hit = text.find(f); hit != std::string::npos; hit = text.find(f, pos)) {
      out.append(text, pos, hit - pos);
      out.append(t);
      pos = hit + f.size();
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }
  return text;
}

ModelInputs to_model_inputs(const std::vector<Encoding>& batch) {
  int64_t longest = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto& e = batch[b];
    if (e.attention_mask.size() != e.input_ids.size()) {
      throw std::runtime_error("to_model_inputs: example " + std::to_string(b) + " has " +
                                  std::to_string(e.input_ids.size()) + " input_ids but " +
                                  std::to_string(e.attention_mask.size()) + " attention_mask entries");
    }
    longest = std::max(longest, static_cast<int64_t>(e.input_ids.size()));
  }
  const auto rows = static_cast<int64_t>(batch.size());
  ModelInputs inputs{torch::full({rows, longest}, PerceiverTokenizer::pad_token_id, torch::kInt64),
                     torch::zeros({rows, longest}, torch::kInt64)};
  auto ids = inputs.input_ids.accessor<int64_t, 2>();
  auto mask = inputs.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < rows; ++b) {
    const auto& e = batch[static_cast<size_t>(b)];
    for (size_t t = 0; t < e.input_ids.size(); ++t) {
      ids[b][static_cast<int64_t>(t)] = e.input_ids[t];
      mask[b][static_cast<int64_t>(t)] = e.attention_mask[t];
    }
  }
  return inputs;
}

}  // namespace perceiver
