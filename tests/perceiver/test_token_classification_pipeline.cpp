// Token classification pipeline (perceiver/pipelines/token_classification_pipeline.h): windows of long texts and
// who scores each byte, logits stitched from windows, HF's aggregation strategies on hand-worked
// probabilities (with UTF-8 character offsets), classify_tokens against a manual forward, and
// `perceiver predict` on a saved model.
#include <gtest/gtest.h>

#include <functional>

#include <nlohmann/json.hpp>

#include "perceiver/models/architectures.h"
#include "perceiver/pipelines/open_model.h"
#include "perceiver/export/export.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/pipelines/pipelines.h"
#include "perceiver/processing/tokenizer.h"
#include "tests/test_support.h"
#include "trainers/predict.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- windows ----

// The window brute force says owns p: the farthest from an edge, the earlier on ties.
size_t brute_owner(const std::vector<ByteWindow>& windows, int64_t p) {
  size_t best = windows.size();
  int64_t best_distance = -1;
  for (size_t i = 0; i < windows.size(); ++i) {
    if (p < windows[i].start || p >= windows[i].end) continue;
    const auto d = std::min(p - windows[i].start, windows[i].end - 1 - p);
    if (d > best_distance) best = i, best_distance = d;
  }
  return best;
}

TEST(TokenClassificationPipeline, WindowsCoverWithTheOverlapAndOwnedRangesPartitionByDistanceFromTheEdge) {
  int64_t triples = 0;
  for (int64_t window = 1; window <= 13; ++window)
    for (int64_t overlap = 0; overlap < window; ++overlap)
      for (int64_t length = 0; length <= 70; ++length) {
        SCOPED_TRACE("length " + std::to_string(length) + " window " + std::to_string(window) + " overlap " +
                     std::to_string(overlap));
        ++triples;
        const auto windows = byte_windows(length, window, overlap);
        ASSERT_FALSE(windows.empty());
        if (length <= window) {
          ASSERT_EQ(windows.size(), 1u);
        } else {
          // As few windows as the stride allows: every start but the last's is a multiple of it.
          const int64_t stride = window - overlap;
          EXPECT_EQ(static_cast<int64_t>(windows.size()), 1 + (length - window + stride - 1) / stride);
        }
        EXPECT_EQ(windows.front().start, 0);
        EXPECT_EQ(windows.back().end, length);
        for (size_t i = 0; i < windows.size(); ++i) {
          EXPECT_EQ(windows[i].end - windows[i].start, std::min(window, length));
          if (i > 0) {
            EXPECT_GT(windows[i].start, windows[i - 1].start);
            EXPECT_GE(windows[i - 1].end - windows[i].start, overlap) << "window " << i;
          }
        }
        const auto owned = owned_ranges(windows, length);
        ASSERT_EQ(owned.size(), windows.size());
        int64_t at = 0;
        for (size_t i = 0; i < owned.size(); ++i) {
          EXPECT_EQ(owned[i].start, at) << "window " << i;
          EXPECT_LE(owned[i].start, owned[i].end);
          if (length > 0) EXPECT_LT(owned[i].start, owned[i].end) << "window " << i << " owns nothing";
          EXPECT_GE(owned[i].start, windows[i].start);
          EXPECT_LE(owned[i].end, windows[i].end);
          for (int64_t p = owned[i].start; p < owned[i].end; ++p) ASSERT_EQ(brute_owner(windows, p), i) << "position " << p;
          at = owned[i].end;
        }
        EXPECT_EQ(at, length);
      }
  EXPECT_GT(triples, 6000);
}

TEST(TokenClassificationPipeline, WindowsOfALongTextAndTheirOwners) {
  // 100 positions, windows of 32 overlapping by 8: starts 0, 24, 48, then 68 (moved back to end at 100).
  const auto windows = byte_windows(100, 32, 8);
  ASSERT_EQ(windows.size(), 4u);
  EXPECT_EQ(windows[1].start, 24);
  EXPECT_EQ(windows[2].start, 48);
  EXPECT_EQ(windows[3].start, 68);
  const auto owned = owned_ranges(windows, 100);
  // Centres 15.5, 39.5, 63.5, 83.5: a position goes to the nearest centre, the earlier on ties.
  EXPECT_EQ(owned[0].end, 28);
  EXPECT_EQ(owned[1].end, 52);
  EXPECT_EQ(owned[2].end, 74);
  EXPECT_EQ(owned[3].end, 100);
}

