#include "trainers/adamw_kernel.h"

#include <cmath>

namespace perceiver::trainers {

__attribute__((target_clones("avx512f", "avx2", "default"))) void adamw_update(float* p, const float* g, float* m,
                                                                                float* v, int64_t n,
                                                                                const AdamWScalars& s) {
  const AdamWScalars c = s;  // by value: no aliasing with the arrays, so the loop vectorises
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    const float vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * c.decay + c.neg_step_size * (mi / (std::sqrt(vi) / c.bias_correction2_sqrt + c.eps));
  }
}

}  // namespace perceiver::trainers
