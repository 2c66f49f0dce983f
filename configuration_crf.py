"""The CRF head's configuration, shared by every CRF tagger's config (BERT, ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA,
BiLSTM): [`CrfConfigMixin`] with the head's settings and checks, and [`EncoderCrfConfigMixin`], the whole config of
an encoder family's tagger but for the family's own config class. It re-exports the tag schemes and their legal
transitions from ner_tags.py, their one home.

This file travels with checkpoints as remote code: it imports nothing beyond transformers and the standard library.
"""

from __future__ import annotations

from typing import Any


# The tag-scheme grammar lives in ner_tags; configs, scripts and older code import it from here.
try:  # in a checkpoint folder (remote code)
    from .ner_tags import (  # noqa: F401
        OUTSIDE,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        Span,
        allowed_transitions,
        detect_tag_scheme,
        split_tag,
        tags_to_spans,
    )
except ImportError:  # in this repository
    from ner_tags import (  # noqa: F401
        OUTSIDE,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        Span,
        allowed_transitions,
        detect_tag_scheme,
        split_tag,
        tags_to_spans,
    )


LOSS_REDUCTIONS = ("mean", "sum", "token_mean")
# Where matched lexicon words enter an encoder tagger: added to the input embeddings (the encoder learns how to use
# them), or as a learned bias on the emission scores. Adding them to the last hidden states, or concatenating them
# there, before the linear classifier is a linear function of the features too: the same model class as "emissions".
LEXICON_COMBINATIONS = ("input", "emissions")
# Features are packed as bits of one int64 per token (4 positions x types), so that they pad and export like ids.
MAX_LEXICON_TYPES = 15


CUSTOM_PIPELINE = {
    "impl": "pipeline_bert_crf.CrfTokenClassificationPipeline",
    "pt": ["AutoModelForTokenClassification"],
    "tf": [],
    "type": "text",
}


