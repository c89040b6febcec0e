#include "perceiver/pipelines/tag_decoding.h"

#include <torch/torch.h>

#include <iterator>
#include <limits>
#include <stdexcept>

namespace perceiver {
namespace {

struct DecodeEntry {
  TagDecode decode;
  const char* name;
  const char* description;
};
constexpr DecodeEntry kDecodes[] = {
    {TagDecode::argmax, "argmax", "each byte's likeliest label"},
    {TagDecode::viterbi, "viterbi", "the likeliest valid IOB2 sequence: an I-X only after B-X or I-X"},
    {TagDecode::viterbi_separated, "viterbi_separated",
     "as viterbi, and a B- only first or after an O, for labellings where an O always separates two entities"},
};

// Per label: the type an I- label must continue (empty for a label that may follow anything), the type
// a label lets an I- continue (B-X and I-X: X; anything else: none), and whether it is a B-.
struct Transitions {
  std::vector<std::string> needs, opens;
  std::vector<bool> begins;
  bool separated = false;  // a B- only after a label without a prefix

  Transitions(const std::map<int64_t, std::string>& id2label, int64_t num_labels, bool separated)
      : separated(separated) {
    for (int64_t j = 0; j < num_labels; ++j) {
      const auto it = id2label.find(j);
      const std::string label = it == id2label.end() ? std::string() : it->second;
      const bool b = label.rfind("B-", 0) == 0, i = label.rfind("I-", 0) == 0;
      needs.push_back(i ? label.substr(2) : std::string());
      opens.push_back(b || i ? label.substr(2) : std::string());
      begins.push_back(b);
    }
  }
  bool may_start(int64_t j) const { return needs[j].empty(); }
  bool allowed(int64_t from, int64_t to) const {
    if (separated && begins[to] && !opens[from].empty()) return false;
    return needs[to].empty() || needs[to] == opens[from];
  }
};

}  // namespace

TagDecode parse_tag_decode(const std::string& name) {
  for (const auto& d : kDecodes)
    if (name == d.name) return d.decode;
  throw std::invalid_argument("unknown tag decoding '" + name + "' (known: " + tag_decode_help() + ")");
}

const char* to_string(TagDecode decode) {
  for (const auto& d : kDecodes)
    if (d.decode == decode) return d.name;
  return "?";
}

std::vector<std::string> tag_decode_names() {
  std::vector<std::string> out;
  for (const auto& d : kDecodes) out.emplace_back(d.name);
  return out;
}

std::string tag_decode_help() {
  std::string out;
  const size_t n = std::size(kDecodes);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += i + 1 == n ? " or " : ", ";
    out += std::string(kDecodes[i].name) + " (" + kDecodes[i].description + ")";
  }
  return out;
}

std::vector<int64_t> decode_tags(const torch::Tensor& log_probs, const std::map<int64_t, std::string>& id2label,
                                 TagDecode decode) {
  if (log_probs.dim() != 2)
    throw std::invalid_argument("tag decoding: log-probabilities must be (positions, num_labels), got " +
                                c10::str(log_probs.sizes()));
  const auto scores = log_probs.to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t n = scores.size(0), k = scores.size(1);
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (n == 0) return out;
  if (k < 1) throw std::invalid_argument("tag decoding: no labels");
  if (decode == TagDecode::argmax) {  // numpy's argmax, as HF's pipeline: the first maximum, NaN the largest
    const auto best = scores.argmax(-1);
    return {best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + n};
  }
  const auto s = scores.accessor<double, 2>();
  const Transitions t(id2label, k, decode == TagDecode::viterbi_separated);
  constexpr double kNever = -std::numeric_limits<double>::infinity();
  // best[j]: the highest score of a valid sequence up to position i ending in j; from[i][j]: its previous label.
  std::vector<double> best(static_cast<size_t>(k)), next(static_cast<size_t>(k));
  std::vector<int32_t> from(static_cast<size_t>(n * k), -1);  // 4 bytes per position and label, for long texts
  for (int64_t j = 0; j < k; ++j) best[static_cast<size_t>(j)] = t.may_start(j) ? s[0][j] : kNever;
  for (int64_t i = 1; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      double top = kNever;
      int64_t arg = -1;
      for (int64_t p = 0; p < k; ++p)
        if (t.allowed(p, j) && best[static_cast<size_t>(p)] > top) top = best[static_cast<size_t>(p)], arg = p;
      next[static_cast<size_t>(j)] = arg < 0 ? kNever : top + s[i][j];
      from[static_cast<size_t>(i * k + j)] = static_cast<int32_t>(arg);
    }
    best.swap(next);
  }
  int64_t last = -1;
  for (int64_t j = 0; j < k; ++j)
    if (last < 0 ? best[static_cast<size_t>(j)] > kNever : best[static_cast<size_t>(j)] > best[static_cast<size_t>(last)])
      last = j;
  if (last < 0)  // every label is an I- (no valid sequence), or the scores are -inf or NaN: each position's own best
    return decode_tags(log_probs, id2label, TagDecode::argmax);
  for (int64_t i = n - 1; i >= 0; --i) {
    out[static_cast<size_t>(i)] = last;
    if (i > 0) last = from[static_cast<size_t>(i * k + last)];
  }
  return out;
}

}  // namespace perceiver
