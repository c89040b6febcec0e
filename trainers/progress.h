// Training progress: a single redrawn line on a terminal, periodic log lines otherwise.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

namespace perceiver::trainers {

struct ProgressOptions {
  int64_t total_steps = 0;              // 0: unknown (no bar, no ETA)
  int64_t log_every_steps = 100;        // non-TTY: a line every N steps ...
  double log_every_seconds = 30.0;      // ... or every S seconds, whichever comes first
  std::optional<bool> tty;              // default: isatty(stderr)
  std::ostream* stream = nullptr;       // TTY output; default std::cerr
  std::shared_ptr<spdlog::logger> logger;  // non-TTY output; default spdlog's default logger
  double redraw_seconds = 0.1;          // TTY: redraw at most this often
};

struct ProgressSnapshot {
  int64_t step = 0, total_steps = 0;
  double loss = 0, lr = 0;
  double samples_per_second = 0;
  double eta_seconds = -1;  // < 0: unknown
};

// "step 120/1000 [=====>     ] 12% | loss 2.3456 | lr 3.00e-04 | 812.5 samples/s | ETA 1:02:03";
// `bar_width` 0 leaves the bar out (log lines).
std::string format_progress(const ProgressSnapshot& s, int bar_width);
std::string format_duration(double seconds);  // "m:ss" or "h:mm:ss"

class ProgressReporter {
 public:
  explicit ProgressReporter(ProgressOptions options);
  ~ProgressReporter();

  // After each optimizer step: `samples` processed by that step.
  void update(int64_t step, double loss, double lr, int64_t samples);
  // Logs a line (eval results, warnings) without tearing the bar: on a TTY the bar is cleared,
  // the message logged, and the bar redrawn below it.
  void message(const std::string& text);
  // Ends the bar line (TTY) / logs the last state.
  void finish();
  // The run's length once known (trainer.max_steps: auto), for the bar and the ETA.
  void set_total_steps(int64_t total) { options_.total_steps = total; }

  bool is_tty() const { return tty_; }

 private:
  using Clock = std::chrono::steady_clock;
  ProgressSnapshot snapshot(Clock::time_point now) const;

  ProgressOptions options_;
  bool tty_ = false;
  bool finished_ = false;
  bool drawn_ = false;
  Clock::time_point start_, last_output_;
  int64_t first_step_ = -1, last_step_ = 0, last_logged_step_ = 0, samples_ = 0;
  double loss_ = 0, lr_ = 0;
};

}  // namespace perceiver::trainers
