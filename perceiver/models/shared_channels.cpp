#include "perceiver/models/shared_channels.h"

#include "perceiver/ops/dynamic_size.h"

namespace perceiver {

WithSharedChannels WithSharedChannels::apart(torch::Tensor own, torch::Tensor shared) {
  TORCH_CHECK(own.dim() == 3 && shared.dim() == 3 && shared.size(0) == 1 && shared.size(1) == own.size(1),
              "channels held apart: own ", own.sizes(), " and shared ", shared.sizes(),
              " must be (B, M, C) and (1, M, Cs)");
  WithSharedChannels out({}, std::move(shared));
  out.own = std::move(own);
  return out;
}

int64_t WithSharedChannels::size(int64_t dim) const {
  const auto& t = rows_tensor();
  if (!held_apart() || torch::maybe_wrap_dim(dim, t.dim()) != t.dim() - 1) return t.size(dim);
  return own.size(-1) + shared.size(-1);
}

torch::Tensor WithSharedChannels::own_channels() const {
  if (held_apart()) return own;
  return shared.defined() ? all.narrow(-1, 0, all.size(-1) - shared.size(-1)) : all;
}

torch::Tensor WithSharedChannels::whole() const {
  if (!held_apart()) return all;
  // The batch stays free in an export's trace.
  const auto these_rows = shared.narrow(1, shared_offset, own.size(1)).to(own.scalar_type());
  return torch::cat({own, dynamic::expand(these_rows, {DynamicSize::of(own, 0), -1, -1})}, -1);
}

WithSharedChannels WithSharedChannels::rows(int64_t start, int64_t length) const {
  WithSharedChannels slice(all.defined() ? all.narrow(1, start, length) : torch::Tensor(), shared);
  if (own.defined()) slice.own = own.narrow(1, start, length);
  slice.sliced = true;
  slice.shared_offset = shared_offset + start;
  return slice;
}

}  // namespace perceiver
