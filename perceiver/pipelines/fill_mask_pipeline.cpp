#include "perceiver/pipelines/fill_mask_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
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

// One partial filling in mask-predict: the ids so far, the log-probability of the bytes chosen (each
// when it was chosen), and per position the logits of the pass that chose it.
struct Hypothesis {
  torch::Tensor ids;       // (L) of the padded batch
  double log_prob = 0;
  torch::Tensor deciding;  // (length, vocabulary); undefined before the first pass
  std::vector<int64_t> chosen;
};

// Mask-predict over one batch with a beam of `width` hypotheses per text: each pass takes every
// hypothesis with a [MASK] left, finds the masked position whose best byte is likeliest, and extends
// the hypothesis by its `width` likeliest bytes there; the `width` likeliest extensions of a text stay.
// Width 1 is plain mask-predict. Each text's best hypothesis is its answer.
void fill_by_mask_predict(ModelRunner& runner, const std::vector<std::string>& texts,
                          const std::vector<std::vector<int64_t>>& ids, size_t begin, size_t end, int64_t k,
                          int64_t width, int64_t batch_size, std::vector<MaskFill>& out) {
  const auto inputs = encode_texts(runner.config(), std::vector<std::string>(texts.begin() + static_cast<std::ptrdiff_t>(begin),
                                                                             texts.begin() + static_cast<std::ptrdiff_t>(end)));
  std::vector<std::vector<Hypothesis>> beams;
  for (size_t i = begin; i < end; ++i) {
    beams.push_back({{inputs.input_ids[static_cast<int64_t>(i - begin)].clone(), 0.0, {},
                      std::vector<int64_t>(ids[i].size(), -1)}});
  }
  while (true) {
    // Every open hypothesis, as (text, hypothesis) and one row of the passes below.
    std::vector<std::pair<size_t, size_t>> open;
    for (size_t t = 0; t < beams.size(); ++t)
      for (size_t h = 0; h < beams[t].size(); ++h)
        if (beams[t][h].ids.eq(PerceiverTokenizer::mask_token_id).any().item<bool>()) open.emplace_back(t, h);
    if (open.empty()) break;
    std::vector<torch::Tensor> rows, masks;
    for (const auto& [t, h] : open) {
      rows.push_back(beams[t][h].ids);
      masks.push_back(inputs.attention_mask[static_cast<int64_t>(t)]);
    }
    const auto all_ids = torch::stack(rows), all_masks = torch::stack(masks);
    std::vector<torch::Tensor> logits;
    for (const auto& [b, e] : batch_ranges(open.size(), batch_size)) {
      const auto first = static_cast<int64_t>(b), n = static_cast<int64_t>(e - b);
      logits.push_back(runner.forward({{"inputs", all_ids.narrow(0, first, n)},
                                       {"attention_mask", all_masks.narrow(0, first, n)}}).at("logits"));
    }
    const auto all_logits = torch::cat(logits);
    std::vector<std::vector<Hypothesis>> next(beams.size());
    for (size_t r = 0; r < open.size(); ++r) {
      const auto [t, h] = open[r];
      const auto& hypothesis = beams[t][h];
      const auto length = static_cast<int64_t>(ids[begin + t].size());
      const auto masked = hypothesis.ids.narrow(0, 0, length).eq(PerceiverTokenizer::mask_token_id);
      const auto text_logits = all_logits[static_cast<int64_t>(r)].narrow(0, 0, length);
      const auto log_probs = torch::log_softmax(text_logits.to(torch::kDouble), -1);
      // The masked position whose best byte is likeliest, and its `width` best bytes.
      const auto best = std::get<0>(log_probs.max(-1));
      const auto p = best.masked_fill(masked.logical_not(), -std::numeric_limits<double>::infinity()).argmax().item<int64_t>();
      const auto [values, bytes] = log_probs[p].topk(std::min<int64_t>(width, log_probs.size(1)));
      for (int64_t j = 0; j < bytes.numel(); ++j) {
        Hypothesis extended{hypothesis.ids.clone(), hypothesis.log_prob + values[j].item<double>(),
                            hypothesis.deciding.defined() ? hypothesis.deciding.clone() : text_logits.clone(),
                            hypothesis.chosen};
        const auto id = bytes[j].item<int64_t>();
        extended.ids[p] = id;
        extended.deciding[p].copy_(text_logits[p]);
        extended.chosen[static_cast<size_t>(p)] = id;
        next[t].push_back(std::move(extended));
      }
    }
    for (size_t t = 0; t < beams.size(); ++t) {
      if (next[t].empty()) continue;  // this text was filled before this pass
      auto& candidates = next[t];
      std::stable_sort(candidates.begin(), candidates.end(),
                       [](const Hypothesis& a, const Hypothesis& b) { return a.log_prob > b.log_prob; });
      // One hypothesis per filling: the same bytes reached in another order count once (its likeliest).
      std::vector<Hypothesis> kept;
      for (auto& c : candidates) {
        if (static_cast<int64_t>(kept.size()) == width) break;
        const bool seen = std::any_of(kept.begin(), kept.end(), [&](const Hypothesis& h) { return h.ids.equal(c.ids); });
        if (!seen) kept.push_back(std::move(c));
      }
      beams[t] = std::move(kept);
    }
  }
  for (size_t i = begin; i < end; ++i) {
    const auto& best = beams[i - begin].front();  // sorted best first once any pass ran
    out.push_back(answer(texts[i], ids[i], best.deciding, k, best.chosen));
  }
}

}  // namespace

FillMaskOptions::Decode parse_decode(const std::string& name) {
  if (name == "parallel") return FillMaskOptions::Decode::kParallel;
  if (name == "iterative") return FillMaskOptions::Decode::kIterative;
  if (name == "beam") return FillMaskOptions::Decode::kBeam;
  throw std::invalid_argument("unknown decoding '" + name + "' (expected parallel, iterative or beam)");
}

std::vector<MaskFill> fill_mask(ModelRunner& runner, const std::vector<std::string>& texts,
                                const FillMaskOptions& options) {
  expect_architecture(runner, {"PerceiverForMaskedLM"}, "fill-mask");
  if (options.top_k < 1) throw std::invalid_argument("fill-mask: top_k must be >= 1, got " + std::to_string(options.top_k));
  if (options.beam_width < 1)
    throw std::invalid_argument("fill-mask: beam_width must be >= 1, got " + std::to_string(options.beam_width));
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
    if (options.decode != FillMaskOptions::Decode::kParallel) {
      const int64_t width = options.decode == FillMaskOptions::Decode::kBeam ? options.beam_width : 1;
      fill_by_mask_predict(runner, texts, encoded, begin, end, options.top_k, width, options.batch_size, out);
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
