#include "trainers/distributed.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if PERCEIVER_WITH_CUDA && defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

namespace perceiver::trainers {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string error_text(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

std::string error_text(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return error_text(e);
  } catch (...) {
    return "unknown error";
  }
}

int64_t integer_variable(const EnvLookup& lookup, const char* name, int64_t fallback, int64_t min) {
  const char* text = lookup(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (*end != '\0' || v < min)
    throw std::invalid_argument(fmt::format("environment variable {}='{}' is not an integer >= {}", name, text, min));
  return v;
}

double seconds(milliseconds ms) { return std::chrono::duration<double>(ms).count(); }

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string text(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

RankEnvironment rank_environment(const EnvLookup& lookup_or_default) {
  const EnvLookup lookup = lookup_or_default ? lookup_or_default : [](const char* n) { return std::getenv(n); };
  RankEnvironment env;
  env.world_size = integer_variable(lookup, "WORLD_SIZE", 1, 1);
  if (!env.distributed()) return env;
  auto required = [&](const char* name) {
    const char* v = lookup(name);
    if (!v || !*v)
      throw std::invalid_argument(fmt::format(
          "WORLD_SIZE={} but {} is not set: start the ranks with torchrun or `perceiver train --nproc N`, or set "
          "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for every rank",
          env.world_size, name));
    return v;
  };
  required("RANK");
  env.rank = integer_variable(lookup, "RANK", 0, 0);
  if (env.rank >= env.world_size)
    throw std::invalid_argument(fmt::format("RANK={} is outside WORLD_SIZE={}", env.rank, env.world_size));
  env.master_addr = required("MASTER_ADDR");
  required("MASTER_PORT");
  env.master_port = static_cast<int>(integer_variable(lookup, "MASTER_PORT", 0, 0));
  if (env.master_port > 65535) throw std::invalid_argument(fmt::format("MASTER_PORT={} is not a port", env.master_port));
  env.local_world_size = integer_variable(lookup, "LOCAL_WORLD_SIZE", env.world_size, 1);
  env.local_rank = integer_variable(lookup, "LOCAL_RANK", env.rank % env.local_world_size, 0);
  env.restart_count = integer_variable(lookup, "TORCHELASTIC_RESTART_COUNT", 0, 0);
  const char* agent = lookup("TORCHELASTIC_USE_AGENT_STORE");
  env.agent_store = agent && std::string(agent) == "True";
  return env;
}

struct Distributed::Impl {
  RankEnvironment env;
  DistributedOptions options;
  c10::intrusive_ptr<c10d::Store> store;  // our keys (under "perceiver/")
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  int64_t sequence = 0;  // numbers the store-based exchanges (every rank makes them in the same order)

  // Heartbeat: a thread with its own store connection bumps "alive/<rank>" so that, after a failed
  // collective, the ranks that stopped counting can be named.
  milliseconds period{};
  std::thread heartbeat;
  std::mutex mutex;
  std::condition_variable stop_cv;
  bool stopping = false;

  std::string endpoint() const { return fmt::format("{}:{}", env.master_addr, env.master_port); }

  c10::intrusive_ptr<c10d::Store> connect(bool server) const {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.isServer = server;
    o.waitWorkers = false;
    o.timeout = options.timeout;
    c10::intrusive_ptr<c10d::Store> tcp;
    try {
      tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    } catch (const std::exception& e) {
      if (server)
        throw CollectiveError(fmt::format(
            "rank 0 cannot host the rendezvous store on port {} ({}): the port is in use or not allowed; choose "
            "another MASTER_PORT (or --master-port)",
            env.master_port, error_text(e)));
      throw CollectiveError(fmt::format(
          "rank {} could not reach the rendezvous store at {} within {:.0f} s ({}): check MASTER_ADDR/MASTER_PORT "
          "and that rank 0 (or the torchrun agent) is running",
          env.rank, endpoint(), seconds(options.timeout), error_text(e)));
    }
    // torchrun's agent keeps one store for every attempt; its workers use a per-attempt prefix.
    if (env.agent_store)
      tcp = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), tcp);
    return c10::make_intrusive<c10d::PrefixStore>("perceiver", tcp);
  }

  std::string key(const std::string& what, int64_t r) const { return what + "/" + std::to_string(r); }

  void start_heartbeat() {
    period = std::clamp(milliseconds(options.timeout.count() / 20), milliseconds(50), milliseconds(1000));
    auto own = connect(false);
    heartbeat = std::thread([this, own] {
      while (true) {
        try {
          own->add(key("alive", env.rank), 1);
        } catch (const std::exception&) {
          return;  // the store is gone: the failure is reported by the collective that notices it
        }
        std::unique_lock<std::mutex> lock(mutex);
        if (stop_cv.wait_for(lock, period, [this] { return stopping; })) return;
      }
    });
  }

  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    stop_cv.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }

