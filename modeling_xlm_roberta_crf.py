"""XLM-RoBERTa-CRF for token classification: a bare or masked-LM XLM-R checkpoint (and
multilingual-e5) loads into `self.roberta`.

One family of the CRF tagger (modeling_encoder_crf.py holds what every family shares). Travels with every
checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from transformers import XLMRobertaConfig
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaModel, XLMRobertaPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import EncoderCrfConfigMixin
    from .modeling_encoder_crf import EncoderCrfMixin
except ImportError:  # in this repository
    from configuration_crf import EncoderCrfConfigMixin
    from modeling_encoder_crf import EncoderCrfMixin


class XLMRobertaCrfConfig(EncoderCrfConfigMixin, XLMRobertaConfig):
    model_type = "xlm_roberta_crf"


class XLMRobertaCrfForTokenClassification(EncoderCrfMixin, XLMRobertaPreTrainedModel):
    config_class = XLMRobertaCrfConfig
    base_model_prefix = "roberta"
    encoder_class = XLMRobertaModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"lm_head\."]


XLMRobertaCrfConfig.register_for_auto_class()
XLMRobertaCrfForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
