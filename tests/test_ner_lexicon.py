"""ner_lexicon: matching a lexicon's words in a text, as spans and as a lexicon model's feature bits."""

from __future__ import annotations

import random

import pytest

from ner_lexicon import LEXICON_FILE, Lexicon


HEAD, TAIL = [101], [102]


def random_pieces(rng: random.Random, n: int, longest: int = 3) -> list[list[int]]:
    """`n` words of 1..`longest` sub-tokens with distinct ids (word w's ids are 1000 * w + k)."""
    return [[1000 * w + k for k in range(rng.randint(1, longest))] for w in range(n)]


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


def test_lexicon_bits_against_every_substring():
    from ner_lexicon import LEXICON_POSITIONS, Lexicon, lexicon_bits

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
