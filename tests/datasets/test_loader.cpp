#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "datasets/loader.h"

namespace pd = perceiver::datasets;

namespace {

std::shared_ptr<pd::Dataset> index_dataset(int64_t n) {
  return std::make_shared<pd::FunctionDataset>(n, [](int64_t i) {
    return pd::Example{{"index", torch::tensor(i)}, {"x", torch::full({2}, float(i))}};
  });
}

// Every sample index a loader yields in one epoch, in order.
std::vector<int64_t> drain(pd::DataLoader& loader) {
  std::vector<int64_t> out;
  while (auto b = loader.next()) {
    const auto idx = b->at("index");
    for (int64_t k = 0; k < idx.size(0); ++k) out.push_back(idx[k].item<int64_t>());
  }
  return out;
}

// A data set whose get() records each index asked for and, for indices at or past the gate, blocks until
// the test opens it: the tests order events by what the loader asked for, never by how long it took.
class GatedDataset : public pd::Dataset {
 public:
  GatedDataset(int64_t n, int64_t gate) : n_(n), gate_(gate) {}
  int64_t size() const override { return n_; }
  pd::Example get(int64_t index) const override {
    std::unique_lock<std::mutex> lock(mutex_);
    requested_.push_back(index);
    changed_.notify_all();
    changed_.wait(lock, [&] { return index < gate_; });
    return pd::Example{{"index", torch::tensor(index)}};
  }
  void open_gate(int64_t gate) {
    std::lock_guard<std::mutex> lock(mutex_);
    gate_ = gate;
    changed_.notify_all();
  }
  // Blocks until get() has been called `count` times; false if that has not happened within a minute
  // (a deadlock guard only: a passing run never comes near it).
  bool await_requests(size_t count) const {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, std::chrono::minutes(1), [&] { return requested_.size() >= count; });
  }
  std::vector<int64_t> requested() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requested_;
  }

 private:
  int64_t n_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  int64_t gate_;
  mutable std::vector<int64_t> requested_;
};

}  // namespace

TEST(DatasetsLoader, DeterministicShuffleBySeedAndEpoch) {
  pd::LoaderOptions opt;
  opt.batch_size = 4;
  opt.seed = 42;
  pd::DataLoader a(index_dataset(23), opt), b(index_dataset(23), opt);
  const auto e0 = drain(a);
  EXPECT_EQ(e0, drain(b));
  EXPECT_EQ(a.position(), (pd::LoaderPosition{1, 0}));
  const auto e1 = drain(a);
  EXPECT_NE(e0, e1);
  for (const auto& e : {e0, e1}) {
    ASSERT_EQ(e.size(), 23u);
    EXPECT_EQ(std::set<int64_t>(e.begin(), e.end()).size(), 23u);
  }
  EXPECT_EQ(e1, a.epoch_indices(1));
  opt.seed = 43;
  pd::DataLoader c(index_dataset(23), opt);
  EXPECT_NE(drain(c), e0);
  opt.shuffle = false;
  opt.num_workers = 0;
  pd::DataLoader d(index_dataset(23), opt);
  std::vector<int64_t> identity(23);
  for (int64_t i = 0; i < 23; ++i) identity[i] = i;
  EXPECT_EQ(drain(d), identity);
  EXPECT_EQ(d.batches_per_epoch(), 6);
  // Workers and the synchronous path give the same stream.
  opt.shuffle = true;
  opt.num_workers = 3;
  pd::DataLoader w(index_dataset(23), opt);
  opt.num_workers = 0;
  pd::DataLoader s(index_dataset(23), opt);
  EXPECT_EQ(drain(w), drain(s));
}

TEST(DatasetsLoader, ShardsAreDisjointAndCovering) {
  for (const bool pad : {false, true}) {
    std::vector<int64_t> all;
    std::set<int64_t> seen;
    for (int64_t rank = 0; rank < 3; ++rank) {
      pd::LoaderOptions opt;
      opt.batch_size = 2;
      opt.rank = rank;
      opt.world_size = 3;
      opt.pad_shards = pad;
      opt.seed = 5;
      pd::DataLoader loader(index_dataset(10), opt);
      const auto shard = drain(loader);
      if (pad) EXPECT_EQ(shard.size(), 4u) << "rank " << rank;  // ceil(10 / 3)
      all.insert(all.end(), shard.begin(), shard.end());
      seen.insert(shard.begin(), shard.end());
    }
    EXPECT_EQ(seen.size(), 10u);
    EXPECT_EQ(all.size(), pad ? 12u : 10u);  // without padding: disjoint (no index twice)
  }
  pd::LoaderOptions bad;
  bad.rank = 2;
  bad.world_size = 2;
  EXPECT_THROW(pd::DataLoader(index_dataset(4), bad), std::invalid_argument);
}

