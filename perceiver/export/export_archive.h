// Reading the extra files of an archive written by `perceiver export` without loading its module.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace perceiver {

// An extra file of an archive written by export_torchscript (e.g. "preprocessor_config.json"), or
// nullopt when the archive has none by that name. Throws, naming `file`, when it is not such an archive.
std::optional<std::string> exported_extra_file(const std::filesystem::path& file, const std::string& name);

// The same, also handing out the archive's checked manifest (perceiver.json) when `manifest` is given.
std::optional<std::string> exported_extra_file(const std::filesystem::path& file, const std::string& name,
                                               nlohmann::json* manifest);

}  // namespace perceiver
