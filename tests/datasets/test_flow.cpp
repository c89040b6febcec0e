#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <fstream>

#include "datasets/common.h"
#include "datasets/flow.h"
#include "datasets/sources.h"
#include "trainers/task_options.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;

namespace {
using perceiver::testing::write_file;
using perceiver::testing::error_of;


void write_png(const fs::path& p, int h, int w, int value) {
  fs::create_directories(p.parent_path());
  cv::imwrite(p.string(), cv::Mat(h, w, CV_8UC3, cv::Scalar(value, value, value)));
}
}  // namespace

TEST(DatasetsFlow, FloRoundTripAndErrors) {
  perceiver::testing::TempDir tmp;
  const auto flow = torch::randn({5, 7, 2});
  pd::write_flo(tmp.path() / "a.flo", flow);
  const std::string bytes = pd::read_file_bytes(tmp.path() / "a.flo");
  EXPECT_EQ(bytes.substr(0, 4), "PIEH");
  EXPECT_EQ(bytes.size(), 12u + 5 * 7 * 2 * 4);
  EXPECT_TRUE(pd::read_flo(tmp.path() / "a.flo").equal(flow));

  std::string magic = bytes;
  magic[0] = 'X';
  write_file(tmp.path() / "magic.flo", magic);
  EXPECT_NE(error_of([&] { pd::read_flo(tmp.path() / "magic.flo"); }).find("magic"), std::string::npos);
  write_file(tmp.path() / "short.flo", bytes.substr(0, bytes.size() - 4));
  const std::string err = error_of([&] { pd::read_flo(tmp.path() / "short.flo"); });
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  EXPECT_NE(err.find("short.flo"), std::string::npos) << err;
  write_file(tmp.path() / "long.flo", bytes + "xx");
  EXPECT_NE(error_of([&] { pd::read_flo(tmp.path() / "long.flo"); }).find("trailing"), std::string::npos);
  std::string huge = bytes;
  const int32_t big = 2000000000;
  std::memcpy(huge.data() + 4, &big, 4);
  write_file(tmp.path() / "huge.flo", huge);
  EXPECT_FALSE(error_of([&] { pd::read_flo(tmp.path() / "huge.flo"); }).empty());
  write_file(tmp.path() / "tiny.flo", "PIEH");
  EXPECT_FALSE(error_of([&] { pd::read_flo(tmp.path() / "tiny.flo"); }).empty());
}

TEST(DatasetsFlow, SintelAndChairsDiscovery) {
  perceiver::testing::TempDir tmp;
  const fs::path sintel = tmp.path() / "sintel";
  for (const std::string scene : {"market_2", "alley_1"}) {
    for (int i = 1; i <= 3; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "frame_%04d", i);
      write_png(sintel / "training" / "clean" / scene / (std::string(name) + ".png"), 6, 8, 10 * i);
      if (i < 3) {
        fs::create_directories(sintel / "training" / "flow" / scene);
        pd::write_flo(sintel / "training" / "flow" / scene / (std::string(name) + ".flo"), torch::full({6, 8, 2}, float(i)));
      }
    }
  }
  const auto pairs = pd::discover_sintel(sintel, "clean");
  ASSERT_EQ(pairs.size(), 4u);
  EXPECT_EQ(pairs[0].group, "alley_1");
  EXPECT_EQ(pairs[0].frame1.filename(), "frame_0001.png");
  EXPECT_EQ(pairs[1].frame2.filename(), "frame_0003.png");
  EXPECT_EQ(pairs[1].flow.filename(), "frame_0002.flo");
  const auto s = pd::load_flow_sample(pairs[1]);
  EXPECT_EQ(s.frame1.sizes(), (std::vector<int64_t>{6, 8, 3}));
  EXPECT_EQ(s.frame1[0][0][0].item<float>(), 20.0f);
  EXPECT_EQ(s.frame2[0][0][0].item<float>(), 30.0f);
  EXPECT_TRUE(s.flow.eq(2.0f).all().item<bool>());
  EXPECT_THROW(pd::discover_sintel(sintel, "final"), std::runtime_error);
  fs::remove(sintel / "training" / "flow" / "market_2" / "frame_0002.flo");
  EXPECT_NE(error_of([&] { pd::discover_sintel(sintel, "clean"); }).find("frame_0002.flo"), std::string::npos);

  const fs::path chairs = tmp.path() / "chairs" / "data";
  for (const std::string id : {"00002", "00001"}) {
    write_png(chairs / (id + "_img1.ppm"), 4, 4, 1);
    write_png(chairs / (id + "_img2.ppm"), 4, 4, 2);
    pd::write_flo(chairs / (id + "_flow.flo"), torch::zeros({4, 4, 2}));
  }
  const auto all = pd::discover_flying_chairs(tmp.path() / "chairs");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].frame1.filename(), "00001_img1.ppm");
  write_file(tmp.path() / "split.txt", "1\n2\n");
  const auto val = pd::discover_flying_chairs(tmp.path() / "chairs", tmp.path() / "split.txt", 2);
  ASSERT_EQ(val.size(), 1u);
  EXPECT_EQ(val[0].flow.filename(), "00002_flow.flo");
  EXPECT_EQ(pd::load_flow_sample(val[0]).frame2[1][1][1].item<float>(), 2.0f);
}

