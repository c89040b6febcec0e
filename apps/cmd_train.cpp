#include <algorithm>
#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "trainers/launcher.h"
#include "trainers/run_config_util.h"
#include "trainers/run_options.h"
#include "trainers/trainer.h"

namespace {

namespace po = boost::program_options;

po::options_description train_options(const char* title, bool training) {
  po::options_description desc(title);
  desc.add_options()("help,h", "show this help")("config", po::value<std::string>()->required(), "YAML run file");
  if (training) desc.add_options()("resume", po::value<std::string>()->default_value(""), "checkpoint directory or 'auto'");
  else desc.add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint or HF model directory (its config.json, where it has one, defines the model)");
  desc.add_options()("nproc", po::value<int>()->default_value(1),
                     "run N data-parallel ranks on this machine (trainer.batch_size stays the global batch)")(
      "master-addr", po::value<std::string>()->default_value("127.0.0.1"), "with --nproc: the rendezvous address")(
      "master-port", po::value<int>()->default_value(0), "with --nproc: the rendezvous port (0: a free one)");
  desc.add_options()("device", po::value<std::string>(), "cpu, cuda, cuda:N or auto (sets trainer.device)")(
      "precision", po::value<std::string>(), "fp32, bf16 autocast or auto (sets trainer.precision)");
  desc.add_options()("overrides", po::value<std::vector<std::string>>()->default_value({}, ""),
                     "dotted overrides KEY=VALUE (e.g. trainer.max_steps=200 optimizer.lr=3e-4)");
  return desc;
}

perceiver::trainers::RunConfig load(const po::variables_map& vm) {
  auto run = perceiver::trainers::load_run_config(vm["config"].as<std::string>());
  auto overrides = vm["overrides"].as<std::vector<std::string>>();
  if (vm.count("device")) overrides.push_back("trainer.device=" + vm["device"].as<std::string>());
  if (vm.count("precision")) overrides.push_back("trainer.precision=" + vm["precision"].as<std::string>());
  perceiver::trainers::apply_overrides(run, overrides);
  return run;
}

// `command` and `args` without the launcher's own options: what every rank runs.
std::vector<std::string> rank_arguments(const std::string& command, const std::vector<std::string>& args) {
  const std::vector<std::string> launcher_options{"--nproc", "--master-addr", "--master-port"};
  std::vector<std::string> out{command};
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    const bool separate = std::find(launcher_options.begin(), launcher_options.end(), a) != launcher_options.end();
    const bool joined = std::any_of(launcher_options.begin(), launcher_options.end(),
                                    [&](const std::string& o) { return a.rfind(o + "=", 0) == 0; });
    if (separate) ++i;  // its value follows
    else if (!joined) out.push_back(a);
  }
  return out;
}

// --nproc N > 1: starts N ranks of this command (each joins the process group) and waits for them.
int launch_ranks(const std::string& command, const std::vector<std::string>& args, const po::variables_map& vm) {
  perceiver::trainers::LaunchOptions lo;
  lo.nproc = vm["nproc"].as<int>();
  lo.master_addr = vm["master-addr"].as<std::string>();
  lo.master_port = vm["master-port"].as<int>();
  lo.args = rank_arguments(command, args);
  return perceiver::trainers::launch(lo);
}

// --help-config [--config RUN.yaml] [--markdown]: every run-file key with its type, default and help
// (for one run file: its task's and its sources'), as text or as docs/run-files.md.
int print_config_help(const std::vector<std::string>& args) {
  po::options_description desc("perceiver train --help-config [--config RUN.yaml] [--markdown]");
  desc.add_options()("help-config", "list the run-file keys")("config", po::value<std::string>(),
                                                              "only the keys of this run file's task and sources")(
      "markdown", "as Markdown (docs/run-files.md)");
  const auto vm = perceiver::cli::parse(desc, args);
  using namespace perceiver::trainers;
  const auto sections =
      vm.count("config") ? run_sections(load_run_config(vm["config"].as<std::string>()).root) : all_sections();
  std::cout << (vm.count("markdown") ? markdown(sections) : help_text(sections));
  return 0;
}

int run_train(const std::vector<std::string>& args) {
  const auto desc = train_options("perceiver train --config RUN.yaml [--resume DIR|auto] [KEY=VALUE ...]\n"
                                  "perceiver train --help-config [--config RUN.yaml] [--markdown]: every run-file key",
                                  true);
  if (perceiver::cli::wants_help(args, desc)) return 0;
  if (std::find(args.begin(), args.end(), "--help-config") != args.end()) return print_config_help(args);
  po::positional_options_description pos;
  pos.add("overrides", -1);
  const auto vm = perceiver::cli::parse(desc, args, &pos);
  if (vm["nproc"].as<int>() > 1) return launch_ranks("train", args, vm);
  perceiver::trainers::Trainer trainer(load(vm));
  const auto result = trainer.train(vm["resume"].as<std::string>());
  nlohmann::json summary = {{"steps", result.steps},
                            {"seconds", result.seconds},
                            {"run_dir", result.run_dir.string()},
                            {"checkpoint", result.last_checkpoint.string()},
                            {"metrics", result.final_metrics}};
  if (trainer.is_main_process()) std::cout << summary.dump(2) << std::endl;
  return 0;
}

int run_evaluate(const std::vector<std::string>& args) {
  const auto desc = train_options("perceiver evaluate --config RUN.yaml --checkpoint DIR [KEY=VALUE ...]", false);
  if (perceiver::cli::wants_help(args, desc)) return 0;
  po::positional_options_description pos;
  pos.add("overrides", -1);
  const auto vm = perceiver::cli::parse(desc, args, &pos);
  if (vm["nproc"].as<int>() > 1) return launch_ranks("evaluate", args, vm);
  perceiver::trainers::Trainer trainer(load(vm));
  const auto metrics = trainer.evaluate(vm["checkpoint"].as<std::string>());
  if (trainer.is_main_process()) std::cout << nlohmann::json(metrics).dump(2) << std::endl;
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("train", "train or fine-tune from a YAML run file (resume with --resume)", run_train);
PERCEIVER_COMMAND("evaluate", "evaluate a checkpoint on a run file's eval data; prints metrics as JSON", run_evaluate);
