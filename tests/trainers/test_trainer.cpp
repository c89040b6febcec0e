// End-to-end trainer behaviour on tiny models and tiny data: learning, exact resume, errors.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <tuple>

#if PERCEIVER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

#include "perceiver/runtime/device.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/io/torch_bin.h"
#include "tests/test_support.h"
#include "trainers/metrics_log.h"
#include "trainers/run_config_util.h"
#include "trainers/trainer.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;
using trainers::parse_run_config;
using trainers::Trainer;

// A small corpus with a lot of structure: repeated phrases with a few varying words.
void write_corpus(const fs::path& file, int lines, int offset) {
  const char* subjects[] = {"the cat", "a dog", "the bird", "my fish"};
  const char* verbs[] = {"sat on", "ran to", "looked at", "slept by"};
  const char* objects[] = {"the mat.", "the door.", "a tree.", "the sea."};
  std::ofstream out(file);
  for (int i = offset; i < offset + lines; ++i)
    out << subjects[i % 4] << " " << verbs[(i / 4) % 4] << " " << objects[(i / 16) % 4] << "\n";
}

std::string mlm_run(const fs::path& dir, int steps, const std::string& extra = "") {
  write_corpus(dir / "train.txt", 400, 0);
  write_corpus(dir / "eval.txt", 64, 1000);
  return "model:\n"
         "  architecture: PerceiverForMaskedLM\n"
         "  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
         "           num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 32,\n"
         "           attention_probs_dropout_prob: 0.1}\n"
         "task: {name: mlm, fill_in_samples: 1}\n"
         "data:\n"
         "  seq_len: 32\n"
         "  train: {type: text, path: '" + (dir / "train.txt").string() + "', unit: line}\n"
         "  eval: {type: text, path: '" + (dir / "eval.txt").string() + "', unit: line}\n"
         "optimizer: {name: adamw, lr: 0.003}\n"
         "schedule: {name: cosine, warmup_steps: 5}\n"
         "trainer: {max_steps: " + std::to_string(steps) + ", batch_size: 16, seed: 7, threads: 1, num_workers: 1,\n"
         "          clip_grad_norm: 1.0, eval_max_batches: 4, keep_last: 5}\n"
         "logging: {run_dir: '" + (dir / "run").string() + "', log_every: 10}\n" + extra;
}

std::map<std::string, double> train(const std::string& yaml, const std::vector<std::string>& overrides = {},
                                    const std::string& resume = "") {
  auto run = parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(run, overrides);
  Trainer trainer(std::move(run));
  return trainer.train(resume).final_metrics;
}

TEST(Trainer, MaskedLmLossDecreasesOnHeldOutText) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 80);
  auto run = parse_run_config(yaml, "test.yaml");
  Trainer before(run);
  // The untrained model, evaluated exactly as the trained one will be.
  const auto initial = before.evaluate([&] {
    auto r = parse_run_config(yaml, "t.yaml");
    trainers::apply_overrides(r, {"trainer.max_steps=1", "optimizer.lr=0.0", "logging.run_dir=" + (tmp.path() / "r0").string()});
    return Trainer(std::move(r)).train().last_checkpoint;
  }());
  const auto trained = train(yaml);
  ASSERT_TRUE(trained.count("eval/loss"));
  EXPECT_LT(trained.at("eval/loss"), initial.at("eval/loss") - 0.3)
      << "initial " << initial.at("eval/loss") << " trained " << trained.at("eval/loss");
  EXPECT_GT(trained.at("eval/accuracy"), initial.at("eval/accuracy"));
  EXPECT_TRUE(fs::exists(tmp.path() / "run" / "metrics.jsonl"));
  EXPECT_TRUE(fs::exists(tmp.path() / "run" / "config.yaml"));
}

// Five 4-letter words: the first `vowel_words` over a vowel alphabet, the rest over consonants.
std::string five_words(std::mt19937& rng, int vowel_words) {
  std::string text;
  for (int w = 0; w < 5; ++w) {
    for (int c = 0; c < 4; ++c) text += (w < vowel_words ? "aeiou" : "bcdfg")[rng() % 5];
    text += ' ';
  }
  return text;
}

// A CSV file: `header`, then rows 0..n-1 from `row(i, rng)` with an rng seeded by `seed`.
void write_csv(const fs::path& file, const std::string& header, int n, int seed,
               const std::function<std::string(int, std::mt19937&)>& row) {
  std::ofstream out(file);
  out << header << "\n";
  std::mt19937 rng(seed);
  for (int i = 0; i < n; ++i) out << row(i, rng) << "\n";
}

// A run's TensorBoard folder as an independent reader (python3-protobuf on TensorFlow's field numbers,
// its own CRC-32C) decodes it.
nlohmann::json read_tensorboard(const fs::path& dir) {
  const auto r = run_command(std::string("/usr/bin/python3 '") + PERCEIVER_SOURCE_DIR +
                             "/tests/trainers/tensorboard/read_events.py' '" + dir.string() + "'");
  if (r.exit_code != 0)
    throw std::runtime_error("read_events.py failed (it needs python3-protobuf and protobuf-compiler): " + r.err);
  return nlohmann::json::parse(r.out);
}

