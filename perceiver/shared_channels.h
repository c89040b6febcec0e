// A (B, M, C) tensor whose last channels may be the same for every example.
#pragma once

#include <torch/torch.h>

#include <utility>

namespace perceiver {

// `all` (B, M, C), and optionally `shared` (1, M, Cs): its last Cs channels when they are the same for
// every example (position features that a preprocessor concatenated); for a slice of a longer
// sequence (rows()), the whole sequence's shared channels, all's rows being theirs from shared_offset.
// An attention layer that normalises and projects such a tensor (a cross-attention's inputs, or a
// decoder's queries when they are those inputs) projects the shared channels once per batch instead of once per example (the same
// result up to float rounding), and without gradients once for as long as the weights and the shared
// channels stay the same.
struct WithSharedChannels {
  WithSharedChannels(torch::Tensor all_ = {}, torch::Tensor shared_ = {})  // NOLINT: a plain tensor converts
      : all(std::move(all_)), shared(std::move(shared_)) {}
  torch::Tensor all;
  torch::Tensor shared;
  // A slice keeps the whole sequence's shared channels, so that their terms, kept between calls,
  // serve every slice; all's rows are shared's from shared_offset on.
  bool sliced = false;
  int64_t shared_offset = 0;

  // Rows [start, start + length) of the sequence (views).
  WithSharedChannels rows(int64_t start, int64_t length) const {
    WithSharedChannels slice(all.narrow(1, start, length), shared);
    slice.sliced = true;
    slice.shared_offset = shared_offset + start;
    return slice;
  }
};

}  // namespace perceiver
