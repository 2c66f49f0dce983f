"""bertcrf/corpus.py and tag.py over it: streaming inputs, chunks, several processes, resuming, ONNX."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import tag
from bertcrf import corpus
from conftest import REPO_ROOT


LINES = [
    "受台风影响，武汉至上海的航班今天全部取消。",
    "",
    "张三在北京大学工作, Apple CEO Tim Cook",
    "   ",
    "李四" + "北京上海广州深圳" * 40,  # several windows
    "王五去了上海。",
    "newyork playing unknown",
]
FORMATS = ("jsonl", "column", "label-studio", "doccano")


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_tag(model, source, out, *options, model_option="--model"):
    argv = [model_option, str(model), "--input", str(source), "--output", str(out), "--no_progress", *options]
    tag.main(argv)
    return out.read_bytes()


def empty_tagger(texts):
    return ([] for _ in texts)


# ----------------------------------------------------------------------------------------------------------------
# Inputs


@pytest.mark.parametrize(
    ("path", "requested", "expected"),
    [
        ("news.txt", "auto", "text"),
        ("-", "auto", "text"),
        ("a/b.JSONL", "auto", "jsonl"),
        ("b.ndjson", "auto", "jsonl"),
        ("x.parquet", "auto", "parquet"),
        ("x.csv", "auto", "csv"),
        ("x.json", "auto", "json"),
        ("owner/corpus", "auto", "hub"),
        ("corpus", "auto", "text"),
        ("owner/corpus.txt", "auto", "text"),
        ("./corpus", "auto", "text"),
        ("x.txt", "jsonl", "jsonl"),
    ],
)
def test_input_format(path, requested, expected):
    assert corpus.input_format(path, requested) == expected


def test_input_format_unknown():
    with pytest.raises(ValueError, match=r"input format must be one of .* got 'xml'"):
        corpus.input_format("a.xml", "xml")


def test_json_lines_text_field_and_blank_lines(crf_checkpoint, tmp_path):
    text_out = run_tag(crf_checkpoint, write_lines(tmp_path / "in.txt", LINES), tmp_path / "a.jsonl")
    records = [json.dumps({"id": i, "body": line}, ensure_ascii=False) if line else "" for i, line in enumerate(LINES)]
    source = write_lines(tmp_path / "in.jsonl", records)
    jsonl_out = run_tag(crf_checkpoint, source, tmp_path / "b.jsonl", "--text_field", "body")
    assert jsonl_out == text_out  # the same records, numbered by line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "张三"}\n{"text": "李四"\n', r"in.jsonl:2: expected a JSON object, found invalid JSON"),
        ('{"text": "张三"}\n{"body": "李四"}\n', r'in.jsonl:2: expected a "text" field .*found the fields \'body\''),
        ('{"text": null}\n', r"in.jsonl:1: expected a string, found null in 'text'"),
        ('["张三"]\n', r"in.jsonl:1: expected a JSON object, found a JSON list"),
    ],
)
def test_json_lines_mistakes_stop_before_the_model_loads(tmp_path, monkeypatch, capsys, content, message):
    (tmp_path / "in.jsonl").write_text(content, encoding="utf-8")
    monkeypatch.setattr(tag, "load_tagger", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as info:
        tag.main(["--model", "m", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    assert info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("suffix", ["parquet", "csv", "json"])
def test_datasets_files_read_as_the_text_file(crf_checkpoint, tmp_path, suffix):
    import datasets

    texts = [line for line in LINES if line.strip()]
    expected = run_tag(crf_checkpoint, write_lines(tmp_path / "in.txt", texts), tmp_path / "a.jsonl")
    table = datasets.Dataset.from_dict({"id": list(range(len(texts))), "content": texts})
    path = tmp_path / f"in.{suffix}"
    {"parquet": table.to_parquet, "csv": table.to_csv, "json": table.to_json}[suffix](str(path))
    got = run_tag(crf_checkpoint, path, tmp_path / "b.jsonl", "--text_field", "content")
    assert got == expected


def test_a_null_row_in_a_dataset_is_named(tmp_path, capsys):
    import datasets

    path = tmp_path / "in.parquet"
    datasets.Dataset.from_dict({"text": ["张三", None]}).to_parquet(str(path))
    source = corpus.open_source(str(path))
    assert source.total == 2
    with pytest.raises(corpus.DataFormatError, match=r"in.parquet, row 2: expected a string, found null"):
        list(source.read())


def test_a_hub_dataset_that_cannot_be_reached_stops_before_the_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    monkeypatch.setattr(tag, "load_tagger", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(OSError, match="owner/no-such-corpus"):
        tag.main(["--model", "m", "--input", "owner/no-such-corpus", "--output", str(tmp_path / "o.jsonl")])
    assert list(tmp_path.iterdir()) == []


def test_the_input_is_read_one_chunk_at_a_time(tmp_path):
    consumed = []

    def records():
        for number in range(1, 1_000_000):
            consumed.append(number)
            yield number, f"text {number}"

    seen = []

    def tagger(texts):
        for text in texts:
            seen.append(len(consumed))
            yield []

    source = corpus.Source("generated", records, {"input": "generated"})
    fmt = corpus.output_format("jsonl")
    for index, chunk in enumerate(corpus.chunks(source.read(), 100)):
        corpus.tag_chunk(tagger, chunk, fmt, lambda n: None)
        assert len(consumed) == 100 * (index + 1)  # never more than the chunk being tagged
        if index == 2:
            break
    assert max(seen) == 300


# ----------------------------------------------------------------------------------------------------------------
# Chunks and formats


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_do_not_change_the_output(crf_checkpoint, tmp_path, fmt, monkeypatch, capsysbinary):
    source = write_lines(tmp_path / "in.txt", LINES)
    whole = run_tag(crf_checkpoint, source, tmp_path / "a", "--format", fmt, "--chunk_size", "1000")
    assert run_tag(crf_checkpoint, source, tmp_path / "b", "--format", fmt, "--chunk_size", "1") == whole
    assert run_tag(crf_checkpoint, source, tmp_path / "c", "--format", fmt, "--chunk_size", "3") == whole
    capsysbinary.readouterr()
    tag.main(["--model", str(crf_checkpoint), "--input", str(source), "--format", fmt, "--chunk_size", "2"])
    assert capsysbinary.readouterr().out == whole  # standard output, written chunk by chunk


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_input_in_every_format(tmp_path, fmt):
    source = corpus.Source("empty", lambda: iter(()), {"input": "empty"}, 0)
    out = tmp_path / "out"
    corpus.run(source, empty_tagger, corpus.Job(str(out), corpus.output_format(fmt), progress=False))
    assert out.read_text(encoding="utf-8") == ("[]\n" if fmt == "label-studio" else "")


# ----------------------------------------------------------------------------------------------------------------
# Several processes


def first_character_tagger(texts):
    """A stand-in model: the first character of each text is an entity."""
    for text in texts:
        yield [{"entity_group": "X", "score": 1 / (1 + len(text)), "word": text[0], "start": 0, "end": 1}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_shards_join_into_the_single_process_output(tmp_path, fmt):
    """3 processes (threads here, each with its own job and a shared barrier): the output of one, byte for byte,
    whichever order they finish in."""
    lines = [f"{i}号文本" if i % 4 else "" for i in range(23)]
    source = corpus.open_source(str(write_lines(tmp_path / "in.txt", lines)))
    column_words = fmt == "column"

    def tagger(texts):
        for result in first_character_tagger(texts):
            yield [dict(result[0], entity="B-X")] if column_words else result

    def job(name):
        return corpus.Job(str(tmp_path / name), corpus.output_format(fmt, "m"), chunk_size=2, progress=False)

    corpus.run(source, tagger, job("one"))
    barrier = threading.Barrier(3)
    tagged = {}

    def process(rank):
        time.sleep(0.01 * (2 - rank))  # the last process to start is process 0, which joins the chunks
        tagged[rank] = corpus.run(source, tagger, job("three"), corpus.Shard(rank, 3, barrier.wait)).tagged

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert tagged == {0: 8, 1: 8, 2: 7}  # chunks 0, 3, 6, 9 / 1, 4, 7, 10 / 2, 5, 8, 11 (23 lines, 2 a chunk)
    assert (tmp_path / "three").read_bytes() == (tmp_path / "one").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "one", "three"]


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_accelerate_launch_two_processes(crf_checkpoint, tmp_path, omp_env):
    source = write_lines(tmp_path / "in.txt", LINES * 4)
    single = run_tag(crf_checkpoint, source, tmp_path / "one.jsonl", "--chunk_size", "3")
    out = tmp_path / "two.jsonl"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(REPO_ROOT / "scripts" / "tag.py"),
        "--model", str(crf_checkpoint), "--input", str(source), "--output", str(out), "--chunk_size", "3",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO_ROOT, env=omp_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == single
    assert "Tagging: 100%|██████████| 28/28" in proc.stderr  # the whole job's bar
    assert not (tmp_path / "two.jsonl.parts").exists()


def test_one_bar_for_the_whole_job_on_process_0(tmp_path):
    source = corpus.Source("s", lambda: iter(()), {"input": "s"}, 10)
    job = corpus.Job(str(tmp_path / "out"), corpus.output_format("jsonl"))
    shown = [corpus.Progress(source, job, corpus.Shard(rank, 2), tmp_path, corpus.Stats()).shown for rank in (0, 1)]
    assert shown == [True, False]


def test_several_processes_need_an_output_file():
    source = corpus.Source("s", lambda: iter(()), {"input": "s"})
    with pytest.raises(ValueError, match="several processes need an --output file"):
        corpus.prepare(source, corpus.Job("-", corpus.output_format("jsonl")), corpus.Shard(0, 2))


# ----------------------------------------------------------------------------------------------------------------
# Resuming


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues(crf_checkpoint, tmp_path, omp_env):
    source = write_lines(tmp_path / "in.txt", LINES * 60)  # 21 chunks of 20 lines
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, str(REPO_ROOT / "scripts" / "tag.py"), "--model", str(crf_checkpoint), "--input", str(source),
            "--output", str(out), "--chunk_size", "20", "--batch_size", "4", "--no_progress"]  # fmt: skip
    parts = tmp_path / "out.jsonl.parts"
    with subprocess.Popen(argv, cwd=REPO_ROOT, env=omp_env, stderr=subprocess.PIPE) as proc:
        deadline = time.monotonic() + 120
        while not (parts / "00000003.part").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    done = {p.name for p in parts.glob("*.part")}
    assert 4 <= len(done) < 21, "killed too late to test anything"
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=omp_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not parts.exists()
    complete = run_tag(crf_checkpoint, source, tmp_path / "whole.jsonl", "--chunk_size", "20", "--batch_size", "4")
    assert out.read_bytes() == complete


# ----------------------------------------------------------------------------------------------------------------
# ONNX


@pytest.fixture(scope="module")
def onnx_folder(crf_checkpoint, tmp_path_factory):
    import export_onnx

    return export_onnx.export(str(crf_checkpoint), str(tmp_path_factory.mktemp("onnx")), int8=True)


def _entities(path):
    return [[(e["entity_group"], e["start"], e["end"], e["score"]) for e in json.loads(line)["entities"]]
            for line in path.read_text(encoding="utf-8").splitlines()]  # fmt: skip


def test_onnx_tags_as_pytorch_does(crf_checkpoint, onnx_folder, tmp_path):
    source = write_lines(tmp_path / "in.txt", LINES)
    run_tag(crf_checkpoint, source, tmp_path / "torch.jsonl")
    run_tag(onnx_folder, source, tmp_path / "onnx.jsonl", model_option="--onnx")
    torch_found, onnx_found = _entities(tmp_path / "torch.jsonl"), _entities(tmp_path / "onnx.jsonl")
    assert [[e[:3] for e in line] for line in onnx_found] == [[e[:3] for e in line] for line in torch_found]
    for line_torch, line_onnx in zip(torch_found, onnx_found):
        for a, b in zip(line_torch, line_onnx):
            assert a[3] == pytest.approx(b[3], abs=2e-4)  # scores written to 4 decimals
    columns = [run_tag(m, source, tmp_path / f"{o}.tsv", "--format", "column", model_option=o)
               for m, o in ((crf_checkpoint, "--model"), (onnx_folder, "--onnx"))]  # fmt: skip
    assert columns[0] == columns[1]  # every word and its tag
    int8 = tmp_path / "int8.jsonl"
    run_tag(onnx_folder, source, int8, "--int8", model_option="--onnx")
    assert len(int8.read_text(encoding="utf-8").splitlines()) == len(LINES)


def test_onnx_runs_without_torch(onnx_folder, tmp_path, omp_env):
    source = write_lines(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.jsonl"
    code = (
        "import runpy, sys; sys.modules['torch'] = None; "  # any `import torch` now fails
        f"sys.argv = ['tag.py', '--onnx', {str(onnx_folder)!r}, '--input', {str(source)!r}, "
        f"'--output', {str(out)!r}, '--no_progress']; runpy.run_path('scripts/tag.py', run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=omp_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(LINES)


@pytest.mark.parametrize("runtime", ["--model", "--onnx"])
def test_stats(crf_checkpoint, onnx_folder, tmp_path, runtime):
    source = write_lines(tmp_path / "in.txt", LINES)
    model = crf_checkpoint if runtime == "--model" else onnx_folder
    run_tag(model, source, tmp_path / "out.jsonl", "--stats", str(tmp_path / "stats.json"), model_option=runtime)
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert stats["records"] == len(LINES) and stats["characters"] == sum(map(len, LINES))
    assert stats["records_per_s"] == pytest.approx(stats["records"] / stats["seconds"], rel=0.01)
    assert 0 < stats["model_share"] < 1
    assert stats["processes"] == 1


def test_model_and_onnx_are_one_choice(tmp_path, capsys):
    for argv in ([], ["--model", "a", "--onnx", "b"], ["--model", "a", "--int8"]):
        with pytest.raises(SystemExit):
            tag.main(argv)
    assert "--int8 goes with --onnx" in capsys.readouterr().err
