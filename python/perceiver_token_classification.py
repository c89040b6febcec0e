# coding=utf-8
# Perceiver IO for token classification, written in the style of transformers' modeling_perceiver.py,
# on top of its modules. transformers has no such class (issue #14971; PR #15103 was closed unmerged);
# perceiver-cpp's C++ PerceiverForTokenClassification (perceiver/models/heads.h) is this one, parameter for
# parameter, so a checkpoint either side writes loads on the other:
#
#     from perceiver_token_classification import PerceiverForTokenClassification
#     model = PerceiverForTokenClassification.from_pretrained("runs/ner/checkpoints/step-00002000")
#
# Needs transformers (with the Perceiver: 4.15 or later; checked against the 4.48.0.dev0 tree of
# commit e5fd865e, which made the test fixtures, and 4.57.5) and torch; put this folder on sys.path.
# Without transformers installed, scripts/check-hf-token-classification.sh shows how a transformers
# source tree is imported instead (bench/hf_reference.py's stand-ins).
"""PyTorch Perceiver for token classification (named-entity recognition, part-of-speech tagging, ...)."""

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import CrossEntropyLoss

from transformers.models.perceiver.modeling_perceiver import (
    PerceiverBasicDecoder,
    PerceiverModel,
    PerceiverPreTrainedModel,
    PerceiverTextPreprocessor,
)

try:
    from transformers.utils import ModelOutput
except ImportError:  # transformers < 4.19
    from transformers.file_utils import ModelOutput


__all__ = ["PerceiverForTokenClassification", "PerceiverTokenClassifierOutput"]


@dataclass
class PerceiverTokenClassifierOutput(ModelOutput):
    """
    Base class for outputs of Perceiver token classification models.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
            Mean cross-entropy over the positions whose label is not -100.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, config.num_labels)`):
            Classification scores (before SoftMax), one row per input position.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            The latents after the cross-attention and after each self-attention layer, each of shape
            `(batch_size, num_latents, d_latents)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The self-attention weights of the encoder.
        cross_attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The encoder's cross-attention weights, then the decoder's.
    """

    loss: Optional[torch.FloatTensor] = None
    logits: torch.FloatTensor = None
    hidden_states: Optional[Tuple[torch.FloatTensor]] = None
    attentions: Optional[Tuple[torch.FloatTensor]] = None
    cross_attentions: Optional[Tuple[torch.FloatTensor]] = None


