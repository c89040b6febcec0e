#include "perceiver/models/attention_plan.h"

#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include "perceiver/ops/reference_mode.h"

namespace perceiver {

ExecutionState ExecutionState::current(bool dropout) {
  ExecutionState s;
  s.reference = ReferenceMode::is_enabled();
  s.grad = torch::autograd::GradMode::is_enabled();
  s.tracing = torch::jit::tracer::isTracing();
  s.dropout = dropout;
  return s;
}

AttentionPlan select_attention_plan(const AttentionCall& call, const ExecutionState& state) {
  AttentionPlan plan;
  if (state.reference) return plan;
  plan.in_place = !state.grad && !state.tracing;
  // Shared channels pay off from two examples on, or without gradients (their terms are then kept
  // between calls); one example in training takes HF's path.
  const bool factor_pays = call.batch > 1 || !state.grad;
  plan.factor_queries = call.cross && call.queries_share_channels && factor_pays;
  plan.factor_inputs = call.cross && call.inputs_share_channels && factor_pays;
  // The keyless form needs rows of weights that sum to one (no dropout) and saves nothing for a backward.
  plan.keyless = call.cross && plan.factor_inputs && !call.keys_made && call.heads == 1 && !state.dropout &&
                 !state.grad && !state.tracing;
  plan.fold_output = !plan.keyless && call.out_channels > 0 &&
                     output_projection_folds(call.queries, call.keys, call.v_channels, call.out_channels, call.heads,
                                             call.values_projected);
  return plan;
}

bool output_projection_folds(int64_t queries, int64_t keys, int64_t v_channels, int64_t out_channels, int64_t heads,
                             bool values_projected) {
  const double n = static_cast<double>(queries), l = static_cast<double>(keys), v = static_cast<double>(v_channels),
               o = static_cast<double>(out_channels), h = static_cast<double>(heads);
  const double unfolded = n * l * v + n * v * o, folded = (values_projected ? 0.0 : l * v * o) + h * n * l * o;
  return folded < 0.75 * unfolded;  // a clear margin: the two products run at different efficiencies
}

bool decode_in_slices(int64_t queries, int64_t per_pass, bool output_attentions, const ExecutionState& state) {
  return !state.reference && !output_attentions && !state.grad && !state.tracing && !state.dropout &&
         queries > per_pass;
}

}  // namespace perceiver
