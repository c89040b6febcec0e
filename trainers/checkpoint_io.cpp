#include "trainers/checkpoint_io.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "perceiver/io/json_io.h"

namespace perceiver::trainers {

namespace fs = std::filesystem;

namespace {

constexpr const char* kInfoFile = "checkpoint.json";

[[noreturn]] void fail_errno(const std::string& what, const fs::path& path) {
  throw std::runtime_error(path.string() + ": " + what + ": " + std::strerror(errno));
}

void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail_errno("cannot open for fsync", path);
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    fail_errno("fsync failed", path);
  }
  ::close(fd);
}

// Every file and directory below dir, then dir itself: all data durable before the rename.
void fsync_tree(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() || entry.is_directory()) fsync_path(entry.path(), entry.is_directory());
  }
  fsync_path(dir, true);
}

std::string unique_suffix() {
  std::random_device rd;
  return std::to_string(::getpid()) + "-" + std::to_string(rd());
}

// Writes through fill(tmp), fsyncs, renames over `file`, fsyncs the directory.
void write_atomic_with(const fs::path& file, const std::function<void(const fs::path&)>& fill) {
  const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  fs::create_directories(dir);
  const fs::path tmp = dir / ("." + file.filename().string() + ".tmp-" + unique_suffix());
  try {
    fill(tmp);
    fsync_path(tmp, false);
    fs::rename(tmp, file);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(dir, true);
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::optional<CheckpointInfo> read_info(const fs::path& dir, const std::string& metric_name) {
  const auto name = dir.filename().string();
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return std::nullopt;
  if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  nlohmann::json info;
  try {
    info = load_json(dir / kInfoFile);
  } catch (const std::exception&) {
    return std::nullopt;  // not a complete checkpoint (written by something else)
  }
  CheckpointInfo out;
  out.dir = dir;
  out.step = info.value("step", int64_t{-1});
  if (out.step < 0) return std::nullopt;
  if (!metric_name.empty() && info.value("metric_name", std::string()) == metric_name && info.contains("metric") &&
      info["metric"].is_number()) {
    out.metric = info["metric"].get<double>();
  }
  return out;
}

std::vector<CheckpointInfo> list_checkpoints(const fs::path& checkpoints, const std::string& metric_name) {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(checkpoints, ec)) return out;
  for (const auto& entry : fs::directory_iterator(checkpoints)) {
    if (!entry.is_directory()) continue;
    if (auto info = read_info(entry.path(), metric_name)) out.push_back(std::move(*info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

}  // namespace

CheckpointManager::CheckpointManager(CheckpointOptions options) : options_(std::move(options)) {
  if (options_.keep_last < 1) throw std::invalid_argument("checkpoints: keep_last must be >= 1");
  if (options_.mode != "min" && options_.mode != "max") {
    throw std::invalid_argument("checkpoints: mode must be min or max, got '" + options_.mode + "'");
  }
  const auto dir = checkpoints_dir();
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(".old-", 0) == 0) {
      // Interrupted between "final -> .old" and "tmp -> final": put the old one back.
      const auto final_dir = dir / name.substr(5);
      if (!fs::exists(final_dir)) {
        fs::rename(entry.path(), final_dir);
        continue;
      }
      fs::remove_all(entry.path());
    } else if (name.rfind(".tmp-", 0) == 0 || name.rfind(".trash-", 0) == 0) {
      fs::remove_all(entry.path());
    }
  }
}

fs::path CheckpointManager::save(int64_t step, const std::function<void(const fs::path&)>& write,
                                 std::optional<double> metric) {
  if (step < 0) throw std::invalid_argument("checkpoints: negative step " + std::to_string(step));
  const auto dir = checkpoints_dir();
  fs::create_directories(dir);
  const auto tmp = dir / (".tmp-" + step_name(step) + "-" + unique_suffix());
  const auto final_dir = dir / step_name(step);
  fs::create_directory(tmp);
  try {
    write(tmp);
    nlohmann::json info = {{"step", step}};
    if (!options_.best_metric.empty() && metric) {
      info["metric_name"] = options_.best_metric;
      info["metric"] = std::isfinite(*metric) ? nlohmann::json(*metric) : nlohmann::json(nullptr);
    }
    std::ofstream out(tmp / kInfoFile, std::ios::binary);
    out << info.dump(2) << "\n";
    if (!out.flush()) throw std::runtime_error((tmp / kInfoFile).string() + ": write failed");
    fsync_tree(tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  if (fs::exists(final_dir)) {
    const auto old = dir / (".old-" + step_name(step));
    fs::remove_all(old);
    fs::rename(final_dir, old);
    fs::rename(tmp, final_dir);
    fsync_path(dir, true);
    fs::remove_all(old);
  } else {
    fs::rename(tmp, final_dir);
    fsync_path(dir, true);
  }
  prune();
  return final_dir;
}

std::vector<CheckpointInfo> CheckpointManager::list() const {
  return list_checkpoints(checkpoints_dir(), options_.best_metric);
}

std::optional<CheckpointInfo> CheckpointManager::latest() const {
  auto all = list();
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::optional<CheckpointInfo> CheckpointManager::best() const {
  std::optional<CheckpointInfo> best;
  for (auto& c : list()) {
    if (!c.metric) continue;
    const bool better = !best || (options_.mode == "min" ? *c.metric < *best->metric : *c.metric > *best->metric);
    if (better) best = c;
  }
  return best;
}

void CheckpointManager::prune() {
  const auto all = list();
  std::set<fs::path> keep;
  for (size_t i = all.size() > static_cast<size_t>(options_.keep_last) ? all.size() - options_.keep_last : 0;
       i < all.size(); ++i) {
    keep.insert(all[i].dir);
  }
  if (const auto b = best()) keep.insert(b->dir);
  for (const auto& c : all) {
    if (keep.count(c.dir)) continue;
    // Rename first: a crash mid-delete leaves a .trash- directory, never a half checkpoint.
    const auto trash = c.dir.parent_path() / (".trash-" + c.dir.filename().string());
    fs::remove_all(trash);
    fs::rename(c.dir, trash);
    fs::remove_all(trash);
  }
  fsync_path(checkpoints_dir(), true);
}

std::optional<fs::path> find_latest_checkpoint(const fs::path& run_dir) {
  const auto all = list_checkpoints(run_dir / "checkpoints", "");
  if (all.empty()) return std::nullopt;
  return all.back().dir;
}

void write_file_atomic(const fs::path& file, const std::string& bytes) {
  write_atomic_with(file, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw std::runtime_error(tmp.string() + ": write failed");
  });
}

void save_json(const fs::path& file, const nlohmann::json& value) { write_file_atomic(file, value.dump(2) + "\n"); }

nlohmann::json load_json(const fs::path& file) {
  return read_json_file(file);
}

void save_tensors(const fs::path& file, const std::map<std::string, torch::Tensor>& tensors) {
  // A pickled dict of tensors: Python reads it with torch.load.
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw std::invalid_argument(file.string() + ": tensor '" + name + "' is undefined");
    dict.insert(name, t.cpu());
  }
  const auto bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(file, std::string(bytes.begin(), bytes.end()));
}

std::map<std::string, torch::Tensor> load_tensors(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw std::runtime_error(file.string() + ": not a tensor archive: " + e.what_without_backtrace());
  }
  if (!value.isGenericDict()) throw std::runtime_error(file.string() + ": expected a dict of tensors");
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor()) {
      throw std::runtime_error(file.string() + ": expected a dict of string -> tensor");
    }
    out.emplace(item.key().toStringRef(), item.value().toTensor());
  }
  return out;
}

void save_optimizer(const fs::path& file, const torch::optim::Optimizer& optimizer) {
  write_atomic_with(file, [&](const fs::path& tmp) {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to(tmp.string());
  });
}

void load_optimizer(const fs::path& file, torch::optim::Optimizer& optimizer) {
  if (!fs::exists(file)) throw std::runtime_error(file.string() + ": optimizer state not found");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(file.string());
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw std::runtime_error(file.string() + ": cannot load optimizer state: " + e.what_without_backtrace());
  }
}

torch::Tensor cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const torch::Tensor& state) {
  if (!state.defined() || state.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument("set_cpu_rng_state: expected a uint8 tensor from cpu_rng_state()");
  }
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(state);
  } catch (const c10::Error& e) {
    throw std::invalid_argument(std::string("set_cpu_rng_state: ") + e.what_without_backtrace());
  }
}

}  // namespace perceiver::trainers