TEST(DatasetsLoader, ResumedPositionGivesTheRemainingSequence) {
  pd::LoaderOptions opt;
  opt.batch_size = 3;
  opt.seed = 7;
  pd::DataLoader full(index_dataset(20), opt);
  drain(full);  // epoch 0
  const auto reference = drain(full);  // epoch 1

  pd::DataLoader first(index_dataset(20), opt);
  drain(first);
  std::vector<int64_t> consumed;
  for (int k = 0; k < 3; ++k) {
    const auto b = first.next();
    for (int64_t j = 0; j < b->at("index").size(0); ++j) consumed.push_back(b->at("index")[j].item<int64_t>());
  }
  const auto saved = first.position().to_json();
  EXPECT_EQ(saved["epoch"], 1);
  EXPECT_EQ(saved["batch"], 3);

  pd::DataLoader resumed(index_dataset(20), opt);
  resumed.set_position(pd::LoaderPosition::from_json(saved));
  auto rest = drain(resumed);
  consumed.insert(consumed.end(), rest.begin(), rest.end());
  EXPECT_EQ(consumed, reference);
  EXPECT_THROW(pd::LoaderPosition::from_json(nlohmann::json{{"epoch", 1}}), std::runtime_error);
}

TEST(DatasetsLoader, WorkerExceptionPropagatesAndDestructionDoesNotHang) {
  auto failing = std::make_shared<pd::FunctionDataset>(40, [](int64_t i) {
    if (i == 17) throw std::runtime_error("sample 17 is corrupt");
    return pd::Example{{"index", torch::tensor(i)}};
  });
  for (const int workers : {0, 3}) {
    pd::LoaderOptions opt;
    opt.batch_size = 4;
    opt.shuffle = false;
    opt.num_workers = workers;
    pd::DataLoader loader(failing, opt);
    int batches = 0;
    try {
      while (loader.next()) ++batches;
      FAIL() << "expected the worker's exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "sample 17 is corrupt");
    }
    EXPECT_EQ(batches, 4);  // batches 0..3 fine, batch 4 holds sample 17
    EXPECT_EQ(loader.position().batch, 4);
  }
  // Mismatched shapes fail in collate, also on the consumer's side.
  auto ragged = std::make_shared<pd::FunctionDataset>(4, [](int64_t i) { return pd::Example{{"x", torch::zeros({i + 1})}}; });
  pd::DataLoader rag(ragged, pd::LoaderOptions{});
  EXPECT_THROW(rag.next(), std::runtime_error);
}

// Destroying a loader mid-epoch, while its workers are blocked inside get(), lets each finish the batch it
// is in and start no other: of 1000 examples in batches of 8, only those of the batches the workers
// were allowed to take (the consumed one plus the prefetch window) are ever asked for.
TEST(DatasetsLoader, DestructionMidEpochLoadsNoFurtherThanThePrefetchWindow) {
  auto data = std::make_shared<GatedDataset>(1000, 8);  // batch 0 loads, batch 1 on waits at the gate
  std::thread destroyer;
  {
    pd::LoaderOptions opt;
    opt.batch_size = 8;
    opt.shuffle = false;  // batch k holds examples 8k .. 8k+7
    opt.num_workers = 2;
    opt.prefetch_batches = 4;
    auto loader = std::make_unique<pd::DataLoader>(data, opt);
    struct OpenAtExit {  // a failed assertion must not leave workers blocked in get() for the destructor
      GatedDataset& d;
      ~OpenAtExit() { d.open_gate(1000); }
    } open_at_exit{*data};
    const auto first = loader->next();
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->at("index")[7].item<int64_t>(), 7);
    // Batch 0's 8 examples, then each worker blocked on the first example of its next batch (1 and 2).
    ASSERT_TRUE(data->await_requests(10));
    // Destroyed while the workers wait at the gate (or, if the destroyer starts late, after they ran on):
    // either way a worker finishes the batch it is in and takes no batch past the window.
    destroyer = std::thread([loader = std::move(loader)]() mutable { loader.reset(); });
    data->open_gate(1000);
  }
  destroyer.join();
  const auto asked = data->requested();
  // Batches 0 to 4 at most: the consumer took batch 0, so workers may run up to 4 batches ahead of it.
  EXPECT_GE(asked.size(), 24u);  // batch 0 and the two batches the workers were inside
  EXPECT_LE(asked.size(), 40u);
  ASSERT_FALSE(asked.empty());
  EXPECT_LT(*std::max_element(asked.begin(), asked.end()), 40) << "an example past the prefetch window was loaded";
}

