"""ner_tags, the one owner of the tag-scheme grammar, spans and the constraints a scheme or a dictionary puts on
decoding: its callers (configs, ner_data, the pipeline, the ONNX runtime) use these very objects."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from ner_tags import (
    SCHEME_LETTERS,
    SCHEME_PARTS,
    SCHEME_PREFIXES,
    TAG_SCHEMES,
    allowed_transitions,
    inside_prefix,
    span_constraints,
    spans_to_tags,
    tags_to_spans,
)


HEAD, TAIL = [101], [102]


def random_pieces(rng: random.Random, n: int, longest: int = 3) -> list[list[int]]:
    """`n` words of 1..`longest` sub-tokens with distinct ids (word w's ids are 1000 * w + k)."""
    return [[1000 * w + k for k in range(rng.randint(1, longest))] for w in range(n)]


# ----------------------------------------------------------------------------------------------------------------
# One owner


def test_callers_re_export_the_owners_objects():
    import configuration_bert_crf
    import configuration_crf
    import ner_tags
    import ner_windows
    from bertcrf import ner_data

    for name in ("TAG_SCHEMES", "SCHEME_PREFIXES", "detect_tag_scheme", "allowed_transitions"):
        assert getattr(configuration_crf, name) is getattr(ner_tags, name), name
        assert getattr(configuration_bert_crf, name) is getattr(ner_tags, name), name
    for name in ("split_tag", "tags_to_spans"):
        assert getattr(configuration_crf, name) is getattr(ner_tags, name), name
    for name in (
        "spans_to_tags",
        "tags_to_spans",
        "convert_tags",
        "expand_word_tag",
        "collapse_word_tags",
        "detect_data_scheme",
        "split_tag",
        "SCHEME_PREFIXES",
        "TAG_SCHEMES",
    ):
        assert getattr(ner_data, name) is getattr(ner_tags, name), name
    assert ner_data.word_windows is ner_windows.word_windows


@pytest.mark.parametrize("module", ["ner_tags", "ner_windows", "ner_lexicon"])
def test_imports_neither_torch_nor_transformers(module):
    # These travel with ONNX exports, which run with onnxruntime, tokenizers and numpy only.
    code = f"import sys, {module}; assert not {{'torch', 'transformers'}} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# ----------------------------------------------------------------------------------------------------------------
# The scheme table


def test_scheme_table():
    assert TAG_SCHEMES == ("BIO", "IOB1", "BIOES", "BMES", "none")
    assert SCHEME_LETTERS == {"BIO": "BI", "IOB1": "BI", "BIOES": "BIES", "BMES": "BMES"}
    assert set(SCHEME_LETTERS) == set(SCHEME_PREFIXES) == set(SCHEME_PARTS) == set(TAG_SCHEMES) - {"none"}
    for scheme, letters in SCHEME_LETTERS.items():
        assert SCHEME_PREFIXES[scheme] == frozenset(letters)
        assert set(SCHEME_PARTS[scheme]) <= SCHEME_PREFIXES[scheme]  # a scheme writes only its own prefixes
    assert [inside_prefix(s) for s in ("BIO", "IOB1", "BIOES", "BMES", "none")] == ["I", "I", "I", "M", "I"]


@pytest.mark.parametrize(
    "scheme, tags",
    [
        ("BIO", ["B-PER", "I-PER", "I-PER", "B-PER", "O", "B-LOC"]),
        ("IOB1", ["I-PER", "I-PER", "I-PER", "B-PER", "O", "I-LOC"]),
        ("BIOES", ["B-PER", "I-PER", "E-PER", "S-PER", "O", "S-LOC"]),
        ("BMES", ["B-PER", "M-PER", "E-PER", "S-PER", "O", "S-LOC"]),
    ],
)
def test_spans_to_tags_writes_each_schemes_parts(scheme, tags):
    spans = [("PER", 0, 3), ("PER", 3, 4), ("LOC", 5, 6)]
    assert spans_to_tags(spans, 6, scheme) == tags
    assert tags_to_spans(tags, scheme) == spans


# ----------------------------------------------------------------------------------------------------------------
# Dictionary spans forced on the decoder


def _best_with_spans(emissions, start, end, trans, legal, spans):
    """The oracle: the best legal label sequence in which each entity span is exactly an entity and each O span all
    O, by scoring every sequence."""
    id2label, scheme = legal
    allowed_start, allowed_end, allowed_trans = allowed_transitions(id2label, scheme)
    best, best_score = None, -np.inf
    for path in itertools.product(range(len(id2label)), repeat=emissions.shape[0]):
        if not (allowed_start[path[0]] and allowed_end[path[-1]]):
            continue
        if not all(allowed_trans[a][b] for a, b in zip(path, path[1:])):
            continue
        tags = [id2label[i] for i in path]
        entities = set(tags_to_spans(tags, scheme))
        if any(
            (kind == "O" and any(t != "O" for t in tags[a:b])) or (kind != "O" and (kind, a, b) not in entities)
            for kind, a, b in spans
        ):
            continue
        score = start[path[0]] + end[path[-1]] + emissions[np.arange(len(path)), path].sum()
        score += sum(trans[a, b] for a, b in zip(path, path[1:]))
        if score > best_score:
            best, best_score = list(path), score
    return best


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_forced_spans_decode_as_the_brute_force_best(scheme):
    import torch

    from modeling_crf import CRF

    labels = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in SCHEME_LETTERS[scheme]]
    id2label = dict(enumerate(labels))
    rng = np.random.default_rng(0)
    crf = CRF(len(labels), batch_first=True)
    crf.set_constraints(*allowed_transitions(id2label, scheme))
    changed = 0
    for _ in range(25):
        length = int(rng.integers(2, 5))
        with torch.no_grad():
            for parameter in (crf.start_transitions, crf.end_transitions, crf.transitions):
                parameter.copy_(torch.as_tensor(rng.normal(size=tuple(parameter.shape)), dtype=torch.float32))
        emissions = rng.normal(size=(length, len(labels))).astype(np.float32)
        a = int(rng.integers(0, length))
        b = int(rng.integers(a + 1, length + 1))
        spans = [(str(rng.choice(["PER", "LOC", "O"])), a, b)]
        allowed, dropped = span_constraints(spans, length, id2label, scheme)
        assert dropped == []
        masked = np.where(np.asarray(allowed), emissions, -1e4)
        free = crf.decode(torch.as_tensor(emissions)[None])[0]
        forced = crf.decode(torch.as_tensor(masked)[None])[0]
        params = [p.detach().numpy() for p in (crf.start_transitions, crf.end_transitions, crf.transitions)]
        assert forced == _best_with_spans(emissions, *params, (id2label, scheme), spans), (spans, emissions)
        changed += forced != free
    assert changed > 5  # the constraint mattered in many draws


def test_span_constraints_overlaps_and_errors():
    id2label = dict(enumerate(["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]))
    allowed, dropped = span_constraints([("PER", 1, 2), ("ORG", 0, 3)], 4, id2label, "BIO")
    assert dropped == [(("PER", 1, 2), ("ORG", 0, 3))]  # the longest wins
    assert [id2label[row.index(True)] for row in allowed[:3]] == ["B-ORG", "I-ORG", "I-ORG"]
    assert allowed[3] == [True, True, True, True, False]  # the entity ends: no I-ORG after it
    with pytest.raises(ValueError, match="the model has no label 'B-LOC' for the dictionary type 'LOC'"):
        span_constraints([("LOC", 0, 1)], 2, id2label, "BIO")
    with pytest.raises(ValueError, match="cannot be forced in IOB1"):
        span_constraints([("PER", 0, 1)], 2, id2label, "IOB1")
    with pytest.raises(ValueError, match="outside a sequence of 2 units"):
        span_constraints([("PER", 1, 3)], 2, id2label, "BIO")
