"""Tests for ner_data: readers, tag schemes, sub-token alignment, windows, stitching and vocabulary extension."""

from __future__ import annotations

import itertools
import json
import logging
import random

import numpy as np
import pytest

from bertcrf import ner_data
from bertcrf.data_files import read_file, sniff_format
from bertcrf.ner_data import (
    DataFormatError,
    WindowConfig,
    check_labels,
    collapse_word_tags,
    convert_tags,
    detect_data_scheme,
    encode_examples,
    expand_word_tag,
    extend_vocabulary,
    label_list,
    read_column_file,
    read_json_lines,
    read_span_json,
    replace_untokenizable,
    spans_to_tags,
    stitch_emissions,
    tags_to_spans,
    to_seqeval,
    unit_tags_to_words,
    unknown_rate,
    word_windows,
)
from conftest import DEMO_DIR, FULLWIDTH_SPACE, SHARED_DATA


SCHEMES = ("BIO", "IOB1", "BIOES", "BMES")
SCHEME_PREFIXES = {"BIO": "BI", "IOB1": "BI", "BIOES": "BIES", "BMES": "BMES", "none": "BI"}


def write(tmp_path, name, text, newline="\n"):
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text.replace("\n", newline))
    return path


def assert_located(err: DataFormatError, path, line, expected_words):
    """The message names the file, the line (when given) and what was expected."""
    message = str(err)
    assert str(path) in message
    if line is not None:
        assert f"{path}:{line}" in message
        assert err.line == line
    assert err.path == str(path)
    assert "expected" in message
    for word in expected_words:
        assert word in message, f"{word!r} not in {message!r}"


# ----------------------------------------------------------------------------------------------------------------
# Column files


def test_column_file_space_separated_ids_and_sentences(tmp_path):
    path = write(tmp_path, "a.txt", "张 B-PER\n三 I-PER\n去 O\n\n北 B-LOC\n京 I-LOC\n\n")
    examples = read_column_file(path)
    assert [e["tokens"] for e in examples] == [["张", "三", "去"], ["北", "京"]]
    assert [e["tags"] for e in examples] == [["B-PER", "I-PER", "O"], ["B-LOC", "I-LOC"]]
    assert [e["id"] for e in examples] == [f"{path}:1", f"{path}:5"]


def test_column_file_tab_separated_and_no_trailing_blank_line(tmp_path):
    path = write(tmp_path, "a.tsv", "中\tB-ORG\n国\tI-ORG\n\n\n\n人\tO\n民\tO")
    examples = read_column_file(path)
    assert [e["tokens"] for e in examples] == [["中", "国"], ["人", "民"]]
    assert [e["tags"] for e in examples] == [["B-ORG", "I-ORG"], ["O", "O"]]
    assert examples[1]["id"] == f"{path}:6"


def test_column_file_tab_separated_token_with_space(tmp_path):
    # With a tab on the line, columns are tab separated: a token may then contain a space.
    path = write(tmp_path, "a.tsv", "New York\tB-LOC\nis\tO\n")
    assert read_column_file(path)[0]["tokens"] == ["New York", "is"]


def test_column_file_conll_four_columns_docstart_skipped(tmp_path):
    text = (
        "-DOCSTART- -X- O O\n\n"
        "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n"
        "-DOCSTART- -X- O O\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
    )
    path = write(tmp_path, "eng.testa", text)
    examples = read_column_file(path)
    assert [e["tokens"] for e in examples] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert [e["tags"] for e in examples] == [["I-ORG", "O", "I-MISC"], ["I-PER", "I-PER"]]
    assert examples[0]["id"] == f"{path}:3"
    assert examples[1]["id"] == f"{path}:9"
    # tag_column picks another column
    assert read_column_file(path, tag_column=1)[0]["tags"] == ["NNP", "VBZ", "JJ"]


def test_column_file_fullwidth_space_token_kept(tmp_path):
    path = write(tmp_path, "a.txt", f"导 O\n游 O\n{FULLWIDTH_SPACE} O\n马 B-PER\n婷 I-PER\n\n")
    (example,) = read_column_file(path)
    assert example["tokens"] == ["导", "游", FULLWIDTH_SPACE, "马", "婷"]
    assert example["tags"] == ["O", "O", "O", "B-PER", "I-PER"]


def test_column_file_fullwidth_space_token_tab_separated(tmp_path):
    path = write(tmp_path, "a.tsv", f"导\tO\n{FULLWIDTH_SPACE}\tO\n马\tB-PER\n")
    assert read_column_file(path)[0]["tokens"] == ["导", FULLWIDTH_SPACE, "马"]


def test_column_file_crlf_line_endings(tmp_path):
    text = f"张 B-PER\n三 I-PER\n{FULLWIDTH_SPACE} O\n\n北 B-LOC\n\n"
    lf = read_column_file(write(tmp_path, "lf.txt", text))
    path = write(tmp_path, "crlf.txt", text, newline="\r\n")
    assert b"\r\n" in path.read_bytes()
    crlf = read_column_file(path)
    assert [(e["tokens"], e["tags"]) for e in crlf] == [(e["tokens"], e["tags"]) for e in lf]
    assert all(not t.endswith("\r") for e in crlf for t in e["tags"] + e["tokens"])
    assert crlf[1]["id"] == f"{path}:5"


def test_column_file_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff张 B-PER\n三 I-PER\n".encode("utf-8"))
    assert read_column_file(path)[0]["tokens"] == ["张", "三"]


@pytest.mark.parametrize("bad_line", ["三", "三 ", "三\t", "三\t\t"])
def test_column_file_line_with_one_field(tmp_path, bad_line):
    path = write(tmp_path, "bad.txt", f"张 B-PER\n{bad_line}\n去 O\n\n")
    with pytest.raises(DataFormatError) as info:
        read_column_file(path)
    assert_located(info.value, path, 2, ["a token and a tag"])


@pytest.mark.parametrize("text", ["", "\n\n\n", "-DOCSTART- -X- O O\n\n"])
def test_column_file_without_sentences(tmp_path, text):
    path = write(tmp_path, "empty.txt", text)
    with pytest.raises(DataFormatError) as info:
        read_column_file(path)
    assert_located(info.value, path, None, ["at least one token line"])


# ----------------------------------------------------------------------------------------------------------------
# JSON lines


