"""Tagging a corpus of any size, in one process or several, resumably: the engine behind tag.py.

Records. The input is read as a stream of (record number, text), never held whole: a text file (a record a line,
numbered by line), JSON lines (a record a line, its text in one field), or any `datasets`-readable source (local
parquet, CSV or JSON files, or a Hub dataset by name), streamed (`streaming=True`) and numbered by row from 1.

Chunks. The stream is cut into chunks of `chunk_size` records; chunk k is tagged by process k mod N of N processes
(round-robin: every process reads the whole stream and tags every N-th chunk, so no process needs to know the
length of the input first). A chunk's output is a fixed function of its records, so it is the same whichever
process tags it and however many there are.

Output. With an --output file, each chunk's output is written to `OUTPUT.parts/NNNNNNNN.part` through a temporary
file renamed into place, so a chunk file that exists is complete; `manifest.json` beside them records what the
chunks are made from (input, model and options). When every chunk is there, process 0 joins them in order into
OUTPUT (again through a temporary file renamed into place) and removes the folder. A run stopped at any point
(Ctrl-C, `kill -9`, a lost machine) continues from its complete chunks when the same command runs again, with any
number of processes; a run with other options refuses to mix its chunks with theirs. With several machines the
output folder must be one they all see (a shared file system). Standard output is written chunk by chunk by a
single process and cannot be resumed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO, TypeVar

from tqdm.auto import tqdm

from bertcrf import annotations
from bertcrf.ner_data import DataFormatError, check_file, text_lines
from bertcrf.safe_files import atomic_write, write_text


logger = logging.getLogger(__name__)

Record = tuple[int, str]  # (record number from 1, text)
T = TypeVar("T")
# Texts in, one result (a list of entity or word dicts) per text out, lazily and in order.
Tagger = Callable[[Iterable[str]], Iterator[list[dict[str, Any]]]]

INPUT_FORMATS = ("auto", "text", "jsonl", "parquet", "csv", "json", "hub")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv", ".json": "json"}
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# Sources


@dataclass
class Source:
    """A stream of records, what identifies it (for resuming) and, where cheap to know, how many records it has."""

    name: str
    read: Callable[[], Iterator[Record]]
    identity: dict[str, Any]
    total: int | None = None


def input_format(path: str, requested: str = "auto") -> str:
    """The format of `path`: `requested`, or by its suffix (.jsonl/.ndjson, .parquet, .csv, .json; else text), or
    "hub" for a name like owner/name that is not a file or folder here (a name without owner needs "hub")."""
    if requested not in INPUT_FORMATS:
        raise ValueError(f"input format must be one of {INPUT_FORMATS}, got {requested!r}")
    if requested != "auto":
        return requested
    if path == "-":
        return "text"
    suffix = Path(path).suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if not os.path.exists(path) and re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", path) and not Path(path).suffix:
        return "hub"
    return "text"


def open_source(
    path: str, fmt: str = "auto", text_field: str = "text", split: str = "train", subset: str | None = None
) -> Source:
    """The records of `path` ("-": standard input) read as `fmt` (see `input_format`)."""
    fmt = input_format(path, fmt)
    if path == "-":
        if fmt not in ("text", "jsonl"):
            raise ValueError(f"standard input can be read as text or jsonl, not {fmt}: give the file with --input")
        read = lambda: _stdin_records(fmt, text_field)  # noqa: E731
        return Source("<stdin>", read, {"input": "<stdin>", "format": fmt, "text_field": text_field})
    if fmt == "hub":
        identity = {"input": path, "format": fmt, "subset": subset, "split": split, "text_field": text_field}
        stream = open_dataset(path, None, split, subset)
        return Source(path, lambda: dataset_records(stream, path, text_field), identity, split_rows(stream, split))
    check_file(path, "input")
    stat = os.stat(path)
    identity = {
        "input": str(Path(path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "format": fmt,
        "text_field": text_field if fmt != "text" else None,
    }
    if fmt in ("text", "jsonl"):
        read = (lambda: text_lines(path)) if fmt == "text" else (lambda: jsonl_records(path, text_field))
        # Read once before tagging: a bad line stops the job now rather than hours in, and the bar gets its total.
        return Source(path, read, identity, sum(1 for _ in read()))
    total = parquet_rows(path) if fmt == "parquet" else None
    stream = open_dataset(fmt, path, "train", None)
    return Source(path, lambda: dataset_records(stream, path, text_field), identity, total)


def parquet_rows(path: str | Path) -> int | None:
    try:
        import pyarrow.parquet

        return pyarrow.parquet.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - a file pyarrow cannot read fails with its own message when streamed
        return None


def jsonl_records(path: str | Path, text_field: str, handle: Any = None) -> Iterator[Record]:
    """(line number, the `text_field` string) of each line of a JSON-lines file; a blank line is an empty text,
    so that output records keep their input line numbers."""
    for number, line in text_lines(path, handle):
        if not line.strip():
            yield number, ""
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, number, f"invalid JSON ({error.msg} at column {error.colno})", "a JSON object")
        yield number, record_text(record, text_field, path, number)


def record_text(record: Any, text_field: str, path: str | Path, line: int | None, item: str | None = None) -> str:
    """The text of one input record, or a DataFormatError saying where and what was expected."""
    if not isinstance(record, dict):
        raise DataFormatError(path, line, f"a JSON {type(record).__name__}", "a JSON object", item)
    if text_field not in record:
        fields = ", ".join(map(repr, list(record)[:8])) or "none"
        expected = f'a "{text_field}" field (--text_field names another)'
        raise DataFormatError(path, line, f"the fields {fields}", expected, item)
    text = record[text_field]
    if not isinstance(text, str):
        found = "null" if text is None else f"a {type(text).__name__}"
        raise DataFormatError(path, line, f"{found} in {text_field!r}", "a string", item)
    return text


def _stdin_records(fmt: str, text_field: str) -> Iterator[Record]:
    if fmt == "jsonl":
        return jsonl_records("<stdin>", text_field, sys.stdin.buffer)
    return text_lines("<stdin>", sys.stdin.buffer)


def open_dataset(builder_or_name: str, data_file: str | None, split: str, subset: str | None) -> Any:
    """A `datasets` source streamed (`streaming=True`: rows are read as they are iterated): a local file through
    its builder (parquet, csv, json) or a Hub dataset by name. Opened before the model loads, so that a name that
    does not resolve stops the job at once."""
    import datasets

    if data_file is not None:
        return datasets.load_dataset(builder_or_name, data_files=data_file, split=split, streaming=True)
    return datasets.load_dataset(builder_or_name, subset, split=split, streaming=True)


def dataset_records(stream: Iterable[Any], name: str, text_field: str) -> Iterator[Record]:
    for number, row in enumerate(stream, 1):
        yield number, record_text(row, text_field, name, None, item=f"row {number}")


def split_rows(stream: Any, split: str) -> int | None:
    """The split's row count where the dataset's card states it."""
    splits = getattr(getattr(stream, "info", None), "splits", None) or {}
    info = splits.get(split) if hasattr(splits, "get") else None
    return getattr(info, "num_examples", None) or None


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last shorter), read lazily."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# ----------------------------------------------------------------------------------------------------------------
# Output formats


@dataclass
class OutputFormat:
    """How one record's result is written (`item`: a string, or None to write nothing for it), and how items
    are joined into a file: `head` + items joined by `separator` + `tail`, or `empty` when there is none."""

    item: Callable[[int, str, list[dict[str, Any]]], str | None]
    separator: str = ""
    head: str = ""
    tail: str = ""
    empty: str = ""
    # Words or entities the format needs: every word with its tag ("none") or entities ("simple").
    aggregation: str = "simple"
    counts: dict[str, int] = field(default_factory=dict)

    def write_joined(self, out: TextIO, parts: Iterable[str]) -> None:
        """Write `parts` (chunks' outputs, each its items already joined) as one file of this format."""
        written = False
        for text in parts:
            if text:
                out.write((self.separator if written else self.head) + text)
                written = True
        out.write(self.tail if written else self.empty)


def output_format(
    name: str,
    model_version: str = "",
    from_name: str = "label",
    to_name: str = "text",
    doccano_offsets: str = "utf-16",
) -> OutputFormat:
    """jsonl, column, label-studio or doccano (see tag.py)."""
    if name == "jsonl":
        return OutputFormat(jsonl_item)
    if name == "column":
        return OutputFormat(lambda number, text, words: column_item(words), aggregation="none")
    if name == "label-studio":
        return OutputFormat(
            lambda number, text, entities: annotations.label_studio_item(
                number, text, entities, model_version, from_name, to_name
            ),
            annotations.LABEL_STUDIO_SEPARATOR,
            annotations.LABEL_STUDIO_HEAD,
            annotations.LABEL_STUDIO_TAIL,
            annotations.LABEL_STUDIO_EMPTY,
        )
    if name == "doccano":
        annotations.check_doccano_offsets(doccano_offsets)
        counts = {"widened": 0}

        def doccano(number: int, text: str, entities: list[dict[str, Any]]) -> str | None:
            line, widened = annotations.doccano_line(number, text, entities, doccano_offsets)
            counts["widened"] += widened
            return line

        return OutputFormat(doccano, counts=counts)
    raise ValueError(f"output format must be one of jsonl, column, label-studio, doccano; got {name!r}")


def jsonl_item(number: int, text: str, entities: list[dict[str, Any]]) -> str:
    """`{"line", "text", "entities"}`, scores rounded to 4 decimals; a blank text gives an empty list."""
    rounded = [dict(e, score=round(float(e["score"]), 4)) for e in entities]
    return json.dumps({"line": number, "text": text, "entities": rounded}, ensure_ascii=False) + "\n"


def column_item(words: Sequence[dict[str, Any]]) -> str:
    """A `word<TAB>tag` line per word and a blank line after the text (an empty block for a blank text)."""
    return "".join(f"{w['word']}\t{w['entity']}\n" for w in words) + "\n"


def tag_chunk(tagger: Tagger, records: Sequence[Record], fmt: OutputFormat, advance: Callable[[int], None]) -> str:
    """The output of one chunk: its items joined by the format's separator, in input order. The chunk's texts are
    tagged shortest first, so that a batch holds texts of about one length: in input order, batches of 32 MSRA
    sentences padded to their longest computed 3x the FLOPs of their real tokens (benchmarks/RESULTS.md). Blank
    texts are not tagged (an empty result)."""
    tagged = [i for i, (_, text) in enumerate(records) if text.strip()]
    tagged.sort(key=lambda i: len(records[i][1]))  # stable: the order depends on the chunk alone
    results: dict[int, list[dict[str, Any]]] = {}
    for index, result in zip(tagged, tagger(records[i][1] for i in tagged)):
        results[index] = result
        advance(1)
    advance(len(records) - len(tagged))
    items = (fmt.item(number, text, results.get(i, [])) for i, (number, text) in enumerate(records))
    return fmt.separator.join(item for item in items if item is not None)


# ----------------------------------------------------------------------------------------------------------------
# Timing


@dataclass
class Stats:
    """What a job did, as seen from one process: the job's records and characters (every process reads them all),
    those it tagged itself, the wall time from its first chunk to the joined output, and its time in the model."""

    records: int = 0
    characters: int = 0
    tagged: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)
        return {
            "records": self.records,
            "characters": self.characters,
            "seconds": round(self.seconds, 6),
            "records_per_s": round(self.records / seconds, 2),
            "characters_per_s": round(self.characters / seconds, 1),
            "model_share": round(self.model_seconds / seconds, 4),
        }


