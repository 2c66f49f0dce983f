"""Distillation: BERT-CRF teacher vs BiLSTM-CRF students (gold tags only; distilled with the kl and the marginals
targets; kl plus one or two copies of each training sentence perturbed and tagged by the teacher), entity F1 and
CPU speed, on Resume (BMES) and CoNLL-2003 (IOB1 read, BIO trained).

Teacher: the offline MiniLM (default; Resume with an extended vocabulary) or multilingual-e5-small (`--teacher e5`;
benchmarks/encoders.py) fine-tuned by run_ner.py (Resume: 5 epochs; CoNLL: 1 epoch).
Students: distill.py from that teacher, embeddings initialized from the teacher's, one BiLSTM layer of 128 per
direction on Resume and two of 256 on CoNLL, the same epochs and learning rates for all students of a dataset.
Speed: the same pipeline (tokenization, model, CRF decoding and marginal scores, entity dicts) tags the first test
sentences at batch 1 and batch 32, for the students, the MiniLM teacher and a bert-base-sized BERT-CRF (random
weights: speed does not depend on them).

Targets: the distilled student within 2 F1 points of its MiniLM teacher (1.5 of an e5 teacher) and at least 2 points above the gold-only student;
at batch 1 at least 20x faster than the bert-base-sized teacher.

Every trained model is kept in outputs/bench-distill-<dataset>-<model> and reused by later runs (delete it to
retrain); `--skip_speed` trains and scores only, so two datasets can train in parallel.

Usage: python benchmarks/bench_distill.py [--datasets resume conll] [--skip_speed] [--students none kl ...]
       [--student_shape HIDDEN LAYERS] [--teacher minilm|e5] [--teacher_epochs N]
Writes benchmarks/results/bench_distill.{json,md} (bench_distill_e5.* with --teacher e5, _<LAYERS>x<HIDDEN> added
with --student_shape).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import repo_scripts
from encoders import ENCODERS, encoder_path, extend_vocab, learning_rate


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
DATA = ROOT.parent / "shared" / "data"
OUTPUTS = ROOT / "outputs"
DATASETS = {
    "resume": dict(
        train="resume/train.char.bmes",
        dev="resume/dev.char.bmes",
        test="resume/test.char.bmes",
        teacher_epochs=5,
        student_epochs=6,
        zh=True,
        student=["--lstm_hidden_size", "128", "--lstm_layers", "1"],
    ),
    "conll": dict(
        train="conll2003/eng.train",
        dev="conll2003/eng.testa",
        test="conll2003/eng.testb",
        teacher_epochs=1,
        student_epochs=5,
        zh=False,
        # English words arrive as several sub-tokens each, which the student has to compose: a bigger one.
        student=["--lstm_hidden_size", "256", "--lstm_layers", "2"],
    ),
}
# The speed baseline: report() finds its rows by this label's "bert-base" start.
BERT_BASE_LABEL = "bert-base-sized BERT-CRF (random weights)"
# Student variants: name -> (distill target, extra distill.py flags, table label).
STUDENTS = {
    "none": ("none", [], "student, gold only"),
    "kl": ("kl", [], "student, distilled (kl)"),
    "marginals": ("marginals", [], "student, distilled (marginals)"),
    "kl-augmented": ("kl", ["--augment_copies", "1"], "student, distilled (kl) + 1 teacher-tagged copy"),
    "kl-augmented-2": ("kl", ["--augment_copies", "2"], "student, distilled (kl) + 2 teacher-tagged copies"),
}
COMMON = [
    "--per_device_eval_batch_size",
    "64",
    "--max_seq_length",
    "128",
    "--eval_strategy",
    "no",
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


def data_args(spec: dict, train: bool = True) -> list[str]:
    files = [
        "--validation_file",
        str(DATA / spec["dev"]),
        "--test_file",
        str(DATA / spec["test"]),
        "--do_eval",
        "True",
        "--do_predict",
        "True",
    ]
    return (["--train_file", str(DATA / spec["train"]), "--do_train", "True"] if train else []) + files


def cached(out: Path) -> dict | None:
    """A finished student's results; None when it was never trained or stopped before its test split was scored."""
    path = out / "all_results.json"
    if not path.is_file() or not (out / "model.safetensors").is_file():
        return None
    results = json.loads(path.read_text())
    return results if "predict_f1" in results else None


def teacher_folder(name: str, encoder: str) -> Path:
    # MiniLM's folders keep their first names, so earlier runs are reused.
    return OUTPUTS / (f"bench-distill-{name}-teacher" + ("" if encoder == "minilm" else f"-{encoder}"))


