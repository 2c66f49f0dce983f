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

A mistake in the data or the options is printed as one message and the run ends with status 1, without a traceback
(BERTCRF_TRACEBACK=1 shows it). A run never overwrites its inputs: `--output_dir` may not be the model it starts
from when training, nor hold a data file where the run writes (`predictions_*`, results, checkpoints).
"""

from __future__ import annotations

import functools
import logging
from typing import Sequence

from transformers import TrainingArguments, set_seed

from bertcrf import cli, launch
from bertcrf.arguments import SPLITS, DataTrainingArguments, ModelArguments, parse_dataclasses, validate_args
from bertcrf.crf_models import check_model_path
from bertcrf.launch import end_processes, setup_logging
from bertcrf.model_card import write_model_card
from bertcrf.outputs import check_inputs, prepare_output_dir, save_outputs
from bertcrf.training import (
    build_trainer,
    checkpoint_config,
    encode_splits,
    evaluate_splits,
    lexicon_of,
    load_model,
    load_raw_splits,
    load_tokenizer,
    prepare_words,
    resolve_labels,
    resolve_schemes,
    train,
    window_length,
)


logger = logging.getLogger("run_ner")


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataTrainingArguments, TrainingArguments]:
    """Parse the command line; a leading .json/.yaml file gives defaults that later `--key value` pairs override."""
    model_args, data_args, training_args = parse_dataclasses((ModelArguments, DataTrainingArguments), argv)
    validate_args(model_args, data_args)
    check_model_path(model_args.model_name_or_path)  # before minutes of data reading
    check_inputs(
        training_args,
        {f"--{name}": getattr(model_args, name) for name in ("model_name_or_path", "config_name", "tokenizer_name")},
        {f"--{name}": getattr(data_args, name) for name in (*SPLITS.values(), "extra_train_files")},
    )
    return model_args, data_args, training_args


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
    encoded = encode_splits(
        raw, tokenizer, model.config.label2id, scheme, max_len, data_args, training_args, lexicon_of(model)
    )
    trainer, metrics = build_trainer(model, tokenizer, encoded, scheme, model_args, data_args, training_args)
    results: dict[str, float] = {}
    if training_args.do_train:
        results.update(train(trainer, checkpoint, len(raw["train"])))
    calibrate = model_args.calibrate and training_args.do_train
    results.update(evaluate_splits(trainer, encoded, metrics, scheme, data_args, training_args, calibrate))
    save_outputs(trainer, tokenizer, training_args, results, with_handler=True)
    if trainer.is_world_process_zero() and training_args.do_train:
        write_model_card(
            training_args.output_dir,
            model_args,
            data_args,
            training_args,
            labels,
            results,
            scheme,
            type(model).__name__,
        )
    if training_args.push_to_hub:
        # Trainer.push_to_hub rewrites README.md with its generic card just before uploading: keep ours instead.
        trainer.create_model_card = lambda **_: write_model_card(
            training_args.output_dir,
            model_args,
            data_args,
            training_args,
            labels,
            results,
            scheme,
            type(model).__name__,
        )
        trainer.push_to_hub(commit_message="bert-crf run_ner.py")
    end_processes(trainer)
    return results


if __name__ == "__main__":
    launch.cli(functools.partial(cli.run, main))
