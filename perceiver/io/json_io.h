// JSON from outside files. Parsing bounds the nesting, so that no later recursive walk of the value
// (dump() in an error message, comparison, destruction) can overflow the stack on a hostile file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace perceiver {

// Deep enough for every file we read (HF configs nest 3-4 levels), shallow enough for any stack.
constexpr int kMaxJsonDepth = 64;

// Throws std::runtime_error "<source>: invalid JSON: ..." or "... nests deeper than N levels".
nlohmann::json parse_json(std::string_view text, const std::string& source, int max_depth = kMaxJsonDepth);
// The same, or a discarded value (is_discarded()) for text that is not valid or too deep: for
// formats such as JSONL that skip bad records.
nlohmann::json parse_json_or_discard(std::string_view text, int max_depth = kMaxJsonDepth);
// The whole file; errors name it ("cannot open", "invalid JSON").
nlohmann::json read_json_file(const std::filesystem::path& file, int max_depth = kMaxJsonDepth);

// Text or a value from a file as it may appear in an error message: at most max_chars characters
// (a hostile file can hold a name or value of any length).
std::string excerpt(std::string_view text, std::size_t max_chars = 120);
std::string json_excerpt(const nlohmann::json& value, std::size_t max_chars = 120);

}  // namespace perceiver