def test_json_lines_tokens_and_tags(tmp_path):
    lines = [
        {"tokens": ["张", "三"], "tags": ["B-PER", "I-PER"]},
        {"tokens": ["去", "北", "京"], "tags": ["O", "B-LOC", "I-LOC"]},
    ]
    path = write(tmp_path, "a.jsonl", json.dumps(lines[0], ensure_ascii=False) + "\n\n" + json.dumps(lines[1]) + "\n")
    examples = read_json_lines(path)
    assert [(e["tokens"], e["tags"]) for e in examples] == [(r["tokens"], r["tags"]) for r in lines]
    assert [e["id"] for e in examples] == [f"{path}:1", f"{path}:3"]


def test_json_lines_without_tags_and_custom_keys(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"words": ["a", "b"], "ner": ["B-X", "O"]}\n{"words": ["c"]}\n')
    examples = read_json_lines(path, tokens_key="words", tags_key="ner")
    assert examples[0]["tags"] == ["B-X", "O"]
    assert examples[1]["tokens"] == ["c"] and examples[1]["tags"] is None
    assert all(e["tags"] is None for e in read_json_lines(path, tokens_key="words", tags_key=None))


def test_json_lines_invalid_json(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "tags": ["O"]}\n')
    with pytest.raises(DataFormatError) as info:
        read_json_lines(path)
    assert_located(info.value, path, 2, ["one JSON object per line", "invalid JSON"])


def test_json_lines_not_an_object(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n["a", "O"]\n')
    with pytest.raises(DataFormatError) as info:
        read_json_lines(path)
    assert_located(info.value, path, 2, ["a JSON object"])


def test_json_lines_length_mismatch(tmp_path):
    text = '{"tokens": ["a"], "tags": ["O"]}\n\n{"tokens": ["a", "b", "c"], "tags": ["O", "O"]}\n'
    path = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(DataFormatError) as info:
        read_json_lines(path)
    assert_located(info.value, path, 3, ["one tag per token", "3 tokens and 2 tags"])


@pytest.mark.parametrize(
    "record", ['{"tags": ["O"]}', '{"tokens": "ab", "tags": ["O"]}', '{"tokens": ["a", ""], "tags": ["O", "O"]}']
)
def test_json_lines_bad_tokens(tmp_path, record):
    path = write(tmp_path, "bad.jsonl", record + "\n")
    with pytest.raises(DataFormatError) as info:
        read_json_lines(path)
    assert_located(info.value, path, 1, ["a list of non-empty strings"])


def test_json_lines_empty_file(tmp_path):
    path = write(tmp_path, "empty.jsonl", "\n \n")
    with pytest.raises(DataFormatError) as info:
        read_json_lines(path)
    assert_located(info.value, path, None, ["at least one JSON line"])


# ----------------------------------------------------------------------------------------------------------------
# CLUENER span JSON


def span_line(text, label=None):
    record = {"text": text}
    if label is not None:
        record["label"] = label
    return json.dumps(record, ensure_ascii=False)


def test_span_json_end_inclusive_to_bio(tmp_path):
    lines = [
        span_line("浙商银行企业信贷部叶老桂博士", {"company": {"浙商银行": [[0, 3]]}, "name": {"叶老桂": [[9, 11]]}}),
        span_line("他在杭州", {"address": {"杭": [[2, 2]]}}),
    ]
    path = write(tmp_path, "dev.json", "\n".join(lines) + "\n")
    first, second = read_span_json(path)
    assert first["tokens"] == list("浙商银行企业信贷部叶老桂博士")
    assert first["tags"] == (
        ["B-company", "I-company", "I-company", "I-company"] + ["O"] * 5 + ["B-name", "I-name", "I-name", "O", "O"]
    )
    assert second["tags"] == ["O", "O", "B-address", "O"]
    assert [first["id"], second["id"]] == [f"{path}:1", f"{path}:2"]


def test_span_json_to_bioes_and_bmes(tmp_path):
    label = {"name": {"张三": [[0, 1]]}, "org": {"北京大学": [[3, 6]]}, "x": {"在": [[2, 2]]}}
    line = span_line("张三在北京大学", label)
    path = write(tmp_path, "a.json", line + "\n")
    assert read_span_json(path, "BIOES")[0]["tags"] == ["B-name", "E-name", "S-x", "B-org", "I-org", "I-org", "E-org"]
    assert read_span_json(path, "BMES")[0]["tags"] == ["B-name", "E-name", "S-x", "B-org", "M-org", "M-org", "E-org"]
    # the same surface at several positions
    path = write(tmp_path, "b.json", span_line("北京到北京", {"loc": {"北京": [[0, 1], [3, 4]]}}) + "\n")
    assert read_span_json(path)[0]["tags"] == ["B-loc", "I-loc", "O", "B-loc", "I-loc"]


def test_span_json_overlapping_spans_keep_longer_and_warn(tmp_path, caplog):
    line = span_line("北京大学在北京", {"loc": {"北京": [[0, 1], [5, 6]]}, "org": {"北京大学": [[0, 3]]}})
    path = write(tmp_path, "nested.json", span_line("你好") + "\n" + line + "\n")
    with caplog.at_level(logging.WARNING, logger="bertcrf.ner_data"):
        unlabelled, example = read_span_json(path)
    assert example["tags"] == ["B-org", "I-org", "I-org", "I-org", "O", "B-loc", "I-loc"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "bertcrf.ner_data"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert f"{path}:2" in message and "loc" in message and "[0, 2)" in message
    assert unlabelled["tags"] is None


def test_span_json_overlap_of_equal_length_keeps_the_first(tmp_path, caplog):
    line = span_line("北京大学", {"a": {"北京大": [[0, 2]]}, "b": {"京大学": [[1, 3]]}})
    path = write(tmp_path, "eq.json", line + "\n")
    with caplog.at_level(logging.WARNING, logger="bertcrf.ner_data"):
        (example,) = read_span_json(path)
    assert example["tags"] == ["B-a", "I-a", "I-a", "O"]
    assert any("b span [1, 4)" in r.getMessage() for r in caplog.records)


def test_span_json_records_without_label(tmp_path):
    path = write(tmp_path, "test.json", '{"id": 0, "text": "你好"}\n{"id": 1, "text": "北京", "label": {}}\n')
    first, second = read_span_json(path)
    assert first["tokens"] == ["你", "好"] and first["tags"] is None
    assert second["tags"] == ["O", "O"]


@pytest.mark.parametrize(
    "label, found",
    [
        ({"name": {"张三": [[0, 2]]}}, "'张三在'"),  # end exclusive by mistake
        ({"name": {"张三": [[1, 2]]}}, "'三在'"),
        ({"name": {"张三": [[3, 4]]}}, "''"),  # past the end
    ],
)
def test_span_json_text_mismatch(tmp_path, label, found):
    path = write(tmp_path, "bad.json", span_line("你好") + "\n" + span_line("张三在", label) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_span_json(path)
    assert_located(info.value, path, 2, ["text[start:end+1] to equal the entity string", found])


@pytest.mark.parametrize(
    "record, expected",
    [
        ('{"text": ""}', 'a non-empty string in "text"'),
        ('{"text": "ab", "label": [1]}', "an object {type:"),
        ('{"text": "ab", "label": {"x": {"a": [0, 0]}}}', "[start, end] with end inclusive"),
        ('{"text": "ab", "label": {"x": {"a": [[0]]}}}', "[start, end] with end inclusive"),
        ('{"text": "ab", "label": {"x": ["a"]}}', "an object {surface:"),
        ('{"text": "ab", "label": {"x": {"a": [[0, 0]]}}', "one JSON object per line"),
    ],
)
def test_span_json_malformed(tmp_path, record, expected):
    path = write(tmp_path, "bad.json", span_line("你好") + "\n" + record + "\n")
    with pytest.raises(DataFormatError) as info:
        read_span_json(path)
    assert_located(info.value, path, 2, [expected])


def test_span_json_empty_file(tmp_path):
    path = write(tmp_path, "empty.json", "")
    with pytest.raises(DataFormatError) as info:
        read_span_json(path)
    assert_located(info.value, path, None, ["at least one JSON line"])


# ----------------------------------------------------------------------------------------------------------------
# Format sniffing and dispatch


def test_sniff_format_and_read_file_dispatch(tmp_path):
    column = write(tmp_path, "c.txt", "\n\n张 B-PER\n三 I-PER\n")
    jsonl = write(tmp_path, "j.jsonl", '\n{"tokens": ["张", "三"], "tags": ["B-PER", "I-PER"]}\n')
    spans = write(tmp_path, "s.json", span_line("张三", {"PER": {"张三": [[0, 1]]}}) + "\n")
    assert [sniff_format(p) for p in (column, jsonl, spans)] == ["column", "jsonl", "spans"]
    assert read_file(column) == read_column_file(column)
    assert read_file(jsonl) == read_json_lines(jsonl)
    assert read_file(spans) == read_span_json(spans)
    assert read_file(spans, span_scheme="BIOES") == read_span_json(spans, "BIOES")
    for path in (column, jsonl, spans):
        assert [(e["tokens"], e["tags"]) for e in read_file(path)] == [(["张", "三"], ["B-PER", "I-PER"])]


def test_read_file_custom_json_keys(tmp_path):
    path = write(tmp_path, "j.jsonl", '{"words": ["a", "b"], "ner_tags": ["B-X", "I-X"]}\n')
    assert read_file(path, tokens_key="words", tags_key="ner_tags")[0]["tags"] == ["B-X", "I-X"]


def test_read_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_file(tmp_path / "nope.txt")


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_read_file_empty(tmp_path, text):
    path = write(tmp_path, "empty.txt", text)
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    assert_located(info.value, path, None, ["NER data", "empty file"])


def test_read_file_first_line_invalid_json(tmp_path):
    """A JSON-lines file whose first record does not parse: DataFormatError at line 1, not a bare JSONDecodeError."""
    path = write(tmp_path, "bad.jsonl", '{"tokens": ["a", "tags": ["O"]}\n{"tokens": ["a"], "tags": ["O"]}\n')
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    assert_located(info.value, path, 1, ["one JSON object per line"])


# ----------------------------------------------------------------------------------------------------------------
# Tag schemes

# The same entities in every scheme: PER [0, 2), PER [2, 3) (adjacent, same type), LOC [4, 7), ORG [7, 8).
HAND_SPANS = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 7), ("ORG", 7, 8)]
HAND_TAGS = {
    "BIO": ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG", "O"],
    "IOB1": ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-LOC", "I-ORG", "O"],
    "BIOES": ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "S-ORG", "O"],
    "BMES": ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "M-LOC", "E-LOC", "S-ORG", "O"],
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_hand_examples_both_ways(scheme):
    tags = HAND_TAGS[scheme]
    assert tags_to_spans(tags, scheme) == HAND_SPANS
    assert spans_to_tags(HAND_SPANS, len(tags), scheme) == tags
    assert spans_to_tags(list(reversed(HAND_SPANS)), len(tags), scheme) == tags  # order of spans does not matter


