"""Do a model's entity scores mean what they say? Expected calibration error before and after its confidence
temperature, on real held-out text, and the reliability diagram in docs/.

For a trained bert-crf folder (default: outputs/demo, what `make demo` writes), tags each dataset with the PyTorch
pipeline twice: at temperature 1 (the raw CRF marginals) and at the folder's `confidence_temperature` and
`mistake_temperature` (fitted by run_ner.py on the dev split, MSRA dev for the demo). An entity's score is the
pipeline's (the mean of its characters' marginals); it is right when its type and span match a gold entity. ECE: 10 equal-width bins, the share of entities in a bin times the gap
between its accuracy and its mean score, summed.

A text's score is its mistake probability (the pipeline's `mistake_probability`: 1 - P(decoded path | text) under
the CRF at the same temperature); the event it predicts is "the text holds at least one wrong or missed entity"
(its predicted entities differ from the gold ones). Its ECE is computed the same way over texts.

Usage: python benchmarks/bench_calibration.py [--model outputs/demo] [--data data/msra/test.json ...]
           [--plot docs/reliability.png] [--out benchmarks/results/bench_calibration]
(the plot needs matplotlib: pip install matplotlib)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from entities import gold_and_texts
from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATASETS = {
    "MSRA dev (news)": ROOT / "data" / "msra" / "dev.json",
    "MSRA test (news)": ROOT / "data" / "msra" / "test.json",
    "Weibo NER test (social media)": ROOT / "data" / "weibo" / "test.json",
    "everyday sentences": ROOT / "data" / "check" / "everyday.txt",
}


def confidences(
    pipe, texts: list[str], gold: list[set], temperatures: tuple[float, float]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Entity scores and whether each is right; texts' mistake probabilities and whether each holds a mistake, at
    the (entity, text) temperatures."""
    from bertcrf import calibration

    pipe.model.crf.temperature, pipe.model.crf.path_temperature = temperatures
    answers = pipe(texts, aggregation_strategy="simple", batch_size=32, return_mistake_probability=True)
    spans = [[(e["entity_group"], e["start"], e["end"], e["score"]) for e in a["entities"]] for a in answers]
    mistakes = [{(kind, start, end) for kind, start, end, _ in found} != truth for found, truth in zip(spans, gold)]
    task = (np.array([a["mistake_probability"] for a in answers]), np.array(mistakes, dtype=bool))
    return calibration.span_confidences(gold, spans), task


def calibration_row(name: str, label: str, level: str, temperature: float, scores, right, seconds: float) -> dict:
    """One table row: what was scored, the share right (entities) or holding a mistake (texts), mean score, ECE."""
    from bertcrf import calibration

    return {
        "data": name,
        "scores": label,
        "level": level,
        "temperature": temperature,
        "count": int(len(scores)),
        "right": float(right.mean()) if len(right) else 0.0,
        "mean_score": float(scores.mean()) if len(scores) else 0.0,
        "ece": calibration.expected_calibration_error(scores, right),
        "bins": calibration.reliability(scores, right),
        "seconds": round(seconds, 1),
    }


def measure(model: str, datasets: dict[str, Path]) -> dict:
    from bertcrf import calibration
    from bertcrf.crf_models import load_crf_pipeline

    pipe = load_crf_pipeline(model, device="cpu")
    fitted = (float(pipe.model.config.confidence_temperature), float(pipe.model.config.mistake_temperature))
    rows = []
    for name, path in datasets.items():
        texts, gold = gold_and_texts(path)
        for label, temperatures in (("raw marginals (temperature 1)", (1.0, 1.0)), ("calibrated", fitted)):
            start = time.perf_counter()
            (scores, right), (task_scores, mistakes) = confidences(pipe, texts, gold, temperatures)
            seconds = time.perf_counter() - start
            rows.append(calibration_row(name, label, "entity", temperatures[0], scores, right, seconds))
            rows.append(calibration_row(name, label, "text", temperatures[1], task_scores, mistakes, seconds))
            print(f"{name}, {label}: entities {calibration.describe(scores, right)}", flush=True)
            print(
                f"{name}, {label}: texts' mistake probability {task_scores.mean():.3f}, {mistakes.mean():.1%} hold a "
                f"mistake, ECE {rows[-1]['ece']:.3f}",
                flush=True,
            )
    return {
        "model": model,
        "temperature": fitted[0],
        "mistake_temperature": fitted[1],
        "cpu": cpu_info(),
        "rows": rows,
    }


def plot(result: dict, path: Path) -> None:
    """Reliability diagrams, one panel per dataset: accuracy against mean score per bin, before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["data"] for row in result["rows"]))
    figure, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 8.4), squeeze=False)
    labels = {
        "entity": ("entities", "entity score (bin mean)", "share of entities right"),
        "text": ("texts", "text's mistake probability (bin mean)", "share of texts with a mistake"),
    }
    for line, level in enumerate(labels):
        for axis, name in zip(axes[line], names):
            axis.plot([0, 1], [0, 1], color="0.7", linestyle="--", label="perfect")
            mine = [r for r in result["rows"] if r["data"] == name and r["level"] == level]
            for row, style in zip(mine, ("o-", "s-")):
                mean, accuracy, _ = zip(*row["bins"]) if row["bins"] else ((), (), ())
                axis.plot(mean, accuracy, style, label=f"{row['scores']}: ECE {row['ece']:.3f}")
            what, xlabel, ylabel = labels[level]
            axis.set(title=f"{name}: {what}", xlabel=xlabel, ylabel=ylabel, xlim=(0, 1))
            axis.set(ylim=(0, 1))
            axis.legend(loc="upper left", fontsize=7)
    figure.suptitle(
        f"{Path(result['model']).name}: confidence temperature {result['temperature']:.3g}, mistake temperature "
        f"{result['mistake_temperature']:.3g}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def write_tables(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "| data | level | scores | temperature | count | right (entities) / with a mistake (texts) | mean score "
        "| ECE | CPU |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['data']} | {r['level']} | {r['scores']} | {r['temperature']:.3g} | {r['count']} "
            f"| {100 * r['right']:.1f}% | {r['mean_score']:.3f} | **{r['ece']:.3f}** | {cpu_label(result['cpu'])} |"
            for r in result["rows"]
        ),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "outputs" / "demo"))
    parser.add_argument("--data", nargs="*", default=None, help="tagged files (default: the three of DATASETS)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "reliability.png"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_calibration"))
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").is_file():
        sys.exit(f"{args.model} holds no model: run `make demo` first, or pass --model")
    datasets = {Path(p).name: Path(p) for p in args.data} if args.data else DATASETS
    result = measure(args.model, datasets)
    write_tables(result, Path(args.out))
    if args.plot:
        plot(result, Path(args.plot))
        print(f"reliability diagram: {args.plot}")


if __name__ == "__main__":
    main()
