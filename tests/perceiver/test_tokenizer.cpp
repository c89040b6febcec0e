// PerceiverTokenizer against HF's outputs (fixtures/hf/tokenizer/cases.json), an independent UTF-8 oracle, and
// the `perceiver tokenize` CLI.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>
#include <set>
#include <unordered_set>

#include "perceiver/processing/tokenizer.h"
#include "tests/test_support.h"

namespace {

using nlohmann::json;
using perceiver::DecodeOptions;
using perceiver::EncodeOptions;
using perceiver::Encoding;
using perceiver::PerceiverTokenizer;

json load_cases() {
  const auto path = perceiver::testing::hf_fixtures_dir() / "tokenizer" / "cases.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return json::parse(in);
}

const json& cases() {
  static const json j = load_cases();
  return j;
}

// HF kwargs -> options. Any kwarg the port does not model fails the test rather than being ignored.
EncodeOptions encode_options(const json& kwargs) {
  EncodeOptions o;
  for (const auto& [key, value] : kwargs.items()) {
    if (key == "add_special_tokens") {
      o.add_special_tokens = value.get<bool>();
    } else if (key == "padding" && value.is_boolean()) {
      o.padding = value.get<bool>() ? perceiver::Padding::Longest : perceiver::Padding::None;
    } else if (key == "padding" && value.is_string() && value != "do_not_pad") {
      // "do_not_pad" differs from False in HF (it blocks the max_length-implies-truncation rule): not modelled.
      o.padding = perceiver::parse_padding(value.get<std::string>());
    } else if (key == "truncation" && value.is_boolean()) {
      o.truncation = value.get<bool>() ? perceiver::Truncation::LongestFirst : perceiver::Truncation::DoNotTruncate;
    } else if (key == "truncation" && value.is_string()) {
      o.truncation = perceiver::parse_truncation(value.get<std::string>());
    } else if (key == "max_length") {
      if (!value.is_null()) o.max_length = value.get<int64_t>();
    } else if (key == "pad_to_multiple_of") {
      if (!value.is_null()) o.pad_to_multiple_of = value.get<int64_t>();
    } else if (key == "return_special_tokens_mask") {
      o.return_special_tokens_mask = value.get<bool>();
    } else if (key == "return_length") {
      o.return_length = value.get<bool>();
    } else if (key == "split_special_tokens") {
      o.split_special_tokens = value.get<bool>();
    } else {
      ADD_FAILURE() << "unsupported encode kwarg " << key << "=" << value.dump();
    }
  }
  return o;
}

DecodeOptions decode_options(const json& kwargs) {
  DecodeOptions o;
  for (const auto& [key, value] : kwargs.items()) {
    if (key == "skip_special_tokens") {
      o.skip_special_tokens = value.get<bool>();
    } else if (key == "clean_up_tokenization_spaces") {
      o.clean_up_tokenization_spaces = value.get<bool>();
    } else {
      ADD_FAILURE() << "unsupported decode kwarg " << key << "=" << value.dump();
    }
  }
  return o;
}

// Compares one encoding with HF's dict: same keys, same values.
void expect_encoding(const Encoding& got, const json& expected) {
  std::set<std::string> got_keys = {"input_ids", "attention_mask"};
  if (got.special_tokens_mask) got_keys.insert("special_tokens_mask");
  if (got.length) got_keys.insert("length");
  std::set<std::string> expected_keys;
  for (const auto& [key, value] : expected.items()) expected_keys.insert(key);
  EXPECT_EQ(got_keys, expected_keys);
  if (expected.contains("input_ids")) {
    EXPECT_EQ(got.input_ids, expected["input_ids"].get<std::vector<int64_t>>());
  }
  if (expected.contains("attention_mask")) {
    EXPECT_EQ(got.attention_mask, expected["attention_mask"].get<std::vector<int64_t>>());
  }
  if (expected.contains("special_tokens_mask") && got.special_tokens_mask) {
    EXPECT_EQ(*got.special_tokens_mask, expected["special_tokens_mask"].get<std::vector<int64_t>>());
  }
  if (expected.contains("length") && got.length) {
    EXPECT_EQ(*got.length, expected["length"].get<int64_t>());
  }
}

TEST(Tokenizer, FixtureHasOnlyKnownSections) {
  const std::set<std::string> known = {"tokenizer", "hf_source",      "properties",            "encode",
                                       "batch_encode", "decode",      "batch_decode",          "convert_ids_to_tokens",
                                       "tokenize",  "call_convention"};
  for (const auto& [key, value] : cases().items()) EXPECT_TRUE(known.count(key)) << "unhandled fixture section " << key;
  EXPECT_EQ(cases()["tokenizer"], "PerceiverTokenizer");
}

TEST(Tokenizer, Properties) {
  const auto& props = cases()["properties"];
  const EncodeOptions encode_defaults;
  for (const auto& [key, value] : props.items()) {
    SCOPED_TRACE(key);
    if (key == "vocab_size") {
      EXPECT_EQ(PerceiverTokenizer::vocab_size, value.get<int64_t>());
    } else if (key == "len") {
      EXPECT_EQ(PerceiverTokenizer::num_ids, value.get<int64_t>());
    } else if (key == "model_max_length") {
      EXPECT_EQ(PerceiverTokenizer::model_max_length, value.get<int64_t>());
    } else if (key == "padding_side") {
      EXPECT_EQ(perceiver::to_string(encode_defaults.padding_side), value.get<std::string>());
    } else if (key == "truncation_side") {
      EXPECT_EQ(perceiver::to_string(encode_defaults.truncation_side), value.get<std::string>());
    } else if (key == "model_input_names") {
      EXPECT_EQ(PerceiverTokenizer::model_input_names(), value.get<std::vector<std::string>>());
    } else if (key == "clean_up_tokenization_spaces") {
      EXPECT_EQ(DecodeOptions{}.clean_up_tokenization_spaces, value.get<bool>());
    } else if (key == "special_tokens") {
      const auto& ours = PerceiverTokenizer::special_tokens();
      size_t expected_present = 0;
      for (const auto& [name, pair] : value.items()) {
        SCOPED_TRACE(name);
        const auto it = std::find_if(ours.begin(), ours.end(), [&](const auto& t) { return name == t.name; });
        if (pair[0].is_null()) {
          EXPECT_TRUE(it == ours.end()) << "HF has no " << name << " token";
          continue;
        }
        ++expected_present;
        ASSERT_TRUE(it != ours.end());
        EXPECT_EQ(std::string(it->content), pair[0].get<std::string>());
        EXPECT_EQ(it->id, pair[1].get<int64_t>());
        EXPECT_TRUE(PerceiverTokenizer::is_special_id(it->id));
      }
      EXPECT_EQ(ours.size(), expected_present);
    } else {
      ADD_FAILURE() << "unhandled property " << key;
    }
  }
}

TEST(Tokenizer, EncodeMatchesHF) {
  const PerceiverTokenizer tok;
  ASSERT_FALSE(cases()["encode"].empty());
  for (const auto& c : cases()["encode"]) {
    SCOPED_TRACE(c.dump());
    std::optional<std::string> pair;
    if (c.contains("text_pair") && !c["text_pair"].is_null()) pair = c["text_pair"].get<std::string>();
    expect_encoding(tok.encode(c["text"].get<std::string>(), pair, encode_options(c["kwargs"])), c["expected"]);
  }
}

TEST(Tokenizer, BatchEncodeMatchesHF) {
  const PerceiverTokenizer tok;
  ASSERT_FALSE(cases()["batch_encode"].empty());
  for (const auto& c : cases()["batch_encode"]) {
    SCOPED_TRACE(c.dump());
    const auto texts = c["texts"].get<std::vector<std::string>>();
    const auto options = encode_options(c["kwargs"]);
    const auto batch = c.contains("text_pairs")
                           ? tok.batch_encode(texts, c["text_pairs"].get<std::vector<std::string>>(), options)
                           : tok.batch_encode(texts, options);
    const auto& expected = c["expected"];
    ASSERT_EQ(batch.size(), texts.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      SCOPED_TRACE("row " + std::to_string(i));
      json row = json::object();
      for (const auto& [key, value] : expected.items()) row[key] = value[i];
      expect_encoding(batch[i], row);
    }
    // The model-side tensors carry the same padded rows.
    const auto inputs = perceiver::to_model_inputs(batch);
    const auto ids = expected["input_ids"];
    ASSERT_EQ(inputs.input_ids.size(0), static_cast<int64_t>(ids.size()));
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto row = ids[i].get<std::vector<int64_t>>();
      const auto mask = expected["attention_mask"][i].get<std::vector<int64_t>>();
      ASSERT_EQ(inputs.input_ids.size(1), static_cast<int64_t>(row.size()));
      for (size_t t = 0; t < row.size(); ++t) {
        EXPECT_EQ(inputs.input_ids[i][t].item<int64_t>(), row[t]);
        EXPECT_EQ(inputs.attention_mask[i][t].item<int64_t>(), mask[t]);
      }
    }
  }
}

