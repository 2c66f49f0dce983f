"""The command line shared by run_ner.py, distill.py and run_mlm.py: HF's argument dataclasses, config files,
and the output-folder options every script has."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import HfArgumentParser, TrainingArguments

from bertcrf.data_files import DATA_FORMATS, DOCCANO_OFFSETS
from bertcrf.lexicon import LEXICON_FORMATS
from configuration_bert_crf import TAG_SCHEMES
from configuration_crf import LEXICON_COMBINATIONS


logger = logging.getLogger(__name__)


SPLITS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "A BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA checkpoint (Hub id or folder; bare or with "
            "its pretraining head), or a CRF tagger trained by run_ner.py."
        }
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
    num_hidden_layers: int | None = field(
        default=None,
        metadata={
            "help": "Keep only the encoder's lowest N layers (the rest of the checkpoint's are not loaded): about N/L "
            "of the encoder's cost for training and tagging. Default: all."
        },
    )
    layer_mix: bool = field(
        default=False,
        metadata={"help": "Classify a learned weighted sum of every encoder layer's states instead of the last's."},
    )
    layer_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay: encoder layer k of L learns at learning_rate * decay^(L-k), the "
            "embeddings at decay^L (1.0: one rate for the whole encoder)."
        },
    )
    lexicon: list[str] | None = field(
        default=None,
        metadata={
            "help": "Lexicon file(s) whose word matches become model inputs (saved with the model as lexicon.tsv): "
            "jieba's `word freq pos` lines (its dict.txt) or `word<TAB>TYPE` lines."
        },
    )
    lexicon_format: str = field(default="auto", metadata={"help": f"Lexicon format, one of {LEXICON_FORMATS}."})
    lexicon_type_map: str | None = field(
        default=None,
        metadata={
            "help": 'JSON mapping of the files\' types to feature types, e.g. {"nr": "PER", "ns": "LOC"} (null drops '
            "a type). Default: jieba's tags as PER, LOC, ORG, MISC; TSV types as written."
        },
    )
    lexicon_other_type: str = field(
        default="WORD",
        metadata={"help": 'Feature type of lexicon words whose type the map lacks ("" leaves them out).'},
    )
    lexicon_combination: str = field(
        default="input",
        metadata={"help": f"Where lexicon features enter: one of {LEXICON_COMBINATIONS}."},
    )
    tag_scheme: str | None = field(
        default=None,
        metadata={"help": f"Scheme the model tags in, one of {TAG_SCHEMES}. Default: the data's (IOB1 becomes BIO)."},
    )
    constrain_decoding: bool = field(default=True, metadata={"help": "Forbid illegal tag transitions in decoding."})
    loss_reduction: str = field(default="mean", metadata={"help": "CRF loss reduction: mean, sum or token_mean."})
    classifier_dropout: float | None = field(default=None, metadata={"help": "Dropout before the classifier."})
    calibrate: bool = field(
        default=True,
        metadata={
            "help": "After training, fit the CRF's confidence temperature on the validation split (with --do_eval) "
            "so that entity scores match how often such entities are right, and its mistake temperature so that "
            "texts' mistake probabilities match how often texts hold a mistake; stored in config.json."
        },
    )
    head: str = field(
        default="crf",
        metadata={
            "help": "crf (the checkpoint family's CRF tagger: BertCrfForTokenClassification, "
            "ErnieCrfForTokenClassification, ...) or softmax (the family's stock *ForTokenClassification with "
            "argmax decoding, as a baseline)."
        },
    )


@dataclass
class DataTrainingArguments:
    task_name: str = field(default="ner", metadata={"help": "Name of the task (for the model card)."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (e.g. conll2003)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Column, JSON-lines, CLUENER, doccano or Label Studio file, or a brat folder (--data_format)."
        },
    )
    extra_train_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "More training files, read like --train_file and added to it after --max_train_samples (a small "
            "sample of another kind of text, say)."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, same formats."})
    test_file: str | None = field(default=None, metadata={"help": "Prediction data, same formats; tags optional."})
    data_format: str = field(
        default="auto",
        metadata={
            "help": f"Format of the data files, one of {DATA_FORMATS}. auto: from their content (a folder with .ann "
            "files is brat, a JSON list Label Studio, JSON lines with a list of spans doccano, with a {type: ...} "
            "label CLUENER)."
        },
    )
    text_key: str | None = field(
        default=None,
        metadata={
            "help": "Label Studio: the key of each task's data that holds the text (the name in your labeling "
            'config\'s value="$KEY"). Default: "text", else the only string in data.'
        },
    )
    doccano_offsets: str = field(
        default="auto",
        metadata={
            "help": f"doccano: the unit of the offsets, one of {DOCCANO_OFFSETS}. doccano counts UTF-16 code units "
            "(an emoji or 𠀐 is two), or grapheme clusters in a project that counts them as one character; "
            "characters: Python's count, as other tools write. auto: UTF-16 unless the spans say characters."
        },
    )
    text_column_name: str | None = field(default=None, metadata={"help": "Token column (default tokens)."})
    label_column_name: str | None = field(default=None, metadata={"help": "Tag column (default tags/ner_tags)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Ignored; kept for HF compatibility."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenizing."})
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest window in sub-tokens (default: the tokenizer's, at most 512). Longer sentences "
            "are split into windows, never truncated."
        },
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
    extend_vocab_min_count: int = field(
        default=1, metadata={"help": "Least training count for a character to be added."}
    )
    show_examples: int = field(default=0, metadata={"help": "Print this many predicted test sentences."})
    language: str | None = field(default=None, metadata={"help": "Language code for the model card (e.g. zh)."})
    license: str | None = field(default="apache-2.0", metadata={"help": "License for the model card."})
    card_datasets: list[str] | None = field(
        default=None,
        metadata={"help": "Hub ids of the training data for the model card's metadata (e.g. levow/msra_ner)."},
    )
    card_notes: str | None = field(
        default=None,
        metadata={
            "help": "A Markdown file for the model card: what the model was trained on, what it is not good at."
        },
    )


@dataclass
class OutputArguments:
    """Output-folder options of every script; they ride on TrainingArguments (`training_args.<name>`)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into a non-empty --output_dir: start over, removing an earlier run's checkpoints, "
            "predictions and results (HF v4's flag, which transformers 5 dropped)."
        },
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "Keep the checkpoint-N folders (with optimizer state) in --output_dir after training. By "
            "default they are removed once the final model is saved, so that the folder is a clean Hub repo."
        },
    )


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
    if data_args.data_format not in DATA_FORMATS:
        raise ValueError(f"--data_format must be one of {DATA_FORMATS}, got {data_args.data_format!r}")
    if data_args.doccano_offsets not in DOCCANO_OFFSETS:
        raise ValueError(f"--doccano_offsets must be one of {DOCCANO_OFFSETS}, got {data_args.doccano_offsets!r}")
    if data_args.dataset_name is None and not any(getattr(data_args, f) for f in SPLITS.values()):
        raise ValueError("Need --dataset_name or at least one of --train_file, --validation_file, --test_file")
    if model_args.head not in ("crf", "softmax"):
        raise ValueError(f"--head must be crf or softmax, got {model_args.head!r}")
    if model_args.freeze_layers < 0:
        raise ValueError(f"--freeze_layers must be >= 0, got {model_args.freeze_layers}")
    if model_args.num_hidden_layers is not None and model_args.num_hidden_layers < 1:
        raise ValueError(f"--num_hidden_layers must be >= 1, got {model_args.num_hidden_layers}")
    if not 0.0 < model_args.layer_lr_decay <= 1.0:
        raise ValueError(f"--layer_lr_decay must be in (0, 1], got {model_args.layer_lr_decay}")
    if model_args.lexicon_format not in LEXICON_FORMATS:
        raise ValueError(f"--lexicon_format must be one of {LEXICON_FORMATS}, got {model_args.lexicon_format!r}")
    if model_args.lexicon_combination not in LEXICON_COMBINATIONS:
        raise ValueError(
            f"--lexicon_combination must be one of {LEXICON_COMBINATIONS}, got {model_args.lexicon_combination!r}"
        )
    lexicon_type_map(model_args)
    if data_args.card_notes is not None and not os.path.isfile(data_args.card_notes):
        raise FileNotFoundError(f"--card_notes {data_args.card_notes}: no such file (a Markdown file for the card)")
    if model_args.head == "softmax" and (model_args.lexicon or model_args.layer_mix):
        raise ValueError("--lexicon and --layer_mix need the CRF head (--head crf)")


def lexicon_type_map(model_args: ModelArguments) -> dict[str, str | None] | None:
    """--lexicon_type_map parsed: a JSON object of strings to strings or null; a ValueError naming the value."""
    if model_args.lexicon_type_map is None:
        return None
    try:
        mapping = json.loads(model_args.lexicon_type_map)
    except json.JSONDecodeError as error:
        raise ValueError(f"--lexicon_type_map must be a JSON object, got {model_args.lexicon_type_map!r} ({error})")
    if not isinstance(mapping, dict) or not all(v is None or isinstance(v, str) for v in mapping.values()):
        raise ValueError(
            f"--lexicon_type_map must map types to feature types or null, got {model_args.lexicon_type_map!r}"
        )
    return mapping
