"""NER data: readers, tag schemes, sub-token alignment, long-sentence windows and stitching.

Every reader returns examples as dicts `{"id": "file:line", "tokens": [...], "tags": [...] or None}`, with
reader-specific extra keys that the rest of the code ignores ("lines" for column files; "text" and "offsets" for
annotation-tool exports, see `bertcrf.annotations`). Malformed input raises `DataFormatError` naming the file, the
line, what was found and what was expected. Choosing the reader of a file is `bertcrf.data_files`'s (which imports
this module and `bertcrf.annotations`; this module imports neither).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import numpy as np

# The tag-scheme grammar, windows, stitching and feeding untokenizable words have one home each, ner_tags and ner_windows (shipped
# with checkpoints and ONNX exports); the names are re-exported here for run_ner and the tests.
from ner_tags import (  # noqa: F401
    OUTSIDE,
    SCHEME_LETTERS,
    SCHEME_PARTS,
    SCHEME_PREFIXES,
    TAG_SCHEMES,
    Span,
    collapse_word_tags,
    convert_tags,
    detect_data_scheme,
    detect_tag_scheme,
    expand_word_tag,
    keep_flat_spans,
    spans_to_tags,
    split_tag,
    tags_to_spans,
)
from ner_windows import (  # noqa: F401
    bare_prefix_id,
    best_windows,
    drop_bare_prefix,
    fed_words,
    plan_windows,
    special_wrapping,
    stitch_rows,
    word_windows,
)


logger = logging.getLogger(__name__)


# The matching seqeval scheme for strict entity scoring; BMES is scored as IOBES with M read as I.
SEQEVAL_SCHEMES = {"BIO": "IOB2", "IOB1": "IOB1", "BIOES": "IOBES", "BMES": "IOBES"}


class DataFormatError(ValueError):
    """Bad input data, located by file and line (or, in a JSON document, by `item`: "task 7 (index 2)")."""

    def __init__(self, path: str | Path, line: int | None, found: str, expected: str, item: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        if item is not None:
            where += f", {item}"
        super().__init__(f"{where}: expected {expected}, found {found}")
        self.path, self.line, self.item = str(path), line, item


# ----------------------------------------------------------------------------------------------------------------
# Readers


def text_lines(path: str | Path, handle: BinaryIO | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 file (or of the binary `handle`, named `path` in errors), without the line end.

    Only "\n" ends a line ("\r\n" too): a lone "\r" inside a line stays in it, where Python's text mode would split.
    A leading byte-order mark is dropped. Bytes that are not UTF-8 (a GBK file, say) raise `DataFormatError` with
    the line and what to do."""
    with contextlib.ExitStack() as stack:
        source = handle if handle is not None else stack.enter_context(open(path, "rb"))
        for number, raw in enumerate(source, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.start + 4]
                raise DataFormatError(
                    path,
                    number,
                    f"bytes that are not UTF-8 ({error.reason} at byte {error.start}: {bad!r})",
                    "UTF-8 text (to convert a GBK file: iconv -f GBK -t UTF-8 FILE > FILE.utf8)",
                ) from None
            yield number, line[:-2] if line.endswith("\r\n") else line.removesuffix("\n")


def check_file(path: str | Path, kind: str = "data", directory_ok: bool = False) -> None:
    """Raise FileNotFoundError (or IsADirectoryError) with a clear message unless `path` is a readable file (or, with
    `directory_ok`, a directory: a brat folder)."""
    if Path(path).is_dir():
        if directory_ok:
            return
        raise IsADirectoryError(f"{path} is a directory, not a {kind} file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such {kind} file: {path}")