TEST(TokenClassificationPipeline, BadWindowArgumentsAreErrors) {
  EXPECT_NE(error_of([] { byte_windows(10, 0, 0); }).find("window"), std::string::npos);
  EXPECT_NE(error_of([] { byte_windows(10, 4, 4); }).find("overlap"), std::string::npos);
  EXPECT_NE(error_of([] { byte_windows(10, 4, -1); }).find("overlap"), std::string::npos);
  EXPECT_NE(error_of([] { byte_windows(-1, 4, 1); }).find("negative"), std::string::npos);
  EXPECT_NE(error_of([] { owned_ranges({{0, 4}, {6, 10}}, 10); }).find("[4, 6) are in no window"), std::string::npos);
  EXPECT_NE(error_of([] { owned_ranges({{0, 4}, {3, 8}}, 10); }).find("end at 10"), std::string::npos);
  EXPECT_NE(error_of([] { owned_ranges({{0, 6}, {0, 10}}, 10); }).find("in order"), std::string::npos);
  EXPECT_NE(error_of([] { owned_ranges({}, 10); }).find("no windows"), std::string::npos);
  EXPECT_NE(error_of([] { stitch_logits({{0, 4}}, {torch::zeros({3, 2})}, 4); }).find("(4, num_labels)"),
            std::string::npos);
}

TEST(TokenClassificationPipeline, StitchedLogitsTakeEachPositionFromItsOwningWindow) {
  for (const auto& [length, window, overlap] : std::vector<std::array<int64_t, 3>>{{20, 8, 3}, {57, 10, 6}, {9, 9, 2}, {31, 4, 0}}) {
    const auto windows = byte_windows(length, window, overlap);
    // Window i's row for position p holds (i, p, a value the other windows do not have).
    std::vector<torch::Tensor> logits;
    for (size_t i = 0; i < windows.size(); ++i) {
      const auto n = windows[i].end - windows[i].start;
      auto t = torch::empty({n, 3});
      t.select(1, 0).fill_(static_cast<double>(i));
      t.select(1, 1).copy_(torch::arange(windows[i].start, windows[i].end, torch::kFloat));
      t.select(1, 2).copy_(torch::rand({n}));
      logits.push_back(t);
    }
    const auto stitched = stitch_logits(windows, logits, length);
    ASSERT_EQ(stitched.sizes(), (std::vector<int64_t>{length, 3}));
    for (int64_t p = 0; p < length; ++p) {
      const auto owner = brute_owner(windows, p);
      EXPECT_TRUE(torch::equal(stitched[p], logits[owner][p - windows[owner].start])) << "position " << p;
    }
  }
  // An empty sequence: no rows, the labels kept.
  EXPECT_EQ(stitch_logits(byte_windows(0, 4, 1), {torch::zeros({0, 5})}, 0).sizes(), (std::vector<int64_t>{0, 5}));
}

// ---- aggregation ----

const std::map<int64_t, std::string> kLabels = {{0, "O"}, {1, "B-PER"}, {2, "I-PER"}, {3, "B-LOC"}, {4, "I-LOC"}};
const std::map<std::string, int64_t> kIds = {{"O", 0}, {"B-PER", 1}, {"I-PER", 2}, {"B-LOC", 3}, {"I-LOC", 4}};

// Probabilities where byte i gives labels[i] probability scores[i] and the other four share the rest.
torch::Tensor probabilities(const std::vector<std::string>& labels, const std::vector<double>& scores) {
  auto p = torch::empty({static_cast<int64_t>(labels.size()), 5}, torch::kDouble);
  for (size_t i = 0; i < labels.size(); ++i) {
    p[static_cast<int64_t>(i)].fill_((1 - scores[i]) / 4);
    p[static_cast<int64_t>(i)][kIds.at(labels[i])] = scores[i];
  }
  return p;
}

struct Expected {
  std::string label;
  double score;
  int64_t start, end;
  std::string word;
  int64_t byte_start, byte_end;
};

void expect_entities(const std::vector<TokenEntity>& actual, const std::vector<Expected>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    SCOPED_TRACE("entity " + std::to_string(i));
    EXPECT_EQ(actual[i].label, expected[i].label);
    EXPECT_NEAR(actual[i].score, expected[i].score, 1e-12);
    EXPECT_EQ(actual[i].start, expected[i].start);
    EXPECT_EQ(actual[i].end, expected[i].end);
    EXPECT_EQ(actual[i].word, expected[i].word);
    EXPECT_EQ(actual[i].byte_start, expected[i].byte_start);
    EXPECT_EQ(actual[i].byte_end, expected[i].byte_end);
  }
}

