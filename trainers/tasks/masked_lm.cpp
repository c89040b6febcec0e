// Masked language modelling (task `mlm`): byte windows of text corpora, dynamic 80/10/10 masking,
// masked-byte accuracy and fill-in samples.
#include <spdlog/spdlog.h>

#include <cmath>
#include <fstream>

#include "datasets/mlm_collator.h"
#include "datasets/text_stream.h"
#include "datasets/sources.h"
#include "perceiver/pipelines/fill_mask_pipeline.h"
#include "perceiver/models/heads.h"
#include "perceiver/pipelines/span_fill.h"
#include "perceiver/processing/tokenizer.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;
namespace fs = std::filesystem;

// The `data` section: the window length and the two text sources.
datasets::OptionSpecs data_options() {
  auto options = train_eval_options("text", datasets::source_names(datasets::text_sources()));
  options.insert(options.begin(), {"seq_len", "int", "",
                                   "bytes per window; default (and at most) the model's max_position_embeddings"});
  return options;
}

class MaskedLmTask : public Task {
 public:
  MaskedLmTask(TaskSection& s) : source_(s.source()) {
    options_.mask_probability = s.get<double>("mlm_probability");
    eval_mask_probability_ = s.get<double>("eval_mlm_probability", options_.mask_probability);
    for (const auto& [key, p] : {std::pair{"mlm_probability", options_.mask_probability},
                                 std::pair{"eval_mlm_probability", eval_mask_probability_}})
      if (!(p > 0 && p <= 1)) s.fail(key, "must be a share of the bytes in (0, 1]");
    options_.whole_word = s.get<bool>("whole_word_mask");
    options_.whole_word_fraction = s.get<double>("whole_word_fraction");
    if (!(options_.whole_word_fraction >= 0 && options_.whole_word_fraction <= 1))
      s.fail("whole_word_fraction", "must be a fraction of the examples in [0, 1]");
    options_.span_fraction = s.get<double>("span_fraction");
    if (!(options_.span_fraction >= 0 && options_.span_fraction + options_.whole_word_fraction <= 1))
      s.fail("span_fraction", "must be a fraction of the examples in [0, 1 - whole_word_fraction]");
    if (options_.whole_word && options_.span_fraction > 0)
      s.fail("span_fraction", "has no rows left to mask: whole_word_mask masks every example by whole words");
    fill_in_samples_ = s.get<int>("fill_in_samples");
    spans_.count = s.get<int64_t>("fill_in_words");
    if (spans_.count < 0) s.fail("fill_in_words", "must be 0 (off) or a number of held-out documents");
    const auto decode = s.get<std::string>("decode");
    if (decode != "masked" && decode != "all")
      s.fail("decode", "must be 'masked' (decode the masked bytes only, the default) or 'all' (every position)");
    decode_all_ = decode == "all";
    const auto fill_decode = s.get<std::string>("fill_in_decode");
    if (fill_decode != "parallel" && fill_decode != "iterative" && fill_decode != "beam")
      s.fail("fill_in_decode", "must be 'parallel' (every gap byte from one pass), 'iterative' (the surest byte "
                               "first, the others predicted again given it) or 'beam' (iterative, keeping the 8 "
                               "likeliest partial fillings)");
    spans_.decode = parse_decode(fill_decode);
  }
  std::string name() const override { return "mlm"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForMaskedLM"}; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const fs::path& /*model_from*/) override {
    TaskSection d = data_section(data, source_, data_options());
    seq_len_ = d.get<int64_t>("seq_len", config.max_position_embeddings);
    if (seq_len_ > config.max_position_embeddings)
      d.fail("seq_len", "(" + std::to_string(seq_len_) + ") exceeds model max_position_embeddings (" +
                            std::to_string(config.max_position_embeddings) + ")");
    datasets::WindowOptions w;
    w.length = seq_len_;
    const auto train = text(data["train"], "data.train", w.separator);
    const auto eval = text(data["eval"], "data.eval", w.separator);
    d.finish();
    // The fill-in check reads whole held-out documents (where the source holds them) from a bounded sample.
    if (spans_.count > 0) eval_docs_ = eval->sample_documents(kFillInCandidates, 2 * seq_len_);
    TaskData out;
    out.train = std::make_shared<datasets::ByteWindowDataset>(train, w);
    out.eval = std::make_shared<datasets::ByteWindowDataset>(eval, w);
    out.summary = "mlm: " + std::to_string(out.train->size()) + " train / " + std::to_string(out.eval->size()) +
                  " eval windows of " + std::to_string(seq_len_) + " bytes";
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator& generator,
                  bool training) override {
    const auto& ids = batch.at("input_ids");
    // Each example's own generator when the loader gives one: the same masks on any number of ranks.
    auto rows = datasets::example_generators(batch);
    // Whole-word rows and a training masking rate are training devices: evaluation keeps its own masking, so
    // that eval/accuracy compares across runs.
    auto mask = options_;
    if (!training) {
      mask.whole_word_fraction = 0;
      mask.span_fraction = 0;
      mask.mask_probability = eval_mask_probability_;
    }
    auto masked = rows.empty() ? datasets::mask_tokens(ids.to(torch::kCPU), mask, generator)
                               : datasets::mask_tokens(ids.to(torch::kCPU), mask, rows);
    const auto input_ids = masked.input_ids.to(ids.device());
    auto labels = masked.labels.to(ids.device());
    torch::Tensor logits, positions;  // positions: which input bytes `logits` score (all when undefined)
    auto* mlm = dynamic_cast<PerceiverForMaskedLMImpl*>(&model);
    if (decode_all_ || mlm == nullptr) {
      auto out = model.forward_named({{"inputs", input_ids}, {"attention_mask", batch.at("attention_mask")}}, {});
      // The decoder predicts all max_position_embeddings positions; score the input's.
      logits = out.at("logits").narrow(1, 0, ids.size(1));
    } else {
      auto out = masked_lm_loss(*mlm, input_ids, batch.at("attention_mask"), labels);
      logits = out.logits;
      labels = out.labels;
      positions = out.positions;
    }
    StepOutput result;
    result.samples = ids.size(0);
    const auto flat_logits = logits.reshape({-1, logits.size(-1)}), flat_labels = labels.reshape({-1});
    result.loss = torch::nn::functional::cross_entropy(flat_logits, flat_labels);
    torch::NoGradGuard no_grad;
    const auto chosen = flat_labels.ne(options_.ignore_index);
    const double n = chosen.sum().item<double>();
    if (n > 0) {
      result.metrics.add("loss", result.loss.item<double>() * n, n);
      result.metrics.add("accuracy", flat_logits.argmax(-1).eq(flat_labels).logical_and(chosen).sum().item<double>(), n);
    }
    if (!training && samples_.size() < static_cast<size_t>(fill_in_samples_)) {
      auto predicted = logits.argmax(-1).to(torch::kCPU);
      if (positions.defined())  // back to input positions; only the masked ones are read
        predicted = torch::zeros_like(masked.input_ids).scatter_(1, positions.to(torch::kCPU), predicted);
      record_samples(masked, predicted);
    }
    return result;
  }

