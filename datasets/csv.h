// The one CSV/TSV reader every delimited-file user shares (labelled text, image lists, recorded clips).
#pragma once

#include <string>
#include <vector>

namespace perceiver::datasets {

// RFC 4180 rows (quoted fields may hold delimiters, doubled quotes and newlines). Throws on an unterminated quote.
std::vector<std::vector<std::string>> parse_delimited(const std::string& bytes, char delimiter);

}  // namespace perceiver::datasets
