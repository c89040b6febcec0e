#include "perceiver/io/torch_bin.h"

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "perceiver/io/safetensors.h"
#include "tests/test_support.h"

namespace perceiver::io {
namespace {
using perceiver::testing::slurp;
using perceiver::testing::write_file;

namespace fs = std::filesystem;
using perceiver::testing::hf_fixtures_dir;
using perceiver::testing::run_cli;
using perceiver::testing::TempDir;



void expect_same(const TensorMap& expected, const TensorMap& actual, const std::string& what) {
  std::set<std::string> e, a;
  for (const auto& kv : expected) e.insert(kv.first);
  for (const auto& kv : actual) a.insert(kv.first);
  ASSERT_EQ(e, a) << what;
  for (const auto& [name, t] : expected) {
    const auto& x = actual.at(name);
    EXPECT_EQ(x.scalar_type(), t.scalar_type()) << what << " " << name;
    EXPECT_EQ(x.sizes(), t.sizes()) << what << " " << name;
    EXPECT_TRUE(torch::equal(x, t)) << what << " " << name;
  }
}

using perceiver::testing::expect_error;

// Emits pickle protocol 2 the way Python's pickler does for torch.save(state_dict).
class PickleWriter {
 public:
  PickleWriter() { raw("\x80\x02"); }
  PickleWriter& raw(const std::string& s) {
    buf_ += s;
    return *this;
  }
  PickleWriter& op(char c) {
    buf_ += c;
    return *this;
  }
  PickleWriter& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleWriter& str(const std::string& s) {
    op('X');
    for (int i = 0; i < 4; ++i) buf_ += static_cast<char>(s.size() >> (8 * i));
    return raw(s);
  }
  PickleWriter& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').raw(std::string(1, static_cast<char>(v)));
    if (v >= 0 && v < 65536) return op('M').raw({static_cast<char>(v), static_cast<char>(v >> 8)});
    op('\x8a').raw(std::string(1, '\x08'));  // LONG1, 8 bytes
    for (int i = 0; i < 8; ++i) buf_ += static_cast<char>(static_cast<uint64_t>(v) >> (8 * i));
    return *this;
  }
  PickleWriter& int_tuple(const std::vector<int64_t>& xs) {
    op('(');
    for (auto x : xs) integer(x);
    return op('t');
  }
  // _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
  PickleWriter& tensor(const std::string& storage_type, const std::string& key, int64_t numel, int64_t offset,
                       const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel).op('t').op('Q');
    integer(offset).int_tuple(size).int_tuple(stride).op('\x89');
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  PickleWriter& begin_state_dict() { return global("collections", "OrderedDict").op(')').op('R').op('('); }
  PickleWriter& end_state_dict() { return op('u'); }
  std::string finish() { return buf_ + "."; }

 private:
  std::string buf_;
};

// A torch.save-style zip: <stem>/data.pkl, <stem>/data/<key>..., <stem>/version.
void write_archive(const fs::path& file, const std::string& pickle,
                   const std::vector<std::pair<std::string, std::string>>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(file.string());
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, bytes] : records) writer.writeRecord("data/" + key, bytes.data(), bytes.size());
  writer.writeEndOfFile();
}

