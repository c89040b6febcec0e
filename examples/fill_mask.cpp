// Loads a Hugging Face model directory (config.json + model.safetensors or pytorch_model.bin), a
// training checkpoint or an exported .pt of a PerceiverForMaskedLM and fills in the [MASK]ed bytes
// of each text given on the command line.
//   fill_mask MODEL "The [MASK][MASK][MASK] is blue." ...
#include <perceiver/pipelines/pipelines.h>
#include <perceiver/pipelines/open_model.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL TEXT...\n";
    return 2;
  }
  try {
    const auto model = perceiver::open_model(argv[1]);
    const std::vector<std::string> texts(argv + 2, argv + argc);
    for (const auto& fill : perceiver::fill_mask(*model, texts))
      std::cout << fill.text << "\t" << fill.filled << "\t" << fill.predicted << "\n";
  } catch (const std::exception& e) {
    std::cerr << "fill_mask: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
