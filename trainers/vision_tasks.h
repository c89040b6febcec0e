// The optical-flow and multimodal-autoencoding objectives (they train the heads HF cannot).
#pragma once

#include <memory>
#include <string>

#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {

// nullptr when `name` is not one of these tasks; `options` is the `task` section.
std::unique_ptr<Task> make_vision_task(const std::string& name, TaskSection& options);

}  // namespace perceiver::trainers
