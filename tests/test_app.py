"""app.py, the Gradio demo: `predict` and `main` in process; then one server, a run_ner.py output folder's own
app.py started with `python -I` in a copy of the folder, through its HTTP API (gradio_client) and its page in
headless Chromium."""

from __future__ import annotations

import json
import random
import re
import shutil
import urllib.request
from types import SimpleNamespace

import pytest


gr = pytest.importorskip("gradio", reason="gradio not installed: pip install -r requirements-app.txt")

import app  # noqa: E402
import run_ner  # noqa: E402
from app_browser import SENTENCE, AppServer, missing_browser, open_browser, submit  # noqa: E402
from bertcrf import model_card, outputs  # noqa: E402
from conftest import CRF_LABELS, CRF_MAX_POSITIONS, REPO_ROOT, demo_characters  # noqa: E402


_RNG = random.Random(7)
_HAN = [c for c in demo_characters() if "\u4e00" <= c <= "\u9fff"]
# Several windows of the tiny checkpoint (62 sub-tokens each, one per character).
LONG_TEXT = "".join(_RNG.choice(_HAN) for _ in range(300))
WINDOW = CRF_MAX_POSITIONS - 2
TEXTS = [SENTENCE, "2024年ＡＩ大会在北京举行, Apple CEO Tim Cook", LONG_TEXT]
WIDGET_TEXT = "李娜退役以后很少回洛阳了。"


def without_scores(entities):
    return [{k: v for k, v in e.items() if k != "score"} for e in entities]


def assert_same_entities(got, expected):
    """Equal entities; scores to float precision (a server runs one thread, the test process more)."""
    assert without_scores(got) == without_scores(expected)
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def table_rows(entities):
    return [[e["word"], e["entity_group"], round(e["score"], 4), e["start"], e["end"]] for e in entities]


@pytest.fixture(scope="module")
def served(crf_checkpoint):
    """app.py serving the tiny CRF checkpoint in this process, as `main` sets it up."""
    ner = app.load_pipeline(str(crf_checkpoint), "cpu")
    app.set_pipeline(ner)
    yield ner
    app.set_pipeline(None)


@pytest.fixture(scope="module")
def space_folder(crf_checkpoint, crf_pipeline, tmp_path_factory):
    """A run_ner.py output folder (the checkpoint, then what save_outputs and write_model_card add after training),
    and a copy of it elsewhere, its card given widget examples."""
    run = tmp_path_factory.mktemp("run") / "tiny-crf"
    shutil.copytree(crf_checkpoint, run)
    trainer = SimpleNamespace(
        is_world_process_zero=lambda: True, save_metrics=lambda *args, **kwargs: None, model=crf_pipeline.model
    )
    training_args = SimpleNamespace(do_train=True, output_dir=str(run))
    outputs.save_outputs(trainer, crf_pipeline.tokenizer, training_args, {}, with_handler=True)
    model_args, data_args, card_args = run_ner.parse_args(
        ["--model_name_or_path", "bert-base-chinese", "--train_file", "train.txt", "--output_dir", str(run)]
        + ["--do_train", "True", "--report_to", "none"]
    )
    model_card.write_model_card(str(run), model_args, data_args, card_args, CRF_LABELS, {}, "BIO")
    space = tmp_path_factory.mktemp("elsewhere") / "space"
    shutil.copytree(run, space)
    card = (space / "README.md").read_text(encoding="utf-8")
    widget = f"widget:\n  - text: {json.dumps(WIDGET_TEXT, ensure_ascii=False)}\n"
    (space / "README.md").write_text(card.replace("---\n", "---\n" + widget, 1), encoding="utf-8")
    return run, space


@pytest.fixture(scope="module", autouse=True)
def server(space_folder, tmp_path_factory):
    """The output folder's app.py, run inside the folder's copy without PYTHONPATH (the repository off sys.path),
    shared by the module's server tests; it starts with the module, so it boots while the in-process tests run."""
    import torch

    _, space = space_folder
    started = AppServer(space / "app.py", [], space, tmp_path_factory.mktemp("app_log") / "app.log", isolated=True)
    # One thread here meanwhile: torch's threads spinning against the booting server cost both many times over.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield started
    torch.set_num_threads(threads)
    started.stop()


