// Learning-rate schedules as pure functions of the step, and applying a rate to every param group.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/option_spec.h"

namespace torch::optim {
class Optimizer;
}

namespace perceiver::trainers {

// `step` counts optimizer updates from 0. Warm-up (every schedule) rises linearly as
// base_lr * step / warmup_steps for step < warmup_steps, as transformers' get_*_schedule_with_warmup.
//   constant:        base_lr after warm-up
//   linear:          from base_lr at warmup_steps down to min_lr at total_steps
//   cosine:          base_lr -> min_lr along half a cosine between warmup_steps and total_steps
//   constant_cosine: DeepMind's Perceiver schedule: base_lr until constant_fraction * total_steps,
//                    then half a cosine down to min_lr at total_steps
// Past total_steps the rate stays at its final value.
struct ScheduleOptions {
  std::string name = "constant";
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double min_lr = 0.0;
  double constant_fraction = 0.5;
};

// From a run file's `schedule` section (keys as the fields above); absent keys keep their defaults.
// total_steps may be left out for the trainer to fill in (e.g. from its max_steps) before use.
// The `schedule` section's keys as a run file declares them (trainers/run_options.h); their defaults
// are ScheduleOptions'. total_steps is not one: the trainer sets it from its max_steps.
const datasets::OptionSpecs& schedule_option_specs();

ScheduleOptions schedule_options_from_yaml(const YAML::Node& section, const std::string& source,
                                           const std::string& path = "schedule");

// Throws std::invalid_argument for an unknown name or inconsistent step counts.
void validate(const ScheduleOptions& options);
double learning_rate_at(const ScheduleOptions& options, double base_lr, int64_t step);

// Sets group i's lr to lr * multipliers[i] (multipliers.size() must equal the number of groups).
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr, const std::vector<double>& multipliers);

}  // namespace perceiver::trainers