def test_iob1_adjacent_entities_need_b():
    assert spans_to_tags([("PER", 0, 1), ("PER", 1, 2)], 2, "IOB1") == ["I-PER", "B-PER"]
    assert spans_to_tags([("PER", 0, 1), ("LOC", 1, 2)], 2, "IOB1") == ["I-PER", "I-LOC"]
    assert spans_to_tags([("PER", 0, 1), ("PER", 2, 3)], 3, "IOB1") == ["I-PER", "O", "I-PER"]
    assert tags_to_spans(["I-PER", "B-PER", "I-PER"], "IOB1") == [("PER", 0, 1), ("PER", 1, 3)]
    assert tags_to_spans(["I-PER", "I-PER"], "IOB1") == [("PER", 0, 2)]


def test_tags_to_spans_lenient_reading():
    assert tags_to_spans(["O", "I-PER", "I-PER"], "BIO") == [("PER", 1, 3)]
    assert tags_to_spans(["B-PER", "I-LOC"], "BIO") == [("PER", 0, 1), ("LOC", 1, 2)]
    assert tags_to_spans(["B-PER", "I-PER", "B-PER"], "BIO") == [("PER", 0, 2), ("PER", 2, 3)]
    assert tags_to_spans(["B-PER", "I-PER"], "BIOES") == [("PER", 0, 2)]  # unclosed at the end
    assert tags_to_spans(["E-PER", "O", "M-LOC", "E-LOC"], "BMES") == [("PER", 0, 1), ("LOC", 2, 4)]
    assert tags_to_spans(["B-PER", "E-PER", "E-PER"], "BIOES") == [("PER", 0, 2), ("PER", 2, 3)]
    assert tags_to_spans(["O", "O"], "BIO") == []
    assert tags_to_spans([], "BIOES") == []


