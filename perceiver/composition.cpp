#include "perceiver/composition.h"

#include <functional>

#include "perceiver/modality_registry.h"
#include "perceiver/postprocessors.h"
#include "perceiver/preprocessors.h"

namespace perceiver {
namespace {

using json = nlohmann::json;

template <typename T>
using ComponentBuilder = std::function<std::shared_ptr<T>(const PerceiverConfig&, Kwargs&)>;

template <typename T>
std::shared_ptr<T> build_component(const PerceiverConfig& config, const json& spec, const char* role,
                                   const std::map<std::string, ComponentBuilder<T>>& builders) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("class") || !spec["class"].is_string())
    throw std::invalid_argument(std::string("construction.") + role + ": expected {\"class\": NAME, \"kwargs\": {...}}");
  const auto name = spec["class"].get<std::string>();
  auto it = builders.find(name);
  if (it == builders.end()) {
    std::string known;
    for (const auto& [k, v] : builders) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument(std::string("construction.") + role + ": unknown class '" + name + "' (known: " + known +
                                ")");
  }
  Kwargs kw(spec.value("kwargs", json::object()), std::string("construction.") + role + " (" + name + ")");
  auto built = it->second(config, kw);
  kw.finish();
  return built;
}

}  // namespace

Kwargs::Kwargs(const json& kwargs, std::string owner) : kwargs_(kwargs), owner_(std::move(owner)) {
  if (!kwargs_.is_object()) throw std::invalid_argument(owner_ + ": kwargs must be an object");
}

bool Kwargs::has(const std::string& key) const { return kwargs_.contains(key) && !kwargs_[key].is_null(); }

const json* Kwargs::find(const std::string& key) {
  used_.insert(key);
  auto it = kwargs_.find(key);
  return it == kwargs_.end() || it->is_null() ? nullptr : &*it;
}

int64_t Kwargs::integer(const std::string& key, std::optional<int64_t> fallback) {
  auto v = optional_integer(key);
  if (v) return *v;
  if (!fallback) throw std::invalid_argument(owner_ + ": missing required argument '" + key + "'");
  return *fallback;
}

std::optional<int64_t> Kwargs::optional_integer(const std::string& key) {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) throw std::invalid_argument(owner_ + ": '" + key + "' must be an integer, got " + v->dump());
  return v->get<int64_t>();
}

double Kwargs::number(const std::string& key, std::optional<double> fallback) {
  const json* v = find(key);
  if (!v) {
    if (!fallback) throw std::invalid_argument(owner_ + ": missing required argument '" + key + "'");
    return *fallback;
  }
  if (!v->is_number()) throw std::invalid_argument(owner_ + ": '" + key + "' must be a number, got " + v->dump());
  return v->get<double>();
}

