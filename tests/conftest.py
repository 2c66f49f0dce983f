"""Shared setup for the test suite: offline Hugging Face, the repo root on sys.path, tiny configs and models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Must happen before transformers / huggingface_hub / datasets are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ID2LABEL = dict(enumerate(LABELS))
LABEL2ID = {label: i for i, label in ID2LABEL.items()}

TINY_BERT_KWARGS = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    vocab_size=100,
    max_position_embeddings=64,
    type_vocab_size=2,
)


def build_tiny_config(**overrides):
    """A tiny random BertCrfConfig over LABELS; keyword arguments override any field."""
    from configuration_bert_crf import BertCrfConfig

    kwargs = dict(TINY_BERT_KWARGS)
    kwargs.update(id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
    kwargs.update(overrides)
    return BertCrfConfig(**kwargs)


def build_tiny_model(seed: int = 0, **overrides):
    """A BertCrfForTokenClassification with tiny random weights, in eval mode (dropout off)."""
    from modeling_bert_crf import BertCrfForTokenClassification

    torch.manual_seed(seed)
    model = BertCrfForTokenClassification(build_tiny_config(**overrides))
    return model.eval()


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_config():
    return build_tiny_config()


@pytest.fixture
def make_config():
    return build_tiny_config


@pytest.fixture
def make_model():
    return build_tiny_model


def pytest_configure(config):
    # pytorch-crf builds a uint8 mask itself when none is given, which newer torch warns about.
    config.addinivalue_line("filterwarnings", "ignore:where received a uint8 condition tensor:UserWarning")


def pack(emissions, tags, mask):
    """Hand-pack batch-first inputs, one position at a time: each row's on positions, in order, at the front.

    Returns (emissions, tags, mask) of width max(on positions per row), zeros past each row's end and a prefix mask.
    """
    batch, seq_len, num_tags = emissions.shape
    width = int(mask.sum(1).max())
    packed_em = torch.zeros(batch, width, num_tags, dtype=emissions.dtype)
    packed_tags = torch.zeros(batch, width, dtype=torch.long)
    packed_mask = torch.zeros(batch, width, dtype=torch.bool)
    for b in range(batch):
        positions = [t for t in range(seq_len) if mask[b, t]]
        for k, t in enumerate(positions):
            packed_em[b, k] = emissions[b, t]
            packed_tags[b, k] = tags[b, t]
            packed_mask[b, k] = True
    return packed_em, packed_tags, packed_mask