TEST(Tokenizer, DecodeMatchesHF) {
  const PerceiverTokenizer tok;
  ASSERT_FALSE(cases()["decode"].empty());
  for (const auto& c : cases()["decode"]) {
    SCOPED_TRACE(c.dump());
    EXPECT_EQ(tok.decode(c["ids"].get<std::vector<int64_t>>(), decode_options(c["kwargs"])),
              c["expected"].get<std::string>());
  }
}

TEST(Tokenizer, BatchDecodeMatchesHF) {
  const PerceiverTokenizer tok;
  const auto& c = cases()["batch_decode"];
  const auto batch = c["ids"].get<std::vector<std::vector<int64_t>>>();
  EXPECT_EQ(tok.batch_decode(batch, decode_options(c["kwargs"])), c["expected"].get<std::vector<std::string>>());
}

TEST(Tokenizer, ConvertIdsToTokensMatchesHF) {
  const PerceiverTokenizer tok;
  const auto& c = cases()["convert_ids_to_tokens"];
  bool skip = false;
  if (c.contains("kwargs")) {
    for (const auto& [key, value] : c["kwargs"].items()) {
      if (key == "skip_special_tokens") {
        skip = value.get<bool>();
      } else {
        ADD_FAILURE() << "unsupported convert_ids_to_tokens kwarg " << key;
      }
    }
  }
  EXPECT_EQ(tok.convert_ids_to_tokens(c["ids"].get<std::vector<int64_t>>(), skip),
            c["convert_ids_to_tokens"].get<std::vector<std::string>>());
}

