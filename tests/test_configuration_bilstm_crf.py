"""Tests for configuration_bilstm_crf.BiLstmCrfConfig."""

from __future__ import annotations

import pytest

from configuration_bilstm_crf import BiLstmCrfConfig
from conftest import ID2LABEL


def test_defaults_and_label_maps():
    config = BiLstmCrfConfig(id2label=dict(ID2LABEL))
    assert config.model_type == "bilstm_crf"
    assert (config.embedding_size, config.hidden_size, config.num_hidden_layers) == (128, 256, 1)
    assert config.label2id == {label: i for i, label in ID2LABEL.items()}
    assert config.resolved_tag_scheme == "BIO"
    assert config.constrain_decoding and config.loss_reduction == "mean"
    assert (
        config.custom_pipelines["token-classification"]["impl"] == "pipeline_bert_crf.CrfTokenClassificationPipeline"
    )


def test_round_trip_through_json(tmp_path):
    config = BiLstmCrfConfig(
        vocab_size=77,
        embedding_size=24,
        hidden_size=12,
        num_hidden_layers=2,
        pad_token_id=3,
        id2label=dict(ID2LABEL),
        tag_scheme="IOB1",
        special_token_ids=[1, 2],
    )
    config.save_pretrained(tmp_path)
    loaded = BiLstmCrfConfig.from_pretrained(tmp_path)
    for name in (
        "vocab_size",
        "embedding_size",
        "hidden_size",
        "num_hidden_layers",
        "pad_token_id",
        "tag_scheme",
        "special_token_ids",
        "hidden_dropout_prob",
        "max_position_embeddings",
    ):
        assert getattr(loaded, name) == getattr(config, name), name
    assert loaded.id2label == config.id2label


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=0), "hidden_size must be a positive int, got 0"),
        (dict(embedding_size=True), "embedding_size must be a positive int, got True"),
        (dict(num_hidden_layers=1.5), "num_hidden_layers must be a positive int, got 1.5"),
        (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob must be in \[0, 1\), got 1.0"),
        (dict(tag_scheme="BILOU"), "tag_scheme must be one of .* got 'BILOU'"),
        (dict(loss_reduction="avg"), "loss_reduction must be one of .* got 'avg'"),
        (dict(constrain_decoding="yes"), "constrain_decoding must be a bool, got 'yes'"),
    ],
)
def test_bad_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BiLstmCrfConfig(**kwargs)
