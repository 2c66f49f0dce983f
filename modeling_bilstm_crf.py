"""BiLSTM-CRF for token classification: token embeddings, a bidirectional LSTM, a linear classifier and the CRF of
modeling_crf.py. The student of distill.py: it reads its teacher's tokenizer output, so it works with the same
pipeline, tagging command and ONNX export.

Travels with every checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .configuration_bilstm_crf import BiLstmCrfConfig
    from .crf_capture import _is_capturing
    from .modeling_crf import CRF
    from .modeling_crf_tagger import CrfTaggingMixin, CrfTokenClassifierOutput
except ImportError:  # in this repository
    from configuration_bilstm_crf import BiLstmCrfConfig
    from crf_capture import _is_capturing
    from modeling_crf import CRF
    from modeling_crf_tagger import CrfTaggingMixin, CrfTokenClassifierOutput

try:
    from transformers import initialization as init
except ImportError:  # transformers < 5
    from torch.nn import init


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first `lengths[b]` steps of each row of `x` `(batch, seq, dim)`, leaving the padding in place.
    Its own inverse."""
    positions = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, seq)
    lengths = lengths.unsqueeze(1)  # (batch, 1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (batch, seq)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


class BiLstmCrfPreTrainedModel(PreTrainedModel):
    config_class = BiLstmCrfConfig
    base_model_prefix = "bilstm"
    accepts_loss_kwargs = False

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -self.config.initializer_range, self.config.initializer_range)
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            bound = module.hidden_size**-0.5
            for name, param in module.named_parameters():
                init.uniform_(param, -bound, bound)
        elif isinstance(module, CRF):
            init.uniform_(module.start_transitions, -0.1, 0.1)
            init.uniform_(module.end_transitions, -0.1, 0.1)
            init.uniform_(module.transitions, -0.1, 0.1)
            module.follow_config(self.config)


class BiLstmCrfForTokenClassification(CrfTaggingMixin, BiLstmCrfPreTrainedModel):
    """Embeddings, a bidirectional LSTM (one forward and one backward LSTM per layer, each reading only its row's
    tokens: the backward one runs on the row reversed within its length, so right padding never reaches a real
    token), a linear classifier and a CRF over the chain of [`CrfTaggingMixin`]. Input must be right-padded."""

    def __init__(self, config: BiLstmCrfConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        sizes = [config.embedding_size] + [2 * config.hidden_size] * (config.num_hidden_layers - 1)
        self.forward_lstms = nn.ModuleList(nn.LSTM(n, config.hidden_size, batch_first=True) for n in sizes)
        self.backward_lstms = nn.ModuleList(nn.LSTM(n, config.hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.crf = CRF(config.num_labels, batch_first=True)
        self.crf.follow_config(config)  # as _init_weights does: see EncoderCrfMixin
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def emissions(
        self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **kwargs
    ) -> torch.Tensor:
        """Emission scores `(batch, seq, labels)` alone, without decoding. Other keyword arguments (the
        `token_type_ids` a BERT tokenizer returns) are ignored."""
        return self._emissions_and_states(input_ids, attention_mask)[0]

    def _emissions_and_states(
        self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Emission scores and the hidden states: the embeddings', then each BiLSTM layer's `(batch, seq, 2 *
        hidden)`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.long().sum(1)  # (batch,)
        if not _is_capturing():
            prefix = torch.arange(input_ids.size(1), device=input_ids.device) < lengths.unsqueeze(1)  # (batch, seq)
            if not torch.equal(prefix, attention_mask.bool()):
                raise ValueError(
                    "BiLstmCrfForTokenClassification needs right-padded input: each attention_mask row "
                    "must be ones, then zeros"
                )
        hidden = self.dropout(self.embeddings(input_ids))  # (batch, seq, embedding)
        states = [hidden]
        for forward_lstm, backward_lstm in zip(self.forward_lstms, self.backward_lstms):
            ahead, _ = forward_lstm(hidden)  # (batch, seq, hidden)
            behind, _ = backward_lstm(reverse_padded(hidden, lengths))
            hidden = self.dropout(torch.cat([ahead, reverse_padded(behind, lengths)], dim=2))  # (batch, seq, 2 hidden)
            states.append(hidden)
        return self.classifier(hidden), tuple(states)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        word_start_mask: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> CrfTokenClassifierOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids, -100 at positions outside the CRF chain (special tokens, padding, continuation sub-tokens).
        word_start_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 at the positions to tag (first sub-token of each word), used when no labels are given.
        output_hidden_states (`bool`, *optional*):
            Also return the embeddings' and every BiLSTM layer's states (`config.output_hidden_states` by default).
        """
        if input_ids is None:
            raise ValueError("BiLstmCrfForTokenClassification needs input_ids")
        logits, states = self._emissions_and_states(input_ids, attention_mask)  # (batch, seq, labels), ...
        loss, predictions = self.crf_outputs(logits, input_ids, attention_mask, labels, word_start_mask)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        output = CrfTokenClassifierOutput(
            loss=loss, logits=logits, predictions=predictions, hidden_states=states if output_hidden_states else None
        )
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        return output if return_dict else output.to_tuple()


BiLstmCrfConfig.register_for_auto_class()
BiLstmCrfForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["BiLstmCrfForTokenClassification", "BiLstmCrfPreTrainedModel", "reverse_padded"]
