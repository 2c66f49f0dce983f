"""ERNIE-CRF for token classification (ERNIE 3.0): one family of the CRF tagger, whose shared `__init__`, forward
and head live in modeling_encoder_crf.py. Travels with every checkpoint as remote code: imports only transformers
and its siblings.
"""

from transformers import ErnieConfig, ErnieModel, ErniePreTrainedModel


try:  # in a checkpoint folder (remote code)
    from .modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin
except ImportError:  # in this repository
    from modeling_encoder_crf import EncoderCrfConfigMixin, EncoderCrfMixin


class ErnieCrfConfig(EncoderCrfConfigMixin, ErnieConfig):
    model_type = "ernie_crf"


class ErnieCrfForTokenClassification(EncoderCrfMixin, ErniePreTrainedModel):
    """ERNIE with a classifier and a CRF (mirrors [`ErnieForTokenClassification`]). ERNIE 3.0 checkpoints
    (`use_task_id`) keep their task-type embeddings: the forward passes `task_type_ids` on to the body (zeros when
    not given, as the stock classifier does)."""

    config_class = ErnieCrfConfig
    base_model_prefix = "ernie"
    encoder_class = ErnieModel
    _keys_to_ignore_on_load_unexpected = [r"pooler", r"cls\."]
