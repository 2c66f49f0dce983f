"""Plain Python shared by the models' configs, the pipeline, the data code and the ONNX runtime (which must not
import torch): the tag-scheme grammar, word windows and their stitching, and entity spans. Each conversion lives
here once. Travels with checkpoints as remote code and with ONNX exports.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence, TypeVar


OUTSIDE = "O"
Span = tuple[str, int, int]  # (entity type, start token, end token exclusive)
# Characters after which a training window prefers to end.
CHAIN_BREAKS = frozenset("。！？；!?;")


# ----------------------------------------------------------------------------------------------------------------
# Tag schemes

TAG_SCHEMES = ("BIO", "IOB1", "BIOES", "BMES", "none")

# Prefix letters each scheme uses for entity tags, in label order; "O" is shared by all of them.
SCHEME_LETTERS = {"BIO": "BI", "IOB1": "BI", "BIOES": "BIES", "BMES": "BMES"}
SCHEME_PREFIXES = {scheme: frozenset(letters) for scheme, letters in SCHEME_LETTERS.items()}
# Prefixes a scheme writes for an entity's first, middle and last token and for a one-token entity. IOB1 writes
# B- only where an entity directly follows one of its type (see `spans_to_tags`).
SCHEME_PARTS = {
    "BIO": ("B", "I", "I", "B"),
    "IOB1": ("I", "I", "I", "I"),
    "BIOES": ("B", "I", "E", "S"),
    "BMES": ("B", "M", "E", "S"),
}


def inside_prefix(scheme: str) -> str:
    """The prefix that continues an entity: M in BMES, I elsewhere."""
    return SCHEME_PARTS[scheme][1] if scheme in SCHEME_PARTS else "I"


def split_tag(label: str) -> tuple[str, str] | None:
    """Split an entity tag into (prefix, type): "B-PER" -> ("B", "PER"); "O" -> ("O", ""); None if neither."""
    if label == OUTSIDE:
        return OUTSIDE, ""
    for sep in ("-", "_"):
        prefix, found, entity_type = label.partition(sep)
        if found and len(prefix) == 1 and entity_type:
            return prefix.upper(), entity_type
    return None


def tags_to_spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """Entity spans of a tag sequence, read leniently (like conlleval): a stray I-/M-/E- still opens an entity."""
    spans: list[Span] = []
    if scheme == "none":  # plain labels: each run of one label is an entity
        for i, tag in enumerate(tags):
            if tag != OUTSIDE and (i == 0 or tags[i - 1] != tag):
                spans.append((tag, i, i + 1))
            elif tag != OUTSIDE:
                spans[-1] = (tag, spans[-1][1], i + 1)
        return spans
    current: list[Any] | None = None  # [type, start]

    def close(end: int) -> None:
        nonlocal current
        if current is not None:
            spans.append((current[0], current[1], end))
        current = None

    parsed: dict[str, tuple[str, str] | None] = {}  # a text has few distinct tags: split each once
    for i, tag in enumerate(tags):
        if tag == OUTSIDE:
            if current is not None:
                close(i)
            continue
        if tag not in parsed:
            parsed[tag] = split_tag(tag)
        parts = parsed[tag]
        if parts is None or parts[0] == OUTSIDE:
            close(i)
            continue
        prefix, etype = parts
        same = current is not None and current[0] == etype
        if scheme in ("BIO", "IOB1"):
            if prefix == "B" or not same:
                close(i)
                current = [etype, i]
        else:  # BIOES / BMES
            if prefix in ("B", "S") or not same:
                close(i)
                current = [etype, i]
            if prefix in ("E", "S"):
                close(i + 1)
    close(len(tags))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Tags for non-overlapping spans in `scheme` (BIO, IOB1, BIOES or BMES)."""
    tags = [OUTSIDE] * length
    first, middle, last, single = SCHEME_PARTS[scheme]
    previous: Span | None = None
    for span in sorted(spans, key=lambda s: s[1]):
        etype, start, end = span
        opening, alone = first, single
        # IOB1's B- splits an entity from the one of its type that it directly follows.
        if scheme == "IOB1" and previous is not None and previous[0] == etype and previous[2] == start:
            opening = alone = "B"
        if end - start == 1:
            tags[start] = f"{alone}-{etype}"
        else:
            tags[start] = f"{opening}-{etype}"
            for i in range(start + 1, end - 1):
                tags[i] = f"{middle}-{etype}"
            tags[end - 1] = f"{last}-{etype}"
        previous = span
    return tags


