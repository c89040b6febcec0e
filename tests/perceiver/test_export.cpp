// TorchScript export of every head: the reloaded file (C++ torch::jit::load, Python torch.jit.load,
// and the ModelRunner over it) against the eager model at two batch sizes, the shape checks of the
// exported forward, the archive's settings, and files that are not ours.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <fstream>

#include "perceiver/pipelines/open_model.h"
#include "perceiver/export/export.h"
#include "perceiver/pipelines/inference.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/io/safetensors.h"
#include "tests/perceiver/parity_support.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

bool is_image_head(const std::string& architecture) {
  return architecture.rfind("PerceiverForImageClassification", 0) == 0;
}

const ModelFixture& fixture_named(const std::string& name) {
  static const auto fixtures = model_fixtures();
  for (const auto& f : fixtures)
    if (f.name == name) return f;
  throw std::runtime_error("no model fixture " + name + " under " + hf_fixtures_dir().string());
}

// Exports a fixture to dir/model.pt; the Fourier and conv heads at the fixture's image size.
fs::path export_fixture(const ModelFixture& fixture, const fs::path& dir) {
  ExportOptions options;
  if (is_image_head(fixture.meta.at("architecture"))) {
    const auto pixels = fixture_inputs(fixture).at("inputs");
    options.image_height = pixels.size(2);
    options.image_width = pixels.size(3);
  }
  const auto file = dir / "model.pt";
  export_model_dir(fixture.dir, file, options);
  return file;
}

nlohmann::json manifest_of(const fs::path& file) {
  return nlohmann::json::parse(exported_extra_file(file, kExportManifest).value());
}

// New rows of an input in its value range: reals, indices below the bound, or a mask of ones.
torch::Tensor random_rows(const nlohmann::json& spec, std::vector<int64_t> shape, at::Generator& gen) {
  const auto dtype = spec.at("dtype").get<std::string>();
  if (dtype == "float") return torch::randn(shape, gen);
  if (dtype == "integer") return torch::randint(0, spec["values"]["max"].get<int64_t>() + 1, shape, gen, torch::kLong);
  return torch::ones(shape, torch::kLong);
}

// The exported inputs of a fixture for `batch` rows: its own rows, then random ones; sequences cut
// to `seq_len` when given; optional inputs (the fixture's, else generated) only `with_optional`.
NamedTensors batch_inputs(const ModelFixture& fixture, const nlohmann::json& manifest, int64_t batch,
                          bool with_optional, int64_t seq_len = 0) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(batch);
  const auto given = fixture_inputs(fixture);
  NamedTensors out;
  for (const auto& spec : manifest.at("inputs")) {
    const auto name = spec.at("name").get<std::string>();
    const auto& shape = spec.at("shape");
    if (spec.at("optional").get<bool>() && !with_optional) continue;
    torch::Tensor t;
    if (given.count(name)) {
      t = given.at(name);
    } else if (name == "attention_mask") {
      t = torch::ones({batch, out.at("inputs").size(1)}, torch::kLong);
      t[0][-1] = 0;
    } else {  // points: distinct indices, as HF subsamples them
      t = torch::randperm(spec["values"]["max"].get<int64_t>() + 1, gen, torch::kLong).narrow(0, 0, 7);
    }
    if (shape.size() > 1 && shape[1] == "seq_len" && seq_len > 0) t = t.narrow(1, 0, seq_len);
    if (shape[0] == "batch" && t.size(0) != batch) {
      auto rows = t.sizes().vec();
      rows[0] = std::max<int64_t>(0, batch - t.size(0));
      t = torch::cat({t.narrow(0, 0, std::min(batch, t.size(0))), random_rows(spec, rows, gen).to(t.dtype())});
    }
    out[name] = t;
  }
  return out;
}

// The forward's positional arguments, None for a missing optional input.
std::vector<c10::IValue> positional(const nlohmann::json& manifest, const NamedTensors& inputs) {
  std::vector<c10::IValue> args;
  for (const auto& spec : manifest.at("inputs")) {
    const auto it = inputs.find(spec.at("name").get<std::string>());
    args.emplace_back(it == inputs.end() ? c10::IValue() : c10::IValue(it->second));
  }
  return args;
}

NamedTensors to_named(const c10::IValue& dict) {
  NamedTensors out;
  for (const auto& entry : dict.toGenericDict()) out[entry.key().toStringRef()] = entry.value().toTensor();
  return out;
}

NamedTensors eager(PerceiverPreTrainedModelImpl& model, const NamedTensors& inputs) {
  torch::NoGradGuard no_grad;
  return model.forward_named(inputs, {});
}

