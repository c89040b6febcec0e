#include "perceiver/export.h"

#include <stdexcept>

namespace perceiver {

std::unique_ptr<ModelRunner> open_exported(const std::filesystem::path& file, const RunnerOptions&) {
  // Placeholder until TorchScript export lands (issue 11).
  throw std::invalid_argument(file.string() + ": running exported TorchScript files is not implemented yet");
}

}  // namespace perceiver
