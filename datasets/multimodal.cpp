#include "datasets/multimodal.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sndfile.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <stdexcept>

#include "datasets/common.h"
#include "datasets/csv.h"
#include "datasets/sources.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

torch::Tensor frame_to_tensor(const cv::Mat& bgr, const VideoOptions& options) {
  cv::Mat rgb;
  if (bgr.channels() == 1) {
    cv::cvtColor(bgr, rgb, cv::COLOR_GRAY2RGB);
  } else if (bgr.channels() == 4) {
    cv::cvtColor(bgr, rgb, cv::COLOR_BGRA2RGB);
  } else {
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  }
  if (rgb.depth() != CV_8U) rgb.convertTo(rgb, CV_8U);
  cv::resize(rgb, rgb, cv::Size(static_cast<int>(options.width), static_cast<int>(options.height)), 0, 0, cv::INTER_AREA);
  auto t = torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8).clone();
  return t.permute({2, 0, 1}).to(torch::kFloat) / 255.0f;
}

// Evenly spaced picks of `want` out of `have` frames (repeats the last frame when have < want).
std::vector<int64_t> pick_frames(int64_t have, int64_t want) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < want; ++i)
    idx.push_back(have >= want ? (want == 1 ? 0 : i * (have - 1) / (want - 1)) : std::min(i, have - 1));
  return idx;
}

}  // namespace

torch::Tensor read_video(const fs::path& path, const VideoOptions& options) {
  if (options.num_frames <= 0 || options.height <= 0 || options.width <= 0)
    throw std::invalid_argument("read_video: num_frames, height and width must be > 0");
  std::vector<cv::Mat> frames;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(path)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".ppm"))
        files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      cv::Mat m = cv::imread(f.string(), cv::IMREAD_COLOR);
      if (m.empty()) throw std::runtime_error("video frame '" + f.string() + "' cannot be decoded");
      frames.push_back(m);
    }
  } else {
    if (!fs::exists(path, ec)) throw std::runtime_error("video '" + path.string() + "' does not exist");
    cv::VideoCapture cap(path.string());
    if (!cap.isOpened()) throw std::runtime_error("video '" + path.string() + "' cannot be opened by OpenCV");
    cv::Mat m;
    while (cap.read(m)) frames.push_back(m.clone());
  }
  if (frames.empty()) throw std::runtime_error("video '" + path.string() + "' has no frames");
  std::vector<torch::Tensor> out;
  for (const int64_t i : pick_frames(static_cast<int64_t>(frames.size()), options.num_frames))
    out.push_back(frame_to_tensor(frames[i], options));
  return torch::stack(out);
}

Audio read_wav(const fs::path& path, const AudioOptions& options) {
  SF_INFO info{};
  std::unique_ptr<SNDFILE, int (*)(SNDFILE*)> file(sf_open(path.string().c_str(), SFM_READ, &info), sf_close);
  if (!file) throw std::runtime_error("audio '" + path.string() + "' cannot be opened: " + sf_strerror(nullptr));
  if (info.channels <= 0 || info.frames < 0) throw std::runtime_error("audio '" + path.string() + "' has no channels");
  auto data = torch::zeros({static_cast<int64_t>(info.frames), info.channels}, torch::kFloat);
  const sf_count_t got = sf_readf_float(file.get(), data.data_ptr<float>(), info.frames);
  data = data.slice(0, 0, got);
  if (options.mono) data = data.mean(1, /*keepdim=*/true);
  if (options.num_samples > 0) {
    if (data.size(0) >= options.num_samples) {
      data = data.slice(0, 0, options.num_samples);
    } else {
      data = torch::constant_pad_nd(data, {0, 0, 0, options.num_samples - data.size(0)}, 0);
    }
  }
  return {data.contiguous(), info.samplerate};
}

