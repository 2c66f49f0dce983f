"""Folders saved by an earlier main keep loading, tagging identically and exporting.

tests/fixtures/legacy.tar.gz holds what main wrote at commit 2e43258 (before the layout of issue 33): a run_ner.py output
folder of a BERT-CRF with lexicon features, a scalar mix and a confidence temperature; a RoBERTa-CRF output folder;
a BiLSTM-CRF student saved with save_pretrained; the ONNX export of the first; and, in expected.json, what each
tagged then (every token's tag and score, and the entities). See tests/fixtures/README.md.
"""

import json
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO_ROOT


ARCHIVE = REPO_ROOT / "tests" / "fixtures" / "legacy.tar.gz"
CHECKPOINTS = ["bert_crf", "roberta_crf", "bilstm_crf"]
with tarfile.open(ARCHIVE) as _archive:
    EXPECTED = json.load(_archive.extractfile("legacy/expected.json"))
TEXTS = EXPECTED["texts"]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """The folders, unpacked (an archive: their code is what travelled then, kept out of ruff and the scans)."""
    folder = tmp_path_factory.mktemp("legacy")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(folder, filter="data")
    return folder / "legacy"


def _same(got, expected):
    """Tags, words and offsets equal; scores within 1e-4 (expected.json keeps 5 decimals)."""
    assert len(got) == len(expected)
    for got_text, expected_text in zip(got, expected):
        assert [{k: v for k, v in e.items() if k != "score"} for e in got_text] == [
            {k: v for k, v in e.items() if k != "score"} for e in expected_text
        ]
        assert [float(e["score"]) for e in got_text] == pytest.approx([e["score"] for e in expected_text], abs=1e-4)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_this_repos_classes_tag_a_saved_folder_as_it_did(legacy, name):
    from bertcrf import crf_models

    pipe = crf_models.load_crf_pipeline(str(legacy / name), device="cpu")
    _same(pipe(TEXTS, ignore_labels=[]), EXPECTED[name])
    _same(pipe(TEXTS, aggregation_strategy="simple"), EXPECTED[f"{name}_simple"])


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_a_saved_folder_loads_with_its_own_remote_code(legacy, name):
    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(legacy / name), trust_remote_code=True, device="cpu")
    _same(pipe(TEXTS, ignore_labels=[]), EXPECTED[name])


def test_a_saved_folder_exports_to_onnx_and_tags_as_its_old_export(legacy, tmp_path):
    pytest.importorskip("onnxruntime")
    import export_onnx
    from ner_onnx import OnnxNerTagger

    folder = export_onnx.export(str(legacy / "bert_crf"), str(tmp_path / "onnx"))
    _same(OnnxNerTagger(folder)(TEXTS), EXPECTED["bert_crf_onnx"])


def test_this_repos_onnx_runtime_reads_an_old_export(legacy):
    pytest.importorskip("onnxruntime")
    from ner_onnx import OnnxNerTagger

    _same(OnnxNerTagger(legacy / "bert_crf_onnx")(TEXTS), EXPECTED["bert_crf_onnx"])


def test_tag_py_and_the_handler_read_a_saved_folder(legacy, tmp_path):
    from handler import EndpointHandler

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "tagged.jsonl"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "tag.py"), "--model", str(legacy / "bert_crf")]
    subprocess.run([*command, "--input", str(source), "--output", str(output), "--no_progress"], check=True)
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    _same([r["entities"] for r in records], EXPECTED["bert_crf_simple"])
    handler = EndpointHandler(str(legacy / "bert_crf"))
    _same(handler({"inputs": TEXTS}), EXPECTED["bert_crf_simple"])