TEST(Trainer, SequenceClassificationLearnsOnHeldOutText) {
  TempDir tmp;
  // Two "languages": words over disjoint alphabets.
  auto write = [](const fs::path& file, int n, int seed) {
    write_csv(file, "text,label", n, seed, [](int i, std::mt19937& rng) {
      const bool vowels = i % 2 == 0;
      return five_words(rng, vowels ? 5 : 0) + "," + (vowels ? "soft" : "hard");
    });
  };
  write(tmp.path() / "train.csv", 300, 1);
  write(tmp.path() / "eval.csv", 60, 2);
  const std::string yaml =
      "model:\n  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
      "    num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 32}\n"
      "task: sequence_classification\n"
      "data:\n  seq_len: 32\n"
      "  train: {type: labelled_text, path: '" + (tmp.path() / "train.csv").string() + "'}\n"
      "  eval: {type: labelled_text, path: '" + (tmp.path() / "eval.csv").string() + "'}\n"
      "optimizer: {lr: 0.003}\n"
      "trainer: {max_steps: 60, batch_size: 16, threads: 1, num_workers: 1}\n"
      "logging: {run_dir: '" + (tmp.path() / "run").string() + "'}\n";
  const auto metrics = train(yaml);
  EXPECT_GT(metrics.at("eval/accuracy"), 0.9);
  EXPECT_LT(metrics.at("eval/loss"), 0.4);
  EXPECT_TRUE(fs::exists(tmp.path() / "run" / "eval" / "step-00000060" / "confusion_matrix.csv"));
#if PERCEIVER_WITH_OPENCV
  // The confusion matrix is also a picture, in the run's TensorBoard events at the evaluation's step.
  const auto png = tmp.path() / "run" / "eval" / "step-00000060" / "confusion_matrix.png";
  ASSERT_TRUE(fs::exists(png));
  const auto events = read_tensorboard(tmp.path() / "run" / "tensorboard");
  ASSERT_EQ(events["images"].size(), 1u) << events["images"];
  const auto& image = events["images"][0];
  EXPECT_EQ(image[0], "eval/confusion_matrix");
  EXPECT_EQ(image[1], 60);
  const auto picture = cv::imread(png.string());
  EXPECT_EQ(image[2], picture.rows);
  EXPECT_EQ(image[3], picture.cols);
  EXPECT_EQ(image[4], true) << "the PNG's header disagrees with the Image's size";
#endif
  // The saved config names the labels found in the data.
  std::ifstream in(tmp.path() / "run" / "checkpoints" / "step-00000060" / "config.json");
  const auto config = nlohmann::json::parse(in);
  EXPECT_EQ(config["id2label"]["0"], "hard");
  EXPECT_EQ(config["id2label"]["1"], "soft");
}

// Texts of five words, each from a vowel or a consonant alphabet: the tags name the alphabets used,
// the score is the fraction of vowel words. Both are learnable from the bytes.
TEST(Trainer, SequenceClassificationMultiLabelAndRegression) {
  TempDir tmp;
  auto write = [](const fs::path& file, int n, int seed) {
    write_csv(file, "text,tags,score", n, seed, [](int i, std::mt19937& rng) {
      const int vowel_words = i % 3 == 0 ? 5 : i % 3 == 1 ? 0 : 1 + static_cast<int>(rng() % 4);
      const std::string tags = vowel_words == 5 ? "soft" : vowel_words == 0 ? "hard" : "hard|soft";
      return five_words(rng, vowel_words) + "," + tags + "," + std::to_string(vowel_words / 5.0);
    });
  };
  write(tmp.path() / "train.csv", 300, 1);
  write(tmp.path() / "eval.csv", 60, 2);
  auto yaml = [&](const std::string& problem, const std::string& field, const std::string& run) {
    return "model:\n  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
           "    num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 32}\n"
           "task: {name: sequence_classification, problem_type: " + problem + "}\n"
           "data:\n  seq_len: 32\n"
           "  train: {type: labelled_text, label_field: " + field + ", path: '" + (tmp.path() / "train.csv").string() + "'}\n"
           "  eval: {type: labelled_text, label_field: " + field + ", path: '" + (tmp.path() / "eval.csv").string() + "'}\n"
           "optimizer: {lr: 0.003}\n"
           "trainer: {max_steps: 80, batch_size: 16, threads: 1, num_workers: 1}\n"
           "logging: {run_dir: '" + (tmp.path() / run).string() + "'}\n";
  };
  auto saved_config = [&](const std::string& run) {
    std::ifstream in(tmp.path() / run / "checkpoints" / "step-00000080" / "config.json");
    return nlohmann::json::parse(in);
  };

  const auto multi = train(yaml("multi_label_classification", "tags", "multi"));
  EXPECT_GT(multi.at("eval/exact_match"), 0.9);
  EXPECT_GT(multi.at("eval/f1_micro"), 0.9);
  EXPECT_GT(multi.at("eval/label_accuracy"), 0.9);
  EXPECT_FALSE(multi.count("eval/accuracy"));
  auto config = saved_config("multi");
  EXPECT_EQ(config["problem_type"], "multi_label_classification");
  EXPECT_EQ(config["id2label"]["0"], "hard");
  EXPECT_EQ(config["id2label"]["1"], "soft");

  // Predicting the mean score (0.5) would give an MSE of about 0.12 on this data.
  const auto reg = train(yaml("regression", "score", "reg"));
  EXPECT_LT(reg.at("eval/mse"), 0.03);
  EXPECT_NEAR(reg.at("eval/mse"), reg.at("eval/loss"), 1e-9);
  EXPECT_LT(reg.at("eval/mae"), 0.15);
  config = saved_config("reg");
  EXPECT_EQ(config["problem_type"], "regression");
  EXPECT_EQ(config["id2label"].size(), 1u);

  // `perceiver predict` follows the problem type: labels above 0.5 / the regressed value.
  const auto checkpoint = [&](const std::string& run) {
    return (tmp.path() / run / "checkpoints" / "step-00000080").string();
  };
  const auto tagged = run_cli("predict --json --model '" + checkpoint("multi") + "' 'aeio uoia eeai ouea iaou '");
  ASSERT_EQ(tagged.exit_code, 0) << tagged.err;
  EXPECT_EQ(nlohmann::json::parse(tagged.out)[0].at("labels"), nlohmann::json::array({"soft"})) << tagged.out;
  // Scores at the two ends of the range (a third of the data each), the regressed values near them.
  const auto scored =
      run_cli("predict --json --model '" + checkpoint("reg") + "' 'aeio uoia eeai ouea iaou ' 'bcdf gbcd fgdb dfgc cdbg '");
  ASSERT_EQ(scored.exit_code, 0) << scored.err;
  EXPECT_NEAR(nlohmann::json::parse(scored.out)[0].at("value").get<double>(), 1.0, 0.25) << scored.out;
  EXPECT_NEAR(nlohmann::json::parse(scored.out)[1].at("value").get<double>(), 0.0, 0.25) << scored.out;

  // JSONL label lists are split on the task's separator, whatever it is.
  {
    std::ofstream out(tmp.path() / "train.jsonl");
    for (int i = 0; i < 4; ++i) out << R"({"text": "aeio", "label": ["a|b", "c"]})" << "\n";
  }
  auto jsonl = yaml("multi_label_classification", "label", "jsonl");
  for (size_t at = jsonl.find("train.csv"); at != std::string::npos; at = jsonl.find("train.csv"))
    jsonl.replace(at, 9, "train.jsonl");
  for (size_t at = jsonl.find("eval.csv"); at != std::string::npos; at = jsonl.find("eval.csv"))
    jsonl.replace(at, 8, "train.jsonl");
  train(jsonl, {"task.label_separator=';'", "trainer.max_steps=1", "trainer.batch_size=2"});
  std::ifstream saved(tmp.path() / "jsonl" / "checkpoints" / "step-00000001" / "config.json");
  EXPECT_EQ(nlohmann::json::parse(saved)["id2label"], nlohmann::json({{"0", "a|b"}, {"1", "c"}}));

  // Label smoothing is a single-label option; a score that is not a number is named.
  EXPECT_NE(perceiver::testing::error_of([&] { train(yaml("regression", "tags", "bad")); })
                .find("regression label 'soft' is not a finite number"),
            std::string::npos);
  EXPECT_NE(perceiver::testing::error_of([&] {
              train(yaml("regression", "score", "bad"), {"task.label_smoothing=0.1"});
            }).find("'task.label_smoothing' applies to single_label_classification only"),
            std::string::npos);
}

