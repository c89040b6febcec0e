// GoogleTest entry point. The CLI runs the tests start set up their own process (apps/process_setup).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "perceiver/runtime/runtime.h"

int main(int argc, char** argv) {
  perceiver::runtime::set_threads(0);
  // Text indexes the tests build (and the CLI runs they start) go to a folder of this run's own.
  const auto cache = std::filesystem::temp_directory_path() / ("perceiver-test-cache-" + std::to_string(::getpid()));
  if (!std::getenv("PERCEIVER_CACHE_DIR")) ::setenv("PERCEIVER_CACHE_DIR", cache.c_str(), 1);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  std::error_code ec;
  std::filesystem::remove_all(cache, ec);
  return result;
}
