"""handler.EndpointHandler: the Inference Endpoints entry point over a bert-crf checkpoint (remote-code pipeline)."""

from __future__ import annotations

import re

import pytest

import handler
from conftest import CRF_MAX_POSITIONS


TEXTS = [
    "受台风影响，武汉至上海的航班今天全部取消。",
    "2024年ＡＩ大会在北京举行, Apple CEO Tim Cook",
    "北京\u3000上海",
]


@pytest.fixture(scope="module")
def endpoint(crf_checkpoint):
    return handler.EndpointHandler(str(crf_checkpoint))


def assert_same(got, expected, tol=1e-5):
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected):
        assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in e.items() if k != "score"}
        assert g["score"] == pytest.approx(e["score"], abs=tol)


def test_pipeline_is_the_crf_pipeline(endpoint):
    assert type(endpoint.pipeline).__name__ == "CrfTokenClassificationPipeline"
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
    assert endpoint({"inputs": TEXTS[0], "parameters": {"stride": 2, "max_length": 16}})  # window options accepted


def test_list_of_strings_gives_list_of_lists(endpoint):
    result = endpoint({"inputs": TEXTS})
    assert isinstance(result, list) and len(result) == len(TEXTS)
    for text, entities in zip(TEXTS, result):
        assert_same(entities, endpoint({"inputs": text}))  # padding in a batch moves scores in the last digits
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
    [
        "武汉",
        ["武汉"],
        None,
        {},
        {"input": "武汉"},
        {"inputs": 5},
        {"inputs": None},
        {"inputs": {"text": "武汉"}},
        {"inputs": ["武汉", 5]},
    ],
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


def test_unknown_parameter(endpoint):
    with pytest.raises(
        ValueError, match=r"^unknown parameters \['bogus', 'top_k'\]; expected some of \['aggregation_strategy'"
    ):
        endpoint({"inputs": "武汉", "parameters": {"top_k": 3, "bogus": 1, "stride": 2}})


BAD_PARAMETERS = [
    ("aggregation_strategy", None),
    ("aggregation_strategy", 5),
    ("aggregation_strategy", "first"),
    ("is_split_into_words", "yes"),
    ("is_split_into_words", 1),
    ("is_split_into_words", None),
    ("stride", -1),
    ("stride", "2"),
    ("stride", 2.5),
    ("stride", True),
    ("stride", None),
    ("max_length", 3),
    ("max_length", 15),
    ("max_length", 65),
    ("max_length", 10**6),
    ("max_length", "64"),
    ("max_length", 32.0),
    ("ignore_labels", "ORG"),
    ("ignore_labels", [1]),
    ("ignore_labels", {"O": 1}),
    ("ignore_labels", None),
    ("batch_size", 0),
    ("batch_size", "8"),
    ("batch_size", True),
    ("batch_size", 2.0),
    ("batch_size", None),
    ("delimiter", 5),
    ("delimiter", ["-"]),
    ("delimiter", None),
]


@pytest.mark.parametrize("name, value", BAD_PARAMETERS, ids=[f"{n}={v!r}" for n, v in BAD_PARAMETERS])
def test_bad_parameter_type_or_range(endpoint, name, value):
    with pytest.raises(
        ValueError, match=f'^"{name}" must be .*, got {value!r:.20}'.replace("[", r"\[").replace("(", r"\(")
    ):
        endpoint({"inputs": "武汉", "parameters": {name: value}})


@pytest.mark.parametrize("stride, max_length", [(10**9, None), (32, None), (62, None), (8, 16)])
def test_stride_of_a_window_or_more(endpoint, stride, max_length):
    parameters = {"stride": stride} if max_length is None else {"stride": stride, "max_length": max_length}
    with pytest.raises(ValueError, match=f"stride must be at most half .*, got {stride}$"):
        endpoint({"inputs": "武汉", "parameters": parameters})


def test_list_of_texts_runs_in_batches(endpoint, monkeypatch):
    calls = []
    original = endpoint.pipeline._forward
    monkeypatch.setattr(endpoint.pipeline, "_forward", lambda inputs, **kw: calls.append(1) or original(inputs, **kw))
    texts = [TEXTS[0][: 5 + i] for i in range(10)]
    result = endpoint({"inputs": texts})
    assert len(calls) == 2  # batches of 8, not one pass per text
    calls.clear()
    for text, entities in zip(texts, result):
        assert_same(entities, endpoint({"inputs": text, "parameters": {"batch_size": 1}}))
    assert len(calls) == 10


def test_list_of_word_lists_without_is_split_into_words(endpoint):
    with pytest.raises(
        ValueError,
        match=r'^"inputs\[0\]" must be a string, got list \(lists of words need "is_split_into_words": true\)$',
    ):
        endpoint({"inputs": [["北", "京"]]})


