"""Tests for run_mlm.py: text gathering, word units, packing, the 80/10/10 masking and whole runs on a tiny BERT."""

from __future__ import annotations

import itertools
import json
import sys
import types

import pytest
import torch

import run_mlm
import run_ner
from bertcrf import ner_data
from conftest import DEMO_DIR


FAST = ["--report_to", "none", "--disable_tqdm", "True", "--seed", "5", "--per_device_train_batch_size", "8"]


def argv_of(**options):
    argv = []
    for key, value in options.items():
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv + FAST


@pytest.fixture
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Text


def test_ner_files_become_text_without_labels(tmp_path):
    english = tmp_path / "eng.txt"
    english.write_text("-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n", encoding="utf-8")
    assert run_mlm.ner_file_lines(str(english)) == ["EU rejects German", "Peter"]  # no document markers
    chinese = run_mlm.ner_file_lines(str(DEMO_DIR / "train.txt"))
    first = ner_data.read_column_file(DEMO_DIR / "train.txt")[0]["tokens"]
    assert chinese[0] == "".join(first) and len(chinese) == 600


def test_word_units(tokenizer):
    lines = ["北京 newyork", "北京 大学"]
    own = run_mlm.tokenize_lines(lines, tokenizer, "tokenizer")
    pieces = tokenizer.convert_ids_to_tokens(own["input_ids"][0])
    assert pieces == ["北", "京", "new", "##york"]
    assert own["word_ids"][0] == [0, 1, 2, 2]  # each character alone, an English word's pieces together
    spaced = run_mlm.tokenize_lines(lines, tokenizer, "whitespace")
    assert spaced["word_ids"][1] == [0, 0, 1, 1]  # pre-segmented words whole
    assert spaced["input_ids"] == own["input_ids"]


def test_jieba_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)
    with pytest.raises(ImportError, match="pip install jieba"):
        run_mlm.split_words("北京大学", "jieba")


def test_packing_keeps_every_token():
    batch = {"input_ids": [[5, 6, 7], [8], [9, 10, 11, 12, 13, 14]], "word_ids": [[0, 1, 1], [0], [0, 0, 1, 2, 2, 3]]}
    packed = run_mlm.pack_blocks(batch, block=5, cls_id=2, sep_id=3)
    assert all(row[0] == 2 and row[-1] == 3 and len(row) <= 5 for row in packed["input_ids"])
    assert [t for row in packed["input_ids"] for t in row[1:-1]] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert len(packed["input_ids"][-1]) < 5  # the short tail is kept
    words = [w for row in packed["word_ids"] for w in row[1:-1]]
    assert words == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6]  # unique across lines
    assert all(row[0] == row[-1] == -1 for row in packed["word_ids"])


# ----------------------------------------------------------------------------------------------------------------
# Masking


def rows_of(count, length, word_size=1):
    """Rows [CLS] + `length` tokens + [SEP] with words of `word_size` pieces."""
    ids = [2] + [10 + (i % 50) for i in range(length)] + [3]
    words = [-1] + [i // word_size for i in range(length)] + [-1]
    return [{"input_ids": ids, "word_ids": words} for _ in range(count)]


def test_masking_chooses_15_percent_of_the_real_tokens(tokenizer):
    collator = run_mlm.MaskingCollator(tokenizer, 0.15, generator=torch.Generator().manual_seed(0))
    features = rows_of(3, 40) + rows_of(1, 7)
    batch = collator(features)
    chosen = batch["labels"] != -100
    assert chosen[:3].sum(1).tolist() == [6, 6, 6] and chosen[3].sum() == 1
    original = torch.tensor([f["input_ids"] + [0] * (42 - len(f["input_ids"])) for f in features])
    assert torch.equal(batch["labels"][chosen], original[chosen])
    assert not chosen[:, 0].any() and not chosen[0, -1].any() and not chosen[3, 8:].any()  # no [CLS], [SEP], padding
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])
    assert batch["attention_mask"][3].tolist() == [1] * 9 + [0] * 33


def test_80_10_10(tokenizer):
    collator = run_mlm.MaskingCollator(tokenizer, 0.15, generator=torch.Generator().manual_seed(1))
    features = rows_of(400, 100)
    batch = collator(features)
    chosen = batch["labels"] != -100
    got = batch["input_ids"][chosen]
    masked = (got == tokenizer.mask_token_id).float().mean().item()
    kept = (got == batch["labels"][chosen]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1, abs=0.02)
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.02)
    replaced = got[(got != tokenizer.mask_token_id) & (got != batch["labels"][chosen])]
    assert not set(replaced.tolist()) & set(tokenizer.all_special_ids)


def test_whole_word_masking_takes_words_whole(tokenizer):
    collator = run_mlm.MaskingCollator(tokenizer, 0.15, whole_word=True, generator=torch.Generator().manual_seed(2))
    features = rows_of(50, 60, word_size=3)
    batch = collator(features)
    chosen = (batch["labels"] != -100)[:, 1:-1].reshape(50, 20, 3)  # (rows, words, pieces)
    assert torch.equal(chosen.all(2), chosen.any(2))  # every word all in or all out
    assert chosen.sum(2).sum(1).eq(9).all()  # 15% of 60
    masks = (batch["input_ids"][:, 1:-1] == tokenizer.mask_token_id).reshape(50, 20, 3)
    words_with_masks = masks.any(2)
    assert torch.equal(masks.all(2)[words_with_masks], masks.any(2)[words_with_masks])  # one decision per word


