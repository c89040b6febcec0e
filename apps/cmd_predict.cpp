#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/io/model_dir.h"
#include "perceiver/pipelines.h"
#include "perceiver/runtime.h"

namespace {

namespace po = boost::program_options;

nlohmann::json to_json(const std::vector<perceiver::MaskFill>& fills) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : fills) out.push_back({{"text", f.text}, {"filled", f.filled}, {"predicted", f.predicted}});
  return out;
}

// Single-label: the label and every score; multi-label: the labels above 0.5 and every score;
// regression: the value (or values).
nlohmann::json to_json(const std::vector<perceiver::Classification>& answers, const std::string& input_key) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& a : answers) {
    nlohmann::json item = {{input_key, a.input}};
    if (a.problem_type == "regression") {
      item["value"] = a.values.size() == 1 ? nlohmann::json(a.values[0]) : nlohmann::json(a.values);
    } else {
      nlohmann::json scores = nlohmann::json::object();
      for (const auto& s : a.scores) scores[s.label] = s.score;
      if (a.problem_type == "multi_label_classification")
        item["labels"] = a.labels;
      else
        item["label"] = a.labels.front();
      item["scores"] = scores;
    }
    out.push_back(std::move(item));
  }
  return out;
}

int run_predict(const std::vector<std::string>& args) {
  po::options_description desc(
      "perceiver predict --model DIR INPUT...\n"
      "  masked LM: fills every [MASK] in each text; sequence classification: the label and scores of each text;\n"
      "  image classification: the label and scores of each image file\n\noptions");
  desc.add_options()("help,h", "show this help")("model", po::value<std::string>()->required(),
                                                 "model or checkpoint directory")(
      "text", po::value<std::vector<std::string>>()->required(), "input texts (image files for image models)")(
      "threads", po::value<int>()->default_value(0), "intra-op threads (0 = all cores)");
  perceiver::cli::add_device_options(desc, "cpu");
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << desc;
      return 0;
    }
  po::positional_options_description pos;
  pos.add("text", -1);
  const auto vm = perceiver::cli::parse(desc, args, &pos);
  perceiver::runtime::set_threads(vm["threads"].as<int>());
  const std::string dir = vm["model"].as<std::string>();
  auto model = perceiver::io::load_pretrained(dir);
  const auto choice = perceiver::cli::device_options(vm);
  model->to(choice.device);
  const perceiver::device::AutocastGuard autocast(choice.device, choice.precision);
  const auto inputs = vm["text"].as<std::vector<std::string>>();
  const auto arch = model->architecture();
  if (arch == "PerceiverForMaskedLM") {
    std::cout << to_json(perceiver::fill_mask(*model, inputs)).dump(2) << std::endl;
  } else if (arch == "PerceiverForSequenceClassification") {
    std::cout << to_json(perceiver::classify_texts(*model, inputs), "text").dump(2) << std::endl;
  } else if (arch.rfind("PerceiverForImageClassification", 0) == 0) {
#if PERCEIVER_WITH_OPENCV
    const std::vector<std::filesystem::path> files(inputs.begin(), inputs.end());
    const auto processor = perceiver::image_processor_for(*model, dir);
    std::cout << to_json(perceiver::classify_images(*model, processor, files), "image").dump(2) << std::endl;
#else
    throw std::invalid_argument("this perceiver was built without OpenCV (PERCEIVER_WITH_OPENCV=OFF): it cannot read "
                                "image files; use 'perceiver infer' with a pixel tensor");
#endif
  } else {
    throw std::invalid_argument("predict supports PerceiverForMaskedLM, PerceiverForSequenceClassification and the "
                                "image classifiers; " + arch + " takes tensors: use 'perceiver infer'");
  }
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("predict", "fill [MASK]s or classify texts with a model/checkpoint directory", run_predict);
