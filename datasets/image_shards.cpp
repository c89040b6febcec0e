#include "datasets/image_shards.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "datasets/common.h"
#include "datasets/file_store.h"
#include "datasets/tar.h"
#include "perceiver/io/json_io.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

struct Sample {
  uint32_t shard;
  int64_t offset;
  int64_t size;
};

class ShardImageDataset : public Dataset {
 public:
  ShardImageDataset(std::vector<FileStamp> shards, std::vector<Sample> samples, ImageFolderOptions options)
      : shards_(std::move(shards)), samples_(std::move(samples)), options_(std::move(options)) {}
  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  Example get(int64_t index) const override {
    const auto& s = samples_.at(static_cast<size_t>(index));
    const auto& shard = shards_[s.shard];
    std::string bytes(static_cast<size_t>(s.size), '\0');
    read_stamped(shard, s.offset, s.size, bytes.data());
    return {{"images", decode_image(bytes, shard.path + " (image member at byte " + std::to_string(s.offset) + ")",
                                    options_, shape_)}};
  }
  void set_shape(std::vector<int64_t> shape) { shape_ = std::move(shape); }

 private:
  std::vector<FileStamp> shards_;
  std::vector<Sample> samples_;
  ImageFolderOptions options_;
  std::vector<int64_t> shape_;
};