TEST(Trainer, FineTuningLoadsTheBodyAndReinitialisesAHeadOfAnotherShape) {
  TempDir tmp;
  auto write = [](const fs::path& file, int labels) {
    std::ofstream out(file);
    out << "text,label\n";
    for (int i = 0; i < 48; ++i) out << "sample text number " << i << "," << "class" << i % labels << "\n";
  };
  write(tmp.path() / "two.csv", 2);
  write(tmp.path() / "three.csv", 3);
  auto yaml = [&](const std::string& model, const std::string& csv, const std::string& dir) {
    return "model:\n" + model + "task: sequence_classification\n"
           "data:\n  seq_len: 32\n  train: {type: labelled_text, path: '" + (tmp.path() / csv).string() + "'}\n"
           "  eval: {type: labelled_text, path: '" + (tmp.path() / csv).string() + "'}\n"
           "optimizer: {lr: 0.0}\ntrainer: {max_steps: 1, batch_size: 8, threads: 1, num_workers: 0}\n"
           "logging: {run_dir: '" + (tmp.path() / dir).string() + "'}\n";
  };
  const std::string inline_model =
      "  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
      "    num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 32}\n";
  const auto source = Trainer(parse_run_config(yaml(inline_model, "two.csv", "base"), "a.yaml")).train().last_checkpoint;
  const auto tuned = Trainer(parse_run_config(
                                 yaml("  from: '" + source.string() + "'\n  freeze: ['perceiver.embeddings.*']\n",
                                      "three.csv", "tuned"),
                                 "b.yaml"))
                         .train()
                         .last_checkpoint;
  const auto before = io::load_safetensors(source / "model.safetensors");
  const auto after = io::load_safetensors(tuned / "model.safetensors");
  const std::string head = "perceiver.decoder.decoder.final_layer.weight";
  EXPECT_EQ(before.at(head).size(0), 2);
  EXPECT_EQ(after.at(head).size(0), 3);
  for (const auto& [name, t] : before) {
    if (name.find("final_layer") != std::string::npos) continue;
    EXPECT_TRUE(torch::equal(t, after.at(name))) << name << " was not loaded from the source checkpoint";
  }
}

TEST(Trainer, ResumeIsBitwiseExact) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 12, "");
  // One run of 12 steps with a checkpoint every 5 steps ...
  train(yaml, {"trainer.checkpoint_every=5"});
  const auto straight = tmp.path() / "run" / "checkpoints" / "step-00000012";
  ASSERT_TRUE(fs::exists(straight));
  // ... and a second run resumed from its step-5 checkpoint, in a fresh trainer and directory.
  train(yaml, {"trainer.checkpoint_every=5", "logging.run_dir=" + (tmp.path() / "resumed").string()},
        (tmp.path() / "run" / "checkpoints" / "step-00000005").string());
  const auto resumed = tmp.path() / "resumed" / "checkpoints" / "step-00000012";
  ASSERT_TRUE(fs::exists(resumed));
  const auto a = io::load_safetensors(straight / "model.safetensors");
  const auto b = io::load_safetensors(resumed / "model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name << " differs after resume";
}

