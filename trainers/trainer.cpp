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
#include "perceiver/models/architectures.h"
#include "perceiver/runtime/device.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/io/torch_bin.h"
#include "perceiver/runtime/runtime.h"
#include "trainers/checkpoint_io.h"
#include "trainers/initialization.h"
#include "trainers/metrics_log.h"
#include "trainers/model_card.h"
#include "trainers/optim.h"
#include "trainers/progress.h"
#include "trainers/ranks.h"
#include "trainers/run_length.h"
#include "trainers/run_options.h"
#include "trainers/schedule.h"
#include "trainers/tasks.h"
#include "trainers/tensorboard.h"

namespace perceiver::trainers {
namespace fs = std::filesystem;

const Schema& run_schema() {
  static const Schema schema = schema_of(trainer_sections());
  return schema;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

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

// trainer.num_workers and trainer.prefetch are the older names of data.workers and data.prefetch.
void migrate_old_names(RunConfig& run) {
  for (const auto& [old_key, key] : {std::pair{"num_workers", "workers"}, std::pair{"prefetch", "prefetch"}}) {
    const auto old_value = lookup(run.root, std::string("trainer.") + old_key);
    if (!old_value.IsDefined()) continue;
    spdlog::warn("{}: trainer.{} is now data.{} (the old name still works)", run.source, old_key, key);
    if (!lookup(run.root, std::string("data.") + key).IsDefined()) run.root["data"][key] = YAML::Clone(old_value);
    run.root["trainer"].remove(old_key);
  }
}

// The training loop's own state: progress, clock and time limit, the metrics since the last log line.
struct Loop {
  ProgressReporter progress;
  Clock::time_point start = Clock::now();
  double time_limit = 0;  // seconds; 0 = none
  int64_t log_every = 50;
  MetricSums window;  // training metrics since the last log line
  std::vector<double> multipliers;
  TrainResult result;

  explicit Loop(const ProgressOptions& options) : progress(options) {}
  double elapsed() const { return seconds_since(start); }
};

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

  // Settings, from the run file.
  int64_t batch_size = 32, eval_batch_size = 64, grad_accum = 1, max_steps = 0, seed = 0;
  int64_t eval_every = 0, eval_max_batches = 0, checkpoint_every = 0;
  int num_workers = 1, prefetch = 4;
  datasets::OnBadExample on_bad_example = datasets::OnBadExample::kSkip;
  double clip = 0.0;
  bool skip_nonfinite = false;
  bool activation_checkpointing = false;
  std::string best_metric, best_mode;
  bool length_auto = false;  // trainer.max_steps: auto, and the length may still change
  RunLengthInput length;     // what the last choice of the length was based on

  // Data parallelism: the ranks (one process alone), asked by the loop.
  RankEnvironment env;
  Ranks ranks;
  std::unique_ptr<runtime::ScopedLogLevel> quiet;  // ranks other than 0: rank 0 logs for the job
  std::vector<torch::Tensor> running_stats;        // BatchNorm statistics: rank 0's are broadcast every step

  // Where the run is.
  int64_t step = 0;
  int64_t skipped_examples = 0;  // unreadable training examples skipped before this process's loader began
  int64_t skipped_batches = 0;
  std::map<std::string, double> last_eval;  // the latest evaluation's metrics, for the model card
  int64_t last_eval_step = -1;
  double seconds_before = 0;  // training time of the sessions before a resume
  Clock::time_point session_start = Clock::now();

  // What rank 0 writes.
  std::unique_ptr<CheckpointManager> checkpoints;
  fs::path last_checkpoint;  // the last one this run wrote
  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<TensorBoardWriter> tensorboard;  // with logging.tensorboard

  bool is_main() const { return ranks.is_main(); }
  // Runs `fn`; when it throws on one of several ranks, the error names the ranks that were lost.
  template <typename Fn>
  auto guard(Fn&& fn) {
    try {
      return fn();
    } catch (...) {
      ranks.fail(std::current_exception());
    }
  }

  // Building the run, in order.
  // checkpoint: evaluate's, whose config.json (where it has one) defines the model.
  void build(bool training, const fs::path& checkpoint = {});
  void set_up_process();
  void choose_precision();
  std::string load_task_data(const fs::path& checkpoint = {});
  void build_model(const std::string& from, const fs::path& checkpoint);
  void read_settings();
  void build_optimizer();
  void build_length_and_schedule();
  void join();
  void broadcast_model();
  std::unique_ptr<datasets::DataLoader> make_loader(std::shared_ptr<const datasets::Dataset> set, bool train) const;

  // Starting: a fresh run or a resume.
  void refuse_earlier_run(const std::string& resume_arg) const;
  void resume(const std::string& resume_arg);
  void restore(const fs::path& checkpoint);
  void open_logs();

  // One step of the loop and what may follow it.
  bool train_step(Loop& loop, double lr);
  void maybe_choose_length(Loop& loop);
  void maybe_log(Loop& loop, double lr);
  std::optional<double> maybe_evaluate(Loop& loop, bool last);
  void maybe_checkpoint(std::optional<double> metric, bool last);
  bool out_of_time(const Loop& loop);
  ProgressOptions progress_options() const;
  TrainResult finish(Loop& loop);

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
};

// ---- Building the run ----

void Trainer::State::build(bool training, const fs::path& checkpoint) {
  check_schema(run, run_schema());
  migrate_old_names(run);
  fill_defaults(run.root);  // the effective config shows every setting
  set_up_process();
  choose_precision();
  const auto from = load_task_data(checkpoint);
  build_model(from, checkpoint);
  read_settings();
  if (!training) return;
  build_optimizer();
  train_loader = make_loader(data.train, true);
  build_length_and_schedule();
  if (is_main()) {  // rank 0 writes the checkpoints
    CheckpointOptions co;
    co.run_dir = run_dir;
    co.keep_last = option<int>(run.root, "trainer.keep_last");
    co.best_metric = best_metric;
    co.mode = best_mode;
    checkpoints = std::make_unique<CheckpointManager>(co);
  }
}

// Ranks, threads, seeds and the device.
void Trainer::State::set_up_process() {
  const auto& root = run.root;
  env = rank_environment();
  // Ranks of one machine share its cores.
  int threads = option<int>(root, "trainer.threads");
  if (threads <= 0 && env.local_world_size > 1)
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency() / env.local_world_size));
  runtime::set_threads(threads);
  seed = option<int64_t>(root, "trainer.seed");
  torch::manual_seed(static_cast<uint64_t>(seed));
  generator = datasets::make_generator(static_cast<uint64_t>(seed) + 1);
  device = pick_device(option<std::string>(root, "trainer.device"), run.source);
  if (!env.distributed()) return;
  if (device.is_cuda()) device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  // Join early: a rank that then fails (bad data path, ...) is named by the others.
  join();
  // The batch sizes are global: each rank takes its share of every batch.
  const auto global = option<int64_t>(root, "trainer.batch_size");
  for (const auto& [key, size] :
       {std::pair{"batch_size", global}, std::pair{"eval_batch_size", option_or<int64_t>(root, "trainer.eval_batch_size", global)}})
    if (size % env.world_size != 0)
      throw std::invalid_argument(fmt::format(
          "{}: trainer.{} ({}) is the global batch and must divide by the world size ({} ranks): use a multiple of {}",
          run.source, key, size, env.world_size, env.world_size));
}