TEST(Tokenizer, TokenizeMatchesHF) {
  const PerceiverTokenizer tok;
  ASSERT_FALSE(cases()["tokenize"].empty());
  for (const auto& c : cases()["tokenize"]) {
    SCOPED_TRACE(c.dump());
    bool split = false;
    if (c.contains("kwargs")) {
      for (const auto& [key, value] : c["kwargs"].items()) {
        if (key == "split_special_tokens") {
          split = value.get<bool>();
        } else {
          ADD_FAILURE() << "unsupported tokenize kwarg " << key;
        }
      }
    }
    EXPECT_EQ(tok.tokenize(c["text"].get<std::string>(), split), c["tokenize"].get<std::vector<std::string>>());
  }
}

TEST(Tokenizer, DecodeInvertsEncodeOfFixtureTexts) {
  const PerceiverTokenizer tok;
  EncodeOptions plain;
  plain.add_special_tokens = false;
  for (const auto& c : cases()["encode"]) {
    const auto text = c["text"].get<std::string>();
    EXPECT_EQ(tok.decode(tok.encode(text, std::nullopt, plain).input_ids), text);
    EXPECT_EQ(tok.decode(tok.encode(text).input_ids), "[CLS]" + text + "[SEP]");
  }
}

TEST(Tokenizer, OutOfRangeIdsAreRejectedWithTheId) {
  const PerceiverTokenizer tok;
  for (const int64_t bad : {int64_t{-1}, PerceiverTokenizer::num_ids, int64_t{1} << 40}) {
    for (const bool skip : {false, true}) {
      try {
        tok.decode({4, 110, bad}, skip);
        ADD_FAILURE() << "decode accepted id " << bad;
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("id " + std::to_string(bad)), std::string::npos) << e.what();
      }
    }
    EXPECT_THROW(tok.convert_ids_to_tokens({bad}), std::runtime_error);
  }
}

