// Entity-level metrics of token classification, as seqeval computes them (default mode, conlleval's
// chunking): entities are read from IOB2 tag sequences and scored by exact match of type and span.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct Entity {
  std::string label;
  int64_t start = 0, end = 0;  // [start, end) in the tag sequence
  bool operator==(const Entity& o) const { return label == o.label && start == o.start && end == o.end; }
  bool operator<(const Entity& o) const {
    return label != o.label ? label < o.label : start != o.start ? start < o.start : end < o.end;
  }
};

// Chunks of an IOB2 tag sequence as seqeval (default mode, conlleval) reads them: a chunk starts at B-X, or at
// I-X after O or after another type; ends before O, B-, or another type. (seqeval's E-/S- rules of IOBES apply
// too; a tag without a "-TYPE" suffix has type "_".)
std::vector<Entity> iob2_entities(const std::vector<std::string>& tags);

struct EntityScore {
  double precision = 0, recall = 0, f1 = 0;
  int64_t support = 0;  // entities in the truth
};

struct EntityReport {
  std::map<std::string, EntityScore> per_label;  // every type found in the truth or the predictions
  EntityScore micro;
  EntityScore macro;     // unweighted mean over per_label (seqeval's "macro avg")
  EntityScore weighted;  // mean weighted by support (seqeval's "weighted avg")
  int64_t predicted = 0, correct = 0;  // entities predicted, and those of them that are exactly right
};

// Exact-match entity P/R/F1 over documents (pairs of true and predicted tag sequences of equal length), as
// seqeval's classification_report computes them (0 when a denominator is 0). Entities never cross documents.
// Throws std::invalid_argument when the document counts or a document's lengths differ.
EntityReport entity_scores(const std::vector<std::vector<std::string>>& truth,
                           const std::vector<std::vector<std::string>>& predicted);

}  // namespace perceiver::trainers
