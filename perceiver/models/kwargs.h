// Typed reading of an HF constructor's kwargs (a construction's {"class": ..., "kwargs": {...}}),
// and the kwargs that several components share.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "perceiver/models/decoders.h"
#include "perceiver/models/position_encoding.h"

namespace perceiver {

// Typed access to a kwargs object: every key must be consumed, unknown ones are errors.
class Kwargs {
 public:
  Kwargs(const nlohmann::json& kwargs, std::string owner);
  bool has(const std::string& key) const;
  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt);
  std::optional<int64_t> optional_integer(const std::string& key);
  double number(const std::string& key, std::optional<double> fallback = std::nullopt);
  bool boolean(const std::string& key, std::optional<bool> fallback = std::nullopt);
  std::string string(const std::string& key, std::optional<std::string> fallback = std::nullopt);
  // An int or a list of ints (HF accepts both for index dims and resolutions).
  std::vector<int64_t> dims(const std::string& key, std::optional<std::vector<int64_t>> fallback = std::nullopt);
  nlohmann::json raw(const std::string& key);
  // Throws for any key not read.
  void finish() const;
  const std::string& owner() const { return owner_; }

 private:
  const nlohmann::json* find(const std::string& key);
  nlohmann::json kwargs_;
  std::string owner_;
  std::set<std::string> used_;
};

// build_position_encoding's kwargs (position_encoding_type, trainable_/fourier_position_encoding_kwargs,
// out_channels, project_pos_dim) taken from `kw`.
PositionEncodingOptions position_encoding_from_kwargs(Kwargs& kw, const std::string& default_type = "trainable");
// PerceiverBasicDecoder's kwargs.
BasicDecoderOptions basic_decoder_from_kwargs(Kwargs& kw);

}  // namespace perceiver
