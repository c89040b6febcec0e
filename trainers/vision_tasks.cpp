#include "trainers/vision_tasks.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/video/tracking.hpp>

#include <set>
#include <spdlog/spdlog.h>

#include "datasets/flow.h"
#include "datasets/common.h"
#include "datasets/labelled_text.h"
#include "datasets/multimodal.h"
#include "perceiver/vision_models.h"
#include "trainers/task_options.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;

// ---------------------------------------- optical flow ----------------------------------------

// Farneback's dense flow on the same pairs: the classical baseline the learned model must beat.
torch::Tensor farneback_flow(const torch::Tensor& frame1, const torch::Tensor& frame2) {
  auto gray = [](const torch::Tensor& rgb) {
    const auto t = rgb.to(torch::kCPU).clamp(0, 255).to(torch::kUInt8).contiguous();
    cv::Mat mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC3, t.data_ptr<uint8_t>());
    cv::Mat g;
    cv::cvtColor(mat, g, cv::COLOR_RGB2GRAY);
    return g;
  };
  cv::Mat flow;
  cv::calcOpticalFlowFarneback(gray(frame1), gray(frame2), flow, 0.5, 3, 15, 3, 5, 1.2, 0);
  return torch::from_blob(flow.data, {flow.rows, flow.cols, 2}, torch::kFloat32).clone();
}

