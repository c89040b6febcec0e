// `perceiver export --triton REPO`: an exported head laid out as one model of a Triton Inference
// Server model repository, for Triton's PyTorch backend (platform "pytorch_libtorch"):
//
//   REPO/NAME/config.pbtxt    ModelConfig: inputs, outputs, their types and dims, max_batch_size
//   REPO/NAME/perceiver.json  the export manifest, with a "triton" section naming both sides
//   REPO/NAME/1/model.pt      the TorchScript module (version 1)
//
// The module is export_torchscript's (its checked dict-returning forward kept as `forward_dict`)
// under a `forward` that Triton can call: Tensor arguments only, one per config input, returning a
// tuple in the manifest's output order. Checked against Triton's documentation and sources, not a
// running server:
// - server docs/user_guide/model_configuration.md, "Special Conventions for PyTorch Backend": input
//   names are the forward's argument names, outputs are `<name>__<index>` with the index into the
//   returned tuple; "Maximum Batch Size": max_batch_size > 0 only when every input and output has
//   the batch as its first dimension, which `dims` then leaves out; "Datatypes": TYPE_* per dtype.
// - pytorch_backend src/pt/model_instance_state.cc (ValidateInputs, SetInputTensors, Execute): every
//   forward argument must be a Tensor (Optional[Tensor] is refused at load) and the config lists
//   exactly as many inputs; the request's inputs fill the arguments, so one cannot be left out; the
//   result must be a Tensor or a tuple of them (a dict is refused).
// - common protobuf/model_config.proto: ModelInput has `optional` (field 8), but for the reason above
//   no input is optional here. An optional input given per example (attention_mask, batch first)
//   becomes required; one given per call (subsampled_output_points: no batch dimension, which would
//   rule out batching) is left out and takes its absent value (every output point).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "perceiver/export/export.h"

namespace perceiver {

struct TritonOptions {
  std::string name;  // the model's folder and config name, [A-Za-z0-9_-]; empty: export_triton_model_dir derives it
  // Triton's largest batch when the model batches (batch first in every input and output); 0 = no
  // batching (the batch then stays in `dims`, as -1).
  int32_t max_batch_size = 8;
};

// Triton's platform for a TorchScript model (config.pbtxt). The manifest's format tag, kTritonFormat,
// is in export_options.h.
inline constexpr const char* kTritonPlatform = "pytorch_libtorch";

// Traces `model` as export_torchscript does, checks the Triton forward against the eager model at
// two batch and free sizes (which also gives the outputs' dims), and writes REPO/NAME. Returns the
// manifest written. Throws, naming it, when triton.name is not a valid name.
nlohmann::json export_triton(PerceiverPreTrainedModelImpl& model, const std::filesystem::path& repo,
                             const TritonOptions& triton, const ExportOptions& options = {});

// Loads a model or training-checkpoint directory (as export_model_dir does) and exports it to
// REPO/NAME, NAME defaulting to triton_model_name(dir).
nlohmann::json export_triton_model_dir(const std::filesystem::path& dir, const std::filesystem::path& repo,
                                       const TritonOptions& triton = {}, const ExportOptions& options = {},
                                       const io::LoadOptions& load = {});

// The default name for a model directory: its folder's name (a checkpoint's step-N prefixed with
// its run's folder), every character outside [A-Za-z0-9_-] replaced by '_'.
std::string triton_model_name(const std::filesystem::path& dir);

}  // namespace perceiver
