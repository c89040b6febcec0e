#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/io/model_dir.h"
#include "perceiver/runtime.h"
#include "perceiver/tokenizer.h"

namespace {

namespace po = boost::program_options;

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  const auto c = t.to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// Texts -> padded (B, L) ids and mask, truncated to the model's positions.
perceiver::ModelInputs encode(const perceiver::PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts) {
  const perceiver::PerceiverTokenizer tok;
  perceiver::EncodeOptions o;
  o.padding = perceiver::Padding::Longest;
  o.truncation = perceiver::Truncation::LongestFirst;
  o.max_length = model.config().max_position_embeddings;
  return perceiver::to_model_inputs(tok.batch_encode(texts, o));
}

// Masked LM: every [MASK] in the text is replaced by the model's most likely byte.
nlohmann::json fill_masks(perceiver::PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts) {
  const perceiver::PerceiverTokenizer tok;
  const auto batch = encode(model, texts);
  const auto out = model.forward_named({{"inputs", batch.input_ids}, {"attention_mask", batch.attention_mask}}, {});
  const auto pred = out.at("logits").narrow(1, 0, batch.input_ids.size(1)).argmax(-1);
  nlohmann::json result = nlohmann::json::array();
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = batch.input_ids[i];
    const auto masked = ids.eq(perceiver::PerceiverTokenizer::mask_token_id);
    const auto filled = torch::where(masked, pred[i], ids);
    result.push_back({{"text", texts[i]},
                      {"filled", tok.decode(to_vector(filled), true)},
                      {"predicted", tok.decode(to_vector(pred[i].masked_select(masked)), false)}});
  }
  return result;
}

// Follows the model's problem_type as HF's loss does: softmax and the best label for single-label,
// a sigmoid per label and every label above 0.5 for multi-label, the raw output for regression.
nlohmann::json classify(perceiver::PerceiverPreTrainedModelImpl& model, const std::vector<std::string>& texts) {
  const auto batch = encode(model, texts);
  const auto logits =
      model.forward_named({{"inputs", batch.input_ids}, {"attention_mask", batch.attention_mask}}, {}).at("logits");
  const auto problem = model.config().problem_type.value_or("single_label_classification");
  const auto& names = model.config().id2label;
  auto name_of = [&](int64_t id) { return names.count(id) ? names.at(id) : std::to_string(id); };
  nlohmann::json result = nlohmann::json::array();
  if (problem == "regression") {
    for (size_t i = 0; i < texts.size(); ++i) {
      nlohmann::json values = nlohmann::json::array();
      for (int64_t j = 0; j < logits.size(1); ++j) values.push_back(logits[i][j].item<double>());
      result.push_back({{"text", texts[i]}, {"value", values.size() == 1 ? values[0] : values}});
    }
    return result;
  }
  const bool multi = problem == "multi_label_classification";
  const auto probs = multi ? torch::sigmoid(logits) : torch::softmax(logits, -1);
  for (size_t i = 0; i < texts.size(); ++i) {
    nlohmann::json scores = nlohmann::json::object();
    for (int64_t j = 0; j < probs.size(1); ++j) scores[name_of(j)] = probs[i][j].item<double>();
    if (multi) {
      nlohmann::json labels = nlohmann::json::array();
      for (int64_t j = 0; j < probs.size(1); ++j)
        if (probs[i][j].item<double>() > 0.5) labels.push_back(name_of(j));
      result.push_back({{"text", texts[i]}, {"labels", labels}, {"scores", scores}});
    } else {
      result.push_back({{"text", texts[i]}, {"label", name_of(probs[i].argmax().item<int64_t>())}, {"scores", scores}});
    }
  }
  return result;
}

int run_predict(const std::vector<std::string>& args) {
  po::options_description desc(
      "perceiver predict --model DIR TEXT...\n"
      "  masked LM: fills every [MASK] in each TEXT; sequence classification: prints the label and scores\n\noptions");
  desc.add_options()("help,h", "show this help")("model", po::value<std::string>()->required(),
                                                 "model or checkpoint directory")(
      "text", po::value<std::vector<std::string>>()->required(), "input texts")(
      "threads", po::value<int>()->default_value(0), "intra-op threads (0 = all cores)");
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << desc;
      return 0;
    }
  po::positional_options_description pos;
  pos.add("text", -1);
  const auto vm = perceiver::cli::parse(desc, args, &pos);
  perceiver::runtime::set_threads(vm["threads"].as<int>());
  auto model = perceiver::io::load_pretrained(vm["model"].as<std::string>());
  model->eval();
  torch::NoGradGuard no_grad;
  const auto texts = vm["text"].as<std::vector<std::string>>();
  const auto arch = model->architecture();
  if (arch == "PerceiverForMaskedLM") {
    std::cout << fill_masks(*model, texts).dump(2) << std::endl;
  } else if (arch == "PerceiverForSequenceClassification") {
    std::cout << classify(*model, texts).dump(2) << std::endl;
  } else {
    throw std::invalid_argument("predict supports text models (PerceiverForMaskedLM, PerceiverForSequenceClassification); " +
                                arch + " takes tensors: use 'perceiver infer'");
  }
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("predict", "fill [MASK]s or classify texts with a model/checkpoint directory", run_predict);
