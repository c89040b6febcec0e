// PerceiverImageProcessor and the Pillow-exact resampler: against HF's fixtures (made with HF +
// Pillow) and against independent computations for what the fixtures do not cover.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <type_traits>

#include <opencv2/imgcodecs.hpp>

#include "perceiver/processing/image_processor.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/processing/pil_resample.h"
#include "tests/test_support.h"

namespace perceiver {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::hf_fixtures_dir;
using testing::TempDir;

static_assert(std::is_same_v<PerceiverFeatureExtractor, PerceiverImageProcessor>);

fs::path fixture_dir() { return hf_fixtures_dir() / "image_processor"; }

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return json::parse(in);
}

torch::Tensor mat_to_tensor(const cv::Mat& image) {
  cv::Mat m = image.isContinuous() ? image : image.clone();
  return torch::from_blob(m.ptr<uint8_t>(), {m.rows, m.cols, m.channels()}, torch::kUInt8).clone();
}

cv::Mat random_image(int h, int w, int type, unsigned seed) {
  cv::Mat m(h, w, type);
  cv::RNG rng(seed);
  rng.fill(m, cv::RNG::UNIFORM, 0, 256);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Against HF's fixtures.

TEST(ImageProcessorFixture, EveryCaseMatchesHf) {
  const json meta = read_json(fixture_dir() / "meta.json");
  const PerceiverImageProcessor processor(ImageProcessorOptions::from_json(meta["processor_config"], "meta.json"));
  ASSERT_FALSE(meta["cases"].empty());
  for (const auto& c : meta["cases"]) {
    SCOPED_TRACE(c["image"].get<std::string>());
    const cv::Mat rgb = load_image_rgb(fixture_dir() / c["image"].get<std::string>());
    EXPECT_EQ((std::vector<int64_t>{rgb.rows, rgb.cols, rgb.channels()}), c["input_shape_hwc"].get<std::vector<int64_t>>());

    const cv::Mat cropped = processor.center_crop(rgb);
    EXPECT_EQ((std::vector<int64_t>{cropped.rows, cropped.cols, cropped.channels()}),
              c["center_crop_shape_hwc"].get<std::vector<int64_t>>());

    const auto expected = io::load_safetensors(fixture_dir() / c["expected_file"].get<std::string>());
    const torch::Tensor resized = mat_to_tensor(processor.crop_and_resize(rgb));
    const torch::Tensor& want_resized = expected.at("resized");
    ASSERT_EQ(resized.sizes(), want_resized.sizes());
    EXPECT_EQ(resized.ne(want_resized).sum().item<int64_t>(), 0) << "uint8 intermediate differs from Pillow's";

    const torch::Tensor pixels = processor({rgb});
    const torch::Tensor& want = expected.at(c["expected"].get<std::string>());
    EXPECT_EQ(pixels.scalar_type(), torch::kFloat32);
    EXPECT_EQ(perceiver::testing::tensor_mismatch(pixels, want, 1e-5, 0), "");
  }
}

TEST(ImageProcessorFixture, BatchOfDifferentSizesStacksPerImageResults) {
  const json meta = read_json(fixture_dir() / "meta.json");
  const PerceiverFeatureExtractor processor(ImageProcessorOptions::from_json(meta["processor_config"], "meta.json"));
  std::vector<fs::path> files;
  std::vector<torch::Tensor> expected;
  for (const auto& c : meta["cases"]) {
    files.push_back(fixture_dir() / c["image"].get<std::string>());
    expected.push_back(io::load_safetensors(fixture_dir() / c["expected_file"].get<std::string>()).at("pixel_values"));
  }
  const torch::Tensor batch = processor.preprocess_files(files);
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{static_cast<int64_t>(files.size()), 3, 224, 224}));
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(perceiver::testing::tensor_mismatch(batch[i], expected[i][0], 1e-5, 0), "") << files[i];
  }
}

