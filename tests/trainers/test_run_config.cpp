#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_support.h"
#include "trainers/run_config_util.h"
#include "trainers/task_options.h"

namespace {

using namespace perceiver::trainers;

const char* kSchema = R"(
model:
  num_latents: int
  d_latents: int
  dropout: float
  kind: enum[text, image, audio]
optimizer:
  name: [adamw, lamb, sgd]
  lr: float
  betas: list[float]
  nesterov: bool
trainer:
  max_steps: int
  run_name: string
  extra: map
  tags: list
)";

// Expects check_schema to fail with exactly these problem lines.
void expect_problems(const RunConfig& config, const std::vector<std::string>& expected) {
  try {
    check_schema(config, Schema::from_yaml(kSchema));
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.problems(), expected);
  }
}

RunConfig write_and_load(const perceiver::testing::TempDir& dir, const std::string& text) {
  const auto file = dir.path() / "run.yaml";
  std::ofstream(file) << text;
  return load_run_config(file);
}

TEST(TrainRunConfig, ValidConfigPasses) {
  const auto c = parse_run_config(
      "model: {num_latents: 64, d_latents: 128, dropout: 0.1, kind: text}\n"
      "optimizer: {name: lamb, lr: 1e-3, betas: [0.9, 0.99], nesterov: false}\n"
      "trainer: {max_steps: 10, run_name: x, extra: {anything: [1, 2]}, tags: [a, 1]}\n");
  EXPECT_NO_THROW(check_schema(c, Schema::from_yaml(kSchema)));
}

TEST(TrainRunConfig, UnknownKeySuggestsClosestWithFileAndLine) {
  perceiver::testing::TempDir dir;
  const auto c = write_and_load(dir, "model:\n  num_latents: 64\n  num_latent: 32\noptimzer:\n  lr: 0.1\n");
  const std::string file = (dir.path() / "run.yaml").string();
  expect_problems(c, {file + ":3: unknown key 'model.num_latent' (did you mean 'model.num_latents'?)",
                      file + ":4: unknown key 'optimzer' (did you mean 'optimizer'?)"});
}

TEST(TrainRunConfig, UnknownKeyFarFromAnyListsValidKeys) {
  const auto c = parse_run_config("trainer:\n  zzzzzzzzzzzz: 1\n", "r.yaml");
  expect_problems(c, {"r.yaml:2: unknown key 'trainer.zzzzzzzzzzzz' (valid keys under 'trainer': extra, max_steps, "
                      "run_name, tags)"});
}

TEST(TrainRunConfig, WrongTypesNameKeyFileAndLine) {
  const auto c = parse_run_config(
      "model:\n  num_latents: 1.5\n  dropout: high\noptimizer:\n  nesterov: maybe\n  betas: 0.9\n"
      "trainer:\n  run_name: [a]\n  max_steps: {a: 1}\n",
      "r.yaml");
  expect_problems(c, {"r.yaml:2: 'model.num_latents' must be int, found '1.5'",
                      "r.yaml:3: 'model.dropout' must be float, found 'high'",
                      "r.yaml:5: 'optimizer.nesterov' must be bool, found 'maybe'",
                      "r.yaml:6: 'optimizer.betas' must be a list of float, found '0.9'",
                      "r.yaml:8: 'trainer.run_name' must be string, found a list",
                      "r.yaml:9: 'trainer.max_steps' must be int, found a map"});
}

TEST(TrainRunConfig, ListItemsAndEnumsAreChecked) {
  const auto c = parse_run_config("optimizer:\n  name: adam\n  betas: [0.9,\n    x]\nmodel:\n  kind: [text]\n", "r.yaml");
  expect_problems(c, {"r.yaml:2: 'optimizer.name' must be one of adamw, lamb, sgd, found 'adam' (did you mean 'adamw'?)",
                      "r.yaml:4: 'optimizer.betas[1]' must be float, found 'x'",
                      "r.yaml:6: 'model.kind' must be one of text, image, audio, found a list"});
}

