// Vision, optical-flow and multimodal classes register themselves here with the architecture and
// component registries (kept apart from the text heads so each file stays one concept).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "perceiver/components.h"
#include "perceiver/config.h"
#include "perceiver/model.h"

namespace perceiver {

class Kwargs;
template <typename T>
using ComponentFactory = std::function<std::shared_ptr<T>(const PerceiverConfig&, Kwargs&)>;
using ArchitectureFactory =
    std::function<PerceiverPreTrainedModel(const PerceiverConfig& config, const nlohmann::json& construction)>;

void register_vision_architectures(std::map<std::string, ArchitectureFactory>& registry);
void register_vision_preprocessors(std::map<std::string, ComponentFactory<PreprocessorImpl>>& registry);
void register_vision_decoders(std::map<std::string, ComponentFactory<DecoderImpl>>& registry);
void register_vision_postprocessors(std::map<std::string, ComponentFactory<PostprocessorImpl>>& registry);

}  // namespace perceiver
