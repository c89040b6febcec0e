// Loads a Hugging Face model directory, a training checkpoint or an exported .pt of a Perceiver
// image classifier and prints, for each image file (any format OpenCV reads), the predicted label
// and its probability.
//   classify_images MODEL cat.jpg dog.png ...
#include <perceiver/pipelines/pipelines.h>
#include <perceiver/pipelines/open_model.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL IMAGE...\n";
    return 2;
  }
  try {
    const auto model = perceiver::open_model(argv[1]);
    // The directory's preprocessor_config.json, the checkpoint's run file, or HF's defaults at the model's image size.
    const auto processor = perceiver::image_processor_for(*model);
    const std::vector<std::filesystem::path> files(argv + 2, argv + argc);
    for (const auto& answer : perceiver::classify_images(*model, processor, files, {/*top_k=*/1}))
      std::cout << answer.input << "\t" << answer.top_k.front().label << "\t" << answer.top_k.front().score << "\n";
  } catch (const std::exception& e) {
    std::cerr << "classify_images: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
