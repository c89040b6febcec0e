#include "trainers/tasks.h"

#include <spdlog/spdlog.h>

#include <fstream>

#include "datasets/idx.h"
#include "datasets/labelled_text.h"
#include "datasets/mlm_collator.h"
#include "datasets/text_corpus.h"
#include "perceiver/image_processor.h"
#include "perceiver/tokenizer.h"
#include "trainers/task_options.h"
#include "trainers/vision_tasks.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;
namespace fs = std::filesystem;

torch::Tensor loss_metrics(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing,
                           MetricSums& metrics, int64_t top_k) {
  namespace F = torch::nn::functional;
  const auto loss = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().label_smoothing(label_smoothing));
  torch::NoGradGuard no_grad;
  const auto n = static_cast<double>(labels.size(0));
  const auto pred = logits.argmax(-1);
  metrics.add("loss", loss.item<double>() * n, n);
  metrics.add("accuracy", pred.eq(labels).sum().item<double>(), n);
  if (logits.size(-1) > top_k) {
    const auto top = std::get<1>(logits.topk(top_k, -1));
    metrics.add("top" + std::to_string(top_k) + "_accuracy", top.eq(labels.unsqueeze(-1)).any(-1).sum().item<double>(), n);
  }
  return loss;
}

// The saved config names the labels: id i -> names[i].
void set_id2label(PerceiverConfig& config, const std::vector<std::string>& names) {
  config.id2label.clear();
  for (size_t i = 0; i < names.size(); ++i) config.id2label[static_cast<int64_t>(i)] = names[i];
}

// HF's multi_label_classification: binary cross-entropy per label. A label is predicted when its
// logit is positive; exact_match needs every label of a text right, f1_micro pools all labels.
torch::Tensor multi_label_loss_metrics(const torch::Tensor& logits, const torch::Tensor& targets, MetricSums& metrics) {
  const auto target = targets.to(logits.scalar_type());
  const auto loss = torch::binary_cross_entropy_with_logits(logits, target);
  torch::NoGradGuard no_grad;
  const auto n = static_cast<double>(targets.size(0));
  const auto pred = logits.gt(0);
  const auto truth = target.gt(0.5);
  metrics.add("loss", loss.item<double>() * n, n);
  metrics.add("exact_match", pred.eq(truth).all(-1).sum().item<double>(), n);
  metrics.add("label_accuracy", pred.eq(truth).to(torch::kDouble).mean(-1).sum().item<double>(), n);
  // F1 = 2TP / (2TP + FP + FN), pooled over the evaluation by summing numerator and denominator.
  const double tp = (pred & truth).sum().item<double>();
  const double wrong = pred.ne(truth).sum().item<double>();
  metrics.add("f1_micro", 2 * tp, 2 * tp + wrong);
  return loss;
}

// HF's regression with one label: mean squared error between the squeezed logits and the targets.
torch::Tensor regression_loss_metrics(const torch::Tensor& logits, const torch::Tensor& targets, MetricSums& metrics) {
  const auto pred = logits.squeeze(-1);
  const auto loss = torch::mse_loss(pred, targets.to(pred.scalar_type()));
  torch::NoGradGuard no_grad;
  const auto n = static_cast<double>(targets.size(0));
  metrics.add("loss", loss.item<double>() * n, n);
  metrics.add("mse", loss.item<double>() * n, n);
  metrics.add("mae", (pred - targets.to(pred.scalar_type())).abs().sum().item<double>(), n);
  return loss;
}

// HF's problem types for the classification heads: options, targets from raw label fields, loss.
class ProblemType {
 public:
  explicit ProblemType(TaskSection& s) {
    label_smoothing_ = s.get<double>("label_smoothing", 0.0);
    type_ = s.get<std::string>("problem_type", type_);
    if (type_ != "single_label_classification" && type_ != "multi_label_classification" && type_ != "regression")
      s.fail("problem_type",
             "must be single_label_classification, multi_label_classification or regression, found '" + type_ + "'");
    if (label_smoothing_ != 0.0 && !single()) s.fail("label_smoothing", "applies to single_label_classification only");
    separator_ = s.get<std::string>("label_separator", separator_);
    if (separator_.empty()) s.fail("label_separator", "must not be empty");
  }
  const std::string& name() const { return type_; }
  const std::string& separator() const { return separator_; }
  bool single() const { return type_ == "single_label_classification"; }
  std::string best_metric() const {
    return type_ == "regression" ? "eval/mse" : type_ == "multi_label_classification" ? "eval/f1_micro" : "eval/accuracy";
  }
  std::string best_mode() const { return type_ == "regression" ? "min" : "max"; }

