// Middlebury's colour coding of optical flow (Baker et al., "A Database and Evaluation Methodology
// for Optical Flow", flowToColor / computeColor): the hue follows the direction on the 55-colour
// wheel (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6), the saturation the magnitude relative to the largest
// one; beyond that radius colours are darkened (x 0.75); unknown flow (a component above 1e9 or NaN) is black.
#pragma once

#include <filesystem>

#include <torch/types.h>

namespace perceiver {

// flow (H, W, 2) -> (H, W, 3) uint8 RGB. max_radius > 0 fixes the magnitude of full saturation (to
// compare several fields); 0 uses the field's largest valid magnitude, as Middlebury's code does.
torch::Tensor flow_to_colour(const torch::Tensor& flow, double max_radius = 0);

#if PERCEIVER_WITH_OPENCV
// flow_to_colour written as a PNG; errors name the file.
void write_flow_png(const std::filesystem::path& path, const torch::Tensor& flow, double max_radius = 0);
#endif

}  // namespace perceiver