void Trainer::State::choose_precision() {
  const auto support = device::bf16_support(device);
  const auto choice = device::choose_precision(option<std::string>(run.root, "trainer.precision"), support);
  precision = choice.precision;
  spdlog::info("precision {} ({})", device::to_string(precision), choice.reason);
  if (precision == device::Precision::bf16 && !support.native)
    spdlog::warn("bf16 requested, but {}: bf16 is emulated here and expected to be slower than fp32 (trainer.precision: "
                 "auto picks fp32 here)", support.evidence);
  // The effective run file records what auto chose.
  run.root["trainer"]["precision"] = device::to_string(precision);
  device::allow_tf32(option<bool>(run.root, "trainer.tf32"));
  device::set_deterministic(option<bool>(run.root, "trainer.deterministic"));
}

// The task, the model config and the task's data; returns model.from. The config is the evaluated checkpoint's
// config.json where it has one (so a run trained with model.config overrides evaluates without them), else
// model.from's, else the inline one.
std::string Trainer::State::load_task_data(const fs::path& checkpoint) {
  const auto& root = run.root;
  task = make_task(root["task"], run.source);

  // The model config: an HF/checkpoint directory's, or inline.
  const auto from = option_or<std::string>(root, "model.from", "");
  fs::path config_file;  // empty: the inline config
  if (!checkpoint.empty() && fs::is_regular_file(checkpoint / "config.json"))
    config_file = checkpoint / "config.json";
  else if (!from.empty())
    config_file = fs::path(from) / "config.json";
  if (!config_file.empty()) {
    config = PerceiverConfig::from_json_file(config_file);
    if (root["model"] && root["model"]["config"]) {  // expected when evaluating a checkpoint, a surprise when fine-tuning
      const auto note = fmt::format("{}: model.config is not used: {} defines the model", run.source, config_file.string());
      checkpoint.empty() ? spdlog::warn(note) : spdlog::info(note);
    }
  } else if (root["model"] && root["model"]["config"]) {
    config = PerceiverConfig::from_yaml(root["model"]["config"], run.source + ": model.config");
  } else {
    throw std::invalid_argument(run.source + ": 'model' needs either 'from: DIR' or an inline 'config' mapping");
  }
  auto arch = option_or<std::string>(root, "model.architecture", "");
  if (arch.empty()) arch = !config_file.empty() && !config.architecture().empty() ? config.architecture() : task->architectures().front();
  const auto supported = task->architectures();
  if (std::find(supported.begin(), supported.end(), arch) == supported.end())
    throw std::invalid_argument(run.source + ": model.architecture '" + arch + "' cannot be trained by task '" +
                                task->name() + "' (supported: " + trainers::join(supported, ", ") + ")");
  config.architectures = {arch};

  data = task->load_data(root["data"], config, from);
  spdlog::info("{}", data.summary);
  return from;
}

