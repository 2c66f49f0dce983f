"""Annotation-tool formats: doccano JSONL, Label Studio JSON and brat standoff folders in, doccano and Label Studio
pre-annotations out. One home for these formats: `bertcrf.data_files.read_file` dispatches here, tag.py writes
through here. This module uses `bertcrf.ner_data`'s helpers and never imports `data_files`.

Readers return examples as every reader of `bertcrf.ner_data` does (`{"id", "tokens", "tags"}`, tags None for a
doccano record without spans), plus "text" (the annotated text) and "offsets" (each token's character span in
it), so that tags map back to character spans exactly (`example_entities`).

Tokens (`token_offsets`): a text with a CJK ideograph and no ASCII whitespace is split per character, as CLUENER
is (a U+3000 is a token then, as in the demo data); any other text into `split_text`'s words (each CJK ideograph
and punctuation mark alone, whitespace between words), and a word that an entity starts or ends inside is split
there, so that every entity is held exactly. Whitespace is not a token in such a text: whitespace at an entity's
edges is left out of it, with a warning.

Character spans become tags through `spans_to_tags`, in the reader's `scheme`. Of overlapping spans the longer (of
equal ones the earlier) is kept and each dropped one is reported with its location, through the same
`ner_tags.keep_flat_spans` as CLUENER. Malformed input raises `DataFormatError` naming the file and line
(doccano, brat) or the task (Label Studio), what was found and what was expected. Counts are logged at INFO.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence, TextIO

from bertcrf.ner_data import DataFormatError, json_records, keep_flat_spans, text_lines
from ner_tags import spans_to_tags, tags_to_spans
from ner_windows import is_cjk, split_text


logger = logging.getLogger(__name__)

ASCII_WHITESPACE = frozenset(" \t\n\r\v\f")
# Label Studio result types that annotate the whole text, not a span: ignored (and counted) by the reader.
LABEL_STUDIO_TEXT_LEVEL = frozenset({"choices", "textarea", "rating", "number", "datetime", "taxonomy"})
# brat annotation lines other than text-bound ones ("T"): read past and counted.
BRAT_IGNORED = {
    "R": "relation",
    "E": "event",
    "A": "attribute",
    "M": "attribute",
    "N": "normalization",
    "#": "note",
    "*": "equivalence",
}
DOCCANO_SPAN = '[start, end, "TYPE"] (character offsets, end exclusive)'
DOCCANO_ENTITY = '{"start_offset": int, "end_offset": int, "label": "TYPE"} (end exclusive)'
# The unit of doccano offsets (see `read_doccano`): "auto" tells UTF-16 (doccano's) from characters by the spans.
DOCCANO_OFFSETS = ("auto", "utf-16", "characters", "grapheme")


class Location(NamedTuple):
    """Where a record or an entity was read: file and line, or file and item (a Label Studio task)."""

    path: str
    line: int | None = None
    item: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}, {self.item}" if self.item is not None else where

    def error(self, found: str, expected: str) -> DataFormatError:
        return DataFormatError(self.path, self.line, found, expected, self.item)


class Entity(NamedTuple):
    """A character span of an annotated text (end exclusive), with where it was read for messages."""

    label: str
    start: int
    end: int
    where: Location


@dataclass
class _Counts:
    """What a reader saw: its INFO summary and the warnings that name the first places."""

    path: str
    records: int = 0
    untagged: int = 0
    types: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)  # read past: relations, notes, ...
    changed: Counter[str] = field(default_factory=Counter)  # read otherwise than given: warned about
    trimmed: list[Location] = field(default_factory=list)
    dropped: int = 0
    split_words: int = 0

    def log(self, records: str = "records") -> None:
        types = ", ".join(f"{t} {n}" for t, n in sorted(self.types.items())) or "none"
        logger.info(
            "%s: %d %s (%d untagged), %d entities (%s)",
            self.path,
            self.records,
            records,
            self.untagged,
            sum(self.types.values()),
            types,
        )
        if self.ignored:
            logger.info(
                "%s: read past %s", self.path, ", ".join(f"{n} {kind}" for kind, n in sorted(self.ignored.items()))
            )
        if self.changed:
            logger.warning("%s: %s", self.path, ", ".join(f"{n} {kind}" for kind, n in sorted(self.changed.items())))
        if self.split_words:
            logger.info("%s: split %d words where an entity starts or ends inside them", self.path, self.split_words)
        if self.trimmed:
            logger.warning(
                "%s: left the whitespace at the edges of %d entities out of them (a space is no token; first: %s)",
                self.path,
                len(self.trimmed),
                self.trimmed[0],
            )
        if self.dropped:
            logger.warning("%s: dropped %d overlapping spans (listed above)", self.path, self.dropped)


# ----------------------------------------------------------------------------------------------------------------
# Texts and spans to examples


def per_character(text: str) -> bool:
    """Whether `text` is tokenized one token per character: Chinese (a CJK ideograph) without ASCII whitespace."""
    return not ASCII_WHITESPACE.intersection(text) and any(is_cjk(c) for c in text)


def token_offsets(text: str, boundaries: Iterable[int] = ()) -> tuple[list[tuple[int, int]], int]:
    """Character spans of the tokens of `text` (see the module docstring), cut at each of `boundaries` that falls
    inside a word, and the number of words so cut."""
    if per_character(text):
        return [(i, i + 1) for i in range(len(text))], 0
    cuts = sorted(set(boundaries))
    offsets: list[tuple[int, int]] = []
    split = 0
    for start, end in split_text(text):
        inner = cuts[bisect_right(cuts, start) : bisect_left(cuts, end)]
        split += bool(inner)
        points = [start, *inner, end]
        offsets += zip(points, points[1:])
    return offsets, split


def _text_example(
    example_id: str, text: str, entities: Sequence[Entity] | None, scheme: str, counts: _Counts
) -> dict[str, Any]:
    """The example of an annotated `text`: tokens, tags in `scheme` (None when `entities` is None: not annotated),
    the text and each token's character offsets. Overlapping entities are dropped as for CLUENER, and reported."""
    counts.records += 1
    if entities is None:
        counts.untagged += 1
        offsets, _ = token_offsets(text)
        return _example(example_id, text, offsets, None)
    held = []
    for entity in entities:
        start, end = entity.start, entity.end
        if not per_character(text):  # whitespace is no token here: the entity is its non-space characters
            while text[start].isspace():
                start += 1
            while text[end - 1].isspace():
                end -= 1
            if (start, end) != (entity.start, entity.end):
                counts.trimmed.append(entity.where)
        held.append(entity._replace(start=start, end=end))
    kept, dropped = keep_flat_spans(held)
    for span, blocker in dropped:
        logger.warning(
            "%s: dropped %s span [%d, %d) %r: it overlaps %s [%d, %d) %r, which is kept (the longer, or the earlier "
            "of equal length); flat tags hold one entity per token",
            span.where,
            span.label,
            span.start,
            span.end,
            text[span.start : span.end],
            blocker.label,
            blocker.start,
            blocker.end,
            text[blocker.start : blocker.end],
        )
    counts.dropped += len(dropped)
    offsets, split = token_offsets(text, (p for e in kept for p in (e.start, e.end)))
    counts.split_words += split
    starts = {a: i for i, (a, _) in enumerate(offsets)}
    ends = {b: i + 1 for i, (_, b) in enumerate(offsets)}
    tags = spans_to_tags([(e.label, starts[e.start], ends[e.end]) for e in kept], len(offsets), scheme)
    counts.types.update(e.label for e in kept)
    return _example(example_id, text, offsets, tags)


