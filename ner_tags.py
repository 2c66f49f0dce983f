"""Tags, spans and entities, in plain Python (the ONNX runtime must not import torch): the tag-scheme grammar, the
decoding constraints a scheme implies, spans from tags and back, and the entity dicts the pipeline returns. Each
conversion lives here once. Travels with checkpoints as remote code and with ONNX exports.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence, TypeVar


OUTSIDE = "O"
Span = tuple[str, int, int]  # (entity type, start token, end token exclusive)


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
