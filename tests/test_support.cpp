#include "tests/test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace perceiver::testing {

std::filesystem::path hf_fixtures_dir() {
  if (const char* env = std::getenv("PERCEIVER_FIXTURES")) return env;
  return std::filesystem::path(PERCEIVER_SOURCE_DIR) / ".." / "shared" / "fixtures" / "hf";
}

std::string tensor_mismatch(const torch::Tensor& actual, const torch::Tensor& expected, double atol, double rtol) {
  std::ostringstream report;
  if (actual.scalar_type() != expected.scalar_type()) {
    report << "dtype " << actual.scalar_type() << ", expected " << expected.scalar_type();
    return report.str();
  }
  if (actual.sizes() != expected.sizes()) {
    report << "shape " << actual.sizes() << ", expected " << expected.sizes();
    return report.str();
  }
  const auto g = actual.detach().to(torch::kCPU, torch::kDouble), w = expected.detach().to(torch::kCPU, torch::kDouble);
  // As numpy: finite values within the tolerance, or exactly equal (infinities). A comparison with
  // NaN is false, so NaN is never close.
  const auto close = (g.isfinite() & w.isfinite() & ((g - w).abs() <= atol + rtol * w.abs())) | (g == w);
  const auto bad = close.logical_not().flatten();
  const int64_t count = bad.sum().item<int64_t>();
  if (count == 0) return "";
  const int64_t idx = bad.nonzero()[0][0].item<int64_t>();
  report << count << " of " << w.numel() << " elements out of tolerance; first at flat index " << idx << ": got "
         << g.flatten()[idx].item<double>() << ", expected " << w.flatten()[idx].item<double>();
  return report.str();
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("perceiver-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

CommandResult run_cli(const std::string& args) { return run_command(std::string("'") + PERCEIVER_CLI_PATH + "' " + args); }

CommandResult run_command(const std::string& command) {
  TempDir tmp;
  const auto out = tmp.path() / "out", err = tmp.path() / "err";
  const std::string cmd = command + " >'" + out.string() + "' 2>'" + err.string() + "' </dev/null";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace perceiver::testing
