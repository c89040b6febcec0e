#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <sstream>

#include "trainers/fused_adamw.h"
#include "trainers/optim.h"
#include "trainers/run_config_util.h"
#include "trainers/schedule.h"

namespace {

using perceiver::trainers::build_optimizer;
using perceiver::trainers::Lamb;
using perceiver::trainers::LambOptions;
using perceiver::trainers::NamedParameters;
using perceiver::trainers::OptimizerOptions;

// The paper's update (You et al. 2019, Algorithm 2) written out with plain tensor ops.
struct ReferenceLamb {
  double lr, b1, b2, eps, wd;
  torch::Tensor m, v;
  int64_t t = 0;
  void step(torch::Tensor& w, const torch::Tensor& g) {
    if (!m.defined()) m = torch::zeros_like(w), v = torch::zeros_like(w);
    ++t;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const auto m_hat = m / (1 - std::pow(b1, t));
    const auto v_hat = v / (1 - std::pow(b2, t));
    const auto r = m_hat / (torch::sqrt(v_hat) + eps) + wd * w;
    const double wn = w.norm().item<double>(), rn = r.norm().item<double>();
    const double trust = (wn > 0 && rn > 0) ? wn / rn : 1.0;
    w = w - lr * trust * r;
  }
};

TEST(TrainOptim, LambMatchesHandComputedSteps) {
  torch::manual_seed(0);
  auto w = torch::randn({2, 3}, torch::kFloat64).requires_grad_();
  auto expected = w.detach().clone();
  Lamb lamb({w}, LambOptions(0.05).beta1(0.8).beta2(0.95).eps(1e-6).weight_decay(0.1));
  ReferenceLamb ref{0.05, 0.8, 0.95, 1e-6, 0.1};
  for (int i = 0; i < 3; ++i) {
    const auto g = torch::randn({2, 3}, torch::kFloat64);
    w.mutable_grad() = g.clone();
    lamb.step();
    ref.step(expected, g);
    ASSERT_TRUE(torch::allclose(w.detach(), expected, 1e-12, 1e-12)) << "step " << i;
  }
}

TEST(TrainOptim, LambTrustRatioIsOneForZeroWeights) {
  auto w = torch::zeros({4}, torch::kFloat64).requires_grad_();
  w.mutable_grad() = torch::tensor({1.0, -2.0, 0.5, 0.0}, torch::kFloat64);
  Lamb lamb({w}, LambOptions(0.1).eps(1e-8));
  lamb.step();
  // First step, bias-corrected: m_hat = g, v_hat = g^2, update = sign(g) (0 where g = 0), trust ratio 1.
  const auto g = torch::tensor({1.0, -2.0, 0.5, 0.0}, torch::kFloat64);
  const auto expected = -0.1 * g / (g.abs() + 1e-8);
  EXPECT_TRUE(torch::allclose(w.detach(), expected, 1e-9, 1e-12));
}

// Saves `from`'s state as a checkpoint does and loads it into `to`.
void transfer_state(const torch::optim::Optimizer& from, torch::optim::Optimizer& to) {
  std::stringstream buffer;
  torch::serialize::OutputArchive out;
  from.save(out);
  out.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  to.load(in);
}

using MakeOptimizer = std::function<std::unique_ptr<torch::optim::Optimizer>(const torch::Tensor&)>;

// Two steps of `first` on a parameter, its state loaded into `second` (on a copy of the parameter, as a
// resumed run has it), then two more steps of both on the same gradients: {first's, second's, start}.
std::vector<torch::Tensor> steps_across_a_checkpoint(const MakeOptimizer& first, const MakeOptimizer& second) {
  const auto init = torch::randn({6, 4});
  std::vector<torch::Tensor> grads;
  for (int i = 0; i < 4; ++i) grads.push_back(torch::randn({6, 4}));
  auto a = init.clone().requires_grad_();
  const auto opt_a = first(a);
  for (int i = 0; i < 2; ++i) {
    a.mutable_grad() = grads[i].clone();
    opt_a->step();
  }
  auto b = a.detach().clone().requires_grad_();
  const auto opt_b = second(b);
  transfer_state(*opt_a, *opt_b);
  for (int i = 2; i < 4; ++i) {
    a.mutable_grad() = grads[i].clone();
    b.mutable_grad() = grads[i].clone();
    opt_a->step();
    opt_b->step();
  }
  return {a.detach(), b.detach(), init};
}

TEST(TrainOptim, LambStateRoundTripResumesExactly) {
  torch::manual_seed(1);
  const MakeOptimizer lamb = [](const torch::Tensor& p) {
    return std::make_unique<Lamb>(std::vector<torch::Tensor>{p}, LambOptions(0.01).weight_decay(0.01));
  };
  const auto run = steps_across_a_checkpoint(lamb, lamb);
  EXPECT_TRUE(torch::equal(run[0], run[1]));
}

// FusedAdamW against torch::optim::AdamW on the same gradients: two groups with their own lr and
// weight decay, a parameter larger than one thread's share and of odd length, and one that has no
// gradient in some steps.
std::vector<torch::Tensor> adamw_trajectory(bool fused, torch::Dtype dtype, bool amsgrad, int steps) {
  torch::manual_seed(11);
  std::vector<torch::Tensor> params{torch::randn({40001}, dtype), torch::randn({7, 3}, dtype), torch::randn({5}, dtype)};
  for (auto& p : params) p.requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{params[0], params[1]},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(3e-3).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{params[2]},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-2).weight_decay(0.0)));
  const auto defaults = torch::optim::AdamWOptions(1e-3).amsgrad(amsgrad);
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (fused)
    optimizer = std::make_unique<perceiver::trainers::FusedAdamW>(std::move(groups), defaults);
  else
    optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups), defaults);
  for (auto& g : optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).amsgrad(amsgrad);
  for (int step = 0; step < steps; ++step) {
    for (size_t i = 0; i < params.size(); ++i) {
      if (i == 2 && step % 2 == 1) params[i].mutable_grad() = torch::Tensor();  // no gradient this step
      else params[i].mutable_grad() = torch::randn(params[i].sizes(), dtype) * (i + 1.0);
    }
    optimizer->step();
  }
  return params;
}

