#include <gtest/gtest.h>

#include "datasets/byte_vocab.h"
#include "datasets/mlm_collator.h"
#include "datasets/text_corpus.h"

namespace pd = perceiver::datasets;

namespace {

// (B, L) rows: [CLS] text [SEP] [PAD]...
torch::Tensor batch_of(const std::vector<std::string>& texts, int64_t length) {
  auto ids = torch::zeros({static_cast<int64_t>(texts.size()), length}, torch::kInt64);
  for (size_t i = 0; i < texts.size(); ++i) {
    ids[i][0] = pd::byte_vocab::kCls;
    const auto t = pd::text_to_ids(texts[i]);
    ids[i].slice(0, 1, 1 + t.size(0)).copy_(t);
    ids[i][1 + t.size(0)] = pd::byte_vocab::kSep;
  }
  return ids;
}

}  // namespace

TEST(DatasetsMlmCollator, MasksOnlyEligiblePositionsWithExactCounts) {
  const auto ids = batch_of({"the quick brown fox jumps over the lazy dog", "hello world", ""}, 64);
  const pd::MlmOptions opt;
  const auto out = pd::mask_tokens(ids, opt, 7);
  ASSERT_EQ(out.input_ids.sizes(), ids.sizes());
  const auto chosen = out.labels.ne(opt.ignore_index);
  // Specials and padding are never chosen; labels hold the original ids.
  EXPECT_FALSE(chosen.logical_and(ids.lt(pd::byte_vocab::kByteOffset)).any().item<bool>());
  EXPECT_TRUE(out.labels.masked_select(chosen).equal(ids.masked_select(chosen)));
  EXPECT_TRUE(out.input_ids.masked_select(chosen.logical_not()).equal(ids.masked_select(chosen.logical_not())));
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const int64_t eligible = ids[b].ge(pd::byte_vocab::kByteOffset).sum().item<int64_t>();
    const int64_t expected = eligible == 0 ? 0 : std::max<int64_t>(1, std::llround(0.15 * eligible));
    EXPECT_EQ(chosen[b].sum().item<int64_t>(), expected) << "row " << b;
  }
}

TEST(DatasetsMlmCollator, DeterministicBySeedAndGenerator) {
  const auto ids = batch_of({"abcdefghijklmnopqrstuvwxyz0123456789", "some other text here"}, 48);
  const pd::MlmOptions opt;
  const auto a = pd::mask_tokens(ids, opt, 123), b = pd::mask_tokens(ids, opt, 123), c = pd::mask_tokens(ids, opt, 124);
  EXPECT_TRUE(a.input_ids.equal(b.input_ids));
  EXPECT_TRUE(a.labels.equal(b.labels));
  EXPECT_FALSE(a.labels.equal(c.labels) && a.input_ids.equal(c.input_ids));
  auto g1 = pd::make_generator(5), g2 = pd::make_generator(5);
  const auto x1 = pd::mask_tokens(ids, opt, g1), y1 = pd::mask_tokens(ids, opt, g1);
  const auto x2 = pd::mask_tokens(ids, opt, g2), y2 = pd::mask_tokens(ids, opt, g2);
  EXPECT_TRUE(x1.labels.equal(x2.labels));
  EXPECT_TRUE(y1.input_ids.equal(y2.input_ids));
}

TEST(DatasetsMlmCollator, ReplacementProportionsFollowOptions) {
  // Random byte text, many rows: the 80/10/10 split shows up in the aggregate.
  auto gen = pd::make_generator(0);
  auto ids = torch::randint(pd::byte_vocab::kByteOffset, pd::byte_vocab::kVocabSize, {256, 256}, gen, torch::kInt64);
  const pd::MlmOptions opt;
  const auto out = pd::mask_tokens(ids, opt, 99);
  const auto chosen = out.labels.ne(opt.ignore_index);
  const double n = chosen.sum().item<double>();
  EXPECT_EQ(n, 256.0 * std::llround(0.15 * 256));  // round(p * eligible) per row
  const auto new_ids = out.input_ids.masked_select(chosen);
  const auto old_ids = ids.masked_select(chosen);
  const double masked = new_ids.eq(pd::byte_vocab::kMask).sum().item<double>() / n;
  const double kept = new_ids.eq(old_ids).sum().item<double>() / n;
  const double random = 1.0 - masked - kept;
  EXPECT_NEAR(masked, 0.8, 0.02);
  EXPECT_NEAR(kept, 0.1 + 0.1 / 256, 0.015);  // a random replacement equals the original 1 time in 256
  EXPECT_NEAR(random, 0.1 * 255 / 256, 0.015);
  const auto replaced = new_ids.masked_select(new_ids.ne(pd::byte_vocab::kMask));
  EXPECT_TRUE(replaced.ge(pd::byte_vocab::kByteOffset).all().item<bool>());
  EXPECT_TRUE(replaced.lt(pd::byte_vocab::kVocabSize).all().item<bool>());
}