def _example(example_id: str, text: str, offsets: list[tuple[int, int]], tags: list[str] | None) -> dict[str, Any]:
    return {
        "id": example_id,
        "tokens": [text[a:b] for a, b in offsets],
        "tags": tags,
        "text": text,
        "offsets": offsets,
    }


def example_entities(example: Mapping[str, Any], scheme: str = "BIO") -> list[tuple[str, int, int]]:
    """The entities of an example read here as character spans of its text: (type, start, end exclusive)."""
    if example["tags"] is None:
        return []
    offsets = example["offsets"]
    return [(t, offsets[first][0], offsets[last - 1][1]) for t, first, last in tags_to_spans(example["tags"], scheme)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checked_entity(text: str, start: Any, end: Any, label: Any, where: Location, surface: str | None = None) -> Entity:
    """An entity of `text`, or a DataFormatError at `where` saying what is wrong with it."""
    if not _is_int(start) or not _is_int(end):
        raise where.error(f"start={start!r}, end={end!r}", "integer character offsets")
    if not isinstance(label, str) or not label.strip():
        raise where.error(f"type {label!r} for span [{start}, {end})", "an entity type (a non-empty string)")
    if end <= start:
        raise where.error(f"{label} span [{start}, {end}) with end <= start", "start < end (end exclusive)")
    if start < 0 or end > len(text):
        raise where.error(
            f"{label} span [{start}, {end}) outside the text of {len(text)} characters",
            f"0 <= start < end <= {len(text)}",
        )
    if surface is not None and text[start:end] != surface:
        raise where.error(
            f"{label} {surface!r} at [{start}, {end}) (text there: {text[start:end]!r})",
            "text[start:end] to equal the entity's text",
        )
    if not text[start:end].strip():
        raise where.error(f"{label} span [{start}, {end}) of whitespace {text[start:end]!r}", "a non-blank entity")
    return Entity(label, start, end, where)


def _text_of(value: Any, where: Location, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"{name}={value!r}", f"a non-blank string in {name}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Offset units: characters (Python's code points), UTF-16 code units (JavaScript's), grapheme clusters


def utf16_positions(text: str) -> list[int]:
    """For each UTF-16 code unit position of `text` (and its end), the character position; -1 inside a pair."""
    positions = []
    for i, char in enumerate(text):
        positions += [i] if ord(char) < 0x10000 else [i, -1]
    return positions + [len(text)]


def grapheme_starts(text: str) -> list[int]:
    """The character position where each extended grapheme cluster (Unicode UAX #29, as `regex`'s `\\X` finds
    them) of `text` starts, and `len(text)`. doccano's front end splits with grapheme-splitter 1.0.4, whose older
    rules can differ from the current ones for Indic conjuncts and for emoji sequences newer than 2018."""
    import regex  # a dependency of transformers

    return [m.start() for m in regex.finditer(r"\X", text)] + [len(text)]


def unit_table(text: str, unit: str) -> list[int]:
    """The character position of each position of `text` counted in `unit` ("utf-16" or "grapheme"), and its end."""
    return utf16_positions(text) if unit == "utf-16" else grapheme_starts(text)


def from_unit(text: str, position: int, unit: str, table: list[int] | None = None) -> int | None:
    """The character position of `position` counted in `unit` ("characters", "utf-16" or "grapheme"), or None where
    no character boundary is there (inside a surrogate pair, past the end). `table` is the unit's table of `text`
    (`utf16_positions` or `grapheme_starts`), when the caller keeps one."""
    if unit == "characters":
        return position if 0 <= position <= len(text) else None
    table = table if table is not None else unit_table(text, unit)
    if not 0 <= position < len(table) or table[position] < 0:
        return None
    return table[position]


def to_unit(text: str, position: int, unit: str, round_up: bool = False) -> tuple[int, bool]:
    """Character `position` of `text` counted in `unit`, and whether it had to move: a position inside a grapheme
    cluster goes to the cluster's start (or end, with `round_up`), since grapheme offsets cannot point inside one."""
    if unit == "characters":
        return position, False
    if unit == "utf-16":
        return position + sum(ord(c) > 0xFFFF for c in text[:position]), False
    starts = grapheme_starts(text)
    index = bisect_left(starts, position)
    if starts[index] == position:
        return index, False
    return (index if round_up else index - 1), True


# ----------------------------------------------------------------------------------------------------------------
# doccano


def read_doccano(path: str | Path, scheme: str = "BIO", offsets: str = "auto") -> list[dict[str, Any]]:
    """Read a doccano sequence-labelling JSONL export: `{"text", "label": [[start, end, "TYPE"], ...]}` or the
    newer `{"text", "entities": [{"start_offset", "end_offset", "label"}, ...], "relations": [...]}` (relations are
    counted and read past). An empty list is a text without entities (all O); a record with neither key is
    untagged.

    `offsets` is the unit of the offsets. doccano counts as its browser front end does (v-annotator, doccano 1.x):
    in UTF-16 code units, JavaScript's string indices, so an emoji or a character outside the BMP (𠀐, as in some
    Chinese names) counts two; a project made with "Count grapheme clusters as one character" counts extended
    grapheme clusters (a family emoji of 5 code points is one). "utf-16", "grapheme" and "characters" (Python's
    code points, what other tools write) say which; "auto" tells UTF-16 from characters by the file's spans (a
    boundary inside a surrogate pair rules UTF-16 out; spans that cut words or hold whitespace at their edges count
    against a unit) and reads doccano's UTF-16 where nothing tells them apart. Grapheme mode is never guessed. Only
    texts with a character outside the BMP read differently in the two units; the choice is logged."""
    if offsets not in DOCCANO_OFFSETS:
        raise ValueError(f"doccano offsets must be one of {DOCCANO_OFFSETS}, got {offsets!r}")
    counts = _Counts(str(path))
    records = []
    for line_no, record in json_records(path):
        where = Location(str(path), line_no)
        text = _text_of(record.get("text"), where, '"text"')
        records.append((where, text, _doccano_spans(record, where)))
        if isinstance(record.get("relations"), list):
            counts.ignored["relation"] += len(record["relations"])
    if not records:
        raise DataFormatError(path, None, "no records", "at least one JSON line")
    unit = _doccano_unit(str(path), records) if offsets == "auto" else offsets
    examples = []
    for where, text, spans in records:
        # One table of the text's unit positions for all its spans.
        table = unit_table(text, unit) if spans and unit != "characters" else None
        entities = None if spans is None else [_doccano_entity(text, span, unit, where, table) for span in spans]
        examples.append(_text_example(f"{path}:{where.line}", text, entities, scheme, counts))
    counts.log()
    return examples


# A doccano span as read: start and end (integers, in the file's unit) and the type.
_RawSpan = tuple[int, int, Any]


def _doccano_spans(record: Mapping[str, Any], where: Location) -> list[_RawSpan] | None:
    given = {key: record[key] for key in ("label", "labels", "entities") if key in record}
    if not given:
        return None
    for key, spans in given.items():
        if not isinstance(spans, list):
            shape = DOCCANO_ENTITY if key == "entities" else DOCCANO_SPAN
            hint = " (CLUENER-style? pass --data_format cluener)" if isinstance(spans, dict) else ""
            raise where.error(f"{key}={spans!r}{hint}", f"a list of {shape}")
    filled = [key for key, spans in given.items() if spans]
    if len(filled) > 1:
        raise where.error(f"spans in both {filled[0]!r} and {filled[1]!r}", "one list of spans per record")
    if not filled:
        return []
    key = filled[0]
    spans = []
    for k, item in enumerate(given[key]):
        if key == "entities":
            if not isinstance(item, dict) or not {"start_offset", "end_offset", "label"} <= set(item):
                raise where.error(f"entities[{k}]={item!r}", DOCCANO_ENTITY)
            start, end, label = item["start_offset"], item["end_offset"], item["label"]
        else:
            if not isinstance(item, list) or len(item) != 3:
                raise where.error(f"{key}[{k}]={item!r}", DOCCANO_SPAN)
            start, end, label = item
        if not _is_int(start) or not _is_int(end):
            raise where.error(f"start={start!r}, end={end!r}", "integer character offsets")
        spans.append((start, end, label))
    return spans


def _doccano_entity(text: str, span: _RawSpan, unit: str, where: Location, table: list[int] | None) -> Entity:
    start, end, label = span
    if unit != "characters" and 0 <= start < end:
        first, last = from_unit(text, start, unit, table), from_unit(text, end, unit, table)
        if first is None or last is None:
            size = len(table or unit_table(text, unit)) - 1
            inside = "inside a character (a surrogate pair)" if unit == "utf-16" else "past the end"
            raise where.error(
                f"{label} span [{start}, {end}) in {unit} offsets, one of them {inside} of the text of {size} "
                f"{unit} units",
                "offsets at character boundaries, in the unit --doccano_offsets names (utf-16: doccano's own; "
                "characters: Python's code points; grapheme: a project counting grapheme clusters)",
            )
        start, end = first, last
    return checked_entity(text, start, end, label, where)


def _unit_misfits(records: Sequence[tuple[Location, str, list[_RawSpan] | None]], unit: str) -> tuple[int, int]:
    """(spans impossible in `unit`, spans that look wrong in it: cutting a word, or whitespace at an edge), over the
    records whose text has a character outside the BMP (elsewhere every unit agrees)."""
    impossible = odd = 0
    for _, text, spans in records:
        if not spans or all(ord(c) <= 0xFFFF for c in text):
            continue
        table = utf16_positions(text) if unit == "utf-16" else None
        for start, end, _ in spans:
            first, last = from_unit(text, start, unit, table), from_unit(text, end, unit, table)
            if first is None or last is None or last <= first:
                impossible += 1
                continue
            cuts = [p for p in (first, last) if 0 < p < len(text) and _in_word(text[p - 1], text[p])]
            odd += bool(cuts) or text[first].isspace() or text[last - 1].isspace()
    return impossible, odd


def _in_word(left: str, right: str) -> bool:
    # Letters or digits on both sides, not ideographs (a Chinese text has a token per character).
    return left.isalnum() and right.isalnum() and not is_cjk(left) and not is_cjk(right)


def _doccano_unit(path: str, records: Sequence[tuple[Location, str, list[_RawSpan] | None]]) -> str:
    """The unit of a doccano file's offsets ("utf-16" or "characters"), from its spans (see `read_doccano`)."""
    affected = sum(bool(spans) and any(ord(c) > 0xFFFF for c in text) for _, text, spans in records)
    if not affected:
        return "characters"  # the units agree on every span
    misfits = {unit: _unit_misfits(records, unit) for unit in ("utf-16", "characters")}
    unit = min(misfits, key=lambda u: (misfits[u], u != "utf-16"))
    other = "characters" if unit == "utf-16" else "utf-16"
    if misfits[unit] == misfits[other]:
        logger.warning(
            "%s: %d records hold characters outside the BMP (an emoji, 𠀐), where UTF-16 offsets and character "
            "offsets differ, and their spans fit both: read as UTF-16 code units, as doccano counts them (pass "
            "--doccano_offsets characters for a file whose offsets count Python characters)",
            path,
            affected,
        )
    else:
        logger.info(
            "%s: %d records hold characters outside the BMP: offsets read as %s (as %s, %d spans would be "
            "impossible and %d would cut a word or hold whitespace at an edge; --doccano_offsets overrides)",
            path,
            affected,
            "UTF-16 code units (doccano's count)" if unit == "utf-16" else "characters",
            other,
            *misfits[other],
        )
    return unit


def doccano_record(
    text: str, entities: Iterable[Mapping[str, Any]], offsets: str = "utf-16", **extra: Any
) -> tuple[dict[str, Any], int]:
    """The doccano JSONL record of a text and pipeline entities (`entity_group`, `start`, `end`: characters), its
    offsets in `offsets` ("utf-16": what a doccano project shows right; "grapheme": a project counting grapheme
    clusters; "characters": Python's count), and the number of entities widened to whole grapheme clusters."""
    label, widened = [], 0
    for e in entities:
        (start, moved_start), (end, moved_end) = (
            to_unit(text, e["start"], offsets),
            to_unit(text, e["end"], offsets, round_up=True),
        )
        widened += moved_start or moved_end
        label.append([start, end, e["entity_group"]])
    return {**extra, "text": text, "label": label}, widened


def check_doccano_offsets(offsets: str) -> None:
    if offsets not in DOCCANO_OFFSETS or offsets == "auto":
        raise ValueError(f"doccano offsets to write must be one of {DOCCANO_OFFSETS[1:]}, got {offsets!r}")


def doccano_line(
    number: int, text: str, entities: Sequence[Mapping[str, Any]], offsets: str = "utf-16"
) -> tuple[str | None, int]:
    """One line of `write_doccano`'s output (None for a blank text) and the number of entities widened."""
    if not text.strip():
        return None, 0
    record, moved = doccano_record(text, entities, offsets, line=number)
    return json.dumps(record, ensure_ascii=False) + "\n", moved


def write_doccano(
    out: TextIO, texts: Iterable[tuple[int, str, Sequence[Mapping[str, Any]]]], offsets: str = "utf-16"
) -> int:
    """Write doccano JSONL for (line number, text, pipeline entities): one record `{"line", "text", "label"}` per
    non-blank text (doccano cannot import an empty one; "line" keeps each record's input line and is imported as
    metadata). Offsets are in `offsets` units (see `doccano_record`): doccano's UTF-16 code units by default, so
    that a text with an emoji or 𠀐 shows each entity where it is. Returns the number of records."""
    check_doccano_offsets(offsets)
    written = widened = 0
    for number, text, entities in texts:
        line, moved = doccano_line(number, text, entities, offsets)
        if line is not None:
            out.write(line)
            written += 1
            widened += moved
    if widened:
        logger.warning("widened %d entities that start or end inside a grapheme cluster to whole clusters", widened)
    return written


# ----------------------------------------------------------------------------------------------------------------
# Label Studio


def read_label_studio(path: str | Path, scheme: str = "BIO", text_key: str | None = None) -> list[dict[str, Any]]:
    """Read a Label Studio JSON export (a list of tasks) of a text project with a Labels control.

    Spans are the `"type": "labels"` results (`value.start`, `value.end`: character offsets, end exclusive;
    `value.labels[0]`) over `data.text`, or `data[text_key]`, or the only string in `data` (`data.line`, which
    tag.py writes, is a number and never the text). The offsets are the truth: a `value.text` that differs from the
    text there only in whitespace (Label Studio collapses runs of spaces in it) is counted in a warning, and one
    that matches only in UTF-16 offsets (Label Studio before 1.4) is converted.

    A task is read from its latest annotation that is not cancelled (by `updated_at`/`created_at`, else by id,
    else the last; `was_cancelled` or, as label-studio-sdk's converter also reads, `skipped`); tasks with several
    are logged with the one read. Tasks without one are left out, counted in a warning: skipped tasks (only
    cancelled annotations), which the converter leaves out too, and tasks nobody annotated, also those with
    predictions (the converter would write an unannotated task as all O; pre-annotations nobody confirmed are not
    gold data either). A file with no annotated task is an error. Predictions are never read; an export that
    lists them by id only (`"predictions": [286]`, as Label Studio exports a project holding predictions) is fine.
    Relations and text-level results (choices, ...) are counted and read past."""
    tasks = _label_studio_tasks(path)
    counts = _Counts(str(path))
    tally = _TaskTally()
    examples = []
    for index, task in enumerate(tasks):
        example = _read_task(path, index, task, scheme, text_key, counts, tally)
        if example is not None:
            examples.append(example)
    if not examples:
        raise DataFormatError(
            path,
            None,
            f"no annotated task among {len(tasks)} ({tally.left_summary()})",
            "at least one task with an annotation that is not cancelled (predictions are pre-annotations: submit "
            "or correct them in Label Studio, then export again)",
        )
    counts.log("tasks")
    tally.log(path, len(tasks))
    return examples


@dataclass
class _TaskTally:
    """What `read_label_studio` read past, task by task, for the warning and INFO lines it ends with."""

    several: list[Location] = field(default_factory=list)  # tasks with several annotations
    left_out: Counter[str] = field(default_factory=Counter)  # tasks without a usable annotation, by reason
    first_left_out: Location | None = None
    prediction_ids: int = 0  # tasks that list their predictions by id only

    def left_summary(self) -> str:
        reasons = ("skipped", "not annotated", "with predictions only")
        return ", ".join(f"{self.left_out[r]} {r}" for r in reasons if self.left_out[r])

    def log(self, path: str | Path, n_tasks: int) -> None:
        if self.left_out:
            logger.warning(
                "%s: left out %d of %d tasks without an annotation that is not cancelled (%s; first: %s)",
                path,
                sum(self.left_out.values()),
                n_tasks,
                self.left_summary(),
                self.first_left_out,
            )
        if self.several:
            logger.info(
                "%s: %d tasks have several annotations: each was read from its latest non-cancelled one (first: %s)",
                path,
                len(self.several),
                self.several[0],
            )
        if self.prediction_ids:
            logger.info(
                "%s: %d tasks list their predictions by id only: ignored (annotations are read)",
                path,
                self.prediction_ids,
            )


def _label_studio_tasks(path: str | Path) -> list[Any]:
    """The tasks of a Label Studio export: a non-empty JSON list, else `DataFormatError`."""
    tasks = _load_json(path)
    if not isinstance(tasks, list):
        raise DataFormatError(path, None, f"a JSON {type(tasks).__name__}", "a JSON list of Label Studio tasks")
    if not tasks:
        raise DataFormatError(path, None, "no tasks", "at least one Label Studio task")
    return tasks


def _read_task(
    path: str | Path,
    index: int,
    task: Any,
    scheme: str,
    text_key: str | None,
    counts: _Counts,
    tally: _TaskTally,
) -> dict[str, Any] | None:
    """The example of one Label Studio task, or None when it has no usable annotation (counted in `tally`)."""
    name = f"task {task['id']} (index {index})" if isinstance(task, dict) and "id" in task else f"task {index}"
    where = Location(str(path), None, name)
    if not isinstance(task, dict):
        raise where.error(f"a JSON {type(task).__name__}", "a task object")
    text = _task_text(task, where, text_key)
    annotations = _object_list(task, "annotations" if "annotations" in task else "completions", where)
    usable = _usable_annotations(annotations, where)
    predictions = _predictions(task, where)
    tally.prediction_ids += any(_is_int(p) for p in predictions)
    if not usable:
        reason = "skipped" if annotations else "with predictions only" if predictions else "not annotated"
        tally.left_out[reason] += 1
        tally.first_left_out = tally.first_left_out or where
        return None
    chosen, how = _latest(usable, where, "annotation")
    if len(annotations) > 1:
        tally.several.append(where)
        logger.info(
            "%s: %d annotations (%d cancelled); read annotation %s, %s",
            where,
            len(annotations),
            len(annotations) - len(usable),
            chosen.get("id"),
            how,
        )
    entities = _result_entities(
        chosen, text, Location(str(path), None, f"{name}, annotation {chosen.get('id')}"), counts
    )
    return _text_example(f"{path}, {name}", text, entities, scheme, counts)


def _usable_annotations(annotations: list[dict[str, Any]], where: Location) -> list[dict[str, Any]]:
    """The annotations that are neither `was_cancelled` nor `skipped` (the flags must be booleans)."""
    usable = []
    for k, annotation in enumerate(annotations):
        flags = {key: annotation.get(key, False) for key in ("was_cancelled", "skipped")}
        for key, flag in flags.items():
            if not isinstance(flag, bool):
                raise where.error(f"annotation {k}: {key}={flag!r}", "true or false")
        if not any(flags.values()):
            usable.append(annotation)
    return usable


def _load_json(path: str | Path) -> Any:
    # text_lines: UTF-8 errors name their line; joining with "\n" keeps JSON's line numbers.
    document = "\n".join(line for _, line in text_lines(path))
    if not document.strip():
        raise DataFormatError(path, None, "an empty file", "a JSON list of Label Studio tasks")
    try:
        return json.loads(document)
    except json.JSONDecodeError as err:
        raise DataFormatError(
            path, err.lineno, f"invalid JSON ({err.msg} at column {err.colno})", "a JSON list of Label Studio tasks"
        ) from None


def _task_text(task: Mapping[str, Any], where: Location, text_key: str | None) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise where.error(f"data={data!r}", 'a "data" object with the text (a JSON export, not JSON-MIN or CSV)')
    if text_key is not None:
        if text_key not in data:
            raise where.error(f"data keys {sorted(data)}", f"the text in data[{text_key!r}] (--text_key)")
        return _text_of(data[text_key], where, f"data[{text_key!r}]")
    if "text" in data:
        return _text_of(data["text"], where, 'data["text"]')
    strings = [key for key, value in data.items() if isinstance(value, str)]
    if len(strings) != 1:
        raise where.error(
            f"data keys {sorted(data)} ({len(strings)} strings)",
            'the text in data["text"], or in the only string of "data" (or name its key: --text_key KEY)',
        )
    return _text_of(data[strings[0]], where, f"data[{strings[0]!r}]")


def _object_list(task: Mapping[str, Any], key: str, where: Location) -> list[dict[str, Any]]:
    items = task.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise where.error(f"{key}={items!r}", f"a list of {key} objects")
    return items


def _predictions(task: Mapping[str, Any], where: Location) -> list[Any]:
    """A task's predictions: objects, or ids (a JSON export of a project holding predictions lists their ids)."""
    items = task.get("predictions") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) or _is_int(item) for item in items):
        raise where.error(f"predictions={items!r}", "a list of predictions objects or prediction ids")
    return items


