"""ONNX export and the torch-free runtime: parity with the PyTorch pipeline, INT8, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEMO_DIR, REPO_ROOT, load_crf_pipeline

pytest.importorskip("onnxruntime")

import export_onnx  # noqa: E402
import ner_data  # noqa: E402
from ner_onnx import OnnxNerTagger, marginals, viterbi  # noqa: E402


@pytest.fixture(scope="module")
def exported(crf_checkpoint, tmp_path_factory):
    return export_onnx.export(str(crf_checkpoint), str(tmp_path_factory.mktemp("onnx")), int8=True)


@pytest.fixture(scope="module")
def dev_texts():
    return ["".join(e["tokens"]) for e in ner_data.read_column_file(DEMO_DIR / "dev.txt")]


def _spans(entities):
    return [(e["entity_group"], e["start"], e["end"]) for e in entities]


def test_export_writes_the_serving_folder(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "crf.json", "tokenizer.json"} <= names
    meta = json.loads((exported / "crf.json").read_text())
    assert meta["labels"][0] == "O" and meta["tag_scheme"] == "BIO"
    assert len(meta["transitions"]) == len(meta["labels"])
    assert min(min(row) for row in meta["transition_penalty"]) < 0  # BIO constraints travel with the model
    assert (exported / "model.int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size


def test_fp32_matches_pytorch_on_every_dev_sentence(exported, crf_checkpoint, dev_texts):
    pipe = load_crf_pipeline(crf_checkpoint)
    tagger = OnnxNerTagger(exported)
    texts = dev_texts + ["".join(dev_texts[:12])]  # and one text longer than a window
    ours = tagger(texts, batch_size=16)
    reference = pipe(texts, aggregation_strategy="simple")
    assert any(ours)
    for text, got, want in zip(texts, ours, reference):
        assert _spans(got) == _spans(want), text
        for g, w in zip(got, want):
            assert g["word"] == text[g["start"] : g["end"]]
            assert g["score"] == pytest.approx(w["score"], abs=1e-3)


def test_int8_stays_close_to_fp32(exported, dev_texts):
    fp32 = OnnxNerTagger(exported)(dev_texts)
    int8 = OnnxNerTagger(exported, quantized=True)(dev_texts)
    gold = {(i, s) for i, ents in enumerate(fp32) for s in _spans(ents)}
    found = {(i, s) for i, ents in enumerate(int8) for s in _spans(ents)}
    assert gold, "the tiny model should tag something"
    f1 = 2 * len(gold & found) / (len(gold) + len(found))
    assert f1 >= 0.8  # a tiny random model is the worst case for quantization; the benchmark measures a real one


def test_pre_split_words_and_batches(exported):
    tagger = OnnxNerTagger(exported)
    words = list("武汉至上海") + ["\u3000"] + list("的航班")
    single = tagger(words, is_split_into_words=True)
    assert tagger([words, words], is_split_into_words=True) == [single, single]
    text = "".join(words)
    for e in single:
        assert e["word"] == text[e["start"] : e["end"]]
    assert tagger(["武汉", "上海"], batch_size=1) == [tagger("武汉"), tagger("上海")]


@pytest.mark.parametrize("text", ["", "   ", "\u3000", "\n"])
def test_empty_input_gives_no_entities(exported, text):
    assert OnnxNerTagger(exported)(text) == []


@pytest.mark.parametrize("bad", [5, None, 3.5, {"text": "武汉"}])
def test_non_text_input_is_a_clear_error(exported, bad):
    with pytest.raises(ValueError, match="expected a string"):
        OnnxNerTagger(exported)(bad)


def test_very_long_text_is_tagged_through_windows(exported, dev_texts):
    tagger = OnnxNerTagger(exported)
    text = "".join(dev_texts) * 3  # thousands of characters, dozens of windows
    entities = tagger(text)
    ends = [e["end"] for e in entities]
    assert entities and ends == sorted(ends)
    for e in entities:
        assert e["word"] == text[e["start"] : e["end"]]


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_onnx.py"):
        OnnxNerTagger(tmp_path)


def test_numpy_crf_matches_the_torch_crf():
    import numpy as np
    import torch

    from modeling_bert_crf import CRF

    crf = CRF(5, batch_first=True)
    emissions = torch.randn(1, 9, 5)
    mask = torch.ones(1, 9, dtype=torch.bool)
    args = [crf.start_transitions.detach().numpy(), crf.end_transitions.detach().numpy(), crf.transitions.detach().numpy()]
    assert viterbi(emissions[0].numpy(), *args) == crf.viterbi_packed(emissions, mask)[0].tolist()
    np.testing.assert_allclose(marginals(emissions[0].numpy(), *args), crf.marginals_packed(emissions, mask)[0].detach().numpy(), atol=1e-6)


def test_runtime_never_imports_torch(exported):
    code = (
        "import sys; from ner_onnx import OnnxNerTagger; "
        f"print(OnnxNerTagger({str(exported)!r})('武汉至上海')); assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _matmul_graph(path, weights):
    """x (batch, seq, in) -> x @ w1 -> @ w2 (the 'classifier'), saved to `path`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", weights[0].shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", weights[1].shape[1]])],
        [numpy_helper.from_array(w, name) for w, name in zip(weights, ("w1", "w2"))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_int8_scales_each_token_on_its_own(tmp_path):
    """Per-token activation scales: a token with huge activations leaves the others' precision alone; the last
    MatMul (the classifier) stays in fp32; the result is close to the float graph."""
    import onnx
    import onnxruntime

    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(16, 24)).astype(np.float32), rng.normal(size=(24, 5)).astype(np.float32)]
    _matmul_graph(tmp_path / "fp32.onnx", weights)
    export_onnx.quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert ops.count("MatMulInteger") == 1 and ops.count("MatMul") == 1 and ops[-1] == "MatMul"
    fp32 = onnxruntime.InferenceSession(str(tmp_path / "fp32.onnx"))
    int8 = onnxruntime.InferenceSession(str(tmp_path / "int8.onnx"))
    x = rng.normal(size=(2, 6, 16)).astype(np.float32)
    want, got = fp32.run(None, {"x": x})[0], int8.run(None, {"x": x})[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    outlier = x.copy()
    outlier[0, 3] *= 1000.0  # one token far outside the others' range
    got_outlier = int8.run(None, {"x": outlier})[0]
    others = np.ones((2, 6), dtype=bool)
    others[0, 3] = False
    assert np.array_equal(got_outlier[others], got[others])