std::string tensor_bytes(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

TEST(TorchBin, FixturesMatchTheirSafetensors) {
  for (const char* model : {"PerceiverForMaskedLM", "PerceiverForImageClassificationConvProcessing"}) {
    const auto dir = hf_fixtures_dir() / model;
    const auto bin = load_torch_bin(dir / "pytorch_model.bin");
    expect_same(load_safetensors(dir / "model.safetensors"), bin, model);
  }
  // BatchNorm's step counter is int64.
  const auto conv = load_torch_bin(hf_fixtures_dir() / "PerceiverForImageClassificationConvProcessing" /
                                   "pytorch_model.bin");
  EXPECT_EQ(conv.at("perceiver.input_preprocessor.convnet.batchnorm.num_batches_tracked").scalar_type(), torch::kInt64);
}

TEST(TorchBin, LoadStateDictDispatchesOnContent) {
  const auto dir = hf_fixtures_dir() / "PerceiverForMaskedLM";
  const auto reference = load_safetensors(dir / "model.safetensors");
  expect_same(reference, load_state_dict(dir / "pytorch_model.bin"), "bin");
  expect_same(reference, load_state_dict(dir / "model.safetensors"), "safetensors");
  expect_same(reference, load_state_dict(dir), "directory");
  TempDir tmp;
  // Content decides, not the extension.
  fs::copy_file(dir / "pytorch_model.bin", tmp.path() / "weights.safetensors");
  expect_same(reference, load_state_dict(tmp.path() / "weights.safetensors"), "renamed");
  expect_error([&] { load_state_dict(tmp.path() / "nothing.bin"); }, tmp.path() / "nothing.bin");
  fs::create_directories(tmp.path() / "empty");
  expect_error([&] { load_state_dict(tmp.path() / "empty"); }, tmp.path() / "empty");
}

// Views, offsets, strides, shared storages, every dtype; expected tensors come from as_strided on the source.
TEST(TorchBin, HandCraftedArchiveWithViewsAndSharedStorage) {
  torch::manual_seed(1);
  TempDir tmp;
  const auto base = torch::randn({24});
  const std::vector<std::tuple<std::string, torch::ScalarType, torch::Tensor>> typed = {
      {"DoubleStorage", torch::kFloat64, torch::randn({5}, torch::kFloat64)},
      {"HalfStorage", torch::kFloat16, torch::randn({5}).to(torch::kFloat16)},
      {"BFloat16Storage", torch::kBFloat16, torch::randn({5}).to(torch::kBFloat16)},
      {"LongStorage", torch::kInt64, torch::tensor(std::vector<int64_t>{-5000000000, 1, 2, 3, 4})},
      {"IntStorage", torch::kInt32, torch::randint(-1000, 1000, {5}, torch::kInt32)},
      {"ShortStorage", torch::kInt16, torch::randint(-1000, 1000, {5}, torch::kInt16)},
      {"CharStorage", torch::kInt8, torch::randint(-100, 100, {5}, torch::kInt8)},
      {"ByteStorage", torch::kUInt8, torch::randint(0, 255, {5}, torch::kUInt8)},
      {"BoolStorage", torch::kBool, torch::tensor({true, false, false, true, true})},
  };

  PickleWriter p;
  p.begin_state_dict();
  p.str("whole").tensor("FloatStorage", "0", 24, 0, {4, 6}, {6, 1});
  p.str("transposed").tensor("FloatStorage", "0", 24, 0, {6, 4}, {1, 6});
  p.str("offset_slice").tensor("FloatStorage", "0", 24, 7, {2, 3}, {6, 2});
  p.str("empty").tensor("FloatStorage", "0", 24, 24, {0, 3}, {3, 1});
  p.str("scalar").tensor("FloatStorage", "0", 24, 5, {}, {});
  p.str("broadcast").tensor("FloatStorage", "0", 24, 2, {3, 2}, {0, 1});
  std::vector<std::pair<std::string, std::string>> records = {{"0", tensor_bytes(base)}};
  for (size_t k = 0; k < typed.size(); ++k) {
    const auto& [storage, dtype, values] = typed[k];
    p.str("typed." + storage).tensor(storage, std::to_string(k + 1), 5, 1, {2, 2}, {1, 2});
    records.emplace_back(std::to_string(k + 1), tensor_bytes(values));
  }
  p.end_state_dict();
  // state_dict._metadata, as torch.save(module.state_dict()) writes it: BUILD with an attribute dict.
  p.op('}').str("_metadata").global("collections", "OrderedDict").op(')').op('R');
  p.op('(').str("").op('}').str("version").integer(1).op('s').op('u').op('s').op('b');

  const auto file = tmp.path() / "any_stem_name.bin";
  write_archive(file, p.finish(), records);
  const auto loaded = load_torch_bin(file);

  TensorMap expected = {
      {"whole", base.as_strided({4, 6}, {6, 1}, 0)},    {"transposed", base.as_strided({6, 4}, {1, 6}, 0)},
      {"offset_slice", base.as_strided({2, 3}, {6, 2}, 7)}, {"empty", torch::empty({0, 3})},
      {"scalar", base.as_strided({}, {}, 5)},           {"broadcast", base.as_strided({3, 2}, {0, 1}, 2)},
  };
  for (const auto& [storage, dtype, values] : typed) expected["typed." + storage] = values.as_strided({2, 2}, {1, 2}, 1);
  expect_same(expected, loaded, "crafted");
  EXPECT_EQ(loaded.at("transposed").stride(0), 1);
  // One storage behind the float views, as with torch.load.
  EXPECT_TRUE(loaded.at("whole").storage().is_alias_of(loaded.at("transposed").storage()));
}

TEST(TorchBin, RebuildParameterAndLargeIntegers) {
  TempDir tmp;
  const auto values = torch::arange(3, torch::kFloat32);
  PickleWriter p;
  p.begin_state_dict();
  p.str("param").global("torch._utils", "_rebuild_parameter").op('(');
  p.tensor("FloatStorage", "0", 3, 0, {3}, {1}).op('\x88').global("collections", "OrderedDict").op(')').op('R');
  p.op('t').op('R');
  p.end_state_dict();
  const auto file = tmp.path() / "param.bin";
  write_archive(file, p.finish(), {{"0", tensor_bytes(values)}});
  expect_same({{"param", values}}, load_torch_bin(file), "parameter");
}

class TorchBinCorrupt : public ::testing::Test {
 protected:
  std::string error_for(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& records) {
    const auto file = tmp_.path() / "bad.bin";
    write_archive(file, pickle, records);
    return expect_error([&] { load_torch_bin(file); }, file);
  }
  static std::string one_tensor_pickle(int64_t numel, int64_t offset, std::vector<int64_t> size,
                                       std::vector<int64_t> stride) {
    PickleWriter p;
    p.begin_state_dict().str("w").tensor("FloatStorage", "0", numel, offset, size, stride).end_state_dict();
    return p.finish();
  }
  const std::string four_floats_ = tensor_bytes(torch::ones({4}));
  TempDir tmp_;
};

TEST_F(TorchBinCorrupt, RejectsUnknownGlobalsWithoutCallingThem) {
  PickleWriter p;
  p.global("os", "system").str("touch /tmp/perceiver-pwned").op('\x85').op('R');
  EXPECT_NE(error_for(p.finish(), {}).find("refusing GLOBAL 'os system'"), std::string::npos);
  PickleWriter q;
  q.begin_state_dict().str("w").global("torch", "UntypedStorage").end_state_dict();
  EXPECT_NE(error_for(q.finish(), {}).find("torch UntypedStorage"), std::string::npos);
  PickleWriter r;  // protocol-4 form of the same attack
  r.str("builtins").str("eval").op('\x93');
  EXPECT_NE(error_for(r.finish(), {}).find("builtins eval"), std::string::npos);
}

TEST_F(TorchBinCorrupt, RejectsUnknownOpcodesAndBadStructure) {
  PickleWriter p;
  p.begin_state_dict().op('i');  // INST: not in the allowed subset
  EXPECT_NE(error_for(p.finish(), {}).find("unsupported pickle opcode 0x69"), std::string::npos);
  EXPECT_NE(error_for(PickleWriter().op('h').raw("\x05").finish(), {}).find("memo"), std::string::npos);
  EXPECT_NE(error_for(PickleWriter().op('t').finish(), {}).find("MARK"), std::string::npos);
  EXPECT_NE(error_for(PickleWriter().op('R').finish(), {}).find("underflow"), std::string::npos);
  EXPECT_NE(error_for(PickleWriter().op(']').finish(), {}).find("list"), std::string::npos);
  PickleWriter nested;  // not a flat state dict
  nested.begin_state_dict().str("model").op('}').end_state_dict();
  EXPECT_NE(error_for(nested.finish(), {}).find("'model'"), std::string::npos);
  PickleWriter deep;  // deeply nested tuples are refused before they can exhaust the stack
  deep.op(')');
  for (int i = 0; i < 100000; ++i) deep.op('\x85');
  EXPECT_NE(error_for(deep.finish(), {}).find("nested deeper"), std::string::npos);
}

TEST_F(TorchBinCorrupt, RejectsBadStorages) {
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {4}, {1}), {}).find("'data/0' is missing"), std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(8, 0, {8}, {1}), {{"0", four_floats_}}).find("expected 8 elements"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 1, {4}, {1}), {{"0", four_floats_}}).find("past the end"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {2, 2}, {3, 1}), {{"0", four_floats_}}).find("past the end"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 5, {0}, {1}), {{"0", four_floats_}}).find("storage offset"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {2}, {1, 1}), {{"0", four_floats_}}).find("different lengths"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {2}, {-1}), {{"0", four_floats_}}).find("negative"), std::string::npos);
  PickleWriter b;
  b.begin_state_dict().str("m").tensor("BoolStorage", "0", 2, 0, {2}, {1}).end_state_dict();
  EXPECT_NE(error_for(b.finish(), {{"0", std::string("\x01\x07")}}).find("bool storage"), std::string::npos);
}

