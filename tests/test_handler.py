"""handler.EndpointHandler: the Inference Endpoints entry point over a bert-crf checkpoint (remote-code pipeline)."""

from __future__ import annotations

import pytest

import handler

TEXTS = ["受台风影响，武汉至上海的航班今天全部取消。", "2024年ＡＩ大会在北京举行, Apple CEO Tim Cook", "北京\u3000上海"]


@pytest.fixture(scope="module")
def endpoint(crf_checkpoint):
    return handler.EndpointHandler(str(crf_checkpoint))


def assert_same(got, expected, tol=1e-5):
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected):
        assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in e.items() if k != "score"}
        assert g["score"] == pytest.approx(e["score"], abs=tol)


def test_pipeline_is_the_crf_pipeline(endpoint):
    assert type(endpoint.pipeline).__name__ == "BertCrfTokenClassificationPipeline"
    assert hasattr(endpoint.pipeline.model, "crf")


def test_string_defaults_to_simple(endpoint, crf_pipeline):
    for text in TEXTS:
        result = endpoint({"inputs": text})
        assert_same(result, crf_pipeline(text, aggregation_strategy="simple"))
        for e in result:
            assert set(e) == {"entity_group", "score", "word", "start", "end"}
            assert text[e["start"] : e["end"]] == e["word"]
    assert any(endpoint({"inputs": text}) for text in TEXTS)


def test_parameters_pass_through(endpoint, crf_pipeline):
    parameters = {"aggregation_strategy": "none", "ignore_labels": []}
    data = {"inputs": TEXTS[0], "parameters": parameters}
    result = endpoint(data)
    assert_same(result, crf_pipeline(TEXTS[0], ignore_labels=[]))
    assert len(result) == len(TEXTS[0])
    assert parameters == {"aggregation_strategy": "none", "ignore_labels": []}  # the caller's dict is not changed
    assert endpoint({"inputs": TEXTS[0], "parameters": None}) == endpoint({"inputs": TEXTS[0]})
    assert endpoint({"inputs": TEXTS[0], "parameters": {"stride": 2, "max_length": 8}})  # window options accepted


def test_list_of_strings_gives_list_of_lists(endpoint):
    result = endpoint({"inputs": TEXTS})
    assert isinstance(result, list) and len(result) == len(TEXTS)
    for text, entities in zip(TEXTS, result):
        assert entities == endpoint({"inputs": text})
    assert endpoint({"inputs": []}) == []
    assert endpoint({"inputs": ["", "  "]}) == [[], []]


def test_pre_split_words(endpoint, crf_pipeline):
    words = ["武", "汉", "\u3000", "至", "上", "海"]
    params = {"is_split_into_words": True, "aggregation_strategy": "none", "ignore_labels": []}
    one = endpoint({"inputs": words, "parameters": params})
    assert [w["word"] for w in one] == words
    assert_same(one, crf_pipeline(words, is_split_into_words=True, ignore_labels=[]))
    batch = endpoint({"inputs": [words, ["北", "京"]], "parameters": params})
    assert len(batch) == 2 and batch[0] == one and [w["word"] for w in batch[1]] == ["北", "京"]


@pytest.mark.parametrize(
    "payload",
    ["武汉", ["武汉"], None, {}, {"input": "武汉"}, {"inputs": 5}, {"inputs": None}, {"inputs": {"text": "武汉"}}, {"inputs": ["武汉", 5]}],
    ids=["string", "list", "none", "empty", "wrong-key", "int", "null-inputs", "dict-inputs", "non-string-item"],
)
def test_bad_payload(endpoint, payload):
    with pytest.raises(ValueError):
        endpoint(payload)


@pytest.mark.parametrize("parameters", [5, ["aggregation_strategy"]], ids=["int", "list"])
def test_parameters_not_an_object(endpoint, parameters):
    with pytest.raises(ValueError):
        endpoint({"inputs": "武汉", "parameters": parameters})


def test_bad_parameter_value(endpoint):
    with pytest.raises(ValueError, match="aggregation_strategy"):
        endpoint({"inputs": "武汉", "parameters": {"aggregation_strategy": "bogus"}})
