// The image, optical-flow, audio and multimodal heads and components, registered by HF class name
// with the architecture registry (heads.cpp) and the component registries (composition.cpp).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"
#include "perceiver/models/model.h"

namespace perceiver {

class Kwargs;
// Builds one component from its kwargs.
template <typename T>
using ComponentFactory = std::function<std::shared_ptr<T>(const PerceiverConfig&, Kwargs&)>;
// Builds any registered component from a {"class": ..., "kwargs": ...} spec (composition.h's
// build_preprocessor and its kin): the multimodal components build their modalities with it.
template <typename T>
using SpecBuilder = std::function<std::shared_ptr<T>(const PerceiverConfig&, const nlohmann::json& spec)>;
using ArchitectureFactory =
    std::function<PerceiverPreTrainedModel(const PerceiverConfig& config, const nlohmann::json& construction)>;

void register_modality_architectures(std::map<std::string, ArchitectureFactory>& registry);
void register_modality_preprocessors(std::map<std::string, ComponentFactory<PreprocessorImpl>>& registry,
                                     SpecBuilder<PreprocessorImpl> build);
void register_modality_decoders(std::map<std::string, ComponentFactory<DecoderImpl>>& registry,
                                SpecBuilder<DecoderImpl> build);
void register_modality_postprocessors(std::map<std::string, ComponentFactory<PostprocessorImpl>>& registry,
                                      SpecBuilder<PostprocessorImpl> build);

}  // namespace perceiver
