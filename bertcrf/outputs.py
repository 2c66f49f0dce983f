"""What a run leaves in its output folder: the resume/overwrite rules, predictions files, the model card, and
the clean-up that leaves a Hub repository. A run never overwrites or removes its own inputs (`check_inputs`), and
the files written here appear only once complete (`safe_files.atomic_write`): an interrupted run leaves the earlier
file, not half of a new one."""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from transformers import Trainer, TrainingArguments

from bertcrf import shipping
from bertcrf.launch import wait_for_main_process
from bertcrf.safe_files import atomic_write, same_path, within, write_text
from ner_tags import group_entities, join_words


logger = logging.getLogger(__name__)


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# What run_ner.py, distill.py and run_mlm.py write into an output folder; --overwrite_output_dir removes the stale
# ones of an earlier run, so that its predictions never sit beside a new model.
STALE_OUTPUTS = ("checkpoint-*", "incomplete-checkpoint-*", "predictions_*", "*_results.json", "trainer_state.json")


# What a run writes (or, for the first ones, removes) at the top of its output folder: an input there would be lost.
RUN_OUTPUTS = (
    *STALE_OUTPUTS,
    "all_results.json",
    "README.md",
    *shipping.SERVING_FILES,
    "requirements.txt",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "training_args.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "*.py",
)


def check_inputs(
    training_args: TrainingArguments, models: Mapping[str, str | None], data: Mapping[str, str | Sequence[str] | None]
) -> None:
    """Refuse a run that would overwrite or remove one of its inputs, before it touches anything: training into the
    folder of a model it starts from (`models`, option -> path; Hub ids are left alone), and any input that lies in
    `--output_dir` where the run writes or removes files (predictions files and results; when training also
    checkpoint-N folders and the model's files, `RUN_OUTPUTS`), e.g. `--test_file out/predictions_test.jsonl`."""
    out = Path(training_args.output_dir)
    for option, path in models.items():
        if training_args.do_train and path and Path(path).exists() and same_path(path, out):
            raise ValueError(
                f"--output_dir {out} is the {option} folder: training would overwrite the model it starts from "
                f"(its weights, config, tokenizer and README.md). Choose another --output_dir"
            )
    inputs = [(option, path) for option, path in models.items() if path and Path(path).exists()]
    for option, value in data.items():
        for path in [value] if isinstance(value, str) else value or ():
            inputs.append((option, path))
    # Without training, a run only writes predictions files and results.
    written = RUN_OUTPUTS if training_args.do_train else ("predictions_*", "*_results.json")
    for option, path in inputs:
        if not within(path, out) or same_path(path, out):
            continue
        resolved = Path(path).resolve()
        top = next(p for p in (resolved, *resolved.parents) if same_path(p.parent, out))
        if any(fnmatch.fnmatch(top.name, pattern) for pattern in written):
            raise ValueError(
                f"{option} {path} lies in --output_dir {out} where the run writes or removes {top.name}: it would "
                f"be lost. Move it out of {out}, or choose another --output_dir"
            )


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
            logger.warning(
                "--overwrite_output_dir: removing %d outputs of an earlier run in %s: %s",
                len(stale),
                out,
                ", ".join(p.name for p in stale),
            )
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
            logger.warning(
                "%s was cut off while being written (no readable trainer_state.json): renamed to %s", path, target.name
            )
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
        logger.info(
            "Resuming from %s, the last complete checkpoint (pass --overwrite_output_dir to start over)", resume
        )
        return str(resume)
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith("incomplete-checkpoint-"))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ValueError(
            f"--output_dir {out} is not empty ({shown}) and holds no checkpoint to resume from. Pass "
            "--overwrite_output_dir to write into it anyway, or choose another --output_dir"
        )
    return None


def tidy_output_dir(training_args: TrainingArguments) -> None:
    """Leave only what a Hub repository needs once the final (or best) model is saved: the checkpoint-N folders
    (optimizer and scheduler state, hundreds of MB) go unless --keep_checkpoints, and training_args.bin (a pickle,
    which the Hub flags) always goes; trainer_state.json keeps the training history."""
    out = Path(training_args.output_dir)
    (out / "training_args.bin").unlink(missing_ok=True)
    if getattr(training_args, "keep_checkpoints", False):
        return
    folders = sorted(
        p for pattern in ("checkpoint-*", "incomplete-checkpoint-*") for p in out.glob(pattern) if p.is_dir()
    )
    size = sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
    for folder in folders:
        shutil.rmtree(folder)
    if folders:
        logger.info(
            "Removed %d checkpoint folders (%.0f MB) from %s: it holds the final model only "
            "(--keep_checkpoints keeps them)",
            len(folders),
            size / 1e6,
            out,
        )