  struct Targets {
    torch::Tensor train, eval;
    std::vector<std::string> id2label;
  };
  // Multi-label or regression targets from the raw label fields (single-label ids come from the sources).
  Targets targets(const std::vector<std::string>& train, const std::vector<std::string>& eval,
                  const std::string& source) const {
    Targets t;
    if (type_ == "multi_label_classification") {
      auto tr = datasets::multi_label_targets(train, separator_, source + ": data.train");
      t.eval = datasets::multi_label_targets(eval, separator_, source + ": data.eval", tr.id2label).targets;
      t.train = tr.targets;
      t.id2label = tr.id2label;
    } else {
      t.train = datasets::regression_targets(train, source + ": data.train");
      t.eval = datasets::regression_targets(eval, source + ": data.eval");
      t.id2label = {"LABEL_0"};  // HF: one output, mean squared error
    }
    return t;
  }
  torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& labels, MetricSums& metrics) const {
    if (type_ == "multi_label_classification") return multi_label_loss_metrics(logits, labels, metrics);
    if (type_ == "regression") return regression_loss_metrics(logits, labels, metrics);
    return loss_metrics(logits, labels, label_smoothing_, metrics, 5);
  }

 private:
  std::string type_ = "single_label_classification";
  std::string separator_ = "|";
  double label_smoothing_ = 0.0;
};

// Confusion matrix gathered during evaluation and written as CSV (rows: true label).
class Confusion {
 public:
  void reset(int64_t n) { counts_ = torch::zeros({n, n}, torch::kLong); }
  void add(const torch::Tensor& logits, const torch::Tensor& labels) {
    if (!counts_.defined()) return;
    const auto n = counts_.size(0);
    const auto flat = labels.to(torch::kCPU) * n + logits.argmax(-1).to(torch::kCPU);
    counts_ += torch::bincount(flat, {}, n * n).reshape({n, n});
  }
  void write(const fs::path& file, const std::map<int64_t, std::string>& names) const {
    if (!counts_.defined()) return;
    std::ofstream out(file);
    out << "true\\predicted";
    for (const auto& [id, name] : names) out << "," << name;
    out << "\n";
    for (int64_t i = 0; i < counts_.size(0); ++i) {
      out << (names.count(i) ? names.at(i) : std::to_string(i));
      for (int64_t j = 0; j < counts_.size(1); ++j) out << "," << counts_[i][j].item<int64_t>();
      out << "\n";
    }
  }

 private:
  torch::Tensor counts_;
};

// ---------------------------------- masked language modelling ----------------------------------

class MaskedLmTask : public Task {
 public:
  MaskedLmTask(TaskSection& s) : source_(s.source()) {
    options_.mask_probability = s.get<double>("mlm_probability", 0.15);
    options_.whole_word = s.get<bool>("whole_word_mask", false);
    fill_in_samples_ = s.get<int>("fill_in_samples", 3);
  }
  std::string name() const override { return "mlm"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForMaskedLM"}; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config) override {
    TaskSection d(data, source_, "data");
    seq_len_ = d.get<int64_t>("seq_len", config.max_position_embeddings);
    if (seq_len_ > config.max_position_embeddings)
      d.fail("seq_len", "(" + std::to_string(seq_len_) + ") exceeds model max_position_embeddings (" +
                            std::to_string(config.max_position_embeddings) + ")");
    const auto train_docs = documents(data["train"], "data.train");
    const auto eval_docs = documents(data["eval"], "data.eval");
    d.node("train");
    d.node("eval");
    d.finish();
    datasets::WindowOptions w;
    w.length = seq_len_;
    TaskData out;
    out.train = windows(train_docs, w);
    out.eval = windows(eval_docs, w);
    out.summary = "mlm: " + std::to_string(out.train->size()) + " train / " + std::to_string(out.eval->size()) +
                  " eval windows of " + std::to_string(seq_len_) + " bytes";
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator& generator,
                  bool training) override {
    const auto& ids = batch.at("input_ids");
    auto masked = datasets::mask_tokens(ids.to(torch::kCPU), options_, generator);
    NamedTensors inputs{{"inputs", masked.input_ids.to(ids.device())}, {"attention_mask", batch.at("attention_mask")}};
    auto out = model.forward_named(inputs, {});
    // The decoder predicts all max_position_embeddings positions; score the input's.
    const auto logits = out.at("logits").narrow(1, 0, ids.size(1));
    const auto labels = masked.labels.to(ids.device());
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
    if (!training && samples_.size() < static_cast<size_t>(fill_in_samples_)) record_samples(masked, logits);
    return result;
  }

