#include "perceiver/io/safetensors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/test_support.h"

namespace perceiver::io {
namespace {
using perceiver::testing::slurp;
using perceiver::testing::write_file;

namespace fs = std::filesystem;
using perceiver::testing::hf_fixtures_dir;
using perceiver::testing::TempDir;



std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A hand-assembled safetensors file: length prefix, header text, data bytes.
std::string raw_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

const std::vector<torch::ScalarType> kAllDtypes = {torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kFloat64,
                                                   torch::kInt64,   torch::kInt32,   torch::kInt16,    torch::kInt8,
                                                   torch::kUInt8,   torch::kBool};

torch::Tensor sample(torch::ScalarType dtype, torch::IntArrayRef shape) {
  if (dtype == torch::kBool) return torch::randint(0, 2, shape).to(torch::kBool);
  if (dtype == torch::kUInt8) return torch::randint(0, 256, shape).to(dtype);
  if (c10::isIntegralType(dtype, false)) return torch::randint(-100, 100, shape).to(dtype);
  return torch::randn(shape).to(dtype);
}

void expect_same(const TensorMap& expected, const TensorMap& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (const auto& [name, t] : expected) {
    ASSERT_TRUE(actual.count(name)) << name;
    const auto& a = actual.at(name);
    EXPECT_EQ(a.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(a.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(a, t)) << name;
  }
}

// Calls fn, which must throw a std::exception whose message names `file`; returns the message.
using perceiver::testing::expect_error;

TEST(Safetensors, RoundTripEveryDtypeIncludingViewsEmptyAndScalars) {
  torch::manual_seed(0);
  TensorMap tensors;
  for (const auto dtype : kAllDtypes) {
    const std::string n = safetensors_dtype_name(dtype);
    tensors[n + ".matrix"] = sample(dtype, {3, 5});
    tensors[n + ".transposed"] = sample(dtype, {4, 6}).t();                     // non-contiguous
    tensors[n + ".strided"] = sample(dtype, {2, 9, 4}).slice(1, 1, 8, 3);       // stepped slice with offset
    tensors[n + ".empty"] = sample(dtype, {0, 3});
    tensors[n + ".scalar"] = sample(dtype, {});
  }
  ASSERT_FALSE(tensors["F32.transposed"].is_contiguous());
  TempDir tmp;
  const auto file = tmp.path() / "all.safetensors";
  save_safetensors(file, tensors, {{"format", "pt"}, {"note", "round \"trip\" ü"}});
  const auto back = read_safetensors(file);
  expect_same(tensors, back.tensors);
  EXPECT_EQ(back.metadata, (Metadata{{"format", "pt"}, {"note", "round \"trip\" ü"}}));
  for (const auto& [name, t] : back.tensors) EXPECT_TRUE(t.is_contiguous()) << name;

  // On-disk layout checked independently: 8-aligned header padded with spaces, tensors packed in name order.
  const std::string bytes = slurp(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.substr(0, 16), "{\"__metadata__\":");
  const auto j = nlohmann::json::parse(header);
  uint64_t expected_begin = 0;
  for (const auto& [name, t] : tensors) {
    const auto& e = j.at(name);
    EXPECT_EQ(e.at("dtype").get<std::string>(), safetensors_dtype_name(t.scalar_type()));
    EXPECT_EQ(e.at("data_offsets")[0].get<uint64_t>(), expected_begin) << name;
    expected_begin += t.numel() * t.element_size();
  }
  EXPECT_EQ(8 + n + expected_begin, bytes.size());
  EXPECT_EQ(header.find_last_not_of(' ') + 1, header.find_last_of('}') + 1);
}

TEST(Safetensors, DefaultMetadataIsFormatPtAndEmptyMetadataIsOmitted) {
  TempDir tmp;
  const TensorMap one{{"x", torch::arange(4)}};
  save_safetensors(tmp.path() / "a.safetensors", one);
  EXPECT_EQ(read_safetensors(tmp.path() / "a.safetensors").metadata, (Metadata{{"format", "pt"}}));
  save_safetensors(tmp.path() / "b.safetensors", one, {});
  EXPECT_TRUE(read_safetensors(tmp.path() / "b.safetensors").metadata.empty());
  EXPECT_EQ(slurp(tmp.path() / "b.safetensors").substr(8, 5), "{\"x\":");
  save_safetensors(tmp.path() / "empty.safetensors", {});
  EXPECT_TRUE(load_safetensors(tmp.path() / "empty.safetensors").empty());
}

TEST(Safetensors, RejectsDtypesItCannotStore) {
  TempDir tmp;
  EXPECT_THROW(save_safetensors(tmp.path() / "c.safetensors", {{"c", torch::zeros({2}, torch::kComplexFloat)}}),
               std::runtime_error);
  EXPECT_THROW(save_safetensors(tmp.path() / "u.safetensors", {{"u", torch::Tensor()}}), std::runtime_error);
}

// Every fixture file loads, and names/dtypes/shapes agree with what meta.json records about it.
TEST(Safetensors, ReadsEveryFixtureConsistentlyWithMeta) {
  const auto dir = hf_fixtures_dir();
  int models = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto meta_file = entry.path() / "meta.json";
    if (!fs::exists(entry.path() / "model.safetensors") || !fs::exists(meta_file)) continue;
    ++models;
    const auto meta = nlohmann::json::parse(slurp(meta_file));
    const auto model = read_safetensors(entry.path() / "model.safetensors");
    std::set<std::string> expected_keys;
    for (const auto& k : meta.at("state_dict_keys")) expected_keys.insert(k.get<std::string>());
    std::set<std::string> keys;
    for (const auto& [name, t] : model.tensors) keys.insert(name);
    EXPECT_EQ(keys, expected_keys) << entry.path();

    for (const char* part : {"inputs", "outputs"}) {
      const auto tensors = load_safetensors(entry.path() / (std::string(part) + ".safetensors"));
      const auto& described = meta.at(part);
      EXPECT_EQ(tensors.size(), described.size()) << entry.path() << " " << part;
      for (const auto& [name, d] : described.items()) {
        ASSERT_TRUE(tensors.count(name)) << entry.path() << " " << name;
        const auto& t = tensors.at(name);
        EXPECT_EQ(std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), d.at("shape").get<std::vector<int64_t>>())
            << name;
        const std::string dtype = d.at("dtype").get<std::string>();
        const std::string expect = t.scalar_type() == torch::kFloat32 ? "float32"
                                   : t.scalar_type() == torch::kInt64 ? "int64"
                                   : t.scalar_type() == torch::kUInt8 ? "uint8"
                                   : t.scalar_type() == torch::kBool  ? "bool"
                                                                      : "other";
        EXPECT_EQ(dtype, expect) << name;
      }
    }
  }
  EXPECT_GE(models, 5);
}

// Re-saving what we read reproduces HF's files byte for byte.
TEST(Safetensors, RewritingAFixtureIsByteIdentical) {
  TempDir tmp;
  for (const char* model : {"PerceiverForMaskedLM", "PerceiverForImageClassificationConvProcessing"}) {
    const auto src = hf_fixtures_dir() / model / "model.safetensors";
    const auto contents = read_safetensors(src);
    const auto dst = tmp.path() / (std::string(model) + ".safetensors");
    save_safetensors(dst, contents.tensors, contents.metadata);
    EXPECT_TRUE(slurp(src) == slurp(dst)) << model;
  }
}

class SafetensorsCorrupt : public ::testing::Test {
 protected:
  fs::path write(const std::string& name, const std::string& bytes) {
    const auto p = tmp_.path() / name;
    write_file(p, bytes);
    return p;
  }
  std::string error_for(const std::string& bytes) {
    const auto p = write("bad.safetensors", bytes);
    return expect_error([&] { load_safetensors(p); }, p);
  }
  TempDir tmp_;
};

TEST_F(SafetensorsCorrupt, EveryTruncationThrows) {
  const auto good = tmp_.path() / "good.safetensors";
  save_safetensors(good, {{"a", torch::arange(6, torch::kInt16).reshape({2, 3})},
                          {"b", torch::ones({3}, torch::kFloat64)},
                          {"c", torch::tensor({true, false, true})}});
  const std::string bytes = slurp(good);
  ASSERT_EQ(load_safetensors(good).size(), 3u);
  for (size_t len = 0; len < bytes.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    const auto msg = error_for(bytes.substr(0, len));
    EXPECT_FALSE(msg.empty());
  }
}

TEST_F(SafetensorsCorrupt, HeaderLengthBeyondFile) {
  EXPECT_NE(error_for(le64(1000) + "{}").find("header length 1000"), std::string::npos);
  EXPECT_NE(error_for(le64(~uint64_t{0}) + "{}").find("exceeds"), std::string::npos);
}

TEST_F(SafetensorsCorrupt, MalformedHeaders) {
  const std::string ok_entry = R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data(8, '\0');
  ASSERT_NO_THROW(load_safetensors(write("ok.safetensors", raw_file("{" + ok_entry + "}", data))));

  EXPECT_NE(error_for(raw_file("{\"x\":", data)).find("invalid JSON"), std::string::npos);
  EXPECT_NE(error_for(raw_file("[1,2]", data)).find("JSON object"), std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data)).find("exceed"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data)).find("begin > end"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,8]}})", data))
                .find("unsupported dtype 'F8_E4M3'"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data)).find("need 12"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data))
                .find("non-negative"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data))
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[2]}})", data)).find("data_offsets"), std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data)).find("[begin, end]"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data)).find("array"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":[1]})", data)).find("'x'"), std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"__metadata__":{"a":1},)" + ok_entry + "}", data)).find("__metadata__"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x02")))
                .find("BOOL"),
            std::string::npos);
}

