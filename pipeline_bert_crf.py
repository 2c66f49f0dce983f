"""A token-classification pipeline that decodes with the model's CRF.

The stock pipeline takes the argmax of the logits and ignores the CRF. This one tags raw strings or pre-split words,
runs texts longer than the model's window through overlapping windows, stitches each word's scores from the window
where it lies farthest from an edge, decodes each whole text with one (constrained) Viterbi pass, and scores
entities with the CRF's marginal probabilities. Offsets index the original string.

It travels with checkpoints as remote code (`custom_pipelines` in config.json), so it imports nothing beyond
torch, transformers and the configuration file.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers.pipelines.base import ChunkPipeline

try:
    from .bert_crf_utils import OUTSIDE, best_windows, group_entities, join_words, special_wrapping, word_windows
except ImportError:  # imported as a top-level module
    from bert_crf_utils import OUTSIDE, best_windows, group_entities, join_words, special_wrapping, word_windows

AGGREGATION_STRATEGIES = ("none", "simple")


class BertCrfTokenClassificationPipeline(ChunkPipeline):
    """Named-entity recognition with a BERT-CRF model.

    Call with a string, a list of strings, or (with `is_split_into_words=True`) a list of words or a list of such
    lists. Returns, per text, a list of entities:

    - `aggregation_strategy="none"` (default, as in transformers): `{"entity", "score", "index", "word", "start",
      "end"}` per word whose tag is not in `ignore_labels` (default O); `index` is the word's position and `score`
      the CRF marginal probability of its tag;
    - `aggregation_strategy="simple"`: `{"entity_group", "score", "word", "start", "end"}` per entity, `score` the
      mean of its words' scores.

    Every output has `word == text[start:end]`.

    Pre-split words are joined with `delimiter` to make the text the offsets index (default: nothing when every
    word is one character, as in Chinese, else a space). Options: `stride` (sub-tokens shared by consecutive
    windows), `max_length` (window size, default the model's maximum), `ignore_labels`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.model, "crf"):
            raise ValueError(f"{type(self).__name__} needs a model with a CRF, got {type(self.model).__name__}")
        self._head, self._tail = special_wrapping(self.tokenizer)

    def _sanitize_parameters(
        self,
        aggregation_strategy: str | None = None,
        stride: int | None = None,
        max_length: int | None = None,
        is_split_into_words: bool | None = None,
        delimiter: str | None = None,
        ignore_labels: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        preprocess: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if stride is not None:
            if stride < 0:
                raise ValueError(f"stride must be >= 0, got {stride}")
            preprocess["stride"] = stride
        if max_length is not None:
            positions = self.model.config.max_position_embeddings
            if not 2 < max_length <= positions:
                raise ValueError(f"max_length must be between 3 and the model's {positions} positions, got {max_length}")
            preprocess["max_length"] = max_length
        if is_split_into_words is not None:
            preprocess["is_split_into_words"] = is_split_into_words
        if delimiter is not None:
            preprocess["delimiter"] = delimiter
        if aggregation_strategy is not None:
            strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if strategy not in AGGREGATION_STRATEGIES:
                raise ValueError(f"aggregation_strategy must be one of {AGGREGATION_STRATEGIES}, got {aggregation_strategy!r}")
            postprocess["aggregation_strategy"] = strategy
        if ignore_labels is not None:
            postprocess["ignore_labels"] = list(ignore_labels)
        return preprocess, {}, postprocess

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        # A flat list of words is one pre-split text, not a batch of strings.
        if kwargs.get("is_split_into_words") and isinstance(inputs, (list, tuple)):
            if not inputs:
                return []
            if isinstance(inputs[0], str):
                return super().__call__([list(inputs)], **kwargs)[0]
        return super().__call__(inputs, **kwargs)

    # ------------------------------------------------------------------------------------------------------------

    def _words_and_spans(self, inputs: Any, is_split_into_words: bool, delimiter: str | None):
        """The text, the words fed to the tokenizer, and each word's character span in the text."""
        if is_split_into_words:
            if not isinstance(inputs, (list, tuple)) or not all(isinstance(w, str) for w in inputs):
                raise ValueError(f"with is_split_into_words=True, expected a list of words, got {type(inputs).__name__}")
            text, spans = join_words(inputs, delimiter)
            # A word the tokenizer turns into nothing (U+3000, control characters) still needs a position.
            fed = [w if self.tokenizer.tokenize(w) else self.tokenizer.unk_token for w in inputs]
            return text, fed, spans
        if not isinstance(inputs, str):
            raise ValueError(f"expected a string (or is_split_into_words=True with a list of words), got {type(inputs).__name__}")
        return inputs, inputs, None

    def preprocess(
        self, inputs: Any, stride: int | None = None, max_length: int | None = None,
        is_split_into_words: bool = False, delimiter: str | None = None,
    ):
        text, fed, spans = self._words_and_spans(inputs, is_split_into_words, delimiter)
        encoding = self.tokenizer(
            fed, is_split_into_words=is_split_into_words, add_special_tokens=False, return_offsets_mapping=True,
            truncation=False, verbose=False,
        )
        ids, word_ids = encoding["input_ids"], encoding.word_ids()
        pieces: dict[int, list[int]] = {}
        for position, word in enumerate(word_ids):
            if word is not None:
                pieces.setdefault(word, []).append(position)
        words = sorted(pieces)  # words the tokenizer saw, in order
        if spans is None:  # raw text: a word spans its sub-tokens' characters
            offsets = encoding["offset_mapping"]
            spans = [(offsets[pieces[w][0]][0], offsets[pieces[w][-1]][1]) for w in words]
        else:
            spans = [spans[w] for w in words]
        limit = max_length or min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        budget = max(1, limit - len(self._head) - len(self._tail))
        overlap = stride if stride is not None else budget // 4
        lengths = [min(len(pieces[w]), budget) for w in words]
        windows = word_windows(lengths, budget, overlap) if words else [(0, 0)]
        for index, (start, end) in enumerate(windows):
            window_ids, chain = list(self._head), []
            for k in range(start, end):
                chain.append(len(window_ids))
                window_ids += [ids[p] for p in pieces[words[k]][: lengths[k]]]
            window_ids += self._tail
            word_start_mask = torch.zeros(1, len(window_ids), dtype=torch.long)
            word_start_mask[0, chain] = 1
            yield {
                "input_ids": torch.tensor([window_ids]),
                "attention_mask": torch.ones(1, len(window_ids), dtype=torch.long),
                "word_start_mask": word_start_mask,
                "window": (start, end),
                "text": text if index == 0 else None,
                "spans": spans if index == 0 else None,
                "is_last": index == len(windows) - 1,
            }

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        meta = {k: model_inputs.pop(k) for k in ("window", "text", "spans", "is_last")}
        logits = self.model.emissions(input_ids=model_inputs["input_ids"], attention_mask=model_inputs["attention_mask"])
        # Decoding each window here runs the CRF once per batch; postprocess re-decodes only texts split in windows.
        emissions, tags, scores, _ = self.model.decode_packed(logits, model_inputs["word_start_mask"])
        return {"emissions": emissions, "tags": tags, "scores": scores, **meta}

    def postprocess(
        self, all_outputs: list[dict[str, Any]], aggregation_strategy: str = "none",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        text, spans = all_outputs[0]["text"], all_outputs[0]["spans"]
        if not spans:
            return []
        if len(all_outputs) == 1:
            tags = all_outputs[0]["tags"][0, : len(spans)].tolist()
            scores = all_outputs[0]["scores"][0, : len(spans)].tolist()
        else:
            tags, scores = self._decode_stitched(all_outputs, len(spans))
        id2label = self.model.config.id2label
        labels = [id2label[t] for t in tags]
        ignore = set(ignore_labels) if ignore_labels is not None else {OUTSIDE}
        if aggregation_strategy == "none":
            return [
                {"entity": label, "score": scores[i], "index": i, "word": text[spans[i][0] : spans[i][1]],
                 "start": spans[i][0], "end": spans[i][1]}
                for i, label in enumerate(labels) if label not in ignore
            ]
        entities = group_entities(labels, scores, spans, text, self.model.config.resolved_tag_scheme)
        return [e for e in entities if e["entity_group"] not in ignore]

    def _decode_stitched(self, all_outputs: list[dict[str, Any]], num_words: int) -> tuple[list[int], list[float]]:
        """One Viterbi pass over a text split in windows, each word scored by its most central window."""
        owner = best_windows([tuple(o["window"]) for o in all_outputs], num_words)
        rows = [all_outputs[k]["emissions"][0, word - all_outputs[k]["window"][0]] for word, k in enumerate(owner)]
        emissions = torch.stack(rows).unsqueeze(0)  # (1, words, labels)
        mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        crf = self.model.crf
        with torch.no_grad():
            tags = crf.viterbi_packed(emissions, mask)  # (1, words)
            probs = crf.marginals_packed(emissions, mask)  # (1, words, labels)
        return tags[0].tolist(), probs[0].gather(1, tags[0].unsqueeze(1)).squeeze(1).tolist()
