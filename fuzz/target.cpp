// The libFuzzer binary: PERCEIVER_FUZZ_TARGET names the entry point to fuzz; `--list` prints them all.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fuzz/entry_points.h"

namespace {
perceiver::fuzz::EntryPoint entry = nullptr;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const auto& all = perceiver::fuzz::entry_points();
  for (int i = 1; i < *argc; ++i) {
    if (std::strcmp((*argv)[i], "--list") == 0) {
      for (const auto& [name, fn] : all) std::printf("%s\n", name.c_str());
      std::exit(0);
    }
  }
  const char* name = std::getenv("PERCEIVER_FUZZ_TARGET");
  const auto it = name ? all.find(name) : all.end();
  if (it == all.end()) {
    std::fprintf(stderr, "set PERCEIVER_FUZZ_TARGET to one of the names `%s --list` prints\n", (*argv)[0]);
    std::exit(2);
  }
  entry = it->second;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  entry(data, size);
  return 0;
}
