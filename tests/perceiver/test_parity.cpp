// HF parity for every model fixture, through the library and through `perceiver infer`.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "perceiver/models/heads.h"
#include "perceiver/pipelines/inference.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/ops/reference_mode.h"
#include "tests/perceiver/parity_support.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

class HfParity : public ::testing::TestWithParam<ModelFixture> {};

TEST(HfParityIndex, FixturesArePresent) {
  const auto fixtures = model_fixtures();
  ASSERT_FALSE(fixtures.empty()) << "no model fixtures found under " << hf_fixtures_dir()
                                 << " (set PERCEIVER_FIXTURES or check out ../shared)";
  for (const auto& f : fixtures) EXPECT_TRUE(f.meta.is_object()) << f.name << ": unreadable meta.json";
}

// Regression: the comparison let NaN through (NaN > 0 is false) and ignored dtypes.
TEST(HfParityCompare, NanInfinityAndDtypeAreMismatches) {
  const NamedTensors want{{"logits", torch::tensor({1.0f, 2.0f, INFINITY})}};
  EXPECT_EQ(compare_outputs(want, {{"logits", torch::tensor({1.0f, 2.0f + 1e-6f, INFINITY})}}), "");
  EXPECT_NE(compare_outputs(want, {{"logits", torch::tensor({NAN, 2.0f, INFINITY})}}), "");
  EXPECT_NE(compare_outputs(want, {{"logits", torch::full({3}, NAN)}}), "");
  EXPECT_NE(compare_outputs(want, {{"logits", torch::tensor({1.0f, 2.0f, -INFINITY})}}), "");
  EXPECT_NE(compare_outputs(want, {{"logits", torch::tensor({1.0f, 2.0f, INFINITY}).to(torch::kDouble)}}).find("dtype"),
            std::string::npos);
  EXPECT_NE(compare_outputs(want, {{"logits", torch::tensor({1.0f, 2.1f, INFINITY})}}).find("1 of 3"), std::string::npos);
  EXPECT_NE(compare_outputs(want, {}).find("missing"), std::string::npos);
}

TEST(HfParityIndex, EveryModelFixtureListsItsPytorchBin) {
  std::ifstream in(hf_fixtures_dir() / "index.json");
  const auto index = nlohmann::json::parse(in);
  for (const auto& entry : index.at("fixtures")) {
    if (entry.value("kind", "") != "model") continue;
    const auto& files = entry.at("files");
    EXPECT_NE(std::find(files.begin(), files.end(), "pytorch_model.bin"), files.end()) << entry.value("name", "");
  }
}

// On PERCEIVER_TEST_DEVICE (the CPU by default): infer moves the model and every input there and
// brings the outputs back to the CPU for the comparison.
TEST_P(HfParity, LibraryMatchesHuggingFace) {
  const auto& fixture = GetParam();
  InferOptions options;
  options.forward = fixture_forward_options(fixture);
  options.device = test_device();
  const auto outputs = infer(fixture.dir, fixture_inputs(fixture), options);
  const auto expected = io::load_safetensors(fixture.dir / "outputs.safetensors");
  const double tol = parity_tolerance(1e-5);
  EXPECT_EQ(compare_outputs(expected, outputs, tol, tol), "") << fixture.name << " on " << options.device;
}

// HF's maths everywhere (ReferenceMode, PERCEIVER_REFERENCE=1) gives HF's outputs as well.
TEST_P(HfParity, ReferenceModeMatchesHuggingFace) {
  const auto& fixture = GetParam();
  const ReferenceMode hf;
  InferOptions options;
  options.forward = fixture_forward_options(fixture);
  options.device = test_device();
  const auto outputs = infer(fixture.dir, fixture_inputs(fixture), options);
  const double tol = parity_tolerance(1e-5);
  EXPECT_EQ(compare_outputs(io::load_safetensors(fixture.dir / "outputs.safetensors"), outputs, tol, tol), "")
      << fixture.name << " on " << options.device;
}