def time_model_calls(runtime: Any, stats: Stats) -> None:
    """Add the seconds `runtime` spends in its model to `stats.model_seconds`: an ONNX tagger's `session.run`, or
    what the CRF pipeline calls of its model (`emissions` and `decode_packed`; never `forward`)."""
    if hasattr(runtime, "session"):
        runtime.session.run = timed(runtime.session.run, stats)
        return
    for name in ("emissions", "decode_packed"):
        setattr(runtime.model, name, timed(getattr(runtime.model, name), stats))


def timed(method: Callable[..., Any], stats: Stats) -> Callable[..., Any]:
    """`method`, adding the seconds each call takes to `stats.model_seconds`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            stats.model_seconds += time.perf_counter() - start

    return wrapper


# ----------------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Shard:
    """This process's place among the job's processes, and a barrier across them (nothing for one)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def main(self) -> bool:
        return self.rank == 0


# ----------------------------------------------------------------------------------------------------------------
# Jobs


@dataclass
class Job:
    output: str  # a file, or "-" for standard output
    fmt: OutputFormat
    chunk_size: int = 1000
    options: dict[str, Any] = field(default_factory=dict)  # what else the output depends on: model, options
    overwrite: bool = False
    progress: bool = True
    fresh: bool | None = None  # set by `prepare`: start afresh (True) or continue the chunks there (False)

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")


