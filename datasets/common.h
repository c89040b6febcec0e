// Small helpers shared by the dataset readers: file bytes, UTF-8 checks and legacy decodings,
// locating files shipped by Debian data packages, a stable hash for deterministic splits.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace perceiver::datasets {

// Whole file as bytes; throws std::runtime_error naming the file when it cannot be read.
std::string read_file_bytes(const std::filesystem::path& path);

// Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF).
bool is_valid_utf8(std::string_view bytes);

enum class LegacyEncoding { kNone, kLatin1, kKoi8r };

// Decodes `bytes` as UTF-8 if valid, else with `fallback`; nullopt when neither works
// (e.g. a KOI8-R byte outside the letters/punctuation this decoder knows).
std::optional<std::string> decode_to_utf8(std::string_view bytes, LegacyEncoding fallback);

// Where a Debian package installed the file whose path ends with `suffix` (read from dpkg's file list),
// falling back to `default_path`. Throws a message telling to run scripts/setup.sh when absent.
std::filesystem::path find_package_file(const std::string& package, const std::string& suffix,
                                        const std::filesystem::path& default_path);

// The sorted distinct values of `values` (class or label names), and each value's index among them.
struct SortedIds {
  std::vector<std::string> names;
  std::vector<int64_t> ids;
};
SortedIds sorted_ids(const std::vector<std::string>& values);

// 64-bit FNV-1a, stable across platforms and runs (used for hash splits).
uint64_t stable_hash(std::string_view bytes, uint64_t seed = 0);

}  // namespace perceiver::datasets
