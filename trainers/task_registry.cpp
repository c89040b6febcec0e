#include <stdexcept>

#include "perceiver/device.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {

// One per file in trainers/tasks/.
std::unique_ptr<Task> make_masked_lm_task(TaskSection& options);
std::unique_ptr<Task> make_sequence_classification_task(TaskSection& options);
#if PERCEIVER_WITH_OPENCV  // the vision tasks read images and video
std::unique_ptr<Task> make_image_classification_task(TaskSection& options);
std::unique_ptr<Task> make_optical_flow_task(TaskSection& options);
std::unique_ptr<Task> make_multimodal_autoencoding_task(TaskSection& options);
#endif

const std::map<std::string, TaskFactory>& task_registry() {
  static const std::map<std::string, TaskFactory> registry = {
      {"mlm", make_masked_lm_task},
      {"sequence_classification", make_sequence_classification_task},
#if PERCEIVER_WITH_OPENCV
      {"image_classification", make_image_classification_task},
      {"optical_flow", make_optical_flow_task},
      {"multimodal_autoencoding", make_multimodal_autoencoding_task},
#endif
  };
  return registry;
}

std::vector<std::string> known_tasks() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : task_registry()) names.push_back(name);
  return names;
}

std::unique_ptr<Task> make_task(const YAML::Node& node, const std::string& source) {
  YAML::Node options = node;
  std::string name;
  if (node && node.IsScalar()) {
    name = node.as<std::string>();
    options = YAML::Node(YAML::NodeType::Map);
  } else if (node && node.IsMap() && node["name"]) {
    name = node["name"].as<std::string>();
  } else {
    throw std::invalid_argument(source + ": 'task' must be a name or a mapping with 'name'");
  }
  const auto it = task_registry().find(name);
  if (it == task_registry().end())
    throw std::invalid_argument(source + ": unknown task '" + name + "' (known: " + join(known_tasks(), ", ") + ")");
  TaskSection s(options, source, "task");
  if (node.IsMap()) s.get<std::string>("name", "");
  auto task = it->second(s);
  s.finish();
  return task;
}

datasets::Example to_device(const datasets::Example& batch, const torch::Device& device) {
  return device::to(batch, device);
}

}  // namespace perceiver::trainers
