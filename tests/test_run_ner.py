"""End-to-end and unit tests for run_ner.py on a tiny random BERT checkpoint and the demo data."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import run_ner
from bertcrf import data_files, model_card, ner_data, training
from conftest import DEMO_DIR, FULLWIDTH_SPACE, REPO_ROOT
from modeling_bert_crf import BertCrfForTokenClassification
from ner_tags import join_words


MAX_TRAIN, MAX_EVAL, MAX_PREDICT = 64, 30, 30
QUIET = ["--report_to", "none", "--disable_tqdm", "True"]
RESULT_KEYS = ("precision", "recall", "f1", "accuracy", "ece")


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def argv_of(**options) -> list[str]:
    argv = []
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv + QUIET


def main(**options):
    return run_ner.main(argv_of(**options))


def read_sentences(path):
    """Sentences of a `token tag` column file as lists of (token, tag), split on the last space (U+3000 safe)."""
    sentences, current = [], []
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if line == "":
            if current:
                sentences.append(current)
            current = []
        else:
            token, tag = line.rsplit(" ", 1)
            current.append((token, tag))
    if current:
        sentences.append(current)
    return sentences


def write_sentences(path, sentences):
    with open(path, "w", encoding="utf-8") as handle:
        for sentence in sentences:
            handle.writelines(f"{token} {tag}\n" for token, tag in sentence)
            handle.write("\n")
    return path


def read_prediction_file(path):
    """predictions_<split>.txt: per sentence a list of (token, gold, predicted)."""
    blocks = Path(path).read_text(encoding="utf-8").split("\n\n")
    assert blocks[-1] == "", "the file ends with a blank line"
    return [[tuple(line.rsplit(" ", 2)) for line in block.split("\n")] for block in blocks[:-1]]


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def scores(results, prefix="eval"):
    """The entity metrics of a run; ECE to 6 decimals, as the marginals behind it move in the last bits with the
    batching (the tags and the counts do not)."""
    return {
        key: round(results[f"{prefix}_{key}"], 6) if key == "ece" else results[f"{prefix}_{key}"]
        for key in RESULT_KEYS
    }


def check_prediction_outputs(folder, split, source_sentences):
    """One prediction line per input token, sentence by sentence, and entity offsets that index the text."""
    predicted = read_prediction_file(Path(folder) / f"predictions_{split}.txt")
    assert len(predicted) == len(source_sentences)
    for sentence, rows in zip(source_sentences, predicted):
        assert len(rows) == len(sentence)
        assert [(r[0], r[1]) for r in rows] == [(t, g) for t, g in sentence]
    records = [
        json.loads(line)
        for line in (Path(folder) / f"predictions_{split}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == len(source_sentences)
    entities = 0
    for record, sentence, rows in zip(records, source_sentences, predicted):
        tokens = [t for t, _ in sentence]
        joiner = "" if all(len(t) == 1 for t in tokens) else " "
        assert record["text"] == joiner.join(tokens)
        _, offsets = join_words(tokens)
        spans = ner_data.tags_to_spans([r[2] for r in rows], "BIO")
        assert [(e["entity_group"], e["start"], e["end"]) for e in record["entities"]] == [
            (etype, offsets[first][0], offsets[last - 1][1]) for etype, first, last in spans
        ]
        for entity, (_, first, last) in zip(record["entities"], spans):
            assert set(entity) == {"entity_group", "score", "word", "start", "end"}  # the pipeline's schema
            assert 0 < entity["score"] <= 1
            assert entity["word"] == record["text"][entity["start"] : entity["end"]]
            assert entity["word"] == joiner.join(tokens[first:last])
        entities += len(record["entities"])
    return predicted, entities


# ----------------------------------------------------------------------------------------------------------------
# Data and a trained model shared by the module


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_checkpoint):
    """train.txt: 56 demo training sentences + 8 held-out ones with characters the tiny vocabulary lacks (so that
    --extend_vocab adds some); dev.txt and test.txt are the demo files."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("demo_data")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    unknown = [
        s
        for s in read_sentences(DEMO_DIR / "test.txt")[MAX_PREDICT:]
        if any(tokenizer.tokenize(t) == [tokenizer.unk_token] for t, _ in s)
    ][:8]
    assert len(unknown) == 8
    train = read_sentences(DEMO_DIR / "train.txt")[: MAX_TRAIN - 8] + unknown
    return {
        "train": write_sentences(folder / "train.txt", train),
        "dev": DEMO_DIR / "dev.txt",
        "test": DEMO_DIR / "test.txt",
        "train_sentences": train,
        "unknown_chars": sorted({t for s in unknown for t, _ in s if tokenizer.tokenize(t) == [tokenizer.unk_token]}),
    }


TRAIN_OPTIONS = dict(
    do_train=True,
    do_eval=True,
    do_predict=True,
    max_train_samples=MAX_TRAIN,
    max_eval_samples=MAX_EVAL,
    max_predict_samples=MAX_PREDICT,
    num_train_epochs=6,
    max_seq_length=32,
    extend_vocab=True,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    learning_rate=3e-3,
    head_learning_rate=1e-2,
    crf_learning_rate=5e-2,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=1,
    load_best_model_at_end=True,
    logging_steps=50,
    seed=42,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_checkpoint, demo):
    out = tmp_path_factory.mktemp("trained") / "run"
    results = main(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        validation_file=demo["dev"],
        test_file=demo["test"],
        output_dir=out,
        **TRAIN_OPTIONS,
    )
    return {"out": out, "results": results, "base": tiny_checkpoint}


def eval_only(model, validation_file, output_dir, **options):
    values = dict(
        model_name_or_path=model,
        validation_file=validation_file,
        do_eval=True,
        output_dir=output_dir,
        max_seq_length=32,
        max_eval_samples=MAX_EVAL,
        per_device_eval_batch_size=8,
    )
    values.update(options)
    return main(**values)