def read_column_file(path: str | Path, tag_column: int = -1) -> list[dict[str, Any]]:
    """Read a CoNLL-style column file: one token per line, tag in `tag_column`, blank lines between sentences.

    Columns are tab separated if the line has a tab, else space separated (a token that is itself a space-like
    character such as U+3000 is kept). `-DOCSTART-` lines are skipped.
    """
    examples: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 1

    lines: list[int] = []

    def flush() -> None:
        if tokens:
            examples.append(
                {"id": f"{path}:{start_line}", "tokens": list(tokens), "tags": list(tags), "lines": list(lines)}
            )
        tokens.clear()
        tags.clear()
        lines.clear()

    for line_no, line in text_lines(path):
        line = line.rstrip("\r")
        if not line.strip(" \t"):
            flush()
            start_line = line_no + 1
            continue
        if line.startswith("-DOCSTART-"):
            continue
        columns = line.split("\t") if "\t" in line else _split_spaces(line)
        if len(columns) < 2 or not columns[0] or not columns[tag_column]:
            raise DataFormatError(path, line_no, repr(line), "a token and a tag separated by a space or a tab")
        if not tokens:
            start_line = line_no
        tokens.append(columns[0])
        tags.append(columns[tag_column].strip())
        lines.append(line_no)
    flush()
    if not examples:
        raise DataFormatError(path, None, "no sentences", "at least one token line")
    return examples


def _split_spaces(line: str) -> list[str]:
    # "　 O": the token is U+3000, which str.split() would swallow; split on ASCII spaces only.
    columns = line.split(" ")
    if columns[0] == "" and len(columns) > 2:  # the token is an ASCII space: " " + " " + tag
        return [" ", *[c for c in columns[2:] if c]]
    return [c for c in columns if c] if columns[0] else columns


def read_json_lines(
    path: str | Path, tokens_key: str = "tokens", tags_key: str | None = "tags"
) -> list[dict[str, Any]]:
    """Read JSON lines with a token list and, when present, a tag list of the same length."""
    examples = []
    for line_no, record in json_records(path):
        tokens = record.get(tokens_key)
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise DataFormatError(
                path, line_no, f"{tokens_key}={tokens!r}", f"a list of non-empty strings in {tokens_key!r}"
            )
        tags = record.get(tags_key) if tags_key else None
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise DataFormatError(path, line_no, f"{tags_key}={tags!r}", f"a list of tag strings in {tags_key!r}")
            if len(tags) != len(tokens):
                raise DataFormatError(path, line_no, f"{len(tokens)} tokens and {len(tags)} tags", "one tag per token")
        examples.append({"id": f"{path}:{line_no}", "tokens": tokens, "tags": tags})
    if not examples:
        raise DataFormatError(path, None, "no records", "at least one JSON line")
    return examples


