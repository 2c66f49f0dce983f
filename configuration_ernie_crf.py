"""Configuration for ERNIE-CRF token classification.

This file travels with checkpoints as remote code: it imports nothing beyond transformers and its siblings.
"""

from __future__ import annotations

from typing import Any

from transformers import ErnieConfig


try:
    from .configuration_crf import CrfConfigMixin
except ImportError:  # imported as a top-level module
    from configuration_crf import CrfConfigMixin


class ErnieCrfConfig(CrfConfigMixin, ErnieConfig):
    r"""Configuration of [`ErnieCrfForTokenClassification`]: an [`ErnieConfig`] plus the CRF head's settings
    (`tag_scheme`, `constrain_decoding`, `loss_reduction`, `special_token_ids`: see [`CrfConfigMixin`]; the
    lexicon and layer-mix options: see `CrfConfigMixin._set_encoder_settings`); `kwargs` go
    to [`ErnieConfig`] (label maps, `classifier_dropout`, sizes, ...).
    """

    model_type = "ernie_crf"

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
