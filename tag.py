#!/usr/bin/env python
"""Tag text files with a bert-crf checkpoint: raw text lines in, JSON lines of entities, a column file or
pre-annotations for Label Studio or doccano out.

    python tag.py --model outputs/demo --input news.txt --output news.jsonl
    cat news.txt | python tag.py --model outputs/demo --format column > news.tsv
    python tag.py --model outputs/demo --input news.txt --format label-studio --output tasks.json

Each input line is one text. Texts of any length are tagged through overlapping windows; entities carry character
offsets into their line and scores from the CRF's marginals. Formats:

- jsonl: `{"line": n, "text": ..., "entities": [{"entity_group", "score", "word", "start", "end"}, ...]}`; a blank
  line gives an empty result, so output lines match input lines.
- column: one `word<TAB>tag` line per word the tokenizer sees, a blank line after each text (an empty block for a
  blank line).
- label-studio: one JSON list of tasks `{"id": n, "data": {"text"}, "predictions": [{"model_version", "score",
  "result": [...]}]}` to import as pre-annotations (`--from_name`/`--to_name` name the Labels and Text tags of the
  project's labeling config); each result is a "labels" span with its score, the prediction's score is the mean
  of its entities' (absent without entities).
- doccano: JSONL `{"line": n, "text": ..., "label": [[start, end, TYPE], ...]}` (doccano imports "line" as
  metadata).

Neither tool can annotate an empty text: in the last two formats blank lines (whitespace only) are skipped, and
the task id or "line" is the input line number, so every task still names its line.

An --output file is written beside its target and renamed into place when complete, so an interrupted run never
leaves a truncated file where a complete one stood; an --output that is the --input (by path, link or inode) is
refused. Errors about the input, the model or the options are printed without a traceback (BERTCRF_TRACEBACK=1
shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterator, TextIO

from tqdm.auto import tqdm

from bert_crf_utils import Lexicon
from bertcrf import annotations, cli, ner_data
from bertcrf.crf_models import load_crf_pipeline
from bertcrf.lexicon import read_lexicon
from bertcrf.safe_files import atomic_write, check_not_input
from pipeline_bert_crf import BertCrfTokenClassificationPipeline


def read_lines(handle: BinaryIO, name: str) -> Iterator[str]:
    """The lines of a UTF-8 byte stream; only "\n" ends a line, so a lone "\r" inside a line keeps its output line
    aligned with its input line. Bytes that are not UTF-8 stop with `name`:line."""
    for _, line in ner_data.text_lines(name, handle):
        yield line


def tag_lines(
    pipe: BertCrfTokenClassificationPipeline,
    lines: list[str],
    batch_size: int,
    aggregation_strategy: str,
    progress: bool = True,
    dictionary: Lexicon | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(text, pipeline result) for each line, in order; blank lines give no result. With "none", every word is
    listed, O words included. `dictionary` words are forced as entities of their type, or forbidden (type O)."""
    texts = (line for line in lines if line.strip())
    options: dict[str, Any] = {"aggregation_strategy": aggregation_strategy}
    if dictionary is not None:
        options["dictionary"] = dictionary
    if aggregation_strategy == "none":
        options["ignore_labels"] = []
    results = iter(pipe(texts, batch_size=batch_size, **options))  # a generator in: results come lazily, in order
    for line in tqdm(lines, desc="Tagging", unit="line", disable=not progress):
        yield line, (next(results) if line.strip() else [])


def write_jsonl(out: TextIO, number: int, text: str, entities: list[dict[str, Any]]) -> None:
    rounded = [dict(e, score=round(float(e["score"]), 4)) for e in entities]
    out.write(json.dumps({"line": number, "text": text, "entities": rounded}, ensure_ascii=False) + "\n")


def write_column(out: TextIO, words: list[dict[str, Any]]) -> None:
    for w in words:
        out.write(f"{w['word']}\t{w['entity']}\n")
    out.write("\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bert-crf folder or Hub id")
    parser.add_argument("--input", default="-", help="text file, one text per line (default: stdin)")
    parser.add_argument("--output", default="-", help="output file (default: stdout)")
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
    parser.add_argument(
        "--dictionary",
        nargs="+",
        default=None,
        metavar="FILE",
        help="word<TAB>TYPE files: each occurrence of a word (on word boundaries) is tagged as one entity of TYPE, "
        "or as no entity with TYPE O, and the rest of the text decoded around it; overlaps: the longest wins",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="allow a tokenizer that needs code from the model folder or Hub repo (off: none is run)",
    )
    args = parser.parse_args(argv)

    if args.output != "-" and args.input != "-":
        check_not_input(args.output, {"--input": args.input}, "--output")
    try:
        if args.input == "-":
            lines = list(read_lines(sys.stdin.buffer, "<stdin>"))
        else:
            ner_data.check_file(args.input, "text")
            with open(args.input, "rb") as source:
                lines = list(read_lines(source, args.input))
    except (OSError, ner_data.DataFormatError) as error:
        parser.error(str(error))
    dictionary = read_lexicon(args.dictionary, "tsv") if args.dictionary else None
    with contextlib.ExitStack() as stack:  # closes the output file, never stdout
        # A file appears only once complete (written beside it, then renamed): an interrupted run keeps the old one.
        # Opened before the model loads, so that an output folder that is missing or read-only stops at once.
        out = sys.stdout if args.output == "-" else stack.enter_context(atomic_write(args.output))
        pipe = load_crf_pipeline(args.model, args.device, args.trust_remote_code)
        strategy = "none" if args.format == "column" else "simple"
        tagged = enumerate(tag_lines(pipe, lines, args.batch_size, strategy, not args.no_progress, dictionary), 1)
        if args.format == "label-studio":
            version = args.model_version or model_name(args.model)
            texts = ((number, text, result) for number, (text, result) in tagged)
            annotations.write_label_studio(out, texts, version, args.from_name, args.to_name)
        elif args.format == "doccano":
            texts = ((number, text, result) for number, (text, result) in tagged)
            annotations.write_doccano(out, texts, args.doccano_offsets)
        else:
            for number, (text, result) in tagged:
                if args.format == "jsonl":
                    write_jsonl(out, number, text, result)
                else:
                    write_column(out, result)


def model_name(model: str) -> str:
    """A model's name for Label Studio's model_version: its folder's name, or its Hub id."""
    path = Path(model)
    return path.resolve().name if path.is_dir() else model


if __name__ == "__main__":
    cli.run(main)