class PerceiverForTokenClassification(PerceiverPreTrainedModel):
    """
    Example use of Perceiver for token classification tasks, such as named-entity recognition.

    The model is [`PerceiverForMaskedLM`] with a linear classifier in place of its embedding decoder: the text
    preprocessor, the encoder, and the same [`PerceiverBasicDecoder`] queried by `max_position_embeddings` trainable
    position encodings, whose output at each input position (`d_model` channels) the classifier maps to
    `config.num_labels` scores. Every parameter but `classifier.*` has the masked-LM head's name and shape, so
    `from_pretrained("deepmind/language-perceiver", num_labels=...)` starts from all of the pretrained model.

    Differences from transformers PR #15103 (which proposed this head):
    - `logits` has one row per *input* position, `(batch_size, sequence_length, num_labels)`, as every other
      `*ForTokenClassification` model in transformers; the PR returned all `max_position_embeddings` rows, so inputs
      and labels had to be padded to that length. The decoder's queries do not attend to each other, so the rows are
      the same values.
    - The loss is cross-entropy over the positions whose label is not -100 (as in transformers' current token
      classification heads); the PR also skipped positions whose `attention_mask` is 0.

    With `concat_preprocessed_input=True` in the config (not a field of [`PerceiverConfig`]; False when absent), the
    decoder's query for each position is its byte embedding concatenated to its position encoding
    ([`PerceiverBasicDecoder`]'s `concat_preprocessed_input`), with a query residual, so that each byte's label sees
    the byte itself and not only what the latents kept of it. The decoder's query side and the classifier are then
    `2 * d_model` wide. The decoder concatenates `max_position_embeddings` rows, so shorter inputs are padded to that
    length (masked out of the encoder's attention, which then gives them no weight) and the extra rows dropped.
    """

    def __init__(self, config):
        super().__init__(config)

        self.num_labels = config.num_labels
        self.concat_preprocessed_input = bool(getattr(config, "concat_preprocessed_input", False))
        text_preprocessor = PerceiverTextPreprocessor(config)
        # the decoder's query width: the position encoding, and with concat_preprocessed_input the byte embedding
        num_channels = text_preprocessor.num_channels * (2 if self.concat_preprocessed_input else 1)

        trainable_position_encoding_kwargs_decoder = {
            "num_channels": text_preprocessor.num_channels,
            "index_dims": config.max_position_embeddings,
        }

        self.perceiver = PerceiverModel(
            config,
            input_preprocessor=text_preprocessor,
            decoder=PerceiverBasicDecoder(
                config,
                output_num_channels=config.d_latents,
                output_index_dims=config.max_position_embeddings,  # we need to define the seq_len of the inputs beforehand
                num_channels=num_channels,
                qk_channels=8 * 32,
                v_channels=num_channels,
                num_heads=8,
                use_query_residual=self.concat_preprocessed_input,
                concat_preprocessed_input=self.concat_preprocessed_input,
                final_project=False,
                trainable_position_encoding_kwargs=trainable_position_encoding_kwargs_decoder,
            ),
        )
        self.classifier = nn.Linear(num_channels, config.num_labels)

        # Initialize weights and apply final processing
        self.post_init()

    def forward(
        self,
        inputs: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        labels: Optional[torch.Tensor] = None,
        return_dict: Optional[bool] = None,
        input_ids: Optional[torch.Tensor] = None,
    ) -> Union[Tuple, PerceiverTokenClassifierOutput]:
        r"""
        inputs (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Byte ids from [`PerceiverTokenizer`], `sequence_length <= config.max_position_embeddings`.
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Labels for computing the token classification loss. Indices should be in `[0, ..., config.num_labels - 1]`,
            or -100 for positions without a label (special tokens, padding, the continuation bytes of a word).

        Returns:

        Examples:

        ```python
        >>> from transformers import PerceiverTokenizer
        >>> from perceiver_token_classification import PerceiverForTokenClassification

        >>> tokenizer = PerceiverTokenizer.from_pretrained("deepmind/language-perceiver")
        >>> model = PerceiverForTokenClassification.from_pretrained("deepmind/language-perceiver", num_labels=9)

        >>> encoding = tokenizer("Hugging Face is in Paris", return_tensors="pt")
        >>> outputs = model(inputs=encoding.input_ids, attention_mask=encoding.attention_mask)
        >>> list(outputs.logits.shape)
        [1, 26, 9]
        ```"""
        if inputs is not None and input_ids is not None:
            raise ValueError("You cannot use both `inputs` and `input_ids`")
        elif inputs is None and input_ids is not None:
            inputs = input_ids

        return_dict = return_dict if return_dict is not None else self.config.use_return_dict

        seq_len = inputs.shape[1]
        padding = self.config.max_position_embeddings - seq_len
        if self.concat_preprocessed_input and padding > 0:
            if attention_mask is None:
                attention_mask = torch.ones(inputs.shape, dtype=torch.long, device=inputs.device)
            inputs = nn.functional.pad(inputs, (0, padding))
            attention_mask = nn.functional.pad(attention_mask, (0, padding))

        outputs = self.perceiver(
            inputs=inputs,
            attention_mask=attention_mask,
            head_mask=head_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )

        # The decoder answers each of its max_position_embeddings queries; query i is input position i.
        sequence_output = outputs.logits[:, :seq_len]
        logits = self.classifier(sequence_output)

        loss = None
        if labels is not None:
            loss_fct = CrossEntropyLoss()  # ignore_index=-100
            loss = loss_fct(logits.view(-1, self.num_labels), labels.to(logits.device).view(-1))

        if not return_dict:
            output = (logits,) + tuple(
                v for v in (outputs.hidden_states, outputs.attentions, outputs.cross_attentions) if v is not None
            )
            return ((loss,) + output) if loss is not None else output

        return PerceiverTokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
