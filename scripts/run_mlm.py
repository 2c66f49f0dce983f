"""Adapt a BERT encoder to in-domain text by continued masked-language-model pretraining, before NER fine-tuning.

    python scripts/run_mlm.py --model_name_or_path bert-base-chinese --train_files raw.txt \
        --ner_files ../shared/data/resume/train.char.bmes --extend_vocab --output_dir outputs/adapted \
        --max_train_minutes 30

Text comes from raw files (one document or sentence per line) and from NER files (each sentence's tokens joined,
labels ignored: pass training splits only, never the dev or test data you will score on). With `--extend_vocab`,
characters the tokenizer maps to [UNK] join the vocabulary first, so they get trained embeddings before NER sees
them. Lines are tokenized and packed into blocks of `--max_seq_length` ([CLS] ... [SEP]); the last, shorter block
is kept, so no token is dropped. Masking follows BERT: 15% of the tokens are chosen, of which 80% become [MASK],
10% a random token and 10% stay. With `--whole_word_masking` the choice is by word, all pieces of a word together:
the tokenizer's words (an English word's ## pieces; each Chinese character alone), or with `--word_boundaries
whitespace` the words of pre-segmented text ("北京 大学 的 学生"), or with `--word_boundaries jieba` the words of the
jieba segmenter (installed separately). The output folder is a checkpoint `run_ner.py --model_name_or_path` takes
as is. Runs under `accelerate launch` like run_ner.py.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.modeling_outputs import MaskedLMOutput

from bertcrf import arguments, cli, data_files, launch, ner_data, outputs, training
from bertcrf.crf_models import check_model_path
from ner_tags import join_words


logger = logging.getLogger("run_mlm")

WORD_BOUNDARIES = ("tokenizer", "whitespace", "jieba")


@dataclass
class MlmModelArguments:
    model_name_or_path: str = field(metadata={"help": "A BERT checkpoint (Hub id or folder)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloads from the Hub."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models."})


@dataclass
class MlmDataArguments:
    train_files: list[str] = field(default_factory=list, metadata={"help": "Raw text files, one document per line."})
    ner_files: list[str] = field(
        default_factory=list, metadata={"help": "NER data files whose sentences become text (training splits only)."}
    )
    text_key: str | None = field(
        default=None, metadata={"help": "Label Studio --ner_files: the data key holding the text (as run_ner.py)."}
    )
    validation_split_percentage: float = field(default=1.0, metadata={"help": "Lines held out to measure perplexity."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Block length in sub-tokens, [CLS] and [SEP] included."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens chosen for prediction."})
    whole_word_masking: bool = field(default=False, metadata={"help": "Choose and mask whole words."})
    word_boundaries: str = field(default="tokenizer", metadata={"help": f"One of {WORD_BOUNDARIES} (see above)."})
    extend_vocab: bool = field(default=False, metadata={"help": "Add characters the tokenizer maps to [UNK]."})
    extend_vocab_min_count: int = field(default=1, metadata={"help": "Least count for a character to be added."})
    max_train_lines: int | None = field(default=None, metadata={"help": "Use at most this many lines."})
    max_train_minutes: float | None = field(default=None, metadata={"help": "Stop training after this many minutes."})
    save_fractions: list[float] = field(
        default_factory=list,
        metadata={"help": "Also save checkpoint-<step> folders at these fractions of the time budget."},
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[MlmModelArguments, MlmDataArguments, TrainingArguments]:
    model_args, data_args, training_args = arguments.parse_dataclasses((MlmModelArguments, MlmDataArguments), argv)
    if not data_args.train_files and not data_args.ner_files:
        raise ValueError("Need --train_files or --ner_files")
    if data_args.word_boundaries not in WORD_BOUNDARIES:
        raise ValueError(f"--word_boundaries must be one of {WORD_BOUNDARIES}, got {data_args.word_boundaries!r}")
    if not 0.0 < data_args.mlm_probability < 1.0:
        raise ValueError(f"--mlm_probability must be in (0, 1), got {data_args.mlm_probability!r}")
    if data_args.max_seq_length < 3:
        raise ValueError(f"--max_seq_length must be at least 3, got {data_args.max_seq_length}")
    if not 0.0 <= data_args.validation_split_percentage < 100.0:
        raise ValueError(
            f"--validation_split_percentage must be in [0, 100), got {data_args.validation_split_percentage!r}"
        )
    if any(not 0.0 < f < 1.0 for f in data_args.save_fractions):
        raise ValueError(f"--save_fractions must lie in (0, 1), got {data_args.save_fractions}")
    if data_args.save_fractions and not data_args.max_train_minutes:
        raise ValueError("--save_fractions needs --max_train_minutes")
    training_args.remove_unused_columns = False  # the collator needs word_ids, which the model does not take
    training_args.prediction_loss_only = True  # evaluation needs the loss alone, not vocabulary-wide logits
    training_args.metric_for_best_model = "loss"
    training_args.greater_is_better = False
    return model_args, data_args, training_args


# ----------------------------------------------------------------------------------------------------------------
# Text


def ner_file_lines(path: str, text_key: str | None = None) -> list[str]:
    """The sentences of an NER data file as text, labels ignored (character tokens joined directly, words with
    spaces); `text_key` is a Label Studio export's data key holding the text."""
    return [join_words(e["tokens"])[0] for e in data_files.read_file(path, text_key=text_key) if e["tokens"]]