def parts_folder(output: str | Path) -> Path:
    path = Path(output)
    return path.with_name(path.name + ".parts")


def chunk_path(parts: Path, index: int) -> Path:
    return parts / f"{index:08d}.part"


def prepare(source: Source, job: Job, shard: Shard | None = None) -> None:
    """Check the output before the model loads (`run` does it too, once), so that an existing output, another
    run's chunks or a folder that cannot be written stop the job at once; nothing is written yet."""
    shard = shard or Shard()
    if job.output == "-":
        if shard.world > 1:
            raise ValueError("several processes need an --output file (each writes its chunks beside it)")
        return
    if job.fresh is not None:
        return
    folder = Path(job.output).resolve().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{job.output}: no such folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{job.output}: the folder {folder} cannot be written")
    job.fresh = check_resumable(job, job_manifest(source, job), parts_folder(job.output), source)
    if not job.fresh and shard.main:  # shown without any logging set up: the user sees why it is quicker
        done = sum(1 for _ in parts_folder(job.output).glob("*.part"))
        logger.warning("continuing the run in %s: %d complete chunks of %d records kept", parts_folder(job.output),
                       done, job.chunk_size)  # fmt: skip


def job_manifest(source: Source, job: Job) -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, **source.identity, "chunk_size": job.chunk_size, **job.options}