// A fresh model (with model.init_std), then the evaluated checkpoint's weights (all of them) or model.from's
// (where their shapes match).
void Trainer::State::build_model(const std::string& from, const fs::path& checkpoint) {
  model = perceiver::build_model(config);
  const auto init_std = SectionReader(run.root["model"], run.source, "model").pattern_map("init_std", "a float");
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
  if (!checkpoint.empty()) {
    io::load_weights(*model, io::load_state_dict(io::weights_file(checkpoint)), /*strict=*/true, checkpoint.string());
  } else if (!from.empty()) {
    const auto report = io::load_weights(*model, io::load_state_dict(io::weights_file(from)), /*strict=*/false, from);
    spdlog::info("fine-tuning from {}: {}", from, report.summary());
    for (const auto& m : report.mismatched) spdlog::warn("re-initialised (shape differs): {}", m);
  }
  activation_checkpointing = option<bool>(run.root, "model.activation_checkpointing");
  if (activation_checkpointing) set_activation_checkpointing(*model, true);
  model->to(device);
  broadcast_model();
  params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  spdlog::info("model {}: {:.2f}M parameters, device {}, precision {}", config.architecture(), params / 1e6, device.str(),
               device::to_string(precision));
}

// Batch sizes, evaluation, the loader, the best metric and the run folder.
void Trainer::State::read_settings() {
  const auto& root = run.root;
  batch_size = option<int64_t>(root, "trainer.batch_size");
  eval_batch_size = option_or<int64_t>(root, "trainer.eval_batch_size", batch_size);
  grad_accum = option<int64_t>(root, "trainer.grad_accum");
  eval_max_batches = option<int64_t>(root, "trainer.eval_max_batches");
  if (batch_size < 1 || eval_batch_size < 1 || grad_accum < 1)
    throw std::invalid_argument(run.source + ": trainer.batch_size, eval_batch_size and grad_accum must be >= 1");
  // The loader: workers default to the cores the compute threads leave free, at least one.
  const SectionReader d(root["data"], run.source, "data");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int free_cores = cores / static_cast<int>(std::max<int64_t>(env.local_world_size, 1)) - static_cast<int>(at::get_num_threads());
  num_workers = d.get<int>("workers", std::max(1, free_cores), "an integer");
  prefetch = d.get<int>("prefetch", declared_default<int>("data.prefetch"), "an integer");
  if (num_workers < 0) d.fail("workers", "must be 0 (load in the training thread) or a number of threads");
  if (prefetch < 1) d.fail("prefetch", "must be at least 1 batch");
  const auto policy = d.get<std::string>("on_bad_example", declared_default<std::string>("data.on_bad_example"), "a string");
  if (policy != "skip" && policy != "stop")
    d.fail("on_bad_example", "must be skip (leave unreadable examples out, count and log them) or stop, found '" + policy + "'");
  on_bad_example = policy == "skip" ? datasets::OnBadExample::kSkip : datasets::OnBadExample::kStop;
  best_metric = option_or<std::string>(root, "trainer.best_metric", task->best_metric());
  best_mode = option_or<std::string>(root, "trainer.best_mode", task->best_mode());
  run_dir = option_or<std::string>(root, "logging.run_dir", "runs/" + task->name());
  run.root["logging"]["run_dir"] = run_dir.string();  // the effective run file names the folder
}

