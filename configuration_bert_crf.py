"""Configuration for BERT-CRF token classification: a [`BertConfig`] plus the CRF head's settings (see
configuration_crf.py, which travels beside it). Travels with every checkpoint as remote code: imports only
transformers and its siblings.
"""

from __future__ import annotations

from transformers import BertConfig


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import (  # noqa: F401  (re-exported: scripts and older code import them from here)
        CUSTOM_PIPELINE,
        LOSS_REDUCTIONS,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        CrfConfigMixin,
        EncoderCrfConfigMixin,
        allowed_transitions,
        detect_tag_scheme,
    )
except ImportError:  # in this repository
    from configuration_crf import (  # noqa: F401
        CUSTOM_PIPELINE,
        LOSS_REDUCTIONS,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        CrfConfigMixin,
        EncoderCrfConfigMixin,
        allowed_transitions,
        detect_tag_scheme,
    )


class BertCrfConfig(EncoderCrfConfigMixin, BertConfig):
    r"""Configuration of [`BertCrfForTokenClassification`]: a [`BertConfig`] plus the CRF head's settings.

    Args:
        tag_scheme, constrain_decoding, loss_reduction, special_token_ids: the CRF head's settings, see
            [`CrfConfigMixin`].
        lexicon_types, lexicon_file, lexicon_combination, layer_mix: lexicon features and the layer mix, see
            [`CrfConfigMixin._set_encoder_settings`].
        kwargs: passed on to [`BertConfig`] (label maps, `classifier_dropout`, sizes, ...).
    """

    model_type = "bert_crf"


__all__ = ["BertCrfConfig"]
