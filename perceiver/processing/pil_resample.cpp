// Pillow-exact 8-bit resizing: a re-derivation of python-pillow's src/libImaging/Resample.c
// (convolution filters) and Geometry.c's ImagingScaleAffine (nearest), kept bit-for-bit.
#include "perceiver/processing/pil_resample.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace perceiver::image {
namespace {

// Pillow keeps 8 bits for the result and 2 for overflow (negative lobes): 22 fractional bits.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

// The filter kernels, with Pillow's constants and branch boundaries (they decide exact ties).
double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_filter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_filter(double x) {
  x = std::fabs(x);
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= M_PI;
  // Pillow writes these constants as floats.
  return std::sin(x) / x * (static_cast<double>(0.54f) + static_cast<double>(0.46f) * std::cos(x));
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;  // Pillow's choice (OpenCV uses -0.75, hence different pixels)
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {
  return (-3.0 <= x && x < 3.0) ? sinc_filter(x) * sinc_filter(x / 3) : 0.0;
}

struct Kernel {
  double (*fn)(double);
  double support;
};

Kernel kernel_for(PilFilter filter) {
  switch (filter) {
    case PilFilter::Box: return {box_filter, 0.5};
    case PilFilter::Bilinear: return {bilinear_filter, 1.0};
    case PilFilter::Hamming: return {hamming_filter, 1.0};
    case PilFilter::Bicubic: return {bicubic_filter, 2.0};
    case PilFilter::Lanczos: return {lanczos_filter, 3.0};
    case PilFilter::Nearest: break;
  }
  throw std::runtime_error("make_resample_axis: the nearest filter has no convolution kernel");
}

// Pillow's clip8: the accumulator carries kPrecisionBits fractional bits; its lookup table clamps
// the integer part to [0, 255] (arithmetic shift, so negative sums floor).
inline uint8_t clip8(int32_t acc) {
  return static_cast<uint8_t>(std::clamp(acc >> kPrecisionBits, 0, 255));
}

// Horizontal pass over source rows [row0, row0 + dst.rows). Channels are interleaved.
template <int C>
void horizontal_pass(const cv::Mat& src, int row0, const ResampleAxis& ax, cv::Mat& dst) {
  for (int y = 0; y < dst.rows; ++y) {
    const uint8_t* in = src.ptr<uint8_t>(row0 + y);
    uint8_t* out = dst.ptr<uint8_t>(y);
    for (int x = 0; x < ax.out_size; ++x) {
      const int32_t* k = ax.weights.data() + static_cast<size_t>(x) * ax.ksize;
      const uint8_t* p = in + static_cast<size_t>(ax.first[x]) * C;
      int32_t acc[C];
      for (int c = 0; c < C; ++c) acc[c] = kHalf;  // Pillow starts at half an LSB: round to nearest
      for (int j = 0; j < ax.count[x]; ++j) {
        for (int c = 0; c < C; ++c) acc[c] += static_cast<int32_t>(p[j * C + c]) * k[j];
      }
      for (int c = 0; c < C; ++c) out[x * C + c] = clip8(acc[c]);
    }
  }
}

// Vertical pass: every output row is a weighted sum of `count` source rows, so whole rows are
// accumulated at once (channels need no distinction here).
void vertical_pass(const cv::Mat& src, const ResampleAxis& ax, int row_offset, cv::Mat& dst) {
  const int n = dst.cols * dst.channels();
  std::vector<int32_t> acc(static_cast<size_t>(n));
  for (int y = 0; y < ax.out_size; ++y) {
    const int32_t* k = ax.weights.data() + static_cast<size_t>(y) * ax.ksize;
    std::fill(acc.begin(), acc.end(), kHalf);
    for (int j = 0; j < ax.count[y]; ++j) {
      const uint8_t* in = src.ptr<uint8_t>(ax.first[y] - row_offset + j);
      const int32_t w = k[j];
      for (int i = 0; i < n; ++i) acc[i] += static_cast<int32_t>(in[i]) * w;
    }
    uint8_t* out = dst.ptr<uint8_t>(y);
    for (int i = 0; i < n; ++i) out[i] = clip8(acc[i]);
  }
}

void horizontal_dispatch(const cv::Mat& src, int row0, const ResampleAxis& ax, cv::Mat& dst) {
  switch (src.channels()) {
    case 1: horizontal_pass<1>(src, row0, ax, dst); break;
    case 2: horizontal_pass<2>(src, row0, ax, dst); break;
    case 3: horizontal_pass<3>(src, row0, ax, dst); break;
    default: horizontal_pass<4>(src, row0, ax, dst); break;
  }
}

// Pillow's COORD(): truncation, but anything negative maps to -1 (outside).
inline int coord(double v) { return v < 0.0 ? -1 : static_cast<int>(v); }

// Nearest neighbour as Pillow does it (ImagingScaleAffine): source positions are accumulated by
// repeated addition of the step from half a step, exactly as in C, so ties land the same way.
cv::Mat nearest_resize(const cv::Mat& src, int out_w, int out_h) {
  const int C = src.channels();
  const double ax = static_cast<double>(static_cast<float>(src.cols)) / out_w;
  const double ay = static_cast<double>(static_cast<float>(src.rows)) / out_h;
  std::vector<int> xin(static_cast<size_t>(out_w), -1);
  double xo = ax * 0.5;
  for (int x = 0; x < out_w; ++x) {
    const int xi = coord(xo);
    xin[x] = (xi >= 0 && xi < src.cols) ? xi : -1;
    xo += ax;
  }
  cv::Mat dst(out_h, out_w, src.type(), cv::Scalar::all(0));  // Pillow fills outside pixels with 0
  double yo = ay * 0.5;
  for (int y = 0; y < out_h; ++y) {
    const int yi = coord(yo);
    yo += ay;
    if (yi < 0 || yi >= src.rows) continue;
    const uint8_t* in = src.ptr<uint8_t>(yi);
    uint8_t* out = dst.ptr<uint8_t>(y);
    for (int x = 0; x < out_w; ++x) {
      if (xin[x] < 0) continue;
      std::copy_n(in + static_cast<size_t>(xin[x]) * C, C, out + static_cast<size_t>(x) * C);
    }
  }
  return dst;
}

}  // namespace

PilFilter pil_filter_from_int(int value) {
  if (value < 0 || value > 5) {
    throw std::runtime_error("resample filter " + std::to_string(value) +
                                " is not a Pillow filter id (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, "
                                "4 box, 5 hamming)");
  }
  return static_cast<PilFilter>(value);
}

const char* pil_filter_name(PilFilter filter) {
  switch (filter) {
    case PilFilter::Nearest: return "nearest";
    case PilFilter::Lanczos: return "lanczos";
    case PilFilter::Bilinear: return "bilinear";
    case PilFilter::Bicubic: return "bicubic";
    case PilFilter::Box: return "box";
    case PilFilter::Hamming: return "hamming";
  }
  return "unknown";
}

ResampleAxis make_resample_axis(int in_size, int out_size, PilFilter filter) {
  if (in_size < 1 || out_size < 1) {
    throw std::runtime_error("make_resample_axis: sizes must be >= 1, got " + std::to_string(in_size) + " -> " +
                                std::to_string(out_size));
  }
  const Kernel kernel = kernel_for(filter);
  // Pillow passes the box edges as floats (0 and in_size) and works in double from there.
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  const double scale = static_cast<double>(in1 - in0) / out_size;
  // Downscaling widens the kernel by the scale factor (antialiasing); upscaling keeps it.
  const double filterscale = std::max(scale, 1.0);
  const double support = kernel.support * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  if (static_cast<double>(ksize) * out_size > (1 << 28)) {
    throw std::runtime_error("make_resample_axis: " + std::to_string(in_size) + " -> " + std::to_string(out_size) +
                                " needs too many coefficients");
  }

  ResampleAxis ax;
  ax.in_size = in_size;
  ax.out_size = out_size;
  ax.ksize = ksize;
  ax.first.resize(static_cast<size_t>(out_size));
  ax.count.resize(static_cast<size_t>(out_size));
  ax.weights.assign(static_cast<size_t>(out_size) * ksize, 0);
  std::vector<double> k(static_cast<size_t>(ksize));
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    // Pillow "rounds" with +0.5 and a truncating cast; the clamps keep the window inside the image.
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = std::clamp(xmax - xmin, 0, ksize);
    double ww = 0.0;
    for (int x = 0; x < n; ++x) {
      k[x] = kernel.fn((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    int32_t* w = ax.weights.data() + static_cast<size_t>(xx) * ksize;
    for (int x = 0; x < n; ++x) {
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      // Fixed point with rounding half away from zero (normalize_coeffs_8bpc).
      const double scaled = v * (1 << kPrecisionBits);
      w[x] = static_cast<int32_t>(v < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    ax.first[xx] = xmin;
    ax.count[xx] = n;
  }
  return ax;
}

std::shared_ptr<const ResampleAxis> ResampleCache::axis(int in_size, int out_size, PilFilter filter) {
  const auto key = std::make_tuple(in_size, out_size, static_cast<int>(filter));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = axes_.find(key); it != axes_.end()) return it->second;
  }
  auto made = std::make_shared<const ResampleAxis>(make_resample_axis(in_size, out_size, filter));
  std::lock_guard<std::mutex> lock(mutex_);
  return axes_.emplace(key, std::move(made)).first->second;  // keeps the first if another thread won
}

cv::Mat pil_resize(const cv::Mat& src, int out_width, int out_height, PilFilter filter, ResampleCache* cache) {
  if (src.empty()) throw std::runtime_error("pil_resize: empty input image");
  if (src.depth() != CV_8U || src.channels() < 1 || src.channels() > 4 || src.dims != 2) {
    throw std::runtime_error("pil_resize: expected an 8-bit image with 1 to 4 channels, got type " +
                                std::to_string(src.type()) + " with " + std::to_string(src.channels()) + " channels");
  }
  if (out_width < 1 || out_height < 1) {
    throw std::runtime_error("pil_resize: output size must be positive, got " + std::to_string(out_width) + "x" +
                                std::to_string(out_height));
  }
  // Same size: Pillow returns a copy without filtering.
  if (out_width == src.cols && out_height == src.rows) return src.clone();
  if (filter == PilFilter::Nearest) return nearest_resize(src, out_width, out_height);

  auto get_axis = [&](int in, int out) {
    return cache ? cache->axis(in, out, filter) : std::make_shared<const ResampleAxis>(make_resample_axis(in, out, filter));
  };
  const bool need_horizontal = out_width != src.cols;
  const bool need_vertical = out_height != src.rows;

  // Like Pillow: horizontal first, filtering only the source rows the vertical pass will read.
  cv::Mat current = src;
  int row_offset = 0;
  std::shared_ptr<const ResampleAxis> vert;
  if (need_vertical) vert = get_axis(src.rows, out_height);
  if (need_horizontal) {
    const auto horiz = get_axis(src.cols, out_width);
    int first_row = 0, last_row = src.rows;
    if (vert) {
      first_row = vert->first.front();
      last_row = vert->first.back() + vert->count.back();
    }
    cv::Mat temp(last_row - first_row, out_width, src.type());
    horizontal_dispatch(src, first_row, *horiz, temp);
    current = temp;
    row_offset = first_row;
  }
  if (!need_vertical) return current;
  cv::Mat out(out_height, current.cols, src.type());
  vertical_pass(current, *vert, row_offset, out);
  return out;
}

}  // namespace perceiver::image
