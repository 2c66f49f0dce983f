"""Distil a fine-tuned BERT-CRF (the teacher) into a BiLSTM-CRF (the student) with the stock Trainer.

    python scripts/distill.py --teacher_name_or_path outputs/resume --train_file train.txt --validation_file dev.txt \
        --output_dir outputs/resume-student --do_train --do_eval --num_train_epochs 10

The student reads the teacher's tokenizer output (so the same pipeline, tag.py and export_onnx.py serve it); its
embeddings start from the teacher's embedding matrix. Loss on each batch, the teacher frozen and run on the same
batch:

    alpha * CRF NLL(gold tags) + (1 - alpha) * distillation term

with the distillation term, summed over each sentence's chain and averaged over sentences (like the NLL):
  - kl: T^2 * KL(softmax(teacher emissions / T) || softmax(student emissions / T)), the usual recipe;
  - marginals: KL(teacher CRF marginals || student CRF marginals), the per-token posteriors of both CRFs
    (structure-aware: the teacher's transitions shape its targets, and the student's own CRF is trained to match);
  - none: gold tags only (the baseline a distilled student has to beat).

More training text, tagged by the teacher in each batch (its Viterbi path stands in for gold tags in the NLL, and
the distillation term applies as above): `--teacher_text_files` (raw text, one sentence per line) and
`--augment_copies N` (N perturbed copies of each training sentence, each word replaced with probability
`--augment_probability` by a random training word that carried the same gold tag).
Data flags, windows, evaluation and outputs are run_ner.py's, and so are its rules: no input overwritten (the
--output_dir is not the teacher's or the student's folder and holds no data file where the run writes), user
errors printed without a traceback (BERTCRF_TRACEBACK=1 shows it).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import datasets
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments, set_seed

from bertcrf import arguments, cli, launch, ner_data, outputs, training
from bertcrf.crf_models import check_model_path, load_crf_model
from configuration_bilstm_crf import BiLstmCrfConfig
from modeling_bilstm_crf import BiLstmCrfForTokenClassification
from modeling_crf_tagger import CrfTaggingMixin
from modeling_encoder_crf import EncoderCrfMixin


logger = logging.getLogger("distill")

DISTILL_TARGETS = ("kl", "marginals", "none")
TEACHER_TAGGED = -1  # label of a chain position whose tag the teacher's Viterbi path supplies, batch by batch


@dataclass
class DistillArguments:
    teacher_name_or_path: str = field(metadata={"help": "A trained bert-crf model (run_ner.py output or Hub id)."})
    student_name_or_path: str | None = field(
        default=None, metadata={"help": "A BiLSTM-CRF checkpoint to continue from (default: a new student)."}
    )
    distill_target: str = field(default="kl", metadata={"help": f"One of {DISTILL_TARGETS} (see the module doc)."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the gold-tag NLL; 1 - alpha goes to the teacher."})
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the kl target."})
    embedding_size: int | None = field(
        default=None, metadata={"help": "Student embedding size (default: the teacher's hidden size)."}
    )
    init_embeddings_from_teacher: bool = field(
        default=True, metadata={"help": "Start the student's embeddings from the teacher's word embeddings."}
    )
    lstm_hidden_size: int = field(default=128, metadata={"help": "LSTM state size of each direction."})
    lstm_layers: int = field(default=1, metadata={"help": "Stacked bidirectional LSTM layers."})
    student_dropout: float = field(default=0.2, metadata={"help": "Dropout in the student."})
    head_learning_rate: float = field(default=1e-2, metadata={"help": "Learning rate of the classifier."})
    crf_learning_rate: float = field(default=1e-2, metadata={"help": "Learning rate of the CRF transitions."})
    teacher_text_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Unlabelled text files (one sentence per line) added to training, tagged by the teacher."},
    )
    augment_copies: int = field(
        default=0,
        metadata={"help": "Perturbed copies of each training sentence added to training, tagged by the teacher."},
    )
    augment_probability: float = field(
        default=0.3,
        metadata={"help": "Chance that a word of a copy becomes a random training word with the same gold tag."},
    )


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[DistillArguments, arguments.DataTrainingArguments, TrainingArguments]:
    distill_args, data_args, training_args = arguments.parse_dataclasses(
        (DistillArguments, arguments.DataTrainingArguments), argv
    )
    if distill_args.distill_target not in DISTILL_TARGETS:
        raise ValueError(f"--distill_target must be one of {DISTILL_TARGETS}, got {distill_args.distill_target!r}")
    if not 0.0 <= distill_args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {distill_args.alpha!r}")
    if distill_args.temperature <= 0:
        raise ValueError(f"--temperature must be > 0, got {distill_args.temperature!r}")
    if distill_args.augment_copies < 0:
        raise ValueError(f"--augment_copies must be >= 0, got {distill_args.augment_copies!r}")
    if not 0.0 <= distill_args.augment_probability <= 1.0:
        raise ValueError(f"--augment_probability must be in [0, 1], got {distill_args.augment_probability!r}")
    if data_args.extend_vocab:
        raise ValueError("--extend_vocab does not apply: the student uses its teacher's tokenizer as it is")
    check_model_path(distill_args.teacher_name_or_path)
    outputs.check_inputs(
        training_args,
        {
            "--teacher_name_or_path": distill_args.teacher_name_or_path,
            "--student_name_or_path": distill_args.student_name_or_path,
        },
        {
            **{f"--{name}": getattr(data_args, name) for name in arguments.SPLITS.values()},
            "--teacher_text_files": distill_args.teacher_text_files,
        },
    )
    return distill_args, data_args, training_args


def teacher_arguments(distill_args: DistillArguments) -> arguments.ModelArguments:
    """run_ner's model arguments for the teacher, which fixes the tokenizer, labels and tag scheme."""
    return arguments.ModelArguments(
        model_name_or_path=distill_args.teacher_name_or_path,
        head_learning_rate=distill_args.head_learning_rate,
        crf_learning_rate=distill_args.crf_learning_rate,
    )