  // Waits for `k`, failing with a message that says who did not arrive.
  std::string get(const std::string& k, const std::string& waiting_for) {
    try {
      store->wait({k}, options.timeout);
      return text(store->get(k));
    } catch (const std::exception& e) {
      throw CollectiveError(fmt::format("rank {}: {} did not arrive within {:.0f} s (trainer.dist_timeout_s): {}",
                                        env.rank, waiting_for, seconds(options.timeout), error_text(e)));
    }
  }

  void set(const std::string& k, const std::string& v) {
    try {
      store->set(k, bytes(v));
    } catch (const std::exception& e) {
      throw CollectiveError(fmt::format("rank {}: the rendezvous store at {} does not answer: {}", env.rank,
                                        endpoint(), error_text(e)));
    }
  }

  // Every rank announces its world size and run-file fingerprint; each compares with rank 0's, and
  // rank 0 with every other one as it arrives, so a mismatch stops both sides at once. Rank 0 may host
  // the store: it leaves only once the others have read its verdict.
  void handshake() {
    const nlohmann::json mine = {{"world_size", env.world_size}, {"fingerprint", options.fingerprint}};
    set(key("join", env.rank), mine.dump());
    auto mismatch = [&](const nlohmann::json& other, int64_t other_rank) -> std::string {
      const auto [low, high] = std::minmax(env.rank, other_rank);
      const auto& low_info = low == env.rank ? mine : other;
      const auto& high_info = low == env.rank ? other : mine;
      if (other.at("world_size") != mine.at("world_size"))
        return fmt::format("the ranks disagree on WORLD_SIZE: rank {} has {}, rank {} has {}; start every rank with "
                           "the same world size",
                           low, low_info.at("world_size").get<int64_t>(), high, high_info.at("world_size").get<int64_t>());
      if (other.at("fingerprint") != mine.at("fingerprint"))
        return fmt::format("the effective run files of rank {} and rank {} differ (config hash {} vs {}): start every "
                           "rank with the same --config and KEY=VALUE overrides",
                           low, high, low_info.at("fingerprint").get<std::string>(),
                           high_info.at("fingerprint").get<std::string>());
      return {};
    };
    std::string verdict;
    if (env.rank == 0) {
      int64_t joined = 1;
      for (; joined < env.world_size && verdict.empty(); ++joined)
        verdict = mismatch(nlohmann::json::parse(get(key("join", joined), fmt::format("rank {}'s join", joined))), joined);
      set("verdict", verdict);
      if (!verdict.empty()) {
        for (int64_t r = 1; r < joined; ++r) {
          try {
            store->wait({key("read", r)}, options.timeout);
          } catch (const std::exception&) {
          }
        }
      }
    } else {
      verdict = mismatch(nlohmann::json::parse(get(key("join", 0), "rank 0's join")), 0);
      if (verdict.empty()) verdict = get("verdict", "rank 0's check of every rank");
      set(key("read", env.rank), "");
    }
    // Every rank sees the mismatch itself: a plain error, nothing to diagnose.
    if (!verdict.empty()) throw std::runtime_error(verdict);
  }

