#include "perceiver/models/components.h"

namespace perceiver {

WithSharedChannels PreprocessorOutput::parts() const {
  if (inputs.defined()) return {inputs, shared_channels};
  TORCH_CHECK(inputs_without_pos.defined() && shared_channels.defined(), "preprocessor output without inputs has no ",
              inputs_without_pos.defined() ? "shared_channels" : "inputs_without_pos", " to make them from");
  return WithSharedChannels::apart(inputs_without_pos, shared_channels);
}

torch::Tensor PreprocessorOutput::whole() const { return inputs.defined() ? inputs : parts().whole(); }

}  // namespace perceiver