# ----------------------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_end_to_end_outputs(trained, demo):
    out, results = trained["out"], trained["results"]
    for name in (
        "model.safetensors",
        "config.json",
        "modeling_bert_crf.py",
        "configuration_bert_crf.py",
        "tokenizer_config.json",
        "tokenizer.json",
        "README.md",
        "all_results.json",
        "trainer_state.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "modeling_bert_crf.py").read_text() == (REPO_ROOT / "modeling_bert_crf.py").read_text()
    config = load_json(out / "config.json")
    assert config["model_type"] == "bert_crf"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_bert_crf.BertCrfConfig",
        "AutoModel": "modeling_bert_crf.BertCrfForTokenClassification",
        "AutoModelForTokenClassification": "modeling_bert_crf.BertCrfForTokenClassification",
    }
    assert config["tag_scheme"] == "BIO"
    assert sorted(config["label2id"]) == ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]

    all_results = load_json(out / "all_results.json")
    for key in ("eval_f1", "predict_f1", "eval_precision", "predict_recall", "train_loss"):
        assert key in all_results and key in results
    assert all_results["eval_f1"] == pytest.approx(results["eval_f1"])
    assert all_results["eval_samples"] == MAX_EVAL and all_results["predict_samples"] == MAX_PREDICT
    assert 0.0 < results["eval_f1"] <= 1.0, "the tiny model learns a few entities"

    # README.md: YAML front matter with the pipeline tag and a model-index holding the eval scores
    import yaml

    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n")[1])
    assert front["pipeline_tag"] == "token-classification"
    assert front["library_name"] == "transformers"
    (entry,) = front["model-index"]
    assert entry["name"] == out.name
    for result, prefix, split in zip(entry["results"], ("eval", "predict"), ("validation", "test")):
        assert result["dataset"]["split"] == split
        metrics = {m["type"]: m["value"] for m in result["metrics"]}
        assert metrics["f1"] == pytest.approx(results[f"{prefix}_f1"], abs=1e-4)
        assert set(metrics) == set(RESULT_KEYS)
    assert len(entry["results"]) == 2
    # base_model names the starting checkpoint by its folder's name (it is no Hub id), never by its path
    assert front["base_model"] == Path(trained["base"]).name
    assert str(Path(trained["base"]).parent) not in readme
    assert "https://github.com/)" not in readme and "runtime" not in readme and "samples_per_second" not in readme
    assert f'model="{out.name}"' in readme
    assert "## Training hyperparameters" in readme and "## Framework versions" in readme

    test_sentences = read_sentences(demo["test"])[:MAX_PREDICT]
    assert any(len(s) > 30 for s in test_sentences), "some test sentences need several windows"
    assert any(FULLWIDTH_SPACE in [t for t, _ in s] for s in read_sentences(demo["test"]))
    check_prediction_outputs(out, "test", test_sentences)
    check_prediction_outputs(out, "validation", read_sentences(demo["dev"])[:MAX_EVAL])