TEST(TrainOptim, FusedAdamWMatchesTorchAdamW) {
  const auto fused = adamw_trajectory(true, torch::kFloat32, false, 6);
  const auto reference = adamw_trajectory(false, torch::kFloat32, false, 6);
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused[i], reference[i], 1e-6, 1e-7)) << "parameter " << i << ": max difference "
                                                                      << (fused[i] - reference[i]).abs().max().item<double>();
    if (i < 2)  // (the third has no gradient in the last step)
      EXPECT_FALSE(torch::equal(fused[i], adamw_trajectory(false, torch::kFloat32, false, 5)[i])) << "the last step changed nothing";
  }
  // Where it cannot fuse (amsgrad, float64) it is torch's AdamW exactly.
  for (const auto& [dtype, amsgrad] : std::vector<std::pair<torch::Dtype, bool>>{{torch::kFloat32, true}, {torch::kFloat64, false}}) {
    const auto a = adamw_trajectory(true, dtype, amsgrad, 3), b = adamw_trajectory(false, dtype, amsgrad, 3);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  }
}

// Like ATen's in-place ops, a fused step bumps the versions of what it writes (caches and autograd's
// saved-tensor checks key on them).
TEST(TrainOptim, FusedAdamWBumpsTheParametersVersion) {
  auto p = torch::randn({3, 5}).requires_grad_();
  perceiver::trainers::FusedAdamW optimizer({p}, torch::optim::AdamWOptions(1e-2));
  p.mutable_grad() = torch::randn({3, 5});
  const auto version = p._version();
  optimizer.step();
  EXPECT_GT(p._version(), version);
}

// Its checkpoints are torch's AdamW's: saved by one, loaded by the other, the steps go on alike.
TEST(TrainOptim, FusedAdamWStateIsTorchAdamWState) {
  torch::manual_seed(12);
  const auto options = torch::optim::AdamWOptions(0.01).weight_decay(0.05);
  const auto run = steps_across_a_checkpoint(
      [&](const torch::Tensor& p) {
        return std::make_unique<perceiver::trainers::FusedAdamW>(std::vector<torch::Tensor>{p}, options);
      },
      [&](const torch::Tensor& p) { return std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{p}, options); });
  EXPECT_TRUE(torch::allclose(run[0], run[1], 1e-6, 1e-7));
  EXPECT_GT((run[0] - run[2]).abs().max().item<double>(), 1e-3);
}

NamedParameters perceiver_like_params() {
  NamedParameters p;
  for (const char* name : {"embeddings.latents", "encoder.cross_attention.attention.self.query.weight",
                           "encoder.cross_attention.attention.self.query.bias",
                           "encoder.cross_attention.attention.self.layernorm1.weight",
                           "input_preprocessor.position_embeddings.weight", "decoder.decoder.output_position_encodings.position_embeddings",
                           "decoder.decoder.final_layer.weight", "decoder.decoder.final_layer.bias"}) {
    p.emplace_back(name, torch::ones({2}).requires_grad_());
  }
  return p;
}