def load_teacher(path: str) -> EncoderCrfMixin:
    """A trained CRF tagger of any encoder family (BERT, ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA), frozen."""
    teacher = load_crf_model(path)
    if not isinstance(teacher, EncoderCrfMixin):
        raise ValueError(
            f"{path} is a {teacher.config.model_type} model: the teacher must be a transformer encoder "
            "with a CRF head (run_ner.py output)"
        )
    teacher.eval().requires_grad_(False)
    return teacher


def build_student(
    distill_args: DistillArguments, teacher: EncoderCrfMixin, tokenizer: Any
) -> BiLstmCrfForTokenClassification:
    """A new student for the teacher's labels and tokenizer (or the given student checkpoint)."""
    if distill_args.student_name_or_path:
        student = BiLstmCrfForTokenClassification.from_pretrained(distill_args.student_name_or_path)
        if student.config.id2label != teacher.config.id2label:
            raise ValueError(
                f"{distill_args.student_name_or_path} has labels {student.config.id2label}, the teacher "
                f"{teacher.config.id2label}"
            )
        return student
    teacher_embeddings = teacher.get_input_embeddings().weight  # (vocab, hidden)
    size = distill_args.embedding_size or teacher_embeddings.size(1)
    if distill_args.init_embeddings_from_teacher and size != teacher_embeddings.size(1):
        raise ValueError(
            f"--embedding_size {size} differs from the teacher's hidden size {teacher_embeddings.size(1)}: "
            "pass --init_embeddings_from_teacher False or leave --embedding_size unset"
        )
    teacher_config = teacher.config
    config = BiLstmCrfConfig(
        vocab_size=teacher_embeddings.size(0),
        embedding_size=size,
        hidden_size=distill_args.lstm_hidden_size,
        num_hidden_layers=distill_args.lstm_layers,
        hidden_dropout_prob=distill_args.student_dropout,
        max_position_embeddings=teacher_config.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(teacher_config.id2label),
        label2id=dict(teacher_config.label2id),
        tag_scheme=teacher_config.resolved_tag_scheme,
        constrain_decoding=teacher_config.constrain_decoding,
        loss_reduction=teacher_config.loss_reduction,
        special_token_ids=teacher_config.special_token_ids,
    )
    student = BiLstmCrfForTokenClassification(config)
    if distill_args.init_embeddings_from_teacher:
        with torch.no_grad():
            student.get_input_embeddings().weight.copy_(teacher_embeddings)
    student.crf.follow_config(config)
    return student


