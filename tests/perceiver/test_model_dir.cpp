// Loading HF model directories: strictness, error messages, and the CLI's one-line failures.
#include <gtest/gtest.h>

#include <fstream>

#include "perceiver/models/model_dir.h"
#include "perceiver/io/safetensors.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

const fs::path& mlm_fixture() {
  static const fs::path dir = hf_fixtures_dir() / "PerceiverForMaskedLM";
  return dir;
}

// A copy of the MLM fixture whose weights are `edit`ed first.
fs::path edited_copy(const TempDir& tmp, const std::function<void(io::TensorMap&)>& edit) {
  const auto dir = tmp.path() / "model";
  fs::create_directories(dir);
  fs::copy_file(mlm_fixture() / "config.json", dir / "config.json");
  auto tensors = io::load_safetensors(mlm_fixture() / "model.safetensors");
  edit(tensors);
  io::save_safetensors(dir / "model.safetensors", tensors);
  return dir;
}

std::string load_error(const fs::path& dir, bool strict = true) {
  try {
    io::LoadOptions o;
    o.strict = strict;
    io::load_pretrained(dir, o);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

const char* kLatents = "perceiver.embeddings.latents";

TEST(ModelDir, MissingTensorIsNamed) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap& t) { t.erase(kLatents); });
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find(kLatents), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(ModelDir, WrongShapeNamesTensorAndBothShapes) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap& t) { t[kLatents] = torch::zeros({3, 5}); });
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find(kLatents), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[8, 32]"), std::string::npos) << msg;
}

TEST(ModelDir, UnexpectedTensorIsNamed) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap& t) { t["perceiver.extra.weight"] = torch::zeros({2}); });
  EXPECT_NE(load_error(dir).find("perceiver.extra.weight"), std::string::npos);
}

TEST(ModelDir, NonStrictReportsWhatWasSkipped) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap& t) {
    t[kLatents] = torch::zeros({3, 5});
    t.erase("embedding_decoder.bias");
    t["unused"] = torch::zeros({1});
  });
  io::LoadOptions o;
  o.strict = false;
  io::LoadReport report;
  auto model = io::load_pretrained(dir, o, &report);
  ASSERT_EQ(report.mismatched.size(), 1u);
  EXPECT_NE(report.mismatched[0].find(kLatents), std::string::npos);
  EXPECT_EQ(report.missing, std::vector<std::string>{"embedding_decoder.bias"});
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"unused"});
  EXPECT_NE(report.summary().find("embedding_decoder.bias"), std::string::npos);
  // Loaded tensors hold the file's values.
  const auto file = io::load_safetensors(mlm_fixture() / "model.safetensors");
  const auto sd = io::state_dict(*model);
  const std::string key = "perceiver.input_preprocessor.embeddings.weight";
  EXPECT_TRUE(torch::equal(sd.at(key), file.at(key)));
}

TEST(ModelDir, HalfPrecisionCheckpointIsConvertedToTheModelsDtype) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap& t) { t[kLatents] = t[kLatents].to(torch::kHalf); });
  auto model = io::load_pretrained(dir);
  const auto original = io::load_safetensors(mlm_fixture() / "model.safetensors").at(kLatents);
  const auto loaded = io::state_dict(*model).at(kLatents);
  EXPECT_EQ(loaded.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(loaded, original, 1e-3, 1e-3));
}

TEST(ModelDir, MissingFilesAreReported) {
  TempDir tmp;
  EXPECT_NE(load_error(tmp.path() / "absent").find("not a model directory"), std::string::npos);
  EXPECT_NE(load_error(tmp.path()).find("config.json"), std::string::npos);
  fs::copy_file(mlm_fixture() / "config.json", tmp.path() / "config.json");
  EXPECT_NE(load_error(tmp.path()).find("model.safetensors"), std::string::npos);
}

// ---- the CLI: one clear line on stderr and a non-zero exit for bad input ----

void expect_one_line_failure(const CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << r.err;
}

std::string infer_args(const fs::path& model, const fs::path& inputs, const fs::path& out) {
  return "infer --model '" + model.string() + "' --inputs '" + inputs.string() + "' --output '" + out.string() + "'";
}

TEST(CliInferErrors, MissingModelDirectory) {
  TempDir tmp;
  expect_one_line_failure(run_cli(infer_args(tmp.path() / "nope", mlm_fixture() / "inputs.safetensors", tmp.path() / "o")),
                          "nope");
}

TEST(CliInferErrors, ConfigWithWrongType) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap&) {});
  std::ifstream in(dir / "config.json");
  auto doc = nlohmann::json::parse(in);
  doc["d_latents"] = "thirty-two";
  std::ofstream(dir / "config.json") << doc.dump();
  expect_one_line_failure(run_cli(infer_args(dir, mlm_fixture() / "inputs.safetensors", tmp.path() / "o")), "d_latents");
}

TEST(CliInferErrors, UnknownArchitecture) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap&) {});
  std::ifstream in(dir / "config.json");
  auto doc = nlohmann::json::parse(in);
  doc["architectures"] = {"PerceiverForTimeTravel"};
  std::ofstream(dir / "config.json") << doc.dump();
  expect_one_line_failure(run_cli(infer_args(dir, mlm_fixture() / "inputs.safetensors", tmp.path() / "o")),
                          "PerceiverForTimeTravel");
}

TEST(CliInferErrors, CorruptWeights) {
  TempDir tmp;
  const auto dir = edited_copy(tmp, [](io::TensorMap&) {});
  fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") / 2);
  expect_one_line_failure(run_cli(infer_args(dir, mlm_fixture() / "inputs.safetensors", tmp.path() / "o")),
                          "model.safetensors");
}

TEST(CliInferErrors, InputOfWrongShapeOrDtype) {
  TempDir tmp;
  auto inputs = io::load_safetensors(mlm_fixture() / "inputs.safetensors");
  auto bad_mask = inputs;
  bad_mask["attention_mask"] = torch::ones({2, 7}, torch::kLong);
  io::save_safetensors(tmp.path() / "mask.safetensors", bad_mask);
  expect_one_line_failure(run_cli(infer_args(mlm_fixture(), tmp.path() / "mask.safetensors", tmp.path() / "o")),
                          "attention_mask");
  auto bad_dtype = inputs;
  bad_dtype["inputs"] = inputs["inputs"].to(torch::kFloat32);
  io::save_safetensors(tmp.path() / "dtype.safetensors", bad_dtype);
  expect_one_line_failure(run_cli(infer_args(mlm_fixture(), tmp.path() / "dtype.safetensors", tmp.path() / "o")),
                          "dtype");
  auto too_long = inputs;
  too_long["inputs"] = torch::zeros({1, 40}, torch::kLong);
  too_long.erase("attention_mask");
  too_long.erase("labels");
  io::save_safetensors(tmp.path() / "long.safetensors", too_long);
  expect_one_line_failure(run_cli(infer_args(mlm_fixture(), tmp.path() / "long.safetensors", tmp.path() / "o")),
                          "max_position_embeddings");
  auto unknown = inputs;
  unknown["pixels"] = torch::zeros({1});
  io::save_safetensors(tmp.path() / "unknown.safetensors", unknown);
  expect_one_line_failure(run_cli(infer_args(mlm_fixture(), tmp.path() / "unknown.safetensors", tmp.path() / "o")),
                          "pixels");
}

}  // namespace
}  // namespace perceiver::testing
