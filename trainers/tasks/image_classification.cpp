// Image classification (task `image_classification`): IDX, Fashion-MNIST, image folders and lists,
// augmentation, HF's problem types.
#include <algorithm>
#include <fstream>

#include <spdlog/spdlog.h>

#include "datasets/images.h"
#include "datasets/sources.h"
#include "perceiver/processing/image_processor.h"
#include "perceiver/export/input_settings.h"
#include "trainers/classification_task.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;
namespace fs = std::filesystem;

datasets::OptionSpecs data_options() {
  return train_eval_options("image", datasets::source_names(datasets::image_sources()));
}

// What this task reads in each image source's section besides the source's keys.
datasets::OptionSpecs source_options() {
  return {{"limit", "int", "0", "read only the source's first N images; 0: all"}};
}

class ImageClassificationTask : public ClassificationTask {
 public:
  ImageClassificationTask(TaskSection& s) : ClassificationTask(s), source_(s.source()) {
    augment_.crop_padding = s.get<int64_t>("random_crop_padding");
    augment_.hflip_probability = s.get<double>("hflip_probability");
    // Given here, they override the defaults (ImageNet's) or a fine-tuned model's preprocessor_config.json.
    mean_ = s.get<std::vector<double>>("image_mean", {});
    std_ = s.get<std::vector<double>>("image_std", {});
    if (mean_.size() != (mean_.empty() ? 0 : 3) || std_.size() != (std_.empty() ? 0 : 3))
      s.fail("image_mean", "and image_std need 3 values");
    interpolate_ = s.get<bool>("interpolate_pos_encoding");
  }
  std::string name() const override { return "image_classification"; }
  std::vector<std::string> architectures() const override {
    return {"PerceiverForImageClassificationFourier", "PerceiverForImageClassificationLearned",
            "PerceiverForImageClassificationConvProcessing"};
  }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const fs::path& model_from) override {
    data_section(data, source_, data_options()).finish();
    // A fine-tuned checkpoint's preprocessor_config.json says how its images are cropped, resized and
    // normalised (HF's image processor); the data sources then prepare every image that way.
    datasets::ImageFolderOptions decode;
    std::error_code ec;
    if (!model_from.empty() && fs::is_regular_file(model_from / "preprocessor_config.json", ec)) {
      processor_ = ImageProcessorOptions::from_file(model_from);
      from_model_ = true;
      decode.processor = std::make_shared<const PerceiverImageProcessor>(processor_);
      spdlog::info("images are prepared by {}'s image processor (crop {}, resize to {}x{})",
                   (model_from / "preprocessor_config.json").string(), processor_.do_center_crop ? "on" : "off",
                   processor_.size.height, processor_.size.width);
    }
    if (!mean_.empty()) processor_.image_mean = mean_;
    if (!std_.empty()) processor_.image_std = std_;
    auto train = images(data["train"], "data.train", decode);
    auto eval = images(data["eval"], "data.eval", decode);
    config.problem_type = problem_.name();
    if (!problem_.single()) {
      if (train.label_names.empty() || eval.label_names.empty())
        throw std::runtime_error(source_ + ": task.problem_type " + problem_.name() +
                                 " needs label fields: use data sources of type image_list or image_shards");
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
    set_label_names(config.id2label);
    if (train.shape != eval.shape)
      throw std::runtime_error(source_ + ": data.train images are " + c10::str(train.shape) + " but data.eval's are " +
                               c10::str(eval.shape) + " (height x width x channels): prepare both the same way");
    TaskData out;
    out.summary = fmt::format("image classification: {} train / {} eval images of {}, {} classes", train.size(),
                              eval.size(), c10::str(train.shape), config.num_labels());
    out.train = labelled(train);
    out.eval = labelled(eval);
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator& generator,
                  bool training) override {
    auto images = batch.at("images");  // (B, H, W, C) uint8
    if (training && (augment_.crop_padding > 0 || augment_.hflip_probability > 0)) {
      // Each example's own generator when the loader gives one: the same crops on any number of ranks.
      auto rows = datasets::example_generators(batch);
      images = (rows.empty() ? datasets::augment_images(images.to(torch::kCPU), augment_, generator)
                             : datasets::augment_images(images.to(torch::kCPU), augment_, rows))
                   .to(images.device());
    }
    ForwardOptions fo;
    fo.interpolate_pos_encoding = interpolate_;
    auto out = model.forward_named({{"inputs", normalize(images)}}, fo);
    StepOutput r;
    r.samples = images.size(0);
    r.loss = score(out.at("logits"), batch.at("labels"), training, r.metrics);
    return r;
  }

 private:
  // The image processor's rescale + normalise, channels first; grey replicated to RGB.
  torch::Tensor normalize(const torch::Tensor& images) const {
    auto x = images.permute({0, 3, 1, 2}).to(torch::kFloat32);
    if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
    if (processor_.do_rescale) x = x * static_cast<float>(processor_.rescale_factor);
    if (!processor_.do_normalize) return x;
    const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
    const auto mean = torch::tensor(processor_.image_mean, opts.dtype(torch::kDouble)).to(opts).view({1, 3, 1, 1});
    const auto std = torch::tensor(processor_.image_std, opts.dtype(torch::kDouble)).to(opts).view({1, 3, 1, 1});
    return (x - mean) / std;
  }

  // HF's preprocessor_config.json with the settings training used, so that predict, export and HF's
  // image processor read the checkpoint's images as training did.
  void write_inference_files(const fs::path& dir, const YAML::Node& run, const PerceiverConfig& config) const override {
    const auto options = from_model_ ? processor_ : image_settings_of_run(run, config, source_);
    std::ofstream(dir / "preprocessor_config.json") << options.to_json().dump(2) << "\n";
  }

  // Examples {"images", "labels"}: the source's images with this task's label for each.
  static std::shared_ptr<const datasets::Dataset> labelled(const datasets::ImageSet& set) {
    return std::make_shared<datasets::MappedDataset>(set.images, [labels = set.labels](Example e, int64_t i) {
      e["labels"] = labels[i];
      return e;
    });
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

  datasets::ImageSet images(const YAML::Node& node, const std::string& path, const datasets::ImageFolderOptions& decode) {
    SourceSection source(node, source_, path, source_options());
    auto out = datasets::find_source(datasets::image_sources(), source, "image")(source, decode);
    TaskSection& s = source.section();
    const auto limit = s.get<int64_t>("limit");
    s.finish();
    if (limit > 0 && limit < out.size()) {
      out.images = std::make_shared<datasets::PrefixDataset>(out.images, limit);
      out.labels = out.labels.narrow(0, 0, limit);
      if (!out.label_names.empty()) out.label_names.resize(static_cast<size_t>(limit));
    }
    if (out.size() == 0) throw std::runtime_error(source_ + ": " + path + " produced no images");
    return out;
  }

  datasets::AugmentOptions augment_;
  ImageProcessorOptions processor_;  // rescale and normalisation (and, from a model, crop and resize)
  bool from_model_ = false;          // processor_ is a fine-tuned model's preprocessor_config.json
  std::vector<double> mean_, std_;   // task.image_mean / image_std when given
  bool interpolate_ = false;
  std::string source_;
};

std::unique_ptr<Task> make_image_classification_task(TaskSection& options) {
  return std::make_unique<ImageClassificationTask>(options);
}

}  // namespace

TaskInfo image_classification_task_info() {
  datasets::OptionSpecs options = {
      {"random_crop_padding", "int", "0",
       "training augmentation: pad by this many pixels, then crop back at a random offset; 0: off"},
      {"hflip_probability", "float", "0.0", "training augmentation: probability of a horizontal flip"},
      // No declared default: absent, the image processor's values stand (see the constructor).
      {"image_mean", "list[float]", "",
       "per-channel mean (3 values) for normalisation; absent: ImageNet's, or the fine-tuned model's "
       "preprocessor_config.json"},
      {"image_std", "list[float]", "",
       "per-channel standard deviation (3 values); absent: ImageNet's, or the fine-tuned model's "
       "preprocessor_config.json"},
      {"interpolate_pos_encoding", "bool", "false",
       "resample the learned position encoding to the images' size (HF's interpolate_pos_encoding)"},
  };
  const auto& shared = classification_options();
  options.insert(options.end(), shared.begin(), shared.end());
  return {make_image_classification_task,
          "image classification under HF's problem types, with crop and flip augmentation",
          options,
          data_options(),
          "image",
          source_options()};
}

}  // namespace perceiver::trainers