// Arbitrary byte damage to a header must give a clean exception or a valid result, never a crash.
TEST_F(SafetensorsCorrupt, DamagedHeaderBytesNeverCrash) {
  const auto good = tmp_.path() / "good.safetensors";
  save_safetensors(good, {{"a", torch::arange(6, torch::kInt32)}, {"b", torch::ones({2, 2})}});
  const std::string bytes = slurp(good);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  const auto p = tmp_.path() / "damaged.safetensors";
  int failures = 0;
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    for (const char c : {'\0', '9', '"', '}', '\xff'}) {
      std::string damaged = bytes;
      if (damaged[pos] == c) continue;
      damaged[pos] = c;
      write_file(p, damaged);
      try {
        load_safetensors(p);
      } catch (const std::runtime_error& e) {
        ++failures;
        EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(failures, 0);
}

// Regressions for hostile headers: an oversized header is refused before it is read, deep nesting
// is refused while parsing (printing it in an error used to recurse once per level), and tensors
// may not share bytes.
TEST_F(SafetensorsCorrupt, HostileHeaders) {
  EXPECT_NE(error_for(le64(100'000'001) + std::string(16, ' ')).find("limit of 100000000 bytes"), std::string::npos);
  const int depth = 100000;
  const std::string deep_shape = std::string(depth, '[') + std::string(depth, ']');
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":)" + deep_shape + R"(,"data_offsets":[0,0]}})", ""))
                .find("nests"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"x":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", std::string(8, '\0')))
                .find("nests"),
            std::string::npos);
  EXPECT_NE(error_for(raw_file(R"({"__metadata__":{"a":{"b":["c"]}}})", "")).find("nests"), std::string::npos);
  // A huge name or value is shortened in the message.
  const std::string long_dtype = std::string(1 << 20, 'Z');
  const std::string msg = error_for(raw_file(R"({"x":{"dtype":")" + long_dtype + R"(","shape":[],"data_offsets":[0,4]}})",
                                             std::string(4, '\0')));
  EXPECT_LT(msg.size(), 1000u);

  const std::string overlap = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  const std::string err = error_for(raw_file(overlap, std::string(12, '\0')));
  EXPECT_NE(err.find("'a'"), std::string::npos) << err;
  EXPECT_NE(err.find("overlap"), std::string::npos) << err;
  const std::string same = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NE(error_for(raw_file(same, std::string(8, '\0'))).find("overlap"), std::string::npos);
  // Empty tensors take no bytes, so they overlap nothing.
  const std::string empties = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(load_safetensors(write("empties.safetensors", raw_file(empties, std::string(8, '\0')))).size(), 2u);
}

// The same reader works on bytes in memory (the fuzzing entry point) with the same errors.
TEST(Safetensors, ParseFromMemoryMatchesTheFile) {
  TempDir tmp;
  const TensorMap tensors = {{"a", torch::arange(6, torch::kInt32)}, {"b", torch::ones({2, 2})}};
  save_safetensors(tmp.path() / "m.safetensors", tensors);
  const std::string bytes = slurp(tmp.path() / "m.safetensors");
  expect_same(tensors, parse_safetensors(bytes, "memory").tensors);
  EXPECT_NE(expect_error([&] { parse_safetensors(bytes.substr(0, 20), "memory"); }, "memory").find("header length"),
            std::string::npos);
}

TEST_F(SafetensorsCorrupt, MissingFileAndDirectory) {
  const auto missing = tmp_.path() / "missing.safetensors";
  EXPECT_NE(expect_error([&] { load_safetensors(missing); }, missing).find("cannot open"), std::string::npos);
  expect_error([&] { load_safetensors(tmp_.path()); }, tmp_.path());
}

}  // namespace
}  // namespace perceiver::io
