"""bertcrf/lexicon.py: jieba's dictionary and word<TAB>TYPE files become one typed Lexicon."""

from __future__ import annotations

import pytest

from bertcrf.lexicon import JIEBA_TYPES, read_lexicon
from bertcrf.ner_data import DataFormatError


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jieba_tags_map_to_feature_types(tmp_path):
    jieba = _write(tmp_path / "dict.txt", "华为 55 nr\n北京 34488 ns\n中国移动 3 nt\n工作 100 vn\n京东\n\n")
    lexicon = read_lexicon(jieba)
    assert lexicon.types == {
        "华为": ("PER",),  # jieba's tag, noisy as it is: the model learns how far to trust it
        "北京": ("LOC",),
        "中国移动": ("ORG",),
        "工作": ("WORD",),
        "京东": ("WORD",),
    }
    only_entities = read_lexicon(jieba, other=None)
    assert only_entities.words == ["中国移动", "北京", "华为"]
    custom = read_lexicon(jieba, type_map={**JIEBA_TYPES, "ns": None}, other=None)
    assert "北京" not in custom.types


def test_tsv_types_stand_and_files_merge(tmp_path):
    tsv = _write(tmp_path / "mine.tsv", "华为\tORG\n美团\tORG\n")
    jieba = _write(tmp_path / "dict.txt", "华为 55 nr\n")
    lexicon = read_lexicon([tsv, jieba])
    assert lexicon.types["华为"] == ("ORG", "PER") and lexicon.types["美团"] == ("ORG",)
    mapped = read_lexicon(tsv, type_map={"ORG": "COMPANY"})
    assert mapped.type_names == ["COMPANY"]


@pytest.mark.parametrize(
    "text, fmt, expected",
    [
        ("北京 many ns\n", "auto", r"dict.txt:1: expected jieba's `word \[freq\] \[pos\]`"),
        ("北京 1 ns extra\n", "jieba", r"dict.txt:1: expected jieba's"),
        ("北京\tLOC\tmore\n", "auto", r"dict.txt:1: expected word<TAB>TYPE"),
        ("北京 LOC\n", "tsv", r"dict.txt:1: expected word<TAB>TYPE"),
        ("\n\n", "auto", r"dict.txt: expected at least one lexicon word, found no words"),
    ],
)
def test_malformed_lines_name_their_place(tmp_path, text, fmt, expected):
    path = _write(tmp_path / "dict.txt", text)
    with pytest.raises(DataFormatError, match=expected):
        read_lexicon(path, fmt)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="lexicon format must be one of"):
        read_lexicon(tmp_path / "x.txt", "csv")
    with pytest.raises(FileNotFoundError, match="no such lexicon file"):
        read_lexicon(tmp_path / "missing.txt")
