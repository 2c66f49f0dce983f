"""tag.py: raw text lines in, JSON lines of entities or a column file out."""

from __future__ import annotations

import io
import json
import os
import random
import re
import stat
import sys

import pytest

import tag
from bertcrf import corpus
from conftest import REPO_ROOT, demo_characters, load_crf_pipeline, untrusted_copy


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


# ----------------------------------------------------------------------------------------------------------------
# Nothing lost on disk, and errors without tracebacks


def _refuse_to_load(*args, **kwargs):
    raise AssertionError("the model was loaded")


@pytest.mark.parametrize("link", ["path", "relative", "symlink", "hardlink"])
def test_an_output_that_is_the_input_is_refused_before_loading(tmp_path, monkeypatch, link):
    source = write_input(tmp_path / "in.txt", LINES[:3])
    before = source.read_bytes()
    output = {
        "path": source,
        "relative": tmp_path / "sub" / ".." / "in.txt",
        "symlink": tmp_path / "link.txt",
        "hardlink": tmp_path / "hard.txt",
    }[link]
    (tmp_path / "sub").mkdir()
    if link == "symlink":
        output.symlink_to(source)
    elif link == "hardlink":
        os.link(source, output)
    monkeypatch.setattr(tag, "load_tagger", _refuse_to_load)
    with pytest.raises(ValueError, match=r"--output .* is the --input file .*same file by path, link or inode"):
        tag.main(["--model", "unused", "--input", str(source), "--output", str(output), "--no_progress"])
    assert source.read_bytes() == before


def test_an_interrupted_run_keeps_the_previous_output_and_continues(
    crf_checkpoint, tmp_path, monkeypatch, capsys, caplog
):
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    argv = ["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"]
    tag.main([*argv, "--chunk_size", "3"])
    complete = out.read_bytes()
    with pytest.raises(FileExistsError, match="out.jsonl exists: add --overwrite"):
        tag.main([*argv, "--chunk_size", "3"])
    written = []
    real_item = corpus.jsonl_item

    def item_then_stop(number, text, entities):
        if len(written) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second chunk
        written.append(number)
        return real_item(number, text, entities)

    monkeypatch.setattr(corpus, "jsonl_item", item_then_stop)
    with pytest.raises(KeyboardInterrupt):
        tag.main([*argv, "--chunk_size", "2", "--overwrite"])
    assert written == [1, 2, 3, 4]
    assert out.read_bytes() == complete  # the old output stands
    parts = tmp_path / "out.jsonl.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["00000000.part", "00000001.part", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl", "out.jsonl.parts"]
    monkeypatch.setattr(corpus, "jsonl_item", item_then_stop)
    written.clear()
    with pytest.raises(
        FileExistsError, match=r"out.jsonl.parts holds chunks of an earlier run with another chunk_size"
    ):
        tag.main([*argv, "--chunk_size", "3"])  # chunks of 2 lines are not mixed with chunks of 3
    tag.main([*argv, "--chunk_size", "2"])  # the same command continues: lines 5 on only
    assert "out.jsonl.parts: 2 complete chunks of 2 records kept" in caplog.text  # a warning: shown unconfigured
    assert written == [5, 6, 7, 8]
    assert out.read_bytes() == complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]


def test_a_new_output_file_gets_the_usual_permissions(crf_checkpoint, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES[:1])
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def _run_cli(argv, capsys):
    from bertcrf import cli

    with pytest.raises(SystemExit) as info:
        cli.run(tag.main, argv)
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("model", ["/nonexistent/model", "outputs/no-such-model"])
def test_a_missing_model_folder_is_named(tmp_path, capsys, model):
    source = write_input(tmp_path / "in.txt", LINES[:1])
    err = _run_cli(["--model", model, "--input", str(source), "--output", str(tmp_path / "o.jsonl")], capsys)
    assert f"{model}: no such folder" in err and "Hub id" in err and "network" in err
    assert "Repo id must" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # nothing written, no temporary file left


