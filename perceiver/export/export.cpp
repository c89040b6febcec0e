#include "perceiver/export/export.h"

#include <ATen/Context.h>

#include <stdexcept>

#include "perceiver/export/export_signature.h"
#include "perceiver/export/export_trace.h"
#include "perceiver/io/json_io.h"
#include "perceiver/processing/tokenizer.h"
#if PERCEIVER_WITH_OPENCV
#include "perceiver/processing/image_processor.h"
#include "perceiver/export/input_settings.h"
#endif

namespace perceiver {
namespace {

namespace fs = std::filesystem;

// Trace and check sizes: the check runs at another batch size and other free sizes than the trace,
// so that any size the trace froze shows up as a difference or an error.
constexpr int64_t kTraceBatch = 2, kTraceFree = 5, kCheckBatch = 1, kCheckFree = 3;

// The eager model on a method's arguments (HF names), as `perceiver infer` runs it.
NamedTensors run_eager(PerceiverPreTrainedModelImpl& model, const ExportSignature& signature,
                       const TracedMethod& method, const std::vector<torch::Tensor>& args) {
  NamedTensors named;
  for (size_t i = 0; i < method.arguments.size(); ++i) named[signature.inputs[method.arguments[i]].name] = args[i];
  return model.forward_named(named, {});
}

std::vector<torch::Tensor> method_args(const TracedMethod& method, const std::vector<torch::Tensor>& all) {
  std::vector<torch::Tensor> args;
  for (const auto i : method.arguments) args.push_back(all[i]);
  return args;
}

// Runs the module's method `forward` for each traced method's inputs (the others None) and compares
// with the eager model under the same random state (a masking preprocessor draws from it). Returns
// the output names of the first method.
std::vector<std::string> check_against_eager(torch::jit::Module& module, const std::string& forward,
                                             PerceiverPreTrainedModelImpl& model, const ExportSignature& signature,
                                             const std::vector<TracedMethod>& methods, const torch::Device& device,
                                             const std::string& who) {
  torch::NoGradGuard no_grad;
  const auto inputs = example_inputs(signature, kCheckBatch, kCheckFree, device, /*seed=*/1);
  auto generator = at::globalContext().defaultGenerator(device);
  std::vector<std::string> names;
  for (const auto& method : methods) {
    const auto state = generator.get_state();
    const auto eager = run_eager(model, signature, method, method_args(method, inputs));
    generator.set_state(state);
    std::vector<c10::IValue> args(signature.inputs.size());
    for (const auto i : method.arguments) args[i] = inputs[i];
    auto fail = [&](const std::string& what) {
      throw std::runtime_error(who + ": the traced module disagrees with the eager model at batch size " +
                               std::to_string(kCheckBatch) + " (" + method.name + "): " + what +
                               "; this model does not trace shape-agnostically, please report it");
    };
    c10::impl::GenericDict traced(c10::StringType::get(), c10::TensorType::get());
    try {
      traced = module.get_method(forward)(args).toGenericDict();
    } catch (const std::exception& e) {
      fail(std::string("it fails (") + excerpt(e.what(), 300) + ")");
    }
    if (static_cast<size_t>(traced.size()) != eager.size()) fail("it returns other outputs");
    for (const auto& [name, want] : eager) {
      if (!traced.contains(name)) fail("no output `" + name + "`");
      const auto got = traced.at(name).toTensor();
      if (got.sizes() != want.sizes()) fail("`" + name + "` has another shape");
      if (!torch::allclose(got, want, 1e-4, 1e-5))
        fail("`" + name + "` differs by up to " + std::to_string((got - want).abs().max().item<double>()));
      if (&method == &methods.front()) names.push_back(name);
    }
  }
  return names;
}

// HF's tokenizer_config.json and special_tokens_map.json for PerceiverTokenizer.
std::map<std::string, std::string> tokenizer_files(const PerceiverConfig& config) {
  nlohmann::json special = nlohmann::json::object();
  for (const auto& token : PerceiverTokenizer::special_tokens())
    special[std::string(token.name) + "_token"] = token.content;
  nlohmann::json tokenizer = special;
  tokenizer["tokenizer_class"] = "PerceiverTokenizer";
  tokenizer["model_max_length"] = config.max_position_embeddings;  // what the exported module accepts
  tokenizer["model_input_names"] = PerceiverTokenizer::model_input_names();
  tokenizer["padding_side"] = "right";
  return {{"tokenizer_config.json", tokenizer.dump(2)}, {"special_tokens_map.json", special.dump(2)}};
}

// The image settings shipped with an image head, their `size` set to the exported input size.
std::optional<nlohmann::json> image_settings(const ExportOptions& options, const std::pair<int64_t, int64_t>& size) {
  nlohmann::json settings = options.preprocessor_config;
#if PERCEIVER_WITH_OPENCV
  if (settings.is_null()) settings = ImageProcessorOptions{}.to_json();
#endif
  if (!settings.is_object()) return std::nullopt;  // a build without OpenCV has no defaults to write
  settings["size"] = {{"height", size.first}, {"width", size.second}};
  return settings;
}

}  // namespace

TracedExport trace_export(PerceiverPreTrainedModelImpl& model, const ExportOptions& options,
                          const std::string& method) {
  const auto architecture = model.architecture();
  const auto who = architecture + " (exported by perceiver-cpp)";
  const auto signature = export_signature(model, options);
  const auto methods = traced_methods(signature);
  model.eval();
  model.to(options.device);

  TracedExport out{mirror_module(model), {}, {}};
  auto& module = out.module;
  const auto examples = example_inputs(signature, kTraceBatch, kTraceFree, options.device, /*seed=*/0);
  nlohmann::json method_arguments = nlohmann::json::object();
  for (const auto& traced : methods) {
    std::vector<std::string> names;
    for (const auto i : traced.arguments) names.push_back(signature.inputs[i].argument);
    method_arguments[traced.name] = names;
    add_traced_method(module, traced.name, names, method_args(traced, examples),
                      [&](const std::vector<torch::Tensor>& args) {
                        c10::Dict<std::string, torch::Tensor> dict;
                        for (const auto& [name, t] : run_eager(model, signature, traced, args)) dict.insert(name, t);
                        return dict;
                      });
  }
  module.define(forward_source(signature, methods, who, method));
  const auto outputs = check_against_eager(module, method, model, signature, methods, options.device, who);

  auto config = model.config();
  config.architectures = {architecture};
  out.manifest = {{"format", kExportFormat},
                  {"format_version", 1},
                  {"perceiver_cpp_version", PERCEIVER_VERSION},
                  {"architecture", architecture},
                  {"source", options.source},
                  {"device", options.device.str()},
                  {"outputs", outputs},
                  {"traced_methods", method_arguments}};
  out.manifest.update(signature_json(signature));
  auto& extra = out.extra_files;
  extra["config.json"] = config.to_json().dump(2);
  if (signature.takes_text)
    for (const auto& [name, text] : tokenizer_files(config)) extra[name] = text;
  if (signature.image_size)
    if (const auto settings = image_settings(options, *signature.image_size))
      extra["preprocessor_config.json"] = settings->dump(2);
  nlohmann::json files = {kExportManifest};
  for (const auto& [name, text] : extra) files.push_back(name);
  out.manifest["extra_files"] = files;
  return out;
}

void save_export(const TracedExport& traced, const fs::path& out) {
  torch::jit::ExtraFilesMap extra(traced.extra_files.begin(), traced.extra_files.end());
  extra[kExportManifest] = traced.manifest.dump(2);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  const fs::path partial = out.string() + ".partial";
  traced.module.save(partial.string(), extra);
  fs::rename(partial, out);
}

nlohmann::json export_torchscript(PerceiverPreTrainedModelImpl& model, const fs::path& out,
                                  const ExportOptions& options) {
  const auto traced = trace_export(model, options);
  save_export(traced, out);
  return traced.manifest;
}

ModelForExport load_for_export(const fs::path& dir, const ExportOptions& options, const io::LoadOptions& load) {
  ModelForExport out{io::load_pretrained(dir, load), options};
  auto& resolved = out.options;
  if (resolved.source.empty()) resolved.source = dir.string();
  if (resolved.preprocessor_config.is_null() && export_signature(*out.model, resolved).image_size) {
#if PERCEIVER_WITH_OPENCV
    resolved.preprocessor_config = image_processor_for(*eager_runner(out.model, dir)).options().to_json();
#else
    std::error_code ec;
    if (fs::is_regular_file(dir / "preprocessor_config.json", ec))
      resolved.preprocessor_config = read_json_file(dir / "preprocessor_config.json");
#endif
  }
  return out;
}

nlohmann::json export_model_dir(const fs::path& dir, const fs::path& out, const ExportOptions& options,
                                const io::LoadOptions& load) {
  const auto loaded = load_for_export(dir, options, load);
  return export_torchscript(*loaded.model, out, loaded.options);
}

}  // namespace perceiver
