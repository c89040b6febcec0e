#include "perceiver/export/export_archive.h"

#include <caffe2/serialize/inline_container.h>

#include <memory>
#include <stdexcept>

#include "perceiver/export/export_options.h"
#include "perceiver/io/json_io.h"

namespace perceiver {

namespace fs = std::filesystem;

// The archive's record `extra/<name>` (read without loading the module), or nullopt. Anything that is
// not an archive of ours is one error naming the file. (TorchScript deflates its code records, so
// this is libtorch's zip reader, not io::StoredZip.)
std::optional<std::string> exported_extra_file(const fs::path& file, const std::string& name, nlohmann::json* manifest) {
  const auto not_ours = [&file](const std::string& why) {
    return std::invalid_argument(file.string() + ": not a model file written by `perceiver export` (" + why +
                                 "); pass a model directory or re-export the model");
  };
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw std::invalid_argument(file.string() + ": no such exported model file");
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file.string());
  } catch (const c10::Error& e) {
    throw not_ours("not a TorchScript archive: " + excerpt(e.what_without_backtrace(), 120));
  }
  const auto read = [&zip](const std::string& record) {
    const auto [data, size] = zip->getRecord("extra/" + record);
    return std::string(static_cast<const char*>(data.get()), size);
  };
  if (!zip->hasRecord(std::string("extra/") + kExportManifest))
    throw not_ours(std::string("it has no ") + kExportManifest);
  const auto parsed = parse_json(read(kExportManifest), file.string() + ":" + kExportManifest);
  if (parsed.is_object() && parsed.value("format", "") == kTritonFormat)
    throw std::invalid_argument(file.string() +
                                ": a model for Triton (`perceiver export --triton`), whose forward returns a tuple; "
                                "serve it with tritonserver, or export the model with --out to run it here");
  if (!parsed.is_object() || parsed.value("format", "") != kExportFormat)
    throw not_ours(std::string(kExportManifest) + " is not a perceiver-cpp export manifest");
  if (parsed.value("format_version", 0) != 1)
    throw std::invalid_argument(file.string() + ": export format version " + json_excerpt(parsed["format_version"]) +
                                " is not supported by this perceiver-cpp (version 1); re-export the model");
  if (manifest != nullptr) *manifest = parsed;
  if (!zip->hasRecord("extra/" + name)) return std::nullopt;
  return read(name);
}

std::optional<std::string> exported_extra_file(const fs::path& file, const std::string& name) {
  return exported_extra_file(file, name, nullptr);
}

}  // namespace perceiver
