"""Tag text with an exported bert-crf folder using only onnxruntime, the tokenizers library and numpy (no torch).

    from ner_onnx import OnnxNerTagger
    tagger = OnnxNerTagger("outputs/demo-onnx")            # or quantized=True for model.int8.onnx
    tagger("梁一鸣在济民中医院工作。")                      # [{"entity_group": "PER", "word": "梁一鸣", ...}, ...]
    tagger(["...", "..."], batch_size=32)                  # a batch
    tagger(list("张三在北京"), is_split_into_words=True)    # pre-split words

Same contract as the PyTorch pipeline (pipeline_bert_crf.py): entities with `word == text[start:end]`, texts of any
length through overlapping windows stitched into one constrained Viterbi pass, scores from CRF marginals. The folder
comes from export_onnx.py: model.onnx (encoder, classifier and CRF decoding), model.int8.onnx, crf.json and
tokenizer.json, with a copy of this file and the ner_*.py files it imports, so that it serves without the bert-crf
repository.

A text that fits one window and has no dictionary is decoded inside the graph (its `tags` and `scores` outputs).
A longer text's windows give their emission scores (the graph's `logits` output), stitched here into one sequence
and decoded by numpy's Viterbi with the same constrained scores (crf.json); so is a text under a dictionary, whose
spans constrain the pass. A folder exported with --emissions_only (or before the decoding graph) is all numpy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

# Windows, stitching and feeding untokenizable words are ner_windows' (shared with the PyTorch pipeline).
from ner_lexicon import LEXICON_FILE, Lexicon, checked_dictionary, dictionary_units, lexicon_bits
from ner_tags import OUTSIDE, group_entities, join_words, span_constraints, word_results
from ner_windows import (
    KNOWN_WORDS_LIMIT,
    backend_words,
    bare_prefix_id,
    drop_bare_prefix,
    encodes_words_alone,
    fed_words,
    isolates_cjk,
    plan_windows,
    split_text,
    stitch_rows,
    window_budget,
    word_pieces,
)


def viterbi(emissions: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray) -> list[int]:
    """Best tag path of one sequence; `emissions` is `(length, tags)`, scores already carry any constraints."""
    score = start + emissions[0]  # (tags,)
    back = np.zeros(emissions.shape, dtype=np.int64)  # (length, tags)
    for t in range(1, len(emissions)):
        candidates = score[:, None] + transitions  # (tags, tags): previous x next
        back[t] = candidates.argmax(0)
        score = candidates.max(0) + emissions[t]
    path = [int((score + end).argmax())]
    for t in range(len(emissions) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    top = values.max(axis=axis, keepdims=True)
    return (np.log(np.exp(values - top).sum(axis=axis, keepdims=True)) + top).squeeze(axis)


def marginals(emissions: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """Posterior probability of each tag at each position `(length, tags)`, in float64 (forward-backward)."""
    emissions, transitions = emissions.astype(np.float64), transitions.astype(np.float64)
    length = len(emissions)
    alpha = np.zeros_like(emissions)
    beta = np.zeros_like(emissions)
    alpha[0] = start + emissions[0]
    for t in range(1, length):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + transitions, axis=0) + emissions[t]
    beta[-1] = end
    for t in range(length - 2, -1, -1):
        beta[t] = _logsumexp(transitions + (emissions[t + 1] + beta[t + 1])[None, :], axis=1)
    scores = alpha + beta
    return np.exp(scores - _logsumexp(scores, axis=1)[:, None])


# The emission of a label a dictionary rules out, as in the PyTorch pipeline: far below any score, yet finite.
RULED_OUT = -1e4


class OnnxNerTagger:
    """An exported bert-crf model: ONNX Runtime for the encoder and CRF, numpy for stitched windows' CRF."""

    def __init__(self, folder: str | Path, quantized: bool = False, threads: int | None = None) -> None:
        folder = Path(folder)
        meta_path = folder / "crf.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: export the model with export_onnx.py first")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.labels: list[str] = meta["labels"]
        self.scheme: str = meta["tag_scheme"]
        self.max_length: int = meta["max_length"]
        self.head, self.tail, self.pad_id = meta["special_head"], meta["special_tail"], meta["pad_id"]
        self.unk_token: str = meta["unk_token"]
        # Decoding and marginals use the constrained scores, as the PyTorch model does.
        self.start = np.asarray(meta["start_transitions"]) + np.asarray(meta["start_penalty"])
        self.end = np.asarray(meta["end_transitions"]) + np.asarray(meta["end_penalty"])
        self.transitions = np.asarray(meta["transitions"]) + np.asarray(meta["transition_penalty"])
        # Scores come from the marginals at the model's confidence temperature (1 in exports that predate it).
        self.temperature: float = meta.get("temperature", 1.0)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # A tokenizer.json may carry truncation (MiniLM's: 128 tokens), which would drop a long text's tail
        # silently; windows handle length here.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # As the PyTorch pipeline: raw text split here for SentencePiece tokenizers, no lone "▁" fed before a word.
        self._split_raw = not isolates_cjk(backend_words(self.tokenizer))
        self._bare_id = bare_prefix_id(self.tokenizer.token_to_id, self.tokenizer.token_to_id(self.unk_token))
        self._known_words: dict[str, bool] = {}  # whether a word gets tokens, shared across texts
        # Each word's ids, remembered where a pre-split word is tokenized as it is alone (see encodes_words_alone).
        self._word_ids: dict[str, list[int]] = {}
        self._per_word = encodes_words_alone(self.tokenizer)
        # A lexicon model's words and feature types: its matches are an input of the graph, as in PyTorch.
        self.lexicon_types: list[str] | None = meta.get("lexicon_types")
        self.lexicon = Lexicon.load(str(folder / LEXICON_FILE)) if self.lexicon_types else None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        model_file = folder / ("model.int8.onnx" if quantized else "model.onnx")
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file} not found (export with --int8 for the quantized model)")
        self.session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self.session.get_inputs()}

    def __call__(
        self,
        inputs: str | Sequence[str] | Sequence[Sequence[str]],
        is_split_into_words: bool = False,
        batch_size: int = 32,
        stride: int | None = None,
        dictionary: Any = None,
        aggregation_strategy: str = "simple",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        if not isinstance(inputs, (str, list, tuple)):
            raise ValueError(
                "expected a string, a list of strings or (is_split_into_words=True) a list of words, "
                f"got {type(inputs).__name__}"
            )
        single = isinstance(inputs, str) or (is_split_into_words and _is_word_list(inputs))
        texts = [inputs] if single else list(inputs)
        results = self.tag_batch(
            texts, is_split_into_words, batch_size, stride, dictionary, aggregation_strategy, ignore_labels
        )
        return results[0] if single else results

    def tag_batch(
        self,
        texts: Sequence[Any],
        is_split_into_words: bool = False,
        batch_size: int = 32,
        stride: int | None = None,
        dictionary: Any = None,
        aggregation_strategy: str = "simple",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Entities of each text. `dictionary` ({word: TYPE or "O"}, or a Lexicon) forces each occurrence of a word
        on word boundaries as one entity of its type, or forbids it, as the PyTorch pipeline does. As in the
        pipeline, `aggregation_strategy="none"` gives each word with its label instead, and `ignore_labels` (default
        ["O"]) are left out."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if aggregation_strategy not in ("none", "simple"):
            raise ValueError(f"aggregation_strategy must be one of ('none', 'simple'), got {aggregation_strategy!r}")
        output = (aggregation_strategy, set(ignore_labels) if ignore_labels is not None else {OUTSIDE})
        lexicon = checked_dictionary(dictionary, self.labels) if dictionary is not None else None
        prepared = [self._prepare(text, is_split_into_words, stride, index) for index, text in enumerate(texts)]
        windows = [(i, w) for i, item in enumerate(prepared) for w in item["windows"]]
        emissions: list[list[np.ndarray]] = [[] for _ in prepared]
        decoded: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(prepared)
        for begin in range(0, len(windows), batch_size):
            chunk = windows[begin : begin + batch_size]
            features = None
            if self.lexicon is not None:  # each word's bits on its first sub-token, as the pipeline places them
                features = [[0] * len(w.input_ids) for _, w in chunk]
                for row, (i, w) in zip(features, chunk):
                    for position, bits in zip(w.chain, prepared[i]["lexicon"][w.start : w.end]):
                        row[position] = bits
            outputs = self._run([w.input_ids for _, w in chunk], features, [w.chain for _, w in chunk])
            logits = outputs[0]  # (batch, seq, labels)
            for row, (i, w) in enumerate(chunk):
                emissions[i].append(logits[row, w.chain])
                # A text in one window, without a dictionary, is decoded by the graph; the others here, below.
                if len(outputs) == 3 and len(prepared[i]["windows"]) == 1 and lexicon is None:
                    decoded[i] = (outputs[1][row, : len(w.chain)], outputs[2][row, : len(w.chain)])
        return [
            self._entities(item, rows, lexicon, done, output) for item, rows, done in zip(prepared, emissions, decoded)
        ]

    # ------------------------------------------------------------------------------------------------------------

    def _prepare(self, text: Any, is_split_into_words: bool, stride: int | None, index: int = 0) -> dict[str, Any]:
        if is_split_into_words:
            if not _is_word_list(text):
                raise ValueError(f"with is_split_into_words=True, expected a list of words, got {type(text).__name__}")
            words = list(text)
            text, spans = join_words(words)
            _check_encodable(text, index)
        elif isinstance(text, str):
            _check_encodable(text, index)
            spans = split_text(text) if self._split_raw else None
            words = [text[start:end] for start, end in spans] if spans is not None else []
        else:
            raise ValueError(
                f"expected a string (or is_split_into_words=True with a list of words), got {type(text).__name__}"
            )
        if spans is None:  # raw text the tokenizer splits itself
            encoding = self.tokenizer.encode(text, add_special_tokens=False) if text else None
        else:
            fed = fed_words(words, self._token_ids, self.unk_token, self._known_words)
            if self._per_word:
                return self._windows(text, [self._token_ids(word) for word in fed], spans, stride)
            encoding = self.tokenizer.encode(fed, is_pretokenized=True, add_special_tokens=False) if fed else None
        if encoding is None or not encoding.ids:
            return {"text": text, "spans": [], "windows": []}
        # Pre-split words keep their spans; in raw text a word spans its sub-tokens' characters.
        pieces, spans = word_pieces(encoding.ids, encoding.word_ids, encoding.offsets, spans)
        return self._windows(text, pieces, spans, stride)

    def _windows(self, text: str, pieces: list[list[int]], spans: list[Any], stride: int | None) -> dict[str, Any]:
        """A text's windows from its words' sub-token ids (every word with at least one) and character spans."""
        if not pieces:
            return {"text": text, "spans": [], "windows": []}
        pieces = drop_bare_prefix(pieces, self._bare_id)
        budget = window_budget(self.max_length, self.head, self.tail)
        windows = plan_windows(pieces, self.head, self.tail, budget, stride)
        bits = lexicon_bits(self.lexicon, text, spans, self.lexicon_types) if self.lexicon is not None else None
        return {"text": text, "spans": spans, "windows": windows, "lexicon": bits}

    def _token_ids(self, word: str) -> list[int]:
        """A word's sub-token ids, tokenized alone (remembered: a text's words mostly repeat)."""
        ids = self._word_ids.get(word)
        if ids is None:
            if len(self._word_ids) > KNOWN_WORDS_LIMIT:
                self._word_ids.clear()
            ids = self._word_ids[word] = self.tokenizer.encode(word, add_special_tokens=False).ids
        return ids

    def _run(
        self, rows: list[list[int]], features: list[list[int]] | None, chains: list[list[int]]
    ) -> list[np.ndarray]:
        """The graph's outputs: logits, then (a decoding graph) each word's tag and its marginal probability."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if features is not None:
            bits = np.zeros((len(rows), width), dtype=np.int64)
            for i, f in enumerate(features):
                bits[i, : len(f)] = f
            feeds["lexicon_features"] = bits
        if "word_starts" in self._input_names:  # each row's word positions, then -1
            starts = np.full((len(rows), max(len(c) for c in chains)), -1, dtype=np.int64)
            for i, chain in enumerate(chains):
                starts[i, : len(chain)] = chain
            feeds["word_starts"] = starts
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})

    def _entities(
        self,
        item: dict[str, Any],
        rows: list[np.ndarray],
        lexicon: Lexicon | None = None,
        decoded: tuple[np.ndarray, np.ndarray] | None = None,
        output: tuple[str, set[str]] = ("simple", {OUTSIDE}),
    ) -> list[dict[str, Any]]:
        spans, text = item["spans"], item["text"]
        if not spans:
            return []
        if decoded is not None:
            tags, probs = decoded
            return self._results([self.labels[t] for t in tags], probs.tolist(), spans, text, output)
        # Stitched windows and dictionaries: one constrained Viterbi pass over the text's stitched emissions.
        emissions = np.stack([rows[k][row] for k, row in stitch_rows(item["windows"], len(spans))])
        forced = dictionary_units(lexicon, text, spans) if lexicon is not None else []
        if forced:
            id2label = dict(enumerate(self.labels))
            allowed, _ = span_constraints(forced, len(spans), id2label, self.scheme)
            emissions = np.where(np.asarray(allowed), emissions, RULED_OUT)  # (words, labels)
        path = viterbi(emissions, self.start, self.end, self.transitions)
        probs = marginals(
            *(scores / self.temperature for scores in (emissions, self.start, self.end, self.transitions))
        )
        scores = [float(probs[i, t]) for i, t in enumerate(path)]
        return self._results([self.labels[t] for t in path], scores, spans, text, output)

    def _results(
        self, labels: list[str], scores: list[float], spans: Any, text: str, output: tuple[str, set[str]]
    ) -> list[dict[str, Any]]:
        strategy, ignore = output
        if strategy == "none":
            return word_results(labels, scores, spans, text, ignore)
        return [e for e in group_entities(labels, scores, spans, text, self.scheme) if e["entity_group"] not in ignore]


def _check_encodable(text: str, index: int) -> None:
    """The tokenizers library takes valid Unicode only; a lone surrogate (e.g. from bytes decoded with
    errors="surrogateescape") would otherwise fail inside it with a TypeError that names neither text nor character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"text {index} has an unencodable character {text[error.start]!r} (a lone surrogate) at position "
            f"{error.start}: pass valid Unicode, e.g. decode bytes with errors='replace'"
        ) from None


def _is_word_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value)
