// PerceiverConfig: every field of HF's configuration_perceiver.PerceiverConfig with HF's names and
// defaults, read from / written to HF's config.json (unknown keys kept for the round trip) or YAML.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace perceiver {

// A config value that is missing, of the wrong type or inconsistent; the message names key and source.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PerceiverConfig {
  // Perceiver fields (configuration_perceiver.py).
  int64_t num_latents = 256;
  int64_t d_latents = 1280;
  int64_t d_model = 768;
  int64_t num_blocks = 1;
  int64_t num_self_attends_per_block = 26;
  int64_t num_self_attention_heads = 8;
  int64_t num_cross_attention_heads = 8;
  std::optional<int64_t> qk_channels;
  std::optional<int64_t> v_channels;
  std::string cross_attention_shape_for_attention = "kv";
  int64_t self_attention_widening_factor = 1;
  int64_t cross_attention_widening_factor = 1;
  std::string hidden_act = "gelu";
  double attention_probs_dropout_prob = 0.1;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;  // kept for the round trip: HF's modules never read it (they use 1e-5)
  bool use_query_residual = true;
  int64_t vocab_size = 262;
  int64_t max_position_embeddings = 2048;
  int64_t image_size = 56;
  std::vector<int64_t> train_size = {368, 496};
  int64_t num_frames = 16;
  int64_t audio_samples_per_frame = 1920;
  int64_t samples_per_patch = 16;
  std::vector<int64_t> output_shape = {1, 16, 224, 224};
  int64_t output_num_channels = 512;
  int64_t _label_trainable_num_channels = 1024;

  // PretrainedConfig fields the model reads.
  std::vector<std::string> architectures;
  std::map<int64_t, std::string> id2label = {{0, "LABEL_0"}, {1, "LABEL_1"}};
  std::optional<std::string> problem_type;  // regression | single_label_classification | multi_label_classification
  bool output_attentions = false;
  bool output_hidden_states = false;

  // Every other key of the source document, written back unchanged.
  nlohmann::json extra = nlohmann::json::object();

  int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
  std::map<std::string, int64_t> label2id() const;
  // Replaces id2label with LABEL_0..LABEL_{n-1} (HF's behaviour when num_labels is set); n from 1 to
  // kMaxLabels, else std::invalid_argument.
  void set_num_labels(int64_t n);
  // The most labels a config may have: each one gets a name, so that a hostile num_labels cannot
  // make the reader allocate (or loop) without bound. A head with more would be absurd anyway
  // (2^20 labels x 256 latent channels is 268M parameters in its last layer alone).
  static constexpr int64_t kMaxLabels = int64_t{1} << 20;
  // The first entry of `architectures`, or "" when absent.
  std::string architecture() const;

  // `source` names the origin (a file path, "YAML mapping", ...) in error messages.
  static PerceiverConfig from_json(const nlohmann::json& doc, const std::string& source = "config");
  static PerceiverConfig from_json_file(const std::filesystem::path& path);
  static PerceiverConfig from_yaml(const YAML::Node& node, const std::string& source = "YAML mapping");

  nlohmann::json to_json() const;
  void save_json(const std::filesystem::path& path) const;

  // Throws ConfigError naming the key and `source` for negative sizes, indivisible head counts, etc.
  void validate(const std::string& source = "config") const;
};

}  // namespace perceiver
