"""Does annotating what the CRF doubts pay? The active-learning loop simulated on real text.

For each dataset (MSRA news: a pool of 10,000 training sentences; Resume: its 3,821 training sentences), each seed:
200 pool sentences drawn at random are "annotated" (their gold tags revealed), a model is fine-tuned on them and
scored on the test set (MSRA: 1,000 test sentences drawn once; Resume: all 477); then, round after round, 200 more
are chosen by a strategy, revealed, and a model fine-tuned from scratch on all revealed sentences:
- random: drawn at random;
- length: the longest first (more words per sentence; what any uncertainty that grows with length also picks);
- crf: `bertcrf.active_learning.rank` with the last round's model: most expected wrongly tagged words first (the
  pipeline's `expected_errors`, from the CRF marginals), near-duplicates of a chosen sentence passed over.
Every model: multilingual-e5-small (`make e5`, its Chinese-trimmed copy) cut to its first 4 layers, run_ner.py with
the demo's learning rates and a fixed number of steps (the same compute at every size). Target: the crf strategy
reaches random's final F1 (mean over seeds) with at most 60% of random's final labels, on both datasets.

Each fine-tuning's result is kept in outputs/bench-active/ (with the chosen sentences): the same command resumes.
Usage: python benchmarks/bench_active.py [--datasets resume msra] [--seeds 0 1 2] [--rounds 4] [--steps 150]
Writes benchmarks/results/bench_active.{json,md} and docs/active-learning.png (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bertcrf import active_learning, data_files
from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
ENCODER = ROOT / "outputs" / "multilingual-e5-small-zh"
DATASETS = {
    "resume": {"train": "resume/train.char.bmes", "test": "resume/test.char.bmes", "pool": None, "tests": None},
    "msra": {"train": "msra/msra_train_bio", "test": "msra/msra_test_bio", "pool": 10_000, "tests": 1_000},
}
STRATEGIES = ("random", "length", "crf")
FIRST = 200  # sentences annotated before the first model
BATCH = 200  # sentences annotated per round
TARGET_SHARE = 0.6  # the crf strategy's labels to reach random's final F1, as a share of random's


def sample(examples: list[dict], limit: int | None, seed: int) -> list[dict]:
    """`limit` examples drawn once with `seed` (all of them, in order, without a limit)."""
    if limit is None or limit >= len(examples):
        return examples
    picked = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in picked]


def prepare(name: str, work: Path) -> tuple[list[dict], Path]:
    """The dataset's pool (examples) and its test file (written once to `work`/data)."""
    spec = DATASETS[name]
    pool = sample(data_files.read_file(SHARED / spec["train"]), spec["pool"], seed=1234)
    test_path = work / "data" / f"{name}-test.json"
    if not test_path.is_file():
        write_examples(sample(data_files.read_file(SHARED / spec["test"]), spec["tests"], seed=1234), test_path)
    return pool, test_path


def write_examples(examples: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"tokens": e["tokens"], "tags": e["tags"]}, ensure_ascii=False) for e in examples)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def fine_tune(pool: list[dict], labelled: list[int], test_path: Path, out: Path, seed: int, steps: int) -> float:
    """Fine-tune a fresh model on the labelled pool sentences; its test entity F1 (0-100)."""
    import run_ner

    train_path = out / "train.json"
    write_examples([pool[i] for i in labelled], train_path)
    argv = ["--model_name_or_path", str(ENCODER), "--num_hidden_layers", "4", "--extend_vocab", "False"]
    argv += ["--train_file", str(train_path), "--test_file", str(test_path), "--output_dir", str(out / "model")]
    argv += ["--do_train", "True", "--do_predict", "True", "--max_steps", str(steps), "--seed", str(seed)]
    argv += ["--learning_rate", "3e-4", "--head_learning_rate", "1e-3", "--crf_learning_rate", "1e-2"]
    argv += ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--max_seq_length", "128"]
    argv += ["--warmup_steps", "0.1", "--weight_decay", "0.01", "--eval_strategy", "no", "--save_strategy", "no"]
    argv += ["--logging_steps", "1000", "--report_to", "none", "--disable_tqdm", "True", "--language", "zh"]
    results = run_ner.main(argv)
    return 100 * float(results["predict_f1"])


