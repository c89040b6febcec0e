#include "perceiver/export/export_trace.h"

#include <torch/csrc/jit/frontend/tracer.h>

#include <map>

namespace perceiver {
namespace {

// "perceiver::PerceiverLayerImpl" -> "PerceiverLayer", "torch::nn::LinearImpl" -> "Linear".
std::string class_name(const torch::nn::Module& module) {
  std::string name = module.name();
  const auto colon = name.rfind(':');
  if (colon != std::string::npos) name = name.substr(colon + 1);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name.empty() ? "Module" : name;
}

torch::jit::Module mirror(const torch::nn::Module& module, const std::shared_ptr<torch::jit::CompilationUnit>& unit,
                          std::map<std::string, int>& counts) {
  const auto name = class_name(module);
  torch::jit::Module out(c10::QualifiedName("__torch__.perceiver." + name + "_" + std::to_string(counts[name]++)),
                         unit);
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    if (p.value().defined()) out.register_parameter(p.key(), p.value(), /*is_buffer=*/false);
  for (const auto& b : module.named_buffers(/*recurse=*/false))
    if (b.value().defined()) out.register_buffer(b.key(), b.value());
  for (const auto& child : module.named_children())
    out.register_module(child.key(), mirror(*child.value(), unit, counts));
  return out;
}

}  // namespace

torch::jit::Module mirror_module(const torch::nn::Module& model) {
  std::map<std::string, int> counts;
  return mirror(model, std::make_shared<torch::jit::CompilationUnit>(), counts);
}

void add_traced_method(torch::jit::Module& module, const std::string& name, const std::vector<std::string>& arguments,
                       const std::vector<torch::Tensor>& examples, const TracedFunction& fn) {
  torch::NoGradGuard no_grad;
  torch::jit::Stack inputs(examples.begin(), examples.end());
  auto traced = [&fn](torch::jit::Stack stack) -> torch::jit::Stack {
    std::vector<torch::Tensor> tensors;
    for (const auto& v : stack) tensors.push_back(v.toTensor());
    return {fn(tensors)};
  };
  // strict = false: the output is a dict (HF's output names), whose keys do not depend on the inputs.
  auto state = torch::jit::tracer::trace(
                   std::move(inputs), traced, [](const torch::autograd::Variable&) { return std::string(); },
                   /*strict=*/false, /*force_outplace=*/false, &module, arguments)
                   .first;
  auto function = module._ivalue()->compilation_unit()->create_function(
      c10::QualifiedName(*module.type()->name(), name), state->graph);
  module.type()->addMethod(function);
}

}  // namespace perceiver
