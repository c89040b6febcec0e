// Token classification (task `token_classification`): a label for every byte, from JSONL character
// spans, CoNLL files or mixed-language fortunes. Texts longer than the model's positions are cut into
// overlapping windows; evaluation stitches each text back from its windows (every byte scored once,
// by the window where it lies farthest from an edge) and reports byte accuracy, entity-level precision,
// recall and F1 (exact spans, IOB2, as seqeval computes them) and a confusion matrix. The entities are
// read from each text's tags as `decode` chooses them (each byte's argmax, or the likeliest valid IOB2
// sequence over the text's labelled bytes); byte accuracy and the confusion matrix are per byte (argmax).
// tagged_samples.txt shows the first held-out texts with their true and predicted entities.
#include <spdlog/spdlog.h>

#include <fstream>

#include "datasets/loader.h"
#include "datasets/sources.h"
#include "datasets/token_labels.h"
#include "perceiver/models/config.h"
#include "perceiver/pipelines/tag_decoding.h"
#include "perceiver/pipelines/token_classification_pipeline.h"
#include "perceiver/processing/tokenizer.h"
#include "trainers/classification_objective.h"
#include "trainers/metrics.h"
#if PERCEIVER_WITH_OPENCV
#include "trainers/plot.h"
#endif
#include "trainers/task_options.h"
#include "trainers/tasks.h"
#include "trainers/token_metrics.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;
namespace fs = std::filesystem;

datasets::OptionSpecs task_options() {
  return {{"window_overlap", "int", "32", "bytes shared by consecutive windows of a text longer than seq_len (at most half of seq_len)"},
          {"decode", "enum[" + join(tag_decode_names(), ", ") + "]", "argmax",
           "how evaluation (and predict, from the checkpoint) reads each text's tags for the entity scores: " +
               tag_decode_help()}};
}

datasets::OptionSpecs data_options() {
  auto options = train_eval_options("token-labels", datasets::source_names(datasets::token_label_sources()));
  options.insert(options.begin(), {"seq_len", "int", "", "bytes per window, at most max_position_embeddings; default max_position_embeddings"});
  return options;
}

// One window of one text: where it starts and the part of it this window scores.
struct WindowRef {
  int64_t doc = 0;
  int64_t start = 0, end = 0;            // the window's bytes in the text
  int64_t own_begin = 0, own_end = 0;  // the bytes it scores
};

// A split's texts cut into windows, and where each text's bytes start in one flat array.
struct Windows {
  std::vector<WindowRef> refs;
  std::vector<int64_t> doc_offsets;  // doc i's bytes are [doc_offsets[i], doc_offsets[i + 1]) of the flat array
};

Windows cut_into_windows(const datasets::TokenLabelSet& set, int64_t seq_len, int64_t overlap) {
  Windows out;
  out.doc_offsets.push_back(0);
  for (int64_t doc = 0; doc < set.count; ++doc) {
    const auto length = static_cast<int64_t>(set.get(doc).text.size());
    out.doc_offsets.push_back(out.doc_offsets.back() + length);
    if (length == 0) continue;
    const auto windows = byte_windows(length, seq_len, overlap);
    const auto owned = owned_ranges(windows, length);
    for (size_t w = 0; w < windows.size(); ++w)
      out.refs.push_back({doc, windows[w].start, windows[w].end, owned[w].start, owned[w].end});
  }
  return out;
}

