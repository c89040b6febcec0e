#include "perceiver/pipelines/token_classification_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "perceiver/export/input_settings.h"
#include "perceiver/pipelines/pipeline_common.h"
#include "perceiver/processing/tokenizer.h"

namespace perceiver {
namespace {

std::string window_text(const ByteWindow& w) {
  return "[" + std::to_string(w.start) + ", " + std::to_string(w.end) + ")";
}

// One scored item before grouping: a byte (none, simple) or a word (first, max, average).
struct Item {
  int64_t label = 0;  // label id
  double score = 0;
  int64_t byte_start = 0, byte_end = 0;
};

// numpy's argmax: the first maximum (NaN counts as the maximum, as in numpy).
int64_t argmax(const double* row, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j) {
    if (std::isnan(row[best])) break;
    if (std::isnan(row[j]) || row[j] > row[best]) best = j;
  }
  return best;
}

// numpy's nanmean: the mean of the values that are not NaN (NaN when all are).
double nanmean(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (const double v : values)
    if (!std::isnan(v)) sum += v, ++n;
  return n ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

// HF's get_tag: (B or I, tag); a label without a B-/I- prefix continues like an I-.
std::pair<char, std::string> tag_of(const std::string& label) {
  if (label.rfind("B-", 0) == 0) return {'B', label.substr(2)};
  if (label.rfind("I-", 0) == 0) return {'I', label.substr(2)};
  return {'I', label};
}

class Labels {
 public:
  explicit Labels(const std::map<int64_t, std::string>& id2label) : id2label_(id2label) {}
  std::string operator()(int64_t id) const {
    const auto it = id2label_.find(id);
    return it != id2label_.end() ? it->second : std::to_string(id);
  }

 private:
  const std::map<int64_t, std::string>& id2label_;
};

// Maps byte ranges to character ranges and the text they cover.
class Characters {
 public:
  explicit Characters(const std::string& text) : text_(text), of_byte_(byte_characters(text)) {}
  void place(TokenEntity& e) const {
    const auto first = of_byte_[static_cast<size_t>(e.byte_start)];
    const auto last = of_byte_[static_cast<size_t>(e.byte_end - 1)];
    e.start = first;
    e.end = last + 1;
    const auto b0 = std::lower_bound(of_byte_.begin(), of_byte_.end(), first) - of_byte_.begin();
    const auto b1 = std::upper_bound(of_byte_.begin(), of_byte_.end(), last) - of_byte_.begin();
    e.word = utf8_decode_replace(std::string_view(text_).substr(static_cast<size_t>(b0), static_cast<size_t>(b1 - b0)));
  }

 private:
  const std::string& text_;
  std::vector<int64_t> of_byte_;
};

// HF's group_entities + group_sub_entities over items in order.
std::vector<TokenEntity> group(const std::vector<Item>& items, const Labels& name) {
  std::vector<TokenEntity> out;
  std::vector<const Item*> members;
  auto flush = [&] {
    if (members.empty()) return;
    const auto first = name(members.front()->label);
    const auto dash = first.find('-');
    TokenEntity e;
    e.label = dash == std::string::npos ? first : first.substr(dash + 1);  // split("-", 1)[-1]
    std::vector<double> scores;
    for (const auto* m : members) scores.push_back(m->score);
    e.score = nanmean(scores);
    e.byte_start = members.front()->byte_start;
    e.byte_end = members.back()->byte_end;
    out.push_back(std::move(e));
    members.clear();
  };
  for (const auto& item : items) {
    if (!members.empty()) {
      const auto [bi, tag] = tag_of(name(item.label));
      const auto last_tag = tag_of(name(members.back()->label)).second;
      if (!(tag == last_tag && bi != 'B')) flush();
    }
    members.push_back(&item);
  }
  flush();
  return out;
}

}  // namespace

std::vector<ByteWindow> byte_windows(int64_t length, int64_t window, int64_t overlap) {
  if (window < 1) throw std::invalid_argument("byte windows: the window must be >= 1 positions, got " + std::to_string(window));
  if (overlap < 0 || overlap >= window)
    throw std::invalid_argument("byte windows: the overlap must be in [0, " + std::to_string(window) + ") for windows of " +
                                std::to_string(window) + ", got " + std::to_string(overlap));
  if (length < 0) throw std::invalid_argument("byte windows: negative length " + std::to_string(length));
  if (length <= window) return {{0, length}};
  const int64_t stride = window - overlap;
  std::vector<ByteWindow> out;
  for (int64_t start = 0; start + window < length; start += stride) out.push_back({start, start + window});
  out.push_back({length - window, length});
  return out;
}

std::vector<ByteWindow> owned_ranges(const std::vector<ByteWindow>& windows, int64_t length) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("owned ranges over " + std::to_string(length) + " positions: " + why);
  };
  if (windows.empty()) throw bad("no windows");
  if (windows.front().start != 0) throw bad("the first window " + window_text(windows.front()) + " does not start at 0");
  if (windows.back().end != length)
    throw bad("the last window " + window_text(windows.back()) + " does not end at " + std::to_string(length));
  for (size_t i = 0; i < windows.size(); ++i) {
    const auto& w = windows[i];
    if (w.end < w.start || (w.end == w.start && length > 0))
      throw bad("window " + std::to_string(i) + " " + window_text(w) + " is empty");
    if (i == 0) continue;
    const auto& prev = windows[i - 1];
    if (w.start <= prev.start || w.end <= prev.end)
      throw bad("window " + std::to_string(i) + " " + window_text(w) + " does not come after " + window_text(prev) +
                " (windows go in order of start and end)");
    if (w.start > prev.end)
      throw bad("positions [" + std::to_string(prev.end) + ", " + std::to_string(w.start) + ") are in no window");
  }
  // The owner of each position, among the windows that hold it (lo..hi, both moving forward).
  std::vector<ByteWindow> owned(windows.size(), ByteWindow{0, 0});
  std::vector<bool> seen(windows.size(), false);
  size_t lo = 0, hi = 0, current = 0;
  for (int64_t p = 0; p < length; ++p) {
    while (windows[lo].end <= p) ++lo;
    while (hi + 1 < windows.size() && windows[hi + 1].start <= p) ++hi;
    size_t best = lo;
    int64_t best_distance = -1;
    for (size_t i = lo; i <= hi; ++i) {
      const auto distance = std::min(p - windows[i].start, windows[i].end - 1 - p);
      if (distance > best_distance) best = i, best_distance = distance;
    }
    if (!seen[best]) {
      if (best < current) throw std::logic_error("owned ranges: window " + std::to_string(best) + " owns two ranges");
      seen[best] = true;
      owned[best] = {p, p};
      current = best;
    } else if (best != current) {
      throw std::logic_error("owned ranges: window " + std::to_string(best) + " owns two ranges");
    }
    owned[best].end = p + 1;
  }
  // Windows that own nothing get the empty range where the one before them ends.
  int64_t at = 0;
  for (size_t i = 0; i < owned.size(); ++i) {
    if (!seen[i]) owned[i] = {at, at};
    at = owned[i].end;
  }
  return owned;
}

