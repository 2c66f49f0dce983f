"""bertcrf/data_files.py: one owner of format detection and dispatch; the options that reach the readers from
run_ner.py (DataTrainingArguments) and evaluate_pipeline.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import evaluate_pipeline
import run_mlm
import run_ner
from bertcrf import training
from bertcrf.data_files import DATA_FORMATS, read_file
from bertcrf.ner_data import DataFormatError


ROOT = Path(__file__).resolve().parents[1]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def bertcrf_imports(module: str) -> set[str]:
    """The bertcrf modules that bertcrf/<module>.py imports, at any depth of its code."""
    tree = ast.parse((ROOT / "bertcrf" / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "bertcrf":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertcrf."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bertcrf.")}
    return found


def test_the_readers_form_a_line_not_a_loop():
    """ner_data <- annotations <- data_files: the dispatcher imports both readers and neither imports it."""
    assert bertcrf_imports("ner_data") == set()
    assert bertcrf_imports("annotations") == {"ner_data"}
    assert {"ner_data", "annotations"} <= bertcrf_imports("data_files")


DOCCANO = '{"id": 1, "text": "张三在北京", "label": [[0, 2, "PER"], [3, 5, "LOC"]]}\n{"text": "好", "label": []}\n'


@pytest.mark.parametrize(
    "text, looks_like, value",
    [
        (DOCCANO, "doccano JSONL", "doccano"),
        ('[{"id": 1, "data": {"text": "张三"}}]\n', "a Label Studio JSON export", "label-studio"),
        ('{"tokens": ["张"], "tags": ["B-PER"]}\n', "JSON lines", "jsonl"),
        ('{"text": "张三", "label": {"PER": {"张三": [[0, 1]]}}}\n', "CLUENER-style JSON lines", "cluener"),
    ],
)
def test_a_json_file_read_as_column_is_refused(tmp_path, text, looks_like, value):
    """--data_format column on a doccano export would train on JSON fragments ('{"text":' tagged '[]}')."""
    path = write(tmp_path / "data.jsonl", "\n" + text)
    with pytest.raises(DataFormatError) as info:
        read_file(path, data_format="column")
    message = str(info.value)
    assert f"{path}:2:" in message and f"looks like {looks_like}" in message
    assert f"pass --data_format {value}" in message and "--data_tag_scheme" not in message


def test_a_column_file_whose_token_is_a_brace_still_reads(tmp_path):
    path = write(tmp_path / "c.txt", "{ O\n张 B-PER\n} O\n\n[ O\n")
    assert [e["tokens"] for e in read_file(path, data_format="column")] == [["{", "张", "}"], ["["]]


def label_studio_export(path, skipped=1, key="text"):
    """Ten tasks, the first `skipped` of them skipped (their only annotation cancelled), as Label Studio exports."""
    tasks = []
    for i in range(1, 11):
        result = [{"type": "labels", "value": {"start": 0, "end": 2, "text": "张三", "labels": ["PER"]}}]
        tasks.append(
            {
                "id": i,
                "data": {key: "张三来了", "line": i},
                "annotations": [{"id": i, "was_cancelled": i <= skipped, "result": [] if i <= skipped else result}],
                "predictions": [100 + i],
            }
        )
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


def data_args(**values):
    return run_ner.parse_args(
        [
            "--model_name_or_path",
            "x",
            "--output_dir",
            "unused",
            *sum(([f"--{k}", str(v)] for k, v in values.items()), []),
        ]
    )[1]


def test_run_ner_and_evaluate_pipeline_leave_skipped_tasks_out(tmp_path):
    """A skipped task used to stop both with "1 of 10 sentences have no tags"."""
    path = label_studio_export(tmp_path / "export.json")
    steps = SimpleNamespace(do_train=True, do_eval=False, do_predict=False, eval_strategy="no")
    raw = training.load_raw_splits(None, data_args(train_file=path), steps)
    assert len(raw["train"]) == 9 and all(e["tags"] == ["B-PER", "I-PER", "O", "O"] for e in raw["train"])
    labels = ["O", "B-PER", "I-PER"]
    config = SimpleNamespace(resolved_tag_scheme="BIO", id2label=dict(enumerate(labels)), num_labels=3)
    assert len(evaluate_pipeline.load_examples(str(path), config, None, False)) == 9
    with pytest.raises(DataFormatError, match="no annotated task among 10 .10 skipped"):
        read_file(label_studio_export(tmp_path / "none.json", skipped=10))


def test_text_key_and_doccano_offsets_reach_the_readers(tmp_path):
    path = label_studio_export(tmp_path / "content.json", skipped=0, key="content")
    args = data_args(train_file=path, text_key="content", doccano_offsets="characters")
    assert (args.text_key, args.doccano_offsets) == ("content", "characters")
    steps = SimpleNamespace(do_train=True, do_eval=False, do_predict=False, eval_strategy="no")
    assert len(training.load_raw_splits(None, args, steps)["train"]) == 10
    labels = ["O", "B-PER", "I-PER"]
    config = SimpleNamespace(resolved_tag_scheme="BIO", id2label=dict(enumerate(labels)), num_labels=3)
    assert len(evaluate_pipeline.load_examples(str(path), config, None, False, text_key="content")) == 10
    assert run_mlm.ner_file_lines(str(path), "content") == ["张三来了"] * 10
    # doccano's UTF-16 offsets, or the same numbers read as characters: the flag decides.
    doccano = write(tmp_path / "d.jsonl", '{"text": "😀张三在北京", "label": [[2, 4, "PER"]]}\n')
    read = {
        unit: evaluate_pipeline.load_examples(str(doccano), config, None, False, doccano_offsets=unit)[0]["tags"]
        for unit in ("auto", "characters")
    }
    assert read == {
        "auto": ["O", "B-PER", "I-PER", "O", "O", "O"],
        "characters": ["O", "O", "B-PER", "I-PER", "O", "O"],
    }
    with pytest.raises(ValueError, match="--doccano_offsets must be one of"):
        data_args(train_file=doccano, doccano_offsets="bytes")
    assert DATA_FORMATS[0] == "auto"