TEST(DatasetsFlow, SyntheticPanShiftsEveryPairsFlowAndStaysExact) {
  pd::SyntheticFlowOptions still;
  still.height = 32;
  still.width = 40;
  still.max_displacement = 1.0;
  auto panned = still;
  panned.pan = {2.5, -1.5};
  const auto a = pd::synthetic_flow_sample(still, 4);
  const auto b = pd::synthetic_flow_sample(panned, 4);
  EXPECT_TRUE(b.frame2.equal(a.frame2));  // same texture, seen from a moved camera in frame 1
  EXPECT_TRUE(torch::allclose(b.flow.select(2, 0), a.flow.select(2, 0) + 2.5, 0, 1e-5));
  EXPECT_TRUE(torch::allclose(b.flow.select(2, 1), a.flow.select(2, 1) - 1.5, 0, 1e-5));
  // Interior pixels: frame 2 warped by the panned flow reproduces frame 1.
  const auto warped = pd::warp_backward(b.frame2, b.flow);
  const auto interior = [](const torch::Tensor& t) { return t.slice(0, 4, 28).slice(1, 4, 34); };
  const double err = (interior(warped) - interior(b.frame1)).abs().mean().item<double>();
  const double baseline = (interior(b.frame2) - interior(b.frame1)).abs().mean().item<double>();
  EXPECT_LT(err, 0.1 * baseline) << "warp error " << err << " vs no-warp " << baseline;
}

TEST(DatasetsFlow, SyntheticGroundTruthIsExact) {
  pd::SyntheticFlowOptions opt;
  opt.height = 48;
  opt.width = 64;
  opt.max_displacement = 5.0;
  opt.seed = 3;
  const auto a = pd::synthetic_flow_sample(opt, 7);
  const auto b = pd::synthetic_flow_sample(opt, 7);
  const auto c = pd::synthetic_flow_sample(opt, 8);
  EXPECT_TRUE(a.frame1.equal(b.frame1) && a.frame2.equal(b.frame2) && a.flow.equal(b.flow));
  EXPECT_FALSE(a.flow.equal(c.flow));
  ASSERT_EQ(a.frame1.sizes(), (std::vector<int64_t>{48, 64, 3}));
  ASSERT_EQ(a.flow.sizes(), (std::vector<int64_t>{48, 64, 2}));
  for (const auto* s : {&a, &c}) {
    const auto mag = s->flow.square().sum(-1).sqrt();
    EXPECT_LE(mag.max().item<float>(), opt.max_displacement + 1e-4);
    EXPECT_GE(mag.max().item<float>(), 0.5 * opt.max_displacement - 1e-4);
    // Interior: pixels whose target p + flow(p) lies inside frame 2.
    const auto xs = torch::arange(64, torch::kFloat).view({1, -1}) + s->flow.select(2, 0);
    const auto ys = torch::arange(48, torch::kFloat).view({-1, 1}) + s->flow.select(2, 1);
    const auto inside = xs.ge(0).logical_and(xs.le(63)).logical_and(ys.ge(0)).logical_and(ys.le(47)).unsqueeze(-1).expand({48, 64, 3});
    const auto warped = pd::warp_backward(s->frame2, s->flow);
    const double err = (warped - s->frame1).abs().masked_select(inside).mean().item<double>();
    const double baseline = (s->frame2 - s->frame1).abs().masked_select(inside).mean().item<double>();
    EXPECT_LT(err, 0.1 * baseline) << "warp error " << err << " vs no-warp " << baseline;
    EXPECT_LT(err, 1.5);  // bilinear interpolation error of a smooth texture, on a 0..255 scale
  }
}

