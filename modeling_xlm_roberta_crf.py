"""XLM-RoBERTa-CRF for token classification (XLM-R, multilingual-e5): one family of the CRF tagger, whose shared
`__init__`, forward and head live in modeling_encoder_crf.py. Travels with every checkpoint as remote code: imports
only transformers and its siblings.
"""

from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaPreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin
except ImportError:  # in this repository
    from modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin


class XLMRobertaCrfConfig(EncoderCrfConfigMixin, XLMRobertaConfig):
    model_type = "xlm_roberta_crf"


class XLMRobertaCrfForTokenClassification(EncoderCrfMixin, XLMRobertaPreTrainedModel):
    """XLM-RoBERTa with a classifier and a CRF (mirrors [`XLMRobertaForTokenClassification`]); a SentencePiece
    vocabulary, read one unit per character for Chinese by the pipeline (docs/chinese.md). multilingual-e5 checkpoints
    are XLM-R bodies and load here."""

    config_class = XLMRobertaCrfConfig
    base_model_prefix = "roberta"
    encoder_class = XLMRobertaModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"lm_head\."]
