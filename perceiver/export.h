// TorchScript export of every Perceiver head (`perceiver export`), and running such a file.
#pragma once

#include <filesystem>
#include <memory>

#include "perceiver/runner.h"

namespace perceiver {

// Runs a file written by `perceiver export` (its config and input names come from the archive's
// extra files). A file that is not such an archive is an error naming it.
std::unique_ptr<ModelRunner> open_exported(const std::filesystem::path& file, const RunnerOptions& options = {});

}  // namespace perceiver
