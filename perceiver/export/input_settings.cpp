#include "perceiver/export/input_settings.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "perceiver/export/export_archive.h"
#include "perceiver/io/json_io.h"

namespace perceiver {

std::optional<YAML::Node> training_run_file(const std::filesystem::path& source) {
  std::error_code ec;
  const auto file = source / "run.yaml";
  if (!std::filesystem::is_directory(source, ec) || !std::filesystem::is_regular_file(file, ec)) return std::nullopt;
  try {
    return YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(file.string() + ": not a readable run file (" + e.what() + ")");
  }
}

std::optional<YAML::Node> training_task_setting(const std::filesystem::path& source, const std::string& key) {
  const auto run = training_run_file(source);
  if (!run) return std::nullopt;
  const auto task = (*run)["task"];
  if (!task || !task.IsMap() || !task[key]) return std::nullopt;
  return task[key];
}

#if PERCEIVER_WITH_OPENCV
namespace {

// The first of data.eval.<key>, data.train.<key> that is set, else 0.
int64_t data_setting(const YAML::Node& run, const char* key) {
  for (const char* split : {"eval", "train"}) {
    const auto node = run["data"] && run["data"].IsMap() ? run["data"][split] : YAML::Node();
    if (node && node.IsMap() && node[key]) return node[key].as<int64_t>();
  }
  return 0;
}

}  // namespace

ImageProcessorOptions image_settings_of_run(const YAML::Node& run, const PerceiverConfig& config,
                                            const std::string& where) {
  ImageProcessorOptions o;
  o.do_center_crop = false;
  try {
    const auto task = run["task"];
    if (task && task.IsMap()) {
      if (task["image_mean"]) o.image_mean = task["image_mean"].as<std::vector<double>>();
      if (task["image_std"]) o.image_std = task["image_std"].as<std::vector<double>>();
    }
    const auto height = data_setting(run, "height"), width = data_setting(run, "width");
    const auto side = static_cast<int>(config.image_size);
    o.size = height > 0 && width > 0 ? ImageSize{static_cast<int>(height), static_cast<int>(width)} : ImageSize{side, side};
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(where + ": unreadable image settings (" + e.what() + ")");
  }
  o.validate(where);
  return o;
}

PerceiverImageProcessor image_processor_for(const ModelRunner& runner) {
  const auto& dir = runner.source();
  std::error_code ec;
  if (std::filesystem::is_regular_file(dir, ec)) {  // an exported file carries its settings
    const std::string where = dir.string() + ": preprocessor_config.json";
    if (const auto text = exported_extra_file(dir, "preprocessor_config.json"))
      return PerceiverImageProcessor(ImageProcessorOptions::from_json(parse_json(*text, where), where));
  }
  if (std::filesystem::is_regular_file(dir / "preprocessor_config.json", ec))
    return PerceiverImageProcessor::from_pretrained(dir);
  if (const auto run = training_run_file(dir))
    return PerceiverImageProcessor(image_settings_of_run(*run, runner.config(), (dir / "run.yaml").string()));
  ImageProcessorOptions options;
  const int side = static_cast<int>(runner.config().image_size);
  if (side > 0 && side != options.size.height) {
    // Keep HF's crop-to-resize ratio (256 -> 224) at the model's size.
    const int crop = static_cast<int>(std::lround(side * 256.0 / 224.0));
    options.size = {side, side};
    options.crop_size = {crop, crop};
  }
  return PerceiverImageProcessor(options);
}
#endif

}  // namespace perceiver
