#include "trainers/run_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "datasets/sources.h"
#include "trainers/optim.h"
#include "trainers/schedule.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {

namespace {

OptionSection section(std::string path, std::string help, OptionSpecs options) {
  OptionSection s;
  s.title = path;
  s.path = std::move(path);
  s.help = std::move(help);
  s.options = std::move(options);
  return s;
}

// The sections that hold keys of others besides the trainer's: checked by the task.
bool is_open(const std::string& path) { return path == "task" || path == "data"; }

std::vector<OptionSection> make_trainer_sections() {
  return {
      section("model", "the model: an architecture with an inline config, or a checkpoint to fine-tune",
              {
                  {"architecture", "string", "", "the HF head (PerceiverForMaskedLM, ...); default: model.from's, else the task's first"},
                  {"config", "map", "", "PerceiverConfig fields, as HF's config.json names them (d_model, num_latents, ...); model.from's config.json, or an evaluated checkpoint's, takes its place"},
                  {"from", "string", "", "an HF model directory or a checkpoint to fine-tune from (its config and weights)"},
                  {"freeze", "list[string]", "[]", "parameter name patterns that are not trained"},
                  {"init_std", "map", "", "{pattern: std}: re-draws a fresh model's matching parameters from N(0, std)"},
                  {"activation_checkpointing", "bool", "false", "recompute the layers' activations in backward: less memory, more time"},
              }),
      section("task", "the objective: a name, or {name: NAME, ...} with the task's keys (see the task's sections)",
              {task_name_option()}),
      section("data", "the task's data (see the task's sections) and how the loader reads it",
              {
                  {"workers", "int", "", "loader threads per rank; default: the cores the compute threads leave free, at least 1 (0: load in the training thread)"},
                  {"prefetch", "int", "4", "batches each loader prepares ahead"},
                  {"on_bad_example", "enum[skip, stop]", "skip", "an unreadable example: leave it out (counted and logged) or stop"},
              }),
      section("optimizer", "the optimizer", optimizer_option_specs()),
      section("schedule", "the learning-rate schedule", schedule_option_specs()),
      section("trainer", "the training loop",
              {
                  {"max_steps", "any", "0",
                   "steps to train: an integer (0: epochs x the steps of one epoch), or auto: as many as fit time_limit_minutes on this machine"},
                  {"epochs", "int", "1", "with max_steps 0: passes over the training data"},
                  {"batch_size", "int", "32", "the global batch (split over data-parallel ranks)"},
                  {"eval_batch_size", "int", "", "the evaluation's global batch; default: batch_size"},
                  {"grad_accum", "int", "1", "micro-batches of batch_size per optimizer step"},
                  {"clip_grad_norm", "float", "0.0", "clip the gradients' global norm to this (0: no clipping)"},
                  {"seed", "int", "0", "model initialisation, data order, masking and augmentation"},
                  {"threads", "int", "0", "compute threads (0: every core, shared among the ranks of one machine)"},
                  {"device", "string", "auto", "cpu, cuda, cuda:N or auto (the first GPU where there is one)"},
                  {"precision", "enum[fp32, bf16, auto]", "fp32", "bf16 autocast, or auto: bf16 where the CPU or GPU runs it natively"},
                  {"tf32", "bool", "false", "CUDA: TF32 matrix products"},
                  {"deterministic", "bool", "false", "deterministic kernels only (bit-identical GPU resumes)"},
                  {"eval_every", "int", "0", "evaluate every N steps (0: at the end only)"},
                  {"eval_max_batches", "int", "0", "batches per evaluation (0: the whole eval set)"},
                  {"checkpoint_every", "int", "0", "write a checkpoint every N steps (0: at the end only)"},
                  {"keep_last", "int", "2", "checkpoints kept besides the best one"},
                  {"best_metric", "string", "", "the metric that picks the best checkpoint; default: the task's (eval/accuracy, eval/epe, ...)"},
                  {"best_mode", "enum[min, max]", "", "whether best_metric is better low or high; default: the task's"},
                  {"on_nonfinite", "enum[stop, skip]", "stop", "a non-finite loss: stop without a checkpoint for it, or skip the batch"},
                  {"time_limit_minutes", "float", "0.0", "stop (with an evaluation and a checkpoint) after this much training (0: none)"},
                  {"num_workers", "int", "", "the older name of data.workers"},
                  {"prefetch", "int", "", "the older name of data.prefetch"},
                  {"dist_timeout_s", "float", "1800.0", "data-parallel: how long a rank waits for the others"},
              }),
      section("logging", "where the run is written and how often it reports",
              {
                  {"run_dir", "string", "", "the run's folder (metrics, evaluations, checkpoints); default: runs/<task>"},
                  {"log_every", "int", "50", "log the training metrics every N steps"},
                  {"log_every_seconds", "float", "30.0", "and at least this often on a terminal"},
                  {"tensorboard", "bool", "true", "write TensorBoard event files to RUN_DIR/tensorboard"},
              }),
  };
}

std::string type_cell(const OptionSpec& o) { return o.type; }

std::string default_cell(const OptionSpec& o) {
  if (o.required) return "(required)";
  return o.default_value.empty() ? "-" : o.default_value;
}

}  // namespace