def _timestamp(item: Mapping[str, Any], where: Location, kind: str) -> datetime | None:
    value = item.get("updated_at") or item.get("created_at")
    if value is None:
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError, OverflowError, OSError):
        raise where.error(f"{kind} {item.get('id')}: time {value!r}", "an ISO 8601 updated_at/created_at") from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


def _latest(items: Sequence[dict[str, Any]], where: Location, kind: str) -> tuple[dict[str, Any], str]:
    """The latest of `items` (annotations or predictions) and how it was chosen."""
    stamps = [_timestamp(item, where, kind) for item in items]
    if all(stamp is not None for stamp in stamps):
        return items[max(range(len(items)), key=lambda i: (stamps[i], i))], "the latest by updated_at/created_at"
    ids = [item.get("id") for item in items]
    if all(_is_int(i) for i in ids):
        return items[max(range(len(items)), key=lambda i: (ids[i], i))], "the highest id (no times)"
    return items[-1], "the last listed (no times or ids)"


def _result_entities(chosen: Mapping[str, Any], text: str, where: Location, counts: _Counts) -> list[Entity]:
    result = chosen.get("result")
    if not isinstance(result, list):
        raise where.error(f"result={result!r}", "a result list")
    utf16 = None
    entities = []
    for k, item in enumerate(result):
        here = where._replace(item=f"{where.item}, result {k}")
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "relation":
            counts.ignored["relation"] += 1
            continue
        if kind in LABEL_STUDIO_TEXT_LEVEL:
            counts.ignored[f"{kind} result"] += 1
            continue
        value = item.get("value") if isinstance(item, dict) else None
        labels = value.get("labels") if isinstance(value, dict) else None
        if kind != "labels" or not isinstance(labels, list) or not labels or not {"start", "end"} <= set(value):
            raise here.error(
                repr(item),
                '{"type": "labels", "value": {"start": int, "end": int, "labels": ["TYPE"]}} (a span), or a '
                f"relation or text-level result ({', '.join(sorted(LABEL_STUDIO_TEXT_LEVEL))}), which are read past",
            )
        start, end, surface = value["start"], value["end"], value.get("text")
        if len(labels) > 1:
            counts.changed["spans with several labels, read as their first"] += 1
        if surface is not None and _is_int(start) and _is_int(end) and text[start:end] != surface:
            if not _same_but_whitespace(text[start:end], surface):
                # Older Label Studio versions counted UTF-16 code units (an emoji is two): read such offsets back.
                utf16 = utf16 if utf16 is not None else utf16_positions(text)
                first, last = from_unit(text, start, "utf-16", utf16), from_unit(text, end, "utf-16", utf16)
                inside = start < end and first is not None and last is not None
                if inside and _same_but_whitespace(text[first:last], surface):
                    counts.changed["spans in UTF-16 offsets (older Label Studio), converted to characters"] += 1
                    start, end = first, last
            if text[start:end] != surface and _same_but_whitespace(text[start:end], surface):
                # Label Studio writes runs of spaces in value.text as one; start and end stay right.
                counts.changed["spans whose value.text differs from the text at start:end only in whitespace"] += 1
                surface = None
        entities.append(checked_entity(text, start, end, labels[0], here, surface))
    return entities


