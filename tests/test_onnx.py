"""ONNX export and the torch-free runtime: parity with the PyTorch pipeline, INT8, bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEMO_DIR, REPO_ROOT, load_crf_pipeline


pytest.importorskip("onnxruntime")

import export_onnx  # noqa: E402
from bertcrf import ner_data, shipping  # noqa: E402
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


def test_dictionary_as_the_pytorch_pipeline(exported, crf_checkpoint, dev_texts):
    pipe = load_crf_pipeline(crf_checkpoint)
    tagger = OnnxNerTagger(exported)
    texts = dev_texts[:20] + ["".join(dev_texts[:12])]  # and one text longer than a window
    free = pipe(texts, aggregation_strategy="simple")
    # Forbid the first entity of each text, force its first four characters as a person: both change the output.
    dictionary = {text[e["start"] : e["end"]]: "O" for text, found in zip(texts, free) for e in found[:1]}
    dictionary.update({text[:4]: "PER" for text in texts if text[:4] not in dictionary})
    ours = tagger(texts, batch_size=16, dictionary=dictionary)
    reference = pipe(texts, aggregation_strategy="simple", dictionary=dictionary)
    assert [_spans(r) for r in reference] != [_spans(f) for f in free]
    for text, got, want in zip(texts, ours, reference):
        assert _spans(got) == _spans(want), text
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-3)
    with pytest.raises(ValueError, match="dictionary type 'GPE' is not one of the model's types"):
        tagger(texts[0], dictionary={"北京": "GPE"})


def _decode_in_numpy(tagger, logits, starts):
    """Each row's tags and marginals from the graph's logits, by the numpy CRF (the emissions-only path)."""
    rows = []
    for row, positions in zip(logits, starts):
        emissions = row[positions[positions >= 0]]
        path = viterbi(emissions, tagger.start, tagger.end, tagger.transitions)
        probs = marginals(emissions, tagger.start, tagger.end, tagger.transitions)
        rows.append((path, [probs[i, t] for i, t in enumerate(path)]))
    return rows


@pytest.mark.parametrize("quantized", [False, True])
def test_graph_decodes_as_the_numpy_crf_on_ragged_batches(exported, quantized):
    tagger = OnnxNerTagger(exported, quantized=quantized)
    assert [o.name for o in tagger.session.get_outputs()] == ["logits", "tags", "scores"]
    rng = np.random.default_rng(0)
    for width, batch in [(2, 1), (3, 4), (17, 3), (40, 2)]:
        ids = rng.integers(5, 100, size=(batch, width))
        mask = np.ones((batch, width), dtype=np.int64)
        mask[-1, max(1, width // 2) :] = 0  # a shorter row
        ids[mask == 0] = tagger.pad_id
        # Words at some positions only (sub-tokens between), a one-word row, and -1 past each row's words.
        starts = np.full((batch, width), -1, dtype=np.int64)
        for r in range(batch):
            length = int(mask[r].sum())
            chosen = np.sort(rng.choice(length, size=1 if r == 0 else rng.integers(1, length + 1), replace=False))
            starts[r, : len(chosen)] = chosen
        starts = starts[:, : max(1, int((starts >= 0).sum(1).max()))]
        logits, tags, scores = tagger.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "word_starts": starts}
        )
        for r, (path, probs) in enumerate(_decode_in_numpy(tagger, logits, starts)):
            n = len(path)
            assert tags[r, :n].tolist() == path and (tags[r, n:] == -1).all()
            np.testing.assert_allclose(scores[r, :n], probs, atol=1e-5)
            assert (scores[r, n:] == 0).all()


def test_one_window_texts_are_decoded_by_the_graph(exported, dev_texts, monkeypatch):
    import ner_onnx

    tagger = OnnxNerTagger(exported)
    expected = tagger(dev_texts[:20])

    def no_numpy(*args):
        raise AssertionError("decoded in numpy")

    monkeypatch.setattr(ner_onnx, "viterbi", no_numpy)
    assert tagger(dev_texts[:20]) == expected
    with pytest.raises(AssertionError, match="numpy"):  # a long text's stitched windows are
        tagger("".join(dev_texts[:12]))


def test_emissions_only_export_tags_the_same(crf_checkpoint, exported, dev_texts, tmp_path):
    folder = export_onnx.export(str(crf_checkpoint), str(tmp_path / "emissions"), emissions_only=True)
    tagger = OnnxNerTagger(folder)
    assert [i.name for i in tagger.session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in tagger.session.get_outputs()] == ["logits"]
    texts = dev_texts + ["".join(dev_texts[:12])]
    for got, want in zip(tagger(texts), OnnxNerTagger(exported)(texts)):
        assert _spans(got) == _spans(want)
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


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


@pytest.mark.parametrize("stride", [None, 0, 5])
def test_pipeline_and_runtime_plan_the_same_windows(exported, crf_checkpoint, dev_texts, stride):
    # Both plan with ner_windows.plan_windows: the same text gives the same words, ids and chain positions.
    pipe = load_crf_pipeline(crf_checkpoint)
    tagger = OnnxNerTagger(exported)
    words = list("".join(dev_texts[:12])) + ["\u3000", "\u200b"] + list("武汉至上海")  # long, with untokenizable words
    for text, split in (("".join(dev_texts[:12]), False), (words, True), (dev_texts[0], False)):
        chunks = list(pipe.preprocess(text, stride=stride, is_split_into_words=split))
        prepared = tagger._prepare(text, split, stride)
        assert prepared["spans"] == chunks[0]["chunk"].spans
        assert len(prepared["windows"]) == len(chunks) > (1 if len(prepared["spans"]) > 100 else 0)
        for window, chunk in zip(prepared["windows"], chunks):
            assert (window.start, window.end) == chunk["chunk"].window
            assert window.input_ids == chunk["input_ids"][0].tolist()
            assert window.chain == chunk["word_start_mask"][0].nonzero().flatten().tolist()


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


@pytest.mark.parametrize("text", ["张三\ud800", "\udc00张三"])
def test_lone_surrogate_is_a_clear_error(exported, text):
    tagger = OnnxNerTagger(exported)
    position = text.index(next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF))
    with pytest.raises(ValueError, match=rf"lone surrogate\) at position {position}\b"):
        tagger(text)
    with pytest.raises(ValueError, match=rf"text 1 .* at position {position}\b"):
        tagger(["武汉", text])
    with pytest.raises(ValueError, match=rf"at position {position}\b"):
        tagger(list(text), is_split_into_words=True)


def test_no_texts_give_no_results(exported):
    assert OnnxNerTagger(exported)([]) == []


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
    args = [t.detach().numpy() for t in (crf.start_transitions, crf.end_transitions, crf.transitions)]
    assert viterbi(emissions[0].numpy(), *args) == crf.viterbi_packed(emissions, mask)[0].tolist()
    expected = crf.marginals_packed(emissions, mask)[0].detach().numpy()
    np.testing.assert_allclose(marginals(emissions[0].numpy(), *args), expected, atol=1e-6)


def test_export_folder_serves_without_the_repo(exported, omp_env):
    """The folder carries its runtime: with the repo off sys.path (-I drops PYTHONPATH and the script folder),
    `from ner_onnx import OnnxNerTagger` run in the folder finds the copies and tags like the repo's runtime."""
    assert {*shipping.onnx_runtime_code(), "README.md"} <= {p.name for p in exported.iterdir()}
    assert "pip install onnxruntime tokenizers numpy" in (exported / "README.md").read_text(encoding="utf-8")
    code = (
        "import json, sys; sys.path.insert(0, '.')\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('export_onnx') is None, 'the repo is importable'\n"
        "from ner_onnx import OnnxNerTagger\n"
        "import ner_onnx, ner_windows\n"
        "print(json.dumps([ner_onnx.__file__, ner_windows.__file__, OnnxNerTagger('.')('武汉至上海的航班')]))\n"
    )
    env = {k: v for k, v in omp_env.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=exported, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    runtime, utils, entities = json.loads(result.stdout.splitlines()[-1])
    assert {os.path.dirname(runtime), os.path.dirname(utils)} == {str(exported)}
    assert entities == json.loads(json.dumps(OnnxNerTagger(exported)("武汉至上海的航班")))


def test_export_runs_no_code_from_the_model_folder(crf_checkpoint, exported, tmp_path):
    """A tokenizer_config.json whose auto_map names a .py in the folder must not get that file imported."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(crf_checkpoint, folder)
    marker = tmp_path / "remote_code_ran"
    (folder / "evil_tokenizer.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertTokenizerFast\n\n\nclass EvilTokenizer(BertTokenizerFast):\n    pass\n",
        encoding="utf-8",
    )
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", "evil_tokenizer.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    out = export_onnx.export(str(folder), str(tmp_path / "onnx"), emissions_only=True)  # the quicker graph
    assert not marker.exists(), "export ran code from the model folder"
    # The same entities; scores agree to float32 rounding (numpy's marginals here, the graph's there).
    got, want = OnnxNerTagger(out)("武汉至上海"), OnnxNerTagger(exported)("武汉至上海")
    assert [{**e, "score": round(e["score"], 5)} for e in got] == [{**e, "score": round(e["score"], 5)} for e in want]


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
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", weights[0].shape[0]])],
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
    # 0.014 here; 0.144 on an AVX2 CPU when 8-bit weights saturated the int16 pair sums of the u8s8 kernel
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    outlier = x.copy()
    outlier[0, 3] *= 1000.0  # one token far outside the others' range
    got_outlier = int8.run(None, {"x": outlier})[0]
    others = np.ones((2, 6), dtype=bool)
    others[0, 3] = False
    assert np.array_equal(got_outlier[others], got[others])


def _int8_reference(path, x):
    """What the quantized 2-MatMul graph at `path` computes for `x`, in numpy with exact integer products: its
    per-token uint8 activations and int8 weights (read from the graph), int32 accumulation, its scales, then the
    last MatMul in fp32. Also returns the integer operands."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    x_scale = np.maximum(np.abs(x).max(-1, keepdims=True), inits["q_eps"]) / inits["q_max"]
    x_q = (np.round(x / x_scale) + inits["q_shift"]).astype(np.uint8)
    w_q = inits["w1_int8"]
    acc = (x_q.astype(np.int64) - int(inits["q_zero_point"])) @ w_q.astype(np.int64)  # exact
    h = (acc.astype(np.float32) * x_scale) * inits["w1_scale"]
    return h @ inits["w2"], x_q, w_q


def test_int8_weights_cannot_saturate_int16_pair_sums(exported):
    """Static, CPU-independent: without VNNI (AVX2, AVX-512BW), ONNX Runtime's u8s8 kernels add each pair of
    uint8 x int8 products into a saturating int16, so every MatMulInteger must keep 2 * 255 * max|w| <= 32767 and
    take uint8 activations around zero point 128."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = onnx.load(str(exported / "model.int8.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    produced_by = {out: node for node in graph.node for out in node.output}
    integer_nodes = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert integer_nodes
    for node in integer_nodes:
        activations, weight, zero_point = node.input[0], node.input[1], node.input[2]
        cast = produced_by[activations]
        assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.UINT8  # values <= 255
        assert numpy_helper.to_array(inits[zero_point]).tolist() == 128
        w = numpy_helper.to_array(inits[weight])
        assert w.dtype == np.int8 and 2 * 255 * int(np.abs(w.astype(np.int32)).max()) <= 32767, weight
    # The activations are symmetric around the zero point: round(x / (max|x| / 127)) + 128 is in [1, 255].
    shifts = {n.input[1] for n in graph.node if n.op_type == "Add" and n.output[0].endswith("_q_shifted")}
    divisors = {n.input[1] for n in graph.node if n.op_type == "Div" and n.output[0].endswith("_q_scale")}
    assert [numpy_helper.to_array(inits[s]).tolist() for s in shifts] == [128.0]
    assert [numpy_helper.to_array(inits[d]).tolist() for d in divisors] == [127.0]


def test_int8_is_exact_where_int16_pair_sums_would_saturate(tmp_path):
    """The case that saturates the u8s8 kernels of CPUs without VNNI: tokens at the top of the uint8 range against
    full-scale weights of one sign. ONNX Runtime must give the exact integer result on this CPU, whatever it is."""
    import onnxruntime

    rng = np.random.default_rng(0)
    w1 = np.stack([np.full(64, 2.0), np.full(64, -2.0), np.tile([3.0, -3.0], 32), rng.normal(size=64)], 1)
    w1 = w1.astype(np.float32)  # (64, 4): all positive, all negative, alternating, random
    w2 = rng.normal(size=(4, 3)).astype(np.float32)
    _matmul_graph(tmp_path / "fp32.onnx", [w1, w2])
    export_onnx.quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    x = np.stack([np.full(64, 5.0), np.full(64, -5.0), np.abs(rng.normal(size=64)) + 4.0, rng.normal(size=64)])
    x = x[None].astype(np.float32)  # (1, 4, 64): top of the range, bottom, large and positive, ordinary
    want, x_q, w_q = _int8_reference(tmp_path / "int8.onnx", x)
    # The worst case is really there: 255 next to 255 against full-scale weights of one sign next to each other.
    assert x_q[0, 0].min() == 255 and np.abs(w_q[:, :2]).min() == np.abs(w_q).max()
    options = dict(providers=["CPUExecutionProvider"])
    got = onnxruntime.InferenceSession(str(tmp_path / "int8.onnx"), **options).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    fp32 = onnxruntime.InferenceSession(str(tmp_path / "fp32.onnx"), **options).run(None, {"x": x})[0]
    assert np.abs(got - fp32).max() < 0.02 * np.abs(fp32).max()


# ----------------------------------------------------------------------------------------------------------------
# Nothing lost in the output folder


def _model_copy(crf_checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(crf_checkpoint, folder)
    (folder / "README.md").write_text("---\nmodel-index: [...]\n---\n# my model card\n", encoding="utf-8")
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["same", "parent"])
def test_export_refuses_the_model_folder(crf_checkpoint, tmp_path, where):
    folder = _model_copy(crf_checkpoint, tmp_path)
    before = _snapshot(tmp_path)
    output = folder if where == "same" else tmp_path
    with pytest.raises(ValueError, match="--output .*(is the model folder|holds the model folder).*onnx"):
        export_onnx.main(["--model", str(folder), "--output", str(output)])
    assert _snapshot(tmp_path) == before  # the model card and everything else untouched, nothing added


def test_export_refuses_files_it_did_not_write(crf_checkpoint, tmp_path):
    folder = _model_copy(crf_checkpoint, tmp_path)
    output = tmp_path / "served"
    output.mkdir()
    (output / "README.md").write_text("# my card", encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds README.md, which an export did not write"):
        export_onnx.main(["--model", str(folder), "--output", str(output)])
    assert (output / "README.md").read_text(encoding="utf-8") == "# my card"
    # A subfolder of the model (how Hub repositories ship ONNX), or a folder with unrelated files, is fine.
    assert export_onnx.check_output(str(folder), folder / "onnx") == {}
    (output / "README.md").unlink()
    (output / ".gitattributes").write_text("*.onnx filter=lfs\n", encoding="utf-8")
    assert export_onnx.check_output(str(folder), output) == {}


def test_a_missing_model_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        export_onnx.main(["--model", str(tmp_path / "missing"), "--output", str(tmp_path / "new" / "onnx")])
    assert list(tmp_path.iterdir()) == []


def test_export_lists_its_files_and_a_reexport_refreshes_only_those(exported, tmp_path):
    import shutil

    meta = json.loads((exported / "crf.json").read_text(encoding="utf-8"))
    written = meta[export_onnx.MANIFEST_KEY]
    assert set(written) == {p.name for p in exported.iterdir() if p.is_file()} - {"crf.json"}
    assert written["model.onnx"] == export_onnx.sha256(exported / "model.onnx")
    # A later export (here a stand-in without model.int8.onnx) into that folder: its files replace the earlier
    # export's, the earlier export's int8 graph goes, a file the user added stays.
    out = tmp_path / "served"
    shutil.copytree(exported, out)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert set(export_onnx.check_output("elsewhere", out)) == set(written) | {"crf.json"}
    staging = tmp_path / "staging"
    staging.mkdir()
    new_files = {"model.onnx": b"new graph", "README.md": b"new card", "tokenizer.json": b"{}"}
    for name, data in new_files.items():
        (staging / name).write_bytes(data)
    (staging / "crf.json").write_text(json.dumps({export_onnx.MANIFEST_KEY: {}}), encoding="utf-8")
    export_onnx.publish(staging, out, "elsewhere")
    assert not staging.exists() and not (out / "model.int8.onnx").exists() and (out / "notes.txt").is_file()
    assert all((out / name).read_bytes() == data for name, data in new_files.items())
    # A file of the export changed by hand since is not overwritten.
    shutil.rmtree(out)
    shutil.copytree(exported, out)
    (out / "README.md").write_text("# edited by hand", encoding="utf-8")
    with pytest.raises(ValueError, match="README.md changed since an export wrote them"):
        export_onnx.check_output("elsewhere", out)


def test_a_missing_model_is_named_on_the_command_line(tmp_path, capsys):
    from bertcrf import cli

    with pytest.raises(SystemExit) as info:
        cli.run(export_onnx.main, ["--model", "/nonexistent", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "/nonexistent: no such folder" in err and "Repo id must" not in err
    assert not (tmp_path / "o").exists()


def test_truncation_in_tokenizer_json_drops_nothing(exported, dev_texts, tmp_path):
    from tokenizers import Tokenizer

    folder = tmp_path / "truncating"
    shutil.copytree(exported, folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(16)  # as MiniLM's tokenizer.json has (128)
    tokenizer.save(str(folder / "tokenizer.json"))
    text = "".join(dev_texts[:6])
    tagger = OnnxNerTagger(folder)
    assert tagger._prepare(text, False, None)["spans"][-1][1] == len(text.rstrip())
    assert _spans(tagger(text)) == _spans(OnnxNerTagger(exported)(text))


def test_serve_py_serves_an_export_through_the_handlers_checks(exported, crf_checkpoint, dev_texts):
    """scripts/serve.py's handler for an export folder (bertcrf/serving.py): ONNX Runtime behind handler.py's checks
    and limits; the parameters its tagger does not take are refused by name."""
    serving = pytest.importorskip("bertcrf.serving", reason="ray[serve] is not installed (requirements-serve.txt)")

    onnx = serving.load_handler(serving.Settings(str(exported), int8=True, limits={"max_items": 4}))
    assert isinstance(onnx, serving.OnnxHandler)
    # Against the INT8 tagger itself: INT8 kernels differ between CPUs, the handler must not.
    assert onnx({"inputs": dev_texts[0]}) == OnnxNerTagger(exported, quantized=True)(dev_texts[0])
    with pytest.raises(ValueError, match=r"\['max_length'\] are not supported by an ONNX"):
        onnx({"inputs": dev_texts[0], "parameters": {"max_length": 32}})
    with pytest.raises(ValueError, match="more than the limit of 4"):
        onnx({"inputs": dev_texts[:5]})
    with pytest.raises(ValueError, match="--int8 needs an ONNX folder"):
        serving.load_handler(serving.Settings(str(crf_checkpoint), int8=True))
