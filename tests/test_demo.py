"""`make demo`'s recipe end to end on a tiny encoder and a few sentences (the fast path: the real run trains for
minutes): real-text scores first, then the other data, calibrated scores, and a card that says so."""

import json
import os
import subprocess

import pytest
from huggingface_hub import ModelCard

from conftest import REPO_ROOT


@pytest.mark.slow
def test_make_demo_recipe_on_a_tiny_encoder(tiny_checkpoint, tmp_path):
    out = tmp_path / "demo"
    small = "--max_train_samples 40 --max_eval_samples 40 --max_predict_samples 40 --num_hidden_layers 2"
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "demo",
            f"DEMO_ENCODER={tiny_checkpoint}",
            f"DEMO_OUT={out}",
            f"DEMO_ARGS={small} --per_device_eval_batch_size 8 --show_examples 0",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()

    def first(text):
        return next(i for i, line in enumerate(lines) if text in line)

    # Real held-out text first (MSRA's test set), then the calibration, then the other kinds of text, then the card.
    assert first("test ") == first("(data/msra/test.json)") == first("Entity F1")
    assert first("Entity F1") < first("Entity score calibration error") < first("data/weibo/test.json (270")
    assert first("data/weibo/test.json (270") < first("data/check/everyday.txt (30") < first("| data | split |")
    assert not any("data/demo/test.txt" in line or "data/demo/dev.txt" in line for line in lines)

    config = json.loads((out / "config.json").read_text())
    assert config["confidence_temperature"] > 0 and config["lexicon_types"] and config["num_hidden_layers"] == 2
    card = ModelCard.load(out / "README.md")
    evaluated = {(r.dataset_name, r.dataset_split) for r in card.data.eval_results}
    assert evaluated == {
        ("msra", "validation"),
        ("msra", "test"),
        ("Weibo NER (social media)", "test"),
        ("everyday sentences (data/check)", "test"),
    }
    assert {r.metric_type for r in card.data.eval_results} >= {"f1", "ece"}
    assert card.data.datasets == ["levow/msra_ner"] and card.data.language == "zh" and card.data.widget
    assert "## What it is not good at" in card.text and "confidence temperature" in card.text
