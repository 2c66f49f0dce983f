"""The CRF token-classification pipeline: remote code, exact offsets, pre-split words, batching, windows, errors."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import CRF_LABELS, CRF_MAX_POSITIONS, REPO_ROOT, demo_characters, elsewhere, load_crf_pipeline
from ner_lexicon import Lexicon


TRICKY_TEXTS = [
    "受台风影响，武汉至上海的航班今天全部取消。",  # Chinese without spaces
    "2024年ＡＩ大会在北京举行, Apple CEO Tim Cook",  # Chinese, English, digits, full-width letters
    "ＡＢＣ１２３，全角字符：（北京）",  # full-width letters, digits and punctuation
    "我😀你😀😀他",  # emoji, alone and in a run
    "北京\u3000上海\u3000\u3000广州",  # U+3000 inside, twice in a row
    "  武汉大学  ",  # leading and trailing spaces
    "武汉\n上海\n\n北京",  # newlines inside
    "\t newyork playing\u3000unknown 2024\n",  # multi-piece words, tab, U+3000, trailing newline
]
ENTITY_TYPES = {label.split("-", 1)[1] for label in CRF_LABELS if label != "O"}


def cjk_characters():
    return [c for c in demo_characters() if "\u4e00" <= c <= "\u9fff"]


def cjk_text(length: int, seed: int = 7) -> str:
    """Random demo Chinese characters: every character is one word of one sub-token."""
    rng = random.Random(seed)
    chars = cjk_characters()
    return "".join(rng.choice(chars) for _ in range(length))


LONG_TEXT = cjk_text(600)  # about ten windows of 62 sub-tokens
LONG_TEXTS = [LONG_TEXT, cjk_text(300, seed=3), cjk_text(300, seed=11)]


def assert_exact_offsets(text, results):
    """word == text[start:end], spans non-empty, non-overlapping and in order."""
    previous_end = 0
    for r in results:
        assert text[r["start"] : r["end"]] == r["word"], r
        assert r["start"] < r["end"], r
        assert r["start"] >= previous_end, (r, previous_end)
        previous_end = r["end"]


def group_words(words):
    """BIO entities from per-word results, read leniently: (type, start, end, mean score)."""
    groups = []
    current = None
    for w in words:
        if w["entity"] == "O":
            current = None
            continue
        prefix, etype = w["entity"].split("-", 1)
        if prefix == "B" or current is None or current["type"] != etype:
            current = {"type": etype, "words": [w]}
            groups.append(current)
        else:
            current["words"].append(w)
    return [
        (
            g["type"],
            g["words"][0]["start"],
            g["words"][-1]["end"],
            sum(w["score"] for w in g["words"]) / len(g["words"]),
        )
        for g in groups
    ]


def assert_same_results(got, expected, tol=1e-5):
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected):
        assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in e.items() if k != "score"}
        assert g["score"] == pytest.approx(e["score"], abs=tol)


@pytest.fixture
def record_windows(crf_pipeline, monkeypatch):
    """Spy on preprocess: the list it fills gets (window, number of input ids) per chunk fed to the model."""
    seen = []
    original = crf_pipeline.preprocess

    def spy(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            seen.append((tuple(chunk["chunk"].window), chunk["input_ids"].shape[1]))
            yield chunk

    monkeypatch.setattr(crf_pipeline, "preprocess", spy)
    return seen


# ----------------------------------------------------------------------------------------------------------------
# The checkpoint carries the pipeline


def test_save_pretrained_ships_the_pipeline(crf_checkpoint):
    shipped = crf_checkpoint / "pipeline_bert_crf.py"
    assert shipped.is_file()
    assert shipped.read_text(encoding="utf-8") == (REPO_ROOT / "pipeline_bert_crf.py").read_text(encoding="utf-8")
    for name in ("modeling_bert_crf.py", "configuration_bert_crf.py"):
        assert (crf_checkpoint / name).is_file()
    config = json.loads((crf_checkpoint / "config.json").read_text(encoding="utf-8"))
    custom = config["custom_pipelines"]["token-classification"]
    assert custom["impl"] == "pipeline_bert_crf.CrfTokenClassificationPipeline"
    assert "AutoModelForTokenClassification" in custom["pt"]
    assert config["auto_map"]["AutoModelForTokenClassification"] == "modeling_bert_crf.BertCrfForTokenClassification"


def test_tiny_model_tags_entities(crf_pipeline):
    """The fixture's random model is useful for these tests: it predicts entities of several types and O."""
    words = crf_pipeline(TRICKY_TEXTS[0] + LONG_TEXT[:100], ignore_labels=[])
    labels = {w["entity"] for w in words}
    assert "O" in labels and any(label.startswith("I-") for label in labels)
    assert len({label.split("-")[-1] for label in labels} - {"O"}) >= 2


SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    folder, inputs_path, output_path = sys.argv[1:4]
    # The repo is not importable here: everything must come from the checkpoint folder.
    assert importlib.util.find_spec("pipeline_bert_crf") is None
    assert importlib.util.find_spec("modeling_bert_crf") is None
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, pipeline

    texts = json.load(open(inputs_path, encoding="utf-8"))
    pipe = pipeline("token-classification", model=folder, trust_remote_code=True)
    out = {
        "pipeline_class": type(pipe).__name__,
        "pipeline_module": type(pipe).__module__,
        "none": [pipe(t, ignore_labels=[]) for t in texts],
        "simple": [pipe(t, aggregation_strategy="simple") for t in texts],
        "config_class": type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__,
        "tokenizer_ids": AutoTokenizer.from_pretrained(folder, trust_remote_code=True)(texts[0])["input_ids"],
        "model_class": type(AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)).__name__,
    }
    try:
        AutoModelForTokenClassification.from_pretrained(folder)
        out["untrusted_error"] = None
    except Exception as error:
        out["untrusted_error"] = type(error).__name__ + ": " + str(error)
    json.dump(out, open(output_path, "w", encoding="utf-8"), ensure_ascii=False)
    """
)


@pytest.mark.slow
def test_remote_code_in_a_fresh_process(crf_checkpoint, crf_pipeline, tmp_path):
    texts = [TRICKY_TEXTS[0], TRICKY_TEXTS[1], TRICKY_TEXTS[4], LONG_TEXT[:200]]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    (workdir / "inputs.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    (workdir / "run.py").write_text(elsewhere(SUBPROCESS_SCRIPT), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
    )
    proc = subprocess.run(
        [sys.executable, "run.py", str(crf_checkpoint), "inputs.json", "out.json"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads((workdir / "out.json").read_text(encoding="utf-8"))

    assert out["pipeline_class"] == "CrfTokenClassificationPipeline"
    assert out["pipeline_module"].startswith("transformers_modules"), out["pipeline_module"]
    assert out["config_class"] == "BertCrfConfig"
    assert out["model_class"] == "BertCrfForTokenClassification"
    assert out["tokenizer_ids"] == crf_pipeline.tokenizer(texts[0])["input_ids"]
    assert out["untrusted_error"] is not None and "trust_remote_code" in out["untrusted_error"], out["untrusted_error"]
    for text, remote_none, remote_simple in zip(texts, out["none"], out["simple"]):
        assert_same_results(remote_none, crf_pipeline(text, ignore_labels=[]))
        assert_same_results(remote_simple, crf_pipeline(text, aggregation_strategy="simple"))


# ----------------------------------------------------------------------------------------------------------------
# Offsets


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_offsets_exact_every_word(crf_pipeline, text):
    words = crf_pipeline(text, ignore_labels=[])
    assert words
    assert_exact_offsets(text, words)
    assert [w["index"] for w in words] == list(range(len(words)))
    assert all(w["entity"] in CRF_LABELS for w in words)
    covered = {i for w in words for i in range(w["start"], w["end"])}
    gaps = [(i, c) for i, c in enumerate(text) if not c.isspace() and i not in covered]
    assert not gaps, f"characters in no word: {gaps}"
    # A word never holds whitespace in a raw text: the tokenizer splits there.
    assert not any(c.isspace() for w in words for c in w["word"]), words


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_offsets_exact_simple(crf_pipeline, text):
    words = crf_pipeline(text, ignore_labels=[])
    entities = crf_pipeline(text, aggregation_strategy="simple")
    assert_exact_offsets(text, entities)
    # Entities are the words' BIO runs, with the mean word score.
    expected = group_words(words)
    assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [g[:3] for g in expected]
    for e, g in zip(entities, expected):
        assert e["score"] == pytest.approx(g[3], abs=1e-6)


def test_default_ignores_o(crf_pipeline):
    text = TRICKY_TEXTS[0]
    every = crf_pipeline(text, ignore_labels=[])
    default = crf_pipeline(text)
    assert default == [w for w in every if w["entity"] != "O"]
    only_org = crf_pipeline(text, ignore_labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert only_org == [w for w in every if w["entity"].endswith("ORG")]


def test_some_output_has_multi_word_entity(crf_pipeline):
    entities = [e for t in TRICKY_TEXTS + [LONG_TEXT[:120]] for e in crf_pipeline(t, aggregation_strategy="simple")]
    assert any(len(e["word"]) > 1 for e in entities)


# ----------------------------------------------------------------------------------------------------------------
# Pre-split words

SINGLE_CHAR_WORDS = ["武", "汉", "\u3000", "至", "上", "海"]
MIXED_WORDS = ["newyork", "在", "北京", "\u3000", "2024", "Apple"]


@pytest.mark.parametrize("words, joiner", [(SINGLE_CHAR_WORDS, ""), (MIXED_WORDS, " ")])
def test_pre_split_one_result_per_word(crf_pipeline, words, joiner):
    assert len(crf_pipeline.tokenizer.tokenize("newyork")) > 1  # a multi-sub-token word
    text = joiner.join(words)
    results = crf_pipeline(words, is_split_into_words=True, ignore_labels=[])
    assert [r["index"] for r in results] == list(range(len(words)))
    assert [r["word"] for r in results] == words  # the U+3000 word too
    position = 0
    for word, r in zip(words, results):
        assert (r["start"], r["end"]) == (position, position + len(word))
        assert text[r["start"] : r["end"]] == word
        position += len(word) + len(joiner)
    for e in crf_pipeline(words, is_split_into_words=True, aggregation_strategy="simple"):
        assert text[e["start"] : e["end"]] == e["word"]


def test_pre_split_batch(crf_pipeline):
    batch = crf_pipeline([SINGLE_CHAR_WORDS, MIXED_WORDS, ["北"]], is_split_into_words=True, ignore_labels=[])
    assert len(batch) == 3
    for words, got in zip([SINGLE_CHAR_WORDS, MIXED_WORDS, ["北"]], batch):
        assert_same_results(got, crf_pipeline(words, is_split_into_words=True, ignore_labels=[]))


def test_pre_split_characters_equal_raw_text(crf_pipeline):
    text = TRICKY_TEXTS[0]
    assert_same_results(
        crf_pipeline(list(text), is_split_into_words=True, ignore_labels=[]), crf_pipeline(text, ignore_labels=[])
    )


def test_pre_split_delimiter(crf_pipeline):
    results = crf_pipeline(["北", "京", "newyork"], is_split_into_words=True, delimiter="__", ignore_labels=[])
    assert [(r["start"], r["end"]) for r in results] == [(0, 1), (3, 4), (6, 13)]


def test_words_are_tokenized_alone_once_per_tokenizer(crf_checkpoint, monkeypatch):
    # Whether a word gets tokens is remembered: a second text of the same words makes no per-word calls.
    pipe = load_crf_pipeline(crf_checkpoint)
    other = copy.deepcopy(pipe.tokenizer)
    alone = []

    encode_alone = pipe._encode_alone
    monkeypatch.setattr(pipe, "_encode_alone", lambda word: alone.append(word) or encode_alone(word))
    first = pipe(SINGLE_CHAR_WORDS, is_split_into_words=True, ignore_labels=[])
    # each word once, and the unknown token that stands in for U+3000 (which gets no tokens)
    words = sorted(set(SINGLE_CHAR_WORDS) | {pipe.tokenizer.unk_token})
    assert sorted(alone) == words
    alone.clear()
    assert_same_results(pipe(SINGLE_CHAR_WORDS, is_split_into_words=True, ignore_labels=[]), first)
    assert alone == []
    # Another tokenizer may split words otherwise: nothing known is kept.
    pipe.tokenizer = other
    assert_same_results(pipe(SINGLE_CHAR_WORDS, is_split_into_words=True, ignore_labels=[]), first)
    assert sorted(alone) == words


# ----------------------------------------------------------------------------------------------------------------
# Batching


@pytest.fixture
def record_batches(crf_pipeline, monkeypatch):
    """Spy on _forward: the list it fills gets a copy of each batch of model inputs, as the collate made it."""
    seen = []
    original = crf_pipeline._forward

    def spy(model_inputs, **kwargs):
        seen.append({k: v.clone() for k, v in model_inputs.items() if isinstance(v, torch.Tensor)})
        return original(model_inputs, **kwargs)

    monkeypatch.setattr(crf_pipeline, "_forward", spy)
    return seen


def test_batch_equals_one_by_one(crf_pipeline):
    """Texts of different lengths (and numbers of windows) batched together give what each gives alone."""
    texts = TRICKY_TEXTS + ["", "   ", LONG_TEXT[:150], "北", LONG_TEXT[:62], LONG_TEXT[:63], LONG_TEXT[:300]]
    for options in ({"ignore_labels": []}, {"aggregation_strategy": "simple"}):
        alone = [crf_pipeline(text, batch_size=1, **options) for text in texts]
        for batch_size in (None, 4):  # None: the default
            sizes = {} if batch_size is None else {"batch_size": batch_size}
            batched = crf_pipeline(texts, **sizes, **options)
            assert len(batched) == len(texts)
            for got, expected in zip(batched, alone):
                assert_same_results(got, expected)


def test_long_text_windows_run_in_batches_by_default(crf_pipeline, record_batches):
    expected = crf_pipeline(LONG_TEXT, ignore_labels=[], batch_size=1)
    windows = len(record_batches)
    assert windows >= 10 and all(batch["input_ids"].shape[0] == 1 for batch in record_batches)
    record_batches.clear()
    got = crf_pipeline(LONG_TEXT, ignore_labels=[])
    full, rest = divmod(windows, 8)
    assert [batch["input_ids"].shape[0] for batch in record_batches] == [8] * full + [rest] * (rest > 0)
    assert [r["entity"] for r in got] == [r["entity"] for r in expected]
    assert_same_results(got, expected)


def test_collate_pads_every_input(crf_pipeline, record_batches):
    """Padding: input_ids with the pad id, attention_mask and word_start_mask with 0, after each window."""
    texts, words = ["北京", LONG_TEXT[:40], "newyork 上海"], [2, 40, 3]
    crf_pipeline(texts, batch_size=3)
    (batch,) = record_batches
    lengths = [2 + len(crf_pipeline.tokenizer.tokenize(text)) for text in texts]
    width = max(lengths)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["word_start_mask"].shape == (3, width)
    for row, length in enumerate(lengths):
        padding = width - length
        assert batch["attention_mask"][row].tolist() == [1] * length + [0] * padding
        assert batch["input_ids"][row, length:].tolist() == [crf_pipeline.tokenizer.pad_token_id] * padding
        assert batch["word_start_mask"][row, length:].tolist() == [0] * padding
        assert int(batch["word_start_mask"][row].sum()) == words[row]


@pytest.mark.parametrize("checkpoint", ["crf_checkpoint", "student_checkpoint"])
def test_left_padding_tokenizer(request, checkpoint):
    """A tokenizer that pads on the left must not shift the windows' positions (BERT) or break the BiLSTM."""
    from conftest import load_crf_pipeline

    pipe = load_crf_pipeline(request.getfixturevalue(checkpoint))
    texts = ["北京", TRICKY_TEXTS[0], LONG_TEXT[:100], "newyork 上海"]
    alone = [pipe(text, ignore_labels=[], batch_size=1) for text in texts]
    pipe.tokenizer.padding_side = "left"
    for got, expected in zip(pipe(texts, ignore_labels=[], batch_size=4), alone):
        assert [r["entity"] for r in got] == [r["entity"] for r in expected]
        assert_same_results(got, expected)