// Wait time is the time next() spends blocked on data, and nothing else. Here the data set holds the
// first next() inside get() while the test sleeps `held`; then the consumer spends `busy` of its own
// before each further call. Both bounds follow from the order of events alone (sleep_for sleeps at
// least as long as asked):
//   wait_seconds >= held, since next() was inside get() before the sleep began and returned after it;
//   the span from the first call to the last return holds wait_seconds and 2 busy, so
//   wait_fraction = wait / span <= wait / (wait + 2 busy).
// How wait_fraction behaves for a starved or a well-fed consumer in real time: bench/bench_loader.cpp.
TEST(DatasetsLoader, WaitTimeIsTheTimeNextIsBlockedOnData) {
  const auto held = std::chrono::milliseconds(50), busy = std::chrono::milliseconds(50);
  const double held_s = 0.05, busy_s = 0.05;
  auto data = std::make_shared<GatedDataset>(8, 0);  // every example waits for the gate
  pd::LoaderOptions opt;
  opt.batch_size = 4;
  opt.shuffle = false;
  opt.num_workers = 0;  // next() itself calls get()
  pd::DataLoader loader(data, opt);
  int batches = 0;
  bool end = false;
  std::thread consumer([&] {
    batches += loader.next().has_value();  // held at the gate
    std::this_thread::sleep_for(busy);
    batches += loader.next().has_value();  // the gate is open by now
    std::this_thread::sleep_for(busy);
    end = !loader.next().has_value();  // the end of the epoch: nothing to wait for
  });
  const bool inside = data->await_requests(1);  // the consumer is inside next(), blocked in get()
  std::this_thread::sleep_for(held);
  data->open_gate(8);
  consumer.join();
  ASSERT_TRUE(inside);
  EXPECT_EQ(batches, 2);
  EXPECT_TRUE(end);
  EXPECT_GE(loader.wait_seconds(), held_s);
  EXPECT_LE(loader.wait_fraction(), loader.wait_seconds() / (loader.wait_seconds() + 2 * busy_s));
  EXPECT_GT(loader.wait_fraction(), 0.0);
  loader.reset_timing();
  EXPECT_EQ(loader.wait_seconds(), 0.0);
  EXPECT_EQ(loader.wait_fraction(), 0.0);
}