bool is_image_extension(std::string ext) {
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> known = {"jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "tif", "tiff"};
  return known.count(ext) > 0;
}

std::string trimmed(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

bool is_whole_number(const std::string& s) {
  return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// A JSON label: a string, a number's text, or a list of strings joined with '|'.
std::string json_label(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return v.dump();
  if (v.is_array()) {
    std::string out;
    for (const auto& item : v)
      if (item.is_string()) out += (out.empty() ? "" : "|") + item.get<std::string>();
    return out;
  }
  return "";
}

}  // namespace

std::vector<fs::path> shard_files(const std::string& spec) {
  std::error_code ec;
  std::vector<fs::path> out;
  static const std::regex range(R"(\{(\d+)\.\.(\d+)\})");
  std::smatch m;
  if (std::regex_search(spec, m, range)) {
    const auto first = std::stoll(m[1].str()), last = std::stoll(m[2].str());
    const auto width = m[1].str().size();
    if (last < first || last - first > 10000000) throw std::runtime_error("shard range '" + spec + "' is empty or too large");
    for (auto i = first; i <= last; ++i)
      out.emplace_back(m.prefix().str() + fmt::format("{:0{}}", i, width) + m.suffix().str());
    for (const auto& f : out)
      if (!fs::is_regular_file(f, ec)) throw std::runtime_error("shard '" + f.string() + "' of '" + spec + "' does not exist");
  } else if (fs::is_directory(spec, ec)) {
    for (const auto& e : fs::directory_iterator(spec))
      if (e.is_regular_file() && e.path().extension() == ".tar") out.push_back(e.path());
    std::sort(out.begin(), out.end());
    if (out.empty()) throw std::runtime_error("no .tar shards in '" + spec + "'");
  } else if (fs::is_regular_file(spec, ec)) {
    out.emplace_back(spec);
  } else {
    throw std::runtime_error("image shards '" + spec + "' do not exist (expected a .tar file, a folder of them or a range "
                             "such as shard-{000000..000099}.tar)");
  }
  return out;
}

ImageSet open_image_shards(const std::string& spec, const ImageShardOptions& options) {
  const auto files = shard_files(spec);
  std::vector<FileStamp> shards;
  std::vector<Sample> samples;
  ImageSet set;
  bool class_indexes = true;  // every label is a .cls class index
  for (const auto& file : files) {
    const auto stamp = FileStamp::of(file);
    const auto listing = list_tar(file);
    if (!listing.problem.empty())
      spdlog::warn("image shard '{}': {}; the {} members before it are used", file.string(), listing.problem,
                   listing.members.size());
    std::ifstream in(file, std::ios::binary);
    auto contents = [&](const TarMember& m) {
      std::string bytes(static_cast<size_t>(std::min<int64_t>(m.size, 1 << 20)), '\0');
      in.clear();
      in.seekg(m.offset);
      in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      bytes.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
      return bytes;
    };
    const auto shard = static_cast<uint32_t>(shards.size());
    int64_t skipped = 0;
    const auto& members = listing.members;
    for (size_t i = 0; i < members.size();) {
      // A sample is the run of consecutive members sharing a key: the name up to the first '.' of its file name.
      const auto key_of = [](const std::string& name) {
        const size_t slash = name.rfind('/');
        const size_t dot = name.find('.', slash == std::string::npos ? 0 : slash + 1);
        return std::make_pair(name.substr(0, dot), dot == std::string::npos ? std::string() : name.substr(dot + 1));
      };
      const auto key = key_of(members[i].name).first;
      const TarMember* image = nullptr;
      std::string json, cls;  // a .json label wins over a .cls one
      for (; i < members.size() && key_of(members[i].name).first == key; ++i) {
        const auto ext = key_of(members[i].name).second;
        if (!image && is_image_extension(ext)) image = &members[i];
        if (ext == "json" && json.empty()) {
          const auto j = parse_json_or_discard(contents(members[i]));
          if (j.is_object() && j.contains(options.label_key)) json = json_label(j[options.label_key]);
        }
        if (ext == "cls" && cls.empty()) cls = trimmed(contents(members[i]));
      }
      auto label = json.empty() ? cls : json;
      if (!image || label.empty()) {
        ++skipped;
        continue;
      }
      class_indexes = class_indexes && json.empty() && is_whole_number(label);
      samples.push_back({shard, image->offset, image->size});
      set.label_names.push_back(std::move(label));
    }
    if (skipped > 0)
      spdlog::warn("image shard '{}': {} sample(s) without an image or a label ({}.cls or {}.json '{}') left out",
                   file.string(), skipped, "<key>", "<key>", options.label_key);
    set.skipped += skipped;
    shards.push_back(stamp);
  }
  if (class_indexes && !set.label_names.empty()) {
    std::vector<int64_t> ids;
    for (const auto& n : set.label_names) ids.push_back(std::stoll(n));
    const auto max_id = *std::max_element(ids.begin(), ids.end());
    for (int64_t c = 0; c <= max_id; ++c) set.classes.push_back(std::to_string(c));
    set.labels = torch::tensor(ids, torch::kInt64);
  } else {
    auto classes = sorted_ids(set.label_names);
    set.classes = std::move(classes.names);
    set.labels = torch::tensor(classes.ids, torch::kInt64);
  }
  auto dataset = std::make_shared<ShardImageDataset>(std::move(shards), std::move(samples), options);
  // Every image must come out as the first readable one does.
  for (int64_t i = 0; i < dataset->size() && i < 1000 && set.shape.empty(); ++i) {
    try {
      set.shape = dataset->get(i).at("images").sizes().vec();
    } catch (const BadExample&) {
    }
  }
  if (dataset->size() > 0 && set.shape.empty())
    throw std::runtime_error("image shards '" + spec + "': none of the first images can be decoded");
  dataset->set_shape(set.shape);
  set.images = std::move(dataset);
  return set;
}

ShardWriteReport write_image_shards(const fs::path& image_folder, const fs::path& out_dir, const ShardWriteOptions& options) {
  if (options.samples_per_shard < 1) throw std::invalid_argument("samples_per_shard must be at least 1");
  const auto folder = list_image_folder_files(image_folder);
  fs::create_directories(out_dir);
  ShardWriteReport report;
  report.classes = folder.classes;
  std::unique_ptr<TarWriter> writer;
  for (size_t i = 0; i < folder.files.size(); ++i) {
    if (static_cast<int64_t>(i) % options.samples_per_shard == 0) {
      if (writer) writer->close();
      writer = std::make_unique<TarWriter>(out_dir / fmt::format("{}-{:06d}.tar", options.prefix, report.shards++));
    }
    const fs::path file = folder.files[i];
    const auto label = folder.labels[i];
    const auto key = fmt::format("{:09d}", i);
    std::string ext = file.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    writer->add(key + ext, read_file_bytes(file));
    writer->add(key + ".cls", std::to_string(label));
    writer->add(key + ".json", nlohmann::json{{"label", folder.classes[static_cast<size_t>(label)]},
                                              {"source", fs::relative(file, image_folder).string()}}.dump());
    ++report.samples;
  }
  if (writer) writer->close();
  if (report.samples == 0) throw std::runtime_error("image folder '" + image_folder.string() + "' has no images to pack");
  return report;
}

}  // namespace perceiver::datasets