  void create_group(const c10::intrusive_ptr<c10d::Store>& tcp) {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", tcp);
    const int rank = static_cast<int>(env.rank), size = static_cast<int>(env.world_size);
    if (options.cuda) {
#if PERCEIVER_WITH_CUDA && defined(USE_C10D_NCCL)
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, o);
      return;
#else
      throw std::invalid_argument(
          "distributed training on a GPU needs NCCL, which this build lacks: build against a CUDA LibTorch, or "
          "train on the CPU (trainer.device: cpu)");
#endif
    }
    auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
    // Loopback jobs stay on loopback; elsewhere GLOO_SOCKET_IFNAME or the address the hostname resolves to.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(env.master_addr))
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    o->threads = 2;
    try {
      group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, o);
    } catch (const std::exception& e) {
      throw CollectiveError(fmt::format("rank {}: connecting the Gloo process group failed: {}", env.rank,
                                        error_text(e)));
    }
  }

  // Leaves this rank's error in the store for the others to name (best effort: the store may be gone).
  void publish_failure(const std::string& message) {
    try {
      store->set(key("failed", env.rank), bytes(message));
    } catch (...) {
    }
  }

  // Ranks that failed (with their message) or stopped their heartbeat.
  std::vector<std::string> lost_ranks() {
    std::vector<std::string> lost;
    try {
      auto failed = [&] {
        std::vector<std::string> out;
        for (int64_t r = 0; r < env.world_size; ++r)
          if (r != env.rank && store->check({key("failed", r)}))
            out.push_back(fmt::format("rank {} failed: {}", r, text(store->get(key("failed", r)))));
        return out;
      };
      auto counters = [&] {
        std::vector<int64_t> out;
        for (int64_t r = 0; r < env.world_size; ++r) out.push_back(store->add(key("alive", r), 0));
        return out;
      };
      lost = failed();
      if (!lost.empty()) return lost;
      const auto before = counters();
      std::this_thread::sleep_for(3 * period + milliseconds(100));
      lost = failed();
      if (!lost.empty()) return lost;
      const auto after = counters();
      for (int64_t r = 0; r < env.world_size; ++r)
        if (r != env.rank && after[r] == before[r])
          lost.push_back(fmt::format("rank {} was lost (no heartbeat for {:.1f} s: killed, crashed or out of memory)",
                                     r, seconds(3 * period)));
    } catch (const std::exception&) {
      lost.push_back(env.agent_store
                         ? fmt::format("the rendezvous store at {} (the torchrun agent or launcher) is gone", endpoint())
                         : fmt::format("rank 0 was lost (it hosts the rendezvous store at {}, which no longer answers)",
                                       endpoint()));
    }
    return lost;
  }
};

Distributed::Distributed(const RankEnvironment& env, const DistributedOptions& options) : impl_(std::make_unique<Impl>()) {
  if (!env.distributed()) throw std::invalid_argument("Distributed: WORLD_SIZE must be > 1");
  impl_->env = env;
  impl_->options = options;
  auto tcp = impl_->connect(!env.agent_store && env.rank == 0);
  impl_->store = tcp;
  impl_->start_heartbeat();
  try {
    impl_->handshake();
    impl_->create_group(tcp);
  } catch (...) {
    impl_->stop_heartbeat();
    throw;
  }
  // Nobody leaves the join before every rank's connections are up: a rank that fails right after it
  // (a bad batch size) would otherwise cut a slower peer's connection set-up short, and that peer would
  // report a connection error instead of the real one.
  barrier();
  spdlog::info("rank {} of {} joined the process group ({} on {}, collective timeout {:.0f} s)", env.rank,
               env.world_size, impl_->group->getBackendName(), impl_->endpoint(), seconds(options.timeout));
}

Distributed::~Distributed() { impl_->stop_heartbeat(); }

int64_t Distributed::rank() const { return impl_->env.rank; }
int64_t Distributed::world_size() const { return impl_->env.world_size; }
const c10::intrusive_ptr<c10d::ProcessGroup>& Distributed::process_group() const { return impl_->group; }

void Distributed::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw CollectiveError(fmt::format("rank {}: {} failed: {}", rank(), what, error_text(e)));
  }
}

