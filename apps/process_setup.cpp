#include "apps/process_setup.h"

#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "perceiver/runtime/runtime.h"

namespace perceiver::cli {
namespace {

// Sets name=value unless the user already chose a value; returns whether it changed anything.
bool set_default_env(const char* name, const std::string& value) {
  if (value.empty() || std::getenv(name) != nullptr) return false;
  ::setenv(name, value.c_str(), 0);
  return true;
}

}  // namespace

void ensure_blas_environment(int argc, char** argv) {
  if (std::getenv("PERCEIVER_NO_REEXEC") != nullptr) return;
  bool changed = set_default_env("OPENBLAS_CORETYPE", runtime::preferred_openblas_coretype());
  // How long an idle OpenMP thread spins before it sleeps. libgomp's default (300,000 spins) makes
  // a process whose threads share the cores with another's many times slower; OMP_WAIT_POLICY=passive
  // (no spinning) costs a sleep and a wake-up between every two parallel ops. 1,000 spins keep the
  // short-spin time of a process alone and cost little when the cores are shared (figures in
  // docs/performance.md). The user's OMP_WAIT_POLICY is left alone too.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) changed |= set_default_env("GOMP_SPINCOUNT", "1000");
  if (!changed) return;
  ::setenv("PERCEIVER_NO_REEXEC", "1", 1);  // guard against a loop whatever happens below
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  ::execv("/proc/self/exe", args.data());
  // execv only returns on failure: carry on with the slower kernels rather than stop.
}

bool keep_freed_memory() {
#if defined(__GLIBC__)
  if (runtime::malloc_library() != "glibc malloc") return false;  // tcmalloc keeps freed memory itself
  for (const char* name : {"PERCEIVER_SYSTEM_MALLOC", "GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                           "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"})
    if (std::getenv(name) != nullptr) return false;
  // Large blocks then come from the heap (a thread arena that cannot hold one falls back to the
  // main arena), and freed memory stays there for the next step.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1;
#else
  return false;
#endif
}

void prepare_process(int argc, char** argv) {
  ensure_blas_environment(argc, argv);
  keep_freed_memory();
}

}  // namespace perceiver::cli
