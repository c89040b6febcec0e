// Every attention plan against the reference (HF's maths, ReferenceMode), outputs and gradients, in
// the style of llama.cpp's test-backend-ops: one table of {grad, no grad} x {fp32, bf16 autocast} x
// {1, 2 heads} x {batch 1, 3} x {training, eval} x {setups that lead to the factored, keyless, folded
// and sliced paths}. Each row runs the same module, inputs and dropout seed twice, with the plan the
// selection picks and under ReferenceMode; the table fails if a fast path is never taken.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <sstream>

#include "perceiver/models/attention.h"
#include "perceiver/models/attention_plan.h"
#include "perceiver/models/decoders.h"
#include "perceiver/runtime/device.h"
#include "perceiver/ops/reference_mode.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

enum class Setup { encoder, encoder_apart, decoder, decoder_sliced };

const char* name_of(Setup s) {
  switch (s) {
    case Setup::encoder: return "encoder cross-attention, inputs with shared channels";
    case Setup::encoder_apart: return "encoder cross-attention, inputs held apart";
    case Setup::decoder: return "decoder, many queries to few latents";
    case Setup::decoder_sliced: return "decoder, queries taken 7 at a time";
  }
  return "";
}

struct Row {
  bool grad;
  bool bf16;
  int64_t heads;
  int64_t batch;
  bool training;
  Setup setup;
  std::string str() const {
    std::ostringstream os;
    os << (grad ? "grad" : "no grad") << ", " << (bf16 ? "bf16" : "fp32") << ", " << heads << " heads, batch " << batch
       << ", " << (training ? "training" : "eval") << ", " << name_of(setup);
    return os.str();
  }
};

constexpr int64_t kOwn = 5, kShared = 7, kInputs = 24, kLatents = 5, kLatentChannels = 8, kQueries = 30;

// One setup's module and leaves; run() is the forward whose output the row compares.
struct Case {
  std::shared_ptr<torch::nn::Module> module;
  std::vector<torch::Tensor> leaves;
  std::function<torch::Tensor()> run;
  AttentionCall call;  // what the module's attention sees, for the tally of plans
  int64_t per_pass = 0;
};

PerceiverConfig small_config() {
  PerceiverConfig config;
  config.d_latents = kLatentChannels;
  config.attention_probs_dropout_prob = 0.1;  // active in the training rows
  return config;
}

Case make_case(const Row& row) {
  torch::manual_seed(7);
  const auto config = small_config();
  Case c;
  // Shared channels large and offset, as Fourier features are: a factored layer norm has work to do.
  const auto e = (torch::randn({1, kInputs, kShared}) * 3 + 1).requires_grad_(row.grad);
  if (row.setup == Setup::encoder || row.setup == Setup::encoder_apart) {
    PerceiverLayerOptions o;
    o.is_cross_attention = true;
    o.q_dim = kLatentChannels;
    o.kv_dim = kOwn + kShared;
    o.qk_channels = 6;
    o.v_channels = 4;
    o.num_heads = row.heads;
    o.widening_factor = 2;
    auto layer = PerceiverLayer(config, o);
    const auto latents = torch::randn({row.batch, kLatents, kLatentChannels}).requires_grad_(row.grad);
    const auto own = torch::randn({row.batch, kInputs, kOwn}).requires_grad_(row.grad);
    auto mask = torch::ones({row.batch, kInputs});
    mask.index_put_({0, torch::indexing::Slice(0, 9)}, 0);
    const auto additive = invert_attention_mask(mask);
    const bool apart = row.setup == Setup::encoder_apart;
    c.run = [layer, latents, own, e, additive, apart]() mutable {
      const auto inputs = apart ? WithSharedChannels::apart(own, e)
                                : WithSharedChannels(torch::cat({own, e.expand({own.size(0), -1, -1})}, -1), e);
      return layer->forward(latents, inputs, additive).output;
    };
    c.module = layer.ptr();
    c.leaves = {latents, own, e};
    c.call.cross = true;
    c.call.batch = row.batch;
    c.call.queries = kLatents;
    c.call.keys = kInputs;
    c.call.heads = row.heads;
    c.call.v_channels = 4;
    c.call.out_channels = kLatentChannels;
    c.call.inputs_share_channels = true;
    return c;
  }
  // A decoder whose queries carry shared channels (the optical-flow decoder's do).
  BasicDecoderOptions o;
  o.output_num_channels = 3;
  o.num_channels = kOwn + kShared;
  o.num_heads = row.heads;
  o.use_query_residual = true;
  o.position_encoding.type = "none";
  o.queries_per_pass = row.setup == Setup::decoder_sliced ? 7 : kQueries;
  PerceiverBasicDecoder decoder(config, o);
  const auto own = torch::randn({row.batch, kQueries, kOwn}).requires_grad_(row.grad);
  const auto queries_e = (torch::randn({1, kQueries, kShared}) * 3 + 1).requires_grad_(row.grad);
  const auto z = torch::randn({row.batch, kLatents, kLatentChannels}).requires_grad_(row.grad);
  c.run = [decoder, own, queries_e, z]() mutable {
    const WithSharedChannels query(torch::cat({own, queries_e.expand({own.size(0), -1, -1})}, -1), queries_e);
    return decoder->forward(query, z, {}, false).logits.tensor;
  };
  c.module = decoder.ptr();
  c.leaves = {own, queries_e, z};
  c.call.cross = true;
  c.call.batch = row.batch;
  c.call.queries = kQueries;
  c.call.keys = kLatents;
  c.call.heads = row.heads;
  c.call.v_channels = kOwn + kShared;
  c.call.out_channels = kOwn + kShared;
  c.call.queries_share_channels = true;
  c.per_pass = o.queries_per_pass;
  return c;
}

