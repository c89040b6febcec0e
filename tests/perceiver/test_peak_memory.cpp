// Peak memory of a training step and of an inference pass, guarded against the reference: the fast
// paths (factored shared channels, keyless and folded attention, sliced decoding) must not hold more
// tensor memory at their peak than HF's maths (ReferenceMode) holds for the same step, so that an
// innocent copy or a kept intermediate in a fast path shows up here rather than in a user's RSS.
// Memory is counted at LibTorch's CPU allocator, which every tensor of these passes comes from
// (exact byte counts, unlike RSS, which moves with the malloc in use).
#include <gtest/gtest.h>

#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "perceiver/models/architectures.h"
#include "perceiver/models/heads.h"
#include "perceiver/ops/reference_mode.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

// Bytes held by live tensors, and the most held since the last reset.
struct Usage {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};
  void add(int64_t bytes) {
    const int64_t now = current.fetch_add(bytes) + bytes;
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  void reset_peak() { peak.store(current.load()); }
};

// Wraps the CPU allocator in use and counts what it hands out until each block is freed. Blocks are
// keyed by their address, so that LibTorch's raw_allocate (which needs the context to be the data
// pointer) works too. One instance for the process, never destroyed: a tensor made while it counts
// may be freed at any time after.
class CountingAllocator final : public c10::Allocator {
 public:
  static CountingAllocator& instance() {
    static auto* allocator = new CountingAllocator;
    return *allocator;
  }
  void wrap(c10::Allocator* base) { base_ = base; }

  c10::DataPtr allocate(size_t n) const override {
    auto inner = base_->allocate(n);
    void* data = inner.get();
    if (data == nullptr) return inner;  // an empty block: nothing to count
    const auto device = inner.device();
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      blocks_.emplace(data, std::make_pair(std::move(inner), static_cast<int64_t>(n)));
    }
    usage.add(static_cast<int64_t>(n));
    return {data, data, &release, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  mutable Usage usage;

 private:
  CountingAllocator() = default;
  static void release(void* data) {
    auto& self = instance();
    std::pair<c10::DataPtr, int64_t> block;  // freed by its own deleter when it goes out of scope
    {
      const std::lock_guard<std::mutex> lock(self.mutex_);
      const auto it = self.blocks_.find(data);
      if (it == self.blocks_.end()) {
        // Not ours: raw memory that a kernel took from the allocator it had kept before this one was
        // installed and now returns through the current one.
        self.base_->raw_deleter()(data);
        return;
      }
      block = std::move(it->second);
      self.blocks_.erase(it);
    }
    self.usage.add(-block.second);
  }
  c10::Allocator* base_ = nullptr;
  mutable std::mutex mutex_;
  mutable std::unordered_map<void*, std::pair<c10::DataPtr, int64_t>> blocks_;
};

// Counts allocations at LibTorch's CPU allocator for its lifetime.
class CountAllocations {
 public:
  CountAllocations() : previous_(c10::GetCPUAllocator()) {
    CountingAllocator::instance().wrap(previous_);
    c10::SetCPUAllocator(&CountingAllocator::instance(), kPriority);
  }
  ~CountAllocations() { c10::SetCPUAllocator(previous_, kPriority); }
  CountAllocations(const CountAllocations&) = delete;
  CountAllocations& operator=(const CountAllocations&) = delete;
  Usage& usage() const { return CountingAllocator::instance().usage; }