TEST(TokenClassificationPipeline, SimpleGroupsBytesByIob2AndAveragesTheirScores) {
  const std::string text = "Ann in Oslo";
  const auto p = probabilities({"B-PER", "I-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC"},
                               {0.9, 0.8, 0.7, 0.9, 0.9, 0.9, 0.9, 0.6, 0.5, 0.9, 0.8});
  expect_entities(aggregate(text, p, kLabels, Aggregation::simple),
                  {{"PER", 0.8, 0, 3, "Ann", 0, 3}, {"LOC", 0.7, 7, 11, "Oslo", 7, 11}});
  // B- after B- starts a new entity; I- of another type too; an I- after O starts one (HF's grouping).
  expect_entities(aggregate("abcdef", probabilities({"B-PER", "B-PER", "I-LOC", "I-PER", "O", "I-LOC"},
                                                    {0.5, 0.6, 0.7, 0.8, 0.9, 0.4}),
                            kLabels, Aggregation::simple),
                  {{"PER", 0.5, 0, 1, "a", 0, 1},
                   {"PER", 0.6, 1, 2, "b", 1, 2},
                   {"LOC", 0.7, 2, 3, "c", 2, 3},
                   {"PER", 0.8, 3, 4, "d", 3, 4},
                   {"LOC", 0.4, 5, 6, "f", 5, 6}});
  // Labels without a B-/I- prefix continue like I-; ignore_labels chooses what is left out.
  const std::map<int64_t, std::string> plain = {{0, "O"}, {1, "PER"}};
  auto q = torch::tensor({{0.2, 0.8}, {0.4, 0.6}, {0.9, 0.1}, {0.3, 0.7}}, torch::kDouble);
  expect_entities(aggregate("abcd", q, plain, Aggregation::simple),
                  {{"PER", 0.7, 0, 2, "ab", 0, 2}, {"PER", 0.7, 3, 4, "d", 3, 4}});
  expect_entities(aggregate("abcd", q, plain, Aggregation::simple, {"PER"}), {{"O", 0.9, 2, 3, "c", 2, 3}});
  // An id id2label lacks is named by its number.
  expect_entities(aggregate("ab", q.narrow(0, 0, 2), {{0, "O"}}, Aggregation::simple), {{"1", 0.7, 0, 2, "ab", 0, 2}});
}

TEST(TokenClassificationPipeline, NoneAnswersEveryByteThatIsNotO) {
  const auto p = probabilities({"B-PER", "I-PER", "O", "I-LOC"}, {0.9, 0.8, 0.7, 0.6});
  expect_entities(aggregate("Al x", p, kLabels, Aggregation::none),
                  {{"B-PER", 0.9, 0, 1, "A", 0, 1}, {"I-PER", 0.8, 1, 2, "l", 1, 2}, {"I-LOC", 0.6, 3, 4, "x", 3, 4}});
}

// "Bob Lee": the word strategies agree within a word, and words group across the space between them.
torch::Tensor bob_lee() {
  return torch::tensor({{0.1, 0.5, 0.1, 0.2, 0.1},           // B  B-PER .5
                        {0.1, 0.1, 0.1, 0.1, 0.6},           // o  I-LOC .6
                        {0.02, 0.02, 0.9, 0.03, 0.03},       // b  I-PER .9
                        {0.95, 0.0125, 0.0125, 0.0125, 0.0125},  // ' ' O
                        {0.1, 0.1, 0.1, 0.45, 0.25},         // L  B-LOC .45
                        {0.1, 0.05, 0.7, 0.1, 0.05},         // e  I-PER .7
                        {0.2, 0.1, 0.4, 0.2, 0.1}},          // e  I-PER .4
                       torch::kDouble);
}

TEST(TokenClassificationPipeline, WordStrategiesDecideALabelPerWordThenGroupWords) {
  const std::string text = "Bob Lee";
  const auto p = bob_lee();
  // simple: byte by byte.
  expect_entities(aggregate(text, p, kLabels, Aggregation::simple), {{"PER", 0.5, 0, 1, "B", 0, 1},
                                                                     {"LOC", 0.6, 1, 2, "o", 1, 2},
                                                                     {"PER", 0.9, 2, 3, "b", 2, 3},
                                                                     {"LOC", 0.45, 4, 5, "L", 4, 5},
                                                                     {"PER", 0.55, 5, 7, "ee", 5, 7}});
  // first: each word's first byte: B-PER "Bob", B-LOC "Lee".
  expect_entities(aggregate(text, p, kLabels, Aggregation::first),
                  {{"PER", 0.5, 0, 3, "Bob", 0, 3}, {"LOC", 0.45, 4, 7, "Lee", 4, 7}});
  // max: the surest byte of each word: I-PER .9 and I-PER .7, one entity over both words.
  expect_entities(aggregate(text, p, kLabels, Aggregation::max), {{"PER", 0.8, 0, 7, "Bob Lee", 0, 7}});
  // average: means (.0733 .2067 .3667 .11 .2433) -> I-PER .3667 and (.1333 .0833 .4 .25 .1333) -> I-PER .4.
  expect_entities(aggregate(text, p, kLabels, Aggregation::average),
                  {{"PER", (1.1 / 3 + 0.4) / 2, 0, 7, "Bob Lee", 0, 7}});
  // max takes the earliest of equally sure bytes; whitespace of any kind separates words.
  const auto tie = probabilities({"B-LOC", "B-PER", "O", "I-PER", "I-LOC"}, {0.7, 0.7, 0.9, 0.6, 0.6});
  expect_entities(aggregate("ab\tcd", tie, kLabels, Aggregation::max),
                  {{"LOC", 0.7, 0, 2, "ab", 0, 2}, {"PER", 0.6, 3, 5, "cd", 3, 5}});
}

