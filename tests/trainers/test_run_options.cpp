// The run file's options are declared once (trainers/run_options.h): the schema check, the defaults,
// the effective config, `perceiver train --help-config` and docs/run-files.md all come from the tables.
#include <gtest/gtest.h>

#include "tests/test_support.h"
#include "trainers/run_config_util.h"
#include "trainers/run_options.h"
#include "trainers/trainer.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;
using namespace perceiver::trainers;

// A key added to a table is accepted (and type-checked) by the schema, listed by the help and
// documented: all three are read from the one table.
TEST(RunOptions, OneTableFeedsTheSchemaTheHelpAndTheDocs) {
  auto sections = trainer_sections();
  const auto run = parse_run_config("trainer: {brand_new_key: 5}\n", "new.yaml");
  const auto unknown = error_of([&] { check_schema(run, schema_of(sections)); });
  EXPECT_NE(unknown.find("new.yaml:1"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("brand_new_key"), std::string::npos) << unknown;
  EXPECT_EQ(help_text(sections).find("brand_new_key"), std::string::npos);

  for (auto& s : sections)
    if (s.path == "trainer") s.options.push_back({"brand_new_key", "int", "3", "a key added for this test"});
  EXPECT_NO_THROW(check_schema(run, schema_of(sections)));
  const auto wrong = error_of(
      [&] { check_schema(parse_run_config("trainer: {brand_new_key: many}\n", "new.yaml"), schema_of(sections)); });
  EXPECT_NE(wrong.find("'trainer.brand_new_key' must be int"), std::string::npos) << wrong;
  const auto help = help_text(sections);
  EXPECT_NE(help.find("brand_new_key"), std::string::npos);
  EXPECT_NE(help.find("a key added for this test"), std::string::npos);
  EXPECT_NE(markdown(sections).find("| `brand_new_key` | int | `3` | a key added for this test |"), std::string::npos);
}

// The trainer's schema is the table's: every declared key is accepted, and the CLI's help lists them all.
TEST(RunOptions, HelpConfigListsEveryDeclaredKey) {
  const auto r = run_cli("train --help-config");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, help_text(all_sections()));
  for (const auto& s : all_sections()) {
    EXPECT_NE(r.out.find(s.title + ": "), std::string::npos) << s.title;
    for (const auto& o : s.options) {
      EXPECT_NE(r.out.find("  " + o.key + " "), std::string::npos) << s.title << "." << o.key;
      EXPECT_FALSE(o.help.empty()) << s.title << "." << o.key;
    }
  }
  // For one run file: its task's keys and only the sources it names.
  TempDir tmp;
  write_file(tmp.path() / "run.yaml",
             "model: {config: {d_model: 32}}\ntask: mlm\ndata: {train: {type: kjv}, eval: {type: kjv, split: validation}}\n");
  const auto one = run_cli("train --help-config --config '" + (tmp.path() / "run.yaml").string() + "'");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.out.find("task: mlm:"), std::string::npos) << one.out;
  EXPECT_NE(one.out.find("type kjv "), std::string::npos) << one.out;
  EXPECT_EQ(one.out.find("type jsonl "), std::string::npos) << one.out;
  EXPECT_EQ(one.out.find("sequence_classification:"), std::string::npos) << one.out;
}

// docs/run-files.md is the generated page (regenerate: perceiver train --help-config --markdown > docs/run-files.md).
TEST(RunOptions, DocsRunFilesIsUpToDate) {
  const auto page = slurp(fs::path(PERCEIVER_SOURCE_DIR) / "docs" / "run-files.md");
  const auto generated = markdown(all_sections());
#if PERCEIVER_WITH_OPENCV
  EXPECT_EQ(page, generated) << "docs/run-files.md is out of date: perceiver train --help-config --markdown > docs/run-files.md";
#else  // this build lacks the vision tasks: their sections are the page's extra ones
  for (const auto& s : all_sections()) EXPECT_NE(page.find("## " + s.title + "\n"), std::string::npos) << s.title;
#endif
}

// The effective config.yaml of a run carries every declared default the run file left out.
TEST(RunOptions, EffectiveConfigCarriesTheDeclaredDefaults) {
  TempDir tmp;
  write_file(tmp.path() / "train.txt", std::string(4000, 'a'));
  const auto yaml = "model:\n  config: {d_model: 16, d_latents: 16, num_latents: 4, num_self_attends_per_block: 1,\n"
                    "    num_self_attention_heads: 1, num_cross_attention_heads: 1, max_position_embeddings: 16}\n"
                    "task: mlm\n"
                    "data:\n  seq_len: 16\n"
                    "  train: {type: text, path: '" + (tmp.path() / "train.txt").string() + "'}\n"
                    "  eval: {type: text, path: '" + (tmp.path() / "train.txt").string() + "'}\n"
                    "trainer: {max_steps: 2, batch_size: 4, eval_max_batches: 1}\n"
                    "logging: {run_dir: '" + (tmp.path() / "run").string() + "'}\n";
  Trainer(parse_run_config(yaml, "run.yaml")).train();
  const auto effective = YAML::LoadFile((tmp.path() / "run" / "config.yaml").string());
  for (const auto& s : trainer_sections()) {
    if (s.path == "task") continue;
    for (const auto& o : s.options) {
      if (o.default_value.empty() || s.path + "." + o.key == "trainer.precision") continue;  // precision: what was chosen
      const auto value = lookup(effective, s.path + "." + o.key);
      ASSERT_TRUE(value.IsDefined()) << s.path << "." << o.key;
      if (s.path + "." + o.key == "trainer.max_steps" || s.path + "." + o.key == "trainer.batch_size" ||
          s.path + "." + o.key == "trainer.eval_max_batches")
        continue;  // set by the run file
      EXPECT_EQ(YAML::Dump(value), YAML::Dump(YAML::Load(o.default_value))) << s.path << "." << o.key;
    }
  }
  EXPECT_EQ(effective["task"]["name"].as<std::string>(), "mlm");  // task: mlm became a map with its defaults
  EXPECT_GT(effective["task"].size(), 1u);
  EXPECT_EQ(effective["logging"]["run_dir"].as<std::string>(), (tmp.path() / "run").string());
  EXPECT_THROW(trainer_option("trainer.no_such_key"), std::logic_error);
}

}  // namespace
}  // namespace perceiver::testing