TEST(TrainRunConfig, OverridesSetNestedValuesAndAreBlamedInErrors) {
  auto c = parse_run_config("model:\n  num_latents: 64\n", "r.yaml");
  apply_overrides(c, {"model.num_latents=128", "optimizer.betas=[0.9, 0.95]", "trainer.run_name=exp1",
                      "model.dropout=lots"});
  EXPECT_EQ(lookup(c.root, "model.num_latents").as<int>(), 128);
  EXPECT_EQ(lookup(c.root, "optimizer.betas").as<std::vector<double>>(), (std::vector<double>{0.9, 0.95}));
  EXPECT_EQ(lookup(c.root, "trainer.run_name").as<std::string>(), "exp1");
  EXPECT_FALSE(lookup(c.root, "trainer.nope").IsDefined());
  EXPECT_EQ(lookup(c.root, "trainer.nope").as<int>(7), 7);  // the idiom for optional settings
  EXPECT_FALSE(lookup(c.root, "model.num_latents.deeper").IsDefined());
  expect_problems(c, {"override 'model.dropout=lots': 'model.dropout' must be float, found 'lots'"});
}

TEST(TrainRunConfig, TaskSectionsBlameOverridesAndSuggestKeys) {
  auto c = parse_run_config("task:\n  name: optical_flow\n  flow_scale: 20\n", "r.yaml");
  apply_overrides(c, {"task.flow_scale=-1", "task.note='12'"});
  const perceiver::datasets::OptionSpecs declared = {{"name", "string", "", "the task", true},
                                                     {"flow_scale", "float", "20", "flow / flow_scale"},
                                                     {"note", "string", "", "a note"}};
  TaskSection task(c.root["task"], "r.yaml", "task", declared);
  EXPECT_EQ(task.get<std::string>("note", ""), "12");  // quoted on the command line: stays a string
  // A value from the command line is not blamed on line 1 of the file.
  auto bad = perceiver::testing::error_of([&] { task.fail("flow_scale", "must be positive"); });
  EXPECT_EQ(bad, "r.yaml (command-line override): 'task.flow_scale' must be positive");
  bad = perceiver::testing::error_of([&] { task.fail("name", "is unknown"); });
  EXPECT_EQ(bad, "r.yaml:2: 'task.name' is unknown");

  auto typo = parse_run_config("task:\n  name: optical_flow\n  flow_scal: 20\n", "r.yaml");
  TaskSection t2(typo.root["task"], "r.yaml", "task", {declared[0], declared[1]});
  EXPECT_EQ(t2.get<double>("flow_scale"), 20.0);  // the declared default
  const auto m = perceiver::testing::error_of([&] { t2.finish(); });
  EXPECT_EQ(m, "r.yaml:3: 'task.flow_scal' is not a known key here (did you mean 'flow_scale'? known: flow_scale, name)");
}

TEST(TrainRunConfig, BadOverridesAndSyntaxErrors) {
  auto c = parse_run_config("model:\n  num_latents: 64\n", "r.yaml");
  EXPECT_THROW(apply_override(c, "model.num_latents"), ConfigError);
  EXPECT_THROW(apply_override(c, "model..x=1"), ConfigError);
  EXPECT_THROW(apply_override(c, "model.num_latents.x=1"), ConfigError);
  try {
    apply_override(c, "model.num_latents.x=1");
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "override 'model.num_latents.x=1': 'model.num_latents' is '64', not a map");
  }
  try {
    parse_run_config("model:\n  a: [1, 2\n", "bad.yaml");
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("bad.yaml:", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("YAML syntax error"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_run_config("/nonexistent/run.yaml"), ConfigError);
  EXPECT_THROW(Schema::from_yaml("a: integer"), std::invalid_argument);
}

TEST(TrainRunConfig, EffectiveConfigRoundTrips) {
  perceiver::testing::TempDir dir;
  auto c = parse_run_config("model:\n  num_latents: 64\noptimizer: {name: lamb}\n");
  apply_override(c, "optimizer.betas=[0.9, 0.95]");
  write_yaml(c.root, dir.path() / "config.yaml");
  const auto back = load_run_config(dir.path() / "config.yaml");
  EXPECT_EQ(to_yaml(back.root), to_yaml(c.root));
  EXPECT_EQ(lookup(back.root, "optimizer.betas").as<std::vector<double>>(), (std::vector<double>{0.9, 0.95}));
  EXPECT_NO_THROW(check_schema(back, Schema::from_yaml(kSchema)));
}

TEST(TrainRunConfig, Levenshtein) {
  EXPECT_EQ(levenshtein("kitten", "sitting"), 3u);
  EXPECT_EQ(levenshtein("", "abc"), 3u);
  EXPECT_EQ(levenshtein("lr", "lr"), 0u);
}

}  // namespace
