// Labelled images in sharded tar archives, WebDataset's layout: shard-000000.tar, ... each holding
// <key>.jpg (or .png, .webp, ...) with <key>.cls (a class index or name) and/or <key>.json (a
// `label_key` field). Shards are listed by their headers alone; every example is then one positional
// read of its image member, decoded in the loader's workers. The global shuffled order, rank sharding
// and exact resume are the loader's, as for any indexed data set, so the same seed gives the same
// batches whatever the workers or ranks.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "datasets/images.h"

namespace perceiver::datasets {

struct ImageShardOptions : ImageFolderOptions {
  std::string label_key = "label";  // the field of <key>.json that holds the label
};

// The shard files `spec` names: a directory's *.tar files, one .tar file, or a brace range such as
// "shards/train-{000000..000099}.tar" (zero padding kept). Throws naming what is missing.
std::vector<std::filesystem::path> shard_files(const std::string& spec);

// Lists every shard's samples. Samples without an image or a label, and the rest of a shard after a
// corrupt header, are left out and counted in `skipped` (with one warning per shard). When every label
// is a .cls class index (a whole number), the labels are class ids with classes "0".."max"; otherwise
// (.json labels win over .cls) classes are the sorted distinct label fields.
ImageSet open_image_shards(const std::string& spec, const ImageShardOptions& options = {});

struct ShardWriteOptions {
  int64_t samples_per_shard = 1000;
  std::string prefix = "shard";
};
struct ShardWriteReport {
  int64_t shards = 0;
  int64_t samples = 0;
  std::vector<std::string> classes;
};
// Packs an image folder (root/<class>/<image>) into out_dir/<prefix>-000000.tar, ...: each image's
// file bytes as <key>.<ext>, its class index as <key>.cls and its class name as <key>.json {"label"}.
// Images keep their encoding; the order is the folder's (sorted), so shuffling is the loader's job.
ShardWriteReport write_image_shards(const std::filesystem::path& image_folder, const std::filesystem::path& out_dir,
                                    const ShardWriteOptions& options = {});

}  // namespace perceiver::datasets
