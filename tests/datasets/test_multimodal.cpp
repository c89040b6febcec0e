#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <cmath>

#include "datasets/multimodal.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;

TEST(DatasetsMultimodal, SyntheticClipsDependOnClass) {
  pd::SyntheticClipOptions opt;
  opt.num_classes = 4;
  opt.num_frames = 8;
  opt.height = 32;
  opt.width = 32;
  opt.num_samples = 4000;
  opt.sample_rate = 16000;
  opt.seed = 9;
  const auto batch = pd::synthetic_clips(opt, 0, 8);
  ASSERT_EQ(batch.image.sizes(), (std::vector<int64_t>{8, 8, 3, 32, 32}));
  ASSERT_EQ(batch.audio.sizes(), (std::vector<int64_t>{8, 4000, 1}));
  ASSERT_EQ(batch.label.sizes(), (std::vector<int64_t>{8, 4}));
  EXPECT_TRUE(batch.label.sum(1).eq(1).all().item<bool>());
  EXPECT_TRUE(batch.label.argmax(1).equal(batch.class_id));
  const auto again = pd::synthetic_clips(opt, 2, 1);
  EXPECT_TRUE(again.image[0].equal(batch.image[2]));
  EXPECT_TRUE(again.audio[0].equal(batch.audio[2]));

  constexpr double kPi = 3.14159265358979323846;
  for (int64_t n = 0; n < 8; ++n) {
    const int64_t cls = batch.class_id[n].item<int64_t>();
    // Audio: the spectral peak sits at 440 * 2^(class / classes) Hz.
    const auto spectrum = torch::fft_rfft(batch.audio[n].squeeze(1)).abs();
    const double peak_hz = spectrum.argmax().item<int64_t>() * double(opt.sample_rate) / opt.num_samples;
    const double expected_hz = 440.0 * std::pow(2.0, double(cls) / opt.num_classes);
    EXPECT_NEAR(peak_hz, expected_hz, double(opt.sample_rate) / opt.num_samples) << "clip " << n;
    // Motion: the bright square's centroid moves along angle 2*pi*class/classes.
    auto centroid = [&](int64_t t) {
      const auto mask = std::get<0>(batch.image[n][t].min(0)).gt(0.5).to(torch::kFloat);
      const auto ys = torch::arange(32, torch::kFloat).view({-1, 1}), xs = torch::arange(32, torch::kFloat).view({1, -1});
      const double m = mask.sum().item<double>();
      return std::make_pair((mask * xs).sum().item<double>() / m, (mask * ys).sum().item<double>() / m);
    };
    const auto [x0, y0] = centroid(0);
    const auto [x1, y1] = centroid(opt.num_frames - 1);
    const double angle = std::atan2(y1 - y0, x1 - x0);
    const double want = 2 * kPi * cls / opt.num_classes;
    EXPECT_LT(std::abs(std::remainder(angle - want, 2 * kPi)), 0.2) << "clip " << n;
    EXPECT_GT(std::hypot(x1 - x0, y1 - y0), 5.0);
  }
}

TEST(DatasetsMultimodal, WavRoundTripCropPadAndMono) {
  perceiver::testing::TempDir tmp;
  const auto stereo = torch::stack({torch::linspace(-0.5, 0.5, 100), torch::full({100}, 0.25)}, 1);
  pd::write_wav(tmp.path() / "a.wav", stereo, 8000);
  pd::AudioOptions keep;
  keep.num_samples = 0;
  keep.mono = false;
  const auto raw = pd::read_wav(tmp.path() / "a.wav", keep);
  EXPECT_EQ(raw.sample_rate, 8000);
  ASSERT_EQ(raw.samples.sizes(), (std::vector<int64_t>{100, 2}));
  EXPECT_EQ(perceiver::testing::tensor_mismatch(raw.samples, stereo, 1.0 / 16384, 0), "");  // 16-bit PCM
  pd::AudioOptions mono;
  mono.num_samples = 150;
  const auto padded = pd::read_wav(tmp.path() / "a.wav", mono);
  ASSERT_EQ(padded.samples.sizes(), (std::vector<int64_t>{150, 1}));
  EXPECT_EQ(perceiver::testing::tensor_mismatch(padded.samples.slice(0, 0, 100).squeeze(1), stereo.mean(1), 1.0 / 16384, 0), "");
  EXPECT_TRUE(padded.samples.slice(0, 100).eq(0).all().item<bool>());
  mono.num_samples = 10;
  EXPECT_EQ(pd::read_wav(tmp.path() / "a.wav", mono).samples.size(0), 10);
  EXPECT_THROW(pd::read_wav(tmp.path() / "missing.wav"), std::runtime_error);
}

TEST(DatasetsMultimodal, VideoFromFramesAndFile) {
  perceiver::testing::TempDir tmp;
  fs::create_directories(tmp.path() / "frames");
  for (int i = 0; i < 5; ++i)
    cv::imwrite((tmp.path() / "frames" / ("f" + std::to_string(i) + ".png")).string(),
                cv::Mat(12, 16, CV_8UC3, cv::Scalar(0, 0, 50 * i)));  // BGR: red grows
  pd::VideoOptions opt;
  opt.num_frames = 3;
  opt.height = 6;
  opt.width = 8;
  const auto v = pd::read_video(tmp.path() / "frames", opt);
  ASSERT_EQ(v.sizes(), (std::vector<int64_t>{3, 3, 6, 8}));
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(v[t][0][0][0].item<float>(), 50.0f * (2 * t) / 255, 1e-6);  // frames 0, 2, 4
  EXPECT_TRUE(v.select(1, 2).eq(0).all().item<bool>());

  const fs::path avi = tmp.path() / "clip.avi";
  cv::VideoWriter writer(avi.string(), cv::CAP_OPENCV_MJPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10,
                         cv::Size(16, 12));
  ASSERT_TRUE(writer.isOpened());
  for (int i = 0; i < 4; ++i) writer.write(cv::Mat(12, 16, CV_8UC3, cv::Scalar(0, 60 * i, 0)));
  writer.release();
  opt.num_frames = 4;
  const auto f = pd::read_video(avi, opt);
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{4, 3, 6, 8}));
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(f[t][1].mean().item<float>(), 60.0f * t / 255, 6.0f / 255);  // JPEG loss
  EXPECT_THROW(pd::read_video(tmp.path() / "none.avi", opt), std::runtime_error);

  pd::write_wav(tmp.path() / "a.wav", torch::full({50, 2}, 0.5f), 16000);
  pd::AudioOptions aopt;
  aopt.num_samples = 64;
  const auto clip = pd::load_av_clip({avi, tmp.path() / "a.wav", 2}, 5, opt, aopt);
  EXPECT_EQ(clip.image.sizes(), (std::vector<int64_t>{1, 4, 3, 6, 8}));
  EXPECT_EQ(clip.audio.sizes(), (std::vector<int64_t>{1, 64, 1}));
  EXPECT_TRUE(clip.label.equal(torch::tensor({{0.f, 0.f, 1.f, 0.f, 0.f}})));
  EXPECT_THROW(pd::one_hot_labels(torch::tensor({0, 4}), 4), std::invalid_argument);
}
