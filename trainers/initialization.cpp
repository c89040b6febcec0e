#include "trainers/initialization.h"

#include "trainers/optim.h"

namespace perceiver::trainers {

int64_t apply_init_std(torch::nn::Module& model, const std::vector<InitStd>& rules) {
  std::vector<int64_t> hits(rules.size(), 0);
  for (const auto& rule : rules) {
    if (!(rule.std >= 0.0)) throw std::invalid_argument("pattern '" + rule.pattern + "': std must be >= 0");
  }
  torch::NoGradGuard no_grad;
  int64_t total = 0;
  for (auto& item : model.named_parameters()) {
    const auto& name = item.key();
    auto& tensor = item.value();
    bool drawn = false;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (!name_matches(rules[i].pattern, name)) continue;
      ++hits[i];
      if (drawn) continue;  // the first matching rule decides
      tensor.normal_(0.0, rules[i].std);
      drawn = true;
      ++total;
    }
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    if (hits[i] == 0) throw std::invalid_argument("pattern '" + rules[i].pattern + "' matches no parameter");
  }
  return total;
}

}  // namespace perceiver::trainers