def run(source: Source, tagger: Tagger, job: Job, shard: Shard | None = None, stats: Stats | None = None) -> Stats:
    """Tag `source` into `job.output`; returns what this process saw and did (`stats`, whose model time the
    tagger may be adding to, or new)."""
    shard = shard or Shard()
    stats = stats or Stats()
    prepare(source, job, shard)
    if job.output == "-":
        return _to_stream(source, tagger, job, sys.stdout, stats)
    parts = parts_folder(job.output)
    shard.barrier()  # every process has checked the folder before the first one changes it
    if shard.main:
        if job.fresh and parts.exists():
            shutil.rmtree(parts)
        parts.mkdir(exist_ok=True)
        write_text(parts / MANIFEST, json.dumps(job_manifest(source, job), indent=1, ensure_ascii=False) + "\n")
    shard.barrier()
    began = time.perf_counter()
    progress = Progress(source, job, shard, parts, stats)
    try:
        total_chunks = _tag_shard(source, tagger, job, shard, parts, progress)
    except BaseException:
        if source.identity.get("input") == "<stdin>" and shard.main:  # a stream cannot be continued: no chunks kept
            shutil.rmtree(parts, ignore_errors=True)
        raise
    if shard.main:
        progress.wait_for(total_chunks)
    shard.barrier()
    if shard.main:
        join_chunks(parts, total_chunks, job.output, job.fmt)
        shutil.rmtree(parts)
    progress.close()
    _log_counts(job.fmt)
    stats.seconds = time.perf_counter() - began
    return stats


def _log_counts(fmt: OutputFormat) -> None:
    if fmt.counts.get("widened"):
        logger.warning("widened %d entities that start or end inside a grapheme cluster", fmt.counts["widened"])


