"""Hugging Face Inference Endpoints handler for a bert-crf checkpoint.

run_ner.py copies this file into every output folder. The endpoint calls `EndpointHandler(path)` once, then the
handler with `{"inputs": str | list[str] | list[list[str]], "parameters": {...}}` per request; parameters are the
pipeline's, checked here: `aggregation_strategy` ("none" or "simple", default "simple"), `is_split_into_words`
(bool), `stride` (int >= 0, at most half a window), `max_length` (int from 16 to the model's positions),
`ignore_labels` (list of strings), `batch_size` (int >= 1), `delimiter` (string) and `dictionary` (an object of
words to types: each occurrence is forced as one entity of its type, or forbidden with "O"; its words' characters
count against `max_request_chars` on their own). Others are rejected.

Each request is limited, so that one request cannot hold the endpoint for minutes or exhaust its memory. A limit
is the `EndpointHandler` keyword argument if given, else the environment variable (read when the handler is
built), else the default:

- `max_request_chars`, `BERT_CRF_MAX_REQUEST_CHARS`, 10000: characters of all the request's texts together (and,
  apart, of its dictionary's words);
- `max_text_chars`, `BERT_CRF_MAX_TEXT_CHARS`, 10000: characters per text (pre-split words: the characters of the
  text they make, joined with the delimiter, and at least one per word);
- `max_items`, `BERT_CRF_MAX_ITEMS`, 256: texts per request;
- `max_batch_size`, `BERT_CRF_MAX_BATCH_SIZE`, 64: the largest `batch_size` parameter.

Speed: `dtype`, `BERT_CRF_DTYPE`, "float32" (default), "bfloat16" or "auto" (bfloat16 only where the CPU or GPU has
bf16 hardware and a start-up measurement, cached per machine, shows it faster; the CRF decodes in float32 always);
`compile`, `BERT_CRF_COMPILE`, off by default ("1" or True: torch.compile of the encoder, whose first requests of
one and of several texts then take tens of seconds on a CPU). See the pipeline's `precision` and `compile`.

Limits are all checked before any tokenization or model work. Characters bound the work: a character makes about one
sub-token or fewer (a Chinese character one, a Latin word fewer than its letters), windows share at most half their
sub-tokens (`stride`), and texts of different lengths run in separate groups, so that padding in a batch cannot
multiply the work; counting them needs no tokenizer, and the caller can count them too. With the defaults and the
demo's encoder (multilingual-e5-small trimmed to Chinese) on 2 CPU cores (AMD EPYC, quiet), a maximal request took
6.1 s (one text of 10,000 Chinese characters), 11.6 s in the smallest windows (`max_length` 16, `stride` 7), the
costliest parameters measured; 4 long texts among 252 of one character took 7 s in groups, 75 s in one call
(benchmarks/bench_serving.py).
"""

from __future__ import annotations

import os
from itertools import groupby
from typing import Any

from transformers import pipeline


