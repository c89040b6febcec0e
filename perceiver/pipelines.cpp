#include "perceiver/pipelines.h"

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <stdexcept>

#include "perceiver/device.h"
#include "perceiver/tokenizer.h"

namespace perceiver {
namespace {

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  const auto c = t.to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// Texts -> padded (B, L) ids and mask, truncated to the model's positions.
ModelInputs encode(const PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts) {
  EncodeOptions o;
  o.padding = Padding::Longest;
  o.truncation = Truncation::LongestFirst;
  o.max_length = model.config().max_position_embeddings;
  return to_model_inputs(PerceiverTokenizer().batch_encode(texts, o));
}

// Runs the model where its parameters live (CPU or GPU) and brings the outputs back to the CPU.
NamedTensors forward_on_model_device(PerceiverPreTrainedModelImpl& model, const NamedTensors& inputs) {
  const auto params = model.parameters();
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  NamedTensors on_device;
  for (const auto& [name, t] : inputs) on_device[name] = device::to(t, device);
  auto outputs = model.forward_named(on_device, {});
  for (auto& [name, t] : outputs) t = t.to(torch::kCPU);
  return outputs;
}

void expect_architecture(const PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& accepted,
                         const char* what) {
  for (const auto& a : accepted)
    if (model.architecture() == a) return;
  std::string list;
  for (const auto& a : accepted) list += (list.empty() ? "" : ", ") + a;
  throw std::invalid_argument(std::string(what) + " needs " + list + "; the model is a " + model.architecture());
}

// HF's rule for problem_type, as its loss applies it.
std::vector<Classification> answers(const PerceiverPreTrainedModelImpl& model, const torch::Tensor& logits,
                                    const std::vector<std::string>& inputs) {
  const auto& config = model.config();
  const std::string problem = config.problem_type.value_or("single_label_classification");
  auto name_of = [&](int64_t id) {
    const auto it = config.id2label.find(id);
    return it != config.id2label.end() ? it->second : std::to_string(id);
  };
  const auto values = logits.to(torch::kCPU, torch::kDouble).contiguous();
  const bool multi = problem == "multi_label_classification";
  const auto probs = multi ? torch::sigmoid(values) : torch::softmax(values, -1);
  std::vector<Classification> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Classification c;
    c.input = inputs[i];
    c.problem_type = problem;
    const auto row = values[static_cast<int64_t>(i)];
    if (problem == "regression") {
      for (int64_t j = 0; j < row.size(0); ++j) c.values.push_back(row[j].item<double>());
    } else {
      const auto p = probs[static_cast<int64_t>(i)];
      for (int64_t j = 0; j < p.size(0); ++j) {
        c.scores.push_back({name_of(j), p[j].item<double>()});
        if (multi && c.scores.back().score > 0.5) c.labels.push_back(c.scores.back().label);
      }
      if (!multi) c.labels.push_back(name_of(p.argmax().item<int64_t>()));
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

std::vector<MaskFill> fill_mask(PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts) {
  expect_architecture(model, {"PerceiverForMaskedLM"}, "fill-mask");
  model.eval();
  c10::InferenceMode inference;
  const PerceiverTokenizer tok;
  const auto batch = encode(model, texts);
  const auto out =
      forward_on_model_device(model, {{"inputs", batch.input_ids}, {"attention_mask", batch.attention_mask}});
  const auto pred = out.at("logits").narrow(1, 0, batch.input_ids.size(1)).argmax(-1);
  std::vector<MaskFill> result;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = batch.input_ids[static_cast<int64_t>(i)];
    const auto masked = ids.eq(PerceiverTokenizer::mask_token_id);
    const auto filled = torch::where(masked, pred[static_cast<int64_t>(i)], ids);
    result.push_back({texts[i], tok.decode(to_vector(filled), true),
                      tok.decode(to_vector(pred[static_cast<int64_t>(i)].masked_select(masked)), false)});
  }
  return result;
}

std::vector<Classification> classify_texts(PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts) {
  expect_architecture(model, {"PerceiverForSequenceClassification"}, "text classification");
  model.eval();
  c10::InferenceMode inference;
  const auto batch = encode(model, texts);
  const auto logits =
      forward_on_model_device(model, {{"inputs", batch.input_ids}, {"attention_mask", batch.attention_mask}}).at("logits");
  return answers(model, logits, texts);
}

#if PERCEIVER_WITH_OPENCV
std::vector<Classification> classify_images(PerceiverPreTrainedModelImpl& model, const PerceiverImageProcessor& processor,
                                            const std::vector<std::filesystem::path>& files) {
  expect_architecture(model,
                      {"PerceiverForImageClassificationLearned", "PerceiverForImageClassificationFourier",
                       "PerceiverForImageClassificationConvProcessing"},
                      "image classification");
  model.eval();
  c10::InferenceMode inference;
  const auto pixels = processor.preprocess_files(files);
  const auto logits = forward_on_model_device(model, {{"inputs", pixels}}).at("logits");
  std::vector<std::string> names;
  for (const auto& f : files) names.push_back(f.string());
  return answers(model, logits, names);
}

PerceiverImageProcessor image_processor_for(const PerceiverPreTrainedModelImpl& model, const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(dir / "preprocessor_config.json", ec))
    return PerceiverImageProcessor::from_pretrained(dir);
  ImageProcessorOptions options;
  const int side = static_cast<int>(model.config().image_size);
  if (side > 0 && side != options.size.height) {
    // Keep HF's crop-to-resize ratio (256 -> 224) at the model's size.
    const int crop = static_cast<int>(std::lround(side * 256.0 / 224.0));
    options.size = {side, side};
    options.crop_size = {crop, crop};
  }
  return PerceiverImageProcessor(options);
}

#endif  // PERCEIVER_WITH_OPENCV

}  // namespace perceiver