def train_teacher(name: str, spec: dict, encoder: str) -> dict:
    """Fine-tune the encoder on the dataset (once), then score it on dev and test (once)."""
    import run_ner

    out = teacher_folder(name, encoder)
    if not (out / "model.safetensors").is_file():
        run_ner.main(
            [
                "--model_name_or_path",
                encoder_path(encoder, spec["zh"], DATA / spec["train"], name),
                *data_args(spec, train=True),
                "--output_dir",
                str(out),
                "--num_train_epochs",
                str(spec["teacher_epochs"]),
                "--learning_rate",
                str(learning_rate(encoder)),
                "--per_device_train_batch_size",
                "16",
                "--warmup_steps",
                "0.1",
                "--weight_decay",
                "0.01",
                "--extend_vocab",
                str(extend_vocab(encoder, spec["zh"])),
                *COMMON,
            ]
        )
    results = json.loads((out / "all_results.json").read_text())
    if "predict_f1" not in results:
        scores = run_ner.main(
            [
                "--model_name_or_path",
                str(out),
                *data_args(spec, train=False),
                "--output_dir",
                str(out / "scores"),
                *COMMON,
            ]
        )
        results.update(scores)
        (out / "all_results.json").write_text(json.dumps(results, indent=2))
    return results


def student_folder(name: str, encoder: str, variant: str, suffix: str) -> Path:
    teacher = "" if encoder == "minilm" else f"{encoder}-"
    return OUTPUTS / f"bench-distill-{name}-{teacher}student-{variant}{suffix}"


def train_student(name: str, spec: dict, variant: str, encoder: str, suffix: str = "") -> dict:
    distill = repo_scripts.load("distill")

    target, extra, _ = STUDENTS[variant]
    teacher = teacher_folder(name, encoder)
    out = student_folder(name, encoder, variant, suffix)
    if (results := cached(out)) is None:
        start = time.perf_counter()
        distill.main(
            [
                "--teacher_name_or_path",
                str(teacher),
                *data_args(spec),
                "--output_dir",
                str(out),
                "--distill_target",
                target,
                "--alpha",
                "0.5",
                "--temperature",
                "2",
                *spec["student"],
                "--num_train_epochs",
                str(spec["student_epochs"]),
                "--learning_rate",
                "2e-3",
                "--head_learning_rate",
                "2e-3",
                "--crf_learning_rate",
                "1e-2",
                "--per_device_train_batch_size",
                "32",
                "--warmup_steps",
                "0.05",
                *extra,
                *COMMON,
            ]
        )
        results = cached(out)
        results["wall_seconds"] = time.perf_counter() - start
        (out / "all_results.json").write_text(json.dumps(results, indent=2))
    return results


def time_pipeline(model_dir: Path, texts: list[str], batch1_count: int) -> dict:
    """Sentences per second through the bert-crf pipeline at batch 32 and batch 1."""
    import torch

    from bertcrf.crf_models import load_crf_pipeline

    pipe = load_crf_pipeline(str(model_dir), device="cpu")
    out = {}
    with torch.inference_mode():
        for batch, subset in ((32, texts), (1, texts[:batch1_count])):
            pipe(subset[:4], batch_size=batch)  # warm-up
            start = time.perf_counter()
            pipe(subset, batch_size=batch)
            out[f"batch{batch}_sent_per_s"] = len(subset) / (time.perf_counter() - start)
    return out