const std::vector<OptionSection>& trainer_sections() {
  static const std::vector<OptionSection> sections = make_trainer_sections();
  return sections;
}

std::vector<OptionSection> task_sections(const std::string& task) {
  const auto it = task_registry().find(task);
  if (it == task_registry().end())
    throw std::invalid_argument("unknown task '" + task + "' (known: " + join(known_tasks(), ", ") + ")");
  const auto& info = it->second;
  std::vector<OptionSection> out;
  OptionSection t = section("task", info.help, info.options);
  t.title = "task: " + task;
  out.push_back(t);
  OptionSection d = section("data", "the data of task " + task + " (besides the loader's keys above)", info.data_options);
  d.title = "data (task " + task + ")";
  out.push_back(d);
  for (const auto& kind : datasets::source_kinds()) {
    if (kind.name != info.source_kind) continue;
    for (const auto& source : kind.sources) {
      OptionSpecs keys{{"type", "string", "", "this source: " + source.name, true}};
      keys.insert(keys.end(), source.options.begin(), source.options.end());
      keys.insert(keys.end(), info.source_options.begin(), info.source_options.end());
      OptionSection s = section("data.train", source.help, keys);
      s.title = "data.train / data.eval, type " + source.name + " (task " + task + ")";
      out.push_back(s);
    }
  }
  return out;
}

std::vector<OptionSection> all_sections() {
  auto out = trainer_sections();
  for (const auto& name : known_tasks()) {
    const auto sections = task_sections(name);
    out.insert(out.end(), sections.begin(), sections.end());
  }
  return out;
}

std::vector<OptionSection> run_sections(const YAML::Node& root) {
  auto out = trainer_sections();
  const auto task = root["task"];
  const auto name = task && task.IsScalar() ? task.Scalar()
                    : task && task.IsMap() && task["name"] ? task["name"].as<std::string>()
                                                           : std::string();
  if (name.empty()) return out;
  std::vector<std::string> types;
  for (const char* split : {"train", "eval"})
    if (const auto source = lookup(root, std::string("data.") + split); source.IsDefined() && source.IsMap() && source["type"])
      types.push_back(source["type"].as<std::string>());
  for (const auto& s : task_sections(name)) {
    const bool source_section = s.path == "data.train";
    const bool named = std::any_of(types.begin(), types.end(), [&](const std::string& t) {
      return s.title.find("type " + t + " ") != std::string::npos;
    });
    if (!source_section || named) out.push_back(s);
  }
  return out;
}

