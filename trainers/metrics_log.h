// Metrics of a run: one row per (step, name -> value) appended to RUN/metrics.jsonl and RUN/metrics.csv.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct MetricsRow {
  int64_t step = 0;
  std::map<std::string, double> values;  // non-finite values are kept (NaN is written as JSON null)
};

// Reads metrics.jsonl; a torn last line (crash mid-write) is ignored, any other bad line throws
// std::runtime_error naming the file and line. A missing file gives no rows.
std::vector<MetricsRow> read_metrics_jsonl(const std::filesystem::path& file);

// Appends rows, flushing each one. metrics.jsonl is the record; metrics.csv mirrors it with one
// column per metric name seen so far: when a row brings a new name, the CSV is rewritten (to a
// temporary file, then renamed) with the wider header, otherwise the row is appended.
class MetricsLog {
 public:
  // Picks up existing files (a resumed run). With drop_after_step, rows logged after that step
  // (by a run that crashed after its last checkpoint) are removed before appending.
  explicit MetricsLog(std::filesystem::path run_dir, std::optional<int64_t> drop_after_step = std::nullopt);

  void log(int64_t step, const std::map<std::string, double>& values);

  const std::vector<std::string>& columns() const { return columns_; }
  std::filesystem::path jsonl_path() const { return run_dir_ / "metrics.jsonl"; }
  std::filesystem::path csv_path() const { return run_dir_ / "metrics.csv"; }

 private:
  void rewrite_files();

  std::filesystem::path run_dir_;
  std::vector<MetricsRow> rows_;  // kept for CSV rewrites; a few numbers per logged step
  std::vector<std::string> columns_;
  std::ofstream jsonl_;
  std::ofstream csv_;
};

}  // namespace perceiver::trainers
