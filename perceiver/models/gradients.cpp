#include "perceiver/models/gradients.h"

#include <stdexcept>
#include <vector>

#include "perceiver/runtime/device.h"
#include "perceiver/models/model_dir.h"

namespace perceiver {
namespace {

torch::Tensor objective(const NamedTensors& outputs, const NamedTensors& cotangents) {
  TORCH_CHECK(!cotangents.empty(), "no cotangents given: name at least one output");
  torch::Tensor total;
  for (const auto& [name, cotangent] : cotangents) {
    const auto it = outputs.find(name);
    if (it == outputs.end()) {
      std::string names;
      for (const auto& [n, t] : outputs) names += (names.empty() ? "" : ", ") + n;
      throw std::invalid_argument("cotangent '" + name + "' names no output of this forward (outputs: " + names + ")");
    }
    const auto& output = it->second;
    TORCH_CHECK(output.sizes() == cotangent.sizes(), "cotangent '", name, "' has shape ", cotangent.sizes(),
                ", the output has ", output.sizes());
    TORCH_CHECK(output.is_floating_point(), "cotangent '", name, "': the output is not floating point");
    const auto term = (output.to(torch::kFloat32) * cotangent.to(output.device(), torch::kFloat32)).sum();
    total = total.defined() ? total + term : term;
  }
  return total;
}

}  // namespace

NamedTensors forward_with_gradients(PerceiverPreTrainedModel& model, const NamedTensors& inputs,
                                    const NamedTensors& cotangents, const RunnerOptions& options) {
  model->eval();
  model->to(options.device);
  const torch::AutoGradMode grad(true);

  // Leaves for the floating-point inputs, so that their gradients come back too.
  NamedTensors leaves = device::to(inputs, options.device);
  std::vector<std::string> input_names;
  std::vector<torch::Tensor> wrt;
  for (auto& [name, t] : leaves)
    if (t.is_floating_point()) {
      t = t.detach().clone().requires_grad_(true);
      input_names.push_back(name);
      wrt.push_back(t);
    }
  const auto parameters = model->named_parameters(/*recurse=*/true);
  for (const auto& p : parameters) wrt.push_back(p.value());

  NamedTensors outputs;
  {
    const device::AutocastGuard autocast(options.device, options.precision);
    outputs = model->forward_named(leaves, options.forward);
  }
  const auto grads = torch::autograd::grad({objective(outputs, cotangents)}, wrt, /*grad_outputs=*/{},
                                           /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);

  NamedTensors result;
  for (const auto& [name, t] : outputs) result[name] = t.detach().to(torch::kCPU).contiguous();
  const auto store = [&](const std::string& name, const torch::Tensor& g, const torch::Tensor& like) {
    result["grad." + name] = (g.defined() ? g.detach() : torch::zeros_like(like)).to(torch::kCPU).contiguous();
  };
  size_t i = 0;
  for (const auto& name : input_names) store(name, grads[i], wrt[i]), ++i;
  for (const auto& p : parameters) store(p.key(), grads[i], wrt[i]), ++i;
  return result;
}

NamedTensors infer_gradients(const std::filesystem::path& model, const NamedTensors& inputs,
                             const NamedTensors& cotangents, const RunnerOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model, ec))
    throw std::invalid_argument(model.string() +
                                ": gradients need a model or checkpoint directory (an exported file has no parameters "
                                "to differentiate)");
  auto loaded = io::load_pretrained(model, options.load);
  return forward_with_gradients(loaded, inputs, cotangents, options);
}

}  // namespace perceiver