TEST(Trainer, Bf16AutocastTrainsTheSameModelAndAMissingGpuIsNamed) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 4, "");
  const auto fp32 = train(yaml);
  const auto bf16 = train(yaml, {"trainer.precision=bf16", "logging.run_dir=" + (tmp.path() / "bf16").string()});
  ASSERT_TRUE(bf16.count("eval/loss"));
  // Same seed, same batches: bf16 matmuls change the loss by rounding, not by a different model.
  EXPECT_NEAR(bf16.at("eval/loss"), fp32.at("eval/loss"), 0.05 * fp32.at("eval/loss"));
  if (!torch::cuda::is_available()) {
    const auto msg = error_of([&] { train(yaml, {"trainer.device=cuda"}); });
    EXPECT_NE(msg.find("test.yaml: trainer.device"), std::string::npos) << msg;
  }
  const auto bad = error_of([&] { train(yaml, {"trainer.precision=fp16"}); });
  EXPECT_NE(bad.find("precision"), std::string::npos) << bad;
  // auto: the effective run file records what this machine's hardware chose.
  train(yaml, {"trainer.precision=auto", "logging.run_dir=" + (tmp.path() / "auto").string()});
  const auto effective = YAML::LoadFile((tmp.path() / "auto" / "config.yaml").string());
  const auto expected = device::choose_precision("auto", device::bf16_support(torch::kCPU)).precision;
  EXPECT_EQ(effective["trainer"]["precision"].as<std::string>(), device::to_string(expected));
}

// A run of 6 steps, continued with --resume auto to 9, ends where one uninterrupted run of 9 steps
// does. The learning rate must not depend on max_steps for that to be exact, so both use the
// constant schedule (its warm-up depends on the step alone); both evaluate and checkpoint every 3
// steps, so that the two do the same work in the same order.
TEST(Trainer, ResumeAutoContinuesFromTheLatestCheckpoint) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 6);
  const std::vector<std::string> same = {"schedule.name=constant", "trainer.checkpoint_every=3", "trainer.eval_every=3"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), same.begin(), same.end());
    return more;
  };
  train(yaml, with({"trainer.time_limit_minutes=0"}));
  auto run = parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(run, with({"trainer.max_steps=9"}));
  const auto result = Trainer(std::move(run)).train("auto");
  EXPECT_EQ(result.steps, 9);
  // This call trained steps 7 to 9 only: a fresh start would also end at step 9, after 9 steps.
  EXPECT_EQ(result.step_seconds.size(), 3u);
  EXPECT_EQ(result.last_checkpoint.filename(), "step-00000009");

  auto straight_run = parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(straight_run, with({"trainer.max_steps=9", "logging.run_dir=" + (tmp.path() / "straight").string()}));
  const auto straight = Trainer(std::move(straight_run)).train();
  ASSERT_EQ(straight.step_seconds.size(), 9u);
  // Weights, optimizer moments, dropout draws and data position all carried over: bitwise the same model.
  const auto a = io::load_safetensors(straight.last_checkpoint / "model.safetensors");
  const auto b = io::load_safetensors(result.last_checkpoint / "model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name << " differs from the uninterrupted run";
}

// A fresh run refuses a folder that holds an earlier run's checkpoints (it would rotate its own away and
// report the earlier run's as its last); this run's last checkpoint is the one it wrote.
TEST(Trainer, AFreshRunDoesNotMixWithAnEarlierRunsCheckpoints) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 4);
  const auto first = [&] {
    auto run = parse_run_config(yaml, "test.yaml");
    return Trainer(std::move(run)).train();
  }();
  EXPECT_EQ(first.last_checkpoint.filename(), "step-00000004");
  const auto again = error_of([&] { train(yaml); });
  EXPECT_NE(again.find("earlier run"), std::string::npos) << again;
  EXPECT_NE(again.find("step-00000004"), std::string::npos) << again;
  EXPECT_NE(again.find("--resume auto"), std::string::npos) << again;
  EXPECT_TRUE(fs::exists(tmp.path() / "run" / "checkpoints" / "step-00000004" / "model.safetensors"));
}

