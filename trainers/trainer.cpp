#include "trainers/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "datasets/common.h"
#include "datasets/file_store.h"
#include "datasets/loader.h"
#include "datasets/mlm_collator.h"
#include "perceiver/device.h"
#include "perceiver/heads.h"
#include "perceiver/io/model_dir.h"
#include "perceiver/io/torch_bin.h"
#include "perceiver/runtime.h"
#include "trainers/checkpoint_io.h"
#include "trainers/distributed.h"
#include "trainers/gradient_sync.h"
#include "trainers/initialization.h"
#include "trainers/metrics_log.h"
#include "trainers/model_card.h"
#include "trainers/optim.h"
#include "trainers/progress.h"
#include "trainers/run_length.h"
#include "trainers/schedule.h"
#include "trainers/tasks.h"
#include "trainers/tensorboard.h"

namespace perceiver::trainers {
namespace fs = std::filesystem;

const Schema& run_schema() {
  static const Schema schema = Schema::from_yaml(R"(
model:
  architecture: string
  config: map
  from: string
  freeze: list[string]
  init_std: map
  activation_checkpointing: bool
task: any
data: map
optimizer:
  name: enum[adamw, lamb, sgd]
  freeze: list[string]
  lr: float
  weight_decay: float
  betas: list[float]
  eps: float
  momentum: float
  nesterov: bool
  exclude_from_decay: list[string]
  lr_multipliers: map
schedule:
  name: enum[constant, linear, cosine, constant_cosine]
  warmup_steps: int
  min_lr: float
  constant_fraction: float
trainer:
  max_steps: any
  epochs: int
  batch_size: int
  eval_batch_size: int
  grad_accum: int
  clip_grad_norm: float
  seed: int
  threads: int
  device: string
  precision: enum[fp32, bf16, auto]
  tf32: bool
  deterministic: bool
  eval_every: int
  eval_max_batches: int
  checkpoint_every: int
  keep_last: int
  best_metric: string
  best_mode: enum[min, max]
  on_nonfinite: enum[stop, skip]
  time_limit_minutes: float
  num_workers: int
  prefetch: int
  dist_timeout_s: float
logging:
  run_dir: string
  log_every: int
  log_every_seconds: float
  tensorboard: bool
)");
  return schema;
}

namespace {

torch::Device pick_device(const std::string& name, const std::string& source) {
  try {
    return device::parse(name);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(source + ": trainer.device: " + e.what());
  }
}

std::string format_metrics(const std::map<std::string, double>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + fmt::format("{} {:.4f}", k, v);
  return s;
}

// What a task's loss is the mean over: its "loss" metric's weight (masked tokens for MLM), else samples.
double loss_weight(const StepOutput& out) {
  const auto it = out.metrics.entries().find("loss");
  return it != out.metrics.entries().end() ? it->second.second : static_cast<double>(out.samples);
}

}  // namespace

struct Trainer::State {
  RunConfig run;
  std::unique_ptr<Task> task;
  PerceiverConfig config;
  PerceiverPreTrainedModel model;
  TaskData data;
  torch::Device device = torch::kCPU;
  device::Precision precision = device::Precision::fp32;
  BuiltOptimizer optimizer;
  ScheduleOptions schedule;
  std::unique_ptr<datasets::DataLoader> train_loader;
  at::Generator generator;  // masking / augmentation draws, saved in checkpoints
  fs::path run_dir;
  int64_t params = 0;  // the model's parameter count
  std::unique_ptr<CheckpointManager> checkpoints;
  fs::path last_checkpoint;  // the last one this run wrote (rank 0)
  std::unique_ptr<MetricsLog> metrics;             // rank 0
  std::unique_ptr<TensorBoardWriter> tensorboard;  // rank 0, with logging.tensorboard
  std::map<std::string, double> last_eval;         // the latest evaluation's metrics, for the model card
  int64_t last_eval_step = -1;
  double seconds_before = 0;  // training time of the sessions before a resume
  std::chrono::steady_clock::time_point session_start = std::chrono::steady_clock::now();
  int64_t step = 0;
  int64_t batch_size = 32, eval_batch_size = 64, grad_accum = 1, max_steps = 0, seed = 0;
  bool length_auto = false;  // trainer.max_steps: auto, and the length may still change
  RunLengthInput length;     // what the last choice of the length was based on
  int64_t eval_every = 0, eval_max_batches = 0, checkpoint_every = 0;
  int num_workers = 1, prefetch = 4;
  datasets::OnBadExample on_bad_example = datasets::OnBadExample::kSkip;
  int64_t skipped_examples = 0;  // unreadable training examples skipped before this process's loader began
  double clip = 0.0;
  bool skip_nonfinite = false;
  int64_t skipped_batches = 0;
  std::string best_metric, best_mode;
  // Several ranks (WORLD_SIZE > 1): the process group and the gradient synchroniser.
  RankEnvironment env;
  std::unique_ptr<Distributed> dist;
  std::unique_ptr<GradientSync> gradient_sync;
  std::unique_ptr<runtime::ScopedLogLevel> quiet;  // ranks other than 0: rank 0 logs for the job
  std::vector<torch::Tensor> running_stats;  // BatchNorm statistics: rank 0's are broadcast every step

