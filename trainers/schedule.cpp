#include "trainers/schedule.h"

#include <torch/optim/optimizer.h>

#include "trainers/run_config_util.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace perceiver::trainers {

void validate(const ScheduleOptions& o) {
  const std::string where = "lr schedule '" + o.name + "': ";
  if (o.name != "constant" && o.name != "linear" && o.name != "cosine" && o.name != "constant_cosine") {
    throw std::invalid_argument(where + "unknown name (expected constant, linear, cosine or constant_cosine)");
  }
  if (o.warmup_steps < 0) throw std::invalid_argument(where + "warmup_steps must be >= 0");
  if (o.name != "constant") {
    if (o.total_steps <= 0) throw std::invalid_argument(where + "total_steps must be > 0");
    if (o.warmup_steps > o.total_steps) {
      throw std::invalid_argument(where + "warmup_steps (" + std::to_string(o.warmup_steps) +
                                  ") exceeds total_steps (" + std::to_string(o.total_steps) + ")");
    }
  }
  if (!(o.constant_fraction >= 0 && o.constant_fraction <= 1)) {
    throw std::invalid_argument(where + "constant_fraction must be in [0, 1]");
  }
  if (!(o.min_lr >= 0)) throw std::invalid_argument(where + "min_lr must be >= 0");
}

const datasets::OptionSpecs& schedule_option_specs() {
  static const datasets::OptionSpecs specs = [] {
    const ScheduleOptions d;
    return datasets::OptionSpecs{
        {"name", "enum[constant, linear, cosine, constant_cosine]", d.name,
         "after the warm-up: constant, linear or cosine decay to min_lr, or constant then cosine"},
        {"warmup_steps", "int", yaml_text(d.warmup_steps), "linear warm-up from 0 to the base learning rate"},
        {"min_lr", "float", yaml_text(d.min_lr), "the learning rate the decay ends at"},
        {"constant_fraction", "float", yaml_text(d.constant_fraction),
         "constant_cosine: the share of the run at the base learning rate before the decay"},
    };
  }();
  return specs;
}

ScheduleOptions schedule_options_from_yaml(const YAML::Node& section, const std::string& source,
                                           const std::string& path) {
  const SectionReader r(section, source, path);
  ScheduleOptions o;
  o.name = r.get<std::string>("name", o.name, "a string");
  o.warmup_steps = r.get<int64_t>("warmup_steps", o.warmup_steps, "an int");
  o.total_steps = r.get<int64_t>("total_steps", o.total_steps, "an int");
  o.min_lr = r.get<double>("min_lr", o.min_lr, "a float");
  o.constant_fraction = r.get<double>("constant_fraction", o.constant_fraction, "a float");
  try {
    ScheduleOptions check = o;
    if (!r.has("total_steps")) check.total_steps = std::max<int64_t>(o.warmup_steps, 1);  // trainer fills it in
    validate(check);
  } catch (const std::invalid_argument& e) {
    throw ConfigError({source + ": '" + path + "': " + e.what()});
  }
  return o;
}

double learning_rate_at(const ScheduleOptions& o, double base_lr, int64_t step) {
  validate(o);
  step = std::max<int64_t>(step, 0);
  if (step < o.warmup_steps) return base_lr * static_cast<double>(step) / static_cast<double>(o.warmup_steps);
  if (o.name == "constant") return base_lr;

  // Decay phase over [start, total_steps], progress in [0, 1].
  int64_t start = o.warmup_steps;
  if (o.name == "constant_cosine") {
    start = std::max(start, static_cast<int64_t>(std::llround(o.constant_fraction * o.total_steps)));
    if (step < start) return base_lr;
  }
  const double span = static_cast<double>(o.total_steps - start);
  const double progress = span <= 0 ? 1.0 : std::clamp((step - start) / span, 0.0, 1.0);
  const double factor = o.name == "linear" ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return o.min_lr + (base_lr - o.min_lr) * factor;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr, const std::vector<double>& multipliers) {
  auto& groups = optimizer.param_groups();
  if (multipliers.size() != groups.size()) {
    throw std::invalid_argument("set_learning_rate: " + std::to_string(multipliers.size()) +
                                " lr multipliers for " + std::to_string(groups.size()) + " param groups");
  }
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(lr * multipliers[i]);
}

}  // namespace perceiver::trainers
