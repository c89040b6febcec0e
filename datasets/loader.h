// A batching data loader over any indexable dataset: deterministic (seed, epoch) shuffling, rank sharding,
// background workers with a bounded prefetch window, resumable position, and a data-wait measurement.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "datasets/permutation.h"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace perceiver::datasets {

// One example or one batch: named tensors ("input_ids", "labels", "pixel_values", ...).
using Example = std::map<std::string, torch::Tensor>;

// get() is called from worker threads concurrently: it must be thread-safe (const, no shared mutation).
// An example that cannot be read (a corrupt, truncated or vanished file) is reported by throwing
// BadExample; any other exception is an error that stops the loader.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
};

// One unreadable example: `source()` names the file (and member) at fault, what() says why.
class BadExample : public std::runtime_error {
 public:
  BadExample(std::string source, const std::string& reason)
      : std::runtime_error(source + ": " + reason), source_(std::move(source)) {}
  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

// Rows of equally long tensors: get(i) selects row i of every tensor.
class TensorDataset : public Dataset {
 public:
  explicit TensorDataset(Example tensors);
  int64_t size() const override { return size_; }
  Example get(int64_t index) const override;

 private:
  Example tensors_;
  int64_t size_ = 0;
};

// Adapts a function (e.g. a synthetic generator) to the Dataset interface.
class FunctionDataset : public Dataset {
 public:
  FunctionDataset(int64_t size, std::function<Example(int64_t)> fn) : size_(size), fn_(std::move(fn)) {}
  int64_t size() const override { return size_; }
  Example get(int64_t index) const override { return fn_(index); }

 private:
  int64_t size_;
  std::function<Example(int64_t)> fn_;
};

// Another data set's examples passed through fn(example, index): labels attached, images processed, ...
class MappedDataset : public Dataset {
 public:
  MappedDataset(std::shared_ptr<const Dataset> base, std::function<Example(Example, int64_t)> fn)
      : base_(std::move(base)), fn_(std::move(fn)) {}
  int64_t size() const override { return base_->size(); }
  Example get(int64_t index) const override { return fn_(base_->get(index), index); }

 private:
  std::shared_ptr<const Dataset> base_;
  std::function<Example(Example, int64_t)> fn_;
};

// The first `count` examples of another data set.
class PrefixDataset : public Dataset {
 public:
  PrefixDataset(std::shared_ptr<const Dataset> base, int64_t count)
      : base_(std::move(base)), count_(std::min(count, base_->size())) {}
  int64_t size() const override { return count_; }
  Example get(int64_t index) const override { return base_->get(index); }

 private:
  std::shared_ptr<const Dataset> base_;
  int64_t count_;
};

using CollateFn = std::function<Example(std::vector<Example>)>;
// Stacks each key along a new dim 0; all examples must have the same keys and per-key shapes.
Example stack_collate(std::vector<Example> examples);

// A per-sample seed for augmentation that depends only on (seed, epoch, index), not on worker timing.
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

// With LoaderOptions::sample_seeds, each batch carries its examples' sample_seed() (int64 bits) under
// this key: randomness drawn from it (masking, augmentation) is the same whichever rank, batch or
// worker an example lands in, so N ranks see what one process sees.
inline constexpr char kSampleSeedKey[] = "sample_seed";
// One CPU generator per example of `batch`, seeded from its kSampleSeedKey entry; empty without one.
std::vector<at::Generator> example_generators(const Example& batch);

// What the loader does with a BadExample: kSkip takes a readable example found from it in data-set order
// (the next 16, then at doubling distances) in its place (batches keep their size, so data-parallel ranks
// stay in step), counts it and logs each source once; kStop throws naming the example and its file.
enum class OnBadExample { kSkip, kStop };

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = true;
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  bool drop_last = false;  // drop this rank's final short batch
  // Like torch's DistributedSampler: repeat the first indices so every rank gets ceil(N / world_size)
  // samples (equal step counts keep DDP ranks in lock-step). false: disjoint shards of N / world_size +- 1.
  // Ranks take interleaved positions of one global order, so with batch_size = B / world_size the
  // ranks' batch k together hold exactly batch k of B from one process. With drop_last the global order
  // is cut to whole global batches instead (no padding): every rank has as many batches as one process.
  bool pad_shards = true;
  bool sample_seeds = false;  // add kSampleSeedKey to every batch
  int num_workers = 2;       // 0: load in the calling thread
  int prefetch_batches = 4;  // at most this many batches produced ahead of the consumer
  OnBadExample on_bad_example = OnBadExample::kSkip;
};

// Where the next batch comes from; save it with a checkpoint and restore it to resume mid-epoch.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  // The order's name travels with the position: a position saved under another shuffle is resumed with
  // a warning (the rest of that epoch may repeat or miss examples).
  static constexpr const char* kOrder = "feistel-1";
  nlohmann::json to_json() const { return {{"epoch", epoch}, {"batch", batch}, {"order", kOrder}}; }
  static LoaderPosition from_json(const nlohmann::json& j);
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && batch == o.batch; }
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options, CollateFn collate = stack_collate);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch of the current epoch; nullopt once the epoch is exhausted (the position then moves
  // to the start of the next epoch, so `while (auto b = loader.next())` runs one epoch).
  // A worker's exception is rethrown here (the position stays on the failed batch).
  std::optional<Example> next();

  LoaderPosition position() const;
  void set_position(const LoaderPosition& position);  // stops prefetching; loading restarts there

  int64_t batches_per_epoch() const;
  // This rank's sample indices for `epoch`, in consumption order. The loader itself never holds this
  // list: it computes each index from a seeded permutation (datasets/permutation.h).
  std::vector<int64_t> epoch_indices(int64_t epoch) const;
  // Examples skipped as unreadable in the batches returned since the loader was made (OnBadExample::kSkip).
  int64_t skipped() const { return skipped_; }

  // Fraction of time since the first next() (or reset_timing()) spent blocked waiting for data.
  double wait_fraction() const;
  double wait_seconds() const;
  void reset_timing();

 private:
  struct Result {
    std::optional<Example> batch;
    std::exception_ptr error;
    int64_t skipped = 0;  // unreadable examples passed over to make the batch
  };
  void start();
  void stop();
  void worker_loop();
  Result load_batch(int64_t batch) const;
  Example load_example(int64_t index, int64_t& skipped) const;
  // The number of examples in this rank's share of an epoch, and the one at position j of it.
  int64_t shard_size() const;
  int64_t shard_index(const Permutation& order, int64_t j) const;

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  CollateFn collate_;
  LoaderPosition position_;

  // Shared with the workers (guarded by mutex_).
  mutable std::mutex mutex_;
  std::condition_variable produce_cv_, consume_cv_;
  std::optional<Permutation> order_;  // current epoch's global order
  int64_t indices_epoch_ = 0;
  int64_t shard_size_ = 0;
  int64_t num_batches_ = 0;
  int64_t next_produce_ = 0;
  int64_t next_consume_ = 0;
  bool stopping_ = false;
  bool running_ = false;
  std::map<int64_t, Result> results_;
  std::vector<std::thread> workers_;
  int64_t skipped_ = 0;  // of the batches next() returned
  mutable std::mutex reported_mutex_;
  mutable std::set<std::string> reported_;  // sources already logged as unreadable

  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> timing_start_;
  Clock::time_point last_return_;
  double wait_seconds_ = 0;
};

}  // namespace perceiver::datasets
