// Data-parallel training on c10d: ranks are separate processes of the built CLI on 127.0.0.1. Two ranks
// must end with the weights one process gets from the same run file (same global batch).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

#include "datasets/idx.h"
#include "datasets/loader.h"
#include "perceiver/io/torch_bin.h"
#include "tests/test_support.h"
#include "trainers/distributed.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

// A TCP socket bound to a port the kernel picks on `address` (listening when asked); closes on destruction.
class BoundSocket {
 public:
  BoundSocket(in_addr_t address, bool listening) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(address);
    socklen_t len = sizeof(addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || (listening && ::listen(fd_, 1) != 0) ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd_);
      throw std::runtime_error("BoundSocket: cannot bind a socket");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~BoundSocket() { ::close(fd_); }
  BoundSocket(const BoundSocket&) = delete;
  BoundSocket& operator=(const BoundSocket&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// A port nobody listens on right now.
int free_port() { return BoundSocket(INADDR_LOOPBACK, false).port(); }

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

// torchrun's variables for `rank` of `world` on 127.0.0.1:port.
std::string rank_env(int rank, int world, int port) {
  return "RANK=" + std::to_string(rank) + " WORLD_SIZE=" + std::to_string(world) + " LOCAL_RANK=" + std::to_string(rank) +
         " LOCAL_WORLD_SIZE=" + std::to_string(world) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port);
}

// One background process of a test script: the CLI with `args`, after `env` (VAR=value ...), in `cwd`.
struct Job {
  std::string env;
  std::string args;
  fs::path cwd;
};

// Starts every job at once (the pid of job i in $P<i>), runs `between` (shell), waits for all, runs
// `after`; each job's exit code and output. A hung job shows as exit code -1 after the guard of 120 s.
std::vector<CommandResult> run_jobs(const fs::path& dir, const std::vector<Job>& jobs, const std::string& between = "",
                                    const std::string& after = "") {
  std::string script;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const auto base = (dir / ("job" + std::to_string(i))).string();
    script += "(cd " + quote(jobs[i].cwd.empty() ? dir : jobs[i].cwd) + " && exec env " + jobs[i].env + " '" +
              PERCEIVER_CLI_PATH + "' " + jobs[i].args + " >" + quote(base + ".out") + " 2>" + quote(base + ".err") +
              " </dev/null) & P" + std::to_string(i) + "=$!\n";
  }
  script += between + "\n";
  for (size_t i = 0; i < jobs.size(); ++i)
    script += "wait $P" + std::to_string(i) + "; echo $? >" + quote((dir / ("job" + std::to_string(i))).string() + ".rc") + "\n";
  script += after + "\n";
  write_file(dir / "jobs.sh", script);
  run_command("timeout 120 bash " + quote(dir / "jobs.sh"));
  std::vector<CommandResult> out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const auto base = (dir / ("job" + std::to_string(i))).string();
    CommandResult c;
    const auto rc = slurp(base + ".rc");
    c.exit_code = rc.empty() ? -1 : std::stoi(rc);
    c.out = slurp(base + ".out");
    c.err = slurp(base + ".err");
    out.push_back(c);
  }
  return out;
}

// `world` ranks of the same command line on a fresh port.
std::vector<Job> rank_jobs(int world, const std::string& args) {
  const int port = free_port();
  std::vector<Job> jobs;
  for (int r = 0; r < world; ++r) jobs.push_back({rank_env(r, world, port), args, {}});
  return jobs;
}

std::vector<CommandResult> run_ranks(const fs::path& dir, int world, const std::string& args) {
  return run_jobs(dir, rank_jobs(world, args));
}

// Shell: waits (up to 60 s) until `path` exists.
std::string wait_for(const fs::path& path) {
  return "for i in $(seq 1 3000); do [ -e " + quote(path) + " ] && break; sleep 0.02; done\n";
}

// Shell: the children of the process $P<job> whose environment has RANK=<rank> (the launcher's ranks).
std::string children_with_rank(int job, int rank) {
  return "$(for k in $(pgrep -P $P" + std::to_string(job) + "); do tr '\\0' '\\n' </proc/$k/environ | grep -qx RANK=" +
         std::to_string(rank) + " && echo $k; done)";
}

