"""Score a bert-crf checkpoint's pipeline with `evaluate`'s token-classification evaluator, offline.

    python scripts/evaluate_pipeline.py --model outputs/demo --data data/demo/test.txt

The data is any file run_ner.py reads; the metric is the local seqeval module in metrics/seqeval_offline (the
Hub's `seqeval` cannot be fetched offline), in strict mode for the model's tag scheme. A mistake in the data, the
model path or the options is printed as one message, without a traceback (BERTCRF_TRACEBACK=1 shows it).
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

from bertcrf import calibration, cli, data_files, ner_data
from bertcrf.crf_models import load_crf_pipeline
from bertcrf.model_card import add_card_results
from ner_tags import group_entities


METRIC_PATH = str(Path(__file__).resolve().parent.parent / "metrics" / "seqeval_offline")


class PipelineTokenClassificationEvaluator(TokenClassificationEvaluator):
    """evaluate's evaluator, taking a ready pipeline as is: evaluate 0.4 checks for TensorFlow model classes that
    transformers 5 no longer has before it accepts a pipeline."""

    def prepare_pipeline(
        self, model_or_pipeline: Any, tokenizer: Any = None, feature_extractor: Any = None, device: Any = None
    ) -> Any:
        if isinstance(model_or_pipeline, transformers.Pipeline):
            if model_or_pipeline.task != self.task:
                raise ValueError(f"expected a {self.task} pipeline, got {model_or_pipeline.task}")
            return model_or_pipeline
        return super().prepare_pipeline(model_or_pipeline, tokenizer, feature_extractor, device)

    def predictions_processor(self, predictions: list[list[dict]], words: list[list[str]], join_by: str) -> dict:
        """evaluate's word tags; the pipeline's entities (grouped as its "simple" aggregation groups them) and the
        gold entities' character spans are kept for the calibration of the entity scores."""
        self.last_entities = [
            group_entities(
                [p["entity"] for p in prediction],
                [p["score"] for p in prediction],
                [(p["start"], p["end"]) for p in prediction],
                join_by.join(row),
                self.scheme,
            )
            for prediction, row in zip(predictions, words)
        ]
        self.last_word_offsets = [self.words_to_offsets(row, join_by) for row in words]
        return super().predictions_processor(predictions, words, join_by)


def to_dataset(examples: list[dict[str, Any]], labels: list[str]) -> datasets.Dataset:
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=labels)),
        }
    )
    index = {label: i for i, label in enumerate(labels)}
    return datasets.Dataset.from_dict(
        {"tokens": [e["tokens"] for e in examples], "ner_tags": [[index[t] for t in e["tags"]] for e in examples]},
        features=features,
    )


