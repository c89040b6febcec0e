#include "fuzz/entry_points.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "datasets/gzip.h"
#include "datasets/labelled_text.h"
#include "perceiver/models/config.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/io/torch_bin.h"
#include "perceiver/processing/tokenizer.h"
#include "trainers/run_config_util.h"
#include "trainers/trainer.h"
#if PERCEIVER_WITH_OPENCV
#include "datasets/flow.h"
#include "datasets/idx.h"
#include "datasets/multimodal.h"
#endif

namespace perceiver::fuzz {
namespace {

namespace fs = std::filesystem;

std::string_view view(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

// Readers that take a path get the bytes through a per-process file (the extension picks the format).
class ScratchFile {
 public:
  ScratchFile(std::string_view bytes, const std::string& extension)
      : path_(fs::temp_directory_path() / ("perceiver-fuzz-" + std::to_string(::getpid()) + extension)) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~ScratchFile() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Runs a reader; its clear errors are the expected outcome for most inputs.
template <typename Fn>
void guarded(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception&) {
  }
}

void safetensors(const uint8_t* data, size_t size) {
  guarded([&] { io::parse_safetensors(view(data, size), "fuzz.safetensors"); });
}

void torch_bin(const uint8_t* data, size_t size) {
  guarded([&] { io::parse_torch_bin(view(data, size), "fuzz.bin"); });
}

void config_json(const uint8_t* data, size_t size) {
  const ScratchFile file(view(data, size), ".json");
  guarded([&] { PerceiverConfig::from_json_file(file.path()); });
}

void run_yaml(const uint8_t* data, size_t size) {
  guarded([&] {
    const auto run = trainers::parse_run_config(std::string(view(data, size)), "fuzz.yaml");
    trainers::check_schema(run, trainers::run_schema());
  });
}

void gzip(const uint8_t* data, size_t size) {
  guarded([&] { datasets::gunzip(view(data, size), "fuzz.gz", size_t{1} << 20); });
}

#if PERCEIVER_WITH_OPENCV
void idx(const uint8_t* data, size_t size) {
  guarded([&] { datasets::parse_idx(std::string(view(data, size)), "fuzz.idx"); });
}

void flo(const uint8_t* data, size_t size) {
  guarded([&] { datasets::parse_flo(std::string(view(data, size)), "fuzz.flo"); });
}
#endif

// The first byte picks CSV, TSV or JSONL (and whether there is a header row); the rest is the file.
void labelled_text(const uint8_t* data, size_t size) {
  if (size == 0) return;
  static const char* const kExtensions[] = {".csv", ".tsv", ".jsonl"};
  const ScratchFile file(view(data + 1, size - 1), kExtensions[data[0] % 3]);
  datasets::LabelledReadOptions options;
  options.header = (data[0] & 4) == 0;
  if (!options.header) {
    options.text_field = "0";
    options.label_field = "1";
  }
  guarded([&] { datasets::read_labelled_text(file.path(), options); });
}

// The first byte picks encode options; the text is encoded, and the same bytes read as ids are decoded.
void tokenizer(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const PerceiverTokenizer tok;
  const uint8_t flags = data[0];
  const std::string text(view(data + 1, size - 1));
  EncodeOptions options;
  options.add_special_tokens = flags & 1;
  options.split_special_tokens = flags & 2;
  if (flags & 4) options.max_length = flags >> 4;
  if (flags & 8) options.padding = Padding::MaxLength;
  guarded([&] {
    const auto half = text.size() / 2;
    tok.encode(text.substr(0, half), (flags & 16) ? std::optional<std::string>(text.substr(half)) : std::nullopt, options);
  });
  guarded([&] { tok.tokenize(text, flags & 2); });
  std::vector<int64_t> ids;
  for (size_t i = 1; i < size; ++i) ids.push_back(static_cast<int64_t>(data[i]) - (flags & 32 ? 3 : 0));
  guarded([&] { tok.decode(ids, DecodeOptions{(flags & 64) != 0, (flags & 128) != 0}); });
}

#if PERCEIVER_WITH_OPENCV
void wav(const uint8_t* data, size_t size) {
  const ScratchFile file(view(data, size), ".wav");
  datasets::AudioOptions options;
  options.num_samples = 0;
  options.mono = size % 2 == 0;
  guarded([&] { datasets::read_wav(file.path(), options); });
}
#endif

}  // namespace

const std::map<std::string, EntryPoint>& entry_points() {
  static const std::map<std::string, EntryPoint> targets = {
      {"safetensors", safetensors}, {"torch_bin", torch_bin},         {"config_json", config_json},
      {"run_yaml", run_yaml},       {"gzip", gzip},                   {"labelled_text", labelled_text},
      {"tokenizer", tokenizer},
#if PERCEIVER_WITH_OPENCV  // readers that live beside the image and video code
      {"idx", idx},                 {"flo", flo},                     {"wav", wav},
#endif
  };
  return targets;
}

}  // namespace perceiver::fuzz
