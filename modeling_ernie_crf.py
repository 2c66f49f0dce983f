"""ERNIE-CRF for token classification: a bare or masked-LM ERNIE checkpoint loads into
`self.ernie`; ERNIE 3.0 checkpoints (`use_task_id`) keep their task-type embeddings (`task_type_ids`, zeros
when not given).

One family of the CRF tagger (modeling_encoder_crf.py holds what every family shares). Travels with every
checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from transformers import ErnieConfig
from transformers.models.ernie.modeling_ernie import ErnieModel, ErniePreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import EncoderCrfConfigMixin
    from .modeling_encoder_crf import EncoderCrfMixin
except ImportError:  # in this repository
    from configuration_crf import EncoderCrfConfigMixin
    from modeling_encoder_crf import EncoderCrfMixin


class ErnieCrfConfig(EncoderCrfConfigMixin, ErnieConfig):
    model_type = "ernie_crf"


class ErnieCrfForTokenClassification(EncoderCrfMixin, ErniePreTrainedModel):
    config_class = ErnieCrfConfig
    base_model_prefix = "ernie"
    encoder_class = ErnieModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"cls\."]


ErnieCrfConfig.register_for_auto_class()
ErnieCrfForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
