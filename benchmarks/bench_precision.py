"""Reduced precision and compiled tagging against fp32, in one run on the machine at hand.

1. The CPU's matmul rate (2048 x 2048, GFLOP/s) in fp32 and bf16: what the hardware offers.
2. End-to-end tagging (the pipeline: tokenization, windows, encoder, CRF decode and marginals, entities) of MSRA
   test sentences in records/s and characters/s, at batch 32 and batch 1, for PyTorch fp32, bf16 autocast (the
   pipeline called under `torch.autocast`), bf16 weights (`precision="bfloat16"`, the CRF in float32), compiled
   fp32 and bf16 (`compile=True`; the compilation is warm-up, not timed) and ONNX Runtime fp32 and INT8; for the
   e5-small lexicon model (`--model`, default outputs/demo from `make demo`) and a bert-base-shaped model (random
   weights with the same tokenizer and labels: speed does not depend on them). Each variant's entities against
   fp32's (entity F1: 100 minus about the share of entities that changed) and, for the trained model, gold F1.
3. Training steps/s of multilingual-e5-small (all 12 layers) at batch 32 x 128, fp32 against bf16 autocast (what
   the Trainer's `--bf16` runs on a CPU).
4. Dev F1 of a short fine-tune (run_ner.py on MSRA, same seed) with and without `--bf16`.

Targets, on a CPU with AMX (`grep -o amx_bf16 /proc/cpuinfo`): the best reduced-precision path >= 3x fp32 at batch
32 with agreement >= 99 and gold F1 within 0.3; training >= 2x with dev F1 within 0.5; `--dtype auto` never slower
than fp32 (it picks fp32 without bf16 hardware). Every table names the CPU and its flags.

Usage: python benchmarks/bench_precision.py [--model outputs/demo] [--sentences 256] [--base_sentences 64]
    [--batch1_sentences 32] [--finetune_steps 100] [--skip VARIANT ...] [--skip_training] [--skip_finetune]
Writes benchmarks/results/bench_precision.{json,md} after every part (a stopped run keeps what it measured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

import repo_scripts
from encoders import E5, E5_ZH, bert_base_checkpoint
from entities import entity_f1, entity_spans, gold_and_texts
from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MSRA_TEST = ROOT / "data" / "msra" / "test.json"
VARIANTS = ("fp32", "bf16-autocast", "bf16-weights", "compiled-fp32", "compiled-bf16", "onnx-fp32", "onnx-int8")
EXPORTS = ROOT / "outputs" / "bench-precision"
Tagger = Callable[[list[str], int], list[list[dict]]]


def cpu_flags() -> list[str]:
    """The flags that decide bf16 speed, beside machine.py's vector flags."""
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def matmul_rates(size: int = 1024) -> dict[str, float]:
    """GFLOP/s of a size x size matmul in fp32 and bf16 (best of three after a warm-up; without bf16 hardware a
    2048 x 2048 product takes a minute)."""
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)
        best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(3))
        rates[name] = 2 * size**3 / best / 1e9
    return rates


