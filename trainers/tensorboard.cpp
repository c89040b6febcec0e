#include "trainers/tensorboard.h"

#include <fmt/format.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "datasets/file_store.h"

namespace perceiver::trainers {
namespace fs = std::filesystem;

uint32_t crc32c(std::string_view data) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

uint32_t masked_crc32c(std::string_view data) {
  const uint32_t crc = crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

namespace {

// The few protocol-buffer encodings the event messages need (wire types 0, 1, 2 and 5).
class Proto {
 public:
  Proto& varint(int field, uint64_t v) {
    key(field, 0);
    put_varint(v);
    return *this;
  }
  Proto& fixed64(int field, double v) {
    key(field, 1);
    put_le(v);
    return *this;
  }
  Proto& fixed32(int field, float v) {
    key(field, 5);
    put_le(v);
    return *this;
  }
  Proto& bytes(int field, std::string_view v) {
    key(field, 2);
    put_varint(v.size());
    out_.append(v);
    return *this;
  }
  Proto& message(int field, const Proto& m) { return bytes(field, m.out_); }
  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire) { put_varint((static_cast<uint64_t>(field) << 3) | wire); }
  void put_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    out_.push_back(static_cast<char>(v));
  }
  template <typename T>
  void put_le(T v) {  // x86-64 and aarch64 are little-endian, as the wire format is
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  std::string out_;
};

// tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto field numbers.
namespace event {
constexpr int kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5;
}
namespace summary {
constexpr int kValue = 1;  // Summary.value
constexpr int kTag = 1, kSimpleValue = 2, kImage = 4, kTensor = 8, kMetadata = 9;  // Summary.Value
constexpr int kHeight = 1, kWidth = 2, kColorspace = 3, kEncodedImage = 4;          // Summary.Image
constexpr int kPluginData = 1, kPluginName = 1;  // SummaryMetadata.plugin_data, PluginData.plugin_name
}  // namespace summary
namespace tensor {
constexpr int kDtype = 1, kShape = 2, kStringVal = 8, kDim = 2, kDimSize = 1;
constexpr int kDtString = 7;
}  // namespace tensor

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

uint64_t read_le64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t read_le32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Reads Event.wall_time and Event.step from an encoded event (other fields are skipped).
void decode_header(const std::string& bytes, EventRecord& record) {
  size_t pos = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0; pos < bytes.size() && shift < 64; shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[pos++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("bad varint");
  };
  while (pos < bytes.size()) {
    const uint64_t key = varint();
    const int field = static_cast<int>(key >> 3);
    switch (key & 7) {
      case 0: {
        const uint64_t v = varint();
        if (field == event::kStep) record.step = static_cast<int64_t>(v);
        break;
      }
      case 1:
        if (pos + 8 > bytes.size()) throw std::runtime_error("truncated field");
        if (field == event::kWallTime) std::memcpy(&record.wall_time, bytes.data() + pos, 8);
        pos += 8;
        break;
      case 2: {
        const uint64_t n = varint();
        if (n > bytes.size() - pos) throw std::runtime_error("truncated field");
        pos += n;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw std::runtime_error("unknown wire type");
    }
  }
}

std::string frame(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  const uint64_t n = data.size();
  const std::string_view length(reinterpret_cast<const char*>(&n), 8);
  const uint32_t length_crc = masked_crc32c(length);
  const uint32_t data_crc = masked_crc32c(data);
  out.append(length);
  out.append(reinterpret_cast<const char*>(&length_crc), 4);
  out.append(data);
  out.append(reinterpret_cast<const char*>(&data_crc), 4);
  return out;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

bool is_event_file(const fs::path& p) { return p.filename().string().rfind("events.out.tfevents.", 0) == 0; }

// Keeps the events up to `step` in every event file of `dir`; step 0 (a fresh run) removes the files.
void drop_events_after(const fs::path& dir, int64_t step) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && is_event_file(entry.path())) files.push_back(entry.path());
  for (const auto& file : files) {
    if (step == 0) {
      fs::remove(file);
      continue;
    }
    const auto records = read_event_file(file);
    std::string kept;
    bool dropped = false;
    for (const auto& r : records) {
      if (r.step > step) dropped = true;
      else kept += frame(r.bytes);
    }
    if (dropped) datasets::write_file_atomically(file, kept);
  }
}

}  // namespace

std::vector<EventRecord> read_event_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open event file");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<EventRecord> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const auto fail = [&](const std::string& what) {
      return std::runtime_error(fmt::format("{}: record at byte {}: {}", file.string(), pos, what));
    };
    if (bytes.size() - pos < 12) break;  // torn length
    const uint64_t n = read_le64(bytes.data() + pos);
    if (read_le32(bytes.data() + pos + 8) != masked_crc32c(std::string_view(bytes.data() + pos, 8)))
      throw fail("length CRC mismatch");
    if (n > bytes.size() - pos - 12 || bytes.size() - pos - 12 - n < 4) break;  // torn data
    EventRecord record;
    record.bytes = bytes.substr(pos + 12, n);
    if (read_le32(bytes.data() + pos + 12 + n) != masked_crc32c(record.bytes)) throw fail("data CRC mismatch");
    try {
      decode_header(record.bytes, record);
    } catch (const std::runtime_error& e) {
      throw fail(std::string("not an Event: ") + e.what());
    }
    records.push_back(std::move(record));
    pos += 12 + n + 4;
  }
  return records;
}

