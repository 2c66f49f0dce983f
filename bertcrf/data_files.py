"""Which reader reads a data file: format detection (`sniff_format`) and dispatch (`read_file`).

The one owner of choosing a format. The readers form a line, not a loop: `bertcrf.ner_data` reads column, JSON-lines
and CLUENER files, `bertcrf.annotations` (which uses ner_data's helpers) reads doccano, Label Studio and brat, and
this module imports both; neither imports it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bertcrf import annotations, ner_data
from bertcrf.annotations import DOCCANO_OFFSETS
from bertcrf.ner_data import DataFormatError, check_file, text_lines


__all__ = ["DATA_FORMATS", "DOCCANO_OFFSETS", "read_file", "sniff_format"]

# What `read_file` reads: "auto" sniffs the content (see `sniff_format`); "cluener" is CLUENER-style span JSON.
DATA_FORMATS = ("auto", "column", "jsonl", "cluener", "doccano", "label-studio", "brat")

# A JSON document that opens a list of objects (Label Studio), not a column line whose token is "[".
_JSON_LIST_START = re.compile(r"\[\s*(\{|\]|$)")

# What each sniffed JSON format is called in messages, and the --data_format value that reads it.
_JSON_FORMATS = {
    "label-studio": ("a Label Studio JSON export", "label-studio"),
    "doccano": ("doccano JSONL", "doccano"),
    "spans": ("CLUENER-style JSON lines", "cluener"),
    "jsonl": ("JSON lines", "jsonl"),
}


def sniff_format(path: str | Path) -> str:
    """The format of `path` from its content: "brat" (a folder with .ann files), "label-studio" (a JSON list),
    "doccano" (JSON lines with a text and a list of spans), "spans" (CLUENER: a text and a {type: ...} label),
    "jsonl" (token and tag lists) or "column", from the first non-blank line."""
    if Path(path).is_dir():
        if next(Path(path).rglob("*.ann"), None) is not None:
            return "brat"
        raise IsADirectoryError(
            f"{path} is a directory, not a data file (a brat folder would hold .txt files with .ann files beside "
            "them; this one has no .ann file)"
        )
    first = _first_line(path)
    if first is None:
        raise DataFormatError(path, None, "an empty file", "NER data")
    line_no, line = first
    if _JSON_LIST_START.match(line.strip()):
        return "label-studio"
    if line.lstrip().startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, line_no, f"invalid JSON ({err.msg})", "one JSON object per line") from None
        return _json_kind(record)
    return "column"


def _first_line(path: str | Path) -> tuple[int, str] | None:
    for line_no, line in text_lines(path):
        if line.strip():
            return line_no, line
    return None


def _json_kind(record: Any) -> str:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "tokens" in record:
        return "jsonl"
    if any(isinstance(record.get(key), list) for key in ("entities", "label", "labels")):
        return "doccano"
    return "spans"


def _refuse_json_as_column(path: str | Path) -> None:
    """A column file's first line is a token and a tag: one that is a whole JSON object (or opens a JSON list of
    objects) is a JSON format read by mistake, whose fragments would become tokens and tags."""
    first = _first_line(path)
    if first is None:
        return
    line_no, line = first
    stripped = line.strip()
    if _JSON_LIST_START.match(stripped):
        kind = "label-studio"
    elif stripped.startswith("{"):
        try:
            kind = _json_kind(json.loads(stripped))
        except json.JSONDecodeError:
            return  # a token "{" and its tag
    else:
        return
    name, value = _JSON_FORMATS[kind]
    raise DataFormatError(
        path,
        line_no,
        f"{stripped[:60]!r}{'...' if len(stripped) > 60 else ''}, which looks like {name}",
        f"a column file (a token and a tag per line, as --data_format column says): pass --data_format {value} "
        "(or auto, which detects it)",
    )


def read_file(
    path: str | Path,
    tokens_key: str = "tokens",
    tags_key: str = "tags",
    span_scheme: str = "BIO",
    data_format: str = "auto",
    text_key: str | None = None,
    doccano_offsets: str = "auto",
) -> list[dict[str, Any]]:
    """Read any supported local file (or brat folder), choosing the reader by content unless `data_format` (one of
    `DATA_FORMATS`) names it. Character spans become tags in `span_scheme`; `text_key` is the Label Studio data key
    holding the text and `doccano_offsets` the unit of doccano offsets (see `annotations.read_doccano`)."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data format must be one of {DATA_FORMATS}, got {data_format!r}")
    if doccano_offsets not in DOCCANO_OFFSETS:
        raise ValueError(f"doccano offsets must be one of {DOCCANO_OFFSETS}, got {doccano_offsets!r}")
    check_file(path, directory_ok=data_format in ("auto", "brat"))
    kind = sniff_format(path) if data_format == "auto" else data_format
    if kind == "column":
        if data_format == "column":
            _refuse_json_as_column(path)
        return ner_data.read_column_file(path)
    if kind == "jsonl":
        return ner_data.read_json_lines(path, tokens_key, tags_key)
    if kind in ("spans", "cluener"):
        return ner_data.read_span_json(path, span_scheme)
    if kind == "doccano":
        return annotations.read_doccano(path, span_scheme, doccano_offsets)
    if kind == "label-studio":
        return annotations.read_label_studio(path, span_scheme, text_key)
    return annotations.read_brat(path, span_scheme)
