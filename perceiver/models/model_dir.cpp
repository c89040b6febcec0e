#include "perceiver/models/architectures.h"
#include "perceiver/models/model_dir.h"

#include <fstream>
#include <sstream>

#include "perceiver/models/heads.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/io/torch_bin.h"
#include "perceiver/io/json_io.h"

namespace perceiver::io {
namespace fs = std::filesystem;
namespace {

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// HF's base_model_prefix handling: add or strip "perceiver." when the file and the model disagree.
std::map<std::string, torch::Tensor> align_prefix(const std::map<std::string, torch::Tensor>& model_keys,
                                                  const std::map<std::string, torch::Tensor>& tensors) {
  const std::string prefix = "perceiver.";
  auto any_prefixed = [&](const auto& m) {
    for (const auto& [k, v] : m)
      if (starts_with(k, prefix)) return true;
    return false;
  };
  const bool model_prefixed = any_prefixed(model_keys), file_prefixed = any_prefixed(tensors);
  if (model_prefixed == file_prefixed) return tensors;
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : tensors) {
    if (model_prefixed) {
      out[model_keys.count(k) ? k : prefix + k] = v;
    } else if (starts_with(k, prefix)) {
      out[k.substr(prefix.size())] = v;
    } else {
      out[k] = v;
    }
  }
  return out;
}

}  // namespace

std::string LoadReport::summary() const {
  std::ostringstream s;
  s << loaded.size() << " tensors loaded";
  auto list = [&s](const char* what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    s << "; " << names.size() << " " << what << ": ";
    for (size_t i = 0; i < names.size(); ++i) s << (i ? ", " : "") << names[i];
  };
  list("missing (kept initialised)", missing);
  list("unexpected (ignored)", unexpected);
  list("shape-mismatched (re-initialised)", mismatched);
  return s.str();
}

std::map<std::string, torch::Tensor> state_dict(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) out[p.key()] = p.value();
  for (const auto& b : model.named_buffers(/*recurse=*/true)) out[b.key()] = b.value();
  return out;
}

LoadReport load_weights(torch::nn::Module& model, const std::map<std::string, torch::Tensor>& raw, bool strict,
                        const std::string& source) {
  auto targets = state_dict(model);
  const auto tensors = align_prefix(targets, raw);
  LoadReport report;
  for (const auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      report.missing.push_back(name);
    } else if (it->second.sizes() != target.sizes()) {
      report.mismatched.push_back(name + ": file shape " + shape_string(it->second) + " vs model shape " +
                                  shape_string(target));
    } else {
      report.loaded.push_back(name);
    }
  }
  for (const auto& [name, t] : tensors)
    if (!targets.count(name)) report.unexpected.push_back(name);

  if (strict) {
    auto fail = [&](const std::string& what) { throw std::runtime_error(source + ": " + what); };
    if (!report.mismatched.empty()) fail("tensor " + report.mismatched.front());
    if (!report.missing.empty())
      fail("missing tensor '" + report.missing.front() + "' (model shape " + shape_string(targets[report.missing.front()]) +
           ")" + (report.missing.size() > 1 ? " and " + std::to_string(report.missing.size() - 1) + " more" : ""));
    if (!report.unexpected.empty())
      fail("unexpected tensor '" + report.unexpected.front() + "' (file shape " +
           shape_string(tensors.at(report.unexpected.front())) + ")" +
           (report.unexpected.size() > 1 ? " and " + std::to_string(report.unexpected.size() - 1) + " more" : ""));
  }
  torch::NoGradGuard no_grad;
  for (const auto& name : report.loaded) {
    const auto& src = tensors.at(name);
    auto& dst = targets.at(name);
    TORCH_CHECK(!(src.is_floating_point() && !dst.is_floating_point()), source, ": tensor '", name, "' has dtype ",
                src.scalar_type(), " but the model expects ", dst.scalar_type());
    dst.copy_(src);
  }
  return report;
}

fs::path weights_file(const fs::path& dir) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
    if (fs::exists(dir / name)) return dir / name;
  }
  throw std::runtime_error(dir.string() + ": no model.safetensors or pytorch_model.bin in this directory");
}

PerceiverPreTrainedModel load_pretrained(const fs::path& dir, const LoadOptions& options, LoadReport* report) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + ": not a model directory");
  const auto config_path = dir / "config.json";
  if (!fs::exists(config_path)) throw std::runtime_error(dir.string() + ": missing config.json");
  const auto config = PerceiverConfig::from_json_file(config_path);

  nlohmann::json construction = options.construction;
  if (construction.is_null() && fs::exists(dir / "meta.json")) {
    const auto meta = read_json_file(dir / "meta.json");
    if (meta.contains("construction")) construction = meta["construction"];
  }
  auto model = build_model(config, construction);
  const auto file = weights_file(dir);
  const auto tensors = load_state_dict(file);
  auto r = load_weights(*model, tensors, options.strict, file.string());
  if (report) *report = std::move(r);
  return model;
}

void save_pretrained(const PerceiverPreTrainedModelImpl& model, const fs::path& dir) {
  fs::create_directories(dir);
  auto config = model.config();
  config.architectures = {model.architecture()};
  config.save_json(dir / "config.json");
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, t] : state_dict(model)) tensors[name] = t.detach().to(torch::kCPU).contiguous();
  save_safetensors(dir / "model.safetensors", tensors);
}

}  // namespace perceiver::io
