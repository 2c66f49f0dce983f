"""Logging, and how a script ends under `accelerate launch` (shared by run_ner.py, distill.py and run_mlm.py)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any, Callable

import datasets
import torch
import transformers
from transformers import Trainer, TrainingArguments


logger = logging.getLogger(__name__)

# The library's and the scripts' loggers, whose counts (windows, [UNK] rates, replaced tokens) setup_logging shows.
OWN_LOGGERS = ("bertcrf", "run_ner", "distill", "run_mlm")


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    # Our own counts (windows, [UNK] rates, replaced tokens) are worth seeing on the main process by default.
    own_level = logging.INFO if training_args.should_log and training_args.log_level == "passive" else level
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own_level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    # With CI=true in the environment transformers also hands its records to the root logger: each line twice.
    transformers.utils.logging.disable_propagation()


def wait_for_main_process(training_args: TrainingArguments) -> None:
    """Under `accelerate launch`, let the main process finish its file operations before the others read."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


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


def cli(entry: Callable[[], Any]) -> None:
    """A script's entry point: runs `entry` (its `main`). A launched process leaves through os._exit once its output
    is flushed, so that no Gloo destructor runs: at interpreter exit they deadlock (above) or abort ("terminate
    called without an active exception")."""
    try:
        entry()
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