def _same_but_whitespace(a: str, b: str) -> bool:
    return a.split() == b.split()


def label_studio_task(
    task_id: int,
    text: str,
    entities: Sequence[Mapping[str, Any]],
    model_version: str,
    from_name: str = "label",
    to_name: str = "text",
    task_score: float | None = None,
) -> dict[str, Any]:
    """A Label Studio task with the pipeline's entities as its prediction (pre-annotations to correct), its id and
    `data.line` the input line number (Label Studio replaces imported ids; `data.line` survives). Each result's
    score is the entity's (CRF marginals); the prediction's is `task_score` when given (the text's mistake
    probability: Label Studio sorts tasks by it), else their mean, left out without entities."""
    results = [
        {
            "id": f"{task_id}-{k}",
            "from_name": from_name,
            "to_name": to_name,
            "type": "labels",
            "value": {
                "start": e["start"],
                "end": e["end"],
                "text": text[e["start"] : e["end"]],
                "labels": [e["entity_group"]],
            },
            "score": round(float(e["score"]), 4),
        }
        for k, e in enumerate(entities)
    ]
    prediction: dict[str, Any] = {"model_version": model_version}
    if task_score is not None:
        prediction["score"] = round(float(task_score), 4)
    elif results:
        prediction["score"] = round(sum(float(e["score"]) for e in entities) / len(entities), 4)
    prediction["result"] = results
    # Label Studio gives imported tasks ids of its own: data.line keeps the input line through an export.
    return {"id": task_id, "data": {"text": text, "line": task_id}, "predictions": [prediction]}


