// The data-parallel side of a training run, in one place: the loop asks this object and never checks
// whether it runs alone. With one process every call is the identity (or plain backward); with
// several ranks (WORLD_SIZE > 1) each is a collective over c10d, called by every rank in the same order.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainers/distributed.h"
#include "trainers/gradient_sync.h"
#include "trainers/metrics.h"

namespace perceiver::trainers {

class Ranks {
 public:
  Ranks() = default;  // one process
  explicit Ranks(std::unique_ptr<Distributed> group);
  ~Ranks();
  Ranks(Ranks&&) noexcept;
  Ranks& operator=(Ranks&&) noexcept;

  bool several() const { return group_ != nullptr; }
  bool is_main() const { return !group_ || group_->is_main(); }
  int64_t world_size() const { return group_ ? group_->world_size() : 1; }

  // Gradients averaged over the ranks by backward(..., sync=true) for these parameters (trainable, in the
  // same order on every rank); alone, backward is plain autograd.
  void sync_gradients(const std::vector<std::pair<std::string, torch::Tensor>>& parameters, bool static_graph);
  void backward(const torch::Tensor& loss, bool sync);
  // How the gradient all-reduce went ("" alone or before any synchronised backward).
  std::string gradient_sync_report() const;

  // Sums over the ranks.
  MetricSums sum(const MetricSums& sums);
  int64_t sum(int64_t value);
  void sum_in_place(torch::Tensor& counts);
  // One micro-batch's mean loss over the global batch: this rank's mean weighted by its share of the
  // terms (`weight`: its masked tokens, or samples). Returns the global loss, the global sample count
  // and the loss to differentiate (which the gradient average over ranks turns into the global mean).
  struct GlobalLoss {
    double value = 0;
    int64_t samples = 0;
    torch::Tensor loss;
  };
  GlobalLoss global_loss(const torch::Tensor& loss, double weight, int64_t samples);

  // Rank 0's value, for everyone: its choice decides (a checkpoint to resume, a run length, a stop).
  std::string main_choice(const std::string& value);
  int64_t main_choice(int64_t value);
  bool main_choice(bool value);
  // Rank 0's tensors, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors);
  void barrier();
  // An error on this rank: names the ranks that were lost or failed, where there are others.
  [[noreturn]] void fail(const std::exception_ptr& error);

 private:
  std::unique_ptr<Distributed> group_;
  std::unique_ptr<GradientSync> gradient_sync_;
};

}  // namespace perceiver::trainers
