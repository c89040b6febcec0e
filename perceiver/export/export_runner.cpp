// open_exported: a ModelRunner over a file written by `perceiver export`.
#include <c10/core/InferenceMode.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>

#include <set>
#include <stdexcept>

#include "perceiver/export/export.h"
#include "perceiver/io/json_io.h"

namespace perceiver {
namespace {

namespace fs = std::filesystem;

// One positional argument of the exported forward, as perceiver.json lists it.
struct InputSpec {
  std::vector<std::string> names;  // HF's name first, then its aliases
  bool optional = false;
};

struct Manifest {
  std::string architecture;
  std::vector<InputSpec> inputs;
  std::string outputs;
  torch::Device device = torch::kCPU;
};

// The parts of perceiver.json the runner uses; a malformed manifest is an error naming the file.
Manifest read_manifest(const nlohmann::json& doc, const fs::path& file) {
  try {
    Manifest m;
    m.architecture = doc.at("architecture").get<std::string>();
    for (const auto& spec : doc.at("inputs")) {
      InputSpec in;
      in.names.push_back(spec.at("name").get<std::string>());
      for (const auto& alias : spec.value("aliases", nlohmann::json::array()))
        in.names.push_back(alias.get<std::string>());
      in.optional = spec.at("optional").get<bool>();
      m.inputs.push_back(std::move(in));
    }
    m.outputs = json_excerpt(doc.at("outputs"));
    m.device = torch::Device(doc.at("device").get<std::string>());
    return m;
  } catch (const std::exception& e) {
    throw std::invalid_argument(file.string() + ": malformed " + kExportManifest + " (" + excerpt(e.what()) +
                                "); re-export the model");
  }
}

// The TorchScript interpreter reports a failure with a traceback; its last line is the message.
std::string script_error(std::string what) {
  while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
  auto message = what.substr(what.rfind('\n') + 1);
  for (const std::string prefix : {"RuntimeError: ", "AssertionError: "})
    if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
  return message;
}

// Maps HF-named tensors to the positional forward on options.device and brings the outputs back to the CPU.
class ExportedRunner final : public ModelRunner {
 public:
  ExportedRunner(const fs::path& file, const RunnerOptions& options) : source_(file), options_(options) {
    nlohmann::json doc;
    const auto config = exported_extra_file(file, "config.json", &doc);
    manifest_ = read_manifest(doc, file);
    if (!config) throw std::invalid_argument(file.string() + ": the archive has no config.json; re-export the model");
    const auto config_source = file.string() + ":config.json";
    config_ = PerceiverConfig::from_json(parse_json(*config, config_source), config_source);
    const auto& f = options.forward;
    if (f.output_attentions || f.output_hidden_states || f.interpolate_pos_encoding)
      throw std::invalid_argument(file.string() + ": an exported model returns only " + manifest_.outputs +
                                  " (no attentions, hidden states or interpolated positions); use the model directory");
    if (manifest_.device.type() != options.device.type()) {
      const std::string wanted = c10::DeviceTypeName(options.device.type(), /*lower_case=*/true);
      throw std::invalid_argument(file.string() + ": exported for " + manifest_.device.str() + ", asked to run on " +
                                  options.device.str() + " (the traced graph creates tensors where it was traced); " +
                                  "export it again with --device " + wanted);
    }
    module_ = torch::jit::load(file.string(), options.device);
    module_.eval();
  }

  const PerceiverConfig& config() const override { return config_; }
  std::string architecture() const override { return manifest_.architecture; }
  const fs::path& source() const override { return source_; }

  NamedTensors forward(const NamedTensors& inputs) override {
    std::vector<c10::IValue> args;
    std::set<std::string> used;
    std::string accepted;
    for (const auto& spec : manifest_.inputs) {
      accepted += (accepted.empty() ? "" : ", ") + spec.names.front();
      torch::Tensor value;
      std::string found;
      for (const auto& name : spec.names) {
        const auto it = inputs.find(name);
        if (it == inputs.end()) continue;
        if (value.defined())
          throw std::invalid_argument(source_.string() + ": pass either `" + found + "` or `" + name + "`");
        value = device::to(it->second, options_.device);
        found = name;
        used.insert(name);
      }
      if (!value.defined() && !spec.optional)
        throw std::invalid_argument(source_.string() + ": missing input tensor `" + spec.names.front() + "`");
      args.emplace_back(value.defined() ? c10::IValue(value) : c10::IValue());
    }
    for (const auto& [name, t] : inputs)
      if (!used.count(name))
        throw std::invalid_argument(source_.string() + ": unexpected input tensor `" + name + "` (this exported " +
                                    manifest_.architecture + " takes: " + accepted + "; it computes no loss)");
    c10::InferenceMode inference;
    const device::AutocastGuard autocast(options_.device, options_.precision);
    c10::impl::GenericDict result(c10::StringType::get(), c10::TensorType::get());
    try {
      result = module_.forward(args).toGenericDict();
    } catch (const std::exception& e) {
      throw std::invalid_argument(source_.string() + ": " + script_error(e.what()));
    }
    NamedTensors outputs;
    for (const auto& entry : result)
      outputs[entry.key().toStringRef()] = entry.value().toTensor().to(torch::kCPU).contiguous();
    return outputs;
  }

 private:
  fs::path source_;
  RunnerOptions options_;
  Manifest manifest_;
  PerceiverConfig config_;
  torch::jit::Module module_;
};

}  // namespace

std::unique_ptr<ModelRunner> open_exported(const fs::path& file, const RunnerOptions& options) {
  return std::make_unique<ExportedRunner>(file, options);
}

}  // namespace perceiver
