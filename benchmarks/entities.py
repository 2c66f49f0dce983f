"""Entities as the benchmarks compare them: sets of (type, start, end) character spans per text, the gold ones of
a tagged file, and the entity F1 of one list against another (a variant against gold, or against its fp32 twin:
then 100 minus about the share of entities that changed)."""

from __future__ import annotations

from pathlib import Path


def gold_and_texts(path: Path) -> tuple[list[str], list[set[tuple[str, int, int]]]]:
    """Texts and gold entity spans (character offsets) of a tagged file."""
    from bertcrf import data_files
    from ner_tags import join_words, tags_to_spans

    texts, gold = [], []
    for example in data_files.read_file(str(path)):
        text, spans = join_words(example["tokens"])
        texts.append(text)
        gold.append({(kind, spans[a][0], spans[b - 1][1]) for kind, a, b in tags_to_spans(example["tags"], "BIO")})
    return texts, gold


def entity_spans(results: list[list[dict]]) -> list[set[tuple[str, int, int]]]:
    """The (type, start, end) spans of the pipeline's (or the ONNX tagger's) "simple" results, per text."""
    return [{(e["entity_group"], e["start"], e["end"]) for e in entities} for entities in results]


def entity_f1(predicted: list, reference: list) -> float:
    """Exact (type, start, end) entity F1 of `predicted` against `reference`, one list of spans per text."""
    found = {(i, *span) for i, spans in enumerate(predicted) for span in spans}
    wanted = {(i, *span) for i, spans in enumerate(reference) for span in spans}
    return 2 * len(found & wanted) / max(len(found) + len(wanted), 1)
