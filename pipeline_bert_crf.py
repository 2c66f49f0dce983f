"""A token-classification pipeline that decodes with the model's CRF.

The stock pipeline takes the argmax of the logits and ignores the CRF. This one tags raw strings or pre-split words,
runs texts longer than the model's window through overlapping windows, stitches each word's scores from the window
where it lies farthest from an edge, decodes each whole text with one (constrained) Viterbi pass, and scores
entities with the CRF's marginal probabilities. Offsets index the original string.

It travels with checkpoints as remote code (`custom_pipelines` in config.json), so it imports nothing beyond
torch, transformers and the configuration file.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from transformers.pipelines.base import ChunkPipeline


# Windows, stitching and feeding untokenizable words are ner_windows' (shared with run_ner and the ONNX runtime).
try:
    from .ner_acceleration import CompiledEmissions, choose_dtype, to_precision
    from .ner_lexicon import Lexicon, checked_dictionary, dictionary_units, lexicon_bits
    from .ner_tags import OUTSIDE, group_entities, join_words, span_constraints, word_results
    from .ner_windows import (
        KNOWN_WORDS_LIMIT,
        Window,
        backend_words,
        bare_prefix_id,
        drop_bare_prefix,
        encodes_words_alone,
        fed_words,
        isolates_cjk,
        max_positions,
        plan_windows,
        special_wrapping,
        split_text,
        stitch_rows,
        window_budget,
        word_pieces,
    )
except ImportError:  # imported as a top-level module
    from ner_acceleration import CompiledEmissions, choose_dtype, to_precision
    from ner_lexicon import Lexicon, checked_dictionary, dictionary_units, lexicon_bits
    from ner_tags import OUTSIDE, group_entities, join_words, span_constraints, word_results
    from ner_windows import (
        KNOWN_WORDS_LIMIT,
        Window,
        backend_words,
        bare_prefix_id,
        drop_bare_prefix,
        encodes_words_alone,
        fed_words,
        isolates_cjk,
        max_positions,
        plan_windows,
        special_wrapping,
        split_text,
        stitch_rows,
        window_budget,
        word_pieces,
    )

AGGREGATION_STRATEGIES = ("none", "simple")
# A long text's windows run in batches by default: on CPU a batch of 8 windows takes far less time than 8 passes.
DEFAULT_BATCH_SIZE = 8
# The emission of a label a dictionary rules out: far below any score, yet finite, so marginals stay defined.
RULED_OUT = -1e4


class _Chunk:
    """A window's bookkeeping, carried through the forward pass as one opaque object: the pipeline's device moves
    walk lists and tuples element by element, which for a text's word spans cost more than a small model's step."""

    __slots__ = ("window", "text", "spans")

    def __init__(self, window: tuple[int, int], text: str | None, spans: list[tuple[int, int]] | None) -> None:
        self.window, self.text, self.spans = window, text, spans


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_batch_size(batch_size: Any) -> None:
    """Raise a ValueError unless `batch_size` is None (the default) or a positive integer."""
    if batch_size is not None and not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_encodable(text: str) -> None:
    """Raise a ValueError naming the first character of `text` that UTF-8 cannot encode (a lone surrogate, which
    JSON can carry and the tokenizer rejects with a TypeError)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"the character {text[error.start]!r} at position {error.start} cannot be encoded as UTF-8 (a lone "
            "surrogate): it is not valid text"
        ) from None


