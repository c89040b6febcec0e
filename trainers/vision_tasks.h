// The optical-flow and multimodal-autoencoding objectives (they train the heads HF cannot).
#pragma once

#include <memory>
#include <string>

#include "trainers/tasks.h"

namespace perceiver::trainers {

// nullptr when `name` is not one of these tasks.
std::unique_ptr<Task> make_vision_task(const std::string& name, const YAML::Node& options, const std::string& source);

}  // namespace perceiver::trainers