  void begin_eval() override { samples_.clear(); }
  void end_eval(const fs::path& out_dir) override {
    if (samples_.empty()) return;
    std::ofstream out(out_dir / "fill_in_samples.txt");
    for (const auto& s : samples_) {
      spdlog::info("fill-in: {}", s);
      out << s << "\n";
    }
  }


 private:
  std::vector<std::string> documents(const YAML::Node& node, const std::string& path) {
    TaskSection s(node, source_, path);
    const auto type = s.required("type");
    std::vector<std::string> docs;
    if (type == "kjv") {
      const auto split = s.get<std::string>("split", path == "data.train" ? "train" : "validation");
      datasets::KjvSplitOptions o;
      o.holdout_every = s.get<int64_t>("holdout_every", 20);
      const auto path_override = s.get<std::string>("path", "");
      const auto verses = path_override.empty() ? datasets::read_kjv() : datasets::read_kjv(path_override);
      auto parts = datasets::split_kjv(verses, o);
      if (split == "train") {
        docs = std::move(parts.train);
      } else if (split == "validation") {
        docs = std::move(parts.validation);
      } else {
        s.fail("split", "must be train or validation, found '" + split + "'");
      }
    } else if (type == "text") {
      datasets::TextReadOptions o;
      const auto unit = s.get<std::string>("unit", "file");
      o.unit = unit == "line" ? datasets::TextUnit::kLine
                              : unit == "paragraph" ? datasets::TextUnit::kParagraph : datasets::TextUnit::kFile;
      o.jsonl_field = s.get<std::string>("jsonl_field", "text");
      auto corpus = datasets::read_text(s.required("path"), o);
      if (corpus.invalid_lines > 0) spdlog::warn("{}: skipped {} invalid lines", path, corpus.invalid_lines);
      docs = std::move(corpus.documents);
    } else {
      s.fail("type", "unknown text source '" + type + "' (known: kjv, text)");
    }
    s.finish();
    if (docs.empty()) throw std::runtime_error(source_ + ": " + path + " produced no text");
    return docs;
  }

  static std::shared_ptr<const datasets::Dataset> windows(const std::vector<std::string>& docs,
                                                          const datasets::WindowOptions& w) {
    const auto ids = datasets::make_byte_windows(docs, w);
    return std::make_shared<datasets::TensorDataset>(
        Example{{"input_ids", ids}, {"attention_mask", datasets::attention_mask_from_ids(ids)}});
  }

  void record_samples(const datasets::MlmBatch& masked, const torch::Tensor& logits) {
    const PerceiverTokenizer tok;
    const auto pred = logits.argmax(-1).to(torch::kCPU);
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

  datasets::MlmOptions options_;
  int fill_in_samples_ = 3;
  int64_t seq_len_ = 0;
  std::string source_;
  std::vector<std::string> samples_;
};

// ------------------------------------ sequence classification ------------------------------------

class SequenceClassificationTask : public Task {
 public:
  SequenceClassificationTask(TaskSection& s) : source_(s.source()), problem_(s) {}
  std::string name() const override { return "sequence_classification"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForSequenceClassification"}; }
  std::string best_metric() const override { return problem_.best_metric(); }
  std::string best_mode() const override { return problem_.best_mode(); }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config) override {
    TaskSection d(data, source_, "data");
    const int64_t seq_len = d.get<int64_t>("seq_len", std::min<int64_t>(config.max_position_embeddings, 256));
    if (seq_len > config.max_position_embeddings)
      d.fail("seq_len", "exceeds model max_position_embeddings (" + std::to_string(config.max_position_embeddings) + ")");
    d.node("train");
    d.node("eval");
    d.finish();
    auto train = texts(data["train"], "data.train");
    auto eval = texts(data["eval"], "data.eval");
    ProblemType::Targets t;
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
    names_ = config.id2label;
    TaskData out;
    out.train = encode(train, t.train, seq_len);
    out.eval = encode(eval, t.eval, seq_len);
    out.summary = "sequence classification (" + problem_.name() + "): " + std::to_string(train.texts.size()) +
                  " train / " + std::to_string(eval.texts.size()) + " eval texts, " + std::to_string(id2label.size()) +
                  " labels, " + std::to_string(seq_len) + " bytes max";
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator&, bool training) override {
    auto out = model.forward_named({{"inputs", batch.at("input_ids")}, {"attention_mask", batch.at("attention_mask")}}, {});
    StepOutput r;
    const auto& logits = out.at("logits");
    const auto& labels = batch.at("labels");
    r.samples = labels.size(0);
    r.loss = problem_.loss(logits, labels, r.metrics);
    if (!training && problem_.single()) confusion_.add(logits, labels);
    return r;
  }
  void begin_eval() override {
    if (problem_.single()) confusion_.reset(static_cast<int64_t>(names_.size()));
  }
  void end_eval(const fs::path& out_dir) override { confusion_.write(out_dir / "confusion_matrix.csv", names_); }

