// HF's maths everywhere while a guard is alive on this thread: every attention takes HF's plan
// (select_attention_plan), every decoder decodes all its queries at once and every product and
// softmax runs on ATen's ops. For checking a fast path against the reference, and behind
// `PERCEIVER_REFERENCE=1` in the CLI. Thread-local, as torch's own modes (NoGradGuard, autocast) are.
#pragma once

namespace perceiver {

class ReferenceMode {
 public:
  explicit ReferenceMode(bool enabled = true);
  ~ReferenceMode();
  ReferenceMode(const ReferenceMode&) = delete;
  ReferenceMode& operator=(const ReferenceMode&) = delete;

  static bool is_enabled();

 private:
  bool previous_;
};

}  // namespace perceiver