void Trainer::State::build_optimizer() {
  auto o = optimizer_options_from_yaml(run.root["optimizer"], run.source, "optimizer");
  const auto freeze = option<std::vector<std::string>>(run.root, "model.freeze");
  o.freeze.insert(o.freeze.end(), freeze.begin(), freeze.end());
  optimizer = trainers::build_optimizer(model->named_parameters(), o);
  if (!optimizer.frozen.empty()) spdlog::info("frozen parameters: {}", optimizer.frozen.size());
  if (!ranks.several()) return;
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  // Reentrant checkpointing replays shared layers: see GradientSyncOptions.
  ranks.sync_gradients(named, /*static_graph=*/activation_checkpointing);
  // As Python DDP's broadcast_buffers: statistics a forward updates follow rank 0's (constant buffers such
  // as position grids need no traffic).
  for (const auto& b : model->named_buffers()) {
    const auto& name = b.key();
    for (const char* suffix : {"running_mean", "running_var", "num_batches_tracked"})
      if (name.size() >= std::strlen(suffix) && name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        running_stats.push_back(b.value());
  }
}

// max_steps (a number, epochs of the training data, or auto), the schedule over it, and the intervals.
void Trainer::State::build_length_and_schedule() {
  const auto& root = run.root;
  const auto steps_per_epoch = std::max<int64_t>(1, train_loader->batches_per_epoch() / grad_accum);
  schedule = schedule_options_from_yaml(root["schedule"], run.source, "schedule");
  const SectionReader t(root["trainer"], run.source, "trainer");
  length_auto = t.has("max_steps") && t.node("max_steps").IsScalar() && t.node("max_steps").Scalar() == "auto";
  if (length_auto) {
    if (option<double>(root, "trainer.time_limit_minutes") <= 0)
      t.fail("max_steps", "auto fits the run to trainer.time_limit_minutes, which is not set");
    if (const auto problem = auto_length_problem(schedule); !problem.empty()) t.fail("max_steps", problem);
    max_steps = kProvisionalSteps;  // until choose_length; no measured step depends on it
  } else {
    max_steps = t.get<int64_t>("max_steps", 0, "an integer or auto");
    if (max_steps <= 0) max_steps = option<int64_t>(root, "trainer.epochs") * steps_per_epoch;
  }
  schedule.total_steps = max_steps;
  if (schedule.warmup_steps > max_steps) {
    spdlog::warn("schedule.warmup_steps ({}) exceeds the run's {} steps: using {}", schedule.warmup_steps, max_steps,
                 max_steps / 10);
    schedule.warmup_steps = max_steps / 10;
  }
  validate(schedule);
  eval_every = option<int64_t>(root, "trainer.eval_every");
  checkpoint_every = option<int64_t>(root, "trainer.checkpoint_every");
  clip = option<double>(root, "trainer.clip_grad_norm");
  skip_nonfinite = option<std::string>(root, "trainer.on_nonfinite") == "skip";
}

void Trainer::State::join() {
  DistributedOptions o;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(option<double>(run.root, "trainer.dist_timeout_s") * 1000));
  if (o.timeout.count() <= 0) throw std::invalid_argument(run.source + ": trainer.dist_timeout_s must be > 0");
  o.fingerprint = fmt::format("{:016x}", datasets::stable_hash(YAML::Dump(run.root)));
  o.cuda = device.is_cuda();
  ranks = Ranks(std::make_unique<Distributed>(env, o));
  if (!ranks.is_main()) quiet = std::make_unique<runtime::ScopedLogLevel>(spdlog::level::warn);
}

