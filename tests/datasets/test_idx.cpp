#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <cstdlib>
#include <fstream>

#include "datasets/common.h"
#include "datasets/gzip.h"
#include "datasets/idx.h"
#include "datasets/mlm_collator.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;

namespace {
using perceiver::testing::write_file;
using perceiver::testing::error_of;

}  // namespace

TEST(DatasetsIdx, RoundTripPlainAndGzip) {
  perceiver::testing::TempDir tmp;
  const auto u8 = torch::arange(0, 2 * 3 * 4, torch::kInt64).remainder(256).to(torch::kUInt8).view({2, 3, 4});
  const auto f32 = torch::linspace(-3, 5, 12).view({3, 4});
  const auto i32 = torch::tensor({-70000, 1, 65536}, torch::kInt32);
  for (const bool gz : {false, true}) {
    pd::write_idx(tmp.path() / "u8", u8, gz);
    pd::write_idx(tmp.path() / "f32", f32, gz);
    pd::write_idx(tmp.path() / "i32", i32, gz);
    EXPECT_TRUE(pd::read_idx(tmp.path() / "u8").equal(u8));
    EXPECT_TRUE(pd::read_idx(tmp.path() / "f32").equal(f32));
    EXPECT_TRUE(pd::read_idx(tmp.path() / "i32").equal(i32));
  }
  // Our gzip output is accepted by the system gzip (independent check of the container).
  const std::string payload(200000, 'x');
  write_file(tmp.path() / "p.gz", pd::gzip(payload));
  const std::string cmd = "gzip -t '" + (tmp.path() / "p.gz").string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(pd::gunzip(pd::gzip(payload)), payload);
  // Concatenated members (as `cat a.gz b.gz`) and zero padding after the last one.
  EXPECT_EQ(pd::gunzip(pd::gzip("abc") + pd::gzip("def", 0) + std::string(7, '\0')), "abcdef");
  EXPECT_NE(error_of([&] { pd::gunzip(pd::gzip("abc") + "junk"); }).find("garbage"), std::string::npos);
}

TEST(DatasetsIdx, TruncatedAndMalformedFilesGiveClearErrors) {
  perceiver::testing::TempDir tmp;
  pd::write_idx(tmp.path() / "ok", torch::ones({5, 7}, torch::kUInt8));
  std::string bytes = pd::read_file_bytes(tmp.path() / "ok");
  write_file(tmp.path() / "short", bytes.substr(0, bytes.size() - 3));
  EXPECT_NE(error_of([&] { pd::read_idx(tmp.path() / "short"); }).find("truncated"), std::string::npos);
  write_file(tmp.path() / "hdr", bytes.substr(0, 9));
  EXPECT_NE(error_of([&] { pd::read_idx(tmp.path() / "hdr"); }).find("truncated IDX header"), std::string::npos);
  std::string magic = bytes;
  magic[0] = 1;
  write_file(tmp.path() / "magic", magic);
  EXPECT_NE(error_of([&] { pd::read_idx(tmp.path() / "magic"); }).find("magic"), std::string::npos);
  std::string type = bytes;
  type[2] = 0x0A;
  write_file(tmp.path() / "type", type);
  EXPECT_NE(error_of([&] { pd::read_idx(tmp.path() / "type"); }).find("type byte"), std::string::npos);
  const std::string gz = pd::gzip(bytes);
  write_file(tmp.path() / "short.gz", gz.substr(0, gz.size() - 10));
  const std::string err = error_of([&] { pd::read_idx(tmp.path() / "short.gz"); });
  EXPECT_NE(err.find("short.gz"), std::string::npos) << err;
  EXPECT_NE(err.find("gzip"), std::string::npos) << err;
  std::string crc = gz;
  crc[crc.size() - 6] ^= 1;
  EXPECT_NE(error_of([&] { pd::gunzip(crc); }).find("incorrect data check"), std::string::npos);
}

// Regression: the shape product was checked after multiplying, so [2^20, 2^20, 2^24] wrapped to 0
// elements and a 16-byte file passed the size check.
TEST(DatasetsIdx, DimensionProductIsCheckedBeforeItCanWrap) {
  perceiver::testing::TempDir tmp;
  const std::string header = {'\0', '\0', '\x08', '\x03', '\0', '\x10', '\0', '\0', '\0', '\x10', '\0', '\0', '\x01', '\0', '\0', '\0'};
  for (const bool gz : {false, true}) {
    const auto file = tmp.path() / (gz ? "wrap.gz" : "wrap");
    write_file(file, gz ? pd::gzip(header) : header);
    const std::string err = error_of([&] { pd::read_idx(file); });
    EXPECT_NE(err.find(file.string()), std::string::npos) << err;
    EXPECT_NE(err.find("2^40"), std::string::npos) << err;
  }
}