# ----------------------------------------------------------------------------------------------------------------
# Windows


def test_long_text_one_result_per_word(crf_pipeline, record_windows):
    results = crf_pipeline(LONG_TEXT, ignore_labels=[])
    assert len(record_windows) >= 10
    assert [r["index"] for r in results] == list(range(len(LONG_TEXT)))
    assert [(r["start"], r["end"], r["word"]) for r in results] == [(i, i + 1, c) for i, c in enumerate(LONG_TEXT)]
    assert all(0.0 < r["score"] <= 1.0 for r in results)
    assert all(length <= CRF_MAX_POSITIONS for _, length in record_windows)


@pytest.mark.parametrize("length, windows", [(62, 1), (63, 2)])
def test_window_boundary(crf_pipeline, record_windows, length, windows):
    results = crf_pipeline(LONG_TEXT[:length], ignore_labels=[])
    assert len(record_windows) == windows
    assert [r["start"] for r in results] == list(range(length))


def direct_viterbi(model, tokenizer, text):
    """Tags and marginal scores of the model's own forward pass on a text that fits in one window."""
    encoding = tokenizer(list(text), is_split_into_words=True, return_tensors="pt")
    word_ids = encoding.word_ids()
    starts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
    with torch.no_grad():
        output = model(**encoding)
        tags = output.predictions[0, starts]
        probs = model.crf.marginal_probabilities(output.logits[:, starts].float())[0]
    return tags.tolist(), probs.gather(1, tags.unsqueeze(1)).squeeze(1).tolist()


