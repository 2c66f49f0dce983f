"""Seconds per maximal request of handler.py (the Inference Endpoints handler) at its default limits, on CPU.

The handler bounds the characters of a whole request (`max_request_chars`); this times requests at that bound
through `EndpointHandler.__call__` (checks, grouping, tokenization, windows, encoder, CRF decoding and scores,
entity dicts), several shapes of request each:

- `1 text`: the fewest texts that reach the bound within the limit per text (one of 10,000 characters), default
  parameters;
- `256 texts`: the most texts, of equal length (sentences joined in pairs);
- `stride`: the same texts, windows sharing half their sub-tokens (the largest `stride`);
- `max_length 16`: the same texts in the smallest windows the handler accepts, sharing half (the most windows);
- `padding`: 4 long texts, each followed by 63 of one character, `batch_size` 64: the most padding, were they
  batched together; `padding, one call` times the same request as one pipeline call (what the handler did before it
  ran texts in groups of similar length).

The model: the demo's encoder (multilingual-e5-small trimmed to Chinese, `make e5`) with a fresh CRF head (speed
does not depend on the weights), saved with its code like a run_ner.py output, or a tagger folder (`--model`). The
text: CLUENER dev sentences from ../shared/data joined (data/demo otherwise). Each request runs `--repeats` times;
the table gives the median and the spread, the model's input positions (padding included), the 1-minute load
average after each run (above the threads used: other work shared the cores) and the CPU.

Usage: python benchmarks/bench_serving.py [--model FOLDER] [--repeats 3] [--chars N]
Writes benchmarks/results/bench_serving.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoTokenizer

import handler
from bertcrf import ner_data
from configuration_bert_crf import BertCrfConfig
from encoders import E5_ZH
from machine import cpu_label
from modeling_bert_crf import BertCrfForTokenClassification


ROOT = Path(__file__).resolve().parent.parent


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
CLUENER_DEV = ROOT.parent / "shared" / "data" / "cluener" / "dev.json"


def checkpoint(folder: Path) -> str:
    """A tagger folder as run_ner.py writes it (weights, config with the pipeline's code, tokenizer): the demo's
    encoder and a fresh CRF head."""
    if not (E5_ZH / "model.safetensors").is_file():
        sys.exit(f"{E5_ZH} not found: run `make e5` first, or pass --model with a tagger folder")
    base = BertCrfConfig.from_pretrained(E5_ZH).to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        base.pop(key, None)
    config = BertCrfConfig(**{**base, "id2label": dict(enumerate(LABELS))})
    torch.manual_seed(0)
    BertCrfForTokenClassification.from_pretrained(E5_ZH, config=config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(E5_ZH).save_pretrained(folder)
    return str(folder)


def sentences() -> list[str]:
    if CLUENER_DEV.is_file():
        with open(CLUENER_DEV, encoding="utf-8") as handle:
            return [json.loads(line)["text"] for line in handle if line.strip()]
    return ["".join(example["tokens"]) for example in ner_data.read_column_file(ROOT / "data" / "demo" / "test.txt")]


def requests(chars: int, per_text: int, items: int) -> list[tuple[str, list[str], dict]]:
    """(name, texts, parameters) of requests of `chars` characters in all."""
    source = sentences()
    running = "".join(source)
    while len(running) < chars + items:
        running += running
    count = -(-chars // per_text)  # the fewest texts within the limit per text
    longest = [running[k * (chars // count) : (k + 1) * (chars // count)] for k in range(count)]
    pairs = [a + b for a, b in zip(source[::2], source[1::2])]
    each = chars // items
    texts = [(pair * (each // max(len(pair), 1) + 1))[:each] for pair in pairs[:items]]
    # Per 64 texts, one long text and 63 of one character: batched in that order, each batch of 64 windows would be
    # padded to a full window.
    long = (chars - (items - 4)) // 4
    padding = []
    for k in range(4):
        padding += [running[k * long : (k + 1) * long], *running[chars + 63 * k : chars + 63 * (k + 1)]]
    return [
        (f"{count} text" + "s" * (count > 1), longest, {}),
        (f"{items} texts", texts, {}),
        ("stride", longest, {"stride": 255}),
        ("max_length 16", longest, {"max_length": handler.MIN_MAX_LENGTH, "stride": 7}),
        ("padding", padding, {"batch_size": 64}),
    ]


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as folder:
        endpoint = handler.EndpointHandler(args.model or checkpoint(Path(folder)), max_request_chars=args.chars)
        timer = RequestTimer(endpoint, args.repeats)
        chars = endpoint.max_request_chars
        endpoint({"inputs": sentences()[:8]})  # warm-up
        rows = time_requests(endpoint, timer, args.skip_one_call)
    model_name = args.model or f"{E5_ZH.relative_to(ROOT)} (multilingual-e5-small trimmed to Chinese), fresh CRF head"
    table = results_table(rows, model_name, args.repeats, chars, args.note)
    print(table)
    meta = dict(model=model_name, repeats=args.repeats, max_request_chars=chars, note=args.note)
    write_results(Path(args.out), table, dict(meta=meta, rows=rows))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a tagger folder (default: the demo's encoder, fresh head)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chars", type=int, default=None, help="characters per request (default: the handler's)")
    parser.add_argument("--skip_one_call", action="store_true", help="leave out the `padding, one call` row")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. 'other jobs running')")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_serving"))
    return parser.parse_args()


class RequestTimer:
    """Times calls `repeats` times each, counting the model input positions of the endpoint pipeline's forward
    passes (how much padding a request costs)."""

    def __init__(self, endpoint: handler.EndpointHandler, repeats: int) -> None:
        self.repeats = repeats
        self.positions: list[int] = []
        forward = endpoint.pipeline._forward

        def counted(inputs: dict, **kwargs: object) -> dict:
            self.positions.append(inputs["input_ids"].numel())
            return forward(inputs, **kwargs)

        endpoint.pipeline._forward = counted
        self.cpu, self.threads = cpu_label(), torch.get_num_threads()

    def __call__(self, name: str, texts: list[str], parameters: dict, call: Callable[[], object]) -> dict:
        seconds, loads = [], []
        for _ in range(self.repeats):
            self.positions.clear()
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])  # other processes' work on the same cores slows every row
            print(f"{name}: {seconds[-1]:.1f} s (load average {loads[-1]:.1f})", flush=True)
        return dict(
            request=name,
            texts=len(texts),
            chars=sum(map(len, texts)),
            parameters=parameters,
            positions=sum(self.positions),
            forward_passes=len(self.positions),
            seconds=seconds,
            median_s=statistics.median(seconds),
            load_average=loads,
            cpu=self.cpu,
            threads=self.threads,
        )


def time_requests(endpoint: handler.EndpointHandler, timer: RequestTimer, skip_one_call: bool) -> list[dict]:
    """A row per request kind; the padding one also as one pipeline call (what the handler's batching saves)."""
    rows = []
    for name, texts, parameters in requests(endpoint.max_request_chars, endpoint.max_text_chars, endpoint.max_items):
        rows.append(timer(name, texts, parameters, lambda: endpoint({"inputs": texts, "parameters": parameters})))
        if name == "padding" and not skip_one_call:
            rows.append(
                timer(
                    f"{name}, one call",
                    texts,
                    parameters,
                    lambda: endpoint.pipeline(texts, aggregation_strategy="simple", **parameters),
                )
            )
    return rows


def results_table(rows: list[dict], model_name: str, repeats: int, chars: int, note: str) -> str:
    """The Markdown table of the rows, with a line naming the model and the settings."""
    lines = [
        "| request | texts | characters | parameters | model input positions | median s | min-max s | load average | CPU "
        "| threads |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shown = ", ".join(f"{k} {v}" for k, v in r["parameters"].items()) or "defaults"
        lines.append(
            f"| {r['request']} | {r['texts']} | {r['chars']} | {shown} | {r['positions']} | {r['median_s']:.1f} | "
            f"{min(r['seconds']):.1f}-{max(r['seconds']):.1f} | {min(r['load_average']):.1f}-{max(r['load_average']):.1f} | "
            f"{r['cpu']} | {r['threads']} |"
        )
    lines.append(
        f"\nModel: {model_name}. {repeats} runs each; max_request_chars {chars}." + (f" {note}" if note else "")
    )
    return "\n".join(lines)


def write_results(out: Path, table: str, results: dict) -> None:
    """Write `out`.json (the results) and `out`.md (the table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