TensorBoardWriter::TensorBoardWriter(const fs::path& dir, std::optional<int64_t> drop_after_step) {
  fs::create_directories(dir);
  if (drop_after_step) drop_events_after(dir, *drop_after_step);
  const auto stem = fmt::format("events.out.tfevents.{}.{}", static_cast<int64_t>(now_seconds()), host_name());
  path_ = dir / stem;
  for (int i = 1; fs::exists(path_); ++i) path_ = dir / fmt::format("{}.{}", stem, i);  // a resume within the second
  out_.open(path_, std::ios::binary);
  if (!out_) throw std::runtime_error(path_.string() + ": cannot create TensorBoard event file");
  write_event(0, Proto().bytes(event::kFileVersion, "brain.Event:2").str());
}

void TensorBoardWriter::write_event(int64_t step, const std::string& what) {
  Proto e;
  e.fixed64(event::kWallTime, now_seconds()).varint(event::kStep, static_cast<uint64_t>(step));
  out_ << frame(e.str() + what);
  out_.flush();
  if (!out_) throw std::runtime_error(path_.string() + ": cannot write TensorBoard event");
}

void TensorBoardWriter::add_scalars(int64_t step, const std::map<std::string, double>& values) {
  Proto s;
  for (const auto& [tag, v] : values)
    s.message(summary::kValue, Proto().bytes(summary::kTag, tag).fixed32(summary::kSimpleValue, static_cast<float>(v)));
  write_event(step, Proto().message(event::kSummary, s).str());
}

void TensorBoardWriter::add_png(const std::string& tag, int64_t step, const std::string& png) {
  // IHDR: width and height are the big-endian words at bytes 16 and 20 of the file.
  if (png.size() < 26 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0)
    throw std::invalid_argument("TensorBoard image '" + tag + "': not a PNG");
  const auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(png[at])) << 24) |
           (static_cast<uint32_t>(static_cast<uint8_t>(png[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(png[at + 2])) << 8) | static_cast<uint8_t>(png[at + 3]);
  };
  const int colour_type = static_cast<uint8_t>(png[25]);  // IHDR colour type
  const int channels = colour_type == 0 ? 1 : colour_type == 4 ? 2 : colour_type == 6 ? 4 : 3;
  Proto image;
  image.varint(summary::kHeight, be32(20)).varint(summary::kWidth, be32(16)).varint(summary::kColorspace, channels);
  image.bytes(summary::kEncodedImage, png);
  const Proto value = Proto().bytes(summary::kTag, tag).message(summary::kImage, image);
  write_event(step, Proto().message(event::kSummary, Proto().message(summary::kValue, value)).str());
}

void TensorBoardWriter::add_text(const std::string& tag, int64_t step, const std::string& text) {
  // The text plugin's form: a DT_STRING tensor of shape [1], marked with plugin_name "text".
  Proto tensor;
  tensor.varint(tensor::kDtype, tensor::kDtString)
      .message(tensor::kShape, Proto().message(tensor::kDim, Proto().varint(tensor::kDimSize, 1)))
      .bytes(tensor::kStringVal, text);
  const Proto metadata = Proto().message(summary::kPluginData, Proto().bytes(summary::kPluginName, "text"));
  const Proto value = Proto().bytes(summary::kTag, tag).message(summary::kMetadata, metadata).message(summary::kTensor, tensor);
  write_event(step, Proto().message(event::kSummary, Proto().message(summary::kValue, value)).str());
}

}  // namespace perceiver::trainers