void Trainer::State::broadcast_model() {
  if (!ranks.several()) return;
  std::vector<torch::Tensor> state;
  for (const auto& p : model->parameters()) state.push_back(p);
  for (const auto& b : model->buffers()) state.push_back(b);
  ranks.broadcast(state);
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

// ---- Starting ----

// A fresh run never shares its folder with an earlier run's checkpoints: keep_last would delete this
// run's own in their favour, and --resume auto would later pick the earlier run's.
void Trainer::State::refuse_earlier_run(const std::string& resume_arg) const {
  if (!resume_arg.empty() || env.restart_count > 0 || !is_main()) return;
  if (const auto earlier = find_latest_checkpoint(run_dir))
    throw std::runtime_error(run_dir.string() + " already holds checkpoints of an earlier run (the latest: " +
                             earlier->filename().string() + "): continue it with --resume auto, or train in another "
                             "logging.run_dir (or delete that folder)");
}

// --resume auto|DIR; an elastic restart (torchrun --max_restarts) continues from the latest checkpoint by itself.
void Trainer::State::resume(const std::string& resume_arg) {
  std::string resume = resume_arg;
  if (resume.empty() && env.restart_count > 0) {
    spdlog::info("elastic restart {}: resuming from the latest checkpoint", env.restart_count);
    resume = "auto";
  }
  if (resume.empty()) return;
  std::optional<fs::path> checkpoint;
  if (resume == "auto") {
    // Rank 0 chooses, so that every rank resumes from the same checkpoint.
    std::string latest;
    if (is_main())
      if (const auto found = find_latest_checkpoint(run_dir)) latest = found->string();
    latest = ranks.main_choice(latest);
    if (latest.empty()) {
      spdlog::info("--resume auto: no checkpoint in {}, starting fresh", run_dir.string());
      return;
    }
    checkpoint = fs::path(latest);
  } else {
    checkpoint = fs::path(resume);
  }
  if (!fs::exists(*checkpoint / "trainer_state.json"))
    throw std::runtime_error(checkpoint->string() + ": not a training checkpoint (no trainer_state.json)" +
                             (ranks.several() ? " on this machine (ranks on several machines resume from a shared filesystem)" : ""));
  restore(*checkpoint);
  broadcast_model();
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

// Rank 0: metrics.jsonl/csv and the TensorBoard events, picking up a resumed run's.
void Trainer::State::open_logs() {
  if (!is_main()) return;
  metrics = std::make_unique<MetricsLog>(run_dir, step);
  if (!option<bool>(run.root, "logging.tensorboard")) return;
  // A resumed run drops what earlier event files hold past its step; a fresh one starts the folder anew.
  tensorboard = std::make_unique<TensorBoardWriter>(run_dir / "tensorboard", step);
  if (step == 0) tensorboard->add_text("run_file", 0, "```yaml\n" + YAML::Dump(run.root) + "\n```");
}

// ---- The loop's phases ----

// Forward and backward over grad_accum micro-batches (the gradients synchronised on the last), gradient
// clipping and the optimizer step. False when the loss was not finite and trainer.on_nonfinite: skip
// dropped the batch.
bool Trainer::State::train_step(Loop& loop, double lr) {
  const auto step_start = Clock::now();
  set_learning_rate(*optimizer.optimizer, lr, loop.multipliers);
  clear_gradients(*optimizer.optimizer);
  ranks.broadcast(running_stats);
  double step_loss = 0;
  int64_t samples = 0;
  for (int64_t micro = 0; micro < grad_accum; ++micro) {
    auto batch = train_loader->next();
    if (!batch) batch = train_loader->next();  // epoch boundary
    if (!batch) throw std::runtime_error("the training set yields no batches (batch_size larger than the data?)");
    StepOutput out;
    {
      const device::AutocastGuard autocast(device, precision);
      out = task->step(*model, to_device(*batch, device), generator, true);
    }
    const auto global = ranks.global_loss(out.loss, loss_weight(out), out.samples);
    if (!std::isfinite(global.value)) {
      if (!skip_nonfinite)
        throw std::runtime_error(fmt::format(
            "non-finite loss at step {}; stopping without writing a checkpoint for it (set trainer.on_nonfinite: skip "
            "to skip such batches, or lower optimizer.lr)",
            step + 1));
      ++skipped_batches;
      spdlog::warn("non-finite loss at step {}: batch skipped ({} so far)", step + 1, skipped_batches);
      clear_gradients(*optimizer.optimizer);
      return false;
    }
    ranks.backward(global.loss / static_cast<double>(grad_accum), micro == grad_accum - 1);
    step_loss += global.value / static_cast<double>(grad_accum);
    samples += global.samples;
    loop.window.merge(out.metrics);
  }
  if (clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), clip);
  optimizer.optimizer->step();
  ++step;
  loop.progress.update(step, step_loss, lr, samples);
  loop.result.step_seconds.push_back(seconds_since(step_start));
  return true;
}

void Trainer::State::maybe_choose_length(Loop& loop) {
  if (length_auto && step >= kAutoLengthSteps && (length.step_seconds == 0 || step % kReplanEvery == 0))
    choose_length(loop.result.step_seconds, loop.time_limit - loop.elapsed(), loop.progress);
}

void Trainer::State::maybe_log(Loop& loop, double lr) {
  if (step % loop.log_every != 0 && step != max_steps) return;
  const auto window = ranks.sum(loop.window);
  std::map<std::string, double> row;
  for (const auto& [k, v] : window.means()) row["train/" + k] = v;
  row["lr"] = lr;
  row["data_wait_fraction"] = train_loader->wait_fraction();
  row["data/skipped"] = static_cast<double>(skipped_so_far());
  log_metrics(row);
  loop.window = MetricSums();
}

// Rank 0's clock decides for everyone: ranks that stopped at different steps would wait on each other.
bool Trainer::State::out_of_time(const Loop& loop) {
  if (loop.time_limit <= 0) return false;
  return ranks.main_choice(loop.elapsed() >= loop.time_limit);
}

// Every eval_every steps and at the end; returns the metric that picks the best checkpoint.
std::optional<double> Trainer::State::maybe_evaluate(Loop& loop, bool last) {
  if (!((eval_every > 0 && step % eval_every == 0) || last)) return std::nullopt;
  const auto eval_start = Clock::now();
  const auto eval_dir = run_dir / "eval" / fmt::format("step-{:08d}", step);
  const auto eval = run_eval(eval_dir);
  length.eval_seconds = seconds_since(eval_start);
  log_metrics(eval);
  log_eval_files(eval_dir);
  last_eval = eval;
  last_eval_step = step;
  loop.progress.finish();
  spdlog::info("eval at step {}: {}", step, format_metrics(eval));
  loop.result.final_metrics = eval;
  if (!eval.count(best_metric)) return std::nullopt;
  return eval.at(best_metric);
}

void Trainer::State::maybe_checkpoint(std::optional<double> metric, bool last) {
  if (!((checkpoint_every > 0 && step % checkpoint_every == 0) || last)) return;
  const auto skipped = skipped_so_far();  // every rank takes part
  if (checkpoints) save_checkpoint(metric, skipped);
}

ProgressOptions Trainer::State::progress_options() const {
  ProgressOptions po;
  po.total_steps = length_auto ? 0 : max_steps;
  po.log_every_steps = option<int64_t>(run.root, "logging.log_every");
  po.log_every_seconds = option<double>(run.root, "logging.log_every_seconds");
  if (!is_main()) {
    po.tty = false;
    po.logger = std::make_shared<spdlog::logger>("quiet-rank");  // no sinks
  }
  return po;
}

TrainResult Trainer::State::finish(Loop& loop) {
  loop.progress.finish();
  ranks.barrier();  // every rank returns once rank 0's last checkpoint is written
  auto result = std::move(loop.result);
  result.steps = step;
  result.seconds = loop.elapsed();
  // This run's last checkpoint: the run directory may hold later-numbered ones of an earlier run.
  result.last_checkpoint = last_checkpoint;
  spdlog::info("training done: {} steps in {:.1f} s; data wait {:.1f}%; run directory {}", step, result.seconds,
               100.0 * train_loader->wait_fraction(), run_dir.string());
  if (const auto report = ranks.gradient_sync_report(); !report.empty()) spdlog::info("{}", report);
  return result;
}

// ---- Evaluation, logs and checkpoints ----

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
  sums = ranks.sum(sums);
  for (auto& counts : task->eval_counts()) ranks.sum_in_place(counts);
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
  auto means = sums.means();
  task->add_derived_metrics(means);
  for (const auto& [k, v] : means) out["eval/" + k] = v;
  out["eval/data_skipped"] = static_cast<double>(ranks.sum(loader->skipped()));
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

int64_t Trainer::State::skipped_so_far() { return skipped_examples + ranks.sum(train_loader->skipped()); }

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
        const auto card = model_card();
        save_json(tmp / "trainer_state.json", {{"step", step},
                                               {"loader", train_loader->position().to_json()},
                                               {"skipped_batches", skipped_batches},
                                               {"skipped_examples", skipped},
                                               {"max_steps", max_steps},
                                               {"seed", seed},
                                               {"eval", last_eval},
                                               {"eval_step", last_eval_step},
                                               {"train_seconds", card.train_seconds}});
        write_yaml(run.root, tmp / "run.yaml");
        datasets::write_file_atomically(tmp / "README.md", render_model_card(card));
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
  const auto& data_section = run.root["data"];
  if (data_section && data_section["train"]) card.datasets = {source_name(data_section["train"])};
  if (data_section && data_section["eval"]) {
    card.eval_dataset = source_name(data_section["eval"]);
    card.eval_split = data_section["eval"].IsMap() && data_section["eval"]["split"]
                          ? data_section["eval"]["split"].as<std::string>()
                          : "eval";
    if (card.eval_dataset != card.datasets.front()) card.datasets.push_back(card.eval_dataset);
  }
  for (const auto& [name, value] : last_eval) card.eval[name.rfind("eval/", 0) == 0 ? name.substr(5) : name] = value;
  card.eval_step = last_eval_step;
  card.steps = step;
  card.train_seconds = seconds_before + seconds_since(session_start);
  if (device.is_cuda()) {
    const auto gpus = device::accelerator_report().gpus;
    const auto index = device.has_index() ? device.index() : 0;
    card.hardware = index < static_cast<int>(gpus.size()) ? gpus[index].name : "a GPU";
  } else {
    const auto model_name = runtime::cpu_model_name();
    card.hardware = fmt::format("{} ({} threads)", model_name.empty() ? "a CPU" : model_name, torch::get_num_threads());
  }
  if (ranks.several()) card.hardware += fmt::format(", x{} data-parallel ranks", ranks.world_size());
  card.precision = device::to_string(precision);
  card.from = option_or<std::string>(run.root, "model.from", "");
  card.run_file = YAML::Dump(run.root);
  return card;
}

