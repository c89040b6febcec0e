// The generic HF parity harness: every model fixture under ../shared/fixtures/hf (and
// tests/fixtures/hf_modules) is run the way its meta.json describes and every output is compared with
// numpy's allclose(atol=rtol=1e-5).
#pragma once

#include <filesystem>
#include <ostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perceiver/models/model.h"

namespace perceiver::testing {

struct ModelFixture {
  std::string name;
  std::filesystem::path dir;
  nlohmann::json meta;
};

// GoogleTest prints a fixture parameter by its name.
inline void PrintTo(const ModelFixture& fixture, std::ostream* os) { *os << fixture.name; }

// tests/fixtures/hf_modules: fixtures of the heads transformers lacks (PerceiverForTokenClassification),
// made in the same layout by python/check_token_classification.py from transformers' Perceiver modules.
std::filesystem::path hf_modules_fixtures_dir();

// Every fixture of kind "model" listed in the index.json of hf_fixtures_dir(), then of
// hf_modules_fixtures_dir() (an unreadable index contributes none).
std::vector<ModelFixture> model_fixtures();

// The fixture's forward arguments: `$name` references resolved against inputs.safetensors.
NamedTensors fixture_inputs(const ModelFixture& fixture);
ForwardOptions fixture_forward_options(const ModelFixture& fixture);

// Compares outputs with outputs.safetensors; returns "" when all match, else a report of every
// missing, extra, wrongly typed or shaped, NaN or out-of-tolerance tensor (tensor_mismatch).
std::string compare_outputs(const NamedTensors& expected, const NamedTensors& actual, double atol = 1e-5,
                            double rtol = 1e-5);

}  // namespace perceiver::testing