def choose(
    strategy: str, pool: list[dict], labelled: list[int], model: Path, seed: int, size: int
) -> tuple[list[int], int]:
    """The next BATCH pool indices by `strategy`, and how many near-duplicates the crf strategy passed over."""
    taken = set(labelled)
    rest = [i for i in range(len(pool)) if i not in taken]
    if strategy == "random":
        return random.Random(seed * 1000 + size).sample(rest, BATCH), 0
    if strategy == "length":
        return sorted(rest, key=lambda i: (-len(pool[i]["tokens"]), i))[:BATCH], 0
    from bertcrf.crf_models import load_crf_pipeline

    pipe = load_crf_pipeline(str(model), device="cpu")
    texts = ["".join(pool[i]["tokens"]) for i in rest]
    answers = active_learning.uncertainties(pipe, texts)
    picked, skipped = active_learning.rank(texts, answers, BATCH)
    return [rest[i] for i in picked], len(skipped)


def step_path(work: Path, name: str, strategy: str, seed: int, size: int) -> Path:
    # The first model is every strategy's: it is trained once per seed.
    return work / name / f"seed{seed}" / ("first" if size == FIRST else strategy) / f"n{size}.json"


def run_step(name, strategy, seed, size, labelled, pool, test_path, args) -> dict:
    """Fine-tune on `labelled`, score, choose the next batch; kept as JSON (the model folder is removed)."""
    path = step_path(Path(args.work), name, strategy, seed, size)
    out = path.with_suffix("")
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    f1 = fine_tune(pool, labelled, test_path, out, seed, args.steps)
    trained = time.perf_counter() - start
    final = size >= FIRST + BATCH * args.rounds
    picks = {}
    if not final:
        strategies = STRATEGIES if size == FIRST else (strategy,)
        for each in strategies:
            chosen, skipped = choose(each, pool, labelled, out / "model", seed, size)
            picks[each] = {"next": chosen, "near_duplicates_skipped": skipped}
    record = {"dataset": name, "strategy": strategy, "seed": seed, "labels": size, "f1": f1, "labelled": labelled}
    record.update(picks=picks, train_seconds=round(trained, 1), seconds=round(time.perf_counter() - start, 1))
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    print(f"{name} seed {seed} {strategy} {size} labels: test F1 {f1:.2f} ({record['seconds']:.0f} s)", flush=True)
    return record


def run_curve(name: str, strategy: str, seed: int, pool: list[dict], test_path: Path, args) -> list[dict]:
    """One strategy's learning curve for one seed, resuming from the steps already kept."""
    labelled = sorted(random.Random(seed).sample(range(len(pool)), FIRST))
    records = []
    for size in range(FIRST, FIRST + BATCH * args.rounds + 1, BATCH):
        path = step_path(Path(args.work), name, strategy, seed, size)
        record = json.loads(path.read_text()) if path.is_file() else args.kept.get((name, strategy, seed, size))
        if record is None:
            record = run_step(name, strategy, seed, size, labelled, pool, test_path, args)
        records.append({**record, "strategy": strategy})
        if record["picks"]:
            labelled = labelled + record["picks"][strategy]["next"]
    return records


def summarize(records: list[dict], rounds: int) -> list[dict]:
    """Per dataset and strategy: mean and spread of test F1 per label count, and the labels crf needs."""
    rows = []
    for name in dict.fromkeys(r["dataset"] for r in records):
        for strategy in STRATEGIES:
            mine = [r for r in records if r["dataset"] == name and r["strategy"] == strategy]
            sizes = sorted({r["labels"] for r in mine})
            f1 = {n: [r["f1"] for r in mine if r["labels"] == n] for n in sizes}
            rows.append(
                {
                    "dataset": name,
                    "strategy": strategy,
                    "labels": sizes,
                    "mean": [float(np.mean(f1[n])) for n in sizes],
                    "std": [float(np.std(f1[n])) for n in sizes],
                    "seeds": [len(f1[n]) for n in sizes],
                    "near_duplicates_skipped": sum(
                        r["picks"].get("crf", {}).get("near_duplicates_skipped", 0) for r in mine
                    ),
                }
            )
    for row in rows:
        row["labels_to_reach_random_final"] = labels_to_reach(row, rows, FIRST + BATCH * rounds)
    return rows