  bool is_main() const { return !dist || dist->is_main(); }
  // Runs `fn`; when it throws on one of several ranks, the error names the ranks that were lost.
  template <typename Fn>
  auto guard(Fn&& fn) {
    try {
      return fn();
    } catch (...) {
      if (dist) dist->fail(std::current_exception());
      throw;
    }
  }
  std::string load_task_data();
  void join(const YAML::Node& root);
  void read_loader_options(const YAML::Node& root);
  void broadcast_model();
  void build(bool training);
  std::map<std::string, double> run_eval(const fs::path& out_dir);
  // Rank 0: a row of metrics at the current step, to metrics.jsonl/csv and TensorBoard.
  void log_metrics(const std::map<std::string, double>& row);
  // Rank 0: an evaluation's pictures (*.png) and texts (*.txt) as TensorBoard images and text.
  void log_eval_files(const fs::path& out_dir);
  // Unreadable training examples skipped so far, over every rank (a collective call).
  int64_t skipped_so_far();
  void save_checkpoint(std::optional<double> metric, int64_t skipped);
  ModelCard model_card() const;
  // max_steps: auto: (re)chooses the run's length from the measured step time and what is left of the budget.
  void choose_length(const std::vector<double>& step_seconds, double seconds_left, ProgressReporter& progress);
  void time_eval_and_checkpoint();
  void set_length(int64_t steps);
  void restore(const fs::path& checkpoint);
  std::unique_ptr<datasets::DataLoader> make_loader(std::shared_ptr<const datasets::Dataset> set, bool train) const;
};

void Trainer::State::build(bool training) {
  const auto& root = run.root;
  check_schema(run, run_schema());
  env = rank_environment();
  // Ranks of one machine share its cores.
  int threads = lookup_value<int>(root, "trainer.threads", 0);
  if (threads <= 0 && env.local_world_size > 1)
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency() / env.local_world_size));
  runtime::set_threads(threads);
  seed = lookup_value<int64_t>(root, "trainer.seed", 0);
  torch::manual_seed(static_cast<uint64_t>(seed));
  generator = datasets::make_generator(static_cast<uint64_t>(seed) + 1);
  device = pick_device(lookup_value<std::string>(root, "trainer.device", "auto"), run.source);
  if (env.distributed() && device.is_cuda()) device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  if (env.distributed()) {
    // Join early: a rank that then fails (bad data path, ...) is named by the others.
    join(root);
    // The batch sizes are global: each rank takes its share of every batch.
    const auto global = lookup_value<int64_t>(root, "trainer.batch_size", 32);
    for (const auto& [key, size] : {std::pair{"batch_size", global},
                                    std::pair{"eval_batch_size", lookup_value<int64_t>(root, "trainer.eval_batch_size", global)}})
      if (size % env.world_size != 0)
        throw std::invalid_argument(fmt::format(
            "{}: trainer.{} ({}) is the global batch and must divide by the world size ({} ranks): use a multiple of {}",
            run.source, key, size, env.world_size, env.world_size));
  }
  const auto support = device::bf16_support(device);
  const auto choice = device::choose_precision(lookup_value<std::string>(root, "trainer.precision", "fp32"), support);
  precision = choice.precision;
  spdlog::info("precision {} ({})", device::to_string(precision), choice.reason);
  if (precision == device::Precision::bf16 && !support.native)
    spdlog::warn("bf16 requested, but {}: bf16 is emulated here and expected to be slower than fp32 (trainer.precision: "
                 "auto picks fp32 here)", support.evidence);
  // The effective run file records what auto chose.
  run.root["trainer"]["precision"] = device::to_string(precision);
  device::allow_tf32(lookup_value<bool>(root, "trainer.tf32", false));
  device::set_deterministic(lookup_value<bool>(root, "trainer.deterministic", false));

  const auto from = load_task_data();

  model = build_model(config);
  const auto init_std = SectionReader(root["model"], run.source, "model").pattern_map("init_std", "a float");
  if (!init_std.empty()) {
    if (!from.empty())
      throw ConfigError({run.source + ": 'model.init_std' applies to a freshly initialised model, not to 'model.from'"});
    std::vector<InitStd> rules;
    for (const auto& [pattern, std] : init_std) rules.push_back({pattern, std});
    try {
      spdlog::info("model.init_std: re-drew {} parameter tensors", apply_init_std(*model, rules));
    } catch (const std::invalid_argument& e) {
      throw ConfigError({run.source + ": 'model.init_std': " + e.what()});
    }
  }
  if (!from.empty()) {
    const auto report = io::load_weights(*model, io::load_state_dict(io::weights_file(from)), /*strict=*/false, from);
    spdlog::info("fine-tuning from {}: {}", from, report.summary());
    for (const auto& m : report.mismatched) spdlog::warn("re-initialised (shape differs): {}", m);
  }
  const bool checkpointing = lookup_value<bool>(root, "model.activation_checkpointing", false);
  if (checkpointing) set_activation_checkpointing(*model, true);
  model->to(device);
  if (dist) broadcast_model();
  params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  spdlog::info("model {}: {:.2f}M parameters, device {}, precision {}", config.architecture(), params / 1e6, device.str(),
               device::to_string(precision));

  batch_size = lookup_value<int64_t>(root, "trainer.batch_size", 32);
  eval_batch_size = lookup_value<int64_t>(root, "trainer.eval_batch_size", batch_size);
  grad_accum = lookup_value<int64_t>(root, "trainer.grad_accum", 1);
  eval_max_batches = lookup_value<int64_t>(root, "trainer.eval_max_batches", 0);
  read_loader_options(root);
  if (batch_size < 1 || eval_batch_size < 1 || grad_accum < 1)
    throw std::invalid_argument(run.source + ": trainer.batch_size, eval_batch_size and grad_accum must be >= 1");
  best_metric = lookup_value<std::string>(root, "trainer.best_metric", task->best_metric());
  best_mode = lookup_value<std::string>(root, "trainer.best_mode", task->best_mode());
  run_dir = lookup_value<std::string>(root, "logging.run_dir", "runs/" + task->name());
  if (!training) return;

  auto o = optimizer_options_from_yaml(root["optimizer"], run.source, "optimizer");
  const auto freeze = lookup_value<std::vector<std::string>>(root, "model.freeze", {});
  o.freeze.insert(o.freeze.end(), freeze.begin(), freeze.end());
  optimizer = build_optimizer(model->named_parameters(), o);
  if (!optimizer.frozen.empty()) spdlog::info("frozen parameters: {}", optimizer.frozen.size());
  if (dist) {
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    GradientSyncOptions so;
    so.static_graph = checkpointing;  // reentrant checkpointing replays shared layers: see GradientSyncOptions
    gradient_sync = std::make_unique<GradientSync>(*dist, named, so);
    // As Python DDP's broadcast_buffers: statistics a forward updates follow rank 0's (constant buffers such
    // as position grids need no traffic).
    for (const auto& b : model->named_buffers()) {
      const auto& name = b.key();
      for (const char* suffix : {"running_mean", "running_var", "num_batches_tracked"})
        if (name.size() >= std::strlen(suffix) && name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
          running_stats.push_back(b.value());
    }
  }

  train_loader = make_loader(data.train, true);
  const auto steps_per_epoch = std::max<int64_t>(1, train_loader->batches_per_epoch() / grad_accum);
  schedule = schedule_options_from_yaml(root["schedule"], run.source, "schedule");
  const SectionReader t(root["trainer"], run.source, "trainer");
  length_auto = t.has("max_steps") && t.node("max_steps").IsScalar() && t.node("max_steps").Scalar() == "auto";
  if (length_auto) {
    if (lookup_value<double>(root, "trainer.time_limit_minutes", 0.0) <= 0)
      t.fail("max_steps", "auto fits the run to trainer.time_limit_minutes, which is not set");
    if (const auto problem = auto_length_problem(schedule); !problem.empty()) t.fail("max_steps", problem);
    max_steps = kProvisionalSteps;  // until choose_length; no measured step depends on it
  } else {
    max_steps = t.get<int64_t>("max_steps", 0, "an integer or auto");
    if (max_steps <= 0) max_steps = lookup_value<int64_t>(root, "trainer.epochs", 1) * steps_per_epoch;
  }
  schedule.total_steps = max_steps;
  if (schedule.warmup_steps > max_steps) {
    spdlog::warn("schedule.warmup_steps ({}) exceeds the run's {} steps: using {}", schedule.warmup_steps, max_steps,
                 max_steps / 10);
    schedule.warmup_steps = max_steps / 10;
  }
  validate(schedule);
  eval_every = lookup_value<int64_t>(root, "trainer.eval_every", 0);
  checkpoint_every = lookup_value<int64_t>(root, "trainer.checkpoint_every", 0);
  clip = lookup_value<double>(root, "trainer.clip_grad_norm", 0.0);
  skip_nonfinite = lookup_value<std::string>(root, "trainer.on_nonfinite", "stop") == "skip";

  CheckpointOptions co;
  co.run_dir = run_dir;
  co.keep_last = lookup_value<int>(root, "trainer.keep_last", 2);
  co.best_metric = best_metric;
  co.mode = best_mode;
  if (is_main()) checkpoints = std::make_unique<CheckpointManager>(co);  // rank 0 writes them
}