def random_spans(rng, length, types=("PER", "LOC", "ORG")):
    spans, i = [], 0
    while i < length:
        if rng.random() < 0.4:
            n = min(rng.randint(1, 4), length - i)
            spans.append((rng.choice(types), i, i + n))
            i += n
        else:
            i += rng.randint(1, 2)
    return spans


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_round_trips(scheme):
    rng = random.Random(scheme)
    for _ in range(200):
        length = rng.randint(0, 15)
        spans = random_spans(rng, length)
        tags = spans_to_tags(spans, length, scheme)
        assert len(tags) == length
        assert tags_to_spans(tags, scheme) == spans
        assert all(t == "O" or t[0] in SCHEME_PREFIXES[scheme] for t in tags)


@pytest.mark.parametrize("source, target", list(itertools.product(SCHEMES, SCHEMES)))
def test_convert_tags_every_pair(source, target):
    assert convert_tags(HAND_TAGS[source], source, target) == HAND_TAGS[target]
    rng = random.Random(f"{source}{target}")
    for _ in range(50):
        length = rng.randint(1, 12)
        spans = random_spans(rng, length)
        expected = spans_to_tags(spans, length, target)
        assert convert_tags(spans_to_tags(spans, length, source), source, target) == expected


def test_convert_tags_none_is_identity():
    tags = ["X", "Y", "B-PER"]
    assert convert_tags(tags, "none", "BIO") == tags
    assert convert_tags(tags, "BIO", "none") == tags


def test_detect_data_scheme():
    iob1 = [["I-PER", "I-PER", "O", "I-LOC"], ["O", "I-ORG", "B-ORG", "O"], ["I-MISC"]]
    bio = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "B-ORG", "O"], ["B-MISC"]]
    assert detect_data_scheme(iob1) == "IOB1"
    assert detect_data_scheme(bio) == "BIO"
    # a stray I- in BIO data does not make it IOB1
    assert detect_data_scheme(bio + [["O", "I-PER"]]) == "BIO"
    assert detect_data_scheme([HAND_TAGS["IOB1"]]) == "IOB1"
    assert detect_data_scheme([HAND_TAGS["BIO"]]) == "BIO"
    assert detect_data_scheme([HAND_TAGS["BIOES"]]) == "BIOES"
    assert detect_data_scheme([HAND_TAGS["BMES"]]) == "BMES"
    assert detect_data_scheme([["O", "O"]]) == "none"
    assert detect_data_scheme([["PER", "O"]]) == "none"


def test_label_list():
    tags = [["B-PER", "I-PER", "O"], ["B-LOC"], ["O"]]
    assert label_list(tags, "BIO") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert label_list(tags, "IOB1") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert label_list([["S-PER", "O"]], "BIOES") == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert label_list([["M-ORG"], ["S-PER"]], "BMES") == [
        "O",
        "B-ORG",
        "M-ORG",
        "E-ORG",
        "S-ORG",
        "B-PER",
        "M-PER",
        "E-PER",
        "S-PER",
    ]
    assert label_list([["X", "Y", "O"]], "none") == ["O", "X", "Y"]
    assert label_list([["O"]], "none") == ["O"]
    assert label_list([["O"]], "BIO") == ["O"]


def test_to_seqeval_bmes_scores_like_iobes():
    from seqeval import metrics
    from seqeval.scheme import IOBES

    bmes = HAND_TAGS["BMES"]
    converted = to_seqeval(bmes, "BMES")
    assert converted == HAND_TAGS["BIOES"]
    assert to_seqeval(HAND_TAGS["BIO"], "BIO") == HAND_TAGS["BIO"]
    assert ner_data.SEQEVAL_SCHEMES["BMES"] == "IOBES"
    report = metrics.classification_report([converted], [converted], mode="strict", scheme=IOBES, output_dict=True)
    assert report["micro avg"]["support"] == len(HAND_SPANS)
    assert report["micro avg"]["f1-score"] == 1.0
    wrong = to_seqeval(["B-PER", "E-PER", "S-PER", "O", "B-LOC", "M-LOC", "M-LOC", "S-ORG", "O"], "BMES")
    # B- M- M- is no entity in strict IOBES: 3 of 3 predicted entities right, 3 of 4 gold ones found
    assert metrics.f1_score([converted], [wrong], mode="strict", scheme=IOBES) == pytest.approx(6 / 7)


def test_check_labels_raises_with_locations():
    examples = [
        {"id": "dev.txt:1", "tokens": ["a", "b"], "tags": ["B-PER", "O"]},
        {"id": "dev.txt:4", "tokens": ["a", "b"], "tags": ["B-FOO", "I-FOO"], "lines": [4, 5]},
        {"id": "dev.txt:9", "tokens": ["a"], "tags": ["B-FOO"]},
        {"id": "dev.jsonl:12", "tokens": ["a", "b"], "tags": ["O", "B-BAR"]},
        {"id": "dev.txt:12", "tokens": ["a"], "tags": None},
    ]
    with pytest.raises(ValueError) as info:
        check_labels(examples, {"O", "B-PER", "I-PER"}, False, "validation")
    message = str(info.value)
    # column files name the token's own line, other files the record and the token
    assert "'B-FOO' x2 (first at dev.txt:4)" in message
    assert "'I-FOO' x1 (first at dev.txt:5)" in message
    assert "'B-BAR' x1 (first at dev.jsonl:12 (token 2))" in message
    assert "B-PER'" not in message.split("Known")[0]
    assert "validation" in message


def test_check_labels_unknown_to_outside(caplog):
    examples = [
        {"id": "t:1", "tokens": ["a", "b", "c"], "tags": ["B-FOO", "I-FOO", "B-PER"]},
        {"id": "t:5", "tokens": ["a"], "tags": None},
    ]
    with caplog.at_level(logging.WARNING, logger="bertcrf.ner_data"):
        out = check_labels(examples, {"O", "B-PER", "I-PER"}, True, "test")
    assert out[0]["tags"] == ["O", "O", "B-PER"]
    assert out[1]["tags"] is None
    assert any("B-FOO" in r.getMessage() and "t:1" in r.getMessage() for r in caplog.records)
    known_only = [{"id": "t:1", "tokens": ["a"], "tags": ["B-PER"]}]
    assert check_labels(known_only, {"O", "B-PER"}, False, "test") is known_only


