// TensorBoard event files: RUN_DIR/tensorboard/events.out.tfevents.<unix time>.<host>.
//
// TensorBoard's own format, written without TensorFlow: TFRecord framing (uint64 length, masked
// CRC-32C of the length, the data, masked CRC-32C of the data) of `Event` protocol buffers, encoded
// here by hand with the field numbers of tensorflow/core/util/event.proto and summary.proto. The first
// event carries file_version "brain.Event:2". Scalars are `simple_value`s, images PNG `Image`s and
// text the text plugin's string tensors. Each add_* call is flushed, so a live TensorBoard sees it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace perceiver::trainers {

// CRC-32C (Castagnoli) of `data`, and TensorBoard's masking of it.
uint32_t crc32c(std::string_view data);
uint32_t masked_crc32c(std::string_view data);

// One event as the writer wrote it: its step and wall time (enough to truncate a resumed run's files).
struct EventRecord {
  double wall_time = 0;
  int64_t step = 0;
  std::string bytes;  // the encoded Event
};

// Reads every record of an event file, checking both CRCs. A torn last record (a crash mid-write) is
// ignored; any other damage throws std::runtime_error naming the file and the record's offset.
std::vector<EventRecord> read_event_file(const std::filesystem::path& file);

class TensorBoardWriter {
 public:
  // Creates `dir` and a new event file in it. With drop_after_step (a resumed run), the events that
  // earlier files of `dir` hold past that step (logged after the checkpoint the run resumes from)
  // are removed first, so that no step is shown twice; 0 (a fresh run) removes earlier files.
  explicit TensorBoardWriter(const std::filesystem::path& dir, std::optional<int64_t> drop_after_step = std::nullopt);

  // One Summary with a scalar per entry (non-finite values are written as they are).
  void add_scalars(int64_t step, const std::map<std::string, double>& values);
  // A PNG file's bytes as an image summary (height and width are read from the PNG header).
  void add_png(const std::string& tag, int64_t step, const std::string& png);
  // Text, shown by TensorBoard's text plugin (Markdown).
  void add_text(const std::string& tag, int64_t step, const std::string& text);

  const std::filesystem::path& path() const { return path_; }

 private:
  void write_event(int64_t step, const std::string& what);

  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace perceiver::trainers