class CrfTokenClassificationPipeline(ChunkPipeline):
    """Named-entity recognition with a BERT-CRF model.

    Call with a string, a list of strings, or (with `is_split_into_words=True`) a list of words or a list of such
    lists. Returns, per text, a list of entities:

    - `aggregation_strategy="none"` (default, as in transformers): `{"entity", "score", "index", "word", "start",
      "end"}` per word whose tag is not in `ignore_labels` (default O); `index` is the word's position and `score`
      the CRF marginal probability of its tag;
    - `aggregation_strategy="simple"`: `{"entity_group", "score", "word", "start", "end"}` per entity, `score` the
      mean of its words' scores.

    Every output has `word == text[start:end]`. With `return_mistake_probability=True`, a text's answer is
    `{"entities": [...], "mistake_probability": p, "expected_errors": e}` instead: p = 1 - P(the decoded path |
    text) under the CRF at its mistake temperature (fitted on dev), the model's probability that the text still holds a wrong or
    missed entity (one more forward pass over the tags per text); e = the sum over words of 1 - the marginal of the
    decoded tag, the expected number of wrongly tagged words (free: the marginals are computed anyway). Scores to
    sort texts by for review or annotation (see docs/active-learning.md).

    Pre-split words are joined with `delimiter` to make the text the offsets index (default: nothing when every
    word is one character, as in Chinese, else a space). Options: `stride` (sub-tokens shared by consecutive
    windows, at most half a window's sub-tokens), `max_length` (window size, default the model's maximum),
    `ignore_labels` (a list of labels), `batch_size` (windows per forward pass, default 8: the windows of one long
    text, or the short texts of a list, run together).

    Speed, when the pipeline is made: `precision` ("float32", "bfloat16", or "auto": bf16 only where the device
    has bf16 hardware and it measures faster; default: the model as loaded, e.g. with transformers' `dtype=`) and
    `compile` (True or a torch.compile backend: the encoder compiled, lengths bucketed; see ner_acceleration.py).
    The CRF decodes in float32 whatever the precision.
    """

    def __init__(self, *args: Any, precision: str | None = None, compile: Any = False, **kwargs: Any) -> None:
        check_batch_size(kwargs.get("batch_size"))
        super().__init__(*args, **kwargs)
        if not hasattr(self.model, "crf"):
            raise ValueError(f"{type(self).__name__} needs a model with a CRF, got {type(self.model).__name__}")
        self._speed_up(precision, compile)
        self._head, self._tail = special_wrapping(self.tokenizer)
        backend = self.tokenizer.backend_tokenizer
        # A SentencePiece tokenizer keeps a Chinese sentence as one word: raw text is then split here, one word per
        # CJK character, and a lone "▁" before a word's content is not fed (one unit per character).
        self._split_raw = not isolates_cjk(backend_words(backend))
        self._bare_id = bare_prefix_id(backend.token_to_id, self.tokenizer.unk_token_id)
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE
        self._known_words: dict[str, bool] = {}
        self._known_for: Any = None
        # Each word's ids, remembered where a pre-split word is tokenized as it is alone (see encodes_words_alone).
        self._per_word = encodes_words_alone(backend)
        self._word_ids: dict[str, list[int]] = {}

    def _speed_up(self, precision: str | None, compile: Any) -> None:
        """Put the model in the chosen precision and compile its emissions (`self._emissions`)."""
        if precision is not None:
            dtype = choose_dtype(precision, self.model, self.device)
            if dtype != self.model.dtype:
                to_precision(self.model, dtype)
        self._emissions = self.model.emissions
        if compile:
            self._emissions = CompiledEmissions(self.model, "inductor" if compile is True else compile)

    def _sanitize_parameters(
        self,
        aggregation_strategy: str | None = None,
        stride: int | None = None,
        max_length: int | None = None,
        is_split_into_words: bool | None = None,
        delimiter: str | None = None,
        ignore_labels: Sequence[str] | None = None,
        dictionary: Mapping[str, str] | Lexicon | None = None,
        return_mistake_probability: bool | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        preprocess: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if stride is not None:
            if not _is_int(stride) or stride < 0:
                raise ValueError(f"stride must be an integer >= 0, got {stride!r}")
            preprocess["stride"] = stride
        if max_length is not None:
            positions = max_positions(self.model.config)
            if not _is_int(max_length) or not 2 < max_length <= positions:
                raise ValueError(
                    f"max_length must be an integer between 3 and the model's {positions} positions, "
                    f"got {max_length!r}"
                )
            preprocess["max_length"] = max_length
        if is_split_into_words is not None:
            if not isinstance(is_split_into_words, bool):
                raise ValueError(f"is_split_into_words must be True or False, got {is_split_into_words!r}")
            preprocess["is_split_into_words"] = is_split_into_words
        if delimiter is not None:
            if not isinstance(delimiter, str):
                raise ValueError(f"delimiter must be a string, got {delimiter!r}")
            preprocess["delimiter"] = delimiter
        if aggregation_strategy is not None:
            strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if strategy not in AGGREGATION_STRATEGIES:
                raise ValueError(
                    f"aggregation_strategy must be one of {AGGREGATION_STRATEGIES}, got {aggregation_strategy!r}"
                )
            postprocess["aggregation_strategy"] = strategy
        if ignore_labels is not None:
            # A string is a sequence of letters: "ORG" would ignore "O", "R" and "G".
            labels_ok = isinstance(ignore_labels, (list, tuple, set, frozenset))
            if not labels_ok or not all(isinstance(label, str) for label in ignore_labels):
                raise ValueError(f"ignore_labels must be a list of labels (strings), got {ignore_labels!r}")
            postprocess["ignore_labels"] = list(ignore_labels)
        if return_mistake_probability is not None:
            if not isinstance(return_mistake_probability, bool):
                raise ValueError(
                    f"return_mistake_probability must be True or False, got {return_mistake_probability!r}"
                )
            postprocess["return_mistake_probability"] = return_mistake_probability
        if dictionary is not None:
            postprocess["dictionary"] = checked_dictionary(dictionary, self.model.config.id2label.values())
        return preprocess, {}, postprocess

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        check_batch_size(kwargs.get("batch_size"))
        if isinstance(inputs, (list, tuple)):
            if not inputs:  # no texts (or no words): nothing to tag, as the ONNX tagger answers
                return []
            # A flat list of words is one pre-split text, not a batch of strings.
            if kwargs.get("is_split_into_words") and isinstance(inputs[0], str):
                return super().__call__([list(inputs)], **kwargs)[0]
        return super().__call__(inputs, **kwargs)

    # ------------------------------------------------------------------------------------------------------------

    def _words_and_spans(
        self, inputs: Any, is_split_into_words: bool, delimiter: str | None
    ) -> tuple[str, str | list[str], list[tuple[int, int]] | None]:
        """The text, the words fed to the tokenizer, and each word's character span in the text."""
        if is_split_into_words:
            if not isinstance(inputs, (list, tuple)) or not all(isinstance(w, str) for w in inputs):
                raise ValueError(
                    f"with is_split_into_words=True, expected a list of words, got {type(inputs).__name__}"
                )
            text, spans = join_words(inputs, delimiter)
            check_encodable(text)
            # A word the tokenizer turns into nothing (U+3000, control characters) still needs a position.
            return text, self._fed_words(inputs), spans
        if not isinstance(inputs, str):
            raise ValueError(
                f"expected a string (or is_split_into_words=True with a list of words), got {type(inputs).__name__}"
            )
        check_encodable(inputs)
        if self._split_raw:
            spans = split_text(inputs)
            words = [inputs[start:end] for start, end in spans]
            return inputs, self._fed_words(words), spans
        return inputs, inputs, None

    def _fed_words(self, words: Sequence[str]) -> list[str]:
        """`fed_words` with this pipeline's cache of known words (dropped when the tokenizer is swapped)."""
        if self._known_for is not self.tokenizer:
            self._known_words, self._word_ids, self._known_for = {}, {}, self.tokenizer
            self._per_word = encodes_words_alone(self.tokenizer.backend_tokenizer)
        return fed_words(words, self._token_ids, self.tokenizer.unk_token, self._known_words)

    def _token_ids(self, word: str) -> list[int]:
        """A word's sub-token ids, tokenized alone (remembered: a text's words mostly repeat)."""
        ids = self._word_ids.get(word)
        if ids is None:
            if len(self._word_ids) > KNOWN_WORDS_LIMIT:
                self._word_ids.clear()
            ids = self._word_ids[word] = self._encode_alone(word)
        return ids

    def _encode_alone(self, word: str) -> list[int]:
        return self.tokenizer.backend_tokenizer.encode(word, add_special_tokens=False).ids

    def preprocess(
        self,
        inputs: Any,
        stride: int | None = None,
        max_length: int | None = None,
        is_split_into_words: bool = False,
        delimiter: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        text, fed, spans = self._words_and_spans(inputs, is_split_into_words, delimiter)
        ids: list[int] = []
        word_ids: list[int | None] = []
        offsets: list[tuple[int, int]] = []
        if spans is not None and self._per_word:
            pieces = [self._token_ids(word) for word in fed]
        elif fed or spans is None:
            encoding = self.tokenizer(
                fed,
                is_split_into_words=spans is not None,
                add_special_tokens=False,
                return_offsets_mapping=True,
                truncation=False,
                verbose=False,
            )
            ids, word_ids, offsets = encoding["input_ids"], encoding.word_ids(), encoding["offset_mapping"]
        if not (spans is not None and self._per_word):
            # Split words keep their spans; in raw text a word spans its sub-tokens' characters.
            pieces, spans = word_pieces(ids, word_ids, offsets, spans)
        pieces = drop_bare_prefix(pieces, self._bare_id)
        limit = max_length or min(self.tokenizer.model_max_length, max_positions(self.model.config))
        budget = window_budget(limit, self._head, self._tail)
        # Each window shares `stride` sub-tokens with the one before; sharing more than half its room would cost
        # more forward passes than it saves (at stride >= budget, one window per word).
        if stride is not None and stride > budget // 2:
            raise ValueError(
                f"stride must be at most half the {budget} sub-tokens a window holds (max_length {limit} less "
                f"{limit - budget} special tokens), i.e. <= {budget // 2}, got {stride}"
            )
        # No words still make one (empty) chunk: the ChunkPipeline needs one to answer with no entities.
        windows = plan_windows(pieces, self._head, self._tail, budget, stride) or [
            Window(0, 0, self._head + self._tail, [])
        ]
        word_bits = self._lexicon_bits(text, spans)
        for index, window in enumerate(windows):
            length = len(window.input_ids)
            word_start_mask = torch.zeros(1, length, dtype=torch.long)
            word_start_mask[0, window.chain] = 1
            inputs = {
                "input_ids": torch.tensor([window.input_ids]),
                "attention_mask": torch.ones(1, length, dtype=torch.long),
                "word_start_mask": word_start_mask,
            }
            if word_bits is not None:  # on each word's first sub-token, as in training
                features = torch.zeros(1, length, dtype=torch.long)
                features[0, window.chain] = torch.tensor(word_bits[window.start : window.end], dtype=torch.long)
                inputs["lexicon_features"] = features
            yield {
                **inputs,
                "chunk": _Chunk((window.start, window.end), *((text, spans) if index == 0 else (None, None))),
                "is_last": index == len(windows) - 1,
            }

    def _lexicon_bits(self, text: str, spans: list[tuple[int, int]]) -> list[int] | None:
        """A lexicon model's features of each word (`lexicon_bits`), None for a model without a lexicon."""
        types = getattr(self.model.config, "lexicon_types", None)
        if not types:
            return None
        lexicon = getattr(self.model, "lexicon", None)
        if lexicon is None:
            raise ValueError(
                f"the model was trained with a lexicon ({self.model.config.lexicon_file}) but has none: load it with "
                "from_pretrained from its folder, or set model.lexicon"
            )
        return lexicon_bits(lexicon, text, spans, types)

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        meta = {k: model_inputs.pop(k) for k in ("chunk", "is_last")}
        model_inputs = _right_aligned(model_inputs)
        logits = self._emissions(
            input_ids=model_inputs["input_ids"],
            attention_mask=model_inputs["attention_mask"],
            **({"lexicon_features": model_inputs["lexicon_features"]} if "lexicon_features" in model_inputs else {}),
        )
        # Decoding each window here runs the CRF once per batch; postprocess re-decodes only texts split in windows.
        emissions, tags, scores, _ = self.model.decode_packed(logits, model_inputs["word_start_mask"])
        return {"emissions": emissions, "tags": tags, "scores": scores, **meta}

    def postprocess(
        self,
        all_outputs: list[dict[str, Any]],
        aggregation_strategy: str = "none",
        ignore_labels: Sequence[str] | None = None,
        dictionary: Lexicon | None = None,
        return_mistake_probability: bool = False,
    ) -> list[dict[str, Any]] | dict[str, Any]:
        text, spans = all_outputs[0]["chunk"].text, all_outputs[0]["chunk"].spans
        if not spans:
            return (
                {"entities": [], "mistake_probability": 0.0, "expected_errors": 0.0}
                if return_mistake_probability
                else []
            )
        forced = dictionary_units(dictionary, text, spans) if dictionary is not None else []
        if forced:
            config = self.model.config
            allowed, _ = span_constraints(forced, len(spans), config.id2label, config.resolved_tag_scheme)
            emissions, tags, scores = self._decode_stitched(all_outputs, len(spans), allowed)
        elif len(all_outputs) == 1:
            emissions = all_outputs[0]["emissions"][:, : len(spans)]
            tags = all_outputs[0]["tags"][0, : len(spans)].tolist()
            scores = all_outputs[0]["scores"][0, : len(spans)].tolist()
        else:
            emissions, tags, scores = self._decode_stitched(all_outputs, len(spans))
        id2label = self.model.config.id2label
        labels = [id2label[t] for t in tags]
        ignore = set(ignore_labels) if ignore_labels is not None else {OUTSIDE}
        if aggregation_strategy == "none":
            entities = word_results(labels, scores, spans, text, ignore)
        else:
            grouped = group_entities(labels, scores, spans, text, self.model.config.resolved_tag_scheme)
            entities = [e for e in grouped if e["entity_group"] not in ignore]
        if return_mistake_probability:
            return {
                "entities": entities,
                "mistake_probability": self._mistake_probability(emissions, tags),
                "expected_errors": sum(1.0 - score for score in scores),  # scores: the decoded tags' marginals
            }
        return entities

    def _mistake_probability(self, emissions: torch.Tensor, tags: list[int]) -> float:
        """1 - P(decoded path | text) under the CRF at its path temperature: how likely the text still holds a wrong or missed
        entity (see `CRF.path_probability_packed`)."""
        path = torch.tensor([tags], device=emissions.device)
        mask = torch.ones_like(path, dtype=torch.bool)
        with torch.no_grad():
            return 1.0 - float(self.model.crf.path_probability_packed(emissions.float(), path, mask)[0])

    def _decode_stitched(
        self, all_outputs: list[dict[str, Any]], num_words: int, allowed: list[list[bool]] | None = None
    ) -> tuple[torch.Tensor, list[int], list[float]]:
        """One Viterbi pass over a text split in windows, each word scored by its most central window; with
        `allowed` (words x labels, see `span_constraints`) the other labels are ruled out. Returns the stitched
        emissions `(1, words, labels)` too."""
        picks = stitch_rows([o["chunk"].window for o in all_outputs], num_words)
        rows = [all_outputs[k]["emissions"][0, row] for k, row in picks]
        emissions = torch.stack(rows).unsqueeze(0)  # (1, words, labels)
        if allowed is not None:
            permitted = torch.tensor(allowed, dtype=torch.bool, device=emissions.device).unsqueeze(0)
            emissions = emissions.masked_fill(~permitted, RULED_OUT)  # (1, words, labels)
        mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        crf = self.model.crf
        with torch.no_grad():
            tags = crf.viterbi_packed(emissions, mask)  # (1, words)
            probs = crf.marginals_packed(emissions, mask)  # (1, words, labels)
        return emissions, tags[0].tolist(), probs[0].gather(1, tags[0].unsqueeze(1)).squeeze(1).tolist()


def _right_aligned(model_inputs: dict[str, Any]) -> dict[str, Any]:
    """The batch with each row's tokens at its front: a tokenizer that pads on the left makes the collate put the
    padding first, which would shift BERT's absolute positions."""
    mask = model_inputs["attention_mask"]
    if bool(mask[:, 0].all()):
        return model_inputs
    width = mask.shape[1]
    pads = width - mask.sum(1, keepdim=True)  # (batch, 1)
    order = (torch.arange(width, device=mask.device).unsqueeze(0) + pads) % width
    return {k: v.gather(1, order) for k, v in model_inputs.items()}


# The BERT name of the pipeline, which config.json files saved before the rename point at.
BertCrfTokenClassificationPipeline = CrfTokenClassificationPipeline
