"""evaluate_pipeline.py and the offline seqeval metric module (metrics/seqeval_offline)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import evaluate_pipeline
from bertcrf import data_files, ner_data
from conftest import DEMO_DIR, load_crf_pipeline, untrusted_copy


OVERALL_KEYS = {"overall_precision", "overall_recall", "overall_f1", "overall_accuracy"}


@pytest.fixture(scope="module")
def metric():
    import evaluate

    return evaluate.load(evaluate_pipeline.METRIC_PATH)


@pytest.fixture(scope="module")
def dev_examples():
    """The first 20 demo dev sentences (BIO), none with a U+3000 token."""
    examples = data_files.read_file(str(DEMO_DIR / "dev.txt"))[:20]
    assert len(examples) == 20 and not any("\u3000" in e["tokens"] for e in examples)
    return examples


def word_predictions(pipe, tokens):
    """What evaluate's evaluator reads off the pipeline: per word, the tag at its start character, else O."""
    joiner = evaluate_pipeline.joiner([{"tokens": tokens}])
    text = joiner.join(tokens)
    by_start = {r["start"]: r["entity"] for r in pipe(text, ignore_labels=[])}
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + len(joiner)
    return [by_start.get(s, "O") for s in starts]


def test_evaluate_pipeline_on_demo_dev(crf_pipeline, dev_examples):
    from seqeval import metrics
    from seqeval.scheme import IOB2

    result = evaluate_pipeline.evaluate_pipeline(crf_pipeline, dev_examples)
    assert OVERALL_KEYS <= set(result)
    for key in OVERALL_KEYS:
        assert 0.0 <= float(result[key]) <= 1.0
    gold = [e["tags"] for e in dev_examples]
    types = {t.split("-", 1)[1] for tags in gold for t in tags if t != "O"}
    for etype in types:
        assert set(result[etype]) == {"precision", "recall", "f1", "number"}
        assert int(result[etype]["number"]) == sum(1 for tags in gold for t in tags if t == f"B-{etype}")
    predicted = [word_predictions(crf_pipeline, e["tokens"]) for e in dev_examples]
    assert float(result["overall_f1"]) == pytest.approx(metrics.f1_score(gold, predicted, mode="strict", scheme=IOB2))
    assert float(result["overall_accuracy"]) == pytest.approx(metrics.accuracy_score(gold, predicted))


def test_evaluate_pipeline_scores_its_own_predictions_perfectly(crf_pipeline, dev_examples):
    """Gold tags equal to the pipeline's own predictions: every word lines up, F1 and accuracy are 1."""
    examples = [dict(e, tags=word_predictions(crf_pipeline, e["tokens"])) for e in dev_examples]
    assert any(t != "O" for e in examples for t in e["tags"])
    result = evaluate_pipeline.evaluate_pipeline(crf_pipeline, examples)
    assert float(result["overall_f1"]) == 1.0
    assert float(result["overall_accuracy"]) == 1.0


@pytest.fixture(scope="module")
def all_i_loc_pipeline(crf_checkpoint):
    """A pipeline whose model tags I-LOC everywhere, with decoding constraints off so that it may."""
    pipe = load_crf_pipeline(crf_checkpoint)
    with torch.no_grad():
        pipe.model.classifier.weight.zero_()
        pipe.model.classifier.bias.zero_()
        pipe.model.classifier.bias[pipe.model.config.label2id["I-LOC"]] = 20.0
    pipe.model.config.constrain_decoding = False
    pipe.model.apply_decoding_constraints()
    return pipe


def test_evaluate_pipeline_is_strict(all_i_loc_pipeline):
    """BIO is scored as seqeval IOB2 in strict mode: I-LOC I-LOC is no entity there, while lenient (conlleval)
    scoring would read it as the gold LOC."""
    from seqeval import metrics
    from seqeval.scheme import IOB2

    tokens = ["上", "海"]
    gold = ["B-LOC", "I-LOC"]
    predicted = word_predictions(all_i_loc_pipeline, tokens)
    assert predicted == ["I-LOC", "I-LOC"]
    assert metrics.f1_score([gold], [predicted]) == 1.0
    assert metrics.f1_score([gold], [predicted], mode="strict", scheme=IOB2) == 0.0
    result = evaluate_pipeline.evaluate_pipeline(all_i_loc_pipeline, [{"tokens": tokens, "tags": gold}])
    assert float(result["overall_f1"]) == 0.0


