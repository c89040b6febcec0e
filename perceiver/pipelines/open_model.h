// One way to open what a user points at: a model directory, a training checkpoint or an exported file.
#pragma once

#include <filesystem>
#include <memory>

#include "perceiver/models/runner.h"

namespace perceiver {

// Opens a model directory, a training checkpoint directory, or a file written by `perceiver export`
// (the last through open_exported, perceiver/export/export.h). Errors name the path and what it lacks.
std::unique_ptr<ModelRunner> open_model(const std::filesystem::path& path, const RunnerOptions& options = {});

}  // namespace perceiver