// TensorBoard's event files hold every metric of metrics.jsonl (tag, step, value as float32), the run
// file and the fill-ins as text; a run resumed from an earlier checkpoint into the same folder leaves
// no step twice, and logging.tensorboard: false writes none.
TEST(Trainer, TensorBoardEventsEqualMetricsJsonlAndAResumeRepeatsNoStep) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 12, "");
  train(yaml, {"trainer.checkpoint_every=5", "trainer.eval_every=5", "logging.log_every=2"});
  // As after a crash at step 12 whose last checkpoint was step 10: resume from step 5 (so that
  // steps 6-12 were logged once already) into the same folder.
  const auto run_dir = tmp.path() / "run";
  train(yaml, {"trainer.checkpoint_every=5", "trainer.eval_every=5", "logging.log_every=2"},
        (run_dir / "checkpoints" / "step-00000005").string());
  const auto events = read_tensorboard(run_dir / "tensorboard");
  ASSERT_EQ(events["files"].size(), 2u) << events["files"];
  EXPECT_EQ(events["file_versions"], nlohmann::json::array({"brain.Event:2", "brain.Event:2"}));

  std::multiset<std::tuple<std::string, int64_t, float>> expected, written;
  for (const auto& row : trainers::read_metrics_jsonl(run_dir / "metrics.jsonl"))
    for (const auto& [name, value] : row.values) expected.insert({name, row.step, static_cast<float>(value)});
  for (const auto& s : events["scalars"]) written.insert({s[0].get<std::string>(), s[1].get<int64_t>(), s[2].get<float>()});
  EXPECT_EQ(written, expected);
  std::set<int64_t> steps;
  for (const auto& [name, step, value] : written) steps.insert(step);
  EXPECT_EQ(steps, (std::set<int64_t>{2, 4, 5, 6, 8, 10, 12}));
  for (const char* tag : {"train/loss", "lr", "eval/loss", "eval/accuracy", "data_wait_fraction"})
    EXPECT_EQ(std::count_if(written.begin(), written.end(), [&](const auto& w) { return std::get<0>(w) == tag; }) > 0, true)
        << tag;

  std::map<std::string, std::set<int64_t>> texts;
  for (const auto& t : events["texts"]) {
    EXPECT_EQ(t[2], "text") << t;
    texts[t[0].get<std::string>()].insert(t[1].get<int64_t>());
  }
  EXPECT_EQ(texts["run_file"], std::set<int64_t>{0});
  EXPECT_EQ(texts["eval/fill_in_samples"], (std::set<int64_t>{5, 10, 12}));
  for (const auto& t : events["texts"])
    if (t[0] == "run_file") EXPECT_NE(t[3].get<std::string>().find("PerceiverForMaskedLM"), std::string::npos);

  train(yaml, {"logging.tensorboard=false", "logging.run_dir=" + (tmp.path() / "quiet").string()});
  EXPECT_FALSE(fs::exists(tmp.path() / "quiet" / "tensorboard"));
}

// A card's YAML front matter as an independent parser (Python's yaml, with python3-torch) reads it.
nlohmann::json card_front_matter(const fs::path& card) {
  const auto r = run_command("/usr/bin/python3 -c 'import json, sys, yaml; text = open(sys.argv[1]).read(); "
                             "assert text.startswith(\"---\\n\"); print(json.dumps(yaml.safe_load(text.split(\"\\n---\\n\")[0][4:])))' '" +
                             card.string() + "'");
  if (r.exit_code != 0) throw std::runtime_error("cannot read the front matter of " + card.string() + ": " + r.err);
  return nlohmann::json::parse(r.out);
}

// Every checkpoint carries a model card whose front matter holds the latest evaluation's results, equal
// to what the trainer logged; a checkpoint written after the evaluation, and after a resume, too.
TEST(Trainer, CheckpointsCarryAModelCardWithTheirEvaluation) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 8, "");
  train(yaml, {"trainer.checkpoint_every=3", "trainer.eval_every=4"});
  const auto run_dir = tmp.path() / "run";
  std::map<int64_t, std::map<std::string, double>> evals;  // step -> eval metrics, from metrics.jsonl
  for (const auto& row : trainers::read_metrics_jsonl(run_dir / "metrics.jsonl"))
    if (row.values.count("eval/loss"))
      for (const auto& [name, value] : row.values) evals[row.step][name.substr(5)] = value;
  ASSERT_EQ(evals.size(), 2u);  // steps 4 and 8
  const auto check = [&](const std::string& checkpoint, int64_t eval_step) {
    SCOPED_TRACE(checkpoint);
    const auto card_file = run_dir / "checkpoints" / checkpoint / "README.md";
    const auto front = card_front_matter(card_file);
    EXPECT_EQ(front["library_name"], "transformers");
    EXPECT_EQ(front["tags"], nlohmann::json::array({"perceiver", "perceiver-cpp"}));
    EXPECT_EQ(front["pipeline_tag"], "fill-mask");
    EXPECT_EQ(front["datasets"], nlohmann::json::array({"train.txt", "eval.txt"}));
    const auto& result = front["model-index"][0]["results"][0];
    EXPECT_EQ(result["task"]["type"], "fill-mask");
    EXPECT_EQ(result["dataset"]["name"], "eval.txt");
    EXPECT_EQ(result["dataset"]["split"], "eval");
    const auto& expected = evals.at(eval_step);
    std::map<std::string, double> written;
    for (const auto& m : result["metrics"]) {
      EXPECT_EQ(m["name"], m["type"]);
      written[m["name"].get<std::string>()] = m["value"].get<double>();
    }
    for (const auto& [name, value] : expected)
      if (name != "data_skipped") {
        ASSERT_TRUE(written.count(name)) << name;
        EXPECT_EQ(written.at(name), value) << name;  // exactly: the card writes the shortest exact decimal
      }
    EXPECT_EQ(written.size(), expected.size() - 1);
    for (const auto& [name, value] : written) EXPECT_NE(std::find(front["metrics"].begin(), front["metrics"].end(), name), front["metrics"].end());
    const auto body = slurp(card_file);
    EXPECT_NE(body.find("At step " + std::to_string(eval_step)), std::string::npos) << body;
    EXPECT_NE(body.find("PerceiverForMaskedLM.from_pretrained"), std::string::npos) << body;
    EXPECT_NE(body.find("perceiver predict --model"), std::string::npos) << body;
  };
  check("step-00000006", 4);  // written after the step-4 evaluation
  check("step-00000008", 8);
  // Not yet evaluated at step 3: a card without results.
  const auto early = card_front_matter(run_dir / "checkpoints" / "step-00000003" / "README.md");
  EXPECT_FALSE(early.contains("model-index"));
  // A resume from step 6 keeps the step-4 results until it evaluates again.
  train(yaml, {"trainer.checkpoint_every=1", "trainer.eval_every=4", "trainer.max_steps=8",
               "logging.run_dir=" + (tmp.path() / "resumed").string()},
        (run_dir / "checkpoints" / "step-00000006").string());
  const auto resumed = card_front_matter(tmp.path() / "resumed" / "checkpoints" / "step-00000007" / "README.md");
  EXPECT_EQ(resumed["model-index"][0]["results"][0]["metrics"], card_front_matter(run_dir / "checkpoints" / "step-00000006" / "README.md")["model-index"][0]["results"][0]["metrics"]);

  // An export of the checkpoint carries its card, with a section on the TorchScript file: beside an --out
  // file, and in a Triton model's folder.
  const auto checkpoint = run_dir / "checkpoints" / "step-00000008";
  const auto trained = card_front_matter(checkpoint / "README.md");
  const auto out = run_cli("export --model '" + checkpoint.string() + "' --out '" + (tmp.path() / "mlm.pt").string() + "'");
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(card_front_matter(tmp.path() / "mlm.README.md"), trained);
  EXPECT_NE(slurp(tmp.path() / "mlm.README.md").find("## TorchScript export"), std::string::npos);
  const auto triton = run_cli("export --model '" + checkpoint.string() + "' --triton '" + (tmp.path() / "repo").string() +
                              "' --name mlm");
  ASSERT_EQ(triton.exit_code, 0) << triton.err;
  EXPECT_EQ(card_front_matter(tmp.path() / "repo" / "mlm" / "README.md"), trained);
}