// The task, the model config (from model.from or inline) and the task's data; returns model.from.
std::string Trainer::State::load_task_data() {
  const auto& root = run.root;
  task = make_task(root["task"], run.source);

  // The model config: an HF/checkpoint directory's, or inline.
  const auto from = lookup_value<std::string>(root, "model.from", "");
  if (!from.empty()) {
    config = PerceiverConfig::from_json_file(fs::path(from) / "config.json");
  } else if (root["model"] && root["model"]["config"]) {
    config = PerceiverConfig::from_yaml(root["model"]["config"], run.source + ": model.config");
  } else {
    throw std::invalid_argument(run.source + ": 'model' needs either 'from: DIR' or an inline 'config' mapping");
  }
  auto arch = lookup_value<std::string>(root, "model.architecture", "");
  if (arch.empty()) arch = !from.empty() && !config.architecture().empty() ? config.architecture() : task->architectures().front();
  const auto supported = task->architectures();
  if (std::find(supported.begin(), supported.end(), arch) == supported.end()) {
    std::string list;
    for (const auto& a : supported) list += (list.empty() ? "" : ", ") + a;
    throw std::invalid_argument(run.source + ": model.architecture '" + arch + "' cannot be trained by task '" +
                                task->name() + "' (supported: " + list + ")");
  }
  config.architectures = {arch};

  data = task->load_data(root["data"], config, from);
  spdlog::info("{}", data.summary);
  return from;
}

