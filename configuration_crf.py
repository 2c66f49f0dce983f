"""The CRF head's configuration, shared by every CRF tagger's config (BERT, ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA,
BiLSTM): tag schemes, their legal transitions, and [`CrfConfigMixin`] with the head's settings and checks.

This file travels with checkpoints as remote code: it imports nothing beyond transformers and the standard library.
"""

from __future__ import annotations

try:
    from .bert_crf_utils import OUTSIDE, Span, split_tag, tags_to_spans  # noqa: F401  (re-exported)
except ImportError:  # imported as a top-level module
    from bert_crf_utils import OUTSIDE, Span, split_tag, tags_to_spans  # noqa: F401


TAG_SCHEMES = ("BIO", "IOB1", "BIOES", "BMES", "none")
LOSS_REDUCTIONS = ("mean", "sum", "token_mean")

# Prefix letters each scheme uses for entity tags; "O" is shared by all of them.
SCHEME_PREFIXES = {
    "BIO": frozenset("BI"),
    "IOB1": frozenset("BI"),
    "BIOES": frozenset("BIES"),
    "BMES": frozenset("BMES"),
}


def detect_tag_scheme(labels: list[str]) -> str:
    """Guess the tag scheme from label names.

    BIO and IOB1 use the same prefixes, so "B"/"I" labels are reported as BIO (the common case); pass IOB1
    explicitly for CoNLL-2003-style data. Labels that fit no scheme give "none" (no decoding constraints).
    """
    prefixes = set()
    for label in labels:
        parts = split_tag(label)
        if parts is None:
            return "none"
        if parts[0] != OUTSIDE:
            prefixes.add(parts[0])
    if not prefixes:
        return "none"
    if prefixes <= SCHEME_PREFIXES["BIO"]:
        return "BIO"
    if prefixes <= SCHEME_PREFIXES["BIOES"]:
        return "BIOES"
    if prefixes <= SCHEME_PREFIXES["BMES"]:
        return "BMES"
    return "none"


def _is_allowed(scheme: str, prev: tuple[str, str] | None, cur: tuple[str, str] | None) -> bool:
    """Whether tag `cur` may follow tag `prev` under `scheme`; `prev`/`cur` None mean sequence start/end."""
    if scheme == "none":
        return True
    inside = "M" if scheme == "BMES" else "I"
    if scheme == "BIO":
        if cur is not None and cur[0] == "I":
            return prev is not None and prev[0] in "BI" and prev[1] == cur[1]
        return True
    if scheme == "IOB1":
        # IOB1 uses B- only to split two adjacent entities of the same type.
        if cur is not None and cur[0] == "B":
            return prev is not None and prev[0] in "BI" and prev[1] == cur[1]
        return True
    # BIOES / BMES: an entity opened by B or continued by I/M must be continued or closed by the same type.
    prev_open = prev is not None and prev[0] in ("B", inside)
    cur_continues = cur is not None and cur[0] in (inside, "E")
    if prev_open:
        return cur_continues and cur[1] == prev[1]
    return not cur_continues


def allowed_transitions(
    id2label: dict[int, str], scheme: str
) -> tuple[list[bool], list[bool], list[list[bool]]]:
    """Legal (start, end, transition) tables for the labels `id2label` under `scheme`.

    Returns `start[j]` (tag j may open a sentence), `end[i]` (tag i may close one) and `trans[i][j]` (j may follow i).
    Labels that do not parse under the scheme raise a ValueError.
    """
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"tag_scheme must be one of {TAG_SCHEMES}, got {scheme!r}")
    num = len(id2label)
    tags = [id2label[i] for i in range(num)]
    parsed = [split_tag(t) for t in tags]
    if scheme != "none":
        allowed = SCHEME_PREFIXES[scheme] | {OUTSIDE}
        for tag, parts in zip(tags, parsed):
            if parts is None or parts[0] not in allowed:
                raise ValueError(f"label {tag!r} is not a {scheme} tag (expected O or one of {sorted(allowed - {OUTSIDE})}-TYPE)")
    start = [_is_allowed(scheme, None, p) for p in parsed]
    end = [_is_allowed(scheme, p, None) for p in parsed]
    trans = [[_is_allowed(scheme, p, q) for q in parsed] for p in parsed]
    return start, end, trans


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
        self, tag_scheme: str | None, constrain_decoding: bool, loss_reduction: str, special_token_ids: list[int] | None
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