// model.from a masked-LM checkpoint: the token-classification head takes its preprocessor, encoder and
// decoder weights (with a learning rate of 0 they are unchanged after a step) and only the classifier is new.
TEST(Trainer, TokenClassificationFineTunesFromAMaskedLmCheckpoint) {
  TempDir tmp;
  train(mlm_run(tmp.path(), 2));
  const auto mlm = tmp.path() / "run" / "checkpoints" / "step-00000002";
  {
    std::ofstream out(tmp.path() / "spans.jsonl");
    for (int i = 0; i < 12; ++i)
      out << "{\"text\": \"the cat sat on mat " << i << "\", \"spans\": [{\"start\": 4, \"end\": 7, \"label\": \"ANIMAL\"}]}\n";
  }
  const auto jsonl = (tmp.path() / "spans.jsonl").string();
  const std::string yaml = "model: {architecture: PerceiverForTokenClassification, from: '" + mlm.string() + "'}\n"
                           "task: token_classification\n"
                           "data:\n  train: {type: jsonl, path: '" + jsonl + "'}\n  eval: {type: jsonl, path: '" + jsonl + "'}\n"
                           "optimizer: {name: sgd, lr: 0.0}\n"
                           "trainer: {max_steps: 1, batch_size: 4, threads: 1, num_workers: 0}\n"
                           "logging: {run_dir: '" + (tmp.path() / "tok").string() + "'}\n";
  const auto metrics = train(yaml);
  EXPECT_TRUE(metrics.count("eval/entity_f1"));
  const auto before = io::load_safetensors(mlm / "model.safetensors");
  const auto after = io::load_safetensors(tmp.path() / "tok" / "checkpoints" / "step-00000001" / "model.safetensors");
  int shared = 0;
  for (const auto& [name, t] : after) {
    if (name.rfind("classifier.", 0) == 0) {
      EXPECT_FALSE(before.count(name)) << name;
      continue;
    }
    ASSERT_TRUE(before.count(name)) << name << " is neither the MLM's nor the classifier";
    EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
    ++shared;
  }
  EXPECT_GT(shared, 10);
  const auto config = nlohmann::json::parse(slurp(tmp.path() / "tok" / "checkpoints" / "step-00000001" / "config.json"));
  EXPECT_EQ(config["id2label"].size(), 3u);  // O, B-ANIMAL, I-ANIMAL
}

