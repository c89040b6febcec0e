// Entity-level precision, recall and F1 as seqeval computes them (default mode: conlleval's chunking),
// on examples worked by hand and on seqeval's README example.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "trainers/token_metrics.h"

namespace perceiver::trainers {
namespace {

using Tags = std::vector<std::string>;

std::vector<Entity> entities(const Tags& tags) { return iob2_entities(tags); }

TEST(EntityMetrics, ChunksFollowSeqevalsDefaultMode) {
  // B- then I- of its type; an entity at the very end is closed by the sequence's end.
  EXPECT_EQ(entities({"B-PER", "I-PER", "O", "B-LOC"}), (std::vector<Entity>{{"PER", 0, 2}, {"LOC", 3, 4}}));
  // I- after O starts an entity (conlleval), as does I- at the start.
  EXPECT_EQ(entities({"I-PER", "O", "I-LOC", "I-LOC"}), (std::vector<Entity>{{"PER", 0, 1}, {"LOC", 2, 4}}));
  // A type switch ends one entity and starts another, whether the new tag is B- or I-.
  EXPECT_EQ(entities({"B-PER", "I-LOC", "I-LOC", "B-ORG", "I-PER"}),
            (std::vector<Entity>{{"PER", 0, 1}, {"LOC", 1, 3}, {"ORG", 3, 4}, {"PER", 4, 5}}));
  // B- after B- of one type: two entities.
  EXPECT_EQ(entities({"B-LOC", "B-LOC", "I-LOC"}), (std::vector<Entity>{{"LOC", 0, 1}, {"LOC", 1, 3}}));
  EXPECT_EQ(entities({"O", "O"}), std::vector<Entity>{});
  EXPECT_EQ(entities({}), std::vector<Entity>{});
  // Multi-character types and types with '-' in them: the type is what follows the prefix's '-'.
  EXPECT_EQ(entities({"B-GPE-CITY", "I-GPE-CITY"}), (std::vector<Entity>{{"GPE-CITY", 0, 2}}));
}

// seqeval's README example:
//   y_true = [['O','O','O','B-MISC','I-MISC','I-MISC','O'], ['B-PER','I-PER','O']]
//   y_pred = [['O','O','B-MISC','I-MISC','I-MISC','I-MISC','O'], ['B-PER','I-PER','O']]
// True entities: MISC [3, 6) of document 0, PER [0, 2) of document 1. Predicted: MISC [2, 6), PER [0, 2).
// MISC: 0 correct of 1 predicted, 1 true -> p = r = f1 = 0, support 1. PER: 1 of 1 of 1 -> 1, 1, 1, support 1.
// micro: 1 correct of 2 predicted, 2 true -> p = r = f1 = 0.5 (seqeval: "micro avg 0.50 0.50 0.50 2").
// macro: mean of (0, 1) = 0.5 each; weighted by support (1, 1): 0.5 each.
TEST(EntityMetrics, SeqevalsReadmeExample) {
  const std::vector<Tags> truth = {{"O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"}, {"B-PER", "I-PER", "O"}};
  const std::vector<Tags> predicted = {{"O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"}, {"B-PER", "I-PER", "O"}};
  const auto r = entity_scores(truth, predicted);
  ASSERT_EQ(r.per_label.size(), 2u);
  const auto& misc = r.per_label.at("MISC");
  EXPECT_EQ(misc.precision, 0.0);
  EXPECT_EQ(misc.recall, 0.0);
  EXPECT_EQ(misc.f1, 0.0);
  EXPECT_EQ(misc.support, 1);
  const auto& per = r.per_label.at("PER");
  EXPECT_EQ(per.precision, 1.0);
  EXPECT_EQ(per.recall, 1.0);
  EXPECT_EQ(per.f1, 1.0);
  EXPECT_EQ(per.support, 1);
  EXPECT_DOUBLE_EQ(r.micro.precision, 0.5);
  EXPECT_DOUBLE_EQ(r.micro.recall, 0.5);
  EXPECT_DOUBLE_EQ(r.micro.f1, 0.5);
  EXPECT_EQ(r.micro.support, 2);
  EXPECT_DOUBLE_EQ(r.macro.f1, 0.5);
  EXPECT_DOUBLE_EQ(r.weighted.precision, 0.5);
  EXPECT_EQ(r.predicted, 2);
  EXPECT_EQ(r.correct, 1);
}

// Worked by hand:
//   truth     B-PER I-PER O     B-LOC | I-ORG O     (document 1: I- after O starts ORG [0, 1))
//   predicted B-PER I-PER O     B-ORG | B-ORG B-LOC
// True: PER [0,2) d0, LOC [3,4) d0, ORG [0,1) d1. Predicted: PER [0,2) d0, ORG [3,4) d0, ORG [0,1) d1, LOC [1,2) d1.
// PER 1/1 correct, support 1 -> 1, 1, 1. LOC: 0 correct of 1 predicted, 1 true -> 0. ORG: 1 correct (d1) of
// 2 predicted, 1 true -> p = 1/2, r = 1, f1 = 2 * 0.5 / 1.5 = 2/3.
// micro: 2 correct of 4 predicted, 3 true -> p = 1/2, r = 2/3, f1 = 2 * (1/2)(2/3) / (7/6) = 4/7.
// macro f1 = (0 + 2/3 + 1) / 3 = 5/9; weighted (supports 1, 1, 1) the same.
// The entity at the end of document 0 does not run into document 1.
TEST(EntityMetrics, PartialMatchesCountAsWrongAndEntitiesStayInTheirDocument) {
  const std::vector<Tags> truth = {{"B-PER", "I-PER", "O", "B-LOC"}, {"I-ORG", "O"}};
  const std::vector<Tags> predicted = {{"B-PER", "I-PER", "O", "B-ORG"}, {"B-ORG", "B-LOC"}};
  const auto r = entity_scores(truth, predicted);
  ASSERT_EQ(r.per_label.size(), 3u);
  EXPECT_EQ(r.per_label.at("PER").f1, 1.0);
  EXPECT_EQ(r.per_label.at("LOC").precision, 0.0);
  EXPECT_EQ(r.per_label.at("LOC").support, 1);
  EXPECT_DOUBLE_EQ(r.per_label.at("ORG").precision, 0.5);
  EXPECT_DOUBLE_EQ(r.per_label.at("ORG").recall, 1.0);
  EXPECT_DOUBLE_EQ(r.per_label.at("ORG").f1, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.micro.precision, 0.5);
  EXPECT_DOUBLE_EQ(r.micro.recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.micro.f1, 4.0 / 7.0);
  EXPECT_EQ(r.micro.support, 3);
  EXPECT_DOUBLE_EQ(r.macro.f1, 5.0 / 9.0);
  EXPECT_DOUBLE_EQ(r.weighted.f1, 5.0 / 9.0);
}

// Zero denominators give 0: nothing predicted (precision 0/0), nothing true (recall 0/0), neither.
TEST(EntityMetrics, EmptyDenominatorsAreZeroAndLengthsMustAgree) {
  auto r = entity_scores({{"B-PER", "O"}}, {{"O", "O"}});
  EXPECT_EQ(r.per_label.at("PER").precision, 0.0);
  EXPECT_EQ(r.per_label.at("PER").recall, 0.0);
  EXPECT_EQ(r.micro.f1, 0.0);
  EXPECT_EQ(r.micro.support, 1);
  r = entity_scores({{"O", "O"}}, {{"B-PER", "O"}});
  EXPECT_EQ(r.per_label.at("PER").support, 0);
  EXPECT_EQ(r.micro.precision, 0.0);
  EXPECT_EQ(r.weighted.f1, 0.0);
  r = entity_scores({{"O"}}, {{"O"}});
  EXPECT_TRUE(r.per_label.empty());
  EXPECT_EQ(r.micro.f1, 0.0);
  EXPECT_THROW(entity_scores({{"O"}}, {{"O", "O"}}), std::invalid_argument);
  EXPECT_THROW(entity_scores({{"O"}}, {}), std::invalid_argument);
}

}  // namespace
}  // namespace perceiver::trainers