SpanLike = TypeVar("SpanLike", bound=tuple)  # (type, start, end, ...): a Span, or one that carries its location


def keep_flat_spans(spans: Iterable[SpanLike]) -> tuple[list[SpanLike], list[tuple[SpanLike, SpanLike]]]:
    """The spans flat tags can hold, and each dropped span with the kept one it overlaps.

    Longest first, then leftmost (then first given): the outer span of a nested pair survives, and of two
    overlapping spans of equal length the earlier one. Kept spans come back in start order."""
    ordered = sorted(enumerate(spans), key=lambda item: (-(item[1][2] - item[1][1]), item[1][1], item[0]))
    kept: list[SpanLike] = []
    dropped: list[tuple[SpanLike, SpanLike]] = []
    for _, span in ordered:
        blocker = next((k for k in kept if span[1] < k[2] and k[1] < span[2]), None)
        if blocker is None:
            kept.append(span)
        else:
            dropped.append((span, blocker))
    return sorted(kept, key=lambda s: s[1]), dropped


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Re-express a tag sequence from scheme `source` in scheme `target` (through entity spans)."""
    if source == target or "none" in (source, target):
        return list(tags)
    return spans_to_tags(tags_to_spans(tags, source), len(tags), target)


def expand_word_tag(tag: str, pieces: int, scheme: str) -> list[str]:
    """Tags for the `pieces` sub-tokens of one word when every sub-token is labelled (`label_all_tokens`).

    The word's entity boundaries stay where they were: B-PER over 3 pieces is B-PER I-PER I-PER in BIO; S-PER is
    B-PER I-PER E-PER in BIOES.
    """
    if pieces == 1:
        return [tag]
    parts = split_tag(tag)
    if scheme == "none" or parts is None or parts[0] == OUTSIDE:
        return [tag] * pieces
    prefix, etype = parts
    inside = inside_prefix(scheme)
    if scheme in ("BIO", "IOB1"):
        return [tag] + [f"I-{etype}"] * (pieces - 1)
    opens = prefix in ("B", "S")
    closes = prefix in ("E", "S")
    first = f"B-{etype}" if opens else f"{inside}-{etype}"
    last = f"E-{etype}" if closes else f"{inside}-{etype}"
    return [first] + [f"{inside}-{etype}"] * (pieces - 2) + [last]


def collapse_word_tags(tags: Sequence[str], scheme: str) -> str:
    """The word-level tag of a word whose sub-tokens were tagged `tags` (inverse of `expand_word_tag`)."""
    first = tags[0]
    if len(tags) == 1 or scheme not in ("BIOES", "BMES"):
        return first
    head, tail = split_tag(first), split_tag(tags[-1])
    if head is None or tail is None or head[0] == OUTSIDE:
        return first
    opens = head[0] in ("B", "S")
    closes = tail[0] in ("E", "S") and tail[1] == head[1]
    prefix = {(True, True): "S", (True, False): "B", (False, True): "E", (False, False): inside_prefix(scheme)}
    return f"{prefix[(opens, closes)]}-{head[1]}"


def detect_tag_scheme(labels: Sequence[str]) -> str:
    """Guess the tag scheme from label names.

    BIO and IOB1 use the same prefixes, so "B"/"I" labels are reported as BIO (the common case); pass IOB1
    explicitly for CoNLL-2003-style data. Labels that fit no scheme give "none" (no decoding constraints).
    """
    prefixes = set()
    for label in labels:
        parts = split_tag(label)
        if parts is None:
            return "none"
        if parts[0] != OUTSIDE:
            prefixes.add(parts[0])
    if not prefixes:
        return "none"
    for scheme in ("BIO", "BIOES", "BMES"):
        if prefixes <= SCHEME_PREFIXES[scheme]:
            return scheme
    return "none"


def detect_data_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """The scheme of tagged data. Label names tell BIOES and BMES; for B-/I- labels the transitions tell IOB1
    (an I- opens entities, B- only splits two adjacent ones) from BIO."""
    sequences = list(tag_sequences)
    labels = sorted({t for seq in sequences for t in seq})
    scheme = detect_tag_scheme(labels)
    if scheme != "BIO":
        return scheme
    i_opens = b_after_other = 0
    for seq in sequences:
        previous = None
        for tag in seq:
            parts = split_tag(tag)
            if parts and parts[0] in "BI":
                continues = previous is not None and previous[0] in "BI" and previous[1] == parts[1]
                if parts[0] == "I" and not continues:
                    i_opens += 1
                if parts[0] == "B" and not continues:
                    b_after_other += 1
            previous = parts
    return "IOB1" if i_opens > b_after_other else "BIO"


def _is_allowed(scheme: str, prev: tuple[str, str] | None, cur: tuple[str, str] | None) -> bool:
    """Whether tag `cur` may follow tag `prev` under `scheme`; `prev`/`cur` None mean sequence start/end."""
    if scheme == "none":
        return True
    if scheme == "BIO":
        if cur is not None and cur[0] == "I":
            return prev is not None and prev[0] in "BI" and prev[1] == cur[1]
        return True
    if scheme == "IOB1":
        # IOB1 uses B- only to split two adjacent entities of the same type.
        if cur is not None and cur[0] == "B":
            return prev is not None and prev[0] in "BI" and prev[1] == cur[1]
        return True
    # BIOES / BMES: an entity opened by B or continued by I/M must be continued or closed by the same type.
    inside = inside_prefix(scheme)
    prev_open = prev is not None and prev[0] in ("B", inside)
    cur_continues = cur is not None and cur[0] in (inside, "E")
    if prev_open:
        return cur_continues and cur[1] == prev[1]
    return not cur_continues


def allowed_transitions(id2label: dict[int, str], scheme: str) -> tuple[list[bool], list[bool], list[list[bool]]]:
    """Legal (start, end, transition) tables for the labels `id2label` under `scheme`.

    Returns `start[j]` (tag j may open a sentence), `end[i]` (tag i may close one) and `trans[i][j]` (j may follow i).
    Labels that do not parse under the scheme raise a ValueError.
    """
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"tag_scheme must be one of {TAG_SCHEMES}, got {scheme!r}")
    num = len(id2label)
    tags = [id2label[i] for i in range(num)]
    parsed = [split_tag(t) for t in tags]
    if scheme != "none":
        allowed = SCHEME_PREFIXES[scheme] | {OUTSIDE}
        for tag, parts in zip(tags, parsed):
            if parts is None or parts[0] not in allowed:
                raise ValueError(
                    f"label {tag!r} is not a {scheme} tag (expected O or one of {sorted(allowed - {OUTSIDE})}-TYPE)"
                )
    start = [_is_allowed(scheme, None, p) for p in parsed]
    end = [_is_allowed(scheme, p, None) for p in parsed]
    trans = [[_is_allowed(scheme, p, q) for q in parsed] for p in parsed]
    return start, end, trans


def span_constraints(
    spans: Iterable[Span], length: int, id2label: dict[int, str], scheme: str
) -> tuple[list[list[bool]], list[tuple[Span, Span]]]:
    """Which labels each of `length` units may take when `spans` (type, start, end exclusive) are forced: a span of
    an entity type must be exactly one entity of that type (its first unit opens it, the unit after it does not
    continue it); a span of type "O" is forbidden ground, all O. Decoding with the other labels masked out (their
    emissions set very low) re-decodes the rest of the sentence under the scheme's transitions, so a neighbouring
    entity can change. Overlapping spans: the longest is kept (see `keep_flat_spans`); the dropped ones come back
    with the span that kept them out. IOB1 cannot be forced unit by unit (whether an entity opens with B- depends on
    the unit before): a ValueError, as for a type the model lacks."""
    if scheme == "IOB1":
        raise ValueError("dictionary spans cannot be forced in IOB1 tags: train the model in BIO (run_ner.py does)")
    labels = [id2label[i] for i in range(len(id2label))]
    index = {label: i for i, label in enumerate(labels)}
    allowed = [[True] * len(labels) for _ in range(length)]
    kept, dropped = keep_flat_spans(list(spans))
    for kind, start, end in kept:
        if not 0 <= start < end <= length:
            raise ValueError(f"span {(kind, start, end)} is outside a sequence of {length} units")
        if kind == OUTSIDE:
            forced = [OUTSIDE] * (end - start)
        elif scheme == "none":
            forced = [kind] * (end - start)
        else:
            forced = spans_to_tags([(kind, 0, end - start)], end - start, scheme)
        missing = sorted(set(forced) - set(index))
        if missing:
            raise ValueError(f"the model has no label {missing[0]!r} for the dictionary type {kind!r}")
        for position, tag in zip(range(start, end), forced):
            allowed[position] = [i == index[tag] for i in range(len(labels))]
        if kind != OUTSIDE and scheme != "none":
            inside = {inside_prefix(scheme)} | ({"E"} if scheme in ("BIOES", "BMES") else set())
            if end < length:  # the entity ends here: the next unit does not continue it
                for i, parts in enumerate(map(split_tag, labels)):
                    if parts is not None and parts[0] in inside and parts[1] == kind:
                        allowed[end][i] = False
    return allowed, dropped


def checked_dictionary(dictionary: Any, labels: Iterable[str]) -> Lexicon:
    """A user dictionary (a mapping of words to types, or a Lexicon) as a Lexicon of one type per word, each an
    entity type of the model's `labels` or O (forbid); a ValueError naming what is wrong otherwise."""
    if isinstance(dictionary, Lexicon):
        lexicon = dictionary
    elif isinstance(dictionary, Mapping):
        lexicon = Lexicon(dictionary.items())
    else:
        raise ValueError(f"dictionary must map words to types (or be a Lexicon), got {dictionary!r}")
    several = next((word for word in lexicon.words if len(lexicon.types[word]) > 1), None)
    if several is not None:
        raise ValueError(f"dictionary word {several!r} has several types {list(lexicon.types[several])}: give one")
    known = {parts[1] for parts in map(split_tag, labels) if parts and parts[1]} | {OUTSIDE}
    unknown = sorted(set(lexicon.type_names) - known)
    if unknown:
        raise ValueError(f"dictionary type {unknown[0]!r} is not one of the model's types {sorted(known)}")
    return lexicon