  void begin_eval() override { samples_.clear(); }
  void add_derived_metrics(std::map<std::string, double>& means) const override {
    if (means.count("loss")) means["perplexity"] = std::exp(means.at("loss"));
  }

  std::map<std::string, double> end_eval(const fs::path& out_dir, ModelRunner& model) override {
    if (!samples_.empty()) {
      std::ofstream out(out_dir / "fill_in_samples.txt");
      for (const auto& s : samples_) {
        spdlog::info("fill-in: {}", s);
        out << s << "\n";
      }
    }
    if (spans_.count == 0) return {};
    // One whole word masked in each of several held-out documents: what the model makes of a gap.
    const auto report = fill_word_spans(model, eval_docs_, spans_);
    std::ofstream out(out_dir / "fill_in_words.txt");
    for (const auto& e : report.examples) {
      spdlog::info("fill-in word: {}", describe(e));
      out << describe(e) << "\n";
    }
    const double bytes = static_cast<double>(std::max<int64_t>(report.bytes, 1));
    const auto summary = fmt::format("{}/{} masked bytes right ({:.1f} %), {}/{} words exact, in {} held-out documents",
                                     report.bytes_correct, report.bytes, 100.0 * report.bytes_correct / bytes,
                                     report.words_correct, report.examples.size(), report.examples.size());
    spdlog::info("fill-in words: {}", summary);
    out << summary << "\n";
    return {{"fill_in_word_byte_accuracy", report.bytes_correct / bytes},
            {"fill_in_words_exact", static_cast<double>(report.words_correct) / std::max<size_t>(report.examples.size(), 1)}};
  }