def test_evaluate_pipeline_sentence_ending_with_a_dropped_token(crf_pipeline):
    """run_ner's data may hold U+3000 tokens (data/demo does); one at the end of a sentence is scored as O."""
    examples = [
        {"tokens": ["北", "京", "\u3000"], "tags": ["B-LOC", "I-LOC", "O"]},
        {"tokens": ["上", "海"], "tags": ["B-LOC", "I-LOC"]},
    ]
    result = evaluate_pipeline.evaluate_pipeline(crf_pipeline, examples)
    assert 0.0 <= float(result["overall_f1"]) <= 1.0


# ----------------------------------------------------------------------------------------------------------------
# The offline metric module


def test_metric_identical_inputs(metric):
    tags = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]]
    result = metric.compute(predictions=tags, references=tags)
    for key in OVERALL_KEYS:
        assert float(result[key]) == 1.0
    assert {k for k in result if k not in OVERALL_KEYS} == {"PER", "LOC", "ORG"}
    assert int(result["ORG"]["number"]) == 1 and float(result["ORG"]["f1"]) == 1.0


Y_TRUE = [
    ["O", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
    ["B-ORG", "I-ORG", "O", "B-PER", "O", "B-LOC"],
    ["B-PER", "B-PER", "O", "B-ORG", "I-ORG", "I-ORG"],
]
Y_PRED = [
    ["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
    ["I-ORG", "I-ORG", "O", "B-PER", "B-LOC", "I-LOC"],
    ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O"],
]


def test_metric_matches_seqeval_default(metric):
    from seqeval import metrics

    result = metric.compute(predictions=Y_PRED, references=Y_TRUE)
    assert float(result["overall_f1"]) == pytest.approx(metrics.f1_score(Y_TRUE, Y_PRED))
    assert float(result["overall_precision"]) == pytest.approx(metrics.precision_score(Y_TRUE, Y_PRED))
    assert float(result["overall_recall"]) == pytest.approx(metrics.recall_score(Y_TRUE, Y_PRED))
    assert float(result["overall_accuracy"]) == pytest.approx(metrics.accuracy_score(Y_TRUE, Y_PRED))
    report = metrics.classification_report(Y_TRUE, Y_PRED, output_dict=True)
    for etype in ("PER", "LOC", "ORG"):
        assert float(result[etype]["f1"]) == pytest.approx(report[etype]["f1-score"])
        assert int(result[etype]["number"]) == report[etype]["support"]


def test_metric_strict_iob2_matches_seqeval_strict(metric):
    from seqeval import metrics
    from seqeval.scheme import IOB2

    strict = metric.compute(predictions=Y_PRED, references=Y_TRUE, mode="strict", scheme="IOB2")
    expected = metrics.f1_score(Y_TRUE, Y_PRED, mode="strict", scheme=IOB2)
    assert float(strict["overall_f1"]) == pytest.approx(expected)
    assert float(strict["overall_precision"]) == pytest.approx(
        metrics.precision_score(Y_TRUE, Y_PRED, mode="strict", scheme=IOB2)
    )
    assert float(strict["overall_recall"]) == pytest.approx(
        metrics.recall_score(Y_TRUE, Y_PRED, mode="strict", scheme=IOB2)
    )
    # The hand example tells the two modes apart, so the options do reach seqeval.
    assert expected != pytest.approx(metrics.f1_score(Y_TRUE, Y_PRED))


def test_metric_strict_iobes(metric):
    from seqeval import metrics
    from seqeval.scheme import IOBES

    y_true = [["S-PER", "O", "B-LOC", "E-LOC"], ["B-ORG", "I-ORG", "E-ORG", "O"]]
    y_pred = [["S-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "E-ORG", "S-LOC"]]
    result = metric.compute(predictions=y_pred, references=y_true, mode="strict", scheme="IOBES")
    assert float(result["overall_f1"]) == pytest.approx(metrics.f1_score(y_true, y_pred, mode="strict", scheme=IOBES))


def test_main_runs_no_remote_code_and_names_unknown_labels(crf_checkpoint, tmp_path, capsys):
    folder, marker = untrusted_copy(crf_checkpoint, tmp_path)
    data = tmp_path / "dev.txt"
    data.write_text("张 B-PER\n三 I-PER\n\n北 B-LOC\n京 I-LOC\n\n", encoding="utf-8")
    evaluate_pipeline.main(["--model", str(folder), "--data", str(data)])
    assert not marker.exists(), "evaluate_pipeline.py ran code from the model folder without --trust_remote_code"
    assert "overall_f1" in json.loads(capsys.readouterr().out)
    data.write_text("张 B-PER\n三 I-PER\n\n北 B-GPE\n京 I-GPE\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'B-GPE' x1 \(first at .*dev.txt:4\).*--unknown_labels_to_o"):
        evaluate_pipeline.main(["--model", str(folder), "--data", str(data)])
    capsys.readouterr()
    evaluate_pipeline.main(["--model", str(folder), "--data", str(data), "--unknown_labels_to_o", "--brief"])
    assert re.fullmatch(
        r".*dev.txt \(2 sentences\): entity F1 \d+\.\d\d \(precision .*, recall .*\); entity score calibration "
        r"error \(ECE\) \d\.\d{3} over \d+ predicted entities\n",
        capsys.readouterr().out,
    )


def test_entity_ece_is_computed_from_the_pipelines_own_entity_scores(crf_pipeline, dev_examples):
    """The ECE that evaluate_pipeline reports is the one of the entities and scores that the pipeline itself gives
    (aggregation "simple": an entity's score is the mean of its words')."""
    from bertcrf import calibration

    # Half the gold tags are the pipeline's own (every entity there right), half the demo's (most wrong).
    examples = [
        dict(e, tags=word_predictions(crf_pipeline, e["tokens"])) if i % 2 else e for i, e in enumerate(dev_examples)
    ]
    result = evaluate_pipeline.evaluate_pipeline(crf_pipeline, examples)
    scores, right = [], []
    for example in examples:
        text = "".join(example["tokens"])
        gold = {(t, s, e) for t, s, e in ner_data.tags_to_spans(example["tags"], "BIO")}
        for entity in crf_pipeline(text, aggregation_strategy="simple"):
            scores.append(entity["score"])
            right.append((entity["entity_group"], entity["start"], entity["end"]) in gold)
    assert result["predicted_entities"] == len(scores) > 0
    assert 0 < sum(right) < len(right)
    expected = calibration.expected_calibration_error(np.array(scores), np.array(right))
    assert result["entity_ece"] == pytest.approx(expected, abs=1e-6)


def test_chinese_words_are_joined_as_written(lexicon_checkpoint, dev_examples):
    """Characters are joined without spaces (a lexicon model matches its words, and the context is training's);
    words of several characters with spaces. A lexicon model scores its own unspaced predictions perfectly."""
    assert evaluate_pipeline.joiner([{"tokens": ["张", "三"]}, {"tokens": ["北"]}]) == ""
    assert evaluate_pipeline.joiner([{"tokens": ["张", "三"]}, {"tokens": ["New", "York"]}]) == " "
    pipe = load_crf_pipeline(lexicon_checkpoint)
    examples = [dict(e, tags=word_predictions(pipe, e["tokens"])) for e in dev_examples]
    assert any(t != "O" for e in examples for t in e["tags"])
    assert float(evaluate_pipeline.evaluate_pipeline(pipe, examples)["overall_f1"]) == 1.0
