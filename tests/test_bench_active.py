"""The active-learning simulation's bookkeeping (benchmarks/bench_active.py): the labels a strategy needs to reach
random's final F1, and resuming from the steps a results file keeps."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO_ROOT


sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench_active import kept_steps, labels_to_reach, summarize  # noqa: E402


def step(strategy, seed, labels, f1, dataset="resume"):
    return {"dataset": dataset, "strategy": strategy, "seed": seed, "labels": labels, "f1": f1, "picks": {}}


def test_labels_to_reach_interpolates_the_mean_curve():
    records = [
        *(step("random", s, n, f) for s in (0, 1) for n, f in ((200, 70.0), (400, 74.0), (600, 80.0))),
        *(step("crf", 0, n, f) for n, f in ((200, 70.0), (400, 78.0), (600, 85.0))),
        *(step("crf", 1, n, f) for n, f in ((200, 70.0), (400, 82.0), (600, 85.0))),
    ]
    rows = {r["strategy"]: r for r in summarize(records, rounds=2)}
    assert rows["crf"]["mean"] == [70.0, 80.0, 85.0] and rows["crf"]["std"][1] == pytest.approx(2.0)
    assert rows["crf"]["labels_to_reach_random_final"] == pytest.approx(400.0)
    assert rows["random"]["labels_to_reach_random_final"] == pytest.approx(600.0)
    # Halfway between two measured points: linear.
    row = {"dataset": "resume", "strategy": "x", "labels": [200, 400], "mean": [70.0, 90.0]}
    assert labels_to_reach(row, [rows["random"]], 600) == pytest.approx(300.0)
    # Never reached, or no final random point yet.
    assert labels_to_reach({**row, "mean": [70.0, 75.0]}, [rows["random"]], 600) is None
    assert labels_to_reach(row, [rows["random"]], 800) is None


def test_kept_steps_give_the_first_step_to_every_strategy(tmp_path):
    results = tmp_path / "bench_active.json"
    results.write_text(json.dumps({"steps": [step("random", 0, 200, 70.0), step("crf", 0, 400, 75.0)]}))
    kept = kept_steps(results)
    assert set(kept) == {
        ("resume", "random", 0, 200),
        ("resume", "length", 0, 200),
        ("resume", "crf", 0, 200),
        ("resume", "crf", 0, 400),
    }
    assert kept_steps(tmp_path / "none.json") == {}
