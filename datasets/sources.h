// Data sources by their run-file `type` name, one registry per kind of data a task reads. A source
// is a function of its options section; adding one is that function and one registration line (its
// help and its declared keys) in its kind's file (text_corpus.cpp, labelled_text.cpp, token_labels.cpp,
// images.cpp, flow.cpp, multimodal.cpp). The names a run file may use, the keys each accepts with their
// defaults, and the errors listing them are read from the registries.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/flow.h"
#include "datasets/images.h"
#include "datasets/labelled_text_index.h"
#include "datasets/multimodal.h"
#include "datasets/option_spec.h"
#include "datasets/text_stream.h"
#include "datasets/token_labels.h"

namespace perceiver::datasets {

// One source's options section. The trainer implements it over the run file (typed values,
// file:line errors, unknown keys refused); a C++ program can implement it over anything. `type` (the
// source's name) is always readable; find_source declares the chosen source's other keys.
class SourceOptions {
 public:
  virtual ~SourceOptions() = default;
  // Values of the declared keys: the run file's, else the declared default. Reading a key that is not
  // declared, or an absent key without a declared default, is a programming error (std::logic_error).
  virtual std::string get_string(const std::string& key) = 0;
  virtual int64_t get_int(const std::string& key) = 0;
  virtual double get_double(const std::string& key) = 0;
  virtual bool get_bool(const std::string& key) = 0;
  virtual std::vector<double> get_doubles(const std::string& key) = 0;
  virtual bool has(const std::string& key) = 0;  // present and not null: for defaults that depend on other settings
  virtual std::string required(const std::string& key) = 0;
  [[noreturn]] virtual void fail(const std::string& key, const std::string& what) const = 0;
  // Where the section is ("data.train", "data.eval"): defaults such as the split follow it.
  virtual const std::string& path() const = 0;
  virtual void declare(const OptionSpecs& specs) = 0;  // the chosen source's keys (find_source calls it)
  bool is_train() const { return path() == "data.train"; }
};

// A source: its factory, one line on what it reads, and its keys besides `type`.
template <typename Factory>
struct Source {
  Factory make;
  std::string help;     // one line: what this source reads
  OptionSpecs options;  // its keys besides `type`
};

template <typename Factory>
using SourceRegistry = std::map<std::string, Source<Factory>>;

template <typename Factory>
std::vector<std::string> source_names(const SourceRegistry<Factory>& registry) {
  std::vector<std::string> names;
  for (const auto& [name, source] : registry) names.push_back(name);
  return names;
}

// The factory named by the section's `type`, its keys declared to `options`; an unknown name fails
// listing the known ones.
template <typename Factory>
Factory find_source(const SourceRegistry<Factory>& registry, SourceOptions& options, const std::string& kind) {
  const auto type = options.required("type");
  const auto it = registry.find(type);
  if (it == registry.end()) {
    std::string known;
    for (const auto& name : source_names(registry)) known += (known.empty() ? "" : ", ") + name;
    options.fail("type", "unknown " + kind + " source '" + type + "' (known: " + known + ")");
  }
  options.declare(it->second.options);
  return it->second.make;
}

// Every source of one kind with its declarations, for the schema, --help-config and the docs.
struct SourceInfo {
  std::string name, help;
  OptionSpecs options;
};
struct SourceKind {
  std::string name;  // as find_source's `kind`: "text", "labelled-text", "token-labels", "image", "flow", "clip"
  std::vector<SourceInfo> sources;
};
// Every kind compiled into this build (image, flow and clip need OpenCV).
std::vector<SourceKind> source_kinds();

// Text for masked language modelling as one byte stream, its documents joined by `separator`: kjv (in
// memory), text and jsonl (indexed on disk, read on demand).
using TextSource = std::shared_ptr<const TextStream> (*)(SourceOptions& options, const std::string& separator);
const SourceRegistry<TextSource>& text_sources();

// Labelled texts for sequence classification: fortunes (in memory), labelled_text (read row by row).
// `label_separator` joins a JSONL label list into one label field (the task's multi-label separator).
using LabelledTextSource = LabelledTexts (*)(SourceOptions& options, const std::string& label_separator);
const SourceRegistry<LabelledTextSource>& labelled_text_sources();

// Texts with a label per byte for token classification (datasets/token_labels.h): jsonl (character
// spans), conll (a token per line), langseg (code-switched fortunes, generated). Label ids index the
// set's label_names: "O", then the B-/I- tags sorted.
using TokenLabelSource = TokenLabelSet (*)(SourceOptions& options);
const SourceRegistry<TokenLabelSource>& token_label_sources();

// Labelled images, read as the loader asks for them: fashion_mnist (in memory), idx, image_folder,
// image_list, image_shards. `decode` carries the model's image processor when fine-tuning a checkpoint
// that has a preprocessor_config.json.
using ImageSource = ImageSet (*)(SourceOptions& options, const ImageFolderOptions& decode);
const SourceRegistry<ImageSource>& image_sources();

// Optical-flow pairs at the model's train_size: synthetic, sintel, chairs.
struct FlowPairs {
  int64_t count = 0;
  std::function<FlowSample(int64_t)> sample;  // pair i, frames and flow of (height, width)
};
using FlowSource = FlowPairs (*)(SourceOptions& options, int64_t height, int64_t width);
const SourceRegistry<FlowSource>& flow_sources();

// Video + audio + label clips shaped for the multimodal autoencoder (ClipShape): synthetic, files.
struct Clips {
  int64_t count = 0;
  std::function<MultimodalBatch(int64_t)> clip;  // clip i as a batch of one
};
using ClipSource = Clips (*)(SourceOptions& options, const ClipShape& shape);
const SourceRegistry<ClipSource>& clip_sources();

}  // namespace perceiver::datasets