TEST(DatasetsFlow, PatchExtractionOrderAndPadding) {
  const auto img = torch::randn({2, 3, 4, 5});
  const auto p = pd::extract_patches_3x3(img);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 27, 4, 5}));
  auto a = img.accessor<float, 4>();
  auto q = p.accessor<float, 4>();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        for (int64_t dy = 0; dy < 3; ++dy)
          for (int64_t dx = 0; dx < 3; ++dx)
            for (int64_t c = 0; c < 3; ++c) {
              const int64_t sy = y + dy - 1, sx = x + dx - 1;
              const float expect = (sy < 0 || sy >= 4 || sx < 0 || sx >= 5) ? 0.0f : a[b][c][sy][sx];
              ASSERT_EQ(q[b][(dy * 3 + dx) * 3 + c][y][x], expect) << b << " " << y << " " << x << " " << dy << dx << c;
            }

  const auto f1 = torch::rand({6, 7, 3}) * 255, f2 = torch::rand({6, 7, 3}) * 255;
  const auto in = pd::flow_model_input(f1, f2);
  ASSERT_EQ(in.sizes(), (std::vector<int64_t>{1, 2, 27, 6, 7}));
  // The centre of the 3x3 neighbourhood (dy = dx = 1) is the pixel itself, scaled to [-1, 1].
  EXPECT_TRUE(torch::allclose(in[0][0].slice(0, 12, 15), f1.permute({2, 0, 1}) / 255 * 2 - 1));
  EXPECT_TRUE(torch::allclose(in[0][1].slice(0, 12, 15), f2.permute({2, 0, 1}) / 255 * 2 - 1));
}