Schema schema_of(const std::vector<OptionSection>& sections) {
  // The schema's own text form (Schema::from_yaml): a map of sections, each a map of key: type.
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::vector<std::string> done;
  for (const auto& s : sections) {
    if (std::find(done.begin(), done.end(), s.path) != done.end()) continue;  // a task's task/data sections
    done.push_back(s.path);
    out << YAML::Key << s.path << YAML::Value;
    if (is_open(s.path)) {
      out << (s.path == "task" ? "any" : "map");
      continue;
    }
    out << YAML::BeginMap;
    for (const auto& o : s.options) out << YAML::Key << o.key << YAML::Value << o.type;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return Schema::from_yaml(out.c_str());
}

std::string help_text(const std::vector<OptionSection>& sections) {
  std::ostringstream out;
  for (const auto& s : sections) {
    out << s.title << ": " << s.help << "\n";
    size_t key_width = 0, type_width = 0, default_width = 0;
    for (const auto& o : s.options) {
      key_width = std::max(key_width, o.key.size());
      type_width = std::max(type_width, type_cell(o).size());
      default_width = std::max(default_width, std::min<size_t>(default_cell(o).size(), 24));
    }
    for (const auto& o : s.options)
      out << fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}\n", o.key, key_width, type_cell(o), type_width, default_cell(o),
                         default_width, o.help);
    out << "\n";
  }
  return out.str();
}

std::string markdown(const std::vector<OptionSection>& sections) {
  const auto cell = [](std::string text) {
    std::string out;
    for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  };
  std::ostringstream out;
  out << "# Run files: every key\n\n"
      << "Generated from the option declarations (trainers/run_options.cpp, each task's and each data "
         "source's registry entry) by `perceiver train --help-config --markdown`; a test checks that this page "
         "is up to date. `perceiver train --help-config --config RUN.yaml` lists the keys of one run's task and "
         "sources. Types: int, float, bool, string, list[...], map, any, enum[...]; a default of - depends on "
         "other settings, as the key's help says.\n\n";
  for (const auto& s : sections) {
    out << "## " << s.title << "\n\n" << cell(s.help) << "\n\n| key | type | default | |\n|---|---|---|---|\n";
    for (const auto& o : s.options)
      out << "| `" << o.key << "` | " << cell(type_cell(o)) << " | `" << cell(default_cell(o)) << "` | " << cell(o.help)
          << " |\n";
    out << "\n";
  }
  std::string text = out.str();
  text.pop_back();  // one newline at the end of the file
  return text;
}

const OptionSpec& trainer_option(const std::string& dotted_key) {
  const auto dot = dotted_key.rfind('.');
  const auto path = dotted_key.substr(0, dot == std::string::npos ? 0 : dot);
  const auto key = dotted_key.substr(dot == std::string::npos ? 0 : dot + 1);
  for (const auto& s : trainer_sections())
    if (s.path == path)
      if (const auto* spec = datasets::find_option(s.options, key)) return *spec;
  throw std::logic_error("run-file key '" + dotted_key + "' is not declared in trainers/run_options.cpp");
}

void fill_defaults(YAML::Node& root) {
  const auto fill = [](YAML::Node node, const OptionSpecs& specs) {
    for (const auto& o : specs)
      if (!o.default_value.empty() && (!node[o.key] || node[o.key].IsNull())) node[o.key] = YAML::Load(o.default_value);
  };
  for (const auto& s : trainer_sections()) {
    if (s.path == "task") continue;  // the task's keys come below
    if (!root[s.path] || root[s.path].IsNull()) root[s.path] = YAML::Node(YAML::NodeType::Map);
    if (root[s.path].IsMap()) fill(root[s.path], s.options);
  }
  // The task's keys: `task: NAME` becomes {name: NAME, ...defaults}.
  auto task = root["task"];
  if (!task) return;
  if (task.IsScalar()) {
    const auto name = task.Scalar();
    root["task"] = YAML::Node(YAML::NodeType::Map);
    root["task"]["name"] = name;
    task = root["task"];
  }
  if (!task.IsMap() || !task["name"] || !task_registry().count(task["name"].as<std::string>())) return;
  const auto& info = task_registry().at(task["name"].as<std::string>());
  fill(task, info.options);
  auto data = root["data"];
  fill(data, info.data_options);
  for (const char* split : {"train", "eval"}) {
    auto source = data[split];
    if (!source || !source.IsMap() || !source["type"]) continue;
    for (const auto& kind : datasets::source_kinds())
      if (kind.name == info.source_kind)
        for (const auto& s : kind.sources)
          if (s.name == source["type"].as<std::string>()) {
            fill(source, s.options);
            fill(source, info.source_options);
          }
  }
}

}  // namespace perceiver::trainers