TEST(ImageProcessorFixture, OptionsLoadFromPreprocessorConfigAndRoundTrip) {
  const json meta = read_json(fixture_dir() / "meta.json");
  TempDir tmp;
  std::ofstream(tmp.path() / "preprocessor_config.json") << meta["processor_config"].dump(2);
  const auto processor = PerceiverImageProcessor::from_pretrained(tmp.path());
  const auto& o = processor.options();
  const auto& cfg = meta["processor_config"];
  EXPECT_EQ(o.do_center_crop, cfg["do_center_crop"].get<bool>());
  EXPECT_EQ(o.crop_size.height, cfg["crop_size"]["height"].get<int>());
  EXPECT_EQ(o.size.width, cfg["size"]["width"].get<int>());
  EXPECT_EQ(static_cast<int>(o.resample), cfg["resample"].get<int>());
  EXPECT_EQ(o.rescale_factor, cfg["rescale_factor"].get<double>());
  EXPECT_EQ(o.image_mean, cfg["image_mean"].get<std::vector<double>>());
  EXPECT_EQ(o.image_std, cfg["image_std"].get<std::vector<double>>());
  // to_json carries everything from_json reads.
  EXPECT_EQ(ImageProcessorOptions::from_json(o.to_json()).to_json(), o.to_json());
}

// ---------------------------------------------------------------------------------------------
// Options validation.