// Regression: the view bound was summed in __int128 and overflowed with three or more huge
// dimensions (and wrapped to a pass with four). Now each step is bounded before it is added.
TEST_F(TorchBinCorrupt, HugeViewDimensionsCannotOverflowTheBoundsCheck) {
  const int64_t e62 = int64_t{1} << 62, e61 = int64_t{1} << 61;
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {e62, e62, e62}, {e62, e62, e62}), {{"0", four_floats_}}).find("overflows"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {2, 2, 2, 2}, {e61, e61, e61, e61}), {{"0", four_floats_}})
                .find("past the end"),
            std::string::npos);
  EXPECT_NE(error_for(one_tensor_pickle(4, 0, {2, 2, 2}, {e62, e62, e62}), {{"0", four_floats_}}).find("past the end"),
            std::string::npos);
  // Broadcast views (stride 0) stay legal however large, as long as the element count fits int64.
  const auto file = tmp_.path() / "broadcast.bin";
  write_archive(file, one_tensor_pickle(4, 3, {1000, 1000}, {0, 0}), {{"0", four_floats_}});
  EXPECT_EQ(load_torch_bin(file).at("w").sizes(), torch::IntArrayRef({1000, 1000}));
}

// Regression: the stack, the memo and the object count were unbounded (about 170 bytes of heap per
// one-byte opcode).
TEST_F(TorchBinCorrupt, PickleStackMemoAndObjectsAreBounded) {
  EXPECT_NE(error_for(PickleWriter().raw(std::string(300'000, 'N')).finish(), {}).find("pickle stack"),
            std::string::npos);
  EXPECT_NE(error_for(PickleWriter().raw("N").raw(std::string(1'100'000, '\x94')).finish(), {}).find("memo entries"),
            std::string::npos);
  std::string appends = "]";
  for (int i = 0; i < 1'100'000; ++i) appends += "Na";
  EXPECT_NE(error_for(PickleWriter().raw(appends).finish(), {}).find("objects"), std::string::npos);
  EXPECT_NE(error_for(PickleWriter().raw(std::string(300'000, '(')).finish(), {}).find("MARK"), std::string::npos);
}

// Regression: deflated records were accepted and allocated at their declared size (a zip bomb).
TEST_F(TorchBinCorrupt, CompressedOrOversizedRecordsAreRefused) {
  const auto good = tmp_.path() / "good.bin";
  write_archive(good, one_tensor_pickle(4, 0, {4}, {1}), {{"0", four_floats_}});
  const std::string bytes = slurp(good);
  const size_t central = bytes.find("PK\x01\x02");
  ASSERT_NE(central, std::string::npos);
  std::string deflated = bytes;
  deflated[central + 10] = 8;  // compression method: deflate
  const auto bad = tmp_.path() / "deflated.bin";
  write_file(bad, deflated);
  EXPECT_NE(expect_error([&] { load_torch_bin(bad); }, bad).find("compressed (zip method 8)"), std::string::npos);
  std::string bomb = bytes;
  for (int k = 0; k < 4; ++k) bomb[central + 20 + k] = bomb[central + 24 + k] = '\x7f';  // sizes of ~2 GB
  write_file(bad, bomb);
  EXPECT_NE(expect_error([&] { load_torch_bin(bad); }, bad).find("cannot hold"), std::string::npos);
  // The same checks from memory (the fuzzing entry point).
  expect_same(load_torch_bin(good), parse_torch_bin(bytes, "memory"), "memory");
  EXPECT_NE(expect_error([&] { parse_torch_bin(deflated, "memory"); }, "memory").find("compressed"), std::string::npos);
}

TEST_F(TorchBinCorrupt, EveryTruncatedPickleThrows) {
  const std::string pickle = one_tensor_pickle(4, 0, {2, 2}, {2, 1});
  const auto file = tmp_.path() / "ok.bin";
  write_archive(file, pickle, {{"0", four_floats_}});
  ASSERT_EQ(load_torch_bin(file).at("w").sizes(), torch::IntArrayRef({2, 2}));
  for (size_t len = 0; len < pickle.size(); ++len) {
    SCOPED_TRACE("pickle length " + std::to_string(len));
    error_for(pickle.substr(0, len), {{"0", four_floats_}});
  }
}

TEST_F(TorchBinCorrupt, EveryTruncatedZipThrows) {
  const auto good = tmp_.path() / "good.bin";
  write_archive(good, one_tensor_pickle(4, 0, {4}, {1}), {{"0", four_floats_}});
  const std::string bytes = slurp(good);
  const auto cut = tmp_.path() / "cut.bin";
  for (size_t len = 0; len < bytes.size(); ++len) {
    SCOPED_TRACE("zip length " + std::to_string(len));
    write_file(cut, bytes.substr(0, len));
    expect_error([&] { load_torch_bin(cut); }, cut);
  }
  // And the real fixture cut at a few places (inside records, inside the central directory).
  const std::string fixture = slurp(hf_fixtures_dir() / "PerceiverForMaskedLM" / "pytorch_model.bin");
  for (const size_t len : {size_t{3}, size_t{100}, fixture.size() / 2, fixture.size() - 200, fixture.size() - 1}) {
    write_file(cut, fixture.substr(0, len));
    expect_error([&] { load_torch_bin(cut); }, cut);
  }
}

TEST_F(TorchBinCorrupt, NotAZipArchive) {
  const auto legacy = tmp_.path() / "legacy.bin";
  write_file(legacy, "\x80\x02\x8a\x0alegacy-magic");
  EXPECT_NE(expect_error([&] { load_torch_bin(legacy); }, legacy).find("legacy"), std::string::npos);
  const auto text = tmp_.path() / "text.bin";
  write_file(text, "hello world");
  EXPECT_NE(expect_error([&] { load_torch_bin(text); }, text).find("not a zip"), std::string::npos);
  const auto missing = tmp_.path() / "missing.bin";
  expect_error([&] { load_torch_bin(missing); }, missing);
}

TEST(ConvertCli, ConvertsMaskedLmFixture) {
  TempDir tmp;
  const auto in = hf_fixtures_dir() / "PerceiverForMaskedLM";
  const auto out = tmp.path() / "converted";
  const auto r = run_cli("convert --in '" + in.string() + "' --out '" + out.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto converted = read_safetensors(out / "model.safetensors");
  expect_same(load_safetensors(in / "model.safetensors"), converted.tensors, "convert");
  EXPECT_EQ(converted.metadata, (Metadata{{"format", "pt"}}));
  EXPECT_TRUE(slurp(in / "model.safetensors") == slurp(out / "model.safetensors"));  // HF's exact layout
  EXPECT_EQ(slurp(in / "config.json"), slurp(out / "config.json"));
}

TEST(ConvertCli, MissingInputFailsWithOneLine) {
  TempDir tmp;
  const auto r = run_cli("convert --in '" + (tmp.path() / "nope").string() + "' --out '" +
                         (tmp.path() / "out").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));

  // A directory with weights but no config.json.
  fs::create_directories(tmp.path() / "weights_only");
  fs::copy_file(hf_fixtures_dir() / "PerceiverForMaskedLM" / "pytorch_model.bin",
                tmp.path() / "weights_only" / "pytorch_model.bin");
  const auto r2 = run_cli("convert --in '" + (tmp.path() / "weights_only").string() + "' --out '" +
                          (tmp.path() / "out").string() + "'");
  EXPECT_NE(r2.exit_code, 0);
  EXPECT_NE(r2.err.find("config.json"), std::string::npos) << r2.err;
  EXPECT_EQ(std::count(r2.err.begin(), r2.err.end(), '\n'), 1) << r2.err;
}

}  // namespace
}  // namespace perceiver::io
