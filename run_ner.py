#!/usr/bin/env python
"""Fine-tune, evaluate and predict with a CRF named-entity recognizer, using the stock `Trainer`. The encoder is the
checkpoint's: BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA (picked by its model_type, see `crf_models.FAMILIES`).

The command line is HF's `run_ner.py` (model, data and `TrainingArguments` dataclasses; a single `.json` or `.yaml`
argument is a config file, and further `--key value` arguments override it), plus what a CRF and Chinese data
need: head and CRF learning rates, frozen layers, vocabulary extension, tag schemes, long-sentence windows.

    python run_ner.py --model_name_or_path bert-base-chinese --train_file train.txt --validation_file dev.txt \
        --output_dir out --do_train --do_eval
    python run_ner.py --model_name_or_path nghuyong/ernie-3.0-base-zh --train_file train.txt --output_dir out \
        --do_train
    accelerate launch run_ner.py config.json
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import logging
import math
import os
import re
import shutil
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, HfArgumentParser, Trainer, TrainingArguments, set_seed

import crf_models  # also registers every CRF tagger type with the Auto classes
import ner_data
from bert_crf_utils import group_entities, join_words, max_positions
from configuration_bert_crf import TAG_SCHEMES
from configuration_crf import CrfConfigMixin
from modeling_bert_crf import CrfTaggingMixin

logger = logging.getLogger("run_ner")

SPLITS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
# Model types of trained CRF taggers that run_ner.py continues training (their labels and tag scheme are kept).
TRAINED_CRF_TYPES = frozenset(family.config_class.model_type for family in crf_models.FAMILIES.values())
# A CRF tagger config's own fields: not carried over to a new config built from its values.
CRF_CONFIG_KEYS = ("tag_scheme", "constrain_decoding", "loss_reduction", "special_token_ids", "custom_pipelines")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "A BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA checkpoint (Hub id or folder; bare or with "
                  "its pretraining head), or a CRF tagger trained by run_ner.py."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Config to use if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloads from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the model."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow Hub datasets/models with custom code."})
    ignore_mismatched_sizes: bool = field(default=False, metadata={"help": "Re-initialize heads of another size."})
    head_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the classifier."})
    crf_learning_rate: float = field(default=1e-2, metadata={"help": "Learning rate of the CRF transitions."})
    freeze_layers: int = field(default=0, metadata={"help": "Freeze embeddings and this many lowest layers."})
    tag_scheme: str | None = field(
        default=None,
        metadata={"help": f"Scheme the model tags in, one of {TAG_SCHEMES}. Default: the data's (IOB1 becomes BIO)."},
    )
    constrain_decoding: bool = field(default=True, metadata={"help": "Forbid illegal tag transitions in decoding."})
    loss_reduction: str = field(default="mean", metadata={"help": "CRF loss reduction: mean, sum or token_mean."})
    classifier_dropout: float | None = field(default=None, metadata={"help": "Dropout before the classifier."})
    head: str = field(
        default="crf",
        metadata={"help": "crf (the checkpoint family's CRF tagger: BertCrfForTokenClassification, "
                  "ErnieCrfForTokenClassification, ...) or softmax (the family's stock *ForTokenClassification with "
                  "argmax decoding, as a baseline)."},
    )


@dataclass
class DataTrainingArguments:
    task_name: str = field(default="ner", metadata={"help": "Name of the task (for the model card)."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (e.g. conll2003)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_file: str | None = field(default=None, metadata={"help": "Column, JSON-lines or CLUENER-style file."})
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, same formats."})
    test_file: str | None = field(default=None, metadata={"help": "Prediction data, same formats; tags optional."})
    text_column_name: str | None = field(default=None, metadata={"help": "Token column (default tokens)."})
    label_column_name: str | None = field(default=None, metadata={"help": "Tag column (default tags/ner_tags)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Ignored; kept for HF compatibility."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenizing."})
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": "Longest window in sub-tokens (default: the tokenizer's, at most 512). Longer sentences "
                  "are split into windows, never truncated."},
    )
    doc_stride: int | None = field(
        default=None, metadata={"help": "Sub-tokens shared by windows at eval/predict (default max_seq_length/4)."}
    )
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad every batch to max_seq_length."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the prediction set."})
    label_all_tokens: bool = field(
        default=False, metadata={"help": "Label every sub-token (they all enter the CRF chain), not only the first."}
    )
    return_entity_level_metrics: bool = field(default=False, metadata={"help": "Also report per-type scores."})
    data_tag_scheme: str | None = field(
        default=None, metadata={"help": "Scheme of the data files (default: detected from tags and transitions)."}
    )
    unknown_labels_to_o: bool = field(
        default=False, metadata={"help": "Read eval/test labels unknown to the model as O instead of failing."}
    )
    extend_vocab: bool = field(
        default=False, metadata={"help": "Add training characters that the tokenizer maps to [UNK] to its vocabulary."}
    )
    extend_vocab_min_count: int = field(default=1, metadata={"help": "Least training count for a character to be added."})
    show_examples: int = field(default=0, metadata={"help": "Print this many predicted test sentences."})
    language: str | None = field(default=None, metadata={"help": "Language code for the model card (e.g. zh)."})
    license: str | None = field(default="apache-2.0", metadata={"help": "License for the model card."})


@dataclass
class OutputArguments:
    """Output-folder options of every script; they ride on TrainingArguments (`training_args.<name>`)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into a non-empty --output_dir: start over, removing an earlier run's checkpoints, "
                  "predictions and results (HF v4's flag, which transformers 5 dropped)."},
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": "Keep the checkpoint-N folders (with optimizer state) in --output_dir after training. By "
                  "default they are removed once the final model is saved, so that the folder is a clean Hub repo."},
    )


# ----------------------------------------------------------------------------------------------------------------
# Arguments


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataTrainingArguments, TrainingArguments]:
    """Parse the command line; a leading .json/.yaml file gives defaults that later `--key value` pairs override."""
    model_args, data_args, training_args = parse_dataclasses((ModelArguments, DataTrainingArguments), argv)
    validate_args(model_args, data_args)
    return model_args, data_args, training_args


