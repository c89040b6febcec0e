// A (B, M, C) tensor whose last channels may be the same for every example.
#pragma once

#include <torch/torch.h>

#include <utility>

namespace perceiver {

// `all` (B, M, C), and optionally `shared` (1, M, Cs): its last Cs channels when they are the same for
// every example (position features that a preprocessor concatenated); for a slice of a longer
// sequence (rows()), the whole sequence's shared channels, all's rows being theirs from shared_offset.
// An attention layer that normalises and projects such a tensor (a cross-attention's inputs, or a
// decoder's queries when they are those inputs or rows of them) projects the shared channels once per
// batch instead of once per example (the same result up to float rounding), and without gradients
// once for as long as the weights and the shared channels stay the same.
// Held apart (apart()), `all` is not made at all: `own` holds the first C - Cs channels, and whole()
// concatenates them with the shared ones only where a consumer cannot take the parts.
struct WithSharedChannels {
  WithSharedChannels(torch::Tensor all_ = {}, torch::Tensor shared_ = {})  // NOLINT: a plain tensor converts
      : all(std::move(all_)), shared(std::move(shared_)) {}
  // own (B, M, C - Cs) and shared (1, M, Cs), not concatenated.
  static WithSharedChannels apart(torch::Tensor own, torch::Tensor shared);

  torch::Tensor all;  // undefined when held apart
  torch::Tensor own;  // held apart only
  torch::Tensor shared;
  // A slice keeps the whole sequence's shared channels, so that their terms, kept between calls,
  // serve every slice; the rows are shared's from shared_offset on.
  bool sliced = false;
  int64_t shared_offset = 0;

  bool defined() const { return all.defined() || own.defined(); }
  bool held_apart() const { return !all.defined() && own.defined(); }
  // A tensor with the examples and rows (B, M, ...) and the dtype and device: all, or own.
  const torch::Tensor& rows_tensor() const { return all.defined() ? all : own; }
  // Size of the whole (B, M, C) tensor along dim.
  int64_t size(int64_t dim) const;
  // The first C - Cs channels (a view of all, or own); all where nothing is shared.
  torch::Tensor own_channels() const;
  // The (B, M, C) tensor: all, or own and the shared channels of these rows concatenated (made per call).
  torch::Tensor whole() const;
  // Rows [start, start + length) of the sequence (views).
  WithSharedChannels rows(int64_t start, int64_t length) const;
};

}  // namespace perceiver