TEST_P(HfParity, StateDictKeysAndParameterCountMatch) {
  const auto& fixture = GetParam();
  auto model = io::load_pretrained(fixture.dir);
  const auto keys = io::state_dict(*model);
  std::set<std::string> ours, theirs;
  for (const auto& [k, v] : keys) ours.insert(k);
  for (const auto& k : fixture.meta.at("state_dict_keys")) theirs.insert(k.get<std::string>());
  EXPECT_EQ(ours, theirs);
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  EXPECT_EQ(count, fixture.meta.at("num_parameters").get<int64_t>());
}

TEST_P(HfParity, PytorchBinMatchesToo) {
  const auto& fixture = GetParam();
  // Every model fixture ships one (index.json lists it): a missing file is a failure, not a skip.
  ASSERT_TRUE(fs::is_regular_file(fixture.dir / "pytorch_model.bin")) << fixture.name << " has no pytorch_model.bin";
  TempDir tmp;
  fs::copy_file(fixture.dir / "config.json", tmp.path() / "config.json");
  fs::copy_file(fixture.dir / "meta.json", tmp.path() / "meta.json");
  fs::create_symlink(fs::absolute(fixture.dir / "pytorch_model.bin"), tmp.path() / "pytorch_model.bin");
  InferOptions options;
  options.forward = fixture_forward_options(fixture);
  options.device = test_device();
  const auto outputs = infer(tmp.path(), fixture_inputs(fixture), options);
  const double tol = parity_tolerance(1e-5);
  EXPECT_EQ(compare_outputs(io::load_safetensors(fixture.dir / "outputs.safetensors"), outputs, tol, tol), "")
      << fixture.name << " on " << options.device;
}

TEST_P(HfParity, CliInferMatchesHuggingFace) {
  const auto& fixture = GetParam();
  TempDir tmp;
  io::save_safetensors(tmp.path() / "in.safetensors", fixture_inputs(fixture));
  const auto opts = fixture_forward_options(fixture);
  std::string args = "infer --model '" + fixture.dir.string() + "' --inputs '" + (tmp.path() / "in.safetensors").string() +
                     "' --output '" + (tmp.path() / "out.safetensors").string() + "'";
  if (opts.output_attentions) args += " --output-attentions";
  if (opts.output_hidden_states) args += " --output-hidden-states";
  if (opts.interpolate_pos_encoding) args += " --interpolate-pos-encoding";
  const auto device = test_device();
  if (!device.is_cpu()) args += " --device " + device.str();
  const auto r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const double tol = parity_tolerance(1e-5);
  EXPECT_EQ(compare_outputs(io::load_safetensors(fixture.dir / "outputs.safetensors"),
                            io::load_safetensors(tmp.path() / "out.safetensors"), tol, tol),
            "")
      << fixture.name << " on " << device;
}

TEST_P(HfParity, SavedModelLoadsBackIdentically) {
  const auto& fixture = GetParam();
  auto model = io::load_pretrained(fixture.dir);
  TempDir tmp;
  io::save_pretrained(*model, tmp.path() / "saved");
  if (fs::exists(fixture.dir / "meta.json")) fs::copy_file(fixture.dir / "meta.json", tmp.path() / "saved" / "meta.json");
  auto reloaded = io::load_pretrained(tmp.path() / "saved");
  const auto a = io::state_dict(*model), b = io::state_dict(*reloaded);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_EQ(t.scalar_type(), b.at(name).scalar_type()) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
  // The saved tensors carry HF's names and dtypes.
  const auto saved = io::load_safetensors(tmp.path() / "saved" / "model.safetensors");
  const auto original = io::load_safetensors(fixture.dir / "model.safetensors");
  ASSERT_EQ(saved.size(), original.size());
  for (const auto& [name, t] : original) {
    ASSERT_TRUE(saved.count(name)) << name;
    EXPECT_EQ(saved.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(saved.at(name), t)) << name;
  }
}

std::string fixture_name(const ::testing::TestParamInfo<ModelFixture>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Fixtures, HfParity, ::testing::ValuesIn(model_fixtures()), fixture_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HfParity);

}  // namespace
}  // namespace perceiver::testing
