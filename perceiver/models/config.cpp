#include "perceiver/models/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "perceiver/io/json_io.h"
#include "perceiver/models/problem_type.h"

namespace perceiver {
namespace {

using json = nlohmann::json;

std::string type_name(const json& v) {
  return v.is_null() ? "null" : v.type_name();
}

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& what) {
  throw ConfigError(source + ": key '" + key + "': " + what);
}

// Readers that take the key out of `doc` when present and check its JSON type.
class Reader {
 public:
  Reader(json& doc, std::string source) : doc_(doc), source_(std::move(source)) {}

  void integer(const char* key, int64_t& out) {
    if (const json* v = take(key)) {
      if (!v->is_number_integer()) fail(source_, key, "expected an integer, found " + describe(*v));
      out = v->get<int64_t>();
    }
  }
  void optional_integer(const char* key, std::optional<int64_t>& out) {
    if (const json* v = take(key)) {
      if (v->is_null()) {
        out.reset();
      } else if (v->is_number_integer()) {
        out = v->get<int64_t>();
      } else {
        fail(source_, key, "expected an integer or null, found " + describe(*v));
      }
    }
  }
  void number(const char* key, double& out) {
    if (const json* v = take(key)) {
      if (!v->is_number()) fail(source_, key, "expected a number, found " + describe(*v));
      out = v->get<double>();
    }
  }
  void boolean(const char* key, bool& out) {
    if (const json* v = take(key)) {
      if (!v->is_boolean()) fail(source_, key, "expected true or false, found " + describe(*v));
      out = v->get<bool>();
    }
  }
  void string(const char* key, std::string& out) {
    if (const json* v = take(key)) {
      if (!v->is_string()) fail(source_, key, "expected a string, found " + describe(*v));
      out = v->get<std::string>();
    }
  }
  void optional_string(const char* key, std::optional<std::string>& out) {
    if (const json* v = take(key)) {
      if (v->is_null()) {
        out.reset();
      } else if (v->is_string()) {
        out = v->get<std::string>();
      } else {
        fail(source_, key, "expected a string or null, found " + describe(*v));
      }
    }
  }
  void integer_list(const char* key, std::vector<int64_t>& out) {
    if (const json* v = take(key)) {
      if (!v->is_array()) fail(source_, key, "expected a list of integers, found " + describe(*v));
      out.clear();
      for (const auto& e : *v) {
        if (!e.is_number_integer()) fail(source_, key, "expected a list of integers, found element " + describe(e));
        out.push_back(e.get<int64_t>());
      }
    }
  }
  void string_list(const char* key, std::vector<std::string>& out) {
    if (const json* v = take(key)) {
      if (v->is_null()) {
        out.clear();
        return;
      }
      if (!v->is_array()) fail(source_, key, "expected a list of strings, found " + describe(*v));
      out.clear();
      for (const auto& e : *v) {
        if (!e.is_string()) fail(source_, key, "expected a list of strings, found element " + describe(e));
        out.push_back(e.get<std::string>());
      }
    }
  }
  // Returns the value (owned by the reader until the next call) or nullptr.
  const json* take(const char* key) {
    auto it = doc_.find(key);
    if (it == doc_.end()) return nullptr;
    held_ = std::move(*it);
    doc_.erase(it);
    return &held_;
  }
  const std::string& source() const { return source_; }