torch::Tensor stitch_logits(const std::vector<ByteWindow>& windows, const std::vector<torch::Tensor>& window_logits,
                            int64_t length) {
  if (window_logits.size() != windows.size())
    throw std::invalid_argument("stitch logits: " + std::to_string(window_logits.size()) + " logits for " +
                                std::to_string(windows.size()) + " windows");
  const auto owned = owned_ranges(windows, length);
  std::vector<torch::Tensor> pieces;
  for (size_t i = 0; i < windows.size(); ++i) {
    const auto& t = window_logits[i];
    const auto size = windows[i].end - windows[i].start;
    if (t.dim() != 2 || t.size(0) != size || t.size(1) != window_logits[0].size(1))
      throw std::invalid_argument("stitch logits: window " + std::to_string(i) + " " + window_text(windows[i]) +
                                  " needs logits (" + std::to_string(size) + ", num_labels), got " + c10::str(t.sizes()));
    const auto n = owned[i].end - owned[i].start;
    if (n > 0) pieces.push_back(t.narrow(0, owned[i].start - windows[i].start, n));
  }
  if (pieces.empty()) return window_logits[0].narrow(0, 0, 0).clone();
  return torch::cat(pieces, 0);
}

Aggregation parse_aggregation(const std::string& name) {
  for (const auto a : {Aggregation::none, Aggregation::simple, Aggregation::first, Aggregation::max, Aggregation::average})
    if (name == to_string(a)) return a;
  throw std::invalid_argument("unknown aggregation '" + name + "' (expected none, simple, first, max or average)");
}

