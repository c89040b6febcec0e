// trainer.max_steps: auto, the run's length chosen to fit trainer.time_limit_minutes. The trainer
// times its first steps (whose learning rate must not depend on the length), one evaluation and one
// checkpoint, then fixes the length so that the rest of the schedule (warm-up, constant part, decay),
// the planned evaluations and the checkpoints all fit in what is left of the budget. Given the chosen
// length the run is as deterministic as one with that max_steps in its run file.
#pragma once

#include <cstdint>
#include <string>

#include "trainers/schedule.h"

namespace perceiver::trainers {

// Steps trained before the length is first chosen; the first kAutoLengthWarmup of them are not timed.
inline constexpr int64_t kAutoLengthSteps = 30;
inline constexpr int64_t kAutoLengthWarmup = 5;
// The first steps run slower than the rest (caches, allocator, clocks warming up), so the length is
// chosen again every kReplanEvery steps from the median of the latest quarter of the steps (at least
// kReplanEvery of them), for as long as no step so far would have had another learning rate under the
// new length.
inline constexpr int64_t kReplanEvery = 250;
// The length the schedule runs with until it is chosen: long enough that no measured step decays.
inline constexpr int64_t kProvisionalSteps = int64_t{1} << 40;

struct RunLengthInput {
  double seconds = 0;          // left for the rest of the run
  int64_t steps_done = 0;
  double step_seconds = 0;     // per training step, data included
  double eval_seconds = 0;     // per evaluation
  int64_t eval_every = 0;      // 0: the final evaluation only
  double checkpoint_seconds = 0;
  int64_t checkpoint_every = 0;  // 0: the final checkpoint only
};

// The largest total step count whose remaining steps, evaluations (at every multiple of eval_every
// and at the end) and checkpoints (likewise) take at most `seconds`; never less than steps_done + 1.
int64_t fitting_max_steps(const RunLengthInput& input);

// Empty when the schedule's learning rate over the first kAutoLengthSteps steps is the same for every
// length (warm-up, a constant schedule, constant_cosine's constant part); otherwise what to change.
std::string auto_length_problem(const ScheduleOptions& schedule);

// Whether a run at `step` of `total` may still change its length: every step up to `step` has the
// learning rate it would have under any length the change may choose.
bool length_still_free(const ScheduleOptions& schedule, int64_t step, int64_t total);
// `total` raised where needed so that steps up to `step` keep their learning rate (constant_cosine's
// decay must start after them).
int64_t keeping_past_steps(const ScheduleOptions& schedule, int64_t step, int64_t total);

}  // namespace perceiver::trainers
