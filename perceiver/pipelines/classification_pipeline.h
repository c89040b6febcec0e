// Text and image classification following the model's problem type (perceiver/models/problem_type.h), as
// HF's text- and image-classification pipelines answer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "perceiver/pipelines/pipeline_common.h"
#include "perceiver/models/runner.h"
#if PERCEIVER_WITH_OPENCV
#include "perceiver/processing/image_processor.h"
#endif

namespace perceiver {

// One input's answer. single_label_classification: softmax scores, `labels` = the best label;
// multi_label_classification: sigmoid scores, `labels` = every label scoring above 0.5;
// regression: the raw outputs in `values` (no scores).
struct Classification {
  std::string input;
  std::string problem_type;
  std::vector<std::string> labels;
  std::vector<LabelScore> top_k;  // the k best scores, best first
  std::vector<double> values;
  torch::Tensor logits;  // (num_labels) as the model returned them
};

struct ClassifyOptions {
  int64_t top_k = 5;
  int64_t batch_size = 16;  // inputs per forward pass
};

// PerceiverForSequenceClassification; texts are truncated to max_position_embeddings.
std::vector<Classification> classify_texts(ModelRunner& runner, const std::vector<std::string>& texts,
                                           const ClassifyOptions& options = {});
#if PERCEIVER_WITH_OPENCV
// The image heads; each file is decoded (OpenCV, any format it reads) and run through `processor`
// (image_processor_for, perceiver/export/input_settings.h, gives the one the model asks for).
std::vector<Classification> classify_images(ModelRunner& runner, const PerceiverImageProcessor& processor,
                                            const std::vector<std::filesystem::path>& files,
                                            const ClassifyOptions& options = {});
#endif

}  // namespace perceiver
