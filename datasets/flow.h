// Optical flow data: Middlebury .flo files, MPI-Sintel and FlyingChairs layouts, an exact synthetic
// generator, and the 3x3 patch input that PerceiverForOpticalFlow consumes.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "perceiver/processing/flow_input.h"

namespace perceiver::datasets {

// Flow (H, W, 2) float32: channel 0 = horizontal (x) displacement, 1 = vertical (y), in pixels,
// mapping a pixel p of frame 1 to p + flow(p) in frame 2. Values are kept as stored: Middlebury's
// "unknown flow" (components above 1e9) stays in the tensor and is left out of the optical-flow loss
// and every EPE (perceiver::valid_flow_mask).
torch::Tensor read_flo(const std::filesystem::path& path);
torch::Tensor parse_flo(const std::string& bytes, const std::string& name);
void write_flo(const std::filesystem::path& path, const torch::Tensor& flow);

struct FlowFiles {
  std::filesystem::path frame1, frame2;
  std::filesystem::path flow;  // empty where the layout has no ground truth (Sintel test)
  std::string group;           // Sintel scene; empty for FlyingChairs
};

// <root>/<split>/<pass>/<scene>/frame_XXXX.png pairs (consecutive frames) with
// <root>/<split>/flow/<scene>/frame_XXXX.flo; pass is "clean" or "final". Sorted by scene, frame.
std::vector<FlowFiles> discover_sintel(const std::filesystem::path& root, const std::string& pass = "clean",
                                       const std::string& split = "training");
// XXXXX_img1.ppm, XXXXX_img2.ppm, XXXXX_flow.flo in root (or root/data), sorted by number. With
// split_file (FlyingChairs_train_val.txt: one 1=train / 2=validation per pair) keeps pairs whose code == keep.
std::vector<FlowFiles> discover_flying_chairs(const std::filesystem::path& root,
                                              const std::filesystem::path& split_file = {}, int keep = 1);

struct FlowSample {
  torch::Tensor frame1;  // (H, W, 3) float32 RGB in [0, 255]
  torch::Tensor frame2;
  torch::Tensor flow;    // (H, W, 2) float32; undefined when the files have none
};
FlowSample load_flow_sample(const FlowFiles& files);

struct SyntheticFlowOptions {
  int64_t height = 64;
  int64_t width = 64;
  double max_displacement = 6.0;  // pixels; each sample draws its own scale in [0.5, 1] of this
  int waves = 24;                 // sinusoids in the texture (wavelengths 8..40 px)
  int blobs = 16;                 // Gaussian blobs in the texture (sigma 3..10 px)
  // A camera pan shared by every pair, added to each pair's own smooth flow: (u, v) in pixels.
  std::array<double, 2> pan = {0.0, 0.0};
  uint64_t seed = 0;
};
// Exact ground truth: frame2(q) = T(q) and frame1(p) = T(p + flow(p)) for one smooth texture T, so
// frame2 sampled at p + flow(p) is frame1(p). Frames are unquantised floats. Same (seed, index) -> same sample.
FlowSample synthetic_flow_sample(const SyntheticFlowOptions& options, uint64_t index);

struct ShiftedImageOptions {
  int64_t height = 24;  // the pair's size (the model's train_size)
  int64_t width = 32;
  double max_displacement = 2.0;  // each pair's shift is drawn uniformly from the disc of this radius
  uint64_t seed = 0;
};
// A real image moved by a known translation d: frame2 is a crop of image i mod N and frame1 the same
// crop sampled (bilinear) at p + d, so the ground truth is the constant flow d and frame2 sampled at
// p + d is frame1(p). The crop lies far enough inside the image that no sample falls outside it.
// Images: (H, W, 3) float32 in [0, 255], each at least (height + 2m) x (width + 2m) with
// m = ceil(max_displacement) + 1. Same (seed, index) -> same pair.
FlowSample shifted_image_sample(const std::vector<torch::Tensor>& images, const ShiftedImageOptions& options,
                                uint64_t index);

// Bilinear sample of `image` (H, W, C) at p + flow(p) (zeros outside): with the ground truth flow,
// warp_backward(frame2, flow) reproduces frame1.
torch::Tensor warp_backward(const torch::Tensor& image, const torch::Tensor& flow);

// The model's input (moved to the core library, where the flow pipeline uses it too).
using perceiver::extract_patches_3x3;
using perceiver::flow_model_input;

}  // namespace perceiver::datasets
