#include "datasets/loader.h"

#include <ATen/CPUGeneratorImpl.h>

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "datasets/common.h"

namespace perceiver::datasets {

namespace {
// A bad example's replacement is looked for at the next 16 examples, then at doubling distances: a
// whole bad file or shard is passed in a few dozen tries, not one try per example it holds.
constexpr int64_t kLinearProbes = 16;
}  // namespace

TensorDataset::TensorDataset(Example tensors) : tensors_(std::move(tensors)) {
  if (tensors_.empty()) throw std::invalid_argument("TensorDataset: no tensors");
  size_ = -1;
  for (const auto& [name, t] : tensors_) {
    if (!t.defined() || t.dim() == 0) throw std::invalid_argument("TensorDataset: tensor '" + name + "' has no dim 0");
    if (size_ >= 0 && t.size(0) != size_)
      throw std::invalid_argument("TensorDataset: tensor '" + name + "' has " + std::to_string(t.size(0)) +
                                  " rows, expected " + std::to_string(size_));
    size_ = t.size(0);
  }
}

Example TensorDataset::get(int64_t index) const {
  if (index < 0 || index >= size_)
    throw std::out_of_range("TensorDataset: index " + std::to_string(index) + " outside [0, " + std::to_string(size_) + ")");
  Example out;
  for (const auto& [name, t] : tensors_) out.emplace(name, t[index]);
  return out;
}

Example stack_collate(std::vector<Example> examples) {
  if (examples.empty()) throw std::invalid_argument("stack_collate: empty batch");
  Example out;
  for (const auto& [name, first] : examples.front()) {
    std::vector<torch::Tensor> parts;
    parts.reserve(examples.size());
    for (size_t i = 0; i < examples.size(); ++i) {
      const auto it = examples[i].find(name);
      if (it == examples[i].end())
        throw std::runtime_error("stack_collate: example " + std::to_string(i) + " lacks key '" + name + "'");
      if (it->second.sizes() != first.sizes())
        throw std::runtime_error("stack_collate: key '" + name + "' has shape " + c10::str(it->second.sizes()) +
                                 " in example " + std::to_string(i) + " but " + c10::str(first.sizes()) + " in example 0");
      parts.push_back(it->second);
    }
    out.emplace(name, torch::stack(parts));
  }
  for (size_t i = 1; i < examples.size(); ++i)
    if (examples[i].size() != out.size())
      throw std::runtime_error("stack_collate: example " + std::to_string(i) + " has extra keys");
  return out;
}

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return stable_hash(std::to_string(epoch) + ":" + std::to_string(index), seed);
}

std::vector<at::Generator> example_generators(const Example& batch) {
  std::vector<at::Generator> out;
  const auto it = batch.find(kSampleSeedKey);
  if (it == batch.end()) return out;
  const auto seeds = it->second.to(torch::kCPU, torch::kInt64).contiguous();
  for (int64_t i = 0; i < seeds.numel(); ++i)
    out.push_back(at::detail::createCPUGenerator(static_cast<uint64_t>(seeds.data_ptr<int64_t>()[i])));
  return out;
}

