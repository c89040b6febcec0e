// Labelled images: the set every image source produces (images read and decoded one by one as the
// loader asks for them, labels in memory), image folders (one subfolder per class) and CSV image lists
// decoded with OpenCV, and simple augmentation.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "datasets/loader.h"

namespace perceiver {
class PerceiverImageProcessor;
}  // namespace perceiver

namespace perceiver::datasets {

// Images in memory (IDX files, Fashion-MNIST).
struct ImageClassificationSet {
  torch::Tensor images;              // (N, H, W, C) uint8
  torch::Tensor labels;              // (N) int64
  std::vector<std::string> classes;  // id -> name
};

// What every image source gives the task.
struct ImageSet {
  std::shared_ptr<const Dataset> images;  // examples {"images": (H, W, C) uint8}
  std::vector<int64_t> shape;             // (H, W, C), the same for every image
  torch::Tensor labels;                   // (N) int64: class ids (indexes into classes)
  std::vector<std::string> classes;       // id -> name
  std::vector<std::string> label_names;   // the raw label field per image (image lists and shards)
  int64_t skipped = 0;                    // entries left out while listing (image lists: incomplete rows)

  int64_t size() const { return images ? images->size() : 0; }
};

// How a source turns one image file into its example.
struct ImageFolderOptions {
  int64_t height = 0;  // > 0 with width: resize every image (INTER_AREA); 0: keep the size
  int64_t width = 0;
  bool grayscale = false;  // C = 1, else RGB C = 3
  // HF's centre crop and resize (a model's preprocessor_config.json), in place of height and width.
  std::shared_ptr<const PerceiverImageProcessor> processor;
  std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"};
};
// A regular file whose extension (any case) is one of options.extensions.
bool is_image_file(const std::filesystem::directory_entry& entry, const ImageFolderOptions& options = {});

// An encoded image (`bytes`, named `source` in errors) as its example: decoded, then cropped and
// resized by the options. Throws BadExample when it cannot be decoded or its size differs from a
// non-empty `shape` (H, W, C).
torch::Tensor decode_image(const std::string& bytes, const std::string& source, const ImageFolderOptions& options,
                           const std::vector<int64_t>& shape = {});

// Image files read when asked for; `shape` (H, W, C) is what every decoded image must have, found from
// the first readable file when empty (throwing when none is readable).
class ImageFileDataset : public Dataset {
 public:
  ImageFileDataset(std::vector<std::string> files, ImageFolderOptions options, std::vector<int64_t> shape = {});
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  Example get(int64_t index) const override;
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::string& file(int64_t index) const { return files_[static_cast<size_t>(index)]; }

 private:
  std::vector<std::string> files_;
  ImageFolderOptions options_;
  std::vector<int64_t> shape_;
};

// root/<class>/<image>: classes are the sorted subfolder names, files sorted within each class.
struct ImageFolderListing {
  std::vector<std::string> files;
  std::vector<int64_t> labels;  // class id per file
  std::vector<std::string> classes;
};
ImageFolderListing list_image_folder_files(const std::filesystem::path& root, const ImageFolderOptions& options = {});
// The same as an ImageSet: images are listed, not decoded.
ImageSet list_image_folder(const std::filesystem::path& root, const ImageFolderOptions& options = {});

// A CSV manifest: one row per image with a path (relative to the CSV's folder) and a label field (a
// class name, a '|'-separated label list or a number: the task's problem type decides). Classes are
// the sorted distinct label fields; rows with an empty field are skipped.
struct ImageListOptions : ImageFolderOptions {
  std::string image_field = "image";
  std::string label_field = "label";
};
ImageSet list_image_list(const std::filesystem::path& csv, const ImageListOptions& options = {});

// Decoded images cropped and resized as `options` say (processor, or height and width) when each is
// asked for; `images` itself when there is nothing to do.
std::shared_ptr<const Dataset> processed_images(std::shared_ptr<const Dataset> images, const ImageFolderOptions& options);

// Images held in memory, as an ImageSet (processed as options say).
ImageSet in_memory_images(ImageClassificationSet set, const ImageFolderOptions& options = {});

// Decodes one image file to (H, W, C) uint8 RGB (or gray); throws BadExample naming the file when it cannot.
torch::Tensor read_image(const std::filesystem::path& path, bool grayscale = false);

struct AugmentOptions {
  int64_t crop_padding = 4;        // zero padding before a random crop back to the input size (0: no crop)
  double hflip_probability = 0.5;  // horizontal flip
};
// (H, W, C) or (N, H, W, C) uint8; each image gets its own crop offset and flip.
torch::Tensor augment_images(const torch::Tensor& images, const AugmentOptions& options, at::Generator& generator);
// (N, H, W, C): image i drawn from rows[i] alone (one generator per example).
torch::Tensor augment_images(const torch::Tensor& images, const AugmentOptions& options, std::vector<at::Generator>& rows);

}  // namespace perceiver::datasets
