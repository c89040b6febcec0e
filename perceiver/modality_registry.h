// The image, optical-flow, audio and multimodal heads and components, registered by HF class name
// with the architecture registry (heads.cpp) and the component registries (composition.cpp).
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

void register_modality_architectures(std::map<std::string, ArchitectureFactory>& registry);
void register_modality_preprocessors(std::map<std::string, ComponentFactory<PreprocessorImpl>>& registry);
void register_modality_decoders(std::map<std::string, ComponentFactory<DecoderImpl>>& registry);
void register_modality_postprocessors(std::map<std::string, ComponentFactory<PostprocessorImpl>>& registry);

}  // namespace perceiver
