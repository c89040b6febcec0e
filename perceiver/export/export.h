// TorchScript export of every Perceiver head (`perceiver export`), and running such a file.
//
// The archive holds the traced module and, as extra files, config.json (id2label included),
// perceiver.json (architecture, the forward's inputs in order with their fixed and free
// dimensions, the output names), and tokenizer_config.json + special_tokens_map.json (text heads)
// or HF's preprocessor_config.json (image heads). Its `forward` takes HF's forward arguments
// positionally, checks every fixed dimension (a wrong shape is an error, never a silent wrong
// answer), and returns a Dict[str, Tensor] with the names `perceiver infer` writes.
#pragma once

#include <torch/script.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "perceiver/export/export_archive.h"
#include "perceiver/export/export_options.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/models/runner.h"

namespace perceiver {

// Traces `model` (eval mode, on options.device), checks the traced module against the eager model
// at another batch size and other free sizes, and writes `out`. Returns the manifest written.
nlohmann::json export_torchscript(PerceiverPreTrainedModelImpl& model, const std::filesystem::path& out,
                                  const ExportOptions& options = {});

// Loads a model or training-checkpoint directory and exports it, with the image settings the
// pipelines would use for it (preprocessor_config.json, the checkpoint's run file, or defaults).
nlohmann::json export_model_dir(const std::filesystem::path& dir, const std::filesystem::path& out,
                                const ExportOptions& options = {}, const io::LoadOptions& load = {});

// The steps of export_torchscript, for other layouts of the same module (export_triton.h).
//
// A traced export before it is written: the module, whose method `method` is the archive's
// checked, dict-returning forward; its manifest; the extra files (the manifest joins them on saving).
struct TracedExport {
  torch::jit::Module module;
  nlohmann::json manifest;
  std::map<std::string, std::string> extra_files;
};
TracedExport trace_export(PerceiverPreTrainedModelImpl& model, const ExportOptions& options,
                          const std::string& method = "forward");
// Writes the module with its extra files and manifest through a temporary file beside `out`, so
// that an interrupted export leaves no half-written file.
void save_export(const TracedExport& traced, const std::filesystem::path& out);
// A model or training-checkpoint directory loaded for export, and `options` completed with the
// image settings the pipelines would use for it (export_model_dir's).
struct ModelForExport {
  PerceiverPreTrainedModel model;
  ExportOptions options;
};
ModelForExport load_for_export(const std::filesystem::path& dir, const ExportOptions& options = {},
                               const io::LoadOptions& load = {});


// Runs a file written by `perceiver export` (its config and input names come from the archive's
// extra files). A file that is not such an archive is an error naming it.
std::unique_ptr<ModelRunner> open_exported(const std::filesystem::path& file, const RunnerOptions& options = {});

}  // namespace perceiver
