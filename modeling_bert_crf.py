"""BERT-CRF for token classification: a BERT encoder, a linear classifier and a linear-chain CRF. A bare or
masked-LM BERT checkpoint (bert-base-chinese, MacBERT, RoBERTa-wwm-ext, MedBERT: BERT-shaped) loads into `self.bert`.

One family of the CRF tagger: modeling_encoder_crf.py holds what every family shares (`__init__`, forward, the
head), modeling_crf_tagger.py the chain, the loss and decoding, modeling_crf.py the CRF. Travels with every
checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from transformers import BertModel, BertPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .configuration_bert_crf import BertCrfConfig
    from .modeling_crf import CRF, FORBIDDEN_SCORE  # noqa: F401  (re-exported: scripts and older code import them)
    from .modeling_crf_tagger import BertCrfTokenClassifierOutput, CrfTaggingMixin, CrfTokenClassifierOutput  # noqa: F401
    from .modeling_encoder_crf import EncoderCrfMixin
except ImportError:  # in this repository
    from configuration_bert_crf import BertCrfConfig
    from modeling_crf import CRF, FORBIDDEN_SCORE  # noqa: F401
    from modeling_crf_tagger import BertCrfTokenClassifierOutput, CrfTaggingMixin, CrfTokenClassifierOutput  # noqa: F401
    from modeling_encoder_crf import EncoderCrfMixin


class BertCrfForTokenClassification(EncoderCrfMixin, BertPreTrainedModel):
    """BERT with a linear classifier and a CRF on top, for named-entity recognition. Mirrors
    [`BertForTokenClassification`]; the chain, the loss and decoding: see [`CrfTaggingMixin`]."""

    config_class = BertCrfConfig
    base_model_prefix = "bert"
    encoder_class = BertModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"cls\."]


__all__ = ["BertCrfForTokenClassification"]