TEST(TrainOptim, AdamWDecaysOnlyDecayParameters) {
  const auto params = perceiver_like_params();
  OptimizerOptions o;
  o.name = "adamw";
  o.lr = 0.1;
  o.weight_decay = 0.5;
  auto built = build_optimizer(params, o);
  ASSERT_EQ(built.groups.size(), 2u);
  std::vector<std::string> decayed, plain;
  for (size_t i = 0; i < built.groups.size(); ++i) {
    const auto& opts = static_cast<const torch::optim::AdamWOptions&>(built.optimizer->param_groups()[i].options());
    EXPECT_DOUBLE_EQ(opts.weight_decay(), built.groups[i].decay ? 0.5 : 0.0);
    auto& target = built.groups[i].decay ? decayed : plain;
    target.insert(target.end(), built.groups[i].names.begin(), built.groups[i].names.end());
  }
  EXPECT_EQ(decayed, (std::vector<std::string>{"encoder.cross_attention.attention.self.query.weight",
                                               "decoder.decoder.final_layer.weight"}));
  EXPECT_EQ(plain.size(), 6u);

  // Zero gradients: the Adam term vanishes and only decoupled decay moves decay parameters.
  for (const auto& [name, t] : params) t.mutable_grad() = torch::zeros_like(t);
  built.optimizer->step();
  for (const auto& [name, t] : params) {
    const bool decays = std::find(decayed.begin(), decayed.end(), name) != decayed.end();
    const double expected = decays ? 1.0 * (1 - 0.1 * 0.5) : 1.0;
    EXPECT_NEAR(t[0].item<double>(), expected, 1e-7) << name;
  }
}

