#include "perceiver/models/components.h"

namespace perceiver {

WithSharedChannels PreprocessorOutput::network_inputs() const {
  if (inputs.defined()) return {inputs, shared_channels};
  TORCH_CHECK(inputs_without_pos.defined() && shared_channels.defined(), "preprocessor output without inputs has no ",
              inputs_without_pos.defined() ? "shared_channels" : "inputs_without_pos", " to make them from");
  return WithSharedChannels::apart(inputs_without_pos, shared_channels);
}

PreprocessorOutput PreprocessorOutput::with_inputs_made() && {
  if (!inputs.defined()) inputs = network_inputs().whole();
  return std::move(*this);
}

WithSharedChannels DecoderImpl::decoder_queries(const WithSharedChannels& inputs,
                                                const std::optional<ModalitySizes>& modality_sizes,
                                                const torch::Tensor& inputs_without_pos,
                                                const TensorOrDict& subsampled_points) {
  const auto whole = inputs.whole();
  auto query = decoder_query(whole, modality_sizes, inputs_without_pos, subsampled_points);
  if (query.is_same(whole)) return inputs;  // the inputs themselves: their shared channels, apart if they were
  return query;
}

}  // namespace perceiver