TEST(TokenClassificationPipeline, OffsetsAreCharactersOfUtf8) {
  // Z o ë(2) ' ' i n ' ' Ł(2) ó(2) d ź(2): 15 bytes, 11 characters.
  const std::string text = "Zo\xC3\xAB in \xC5\x81\xC3\xB3" "d\xC5\xBA";
  ASSERT_EQ(text.size(), 15u);
  EXPECT_EQ(byte_characters(text), (std::vector<int64_t>{0, 1, 2, 2, 3, 4, 5, 6, 7, 7, 8, 8, 9, 10, 10}));
  std::vector<std::string> labels = {"B-PER", "I-PER", "I-PER", "I-PER", "O", "O", "O", "O"};
  for (int i = 0; i < 7; ++i) labels.push_back(i == 0 ? "B-LOC" : "I-LOC");
  const std::vector<double> scores(15, 0.8);
  const auto p = probabilities(labels, scores);
  for (const auto a : {Aggregation::simple, Aggregation::first, Aggregation::max, Aggregation::average}) {
    SCOPED_TRACE(to_string(a));
    // average: I-PER's mean over the word's bytes is (.05 + 3 x .8) / 4, I-LOC's (.05 + 6 x .8) / 7.
    const bool average = a == Aggregation::average;
    expect_entities(aggregate(text, p, kLabels, a),
                    {{"PER", average ? 2.45 / 4 : 0.8, 0, 3, "Zo\xC3\xAB", 0, 4},
                     {"LOC", average ? 4.85 / 7 : 0.8, 7, 11, "\xC5\x81\xC3\xB3" "d\xC5\xBA", 8, 15}});
  }
  // An entity that starts or ends inside a character takes the whole character; none answers a byte
  // with the character it is part of.
  labels[8] = "O";
  labels[9] = "B-LOC";
  labels[13] = "O";
  labels[14] = "O";
  const auto q = probabilities(labels, scores);
  expect_entities(aggregate(text, q, kLabels, Aggregation::simple),
                  {{"PER", 0.8, 0, 3, "Zo\xC3\xAB", 0, 4}, {"LOC", 0.8, 7, 10, "\xC5\x81\xC3\xB3" "d", 9, 13}});
  const auto none = aggregate(text, q, kLabels, Aggregation::none);
  ASSERT_EQ(none.size(), 8u);
  expect_entities({none[2], none[3], none[4]}, {{"I-PER", 0.8, 2, 3, "\xC3\xAB", 2, 3},
                                                {"I-PER", 0.8, 2, 3, "\xC3\xAB", 3, 4},
                                                {"B-LOC", 0.8, 7, 8, "\xC5\x81", 9, 10}});
}

