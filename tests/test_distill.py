"""Tests for distill.py: the distillation terms, the loss the Trainer optimizes, argument checks and whole runs
from a tiny BERT-CRF teacher into a tiny BiLSTM-CRF student."""

from __future__ import annotations

import math

import pytest
import torch

import distill
from bertcrf.crf_models import load_crf_model
from conftest import DEMO_DIR
from modeling_bert_crf import CRF, BertCrfForTokenClassification
from modeling_bilstm_crf import BiLstmCrfForTokenClassification


FAST = [
    "--report_to",
    "none",
    "--disable_tqdm",
    "True",
    "--save_strategy",
    "no",
    "--seed",
    "7",
    "--per_device_train_batch_size",
    "8",
    "--max_seq_length",
    "64",
]


def argv_of(**options):
    argv = []
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv + FAST


class _Head:
    """A stand-in for a model's CRF head: `_gather_chain` and a CRF."""

    _gather_chain = staticmethod(BertCrfForTokenClassification._gather_chain)

    def __init__(self, crf: CRF) -> None:
        self.crf = crf


def head_pair(num_tags: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    teacher, student = CRF(num_tags, batch_first=True), CRF(num_tags, batch_first=True)
    for crf in (teacher, student):
        with torch.no_grad():
            for param in crf.parameters():
                param.normal_()
    return _Head(teacher), _Head(student)


def chain_batch(num_tags: int = 4):
    logits = torch.randn(2, 6, num_tags)
    chain = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 1, 0, 1, 1, 0]], dtype=torch.bool)  # a hole in row 2
    return logits, chain


# ----------------------------------------------------------------------------------------------------------------
# Distillation terms


def test_kl_term_is_the_tempered_kl_summed_per_sentence():
    teacher, student = head_pair()
    student_logits, chain = chain_batch()
    teacher_logits = torch.randn_like(student_logits)
    got = distill.distillation_term(student, teacher, student_logits, teacher_logits, chain, "kl", 2.0)
    total = 0.0
    for b, t in chain.nonzero().tolist():
        p = torch.softmax(teacher_logits[b, t] / 2, -1)
        q = torch.softmax(student_logits[b, t] / 2, -1)
        total += float((p * (p / q).log()).sum())
    assert got.item() == pytest.approx(4 * total / 2, rel=1e-5)
    assert distill.distillation_term(
        student, teacher, teacher_logits, teacher_logits, chain, "kl", 2.0
    ).item() == pytest.approx(0, abs=1e-6)


def test_only_chain_positions_count():
    teacher, student = head_pair()
    student_logits, chain = chain_batch()
    teacher_logits = torch.randn_like(student_logits)
    changed = student_logits.clone()
    changed[~chain] += 100.0
    for target in ("kl", "marginals"):
        a = distill.distillation_term(student, teacher, student_logits, teacher_logits, chain, target, 1.0)
        b = distill.distillation_term(student, teacher, changed, teacher_logits, chain, target, 1.0)
        assert a.item() == pytest.approx(b.item(), rel=1e-6), target


def test_marginals_term_is_zero_for_the_same_crf_and_positive_otherwise():
    teacher, student = head_pair()
    student.crf.load_state_dict(teacher.crf.state_dict())
    logits, chain = chain_batch()
    same = distill.distillation_term(student, teacher, logits, logits.clone(), chain, "marginals", 1.0)
    assert same.item() == pytest.approx(0, abs=1e-5)
    other = distill.distillation_term(student, teacher, torch.randn_like(logits), logits, chain, "marginals", 1.0)
    assert other.item() > 0.01


def test_marginals_term_trains_the_student_crf_and_emissions():
    teacher, student = head_pair(seed=3)
    logits, chain = chain_batch()
    student_logits = torch.randn_like(logits, requires_grad=True)
    distill.distillation_term(student, teacher, student_logits, logits, chain, "marginals", 1.0).backward()
    assert student.crf.transitions.grad.abs().sum() > 0
    assert student_logits.grad[chain].abs().sum() > 0 and (student_logits.grad[~chain] == 0).all()
    assert teacher.crf.transitions.grad is None