# ----------------------------------------------------------------------------------------------------------------
# Arguments and whole runs


@pytest.mark.parametrize(
    "extra, message",
    [
        ({}, "Need --train_files or --ner_files"),
        ({"ner_files": "x.txt", "word_boundaries": "spaces"}, "--word_boundaries must be one of .* got 'spaces'"),
        ({"ner_files": "x.txt", "mlm_probability": 0}, r"--mlm_probability must be in \(0, 1\), got 0.0"),
        ({"ner_files": "x.txt", "save_fractions": 0.5}, "--save_fractions needs --max_train_minutes"),
        ({"ner_files": "x.txt", "max_seq_length": 2}, "--max_seq_length must be at least 3, got 2"),
    ],
)
def test_bad_arguments_raise(tiny_checkpoint, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        run_mlm.parse_args(argv_of(model_name_or_path=tiny_checkpoint, output_dir=tmp_path, **extra))


@pytest.fixture(scope="module")
def unseen_text(tmp_path_factory):
    """Raw text whose characters the tiny vocabulary lacks, and demo sentences."""
    path = tmp_path_factory.mktemp("raw") / "raw.txt"
    path.write_text("鑫淼焱垚\n\n鑫淼的焱垚在北京\n" * 10, encoding="utf-8")
    return path


def test_adapted_encoder_feeds_run_ner(tiny_checkpoint, unseen_text, tmp_path):
    results = run_mlm.main(
        argv_of(
            model_name_or_path=tiny_checkpoint,
            train_files=unseen_text,
            ner_files=DEMO_DIR / "train.txt",
            extend_vocab=True,
            whole_word_masking=True,
            max_seq_length=32,
            max_train_lines=120,
            output_dir=tmp_path / "mlm",
            do_train=True,
            do_eval=True,
            max_steps=6,
            learning_rate=1e-3,
            save_strategy="no",
        )
    )
    assert results["perplexity"] == pytest.approx(torch.tensor(results["eval_loss"]).exp().item(), rel=1e-6)
    from transformers import AutoTokenizer

    adapted = AutoTokenizer.from_pretrained(tmp_path / "mlm")
    assert all(adapted.tokenize(c) == [c] for c in "鑫淼焱垚")
    config = json.loads((tmp_path / "mlm" / "config.json").read_text())
    assert config["vocab_size"] == len(adapted)
    scores = run_ner.main(
        [
            "--model_name_or_path",
            str(tmp_path / "mlm"),
            "--train_file",
            str(DEMO_DIR / "train.txt"),
            "--validation_file",
            str(DEMO_DIR / "dev.txt"),
            "--do_train",
            "True",
            "--do_eval",
            "True",
            "--max_train_samples",
            "16",
            "--max_eval_samples",
            "8",
            "--max_steps",
            "2",
            "--output_dir",
            str(tmp_path / "ner"),
            "--save_strategy",
            "no",
            *FAST,
        ]
    )
    assert scores["eval_samples"] == 8


def test_time_budget_stops_and_saves_checkpoints(tiny_checkpoint, tmp_path, monkeypatch):
    # A clock that moves 1 s per reading (one at the start, one per step), so a loaded machine cannot move the steps.
    ticks = itertools.count()
    monkeypatch.setattr(run_mlm, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    run_mlm.main(
        argv_of(
            model_name_or_path=tiny_checkpoint,
            ner_files=DEMO_DIR / "train.txt",
            max_seq_length=32,
            output_dir=tmp_path,
            do_train=True,
            max_steps=100000,
            max_train_minutes=0.1,
            save_fractions=[0.5],
            save_strategy="no",
            validation_split_percentage=0,
            per_device_train_batch_size=2,
        )
    )
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 6  # a 6 s budget
    checkpoints = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]  # at half the budget and at its end
    assert (tmp_path / checkpoints[0] / "tokenizer.json").is_file()


def test_head_only_at_chosen_positions_keeps_the_loss(tiny_checkpoint, tokenizer):
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)
    reference = AutoModelForMaskedLM.from_pretrained(tiny_checkpoint).eval()
    fast = AutoModelForMaskedLM.from_pretrained(tiny_checkpoint).eval()
    fast.load_state_dict(reference.state_dict())
    run_mlm.predict_only_chosen_positions(fast)
    collator = run_mlm.MaskingCollator(tokenizer, 0.15, generator=torch.Generator().manual_seed(3))
    batch = collator(rows_of(4, 30) + rows_of(2, 9))
    want, got = reference(**batch), fast(**batch)
    assert got.loss.item() == pytest.approx(want.loss.item(), rel=1e-5)
    assert got.logits.shape == ((batch["labels"] != -100).sum().item(), want.logits.size(-1))
    got.loss.backward()
    assert fast.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