// Workers load up to prefetch_batches ahead of the consumer, and no further: in batches of 2 with a
// window of 4, once batch 0 is taken exactly batches 0 to 4 (examples 0-9) are asked for, and each of
// batches 1 to 4 was asked of the data set before the consumer asked the loader for it.
TEST(DatasetsLoader, WorkersPrefetchTheirWindowAheadOfTheConsumer) {
  auto data = std::make_shared<GatedDataset>(24, 10);  // examples 10 on wait until the gate opens
  pd::LoaderOptions opt;
  opt.batch_size = 2;
  opt.shuffle = false;  // batch k holds examples 2k and 2k+1
  opt.num_workers = 2;
  opt.prefetch_batches = 4;
  std::vector<int64_t> consumed;
  {
    pd::DataLoader loader(data, opt);
    struct OpenAtExit {  // a failed assertion must not leave workers blocked in get() for the destructor
      GatedDataset& d;
      ~OpenAtExit() { d.open_gate(24); }
    } open_at_exit{*data};
    const auto take = [&](const pd::Example& b) {
      for (int64_t k = 0; k < b.at("index").size(0); ++k) consumed.push_back(b.at("index")[k].item<int64_t>());
    };
    const auto first = loader.next();
    ASSERT_TRUE(first.has_value());
    take(*first);
    ASSERT_TRUE(data->await_requests(10));
    // The window is full, and batch 5 may not start until batch 1 is taken.
    auto asked = data->requested();
    EXPECT_EQ(std::set<int64_t>(asked.begin(), asked.end()), (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(asked.size(), 10u);
    for (int64_t b = 1; b <= 4; ++b) {
      asked = data->requested();
      EXPECT_NE(std::find(asked.begin(), asked.end(), 2 * b + 1), asked.end()) << "batch " << b << " not prefetched";
      const auto batch = loader.next();  // ready although examples 10 on are still held
      ASSERT_TRUE(batch.has_value());
      take(*batch);
    }
    data->open_gate(24);
    while (auto b = loader.next()) take(*b);
  }
  std::vector<int64_t> all(24);
  for (int64_t i = 0; i < 24; ++i) all[static_cast<size_t>(i)] = i;
  EXPECT_EQ(consumed, all);
  auto asked = data->requested();
  std::sort(asked.begin(), asked.end());
  EXPECT_EQ(asked, all);  // every example loaded once
}

TEST(DatasetsLoader, UnreadableExamplesAreReplacedCountedOrStoppedOn) {
  // Examples 3, 4 and 9 cannot be read.
  auto dirty = std::make_shared<pd::FunctionDataset>(12, [](int64_t i) {
    if (i == 3 || i == 4 || i == 9) throw pd::BadExample("img-" + std::to_string(i) + ".jpg", "cannot be decoded");
    return pd::Example{{"index", torch::tensor(i)}};
  });
  pd::LoaderOptions opt;
  opt.batch_size = 4;
  opt.shuffle = false;
  opt.num_workers = 0;
  pd::DataLoader plain(dirty, opt);
  // Each bad example's place goes to the next readable one in data-set order: batches keep their size.
  EXPECT_EQ(drain(plain), (std::vector<int64_t>{0, 1, 2, 5, 5, 5, 6, 7, 8, 10, 10, 11}));
  EXPECT_EQ(plain.skipped(), 4);  // 3 and 4 for position 3, 4 for position 4, 9 for position 9
  // The same stream whatever the workers.
  opt.shuffle = true;
  std::vector<int64_t> reference;
  for (const int workers : {0, 1, 3}) {
    opt.num_workers = workers;
    pd::DataLoader loader(dirty, opt);
    const auto stream = drain(loader);
    if (reference.empty()) reference = stream;
    EXPECT_EQ(stream, reference) << workers << " workers";
    EXPECT_EQ(loader.skipped(), 4);
    for (const auto i : stream) EXPECT_TRUE(i != 3 && i != 4 && i != 9);
  }
  // A long run of bad examples (a whole bad file) is passed at doubling distances, not one try each.
  auto holey = std::make_shared<pd::FunctionDataset>(300, [](int64_t i) {
    if (i >= 20 && i < 120) throw pd::BadExample("shard-1.tar", "changed since it was indexed");
    return pd::Example{{"index", torch::tensor(i)}};
  });
  pd::LoaderOptions in_order;
  in_order.batch_size = 10;
  in_order.shuffle = false;
  in_order.num_workers = 0;
  pd::DataLoader passing(holey, in_order);
  const auto passed = drain(passing);
  ASSERT_EQ(passed.size(), 300u);
  EXPECT_EQ(passed[20], 148);  // 20..36 tried one by one, then 52, 84 and 148
  for (const auto i : passed) EXPECT_TRUE(i < 20 || i >= 120) << i;
  EXPECT_LT(passing.skipped(), 100 * 20);
  // stop: the error names the example and its file.
  opt.on_bad_example = pd::OnBadExample::kStop;
  opt.shuffle = false;
  pd::DataLoader strict(dirty, opt);
  try {
    while (strict.next()) {
    }
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("example 3"), std::string::npos) << what;
    EXPECT_NE(what.find("img-3.jpg"), std::string::npos) << what;
    EXPECT_NE(what.find("on_bad_example"), std::string::npos) << what;
  }
  // A data set whose every example is bad stops with a clear error, also when skipping.
  auto hopeless = std::make_shared<pd::FunctionDataset>(5, [](int64_t i) -> pd::Example {
    throw pd::BadExample("f" + std::to_string(i), "truncated");
  });
  opt.on_bad_example = pd::OnBadExample::kSkip;
  pd::DataLoader none(hopeless, opt);
  try {
    none.next();
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("every one of the data set's 5 examples is unreadable"), std::string::npos)
        << e.what();
  }
}

TEST(DatasetsLoader, OrderIsComputedNotStoredAndSplitsOverRanksAsOneProcess) {
  // A data set far larger than the loader could list: its order is computed position by position.
  auto huge = std::make_shared<pd::FunctionDataset>(int64_t{1} << 40, [](int64_t i) {
    return pd::Example{{"index", torch::tensor(i)}};
  });
  pd::LoaderOptions opt;
  opt.batch_size = 4;
  opt.num_workers = 1;
  pd::DataLoader loader(huge, opt);
  const auto batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->at("index").size(0), 4);
  // Two ranks with half the batch each see, together, the batches of one process.
  auto small = index_dataset(40);
  opt.batch_size = 8;
  opt.drop_last = true;
  opt.pad_shards = false;
  pd::DataLoader one(small, opt);
  const auto whole = drain(one);
  std::vector<std::vector<int64_t>> ranks(2);
  for (int64_t r = 0; r < 2; ++r) {
    opt.batch_size = 4;
    opt.rank = r;
    opt.world_size = 2;
    pd::DataLoader part(small, opt);
    ranks[static_cast<size_t>(r)] = drain(part);
  }
  ASSERT_EQ(ranks[0].size() + ranks[1].size(), whole.size());
  for (size_t b = 0; b < whole.size() / 8; ++b) {
    std::multiset<int64_t> global(whole.begin() + 8 * b, whole.begin() + 8 * (b + 1)), shared;
    for (const auto& r : ranks) shared.insert(r.begin() + 4 * b, r.begin() + 4 * (b + 1));
    EXPECT_EQ(shared, global) << "batch " << b;
  }
}