class ExportFixture : public ::testing::TestWithParam<ModelFixture> {};

// Batch sizes 1 and 3 (the trace used 2), with and without the optional inputs, shorter sequences
// at batch 3: torch::jit::load's module and the ModelRunner over the file equal the eager model.
TEST_P(ExportFixture, ReloadedFileMatchesEagerAtTwoBatchSizes) {
  const auto& fixture = GetParam();
  TempDir tmp;
  const auto file = export_fixture(fixture, tmp.path());
  const auto manifest = manifest_of(file);
  auto model = io::load_pretrained(fixture.dir);
  model->eval();
  auto module = torch::jit::load(file.string());
  const auto runner = open_model(file);
  EXPECT_EQ(runner->architecture(), fixture.meta.at("architecture").get<std::string>());
  EXPECT_EQ(runner->config().to_json(), model->config().to_json());
  const bool text = manifest.at("dims").contains("seq_len");
  for (const int64_t batch : {1, 3}) {
    for (const bool with_optional : {true, false}) {
      const int64_t seq = text && batch == 3 ? (fixture_inputs(fixture).at("inputs").size(1) + 1) / 2 : 0;
      const auto inputs = batch_inputs(fixture, manifest, batch, with_optional, seq);
      const auto want = eager(*model, inputs);
      const std::string where = fixture.name + " at batch " + std::to_string(batch) +
                                (with_optional ? " with" : " without") + " the optional inputs";
      EXPECT_EQ(want.begin()->second.size(0), batch) << where;
      EXPECT_EQ(compare_outputs(want, to_named(module.forward(positional(manifest, inputs))), 1e-5, 1e-5), "") << where;
      EXPECT_EQ(compare_outputs(want, runner->forward(inputs), 1e-5, 1e-5), "") << where << " (runner)";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExportFixture, ::testing::ValuesIn(model_fixtures()),
                         [](const ::testing::TestParamInfo<ModelFixture>& info) { return info.param.name; });

// Runs `inputs` through the runner over `file`; returns the error message ("" when it runs).
std::string runner_error(const fs::path& file, const NamedTensors& inputs) {
  return error_of([&] { open_model(file)->forward(inputs); });
}

TEST(Export, WrongFixedDimensionsAreClearErrors) {
  TempDir tmp;
  struct Case {
    std::string fixture;
    NamedTensors inputs;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"PerceiverForOpticalFlow",
       {{"inputs", torch::zeros({1, 2, 27, 9, 12})}},
       "`inputs` must have shape (batch, 2, 27, 8, 12), got [1, 2, 27, 9, 12]"},
      {"PerceiverForOpticalFlow",
       {{"inputs", torch::zeros({1, 2, 27, 8, 12})}, {"subsampled_output_points", torch::tensor({0, 96})}},
       "`subsampled_output_points` must lie in [0, 96), got values from 0 to 96"},
      {"PerceiverForOpticalFlow",
       {{"inputs", torch::zeros({1, 2, 27, 8, 12})}, {"subsampled_output_points", torch::arange(96)}},
       "`subsampled_output_points` must have shape (points <= 95), got [96]"},
      {"PerceiverForMaskedLM",
       {{"inputs", torch::zeros({2, 33}, torch::kLong)}},
       "`inputs` must have shape (batch, seq_len <= 32), got [2, 33]"},
      {"PerceiverForMaskedLM", {{"inputs", torch::zeros({2, 8})}}, "`inputs` must hold integer indices"},
      {"PerceiverForMaskedLM",
       {{"inputs", torch::zeros({2, 8}, torch::kLong)}, {"attention_mask", torch::ones({2, 7}, torch::kLong)}},
       "`attention_mask` has seq_len 7 but `inputs` has 8"},
      {"PerceiverForImageClassificationLearned",
       {{"inputs", torch::zeros({1, 3, 9, 9})}},
       "`inputs` must have shape (batch, 3, 8, 8), got [1, 3, 9, 9]"},
      {"PerceiverForMultimodalAutoencoding",
       {{"inputs.audio", torch::zeros({2, 32, 1})},
        {"inputs.image", torch::zeros({1, 2, 3, 8, 8})},
        {"inputs.label", torch::zeros({2, 5})}},
       "`inputs.image` has batch 1 but `inputs.audio` has 2"},
  };
  std::map<std::string, fs::path> files;
  for (const auto& c : cases) {
    if (!files.count(c.fixture)) {
      fs::create_directories(tmp.path() / c.fixture);
      files[c.fixture] = export_fixture(fixture_named(c.fixture), tmp.path() / c.fixture);
    }
    const auto& file = files[c.fixture];
    const auto message = runner_error(file, c.inputs);
    EXPECT_NE(message.find(c.message), std::string::npos) << c.fixture << ": " << message;
    EXPECT_EQ(message.rfind(file.string() + ": " + c.fixture + " (exported by perceiver-cpp): ", 0), 0u) << message;
    // The same check without our library: torch::jit::load and the positional forward.
    auto module = torch::jit::load(file.string());
    const auto raw = error_of([&] { module.forward(positional(manifest_of(file), c.inputs)); });
    EXPECT_NE(raw.find(c.message), std::string::npos) << raw;
  }
  // HF's other name for the image input reaches the same check.
  const auto aliased =
      runner_error(files.at("PerceiverForImageClassificationLearned"), {{"pixel_values", torch::zeros({1, 3, 9, 9})}});
  EXPECT_NE(aliased.find("`inputs` must have shape (batch, 3, 8, 8)"), std::string::npos) << aliased;
}

TEST(Export, FilesThatAreNotOursAreRefusedByName) {
  TempDir tmp;
  const auto garbage = tmp.path() / "garbage.pt", empty = tmp.path() / "empty.pt", plain = tmp.path() / "plain.pt";
  write_file(garbage, std::string(4096, 'x'));
  write_file(empty, "");
  torch::jit::Module other(c10::QualifiedName("__torch__.Other"));
  other.register_parameter("w", torch::ones({2}), false);
  other.save(plain.string());  // a TorchScript file, but no manifest
  const auto checkpoint =
      fixture_named("PerceiverForSequenceClassification").dir / "pytorch_model.bin";  // torch.save zip
  for (const auto& file : {garbage, empty, plain, checkpoint}) {
    const auto message = expect_error([&] { open_model(file); }, file);
    EXPECT_NE(message.find("not a model file written by `perceiver export`"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  io::save_safetensors(tmp.path() / "in.safetensors", {{"inputs", torch::zeros({1, 4}, torch::kLong)}});
  const auto cli =
      run_cli("infer --model '" + garbage.string() + "' --inputs '" + (tmp.path() / "in.safetensors").string() +
              "' --output '" + (tmp.path() / "out.safetensors").string() + "'");
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_NE(cli.err.find(garbage.string() + ": not a model file written by `perceiver export`"), std::string::npos)
      << cli.err;
  EXPECT_EQ(std::count(cli.err.begin(), cli.err.end(), '\n'), 1) << cli.err;
}

// What a user needs without our library travels in the archive: config.json with id2label, the
// tokenizer settings of text heads, HF's image-processor settings at the exported size.
TEST(Export, ArchiveCarriesConfigTokenizerAndImageSettings) {
  TempDir tmp;
  const auto text = export_fixture(fixture_named("PerceiverForSequenceClassification"), tmp.path());
  const auto config = nlohmann::json::parse(exported_extra_file(text, "config.json").value());
  EXPECT_EQ(
      config.at("id2label"),
      io::load_pretrained(fixture_named("PerceiverForSequenceClassification").dir)->config().to_json().at("id2label"));
  const auto tokenizer = nlohmann::json::parse(exported_extra_file(text, "tokenizer_config.json").value());
  EXPECT_EQ(tokenizer.at("mask_token"), "[MASK]");
  EXPECT_EQ(tokenizer.at("model_max_length"), config.at("max_position_embeddings"));
  EXPECT_TRUE(exported_extra_file(text, "special_tokens_map.json").has_value());
  EXPECT_FALSE(exported_extra_file(text, "preprocessor_config.json").has_value());

  // A training checkpoint (config, weights, trainer state, run file): its run file's image settings.
  const auto& learned = fixture_named("PerceiverForImageClassificationLearned");
  const auto checkpoint = tmp.path() / "checkpoints" / "step-00000002";
  fs::create_directories(checkpoint);
  for (const auto* name : {"config.json", "model.safetensors"}) fs::copy_file(learned.dir / name, checkpoint / name);
  write_file(checkpoint / "trainer_state.json", "{\"step\": 2}");
  write_file(checkpoint / "run.yaml",
             "task:\n  name: image_classification\n  image_mean: [0.5, 0.5, 0.5]\n"
             "  image_std: [0.25, 0.25, 0.25]\n");
  const auto image = tmp.path() / "image.pt";
  const auto manifest = export_model_dir(checkpoint, image);
  EXPECT_EQ(manifest.at("inputs")[0].at("shape"), nlohmann::json({"batch", 3, 8, 8}));
  const auto settings = nlohmann::json::parse(exported_extra_file(image, "preprocessor_config.json").value());
  EXPECT_EQ(settings.at("size"), nlohmann::json({{"height", 8}, {"width", 8}}));
  EXPECT_EQ(settings.at("image_mean"), nlohmann::json({0.5, 0.5, 0.5}));
  EXPECT_EQ(settings.at("do_center_crop"), false);

  // The Fourier head takes any size eagerly; the export fixes the one asked for and says so.
  ExportOptions options;
  options.image_height = 12;
  options.image_width = 20;
  const auto fourier = tmp.path() / "fourier.pt";
  export_model_dir(fixture_named("PerceiverForImageClassificationFourier").dir, fourier, options);
  EXPECT_EQ(manifest_of(fourier).at("inputs")[0].at("shape"), nlohmann::json({"batch", 3, 12, 20}));
  EXPECT_EQ(nlohmann::json::parse(exported_extra_file(fourier, "preprocessor_config.json").value()).at("size"),
            nlohmann::json({{"height", 12}, {"width", 20}}));
  const auto message = error_of([&] { export_model_dir(learned.dir, tmp.path() / "learned.pt", options); });
  EXPECT_NE(message.find("config.image_size = 8"), std::string::npos) << message;
}

// Debian's Python (python3-torch, as CI installs it) loads every exported head and reproduces the
// eager outputs at batch size 3.
TEST(Export, PythonTorchJitLoadMatchesEager) {
  TempDir tmp;
  std::string cases;
  for (const auto& fixture : model_fixtures()) {
    const auto dir = tmp.path() / fixture.name;
    fs::create_directories(dir);
    const auto manifest = manifest_of(export_fixture(fixture, dir));
    auto model = io::load_pretrained(fixture.dir);
    model->eval();
    const auto inputs = batch_inputs(fixture, manifest, 3, true);
    io::save_safetensors(dir / "inputs.safetensors", inputs);
    io::save_safetensors(dir / "expected.safetensors", eager(*model, inputs));
    cases += " '" + dir.string() + "'";
  }
  const auto r = run_command(std::string("/usr/bin/python3 '") + PERCEIVER_SOURCE_DIR +
                             "/tests/perceiver/export_check.py'" + cases);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), static_cast<long>(model_fixtures().size())) << r.out;
}

TEST(ExportCli, ExportThenInferTheFile) {
  TempDir tmp;
  const auto& fixture = fixture_named("PerceiverForMaskedLM");
  const auto file = tmp.path() / "mlm.pt";
  const auto exported = run_cli("export --model '" + fixture.dir.string() + "' --out '" + file.string() + "'");
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(nlohmann::json::parse(exported.out).at("architecture"), "PerceiverForMaskedLM");
  // A model card beside the file; HF's folder has none of ours, so it is made from config.json.
  const auto card = slurp(tmp.path() / "mlm.README.md");
  EXPECT_EQ(card.rfind("---\nlibrary_name: transformers\n", 0), 0u) << card;
  EXPECT_NE(card.find("pipeline_tag: fill-mask"), std::string::npos) << card;
  EXPECT_NE(card.find("torch.jit.load(\"mlm.pt\")"), std::string::npos) << card;
  NamedTensors inputs = fixture_inputs(fixture);
  inputs.erase("labels");
  io::save_safetensors(tmp.path() / "in.safetensors", inputs);
  const auto inferred =
      run_cli("infer --model '" + file.string() + "' --inputs '" + (tmp.path() / "in.safetensors").string() +
              "' --output '" + (tmp.path() / "out.safetensors").string() + "'");
  ASSERT_EQ(inferred.exit_code, 0) << inferred.err;
  auto model = io::load_pretrained(fixture.dir);
  model->eval();
  EXPECT_EQ(compare_outputs(eager(*model, inputs), io::load_safetensors(tmp.path() / "out.safetensors")), "");

  const auto missing = run_cli("export --model '" + (tmp.path() / "nope").string() + "' --out '" + file.string() + "'");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find((tmp.path() / "nope").string()), std::string::npos) << missing.err;
  const auto bad_size = run_cli("export --model '" + fixture.dir.string() + "' --out x.pt --image-size 0x3");
  EXPECT_EQ(bad_size.exit_code, 1);
  EXPECT_NE(bad_size.err.find("--image-size"), std::string::npos) << bad_size.err;
}

}  // namespace
}  // namespace perceiver::testing
