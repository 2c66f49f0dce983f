#!/usr/bin/env python
"""Tag text files with a bert-crf checkpoint: raw text lines in, JSON lines of entities (or a column file) out.

    python tag.py --model outputs/demo --input news.txt --output news.jsonl
    cat news.txt | python tag.py --model outputs/demo --format column > news.tsv

Each input line is one text (blank lines give an empty result, so output lines match input lines). Texts of any
length are tagged through overlapping windows; entities carry character offsets into their line. JSON output:
`{"line": n, "text": ..., "entities": [{"entity_group", "score", "word", "start", "end"}, ...]}`. Column output:
one `word<TAB>tag` line per word the tokenizer sees, a blank line after each text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any, BinaryIO, Iterator, TextIO

from tqdm.auto import tqdm

from bertcrf import ner_data
from bertcrf.crf_models import load_crf_pipeline
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
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(text, pipeline result) for each line, in order; blank lines give no result. With "none", every word is
    listed, O words included."""
    texts = (line for line in lines if line.strip())
    options: dict[str, Any] = {"aggregation_strategy": aggregation_strategy}
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
    parser.add_argument("--format", choices=("jsonl", "column"), default="jsonl")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="allow a tokenizer that needs code from the model folder or Hub repo (off: none is run)",
    )
    args = parser.parse_args(argv)

    try:
        if args.input == "-":
            lines = list(read_lines(sys.stdin.buffer, "<stdin>"))
        else:
            ner_data.check_file(args.input, "text")
            with open(args.input, "rb") as source:
                lines = list(read_lines(source, args.input))
    except (OSError, ner_data.DataFormatError) as error:
        parser.error(str(error))
    pipe = load_crf_pipeline(args.model, args.device, args.trust_remote_code)
    strategy = "simple" if args.format == "jsonl" else "none"
    with contextlib.ExitStack() as stack:  # closes the output file, never stdout
        out = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w", encoding="utf-8"))
        for number, (text, result) in enumerate(
            tag_lines(pipe, lines, args.batch_size, strategy, not args.no_progress), 1
        ):
            if args.format == "jsonl":
                write_jsonl(out, number, text, result)
            else:
                write_column(out, result)


if __name__ == "__main__":
    main()