def write_label_studio(
    out: TextIO,
    texts: Iterable[tuple[int, str, Sequence[Mapping[str, Any]]]],
    model_version: str,
    from_name: str = "label",
    to_name: str = "text",
) -> int:
    """Write one JSON list of Label Studio tasks for (line number, text, pipeline entities): a task per non-blank
    text, its id and `data.line` the input line number (Label Studio cannot annotate an empty text). Returns the
    number of tasks."""
    written = 0
    for number, text, entities in texts:
        item = label_studio_item(number, text, entities, model_version, from_name, to_name)
        if item is not None:
            out.write((LABEL_STUDIO_SEPARATOR if written else LABEL_STUDIO_HEAD) + item)
            written += 1
    out.write(LABEL_STUDIO_TAIL if written else LABEL_STUDIO_EMPTY)
    return written


# `json.dump(tasks, out, ensure_ascii=False, indent=1)` and a newline, written one task at a time: the list's
# opening and closing lines, the separator between tasks, and an empty list.
LABEL_STUDIO_HEAD, LABEL_STUDIO_SEPARATOR, LABEL_STUDIO_TAIL, LABEL_STUDIO_EMPTY = "[\n", ",\n", "\n]\n", "[]\n"


def label_studio_item(
    number: int,
    text: str,
    entities: Sequence[Mapping[str, Any]],
    model_version: str,
    from_name: str = "label",
    to_name: str = "text",
) -> str | None:
    """One task of `write_label_studio`'s list as it appears there (None for a blank text): indented one level.
    Split on "\n" only: JSON escapes every line break inside a string, but not U+2028, which splitlines() cuts."""
    if not text.strip():
        return None
    task = label_studio_task(number, text, entities, model_version, from_name, to_name)
    return "\n".join(" " + line for line in json.dumps(task, ensure_ascii=False, indent=1).split("\n"))