struct Result {
  torch::Tensor output;
  std::vector<std::pair<std::string, torch::Tensor>> grads;  // the leaves', then the parameters'
};

Result run_once(Case& c, const Row& row, bool reference, bool bf16) {
  const ReferenceMode mode(reference);
  const torch::AutoGradMode grad(row.grad);
  c.module->train(row.training);
  for (auto& p : c.module->parameters()) p.mutable_grad() = torch::Tensor();
  for (auto& l : c.leaves) l.mutable_grad() = torch::Tensor();
  torch::manual_seed(11);  // the same dropout masks for both runs
  Result r;
  {
    const device::AutocastGuard autocast(torch::kCPU, bf16 ? device::Precision::bf16 : device::Precision::fp32);
    r.output = c.run().to(torch::kFloat32);
  }
  if (row.grad) {
    torch::manual_seed(12);
    (r.output * torch::randn(r.output.sizes())).sum().backward();
    for (size_t i = 0; i < c.leaves.size(); ++i) {
      const auto& l = c.leaves[i];
      r.grads.emplace_back("input " + std::to_string(i), l.grad().defined() ? l.grad().clone() : torch::zeros_like(l));
    }
    for (auto& [name, g] : parameter_gradients(*c.module)) r.grads.emplace_back(name, std::move(g));
  }
  r.output = r.output.detach();
  return r;
}

// In float32 a plan is within 1e-4 of the reference (scaled_error): that is the check of its maths. In
// bf16 both round coarsely in different places, so a plan is judged by its distance to the float32
// reference: at most three times the bf16 reference's own, or 5 % of the scale, with a floor of 1e-2 of
// the largest gradient where bf16 rounds every product (a gradient whose true value is zero, a key bias,
// carries only that noise). Where the rounding happens depends on the CPU (native avx512_bf16 or
// emulated): on an AVX2-only CPU a plan's one-head query gradients reach 2.4 % against the reference's
// 0.9 %; a plan with wrong maths is off by a large share of the scale.
std::string mismatch(const torch::Tensor& ours, const torch::Tensor& reference, const torch::Tensor& reference32,
                     double largest) {
  if (!reference32.defined()) {
    const double d = scaled_error(ours, reference, largest);
    return d <= 1e-4 ? "" : "off the reference by " + std::to_string(d) + " of its scale";
  }
  const double ours_error = scaled_error(ours, reference32, largest, 1e-2),
               reference_error = scaled_error(reference, reference32, largest, 1e-2);
  if (ours_error <= std::max(3 * reference_error, 5e-2)) return "";
  return "off the float32 reference by " + std::to_string(ours_error) + " of its scale, where the bf16 reference is off by " +
         std::to_string(reference_error);
}

std::vector<Row> table() {
  std::vector<Row> rows;
  for (const bool grad : {false, true})
    for (const bool bf16 : {false, true})
      for (const int64_t heads : {1, 2})
        for (const int64_t batch : {1, 3})
          for (const bool training : {false, true})
            for (const auto setup : {Setup::encoder, Setup::encoder_apart, Setup::decoder, Setup::decoder_sliced})
              rows.push_back({grad, bf16, heads, batch, training, setup});
  return rows;
}