@pytest.mark.slow
def test_reload_and_evaluate_gives_the_recorded_f1(trained, demo, tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    out = trained["out"]
    model = BertCrfForTokenClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    original = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert len(tokenizer) > len(original)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    for char in demo["unknown_chars"]:
        assert original.tokenize(char) == [original.unk_token]
        assert tokenizer.tokenize(char) != [tokenizer.unk_token], char
    assert model.config.tag_scheme == "BIO"

    state = load_json(out / "trainer_state.json")
    evals = [h["eval_f1"] for h in state["log_history"] if "eval_f1" in h]
    assert len(evals) == TRAIN_OPTIONS["num_train_epochs"]
    assert state["best_metric"] == pytest.approx(max(evals))
    recorded = trained["results"]
    # With these settings the best epoch is not the last one (F1 drops a little in epoch 6), so this checks that
    # load_best_model_at_end really put the best checkpoint in output_dir.
    assert recorded["eval_f1"] == pytest.approx(max(evals)), "the best checkpoint was loaded at the end"

    results = run_ner.main(
        [
            "--model_name_or_path",
            str(out),
            "--validation_file",
            str(demo["dev"]),
            "--do_eval",
            "True",
            "--output_dir",
            str(tmp_path / "eval"),
            "--max_seq_length",
            "32",
            "--max_eval_samples",
            str(MAX_EVAL),
            *QUIET,
        ]
    )
    assert scores(results) == scores(recorded)
    assert results["eval_loss"] == pytest.approx(recorded["eval_loss"], rel=1e-5)
    assert (tmp_path / "eval" / "predictions_validation.txt").read_text() == (
        out / "predictions_validation.txt"
    ).read_text()


def direct_tags(model, tokenizer, tokens):
    """Word tags from one forward pass of one sentence (untokenizable words fed as [UNK])."""
    words = [t if tokenizer.tokenize(t) else tokenizer.unk_token for t in tokens]
    enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    word_ids = enc.word_ids()
    starts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
    assert len(starts) == len(tokens)
    mask = torch.zeros_like(enc["input_ids"])
    mask[0, starts] = 1
    with torch.no_grad():
        out = model(**enc, word_start_mask=mask)
    return [model.config.id2label[out.predictions[0, i].item()] for i in starts]


@pytest.mark.slow
def test_metrics_use_whole_sentence_viterbi_paths(trained, demo, tmp_path):
    """Sentences that fit one window: the predictions written by run_ner equal the model's own Viterbi output."""
    from transformers import AutoTokenizer

    out = trained["out"]
    dev = read_sentences(demo["dev"])[:MAX_EVAL]
    assert max(len(s) for s in dev) + 2 <= 64
    eval_only(out, demo["dev"], tmp_path / "eval", max_seq_length=64, per_device_eval_batch_size=4)
    predicted = read_prediction_file(tmp_path / "eval" / "predictions_validation.txt")
    model = BertCrfForTokenClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    direct = [direct_tags(model, tokenizer, [t for t, _ in s]) for s in dev]
    assert [[r[2] for r in rows] for rows in predicted] == direct
    assert any(tag != "O" for tags in direct for tag in tags)


@pytest.mark.slow
def test_stitched_decoding_equals_model_predictions_in_trainer(trained, demo, tmp_path, monkeypatch):
    """run_ner's own Trainer and NerMetrics (captured from main): trainer.predict's `predictions` (the model's
    Viterbi tags, in the length-grouped row order) equal the stitched and re-decoded tags NerMetrics reports."""
    captured = {}
    build_trainer = training.build_trainer

    def capture(model, tokenizer, encoded, scheme, *args, **kwargs):
        trainer, metrics = build_trainer(model, tokenizer, encoded, scheme, *args, **kwargs)
        captured.update(trainer=trainer, metrics=metrics, encoded=encoded, scheme=scheme)
        return trainer, metrics

    monkeypatch.setattr(run_ner, "build_trainer", capture)
    results = eval_only(trained["out"], demo["dev"], tmp_path / "h", max_seq_length=64, per_device_eval_batch_size=4)
    trainer, scheme = captured["trainer"], captured["scheme"]
    split, metric = captured["encoded"]["validation"], captured["metrics"]["validation"]
    assert trainer.args.train_sampling_strategy == "group_by_length"
    assert len(split.rows) == MAX_EVAL  # one window per sentence
    order = metric.row_order()
    assert sorted(order) == list(range(MAX_EVAL)) and order != list(range(MAX_EVAL)), "evaluation rows are reordered"

    output = trainer.predict(split.dataset, metric_key_prefix="eval")
    assert isinstance(output.predictions, tuple)
    logits, model_predictions = output.predictions
    stitched_tags = metric.last_predictions
    assert len(stitched_tags) == MAX_EVAL
    id2label = trainer.model.config.id2label
    for position, row_index in enumerate(order):
        row = split.rows[row_index]
        chain = np.flatnonzero(row["word_start_mask"])
        own = [id2label[int(t)] for t in model_predictions[position, chain]]
        assert own == stitched_tags[row["example_index"]], row_index
    gold = [e["tags"] for e in split.examples]
    assert output.metrics["eval_f1"] == pytest.approx(
        training.score_entities(gold, stitched_tags, scheme, False)["f1"]
    )
    assert output.metrics["eval_f1"] == pytest.approx(results["eval_f1"])


@pytest.mark.slow
def test_group_by_length_and_sequential_evaluation_agree(trained, demo, tmp_path):
    results = {}
    for strategy in ("group_by_length", "sequential"):
        results[strategy] = eval_only(
            trained["out"],
            demo["dev"],
            tmp_path / strategy,
            train_sampling_strategy=strategy,
            per_device_eval_batch_size=4,
        )
    assert scores(results["group_by_length"]) == scores(results["sequential"])
    assert results["group_by_length"]["eval_loss"] == pytest.approx(results["sequential"]["eval_loss"], rel=1e-5)
    for name in ("predictions_validation.txt", "predictions_validation.jsonl"):
        assert (tmp_path / "group_by_length" / name).read_text() == (tmp_path / "sequential" / name).read_text()
    assert scores(results["sequential"]) == scores(trained["results"])


@pytest.mark.slow
def test_unknown_validation_labels(trained, demo, tmp_path):
    sentences = read_sentences(demo["dev"])[:5]
    third = sentences[2]
    sentences[2] = [(third[0][0], "B-FOO")] + third[1:]
    bad = write_sentences(tmp_path / "dev_foo.txt", sentences)
    line = sum(len(s) + 1 for s in sentences[:2]) + 1
    with pytest.raises(ValueError) as info:
        eval_only(trained["out"], bad, tmp_path / "fail")
    message = str(info.value)
    assert "'B-FOO'" in message and f"{bad}:{line}" in message
    results = eval_only(trained["out"], bad, tmp_path / "ok", unknown_labels_to_o=True)
    assert results["eval_samples"] == 5
    rows = read_prediction_file(tmp_path / "ok" / "predictions_validation.txt")
    assert rows[2][0][1] == "O"


@pytest.mark.slow
def test_evaluating_a_checkpoint_converts_data_to_its_scheme(trained, demo, tmp_path):
    """A BIO checkpoint evaluated on the same dev sentences written in BIOES scores the same entities."""
    sentences = read_sentences(demo["dev"])[:MAX_EVAL]
    bioes = [list(zip([t for t, _ in s], ner_data.convert_tags([g for _, g in s], "BIO", "BIOES"))) for s in sentences]
    path = write_sentences(tmp_path / "dev_bioes.txt", bioes)
    bio_results = eval_only(trained["out"], demo["dev"], tmp_path / "bio")
    bioes_results = eval_only(trained["out"], path, tmp_path / "bioes")
    assert bioes_results["eval_f1"] == pytest.approx(bio_results["eval_f1"])


@pytest.mark.slow
def test_predicting_unlabelled_data_keeps_the_checkpoint_scheme(trained, demo, tmp_path, monkeypatch):
    """Predict-only from a BIO checkpoint on untagged JSON lines: decoding stays constrained to BIO."""
    sentences = read_sentences(demo["test"])[:MAX_PREDICT]
    path = tmp_path / "test.jsonl"
    path.write_text(
        "".join(json.dumps({"tokens": [t for t, _ in s]}, ensure_ascii=False) + "\n" for s in sentences),
        encoding="utf-8",
    )
    captured = {}
    build_trainer = training.build_trainer

    def capture(model, *args, **kwargs):
        captured["model"] = model
        return build_trainer(model, *args, **kwargs)

    monkeypatch.setattr(run_ner, "build_trainer", capture)
    main(
        model_name_or_path=trained["out"],
        test_file=path,
        do_predict=True,
        output_dir=tmp_path / "out",
        max_seq_length=32,
        per_device_eval_batch_size=8,
    )
    rows = read_prediction_file(tmp_path / "out" / "predictions_test.txt")
    assert [[r[0] for r in block] for block in rows] == [[t for t, _ in s] for s in sentences]
    assert captured["model"].config.tag_scheme == "BIO"
    for block in rows:
        tags = [r[1] for r in block]  # no gold column: token, predicted
        for previous, tag in zip(["O", *tags], tags):
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:], f"illegal BIO transition {previous} -> {tag} in {tags}"


# ----------------------------------------------------------------------------------------------------------------
# Other training modes


def multi_piece_data(folder):
    """Column files whose words may split into several sub-tokens (new ##york, un ##know ##n)."""
    import random

    rng = random.Random(0)
    latin = [("newyork", "LOC"), ("newyorks", "LOC"), ("playing", None), ("unknown", None), ("the", None)]
    chars = [t for s in read_sentences(DEMO_DIR / "train.txt")[:40] for t, g in s if g == "O" and t != FULLWIDTH_SPACE]

    def sentence(n):
        out = []
        while len(out) < n:
            if rng.random() < 0.3:
                word, etype = rng.choice(latin)
                out.append((word, f"B-{etype}" if etype else "O"))
            else:
                out.append((rng.choice(chars), "O"))
        return out

    train = read_sentences(DEMO_DIR / "train.txt")[:40] + [sentence(rng.randint(5, 30)) for _ in range(24)]
    dev = [sentence(rng.randint(5, 40)) for _ in range(12)]
    test = [sentence(rng.randint(5, 40)) for _ in range(12)]
    return {
        name: (write_sentences(folder / f"{name}.txt", data), data)
        for name, data in (("train", train), ("dev", dev), ("test", test))
    }