 private:
  static std::string describe(const json& v) {
    return type_name(v) + " " + json_excerpt(v, 40);
  }
  json& doc_;
  std::string source_;
  json held_;
};

void read_labels(Reader& r, PerceiverConfig& c) {
  std::optional<int64_t> num_labels;
  r.optional_integer("num_labels", num_labels);
  if (const json* v = r.take("id2label")) {
    if (!v->is_object()) fail(r.source(), "id2label", "expected a mapping from id to label name");
    c.id2label.clear();
    for (const auto& [k, name] : v->items()) {
      int64_t id = 0;
      try {
        size_t used = 0;
        id = std::stoll(k, &used);
        if (used != k.size()) throw std::invalid_argument(k);
      } catch (const std::exception&) {
        fail(r.source(), "id2label", "id '" + k + "' is not an integer");
      }
      if (!name.is_string()) fail(r.source(), "id2label." + k, "expected a string label name");
      if (static_cast<int64_t>(c.id2label.size()) >= PerceiverConfig::kMaxLabels)
        fail(r.source(), "id2label", "more than " + std::to_string(PerceiverConfig::kMaxLabels) + " labels");
      c.id2label[id] = name.get<std::string>();
    }
  }
  // label2id is derived from id2label on write; read it only to check it is well-formed.
  if (const json* v = r.take("label2id")) {
    if (!v->is_object() && !v->is_null()) fail(r.source(), "label2id", "expected a mapping from label name to id");
  }
  if (num_labels) {
    if (*num_labels < 1 || *num_labels > PerceiverConfig::kMaxLabels)
      fail(r.source(), "num_labels",
           "must be from 1 to " + std::to_string(PerceiverConfig::kMaxLabels) + ", found " + std::to_string(*num_labels));
    if (*num_labels != c.num_labels()) c.set_num_labels(*num_labels);
  }
}

void check_positive(const std::string& source, const char* key, int64_t value, int64_t minimum = 1) {
  if (value < minimum)
    fail(source, key, "must be at least " + std::to_string(minimum) + ", found " + std::to_string(value));
}

json yaml_to_json(const YAML::Node& node, const std::string& source) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& e : node) out.push_back(yaml_to_json(e, source));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = yaml_to_json(kv.second, source);
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted: always a string
      if (s == "null" || s == "~") return nullptr;
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      try {
        size_t used = 0;
        const long long i = std::stoll(s, &used);
        if (used == s.size()) return i;
      } catch (const std::exception&) {
      }
      try {
        size_t used = 0;
        const double d = std::stod(s, &used);
        if (used == s.size()) return d;
      } catch (const std::exception&) {
      }
      return s;
    }
  }
  return nullptr;
}

}  // namespace

std::map<std::string, int64_t> PerceiverConfig::label2id() const {
  std::map<std::string, int64_t> out;
  for (const auto& [id, name] : id2label) out[name] = id;
  return out;
}

void PerceiverConfig::set_num_labels(int64_t n) {
  if (n < 1 || n > kMaxLabels)
    throw std::invalid_argument("num_labels must be from 1 to " + std::to_string(kMaxLabels) + ", got " +
                                std::to_string(n));
  id2label.clear();
  for (int64_t i = 0; i < n; ++i) id2label[i] = "LABEL_" + std::to_string(i);
}

std::string PerceiverConfig::architecture() const {
  return architectures.empty() ? std::string() : architectures.front();
}

