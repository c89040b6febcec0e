// Pillow-exact image resizing on 8-bit images (what `PIL.Image.resize` does for modes L/RGB/RGBX).
//
// HF's image processors resize through Pillow, so a port that wants bit-identical pixel values must
// reproduce Pillow's integer arithmetic (src/libImaging/Resample.c and Geometry.c), not OpenCV's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include <opencv2/core.hpp>

namespace perceiver::image {

// Pillow's resampling filter ids (PIL.Image.Resampling); HF configs store them as integers.
enum class PilFilter : int { Nearest = 0, Lanczos = 1, Bilinear = 2, Bicubic = 3, Box = 4, Hamming = 5 };

// Maps a config integer to a filter; throws std::runtime_error for anything outside 0..5.
PilFilter pil_filter_from_int(int value);
const char* pil_filter_name(PilFilter filter);

// Fixed-point coefficients for resampling one axis from in_size to out_size samples (Pillow's
// precompute_coeffs + normalize_coeffs_8bpc). Output sample i reads `count[i]` inputs starting at
// `first[i]`, weighted by `weights[i * ksize + j]` (22 fractional bits).
struct ResampleAxis {
  int in_size = 0;
  int out_size = 0;
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;
};

// Computes the coefficients for a convolution filter (not Nearest); throws std::runtime_error for
// sizes < 1.
ResampleAxis make_resample_axis(int in_size, int out_size, PilFilter filter);

// Thread-safe cache of ResampleAxis per (in, out, filter): a data pipeline resizes many images of
// the same few sizes, and the coefficients cost more to compute than a small image costs to filter.
class ResampleCache {
 public:
  std::shared_ptr<const ResampleAxis> axis(int in_size, int out_size, PilFilter filter);

 private:
  std::mutex mutex_;
  std::map<std::tuple<int, int, int>, std::shared_ptr<const ResampleAxis>> axes_;
};

// Resizes an 8-bit image with 1..4 interleaved channels (CV_8UC1..CV_8UC4, any row stride) to
// out_width x out_height exactly as Pillow's Image.resize(size, filter) does for 8-bit modes
// ("L", "RGB", "RGBX"; not "RGBA", which Pillow premultiplies first). Channels are independent.
// `cache` (optional) reuses coefficients across calls. Throws std::runtime_error on bad input.
cv::Mat pil_resize(const cv::Mat& src, int out_width, int out_height, PilFilter filter,
                   ResampleCache* cache = nullptr);

}  // namespace perceiver::image