@pytest.mark.slow
def test_label_all_tokens_end_to_end(tiny_checkpoint, tmp_path):
    data = multi_piece_data(tmp_path)
    out = tmp_path / "out"
    results = main(
        model_name_or_path=tiny_checkpoint,
        train_file=data["train"][0],
        validation_file=data["dev"][0],
        test_file=data["test"][0],
        output_dir=out,
        do_train=True,
        do_eval=True,
        do_predict=True,
        num_train_epochs=2,
        max_seq_length=32,
        label_all_tokens=True,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        save_strategy="no",
    )
    assert "eval_f1" in results and "predict_f1" in results
    predicted, _ = check_prediction_outputs(out, "test", data["test"][1])
    check_prediction_outputs(out, "validation", data["dev"][1])
    assert any(t == "unknown" for rows in predicted for t, _, _ in rows)


@pytest.mark.slow
def test_softmax_head_end_to_end(tiny_checkpoint, demo, tmp_path):
    out = tmp_path / "out"
    results = main(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        validation_file=demo["dev"],
        test_file=demo["test"],
        output_dir=out,
        do_train=True,
        do_eval=True,
        do_predict=True,
        head="softmax",
        num_train_epochs=1,
        max_train_samples=MAX_TRAIN,
        max_eval_samples=MAX_EVAL,
        max_predict_samples=MAX_PREDICT,
        max_seq_length=32,
        extend_vocab=True,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        save_strategy="no",
    )
    assert {"eval_f1", "predict_f1", "eval_accuracy"} <= set(results)
    config = load_json(out / "config.json")
    assert config["architectures"] == ["BertForTokenClassification"]
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    check_prediction_outputs(out, "test", read_sentences(demo["test"])[:MAX_PREDICT])


