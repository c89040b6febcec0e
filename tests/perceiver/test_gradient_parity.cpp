// Gradients at parity with HF's Python Perceiver, the definition of correct for training: for every
// fixture with gradients.safetensors, the gradients of J = sum_k sum(output_k * cotangent_k) with
// respect to every parameter and floating-point input, in eval mode.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <tuple>

#include "perceiver/models/gradients.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/ops/reference_mode.h"
#include "tests/perceiver/parity_support.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

bool has_gradients(const ModelFixture& fixture) { return fs::is_regular_file(fixture.dir / "gradients.safetensors"); }

std::vector<ModelFixture> gradient_fixtures() {
  auto all = model_fixtures();
  all.erase(std::remove_if(all.begin(), all.end(), [](const auto& f) { return !has_gradients(f); }), all.end());
  return all;
}

// "" when every grad.* tensor of `expected` is in `actual` with max|ours - HF| <= 1e-3 * max(max|HF| of
// that tensor, 1e-3 * max|HF| over all of them) (HF's own float32 gradients stay within 6e-5 of float64
// by this measure); else one line per failing tensor, worst first.
std::string compare_gradients(const NamedTensors& expected, const NamedTensors& actual) {
  double largest = 0;
  for (const auto& [name, t] : expected) largest = std::max(largest, t.abs().max().item<double>());
  std::vector<std::pair<double, std::string>> failures;
  for (const auto& [name, want] : expected) {
    const auto it = actual.find(name);
    if (it == actual.end()) {
      failures.emplace_back(INFINITY, name + ": missing");
      continue;
    }
    if (it->second.sizes() != want.sizes()) {
      std::ostringstream os;
      os << name << ": shape " << it->second.sizes() << ", HF's " << want.sizes();
      failures.emplace_back(INFINITY, os.str());
      continue;
    }
    const double relative = scaled_error(it->second, want, largest);
    if (!(relative <= 1e-3)) failures.emplace_back(relative, name + ": max|diff| " + std::to_string(relative) + " of its scale");
  }
  std::sort(failures.rbegin(), failures.rend());
  std::string report;
  for (const auto& [r, line] : failures) report += line + "\n";
  return report;
}

NamedTensors only_gradients(const NamedTensors& all) {
  NamedTensors out;
  for (const auto& [name, t] : all)
    if (name.rfind("grad.", 0) == 0) out[name] = t;
  return out;
}

// Each fixture in the default mode (the fast paths the plans choose) and in ReferenceMode.
using GradientCase = std::tuple<ModelFixture, bool>;
class HfGradientParity : public ::testing::TestWithParam<GradientCase> {};

TEST(HfGradientParityIndex, EveryPublicModelFixtureHasGradients) {
  std::size_t public_fixtures = 0;
  for (const auto& f : model_fixtures()) {
    if (f.meta.value("set", "") != "public") continue;
    ++public_fixtures;
    EXPECT_TRUE(has_gradients(f)) << f.name << " lacks gradients.safetensors";
    EXPECT_TRUE(fs::is_regular_file(f.dir / "cotangents.safetensors")) << f.name;
  }
  EXPECT_GE(public_fixtures, 9u);
}

// The comparison itself: a gradient off by more than the tolerance, or missing, is reported.
TEST(HfGradientParityCompare, ReportsWrongAndMissingGradients) {
  const NamedTensors want{{"grad.a", torch::tensor({1.0f, -2.0f})}, {"grad.b", torch::tensor({1e-9f, 0.0f})}};
  EXPECT_EQ(compare_gradients(want, want), "");
  // grad.b's scale is 1e-3 of the largest gradient: rounding noise below 2e-6 passes.
  EXPECT_EQ(compare_gradients(want, {{"grad.a", torch::tensor({1.0f, -2.0f})}, {"grad.b", torch::tensor({1e-6f, 0.0f})}}), "");
  EXPECT_NE(compare_gradients(want, {{"grad.a", torch::tensor({1.0f, -2.01f})}, {"grad.b", torch::tensor({0.0f, 0.0f})}})
                .find("grad.a"),
            std::string::npos);
  EXPECT_NE(compare_gradients(want, {{"grad.a", torch::tensor({1.0f, -2.0f})}}).find("grad.b: missing"),
            std::string::npos);
  EXPECT_NE(compare_gradients(want, {{"grad.a", torch::tensor({1.0f, NAN})}, {"grad.b", torch::tensor({0.0f, 0.0f})}}),
            "");
}

