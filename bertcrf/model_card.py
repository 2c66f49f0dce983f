"""The model card (README.md) of a trained folder, written with huggingface_hub's `ModelCard` from
`templates/model_card.md`: metadata the Hub validates (base model and datasets by Hub id, a model-index with every
evaluation, widget examples in the model's language) and a body with the scores, usage and hyperparameters.

An encoder folder made here (convert_e5.py, trim_vocab.py) carries a card too, naming the Hub model it came from
and what was done to it (`note_derivation`): a model fine-tuned from that folder names the Hub id as its base.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import datasets
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

from bertcrf.arguments import DataTrainingArguments, ModelArguments
from bertcrf.safe_files import write_text


TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
GENERIC_FOLDER_NAMES = frozenset({"model", "models", "final", "best", "output", "outputs", "pretrained", "weights"})

# Entity-level metrics in the model-index and the card's table (all in [0, 1]; "ece" is the calibration error).
CARD_METRICS = ("precision", "recall", "f1", "accuracy", "ece")
TASK = {"task_type": "token-classification", "task_name": "Named Entity Recognition"}
# The Hub's inference widget shows these (else its own English sentence); the web demo offers them as examples.
WIDGET_EXAMPLES = {
    "zh": [
        "张伟昨天从北京飞到上海，参加了华为公司的发布会。",
        "国务院总理李强在人民大会堂会见了联合国秘书长古特雷斯。",
    ],
    "en": ["Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget."],
}
# Where the card keeps an encoder folder's history: what was done to the Hub model it names as base_model.
CHANGES_KEY = "base_model_changes"


def _card_of(folder: str | Path) -> ModelCard | None:
    readme = Path(folder) / "README.md"
    return ModelCard.load(readme) if readme.is_file() else None


def base_model_name(source: str) -> tuple[str, bool]:
    """What a model card calls the starting checkpoint, and whether that is a Hub id: the Hub id, also when given
    as a folder of the Hub cache (`.../models--org--name/snapshots/<hash>`) or as a local folder whose card names
    its Hub base (see `note_derivation`), else the folder's name; never a local path."""
    path = Path(source)
    if not path.exists():
        return source, True
    parts = path.resolve().parts
    for part in reversed(parts):
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/"), True
    card = _card_of(path) if path.is_dir() else None
    if card is not None and isinstance(card.data.base_model, str):
        return card.data.base_model, True
    # A folder called "model" or "checkpoint-500" says little: name the nearest folder above it that says more.
    named = [p for p in parts[1:] if p.lower() not in GENERIC_FOLDER_NAMES and not CHECKPOINT.match(p)]
    return (named[-1] if named else parts[-1]), False


def base_model_changes(source: str) -> list[str]:
    """What was done to the Hub model behind a local encoder folder (its card's list), empty elsewhere."""
    card = _card_of(source) if Path(source).is_dir() else None
    return list(card.data.to_dict().get(CHANGES_KEY) or []) if card is not None else []


def note_derivation(folder: str | Path, change: str, base_model: str | None = None) -> None:
    """Record in `folder`'s card that it is `base_model` (a Hub id; kept from the card when None) with `change`
    done to it, after the changes already listed there."""
    card = _card_of(folder) or ModelCard.from_template(ModelCardData(), template_str="---\n{{ card_data }}\n---\n")
    if base_model is not None:
        card.data.base_model = base_model
    changes = [*(card.data.to_dict().get(CHANGES_KEY) or []), change]
    setattr(card.data, CHANGES_KEY, changes)
    if not card.text.strip():
        card.text = f"\n# {Path(folder).resolve().name}\n\n"
    card.text = card.text.rstrip("\n") + f"\n\n- {change}\n"
    write_text(Path(folder) / "README.md", str(card))