DEFAULT_LIMITS = {"max_request_chars": 10_000, "max_text_chars": 10_000, "max_items": 256, "max_batch_size": 64}
LIMIT_VARIABLES = {
    "max_request_chars": "BERT_CRF_MAX_REQUEST_CHARS",
    "max_text_chars": "BERT_CRF_MAX_TEXT_CHARS",
    "max_items": "BERT_CRF_MAX_ITEMS",
    "max_batch_size": "BERT_CRF_MAX_BATCH_SIZE",
}
PARAMETERS = (
    "aggregation_strategy",
    "is_split_into_words",
    "stride",
    "max_length",
    "ignore_labels",
    "batch_size",
    "delimiter",
    "dictionary",
)
AGGREGATION_STRATEGIES = ("none", "simple")
PRECISIONS = ("float32", "bfloat16", "auto")  # the pipeline's (ner_acceleration.PRECISIONS)
SWITCH_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}
# Windows of fewer tokens cost a forward pass for a handful of characters (max_length 3: one per character).
MIN_MAX_LENGTH = 16


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _limit(name: str, value: int | None) -> int:
    variable = LIMIT_VARIABLES[name]
    if value is None:
        text = os.environ.get(variable)
        if text is None:
            return DEFAULT_LIMITS[name]
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{variable} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise ValueError(f"{variable} must be a positive integer, got {text!r}")
        return value
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class EndpointHandler:
    def __init__(
        self,
        path: str = "",
        max_text_chars: int | None = None,
        max_items: int | None = None,
        max_batch_size: int | None = None,
        max_request_chars: int | None = None,
        dtype: str | None = None,
        compile: bool | None = None,
    ) -> None:
        self.max_request_chars = _limit("max_request_chars", max_request_chars)
        self.max_text_chars = _limit("max_text_chars", max_text_chars)
        self.max_items = _limit("max_items", max_items)
        self.max_batch_size = _limit("max_batch_size", max_batch_size)
        # The checkpoint carries its own pipeline, which decodes with the CRF (see config.json: custom_pipelines).
        speed: dict[str, Any] = {}  # only what differs from the defaults: a folder's older pipeline knows neither
        precision = _precision(dtype)
        if precision != "float32":
            speed["precision"] = precision
        if _switch("BERT_CRF_COMPILE", compile):
            speed["compile"] = True
        self.pipeline = pipeline("token-classification", model=path, trust_remote_code=True, **speed)

    def __call__(self, data: dict[str, Any]) -> list[Any]:
        inputs, sizes, single, parameters = self.check(data)
        if not inputs:
            return []
        results = self.tag(inputs, sizes, parameters)
        return results[0] if single else results

    def check(self, data: Any) -> tuple[list[Any], list[int], bool, dict[str, Any]]:
        """A request's texts, their sizes in characters, whether it held just one text, and its checked parameters;
        or a ValueError saying what is wrong, before any tokenization or model work. (A server that batches requests
        checks each one alone, then tags several together.)"""
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected a JSON object {"inputs": ..., "parameters": {...}}')
        parameters = data.get("parameters")
        parameters = {} if parameters is None else parameters
        if not isinstance(parameters, dict):
            raise ValueError(f'"parameters" must be an object, got {type(parameters).__name__}')
        parameters = self._check_parameters(parameters)
        inputs, sizes, single = self._check_inputs(data["inputs"], parameters)
        return inputs, sizes, single, parameters

    def tag(self, texts: list[Any], sizes: list[int], parameters: dict[str, Any]) -> list[Any]:
        """The pipeline's results for `texts`, in their order. Texts run in groups of similar length (within a factor
        of two): the windows of one call share batches, each padded to its longest window, so a one-character text
        in a batch with a full window would cost a full window, and the work would no longer follow the characters
        that `max_request_chars` counts."""
        results: list[Any] = [None] * len(texts)
        order = sorted(range(len(texts)), key=sizes.__getitem__)
        for _, group in groupby(order, key=lambda index: sizes[index].bit_length()):
            chosen = list(group)
            for index, result in zip(chosen, self.pipeline([texts[i] for i in chosen], **parameters)):
                results[index] = result
        return results

    def _exceeds(self, what: str, name: str) -> ValueError:
        """The error for a request over the limit `name`; `what` says by how much ("... 300 texts")."""
        return ValueError(
            f"{what}, more than the limit of {getattr(self, name)} ({name}: raise it with the environment variable "
            f"{LIMIT_VARIABLES[name]} or EndpointHandler({name}=...))"
        )

    def _check_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """A copy of `parameters` with the default aggregation, or a ValueError naming the bad parameter."""
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; expected some of {list(PARAMETERS)}")
        checked = dict(parameters)
        strategy = checked.setdefault("aggregation_strategy", "simple")
        # None would fall back to the pipeline's "none" and change the output's shape: say so instead.
        if not isinstance(strategy, str) or strategy.lower() not in AGGREGATION_STRATEGIES:
            raise ValueError(f'"aggregation_strategy" must be "none" or "simple", got {strategy!r}')
        if "is_split_into_words" in checked and not isinstance(checked["is_split_into_words"], bool):
            raise ValueError(f'"is_split_into_words" must be true or false, got {checked["is_split_into_words"]!r}')
        if "stride" in checked and not (_is_int(checked["stride"]) and checked["stride"] >= 0):
            raise ValueError(f'"stride" must be an integer >= 0, got {checked["stride"]!r}')
        if "max_length" in checked:
            max_length, positions = checked["max_length"], self.pipeline.model.config.max_position_embeddings
            if not (_is_int(max_length) and MIN_MAX_LENGTH <= max_length <= positions):
                raise ValueError(
                    f'"max_length" must be an integer from {MIN_MAX_LENGTH} to the model\'s {positions} positions, '
                    f"got {max_length!r}"
                )
        if "ignore_labels" in checked:
            labels = checked["ignore_labels"]
            if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
                raise ValueError(f'"ignore_labels" must be a list of labels (strings), got {labels!r}')
        if "batch_size" in checked:
            batch_size = checked["batch_size"]
            if not (_is_int(batch_size) and batch_size >= 1):
                raise ValueError(f'"batch_size" must be a positive integer, got {batch_size!r}')
            if batch_size > self.max_batch_size:
                raise self._exceeds(f'"batch_size" is {batch_size}', "max_batch_size")
        if "delimiter" in checked and not isinstance(checked["delimiter"], str):
            raise ValueError(f'"delimiter" must be a string, got {checked["delimiter"]!r}')
        if "dictionary" in checked:
            dictionary = checked["dictionary"]
            if not isinstance(dictionary, dict) or not all(
                isinstance(word, str) and word and isinstance(kind, str) and kind for word, kind in dictionary.items()
            ):
                raise ValueError(
                    '"dictionary" must be an object of words to types (an entity type, or "O" to forbid), e.g. '
                    f'{{"京东": "ORG", "哈密瓜": "O"}}; got {type(dictionary).__name__} {str(dictionary)[:80]}'
                )
            size = sum(map(len, dictionary))
            if size > self.max_request_chars:  # its words are matched in every text: bounded as the texts are
                raise self._exceeds(f'"dictionary" holds {size} characters of words', "max_request_chars")
        return checked

    def _check_inputs(self, inputs: Any, parameters: dict[str, Any]) -> tuple[list[Any], list[int], bool]:
        """The texts (strings, or lists of words) to tag, their sizes in characters and whether the request held
        just one; or a ValueError, before any tokenization or model work."""
        if parameters.get("is_split_into_words"):
            if not isinstance(inputs, list):
                raise ValueError(
                    f'with is_split_into_words, "inputs" must be a list of words or a list of lists of words, got '
                    f"{type(inputs).__name__}"
                )
            single = bool(inputs) and all(isinstance(word, str) for word in inputs)
            texts = [inputs] if single else inputs
            for index, words in enumerate(texts):
                if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
                    where = "inputs" if single else f"inputs[{index}]"
                    raise ValueError(
                        f"with is_split_into_words, {where} must be a list of words (strings), got {words!r:.80}"
                    )
        elif isinstance(inputs, str):
            single, texts = True, [inputs]
        elif isinstance(inputs, list):
            single, texts = False, inputs
            for index, text in enumerate(texts):
                if not isinstance(text, str):
                    hint = ' (lists of words need "is_split_into_words": true)' if isinstance(text, list) else ""
                    raise ValueError(f'"inputs[{index}]" must be a string, got {type(text).__name__}{hint}')
        else:
            raise ValueError(f'"inputs" must be a string or a list, got {type(inputs).__name__}')
        if len(texts) > self.max_items:
            raise self._exceeds(f"the request holds {len(texts)} texts", "max_items")
        sizes = [
            len(text) if isinstance(text, str) else _joined_length(text, parameters.get("delimiter")) for text in texts
        ]
        for index, size in enumerate(sizes):
            if size > self.max_text_chars:
                raise self._exceeds(
                    f"{'inputs' if single else f'inputs[{index}]'} has {size} characters", "max_text_chars"
                )
        if sum(sizes) > self.max_request_chars:
            held = "its text" if single else f"its {len(texts)} texts"
            raise self._exceeds(f"the request holds {sum(sizes)} characters in all ({held})", "max_request_chars")
        for index, text in enumerate(texts):
            where = "inputs" if single else f"inputs[{index}]"
            for position, word in enumerate([text] if isinstance(text, str) else text):
                _check_encodable(word, where if isinstance(text, str) else f"{where}[{position}]")
        return texts, sizes, single


