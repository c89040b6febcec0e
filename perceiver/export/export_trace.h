// Tracing a C++ module into TorchScript (toolchain.md's route): a torch::jit::Module tree that
// mirrors the nn::Module tree and holds the very same parameter and buffer tensors, whose methods
// are graphs recorded by LibTorch's tracer.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace perceiver {

// One class per module instance, named __torch__.perceiver.<Class>_<n> in a fresh CompilationUnit;
// submodules, parameters and buffers keep the nn::Module names (HF's state-dict names).
torch::jit::Module mirror_module(const torch::nn::Module& model);

using TracedFunction = std::function<c10::Dict<std::string, torch::Tensor>(const std::vector<torch::Tensor>& inputs)>;

// Records fn(examples) (eval mode, no autograd) as method `name` of `module` with the given
// argument names. Every parameter fn reads must be one of the module's tensors.
void add_traced_method(torch::jit::Module& module, const std::string& name, const std::vector<std::string>& arguments,
                       const std::vector<torch::Tensor>& examples, const TracedFunction& fn);

}  // namespace perceiver
