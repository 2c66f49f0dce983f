"""Lexicons, in plain Python (the ONNX runtime must not import torch): a word list with entity types, its matches
in a text as feature bits (a lexicon model's input), and dictionaries that constrain decoding. Travels with
checkpoints as remote code and with ONNX exports.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


try:  # in a checkpoint folder (remote code) or an ONNX export
    from .ner_tags import OUTSIDE, Span, split_tag
except ImportError:  # in this repository, or run as a script beside it
    from ner_tags import OUTSIDE, Span, split_tag


# Where a character lies in a lexicon word that covers it: first, middle, last, or the whole (one-character) word.
LEXICON_POSITIONS = ("B", "M", "E", "S")
LEXICON_FILE = "lexicon.tsv"


class Lexicon:
    """Typed words to find in text: every occurrence of every word, overlapping ones included.

    A dict from each word to its types, and from each first character to the lengths of the words it starts: a
    character costs one lookup per such length (a few for Chinese), whatever the lexicon's size. A trie of jieba's
    349k words would be a million Python dicts; a binary search over the sorted words measured no faster than
    looking up every piece up to the longest word (benchmarks/bench_lexicon.py)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        types: dict[str, set[str]] = {}
        for word, kind in entries:
            if not word or not kind:
                raise ValueError(f"a lexicon entry needs a word and a type, got {(word, kind)!r}")
            types.setdefault(word, set()).add(kind)
        self.words = sorted(types)
        self.types = {word: tuple(sorted(kinds)) for word, kinds in types.items()}
        self.type_names = sorted({kind for kinds in self.types.values() for kind in kinds})
        lengths: dict[str, set[int]] = {}
        for word in self.words:
            lengths.setdefault(word[0], set()).add(len(word))
        self.lengths = {first: tuple(sorted(sizes)) for first, sizes in lengths.items()}

    def __len__(self) -> int:
        return len(self.words)

    def matches(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end exclusive, type) of every occurrence of a lexicon word in `text`, by start, then end."""
        found = []
        for start, char in enumerate(text):
            for size in self.lengths.get(char, ()):
                end = start + size
                if end > len(text):  # a cut-off piece could be a shorter word, found at its own length
                    break
                for kind in self.types.get(text[start:end], ()):
                    found.append((start, end, kind))
        return found

    def char_features(self, text: str) -> list[set[tuple[str, str]]]:
        """For each character of `text`, the (position, type) pairs of the lexicon words that cover it (see
        LEXICON_POSITIONS)."""
        features: list[set[tuple[str, str]]] = [set() for _ in text]
        for start, end, kind in self.matches(text):
            if end - start == 1:
                features[start].add(("S", kind))
                continue
            features[start].add(("B", kind))
            for inside in range(start + 1, end - 1):
                features[inside].add(("M", kind))
            features[end - 1].add(("E", kind))
        return features

    def to_tsv(self) -> str:
        """`word<TAB>type` lines (one per type of a word), sorted: the form a checkpoint folder carries (`load`)."""
        return "".join(f"{word}\t{kind}\n" for word in self.words for kind in self.types[word])

    @classmethod
    def load(cls, path: str) -> Lexicon:
        """A lexicon written as `to_tsv` writes it (a checkpoint's `lexicon.tsv`)."""
        entries = []
        with open(path, encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                word, tab, kind = line.rstrip("\n").partition("\t")
                if not tab or not word or not kind or "\t" in kind:
                    raise ValueError(f"{path}:{number}: expected word<TAB>type, found {line.rstrip(chr(10))!r}")
                entries.append((word, kind))
        return cls(entries)


def lexicon_bits(
    lexicon: Lexicon, text: str, spans: Sequence[tuple[int, int]], type_names: Sequence[str]
) -> list[int]:
    """Each word's lexicon features as the bits of one int: bit `p * len(type_names) + t` is on when a lexicon word
    of type `type_names[t]` covers one of the word's characters at position `LEXICON_POSITIONS[p]` (begin, middle,
    end, single). Types outside `type_names` are ignored. The one conversion from matched words to model inputs:
    training data, the pipeline and the ONNX tagger all call it, on the text and the word spans they tag."""
    index = {kind: t for t, kind in enumerate(type_names)}
    b_bit, m_bit, e_bit, s_bit = (LEXICON_POSITIONS.index(p) * len(type_names) for p in ("B", "M", "E", "S"))
    char_bits = [0] * len(text)
    # Straight from the matches: char_features' per-character sets would be built only to be read back here.
    for start, end, kind in lexicon.matches(text):
        t = index.get(kind)
        if t is None:
            continue
        if end - start == 1:
            char_bits[start] |= 1 << (s_bit + t)
            continue
        char_bits[start] |= 1 << (b_bit + t)
        for inside in range(start + 1, end - 1):
            char_bits[inside] |= 1 << (m_bit + t)
        char_bits[end - 1] |= 1 << (e_bit + t)
    bits = []
    for start, end in spans:
        word = 0
        for position in range(start, end):
            word |= char_bits[position]
        bits.append(word)
    return bits


def checked_dictionary(dictionary: Any, labels: Iterable[str]) -> Lexicon:
    """A user dictionary (a mapping of words to types, or a Lexicon) as a Lexicon of one type per word, each an
    entity type of the model's `labels` or O (forbid); a ValueError naming what is wrong otherwise."""
    if isinstance(dictionary, Lexicon):
        lexicon = dictionary
    elif isinstance(dictionary, Mapping):
        lexicon = Lexicon(dictionary.items())
    else:
        raise ValueError(f"dictionary must map words to types (or be a Lexicon), got {dictionary!r}")
    several = next((word for word in lexicon.words if len(lexicon.types[word]) > 1), None)
    if several is not None:
        raise ValueError(f"dictionary word {several!r} has several types {list(lexicon.types[several])}: give one")
    known = {parts[1] for parts in map(split_tag, labels) if parts and parts[1]} | {OUTSIDE}
    unknown = sorted(set(lexicon.type_names) - known)
    if unknown:
        raise ValueError(f"dictionary type {unknown[0]!r} is not one of the model's types {sorted(known)}")
    return lexicon


def dictionary_units(lexicon: Lexicon, text: str, word_spans: Sequence[tuple[int, int]]) -> list[Span]:
    """(type, first unit, end unit exclusive) of each occurrence of `lexicon`'s words in `text` that begins and ends
    on the boundaries of the words (units) at `word_spans`; one inside a word cannot be held by word tags."""
    starts = {start: i for i, (start, _) in enumerate(word_spans)}
    ends = {end: i + 1 for i, (_, end) in enumerate(word_spans)}
    return [
        (kind, starts[start], ends[end])
        for start, end, kind in lexicon.matches(text)
        if start in starts and end in ends and starts[start] < ends[end]
    ]