# ----------------------------------------------------------------------------------------------------------------
# Sub-token alignment


def scheme_tags(scheme):
    return ["O"] + [f"{p}-PER" for p in SCHEME_PREFIXES[scheme]]


@pytest.mark.parametrize("scheme", [*SCHEMES, "none"])
@pytest.mark.parametrize("pieces", [1, 2, 3, 4])
def test_expand_collapse_inverse(scheme, pieces):
    for tag in scheme_tags(scheme):
        expanded = expand_word_tag(tag, pieces, scheme)
        assert len(expanded) == pieces
        assert expanded[0].split("-")[-1] == tag.split("-")[-1]
        assert collapse_word_tags(expanded, scheme) == tag, (tag, expanded)


def test_expand_word_tag_examples():
    assert expand_word_tag("B-PER", 3, "BIO") == ["B-PER", "I-PER", "I-PER"]
    assert expand_word_tag("I-PER", 2, "IOB1") == ["I-PER", "I-PER"]
    assert expand_word_tag("S-PER", 3, "BIOES") == ["B-PER", "I-PER", "E-PER"]
    assert expand_word_tag("E-PER", 2, "BIOES") == ["I-PER", "E-PER"]
    assert expand_word_tag("S-PER", 2, "BMES") == ["B-PER", "E-PER"]
    assert expand_word_tag("M-PER", 3, "BMES") == ["M-PER", "M-PER", "M-PER"]
    assert expand_word_tag("O", 3, "BIOES") == ["O", "O", "O"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_expansion_keeps_entity_boundaries(scheme):
    """Expanding every word of a sentence gives the same entities over sub-tokens, and collapsing gives the words'."""
    rng = random.Random(scheme)
    for _ in range(100):
        length = rng.randint(1, 10)
        tags = spans_to_tags(random_spans(rng, length), length, scheme)
        pieces = [rng.randint(1, 4) for _ in tags]
        starts = np.concatenate([[0], np.cumsum(pieces)]).tolist()
        units = [t for tag, n in zip(tags, pieces) for t in expand_word_tag(tag, n, scheme)]
        expected = [(e, starts[s], starts[t]) for e, s, t in tags_to_spans(tags, scheme)]
        assert tags_to_spans(units, scheme) == expected
        assert unit_tags_to_words(units, pieces, scheme) == tags


# ----------------------------------------------------------------------------------------------------------------
# Untokenizable words


def test_replace_untokenizable(tiny_tokenizer):
    assert tiny_tokenizer.tokenize(FULLWIDTH_SPACE) == [] and tiny_tokenizer.tokenize("\u200b") == []
    examples = [
        {"id": "a:1", "tokens": ["导", FULLWIDTH_SPACE, "马", "\u200b", FULLWIDTH_SPACE], "tags": ["O"] * 5},
        {"id": "a:7", "tokens": ["newyork", "仁"], "tags": None},
    ]
    out, replaced = replace_untokenizable(examples, tiny_tokenizer)
    unk = tiny_tokenizer.unk_token
    assert out[0]["words"] == ["导", unk, "马", unk, unk]
    assert out[0]["tokens"] == examples[0]["tokens"]  # as read
    assert out[1]["words"] == ["newyork", "仁"]  # "仁" is [UNK] but not empty
    assert replaced == {FULLWIDTH_SPACE: 2, "\u200b": 1}
    assert "words" not in examples[0]  # the input is not modified
    # encode_examples refuses words without sub-tokens and accepts the replaced ones
    config = WindowConfig(max_seq_length=16)
    with pytest.raises(ValueError, match="no sub-token"):
        encode_examples(examples, tiny_tokenizer, None, config, overlap=False)
    rows, units = encode_examples(out, tiny_tokenizer, None, config, overlap=False)
    assert [sum(u) for u in units] == [5, 2]
    assert sum(sum(r["word_start_mask"]) for r in rows) == 7


# ----------------------------------------------------------------------------------------------------------------
# Windows


def check_tiling(windows, lengths, budget):
    assert windows[0][0] == 0 and windows[-1][1] == len(lengths)
    for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
        assert e1 == s2
    for s, e in windows:
        assert e > s
        assert sum(lengths[s:e]) <= budget or e - s == 1


@pytest.mark.parametrize("budget", [1, 3, 10, 30])
def test_word_windows_tiling(budget):
    rng = random.Random(budget)
    for _ in range(100):
        n = rng.randint(1, 60)
        lengths = [rng.randint(1, 3) for _ in range(n)]
        tokens = [rng.choice("甲乙丙丁。，！") for _ in range(n)]
        windows = word_windows(lengths, budget, 0, tokens)
        check_tiling(windows, lengths, budget)
        assert [w for s, e in windows for w in range(s, e)] == list(range(n))


def test_word_windows_prefer_cut_after_sentence_punctuation():
    tokens = list("甲乙丙丁戊己。庚辛壬癸子丑")
    windows = word_windows([1] * len(tokens), 8, 0, tokens)
    assert windows[0] == (0, 7)  # cut after 。 (in the last quarter of the 8-word window)
    check_tiling(windows, [1] * len(tokens), 8)
    tokens = list("甲。丙丁戊己庚辛壬癸子丑")
    assert word_windows([1] * len(tokens), 8, 0, tokens)[0] == (0, 8)  # 。 too early: no early cut


@pytest.mark.parametrize("budget, overlap", [(6, 2), (10, 4), (30, 8), (32, 8), (5, 4), (10, 12)])
def test_word_windows_with_overlap(budget, overlap):
    rng = random.Random(budget * 100 + overlap)
    for _ in range(100):
        n = rng.randint(1, 60)
        lengths = [rng.randint(1, min(3, overlap)) for _ in range(n)]
        windows = word_windows(lengths, budget, overlap, ["甲"] * n)
        assert windows[0][0] == 0 and windows[-1][1] == n
        covered = set()
        for s, e in windows:
            assert sum(lengths[s:e]) <= budget or e - s == 1
            covered.update(range(s, e))
        assert covered == set(range(n))
        for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
            assert s1 < s2 and e1 <= e2  # always progress
            # consecutive windows overlap, unless sharing a word would leave the next one no room for a new word
            assert s2 < e1 or e1 - s1 == 1 or lengths[e1 - 1] + lengths[e1] > budget, (windows, lengths)
            assert sum(lengths[s2:e1]) <= overlap
            if overlap <= budget // 2:
                assert e1 < e2  # a window always brings new words when the overlap leaves room


def test_word_windows_long_word_gets_own_window():
    lengths = [2, 15, 2, 2]
    tokens = ["a"] * 4
    assert word_windows(lengths, 10, 0, tokens) == [(0, 1), (1, 2), (2, 4)]
    windows = word_windows(lengths, 10, 3, tokens)
    assert (1, 2) in windows
    assert windows[0][0] == 0 and windows[-1][1] == 4
    assert word_windows([20], 10, 0, ["a"]) == [(0, 1)]
    assert word_windows([], 10, 0, []) == []


def long_example(chars, n, seed=0, multi_piece_every=0):
    rng = random.Random(seed)
    tokens = [rng.choice(chars) for _ in range(n)]
    if multi_piece_every:
        for i in range(0, n, multi_piece_every):
            tokens[i] = "newyork"
    tags = spans_to_tags(random_spans(rng, n), n, "BIO")
    return {"id": f"long:{seed}", "tokens": tokens, "tags": tags}


@pytest.fixture
def demo_chars():
    from conftest import demo_characters

    return [c for c in demo_characters() if "\u4e00" <= c <= "\u9fff"][:200] + ["。", "，"]


@pytest.mark.parametrize("overlap", [False, True])
def test_encode_examples_long_sentence(tiny_tokenizer, demo_chars, overlap):
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    label2id = {t: i for i, t in enumerate(labels)}
    examples = [long_example(demo_chars, 300, seed=1, multi_piece_every=7), long_example(demo_chars, 20, seed=2)]
    config = WindowConfig(max_seq_length=32, stride=8, scheme="BIO")
    rows, units = encode_examples(examples, tiny_tokenizer, label2id, config, overlap=overlap)
    cls, sep = tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id
    assert [sum(u) for u in units] == [300, 20]
    assert all(u == [1] * len(e["tokens"]) for u, e in zip(units, examples))
    assert len({r["example_index"] for r in rows}) == 2
    assert sum(r["example_index"] == 0 for r in rows) >= 300 * 8 // 7 // 30  # really split
    covered = {0: set(), 1: set()}
    for row in rows:
        ids = row["input_ids"]
        assert len(ids) <= 32 and row["length"] == len(ids)
        assert ids[0] == cls and ids[-1] == sep and cls not in ids[1:-1] and sep not in ids[1:-1]
        assert len(row["attention_mask"]) == len(row["token_type_ids"]) == len(row["word_start_mask"]) == len(ids)
        assert len(row["labels"]) == len(ids)
        for label, start in zip(row["labels"], row["word_start_mask"]):
            assert (label == -100) == (start == 0)
        example = examples[row["example_index"]]
        n_units = sum(row["word_start_mask"])
        chain_labels = [l for l in row["labels"] if l != -100]
        offset = row["unit_offset"]
        assert chain_labels == [label2id[t] for t in example["tags"][offset : offset + n_units]]
        covered[row["example_index"]].update(range(offset, offset + n_units))
    assert covered == {0: set(range(300)), 1: set(range(20))}
    if not overlap:
        assert sum(sum(r["word_start_mask"]) for r in rows) == 320  # tiling: every word exactly once
    else:
        assert sum(sum(r["word_start_mask"]) for r in rows) > 320


def test_encode_examples_multi_piece_words_first_sub_token(tiny_tokenizer):
    example = {"id": "x:1", "tokens": ["newyork", "武", "newyork"], "tags": ["B-LOC", "O", "B-LOC"]}
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2}
    config = WindowConfig(max_seq_length=16)
    (row,), units = encode_examples([example], tiny_tokenizer, label2id, config, overlap=False)
    ids = tiny_tokenizer.convert_tokens_to_ids(["[CLS]", "new", "##york", "武", "new", "##york", "[SEP]"])
    assert row["input_ids"] == ids
    assert row["word_start_mask"] == [0, 1, 0, 1, 1, 0, 0]
    assert row["labels"] == [-100, 1, -100, 0, 1, -100, -100]
    assert units == [[1, 1, 1]]
    assert "labels" not in encode_examples([example], tiny_tokenizer, None, config, False)[0][0]


