#include "perceiver/models/image_heads.h"

#include "perceiver/models/modality_preprocessors.h"

namespace perceiver {
namespace {

PerceiverModel image_classifier(const PerceiverConfig& config, const ImagePreprocessorOptions& preprocessor) {
  return PerceiverModel(
      config, std::make_shared<PerceiverClassificationDecoderImpl>(config, classification_decoder_options(config)),
      std::make_shared<PerceiverImagePreprocessorImpl>(preprocessor));
}

}  // namespace

PerceiverForImageClassificationLearnedImpl::PerceiverForImageClassificationLearnedImpl(const PerceiverConfig& config)
    : PerceiverClassifierHeadImpl(config, "PerceiverForImageClassificationLearned") {
  ImagePreprocessorOptions p;
  p.prep_type = "conv1x1";
  p.spatial_downsample = 1;
  p.out_channels = 256;
  p.concat_or_add_pos = "concat";
  p.position_encoding.type = "trainable";
  p.position_encoding.trainable = TrainablePositionEncodingOptions{{config.image_size * config.image_size}, 256};
  p.position_encoding.out_channels = 256;
  p.position_encoding.project_pos_dim = 256;
  set_model(image_classifier(config, p));
}

PerceiverForImageClassificationFourierImpl::PerceiverForImageClassificationFourierImpl(const PerceiverConfig& config)
    : PerceiverClassifierHeadImpl(config, "PerceiverForImageClassificationFourier") {
  ImagePreprocessorOptions p;
  p.prep_type = "pixels";
  p.spatial_downsample = 1;
  p.position_encoding = fourier_position_encoding(64, {224, 224});
  set_model(image_classifier(config, p));
}

PerceiverForImageClassificationConvProcessingImpl::PerceiverForImageClassificationConvProcessingImpl(
    const PerceiverConfig& config)
    : PerceiverClassifierHeadImpl(config, "PerceiverForImageClassificationConvProcessing") {
  ImagePreprocessorOptions p;
  p.prep_type = "conv";
  p.spatial_downsample = 1;
  p.position_encoding = fourier_position_encoding(64, {56, 56});
  set_model(image_classifier(config, p));
}

}  // namespace perceiver
