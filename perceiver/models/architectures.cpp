#include "perceiver/models/architectures.h"

#include <stdexcept>

#include "perceiver/models/composition.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/modality_registry.h"

namespace perceiver {

const std::map<std::string, ArchitectureBuilder>& architecture_registry() {
  static const std::map<std::string, ArchitectureBuilder> registry = [] {
    std::map<std::string, ArchitectureBuilder> r;
    r["PerceiverModel"] = [](const PerceiverConfig& c, const nlohmann::json& construction) -> PerceiverPreTrainedModel {
      return build_perceiver_model(c, construction).ptr();
    };
    r["PerceiverForMaskedLM"] = [](const PerceiverConfig& c, const nlohmann::json&) -> PerceiverPreTrainedModel {
      return std::make_shared<PerceiverForMaskedLMImpl>(c);
    };
    r["PerceiverForSequenceClassification"] = [](const PerceiverConfig& c,
                                                 const nlohmann::json&) -> PerceiverPreTrainedModel {
      return std::make_shared<PerceiverForSequenceClassificationImpl>(c);
    };
    r["PerceiverForTokenClassification"] = [](const PerceiverConfig& c,
                                              const nlohmann::json&) -> PerceiverPreTrainedModel {
      return std::make_shared<PerceiverForTokenClassificationImpl>(c);
    };
    register_modality_architectures(r);
    return r;
  }();
  return registry;
}

std::vector<std::string> known_architectures() {
  std::vector<std::string> names;
  for (const auto& [name, builder] : architecture_registry()) names.push_back(name);
  return names;
}

PerceiverPreTrainedModel build_model(const PerceiverConfig& config, const nlohmann::json& construction) {
  const std::string arch = config.architecture().empty() ? "PerceiverModel" : config.architecture();
  const auto& registry = architecture_registry();
  auto it = registry.find(arch);
  if (it == registry.end()) {
    std::string known;
    for (const auto& name : known_architectures()) known += (known.empty() ? "" : ", ") + name;
    throw std::invalid_argument("unknown architecture '" + arch + "' (known: " + known + ")");
  }
  auto model = it->second(config, construction);
  model->config().architectures = {arch};
  model->init_weights();
  return model;
}

}  // namespace perceiver
