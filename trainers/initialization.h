#pragma once
// Per-pattern initialisation scales for a freshly built model (run file: model.init_std).

#include <torch/torch.h>

#include <string>
#include <vector>

namespace perceiver::trainers {

// Pattern syntax as optimizer patterns (glob, or "re:" regex) on parameter names.
struct InitStd {
  std::string pattern;
  double std = 0.02;
};

// Re-draws every parameter matched by a pattern (first match wins) from N(0, std^2) with torch's
// global generator (seeded by trainer.seed). Throws std::invalid_argument naming a pattern that
// matches no parameter or a negative std. Returns the number of parameters re-drawn.
int64_t apply_init_std(torch::nn::Module& model, const std::vector<InitStd>& rules);

}  // namespace perceiver::trainers
