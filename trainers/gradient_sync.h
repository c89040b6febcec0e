// Gradient averaging over ranks, overlapped with backward: c10d's Reducer (the engine behind Python's
// DistributedDataParallel) all-reduces buckets of gradients as soon as backward has produced them.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace perceiver::trainers {

class Distributed;

struct GradientSyncOptions {
  // Every step gives gradients to the same parameters, the same number of times. Needed by reentrant
  // activation checkpointing, whose replays accumulate a shared layer's gradient once per use: the
  // Reducer counts the uses in the first step and reduces a parameter after its last one. Without it,
  // unused parameters are found anew every step (they may change from step to step).
  bool static_graph = false;
  int64_t bucket_bytes = 25 * 1024 * 1024;  // as Python's DDP (bucket_cap_mb = 25); the first bucket is 1 MiB
};

// Where a synchronised backward's time went, summed over the steps so far.
struct GradientSyncStats {
  int64_t synced_backwards = 0;
  double backward_seconds = 0;  // whole synchronised backwards (compute + communication)
  // From the last parameter gradient to the end of backward: the all-reduce not hidden behind compute.
  double exposed_seconds = 0;
};

class GradientSync {
 public:
  // `parameters`: the trainable ones (frozen parameters are left out), named for error messages; the
  // same list, in the same order, on every rank (checked).
  GradientSync(Distributed& dist, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
               const GradientSyncOptions& options);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Backward of one micro-step. With `sync` (the last micro-step of an optimizer step) the gradients
  // end up averaged over the ranks; without it they only accumulate locally (no communication).
  void backward(const torch::Tensor& loss, bool sync);

  GradientSyncStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace perceiver::trainers