void Trainer::State::join(const YAML::Node& root) {
  DistributedOptions o;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(lookup_value<double>(root, "trainer.dist_timeout_s", 1800.0) * 1000));
  if (o.timeout.count() <= 0) throw std::invalid_argument(run.source + ": trainer.dist_timeout_s must be > 0");
  o.fingerprint = fmt::format("{:016x}", datasets::stable_hash(YAML::Dump(root)));
  o.cuda = device.is_cuda();
  dist = std::make_unique<Distributed>(env, o);
  if (!dist->is_main()) quiet = std::make_unique<runtime::ScopedLogLevel>(spdlog::level::warn);
}

// data.workers, data.prefetch and data.on_bad_example (trainer.num_workers and trainer.prefetch are
// their older names). Workers default to the cores the compute threads leave free, at least one.
void Trainer::State::read_loader_options(const YAML::Node& root) {
  const SectionReader d(root["data"], run.source, "data");
  for (const auto& [old_key, key] : {std::pair{"num_workers", "workers"}, std::pair{"prefetch", "prefetch"}})
    if (lookup(root, std::string("trainer.") + old_key).IsDefined())
      spdlog::warn("{}: trainer.{} is now data.{} (the old name still works)", run.source, old_key, key);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int free_cores = cores / static_cast<int>(std::max<int64_t>(env.local_world_size, 1)) - static_cast<int>(at::get_num_threads());
  num_workers = d.get<int>("workers", lookup_value<int>(root, "trainer.num_workers", std::max(1, free_cores)), "an integer");
  prefetch = d.get<int>("prefetch", lookup_value<int>(root, "trainer.prefetch", 4), "an integer");
  if (num_workers < 0) d.fail("workers", "must be 0 (load in the training thread) or a number of threads");
  if (prefetch < 1) d.fail("prefetch", "must be at least 1 batch");
  const auto policy = d.get<std::string>("on_bad_example", "skip", "a string");
  if (policy != "skip" && policy != "stop")
    d.fail("on_bad_example", "must be skip (leave unreadable examples out, count and log them) or stop, found '" + policy + "'");
  on_bad_example = policy == "skip" ? datasets::OnBadExample::kSkip : datasets::OnBadExample::kStop;
}

void Trainer::State::broadcast_model() {
  std::vector<torch::Tensor> state;
  for (const auto& p : model->parameters()) state.push_back(p);
  for (const auto& b : model->buffers()) state.push_back(b);
  dist->broadcast(state);
}

std::unique_ptr<datasets::DataLoader> Trainer::State::make_loader(std::shared_ptr<const datasets::Dataset> set,
                                                                  bool train) const {
  datasets::LoaderOptions lo;
  lo.batch_size = (train ? batch_size : eval_batch_size) / env.world_size;
  lo.shuffle = train;
  // Evaluation's per-example draws (MLM masks) come from another seed than training's.
  lo.seed = static_cast<uint64_t>(seed) + (train ? 0 : 2);
  lo.drop_last = train;
  lo.rank = env.rank;
  lo.world_size = env.world_size;
  lo.pad_shards = false;  // training cuts the order to whole global batches; evaluation sees each example once
  lo.sample_seeds = true;
  lo.num_workers = num_workers;
  lo.prefetch_batches = prefetch;
  lo.on_bad_example = on_bad_example;
  return std::make_unique<datasets::DataLoader>(std::move(set), lo);
}

std::map<std::string, double> Trainer::State::run_eval(const fs::path& out_dir) {
  model->eval();
  torch::NoGradGuard no_grad;
  auto loader = make_loader(data.eval, false);
  MetricSums sums;
  // Evaluation draws (e.g. MLM masking) from its own fixed generator: every evaluation scores the
  // same masks, and training randomness does not depend on when evaluations happen.
  auto eval_generator = datasets::make_generator(static_cast<uint64_t>(seed) + 2);
  task->begin_eval();
  int64_t batches = 0;
  while (auto batch = loader->next()) {
    const device::AutocastGuard autocast(device, precision);
    sums.merge(task->step(*model, to_device(*batch, device), eval_generator, false).metrics);
    if (eval_max_batches > 0 && ++batches >= eval_max_batches) break;
  }
  if (dist) {
    sums = dist->all_reduce(sums);
    for (auto& counts : task->eval_counts())
      if (counts.defined()) dist->all_reduce_sum(counts);
  }
  std::map<std::string, double> out;
  if (is_main()) {
    fs::create_directories(out_dir);
    RunnerOptions runner_options;
    runner_options.device = device;
    runner_options.precision = precision;
    const auto runner = eager_runner(model, run_dir, runner_options);
    for (const auto& [k, v] : task->end_eval(out_dir, *runner)) out["eval/" + k] = v;
  }
  model->train();
  for (const auto& [k, v] : sums.means()) out["eval/" + k] = v;
  const auto skipped = torch::tensor({loader->skipped()}, torch::kInt64);
  out["eval/data_skipped"] = static_cast<double>((dist ? dist->all_reduce_sum(skipped) : skipped).item<int64_t>());
  if (out.count("eval/loss") && task->name() == "mlm") out["eval/perplexity"] = std::exp(out["eval/loss"]);
  return out;
}

