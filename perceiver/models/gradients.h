// A forward with gradients, for checking a model's backward against a reference (HF's Python
// Perceiver): the gradients of J = sum over the named cotangents k of sum(output_k * cotangent_k),
// taken in eval mode (dropout off, batch norm on its running statistics).
#pragma once

#include <filesystem>

#include "perceiver/models/model.h"
#include "perceiver/models/runner.h"

namespace perceiver {

// The forward's outputs, then `grad.<parameter>` for every parameter (HF's names; zeros where J does
// not depend on it) and `grad.<input>` for every floating-point input, all on the CPU. Every
// cotangent must name an output of the same shape. The model is put in eval mode on options.device.
NamedTensors forward_with_gradients(PerceiverPreTrainedModel& model, const NamedTensors& inputs,
                                    const NamedTensors& cotangents, const RunnerOptions& options = {});

// The same for a model or checkpoint directory (an exported file has no parameters to differentiate).
NamedTensors infer_gradients(const std::filesystem::path& model, const NamedTensors& inputs,
                             const NamedTensors& cotangents, const RunnerOptions& options = {});

}  // namespace perceiver