// Exactly one line on stderr (after the log lines) says what went wrong.
std::string error_line(const CommandResult& r) {
  const auto at = r.err.find("error: ");
  if (at == std::string::npos) return "";
  const auto end = r.err.find('\n', at);
  return r.err.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

// Lines of 1 to 7 words of one sentence: with whole-word masking the ranks' shares of a batch hold
// different numbers of masked bytes.
void write_corpus(const fs::path& file, int lines, int offset) {
  const std::vector<std::string> words{"in", "the", "beginning", "was", "a", "very", "quiet", "garden"};
  std::ofstream out(file);
  for (int i = offset; i < offset + lines; ++i) {
    for (int w = 0; w <= i % 7; ++w) out << (w ? " " : "") << words[static_cast<size_t>(w + i / 7) % words.size()];
    out << "\n";
  }
}

// A masked LM run file for parity: SGD, no dropout, global batch 8, evaluation of 2 global batches.
fs::path mlm_run_file(const fs::path& dir, const std::string& extra_model = "", const std::string& extra_trainer = "",
                      const fs::path& data_dir = {}) {
  if (data_dir.empty()) {
    write_corpus(dir / "train.txt", 120, 0);
    write_corpus(dir / "eval.txt", 40, 500);
  }
  const auto data = [&](const char* name) { return data_dir.empty() ? quote(dir / name) : quote(data_dir / name); };
  const auto file = dir / "mlm.yaml";
  std::ofstream(file) << "model:\n"
                         "  architecture: PerceiverForMaskedLM\n"
                         "  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
                         "           num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 32,\n"
                         "           attention_probs_dropout_prob: 0.0}\n" +
                             extra_model +
                             "task: {name: mlm, fill_in_samples: 1, whole_word_mask: true}\n"
                             "data:\n"
                             "  seq_len: 32\n"
                             "  train: {type: text, path: " + data("train.txt") + ", unit: line}\n"
                             "  eval: {type: text, path: " + data("eval.txt") + ", unit: line}\n"
                             "optimizer: {name: sgd, lr: 0.5}\n"
                             "trainer: {max_steps: 4, batch_size: 8, seed: 11, threads: 1, num_workers: 0,\n"
                             "          eval_max_batches: 2, dist_timeout_s: 10" + extra_trainer + "}\n"
                             "logging: {log_every: 1}\n";
  return file;
}

fs::path final_weights(const fs::path& run_dir, int steps) {
  return run_dir / "checkpoints" / fmt::format("step-{:08d}", steps) / "model.safetensors";
}

// Every parameter of `a` equals `b`'s within 1e-5.
void expect_same_weights(const fs::path& a, const fs::path& b) {
  ASSERT_TRUE(fs::exists(a)) << a;
  ASSERT_TRUE(fs::exists(b)) << b;
  const auto wa = io::load_state_dict(a), wb = io::load_state_dict(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    EXPECT_EQ(tensor_mismatch(t, wb.at(name), 1e-5, 1e-5), "") << name;
  }
}

std::string describe(const std::vector<CommandResult>& ranks) {
  std::string s;
  for (size_t r = 0; r < ranks.size(); ++r)
    s += "rank " + std::to_string(r) + " exit " + std::to_string(ranks[r].exit_code) + ": " + ranks[r].err + "\n";
  return s;
}

// The same run file on two ranks and on one process: the same final weights, and rank 0 alone writes.
// `printed`: what the two ranks printed.
void expect_parity(const fs::path& dir, const fs::path& run_file, int steps, const std::string& overrides = "",
                   std::vector<CommandResult>* printed = nullptr) {
  const auto one = run_cli("train --config " + quote(run_file) + " logging.run_dir=" + quote(dir / "one") + " " + overrides);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto two = run_ranks(dir, 2, "train --config " + quote(run_file) + " logging.run_dir=" + quote(dir / "two") + " " + overrides);
  ASSERT_EQ(two[0].exit_code, 0) << describe(two);
  ASSERT_EQ(two[1].exit_code, 0) << describe(two);
  if (printed) *printed = two;
  expect_same_weights(final_weights(dir / "two", steps), final_weights(dir / "one", steps));
  // Evaluation artefacts that add up over ranks (a confusion matrix) cover the whole eval set.
  const auto confusion = fs::path("eval") / fmt::format("step-{:08d}", steps) / "confusion_matrix.csv";
  if (fs::exists(dir / "one" / confusion)) EXPECT_EQ(slurp(dir / "two" / confusion), slurp(dir / "one" / confusion));
  // Rank 0 prints the summary and the progress; rank 1 stays quiet.
  EXPECT_NE(two[0].out.find("\"steps\""), std::string::npos);
  EXPECT_EQ(two[1].out, "");
  EXPECT_EQ(two[1].err.find("step 1/"), std::string::npos) << two[1].err;
  // The all-reduced evaluation equals one process's.
  const auto m1 = nlohmann::json::parse(one.out)["metrics"], m2 = nlohmann::json::parse(two[0].out)["metrics"];
  ASSERT_FALSE(m1.empty());
  for (const auto& [k, v] : m1.items()) {
    ASSERT_TRUE(m2.contains(k)) << k;
    EXPECT_NEAR(m2[k].get<double>(), v.get<double>(), 1e-5 * std::max(1.0, std::abs(v.get<double>()))) << k;
  }
}

TEST(Distributed, MaskedLmOnTwoRanksEndsWithOneProcesssWeights) {
  TempDir tmp;
  expect_parity(tmp.path(), mlm_run_file(tmp.path()), 4);
}

TEST(Distributed, GradientAccumulationOnTwoRanksMatchesOneProcess) {
  TempDir tmp;
  expect_parity(tmp.path(), mlm_run_file(tmp.path(), "", ", grad_accum: 2"), 4);
}

// Shared self-attention layers (2 blocks) replayed by reentrant checkpointing: each replay accumulates
// their gradient again, which the Reducer must count before reducing (here after a local micro-step).
TEST(Distributed, ActivationCheckpointingOnTwoRanksMatchesOneProcess) {
  TempDir tmp;
  const auto file =
      mlm_run_file(tmp.path(), "  activation_checkpointing: true\n", "");
  expect_parity(tmp.path(), file, 4,
                "model.config.num_blocks=2 model.config.num_self_attends_per_block=2 trainer.grad_accum=2");
}

TEST(Distributed, ImageHeadWithAugmentationAndAFrozenParameterOnTwoRanksMatchesOneProcess) {
  TempDir tmp;
  auto write = [&](const std::string& name, int64_t n, int64_t seed) {
    torch::manual_seed(seed);
    auto labels = torch::arange(n, torch::kLong) % 3;
    auto images = (torch::rand({n, 8, 8}) * 200).to(torch::kUInt8);
    datasets::write_idx(tmp.path() / (name + "-images.idx"), images);
    datasets::write_idx(tmp.path() / (name + "-labels.idx"), labels.to(torch::kUInt8));
  };
  write("train", 40, 1);
  write("eval", 20, 2);
  const auto source = [&](const std::string& split) {
    return "  " + split + ": {type: idx, images: " + quote(tmp.path() / (split + "-images.idx")) +
           ", labels: " + quote(tmp.path() / (split + "-labels.idx")) + "}\n";
  };
  const auto file = tmp.path() / "img.yaml";
  // A frozen parameter too: it stays out of the gradient all-reduce.
  std::ofstream(file) << "model:\n  architecture: PerceiverForImageClassificationFourier\n  freeze: [perceiver.embeddings.latents]\n"
                         "  config: {d_latents: 16, num_latents: 4, num_self_attention_heads: 2, num_cross_attention_heads: 1,\n"
                         "           qk_channels: 16, v_channels: 16, image_size: 8, attention_probs_dropout_prob: 0.0}\n"
                         "task: {name: image_classification, random_crop_padding: 1, hflip_probability: 0.5}\n"
                         "data:\n" + source("train") + source("eval") +
                         "optimizer: {name: sgd, lr: 0.05}\n"
                         "trainer: {max_steps: 3, batch_size: 6, eval_batch_size: 4, seed: 3, threads: 1, num_workers: 0,\n"
                         "          dist_timeout_s: 20}\n";
  std::vector<CommandResult> two;
  expect_parity(tmp.path(), file, 3, "", &two);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_NE(two[0].err.find("frozen parameters: 1"), std::string::npos) << two[0].err;
}

// Training decodes a random subset of the pixels, the same for the whole global batch: every rank
// draws it from a stream they all advance alike.
TEST(Distributed, OpticalFlowWithSampledQueryPixelsOnTwoRanksMatchesOneProcess) {
  TempDir tmp;
  const std::string data = "type: synthetic, max_displacement: 1";
  const auto file = tmp.path() / "flow.yaml";
  std::ofstream(file) << "model:\n  architecture: PerceiverForOpticalFlow\n"
                         "  config: {train_size: [8, 12], d_latents: 16, num_latents: 4, num_self_attends_per_block: 1,\n"
                         "           num_self_attention_heads: 1, num_cross_attention_heads: 1, attention_probs_dropout_prob: 0.0}\n"
                         "task: {name: optical_flow, train_query_pixels: 24, farneback_baseline: false}\n"
                         "data:\n  train: {" + data + ", count: 16, seed: 1}\n  eval: {" + data + ", count: 4, seed: 2}\n"
                         "optimizer: {name: sgd, lr: 0.01}\n"
                         "trainer: {max_steps: 3, batch_size: 4, seed: 3, threads: 1, num_workers: 0, dist_timeout_s: 10}\n";
  expect_parity(tmp.path(), file, 3);
}

// Texts longer than a window: evaluation stitches each text from windows scored on both ranks, so the
// entity metrics (gathered over the ranks) equal one process's.
TEST(Distributed, TokenClassificationWithWindowedTextsOnTwoRanksMatchesOneProcess) {
  TempDir tmp;
  const auto write = [&](const std::string& name, int n, int offset) {
    std::ofstream out(tmp.path() / name);
    const char* names[] = {"Ada", "Bob", "Cyd", "Dee"};
    for (int i = offset; i < offset + n; ++i) {
      // "... Ada met Bob in Paris ..." with PER and LOC spans, long enough for two or three windows of 24 bytes.
      const std::string a = names[i % 4], b = names[(i / 4) % 4];
      const std::string text = "today " + a + " met " + b + " in Rome and then " + b + " left";
      const auto at = [&](const std::string& word, size_t from) { return text.find(word, from); };
      const auto p1 = at(a, 0), p2 = at(b, p1 + a.size()), p3 = at("Rome", 0), p4 = at(b, p3);
      out << "{\"text\": \"" << text << "\", \"spans\": [{\"start\": " << p1 << ", \"end\": " << p1 + 3
          << ", \"label\": \"PER\"}, {\"start\": " << p2 << ", \"end\": " << p2 + 3 << ", \"label\": \"PER\"}, "
          << "{\"start\": " << p3 << ", \"end\": " << p3 + 4 << ", \"label\": \"LOC\"}, {\"start\": " << p4
          << ", \"end\": " << p4 + 3 << ", \"label\": \"PER\"}]}\n";
    }
  };
  write("train.jsonl", 24, 0);
  write("eval.jsonl", 6, 100);
  const auto file = tmp.path() / "tok.yaml";
  std::ofstream(file) << "model:\n  architecture: PerceiverForTokenClassification\n"
                         "  config: {d_model: 16, d_latents: 16, num_latents: 4, num_self_attends_per_block: 1,\n"
                         "           num_self_attention_heads: 1, num_cross_attention_heads: 1, max_position_embeddings: 24,\n"
                         "           attention_probs_dropout_prob: 0.0}\n"
                         "task: {name: token_classification, window_overlap: 8}\n"
                         "data:\n  seq_len: 24\n"
                         "  train: {type: jsonl, path: " + quote(tmp.path() / "train.jsonl") + "}\n"
                         "  eval: {type: jsonl, path: " + quote(tmp.path() / "eval.jsonl") + "}\n"
                         "optimizer: {name: sgd, lr: 0.1}\n"
                         "trainer: {max_steps: 3, batch_size: 4, seed: 5, threads: 1, num_workers: 0, dist_timeout_s: 20}\n";
  std::vector<CommandResult> two;
  expect_parity(tmp.path(), file, 3, "", &two);
  EXPECT_NE(two[0].out.find("eval/entity_f1"), std::string::npos) << two[0].out;
}

TEST(Distributed, GlobalBatchThatDoesNotDivideIsNamed) {
  TempDir tmp;
  const auto ranks = run_ranks(tmp.path(), 2,
                               "train --config " + quote(mlm_run_file(tmp.path())) + " trainer.batch_size=7 logging.run_dir=" +
                                   quote(tmp.path() / "run"));
  for (const auto& r : ranks) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("trainer.batch_size (7) is the global batch and must divide by the world size (2 ranks)"),
              std::string::npos)
        << r.err;
  }
}

