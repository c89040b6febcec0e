#include "perceiver/pipelines/span_fill.h"

#include <algorithm>
#include <random>
#include <stdexcept>

#include "perceiver/pipelines/fill_mask_pipeline.h"
#include "perceiver/processing/tokenizer.h"

namespace perceiver {
namespace {

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// (start, length) of every run of ASCII letters of at least min_bytes.
std::vector<std::pair<size_t, size_t>> words(const std::string& text, int64_t min_bytes) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < text.size();) {
    if (!is_letter(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_letter(text[j])) ++j;
    if (static_cast<int64_t>(j - i) >= min_bytes) out.emplace_back(i, j - i);
    i = j;
  }
  return out;
}

// Cuts at a byte limit without splitting a UTF-8 character.
std::string prefix_bytes(const std::string& text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

}  // namespace

SpanFillReport fill_word_spans(ModelRunner& runner, const std::vector<std::string>& documents,
                               const SpanFillOptions& options) {
  if (options.count < 1) throw std::invalid_argument("fill_word_spans: count must be at least 1");
  if (options.min_word_bytes < 1) throw std::invalid_argument("fill_word_spans: min_word_bytes must be at least 1");
  const auto limit = static_cast<size_t>(std::max<int64_t>(runner.config().max_position_embeddings - 2, 1));
  const auto n = static_cast<int64_t>(documents.size());
  const auto count = std::min(options.count, n);

  SpanFillReport report;
  std::vector<std::string> inputs;
  const std::string mask = PerceiverTokenizer::special_tokens()[PerceiverTokenizer::mask_token_id].content;
  std::mt19937_64 rng(options.seed);
  // Evenly spread starting points; a document without a long enough word hands over to the next.
  for (int64_t k = 0, next = 0; k < count; ++k) {
    for (int64_t d = std::max(k * n / count, next); d < n; ++d) {
      const auto& document = documents[static_cast<size_t>(d)];
      const auto text = prefix_bytes(document, limit);
      auto candidates = words(document, options.min_word_bytes);  // whole words of the full text...
      candidates.erase(std::remove_if(candidates.begin(), candidates.end(),  // ...that fit the model
                                      [&](const auto& w) { return w.first + w.second > text.size(); }),
                       candidates.end());
      if (candidates.empty()) continue;
      const auto [start, length] = candidates[rng() % candidates.size()];
      SpanFillExample e;
      e.document = d;
      e.truth = text.substr(start, length);
      e.masked = text.substr(0, start) + std::string(length, '_') + text.substr(start + length);
      std::string input = text.substr(0, start);
      for (size_t i = 0; i < length; ++i) input += mask;
      inputs.push_back(input + text.substr(start + length));
      report.examples.push_back(std::move(e));
      next = d + 1;
      break;
    }
  }
  if (inputs.empty()) return report;

  FillMaskOptions fill;
  fill.top_k = 1;
  fill.batch_size = options.batch_size;
  fill.decode = options.decode;
  const auto filled = fill_mask(runner, inputs, fill);
  for (size_t i = 0; i < filled.size(); ++i) {
    auto& e = report.examples[i];
    const auto& tokens = filled[i].spans.at(0).top_k.at(0).tokens;
    e.predicted = filled[i].spans[0].top_k[0].text;
    for (size_t b = 0; b < e.truth.size(); ++b)
      if (b < tokens.size() &&
          tokens[b] == static_cast<unsigned char>(e.truth[b]) + PerceiverTokenizer::num_special_tokens)
        ++e.bytes_correct;
    report.bytes += static_cast<int64_t>(e.truth.size());
    report.bytes_correct += e.bytes_correct;
    if (e.bytes_correct == static_cast<int64_t>(e.truth.size())) ++report.words_correct;
  }
  return report;
}

std::string describe(const SpanFillExample& e) {
  return one_line(e.masked) + " -> \"" + one_line(e.predicted) + "\" (truth \"" + e.truth + "\", " +
         std::to_string(e.bytes_correct) + "/" + std::to_string(e.truth.size()) + " bytes)";
}

}  // namespace perceiver
