// Loads a Hugging Face model directory of a Perceiver image classifier and prints, for each image
// file (any format OpenCV reads), the predicted label and its probability.
//   classify_images MODEL_DIR cat.jpg dog.png ...
#include <perceiver/io/model_dir.h>
#include <perceiver/pipelines.h>

#include <algorithm>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL_DIR IMAGE...\n";
    return 2;
  }
  try {
    auto model = perceiver::io::load_pretrained(argv[1]);
    // The model directory's preprocessor_config.json, or HF's defaults at the model's image size.
    const auto processor = perceiver::image_processor_for(*model, argv[1]);
    const std::vector<std::filesystem::path> files(argv + 2, argv + argc);
    for (const auto& answer : perceiver::classify_images(*model, processor, files)) {
      const auto best = std::max_element(answer.scores.begin(), answer.scores.end(),
                                         [](const auto& a, const auto& b) { return a.score < b.score; });
      std::cout << answer.input << "\t" << best->label << "\t" << best->score << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "classify_images: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
