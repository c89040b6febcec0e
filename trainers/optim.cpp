#include "trainers/optim.h"

#include "perceiver/ops/torch_compat.h"
#include "trainers/fused_adamw.h"
#include "trainers/run_config_util.h"

#include <torch/optim/serialize.h>

#include <cmath>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace perceiver::trainers {

namespace {

bool glob_match(const std::string& pattern, const std::string& text) {
  // Iterative wildcard matching with one backtrack point: linear in practice, no recursion depth.
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

void check_hyperparameters(const OptimizerOptions& o) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("optimizer '" + o.name + "': " + what);
  };
  if (!(o.lr >= 0)) fail("lr must be >= 0, got " + std::to_string(o.lr));
  if (!(o.eps >= 0)) fail("eps must be >= 0, got " + std::to_string(o.eps));
  if (!(o.beta1 >= 0 && o.beta1 < 1)) fail("betas[0] must be in [0, 1), got " + std::to_string(o.beta1));
  if (!(o.beta2 >= 0 && o.beta2 < 1)) fail("betas[1] must be in [0, 1), got " + std::to_string(o.beta2));
  if (!(o.weight_decay >= 0)) fail("weight_decay must be >= 0, got " + std::to_string(o.weight_decay));
  if (!(o.momentum >= 0)) fail("momentum must be >= 0, got " + std::to_string(o.momentum));
  if (o.nesterov && o.momentum <= 0) fail("nesterov needs momentum > 0");
  for (const auto& m : o.lr_multipliers) {
    if (!(m.multiplier >= 0)) fail("lr multiplier for '" + m.pattern + "' must be >= 0");
  }
}

std::unique_ptr<torch::optim::OptimizerOptions> group_options(const OptimizerOptions& o, double lr,
                                                              double weight_decay) {
  if (o.name == "adamw") {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr)
                                                            .betas(std::make_tuple(o.beta1, o.beta2))
                                                            .eps(o.eps)
                                                            .weight_decay(weight_decay));
  }
  if (o.name == "lamb") {
    return std::make_unique<LambOptions>(
        LambOptions(lr).beta1(o.beta1).beta2(o.beta2).eps(o.eps).weight_decay(weight_decay));
  }
  if (o.name == "sgd") {
    return std::make_unique<torch::optim::SGDOptions>(
        torch::optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(weight_decay));
  }
  throw std::invalid_argument("unknown optimizer '" + o.name + "' (expected adamw, lamb or sgd)");
}

}  // namespace

bool name_matches(const std::string& pattern, const std::string& name) {
  if (pattern.rfind("re:", 0) == 0) {
    try {
      return std::regex_search(name, std::regex(pattern.substr(3), std::regex::ECMAScript));
    } catch (const std::regex_error& e) {
      throw std::invalid_argument("invalid regex in name pattern '" + pattern + "': " + e.what());
    }
  }
  return glob_match(pattern, name);
}

bool name_matches_any(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns) {
    if (name_matches(p, name)) return true;
  }
  return false;
}

std::vector<std::string> default_no_decay_patterns() {
  return {"*bias",          "*norm*",     "*embeddings.latents*", "*position_embeddings*",
          "*position_encoding*", "*padding*", "*mask*"};
}

std::vector<double> BuiltOptimizer::lr_multipliers() const {
  std::vector<double> out;
  out.reserve(groups.size());
  for (const auto& g : groups) out.push_back(g.lr_multiplier);
  return out;
}

