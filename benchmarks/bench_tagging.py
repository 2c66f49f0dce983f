"""Tagging throughput against the machine's limit (issue 25): tag.py as users run it, file in, file out.

    python benchmarks/bench_tagging.py                 # every row (about 20 minutes on 2 cores)
    python benchmarks/bench_tagging.py --models e5     # one encoder
    python benchmarks/bench_tagging.py --memory_only   # peak memory at 10k, 100k and 1M lines

Corpus: MSRA test sentences (../shared/data/msra/msra_test_bio) in order, repeated as needed; each model tags the
same first N of them in every row. Models, speed not depending on weights: "e5", the demo's encoder
(outputs/multilingual-e5-small-zh from `make e5`, 12 layers, hidden 384) under a random CRF head over MSRA's
labels, and "bert-base", a random 12-layer, hidden-768 BERT-CRF with the same tokenizer. Runtimes: PyTorch fp32
(`tag.py --model`), ONNX Runtime fp32 and INT8 (`tag.py --onnx [--int8]`, the decoding graph). Layouts: 1 process
with 1 thread, 1 process with 2 threads, 2 processes with 1 thread each (`accelerate launch --multi_gpu
--num_processes 2`, gloo on CPU). Batch 32, chunks of 100 lines (4 batches; tag.py sorts each chunk's texts by
length), 8 chunks of e5's 800 lines and 4 of bert-base's 400.

Each row: sentences/s and characters/s from tag.py's --stats (its first chunk to the joined output; loading the
model is not counted); "outside model": the share of process 0's wall time not spent in the model (session.run,
or the model's emissions and CRF decoding): reading, tokenization, windows, entities, writing; "model only": the
sentences/s the model calls alone would give (end to end over the model's share), the "encoder-only throughput"
at batch 32 the issue compares with; "GFLOP/s": the encoder's matmul FLOPs (2 x multiply-adds of the linear
layers and of attention's two products, on each sentence's real tokens, no padding) over the wall time, and its
share of the machine's measured rate on the same threads: fp32 `torch.matmul` of 2048 x 2048 matrices, and for
INT8 ONNX Runtime's `MatMulInteger` (uint8 x int8) of the same size. 2 processes x 1 thread are held against the
2-thread rate. "with padding": the same over the FLOPs actually computed, each window padded to its batch's
longest (batches of 32 windows, each chunk's texts shortest first, as tag.py orders them).

Memory: tag.py --onnx with a tiny random model (2 layers, hidden 64: the engine's memory, not the model's) on 10k,
100k and 1M lines (MSRA test repeated), peak RSS of the process.

Targets: peak memory at 1M lines within 10% of that at 10k; 2 processes >= 1.7x the characters/s of 1 process
with 1 thread; end to end >= 90% of model only at batch 32; ONNX INT8 end to end >= 3x PyTorch fp32 end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import repo_scripts
from machine import cpu_label


ROOT = Path(__file__).resolve().parents[1]
MSRA_TEST = ROOT.parent / "shared" / "data" / "msra" / "msra_test_bio"
E5_ZH = ROOT / "outputs" / "multilingual-e5-small-zh"
WORK = ROOT / "outputs" / "bench-tagging"
RESULTS = ROOT / "benchmarks" / "results" / "bench_tagging"
LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
MODELS = {  # name: (config overrides, sentences per row)
    "e5": ({}, 800),
    "bert-base": (
        {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
        400,
    ),
    "tiny": ({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}, 0),
}
RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8")
# Chunks of 100 lines: several batches of 32 each (tag.py sorts a chunk's texts by length), and at least 4 chunks
# a model, so that 2 processes get 2 or more each.
CHUNK = 100
LAYOUTS = ((1, 1), (1, 2), (2, 1))  # (processes, threads per process)
MEMORY_LINES = (10_000, 100_000, 1_000_000)


def msra_sentences() -> list[str]:
    from bertcrf import ner_data

    return ["".join(e["tokens"]) for e in ner_data.read_column_file(MSRA_TEST)]


def write_corpus(path: Path, sentences: list[str], lines: int) -> Path:
    """`lines` lines: the sentences in order, repeated."""
    if not path.exists() or sum(1 for _ in open(path, "rb")) != lines:
        with open(path, "w", encoding="utf-8") as out:
            for i in range(lines):
                out.write(sentences[i % len(sentences)] + "\n")
    return path


def crf_checkpoint(name: str) -> Path:
    """A BERT-CRF folder for `name`: e5's encoder (weights as trimmed) or a random one of its shape, with a random
    CRF head over MSRA's labels and e5's tokenizer; built once in outputs/bench-tagging."""
    import torch
    from transformers import AutoTokenizer

    from configuration_bert_crf import BertCrfConfig
    from modeling_bert_crf import BertCrfForTokenClassification

    folder = WORK / f"{name}-crf"
    if (folder / "model.safetensors").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(E5_ZH)
    head = {
        "id2label": dict(enumerate(LABELS)),
        "label2id": {label: i for i, label in enumerate(LABELS)},
        "tag_scheme": "BIO",
        "special_token_ids": sorted(tokenizer.all_special_ids),
    }
    torch.manual_seed(0)
    if name == "e5":
        model = BertCrfForTokenClassification.from_pretrained(E5_ZH, **head)
    else:
        config = BertCrfConfig.from_pretrained(E5_ZH, **head, **MODELS[name][0])
        model = BertCrfForTokenClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def student_checkpoint() -> Path:
    """A BiLSTM-CRF of the distilled student's Resume shape (embeddings 384, one BiLSTM layer of 128 each way) with
    e5's tokenizer and random weights (the time does not depend on them)."""
    import torch
    from transformers import AutoTokenizer

    from configuration_bilstm_crf import BiLstmCrfConfig
    from modeling_bilstm_crf import BiLstmCrfForTokenClassification

    folder = WORK / "student-crf"
    if (folder / "model.safetensors").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(E5_ZH)
    config = BiLstmCrfConfig(
        vocab_size=len(tokenizer),
        embedding_size=384,
        hidden_size=128,
        num_hidden_layers=1,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        tag_scheme="BIO",
        special_token_ids=sorted(tokenizer.all_special_ids),
    )
    torch.manual_seed(0)
    BiLstmCrfForTokenClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def onnx_export(name: str, checkpoint: Path) -> Path:
    export_onnx = repo_scripts.load("export_onnx")

    folder = WORK / f"{name}-onnx"
    if not (folder / "model.int8.onnx").exists():
        export_onnx.export(str(checkpoint), str(folder), int8=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tag_command(runtime: str, model: Path, processes: int) -> list[str]:
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launch += ["--main_process_port", str(free_port())]
    option = ["--model", str(model)] if runtime == "torch-fp32" else ["--onnx", str(model)]
    return [*launch, str(ROOT / "scripts" / "tag.py"), *option, *(["--int8"] if runtime == "onnx-int8" else [])]


def run_tag(command: list[str], corpus: Path, out: Path, threads: int, chunk_size: int, extra: list[str]) -> dict:
    stats = out.with_suffix(".stats.json")
    argv = [*command, "--input", str(corpus), "--output", str(out), "--overwrite", "--no_progress"]
    argv += ["--threads", str(threads), "--chunk_size", str(chunk_size), "--stats", str(stats), *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(stats.read_text(encoding="utf-8"))


def encoder_flops(config: dict, lengths: list[int]) -> float:
    """Matmul FLOPs of the encoder over windows of `lengths` real tokens: per layer 2 n (4 h^2 + 2 h i) for the
    linear layers and 4 n^2 h for attention's two products."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    return sum(layers * (2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h) for n in lengths)


def padded_lengths(lengths: list[list[int]], texts: list[str], chunk: int, batch: int = 32) -> list[int]:
    """Each window's length as computed: within each chunk of `chunk` texts, the texts shortest first (as tag.py
    orders them; `lengths`: each text's windows), their windows in batches of `batch`, every window padded to its
    batch's longest (the pipeline's batching)."""
    padded = []
    for begin in range(0, len(lengths), chunk):
        order = sorted(range(begin, min(begin + chunk, len(lengths))), key=lambda i: len(texts[i]))
        windows = [n for i in order for n in lengths[i]]
        for first in range(0, len(windows), batch):
            group = windows[first : first + batch]
            padded += [max(group)] * len(group)
    return padded


def config_of(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))


def window_lengths(onnx_folder: Path, sentences: list[str]) -> list[list[int]]:
    """The token count of each window the taggers feed for each of `sentences` (ner_onnx.py's windows, which the
    PyTorch pipeline's equal)."""
    from ner_onnx import OnnxNerTagger

    tagger = OnnxNerTagger(onnx_folder)
    return [
        [len(w.input_ids) for w in tagger._prepare(text, False, None, i)["windows"]]
        for i, text in enumerate(sentences)
    ]


def matmul_rates(threads: int, size: int = 2048) -> dict:
    """GFLOP/s of an fp32 `torch.matmul` and GOP/s of ONNX Runtime's `MatMulInteger` (uint8 x int8), size x size."""
    import numpy as np
    import onnxruntime
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    rates = {"fp32": _best_rate(lambda: torch.matmul(a, b), size)}
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero"], ["y"])],
        "matmul_integer",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
        [
            helper.make_tensor("b", TensorProto.INT8, [size, size], np.random.randint(-63, 64, (size, size)).ravel()),
            helper.make_tensor("a_zero", TensorProto.UINT8, [], [128]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": np.random.randint(1, 256, (size, size)).astype(np.uint8)}
    rates["int8"] = _best_rate(lambda: session.run(None, feed), size)
    return rates


def _best_rate(call, size: int, repeats: int = 5) -> float:
    call()
    best = min(_seconds(call) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def peak_rss_command(command: list[str]) -> list[str]:
    """`command` (python scripts/tag.py ...) run so that it prints its peak RSS in MB last on stdout."""
    script, *argv = command[1:]
    code = (
        "import resource, runpy, sys; "
        f"sys.argv = {[script, *argv]!r}; "
        "runpy.run_path(sys.argv[0], run_name='__main__'); "
        "print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    return [sys.executable, "-c", code]


def memory_rows(sentences: list[str]) -> list[dict]:
    """Peak RSS of tag.py --onnx (tiny model) at each of MEMORY_LINES lines."""
    checkpoint = crf_checkpoint("tiny")
    onnx = onnx_export("tiny", checkpoint)
    rows = []
    for lines in MEMORY_LINES:
        corpus = write_corpus(WORK / f"corpus-{lines}.txt", sentences, lines)
        out, stats_file = WORK / f"memory-{lines}.jsonl", WORK / f"memory-{lines}.stats.json"
        command = [*tag_command("onnx-fp32", onnx, 1), "--input", str(corpus), "--output", str(out), "--overwrite"]
        command += ["--no_progress", "--threads", "2", "--stats", str(stats_file)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run(peak_rss_command(command), cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        peak = float(proc.stdout.split("PEAK_RSS_MB")[-1])
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        rows.append({"lines": lines, "peak_rss_mb": round(peak, 1), **stats})
        out.unlink()
        print(f"memory: {lines} lines, peak RSS {peak:.1f} MB, {stats['records_per_s']:.0f} lines/s", flush=True)
    return rows


def throughput_rows(name: str, sentences: list[str], rates: dict, count: int, report) -> list[dict]:
    """Every runtime and layout of one model on its first `count` corpus lines."""
    checkpoint = crf_checkpoint(name)
    onnx = onnx_export(name, checkpoint)
    corpus = write_corpus(WORK / f"corpus-{count}.txt", sentences, count)
    texts = [sentences[i % len(sentences)] for i in range(count)]
    lengths = window_lengths(onnx, texts)
    flops = encoder_flops(config_of(checkpoint), [n for text in lengths for n in text])
    padded_flops = encoder_flops(config_of(checkpoint), padded_lengths(lengths, texts, CHUNK))
    rows = []
    for runtime in RUNTIMES:
        model = checkpoint if runtime == "torch-fp32" else onnx
        for processes, threads in LAYOUTS:
            command = tag_command(runtime, model, processes)
            stats = run_tag(command, corpus, WORK / f"{name}-{runtime}.jsonl", threads, CHUNK, [])
            limit = rates[processes * threads]["int8" if runtime == "onnx-int8" else "fp32"]
            achieved = flops / stats["seconds"] / 1e9
            row = {
                "model": name,
                "runtime": runtime,
                "processes": processes,
                "threads": threads,
                **stats,
                "model_only_records_per_s": stats["records_per_s"] / max(stats["model_share"], 1e-9),
                "gflops": achieved,
                "padded_gflops": padded_flops / stats["seconds"] / 1e9,
                "matmul_limit": limit,
                "of_limit": achieved / limit,
                "cpu": cpu_label(),
            }
            rows.append(row)
            report(rows)
    return rows


def batch1_rows(sentences: list[str], count: int, threads: int = 1) -> list[dict]:
    """Each text its own call, as a service answering one request at a time: the student, e5 and the bert-base
    teacher through the PyTorch pipeline, the student and e5 through ONNX Runtime (fp32, INT8)."""
    import torch

    from bertcrf.corpus import Stats, time_model_calls
    from bertcrf.crf_models import load_crf_pipeline
    from ner_onnx import OnnxNerTagger

    torch.set_num_threads(threads)
    texts = sentences[:count]
    models = {"student": student_checkpoint(), "e5": crf_checkpoint("e5"), "bert-base": crf_checkpoint("bert-base")}
    rows = []
    for name, checkpoint in models.items():
        variants = ["torch-fp32"] + (["onnx-fp32", "onnx-int8"] if name != "bert-base" else [])
        for runtime in variants:
            stats = Stats()
            if runtime == "torch-fp32":
                pipe = load_crf_pipeline(str(checkpoint), "cpu")
                time_model_calls(pipe, stats)
                call = lambda text: pipe(text, aggregation_strategy="simple")  # noqa: E731
            else:
                tagger = OnnxNerTagger(
                    onnx_export(name, checkpoint), quantized=runtime == "onnx-int8", threads=threads
                )
                time_model_calls(tagger, stats)
                call = tagger
            for text in texts[:4]:  # warm-up
                call(text)
            stats.model_seconds = 0.0
            start = time.perf_counter()
            for text in texts:
                call(text)
            seconds = time.perf_counter() - start
            row = {"model": name, "runtime": runtime, "threads": threads, "sentences": len(texts),
                   "records_per_s": len(texts) / seconds, "ms_per_sentence": 1000 * seconds / len(texts),
                   "outside_share": 1 - stats.model_seconds / seconds, "cpu": cpu_label()}  # fmt: skip
            rows.append(row)
            print(f"batch 1: {name} {runtime}: {row['ms_per_sentence']:.2f} ms/sentence, "
                  f"{100 * row['outside_share']:.0f}% outside the model", flush=True)  # fmt: skip
    teacher = next(r for r in rows if r["model"] == "bert-base")
    for r in rows:
        r["x_teacher"] = r["records_per_s"] / teacher["records_per_s"]
    return rows


def render_batch1(rows: list[dict]) -> str:
    lines = [
        "| model | runtime | threads | sentences/s | ms/sentence | x bert-base teacher | outside model | CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['records_per_s']:.1f} | {r['ms_per_sentence']:.2f} "
            f"| {r['x_teacher']:.1f}x | {100 * r['outside_share']:.0f}% | {r['cpu']} |"
        )
    return "\n".join(lines) + "\n"


def render(rows: list[dict], memory: list[dict], rates: dict) -> str:
    lines = [
        "| model | runtime | processes x threads | sentences/s | chars/s | x 1x1 | x torch fp32 | outside model "
        "| model only sent/s | GFLOP/s | of matmul limit | with padding | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        single = next(x for x in rows if x["model"] == r["model"] and x["runtime"] == r["runtime"]
                      and (x["processes"], x["threads"]) == (1, 1))  # fmt: skip
        torch_row = next((x for x in rows if x["model"] == r["model"] and x["runtime"] == "torch-fp32"
                          and (x["processes"], x["threads"]) == (r["processes"], r["threads"])), None)  # fmt: skip
        versus_torch = f"{r['characters_per_s'] / torch_row['characters_per_s']:.2f}x" if torch_row else "-"
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['processes']} x {r['threads']} | {r['records_per_s']:.1f} "
            f"| {r['characters_per_s']:.0f} | {r['characters_per_s'] / single['characters_per_s']:.2f}x "
            f"| {versus_torch} | {100 * (1 - r['model_share']):.1f}% | {r['model_only_records_per_s']:.1f} "
            f"| {r['gflops']:.0f} | {100 * r['of_limit']:.0f}% of {r['matmul_limit']:.0f} "
            f"| {r.get('padded_gflops', float('nan')):.0f} | {r['cpu']} |"
        )
    lines.append("")
    lines.append(
        "Matmul limits (2048 x 2048): "
        + "; ".join(
            f"{t} thread{'s' if t > 1 else ''}: fp32 {v['fp32']:.0f} GFLOP/s, INT8 {v['int8']:.0f} GOP/s"
            for t, v in rates.items()
        )  # fmt: skip
    )
    if memory:
        lines += ["", "| lines | peak RSS MB | x 10k | lines/s | CPU |", "|---|---|---|---|---|"]
        base = memory[0]["peak_rss_mb"]
        for m in memory:
            lines.append(
                f"| {m['lines']} | {m['peak_rss_mb']:.0f} | {m['peak_rss_mb'] / base:.2f}x | {m['records_per_s']:.0f} "
                f"| {cpu_label()} |"
            )
    return "\n".join(lines) + "\n"


def save(rows: list[dict], memory: list[dict], rates: dict, batch1: list[dict] | None = None) -> None:
    """Write the results, keeping the parts of an earlier run that this one did not measure."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    path = RESULTS.with_suffix(".json")
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data = {
        "cpu": cpu_label(),
        "matmul_rates": rates,
        # another model's rows of an earlier run stay (each row names its matmul limit)
        "rows": [r for r in earlier.get("rows", []) if r["model"] not in {x["model"] for x in rows}] + rows,
        "memory": memory or earlier.get("memory", []),
        "batch1": batch1 or earlier.get("batch1", []),
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    table = render(data["rows"], data["memory"], rates) if data["rows"] else ""
    if data["batch1"]:
        table += "\nBatch 1:\n\n" + render_batch1(data["batch1"])
    RESULTS.with_suffix(".md").write_text(table, encoding="utf-8")


def earlier_rates() -> dict | None:
    """The matmul rates of the run whose throughput rows are kept (a partial run measures none)."""
    path = RESULTS.with_suffix(".json")
    if not path.exists():
        return None
    rates = json.loads(path.read_text(encoding="utf-8")).get("matmul_rates")
    return {int(k): v for k, v in rates.items()} if rates else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=("e5", "bert-base"), default=["e5", "bert-base"])
    parser.add_argument("--sentences", type=int, default=None, help="corpus lines per row (default: per model)")
    parser.add_argument("--memory", action="store_true", help="also peak memory at 10k, 100k and 1M lines")
    parser.add_argument("--memory_only", action="store_true")
    parser.add_argument("--batch1_only", action="store_true", help="only the batch-1 rows")
    parser.add_argument("--batch1_sentences", type=int, default=200)
    parser.add_argument("--skip_batch1", action="store_true", help="keep the batch-1 rows of an earlier run")
    args = parser.parse_args()
    if not MSRA_TEST.is_file() or not (E5_ZH / "model.safetensors").is_file():
        raise SystemExit(f"needs {MSRA_TEST} and {E5_ZH} (make e5)")
    WORK.mkdir(parents=True, exist_ok=True)
    sentences = msra_sentences()
    print(f"CPU: {cpu_label()}", flush=True)
    rates = earlier_rates() if (args.memory_only or args.batch1_only) else None
    rates = rates or {threads: matmul_rates(threads) for threads in (1, 2)}
    rows: list[dict] = []
    memory: list[dict] = []

    def report(done: list[dict]) -> None:
        save(done, memory, rates)
        print(render(done, [], rates).splitlines()[-3], flush=True)  # the newest row

    if not (args.memory_only or args.batch1_only):
        for name in args.models:
            count = args.sentences or MODELS[name][1]
            rows += throughput_rows(name, sentences, rates, count, lambda r: report(rows + r))
            save(rows, memory, rates)
    batch1 = [] if (args.memory_only or args.skip_batch1) else batch1_rows(sentences, args.batch1_sentences)
    save(rows, memory, rates, batch1)
    if args.memory or args.memory_only:
        memory = memory_rows(sentences)
        save(rows, memory, rates, batch1)
    print(RESULTS.with_suffix(".md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
