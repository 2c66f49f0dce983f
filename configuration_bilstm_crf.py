"""Configuration of the BiLSTM-CRF student (distilled from a BERT-CRF teacher by distill.py).

This file travels with checkpoints as remote code, with configuration_bert_crf.py beside it.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import CUSTOM_PIPELINE, CrfConfigMixin
except ImportError:  # in this repository
    from configuration_crf import CUSTOM_PIPELINE, CrfConfigMixin


class BiLstmCrfConfig(CrfConfigMixin, PretrainedConfig):
    r"""Configuration of [`BiLstmCrfForTokenClassification`]: token embeddings, a bidirectional LSTM, a linear
    classifier and a CRF. It uses its teacher's tokenizer, so `vocab_size` and `pad_token_id` are the tokenizer's.

    Args:
        vocab_size (`int`, defaults to 30522): number of token ids.
        embedding_size (`int`, defaults to 128): size of the token embeddings (the teacher's hidden size when they
            are initialized from its embedding matrix).
        hidden_size (`int`, defaults to 256): LSTM state size of each direction.
        num_hidden_layers (`int`, defaults to 1): stacked bidirectional LSTM layers.
        hidden_dropout_prob (`float`, defaults to 0.2): dropout on the embeddings, between LSTM layers and before
            the classifier.
        max_position_embeddings (`int`, defaults to 512): longest window in tokens that the pipeline and
            run_ner.py feed (an LSTM has no length limit; the windows match the teacher's).
        initializer_range (`float`, defaults to 0.1): half-width of the uniform initialization of the embeddings.
        tag_scheme, constrain_decoding, loss_reduction, special_token_ids: as in [`BertCrfConfig`].
        kwargs: passed on to [`PretrainedConfig`] (label maps, `pad_token_id`, ...).
    """

    model_type = "bilstm_crf"

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 128,
        hidden_size: int = 256,
        num_hidden_layers: int = 1,
        hidden_dropout_prob: float = 0.2,
        max_position_embeddings: int = 512,
        initializer_range: float = 0.1,
        tag_scheme: str | None = None,
        constrain_decoding: bool = True,
        loss_reduction: str = "mean",
        special_token_ids: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_size", embedding_size),
            ("hidden_size", hidden_size),
            ("num_hidden_layers", num_hidden_layers),
            ("max_position_embeddings", max_position_embeddings),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= hidden_dropout_prob < 1.0:
            raise ValueError(f"hidden_dropout_prob must be in [0, 1), got {hidden_dropout_prob!r}")
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.hidden_dropout_prob = hidden_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self._set_crf_settings(tag_scheme, constrain_decoding, loss_reduction, special_token_ids)
        kwargs.setdefault("custom_pipelines", {"token-classification": dict(CUSTOM_PIPELINE)})
        kwargs.setdefault("pad_token_id", 0)
        super().__init__(**kwargs)
        self._check_labels_and_dropout()