bool Kwargs::boolean(const std::string& key, std::optional<bool> fallback) {
  const json* v = find(key);
  if (!v) {
    if (!fallback) throw std::invalid_argument(owner_ + ": missing required argument '" + key + "'");
    return *fallback;
  }
  if (!v->is_boolean()) throw std::invalid_argument(owner_ + ": '" + key + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::string Kwargs::string(const std::string& key, std::optional<std::string> fallback) {
  const json* v = find(key);
  if (!v) {
    if (!fallback) throw std::invalid_argument(owner_ + ": missing required argument '" + key + "'");
    return *fallback;
  }
  if (!v->is_string()) throw std::invalid_argument(owner_ + ": '" + key + "' must be a string, got " + v->dump());
  return v->get<std::string>();
}

std::vector<int64_t> Kwargs::dims(const std::string& key, std::optional<std::vector<int64_t>> fallback) {
  const json* v = find(key);
  if (!v) {
    if (!fallback) throw std::invalid_argument(owner_ + ": missing required argument '" + key + "'");
    return *fallback;
  }
  if (v->is_number_integer()) return {v->get<int64_t>()};
  std::vector<int64_t> out;
  if (v->is_array()) {
    for (const auto& e : *v) {
      if (!e.is_number_integer()) break;
      out.push_back(e.get<int64_t>());
    }
    if (out.size() == v->size()) return out;
  }
  throw std::invalid_argument(owner_ + ": '" + key + "' must be an integer or a list of integers, got " + v->dump());
}

json Kwargs::raw(const std::string& key) {
  const json* v = find(key);
  return v ? *v : json();
}

void Kwargs::finish() const {
  for (const auto& [key, value] : kwargs_.items())
    if (!used_.count(key)) throw std::invalid_argument(owner_ + ": unsupported argument '" + key + "'");
}

PositionEncodingOptions position_encoding_from_kwargs(Kwargs& kw, const std::string& default_type) {
  PositionEncodingOptions p;
  p.type = kw.string("position_encoding_type", default_type);
  p.out_channels = kw.integer("out_channels", -1);
  p.project_pos_dim = kw.integer("project_pos_dim", -1);
  if (kw.has("trainable_position_encoding_kwargs")) {
    Kwargs t(kw.raw("trainable_position_encoding_kwargs"), kw.owner() + ".trainable_position_encoding_kwargs");
    p.trainable = TrainablePositionEncodingOptions{t.dims("index_dims"), t.integer("num_channels", 128)};
    t.finish();
  } else {
    kw.raw("trainable_position_encoding_kwargs");
  }
  if (kw.has("fourier_position_encoding_kwargs")) {
    Kwargs f(kw.raw("fourier_position_encoding_kwargs"), kw.owner() + ".fourier_position_encoding_kwargs");
    FourierPositionEncodingOptions o;
    o.num_bands = f.integer("num_bands");
    o.max_resolution = f.dims("max_resolution");
    o.concat_pos = f.boolean("concat_pos", true);
    o.sine_only = f.boolean("sine_only", false);
    f.finish();
    p.fourier = o;
  } else {
    kw.raw("fourier_position_encoding_kwargs");
  }
  return p;
}

BasicDecoderOptions basic_decoder_from_kwargs(Kwargs& kw) {
  BasicDecoderOptions d;
  d.output_num_channels = kw.integer("output_num_channels", 0);
  d.output_index_dims = kw.dims("output_index_dims", std::vector<int64_t>{});
  d.num_channels = kw.integer("num_channels", 128);
  kw.raw("subsampled_index_dims");  // accepted for HF compatibility; HF stores it but never reads it
  d.qk_channels = kw.optional_integer("qk_channels");
  d.v_channels = kw.optional_integer("v_channels");
  d.num_heads = kw.integer("num_heads", 1);
  d.widening_factor = kw.integer("widening_factor", 1);
  d.use_query_residual = kw.boolean("use_query_residual", false);
  d.concat_preprocessed_input = kw.boolean("concat_preprocessed_input", false);
  d.final_project = kw.boolean("final_project", true);
  d.position_encoding_only = kw.boolean("position_encoding_only", false);
  d.position_encoding = position_encoding_from_kwargs(kw, "trainable");
  return d;
}

Preprocessor build_preprocessor(const PerceiverConfig& config, const json& spec) {
  static const auto builders = [] {
    std::map<std::string, ComponentBuilder<PreprocessorImpl>> b;
    b["PerceiverTextPreprocessor"] = [](const PerceiverConfig& c, Kwargs&) -> Preprocessor {
      return std::make_shared<PerceiverTextPreprocessorImpl>(c);
    };
    register_modality_preprocessors(b);
    return b;
  }();
  return build_component<PreprocessorImpl>(config, spec, "input_preprocessor", builders);
}

Decoder build_decoder(const PerceiverConfig& config, const json& spec) {
  static const auto builders = [] {
    std::map<std::string, ComponentBuilder<DecoderImpl>> b;
    b["PerceiverBasicDecoder"] = [](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
      return std::make_shared<PerceiverBasicDecoderImpl>(c, basic_decoder_from_kwargs(kw));
    };
    b["PerceiverClassificationDecoder"] = [](const PerceiverConfig& c, Kwargs& kw) -> Decoder {
      return std::make_shared<PerceiverClassificationDecoderImpl>(c, basic_decoder_from_kwargs(kw));
    };
    b["PerceiverProjectionDecoder"] = [](const PerceiverConfig& c, Kwargs&) -> Decoder {
      return std::make_shared<PerceiverProjectionDecoderImpl>(c);
    };
    register_modality_decoders(b);
    return b;
  }();
  return build_component<DecoderImpl>(config, spec, "decoder", builders);
}

Postprocessor build_postprocessor(const PerceiverConfig& config, const json& spec) {
  static const auto builders = [] {
    std::map<std::string, ComponentBuilder<PostprocessorImpl>> b;
    b["PerceiverProjectionPostprocessor"] = [](const PerceiverConfig&, Kwargs& kw) -> Postprocessor {
      return std::make_shared<PerceiverProjectionPostprocessorImpl>(kw.integer("in_channels"),
                                                                    kw.integer("out_channels"));
    };
    b["PerceiverClassificationPostprocessor"] = [](const PerceiverConfig& c, Kwargs& kw) -> Postprocessor {
      return std::make_shared<PerceiverClassificationPostprocessorImpl>(c, kw.integer("in_channels"));
    };
    register_modality_postprocessors(b);
    return b;
  }();
  return build_component<PostprocessorImpl>(config, spec, "output_postprocessor", builders);
}

PerceiverModel build_perceiver_model(const PerceiverConfig& config, const json& construction) {
  if (construction.is_null()) return PerceiverModel(config);
  if (!construction.is_object()) throw std::invalid_argument("construction must be a JSON object");
  for (const auto& [key, value] : construction.items())
    if (key != "input_preprocessor" && key != "decoder" && key != "output_postprocessor")
      throw std::invalid_argument("construction: unknown component '" + key +
                                  "' (expected input_preprocessor, decoder, output_postprocessor)");
  auto part = [&](const char* key) { return construction.contains(key) ? construction[key] : json(); };
  return PerceiverModel(config, build_decoder(config, part("decoder")), build_preprocessor(config, part("input_preprocessor")),
                        build_postprocessor(config, part("output_postprocessor")));
}

}  // namespace perceiver