def _seconds(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def make_tagger(variant: str, folder: Path, onnx_folder: Path) -> Tagger:
    """texts, batch size -> "simple" results, for one variant."""
    if variant.startswith("onnx"):
        from ner_onnx import OnnxNerTagger

        onnx = OnnxNerTagger(str(onnx_folder), quantized=variant.endswith("int8"))
        return lambda texts, batch: onnx(texts, batch_size=batch)
    from bertcrf.crf_models import load_crf_pipeline

    torch._dynamo.reset()  # each compiled variant compiles afresh
    bf16 = variant.startswith("compiled-bf16") or variant == "bf16-weights"
    pipe = load_crf_pipeline(
        str(folder), "cpu", precision="bfloat16" if bf16 else None, compile=variant.startswith("compiled")
    )
    autocast = variant == "bf16-autocast"

    def tag(texts: list[str], batch: int) -> list[list[dict]]:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context, torch.inference_mode():
            return pipe(texts, batch_size=batch, aggregation_strategy="simple")

    return tag


def time_tagging(tag: Tagger, texts: list[str], batch: int) -> tuple[dict[str, float], list[list[dict]]]:
    """Records/s and characters/s of tagging `texts` at `batch`, after a warm-up of a batch of one text and a full
    batch (which is when a compiled variant compiles)."""
    tag(texts[:1], 1)
    tag(texts[:batch], batch)
    start = time.perf_counter()
    results = tag(texts, batch)
    seconds = time.perf_counter() - start
    return {"records_s": len(texts) / seconds, "chars_s": sum(map(len, texts)) / seconds}, results


def tagging_rows(name: str, folder: Path, texts: list[str], gold: list | None, args: argparse.Namespace) -> list[dict]:
    """One row per variant of `name`: speed at batch 32 and 1, agreement with fp32, gold F1 where there is gold."""
    onnx_folder = EXPORTS / f"{name}-onnx"
    if not (onnx_folder / "model.int8.onnx").exists():
        repo_scripts.load("export_onnx").export(str(folder), str(onnx_folder), int8=True)
    rows, fp32_spans = [], None
    for variant in VARIANTS:
        if variant in args.skip:
            continue
        tag = make_tagger(variant, folder, onnx_folder)
        speed32, results = time_tagging(tag, texts, 32)
        speed1, _ = time_tagging(tag, texts[: args.batch1_sentences], 1)
        spans = entity_spans(results)
        fp32_spans = spans if variant == "fp32" else fp32_spans
        row = {"model": name, "variant": variant, "batch32": speed32, "batch1": speed1}
        row["agreement"] = entity_f1(spans, fp32_spans) if fp32_spans is not None else None
        row["gold_f1"] = entity_f1(spans, gold) if gold is not None else None
        rows.append(row)
        print(render_tagging([row], rows[0]), flush=True)
    return rows


def training_rates(steps: int = 3, batch: int = 32, length: int = 128) -> dict[str, float]:
    """Training steps/s of multilingual-e5-small with a CRF head, fp32 and under bf16 autocast (the Trainer's
    --bf16 on a CPU), on random ids and labels."""
    from modeling_bert_crf import BertCrfForTokenClassification

    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}
    torch.manual_seed(0)
    model = BertCrfForTokenClassification.from_pretrained(str(E5), id2label=labels).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(5, model.config.vocab_size, (batch, length))
    tags = torch.randint(0, len(labels), (batch, length))
    rates = {}
    for name in ("fp32", "bf16"):
        context = torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16")

        def step() -> None:
            with context:
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=tags).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        step()  # warm-up
        rates[name] = steps / sum(_seconds(step) for _ in range(steps))
    return rates


def finetune_f1(steps: int, workdir: Path) -> dict[str, float]:
    """Dev F1 (MSRA dev, 1,000 sentences) after `steps` steps of the demo's recipe on MSRA train, fp32 and --bf16,
    same seed; and each run's training steps/s."""
    import run_ner

    scores = {}
    for name in ("fp32", "bf16"):
        out = workdir / f"finetune-{name}"
        argv = [str(ROOT / "configs" / "demo.json"), "--model_name_or_path", str(E5_ZH), "--output_dir", str(out)]
        argv += ["--max_steps", str(steps), "--do_predict", "False", "--do_eval", "True", "--max_eval_samples", "1000"]
        argv += ["--lexicon", str(jieba_dictionary()), "--disable_tqdm", "True", "--overwrite_output_dir"]
        results = run_ner.main([*argv, "--bf16", str(name == "bf16")])
        scores[name] = {"dev_f1": results["eval_f1"], "train_steps_s": steps / results["train_runtime"]}
    return scores


def jieba_dictionary() -> Path:
    import jieba

    return Path(jieba.__file__).parent / "dict.txt"