 private:
  datasets::LabelledText texts(const YAML::Node& node, const std::string& path) {
    TaskSection s(node, source_, path);
    const auto type = s.required("type");
    datasets::LabelledText out;
    if (type == "fortunes") {
      datasets::FortuneLangIdOptions o;
      o.max_bytes = s.get<size_t>("max_bytes", o.max_bytes);
      o.min_bytes = s.get<size_t>("min_bytes", o.min_bytes);
      o.validation_fraction = s.get<double>("validation_fraction", o.validation_fraction);
      o.test_fraction = s.get<double>("test_fraction", o.test_fraction);
      o.balance = s.get<bool>("balance", o.balance);
      o.split_seed = s.get<uint64_t>("split_seed", o.split_seed);
      const auto split = s.get<std::string>("split", path == "data.train" ? "train" : "validation");
      auto splits = datasets::fortune_language_id(o);
      if (split == "train") {
        out = std::move(splits.train);
      } else if (split == "validation") {
        out = std::move(splits.validation);
      } else if (split == "test") {
        out = std::move(splits.test);
      } else {
        s.fail("split", "must be train, validation or test, found '" + split + "'");
      }
    } else if (type == "labelled_text") {
      datasets::LabelledReadOptions o;
      o.text_field = s.get<std::string>("text_field", o.text_field);
      o.label_field = s.get<std::string>("label_field", o.label_field);
      o.list_separator = problem_.separator();  // JSONL label lists are split again on it
      out = datasets::read_labelled_text(s.required("path"), o);
      if (out.skipped > 0) spdlog::warn("{}: skipped {} malformed rows", path, out.skipped);
    } else {
      s.fail("type", "unknown labelled-text source '" + type + "' (known: fortunes, labelled_text)");
    }
    s.finish();
    if (out.texts.empty()) throw std::runtime_error(source_ + ": " + path + " produced no labelled texts");
    return out;
  }

  static std::shared_ptr<const datasets::Dataset> encode(const datasets::LabelledText& data, const torch::Tensor& targets,
                                                         int64_t seq_len) {
    const PerceiverTokenizer tok;
    EncodeOptions o;
    o.max_length = seq_len;
    o.truncation = Truncation::LongestFirst;
    o.padding = Padding::MaxLength;
    const auto inputs = to_model_inputs(tok.batch_encode(data.texts, o));
    return std::make_shared<datasets::TensorDataset>(Example{{"input_ids", inputs.input_ids},
                                                             {"attention_mask", inputs.attention_mask},
                                                             {"labels", targets}});
  }

