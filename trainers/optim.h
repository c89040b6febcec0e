// Optimizers over named parameters: AdamW / SGD (torch::optim) and LAMB, with parameter groups
// built from name patterns (decoupled weight decay only where it belongs, lr multipliers, freezing).
#pragma once

#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "datasets/option_spec.h"
#include "perceiver/ops/torch_compat.h"

namespace perceiver::trainers {

// A name pattern: "re:EXPR" is an ECMAScript regex searched anywhere in the name; anything else is a
// glob ('*' any run of characters, '?' one character) matched against the whole name.
bool name_matches(const std::string& pattern, const std::string& name);
bool name_matches_any(const std::vector<std::string>& patterns, const std::string& name);

// Biases, norm weights, latents and position embeddings / masks: no weight decay by default.
std::vector<std::string> default_no_decay_patterns();

struct LrMultiplier {
  std::string pattern;
  double multiplier = 1.0;
};

struct OptimizerOptions {
  std::string name = "adamw";  // adamw | lamb | sgd
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // sgd: classic L2 (torch::optim::SGD), adamw / lamb: decoupled
  double momentum = 0.0;       // sgd only
  bool nesterov = false;       // sgd only
  std::vector<std::string> exclude_from_decay = default_no_decay_patterns();
  std::vector<LrMultiplier> lr_multipliers;  // first matching pattern wins
  std::vector<std::string> freeze;           // matching parameters get requires_grad=false
};

// From a run file's `optimizer` section: name, lr, betas: [b1, b2], eps, weight_decay, momentum,
// nesterov, exclude_from_decay: [patterns] (replaces the defaults), lr_multipliers: {pattern: x}
// (in file order), freeze: [patterns]. Absent keys keep their defaults. Throws ConfigError naming
// source (the run file), line and key for wrong types and bad values.
// The `optimizer` section's keys as a run file declares them (trainers/run_options.h); their defaults
// are OptimizerOptions'.
const datasets::OptionSpecs& optimizer_option_specs();

OptimizerOptions optimizer_options_from_yaml(const YAML::Node& section, const std::string& source,
                                             const std::string& path = "optimizer");

// What one optimizer param group holds (same order as optimizer->param_groups()).
struct ParamGroupInfo {
  bool decay = true;
  double lr_multiplier = 1.0;
  std::vector<std::string> names;
};

struct BuiltOptimizer {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<ParamGroupInfo> groups;
  std::vector<std::string> frozen;  // parameters left out (frozen here or already requires_grad=false)
  double base_lr = 0.0;

  std::vector<double> lr_multipliers() const;
};

using NamedParameters = std::vector<std::pair<std::string, torch::Tensor>>;

// Throws std::invalid_argument for an unknown optimizer name, bad hyper-parameters, a bad regex,
// or when every parameter is frozen.
BuiltOptimizer build_optimizer(const NamedParameters& params, const OptimizerOptions& options);
BuiltOptimizer build_optimizer(const torch::OrderedDict<std::string, torch::Tensor>& params,
                               const OptimizerOptions& options);

// Drops every gradient of the optimizer's parameters (Python's zero_grad(set_to_none=True), which
// LibTorch 1.13's zero_grad() lacks): no pass zeroing them, and the next backward hands its gradient
// over instead of adding it to zeros. Optimizers skip a parameter without a gradient.
void clear_gradients(torch::optim::Optimizer& optimizer);

// ---- Pieces of an optimizer's step ----

// The closure's loss, evaluated with gradients on (as torch's optimizers do); undefined without one.
torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure);

// p's state in an optimizer's state map, made on first use as torch's Adam-family optimizers make it:
// step 0 and zero moments shaped like p. State: a param state with step, exp_avg and exp_avg_sq.
template <typename State, typename StateMap>
State& moment_state(StateMap& states, const torch::Tensor& p) {
  const auto key = compat::optimizer_state_key(p);
  auto it = states.find(key);
  if (it == states.end()) {
    auto fresh = std::make_unique<State>();
    fresh->step(0);
    fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    it = states.emplace(key, std::move(fresh)).first;
  }
  return static_cast<State&>(*it->second);
}

// ---- LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning", Algorithm 2) ----

struct LambOptions : public torch::optim::OptimizerCloneableOptions<LambOptions> {
  LambOptions(double lr = 1e-3) : lr_(lr) {}
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(bool, bias_correction) = true;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

struct LambParamState : public torch::optim::OptimizerCloneableParamState<LambParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);
  TORCH_ARG(torch::Tensor, exp_avg_sq);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

// Per parameter: Adam direction r = m_hat / (sqrt(v_hat) + eps), update u = r + wd * w,
// w -= lr * (||w|| / ||u||) * u, the trust ratio being 1 when either norm is 0.
class Lamb : public torch::optim::Optimizer {
 public:
  explicit Lamb(std::vector<torch::optim::OptimizerParamGroup> param_groups, LambOptions defaults = {});
  explicit Lamb(std::vector<torch::Tensor> params, LambOptions defaults = {})
      : Lamb({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace perceiver::trainers
