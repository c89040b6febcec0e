#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>

#include "perceiver/models/architectures.h"
#include "perceiver/models/config.h"
#include "perceiver/models/heads.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

using json = nlohmann::json;

std::string config_error(const json& doc, const std::string& source = "cfg.json") {
  try {
    PerceiverConfig::from_json(doc, source);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(PerceiverConfig, DefaultsAreHuggingFaces) {
  const auto c = PerceiverConfig::from_json(json::object());
  EXPECT_EQ(c.num_latents, 256);
  EXPECT_EQ(c.d_latents, 1280);
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.num_self_attends_per_block, 26);
  EXPECT_FALSE(c.qk_channels.has_value());
  EXPECT_EQ(c.cross_attention_shape_for_attention, "kv");
  EXPECT_EQ(c.hidden_act, "gelu");
  EXPECT_EQ(c.vocab_size, 262);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.train_size, (std::vector<int64_t>{368, 496}));
  EXPECT_EQ(c.output_shape, (std::vector<int64_t>{1, 16, 224, 224}));
  EXPECT_EQ(c.num_labels(), 2);
}

TEST(PerceiverConfig, FixtureConfigsRoundTripWithUnknownKeysPreserved) {
  for (const auto& entry : std::filesystem::directory_iterator(hf_fixtures_dir())) {
    const auto path = entry.path() / "config.json";
    if (!std::filesystem::exists(path)) continue;
    std::ifstream in(path);
    const auto original = json::parse(in);
    const auto config = PerceiverConfig::from_json_file(path);
    EXPECT_EQ(config.architecture(), original["architectures"][0].get<std::string>());
    const auto written = config.to_json();
    for (const auto& [key, value] : original.items()) {
      ASSERT_TRUE(written.contains(key)) << path << ": lost key " << key;
      EXPECT_EQ(written[key], value) << path << ": key " << key;
    }
    // And a second trip is stable.
    EXPECT_EQ(PerceiverConfig::from_json(written).to_json(), written);
  }
}

TEST(PerceiverConfig, SaveAndReloadFile) {
  TempDir tmp;
  auto c = PerceiverConfig::from_json({{"d_latents", 64}, {"num_latents", 16}, {"custom_key", {{"a", 1}}}});
  c.set_num_labels(3);
  c.architectures = {"PerceiverForSequenceClassification"};
  c.save_json(tmp.path() / "config.json");
  const auto back = PerceiverConfig::from_json_file(tmp.path() / "config.json");
  EXPECT_EQ(back.d_latents, 64);
  EXPECT_EQ(back.num_labels(), 3);
  EXPECT_EQ(back.label2id().at("LABEL_2"), 2);
  EXPECT_EQ(back.extra.at("custom_key").at("a"), 1);
  EXPECT_EQ(back.architecture(), "PerceiverForSequenceClassification");
}

TEST(PerceiverConfig, WrongTypeNamesKeyAndFile) {
  const auto msg = config_error({{"num_latents", "many"}}, "/models/x/config.json");
  EXPECT_NE(msg.find("/models/x/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_latents"), std::string::npos) << msg;
  EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
  EXPECT_NE(config_error({{"use_query_residual", 1}}).find("use_query_residual"), std::string::npos);
  EXPECT_NE(config_error({{"train_size", {1, "a"}}}).find("train_size"), std::string::npos);
  EXPECT_NE(config_error({{"hidden_act", 3}}).find("hidden_act"), std::string::npos);
}

TEST(PerceiverConfig, InconsistentValuesAreActionable) {
  EXPECT_NE(config_error({{"num_latents", -4}}).find("num_latents"), std::string::npos);
  const auto heads = config_error({{"d_latents", 30}, {"num_self_attention_heads", 8}});
  EXPECT_NE(heads.find("divisible"), std::string::npos) << heads;
  EXPECT_NE(heads.find("num_self_attention_heads"), std::string::npos) << heads;
  EXPECT_NE(config_error({{"d_latents", 32}, {"num_self_attention_heads", 1}, {"num_cross_attention_heads", 3}})
                .find("num_cross_attention_heads"),
            std::string::npos);
  EXPECT_NE(config_error({{"hidden_act", "swishy"}}).find("swishy"), std::string::npos);
  EXPECT_NE(config_error({{"cross_attention_shape_for_attention", "x"}}).find("cross_attention_shape_for_attention"),
            std::string::npos);
  EXPECT_NE(config_error({{"d_latents", 64}, {"v_channels", 32}}).find("v_channels"), std::string::npos);
  EXPECT_NE(config_error({{"model_type", "bert"}}).find("model_type"), std::string::npos);
  EXPECT_NE(config_error({{"id2label", {{"x", "a"}}}}).find("id2label"), std::string::npos);
}