LoaderPosition LoaderPosition::from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("epoch") || !j.contains("batch") || !j["epoch"].is_number_integer() ||
      !j["batch"].is_number_integer())
    throw std::runtime_error("loader position: expected {\"epoch\": int, \"batch\": int}, got " + j.dump());
  LoaderPosition p{j["epoch"].get<int64_t>(), j["batch"].get<int64_t>()};
  if (p.epoch < 0 || p.batch < 0) throw std::runtime_error("loader position: negative value in " + j.dump());
  if (j.value("order", std::string("fisher-yates")) != kOrder && p.batch > 0)
    spdlog::warn("the saved data position comes from a version that shuffled differently: the rest of epoch {} "
                 "follows this version's order, so some of its examples may repeat or be missed",
                 p.epoch);
  return p;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options, CollateFn collate)
    : dataset_(std::move(dataset)), options_(options), collate_(std::move(collate)) {
  if (!dataset_) throw std::invalid_argument("DataLoader: null dataset");
  if (options_.batch_size <= 0) throw std::invalid_argument("DataLoader: batch_size must be > 0");
  if (options_.world_size <= 0 || options_.rank < 0 || options_.rank >= options_.world_size)
    throw std::invalid_argument("DataLoader: rank " + std::to_string(options_.rank) + " outside world of " +
                                std::to_string(options_.world_size));
  if (options_.num_workers < 0 || options_.prefetch_batches <= 0)
    throw std::invalid_argument("DataLoader: num_workers must be >= 0 and prefetch_batches > 0");
  if (!collate_) throw std::invalid_argument("DataLoader: null collate function");
}

DataLoader::~DataLoader() { stop(); }

// The epoch's global order is a permutation of [0, n). Without drop_last it is padded to a multiple of the
// world size by repeating its first positions (pad_shards), with drop_last cut to whole global batches;
// rank r takes positions r, r + world_size, ...
int64_t DataLoader::shard_size() const {
  const int64_t n = dataset_->size(), ws = options_.world_size;
  int64_t total = n;
  if (options_.drop_last && ws > 1) total = n / (options_.batch_size * ws) * options_.batch_size * ws;
  else if (options_.pad_shards && n > 0 && n % ws != 0) total = (n + ws - 1) / ws * ws;
  return total > options_.rank ? (total - options_.rank + ws - 1) / ws : 0;
}

int64_t DataLoader::shard_index(const Permutation& order, int64_t j) const {
  const int64_t n = dataset_->size();
  int64_t global = options_.rank + j * options_.world_size;
  if (global >= n) global = (global - n) % n;  // padding repeats the order's first positions
  return options_.shuffle ? static_cast<int64_t>(order(static_cast<uint64_t>(global))) : global;
}

namespace {
Permutation epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  return Permutation(static_cast<uint64_t>(n), stable_hash("epoch:" + std::to_string(epoch), seed));
}
}  // namespace

std::vector<int64_t> DataLoader::epoch_indices(int64_t epoch) const {
  const auto order = epoch_order(dataset_->size(), options_.seed, epoch);
  std::vector<int64_t> shard(static_cast<size_t>(shard_size()));
  for (size_t j = 0; j < shard.size(); ++j) shard[j] = shard_index(order, static_cast<int64_t>(j));
  return shard;
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = shard_size();
  return options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
}

LoaderPosition DataLoader::position() const { return position_; }

void DataLoader::set_position(const LoaderPosition& position) {
  if (position.epoch < 0 || position.batch < 0) throw std::invalid_argument("DataLoader: negative position");
  stop();
  position_ = position;
}

Example DataLoader::load_example(int64_t index, int64_t& skipped) const {
  // A bad example's place goes to a readable one found from it in data-set order: a function of the data
  // alone, so the batches stay the same whatever the workers, ranks or resume point.
  const int64_t n = dataset_->size();
  std::string last;
  int64_t tries = 0;
  for (int64_t offset = 0; offset < n; offset = offset < kLinearProbes ? offset + 1 : 2 * offset, ++tries) {
    const int64_t candidate = (index + offset) % n;
    try {
      return dataset_->get(candidate);
    } catch (const BadExample& e) {
      if (options_.on_bad_example == OnBadExample::kStop)
        throw std::runtime_error("example " + std::to_string(candidate) + " is unreadable: " + e.what() +
                                 " (on_bad_example: stop; set it to skip to go on without such examples)");
      ++skipped;
      last = e.what();
      std::lock_guard<std::mutex> lock(reported_mutex_);
      if (reported_.insert(e.source()).second)
        spdlog::warn("skipping unreadable example {}: {} (further ones from the same file are counted, not logged)",
                     candidate, e.what());
    }
  }
  if (tries == n)
    throw std::runtime_error("every one of the data set's " + std::to_string(n) + " examples is unreadable (the last: " +
                             last + ")");
  throw std::runtime_error("no readable example found in " + std::to_string(tries) + " tries from example " +
                           std::to_string(index) + " (the last: " + last + "): is the data set readable?");
}