// task.decode: viterbi reads each held-out text's entities from its likeliest valid IOB2 tags (and reports their
// accuracy); predict on the checkpoint decodes the same way unless --decode says otherwise.
TEST(Trainer, TokenClassificationDecodesValidIob2WithViterbi) {
  TempDir tmp;
  {
    std::ofstream out(tmp.path() / "spans.jsonl");
    for (int i = 0; i < 24; ++i)
      out << "{\"text\": \"the big cat sat on the red mat " << i << "\", \"spans\": [{\"start\": 4, \"end\": 11, "
          << "\"label\": \"ANIMAL\"}, {\"start\": 23, \"end\": 30, \"label\": \"THING\"}]}\n";
  }
  const auto jsonl = (tmp.path() / "spans.jsonl").string();
  const std::string yaml = "model:\n  architecture: PerceiverForTokenClassification\n"
                           "  config: {d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
                           "           num_self_attention_heads: 2, num_cross_attention_heads: 2, max_position_embeddings: 16}\n"
                           "task: {name: token_classification, window_overlap: 4, decode: viterbi}\n"
                           "data:\n  train: {type: jsonl, path: '" + jsonl + "'}\n  eval: {type: jsonl, path: '" + jsonl + "'}\n"
                           "optimizer: {name: adamw, lr: 0.003}\n"
                           "trainer: {max_steps: 3, batch_size: 8, threads: 1, num_workers: 0}\n"
                           "logging: {run_dir: '" + (tmp.path() / "tok").string() + "'}\n";
  const auto viterbi = train(yaml);
  ASSERT_TRUE(viterbi.count("eval/decoded_accuracy"));
  EXPECT_GE(viterbi.at("eval/decoded_accuracy"), 0.0);
  EXPECT_LE(viterbi.at("eval/decoded_accuracy"), 1.0);
  EXPECT_TRUE(viterbi.count("eval/entity_f1"));
  // The held-out texts shown with their true and predicted entities.
  std::string samples;
  for (const auto& f : fs::recursive_directory_iterator(tmp.path() / "tok"))
    if (f.path().filename() == "tagged_samples.txt") samples = slurp(f.path());
  EXPECT_NE(samples.find("text 0: the big cat sat on the red mat 0\n"), std::string::npos) << samples;
  EXPECT_NE(samples.find("truth: [ANIMAL 4-11] big cat [THING 23-30] red mat"), std::string::npos) << samples;
  EXPECT_NE(samples.find("  predicted:"), std::string::npos) << samples;
  const auto argmax = train(yaml, {"task.decode=argmax", "logging.run_dir=" + (tmp.path() / "argmax").string()});
  EXPECT_FALSE(argmax.count("eval/decoded_accuracy"));
  EXPECT_EQ(argmax.at("eval/accuracy"), viterbi.at("eval/accuracy"));  // per byte, the same model either way
  const auto message = perceiver::testing::error_of([&] { train(yaml, {"task.decode=crf"}); });
  EXPECT_NE(message.find("task.decode"), std::string::npos) << message;
  EXPECT_NE(message.find("'crf'"), std::string::npos) << message;

  // predict: every byte's label (aggregation none) from the checkpoint's viterbi is valid IOB2: an I-X byte
  // follows a B-X or I-X byte; the untrained model's argmax need not be.
  const auto checkpoint = tmp.path() / "tok" / "checkpoints" / "step-00000003";
  const std::string text = "a big cat and a red mat, then a big cat again on the mat";
  auto labels_of = [&](const std::string& flags) {
    const auto out = run_cli("predict --model '" + checkpoint.string() + "' --aggregation none --json " + flags + " '" + text + "'");
    EXPECT_EQ(out.exit_code, 0) << out.err;
    std::vector<std::string> labels(text.size(), "O");
    for (const auto& e : nlohmann::json::parse(out.out)[0]["entities"])
      labels[e["byte_start"].get<size_t>()] = e["label"].get<std::string>();
    return labels;
  };
  const auto valid = [](const std::vector<std::string>& labels) {
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i].rfind("I-", 0) == 0 && (i == 0 || labels[i - 1].substr(1) != labels[i].substr(1))) return false;
    return true;
  };
  EXPECT_TRUE(valid(labels_of("")));
  EXPECT_TRUE(valid(labels_of("--decode viterbi")));
  const auto bad = run_cli("predict --model '" + checkpoint.string() + "' --aggregation average '" + text + "'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("average"), std::string::npos) << bad.err;  // so the default was the checkpoint's viterbi
  EXPECT_EQ(run_cli("predict --model '" + checkpoint.string() + "' --decode argmax --aggregation average '" + text + "'").exit_code, 0);
}

TEST(Trainer, UnknownKeyNamesFileLineAndSuggestion) {
  TempDir tmp;
  auto yaml = mlm_run(tmp.path(), 5);
  yaml.replace(yaml.find("max_steps"), 9, "max_step");
  try {
    train(yaml);
    FAIL() << "expected a config error";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("test.yaml:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("trainer.max_step"), std::string::npos) << msg;
    EXPECT_NE(msg.find("trainer.max_steps"), std::string::npos) << msg;
  }
}

TEST(Trainer, WrongTypesAndBadSourcesAreNamed) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 5);
  auto error = [&](const std::vector<std::string>& overrides) {
    try {
      train(yaml, overrides);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error({"trainer.batch_size=lots"}).find("trainer.batch_size"), std::string::npos);
  EXPECT_NE(error({"task.name=translation"}).find("translation"), std::string::npos);
  EXPECT_NE(error({"data.train.type=pdf"}).find("pdf"), std::string::npos);
  EXPECT_NE(error({"data.train.colour=red"}).find("data.train.colour"), std::string::npos);
  EXPECT_NE(error({"model.config.d_latents=33"}).find("d_latents"), std::string::npos);
  EXPECT_NE(error({"data.train.path=/nonexistent/corpus.txt"}).find("/nonexistent/corpus.txt"), std::string::npos);
}

TEST(Trainer, InitStdIsAppliedAndItsErrorsAreNamed) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 1);
  auto error = [&](const std::vector<std::string>& overrides) {
    return perceiver::testing::error_of([&] { train(yaml, overrides); });
  };
  EXPECT_EQ(error({"model.init_std={'*conv*': 1.0}"}),
            "test.yaml: 'model.init_std': pattern '*conv*' matches no parameter");
  EXPECT_EQ(error({"model.init_std={'*latents': x}"}),
            "test.yaml (command-line override): 'model.init_std' must map each pattern to a float, found '*latents' -> 'x'");
  // Training with lr 0 leaves the drawn latents in the checkpoint.
  train(yaml, {"model.init_std={'*latents': 0.5}", "optimizer.lr=0.0"});
  const auto checkpoint = tmp.path() / "run" / "checkpoints" / "step-00000001";
  const auto weights = perceiver::io::load_state_dict(checkpoint);
  EXPECT_NEAR(weights.at("perceiver.embeddings.latents").std().item<double>(), 0.5, 0.08);
  EXPECT_NEAR(weights.at("perceiver.encoder.cross_attention.attention.self.query.weight").std().item<double>(), 0.02, 0.005);
  EXPECT_EQ(error({"model.init_std={'*latents': 0.5}", "model.from=" + checkpoint.string()}),
            "test.yaml: 'model.init_std' applies to a freshly initialised model, not to 'model.from'");
}