const char* to_string(Aggregation aggregation) {
  switch (aggregation) {
    case Aggregation::none: return "none";
    case Aggregation::simple: return "simple";
    case Aggregation::first: return "first";
    case Aggregation::max: return "max";
    case Aggregation::average: return "average";
  }
  return "?";
}

std::vector<int64_t> byte_characters(std::string_view text) {
  // The units utf8_decode_replace decodes: a well-formed sequence, or a maximal invalid subpart.
  std::vector<int64_t> out(text.size());
  int64_t character = 0;
  for (size_t i = 0; i < text.size(); ++character) {
    const auto end = i + utf8_unit(text, i).length;
    for (; i < end; ++i) out[i] = character;
  }
  return out;
}

torch::Tensor token_classification_ids(std::string_view bytes) {
  auto ids = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kInt64);
  auto* p = ids.data_ptr<int64_t>();
  for (size_t i = 0; i < bytes.size(); ++i)
    p[i] = static_cast<unsigned char>(bytes[i]) + PerceiverTokenizer::num_special_tokens;
  return ids;
}

std::vector<TokenEntity> aggregate(const std::string& text, const torch::Tensor& probabilities,
                                   const std::map<int64_t, std::string>& id2label, Aggregation aggregation,
                                   const std::vector<std::string>& ignore_labels, TagDecode decode) {
  const auto n = static_cast<int64_t>(text.size());
  if (probabilities.dim() != 2 || probabilities.size(0) != n)
    throw std::invalid_argument("token classification: probabilities must be (" + std::to_string(n) +
                                " bytes, num_labels) for a text of " + std::to_string(n) + " bytes, got " +
                                c10::str(probabilities.sizes()));
  const auto probs = probabilities.to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t num_labels = probs.size(1);
  if (n > 0 && num_labels < 1) throw std::invalid_argument("token classification: no labels");
  const double* p = probs.data_ptr<double>();
  auto row = [&](int64_t i) { return p + i * num_labels; };
  const Labels name(id2label);
  const Characters characters(text);
  auto ignored = [&](const std::string& label) {
    return std::find(ignore_labels.begin(), ignore_labels.end(), label) != ignore_labels.end();
  };

  if (decode != TagDecode::argmax && aggregation == Aggregation::average)
    throw std::invalid_argument(std::string("token classification: ") + to_string(decode) +
                                " decoding chooses each byte's label, and aggregation 'average' chooses a word's "
                                "from mean probabilities: use none, simple, first or max");
  // Every byte's label (its own best, or its place in the likeliest valid sequence) and its probability.
  std::vector<Item> bytes;
  const auto labels = decode_tags(torch::log(probs), id2label, decode);
  for (int64_t i = 0; i < n; ++i) {
    const auto label = labels[static_cast<size_t>(i)];
    bytes.push_back({label, row(i)[label], i, i + 1});
  }

  std::vector<TokenEntity> out;
  if (aggregation == Aggregation::none) {
    for (const auto& b : bytes) {
      TokenEntity e;
      e.label = name(b.label);
      if (ignored(e.label)) continue;
      e.score = b.score;
      e.byte_start = b.byte_start;
      e.byte_end = b.byte_end;
      characters.place(e);
      out.push_back(std::move(e));
    }
    return out;
  }

  std::vector<Item> items;
  if (aggregation == Aggregation::simple) {
    items = bytes;
  } else {
    // Words: runs of non-whitespace bytes; whitespace belongs to no word and is not scored.
    for (int64_t begin = 0; begin < n;) {
      if (is_space(text[static_cast<size_t>(begin)])) {
        ++begin;
        continue;
      }
      int64_t end = begin + 1;
      while (end < n && !is_space(text[static_cast<size_t>(end)])) ++end;
      Item word{0, 0, begin, end};
      if (aggregation == Aggregation::first) {
        word.label = bytes[static_cast<size_t>(begin)].label;
        word.score = bytes[static_cast<size_t>(begin)].score;
      } else if (aggregation == Aggregation::max) {
        // Python's max(): the first byte whose best probability is the highest.
        int64_t chosen = begin;
        for (int64_t i = begin + 1; i < end; ++i)
          if (bytes[static_cast<size_t>(i)].score > bytes[static_cast<size_t>(chosen)].score) chosen = i;
        word.label = bytes[static_cast<size_t>(chosen)].label;
        word.score = bytes[static_cast<size_t>(chosen)].score;
      } else {
        std::vector<double> mean(static_cast<size_t>(num_labels));
        std::vector<double> column;
        for (int64_t j = 0; j < num_labels; ++j) {
          column.clear();
          for (int64_t i = begin; i < end; ++i) column.push_back(row(i)[j]);
          mean[static_cast<size_t>(j)] = nanmean(column);
        }
        word.label = argmax(mean.data(), num_labels);
        word.score = mean[static_cast<size_t>(word.label)];
      }
      items.push_back(word);
      begin = end;
    }
  }
  for (auto& e : group(items, name)) {
    if (ignored(e.label)) continue;
    characters.place(e);
    out.push_back(std::move(e));
  }
  return out;
}