TEST(TrainOptim, LambGroupsMatchPerGroupReference) {
  torch::manual_seed(2);
  NamedParameters params = {{"layer.weight", torch::randn({3, 2}, torch::kFloat64).requires_grad_()},
                            {"layer.bias", torch::randn({3}, torch::kFloat64).requires_grad_()}};
  OptimizerOptions o;
  o.name = "lamb";
  o.lr = 0.02;
  o.weight_decay = 0.3;
  o.eps = 1e-6;
  auto built = build_optimizer(params, o);
  ASSERT_EQ(built.groups.size(), 2u);
  // The bias is excluded from decay: its reference step uses wd = 0.
  ReferenceLamb ref_w{0.02, 0.9, 0.999, 1e-6, 0.3}, ref_b{0.02, 0.9, 0.999, 1e-6, 0.0};
  auto w = params[0].second.detach().clone(), b = params[1].second.detach().clone();
  for (int i = 0; i < 2; ++i) {
    const auto gw = torch::randn({3, 2}, torch::kFloat64), gb = torch::randn({3}, torch::kFloat64);
    params[0].second.mutable_grad() = gw.clone();
    params[1].second.mutable_grad() = gb.clone();
    built.optimizer->step();
    ref_w.step(w, gw);
    ref_b.step(b, gb);
  }
  EXPECT_TRUE(torch::allclose(params[0].second.detach(), w, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(params[1].second.detach(), b, 1e-12, 1e-12));
}

TEST(TrainOptim, ExcludeFromDecayIsConfigurable) {
  OptimizerOptions o;
  o.exclude_from_decay = {"re:bias$"};
  auto built = build_optimizer(perceiver_like_params(), o);
  size_t decayed = 0;
  for (const auto& g : built.groups) decayed += g.decay ? g.names.size() : 0;
  EXPECT_EQ(decayed, 6u);  // latents, norms and position embeddings decay once asked
}

TEST(TrainOptim, LrMultipliersFreezeAndScheduleKeepMultipliers) {
  const auto params = perceiver_like_params();
  OptimizerOptions o;
  o.name = "sgd";
  o.lr = 1.0;
  o.momentum = 0.9;
  o.lr_multipliers = {{"re:^decoder\\.", 0.1}, {"encoder.*", 2.0}};
  o.freeze = {"embeddings.*", "input_preprocessor.*"};
  auto built = build_optimizer(params, o);
  EXPECT_EQ(built.frozen, (std::vector<std::string>{"embeddings.latents", "input_preprocessor.position_embeddings.weight"}));
  EXPECT_FALSE(params[0].second.requires_grad());
  size_t total = 0;
  for (size_t i = 0; i < built.groups.size(); ++i) {
    const auto& info = built.groups[i];
    total += info.names.size();
    for (const auto& n : info.names) {
      const double want = n.rfind("decoder.", 0) == 0 ? 0.1 : n.rfind("encoder.", 0) == 0 ? 2.0 : 1.0;
      EXPECT_DOUBLE_EQ(info.lr_multiplier, want) << n;
    }
    EXPECT_DOUBLE_EQ(built.optimizer->param_groups()[i].options().get_lr(), info.lr_multiplier);
  }
  EXPECT_EQ(total, 6u);

  perceiver::trainers::set_learning_rate(*built.optimizer, 0.25, built.lr_multipliers());
  for (size_t i = 0; i < built.groups.size(); ++i) {
    EXPECT_DOUBLE_EQ(built.optimizer->param_groups()[i].options().get_lr(), 0.25 * built.groups[i].lr_multiplier);
  }
  EXPECT_THROW(perceiver::trainers::set_learning_rate(*built.optimizer, 0.1, {1.0}), std::invalid_argument);
}

TEST(TrainOptim, RejectsBadOptions) {
  OptimizerOptions o;
  o.name = "adam";
  EXPECT_THROW(build_optimizer(perceiver_like_params(), o), std::invalid_argument);
  o.name = "adamw";
  o.beta1 = 1.0;
  EXPECT_THROW(build_optimizer(perceiver_like_params(), o), std::invalid_argument);
  o.beta1 = 0.9;
  o.freeze = {"*"};
  EXPECT_THROW(build_optimizer(perceiver_like_params(), o), std::invalid_argument);
  o.freeze = {"re:("};
  EXPECT_THROW(build_optimizer(perceiver_like_params(), o), std::invalid_argument);
}

TEST(TrainOptim, GlobAndRegexPatterns) {
  using perceiver::trainers::name_matches;
  EXPECT_TRUE(name_matches("*norm*", "encoder.layernorm1.weight"));
  EXPECT_TRUE(name_matches("a?c", "abc"));
  EXPECT_FALSE(name_matches("a?c", "abbc"));
  EXPECT_FALSE(name_matches("*bias", "bias.weight"));
  EXPECT_TRUE(name_matches("re:layer\\.[0-9]+\\.", "encoder.layer.11.x"));
  EXPECT_FALSE(name_matches("re:^layer", "encoder.layer.1"));
}

// ---- schedules: expectations follow the formulas written independently here ----

using perceiver::trainers::learning_rate_at;
using perceiver::trainers::ScheduleOptions;

TEST(TrainSchedule, ConstantWithWarmup) {
  ScheduleOptions s{"constant", 10, 0, 0.0, 0.5};
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1e-3, 0), 0.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1e-3, 5), 0.5e-3);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1e-3, 10), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1e-3, 100000), 1e-3);
}

TEST(TrainSchedule, LinearWarmupThenDecay) {
  ScheduleOptions s{"linear", 10, 110, 0.0, 0.5};
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 2.0, 3), 2.0 * 3 / 10);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 2.0, 10), 2.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 2.0, 60), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 2.0, 110), 0.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 2.0, 500), 0.0);
}

TEST(TrainSchedule, CosineToMinLr) {
  ScheduleOptions s{"cosine", 100, 1100, 0.1, 0.5};
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1.0, 50), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1.0, 100), 1.0);
  EXPECT_NEAR(learning_rate_at(s, 1.0, 600), 0.1 + 0.9 * 0.5, 1e-12);  // half-way
  EXPECT_NEAR(learning_rate_at(s, 1.0, 350), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_NEAR(learning_rate_at(s, 1.0, 1100), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate_at(s, 1.0, 5000), 0.1, 1e-12);
}

TEST(TrainSchedule, ConstantThenCosine) {
  ScheduleOptions s{"constant_cosine", 0, 1000, 0.0, 0.6};
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1.0, 0), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1.0, 599), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(s, 1.0, 600), 1.0);
  EXPECT_NEAR(learning_rate_at(s, 1.0, 800), 0.5, 1e-12);
  EXPECT_NEAR(learning_rate_at(s, 1.0, 1000), 0.0, 1e-12);
}

TEST(TrainSchedule, RejectsInconsistentOptions) {
  EXPECT_THROW(learning_rate_at(ScheduleOptions{"step", 0, 10, 0, 0.5}, 1.0, 0), std::invalid_argument);
  EXPECT_THROW(learning_rate_at(ScheduleOptions{"cosine", 20, 10, 0, 0.5}, 1.0, 0), std::invalid_argument);
  EXPECT_THROW(learning_rate_at(ScheduleOptions{"linear", 0, 0, 0, 0.5}, 1.0, 0), std::invalid_argument);
}