def check_resumable(job: Job, manifest: dict[str, Any], parts: Path, source: Source) -> bool:
    """Whether the job starts afresh (False: it continues the complete chunks in `parts`, made from the same
    input, model and options). An existing output, or chunks made another way, stop it unless --overwrite."""
    if parts.is_dir():
        if source.identity.get("input") == "<stdin>":
            if job.overwrite:
                return True
            raise FileExistsError(
                f"{parts} holds chunks of an earlier run, and a run from standard input cannot be continued: "
                "give the input as a file to continue, or add --overwrite to start again"
            )
        try:
            before = json.loads((parts / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = {}
        if before == manifest:
            return False
        if job.overwrite:
            return True
        changed = sorted(k for k in set(before) | set(manifest) if before.get(k) != manifest.get(k))
        raise FileExistsError(
            f"{parts} holds chunks of an earlier run with another {', '.join(changed)}: run that command to "
            "continue it, or add --overwrite to start again"
        )
    if Path(job.output).exists() and not job.overwrite:
        raise FileExistsError(f"{job.output} exists: add --overwrite to replace it")
    return True


def _tag_shard(source: Source, tagger: Tagger, job: Job, shard: Shard, parts: Path, progress: Progress) -> int:
    """Tag this process's chunks that are not done yet; returns the number of chunks in the input."""
    count = 0
    for index, records in enumerate(chunks(source.read(), job.chunk_size)):
        count += 1
        progress.stats.records += len(records)
        progress.stats.characters += sum(len(text) for _, text in records)
        target = chunk_path(parts, index)
        if index % shard.world != shard.rank or target.exists():
            continue
        progress.start_chunk()
        text = tag_chunk(tagger, records, job.fmt, progress.advance)
        with atomic_write(target) as out:
            out.write(text)
        progress.stats.tagged += len(records)
    return count


class Progress:
    """Process 0's bar over the whole job: the records of complete chunks (whichever process tagged them, polled
    now and then) and those of the chunk it is tagging; hidden on the other processes."""

    def __init__(self, source: Source, job: Job, shard: Shard, parts: Path | None, stats: Stats) -> None:
        self.shown = job.progress and shard.main
        self.bar = tqdm(total=source.total, desc="Tagging", unit="line", disable=not self.shown)
        self.parts, self.chunk_size, self.stats = parts, job.chunk_size, stats
        self.complete = self.own = 0
        self.polled = 0.0

    def start_chunk(self) -> None:
        self.own = 0
        self.poll(force=True)

    def advance(self, records: int) -> None:
        self.own += records
        self.poll()
        self.show(self.complete * self.chunk_size + self.own)

    def poll(self, force: bool = False) -> None:
        if self.shown and self.parts is not None and (force or time.monotonic() - self.polled > 0.5):
            self.polled = time.monotonic()
            self.complete = sum(1 for _ in self.parts.glob("*.part"))

    def show(self, records: int) -> None:
        if self.bar.total is not None:
            records = min(records, self.bar.total)
        if records > self.bar.n:
            self.bar.update(records - self.bar.n)

    def wait_for(self, total_chunks: int) -> None:
        """Wait for the other processes' last chunks, moving the bar as they land."""
        while (done := sum(1 for i in range(total_chunks) if chunk_path(self.parts, i).exists())) < total_chunks:
            self.show(done * self.chunk_size)
            time.sleep(0.2)
        self.show(self.stats.records)

    def close(self) -> None:
        self.bar.close()


def join_chunks(parts: Path, total_chunks: int, output: str | Path, fmt: OutputFormat) -> None:
    """The chunks' outputs, in order, into `output` (written beside it and renamed into place)."""
    with atomic_write(output) as out:
        fmt.write_joined(out, (chunk_path(parts, i).read_text(encoding="utf-8") for i in range(total_chunks)))


def _to_stream(source: Source, tagger: Tagger, job: Job, out: TextIO, stats: Stats) -> Stats:
    """One process, standard output: each chunk written as soon as it is tagged."""
    began = time.perf_counter()
    progress = Progress(source, job, Shard(), None, stats)

    def tagged_chunks() -> Iterator[str]:
        for records in chunks(source.read(), job.chunk_size):
            yield tag_chunk(tagger, records, job.fmt, progress.bar.update)
            out.flush()  # the chunk before is out as this one is tagged
            stats.records += len(records)
            stats.tagged += len(records)
            stats.characters += sum(len(t) for _, t in records)

    job.fmt.write_joined(out, tagged_chunks())
    out.flush()
    progress.close()
    _log_counts(job.fmt)
    stats.seconds = time.perf_counter() - began
    return stats