TokenClassificationOptions token_classification_options_for(const ModelRunner& runner) {
  TokenClassificationOptions options;
  const auto decode = training_task_setting(runner.source(), "decode");
  if (!decode) return options;
  try {
    options.decode = parse_tag_decode(decode->as<std::string>());
  } catch (const std::exception& e) {
    throw std::runtime_error((runner.source() / "run.yaml").string() + ": task.decode: " + e.what());
  }
  return options;
}

std::vector<TokenClassificationResult> classify_tokens(ModelRunner& runner, const std::vector<std::string>& texts,
                                                       const TokenClassificationOptions& options) {
  expect_architecture(runner, {"PerceiverForTokenClassification"}, "token classification");
  const auto& config = runner.config();
  const int64_t window = config.max_position_embeddings;
  if (options.batch_size < 1)
    throw std::invalid_argument("token classification: batch size must be >= 1, got " + std::to_string(options.batch_size));
  if (options.overlap < 0)
    throw std::invalid_argument("token classification: the window overlap must be >= 0, got " +
                                std::to_string(options.overlap));
  const int64_t overlap = std::min(options.overlap, window / 2);

  // Every window of every text, batched together.
  struct Piece {
    size_t text;
    ByteWindow window;
  };
  std::vector<Piece> pieces;
  std::vector<std::vector<ByteWindow>> windows(texts.size());
  for (size_t t = 0; t < texts.size(); ++t) {
    if (texts[t].empty()) continue;
    windows[t] = byte_windows(static_cast<int64_t>(texts[t].size()), window, overlap);
    for (const auto& w : windows[t]) pieces.push_back({t, w});
  }
  std::vector<torch::Tensor> piece_logits(pieces.size());
  for (const auto& [begin, end] : batch_ranges(pieces.size(), options.batch_size)) {
    int64_t longest = 0;
    for (size_t k = begin; k < end; ++k) longest = std::max(longest, pieces[k].window.end - pieces[k].window.start);
    const auto rows = static_cast<int64_t>(end - begin);
    auto ids = torch::full({rows, longest}, PerceiverTokenizer::pad_token_id, torch::kInt64);
    auto mask = torch::zeros({rows, longest}, torch::kInt64);
    for (size_t k = begin; k < end; ++k) {
      const auto& [t, w] = pieces[k];
      const auto row = static_cast<int64_t>(k - begin);
      const auto size = w.end - w.start;
      ids[row].narrow(0, 0, size).copy_(
          token_classification_ids(std::string_view(texts[t]).substr(static_cast<size_t>(w.start), static_cast<size_t>(size))));
      mask[row].narrow(0, 0, size).fill_(1);
    }
    const auto logits = runner.forward({{"inputs", ids}, {"attention_mask", mask}}).at("logits");
    for (size_t k = begin; k < end; ++k)
      piece_logits[k] = logits[static_cast<int64_t>(k - begin)].narrow(0, 0, pieces[k].window.end - pieces[k].window.start);
  }

  std::vector<TokenClassificationResult> out;
  size_t next = 0;
  for (size_t t = 0; t < texts.size(); ++t) {
    TokenClassificationResult r;
    r.text = texts[t];
    const auto length = static_cast<int64_t>(texts[t].size());
    if (length == 0) {
      r.logits = torch::zeros({0, config.num_labels()});
    } else {
      const std::vector<torch::Tensor> own(piece_logits.begin() + static_cast<std::ptrdiff_t>(next),
                                           piece_logits.begin() + static_cast<std::ptrdiff_t>(next + windows[t].size()));
      next += windows[t].size();
      r.logits = stitch_logits(windows[t], own, length).clone();
    }
    r.entities = aggregate(r.text, torch::softmax(r.logits.to(torch::kDouble), -1), config.id2label, options.aggregation,
                           options.ignore_labels, options.decode);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace perceiver
