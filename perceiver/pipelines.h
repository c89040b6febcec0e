// The answers a user asks a Perceiver for, as HF's pipelines give them: fill-mask, and text and
// image classification following the model's problem_type. Each runs under c10::InferenceMode and
// puts the model in eval mode.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "perceiver/model.h"
#if PERCEIVER_WITH_OPENCV
#include "perceiver/image_processor.h"
#endif

namespace perceiver {

struct MaskFill {
  std::string text;       // the input
  std::string filled;     // the text with every [MASK] replaced by the model's most likely byte
  std::string predicted;  // the predicted bytes alone, in order
};
// PerceiverForMaskedLM; texts are truncated to the model's max_position_embeddings.
std::vector<MaskFill> fill_mask(PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts);

struct LabelScore {
  std::string label;
  double score = 0;
};
// One input's answer. single_label_classification: softmax scores of every label and the best
// one in `labels`; multi_label_classification: sigmoid scores and every label above 0.5;
// regression: the raw outputs in `values`.
struct Classification {
  std::string input;
  std::string problem_type;
  std::vector<std::string> labels;
  std::vector<LabelScore> scores;  // in id order
  std::vector<double> values;
};
// PerceiverForSequenceClassification.
std::vector<Classification> classify_texts(PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts);
#if PERCEIVER_WITH_OPENCV
// The image heads; each file is decoded (OpenCV) and run through `processor`.
std::vector<Classification> classify_images(PerceiverPreTrainedModelImpl& model, const PerceiverImageProcessor& processor,
                                            const std::vector<std::filesystem::path>& files);
// The processor a model directory asks for: its preprocessor_config.json when there is one, else
// HF's defaults resized to the model's config.image_size (the learned head's fixed input size).
PerceiverImageProcessor image_processor_for(const PerceiverPreTrainedModelImpl& model, const std::filesystem::path& dir);
#endif

}  // namespace perceiver
