"""Do a model's entity scores mean what they say? Expected calibration error before and after its confidence
temperature, on real held-out text, and the reliability diagram in docs/.

For a trained bert-crf folder (default: outputs/demo, what `make demo` writes), tags each dataset with the PyTorch
pipeline twice: at temperature 1 (the raw CRF marginals) and at the folder's `confidence_temperature` (fitted by
run_ner.py on the dev split). An entity's score is the pipeline's (the mean of its characters' marginals); it is right
when its type and span match a gold entity. ECE: 10 equal-width bins, the share of entities in a bin times the gap
between its accuracy and its mean score, summed.

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
    "MSRA test (news)": ROOT / "data" / "msra" / "test.json",
    "Weibo NER test (social media)": ROOT / "data" / "weibo" / "test.json",
    "everyday sentences": ROOT / "data" / "check" / "everyday.txt",
}


def confidences(pipe, texts: list[str], gold: list[set], temperature: float) -> tuple[np.ndarray, np.ndarray]:
    from bertcrf import calibration

    pipe.model.crf.temperature = temperature
    found = pipe(texts, aggregation_strategy="simple", batch_size=32)
    spans = [[(e["entity_group"], e["start"], e["end"], e["score"]) for e in entities] for entities in found]
    return calibration.span_confidences(gold, spans)


def measure(model: str, datasets: dict[str, Path]) -> dict:
    from bertcrf import calibration
    from bertcrf.crf_models import load_crf_pipeline

    pipe = load_crf_pipeline(model, device="cpu")
    fitted = float(pipe.model.config.confidence_temperature)
    rows = []
    for name, path in datasets.items():
        texts, gold = gold_and_texts(path)
        for label, temperature in (("raw marginals (temperature 1)", 1.0), ("calibrated", fitted)):
            start = time.perf_counter()
            scores, right = confidences(pipe, texts, gold, temperature)
            rows.append(
                {
                    "data": name,
                    "scores": label,
                    "temperature": temperature,
                    "entities": int(len(scores)),
                    "right": float(right.mean()) if len(right) else 0.0,
                    "mean_score": float(scores.mean()) if len(scores) else 0.0,
                    "ece": calibration.expected_calibration_error(scores, right),
                    "bins": calibration.reliability(scores, right),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(f"{name}, {label}: {calibration.describe(scores, right)}", flush=True)
    return {"model": model, "temperature": fitted, "cpu": cpu_info(), "rows": rows}


def plot(result: dict, path: Path) -> None:
    """Reliability diagrams, one panel per dataset: accuracy against mean score per bin, before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["data"] for row in result["rows"]))
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        axis.plot([0, 1], [0, 1], color="0.7", linestyle="--", label="perfect")
        for row, style in zip([r for r in result["rows"] if r["data"] == name], ("o-", "s-")):
            mean, accuracy, _ = zip(*row["bins"]) if row["bins"] else ((), (), ())
            axis.plot(mean, accuracy, style, label=f"{row['scores']}: ECE {row['ece']:.3f}")
        axis.set(
            title=name, xlabel="entity score (bin mean)", ylabel="share of entities right", xlim=(0, 1), ylim=(0, 1)
        )
        axis.legend(loc="upper left", fontsize=7)
    figure.suptitle(f"{Path(result['model']).name}: confidence temperature {result['temperature']:.3g}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def write_tables(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "| data | scores | temperature | entities | right | mean score | ECE | CPU |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['data']} | {r['scores']} | {r['temperature']:.3g} | {r['entities']} | {100 * r['right']:.1f}% "
            f"| {r['mean_score']:.3f} | **{r['ece']:.3f}** | {cpu_label(result['cpu'])} |"
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