// Every label gets a name (HF's LABEL_i), so a hostile num_labels must be refused before the names
// are made: 2^40 would take hours and terabytes.
TEST(PerceiverConfig, NumLabelsIsBounded) {
  const auto huge = config_error({{"num_labels", int64_t{1} << 40}});
  EXPECT_NE(huge.find("num_labels"), std::string::npos) << huge;
  EXPECT_NE(huge.find(std::to_string(PerceiverConfig::kMaxLabels)), std::string::npos) << huge;
  EXPECT_NE(config_error({{"num_labels", PerceiverConfig::kMaxLabels + 1}}).find("num_labels"), std::string::npos);
  EXPECT_NE(config_error({{"num_labels", 0}}).find("num_labels"), std::string::npos);
  PerceiverConfig c;
  EXPECT_THROW(c.set_num_labels(PerceiverConfig::kMaxLabels + 1), std::invalid_argument);
  EXPECT_EQ(c.num_labels(), 2);  // unchanged by the refused call
  c.set_num_labels(PerceiverConfig::kMaxLabels);
  EXPECT_EQ(c.num_labels(), PerceiverConfig::kMaxLabels);
  EXPECT_EQ(c.id2label.rbegin()->second, "LABEL_" + std::to_string(PerceiverConfig::kMaxLabels - 1));
}

TEST(PerceiverConfig, MissingOrMalformedFile) {
  TempDir tmp;
  EXPECT_THROW(PerceiverConfig::from_json_file(tmp.path() / "nope.json"), ConfigError);
  std::ofstream(tmp.path() / "bad.json") << "{ \"d_model\": ";
  try {
    PerceiverConfig::from_json_file(tmp.path() / "bad.json");
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos);
  }
}

TEST(PerceiverConfig, FromYamlMapping) {
  const auto node = YAML::Load(
      "d_model: 64\nd_latents: 128\nnum_latents: 32\nqk_channels: 64\nv_channels: 128\nhidden_act: gelu_new\n"
      "train_size: [32, 48]\nid2label: {0: neg, 1: pos}\n");
  const auto c = PerceiverConfig::from_yaml(node, "run.yaml");
  EXPECT_EQ(c.d_model, 64);
  EXPECT_EQ(c.qk_channels.value(), 64);
  EXPECT_EQ(c.hidden_act, "gelu_new");
  EXPECT_EQ(c.train_size, (std::vector<int64_t>{32, 48}));
  EXPECT_EQ(c.id2label.at(1), "pos");
  try {
    PerceiverConfig::from_yaml(YAML::Load("num_blocks: two"), "run.yaml");
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("run.yaml"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("num_blocks"), std::string::npos);
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

TEST(PerceiverModels, LanguagePerceiverFullSizeParameterCount) {
  // deepmind/language-perceiver's configuration.
  auto c = PerceiverConfig::from_json({{"d_model", 768},
                                       {"d_latents", 1280},
                                       {"num_latents", 256},
                                       {"num_self_attends_per_block", 26},
                                       {"num_self_attention_heads", 8},
                                       {"num_cross_attention_heads", 8},
                                       {"qk_channels", 256},
                                       {"v_channels", 1280},
                                       {"max_position_embeddings", 2048},
                                       {"architectures", {"PerceiverForMaskedLM"}}});
  torch::NoGradGuard no_grad;
  auto model = build_model(c);
  EXPECT_EQ(count_parameters(*model), 201108230);
}

TEST(PerceiverModels, InitialisationFollowsHuggingFace) {
  auto c = PerceiverConfig::from_json({{"d_model", 64},
                                       {"d_latents", 64},
                                       {"num_latents", 64},
                                       {"num_self_attends_per_block", 2},
                                       {"num_self_attention_heads", 4},
                                       {"num_cross_attention_heads", 4},
                                       {"max_position_embeddings", 128},
                                       {"initializer_range", 0.05},
                                       {"architectures", {"PerceiverForMaskedLM"}}});
  torch::manual_seed(0);
  auto model = build_model(c);
  for (const auto& p : model->named_parameters()) {
    const auto& name = p.key();
    const auto& t = p.value();
    if (name.find("layernorm") != std::string::npos) {
      EXPECT_TRUE(torch::equal(t, ends_with(name, "weight") ? torch::ones_like(t) : torch::zeros_like(t))) << name;
    } else if (ends_with(name, "bias")) {
      EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;
    } else if (t.numel() >= 4096) {
      EXPECT_NEAR(t.std().item<double>(), 0.05, 0.005) << name;
      EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.005) << name;
    }
  }
}

TEST(PerceiverModels, UnknownArchitectureIsAnError) {
  auto c = PerceiverConfig::from_json({{"architectures", {"PerceiverForTimeTravel"}}});
  try {
    build_model(c);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("PerceiverForTimeTravel"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("PerceiverForMaskedLM"), std::string::npos);
  }
}

}  // namespace
}  // namespace perceiver::testing
