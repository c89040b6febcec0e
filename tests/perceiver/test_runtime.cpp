// Process-level set-up: the allocator tuning and the user's way out of it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "apps/process_setup.h"
#include "perceiver/runtime/runtime.h"
#include "tests/test_support.h"

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
  EXPECT_FALSE(perceiver::cli::keep_freed_memory());
  ::unsetenv("PERCEIVER_SYSTEM_MALLOC");
  ::setenv("MALLOC_MMAP_MAX_", "65536", 1);
  EXPECT_FALSE(perceiver::cli::keep_freed_memory());
  ::unsetenv("MALLOC_MMAP_MAX_");
#if defined(__GLIBC__)
  EXPECT_TRUE(perceiver::cli::keep_freed_memory());
#endif
  // Blocks beyond any arena's size still work once they come from the heap.
  const auto big = torch::ones({64, 1024, 1024});  // 256 MB
  EXPECT_EQ(big.sum().item<double>(), 64.0 * 1024 * 1024);
}

// The CLI starts its OpenMP threads with a short spin (GOMP_SPINCOUNT=1000) unless the user chose a
// wait policy or a spin count, which it keeps as they are.
TEST(Runtime, OpenMpSpinsBrieflyUnlessTheUserChose) {
  const std::string clean = "env -u PERCEIVER_NO_REEXEC -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT ";
  const auto report = [&](const std::string& settings) {
    const auto r = perceiver::testing::run_command(clean + settings + " '" + PERCEIVER_CLI_PATH + "' env");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_NE(report("").find("OMP_WAIT_POLICY (unset), GOMP_SPINCOUNT 1000)"), std::string::npos) << report("");
  EXPECT_NE(report("OMP_WAIT_POLICY=passive").find("OMP_WAIT_POLICY passive, GOMP_SPINCOUNT (unset))"),
            std::string::npos);
  EXPECT_NE(report("GOMP_SPINCOUNT=5").find("OMP_WAIT_POLICY (unset), GOMP_SPINCOUNT 5)"), std::string::npos);
}

}  // namespace