void Distributed::broadcast(const std::vector<torch::Tensor>& tensors) {
  // One flat buffer per dtype: a broadcast per tensor would cost a round trip each.
  std::map<c10::ScalarType, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors)
    if (t.defined() && t.numel() > 0) groups[t.scalar_type()].push_back(t);
  for (auto& [dtype, group] : groups) {
    std::vector<torch::Tensor> flat;
    for (const auto& t : group) flat.push_back(t.detach().reshape({-1}));
    auto buffer = torch::cat(flat);
    if (dtype == torch::kBool) buffer = buffer.to(torch::kUInt8);  // Gloo has no bool
    std::vector<torch::Tensor> io{buffer};
    wait(impl_->group->broadcast(io), "broadcasting rank 0's parameters and buffers");
    int64_t offset = 0;
    torch::NoGradGuard no_grad;
    for (auto& t : group) {
      t.copy_(io[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

torch::Tensor Distributed::all_reduce_sum(torch::Tensor tensor) {
  std::vector<torch::Tensor> io{tensor};
  wait(impl_->group->allreduce(io), "an all-reduce");
  return tensor;
}

std::vector<std::string> Distributed::all_gather_strings(const std::string& value) {
  const auto round = "gather/" + std::to_string(impl_->sequence++);
  impl_->set(impl_->key(round, rank()), value);
  std::vector<std::string> out;
  for (int64_t r = 0; r < world_size(); ++r)
    out.push_back(r == rank() ? value : impl_->get(impl_->key(round, r), fmt::format("rank {}'s values", r)));
  return out;
}

std::string Distributed::broadcast_string(const std::string& value) {
  const auto k = "broadcast/" + std::to_string(impl_->sequence++);
  if (is_main()) {
    impl_->set(k, value);
    return value;
  }
  return impl_->get(k, "rank 0's value");
}

MetricSums Distributed::all_reduce(const MetricSums& sums) {
  // Agree on the names first: a rank may have seen no example of some metric.
  std::vector<std::string> names;
  std::string mine;
  for (const auto& [name, v] : sums.entries()) mine += name + "\n";
  for (const auto& list : all_gather_strings(mine))
    for (size_t begin = 0, end; (end = list.find('\n', begin)) != std::string::npos; begin = end + 1)
      names.push_back(list.substr(begin, end - begin));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  auto values = torch::zeros({static_cast<int64_t>(names.size()), 2}, torch::kDouble);
  auto acc = values.accessor<double, 2>();
  for (size_t i = 0; i < names.size(); ++i) {
    const auto it = sums.entries().find(names[i]);
    if (it == sums.entries().end()) continue;
    acc[i][0] = it->second.first;
    acc[i][1] = it->second.second;
  }
  if (!names.empty()) all_reduce_sum(values);
  MetricSums out;
  for (size_t i = 0; i < names.size(); ++i) out.add(names[i], acc[i][0], acc[i][1]);
  return out;
}

void Distributed::barrier() {
  // An all-reduce rather than ProcessGroup::barrier: Gloo's barrier does not name what it waited for.
  all_reduce_sum(torch::zeros({1}));
}

void Distributed::fail(const std::exception_ptr& error) {
  bool collective = false;
  try {
    std::rethrow_exception(error);
  } catch (const CollectiveError&) {
    collective = true;
  } catch (...) {
  }
  if (!collective) {
    // This rank's own error: leave it for the others to name, then stop with it.
    impl_->publish_failure(error_text(error));
    std::rethrow_exception(error);
  }
  const auto lost = impl_->lost_ranks();
  std::string list;
  for (const auto& l : lost) list += (list.empty() ? "" : "; ") + l;
  if (lost.empty()) {
    impl_->publish_failure(error_text(error));
    throw CollectiveError(fmt::format(
        "rank {}: distributed training stopped: {} (no rank reported an error or stopped its heartbeat: a rank may "
        "hang, or the network failed; the collective timeout is trainer.dist_timeout_s = {:.0f} s)",
        rank(), error_text(error), seconds(impl_->options.timeout)));
  }
  throw CollectiveError(fmt::format("rank {}: distributed training stopped: {} (here: {})", rank(), list,
                                    error_text(error)));
}

}  // namespace perceiver::trainers
