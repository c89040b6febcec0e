// Images as an image folder, an image list and WebDataset-style tar shards: the same examples and the
// same batches, whatever the number of loader workers; bad files skipped and counted.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <fstream>

#include "datasets/common.h"
#include "datasets/image_shards.h"
#include "datasets/images.h"
#include "datasets/tar.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;
using perceiver::testing::TempDir;
using perceiver::testing::write_file;

namespace {

// root/<class>/<i>.png: 3 classes of 5 images (6x5, each its own colour), and one corrupt file.
void write_image_folder(const fs::path& root) {
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 5; ++i) {
      const cv::Mat m(6, 5, CV_8UC3, cv::Scalar(10 * i, 40 * c, 200 - 7 * i - c));
      cv::imwrite((root / ("class" + std::to_string(c)) / (std::to_string(i) + ".png")).string(),
                  (fs::create_directories(root / ("class" + std::to_string(c))), m));
    }
  }
  write_file(root / "class1" / "9_broken.png", "\x89PNG but not really");
}

// Examples {"images", "labels"} of an image set, as the image task makes them.
std::shared_ptr<const pd::Dataset> labelled(const pd::ImageSet& set) {
  return std::make_shared<pd::MappedDataset>(set.images, [labels = set.labels](pd::Example e, int64_t i) {
    e["labels"] = labels[i];
    return e;
  });
}

std::vector<torch::Tensor> batches(const pd::ImageSet& set, int workers) {
  pd::LoaderOptions o;
  o.batch_size = 4;
  o.seed = 5;
  o.num_workers = workers;
  pd::DataLoader loader(labelled(set), o);
  std::vector<torch::Tensor> out;
  while (auto b = loader.next()) {
    out.push_back(b->at("images"));
    out.push_back(b->at("labels"));
  }
  EXPECT_EQ(loader.skipped(), 1) << workers << " workers";  // the corrupt file, once per epoch
  return out;
}

void expect_same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].equal(b[i])) << what << ", tensor " << i;
}

}  // namespace

TEST(DatasetsImageShards, FolderListAndShardsGiveTheSameBatchesForAnyWorkers) {
  TempDir tmp;
  write_image_folder(tmp.path() / "folder");
  const auto folder = pd::list_image_folder(tmp.path() / "folder");
  ASSERT_EQ(folder.size(), 16);

  // The same files as a CSV list, in the folder's order.
  {
    std::ofstream csv(tmp.path() / "list.csv");
    csv << "image,label\n";
    const auto listing = pd::list_image_folder_files(tmp.path() / "folder");
    for (size_t i = 0; i < listing.files.size(); ++i)
      csv << fs::relative(listing.files[i], tmp.path()).string() << "," << listing.classes[static_cast<size_t>(listing.labels[i])] << "\n";
  }
  const auto list = pd::list_image_list(tmp.path() / "list.csv");

  pd::ShardWriteOptions w;
  w.samples_per_shard = 6;
  const auto report = pd::write_image_shards(tmp.path() / "folder", tmp.path() / "shards", w);
  EXPECT_EQ(report.shards, 3);
  EXPECT_EQ(report.samples, 16);
  const auto shards = pd::open_image_shards((tmp.path() / "shards").string());
  const auto ranged = pd::open_image_shards((tmp.path() / "shards" / "shard-{000000..000002}.tar").string());
  for (const auto* set : {&list, &shards, &ranged}) {
    EXPECT_EQ(set->classes, folder.classes);
    EXPECT_TRUE(set->labels.equal(folder.labels));
    EXPECT_EQ(set->shape, folder.shape);
  }

  const auto reference = batches(folder, 0);
  for (const int workers : {0, 1, 3}) {
    expect_same(batches(folder, workers), reference, "folder, " + std::to_string(workers) + " workers");
    expect_same(batches(list, workers), reference, "list, " + std::to_string(workers) + " workers");
    expect_same(batches(shards, workers), reference, "shards, " + std::to_string(workers) + " workers");
  }
}

TEST(DatasetsImageShards, SamplesWithoutLabelsAndDamagedShardsAreLeftOutAndCounted) {
  TempDir tmp;
  const auto png = [](int v) {
    std::vector<uchar> bytes;
    cv::imencode(".png", cv::Mat(3, 3, CV_8UC3, cv::Scalar(v, v, v)), bytes);
    return std::string(bytes.begin(), bytes.end());
  };
  {
    pd::TarWriter t(tmp.path() / "a.tar");
    t.add("s0.png", png(1));
    t.add("s0.cls", "2\n");
    t.add("s1.png", png(2));  // no label
    t.add("s2.jpg.json", "{}");
    t.add("s3.png", png(3));
    t.add("s3.cls", "0");
    t.close();
  }
  auto set = pd::open_image_shards((tmp.path() / "a.tar").string());
  EXPECT_EQ(set.size(), 2);
  EXPECT_EQ(set.skipped, 2);
  EXPECT_EQ(set.classes, (std::vector<std::string>{"0", "1", "2"}));  // .cls indexes: class ids
  EXPECT_TRUE(set.labels.equal(torch::tensor({2, 0}, torch::kInt64)));
  EXPECT_EQ(set.images->get(1).at("images")[0][0][0].item<uint8_t>(), 3);
  {
    fs::create_directories(tmp.path() / "named");
    pd::TarWriter t(tmp.path() / "named" / "b.tar");
    t.add("x.png", png(4));
    t.add("x.cls", "7");
    t.add("x.json", R"({"label": "zebra", "other": 1})");  // a .json label wins: classes are names
    t.add("y.png", png(5));
    t.add("y.json", R"({"label": 0})");
    t.close();
  }
  const auto named = pd::open_image_shards((tmp.path() / "named").string());
  EXPECT_EQ(named.classes, (std::vector<std::string>{"0", "zebra"}));
  EXPECT_TRUE(named.labels.equal(torch::tensor({1, 0}, torch::kInt64)));

  // A shard cut in the middle: the samples before the cut are used.
  const auto whole = pd::read_file_bytes(tmp.path() / "a.tar");
  write_file(tmp.path() / "cut" / "b.tar", whole.substr(0, 512 * 6));
  set = pd::open_image_shards((tmp.path() / "cut").string());
  EXPECT_EQ(set.size(), 1);
  // A shard changed after listing: its examples are bad, named by the shard.
  write_file(tmp.path() / "a.tar", whole + std::string(1024, '\0'));
  set = pd::open_image_shards((tmp.path() / "a.tar").string());
  write_file(tmp.path() / "a.tar", whole);
  try {
    set.images->get(0);
    FAIL() << "expected a BadExample";
  } catch (const pd::BadExample& e) {
    EXPECT_EQ(e.source(), (tmp.path() / "a.tar").string());
  }
  EXPECT_THROW(pd::open_image_shards((tmp.path() / "none-{0..3}.tar").string()), std::runtime_error);

  // Class folders named by numbers keep their names (and the folder's order) through shards.
  for (const char* cls : {"2", "10"}) {
    fs::create_directories(tmp.path() / "numbered" / cls);
    cv::imwrite((tmp.path() / "numbered" / cls / "a.png").string(), cv::Mat(3, 3, CV_8UC3, cv::Scalar(9, 9, 9)));
  }
  pd::write_image_shards(tmp.path() / "numbered", tmp.path() / "numbered-shards");
  const auto numbered = pd::open_image_shards((tmp.path() / "numbered-shards").string());
  EXPECT_EQ(numbered.classes, pd::list_image_folder(tmp.path() / "numbered").classes);
  EXPECT_EQ(numbered.classes, (std::vector<std::string>{"10", "2"}));
}
