// One entry point per reader of outside bytes, shared by the libFuzzer targets (fuzz/target.cpp)
// and the ordinary test suite, which replays tests/corpus/<target>/ through the same functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace perceiver::fuzz {

// Feeds the bytes to one reader. A clear error (any std::exception) is an accepted outcome; a
// crash, a sanitizer report, a leak or a hang is a finding.
using EntryPoint = void (*)(const uint8_t* data, size_t size);

// Every target by name; the fuzz build and the corpus replay both derive their lists from it.
const std::map<std::string, EntryPoint>& entry_points();

}  // namespace perceiver::fuzz
