#include "perceiver/processing/image_writer.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <stdexcept>

namespace perceiver {

void write_image_rgb(const std::filesystem::path& path, const torch::Tensor& rgb) {
  if (rgb.dim() != 3 || rgb.size(2) != 3)
    throw std::invalid_argument("cannot write '" + path.string() + "': expected an (H, W, 3) RGB tensor, got " +
                                c10::str(rgb.sizes()));
  auto bytes = rgb.scalar_type() == torch::kUInt8 ? rgb : (rgb.to(torch::kFloat).clamp(0, 1) * 255).round().to(torch::kUInt8);
  bytes = bytes.to(torch::kCPU).contiguous();
  const cv::Mat image(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC3, bytes.data_ptr<uint8_t>());
  cv::Mat bgr;
  cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  bool ok = false;
  try {
    ok = cv::imwrite(path.string(), bgr);
  } catch (const cv::Exception& e) {
    throw std::runtime_error("cannot write '" + path.string() + "': " + e.what());
  }
  if (!ok) throw std::runtime_error("cannot write '" + path.string() + "': check the folder and the extension");
}

}  // namespace perceiver
