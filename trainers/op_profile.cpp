#include "trainers/op_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>

namespace perceiver::trainers {

struct OpProfile::State {
  std::mutex mutex;
  std::map<std::string, OpTime> ops;
  at::CallbackHandle handle = 0;
};

namespace {

using Clock = std::chrono::steady_clock;

// ATen's callbacks are plain function pointers, so they reach the live profile through this one
// pointer; OpProfile's constructor refuses a second one.
std::atomic<OpProfile::State*> active{nullptr};

struct Frame : at::ObserverContext {
  Clock::time_point start = Clock::now();
  double children_ms = 0;
};
// The calls open on this thread, innermost last: a call's time is its parent's child time.
thread_local std::vector<Frame*> open_calls;

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction&) {
  auto frame = std::make_unique<Frame>();
  open_calls.push_back(frame.get());
  return frame;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext* context) {
  auto* frame = static_cast<Frame*>(context);
  const double total = std::chrono::duration<double, std::milli>(Clock::now() - frame->start).count();
  // Calls end in reverse order of their start on one thread; tolerate a missing frame all the same.
  const auto it = std::find(open_calls.rbegin(), open_calls.rend(), frame);
  if (it != open_calls.rend()) open_calls.erase(std::next(it).base(), open_calls.end());
  if (!open_calls.empty()) open_calls.back()->children_ms += total;
  auto* state = active.load();
  if (state == nullptr) return;
  const std::lock_guard<std::mutex> lock(state->mutex);
  auto& op = state->ops[fn.name()];
  op.self_ms += total - frame->children_ms;
  op.total_ms += total;
  ++op.calls;
}

}  // namespace

OpProfile::OpProfile() : state_(std::make_unique<State>()) {
  State* expected = nullptr;
  if (!active.compare_exchange_strong(expected, state_.get()))
    throw std::logic_error("OpProfile: another profile is already running in this process");
  state_->handle = at::addGlobalCallback(
      at::RecordFunctionCallback(on_enter, on_exit)
          .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
}

OpProfile::~OpProfile() {
  at::removeCallback(state_->handle);
  active.store(nullptr);
}

std::vector<OpTime> OpProfile::table() const {
  std::vector<OpTime> out;
  {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    for (const auto& [name, op] : state_->ops) {
      out.push_back(op);
      out.back().name = name;
    }
  }
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.self_ms > b.self_ms; });
  return out;
}

}  // namespace perceiver::trainers
