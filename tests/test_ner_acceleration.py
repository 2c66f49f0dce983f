"""Tagging in reduced precision and compiled (ner_acceleration.py and the pipeline's `precision` and `compile`)."""

from __future__ import annotations

import json

import pytest
import torch
from torch._dynamo.testing import CompileCounter

import ner_acceleration
from conftest import load_crf_pipeline
from ner_acceleration import AUTO_MIN_SPEEDUP, CompiledEmissions, bf16_hardware, choose_dtype


TEXTS = [
    "受台风影响，武汉至上海的航班今天全部取消。",
    "北京",
    "张三在华为公司工作，他住在深圳。" * 3,
    "我",
    "2024年AI大会在北京举行, Apple CEO Tim Cook",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "precision.json"
    monkeypatch.setenv("BERT_CRF_CACHE", str(path))
    return path


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()  # the emissions' code is shared with other tests' compiled models
    yield
    torch._dynamo.reset()


def spans(results):
    return [[(e["entity_group"], e["start"], e["end"]) for e in entities] for entities in results]


# ----------------------------------------------------------------------------------------------------------------
# Choosing the dtype


def test_named_precisions_need_no_measurement(crf_pipeline, cache):
    model, cpu = crf_pipeline.model, torch.device("cpu")
    assert choose_dtype("float32", model, cpu, measure=None) == torch.float32
    assert choose_dtype("bfloat16", model, cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of .* got 'fp8'"):
        choose_dtype("fp8", model, cpu)
    assert not cache.exists()


def test_auto_is_float32_without_bf16_hardware(crf_pipeline, cache, monkeypatch):
    """Where bf16 is emulated (several times slower), "auto" neither measures nor leaves float32."""
    monkeypatch.setattr(ner_acceleration, "bf16_hardware", lambda device: False)
    measured = []
    dtype = choose_dtype("auto", crf_pipeline.model, torch.device("cpu"), lambda m, d: measured.append(1) or 9.0)
    assert dtype == torch.float32 and not measured and not cache.exists()


@pytest.mark.parametrize("speedup, expected", [(2.5, torch.bfloat16), (AUTO_MIN_SPEEDUP - 0.01, torch.float32)])
def test_auto_measures_once_then_reads_the_cache(crf_pipeline, cache, monkeypatch, speedup, expected):
    monkeypatch.setattr(ner_acceleration, "bf16_hardware", lambda device: True)
    measured = []

    def measure(model, device):
        measured.append(device)
        return speedup

    for _ in range(2):
        assert choose_dtype("auto", crf_pipeline.model, torch.device("cpu"), measure) == expected
    assert len(measured) == 1
    [(key, value)] = json.loads(cache.read_text(encoding="utf-8")).items()
    assert value == speedup and torch.__version__ in key


def test_an_unreadable_cache_is_measured_again(crf_pipeline, cache, monkeypatch):
    monkeypatch.setattr(ner_acceleration, "bf16_hardware", lambda device: True)
    cache.parent.mkdir()
    cache.write_text("{not json", encoding="utf-8")
    assert choose_dtype("auto", crf_pipeline.model, torch.device("cpu"), lambda m, d: 3.0) == torch.bfloat16
    assert list(json.loads(cache.read_text(encoding="utf-8")).values()) == [3.0]


def test_the_measurement_runs_both_precisions(crf_pipeline):
    speedup = ner_acceleration.measure_bf16_speedup(crf_pipeline.model, torch.device("cpu"), batch=2, length=16)
    assert speedup > 0
    assert crf_pipeline.model.dtype == torch.float32  # measured on a copy


@pytest.mark.parametrize(
    "flags, amx, expected",
    [
        ({"avx2"}, False, False),
        ({"avx2", "avx512_bf16"}, False, True),
        ({"amx_bf16"}, False, True),
        (set(), True, True),
    ],
)
def test_bf16_hardware_reads_the_cpu(monkeypatch, flags, amx, expected):
    monkeypatch.setattr(ner_acceleration, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert bf16_hardware(torch.device("cpu")) is expected
    assert bf16_hardware(torch.device("meta")) is False


# ----------------------------------------------------------------------------------------------------------------
# The pipeline in bf16


@pytest.mark.parametrize("fixture", ["crf_checkpoint", "lexicon_checkpoint", "student_checkpoint"])
def test_bf16_pipeline_decodes_its_emissions_in_float32(request, fixture, monkeypatch):
    """precision="bfloat16" halves every weight but the CRF's; the encoder's bf16 scores reach the CRF as float32,
    and a model that is confident keeps its entities."""
    folder = request.getfixturevalue(fixture)
    low = load_crf_pipeline(folder, precision="bfloat16")
    model = low.model
    assert {p.dtype for n, p in model.named_parameters() if not n.startswith("crf.")} == {torch.bfloat16}
    assert {p.dtype for p in model.crf.parameters()} == {torch.float32}
    seen = []
    emissions, viterbi = model.emissions, type(model.crf).viterbi_packed
    monkeypatch.setattr(
        model, "emissions", lambda **inputs: seen.append(emissions(**inputs).dtype) or emissions(**inputs)
    )
    monkeypatch.setattr(low, "_emissions", model.emissions)
    monkeypatch.setattr(
        type(model.crf), "viterbi_packed", lambda crf, e, m: seen.append(e.dtype) or viterbi(crf, e, m)
    )
    for words in low(TEXTS, ignore_labels=[]):
        assert words and all(0.0 <= w["score"] <= 1.0 for w in words)
    assert set(seen) == {torch.bfloat16, torch.float32} and seen[:2] == [torch.bfloat16, torch.float32]
    if fixture == "lexicon_checkpoint":  # trained: its entities survive bf16 rounding
        high = load_crf_pipeline(folder)
        got = spans(low(TEXTS, aggregation_strategy="simple"))
        assert got == spans(high(TEXTS, aggregation_strategy="simple")) and any(got)


def test_precision_float32_brings_a_bf16_model_back(crf_checkpoint):
    pipe = load_crf_pipeline(crf_checkpoint, precision="bfloat16")
    from pipeline_bert_crf import CrfTokenClassificationPipeline

    again = CrfTokenClassificationPipeline(
        model=pipe.model, tokenizer=pipe.tokenizer, task="token-classification", device="cpu", precision="float32"
    )
    assert {p.dtype for p in again.model.parameters()} == {torch.float32}


# ----------------------------------------------------------------------------------------------------------------
# Compiled


def test_compiled_pipeline_compiles_twice_then_never(crf_checkpoint, fresh_dynamo):
    """Lengths are bucketed and the batch and length dimensions dynamic: one graph for a batch of one row, one for
    several, and no recompilation for any other length or batch size after that."""
    counter = CompileCounter()
    pipe = load_crf_pipeline(crf_checkpoint, compile=counter)
    eager = load_crf_pipeline(crf_checkpoint)
    pipe(TEXTS[0])  # warm-up: one row
    pipe(TEXTS[:3], batch_size=3)  # warm-up: several rows
    assert counter.frame_count == 2
    lengths_seen = set()
    for batch_size in (1, 2, 5, 4):
        got = pipe(TEXTS, batch_size=batch_size, aggregation_strategy="simple")
        want = eager(TEXTS, batch_size=batch_size, aggregation_strategy="simple")
        assert spans(got) == spans(want)
        for g, w in zip(got, want):
            assert [e["score"] for e in g] == pytest.approx([e["score"] for e in w], abs=1e-5)
        lengths_seen.add(batch_size)
    long_text = "武汉" * 300  # windows of the model's full length
    assert spans([pipe(long_text, aggregation_strategy="simple")]) == spans(
        [eager(long_text, aggregation_strategy="simple")]
    )
    assert counter.frame_count == 2, "recompiled after warm-up"


def test_compiled_emissions_pad_to_the_bucket_and_cut_back(crf_pipeline, fresh_dynamo):
    seen = []
    model = crf_pipeline.model

    def backend(graph, example_inputs):
        return graph.forward

    compiled = CompiledEmissions(model, backend)
    original = compiled._compiled
    compiled._compiled = lambda **inputs: seen.append(inputs["input_ids"].shape) or original(**inputs)
    ids = torch.randint(5, 50, (3, 21))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    out = compiled(ids, mask)
    assert seen == [torch.Size([3, 32])] and out.shape[:2] == (3, 21)
    with torch.no_grad():
        want = model.emissions(input_ids=ids, attention_mask=mask)
    assert torch.allclose(out, want, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_bf16_pipeline_tags_like_eager(lexicon_checkpoint, fresh_dynamo):
    """The real compiler, in bf16: the entities of the eager bf16 pipeline."""
    pipe = load_crf_pipeline(lexicon_checkpoint, precision="bfloat16", compile=True)
    eager = load_crf_pipeline(lexicon_checkpoint, precision="bfloat16")
    assert spans(pipe(TEXTS, batch_size=5, aggregation_strategy="simple")) == spans(
        eager(TEXTS, batch_size=5, aggregation_strategy="simple")
    )