// HF's truncation strategies on a pair, against the rule "remove one token at a time from the longer
// sequence (the second on ties)", computed here step by step.
TEST(Tokenizer, PairTruncationStrategies) {
  const PerceiverTokenizer tok;
  const std::string a = "first sentence", b = "second one is longer";
  for (int64_t max_length = 0; max_length <= 40; ++max_length) {
    SCOPED_TRACE(max_length);
    EncodeOptions o;
    o.max_length = max_length;
    o.truncation = perceiver::Truncation::LongestFirst;
    std::string ta = a, tb = b;
    int64_t excess = static_cast<int64_t>(a.size() + b.size() + 3) - max_length;
    if (max_length == 0) excess = 0;  // HF: `max_length and ...`, so 0 never truncates
    for (; excess > 0; --excess) {
      if (ta.size() > tb.size()) {
        if (!ta.empty()) ta.pop_back();
      } else if (!tb.empty()) {
        tb.pop_back();
      }
    }
    EXPECT_EQ(tok.encode(a, b, o).input_ids, tok.encode(ta, tb).input_ids);

    // only_second / only_first cut one side, or nothing when that side is too short (HF logs an error).
    const int64_t need = static_cast<int64_t>(a.size() + b.size() + 3) - max_length;
    o.truncation = perceiver::Truncation::OnlySecond;
    const bool second_ok = max_length > 0 && need > 0 && static_cast<int64_t>(b.size()) > need;
    EXPECT_EQ(tok.encode(a, b, o).input_ids,
              tok.encode(a, second_ok ? b.substr(0, b.size() - static_cast<size_t>(need)) : b).input_ids);
    o.truncation = perceiver::Truncation::OnlyFirst;
    const bool first_ok = max_length > 0 && need > 0 && static_cast<int64_t>(a.size()) > need;
    EXPECT_EQ(tok.encode(a, b, o).input_ids,
              tok.encode(first_ok ? a.substr(0, a.size() - static_cast<size_t>(need)) : a, b).input_ids);
  }
}

// Behaviour read off HF's prepare_for_model / pad / _pad that the fixtures do not reach, checked against the
// unpadded encodings.
TEST(Tokenizer, PaddingFollowsHFRules) {
  const PerceiverTokenizer tok;
  const std::vector<std::string> texts = {"hi", "a longer text"};
  const auto plain = tok.batch_encode(texts);

  // Single examples report the padded length, batches the unpadded one.
  EncodeOptions o;
  o.padding = perceiver::Padding::MaxLength;
  o.max_length = 20;
  o.return_length = true;
  o.return_special_tokens_mask = true;
  const auto single = tok.encode(texts[0], std::nullopt, o);
  EXPECT_EQ(single.length, 20);
  const auto batch = tok.batch_encode(texts, o);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(batch[i].length, static_cast<int64_t>(plain[i].input_ids.size()));
    EXPECT_EQ(batch[i].input_ids.size(), 20u);
    // Padding counts as special in the special-tokens mask.
    const auto& mask = *batch[i].special_tokens_mask;
    EXPECT_EQ(std::count(mask.begin(), mask.end(), 1), static_cast<std::ptrdiff_t>(20 - plain[i].input_ids.size() + 2));
  }

  // HF's pad() returns an empty single example as it is, even with padding="max_length"; in a batch it pads.
  o.add_special_tokens = false;
  EXPECT_TRUE(tok.encode("", std::nullopt, o).input_ids.empty());
  EXPECT_EQ(tok.batch_encode({""}, o)[0].input_ids, std::vector<int64_t>(20, PerceiverTokenizer::pad_token_id));

  // Left padding puts the same pad ids and zero mask in front; pad_to_multiple_of rounds the longest up.
  EncodeOptions left;
  left.padding = perceiver::Padding::Longest;
  left.padding_side = perceiver::Side::Left;
  left.pad_to_multiple_of = 8;
  const auto padded = tok.batch_encode(texts, left);
  const size_t target = (plain[1].input_ids.size() + 7) / 8 * 8;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& ids = plain[i].input_ids;
    const size_t k = target - ids.size();
    std::vector<int64_t> expected_ids(k, PerceiverTokenizer::pad_token_id);
    expected_ids.insert(expected_ids.end(), ids.begin(), ids.end());
    std::vector<int64_t> expected_mask(k, 0);
    expected_mask.resize(target, 1);
    EXPECT_EQ(padded[i].input_ids, expected_ids);
    EXPECT_EQ(padded[i].attention_mask, expected_mask);
  }

  // max_length alone turns on longest_first truncation; with padding=longest it is ignored.
  EncodeOptions only_max;
  only_max.max_length = 5;
  EXPECT_EQ(tok.encode(texts[1], std::nullopt, only_max).input_ids.size(), 5u);
  only_max.padding = perceiver::Padding::Longest;
  EXPECT_EQ(tok.encode(texts[1], std::nullopt, only_max).input_ids, plain[1].input_ids);

  // Left truncation keeps the end of the text.
  EncodeOptions cut_left;
  cut_left.max_length = 6;
  cut_left.truncation = perceiver::Truncation::LongestFirst;
  cut_left.truncation_side = perceiver::Side::Left;
  EXPECT_EQ(tok.encode(texts[1], std::nullopt, cut_left).input_ids, tok.encode("text").input_ids);

  EncodeOptions bad;
  bad.max_length = -1;
  EXPECT_THROW(tok.encode("x", std::nullopt, bad), std::runtime_error);
  bad.max_length = 10;
  bad.padding = perceiver::Padding::MaxLength;
  bad.truncation = perceiver::Truncation::LongestFirst;
  bad.pad_to_multiple_of = 4;  // HF refuses: 10 is not a multiple of 4
  EXPECT_THROW(tok.encode("x", std::nullopt, bad), std::runtime_error);
  EXPECT_THROW(tok.batch_encode({"a", "b"}, std::vector<std::string>{"c"}), std::runtime_error);
}