def dictionary_units(lexicon: Lexicon, text: str, word_spans: Sequence[tuple[int, int]]) -> list[Span]:
    """(type, first unit, end unit exclusive) of each occurrence of `lexicon`'s words in `text` that begins and ends
    on the boundaries of the words (units) at `word_spans`; one inside a word cannot be held by word tags."""
    starts = {start: i for i, (start, _) in enumerate(word_spans)}
    ends = {end: i + 1 for i, (_, end) in enumerate(word_spans)}
    return [
        (kind, starts[start], ends[end])
        for start, end, kind in lexicon.matches(text)
        if start in starts and end in ends and starts[start] < ends[end]
    ]


# ----------------------------------------------------------------------------------------------------------------
# Words, windows and stitching


# Words whose tokenization a shared `fed_words` cache keeps: a text's characters mostly repeat, and one tokenizer
# call per word cost a fifth of a small model's time at batch 1.
KNOWN_WORDS_LIMIT = 100_000


def fed_words(
    words: Sequence[str],
    tokenize: Callable[[str], Sequence[Any]],
    unk_token: str,
    known: dict[str, bool] | None = None,
) -> list[str]:
    """The words as the tokenizer is fed them: a word that `tokenize` turns into nothing (U+3000, zero-width and
    control characters) becomes `unk_token`, so that every word keeps a position. `known` caches, per word,
    whether it has tokens; pass one dict to share it across calls (it is emptied past `KNOWN_WORDS_LIMIT` words)."""
    known = {} if known is None else known
    if len(known) > KNOWN_WORDS_LIMIT:
        known.clear()
    fed = []
    for word in words:
        if word not in known:
            known[word] = len(tokenize(word)) > 0
        fed.append(word if known[word] else unk_token)
    return fed


