"""bertcrf/cli.py: a user's mistake ends a script with its message on stderr and status 1, not a traceback."""

from __future__ import annotations

import ast
import sys

import pytest

import evaluate_pipeline
import run_mlm
import run_ner
from bertcrf import cli, ner_data
from conftest import DEMO_DIR, REPO_ROOT


# Every command a user runs: run_ner.py at the top, the rest in scripts/.
SCRIPTS = ("run_ner.py", *sorted(f"scripts/{path.name}" for path in (REPO_ROOT / "scripts").glob("*.py")))


def _fails(error):
    def main(*args):
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        ner_data.DataFormatError("data.jsonl", 3, "'tokens' missing", "a JSON object with tokens"),
        ValueError("--alpha must be in [0, 1], got 2"),
        FileNotFoundError("outputs/demo: no such folder"),
    ],
)
def test_a_user_error_is_one_message_and_status_1(error, capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    monkeypatch.setattr("sys.argv", ["tag.py"])
    with pytest.raises(SystemExit) as info:
        cli.run(_fails(error))
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"tag.py: error: {error}",
        "(add --traceback or set BERTCRF_TRACEBACK=1 for the traceback)",
    ]


def test_the_traceback_on_request_and_for_bugs(monkeypatch):
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")
    with pytest.raises(ValueError, match="bad value"):
        cli.run(_fails(ValueError("bad value")))
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE)
    with pytest.raises(KeyError):  # not a user's mistake: the traceback stays
        cli.run(_fails(KeyError("tags")))
    assert cli.run(lambda *args: args, 1, 2) == (1, 2)


def test_the_traceback_flag(monkeypatch):
    # --traceback is taken off the command line before the script parses it, and shows the traceback.
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "0")  # restored after: run() sets it
    monkeypatch.setattr("sys.argv", ["tag.py", "--model", "m", "--traceback"])
    seen = []

    def main():
        seen.append(list(sys.argv))
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        cli.run(main)
    assert seen == [["tag.py", "--model", "m"]]


def _exit_message(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.run(main, argv)
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    return err


def test_run_ner_data_errors_are_messages(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    broken = tmp_path / "train.jsonl"
    broken.write_text('{"tokens": ["张", "三"], "tags": ["B-PER", "I-PER"]}\n{"tokens": ["李"\n', encoding="utf-8")
    argv = [
        "--model_name_or_path",
        str(tiny_checkpoint),
        "--train_file",
        str(broken),
        "--output_dir",
        str(tmp_path / "out"),
        "--do_train",
        "--report_to",
        "none",
    ]
    err = _exit_message(run_ner.main, argv, capsys)
    assert f"{broken}:2" in err
    missing = ["--model_name_or_path", "/nonexistent", *argv[2:]]
    err = _exit_message(run_ner.main, missing, capsys)  # said before the data is read
    assert "/nonexistent: no such folder" in err and "Repo id must" not in err
    err = _exit_message(run_ner.main, argv[:4] + ["--output_dir", str(tmp_path / "out"), "--head", "mlp"], capsys)
    assert "--head must be crf or softmax, got 'mlp'" in err


def test_run_mlm_names_a_missing_model(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    argv = ["--model_name_or_path", "/nonexistent", "--ner_files", str(DEMO_DIR / "dev.txt")]
    err = _exit_message(run_mlm.main, [*argv, "--output_dir", str(tmp_path / "out")], capsys)
    assert "/nonexistent: no such folder" in err and "Repo id must" not in err


def test_evaluate_pipeline_errors_are_messages(crf_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    err = _exit_message(
        evaluate_pipeline.main, ["--model", "/nonexistent", "--data", str(DEMO_DIR / "dev.txt")], capsys
    )
    assert "/nonexistent: no such folder" in err and "Hub id" in err and "Repo id must" not in err
    data = tmp_path / "dev.txt"
    data.write_text("张 B-PER\n三 I-PER\n\n北 B-GPE\n京 I-GPE\n\n", encoding="utf-8")
    err = _exit_message(evaluate_pipeline.main, ["--model", str(crf_checkpoint), "--data", str(data)], capsys)
    assert "'B-GPE' x1 (first at" in err and "--unknown_labels_to_o" in err


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_ends_through_cli_run(script):
    """`python <script>` must go through cli.run (tag.py's test runs one as a process)."""
    tree = ast.parse((REPO_ROOT / script).read_text(encoding="utf-8"))
    guard = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert len(guard) == 1 and "cli.run" in ast.unparse(guard[0]), ast.unparse(guard[0]) if guard else script
