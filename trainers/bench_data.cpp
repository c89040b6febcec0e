#include "trainers/bench_data.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "datasets/loader.h"
#include "datasets/text_index.h"
#include "perceiver/runtime/runtime.h"
#if PERCEIVER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "datasets/images.h"
#endif

namespace perceiver::trainers {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Where a workload's generated data lives, and whether to remove it afterwards.
struct DataDir {
  fs::path path;
  bool temporary = false;
  explicit DataDir(const BenchOptions& o, const std::string& name) {
    temporary = o.data_dir.empty();
    path = (temporary ? fs::temp_directory_path() / fmt::format("perceiver-bench-data-{}", ::getpid()) : o.data_dir) / name;
    fs::create_directories(path);
  }
  ~DataDir() {
    std::error_code ec;
    if (temporary) fs::remove_all(path.parent_path(), ec);
  }
};

// Whether `dir` holds what an earlier run generated for this size (its ".complete" marker says so).
bool already_written(const fs::path& dir, int64_t size) {
  std::ifstream in(dir / ".complete");
  int64_t have = 0;
  return in >> have && have == size;
}

// Text like a corpus of verses: lines of words from a Zipf-like vocabulary, a blank line between
// paragraphs, in files of 10 MB. Deterministic; kept when already there with the same size.
void write_text_corpus(const fs::path& dir, int64_t bytes) {
  if (already_written(dir, bytes)) return;
  std::mt19937_64 rng(7);
  std::vector<std::string> vocabulary;
  for (int w = 0; w < 4000; ++w) {
    std::string word;
    const int length = 2 + static_cast<int>(rng() % 8);
    for (int c = 0; c < length; ++c) word += static_cast<char>('a' + rng() % 26);
    vocabulary.push_back(word);
  }
  int64_t written = 0;
  for (int file = 0; written < bytes; ++file) {
    std::ofstream out(dir / fmt::format("part-{:05d}.txt", file), std::ios::binary);
    int64_t in_file = 0;
    std::string line;
    for (int64_t n = 0; in_file < (int64_t{10} << 20) && written < bytes; ++n) {
      line.clear();
      const int words = 6 + static_cast<int>(rng() % 12);
      for (int w = 0; w < words; ++w) {
        // The cube of a uniform draw: frequent words at the vocabulary's head, a long tail.
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        line += vocabulary[static_cast<size_t>(u * u * u * 3999)];
        line += w + 1 < words ? ' ' : '.';
      }
      line += n % 9 == 8 ? "\n\n" : "\n";
      out << line;
      in_file += static_cast<int64_t>(line.size());
      written += static_cast<int64_t>(line.size());
    }
  }
  std::ofstream(dir / ".complete") << bytes;
}

// Loads `batches` batches through a loader (over as many epochs as that takes); returns examples per second.
double examples_per_second(std::shared_ptr<const datasets::Dataset> set, int64_t batch_size, int64_t batches,
                           double& first_batch_seconds, const Clock::time_point& opened) {
  datasets::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.seed = 1;
  lo.num_workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  datasets::DataLoader loader(std::move(set), lo);
  auto first = loader.next();
  if (!first) throw std::runtime_error("bench: the generated data set gave no batch");
  first_batch_seconds = since(opened);
  const auto start = Clock::now();
  int64_t examples = 0;
  for (int64_t b = 0; b < batches; ++b) {
    auto batch = loader.next();
    if (!batch) batch = loader.next();  // the next epoch
    examples += batch->begin()->second.size(0);
  }
  return static_cast<double>(examples) / since(start);
}

}  // namespace

