"""tag.py: raw text lines in, JSON lines of entities or a column file out."""

from __future__ import annotations

import io
import json
import random
import re
import sys

import pytest

import tag
from conftest import demo_characters, load_crf_pipeline, untrusted_copy


_RNG = random.Random(3)
_CJK = [c for c in demo_characters() if "\u4e00" <= c <= "\u9fff"]
LONG_LINE = "".join(_RNG.choice(_CJK) for _ in range(300))
LINES = [
    "受台风影响，武汉至上海的航班今天全部取消。",
    "",
    "2024年ＡＩ大会在北京举行, Apple CEO Tim Cook",
    "   ",
    LONG_LINE,  # several windows
    "北京\u3000上海 😀",
    "\u3000",
    "newyork playing unknown",
]


def write_input(path, lines, newline="\n"):
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_entities_match(got, expected):
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected):
        assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in e.items() if k != "score"}
        assert g["score"] == pytest.approx(e["score"], abs=6e-5)  # written rounded to 4 decimals


def test_jsonl(crf_checkpoint, crf_pipeline, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    records = read_jsonl(out)
    assert [r["line"] for r in records] == list(range(1, len(LINES) + 1))
    assert [r["text"] for r in records] == LINES
    for r in records:
        text = r["text"]
        if not text.strip():
            assert r["entities"] == []
            continue
        for e in r["entities"]:
            assert set(e) == {"entity_group", "score", "word", "start", "end"}
            assert text[e["start"] : e["end"]] == e["word"]
            assert e["score"] == round(e["score"], 4)
        assert_entities_match(r["entities"], crf_pipeline(text, aggregation_strategy="simple"))
    assert any(r["entities"] for r in records)


def test_jsonl_scores_are_probabilities(crf_checkpoint, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    scores = [(r["line"], e["word"], e["score"]) for r in read_jsonl(out) for e in r["entities"]]
    assert scores and all(0.0 < s <= 1.0 for _, _, s in scores), [x for x in scores if not 0.0 < x[2] <= 1.0]


def test_batch_size_does_not_change_output(crf_checkpoint, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES)
    outputs = []
    for batch_size in ("1", "3"):
        out = tmp_path / f"out{batch_size}.jsonl"
        tag.main(
            [
                "--model",
                str(crf_checkpoint),
                "--input",
                str(source),
                "--output",
                str(out),
                "--no_progress",
                "--batch_size",
                batch_size,
            ]
        )
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]


def test_crlf_input(crf_checkpoint, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES[:3], newline="\r\n")
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    assert [r["text"] for r in read_jsonl(out)] == LINES[:3]


def expected_columns(pipe, lines):
    chunks = []
    for line in lines:
        if line.strip():
            chunks += [f"{w['word']}\t{w['entity']}\n" for w in pipe(line, ignore_labels=[])]
        chunks.append("\n")
    return "".join(chunks)


def test_column_format(crf_checkpoint, crf_pipeline, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.tsv"
    tag.main(
        [
            "--model",
            str(crf_checkpoint),
            "--input",
            str(source),
            "--output",
            str(out),
            "--format",
            "column",
            "--no_progress",
        ]
    )
    written = out.read_text(encoding="utf-8")
    assert written == expected_columns(crf_pipeline, LINES)
    # One block per input line, each ended by a blank line; every word of the long line is listed.
    rows = written.split("\n")
    assert rows[-1] == ""
    blocks, current = [], []
    for row in rows[:-1]:
        if row:
            current.append(row)
        else:
            blocks.append(current)
            current = []
    assert current == [] and len(blocks) == len(LINES)
    for line, block in zip(LINES, blocks):
        assert (block == []) == (not line.strip())
    assert [row.split("\t")[0] for row in blocks[LINES.index(LONG_LINE)]] == list(LONG_LINE)
    for row in written.splitlines():
        if row:
            word, label = row.split("\t")
            assert word and label in crf_pipeline.model.config.label2id


def fake_stdin(data: bytes):
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def test_stdin(crf_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", fake_stdin(("\n".join(LINES[:3]) + "\n").encode()))
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--output", str(out), "--no_progress"])
    records = read_jsonl(out)
    assert [r["line"] for r in records] == [1, 2, 3]
    assert [r["text"] for r in records] == LINES[:3]
    assert records[1]["entities"] == []


def test_stdout(crf_checkpoint, tmp_path, monkeypatch):
    """Writing to stdout (the default) must leave sys.stdout usable for the caller of main()."""
    source = write_input(tmp_path / "in.txt", LINES[:3])
    fake_stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake_stdout)
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--no_progress"])
    assert not fake_stdout.closed, "tag.main closed sys.stdout"
    records = [json.loads(line) for line in fake_stdout.getvalue().splitlines()]
    assert [r["text"] for r in records] == LINES[:3]


def test_empty_input(crf_checkpoint, tmp_path):
    source = tmp_path / "empty.txt"
    source.write_text("", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    assert out.read_text(encoding="utf-8") == ""


def test_only_blank_lines(crf_checkpoint, tmp_path):
    source = write_input(tmp_path / "blank.txt", ["", "  ", "\u3000"])
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    assert [(r["line"], r["entities"]) for r in read_jsonl(out)] == [(1, []), (2, []), (3, [])]


def test_student_checkpoint(student_checkpoint, tmp_path):
    """A distilled BiLSTM-CRF folder tags like its own pipeline."""
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(student_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    pipe = load_crf_pipeline(student_checkpoint)
    records = read_jsonl(out)
    assert any(r["entities"] for r in records)
    for r in records:
        assert_entities_match(
            r["entities"], pipe(r["text"], aggregation_strategy="simple") if r["text"].strip() else []
        )


def test_a_lone_carriage_return_stays_inside_its_line(crf_checkpoint, tmp_path, monkeypatch):
    lines = ["张三\r在北京", "李四"]
    source = write_input(tmp_path / "in.txt", lines)
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    assert [(r["line"], r["text"]) for r in read_jsonl(out)] == [(1, lines[0]), (2, lines[1])]
    columns = tmp_path / "out.tsv"
    monkeypatch.setattr(sys, "stdin", fake_stdin("\n".join(lines).encode()))
    tag.main(["--model", str(crf_checkpoint), "--output", str(columns), "--format", "column", "--no_progress"])
    assert columns.read_text(encoding="utf-8").count("\n\n") == 2  # one block per input line


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_text_that_is_not_utf8_stops_with_its_line(crf_checkpoint, tmp_path, monkeypatch, capsys, where):
    data = "第一行\n".encode() + "张三在北京".encode("gbk") + b"\n"
    argv = ["--model", str(crf_checkpoint), "--output", str(tmp_path / "out.jsonl"), "--no_progress"]
    if where == "file":
        (tmp_path / "gbk.txt").write_bytes(data)
        argv += ["--input", str(tmp_path / "gbk.txt")]
    else:
        monkeypatch.setattr(sys, "stdin", fake_stdin(data))
    with pytest.raises(SystemExit) as info:
        tag.main(argv)
    assert info.value.code == 2
    name = "gbk.txt" if where == "file" else "<stdin>"
    assert re.search(rf"{re.escape(name)}:2: expected UTF-8 text .*iconv", capsys.readouterr().err)
    assert not (tmp_path / "out.jsonl").exists()


def test_no_remote_code_without_the_flag(crf_checkpoint, tmp_path):
    folder, marker = untrusted_copy(crf_checkpoint, tmp_path)
    source = write_input(tmp_path / "in.txt", LINES[:1])
    tag.main(["--model", str(folder), "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--no_progress"])
    assert not marker.exists(), "tag.py ran code from the model folder without --trust_remote_code"
    assert read_jsonl(tmp_path / "o.jsonl")[0]["text"] == LINES[0]