def test_empty_inputs(endpoint):
    assert endpoint({"inputs": []}) == []
    assert endpoint({"inputs": [], "parameters": {"is_split_into_words": True}}) == []
    got = endpoint(
        {"inputs": [[], ["北", "京"], []], "parameters": {"is_split_into_words": True, "ignore_labels": []}}
    )
    assert got[0] == got[2] == [] and [r["word"] for r in got[1]] == ["北", "京"]


@pytest.mark.parametrize("inputs", ["武汉", 5, {"words": ["武"]}, [["武"], "汉"], ["武", 5], [["武", 5]]])
def test_pre_split_needs_lists_of_words(endpoint, inputs):
    with pytest.raises(ValueError, match="with is_split_into_words, .*inputs.* must be a list"):
        endpoint({"inputs": inputs, "parameters": {"is_split_into_words": True}})


@pytest.mark.parametrize(
    "inputs, parameters, where",
    [
        ("北京\ud800", {}, r"^inputs: .* position 2 "),
        (["北京", "上\udc00"], {}, r"^inputs\[1\]: .* position 1 "),
        (["北", "\udfff"], {"is_split_into_words": True}, r"^inputs\[1\]: .* position 0 "),
        ([["北"], ["京", "a\ud800"]], {"is_split_into_words": True}, r"^inputs\[1\]\[1\]: .* position 1 "),
    ],
)
def test_lone_surrogate(endpoint, inputs, parameters, where):
    with pytest.raises(ValueError, match=where + "cannot be encoded as UTF-8"):
        endpoint({"inputs": inputs, "parameters": parameters})


# ----------------------------------------------------------------------------------------------------------------
# Limits


@pytest.fixture(scope="module")
def limited(crf_checkpoint):
    return handler.EndpointHandler(
        str(crf_checkpoint), max_text_chars=50, max_items=3, max_batch_size=4, max_request_chars=120
    )


def test_text_length_limit(limited):
    assert limited({"inputs": "北" * 50}) == limited({"inputs": "北" * 50})
    with pytest.raises(
        ValueError,
        match=r"^inputs has 51 characters, more than the limit of 50 \(max_text_chars: "
        r"raise it with the environment variable BERT_CRF_MAX_TEXT_CHARS or EndpointHandler\(max_text_chars=...\)\)$",
    ):
        limited({"inputs": "北" * 51})
    with pytest.raises(ValueError, match=r"^inputs\[1\] has 51 characters"):
        limited({"inputs": ["北", "北" * 51]})


def test_pre_split_length_limit(limited):
    split = {"is_split_into_words": True}
    limited({"inputs": ["北"] * 50, "parameters": split})  # joined without spaces: 50 characters
    limited({"inputs": ["abc"] * 13, "parameters": {**split, "delimiter": ""}})  # 39 characters
    for words, parameters, size in [
        (["北"] * 51, split, 51),
        (["abc"] * 13, split, 51),  # 13 words and 12 spaces
        (["北"] * 26, {**split, "delimiter": " "}, 51),
        ([""] * 60, split, 60),
    ]:
        with pytest.raises(ValueError, match=f"^inputs has {size} characters, more than the limit of 50"):
            limited({"inputs": words, "parameters": parameters})


def test_items_limit(limited):
    assert len(limited({"inputs": ["北"] * 3})) == 3
    with pytest.raises(
        ValueError, match=r"^the request holds 4 texts, more than the limit of 3 \(max_items: .*BERT_CRF_MAX_ITEMS"
    ):
        limited({"inputs": ["北"] * 4})
    with pytest.raises(ValueError, match="the request holds 4 texts"):
        limited({"inputs": [["北"]] * 4, "parameters": {"is_split_into_words": True}})


def test_batch_size_limit(limited, endpoint):
    assert limited({"inputs": "北京", "parameters": {"batch_size": 4}}) == limited({"inputs": "北京"})
    with pytest.raises(
        ValueError, match=r'^"batch_size" is 5, more than the limit of 4 \(max_batch_size: .*BERT_CRF_MAX_BATCH_SIZE'
    ):
        limited({"inputs": "北京", "parameters": {"batch_size": 5}})
    with pytest.raises(ValueError, match=r'^"batch_size" is 100000000, more than the limit of 64 '):
        endpoint({"inputs": "北京", "parameters": {"batch_size": 10**8}})


