// Optical flow (task `optical_flow`): synthetic, Sintel and FlyingChairs pairs; EPE against the
// zero-flow and Farneback baselines.
#include <opencv2/imgproc.hpp>
#include <opencv2/video/tracking.hpp>

#include "datasets/flow.h"
#include "datasets/sources.h"
#include "perceiver/processing/flow_colour.h"
#include "perceiver/models/optical_flow.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {
namespace {

using datasets::Example;

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

datasets::OptionSpecs data_options() {
  return train_eval_options("flow", datasets::source_names(datasets::flow_sources()));
}

class OpticalFlowTask : public Task {
 public:
  OpticalFlowTask(TaskSection& s) : source_(s.source()) {
    flow_scale_ = s.get<double>("flow_scale");
    farneback_ = s.get<bool>("farneback_baseline");
    train_query_pixels_ = s.get<int64_t>("train_query_pixels");
    if (train_query_pixels_ < 0) s.fail("train_query_pixels", "must be >= 0 (0 decodes every pixel)");
  }
  std::string name() const override { return "optical_flow"; }
  std::vector<std::string> architectures() const override { return {"PerceiverForOpticalFlow"}; }
  std::string best_metric() const override { return "eval/epe"; }
  std::string best_mode() const override { return "min"; }

  void begin_eval() override { sample_flow_ = sample_truth_ = torch::Tensor(); }
  // The first evaluation pair's flow beside its ground truth, in Middlebury's colours at the truth's scale
  // (a black bar between them).
  std::map<std::string, double> end_eval(const std::filesystem::path& out_dir, ModelRunner&) override {
    if (!sample_flow_.defined()) return {};
    const auto valid = valid_flow_mask(sample_truth_);
    const auto radius = torch::where(valid, sample_truth_.norm(2, -1), torch::zeros({}, torch::kFloat32)).max().item<double>();
    const auto gap = torch::full({sample_truth_.size(0), 4, 2}, NAN, torch::kFloat32);
    write_flow_png(out_dir / "flow_sample.png", torch::cat({sample_flow_, gap, sample_truth_}, 1), radius > 0 ? radius : 1.0);
    return {};
  }

  TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const std::filesystem::path& /*model_from*/) override {
    data_section(data, source_, data_options()).finish();
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
    if (!training && !sample_flow_.defined()) {
      // The model predicts flow / flow_scale (the loss's units).
      sample_flow_ = out.at("logits")[0].detach().to(torch::kCPU, torch::kFloat32) * flow_scale_;
      sample_truth_ = labels[0].detach().to(torch::kCPU, torch::kFloat32);
    }
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
    SourceSection s(node, source_, path);
    const auto pairs = datasets::find_source(datasets::flow_sources(), s, "flow")(s, config.train_size[0], config.train_size[1]);
    s.section().finish();
    return std::make_shared<datasets::FunctionDataset>(pairs.count, [pairs](int64_t i) {
      const auto p = pairs.sample(i);
      return Example{{"inputs", datasets::flow_model_input(p.frame1, p.frame2)[0]},
                     {"labels", p.flow},
                     {"frame1", p.frame1},
                     {"frame2", p.frame2}};
    });
  }

  std::string source_;
  double flow_scale_ = 20.0;
  bool farneback_ = true;
  int64_t train_query_pixels_ = 0;
  torch::Tensor sample_flow_, sample_truth_;  // the first evaluation pair: prediction and ground truth
};

std::unique_ptr<Task> make_optical_flow_task(TaskSection& options) { return std::make_unique<OpticalFlowTask>(options); }

}  // namespace

TaskInfo optical_flow_task_info() {
  return {make_optical_flow_task,
          "optical flow: end-point error against the zero-flow and Farneback baselines",
          {{"flow_scale", "float", "20.0", "the model predicts flow divided by this (the loss's units)"},
           {"farneback_baseline", "bool", "true", "also score OpenCV's Farneback flow on the evaluation pairs"},
           {"train_query_pixels", "int", "0",
            "training decodes a random subset of this many pixels per step; 0: every pixel (evaluation always does)"}},
          data_options(),
          "flow",
          {}};
}

}  // namespace perceiver::trainers
