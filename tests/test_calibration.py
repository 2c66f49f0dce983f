"""Entity confidence: ECE by hand, the fitted temperature, and the temperature applied alike by every runtime."""

import itertools
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bertcrf import calibration
from conftest import load_crf_pipeline


def test_ece_by_hand():
    scores = np.array([0.95, 0.95, 0.15, 0.15, 1.0])
    right = np.array([True, False, False, False, True])
    # bin 9: scores .95 .95 1.0 (mean .9667), 2 of 3 right; bin 1: .15 .15, none right
    expected = 3 / 5 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3) + 2 / 5 * abs(0.0 - 0.15)
    assert calibration.expected_calibration_error(scores, right) == pytest.approx(expected)
    assert calibration.expected_calibration_error(np.array([]), np.array([], dtype=bool)) == 0.0
    assert [count for _, _, count in calibration.reliability(scores, right)] == [2, 3]


def test_entity_confidences_score_type_and_span():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], None]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-PER"]]
    word_scores = [[0.9, 0.7, 0.99, 0.6], [0.5]]
    scores, right = calibration.entity_confidences(gold, predicted, word_scores, "BIO")
    assert scores.tolist() == pytest.approx([0.8, 0.6])  # the unlabelled sentence is skipped
    assert right.tolist() == [True, False]


def test_fit_temperature_recovers_the_one_that_makes_scores_honest():
    # Entities right with probability p; the model reports p ** (1 / t_true), too confident for t_true > 1 ...
    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 0.99, 20000)
    right = rng.uniform(size=p.size) < p
    t_true = 2.5

    def confidences_at(t):
        return p ** (t_true / t), right  # ... and at temperature t_true exactly p

    fitted = calibration.fit_temperature(confidences_at)
    assert fitted == pytest.approx(t_true, rel=0.05)
    assert calibration.expected_calibration_error(*confidences_at(fitted)) < 0.01
    assert calibration.expected_calibration_error(*confidences_at(1.0)) > 0.1


def test_temperature_scales_marginals_not_tags():
    from modeling_crf import CRF

    torch.manual_seed(0)
    crf = CRF(5, batch_first=True)
    emissions, mask = torch.randn(3, 7, 5) * 3, torch.ones(3, 7, dtype=torch.bool)
    tags = crf.viterbi_packed(emissions, mask)
    sharp = crf.marginals_packed(emissions, mask)
    crf.temperature = 2.0
    assert torch.equal(crf.viterbi_packed(emissions, mask), tags)
    soft = crf.marginals_packed(emissions, mask)
    crf.temperature = 1.0
    with torch.no_grad():
        for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
            p /= 2
    assert torch.allclose(crf.marginals_packed(emissions / 2, mask), soft, atol=1e-6)
    assert not torch.allclose(soft, sharp, atol=1e-3)


@pytest.mark.parametrize("name", ["confidence_temperature", "mistake_temperature"])
@pytest.mark.parametrize("bad", [0, -1.0, "2", True])
def test_config_refuses_a_bad_temperature(make_config, name, bad):
    with pytest.raises(ValueError, match=f"{name} must be a positive number"):
        make_config(**{name: bad})


class _Tagger(torch.nn.Module):
    """What fit_mistake_temperature reads of a model: its CRF and config."""

    def __init__(self, crf):
        super().__init__()
        self.crf = crf
        self.config = SimpleNamespace(allowed_transitions=lambda: (None, None, None), mistake_temperature=1.0)


