"""bertcrf/outputs.py: what a run of run_ner.py or distill.py may write where (its inputs are never lost), and
predictions files that appear only once complete."""

from __future__ import annotations

import shutil

import pytest

import distill
import run_ner
from bertcrf import outputs
from conftest import DEMO_DIR


QUIET = ["--report_to", "none", "--disable_tqdm", "True"]


def argv_of(**options) -> list[str]:
    argv = []
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv + QUIET


def test_training_into_the_model_folder_is_refused(tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    argv = argv_of(model_name_or_path=model, train_file=DEMO_DIR / "train.txt", output_dir=model, do_train=True)
    for extra in ([], ["--overwrite_output_dir"]):
        with pytest.raises(ValueError, match=r"--output_dir .* is the --model_name_or_path folder.*another"):
            run_ner.parse_args(argv + extra)
    # Evaluating a model into its own folder writes only predictions and results beside it: allowed.
    run_ner.parse_args(argv_of(model_name_or_path=model, validation_file=DEMO_DIR / "dev.txt", output_dir=model))


@pytest.mark.parametrize(
    "name, do_train, refused",
    [
        ("predictions_test.jsonl", False, True),  # rewritten by --do_predict
        ("eval_results.json", False, True),
        ("README.md", True, True),  # the model card, after training
        ("README.md", False, False),
        ("checkpoint-4/test.txt", True, True),  # removed once trained (or by --overwrite_output_dir)
        ("test.txt", True, False),  # nothing of that name is written
    ],
)
def test_a_data_file_where_the_run_writes_is_refused(tiny_checkpoint, tmp_path, name, do_train, refused):
    out = tmp_path / "out"
    data = out / name
    data.parent.mkdir(parents=True)
    shutil.copy(DEMO_DIR / "test.txt", data)
    argv = argv_of(
        model_name_or_path=tiny_checkpoint,
        train_file=DEMO_DIR / "train.txt",
        test_file=data,
        output_dir=out,
        do_predict=True,
        do_train=do_train,
        overwrite_output_dir=True,
    )
    if refused:
        with pytest.raises(ValueError, match=rf"--test_file .*{name.split('/')[0]}.* lies in --output_dir .* lost"):
            run_ner.parse_args(argv)
    else:
        run_ner.parse_args(argv)


def test_distilling_into_the_teacher_folder_is_refused(crf_checkpoint, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(crf_checkpoint, teacher)
    argv = argv_of(teacher_name_or_path=teacher, train_file=DEMO_DIR / "train.txt", output_dir=teacher, do_train=True)
    with pytest.raises(ValueError, match="is the --teacher_name_or_path folder"):
        distill.parse_args(argv)
    text = tmp_path / "out" / "predictions_extra.txt"
    text.parent.mkdir()
    text.write_text("张三在北京。\n", encoding="utf-8")
    argv = argv_of(teacher_name_or_path=teacher, train_file=DEMO_DIR / "train.txt", output_dir=text.parent)
    with pytest.raises(ValueError, match="--teacher_text_files .*predictions_extra.txt lies in --output_dir"):
        distill.parse_args(argv + ["--do_train", "--teacher_text_files", str(text)])


def _examples(count):
    return [{"id": str(i), "tokens": ["张", "三"], "tags": ["B-PER", "I-PER"]} for i in range(count)]


def test_predictions_files_appear_only_once_complete(tmp_path):
    tags, scores = [["B-PER", "I-PER"]] * 3, [[0.9, 0.8]] * 3
    outputs.write_predictions(str(tmp_path), "test", _examples(3), tags, scores, "BIO")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"predictions_test.txt", "predictions_test.jsonl"}
    broken = tags[:2] + [["B-PER"]]  # the third example's predictions do not fit: the writer stops there
    with pytest.raises(RuntimeError, match="2: 2 tokens but 1 predictions"):
        outputs.write_predictions(str(tmp_path), "test", _examples(3), broken, scores, "BIO")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the earlier files, no temporary ones