def augmented_examples(
    examples: list[dict[str, Any]], copies: int, probability: float, seed: int
) -> list[dict[str, Any]]:
    """`copies` perturbed versions of each tagged example (label-wise token replacement): each word, with
    `probability`, becomes a word drawn at random from the training words that carried the same gold tag. The
    copies carry no tags: the replaced words may change what the sentence means, so the teacher tags them."""
    pools: dict[str, list[str]] = defaultdict(list)
    for example in examples:
        for token, tag in zip(example["tokens"], example["tags"]):
            pools[tag].append(token)
    rng = random.Random(seed)
    return [
        {
            "tokens": [
                rng.choice(pools[tag]) if rng.random() < probability else token
                for token, tag in zip(example["tokens"], example["tags"])
            ],
            "tags": None,
        }
        for _ in range(copies)
        for example in examples
    ]


def text_examples(paths: Sequence[str], tokenizer: Any) -> list[dict[str, Any]]:
    """Untagged examples from text files, one per non-blank line, split into words as the tokenizer splits them."""
    examples = []
    for path in paths:
        found = [
            {"tokens": words, "tags": None}
            for line in ner_data.read_text_lines(path)
            if (words := ner_data.pre_tokens(line, tokenizer))
        ]
        examples.extend(found)
        logger.info("%s: %d sentences to be tagged by the teacher", path, len(found))
    return examples


def teacher_tagged_examples(
    distill_args: DistillArguments, train: list[dict[str, Any]], tokenizer: Any, seed: int
) -> list[dict[str, Any]]:
    """The untagged training examples the options ask for: perturbed copies of `train`, then the text files'."""
    copies = augmented_examples(train, distill_args.augment_copies, distill_args.augment_probability, seed)
    return copies + text_examples(distill_args.teacher_text_files, tokenizer)


def add_teacher_tagged(
    encoded: dict[str, training.EncodedSplit],
    examples: list[dict[str, Any]],
    tokenizer: Any,
    label2id: dict[str, int],
    scheme: str,
    max_len: int,
    data_args: arguments.DataTrainingArguments,
    training_args: TrainingArguments,
) -> None:
    """Append `examples` (untagged) to the training rows, their chain positions labelled TEACHER_TAGGED."""
    if not examples:
        return
    examples, _ = ner_data.replace_untokenizable(examples, tokenizer)
    extra = training.encode_splits({"train": examples}, tokenizer, label2id, scheme, max_len, data_args, training_args)
    special = set(tokenizer.all_special_ids)

    def label(row: dict[str, list[int]]) -> dict[str, list[int]]:
        # The chain run_ner gives gold rows: first sub-tokens, or every non-special one with --label_all_tokens.
        on = [i not in special for i in row["input_ids"]] if data_args.label_all_tokens else row["word_start_mask"]
        return {"labels": [TEACHER_TAGGED if flag else -100 for flag in on]}

    train = encoded["train"].dataset
    rows = extra["train"].dataset.map(label, desc="Marking teacher-tagged rows").cast(train.features)
    encoded["train"] = dataclasses.replace(encoded["train"], dataset=datasets.concatenate_datasets([train, rows]))
    logger.info("Training on %d gold rows and %d teacher-tagged rows", len(train), len(rows))


def distillation_term(
    student: CrfTaggingMixin,
    teacher: CrfTaggingMixin,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    chain: torch.Tensor,
    target: str,
    temperature: float,
) -> torch.Tensor:
    """The teacher-matching loss of a batch: summed over each row's chain positions, averaged over the rows that
    have any. `*_logits` are `(batch, seq, labels)` emissions, `chain` the `(batch, seq)` positions that count."""
    rows = chain.any(1).sum().clamp(min=1)
    if target == "kl":
        student_log = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (batch, seq, labels)
        teacher_log = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
        per_token = (teacher_log.exp() * (teacher_log - student_log)).sum(-1)  # (batch, seq)
        return temperature**2 * (per_token * chain).sum() / rows
    if target == "marginals":
        student_emissions, _, packed = student._gather_chain(student_logits, chain)  # (batch, width, labels)
        teacher_emissions, _, _ = teacher._gather_chain(teacher_logits, chain)
        with torch.no_grad():
            wanted = teacher.crf.marginals_packed(teacher_emissions, packed)  # (batch, width, labels)
        log_student = student.crf.log_marginals_packed(student_emissions, packed)  # (batch, width, labels)
        per_token = (torch.special.xlogy(wanted, wanted) - wanted * log_student).sum(-1)  # (batch, width)
        return (per_token * packed).sum() / rows
    raise ValueError(f"target must be one of {DISTILL_TARGETS[:2]}, got {target!r}")