class OpticalFlowTask : public Task {
 public:
  OpticalFlowTask(TaskSection& s) : source_(s.source()) {
    flow_scale_ = s.get<double>("flow_scale", 20.0);
    farneback_ = s.get<bool>("farneback_baseline", true);
    train_query_pixels_ = s.get<int64_t>("train_query_pixels", 0);
    if (train_query_pixels_ < 0) s.fail("train_query_pixels", "must be >= 0 (0 decodes every pixel)");
  }
  std::string name() const override { return "optical_flow"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForOpticalFlow"}; }
  std::string best_metric() const override { return "eval/epe"; }
  std::string best_mode() const override { return "min"; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config) override {
    check_train_eval_section(data, source_);
    if (config.train_size.size() != 2) throw std::invalid_argument(source_ + ": model.config.train_size needs [H, W]");
    TaskData out;
    out.train = source(data["train"], "data.train", config);
    out.eval = source(data["eval"], "data.eval", config);
    out.summary = "optical flow: " + std::to_string(out.train->size()) + " train / " + std::to_string(out.eval->size()) +
                  " eval pairs of " + std::to_string(config.train_size[0]) + "x" + std::to_string(config.train_size[1]);
    return out;
  }

  StepOutput step(PerceiverPreTrainedModelImpl& model, const Example& batch, at::Generator& gen, bool training) override {
    if (auto* flow = dynamic_cast<PerceiverForOpticalFlowImpl*>(&model)) flow->loss_options.flow_scale = flow_scale_;
    torch::Tensor labels = batch.at("labels");
    NamedTensors inputs{{"inputs", batch.at("inputs")}};
    const int64_t pixels = labels.size(1) * labels.size(2);
    if (training && train_query_pixels_ > 0 && train_query_pixels_ < pixels) {
      // Decode a random subset of the pixels (the same for the whole batch): the decoder dominates the
      // cost and the loss on the subset is an unbiased estimate. Evaluation always decodes every pixel.
      const auto points = torch::randperm(pixels, gen, torch::kLong).slice(0, 0, train_query_pixels_);
      inputs["subsampled_output_points"] = points;
      labels = labels.flatten(1, 2).index_select(1, points.to(labels.device()));  // the model takes them as given
    }
    inputs["labels"] = labels;
    auto out = model.forward_named(inputs, {});
    StepOutput r;
    r.samples = labels.size(0);
    r.loss = out.at("loss");
    const double n = static_cast<double>(labels.size(0));
    r.metrics.add("loss", r.loss.item<double>() * n, n);
    r.metrics.add("epe", out.at("epe").item<double>() * n, n);
    const auto valid = valid_flow_mask(labels);  // Middlebury's unknown flow is no motion to score
    r.metrics.add("zero_flow_epe", end_point_error(torch::zeros_like(labels), labels, valid).item<double>() * n, n);
    if (!training && farneback_) {
      double sum = 0;
      for (int64_t i = 0; i < labels.size(0); ++i)
        sum += end_point_error(farneback_flow(batch.at("frame1")[i], batch.at("frame2")[i]), labels[i].to(torch::kCPU),
                               valid[i].to(torch::kCPU))
                   .item<double>();
      r.metrics.add("farneback_epe", sum, n);
    }
    return r;
  }

 private:
  std::shared_ptr<const datasets::Dataset> source(const YAML::Node& node, const std::string& path,
                                                  const PerceiverConfig& config) const {
    TaskSection s(node, source_, path);
    const auto type = s.required("type");
    const int64_t h = config.train_size[0], w = config.train_size[1];
    auto to_example = [](const datasets::FlowSample& s) {
      return Example{{"inputs", datasets::flow_model_input(s.frame1, s.frame2)[0]},
                     {"labels", s.flow},
                     {"frame1", s.frame1},
                     {"frame2", s.frame2}};
    };
    if (type == "synthetic") {
      datasets::SyntheticFlowOptions o;
      o.height = h;
      o.width = w;
      o.seed = s.get<uint64_t>("seed", path == "data.train" ? 1 : 2);
      o.max_displacement = s.get<double>("max_displacement", o.max_displacement);
      const auto pan = s.get<std::vector<double>>("pan", {o.pan[0], o.pan[1]});
      if (pan.size() != 2) s.fail("pan", "must be a list [u, v] of two numbers");
      o.pan = {pan[0], pan[1]};
      const auto count = s.get<int64_t>("count", 1000);
      s.finish();
      return std::make_shared<datasets::FunctionDataset>(
          count, [o, to_example](int64_t i) { return to_example(datasets::synthetic_flow_sample(o, i)); });
    }
    if (type == "sintel" || type == "chairs") {
      const auto root = s.required("path");
      const auto pass = type == "sintel" ? s.get<std::string>("pass", "clean") : "";
      s.finish();
      auto files = type == "sintel" ? datasets::discover_sintel(root, pass) : datasets::discover_flying_chairs(root);
      if (files.empty()) throw std::runtime_error(source_ + ": " + path + ": no image pairs found under " + root);
      return std::make_shared<datasets::FunctionDataset>(
          static_cast<int64_t>(files.size()), [files, h, w, to_example](int64_t i) {
            auto s = datasets::load_flow_sample(files[static_cast<size_t>(i)]);
            if (s.frame1.size(0) < h || s.frame1.size(1) < w)
              throw std::runtime_error(files[static_cast<size_t>(i)].frame1.string() + ": smaller than train_size");
            // Top-left crop to the model's train_size (the decoder's output grid is fixed).
            s.frame1 = s.frame1.narrow(0, 0, h).narrow(1, 0, w).contiguous();
            s.frame2 = s.frame2.narrow(0, 0, h).narrow(1, 0, w).contiguous();
            s.flow = s.flow.narrow(0, 0, h).narrow(1, 0, w).contiguous();
            return to_example(s);
          });
    }
    s.fail("type", "must be synthetic, sintel or chairs, found '" + type + "'");
  }

  std::string source_;
  double flow_scale_ = 20.0;
  bool farneback_ = true;
  int64_t train_query_pixels_ = 0;
};

// --------------------------------- multimodal autoencoding ---------------------------------

class MultimodalTask : public Task {
 public:
  MultimodalTask(TaskSection& s) : source_(s.source()) {
    image_points_ = s.get<int64_t>("image_points", 0);
    weights_ = {{"image", s.get<double>("image_weight", 1.0)},
                {"audio", s.get<double>("audio_weight", 1.0)},
                {"label", s.get<double>("label_weight", 1.0)}};
  }
  std::string name() const override { return "multimodal_autoencoding"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForMultimodalAutoencoding"}; }
  std::string best_metric() const override { return "eval/loss"; }
  std::string best_mode() const override { return "min"; }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config) override {
    check_train_eval_section(data, source_);
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
    TaskSection s(node, source_, path);
    const auto type = s.required("type");
    if (config.output_shape.size() != 4) throw std::invalid_argument(source_ + ": model.config.output_shape needs 4 values");
    if (type == "files") return recorded_clips(s, config);
    if (type != "synthetic") s.fail("type", "must be synthetic or files, found '" + type + "'");
    datasets::SyntheticClipOptions o;
    o.num_classes = config.num_labels();
    o.num_frames = config.num_frames;
    if (config.output_shape.size() != 4) throw std::invalid_argument(source_ + ": model.config.output_shape needs 4 values");
    o.height = config.output_shape[2];
    o.width = config.output_shape[3];
    o.num_samples = config.num_frames * config.audio_samples_per_frame;
    o.seed = s.get<uint64_t>("seed", path == "data.train" ? 1 : 2);
    const auto count = s.get<int64_t>("count", 512);
    s.finish();
    return std::make_shared<datasets::FunctionDataset>(count, [o](int64_t i) {
      const auto b = datasets::synthetic_clips(o, i, 1);
      return Example{{"image", b.image[0]}, {"audio", b.audio[0]}, {"label", b.label[0]}, {"class_id", b.class_id[0]}};
    });
  }

