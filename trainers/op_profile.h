// Where a step's time goes, per operator: while an OpProfile is alive, every ATen operator and
// autograd function called on any thread is timed (through ATen's RecordFunction callbacks), and
// table() reports each name's self time (its own time, nested operators excluded), total time and calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct OpTime {
  std::string name;    // "aten::mm", "MmBackward0", ...
  double self_ms = 0;  // without the operators it called
  double total_ms = 0;
  int64_t calls = 0;
};

class OpProfile {
 public:
  OpProfile();  // throws when another OpProfile is alive (ATen's callbacks are process-wide)
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  // Sorted by self time, largest first.
  std::vector<OpTime> table() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace perceiver::trainers
