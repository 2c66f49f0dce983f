"""ner_windows: feeding untokenizable words, planning windows over long texts and stitching their rows."""

from __future__ import annotations

import random

import pytest

from conftest import FULLWIDTH_SPACE
from ner_windows import Window, best_windows, fed_words, plan_windows, stitch_rows, window_budget, word_pieces


HEAD, TAIL = [101], [102]


def random_pieces(rng: random.Random, n: int, longest: int = 3) -> list[list[int]]:
    """`n` words of 1..`longest` sub-tokens with distinct ids (word w's ids are 1000 * w + k)."""
    return [[1000 * w + k for k in range(rng.randint(1, longest))] for w in range(n)]


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
    import ner_windows

    monkeypatch.setattr(ner_windows, "KNOWN_WORDS_LIMIT", 3)
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