// ---- max_steps: auto ----

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
  auto clock = Clock::now();
  {
    const runtime::ScopedLogLevel quiet_eval(spdlog::level::warn);  // a timing, not an evaluation to report
    run_eval(scratch / "eval");
  }
  length.eval_seconds = seconds_since(clock);
  clock = Clock::now();
  if (is_main()) {
    io::save_pretrained(*model, scratch / "checkpoint");
    save_optimizer(scratch / "checkpoint" / "optimizer.pt", *optimizer.optimizer);
  }
  length.checkpoint_seconds = seconds_since(clock);
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
  // The latest quarter of them, at least kReplanEvery: on a shared machine a minute of slow steps would
  // otherwise fix a length that leaves minutes of the budget unused.
  const auto latest = std::max<size_t>(kReplanEvery, step_seconds.size() / 4);
  const auto from = first ? std::min<size_t>(kAutoLengthWarmup, step_seconds.size() - 1)
                          : step_seconds.size() - std::min(latest, step_seconds.size());
  std::vector<double> steps(step_seconds.begin() + static_cast<std::ptrdiff_t>(from), step_seconds.end());
  std::nth_element(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(steps.size() / 2), steps.end());
  length.step_seconds = steps[steps.size() / 2];
  length.steps_done = step;
  length.eval_every = eval_every;
  length.checkpoint_every = checkpoint_every;
  length.seconds = 0.97 * seconds_left;  // 3 % for the variation of step times
  const auto total = ranks.main_choice(keeping_past_steps(schedule, step, fitting_max_steps(length)));
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