def test_fit_mistake_temperature_recovers_the_true_one():
    """Gold paths drawn from the CRF at temperature 2 (all 16 paths of 2 tags and length 4, each "B-X" an entity of
    its own, so paths and entity sets correspond): the texts' mistake probabilities are calibrated near 2."""
    from bertcrf.training import fit_mistake_temperature
    from modeling_crf import CRF

    torch.manual_seed(0)
    crf = CRF(2, batch_first=True)
    rng = np.random.default_rng(0)
    paths = torch.tensor(list(itertools.product(range(2), repeat=4)))
    labels = ["O", "B-X"]
    emissions, gold, predicted = [], [], []
    mask = torch.ones(len(paths), 4, dtype=torch.bool)
    for _ in range(1500):
        em = torch.from_numpy(rng.normal(0, 2, (4, 2)).astype(np.float32))
        crf.path_temperature = 2.0
        with torch.no_grad():
            truth = crf.path_probability_packed(em.expand(len(paths), -1, -1), paths, mask).double().numpy()
            best = crf.viterbi_packed(em.unsqueeze(0), mask[:1])[0]
        drawn = paths[rng.choice(len(paths), p=truth / truth.sum())]
        emissions.append(em.numpy())
        gold.append([labels[t] for t in drawn])
        predicted.append([labels[t] for t in best])
    metrics = SimpleNamespace(
        split=SimpleNamespace(examples=[{"tags": g} for g in gold]),
        last_emissions=emissions,
        last_predictions=predicted,
        scheme="BIO",
    )
    model = _Tagger(crf)
    result = fit_mistake_temperature(model, metrics)
    assert 1.6 < result["mistake_temperature"] < 2.5
    assert model.config.mistake_temperature == result["mistake_temperature"] == model.crf.path_temperature
    assert result["eval_mistake_ece"] < 0.04 < result["eval_mistake_ece_uncalibrated"]


@pytest.fixture(scope="module")
def warm_checkpoint(crf_checkpoint, tmp_path_factory):
    """The tiny CRF checkpoint with a confidence temperature of 2.5 in its config.json."""
    folder = tmp_path_factory.mktemp("warm")
    shutil.copytree(crf_checkpoint, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config["confidence_temperature"] = 2.5
    (folder / "config.json").write_text(json.dumps(config))
    return folder


TEXTS = ["张伟在北京大学工作", "李娜去了上海", "中国科学院和清华大学"]


def _scores(entities):
    return [(e["entity_group"], e["start"], e["end"], round(e["score"], 4)) for e in entities]


def test_every_runtime_applies_the_stored_temperature(crf_checkpoint, warm_checkpoint, tmp_path):
    export_onnx = pytest.importorskip("export_onnx")
    from ner_onnx import OnnxNerTagger

    cold = load_crf_pipeline(crf_checkpoint)(TEXTS, aggregation_strategy="simple")
    warm_pipe = load_crf_pipeline(warm_checkpoint)
    assert warm_pipe.model.crf.temperature == 2.5
    warm = warm_pipe(TEXTS, aggregation_strategy="simple")
    assert [[s[:3] for s in _scores(e)] for e in warm] == [[s[:3] for s in _scores(e)] for e in cold]  # same tags
    assert any(w["score"] < c["score"] - 0.01 for ws, cs in zip(warm, cold) for w, c in zip(ws, cs))
    folder = export_onnx.export(str(warm_checkpoint), str(tmp_path / "onnx"))
    assert json.loads((folder / "crf.json").read_text())["temperature"] == 2.5
    tagger = OnnxNerTagger(folder)
    in_graph = tagger(TEXTS)
    numpy_path = tagger(["".join(TEXTS * 12)])  # longer than a window: stitched, scored in numpy
    long_reference = warm_pipe(["".join(TEXTS * 12)], aggregation_strategy="simple")
    for got, want in zip(in_graph + numpy_path, warm + long_reference):
        assert [s[:3] for s in _scores(got)] == [s[:3] for s in _scores(want)]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=2e-4)


def test_the_endpoint_handler_and_tag_py_apply_it(warm_checkpoint, tmp_path, monkeypatch):
    import handler
    import tag

    reference = load_crf_pipeline(warm_checkpoint)(TEXTS, aggregation_strategy="simple")
    served = handler.EndpointHandler(str(warm_checkpoint))(
        {"inputs": TEXTS, "parameters": {"aggregation_strategy": "simple"}}
    )
    assert [_scores(e) for e in served] == [_scores(e) for e in reference]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tag.main(
        [
            "--model",
            str(warm_checkpoint),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--no_progress",
        ]
    )
    tagged = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    got = [[round(e["score"], 4) for e in record["entities"]] for record in tagged]
    assert got == [[round(e["score"], 4) for e in entities] for entities in reference]