@pytest.mark.parametrize("scheme", ["BIO", "BIOES", "BMES"])
def test_encode_examples_label_all_tokens(tiny_tokenizer, demo_chars, scheme):
    rng = random.Random(3)
    tokens = [rng.choice(demo_chars) for _ in range(120)]
    for i in range(0, 120, 5):
        tokens[i] = "newyork"
    tags = spans_to_tags(random_spans(rng, 120), 120, scheme)
    prefixes = SCHEME_PREFIXES[scheme]
    labels = ["O"] + [f"{p}-{t}" for t in ("LOC", "ORG", "PER") for p in prefixes]
    label2id = {t: i for i, t in enumerate(labels)}
    config = WindowConfig(max_seq_length=32, stride=8, label_all_tokens=True, scheme=scheme)
    examples = [{"id": "x:1", "tokens": tokens, "tags": tags}]
    for overlap in (False, True):
        rows, units = encode_examples(examples, tiny_tokenizer, label2id, config, overlap=overlap)
        pieces = [len(tiny_tokenizer.tokenize(t)) for t in tokens]
        assert units == [pieces]
        expected_units = [label2id[t] for tag, n in zip(tags, pieces) for t in expand_word_tag(tag, n, scheme)]
        assert len(expected_units) == sum(pieces) == len(tokens) + 24
        seen = {}
        for row in rows:
            assert len(row["input_ids"]) <= 32
            inner = row["input_ids"][1:-1]
            assert row["word_start_mask"] == [0] + [1] * len(inner) + [0]  # every sub-token is a chain unit
            chain = [l for l in row["labels"] if l != -100]
            assert chain == expected_units[row["unit_offset"] : row["unit_offset"] + len(chain)]
            seen.update({row["unit_offset"] + k: v for k, v in enumerate(chain)})
        assert sorted(seen) == list(range(sum(pieces)))