def json_records(path: str | Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    for line_no, line in text_lines(path):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, line_no, f"invalid JSON ({err.msg})", "one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataFormatError(path, line_no, type(record).__name__, "a JSON object")
            yield line_no, record


def read_span_json(path: str | Path, scheme: str = "BIO") -> list[dict[str, Any]]:
    """Read CLUENER-style JSON lines: `{"text": str, "label": {type: {surface: [[start, end_inclusive], ...]}}}`.

    Characters become tokens and spans become tags in `scheme`. Spans that overlap an earlier, longer (or equal and
    earlier) span cannot be held by flat tags: they are dropped and reported. Records without "label" get no tags.
    """
    examples = []
    dropped = []
    for line_no, record in json_records(path):
        text = record.get("text")
        if not isinstance(text, str) or not text:
            raise DataFormatError(path, line_no, f"text={text!r}", 'a non-empty string in "text"')
        tokens = list(text)
        if "label" not in record:
            examples.append({"id": f"{path}:{line_no}", "tokens": tokens, "tags": None})
            continue
        kept, overlapping = keep_flat_spans(_record_spans(path, line_no, text, record["label"]))
        dropped += [(line_no, span) for span, _ in overlapping]
        tags = spans_to_tags(kept, len(tokens), scheme)
        examples.append({"id": f"{path}:{line_no}", "tokens": tokens, "tags": tags})
    for line_no, (etype, start, end) in dropped:
        logger.warning("%s:%d: dropped %s span [%d, %d) overlapping a longer span", path, line_no, etype, start, end)
    if not examples:
        raise DataFormatError(path, None, "no records", "at least one JSON line")
    return examples


def _record_spans(path: str | Path, line_no: int, text: str, label: Any) -> list[Span]:
    if not isinstance(label, dict):
        hint = " (a doccano export? pass --data_format doccano)" if isinstance(label, list) else ""
        raise DataFormatError(
            path, line_no, f"label={label!r}{hint}", "an object {type: {surface: [[start, end], ...]}}"
        )
    spans = []
    for etype, surfaces in label.items():
        if not isinstance(surfaces, dict):
            raise DataFormatError(path, line_no, f"{etype}: {surfaces!r}", "an object {surface: [[start, end], ...]}")
        for surface, positions in surfaces.items():
            for pos in positions:
                if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
                    raise DataFormatError(path, line_no, f"{surface}: {pos!r}", "[start, end] with end inclusive")
                start, end = pos
                if not 0 <= start <= end < len(text) or text[start : end + 1] != surface:
                    raise DataFormatError(
                        path,
                        line_no,
                        f"{etype} {surface!r} at [{start}, {end}] (text there: {text[start : end + 1]!r})",
                        "text[start:end+1] to equal the entity string",
                    )
                spans.append((etype, start, end + 1))
    return spans


# ----------------------------------------------------------------------------------------------------------------
# Tag schemes


def token_location(example: dict[str, Any], index: int) -> str:
    """Where token `index` of `example` was read: "file:line" for column files, else the example's id and the token."""
    lines = example.get("lines")
    if lines and example["id"].rpartition(":")[0]:
        return f"{example['id'].rpartition(':')[0]}:{lines[index]}"
    return f"{example['id']} (token {index + 1})"


def detect_examples_scheme(examples: Iterable[dict[str, Any]]) -> str:
    """`detect_data_scheme` of the tagged examples; labels that fit none of the schemes raise a ValueError naming
    each such label, its count and where it first occurs (a single `X-PER` would otherwise turn the scheme to
    "none" and switch off constrained decoding for the whole model)."""
    tagged = [e for e in examples if e["tags"] is not None]
    scheme = detect_data_scheme(e["tags"] for e in tagged)
    counts = Counter(t for e in tagged for t in e["tags"])
    if scheme != "none" or set(counts) <= {OUTSIDE}:
        return scheme

    def fits(label: str, candidate: str) -> bool:
        parts = split_tag(label)
        return parts is not None and (parts[0] == OUTSIDE or parts[0] in SCHEME_PREFIXES[candidate])

    best = max(("BIO", "BIOES", "BMES"), key=lambda c: sum(n for label, n in counts.items() if fits(label, c)))
    first: dict[str, str] = {}
    for example in tagged:
        for i, tag in enumerate(example["tags"]):
            if not fits(tag, best) and tag not in first:
                first[tag] = token_location(example, i)
    listing = ", ".join(f"{tag!r} x{counts[tag]} (first at {where})" for tag, where in first.items())
    raise ValueError(
        f"labels that fit no tag scheme: {listing}; the other labels are {best}. Fix the data, or pass "
        "--data_tag_scheme none to train on the labels as they are, without decoding constraints"
    )


def label_list(tag_sequences: Iterable[Sequence[str]], scheme: str) -> list[str]:
    """All labels a model needs for the entity types seen: O first, then every prefix of the scheme per type."""
    seen = sorted({t for seq in tag_sequences for t in seq} - {OUTSIDE})
    if scheme == "none":
        return [OUTSIDE, *seen] if seen else [OUTSIDE]
    types = sorted({split_tag(t)[1] for t in seen if split_tag(t)})
    return [OUTSIDE] + [f"{p}-{t}" for t in types for p in SCHEME_LETTERS[scheme]]


def to_seqeval(tags: Sequence[str], scheme: str) -> list[str]:
    """Tags in the form seqeval's strict mode expects for `SEQEVAL_SCHEMES[scheme]` (BMES: M- read as I-)."""
    if scheme != "BMES":
        return list(tags)
    return ["I-" + t[2:] if t.startswith("M-") else t for t in tags]


def check_labels(
    examples: list[dict[str, Any]], known: set[str], unknown_to_outside: bool, split: str
) -> list[dict[str, Any]]:
    """Raise on tags outside `known` (with file and line), or map them to O when `unknown_to_outside`."""
    unknown: Counter[str] = Counter()
    first_seen: dict[str, str] = {}
    for example in examples:
        for i, tag in enumerate(example["tags"] or ()):
            if tag not in known:
                unknown[tag] += 1
                if tag not in first_seen:
                    first_seen[tag] = token_location(example, i)
    if not unknown:
        return examples
    listing = ", ".join(f"{tag!r} x{n} (first at {first_seen[tag]})" for tag, n in unknown.most_common())
    if not unknown_to_outside:
        raise ValueError(
            f"{split} data has labels the model does not know: {listing}. Known: {sorted(known)}. "
            "Pass --unknown_labels_to_o to read them as O."
        )
    logger.warning("%s: mapping unknown labels to O: %s", split, listing)
    for example in examples:
        if example["tags"] is not None:
            example["tags"] = [t if t in known else OUTSIDE for t in example["tags"]]
    return examples


# ----------------------------------------------------------------------------------------------------------------
# Sub-token alignment and windows


def replace_untokenizable(examples: list[dict[str, Any]], tokenizer: Any) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Give every word at least one sub-token: words the tokenizer turns into nothing (U+3000, zero-width and
    control characters) are tokenized as the unknown token instead. Returns new examples ("words" holds what the
    tokenizer sees; "tokens" stays as read) and the count of replaced words."""
    known: dict[str, bool] = {}  # shared by all examples: each distinct token is tokenized once
    replaced: Counter[str] = Counter()
    out = []
    for example in examples:
        words = fed_words(example["tokens"], tokenizer.tokenize, tokenizer.unk_token, known)
        replaced.update(token for token, word in zip(example["tokens"], words) if word != token)
        out.append({**example, "words": words})
    return out, replaced


@dataclass
class WindowConfig:
    max_seq_length: int = 512
    stride: int = 128  # sub-tokens shared by consecutive windows at evaluation and prediction
    label_all_tokens: bool = False
    scheme: str = "BIO"


def encode_examples(
    examples: list[dict[str, Any]],
    tokenizer: Any,
    label2id: dict[str, int] | None,
    config: WindowConfig,
    overlap: bool,
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Tokenize examples into model rows, one per window.

    Each row has input_ids, attention_mask, token_type_ids, word_start_mask (1 at chain positions), labels (when
    the example has tags and `label2id` is given), lexicon_features (when the example has "lexicon", its words'
    feature bits: on each word's first sub-token), example_index, unit_offset (index of the row's first chain unit
    within its example) and length. A chain unit is a word, or with `label_all_tokens` a word's sub-token.
    Also returns, per example, the number of chain units of each word (for stitching and `unit_tags_to_words`).
    """
    head, tail = special_wrapping(tokenizer)
    budget = config.max_seq_length - len(head) - len(tail)
    if budget < 1:
        raise ValueError(f"max_seq_length {config.max_seq_length} leaves no room for tokens")
    words_batch = [ex.get("words", ex["tokens"]) for ex in examples]
    # One unit per character: a SentencePiece tokenizer's lone "▁" before a word is not fed (as in the pipeline).
    bare_id = bare_prefix_id(tokenizer.backend_tokenizer.token_to_id, tokenizer.unk_token_id)
    encoded = tokenizer(
        words_batch, is_split_into_words=True, add_special_tokens=False, truncation=False, verbose=False
    )
    rows = []
    example_units = []
    truncated_words = 0
    for index, example in enumerate(examples):
        pieces = _word_pieces(example, len(words_batch[index]), encoded["input_ids"][index], encoded.word_ids(index))
        pieces = drop_bare_prefix(pieces, bare_id)
        truncated_words += _cut_long_words(pieces, budget)
        units_per_word = [len(p) if config.label_all_tokens else 1 for p in pieces]
        example_units.append(units_per_word)
        unit_starts = np.concatenate([[0], np.cumsum(units_per_word)]).tolist()
        stride = config.stride if overlap else 0
        for window in plan_windows(pieces, head, tail, budget, stride, example["tokens"]):
            rows.append(_window_row(window, example, index, units_per_word, unit_starts, label2id, config))
    if truncated_words:
        logger.warning("%d words longer than %d sub-tokens were cut to fit a window", truncated_words, budget)
    return rows, example_units


def _word_pieces(
    example: dict[str, Any], n_words: int, token_ids: Sequence[int], word_ids: Sequence[int | None]
) -> list[list[int]]:
    """Each word's sub-token ids; a word with none is an error (its tags could not be fed)."""
    pieces: list[list[int]] = [[] for _ in range(n_words)]
    for token_id, word in zip(token_ids, word_ids):
        if word is not None:
            pieces[word].append(token_id)
    if any(not p for p in pieces):
        missing = [example["tokens"][i] for i, p in enumerate(pieces) if not p]
        raise ValueError(f"{example['id']}: words with no sub-token {missing!r}; run replace_untokenizable first")
    return pieces


def _cut_long_words(pieces: list[list[int]], budget: int) -> int:
    """Cut, in place, each word longer than a window's `budget` of sub-tokens to fit one; return how many were."""
    cut = 0
    for i, p in enumerate(pieces):
        if len(p) > budget:
            cut += 1
            pieces[i] = p[:budget]
    return cut


def _window_row(
    window: Any,  # a ner_windows.Window
    example: dict[str, Any],
    index: int,
    units_per_word: list[int],
    unit_starts: list[int],
    label2id: dict[str, int] | None,
    config: WindowConfig,
) -> dict[str, Any]:
    """The model row of one window of `example` (see `encode_examples` for its keys)."""
    tags = example.get("tags")
    labelled = tags is not None and label2id is not None
    row_ids = window.input_ids  # [CLS] ids [SEP] for BERT
    starts = [0] * len(row_ids)
    labels = [-100] * len(row_ids)
    word_bits = example.get("lexicon")
    features = [0] * len(row_ids) if word_bits is not None else None
    for w, position in zip(range(window.start, window.end), window.chain):
        if features is not None:  # on the word's first sub-token, where the pipeline puts it
            features[position] = word_bits[w]
        # A word's chain units are its first sub-token, or all of them with label_all_tokens.
        n_units = units_per_word[w]
        starts[position : position + n_units] = [1] * n_units
        if labelled:
            if config.label_all_tokens:
                unit_tags = expand_word_tag(tags[w], n_units, config.scheme)
            else:
                unit_tags = [tags[w]]
            labels[position : position + n_units] = [label2id[t] for t in unit_tags]
    row = {
        "input_ids": row_ids,
        "attention_mask": [1] * len(row_ids),
        "token_type_ids": [0] * len(row_ids),
        "word_start_mask": starts,
        "example_index": index,
        "unit_offset": unit_starts[window.start],
        "length": len(row_ids),
    }
    if labelled and window.chain:
        row["labels"] = labels
    if features is not None:
        row["lexicon_features"] = features
    return row


def stitch_emissions(
    logits: np.ndarray,
    rows: Sequence[dict[str, Any]],
    num_units: Sequence[int],
) -> list[np.ndarray]:
    """Per-example emissions `(units, labels)` from window rows.

    `logits` is `(rows, seq, labels)` as the Trainer returns it. Where windows overlap, each unit takes its scores
    from the window in which it lies farthest from an edge, so every unit gets exactly one row of scores.
    """
    windows: list[list[tuple[int, int]]] = [[] for _ in num_units]
    sources: list[list[tuple[int, np.ndarray]]] = [[] for _ in num_units]
    for row_index, row in enumerate(rows):
        positions = np.flatnonzero(np.asarray(row["word_start_mask"]))
        example, offset = row["example_index"], row["unit_offset"]
        windows[example].append((offset, offset + positions.size))
        sources[example].append((row_index, positions))
    out = []
    for example, n in enumerate(num_units):
        picks = stitch_rows(windows[example], n)
        row_indices = [sources[example][k][0] for k, _ in picks]
        positions = [sources[example][k][1][unit] for k, unit in picks]
        out.append(logits[row_indices, positions].astype(np.float32))  # (units, labels)
    return out


def unit_tags_to_words(unit_tags: Sequence[str], units_per_word: Sequence[int], scheme: str) -> list[str]:
    """Word-level tags from chain-unit tags: each word's units collapse into one tag (see `collapse_word_tags`)."""
    out, position = [], 0
    for n in units_per_word:
        out.append(collapse_word_tags(unit_tags[position : position + n], scheme))
        position += n
    return out


# ----------------------------------------------------------------------------------------------------------------
# Vocabulary extension


def unknown_rate(examples: list[dict[str, Any]], tokenizer: Any) -> float:
    """Share of words that the tokenizer maps to the unknown token (wholly or in part)."""
    unk = tokenizer.unk_token
    cache: dict[str, bool] = {}
    total = hits = 0
    for example in examples:
        for word in example.get("words", example["tokens"]):
            if word not in cache:
                cache[word] = unk in tokenizer.tokenize(word)
            total += 1
            hits += cache[word]
    return hits / max(total, 1)


def read_text_lines(path: str) -> Iterator[str]:
    """Non-blank lines of a UTF-8 text file, stripped."""
    check_file(path, "text")
    for _, line in text_lines(path):
        if line.strip():
            yield line.strip()


def pre_tokens(line: str, tokenizer: Any) -> list[str]:
    """The tokenizer's words of a line (each Chinese character alone), normalized as the tokenizer does."""
    backend = tokenizer.backend_tokenizer
    text = backend.normalizer.normalize_str(line) if backend.normalizer else line
    if not backend.pre_tokenizer:
        return text.split()
    return [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def extend_vocabulary(tokenizer: Any, examples: list[dict[str, Any]], min_count: int = 1) -> list[str]:
    """Add the words of `examples` that tokenize to the unknown token (single pre-tokens, e.g. Chinese
    characters) to a WordPiece tokenizer's vocabulary. Returns the added strings, most frequent first."""
    from tokenizers.models import WordPiece

    backend = tokenizer.backend_tokenizer
    if not isinstance(backend.model, WordPiece):
        unknown = unknown_rate(examples, tokenizer)
        raise ValueError(
            f"--extend_vocab needs a WordPiece tokenizer, got {type(backend.model).__name__} ({100 * unknown:.2f}% "
            "of the training words are unknown to it): pass --extend_vocab False (configs/demo.json turns it on "
            "for MiniLM; multilingual-e5's vocabulary already holds Chinese)"
        )
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    counts: Counter[str] = Counter()
    for example in examples:
        counts.update(example.get("words", example["tokens"]))
    vocab = tokenizer.get_vocab()
    added = []
    for word, count in counts.most_common():
        if count < min_count or tokenizer.unk_token not in tokenizer.tokenize(word):
            continue
        text = normalizer.normalize_str(word) if normalizer else word
        pieces = pre_tokenizer.pre_tokenize_str(text) if pre_tokenizer else [(text, None)]
        if len(pieces) != 1:
            continue  # several pre-tokens: adding the whole word would never match
        piece = pieces[0][0]
        if piece and piece not in vocab:
            vocab[piece] = len(vocab)
            added.append(piece)
    if added:
        model = backend.model
        backend.model = WordPiece(
            vocab,
            unk_token=model.unk_token,
            continuing_subword_prefix=model.continuing_subword_prefix,
            max_input_chars_per_word=model.max_input_chars_per_word,
        )
    return added