# A Gradio Space installs requirements.txt (gradio itself comes with the Space's SDK; listed for running elsewhere).
DEMO_REQUIREMENTS = """\
# The demo (python app.py), also as a Gradio Space: pip install -r requirements.txt
torch>=2.1
transformers>=5.0,<6
gradio>=6.0
"""


def write_demo_requirements(output_dir: str | Path) -> None:
    """The web demo's requirements.txt beside app.py (a serving file), so that the folder runs as a Gradio Space:
    app.py loads the folder it sits in, with the model code shipped there."""
    write_text(Path(output_dir) / "requirements.txt", DEMO_REQUIREMENTS)


def save_outputs(
    trainer: Trainer, tokenizer: Any, training_args: TrainingArguments, results: dict[str, float], with_handler: bool
) -> None:
    """On the main process: all_results.json and, after training, the tokenizer beside the weights (and, for a
    tagger, handler.py: Hub Inference Endpoints look for it at the repository root; and the web demo, app.py)."""
    if not trainer.is_world_process_zero():
        return
    trainer.save_metrics("all", results, combined=False)
    if training_args.do_train:
        # The weights were saved when training ended; the confidence temperature is fitted after, into config.json.
        trainer.model.config.save_pretrained(training_args.output_dir)
        tokenizer.save_pretrained(training_args.output_dir)
        if with_handler:
            shipping.copy_files(shipping.SERVING_FILES, training_args.output_dir)
            write_demo_requirements(training_args.output_dir)


def entities_of(
    example: dict[str, Any], tags: Sequence[str], scores: Sequence[float], scheme: str
) -> tuple[str, list[dict[str, Any]]]:
    """The text of an example and its entities, as the pipeline gives them: `{"entity_group", "score", "word",
    "start", "end"}` with character offsets into the text. Examples read from character spans (the annotation
    tools' exports) keep their own text and token offsets, so "York's" stays "York's"; others are joined."""
    tokens = example["tokens"]
    text, spans = example.get("text"), example.get("offsets")
    if not isinstance(text, str) or spans is None or len(spans) != len(tokens):
        text, spans = join_words(tokens)
    return text, group_entities(tags, scores, [tuple(span) for span in spans], text, scheme)


def write_predictions(
    output_dir: str,
    split: str,
    examples: list[dict[str, Any]],
    predictions: list[list[str]],
    scores: list[list[float]],
    scheme: str,
) -> None:
    """`predictions_<split>.txt` (token [gold] predicted, column format) and `predictions_<split>.jsonl` (`{"id",
    "text", "entities"}`, entities as the pipeline gives them). Each appears only once complete."""
    folder = Path(output_dir)
    with (
        atomic_write(folder / f"predictions_{split}.txt") as column,
        atomic_write(folder / f"predictions_{split}.jsonl") as lines,
    ):
        for example, tags, word_scores in zip(examples, predictions, scores):
            if len(tags) != len(example["tokens"]):
                raise RuntimeError(f"{example['id']}: {len(example['tokens'])} tokens but {len(tags)} predictions")
            gold = example["tags"]
            for i, (token, tag) in enumerate(zip(example["tokens"], tags)):
                column.write(f"{token} {gold[i]} {tag}\n" if gold is not None else f"{token} {tag}\n")
            column.write("\n")
            text, entities = entities_of(example, tags, word_scores, scheme)
            entities = [dict(e, score=round(e["score"], 4)) for e in entities]
            lines.write(
                json.dumps({"id": example["id"], "text": text, "entities": entities}, ensure_ascii=False) + "\n"
            )


def show_examples(
    examples: list[dict[str, Any]], predictions: list[list[str]], scores: list[list[float]], scheme: str, count: int
) -> None:
    for example, tags, word_scores in list(zip(examples, predictions, scores))[:count]:
        text, entities = entities_of(example, tags, word_scores, scheme)
        found = ", ".join(f"{e['word']}/{e['entity_group']}" for e in entities) or "(no entities)"
        print(f"  {text}\n    -> {found}")
