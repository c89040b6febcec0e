// torch::optim::AdamW with its update done in one pass over each parameter.
#pragma once

#include <torch/torch.h>

namespace perceiver::trainers {

// The same options, state (AdamWParamState) and checkpoints as torch::optim::AdamW, and the same
// arithmetic per element (up to float rounding): torch's step runs about nine passes over each
// parameter and its moments (mul_, add_, addcmul_, sqrt, div, add_, addcdiv_ and temporaries); this
// one reads p, g, m, v once and writes p, m, v once, on the intra-op threads. Steps that hold
// anything else (CUDA or non-float32 tensors, non-contiguous ones, amsgrad) are torch's own.
class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  bool fusable() const;
};

}  // namespace perceiver::trainers
