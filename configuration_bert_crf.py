"""Configuration for BERT-CRF token classification.

This file travels with checkpoints as remote code: it imports nothing beyond transformers and the standard library
(the CRF head's settings live in configuration_crf.py, which travels beside it).
"""

from __future__ import annotations

from typing import Any

from transformers import BertConfig


try:
    from .bert_crf_utils import OUTSIDE, Span, split_tag, tags_to_spans  # noqa: F401  (re-exported)
    from .configuration_crf import (  # noqa: F401  (re-exported: older code imports them from here)
        CUSTOM_PIPELINE,
        LOSS_REDUCTIONS,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        CrfConfigMixin,
        allowed_transitions,
        detect_tag_scheme,
    )
except ImportError:  # imported as a top-level module
    from bert_crf_utils import OUTSIDE, Span, split_tag, tags_to_spans  # noqa: F401
    from configuration_crf import (  # noqa: F401
        CUSTOM_PIPELINE,
        LOSS_REDUCTIONS,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        CrfConfigMixin,
        allowed_transitions,
        detect_tag_scheme,
    )


class BertCrfConfig(CrfConfigMixin, BertConfig):
    r"""Configuration of [`BertCrfForTokenClassification`]: a [`BertConfig`] plus the CRF head's settings.

    Args:
        tag_scheme, constrain_decoding, loss_reduction, special_token_ids: the CRF head's settings, see
            [`CrfConfigMixin`].
        lexicon_types, lexicon_file, lexicon_combination, layer_mix: lexicon features and the layer mix, see
            [`CrfConfigMixin._set_encoder_settings`].
        kwargs: passed on to [`BertConfig`] (label maps, `classifier_dropout`, sizes, ...).
    """

    model_type = "bert_crf"

    def __init__(
        self,
        tag_scheme: str | None = None,
        constrain_decoding: bool = True,
        loss_reduction: str = "mean",
        special_token_ids: list[int] | None = None,
        lexicon_types: list[str] | None = None,
        lexicon_file: str | None = None,
        lexicon_combination: str = "input",
        layer_mix: bool = False,
        **kwargs: Any,
    ) -> None:
        self._set_crf_settings(tag_scheme, constrain_decoding, loss_reduction, special_token_ids)
        self._set_encoder_settings(lexicon_types, lexicon_file, lexicon_combination, layer_mix)
        super().__init__(**self._crf_pipeline_kwargs(kwargs))
        self._check_labels_and_dropout()