void Trainer::State::log_metrics(const std::map<std::string, double>& row) {
  if (metrics) metrics->log(step, row);
  if (tensorboard) tensorboard->add_scalars(step, row);
}

void Trainer::State::log_eval_files(const fs::path& out_dir) {
  if (!tensorboard || !fs::is_directory(out_dir)) return;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(out_dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    const auto ext = file.extension().string();
    if (ext != ".png" && ext != ".txt") continue;
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto tag = "eval/" + file.stem().string();
    if (ext == ".png") tensorboard->add_png(tag, step, bytes);
    else tensorboard->add_text(tag, step, "```\n" + bytes + "\n```");  // Markdown: keep the columns
  }
}

void Trainer::State::set_length(int64_t steps) {
  max_steps = steps;
  schedule.total_steps = steps;
  validate(schedule);
  run.root["trainer"]["max_steps"] = steps;  // the effective run file and checkpoints carry it
}

void Trainer::State::time_eval_and_checkpoint() {
  // In a scratch folder, with the random state put back: the run goes on as one with the chosen
  // max_steps in its run file would.
  const auto scratch = run_dir / "max_steps-auto";
  const auto cpu_state = cpu_rng_state();
  const auto cuda_states = device::cuda_rng_states();
  auto clock = std::chrono::steady_clock::now();
  {
    const runtime::ScopedLogLevel quiet(spdlog::level::warn);  // a timing, not an evaluation to report
    run_eval(scratch / "eval");
  }
  length.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();
  clock = std::chrono::steady_clock::now();
  if (is_main()) {
    io::save_pretrained(*model, scratch / "checkpoint");
    save_optimizer(scratch / "checkpoint" / "optimizer.pt", *optimizer.optimizer);
  }
  length.checkpoint_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();
  set_cpu_rng_state(cpu_state);
  device::set_cuda_rng_states(cuda_states);
  std::error_code ec;
  fs::remove_all(scratch, ec);
}

void Trainer::State::choose_length(const std::vector<double>& step_seconds, double seconds_left,
                                   ProgressReporter& progress) {
  const bool first = length.step_seconds == 0;
  if (first) {
    time_eval_and_checkpoint();
    seconds_left -= length.eval_seconds + length.checkpoint_seconds;
  }
  // The step time: the median of the latest steps (the first choice: all of this process's but the first few).
  const auto from = first ? std::min<size_t>(kAutoLengthWarmup, step_seconds.size() - 1)
                          : step_seconds.size() - std::min<size_t>(kReplanEvery, step_seconds.size());
  std::vector<double> steps(step_seconds.begin() + static_cast<std::ptrdiff_t>(from), step_seconds.end());
  std::nth_element(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(steps.size() / 2), steps.end());
  length.step_seconds = steps[steps.size() / 2];
  length.steps_done = step;
  length.eval_every = eval_every;
  length.checkpoint_every = checkpoint_every;
  length.seconds = 0.97 * seconds_left;  // 3 % for the variation of step times
  auto total = keeping_past_steps(schedule, step, fitting_max_steps(length));
  if (dist) total = std::stoll(dist->broadcast_string(std::to_string(total)));  // rank 0's choice for all
  if (total == max_steps) return;
  const auto previous = max_steps;
  set_length(total);
  // Final once a later choice could change the learning rate of steps already taken.
  length_auto = length_still_free(schedule, step + kReplanEvery, total);
  if (is_main()) write_yaml(run.root, run_dir / "config.yaml");
  progress.set_total_steps(total);
  if (first)
    spdlog::info("max_steps: auto: {} steps fit the {:.1f} minutes left ({:.1f} ms a step so far; {} evaluation(s) of "
                 "{:.1f} s and {} checkpoint(s) of {:.2f} s planned); the length depends on the machine, and is "
                 "chosen again every {} steps while the schedule allows",
                 total, seconds_left / 60, 1e3 * length.step_seconds,
                 eval_every > 0 ? total / eval_every - step / eval_every + 1 : 1, length.eval_seconds,
                 checkpoint_every > 0 ? total / checkpoint_every - step / checkpoint_every + 1 : 1,
                 length.checkpoint_seconds, kReplanEvery);
  else  // the step time wanders by several percent: only the final choice is news
    spdlog::log(length_auto ? spdlog::level::debug : spdlog::level::info,
                "max_steps: auto: {} steps (was {}; {:.1f} ms a step over the last {}, {:.1f} minutes left){}", total,
                previous, 1e3 * length.step_seconds, steps.size(), seconds_left / 60, length_auto ? "" : ", final");
}

int64_t Trainer::State::skipped_so_far() {
  const auto here = torch::tensor({train_loader->skipped()}, torch::kInt64);
  return skipped_examples + (dist ? dist->all_reduce_sum(here) : here).item<int64_t>();
}

