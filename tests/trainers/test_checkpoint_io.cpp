#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fstream>

#include "tests/test_support.h"
#include "trainers/checkpoint_io.h"

namespace {
using perceiver::testing::slurp;

namespace fs = std::filesystem;
using namespace perceiver::trainers;


std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

auto write_text(const std::string& text) {
  return [text](const fs::path& dir) { std::ofstream(dir / "payload.txt") << text; };
}

TEST(TrainCheckpoint, KeepsLastKPlusBestAndFindsLatest) {
  perceiver::testing::TempDir run;
  CheckpointManager mgr({run.path(), 2, "eval_loss", "min"});
  const std::vector<double> losses = {3, 1, 4, 5, 2};
  for (int i = 0; i < 5; ++i) mgr.save((i + 1) * 10, write_text("ckpt " + std::to_string(i)), losses[i]);
  EXPECT_EQ(entries(mgr.checkpoints_dir()), (std::vector<std::string>{"step-00000020", "step-00000040", "step-00000050"}));
  ASSERT_TRUE(mgr.latest());
  EXPECT_EQ(mgr.latest()->step, 50);
  EXPECT_EQ(slurp(mgr.latest()->dir / "payload.txt"), "ckpt 4");
  ASSERT_TRUE(mgr.best());
  EXPECT_EQ(mgr.best()->step, 20);
  EXPECT_EQ(*mgr.best()->metric, 1.0);
  EXPECT_EQ(find_latest_checkpoint(run.path()), mgr.checkpoints_dir() / "step-00000050");

  CheckpointManager max_mgr({run.path(), 1, "eval_loss", "max"});
  EXPECT_EQ(max_mgr.best()->step, 40);  // 5 is the largest metric among steps 20, 40, 50
}

TEST(TrainCheckpoint, ReplacesSameStepAndCleansLeftovers) {
  perceiver::testing::TempDir run;
  CheckpointManager mgr({run.path(), 3, "", "min"});
  mgr.save(7, write_text("first"));
  mgr.save(7, write_text("second"));
  EXPECT_EQ(entries(mgr.checkpoints_dir()), (std::vector<std::string>{"step-00000007"}));
  EXPECT_EQ(slurp(mgr.checkpoints_dir() / "step-00000007" / "payload.txt"), "second");

  // Simulate a crash between the two renames of a replacement, plus a torn temporary directory.
  fs::rename(mgr.checkpoints_dir() / "step-00000007", mgr.checkpoints_dir() / ".old-step-00000007");
  fs::create_directories(mgr.checkpoints_dir() / ".tmp-step-00000008-1-2");
  EXPECT_FALSE(find_latest_checkpoint(run.path()));
  CheckpointManager reopened({run.path(), 3, "", "min"});
  EXPECT_EQ(entries(mgr.checkpoints_dir()), (std::vector<std::string>{"step-00000007"}));
  EXPECT_EQ(reopened.latest()->step, 7);

  // A writer that throws leaves nothing behind.
  EXPECT_THROW(mgr.save(9, [](const fs::path&) { throw std::runtime_error("disk full"); }), std::runtime_error);
  EXPECT_EQ(entries(mgr.checkpoints_dir()), (std::vector<std::string>{"step-00000007"}));
  EXPECT_THROW(CheckpointManager({run.path(), 0, "", "min"}), std::invalid_argument);
  EXPECT_THROW(CheckpointManager({run.path(), 1, "acc", "best"}), std::invalid_argument);
}

TEST(TrainCheckpoint, TensorsJsonOptimizerAndRngRoundTrip) {
  perceiver::testing::TempDir dir;
  torch::manual_seed(3);
  const std::map<std::string, torch::Tensor> tensors = {
      {"encoder.layer.0.weight", torch::randn({3, 4})}, {"step", torch::tensor(int64_t{12})},
      {"mask", torch::tensor({true, false})}};
  save_tensors(dir.path() / "model.pt", tensors);
  const auto back = load_tensors(dir.path() / "model.pt");
  ASSERT_EQ(back.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(back.count(name)) << name;
    EXPECT_TRUE(torch::equal(back.at(name), t)) << name;
  }

  const nlohmann::json state = {{"step", 12}, {"epoch", 1}, {"best", {{"eval_loss", 0.5}}}};
  save_json(dir.path() / "trainer_state.json", state);
  EXPECT_EQ(load_json(dir.path() / "trainer_state.json"), state);

  const auto rng = cpu_rng_state();
  const auto a = torch::randn({5});
  set_cpu_rng_state(rng);
  EXPECT_TRUE(torch::equal(torch::randn({5}), a));
  EXPECT_THROW(set_cpu_rng_state(torch::zeros({3})), std::invalid_argument);

  auto w = torch::randn({4}).requires_grad_();
  torch::optim::AdamW opt({w}, torch::optim::AdamWOptions(0.1));
  w.mutable_grad() = torch::ones({4});
  opt.step();
  save_optimizer(dir.path() / "optimizer.pt", opt);
  auto w2 = w.detach().clone().requires_grad_();
  torch::optim::AdamW opt2({w2}, torch::optim::AdamWOptions(0.1));
  load_optimizer(dir.path() / "optimizer.pt", opt2);
  w.mutable_grad() = torch::full({4}, -0.5);
  w2.mutable_grad() = torch::full({4}, -0.5);
  opt.step();
  opt2.step();
  EXPECT_TRUE(torch::equal(w.detach(), w2.detach()));
}

TEST(TrainCheckpoint, CorruptFilesNameTheFile) {
  perceiver::testing::TempDir dir;
  std::ofstream(dir.path() / "bad.json") << "{\"step\": ";
  std::ofstream(dir.path() / "bad.pt") << "not a zip";
  for (const auto& [file, load] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"bad.json", [&] { load_json(dir.path() / "bad.json"); }},
           {"bad.pt", [&] { load_tensors(dir.path() / "bad.pt"); }},
           {"missing.pt", [&] { load_tensors(dir.path() / "missing.pt"); }}}) {
    try {
      load();
      ADD_FAILURE() << file << " loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  }
}

TEST(TrainCheckpoint, SigkillMidSaveKeepsPreviousCheckpoint) {
  perceiver::testing::TempDir run;
  const std::map<std::string, torch::Tensor> weights = {{"w", torch::arange(6.0).reshape({2, 3})}};
  CheckpointManager mgr({run.path(), 3, "", "min"});
  mgr.save(1, [&](const fs::path& dir) {
    save_tensors(dir / "model.pt", weights);
    save_json(dir / "trainer_state.json", {{"step", 1}});
  });
  const std::string big(4 << 20, 'x');  // prepared before fork: the child runs no torch op

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    try {
      CheckpointManager child({run.path(), 3, "", "min"});
      child.save(2, [&](const fs::path& dir) {
        std::ofstream(dir / "model.pt", std::ios::binary).write(big.data(), static_cast<std::streamsize>(big.size()));
        (void)!::write(ready[1], "k", 1);
        for (;;) ::pause();  // "still saving" when the parent kills us
      });
    } catch (...) {
    }
    ::_exit(3);
  }
  ::close(ready[1]);
  char c = 0;
  pollfd wait_ready{ready[0], POLLIN, 0};
  const auto got = ::poll(&wait_ready, 1, 30000) == 1 ? ::read(ready[0], &c, 1) : -1;  // never hang the suite
  ::close(ready[0]);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_EQ(got, 1) << "child never reached the middle of its save";
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  EXPECT_FALSE(fs::exists(mgr.checkpoints_dir() / "step-00000002"));
  const auto latest = find_latest_checkpoint(run.path());
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->filename(), "step-00000001");
  EXPECT_TRUE(torch::equal(load_tensors(*latest / "model.pt").at("w"), weights.at("w")));
  EXPECT_EQ(load_json(*latest / "trainer_state.json")["step"], 1);

  // The torn temporary directory is there until the next manager cleans it up.
  EXPECT_EQ(entries(mgr.checkpoints_dir()).size(), 2u);
  CheckpointManager reopened({run.path(), 3, "", "min"});
  EXPECT_EQ(entries(mgr.checkpoints_dir()), (std::vector<std::string>{"step-00000001"}));
}

}  // namespace