TEST(DatasetsMlmCollator, WholeWordMaskingChoosesWholeWords) {
  const std::string text = "alpha beta  gamma\tdelta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho";
  const auto ids = batch_of({text, text}, 128);
  pd::MlmOptions opt;
  opt.whole_word = true;
  opt.mask_probability = 0.3;
  const auto out = pd::mask_tokens(ids, opt, 3);
  for (int64_t b = 0; b < 2; ++b) {
    const auto chosen = out.labels[b].ne(opt.ignore_index);
    EXPECT_GT(chosen.sum().item<int64_t>(), 0);
    // Every word is all-chosen or all-unchosen; whitespace is never chosen.
    int64_t j = 1;
    const int64_t end = 1 + static_cast<int64_t>(text.size());
    while (j < end) {
      const char c = text[j - 1];
      if (c == ' ' || c == '\t') {
        EXPECT_FALSE(chosen[j].item<bool>());
        ++j;
        continue;
      }
      int64_t k = j;
      while (k < end && text[k - 1] != ' ' && text[k - 1] != '\t') ++k;
      const int64_t s = chosen.slice(0, j, k).sum().item<int64_t>();
      EXPECT_TRUE(s == 0 || s == k - j) << "word at " << j;
      j = k;
    }
  }
}

// whole_word_fraction: that share of the rows masks whole words, the rest scattered bytes.
TEST(DatasetsMlmCollator, WholeWordFractionMixesTheTwoKindsByRow) {
  const std::string text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho";
  const auto ids = batch_of(std::vector<std::string>(400, text), 128);
  // A row masks whole words when every word is all-chosen or all-unchosen and no space is chosen.
  const auto whole_rows = [&](const pd::MlmBatch& out) {
    int64_t whole = 0;
    for (int64_t b = 0; b < ids.size(0); ++b) {
      const auto chosen = out.labels[b].ne(-100);
      bool words = true;
      for (size_t j = 0, start = 0; j <= text.size(); ++j) {
        if (j < text.size() && text[j] != ' ') continue;
        const auto s = chosen.slice(0, static_cast<int64_t>(start) + 1, static_cast<int64_t>(j) + 1).sum().item<int64_t>();
        words = words && (s == 0 || s == static_cast<int64_t>(j - start));
        if (j < text.size()) words = words && !chosen[static_cast<int64_t>(j) + 1].item<bool>();
        start = j + 1;
      }
      whole += words;
    }
    return whole;
  };
  pd::MlmOptions opt;
  opt.mask_probability = 0.15;
  opt.whole_word_fraction = 0.25;
  const auto mixed = whole_rows(pd::mask_tokens(ids, opt, 5));
  EXPECT_NEAR(mixed / 400.0, 0.25, 0.06);
  // 0 and 1 are the two pure kinds, with the random draws of the options that name them.
  opt.whole_word_fraction = 0;
  const auto scattered = pd::mask_tokens(ids, opt, 5);
  EXPECT_LT(whole_rows(scattered), 20);  // a scattered row is all whole words only by chance
  opt.whole_word_fraction = 1;
  const auto words = pd::mask_tokens(ids, opt, 5);
  EXPECT_EQ(whole_rows(words), 400);
  pd::MlmOptions flag;
  flag.whole_word = true;
  EXPECT_TRUE(words.labels.equal(pd::mask_tokens(ids, flag, 5).labels));
  opt.whole_word_fraction = 1.5;
  EXPECT_THROW(pd::mask_tokens(ids, opt, 5), std::invalid_argument);
}

