#include "perceiver/models/composition.h"

#include <functional>

#include "perceiver/models/modality_registry.h"
#include "perceiver/models/postprocessors.h"
#include "perceiver/models/preprocessors.h"

namespace perceiver {
namespace {

using json = nlohmann::json;

template <typename T>
std::shared_ptr<T> build_component(const PerceiverConfig& config, const json& spec, const char* role,
                                   const std::map<std::string, ComponentFactory<T>>& builders) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("class") || !spec["class"].is_string())
    throw std::invalid_argument(std::string("construction.") + role + ": expected {\"class\": NAME, \"kwargs\": {...}}");
  const auto name = spec["class"].get<std::string>();
  auto it = builders.find(name);
  if (it == builders.end()) {
    std::string known;
    for (const auto& [k, v] : builders) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument(std::string("construction.") + role + ": unknown class '" + name + "' (known: " + known +
                                ")");
  }
  Kwargs kw(spec.value("kwargs", json::object()), std::string("construction.") + role + " (" + name + ")");
  auto built = it->second(config, kw);
  kw.finish();
  return built;
}

}  // namespace

Preprocessor build_preprocessor(const PerceiverConfig& config, const json& spec) {
  static const auto builders = [] {
    std::map<std::string, ComponentFactory<PreprocessorImpl>> b;
    b["PerceiverTextPreprocessor"] = [](const PerceiverConfig& c, Kwargs&) -> Preprocessor {
      return std::make_shared<PerceiverTextPreprocessorImpl>(c);
    };
    register_modality_preprocessors(b, build_preprocessor);
    return b;
  }();
  return build_component<PreprocessorImpl>(config, spec, "input_preprocessor", builders);
}

Decoder build_decoder(const PerceiverConfig& config, const json& spec) {
  static const auto builders = [] {
    std::map<std::string, ComponentFactory<DecoderImpl>> b;
    b["PerceiverBasicDecoder"] = [](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
      return std::make_shared<PerceiverBasicDecoderImpl>(c, basic_decoder_from_kwargs(kw));
    };
    b["PerceiverClassificationDecoder"] = [](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
      return std::make_shared<PerceiverClassificationDecoderImpl>(c, basic_decoder_from_kwargs(kw));
    };
    b["PerceiverProjectionDecoder"] = [](const PerceiverConfig& c, Kwargs&) -> Decoder {
      return std::make_shared<PerceiverProjectionDecoderImpl>(c);
    };
    register_modality_decoders(b, build_decoder);
    return b;
  }();
  return build_component<DecoderImpl>(config, spec, "decoder", builders);
}

Postprocessor build_postprocessor(const PerceiverConfig& config, const json& spec) {
  static const auto builders = [] {
    std::map<std::string, ComponentFactory<PostprocessorImpl>> b;
    b["PerceiverProjectionPostprocessor"] = [](const PerceiverConfig&, Kwargs& kw) -> Postprocessor {
      return std::make_shared<PerceiverProjectionPostprocessorImpl>(kw.integer("in_channels"),
                                                                    kw.integer("out_channels"));
    };
    b["PerceiverClassificationPostprocessor"] = [](const PerceiverConfig& c, Kwargs& kw) -> Postprocessor {
      return std::make_shared<PerceiverClassificationPostprocessorImpl>(c, kw.integer("in_channels"));
    };
    register_modality_postprocessors(b, build_postprocessor);
    return b;
  }();
  return build_component<PostprocessorImpl>(config, spec, "output_postprocessor", builders);
}

PerceiverModel build_perceiver_model(const PerceiverConfig& config, const json& construction) {
  if (construction.is_null()) return PerceiverModel(config);
  if (!construction.is_object()) throw std::invalid_argument("construction must be a JSON object");
  for (const auto& [key, value] : construction.items())
    if (key != "input_preprocessor" && key != "decoder" && key != "output_postprocessor")
      throw std::invalid_argument("construction: unknown component '" + key +
                                  "' (expected input_preprocessor, decoder, output_postprocessor)");
  auto part = [&](const char* key) { return construction.contains(key) ? construction[key] : json(); };
  return PerceiverModel(config, build_decoder(config, part("decoder")), build_preprocessor(config, part("input_preprocessor")),
                        build_postprocessor(config, part("output_postprocessor")));
}

}  // namespace perceiver
