"""What to annotate next: unlabeled texts ranked by the CRF's uncertainty, near-duplicates kept apart.

The ranking key is a text's expected number of wrongly tagged words: the sum over its words of 1 - the marginal
probability of the decoded tag (the pipeline's `expected_errors`). It counts the corrections an annotator can expect
to make, so a text full of doubtful words outranks a long, easy one; it costs nothing beyond tagging (the marginals
are computed anyway) and, unlike the probability that the whole path is wrong, it does not saturate at 1 on long
texts, where every text would tie. The task's score shown to annotators stays that probability (`mistake_probability`:
calibrated, in [0, 1]).

The diversity guard: texts are taken in ranking order, and one whose character 3-grams overlap a taken text's by
more than `max_similarity` (Jaccard) is passed over, so that one batch does not spend its budget on the same
sentence in many copies (news repeats headlines, logs repeat templates). Exact duplicates always overlap fully.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence

from bertcrf import annotations


# Two texts sharing more than this share of their character 3-grams are near-duplicates (Jaccard similarity).
MAX_SIMILARITY = 0.7
SHINGLE = 3
# Texts tagged per call of the pipeline when ranking.
RANK_BATCH = 64


def shingles(text: str, size: int = SHINGLE) -> frozenset[str]:
    """The text's character `size`-grams, whitespace collapsed (a shorter text: itself)."""
    text = " ".join(text.split())
    if len(text) <= size:
        return frozenset([text])
    return frozenset(text[i : i + size] for i in range(len(text) - size + 1))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two shingle sets."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def pick_diverse(
    texts: Sequence[str], order: Iterable[int], count: int, max_similarity: float = MAX_SIMILARITY
) -> tuple[list[int], list[tuple[int, int]]]:
    """Up to `count` indices of `texts` taken in `order`, skipping any text more similar than `max_similarity` to
    one already taken. Returns the taken indices and, for each skipped text, (its index, the taken one it repeats).

    Only texts sharing a 3-gram with a taken one are compared (an index from 3-gram to taken texts), so a pick costs
    about its own length times the few texts it overlaps, not the number taken."""
    if not 0.0 <= max_similarity <= 1.0:
        raise ValueError(f"max_similarity must be between 0 and 1, got {max_similarity!r}")
    taken: list[int] = []
    skipped: list[tuple[int, int]] = []
    sets: dict[int, frozenset[str]] = {}
    holders: dict[str, list[int]] = {}
    for index in order:
        if len(taken) >= count:
            break
        mine = shingles(texts[index])
        near = {other for gram in mine for other in holders.get(gram, ())}
        twin = next((other for other in sorted(near) if similarity(mine, sets[other]) > max_similarity), None)
        if twin is not None:
            skipped.append((index, twin))
            continue
        taken.append(index)
        sets[index] = mine
        for gram in mine:
            holders.setdefault(gram, []).append(index)
    return taken, skipped


def uncertainties(
    pipe: Callable[..., Any],
    texts: Sequence[str],
    progress: Callable[[int], None] | None = None,
    batch_size: int = 32,
    **options: Any,
) -> list[dict[str, Any]]:
    """Each text's entities, `mistake_probability` and `expected_errors` from a CRF pipeline, in batches (more
    pipeline options in `options`, e.g. a dictionary)."""
    answers: list[dict[str, Any]] = []
    for start in range(0, len(texts), RANK_BATCH):
        batch = list(texts[start : start + RANK_BATCH])
        answers += pipe(
            batch, aggregation_strategy="simple", return_mistake_probability=True, batch_size=batch_size, **options
        )
        if progress is not None:
            progress(len(batch))
    return answers


def rank(
    texts: Sequence[str], answers: Sequence[dict[str, Any]], count: int, max_similarity: float = MAX_SIMILARITY
) -> tuple[list[int], list[tuple[int, int]]]:
    """The `count` texts to annotate next, most expected errors first (ties: the earlier text), near-duplicates of
    a chosen text passed over (see `pick_diverse`)."""
    order = sorted(range(len(texts)), key=lambda i: (-answers[i]["expected_errors"], i))
    return pick_diverse(texts, order, count, max_similarity)


RANKED_FORMATS = ("label-studio", "doccano", "jsonl")


def ranked_output(
    chosen: Sequence[tuple[int, str, dict[str, Any]]],
    fmt: str,
    model_version: str = "",
    from_name: str = "label",
    to_name: str = "text",
    doccano_offsets: str = "utf-16",
) -> str:
    """The chosen (record number, text, answer) triples, in ranking order, as a file of `fmt`:

    - label-studio: a JSON list of tasks with the model's entities as predictions, the prediction's score the
      text's mistake probability, and `data` holding `line`, `rank`, `mistake_probability` and `expected_errors`
      (columns to sort by in Label Studio's data manager);
    - doccano: JSONL records `{"line", "rank", "mistake_probability", "expected_errors", "text", "label"}`;
    - jsonl: `{"line", "rank", "mistake_probability", "expected_errors", "text", "entities"}`."""
    if fmt not in RANKED_FORMATS:
        raise ValueError(f"a ranking is written as one of {RANKED_FORMATS}, got {fmt!r}")
    items = []
    for rank_number, (number, text, answer) in enumerate(chosen, start=1):
        scores = {
            "rank": rank_number,
            "mistake_probability": round(float(answer["mistake_probability"]), 4),
            "expected_errors": round(float(answer["expected_errors"]), 3),
        }
        entities = answer["entities"]
        if fmt == "label-studio":
            task = annotations.label_studio_task(
                number, text, entities, model_version, from_name, to_name, task_score=answer["mistake_probability"]
            )
            task["data"].update(scores)
            items.append(task)
        elif fmt == "doccano":
            items.append(annotations.doccano_record(text, entities, doccano_offsets, line=number, **scores)[0])
        else:
            rounded = [dict(e, score=round(float(e["score"]), 4)) for e in entities]
            items.append({"line": number, **scores, "text": text, "entities": rounded})
    if fmt == "label-studio":
        return json.dumps(items, ensure_ascii=False, indent=1) + "\n"
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
