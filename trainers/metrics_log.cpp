#include "trainers/metrics_log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "perceiver/io/json_io.h"

namespace perceiver::trainers {

namespace {

std::string json_line(const MetricsRow& row) {
  nlohmann::ordered_json j;
  j["step"] = row.step;
  for (const auto& [name, value] : row.values) {
    if (std::isfinite(value)) {
      j[name] = value;
    } else {
      j[name] = nullptr;  // JSON has no NaN / inf
    }
  }
  return j.dump();
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_header(const std::vector<std::string>& columns) {
  std::string line = "step";
  for (const auto& c : columns) line += "," + csv_escape(c);
  return line + "\n";
}

std::string csv_line(const MetricsRow& row, const std::vector<std::string>& columns) {
  std::string line = std::to_string(row.step);
  for (const auto& c : columns) {
    line += ',';
    const auto it = row.values.find(c);
    if (it == row.values.end()) continue;
    // nlohmann's dump is the shortest text that reads back to the same double.
    line += std::isfinite(it->second) ? nlohmann::json(it->second).dump() : std::to_string(it->second);
  }
  return line + "\n";
}

void write_file_atomically(const std::filesystem::path& file, const std::string& content) {
  const auto tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.flush()) throw std::runtime_error(file.string() + ": cannot write");
  }
  std::filesystem::rename(tmp, file);
}

}  // namespace

std::vector<MetricsRow> read_metrics_jsonl(const std::filesystem::path& file) {
  std::vector<MetricsRow> rows;
  std::ifstream in(file, std::ios::binary);
  if (!in) return rows;
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    nlohmann::json j;
    try {
      j = parse_json(lines[i], "line");
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) {
        throw std::runtime_error("expected an object with an integer \"step\"");
      }
    } catch (const std::exception& e) {
      if (i + 1 == lines.size()) break;  // the last line may be torn by a crash mid-write
      throw std::runtime_error(file.string() + ":" + std::to_string(i + 1) + ": bad metrics row: " + e.what());
    }
    MetricsRow row;
    row.step = j["step"].get<int64_t>();
    for (const auto& [name, value] : j.items()) {
      if (name == "step") continue;
      if (value.is_number()) {
        row.values[name] = value.get<double>();
      } else if (value.is_null()) {
        row.values[name] = std::numeric_limits<double>::quiet_NaN();
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

MetricsLog::MetricsLog(std::filesystem::path run_dir, std::optional<int64_t> drop_after_step)
    : run_dir_(std::move(run_dir)) {
  std::filesystem::create_directories(run_dir_);
  rows_ = read_metrics_jsonl(jsonl_path());
  if (drop_after_step) {
    rows_.erase(std::remove_if(rows_.begin(), rows_.end(),
                               [&](const MetricsRow& r) { return r.step > *drop_after_step; }),
                rows_.end());
  }
  for (const auto& r : rows_) {
    for (const auto& kv : r.values) {
      if (std::find(columns_.begin(), columns_.end(), kv.first) == columns_.end()) columns_.push_back(kv.first);
    }
  }
  // Rewriting both files also drops a torn last line and keeps the two files consistent.
  rewrite_files();
}

void MetricsLog::rewrite_files() {
  jsonl_.close();
  csv_.close();
  std::string jsonl, csv = csv_header(columns_);
  for (const auto& r : rows_) {
    jsonl += json_line(r) + "\n";
    csv += csv_line(r, columns_);
  }
  write_file_atomically(jsonl_path(), jsonl);
  write_file_atomically(csv_path(), csv);
  jsonl_.open(jsonl_path(), std::ios::binary | std::ios::app);
  csv_.open(csv_path(), std::ios::binary | std::ios::app);
  if (!jsonl_ || !csv_) throw std::runtime_error(run_dir_.string() + ": cannot open metrics files for appending");
}

void MetricsLog::log(int64_t step, const std::map<std::string, double>& values) {
  for (const auto& kv : values) {
    if (kv.first == "step" || kv.first.empty()) {
      throw std::invalid_argument("metrics: invalid metric name '" + kv.first + "'");
    }
  }
  MetricsRow row{step, values};
  rows_.push_back(row);
  jsonl_ << json_line(row) << '\n';
  jsonl_.flush();
  bool new_column = false;
  for (const auto& kv : values) {
    if (std::find(columns_.begin(), columns_.end(), kv.first) == columns_.end()) {
      columns_.push_back(kv.first);
      new_column = true;
    }
  }
  if (new_column) {
    csv_.close();
    std::string csv = csv_header(columns_);
    for (const auto& r : rows_) csv += csv_line(r, columns_);
    write_file_atomically(csv_path(), csv);
    csv_.open(csv_path(), std::ios::binary | std::ios::app);
  } else {
    csv_ << csv_line(row, columns_);
    csv_.flush();
  }
  if (!jsonl_ || !csv_) throw std::runtime_error(run_dir_.string() + ": writing metrics failed");
}

}  // namespace perceiver::trainers