def labels_to_reach(row: dict, rows: list[dict], final: int) -> float | None:
    """Labels at which this strategy's mean curve first reaches random's mean F1 at `final` labels (linear between
    measured points); None if it never does or random's final point is missing."""
    baseline = next((r for r in rows if r["dataset"] == row["dataset"] and r["strategy"] == "random"), None)
    if baseline is None or final not in baseline["labels"]:
        return None
    goal = baseline["mean"][baseline["labels"].index(final)]
    points = list(zip(row["labels"], row["mean"]))
    for (n0, f0), (n1, f1) in zip([(0, -1.0)] + points, points):
        if f1 >= goal:
            return float(n1) if f0 < 0 or f1 == f0 else n0 + (goal - f0) / (f1 - f0) * (n1 - n0)
    return None


def render(rows: list[dict], cpu: dict, final: int) -> str:
    sizes = sorted({n for r in rows for n in r["labels"]})
    lines = [
        "| data | strategy | " + " | ".join(f"{n} labels" for n in sizes) + " | labels to reach random's final F1 |",
        "|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for r in rows:
        cells = {n: f"{m:.2f} ± {s:.2f} ({k})" for n, m, s, k in zip(r["labels"], r["mean"], r["std"], r["seeds"])}
        need = r["labels_to_reach_random_final"]
        share = "not reached" if need is None else f"{need:.0f} ({need / final:.0%} of random's {final})"
        lines.append(
            f"| {r['dataset']} | {r['strategy']} | " + " | ".join(cells.get(n, "") for n in sizes) + f" | {share} |"
        )
    lines.append("")
    lines.append(f"Test entity F1, mean ± spread over seeds (seeds in brackets). CPU: {cpu_label(cpu)}.")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["dataset"] for r in rows))
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names):
        for r in (r for r in rows if r["dataset"] == name):
            mean, std = np.array(r["mean"]), np.array(r["std"])
            axis.plot(r["labels"], mean, "o-", label=r["strategy"])
            axis.fill_between(r["labels"], mean - std, mean + std, alpha=0.2)
        axis.set(title=name, xlabel="annotated sentences", ylabel="test entity F1")
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of 200 after the first 200")
    parser.add_argument("--steps", type=int, default=150, help="training steps of every fine-tuning (batch 16)")
    parser.add_argument("--work", default=str(ROOT / "outputs" / "bench-active"), help="kept steps (resumable)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_active"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "active-learning.png"))
    args = parser.parse_args()
    if not (ENCODER / "model.safetensors").is_file():
        sys.exit(f"{ENCODER} is missing: run `make e5` first")
    missing = [n for n in args.datasets if not (SHARED / DATASETS[n]["train"]).is_file()]
    if missing:
        sys.exit(f"no data for {missing} in {SHARED}")
    args.kept = kept_steps(Path(args.out).with_suffix(".json"))
    records = []
    for seed in args.seeds:  # seed by seed: each finished seed gives both datasets' full curves
        for name in args.datasets:
            pool, test_path = prepare(name, Path(args.work))
            for strategy in STRATEGIES:
                records += run_curve(name, strategy, seed, pool, test_path, args)
            report(records, args)


def kept_steps(path: Path) -> dict[tuple, dict]:
    """The steps recorded in an earlier run's results, by (dataset, strategy, seed, labels); the first step under
    each strategy's name too (it is every strategy's)."""
    if not path.is_file():
        return {}
    kept = {}
    for step in json.loads(path.read_text()).get("steps", []):
        for strategy in STRATEGIES if step["labels"] == FIRST else (step["strategy"],):
            kept[(step["dataset"], strategy, step["seed"], step["labels"])] = step
    return kept


def report(records: list[dict], args: argparse.Namespace) -> None:
    final = FIRST + BATCH * args.rounds
    rows = summarize(records, args.rounds)
    table = render(rows, cpu_info(), final)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Every step's result and choices (not its labelled list: the first draw and the choices give it back), so that
    # a machine without outputs/ resumes from the committed results.
    steps = [{k: v for k, v in r.items() if k != "labelled"} for r in records]
    out.with_suffix(".json").write_text(json.dumps({"cpu": cpu_info(), "rows": rows, "steps": steps}) + "\n")
    out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(table, flush=True)
    if args.plot:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
