"""bert_crf_utils, the one owner of the tag-scheme grammar, window planning, stitching and feeding untokenizable
words: its callers (configs, ner_data, the pipeline, the ONNX runtime) use these very objects."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import numpy as np
import pytest

import bert_crf_utils
from bert_crf_utils import (
    LEXICON_FILE,
    SCHEME_LETTERS,
    SCHEME_PARTS,
    SCHEME_PREFIXES,
    TAG_SCHEMES,
    Lexicon,
    Window,
    allowed_transitions,
    best_windows,
    fed_words,
    inside_prefix,
    plan_windows,
    span_constraints,
    spans_to_tags,
    stitch_rows,
    tags_to_spans,
    window_budget,
    word_pieces,
)
from conftest import FULLWIDTH_SPACE, REPO_ROOT


HEAD, TAIL = [101], [102]


def random_pieces(rng: random.Random, n: int, longest: int = 3) -> list[list[int]]:
    """`n` words of 1..`longest` sub-tokens with distinct ids (word w's ids are 1000 * w + k)."""
    return [[1000 * w + k for k in range(rng.randint(1, longest))] for w in range(n)]


# ----------------------------------------------------------------------------------------------------------------
# One owner


def test_callers_re_export_the_owners_objects():
    import configuration_bert_crf
    import configuration_crf
    from bertcrf import ner_data

    for name in (
        "TAG_SCHEMES",
        "SCHEME_PREFIXES",
        "detect_tag_scheme",
        "allowed_transitions",
        "split_tag",
        "tags_to_spans",
    ):
        assert getattr(configuration_crf, name) is getattr(bert_crf_utils, name), name
        assert getattr(configuration_bert_crf, name) is getattr(bert_crf_utils, name), name
    for name in (
        "spans_to_tags",
        "tags_to_spans",
        "convert_tags",
        "expand_word_tag",
        "collapse_word_tags",
        "detect_data_scheme",
        "split_tag",
        "word_windows",
        "SCHEME_PREFIXES",
        "TAG_SCHEMES",
    ):
        assert getattr(ner_data, name) is getattr(bert_crf_utils, name), name


def test_utils_import_neither_torch_nor_transformers():
    # bert_crf_utils travels with ONNX exports, which run with onnxruntime, tokenizers and numpy only.
    code = "import sys, bert_crf_utils; assert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)"
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
# Feeding untokenizable words


def test_fed_words_replaces_words_without_tokens_and_caches():
    calls = []

    def tokenize(word):
        calls.append(word)
        return [] if word in (FULLWIDTH_SPACE, "\u200b") else [word]

    words = ["张", FULLWIDTH_SPACE, "三", FULLWIDTH_SPACE, "\u200b", "张"]
    assert fed_words(words, tokenize, "[UNK]") == ["张", "[UNK]", "三", "[UNK]", "[UNK]", "张"]
    assert sorted(calls) == sorted({"张", FULLWIDTH_SPACE, "三", "\u200b"})  # each distinct word tokenized once
    known: dict[str, bool] = {}
    fed_words(["张"], tokenize, "[UNK]", known)
    calls.clear()
    assert fed_words(["张", "李"], tokenize, "[UNK]", known) == ["张", "李"]
    assert calls == ["李"] and known == {"张": True, "李": True}  # a shared cache spans calls
    assert fed_words([], tokenize, "[UNK]") == []


def test_fed_words_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(bert_crf_utils, "KNOWN_WORDS_LIMIT", 3)
    known: dict[str, bool] = {}
    fed_words(list("甲乙丙丁"), lambda word: [word], "[UNK]", known)
    assert len(known) == 4  # emptied before a call, never in the middle of one
    fed_words(["戊"], lambda word: [word], "[UNK]", known)
    assert known == {"戊": True}


def test_word_pieces_groups_tokens_and_spans():
    ids = [7, 8, 9, 10, 11]
    word_ids = [None, 0, 0, 2, None]  # word 1 has no tokens; the ends are special tokens
    offsets = [(0, 0), (0, 2), (2, 4), (5, 6), (0, 0)]
    assert word_pieces(ids, word_ids, offsets) == ([[8, 9], [10]], [(0, 4), (5, 6)])
    given = [(0, 4), (4, 5), (6, 7)]
    assert word_pieces(ids, word_ids, spans=given) == ([[8, 9], [10]], [(0, 4), (6, 7)])
    with pytest.raises(ValueError, match="needs the tokens' offsets or the words' spans"):
        word_pieces(ids, word_ids)


# ----------------------------------------------------------------------------------------------------------------
# Window planning


def check_windows(windows, pieces, budget, head=HEAD, tail=TAIL):
    """Each window: head + its words' (cut) sub-tokens + tail, within the budget, chain at each word's start;
    together they cover every word, in order."""
    covered = set()
    for window in windows:
        assert isinstance(window, Window)
        inner = window.input_ids[len(head) : len(window.input_ids) - len(tail)]
        assert window.input_ids[: len(head)] == head and window.input_ids[len(window.input_ids) - len(tail) :] == tail
        assert len(inner) <= budget
        assert inner == [i for w in range(window.start, window.end) for i in pieces[w][:budget]]
        assert len(window.chain) == window.end - window.start
        for w, position in zip(range(window.start, window.end), window.chain):
            assert window.input_ids[position] == pieces[w][0]
        covered.update(range(window.start, window.end))
    assert covered == set(range(len(pieces)))
    assert [w.start for w in windows] == sorted(w.start for w in windows)


@pytest.mark.parametrize("budget, stride", [(1, None), (4, None), (10, 0), (10, 2), (10, 5), (30, None), (30, 8)])
def test_plan_windows_cover_every_word_within_the_budget(budget, stride):
    rng = random.Random(budget * 100 + (stride or 0))
    for _ in range(50):
        pieces = random_pieces(rng, rng.randint(1, 80))
        windows = plan_windows(pieces, HEAD, TAIL, budget, stride)
        check_windows(windows, pieces, budget)
        if stride == 0:
            assert all(a.end == b.start for a, b in zip(windows, windows[1:]))  # tiling


def test_plan_windows_default_stride_is_a_quarter_of_the_budget():
    pieces = random_pieces(random.Random(0), 60)
    assert plan_windows(pieces, HEAD, TAIL, 16) == plan_windows(pieces, HEAD, TAIL, 16, 4)
    assert plan_windows(pieces, HEAD, TAIL, 16) != plan_windows(pieces, HEAD, TAIL, 16, 0)


def test_plan_windows_cuts_a_long_word_and_prefers_sentence_ends():
    windows = plan_windows([[1], [2, 3, 4, 5, 6], [7]], [], [9], 3, 0)
    assert windows == [Window(0, 1, [1, 9], [0]), Window(1, 2, [2, 3, 4, 9], [0]), Window(2, 3, [7, 9], [0])]
    tokens = list("甲乙丙丁戊己。庚辛壬")
    pieces = [[i] for i in range(len(tokens))]
    assert plan_windows(pieces, HEAD, TAIL, 8, 0, tokens)[0].end == 7  # ends after 。
    assert plan_windows(pieces, HEAD, TAIL, 8, 0)[0].end == 8
    assert plan_windows([], HEAD, TAIL, 8) == []


def test_window_budget():
    assert window_budget(512, [101], [102]) == 510
    assert window_budget(2, [101], [102]) == 1  # at least one sub-token
    assert window_budget(10, [0, 5], [2, 2]) == 6  # e.g. <s> ... </s></s> pairs


# ----------------------------------------------------------------------------------------------------------------
# Stitching


def test_stitch_rows_picks_each_words_most_central_window():
    rng = random.Random(1)
    for budget, stride in [(6, 2), (10, 4), (16, None)]:
        pieces = random_pieces(rng, 70)
        windows = plan_windows(pieces, HEAD, TAIL, budget, stride)
        picks = stitch_rows(windows, len(pieces))
        assert [k for k, _ in picks] == best_windows([(w.start, w.end) for w in windows], len(pieces))
        for word, (k, row) in enumerate(picks):
            window = windows[k]
            assert window.start + row == word and 0 <= row < len(window.chain)
            margin = min(row, len(window.chain) - 1 - row)
            best = max(min(word - w.start, w.end - 1 - word) for w in windows if w.start <= word < w.end)
            assert margin == best


def test_stitch_rows_takes_plain_spans_and_reports_missing_words():
    assert stitch_rows([(0, 3)], 3) == [(0, 0), (0, 1), (0, 2)]
    assert stitch_rows([(0, 3), (1, 5)], 5) == [(0, 0), (0, 1), (1, 1), (1, 2), (1, 3)]
    assert stitch_rows([], 0) == []
    with pytest.raises(RuntimeError, match=r"units \[3\] are in no window"):
        stitch_rows([(0, 3)], 4)


# ----------------------------------------------------------------------------------------------------------------
# Lexicon


def _all_occurrences(words: dict[str, set[str]], text: str) -> list[tuple[int, int, str]]:
    """The oracle: every substring of `text` looked up."""
    return sorted(
        (start, end, kind)
        for start in range(len(text))
        for end in range(start + 1, len(text) + 1)
        for kind in words.get(text[start:end], ())
    )


def test_lexicon_matches_every_occurrence_as_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        words: dict[str, set[str]] = {}
        for _ in range(rng.randint(1, 12)):
            word = "".join(rng.choice("abc") for _ in range(rng.randint(1, 4)))
            words.setdefault(word, set()).add(rng.choice(["PER", "LOC"]))
        lexicon = Lexicon((w, k) for w, kinds in words.items() for k in kinds)
        text = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 12)))
        assert sorted(lexicon.matches(text)) == _all_occurrences(words, text), (words, text)


