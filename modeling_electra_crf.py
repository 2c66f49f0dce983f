"""ELECTRA-CRF for token classification: a bare ELECTRA checkpoint, or its
discriminator or generator (their heads left unused), loads into `self.electra`.

One family of the CRF tagger (modeling_encoder_crf.py holds what every family shares). Travels with every
checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from torch import nn
from transformers import ElectraConfig
from transformers.models.electra.modeling_electra import ElectraModel, ElectraPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import EncoderCrfConfigMixin
    from .modeling_encoder_crf import EncoderCrfMixin
except ImportError:  # in this repository
    from configuration_crf import EncoderCrfConfigMixin
    from modeling_encoder_crf import EncoderCrfMixin


class ElectraCrfConfig(EncoderCrfConfigMixin, ElectraConfig):
    model_type = "electra_crf"


class ElectraCrfForTokenClassification(EncoderCrfMixin, ElectraPreTrainedModel):
    config_class = ElectraCrfConfig
    base_model_prefix = "electra"
    encoder_class = ElectraModel
    _keys_to_ignore_on_load_unexpected = [
        r"generator_predictions\.",
        r"generator_lm_head\.",
        r"discriminator_predictions\.",
    ]
    encoder_kwargs = {}  # ElectraModel has no pooler

    def embedding_modules(self) -> list[nn.Module]:
        """The embeddings and, when they are narrower than the hidden states, their projection."""
        projection = getattr(self.electra, "embeddings_project", None)
        return [self.electra.embeddings, *([projection] if projection is not None else [])]


ElectraCrfConfig.register_for_auto_class()
ElectraCrfForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
