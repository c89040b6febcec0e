// perceiver bench: result fields, the analytic FLOP count, and the CLI's JSON lines. No timing is
// asserted (performance targets live in the benchmark itself).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "perceiver/models/architectures.h"
#include "perceiver/models/heads.h"
#include "tests/test_support.h"
#include "trainers/bench.h"
#include "trainers/op_profile.h"

namespace perceiver::trainers {
namespace {

using perceiver::testing::error_of;
using perceiver::testing::run_cli;
namespace fs = std::filesystem;

// A small MLM whose forward FLOPs are counted by hand below.
TEST(Bench, ForwardFlopsFollowTheLayerShapes) {
  auto model = build_model(PerceiverConfig::from_json({{"d_model", 32},
                                                       {"num_latents", 8},
                                                       {"d_latents", 16},
                                                       {"num_blocks", 2},
                                                       {"num_self_attends_per_block", 3},
                                                       {"num_self_attention_heads", 2},
                                                       {"num_cross_attention_heads", 1},
                                                       {"qk_channels", 8},
                                                       {"v_channels", 16},
                                                       {"self_attention_widening_factor", 2},
                                                       {"max_position_embeddings", 40},
                                                       {"architectures", {"PerceiverForMaskedLM"}}}));
  const int64_t B = 3, M = 40, N = 8, D = 16, C = 32, qk = 8, v = 16, Q = 40;
  // Encoder cross-attention: 8 latents (q 16) over 40 inputs (kv 32), output back to 16, MLP 16 -> 16 -> 16.
  const double cross = N * D * qk + M * C * (qk + v) + N * M * (qk + v) + N * v * D + 2.0 * N * D * D;
  // Self-attention, 3 layers x 2 blocks: q = kv = 16, output v -> v, MLP 16 -> 32 -> 16.
  const double self = 6.0 * (N * D * qk + N * D * (qk + v) + N * N * (qk + v) + N * v * v + 2.0 * N * D * 2 * D);
  // Decoder: 40 queries of 32 channels over the 8 latents. HF's PerceiverForMaskedLM fixes its
  // decoder's channels (qk_channels=8*32, v_channels=d_model); output to 32, MLP 32 -> 32 -> 32.
  const int64_t dqk = 8 * 32, dv = C;
  const double decoder = Q * C * dqk + N * D * (dqk + dv) + Q * N * (dqk + dv) + Q * dv * C + 2.0 * Q * C * C;
  const double expected = 2.0 * B * (cross + self + decoder + 5.0) / 1e9;
  EXPECT_NEAR(forward_gflop(*model, N, 2, {B, M, Q, 5.0}), expected, 1e-12);
  // Twice the batch, twice the work; the decoder's cost grows with its queries.
  EXPECT_NEAR(forward_gflop(*model, N, 2, {2 * B, M, Q, 5.0}), 2 * expected, 1e-12);
  EXPECT_GT(forward_gflop(*model, N, 2, {B, M, 2 * Q, 5.0}), expected);
}

TEST(Bench, ResultsCarryEveryFieldAndUnknownWorkloadsAreNamed) {
  BenchOptions options;
  options.only = {"flow-infer"};
  options.iters = 1;
  options.warmup = 0;
  std::vector<BenchResult> results;
  const auto peak = run_bench(options, [&](const BenchResult& r) { results.push_back(r); });
  ASSERT_EQ(results.size(), 1u);
  const auto& r = results[0];
  EXPECT_EQ(r.workload, "flow-infer");
  EXPECT_EQ(r.precision, "fp32");
  EXPECT_GT(r.num_parameters, 0);
  EXPECT_GT(r.seconds_per_iter, 0);
  EXPECT_NEAR(r.samples_per_s, 1.0 / r.seconds_per_iter, 1e-9 * r.samples_per_s);
  EXPECT_NEAR(r.gflops, r.gflop_per_iter / r.seconds_per_iter, 1e-9 * r.gflops);
  EXPECT_NEAR(r.fp32_peak_fraction, r.gflops / peak.fp32_gflops, 1e-12);
  EXPECT_NEAR(r.bf16_peak_fraction, r.gflops / peak.bf16_gflops, 1e-12);
  EXPECT_GT(r.peak_rss_mb, 0);
  EXPECT_GT(peak.fp32_gflops, 0);
  for (const char* key : {"workload", "precision", "num_parameters", "seconds_per_iter", "samples_per_s", "peak_rss_mb",
                          "gflop_per_iter", "gflops", "fp32_peak_fraction", "bf16_peak_fraction"})
    EXPECT_TRUE(r.to_json().contains(key)) << key;

  options.only = {"mlm-tarin"};
  const auto message = error_of([&] { run_bench(options, [](const BenchResult&) {}); });
  EXPECT_NE(message.find("unknown bench workload 'mlm-tarin'"), std::string::npos) << message;
  EXPECT_NE(message.find("mlm-train"), std::string::npos) << message;
}

TEST(Bench, CliPrintsOneJsonLinePerResultThenThePeak) {
  const auto r = run_cli("bench --only flow-infer --iters 1 --warmup 0 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> objects;
  for (std::string line; std::getline(lines, line);) objects.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objects.size(), 2u) << r.out;
  EXPECT_EQ(objects[0].at("workload"), "flow-infer");
  EXPECT_GT(objects[0].at("gflop_per_iter").get<double>(), 0);
  EXPECT_GT(objects[1].at("gemm_peak_fp32_gflops").get<double>(), 0);
  const auto bad = run_cli("bench --only nope");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_EQ(bad.out, "");  // no table header before the error
}

TEST(OpProfile, TimesEachOperatorWithAndWithoutTheOnesItCalls) {
  const auto a = torch::randn({64, 64}, torch::requires_grad());
  const auto b = torch::randn({64, 64});
  std::vector<OpTime> ops;
  {
    const OpProfile profile;
    EXPECT_THROW(OpProfile second, std::logic_error);  // ATen's callbacks are process-wide
    torch::matmul(a, b).relu().sum().backward();
    ops = profile.table();
  }
  auto find = [&](const std::string& name) {
    const auto it = std::find_if(ops.begin(), ops.end(), [&](const OpTime& op) { return op.name == name; });
    return it == ops.end() ? nullptr : &*it;
  };
  const auto* mm = find("aten::mm");
  const auto* matmul = find("aten::matmul");
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(matmul, nullptr);
  EXPECT_GE(mm->calls, 2);  // the forward's, and the backward's for a's gradient
  EXPECT_EQ(matmul->calls, 1);
  EXPECT_NE(find("MmBackward0"), nullptr);
  // matmul's own time excludes the mm it calls; an op's self time never exceeds its total.
  EXPECT_LT(matmul->self_ms, matmul->total_ms);
  for (const auto& op : ops) EXPECT_LE(op.self_ms, op.total_ms + 1e-9) << op.name;
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end(), [](const OpTime& x, const OpTime& y) { return x.self_ms > y.self_ms; }));
  // Once a profile ends, nothing is recorded until the next starts.
  torch::mm(b, b);
  const OpProfile next;
  EXPECT_TRUE(next.table().empty());
}

