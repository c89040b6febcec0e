// Throughput of the shipped model shapes: forward (inference) and forward + backward (training).
#include <benchmark/benchmark.h>

#include "perceiver/models/architectures.h"
#include "perceiver/models/encoder.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/optical_flow.h"

namespace {

perceiver::PerceiverPreTrainedModel mlm_model(int64_t d, int64_t latents, int64_t layers, int64_t seq) {
  auto config = perceiver::PerceiverConfig::from_json({{"d_model", d},
                                                       {"d_latents", d},
                                                       {"num_latents", latents},
                                                       {"num_self_attends_per_block", layers},
                                                       {"num_self_attention_heads", 8},
                                                       {"num_cross_attention_heads", 8},
                                                       {"max_position_embeddings", seq},
                                                       {"attention_probs_dropout_prob", 0.0},
                                                       {"architectures", {"PerceiverForMaskedLM"}}});
  return perceiver::build_model(config);
}

// A mid-size byte-level MLM (d 256, 128 latents, 6 self-attends), batch 32 x 256 bytes.
void BM_MlmKjvForward(benchmark::State& state) {
  auto model = mlm_model(256, 128, 6, 256);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(6, 262, {32, 256}, torch::kLong);
  for (auto _ : state) benchmark::DoNotOptimize(model->forward_named({{"inputs", ids}}, {}));
  state.SetItemsProcessed(state.iterations() * ids.numel());
}
BENCHMARK(BM_MlmKjvForward)->Unit(benchmark::kMillisecond);

void BM_MlmKjvTrainStep(benchmark::State& state) {
  auto model = mlm_model(256, 128, 6, 256);
  model->train();
  perceiver::set_activation_checkpointing(*model, state.range(0) != 0);
  const auto ids = torch::randint(6, 262, {32, 256}, torch::kLong);
  const auto labels = torch::where(torch::rand({32, 256}) < 0.15, ids, torch::full_like(ids, -100));
  for (auto _ : state) {
    model->zero_grad();
    model->forward_named({{"inputs", ids}, {"labels", labels}}, {}).at("loss").backward();
  }
  state.SetItemsProcessed(state.iterations() * ids.numel());
}
BENCHMARK(BM_MlmKjvTrainStep)->Arg(0)->Arg(1)->ArgName("activation_checkpointing")->Unit(benchmark::kMillisecond);

// configs/flow_synthetic.yaml's model (48x64 pairs), batch 16, all pixels decoded (arg 0) or a
// random 256 (arg 256, task.train_query_pixels). Compare PERCEIVER_SYSTEM_MALLOC=1 for the
// allocator's share (perceiver::runtime::keep_freed_memory).
void BM_FlowTrainStep(benchmark::State& state) {
  auto config = perceiver::PerceiverConfig::from_json({{"train_size", {48, 64}},
                                                       {"d_latents", 128},
                                                       {"num_latents", 128},
                                                       {"num_self_attends_per_block", 4},
                                                       {"num_self_attention_heads", 4},
                                                       {"num_cross_attention_heads", 8},
                                                       {"qk_channels", 128},
                                                       {"v_channels", 128},
                                                       {"attention_probs_dropout_prob", 0.0}});
  perceiver::PerceiverForOpticalFlow model(config);
  model->train();
  const auto inputs = torch::randn({16, 2, 27, 48, 64});
  const auto labels = torch::randn({16, 48, 64, 2});
  const int64_t points = state.range(0);
  for (auto _ : state) {
    model->zero_grad();
    const auto subset = points > 0 ? torch::randperm(48 * 64).slice(0, 0, points) : torch::Tensor();
    model->forward(inputs, {}, labels, {}, subset).loss.backward();
  }
  state.SetItemsProcessed(state.iterations() * inputs.size(0));
}
BENCHMARK(BM_FlowTrainStep)->Arg(0)->Arg(256)->ArgName("train_query_pixels")->Unit(benchmark::kMillisecond);

}  // namespace
