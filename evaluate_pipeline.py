"""Score a bert-crf checkpoint's pipeline with `evaluate`'s token-classification evaluator, offline.

    python evaluate_pipeline.py --model outputs/demo --data data/demo/test.txt

The data is any file run_ner.py reads; the metric is the local seqeval module in metrics/seqeval_offline (the
Hub's `seqeval` cannot be fetched offline), in strict mode for the model's tag scheme.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import datasets
import evaluate
import transformers
from evaluate.evaluator import TokenClassificationEvaluator

import ner_data

METRIC_PATH = str(Path(__file__).resolve().parent / "metrics" / "seqeval_offline")


class PipelineTokenClassificationEvaluator(TokenClassificationEvaluator):
    """evaluate's evaluator, taking a ready pipeline as is: evaluate 0.4 checks for TensorFlow model classes that
    transformers 5 no longer has before it accepts a pipeline."""

    def prepare_pipeline(self, model_or_pipeline: Any, tokenizer: Any = None, feature_extractor: Any = None, device: Any = None) -> Any:
        if isinstance(model_or_pipeline, transformers.Pipeline):
            if model_or_pipeline.task != self.task:
                raise ValueError(f"expected a {self.task} pipeline, got {model_or_pipeline.task}")
            return model_or_pipeline
        return super().prepare_pipeline(model_or_pipeline, tokenizer, feature_extractor, device)


def to_dataset(examples: list[dict[str, Any]], labels: list[str]) -> datasets.Dataset:
    features = datasets.Features(
        {"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": datasets.Sequence(datasets.ClassLabel(names=labels))}
    )
    index = {label: i for i, label in enumerate(labels)}
    return datasets.Dataset.from_dict(
        {"tokens": [e["tokens"] for e in examples], "ner_tags": [[index[t] for t in e["tags"]] for e in examples]},
        features=features,
    )


def evaluate_pipeline(pipe: transformers.Pipeline, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Entity scores of `pipe` on tagged examples (tags in the model's scheme), via evaluate's evaluator, strict for
    the model's tag scheme."""
    config = pipe.model.config
    scheme = config.resolved_tag_scheme
    labels = [config.id2label[i] for i in range(config.num_labels)]
    # The evaluator joins words with spaces and maps entities back to words by their start offsets: a word that
    # the tokenizer drops (U+3000) would have no prediction, so it is fed as the unknown token, as in training.
    examples, _ = ner_data.replace_untokenizable(examples, pipe.tokenizer)
    examples = [dict(e, tokens=e["words"]) for e in examples]
    evaluator = PipelineTokenClassificationEvaluator("token-classification")
    if scheme in ner_data.SEQEVAL_SCHEMES:
        evaluator.METRIC_KWARGS = {"mode": "strict", "scheme": "BMES" if scheme == "BMES" else ner_data.SEQEVAL_SCHEMES[scheme]}
    return evaluator.compute(
        model_or_pipeline=pipe, data=to_dataset(examples, labels), metric=evaluate.load(METRIC_PATH),
        input_column="tokens", label_column="ner_tags", join_by=" ",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bert-crf folder or Hub id")
    parser.add_argument("--data", required=True, help="tagged data in any format run_ner.py reads")
    parser.add_argument("--max_samples", type=int, default=None)
    args = parser.parse_args()
    pipe = transformers.pipeline("token-classification", model=args.model, trust_remote_code=True)
    examples = ner_data.read_file(args.data)[: args.max_samples]
    scheme = pipe.model.config.resolved_tag_scheme
    source = ner_data.detect_data_scheme(e["tags"] for e in examples)
    for e in examples:
        e["tags"] = ner_data.convert_tags(e["tags"], source, scheme)
    print(json.dumps(evaluate_pipeline(pipe, examples), indent=2, default=float))


if __name__ == "__main__":
    main()