  std::string source_;
  ProblemType problem_;
  std::map<int64_t, std::string> names_;
  Confusion confusion_;
};

// -------------------------------------- image classification --------------------------------------

class ImageClassificationTask : public Task {
 public:
  ImageClassificationTask(TaskSection& s) : problem_(s), source_(s.source()) {
    augment_.crop_padding = s.get<int64_t>("random_crop_padding", 0);
    augment_.hflip_probability = s.get<double>("hflip_probability", 0.0);
    const auto mean = s.get<std::vector<double>>("image_mean", processor_.image_mean);
    const auto std = s.get<std::vector<double>>("image_std", processor_.image_std);
    if (mean.size() != 3 || std.size() != 3) s.fail("image_mean", "and image_std need 3 values");
    processor_.image_mean = mean;
    processor_.image_std = std;
    interpolate_ = s.get<bool>("interpolate_pos_encoding", false);
  }
  std::string name() const override { return "image_classification"; }
  std::vector<std::string> architectures() const override {
    return {"PerceiverForImageClassificationFourier", "PerceiverForImageClassificationLearned",
            "PerceiverForImageClassificationConvProcessing"};
  }
  std::string best_metric() const override { return problem_.best_metric(); }
  std::string best_mode() const override { return problem_.best_mode(); }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config) override {
    check_train_eval_section(data, source_);
    auto train = images(data["train"], "data.train");
    auto eval = images(data["eval"], "data.eval");
    config.problem_type = problem_.name();
    if (!problem_.single()) {
      if (train.label_names.empty() || eval.label_names.empty())
        throw std::runtime_error(source_ + ": task.problem_type " + problem_.name() +
                                 " needs label fields: use data sources of type image_list");
      auto t = problem_.targets(train.label_names, eval.label_names, source_);
      train.labels = t.train;
      eval.labels = t.eval;
      set_id2label(config, t.id2label);
    } else if (!train.classes.empty()) {
      if (!eval.label_names.empty()) eval.labels = class_ids(eval.label_names, train.classes, "data.eval");
      set_id2label(config, train.classes);
    } else {
      const auto n = std::max(train.labels.max().item<int64_t>(), eval.labels.max().item<int64_t>()) + 1;
      if (n != config.num_labels()) config.set_num_labels(n);
    }
    names_ = config.id2label;
    TaskData out;
    out.summary = "image classification: " + std::to_string(train.images.size(0)) + " train / " +
                  std::to_string(eval.images.size(0)) + " eval images of " + std::to_string(train.images.size(1)) + "x" +
                  std::to_string(train.images.size(2)) + "x" + std::to_string(train.images.size(3)) + ", " +
                  std::to_string(config.num_labels()) + " classes";
    out.train = std::make_shared<datasets::TensorDataset>(Example{{"images", train.images}, {"labels", train.labels}});
    out.eval = std::make_shared<datasets::TensorDataset>(Example{{"images", eval.images}, {"labels", eval.labels}});
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator& generator,
                  bool training) override {
    auto images = batch.at("images");  // (B, H, W, C) uint8
    if (training && (augment_.crop_padding > 0 || augment_.hflip_probability > 0))
      images = datasets::augment_images(images.to(torch::kCPU), augment_, generator).to(images.device());
    ForwardOptions fo;
    fo.interpolate_pos_encoding = interpolate_;
    auto out = model.forward_named({{"inputs", normalize(images)}}, fo);
    StepOutput r;
    r.samples = images.size(0);
    r.loss = problem_.loss(out.at("logits"), batch.at("labels"), r.metrics);
    if (!training && problem_.single()) confusion_.add(out.at("logits"), batch.at("labels"));
    return r;
  }
  void begin_eval() override {
    if (problem_.single()) confusion_.reset(static_cast<int64_t>(names_.size()));
  }
  void end_eval(const fs::path& out_dir) override { confusion_.write(out_dir / "confusion_matrix.csv", names_); }

 private:
  // The image processor's rescale + normalise, channels first; grey replicated to RGB.
  torch::Tensor normalize(const torch::Tensor& images) const {
    auto x = images.permute({0, 3, 1, 2}).to(torch::kFloat32);
    if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
    const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
    const auto mean = torch::tensor(processor_.image_mean, opts.dtype(torch::kDouble)).to(opts).view({1, 3, 1, 1});
    const auto std = torch::tensor(processor_.image_std, opts.dtype(torch::kDouble)).to(opts).view({1, 3, 1, 1});
    return ((x * static_cast<float>(processor_.rescale_factor)) - mean) / std;
  }

  // Image-list labels scored against the training classes (an evaluation list may lack some).
  torch::Tensor class_ids(const std::vector<std::string>& names, const std::vector<std::string>& classes,
                          const std::string& path) const {
    std::vector<int64_t> ids;
    for (const auto& n : names) {
      const auto it = std::find(classes.begin(), classes.end(), n);
      if (it == classes.end())
        throw std::runtime_error(source_ + ": " + path + ": label '" + n + "' is not among the training classes");
      ids.push_back(it - classes.begin());
    }
    return torch::tensor(ids, torch::kLong);
  }