def annotation_exports(folder, sentences):
    """The demo `sentences` (single characters) as a doccano file (train), a brat folder (dev) and a Label Studio
    export (test), each holding all the sentences, and their texts."""
    texts = ["".join(token for token, _ in sentence) for sentence in sentences]
    spans = [ner_data.tags_to_spans([tag for _, tag in sentence], "BIO") for sentence in sentences]
    doccano = folder / "train.jsonl"
    doccano.write_text(
        "".join(
            json.dumps({"text": text, "label": [[s, e, t] for t, s, e in found]}, ensure_ascii=False) + "\n"
            for text, found in zip(texts, spans)
        ),
        encoding="utf-8",
    )
    brat = folder / "dev"
    brat.mkdir()
    (brat / "doc.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    ann, position, k = [], 0, 0
    for text, found in zip(texts, spans):
        for etype, start, end in found:
            k += 1
            ann.append(f"T{k}\t{etype} {position + start} {position + end}\t{text[start:end]}\n")
        position += len(text) + 1
    (brat / "doc.ann").write_text("".join(ann) + "#1\tAnnotatorNotes T1\tchecked\n", encoding="utf-8")
    tasks = [
        {
            "id": i,
            "data": {"text": text},
            "annotations": [
                {
                    "id": i,
                    "was_cancelled": False,
                    "result": [
                        {"type": "labels", "value": {"start": s, "end": e, "text": text[s:e], "labels": [t]}}
                        for t, s, e in found
                    ],
                }
            ],
        }
        for i, (text, found) in enumerate(zip(texts, spans), 1)
    ]
    label_studio = folder / "test.json"
    label_studio.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return doccano, brat, label_studio, texts


@pytest.mark.slow
def test_trains_on_annotation_tool_exports(tiny_checkpoint, tmp_path):
    """doccano, brat and Label Studio exports, detected from their content, train, evaluate and predict like the
    column file they came from (the readers' extra "text" and "offsets" keys ride along unused)."""
    sentences = read_sentences(DEMO_DIR / "train.txt")[:12]
    doccano, brat, label_studio, texts = annotation_exports(tmp_path, sentences)
    for path, fmt in ((doccano, "doccano"), (brat, "brat"), (label_studio, "label-studio")):
        assert data_files.sniff_format(path) == fmt
        examples = data_files.read_file(path)
        assert [(e["tokens"], e["tags"]) for e in examples] == [
            ([t for t, _ in s], [g for _, g in s]) for s in sentences
        ], fmt
    out = tmp_path / "out"
    results = main(
        model_name_or_path=tiny_checkpoint,
        train_file=doccano,
        validation_file=brat,
        test_file=label_studio,
        output_dir=out,
        do_train=True,
        do_eval=True,
        do_predict=True,
        max_steps=1,
        max_seq_length=32,
        per_device_train_batch_size=4,
        save_strategy="no",
    )
    assert {"eval_f1", "predict_f1"} <= set(results)
    assert load_json(out / "train_results.json")["train_loss"] > 0
    records = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == texts
    # An explicit format (for every file of the run): the trained model evaluated on the brat folder.
    results = main(
        model_name_or_path=out,
        validation_file=brat,
        data_format="brat",
        output_dir=tmp_path / "eval",
        do_eval=True,
        max_seq_length=32,
    )
    assert "eval_f1" in results
    with pytest.raises(ValueError, match="--data_format must be one of"):
        run_ner.parse_args(
            argv_of(model_name_or_path=tiny_checkpoint, train_file=doccano, output_dir=out, data_format="xml")
        )


@pytest.fixture
def restore_logging():
    import transformers

    yield
    transformers.utils.logging.set_verbosity_warning()
    for name in ("run_ner", "bertcrf"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def interrupt(out):
    """Make a finished run's folder look like one killed before the end of training: its checkpoints stay, the
    files written after training do not."""
    for name in ("train_results.json", "all_results.json", "model.safetensors", "config.json", "README.md"):
        (out / name).unlink(missing_ok=True)


@pytest.mark.slow
def test_resume_from_last_complete_checkpoint(tiny_checkpoint, demo, tmp_path, caplog, restore_logging):
    from transformers import AutoTokenizer

    out = tmp_path / "out"
    # The last 32 training sentences: they hold the characters the tiny vocabulary lacks.
    sentences = read_sentences(demo["train"])[-32:]
    common = dict(
        model_name_or_path=tiny_checkpoint,
        train_file=write_sentences(tmp_path / "train.txt", sentences),
        output_dir=out,
        do_train=True,
        max_seq_length=64,
        per_device_train_batch_size=8,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        learning_rate=3e-3,
        seed=7,
        extend_vocab=True,
    )
    main(num_train_epochs=1, keep_checkpoints=True, **common)
    first = load_json(out / "trainer_state.json")
    steps = first["global_step"]
    assert steps == 4  # 32 one-window sentences, batches of 8
    assert (out / f"checkpoint-{steps}").is_dir()
    first_logs = {h["step"]: h for h in first["log_history"] if "loss" in h}
    assert sorted(first_logs) == [1, 2, 3, 4]
    checkpoint_vocab = json.loads((out / f"checkpoint-{steps}" / "tokenizer.json").read_text(encoding="utf-8"))[
        "model"
    ]["vocab"]
    interrupt(out)
    # A checkpoint cut off while being written (kill -9): no trainer_state.json. It must not block the rerun.
    cut = out / f"checkpoint-{steps + 2}"
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"\0" * 10)

    # The rerun reads the training data in another order: the vocabulary added by --extend_vocab must stay the
    # checkpoint's (rebuilt from the reordered data, the added characters would get other ids).
    reordered = write_sentences(tmp_path / "reordered.txt", sentences[::-1])
    rebuilt = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert ner_data.extend_vocabulary(rebuilt, data_files.read_file(reordered), 1)
    assert rebuilt.get_vocab() != checkpoint_vocab, "an extension rebuilt from the reordered data differs"
    with caplog.at_level(logging.INFO):
        main(num_train_epochs=2, log_level="info", **dict(common, train_file=reordered))
    messages = [r.getMessage() for r in caplog.records]
    assert any("Resuming from" in m and f"checkpoint-{steps}" in m and "last complete" in m for m in messages)
    assert any(f"checkpoint-{steps + 2} was cut off" in m for m in messages)
    second = load_json(out / "trainer_state.json")
    assert second["global_step"] == 2 * steps
    second_logs = {h["step"]: h for h in second["log_history"] if "loss" in h}
    assert sorted(second_logs) == list(range(1, 2 * steps + 1))
    # The first epoch's history (learning rates of the one-epoch schedule) comes from the checkpoint: a run
    # started over with 2 epochs would have logged other learning rates at steps 1-4.
    for step in range(1, steps + 1):
        assert second_logs[step] == first_logs[step]
    final_vocab = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert final_vocab == checkpoint_vocab
    # Once trained, the folder is a clean Hub repository: no checkpoints (cut off or not), no pickled arguments.
    assert not list(out.glob("*checkpoint-*")) and not (out / "training_args.bin").exists()


@pytest.mark.slow
def test_output_folder_rules(tiny_checkpoint, demo, tmp_path):
    out = tmp_path / "out"
    common = dict(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        test_file=demo["test"],
        output_dir=out,
        do_train=True,
        do_predict=True,
        max_train_samples=16,
        max_predict_samples=4,
        max_seq_length=64,
        per_device_train_batch_size=8,
        num_train_epochs=1,
        save_strategy="epoch",
        seed=7,
    )
    main(**common)
    assert not list(out.glob("checkpoint-*")) and not (out / "training_args.bin").exists()
    finished = (out / "train_results.json").read_text(encoding="utf-8")
    assert load_json(out / "train_results.json")["train_loss"] > 0

    # Rerunning a finished command: refused, the results stay as they were.
    with pytest.raises(ValueError, match="finished training run.*--overwrite_output_dir"):
        main(**common)
    assert (out / "train_results.json").read_text(encoding="utf-8") == finished

    # HF v4's flag starts over, and the earlier run's predictions do not stay beside the new model.
    (out / "predictions_old.jsonl").write_text("{}\n", encoding="utf-8")
    run_ner.main([*argv_of(**dict(common, do_predict=False)), "--overwrite_output_dir"])
    assert not (out / "predictions_old.jsonl").exists() and not (out / "predictions_test.jsonl").exists()
    assert load_json(out / "train_results.json")["train_loss"] > 0

    # A folder with other content: refused unless asked.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty \\(notes.txt\\).*--overwrite_output_dir"):
        main(**dict(common, output_dir=other))
    main(**dict(common, output_dir=other, overwrite_output_dir=True, keep_checkpoints=True))
    assert (other / "notes.txt").is_file() and list(other.glob("checkpoint-*"))
    assert not (other / "training_args.bin").exists()


def test_build_optimizer_groups(tiny_checkpoint, demo, tmp_path):
    from transformers import AutoTokenizer

    argv = argv_of(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        output_dir=tmp_path,
        do_train=True,
        freeze_layers=1,
        learning_rate=1e-4,
        head_learning_rate=2e-3,
        crf_learning_rate=3e-2,
        weight_decay=0.05,
    )
    model_args, data_args, training_args = run_ner.parse_args(argv)
    labels = ner_data.label_list([["B-PER", "I-PER", "B-LOC", "O"]], "BIO")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = training.load_model(model_args, labels, "BIO", tokenizer)
    optimizer = training.build_optimizer(model, training_args, model_args)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"body", "body_no_decay", "head", "head_no_decay", "crf_no_decay"}
    expected_lr = {"body": 1e-4, "head": 2e-3, "crf": 3e-2}
    for name, group in groups.items():
        assert group["lr"] == pytest.approx(expected_lr[name.split("_")[0]])
        assert group["weight_decay"] == (0.0 if name.endswith("_no_decay") else pytest.approx(0.05))

    names = {id(p): n for n, p in model.named_parameters()}
    placed = {names[id(p)]: name for name, g in groups.items() for p in g["params"]}
    assert sum(len(g["params"]) for g in groups.values()) == len(placed)  # no parameter twice
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(placed) == trainable
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in frozen)
    assert any(n.startswith("bert.encoder.layer.0.") for n in frozen)
    assert any(n.startswith("bert.embeddings.") for n in frozen)
    assert any(n.startswith("bert.encoder.layer.1.") for n in placed)
    for name, group in placed.items():
        if name.startswith("crf."):
            assert group == "crf_no_decay"
        elif name.endswith(".bias") or "LayerNorm" in name:
            assert group.endswith("_no_decay"), name
        else:
            assert group in ("body", "head"), name
        if name.startswith("classifier."):
            assert group.startswith("head")
    assert placed["classifier.weight"] == "head" and placed["classifier.bias"] == "head_no_decay"
    assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions"} <= set(placed)


# ----------------------------------------------------------------------------------------------------------------
# Arguments


