"""Tag spans and word windows: plain Python shared by the model's config, its pipeline, the data code and the
ONNX runtime (which must not import torch). Travels with checkpoints as remote code.
"""

from __future__ import annotations

from typing import Any, Sequence

OUTSIDE = "O"
Span = tuple[str, int, int]  # (entity type, start token, end token exclusive)
# Characters after which a training window prefers to end.
CHAIN_BREAKS = frozenset("。！？；!?;")


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

    for i, tag in enumerate(tags):
        parts = split_tag(tag)
        if parts is None or parts[0] == OUTSIDE:
            close(i)
            continue
        prefix, etype = parts
        same = current is not None and current[0] == etype
        if scheme == "IOB1":
            if prefix == "B" or not same:
                close(i)
                current = [etype, i]
        elif scheme == "BIO":
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


def special_wrapping(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids a transformers tokenizer puts before and after a single sequence ([CLS] and [SEP]
    for BERT)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(inner) + 1):
        if full[start : start + len(inner)] == inner:
            return full[:start], full[start + len(inner) :]
    raise ValueError(f"cannot locate the special tokens of {type(tokenizer).__name__}")


def join_words(words: Sequence[str], delimiter: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The text of pre-split words and each word's character span in it. Without a delimiter, words of one
    character are joined as they are (Chinese), longer ones with spaces."""
    joiner = delimiter if delimiter is not None else ("" if all(len(w) == 1 for w in words) else " ")
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + len(joiner)
    return joiner.join(words), spans


def group_entities(
    labels: Sequence[str], scores: Sequence[float], spans: Sequence[tuple[int, int]], text: str, scheme: str
) -> list[dict[str, Any]]:
    """Entities of word-level `labels`: `{"entity_group", "score", "word", "start", "end"}` with `word ==
    text[start:end]` and `score` the mean of its words' scores."""
    entities = []
    for etype, first, last in tags_to_spans(labels, scheme):
        start, end = spans[first][0], spans[last - 1][1]
        entities.append({"entity_group": etype, "score": sum(scores[first:last]) / (last - first),
                         "word": text[start:end], "start": start, "end": end})
    return entities


# Model types whose position ids start after the padding index (514 position embeddings hold 512 tokens).
OFFSET_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "roberta_crf", "xlm_roberta_crf"})


def max_positions(config: Any) -> int:
    """The longest input (special tokens included) that a model's position embeddings hold."""
    offset = config.pad_token_id + 1 if getattr(config, "model_type", None) in OFFSET_POSITION_TYPES else 0
    return config.max_position_embeddings - offset