BuiltOptimizer build_optimizer(const NamedParameters& params, const OptimizerOptions& options) {
  check_hyperparameters(options);
  group_options(options, options.lr, 0.0);  // rejects an unknown name before any side effect

  BuiltOptimizer built;
  built.base_lr = options.lr;
  std::map<std::pair<bool, double>, size_t> group_of;  // (decay, multiplier) -> group index
  std::vector<std::vector<torch::Tensor>> tensors;
  for (const auto& [name, tensor] : params) {
    if (!tensor.defined()) throw std::invalid_argument("parameter '" + name + "' is an undefined tensor");
    if (name_matches_any(options.freeze, name)) tensor.set_requires_grad(false);
    if (!tensor.requires_grad()) {
      built.frozen.push_back(name);
      continue;
    }
    const bool decay = options.weight_decay > 0 && !name_matches_any(options.exclude_from_decay, name);
    double multiplier = 1.0;
    for (const auto& m : options.lr_multipliers) {
      if (name_matches(m.pattern, name)) {
        multiplier = m.multiplier;
        break;
      }
    }
    const auto key = std::make_pair(decay, multiplier);
    auto it = group_of.find(key);
    if (it == group_of.end()) {
      it = group_of.emplace(key, built.groups.size()).first;
      built.groups.push_back(ParamGroupInfo{decay, multiplier, {}});
      tensors.emplace_back();
    }
    built.groups[it->second].names.push_back(name);
    tensors[it->second].push_back(tensor);
  }
  if (built.groups.empty()) {
    throw std::invalid_argument("optimizer '" + options.name + "': no trainable parameters (" +
                                std::to_string(built.frozen.size()) + " frozen)");
  }

  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (size_t i = 0; i < built.groups.size(); ++i) {
    const auto& info = built.groups[i];
    groups.emplace_back(tensors[i], group_options(options, options.lr * info.lr_multiplier,
                                                  info.decay ? options.weight_decay : 0.0));
  }
  if (options.name == "adamw") {
    built.optimizer = std::make_unique<FusedAdamW>(
        std::move(groups), static_cast<const torch::optim::AdamWOptions&>(
                               *group_options(options, options.lr, options.weight_decay)));
  } else if (options.name == "lamb") {
    built.optimizer = std::make_unique<Lamb>(std::move(groups), LambOptions(options.lr)
                                                                    .beta1(options.beta1)
                                                                    .beta2(options.beta2)
                                                                    .eps(options.eps)
                                                                    .weight_decay(options.weight_decay));
  } else {
    built.optimizer = std::make_unique<torch::optim::SGD>(
        std::move(groups), torch::optim::SGDOptions(options.lr)
                               .momentum(options.momentum)
                               .nesterov(options.nesterov)
                               .weight_decay(options.weight_decay));
  }
  return built;
}

void clear_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
}

const datasets::OptionSpecs& optimizer_option_specs() {
  static const datasets::OptionSpecs specs = [] {
    const OptimizerOptions d;
    return datasets::OptionSpecs{
        {"name", "enum[adamw, lamb, sgd]", d.name, "adamw (decoupled weight decay), lamb (layer-wise trust ratio) or sgd"},
        {"lr", "float", yaml_text(d.lr), "base learning rate (the schedule scales it)"},
        {"weight_decay", "float", yaml_text(d.weight_decay), "decoupled for adamw and lamb, classic L2 for sgd"},
        {"betas", "list[float]", yaml_text(std::vector<double>{d.beta1, d.beta2}), "adamw and lamb: [beta1, beta2]"},
        {"eps", "float", yaml_text(d.eps), "adamw and lamb: added to the denominator"},
        {"momentum", "float", yaml_text(d.momentum), "sgd only"},
        {"nesterov", "bool", yaml_text(d.nesterov), "sgd only: Nesterov momentum"},
        {"exclude_from_decay", "list[string]", yaml_text(d.exclude_from_decay),
         "parameter name patterns (glob, or re:REGEX) without weight decay; replaces the default list"},
        {"lr_multipliers", "map", "", "{pattern: factor}: the first matching pattern scales a parameter's learning rate"},
        {"freeze", "list[string]", yaml_text(d.freeze), "parameter name patterns that are not trained"},
    };
  }();
  return specs;
}