void Trainer::State::save_checkpoint(std::optional<double> metric, int64_t skipped) {
  const auto dir = checkpoints->save(
      step,
      [&](const fs::path& tmp) {
        io::save_pretrained(*model, tmp);
        save_optimizer(tmp / "optimizer.pt", *optimizer.optimizer);
        auto rng = device::cuda_rng_states();  // dropout on a GPU draws from its generator
        rng["global"] = cpu_rng_state();
        rng["task"] = generator.get_state();
        save_tensors(tmp / "rng.pt", rng);
        save_json(tmp / "trainer_state.json", {{"step", step},
                                               {"loader", train_loader->position().to_json()},
                                               {"skipped_batches", skipped_batches},
                                               {"skipped_examples", skipped},
                                               {"max_steps", max_steps},
                                               {"seed", seed},
                                               {"eval", last_eval},
                                               {"eval_step", last_eval_step},
                                               {"train_seconds", model_card().train_seconds}});
        write_yaml(run.root, tmp / "run.yaml");
        datasets::write_file_atomically(tmp / "README.md", render_model_card(model_card()));
        task->write_inference_files(tmp, run.root, config);
      },
      metric);
  spdlog::info("checkpoint written: {}", dir.string());
  last_checkpoint = dir;
}

ModelCard Trainer::State::model_card() const {
  ModelCard card;
  card.name = run_dir.filename().string();
  card.architecture = config.architecture();
  card.task = task->name();
  // A data source by its file's name, or by its type for the embedded sets (kjv, fashion_mnist, ...).
  const auto source_name = [](const YAML::Node& source) {
    if (source && source.IsMap() && source["path"] && source["path"].IsScalar())
      return fs::path(source["path"].as<std::string>()).filename().string();
    return source && source.IsMap() && source["type"] ? source["type"].as<std::string>() : std::string("(unnamed)");
  };
  const auto& data = run.root["data"];
  if (data && data["train"]) card.datasets = {source_name(data["train"])};
  if (data && data["eval"]) {
    card.eval_dataset = source_name(data["eval"]);
    card.eval_split = data["eval"].IsMap() && data["eval"]["split"] ? data["eval"]["split"].as<std::string>() : "eval";
    if (card.eval_dataset != card.datasets.front()) card.datasets.push_back(card.eval_dataset);
  }
  for (const auto& [name, value] : last_eval) card.eval[name.rfind("eval/", 0) == 0 ? name.substr(5) : name] = value;
  card.eval_step = last_eval_step;
  card.steps = step;
  card.train_seconds =
      seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - session_start).count();
  if (device.is_cuda()) {
    const auto gpus = device::accelerator_report().gpus;
    const auto index = device.has_index() ? device.index() : 0;
    card.hardware = index < static_cast<int>(gpus.size()) ? gpus[index].name : "a GPU";
  } else {
    const auto model_name = runtime::cpu_model_name();
    card.hardware = fmt::format("{} ({} threads)", model_name.empty() ? "a CPU" : model_name, torch::get_num_threads());
  }
  if (dist) card.hardware += fmt::format(", x{} data-parallel ranks", dist->world_size());
  card.precision = device::to_string(precision);
  card.from = lookup_value<std::string>(run.root, "model.from", "");
  card.run_file = YAML::Dump(run.root);
  return card;
}

void Trainer::State::restore(const fs::path& checkpoint) {
  const auto state = load_json(checkpoint / "trainer_state.json");
  io::load_weights(*model, io::load_state_dict(checkpoint / "model.safetensors"), /*strict=*/true, checkpoint.string());
  load_optimizer(checkpoint / "optimizer.pt", *optimizer.optimizer);
  const auto rng = load_tensors(checkpoint / "rng.pt");
  set_cpu_rng_state(rng.at("global"));
  generator.set_state(rng.at("task"));
  std::map<std::string, torch::Tensor> cuda_states;
  for (const auto& [name, state] : rng)
    if (name.rfind("cuda", 0) == 0) cuda_states[name] = state;
  for (const auto& name : device::set_cuda_rng_states(cuda_states))
    spdlog::warn("{}: this machine has no {}, so its random state is not restored: dropout draws will differ from "
                 "the original run's", checkpoint.string(), name);
  step = state.at("step").get<int64_t>();
  skipped_batches = state.value("skipped_batches", int64_t{0});
  skipped_examples = state.value("skipped_examples", int64_t{0});
  last_eval.clear();
  const auto evaluation = state.value("eval", nlohmann::json::object());
  for (const auto& [name, value] : evaluation.items())
    last_eval[name] = value.is_number() ? value.get<double>() : NAN;  // NaN was written as null
  last_eval_step = state.value("eval_step", int64_t{-1});
  seconds_before = state.value("train_seconds", 0.0);
  // A run whose length max_steps: auto chose continues with that length.
  if (length_auto && state.contains("max_steps") && state.at("max_steps").get<int64_t>() < kProvisionalSteps) {
    set_length(state.at("max_steps").get<int64_t>());
    length_auto = false;
    spdlog::info("max_steps: auto: {} steps, as chosen before the checkpoint", max_steps);
  }
  train_loader->set_position(datasets::LoaderPosition::from_json(state.at("loader")));
  spdlog::info("resumed from {} at step {}", checkpoint.string(), step);
}

Trainer::Trainer(RunConfig run) : state_(std::make_unique<State>()) { state_->run = std::move(run); }
Trainer::~Trainer() = default;

const fs::path& Trainer::run_dir() const { return state_->run_dir; }

TrainResult Trainer::train(const std::string& resume) {
  auto& s = *state_;
  return s.guard([&] { return run_training(resume); });
}