void write_wav(const fs::path& path, const torch::Tensor& samples, int64_t sample_rate) {
  if (samples.dim() != 2) throw std::invalid_argument("write_wav: samples must be (N, channels)");
  SF_INFO info{};
  info.samplerate = static_cast<int>(sample_rate);
  info.channels = static_cast<int>(samples.size(1));
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  std::unique_ptr<SNDFILE, int (*)(SNDFILE*)> file(sf_open(path.string().c_str(), SFM_WRITE, &info), sf_close);
  if (!file) throw std::runtime_error("cannot write WAV '" + path.string() + "': " + sf_strerror(nullptr));
  const auto s = samples.to(torch::kFloat).contiguous();
  if (sf_writef_float(file.get(), s.data_ptr<float>(), s.size(0)) != s.size(0))
    throw std::runtime_error("short write to WAV '" + path.string() + "'");
}

torch::Tensor one_hot_labels(const torch::Tensor& ids, int64_t num_labels) {
  if (ids.dim() != 1) throw std::invalid_argument("one_hot_labels: ids must be 1-D");
  const auto i = ids.to(torch::kInt64);
  if (i.numel() > 0 && (i.min().item<int64_t>() < 0 || i.max().item<int64_t>() >= num_labels))
    throw std::invalid_argument("one_hot_labels: ids outside [0, " + std::to_string(num_labels) + ")");
  return torch::one_hot(i, num_labels).to(torch::kFloat);
}

MultimodalBatch load_av_clip(const AvClipFiles& files, int64_t num_labels, const VideoOptions& video,
                             const AudioOptions& audio) {
  AudioOptions mono = audio;
  mono.mono = true;  // the multimodal model takes one audio channel
  const auto ids = torch::tensor({files.class_id}, torch::kInt64);
  return {read_video(files.video, video).unsqueeze(0), read_wav(files.audio, mono).samples.unsqueeze(0),
          one_hot_labels(ids, num_labels), ids};
}

MultimodalBatch synthetic_clips(const SyntheticClipOptions& options, int64_t first_index, int64_t count) {
  if (options.num_classes <= 0 || options.num_frames <= 0 || options.height < 8 || options.width < 8 ||
      options.num_samples <= 0 || options.sample_rate <= 0 || count < 0)
    throw std::invalid_argument("synthetic_clips: invalid options");
  constexpr double kPi = 3.14159265358979323846;
  const int64_t T = options.num_frames, H = options.height, W = options.width, S = options.num_samples;
  auto image = torch::empty({count, T, 3, H, W}, torch::kFloat);
  auto audio = torch::empty({count, S, 1}, torch::kFloat);
  auto class_id = torch::empty({count}, torch::kInt64);
  for (int64_t n = 0; n < count; ++n) {
    const int64_t index = first_index + n;
    const int64_t cls = index % options.num_classes;
    std::mt19937_64 rng(stable_hash(std::to_string(index), options.seed));
    auto uni = [&](double lo, double hi) { return lo + (hi - lo) * static_cast<double>(rng() >> 11) * 0x1.0p-53; };
    class_id[n] = cls;

    // Motion: the square crosses ~60% of the frame along the class direction, centred at a random point.
    const double angle = 2 * kPi * static_cast<double>(cls) / static_cast<double>(options.num_classes);
    const int64_t side = std::max<int64_t>(3, std::min(H, W) / 5);
    const double travel = 0.6 * std::min(H, W) - side;
    const double cx = uni(0.4, 0.6) * W, cy = uni(0.4, 0.6) * H;
    const float color[3] = {static_cast<float>(uni(0.6, 1.0)), static_cast<float>(uni(0.6, 1.0)),
                            static_cast<float>(uni(0.6, 1.0))};
    torch::Tensor background;
    {
      const auto gen = at::detail::createCPUGenerator(rng());
      background = torch::rand({3, H, W}, gen) * 0.2f;
    }
    for (int64_t t = 0; t < T; ++t) {
      const double s = T == 1 ? 0.0 : static_cast<double>(t) / static_cast<double>(T - 1) - 0.5;
      const int64_t x0 = std::clamp<int64_t>(std::llround(cx + s * travel * std::cos(angle) - side / 2.0), 0, W - side);
      const int64_t y0 = std::clamp<int64_t>(std::llround(cy + s * travel * std::sin(angle) - side / 2.0), 0, H - side);
      auto frame = background.clone();
      for (int c = 0; c < 3; ++c) frame[c].slice(0, y0, y0 + side).slice(1, x0, x0 + side).fill_(color[c]);
      image[n][t].copy_(frame);
    }
    // Sound: a class-dependent pitch (semitone-free spacing over one octave), random phase and level.
    const double freq = 440.0 * std::pow(2.0, static_cast<double>(cls) / static_cast<double>(options.num_classes));
    const double phase = uni(0, 2 * kPi), amp = uni(0.3, 0.8);
    const auto time = torch::arange(S, torch::kDouble) / static_cast<double>(options.sample_rate);
    audio[n].copy_((amp * torch::sin(2 * kPi * freq * time + phase)).to(torch::kFloat).unsqueeze(1));
  }
  return {image, audio, one_hot_labels(class_id, options.num_classes), class_id};
}

