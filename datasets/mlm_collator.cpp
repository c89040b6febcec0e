#include "datasets/mlm_collator.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "datasets/byte_vocab.h"

namespace perceiver::datasets {

at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

namespace {

bool is_space_id(int64_t id) {
  const int64_t b = id - byte_vocab::kByteOffset;
  return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f';
}

}  // namespace

MlmBatch mask_tokens(const torch::Tensor& input_ids, const MlmOptions& options, at::Generator& generator) {
  if (input_ids.dim() != 2)
    throw std::invalid_argument("mask_tokens: input_ids must be (B, L), got " + std::to_string(input_ids.dim()) + " dims");
  if (options.mask_probability < 0 || options.mask_probability > 1 || options.mask_token_fraction < 0 ||
      options.random_token_fraction < 0 || options.mask_token_fraction + options.random_token_fraction > 1 ||
      options.whole_word_fraction < 0 || options.whole_word_fraction > 1 || options.span_fraction < 0 ||
      options.whole_word_fraction + options.span_fraction > 1 || !(options.span_p > 0 && options.span_p <= 1) ||
      options.span_max_words < 1)
    throw std::invalid_argument("mask_tokens: probabilities must lie in [0, 1], mask + random fractions <= 1, "
                                "whole-word + span fractions <= 1, span_p in (0, 1] and span_max_words >= 1");
  // Masking walks the ids on the host (accessors): a GPU batch is copied over, the result is on the CPU.
  auto ids = input_ids.to(torch::kCPU, torch::kInt64).contiguous().clone();
  auto labels = torch::full_like(ids, options.ignore_index);
  const int64_t B = ids.size(0), L = ids.size(1);
  auto id = ids.accessor<int64_t, 2>();
  auto lab = labels.accessor<int64_t, 2>();

  // One draw of all random numbers up front keeps the result independent of the masking path taken.
  // (Each torch op locks the generator itself; locking here too would deadlock.)
  const auto order_keys = torch::rand({B, L}, generator);
  const auto action = torch::rand({B, L}, generator);
  const auto random_ids =
      torch::randint(byte_vocab::kByteOffset, byte_vocab::kVocabSize, {B, L}, generator, torch::kInt64);
  auto key = order_keys.accessor<float, 2>();
  auto act = action.accessor<float, 2>();
  auto rnd = random_ids.accessor<int64_t, 2>();
  // Which rows mask whole words or spans: drawn (after the draws above, which stay as they were) only for a
  // mix, and the spans' lengths only where there are spans, so that runs without them draw as before.
  const bool all_words = options.whole_word || options.whole_word_fraction >= 1;
  const bool spans = !all_words && options.span_fraction > 0;
  const bool mixed = !all_words && (options.whole_word_fraction > 0 || spans);
  const auto row_draws = mixed ? torch::rand({B}, generator) : torch::Tensor();
  const auto length_draws = spans ? torch::rand({B, L}, generator) : torch::zeros({0, 0});
  auto length_draw = length_draws.accessor<float, 2>();
  // A span's length in words from the draw at its first byte: geometric, P(k) ~ p (1-p)^(k-1) for k <= max
  // (SpanBERT's truncated distribution, by the inverse of its CDF).
  const auto span_words = [&](int64_t b, int64_t j) {
    if (options.span_p >= 1) return int64_t{1};
    const double q = std::log1p(-options.span_p);
    const double u = length_draw[b][j] * -std::expm1(q * static_cast<double>(options.span_max_words));
    const double k = 1 + std::floor(std::log1p(-u) / q);
    return std::clamp<int64_t>(static_cast<int64_t>(k), 1, options.span_max_words);
  };

  std::vector<std::pair<int64_t, int64_t>> units;  // [begin, end) spans that are chosen together
  std::vector<int64_t> perm;
  for (int64_t b = 0; b < B; ++b) {
    units.clear();
    int64_t eligible = 0;
    const double draw = mixed ? row_draws[b].item<float>() : 1.0;
    const bool whole_word = all_words || draw < options.whole_word_fraction;
    const bool span = !whole_word && draw < options.whole_word_fraction + options.span_fraction;
    const auto word_end = [&](int64_t k) {
      while (k < L && !byte_vocab::is_special(id[b][k]) && !is_space_id(id[b][k])) ++k;
      return k;
    };
    for (int64_t j = 0; j < L; ++j) {
      const int64_t v = id[b][j];
      if (byte_vocab::is_special(v)) continue;
      if (span) {
        // Every byte counts towards the target (whitespace too: a span holds the whitespace between its words).
        ++eligible;
        if (is_space_id(v)) continue;
        int64_t end = word_end(j);
        for (int64_t words = span_words(b, j); words > 1; --words) {
          int64_t next = end;
          while (next < L && !byte_vocab::is_special(id[b][next]) && is_space_id(id[b][next])) ++next;
          if (next == L || byte_vocab::is_special(id[b][next])) break;
          end = word_end(next);
        }
        units.emplace_back(j, end);
        eligible += end - j - 1;
        j = end - 1;
      } else if (whole_word) {
        if (is_space_id(v)) continue;
        const int64_t k = word_end(j);
        units.emplace_back(j, k);
        eligible += k - j;
        j = k - 1;
      } else {
        units.emplace_back(j, j + 1);
        ++eligible;
      }
    }
    if (eligible == 0) continue;
    const int64_t target =
        std::max<int64_t>(1, std::llround(options.mask_probability * static_cast<double>(eligible)));
    if (options.mask_probability == 0) continue;
    // Random order of units: sort by the key drawn at each unit's first position.
    perm.resize(units.size());
    for (size_t u = 0; u < units.size(); ++u) perm[u] = static_cast<int64_t>(u);
    std::sort(perm.begin(), perm.end(), [&](int64_t x, int64_t y) {
      const float kx = key[b][units[x].first], ky = key[b][units[y].first];
      return kx != ky ? kx < ky : x < y;
    });
    int64_t chosen = 0;
    for (const int64_t u : perm) {
      if (chosen >= target) break;
      for (int64_t j = units[u].first; j < units[u].second; ++j) {
        lab[b][j] = id[b][j];
        const double a = act[b][j];
        if (a < options.mask_token_fraction) {
          id[b][j] = byte_vocab::kMask;
        } else if (a < options.mask_token_fraction + options.random_token_fraction) {
          id[b][j] = rnd[b][j];
        }
        ++chosen;
      }
    }
  }
  return {ids, labels};
}

MlmBatch mask_tokens(const torch::Tensor& input_ids, const MlmOptions& options, std::vector<at::Generator>& rows) {
  if (input_ids.dim() != 2 || input_ids.size(0) != static_cast<int64_t>(rows.size()))
    throw std::invalid_argument("mask_tokens: expected (B, L) input_ids with one generator per row, got " +
                                c10::str(input_ids.sizes()) + " and " + std::to_string(rows.size()) + " generators");
  std::vector<torch::Tensor> ids, labels;
  for (size_t b = 0; b < rows.size(); ++b) {
    auto row = mask_tokens(input_ids.narrow(0, static_cast<int64_t>(b), 1), options, rows[b]);
    ids.push_back(row.input_ids);
    labels.push_back(row.labels);
  }
  return {torch::cat(ids), torch::cat(labels)};
}

MlmBatch mask_tokens(const torch::Tensor& input_ids, const MlmOptions& options, uint64_t seed) {
  auto gen = make_generator(seed);
  return mask_tokens(input_ids, options, gen);
}

}  // namespace perceiver::datasets