class TokenClassificationTask : public Task {
 public:
  explicit TokenClassificationTask(TaskSection& s) : source_(s.source()) {
    overlap_ = s.get<int64_t>("window_overlap");
    if (overlap_ < 0) s.fail("window_overlap", "must be >= 0");
    const auto decode = s.get<std::string>("decode");
    try {
      decode_ = parse_tag_decode(decode);
    } catch (const std::invalid_argument& e) {
      s.fail("decode", e.what());
    }
  }
  std::string name() const override { return "token_classification"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForTokenClassification"}; }
  std::string best_metric() const override { return "eval/entity_f1"; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const fs::path& /*model_from*/) override {
    TaskSection d = data_section(data, source_, data_options());
    seq_len_ = d.get<int64_t>("seq_len", config.max_position_embeddings);
    if (seq_len_ > config.max_position_embeddings)
      d.fail("seq_len", "exceeds model max_position_embeddings (" + std::to_string(config.max_position_embeddings) + ")");
    overlap_ = std::min(overlap_, seq_len_ / 2);  // as predict's pipeline does: a window always advances
    d.finish();
    train_ = read(data["train"], "data.train");
    eval_ = read(data["eval"], "data.eval");
    // The training set's labels are the model's; the evaluation's must be among them.
    label_names_ = train_.label_names;
    for (const auto& name : eval_.label_names)
      if (std::find(label_names_.begin(), label_names_.end(), name) == label_names_.end())
        throw std::runtime_error(source_ + ": data.eval has the label '" + name +
                                 "', which data.train never uses (known: " + join(label_names_, ", ") + ")");
    eval_to_train_.clear();
    for (const auto& name : eval_.label_names)
      eval_to_train_.push_back(std::find(label_names_.begin(), label_names_.end(), name) - label_names_.begin());
    set_id2label(config, label_names_);
    for (size_t i = 0; i < label_names_.size(); ++i) names_[static_cast<int64_t>(i)] = label_names_[i];

    const auto train_windows = cut_into_windows(train_, seq_len_, overlap_);
    eval_windows_ = cut_into_windows(eval_, seq_len_, overlap_);
    TaskData out;
    out.train = windows_dataset(train_, train_windows, {});
    out.eval = windows_dataset(eval_, eval_windows_, eval_to_train_);
    out.summary = fmt::format("token classification: {} train texts ({} windows) / {} eval texts ({} windows) of at most "
                              "{} bytes per window, {} labels",
                              train_.count, train_windows.refs.size(), eval_.count, eval_windows_.refs.size(), seq_len_,
                              label_names_.size());
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator&, bool training) override {
    const auto& labels = batch.at("labels");
    auto out = model.forward_named(
        {{"inputs", batch.at("input_ids")}, {"attention_mask", batch.at("attention_mask")}, {"labels", labels}}, {});
    StepOutput r;
    r.samples = labels.size(0);
    r.loss = out.at("loss");
    const auto logits = out.at("logits").detach().to(torch::kFloat32);
    // Training counts every labelled byte of a window; evaluation only those the window owns.
    auto scored = labels != -100;
    if (!training) {
      const auto positions = torch::arange(labels.size(1), labels.options()).unsqueeze(0);
      scored = scored & (positions >= batch.at("own_begin").unsqueeze(1)) & (positions < batch.at("own_end").unsqueeze(1));
    }
    const double n = scored.sum().item<double>();
    // Training: the model's loss (the mean over the batch's labelled bytes). Evaluation: the sum over the
    // owned bytes, so that each byte counts once whatever windows share a batch.
    const double loss_sum =
        training ? r.loss.item<double>() * n
                 : torch::nn::functional::cross_entropy(logits.index({scored}), labels.index({scored}),
                                                         torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                       .item<double>();
    r.metrics.add("loss", loss_sum, n);
    const auto predicted = logits.argmax(-1);
    r.metrics.add("accuracy", (predicted.eq(labels) & scored).sum().item<double>(), n);
    if (!training) record(batch, logits, scored.cpu());
    return r;
  }

  void begin_eval() override {
    const auto bytes = eval_windows_.doc_offsets.back();
    log_probs_ = torch::zeros({bytes, static_cast<int64_t>(label_names_.size())}, torch::kFloat32);
    owned_ = torch::zeros({bytes}, torch::kLong);
    confusion_.reset(static_cast<int64_t>(label_names_.size()));
  }
  std::vector<torch::Tensor> eval_counts() override { return {log_probs_, owned_, confusion_.counts()}; }

  // Rank 0, with every rank's predictions added up: each text's tags stitched from its windows.
  std::map<std::string, double> end_eval(const fs::path& out_dir, ModelRunner&) override {
    confusion_.write(out_dir / "confusion_matrix.csv", names_);
#if PERCEIVER_WITH_OPENCV
    write_confusion_png(out_dir / "confusion_matrix.png", confusion_.counts(), names_);
#endif
    std::vector<std::vector<std::string>> truth, predicted;
    std::ofstream samples(out_dir / "tagged_samples.txt");
    int64_t sampled = 0;
    const auto owned = owned_.accessor<int64_t, 1>();
    int64_t bytes = 0, right = 0;
    for (int64_t doc = 0; doc < eval_.count; ++doc) {
      const auto begin = eval_windows_.doc_offsets[doc], end = eval_windows_.doc_offsets[doc + 1];
      if (begin == end) continue;
      bool complete = true;  // eval_max_batches may have stopped before the text's last window
      for (int64_t i = begin; i < end && complete; ++i) complete = owned[i] > 0;
      if (!complete) continue;
      const auto text = eval_.get(doc);
      // Only labelled bytes are decoded and scored (a token's other bytes carry no label and were never trained).
      std::vector<int64_t> rows;
      std::vector<std::string> t, q;
      for (int64_t i = begin; i < end; ++i) {
        const auto label = text.labels[i - begin];
        if (label == -100) continue;
        rows.push_back(i);
        t.push_back(label_names_[eval_to_train_[label]]);
      }
      const auto tags = decode_tags(log_probs_.index_select(0, torch::tensor(rows, torch::kLong)), names_, decode_);
      for (size_t k = 0; k < tags.size(); ++k) {
        q.push_back(label_names_[tags[k]]);
        right += q.back() == t[k];
      }
      bytes += static_cast<int64_t>(tags.size());
      if (sampled++ < kSamples) {
        samples << "text " << doc << ": " << text.text << "\n";
        for (const auto& [name, sequence] : {std::pair{"truth", &t}, std::pair{"predicted", &q}}) {
          samples << "  " << name << ":";
          for (const auto& e : iob2_entities(*sequence)) {
            const auto first = rows[static_cast<size_t>(e.start)] - begin, last = rows[static_cast<size_t>(e.end - 1)] - begin;
            samples << " [" << e.label << " " << first << "-" << last + 1 << "] "
                    << text.text.substr(static_cast<size_t>(first), static_cast<size_t>(last + 1 - first));
          }
          samples << "\n";
        }
      }
      truth.push_back(std::move(t));
      predicted.push_back(std::move(q));
    }
    if (truth.empty()) return {};
    const auto report = entity_scores(truth, predicted);
    std::ofstream out(out_dir / "entities.txt");
    out << fmt::format("{:<16} {:>9} {:>9} {:>9} {:>9}\n", "label", "precision", "recall", "f1", "support");
    for (const auto& [label, s] : report.per_label)
      out << fmt::format("{:<16} {:>9.4f} {:>9.4f} {:>9.4f} {:>9}\n", label, s.precision, s.recall, s.f1, s.support);
    out << fmt::format("{:<16} {:>9.4f} {:>9.4f} {:>9.4f} {:>9}\n", "micro", report.micro.precision, report.micro.recall,
                       report.micro.f1, report.micro.support);
    spdlog::info("entities over {} held-out texts: precision {:.4f}, recall {:.4f}, F1 {:.4f}", truth.size(),
                 report.micro.precision, report.micro.recall, report.micro.f1);
    std::map<std::string, double> metrics{{"entity_precision", report.micro.precision},
                                          {"entity_recall", report.micro.recall},
                                          {"entity_f1", report.micro.f1}};
    // The accuracy of the tags the entities were read from, where they are not each byte's argmax.
    if (decode_ != TagDecode::argmax && bytes > 0) metrics["decoded_accuracy"] = static_cast<double>(right) / bytes;
    for (const auto& [label, s] : report.per_label) metrics["entity_f1/" + label] = s.f1;
    return metrics;
  }

 private:
  datasets::TokenLabelSet read(const YAML::Node& node, const std::string& path) {
    SourceSection s(node, source_, path);
    auto out = datasets::find_source(datasets::token_label_sources(), s, "token-labels")(s);
    s.section().finish();
    if (out.count == 0) throw std::runtime_error(source_ + ": " + path + " produced no texts");
    return out;
  }

  // Examples {"input_ids", "attention_mask", "labels", "doc", "start", "own_begin", "own_end"}: a window
  // of byte ids (the tokenizer's: byte + 6, no special tokens, as the pipeline feeds them), padded.
  std::shared_ptr<const datasets::Dataset> windows_dataset(const datasets::TokenLabelSet& set, const Windows& windows,
                                                           const std::vector<int64_t>& label_map) const {
    const auto refs = std::make_shared<const std::vector<WindowRef>>(windows.refs);
    return std::make_shared<datasets::FunctionDataset>(
        static_cast<int64_t>(windows.refs.size()), [set, refs, label_map, seq_len = seq_len_](int64_t i) {
          const auto& w = (*refs)[static_cast<size_t>(i)];
          const auto text = set.get(w.doc);
          auto ids = torch::full({seq_len}, PerceiverTokenizer::pad_token_id, torch::kLong);
          auto mask = torch::zeros({seq_len}, torch::kLong);
          auto labels = torch::full({seq_len}, int64_t{-100}, torch::kLong);
          auto id = ids.accessor<int64_t, 1>();
          auto m = mask.accessor<int64_t, 1>();
          auto l = labels.accessor<int64_t, 1>();
          for (int64_t j = w.start; j < w.end; ++j) {
            id[j - w.start] = static_cast<uint8_t>(text.text[j]) + PerceiverTokenizer::num_special_tokens;
            m[j - w.start] = 1;
            const auto label = text.labels[j];
            l[j - w.start] = label == -100 || label_map.empty() ? label : label_map[label];
          }
          const auto scalar = [](int64_t v) { return torch::tensor(v, torch::kLong); };
          return Example{{"input_ids", ids}, {"attention_mask", mask}, {"labels", labels}, {"doc", scalar(w.doc)},
                         {"start", scalar(w.start)}, {"own_begin", scalar(w.own_begin - w.start)},
                         {"own_end", scalar(w.own_end - w.start)}};
        });
  }

  // Evaluation: the owned bytes' log-probabilities and a mark that they were seen (zero elsewhere, so that the
  // sum over ranks gathers them), and the confusion.
  void record(const Example& batch, const torch::Tensor& logits, const torch::Tensor& scored) {
    const auto doc = batch.at("doc").cpu(), start = batch.at("start").cpu();
    const auto own_begin = batch.at("own_begin").cpu(), own_end = batch.at("own_end").cpu();
    const auto log_probs = torch::log_softmax(logits.cpu(), -1);
    for (int64_t b = 0; b < logits.size(0); ++b) {
      const auto base = eval_windows_.doc_offsets[doc[b].item<int64_t>()] + start[b].item<int64_t>();
      const auto first = own_begin[b].item<int64_t>(), count = own_end[b].item<int64_t>() - first;
      log_probs_.narrow(0, base + first, count).copy_(log_probs[b].narrow(0, first, count));
      owned_.narrow(0, base + first, count).fill_(1);
    }
    const auto flat = scored.flatten().nonzero().squeeze(1);
    if (flat.numel() > 0)
      confusion_.add(logits.flatten(0, 1).cpu().index_select(0, flat),
                     batch.at("labels").cpu().flatten().index_select(0, flat));
  }

  static constexpr int64_t kSamples = 8;  // held-out texts shown in tagged_samples.txt

  std::string source_;
  int64_t overlap_ = 32, seq_len_ = 0;
  datasets::TokenLabelSet train_, eval_;
  std::vector<std::string> label_names_;
  std::vector<int64_t> eval_to_train_;  // eval label id -> the model's
  std::map<int64_t, std::string> names_;
  TagDecode decode_ = TagDecode::argmax;
  Windows eval_windows_;
  torch::Tensor log_probs_, owned_;  // (bytes, labels) and (bytes) over the eval texts' flat bytes
  Confusion confusion_;
};

std::unique_ptr<Task> make_token_classification_task(TaskSection& options) {
  return std::make_unique<TokenClassificationTask>(options);
}

}  // namespace

TaskInfo token_classification_task_info() {
  return {make_token_classification_task,
          "a label for every byte (named entities, language segments, ...), scored per byte and per entity",
          task_options(),
          data_options(),
          "token-labels",
          {}};
}

}  // namespace perceiver::trainers