@pytest.mark.parametrize("text", [LONG_TEXT[:62], LONG_TEXT[100:130], TRICKY_TEXTS[0]])
def test_single_window_equals_direct_viterbi(crf_pipeline, text):
    results = crf_pipeline(text, ignore_labels=[])
    tags, scores = direct_viterbi(crf_pipeline.model, crf_pipeline.tokenizer, text)
    id2label = crf_pipeline.model.config.id2label
    assert [r["entity"] for r in results] == [id2label[t] for t in tags]
    assert [r["score"] for r in results] == pytest.approx(scores, abs=1e-5)


def manual_stitching(model, tokenizer, text, windows):
    """Tags and scores of a text of one-sub-token words split in `windows`: each word's emissions from the window
    where it lies farthest from an edge (ties: the earlier window), one Viterbi and forward-backward pass."""
    emissions = stitched_emissions(model, tokenizer, text, windows)
    with torch.no_grad():
        tags = torch.tensor(model.crf.decode(emissions)[0])
        probs = model.crf.marginal_probabilities(emissions)[0]
    return tags.tolist(), probs.gather(1, tags.unsqueeze(1)).squeeze(1).tolist()


def stitched_emissions(model, tokenizer, text, windows):
    """The emissions `(1, words, labels)` of `manual_stitching`."""
    ids = tokenizer(list(text), is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    logits = []
    with torch.no_grad():
        for start, end in windows:
            window_ids = torch.tensor([[tokenizer.cls_token_id, *ids[start:end], tokenizer.sep_token_id]])
            logits.append(model(input_ids=window_ids, attention_mask=torch.ones_like(window_ids)).logits[0, 1:-1])
        rows = []
        for word in range(len(text)):
            margins = [min(word - s, e - 1 - word) if s <= word < e else -1 for s, e in windows]
            best = margins.index(max(margins))
            assert margins[best] >= 0, f"word {word} in no window"
            rows.append(logits[best][word - windows[best][0]])
    return torch.stack(rows).unsqueeze(0).float()


WINDOW_OPTIONS = [
    {},
    {"stride": 0},
    {"stride": 5},
    {"stride": 31},
    {"max_length": 16},
    {"max_length": 16, "stride": 0},
]


@pytest.mark.parametrize(
    "options", WINDOW_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_long_text_equals_manual_stitching(crf_pipeline, record_windows, options):
    text = LONG_TEXT
    results = crf_pipeline(text, ignore_labels=[], **options)
    windows = [w for w, _ in record_windows]
    max_length = options.get("max_length", CRF_MAX_POSITIONS)
    budget = max_length - 2
    stride = options.get("stride", budget // 4)
    # Windows: in order, covering every word, at most `budget` words, consecutive ones sharing at most `stride`.
    assert windows[0][0] == 0 and windows[-1][1] == len(text)
    assert all(length <= max_length for _, length in record_windows)
    for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
        assert s0 < s1 <= e0 < e1
        assert e0 - s1 <= stride
        if stride == 0:
            assert s1 == e0
        else:
            assert e0 - s1 > 0
    assert all(0 < e - s <= budget for s, e in windows)
    # One result per word, equal to stitching by hand.
    assert [r["start"] for r in results] == list(range(len(text)))
    tags, scores = manual_stitching(crf_pipeline.model, crf_pipeline.tokenizer, text, windows)
    id2label = crf_pipeline.model.config.id2label
    assert [r["entity"] for r in results] == [id2label[t] for t in tags]
    assert [r["score"] for r in results] == pytest.approx(scores, abs=1e-5)


@pytest.mark.parametrize("seed", [3, 7, 11])
def test_long_text_scores_are_exact_marginals(crf_pipeline, record_windows, seed):
    """The score of each word is its tag's posterior under the stitched emissions: compare with float64."""
    text = cjk_text(300, seed=seed)
    results = crf_pipeline(text, ignore_labels=[])
    windows = [w for w, _ in record_windows]
    model, tokenizer = crf_pipeline.model, crf_pipeline.tokenizer
    ids = tokenizer(list(text), is_split_into_words=True, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        logits = [model(input_ids=torch.tensor([[cls, *ids[s:e], sep]])).logits[0, 1:-1] for s, e in windows]
        rows = []
        for word in range(len(text)):
            margins = [min(word - s, e - 1 - word) if s <= word < e else -1 for s, e in windows]
            best = margins.index(max(margins))
            rows.append(logits[best][word - windows[best][0]])
        emissions = torch.stack(rows).unsqueeze(0).double()
        exact = copy.deepcopy(model.crf).double().marginal_probabilities(emissions)[0]  # (words, labels)
    assert exact.sum(1).sub(1).abs().max() < 1e-9
    label2id = model.config.label2id
    expected = [float(exact[i, label2id[r["entity"]]]) for i, r in enumerate(results)]
    worst = max(range(len(results)), key=lambda i: abs(results[i]["score"] - expected[i]))
    assert results[worst]["score"] == pytest.approx(expected[worst], abs=1e-4), (
        f"word {worst}: score {results[worst]['score']}, exact marginal {expected[worst]}"
    )
    assert max(r["score"] for r in results) <= 1.0 + 1e-6


def mistake_probability(model, emissions):
    """1 - P(Viterbi path) of emissions `(1, words, labels)`, from the CRF directly."""
    mask = torch.ones(emissions.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        best = model.crf.viterbi_packed(emissions, mask)
        return 1.0 - model.crf.path_probability_packed(emissions, best, mask).item()


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_mistake_probability(crf_pipeline, record_windows, monkeypatch, temperature):
    """A text's mistake probability is 1 - P(its decoded path) under the stitched emissions at the CRF's
    path temperature, for a text in one window and one in many; its entities are the plain call's."""
    model, tokenizer = crf_pipeline.model, crf_pipeline.tokenizer
    monkeypatch.setattr(model.crf, "path_temperature", temperature)
    texts = [LONG_TEXT[:40], LONG_TEXT[:300]]
    answers = crf_pipeline(texts, aggregation_strategy="simple", return_mistake_probability=True)
    assert [a["entities"] for a in answers] == crf_pipeline(texts, aggregation_strategy="simple")
    windows = [w for w, _ in record_windows]
    for text, answer, text_windows in ((texts[0], answers[0], windows[:1]), (texts[1], answers[1], windows[1:])):
        expected = mistake_probability(model, stitched_emissions(model, tokenizer, text, text_windows))
        assert answer["mistake_probability"] == pytest.approx(expected, abs=1e-5)
        assert 0.0 < answer["mistake_probability"] <= 1.0
        words = crf_pipeline(text, ignore_labels=[])
        assert answer["expected_errors"] == pytest.approx(sum(1 - w["score"] for w in words), abs=1e-6)
        assert 0.0 < answer["expected_errors"] < len(text)
    assert len(windows) > 2


def test_mistake_probability_grows_with_the_temperature(crf_pipeline, monkeypatch):
    found = []
    for temperature in (0.5, 1.0, 4.0):
        monkeypatch.setattr(crf_pipeline.model.crf, "path_temperature", temperature)
        found.append(crf_pipeline(LONG_TEXT[:50], return_mistake_probability=True)["mistake_probability"])
    assert found == sorted(found) and found[0] < found[-1]


def test_mistake_probability_of_no_words(crf_pipeline):
    empty = {"entities": [], "mistake_probability": 0.0, "expected_errors": 0.0}
    assert crf_pipeline(" ", return_mistake_probability=True) == empty
    answer = crf_pipeline(["", "武汉"], return_mistake_probability=False)
    assert answer[0] == [] and isinstance(answer[1], list)


def test_window_options_change_windows(crf_pipeline, record_windows):
    found = []
    for options in WINDOW_OPTIONS:
        record_windows.clear()
        crf_pipeline(LONG_TEXT, **options)
        found.append(tuple(w for w, _ in record_windows))
    assert len(set(found)) == len(found), found


def test_word_longer_than_the_window(crf_pipeline):
    text = "北京 " + "1234567890" * 8 + " 上海"  # the number is 80 sub-tokens, more than a window holds
    assert len(crf_pipeline.tokenizer.tokenize("1234567890" * 8)) > CRF_MAX_POSITIONS
    for options in ({}, {"max_length": 16}):
        results = crf_pipeline(text, ignore_labels=[], **options)
        assert [r["word"] for r in results] == ["北", "京", "1234567890" * 8, "上", "海"]
        assert_exact_offsets(text, results)


def test_max_length_beyond_the_model_positions(crf_pipeline):
    """A max_length above max_position_embeddings must not crash inside the model: cap it, or say what is wrong."""
    try:
        results = crf_pipeline(LONG_TEXT[:300], max_length=2 * CRF_MAX_POSITIONS, ignore_labels=[])
    except ValueError as error:
        assert "max_length" in str(error)
    else:
        assert [r["start"] for r in results] == list(range(300))


# ----------------------------------------------------------------------------------------------------------------
# Scores, options and errors


def test_scores_are_probabilities(crf_pipeline):
    for text in TRICKY_TEXTS + LONG_TEXTS:
        for r in crf_pipeline(text, ignore_labels=[]):
            assert 0.0 < r["score"] <= 1.0 + 1e-6, r
        for e in crf_pipeline(text, aggregation_strategy="simple"):
            assert 0.0 < e["score"] <= 1.0 + 1e-6, e
            assert e["entity_group"] in ENTITY_TYPES


@pytest.mark.parametrize("strategy", ["bogus", "first", "max", "average"])
def test_unknown_aggregation_strategy(crf_pipeline, strategy):
    with pytest.raises(ValueError, match="aggregation_strategy"):
        crf_pipeline("武汉", aggregation_strategy=strategy)


def test_aggregation_strategy_case_insensitive(crf_pipeline):
    assert crf_pipeline(TRICKY_TEXTS[0], aggregation_strategy="SIMPLE") == crf_pipeline(
        TRICKY_TEXTS[0], aggregation_strategy="simple"
    )


def test_bad_options(crf_pipeline):
    with pytest.raises(ValueError, match="stride"):
        crf_pipeline("武汉", stride=-1)
    with pytest.raises(TypeError):
        crf_pipeline("武汉", bogus_option=1)


@pytest.mark.parametrize("text", ["", " ", "   \n\t", "\u3000", " \u3000 \n"])
def test_empty_and_whitespace(crf_pipeline, text):
    assert crf_pipeline(text) == []
    assert crf_pipeline(text, ignore_labels=[]) == []
    assert crf_pipeline(text, aggregation_strategy="simple") == []


def test_empty_and_whitespace_in_a_batch(crf_pipeline):
    results = crf_pipeline(["", "武汉", "  "], batch_size=2, ignore_labels=[])
    assert results[0] == [] and results[2] == [] and len(results[1]) == 2


def test_empty_word_list(crf_pipeline):
    assert crf_pipeline([], is_split_into_words=True) == []


def test_empty_list_of_texts(crf_pipeline):
    assert crf_pipeline([]) == []
    assert crf_pipeline([], batch_size=1, aggregation_strategy="simple") == []


@pytest.mark.parametrize("bad", ["ORG", "O", 5, ["O", 5], {"O": 1}])
def test_ignore_labels_must_be_a_list_of_labels(crf_pipeline, bad):
    with pytest.raises(ValueError, match="ignore_labels must be a list of labels"):
        crf_pipeline(TRICKY_TEXTS[0], ignore_labels=bad)


def test_ignore_labels_tuple(crf_pipeline):
    assert crf_pipeline(TRICKY_TEXTS[0], ignore_labels=("O",)) == crf_pipeline(TRICKY_TEXTS[0])


def test_lone_surrogate(crf_pipeline):
    with pytest.raises(ValueError, match=r"'\\ud800' at position 2 cannot be encoded"):
        crf_pipeline("北京\ud800上海")
    with pytest.raises(ValueError, match=r"'\\udfff' at position 3 "):  # the position in the joined text "北京 \udfff"
        crf_pipeline(["北京", "\udfff"], is_split_into_words=True)
    with pytest.raises(ValueError, match="position 0 "):
        crf_pipeline(["武汉", "\udc80x"], batch_size=2)


@pytest.mark.parametrize("options, bound", [({}, 31), ({"max_length": 16}, 7)], ids=["default", "max_length=16"])
def test_stride_at_most_half_a_window(crf_pipeline, record_windows, options, bound):
    text = LONG_TEXT[:200]
    budget = options.get("max_length", CRF_MAX_POSITIONS) - 2
    crf_pipeline(text, stride=bound, **options)
    # Each window brings at least half a window of new words: at most about twice the windows of no overlap.
    assert len(record_windows) <= 2 * (len(text) // budget + 1)
    for stride in (bound + 1, budget, 10**9):
        with pytest.raises(ValueError, match=f"stride must be at most half .* <= {bound}, got {stride}$"):
            crf_pipeline(text, stride=stride, **options)


@pytest.mark.parametrize(
    "option, value",
    [
        ("stride", "5"),
        ("stride", 2.0),
        ("stride", True),
        ("max_length", 16.0),
        ("max_length", "32"),
        ("is_split_into_words", "yes"),
        ("is_split_into_words", 1),
        ("delimiter", 5),
        ("batch_size", 0),
        ("batch_size", -2),
        ("batch_size", "8"),
        ("batch_size", 2.0),
        ("batch_size", True),
        ("return_mistake_probability", 1),
    ],
)
def test_option_types(crf_pipeline, option, value):
    with pytest.raises(ValueError, match=f"^{option} must be .*, got {value!r}$"):
        crf_pipeline("武汉", **{option: value})


def test_batch_size_at_construction(crf_pipeline):
    from pipeline_bert_crf import CrfTokenClassificationPipeline

    build = lambda **kwargs: CrfTokenClassificationPipeline(  # noqa: E731
        model=crf_pipeline.model, tokenizer=crf_pipeline.tokenizer, device="cpu", **kwargs
    )
    assert crf_pipeline._batch_size == 8
    assert build(batch_size=2)._batch_size == 2
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        build(batch_size=0)


@pytest.mark.parametrize("bad", [123, None, 4.5, b"bytes"])
def test_non_string_input(crf_pipeline, bad):
    with pytest.raises(ValueError, match="expected a string"):
        crf_pipeline(bad)


def test_pre_split_non_string_word(crf_pipeline):
    with pytest.raises(ValueError, match="list of words"):
        crf_pipeline(["北", 3], is_split_into_words=True)


@pytest.mark.parametrize("max_length", [None, 16])  # one window, and a text stitched from many
def test_dictionary_forces_and_forbids_spans(crf_pipeline, max_length):
    text = cjk_text(40, seed=3)
    options = {"aggregation_strategy": "simple"} | ({"max_length": max_length} if max_length else {})
    free = crf_pipeline(text, **options)
    assert free, "the tiny model should find some entity here"
    # Force a span the model does not tag as it stands, with the other type than it gives there.
    word = text[5:9]
    given = {e["entity_group"] for e in free if e["start"] < 9 and 5 < e["end"]}
    kind = "LOC" if "PER" in given else "PER"
    forced = crf_pipeline(text, dictionary={word: kind}, **options)
    assert (kind, 5, 9) in {(e["entity_group"], e["start"], e["end"]) for e in forced}
    assert forced != free
    # Forbid every entity the model found: none is left on those characters.
    forbid = {text[e["start"] : e["end"]]: "O" for e in free}
    cleared = crf_pipeline(text, dictionary=forbid, **options)
    assert not any(text[e["start"] : e["end"]] in forbid for e in cleared)
    assert crf_pipeline(text, dictionary={}, **options) == free


def test_dictionary_errors(crf_pipeline):
    with pytest.raises(
        ValueError, match=r"dictionary type 'GPE' is not one of the model's types \['LOC', 'O', 'ORG', 'PER'\]"
    ):
        crf_pipeline("张三", dictionary={"张三": "GPE"})
    with pytest.raises(ValueError, match=r"dictionary word '张三' has several types \['LOC', 'PER'\]: give one"):
        crf_pipeline("张三", dictionary=Lexicon([("张三", "PER"), ("张三", "LOC")]))
    with pytest.raises(ValueError, match="dictionary must map words to types"):
        crf_pipeline("张三", dictionary=["张三"])


def test_forcing_a_word_re_decodes_the_entity_it_cuts(lexicon_checkpoint):
    """On a trained model: a dictionary word that overlaps the end of a found entity cuts it; the entity's other
    characters are decoded again around the forced word (here: no longer the entity that was found), the rest of
    the sentence keeps its entities, and forbidding the entity removes it alone."""
    from conftest import load_crf_pipeline

    tag = load_crf_pipeline(lexicon_checkpoint)
    text = "张三在北京的华为公司工作。"

    def found(**options):
        return {(e["entity_group"], e["start"], e["end"]) for e in tag(text, aggregation_strategy="simple", **options)}

    free = found()
    kind, start, end = next(e for e in sorted(free, key=lambda e: e[1]) if e[2] - e[1] >= 2)
    other = "ORG" if kind != "ORG" else "PER"
    word = text[end - 1 : end + 1]
    assert text.count(word) == 1
    forced = found(dictionary={word: other})
    assert (other, end - 1, end + 1) in forced
    assert (kind, start, end) not in forced
    assert not any(s < end + 1 and e > end - 1 for _, s, e in forced - {(other, end - 1, end + 1)})
    assert {e for e in free if e[2] <= start or e[1] >= end + 1} <= forced | {(kind, start, end)}
    forbidden = found(dictionary={text[start:end]: "O"})
    assert forbidden == free - {(kind, start, end)}