void expect_error_mentions(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(ImageProcessorOptions, DefaultsAreHfs) {
  const ImageProcessorOptions o = ImageProcessorOptions::from_json(json::object());
  EXPECT_TRUE(o.do_center_crop && o.do_resize && o.do_rescale && o.do_normalize);
  EXPECT_EQ(o.crop_size.height, 256);
  EXPECT_EQ(o.size.height, 224);
  EXPECT_EQ(o.resample, image::PilFilter::Bicubic);
  EXPECT_DOUBLE_EQ(o.rescale_factor, 1.0 / 255);
}

TEST(ImageProcessorOptions, IntSizeMeansSquareAndScalarMeanIsReplicated) {
  const auto o = ImageProcessorOptions::from_json(json{{"size", 96}, {"crop_size", 128}, {"image_mean", 0.5}});
  EXPECT_EQ(o.size.height, 96);
  EXPECT_EQ(o.size.width, 96);
  EXPECT_EQ(o.crop_size.width, 128);
  EXPECT_EQ(o.image_mean, (std::vector<double>{0.5, 0.5, 0.5}));
}

TEST(ImageProcessorOptions, BadValuesNameKeyAndFile) {
  TempDir tmp;
  const auto write = [&](const json& j) {
    const auto p = tmp.path() / "preprocessor_config.json";
    std::ofstream(p) << j.dump();
    return p;
  };
  const std::vector<std::pair<json, std::string>> cases = {
      {json{{"size", {{"height", 0}, {"width", 4}}}}, "size.height"},
      {json{{"size", {{"height", 4}, {"width", 8193}}}}, "size.width"},  // more than 8192 pixels a side
      {json{{"crop_size", 60000}}, "crop_size"},
      {json{{"size", {{"shortest_edge", 224}}}}, "size"},
      {json{{"crop_size", "big"}}, "crop_size"},
      {json{{"resample", 9}}, "resample"},
      {json{{"resample", 2.5}}, "resample"},
      {json{{"do_resize", "yes"}}, "do_resize"},
      {json{{"rescale_factor", "1/255"}}, "rescale_factor"},
      {json{{"image_mean", {0.5, 0.5}}}, "image_mean"},
      {json{{"image_std", {0.5, 0.0, 0.5}}}, "image_std"},
  };
  for (const auto& [config, key] : cases) {
    SCOPED_TRACE(config.dump());
    const auto path = write(config);
    expect_error_mentions([&] { ImageProcessorOptions::from_file(path); }, {key, path.string()});
  }
  ImageProcessorOptions built;  // options made in code are held to the same bounds
  built.size = {8193, 4};
  expect_error_mentions([&] { built.validate("opts"); }, {"opts", "size", "8192"});
  built.size = {224, 224};
  built.crop_size = {0, 5};
  expect_error_mentions([&] { built.validate("opts"); }, {"opts", "crop_size"});
  std::ofstream(tmp.path() / "broken.json") << "{\"size\": ";
  expect_error_mentions([&] { ImageProcessorOptions::from_file(tmp.path() / "broken.json"); }, {"broken.json"});
  expect_error_mentions([&] { ImageProcessorOptions::from_file(tmp.path() / "missing.json"); }, {"missing.json"});
}

// ---------------------------------------------------------------------------------------------
// Decoding and colour conversion.

TEST(ImageLoading, ColourPngComesBackAsRgb) {
  TempDir tmp;
  const cv::Mat bgr = random_image(5, 7, CV_8UC3, 1);
  ASSERT_TRUE(cv::imwrite((tmp.path() / "c.png").string(), bgr));
  const cv::Mat rgb = load_image_rgb(tmp.path() / "c.png");
  ASSERT_EQ(rgb.type(), CV_8UC3);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(rgb.at<cv::Vec3b>(y, x)[c], bgr.at<cv::Vec3b>(y, x)[2 - c]);
}

TEST(ImageLoading, GreyIsReplicatedToThreeChannels) {
  TempDir tmp;
  const cv::Mat grey = random_image(9, 6, CV_8UC1, 2);
  ASSERT_TRUE(cv::imwrite((tmp.path() / "g.png").string(), grey));
  const cv::Mat rgb = load_image_rgb(tmp.path() / "g.png");
  ASSERT_EQ(rgb.type(), CV_8UC3);
  for (int y = 0; y < grey.rows; ++y)
    for (int x = 0; x < grey.cols; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(rgb.at<cv::Vec3b>(y, x)[c], grey.at<uint8_t>(y, x));
}

TEST(ImageLoading, AlphaIsDroppedWithoutCompositing) {
  TempDir tmp;
  cv::Mat bgra = random_image(4, 8, CV_8UC4, 3);
  for (int x = 0; x < bgra.cols; ++x) bgra.at<cv::Vec4b>(0, x)[3] = 0;  // fully transparent row
  ASSERT_TRUE(cv::imwrite((tmp.path() / "a.png").string(), bgra));
  const cv::Mat rgb = load_image_rgb(tmp.path() / "a.png");
  ASSERT_EQ(rgb.type(), CV_8UC3);
  for (int y = 0; y < bgra.rows; ++y)
    for (int x = 0; x < bgra.cols; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(rgb.at<cv::Vec3b>(y, x)[c], bgra.at<cv::Vec4b>(y, x)[2 - c]);
}

TEST(ImageLoading, InMemoryLayoutsConvertLikeFiles) {
  const cv::Mat grey = random_image(28, 28, CV_8UC1, 4);  // a Fashion-MNIST-sized image
  const cv::Mat from_buffer = image_from_buffer(grey.ptr<uint8_t>(), 28, 28, 1);
  cv::Mat replicated;
  cv::merge(std::vector<cv::Mat>{grey, grey, grey}, replicated);
  EXPECT_EQ(cv::norm(from_buffer, replicated, cv::NORM_INF), 0.0);

  cv::Mat rgba;
  cv::merge(std::vector<cv::Mat>{grey, grey, grey, cv::Mat(28, 28, CV_8UC1, cv::Scalar(7))}, rgba);
  EXPECT_EQ(cv::norm(to_rgb(rgba), replicated, cv::NORM_INF), 0.0);

  const PerceiverImageProcessor processor;
  const torch::Tensor a = processor({grey});
  const torch::Tensor b = processor({replicated});
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{1, 3, 224, 224}));
}

TEST(ImageLoading, BadFilesAndImagesGiveClearErrors) {
  TempDir tmp;
  const auto missing = tmp.path() / "nope.png";
  expect_error_mentions([&] { load_image_rgb(missing); }, {"not found", missing.string()});

  const auto garbage = tmp.path() / "garbage.png";
  std::ofstream(garbage) << "this is not a PNG file at all";
  expect_error_mentions([&] { load_image_rgb(garbage); }, {garbage.string()});
  expect_error_mentions([&] { load_image_rgb(tmp.path()); }, {tmp.path().string()});

  const auto deep = tmp.path() / "deep.png";
  ASSERT_TRUE(cv::imwrite(deep.string(), cv::Mat(3, 3, CV_16UC3, cv::Scalar(1000, 2000, 3000))));
  expect_error_mentions([&] { load_image_rgb(deep); }, {deep.string(), "8 bits"});

  expect_error_mentions([&] { to_rgb(cv::Mat()); }, {"empty"});
  expect_error_mentions([&] { to_rgb(cv::Mat(2, 2, CV_8UC(5), cv::Scalar::all(0))); }, {"channels", "5"});
  expect_error_mentions([&] { image_from_buffer(nullptr, 2, 2, 3); }, {"image_from_buffer"});
  const PerceiverImageProcessor processor;
  expect_error_mentions([&] { processor(std::vector<cv::Mat>{}); }, {"empty batch"});
  // A 1-pixel image gives a crop window of int(0.875) = 0 pixels.
  expect_error_mentions([&] { processor({cv::Mat(1, 5, CV_8UC3, cv::Scalar::all(9))}); }, {"crop"});
}

// ---------------------------------------------------------------------------------------------
// Crop, rescale and normalise against direct computations of HF's rules.

// HF pads with zeros when size/crop_size > 1 makes the window larger than the image: the image
// sits at ceil((crop - h) / 2) rows down, and a too-wide image is cut at floor((w - crop) / 2).
TEST(ImageProcessorSteps, CenterCropPadsWithZerosWhenWindowExceedsImage) {
  ImageProcessorOptions o;
  o.size = {300, 300};
  o.crop_size = {256, 256};
  const PerceiverImageProcessor processor(o);
  for (const int h : {40, 41}) {
    SCOPED_TRACE(h);
    const int w = 60;
    const cv::Mat img = random_image(h, w, CV_8UC3, 5);
    const int crop = static_cast<int>(300.0 / 256.0 * h);  // 46 and 48
    const int pad_top = (crop - h + 1) / 2;
    const int cut_left = (w - crop) / 2;
    const cv::Mat out = processor.center_crop(img);
    ASSERT_EQ(out.rows, crop);
    ASSERT_EQ(out.cols, crop);
    for (int y = 0; y < crop; ++y) {
      for (int x = 0; x < crop; ++x) {
        const int sy = y - pad_top, sx = x + cut_left;
        const cv::Vec3b want = (sy >= 0 && sy < h) ? img.at<cv::Vec3b>(sy, sx) : cv::Vec3b(0, 0, 0);
        ASSERT_EQ(out.at<cv::Vec3b>(y, x), want) << y << "," << x;
      }
    }
  }
}

TEST(ImageProcessorSteps, CenterCropUsesFloorOffsetsAndTruncatedSize) {
  const PerceiverImageProcessor processor;  // 224/256 of the shorter side
  const cv::Mat img = random_image(91, 120, CV_8UC3, 6);
  const cv::Mat out = processor.center_crop(img);
  const int crop = static_cast<int>(224.0 / 256.0 * 91);  // 79.625 -> 79
  ASSERT_EQ(out.rows, crop);
  ASSERT_EQ(out.cols, crop);
  const int top = (91 - crop) / 2, left = (120 - crop) / 2;
  EXPECT_EQ(cv::norm(out, img(cv::Rect(left, top, crop, crop)), cv::NORM_INF), 0.0);
}

TEST(ImageProcessorSteps, RescaleAndNormaliseFollowHfFormula) {
  ImageProcessorOptions o;
  o.do_center_crop = false;
  o.do_resize = false;
  o.rescale_factor = 1.0 / 127.0;
  o.image_mean = {0.1, 0.2, 0.3};
  o.image_std = {0.5, 0.25, 2.0};
  const PerceiverImageProcessor processor(o);
  const cv::Mat img = random_image(6, 5, CV_8UC3, 7);
  const torch::Tensor t = processor.preprocess(img);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 6, 5}));
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 5; ++x) {
        const double want = (img.at<cv::Vec3b>(y, x)[c] / 127.0 - o.image_mean[c]) / o.image_std[c];
        ASSERT_NEAR(t[c][y][x].item<float>(), want, 1e-6);
      }

  // Without resizing, images of different sizes cannot be stacked.
  expect_error_mentions([&] { processor({img, random_image(7, 5, CV_8UC3, 8)}); }, {"image 1", "do_resize"});

  o.do_rescale = false;
  o.do_normalize = false;
  const torch::Tensor raw = PerceiverImageProcessor(o).preprocess(img);
  EXPECT_EQ(raw[1][2][3].item<float>(), static_cast<float>(img.at<cv::Vec3b>(2, 3)[1]));
}