class CrfConfigMixin:
    r"""The CRF head's settings and checks, shared by every CRF tagger's config. A config subclasses it and its
    family's config, takes these four keyword arguments, calls `_set_crf_settings` before and
    `_check_labels_and_dropout` after the family's `__init__`, and registers the CRF pipeline (see [`BertCrfConfig`]).

    Args:
        tag_scheme (`str`, *optional*):
            One of "BIO", "IOB1", "BIOES", "BMES" or "none". Detected from the label names when not given
            (see `detect_tag_scheme`); "none" disables decoding constraints.
        constrain_decoding (`bool`, defaults to `True`):
            Whether Viterbi decoding and marginals are restricted to the scheme's legal transitions, so that
            paths such as O -> I-PER or B-PER -> I-LOC are never produced. Training likelihood is unconstrained.
        loss_reduction (`str`, defaults to `"mean"`):
            How the per-sentence CRF negative log-likelihoods are reduced: "mean" (over sentences that have at least
            one labelled token), "sum", or "token_mean" (over labelled tokens).
        special_token_ids (`list[int]`, *optional*):
            Ids that never enter the CRF chain when the forward pass gets neither labels nor a word-start mask.
            When unset, the first and the last attended positions ([CLS] and [SEP], <s> and </s>) are left out.
        confidence_temperature (`float`, defaults to `1.0`):
            Every CRF potential is divided by it before the marginals that score tags and entities (fitted on a dev
            split by run_ner.py's calibration). Tags do not depend on it. Read from `kwargs` (any config takes it)
            and checked by `_check_labels_and_dropout`.
        mistake_temperature (`float`, defaults to `1.0`):
            The same for the probability of a text's whole decoded path, whose complement is the text's mistake
            probability (fitted on the dev split by the same calibration: one temperature cannot calibrate both,
            the entity scores and the whole path's). Read and checked like `confidence_temperature`.
    """

    def _set_crf_settings(
        self,
        tag_scheme: str | None,
        constrain_decoding: bool,
        loss_reduction: str,
        special_token_ids: list[int] | None,
    ) -> None:
        if tag_scheme is not None and tag_scheme not in TAG_SCHEMES:
            raise ValueError(f"tag_scheme must be one of {TAG_SCHEMES} or None, got {tag_scheme!r}")
        if not isinstance(constrain_decoding, bool):
            raise ValueError(f"constrain_decoding must be a bool, got {constrain_decoding!r}")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
        if special_token_ids is not None and not all(isinstance(i, int) for i in special_token_ids):
            raise ValueError(f"special_token_ids must be a list of ints, got {special_token_ids!r}")
        self.tag_scheme = tag_scheme
        self.constrain_decoding = constrain_decoding
        self.loss_reduction = loss_reduction
        self.special_token_ids = list(special_token_ids) if special_token_ids is not None else None

    def _set_encoder_settings(
        self,
        lexicon_types: list[str] | None,
        lexicon_file: str | None,
        lexicon_combination: str,
        layer_mix: bool,
    ) -> None:
        """The encoder taggers' options beyond the CRF: lexicon features and a learned mix of the encoder's layers.

        Args:
            lexicon_types: the word types of the lexicon whose matches are the model's extra input (e.g. `["LOC",
                "ORG", "PER", "WORD"]`); `None` for a model without a lexicon. Each character gets, per type, whether
                a lexicon word of that type begins, continues, ends or is it (`ner_lexicon.lexicon_bits`).
            lexicon_file: the file beside the weights that holds the lexicon (`lexicon.tsv`), set with
                `lexicon_types`.
            lexicon_combination: one of LEXICON_COMBINATIONS: "input" adds a learned embedding of the features to
                the input embeddings, "emissions" adds a learned score per label to the emissions.
            layer_mix: whether the classifier reads a learned softmax-weighted sum of every layer's states (and the
                embeddings'), scaled by a learned factor, instead of the last layer's.
        """
        if lexicon_types is not None:
            if (
                not isinstance(lexicon_types, (list, tuple))
                or not lexicon_types
                or not all(isinstance(t, str) and t for t in lexicon_types)
                or len(set(lexicon_types)) != len(lexicon_types)
            ):
                raise ValueError(f"lexicon_types must be a list of distinct non-empty strings, got {lexicon_types!r}")
            if len(lexicon_types) > MAX_LEXICON_TYPES:
                raise ValueError(
                    f"lexicon_types holds at most {MAX_LEXICON_TYPES} types, got {len(lexicon_types)}: "
                    f"{lexicon_types!r}"
                )
            if not isinstance(lexicon_file, str) or not lexicon_file:
                raise ValueError(
                    f"lexicon_file must name the lexicon's file when lexicon_types is set, got {lexicon_file!r}"
                )
        if lexicon_combination not in LEXICON_COMBINATIONS:
            raise ValueError(f"lexicon_combination must be one of {LEXICON_COMBINATIONS}, got {lexicon_combination!r}")
        if not isinstance(layer_mix, bool):
            raise ValueError(f"layer_mix must be a bool, got {layer_mix!r}")
        self.lexicon_types = list(lexicon_types) if lexicon_types is not None else None
        self.lexicon_file = lexicon_file if lexicon_types is not None else None
        self.lexicon_combination = lexicon_combination
        self.layer_mix = layer_mix

    @property
    def num_lexicon_features(self) -> int:
        """How many lexicon features each token has: 4 positions (B, M, E, S) per lexicon type; 0 without one."""
        return 4 * len(self.lexicon_types) if getattr(self, "lexicon_types", None) else 0

    def _crf_pipeline_kwargs(self, kwargs: dict) -> dict:
        """`kwargs` with the CRF pipeline registered: `pipeline("token-classification", model=...,
        trust_remote_code=True)` then decodes with the CRF."""
        kwargs.setdefault("custom_pipelines", {"token-classification": dict(CUSTOM_PIPELINE)})
        return kwargs

    def _check_labels_and_dropout(self) -> None:
        for name in ("confidence_temperature", "mistake_temperature"):
            temperature = getattr(self, name, 1.0)
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
                raise ValueError(f"{name} must be a positive number, got {temperature!r}")
            setattr(self, name, float(temperature))
        if self.id2label is not None and not self.label2id:
            self.label2id = {label: i for i, label in self.id2label.items()}
        classifier_dropout = getattr(self, "classifier_dropout", None)
        if classifier_dropout is not None and not 0.0 <= classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {classifier_dropout!r}")

    @property
    def resolved_tag_scheme(self) -> str:
        """The tag scheme in force: `tag_scheme` if set, else the one detected from `id2label`."""
        if self.tag_scheme is not None:
            return self.tag_scheme
        return detect_tag_scheme([self.id2label[i] for i in sorted(self.id2label)])

    def allowed_transitions(self) -> tuple[list[bool], list[bool], list[list[bool]]]:
        """The legal (start, end, transition) tables for this config's labels; everything when unconstrained."""
        scheme = self.resolved_tag_scheme if self.constrain_decoding else "none"
        return allowed_transitions(self.id2label, scheme)


class EncoderCrfConfigMixin(CrfConfigMixin):
    r"""The config of an encoder family's CRF tagger, but for the family's config class: a family's config is

        class RobertaCrfConfig(EncoderCrfConfigMixin, RobertaConfig):
            model_type = "roberta_crf"

    Args:
        tag_scheme, constrain_decoding, loss_reduction, special_token_ids: the CRF head's settings, see
            [`CrfConfigMixin`].
        lexicon_types, lexicon_file, lexicon_combination, layer_mix: lexicon features and the layer mix, see
            [`CrfConfigMixin._set_encoder_settings`].
        kwargs: passed on to the family's config (label maps, `classifier_dropout`, sizes, ...).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # transformers turns a config class without an `__init__` of its own into a dataclass whose generated
        # `__init__` would replace this one: each family's config gets it as its own before that happens.
        if "__init__" not in cls.__dict__:
            cls.__init__ = EncoderCrfConfigMixin.__init__
        super().__init_subclass__(**kwargs)

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