PerceiverConfig PerceiverConfig::from_json(const nlohmann::json& doc_in, const std::string& source) {
  if (!doc_in.is_object()) throw ConfigError(source + ": expected a JSON object at the top level");
  json doc = doc_in;
  PerceiverConfig c;
  Reader r(doc, source);
  r.integer("num_latents", c.num_latents);
  r.integer("d_latents", c.d_latents);
  r.integer("d_model", c.d_model);
  r.integer("num_blocks", c.num_blocks);
  r.integer("num_self_attends_per_block", c.num_self_attends_per_block);
  r.integer("num_self_attention_heads", c.num_self_attention_heads);
  r.integer("num_cross_attention_heads", c.num_cross_attention_heads);
  r.optional_integer("qk_channels", c.qk_channels);
  r.optional_integer("v_channels", c.v_channels);
  r.string("cross_attention_shape_for_attention", c.cross_attention_shape_for_attention);
  r.integer("self_attention_widening_factor", c.self_attention_widening_factor);
  r.integer("cross_attention_widening_factor", c.cross_attention_widening_factor);
  r.string("hidden_act", c.hidden_act);
  r.number("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  r.number("initializer_range", c.initializer_range);
  r.number("layer_norm_eps", c.layer_norm_eps);
  r.boolean("use_query_residual", c.use_query_residual);
  r.integer("vocab_size", c.vocab_size);
  r.integer("max_position_embeddings", c.max_position_embeddings);
  r.integer("image_size", c.image_size);
  r.integer_list("train_size", c.train_size);
  r.integer("num_frames", c.num_frames);
  r.integer("audio_samples_per_frame", c.audio_samples_per_frame);
  r.integer("samples_per_patch", c.samples_per_patch);
  r.integer_list("output_shape", c.output_shape);
  r.integer("output_num_channels", c.output_num_channels);
  r.integer("_label_trainable_num_channels", c._label_trainable_num_channels);
  r.string_list("architectures", c.architectures);
  read_labels(r, c);
  r.optional_string("problem_type", c.problem_type);
  r.boolean("output_attentions", c.output_attentions);
  r.boolean("output_hidden_states", c.output_hidden_states);
  if (const json* mt = r.take("model_type")) {
    if (!mt->is_string() || mt->get<std::string>() != "perceiver")
      fail(source, "model_type", "expected \"perceiver\", found " + mt->dump());
  }
  c.extra = std::move(doc);
  c.validate(source);
  return c;
}

PerceiverConfig PerceiverConfig::from_json_file(const std::filesystem::path& path) {
  json doc;
  try {
    doc = read_json_file(path);
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
  return from_json(doc, path.string());
}

PerceiverConfig PerceiverConfig::from_yaml(const YAML::Node& node, const std::string& source) {
  if (!node.IsMap()) throw ConfigError(source + ": expected a mapping of PerceiverConfig fields");
  return from_json(yaml_to_json(node, source), source);
}

json PerceiverConfig::to_json() const {
  json j = extra;
  auto opt = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  j["num_latents"] = num_latents;
  j["d_latents"] = d_latents;
  j["d_model"] = d_model;
  j["num_blocks"] = num_blocks;
  j["num_self_attends_per_block"] = num_self_attends_per_block;
  j["num_self_attention_heads"] = num_self_attention_heads;
  j["num_cross_attention_heads"] = num_cross_attention_heads;
  j["qk_channels"] = opt(qk_channels);
  j["v_channels"] = opt(v_channels);
  j["cross_attention_shape_for_attention"] = cross_attention_shape_for_attention;
  j["self_attention_widening_factor"] = self_attention_widening_factor;
  j["cross_attention_widening_factor"] = cross_attention_widening_factor;
  j["hidden_act"] = hidden_act;
  j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  j["initializer_range"] = initializer_range;
  j["layer_norm_eps"] = layer_norm_eps;
  j["use_query_residual"] = use_query_residual;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["image_size"] = image_size;
  j["train_size"] = train_size;
  j["num_frames"] = num_frames;
  j["audio_samples_per_frame"] = audio_samples_per_frame;
  j["samples_per_patch"] = samples_per_patch;
  j["output_shape"] = output_shape;
  j["output_num_channels"] = output_num_channels;
  j["_label_trainable_num_channels"] = _label_trainable_num_channels;
  j["architectures"] = architectures.empty() ? json(nullptr) : json(architectures);
  json id2 = json::object(), l2i = json::object();
  for (const auto& [id, name] : id2label) {
    id2[std::to_string(id)] = name;
    l2i[name] = id;
  }
  j["id2label"] = id2;
  j["label2id"] = l2i;
  j["problem_type"] = problem_type ? json(*problem_type) : json(nullptr);
  j["output_attentions"] = output_attentions;
  j["output_hidden_states"] = output_hidden_states;
  j["model_type"] = "perceiver";
  return j;
}

void PerceiverConfig::save_json(const std::filesystem::path& path) const {
  std::ofstream out(path);
  if (!out) throw ConfigError(path.string() + ": cannot write config file");
  out << to_json().dump(2) << "\n";
  if (!out) throw ConfigError(path.string() + ": write failed");
}

void PerceiverConfig::validate(const std::string& source) const {
  check_positive(source, "num_latents", num_latents);
  check_positive(source, "d_latents", d_latents);
  check_positive(source, "d_model", d_model);
  check_positive(source, "num_blocks", num_blocks);
  check_positive(source, "num_self_attends_per_block", num_self_attends_per_block, 0);
  check_positive(source, "num_self_attention_heads", num_self_attention_heads);
  check_positive(source, "num_cross_attention_heads", num_cross_attention_heads);
  check_positive(source, "self_attention_widening_factor", self_attention_widening_factor);
  check_positive(source, "cross_attention_widening_factor", cross_attention_widening_factor);
  check_positive(source, "vocab_size", vocab_size);
  check_positive(source, "max_position_embeddings", max_position_embeddings);
  check_positive(source, "image_size", image_size);
  check_positive(source, "num_frames", num_frames);
  check_positive(source, "audio_samples_per_frame", audio_samples_per_frame);
  check_positive(source, "samples_per_patch", samples_per_patch);
  check_positive(source, "output_num_channels", output_num_channels);
  check_positive(source, "_label_trainable_num_channels", _label_trainable_num_channels);
  if (qk_channels) check_positive(source, "qk_channels", *qk_channels);
  if (v_channels) check_positive(source, "v_channels", *v_channels);
  for (const auto v : train_size) check_positive(source, "train_size", v);
  for (const auto v : output_shape) check_positive(source, "output_shape", v);
  if (attention_probs_dropout_prob < 0.0 || attention_probs_dropout_prob >= 1.0)
    fail(source, "attention_probs_dropout_prob", "must be in [0, 1), found " + std::to_string(attention_probs_dropout_prob));
  if (initializer_range < 0.0) fail(source, "initializer_range", "must not be negative");
  if (cross_attention_shape_for_attention != "q" && cross_attention_shape_for_attention != "kv")
    fail(source, "cross_attention_shape_for_attention",
         "must be \"q\" or \"kv\", found \"" + cross_attention_shape_for_attention + "\"");
  static const std::set<std::string> activations = {"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu",
                                                    "relu", "relu6", "selu", "silu", "swish", "tanh", "sigmoid",
                                                    "mish", "linear", "gelu_python"};
  if (!activations.count(hidden_act)) {
    std::string known;
    for (const auto& a : activations) known += (known.empty() ? "" : ", ") + a;
    fail(source, "hidden_act", "unknown activation \"" + hidden_act + "\" (known: " + known + ")");
  }
  if (d_latents % num_self_attention_heads != 0)
    fail(source, "d_latents", std::to_string(d_latents) + " must be divisible by num_self_attention_heads (" +
                                  std::to_string(num_self_attention_heads) + ")");
  if (d_latents % num_cross_attention_heads != 0)
    fail(source, "d_latents", std::to_string(d_latents) + " must be divisible by num_cross_attention_heads (" +
                                  std::to_string(num_cross_attention_heads) + ")");
  // Self-attention: qk defaults to d_latents, v to qk, and the output (v channels) is added to the latents.
  const int64_t self_qk = qk_channels.value_or(d_latents);
  const int64_t self_v = v_channels.value_or(self_qk);
  if (self_qk % num_self_attention_heads != 0)
    fail(source, "qk_channels", std::to_string(self_qk) + " must be divisible by num_self_attention_heads (" +
                                    std::to_string(num_self_attention_heads) + ")");
  if (self_v % num_self_attention_heads != 0)
    fail(source, "v_channels", std::to_string(self_v) + " must be divisible by num_self_attention_heads (" +
                                   std::to_string(num_self_attention_heads) + ")");
  if (self_v != d_latents)
    fail(source, "v_channels", std::to_string(self_v) + " must equal d_latents (" + std::to_string(d_latents) +
                                   "): self-attention outputs v_channels and adds them to the latents");
  if (qk_channels && *qk_channels % num_cross_attention_heads != 0)
    fail(source, "qk_channels", std::to_string(*qk_channels) + " must be divisible by num_cross_attention_heads (" +
                                    std::to_string(num_cross_attention_heads) + ")");
  if (v_channels && *v_channels % num_cross_attention_heads != 0)
    fail(source, "v_channels", std::to_string(*v_channels) + " must be divisible by num_cross_attention_heads (" +
                                   std::to_string(num_cross_attention_heads) + ")");
  if (id2label.empty()) fail(source, "id2label", "must name at least one label");
  if (problem_type && !ProblemType::known(*problem_type)) fail(source, "problem_type", ProblemType::expected(*problem_type));
}

}  // namespace perceiver
