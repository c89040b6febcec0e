#include "datasets/common.h"

#include <algorithm>
#include <array>
#include <set>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace perceiver::datasets {

std::string read_file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open file '" + path.string() + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error("error while reading file '" + path.string() + "'");
  return ss.str();
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// KOI8-R letters 0xC0..0xFF in code order (lower case then upper case), plus ё/Ё at 0xA3/0xB3.
// The box-drawing block 0x80..0xBF is deliberately not decoded: text using it is not prose.
constexpr std::u16string_view kKoi8Letters =
    u"юабцдефгхийклмнопярстужвьызшэщчъЮАБЦДЕФГХИЙКЛМНОПЯРСТУЖВЬЫЗШЭЩЧЪ";

}  // namespace

std::optional<std::string> decode_to_utf8(std::string_view bytes, LegacyEncoding fallback) {
  if (is_valid_utf8(bytes)) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() * 2);
  switch (fallback) {
    case LegacyEncoding::kNone:
      return std::nullopt;
    case LegacyEncoding::kLatin1:
      for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= 0x80 && c < 0xA0) return std::nullopt;  // C1 controls: not Latin-1 text
        append_utf8(out, c);
      }
      return out;
    case LegacyEncoding::kKoi8r:
      for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x80) {
          out += ch;
        } else if (c >= 0xC0) {
          append_utf8(out, kKoi8Letters[c - 0xC0]);
        } else if (c == 0xA3) {
          append_utf8(out, 0x0451);
        } else if (c == 0xB3) {
          append_utf8(out, 0x0401);
        } else if (c == 0x9A) {
          append_utf8(out, 0x00A0);  // no-break space
        } else {
          return std::nullopt;
        }
      }
      return out;
  }
  return std::nullopt;
}

std::filesystem::path find_package_file(const std::string& package, const std::string& suffix,
                                        const std::filesystem::path& default_path) {
  std::error_code ec;
  if (std::filesystem::exists(default_path, ec)) return default_path;
  // dpkg -L reads these lists; reading them directly avoids spawning a process.
  for (const std::string name : {package + ".list", package + ":amd64.list", package + ":all.list"}) {
    std::ifstream list("/var/lib/dpkg/info/" + name);
    std::string line;
    while (list && std::getline(list, line)) {
      if (line.size() >= suffix.size() && line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          std::filesystem::is_regular_file(line, ec))
        return line;
    }
  }
  throw std::runtime_error("data file '" + default_path.string() + "' of Debian package '" + package +
                           "' not found (no installed file ending in '" + suffix +
                           "'); run scripts/setup.sh to install the embedded data sets");
}

SortedIds sorted_ids(const std::vector<std::string>& values) {
  SortedIds out;
  const std::set<std::string> distinct(values.begin(), values.end());
  out.names.assign(distinct.begin(), distinct.end());
  out.ids.reserve(values.size());
  for (const auto& v : values) out.ids.push_back(std::lower_bound(out.names.begin(), out.names.end(), v) - out.names.begin());
  return out;
}

uint64_t stable_hash(std::string_view bytes, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  // Final avalanche so nearby inputs spread over all buckets.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

}  // namespace perceiver::datasets