def test_encode_examples_truncates_a_word_longer_than_the_window(tiny_tokenizer, caplog):
    example = {"id": "x:1", "tokens": ["武", "unknown", "汉"], "tags": ["O", "B-X", "O"]}
    label2id = {"O": 0, "B-X": 1, "I-X": 2}
    assert len(tiny_tokenizer.tokenize("unknown")) == 3
    with caplog.at_level(logging.WARNING, logger="bertcrf.ner_data"):
        config = WindowConfig(max_seq_length=4)
        rows, units = encode_examples([example], tiny_tokenizer, label2id, config, overlap=False)
    assert [r["input_ids"][1:-1] for r in rows] == [
        tiny_tokenizer.convert_tokens_to_ids(p) for p in (["武"], ["un", "##know"], ["汉"])
    ]
    assert [r["labels"] for r in rows] == [[-100, 0, -100], [-100, 1, -100, -100], [-100, 0, -100]]
    assert units == [[1, 1, 1]]
    assert any("1 words longer than 2 sub-tokens" in r.getMessage() for r in caplog.records)


def test_encode_examples_too_small_window(tiny_tokenizer):
    example = {"id": "x:1", "tokens": ["武"], "tags": None}
    with pytest.raises(ValueError, match="no room"):
        encode_examples([example], tiny_tokenizer, None, WindowConfig(max_seq_length=2), overlap=False)


# ----------------------------------------------------------------------------------------------------------------
# Stitching


@pytest.mark.parametrize("label_all_tokens", [False, True])
def test_stitch_emissions_takes_each_unit_from_its_most_central_window(tiny_tokenizer, demo_chars, label_all_tokens):
    examples = [
        long_example(demo_chars, 250, seed=5, multi_piece_every=9),
        long_example(demo_chars, 12, seed=6),
        long_example(demo_chars, 97, seed=7, multi_piece_every=4),
    ]
    config = WindowConfig(max_seq_length=24, stride=8, label_all_tokens=label_all_tokens)
    rows, units = encode_examples(examples, tiny_tokenizer, None, config, overlap=True)
    num_units = [sum(u) for u in units]
    # shuffle the rows, as a length-grouped sampler would
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    rows = [rows[i] for i in order]
    width = max(len(r["input_ids"]) for r in rows)
    logits = np.full((len(rows), width, 3), -7.0, dtype=np.float32)
    for r in range(len(rows)):
        logits[r, :, 0] = r
        logits[r, :, 1] = np.arange(width)
    stitched = stitch_emissions(logits, rows, num_units)
    assert [len(s) for s in stitched] == num_units
    assert sum(num_units) == sum(sum(u) for u in units)
    if not label_all_tokens:
        assert num_units == [len(e["tokens"]) for e in examples]

    # every (row, chain position) a unit occupies, with its distance to the nearer window edge
    occurrences = {}
    for r, row in enumerate(rows):
        positions = np.flatnonzero(row["word_start_mask"])
        for k, p in enumerate(positions):
            unit = (row["example_index"], row["unit_offset"] + k)
            occurrences.setdefault(unit, []).append((r, int(p), min(k, len(positions) - 1 - k)))
    assert len(occurrences) == sum(num_units)  # every unit in some window
    overlapped = 0
    for (example, unit), places in occurrences.items():
        r, p, filler = stitched[example][unit]
        assert filler == -7.0
        chosen = [m for rr, pp, m in places if rr == int(r) and pp == int(p)]
        assert len(chosen) == 1, (example, unit, places, r, p)  # the scores come from a real occurrence
        assert chosen[0] == max(m for _, _, m in places)
        overlapped += len(places) > 1
    assert overlapped > 0


def test_stitch_emissions_single_window_is_identity(tiny_tokenizer):
    examples = [{"id": "a:1", "tokens": ["武", "newyork", "汉"], "tags": None}]
    rows, units = encode_examples(examples, tiny_tokenizer, None, WindowConfig(max_seq_length=16), overlap=True)
    logits = np.random.default_rng(0).normal(size=(1, len(rows[0]["input_ids"]), 4)).astype(np.float32)
    (stitched,) = stitch_emissions(logits, rows, [sum(u) for u in units])
    np.testing.assert_array_equal(stitched, logits[0, [1, 2, 4]])  # [CLS] 武 new ##york 汉 [SEP]


def test_stitch_emissions_missing_unit_raises():
    rows = [{"word_start_mask": [0, 1, 1, 0], "example_index": 0, "unit_offset": 0}]
    with pytest.raises(RuntimeError, match=r"units \[2\] are in no window"):
        stitch_emissions(np.zeros((1, 4, 2), dtype=np.float32), rows, [3])


# ----------------------------------------------------------------------------------------------------------------
# Vocabulary extension


