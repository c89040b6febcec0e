#include "trainers/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

namespace perceiver::trainers {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", total / 60, total % 60);
  }
  return buf;
}

std::string format_progress(const ProgressSnapshot& s, int bar_width) {
  char buf[256];
  std::string out = "step " + std::to_string(s.step);
  if (s.total_steps > 0) {
    const double frac = std::clamp(static_cast<double>(s.step) / s.total_steps, 0.0, 1.0);
    out += "/" + std::to_string(s.total_steps);
    if (bar_width > 0) {
      const int filled = static_cast<int>(frac * bar_width);
      out += " [" + std::string(filled, '=') + (filled < bar_width ? ">" : "") +
             std::string(std::max(0, bar_width - filled - 1), ' ') + "]";
    }
    std::snprintf(buf, sizeof buf, " %3d%%", static_cast<int>(frac * 100));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, " | loss %.4f | lr %.2e | %.1f samples/s", s.loss, s.lr, s.samples_per_second);
  out += buf;
  if (s.eta_seconds >= 0) out += " | ETA " + format_duration(s.eta_seconds);
  return out;
}

ProgressReporter::ProgressReporter(ProgressOptions options) : options_(std::move(options)) {
  tty_ = options_.tty.value_or(::isatty(STDERR_FILENO) == 1);
  if (!options_.stream) options_.stream = &std::cerr;
  if (!options_.logger) options_.logger = spdlog::default_logger();
  start_ = last_output_ = Clock::now();
}

ProgressReporter::~ProgressReporter() {
  if (tty_ && drawn_ && !finished_) *options_.stream << "\n" << std::flush;  // leave the cursor on a fresh line
}

ProgressSnapshot ProgressReporter::snapshot(Clock::time_point now) const {
  ProgressSnapshot s;
  s.step = last_step_;
  s.total_steps = options_.total_steps;
  s.loss = loss_;
  s.lr = lr_;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int64_t steps_done = last_step_ - first_step_ + 1;
  if (elapsed > 0) s.samples_per_second = samples_ / elapsed;
  if (options_.total_steps > 0 && elapsed > 0 && steps_done > 0) {
    s.eta_seconds = std::max<int64_t>(0, options_.total_steps - last_step_) * elapsed / steps_done;
  }
  return s;
}

void ProgressReporter::update(int64_t step, double loss, double lr, int64_t samples) {
  const auto now = Clock::now();
  if (first_step_ < 0) first_step_ = step;
  last_step_ = step;
  loss_ = loss;
  lr_ = lr;
  samples_ += samples;
  const double since_output = std::chrono::duration<double>(now - last_output_).count();
  const bool last = options_.total_steps > 0 && step >= options_.total_steps;
  if (tty_) {
    if (since_output < options_.redraw_seconds && drawn_ && !last) return;
    // \r + clear-to-end-of-line: the line may get shorter.
    *options_.stream << "\r" << format_progress(snapshot(now), 30) << "\x1b[K" << std::flush;
    drawn_ = true;
  } else {
    const bool due_steps = options_.log_every_steps > 0 && step - last_logged_step_ >= options_.log_every_steps;
    const bool due_time = options_.log_every_seconds > 0 && since_output >= options_.log_every_seconds;
    if (!due_steps && !due_time && !last) return;
    options_.logger->info("{}", format_progress(snapshot(now), 0));
    last_logged_step_ = step;
  }
  last_output_ = now;
}

void ProgressReporter::message(const std::string& text) {
  const bool bar_shown = tty_ && drawn_ && !finished_;
  if (bar_shown) *options_.stream << "\r\x1b[K" << std::flush;
  options_.logger->info("{}", text);
  options_.logger->flush();
  if (bar_shown) *options_.stream << "\r" << format_progress(snapshot(Clock::now()), 30) << "\x1b[K" << std::flush;
}

void ProgressReporter::finish() {
  if (finished_) return;
  finished_ = true;
  if (first_step_ < 0) return;
  if (tty_) {
    *options_.stream << "\r" << format_progress(snapshot(Clock::now()), 30) << "\x1b[K\n" << std::flush;
  } else if (last_logged_step_ != last_step_) {
    options_.logger->info("{}", format_progress(snapshot(Clock::now()), 0));
  }
}

}  // namespace perceiver::trainers
