#!/usr/bin/env python
"""Tag text with a bert-crf checkpoint (or its ONNX export): a file, a stream or a dataset of any size in; JSON
lines of entities, a column file or pre-annotations for Label Studio or doccano out; one process or many.

    python scripts/tag.py --model outputs/demo --input news.txt --output news.jsonl
    cat news.txt | python scripts/tag.py --model outputs/demo --format column > news.tsv
    python scripts/tag.py --model outputs/demo --input news.txt --format label-studio --output tasks.json
    python scripts/tag.py --model outputs/demo --input tickets.jsonl --text_field body --output tickets.tagged.jsonl
    python scripts/tag.py --onnx outputs/demo-onnx --int8 --input archive.parquet --output archive.jsonl
    python scripts/tag.py --model outputs/demo --input pool.txt --rank 200 --format label-studio --output next.json
    accelerate launch --num_processes 2 scripts/tag.py --model outputs/demo --input news.txt --output news.jsonl

Inputs, read as a stream (never held in memory): a text file or standard input, one text per line; JSON lines,
the text in --text_field ("text"); a parquet, CSV or JSON file, or a Hub dataset by name (--split, --subset),
through `datasets` streaming. Records are numbered from 1 (the line of a text or JSON-lines file, the row of a
dataset). Texts of any length are tagged through overlapping windows; entities carry character offsets into their
text and scores from the CRF's marginals. Formats:

- jsonl: `{"line": n, "text": ..., "entities": [{"entity_group", "score", "word", "start", "end"}, ...]}`; a blank
  line gives an empty result, so output lines match input records.
- column: one `word<TAB>tag` line per word the tokenizer sees, a blank line after each text (an empty block for a
  blank line).
- label-studio: one JSON list of tasks `{"id": n, "data": {"text"}, "predictions": [{"model_version", "score",
  "result": [...]}]}` to import as pre-annotations (`--from_name`/`--to_name` name the Labels and Text tags of the
  project's labeling config); each result is a "labels" span with its score, the prediction's score is the mean
  of its entities' (absent without entities).
- doccano: JSONL `{"line": n, "text": ..., "label": [[start, end, TYPE], ...]}` (doccano imports "line" as
  metadata).

--rank N chooses the N texts to annotate next instead (docs/active-learning.md): every text of the input is
tagged, ranked by the CRF's expected number of wrongly tagged words (`bertcrf.active_learning`), texts too similar
to a better-ranked chosen one passed over (--max_similarity), and the chosen ones written in ranking order as
label-studio tasks (the prediction's score: the text's mistake probability), doccano or jsonl records, each with
its rank, mistake probability and expected errors. A ranking needs the whole input: it is held in memory, runs in
one process and is not resumed in chunks.

Neither tool can annotate an empty text: in the last two formats blank texts (whitespace only) are skipped, and
the task id or "line" is the record number, so every task still names its line.

Output is written in chunks of --chunk_size records to OUTPUT.parts/ (each complete chunk renamed into place),
then joined into OUTPUT: a run stopped at any point (Ctrl-C, kill -9) continues from its complete chunks when the
same command runs again, and the joined file equals an uninterrupted run's. An existing OUTPUT, or chunks left by
a run with another input, model or options, stop the command unless --overwrite; an --output that is the --input
(by path, link or inode) is refused. Under `accelerate launch --num_processes N` (one machine or several: then
OUTPUT's folder must be shared), chunk k is tagged by process k mod N on its own device, and the output is byte
for byte that of one process (with the same threads per process). --onnx runs an export_onnx.py folder with ONNX
Runtime; a single process then needs no torch. Errors about the input, the model or the options are printed
without a traceback (BERTCRF_TRACEBACK=1 shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from bertcrf import active_learning, cli, corpus, ner_data
from bertcrf.active_learning import MAX_SIMILARITY
from bertcrf.lexicon import read_lexicon
from bertcrf.safe_files import check_not_input, write_text


# ner_acceleration.PRECISIONS (a test keeps them equal): importing it would import torch, which --onnx does without.
PRECISIONS = ("float32", "bfloat16", "auto")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(parser)
    _add_input_options(parser)
    _add_output_options(parser)
    _add_run_options(parser)
    _add_rank_options(parser)
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """What tags: a bert-crf model or an ONNX export."""
    parser.add_argument("--model", help="a bert-crf folder or Hub id (or --onnx)")
    parser.add_argument(
        "--onnx",
        metavar="FOLDER",
        help="an export_onnx.py folder, run with ONNX Runtime (torch is not needed) instead of --model",
    )
    parser.add_argument("--int8", action="store_true", help="--onnx: the INT8 graph (model.int8.onnx)")
    parser.add_argument(
        "--dtype",
        choices=PRECISIONS,
        default="float32",
        help="--model: the encoder's precision (the CRF decodes in float32 always): bfloat16, or auto (bfloat16 "
        "only where the CPU or GPU has bf16 hardware and a measurement, cached per machine, shows it faster)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="--model: torch.compile the encoder (lengths bucketed; the first batches of one and of several texts "
        "compile, for tens of seconds on a CPU)",
    )


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    """What is tagged: a text, JSON lines, table file or Hub dataset, and where its text is."""
    parser.add_argument(
        "--input",
        default="-",
        help="a text file (one text per line), JSON lines, a parquet/CSV/JSON file or a Hub dataset name "
        "(default: standard input, text)",
    )
    parser.add_argument(
        "--input_format",
        choices=corpus.INPUT_FORMATS,
        default="auto",
        help="auto (default): by the suffix (.jsonl/.ndjson, .parquet, .csv, .json; else text), or a Hub dataset "
        "for a name like owner/name that is not a file here",
    )
    parser.add_argument("--text_field", default="text", help="JSON lines and datasets: the field with the text")
    parser.add_argument("--split", default="train", help="a Hub dataset's split (default: train)")
    parser.add_argument("--subset", default=None, help="a Hub dataset's configuration name")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """Where the tags go and in which format (jsonl, column, or an annotation tool's import)."""
    parser.add_argument("--output", default="-", help="output file (default: stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output (and its chunks)")
    parser.add_argument("--format", choices=("jsonl", "column", "label-studio", "doccano"), default="jsonl")
    parser.add_argument("--from_name", default="label", help="label-studio: the name of the project's Labels tag")
    parser.add_argument("--to_name", default="text", help="label-studio: the name of the project's Text tag")
    parser.add_argument(
        "--doccano_offsets",
        choices=("utf-16", "grapheme", "characters"),
        default="utf-16",
        help="doccano: the offsets' unit: utf-16 (doccano's, default), grapheme (a project that counts grapheme "
        "clusters as one character) or characters (Python's, for other tools)",
    )
    parser.add_argument(
        "--model_version",
        default=None,
        help="label-studio: the predictions' model_version (default: the model's name)",
    )


def _add_rank_options(parser: argparse.ArgumentParser) -> None:
    """Active learning: which texts to annotate next."""
    parser.add_argument(
        "--rank",
        type=int,
        metavar="N",
        default=None,
        help="choose the N texts to annotate next (most expected tagging errors first, near-duplicates passed "
        "over) and write only those, in ranking order (formats label-studio, doccano, jsonl)",
    )
    parser.add_argument(
        "--max_similarity",
        type=float,
        default=None,
        help="--rank: texts sharing more than this share of character 3-grams with a chosen text are passed over "
        f"(Jaccard, default {MAX_SIMILARITY}; 1 keeps every text)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """How the job runs: a dictionary to decode around, batches, chunks, device, threads, progress, statistics, and
    whether a tokenizer may run code from the model."""
    parser.add_argument(
        "--dictionary",
        nargs="+",
        default=None,
        metavar="FILE",
        help="word<TAB>TYPE files: each occurrence of a word (on word boundaries) is tagged as one entity of TYPE, "
        "or as no entity with TYPE O, and the rest of the text decoded around it; overlaps: the longest wins",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--chunk_size",
        type=int,
        default=1000,
        help="records per chunk: the unit written, resumed and shared between processes (default: 1000)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the process's accelerate device)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads per process (default: the cores over the processes)"
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--stats",
        metavar="FILE",
        help="write the job's records, characters, seconds, records/s, characters/s and share of time in the model "
        "as JSON (from the first chunk to the joined output; loading the model is not counted)",
    )
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="allow a tokenizer that needs code from the model folder or Hub repo (off: none is run)",
    )
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if (args.model is None) == (args.onnx is None):
        parser.error("give one of --model (a bert-crf folder or Hub id) and --onnx (an export_onnx.py folder)")
    if args.int8 and args.onnx is None:
        parser.error("--int8 goes with --onnx (the exported folder's model.int8.onnx)")
    if args.onnx is not None and (args.compile or args.dtype != "float32"):
        parser.error("--dtype and --compile go with --model (an ONNX export runs as exported: see --int8)")
    check_rank_options(parser, args)
    for option in ("batch_size", "chunk_size", "threads", "rank"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be >= 1, got {value}")
    return args


def check_rank_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--rank's limits: the PyTorch model (its CRF's path probabilities), a format an annotation tool reads, one
    process; --max_similarity only with it, between 0 and 1."""
    if args.rank is None:
        if args.max_similarity is not None:
            parser.error("--max_similarity goes with --rank")
        return
    if args.onnx is not None:
        parser.error("--rank needs --model (the CRF's path probabilities come from the PyTorch model)")
    if args.format == "column":
        parser.error("--rank writes label-studio, doccano or jsonl, not column")
    if launched_processes() > 1:
        parser.error("--rank runs in one process (a ranking needs every text): run it without accelerate launch")
    if args.max_similarity is not None and not 0.0 <= args.max_similarity <= 1.0:
        parser.error(f"--max_similarity must be between 0 and 1, got {args.max_similarity}")


def open_input(args: argparse.Namespace) -> corpus.Source:
    if args.output != "-" and args.input != "-" and os.path.exists(args.input):
        check_not_input(args.output, {"--input": args.input}, "--output")
    return corpus.open_source(args.input, args.input_format, args.text_field, args.split, args.subset)


def launched_processes() -> int:
    """How many processes `accelerate launch` (or torchrun) started for this job; 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_shard(args: argparse.Namespace) -> tuple[corpus.Shard, str | None]:
    """This process's place in the job and its device: accelerate's when launched with several processes (one
    device each: cuda:LOCAL_RANK on GPUs), nothing to import for one."""
    if launched_processes() == 1:
        return corpus.Shard(), args.device
    import torch
    from accelerate import PartialState

    # Without cpu=True, accelerate on a machine without GPUs leaves the processes unconnected (each its own job).
    on_cpu = bool(args.onnx) or args.device == "cpu" or (args.device is None and not torch.cuda.is_available())
    state = PartialState(cpu=on_cpu)
    if state.num_processes != launched_processes():
        raise RuntimeError(f"accelerate joined {state.num_processes} of {launched_processes()} processes")
    device = "cpu" if on_cpu else args.device or str(state.device)
    return corpus.Shard(state.process_index, state.num_processes, state.wait_for_everyone), device


def cpu_threads(args: argparse.Namespace) -> int:
    """--threads, else OMP_NUM_THREADS, else this machine's cores shared by the processes on it."""
    if args.threads:
        return args.threads
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # accelerate launch sets it per process
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, len(os.sched_getaffinity(0)) // local)


def load_tagger(
    args: argparse.Namespace, device: str | None, aggregation: str, stats: corpus.Stats | None = None
) -> corpus.Tagger:
    """A callable texts -> results: the ONNX Runtime tagger (torch-free) or the PyTorch pipeline. With `stats`, the
    time spent in the model (ONNX Runtime's session, the model's emissions and CRF decoding) is added to it."""
    stats = stats or corpus.Stats()
    dictionary = read_lexicon(args.dictionary, "tsv") if args.dictionary else None
    options: dict[str, Any] = {"aggregation_strategy": aggregation}
    if dictionary is not None:
        options["dictionary"] = dictionary
    if aggregation == "none":
        options["ignore_labels"] = []
    threads = cpu_threads(args)
    if args.onnx:
        from ner_onnx import OnnxNerTagger

        onnx_tagger = OnnxNerTagger(args.onnx, quantized=args.int8, threads=threads)
        corpus.time_model_calls(onnx_tagger, stats)

        def tag_onnx(texts: Iterable[str]) -> Iterator[list[dict[str, Any]]]:
            for batch in corpus.chunks(texts, args.batch_size):
                yield from onnx_tagger.tag_batch(batch, batch_size=args.batch_size, **options)

        return tag_onnx
    pipe = load_pipeline(args, device)
    corpus.time_model_calls(pipe, stats)

    def tag_torch(texts: Iterable[str]) -> Iterator[list[dict[str, Any]]]:
        return iter(pipe(iter(texts), batch_size=args.batch_size, **options))  # results come lazily, in order

    return tag_torch


def load_pipeline(args: argparse.Namespace, device: str | None) -> Any:
    """The PyTorch CRF pipeline of --model, with this process's CPU threads and the speed options."""
    import torch

    from bertcrf.crf_models import load_crf_pipeline

    if not (device or "").startswith("cuda"):
        torch.set_num_threads(cpu_threads(args))
    pipe = load_crf_pipeline(args.model, device, args.trust_remote_code, args.dtype, args.compile)
    if not args.no_progress:
        say_speed_options(args, pipe)
    return pipe


def say_speed_options(args: argparse.Namespace, pipe: Any) -> None:
    """What --dtype auto chose, and that --compile's first batches wait for the compiler."""
    if args.dtype == "auto":
        chosen = str(pipe.model.dtype).replace("torch.", "")
        print(f"--dtype auto: {chosen} (bfloat16 needs bf16 hardware and a faster measurement)", file=sys.stderr)
    if args.compile:
        print("--compile: the first batch of one text and the first of several compile first", file=sys.stderr)


def make_job(args: argparse.Namespace) -> corpus.Job:
    """The output and what it depends on besides the input: a run continues only chunks made the same way."""
    model = args.onnx or args.model
    fmt = corpus.output_format(
        args.format, args.model_version or model_name(model), args.from_name, args.to_name, args.doccano_offsets
    )
    identity = {
        "model": model_identity(model),
        "int8": args.int8,
        "dtype": args.dtype,
        "compile": args.compile,
        "format": args.format,
        "batch_size": args.batch_size,
        "dictionary": [model_identity(d) for d in args.dictionary or []],
        **{k: getattr(args, k) for k in ("from_name", "to_name", "doccano_offsets", "model_version")},
    }
    return corpus.Job(args.output, fmt, args.chunk_size, {"job": identity}, args.overwrite, not args.no_progress)


def model_identity(path: str) -> dict[str, Any]:
    """A folder or file by its resolved path and the size and time of its files; a Hub id as it is."""
    where = Path(path)
    if not where.exists():
        return {"name": path}
    files = sorted(p for p in ([where] if where.is_file() else where.iterdir()) if p.is_file())
    return {"path": str(where.resolve()), "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


def model_name(model: str) -> str:
    """A model's name for Label Studio's model_version: its folder's name, or its Hub id."""
    path = Path(model)
    return path.resolve().name if path.is_dir() else model


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parse_args(parser, argv)
    with input_errors(parser):
        source = open_input(args)
    if args.rank is not None:
        with input_errors(parser):
            rank(args, source)
        return
    job = make_job(args)
    shard, device = make_shard(args)
    corpus.prepare(source, job, shard)
    stats = corpus.Stats()
    tagger = load_tagger(args, device, job.fmt.aggregation, stats)
    with input_errors(parser):
        corpus.run(source, tagger, job, shard, stats)
    if args.stats and shard.main:
        write_stats(args, shard, stats)


def rank(args: argparse.Namespace, source: corpus.Source) -> None:
    """--rank: tag every non-blank text, choose the next ones to annotate, write them in ranking order."""
    if args.output != "-" and os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists: choose another --output, or --overwrite to replace it")
    records = [(number, text) for number, text in source.read() if text.strip()]
    answers = uncertainties_of(args, [text for _, text in records])
    similarity = MAX_SIMILARITY if args.max_similarity is None else args.max_similarity
    picked, skipped = active_learning.rank([t for _, t in records], answers, args.rank, similarity)
    chosen = [(*records[i], answers[i]) for i in picked]
    output = active_learning.ranked_output(
        chosen, args.format, args.model_version or model_name(args.model), args.from_name, args.to_name,
        args.doccano_offsets,
    )  # fmt: skip
    if args.output == "-":
        sys.stdout.write(output)
    else:
        write_text(args.output, output)
    say_ranking(records, answers, chosen, skipped)


def uncertainties_of(args: argparse.Namespace, texts: list[str]) -> list[dict[str, Any]]:
    """Each text's entities and uncertainties from --model (with --dictionary), with a progress bar."""
    from tqdm.auto import tqdm

    pipe = load_pipeline(args, args.device)
    options = {"dictionary": read_lexicon(args.dictionary, "tsv")} if args.dictionary else {}
    with tqdm(total=len(texts), unit="text", desc="ranking", disable=args.no_progress, file=sys.stderr) as bar:
        return active_learning.uncertainties(pipe, texts, bar.update, args.batch_size, **options)


def say_ranking(records: list, answers: list, chosen: list, skipped: list) -> None:
    """One line on stderr: how many texts were ranked and chosen, and what the chosen ones hold."""
    errors = sum(answer["expected_errors"] for *_, answer in chosen)
    mean = sum(answer["mistake_probability"] for *_, answer in chosen) / max(len(chosen), 1)
    print(
        f"ranked {len(records)} texts: chose {len(chosen)} (expected wrongly tagged words {errors:.1f}, mean "
        f"mistake probability {mean:.3f}); passed over {len(skipped)} near-duplicates of chosen texts",
        file=sys.stderr,
    )


def write_stats(args: argparse.Namespace, shard: corpus.Shard, stats: corpus.Stats) -> None:
    """The job's throughput as JSON (process 0's view: the whole job's records over its wall time, and its own
    share of time in the model)."""
    summary = {**stats.summary(), "processes": shard.world, "threads_per_process": cpu_threads(args)}
    write_text(args.stats, json.dumps(summary, indent=1) + "\n")


@contextlib.contextmanager
def input_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """A mistake in the input stops with its file and line, as a mistake on the command line does."""
    try:
        yield
    except ner_data.DataFormatError as error:
        parser.error(str(error))


if __name__ == "__main__":
    cli.run(main)
