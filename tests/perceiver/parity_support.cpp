#include "tests/perceiver/parity_support.h"

#include <fstream>
#include <sstream>

#include "perceiver/io/safetensors.h"
#include "tests/test_support.h"

namespace perceiver::testing {

std::filesystem::path hf_modules_fixtures_dir() {
  return std::filesystem::path(PERCEIVER_SOURCE_DIR) / "tests" / "fixtures" / "hf_modules";
}

namespace {

void add_fixtures(const std::filesystem::path& root, std::vector<ModelFixture>& out) {
  std::ifstream in(root / "index.json");
  if (!in) return;
  const auto index = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!index.is_object() || !index.contains("fixtures")) return;
  for (const auto& f : index["fixtures"]) {
    if (f.value("kind", "") != "model") continue;
    ModelFixture fixture;
    fixture.name = f.value("name", "");
    fixture.dir = root / fixture.name;
    std::ifstream meta(fixture.dir / "meta.json");
    fixture.meta = nlohmann::json::parse(meta, nullptr, false);
    out.push_back(std::move(fixture));
  }
}

}  // namespace

std::vector<ModelFixture> model_fixtures() {
  std::vector<ModelFixture> out;
  add_fixtures(hf_fixtures_dir(), out);
  // Only beside the shared ones: without those, HfParityIndex.FixturesArePresent must still fail.
  if (!out.empty()) add_fixtures(hf_modules_fixtures_dir(), out);
  return out;
}

NamedTensors fixture_inputs(const ModelFixture& fixture) {
  const auto tensors = io::load_safetensors(fixture.dir / "inputs.safetensors");
  NamedTensors args;
  for (const auto& [key, value] : fixture.meta.at("forward_kwargs").items()) {
    if (value.is_string() && value.get<std::string>().rfind('$', 0) == 0) {
      args[key] = tensors.at(value.get<std::string>().substr(1));
    } else if (value.is_object()) {  // a dict argument: {"image": "$inputs.image", ...}
      for (const auto& [sub, ref] : value.items()) {
        if (ref.is_string() && ref.get<std::string>().rfind('$', 0) == 0)
          args[key + "." + sub] = tensors.at(ref.get<std::string>().substr(1));
      }
    }
  }
  return args;
}

ForwardOptions fixture_forward_options(const ModelFixture& fixture) {
  const auto& kw = fixture.meta.at("forward_kwargs");
  ForwardOptions o;
  o.output_attentions = kw.value("output_attentions", false);
  o.output_hidden_states = kw.value("output_hidden_states", false);
  o.interpolate_pos_encoding = kw.value("interpolate_pos_encoding", false);
  return o;
}

std::string compare_outputs(const NamedTensors& expected, const NamedTensors& actual, double atol, double rtol) {
  std::ostringstream report;
  for (const auto& [name, want] : expected) {
    auto it = actual.find(name);
    if (it == actual.end()) {
      report << "missing output '" << name << "'\n";
      continue;
    }
    const std::string mismatch = tensor_mismatch(it->second, want, atol, rtol);
    if (!mismatch.empty()) report << "'" << name << "': " << mismatch << "\n";
  }
  for (const auto& [name, t] : actual)
    if (!expected.count(name)) report << "unexpected extra output '" << name << "'\n";
  return report.str();
}

}  // namespace perceiver::testing