 private:
  static constexpr uint8_t kPriority = 200;  // above the default allocator's, so that it takes effect
  c10::Allocator* previous_;
};

// The most tensor memory held during `step` beyond what was held before it.
template <typename Fn>
int64_t peak_bytes(const CountAllocations& counter, Fn&& step) {
  auto& usage = counter.usage();
  const int64_t before = usage.current.load();
  usage.reset_peak();
  step();
  return usage.peak.load() - before;
}

PerceiverPreTrainedModel build(const nlohmann::json& config) {
  torch::manual_seed(7);
  return build_model(PerceiverConfig::from_json(config));
}

// One training step's forward and backward (the optimizer's state is the same on every path), and
// one inference pass, each measured in the default mode and under ReferenceMode.
struct Peaks {
  int64_t fast = 0;
  int64_t reference = 0;
};

using LossOf = std::function<torch::Tensor(PerceiverPreTrainedModelImpl&, const NamedTensors&)>;

torch::Tensor head_loss(PerceiverPreTrainedModelImpl& model, const NamedTensors& batch) {
  return model.forward_named(batch, {}).at("loss");
}

// As `perceiver train` computes the masked LM's loss: decoding the masked bytes only.
torch::Tensor masked_decoding_loss(PerceiverPreTrainedModelImpl& model, const NamedTensors& batch) {
  return masked_lm_loss(dynamic_cast<PerceiverForMaskedLMImpl&>(model), batch.at("inputs"), {}, batch.at("labels"))
      .loss;
}

Peaks training_peaks(PerceiverPreTrainedModelImpl& model, const NamedTensors& batch, const LossOf& loss_of) {
  model.train();
  const CountAllocations counter;
  Peaks peaks;
  for (const bool reference : {false, true}) {
    const ReferenceMode mode(reference);
    model.zero_grad(/*set_to_none=*/true);
    // Gradients stay allocated between steps in training: allocate them first, outside the measurement.
    loss_of(model, batch).backward();
    (reference ? peaks.reference : peaks.fast) = peak_bytes(counter, [&] { loss_of(model, batch).backward(); });
  }
  return peaks;
}

Peaks inference_peaks(PerceiverPreTrainedModelImpl& model, const NamedTensors& batch) {
  model.eval();
  const CountAllocations counter;
  Peaks peaks;
  for (const bool reference : {false, true}) {
    const ReferenceMode mode(reference);
    const c10::InferenceMode inference;
    model.forward_named(batch, {});  // terms kept between inference calls are made on the first
    (reference ? peaks.reference : peaks.fast) = peak_bytes(counter, [&] { model.forward_named(batch, {}); });
  }
  return peaks;
}

// 5 % of the reference's peak, as the bench's peak-RSS budget, plus 64 KiB for small scratch tensors.
void expect_within_reference(const Peaks& peaks) {
  EXPECT_GT(peaks.reference, 0);
  EXPECT_LE(static_cast<double>(peaks.fast), 1.05 * static_cast<double>(peaks.reference) + 65536.0)
      << "fast paths peak at " << peaks.fast << " bytes, the reference at " << peaks.reference;
}

TEST(PeakMemory, MaskedLmTrainingStepHoldsNoMoreThanTheReference) {
  auto model = build({{"d_model", 64}, {"d_latents", 96}, {"num_latents", 32}, {"num_self_attends_per_block", 2},
                      {"num_self_attention_heads", 4}, {"num_cross_attention_heads", 2},
                      {"max_position_embeddings", 256}, {"attention_probs_dropout_prob", 0.0},
                      {"architectures", {"PerceiverForMaskedLM"}}});
  const auto ids = torch::randint(6, 262, {4, 256}, torch::kLong);
  const auto chosen = torch::rand({4, 256}) < 0.15;
  const NamedTensors batch{{"inputs", torch::where(chosen, torch::full_like(ids, 3), ids)},
                           {"labels", torch::where(chosen, ids, torch::full_like(ids, -100))}};
  expect_within_reference(training_peaks(*model, batch, masked_decoding_loss));
}

TEST(PeakMemory, ImageClassificationTrainingStepHoldsNoMoreThanTheReference) {
  auto model = build({{"d_model", 261}, {"num_latents", 32}, {"d_latents", 64}, {"num_self_attends_per_block", 2},
                      {"num_self_attention_heads", 4}, {"num_cross_attention_heads", 1}, {"image_size", 16},
                      {"num_labels", 10}, {"attention_probs_dropout_prob", 0.0},
                      {"architectures", {"PerceiverForImageClassificationFourier"}}});
  const NamedTensors batch{{"inputs", torch::randn({8, 3, 16, 16})},
                           {"labels", torch::randint(0, 10, {8}, torch::kLong)}};
  expect_within_reference(training_peaks(*model, batch, head_loss));
}

TEST(PeakMemory, OpticalFlowInferenceHoldsNoMoreThanTheReference) {
  auto model = build({{"d_model", 322}, {"num_latents", 64}, {"d_latents", 64}, {"num_self_attends_per_block", 2},
                      {"num_self_attention_heads", 4}, {"num_cross_attention_heads", 1}, {"train_size", {16, 24}},
                      {"architectures", {"PerceiverForOpticalFlow"}}});
  const NamedTensors batch{{"inputs", torch::randn({1, 2, 27, 16, 24})}};
  expect_within_reference(inference_peaks(*model, batch));
}

TEST(PeakMemory, MaskedLmInferenceHoldsNoMoreThanTheReference) {
  auto model = build({{"d_model", 64}, {"d_latents", 96}, {"num_latents", 32}, {"num_self_attends_per_block", 2},
                      {"num_self_attention_heads", 4}, {"num_cross_attention_heads", 2},
                      {"max_position_embeddings", 512}, {"architectures", {"PerceiverForMaskedLM"}}});
  const NamedTensors batch{{"inputs", torch::randint(6, 262, {1, 512}, torch::kLong)}};
  expect_within_reference(inference_peaks(*model, batch));
}

// The counter itself: a tensor's bytes are counted while it lives and no longer after.
TEST(PeakMemory, CounterSeesTensorsComeAndGo) {
  const CountAllocations counter;
  const auto peak = peak_bytes(counter, [] {
    const auto a = torch::empty({1024}, torch::kFloat);
    const auto b = torch::empty({2048}, torch::kFloat);
  });
  EXPECT_GE(peak, (1024 + 2048) * 4);
  EXPECT_LT(peak, (1024 + 2048) * 4 + 4096);
  EXPECT_EQ(peak_bytes(counter, [] {}), 0);
}

}  // namespace
}  // namespace perceiver::testing
