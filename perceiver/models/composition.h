// Builds PerceiverModel compositions from HF class names and constructor kwargs, as the fixtures'
// meta.json `construction` describes them:
//   {"input_preprocessor": {"class": "PerceiverTextPreprocessor"},
//    "decoder": {"class": "PerceiverBasicDecoder", "kwargs": {"output_num_channels": 16, ...}},
//    "output_postprocessor": {...}}
// Each component is Class(config, **kwargs) (or Class(**kwargs) for classes without a config).
#pragma once

#include <nlohmann/json.hpp>

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"
#include "perceiver/models/kwargs.h"
#include "perceiver/models/model.h"

namespace perceiver {

PerceiverModel build_perceiver_model(const PerceiverConfig& config, const nlohmann::json& construction);

Preprocessor build_preprocessor(const PerceiverConfig& config, const nlohmann::json& spec);
Decoder build_decoder(const PerceiverConfig& config, const nlohmann::json& spec);
Postprocessor build_postprocessor(const PerceiverConfig& config, const nlohmann::json& spec);

}  // namespace perceiver
