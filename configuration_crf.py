"""The CRF head's configuration, shared by every CRF tagger's config (BERT, ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA,
BiLSTM): [`CrfConfigMixin`] with the head's settings and checks. It re-exports the tag schemes and their legal
transitions from bert_crf_utils.py, their one home.

This file travels with checkpoints as remote code: it imports nothing beyond transformers and the standard library.
"""

from __future__ import annotations


# The tag-scheme grammar lives in bert_crf_utils; configs, scripts and older code import it from here.
try:
    from .bert_crf_utils import (  # noqa: F401  (re-exported)
        OUTSIDE,
        SCHEME_PREFIXES,
        TAG_SCHEMES,
        Span,
        allowed_transitions,
        detect_tag_scheme,
        split_tag,
        tags_to_spans,
    )
except ImportError:  # imported as a top-level module
    from bert_crf_utils import (  # noqa: F401
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


CUSTOM_PIPELINE = {
    "impl": "pipeline_bert_crf.BertCrfTokenClassificationPipeline",
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

    def _crf_pipeline_kwargs(self, kwargs: dict) -> dict:
        """`kwargs` with the CRF pipeline registered: `pipeline("token-classification", model=...,
        trust_remote_code=True)` then decodes with the CRF."""
        kwargs.setdefault("custom_pipelines", {"token-classification": dict(CUSTOM_PIPELINE)})
        return kwargs

    def _check_labels_and_dropout(self) -> None:
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