TEST(Tokenizer, ModelInputsPadRaggedRows) {
  const PerceiverTokenizer tok;
  const auto batch = tok.batch_encode({"hi", "a longer text"});
  const auto inputs = perceiver::to_model_inputs(batch);
  ASSERT_EQ(inputs.input_ids.sizes(), (std::vector<int64_t>{2, static_cast<int64_t>(batch[1].input_ids.size())}));
  EXPECT_EQ(inputs.input_ids.scalar_type(), torch::kInt64);
  EXPECT_EQ(inputs.attention_mask.scalar_type(), torch::kInt64);
  for (size_t i = 0; i < batch.size(); ++i) {
    for (int64_t t = 0; t < inputs.input_ids.size(1); ++t) {
      const bool real = t < static_cast<int64_t>(batch[i].input_ids.size());
      EXPECT_EQ(inputs.input_ids[i][t].item<int64_t>(),
                real ? batch[i].input_ids[t] : PerceiverTokenizer::pad_token_id);
      EXPECT_EQ(inputs.attention_mask[i][t].item<int64_t>(), real ? 1 : 0);
    }
  }
  const auto empty = perceiver::to_model_inputs({});
  EXPECT_EQ(empty.input_ids.numel(), 0);
}

// ---- UTF-8 with errors="replace": an oracle built from the encoder side ----
//
// The Unicode Standard's "maximal subpart" rule: at each position take the longest complete well-formed sequence;
// failing that, replace the longest prefix of any well-formed sequence (at least one byte) by one U+FFFD. Here the
// well-formed sequences are enumerated by encoding every scalar value, independently of the decoder's tables.
class Utf8Oracle {
 public:
  Utf8Oracle() {
    complete_.reserve(0x110000);
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      const std::string s = encode(cp);
      complete_.insert(key(s));
      for (size_t k = 1; k < s.size(); ++k) prefixes_.insert(key(s.substr(0, k)));
    }
  }

  std::string decode(const std::string& bytes) const {
    std::string out;
    size_t i = 0;
    while (i < bytes.size()) {
      size_t step = 0;
      for (size_t len = 4; len >= 1 && !step; --len) {
        if (i + len <= bytes.size() && complete_.count(key(bytes.substr(i, len)))) {
          out += bytes.substr(i, len);
          step = len;
        }
      }
      if (!step) {
        step = 1;
        for (size_t len = 3; len >= 1; --len) {
          if (i + len <= bytes.size() && prefixes_.count(key(bytes.substr(i, len)))) {
            step = len;
            break;
          }
        }
        out += "\xEF\xBF\xBD";
      }
      i += step;
    }
    return out;
  }

 private:
  // A byte string of at most 4 bytes as one integer: its length, then its bytes.
  static uint64_t key(const std::string& s) {
    uint64_t k = s.size();
    for (const char c : s) k = (k << 8) | static_cast<unsigned char>(c);
    return k;
  }

  static std::string encode(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  }

  std::unordered_set<uint64_t> complete_;
  std::unordered_set<uint64_t> prefixes_;
};

TEST(Tokenizer, Utf8ReplaceMatchesMaximalSubpartOracle) {
  const Utf8Oracle oracle;
  const PerceiverTokenizer tok;
  // Bytes drawn mostly from the interesting lead/continuation ranges.
  const std::vector<unsigned char> alphabet = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
                                               0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0,
                                               0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  std::mt19937 rng(1234);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> any_byte(0, 255);
  std::uniform_int_distribution<int> length(0, 10);
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes;
    const int n = length(rng);
    for (int k = 0; k < n; ++k) {
      bytes += static_cast<char>(trial % 4 == 0 ? any_byte(rng) : alphabet[pick(rng)]);
    }
    ASSERT_EQ(perceiver::utf8_decode_replace(bytes), oracle.decode(bytes)) << "trial " << trial;
    std::vector<int64_t> ids;
    for (const char ch : bytes) ids.push_back(static_cast<unsigned char>(ch) + PerceiverTokenizer::num_special_tokens);
    ASSERT_EQ(tok.decode(ids), oracle.decode(bytes)) << "trial " << trial;
  }
}

