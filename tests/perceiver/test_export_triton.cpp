// `perceiver export --triton`: every head as a Triton model folder. C++ torch::jit::load and
// Python's torch.jit.load call the tuple-returning forward positionally and match the eager model;
// triton_check.py parses config.pbtxt against Triton's ModelConfig field numbers
// (triton_model_config.proto) and checks its names, types and dims against the file's actual
// signature; the CLI refuses what it cannot do by name.
#include <gtest/gtest.h>
#include <torch/script.h>

#include "perceiver/pipelines/open_model.h"
#include "perceiver/export/export_triton.h"
#include "perceiver/pipelines/inference.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/io/safetensors.h"
#include "tests/perceiver/parity_support.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

const ModelFixture& fixture_named(const std::string& name) {
  static const auto fixtures = model_fixtures();
  for (const auto& f : fixtures)
    if (f.name == name) return f;
  throw std::runtime_error("no model fixture " + name + " under " + hf_fixtures_dir().string());
}

// The Fourier and conv heads at the fixture's image size (as test_export.cpp exports them).
ExportOptions export_options(const ModelFixture& fixture) {
  ExportOptions options;
  if (fixture.meta.at("architecture").get<std::string>().rfind("PerceiverForImageClassification", 0) == 0) {
    const auto pixels = fixture_inputs(fixture).at("inputs");
    options.image_height = pixels.size(2);
    options.image_width = pixels.size(3);
  }
  return options;
}

// The inputs Triton passes (manifest "triton"/"inputs", HF names) at batch size 3: the fixture's
// rows repeated; an attention mask the fixture lacks is ones with one padded position.
NamedTensors triton_inputs(const ModelFixture& fixture, const nlohmann::json& manifest) {
  const auto given = fixture_inputs(fixture);
  NamedTensors out;
  for (const auto& spec : manifest.at("triton").at("inputs")) {
    const auto name = spec.at("input").get<std::string>();
    torch::Tensor t;
    if (given.count(name)) {
      t = given.at(name);
      t = torch::cat({t, t, t}).narrow(0, 0, 3);
    } else {
      EXPECT_EQ(name, "attention_mask") << fixture.name;
      t = torch::ones({3, out.at("inputs").size(1)}, torch::kLong);
      t[0][-1] = 0;
    }
    out[name] = t;
  }
  return out;
}

// The tuple of the Triton forward, by HF name (manifest "outputs" order).
NamedTensors tuple_outputs(const c10::IValue& result, const nlohmann::json& manifest) {
  NamedTensors out;
  const auto tuple = result.toTuple();
  const auto& elements = tuple->elements();
  const auto& names = manifest.at("outputs");
  EXPECT_EQ(elements.size(), names.size());
  for (size_t i = 0; i < std::min<size_t>(elements.size(), names.size()); ++i)
    out[names[i].get<std::string>()] = elements[i].toTensor();
  return out;
}

// Every head: the folder layout, C++ torch::jit::load's tuple against the eager model, the file's
// refusal by `perceiver infer`, then Python (torch.jit.load + protobuf's text format) on all of them.
TEST(ExportTriton, EveryHeadServesATupleThatMatchesItsConfig) {
  TempDir tmp;
  std::string cases;
  for (const auto& fixture : model_fixtures()) {
    const auto dir = tmp.path() / fixture.name;
    const auto repo = dir / "repo";
    const auto manifest = export_triton_model_dir(fixture.dir, repo, {}, export_options(fixture));
    const auto model_dir = repo / fixture.name;  // the default name: the directory's
    for (const auto* file : {"config.pbtxt", "perceiver.json", "1/model.pt"})
      EXPECT_TRUE(fs::is_regular_file(model_dir / file)) << fixture.name << ": " << file;
    EXPECT_EQ(manifest.at("format"), kTritonFormat);
    EXPECT_EQ(manifest.at("triton").at("max_batch_size"), 8) << fixture.name;
    EXPECT_EQ(nlohmann::json::parse(slurp(model_dir / "perceiver.json")), manifest);

    auto model = io::load_pretrained(fixture.dir);
    model->eval();
    const auto inputs = triton_inputs(fixture, manifest);
    NamedTensors expected;
    {
      torch::NoGradGuard no_grad;
      expected = model->forward_named(inputs, {});
    }
    auto module = torch::jit::load((model_dir / "1" / "model.pt").string());
    std::vector<c10::IValue> args;
    for (const auto& spec : manifest.at("triton").at("inputs")) args.emplace_back(inputs.at(spec.at("input")));
    EXPECT_EQ(compare_outputs(expected, tuple_outputs(module.forward(args), manifest), 1e-5, 1e-5), "")
        << fixture.name;

    const auto refused = error_of([&] { open_model(model_dir / "1" / "model.pt"); });
    EXPECT_NE(refused.find("perceiver export --triton"), std::string::npos) << refused;

    io::save_safetensors(dir / "inputs.safetensors", inputs);
    io::save_safetensors(dir / "expected.safetensors", expected);
    cases += " '" + dir.string() + "'";
  }
  ASSERT_FALSE(cases.empty()) << "no model fixtures under " << hf_fixtures_dir();
  const std::string source = PERCEIVER_SOURCE_DIR;
  const auto r = run_command("/usr/bin/python3 '" + source + "/tests/perceiver/triton_check.py' '" + source +
                             "/tests/perceiver/triton_model_config.proto'" + cases);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), static_cast<long>(model_fixtures().size())) << r.out;
}

