#include "perceiver/export/export_triton.h"

#include <ATen/Context.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "perceiver/export/export_signature.h"
#include "perceiver/io/json_io.h"

namespace perceiver {
namespace {

namespace fs = std::filesystem;

// Triton calls `forward`; the checked dict-returning forward of the `--out` file lives on under this name.
constexpr const char* kDictMethod = "forward_dict";

// (batch, free size) of the two runs that check the Triton forward: an output dimension that
// differs between them is free (-1 in config.pbtxt). Neither is the trace's (2, 5).
constexpr std::array<std::pair<int64_t, int64_t>, 2> kProbes = {{{1, 3}, {3, 4}}};

void check_options(const TritonOptions& triton, const fs::path& repo) {
  bool valid = !triton.name.empty();
  for (const char c : triton.name) valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  if (!valid)
    throw std::invalid_argument("Triton model name '" + triton.name +
                                "': use letters, digits, '_' and '-' only (it names the folder " +
                                (repo / "NAME").string() + " and config.pbtxt's `name`)");
  if (triton.max_batch_size < 0)
    throw std::invalid_argument("Triton max_batch_size " + std::to_string(triton.max_batch_size) +
                                ": use a positive batch size, or 0 for no batching");
}

bool batch_first(const ExportInput& in) { return !in.dims.empty() && in.dims[0].free() && in.dims[0].name == "batch"; }

// The inputs Triton passes (see the header): the required ones and the optional ones given per
// example (batch first); an optional one without a batch dimension is left out.
std::vector<size_t> served_inputs(const ExportSignature& signature) {
  std::vector<size_t> out;
  for (size_t i = 0; i < signature.inputs.size(); ++i)
    if (!signature.inputs[i].optional || batch_first(signature.inputs[i])) out.push_back(i);
  return out;
}

// model_configuration.md's "Datatypes" table, PyTorch column (pytorch_backend's
// ConvertDataTypeToTorchType agrees; it has no bfloat16).
std::string triton_type(torch::ScalarType type, const std::string& what) {
  switch (type) {
    case torch::kBool: return "TYPE_BOOL";
    case torch::kByte: return "TYPE_UINT8";
    case torch::kChar: return "TYPE_INT8";
    case torch::kShort: return "TYPE_INT16";
    case torch::kInt: return "TYPE_INT32";
    case torch::kLong: return "TYPE_INT64";
    case torch::kHalf: return "TYPE_FP16";
    case torch::kFloat: return "TYPE_FP32";
    case torch::kDouble: return "TYPE_FP64";
    default:
      throw std::invalid_argument(what + " has dtype " + std::string(c10::toString(type)) +
                                  ", which Triton's PyTorch backend does not take; export the model in fp32");
  }
}

// "logits.audio" -> "logits_audio": Triton reads the index after the first "__" of `<name>__<index>`,
// so the name part keeps to [A-Za-z0-9_] without a double underscore.
std::string output_stem(const std::string& name) {
  std::string out;
  for (const char c : name) {
    const char k = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    if (k == '_' && !out.empty() && out.back() == '_') continue;
    out += k;
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out.empty() ? "output" : out;
}

// def forward(self, <served arguments>: Tensor) -> Tuple[Tensor, ...]: the dict forward with None
// for the inputs left out, its outputs in `outputs`' order.
std::string triton_forward_source(const ExportSignature& signature, const std::vector<size_t>& served,
                                  const std::vector<std::string>& outputs) {
  std::ostringstream s;
  s << "def forward(self";
  for (const auto i : served) s << ", " << signature.inputs[i].argument << ": Tensor";
  s << ") -> Tuple[";
  for (size_t i = 0; i < outputs.size(); ++i) s << (i ? ", " : "") << "Tensor";
  s << "]:\n    out = self." << kDictMethod << "(";
  for (size_t i = 0; i < signature.inputs.size(); ++i) {
    const bool given = std::find(served.begin(), served.end(), i) != served.end();
    s << (i ? ", " : "") << (given ? signature.inputs[i].argument : "None");
  }
  s << ")\n    return (";
  for (size_t i = 0; i < outputs.size(); ++i)  // HF's names: no quote or backslash
    s << (i ? ", " : "") << "out[\"" << outputs[i] << "\"]";
  s << (outputs.size() == 1 ? ",)\n" : ")\n");
  return s.str();
}

// One input or output of config.pbtxt.
struct TritonTensor {
  std::string name;    // as Triton names it
  std::string source;  // HF's name
  std::string data_type;
  std::vector<int64_t> dims;  // -1 = free; without the batch when the model batches
};

// A ModelConfig in protobuf text format.
struct TritonConfig {
  std::string name;
  int32_t max_batch_size = 0;
  std::vector<TritonTensor> inputs, outputs;
  torch::Device device = torch::kCPU;
};

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string out = "[ ";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + " ]";
}

void tensors_text(std::ostringstream& s, const char* field, const std::vector<TritonTensor>& tensors) {
  s << field << " [\n";
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    s << "  {\n    name: \"" << t.name << "\"\n    data_type: " << t.data_type << "\n";
    // Triton refuses an empty shape: a tensor that is only the batch travels as [batch, 1] and is
    // reshaped to [batch] for the model (model_configuration.md, "Reshape").
    if (t.dims.empty()) {
      s << "    dims: [ 1 ]\n    reshape: { shape: [ ] }\n";
    } else {
      s << "    dims: " << dims_text(t.dims) << "\n";
    }
    s << "  }" << (i + 1 < tensors.size() ? "," : "") << "\n";
  }
  s << "]\n";
}

std::string config_text(const TritonConfig& config, const std::string& architecture) {
  std::ostringstream s;
  s << "# " << architecture << ", written by perceiver-cpp `perceiver export --triton`; perceiver.json beside\n"
    << "# this file lists each input's free dimensions (by name) and value range.\n"
    << "name: \"" << config.name << "\"\n"
    << "platform: \"" << kTritonPlatform << "\"\n"
    << "max_batch_size: " << config.max_batch_size << "\n";
  tensors_text(s, "input", config.inputs);
  tensors_text(s, "output", config.outputs);
  // The trace records the device it ran on (e.g. where Fourier positions are made): run there.
  s << "instance_group [\n  {\n    count: 1\n    kind: " << (config.device.is_cuda() ? "KIND_GPU" : "KIND_CPU") << "\n";
  if (config.device.is_cuda() && config.device.has_index())
    s << "    gpus: [ " << static_cast<int>(config.device.index()) << " ]\n";
  s << "  }\n]\n";
  return s.str();
}

nlohmann::json tensors_json(const std::vector<TritonTensor>& tensors, const char* source_key) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : tensors)
    out.push_back({{"name", t.name}, {source_key, t.source}, {"data_type", t.data_type}, {"dims", t.dims}});
  return out;
}