OptimizerOptions optimizer_options_from_yaml(const YAML::Node& section, const std::string& source,
                                             const std::string& path) {
  const SectionReader r(section, source, path);
  OptimizerOptions o;
  o.name = r.get<std::string>("name", o.name, "a string");
  if (o.name != "adamw" && o.name != "lamb" && o.name != "sgd") {
    r.fail("name", "must be one of adamw, lamb, sgd, found '" + o.name + "'");
  }
  o.lr = r.get<double>("lr", o.lr, "a float");
  if (r.has("betas")) {
    const auto betas = r.get<std::vector<double>>("betas", {}, "a list of two floats");
    if (betas.size() != 2) r.fail("betas", "must be a list of two floats, found " + std::to_string(betas.size()) + " values");
    o.beta1 = betas[0];
    o.beta2 = betas[1];
  }
  o.eps = r.get<double>("eps", o.eps, "a float");
  o.weight_decay = r.get<double>("weight_decay", o.weight_decay, "a float");
  o.momentum = r.get<double>("momentum", o.momentum, "a float");
  o.nesterov = r.get<bool>("nesterov", o.nesterov, "a bool");
  o.exclude_from_decay = r.get<std::vector<std::string>>("exclude_from_decay", o.exclude_from_decay, "a list of patterns");
  o.freeze = r.get<std::vector<std::string>>("freeze", o.freeze, "a list of patterns");
  for (auto& [pattern, multiplier] : r.pattern_map("lr_multipliers", "a float"))
    o.lr_multipliers.push_back({pattern, multiplier});
  try {
    check_hyperparameters(o);
    for (const auto& p : o.exclude_from_decay) name_matches(p, "");  // bad regexes fail here, not mid-training
    for (const auto& p : o.freeze) name_matches(p, "");
    for (const auto& m : o.lr_multipliers) name_matches(m.pattern, "");
  } catch (const std::invalid_argument& e) {
    throw ConfigError({source + ": '" + path + "': " + e.what()});
  }
  return o;
}

BuiltOptimizer build_optimizer(const torch::OrderedDict<std::string, torch::Tensor>& params,
                               const OptimizerOptions& options) {
  NamedParameters named;
  named.reserve(params.size());
  for (const auto& item : params) named.emplace_back(item.key(), item.value());
  return build_optimizer(named, options);
}

// ---- LAMB ----

void LambOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta1);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta2);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(bias_correction);
}

void LambOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta1);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta2);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, bias_correction);
}

void LambParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void LambParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
}

Lamb::Lamb(std::vector<torch::optim::OptimizerParamGroup> param_groups, LambOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<LambOptions>(defaults)) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("LAMB: " + what); };
  if (!(defaults.lr() >= 0)) fail("lr must be >= 0");
  if (!(defaults.eps() >= 0)) fail("eps must be >= 0");
  if (!(defaults.beta1() >= 0 && defaults.beta1() < 1)) fail("beta1 must be in [0, 1)");
  if (!(defaults.beta2() >= 0 && defaults.beta2() < 1)) fail("beta2 must be in [0, 1)");
  if (!(defaults.weight_decay() >= 0)) fail("weight_decay must be >= 0");
}

torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (!closure) return {};
  const at::AutoGradMode enable_grad(true);
  return closure();
}

torch::Tensor Lamb::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  const auto loss = evaluate_closure(closure);
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const LambOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto& grad = p.grad();
      if (grad.is_sparse()) throw std::invalid_argument("LAMB does not support sparse gradients");
      auto& s = moment_state<LambParamState>(state_, p);
      s.step(s.step() + 1);
      s.exp_avg().mul_(o.beta1()).add_(grad, 1 - o.beta1());
      s.exp_avg_sq().mul_(o.beta2()).addcmul_(grad, grad, 1 - o.beta2());
      const double bc1 = o.bias_correction() ? 1 - std::pow(o.beta1(), static_cast<double>(s.step())) : 1.0;
      const double bc2 = o.bias_correction() ? 1 - std::pow(o.beta2(), static_cast<double>(s.step())) : 1.0;
      auto update = (s.exp_avg() / bc1) / ((s.exp_avg_sq() / bc2).sqrt_().add_(o.eps()));
      if (o.weight_decay() != 0) update.add_(p, o.weight_decay());
      // Trust ratio stays a tensor so that no device sync is needed.
      const auto w_norm = p.norm();
      const auto u_norm = update.norm();
      const auto trust =
          torch::where(w_norm.gt(0).logical_and(u_norm.gt(0)), w_norm / u_norm, torch::ones_like(w_norm));
      p.sub_(update.mul_(trust * o.lr()));
    }
  }
  return loss;
}

void Lamb::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<LambParamState, LambOptions>(archive, *this);
}

void Lamb::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<LambParamState, LambOptions>(archive, *this);
}

}  // namespace perceiver::trainers