def test_lexicon_char_features_and_tsv_round_trip(tmp_path):
    lexicon = Lexicon([("北京", "LOC"), ("北京大学", "ORG"), ("京", "LOC"), ("北京", "WORD")])
    assert lexicon.type_names == ["LOC", "ORG", "WORD"]
    features = lexicon.char_features("在北京大学")
    assert features[0] == set()
    assert features[1] == {("B", "LOC"), ("B", "ORG"), ("B", "WORD")}
    assert features[2] == {("E", "LOC"), ("M", "ORG"), ("E", "WORD"), ("S", "LOC")}
    assert features[4] == {("E", "ORG")}
    path = tmp_path / LEXICON_FILE
    path.write_text(lexicon.to_tsv(), encoding="utf-8")
    again = Lexicon.load(str(path))
    assert again.words == lexicon.words and again.types == lexicon.types
    path.write_text("北京\tLOC\n上海\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lexicon.tsv:2: expected word<TAB>type, found '上海'"):
        Lexicon.load(str(path))
    with pytest.raises(ValueError, match="needs a word and a type"):
        Lexicon([("", "LOC")])


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


def test_lexicon_bits_against_every_substring():
    from bert_crf_utils import LEXICON_POSITIONS, Lexicon, lexicon_bits

    entries = [("北京", "LOC"), ("北京大学", "ORG"), ("京", "LOC"), ("大学", "WORD"), ("学生", "WORD"), ("张", "X")]
    lexicon = Lexicon(entries)
    types = ["LOC", "ORG", "WORD"]  # X is not a feature type: ignored
    text = "北京大学生在北京"
    spans = [(0, 1), (1, 2), (2, 4), (4, 5), (5, 6), (6, 8)]  # words of one and two characters
    expected_chars = [0] * len(text)
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            for word, kind in entries:
                if word != text[start:end] or kind not in types:
                    continue
                for i in range(start, end):
                    where = "S" if end - start == 1 else "B" if i == start else "E" if i == end - 1 else "M"
                    expected_chars[i] |= 1 << (LEXICON_POSITIONS.index(where) * len(types) + types.index(kind))
    expected = [0] * len(spans)
    for w, (start, end) in enumerate(spans):
        for i in range(start, end):
            expected[w] |= expected_chars[i]
    assert lexicon_bits(lexicon, text, spans, types) == expected
    assert expected[2] != 0 and expected[0] != expected[1]
    assert lexicon_bits(lexicon, "", [], types) == []