def _precision(value: str | None) -> str:
    name = "dtype"
    if value is None:
        value, name = os.environ.get("BERT_CRF_DTYPE", "float32"), "BERT_CRF_DTYPE"
    if value not in PRECISIONS:
        raise ValueError(f"{name} must be one of {PRECISIONS}, got {value!r}")
    return value


def _switch(variable: str, value: bool | None) -> bool:
    if value is not None:
        return bool(value)
    text = os.environ.get(variable, "")
    key = text.strip().lower()
    if key not in SWITCH_VALUES:
        raise ValueError(f"{variable} must be 1 or 0 (true or false), got {text!r}")
    return SWITCH_VALUES[key]


def _joined_length(words: list[str], delimiter: str | None) -> int:
    """The length of the text the pipeline makes of `words` (as ner_tags.join_words joins them), and at least
    one per word: an empty word still costs a token."""
    if delimiter is None:
        delimiter = "" if all(len(word) == 1 for word in words) else " "
    return max(sum(map(len, words)) + len(delimiter) * max(len(words) - 1, 0), len(words))


def _check_encodable(text: str, where: str) -> None:
    # A JSON escape can carry a lone surrogate, on which the tokenizer fails with a cryptic TypeError.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where}: the character {text[error.start]!r} at position {error.start} cannot be encoded as UTF-8 (a "
            "lone surrogate)"
        ) from None
