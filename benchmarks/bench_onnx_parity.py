"""The exported tagger against the PyTorch pipeline on real data: same entities? and INT8 against fp32.

For a trained bert-crf folder, exports the decoding graph (fp32 and INT8) and tags each dataset's sentences with
the PyTorch pipeline, ONNX fp32 and ONNX INT8 (ner_onnx.py: the graph decodes one-window texts; longer ones are
stitched from the graph's logits and decoded with numpy). Per dataset and variant: the sentences whose entities
equal PyTorch's (type, offsets), the entity agreement F1 with PyTorch (and, for INT8, with ONNX fp32: the share of
entities that quantization flips), and the gold F1.

Usage: python benchmarks/bench_onnx_parity.py --model outputs/bench-quality-23/e5-msra-crf-lexicon
           [--datasets resume_dev msra_test] [--max_sentences N] [--out benchmarks/results/bench_onnx_parity]
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
from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "resume_dev": (DATA / "resume" / "dev.char.bmes", ""),
    "msra_test": (DATA / "msra" / "msra_test_bio", ""),
    "cluener_dev": (DATA / "cluener" / "dev.json", ""),
    "conll_test": (DATA / "conll2003" / "eng.testb", " "),
}
VARIANTS = ("pytorch", "onnx-fp32", "onnx-int8")

Entities = list[set[tuple[str, int, int]]]


def read_dataset(name: str, limit: int | None) -> tuple[list[str], Entities]:
    """Texts and gold entity spans (character offsets) of one dataset."""
    from bertcrf import ner_data
    from ner_tags import join_words, tags_to_spans

    path, joiner = DATASETS[name]
    if not path.exists():
        sys.exit(f"{path} not found: this benchmark reads the public datasets beside the repository")
    examples = ner_data.read_span_json(path) if path.suffix == ".json" else ner_data.read_column_file(path)
    examples = examples[:limit] if limit else examples
    scheme = ner_data.detect_examples_scheme(examples)
    texts, gold = [], []
    for example in examples:
        text, spans = join_words(example["tokens"], joiner)
        texts.append(text)
        found = tags_to_spans(example["tags"], scheme)
        gold.append({(kind, spans[first][0], spans[last - 1][1]) for kind, first, last in found})
    return texts, gold


def entity_sets(results: list[list[dict]]) -> Entities:
    return [{(e["entity_group"], e["start"], e["end"]) for e in entities} for entities in results]


def f1(predicted: Entities, reference: Entities) -> float:
    hits = sum(len(p & r) for p, r in zip(predicted, reference))
    total = sum(len(p) + len(r) for p, r in zip(predicted, reference))
    return 2 * hits / total if total else 1.0


def taggers(model: str, folder: Path) -> dict:
    """variant -> callable(texts) -> entity lists."""
    from bertcrf import crf_models
    from ner_onnx import OnnxNerTagger

    pipe = crf_models.load_crf_pipeline(model, device="cpu")
    fp32, int8 = OnnxNerTagger(folder), OnnxNerTagger(folder, quantized=True)
    return {
        "pytorch": lambda texts: pipe(texts, batch_size=32, aggregation_strategy="simple"),
        "onnx-fp32": lambda texts: fp32(texts, batch_size=32),
        "onnx-int8": lambda texts: int8(texts, batch_size=32),
    }


def compare(name: str, texts: list[str], gold: Entities, tag: dict, windows) -> list[dict]:
    """One row per variant of one dataset."""
    found, seconds = {}, {}
    for variant in VARIANTS:
        start = time.perf_counter()
        found[variant] = entity_sets(tag[variant](texts))
        seconds[variant] = time.perf_counter() - start
        print(f"{name} {variant}: {seconds[variant]:.0f} s", flush=True)
    long = sum(1 for text in texts if windows(text) > 1)
    rows = []
    for variant in VARIANTS:
        same = sum(a == b for a, b in zip(found[variant], found["pytorch"]))
        rows.append(
            {
                "dataset": name,
                "variant": variant,
                "sentences": len(texts),
                "multi_window": long,
                "same_as_pytorch": same,
                "agreement_pytorch": f1(found[variant], found["pytorch"]),
                "agreement_fp32": f1(found[variant], found["onnx-fp32"]) if variant == "onnx-int8" else None,
                "gold_f1": f1(found[variant], gold),
                "seconds": seconds[variant],
                "cpu": cpu_info(),
            }
        )
    return rows


def render(rows: list[dict], model: str) -> str:
    lines = [
        f"Model: {model}",
        "",
        "| dataset | variant | sentences (multi-window) | same entities as PyTorch | agreement F1 vs PyTorch "
        "| vs ONNX fp32 | gold F1 | seconds | CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs_fp32 = f"{100 * r['agreement_fp32']:.2f}" if r["agreement_fp32"] is not None else ""
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['sentences']} ({r['multi_window']}) | "
            f"{r['same_as_pytorch']} ({100 * r['same_as_pytorch'] / r['sentences']:.2f}%) | "
            f"{100 * r['agreement_pytorch']:.2f} | {vs_fp32} | {100 * r['gold_f1']:.2f} | {r['seconds']:.0f} | "
            f"{cpu_label(r['cpu'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained bert-crf folder")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=["resume_dev", "msra_test"])
    parser.add_argument("--max_sentences", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_onnx_parity"))
    args = parser.parse_args()
    export_onnx = repo_scripts.load("export_onnx")

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_onnx.export(args.model, str(Path(tmp) / "onnx"), int8=True)
        tag = taggers(args.model, folder)
        from ner_onnx import OnnxNerTagger

        plan = OnnxNerTagger(folder)

        def windows(text: str) -> int:
            return len(plan._prepare(text, False, None)["windows"])

        rows = []
        for name in args.datasets:
            texts, gold = read_dataset(name, args.max_sentences)
            rows += compare(name, texts, gold, tag, windows)
    table = render(rows, args.model)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
