"""Lexicons in the forms users have: jieba's dictionary (`word freq pos` lines, as its dict.txt and user
dictionaries; freq and pos optional) and plain `word<TAB>TYPE` lines. Each file's types become feature types
through a mapping; the result is a `ner_lexicon.Lexicon`, which travels with checkpoints as `lexicon.tsv`.

jieba's part-of-speech tags are noisy for entities (华为 is `nr`, 京东 `ns`): they are features for the model to
weigh, not answers. By default its person tags (nr, nrt, nrfg) read as PER, places (ns) as LOC, organisations (nt)
as ORG, other proper nouns (nz) as MISC and every other word as WORD (where words begin and end is a feature too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

from bertcrf.ner_data import DataFormatError, check_file, text_lines
from ner_lexicon import Lexicon


LEXICON_FORMATS = ("auto", "jieba", "tsv")
JIEBA_TYPES = {"nr": "PER", "nrt": "PER", "nrfg": "PER", "ns": "LOC", "nt": "ORG", "nz": "MISC"}
OTHER_WORDS = "WORD"


def lexicon_entries(
    path: str | Path,
    lexicon_format: str = "auto",
    type_map: Mapping[str, str | None] | None = None,
    other: str | None = OTHER_WORDS,
) -> Iterator[tuple[str, str]]:
    """(word, feature type) of each line of a lexicon file. A line with a tab is `word<TAB>TYPE` ("tsv"), else
    jieba's `word [freq] [pos]` (with "auto", each line by itself). A source type is mapped by `type_map` (jieba's
    tags by JIEBA_TYPES when None; a type mapped to None is left out); a type the map lacks becomes `other` (left
    out when None; a TSV file's types stand as written when `type_map` is None); a jieba line without a tag is
    `other`. Blank lines are skipped; a malformed one raises
    DataFormatError with its line."""
    if lexicon_format not in LEXICON_FORMATS:
        raise ValueError(f"lexicon format must be one of {LEXICON_FORMATS}, got {lexicon_format!r}")
    check_file(path, "lexicon")
    for number, line in text_lines(path):
        if not line.strip():
            continue
        tabbed = lexicon_format == "tsv" or (lexicon_format == "auto" and "\t" in line)
        word, source = _tsv_line(path, number, line) if tabbed else _jieba_line(path, number, line)
        if tabbed:  # a TSV file's types stand as written unless mapped
            kind = source if type_map is None else type_map.get(source, other)
        else:
            mapping = JIEBA_TYPES if type_map is None else type_map
            kind = other if source is None else mapping.get(source, other)
        if kind is not None:
            yield word, kind


def _tsv_line(path: str | Path, number: int, line: str) -> tuple[str, str]:
    fields = line.split("\t")
    if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
        raise DataFormatError(path, number, repr(line), "word<TAB>TYPE")
    return fields[0].strip(), fields[1].strip()


def _jieba_line(path: str | Path, number: int, line: str) -> tuple[str, str | None]:
    fields = line.split()
    if not 1 <= len(fields) <= 3 or (len(fields) >= 2 and not fields[1].isdigit()):
        raise DataFormatError(path, number, repr(line), "jieba's `word [freq] [pos]` (freq a whole number)")
    return fields[0], fields[2] if len(fields) == 3 else None


def read_lexicon(
    paths: str | Path | list[str | Path],
    lexicon_format: str = "auto",
    type_map: Mapping[str, str | None] | None = None,
    other: str | None = OTHER_WORDS,
) -> Lexicon:
    """One Lexicon from one or more files (see `lexicon_entries`); a word in several files keeps every type."""
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    lexicon = Lexicon(entry for path in files for entry in lexicon_entries(path, lexicon_format, type_map, other))
    if not len(lexicon):
        raise DataFormatError(", ".join(map(str, files)), None, "no words", "at least one lexicon word")
    return lexicon
