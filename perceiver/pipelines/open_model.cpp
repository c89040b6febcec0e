#include "perceiver/pipelines/open_model.h"

#include <stdexcept>

#include "perceiver/export/export.h"
#include "perceiver/models/model_dir.h"

namespace perceiver {

std::unique_ptr<ModelRunner> open_model(const std::filesystem::path& path, const RunnerOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return open_exported(path, options);
  if (!std::filesystem::is_directory(path, ec))
    throw std::invalid_argument(path.string() + ": no such model directory or exported file");
  return eager_runner(io::load_pretrained(path, options.load), path, options);
}

}  // namespace perceiver
