// The element loop of one AdamW step over a float32 parameter, in a file of its own: it is built
// without the precompiled torch header and with -fno-math-errno, so that the compiler vectorises the
// square root, and for several instruction sets chosen at run time (target_clones).
#pragma once

#include <cstdint>

namespace perceiver::trainers {

struct AdamWScalars {
  float decay;            // 1 - lr * weight_decay
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  float eps;
  float neg_step_size;          // -lr / (1 - beta1^step)
};

// For i in [0, n), in torch::optim::AdamW's order of operations:
//   p = p * decay;  m = m * beta1 + (1 - beta1) g;  v = v * beta2 + (1 - beta2) g g;
//   p = p + neg_step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);

}  // namespace perceiver::trainers
