#include "trainers/gradient_sync.h"

// reducer.hpp includes torch/csrc/distributed/autograd/context/context.h, which Debian does not ship:
// cmake/compat provides the one declaration the Reducer needs.
#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include <atomic>
#include <chrono>
#include <unordered_map>

#include "trainers/distributed.h"

namespace perceiver::trainers {

using Clock = std::chrono::steady_clock;

struct GradientSync::Impl {
  Distributed* dist = nullptr;
  GradientSyncOptions options;
  std::unique_ptr<c10d::Reducer> reducer;
  int64_t synced_steps = 0;
  GradientSyncStats stats;
  // Our own post-hooks on the gradient accumulators (after the Reducer's) note when the last gradient
  // of a backward was accumulated.
  std::vector<std::pair<uintptr_t, std::shared_ptr<torch::autograd::Node>>> hooks;
  std::atomic<Clock::rep> last_gradient{0};

  ~Impl() {
    for (auto& [key, node] : hooks) node->del_post_hook(key);
  }
};

GradientSync::GradientSync(Distributed& dist, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
                           const GradientSyncOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->dist = &dist;
  impl_->options = options;
  std::vector<torch::Tensor> params;
  std::unordered_map<size_t, std::string> names;
  for (const auto& [name, p] : parameters) {
    if (!p.requires_grad()) continue;
    names[params.size()] = name;
    params.push_back(p);
  }
  if (params.empty()) throw std::invalid_argument("GradientSync: the model has no trainable parameters");
  try {
    c10d::verify_params_across_processes(dist.process_group(), params, c10::nullopt);
  } catch (const std::exception& e) {
    throw CollectiveError(fmt::format("rank {}: the ranks' models differ: {}", dist.rank(), e.what()));
  }
  const std::vector<bool> sparse(params.size(), false);
  // As Python's DDP: buckets filled in parameter order, reduced in reverse (backward produces the last
  // layers' gradients first).
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      params, {static_cast<size_t>(c10d::kDefaultFirstBucketBytes), static_cast<size_t>(options.bucket_bytes)}, sparse);
  std::reverse(buckets.begin(), buckets.end());
  std::reverse(limits.begin(), limits.end());
  impl_->reducer = std::make_unique<c10d::Reducer>(params, buckets, limits, dist.process_group(), sparse,
                                                   options.bucket_bytes, /*find_unused_parameters=*/!options.static_graph,
                                                   /*gradient_as_bucket_view=*/false, names,
                                                   c10d::kDefaultFirstBucketBytes);
  if (options.static_graph) impl_->reducer->set_static_graph();
  for (const auto& p : params) {
    auto accumulator = torch::autograd::impl::grad_accumulator(p);
    const auto key = accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [impl = impl_.get()](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          impl->last_gradient.store(Clock::now().time_since_epoch().count());
          return outputs;
        }));
    impl_->hooks.emplace_back(key, std::move(accumulator));
  }
}

GradientSync::~GradientSync() = default;

GradientSyncStats GradientSync::stats() const { return impl_->stats; }

void GradientSync::backward(const torch::Tensor& loss, bool sync) {
  if (!sync) {
    loss.backward();  // the Reducer's hooks stay idle: gradients accumulate locally
    return;
  }
  auto& reducer = *impl_->reducer;
  try {
    // Python DDP's order: prepare_for_forward (counts steps), rebuild_buckets (once, after the first step:
    // buckets in the order gradients became ready), prepare_for_backward (arms the hooks; without a static
    // graph it walks the graph from the loss to find parameters that get no gradient).
    reducer.prepare_for_forward();
    reducer.rebuild_buckets();
    reducer.prepare_for_backward(impl_->options.static_graph ? std::vector<torch::Tensor>{} : std::vector<torch::Tensor>{loss});
    const auto start = Clock::now();
    impl_->last_gradient.store(start.time_since_epoch().count());
    loss.backward();
    // A static graph's first step only counts the hooks; its reduction runs once backward is done.
    if (impl_->options.static_graph && impl_->synced_steps == 0) reducer.delay_all_reduce();
    const auto end = Clock::now();
    const auto last = Clock::time_point(Clock::duration(impl_->last_gradient.load()));
    ++impl_->synced_steps;
    impl_->stats.synced_backwards += 1;
    impl_->stats.backward_seconds += std::chrono::duration<double>(end - start).count();
    impl_->stats.exposed_seconds += std::chrono::duration<double>(end - last).count();
  } catch (const c10::Error& e) {
    throw CollectiveError(fmt::format("rank {}: gradient all-reduce failed: {}", impl_->dist->rank(),
                                      e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw CollectiveError(fmt::format("rank {}: gradient all-reduce failed: {}", impl_->dist->rank(), e.what()));
  }
}

}  // namespace perceiver::trainers