def gather_lines(data_args: MlmDataArguments) -> list[str]:
    lines: list[str] = []
    for path in data_args.train_files:
        before = len(lines)
        lines.extend(ner_data.read_text_lines(path))
        logger.info("%s: %d lines", path, len(lines) - before)
    for path in data_args.ner_files:
        sentences = ner_file_lines(path, data_args.text_key)
        lines.extend(sentences)
        logger.info("%s: %d sentences (labels ignored)", path, len(sentences))
    if data_args.max_train_lines is not None:
        lines = lines[: data_args.max_train_lines]
    if not lines:
        raise ValueError("no text: every input file is empty")
    return lines


def split_words(line: str, boundaries: str) -> list[str] | None:
    """The words of a line for whole-word masking, or None to keep the tokenizer's own words."""
    if boundaries == "whitespace":
        return line.split()
    if boundaries == "jieba":
        try:
            import jieba
        except ImportError as error:
            raise ImportError("--word_boundaries jieba needs the jieba package: pip install jieba") from error
        return [w for w in jieba.lcut(line) if w.strip()]
    return None


# ----------------------------------------------------------------------------------------------------------------
# Tokenizing and packing


def tokenize_lines(lines: list[str], tokenizer: Any, boundaries: str) -> dict[str, list[list[int]]]:
    """Sub-token ids of each line without special tokens, and the word (masking unit) of each sub-token."""
    ids, words = [], []
    for line in lines:
        split = split_words(line, boundaries)
        if split is None:
            encoding = tokenizer(line, add_special_tokens=False)
        else:
            encoding = tokenizer(split, is_split_into_words=True, add_special_tokens=False)
        ids.append(encoding["input_ids"])
        words.append([w if w is not None else -1 for w in encoding.word_ids()])
    return {"input_ids": ids, "word_ids": words}


def pack_blocks(batch: dict[str, list[list[int]]], block: int, cls_id: int, sep_id: int) -> dict[str, list[list[int]]]:
    """Concatenate lines and cut the stream into [CLS] + (block - 2) sub-tokens + [SEP] rows. Word ids become
    unique across lines (so no word spans two lines); the last row may be shorter: nothing is dropped."""
    stream: list[int] = []
    stream_words: list[int] = []
    next_word = 0
    for ids, words in zip(batch["input_ids"], batch["word_ids"]):
        local = {}
        for token, word in zip(ids, words):
            stream.append(token)
            if word not in local:
                local[word] = next_word
                next_word += 1
            stream_words.append(local[word])
    size = block - 2
    rows, row_words = [], []
    for start in range(0, len(stream), size):
        rows.append([cls_id, *stream[start : start + size], sep_id])
        row_words.append([-1, *stream_words[start : start + size], -1])
    return {"input_ids": rows, "word_ids": row_words}


