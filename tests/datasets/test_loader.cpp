#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
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

  // Destroying mid-epoch with a slow dataset returns promptly.
  auto slow = std::make_shared<pd::FunctionDataset>(1000, [](int64_t i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return pd::Example{{"index", torch::tensor(i)}};
  });
  const auto start = std::chrono::steady_clock::now();
  {
    pd::LoaderOptions opt;
    opt.batch_size = 8;
    opt.num_workers = 2;
    pd::DataLoader loader(slow, opt);
    ASSERT_TRUE(loader.next().has_value());
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
}

TEST(DatasetsLoader, WaitFractionReflectsWhoIsSlow) {
  auto slow = std::make_shared<pd::FunctionDataset>(24, [](int64_t i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return pd::Example{{"index", torch::tensor(i)}};
  });
  pd::LoaderOptions opt;
  opt.batch_size = 4;
  opt.num_workers = 1;
  pd::DataLoader starved(slow, opt);
  drain(starved);
  EXPECT_GT(starved.wait_fraction(), 0.7);

  opt.num_workers = 2;
  opt.prefetch_batches = 8;
  opt.batch_size = 2;
  pd::DataLoader fed(index_dataset(24), opt);
  ASSERT_TRUE(fed.next().has_value());  // thread start-up is not steady state
  fed.reset_timing();
  while (fed.next()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LT(fed.wait_fraction(), 0.3);
  EXPECT_GE(fed.wait_seconds(), 0.0);
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