// span_fraction: rows masked by spans of consecutive whole words, the whitespace between them included.
TEST(DatasetsMlmCollator, SpanMaskingChoosesRunsOfWholeWords) {
  const std::string text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
                           "sigma tau upsilon phi chi psi omega one two three four five six seven eight nine ten";
  const auto ids = batch_of(std::vector<std::string>(200, text), 192);
  const auto is_space = [&](int64_t j) { return text[static_cast<size_t>(j - 1)] == ' '; };  // j: a position
  const int64_t end = 1 + static_cast<int64_t>(text.size());
  // The chosen runs of a row, as (first position, one past the last).
  const auto runs = [&](const torch::Tensor& labels, int64_t b) {
    std::vector<std::pair<int64_t, int64_t>> out;
    const auto chosen = labels[b].ne(-100);
    for (int64_t j = 1; j < end;) {
      if (!chosen[j].item<bool>()) {
        ++j;
        continue;
      }
      int64_t k = j;
      while (k < end && chosen[k].item<bool>()) ++k;
      out.emplace_back(j, k);
      j = k;
    }
    return out;
  };
  pd::MlmOptions opt;
  opt.mask_probability = 0.3;
  opt.span_fraction = 1;
  const auto out = pd::mask_tokens(ids, opt, 11);
  int64_t multi_word = 0;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    bool space = false;
    for (const auto& [first, last] : runs(out.labels, b)) {
      // Whole words: a run starts at a word's start and ends at a word's end, never on whitespace.
      EXPECT_FALSE(is_space(first));
      EXPECT_FALSE(is_space(last - 1));
      EXPECT_TRUE(first == 1 || is_space(first - 1)) << "row " << b << " run at " << first;
      EXPECT_TRUE(last == end || is_space(last)) << "row " << b << " run ending at " << last;
      for (int64_t j = first; j < last; ++j) space = space || is_space(j);
    }
    // The target is 30 % of all the row's bytes, whitespace included; the last span chosen may overshoot it.
    const auto chosen = out.labels[b].ne(-100).sum().item<int64_t>();
    EXPECT_GE(chosen, std::llround(0.3 * static_cast<double>(text.size())));
    multi_word += space;
  }
  EXPECT_GT(multi_word, 150);  // nearly every row holds a span of two words or more (a span of one: p = 0.2)
  // span_p 1: every span is one word, so no whitespace is ever chosen.
  opt.span_p = 1;
  EXPECT_FALSE(pd::mask_tokens(ids, opt, 11).labels.ne(-100).logical_and(ids.eq(' ' + pd::byte_vocab::kByteOffset)).any().item<bool>());

  // A mix by row: a quarter whole words, a quarter spans (the rows that choose whitespace), the rest bytes.
  opt.span_p = 0.2;
  opt.span_fraction = 0.25;
  opt.whole_word_fraction = 0.25;
  const auto mixed = pd::mask_tokens(ids, opt, 12);
  int64_t span_rows = 0;
  for (int64_t b = 0; b < ids.size(0); ++b)
    span_rows += mixed.labels[b].ne(-100).logical_and(ids[b].eq(' ' + pd::byte_vocab::kByteOffset)).any().item<bool>() &&
                 runs(mixed.labels, b).size() < 8;  // a bytes row choosing a space has many short runs
  EXPECT_NEAR(span_rows / 200.0, 0.25, 0.08);
  // Without spans the draws are those of before: span_p and span_max_words change nothing.
  pd::MlmOptions words;
  words.whole_word_fraction = 0.3;
  pd::MlmOptions words_other_span = words;
  words_other_span.span_p = 0.5;
  words_other_span.span_max_words = 3;
  EXPECT_TRUE(pd::mask_tokens(ids, words, 13).labels.equal(pd::mask_tokens(ids, words_other_span, 13).labels));
  opt.span_fraction = 0.8;  // 0.25 + 0.8 > 1
  EXPECT_THROW(pd::mask_tokens(ids, opt, 5), std::invalid_argument);
}
