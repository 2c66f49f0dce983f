"""ELECTRA-CRF for token classification: one family of the CRF tagger, whose shared `__init__`, forward and head
live in modeling_encoder_crf.py. Travels with every checkpoint as remote code: imports only torch, transformers and
its siblings.
"""

from torch import nn
from transformers import ElectraConfig, ElectraModel, ElectraPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin
except ImportError:  # in this repository
    from modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin


class ElectraCrfConfig(EncoderCrfConfigMixin, ElectraConfig):
    model_type = "electra_crf"


class ElectraCrfForTokenClassification(EncoderCrfMixin, ElectraPreTrainedModel):
    """ELECTRA with a classifier and a CRF (mirrors [`ElectraForTokenClassification`]): a bare checkpoint, or its
    discriminator (`ElectraForPreTraining`) or generator (`ElectraForMaskedLM`), loads into `self.electra`, their
    heads left unused."""

    config_class = ElectraCrfConfig
    base_model_prefix = "electra"
    encoder_class = ElectraModel
    encoder_kwargs = {}  # ElectraModel has no pooler
    _keys_to_ignore_on_load_unexpected = [
        r"generator_predictions\.",
        r"generator_lm_head\.",
        r"discriminator_predictions\.",
    ]

    def embedding_modules(self) -> list[nn.Module]:
        """The embeddings and, when they are narrower than the hidden states, their projection."""
        projection = getattr(self.electra, "embeddings_project", None)
        return [self.electra.embeddings, *([projection] if projection is not None else [])]
