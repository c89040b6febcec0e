#include "trainers/launcher.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>

extern char** environ;

namespace perceiver::trainers {
namespace {

using Clock = std::chrono::steady_clock;

// A signal handler can reach only static storage: the write end of the launcher's self-pipe.
std::atomic<int> signal_pipe{-1};

void forward_signal(int sig) {
  const int fd = signal_pipe.load();
  const auto byte = static_cast<unsigned char>(sig);
  if (fd >= 0 && ::write(fd, &byte, 1) < 0) {
    // a full pipe already holds a pending signal
  }
}

// SIGINT/SIGTERM arrive as bytes on a pipe while this object lives; the previous handlers come back after.
class SignalPipe {
 public:
  SignalPipe() {
    if (::pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error(std::string("launcher: pipe: ") + std::strerror(errno));
    signal_pipe.store(fds_[1]);
    struct sigaction sa {};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (const int sig : {SIGINT, SIGTERM}) ::sigaction(sig, &sa, &previous_[sig]);
  }
  ~SignalPipe() {
    for (auto& [sig, old] : previous_) ::sigaction(sig, &old, nullptr);
    signal_pipe.store(-1);
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  // Waits up to `timeout` for a signal; returns it.
  std::optional<int> wait(std::chrono::milliseconds timeout) const {
    pollfd p{fds_[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    unsigned char byte = 0;
    if (::read(fds_[0], &byte, 1) != 1) return std::nullopt;
    return static_cast<int>(byte);
  }

 private:
  int fds_[2] = {-1, -1};
  std::map<int, struct sigaction> previous_;
};

std::string this_program() {
  std::error_code ec;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("launcher: cannot find this program (/proc/self/exe): " + ec.message());
  return path.string();
}

// This process's environment with `overrides` replacing variables of the same name.
std::vector<std::string> environment_with(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    if (!overrides.count(entry.substr(0, entry.find('=')))) out.push_back(entry);
  }
  for (const auto& [k, v] : overrides) out.push_back(k + "=" + v);
  return out;
}

// fork + exec: everything the child needs is built first, so that between fork and exec it calls only
// async-signal-safe functions (the parent may already run threads, e.g. the store's).
pid_t spawn(const std::string& program, const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<char*> argv{const_cast<char*>(program.c_str())}, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("launcher: fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphans if the launcher itself is killed
    if (::getppid() != parent) ::_exit(1);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::execve(program.c_str(), argv.data(), envp.data());
    static const char msg[] = "perceiver launcher: cannot execute the rank's program\n";
    if (::write(STDERR_FILENO, msg, sizeof msg - 1) < 0) ::_exit(127);
    ::_exit(127);
  }
  return pid;
}

struct RankProcess {
  int rank = 0;
  pid_t pid = 0;
  bool running = true;
};

}  // namespace

std::string describe_exit(int rank, int pid, int status) {
  if (WIFEXITED(status)) return fmt::format("rank {} (pid {}) exited with code {}", rank, pid, WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("rank {} (pid {}) was killed by signal {} ({})", rank, pid, WTERMSIG(status),
                       ::strsignal(WTERMSIG(status)));
  return fmt::format("rank {} (pid {}) stopped with status {}", rank, pid, status);
}

int launch(const LaunchOptions& options) {
  if (options.nproc < 1) throw std::invalid_argument("launcher: --nproc must be >= 1");
  const SignalPipe signals;
  // The launcher hosts the store, as torchrun's agent does: it outlives any rank, so a lost rank 0 is
  // named like any other.
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(options.master_port);
  so.isServer = true;
  so.waitWorkers = false;
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, so);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("launcher: cannot host the rendezvous store on {}:{} (in use?): {}",
                                         options.master_addr, options.master_port, e.what()));
  }
  const int port = store->getPort();
  const auto program = options.program.empty() ? this_program() : options.program;
  spdlog::info("launching {} ranks of {} (rendezvous store on {}:{})", options.nproc, program, options.master_addr, port);

  std::vector<RankProcess> ranks;
  auto stop_all = [&](int sig) {
    for (const auto& r : ranks)
      if (r.running) ::kill(r.pid, sig);
  };
  try {
    for (int r = 0; r < options.nproc; ++r) {
      const std::map<std::string, std::string> vars{
          {"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)}, {"GROUP_RANK", "0"},
          {"WORLD_SIZE", std::to_string(options.nproc)}, {"LOCAL_WORLD_SIZE", std::to_string(options.nproc)},
          {"MASTER_ADDR", options.master_addr}, {"MASTER_PORT", std::to_string(port)},
          {"TORCHELASTIC_RESTART_COUNT", "0"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}};
      ranks.push_back({r, spawn(program, options.args, environment_with(vars)), true});
    }
  } catch (...) {
    stop_all(SIGKILL);
    for (const auto& r : ranks) ::waitpid(r.pid, nullptr, 0);
    throw;
  }

  std::optional<std::string> failure;
  std::optional<int> interrupted;
  std::optional<Clock::time_point> kill_at;  // after SIGTERM: when the stragglers get SIGKILL
  auto terminate = [&](int sig) {
    stop_all(sig);
    if (!kill_at) kill_at = Clock::now() + options.grace;
  };
  while (std::any_of(ranks.begin(), ranks.end(), [](const RankProcess& r) { return r.running; })) {
    if (const auto sig = signals.wait(std::chrono::milliseconds(100))) {
      if (!interrupted) spdlog::warn("launcher: {} received: passing it to the ranks", ::strsignal(*sig));
      interrupted = *sig;
      terminate(*sig);
    }
    for (auto& r : ranks) {
      if (!r.running) continue;
      int status = 0;
      if (::waitpid(r.pid, &status, WNOHANG) != r.pid) continue;
      r.running = false;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !failure && !interrupted) {
        failure = describe_exit(r.rank, r.pid, status);
        spdlog::error("launcher: {}: stopping the other ranks", *failure);
        terminate(SIGTERM);
      }
    }
    if (kill_at && Clock::now() >= *kill_at) stop_all(SIGKILL);
  }
  if (failure) throw std::runtime_error(*failure + " (its own error is printed above); the other ranks were stopped");
  return interrupted ? 128 + *interrupted : 0;
}

}  // namespace perceiver::trainers