// What Triton cannot pass is left out with its absent value; without batching the batch stays in `dims`.
TEST(ExportTriton, LeftOutInputsAndNoBatching) {
  TempDir tmp;
  const auto flow = export_triton_model_dir(fixture_named("PerceiverForOpticalFlow").dir, tmp.path());
  const auto& triton = flow.at("triton");
  EXPECT_EQ(triton.at("inputs").size(), 1u);
  EXPECT_EQ(triton.at("inputs_left_out").at(0).at("input"), "subsampled_output_points");
  EXPECT_EQ(triton.at("inputs").at(0).at("dims"), nlohmann::json({2, 27, 8, 12}));
  EXPECT_EQ(triton.at("outputs").at(0), nlohmann::json({{"name", "logits__0"},
                                                        {"output", "logits"},
                                                        {"data_type", "TYPE_FP32"},
                                                        {"dims", {8, 12, 2}}}));

  TritonOptions unbatched;
  unbatched.name = "mlm-unbatched";
  unbatched.max_batch_size = 0;
  const auto mlm = export_triton_model_dir(fixture_named("PerceiverForMaskedLM").dir, tmp.path(), unbatched);
  const auto config = slurp(tmp.path() / "mlm-unbatched" / "config.pbtxt");
  EXPECT_NE(config.find("name: \"mlm-unbatched\""), std::string::npos) << config;
  EXPECT_NE(config.find("max_batch_size: 0"), std::string::npos) << config;
  EXPECT_EQ(mlm.at("triton").at("inputs").at(1),
            nlohmann::json({{"name", "attention_mask"},
                            {"input", "attention_mask"},
                            {"data_type", "TYPE_INT64"},
                            {"dims", {-1, -1}}}));
  EXPECT_EQ(mlm.at("triton").at("outputs").at(0).at("dims").at(0), -1);

  EXPECT_EQ(triton_model_name("runs/mlm_kjv/checkpoints/step-00012553"), "mlm_kjv_step-00012553");
  EXPECT_EQ(triton_model_name("models/my model.v2/"), "my_model_v2");
}

TEST(ExportTritonCli, ExportsAFolderAndRefusesBadArguments) {
  TempDir tmp;
  const auto model = fixture_named("PerceiverForSequenceClassification").dir.string();
  const auto repo = tmp.path() / "models";
  const auto ok = run_cli("export --model '" + model + "' --triton '" + repo.string() + "' --name classifier");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out).at("triton").at("name"), "classifier");
  EXPECT_TRUE(fs::is_regular_file(repo / "classifier" / "1" / "model.pt"));
  EXPECT_NE(ok.err.find("tritonserver --model-repository"), std::string::npos) << ok.err;

  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"", "missing --out FILE (one TorchScript file) or --triton REPO"},
      {" --out x.pt --triton '" + repo.string() + "'", "give --out FILE or --triton REPO, not both"},
      {" --triton '" + repo.string() + "' --name 'a/b'", "Triton model name 'a/b': use letters, digits, '_' and '-'"},
      {" --triton '" + repo.string() + "' --name ''", "--name is empty"},
      {" --out x.pt --name classifier", "--name goes with --triton"},
      {" --triton '" + repo.string() + "' --max-batch-size=-1", "Triton max_batch_size -1"},
  };
  for (const auto& c : cases) {
    const auto r = run_cli("export --model '" + model + "'" + c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_FALSE(fs::exists(repo / "a"));
  EXPECT_FALSE(fs::exists("x.pt"));
}

}  // namespace
}  // namespace perceiver::testing