# ----------------------------------------------------------------------------------------------------------------
# brat standoff


def read_brat(folder: str | Path, scheme: str = "BIO") -> list[dict[str, Any]]:
    """Read a brat folder (and its subfolders): each `.txt` with the `.ann` beside it. Each line of a text is an
    example; its entities are the "T" lines (`T1<TAB>TYPE START END<TAB>surface`, offsets into the whole file).
    Other annotation lines (relations, events, attributes, notes, ...) are counted and read past, and so are the
    "T" lines that an event ("E") uses as its trigger. A discontinuous entity (`START END;START END`) keeps its
    longest fragment, with a warning naming the .ann line and the lines of the text its fragments lie on (on one
    line or several); a span (or fragment) across a line break is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, None, "a file", "a brat folder: .txt files, each with its .ann beside it")
    texts, annotations = sorted(folder.rglob("*.txt")), sorted(folder.rglob("*.ann"))
    for paths, other, fix in (
        (texts, ".ann", "add an empty one for a text without entities, or move the .txt out of the folder"),
        (annotations, ".txt", "the annotated text is needed: add it, or move the .ann out of the folder"),
    ):
        lonely = [p for p in paths if not p.with_suffix(other).is_file()]
        if lonely:
            more = f" (and {len(lonely) - 1} more such files)" if len(lonely) > 1 else ""
            raise DataFormatError(
                lonely[0],
                None,
                f"no {lonely[0].with_suffix(other).name} beside it{more}",
                f"a {other} file beside it: {fix}",
            )
    if not texts:
        raise DataFormatError(folder, None, "no .txt files", "a brat folder: .txt files, each with its .ann beside it")
    counts = _Counts(str(folder))
    examples = []
    for text_path in texts:
        examples += _brat_document(text_path, text_path.with_suffix(".ann"), scheme, counts)
    counts.log(f"lines of {len(texts)} documents")
    return examples


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")  # not utf-8-sig: brat counts a byte-order mark as a character
    except UnicodeDecodeError as error:
        raise DataFormatError(
            path,
            raw[: error.start].count(b"\n") + 1,
            f"bytes that are not UTF-8 ({error.reason} at byte {error.start})",
            "UTF-8 text (to convert a GBK file: iconv -f GBK -t UTF-8 FILE > FILE.utf8)",
        ) from None


def _brat_document(text_path: Path, ann_path: Path, scheme: str, counts: _Counts) -> list[dict[str, Any]]:
    text = _read_text(text_path)
    # Each line's text as (start, end) in the file: without its "\n" (and "\r"); the first without a BOM.
    lines, position = [], 0
    for number, line in enumerate(text.split("\n")):
        start = position + (number == 0 and line.startswith("\ufeff"))
        lines.append((start, position + len(line.removesuffix("\r"))))
        position += len(line) + 1
    line_starts = [start for start, _ in lines]
    per_line: list[list[Entity]] = [[] for _ in lines]
    ann_lines = [(line_no, line) for line_no, line in text_lines(ann_path) if line.strip()]
    triggers = _event_triggers(ann_lines)
    for line_no, line in ann_lines:
        where = Location(str(ann_path), line_no)
        if line[0] in BRAT_IGNORED:
            counts.ignored[BRAT_IGNORED[line[0]]] += 1
            continue
        if line[0] != "T":
            raise where.error(repr(line), "a brat annotation line (T, R, E, A, M, N, # or *)")
        if line.split("\t", 1)[0] in triggers:
            counts.ignored["event trigger"] += 1  # the word that names an event, not an entity
            continue
        label, fragments, surface = _brat_entity(line, where)
        pieces = [checked_entity(text, start, end, label, where) for start, end in fragments]
        indices = []
        for piece in pieces:  # checked before the surface text, which would only differ by the line break
            index = bisect_right(line_starts, piece.start) - 1
            line_start, line_end = lines[index]
            if not (line_start <= piece.start and piece.end <= line_end):
                raise where.error(
                    f"{label} span [{piece.start}, {piece.end}) {text[piece.start : piece.end]!r} across the end of "
                    f"line {index + 1} of {text_path.name}",
                    "an entity within one line (each line of a brat text is one example)",
                )
            indices.append(index)
        kept = _one_fragment(pieces, surface, text, where, [f"{text_path.name}:{i + 1}" for i in indices])
        index = indices[pieces.index(kept)]
        line_start = lines[index][0]
        per_line[index].append(kept._replace(start=kept.start - line_start, end=kept.end - line_start))
    examples = []
    for index, (start, end) in enumerate(lines):
        if text[start:end].strip():
            examples.append(
                _text_example(f"{text_path}:{index + 1}", text[start:end], per_line[index], scheme, counts)
            )
    return examples


def _event_triggers(ann_lines: Iterable[tuple[int, str]]) -> set[str]:
    """The ids of the "T" lines that "E" lines use as their trigger (`E1<TAB>TYPE:T3 Role:T1 ...`)."""
    triggers = set()
    for _, line in ann_lines:
        fields = line.split("\t")
        if line.startswith("E") and len(fields) >= 2:
            trigger = fields[1].split(" ", 1)[0].rpartition(":")[2]
            if trigger:
                triggers.add(trigger)
    return triggers


def _brat_entity(line: str, where: Location) -> tuple[str, list[tuple[int, int]], str | None]:
    """(type, fragments, surface text or None) of a "T" line."""
    fields = line.split("\t")
    label, _, offsets = fields[1].partition(" ") if len(fields) >= 2 else ("", "", "")
    fragments = [piece.split(" ") for piece in offsets.split(";")]
    if not label or not all(len(f) == 2 and all(b.isascii() and b.isdigit() for b in f) for f in fragments):
        raise where.error(repr(line), "T<id><TAB>TYPE START END<TAB>text (START END;START END for fragments)")
    return label, [(int(a), int(b)) for a, b in fragments], fields[2] if len(fields) > 2 else None


def _one_fragment(
    pieces: list[Entity], surface: str | None, text: str, where: Location, places: Sequence[str]
) -> Entity:
    """The entity of a "T" line's fragments (each within one line of the text, at `places`: "doc.txt:3"): checked
    against its surface text; of several, the longest, which lies within one line even when the others lie on
    other lines."""
    label = pieces[0].label
    if surface is not None and " ".join(text[p.start : p.end] for p in pieces) != surface:
        shown = " ".join(f"[{p.start}, {p.end})" for p in pieces)
        raise where.error(
            f"{label} {surface!r} at {shown} (text there: {' '.join(text[p.start : p.end] for p in pieces)!r})",
            "the text at the offsets to equal the entity's text",
        )
    if len(pieces) == 1:
        return pieces[0]
    kept = max(pieces, key=lambda p: (p.end - p.start, -p.start))
    lines = sorted(set(places), key=places.index)
    logger.warning(
        "%s: %s entity in %d fragments %s%s: flat tags hold one span; kept the longest, [%d, %d) %r%s",
        where,
        label,
        len(pieces),
        ", ".join(f"[{p.start}, {p.end}) {text[p.start : p.end]!r}" for p in pieces),
        f" on {len(lines)} lines ({', '.join(lines)})" if len(lines) > 1 else "",
        kept.start,
        kept.end,
        text[kept.start : kept.end],
        f" at {places[pieces.index(kept)]}" if len(lines) > 1 else "",
    )
    return kept