def render_tagging(rows: list[dict], fp32: dict) -> str:
    lines = []
    for r in rows:
        x32 = r["batch32"]["records_s"] / fp32["batch32"]["records_s"]
        x1 = r["batch1"]["records_s"] / fp32["batch1"]["records_s"]
        agree = f"{100 * r['agreement']:.2f}" if r["agreement"] is not None else "-"
        gold = f"{100 * r['gold_f1']:.2f}" if r["gold_f1"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['batch32']['records_s']:.1f} | {r['batch32']['chars_s']:.0f} | "
            f"{x32:.2f}x | {r['batch1']['records_s']:.1f} | {x1:.2f}x | {agree} | {gold} |"
        )
    return "\n".join(lines)


def render(report: dict) -> str:
    cpu = f"{cpu_label(report['cpu'])}, bf16 flags: {', '.join(report['bf16_flags']) or 'none'}"
    rates = report["matmul_gflops"]
    lines = [
        f"CPU: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"Matmul 1024^2: fp32 {rates['fp32']:.1f} GFLOP/s, bf16 {rates['bf16']:.1f} GFLOP/s "
        f"({rates['bf16'] / rates['fp32']:.2f}x)",
        "",
        "| model | variant | batch 32 records/s | chars/s | x fp32 | batch 1 records/s | x fp32 | entity F1 vs fp32 "
        "| gold F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["model"] for r in report["tagging"]):
        rows = [r for r in report["tagging"] if r["model"] == name]
        lines.append(render_tagging(rows, rows[0]))
    if report.get("training"):
        t = report["training"]
        lines.append(
            f"\nTraining steps/s, e5-small, batch 32 x 128: fp32 {t['fp32']:.3f}, bf16 autocast {t['bf16']:.3f} "
            f"({t['bf16'] / t['fp32']:.2f}x)"
        )
    if report.get("finetune"):
        f = report["finetune"]
        lines.append(
            f"Short fine-tune ({report['finetune_steps']} steps, MSRA): dev F1 fp32 {100 * f['fp32']['dev_f1']:.2f}, "
            f"--bf16 {100 * f['bf16']['dev_f1']:.2f}; steps/s {f['fp32']['train_steps_s']:.3f} vs "
            f"{f['bf16']['train_steps_s']:.3f}"
        )
    return "\n".join(lines)


def save(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    out.with_suffix(".md").write_text(render(report) + "\n", encoding="utf-8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "outputs" / "demo"), help="the e5-small lexicon model")
    parser.add_argument("--sentences", type=int, default=256, help="MSRA test sentences for the e5 model (0: all)")
    parser.add_argument("--base_sentences", type=int, default=64, help="... for the bert-base-shaped model")
    parser.add_argument("--batch1_sentences", type=int, default=32)
    parser.add_argument("--finetune_steps", type=int, default=100)
    parser.add_argument("--skip", nargs="*", default=[], choices=VARIANTS[1:])
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument("--skip_finetune", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_precision"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    model = Path(args.model)
    if not (model / "config.json").exists():
        raise SystemExit(f"{model}: no trained model: run `make demo` first (or give --model)")
    out = Path(args.out)
    report: dict[str, Any] = {"cpu": cpu_info(), "bf16_flags": cpu_flags(), "threads": torch.get_num_threads()}
    report["matmul_gflops"] = matmul_rates()
    texts, gold = gold_and_texts(MSRA_TEST)
    count = args.sentences or len(texts)
    report["tagging"] = tagging_rows("e5-small-lexicon", model, texts[:count], gold[:count], args)
    save(report, out)
    base = EXPORTS / "bert-base"
    if not (base / "model.safetensors").exists():
        bert_base_checkpoint(base, like=model)
    report["tagging"] += tagging_rows("bert-base-shaped", base, texts[: args.base_sentences], None, args)
    save(report, out)
    if not args.skip_training:
        report["training"] = training_rates()
        save(report, out)
    if not args.skip_finetune:
        with tempfile.TemporaryDirectory() as tmp:
            report["finetune"], report["finetune_steps"] = (
                finetune_f1(args.finetune_steps, Path(tmp)),
                args.finetune_steps,
            )
        save(report, out)
    print(render(report))


if __name__ == "__main__":
    main()
