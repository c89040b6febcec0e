#include "trainers/bench.h"
#include "trainers/bench_data.h"

#include <spdlog/spdlog.h>

#include <c10/core/InferenceMode.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "perceiver/models/architectures.h"
#include "perceiver/models/attention.h"
#include "perceiver/ops/matmul.h"
#include "perceiver/models/config.h"
#include "perceiver/runtime/device.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/model.h"
#include "perceiver/runtime/runtime.h"
#include "trainers/op_profile.h"
#include "trainers/fused_adamw.h"
#include "trainers/optim.h"
#include "trainers/run_config_util.h"
#include "trainers/trainer.h"

namespace perceiver::trainers {
namespace {

// Median seconds of `iters` calls after `warmup` untimed ones.
template <typename Fn>
double median_seconds(int warmup, int iters, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < std::max(iters, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// ---- analytic FLOPs, from the built model's layers ----

// Channels of one PerceiverLayer, read from its weights: query (qk x q_dim), key (qk x kv_dim),
// value (v x kv_dim), output (out x v), MLP (hidden x q_dim).
struct LayerChannels {
  int64_t q_dim = 0, kv_dim = 0, qk = 0, v = 0, out = 0, hidden = 0;
};

LayerChannels channels_of(torch::nn::Module& layer) {
  const auto p = layer.named_parameters();
  auto shape = [&](const char* name) { return p[name].sizes(); };
  LayerChannels c;
  c.qk = shape("attention.self.query.weight")[0];
  c.q_dim = shape("attention.self.query.weight")[1];
  c.kv_dim = shape("attention.self.key.weight")[1];
  c.v = shape("attention.self.value.weight")[0];
  c.out = shape("attention.output.dense.weight")[0];
  c.hidden = shape("mlp.dense1.weight")[0];
  return c;
}

// Multiply-adds of one layer with nq queries attending to nk keys (LayerNorms and softmax left out).
double layer_macs(const LayerChannels& c, double nq, double nk) {
  return nq * c.q_dim * c.qk + nk * c.kv_dim * (c.qk + c.v) + nq * nk * (c.qk + c.v) + nq * c.v * c.out +
         2 * nq * c.q_dim * c.hidden;
}

}  // namespace

double forward_gflop(torch::nn::Module& model, int64_t num_latents, int64_t num_blocks, const FlopShape& s) {
  const double latents = static_cast<double>(num_latents);
  double macs = s.extra_macs;
  for (const auto& item : model.named_modules()) {
    const auto& name = item.key();
    if (!item.value()->as<PerceiverLayerImpl>()) continue;
    const auto c = channels_of(*item.value());
    if (name.size() >= 23 && name.compare(name.size() - 23, 23, "encoder.cross_attention") == 0)
      macs += layer_macs(c, latents, static_cast<double>(s.inputs));
    else if (name.find("encoder.self_attends.") != std::string::npos)
      macs += static_cast<double>(num_blocks) * layer_macs(c, latents, latents);
    else if (name.find("decoding_cross_attention") != std::string::npos)
      macs += layer_macs(c, static_cast<double>(s.queries), latents);
  }
  return 2.0 * macs * static_cast<double>(s.batch) / 1e9;
}

namespace {

double model_gflop(PerceiverPreTrainedModelImpl& model, const FlopShape& s) {
  return forward_gflop(model, model.config().num_latents, model.config().num_blocks, s);
}

int64_t count_parameters(torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

PerceiverPreTrainedModel build(const nlohmann::json& config, const BenchOptions& o) {
  auto model = build_model(PerceiverConfig::from_json(config, "bench workload"));
  model->to(o.device);
  return model;
}


// ---- workloads ----

nlohmann::json mlm_config(int64_t max_positions) {
  return {{"d_model", 768},          {"num_latents", 256},
          {"d_latents", 512},        {"num_blocks", 1},
          {"num_self_attends_per_block", 6}, {"num_self_attention_heads", 8},
          {"num_cross_attention_heads", 8},  {"vocab_size", 262},
          {"max_position_embeddings", max_positions}, {"attention_probs_dropout_prob", 0.0},
          {"architectures", {"PerceiverForMaskedLM"}}};
}

// The training loss of a batch: the head's, with labels.
using LossOf = std::function<torch::Tensor(PerceiverPreTrainedModelImpl&, const NamedTensors&)>;
torch::Tensor head_loss(PerceiverPreTrainedModelImpl& model, const NamedTensors& batch) {
  return model.forward_named(batch, {}).at("loss");
}
// The masked LM's loss as `perceiver train` computes it: decoding the masked bytes only.
torch::Tensor masked_decoding_loss(PerceiverPreTrainedModelImpl& model, const NamedTensors& batch) {
  return masked_lm_loss(dynamic_cast<PerceiverForMaskedLMImpl&>(model), batch.at("inputs"), {}, batch.at("labels")).loss;
}

// Times `iteration` (the median after warm-up) with the result's common fields filled in; the
// caller's iteration synchronises the device. forward_passes: 3 for a training step, 1 for inference.
// One more call of `iteration` under OpProfile: its `top` operators by self time.
template <typename Fn>
nlohmann::json profile_iteration(Fn&& iteration, int top) {
  std::vector<OpTime> ops;
  const auto start = std::chrono::steady_clock::now();
  {
    const OpProfile profile;
    iteration();
    ops = profile.table();
  }
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  auto out = nlohmann::json::array();
  for (size_t i = 0; i < ops.size() && i < static_cast<size_t>(top); ++i)
    out.push_back({{"op", ops[i].name}, {"self_ms", ops[i].self_ms}, {"total_ms", ops[i].total_ms},
                   {"calls", ops[i].calls}, {"self_share", ops[i].self_ms / wall_ms}});
  return out;
}

template <typename Fn>
BenchResult timed(const std::string& name, PerceiverPreTrainedModelImpl& model, int64_t samples,
                  const FlopShape& shape, double forward_passes, const BenchOptions& o, Fn&& iteration) {
  BenchResult r;
  r.workload = name;
  r.precision = device::to_string(o.precision);
  r.num_parameters = count_parameters(model);
  runtime::reset_peak_rss();
  r.seconds_per_iter = median_seconds(o.warmup, o.iters, iteration);
  r.peak_rss_mb = runtime::peak_rss_mb();
  if (o.profile > 0) r.extra["profile"] = profile_iteration(iteration, o.profile);
  r.samples_per_s = static_cast<double>(samples) / r.seconds_per_iter;
  r.gflop_per_iter = forward_passes * model_gflop(model, shape);
  return r;
}

// One AdamW step (lr 1e-4) of forward with labels + backward.
BenchResult time_training(const std::string& name, PerceiverPreTrainedModelImpl& model, const NamedTensors& batch,
                          int64_t samples, const FlopShape& shape, const BenchOptions& o,
                          const LossOf& loss_of = head_loss) {
  model.train();
  FusedAdamW optimizer(model.parameters(), torch::optim::AdamWOptions(1e-4));  // as `perceiver train` steps
  const auto inputs = device::to(batch, o.device);
  return timed(name, model, samples, shape, 3.0, o, [&] {
    clear_gradients(optimizer);
    torch::Tensor loss;
    {
      const device::AutocastGuard autocast(o.device, o.precision);
      loss = loss_of(model, inputs);
    }
    loss.backward();
    optimizer.step();
    device::synchronize(o.device);
  });
}

BenchResult time_inference(const std::string& name, PerceiverPreTrainedModelImpl& model, const NamedTensors& batch,
                           int64_t samples, const FlopShape& shape, const BenchOptions& o) {
  model.eval();
  c10::InferenceMode inference;
  const auto inputs = device::to(batch, o.device);
  return timed(name, model, samples, shape, 1.0, o, [&] {
    const device::AutocastGuard autocast(o.device, o.precision);
    model.forward_named(inputs, {});
    device::synchronize(o.device);
  });
}

// 15 % of the bytes replaced by [MASK] (id 3) and scored.
NamedTensors masked_batch(int64_t batch, int64_t length) {
  const auto ids = torch::randint(6, 262, {batch, length}, torch::kLong);
  const auto chosen = torch::rand({batch, length}) < 0.15;
  return {{"inputs", torch::where(chosen, torch::full_like(ids, 3), ids)},
          {"labels", torch::where(chosen, ids, torch::full_like(ids, -100))}};
}

// `queries` decoder queries, each scored against the byte embeddings: every max_position_embeddings
// position for inference, the most masked bytes of a row for training (masked_lm_loss).
FlopShape mlm_shape(const PerceiverConfig& c, int64_t batch, int64_t length, int64_t queries) {
  return {batch, length, queries, static_cast<double>(queries) * static_cast<double>(c.d_model * c.vocab_size)};
}

int64_t most_masked(const NamedTensors& batch) { return batch.at("labels").ne(-100).sum(1).max().item<int64_t>(); }

// A training step as `perceiver train` runs it: masked-only decoding.
BenchResult time_mlm_training(const std::string& name, PerceiverPreTrainedModelImpl& model, int64_t batch,
                              int64_t length, const BenchOptions& o) {
  const auto data = masked_batch(batch, length);
  auto r = time_training(name, model, data, batch, mlm_shape(model.config(), batch, length, most_masked(data)), o,
                         masked_decoding_loss);
  r.extra["decode"] = "masked";
  return r;
}

std::vector<BenchResult> mlm_train(const BenchOptions& o) {
  auto model = build(mlm_config(2048), o);
  return {time_mlm_training("mlm-train", *model, 4, 2048, o)};
}

std::vector<BenchResult> mlm_infer_full(const BenchOptions& o) {
  // deepmind/language-perceiver (201,108,230 parameters).
  auto model = build({{"d_model", 768}, {"d_latents", 1280}, {"num_latents", 256}, {"num_self_attends_per_block", 26},
                      {"num_self_attention_heads", 8}, {"num_cross_attention_heads", 8}, {"qk_channels", 256},
                      {"v_channels", 1280}, {"max_position_embeddings", 2048},
                      {"architectures", {"PerceiverForMaskedLM"}}},
                     o);
  const NamedTensors batch{{"inputs", torch::randint(6, 262, {1, 2048}, torch::kLong)}};
  return {time_inference("mlm-infer-full", *model, batch, 1, mlm_shape(model->config(), 1, 2048, 2048), o)};
}

std::vector<BenchResult> img_train(const BenchOptions& o) {
  // Pixels + 2-D Fourier features (64 bands, concatenated positions): 3 + 2 * (2 * 64 + 1) = 261 channels.
  auto model = build({{"d_model", 261}, {"num_latents", 128}, {"d_latents", 256}, {"num_self_attends_per_block", 4},
                      {"num_self_attention_heads", 8}, {"num_cross_attention_heads", 1}, {"image_size", 32},
                      {"num_labels", 10}, {"attention_probs_dropout_prob", 0.0},
                      {"architectures", {"PerceiverForImageClassificationFourier"}}},
                     o);
  const NamedTensors batch{{"inputs", torch::randn({32, 3, 32, 32})},
                           {"labels", torch::randint(0, 10, {32}, torch::kLong)}};
  const auto& c = model->config();
  return {time_training("img-train", *model, batch, 32, {32, 32 * 32, 1, static_cast<double>(c.d_latents * 10)}, o)};
}

std::vector<BenchResult> flow_infer(const BenchOptions& o) {
  // 3x3 patches of two frames (54) projected to 64 channels + 2-D Fourier features (64 bands): 322.
  auto model = build({{"d_model", 322}, {"num_latents", 256}, {"d_latents", 256}, {"num_self_attends_per_block", 6},
                      {"num_self_attention_heads", 8}, {"num_cross_attention_heads", 1}, {"train_size", {64, 96}},
                      {"architectures", {"PerceiverForOpticalFlow"}}},
                     o);
  const int64_t pixels = 64 * 96;
  const NamedTensors batch{{"inputs", torch::randn({1, 2, 27, 64, 96})}};
  // conv_after_patches (54 -> 64) per pixel; the decoder's final layer (322 -> 2) per pixel.
  const double extra = static_cast<double>(pixels) * (54.0 * 64.0 + 322.0 * 2.0);
  return {time_inference("flow-infer", *model, batch, 1, {1, pixels, pixels, extra}, o)};
}

std::vector<BenchResult> scaling(const BenchOptions& o) {
  std::vector<BenchResult> out;
  std::vector<double> log_length, log_time;
  for (const int64_t length : {2048, 4096, 8192, 16384}) {
    auto model = build(mlm_config(length), o);
    auto r = time_mlm_training("scaling", *model, 1, length, o);
    r.extra["length"] = length;
    log_length.push_back(std::log(static_cast<double>(length)));
    log_time.push_back(std::log(r.seconds_per_iter));
    out.push_back(std::move(r));
  }
  // Least-squares slope of log time against log length: 1 is linear in the input length.
  const double n = static_cast<double>(log_length.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < log_length.size(); ++i) {
    sx += log_length[i];
    sy += log_time[i];
    sxx += log_length[i] * log_length[i];
    sxy += log_length[i] * log_time[i];
  }
  const double exponent = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  for (auto& r : out) r.extra["time_exponent"] = exponent;
  return out;
}

// A 2048^3 product (8192^3 on a GPU) through the model's own path, or through ATen's mm.
double gemm_gflops(torch::ScalarType dtype, int iters, const torch::Device& device, bool aten = false) {
  // A GPU needs a larger product than a CPU to reach its peak.
  const int64_t n = device.is_cuda() ? 8192 : 2048;
  const auto a = torch::randn({n, n}).to(device, dtype), b = torch::randn({n, n}).to(device, dtype);
  c10::InferenceMode inference;
  const double seconds = median_seconds(1, iters, [&] {
    aten ? torch::mm(a, b) : ops::matmul(a, b);
    device::synchronize(device);
  });
  return 2.0 * n * n * n / seconds / 1e9;
}

}  // namespace

nlohmann::json BenchResult::to_json() const {
  nlohmann::json j = {{"workload", workload},
                      {"precision", precision},
                      {"num_parameters", num_parameters},
                      {"seconds_per_iter", seconds_per_iter},
                      {"samples_per_s", samples_per_s},
                      {"peak_rss_mb", peak_rss_mb},
                      {"gflop_per_iter", gflop_per_iter},
                      {"gflops", gflops},
                      {"fp32_peak_fraction", fp32_peak_fraction},
                      {"bf16_peak_fraction", bf16_peak_fraction}};
  j.update(extra);
  return j;
}

GemmPeak measure_gemm_peak(int iters, const torch::Device& device) {
  GemmPeak peak;
  for (const char* flag : {"avx512_bf16", "amx_bf16", "amx_tile"})
    if (runtime::cpu_has_flag(flag)) peak.cpu_flags += (peak.cpu_flags.empty() ? "" : " ") + std::string(flag);
  peak.bf16_hardware = runtime::cpu_has_flag("avx512_bf16") || runtime::cpu_has_flag("amx_bf16");
  peak.fp32_gflops = gemm_gflops(torch::kFloat32, iters, device);
  peak.fp32_aten_gflops = gemm_gflops(torch::kFloat32, iters, device, /*aten=*/true);
  peak.fp32_backend = ops::matmul_backend();
  peak.bf16_gflops = gemm_gflops(torch::kBFloat16, iters, device);
  return peak;
}

namespace {

namespace fs = std::filesystem;

// The run file's training steps as `perceiver train` takes them: the median step after warm-up.
BenchResult time_config_steps(const fs::path& file, const BenchOptions& o) {
  auto run = load_run_config(file);
  const auto dir = fs::temp_directory_path() / fmt::format("perceiver-bench-{}-{}", ::getpid(), file.stem().string());
  apply_overrides(run, {"trainer.max_steps=" + std::to_string(o.warmup + o.iters), "trainer.eval_every=0",
                        "trainer.eval_max_batches=1", "trainer.checkpoint_every=0", "trainer.time_limit_minutes=0",
                        "trainer.threads=" + std::to_string(o.threads), "trainer.device=" + o.device.str(),
                        "logging.run_dir=" + dir.string(), "logging.log_every=1000000"});
  BenchResult r;
  r.workload = "config:" + file.stem().string();
  r.precision = lookup_value<std::string>(run.root, "trainer.precision", "fp32");
  TrainResult trained;
  {
    const runtime::ScopedLogLevel quiet(spdlog::level::err);  // the bench prints its own table (and the
    // schedule warnings that its few steps cause would only be noise)
    Trainer trainer(run);
    runtime::reset_peak_rss();
    trained = trainer.train();
    r.peak_rss_mb = runtime::peak_rss_mb();
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  std::vector<double> steps(trained.step_seconds.begin() + std::min<size_t>(o.warmup, trained.step_seconds.size()),
                            trained.step_seconds.end());
  if (steps.empty()) throw std::runtime_error(file.string() + ": the bench ran no training step");
  std::nth_element(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(steps.size() / 2), steps.end());
  r.seconds_per_iter = steps[steps.size() / 2];
  r.samples_per_s = static_cast<double>(lookup_value<int64_t>(run.root, "trainer.batch_size", 0)) / r.seconds_per_iter;
  r.num_parameters = trained.num_parameters;
  r.extra["config"] = file.string();
  return r;
}

// The *.yaml files of `dir`, sorted; an error naming it when there are none.
std::vector<fs::path> run_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  if (ec || files.empty())
    throw std::invalid_argument("bench workload 'configs': no *.yaml run files in '" + dir.string() +
                                "' (run from the project root, or pass --configs-dir)");
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<BenchResult> shipped_configs(const BenchOptions& o) {
  std::vector<BenchResult> out;
  for (const auto& file : run_files(o.configs_dir)) out.push_back(time_config_steps(file, o));
  return out;
}

}  // namespace

const std::map<std::string, BenchWorkload>& bench_workloads() {
  static const std::map<std::string, BenchWorkload> workloads = {
      {"mlm-train", mlm_train}, {"mlm-infer-full", mlm_infer_full}, {"img-train", img_train},
      {"flow-infer", flow_infer}, {"scaling", scaling},         {"configs", shipped_configs},
      {"data-text", data_text},
#if PERCEIVER_WITH_OPENCV
      {"data-images", data_images},
#endif
  };
  return workloads;
}

GemmPeak run_bench(const BenchOptions& options, const std::function<void(const BenchResult&)>& on_result) {
  const auto& workloads = bench_workloads();
  std::vector<std::string> names = options.only;
  if (names.empty())
    for (const auto& [name, fn] : workloads) names.push_back(name);
  for (const auto& name : names)
    if (!workloads.count(name)) {
      std::vector<std::string> known;
      for (const auto& [k, fn] : workloads) known.push_back(k);
      throw std::invalid_argument("unknown bench workload '" + name + "' (known: " + join(known, ", ") + ")");
    }
  if (std::find(names.begin(), names.end(), "configs") != names.end()) run_files(options.configs_dir);  // fail first
  runtime::set_threads(options.threads);
  if (options.precision == device::Precision::bf16)
    if (const auto warning = device::bf16_slowdown_warning(options.device); !warning.empty())
      spdlog::warn("{}", warning);
  const GemmPeak peak = measure_gemm_peak(std::max(options.iters, 3), options.device);
  for (const auto& name : names) {
    for (auto& r : workloads.at(name)(options)) {
      r.gflops = r.gflop_per_iter / r.seconds_per_iter;
      r.fp32_peak_fraction = r.gflops / peak.fp32_gflops;
      r.bf16_peak_fraction = r.gflops / peak.bf16_gflops;
      on_result(r);
    }
  }
  return peak;
}

}  // namespace perceiver::trainers
