// Audio-video-label examples for PerceiverForMultimodalAutoencoding: video frames (folder or file, OpenCV),
// WAV audio (libsndfile), one-hot labels, and a class-conditioned synthetic generator.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace perceiver::datasets {

struct VideoOptions {
  int64_t num_frames = 16;  // frames kept (evenly spaced over the clip when it has more; last frame repeated if fewer)
  int64_t height = 224;     // every frame resized (INTER_AREA) to height x width
  int64_t width = 224;
};
// (T, 3, H, W) float32 RGB in [0, 1] from a directory of images (sorted names) or a video file.
torch::Tensor read_video(const std::filesystem::path& path, const VideoOptions& options = {});

struct AudioOptions {
  int64_t num_samples = 30720;  // cropped or zero-padded to this many samples (0: keep the file's length)
  bool mono = true;             // average the channels
};
struct Audio {
  torch::Tensor samples;  // (num_samples, channels) float32 in [-1, 1]
  int64_t sample_rate = 0;
};
Audio read_wav(const std::filesystem::path& path, const AudioOptions& options = {});
// 16-bit PCM WAV of (samples, channels) float in [-1, 1].
void write_wav(const std::filesystem::path& path, const torch::Tensor& samples, int64_t sample_rate);

// (N) int64 class ids -> (N, num_labels) float32 one-hot; throws on ids outside [0, num_labels).
torch::Tensor one_hot_labels(const torch::Tensor& ids, int64_t num_labels);

struct MultimodalBatch {
  torch::Tensor image;  // (B, T, 3, H, W) float32 in [0, 1]
  torch::Tensor audio;  // (B, samples, 1) float32
  torch::Tensor label;  // (B, num_labels) float32 one-hot
  torch::Tensor class_id;  // (B) int64
};

// One recorded clip: video (frame folder or file), WAV audio and a class id, shaped as a batch of one
// (image (1, T, 3, H, W), audio (1, samples, 1), label (1, num_labels)).
struct AvClipFiles {
  std::filesystem::path video;
  std::filesystem::path audio;
  int64_t class_id = 0;
};
MultimodalBatch load_av_clip(const AvClipFiles& files, int64_t num_labels, const VideoOptions& video = {},
                             const AudioOptions& audio = {});

// What a multimodal autoencoder's clips look like: classes, frames, frame size, audio samples, and
// the label names a recorded clip list may use.
struct ClipShape {
  int64_t num_classes = 0;
  int64_t num_frames = 16;
  int64_t height = 224, width = 224;
  int64_t num_samples = 30720;  // audio samples per clip
  std::map<std::string, int64_t> label2id;
};

struct SyntheticClipOptions : ClipShape {
  SyntheticClipOptions() : ClipShape{4, 16, 32, 32, 1920, {}} {}  // small clips for tests and demos
  explicit SyntheticClipOptions(const ClipShape& shape) : ClipShape(shape) {}
  int64_t sample_rate = 16000;
  uint64_t seed = 0;
};
// Clip `index` of class index % num_classes: a bright square moving in direction 2*pi*class/num_classes
// at constant speed over a dark noisy background, and a tone at 440 * 2^(class/num_classes) Hz with a
// random phase. Same (seed, index) -> same clip.
MultimodalBatch synthetic_clips(const SyntheticClipOptions& options, int64_t first_index, int64_t count);

}  // namespace perceiver::datasets
