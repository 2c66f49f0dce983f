"""ERNIE-CRF for token classification: an ERNIE encoder, a linear classifier and a linear-chain CRF.

This file travels with every checkpoint as remote code, so it imports nothing beyond torch, transformers and its
siblings: its configuration file and the CRF head (modeling_crf.py), which save_pretrained copies beside it.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers.models.ernie.modeling_ernie import ErnieModel, ErniePreTrainedModel


try:
    from .configuration_ernie_crf import ErnieCrfConfig
    from .modeling_crf import BertCrfTokenClassifierOutput, EncoderCrfMixin, init_crf_weights
except ImportError:  # imported as a top-level module (tests, scripts in this repo)
    from configuration_ernie_crf import ErnieCrfConfig
    from modeling_crf import BertCrfTokenClassifierOutput, EncoderCrfMixin, init_crf_weights


class ErnieCrfForTokenClassification(EncoderCrfMixin, ErniePreTrainedModel):
    """ERNIE with a linear classifier and a CRF on top, for named-entity recognition (the chain: see
    [`CrfTaggingMixin`]). Mirrors [`ErnieForTokenClassification`]: a bare or masked-LM ERNIE checkpoint loads into
    `self.ernie`. ERNIE 3.0 checkpoints (`use_task_id`) keep their task-type embeddings."""

    config_class = ErnieCrfConfig
    base_model_prefix = "ernie"
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"cls\."]

    def __init__(self, config: ErnieCrfConfig) -> None:
        super().__init__(config)
        self.ernie = ErnieModel(config, add_pooling_layer=False)
        self.build_head(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        init_crf_weights(module, self.config)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        task_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        word_start_mask: Optional[torch.Tensor] = None,
        lexicon_features: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> BertCrfTokenClassifierOutput | tuple:
        r"""
        task_type_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Task-type ids for the task-type embeddings of checkpoints with `config.use_task_id` (ERNIE 3.0); zeros
            when not given, as in [`ErnieForTokenClassification`].
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids in `[0, num_labels)`, -100 at positions outside the CRF chain (special tokens, padding,
            continuation sub-tokens).
        word_start_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 at the positions to tag (first sub-token of each word), used when no labels are given.
        lexicon_features (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            A lexicon model's features of each position as bits (see `bert_crf_utils.lexicon_bits`); all off
            when not given.
        kwargs:
            Passed on to the encoder, as the family's stock token classifier does (attention options). Padding-free
            batches (`cu_seq_lens_*`) are a ValueError: the CRF chain would cross sentence boundaries.
        """
        return self.crf_forward(
            input_ids,
            attention_mask,
            labels,
            word_start_mask,
            output_attentions,
            output_hidden_states,
            return_dict,
            lexicon_features=lexicon_features,
            token_type_ids=token_type_ids,
            task_type_ids=task_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )


# save_pretrained then writes this file, the config's and their siblings next to the weights, with an `auto_map` in
# config.json, so `AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)` works anywhere.
ErnieCrfConfig.register_for_auto_class()
ErnieCrfForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["ErnieCrfForTokenClassification"]