 private:
  std::shared_ptr<const datasets::TextStream> text(const YAML::Node& node, const std::string& path,
                                                   const std::string& separator) {
    SourceSection s(node, source_, path);
    auto stream = datasets::find_source(datasets::text_sources(), s, "text")(s, separator);
    s.section().finish();
    if (stream->size() == 0) throw std::runtime_error(source_ + ": " + path + " produced no text");
    return stream;
  }

  // pred: (batch, length) predicted ids at the input's positions.
  void record_samples(const datasets::MlmBatch& masked, const torch::Tensor& pred) {
    const PerceiverTokenizer tok;
    for (int64_t i = 0; i < pred.size(0) && samples_.size() < static_cast<size_t>(fill_in_samples_); ++i) {
      const auto chosen = masked.labels[i].ne(options_.ignore_index);
      auto filled = masked.input_ids[i].clone();
      filled.masked_scatter_(chosen, pred[i].masked_select(chosen));
      auto to_vec = [](const torch::Tensor& t) {
        return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
      };
      // Masked positions show as '_' in the input line.
      const auto shown = masked.input_ids[i].masked_fill(masked.input_ids[i].eq(PerceiverTokenizer::mask_token_id),
                                                         '_' + PerceiverTokenizer::num_special_tokens);
      samples_.push_back("input: " + tok.decode(to_vec(shown.contiguous()), true) +
                         " | model: " + tok.decode(to_vec(filled.contiguous()), true));
    }
  }

  static constexpr int64_t kFillInCandidates = 4096;  // held-out documents the fill-in check chooses from
  datasets::MlmOptions options_;
  int fill_in_samples_ = 3;
  SpanFillOptions spans_;
  double eval_mask_probability_ = 0.15;
  std::vector<std::string> eval_docs_;
  bool decode_all_ = false;
  int64_t seq_len_ = 0;
  std::string source_;
  std::vector<std::string> samples_;
};

std::unique_ptr<Task> make_masked_lm_task(TaskSection& options) { return std::make_unique<MaskedLmTask>(options); }

}  // namespace

TaskInfo masked_lm_task_info() {
  return {make_masked_lm_task,
          "masked language modelling on bytes: dynamic 80/10/10 masking, masked-byte accuracy, fill-in samples",
          {{"mlm_probability", "float", "0.15", "share of each example's (non-special) byte positions that is masked"},
           {"eval_mlm_probability", "float", "",
            "the share masked in evaluation (default: mlm_probability), so that eval/accuracy can stay comparable "
            "when training masks more"},
           {"whole_word_mask", "bool", "false", "mask whole whitespace-delimited words instead of scattered bytes"},
           {"whole_word_fraction", "float", "0.0",
            "share of training examples (in [0, 1]) masked by whole words, the others by scattered bytes; evaluation "
            "keeps scattered masks"},
           {"span_fraction", "float", "0.0",
            "share of training examples masked by spans of consecutive whole words (SpanBERT: 1 to 10 words, 3.9 on "
            "average), whitespace between them included; whole_word_fraction + span_fraction <= 1"},
           {"fill_in_samples", "int", "3", "evaluation examples logged with the model's fill-in (fill_in_samples.txt)"},
           {"fill_in_words", "int", "8",
            "held-out documents that each get one whole word masked and filled in at every evaluation; 0: off"},
           {"decode", "enum[masked, all]", "masked",
            "decode only the masked bytes (the loss and gradients are the same) or every position as HF's head does"},
           {"fill_in_decode", "enum[parallel, iterative, beam]", "parallel",
            "fill-in words: every gap byte from one pass; the surest byte first and the others predicted again "
            "given it; or that with a beam of the 8 likeliest partial fillings"}},
          data_options(),
          "text",
          {}};
}

}  // namespace perceiver::trainers