def test_request_chars_limit(limited, monkeypatch):
    """The characters of all texts together are bounded, and a request over the bound costs no model work."""
    assert len(limited({"inputs": ["北" * 50, "北" * 50, "北" * 20]})) == 3  # 120 characters
    monkeypatch.setattr(limited.pipeline, "preprocess", lambda *args, **kwargs: pytest.fail("tokenized"))
    with pytest.raises(
        ValueError,
        match=r"^the request holds 121 characters in all \(its 3 texts\), more than the limit of 120 "
        r"\(max_request_chars: raise it with the environment variable BERT_CRF_MAX_REQUEST_CHARS or "
        r"EndpointHandler\(max_request_chars=...\)\)$",
    ):
        limited({"inputs": ["北" * 50, "北" * 50, "北" * 21]})
    split = {"is_split_into_words": True, "delimiter": " "}  # 25 words and 24 spaces, three times: 147 characters
    with pytest.raises(ValueError, match=r"^the request holds 147 characters in all \(its 3 texts\)"):
        limited({"inputs": [["北"] * 25] * 3, "parameters": split})
    with pytest.raises(ValueError, match=r"^the request holds 121 characters in all \(its 3 texts\)"):
        limited({"inputs": [[""] * 50, [""] * 50, [""] * 21], "parameters": {"is_split_into_words": True}})


def test_request_chars_limit_on_one_text(crf_checkpoint):
    one = handler.EndpointHandler(str(crf_checkpoint), max_text_chars=50, max_request_chars=30)
    assert one({"inputs": "北" * 30}) == one({"inputs": ["北" * 30]})[0]
    with pytest.raises(ValueError, match=r"^the request holds 31 characters in all \(its text\), more than the limit"):
        one({"inputs": "北" * 31})
    with pytest.raises(ValueError, match="^inputs has 51 characters"):  # the limit per text is named first
        one({"inputs": "北" * 51})


def test_padding_does_not_multiply_the_work(endpoint, monkeypatch):
    """Short texts are not batched with long ones: a batch is padded to its longest window, so 15 one-character
    texts beside one full window would cost 16 full windows."""
    positions = []
    original = endpoint.pipeline._forward
    monkeypatch.setattr(
        endpoint.pipeline,
        "_forward",
        lambda inputs, **kw: positions.append(inputs["input_ids"].numel()) or original(inputs, **kw),
    )
    full = TEXTS[0] * 3  # 63 characters: two windows of the tiny checkpoint (62 sub-tokens each)
    texts = ["北", full, *["京"] * 7, "北京上海", *["上"] * 6]
    parameters = {"aggregation_strategy": "none", "ignore_labels": []}
    result = endpoint({"inputs": texts, "parameters": {**parameters, "batch_size": 16}})
    # Two full windows, 14 one-character texts ([CLS] x [SEP]) and one of four; in one batch: 16 x 64 and 1 x 3.
    assert sum(positions) <= 2 * CRF_MAX_POSITIONS + 14 * 3 + 6, positions
    for text, entities in zip(texts, result):  # in the request's order
        assert [e["word"] for e in entities] == list(text)
        assert_same(entities, endpoint({"inputs": text, "parameters": parameters}))


def test_default_limits(endpoint):
    assert (endpoint.max_text_chars, endpoint.max_items, endpoint.max_batch_size) == (10_000, 256, 64)
    assert endpoint.max_request_chars == handler.DEFAULT_LIMITS["max_request_chars"] == 10_000


def test_limits_from_the_environment(crf_checkpoint, monkeypatch):
    monkeypatch.setenv("BERT_CRF_MAX_TEXT_CHARS", "20")
    monkeypatch.setenv("BERT_CRF_MAX_ITEMS", "7")
    monkeypatch.setenv("BERT_CRF_MAX_BATCH_SIZE", "2")
    monkeypatch.setenv("BERT_CRF_MAX_REQUEST_CHARS", "30")
    from_env = handler.EndpointHandler(str(crf_checkpoint), max_items=9)  # a keyword argument wins
    assert (from_env.max_text_chars, from_env.max_items, from_env.max_batch_size) == (20, 9, 2)
    assert from_env.max_request_chars == 30
    with pytest.raises(ValueError, match="inputs has 21 characters, more than the limit of 20"):
        from_env({"inputs": "北" * 21})
    with pytest.raises(ValueError, match="the request holds 31 characters in all .* BERT_CRF_MAX_REQUEST_CHARS"):
        from_env({"inputs": ["北" * 20, "北" * 11]})


@pytest.mark.parametrize("value", ["0", "-3", "ten", "1.5", ""])
def test_bad_limit_in_the_environment(crf_checkpoint, monkeypatch, value):
    monkeypatch.setenv("BERT_CRF_MAX_ITEMS", value)
    with pytest.raises(ValueError, match=f"^BERT_CRF_MAX_ITEMS must be a positive integer, got {value!r}$"):
        handler.EndpointHandler(str(crf_checkpoint))