def parse_dataclasses(classes: tuple[type, ...], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """`classes` and TrainingArguments from the command line (or a leading .json/.yaml file, then overrides), with
    the TrainingArguments defaults NER wants on a CPU: length-grouped batches, the best model by entity F1."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = config_file_to_argv(argv[0]) + argv[1:]
    if not torch.cuda.is_available() and "--use_cpu" not in argv:
        # Without it, processes started by `accelerate launch --multi_gpu` on a CPU-only machine each train alone.
        argv += ["--use_cpu", "True"]
    parser = HfArgumentParser((*classes, OutputArguments, TrainingArguments))
    explain_negative_flags(parser)
    *parsed, output_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    for name, value in vars(output_args).items():
        setattr(training_args, name, value)
    if "--train_sampling_strategy" not in argv:
        training_args.train_sampling_strategy = "group_by_length"
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # avoids a warning per evaluation on CPU
    if "--metric_for_best_model" not in argv:
        # TrainingArguments picks the loss when load_best_model_at_end is set; NER keeps the best entity F1.
        training_args.metric_for_best_model = "f1"
        training_args.greater_is_better = True
    return (*parsed, training_args)


def explain_negative_flags(parser: argparse.ArgumentParser) -> None:
    """HfArgumentParser gives `--no_X` (for a boolean X that defaults to True) the help text of `--X`."""
    actions = {option: action for action in parser._actions for option in action.option_strings}
    for option, action in actions.items():
        positive = actions.get("--" + option.removeprefix("--no_")) if option.startswith("--no_") else None
        if positive is not None and positive is not action:
            action.help = f"Turn off {positive.option_strings[0]} (on by default)."


def config_file_to_argv(path: str) -> list[str]:
    """Turn a JSON/YAML config file into command-line arguments."""
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        values = json.loads(text)
    else:
        import yaml

        values = yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values, found {type(values).__name__}")
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def validate_args(model_args: ModelArguments, data_args: DataTrainingArguments) -> None:
    for name in ("tag_scheme",):
        value = getattr(model_args, name)
        if value is not None and value not in TAG_SCHEMES:
            raise ValueError(f"--{name} must be one of {TAG_SCHEMES}, got {value!r}")
    if data_args.data_tag_scheme is not None and data_args.data_tag_scheme not in TAG_SCHEMES:
        raise ValueError(f"--data_tag_scheme must be one of {TAG_SCHEMES}, got {data_args.data_tag_scheme!r}")
    if data_args.dataset_name is None and not any(getattr(data_args, f) for f in SPLITS.values()):
        raise ValueError("Need --dataset_name or at least one of --train_file, --validation_file, --test_file")
    if model_args.head not in ("crf", "softmax"):
        raise ValueError(f"--head must be crf or softmax, got {model_args.head!r}")
    if model_args.freeze_layers < 0:
        raise ValueError(f"--freeze_layers must be >= 0, got {model_args.freeze_layers}")


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    # Our own counts (windows, [UNK] rates, replaced tokens) are worth seeing on the main process by default.
    own_level = logging.INFO if training_args.should_log and training_args.log_level == "passive" else level
    for log in (logger, logging.getLogger("ner_data")):
        log.setLevel(own_level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    # With CI=true in the environment transformers also hands its records to the root logger: each line twice.
    transformers.utils.logging.disable_propagation()


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What run_ner.py, distill.py and run_mlm.py write into an output folder; --overwrite_output_dir removes the stale
# ones of an earlier run, so that its predictions never sit beside a new model.
STALE_OUTPUTS = ("checkpoint-*", "incomplete-checkpoint-*", "predictions_*", "*_results.json", "trainer_state.json")


def complete_checkpoint(folder: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without a readable one was cut off mid-write."""
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def prepare_output_dir(training_args: TrainingArguments) -> str | None:
    """Check that a training run may write into `output_dir`, and return the checkpoint to resume from.

    An explicit --resume_from_checkpoint wins. Else, when training into a folder that is not empty: an interrupted
    run's last complete checkpoint-N is resumed (newer ones cut off mid-write are renamed incomplete-checkpoint-N
    and reported); a finished run (train_results.json) or any other content is refused unless `overwrite`
    (--overwrite_output_dir), which starts over and removes the earlier run's outputs."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    out = Path(training_args.output_dir)
    if not (training_args.do_train and out.is_dir()):
        return None
    main_process = training_args.process_index == 0
    if training_args.overwrite_output_dir:
        stale = sorted({p for pattern in STALE_OUTPUTS for p in out.glob(pattern)})
        if stale and main_process:
            logger.warning("--overwrite_output_dir: removing %d outputs of an earlier run in %s: %s", len(stale), out,
                           ", ".join(p.name for p in stale))
            for path in stale:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        wait_for_main_process(training_args)
        return None
    steps = sorted((int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name)))
    resume = None
    for step, path in reversed(steps):
        if complete_checkpoint(path):
            resume = path
            break
        if main_process:
            target = path.with_name(f"incomplete-{path.name}")
            logger.warning("%s was cut off while being written (no readable trainer_state.json): renamed to %s", path,
                           target.name)
            shutil.rmtree(target, ignore_errors=True)
            path.rename(target)
    wait_for_main_process(training_args)
    if (out / "train_results.json").is_file():
        raise ValueError(
            f"{out} holds a finished training run (train_results.json). Pass --overwrite_output_dir to train again "
            "into it (its earlier outputs are removed), --resume_from_checkpoint to continue from one of its "
            "checkpoints, or another --output_dir"
        )
    if resume is not None:
        logger.info("Resuming from %s, the last complete checkpoint (pass --overwrite_output_dir to start over)", resume)
        return str(resume)
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith("incomplete-checkpoint-"))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ValueError(
            f"--output_dir {out} is not empty ({shown}) and holds no checkpoint to resume from. Pass "
            "--overwrite_output_dir to write into it anyway, or choose another --output_dir"
        )
    return None


def wait_for_main_process(training_args: TrainingArguments) -> None:
    """Under `accelerate launch`, let the main process finish its file operations before the others read."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ----------------------------------------------------------------------------------------------------------------
# Data


def load_raw_splits(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> dict[str, list[dict[str, Any]]]:
    """Examples of the splits this run needs, from local files or a Hub dataset, truncated by max_*_samples."""
    wanted = {
        "train": training_args.do_train,
        "validation": training_args.do_eval or (training_args.do_train and training_args.eval_strategy != "no"),
        "test": training_args.do_predict,
    }
    tokens_key = data_args.text_column_name or "tokens"
    tags_key = data_args.label_column_name or "tags"
    span_scheme = data_args.data_tag_scheme if data_args.data_tag_scheme not in (None, "none") else "BIO"
    raw: dict[str, list[dict[str, Any]]] = {}
    hub = load_hub_dataset(model_args, data_args) if data_args.dataset_name else {}
    for split, arg in SPLITS.items():
        if not wanted[split]:
            continue
        path = getattr(data_args, arg)
        if path:
            raw[split] = ner_data.read_file(path, tokens_key, tags_key, span_scheme)
        elif split in hub:
            raw[split] = hub[split]
        else:
            raise ValueError(f"--do_{'eval' if split == 'validation' else split} needs --{arg} or a dataset with a {split} split")
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples, "test": data_args.max_predict_samples}
    for split, examples in raw.items():
        if limits[split] is not None:
            raw[split] = examples[: limits[split]]
        check_tagged(raw[split], split)
        tagged = sum(e["tags"] is not None for e in raw[split])
        logger.info("%s: %d sentences, %d tokens, %d tagged", split, len(raw[split]), sum(len(e["tokens"]) for e in raw[split]), tagged)
    return raw


def check_tagged(examples: list[dict[str, Any]], split: str) -> None:
    """Training and evaluation need a tag for every sentence; test data is all tagged (scored) or all untagged. A
    sentence without tags among tagged ones is an error naming it: it would silently switch off scoring."""
    untagged = [e["id"] for e in examples if e["tags"] is None]
    if not untagged or (split == "test" and len(untagged) == len(examples)):
        return
    listing = ", ".join(untagged[:3]) + (f" and {len(untagged) - 3} more" if len(untagged) > 3 else "")
    need = "every sentence tagged" if split != "test" else "every sentence tagged (scored) or none (predicted only)"
    raise ValueError(f"{split} data: {len(untagged)} of {len(examples)} sentences have no tags ({listing}); expected {need}")


def load_hub_dataset(model_args: ModelArguments, data_args: DataTrainingArguments) -> dict[str, list[dict[str, Any]]]:
    """A Hub dataset's splits as examples; tag ids are turned into names through the ClassLabel feature."""
    kwargs: dict[str, Any] = dict(cache_dir=model_args.cache_dir, token=model_args.token)
    if "trust_remote_code" in inspect.signature(datasets.load_dataset).parameters:  # datasets < 4 had scripts
        kwargs["trust_remote_code"] = model_args.trust_remote_code
    dataset = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, **kwargs)
    tokens_key = data_args.text_column_name or "tokens"
    out = {}
    for split, ds in dataset.items():
        tags_key = data_args.label_column_name or ("ner_tags" if "ner_tags" in ds.column_names else "tags")
        feature = ds.features[tags_key].feature if tags_key in ds.features else None
        names = getattr(feature, "names", None)
        examples = []
        for i, record in enumerate(ds):
            tags = record.get(tags_key)
            if tags is not None and names is not None:
                tags = [names[t] for t in tags]
            examples.append({"id": f"{data_args.dataset_name}/{split}:{i}", "tokens": record[tokens_key], "tags": tags})
        out[split] = examples
    return out