// ---------------------------------------------------------------------------------------------
// The resampler's other filters, against independent computations.

using image::PilFilter;
using image::pil_resize;

TEST(PilResample, SameSizeIsACopyAndConstantsStayConstant) {
  const cv::Mat img = random_image(13, 17, CV_8UC3, 9);
  EXPECT_EQ(cv::norm(pil_resize(img, 17, 13, PilFilter::Bicubic), img, cv::NORM_INF), 0.0);
  const cv::Mat flat(13, 17, CV_8UC3, cv::Scalar(0, 77, 255));
  for (const int f : {0, 1, 2, 3, 4, 5}) {
    for (const auto& [w, h] : std::vector<std::pair<int, int>>{{5, 4}, {40, 31}, {17, 50}, {3, 13}}) {
      const cv::Mat out = pil_resize(flat, w, h, image::pil_filter_from_int(f));
      ASSERT_EQ(out.size(), cv::Size(w, h));
      EXPECT_EQ(cv::norm(out, cv::Mat(h, w, CV_8UC3, cv::Scalar(0, 77, 255)), cv::NORM_INF), 0.0)
          << image::pil_filter_name(image::pil_filter_from_int(f)) << " " << w << "x" << h;
    }
  }
}

// Box filter halving: each output is the mean of a 2x2 block, rounded half up after the
// horizontal pass (uint8) and again after the vertical pass.
TEST(PilResample, BoxHalvingAveragesBlocksWithPerPassRounding) {
  const cv::Mat img = random_image(10, 12, CV_8UC1, 10);
  const cv::Mat out = pil_resize(img, 6, 5, PilFilter::Box);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 6; ++x) {
      auto row = [&](int r) { return (img.at<uint8_t>(r, 2 * x) + img.at<uint8_t>(r, 2 * x + 1) + 1) / 2; };
      ASSERT_EQ(out.at<uint8_t>(y, x), (row(2 * y) + row(2 * y + 1) + 1) / 2) << y << "," << x;
    }
}