TEST(TokenClassificationPipeline, InvalidUtf8CountsAsTheTokenizersDecodeDoes) {
  // a, E2 82 (a truncated 3-byte sequence: one U+FFFD), b, FF (one U+FFFD), ED A0 (a surrogate: two).
  const std::string text = "a\xE2\x82" "b\xFF\xED\xA0";
  EXPECT_EQ(byte_characters(text), (std::vector<int64_t>{0, 1, 1, 2, 3, 4, 5}));
  EXPECT_EQ(utf8_decode_replace(text), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  const auto p = probabilities({"O", "B-PER", "I-PER", "I-PER", "O", "O", "O"}, std::vector<double>(7, 0.9));
  expect_entities(aggregate(text, p, kLabels, Aggregation::simple), {{"PER", 0.9, 1, 3, "\xEF\xBF\xBD" "b", 1, 4}});
}

TEST(TokenClassificationPipeline, AggregationNamesParseAndOthersAreErrors) {
  for (const auto a : {Aggregation::none, Aggregation::simple, Aggregation::first, Aggregation::max, Aggregation::average})
    EXPECT_EQ(parse_aggregation(to_string(a)), a);
  const auto message = error_of([] { parse_aggregation("mean"); });
  EXPECT_NE(message.find("'mean'"), std::string::npos) << message;
  EXPECT_NE(message.find("none, simple, first, max or average"), std::string::npos) << message;
  EXPECT_NE(error_of([] { aggregate("abc", torch::zeros({2, 5}), kLabels, Aggregation::simple); }).find("3 bytes"),
            std::string::npos);
}

// ---- tag decoding ----

// Whether `tags` is valid IOB2 under kLabels: an I-X only right after B-X or I-X.
bool valid_iob2(const std::vector<int64_t>& tags) {
  for (size_t i = 0; i < tags.size(); ++i) {
    const auto& label = kLabels.at(tags[i]);
    if (label.rfind("I-", 0) != 0) continue;
    if (i == 0 || kLabels.at(tags[i - 1]).substr(1) != label.substr(1) || kLabels.at(tags[i - 1]) == "O") return false;
  }
  return true;
}

// Whether valid IOB2 `tags` also keep entities apart: every B- first or right after an O.
bool separated(const std::vector<int64_t>& tags) {
  for (size_t i = 1; i < tags.size(); ++i)
    if (kLabels.at(tags[i]).rfind("B-", 0) == 0 && kLabels.at(tags[i - 1]) != "O") return false;
  return true;
}

double sequence_score(const torch::Tensor& log_probs, const std::vector<int64_t>& tags) {
  double total = 0;
  for (size_t i = 0; i < tags.size(); ++i) total += log_probs[static_cast<int64_t>(i)][tags[i]].item<double>();
  return total;
}

// The highest score of the tag sequences (every one of log_probs' rows x labels) that `keep` accepts.
double best_score(const torch::Tensor& log_probs, const std::function<bool(const std::vector<int64_t>&)>& keep) {
  const int64_t n = log_probs.size(0), k = log_probs.size(1);
  int64_t count = 1;
  for (int64_t i = 0; i < n; ++i) count *= k;
  double best = -std::numeric_limits<double>::infinity();
  std::vector<int64_t> tags(static_cast<size_t>(n));
  for (int64_t code = 0; code < count; ++code) {
    for (int64_t i = 0, c = code; i < n; ++i, c /= k) tags[static_cast<size_t>(i)] = c % k;
    if (keep(tags)) best = std::max(best, sequence_score(log_probs, tags));
  }
  return best;
}

TEST(TokenClassificationPipeline, ViterbiSeparatedMergesASegmentThatABeginInsideWouldSplit) {
  // "ab cd": a B-PER at c, right after PER's b, splits PER in two for viterbi; kept apart, a B- needs an O
  // before it, and I-PER at c (0.3) is likelier than O at the space (0.1) and B-PER at c.
  const auto p = probabilities({"B-PER", "I-PER", "I-PER", "B-PER", "I-PER"}, {0.9, 0.9, 0.8, 0.6, 0.9});
  p[2][kIds.at("O")] = 0.1, p[3][kIds.at("I-PER")] = 0.3;
  EXPECT_EQ(decode_tags(p.log(), kLabels, TagDecode::viterbi), (std::vector<int64_t>{1, 2, 2, 1, 2}));
  EXPECT_EQ(decode_tags(p.log(), kLabels, TagDecode::viterbi_separated), (std::vector<int64_t>{1, 2, 2, 2, 2}));
  expect_entities(aggregate("ab cd", p, kLabels, Aggregation::simple, {"O"}, TagDecode::viterbi_separated),
                  {{"PER", (0.9 + 0.9 + 0.8 + 0.3 + 0.9) / 5, 0, 5, "ab cd", 0, 5}});
  EXPECT_EQ(aggregate("ab cd", p, kLabels, Aggregation::simple, {"O"}, TagDecode::viterbi).size(), 2u);
  // After an O a B- stays: two entities that an O separates are two.
  const auto q = probabilities({"B-PER", "O", "B-PER"}, {0.9, 0.9, 0.9});
  EXPECT_EQ(decode_tags(q.log(), kLabels, TagDecode::viterbi_separated), (std::vector<int64_t>{1, 0, 1}));
}

TEST(TokenClassificationPipeline, ViterbiKeepsASegmentWholeWhereArgmaxFlipsItsMiddle) {
  // I-LOC inside a PER segment: argmax reads PER, LOC, PER; a switch to LOC there would need a B-LOC and a
  // B-PER (0.02 each), staying PER costs 0.3 and 0.35 at the flipped bytes, so the valid best is PER throughout.
  const auto p = probabilities({"B-PER", "I-PER", "I-LOC", "I-LOC", "I-PER", "O"}, {0.9, 0.8, 0.6, 0.6, 0.9, 0.9});
  p[2][kIds.at("I-PER")] = 0.3, p[2][kIds.at("B-LOC")] = 0.02;
  p[3][kIds.at("I-PER")] = 0.35, p[3][kIds.at("B-LOC")] = 0.02;
  p[4][kIds.at("B-PER")] = 0.02;
  const auto argmax = decode_tags(p.log(), kLabels, TagDecode::argmax);
  EXPECT_EQ(argmax, (std::vector<int64_t>{1, 2, 4, 4, 2, 0}));
  const auto viterbi = decode_tags(p.log(), kLabels, TagDecode::viterbi);
  EXPECT_EQ(viterbi, (std::vector<int64_t>{1, 2, 2, 2, 2, 0}));
  // Through the pipeline: one entity instead of three, each byte scored by its label's probability.
  expect_entities(aggregate("abcde ", p, kLabels, Aggregation::simple, {"O"}, TagDecode::viterbi),
                  {{"PER", (0.9 + 0.8 + 0.3 + 0.35 + 0.9) / 5, 0, 5, "abcde", 0, 5}});
  EXPECT_EQ(aggregate("abcde ", p, kLabels, Aggregation::simple).size(), 3u);
  // A sequence may not start inside a segment: a leading I-PER becomes B-PER where that is next best.
  const auto q = probabilities({"I-PER", "I-PER"}, {0.6, 0.9});
  q[0][kIds.at("B-PER")] = 0.3;
  EXPECT_EQ(decode_tags(q.log(), kLabels, TagDecode::viterbi), (std::vector<int64_t>{1, 2}));
  // average chooses from mean probabilities, so it does not take viterbi's labels.
  const auto message = error_of([&] { aggregate("abcde ", p, kLabels, Aggregation::average, {"O"}, TagDecode::viterbi); });
  EXPECT_NE(message.find("average"), std::string::npos) << message;
}

TEST(TokenClassificationPipeline, ViterbiFindsTheLikeliestValidSequenceOfEveryOne) {
  // Against every sequence of 5 positions over the 5 labels (3,125), on random scores: viterbi's is valid and
  // scores as high as the best valid one; where argmax's is valid, viterbi returns it.
  torch::manual_seed(3);
  const int64_t n = 5, k = 5;
  int64_t argmax_valid = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const auto log_probs = torch::log_softmax(3 * torch::randn({n, k}, torch::kDouble), -1);
    const double best = best_score(log_probs, valid_iob2);
    const auto viterbi = decode_tags(log_probs, kLabels, TagDecode::viterbi);
    ASSERT_EQ(viterbi.size(), static_cast<size_t>(n));
    EXPECT_TRUE(valid_iob2(viterbi)) << "trial " << trial;
    EXPECT_NEAR(sequence_score(log_probs, viterbi), best, 1e-9) << "trial " << trial;
    const auto argmax = decode_tags(log_probs, kLabels, TagDecode::argmax);
    if (valid_iob2(argmax)) {
      ++argmax_valid;
      EXPECT_EQ(viterbi, argmax) << "trial " << trial;
    }
  }
  EXPECT_GT(argmax_valid, 0);  // the last check ran
  // viterbi_separated: the same search among the valid sequences whose B- labels are first or follow an O.
  int64_t differs = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const auto log_probs = torch::log_softmax(3 * torch::randn({n, k}, torch::kDouble), -1);
    const double best = best_score(log_probs, [](const auto& tags) { return valid_iob2(tags) && separated(tags); });
    const auto apart = decode_tags(log_probs, kLabels, TagDecode::viterbi_separated);
    EXPECT_TRUE(valid_iob2(apart) && separated(apart)) << "trial " << trial;
    EXPECT_NEAR(sequence_score(log_probs, apart), best, 1e-9) << "trial " << trial;
    differs += apart != decode_tags(log_probs, kLabels, TagDecode::viterbi);
  }
  EXPECT_GT(differs, 0);  // the constraint mattered on some of the random scores
  // Labels without B-/I- prefixes constrain nothing: viterbi is argmax.
  const std::map<int64_t, std::string> plain = {{0, "O"}, {1, "PER"}, {2, "LOC"}};
  const auto scores = torch::randn({50, 3}, torch::kDouble);
  EXPECT_EQ(decode_tags(scores, plain, TagDecode::viterbi), decode_tags(scores, plain, TagDecode::argmax));
  EXPECT_TRUE(decode_tags(torch::zeros({0, 5}), kLabels, TagDecode::viterbi).empty());
}