def test_json_config_with_overrides(tiny_checkpoint, demo, tmp_path):
    config = {
        "model_name_or_path": str(tiny_checkpoint),
        "train_file": str(demo["train"]),
        "output_dir": str(tmp_path / "o"),
        "do_train": True,
        "do_eval": True,
        "validation_file": str(demo["dev"]),
        "num_train_epochs": 8,
        "learning_rate": 1e-4,
        "head_learning_rate": 5e-3,
        "max_seq_length": 48,
        "report_to": ["none"],
        "label_all_tokens": False,
        "tag_scheme": None,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    model_args, data_args, training_args = run_ner.parse_args(
        [str(path), "--num_train_epochs", "2", "--label_all_tokens", "True", "--do_eval", "False"]
    )
    assert training_args.num_train_epochs == 2
    assert data_args.label_all_tokens is True
    assert training_args.do_eval is False and training_args.do_train is True
    assert training_args.learning_rate == pytest.approx(1e-4)
    assert model_args.head_learning_rate == pytest.approx(5e-3)
    assert data_args.max_seq_length == 48
    assert model_args.tag_scheme is None
    assert model_args.model_name_or_path == str(tiny_checkpoint)
    # run_ner's own defaults
    assert training_args.train_sampling_strategy == "group_by_length"
    assert training_args.metric_for_best_model == "f1" and training_args.greater_is_better is True
    # a config value for them is kept
    config["train_sampling_strategy"] = "sequential"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert run_ner.parse_args([str(path)])[2].train_sampling_strategy == "sequential"


def test_yaml_config_and_shipped_demo_config(tiny_checkpoint, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"model_name_or_path: {tiny_checkpoint}\ntrain_file: x.txt\noutput_dir: {tmp_path}\n"
        "do_train: true\nnum_train_epochs: 5\n",
        encoding="utf-8",
    )
    _, data_args, training_args = run_ner.parse_args([str(path), "--num_train_epochs", "1"])
    assert training_args.num_train_epochs == 1 and data_args.train_file == "x.txt"
    model_args, data_args, training_args = run_ner.parse_args(
        [str(REPO_ROOT / "configs" / "demo.json"), "--model_name_or_path", str(tiny_checkpoint)]
    )
    assert model_args.model_name_or_path == str(tiny_checkpoint)
    assert data_args.train_file == "data/msra/train.json" and data_args.extra_train_files is None
    assert model_args.num_hidden_layers == 6 and data_args.card_notes == "configs/demo_card.md"
    assert training_args.num_train_epochs == 1 and training_args.per_device_train_batch_size == 16


@pytest.mark.parametrize(
    "option, value",
    [("tag_scheme", "BILOU"), ("tag_scheme", "bio"), ("data_tag_scheme", "IOB3"), ("head", "lstm")],
)
def test_bad_choices_raise(tiny_checkpoint, tmp_path, option, value):
    argv = argv_of(model_name_or_path=tiny_checkpoint, train_file="x.txt", output_dir=tmp_path, **{option: value})
    with pytest.raises(ValueError, match=f"--{option}.*'?{value}'?"):
        run_ner.parse_args(argv)
    with pytest.raises(ValueError, match=repr(value)):
        run_ner.main(argv)


def test_data_problems_stop_with_their_location(tiny_checkpoint, demo, tmp_path):
    common = dict(model_name_or_path=tiny_checkpoint, output_dir=tmp_path / "out", do_train=True)
    bad_tag = write_sentences(
        tmp_path / "bad_tag.txt", [[("张", "B-PER"), ("三", "I-PER")], [("北", "B-LOC"), ("京", "X-LOC")]]
    )
    with pytest.raises(ValueError, match=r"'X-LOC' x1 \(first at .*bad_tag.txt:5\)"):
        main(train_file=bad_tag, **common)
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"tokens": ["张"], "tags": ["B-PER"]}\n{"tokens": ["三"]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"validation data: 1 of 2 sentences have no tags \(.*dev.jsonl:2\)"):
        main(train_file=demo["train"], validation_file=dev, do_eval=True, **common)
    with pytest.raises(ValueError, match=r"train data: 1 of 2 sentences have no tags \(.*dev.jsonl:2\)"):
        main(train_file=dev, **common)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        main(train_file=tmp_path, **common)


def test_model_card_yaml_survives_odd_paths_and_names_hub_bases(tmp_path):
    import yaml

    data = tmp_path / "my data: v2 #1"
    data.mkdir()
    out = tmp_path / "card"
    out.mkdir()
    model_args, data_args, training_args = run_ner.parse_args(
        argv_of(
            model_name_or_path="hfl/chinese-macbert-base",
            train_file=data / "train.txt",
            output_dir=out,
            do_train=True,
            hub_model_id="someone/macbert-crf",
        )
    )
    model_card.write_model_card(
        str(out),
        model_args,
        data_args,
        training_args,
        ["O", "B-PER", "I-PER"],
        {"eval_f1": 0.5, "eval_runtime": 1.0},
        "BIO",
    )
    readme = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(readme.split("---\n")[1])
    assert front["datasets"] == ["my data: v2 #1"]
    assert front["base_model"] == "hfl/chinese-macbert-base"
    assert "https://huggingface.co/hfl/chinese-macbert-base" in readme
    assert front["model-index"][0]["name"] == "someone/macbert-crf" and 'model="someone/macbert-crf"' in readme
    assert "runtime" not in readme
    cached = tmp_path / "hub" / "models--hfl--chinese-macbert-base" / "snapshots" / "abc123"
    cached.mkdir(parents=True)
    assert model_card.base_model_name(str(cached)) == ("hfl/chinese-macbert-base", True)
    assert model_card.base_model_name(str(data)) == ("my data: v2 #1", False)
    packaged = tmp_path / "minilm_package" / "model"  # how a pip package ships its weights
    (packaged / "checkpoint-500").mkdir(parents=True)
    assert model_card.base_model_name(str(packaged)) == ("minilm_package", False)
    assert model_card.base_model_name(str(packaged / "checkpoint-500")) == ("minilm_package", False)


def test_negative_flags_have_their_own_help(capsys):
    with pytest.raises(SystemExit):
        run_ner.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no_constrain_decoding, --no-constrain-decoding Turn off --constrain_decoding (on by default)." in text


def test_no_data_raises(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="--train_file"):
        run_ner.parse_args(argv_of(model_name_or_path=tiny_checkpoint, output_dir=tmp_path))