// ---- run-file sections ----

std::string config_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const perceiver::trainers::ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError>";
}

TEST(TrainOptim, OptionsFromRunFileSection) {
  using perceiver::trainers::lookup;
  using perceiver::trainers::parse_run_config;
  const auto c = parse_run_config(
      "optimizer:\n  name: lamb\n  lr: 2e-3\n  betas: [0.8, 0.98]\n  weight_decay: 0.05\n"
      "  lr_multipliers: {'decoder.*': 0.1, 're:^enc': 2}\n  freeze: [embeddings.latents]\n"
      "  exclude_from_decay: []\n",
      "r.yaml");
  const auto o = perceiver::trainers::optimizer_options_from_yaml(lookup(c.root, "optimizer"), c.source);
  EXPECT_EQ(o.name, "lamb");
  EXPECT_DOUBLE_EQ(o.lr, 2e-3);
  EXPECT_DOUBLE_EQ(o.beta1, 0.8);
  EXPECT_DOUBLE_EQ(o.beta2, 0.98);
  EXPECT_DOUBLE_EQ(o.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(o.eps, OptimizerOptions{}.eps);
  ASSERT_EQ(o.lr_multipliers.size(), 2u);
  EXPECT_EQ(o.lr_multipliers[0].pattern, "decoder.*");
  EXPECT_DOUBLE_EQ(o.lr_multipliers[1].multiplier, 2.0);
  EXPECT_EQ(o.freeze, std::vector<std::string>{"embeddings.latents"});
  EXPECT_TRUE(o.exclude_from_decay.empty());
  // An absent section gives the defaults.
  EXPECT_EQ(perceiver::trainers::optimizer_options_from_yaml(lookup(c.root, "nothing"), c.source).name, "adamw");

  auto section_error = [](const std::string& yaml) {
    return config_error([&] {
      const auto cfg = parse_run_config("optimizer:\n" + yaml, "r.yaml");
      perceiver::trainers::optimizer_options_from_yaml(lookup(cfg.root, "optimizer"), cfg.source);
    });
  };
  EXPECT_EQ(section_error("  lr: fast\n"), "r.yaml:2: 'optimizer.lr' must be a float, found 'fast'");
  EXPECT_EQ(section_error("  lr: 1\n  betas: [0.9]\n"),
            "r.yaml:3: 'optimizer.betas' must be a list of two floats, found 1 values");
  EXPECT_EQ(section_error("  name: adam\n"), "r.yaml:2: 'optimizer.name' must be one of adamw, lamb, sgd, found 'adam'");
  EXPECT_EQ(section_error("  lr_multipliers: {'a*': x}\n"),
            "r.yaml:2: 'optimizer.lr_multipliers' must map each pattern to a float, found 'a*' -> 'x'");
  EXPECT_EQ(section_error("  freeze: ['re:(']\n").rfind("r.yaml: 'optimizer': invalid regex", 0), 0u);
}

TEST(TrainSchedule, OptionsFromRunFileSection) {
  using perceiver::trainers::lookup;
  using perceiver::trainers::parse_run_config;
  const auto c = parse_run_config("schedule:\n  name: constant_cosine\n  warmup_steps: 10\n  constant_fraction: 0.7\n", "r.yaml");
  const auto s = perceiver::trainers::schedule_options_from_yaml(lookup(c.root, "schedule"), c.source);
  EXPECT_EQ(s.name, "constant_cosine");
  EXPECT_EQ(s.warmup_steps, 10);
  EXPECT_EQ(s.total_steps, 0);  // left for the trainer
  EXPECT_DOUBLE_EQ(s.constant_fraction, 0.7);
  const auto bad = parse_run_config("schedule:\n  name: cosine\n  warmup_steps: 1.5\n", "r.yaml");
  EXPECT_EQ(config_error([&] { perceiver::trainers::schedule_options_from_yaml(lookup(bad.root, "schedule"), bad.source); }),
            "r.yaml:3: 'schedule.warmup_steps' must be an int, found '1.5'");
  const auto odd = parse_run_config("schedule:\n  name: step\n", "r.yaml");
  EXPECT_NE(config_error([&] { perceiver::trainers::schedule_options_from_yaml(lookup(odd.root, "schedule"), odd.source); })
                .find("unknown name"),
            std::string::npos);
}

}  // namespace
