// What an exported head's `forward` takes, per architecture: HF's forward arguments in order, the
// dimensions the model fixes and those left free (batch, sequence length, number of points), and
// the TorchScript `forward` that checks them before it calls the traced graph.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "perceiver/models/model.h"

namespace perceiver {

struct ExportOptions;

// One dimension of an input: fixed (size >= 0) or free within [1, max] (max < 0: unbounded). Free
// dimensions with the same name (batch, seq_len) must agree across the inputs.
struct ExportDim {
  std::string name;
  int64_t size = -1;
  int64_t max = -1;
  bool free() const { return size < 0; }
};

struct ExportInput {
  enum class Values { real, indices, mask };
  std::string name;                  // HF's name: inputs, attention_mask, inputs.<m>, subsampled_output_points[.<m>]
  std::string argument;              // the forward's argument (a TorchScript identifier)
  std::vector<std::string> aliases;  // other names HF's forward accepts (input_ids, pixel_values)
  std::vector<ExportDim> dims;
  Values values = Values::real;  // real: floating point; indices: integers in [0, bound); mask: any number
  int64_t bound = 0;
  bool optional = false;
  // TorchScript for a missing optional input; empty = a separate traced method without it.
  std::string default_value;
};

struct ExportSignature {
  std::vector<ExportInput> inputs;  // the forward's positional arguments, required ones first
  // Image heads: the (height, width) the export fixes; ships HF's preprocessor_config.json at that size.
  std::optional<std::pair<int64_t, int64_t>> image_size;
  bool takes_text = false;  // ships the tokenizer settings
  std::string fixed;        // the dimensions the export fixes, in words
};

// A traced method: its name and the indices (into ExportSignature::inputs) of its arguments.
struct TracedMethod {
  std::string name;
  std::vector<size_t> arguments;
};

using SignatureBuilder =
    std::function<ExportSignature(const PerceiverPreTrainedModelImpl& model, const ExportOptions& options)>;

// Every architecture `perceiver export` handles, by HF class name.
const std::map<std::string, SignatureBuilder>& export_signatures();
// The signature of `model`; throws naming the architecture (and the supported ones) when there is none.
ExportSignature export_signature(const PerceiverPreTrainedModelImpl& model, const ExportOptions& options);

// The methods to trace: one with every argument, and one without each optional input that has no default.
std::vector<TracedMethod> traced_methods(const ExportSignature& signature);
// Example inputs on `device` (CPU generator `seed`): `batch` for the batch, the free dimensions
// min(free_size, max), every traced argument present.
std::vector<torch::Tensor> example_inputs(const ExportSignature& signature, int64_t batch, int64_t free_size,
                                          const torch::Device& device, uint64_t seed);
// The TorchScript source of `forward` (or of the method `name`): checks every input (messages start
// with `who`), fills defaults, calls the traced method that fits and returns its Dict[str, Tensor].
std::string forward_source(const ExportSignature& signature, const std::vector<TracedMethod>& methods,
                           const std::string& who, const std::string& name = "forward");
// The inputs and their free dimensions as perceiver.json lists them.
nlohmann::json signature_json(const ExportSignature& signature);

}  // namespace perceiver