def build_datasets(
    lines: list[str], tokenizer: Any, data_args: MlmDataArguments, training_args: TrainingArguments
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Packed training blocks and, when --validation_split_percentage > 0, packed held-out blocks."""
    rng = random.Random(training_args.seed)
    order = list(range(len(lines)))
    rng.shuffle(order)
    held = int(len(lines) * data_args.validation_split_percentage / 100)
    if data_args.validation_split_percentage > 0 and len(lines) > 1:
        held = max(held, 1)
    splits = {"validation": [lines[i] for i in order[:held]], "train": [lines[i] for i in order[held:]]}
    out: dict[str, datasets.Dataset] = {}
    for split, texts in splits.items():
        if not texts:
            continue
        with training_args.main_process_first(desc=f"{split} tokenization"):
            table = datasets.Dataset.from_dict({"text": texts})
            tokenized = table.map(
                lambda b: tokenize_lines(b["text"], tokenizer, data_args.word_boundaries),
                batched=True,
                remove_columns=["text"],
                desc=f"Tokenizing {split}",
            )
            packed = tokenized.map(
                pack_blocks,
                batched=True,
                batch_size=1000,
                desc=f"Packing {split}",
                fn_kwargs=dict(
                    block=data_args.max_seq_length, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id
                ),
            )
        tokens = sum(len(r) - 2 for r in packed["input_ids"])
        unknown = sum(r.count(tokenizer.unk_token_id) for r in packed["input_ids"])
        logger.info(
            "%s: %d lines -> %d sub-tokens in %d blocks of at most %d ([UNK] %.2f%%)",
            split,
            len(texts),
            tokens,
            len(packed),
            data_args.max_seq_length,
            100 * unknown / max(tokens, 1),
        )
        out[split] = packed
    return out["train"], out.get("validation")


# ----------------------------------------------------------------------------------------------------------------
# Masking


class MaskingCollator:
    """Pads rows and masks them for masked-language modelling: `mlm_probability` of the non-special tokens are
    chosen (by word with `whole_word`), each choice becoming [MASK] 80% of the time, a random non-special token
    10% and staying itself 10% (one decision per word: all its pieces alike). Labels are the original ids at the
    chosen positions, -100 elsewhere."""

    def __init__(
        self,
        tokenizer: Any,
        mlm_probability: float = 0.15,
        whole_word: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        special = set(tokenizer.all_special_ids)
        self.random_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
        self.mlm_probability, self.whole_word, self.generator = mlm_probability, whole_word, generator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)  # (batch, seq)
        labels = torch.full_like(input_ids, -100)
        attention_mask = torch.zeros_like(input_ids)
        for row, feature in enumerate(features):
            ids = torch.tensor(feature["input_ids"], dtype=torch.long)
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
            self._mask_row(input_ids[row], labels[row], feature["word_ids"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _units(self, word_ids: Sequence[int]) -> list[list[int]]:
        """Positions grouped into masking units: by word, or one per position; special positions (-1) never."""
        if not self.whole_word:
            return [[i] for i, w in enumerate(word_ids) if w >= 0]
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(word_ids):
            if w >= 0:
                groups.setdefault(w, []).append(i)
        return list(groups.values())

    def _mask_row(self, ids: torch.Tensor, labels: torch.Tensor, word_ids: Sequence[int]) -> None:
        units = self._units(word_ids)
        tokens = sum(len(u) for u in units)
        if not tokens:
            return
        wanted = max(1, round(self.mlm_probability * tokens))
        order = torch.randperm(len(units), generator=self.generator).tolist()
        chosen = 0
        for index in order:
            if chosen >= wanted:
                break
            unit = units[index]
            if chosen + len(unit) > wanted and chosen > 0:
                continue  # a long word would overshoot: try shorter ones
            positions = torch.tensor(unit)
            labels[positions] = ids[positions]
            draw = float(torch.rand(1, generator=self.generator))
            if draw < 0.8:
                ids[positions] = self.mask_id
            elif draw < 0.9:
                picks = torch.randint(len(self.random_ids), (len(unit),), generator=self.generator)
                ids[positions] = self.random_ids[picks]
            chosen += len(unit)


# ----------------------------------------------------------------------------------------------------------------
# Model and training


def load_tokenizer_and_model(
    model_args: MlmModelArguments, lines: list[str], data_args: MlmDataArguments
) -> tuple[Any, Any]:
    common = dict(cache_dir=model_args.cache_dir, token=model_args.token)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, **common)
    if not tokenizer.is_fast:
        raise ValueError("run_mlm.py needs a fast tokenizer (word_ids() give the masking units)")
    if tokenizer.mask_token_id is None:
        raise ValueError(f"{model_args.model_name_or_path}'s tokenizer has no mask token")
    if data_args.extend_vocab:
        pieces = [{"tokens": ner_data.pre_tokens(line, tokenizer)} for line in lines]
        before = ner_data.unknown_rate(pieces, tokenizer)
        added = ner_data.extend_vocabulary(tokenizer, pieces, data_args.extend_vocab_min_count)
        logger.info(
            "Added %d tokens to the vocabulary (e.g. %s); [UNK] rate %.2f%% -> %.2f%%",
            len(added),
            "".join(added[:20]),
            100 * before,
            100 * ner_data.unknown_rate(pieces, tokenizer),
        )
    model = AutoModelForMaskedLM.from_pretrained(model_args.model_name_or_path, **common)
    if len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
        logger.info("Resized token embeddings to %d", len(tokenizer))
    predict_only_chosen_positions(model)
    return tokenizer, model


def predict_only_chosen_positions(model: Any) -> None:
    """Make `model` run its language-model head only at the positions being predicted (labels != -100).

    The head projects onto the whole vocabulary: for a small encoder with a 30k+ vocabulary it costs more than the
    encoder itself, and 85% of the positions carry no label. The loss is unchanged (mean cross-entropy over the
    chosen positions); the logits returned are those of the chosen positions only. Saving is unaffected.
    """
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None:
        return  # an unfamiliar architecture keeps its own forward

    def forward(input_ids=None, attention_mask=None, labels=None, **kwargs):
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[
            0
        ]  # (batch, seq, hidden)
        if labels is None:
            return MaskedLMOutput(logits=head(hidden))
        chosen = labels != -100  # (batch, seq)
        logits = head(hidden[chosen])  # (chosen, vocab)
        return MaskedLMOutput(loss=F.cross_entropy(logits.float(), labels[chosen]), logits=logits)

    model.forward = forward


class TimeBudget(TrainerCallback):
    """Stops training after `minutes`, and saves a checkpoint when each of `fractions` of the budget has passed."""

    def __init__(self, minutes: float, fractions: Sequence[float] = ()) -> None:
        self.seconds = 60.0 * minutes
        self.pending = sorted(fractions)
        self.start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        elapsed = time.monotonic() - self.start
        if self.pending and elapsed >= self.pending[0] * self.seconds:
            while self.pending and elapsed >= self.pending[0] * self.seconds:
                self.pending.pop(0)
            control.should_save = True
        if elapsed >= self.seconds:
            control.should_training_stop = True
            control.should_save = True
        return control


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = parse_args(argv)
    launch.setup_logging(training_args)
    set_seed(training_args.seed)
    check_model_path(model_args.model_name_or_path)  # before the data is read
    lines = gather_lines(data_args)
    tokenizer, model = load_tokenizer_and_model(model_args, lines, data_args)
    train_set, eval_set = build_datasets(lines, tokenizer, data_args, training_args)
    callbacks = (
        [TimeBudget(data_args.max_train_minutes, data_args.save_fractions)] if data_args.max_train_minutes else []
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=MaskingCollator(tokenizer, data_args.mlm_probability, data_args.whole_word_masking),
        callbacks=callbacks,
    )
    results: dict[str, float] = {}
    if data_args.max_train_minutes:
        training_args.keep_checkpoints = True  # the checkpoints at fractions of the time budget are results here
    if training_args.do_train:
        results.update(training.train(trainer, outputs.prepare_output_dir(training_args), len(train_set)))
    if training_args.do_eval and eval_set is not None:
        scores = trainer.evaluate()
        scores["perplexity"] = math.exp(min(scores["eval_loss"], 50.0))
        trainer.log_metrics("eval", scores)
        trainer.save_metrics("eval", scores)
        results.update(scores)
    outputs.save_outputs(trainer, tokenizer, training_args, results, with_handler=False)
    launch.finish(trainer, training_args, "bert-crf run_mlm.py")
    return results


if __name__ == "__main__":
    launch.cli(functools.partial(cli.run, main))
