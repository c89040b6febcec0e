// Model cards: the README.md of a checkpoint or an export, with the Hugging Face Hub's YAML front
// matter (library_name, tags, pipeline_tag, datasets, metrics, and model-index with the latest
// evaluation's results) and a body that says how the model was trained and how to use it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct ModelCard {
  std::string name;          // the model's name in model-index (the run folder's name)
  std::string architecture;  // HF class name
  std::string task;          // the run file's task (mlm, sequence_classification, ...)
  std::vector<std::string> datasets;  // what it was trained on
  std::string eval_dataset, eval_split;
  int64_t eval_step = -1;              // the evaluation the results are from; -1: none yet
  std::map<std::string, double> eval;  // metric name (no "eval/" prefix) -> value
  int64_t steps = 0;
  double train_seconds = 0;  // training time over every session of the run (resumes included)
  std::string hardware;      // CPU model and threads, or the GPU
  std::string precision;
  std::string from;      // the checkpoint it was fine-tuned from ("" = trained from scratch)
  std::string run_file;  // the effective run file (YAML)
};

// The Hub pipeline tag of a head ("fill-mask", "text-classification", "image-classification"), or ""
// where the Hub has none that fits (optical flow, multimodal autoencoding, the bare PerceiverModel).
std::string hub_pipeline_tag(const std::string& architecture);

// The README.md text of a checkpoint folder.
std::string render_model_card(const ModelCard& card);

// The card of an exported file (`perceiver export`), written to `card`: the source folder's own card
// (a training checkpoint's) with a section on the TorchScript file, else one made from its config.json.
void write_export_model_card(const std::filesystem::path& source_dir, const std::filesystem::path& exported_file,
                             const std::filesystem::path& card);

// The YAML front matter of a card (the text between the leading "---" lines); throws naming `file`
// when there is none.
std::string model_card_front_matter(const std::string& card_text, const std::string& file);

}  // namespace perceiver::trainers