TEST(Bench, ConfigsWorkloadTimesEveryRunFileAsTrainRunsIt) {
  perceiver::testing::TempDir tmp;
  const auto dir = tmp.path() / "configs";
  fs::create_directories(dir);
  {
    std::ofstream corpus(tmp.path() / "corpus.txt");
    for (int i = 0; i < 200; ++i) corpus << "line " << i << " of a small corpus for the bench\n";
  }
  const std::string corpus = (tmp.path() / "corpus.txt").string();
  auto run_file = [&](const std::string& precision) {
    return "model:\n"
           "  architecture: PerceiverForMaskedLM\n"
           "  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
           "           num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 32}\n"
           "task: {name: mlm}\n"
           "data:\n"
           "  seq_len: 32\n"
           "  train: {type: text, path: '" + corpus + "', unit: line}\n"
           "  eval: {type: text, path: '" + corpus + "', unit: line}\n"
           "optimizer: {name: adamw, lr: 0.001}\n"
           "trainer: {max_steps: 1000, batch_size: 8, precision: " + precision + ", eval_every: 1}\n"
           "logging: {run_dir: '" + (tmp.path() / "must-not-be-written").string() + "'}\n";
  };
  perceiver::testing::write_file(dir / "a.yaml", run_file("fp32"));
  perceiver::testing::write_file(dir / "b.yaml", run_file("bf16"));
  perceiver::testing::write_file(dir / "notes.txt", "not a run file");
  BenchOptions options;
  options.only = {"configs"};
  options.configs_dir = dir;
  options.iters = 2;
  options.warmup = 1;
  options.threads = 1;
  std::vector<BenchResult> results;
  run_bench(options, [&](const BenchResult& r) { results.push_back(r); });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].workload, "config:a");
  EXPECT_EQ(results[1].workload, "config:b");
  EXPECT_EQ(results[0].precision, "fp32");
  EXPECT_EQ(results[1].precision, "bf16");  // each file's own precision
  for (const auto& r : results) {
    EXPECT_GT(r.num_parameters, 0);
    EXPECT_GT(r.seconds_per_iter, 0);
    EXPECT_NEAR(r.samples_per_s, 8 / r.seconds_per_iter, 1e-9 * r.samples_per_s);
    EXPECT_EQ(r.gflop_per_iter, 0);  // no FLOP count for whole run files
  }
  // The runs went to temporary folders, removed afterwards: the file's run_dir is never touched.
  EXPECT_FALSE(fs::exists(tmp.path() / "must-not-be-written"));

  options.configs_dir = tmp.path() / "nowhere";
  const auto message = error_of([&] { run_bench(options, [](const BenchResult&) {}); });
  EXPECT_NE(message.find("no *.yaml run files in '" + (tmp.path() / "nowhere").string()), std::string::npos) << message;
}

}  // namespace
}  // namespace perceiver::trainers

