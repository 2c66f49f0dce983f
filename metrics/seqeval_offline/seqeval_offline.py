"""seqeval entity scores as an `evaluate` metric that loads offline.

`evaluate.load("seqeval")` fetches its script from the Hub; this module gives the same keys from the installed
seqeval package: `evaluate.load("metrics/seqeval_offline")`. Pass `scheme` ("IOB1", "IOB2", "IOBES", ...) and
`mode="strict"` for strict scoring.
"""

import datasets
import evaluate
from seqeval import metrics
from seqeval import scheme as seqeval_schemes


_DESCRIPTION = "Entity-level precision, recall and F1 (seqeval), overall and per type, plus token accuracy."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of tag sequences.
    references: list of tag sequences.
    scheme: seqeval scheme name for strict mode (IOB1, IOB2, IOE1, IOE2, IOBES, BILOU), or BMES (scored as IOBES
        with M- read as I-).
    mode: "strict" or None (conlleval-compatible).
    zero_division: value for undefined ratios (default 0).
Returns: overall_precision, overall_recall, overall_f1, overall_accuracy and, per type, a dict with
    precision, recall, f1 and number.
"""


class SeqevalOffline(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                    "references": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                }
            ),
        )

    def _compute(self, predictions, references, scheme=None, mode=None, zero_division=0):
        kwargs = {"mode": mode, "zero_division": zero_division}
        if scheme == "BMES":
            predictions, references = ([["I-" + t[2:] if t.startswith("M-") else t for t in seq] for seq in side]
                                       for side in (predictions, references))
            scheme = "IOBES"
        if scheme is not None:
            kwargs["scheme"] = getattr(seqeval_schemes, scheme)
        report = metrics.classification_report(references, predictions, output_dict=True, **kwargs)
        overall = report.pop("micro avg")
        for key in ("macro avg", "weighted avg"):
            report.pop(key, None)
        scores = {
            etype: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "number": v["support"]}
            for etype, v in report.items()
        }
        scores.update(
            overall_precision=overall["precision"], overall_recall=overall["recall"], overall_f1=overall["f1-score"],
            overall_accuracy=metrics.accuracy_score(references, predictions),
        )
        return scores