// ---- The trainer ----

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
  s.refuse_earlier_run(resume_arg);
  if (s.is_main()) {
    fs::create_directories(s.run_dir);
    write_yaml(s.run.root, s.run_dir / "config.yaml");  // the effective, fully resolved run file
  }
  s.resume(resume_arg);
  s.open_logs();

  Loop loop(s.progress_options());
  loop.time_limit = option<double>(s.run.root, "trainer.time_limit_minutes") * 60.0;
  loop.log_every = option<int64_t>(s.run.root, "logging.log_every");
  loop.multipliers = s.optimizer.lr_multipliers();
  loop.result.run_dir = s.run_dir;
  loop.result.num_parameters = s.params;
  s.session_start = loop.start;
  s.model->train();
  while (s.step < s.max_steps) {
    const double lr = learning_rate_at(s.schedule, s.optimizer.base_lr, s.step);
    if (!s.train_step(loop, lr)) continue;  // a non-finite batch, skipped
    s.maybe_choose_length(loop);
    s.maybe_log(loop, lr);
    const bool out_of_time = s.out_of_time(loop);
    const bool last = s.step == s.max_steps || out_of_time;
    s.maybe_checkpoint(s.maybe_evaluate(loop, last), last);
    if (out_of_time) {
      if (s.length.step_seconds > 0 && s.max_steps < kProvisionalSteps)  // max_steps: auto chose a length
        spdlog::warn("time limit reached after {} of the {} steps max_steps: auto chose: the steps ran slower than "
                     "measured (a shared or throttled machine), and the schedule did not finish",
                     s.step, s.max_steps);
      else
        spdlog::info("time limit reached after {} steps", s.step);
      break;
    }
  }
  return s.finish(loop);
}

std::map<std::string, double> Trainer::evaluate(const fs::path& checkpoint) {
  auto& s = *state_;
  return s.guard([&] {
    s.build(false, checkpoint);
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
