"""Encoder adaptation: masked-language-model pretraining of the offline MiniLM on unlabelled Chinese text, then NER
fine-tuning, against the same fine-tuning from the unadapted MiniLM, in one run.

Text: the raw text of the training splits in ../shared/data (Resume, MSRA, CLUENER; never a dev or test split),
labels ignored. Adaptation: run_mlm.py with the vocabulary extended by that text's unknown characters, 15% masking
(80/10/10), blocks of 128, for a fixed wall-clock budget; checkpoints at fractions of the budget give the curve.
Fine-tuning: run_ner.py with one recipe for every encoder (2 epochs, learning rate 1e-4, batch 16, --extend_vocab)
on Resume (scored on its test split) and on People's Daily dev used as a training set (scored on its test split).

Target: at least +5 entity F1 on Resume test over the unadapted MiniLM.

Models are kept in outputs/bench-adapt-* and reused by later runs (delete them to start over).

`--encoder e5` adapts multilingual-e5-small (trimmed to Chinese) instead, on Resume's and CLUENER's training text
(the domain study of issue 13), and fine-tunes with e5's learning rate (benchmarks/encoders.py).

Usage: python benchmarks/bench_adapt.py [--minutes 30] [--fractions 0.5] [--datasets resume peoples_daily]
       [--encoder minilm|e5]
Writes benchmarks/results/bench_adapt.{json,md} (bench_adapt_e5.* with --encoder e5).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import repo_scripts
from encoders import ENCODERS, encoder_path, extend_vocab, learning_rate


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
DATA = ROOT.parent / "shared" / "data"
OUTPUTS = ROOT / "outputs"
# MiniLM's study adapted on all Chinese training text; e5's adapts on the domain of the sets it is scored on (issue 13).
TEXT = {
    "minilm": ["resume/train.char.bmes", "msra/msra_train_bio", "cluener/train.json"],
    "e5": ["resume/train.char.bmes", "cluener/train.json"],
}
DATASETS = {
    "resume": dict(train="resume/train.char.bmes", test="resume/test.char.bmes"),
    "peoples_daily": dict(train="peoples_daily/example.dev", test="peoples_daily/example.test"),
}


def folder(name: str, encoder: str) -> Path:
    # MiniLM's folders keep their first names, so earlier runs are reused.
    return OUTPUTS / (f"bench-adapt-{name}" + ("" if encoder == "minilm" else f"-{encoder}"))


def adapt(minutes: float, fractions: list[float], encoder: str) -> Path:
    """The encoder after masked-language-model training on the training text (once)."""
    run_mlm = repo_scripts.load("run_mlm")

    out = folder("mlm", encoder)
    if not (out / "model.safetensors").is_file():
        run_mlm.main(
            [
                "--model_name_or_path",
                encoder_path(encoder, chinese=True),
                "--ner_files",
                *[str(DATA / t) for t in TEXT[encoder]],
                "--extend_vocab",
                str(extend_vocab(encoder, chinese=True)),
                "--max_seq_length",
                "128",
                "--output_dir",
                str(out),
                "--do_train",
                "True",
                "--do_eval",
                "True",
                "--validation_split_percentage",
                "0.5",
                "--per_device_train_batch_size",
                "32",
                "--learning_rate",
                "2e-4",
                "--lr_scheduler_type",
                "constant_with_warmup",
                "--warmup_steps",
                "50",
                "--weight_decay",
                "0.01",
                "--max_steps",
                "1000000",
                "--max_train_minutes",
                str(minutes),
                "--save_fractions",
                *map(str, fractions),
                "--save_strategy",
                "no",
                "--logging_steps",
                "50",
                "--report_to",
                "none",
                "--seed",
                "42",
                "--disable_tqdm",
                "True",
            ]
        )
    return out


def encoders(adapted: Path, encoder: str) -> dict[str, tuple[Path, int]]:
    """Each encoder of the curve and its adaptation steps: unadapted, the checkpoints, the final model."""
    found = {f"{ENCODERS[encoder]['label']} (unadapted)": (Path(encoder_path(encoder, chinese=True)), 0)}
    state = json.loads((adapted / "trainer_state.json").read_text())
    for checkpoint in sorted(adapted.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        steps = int(checkpoint.name.split("-")[1])
        if steps < state["global_step"]:  # the last checkpoint is the final model
            found[f"adapted, {steps} steps"] = (checkpoint, steps)
    found[f"adapted, {state['global_step']} steps (final)"] = (adapted, state["global_step"])
    return found


def fine_tune(name: str, model: Path, steps: int, encoder: str) -> dict:
    import run_ner

    spec = DATASETS[name]
    out = folder(f"{name}-{steps}", encoder)
    results_path = out / "all_results.json"
    # Training writes all_results.json before the test split is scored: a run stopped in between starts again.
    if not results_path.is_file() or "predict_f1" not in json.loads(results_path.read_text()):
        run_ner.main(
            [
                "--model_name_or_path",
                str(model),
                "--train_file",
                str(DATA / spec["train"]),
                "--test_file",
                str(DATA / spec["test"]),
                "--do_train",
                "True",
                "--do_predict",
                "True",
                "--output_dir",
                str(out),
                "--extend_vocab",
                str(extend_vocab(encoder, chinese=True)),
                "--num_train_epochs",
                "2",
                "--learning_rate",
                str(learning_rate(encoder)),
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
                "--save_strategy",
                "no",
                "--report_to",
                "none",
                "--seed",
                "42",
                "--disable_tqdm",
                "True",
                "--logging_steps",
                "200",
            ]
        )
    return json.loads(results_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="adaptation budget (wall clock)")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.5], help="checkpoints along the budget")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--encoder", choices=list(ENCODERS), default="minilm", help="the encoder to adapt")
    parser.add_argument("--out", help="results file stem (default benchmarks/results/bench_adapt[_<encoder>])")
    args = parser.parse_args()
    args.out = args.out or str(
        ROOT / "benchmarks" / "results" / f"bench_adapt{'' if args.encoder == 'minilm' else '_' + args.encoder}"
    )
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    adapted = adapt(args.minutes, args.fractions, args.encoder)
    mlm = json.loads((adapted / "all_results.json").read_text())
    rows = []
    for label, (model, steps) in encoders(adapted, args.encoder).items():
        row = {"encoder": label, "steps": steps}
        for name in args.datasets:
            row[f"{name}_test_f1"] = fine_tune(name, model, steps, args.encoder)["predict_f1"]
        rows.append(row)
    lines = [
        "| encoder | adaptation steps | " + " | ".join(f"{n} test F1 | delta" for n in args.datasets) + " |",
        "|---|---|" + "---|---|" * len(args.datasets),
    ]
    base = rows[0]
    for row in rows:
        cells = " | ".join(
            f"{100 * row[f'{n}_test_f1']:.2f} | {100 * (row[f'{n}_test_f1'] - base[f'{n}_test_f1']):+.2f}"
            for n in args.datasets
        )
        lines.append(f"| {row['encoder']} | {row['steps']} | {cells} |")
    lines.append(
        f"\nAdaptation: {mlm.get('train_runtime', 0) / 60:.1f} min, {mlm.get('train_samples', 0)} training blocks, "
        f"held-out perplexity {mlm.get('perplexity', float('nan')):.1f}"
    )
    if "resume" in args.datasets:
        gain = 100 * (rows[-1]["resume_test_f1"] - base["resume_test_f1"])
        lines.append(f"Resume test F1, adapted - unadapted: {gain:+.2f} points (target +5)")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "mlm": mlm, "minutes": args.minutes}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