TEST(TokenClassificationPipeline, TagDecodeNamesParseAndOthersAreErrors) {
  for (const auto d : {TagDecode::argmax, TagDecode::viterbi, TagDecode::viterbi_separated})
    EXPECT_EQ(parse_tag_decode(to_string(d)), d);
  EXPECT_EQ(tag_decode_names(), (std::vector<std::string>{"argmax", "viterbi", "viterbi_separated"}));
  const auto message = error_of([] { parse_tag_decode("crf"); });
  EXPECT_NE(message.find("'crf'"), std::string::npos) << message;
  EXPECT_NE(message.find("viterbi"), std::string::npos) << message;
  EXPECT_NE(error_of([] { decode_tags(torch::zeros({5}), kLabels, TagDecode::viterbi); }).find("(positions, num_labels)"),
            std::string::npos);
}

// ---- the pipeline on a model ----

constexpr int64_t kMaxPositions = 32;

PerceiverConfig small_config() {
  return PerceiverConfig::from_json({{"d_model", 32},
                                     {"d_latents", 48},
                                     {"num_latents", 8},
                                     {"num_self_attends_per_block", 2},
                                     {"num_self_attention_heads", 4},
                                     {"num_cross_attention_heads", 4},
                                     {"max_position_embeddings", kMaxPositions},
                                     {"id2label",
                                      {{"0", "O"}, {"1", "B-PER"}, {"2", "I-PER"}, {"3", "B-LOC"}, {"4", "I-LOC"}}},
                                     {"architectures", {"PerceiverForTokenClassification"}}});
}

std::shared_ptr<PerceiverForTokenClassificationImpl> small_model() {
  torch::manual_seed(3);
  auto model = std::dynamic_pointer_cast<PerceiverForTokenClassificationImpl>(build_model(small_config()));
  EXPECT_TRUE(model);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);  // labels that vary along a text
  model->eval();
  return model;
}

// The model's logits (length, num_labels) for `bytes` alone: plain byte ids, a mask of ones.
torch::Tensor manual_logits(PerceiverForTokenClassificationImpl& model, const std::string& bytes) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids;
  for (const unsigned char c : bytes) ids.push_back(c + 6);
  const auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);
  return model.forward(input, torch::ones_like(input)).logits[0];
}

// 90 bytes with multi-byte characters: four windows of 32 at overlap 8.
const std::string kLongText =
    "Ann met Bob in Oslo, then Zo\xC3\xAB flew to \xC5\x81\xC3\xB3" "d\xC5\xBA with Carl; later they all went home to Rom.";

