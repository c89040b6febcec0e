#include "trainers/vision_tasks.h"

namespace perceiver::trainers {

std::unique_ptr<Task> make_vision_task(const std::string&, const YAML::Node&, const std::string&) { return nullptr; }

}  // namespace perceiver::trainers
