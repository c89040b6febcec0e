#include "perceiver/models/modality_registry.h"

#include "perceiver/models/image_heads.h"
#include "perceiver/models/kwargs.h"
#include "perceiver/models/modality_decoders.h"
#include "perceiver/models/modality_preprocessors.h"
#include "perceiver/models/multimodal_autoencoding.h"
#include "perceiver/models/optical_flow.h"
#include "perceiver/models/postprocessors.h"

namespace perceiver {
namespace {

using json = nlohmann::json;

template <typename Head>
ArchitectureFactory head() {
  return [](const PerceiverConfig& config, const json&) -> PerceiverPreTrainedModel {
    return std::make_shared<Head>(config);
  };
}

// kwargs["modalities"] = {"<name>": {"class": ..., "kwargs": {...}}, ...}, each built by `build`.
template <typename T, typename Build>
std::map<std::string, std::shared_ptr<T>> modalities_from_kwargs(const PerceiverConfig& config, Kwargs& kw,
                                                                 Build build) {
  const auto spec = kw.raw("modalities");
  if (!spec.is_object() || spec.empty())
    throw std::invalid_argument(kw.owner() + ": 'modalities' must be an object of {\"class\": ..., \"kwargs\": ...}");
  std::map<std::string, std::shared_ptr<T>> out;
  for (const auto& [name, component] : spec.items()) {
    out[name] = build(config, component);
    if (!out[name]) throw std::invalid_argument(kw.owner() + ": modality '" + name + "' has no component");
  }
  return out;
}

std::map<std::string, double> probabilities(Kwargs& kw, const std::string& key) {
  std::map<std::string, double> out;
  const auto spec = kw.raw(key);
  if (spec.is_null()) return out;
  if (!spec.is_object()) throw std::invalid_argument(kw.owner() + ": '" + key + "' must map modality names to numbers");
  for (const auto& [name, value] : spec.items()) {
    if (!value.is_number()) throw std::invalid_argument(kw.owner() + ": '" + key + "." + name + "' must be a number");
    out[name] = value.get<double>();
  }
  return out;
}

}  // namespace

void register_modality_architectures(std::map<std::string, ArchitectureFactory>& registry) {
  registry["PerceiverForImageClassificationLearned"] = head<PerceiverForImageClassificationLearnedImpl>();
  registry["PerceiverForImageClassificationFourier"] = head<PerceiverForImageClassificationFourierImpl>();
  registry["PerceiverForImageClassificationConvProcessing"] = head<PerceiverForImageClassificationConvProcessingImpl>();
  registry["PerceiverForOpticalFlow"] = head<PerceiverForOpticalFlowImpl>();
  registry["PerceiverForMultimodalAutoencoding"] = head<PerceiverForMultimodalAutoencodingImpl>();
}

void register_modality_preprocessors(std::map<std::string, ComponentFactory<PreprocessorImpl>>& registry,
                                     SpecBuilder<PreprocessorImpl> build) {
  registry["PerceiverImagePreprocessor"] = [](const PerceiverConfig&, Kwargs& kw) -> Preprocessor {
    ImagePreprocessorOptions o;
    o.prep_type = kw.string("prep_type", "conv");
    o.spatial_downsample = kw.integer("spatial_downsample", 4);
    o.temporal_downsample = kw.integer("temporal_downsample", 1);
    o.in_channels = kw.integer("in_channels", 3);
    o.conv_after_patching = kw.boolean("conv_after_patching", false);
    o.conv_after_patching_in_channels = kw.integer("conv_after_patching_in_channels", 54);
    o.conv2d_use_batchnorm = kw.boolean("conv2d_use_batchnorm", true);
    o.concat_or_add_pos = kw.string("concat_or_add_pos", "concat");
    o.position_encoding = position_encoding_from_kwargs(kw, "fourier");
    o.out_channels = kw.integer("out_channels", 64);
    o.position_encoding.out_channels = o.out_channels;
    return std::make_shared<PerceiverImagePreprocessorImpl>(o);
  };
  registry["PerceiverOneHotPreprocessor"] = [](const PerceiverConfig& c, Kwargs&) -> Preprocessor {
    return std::make_shared<PerceiverOneHotPreprocessorImpl>(c);
  };
  registry["PerceiverAudioPreprocessor"] = [](const PerceiverConfig&, Kwargs& kw) -> Preprocessor {
    AudioPreprocessorOptions o;
    const auto prep_type = kw.string("prep_type", "patches");
    if (prep_type != "patches")
      throw std::invalid_argument(kw.owner() + ": prep_type '" + prep_type + "' is invalid, can only be 'patches'");
    o.samples_per_patch = kw.integer("samples_per_patch", 96);
    o.concat_or_add_pos = kw.string("concat_or_add_pos", "concat");
    o.position_encoding = position_encoding_from_kwargs(kw, "fourier");
    o.position_encoding.out_channels = kw.integer("out_channels", 64);
    return std::make_shared<PerceiverAudioPreprocessorImpl>(o);
  };
  registry["PerceiverMultimodalPreprocessor"] = [build](const PerceiverConfig& c, Kwargs& kw) -> Preprocessor {
    MultimodalPreprocessorOptions o;
    o.min_padding_size = kw.integer("min_padding_size", 2);
    o.mask_probs = probabilities(kw, "mask_probs");
    auto modalities = modalities_from_kwargs<PreprocessorImpl>(c, kw, build);
    return std::make_shared<PerceiverMultimodalPreprocessorImpl>(std::move(modalities), o);
  };
}

void register_modality_decoders(std::map<std::string, ComponentFactory<DecoderImpl>>& registry,
                                SpecBuilder<DecoderImpl> build) {
  registry["PerceiverOpticalFlowDecoder"] = [](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
    OpticalFlowDecoderOptions o;
    o.output_image_shape = kw.dims("output_image_shape");
    o.output_num_channels = kw.integer("output_num_channels", 2);
    o.rescale_factor = kw.number("rescale_factor", 100.0);
    o.decoder = basic_decoder_from_kwargs(kw);
    return std::make_shared<PerceiverOpticalFlowDecoderImpl>(c, o);
  };
  registry["PerceiverBasicVideoAutoencodingDecoder"] = [](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
    const auto output_shape = kw.dims("output_shape");
    return std::make_shared<PerceiverBasicVideoAutoencodingDecoderImpl>(c, output_shape, basic_decoder_from_kwargs(kw));
  };
  registry["PerceiverMultimodalDecoder"] = [build](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
    MultimodalDecoderOptions o;
    o.num_outputs = kw.optional_integer("num_outputs");
    o.min_padding_size = kw.integer("min_padding_size", 2);
    kw.raw("subsampled_index_dims");  // stored but never read by HF
    auto modalities = modalities_from_kwargs<DecoderImpl>(c, kw, build);
    o.decoder = basic_decoder_from_kwargs(kw);
    o.output_num_channels = o.decoder.output_num_channels;
    return std::make_shared<PerceiverMultimodalDecoderImpl>(c, std::move(modalities), o);
  };
}

void register_modality_postprocessors(std::map<std::string, ComponentFactory<PostprocessorImpl>>& registry,
                                      SpecBuilder<PostprocessorImpl> build) {
  registry["PerceiverAudioPostprocessor"] = [](const PerceiverConfig& c, Kwargs& kw) -> Postprocessor {
    return std::make_shared<PerceiverAudioPostprocessorImpl>(c, kw.integer("in_channels"),
                                                             kw.string("postproc_type", "patches"));
  };
  registry["PerceiverMultimodalPostprocessor"] = [build](const PerceiverConfig& c, Kwargs& kw) -> Postprocessor {
    const bool input_is_dict = kw.boolean("input_is_dict", false);
    auto modalities = modalities_from_kwargs<PostprocessorImpl>(c, kw, build);
    return std::make_shared<PerceiverMultimodalPostprocessorImpl>(std::move(modalities), input_is_dict);
  };
}

}  // namespace perceiver