TEST(DatasetsFlow, ShiftedImageGroundTruthIsExactAndInsideTheImage) {
  torch::manual_seed(5);
  const std::vector<torch::Tensor> images = {torch::rand({40, 50, 3}) * 255, torch::rand({60, 45, 3}) * 255};
  pd::ShiftedImageOptions o;
  o.height = 24;
  o.width = 32;
  o.max_displacement = 2.5;
  o.seed = 4;
  double largest = 0;
  for (uint64_t i = 0; i < 40; ++i) {
    const auto s = pd::shifted_image_sample(images, o, i);
    ASSERT_EQ(s.frame1.sizes(), (std::vector<int64_t>{24, 32, 3}));
    ASSERT_EQ(s.flow.sizes(), (std::vector<int64_t>{24, 32, 2}));
    // One translation per pair, inside the disc.
    const auto d = s.flow[0][0];
    EXPECT_TRUE(s.flow.sub(d).abs().max().item<float>() == 0);
    const double norm = d.norm().item<double>();
    EXPECT_LE(norm, o.max_displacement + 1e-6);
    largest = std::max(largest, norm);
    // frame2 is a crop of image i mod 2, at integer offsets.
    const auto& image = images[i % 2];
    bool found = false;
    for (int64_t y = 0; y + 24 <= image.size(0) && !found; ++y)
      for (int64_t x = 0; x + 32 <= image.size(1) && !found; ++x)
        found = image.narrow(0, y, 24).narrow(1, x, 32).equal(s.frame2);
    EXPECT_TRUE(found) << "pair " << i;
    // frame2 sampled at p + d is frame1(p) wherever p + d lies inside the crop (exactly: both are the
    // bilinear interpolant of the same pixels; float rounding of 0..255 values aside).
    const auto warped = pd::warp_backward(s.frame2, s.flow);
    const int64_t m = 3;  // ceil(2.5): p + d stays inside
    EXPECT_LT((warped - s.frame1).narrow(0, m, 24 - 2 * m).narrow(1, m, 32 - 2 * m).abs().max().item<float>(), 5e-3)
        << "pair " << i;
  }
  EXPECT_GT(largest, 0.5 * o.max_displacement);
  // Same (seed, index), same pair; the next index, another.
  EXPECT_TRUE(pd::shifted_image_sample(images, o, 7).frame1.equal(pd::shifted_image_sample(images, o, 7).frame1));
  EXPECT_FALSE(pd::shifted_image_sample(images, o, 7).flow.equal(pd::shifted_image_sample(images, o, 9).flow));
  // An image too small for a pair is refused with its size.
  const auto small = error_of([&] { pd::shifted_image_sample({torch::zeros({20, 40, 3})}, o, 0); });
  EXPECT_NE(small.find("smaller than the 32x40"), std::string::npos) << small;
}

TEST(DatasetsFlow, ShiftedImagesSourceReadsAFolderOrAFileAndNamesWhatIsWrong) {
  perceiver::testing::TempDir tmp;
  cv::Mat photo(60, 80, CV_8UC3);
  cv::randu(photo, 0, 255);
  fs::create_directories(tmp.path() / "photos");
  cv::imwrite((tmp.path() / "photos" / "a.png").string(), photo);
  cv::imwrite((tmp.path() / "photos" / "b.jpg").string(), photo);
  write_file(tmp.path() / "photos" / "notes.txt", "not an image");
  auto make = [&](const std::string& yaml) {
    perceiver::trainers::SourceSection s(YAML::Load(yaml), "run.yaml", "data.eval");
    return pd::find_source(pd::flow_sources(), s, "flow")(s, 24, 32);
  };
  const auto folder = make("{type: shifted_images, path: '" + (tmp.path() / "photos").string() + "', count: 5}");
  EXPECT_EQ(folder.count, 5);
  const auto pair = folder.sample(3);
  EXPECT_EQ(pair.frame1.sizes(), (std::vector<int64_t>{24, 32, 3}));
  // short_side shrinks the image first: 30 pixels leave room for 24-pixel crops.
  const auto file = make("{type: shifted_images, path: '" + (tmp.path() / "photos" / "a.png").string() +
                         "', short_side: 30, max_displacement: 1}");
  EXPECT_EQ(file.count, 128);
  EXPECT_EQ(file.sample(0).frame2.sizes(), (std::vector<int64_t>{24, 32, 3}));
  const auto too_small = error_of([&] {
    make("{type: shifted_images, path: '" + (tmp.path() / "photos").string() + "', short_side: 20}");
  });
  EXPECT_NE(too_small.find("a.png' is 27x20 pixels after short_side"), std::string::npos) << too_small;
  const auto missing = error_of([&] { make("{type: shifted_images, path: '" + (tmp.path() / "none").string() + "'}"); });
  EXPECT_NE(missing.find("neither an image file nor a folder"), std::string::npos) << missing;
  fs::create_directories(tmp.path() / "empty");
  const auto empty = error_of([&] { make("{type: shifted_images, path: '" + (tmp.path() / "empty").string() + "'}"); });
  EXPECT_NE(empty.find("no image files in"), std::string::npos) << empty;
}