def _result(dataset_name: str, dataset_id: str, split: str, metric: str, value: float) -> EvalResult:
    """One model-index entry: an entity metric of the model on a dataset's split."""
    return EvalResult(
        **TASK,
        dataset_type=dataset_id,
        dataset_name=dataset_name,
        dataset_split=split,
        metric_type=metric,
        metric_value=round(float(value), 4),
        metric_name=f"{split} {metric}",
    )


def eval_results(scores: dict[str, float], dataset_name: str, dataset_id: str) -> list[EvalResult]:
    """The model-index entries of run_ner's validation ("eval_") and test ("predict_") scores."""
    return [
        _result(dataset_name, dataset_id, split, key, scores[f"{prefix}_{key}"])
        for prefix, split in (("eval", "validation"), ("predict", "test"))
        for key in CARD_METRICS
        if f"{prefix}_{key}" in scores
    ]


def evaluation_table(results: Sequence[EvalResult] | None) -> str:
    """One row per evaluated (dataset, split): entity scores in percent, ECE as a fraction."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for result in results or []:
        rows.setdefault((result.dataset_name, result.dataset_split or ""), {})[result.metric_type] = (
            result.metric_value
        )
    if not rows:
        return "(not evaluated)"
    lines = ["| data | split | " + " | ".join(CARD_METRICS) + " |", "|---|---|" + "---|" * len(CARD_METRICS)]
    for (name, split), values in rows.items():
        cells = [
            "" if key not in values else f"{values[key]:.3f}" if key == "ece" else f"{100 * values[key]:.2f}"
            for key in CARD_METRICS
        ]
        lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_card_results(folder: str | Path, dataset_name: str, dataset_id: str, split: str, metrics: dict) -> None:
    """Add one evaluation (entity metrics in [0, 1]) to a trained folder's card: its model-index and table."""
    card = _card_of(folder)
    if card is None:
        raise FileNotFoundError(f"{folder} has no README.md model card to add results to (train with run_ner.py)")
    kept = [r for r in card.data.eval_results or [] if (r.dataset_name, r.dataset_split) != (dataset_name, split)]
    added = [_result(dataset_name, dataset_id, split, key, metrics[key]) for key in CARD_METRICS if key in metrics]
    card.data.eval_results = kept + added
    if card.data.model_name is None:
        card.data.model_name = Path(folder).resolve().name
    card.text = re.sub(
        r"(<!-- evaluation -->\n).*?(\n<!-- /evaluation -->)",
        lambda m: m.group(1) + evaluation_table(card.data.eval_results) + m.group(2),
        card.text,
        flags=re.DOTALL,
    )
    write_text(Path(folder) / "README.md", str(card))


