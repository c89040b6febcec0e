// The byte-level vocabulary of PerceiverTokenizer, restated here so the data layer does not depend on
// the tokenizer: special tokens take ids 0..5 and byte b maps to id b + 6 (262 ids in all).
#pragma once

#include <cstdint>

namespace perceiver::datasets::byte_vocab {

constexpr int64_t kPad = 0;
constexpr int64_t kBos = 1;
constexpr int64_t kEos = 2;
constexpr int64_t kMask = 3;
constexpr int64_t kCls = 4;
constexpr int64_t kSep = 5;
constexpr int64_t kByteOffset = 6;  // id of byte 0
constexpr int64_t kVocabSize = 262;

constexpr int64_t byte_to_id(unsigned char b) { return static_cast<int64_t>(b) + kByteOffset; }
constexpr bool is_special(int64_t id) { return id < kByteOffset; }

}  // namespace perceiver::datasets::byte_vocab
