// How one attention call is computed, chosen in one place. HF's plan (every field false) is the
// reference: layer norms, query/key/value projections, softmax(q k^T / sqrt(d) + mask) v, output
// projection. Each fast path computes the same up to float rounding; tests/perceiver/test_attention_plans.cpp
// checks every one against the reference, outputs and gradients.
#pragma once

#include <cstdint>

namespace perceiver {

struct AttentionPlan {
  // Project the shared channels of the queries (a decoder whose queries are the encoder's inputs) or
  // of a cross-attention's inputs (position features) once per batch, not once per example.
  bool factor_queries = false;
  bool factor_inputs = false;
  // Weigh the inputs without making their keys and values (one head, weights that sum to one).
  bool keyless = false;
  // Apply the output projection to the values before weighing them (many queries, few keys).
  bool fold_output = false;
  // Nothing is recorded for a backward or a trace: intermediates may be written over, and the terms
  // of shared channels kept between calls while the weights stay the same.
  bool in_place = false;
};

// The state of the process that a plan depends on, read in one place (current()) and passed on.
struct ExecutionState {
  bool reference = false;  // a ReferenceMode guard is alive
  bool grad = false;       // autograd records the call
  bool tracing = false;    // `perceiver export` traces it
  bool dropout = false;    // the attention's dropout is active (training, p > 0)
  // The calling thread's state; `dropout` is the module's (is_training() and p > 0).
  static ExecutionState current(bool dropout = false);
};

// The shapes of one call. out_channels 0: the call has no output projection (a bare
// PerceiverSelfAttention, or keys made for later calls).
struct AttentionCall {
  bool cross = false;
  int64_t batch = 1;
  int64_t queries = 0;
  int64_t keys = 0;
  int64_t heads = 1;
  int64_t v_channels = 0;
  int64_t out_channels = 0;
  bool queries_share_channels = false;  // the queries come with shared channels
  bool inputs_share_channels = false;   // the inputs do
  bool keys_made = false;               // keys and values were made beforehand (a sliced decoder)
  bool values_projected = false;        // and the values already went through the output projection
};

AttentionPlan select_attention_plan(const AttentionCall& call, const ExecutionState& state);

// Whether the output projection W (O x V) of an attention's context takes fewer FLOPs applied to
// the values first: sum over heads of probs_h (values_h W_h^T), L V O + H N L O, instead of
// (probs values) W^T, N L V + N V O (with N queries and L keys). It does by a wide margin where many
// queries attend with one head to few keys (the optical-flow decoder: 42 % fewer). values_projected:
// values W^T is already made, so only the second product counts.
bool output_projection_folds(int64_t queries, int64_t keys, int64_t v_channels, int64_t out_channels, int64_t heads,
                             bool values_projected = false);

// Whether a decoder takes its `queries` in slices of `per_pass` (the keys made once for all): where
// nothing needs the whole at once (no gradients, no attentions returned, no trace), no dropout draws
// a mask per slice (so that a seeded run draws what HF's does) and it saves memory.
bool decode_in_slices(int64_t queries, int64_t per_pass, bool output_attentions, const ExecutionState& state);

}  // namespace perceiver
