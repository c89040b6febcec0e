#include "perceiver/models/runner.h"

#include <c10/core/InferenceMode.h>

#include <stdexcept>

#include "perceiver/models/model_dir.h"

namespace perceiver {
namespace {

class EagerRunner final : public ModelRunner {
 public:
  EagerRunner(PerceiverPreTrainedModel model, std::filesystem::path source, const RunnerOptions& options)
      : model_(std::move(model)), source_(std::move(source)), options_(options) {
    model_->eval();
    model_->to(options_.device);
  }
  const PerceiverConfig& config() const override { return model_->config(); }
  std::string architecture() const override { return model_->architecture(); }
  const std::filesystem::path& source() const override { return source_; }

  NamedTensors forward(const NamedTensors& inputs) override {
    c10::InferenceMode inference;
    const auto on_device = device::to(inputs, options_.device);
    NamedTensors outputs;
    {
      const device::AutocastGuard autocast(options_.device, options_.precision);
      outputs = model_->forward_named(on_device, options_.forward);
    }
    for (auto& [name, t] : outputs) t = t.to(torch::kCPU).contiguous();
    return outputs;
  }

 private:
  PerceiverPreTrainedModel model_;
  std::filesystem::path source_;
  RunnerOptions options_;
};

}  // namespace

std::unique_ptr<ModelRunner> eager_runner(PerceiverPreTrainedModel model, std::filesystem::path source,
                                          const RunnerOptions& options) {
  return std::make_unique<EagerRunner>(std::move(model), std::move(source), options);
}

}  // namespace perceiver