def resolve_schemes(
    raw: dict[str, list[dict[str, Any]]], model_args: ModelArguments, data_args: DataTrainingArguments,
    checkpoint: CrfConfigMixin | None,
) -> str:
    """Detect the data's tag scheme, choose the model's (a bert-crf `checkpoint`'s own, if any), convert every
    split's tags to it and return it."""
    data_scheme = data_args.data_tag_scheme or ner_data.detect_examples_scheme(e for examples in raw.values() for e in examples)
    model_scheme = model_args.tag_scheme or ("BIO" if data_scheme == "IOB1" else data_scheme)
    if checkpoint is not None:  # a trained bert-crf model: its labels fix the scheme
        if model_args.tag_scheme not in (None, checkpoint.resolved_tag_scheme):
            raise ValueError(f"--tag_scheme {model_args.tag_scheme} contradicts the checkpoint's {checkpoint.resolved_tag_scheme}")
        model_scheme = checkpoint.resolved_tag_scheme
    logger.info("Tag scheme: data %s, model %s", data_scheme, model_scheme)
    if data_scheme != model_scheme:
        for examples in raw.values():
            for e in examples:
                if e["tags"] is not None:
                    e["tags"] = ner_data.convert_tags(e["tags"], data_scheme, model_scheme)
    return model_scheme


def resolve_labels(
    raw: dict[str, list[dict[str, Any]]], model_args: ModelArguments, data_args: DataTrainingArguments, scheme: str,
    config: CrfConfigMixin | None,
) -> list[str]:
    """The model's labels: a bert-crf checkpoint's (`config`) own, else every label of the scheme for the types in
    training data; evaluation and test tags are checked against them."""
    if config is not None:
        labels = [config.id2label[i] for i in range(config.num_labels)]
    elif "train" in raw:
        labels = ner_data.label_list([e["tags"] for e in raw["train"]], scheme)
    else:
        raise ValueError(f"{model_args.model_name_or_path} has no NER labels; pass --train_file or a bert-crf checkpoint")
    known = set(labels)
    if "train" in raw:
        ner_data.check_labels(raw["train"], known, False, "train")
    for split in ("validation", "test"):
        if split in raw:
            ner_data.check_labels(raw[split], known, data_args.unknown_labels_to_o, split)
    return labels


def checkpoint_config(model_args: ModelArguments) -> CrfConfigMixin | None:
    """The config of `--model_name_or_path` (or `--config_name`) when it is a trained CRF tagger of an encoder family
    (bert_crf, ernie_crf, roberta_crf, ...), else None."""
    source = model_args.config_name or model_args.model_name_or_path
    path = Path(source) / "config.json"
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("model_type") not in TRAINED_CRF_TYPES:
        return None
    try:
        config = transformers.AutoConfig.from_pretrained(
            source, cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token,
        )
    except (OSError, ValueError):  # not reachable, or a model type this transformers does not know: not ours
        return None
    return config if getattr(config, "model_type", None) in TRAINED_CRF_TYPES else None


def load_tokenizer(model_args: ModelArguments, checkpoint: str | None = None) -> Any:
    """The model's tokenizer, or a resumed checkpoint's: its vocabulary may have been extended, and the embeddings
    in the checkpoint follow its ids (rebuilding the extension from reordered data would give other ids)."""
    if checkpoint is not None and (Path(checkpoint) / "tokenizer_config.json").is_file():
        tokenizer = crf_models.load_tokenizer(checkpoint)
        logger.info("Tokenizer of %s (%d tokens): a resumed run keeps the checkpoint's vocabulary", checkpoint, len(tokenizer))
        return tokenizer
    tokenizer = crf_models.load_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token,
    )
    if not tokenizer.is_fast:
        raise ValueError("run_ner.py needs a fast tokenizer (word alignment uses word_ids())")
    return tokenizer