// Per-rank batches of B / world: the ranks' batch k together are one process's batch k of B, also in
// the second epoch, and every rank has as many batches as one process.
TEST(Distributed, LoaderShardsSplitEachGlobalBatch) {
  auto set = std::make_shared<datasets::TensorDataset>(datasets::Example{{"x", torch::arange(23)}});
  auto loader = [&](int64_t rank, int64_t world) {
    datasets::LoaderOptions o;
    o.batch_size = 6 / world;
    o.rank = rank;
    o.world_size = world;
    o.drop_last = true;
    o.pad_shards = false;
    o.seed = 4;
    o.num_workers = 0;
    o.sample_seeds = true;
    return std::make_unique<datasets::DataLoader>(set, o);
  };
  auto one = loader(0, 1);
  auto r0 = loader(0, 2), r1 = loader(1, 2);
  EXPECT_EQ(r0->batches_per_epoch(), one->batches_per_epoch());
  for (int epoch = 0; epoch < 2; ++epoch) {
    while (auto b = one->next()) {
      auto a = r0->next(), c = r1->next();
      ASSERT_TRUE(a && c);
      auto both = torch::cat({a->at("x"), c->at("x")});
      EXPECT_TRUE(std::get<0>(both.sort()).equal(std::get<0>(b->at("x").sort())));
      // Each example carries the same seed whichever rank reads it.
      auto seeds = torch::cat({a->at(datasets::kSampleSeedKey), c->at(datasets::kSampleSeedKey)});
      auto order = both.argsort(), ref_order = b->at("x").argsort();
      EXPECT_TRUE(seeds.index_select(0, order).equal(b->at(datasets::kSampleSeedKey).index_select(0, ref_order)));
    }
    EXPECT_FALSE(r0->next().has_value());
    EXPECT_FALSE(r1->next().has_value());
  }
}