DataLoader::Result DataLoader::load_batch(int64_t batch) const {
  const int64_t begin = batch * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, shard_size_);
  std::vector<Example> examples;
  std::vector<int64_t> seeds;
  examples.reserve(static_cast<size_t>(end - begin));
  Result r;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t index = shard_index(*order_, i);
    examples.push_back(load_example(index, r.skipped));
    if (options_.sample_seeds) seeds.push_back(static_cast<int64_t>(sample_seed(options_.seed, indices_epoch_, index)));
  }
  r.batch = collate_(std::move(examples));
  if (options_.sample_seeds) (*r.batch)[kSampleSeedKey] = torch::tensor(seeds, torch::kInt64);
  return r;
}

void DataLoader::start() {
  order_.emplace(epoch_order(dataset_->size(), options_.seed, position_.epoch));
  indices_epoch_ = position_.epoch;
  shard_size_ = shard_size();
  num_batches_ = batches_per_epoch();
  next_produce_ = next_consume_ = position_.batch;
  results_.clear();
  stopping_ = false;
  running_ = true;
  for (int w = 0; w < options_.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  produce_cv_.notify_all();
  for (auto& t : workers_) t.join();  // a worker finishes at most its current batch, then sees stopping_
  workers_.clear();
  results_.clear();
  running_ = false;
}

void DataLoader::worker_loop() {
  while (true) {
    int64_t batch = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      produce_cv_.wait(lock, [&] {
        return stopping_ || next_produce_ >= num_batches_ || next_produce_ < next_consume_ + options_.prefetch_batches;
      });
      if (stopping_ || next_produce_ >= num_batches_) return;
      batch = next_produce_++;
    }
    Result r;
    try {
      r = load_batch(batch);
    } catch (...) {
      r.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      results_[batch] = std::move(r);
    }
    consume_cv_.notify_all();
  }
}

std::optional<Example> DataLoader::next() {
  const auto called = Clock::now();
  if (!timing_start_) timing_start_ = called;
  if (!running_) start();
  if (position_.batch >= num_batches_) {
    stop();
    position_ = {position_.epoch + 1, 0};
    last_return_ = Clock::now();
    return std::nullopt;
  }
  Result r;
  if (options_.num_workers == 0) {
    try {
      r = load_batch(position_.batch);
    } catch (...) {
      r.error = std::current_exception();
    }
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    consume_cv_.wait(lock, [&] { return results_.count(position_.batch) > 0; });
    r = std::move(results_[position_.batch]);
    results_.erase(position_.batch);
  }
  const auto got = Clock::now();
  wait_seconds_ += std::chrono::duration<double>(got - called).count();
  last_return_ = got;
  if (r.error) {
    stop();  // the position stays on the failed batch
    std::rethrow_exception(r.error);
  }
  ++position_.batch;
  skipped_ += r.skipped;  // counted when consumed: a prefetched batch that a resume loads again counts once
  {
    std::lock_guard<std::mutex> lock(mutex_);
    next_consume_ = position_.batch;
  }
  produce_cv_.notify_all();
  return std::move(r.batch);
}

double DataLoader::wait_seconds() const { return wait_seconds_; }

double DataLoader::wait_fraction() const {
  if (!timing_start_) return 0.0;
  const double total = std::chrono::duration<double>(last_return_ - *timing_start_).count();
  return total > 0 ? std::min(1.0, wait_seconds_ / total) : 0.0;
}

void DataLoader::reset_timing() {
  timing_start_.reset();
  wait_seconds_ = 0;
}

}  // namespace perceiver::datasets