// Written beside the target and renamed, as save_export does.
void write_text(const fs::path& file, const std::string& text) {
  const fs::path partial = file.string() + ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw std::runtime_error(partial.string() + ": cannot write");
  }
  fs::rename(partial, file);
}

}  // namespace

std::string triton_model_name(const fs::path& dir) {
  auto path = dir.lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "runs/x/" -> "runs/x"
  if (path.empty() || path.filename() == "." || path.filename() == "..")
    path = fs::weakly_canonical(fs::absolute(dir));
  std::string name = path.filename().string();
  if (path.parent_path().filename() == "checkpoints" && !path.parent_path().parent_path().filename().empty())
    name = path.parent_path().parent_path().filename().string() + "_" + name;
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  return name;
}

nlohmann::json export_triton(PerceiverPreTrainedModelImpl& model, const fs::path& repo, const TritonOptions& triton,
                             const ExportOptions& options) {
  check_options(triton, repo);
  auto traced = trace_export(model, options, kDictMethod);
  auto& manifest = traced.manifest;
  const auto architecture = model.architecture();
  const auto who = architecture + " (exported by perceiver-cpp for Triton)";
  const auto signature = export_signature(model, options);
  const auto served = served_inputs(signature);
  const auto outputs = manifest.at("outputs").get<std::vector<std::string>>();
  traced.module.define(triton_forward_source(signature, served, outputs));

  // The Triton forward against the eager model at both probes, with the inputs Triton passes.
  torch::NoGradGuard no_grad;
  auto generator = at::globalContext().defaultGenerator(options.device);
  std::vector<std::vector<torch::Tensor>> returned(outputs.size());  // [output][probe]
  std::vector<torch::Tensor> probe_inputs;
  for (size_t p = 0; p < kProbes.size(); ++p) {
    const auto [batch, free_size] = kProbes[p];
    const auto all = example_inputs(signature, batch, free_size, options.device, /*seed=*/10 + p);
    NamedTensors named;
    std::vector<c10::IValue> args;
    for (const auto i : served) {
      named[signature.inputs[i].name] = all[i];
      args.emplace_back(all[i]);
    }
    if (p == 0) probe_inputs = all;
    const auto state = generator.get_state();
    const auto eager = model.forward_named(named, {});
    generator.set_state(state);
    auto fail = [&](const std::string& what) {
      throw std::runtime_error(who + ": the Triton forward disagrees with the eager model at batch size " +
                               std::to_string(batch) + ": " + what + "; please report it");
    };
    c10::intrusive_ptr<c10::ivalue::Tuple> result;
    try {
      result = traced.module.forward(args).toTuple();
    } catch (const std::exception& e) {
      fail(std::string("it fails (") + excerpt(e.what(), 300) + ")");
    }
    if (result->elements().size() != outputs.size() || eager.size() != outputs.size()) fail("it returns other outputs");
    for (size_t o = 0; o < outputs.size(); ++o) {
      const auto got = result->elements()[o].toTensor();
      const auto it = eager.find(outputs[o]);
      if (it == eager.end()) fail("the eager model has no output `" + outputs[o] + "`");
      if (got.sizes() != it->second.sizes()) fail("`" + outputs[o] + "` has another shape");
      if (!torch::allclose(got, it->second, 1e-4, 1e-5))
        fail("`" + outputs[o] + "` differs by up to " + std::to_string((got - it->second).abs().max().item<double>()));
      returned[o].push_back(got);
    }
  }

  // Batching needs the batch first everywhere; an output's first dimension is the batch when it
  // followed the probes' batch sizes.
  bool batches = triton.max_batch_size > 0;
  for (const auto i : served) batches = batches && batch_first(signature.inputs[i]);
  for (const auto& probes : returned)
    for (size_t p = 0; p < kProbes.size(); ++p)
      batches = batches && probes[p].dim() > 0 && probes[p].size(0) == kProbes[p].first;
  const size_t skip = batches ? 1 : 0;

  TritonConfig config{triton.name, batches ? triton.max_batch_size : 0, {}, {}, options.device};
  for (const auto i : served) {
    const auto& in = signature.inputs[i];
    TritonTensor t{in.argument, in.name, triton_type(probe_inputs[i].scalar_type(), "input `" + in.name + "`"), {}};
    for (size_t d = skip; d < in.dims.size(); ++d) t.dims.push_back(in.dims[d].free() ? -1 : in.dims[d].size);
    config.inputs.push_back(t);
  }
  for (size_t o = 0; o < outputs.size(); ++o) {
    const auto& a = returned[o][0];
    const auto& b = returned[o][1];
    if (a.dim() != b.dim())
      throw std::runtime_error(who + ": output `" + outputs[o] + "` changes rank with the input sizes; please report it");
    TritonTensor t{output_stem(outputs[o]) + "__" + std::to_string(o), outputs[o],
                   triton_type(a.scalar_type(), "output `" + outputs[o] + "`"), {}};
    for (int64_t d = static_cast<int64_t>(skip); d < a.dim(); ++d)
      t.dims.push_back(a.size(d) == b.size(d) ? a.size(d) : -1);
    config.outputs.push_back(t);
  }

  // What an input left out becomes, as perceiver.json's `inputs` say it (`when_absent`).
  nlohmann::json left_out = nlohmann::json::array();
  for (const auto& spec : manifest.at("inputs"))
    if (std::none_of(config.inputs.begin(), config.inputs.end(),
                     [&](const TritonTensor& t) { return t.source == spec.at("name"); }))
      left_out.push_back({{"input", spec.at("name")}, {"when_absent", spec.value("when_absent", "")}});
  std::string call = "forward(";
  for (size_t i = 0; i < config.inputs.size(); ++i) call += (i ? ", " : "") + config.inputs[i].name;
  call += ") -> a tuple in the order of `outputs`";
  manifest["format"] = kTritonFormat;
  manifest["triton"] = {{"name", config.name},
                        {"platform", kTritonPlatform},
                        {"max_batch_size", config.max_batch_size},
                        {"inputs", tensors_json(config.inputs, "input")},
                        {"outputs", tensors_json(config.outputs, "output")},
                        {"inputs_left_out", left_out},
                        {"forward", call},
                        {"files", {"config.pbtxt", "perceiver.json", "1/model.pt"}}};

  // config.pbtxt last: a repository polled by Triton sees the model once it is complete.
  const auto dir = repo / config.name;
  save_export(traced, dir / "1" / "model.pt");
  write_text(dir / kExportManifest, manifest.dump(2) + "\n");
  write_text(dir / "config.pbtxt", config_text(config, architecture));
  return manifest;
}

nlohmann::json export_triton_model_dir(const fs::path& dir, const fs::path& repo, const TritonOptions& triton,
                                       const ExportOptions& options, const io::LoadOptions& load) {
  TritonOptions named = triton;
  if (named.name.empty()) named.name = triton_model_name(dir);
  check_options(named, repo);  // before loading and tracing, which take a while
  const auto loaded = load_for_export(dir, options, load);
  return export_triton(*loaded.model, repo, named, loaded.options);
}

}  // namespace perceiver
