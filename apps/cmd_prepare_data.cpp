// `perceiver prepare-data`: builds what a run's data sources keep on disk (text indexes, packed JSONL)
// ahead of training, or packs an image folder into tar shards.
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/options.h"
#include "trainers/run_config_util.h"
#include "trainers/trainer.h"
#if PERCEIVER_WITH_OPENCV
#include "datasets/image_shards.h"
#endif

namespace {

namespace po = boost::program_options;

int run_prepare_data(const std::vector<std::string>& args) {
  po::options_description desc(
      "perceiver prepare-data --config RUN.yaml [KEY=VALUE ...]   index the run's data sources now\n"
      "perceiver prepare-data --shards OUT_DIR --from IMAGE_FOLDER  pack a folder (one subfolder per class) into tar shards\n"
      "options");
  desc.add_options()("help,h", "show this help")                                                  //
      ("config", po::value<std::string>(), "YAML run file whose data.train and data.eval to prepare")  //
      ("shards", po::value<std::string>(), "folder to write <prefix>-000000.tar, ... into")           //
      ("from", po::value<std::string>(), "with --shards: the image folder to pack")                   //
      ("per-shard", po::value<int64_t>()->default_value(1000), "with --shards: images per shard")     //
      ("prefix", po::value<std::string>()->default_value("shard"), "with --shards: shard file name prefix")  //
      ("overrides", po::value<std::vector<std::string>>()->default_value({}, ""), "dotted overrides KEY=VALUE");
  if (perceiver::cli::wants_help(args, desc)) return 0;
  po::positional_options_description pos;
  pos.add("overrides", -1);
  const auto vm = perceiver::cli::parse(desc, args, &pos);
  if (vm.count("config") == vm.count("shards"))
    throw std::runtime_error("prepare-data needs either --config RUN.yaml or --shards OUT_DIR --from IMAGE_FOLDER");
  if (vm.count("shards")) {
#if PERCEIVER_WITH_OPENCV
    if (!vm.count("from")) throw std::runtime_error("--shards needs --from IMAGE_FOLDER");
    perceiver::datasets::ShardWriteOptions o;
    o.samples_per_shard = vm["per-shard"].as<int64_t>();
    o.prefix = vm["prefix"].as<std::string>();
    const auto report = perceiver::datasets::write_image_shards(vm["from"].as<std::string>(), vm["shards"].as<std::string>(), o);
    std::cout << nlohmann::json{{"shards", report.shards}, {"samples", report.samples}, {"classes", report.classes}}.dump(2)
              << std::endl;
    return 0;
#else
    throw std::runtime_error("--shards needs image decoding, and this build has no OpenCV");
#endif
  }
  auto run = perceiver::trainers::load_run_config(vm["config"].as<std::string>());
  perceiver::trainers::apply_overrides(run, vm["overrides"].as<std::vector<std::string>>());
  perceiver::trainers::Trainer trainer(std::move(run));
  std::cout << nlohmann::json{{"data", trainer.prepare_data()}}.dump(2) << std::endl;
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("prepare-data", "index a run's data sources ahead of training, or pack images into tar shards",
                  run_prepare_data);
