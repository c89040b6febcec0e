// Output structs mirroring HF's PerceiverModelOutput, PerceiverDecoderOutput, PerceiverMaskedLMOutput
// and PerceiverClassifierOutput, plus PerceiverTokenClassifierOutput (HF PR #15103's, never merged).
// Optional tensors are undefined when absent; lists are empty when their output_* flag is off.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "perceiver/ops/dynamic_size.h"

namespace perceiver {

// One tensor (text, images, flow) or one tensor per modality (multimodal), ordered by modality name.
struct TensorOrDict {
  torch::Tensor tensor;
  std::map<std::string, torch::Tensor> dict;

  TensorOrDict() = default;
  TensorOrDict(torch::Tensor t) : tensor(std::move(t)) {}  // NOLINT: implicit on purpose
  TensorOrDict(std::map<std::string, torch::Tensor> d) : dict(std::move(d)) {}  // NOLINT
  bool is_dict() const { return !dict.empty(); }
  bool defined() const { return tensor.defined() || !dict.empty(); }
};

// Number of positions each modality occupies in the flattened input, by modality name (dynamic:
// the numbers of subsampled output points stay free in an export).
using ModalitySizes = std::map<std::string, DynamicSize>;

struct PerceiverDecoderOutput {
  TensorOrDict logits;
  std::vector<torch::Tensor> cross_attentions;
};

struct PerceiverModelOutput {
  TensorOrDict logits;
  torch::Tensor last_hidden_state;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;  // encoder's, then the decoder's
};

struct PerceiverMaskedLMOutput {
  torch::Tensor loss;
  torch::Tensor logits;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;
};

struct PerceiverClassifierOutput {
  torch::Tensor loss;
  TensorOrDict logits;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;
};

// PerceiverForTokenClassification's: logits (batch, seq_len, num_labels), one row per input position.
struct PerceiverTokenClassifierOutput {
  torch::Tensor loss;
  torch::Tensor logits;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;
};

}  // namespace perceiver