// Regression: the hand-written inflater decompressed everything, without bound. Now a gzip bomb
// costs only what its IDX header announces, and a header cannot announce more than the gzip can hold.
TEST(DatasetsIdx, GzipBombsAreBoundedByTheHeader) {
  perceiver::testing::TempDir tmp;
  const std::string ten_bytes = {'\0', '\0', '\x08', '\x01', '\0', '\0', '\0', '\x0a'};
  const std::string bomb = pd::gzip(ten_bytes + std::string(64 << 20, '\0'), 9);
  ASSERT_LT(bomb.size(), 100000u);
  write_file(tmp.path() / "bomb.gz", bomb);
  EXPECT_NE(error_of([&] { pd::read_idx(tmp.path() / "bomb.gz"); }).find("trailing bytes"), std::string::npos);
  EXPECT_NE(error_of([&] { pd::gunzip(bomb, "bomb", 1 << 20); }).find("more than 1048576 bytes"), std::string::npos);
  // A tiny gzip announcing 2^38 bytes is refused before anything is allocated.
  const std::string huge = {'\0', '\0', '\x08', '\x02', '\0', '\x80', '\0', '\0', '\0', '\0', '\x80', '\0'};
  write_file(tmp.path() / "huge.gz", pd::gzip(huge + std::string(100, '\0')));
  EXPECT_NE(error_of([&] { pd::read_idx(tmp.path() / "huge.gz"); }).find("can hold"), std::string::npos);
}

TEST(DatasetsIdx, FashionMnistOfficialTestSplit) {
  fs::path dir;
  try {
    dir = pd::fashion_mnist_dir();
  } catch (const std::exception& e) {
    FAIL() << "Fashion-MNIST unavailable (run scripts/setup.sh): " << e.what();
  }
  // Independent check of the inflater: the system gzip must produce the same bytes.
  perceiver::testing::TempDir tmp;
  const fs::path gz = dir / "t10k-labels-idx1-ubyte.gz";
  const std::string cmd = "gzip -dc '" + gz.string() + "' > '" + (tmp.path() / "labels").string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(pd::gunzip(pd::read_file_bytes(gz)), pd::read_file_bytes(tmp.path() / "labels"));

  const auto test = pd::load_fashion_mnist(false, dir);
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 28, 28, 1}));
  EXPECT_EQ(test.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(test.classes.size(), 10u);
  EXPECT_EQ(test.classes[9], "Ankle boot");
  // The official test split is balanced: 1000 images per class.
  EXPECT_TRUE(torch::bincount(test.labels).eq(1000).all().item<bool>());
  EXPECT_GT(test.images.to(torch::kFloat).mean().item<float>(), 10.0f);  // not an all-zero decode
}

// The message of the BadExample that reading example i throws ("" when it reads).
std::string bad_example(const pd::Dataset& set, int64_t i) {
  try {
    set.get(i);
  } catch (const pd::BadExample& e) {
    return e.what();
  }
  return "";
}

TEST(DatasetsIdx, ImageFolderIsListedAndDecodedWhenAsked) {
  perceiver::testing::TempDir tmp;
  fs::create_directories(tmp.path() / "cat");
  fs::create_directories(tmp.path() / "ant");
  cv::Mat red(4, 5, CV_8UC3, cv::Scalar(0, 0, 255));  // BGR
  cv::Mat blue(4, 5, CV_8UC3, cv::Scalar(255, 0, 0));
  cv::imwrite((tmp.path() / "cat" / "a.png").string(), red);
  cv::imwrite((tmp.path() / "cat" / "b.png").string(), blue);
  cv::imwrite((tmp.path() / "ant" / "x.png").string(), blue);
  write_file(tmp.path() / "ant" / "broken.png", "not a png");
  write_file(tmp.path() / "ant" / "notes.txt", "ignored");
  const auto set = pd::list_image_folder(tmp.path());
  EXPECT_EQ(set.classes, (std::vector<std::string>{"ant", "cat"}));
  ASSERT_EQ(set.size(), 4);  // broken.png is listed; reading it is what fails
  EXPECT_TRUE(set.labels.equal(torch::tensor({0, 0, 1, 1}, torch::kInt64)));
  EXPECT_EQ(set.shape, (std::vector<int64_t>{4, 5, 3}));  // from the first readable image
  EXPECT_NE(bad_example(*set.images, 0).find("broken.png"), std::string::npos);
  // RGB order: cat/a.png is red.
  const auto a = set.images->get(2).at("images");
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{4, 5, 3}));
  EXPECT_EQ(a[0][0][0].item<uint8_t>(), 255);
  EXPECT_EQ(a[0][0][2].item<uint8_t>(), 0);
  // A file deleted after listing is a bad example too, named.
  fs::remove(tmp.path() / "cat" / "b.png");
  EXPECT_NE(bad_example(*set.images, 3).find("no longer exists"), std::string::npos);
  pd::ImageFolderOptions resize;
  resize.height = 8;
  resize.width = 6;
  const auto resized = pd::list_image_folder(tmp.path(), resize);
  EXPECT_EQ(resized.shape, (std::vector<int64_t>{8, 6, 3}));
  EXPECT_EQ(resized.images->get(1).at("images").sizes(), (std::vector<int64_t>{8, 6, 3}));
}

