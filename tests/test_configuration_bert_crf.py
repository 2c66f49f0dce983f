"""Tests for configuration_bert_crf: tag-scheme detection, validation, serialization and transition tables."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from configuration_bert_crf import BertCrfConfig
from configuration_crf import LOSS_REDUCTIONS
from conftest import ID2LABEL, LABEL2ID, LABELS, TINY_BERT_KWARGS
from ner_tags import TAG_SCHEMES, allowed_transitions, detect_tag_scheme, split_tag


BIO_LABELS = LABELS  # O, B-PER, I-PER, B-LOC, I-LOC
BIOES_LABELS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
BMES_LABELS = ["O", "B-PER", "M-PER", "E-PER", "S-PER", "B-LOC", "M-LOC", "E-LOC", "S-LOC"]


def id2label_of(labels):
    return dict(enumerate(labels))


def tables_by_name(labels, scheme):
    """allowed_transitions as dicts keyed by label names, for readable assertions."""
    start, end, trans = allowed_transitions(id2label_of(labels), scheme)
    start_d = {labels[j]: start[j] for j in range(len(labels))}
    end_d = {labels[i]: end[i] for i in range(len(labels))}
    trans_d = {(labels[i], labels[j]): trans[i][j] for i in range(len(labels)) for j in range(len(labels))}
    return start_d, end_d, trans_d


# ----------------------------------------------------------------------------------------------------------------
# split_tag / detect_tag_scheme


@pytest.mark.parametrize(
    "label, expected",
    [
        ("O", ("O", "")),
        ("B-PER", ("B", "PER")),
        ("I-LOC", ("I", "LOC")),
        ("S_MISC", ("S", "MISC")),
        ("b-per", ("B", "per")),
        ("B-PER-X", ("B", "PER-X")),
        ("PER", None),
        ("BB-PER", None),
        ("B-", None),
        ("", None),
    ],
)
def test_split_tag(label, expected):
    assert split_tag(label) == expected


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO"),
        (["O", "B_PER", "I_PER"], "BIO"),
        (["O", "I-PER", "I-LOC"], "BIO"),  # IOB1 data without B- tags: still reported as BIO
        (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "BIOES"),
        (["O", "S-PER", "E-PER"], "BIOES"),
        (["B-PER", "M-PER", "E-PER", "S-PER"], "BMES"),
        (["O", "B-LOC", "M-LOC", "E-LOC", "S-LOC"], "BMES"),
        (["PER", "LOC", "O"], "none"),
        (["O"], "none"),
        (["O", "B-PER", "PERSON"], "none"),
        (["O", "B-PER", "X-PER"], "none"),
        (["O", "B-PER", "I-PER", "M-PER", "E-PER"], "none"),  # I and M mixed: no scheme has both
    ],
)
def test_detect_tag_scheme(labels, expected):
    assert detect_tag_scheme(labels) == expected


@pytest.mark.parametrize(
    "labels, expected",
    [(BIO_LABELS, "BIO"), (BIOES_LABELS, "BIOES"), (BMES_LABELS, "BMES"), (["PER", "LOC", "MISC"], "none")],
)
def test_config_resolves_detected_scheme(labels, expected):
    config = BertCrfConfig(id2label=id2label_of(labels), **TINY_BERT_KWARGS)
    assert config.tag_scheme is None
    assert config.resolved_tag_scheme == expected


def test_explicit_tag_scheme_wins_over_detection():
    config = BertCrfConfig(tag_scheme="IOB1", id2label=dict(ID2LABEL), **TINY_BERT_KWARGS)
    assert config.resolved_tag_scheme == "IOB1"


def test_default_labels_have_no_scheme():
    config = BertCrfConfig(num_labels=3, **TINY_BERT_KWARGS)
    assert config.num_labels == 3
    assert config.resolved_tag_scheme == "none"
    start, end, trans = config.allowed_transitions()
    assert all(start) and all(end) and all(all(row) for row in trans)


def test_label2id_derived_from_id2label():
    config = BertCrfConfig(id2label=dict(ID2LABEL), **TINY_BERT_KWARGS)
    assert config.label2id == LABEL2ID
    assert config.num_labels == len(LABELS)


def test_defaults():
    config = BertCrfConfig(**TINY_BERT_KWARGS)
    assert config.model_type == "bert_crf"
    assert config.tag_scheme is None
    assert config.constrain_decoding is True
    assert config.loss_reduction == "mean"
    assert config.special_token_ids is None


# ----------------------------------------------------------------------------------------------------------------
# Validation


def _assert_names(excinfo, *parts):
    message = str(excinfo.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("bad", ["BILOU", "bio", "", "None"])
def test_bad_tag_scheme(bad):
    with pytest.raises(ValueError) as excinfo:
        BertCrfConfig(tag_scheme=bad, **TINY_BERT_KWARGS)
    _assert_names(excinfo, "tag_scheme", repr(bad))


@pytest.mark.parametrize("bad", ["avg", "none", "MEAN", "token-mean"])
def test_bad_loss_reduction(bad):
    with pytest.raises(ValueError) as excinfo:
        BertCrfConfig(loss_reduction=bad, **TINY_BERT_KWARGS)
    _assert_names(excinfo, "loss_reduction", repr(bad))


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, "True"])
def test_bad_constrain_decoding(bad):
    with pytest.raises(ValueError) as excinfo:
        BertCrfConfig(constrain_decoding=bad, **TINY_BERT_KWARGS)
    _assert_names(excinfo, "constrain_decoding", repr(bad))


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, -1])
def test_bad_classifier_dropout(bad):
    with pytest.raises(ValueError) as excinfo:
        BertCrfConfig(classifier_dropout=bad, **TINY_BERT_KWARGS)
    _assert_names(excinfo, "classifier_dropout", repr(bad))


@pytest.mark.parametrize("good", [None, 0.0, 0.3, 0.99])
def test_good_classifier_dropout(good):
    assert BertCrfConfig(classifier_dropout=good, **TINY_BERT_KWARGS).classifier_dropout == good


def test_bad_special_token_ids():
    with pytest.raises(ValueError) as excinfo:
        BertCrfConfig(special_token_ids=[101, "102"], **TINY_BERT_KWARGS)
    _assert_names(excinfo, "special_token_ids", "'102'")


@pytest.mark.parametrize("scheme", TAG_SCHEMES)
@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_every_valid_choice_accepted(scheme, reduction):
    config = BertCrfConfig(tag_scheme=scheme, loss_reduction=reduction, **TINY_BERT_KWARGS)
    assert (config.tag_scheme, config.loss_reduction) == (scheme, reduction)


def test_allowed_transitions_bad_scheme():
    with pytest.raises(ValueError) as excinfo:
        allowed_transitions(dict(ID2LABEL), "BILOU")
    _assert_names(excinfo, "tag_scheme", "'BILOU'")


@pytest.mark.parametrize(
    "labels, scheme, bad_label",
    [
        (BIO_LABELS, "BMES", "I-PER"),
        (BIOES_LABELS, "BIO", "E-PER"),
        (BMES_LABELS, "BIOES", "M-PER"),
        (["O", "PER"], "BIO", "PER"),
    ],
)
def test_allowed_transitions_rejects_foreign_labels(labels, scheme, bad_label):
    with pytest.raises(ValueError) as excinfo:
        allowed_transitions(id2label_of(labels), scheme)
    _assert_names(excinfo, repr(bad_label), scheme)


def test_config_allowed_transitions_rejects_foreign_labels():
    config = BertCrfConfig(tag_scheme="BMES", id2label=dict(ID2LABEL), **TINY_BERT_KWARGS)
    with pytest.raises(ValueError, match=re.escape("'I-PER'")):
        config.allowed_transitions()


# ----------------------------------------------------------------------------------------------------------------
# Serialization


def test_to_dict_has_crf_fields():
    config = BertCrfConfig(
        tag_scheme="BIO", constrain_decoding=False, loss_reduction="sum", special_token_ids=[1, 2], **TINY_BERT_KWARGS
    )
    as_dict = config.to_dict()
    assert as_dict["model_type"] == "bert_crf"
    assert as_dict["tag_scheme"] == "BIO"
    assert as_dict["constrain_decoding"] is False
    assert as_dict["loss_reduction"] == "sum"
    assert as_dict["special_token_ids"] == [1, 2]
    again = BertCrfConfig.from_dict(as_dict)
    assert again.to_dict() == as_dict


@pytest.mark.parametrize(
    "fields",
    [
        dict(tag_scheme="IOB1", constrain_decoding=False, loss_reduction="token_mean", special_token_ids=[0, 2, 3]),
        dict(tag_scheme=None, constrain_decoding=True, loss_reduction="sum", special_token_ids=None),
        dict(tag_scheme="none", constrain_decoding=True, loss_reduction="mean", special_token_ids=[]),
    ],
)
def test_save_pretrained_round_trip(tmp_path, fields):
    config = BertCrfConfig(id2label=dict(ID2LABEL), label2id=dict(LABEL2ID), **fields, **TINY_BERT_KWARGS)
    config.save_pretrained(tmp_path)

    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["model_type"] == "bert_crf"
    for key, value in fields.items():
        assert on_disk[key] == value, key
    assert on_disk["id2label"] == {str(i): label for i, label in ID2LABEL.items()}
    assert on_disk["label2id"] == LABEL2ID

    loaded = BertCrfConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, BertCrfConfig)
    for key, value in fields.items():
        assert getattr(loaded, key) == value, key
    assert loaded.id2label == ID2LABEL  # integer keys again
    assert loaded.label2id == LABEL2ID
    assert loaded.num_labels == len(LABELS)
    assert loaded.resolved_tag_scheme == config.resolved_tag_scheme
    assert loaded.allowed_transitions() == config.allowed_transitions()
    assert loaded.hidden_size == TINY_BERT_KWARGS["hidden_size"]


# ----------------------------------------------------------------------------------------------------------------
# Transition tables: hand-checked examples


def test_bio_table_hand_checked():
    start, end, trans = tables_by_name(BIO_LABELS, "BIO")
    assert start == {"O": True, "B-PER": True, "I-PER": False, "B-LOC": True, "I-LOC": False}
    assert all(end.values())
    T, F = True, False
    # rows: previous tag, columns: next tag, in the order O, B-PER, I-PER, B-LOC, I-LOC
    expected = [
        [T, T, F, T, F],  # O -> I-* forbidden
        [T, T, T, T, F],  # B-PER -> I-LOC forbidden
        [T, T, T, T, F],  # I-PER -> I-LOC forbidden
        [T, T, F, T, T],  # B-LOC -> I-PER forbidden
        [T, T, F, T, T],  # I-LOC -> I-PER forbidden
    ]
    for i, prev in enumerate(BIO_LABELS):
        for j, cur in enumerate(BIO_LABELS):
            assert trans[prev, cur] == expected[i][j], (prev, cur)
    assert trans["O", "I-PER"] is False
    assert trans["B-PER", "I-LOC"] is False
    assert trans["B-PER", "I-PER"] is True


def test_iob1_table_hand_checked():
    start, end, trans = tables_by_name(BIO_LABELS, "IOB1")
    # B-X only separates two adjacent entities of type X, so it can never open a sentence.
    assert start == {"O": True, "B-PER": False, "I-PER": True, "B-LOC": False, "I-LOC": True}
    assert all(end.values())
    for prev in BIO_LABELS:
        for cur in BIO_LABELS:
            if cur.startswith("B-"):
                expected = prev in (f"B-{cur[2:]}", f"I-{cur[2:]}")
            else:
                expected = True
            assert trans[prev, cur] is expected, (prev, cur)
    assert trans["I-PER", "B-PER"] and trans["B-PER", "B-PER"]
    assert not trans["O", "B-PER"] and not trans["I-LOC", "B-PER"]
    assert trans["O", "I-PER"] and trans["I-LOC", "I-PER"]


def test_bioes_table_hand_checked():
    start, end, trans = tables_by_name(BIOES_LABELS, "BIOES")
    assert start == {
        "O": True, "B-PER": True, "I-PER": False, "E-PER": False, "S-PER": True,
        "B-LOC": True, "I-LOC": False, "E-LOC": False, "S-LOC": True,
    }  # fmt: skip
    assert end == {
        "O": True, "B-PER": False, "I-PER": False, "E-PER": True, "S-PER": True,
        "B-LOC": False, "I-LOC": False, "E-LOC": True, "S-LOC": True,
    }  # fmt: skip
    # After B-PER (and I-PER) only I-PER or E-PER.
    for prev in ("B-PER", "I-PER"):
        assert {cur for cur in BIOES_LABELS if trans[prev, cur]} == {"I-PER", "E-PER"}
    # After O, E-X or S-X: anything that opens (O, B, S), never I or E.
    for prev in ("O", "E-PER", "S-PER", "E-LOC", "S-LOC"):
        assert {cur for cur in BIOES_LABELS if trans[prev, cur]} == {"O", "B-PER", "S-PER", "B-LOC", "S-LOC"}
    assert not trans["O", "I-PER"] and not trans["S-PER", "E-PER"] and not trans["B-PER", "E-LOC"]


def test_bmes_table_hand_checked():
    start, end, trans = tables_by_name(BMES_LABELS, "BMES")
    assert not start["M-PER"] and not start["E-PER"] and start["B-PER"] and start["S-PER"] and start["O"]
    assert not end["B-PER"] and not end["M-PER"] and end["E-PER"] and end["S-PER"] and end["O"]
    for prev in ("B-PER", "M-PER"):
        assert {cur for cur in BMES_LABELS if trans[prev, cur]} == {"M-PER", "E-PER"}
    for prev in ("B-LOC", "M-LOC"):
        assert {cur for cur in BMES_LABELS if trans[prev, cur]} == {"M-LOC", "E-LOC"}
    # M without an open B of the same type is forbidden.
    for prev in ("O", "E-PER", "S-PER", "E-LOC", "S-LOC", "B-LOC", "M-LOC"):
        assert not trans[prev, "M-PER"], prev
    assert trans["E-PER", "B-LOC"] and trans["S-LOC", "S-PER"] and trans["O", "O"]


def test_none_scheme_allows_everything():
    start, end, trans = allowed_transitions(dict(ID2LABEL), "none")
    assert start == [True] * 5 and end == [True] * 5 and trans == [[True] * 5 for _ in range(5)]
    # Labels that parse under no scheme are fine with "none".
    start, end, trans = allowed_transitions({0: "PER", 1: "LOC"}, "none")
    assert start == [True, True] and trans == [[True, True], [True, True]]


def test_unconstrained_config_allows_everything():
    config = BertCrfConfig(constrain_decoding=False, id2label=dict(ID2LABEL), **TINY_BERT_KWARGS)
    start, end, trans = config.allowed_transitions()
    assert all(start) and all(end) and all(all(row) for row in trans)
    constrained = BertCrfConfig(id2label=dict(ID2LABEL), **TINY_BERT_KWARGS)
    assert constrained.allowed_transitions() == allowed_transitions(dict(ID2LABEL), "BIO")


# ----------------------------------------------------------------------------------------------------------------
# Transition tables: exhaustive check against chunk grammars, on every sequence of length <= 4


def _parts(tag):
    return ("O", "") if tag == "O" else tuple(tag.split("-", 1))


def grammar_bio(seq):
    """(O | B-X I-X*)*"""
    i = 0
    while i < len(seq):
        prefix, kind = _parts(seq[i])
        i += 1
        if prefix == "O":
            continue
        if prefix != "B":
            return False
        while i < len(seq) and seq[i] == f"I-{kind}":
            i += 1
    return True


def grammar_iob1(seq):
    """(O | I-X+ (B-X I-X*)*)*: B-X only right after a token of an X entity."""
    previous_kind = None
    for tag in seq:
        prefix, kind = _parts(tag)
        if prefix == "O":
            previous_kind = None
            continue
        if prefix == "B" and previous_kind != kind:
            return False
        previous_kind = kind
    return True


def make_grammar_bioes(inside):
    def grammar(seq):
        """(O | S-X | B-X inside-X* E-X)*"""
        i = 0
        while i < len(seq):
            prefix, kind = _parts(seq[i])
            i += 1
            if prefix in ("O", "S"):
                continue
            if prefix != "B":
                return False
            while i < len(seq) and seq[i] == f"{inside}-{kind}":
                i += 1
            if i < len(seq) and seq[i] == f"E-{kind}":
                i += 1
            else:
                return False
        return True

    return grammar


@pytest.mark.parametrize(
    "labels, scheme, grammar",
    [
        (BIO_LABELS, "BIO", grammar_bio),
        (BIO_LABELS, "IOB1", grammar_iob1),
        (BIOES_LABELS, "BIOES", make_grammar_bioes("I")),
        (BMES_LABELS, "BMES", make_grammar_bioes("M")),
        # Mixed separators and one entity type only.
        (["O", "B_PER", "I_PER", "E_PER", "S_PER"], "BIOES", None),
    ],
)
def test_tables_match_grammar_exhaustively(labels, scheme, grammar):
    if grammar is None:
        grammar = make_grammar_bioes("I")
        labels_for_grammar = [label.replace("_", "-") for label in labels]
    else:
        labels_for_grammar = labels
    start, end, trans = allowed_transitions(id2label_of(labels), scheme)
    n = len(labels)
    checked_valid = checked_invalid = 0
    for length in range(1, 5):
        for seq in itertools.product(range(n), repeat=length):
            by_table = start[seq[0]] and end[seq[-1]] and all(trans[a][b] for a, b in zip(seq, seq[1:]))
            by_grammar = grammar([labels_for_grammar[k] for k in seq])
            assert by_table == by_grammar, [labels[k] for k in seq]
            checked_valid += by_grammar
            checked_invalid += not by_grammar
    assert checked_valid > 0 and checked_invalid > 0
