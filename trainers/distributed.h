// Data-parallel process groups on PyTorch's own engine (c10d): the rank comes from torchrun's
// environment variables, a TCPStore rendezvous checks that every rank runs the same run file on the
// same world size, collectives run on Gloo (CPU) or NCCL (CUDA builds), and a failed collective is
// reported with the rank that was lost.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainers/metrics.h"

namespace perceiver::trainers {

// Where this process sits in a job, as torchrun (or `perceiver train --nproc`) describes it.
struct RankEnvironment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  int64_t local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int64_t restart_count = 0;  // TORCHELASTIC_RESTART_COUNT: > 0 after an elastic restart
  bool agent_store = false;   // TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store
  bool distributed() const { return world_size > 1; }
};

// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RESTART_COUNT,
// TORCHELASTIC_USE_AGENT_STORE read through `lookup` (getenv by default). No WORLD_SIZE, or 1, is a
// single process. Throws naming the variable that is malformed or missing.
using EnvLookup = std::function<const char*(const char*)>;
RankEnvironment rank_environment(const EnvLookup& lookup = {});

// A collective or rendezvous that failed because of another rank (or the network), as opposed to an
// error of this rank's own.
class CollectiveError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DistributedOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};  // trainer.dist_timeout_s
  std::string fingerprint;  // hash of the effective run file: every rank must present the same
  bool cuda = false;        // NCCL (needs a CUDA build) instead of Gloo
};

// One process group per process. Every rank must call the collectives in the same order.
class Distributed {
 public:
  // Rendezvous on the store at MASTER_ADDR:MASTER_PORT (hosted by rank 0, or by the launcher),
  // fingerprint and world-size check, then the process group. Throws one clear message when the
  // port is taken, the master is unreachable or the ranks disagree.
  Distributed(const RankEnvironment& env, const DistributedOptions& options);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  bool is_main() const { return rank() == 0; }
  const c10::intrusive_ptr<c10d::ProcessGroup>& process_group() const;

  // Rank 0's values, in place (coalesced per dtype).
  void broadcast(const std::vector<torch::Tensor>& tensors);
  // Sum over ranks, in place; returns `tensor`.
  torch::Tensor all_reduce_sum(torch::Tensor tensor);
  // Metric sums and weights added over ranks (a metric only some ranks saw counts too).
  MetricSums all_reduce(const MetricSums& sums);
  // Rank 0's string (e.g. the checkpoint every rank resumes from).
  std::string broadcast_string(const std::string& value);
  // Every rank's string, by rank.
  std::vector<std::string> all_gather_strings(const std::string& value);
  void barrier();

  // Waits for a collective's work; turns its failure into a CollectiveError.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);

  // Called with an error caught on this rank: when other ranks were lost or failed, throws an error
  // that names them (with this rank's error as the cause); otherwise publishes this rank's error for
  // the others to name, and rethrows it.
  [[noreturn]] void fail(const std::exception_ptr& error);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace perceiver::trainers
