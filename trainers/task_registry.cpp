#include <stdexcept>

#include "perceiver/runtime/device.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {

// One per file in trainers/tasks/.
TaskInfo masked_lm_task_info();
TaskInfo sequence_classification_task_info();
TaskInfo token_classification_task_info();
#if PERCEIVER_WITH_OPENCV  // the vision tasks read images and video
TaskInfo image_classification_task_info();
TaskInfo optical_flow_task_info();
TaskInfo multimodal_autoencoding_task_info();
#endif

const std::map<std::string, TaskInfo>& task_registry() {
  static const std::map<std::string, TaskInfo> registry = {
      {"mlm", masked_lm_task_info()},
      {"sequence_classification", sequence_classification_task_info()},
      {"token_classification", token_classification_task_info()},
#if PERCEIVER_WITH_OPENCV
      {"image_classification", image_classification_task_info()},
      {"optical_flow", optical_flow_task_info()},
      {"multimodal_autoencoding", multimodal_autoencoding_task_info()},
#endif
  };
  return registry;
}

std::vector<std::string> known_tasks() {
  std::vector<std::string> names;
  for (const auto& [name, info] : task_registry()) names.push_back(name);
  return names;
}

datasets::OptionSpec task_name_option() {
  return {"name", "enum[" + join(known_tasks(), ", ") + "]", "", "the training objective (`task: NAME` says the same)",
          true};
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
  TaskSection s(options, source, "task", {task_name_option()});
  s.declare(it->second.options);
  auto task = it->second.make(s);
  s.finish();
  return task;
}

datasets::Example to_device(const datasets::Example& batch, const torch::Device& device) {
  return device::to(batch, device);
}

}  // namespace perceiver::trainers
