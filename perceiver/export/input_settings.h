// What a model expects of its inputs beyond config.json: HF's preprocessor_config.json in a model
// directory, or the run file a training checkpoint was saved with (DIR/run.yaml).
#pragma once

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <optional>

#include "perceiver/models/runner.h"
#if PERCEIVER_WITH_OPENCV
#include "perceiver/processing/image_processor.h"
#endif

namespace perceiver {

// SOURCE/run.yaml when SOURCE is a training checkpoint, else nothing. A run file that is not valid
// YAML is an error naming it.
std::optional<YAML::Node> training_run_file(const std::filesystem::path& source);
// task.<key> of that run file, or nothing where SOURCE has none or the key is not set.
std::optional<YAML::Node> training_task_setting(const std::filesystem::path& source, const std::string& key);

#if PERCEIVER_WITH_OPENCV
// The image processor for a model, first found of:
//  0. an exported file's preprocessor_config.json (written by `perceiver export`);
//  1. preprocessor_config.json in the model directory (as HF's image processor reads it);
//  2. the checkpoint's run file, as training prepared images: no centre crop, resize to the data
//     source's height x width (else config.image_size), task.image_mean / task.image_std;
//  3. HF's defaults at config.image_size (the crop keeps HF's 256:224 ratio).
PerceiverImageProcessor image_processor_for(const ModelRunner& runner);
// The image settings of item 2: how a run file's training prepared images. `where` names the file.
ImageProcessorOptions image_settings_of_run(const YAML::Node& run, const PerceiverConfig& config,
                                            const std::string& where);
#endif

}  // namespace perceiver
