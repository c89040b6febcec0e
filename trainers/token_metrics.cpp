#include "trainers/token_metrics.h"

#include <set>
#include <stdexcept>
#include <tuple>

namespace perceiver::trainers {
namespace {

// seqeval.metrics.sequence_labeling: a tag's prefix is its first character, its type what follows the
// first '-' after it ("_" when nothing does).
char prefix_of(const std::string& tag) { return tag.empty() ? 'O' : tag[0]; }

std::string type_of(const std::string& tag) {
  if (tag.empty()) return "_";
  const std::string rest = tag.substr(1);
  const auto dash = rest.find('-');
  const std::string type = dash == std::string::npos ? rest : rest.substr(dash + 1);
  return type.empty() ? "_" : type;
}

bool end_of_chunk(char prev_tag, char tag, const std::string& prev_type, const std::string& type) {
  if (prev_tag == 'E' || prev_tag == 'S') return true;
  if ((prev_tag == 'B' || prev_tag == 'I') && (tag == 'B' || tag == 'S' || tag == 'O')) return true;
  return prev_tag != 'O' && prev_tag != '.' && prev_type != type;
}

bool start_of_chunk(char prev_tag, char tag, const std::string& prev_type, const std::string& type) {
  if (tag == 'B' || tag == 'S') return true;
  if ((prev_tag == 'E' || prev_tag == 'S' || prev_tag == 'O') && (tag == 'E' || tag == 'I')) return true;
  return tag != 'O' && tag != '.' && prev_type != type;
}

double ratio(int64_t num, int64_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den); }

EntityScore score(int64_t correct, int64_t predicted, int64_t truth) {
  EntityScore s;
  s.precision = ratio(correct, predicted);
  s.recall = ratio(correct, truth);
  s.f1 = s.precision + s.recall == 0 ? 0.0 : 2 * s.precision * s.recall / (s.precision + s.recall);
  s.support = truth;
  return s;
}

}  // namespace

std::vector<Entity> iob2_entities(const std::vector<std::string>& tags) {
  std::vector<Entity> out;
  char prev_tag = 'O';
  std::string prev_type;
  int64_t begin = 0;
  const auto n = static_cast<int64_t>(tags.size());
  for (int64_t i = 0; i <= n; ++i) {  // an "O" after the last tag closes a trailing chunk
    static const std::string kOutside = "O";
    const std::string& chunk = i < n ? tags[static_cast<size_t>(i)] : kOutside;
    const char tag = prefix_of(chunk);
    const std::string type = type_of(chunk);
    if (end_of_chunk(prev_tag, tag, prev_type, type)) out.push_back({prev_type, begin, i});
    if (start_of_chunk(prev_tag, tag, prev_type, type)) begin = i;
    prev_tag = tag;
    prev_type = type;
  }
  return out;
}

EntityReport entity_scores(const std::vector<std::vector<std::string>>& truth,
                           const std::vector<std::vector<std::string>>& predicted) {
  if (truth.size() != predicted.size())
    throw std::invalid_argument("entity_scores: " + std::to_string(truth.size()) + " true documents but " +
                                std::to_string(predicted.size()) + " predicted");
  using Key = std::tuple<size_t, int64_t, int64_t>;  // document, start, end
  std::map<std::string, std::set<Key>> true_entities, predicted_entities;
  for (size_t d = 0; d < truth.size(); ++d) {
    if (truth[d].size() != predicted[d].size())
      throw std::invalid_argument("entity_scores: document " + std::to_string(d) + " has " +
                                  std::to_string(truth[d].size()) + " true tags but " +
                                  std::to_string(predicted[d].size()) + " predicted");
    for (const auto& e : iob2_entities(truth[d])) true_entities[e.label].insert({d, e.start, e.end});
    for (const auto& e : iob2_entities(predicted[d])) predicted_entities[e.label].insert({d, e.start, e.end});
  }
  std::set<std::string> labels;
  for (const auto& [label, _] : true_entities) labels.insert(label);
  for (const auto& [label, _] : predicted_entities) labels.insert(label);
  EntityReport report;
  int64_t true_total = 0;
  for (const auto& label : labels) {
    const auto& t = true_entities[label];
    const auto& p = predicted_entities[label];
    int64_t correct = 0;
    for (const auto& key : p) correct += t.count(key) ? 1 : 0;
    report.per_label[label] = score(correct, static_cast<int64_t>(p.size()), static_cast<int64_t>(t.size()));
    report.correct += correct;
    report.predicted += static_cast<int64_t>(p.size());
    true_total += static_cast<int64_t>(t.size());
  }
  report.micro = score(report.correct, report.predicted, true_total);
  // seqeval's averages: macro the plain mean of the per-label values (F1 too), weighted by support; 0 when
  // there is nothing to average.
  report.macro.support = report.weighted.support = true_total;
  if (!labels.empty()) {
    const auto n = static_cast<double>(labels.size());
    for (const auto& [_, s] : report.per_label) {
      report.macro.precision += s.precision / n;
      report.macro.recall += s.recall / n;
      report.macro.f1 += s.f1 / n;
    }
  }
  if (true_total > 0) {
    const auto n = static_cast<double>(true_total);
    for (const auto& [_, s] : report.per_label) {
      const double w = static_cast<double>(s.support) / n;
      report.weighted.precision += s.precision * w;
      report.weighted.recall += s.recall * w;
      report.weighted.f1 += s.f1 * w;
    }
  }
  return report;
}

}  // namespace perceiver::trainers
