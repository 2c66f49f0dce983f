"""The CRF head of a token classifier, for every CRF tagger of this repo (each encoder family, the BiLSTM-CRF):
[`CrfTaggingMixin`] (which positions form the chain, packing them, the loss, decoding) and the output class.

Travels with every checkpoint as remote code: imports only torch, transformers and its siblings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
from transformers.utils import ModelOutput


try:  # in a checkpoint folder (remote code)
    from .crf_capture import _is_capturing
    from .ner_lexicon import LEXICON_FILE

    # The pipeline travels with every checkpoint (config.json's custom_pipelines): transformers copies a modeling
    # file's relative imports beside the weights, and this import is what makes it copy the pipeline.
    from .pipeline_bert_crf import CrfTokenClassificationPipeline  # noqa: F401
except ImportError:  # in this repository
    from crf_capture import _is_capturing
    from ner_lexicon import LEXICON_FILE
    from pipeline_bert_crf import CrfTokenClassificationPipeline  # noqa: F401


@dataclass
class CrfTokenClassifierOutput(ModelOutput):
    """Output of every CRF tagger ([`BertCrfForTokenClassification`], the other families', the BiLSTM-CRF).

    Args:
        loss: CRF negative log-likelihood over the labelled positions, reduced by `config.loss_reduction`.
        logits: `(batch, seq, num_labels)` emission scores at every token position.
        predictions: `(batch, seq)` Viterbi tags at the positions in the CRF chain, -100 elsewhere (so `Trainer`
            pads and gathers them like labels). Computed in eval mode, or whenever no labels are given.
        hidden_states, attentions: as the encoder gives them, when asked for.
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    predictions: Optional[torch.LongTensor] = None
    hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    attentions: Optional[tuple[torch.FloatTensor, ...]] = None


# The BERT name of the output class, for code and checkpoints that import it.
BertCrfTokenClassifierOutput = CrfTokenClassifierOutput


class CrfTaggingMixin:
    """The CRF head of a token classifier: which positions form the chain, packing them, the loss and decoding.

    A model using it has `self.config` (a config with `special_token_ids`, `loss_reduction` and
    `allowed_transitions()`) and `self.crf` (a [`CRF`]), and computes emission `logits` its own way.

    The CRF chain holds only the positions that carry a word's label:

    - with `labels`: every position whose label is not -100 (so first-sub-token alignment puts exactly one
      position per word in the chain);
    - without labels: the positions in `word_start_mask` if given; else every attended token that is not a special
      token (ids in `config.special_token_ids`, or, when that is unset, the first and last attended positions,
      i.e. [CLS] and [SEP]).

    [CLS], [SEP], padding and continuation sub-tokens never enter the chain: the chosen positions are packed into
    a contiguous, left-aligned sequence before the CRF. (Masking [CLS] in pytorch-crf raises "mask of the first
    timestep must all be on"; a mask with holes there silently scores transitions across the holes.) A row with no
    chosen position contributes nothing to the loss and gets no predictions.
    """

    # `from_pretrained(..., dtype=torch.bfloat16)` keeps the CRF's scores in float32: rounded to 8 bits of mantissa,
    # transition scores that differ by less than a percent would tie, and the paths would change.
    _keep_in_fp32_modules_strict = ["crf"]

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, with the lexicon of a lexicon model beside the weights, and an
        `auto_map` that also maps `AutoModel` to the tagger: `AutoModel.from_pretrained(folder,
        trust_remote_code=True)` then gives the CRF tagger itself, as `AutoModelForTokenClassification` does (a
        bare encoder would lose the head and the CRF that make the checkpoint)."""
        if type(self)._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map["AutoModel"] = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            self.config.auto_map = auto_map
        super().save_pretrained(save_directory, *args, **kwargs)
        lexicon = getattr(self, "lexicon", None)
        if lexicon is not None and kwargs.get("is_main_process", True):
            name = self.config.lexicon_file or LEXICON_FILE
            with open(os.path.join(save_directory, name), "w", encoding="utf-8") as out:
                out.write(lexicon.to_tsv())

    def apply_decoding_constraints(self) -> None:
        """Rebuild the CRF's decoding constraints from the config (after changing its labels or tag scheme)."""
        self.crf.follow_config(self.config)

    def chain_mask(
        self,
        input_ids: Optional[torch.Tensor],
        attention_mask: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        word_start_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Boolean `(batch, seq)` mask of the positions that enter the CRF chain (see the class docstring)."""
        attended = attention_mask.bool()
        if labels is not None:
            return (labels != -100) & attended
        if word_start_mask is not None:
            return word_start_mask.bool() & attended
        special_ids = self.config.special_token_ids
        if special_ids and input_ids is not None:
            special = torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
            return attended & ~special
        # No ids to go by: drop the first and the last attended position ([CLS] ... [SEP]), padding on either side.
        positions = torch.arange(attended.size(1), device=attended.device)  # (seq,)
        first = attended.long().argmax(1, keepdim=True)  # (batch, 1)
        last = (attended.long() * positions).max(1, keepdim=True).values  # (batch, 1)
        return attended & (positions != first) & (positions != last)

    def crf_outputs(
        self,
        logits: torch.Tensor,
        input_ids: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
        word_start_mask: Optional[torch.Tensor] = None,
    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The loss (when `labels` are given) and the Viterbi predictions (in eval mode or without labels)."""
        if attention_mask is None:
            attention_mask = torch.ones(logits.shape[:2], dtype=torch.long, device=logits.device)
        chain = self.chain_mask(input_ids, attention_mask, labels, word_start_mask)  # (batch, seq)
        emissions, index, packed_mask = self._gather_chain(logits, chain)
        loss = None
        if labels is not None:
            packed_labels = labels.gather(1, index).masked_fill(~packed_mask, 0)  # (batch, width)
            loss = self._loss(emissions, packed_labels, packed_mask, logits)
        predictions = None
        if labels is None or not self.training:
            with torch.no_grad():
                predictions = self._viterbi_scatter(emissions, index, packed_mask, chain.shape)
        return loss, predictions

    @staticmethod
    def _gather_chain(logits: torch.Tensor, chain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pack the chain positions of each row to the front.

        Returns float32 emissions `(batch, width, labels)`, their source positions `(batch, width)` and the packed
        prefix mask `(batch, width)`, where width is the longest chain in the batch.
        """
        lengths = chain.sum(1)  # (batch,)
        # A captured graph cannot read the longest chain's length: it keeps every position (the rest masked off).
        width = chain.size(1) if _is_capturing() else (int(lengths.max()) if chain.numel() else 0)
        order = torch.argsort((~chain).to(torch.uint8), dim=1, stable=True)  # chain positions first, in order
        index = order[:, :width]  # (batch, width)
        packed_mask = torch.arange(width, device=chain.device) < lengths.unsqueeze(1)  # (batch, width)
        emissions = logits.float().gather(
            1, index.unsqueeze(2).expand(-1, -1, logits.size(2))
        )  # (batch, width, labels)
        return emissions, index, packed_mask

    def _viterbi_scatter(
        self, emissions: torch.Tensor, index: torch.Tensor, packed_mask: torch.Tensor, shape: torch.Size
    ) -> torch.Tensor:
        """Viterbi tags of packed emissions, scattered back to `shape` with -100 off the chain."""
        predictions = torch.full(shape, -100, dtype=torch.long, device=emissions.device)  # (batch, seq)
        if emissions.size(1) == 0:
            return predictions
        best = self.crf.viterbi_packed(emissions, packed_mask).masked_fill(~packed_mask, -100)  # (batch, width)
        return predictions.scatter(1, index, best)

    def _loss(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        if emissions.size(1) == 0:
            return logits.sum() * 0.0  # no labelled token in the batch: zero loss, graph intact
        nll = -self.crf.log_likelihood_packed(emissions, tags, mask)  # (batch,), 0 for empty rows
        reduction = self.config.loss_reduction
        if reduction == "sum":
            return nll.sum()
        if reduction == "token_mean":
            return nll.sum() / mask.sum().clamp(min=1)
        return nll.sum() / mask[:, 0].sum().clamp(min=1)  # mean over sentences that have labels

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Viterbi tags `(batch, seq)` for emission `logits` at the positions where `chain` is on, -100 elsewhere."""
        emissions, index, packed_mask = self._gather_chain(logits, chain.bool())
        return self._viterbi_scatter(emissions, index, packed_mask, chain.shape)

    @torch.no_grad()
    def decode_packed(self, logits: torch.Tensor, chain: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Decode the chain positions of each row, packed to the front.

        Returns the packed emissions `(batch, width, labels)`, the Viterbi tags `(batch, width)`, the marginal
        probability of each chosen tag `(batch, width)` (a confidence score) and the packed mask `(batch, width)`.
        """
        emissions, _, packed_mask = self._gather_chain(logits, chain.bool())
        if emissions.size(1) == 0:
            empty = packed_mask.long()
            return emissions, empty, empty.float(), packed_mask
        tags = self.crf.viterbi_packed(emissions, packed_mask)  # (batch, width)
        probs = self.crf.marginals_packed(emissions, packed_mask)  # (batch, width, labels)
        return emissions, tags, probs.gather(2, tags.unsqueeze(2)).squeeze(2), packed_mask