TEST(Distributed, RankEnvironmentIsReadAndCheckedFromTorchrunsVariables) {
  auto env_of = [](std::map<std::string, std::string> vars) {
    return [vars](const char* name) -> const char* {
      const auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  EXPECT_FALSE(trainers::rank_environment(env_of({})).distributed());
  const auto env = trainers::rank_environment(env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                                                      {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"},
                                                      {"MASTER_PORT", "29400"}, {"TORCHELASTIC_RESTART_COUNT", "2"},
                                                      {"TORCHELASTIC_USE_AGENT_STORE", "True"}}));
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "10.0.0.1");
  EXPECT_EQ(env.master_port, 29400);
  EXPECT_EQ(env.restart_count, 2);
  EXPECT_TRUE(env.agent_store);
  EXPECT_NE(error_of([&] { trainers::rank_environment(env_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}})); }).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              trainers::rank_environment(env_of({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}));
            }).find("RANK=2 is outside WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { trainers::rank_environment(env_of({{"WORLD_SIZE", "two"}})); }).find("WORLD_SIZE='two'"),
            std::string::npos);
}

// ---- perceiver train --nproc ----

TEST(Distributed, NprocLauncherEndsWithOneProcesssWeights) {
  TempDir tmp;
  const auto file = mlm_run_file(tmp.path());
  const auto one = run_cli("train --config " + quote(file) + " logging.run_dir=" + quote(tmp.path() / "one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto two = run_cli("train --nproc 2 --config " + quote(file) + " logging.run_dir=" + quote(tmp.path() / "two"));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("rank 1 of 2 joined"), std::string::npos) << two.err;
  expect_same_weights(final_weights(tmp.path() / "two", 4), final_weights(tmp.path() / "one", 4));
  // Rank 0 alone prints the summary.
  EXPECT_EQ(nlohmann::json::parse(two.out)["steps"], 4);
}

// A long `train --nproc 2` run; after its first checkpoint, `signal` runs (shell: the launcher is $P0,
// its ranks $KIDS). Returns the launcher's result; `orphans` lists the ranks still alive after it exited.
CommandResult signal_launched_run(const fs::path& dir, const std::string& signal, std::string& orphans) {
  const auto run = dir / "run";
  const auto r = run_jobs(dir,
                          {{"", "train --nproc 2 --config " + quote(mlm_run_file(dir)) +
                                    " trainer.max_steps=100000 trainer.checkpoint_every=5 logging.run_dir=" + quote(run), {}}},
                          wait_for(run / "checkpoints" / "step-00000005") + "KIDS=$(pgrep -P $P0)\n" + signal,
                          "for k in $KIDS; do kill -0 $k 2>/dev/null && echo $k; done >" + quote(dir / "orphans"));
  orphans = slurp(dir / "orphans");
  return r[0];
}

// SIGKILL rank 1 after the first checkpoint: the launcher stops rank 0, names rank 1 and leaves no
// process behind.
TEST(Distributed, NprocLauncherNamesADeadRankAndStopsTheOthers) {
  TempDir tmp;
  std::string orphans;
  const auto r = signal_launched_run(tmp.path(), "kill -9 " + children_with_rank(0, 1), orphans);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rank 1 (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("was killed by signal 9"), std::string::npos) << r.err;
  EXPECT_EQ(orphans, "") << "ranks still running after the launcher exited";
}

TEST(Distributed, NprocLauncherPassesSigtermToTheRanks) {
  TempDir tmp;
  std::string orphans;
  const auto r = signal_launched_run(tmp.path(), "kill -TERM $P0", orphans);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.err;
  EXPECT_EQ(orphans, "");
}

// ---- failures: one clear line, a non-zero exit, never a hang ----

TEST(Distributed, KilledRankIsNamedByTheOther) {
  for (const int victim : {1, 0}) {  // rank 0 also hosts the store
    TempDir tmp;
    const auto run = tmp.path() / "run";
    const auto r = run_jobs(tmp.path(),
                            rank_jobs(2, "train --config " + quote(mlm_run_file(tmp.path())) +
                                             " trainer.max_steps=100000 trainer.checkpoint_every=5 logging.run_dir=" + quote(run)),
                            wait_for(run / "checkpoints" / "step-00000005") + "kill -9 $P" + std::to_string(victim));
    const auto& survivor = r[1 - victim];
    EXPECT_EQ(r[victim].exit_code, 128 + SIGKILL);
    EXPECT_EQ(survivor.exit_code, 1) << survivor.err;
    EXPECT_NE(error_line(survivor).find("rank " + std::to_string(victim) + " was lost"), std::string::npos) << survivor.err;
  }
}

// Rank 1's working directory lacks the (relative) training file: rank 1 stops with its error, rank 0
// names rank 1 and its error.
TEST(Distributed, RankThatFailsIsNamedWithItsError) {
  TempDir tmp;
  const auto a = tmp.path() / "a", b = tmp.path() / "b";
  fs::create_directories(a);
  fs::create_directories(b);
  write_corpus(a / "train.txt", 120, 0);
  write_corpus(a / "eval.txt", 40, 500);
  write_corpus(b / "eval.txt", 40, 500);
  const auto file = mlm_run_file(tmp.path(), "", "", ".");
  auto jobs = rank_jobs(2, "train --config " + quote(file) + " logging.run_dir=" + quote(tmp.path() / "run"));
  jobs[0].cwd = a;
  jobs[1].cwd = b;
  const auto r = run_jobs(tmp.path(), jobs);
  EXPECT_NE(r[1].exit_code, 0);
  EXPECT_NE(error_line(r[1]).find("train.txt"), std::string::npos) << r[1].err;
  EXPECT_EQ(r[0].exit_code, 1) << r[0].err;
  EXPECT_NE(error_line(r[0]).find("rank 1 failed: "), std::string::npos) << r[0].err;
  EXPECT_NE(error_line(r[0]).find("train.txt"), std::string::npos) << r[0].err;
}

TEST(Distributed, PortInUseIsOneClearLine) {
  TempDir tmp;
  const BoundSocket held(INADDR_ANY, true);  // someone else's server on the port
  const int port = held.port();
  const auto file = mlm_run_file(tmp.path());
  const auto r = run_jobs(tmp.path(), {{rank_env(0, 2, port), "train --config " + quote(file), {}}});
  // --nproc hosts the store itself.
  const auto launcher = run_cli("train --nproc 2 --master-port " + std::to_string(port) + " --config " + quote(file));
  EXPECT_EQ(r[0].exit_code, 1);
  EXPECT_NE(error_line(r[0]).find("cannot host the rendezvous store on port " + std::to_string(port)), std::string::npos)
      << r[0].err;
  EXPECT_EQ(launcher.exit_code, 1);
  EXPECT_NE(error_line(launcher).find("cannot host the rendezvous store on 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << launcher.err;
}

TEST(Distributed, UnreachableMasterIsOneClearLine) {
  TempDir tmp;
  const auto r = run_jobs(tmp.path(), {{rank_env(1, 2, free_port()), "train --config " + quote(mlm_run_file(tmp.path())) +
                                                                         " trainer.dist_timeout_s=1", {}}});
  EXPECT_EQ(r[0].exit_code, 1);
  EXPECT_NE(error_line(r[0]).find("rank 1 could not reach the rendezvous store at 127.0.0.1:"), std::string::npos)
      << r[0].err;
}

TEST(Distributed, RanksWithDifferentRunFilesOrWorldSizesStop) {
  TempDir tmp;
  const auto file = mlm_run_file(tmp.path());
  auto jobs = rank_jobs(2, "train --config " + quote(file));
  jobs[1].args += " optimizer.lr=0.4";
  auto r = run_jobs(tmp.path(), jobs);
  for (const auto& rank : r) {
    EXPECT_EQ(rank.exit_code, 1);
    EXPECT_NE(error_line(rank).find("the effective run files of rank 0 and rank 1 differ"), std::string::npos) << rank.err;
  }
  jobs = rank_jobs(2, "train --config " + quote(file));
  jobs[1].env += " WORLD_SIZE=3";
  r = run_jobs(tmp.path(), jobs);
  for (const auto& rank : r) {
    EXPECT_EQ(rank.exit_code, 1);
    EXPECT_NE(error_line(rank).find("the ranks disagree on WORLD_SIZE: rank 0 has 2, rank 1 has 3"), std::string::npos)
        << rank.err;
  }
}

// ---- torchrun, elastic restart, checkpoints across world sizes ----

// Debian's torchrun through scripts/torchrun.sh: one node with 2 workers, and two nodes of 1 worker.
TEST(Distributed, TorchrunOnOneAndOnTwoNodesEndsWithOneProcesssWeights) {
  TempDir tmp;
  const auto file = mlm_run_file(tmp.path());
  const auto wrapper = fs::path(PERCEIVER_SOURCE_DIR) / "scripts" / "torchrun.sh";
  const auto one = run_cli("train --config " + quote(file) + " logging.run_dir=" + quote(tmp.path() / "one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto single = run_command(quote(wrapper) + " --master_port " + std::to_string(free_port()) +
                                  " --monitor_interval 0.2 --no_python --nproc_per_node 2 '" + PERCEIVER_CLI_PATH + "' train --config " +
                                  quote(file) + " logging.run_dir=" + quote(tmp.path() / "node"));
  ASSERT_EQ(single.exit_code, 0) << single.err;
  expect_same_weights(final_weights(tmp.path() / "node", 4), final_weights(tmp.path() / "one", 4));

  const auto port = std::to_string(free_port());
  std::string script;
  for (int node = 0; node < 2; ++node)
    script += quote(wrapper) + " --nnodes 2 --node_rank " + std::to_string(node) + " --master_addr 127.0.0.1 --master_port " +
              port + " --monitor_interval 0.2 --no_python --nproc_per_node 1 '" + PERCEIVER_CLI_PATH + "' train --config " + quote(file) +
              " logging.run_dir=" + quote(tmp.path() / "nodes") + " >" + quote(tmp.path() / ("node" + std::to_string(node))) +
              " 2>&1 & ";
  run_command(script + "wait");
  expect_same_weights(final_weights(tmp.path() / "nodes", 4), final_weights(tmp.path() / "one", 4));
}

// torchrun --max_restarts 1: SIGKILL worker 1 after the first checkpoint; the restarted workers resume
// from it by themselves and end with the weights of an uninterrupted run.
TEST(Distributed, ElasticRestartEndsWithTheUninterruptedWeights) {
  TempDir tmp;
  const auto file = mlm_run_file(tmp.path());
  const std::string steps = " trainer.max_steps=300 trainer.checkpoint_every=50";
  const auto plain = run_cli("train --nproc 2 --config " + quote(file) + steps + " logging.run_dir=" + quote(tmp.path() / "plain"));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto run = tmp.path() / "elastic";
  const auto wrapper = fs::path(PERCEIVER_SOURCE_DIR) / "scripts" / "torchrun.sh";
  const std::string script =
      quote(wrapper) + " --max_restarts 1 --monitor_interval 0.2 --master_port " + std::to_string(free_port()) +
      " --no_python --nproc_per_node 2 '" +
      PERCEIVER_CLI_PATH + "' train --config " + quote(file) + steps + " logging.run_dir=" + quote(run) + " >" +
      quote(tmp.path() / "out") + " 2>" + quote(tmp.path() / "err") + " & T=$!\n" +
      wait_for(run / "checkpoints" / "step-00000050") +
      "for w in $(pgrep -P $T); do tr '\\0' '\\n' </proc/$w/environ | grep -qx RANK=1 && kill -9 $w; done\n"
      "wait $T; echo $? >" + quote(tmp.path() / "rc");
  write_file(tmp.path() / "elastic.sh", script);
  run_command("timeout 120 bash " + quote(tmp.path() / "elastic.sh"));
  const auto err = slurp(tmp.path() / "err");
  EXPECT_EQ(slurp(tmp.path() / "rc"), "0\n") << err;
  EXPECT_NE(err.find("elastic restart 1: resuming from the latest checkpoint"), std::string::npos) << err;
  expect_same_weights(final_weights(run, 300), final_weights(tmp.path() / "plain", 300));
}

// A checkpoint written by 2 ranks resumes on 1 process: the same weights as 1 process all along; and
// the evaluation of a checkpoint on 2 ranks equals 1 process's.
TEST(Distributed, CheckpointOfTwoRanksResumesOnOneAndEvaluatesAlike) {
  TempDir tmp;
  const auto file = mlm_run_file(tmp.path());
  const auto one = run_cli("train --config " + quote(file) + " trainer.max_steps=8 logging.run_dir=" + quote(tmp.path() / "one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto run = tmp.path() / "mixed";
  const auto two = run_cli("train --nproc 2 --config " + quote(file) + " logging.run_dir=" + quote(run));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const auto resumed = run_cli("train --config " + quote(file) + " trainer.max_steps=8 logging.run_dir=" + quote(run) +
                               " --resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("at step 4"), std::string::npos) << resumed.err;
  expect_same_weights(final_weights(run, 8), final_weights(tmp.path() / "one", 8));

  const auto checkpoint = quote(final_weights(run, 8).parent_path());
  const auto e1 = run_cli("evaluate --config " + quote(file) + " --checkpoint " + checkpoint + " trainer.eval_max_batches=0");
  const auto e2 = run_cli("evaluate --nproc 2 --config " + quote(file) + " --checkpoint " + checkpoint +
                          " trainer.eval_max_batches=0");
  ASSERT_EQ(e1.exit_code, 0) << e1.err;
  ASSERT_EQ(e2.exit_code, 0) << e2.err;
  const auto m1 = nlohmann::json::parse(e1.out), m2 = nlohmann::json::parse(e2.out);
  ASSERT_TRUE(m1.contains("eval/loss"));
  for (const auto& [k, v] : m1.items())
    EXPECT_NEAR(m2.at(k).get<double>(), v.get<double>(), 1e-5 * std::max(1.0, std::abs(v.get<double>()))) << k;
}

}  // namespace
}  // namespace perceiver::testing
