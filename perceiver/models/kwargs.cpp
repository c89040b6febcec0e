#include "perceiver/models/kwargs.h"

#include <stdexcept>

namespace perceiver {

using json = nlohmann::json;

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

}  // namespace perceiver