def word_pieces(
    ids: Sequence[int],
    word_ids: Sequence[int | None],
    offsets: Sequence[Sequence[int]] | None = None,
    spans: Sequence[tuple[int, int]] | None = None,
) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Each word's sub-token ids, for the words that got tokens (in order), and each such word's character span:
    `spans[word]` for pre-split words, else from its first and last tokens' `offsets` (raw text)."""
    positions: dict[int, list[int]] = {}
    for position, word in enumerate(word_ids):
        if word is not None:
            positions.setdefault(word, []).append(position)
    words = sorted(positions)
    pieces = [[ids[p] for p in positions[w]] for w in words]
    if spans is not None:
        return pieces, [spans[w] for w in words]
    if offsets is None:
        raise ValueError("word_pieces needs the tokens' offsets or the words' spans")
    return pieces, [(offsets[positions[w][0]][0], offsets[positions[w][-1]][1]) for w in words]


def word_windows(
    word_lengths: Sequence[int], budget: int, overlap: int, tokens: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """Split words into windows `[start, end)` of at most `budget` sub-tokens.

    Without overlap (training) the windows tile the sentence, preferring to cut after sentence punctuation (from
    `tokens`) in the window's last quarter. With overlap (evaluation, inference) each window starts about `overlap`
    sub-tokens before the previous one ends, yet early enough to leave room for a new word. A single word longer
    than the budget gets a window of its own.
    """
    windows = []
    start, n = 0, len(word_lengths)
    while start < n:
        end, used = start, 0
        while end < n and (used + word_lengths[end] <= budget or end == start):
            used += word_lengths[end]
            end += 1
        if end < n and overlap == 0 and tokens is not None:
            floor = start + max(1, (end - start) * 3 // 4)
            for cut in range(end, floor, -1):
                if tokens[cut - 1] in CHAIN_BREAKS:
                    end = cut
                    break
        windows.append((start, end))
        if end >= n:
            break
        if overlap == 0:
            start = end
        else:
            back, shared = end, 0
            room = budget - word_lengths[end]  # what the next window can share and still take word `end`
            while back > start + 1 and shared + word_lengths[back - 1] <= min(overlap, room):
                back -= 1
                shared += word_lengths[back]
            start = back
    return windows


def window_budget(max_length: int, head: Sequence[int], tail: Sequence[int]) -> int:
    """The sub-tokens a window of `max_length` ids holds besides the special ids `head` and `tail` (at least one)."""
    return max(1, max_length - len(head) - len(tail))


class Window(NamedTuple):
    """One model input: words `[start, end)` as `input_ids` (special ids included); `chain[k]` is the position of
    word `start + k`'s first sub-token in `input_ids`."""

    start: int
    end: int
    input_ids: list[int]
    chain: list[int]


def plan_windows(
    pieces: Sequence[Sequence[int]],
    head: Sequence[int],
    tail: Sequence[int],
    budget: int,
    stride: int | None = None,
    tokens: Sequence[str] | None = None,
) -> list[Window]:
    """The windows that carry words with sub-token ids `pieces` (one list per word) to the model, in order.

    Each window holds at most `budget` sub-tokens between the special ids `head` and `tail`; a word longer than
    the budget keeps its first `budget` sub-tokens. Consecutive windows share about `stride` sub-tokens (default a
    quarter of the budget); with `stride=0` they tile the words, ending after sentence punctuation in `tokens`
    where they can (see `word_windows`). No words give no windows.
    """
    overlap = budget // 4 if stride is None else stride
    kept = [list(p[:budget]) for p in pieces]
    windows = []
    for start, end in word_windows([len(p) for p in kept], budget, overlap, tokens):
        ids, chain = list(head), []
        for piece in kept[start:end]:
            chain.append(len(ids))
            ids += piece
        windows.append(Window(start, end, ids + list(tail), chain))
    return windows


def best_windows(windows: Sequence[tuple[int, int]], num_units: int) -> list[int]:
    """For each unit (word) in `[0, num_units)`, the window that holds it farthest from an edge (ties: the
    earlier window). Raises if a unit is in no window."""
    best = [-1] * num_units
    margin = [-1] * num_units
    for index, (start, end) in enumerate(windows):
        for unit in range(start, end):
            m = min(unit - start, end - 1 - unit)
            if m > margin[unit]:
                best[unit], margin[unit] = index, m
    missing = [u for u, b in enumerate(best) if b < 0]
    if missing:
        raise RuntimeError(f"units {missing[:10]} are in no window")
    return best


def stitch_rows(windows: Sequence[Sequence[int]], num_units: int) -> list[tuple[int, int]]:
    """Where each unit (word) in `[0, num_units)` takes its scores from, when windows `(start, end, ...)` overlap:
    `(window index, row in that window's units)`, the window being the one that holds the unit farthest from an
    edge (see `best_windows`). Each caller gathers its own rows (numpy or torch) from these indices."""
    spans = [(window[0], window[1]) for window in windows]
    return [(k, unit - spans[k][0]) for unit, k in enumerate(best_windows(spans, num_units))]


def special_wrapping(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids a transformers tokenizer puts before and after a single sequence ([CLS] and [SEP]
    for BERT)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(inner) + 1):
        if full[start : start + len(inner)] == inner:
            return full[:start], full[start + len(inner) :]
    raise ValueError(f"cannot locate the special tokens of {type(tokenizer).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Text and entities


def join_words(words: Sequence[str], delimiter: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The text of pre-split words and each word's character span in it. Without a delimiter, words of one
    character are joined as they are (Chinese), longer ones with spaces."""
    joiner = delimiter if delimiter is not None else ("" if all(len(w) == 1 for w in words) else " ")
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + len(joiner)
    return joiner.join(words), spans


def word_results(
    labels: Sequence[str], scores: Sequence[float], spans: Sequence[tuple[int, int]], text: str, ignore: set[str]
) -> list[dict[str, Any]]:
    """Each word's label (aggregation "none"): `{"entity", "score", "index", "word", "start", "end"}`, leaving out
    the words whose label is in `ignore`."""
    return [
        {
            "entity": label,
            "score": scores[i],
            "index": i,
            "word": text[spans[i][0] : spans[i][1]],
            "start": spans[i][0],
            "end": spans[i][1],
        }
        for i, label in enumerate(labels)
        if label not in ignore
    ]


def group_entities(
    labels: Sequence[str], scores: Sequence[float], spans: Sequence[tuple[int, int]], text: str, scheme: str
) -> list[dict[str, Any]]:
    """Entities of word-level `labels`: `{"entity_group", "score", "word", "start", "end"}` with `word ==
    text[start:end]` and `score` the mean of its words' scores."""
    entities = []
    for etype, first, last in tags_to_spans(labels, scheme):
        start, end = spans[first][0], spans[last - 1][1]
        entities.append(
            {
                "entity_group": etype,
                "score": sum(scores[first:last]) / (last - first),
                "word": text[start:end],
                "start": start,
                "end": end,
            }
        )
    return entities


# Model types whose position ids start after the padding index (514 position embeddings hold 512 tokens).
OFFSET_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "roberta_crf", "xlm_roberta_crf"})


def max_positions(config: Any) -> int:
    """The longest input (special tokens included) that a model's position embeddings hold."""
    offset = config.pad_token_id + 1 if getattr(config, "model_type", None) in OFFSET_POSITION_TYPES else 0
    return config.max_position_embeddings - offset


# ----------------------------------------------------------------------------------------------------------------
# One unit per character: SentencePiece tokenizers (XLM-R, multilingual-e5) and Chinese words

# SentencePiece's word-start mark. Fed a pre-split word, such a tokenizer starts it with the mark, often as a piece
# of its own ("▁", "高"): the word's first sub-token, which carries its label, would then carry no content.
METASPACE = "\u2581"


def is_cjk(char: str) -> bool:
    """Whether `char` is a CJK ideograph (a word of its own in Chinese NER), as BERT's tokenizer decides."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def split_text(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of raw `text` for a tokenizer that does not split words itself: each CJK
    ideograph and each punctuation or symbol character alone, runs of other characters between them and spaces."""
    spans: list[tuple[int, int]] = []
    start = None
    for position, char in enumerate(text):
        alone = is_cjk(char) or not (char.isalnum() or char.isspace() or unicodedata.category(char).startswith("M"))
        if char.isspace() or alone:
            if start is not None:
                spans.append((start, position))
                start = None
            if alone:
                spans.append((position, position + 1))
        elif start is None:
            start = position
    if start is not None:
        spans.append((start, len(text)))
    return spans


def isolates_cjk(split_words: Callable[[str], Sequence[Any]]) -> bool:
    """Whether a tokenizer's own word splitting (`split_words`: its normalizer then pre-tokenizer) makes each CJK
    character a word, as BERT's does; SentencePiece tokenizers keep a Chinese sentence as one word."""
    return len(split_words("中文")) == 2


def drop_bare_prefix(pieces: list[list[int]], bare_id: int | None) -> list[list[int]]:
    """Each word's sub-token ids without a leading lone word-start mark (`bare_id`, "▁") when other pieces follow,
    so that the word's first unit is content: one unit per Chinese character where the vocabulary has it."""
    if bare_id is None:
        return pieces
    return [p[1:] if len(p) > 1 and p[0] == bare_id else p for p in pieces]


def backend_words(backend: Any) -> Callable[[str], Sequence[Any]]:
    """The word splitting of a `tokenizers.Tokenizer`: its normalizer, then its pre-tokenizer."""

    def split(text: str) -> Sequence[Any]:
        text = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        return backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer is not None else [text]

    return split


def encodes_words_alone(backend: Any) -> bool:
    """Whether a `tokenizers.Tokenizer` gives each word of a pre-split list the ids it gives the word alone, so that
    a word's ids can be remembered instead of encoding every text's word list again (a tenth of a small model's
    batch-1 call). Each word is normalized, pre-tokenized and tokenized on its own, except under a Metaspace that
    prefixes only the first word of the list."""
    return "first" not in _prepend_schemes(json.loads(backend.to_str()).get("pre_tokenizer"))


def _prepend_schemes(node: Any) -> set[str]:
    """The Metaspace prepend schemes anywhere in a tokenizer.json pre-tokenizer."""
    if isinstance(node, dict):
        found = {node["prepend_scheme"]} if node.get("type") == "Metaspace" and "prepend_scheme" in node else set()
        return found.union(*(_prepend_schemes(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_prepend_schemes(v) for v in node))
    return set()


def bare_prefix_id(token_to_id: Callable[[str], int | None], unk_id: int | None) -> int | None:
    """The id of the lone word-start mark "▁" in a vocabulary that has it (SentencePiece), else None (WordPiece)."""
    found = token_to_id(METASPACE)
    return None if found is None or found == unk_id else found


# ----------------------------------------------------------------------------------------------------------------
# Lexicons

# Where a character lies in a lexicon word that covers it: first, middle, last, or the whole (one-character) word.
LEXICON_POSITIONS = ("B", "M", "E", "S")
LEXICON_FILE = "lexicon.tsv"


class Lexicon:
    """Typed words to find in text: every occurrence of every word, overlapping ones included.

    A dict from each word to its types, and from each first character to the lengths of the words it starts: a
    character costs one lookup per such length (a few for Chinese), whatever the lexicon's size. A trie of jieba's
    349k words would be a million Python dicts; a binary search over the sorted words measured no faster than
    looking up every piece up to the longest word (benchmarks/bench_lexicon.py)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        types: dict[str, set[str]] = {}
        for word, kind in entries:
            if not word or not kind:
                raise ValueError(f"a lexicon entry needs a word and a type, got {(word, kind)!r}")
            types.setdefault(word, set()).add(kind)
        self.words = sorted(types)
        self.types = {word: tuple(sorted(kinds)) for word, kinds in types.items()}
        self.type_names = sorted({kind for kinds in self.types.values() for kind in kinds})
        lengths: dict[str, set[int]] = {}
        for word in self.words:
            lengths.setdefault(word[0], set()).add(len(word))
        self.lengths = {first: tuple(sorted(sizes)) for first, sizes in lengths.items()}

    def __len__(self) -> int:
        return len(self.words)

    def matches(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end exclusive, type) of every occurrence of a lexicon word in `text`, by start, then end."""
        found = []
        for start, char in enumerate(text):
            for size in self.lengths.get(char, ()):
                end = start + size
                if end > len(text):  # a cut-off piece could be a shorter word, found at its own length
                    break
                for kind in self.types.get(text[start:end], ()):
                    found.append((start, end, kind))
        return found

    def char_features(self, text: str) -> list[set[tuple[str, str]]]:
        """For each character of `text`, the (position, type) pairs of the lexicon words that cover it (see
        LEXICON_POSITIONS)."""
        features: list[set[tuple[str, str]]] = [set() for _ in text]
        for start, end, kind in self.matches(text):
            if end - start == 1:
                features[start].add(("S", kind))
                continue
            features[start].add(("B", kind))
            for inside in range(start + 1, end - 1):
                features[inside].add(("M", kind))
            features[end - 1].add(("E", kind))
        return features

    def to_tsv(self) -> str:
        """`word<TAB>type` lines (one per type of a word), sorted: the form a checkpoint folder carries (`load`)."""
        return "".join(f"{word}\t{kind}\n" for word in self.words for kind in self.types[word])

    @classmethod
    def load(cls, path: str) -> Lexicon:
        """A lexicon written as `to_tsv` writes it (a checkpoint's `lexicon.tsv`)."""
        entries = []
        with open(path, encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                word, tab, kind = line.rstrip("\n").partition("\t")
                if not tab or not word or not kind or "\t" in kind:
                    raise ValueError(f"{path}:{number}: expected word<TAB>type, found {line.rstrip(chr(10))!r}")
                entries.append((word, kind))
        return cls(entries)


def lexicon_bits(
    lexicon: Lexicon, text: str, spans: Sequence[tuple[int, int]], type_names: Sequence[str]
) -> list[int]:
    """Each word's lexicon features as the bits of one int: bit `p * len(type_names) + t` is on when a lexicon word
    of type `type_names[t]` covers one of the word's characters at position `LEXICON_POSITIONS[p]` (begin, middle,
    end, single). Types outside `type_names` are ignored. The one conversion from matched words to model inputs:
    training data, the pipeline and the ONNX tagger all call it, on the text and the word spans they tag."""
    index = {kind: t for t, kind in enumerate(type_names)}
    b_bit, m_bit, e_bit, s_bit = (LEXICON_POSITIONS.index(p) * len(type_names) for p in ("B", "M", "E", "S"))
    char_bits = [0] * len(text)
    # Straight from the matches: char_features' per-character sets would be built only to be read back here.
    for start, end, kind in lexicon.matches(text):
        t = index.get(kind)
        if t is None:
            continue
        if end - start == 1:
            char_bits[start] |= 1 << (s_bit + t)
            continue
        char_bits[start] |= 1 << (b_bit + t)
        for inside in range(start + 1, end - 1):
            char_bits[inside] |= 1 << (m_bit + t)
        char_bits[end - 1] |= 1 << (e_bit + t)
    bits = []
    for start, end in spans:
        word = 0
        for position in range(start, end):
            word |= char_bits[position]
        bits.append(word)
    return bits