class DistillationTrainer(Trainer):
    """The stock Trainer with the distillation loss in training (evaluation scores the student's own NLL)."""

    def __init__(
        self, *args: Any, teacher: EncoderCrfMixin, target: str, alpha: float, temperature: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device)
        self.target, self.alpha, self.temperature = target, alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
        labels = inputs.get("labels")
        by_teacher = labels == TEACHER_TAGGED if labels is not None else None  # (batch, seq)
        any_by_teacher = by_teacher is not None and bool(by_teacher.any())
        soft_term = model.training and self.target != "none" and self.alpha < 1.0
        if soft_term or any_by_teacher:
            with torch.no_grad():
                teacher_logits = self.teacher.emissions(
                    inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    token_type_ids=inputs.get("token_type_ids"),
                )  # (batch, seq, labels)
            chain = (labels != -100) & inputs["attention_mask"].bool()  # (batch, seq)
        if any_by_teacher:
            viterbi = self.teacher.decode(teacher_logits, chain)  # (batch, seq), -100 off the chain
            inputs = {**inputs, "labels": torch.where(by_teacher, viterbi, labels)}
        outputs = model(**inputs)
        loss = outputs.loss
        if soft_term:
            student = self.accelerator.unwrap_model(model)
            soft = distillation_term(
                student, self.teacher, outputs.logits, teacher_logits, chain, self.target, self.temperature
            )
            loss = self.alpha * loss + (1.0 - self.alpha) * soft
        return (loss, outputs) if return_outputs else loss


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    distill_args, data_args, training_args = parse_args(argv)
    launch.setup_logging(training_args)
    set_seed(training_args.seed)
    teacher_args = teacher_arguments(distill_args)
    teacher = load_teacher(distill_args.teacher_name_or_path)
    raw = training.load_raw_splits(teacher_args, data_args, training_args)
    scheme = training.resolve_schemes(raw, teacher_args, data_args, teacher.config)
    training.resolve_labels(raw, teacher_args, data_args, scheme, teacher.config)
    tokenizer = training.load_tokenizer(teacher_args)
    raw = training.prepare_words(raw, tokenizer, data_args)
    student = build_student(distill_args, teacher, tokenizer)
    logger.info(
        "Student: %.1fM parameters; teacher: %.1fM", student.num_parameters() / 1e6, teacher.num_parameters() / 1e6
    )
    max_len = training.window_length(data_args, tokenizer, teacher.config)
    encoded = training.encode_splits(
        raw, tokenizer, teacher.config.label2id, scheme, max_len, data_args, training_args
    )
    if training_args.do_train:
        extra = teacher_tagged_examples(distill_args, raw["train"], tokenizer, training_args.seed)
        add_teacher_tagged(
            encoded, extra, tokenizer, teacher.config.label2id, scheme, max_len, data_args, training_args
        )
    trainer, metrics = training.build_trainer(
        student,
        tokenizer,
        encoded,
        scheme,
        teacher_args,
        data_args,
        training_args,
        trainer_class=DistillationTrainer,
        teacher=teacher,
        target=distill_args.distill_target,
        alpha=distill_args.alpha,
        temperature=distill_args.temperature,
    )
    results: dict[str, float] = {}
    if training_args.do_train:
        results.update(training.train(trainer, outputs.prepare_output_dir(training_args), len(raw["train"])))
    results.update(training.evaluate_splits(trainer, encoded, metrics, scheme, data_args, training_args))
    outputs.save_outputs(trainer, tokenizer, training_args, results, with_handler=True)
    launch.finish(trainer, training_args, "bert-crf distill.py")
    return results


if __name__ == "__main__":
    launch.cli(functools.partial(cli.run, main))
