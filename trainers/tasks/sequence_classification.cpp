// Sequence classification (task `sequence_classification`): labelled texts under HF's problem types.
#include "datasets/labelled_text_index.h"
#include "datasets/sources.h"
#include "perceiver/processing/tokenizer.h"
#include "trainers/classification_task.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;
namespace fs = std::filesystem;

// The `data` section: the text length and the two labelled-text sources.
datasets::OptionSpecs data_options() {
  auto options = train_eval_options("labelled-text", datasets::source_names(datasets::labelled_text_sources()));
  options.insert(options.begin(),
                 {"seq_len", "int", "",
                  "bytes per text (longer ones are cut, shorter ones padded), at most max_position_embeddings; "
                  "default the smaller of max_position_embeddings and 256"});
  return options;
}

class SequenceClassificationTask : public ClassificationTask {
 public:
  SequenceClassificationTask(TaskSection& s) : ClassificationTask(s), source_(s.source()) {}
  std::string name() const override { return "sequence_classification"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForSequenceClassification"}; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const fs::path& /*model_from*/) override {
    TaskSection d = data_section(data, source_, data_options());
    const int64_t seq_len = d.get<int64_t>("seq_len", std::min<int64_t>(config.max_position_embeddings, 256));
    if (seq_len > config.max_position_embeddings)
      d.fail("seq_len", "exceeds model max_position_embeddings (" + std::to_string(config.max_position_embeddings) + ")");
    d.finish();
    auto train = texts(data["train"], "data.train");
    auto eval = texts(data["eval"], "data.eval");
    ClassificationObjective::Targets t;
    if (problem_.single()) {
      if (train.id2label != eval.id2label)
        throw std::runtime_error(source_ + ": data.train and data.eval have different label sets");
      t = {torch::tensor(train.labels, torch::kLong), torch::tensor(eval.labels, torch::kLong), train.id2label};
    } else {
      t = problem_.targets(train.label_names, eval.label_names, source_);
    }
    const auto& id2label = t.id2label;
    config.problem_type = problem_.name();
    set_id2label(config, id2label);
    set_label_names(config.id2label);
    TaskData out;
    out.train = encode(train, t.train, seq_len);
    out.eval = encode(eval, t.eval, seq_len);
    out.summary = "sequence classification (" + problem_.name() + "): " + std::to_string(train.size()) + " train / " +
                  std::to_string(eval.size()) + " eval texts, " + std::to_string(id2label.size()) + " labels, " +
                  std::to_string(seq_len) + " bytes max";
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator&, bool training) override {
    auto out = model.forward_named({{"inputs", batch.at("input_ids")}, {"attention_mask", batch.at("attention_mask")}}, {});
    StepOutput r;
    const auto& logits = out.at("logits");
    const auto& labels = batch.at("labels");
    r.samples = labels.size(0);
    r.loss = score(logits, labels, training, r.metrics);
    return r;
  }

 private:
  datasets::LabelledTexts texts(const YAML::Node& node, const std::string& path) {
    SourceSection s(node, source_, path);
    auto out = datasets::find_source(datasets::labelled_text_sources(), s, "labelled-text")(s, problem_.separator());
    s.section().finish();
    if (out.size() == 0) throw std::runtime_error(source_ + ": " + path + " produced no labelled texts");
    return out;
  }

  // Examples {"input_ids", "attention_mask", "labels"}: each text read and encoded when asked for.
  static std::shared_ptr<const datasets::Dataset> encode(const datasets::LabelledTexts& data, const torch::Tensor& targets,
                                                         int64_t seq_len) {
    EncodeOptions o;
    o.max_length = seq_len;
    o.truncation = Truncation::LongestFirst;
    o.padding = Padding::MaxLength;
    return std::make_shared<datasets::FunctionDataset>(data.size(), [texts = data.texts, targets, o,
                                                                     tok = PerceiverTokenizer()](int64_t i) {
      const auto inputs = to_model_inputs(tok.batch_encode({texts->text(i)}, o));
      return Example{{"input_ids", inputs.input_ids[0]}, {"attention_mask", inputs.attention_mask[0]}, {"labels", targets[i]}};
    });
  }

  std::string source_;
};

std::unique_ptr<Task> make_sequence_classification_task(TaskSection& options) {
  return std::make_unique<SequenceClassificationTask>(options);
}

}  // namespace

TaskInfo sequence_classification_task_info() {
  return {make_sequence_classification_task,
          "sequence classification of byte texts under HF's problem types (single-label, multi-label, regression)",
          classification_options(),
          data_options(),
          "labelled-text",
          {}};
}

}  // namespace perceiver::trainers