def client_of(url):
    from gradio_client import Client

    return Client(url, verbose=False)


# ----------------------------------------------------------------------------------------------------------------
# In process


def test_predict_gives_the_pipelines_entities(served, crf_pipeline):
    for text in TEXTS:
        expected = crf_pipeline(text, aggregation_strategy="simple")
        highlighted, rows = app.predict(text)
        assert highlighted == {"text": text, "entities": expected}
        assert rows == table_rows(expected)
        assert app.entities(text) == expected
    found = app.entities(LONG_TEXT)
    assert len(LONG_TEXT) > 2 * WINDOW
    assert any(e["start"] >= 2 * WINDOW for e in found), "entities beyond the first windows"
    assert all(LONG_TEXT[e["start"] : e["end"]] == e["word"] for e in found)
    assert app.entity_types(served) == ["PER", "LOC", "ORG"]


def test_a_distilled_student_serves_too(student_checkpoint, monkeypatch):
    """distill.py's output folders get app.py too: a BiLSTM-CRF loads by its auto_map, with the repository's code."""
    from conftest import load_crf_pipeline

    ner = app.load_pipeline(str(student_checkpoint), "cpu")
    assert type(ner.model).__name__ == "BiLstmCrfForTokenClassification"
    monkeypatch.setitem(app._state, "ner", ner)
    assert app.entities(LONG_TEXT) == load_crf_pipeline(student_checkpoint)(LONG_TEXT, aggregation_strategy="simple")


def test_predict_refuses_what_it_cannot_tag(served, monkeypatch):
    assert app.predict("") == ({"text": "", "entities": []}, [])
    assert app.predict("  \u3000") == ({"text": "  \u3000", "entities": []}, [])
    monkeypatch.setitem(app._state, "max_chars", 20)
    with pytest.raises(gr.Error, match="21 characters, more than this demo's limit of 20"):
        app.predict("张" * 21)
    with pytest.raises(gr.Error, match="lone surrogate"):
        app.predict("张\ud800")


def test_a_model_without_crf_gets_the_stock_pipeline(served, tmp_path, monkeypatch):
    """A `--head softmax` folder: transformers' own pipeline, long texts through its strided windows."""
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from conftest import TINY_CHECKPOINT_BERT, write_bert_vocab_tokenizer

    vocab_size = write_bert_vocab_tokenizer(tmp_path)
    config = BertConfig(
        vocab_size=vocab_size, id2label=dict(enumerate(CRF_LABELS)), pad_token_id=0, **TINY_CHECKPOINT_BERT
    )
    BertForTokenClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tmp_path).save_pretrained(tmp_path)
    ner = app.load_pipeline(str(tmp_path), "cpu")
    assert not hasattr(ner.model, "crf")
    monkeypatch.setitem(app._state, "ner", ner)
    found = app.entities(LONG_TEXT)
    assert found and len(found) == len(ner(LONG_TEXT))
    assert all(LONG_TEXT[e["start"] : e["end"]] == e["word"] for e in found)
    assert any(e["start"] >= 2 * WINDOW for e in found), "the stock pipeline's windows cover the whole text"


def test_card_examples(tmp_path):
    (tmp_path / "README.md").write_text(
        "---\nlanguage: zh\nwidget:\n  - text: \"张三在'北京'。\"\n  - example_title: 2\n    text: '它''s 上海'\n"
        "tags:\n  - text: not an example\n---\n# card\nwidget:\n  - text: not in the front matter\n",
        encoding="utf-8",
    )
    assert app.card_examples(str(tmp_path)) == ["张三在'北京'。", "它's 上海"]
    assert app.model_title(str(tmp_path)) == tmp_path.name
    (tmp_path / "README.md").write_text('---\nmodel-index:\n  - name: "someone/zh-ner"\n---\n', encoding="utf-8")
    assert app.model_title(str(tmp_path)) == "someone/zh-ner"
    (tmp_path / "README.md").write_text("# no front matter\n", encoding="utf-8")
    assert app.card_examples(str(tmp_path)) == []
    assert app.card_examples(str(tmp_path / "missing")) == []
    assert app.card_figures(str(tmp_path)) == "" and app.card_figures(str(tmp_path / "missing")) == ""