def _hyperparameters(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> str:
    batch = (
        training_args.per_device_train_batch_size
        * max(1, training_args.world_size)
        * training_args.gradient_accumulation_steps
    )
    values = (
        (
            "learning_rate (encoder / classifier / CRF)",
            f"{training_args.learning_rate:g} / {model_args.head_learning_rate:g} / {model_args.crf_learning_rate:g}",
        ),
        ("total train batch size", batch),
        ("num_epochs", f"{training_args.num_train_epochs:g}"),
        ("max_steps", training_args.max_steps if training_args.max_steps > 0 else None),
        ("lr_scheduler_type", getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        ("warmup", training_args.warmup_steps or None),
        ("weight_decay", training_args.weight_decay),
        ("frozen encoder layers", model_args.freeze_layers or None),
        ("encoder layers kept", model_args.num_hidden_layers),
        ("lexicon", ", ".join(Path(p).name for p in model_args.lexicon) if model_args.lexicon else None),
        ("seed", training_args.seed),
        ("max_seq_length (window)", data_args.max_seq_length),
        ("vocabulary extended", data_args.extend_vocab or None),
    )
    return "\n".join(f"- {k}: {v}" for k, v in values if v is not None)


def write_model_card(
    output_dir: str,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
    labels: list[str],
    scores: dict[str, float],
    scheme: str,
    model_class: str = "BertCrfForTokenClassification",
) -> None:
    """The output folder's README.md: metadata (model-index with the validation and test scores, base model and
    datasets by Hub id where known, widget examples) and a body with the scores, notes, usage and hyperparameters."""
    name = Path(output_dir).resolve().name
    # The snippet loads the Hub id the card is pushed under, else the folder name (the repo name by default).
    repo_id = training_args.hub_model_id or name
    dataset = data_args.dataset_name or (
        Path(data_args.train_file).resolve().parent.name if data_args.train_file else "custom"
    )
    dataset_ids = list(data_args.card_datasets or [dataset])
    base, on_hub = base_model_name(model_args.model_name_or_path)
    examples = WIDGET_EXAMPLES.get(data_args.language or "", [])
    data = ModelCardData(
        language=data_args.language,
        license=data_args.license,
        library_name="transformers",
        pipeline_tag="token-classification",
        tags=["token-classification", "ner", "crf", "bert-crf"],
        base_model=base,
        datasets=dataset_ids,
        metrics=list(CARD_METRICS),
        model_name=repo_id,
        eval_results=eval_results(scores, dataset, dataset_ids[0]) or None,
        widget=[{"text": text} for text in examples] or None,
    )
    notes = Path(data_args.card_notes).read_text(encoding="utf-8").strip() if data_args.card_notes else ""
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=repo_id,
        **_model_fields(model_args, model_class, base, on_hub, scheme),
        **_data_fields(data_args, dataset, scheme, labels),
        notes=notes,
        evaluation_table=evaluation_table(data.eval_results),
        temperature=f"{scores['confidence_temperature']:.3g}" if "confidence_temperature" in scores else "",
        **_usage_fields(training_args, repo_id, examples),
        hyperparameters=_hyperparameters(model_args, data_args, training_args),
        versions=_versions(),
    )
    write_text(Path(output_dir) / "README.md", str(card))


def _model_fields(
    model_args: ModelArguments, model_class: str, base: str, on_hub: bool, scheme: str
) -> dict[str, str]:
    """The template's fields on the model: its class, architecture, base model and decoding."""
    return {
        "model_class": model_class,
        "architecture": "an encoder and a linear-chain CRF"
        if "Crf" in model_class
        else "an encoder and a softmax classifier",
        "base_link": f"[`{base}`](https://huggingface.co/{base})" if on_hub else f"`{base}` (a local folder)",
        "base_changes": "; ".join(base_model_changes(model_args.model_name_or_path)),
        "decoding": f"constrained to legal {scheme} transitions" if model_args.constrain_decoding else "unconstrained",
    }


def _data_fields(data_args: DataTrainingArguments, dataset: str, scheme: str, labels: list[str]) -> dict[str, str]:
    """The template's fields on the data: the datasets (linked when on the Hub), tag scheme and entity types."""
    return {
        "dataset_text": ", ".join(f"[{d}](https://huggingface.co/datasets/{d})" for d in data_args.card_datasets)
        if data_args.card_datasets
        else dataset,
        "scheme": scheme,
        "types": ", ".join(sorted({l.split("-", 1)[1] for l in labels if "-" in l})) or "no entity types",
    }


def _usage_fields(training_args: TrainingArguments, repo_id: str, examples: list[str]) -> dict[str, str]:
    """The template's fields of the usage snippet: the id it loads, what that id is, and the text it tags."""
    return {
        "repo_id": repo_id,
        "example": (examples or ["张伟在北京的华为公司工作。"])[0],
        "repo_id_meaning": "the Hub id this card was pushed under"
        if training_args.hub_model_id
        else "the output folder: a local path, or the Hub repository of that name once uploaded",
    }


def _versions() -> str:
    """The library versions the model was trained with, as a Markdown list."""
    return "\n".join(
        f"- {m.__name__.capitalize() if m is not torch else 'PyTorch'} {m.__version__}"
        for m in (transformers, torch, datasets)
    )
