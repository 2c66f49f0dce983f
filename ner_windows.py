"""Words and windows, in plain Python (the ONNX runtime must not import torch): which sub-tokens a text's words
get, overlapping windows over a long text and stitching their rows, the special tokens around a window, how many
positions a model holds, and one unit per character for SentencePiece tokenizers and Chinese. Travels with
checkpoints as remote code and with ONNX exports.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Callable, NamedTuple, Sequence


# Characters after which a training window prefers to end.
CHAIN_BREAKS = frozenset("。！？；!?;")


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