def evaluate_pipeline(pipe: transformers.Pipeline, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Entity scores of `pipe` on tagged examples (tags in the model's scheme), via evaluate's evaluator, strict for
    the model's tag scheme, and the calibration of the pipeline's entity scores: `entity_ece` (see
    `bertcrf.calibration`) over `predicted_entities`."""
    config = pipe.model.config
    scheme = config.resolved_tag_scheme
    labels = [config.id2label[i] for i in range(config.num_labels)]
    # The evaluator joins words and maps entities back to words by their start offsets: a word that the tokenizer
    # drops (U+3000) would have no prediction, so it is fed as the unknown token, as in training.
    examples, _ = ner_data.replace_untokenizable(examples, pipe.tokenizer)
    examples = [dict(e, tokens=e["words"]) for e in examples]
    evaluator = PipelineTokenClassificationEvaluator("token-classification")
    evaluator.scheme = scheme
    if scheme in ner_data.SEQEVAL_SCHEMES:
        evaluator.METRIC_KWARGS = {
            "mode": "strict",
            "scheme": "BMES" if scheme == "BMES" else ner_data.SEQEVAL_SCHEMES[scheme],
        }
    result = evaluator.compute(
        model_or_pipeline=pipe,
        data=to_dataset(examples, labels),
        metric=evaluate.load(METRIC_PATH),
        input_column="tokens",
        label_column="ner_tags",
        join_by=joiner(examples),
    )
    gold = [
        # evaluate's word offsets end on the last character of a word: the pipeline's `end` is one past it
        {
            (kind, offsets[first][0], offsets[last - 1][1] + 1)
            for kind, first, last in ner_data.tags_to_spans(e["tags"], scheme)
        }
        for e, offsets in zip(examples, evaluator.last_word_offsets)
    ]
    found = [[(e["entity_group"], e["start"], e["end"], e["score"]) for e in text] for text in evaluator.last_entities]
    scores, right = calibration.span_confidences(gold, found)
    result["entity_ece"] = calibration.expected_calibration_error(scores, right)
    result["predicted_entities"] = len(scores)
    return result


def joiner(examples: list[dict[str, Any]]) -> str:
    """How the evaluator joins words into the text it tags: nothing when every word is one character (Chinese, as
    `join_words` joins them, so lexicon words and the model's context are what they are in training), else a
    space."""
    return "" if all(len(word) == 1 for e in examples for word in e["tokens"]) else " "


def load_examples(
    path: str,
    config: Any,
    max_samples: int | None,
    unknown_labels_to_o: bool,
    data_format: str = "auto",
    text_key: str | None = None,
    doccano_offsets: str = "auto",
) -> list[dict[str, Any]]:
    """Tagged examples of `path` (read as `data_format`, see `data_files.read_file`) with tags in the model's scheme;
    labels the model does not know are an error naming them and where they first occur (or O with
    `unknown_labels_to_o`)."""
    options = {"data_format": data_format, "text_key": text_key, "doccano_offsets": doccano_offsets}
    examples = data_files.read_file(path, **options)[:max_samples]
    untagged = [e["id"] for e in examples if e["tags"] is None]
    if untagged:
        raise ValueError(f"{len(untagged)} sentences have no tags (first: {untagged[0]}); scoring needs tagged data")
    scheme = config.resolved_tag_scheme
    source = ner_data.detect_examples_scheme(examples)
    for e in examples:
        e["tags"] = ner_data.convert_tags(e["tags"], source, scheme)
    labels = {config.id2label[i] for i in range(config.num_labels)}
    return ner_data.check_labels(examples, labels, unknown_labels_to_o, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bert-crf folder or Hub id")
    parser.add_argument("--data", required=True, help="tagged data in any format run_ner.py reads (or a brat folder)")
    parser.add_argument(
        "--data_format",
        choices=data_files.DATA_FORMATS,
        default="auto",
        help="the data's format (default auto: from its content, as run_ner.py does)",
    )
    parser.add_argument("--text_key", default=None, help="Label Studio: the data key holding the text (as run_ner.py)")
    parser.add_argument(
        "--doccano_offsets",
        choices=data_files.DOCCANO_OFFSETS,
        default="auto",
        help="doccano: the unit of the offsets (default auto: UTF-16, doccano's, unless the spans say characters)",
    )
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--brief", action="store_true", help="print one line: entity F1, precision and recall")
    parser.add_argument("--unknown_labels_to_o", action="store_true", help="score labels the model lacks as O")
    parser.add_argument(
        "--card_name",
        default=None,
        help="add the scores to the model folder's card (model-index and table) under this data name",
    )
    parser.add_argument("--card_dataset", default=None, help="with --card_name: the data's Hub dataset id, if any")
    parser.add_argument("--card_split", default="test", help="with --card_name: the data's split (default test)")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="allow a tokenizer that needs code from the model folder or Hub repo (off: none is run)",
    )
    args = parser.parse_args(argv)
    if args.card_name and not (Path(args.model) / "README.md").is_file():
        raise FileNotFoundError(f"--card_name needs a model folder with a README.md card; {args.model} has none")
    pipe = load_crf_pipeline(args.model, trust_remote_code=args.trust_remote_code)
    examples = load_examples(
        args.data,
        pipe.model.config,
        args.max_samples,
        args.unknown_labels_to_o,
        args.data_format,
        args.text_key,
        args.doccano_offsets,
    )
    result = evaluate_pipeline(pipe, examples)
    if args.brief:
        print(
            f"{args.data} ({len(examples)} sentences): entity F1 {100 * result['overall_f1']:.2f} "
            f"(precision {100 * result['overall_precision']:.2f}, recall {100 * result['overall_recall']:.2f}); "
            f"entity score calibration error (ECE) {result['entity_ece']:.3f} over {result['predicted_entities']} "
            "predicted entities"
        )
    else:
        print(json.dumps(result, indent=2, default=float))
    if args.card_name:
        metrics = {key: result[f"overall_{key}"] for key in ("precision", "recall", "f1", "accuracy")}
        metrics["ece"] = result["entity_ece"]
        add_card_results(args.model, args.card_name, args.card_dataset or args.card_name, args.card_split, metrics)


if __name__ == "__main__":
    cli.run(main)