TEST_P(HfGradientParity, LibraryMatchesHuggingFace) {
  const auto& [fixture, reference] = GetParam();
  const ReferenceMode mode(reference);
  auto model = io::load_pretrained(fixture.dir);
  RunnerOptions options;
  options.forward = fixture_forward_options(fixture);
  options.forward.output_attentions = options.forward.output_hidden_states = false;
  options.device = test_device();
  const auto cotangents = io::load_safetensors(fixture.dir / "cotangents.safetensors");
  const auto result = forward_with_gradients(model, fixture_inputs(fixture), cotangents, options);
  const auto expected = io::load_safetensors(fixture.dir / "gradients.safetensors");
  EXPECT_EQ(compare_gradients(expected, result), "") << fixture.name;
  // Every parameter and floating-point input has its gradient, and nothing else is reported as one.
  EXPECT_EQ(only_gradients(result).size(), expected.size()) << fixture.name;
  // The forward is the one the output parity checks.
  NamedTensors outputs;
  for (const auto& [name, t] : cotangents) outputs[name] = result.at(name);
  NamedTensors expected_outputs;
  const auto all_expected = io::load_safetensors(fixture.dir / "outputs.safetensors");
  for (const auto& [name, t] : cotangents) expected_outputs[name] = all_expected.at(name);
  const double tol = parity_tolerance(1e-5);
  EXPECT_EQ(compare_outputs(expected_outputs, outputs, tol, tol), "") << fixture.name;
}

std::string case_name(const ::testing::TestParamInfo<GradientCase>& info) {
  return std::get<0>(info.param).name + (std::get<1>(info.param) ? "_reference" : "_default");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfGradientParity,
                         ::testing::Combine(::testing::ValuesIn(gradient_fixtures()), ::testing::Bool()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HfGradientParity);

// `perceiver infer --cotangents` writes the outputs and the gradients under the same names.
TEST(HfGradientParityCli, InferWritesGradients) {
  const auto fixtures = gradient_fixtures();
  const auto it = std::find_if(fixtures.begin(), fixtures.end(),
                               [](const auto& f) { return f.name == "PerceiverForImageClassificationLearned"; });
  ASSERT_NE(it, fixtures.end());
  TempDir tmp;
  io::save_safetensors(tmp.path() / "in.safetensors", fixture_inputs(*it));
  const auto r = run_cli("infer --model '" + it->dir.string() + "' --inputs '" + (tmp.path() / "in.safetensors").string() +
                         "' --cotangents '" + (it->dir / "cotangents.safetensors").string() + "' --output '" +
                         (tmp.path() / "out.safetensors").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto written = io::load_safetensors(tmp.path() / "out.safetensors");
  EXPECT_EQ(compare_gradients(io::load_safetensors(it->dir / "gradients.safetensors"), written), "");
  EXPECT_TRUE(written.count("logits"));

  // PERCEIVER_REFERENCE=1 takes HF's maths, and says so.
  const auto reference = run_command(std::string("PERCEIVER_REFERENCE=1 '") + PERCEIVER_CLI_PATH + "' infer --model '" +
                                     it->dir.string() + "' --inputs '" + (tmp.path() / "in.safetensors").string() +
                                     "' --cotangents '" + (it->dir / "cotangents.safetensors").string() +
                                     "' --output '" + (tmp.path() / "ref.safetensors").string() + "'");
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  EXPECT_NE(reference.err.find("PERCEIVER_REFERENCE=1"), std::string::npos) << reference.err;
  EXPECT_EQ(compare_gradients(io::load_safetensors(it->dir / "gradients.safetensors"),
                              io::load_safetensors(tmp.path() / "ref.safetensors")),
            "");

  // A cotangent for an output the forward does not make is refused with its name.
  io::save_safetensors(tmp.path() / "bad.safetensors", {{"logits.audio", torch::zeros({1})}});
  const auto bad = run_cli("infer --model '" + it->dir.string() + "' --inputs '" + (tmp.path() / "in.safetensors").string() +
                           "' --cotangents '" + (tmp.path() / "bad.safetensors").string() + "' --output '" +
                           (tmp.path() / "bad_out.safetensors").string() + "'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("logits.audio"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace perceiver::testing
