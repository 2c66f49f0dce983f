"""RoBERTa-CRF for token classification: one family of the CRF tagger, whose shared `__init__`, forward and head
live in modeling_encoder_crf.py. Travels with every checkpoint as remote code: imports only transformers and its
siblings.
"""

from transformers import RobertaConfig, RobertaModel, RobertaPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin
except ImportError:  # in this repository
    from modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin


class RobertaCrfConfig(EncoderCrfConfigMixin, RobertaConfig):
    model_type = "roberta_crf"


class RobertaCrfForTokenClassification(EncoderCrfMixin, RobertaPreTrainedModel):
    """RoBERTa with a classifier and a CRF (mirrors [`RobertaForTokenClassification`]). Position ids count from
    `config.pad_token_id + 1`, as the body computes them from `input_ids`; no token type ids are needed."""

    config_class = RobertaCrfConfig
    base_model_prefix = "roberta"
    encoder_class = RobertaModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"lm_head\."]
