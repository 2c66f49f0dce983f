"""What the CRF taggers of every encoder family (BERT, ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA) share: the body, a
classifier and the CRF ([`EncoderCrfMixin`]: `__init__` and `forward` live here once), lexicon
features and the layer mix. A family's file names only its body, its pretrained base and its prefix.

Travels with every checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from torch import nn


try:  # in a checkpoint folder (remote code)
    from .configuration_crf import EncoderCrfConfigMixin  # noqa: F401  (a family's file takes both mixins from here)
    from .modeling_crf import CRF
    from .modeling_crf_tagger import CrfTaggingMixin, CrfTokenClassifierOutput
    from .ner_lexicon import Lexicon
except ImportError:  # in this repository
    from configuration_crf import EncoderCrfConfigMixin  # noqa: F401
    from modeling_crf import CRF
    from modeling_crf_tagger import CrfTaggingMixin, CrfTokenClassifierOutput
    from ner_lexicon import Lexicon

try:
    from transformers import initialization as init
except ImportError:  # transformers < 5 has no loading-aware init functions
    from torch.nn import init


class LexiconFeatures(nn.Module):
    """A learned vector per lexicon feature, summed over the features a token has: `(batch, seq)` feature bits in
    (see `ner_lexicon.lexicon_bits`), `(batch, seq, size)` out. Starts at zero, so a new lexicon model computes
    what the same model without one does until training finds a use for the features."""

    def __init__(self, num_features: int, size: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.zeros(num_features, size))

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        powers = torch.pow(2, torch.arange(self.num_features, device=bits.device, dtype=torch.long))  # (features,)
        # Integer division and remainder rather than bit shifts: ONNX's BitShift takes unsigned types only.
        on = torch.remainder(torch.div(bits.long().unsqueeze(-1), powers, rounding_mode="floor"), 2)  # (b, s, f)
        return on.to(self.weight.dtype) @ self.weight  # (batch, seq, size)


class ScalarMix(nn.Module):
    """A learned softmax-weighted sum of the embeddings' and every layer's states, times a learned scale: the
    classifier then reads the layers that carry most token-level information (for a sentence-embedding encoder
    such as e5, its middle layers rather than the last). Starts as the plain average."""

    def __init__(self, num_states: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(states) != self.weights.numel():
            raise ValueError(f"expected {self.weights.numel()} hidden states to mix, got {len(states)}")
        stacked = torch.stack(states, dim=0)  # (states, batch, seq, hidden)
        weights = torch.softmax(self.weights, dim=0).to(stacked.dtype)  # (states,)
        return self.scale * torch.einsum("l,lbsh->bsh", weights, stacked)  # (batch, seq, hidden)


def init_crf_weights(module: nn.Module, config: Any) -> None:
    """`_init_weights` for the head's own modules (each step skipped for loaded weights by transformers'
    loading-aware `init`): a [`CRF`]'s uniform transition scores, as pytorch-crf's, and the decoding constraints of
    `config`, rebuilt on every load since the penalty buffers are not saved; zero lexicon vectors; an even layer
    mix."""
    if isinstance(module, CRF):
        init.uniform_(module.start_transitions, -0.1, 0.1)
        init.uniform_(module.end_transitions, -0.1, 0.1)
        init.uniform_(module.transitions, -0.1, 0.1)
        module.follow_config(config)
    elif isinstance(module, LexiconFeatures):
        init.zeros_(module.weight)
    elif isinstance(module, ScalarMix):
        init.zeros_(module.weights)
        init.ones_(module.scale)


# The attention kwargs of padding-free training (DataCollatorWithFlattening): several sequences in one row.
PADDING_FREE_KWARGS = frozenset({"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"})


class EncoderCrfMixin(CrfTaggingMixin):
    """A transformer encoder, dropout, a linear classifier and a CRF: the CRF tagger of every encoder family (BERT,
    ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA), written once. A family's class mixes this into its `*PreTrainedModel` and
    states only what differs:

        class RobertaCrfForTokenClassification(EncoderCrfMixin, RobertaPreTrainedModel):
            config_class = RobertaCrfConfig
            base_model_prefix = "roberta"
            encoder_class = RobertaModel
            _keys_to_ignore_on_load_unexpected = [r"pooler", r"lm_head\\."]

    (Subclasses are registered for the Auto classes, see `__init_subclass__`.) The body is built as `self.<base_model_prefix>` (so that `from_pretrained` loads the weights of a bare or
    masked-LM checkpoint of the family), then the head ([`build_head`]). Mirrors the family's
    `*ForTokenClassification` (its `__init__` and forward), with the CRF's loss and decoding in place of softmax.
    """

    # The family's bare encoder class, and what it is built with (no pooler: a token classifier leaves it unused).
    encoder_class: type
    encoder_kwargs: dict[str, Any] = {"add_pooling_layer": False}
    # The loss is a mean over sentences; the Trainer must scale it for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every family's tagger and config are registered for the Auto classes: save_pretrained then writes their
        # code beside the weights with an `auto_map`, and `from_pretrained(folder, trust_remote_code=True)` works
        # anywhere. (In each family's file these were two lines that never differ.)
        super().__init_subclass__(**kwargs)
        cls.register_for_auto_class("AutoModelForTokenClassification")
        cls.config_class.register_for_auto_class()

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.encoder_class(config, **self.encoder_kwargs))
        self.build_head(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        init_crf_weights(module, self.config)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        word_start_mask: Optional[torch.Tensor] = None,
        lexicon_features: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> CrfTokenClassifierOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Tag ids in `[0, num_labels)`, -100 at positions outside the CRF chain (special tokens, padding,
            continuation sub-tokens).
        word_start_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 at the positions to tag (first sub-token of each word), used when no labels are given.
        lexicon_features (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            A lexicon model's features of each position as bits (see `ner_lexicon.lexicon_bits`); all off when not
            given.
        kwargs:
            Passed on to the encoder, as the family's stock token classifier does: attention options, and a
            family's own inputs (ERNIE 3.0's `task_type_ids`). Padding-free batches (`cu_seq_lens_*`) are a
            ValueError: the CRF chain would cross sentence boundaries.
        """
        return self.crf_forward(
            input_ids,
            attention_mask,
            labels,
            word_start_mask,
            output_attentions,
            output_hidden_states,
            return_dict,
            lexicon_features=lexicon_features,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )

    def build_head(self, config: Any) -> None:
        """The layers above the body, as every family's `*ForTokenClassification` builds them: dropout
        (`classifier_dropout`, else `hidden_dropout_prob`), a linear classifier and the CRF; with
        `config.lexicon_types`, the lexicon features (`lexicon_embeddings`, into the input embeddings or the
        emissions), and with `config.layer_mix`, the layer mix."""
        self.num_labels = config.num_labels
        classifier_dropout = getattr(config, "classifier_dropout", None)  # some families' configs have none
        dropout = classifier_dropout if classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.crf = CRF(config.num_labels, batch_first=True)
        # Also set by _init_weights; here too, so that a model built without weight init (transformers'
        # no_init_weights, then load_state_dict: the penalties are not saved) decodes under its tag scheme.
        self.crf.follow_config(config)
        self.lexicon_embeddings = None
        if getattr(config, "lexicon_types", None):
            into_input = config.lexicon_combination == "input"
            size = self.get_input_embeddings().embedding_dim if into_input else config.num_labels
            self.lexicon_embeddings = LexiconFeatures(config.num_lexicon_features, size)
        self.layer_mix = ScalarMix(config.num_hidden_layers + 1) if getattr(config, "layer_mix", False) else None
        # The lexicon whose matches feed `lexicon_embeddings`: read from the checkpoint folder by from_pretrained,
        # written beside the weights by save_pretrained.
        self.lexicon: Optional[Lexicon] = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, then the lexicon of a lexicon model: `lexicon=` (a `Lexicon`, for a
        new lexicon model built from an encoder checkpoint), else the one in the same folder or Hub repo
        (`config.lexicon_file`). A checkpoint whose config names a lexicon it lacks is an error: its tags would
        silently differ from the trained model's."""
        lexicon = kwargs.pop("lexicon", None)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        name = getattr(model.config, "lexicon_file", None)
        if lexicon is not None:
            model.lexicon = lexicon
        elif getattr(model.config, "lexicon_types", None) and name:
            model.lexicon = Lexicon.load(_checkpoint_file(pretrained_model_name_or_path, name, kwargs))
        return loaded

    def embedding_modules(self) -> list[nn.Module]:
        """The modules below the first encoder layer, frozen with it by `freeze_encoder_layers`."""
        return [self.base_model.embeddings]

    def freeze_encoder_layers(self, num_layers: int) -> None:
        """Freeze the embeddings and the lowest `num_layers` encoder layers (for small data); 0 freezes nothing.

        Everything else is unfrozen, so calls do not accumulate; `unfreeze_encoder()` undoes it.
        """
        total = len(self.base_model.encoder.layer)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 0 <= num_layers <= total:
            raise ValueError(f"num_layers must be an int between 0 and {total}, got {num_layers!r}")
        self.unfreeze_encoder()
        if num_layers == 0:
            return
        for module in [*self.embedding_modules(), *self.base_model.encoder.layer[:num_layers]]:
            for param in module.parameters():
                param.requires_grad_(False)

    def unfreeze_encoder(self) -> None:
        """Make every parameter trainable again."""
        for param in self.parameters():
            param.requires_grad_(True)

    def crf_forward(
        self,
        input_ids: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        word_start_mask: Optional[torch.Tensor],
        output_attentions: Optional[bool],
        output_hidden_states: Optional[bool],
        return_dict: Optional[bool],
        lexicon_features: Optional[torch.Tensor] = None,
        **body_inputs: Any,
    ) -> CrfTokenClassifierOutput | tuple:
        """The encoder on `input_ids` and the family's other inputs (`body_inputs`, with any further keyword
        arguments of the family's forward, e.g. attention options, passed on as its stock classifier does), the
        classifier, then the CRF's loss and predictions (see [`CrfTaggingMixin.crf_outputs`]).

        Padding-free batches (sequences concatenated into one row, delimited by `cu_seq_lens_*`) are refused: the
        CRF would chain the last word of one sentence to the first of the next."""
        packed = sorted(set(body_inputs) & PADDING_FREE_KWARGS)
        if packed:
            raise ValueError(
                f"{type(self).__name__} does not take padding-free batches ({', '.join(packed)}): the CRF chain would "
                "run across the sequences of a row; pass padded rows with an attention_mask"
            )
        if output_attentions is not None:
            body_inputs["output_attentions"] = output_attentions
        if output_hidden_states is not None:
            body_inputs["output_hidden_states"] = output_hidden_states
        logits, outputs = self._emissions_and_outputs(input_ids, attention_mask, lexicon_features, body_inputs)
        loss, predictions = self.crf_outputs(logits, input_ids, attention_mask, labels, word_start_mask)
        output = CrfTokenClassifierOutput(
            loss=loss,
            logits=logits,
            predictions=predictions,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        return output if return_dict else output.to_tuple()

    def emissions(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        lexicon_features: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Emission scores `(batch, seq, labels)` alone: the encoder and the classifier, without decoding. Other
        keyword arguments go to the encoder (e.g. `token_type_ids`, ERNIE's `task_type_ids`)."""
        return self._emissions_and_outputs(input_ids, attention_mask, lexicon_features, kwargs)[0]

    def _emissions_and_outputs(
        self,
        input_ids: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor],
        lexicon_features: Optional[torch.Tensor],
        body_inputs: dict[str, Any],
    ) -> tuple[torch.Tensor, Any]:
        """Emission scores `(batch, seq, labels)` and the encoder's outputs. A lexicon model given no
        `lexicon_features` reads them as all off (no word matched)."""
        lexicon = self.lexicon_embeddings if lexicon_features is not None else None
        into_input = lexicon is not None and self.config.lexicon_combination == "input"
        if into_input:
            if body_inputs.get("inputs_embeds") is None:
                body_inputs["inputs_embeds"] = self.get_input_embeddings()(input_ids)  # (batch, seq, embedding)
            body_inputs["inputs_embeds"] = body_inputs["inputs_embeds"] + lexicon(lexicon_features)
        if self.layer_mix is not None:
            body_inputs["output_hidden_states"] = True
        outputs = self.base_model(
            None if into_input else input_ids, attention_mask=attention_mask, return_dict=True, **body_inputs
        )
        hidden = outputs.last_hidden_state if self.layer_mix is None else self.layer_mix(outputs.hidden_states)
        logits = self.classifier(self.dropout(hidden))  # (batch, seq, labels)
        if lexicon is not None and not into_input:
            logits = logits + lexicon(lexicon_features)  # (batch, seq, labels)
        return logits, outputs


def _checkpoint_file(folder_or_repo: Any, name: str, kwargs: dict[str, Any]) -> str:
    """A file of a checkpoint: in its folder, or fetched from its Hub repo with from_pretrained's Hub options."""
    if os.path.isdir(str(folder_or_repo)):
        path = os.path.join(str(folder_or_repo), kwargs.get("subfolder") or "", name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: the checkpoint's config names this lexicon file (lexicon_types), save the model "
                "with save_pretrained to write it"
            )
        return path
    from transformers.utils import cached_file

    hub_options = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
    return cached_file(str(folder_or_repo), name, **{k: kwargs[k] for k in hub_options if k in kwargs})


__all__ = ["EncoderCrfConfigMixin", "EncoderCrfMixin", "LexiconFeatures", "ScalarMix", "init_crf_weights"]