def main() -> None:
    args = parse_args()
    suffix = f"-{args.student_shape[1]}x{args.student_shape[0]}" if args.student_shape else ""
    stem = "bench_distill" + ("" if args.teacher == "minilm" else f"_{args.teacher}") + suffix.replace("-", "_")
    out = Path(args.out or ROOT / "benchmarks" / "results" / stem)
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    rows = []
    for name in args.datasets:
        rows += dataset_rows(name, args, suffix)
    write_results(rows, args, out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--skip_speed", action="store_true", help="train and score only")
    parser.add_argument("--speed_sentences", type=int, default=256, help="test sentences timed at batch 32")
    parser.add_argument("--batch1_sentences", type=int, default=64)
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    parser.add_argument(
        "--student_shape",
        type=int,
        nargs=2,
        metavar=("HIDDEN", "LAYERS"),
        help="students of this shape instead of each dataset's (kept in folders named after it)",
    )
    parser.add_argument("--teacher", choices=list(ENCODERS), default="minilm", help="the teacher's encoder")
    parser.add_argument(
        "--teacher_epochs", type=float, help="the teacher's epochs instead of each dataset's (Resume 5, CoNLL 1)"
    )
    parser.add_argument(
        "--out", help="results file stem (default benchmarks/results/bench_distill[_<teacher>][_<shape>])"
    )
    return parser.parse_args()


def dataset_rows(name: str, args: argparse.Namespace, suffix: str) -> list[dict]:
    """Train (or reuse) the teacher and the students of one dataset, time them unless --skip_speed: its rows."""
    spec = dataset_spec(name, args)
    shown = f"{name}, students {suffix[1:]}" if suffix else name
    teacher = teacher_folder(name, args.teacher)
    models = {teacher_label(args.teacher): (teacher, train_teacher(name, spec, args.teacher))}
    for variant in args.students:
        models[STUDENTS[variant][2]] = (
            student_folder(name, args.teacher, variant, suffix),
            train_student(name, spec, variant, args.teacher, suffix),
        )
    texts = speed_texts(name, spec, args.speed_sentences)
    speed = {} if args.skip_speed else time_models(models, teacher, texts, args.batch1_sentences)
    return result_rows(shown, models, speed)


def dataset_spec(name: str, args: argparse.Namespace) -> dict:
    """The dataset's settings, with the teacher's epochs and the students' shape given on the command line."""
    spec = DATASETS[name]
    if args.teacher_epochs:
        spec = dict(spec, teacher_epochs=args.teacher_epochs)
    if args.student_shape:
        hidden, layers = args.student_shape
        spec = dict(spec, student=["--lstm_hidden_size", str(hidden), "--lstm_layers", str(layers)])
    return spec


def speed_texts(name: str, spec: dict, count: int) -> list[str]:
    """The first `count` test sentences as raw text: CoNLL's words joined by spaces, Resume's characters without."""
    from bertcrf import data_files

    return [
        " ".join(e["tokens"]) if name == "conll" else "".join(e["tokens"])
        for e in data_files.read_file(str(DATA / spec["test"]))
    ][:count]


def time_models(models: dict[str, tuple[Path, dict]], teacher: Path, texts: list[str], batch1_count: int) -> dict:
    """Each model's speed, and a bert-base-sized BERT-CRF's (random weights, the teacher's tokenizer and labels)."""
    from encoders import bert_base_checkpoint

    speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = bert_base_checkpoint(Path(tmp), like=teacher)
        speed[BERT_BASE_LABEL] = time_pipeline(base, texts, batch1_count)
    for label, (folder, _) in models.items():
        speed[label] = time_pipeline(folder, texts, batch1_count)
    return speed


def result_rows(shown: str, models: dict[str, tuple[Path, dict]], speed: dict) -> list[dict]:
    """One row per model (scores and speed), then the bert-base-sized model's when speed was measured."""
    rows = [
        dict(
            dataset=shown,
            model=label,
            dev_f1=results.get("eval_f1"),
            test_f1=results.get("predict_f1"),
            train_seconds=results.get("train_runtime"),
            epochs=results.get("epoch"),
            **speed.get(label, {}),
        )
        for label, (_, results) in models.items()
    ]
    if speed:
        rows.append(dict(dataset=shown, model=BERT_BASE_LABEL, **speed[BERT_BASE_LABEL]))
    return rows


def write_results(rows: list[dict], args: argparse.Namespace, out: Path) -> None:
    """Print the table; write it and the rows unless --skip_speed (scores only are not a result to keep)."""
    table = report(rows, args.teacher)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_speed:
        out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
        out.with_suffix(".md").write_text(table + "\n")
        print(f"wrote {out}.json and {out}.md")


def teacher_label(encoder: str) -> str:
    return f"teacher ({ENCODERS[encoder]['label']} BERT-CRF)"


def report(rows: list[dict], encoder: str = "minilm") -> str:
    # Issue 6 asked for within 2 points of the MiniLM teacher; issue 13 for within 1.5 of the e5 teacher.
    within = 2.0 if encoder == "minilm" else 1.5
    fmt = lambda v, scale=1.0, digits=2: "-" if v is None else f"{scale * v:.{digits}f}"  # noqa: E731
    lines = [
        "| dataset | model | dev F1 | test F1 | train s | batch 32 sent/s | batch 1 sent/s | x bert-base (batch 1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == name]
        base = next((r for r in group if r["model"].startswith("bert-base")), None)
        for r in group:
            ratio = r["batch1_sent_per_s"] / base["batch1_sent_per_s"] if base and "batch1_sent_per_s" in r else None
            lines.append(
                f"| {name} | {r['model']} | {fmt(r.get('dev_f1'), 100)} | {fmt(r.get('test_f1'), 100)} | "
                f"{fmt(r.get('train_seconds'), digits=0)} | {fmt(r.get('batch32_sent_per_s'), digits=1)} | "
                f"{fmt(r.get('batch1_sent_per_s'), digits=1)} | {fmt(ratio, digits=1)} |"
            )
        f1 = {r["model"]: r.get("test_f1") for r in group}
        teacher, gold = f1.get(teacher_label(encoder)), f1.get("student, gold only")
        for variant in ("kl", "marginals", "kl-augmented", "kl-augmented-2"):
            student = f1.get(STUDENTS[variant][2])
            if None not in (teacher, gold, student):
                verdicts.append(
                    f"{name}, {variant}: test F1 {100 * (student - teacher):+.2f} vs teacher (target >= -{within:g}), "
                    f"{100 * (student - gold):+.2f} vs gold-only student (target >= +2)"
                )
        if base:
            # Every student of a dataset has the same shape: quote the slowest timing.
            speeds = [
                r["batch1_sent_per_s"] for r in group if r["model"].startswith("student") and "batch1_sent_per_s" in r
            ]
            if speeds:
                verdicts.append(
                    f"{name}: students {min(speeds) / base['batch1_sent_per_s']:.1f}x or more the "
                    "bert-base-sized teacher at batch 1 (target 20x)"
                )
    return "\n".join(lines + [""] + verdicts)


if __name__ == "__main__":
    main()