// Nearest samples the source at the output pixel centre: 2x down reads odd pixels, 2x up repeats.
TEST(PilResample, NearestPicksPixelCentres) {
  const cv::Mat img = random_image(8, 6, CV_8UC3, 11);
  const cv::Mat down = pil_resize(img, 3, 4, PilFilter::Nearest);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 3; ++x) ASSERT_EQ(down.at<cv::Vec3b>(y, x), img.at<cv::Vec3b>(2 * y + 1, 2 * x + 1));
  const cv::Mat up = pil_resize(img, 12, 16, PilFilter::Nearest);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 12; ++x) ASSERT_EQ(up.at<cv::Vec3b>(y, x), img.at<cv::Vec3b>(y / 2, x / 2));
}

// A floating-point re-derivation of Pillow's separable convolution (continuous weights, each pass
// rounded to uint8) agrees with the fixed-point version to within fixed-point rounding.
double ref_weight(PilFilter f, double x) {
  const double a = std::fabs(x);
  switch (f) {
    case PilFilter::Bilinear: return a < 1 ? 1 - a : 0;
    case PilFilter::Bicubic: return a < 1 ? 1.5 * a * a * a - 2.5 * a * a + 1 : a < 2 ? -0.5 * (a * a * a - 5 * a * a + 8 * a - 4) : 0;
    case PilFilter::Lanczos: {
      auto sinc = [](double v) { return v == 0 ? 1.0 : std::sin(M_PI * v) / (M_PI * v); };
      return a < 3 ? sinc(x) * sinc(x / 3) : 0;
    }
    default: return 0;
  }
}