def test_card_figures_show_every_evaluation(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n<!-- evaluation -->\n<!-- /evaluation -->\n")
    model_card.add_card_results(tmp_path, "MSRA test (news)", "levow/msra_ner", "test", {"f1": 0.8612, "ece": 0.031})
    model_card.add_card_results(tmp_path, "everyday sentences", "everyday", "test", {"f1": 0.7})
    assert app.card_figures(str(tmp_path)).splitlines() == [
        "Measured (model card):",
        "- MSRA test (news) (test): entity F1 86.1, score calibration error (ECE) 0.031",
        "- everyday sentences (test): entity F1 70.0",
    ]


def test_a_missing_model_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(app, "DEFAULT_MODEL", str(tmp_path / "outputs" / "demo"))
    with pytest.raises(SystemExit, match=r"does not exist: run `make demo` first"):
        app.main([])
    (tmp_path / "outputs" / "demo").mkdir(parents=True)  # an interrupted `make demo`
    with pytest.raises(SystemExit, match=r"outputs/demo holds no model: run `make demo` first"):
        app.main(["--model", str(tmp_path / "outputs" / "demo")])
    with pytest.raises(SystemExit, match="holds no config.json"):
        app.main(["--model", str(tmp_path)])
    with pytest.raises(SystemExit, match="is not a model folder"):
        app.main(["--model", "./no/such/folder"])
    with pytest.raises(SystemExit):
        app.main(["--model", str(tmp_path), "--max_chars", "0"])
    assert "--max_chars must be a positive integer" in capsys.readouterr().err


AUTO_MAP_MISTAKES = [
    (
        "AutoModelForTokenClassification",
        "configuration_bert_crf.BertCrfConfig",
        "a configuration class: expected a model",
    ),
    (
        "AutoModelForTokenClassification",
        "pipeline_bert_crf.CrfTokenClassificationPipeline",
        "a class that is neither a model nor a configuration \\(bases: ChunkPipeline, Pipeline, .*\\): expected a model",
    ),
    ("AutoModelForTokenClassification", "modeling_bert_crf.NoSuchModel", "which modeling_bert_crf.py beside app.py"),
    ("AutoModelForTokenClassification", "ner_tags.OUTSIDE", "a str, not a class: expected a model class"),
    ("AutoModelForTokenClassification", "modeling_bert_crf", 'expected "module.Class" naming a model class'),
    (
        "AutoModelForTokenClassification",
        ["modeling_bert_crf.BertCrfForTokenClassification"],
        'expected "module.Class"',
    ),
    ("AutoModelForTokenClassification", "modeling_bert_crf.BertModel", "needs a model with a CRF, got BertModel"),
    ("AutoConfig", "modeling_bert_crf.BertCrfForTokenClassification", "a model class: expected a configuration class"),
]


@pytest.mark.parametrize(
    "key, reference, message",
    AUTO_MAP_MISTAKES,
    ids=[m[1] if isinstance(m[1], str) else "list" for m in AUTO_MAP_MISTAKES],
)
def test_an_auto_map_that_names_no_model(crf_checkpoint, tmp_path, key, reference, message):
    """A folder whose config.json maps a class to something of another kind: which file, which key, what was
    expected, and no traceback."""
    folder = tmp_path / "model"
    shutil.copytree(crf_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"][key] = reference
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    expected = re.escape(f'app.py: {folder}/config.json: auto_map["{key}"] is {reference!r}') + f"[:,] .*{message}"
    with pytest.raises(SystemExit, match=expected):
        app.main(["--model", str(folder)])


def test_an_auto_map_that_is_no_object(crf_checkpoint, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(crf_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = ["modeling_bert_crf.BertCrfForTokenClassification"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(
        SystemExit, match=re.escape(f"app.py: {folder}/config.json: auto_map is [") + ".*expected an object"
    ):
        app.main(["--model", str(folder)])


def test_the_demo_is_bounded_as_the_handler(served, monkeypatch):
    """The text box's whole text is one request, bounded as handler.py bounds a request's characters: the page says
    so under the box, and one tagging runs at a time, whichever event or API call asked for it."""
    import handler

    assert app.DEFAULT_MAX_CHARS == handler.DEFAULT_LIMITS["max_request_chars"]
    assert app.parse_args([]).max_chars == app.DEFAULT_MAX_CHARS
    monkeypatch.setitem(app._state, "max_chars", 1234)
    demo = app.build_demo(served, "tiny")
    (box,) = [block for block in demo.blocks.values() if isinstance(block, gr.Textbox)]
    assert box.info == "At most 1,234 characters in all (--max_chars)"
    tagging = [f for f in demo.fns.values() if f.fn in (app.predict, app.entities)]
    assert len(tagging) == 4  # the button, the text box's Enter, the examples and /entities
    assert {f.concurrency_id for f in tagging} == {"ner"}
    with pytest.raises(
        gr.Error,
        match=r"The text has 1235 characters, more than this demo's limit of 1234 \(start it with --max_chars",
    ):
        app.predict("张" * 1235)
    app.predict("张" * 1234)


def test_main_serves_the_model_it_is_given(crf_checkpoint, crf_pipeline, monkeypatch, capsys):
    """In the repository: `python app.py --model FOLDER --host --port` loads FOLDER with the repository's code and
    launches on that address; without --host, Gradio's GRADIO_SERVER_NAME (a Space's 0.0.0.0) or 127.0.0.1."""
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.update(options, blocks=self))
    monkeypatch.setattr(app, "_state", dict(app._state))  # main's pipeline stays in this test
    app.main(["--model", str(crf_checkpoint), "--host", "127.0.0.1", "--port", "7999", "--max_chars", "500"])
    assert {k: launched[k] for k in ("server_name", "server_port", "share")} == {
        "server_name": "127.0.0.1",
        "server_port": 7999,
        "share": False,
    }
    assert (
        f"Serving {crf_checkpoint} with CrfTokenClassificationPipeline from {REPO_ROOT}\n" in capsys.readouterr().out
    )
    assert app._state["max_chars"] == 500
    assert app.entities(SENTENCE) == crf_pipeline(SENTENCE, aggregation_strategy="simple")
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert app.parse_args([]).host == "127.0.0.1" and app.parse_args([]).port is None
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert app.parse_args([]).host == "0.0.0.0"


# ----------------------------------------------------------------------------------------------------------------
# A server: the output folder's app.py


def test_http_api(server, crf_pipeline):
    client = client_of(server.wait_ready())
    for text in TEXTS:
        expected = crf_pipeline(text, aggregation_strategy="simple")
        assert_same_entities(client.predict(text, api_name="/entities"), expected)
        tokens, table = client.predict(text, api_name="/predict")
        assert "".join(t["token"] for t in tokens) == text
        assert [(t["token"], t["class_or_confidence"]) for t in tokens if t["class_or_confidence"]] == [
            (e["word"], e["entity_group"]) for e in expected
        ]
        assert table["headers"] == app.TABLE_HEADERS
        assert [row[:2] + row[3:] for row in table["data"]] == [row[:2] + row[3:] for row in table_rows(expected)]
        assert [row[2] for row in table["data"]] == pytest.approx([e["score"] for e in expected], abs=1e-4)
    assert any(e["start"] >= 2 * WINDOW for e in client.predict(LONG_TEXT, api_name="/entities"))
    with pytest.raises(Exception, match="more than this demo's limit of 10000"):
        client.predict("张" * 10_001, api_name="/entities")


@pytest.fixture
def browser_reason():
    reason = missing_browser()
    if reason:
        pytest.skip(reason)


def test_page_in_headless_chromium(browser_reason, server, crf_pipeline, tmp_path):
    from selenium.webdriver.common.by import By

    url = server.wait_ready()
    expected = [[e["word"], e["entity_group"]] for e in crf_pipeline(SENTENCE, aggregation_strategy="simple")]
    assert expected, "the tiny checkpoint finds entities in the sentence"
    screenshot = tmp_path / "demo.png"
    driver = open_browser(1200, 900)
    try:
        found = submit(driver, url, SENTENCE, expected)
        table = driver.find_element(By.ID, "scores").text
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    print(f"screenshot: {screenshot}")
    assert found == expected
    for word, _ in expected:
        assert word in table
    assert screenshot.stat().st_size > 10_000


def test_output_folder_serves_its_own_model(space_folder, server, crf_pipeline):
    run, space = space_folder
    names = {p.name for p in run.iterdir()}
    assert {"app.py", "requirements.txt", "handler.py", "config.json", "pipeline_bert_crf.py"} <= names
    assert {"modeling_bert_crf.py", "configuration_bert_crf.py", "ner_tags.py", "model.safetensors"} <= names
    assert (run / "app.py").read_bytes() == (REPO_ROOT / "app.py").read_bytes()
    requirements = (run / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert [re.split(r"[<>=!~ ]", r)[0] for r in requirements if r and not r.startswith("#")] == [
        "torch",
        "transformers",
        "gradio",
    ]
    assert "`python app.py`" in (run / "README.md").read_text(encoding="utf-8")

    url = server.wait_ready()
    # The folder's own model and its own pipeline code: the copy beside app.py, not the repository's.
    assert re.search(
        rf"Serving \S+ with CrfTokenClassificationPipeline from {re.escape(str(space.resolve()))}\n",
        server.output(),
    ), server.output()
    client = client_of(url)
    for text in (SENTENCE, LONG_TEXT):
        assert_same_entities(
            client.predict(text, api_name="/entities"), crf_pipeline(text, aggregation_strategy="simple")
        )
    # The card's widget examples come first among the examples to click.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "config", timeout=30) as response:
        config = response.read().decode("utf-8")
    assert WIDGET_TEXT in config and app.EXAMPLES[0] in config
    assert "## tiny-crf\n" in json.loads(config)["components"][0]["props"]["value"], "named as its card names it"
    assert config.index(WIDGET_TEXT) < config.index(app.EXAMPLES[0])


def test_dictionary_is_forced_on_every_text(crf_checkpoint, tmp_path):
    ner = app.load_pipeline(str(crf_checkpoint), "cpu")
    path = tmp_path / "dict.tsv"
    path.write_text(f"{SENTENCE[:4]}\tPER\n\n", encoding="utf-8")
    try:
        app.set_pipeline(ner, dictionary=app.read_dictionary(str(path)))
        found = app.entities(SENTENCE)
        assert ("PER", 0, 4) in {(e["entity_group"], e["start"], e["end"]) for e in found}
        with pytest.raises(ValueError, match="dictionary type 'GPE' is not one of the model's types"):
            app.set_pipeline(ner, dictionary={"北京": "GPE"})
    finally:
        app.set_pipeline(None)
    path.write_text("北京\tLOC\n上海 LOC\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dict.tsv:2: expected word<TAB>TYPE, found '上海 LOC'"):
        app.read_dictionary(str(path))
    path.write_text("北京\tLOC\n北京\tORG\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dict.tsv:2: '北京' is LOC on an earlier line"):
        app.read_dictionary(str(path))


def test_a_lexicon_model_serves_with_its_lexicon(lexicon_checkpoint):
    from conftest import load_crf_pipeline

    ner = app.load_pipeline(str(lexicon_checkpoint), "cpu")
    assert ner.model.lexicon is not None and len(ner.model.lexicon) > 10
    expected = load_crf_pipeline(lexicon_checkpoint)
    app.set_pipeline(ner)
    try:
        for text in TEXTS:
            assert app.entities(text) == expected(text, aggregation_strategy="simple")
    finally:
        app.set_pipeline(None)