// ---- CLI ----

std::string quote(const std::string& s) {
  std::string q = "'";
  for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

TEST(TokenizerCli, EncodesAPairWithPadding) {
  const auto r = perceiver::testing::run_cli("tokenize --pair " + quote("answer.") +
                                             " --padding max_length --max-length 24 --truncation " +
                                             quote("question?") + " " + quote("a") + " --pair b");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = json::parse(r.out);
  EncodeOptions o;
  o.padding = perceiver::Padding::MaxLength;
  o.max_length = 24;
  o.truncation = perceiver::Truncation::LongestFirst;
  const auto expected = PerceiverTokenizer().batch_encode({"question?", "a"}, {"answer.", "b"}, o);
  ASSERT_EQ(out["input_ids"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(out["input_ids"][i].get<std::vector<int64_t>>(), expected[i].input_ids);
    EXPECT_EQ(out["attention_mask"][i].get<std::vector<int64_t>>(), expected[i].attention_mask);
    EXPECT_EQ(out["input_ids"][i].size(), 24u);
  }
  // The unpadded prefix of the first row is HF's encoding of the same pair.
  for (const auto& c : cases()["encode"]) {
    if (c["text"] == "question?" && c.value("text_pair", json()) == "answer.") {
      const auto hf = c["expected"]["input_ids"].get<std::vector<int64_t>>();
      const auto row = out["input_ids"][0].get<std::vector<int64_t>>();
      EXPECT_EQ(std::vector<int64_t>(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(hf.size())), hf);
    }
  }
}

TEST(TokenizerCli, DecodesWithAndWithoutSkippingSpecialTokens) {
  int checked = 0, with_skip = 0, without_skip = 0;
  for (const auto& c : cases()["decode"]) {
    const auto& kwargs = c["kwargs"];
    if (kwargs.size() != 1 || !kwargs.contains("skip_special_tokens")) continue;
    // A few cases with special tokens, each process costs a libtorch start-up.
    const auto ids = c["ids"].get<std::vector<int64_t>>();
    if (std::none_of(ids.begin(), ids.end(), PerceiverTokenizer::is_special_id)) continue;
    const bool skip = kwargs["skip_special_tokens"].get<bool>();
    if ((skip ? with_skip : without_skip)++ >= 2) continue;
    std::string args = "tokenize --decode";
    if (skip) args += " --skip-special-tokens";
    for (const auto& id : c["ids"]) args += " " + std::to_string(id.get<int64_t>());
    const auto r = perceiver::testing::run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << args << ": " << r.err;
    EXPECT_EQ(json::parse(r.out).get<std::string>(), c["expected"].get<std::string>()) << args;
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(TokenizerCli, BadIdsFailWithAMessage) {
  for (const std::string bad : {"262", "-1", "12x", "99999999999999999999"}) {
    const auto r = perceiver::testing::run_cli("tokenize --decode 4 " + bad);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(TokenizerCli, TextsStartingWithDashGoAfterDoubleDash) {
  const auto r = perceiver::testing::run_cli("tokenize --no-special-tokens -- " + quote("-x") + " -7");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = json::parse(r.out);
  const PerceiverTokenizer tok;
  EncodeOptions plain;
  plain.add_special_tokens = false;
  EXPECT_EQ(out["input_ids"][0].get<std::vector<int64_t>>(), tok.encode("-x", std::nullopt, plain).input_ids);
  EXPECT_EQ(out["input_ids"][1].get<std::vector<int64_t>>(), tok.encode("-7", std::nullopt, plain).input_ids);
}

TEST(TokenizerCli, InvalidOptionsFail) {
  for (const std::string args : {"tokenize --padding sideways x", "tokenize", "tokenize --max-length -3 x",
                                 "tokenize --pair a x y", "tokenize --decode --pair a 4"}) {
    const auto r = perceiver::testing::run_cli(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_FALSE(r.err.empty()) << args;
  }
}

}  // namespace
