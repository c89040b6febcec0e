#include "perceiver/export/export_signature.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "perceiver/export/export_options.h"
#include "perceiver/models/preprocessors.h"

namespace perceiver {
namespace {

using Values = ExportInput::Values;

ExportDim batch() { return {"batch"}; }
ExportDim fixed(const char* name, int64_t size) { return {name, size}; }
ExportDim up_to(const char* name, int64_t max) { return {name, -1, max}; }

// HF's optional attention_mask over (batch, seq_len); absent = every position.
ExportInput attention_mask(const ExportDim& seq) {
  ExportInput mask{"attention_mask", "attention_mask", {}, {batch(), seq}, Values::mask};
  mask.optional = true;
  mask.default_value = "torch.ones([inputs.size(0), inputs.size(1)], device=inputs.device)";
  return mask;
}

// input_ids + attention_mask of the text heads: any length up to max_position_embeddings (the
// learned input positions), HF's byte ids.
std::vector<ExportInput> text_inputs(const PerceiverConfig& config) {
  const auto seq = up_to("seq_len", config.max_position_embeddings);
  return {{"inputs", "inputs", {"input_ids"}, {batch(), seq}, Values::indices, config.vocab_size}, attention_mask(seq)};
}

ExportSignature text_head(const PerceiverPreTrainedModelImpl& model, const ExportOptions&) {
  ExportSignature s;
  s.inputs = text_inputs(model.config());
  s.takes_text = true;
  s.fixed = "inputs (batch, seq_len) with 1 <= seq_len <= max_position_embeddings = " +
            std::to_string(model.config().max_position_embeddings) +
            " (shorter inputs are allowed, as in the eager model; pad with attention_mask 0)";
  return s;
}

// PerceiverModel as the fixtures compose it: a text preprocessor, or none (float embeddings of
// d_model channels, any length); any decoder and postprocessor that trace shape-agnostically
// (export_torchscript checks the traced module against the eager one).
ExportSignature perceiver_model(const PerceiverPreTrainedModelImpl& model, const ExportOptions& options) {
  const auto* bare = dynamic_cast<const PerceiverModelImpl*>(&model);
  if (bare == nullptr) throw std::invalid_argument("PerceiverModel export: the model is not a PerceiverModel");
  const auto& pre = bare->input_preprocessor();
  if (pre && dynamic_cast<const PerceiverTextPreprocessorImpl*>(pre.get()) != nullptr) return text_head(model, options);
  if (pre)
    throw std::invalid_argument(
        "PerceiverModel export supports a PerceiverTextPreprocessor or no input preprocessor; "
        "this composition has " +
        pre->name() + " (export the matching PerceiverFor* head)");
  const auto& c = model.config();
  ExportSignature s;
  const ExportDim seq{"seq_len"};
  s.inputs = {{"inputs", "inputs", {}, {batch(), seq, fixed("d_model", c.d_model)}}, attention_mask(seq)};
  s.fixed = "inputs (batch, seq_len, d_model = " + std::to_string(c.d_model) + "), any seq_len";
  return s;
}

// The exported image size: the learned head's is config.image_size (its position embeddings);
// Fourier and conv heads take options' size, else the image processor's, else config.image_size.
std::pair<int64_t, int64_t> image_size(const PerceiverPreTrainedModelImpl& model, const ExportOptions& options,
                                       bool learned) {
  const int64_t side = model.config().image_size;
  const bool asked = options.image_height > 0 && options.image_width > 0;
  if (learned) {
    if (asked && (options.image_height != side || options.image_width != side))
      throw std::invalid_argument(model.architecture() +
                                  " export: the input size is fixed by the learned position "
                                  "embeddings (config.image_size = " +
                                  std::to_string(side) + "); leave the image size unset");
    return {side, side};
  }
  if (asked) return {options.image_height, options.image_width};
  const auto& size = options.preprocessor_config.is_object()
                         ? options.preprocessor_config.value("size", nlohmann::json())
                         : nlohmann::json();
  if (size.is_object() && size.value("height", 0) > 0 && size.value("width", 0) > 0)
    return {size["height"].get<int64_t>(), size["width"].get<int64_t>()};
  return {side, side};
}

ExportSignature image_head(const PerceiverPreTrainedModelImpl& model, const ExportOptions& options, bool learned) {
  const auto [h, w] = image_size(model, options, learned);
  ExportSignature s;
  s.inputs = {
      {"inputs", "inputs", {"pixel_values"}, {batch(), fixed("channels", 3), fixed("height", h), fixed("width", w)}}};
  s.image_size = {h, w};
  s.fixed = "inputs (batch, 3, " + std::to_string(h) + ", " + std::to_string(w) + ")" +
            (learned ? " = config.image_size (the learned position embeddings)"
                     : " (chosen at export: --image-size, else the image processor's size)");
  return s;
}

ExportSignature optical_flow(const PerceiverPreTrainedModelImpl& model, const ExportOptions&) {
  const auto& size = model.config().train_size;
  const int64_t pixels = size[0] * size[1];
  ExportSignature s;
  s.inputs = {
      {"inputs",
       "inputs",
       {},
       {batch(), fixed("frames", 2), fixed("patch_features", 27), fixed("height", size[0]), fixed("width", size[1])}}};
  ExportInput points{"subsampled_output_points",
                     "subsampled_output_points",
                     {},
                     {up_to("points", pixels - 1)},
                     Values::indices,
                     pixels};
  points.optional = true;  // absent: every pixel, logits (batch, height, width, 2)
  s.inputs.push_back(points);
  s.fixed = "inputs (batch, 2, 27, " + std::to_string(size[0]) + ", " + std::to_string(size[1]) +
            ") = config.train_size; subsampled_output_points: 1 to " + std::to_string(pixels - 1) +
            " flat pixel indices (logits (batch, points, 2)), or none for the full grid";
  return s;
}

ExportSignature multimodal(const PerceiverPreTrainedModelImpl& model, const ExportOptions&) {
  const auto& c = model.config();
  const int64_t samples = c.num_frames * c.audio_samples_per_frame, patches = samples / c.samples_per_patch;
  const int64_t pixels = c.output_shape[1] * c.output_shape[2] * c.output_shape[3];
  ExportSignature s;
  s.inputs = {{"inputs.audio", "inputs_audio", {}, {batch(), fixed("samples", samples), fixed("channels", 1)}},
              {"inputs.image",
               "inputs_image",
               {},
               {batch(), fixed("frames", c.num_frames), fixed("channels", 3), fixed("height", c.image_size),
                fixed("width", c.image_size)}},
              {"inputs.label", "inputs_label", {}, {batch(), fixed("num_labels", c.num_labels())}}};
  for (const auto& [modality, count] : {std::pair<std::string, int64_t>{"audio", patches}, {"image", pixels}}) {
    ExportInput points{"subsampled_output_points." + modality,
                       "subsampled_output_points_" + modality,
                       {},
                       {up_to(modality == "audio" ? "audio_points" : "image_points", count)},
                       Values::indices,
                       count};
    points.optional = true;
    points.default_value = "torch.arange(" + std::to_string(count) + ", device=inputs_audio.device)";
    s.inputs.push_back(points);
  }
  s.fixed = "inputs.audio (batch, num_frames * audio_samples_per_frame = " + std::to_string(samples) +
            ", 1), inputs.image (batch, num_frames = " + std::to_string(c.num_frames) +
            ", 3, image_size = " + std::to_string(c.image_size) + ", " + std::to_string(c.image_size) +
            "), inputs.label (batch, " + std::to_string(c.num_labels()) + "); subsampled_output_points.audio: 1 to " +
            std::to_string(patches) + " audio patch indices, .image: 1 to " + std::to_string(pixels) +
            " indices into output_shape's (frames, height, width) grid; absent: all of them";
  return s;
}

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string shape_text(const ExportInput& input) {
  std::string out = "(";
  for (size_t i = 0; i < input.dims.size(); ++i) {
    const auto& d = input.dims[i];
    out += (i ? ", " : "") +
           (d.free() ? d.name + (d.max > 0 ? " <= " + std::to_string(d.max) : "") : std::to_string(d.size));
  }
  return out + ")";
}

// Where a free dimension was first seen: the input's HF name, its variable and the dimension.
struct FirstSeen {
  std::string name, var;
  size_t dim = 0;
};

// The TorchScript checks of one input held in variable `var`; `first` records where each free
// dimension was first seen, so that later inputs must agree with it.
void emit_checks(std::ostringstream& s, const ExportInput& in, const std::string& var, const std::string& prefix,
                 std::map<std::string, FirstSeen>& first) {
  const std::string who = prefix + " + " + quoted("`" + in.name + "` ");
  // dtypes are plain ints in TorchScript compiled from C++ (no torch.int64 names to compare with).
  if (in.values == Values::real)
    s << "    assert " << var << ".is_floating_point(), " << who << " + " << quoted("must be a floating-point tensor")
      << "\n";
  if (in.values == Values::indices) {
    s << "    assert " << var << ".dtype in [";
    for (const auto t : {torch::kUInt8, torch::kInt8, torch::kInt16, torch::kInt32, torch::kInt64})
      s << static_cast<int>(t) << (t == torch::kInt64 ? "" : ", ");
    s << "], " << who << " + " << quoted("must hold integer indices (uint8, int8, int16, int32 or int64)") << "\n";
  }
  s << "    assert " << var << ".dim() == " << in.dims.size();
  for (size_t i = 0; i < in.dims.size(); ++i) {
    const auto& d = in.dims[i];
    if (!d.free()) s << " and " << var << ".size(" << i << ") == " << d.size;
    if (d.free()) s << " and " << var << ".size(" << i << ") >= 1";
    if (d.free() && d.max > 0) s << " and " << var << ".size(" << i << ") <= " << d.max;
  }
  s << ", " << who << " + " << quoted("must have shape " + shape_text(in) + ", got ") << " + str(" << var
    << ".shape)\n";
  for (size_t i = 0; i < in.dims.size(); ++i) {
    const auto& d = in.dims[i];
    if (!d.free()) continue;
    const auto seen = first.find(d.name);
    if (seen == first.end()) {
      first[d.name] = {in.name, var, i};
      continue;
    }
    const auto& other = seen->second;
    const auto theirs = other.var + ".size(" + std::to_string(other.dim) + ")";
    s << "    assert " << var << ".size(" << i << ") == " << theirs << ", " << who << " + "
      << quoted("has " + d.name + " ") << " + str(" << var << ".size(" << i << ")) + "
      << quoted(" but `" + other.name + "` has ") << " + str(" << theirs << ")\n";
  }
  if (in.values == Values::indices)
    s << "    assert int(" << var << ".min()) >= 0 and int(" << var << ".max()) < " << in.bound << ", " << who << " + "
      << quoted("must lie in [0, " + std::to_string(in.bound) + "), got values from ") << " + str(int(" << var
      << ".min())) + " << quoted(" to ") << " + str(int(" << var << ".max()))\n";
}

std::string call(const TracedMethod& method, const std::vector<std::string>& vars) {
  std::string out = "self." + method.name + "(";
  for (size_t i = 0; i < method.arguments.size(); ++i) out += (i ? ", " : "") + vars[method.arguments[i]];
  return out + ")";
}

}  // namespace

const std::map<std::string, SignatureBuilder>& export_signatures() {
  static const std::map<std::string, SignatureBuilder> registry = {
      {"PerceiverModel", perceiver_model},
      {"PerceiverForMaskedLM", text_head},
      {"PerceiverForSequenceClassification", text_head},
      {"PerceiverForTokenClassification", text_head},
      {"PerceiverForImageClassificationLearned",
       [](const PerceiverPreTrainedModelImpl& m, const ExportOptions& o) { return image_head(m, o, true); }},
      {"PerceiverForImageClassificationFourier",
       [](const PerceiverPreTrainedModelImpl& m, const ExportOptions& o) { return image_head(m, o, false); }},
      {"PerceiverForImageClassificationConvProcessing",
       [](const PerceiverPreTrainedModelImpl& m, const ExportOptions& o) { return image_head(m, o, false); }},
      {"PerceiverForOpticalFlow", optical_flow},
      {"PerceiverForMultimodalAutoencoding", multimodal},
  };
  return registry;
}

ExportSignature export_signature(const PerceiverPreTrainedModelImpl& model, const ExportOptions& options) {
  const auto& registry = export_signatures();
  const auto it = registry.find(model.architecture());
  if (it == registry.end()) {
    std::string known;
    for (const auto& [name, builder] : registry) known += (known.empty() ? "" : ", ") + name;
    throw std::invalid_argument("cannot export " + model.architecture() + " (exportable: " + known + ")");
  }
  return it->second(model, options);
}

std::vector<TracedMethod> traced_methods(const ExportSignature& signature) {
  TracedMethod all{"traced_forward", {}};
  std::vector<TracedMethod> methods;
  for (size_t i = 0; i < signature.inputs.size(); ++i) {
    all.arguments.push_back(i);
    const auto& in = signature.inputs[i];
    if (!in.optional || !in.default_value.empty()) continue;
    TracedMethod without{"traced_forward_without_" + in.argument, {}};
    for (size_t j = 0; j < signature.inputs.size(); ++j)
      if (j != i) without.arguments.push_back(j);
    methods.push_back(without);
  }
  TORCH_CHECK(methods.size() <= 1, "export: at most one optional input without a default is supported");
  methods.insert(methods.begin(), all);
  return methods;
}

std::vector<torch::Tensor> example_inputs(const ExportSignature& signature, int64_t batch_size, int64_t free_size,
                                          const torch::Device& device, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<torch::Tensor> out;
  for (const auto& in : signature.inputs) {
    std::vector<int64_t> shape;
    for (const auto& d : in.dims)
      shape.push_back(!d.free()           ? d.size
                      : d.name == "batch" ? batch_size
                      : d.max > 0         ? std::min(free_size, d.max)
                                          : free_size);
    torch::Tensor t;
    if (in.values == Values::real) {
      t = torch::randn(shape, generator);
    } else if (in.values == Values::mask) {
      t = torch::ones(shape, torch::kLong);
      if (shape.back() > 1) t[0][shape.back() - 1] = 0;  // exercise the masking
    } else if (shape.size() == 1) {                      // point indices: distinct, as HF subsamples them
      t = torch::randperm(in.bound, generator, torch::kLong).narrow(0, 0, shape[0]);
    } else {
      t = torch::randint(0, in.bound, shape, generator, torch::kLong);
    }
    out.push_back(t.to(device));
  }
  return out;
}

std::string forward_source(const ExportSignature& signature, const std::vector<TracedMethod>& methods,
                           const std::string& who, const std::string& name) {
  std::ostringstream s;
  s << "def " << name << "(self";
  for (const auto& in : signature.inputs)
    s << ", " << in.argument << (in.optional ? ": Optional[Tensor] = None" : ": Tensor");
  s << ") -> Dict[str, Tensor]:\n";
  const std::string prefix = quoted(who + ": ");
  std::map<std::string, FirstSeen> first;
  std::vector<std::string> vars;
  const ExportInput* variant = nullptr;
  for (const auto& in : signature.inputs) {
    std::string var = in.argument;
    if (in.optional && in.default_value.empty()) {
      variant = &in;
    } else if (in.optional) {
      var = in.argument + "_";
      s << "    " << var << " = " << in.default_value << " if " << in.argument << " is None else " << in.argument
        << "\n";
    }
    vars.push_back(var);
    if (variant != &in) emit_checks(s, in, var, prefix, first);
  }
  if (variant != nullptr) {
    s << "    if " << variant->argument << " is None:\n        return " << call(methods.at(1), vars) << "\n";
    emit_checks(s, *variant, variant->argument, prefix, first);
  }
  s << "    return " << call(methods.front(), vars) << "\n";
  return s.str();
}

nlohmann::json signature_json(const ExportSignature& signature) {
  nlohmann::json inputs = nlohmann::json::array(), dims = nlohmann::json::object();
  for (const auto& in : signature.inputs) {
    nlohmann::json shape = nlohmann::json::array();
    for (const auto& d : in.dims) {
      shape.push_back(d.free() ? nlohmann::json(d.name) : nlohmann::json(d.size));
      if (d.free()) dims[d.name] = d.max > 0 ? nlohmann::json{{"min", 1}, {"max", d.max}} : nlohmann::json{{"min", 1}};
    }
    nlohmann::json entry = {{"name", in.name},
                            {"argument", in.argument},
                            {"shape", shape},
                            {"dtype", in.values == Values::real      ? "float"
                                      : in.values == Values::indices ? "integer"
                                                                     : "any"},
                            {"optional", in.optional}};
    if (!in.aliases.empty()) entry["aliases"] = in.aliases;
    if (in.values == Values::indices) entry["values"] = {{"min", 0}, {"max", in.bound - 1}};
    if (in.optional)
      entry["when_absent"] = in.default_value.empty() ? "traced_forward_without_" + in.argument : in.default_value;
    inputs.push_back(entry);
  }
  return {{"inputs", inputs}, {"dims", dims}, {"fixed", signature.fixed}};
}

}  // namespace perceiver
