#include "perceiver/io/json_io.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace perceiver {
namespace {

using nlohmann::json;

struct TooDeep {};

// Parses with a callback that refuses to open a container below max_depth (depth 0 is the top value).
json parse_bounded(std::string_view text, int max_depth) {
  return json::parse(text, [max_depth](int depth, json::parse_event_t event, json&) {
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth > max_depth) throw TooDeep{};
    return true;
  });
}

}  // namespace

json parse_json(std::string_view text, const std::string& source, int max_depth) {
  try {
    return parse_bounded(text, max_depth);
  } catch (const TooDeep&) {
    throw std::runtime_error(source + ": JSON nests deeper than " + std::to_string(max_depth) +
                             " levels, more than this file can hold");
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": invalid JSON: " + e.what());
  }
}

json parse_json_or_discard(std::string_view text, int max_depth) {
  try {
    return parse_bounded(text, max_depth);
  } catch (const TooDeep&) {
  } catch (const json::exception&) {
  }
  return json(json::value_t::discarded);
}

json read_json_file(const std::filesystem::path& file, int max_depth) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_json(text.str(), file.string(), max_depth);
}

std::string excerpt(std::string_view text, std::size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  return std::string(text.substr(0, max_chars > 3 ? max_chars - 3 : 0)) + "...";
}

std::string json_excerpt(const json& value, std::size_t max_chars) {
  return excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace), max_chars);
}

}  // namespace perceiver
