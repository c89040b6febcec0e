// The architecture registry: every model this build knows, by HF class name (config.json's
// architectures[0]), and the one function that builds a model from its config.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "perceiver/models/config.h"
#include "perceiver/models/model.h"

namespace perceiver {

using ArchitectureBuilder =
    std::function<PerceiverPreTrainedModel(const PerceiverConfig& config, const nlohmann::json& construction)>;

// Every architecture this build knows, by HF class name.
const std::map<std::string, ArchitectureBuilder>& architecture_registry();
std::vector<std::string> known_architectures();

// Builds the head named by config.architectures[0] (PerceiverModel when absent). `construction`
// describes PerceiverModel's components as in the fixtures' meta.json (see composition.h).
PerceiverPreTrainedModel build_model(const PerceiverConfig& config, const nlohmann::json& construction = nullptr);

}  // namespace perceiver