std::vector<double> ref_pass(const std::vector<double>& line, int out, PilFilter f) {
  const int in = static_cast<int>(line.size());
  const double scale = static_cast<double>(in) / out, fs = std::max(scale, 1.0);
  std::vector<double> res(static_cast<size_t>(out));
  for (int i = 0; i < out; ++i) {
    const double centre = (i + 0.5) * scale;
    double sum = 0, norm = 0;
    for (int j = 0; j < in; ++j) {
      const double w = ref_weight(f, (j + 0.5 - centre) / fs);  // zero outside the support
      sum += w * line[j];
      norm += w;
    }
    res[i] = std::clamp(std::round(sum / norm), 0.0, 255.0);
  }
  return res;
}

TEST(PilResample, ConvolutionFiltersAgreeWithFloatingPointReference) {
  const cv::Mat img = random_image(23, 19, CV_8UC1, 12);
  for (const PilFilter f : {PilFilter::Bilinear, PilFilter::Bicubic, PilFilter::Lanczos}) {
    for (const auto& [w, h] : std::vector<std::pair<int, int>>{{7, 9}, {40, 50}, {11, 60}}) {
      SCOPED_TRACE(std::string(image::pil_filter_name(f)) + " " + std::to_string(w) + "x" + std::to_string(h));
      std::vector<std::vector<double>> rows;
      for (int y = 0; y < img.rows; ++y) {
        std::vector<double> line(img.ptr<uint8_t>(y), img.ptr<uint8_t>(y) + img.cols);
        rows.push_back(ref_pass(line, w, f));
      }
      const cv::Mat out = pil_resize(img, w, h, f);
      int max_diff = 0;
      for (int x = 0; x < w; ++x) {
        std::vector<double> col;
        for (const auto& r : rows) col.push_back(r[x]);
        const auto ref = ref_pass(col, h, f);
        for (int y = 0; y < h; ++y) max_diff = std::max(max_diff, std::abs(out.at<uint8_t>(y, x) - static_cast<int>(ref[y])));
      }
      EXPECT_LE(max_diff, 2);
    }
  }
}

TEST(PilResample, CacheReusesCoefficientsAndBadInputThrows) {
  image::ResampleCache cache;
  const auto a = cache.axis(300, 224, PilFilter::Bicubic);
  EXPECT_EQ(a, cache.axis(300, 224, PilFilter::Bicubic));
  EXPECT_NE(a, cache.axis(300, 224, PilFilter::Bilinear));
  EXPECT_EQ(a->ksize, 2 * static_cast<int>(std::ceil(2.0 * 300 / 224)) + 1);
  // Every output's fixed-point weights sum to about one (2^22).
  for (int i = 0; i < a->out_size; ++i) {
    int64_t sum = 0;
    for (int j = 0; j < a->count[i]; ++j) sum += a->weights[static_cast<size_t>(i) * a->ksize + j];
    ASSERT_NEAR(static_cast<double>(sum), 1 << 22, 8) << i;
  }
  const cv::Mat img = random_image(30, 20, CV_8UC3, 13);
  EXPECT_EQ(cv::norm(pil_resize(img, 11, 9, PilFilter::Bicubic, &cache), pil_resize(img, 11, 9, PilFilter::Bicubic),
                     cv::NORM_INF),
            0.0);
  EXPECT_THROW(pil_resize(cv::Mat(), 4, 4, PilFilter::Bicubic), std::runtime_error);
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_16UC1), 2, 2, PilFilter::Bicubic), std::runtime_error);
  EXPECT_THROW(pil_resize(img, 0, 4, PilFilter::Bicubic), std::runtime_error);
  EXPECT_THROW(image::pil_filter_from_int(7), std::runtime_error);
}

}  // namespace
}  // namespace perceiver
