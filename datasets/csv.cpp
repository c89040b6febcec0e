#include "datasets/csv.h"

#include <stdexcept>

namespace perceiver::datasets {

std::vector<std::vector<std::string>> parse_delimited(const std::string& bytes, char delimiter) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool in_quotes = false, field_started = false, row_has_content = false;
  auto end_field = [&] {
    row.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto end_row = [&] {
    if (row_has_content || field_started || !field.empty() || !row.empty()) {
      end_field();
      rows.push_back(std::move(row));
    }
    row.clear();
    row_has_content = false;
  };
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < bytes.size() && bytes[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        field += c;
      }
    } else if (c == '"' && field.empty() && !field_started) {
      in_quotes = true;
      field_started = true;
    } else if (c == delimiter) {
      end_field();
      row_has_content = true;
    } else if (c == '\n') {
      end_row();
    } else if (c == '\r' && (i + 1 == bytes.size() || bytes[i + 1] == '\n')) {
      // CRLF line end: the '\n' ends the row.
    } else {
      field += c;
      field_started = true;
    }
  }
  if (in_quotes) throw std::runtime_error("unterminated quoted field in row " + std::to_string(rows.size() + 1));
  end_row();
  return rows;
}

}  // namespace perceiver::datasets