def prepare_words(
    raw: dict[str, list[dict[str, Any]]], tokenizer: Any, data_args: DataTrainingArguments, resuming: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Extend the vocabulary (if asked, and not `resuming`: a checkpoint's tokenizer is already extended) and give
    every word at least one sub-token. Logs [UNK] rates and counts."""
    if "train" in raw:
        before = ner_data.unknown_rate(raw["train"], tokenizer)
        logger.info("[UNK] rate of training words: %.2f%%", 100 * before)
        if data_args.extend_vocab and not resuming:
            added = ner_data.extend_vocabulary(tokenizer, raw["train"], data_args.extend_vocab_min_count)
            after = ner_data.unknown_rate(raw["train"], tokenizer)
            logger.info("Added %d tokens to the vocabulary (e.g. %s); [UNK] rate %.2f%% -> %.2f%%",
                        len(added), "".join(added[:20]), 100 * before, 100 * after)
    for split, examples in raw.items():
        raw[split], replaced = ner_data.replace_untokenizable(examples, tokenizer)
        if replaced:
            logger.info("%s: %d words have no sub-token (%s); they are fed as %s and still get a prediction",
                        split, sum(replaced.values()), dict(replaced.most_common(5)), tokenizer.unk_token)
    return raw


def load_model(model_args: ModelArguments, labels: list[str], scheme: str, tokenizer: Any) -> torch.nn.Module:
    """A CRF tagger for `labels`, of the checkpoint's family (`crf_models.FAMILIES`, by its model_type): a trained
    tagger (bert_crf, ernie_crf, ...) keeps its class; a BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA checkpoint,
    bare or with its pretraining head, gives its body to a new classifier and CRF. `--head softmax` picks the
    family's stock *ForTokenClassification instead. An encoder weight missing from the checkpoint or left unused
    is a ValueError naming it; an unsupported model type is a ValueError naming the supported ones."""
    common = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token)
    id2label = dict(enumerate(labels))
    label_maps = dict(num_labels=len(labels), id2label=id2label, label2id={l: i for i, l in id2label.items()})
    config_path = model_args.config_name or model_args.model_name_or_path
    base = transformers.AutoConfig.from_pretrained(config_path, trust_remote_code=model_args.trust_remote_code, **common)
    family = crf_models.family_of(getattr(base, "model_type", None))
    # Built from the body's config dict: a family config's from_pretrained on another type warns of a mismatch. The
    # CRF settings (and the CRF pipeline) of a trained tagger are set afresh, or dropped for the softmax head.
    dropped = {"model_type", "architectures", "auto_map", "transformers_version", *CRF_CONFIG_KEYS}
    values = {k: v for k, v in base.to_dict().items() if k not in dropped}
    values.update(label_maps)
    if model_args.head == "softmax":
        model_class: type = family.softmax_class
        config = model_class.config_class(**values)
    else:
        model_class = family.crf_class
        config = family.config_class(
            **values, tag_scheme=scheme, constrain_decoding=model_args.constrain_decoding,
            loss_reduction=model_args.loss_reduction, special_token_ids=sorted(set(tokenizer.all_special_ids)),
        )
    if model_args.classifier_dropout is not None:
        config.classifier_dropout = model_args.classifier_dropout
    model, info = model_class.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        output_loading_info=True, **common,
    )
    crf_models.check_loading_info(info, model_args.model_name_or_path)
    logger.info("%s from the %s checkpoint %s", model_class.__name__, base.model_type, model_args.model_name_or_path)
    if len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
        logger.info("Resized token embeddings to %d", len(tokenizer))
    if isinstance(model, CrfTaggingMixin):
        model.apply_decoding_constraints()
        if model_args.freeze_layers:
            model.freeze_encoder_layers(model_args.freeze_layers)
    elif model_args.freeze_layers:
        body = model.base_model
        embeddings = [body.embeddings, *([body.embeddings_project] if hasattr(body, "embeddings_project") else [])]
        for module in [*embeddings, *body.encoder.layer[: model_args.freeze_layers]]:
            module.requires_grad_(False)
    if model_args.freeze_layers:
        logger.info("Froze the embeddings and %d lowest encoder layers", model_args.freeze_layers)
    return model


@dataclass
class EncodedSplit:
    """A split ready for the Trainer, with what it takes to map window rows back to words."""

    examples: list[dict[str, Any]]
    dataset: datasets.Dataset
    rows: list[dict[str, Any]]  # word_start_mask, example_index and unit_offset of each row
    units: list[list[int]]  # per example, chain units of each word


def window_length(data_args: DataTrainingArguments, tokenizer: Any, config: transformers.PretrainedConfig) -> int:
    """Longest window in sub-tokens: --max_seq_length, capped by the tokenizer's and the model's maximum."""
    return min(data_args.max_seq_length or tokenizer.model_max_length, max_positions(config), 512)


def encode_splits(
    raw: dict[str, list[dict[str, Any]]], tokenizer: Any, label2id: dict[str, int], scheme: str, max_len: int,
    data_args: DataTrainingArguments, training_args: TrainingArguments,
) -> dict[str, EncodedSplit]:
    """Tokenize each split into windows: tiling windows for training, overlapping ones to evaluate and predict."""
    window = ner_data.WindowConfig(
        max_seq_length=max_len, stride=data_args.doc_stride if data_args.doc_stride is not None else max_len // 4,
        label_all_tokens=data_args.label_all_tokens, scheme=scheme,
    )
    out = {}
    for split, examples in raw.items():
        labelled = all(e["tags"] is not None for e in examples)
        encode = functools.partial(
            _encode_batch, tokenizer=tokenizer, label2id=label2id if labelled else None, window=window,
            overlap=split != "train",
        )
        with training_args.main_process_first(desc=f"{split} tokenization"):
            table = datasets.Dataset.from_list([{"tokens": e["tokens"], "words": e["words"], "tags": e["tags"]} for e in examples])
            dataset = table.map(
                encode, batched=True, with_indices=True, remove_columns=table.column_names,
                num_proc=data_args.preprocessing_num_workers, desc=f"Tokenizing {split}",
            )
        example_index = dataset["example_index"]
        units: list[list[int]] = [[] for _ in examples]
        for index, row_units in zip(example_index, dataset["units"]):
            units[index] = row_units
        rows = [
            {"word_start_mask": m, "example_index": i, "unit_offset": o}
            for m, i, o in zip(dataset["word_start_mask"], example_index, dataset["unit_offset"])
        ]
        split_count = sum(n > 1 for n in Counter(example_index).values())
        logger.info("%s: %d sentences -> %d windows of at most %d sub-tokens (%d long sentences split)", split,
                    len(examples), len(rows), max_len, split_count)
        out[split] = EncodedSplit(examples, dataset.remove_columns(["example_index", "unit_offset", "units"]), rows, units)
    return out


def _encode_batch(
    batch: dict[str, list[Any]], indices: list[int], tokenizer: Any, label2id: dict[str, int] | None,
    window: ner_data.WindowConfig, overlap: bool,
) -> dict[str, list[Any]]:
    """`datasets.map` worker: a batch of sentences in, their window rows out (with global example indices)."""
    examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
    rows, units = ner_data.encode_examples(examples, tokenizer, label2id, window, overlap)
    columns = ["input_ids", "attention_mask", "token_type_ids", "word_start_mask", "length", "example_index", "unit_offset"]
    if label2id is not None:
        columns.append("labels")
    out: dict[str, list[Any]] = {c: [r[c] for r in rows] for c in columns}
    out["units"] = [units[r["example_index"]] for r in rows]
    out["example_index"] = [indices[i] for i in out["example_index"]]
    return out


class PaddingCollator:
    """Pads each batch to its longest row (dynamic padding), or to `max_length`."""

    PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "word_start_mask": 0, "labels": -100}

    def __init__(self, pad_token_id: int, max_length: int | None = None, multiple_of: int | None = None) -> None:
        self.pad_token_id, self.max_length, self.multiple_of = pad_token_id, max_length, multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = self.max_length or max(len(f["input_ids"]) for f in features)
        if self.multiple_of:
            width = math.ceil(width / self.multiple_of) * self.multiple_of
        batch = {}
        for key in features[0]:
            if key == "length":
                continue
            pad = self.PAD_VALUES.get(key, self.pad_token_id)
            batch[key] = torch.tensor([list(f[key]) + [pad] * (width - len(f[key])) for f in features], dtype=torch.long)
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Training


def build_optimizer(model: torch.nn.Module, training_args: TrainingArguments, model_args: ModelArguments) -> torch.optim.Optimizer:
    """AdamW with separate groups for the BERT body, the classifier and the CRF, each with its own learning rate;
    no weight decay on biases, LayerNorm weights or CRF transitions."""
    rates = {"body": training_args.learning_rate, "head": model_args.head_learning_rate, "crf": model_args.crf_learning_rate}
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "crf" if name.startswith("crf.") else "head" if name.startswith("classifier.") else "body"
        decay = part != "crf" and param.ndim > 1 and "LayerNorm" not in name and "layer_norm" not in name
        groups.setdefault((part, decay), []).append(param)
    param_groups = [
        {"params": params, "lr": rates[part], "weight_decay": training_args.weight_decay if decay else 0.0, "name": f"{part}{'' if decay else '_no_decay'}"}
        for (part, decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(
        param_groups, lr=training_args.learning_rate, betas=(training_args.adam_beta1, training_args.adam_beta2),
        eps=training_args.adam_epsilon,
    )


class NerMetrics:
    """`compute_metrics` for the Trainer: stitches window logits back to sentences, decodes each whole sentence
    with the model's (constrained) CRF, and scores entities with seqeval in strict mode for the tag scheme."""

    def __init__(self, split: EncodedSplit, id2label: dict[int, str], scheme: str, entity_level: bool) -> None:
        self.split, self.id2label, self.scheme, self.entity_level = split, id2label, scheme, entity_level
        self.trainer: Trainer | None = None  # set once the Trainer exists
        self.last_predictions: list[list[str]] = []
        self.last_scores: list[list[float]] = []

    def row_order(self) -> list[int]:
        """The dataset row behind each row of the Trainer's outputs. With `train_sampling_strategy=group_by_length`
        the stock Trainer also length-groups evaluation batches, with a sampler seeded afresh for every evaluation;
        the same sampler gives the permutation."""
        assert self.trainer is not None, "NerMetrics.trainer must be set"
        sampler = self.trainer._get_eval_sampler(self.split.dataset)
        return list(sampler) if sampler is not None else list(range(len(self.split.dataset)))

    def decode(self, logits: np.ndarray) -> list[list[str]]:
        """Word-level tags for every example of the split from the Trainer's window logits (their scores, the
        probability of each word's tag, are kept in `last_scores`)."""
        assert self.trainer is not None, "NerMetrics.trainer must be set"
        order = self.row_order()
        if len(order) != len(logits):
            raise RuntimeError(f"{len(logits)} rows of logits for {len(order)} dataset rows")
        units = [sum(u) for u in self.split.units]
        emissions = ner_data.stitch_emissions(logits, [self.split.rows[i] for i in order], units)
        paths, scores = decode_emissions(self.trainer.model, emissions)
        tags, self.last_scores = [], []
        for i, (path, unit_scores) in enumerate(zip(paths, scores)):
            tags.append(ner_data.unit_tags_to_words([self.id2label[t] for t in path], self.split.units[i], self.scheme))
            firsts = np.cumsum([0, *self.split.units[i][:-1]], dtype=np.int64)  # each word's first unit
            self.last_scores.append([unit_scores[k] for k in firsts] if len(unit_scores) else [])
        return tags

    def __call__(self, eval_prediction: transformers.EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions[0] if isinstance(eval_prediction.predictions, tuple) else eval_prediction.predictions
        self.last_predictions = self.decode(logits)
        gold = [e["tags"] for e in self.split.examples]
        return score_entities(gold, self.last_predictions, self.scheme, self.entity_level)


def decode_emissions(
    model: torch.nn.Module, emissions: list[np.ndarray], batch_size: int = 256
) -> tuple[list[list[int]], list[list[float]]]:
    """Tag paths of variable-length emission arrays and the probability of each tag: the constrained Viterbi path
    and CRF marginals for a CRF model, the argmax and softmax for the softmax baseline. Length-sorted batches."""
    order = sorted(range(len(emissions)), key=lambda i: len(emissions[i]))
    paths: list[list[int]] = [[] for _ in emissions]
    scores: list[list[float]] = [[] for _ in emissions]
    crf = getattr(model, "crf", None)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = [i for i in order[start : start + batch_size] if len(emissions[i])]
        if not chunk:
            continue
        width = len(emissions[chunk[-1]])
        padded = np.zeros((len(chunk), width, emissions[chunk[0]].shape[1]), dtype=np.float32)
        mask = np.zeros((len(chunk), width), dtype=bool)
        for row, i in enumerate(chunk):
            padded[row, : len(emissions[i])] = emissions[i]
            mask[row, : len(emissions[i])] = True
        scores_in, mask_in = torch.from_numpy(padded).to(device), torch.from_numpy(mask).to(device)
        with torch.no_grad():
            if crf is not None:
                best = crf.viterbi_packed(scores_in, mask_in)  # (chunk, width)
                probs = crf.marginals_packed(scores_in, mask_in)  # (chunk, width, labels)
            else:
                probs = scores_in.softmax(-1)
                best = probs.argmax(-1)
            chosen = probs.gather(2, best.clamp(min=0).unsqueeze(2)).squeeze(2)  # (chunk, width)
        best_rows, chosen_rows = best.tolist(), chosen.tolist()
        for row, i in enumerate(chunk):
            paths[i] = best_rows[row][: len(emissions[i])]
            scores[i] = chosen_rows[row][: len(emissions[i])]
    return paths, scores


def score_entities(gold: list[list[str]], predicted: list[list[str]], scheme: str, entity_level: bool) -> dict[str, float]:
    """seqeval precision/recall/F1 (strict, in the scheme's seqeval form) and token accuracy."""
    from seqeval import metrics, scheme as seqeval_schemes

    pairs = [(g, p) for g, p in zip(gold, predicted) if g is not None]
    if not pairs:
        return {}
    y_true = [ner_data.to_seqeval(g, scheme) for g, _ in pairs]
    y_pred = [ner_data.to_seqeval(p, scheme) for _, p in pairs]
    kwargs: dict[str, Any] = {}
    if scheme in ner_data.SEQEVAL_SCHEMES:
        kwargs = {"mode": "strict", "scheme": getattr(seqeval_schemes, ner_data.SEQEVAL_SCHEMES[scheme])}
    report = metrics.classification_report(y_true, y_pred, output_dict=True, zero_division=0, **kwargs)
    overall = report["micro avg"]
    result = {
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "f1": float(overall["f1-score"]),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
    }
    if entity_level:
        for etype, values in report.items():
            if etype.endswith(" avg"):
                continue
            for key, name in (("precision", "precision"), ("recall", "recall"), ("f1-score", "f1"), ("support", "number")):
                result[f"{etype}_{name}"] = float(values[key])
    return result


def build_trainer(
    model: torch.nn.Module, tokenizer: Any, encoded: dict[str, EncodedSplit], scheme: str,
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments,
    trainer_class: type[Trainer] = Trainer, **trainer_kwargs: Any,
) -> tuple[Trainer, dict[str, NerMetrics]]:
    """The stock Trainer (or a subclass) with our optimizer (its default linear warmup/decay schedule) and metrics."""
    metrics = {
        split: NerMetrics(enc, model.config.id2label, scheme, data_args.return_entity_level_metrics)
        for split, enc in encoded.items() if split != "train"
    }
    max_len = window_length(data_args, tokenizer, model.config)
    collator = PaddingCollator(tokenizer.pad_token_id, max_len if data_args.pad_to_max_length else None)
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=encoded["train"].dataset if "train" in encoded else None,
        eval_dataset=encoded["validation"].dataset if "validation" in encoded else None,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=metrics.get("validation"),
        optimizers=(build_optimizer(model, training_args, model_args), None) if training_args.do_train else (None, None),
        **trainer_kwargs,
    )
    for metric in metrics.values():
        metric.trainer = trainer
    return trainer, metrics


def train(trainer: Trainer, checkpoint: str | None, num_examples: int) -> dict[str, float]:
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    metrics = dict(result.metrics, train_samples=num_examples)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        tidy_output_dir(trainer.args)
    return metrics


def tidy_output_dir(training_args: TrainingArguments) -> None:
    """Leave only what a Hub repository needs once the final (or best) model is saved: the checkpoint-N folders
    (optimizer and scheduler state, hundreds of MB) go unless --keep_checkpoints, and training_args.bin (a pickle,
    which the Hub flags) always goes; trainer_state.json keeps the training history."""
    out = Path(training_args.output_dir)
    (out / "training_args.bin").unlink(missing_ok=True)
    if getattr(training_args, "keep_checkpoints", False):
        return
    folders = sorted(p for pattern in ("checkpoint-*", "incomplete-checkpoint-*") for p in out.glob(pattern) if p.is_dir())
    size = sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
    for folder in folders:
        shutil.rmtree(folder)
    if folders:
        logger.info("Removed %d checkpoint folders (%.0f MB) from %s: it holds the final model only "
                    "(--keep_checkpoints keeps them)", len(folders), size / 1e6, out)


def run_split(trainer: Trainer, split: str, encoded: EncodedSplit, metrics: NerMetrics) -> tuple[dict[str, float], list[list[str]]]:
    """Evaluate or predict one split: word-level tags for every example (their probabilities are left in
    `metrics.last_scores`), and scores where it has gold tags."""
    prefix = "eval" if split == "validation" else "predict"
    trainer.compute_metrics = metrics  # scores this split's rows against this split's sentences
    metrics.last_predictions = []
    output = trainer.predict(encoded.dataset, metric_key_prefix=prefix)
    predictions = metrics.last_predictions or metrics.decode(
        output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    )
    scores = dict(output.metrics or {})
    scores[f"{prefix}_samples"] = len(encoded.examples)
    trainer.log_metrics(prefix, scores)
    trainer.save_metrics(prefix, scores)
    return scores, predictions


def evaluate_splits(
    trainer: Trainer, encoded: dict[str, EncodedSplit], metrics: dict[str, NerMetrics], scheme: str,
    data_args: DataTrainingArguments, training_args: TrainingArguments,
) -> dict[str, float]:
    """Evaluate (--do_eval) and predict (--do_predict): scores, and predictions files written by the main process."""
    results: dict[str, float] = {}
    for split in ("validation", "test"):
        if split in encoded and (training_args.do_eval if split == "validation" else training_args.do_predict):
            scores, predictions = run_split(trainer, split, encoded[split], metrics[split])
            results.update(scores)
            if trainer.is_world_process_zero():
                word_scores = metrics[split].last_scores
                write_predictions(training_args.output_dir, split, encoded[split].examples, predictions, word_scores, scheme)
                if split == "test" and data_args.show_examples:
                    show_examples(encoded[split].examples, predictions, word_scores, scheme, data_args.show_examples)
    if trainer.is_world_process_zero():
        summary = ", ".join(f"{name} {100 * results[key]:.2f}" for name, key in (("dev", "eval_f1"), ("test", "predict_f1")) if key in results)
        if summary:
            print(f"Entity F1 (seqeval strict, {scheme}): {summary}")
    return results


# ----------------------------------------------------------------------------------------------------------------
# Outputs


def save_outputs(trainer: Trainer, tokenizer: Any, training_args: TrainingArguments, results: dict[str, float],
                 with_handler: bool) -> None:
    """On the main process: all_results.json and, after training, the tokenizer beside the weights (and, for a
    tagger, handler.py: Hub Inference Endpoints look for it at the repository root)."""
    if not trainer.is_world_process_zero():
        return
    trainer.save_metrics("all", results, combined=False)
    if training_args.do_train:
        tokenizer.save_pretrained(training_args.output_dir)
        if with_handler:
            shutil.copy(Path(__file__).with_name("handler.py"), Path(training_args.output_dir) / "handler.py")


def entities_of(
    tokens: Sequence[str], tags: Sequence[str], scores: Sequence[float], scheme: str
) -> tuple[str, list[dict[str, Any]]]:
    """The text of `tokens` and its entities, as the pipeline gives them: `{"entity_group", "score", "word",
    "start", "end"}` with character offsets into the text."""
    text, spans = join_words(tokens)
    return text, group_entities(tags, scores, spans, text, scheme)


def write_predictions(
    output_dir: str, split: str, examples: list[dict[str, Any]], predictions: list[list[str]],
    scores: list[list[float]], scheme: str,
) -> None:
    """`predictions_<split>.txt` (token [gold] predicted, column format) and `predictions_<split>.jsonl` (`{"id",
    "text", "entities"}`, entities as the pipeline gives them)."""
    folder = Path(output_dir)
    with open(folder / f"predictions_{split}.txt", "w", encoding="utf-8") as column, \
            open(folder / f"predictions_{split}.jsonl", "w", encoding="utf-8") as lines:
        for example, tags, word_scores in zip(examples, predictions, scores):
            if len(tags) != len(example["tokens"]):
                raise RuntimeError(f"{example['id']}: {len(example['tokens'])} tokens but {len(tags)} predictions")
            gold = example["tags"]
            for i, (token, tag) in enumerate(zip(example["tokens"], tags)):
                column.write(f"{token} {gold[i]} {tag}\n" if gold is not None else f"{token} {tag}\n")
            column.write("\n")
            text, entities = entities_of(example["tokens"], tags, word_scores, scheme)
            entities = [dict(e, score=round(e["score"], 4)) for e in entities]
            lines.write(json.dumps({"id": example["id"], "text": text, "entities": entities}, ensure_ascii=False) + "\n")


def show_examples(
    examples: list[dict[str, Any]], predictions: list[list[str]], scores: list[list[float]], scheme: str, count: int
) -> None:
    for example, tags, word_scores in list(zip(examples, predictions, scores))[:count]:
        text, entities = entities_of(example["tokens"], tags, word_scores, scheme)
        found = ", ".join(f"{e['word']}/{e['entity_group']}" for e in entities) or "(no entities)"
        print(f"  {text}\n    -> {found}")


CARD_METRICS = ("precision", "recall", "f1", "accuracy")


def base_model_name(source: str) -> tuple[str, bool]:
    """What a model card calls the starting checkpoint, and whether that is a Hub id: the Hub id, also when given
    as a folder of the Hub cache (`.../models--org--name/snapshots/<hash>`), else the folder's name; never a
    local path."""
    path = Path(source)
    if not path.exists():
        return source, True
    for part in reversed(path.resolve().parts):
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/"), True
    return path.resolve().name, False


def _yaml(value: Any) -> str:
    # JSON scalars are YAML: a data path with ": " or "#" stays one string.
    return json.dumps(value, ensure_ascii=False)


def write_model_card(
    output_dir: str, model_args: ModelArguments, data_args: DataTrainingArguments,
    training_args: TrainingArguments, labels: list[str], scores: dict[str, float], scheme: str,
    model_class: str = "BertCrfForTokenClassification",
) -> None:
    """A Hub model card (README.md): YAML front matter with dev and test scores in model-index, the scores,
    training hyperparameters, framework versions and a usage snippet."""
    name = Path(output_dir).resolve().name
    # The snippet loads the Hub id the card is pushed under, else the folder name (the repo name by default).
    repo_id = training_args.hub_model_id or name
    dataset = data_args.dataset_name or (Path(data_args.train_file).resolve().parent.name if data_args.train_file else "custom")
    base, on_hub = base_model_name(model_args.model_name_or_path)
    base_link = f"[`{base}`](https://huggingface.co/{base})" if on_hub else f"`{base}` (a local folder)"
    types = sorted({l.split("-", 1)[1] for l in labels if "-" in l})
    results = ""
    for prefix, split in (("eval", "validation"), ("predict", "test")):
        metrics = "".join(
            f"          - type: {key}\n            value: {scores[f'{prefix}_{key}']:.4f}\n            name: {split} {key}\n"
            for key in CARD_METRICS if f"{prefix}_{key}" in scores
        )
        if metrics:
            results += (
                f"      - task:\n          type: token-classification\n          name: Named Entity Recognition\n"
                f"        dataset:\n          name: {_yaml(dataset)}\n          type: {_yaml(dataset)}\n"
                f"          split: {split}\n        metrics:\n{metrics}"
            )
    front = (
        "---\n" + (f"language: {_yaml(data_args.language)}\n" if data_args.language else "")
        + f"license: {_yaml(data_args.license)}\nlibrary_name: transformers\npipeline_tag: token-classification\n"
        + "tags:\n  - token-classification\n  - ner\n  - crf\n  - bert-crf\n"
        + f"base_model: {_yaml(base)}\ndatasets:\n  - {_yaml(dataset)}\nmetrics:\n"
        + "".join(f"  - {key}\n" for key in CARD_METRICS)
        + f"model-index:\n  - name: {_yaml(repo_id)}\n    results:\n" + (results or "      []\n") + "---\n"
    )
    rows = [
        f"| {split} | " + " | ".join(f"{100 * scores[f'{prefix}_{key}']:.2f}" if f"{prefix}_{key}" in scores else "" for key in CARD_METRICS) + " |"
        for prefix, split in (("eval", "validation"), ("predict", "test")) if f"{prefix}_f1" in scores
    ]
    table = "| split | " + " | ".join(CARD_METRICS) + " |\n|---|---|---|---|---|\n" + "\n".join(rows) if rows else "(not evaluated)"
    batch = training_args.per_device_train_batch_size * max(1, training_args.world_size) * training_args.gradient_accumulation_steps
    hyper = "\n".join(f"- {k}: {v}" for k, v in (
        ("learning_rate (encoder / classifier / CRF)", f"{training_args.learning_rate:g} / {model_args.head_learning_rate:g} / {model_args.crf_learning_rate:g}"),
        ("total train batch size", batch), ("num_epochs", f"{training_args.num_train_epochs:g}"),
        ("max_steps", training_args.max_steps if training_args.max_steps > 0 else None),
        ("lr_scheduler_type", getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        ("warmup", training_args.warmup_steps or None), ("weight_decay", training_args.weight_decay),
        ("frozen encoder layers", model_args.freeze_layers or None), ("seed", training_args.seed),
        ("max_seq_length (window)", data_args.max_seq_length), ("vocabulary extended", data_args.extend_vocab or None),
    ) if v is not None)
    versions = "\n".join(f"- {m.__name__.capitalize() if m is not torch else 'PyTorch'} {m.__version__}" for m in (transformers, torch, datasets))
    body = f"""
# {repo_id}

A named-entity recognizer (`{model_class}`: {'an encoder and a linear-chain CRF' if 'Crf' in model_class else 'an encoder and a softmax classifier'}), fine-tuned from {base_link} on {dataset} with the
`run_ner.py` of bert-crf.
Tags: {scheme} over {', '.join(types) or 'no entity types'}; decoding is
{'constrained to legal ' + scheme + ' transitions' if model_args.constrain_decoding else 'unconstrained'} (Viterbi over a linear-chain CRF).

## Evaluation

Entity-level scores (seqeval, strict {scheme}), in percent:

{table}

## Usage

```python
from transformers import pipeline

# The checkpoint ships its own pipeline, which decodes with the (constrained) CRF instead of an argmax.
ner = pipeline("token-classification", model="{repo_id}", trust_remote_code=True)
print(ner("张伟在北京的华为公司工作。", aggregation_strategy="simple"))
# [{{'entity_group': ..., 'score': ..., 'word': ..., 'start': ..., 'end': ...}}, ...]
```

`"{repo_id}"` is {'the Hub id this card was pushed under' if training_args.hub_model_id else 'the output folder: a local path, or the Hub repository of that name once uploaded'}.
Scores are CRF marginal probabilities; `word == text[start:end]`; texts longer than the model's window are tagged
through overlapping windows. The model itself (`AutoModelForTokenClassification`, `trust_remote_code=True`) returns
`predictions`: the Viterbi tag at each word's first sub-token, -100 elsewhere. `handler.py` serves the model on
Inference Endpoints.

## Training hyperparameters

{hyper}

## Framework versions

{versions}
"""
    (Path(output_dir) / "README.md").write_text(front + body, encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    set_seed(training_args.seed)
    checkpoint = prepare_output_dir(training_args)
    raw = load_raw_splits(model_args, data_args, training_args)
    trained_config = checkpoint_config(model_args)
    scheme = resolve_schemes(raw, model_args, data_args, trained_config)
    labels = resolve_labels(raw, model_args, data_args, scheme, trained_config)
    tokenizer = load_tokenizer(model_args, checkpoint)
    raw = prepare_words(raw, tokenizer, data_args, resuming=checkpoint is not None)
    model = load_model(model_args, labels, scheme, tokenizer)
    max_len = window_length(data_args, tokenizer, model.config)
    encoded = encode_splits(raw, tokenizer, model.config.label2id, scheme, max_len, data_args, training_args)
    trainer, metrics = build_trainer(model, tokenizer, encoded, scheme, model_args, data_args, training_args)
    results: dict[str, float] = {}
    if training_args.do_train:
        results.update(train(trainer, checkpoint, len(raw["train"])))
    results.update(evaluate_splits(trainer, encoded, metrics, scheme, data_args, training_args))
    save_outputs(trainer, tokenizer, training_args, results, with_handler=True)
    if trainer.is_world_process_zero() and training_args.do_train:
        write_model_card(training_args.output_dir, model_args, data_args, training_args, labels, results, scheme,
                         type(model).__name__)
    if training_args.push_to_hub:
        # Trainer.push_to_hub rewrites README.md with its generic card just before uploading: keep ours instead.
        trainer.create_model_card = lambda **_: write_model_card(
            training_args.output_dir, model_args, data_args, training_args, labels, results, scheme, type(model).__name__
        )
        trainer.push_to_hub(commit_message="bert-crf run_ner.py")
    end_processes(trainer)
    return results


# Trainers of finished launched runs, kept alive until os._exit (see end_processes).
_FINISHED: list[Trainer] = []


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def finish(trainer: Trainer, training_args: TrainingArguments, commit_message: str) -> None:
    """Push the output folder to the Hub when asked, then end the launched processes."""
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=commit_message)
    end_processes(trainer)


def end_processes(trainer: Trainer) -> None:
    """Under `accelerate launch`, wait until every process has written its files. The trainer is kept alive: freeing
    its DDP reducer frees the Gloo process group, whose destructor joins Gloo's threads while holding the GIL, and
    one of them may still need the GIL to free a finished collective's tensor, which deadlocks (about 1 run in 40
    here). `cli` then leaves through os._exit."""
    if distributed():
        trainer.accelerator.wait_for_everyone()
        _FINISHED.append(trainer)


def cli(entry: Callable[[], Any] | None = None) -> None:
    """The script's entry point (`entry`, run_ner's `main` by default). A launched process leaves through os._exit once its output is flushed, so that no
    Gloo destructor runs: at interpreter exit they deadlock (above) or abort ("terminate called without an active
    exception")."""
    try:
        (entry or main)()
    except BaseException:
        if not distributed():
            raise
        traceback.print_exc()
        _leave(1)
    if distributed():
        _leave(0)


def _leave(status: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    cli()