TEST(DatasetsIdx, ImageListSkipsIncompleteRowsAndNamesMissingColumns) {
  perceiver::testing::TempDir tmp;
  fs::create_directories(tmp.path() / "img");
  cv::imwrite((tmp.path() / "img" / "a.png").string(), cv::Mat(4, 5, CV_8UC3, cv::Scalar(0, 0, 255)));
  cv::imwrite((tmp.path() / "img" / "b.png").string(), cv::Mat(6, 5, CV_8UC3, cv::Scalar(255, 0, 0)));
  write_file(tmp.path() / "img" / "broken.png", "not a png");
  // Paths are relative to the list's folder; a row with an empty label is left out; an unreadable image
  // and a missing file are bad examples when read.
  write_file(tmp.path() / "list.csv",
             "label,image\n\"dog|cat\",img/a.png\ncat,img/broken.png\ncat,img/missing.png\n,img/a.png\n0.5,img/b.png\n");
  pd::ImageListOptions o;
  o.height = 4;
  o.width = 4;
  const auto set = pd::list_image_list(tmp.path() / "list.csv", o);
  EXPECT_EQ(set.label_names, (std::vector<std::string>{"dog|cat", "cat", "cat", "0.5"}));
  EXPECT_EQ(set.classes, (std::vector<std::string>{"0.5", "cat", "dog|cat"}));
  EXPECT_TRUE(set.labels.equal(torch::tensor({2, 1, 1, 0}, torch::kInt64)));
  EXPECT_EQ(set.skipped, 1);
  ASSERT_EQ(set.size(), 4);
  EXPECT_EQ(set.images->get(0).at("images").sizes(), (std::vector<int64_t>{4, 4, 3}));
  EXPECT_EQ(set.images->get(0).at("images")[0][0][0].item<uint8_t>(), 255);  // RGB: a.png is red
  EXPECT_NE(bad_example(*set.images, 1).find("broken.png"), std::string::npos);
  EXPECT_NE(bad_example(*set.images, 2).find("missing.png"), std::string::npos);
  EXPECT_EQ(bad_example(*set.images, 3), "");
  // Without resizing, an image of another size is a bad example naming the file and the fix.
  const auto unsized = pd::list_image_list(tmp.path() / "list.csv");
  const auto why = bad_example(*unsized.images, 3);
  EXPECT_NE(why.find("b.png"), std::string::npos) << why;
  EXPECT_NE(why.find("height and width"), std::string::npos) << why;
  o.label_field = "tags";
  EXPECT_EQ(perceiver::testing::error_of([&] { pd::list_image_list(tmp.path() / "list.csv", o); }),
            "image list '" + (tmp.path() / "list.csv").string() + "': no column 'tags'");
}

TEST(DatasetsIdx, AugmentationCropsWithZeroPaddingAndFlips) {
  const auto img = torch::arange(1, 1 + 6 * 7 * 2, torch::kInt64).to(torch::kUInt8).view({6, 7, 2});
  auto g = pd::make_generator(11);
  pd::AugmentOptions flip_only;
  flip_only.crop_padding = 0;
  flip_only.hflip_probability = 1.0;
  EXPECT_TRUE(pd::augment_images(img, flip_only, g).equal(img.flip({1})));

  pd::AugmentOptions crop;
  crop.crop_padding = 2;
  crop.hflip_probability = 0.0;
  const auto batch = img.unsqueeze(0).expand({32, 6, 7, 2}).contiguous();
  auto g1 = pd::make_generator(1), g2 = pd::make_generator(1);
  const auto a = pd::augment_images(batch, crop, g1);
  EXPECT_TRUE(a.equal(pd::augment_images(batch, crop, g2)));
  const auto padded = torch::constant_pad_nd(img, {0, 0, 2, 2, 2, 2}, 0);
  int distinct = 0;
  for (int64_t i = 0; i < 32; ++i) {
    bool found = false;  // each output is one of the 25 shifted windows of the zero-padded image
    for (int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (int64_t dx = 0; dx <= 4 && !found; ++dx)
        found = a[i].equal(padded.slice(0, dy, dy + 6).slice(1, dx, dx + 7));
    EXPECT_TRUE(found) << "image " << i;
    distinct += a[i].equal(img) ? 0 : 1;
  }
  EXPECT_GT(distinct, 0);
}