def test_extend_vocabulary(tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    unk = tiny_tokenizer.unk_token
    new_chars = ["仁", "赵", "杭", "鄱"]
    assert all(tiny_tokenizer.tokenize(c) == [unk] for c in new_chars)
    examples = [
        {"id": "a:1", "tokens": ["仁", "赵", "武", "汉", "仁"], "tags": None},
        {"id": "a:7", "tokens": ["杭", "鄱", "仁", "newyork", "赵"], "tags": None},
    ]
    before = unknown_rate(examples, tiny_tokenizer)
    assert before == pytest.approx(7 / 10)
    original_len = len(tiny_tokenizer)
    added = extend_vocabulary(tiny_tokenizer, examples)
    assert added == ["仁", "赵", "杭", "鄱"]  # most frequent first
    assert unknown_rate(examples, tiny_tokenizer) == 0.0
    assert len(tiny_tokenizer) == original_len + 4
    for c in new_chars:
        assert tiny_tokenizer.tokenize(c) == [c]
    ids = tiny_tokenizer(["仁", "武"], is_split_into_words=True)["input_ids"]
    assert tiny_tokenizer.unk_token_id not in ids
    assert extend_vocabulary(tiny_tokenizer, examples) == []  # nothing left to add

    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(reloaded) == original_len + 4
    assert reloaded.get_vocab() == tiny_tokenizer.get_vocab()
    for c in new_chars:
        assert reloaded.tokenize(c) == [c]
    assert reloaded("仁赵武")["input_ids"] == tiny_tokenizer("仁赵武")["input_ids"]
    assert unknown_rate(examples, reloaded) == 0.0


def test_extend_vocabulary_min_count_and_multi_pretoken_words(tiny_tokenizer):
    examples = [{"id": "a:1", "tokens": ["仁", "仁", "赵", "仁赵", "杭州x"], "tags": None}]
    assert extend_vocabulary(tiny_tokenizer, examples, min_count=2) == ["仁"]
    assert tiny_tokenizer.tokenize("赵") == [tiny_tokenizer.unk_token]


def test_extend_vocabulary_uppercase_is_normalized(tiny_tokenizer):
    # do_lower_case: an unknown uppercase word is added in the form the normalizer gives it
    examples = [{"id": "a:1", "tokens": ["ZQX"], "tags": None}]
    assert tiny_tokenizer.tokenize("ZQX") == [tiny_tokenizer.unk_token]
    assert extend_vocabulary(tiny_tokenizer, examples) == ["zqx"]
    assert tiny_tokenizer.tokenize("ZQX") == ["zqx"]


# ----------------------------------------------------------------------------------------------------------------
# The demo data and the real datasets


def test_demo_files_read():
    counts = {"train": 600, "dev": 120, "test": 120}
    for split, n in counts.items():
        examples = read_file(DEMO_DIR / f"{split}.txt")
        assert len(examples) == n
        assert detect_data_scheme([e["tags"] for e in examples]) == "BIO"
        assert any(FULLWIDTH_SPACE in e["tokens"] for e in examples)
        assert all(len(t) == 1 for e in examples for t in e["tokens"])


def shared(relative):
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


@pytest.mark.parametrize(
    "relative, sentences, tokens, entities, scheme",
    [
        ("resume/dev.char.bmes", 463, 13890, 1497, "BMES"),
        ("msra/msra_test_bio", 3442, 172601, 6190, "BIO"),
        ("conll2003/eng.testa", 3250, 51362, 5942, "IOB1"),
        ("peoples_daily/example.dev", 2318, 109870, 3819, "BIO"),
    ],
)
def test_real_column_data(relative, sentences, tokens, entities, scheme):
    path = shared(relative)
    assert sniff_format(path) == "column"
    examples = read_file(path)
    assert len(examples) == sentences
    assert sum(len(e["tokens"]) for e in examples) == tokens
    tag_sequences = [e["tags"] for e in examples]
    assert detect_data_scheme(tag_sequences) == scheme
    assert sum(len(tags_to_spans(t, scheme)) for t in tag_sequences) == entities
    if relative.startswith("msra"):
        assert max(len(e["tokens"]) for e in examples) == 2427
    if relative.startswith("conll"):
        assert not any(t.startswith("-DOCSTART-") for e in examples for t in e["tokens"])
        assert examples[0]["tokens"][:2] == ["CRICKET", "-"]


def test_real_cluener_dev(caplog):
    path = shared("cluener/dev.json")
    assert sniff_format(path) == "spans"
    with caplog.at_level(logging.WARNING, logger="bertcrf.ner_data"):
        examples = read_file(path)
    assert len(examples) == 1343
    assert sum(len(e["tokens"]) for e in examples) == 50260
    assert all(e["tags"] is not None and len(e["tags"]) == len(e["tokens"]) for e in examples)
    assert sum(len(tags_to_spans(e["tags"], "BIO")) for e in examples) == 3072  # no overlaps in dev
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert detect_data_scheme([e["tags"] for e in examples]) == "BIO"
    assert len(label_list([e["tags"] for e in examples], "BIO")) == 21


def test_raw_text_skips_blank_lines_and_rejects_broken_utf8(tmp_path):
    good = tmp_path / "raw.txt"
    good.write_text("第一行\n\n   \n second line \n", encoding="utf-8")
    assert list(ner_data.read_text_lines(str(good))) == ["第一行", "second line"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected UTF-8 text.*found bytes that are not UTF-8"):
        list(ner_data.read_text_lines(str(bad)))
    with pytest.raises(FileNotFoundError, match="no such text file"):
        list(ner_data.read_text_lines(str(tmp_path / "missing.txt")))


GBK_SENTENCE = "张三在北京"


@pytest.mark.parametrize("kind", ["column", "jsonl", "spans"])
def test_every_reader_names_the_line_of_bytes_that_are_not_utf8(tmp_path, kind):
    """A GBK file (common for Chinese data) stops with its file and line and how to convert it."""
    good = {
        "column": "李 B-PER\n四 I-PER\n\n",
        "jsonl": '{"tokens": ["a"], "tags": ["O"]}\n',
        "spans": '{"text": "ab", "label": {}}\n',
    }[kind]
    bad = {
        "column": "".join(f"{c} O\n" for c in GBK_SENTENCE),
        "jsonl": json.dumps({"tokens": list(GBK_SENTENCE)}, ensure_ascii=False) + "\n",
        "spans": json.dumps({"text": GBK_SENTENCE}, ensure_ascii=False) + "\n",
    }[kind]
    path = tmp_path / f"data.{kind}"
    path.write_bytes(good.encode("utf-8") + bad.encode("gbk"))
    line = good.count("\n") + 1
    with pytest.raises(DataFormatError, match=rf"data.{kind}:{line}: expected UTF-8 text .*iconv -f GBK.*found bytes"):
        read_file(path)


def test_text_lines_split_on_newlines_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(codecs_bom() + "a\rb\r\nc\n\nd".encode())
    assert list(ner_data.text_lines(path)) == [(1, "a\rb"), (2, "c"), (3, ""), (4, "d")]


def codecs_bom():
    import codecs

    return codecs.BOM_UTF8


def test_a_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a data file"):
        read_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_file(tmp_path / "missing.txt")


def test_labels_outside_every_scheme_are_named_with_their_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("张 B-PER\n三 I-PER\n\n北 B-LOC\n京 X-LOC\n在 O\n\n", encoding="utf-8")
    examples = read_file(path)
    message = r"'X-LOC' x1 \(first at .*train.txt:5\).*other labels are BIO.*--data_tag_scheme none"
    with pytest.raises(ValueError, match=message):
        ner_data.detect_examples_scheme(examples)
    # bare type names fit no scheme either; a file of O tags only is scheme-less and fine
    with pytest.raises(ValueError, match="'PER' x1"):
        ner_data.detect_examples_scheme([{"id": "a:1", "tokens": ["x", "y"], "tags": ["PER", "B-LOC"]}])
    assert ner_data.detect_examples_scheme([{"id": "a:1", "tokens": ["x"], "tags": ["O"]}]) == "none"
    assert ner_data.detect_examples_scheme(examples[:1]) == "BIO"