namespace perceiver::trainers {
namespace {

// The data workloads generate their corpus and images at 1x and 10x, keep them in --data-dir for reuse,
// and report the time to the first batch and the peak-RSS ratio of 10x to 1x.
TEST(Bench, DataWorkloadsReadGeneratedDataAtTwoSizes) {
  testing::TempDir tmp;
  const auto r = run_cli("bench --only data-text data-images --iters 1 --threads 1 --json --data-text-mb 0.3 "
                         "--data-images 6 --data-dir '" + tmp.path().string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::map<std::string, nlohmann::json> results;
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("workload")) results[j["workload"].get<std::string>()] = j;
  }
  for (const char* name : {"data-text:1x", "data-text:10x", "data-images:1x", "data-images:10x"}) {
    ASSERT_TRUE(results.count(name)) << name << " in " << r.out;
    EXPECT_GT(results[name].at("samples_per_s").get<double>(), 0) << name;
    EXPECT_GT(results[name].at("first_batch_s").get<double>(), 0) << name;
  }
  EXPECT_NEAR(results["data-text:10x"]["text_mb"].get<double>(), 3.0, 1e-9);
  EXPECT_EQ(results["data-images:10x"]["images"], 60);
  EXPECT_TRUE(results["data-text:10x"].contains("rss_ratio_10x_1x"));
  // The generated data stays for the next run.
  EXPECT_TRUE(fs::exists(tmp.path() / "text" / "10x" / ".complete"));
  EXPECT_TRUE(fs::exists(tmp.path() / "images" / "10x" / "class0"));
}

}  // namespace
}  // namespace perceiver::trainers