TEST(Trainer, NonFiniteLossStopsWithoutACheckpointForThatStep) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path(), 20);
  try {
    train(yaml, {"optimizer.lr=1e30", "optimizer.name=sgd", "trainer.clip_grad_norm=0", "schedule.warmup_steps=0",
                 "trainer.checkpoint_every=1"});
    FAIL() << "expected the run to stop";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    ASSERT_NE(msg.find("non-finite loss at step"), std::string::npos) << msg;
    const auto step = std::stoi(msg.substr(msg.find("at step ") + 8));
    EXPECT_FALSE(fs::exists(tmp.path() / "run" / "checkpoints" / fmt::format("step-{:08d}", step)));
  }
}

TEST(Trainer, CliTrainEvaluateAndPredictOnACheckpoint) {
  TempDir tmp;
  std::ofstream(tmp.path() / "run.yaml") << mlm_run(tmp.path(), 4);
  const auto trained = run_cli("train --config '" + (tmp.path() / "run.yaml").string() + "' trainer.max_steps=3");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const auto summary = nlohmann::json::parse(trained.out);
  EXPECT_EQ(summary.at("steps"), 3);
  const auto checkpoint = summary.at("checkpoint").get<std::string>();
  ASSERT_TRUE(fs::exists(fs::path(checkpoint) / "model.safetensors"));

  const auto evaluated = run_cli("evaluate --config '" + (tmp.path() / "run.yaml").string() + "' --checkpoint '" +
                                 checkpoint + "'");
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.err;
  const auto metrics = nlohmann::json::parse(evaluated.out);
  EXPECT_NEAR(metrics.at("eval/loss").get<double>(), summary.at("metrics").at("eval/loss").get<double>(), 1e-6);

  // A run trained with a model.config override evaluates without it: the checkpoint's config.json defines the model.
  const auto wider = run_cli("train --config '" + (tmp.path() / "run.yaml").string() +
                             "' trainer.max_steps=1 model.config.d_latents=48 logging.run_dir='" +
                             (tmp.path() / "wider").string() + "'");
  ASSERT_EQ(wider.exit_code, 0) << wider.err;
  const auto wider_summary = nlohmann::json::parse(wider.out);
  const auto wider_evaluated = run_cli("evaluate --config '" + (tmp.path() / "run.yaml").string() + "' --checkpoint '" +
                                       wider_summary.at("checkpoint").get<std::string>() + "'");
  ASSERT_EQ(wider_evaluated.exit_code, 0) << wider_evaluated.err;
  EXPECT_NEAR(nlohmann::json::parse(wider_evaluated.out).at("eval/loss").get<double>(),
              wider_summary.at("metrics").at("eval/loss").get<double>(), 1e-6);

  const auto predicted = run_cli("predict --json --model '" + checkpoint + "' 'the cat [MASK][MASK][MASK] on the mat.'");
  ASSERT_EQ(predicted.exit_code, 0) << predicted.err;
  const auto fills = nlohmann::json::parse(predicted.out);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_FALSE(fills[0].at("predicted").get<std::string>().empty());
  const auto filled = fills[0].at("filled").get<std::string>();
  EXPECT_EQ(filled.substr(0, 8), "the cat ");
  EXPECT_EQ(filled.substr(filled.size() - 12), " on the mat.");
  EXPECT_EQ(run_cli("plot '" + (tmp.path() / "run").string() + "'").exit_code, 0);
  EXPECT_TRUE(fs::exists(tmp.path() / "run" / "plots"));
}

// `perceiver prepare-data` builds the run's text indexes; training then reuses them instead of indexing.
TEST(Trainer, CliPrepareDataIndexesOnceForTheRunsThatFollow) {
  TempDir tmp;
  std::ofstream(tmp.path() / "run.yaml") << mlm_run(tmp.path(), 2);
  const auto prepared = run_cli("prepare-data --config '" + (tmp.path() / "run.yaml").string() + "'");
  ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
  EXPECT_NE(nlohmann::json::parse(prepared.out).at("data").get<std::string>().find("train"), std::string::npos);
  EXPECT_NE(prepared.err.find("indexed text corpus"), std::string::npos) << prepared.err;
  const auto trained = run_cli("train --config '" + (tmp.path() / "run.yaml").string() + "'");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  EXPECT_EQ(trained.err.find("indexed text corpus"), std::string::npos) << trained.err;
  // A changed corpus is indexed again.
  write_corpus(tmp.path() / "train.txt", 300, 7);
  const auto changed = run_cli("train --config '" + (tmp.path() / "run.yaml").string() + "' logging.run_dir='" +
                               (tmp.path() / "run2").string() + "'");
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_NE(changed.err.find("re-indexing"), std::string::npos) << changed.err;
  const auto neither = run_cli("prepare-data");
  EXPECT_NE(neither.exit_code, 0);
  EXPECT_NE(neither.err.find("--config"), std::string::npos) << neither.err;
}

TEST(Trainer, CliTrainReportsConfigErrorsInOneLine) {
  TempDir tmp;
  std::ofstream(tmp.path() / "bad.yaml") << "model: {config: {d_model: 32}}\ntask: mlm\ntrainer: {batch_sise: 4}\n";
  const auto r = run_cli("train --config '" + (tmp.path() / "bad.yaml").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("batch_size"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bad.yaml:3"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace perceiver::testing