TEST(AttentionPlans, EveryPlanGivesTheReferenceOutputsAndGradients) {
  std::map<std::string, int> taken;
  for (const auto& row : table()) {
    SCOPED_TRACE(row.str());
    auto c = make_case(row);
    const auto state = [&] {
      ExecutionState s;
      s.grad = row.grad;
      s.dropout = row.training;
      return s;
    }();
    const auto plan = select_attention_plan(c.call, state);
    if (plan.factor_queries || plan.factor_inputs) ++taken["factored"];
    if (plan.keyless) ++taken["keyless"];
    if (plan.fold_output) ++taken["folded"];
    if (c.per_pass > 0 && decode_in_slices(kQueries, c.per_pass, false, state)) ++taken["sliced"];

    const auto fast = run_once(c, row, false, row.bf16);
    const auto reference = run_once(c, row, true, row.bf16);
    const auto reference32 = row.bf16 ? run_once(c, row, true, false) : Result{};
    EXPECT_EQ(mismatch(fast.output, reference.output, reference32.output, 0), "") << "output";
    ASSERT_EQ(fast.grads.size(), reference.grads.size());
    double largest = 0;
    for (const auto& [name, g] : reference.grads) largest = std::max(largest, g.abs().max().item<double>());
    for (size_t i = 0; i < fast.grads.size(); ++i)
      EXPECT_EQ(mismatch(fast.grads[i].second, reference.grads[i].second,
                         row.bf16 ? reference32.grads[i].second : torch::Tensor(), largest),
                "")
          << "gradient of " << fast.grads[i].first;
  }
  // The table reaches every fast path, so that none goes unchecked.
  for (const char* path : {"factored", "keyless", "folded", "sliced"}) EXPECT_GT(taken[path], 0) << path;
}

// The reference is HF's plan whatever the shapes and state; the guard nests and restores.
TEST(AttentionPlans, ReferenceModeSelectsHfPlanAndRestores) {
  AttentionCall call;
  call.cross = true;
  call.batch = 3;
  call.queries = 6144;
  call.keys = 256;
  call.v_channels = 256;
  call.out_channels = 322;
  call.inputs_share_channels = call.queries_share_channels = true;
  ExecutionState state;
  const auto fast = select_attention_plan(call, state);
  EXPECT_TRUE(fast.factor_inputs && fast.factor_queries && fast.keyless && fast.in_place);
  state.reference = true;
  const auto reference = select_attention_plan(call, state);
  EXPECT_FALSE(reference.factor_inputs || reference.factor_queries || reference.keyless || reference.fold_output ||
               reference.in_place);
  EXPECT_FALSE(decode_in_slices(6144, 100, false, state));

  EXPECT_FALSE(ReferenceMode::is_enabled());
  {
    const ReferenceMode on;
    EXPECT_TRUE(ReferenceMode::is_enabled());
    EXPECT_TRUE(ExecutionState::current().reference);
    {
      const ReferenceMode off(false);
      EXPECT_FALSE(ReferenceMode::is_enabled());
    }
    EXPECT_TRUE(ReferenceMode::is_enabled());
  }
  EXPECT_FALSE(ReferenceMode::is_enabled());
}

// The selection rules, one fact each.
TEST(AttentionPlans, SelectionRules) {
  AttentionCall call;
  call.cross = true;
  call.batch = 1;
  call.queries = 6;
  call.keys = 40;
  call.v_channels = 4;
  call.out_channels = 8;
  call.inputs_share_channels = true;
  ExecutionState training;
  training.grad = true;
  // One example in training takes HF's path; two or more factor the shared channels.
  EXPECT_FALSE(select_attention_plan(call, training).factor_inputs);
  call.batch = 2;
  EXPECT_TRUE(select_attention_plan(call, training).factor_inputs);
  // The keyless form only without gradients, dropout, tracing or made keys, and with one head.
  EXPECT_FALSE(select_attention_plan(call, training).keyless);
  ExecutionState inference;
  EXPECT_TRUE(select_attention_plan(call, inference).keyless);
  call.heads = 2;
  EXPECT_FALSE(select_attention_plan(call, inference).keyless);
  call.heads = 1;
  inference.dropout = true;
  EXPECT_FALSE(select_attention_plan(call, inference).keyless);
  inference.dropout = false;
  inference.tracing = true;
  EXPECT_FALSE(select_attention_plan(call, inference).keyless);
  EXPECT_FALSE(select_attention_plan(call, inference).in_place);
}

TEST(AttentionPlans, OutputProjectionFoldsOnlyWhereItSavesWork) {
  // The optical-flow decoder: 6,144 pixels query 256 latents with one head; 42 % fewer FLOPs.
  EXPECT_TRUE(output_projection_folds(6144, 256, 256, 322, 1));
  // Self-attention (as many queries as keys, V = O): the same work either way.
  EXPECT_FALSE(output_projection_folds(256, 256, 1280, 1280, 8));
  EXPECT_FALSE(output_projection_folds(256, 256, 256, 256, 1));
  // The language decoder's eight heads each weigh all 256 latents for every output channel.
  EXPECT_FALSE(output_projection_folds(2048, 256, 768, 768, 8));
  // An encoder's latents querying many inputs, a classifier's one query.
  EXPECT_FALSE(output_projection_folds(256, 2048, 1280, 1280, 8));
  EXPECT_FALSE(output_projection_folds(1, 256, 256, 10, 1));
}

}  // namespace
}  // namespace perceiver::testing