TrainResult Trainer::run_training(const std::string& resume_arg) {
  auto& s = *state_;
  s.build(true);
  // A fresh run never shares its folder with an earlier run's checkpoints: keep_last would delete this
  // run's own in their favour, and --resume auto would later pick the earlier run's.
  if (resume_arg.empty() && s.env.restart_count == 0 && s.is_main())
    if (const auto earlier = find_latest_checkpoint(s.run_dir))
      throw std::runtime_error(s.run_dir.string() + " already holds checkpoints of an earlier run (the latest: " +
                               earlier->filename().string() + "): continue it with --resume auto, or train in another "
                               "logging.run_dir (or delete that folder)");
  if (s.is_main()) {
    fs::create_directories(s.run_dir);
    write_yaml(s.run.root, s.run_dir / "config.yaml");  // the effective, fully resolved run file
  }
  // An elastic restart (torchrun --max_restarts) continues from the latest checkpoint by itself.
  std::string resume = resume_arg;
  if (resume.empty() && s.env.restart_count > 0) {
    spdlog::info("elastic restart {}: resuming from the latest checkpoint", s.env.restart_count);
    resume = "auto";
  }
  if (!resume.empty()) {
    std::optional<fs::path> ckpt;
    if (resume == "auto") {
      // Rank 0 chooses, so that every rank resumes from the same checkpoint.
      if (s.is_main()) ckpt = find_latest_checkpoint(s.run_dir);
      if (s.dist) {
        const auto chosen = s.dist->broadcast_string(ckpt ? ckpt->string() : "");
        ckpt = chosen.empty() ? std::nullopt : std::optional<fs::path>(chosen);
      }
      if (!ckpt) spdlog::info("--resume auto: no checkpoint in {}, starting fresh", s.run_dir.string());
    } else {
      ckpt = fs::path(resume);
    }
    if (ckpt && !fs::exists(*ckpt / "trainer_state.json"))
      throw std::runtime_error(ckpt->string() + ": not a training checkpoint (no trainer_state.json)" +
                               (s.dist ? " on this machine (ranks on several machines resume from a shared filesystem)" : ""));
    if (ckpt) {
      s.restore(*ckpt);
      if (s.dist) s.broadcast_model();
    }
  }
  if (s.is_main()) {
    s.metrics = std::make_unique<MetricsLog>(s.run_dir, s.step);
    if (lookup_value<bool>(s.run.root, "logging.tensorboard", true)) {
      // A resumed run drops what earlier event files hold past its step; a fresh one starts the folder anew.
      s.tensorboard = std::make_unique<TensorBoardWriter>(s.run_dir / "tensorboard", s.step);
      if (s.step == 0) s.tensorboard->add_text("run_file", 0, "```yaml\n" + YAML::Dump(s.run.root) + "\n```");
    }
  }

  const auto& root = s.run.root;
  ProgressOptions po;
  po.total_steps = s.length_auto ? 0 : s.max_steps;
  po.log_every_steps = lookup_value<int64_t>(root, "logging.log_every", 50);
  po.log_every_seconds = lookup_value<double>(root, "logging.log_every_seconds", 30.0);
  if (!s.is_main()) {
    po.tty = false;
    po.logger = std::make_shared<spdlog::logger>("quiet-rank");  // no sinks
  }
  ProgressReporter progress(po);
  const double time_limit = lookup_value<double>(root, "trainer.time_limit_minutes", 0.0) * 60.0;
  const auto start = std::chrono::steady_clock::now();
  s.session_start = start;
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  TrainResult result;
  result.run_dir = s.run_dir;
  result.num_parameters = s.params;
  s.model->train();
  MetricSums window;
  const auto multipliers = s.optimizer.lr_multipliers();
  const int64_t log_every = po.log_every_steps;
  while (s.step < s.max_steps) {
    const auto step_start = std::chrono::steady_clock::now();
    const double lr = learning_rate_at(s.schedule, s.optimizer.base_lr, s.step);
    set_learning_rate(*s.optimizer.optimizer, lr, multipliers);
    clear_gradients(*s.optimizer.optimizer);
    if (s.dist && !s.running_stats.empty()) s.dist->broadcast(s.running_stats);
    double step_loss = 0;
    int64_t samples = 0;
    bool finite = true;
    for (int64_t micro = 0; micro < s.grad_accum; ++micro) {
      auto batch = s.train_loader->next();
      if (!batch) batch = s.train_loader->next();  // epoch boundary
      if (!batch) throw std::runtime_error("the training set yields no batches (batch_size larger than the data?)");
      StepOutput out;
      {
        const device::AutocastGuard autocast(s.device, s.precision);
        out = s.task->step(*s.model, to_device(*batch, s.device), s.generator, true);
      }
      double loss_value = out.loss.item<double>();
      int64_t micro_samples = out.samples;
      auto loss = out.loss;
      if (s.dist) {
        // The global batch's loss is the mean over every rank's terms: weigh this rank's mean by its share
        // of them (the Reducer then averages over ranks). Every rank sees the same global loss, so all of
        // them agree on a non-finite one.
        const double weight = loss_weight(out);
        auto global = s.dist->all_reduce_sum(torch::tensor(
            {weight > 0 ? loss_value * weight : 0.0, weight, static_cast<double>(out.samples)}, torch::kDouble));
        const double total = global[1].item<double>();
        loss_value = global[0].item<double>() / total;
        micro_samples = global[2].item<int64_t>();
        loss = (weight > 0 ? out.loss : out.loss.nan_to_num(0.0)) * (weight * s.dist->world_size() / total);
      }
      if (!std::isfinite(loss_value)) {
        finite = false;
        break;
      }
      const auto scaled = loss / static_cast<double>(s.grad_accum);
      if (s.gradient_sync) s.gradient_sync->backward(scaled, micro == s.grad_accum - 1);  // all-reduce on the last
      else scaled.backward();
      step_loss += loss_value / s.grad_accum;
      samples += micro_samples;
      window.merge(out.metrics);
    }
    if (!finite) {
      if (!s.skip_nonfinite)
        throw std::runtime_error(fmt::format(
            "non-finite loss at step {}; stopping without writing a checkpoint for it (set trainer.on_nonfinite: skip "
            "to skip such batches, or lower optimizer.lr)",
            s.step + 1));
      ++s.skipped_batches;
      spdlog::warn("non-finite loss at step {}: batch skipped ({} so far)", s.step + 1, s.skipped_batches);
      clear_gradients(*s.optimizer.optimizer);
      continue;
    }
    if (s.clip > 0) torch::nn::utils::clip_grad_norm_(s.model->parameters(), s.clip);
    s.optimizer.optimizer->step();
    ++s.step;
    progress.update(s.step, step_loss, lr, samples);
    result.step_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count());
    if (s.length_auto && s.step >= kAutoLengthSteps && (s.length.step_seconds == 0 || s.step % kReplanEvery == 0))
      s.choose_length(result.step_seconds, time_limit - elapsed(), progress);

    if (s.step % log_every == 0 || s.step == s.max_steps) {
      if (s.dist) window = s.dist->all_reduce(window);
      std::map<std::string, double> row;
      for (const auto& [k, v] : window.means()) row["train/" + k] = v;
      row["lr"] = lr;
      row["data_wait_fraction"] = s.train_loader->wait_fraction();
      row["data/skipped"] = static_cast<double>(s.skipped_so_far());
      s.log_metrics(row);
      window = MetricSums();
    }
    bool out_of_time = time_limit > 0 && elapsed() >= time_limit;
    // Rank 0's clock decides for everyone: ranks that stopped at different steps would wait on each other.
    if (s.dist && time_limit > 0)
      out_of_time = s.dist->broadcast_string(out_of_time ? "1" : "0") == "1";
    const bool last = s.step == s.max_steps || out_of_time;
    std::optional<double> metric;
    if ((s.eval_every > 0 && s.step % s.eval_every == 0) || last) {
      const auto eval_start = std::chrono::steady_clock::now();
      const auto eval_dir = s.run_dir / "eval" / fmt::format("step-{:08d}", s.step);
      const auto eval = s.run_eval(eval_dir);
      s.length.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
      s.log_metrics(eval);
      s.log_eval_files(eval_dir);
      s.last_eval = eval;
      s.last_eval_step = s.step;
      progress.finish();
      spdlog::info("eval at step {}: {}", s.step, format_metrics(eval));
      if (eval.count(s.best_metric)) metric = eval.at(s.best_metric);
      result.final_metrics = eval;
    }
    if ((s.checkpoint_every > 0 && s.step % s.checkpoint_every == 0) || last) {
      const auto skipped = s.skipped_so_far();  // every rank takes part
      if (s.checkpoints) s.save_checkpoint(metric, skipped);
    }
    if (out_of_time) {
      spdlog::info("time limit reached after {} steps", s.step);
      break;
    }
  }
  progress.finish();
  if (s.dist) s.dist->barrier();  // every rank returns once rank 0's last checkpoint is written
  result.steps = s.step;
  result.seconds = elapsed();
  // This run's last checkpoint: the run directory may hold later-numbered ones of an earlier run.
  result.last_checkpoint = s.last_checkpoint;
  spdlog::info("training done: {} steps in {:.1f} s; data wait {:.1f}%; run directory {}", s.step, result.seconds,
               100.0 * s.train_loader->wait_fraction(), s.run_dir.string());
  if (s.gradient_sync)
    if (const auto st = s.gradient_sync->stats(); st.synced_backwards > 0)
      spdlog::info("gradient all-reduce over {} ranks: {} synchronised backwards of {:.1f} ms, {:.1f} ms of it "
                   "communication not hidden behind backward",
                   s.dist->world_size(), st.synced_backwards, 1e3 * st.backward_seconds / st.synced_backwards,
                   1e3 * st.exposed_seconds / st.synced_backwards);
  return result;
}

std::map<std::string, double> Trainer::evaluate(const fs::path& checkpoint) {
  auto& s = *state_;
  return s.guard([&] {
    s.build(false);
    io::load_weights(*s.model, io::load_state_dict(io::weights_file(checkpoint)), /*strict=*/true, checkpoint.string());
    s.model->to(s.device);
    return s.run_eval(s.run_dir / "evaluate");
  });
}

std::string Trainer::prepare_data() {
  auto& s = *state_;
  check_schema(s.run, run_schema());
  s.load_task_data();
  return s.data.summary;
}

bool Trainer::is_main_process() const { return state_->is_main(); }

}  // namespace perceiver::trainers