  datasets::ImageClassificationSet images(const YAML::Node& node, const std::string& path) {
    TaskSection s(node, source_, path);
    const auto type = s.required("type");
    datasets::ImageClassificationSet out;
    if (type == "fashion_mnist") {
      const auto split = s.get<std::string>("split", path == "data.train" ? "train" : "test");
      if (split != "train" && split != "test") s.fail("split", "must be train or test");
      const auto dir = s.get<std::string>("path", "");
      out = dir.empty() ? datasets::load_fashion_mnist(split == "train")
                        : datasets::load_fashion_mnist(split == "train", dir);
    } else if (type == "idx") {
      out = datasets::load_idx_classification(s.required("images"), s.required("labels"));
    } else if (type == "image_folder") {
      datasets::ImageFolderOptions o;
      o.height = s.get<int64_t>("height", 0);
      o.width = s.get<int64_t>("width", 0);
      out = datasets::load_image_folder(s.required("path"), o);
      if (out.unreadable > 0) spdlog::warn("{}: skipped {} unreadable images", path, out.unreadable);
    } else if (type == "image_list") {
      datasets::ImageListOptions o;
      o.height = s.get<int64_t>("height", 0);
      o.width = s.get<int64_t>("width", 0);
      o.image_field = s.get<std::string>("image_field", o.image_field);
      o.label_field = s.get<std::string>("label_field", o.label_field);
      out = datasets::load_image_list(s.required("path"), o);
      if (out.unreadable > 0) spdlog::warn("{}: skipped {} unreadable images or incomplete rows", path, out.unreadable);
    } else {
      s.fail("type", "unknown image source '" + type + "' (known: fashion_mnist, idx, image_folder, image_list)");
    }
    const auto limit = s.get<int64_t>("limit", 0);
    s.finish();
    if (limit > 0 && limit < out.images.size(0)) {
      out.images = out.images.narrow(0, 0, limit);
      out.labels = out.labels.narrow(0, 0, limit);
      if (!out.label_names.empty()) out.label_names.resize(static_cast<size_t>(limit));
    }
    if (out.images.size(0) == 0) throw std::runtime_error(source_ + ": " + path + " produced no images");
    return out;
  }

  ProblemType problem_;
  datasets::AugmentOptions augment_;
  ImageProcessorOptions processor_;
  bool interpolate_ = false;
  std::string source_;
  std::map<int64_t, std::string> names_;
  Confusion confusion_;
};

}  // namespace

void MetricSums::add(const std::string& name, double sum, double weight) {
  auto& slot = sums_[name];
  slot.first += sum;
  slot.second += weight;
}

void MetricSums::merge(const MetricSums& other) {
  for (const auto& [name, v] : other.sums_) add(name, v.first, v.second);
}

std::map<std::string, double> MetricSums::means() const {
  std::map<std::string, double> out;
  for (const auto& [name, v] : sums_)
    if (v.second > 0) out[name] = v.first / v.second;
  return out;
}

std::vector<std::string> known_tasks() {
  return {"mlm", "sequence_classification", "image_classification", "optical_flow", "multimodal_autoencoding"};
}

std::unique_ptr<Task> make_task(const YAML::Node& node, const std::string& source) {
  YAML::Node options = node;
  std::string name;
  if (node && node.IsScalar()) {
    name = node.as<std::string>();
    options = YAML::Node(YAML::NodeType::Map);
  } else if (node && node.IsMap() && node["name"]) {
    name = node["name"].as<std::string>();
  } else {
    throw std::invalid_argument(source + ": 'task' must be a name or a mapping with 'name'");
  }
  TaskSection s(options, source, "task");
  if (node.IsMap()) s.get<std::string>("name", "");
  std::unique_ptr<Task> task;
  if (name == "mlm") {
    task = std::make_unique<MaskedLmTask>(s);
  } else if (name == "sequence_classification") {
    task = std::make_unique<SequenceClassificationTask>(s);
  } else if (name == "image_classification") {
    task = std::make_unique<ImageClassificationTask>(s);
  } else {
    task = make_vision_task(name, s);
    if (!task) {
      std::string known;
      for (const auto& k : known_tasks()) known += (known.empty() ? "" : ", ") + k;
      throw std::invalid_argument(source + ": unknown task '" + name + "' (known: " + known + ")");
    }
  }
  s.finish();
  return task;
}

datasets::Example to_device(const datasets::Example& batch, const torch::Device& device) {
  datasets::Example out;
  for (const auto& [name, t] : batch) out[name] = t.to(device);
  return out;
}

}  // namespace perceiver::trainers
