#include "trainers/run_length.h"

#include <algorithm>
#include <cmath>

namespace perceiver::trainers {

namespace {

// Events (evaluations, checkpoints) in steps (done, total]: every multiple of `every`, and the last step.
int64_t events(int64_t done, int64_t total, int64_t every) {
  if (every <= 0) return 1;
  const int64_t multiples = total / every - done / every;
  return multiples + (total % every != 0 ? 1 : 0);
}

double cost(const RunLengthInput& in, int64_t total) {
  return static_cast<double>(total - in.steps_done) * in.step_seconds +
         static_cast<double>(events(in.steps_done, total, in.eval_every)) * in.eval_seconds +
         static_cast<double>(events(in.steps_done, total, in.checkpoint_every)) * in.checkpoint_seconds;
}

}  // namespace

int64_t fitting_max_steps(const RunLengthInput& in) {
  int64_t lo = in.steps_done + 1;  // always at least one more step
  if (in.step_seconds <= 0 || cost(in, lo) > in.seconds) return lo;
  int64_t hi = in.steps_done + static_cast<int64_t>(std::ceil(in.seconds / in.step_seconds)) + 1;
  while (lo < hi) {  // the largest total that fits: cost grows with the total
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (cost(in, mid) <= in.seconds) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

std::string auto_length_problem(const ScheduleOptions& schedule) {
  if (schedule.name == "constant" || schedule.name == "constant_cosine") return "";
  if (schedule.warmup_steps >= kAutoLengthSteps) return "";
  return "trainer.max_steps: auto times the first " + std::to_string(kAutoLengthSteps) +
         " steps before choosing the length, and a '" + schedule.name +
         "' schedule's learning rate there depends on the length: use schedule.warmup_steps >= " +
         std::to_string(kAutoLengthSteps) + ", or a constant or constant_cosine schedule";
}

bool length_still_free(const ScheduleOptions& s, int64_t step, int64_t total) {
  if (step >= total * 3 / 4) return false;  // the end is near: keep the length
  if (s.name == "constant") return true;
  if (s.name == "constant_cosine") return step < s.warmup_steps || step < std::llround(s.constant_fraction * total);
  return step < s.warmup_steps;
}

int64_t keeping_past_steps(const ScheduleOptions& s, int64_t step, int64_t total) {
  if (s.name != "constant_cosine" || step < s.warmup_steps || s.constant_fraction <= 0) return total;
  // The decay starts at llround(constant_fraction * total): after `step`.
  auto at_least = static_cast<int64_t>(std::ceil((static_cast<double>(step) + 0.5) / s.constant_fraction));
  while (std::llround(s.constant_fraction * at_least) <= step) ++at_least;
  while (at_least > 1 && std::llround(s.constant_fraction * (at_least - 1)) > step) --at_least;
  return std::max(total, at_least);
}

}  // namespace perceiver::trainers