// ---- sources (datasets/sources.h) ----
namespace {

Clips synthetic_clip_source(SourceOptions& s, const ClipShape& shape) {
  SyntheticClipOptions o(shape);
  o.seed = static_cast<uint64_t>(s.has("seed") ? s.get_int("seed") : s.is_train() ? 1 : 2);
  return {s.get_int("count"), [o](int64_t i) { return synthetic_clips(o, i, 1); }};
}

// A CSV (columns video,audio,label; paths relative to the CSV) of recorded clips: video as a frame
// folder or a video file, WAV audio, and a label name from shape.label2id (or a class index).
Clips recorded_clip_source(SourceOptions& s, const ClipShape& shape) {
  const auto list = std::filesystem::path(s.required("list"));
  const auto rows = parse_delimited(read_file_bytes(list), ',');
  if (rows.size() < 2) throw std::runtime_error(list.string() + ": expected a header and at least one clip");
  const auto& header = rows.front();
  auto column = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) throw std::runtime_error(list.string() + ": missing column '" + name + "'");
    return static_cast<size_t>(it - header.begin());
  };
  const size_t video = column("video"), audio = column("audio"), label = column("label");
  std::vector<AvClipFiles> clips;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const std::string where = list.string() + ":" + std::to_string(r + 1);
    if (row.size() != header.size())
      throw std::runtime_error(where + ": expected " + std::to_string(header.size()) + " columns");
    AvClipFiles f;
    f.video = list.parent_path() / row[video];
    f.audio = list.parent_path() / row[audio];
    const auto it = shape.label2id.find(row[label]);
    if (it != shape.label2id.end()) {
      f.class_id = it->second;
    } else {
      try {
        f.class_id = std::stoll(row[label]);
      } catch (const std::exception&) {
        throw std::runtime_error(where + ": unknown label '" + row[label] + "'");
      }
    }
    if (f.class_id < 0 || f.class_id >= shape.num_classes) throw std::runtime_error(where + ": label out of range");
    clips.push_back(std::move(f));
  }
  VideoOptions vo;
  vo.num_frames = shape.num_frames;
  vo.height = shape.height;
  vo.width = shape.width;
  AudioOptions ao;
  ao.num_samples = shape.num_samples;
  const int64_t labels = shape.num_classes, count = static_cast<int64_t>(clips.size());
  return {count, [clips = std::move(clips), labels, vo, ao](int64_t i) {
            return load_av_clip(clips[static_cast<size_t>(i)], labels, vo, ao);
          }};
}

}  // namespace

const SourceRegistry<ClipSource>& clip_sources() {
  static const SourceRegistry<ClipSource> registry = {
      {"synthetic",
       {synthetic_clip_source, "generated clips: a square moving in a class's direction with a tone at a class's pitch",
        {{"count", "int", "512", "number of clips"},
         {"seed", "int", "", "seed of the generated clips; default 1 for data.train, 2 otherwise"}}}},
      {"files",
       {recorded_clip_source, "recorded clips listed in a CSV: video (a frame folder or a video file), WAV audio, label",
        {{"list", "string", "",
          "the CSV (columns video, audio, label; paths relative to it; a label name or class index)", true}}}},
  };
  return registry;
}

}  // namespace perceiver::datasets