std::vector<BenchResult> data_text(const BenchOptions& o) {
  const DataDir dir(o, "text");
  std::vector<BenchResult> out;
  for (const int scale : {1, 10}) {
    const auto corpus = dir.path / fmt::format("{}x", scale);
    const auto bytes = static_cast<int64_t>(o.data_text_mb * scale * 1e6);
    fs::create_directories(corpus);
    write_text_corpus(corpus, bytes);
    runtime::reset_peak_rss();
    datasets::TextIndexOptions to;
    to.read.unit = datasets::TextUnit::kLine;
    to.cache_dir = dir.path / "index";
    BenchResult r;
    r.workload = fmt::format("data-text:{}x", scale);
    auto start = Clock::now();
    {
      const runtime::ScopedLogLevel quiet(spdlog::level::warn);
      datasets::IndexedText::open(corpus, to);  // builds the index (first time) ...
    }
    r.extra["index_build_s"] = since(start);
    start = Clock::now();
    const auto text = datasets::IndexedText::open(corpus, to);  // ... which later runs reuse
    datasets::WindowOptions w;
    w.length = 128;
    double first_batch = 0;
    const int64_t batch = 64, batches = std::max(20, 40 * o.iters);
    const auto windows = std::make_shared<datasets::ByteWindowDataset>(text, w);
    r.samples_per_s = examples_per_second(windows, batch, batches, first_batch, start);
    r.seconds_per_iter = batch / r.samples_per_s;
    r.peak_rss_mb = runtime::peak_rss_mb();
    r.extra["text_mb"] = bytes / 1e6;
    r.extra["windows"] = windows->size();
    r.extra["index_pieces"] = text->summary().pieces;
    r.extra["first_batch_s"] = first_batch;
    if (scale == 10) r.extra["rss_ratio_10x_1x"] = r.peak_rss_mb / out.front().peak_rss_mb;
    out.push_back(r);
  }
  return out;
}

#if PERCEIVER_WITH_OPENCV
namespace {

// Photos stand-ins: 256x256 JPEGs (quality 90) of smooth gradients, shapes and noise, in 10 class folders.
void write_jpeg_folder(const fs::path& dir, int64_t count) {
  if (already_written(dir, count)) return;
  std::mt19937 rng(11);
  const std::vector<int> quality = {cv::IMWRITE_JPEG_QUALITY, 90};
  for (int64_t i = 0; i < count; ++i) {
    cv::Mat image(256, 256, CV_8UC3);
    const int a = static_cast<int>(rng() % 256), b = static_cast<int>(rng() % 256);
    for (int y = 0; y < 256; ++y)
      for (int x = 0; x < 256; ++x) image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>((x + a) & 255), static_cast<uchar>((y + b) & 255), static_cast<uchar>((x ^ y) & 255));
    for (int s = 0; s < 6; ++s)
      cv::circle(image, {static_cast<int>(rng() % 256), static_cast<int>(rng() % 256)}, 8 + static_cast<int>(rng() % 40),
                 cv::Scalar(rng() % 256, rng() % 256, rng() % 256), -1);
    cv::Mat noise(256, 256, CV_8UC3);
    cv::randu(noise, 0, 24);
    image += noise;
    const auto cls = dir / fmt::format("class{}", i % 10);
    fs::create_directories(cls);
    cv::imwrite((cls / fmt::format("{:07d}.jpg", i)).string(), image, quality);
  }
  std::ofstream(dir / ".complete") << count;
}

}  // namespace

std::vector<BenchResult> data_images(const BenchOptions& o) {
  const DataDir dir(o, "images");
  std::vector<BenchResult> out;
  for (const int scale : {1, 10}) {
    const auto folder = dir.path / fmt::format("{}x", scale);
    const int64_t count = o.data_images * scale;
    write_jpeg_folder(folder, count);
    runtime::reset_peak_rss();
    BenchResult r;
    r.workload = fmt::format("data-images:{}x", scale);
    datasets::ImageFolderOptions io;
    io.height = io.width = 224;
    const auto start = Clock::now();
    const auto set = datasets::list_image_folder(folder, io);
    r.extra["listing_s"] = since(start);
    double first_batch = 0;
    const int64_t batch = 32, batches = std::max<int64_t>(5, 4 * o.iters);
    r.samples_per_s = examples_per_second(set.images, batch, batches, first_batch, start);
    r.seconds_per_iter = batch / r.samples_per_s;
    r.peak_rss_mb = runtime::peak_rss_mb();
    r.extra["images"] = count;
    r.extra["first_batch_s"] = first_batch;
    if (scale == 10) r.extra["rss_ratio_10x_1x"] = r.peak_rss_mb / out.front().peak_rss_mb;
    out.push_back(r);
  }
  return out;
}
#endif

}  // namespace perceiver::trainers
