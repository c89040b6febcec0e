// Multimodal autoencoding (task `multimodal_autoencoding`): synthetic or recorded video + audio +
// label clips; per-modality losses.
#include <algorithm>

#include "datasets/multimodal.h"
#include "datasets/sources.h"
#include "perceiver/models/multimodal_autoencoding.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;

datasets::OptionSpecs data_options() {
  return train_eval_options("clip", datasets::source_names(datasets::clip_sources()));
}

class MultimodalTask : public Task {
 public:
  MultimodalTask(TaskSection& s) : source_(s.source()) {
    image_points_ = s.get<int64_t>("image_points");
    weights_ = {{"image", s.get<double>("image_weight")},
                {"audio", s.get<double>("audio_weight")},
                {"label", s.get<double>("label_weight")}};
  }
  std::string name() const override { return "multimodal_autoencoding"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForMultimodalAutoencoding"}; }
  std::string best_metric() const override { return "eval/loss"; }
  std::string best_mode() const override { return "min"; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const std::filesystem::path& /*model_from*/) override {
    data_section(data, source_, data_options()).finish();
    TaskData out;
    out.train = clips(data["train"], "data.train", config);
    out.eval = clips(data["eval"], "data.eval", config);
    out.summary = "multimodal autoencoding: " + std::to_string(out.train->size()) + " train / " +
                  std::to_string(out.eval->size()) + " eval clips, " + std::to_string(config.num_labels()) + " classes";
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator& generator,
                  bool training) override {
    if (auto* mm = dynamic_cast<PerceiverForMultimodalAutoencodingImpl*>(&model)) {
      for (const auto& [m, w] : weights_) mm->loss_options.weights[m] = w;
    }
    NamedTensors in{{"inputs.image", batch.at("image")},
                    {"inputs.audio", batch.at("audio")},
                    {"inputs.label", batch.at("label")},
                    {"labels.image", batch.at("image")},
                    {"labels.audio", batch.at("audio")},
                    {"labels.label", batch.at("class_id")}};
    const auto& shape = model.config().output_shape;
    const int64_t total = shape[1] * shape[2] * shape[3];
    if (training && image_points_ > 0 && image_points_ < total) {
      // Decode a random subset of pixels per step (the Perceiver IO paper's subsampled decoding).
      in["subsampled_output_points.image"] =
          std::get<0>(torch::randperm(total, generator, torch::kLong).narrow(0, 0, image_points_).sort())
              .to(batch.at("image").device());
    }
    auto out = model.forward_named(in, {});
    StepOutput r;
    const double n = static_cast<double>(batch.at("class_id").size(0));
    r.samples = static_cast<int64_t>(n);
    r.loss = out.at("loss");
    r.metrics.add("loss", r.loss.item<double>() * n, n);
    for (const char* m : {"image", "audio", "label"})
      if (out.count(std::string("loss.") + m)) r.metrics.add(std::string("loss_") + m, out.at(std::string("loss.") + m).item<double>() * n, n);
    if (out.count("logits.label"))
      r.metrics.add("label_accuracy", out.at("logits.label").argmax(-1).eq(batch.at("class_id")).sum().item<double>(), n);
    return r;
  }

 private:
  std::shared_ptr<const datasets::Dataset> clips(const YAML::Node& node, const std::string& path,
                                                 const PerceiverConfig& config) const {
    if (config.output_shape.size() != 4) throw std::invalid_argument(source_ + ": model.config.output_shape needs 4 values");
    datasets::ClipShape shape;
    shape.num_classes = config.num_labels();
    shape.num_frames = config.num_frames;
    shape.height = config.output_shape[2];
    shape.width = config.output_shape[3];
    shape.num_samples = config.num_frames * config.audio_samples_per_frame;
    shape.label2id = config.label2id();
    SourceSection s(node, source_, path);
    const auto clips = datasets::find_source(datasets::clip_sources(), s, "clip")(s, shape);
    s.section().finish();
    return std::make_shared<datasets::FunctionDataset>(clips.count, [clips](int64_t i) {
      const auto b = clips.clip(i);
      return Example{{"image", b.image[0]}, {"audio", b.audio[0]}, {"label", b.label[0]}, {"class_id", b.class_id[0]}};
    });
  }

  std::string source_;
  int64_t image_points_ = 0;
  std::map<std::string, double> weights_;
};

std::unique_ptr<Task> make_multimodal_autoencoding_task(TaskSection& options) {
  return std::make_unique<MultimodalTask>(options);
}

}  // namespace

TaskInfo multimodal_autoencoding_task_info() {
  return {make_multimodal_autoencoding_task,
          "multimodal autoencoding of video, audio and label clips, with a loss per modality",
          {{"image_points", "int", "0",
            "training decodes a random subset of this many image points per step; 0: all of them"},
           {"image_weight", "float", "1.0", "weight of the image reconstruction loss"},
           {"audio_weight", "float", "1.0", "weight of the audio reconstruction loss"},
           {"label_weight", "float", "1.0", "weight of the label loss"}},
          data_options(),
          "clip",
          {}};
}

}  // namespace perceiver::trainers