TEST(TokenClassificationPipeline, ShortTextEqualsAManualForwardOnPlainBytes) {
  auto model = small_model();
  auto runner = eager_runner(model, "small");
  const std::string text = "Ann [MASK] Oslo";  // [MASK] is five plain bytes here, as in training
  const auto want = manual_logits(*model, text);
  for (const auto a : {Aggregation::none, Aggregation::simple, Aggregation::average}) {
    TokenClassificationOptions options;
    options.aggregation = a;
    const auto results = classify_tokens(*runner, {text}, options);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].text, text);
    EXPECT_EQ(tensor_mismatch(results[0].logits, want, 1e-6, 1e-6), "");
    const auto expected = aggregate(text, torch::softmax(want.to(torch::kDouble), -1), model->config().id2label, a);
    ASSERT_EQ(results[0].entities.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(results[0].entities[i].label, expected[i].label);
      EXPECT_NEAR(results[0].entities[i].score, expected[i].score, 1e-6);
      EXPECT_EQ(results[0].entities[i].byte_start, expected[i].byte_start);
      EXPECT_EQ(results[0].entities[i].byte_end, expected[i].byte_end);
    }
    if (a == Aggregation::none) {
      // The random model labels some bytes other than O.
      EXPECT_FALSE(results[0].entities.empty());
    }
  }
}

TEST(TokenClassificationPipeline, LongTextIsWindowedAndStitchedNotTruncated) {
  auto model = small_model();
  auto runner = eager_runner(model, "small");
  ASSERT_EQ(kLongText.size(), 90u);
  const auto windows = byte_windows(90, kMaxPositions, 8);
  ASSERT_EQ(windows.size(), 4u);  // starts 0, 24, 48, 58
  std::vector<torch::Tensor> pieces;
  for (const auto& w : windows)
    pieces.push_back(manual_logits(*model, kLongText.substr(static_cast<size_t>(w.start), static_cast<size_t>(w.end - w.start))));
  const auto want = stitch_logits(windows, pieces, 90);

  TokenClassificationOptions options;
  options.overlap = 8;
  options.batch_size = 3;  // windows of one text across batches, with a short text padded among them
  const auto results = classify_tokens(*runner, {"Ann in Oslo", kLongText, ""}, options);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(tensor_mismatch(results[1].logits, want, 1e-5, 1e-5), "");
  EXPECT_EQ(tensor_mismatch(results[0].logits, manual_logits(*model, "Ann in Oslo"), 1e-5, 1e-5), "");
  EXPECT_EQ(results[2].logits.sizes(), (std::vector<int64_t>{0, 5}));
  EXPECT_TRUE(results[2].entities.empty());
  // One text per call, one window per batch: the same.
  options.batch_size = 1;
  const auto alone = classify_tokens(*runner, {kLongText}, options);
  EXPECT_EQ(tensor_mismatch(alone[0].logits, want, 1e-6, 1e-6), "");
  // An overlap beyond half a window is capped there: 100 (or the default 32, a whole window) is 16.
  options.overlap = 16;
  const auto half = classify_tokens(*runner, {kLongText}, options)[0].logits;
  for (const int64_t overlap : {32, 100}) {
    options.overlap = overlap;
    EXPECT_TRUE(torch::equal(classify_tokens(*runner, {kLongText}, options)[0].logits, half)) << overlap;
  }
  EXPECT_FALSE(torch::equal(half, want));
  const auto expected = aggregate(kLongText, torch::softmax(want.to(torch::kDouble), -1), model->config().id2label,
                                  Aggregation::simple);
  ASSERT_EQ(alone[0].entities.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(alone[0].entities[i].label, expected[i].label);
    EXPECT_EQ(alone[0].entities[i].start, expected[i].start);
    EXPECT_EQ(alone[0].entities[i].end, expected[i].end);
    EXPECT_EQ(alone[0].entities[i].word, expected[i].word);
  }
}

TEST(TokenClassificationPipeline, AnotherHeadANegativeOverlapOrNoBatchIsAnError) {
  auto model = small_model();
  auto runner = eager_runner(model, "small");
  TokenClassificationOptions options;
  options.overlap = -1;
  EXPECT_NE(error_of([&] { classify_tokens(*runner, {"x"}, options); }).find(">= 0, got -1"), std::string::npos);
  options.overlap = 4;
  options.batch_size = 0;
  EXPECT_NE(error_of([&] { classify_tokens(*runner, {"x"}, options); }).find("batch size"), std::string::npos);
  auto config = small_config();
  config.architectures = {"PerceiverForMaskedLM"};
  auto mlm = eager_runner(build_model(config), "mlm-dir");
  const auto message = error_of([&] { classify_tokens(*mlm, {"x"}); });
  EXPECT_NE(message.find("token classification needs PerceiverForTokenClassification"), std::string::npos) << message;
  EXPECT_NE(message.find("mlm-dir"), std::string::npos) << message;
}

