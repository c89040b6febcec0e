// Every input that once crashed, hung or was a hostile case a reader had to refuse is kept under
// tests/corpus/<target>/ and replayed through the fuzzers' own entry points, so the fixes stay fixed
// without clang. A crash or a sanitizer abort fails the suite; a clear error is the expected outcome.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

#include "fuzz/entry_points.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

fs::path corpus_dir() { return fs::path(PERCEIVER_SOURCE_DIR) / "tests" / "corpus"; }

TEST(FuzzCorpus, EveryCorpusFolderNamesAnEntryPoint) {
  const auto& targets = fuzz::entry_points();
#if PERCEIVER_WITH_OPENCV
  const std::set<std::string> not_built;
#else
  const std::set<std::string> not_built = {"idx", "flo", "wav"};  // their readers live in the OpenCV-only sources
#endif
  ASSERT_TRUE(fs::is_directory(corpus_dir()));
  for (const auto& dir : fs::directory_iterator(corpus_dir())) {
    const auto name = dir.path().filename().string();
    EXPECT_TRUE(targets.count(name) || not_built.count(name)) << dir.path() << " is not a fuzz target";
  }
}

TEST(FuzzCorpus, ReplaysEveryKeptInputWithoutCrashing) {
  int replayed = 0;
  for (const auto& [name, entry] : fuzz::entry_points()) {
    const fs::path dir = corpus_dir() / name;
    if (!fs::is_directory(dir)) continue;
    for (const auto& file : fs::directory_iterator(dir)) {
      SCOPED_TRACE(file.path().string());
      const std::string bytes = slurp(file.path());
      entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++replayed;
    }
  }
  EXPECT_GT(replayed, 0);
}

}  // namespace
}  // namespace perceiver::testing
