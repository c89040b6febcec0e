// Process-level set-up: the allocator tuning and the user's way out of it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "perceiver/runtime.h"

namespace {

// Clears the variables for the test's duration and restores them afterwards.
class ScopedUnsetEnv {
 public:
  explicit ScopedUnsetEnv(std::initializer_list<const char*> names) {
    for (const char* name : names) {
      const char* value = std::getenv(name);
      saved_[name] = value ? std::optional<std::string>(value) : std::nullopt;
      ::unsetenv(name);
    }
  }
  ~ScopedUnsetEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(Runtime, KeepFreedMemoryRespectsTheUsersMallocSettings) {
  const ScopedUnsetEnv clean({"PERCEIVER_SYSTEM_MALLOC", "GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                              "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"});
  ::setenv("PERCEIVER_SYSTEM_MALLOC", "1", 1);
  EXPECT_FALSE(perceiver::runtime::keep_freed_memory());
  ::unsetenv("PERCEIVER_SYSTEM_MALLOC");
  ::setenv("MALLOC_MMAP_MAX_", "65536", 1);
  EXPECT_FALSE(perceiver::runtime::keep_freed_memory());
  ::unsetenv("MALLOC_MMAP_MAX_");
#if defined(__GLIBC__)
  EXPECT_TRUE(perceiver::runtime::keep_freed_memory());
#endif
  // Blocks beyond any arena's size still work once they come from the heap.
  const auto big = torch::ones({64, 1024, 1024});  // 256 MB
  EXPECT_EQ(big.sum().item<double>(), 64.0 * 1024 * 1024);
}

}  // namespace
