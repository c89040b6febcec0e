#include "perceiver/pipelines/fill_mask_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

#include "perceiver/io/json_io.h"
#include "perceiver/pipelines/pipeline_common.h"
#include "perceiver/processing/tokenizer.h"

namespace perceiver {
namespace {

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  const auto c = t.to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// Runs of adjacent [MASK]s: (start, length).
std::vector<std::pair<int64_t, int64_t>> mask_spans(const std::vector<int64_t>& ids) {
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (int64_t i = 0; i < static_cast<int64_t>(ids.size()); ++i) {
    if (ids[static_cast<size_t>(i)] != PerceiverTokenizer::mask_token_id) continue;
    if (!spans.empty() && spans.back().first + spans.back().second == i)
      ++spans.back().second;
    else
      spans.emplace_back(i, 1);
  }
  return spans;
}

// Each position's k best tokens: (log-probability, id), best first.
using Candidates = std::vector<std::pair<double, int64_t>>;
std::vector<Candidates> best_tokens(const torch::Tensor& log_probs, int64_t k) {
  std::vector<Candidates> out;
  for (int64_t p = 0; p < log_probs.size(0); ++p) {
    const auto [values, ids] = log_probs[p].topk(std::min<int64_t>(k, log_probs.size(1)));
    Candidates c;
    for (int64_t j = 0; j < ids.numel(); ++j) c.emplace_back(values[j].item<double>(), ids[j].item<int64_t>());
    out.push_back(std::move(c));
  }
  return out;
}

// The k best joint fillings of a span whose positions are independent: a beam of width k is exact,
// since every prefix of a top-k filling is itself among the top-k prefixes.
std::vector<std::pair<double, std::vector<int64_t>>> best_fillings(const std::vector<Candidates>& positions, int64_t k) {
  std::vector<std::pair<double, std::vector<int64_t>>> beam = {{0.0, {}}};
  for (const auto& candidates : positions) {
    std::vector<std::pair<double, std::vector<int64_t>>> next;
    for (const auto& [score, tokens] : beam)
      for (const auto& [log_prob, id] : candidates) {
        auto extended = tokens;
        extended.push_back(id);
        next.emplace_back(score + log_prob, std::move(extended));
      }
    std::stable_sort(next.begin(), next.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    next.resize(std::min<size_t>(next.size(), static_cast<size_t>(k)));
    beam = std::move(next);
  }
  return beam;
}

// The answer for one text: `ids` as encoded (with its [MASK]s), `logits` (L, vocabulary) from which each
// masked position is decided, and `chosen` the bytes decided for the masked positions (empty: each
// position's most likely byte). With `chosen`, a span's one candidate is that filling.
MaskFill answer(const std::string& text, const std::vector<int64_t>& ids, const torch::Tensor& logits, int64_t k,
                const std::vector<int64_t>& chosen = {}) {
  const PerceiverTokenizer tok;
  const auto log_probs = torch::log_softmax(logits.to(torch::kDouble), -1);
  const auto best = chosen.empty() ? to_vector(logits.argmax(-1)) : chosen;
  MaskFill fill;
  fill.text = text;
  fill.logits = logits;
  auto filled = ids;
  std::vector<int64_t> predicted;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == PerceiverTokenizer::mask_token_id) {
      filled[i] = best[i];
      predicted.push_back(best[i]);
    }
  fill.filled = tok.decode(filled, true);
  fill.predicted = tok.decode(predicted, false);
  // The text between [CLS] and [SEP], with one span replaced.
  auto sequence = [&](int64_t start, const std::vector<int64_t>& tokens) {
    std::vector<int64_t> s(ids.begin() + 1, ids.end() - 1);
    std::copy(tokens.begin(), tokens.end(), s.begin() + (start - 1));
    return tok.decode(s, false);
  };
  for (const auto& [start, length] : mask_spans(ids)) {
    MaskedSpan span;
    span.start = start;
    span.length = length;
    const auto positions = best_tokens(log_probs.narrow(0, start, length), k);
    for (const auto& candidates : positions) {
      std::vector<TokenScore> scores;
      for (const auto& [log_prob, id] : candidates) scores.push_back({id, tok.decode({id}, false), std::exp(log_prob)});
      span.positions.push_back(std::move(scores));
    }
    if (chosen.empty()) {
      for (auto& [score, tokens] : best_fillings(positions, k))
        span.top_k.push_back({tok.decode(tokens, false), tokens, std::exp(score), sequence(start, tokens)});
    } else {
      const std::vector<int64_t> tokens(best.begin() + start, best.begin() + start + length);
      double log_score = 0;
      for (int64_t p = start; p < start + length; ++p) log_score += log_probs[p][best[static_cast<size_t>(p)]].item<double>();
      span.top_k.push_back({tok.decode(tokens, false), tokens, std::exp(log_score), sequence(start, tokens)});
    }
    fill.spans.push_back(std::move(span));
  }
  return fill;
}

// Mask-predict over one batch: a pass per remaining [MASK]; each pass fixes, in every text, the masked
// byte with the highest probability. Returns each text's deciding logits and chosen bytes.
void fill_iteratively(ModelRunner& runner, const std::vector<std::string>& texts, const std::vector<std::vector<int64_t>>& ids,
                      size_t begin, size_t end, int64_t k, std::vector<MaskFill>& out) {
  const auto inputs = encode_texts(runner.config(), std::vector<std::string>(texts.begin() + static_cast<std::ptrdiff_t>(begin),
                                                                             texts.begin() + static_cast<std::ptrdiff_t>(end)));
  auto current = inputs.input_ids.clone();
  std::vector<torch::Tensor> deciding;  // per text: (L, vocabulary), row p from the pass that fixed p
  std::vector<std::vector<int64_t>> chosen;
  for (size_t i = begin; i < end; ++i) {
    deciding.push_back(torch::zeros({static_cast<int64_t>(ids[i].size()), 0}));
    chosen.emplace_back(ids[i].size(), -1);
  }
  while (true) {
    const auto open = current.eq(PerceiverTokenizer::mask_token_id);
    if (!open.any().item<bool>()) break;
    const auto logits = runner.forward({{"inputs", current}, {"attention_mask", inputs.attention_mask}}).at("logits");
    for (size_t i = begin; i < end; ++i) {
      const auto row = static_cast<int64_t>(i - begin);
      const auto length = static_cast<int64_t>(ids[i].size());
      const auto masked = open[row].narrow(0, 0, length);
      if (!masked.any().item<bool>()) continue;
      const auto text_logits = logits[row].narrow(0, 0, length);
      if (deciding[i - begin].size(1) == 0) deciding[i - begin] = text_logits.clone();
      // The masked position whose best byte is likeliest.
      const auto [best_prob, best_id] = torch::softmax(text_logits.to(torch::kDouble), -1).max(-1);
      const auto p = best_prob.masked_fill(masked.logical_not(), -1.0).argmax().item<int64_t>();
      const auto id = best_id[p].item<int64_t>();
      deciding[i - begin][p].copy_(text_logits[p]);
      chosen[i - begin][static_cast<size_t>(p)] = id;
      current[row][p] = id;
    }
  }
  for (size_t i = begin; i < end; ++i) out.push_back(answer(texts[i], ids[i], deciding[i - begin], k, chosen[i - begin]));
}

}  // namespace

FillMaskOptions::Decode parse_decode(const std::string& name) {
  if (name == "parallel") return FillMaskOptions::Decode::kParallel;
  if (name == "iterative") return FillMaskOptions::Decode::kIterative;
  throw std::invalid_argument("unknown decoding '" + name + "' (expected parallel or iterative)");
}

std::vector<MaskFill> fill_mask(ModelRunner& runner, const std::vector<std::string>& texts,
                                const FillMaskOptions& options) {
  expect_architecture(runner, {"PerceiverForMaskedLM"}, "fill-mask");
  if (options.top_k < 1) throw std::invalid_argument("fill-mask: top_k must be >= 1, got " + std::to_string(options.top_k));
  const auto& config = runner.config();
  // Every text is checked before the model runs, so a bad one costs nothing.
  std::vector<std::vector<int64_t>> encoded;
  for (const auto& text : texts) {
    const auto ids = to_vector(encode_texts(config, {text}).input_ids[0]);
    if (std::find(ids.begin(), ids.end(), PerceiverTokenizer::mask_token_id) == ids.end())
      throw std::invalid_argument("fill-mask: the text '" + excerpt(text) + "' has no [MASK]" +
                                  (text.find("[MASK]") != std::string::npos
                                       ? " within the model's " + std::to_string(config.max_position_embeddings) +
                                             " positions: shorten the text"
                                       : ": write [MASK] once per byte to predict"));
    encoded.push_back(ids);
  }
  std::vector<MaskFill> out;
  for (const auto& [begin, end] : batch_ranges(texts.size(), options.batch_size)) {
    if (options.decode == FillMaskOptions::Decode::kIterative) {
      fill_iteratively(runner, texts, encoded, begin, end, options.top_k, out);
      continue;
    }
    const std::vector<std::string> batch(texts.begin() + static_cast<std::ptrdiff_t>(begin),
                                         texts.begin() + static_cast<std::ptrdiff_t>(end));
    const auto inputs = encode_texts(config, batch);
    const auto logits =
        runner.forward({{"inputs", inputs.input_ids}, {"attention_mask", inputs.attention_mask}}).at("logits");
    for (size_t i = begin; i < end; ++i) {
      const auto& ids = encoded[i];
      const auto row = logits[static_cast<int64_t>(i - begin)].narrow(0, 0, static_cast<int64_t>(ids.size()));
      out.push_back(answer(texts[i], ids, row.clone(), options.top_k));
    }
  }
  return out;
}

}  // namespace perceiver
