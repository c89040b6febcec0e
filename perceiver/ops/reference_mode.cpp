#include "perceiver/ops/reference_mode.h"

namespace perceiver {
namespace {
thread_local bool reference_enabled = false;
}  // namespace

ReferenceMode::ReferenceMode(bool enabled) : previous_(reference_enabled) { reference_enabled = enabled; }
ReferenceMode::~ReferenceMode() { reference_enabled = previous_; }
bool ReferenceMode::is_enabled() { return reference_enabled; }

}  // namespace perceiver