@pytest.mark.parametrize("value", [0, -1, 2.5, "10", True])
@pytest.mark.parametrize("name", ["max_text_chars", "max_request_chars"])
def test_bad_limit_argument(crf_checkpoint, name, value):
    with pytest.raises(ValueError, match=f"^{name} must be a positive integer, got {value!r}$"):
        handler.EndpointHandler(str(crf_checkpoint), **{name: value})


def test_dictionary_parameter(endpoint, crf_pipeline, limited):
    text = TEXTS[0]
    dictionary = {text[:4]: "PER"}
    result = endpoint({"inputs": text, "parameters": {"dictionary": dictionary}})
    assert_same(result, crf_pipeline(text, aggregation_strategy="simple", dictionary=dictionary))
    assert ("PER", 0, 4) in {(e["entity_group"], e["start"], e["end"]) for e in result}
    for bad in (["北京"], {"北京": 3}, {"": "LOC"}, {"北京": ""}):
        with pytest.raises(ValueError, match=r'^"dictionary" must be an object of words to types'):
            endpoint({"inputs": text, "parameters": {"dictionary": bad}})
    with pytest.raises(ValueError, match="dictionary type 'GPE' is not one of the model's types"):
        endpoint({"inputs": text, "parameters": {"dictionary": {"北京": "GPE"}}})
    with pytest.raises(ValueError, match=r'^"dictionary" holds 121 characters of words, more than the limit of 120'):
        limited({"inputs": "北京", "parameters": {"dictionary": {"北" * 121: "LOC"}}})


def test_a_lexicon_model_serves_its_lexicon(lexicon_checkpoint):
    """The handler's remote-code pipeline reads the checkpoint's lexicon.tsv and tags as this repo's pipeline."""
    from conftest import load_crf_pipeline

    served = handler.EndpointHandler(str(lexicon_checkpoint))
    assert served.pipeline.model.lexicon is not None and len(served.pipeline.model.lexicon) > 10
    expected = load_crf_pipeline(lexicon_checkpoint)(TEXTS, aggregation_strategy="simple")
    assert any(expected)
    for got, want in zip(served({"inputs": TEXTS}), expected):
        assert_same(got, want)


def test_precision_and_compile_from_the_environment(lexicon_checkpoint, monkeypatch):
    """BERT_CRF_DTYPE=bfloat16 serves with a bf16 encoder and a float32 CRF through the folder's own (remote)
    pipeline, with the entities of the pipeline in bf16; BERT_CRF_COMPILE=1 compiles; keywords win."""
    import torch

    from conftest import load_crf_pipeline

    monkeypatch.setenv("BERT_CRF_DTYPE", "bfloat16")
    served = handler.EndpointHandler(str(lexicon_checkpoint))
    model = served.pipeline.model
    assert type(served.pipeline).__module__.startswith("transformers_modules")
    assert model.classifier.weight.dtype == torch.bfloat16 and model.crf.transitions.dtype == torch.float32
    texts = ["受台风影响，武汉至上海的航班今天全部取消。", "张三在华为公司工作，他住在深圳。"]
    expected = load_crf_pipeline(lexicon_checkpoint, precision="bfloat16")(texts, aggregation_strategy="simple")
    for got, want in zip(served({"inputs": texts}), expected, strict=True):
        assert_same(got, want, tol=1e-4)
    assert any(expected)
    keyword = handler.EndpointHandler(str(lexicon_checkpoint), dtype="float32")
    assert keyword.pipeline.model.classifier.weight.dtype == torch.float32
    monkeypatch.setenv("BERT_CRF_DTYPE", "float32")
    monkeypatch.setenv("BERT_CRF_COMPILE", "1")
    compiled = handler.EndpointHandler(str(lexicon_checkpoint))
    assert type(compiled.pipeline._emissions).__name__ == "CompiledEmissions"


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("BERT_CRF_DTYPE", "fp16", "BERT_CRF_DTYPE must be one of ('float32', 'bfloat16', 'auto'), got 'fp16'"),
        ("BERT_CRF_COMPILE", "maybe", "BERT_CRF_COMPILE must be 1 or 0 (true or false), got 'maybe'"),
    ],
)
def test_bad_speed_settings(crf_checkpoint, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        handler.EndpointHandler(str(crf_checkpoint))
    monkeypatch.delenv(variable)
    with pytest.raises(ValueError, match=re.escape("dtype must be one of")):
        handler.EndpointHandler(str(crf_checkpoint), dtype="half")


def test_precision_choices_are_the_pipelines():
    import ner_acceleration

    assert handler.PRECISIONS == ner_acceleration.PRECISIONS