# ----------------------------------------------------------------------------------------------------------------
# Several processes (accelerate launch)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(argv, env, timeout=240):
    # A port of our own: another launch on this machine (default port 29500) must not meet ours.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(REPO_ROOT / "run_ner.py"),
        *argv,
    ]
    # CI=true makes transformers hand its log records to the root logger too: run_ner must print each line once.
    env = dict(env, CI="true")
    with subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = kill_launch(proc)
            stdout, stderr = proc.communicate()
            pytest.fail(f"no exit after {timeout} s; stacks:\n{stacks}\n{stdout[-3000:]}\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout[-4000:]}\n{stderr[-4000:]}"
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def kill_launch(proc) -> str:
    """Kill a hung launch and its workers (each in a session of its own, so not in the launcher's process group);
    return their Python stacks where py-spy is installed."""
    import shutil
    import signal

    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    stacks = ""
    for pid in [str(proc.pid), *workers]:
        if spy:
            stacks += subprocess.run([spy, "dump", "--pid", pid], capture_output=True, text=True).stdout
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return stacks


@pytest.mark.slow
def test_two_processes_train_half_the_steps(tiny_checkpoint, demo, tmp_path, omp_env):
    options = dict(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        do_train=True,
        max_train_samples=MAX_TRAIN,
        max_seq_length=64,
        per_device_train_batch_size=8,
        num_train_epochs=1,
        save_strategy="no",
        seed=3,
    )
    main(output_dir=tmp_path / "one", **options)
    single = load_json(tmp_path / "one" / "trainer_state.json")["global_step"]
    assert single == math.ceil(MAX_TRAIN / 8)
    # Two processes, with the confidence temperature fitted after training on the gathered validation split.
    evaluated = dict(do_eval=True, validation_file=demo["dev"], max_eval_samples=MAX_EVAL)
    proc = accelerate_launch(argv_of(output_dir=tmp_path / "two", **options, **evaluated), omp_env)
    state = load_json(tmp_path / "two" / "trainer_state.json")
    assert state["global_step"] == single // 2, proc.stdout[-2000:]
    assert (tmp_path / "two" / "model.safetensors").is_file()
    fitted = load_json(tmp_path / "two" / "all_results.json")["confidence_temperature"]
    assert load_json(tmp_path / "two" / "config.json")["confidence_temperature"] == fitted


@pytest.mark.slow
def test_two_processes_evaluate_like_one(trained, demo, tmp_path, omp_env):
    options = dict(
        model_name_or_path=trained["out"],
        validation_file=demo["dev"],
        do_eval=True,
        max_seq_length=32,
        max_eval_samples=MAX_EVAL + 1,
        per_device_eval_batch_size=4,
    )
    one = main(output_dir=tmp_path / "one", **options)
    proc = accelerate_launch(
        argv_of(output_dir=tmp_path / "two", log_level="info", log_level_replica="info", **options), omp_env
    )
    assert (proc.stdout + proc.stderr).count("***** Running Prediction *****") == 2, "one evaluation per process"
    two = load_json(tmp_path / "two" / "all_results.json")
    assert two["eval_samples"] == one["eval_samples"] == MAX_EVAL + 1
    assert scores(two) == scores(one)
    name = "predictions_validation.txt"
    assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()


# ----------------------------------------------------------------------------------------------------------------
# Lexicon features, the layer mix, a cut encoder, layer-wise learning-rate decay


@pytest.fixture(scope="module")
def lexicon_trained(lexicon_checkpoint):
    return {"out": lexicon_checkpoint}


@pytest.mark.slow
def test_lexicon_model_trains_saves_and_tags_alike_everywhere(lexicon_trained, demo, tmp_path):
    import export_onnx
    from ner_onnx import OnnxNerTagger

    out = lexicon_trained["out"]
    config = load_json(out / "config.json")
    assert config["lexicon_types"] == ["LOC", "ORG", "PER", "WORD"] and config["lexicon_file"] == "lexicon.tsv"
    assert config["layer_mix"] is True and config["lexicon_combination"] == "input"
    lexicon = (out / "lexicon.tsv").read_text(encoding="utf-8").splitlines()
    assert "北京\tLOC" in lexicon and "公司\tWORD" in lexicon and "在\tWORD" in lexicon
    model = BertCrfForTokenClassification.from_pretrained(out)
    assert model.lexicon_embeddings.weight.abs().sum() > 0, "training learned lexicon vectors"

    # This process's pipeline, a fresh process's remote-code pipeline and the ONNX folder agree entity for entity.
    from transformers import AutoTokenizer

    records = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in records]

    def spans_of(tagged):
        return [[(e["entity_group"], e["start"], e["end"]) for e in entities] for entities in tagged]

    from pipeline_bert_crf import CrfTokenClassificationPipeline

    tokenizer = AutoTokenizer.from_pretrained(out)
    here = CrfTokenClassificationPipeline(model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    expected = spans_of(here(texts))
    assert sum(map(len, expected)) > 0
    script = (
        "import json, sys\n"
        "from transformers import pipeline\n"
        f"tag = pipeline('token-classification', model={str(out)!r}, aggregation_strategy='simple', "
        "trust_remote_code=True)\n"
        "assert type(tag).__module__.startswith('transformers_modules'), type(tag).__module__\n"
        "assert type(tag.model).__module__.startswith('transformers_modules'), type(tag.model).__module__\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps([[(e['entity_group'], e['start'], e['end']) for e in tag(t)] for t in texts]))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(texts), capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    remote = [[tuple(e) for e in entities] for entities in json.loads(done.stdout.strip().splitlines()[-1])]
    assert remote == expected

    export_onnx.export(str(out), str(tmp_path / "onnx"))
    assert (tmp_path / "onnx" / "lexicon.tsv").read_text(encoding="utf-8") == (out / "lexicon.tsv").read_text(
        encoding="utf-8"
    )
    assert spans_of(OnnxNerTagger(tmp_path / "onnx")(texts)) == expected

    # The features matter: without any lexicon match the same model tags some sentence differently.
    from ner_lexicon import Lexicon

    model.lexicon = Lexicon([("\u0000", "WORD")])
    assert spans_of(here(texts)) != expected


def test_a_lexicon_model_without_its_lexicon_cannot_tag(lexicon_trained):
    from transformers import AutoTokenizer

    from pipeline_bert_crf import CrfTokenClassificationPipeline

    model = BertCrfForTokenClassification.from_pretrained(lexicon_trained["out"])
    model.lexicon = None
    tokenizer = AutoTokenizer.from_pretrained(lexicon_trained["out"])
    tag = CrfTokenClassificationPipeline(model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"trained with a lexicon \(lexicon.tsv\) but has none"):
        tag("张三在北京")


def test_continuing_a_lexicon_model_keeps_its_lexicon_and_refuses_other_types(lexicon_trained, demo, tmp_path):
    from transformers import AutoTokenizer

    out = lexicon_trained["out"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    labels = BertCrfForTokenClassification.from_pretrained(out).config.id2label
    label_list = [labels[i] for i in range(len(labels))]
    args = run_ner.parse_args(argv_of(model_name_or_path=out, train_file=demo["train"], output_dir=tmp_path / "a"))
    model = training.load_model(args[0], label_list, "BIO", tokenizer)
    assert model.config.lexicon_types == ["LOC", "ORG", "PER", "WORD"] and len(model.lexicon) > 10
    assert model.config.layer_mix is True

    other = tmp_path / "other.tsv"
    other.write_text("北京\tCITY\n", encoding="utf-8")
    argv = argv_of(model_name_or_path=out, train_file=demo["train"], output_dir=tmp_path / "b")
    args = run_ner.parse_args(argv[:-4] + ["--lexicon", str(other), *QUIET])
    with pytest.raises(ValueError, match=r"trained with lexicon types \['LOC', 'ORG', 'PER', 'WORD'\]; the --lexicon"):
        training.load_model(args[0], label_list, "BIO", tokenizer)


def test_layer_lr_decay_and_cut_layers(tiny_checkpoint, demo, tmp_path):
    from transformers import AutoTokenizer

    argv = argv_of(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        output_dir=tmp_path,
        do_train=True,
        learning_rate=1e-3,
        head_learning_rate=2e-3,
        layer_lr_decay=0.5,
        layer_mix=True,
    )
    model_args, _, training_args = run_ner.parse_args(argv)
    labels = ner_data.label_list([["B-PER", "I-PER", "O"]], "BIO")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = training.load_model(model_args, labels, "BIO", tokenizer)
    optimizer = training.build_optimizer(model, training_args, model_args)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    by_name = {n: rate[id(p)] for n, p in model.named_parameters()}
    assert by_name["bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(1e-3)  # the top layer
    assert by_name["bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(5e-4)
    assert by_name["bert.embeddings.word_embeddings.weight"] == pytest.approx(2.5e-4)
    assert by_name["classifier.weight"] == by_name["layer_mix.weights"] == pytest.approx(2e-3)
    assert len(rate) == len(by_name)

    cut = run_ner.parse_args(
        argv_of(model_name_or_path=tiny_checkpoint, train_file=demo["train"], output_dir=tmp_path, num_hidden_layers=1)
    )[0]
    model = training.load_model(cut, labels, "BIO", tokenizer)
    assert model.config.num_hidden_layers == 1 and len(model.bert.encoder.layer) == 1
    too_many = run_ner.parse_args(
        argv_of(model_name_or_path=tiny_checkpoint, train_file=demo["train"], output_dir=tmp_path, num_hidden_layers=3)
    )[0]
    with pytest.raises(ValueError, match="--num_hidden_layers 3: the checkpoint has 2 encoder layers"):
        training.load_model(too_many, labels, "BIO", tokenizer)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lexicon_type_map", "{nr: PER}"], "--lexicon_type_map must be a JSON object"),
        (["--lexicon_type_map", '{"nr": 1}'], "--lexicon_type_map must map types to feature types or null"),
        (["--lexicon_combination", "concat"], "--lexicon_combination must be one of"),
        (["--layer_lr_decay", "0"], r"--layer_lr_decay must be in \(0, 1\], got 0.0"),
        (["--num_hidden_layers", "0"], "--num_hidden_layers must be >= 1, got 0"),
        (["--head", "softmax", "--layer_mix", "True"], "--lexicon and --layer_mix need the CRF head"),
    ],
)
def test_bad_recipe_options(tiny_checkpoint, demo, tmp_path, extra, message):
    argv = argv_of(model_name_or_path=tiny_checkpoint, train_file=demo["train"], output_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        run_ner.parse_args(argv[:-4] + extra + QUIET)


def test_extra_train_files_join_the_training_set_after_its_limit(tiny_checkpoint, demo, tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text('{"text": "张三在北京", "label": {"PER": {"张三": [[0, 1]]}, "LOC": {"北京": [[3, 4]]}}}\n')
    model_args, data_args, training_args = run_ner.parse_args(
        argv_of(
            model_name_or_path=tiny_checkpoint,
            train_file=demo["train"],
            extra_train_files=extra,
            max_train_samples=5,
            output_dir=tmp_path / "out",
            do_train=True,
        )
    )
    raw = training.load_raw_splits(model_args, data_args, training_args)
    assert len(raw["train"]) == 6 and raw["train"][-1]["tokens"] == list("张三在北京")
    assert raw["train"][-1]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    with pytest.raises(ValueError, match="extra_train_files"):
        run_ner.parse_args(
            argv_of(
                model_name_or_path=tiny_checkpoint,
                train_file=demo["train"],
                extra_train_files=tmp_path / "out" / "predictions_test.jsonl",
                output_dir=tmp_path / "out",
                do_train=True,
            )
        )


def test_bf16_training_on_cpu(tiny_checkpoint, demo, tmp_path, monkeypatch):
    """The Trainer's own `--bf16` trains on a CPU: the encoder runs under bf16 autocast, the CRF in float32 (its
    loss is the float32 one of the bf16 emissions), and the saved weights stay float32."""
    from modeling_crf import CRF

    seen = []
    exact = CRF.log_likelihood_packed

    def spy(self, emissions, tags, mask):
        seen.append((torch.is_autocast_enabled("cpu"), emissions.dtype))
        llh = exact(self, emissions, tags, mask)
        with torch.autocast("cpu", enabled=False):
            assert torch.allclose(llh, exact(self, emissions.float(), tags, mask), rtol=1e-6, atol=0)
        return llh

    monkeypatch.setattr(CRF, "log_likelihood_packed", spy)
    out = tmp_path / "bf16"
    results = main(
        model_name_or_path=tiny_checkpoint,
        train_file=demo["train"],
        validation_file=demo["dev"],
        output_dir=out,
        do_train=True,
        do_eval=True,
        max_steps=4,
        max_eval_samples=MAX_EVAL,
        max_seq_length=32,
        per_device_train_batch_size=8,
        save_strategy="no",
        bf16=True,
    )
    assert seen and all(on for on, _ in seen), "training ran without autocast"
    assert math.isfinite(load_json(out / "train_results.json")["train_loss"])
    assert "eval_f1" in results
    saved = BertCrfForTokenClassification.from_pretrained(out)
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