# ----------------------------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("distill_target", "mse", "--distill_target must be one of .* got 'mse'"),
        ("alpha", "1.5", r"--alpha must be in \[0, 1\], got 1.5"),
        ("temperature", "0", "--temperature must be > 0, got 0.0"),
        ("extend_vocab", "True", "--extend_vocab does not apply"),
        ("augment_copies", "-1", "--augment_copies must be >= 0, got -1"),
        ("augment_probability", "2", r"--augment_probability must be in \[0, 1\], got 2.0"),
    ],
)
def test_bad_arguments_raise(crf_checkpoint, tmp_path, option, value, message):
    argv = argv_of(
        teacher_name_or_path=crf_checkpoint, train_file=DEMO_DIR / "train.txt", output_dir=tmp_path, do_train=True
    )
    with pytest.raises(ValueError, match=message):
        distill.parse_args(argv + [f"--{option}", value])


def test_student_embeddings_start_from_the_teacher(crf_checkpoint, tmp_path):
    args, _, _ = distill.parse_args(
        argv_of(teacher_name_or_path=crf_checkpoint, train_file=DEMO_DIR / "train.txt", output_dir=tmp_path)
    )
    teacher = distill.load_teacher(str(crf_checkpoint))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(crf_checkpoint)
    student = distill.build_student(args, teacher, tokenizer)
    assert torch.equal(student.embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert student.config.id2label == teacher.config.id2label
    assert student.config.special_token_ids == teacher.config.special_token_ids
    args.embedding_size = 8
    with pytest.raises(ValueError, match="--embedding_size 8 differs from the teacher's hidden size 32"):
        distill.build_student(args, teacher, tokenizer)


# ----------------------------------------------------------------------------------------------------------------
# The loss the Trainer optimizes, and whole runs


def trainer_for(crf_checkpoint, tmp_path, target, alpha, **options):
    """A DistillationTrainer over 16 demo sentences (and what `options` add), as distill.main builds it."""
    from bertcrf import training

    argv = argv_of(
        teacher_name_or_path=crf_checkpoint,
        train_file=DEMO_DIR / "train.txt",
        output_dir=tmp_path,
        do_train=True,
        max_train_samples=16,
        distill_target=target,
        alpha=alpha,
        **options,
    )
    distill_args, data_args, training_args = distill.parse_args(argv)
    teacher_args = distill.teacher_arguments(distill_args)
    teacher = distill.load_teacher(str(crf_checkpoint))
    raw = training.load_raw_splits(teacher_args, data_args, training_args)
    scheme = training.resolve_schemes(raw, teacher_args, data_args, teacher.config)
    tokenizer = training.load_tokenizer(teacher_args)
    raw = training.prepare_words(raw, tokenizer, data_args)
    student = distill.build_student(distill_args, teacher, tokenizer)
    encoded = training.encode_splits(raw, tokenizer, teacher.config.label2id, scheme, 64, data_args, training_args)
    extra = distill.teacher_tagged_examples(distill_args, raw["train"], tokenizer, 7)
    distill.add_teacher_tagged(
        encoded, extra, tokenizer, teacher.config.label2id, scheme, 64, data_args, training_args
    )
    trainer, _ = training.build_trainer(
        student,
        tokenizer,
        encoded,
        scheme,
        teacher_args,
        data_args,
        training_args,
        trainer_class=distill.DistillationTrainer,
        teacher=teacher,
        target=target,
        alpha=alpha,
        temperature=2.0,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, student, teacher, batch


@pytest.mark.parametrize("target", ["kl", "marginals"])
def test_training_loss_mixes_gold_nll_and_the_teacher_term(crf_checkpoint, tmp_path, target):
    trainer, student, teacher, batch = trainer_for(crf_checkpoint, tmp_path, target, 0.3)
    student.train()
    torch.manual_seed(0)
    mixed = trainer.compute_loss(student, batch)
    student.eval()  # no dropout: the same emissions again
    torch.manual_seed(0)
    student.train()
    outputs = student(**batch)
    with torch.no_grad():
        teacher_logits = teacher.emissions(
            batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        )
    chain = (batch["labels"] != -100) & batch["attention_mask"].bool()
    soft = distill.distillation_term(student, teacher, outputs.logits, teacher_logits, chain, target, 2.0)
    assert mixed.item() == pytest.approx(0.3 * outputs.loss.item() + 0.7 * soft.item(), rel=1e-5)
    student.eval()
    assert trainer.compute_loss(student, batch).item() == pytest.approx(student(**batch).loss.item(), rel=1e-6)


def test_gold_only_student_ignores_the_teacher(crf_checkpoint, tmp_path):
    trainer, student, teacher, batch = trainer_for(crf_checkpoint, tmp_path, "none", 0.5)
    student.eval()
    assert trainer.compute_loss(student, batch).item() == pytest.approx(student(**batch).loss.item(), rel=1e-6)


def test_teacher_stays_frozen_while_the_student_trains(crf_checkpoint, tmp_path):
    trainer, student, teacher, _ = trainer_for(crf_checkpoint, tmp_path, "marginals", 0.5)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    embeddings = student.embeddings.weight.detach().clone()
    trainer.train()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not torch.equal(embeddings, student.embeddings.weight)


# ----------------------------------------------------------------------------------------------------------------
# Training text tagged by the teacher


def test_augmented_copies_swap_words_for_words_of_the_same_gold_tag():
    examples = [
        {"tokens": list("张三在北京"), "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]},
        {"tokens": list("李四去上海"), "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]},
    ]
    pools = {}
    for e in examples:
        for token, tag in zip(e["tokens"], e["tags"]):
            pools.setdefault(tag, set()).add(token)
    assert (
        distill.augmented_examples(examples, 2, 0.0, 0)
        == [{"tokens": e["tokens"], "tags": None} for e in examples] * 2
    )
    copies = distill.augmented_examples(examples, 50, 1.0, 0)
    assert len(copies) == 100 and all(c["tags"] is None for c in copies)
    for copy, source in zip(copies, examples * 50):
        assert all(token in pools[tag] for token, tag in zip(copy["tokens"], source["tags"]))
    assert {"".join(c["tokens"]) for c in copies} - {"张三在北京", "李四去上海"}  # some words did move
    assert distill.augmented_examples(examples, 3, 0.5, 1) == distill.augmented_examples(examples, 3, 0.5, 1)


def test_text_examples_split_lines_like_the_tokenizer(tiny_tokenizer, tmp_path):
    text = tmp_path / "raw.txt"
    text.write_text("我在北京\n\n  \nHello, World\n", encoding="utf-8")
    examples = distill.text_examples([str(text)], tiny_tokenizer)
    assert examples == [{"tokens": list("我在北京"), "tags": None}, {"tokens": ["hello", ",", "world"], "tags": None}]
    with pytest.raises(FileNotFoundError, match="no such text file"):
        distill.text_examples([str(tmp_path / "missing.txt")], tiny_tokenizer)


def test_teacher_tagged_rows_learn_the_teachers_viterbi_tags(crf_checkpoint, tmp_path):
    text = tmp_path / "raw.txt"
    text.write_text("张三在北京工作\n李四去了上海\n", encoding="utf-8")
    trainer, student, teacher, _ = trainer_for(
        crf_checkpoint, tmp_path, "none", 1.0, augment_copies=1, teacher_text_files=text
    )
    dataset = trainer.train_dataset
    assert len(dataset) == 16 + 16 + 2
    tagged = [row for row in dataset if distill.TEACHER_TAGGED in row["labels"]]
    assert len(tagged) == 18
    for row in tagged:  # the chain of a teacher-tagged row is its first sub-tokens, as for gold rows
        assert [label == distill.TEACHER_TAGGED for label in row["labels"]] == [
            bool(m) for m in row["word_start_mask"]
        ]
    batch = trainer.data_collator([dataset[0], dataset[20], dataset[33]])  # gold, augmented, text
    student.eval()
    got = trainer.compute_loss(student, batch)
    with torch.no_grad():
        teacher_logits = teacher.emissions(batch["input_ids"], attention_mask=batch["attention_mask"])
    labels = batch["labels"].clone()
    mine = labels == distill.TEACHER_TAGGED
    labels[mine] = teacher.decode(teacher_logits, labels != -100)[mine]
    assert (labels[0] == batch["labels"][0]).all() and (labels[1:][labels[1:] != -100] >= 0).all()
    assert got.item() == pytest.approx(student(**{**batch, "labels": labels}).loss.item(), rel=1e-6)


def agreement(a: list[list[str]], b: list[list[str]]) -> float:
    pairs = [(x, y) for s, t in zip(a, b) for x, y in zip(s, t)]
    return sum(x == y for x, y in pairs) / len(pairs)


def teacher_predictions(crf_checkpoint, tmp_path):
    import run_ner

    run_ner.main(
        argv_of(
            model_name_or_path=crf_checkpoint,
            validation_file=DEMO_DIR / "dev.txt",
            do_eval=True,
            output_dir=tmp_path / "teacher",
        )
    )
    return read_predictions(tmp_path / "teacher")


def read_predictions(folder):
    sentences, current = [], []
    for line in (folder / "predictions_validation.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line.rsplit(" ", 1)[1])
        else:
            sentences.append(current)
            current = []
    return sentences + ([current] if current else [])


def test_distilled_student_learns_the_teacher(crf_checkpoint, tmp_path):
    """Pure distillation (alpha 0), or gold tags plus copies tagged by the teacher, make the student tag dev like the
    (random) teacher, far more than a student of the gold tags; a whole run saves a loadable student with a
    prediction for every dev token."""
    teacher = teacher_predictions(crf_checkpoint, tmp_path)
    common = dict(
        teacher_name_or_path=crf_checkpoint,
        train_file=DEMO_DIR / "train.txt",
        validation_file=DEMO_DIR / "dev.txt",
        do_train=True,
        do_eval=True,
        max_train_samples=200,
        learning_rate=2e-2,
        head_learning_rate=2e-2,
        lstm_hidden_size=32,
        num_train_epochs=6,
    )
    results = {}
    runs = (
        ("gold", "none", 1.0, {}),
        ("kl", "kl", 0.0, {}),
        ("marginals", "marginals", 0.0, {}),
        ("teacher-tagged copies", "none", 1.0, {"augment_copies": 3}),
    )
    for name, target, alpha, extra in runs:
        results[name] = distill.main(
            argv_of(output_dir=tmp_path / name, distill_target=target, alpha=alpha, **common, **extra)
        )
    agree = {name: agreement(read_predictions(tmp_path / name), teacher) for name in results}
    assert agree["kl"] > agree["gold"] + 0.1 and agree["marginals"] > agree["gold"] + 0.1, agree
    assert agree["teacher-tagged copies"] > agree["gold"] + 0.2, agree  # 3 of 4 rows tagged by the teacher
    assert all(r["eval_samples"] == len(teacher) for r in results.values())
    student = load_crf_model(str(tmp_path / "kl"))
    assert isinstance(student, BiLstmCrfForTokenClassification)
    assert (tmp_path / "kl" / "tokenizer.json").is_file() and (tmp_path / "kl" / "handler.py").is_file()
    assert not math.isnan(results["kl"]["train_loss"])
