#include "trainers/ranks.h"

#include <fmt/format.h>

namespace perceiver::trainers {

Ranks::Ranks(std::unique_ptr<Distributed> group) : group_(std::move(group)) {}
Ranks::~Ranks() = default;
Ranks::Ranks(Ranks&&) noexcept = default;
Ranks& Ranks::operator=(Ranks&&) noexcept = default;

void Ranks::sync_gradients(const std::vector<std::pair<std::string, torch::Tensor>>& parameters, bool static_graph) {
  if (!group_) return;
  GradientSyncOptions options;
  options.static_graph = static_graph;
  gradient_sync_ = std::make_unique<GradientSync>(*group_, parameters, options);
}

void Ranks::backward(const torch::Tensor& loss, bool sync) {
  if (gradient_sync_) gradient_sync_->backward(loss, sync);  // the all-reduce on the last micro-step
  else loss.backward();
}

std::string Ranks::gradient_sync_report() const {
  if (!gradient_sync_) return "";
  const auto st = gradient_sync_->stats();
  if (st.synced_backwards == 0) return "";
  return fmt::format("gradient all-reduce over {} ranks: {} synchronised backwards of {:.1f} ms, {:.1f} ms of it "
                     "communication not hidden behind backward",
                     world_size(), st.synced_backwards, 1e3 * st.backward_seconds / st.synced_backwards,
                     1e3 * st.exposed_seconds / st.synced_backwards);
}

MetricSums Ranks::sum(const MetricSums& sums) { return group_ ? group_->all_reduce(sums) : sums; }

int64_t Ranks::sum(int64_t value) {
  if (!group_) return value;
  return group_->all_reduce_sum(torch::tensor({value}, torch::kInt64)).item<int64_t>();
}

void Ranks::sum_in_place(torch::Tensor& counts) {
  if (group_ && counts.defined()) group_->all_reduce_sum(counts);
}

Ranks::GlobalLoss Ranks::global_loss(const torch::Tensor& loss, double weight, int64_t samples) {
  const double value = loss.item<double>();
  if (!group_) return {value, samples, loss};
  // Every rank sees the same global loss, so all of them agree on a non-finite one.
  const auto global = group_->all_reduce_sum(torch::tensor(
      {weight > 0 ? value * weight : 0.0, weight, static_cast<double>(samples)}, torch::kDouble));
  const double total = global[1].item<double>();
  // The Reducer averages the gradients over the ranks: weigh this rank's mean by its share of the terms.
  return {global[0].item<double>() / total, global[2].item<int64_t>(),
          (weight > 0 ? loss : loss.nan_to_num(0.0)) * (weight * static_cast<double>(world_size()) / total)};
}

std::string Ranks::main_choice(const std::string& value) { return group_ ? group_->broadcast_string(value) : value; }
int64_t Ranks::main_choice(int64_t value) { return group_ ? std::stoll(group_->broadcast_string(std::to_string(value))) : value; }
bool Ranks::main_choice(bool value) { return group_ ? group_->broadcast_string(value ? "1" : "0") == "1" : value; }

void Ranks::broadcast(const std::vector<torch::Tensor>& tensors) {
  if (group_ && !tensors.empty()) group_->broadcast(tensors);
}

void Ranks::barrier() {
  if (group_) group_->barrier();
}

void Ranks::fail(const std::exception_ptr& error) {
  if (group_) group_->fail(error);
  std::rethrow_exception(error);
}

}  // namespace perceiver::trainers
