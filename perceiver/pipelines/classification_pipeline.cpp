#include "perceiver/pipelines/classification_pipeline.h"

#include <torch/torch.h>

#include <functional>

#include "perceiver/models/problem_type.h"

namespace perceiver {
namespace {

// Runs `logits_of` on each batch of inputs and answers every row by the model's problem type.
std::vector<Classification> classify(const ModelRunner& runner, const std::vector<std::string>& names,
                                     const ClassifyOptions& options,
                                     const std::function<torch::Tensor(size_t, size_t)>& logits_of) {
  const auto& config = runner.config();
  const auto problem = ProblemType::of(config.problem_type, config.num_labels());
  std::vector<Classification> out;
  for (const auto& [begin, end] : batch_ranges(names.size(), options.batch_size)) {
    const auto logits = logits_of(begin, end);
    const auto scores = problem.scores(logits);
    for (size_t i = begin; i < end; ++i) {
      const auto row = static_cast<int64_t>(i - begin);
      Classification c;
      c.input = names[i];
      c.problem_type = problem.name();
      c.logits = logits[row].clone();
      if (problem.regression()) {
        const auto v = scores[row].contiguous();
        c.values.assign(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
      } else {
        c.top_k = top_k_labels(config, scores[row], options.top_k);
        if (problem.single()) {
          c.labels.push_back(top_k_labels(config, scores[row], 1).front().label);
        } else {
          for (const auto& s : top_k_labels(config, scores[row], scores.size(1)))
            if (s.score > ProblemType::multi_label_threshold) c.labels.push_back(s.label);
        }
      }
      out.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace

std::vector<Classification> classify_texts(ModelRunner& runner, const std::vector<std::string>& texts,
                                           const ClassifyOptions& options) {
  expect_architecture(runner, {"PerceiverForSequenceClassification"}, "text classification");
  return classify(runner, texts, options, [&](size_t begin, size_t end) {
    const auto inputs = encode_texts(runner.config(), {texts.begin() + static_cast<std::ptrdiff_t>(begin),
                                                       texts.begin() + static_cast<std::ptrdiff_t>(end)});
    return runner.forward({{"inputs", inputs.input_ids}, {"attention_mask", inputs.attention_mask}}).at("logits");
  });
}

#if PERCEIVER_WITH_OPENCV
std::vector<Classification> classify_images(ModelRunner& runner, const PerceiverImageProcessor& processor,
                                            const std::vector<std::filesystem::path>& files,
                                            const ClassifyOptions& options) {
  expect_architecture(runner,
                      {"PerceiverForImageClassificationLearned", "PerceiverForImageClassificationFourier",
                       "PerceiverForImageClassificationConvProcessing"},
                      "image classification");
  const std::vector<std::string> names(files.begin(), files.end());
  return classify(runner, names, options, [&](size_t begin, size_t end) {
    const std::vector<std::filesystem::path> batch(files.begin() + static_cast<std::ptrdiff_t>(begin),
                                                   files.begin() + static_cast<std::ptrdiff_t>(end));
    return runner.forward({{"inputs", processor.preprocess_files(batch)}}).at("logits");
  });
}
#endif

}  // namespace perceiver