  // A CSV (columns video,audio,label; paths relative to the CSV) of recorded clips: video as a frame
  // folder or a video file, WAV audio, and a label name from config.id2label (or a class index).
  std::shared_ptr<const datasets::Dataset> recorded_clips(TaskSection& s, const PerceiverConfig& config) const {
    const auto list = std::filesystem::path(s.required("list"));
    s.finish();
    const auto rows = datasets::parse_delimited(datasets::read_file_bytes(list), ',');
    if (rows.size() < 2) throw std::runtime_error(list.string() + ": expected a header and at least one clip");
    const auto& header = rows.front();
    auto column = [&](const std::string& name) {
      const auto it = std::find(header.begin(), header.end(), name);
      if (it == header.end()) throw std::runtime_error(list.string() + ": missing column '" + name + "'");
      return static_cast<size_t>(it - header.begin());
    };
    const size_t video = column("video"), audio = column("audio"), label = column("label");
    const auto label2id = config.label2id();
    std::vector<datasets::AvClipFiles> clips;
    for (size_t r = 1; r < rows.size(); ++r) {
      const auto& row = rows[r];
      if (row.size() != header.size())
        throw std::runtime_error(list.string() + ":" + std::to_string(r + 1) + ": expected " +
                                 std::to_string(header.size()) + " columns");
      datasets::AvClipFiles f;
      f.video = list.parent_path() / row[video];
      f.audio = list.parent_path() / row[audio];
      const auto it = label2id.find(row[label]);
      if (it != label2id.end()) {
        f.class_id = it->second;
      } else {
        try {
          f.class_id = std::stoll(row[label]);
        } catch (const std::exception&) {
          throw std::runtime_error(list.string() + ":" + std::to_string(r + 1) + ": unknown label '" + row[label] + "'");
        }
      }
      if (f.class_id < 0 || f.class_id >= config.num_labels())
        throw std::runtime_error(list.string() + ":" + std::to_string(r + 1) + ": label out of range");
      clips.push_back(std::move(f));
    }
    datasets::VideoOptions vo;
    vo.num_frames = config.num_frames;
    vo.height = config.output_shape[2];
    vo.width = config.output_shape[3];
    datasets::AudioOptions ao;
    ao.num_samples = config.num_frames * config.audio_samples_per_frame;
    const int64_t labels = config.num_labels();
    return std::make_shared<datasets::FunctionDataset>(
        static_cast<int64_t>(clips.size()), [clips, labels, vo, ao](int64_t i) {
          const auto b = datasets::load_av_clip(clips[static_cast<size_t>(i)], labels, vo, ao);
          return Example{{"image", b.image[0]}, {"audio", b.audio[0]}, {"label", b.label[0]}, {"class_id", b.class_id[0]}};
        });
  }

  std::string source_;
  int64_t image_points_ = 0;
  std::map<std::string, double> weights_;
};

}  // namespace

std::unique_ptr<Task> make_vision_task(const std::string& name, TaskSection& options) {
  if (name == "optical_flow") return std::make_unique<OpticalFlowTask>(options);
  if (name == "multimodal_autoencoding") return std::make_unique<MultimodalTask>(options);
  return nullptr;
}

}  // namespace perceiver::trainers
