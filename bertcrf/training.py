"""NER fine-tuning on the stock Trainer: data splits, tag schemes and labels, the model of each encoder family,
windows, the optimizer, whole-sentence CRF metrics, training and evaluation."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from transformers import Trainer, TrainingArguments

from bertcrf import calibration, crf_models, data_files, ner_data
from bertcrf.arguments import SPLITS, DataTrainingArguments, ModelArguments, lexicon_type_map
from bertcrf.lexicon import read_lexicon
from bertcrf.outputs import show_examples, tidy_output_dir, write_predictions
from configuration_crf import CrfConfigMixin
from modeling_bert_crf import CrfTaggingMixin
from ner_lexicon import LEXICON_FILE, Lexicon, lexicon_bits
from ner_tags import join_words
from ner_windows import max_positions


logger = logging.getLogger(__name__)


# Model types of trained CRF taggers that run_ner.py continues training (their labels and tag scheme are kept).
TRAINED_CRF_TYPES = frozenset(family.config_class.model_type for family in crf_models.FAMILIES.values())


# A CRF tagger config's own fields: not carried over to a new config built from its values.
CRF_CONFIG_KEYS = ("tag_scheme", "constrain_decoding", "loss_reduction", "special_token_ids", "custom_pipelines")


def load_raw_splits(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> dict[str, list[dict[str, Any]]]:
    """Examples of the splits this run needs, from local files or a Hub dataset, truncated by max_*_samples."""
    wanted = {
        "train": training_args.do_train,
        "validation": training_args.do_eval or (training_args.do_train and training_args.eval_strategy != "no"),
        "test": training_args.do_predict,
    }
    raw: dict[str, list[dict[str, Any]]] = {}
    hub = load_hub_dataset(model_args, data_args) if data_args.dataset_name else {}
    for split, arg in SPLITS.items():
        if not wanted[split]:
            continue
        path = getattr(data_args, arg)
        if path:
            raw[split] = read_split_file(path, data_args)
        elif split in hub:
            raw[split] = hub[split]
        else:
            raise ValueError(
                f"--do_{'eval' if split == 'validation' else split} needs --{arg} or a dataset with a {split} split"
            )
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    for split, examples in raw.items():
        if limits[split] is not None:
            raw[split] = examples[: limits[split]]
        if split == "train":
            raw[split] += [e for path in data_args.extra_train_files or () for e in read_split_file(path, data_args)]
        check_tagged(raw[split], split)
        tagged = sum(e["tags"] is not None for e in raw[split])
        logger.info(
            "%s: %d sentences, %d tokens, %d tagged",
            split,
            len(raw[split]),
            sum(len(e["tokens"]) for e in raw[split]),
            tagged,
        )
    return raw


def read_split_file(path: str, data_args: DataTrainingArguments) -> list[dict[str, Any]]:
    """The examples of one data file, read as the data options say (see `data_files.read_file`)."""
    span_scheme = data_args.data_tag_scheme if data_args.data_tag_scheme not in (None, "none") else "BIO"
    return data_files.read_file(
        path,
        data_args.text_column_name or "tokens",
        data_args.label_column_name or "tags",
        span_scheme,
        data_args.data_format,
        text_key=data_args.text_key,
        doccano_offsets=data_args.doccano_offsets,
    )


def check_tagged(examples: list[dict[str, Any]], split: str) -> None:
    """Training and evaluation need a tag for every sentence; test data is all tagged (scored) or all untagged. A
    sentence without tags among tagged ones is an error naming it: it would silently switch off scoring."""
    untagged = [e["id"] for e in examples if e["tags"] is None]
    if not untagged or (split == "test" and len(untagged) == len(examples)):
        return
    listing = ", ".join(untagged[:3]) + (f" and {len(untagged) - 3} more" if len(untagged) > 3 else "")
    need = "every sentence tagged" if split != "test" else "every sentence tagged (scored) or none (predicted only)"
    raise ValueError(
        f"{split} data: {len(untagged)} of {len(examples)} sentences have no tags ({listing}); expected {need}"
    )


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
            examples.append(
                {"id": f"{data_args.dataset_name}/{split}:{i}", "tokens": record[tokens_key], "tags": tags}
            )
        out[split] = examples
    return out


def resolve_schemes(
    raw: dict[str, list[dict[str, Any]]],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    checkpoint: CrfConfigMixin | None,
) -> str:
    """Detect the data's tag scheme, choose the model's (a bert-crf `checkpoint`'s own, if any), convert every
    split's tags to it and return it."""
    data_scheme = data_args.data_tag_scheme or ner_data.detect_examples_scheme(
        e for examples in raw.values() for e in examples
    )
    model_scheme = model_args.tag_scheme or ("BIO" if data_scheme == "IOB1" else data_scheme)
    if checkpoint is not None:  # a trained bert-crf model: its labels fix the scheme
        if model_args.tag_scheme not in (None, checkpoint.resolved_tag_scheme):
            raise ValueError(
                f"--tag_scheme {model_args.tag_scheme} contradicts the checkpoint's {checkpoint.resolved_tag_scheme}"
            )
        model_scheme = checkpoint.resolved_tag_scheme
    logger.info("Tag scheme: data %s, model %s", data_scheme, model_scheme)
    if data_scheme != model_scheme:
        for examples in raw.values():
            for e in examples:
                if e["tags"] is not None:
                    e["tags"] = ner_data.convert_tags(e["tags"], data_scheme, model_scheme)
    return model_scheme


def resolve_labels(
    raw: dict[str, list[dict[str, Any]]],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    scheme: str,
    config: CrfConfigMixin | None,
) -> list[str]:
    """The model's labels: a bert-crf checkpoint's (`config`) own, else every label of the scheme for the types in
    training data; evaluation and test tags are checked against them."""
    if config is not None:
        labels = [config.id2label[i] for i in range(config.num_labels)]
    elif "train" in raw:
        labels = ner_data.label_list([e["tags"] for e in raw["train"]], scheme)
    else:
        raise ValueError(
            f"{model_args.model_name_or_path} has no NER labels; pass --train_file or a bert-crf checkpoint"
        )
    known = set(labels)
    if "train" in raw:
        ner_data.check_labels(raw["train"], known, False, "train")
    for split in ("validation", "test"):
        if split in raw:
            ner_data.check_labels(raw[split], known, data_args.unknown_labels_to_o, split)
    return labels


# The encoder options of a tagger's config, set afresh from the command line (a trained tagger's are kept unless
# the command line changes them, see encoder_settings).
ENCODER_KEYS = ("lexicon_types", "lexicon_file", "lexicon_combination", "layer_mix")


def load_lexicon(model_args: ModelArguments) -> Lexicon | None:
    """The lexicon of --lexicon (files, format, type map, other type), or None without one."""
    if not model_args.lexicon:
        return None
    return read_lexicon(
        model_args.lexicon,
        model_args.lexicon_format,
        lexicon_type_map(model_args),
        model_args.lexicon_other_type or None,
    )


def encoder_settings(base: Any, model_args: ModelArguments, lexicon: Lexicon | None) -> dict[str, Any]:
    """The lexicon and layer-mix settings of a new tagger config: the command line's; a trained tagger's lexicon
    when no --lexicon is given (its lexicon.tsv is then read with its weights). A new lexicon for a tagger trained
    with another one must have the same feature types, or its learned vectors would mean other features."""
    trained_types = getattr(base, "lexicon_types", None)
    settings: dict[str, Any] = {
        "layer_mix": model_args.layer_mix or bool(getattr(base, "layer_mix", False)),
        "lexicon_combination": model_args.lexicon_combination,
    }
    if lexicon is not None:
        if trained_types and list(trained_types) != lexicon.type_names:
            raise ValueError(
                f"{model_args.model_name_or_path} was trained with lexicon types {trained_types}; the --lexicon "
                f"files give {lexicon.type_names}: map them to the same types (--lexicon_type_map)"
            )
        settings.update(lexicon_types=lexicon.type_names, lexicon_file=LEXICON_FILE)
    elif trained_types:
        settings.update(
            lexicon_types=list(trained_types),
            lexicon_file=getattr(base, "lexicon_file", None) or LEXICON_FILE,
            lexicon_combination=getattr(base, "lexicon_combination", "input"),
        )
    return settings


def cut_layers(values: dict[str, Any], num_hidden_layers: int | None) -> int | None:
    """Keep the lowest `num_hidden_layers` encoder layers in the config `values`; returns the checkpoint's layer
    count when cut, else None. Asking for more layers than the checkpoint has is a ValueError."""
    if num_hidden_layers is None:
        return None
    total = values.get("num_hidden_layers")
    if total is None or num_hidden_layers > total:
        raise ValueError(f"--num_hidden_layers {num_hidden_layers}: the checkpoint has {total} encoder layers")
    if num_hidden_layers == total:
        return None
    values["num_hidden_layers"] = num_hidden_layers
    return total


def lexicon_of(model: torch.nn.Module) -> tuple[Lexicon, list[str]] | None:
    """A lexicon model's lexicon and feature types, else None."""
    lexicon, types = getattr(model, "lexicon", None), getattr(model.config, "lexicon_types", None)
    return (lexicon, list(types)) if lexicon is not None and types else None


def checkpoint_config(model_args: ModelArguments) -> CrfConfigMixin | None:
    """The config of `--model_name_or_path` (or `--config_name`) when it is a trained CRF tagger of an encoder family
    (bert_crf, ernie_crf, roberta_crf, ...), else None."""
    source = model_args.config_name or model_args.model_name_or_path
    path = Path(source) / "config.json"
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("model_type") not in TRAINED_CRF_TYPES:
        return None
    try:
        config = transformers.AutoConfig.from_pretrained(
            source,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
        )
    except (OSError, ValueError):  # not reachable, or a model type this transformers does not know: not ours
        return None
    return config if getattr(config, "model_type", None) in TRAINED_CRF_TYPES else None


def load_tokenizer(model_args: ModelArguments, checkpoint: str | None = None) -> Any:
    """The model's tokenizer, or a resumed checkpoint's: its vocabulary may have been extended, and the embeddings
    in the checkpoint follow its ids (rebuilding the extension from reordered data would give other ids)."""
    if checkpoint is not None and (Path(checkpoint) / "tokenizer_config.json").is_file():
        tokenizer = crf_models.load_tokenizer(checkpoint)
        logger.info(
            "Tokenizer of %s (%d tokens): a resumed run keeps the checkpoint's vocabulary", checkpoint, len(tokenizer)
        )
        return tokenizer
    tokenizer = crf_models.load_tokenizer(
        model_args.tokenizer_name or model_args.model_name_or_path,
        trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
    )
    if not tokenizer.is_fast:
        raise ValueError("run_ner.py needs a fast tokenizer (word alignment uses word_ids())")
    return tokenizer


def prepare_words(
    raw: dict[str, list[dict[str, Any]]],
    tokenizer: Any,
    data_args: DataTrainingArguments,
    resuming: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Extend the vocabulary (if asked, and not `resuming`: a checkpoint's tokenizer is already extended) and give
    every word at least one sub-token. Logs [UNK] rates and counts."""
    if "train" in raw:
        before = ner_data.unknown_rate(raw["train"], tokenizer)
        logger.info("[UNK] rate of training words: %.2f%%", 100 * before)
        if data_args.extend_vocab and not resuming:
            added = ner_data.extend_vocabulary(tokenizer, raw["train"], data_args.extend_vocab_min_count)
            after = ner_data.unknown_rate(raw["train"], tokenizer)
            logger.info(
                "Added %d tokens to the vocabulary (e.g. %s); [UNK] rate %.2f%% -> %.2f%%",
                len(added),
                "".join(added[:20]),
                100 * before,
                100 * after,
            )
    for split, examples in raw.items():
        raw[split], replaced = ner_data.replace_untokenizable(examples, tokenizer)
        if replaced:
            logger.info(
                "%s: %d words have no sub-token (%s); they are fed as %s and still get a prediction",
                split,
                sum(replaced.values()),
                dict(replaced.most_common(5)),
                tokenizer.unk_token,
            )
    return raw


def load_model(model_args: ModelArguments, labels: list[str], scheme: str, tokenizer: Any) -> torch.nn.Module:
    """A CRF tagger for `labels`, of the checkpoint's family (`crf_models.FAMILIES`, by its model_type): a trained
    tagger (bert_crf, ernie_crf, ...) keeps its class; a BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA checkpoint,
    bare or with its pretraining head, gives its body to a new classifier and CRF. `--head softmax` picks the
    family's stock *ForTokenClassification instead. An encoder weight missing from the checkpoint or left unused
    is a ValueError naming it; an unsupported model type is a ValueError naming the supported ones."""
    common = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token)
    config_path = model_args.config_name or model_args.model_name_or_path
    base = transformers.AutoConfig.from_pretrained(
        config_path, trust_remote_code=model_args.trust_remote_code, **common
    )
    family = crf_models.family_of(getattr(base, "model_type", None))
    crf_models.check_padding_id(base, tokenizer, config_path)
    values, cut = _body_config_values(base, labels, model_args.num_hidden_layers)
    lexicon = load_lexicon(model_args)
    model_class, config = _tagger_config(family, values, base, model_args, scheme, tokenizer, lexicon)
    model, info = model_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        output_loading_info=True,
        **({"lexicon": lexicon} if lexicon is not None else {}),
        **common,
    )
    kept = model_args.num_hidden_layers if cut is not None else None
    crf_models.check_loading_info(crf_models.without_cut_layers(info, kept), model_args.model_name_or_path)
    _log_lexicon_and_cut(model, lexicon, cut, model_args.num_hidden_layers)
    logger.info("%s from the %s checkpoint %s", model_class.__name__, base.model_type, model_args.model_name_or_path)
    if len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
        logger.info("Resized token embeddings to %d", len(tokenizer))
    _constrain_and_freeze(model, model_args.freeze_layers)
    return model


def _body_config_values(
    base: transformers.PretrainedConfig, labels: list[str], num_hidden_layers: int | None
) -> tuple[dict[str, Any], int | None]:
    """The body's config values with the label maps, and the layer count before `cut_layers` (None: not cut)."""
    id2label = dict(enumerate(labels))
    label_maps = dict(num_labels=len(labels), id2label=id2label, label2id={l: i for i, l in id2label.items()})
    # Built from the body's config dict: a family config's from_pretrained on another type warns of a mismatch. The
    # CRF settings (and the CRF pipeline) of a trained tagger are set afresh, or dropped for the softmax head.
    dropped = {"model_type", "architectures", "auto_map", "transformers_version", *CRF_CONFIG_KEYS, *ENCODER_KEYS}
    values = {k: v for k, v in base.to_dict().items() if k not in dropped}
    values.update(label_maps)
    return values, cut_layers(values, num_hidden_layers)


def _tagger_config(
    family: crf_models.Family,
    values: dict[str, Any],
    base: transformers.PretrainedConfig,
    model_args: ModelArguments,
    scheme: str,
    tokenizer: Any,
    lexicon: Lexicon | None,
) -> tuple[type, transformers.PretrainedConfig]:
    """The model class (the family's CRF tagger, or its softmax one for `--head softmax`) and its config."""
    if model_args.head == "softmax":
        model_class: type = family.softmax_class
        config = model_class.config_class(**values)
    else:
        model_class = family.crf_class
        config = family.config_class(
            **values,
            tag_scheme=scheme,
            constrain_decoding=model_args.constrain_decoding,
            loss_reduction=model_args.loss_reduction,
            special_token_ids=sorted(set(tokenizer.all_special_ids)),
            **encoder_settings(base, model_args, lexicon),
        )
    if model_args.classifier_dropout is not None:
        config.classifier_dropout = model_args.classifier_dropout
    return model_class, config


def _log_lexicon_and_cut(
    model: torch.nn.Module, lexicon: Lexicon | None, cut: int | None, num_hidden_layers: int | None
) -> None:
    """Log what was added to the encoder (a lexicon) and cut from it (layers)."""
    if lexicon is not None:
        logger.info(
            "Lexicon of %d words, feature types %s, into the %s",
            len(lexicon),
            lexicon.type_names,
            model.config.lexicon_combination,
        )
    if cut is not None:
        logger.info("Kept the encoder's lowest %d of %d layers", num_hidden_layers, cut)


def _constrain_and_freeze(model: torch.nn.Module, freeze_layers: int) -> None:
    """Apply a CRF tagger's decoding constraints, and freeze the embeddings and the `freeze_layers` lowest layers."""
    if isinstance(model, CrfTaggingMixin):
        model.apply_decoding_constraints()
        if freeze_layers:
            model.freeze_encoder_layers(freeze_layers)
    elif freeze_layers:
        # The stock softmax taggers have no freeze_encoder_layers: the same parts are frozen here.
        body = model.base_model
        embeddings = [body.embeddings, *([body.embeddings_project] if hasattr(body, "embeddings_project") else [])]
        for module in [*embeddings, *body.encoder.layer[:freeze_layers]]:
            module.requires_grad_(False)
    if freeze_layers:
        logger.info("Froze the embeddings and %d lowest encoder layers", freeze_layers)


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
    raw: dict[str, list[dict[str, Any]]],
    tokenizer: Any,
    label2id: dict[str, int],
    scheme: str,
    max_len: int,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
    lexicon: tuple[Lexicon, list[str]] | None = None,
) -> dict[str, EncodedSplit]:
    """Tokenize each split into windows: tiling windows for training, overlapping ones to evaluate and predict.
    With a `lexicon` (and its feature types: `lexicon_of(model)`), each row also has the lexicon features of its
    words' first sub-tokens."""
    window = ner_data.WindowConfig(
        max_seq_length=max_len,
        stride=data_args.doc_stride if data_args.doc_stride is not None else max_len // 4,
        label_all_tokens=data_args.label_all_tokens,
        scheme=scheme,
    )
    out = {}
    for split, examples in raw.items():
        labelled = all(e["tags"] is not None for e in examples)
        encode = functools.partial(
            _encode_batch,
            tokenizer=tokenizer,
            label2id=label2id if labelled else None,
            window=window,
            overlap=split != "train",
        )
        with training_args.main_process_first(desc=f"{split} tokenization"):
            dataset = _tokenize_split(split, examples, encode, lexicon, data_args.preprocessing_num_workers)
        out[split] = _encoded_split(split, examples, dataset, max_len)
    return out


def _tokenize_split(
    split: str,
    examples: list[dict[str, Any]],
    encode: Any,
    lexicon: tuple[Lexicon, list[str]] | None,
    num_proc: int | None,
) -> datasets.Dataset:
    """The window rows of one split's examples, through `datasets.map` (`num_proc` processes)."""
    table = datasets.Dataset.from_list(
        [{"tokens": e["tokens"], "words": e["words"], "tags": e["tags"], **word_lexicon(e, lexicon)} for e in examples]
    )
    return table.map(
        encode,
        batched=True,
        with_indices=True,
        remove_columns=table.column_names,
        num_proc=num_proc,
        desc=f"Tokenizing {split}",
    )


def _encoded_split(
    split: str, examples: list[dict[str, Any]], dataset: datasets.Dataset, max_len: int
) -> EncodedSplit:
    """One split's `EncodedSplit`: the rows' stitching facts are kept aside and dropped from the model's inputs."""
    example_index = dataset["example_index"]
    units: list[list[int]] = [[] for _ in examples]
    for index, row_units in zip(example_index, dataset["units"]):
        units[index] = row_units
    rows = [
        {"word_start_mask": m, "example_index": i, "unit_offset": o}
        for m, i, o in zip(dataset["word_start_mask"], example_index, dataset["unit_offset"])
    ]
    split_count = sum(n > 1 for n in Counter(example_index).values())
    logger.info(
        "%s: %d sentences -> %d windows of at most %d sub-tokens (%d long sentences split)",
        split,
        len(examples),
        len(rows),
        max_len,
        split_count,
    )
    return EncodedSplit(examples, dataset.remove_columns(["example_index", "unit_offset", "units"]), rows, units)


def word_lexicon(example: dict[str, Any], lexicon: tuple[Lexicon, list[str]] | None) -> dict[str, list[int]]:
    """`{"lexicon": bits of each word}` of an example (matched on its words as written, joined as the pipeline
    joins pre-split words), or nothing without a lexicon."""
    if lexicon is None:
        return {}
    text, spans = join_words(example["tokens"])
    return {"lexicon": lexicon_bits(lexicon[0], text, spans, lexicon[1])}


def _encode_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    tokenizer: Any,
    label2id: dict[str, int] | None,
    window: ner_data.WindowConfig,
    overlap: bool,
) -> dict[str, list[Any]]:
    """`datasets.map` worker: a batch of sentences in, their window rows out (with global example indices)."""
    examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
    rows, units = ner_data.encode_examples(examples, tokenizer, label2id, window, overlap)
    columns = [
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "word_start_mask",
        "length",
        "example_index",
        "unit_offset",
    ]
    if label2id is not None:
        columns.append("labels")
    if "lexicon" in batch:
        columns.append("lexicon_features")
    out: dict[str, list[Any]] = {c: [r[c] for r in rows] for c in columns}
    out["units"] = [units[r["example_index"]] for r in rows]
    out["example_index"] = [indices[i] for i in out["example_index"]]
    return out


class PaddingCollator:
    """Pads each batch to its longest row (dynamic padding), or to `max_length`."""

    PAD_VALUES = {
        "attention_mask": 0,
        "token_type_ids": 0,
        "word_start_mask": 0,
        "labels": -100,
        "lexicon_features": 0,
    }

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
            batch[key] = torch.tensor(
                [list(f[key]) + [pad] * (width - len(f[key])) for f in features], dtype=torch.long
            )
        return batch


def build_optimizer(
    model: torch.nn.Module, training_args: TrainingArguments, model_args: ModelArguments
) -> torch.optim.Optimizer:
    """AdamW with separate groups for the encoder body, the head (classifier, lexicon features, layer mix) and the
    CRF, each with its own learning rate; no weight decay on biases, LayerNorm weights, CRF transitions or the
    lexicon and layer-mix parameters. With `--layer_lr_decay` below 1, encoder layer k of L learns at
    learning_rate * decay^(L-k) and everything below the first layer (embeddings) at decay^L."""
    rates = {
        "body": training_args.learning_rate,
        "head": model_args.head_learning_rate,
        "crf": model_args.crf_learning_rate,
    }
    decay_rate = getattr(model_args, "layer_lr_decay", 1.0)
    num_layers = getattr(model.config, "num_hidden_layers", 0)
    groups: dict[tuple[str, int, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = parameter_part(name)
        depth = layer_depth(name, num_layers) if part == "body" and decay_rate < 1.0 else num_layers
        decay = part in ("body", "head") and param.ndim > 1 and "LayerNorm" not in name and "layer_norm" not in name
        decay = decay and not name.startswith(("lexicon_embeddings.", "layer_mix."))
        groups.setdefault((part, depth, decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": rates[part] * decay_rate ** (num_layers - depth),
            "weight_decay": training_args.weight_decay if decay else 0.0,
            "name": f"{part}{'' if depth == num_layers else f'_layer{depth}'}{'' if decay else '_no_decay'}",
        }
        for (part, depth, decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(
        param_groups,
        lr=training_args.learning_rate,
        betas=(training_args.adam_beta1, training_args.adam_beta2),
        eps=training_args.adam_epsilon,
        # One kernel for all parameters: on CPU the default is a loop over tensors, 14% of a 4-layer e5 step.
        fused=FUSED_ADAMW,
    )


# torch's fused AdamW runs on CPU from 2.4 (CUDA earlier); None lets an older torch pick its default.
FUSED_ADAMW = True if tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 4) else None


def parameter_part(name: str) -> str:
    """Which learning rate a parameter gets: "crf", "head" (classifier, lexicon features, layer mix) or "body"."""
    if name.startswith("crf."):
        return "crf"
    if name.startswith(("classifier.", "lexicon_embeddings.", "layer_mix.")):
        return "head"
    return "body"


def layer_depth(name: str, num_layers: int) -> int:
    """Layer-wise decay depth of an encoder parameter: k + 1 for encoder layer k, 0 below the first layer
    (embeddings), `num_layers` above the last (e.g. ELECTRA's embedding projection sits below: 0)."""
    match = crf_models.ENCODER_LAYER.search(name)
    if match is not None:
        return min(int(match.group(2)) + 1, num_layers)
    return 0 if "embeddings" in name else num_layers


class NerMetrics:
    """`compute_metrics` for the Trainer: stitches window logits back to sentences, decodes each whole sentence
    with the model's (constrained) CRF, and scores entities with seqeval in strict mode for the tag scheme."""

    def __init__(self, split: EncodedSplit, id2label: dict[int, str], scheme: str, entity_level: bool) -> None:
        self.split, self.id2label, self.scheme, self.entity_level = split, id2label, scheme, entity_level
        self.trainer: Trainer | None = None  # set once the Trainer exists
        self.last_predictions: list[list[str]] = []
        self.last_scores: list[list[float]] = []
        self.last_emissions: list[np.ndarray] = []

    def row_order(self) -> list[int]:
        """The dataset row behind each row of the Trainer's outputs. With `train_sampling_strategy=group_by_length`
        the stock Trainer also length-groups evaluation batches, with a sampler seeded afresh for every evaluation;
        the same sampler gives the permutation."""
        assert self.trainer is not None, "NerMetrics.trainer must be set"
        sampler = self.trainer._get_eval_sampler(self.split.dataset)
        return list(sampler) if sampler is not None else list(range(len(self.split.dataset)))

    def decode(self, logits: np.ndarray) -> list[list[str]]:
        """Word-level tags for every example of the split from the Trainer's window logits (their scores, the
        probability of each word's tag, are kept in `last_scores`; the stitched emissions in `last_emissions`)."""
        assert self.trainer is not None, "NerMetrics.trainer must be set"
        order = self.row_order()
        if len(order) != len(logits):
            raise RuntimeError(f"{len(logits)} rows of logits for {len(order)} dataset rows")
        units = [sum(u) for u in self.split.units]
        self.last_emissions = ner_data.stitch_emissions(logits, [self.split.rows[i] for i in order], units)
        return self.rescore()

    def rescore(self) -> list[list[str]]:
        """Decode `last_emissions` again with the model as it is now (its confidence temperature, say): word tags,
        with each word's score in `last_scores`."""
        assert self.trainer is not None, "NerMetrics.trainer must be set"
        paths, scores = decode_emissions(self.trainer.model, self.last_emissions)
        tags, self.last_scores = [], []
        for i, (path, unit_scores) in enumerate(zip(paths, scores)):
            tags.append(
                ner_data.unit_tags_to_words([self.id2label[t] for t in path], self.split.units[i], self.scheme)
            )
            firsts = np.cumsum([0, *self.split.units[i][:-1]], dtype=np.int64)  # each word's first unit
            self.last_scores.append([unit_scores[k] for k in firsts] if len(unit_scores) else [])
        return tags

    def confidences(self) -> tuple[np.ndarray, np.ndarray]:
        """The last decoded entities' scores and whether each is right (see `calibration.entity_confidences`)."""
        gold = [e["tags"] for e in self.split.examples]
        return calibration.entity_confidences(gold, self.last_predictions, self.last_scores, self.scheme)

    def __call__(self, eval_prediction: transformers.EvalPrediction) -> dict[str, float]:
        logits = (
            eval_prediction.predictions[0]
            if isinstance(eval_prediction.predictions, tuple)
            else eval_prediction.predictions
        )
        self.last_predictions = self.decode(logits)
        gold = [e["tags"] for e in self.split.examples]
        scores = score_entities(gold, self.last_predictions, self.scheme, self.entity_level)
        if scores:
            scores["ece"] = calibration.expected_calibration_error(*self.confidences())
        return scores


def fit_confidence_temperature(model: torch.nn.Module, metrics: NerMetrics) -> dict[str, float]:
    """Fit the CRF's confidence temperature on the split `metrics` decoded last (see `calibration`), set it on the
    model and its config, and re-score that split at it. Returns the split's ECE before and after, and the
    temperature."""
    before = calibration.expected_calibration_error(*metrics.confidences())

    def confidences_at(temperature: float) -> tuple[np.ndarray, np.ndarray]:
        model.crf.temperature = temperature
        metrics.rescore()
        return metrics.confidences()

    temperature = calibration.fit_temperature(confidences_at)
    model.config.confidence_temperature = temperature
    model.crf.follow_config(model.config)
    metrics.last_predictions = metrics.rescore()
    after = calibration.expected_calibration_error(*metrics.confidences())
    return {"eval_ece_uncalibrated": before, "eval_ece": after, "confidence_temperature": temperature}


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
        scores_in, mask_in = _packed([emissions[i] for i in chunk], device)
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


def _packed(rows: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Emission arrays `(length, labels)` as a zero-padded batch `(rows, longest, labels)` and its mask."""
    width = max(len(row) for row in rows)
    padded = np.zeros((len(rows), width, rows[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(rows), width), dtype=bool)
    for k, row in enumerate(rows):
        padded[k, : len(row)] = row
        mask[k, : len(row)] = True
    return torch.from_numpy(padded).to(device), torch.from_numpy(mask).to(device)


def path_probabilities(
    model: torch.nn.Module, emissions: list[np.ndarray], paths: list[list[int]], batch_size: int = 256
) -> np.ndarray:
    """Each path's probability under the CRF at its path temperature (`CRF.path_probability_packed`; 1 for an
    empty sentence)."""
    device = next(model.parameters()).device
    found = np.ones(len(emissions))
    chunks = [i for i in range(len(emissions)) if len(emissions[i])]
    for start in range(0, len(chunks), batch_size):
        chunk = chunks[start : start + batch_size]
        scores_in, mask_in = _packed([emissions[i] for i in chunk], device)
        tags = torch.zeros(mask_in.shape, dtype=torch.long, device=device)
        for row, i in enumerate(chunk):
            tags[row, : len(paths[i])] = torch.tensor(paths[i])
        with torch.no_grad():
            found[chunk] = model.crf.path_probability_packed(scores_in, tags, mask_in).double().cpu().numpy()
    return found


def fit_mistake_temperature(model: torch.nn.Module, metrics: NerMetrics) -> dict[str, float]:
    """Fit the CRF's path temperature (config `mistake_temperature`) on the split `metrics` decoded last: the one
    whose texts' mistake probabilities (1 - P(decoded path)) have the least log loss against whether each text's
    predicted entities differ from its gold ones. Returns the texts' ECE before and after, and the temperature."""
    gold = [e["tags"] for e in metrics.split.examples]
    keep = [i for i, tags in enumerate(gold) if tags is not None]
    mistakes = np.array(
        [
            set(ner_data.tags_to_spans(gold[i], metrics.scheme))
            != set(ner_data.tags_to_spans(metrics.last_predictions[i], metrics.scheme))
            for i in keep
        ],
        dtype=bool,
    )
    paths, _ = decode_emissions(model, metrics.last_emissions)  # the Viterbi paths: no temperature changes them
    emissions, kept_paths = [metrics.last_emissions[i] for i in keep], [paths[i] for i in keep]

    def mistakes_at(temperature: float) -> tuple[np.ndarray, np.ndarray]:
        model.crf.path_temperature = temperature
        return 1.0 - path_probabilities(model, emissions, kept_paths), mistakes

    before = calibration.expected_calibration_error(*mistakes_at(1.0))
    temperature = calibration.fit_temperature(mistakes_at)
    model.config.mistake_temperature = temperature
    model.crf.follow_config(model.config)
    after = calibration.expected_calibration_error(*mistakes_at(temperature))
    return {"eval_mistake_ece_uncalibrated": before, "eval_mistake_ece": after, "mistake_temperature": temperature}


def score_entities(
    gold: list[list[str]], predicted: list[list[str]], scheme: str, entity_level: bool
) -> dict[str, float]:
    """seqeval precision/recall/F1 (strict, in the scheme's seqeval form) and token accuracy."""
    from seqeval import metrics
    from seqeval import scheme as seqeval_schemes

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
            for key, name in (
                ("precision", "precision"),
                ("recall", "recall"),
                ("f1-score", "f1"),
                ("support", "number"),
            ):
                result[f"{etype}_{name}"] = float(values[key])
    return result


def build_trainer(
    model: torch.nn.Module,
    tokenizer: Any,
    encoded: dict[str, EncodedSplit],
    scheme: str,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
    trainer_class: type[Trainer] = Trainer,
    **trainer_kwargs: Any,
) -> tuple[Trainer, dict[str, NerMetrics]]:
    """The stock Trainer (or a subclass) with our optimizer (its default linear warmup/decay schedule) and metrics."""
    metrics = {
        split: NerMetrics(enc, model.config.id2label, scheme, data_args.return_entity_level_metrics)
        for split, enc in encoded.items()
        if split != "train"
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
        optimizers=(build_optimizer(model, training_args, model_args), None)
        if training_args.do_train
        else (None, None),
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


def run_split(
    trainer: Trainer, split: str, encoded: EncodedSplit, metrics: NerMetrics
) -> tuple[dict[str, float], list[list[str]]]:
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
    trainer: Trainer,
    encoded: dict[str, EncodedSplit],
    metrics: dict[str, NerMetrics],
    scheme: str,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
    calibrate: bool = False,
) -> dict[str, float]:
    """Evaluate (--do_eval) and predict (--do_predict): scores, and predictions files written by the main process.
    With `calibrate` (and a CRF), the confidence temperature is fitted on the validation split before the test."""
    results: dict[str, float] = {}
    for split in ("validation", "test"):
        if split in encoded and (training_args.do_eval if split == "validation" else training_args.do_predict):
            scores, predictions = run_split(trainer, split, encoded[split], metrics[split])
            if split == "validation" and calibrate and hasattr(trainer.model, "crf") and "eval_ece" in scores:
                scores.update(fit_confidence_temperature(trainer.model, metrics[split]))
                scores.update(fit_mistake_temperature(trainer.model, metrics[split]))
                predictions = metrics[split].last_predictions
                trainer.save_metrics("eval", scores)
            results.update(scores)
            if trainer.is_world_process_zero():
                word_scores = metrics[split].last_scores
                write_predictions(
                    training_args.output_dir, split, encoded[split].examples, predictions, word_scores, scheme
                )
                if split == "test" and data_args.show_examples:
                    show_examples(encoded[split].examples, predictions, word_scores, scheme, data_args.show_examples)
    if trainer.is_world_process_zero():
        summary = ", ".join(
            f"{name} {100 * results[key]:.2f}" + (f" ({source})" if source else "")
            for name, key, source in (
                ("dev", "eval_f1", data_args.validation_file),
                ("test", "predict_f1", data_args.test_file),
            )
            if key in results
        )
        if summary:
            print(f"Entity F1 (seqeval strict, {scheme}): {summary}")
        print_calibration(results)
    return results


def print_calibration(results: dict[str, float]) -> None:
    """The entity scores' expected calibration error per split, and the temperature when one was fitted."""
    errors = ", ".join(
        f"{name} {results[key]:.3f}" for name, key in (("dev", "eval_ece"), ("test", "predict_ece")) if key in results
    )
    if not errors:
        return
    fitted = (
        f" at confidence temperature {results['confidence_temperature']:.3g} fitted on dev (dev before: "
        f"{results['eval_ece_uncalibrated']:.3f})"
        if "confidence_temperature" in results
        else ""
    )
    print(f"Entity score calibration error (ECE, {calibration.ECE_BINS} bins): {errors}{fitted}")
    if "mistake_temperature" in results:
        print(
            f"Texts' mistake probability calibration error on dev: {results['eval_mistake_ece']:.3f} at temperature "
            f"{results['mistake_temperature']:.3g} (before: {results['eval_mistake_ece_uncalibrated']:.3f})"
        )