def test_cuda_without_cuda_is_a_clear_message(crf_checkpoint, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    source = write_input(tmp_path / "in.txt", LINES[:1])
    argv = ["--model", str(crf_checkpoint), "--input", str(source), "--device", "cuda", "--no_progress"]
    err = _run_cli(argv, capsys)
    assert "--device cuda: CUDA is not available here" in err and "--device cpu" in err
    assert "AssertionError" not in err and "not compiled" not in err


def test_the_script_prints_user_errors_without_a_traceback(tmp_path, omp_env):
    import subprocess

    source = write_input(tmp_path / "in.txt", LINES[:1])
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "tag.py"),
        "--model",
        str(tmp_path / "nothing"),
        "--input",
        str(source),
    ]
    result = subprocess.run(command, env=omp_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith(f"tag.py: error: {tmp_path / 'nothing'}: no such folder")
    assert "Traceback" not in result.stderr and "BERTCRF_TRACEBACK=1" in result.stderr
    result = subprocess.run(
        command, env=dict(omp_env, BERTCRF_TRACEBACK="1"), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_dictionary_forces_and_forbids(crf_checkpoint, crf_pipeline, tmp_path):
    text = "武汉至上海的航班今天全部取消。"
    source = write_input(tmp_path / "in.txt", [text])
    free = crf_pipeline(text, aggregation_strategy="simple")
    assert free, "the tiny model should find some entity here"
    dictionary = tmp_path / "dict.tsv"
    out = tmp_path / "out.jsonl"
    argv = ["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"]
    argv.append("--overwrite")
    dictionary.write_text("航班今天\tORG\n", encoding="utf-8")
    tag.main([*argv, "--dictionary", str(dictionary)])
    entities = read_jsonl(out)[0]["entities"]
    assert ("ORG", "航班今天", 6, 10) in {(e["entity_group"], e["word"], e["start"], e["end"]) for e in entities}
    dictionary.write_text("".join(f"{e['word']}\tO\n" for e in free), encoding="utf-8")
    tag.main([*argv, "--dictionary", str(dictionary)])
    assert not {e["word"] for e in read_jsonl(out)[0]["entities"]} & {e["word"] for e in free}
    dictionary.write_text("航班\tGPE\n", encoding="utf-8")
    with pytest.raises(ValueError, match="dictionary type 'GPE' is not one of the model's types"):
        tag.main([*argv, "--dictionary", str(dictionary)])
    dictionary.write_text("航班 GPE\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dict.tsv:1: expected word<TAB>TYPE"):
        tag.main([*argv, "--dictionary", str(dictionary)])


def test_a_lexicon_model_tags_with_its_lexicon(lexicon_checkpoint, tmp_path):
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    tag.main(["--model", str(lexicon_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"])
    pipe = load_crf_pipeline(lexicon_checkpoint)
    assert pipe.model.lexicon is not None
    records = read_jsonl(out)
    assert any(r["entities"] for r in records)
    for r in records:
        assert_entities_match(
            r["entities"], pipe(r["text"], aggregation_strategy="simple") if r["text"].strip() else []
        )


def test_precision_and_compile_reach_the_pipeline(lexicon_checkpoint, tmp_path, monkeypatch):
    """--dtype bfloat16 tags with a bf16 encoder (the CRF in float32), as the pipeline with precision="bfloat16";
    --compile compiles it; both are part of what a continued run must match."""
    import pipeline_bert_crf

    made = []
    monkeypatch.setattr(
        pipeline_bert_crf, "CompiledEmissions", lambda model, backend: made.append(backend) or model.emissions
    )
    source = write_input(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    argv = ["--model", str(lexicon_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"]
    tag.main([*argv, "--dtype", "bfloat16", "--compile"])
    assert made == ["inductor"]
    pipe = load_crf_pipeline(lexicon_checkpoint, precision="bfloat16")
    for r in read_jsonl(out):
        assert_entities_match(
            r["entities"], pipe(r["text"], aggregation_strategy="simple") if r["text"].strip() else []
        )
    job = tag.make_job(tag.parse_args(tag.build_parser(), [*argv, "--dtype", "auto"]))
    assert job.options["job"]["dtype"] == "auto" and job.options["job"]["compile"] is False


def test_precision_choices_are_the_pipelines():
    import ner_acceleration

    assert tag.PRECISIONS == ner_acceleration.PRECISIONS


@pytest.mark.parametrize("extra", [["--dtype", "bfloat16"], ["--compile"]])
def test_precision_options_need_a_pytorch_model(tmp_path, capsys, extra):
    with pytest.raises(SystemExit):
        tag.parse_args(tag.build_parser(), ["--onnx", str(tmp_path), *extra])
    assert "--dtype and --compile go with --model" in capsys.readouterr().err


def test_auto_says_what_it_chose(crf_checkpoint, tmp_path, capsys, monkeypatch):
    import ner_acceleration

    monkeypatch.setattr(ner_acceleration, "bf16_hardware", lambda device: False)
    source = write_input(tmp_path / "in.txt", LINES[:1])
    tag.main(
        [
            "--model",
            str(crf_checkpoint),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--dtype",
            "auto",
        ]
    )
    assert "--dtype auto: float32" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# --rank: the texts to annotate next

POOL = [
    "受台风影响，武汉至上海的航班今天全部取消。",
    "",
    "国务院总理在北京会见了来访的法国外长和德国总理。",
    "受台风影响，武汉至上海的航班今天全部取消了。",  # a near-duplicate of line 1
    "张三在南京大学读书，李四在上海工作。",
    "今天天气很好。",
]


def test_rank_writes_the_chosen_texts_in_ranking_order(crf_checkpoint, crf_pipeline, tmp_path, capsys):
    source = write_input(tmp_path / "pool.txt", POOL)
    out = tmp_path / "next.json"
    argv = ["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--no_progress"]
    tag.main([*argv, "--rank", "3", "--format", "label-studio", "--max_similarity", "0.5"])
    tasks = json.loads(out.read_text(encoding="utf-8"))
    answers = {
        n: crf_pipeline(t, aggregation_strategy="simple", return_mistake_probability=True)
        for n, t in enumerate(POOL, 1)
        if t
    }
    # The expected order: most expected errors first, line 4 passed over when line 1 is taken before it.
    order = sorted(answers, key=lambda n: (-answers[n]["expected_errors"], n))
    twins = {1: 4, 4: 1}
    chosen = []
    for n in order:
        if twins.get(n) not in chosen and len(chosen) < 3:
            chosen.append(n)
    assert [t["data"]["line"] for t in tasks] == chosen
    assert [t["data"]["rank"] for t in tasks] == [1, 2, 3]
    for task in tasks:
        answer = answers[task["data"]["line"]]
        assert task["predictions"][0]["score"] == pytest.approx(answer["mistake_probability"], abs=6e-5)
        assert task["data"]["expected_errors"] == pytest.approx(answer["expected_errors"], abs=6e-4)
        for result in task["predictions"][0]["result"]:
            value = result["value"]
            assert task["data"]["text"][value["start"] : value["end"]] == value["text"]
    assert "ranked 5 texts: chose 3" in capsys.readouterr().err


def test_rank_keeps_an_existing_output(crf_checkpoint, tmp_path):
    source = write_input(tmp_path / "pool.txt", POOL)
    out = tmp_path / "next.jsonl"
    out.write_text("mine\n")
    with pytest.raises(FileExistsError, match="exists: choose another --output, or --overwrite"):
        tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--rank", "2"])
    assert out.read_text() == "mine\n"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--rank", "2", "--format", "column"], "--rank writes label-studio, doccano or jsonl, not column"),
        (["--max_similarity", "0.5"], "--max_similarity goes with --rank"),
        (["--rank", "2", "--max_similarity", "2"], "--max_similarity must be between 0 and 1, got 2.0"),
        (["--rank", "0"], "--rank must be >= 1, got 0"),
    ],
)
def test_rank_option_errors(crf_checkpoint, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as info:
        tag.main(["--model", str(crf_checkpoint), "--input", str(tmp_path / "x.txt"), *options])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_rank_needs_the_pytorch_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tag.main(["--onnx", str(tmp_path), "--rank", "2"])
    assert "--rank needs --model" in capsys.readouterr().err
