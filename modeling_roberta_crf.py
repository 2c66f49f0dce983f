"""RoBERTa-CRF for token classification: a bare or masked-LM RoBERTa checkpoint
loads into `self.roberta`; position ids count from `config.pad_token_id + 1`, as the body computes them.

One family of the CRF tagger (modeling_encoder_crf.py holds what every family shares). Travels with every
checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from transformers import RobertaConfig
from transformers.models.roberta.modeling_roberta import RobertaModel, RobertaPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import EncoderCrfConfigMixin
    from .modeling_encoder_crf import EncoderCrfMixin
except ImportError:  # in this repository
    from configuration_crf import EncoderCrfConfigMixin
    from modeling_encoder_crf import EncoderCrfMixin


class RobertaCrfConfig(EncoderCrfConfigMixin, RobertaConfig):
    model_type = "roberta_crf"


class RobertaCrfForTokenClassification(EncoderCrfMixin, RobertaPreTrainedModel):
    config_class = RobertaCrfConfig
    base_model_prefix = "roberta"
    encoder_class = RobertaModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"lm_head\."]


RobertaCrfConfig.register_for_auto_class()
RobertaCrfForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