TEST(TokenClassificationPipeline, AnExportedFileAnswersAsItsModelDirectory) {
  auto model = small_model();
  TempDir tmp;
  const auto dir = tmp.path() / "model";
  io::save_pretrained(*model, dir);
  const auto file = tmp.path() / "model.pt";
  export_model_dir(dir, file);
  TokenClassificationOptions options;
  options.overlap = 8;
  options.batch_size = 4;  // the long text's windows with the short text, padded
  const std::vector<std::string> texts = {"Ann in Oslo", kLongText};
  const auto eager = classify_tokens(*open_model(dir), texts, options);
  const auto exported = classify_tokens(*open_model(file), texts, options);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(tensor_mismatch(exported[i].logits, eager[i].logits, 1e-4, 1e-4), "") << i;  // traced kernels round differently
    ASSERT_EQ(exported[i].entities.size(), eager[i].entities.size()) << i;
    for (size_t k = 0; k < eager[i].entities.size(); ++k) {
      EXPECT_EQ(exported[i].entities[k].label, eager[i].entities[k].label);
      EXPECT_EQ(exported[i].entities[k].byte_start, eager[i].entities[k].byte_start);
      EXPECT_EQ(exported[i].entities[k].byte_end, eager[i].entities[k].byte_end);
    }
  }
  EXPECT_FALSE(eager[1].entities.empty());
}

// ---- perceiver predict ----

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

TEST(TokenClassificationPipeline, PredictCliAnswersEntitiesAndLogitsOfTheLibrary) {
  auto model = small_model();
  TempDir tmp;
  const auto dir = tmp.path() / "model";
  io::save_pretrained(*model, dir);
  write_file(tmp.path() / "texts.txt", kLongText + "\n");
  auto runner = eager_runner(model, dir);
  for (const auto& aggregation : {"none", "simple", "first", "max", "average"}) {
    SCOPED_TRACE(aggregation);
    const auto r = run_cli("predict --json --model " + quoted(dir) + " --aggregation " + aggregation +
                           " 'Ann in Oslo' --list " + quoted(tmp.path() / "texts.txt"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto answers = json::parse(r.out);
    ASSERT_EQ(answers.size(), 2u);
    TokenClassificationOptions options;
    options.aggregation = parse_aggregation(aggregation);
    const auto want = classify_tokens(*runner, {"Ann in Oslo", kLongText}, options);
    EXPECT_FALSE(want[1].entities.empty());
    for (size_t i = 0; i < 2; ++i) {
      const auto& a = answers[i];
      EXPECT_EQ(a.at("input"), want[i].text);
      const auto& logits = a.at("logits");
      ASSERT_EQ(logits.size(), want[i].text.size());
      ASSERT_EQ(logits[0].size(), 5u);
      const auto accessor = want[i].logits.accessor<float, 2>();
      for (size_t b = 0; b < logits.size(); ++b)
        for (size_t l = 0; l < 5; ++l)
          ASSERT_NEAR(logits[b][l].get<double>(), accessor[static_cast<int64_t>(b)][static_cast<int64_t>(l)], 1e-5);
      ASSERT_EQ(a.at("entities").size(), want[i].entities.size());
      for (size_t k = 0; k < want[i].entities.size(); ++k) {
        const auto& e = a.at("entities")[k];
        const auto& w = want[i].entities[k];
        EXPECT_EQ(e.at("label"), w.label);
        EXPECT_NEAR(e.at("score").get<double>(), w.score, 1e-5);
        EXPECT_EQ(e.at("start"), w.start);
        EXPECT_EQ(e.at("end"), w.end);
        EXPECT_EQ(e.at("word"), w.word);
        EXPECT_EQ(e.at("byte_start"), w.byte_start);
        EXPECT_EQ(e.at("byte_end"), w.byte_end);
      }
    }
  }
  // Without --json: the text, then a line per entity (label, score, character span, text).
  const auto r = run_cli("predict --aggregation none --model " + quoted(dir) + " 'Ann in Oslo'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  TokenClassificationOptions none;
  none.aggregation = Aggregation::none;
  const auto want = classify_tokens(*runner, {"Ann in Oslo"}, none)[0];
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 1 + std::max<size_t>(want.entities.size(), 1));
  EXPECT_EQ(lines[0], "Ann in Oslo");
  if (!want.entities.empty()) {
    const auto& e = want.entities.front();
    EXPECT_EQ(lines[1].rfind("  " + e.label + " (", 0), 0u) << lines[1];
    EXPECT_NE(lines[1].find(") " + std::to_string(e.start) + "-" + std::to_string(e.end) + " " + json(e.word).dump()),
              std::string::npos)
        << lines[1];
  }
}

TEST(TokenClassificationPipeline, PredictCliRejectsAnUnknownAggregationInOneLine) {
  auto model = small_model();
  TempDir tmp;
  io::save_pretrained(*model, tmp.path() / "model");
  const auto r = run_cli("predict --model " + quoted(tmp.path() / "model") + " --aggregation mean 'Ann'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("aggregation 'mean'"), std::string::npos) << r.err;
  EXPECT_EQ(trainers::predict_task("PerceiverForTokenClassification").name, "token-classification");
}

}  // namespace
}  // namespace perceiver::testing
