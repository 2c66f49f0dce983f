"""Entity confidence that means what it says: expected calibration error and the CRF's confidence temperature.

An entity's score is the mean of its words' tag marginals (as the pipeline reports it); it is right when its type
and span match a gold entity. `fit_temperature` picks the one temperature, dividing every CRF potential, that
minimizes the log loss of those scores on a dev split: a proper scoring rule, smooth in the temperature and free of
the binning that ECE needs. Tags do not depend on the temperature (the Viterbi path is the argmax of the same scores),
so only the scores move.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from bertcrf import ner_data


# Expected calibration error over this many equal-width bins of [0, 1].
ECE_BINS = 10
# Temperatures tried: a coarse geometric grid, then a finer one around the best.
COARSE_TEMPERATURES = np.geomspace(0.25, 16.0, 31)
FINE_STEPS = 11


def entity_confidences(
    gold: Sequence[Sequence[str] | None],
    predicted: Sequence[Sequence[str]],
    word_scores: Sequence[Sequence[float]],
    scheme: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Each predicted entity's score (mean of its words' scores) and whether it is right (type and span in gold).
    Sentences without gold tags are skipped."""
    scores, right = [], []
    for gold_tags, tags, words in zip(gold, predicted, word_scores):
        if gold_tags is None:
            continue
        truth = set(ner_data.tags_to_spans(gold_tags, scheme))
        for span in ner_data.tags_to_spans(tags, scheme):
            _, first, last = span
            scores.append(sum(words[first:last]) / (last - first))
            right.append(span in truth)
    return np.asarray(scores, dtype=np.float64), np.asarray(right, dtype=bool)


def span_confidences(
    gold: Sequence[set[tuple[str, int, int]]], found: Sequence[Sequence[tuple[str, int, int, float]]]
) -> tuple[np.ndarray, np.ndarray]:
    """Each found entity's score and whether it is right: `gold[i]` holds text i's (type, start, end) entities,
    `found[i]` the (type, start, end, score) ones predicted there (the pipeline's character spans)."""
    pairs = [
        (score, (kind, start, end) in truth) for truth, text in zip(gold, found) for kind, start, end, score in text
    ]
    return np.asarray([p[0] for p in pairs], dtype=np.float64), np.asarray([p[1] for p in pairs], dtype=bool)


def reliability(scores: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> list[tuple[float, float, int]]:
    """(mean score, accuracy, count) per non-empty equal-width bin: the points of a reliability diagram."""
    which = np.minimum((scores * bins).astype(int), bins - 1)  # a score of 1.0 falls in the last bin
    return [
        (float(scores[which == b].mean()), float(right[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(scores: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width score bins of (share of entities in the bin) x |accuracy - mean score| there."""
    if len(scores) == 0:
        return 0.0
    return float(
        sum(count / len(scores) * abs(accuracy - mean) for mean, accuracy, count in reliability(scores, right, bins))
    )


def log_loss(scores: np.ndarray, right: np.ndarray) -> float:
    """Mean negative log-likelihood of the right/wrong outcomes under the scores."""
    if len(scores) == 0:
        return 0.0
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(right, np.log(p), np.log1p(-p))))


def fit_temperature(confidences_at: Callable[[float], tuple[np.ndarray, np.ndarray]]) -> float:
    """The temperature whose entity scores have the least log loss; `confidences_at(t)` gives (scores, right) at
    temperature t. A geometric grid from 1/4 to 16, then a finer grid between the best point's neighbours."""

    def loss(t: float) -> float:
        return log_loss(*confidences_at(t))

    coarse = [loss(t) for t in COARSE_TEMPERATURES]
    best = int(np.argmin(coarse))
    low = COARSE_TEMPERATURES[max(best - 1, 0)]
    high = COARSE_TEMPERATURES[min(best + 1, len(COARSE_TEMPERATURES) - 1)]
    fine = np.geomspace(low, high, FINE_STEPS)
    losses = [loss(t) for t in fine]
    return round(float(fine[int(np.argmin(losses))]), 4)


def describe(scores: np.ndarray, right: np.ndarray) -> str:
    """One line: how many entities, how many right, mean score and ECE."""
    if len(scores) == 0:
        return "no predicted entities"
    return (
        f"{len(scores)} entities, {right.mean():.1%} right, mean score {scores.mean():.3f}, "
        f"ECE {expected_calibration_error(scores, right):.3f}"
    )
