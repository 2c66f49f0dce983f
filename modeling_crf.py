"""The CRF head shared by every CRF tagger of this repo: the linear-chain [`CRF`], [`CrfTaggingMixin`] (which
positions form the chain, the loss, decoding), [`EncoderCrfMixin`] (a transformer body, a classifier and the CRF)
and the output class.

This file travels with every checkpoint as remote code (each family's modeling file imports it as a sibling), so it
imports nothing beyond torch, transformers and the repo's other shipping files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
from torch import nn
from transformers.utils import ModelOutput


try:  # the pipeline travels with the model: save_pretrained copies this relative import beside the weights
    from .bert_crf_utils import LEXICON_FILE, Lexicon
    from .pipeline_bert_crf import BertCrfTokenClassificationPipeline  # noqa: F401
except ImportError:
    from bert_crf_utils import LEXICON_FILE, Lexicon
    from pipeline_bert_crf import BertCrfTokenClassificationPipeline  # noqa: F401

try:
    from transformers import initialization as init
except ImportError:  # transformers < 5 has no loading-aware init functions
    from torch.nn import init

# Score added to forbidden transitions when decoding is constrained: far below any reachable path score, yet finite
# so that sums of several penalties stay finite in float32 and marginals never see inf - inf.
FORBIDDEN_SCORE = -10000.0


@torch.jit.unused
def _exporting_now() -> bool:
    compiler = getattr(torch, "compiler", None)
    exporting = getattr(compiler, "is_exporting", None)
    return bool(exporting and exporting()) or torch.jit.is_tracing()


@torch.jit.unused
def _compiling_now() -> bool:
    compiler = getattr(torch, "compiler", None)
    compiling = getattr(compiler, "is_compiling", None)
    return bool(compiling and compiling())


def _is_exporting() -> bool:
    """Whether torch.export (and so torch.onnx's exporter) or a TorchScript trace is capturing this call."""
    if torch.jit.is_scripting():
        return False
    return _exporting_now()


def _is_capturing() -> bool:
    """Whether a graph is being captured (torch.compile, torch.export): no Python branch may then read a tensor's
    values, so the CRF takes its graph-safe paths (every step masked, log-space sums, no early exits)."""
    if torch.jit.is_scripting():
        return False
    return _compiling_now() or _exporting_now()


def _full_steps(mask: torch.Tensor) -> List[bool]:
    """Per step of a packed mask `(batch, seq)`, whether every row is on (such steps skip the mask select). All
    False while a graph is captured: reading the mask's values would break the graph."""
    if _is_capturing():
        return [False] * mask.size(1)
    return mask.all(0).tolist()


def _shape_str(shape: List[int]) -> str:
    # Formats a 2-d shape like Python's tuple repr, also under TorchScript, so error messages match pytorch-crf.
    return "(" + ", ".join([str(d) for d in shape]) + ")"


class CRF(nn.Module):
    """Linear-chain conditional random field, a drop-in for pytorch-crf's `torchcrf.CRF`.

    Same constructor, parameters (`start_transitions`, `end_transitions`, `transitions[i, j]` = score of tag j
    following tag i), `repr`, `forward` (log-likelihood) and `decode` (Viterbi) as pytorch-crf, with the same
    `ValueError` messages; its state dicts load either way. Beyond it:

    - every step is vectorized over the batch, backtracking included;
    - a mask may have holes: the chain then runs over the positions that are on, in order (pytorch-crf silently
      scores such a mask wrongly). The first timestep must still be on, as in pytorch-crf;
    - `decode_padded` returns the Viterbi path as a tensor, `marginal_probabilities` the per-token posteriors;
    - `set_constraints` forbids transitions (for a tag scheme) in decoding and marginals; the likelihood stays
      unconstrained so that gold paths which break the scheme still train;
    - `temperature` divides every potential before the marginals (confidence calibration): the Viterbi path, the
      argmax of the same scores at any temperature, and the likelihood do not see it.

    Args:
        num_tags: Number of tags.
        batch_first: Whether the first dimension is the batch (else the sequence), as in pytorch-crf.
    """

    def __init__(self, num_tags: int, batch_first: bool = False) -> None:
        if num_tags <= 0:
            raise ValueError(f"invalid number of tags: {num_tags}")
        super().__init__()
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        # Non-persistent, so pytorch-crf state dicts load unchanged; owners re-apply constraints after loading.
        self.register_buffer("start_penalty", torch.zeros(num_tags), persistent=False)
        self.register_buffer("end_penalty", torch.zeros(num_tags), persistent=False)
        self.register_buffer("transition_penalty", torch.zeros(num_tags, num_tags), persistent=False)
        self.temperature = 1.0  # a plain float: captured graphs (ONNX, torch.export) hold it as a constant
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the transition scores uniformly in [-0.1, 0.1], as pytorch-crf does."""
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_tags={self.num_tags})"

    @torch.jit.ignore
    def set_constraints(
        self,
        allowed_start: Optional[List[bool]] = None,
        allowed_end: Optional[List[bool]] = None,
        allowed_transitions: Optional[List[List[bool]]] = None,
    ) -> None:
        """Forbid tags at the start or end and tag pairs in decoding and marginals; None allows everything."""
        n = self.num_tags
        tables = (
            (self.start_penalty, allowed_start, (n,)),
            (self.end_penalty, allowed_end, (n,)),
            (self.transition_penalty, allowed_transitions, (n, n)),
        )
        with torch.no_grad():
            for buffer, allowed, shape in tables:
                if allowed is None:
                    buffer.zero_()
                    continue
                allowed_t = torch.as_tensor(allowed, dtype=torch.bool, device=buffer.device)
                if tuple(allowed_t.shape) != shape:
                    raise ValueError(f"constraint table must have shape {shape}, got {tuple(allowed_t.shape)}")
                buffer.copy_(torch.where(allowed_t, 0.0, FORBIDDEN_SCORE))

    def follow_config(self, config: Any) -> None:
        """Take a tagger config's decoding constraints (`allowed_transitions()`) and its `confidence_temperature`."""
        self.set_constraints(*config.allowed_transitions())
        self.temperature = float(getattr(config, "confidence_temperature", 1.0))

    def forward(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """Log-likelihood of `tags` given `emissions`, reduced over the batch like pytorch-crf.

        Args:
            emissions: `(seq_length, batch_size, num_tags)`, or `(batch_size, seq_length, num_tags)` if batch_first.
            tags: `(seq_length, batch_size)` (or batch first); values at masked-off positions are ignored.
            mask: same shape as `tags`; the chain runs over the positions that are on.
            reduction: "none" (one value per sequence), "sum", "mean" (over sequences) or "token_mean".
        """
        self._validate(emissions, tags, mask)
        if reduction not in ("none", "sum", "mean", "token_mean"):
            raise ValueError(f"invalid reduction: {reduction}")
        emissions, tags_bf, mask_bf = self._batch_first(emissions, tags, mask)
        emissions, tags_bf, mask_bf, _ = self._left_align(emissions, tags_bf, mask_bf)
        assert tags_bf is not None  # refines Optional for TorchScript
        llh = self.log_likelihood_packed(emissions, tags_bf, mask_bf)  # (batch,)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask_bf.to(llh.dtype).sum()

    @torch.jit.export
    def decode(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> List[List[int]]:
        """Viterbi path of each sequence as a list of tags, one per position that is on in `mask`."""
        self._validate(emissions, None, mask)
        emissions, _, mask_bf = self._batch_first(emissions, None, mask)
        emissions, _, mask_bf, _ = self._left_align(emissions, None, mask_bf)
        best: List[List[int]] = self.viterbi_packed(emissions, mask_bf).tolist()  # (batch, seq) as lists
        lengths: List[int] = mask_bf.sum(1).tolist()
        return [best[i][: lengths[i]] for i in range(len(lengths))]

    @torch.jit.export
    def decode_padded(
        self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None, pad_tag: int = -1
    ) -> torch.Tensor:
        """Viterbi path as a tensor shaped like the mask: each position's tag where the mask is on, else `pad_tag`."""
        self._validate(emissions, None, mask)
        emissions, _, mask_bf = self._batch_first(emissions, None, mask)
        packed, _, packed_mask, order = self._left_align(emissions, None, mask_bf)
        best = self.viterbi_packed(packed, packed_mask).masked_fill(~packed_mask, pad_tag)  # (batch, seq)
        out = torch.full_like(best, pad_tag).scatter(1, order, best)  # (batch, seq), original positions
        return out if self.batch_first else out.transpose(0, 1)

    @torch.jit.export
    def marginal_probabilities(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Posterior probability of each tag at each position (forward-backward), 0 where the mask is off.

        Same layout as `emissions`; rows sum to 1 at positions that are on. Respects `set_constraints`.
        """
        self._validate(emissions, None, mask)
        emissions, _, mask_bf = self._batch_first(emissions, None, mask)
        packed, _, packed_mask, order = self._left_align(emissions, None, mask_bf)
        probs = self.marginals_packed(packed, packed_mask)  # (batch, seq, tags)
        out = torch.zeros_like(probs).scatter(1, order.unsqueeze(2).expand_as(probs), probs)
        return out if self.batch_first else out.transpose(0, 1)

    # ----------------------------------------------------------------------------------------------------------
    # Input handling

    def _validate(self, emissions: torch.Tensor, tags: Optional[torch.Tensor], mask: Optional[torch.Tensor]) -> None:
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have dimension of 3, got {emissions.dim()}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(f"expected last dimension of emissions is {self.num_tags}, got {emissions.size(2)}")
        if tags is not None:
            if emissions.shape[:2] != tags.shape:
                raise ValueError(
                    "the first two dimensions of emissions and tags must match, "
                    f"got {_shape_str(emissions.shape[:2])} and {_shape_str(tags.shape)}"
                )
        if mask is not None:
            if emissions.shape[:2] != mask.shape:
                raise ValueError(
                    "the first two dimensions of emissions and mask must match, "
                    f"got {_shape_str(emissions.shape[:2])} and {_shape_str(mask.shape)}"
                )
            first = mask[:, 0] if self.batch_first else mask[0]
            if not _is_capturing() and not bool(first.all()):
                raise ValueError("mask of the first timestep must all be on")

    def _batch_first(
        self, emissions: torch.Tensor, tags: Optional[torch.Tensor], mask: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        mask = mask.to(torch.bool)
        if not self.batch_first:
            emissions = emissions.transpose(0, 1)
            mask = mask.transpose(0, 1)
            if tags is not None:
                tags = tags.transpose(0, 1)
        return emissions, tags, mask

    @staticmethod
    def _left_align(
        emissions: torch.Tensor, tags: Optional[torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Move the positions that are on to the front of each row, keeping their order.

        Returns packed emissions, tags and mask (batch first, each row's on positions first) and `order`, the
        original position of each packed slot, for scattering results back.
        """
        order = torch.arange(mask.size(1), device=mask.device).expand(mask.size(0), -1)  # (batch, seq)
        if mask.size(1) > 1 and (_is_capturing() or bool((mask[:, 1:] & ~mask[:, :-1]).any())):
            order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # on positions first, in order
            emissions = emissions.gather(1, order.unsqueeze(2).expand_as(emissions))  # (batch, seq, tags)
            mask = mask.gather(1, order)  # (batch, seq), now a prefix mask
            if tags is not None:
                tags = tags.gather(1, order)
        return emissions, tags, mask, order

    # ----------------------------------------------------------------------------------------------------------
    # Algorithms on packed input: batch first, each row's mask a prefix of ones. Rows may be empty (all off);
    # they score 0, decode to nothing and have zero marginals. The loops run over time in time-major views; a step
    # where every row is on skips the mask select.

    def log_likelihood_packed(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sequence log-likelihood `(batch,)` for packed input (see above)."""
        return self._gold_score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def _gold_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seq_len = emissions.size(1)
        mask_f = mask.to(emissions.dtype)  # (batch, seq)
        tags = tags.masked_fill(~mask, 0)  # padding may hold -100 or garbage
        score = (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * mask_f).sum(1)  # (batch,)
        if seq_len > 1:
            pair_scores = self.transitions[tags[:, :-1], tags[:, 1:]]  # (batch, seq - 1)
            score = score + (pair_scores * mask_f[:, 1:]).sum(1)
        lengths = mask.sum(1)  # (batch,)
        last_tags = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # (batch,)
        boundary = self.start_transitions[tags[:, 0]] + self.end_transitions[last_tags]  # (batch,)
        return score + boundary * (lengths > 0).to(emissions.dtype)

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sequence `(batch,)`, unconstrained; 0 for empty rows."""
        nonempty = mask[:, 0].to(emissions.dtype)  # (batch,)
        if _is_exporting():
            alpha = _log_space_forward_scan(emissions, mask, self.start_transitions, self.transitions)[-1]
            return torch.logsumexp(alpha + self.end_transitions, dim=1) * nonempty
        full = _full_steps(mask)
        if not torch.jit.is_scripting() and not _is_capturing():
            with torch.no_grad():
                alphas, exact = _scaled_forward_scores(emissions, mask, full, self.start_transitions, self.transitions)
            # The analytic backward factorizes edge marginals through exp(transitions): safe for moderate scores.
            if exact and bool(self.transitions.detach().abs().max() <= SAFE_TRANSITION_SCORE):
                log_z = _LogPartition.apply(
                    emissions, mask, self.start_transitions, self.end_transitions, self.transitions, alphas
                )
                return log_z * nonempty
        alphas = _log_space_forward_scores(emissions, mask, full, self.start_transitions, self.transitions)
        return torch.logsumexp(alphas[-1] + self.end_transitions, dim=1) * nonempty

    def viterbi_packed(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best path `(batch, seq)` for packed input, respecting the constraints; past a row's end, its last tag.

        Ties go to the lowest tag, at the end and for every back-pointer, as in pytorch-crf.
        """
        # No gradient flows through a path, and the helpers' out= buffers refuse inputs that require one. Their
        # buffers take one dtype: the promoted one, in which the sums happen anyway (the casts are exact).
        dtype = torch.promote_types(emissions.dtype, self.transitions.dtype)
        emissions = emissions.detach().to(dtype)
        start = (self.start_transitions + self.start_penalty).detach().to(dtype)  # (tags,)
        transitions = (self.transitions + self.transition_penalty).detach().to(dtype)  # (tags, tags)
        end_transitions = self.end_transitions.detach().to(dtype)
        end_penalty = self.end_penalty.to(dtype)
        batch, _, num_tags = emissions.shape
        if _is_exporting():
            return _viterbi_scan(emissions, mask, start, end_transitions, end_penalty, transitions)
        if _is_capturing():
            return _viterbi_back_pointers(emissions, mask, start, end_transitions, end_penalty, transitions)
        # VITERBI_MIN_RECOMPUTE_BATCH and VITERBI_MIN_RECOMPUTE_SUMS, inlined for TorchScript. Only CPUs run the max
        # with indices as a scalar loop; elsewhere the back-pointers' fewer kernel launches win.
        if emissions.device.type == "cpu" and batch >= 8 and batch * num_tags * num_tags >= 6144:
            return _viterbi_recomputed(emissions, mask, start, end_transitions, end_penalty, transitions)
        return _viterbi_back_pointers(emissions, mask, start, end_transitions, end_penalty, transitions)

    def marginals_packed(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position tag posteriors `(batch, seq, tags)` for packed input, respecting the constraints, at the
        CRF's `temperature`.

        Computed in float64 and normalized per position: forward and backward scores grow with the length of the
        chain, and float32 rounding of scores in the thousands would put probabilities off by a percent.
        """
        # Every potential divided by the temperature: the marginals of the calibrated distribution.
        scale = 1.0 / self.temperature
        emissions64 = emissions.double() * scale
        start = (self.start_transitions + self.start_penalty).double() * scale
        end = (self.end_transitions + self.end_penalty).double() * scale
        transitions = (self.transitions + self.transition_penalty).double() * scale
        if _is_capturing():
            if _is_exporting():
                alphas = _log_space_forward_scan(emissions64, mask, start, transitions)
                betas = _log_space_backward_scan(emissions64, mask, end, transitions)
            else:
                alphas = _log_space_forward_scores(emissions64, mask, _full_steps(mask), start, transitions)
                betas = _log_space_backward_scores(emissions64, mask, _full_steps(mask), end, transitions)
            scores = alphas + betas  # (seq, batch, tags)
            probs = (scores - torch.logsumexp(scores, dim=2, keepdim=True)).exp().transpose(0, 1)  # (batch, seq, tags)
            return (probs * mask.unsqueeze(2).to(probs.dtype)).to(emissions.dtype)
        full: List[bool] = mask.all(0).tolist()
        alphas, exact = _scaled_forward_scores(emissions64, mask, full, start, transitions)  # (seq, batch, tags)
        if not exact:
            alphas = _log_space_forward_scores(emissions64, mask, full, start, transitions)
        betas, exact = _scaled_backward_scores(emissions64, mask, full, end, transitions)  # (seq, batch, tags)
        if not exact:
            betas = _log_space_backward_scores(emissions64, mask, full, end, transitions)
        scores = alphas + betas  # (seq, batch, tags): log-score of all paths through each tag
        probs = (scores - torch.logsumexp(scores, dim=2, keepdim=True)).exp().transpose(0, 1)  # (batch, seq, tags)
        return (probs * mask.unsqueeze(2).to(probs.dtype)).to(emissions.dtype)

    def log_marginals_packed(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position log tag posteriors `(batch, seq, tags)` of the unconstrained model, differentiable (exact
        log-space forward-backward; for training, e.g. distillation towards another CRF's marginals). Positions
        past a row's end hold garbage: mask them."""
        full = _full_steps(mask)
        alphas = _log_space_forward_scores(emissions, mask, full, self.start_transitions, self.transitions)
        betas = _log_space_backward_scores(emissions, mask, full, self.end_transitions, self.transitions)
        scores = alphas + betas  # (seq, batch, tags)
        return (scores - torch.logsumexp(scores, dim=2, keepdim=True)).transpose(0, 1)  # (batch, seq, tags)


# Viterbi on packed input. Both helpers give the same path: the same float sums, compared the same way, with ties to
# the lowest tag (torch.max with a dim and torch.argmax return the first maximal index). Per step, the (batch, tags,
# tags) max with indices costs far more than the elementwise work around it once tags are many (its kernel is scalar,
# on any instruction set). Below this many sums per step, or this many rows (padded to 16, see below), the calls per
# step dominate and the classic back-pointers, with fewer calls, are cheaper (measured on AVX-512 and AVX2 kernels).
VITERBI_MIN_RECOMPUTE_SUMS = 6144
VITERBI_MIN_RECOMPUTE_BATCH = 8


def _viterbi_back_pointers(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    end_transitions: torch.Tensor,
    end_penalty: torch.Tensor,
    transitions: torch.Tensor,
) -> torch.Tensor:
    """Viterbi `(batch, seq)` keeping a back-pointer per step and tag: fewest calls per step, for small inputs."""
    batch, seq_len, num_tags = emissions.shape
    full = _full_steps(mask)
    steps = emissions.transpose(0, 1)  # (seq, batch, tags) view
    step_on = mask.t().unsqueeze(2)  # (seq, batch, 1)
    transitions = transitions.unsqueeze(0)  # (1, tags, tags)
    score = start + steps[0]  # (batch, tags)
    identity = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)  # (batch, tags)
    history: List[torch.Tensor] = []
    for t in range(1, seq_len):
        best, prev = (score.unsqueeze(2) + transitions).max(1)  # (batch, tags) each: best predecessor per tag
        if full[t]:
            score = best + steps[t]
            history.append(prev)
        else:
            # Past a row's end the back-pointer is the identity, so backtracking walks through unchanged.
            score = torch.where(step_on[t], best + steps[t], score)
            history.append(torch.where(step_on[t], prev, identity))
    score = score + end_transitions + end_penalty
    current = score.argmax(1, keepdim=True)  # (batch, 1)
    path = [current]
    for step in range(len(history) - 1, -1, -1):
        current = history[step].gather(1, current)  # (batch, 1)
        path.append(current)
    path.reverse()
    return torch.cat(path, 1)  # (batch, seq)


def _viterbi_recomputed(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    end_transitions: torch.Tensor,
    end_penalty: torch.Tensor,
    transitions: torch.Tensor,
) -> torch.Tensor:
    """Viterbi `(batch, seq)` keeping only the best scores; backtracking recomputes the one back-pointer it needs.

    The forward step is then a max without indices (a vectorized reduction), and backtracking's (batch, tags) argmax
    replaces a (batch, tags, tags) one per step. Scores are tags-major, `(prev tag, tag, batch)` per step, so that
    the add runs along the batch and the max reduces the outermost axis, both contiguous. Rows are sorted longest
    first: the rows still on at a step are a prefix, and finished rows need no mask select.
    """
    batch, seq_len, num_tags = emissions.shape
    device = emissions.device
    lengths = mask.sum(1)  # (batch,)
    order = torch.argsort(lengths, descending=True, stable=True)  # (batch,)
    lengths = lengths.index_select(0, order)  # (batch,) non-increasing
    positions = torch.arange(seq_len, device=device)  # (seq,)
    rows_on_t = (lengths.unsqueeze(0) > positions.unsqueeze(1)).sum(1)  # (seq,) rows on at each step, a prefix
    rows_on_t[0] = batch  # step 0 holds every row, empty ones too, so that each row has a last score
    rows_on: List[int] = rows_on_t.tolist()
    # Columns computed at each step: the rows on, rounded up to a multiple of 16. The broadcast add over
    # (tags, tags, columns) measured 2-3x slower at other widths (8, 15 or 24 columns against 16 or 32), with AVX2
    # and AVX-512 kernels alike; the extra columns hold finished or padding rows, never read.
    width_t = (rows_on_t + 15) // 16 * 16  # (seq,)
    widths: List[int] = width_t.tolist()
    padded = widths[0]
    sorted_steps = emissions.index_select(0, order).permute(1, 2, 0)  # (seq, tags, batch) view
    if padded == batch:
        steps = sorted_steps.contiguous()
    else:
        steps = emissions.new_zeros(seq_len, num_tags, padded)  # (seq, tags, padded batch)
        steps[:, :, :batch] = sorted_steps
    step_at = steps.unbind(0)  # seq x (tags, padded batch)
    # Step t's scores live in slab t: the whole slab while every column is computed, else its first tags * width
    # values as (tags, width), contiguous (reductions are slow into strided outputs). Whole slabs come with every
    # view the loops need, made in three calls rather than per step.
    slabs = torch.empty(seq_len, num_tags, padded, dtype=emissions.dtype, device=device)
    slab_at = slabs.unbind(0)  # seq x (tags, padded batch)
    slab_as_prev = slabs.unsqueeze(2).unbind(0)  # seq x (prev tag, 1, padded batch)
    slab_as_back = slabs[:, :, :batch].transpose(1, 2).unbind(0)  # seq x (batch, prev tag)
    score = slab_at[0]  # (tags, padded batch): best score of a path ending in each tag
    torch.add(start.unsqueeze(1), step_at[0], out=score)
    scores = [score]
    into = transitions.unsqueeze(2)  # (prev tag, tag, 1)
    sums = torch.empty(num_tags * num_tags * padded, dtype=emissions.dtype, device=device)
    cand = sums.view(num_tags, num_tags, padded)  # (prev tag, tag, columns)
    for t in range(1, seq_len):
        w = widths[t]
        if w == 0:
            break
        if w == padded:  # so was every step before
            torch.add(slab_as_prev[t - 1], into, out=cand)
            score = slab_at[t]
            torch.amax(cand, 0, out=score)
            score += step_at[t]
        else:  # rows ended: fewer columns from here on
            if w != cand.size(2):
                cand = sums[: num_tags * num_tags * w].view(num_tags, num_tags, w)
            torch.add((score if score.size(1) == w else score[:, :w]).unsqueeze(1), into, out=cand)
            score = slab_at[t].view(-1)[: num_tags * w].view(num_tags, w)  # (tags, columns)
            torch.amax(cand, 0, out=score)
            score += step_at[t][:, :w]
        scores.append(score)
    # Each row's score at its last position: slabs.flatten()[last * slab size + tag * width at last + row].
    last = (lengths - 1).clamp(min=0)  # (batch,)
    index = last * (num_tags * padded) + torch.arange(batch, device=device)  # (batch,)
    index = index.unsqueeze(1) + torch.arange(num_tags, device=device) * width_t.index_select(0, last).unsqueeze(1)
    final = slabs.take(index) + end_transitions + end_penalty  # (batch, tags), summed in pytorch-crf's order
    path = torch.empty(seq_len, batch, dtype=torch.long, device=device)  # (seq, batch)
    path.copy_(final.argmax(1).unsqueeze(0))  # every position starts as the last tag: right past a row's end
    tags_at = path.unbind(0)  # seq x (batch,)
    into_t = transitions.t().contiguous()  # (tag, prev tag)
    picked = torch.empty(batch * num_tags, dtype=emissions.dtype, device=device)
    every_row = picked.view(batch, num_tags)  # (batch, prev tag)
    back = every_row
    for t in range(seq_len - 1, 0, -1):
        n = rows_on[t]
        if n == 0:
            continue
        if widths[t - 1] == padded:
            prev = slab_as_back[t - 1] if n == batch else slab_as_back[t - 1][:n]  # (rows on, prev tag)
        else:
            prev = scores[t - 1][:, :n].t()
        # The forward step's sums, bit for bit (float addition commutes); ties to the first index again.
        if n == batch:
            torch.index_select(into_t, 0, tags_at[t], out=every_row)  # score of each prev tag into the row's tag
            every_row += prev
            torch.argmax(every_row, 1, out=tags_at[t - 1])
        else:
            if n != back.size(0):
                back = picked[: n * num_tags].view(n, num_tags)  # (rows on, prev tag)
            torch.index_select(into_t, 0, tags_at[t][:n], out=back)
            back += prev
            torch.argmax(back, 1, out=tags_at[t - 1][:n])
    return torch.empty_like(path).index_copy_(1, order, path).t()  # (batch, seq), rows back in input order


# The scaled recursions below sum probabilities rescaled to at most 1 by matrix products; a sum under this bound
# has lost its leading terms to float underflow, and the caller recomputes in log space.
SMALLEST_EXACT_SUM = 1e-35
# Above this magnitude, exp(transitions) in the analytic gradient could overflow; autograd in log space is used.
SAFE_TRANSITION_SCORE = 30.0


def _scaled_forward_scores(
    emissions: torch.Tensor, mask: torch.Tensor, full: List[bool], start: torch.Tensor, transitions: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """Forward log-scores alpha `(seq, batch, tags)` of packed input (past a row's end, its last alpha), and
    whether they are exact.

    Each step is a matrix product in probability space, rescaled by the row maximum of alpha and the column maximum
    of the transitions: much cheaper than a (batch, tags, tags) logsumexp, and exact unless a sum underflows.
    """
    steps = emissions.transpose(0, 1)  # (seq, batch, tags) view
    step_on = mask.t().unsqueeze(2)  # (seq, batch, 1)
    trans_max = transitions.max(0).values  # (tags,) best score into each tag
    exp_trans = (transitions - trans_max).exp()  # (tags, tags), each column's max is 1
    alpha = start + steps[0]  # (batch, tags)
    alphas = [alpha]
    sums = [torch.ones(1, dtype=emissions.dtype, device=emissions.device)]
    for t in range(1, steps.size(0)):
        shift = alpha.max(1, keepdim=True).values  # (batch, 1)
        summed = torch.mm((alpha - shift).exp(), exp_trans)  # (batch, tags)
        sums.append(summed.flatten())
        nxt = summed.log() + (shift + trans_max) + steps[t]  # (batch, tags)
        alpha = nxt if full[t] else torch.where(step_on[t], nxt, alpha)
        alphas.append(alpha)
    exact = bool(torch.cat(sums).min() >= 1e-35)  # SMALLEST_EXACT_SUM, inlined for TorchScript
    return torch.stack(alphas), exact


def _log_space_forward_scores(
    emissions: torch.Tensor, mask: torch.Tensor, full: List[bool], start: torch.Tensor, transitions: torch.Tensor
) -> torch.Tensor:
    """Forward log-scores alpha `(seq, batch, tags)` by logsumexp: exact for any scores, slower."""
    steps = emissions.transpose(0, 1)  # (seq, batch, tags) view
    step_on = mask.t().unsqueeze(2)  # (seq, batch, 1)
    alpha = start + steps[0]  # (batch, tags)
    alphas = [alpha]
    for t in range(1, steps.size(0)):
        nxt = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + steps[t]  # (batch, tags)
        alpha = nxt if full[t] else torch.where(step_on[t], nxt, alpha)
        alphas.append(alpha)
    return torch.stack(alphas)


def _scaled_backward_scores(
    emissions: torch.Tensor, mask: torch.Tensor, full: List[bool], end: torch.Tensor, transitions: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """Backward log-scores beta `(seq, batch, tags)` (the score of the rest of each row's chain after a position)
    by rescaled matrix products, and whether they are exact."""
    steps = emissions.transpose(0, 1)  # (seq, batch, tags) view
    step_on = mask.t().unsqueeze(2)  # (seq, batch, 1)
    trans_max = transitions.max(1).values  # (tags,) best score out of each tag
    exp_trans_t = (transitions - trans_max.unsqueeze(1)).exp().t()  # (tags, tags), each row's max is 1, transposed
    at_end = end.expand(steps.size(1), steps.size(2))  # (batch, tags): beta at each row's last position
    beta = at_end
    betas = [beta]
    sums = [torch.ones(1, dtype=emissions.dtype, device=emissions.device)]
    for t in range(steps.size(0) - 2, -1, -1):
        ahead = steps[t + 1] + beta  # (batch, tags)
        shift = ahead.max(1, keepdim=True).values  # (batch, 1)
        summed = torch.mm((ahead - shift).exp(), exp_trans_t)  # (batch, tags)
        sums.append(summed.flatten())
        nxt = summed.log() + (shift + trans_max)  # (batch, tags)
        beta = nxt if full[t + 1] else torch.where(step_on[t + 1], nxt, at_end)
        betas.append(beta)
    betas.reverse()
    exact = bool(torch.cat(sums).min() >= 1e-35)  # SMALLEST_EXACT_SUM, inlined for TorchScript
    return torch.stack(betas), exact


def _log_space_backward_scores(
    emissions: torch.Tensor, mask: torch.Tensor, full: List[bool], end: torch.Tensor, transitions: torch.Tensor
) -> torch.Tensor:
    """Backward log-scores beta `(seq, batch, tags)` by logsumexp: exact for any scores, slower."""
    steps = emissions.transpose(0, 1)  # (seq, batch, tags) view
    step_on = mask.t().unsqueeze(2)  # (seq, batch, 1)
    at_end = end.expand(steps.size(1), steps.size(2))  # (batch, tags)
    beta = at_end
    betas = [beta]
    for t in range(steps.size(0) - 2, -1, -1):
        ahead = (steps[t + 1] + beta).unsqueeze(1)  # (batch, 1, tags)
        nxt = torch.logsumexp(transitions + ahead, dim=2)  # (batch, tags)
        beta = nxt if full[t + 1] else torch.where(step_on[t + 1], nxt, at_end)
        betas.append(beta)
    betas.reverse()
    return torch.stack(betas)


# The same recursions for graphs with a dynamic length (torch.export, and through it ONNX): a Python loop would be
# unrolled to the example's length, so each runs as one `scan` over time, which torch.onnx writes as an ONNX Scan.
# Every step is masked (no step can be known to be full). Each scan runs over the chain plus one step that is off:
# an exported graph assumes a dynamic size is at least 2, and the extra step keeps one-word chains inside it.


def _scan(combine: Any, init: torch.Tensor, xs: Any, reverse: bool = False) -> Any:
    from torch._higher_order_ops.scan import scan

    return scan(combine, init, xs, reverse=reverse)


def _with_an_off_step(emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-major emissions `(seq + 1, batch, tags)` and mask `(seq + 1, batch, 1)`, with a last step that is off."""
    steps = torch.cat([emissions, emissions.new_zeros(emissions.size(0), 1, emissions.size(2))], 1).transpose(0, 1)
    on = torch.cat([mask, mask.new_zeros(mask.size(0), 1)], 1).t().unsqueeze(2)
    return steps, on


@torch.jit.unused  # graph capture only; TorchScript keeps the loops
def _viterbi_scan(
    emissions, mask, start, end_transitions, end_penalty, transitions
):  # tensors, untyped for TorchScript
    """Viterbi `(batch, seq)` as two scans: best scores and back-pointers forward, the path backward. Same sums,
    comparisons and ties as `_viterbi_back_pointers`."""
    batch, seq_len, num_tags = emissions.shape
    steps, on = _with_an_off_step(emissions, mask)  # (seq + 1, batch, tags), (seq + 1, batch, 1)
    first = (torch.arange(seq_len + 1, device=emissions.device) == 0).view(-1, 1, 1)  # (seq + 1, 1, 1)
    identity = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)  # (batch, tags)

    def forward_step(score: torch.Tensor, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        emit, step_on, is_first = x
        best, prev = (score.unsqueeze(2) + transitions).max(1)  # (batch, tags) each
        nxt = torch.where(is_first, start + emit, torch.where(step_on, best + emit, score))
        return nxt, torch.where(step_on & ~is_first, prev, identity)

    final, history = _scan(forward_step, emissions.new_zeros(batch, num_tags), (steps, on, first))
    last = (final + end_transitions + end_penalty).argmax(1)  # (batch,)

    def backward_step(current: torch.Tensor, back: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return back.gather(1, current.unsqueeze(1)).squeeze(1), current.clone()

    _, path = _scan(backward_step, last, history, reverse=True)  # (seq + 1, batch): tag at each step
    return path[:seq_len].t()  # (batch, seq)


@torch.jit.unused  # graph capture only; TorchScript keeps the loops
def _log_space_forward_scan(emissions, mask, start, transitions):  # tensors, untyped for TorchScript
    """`_log_space_forward_scores` as a scan: alpha `(seq, batch, tags)`."""
    seq_len = emissions.size(1)
    steps, on = _with_an_off_step(emissions, mask)  # (seq + 1, batch, tags), (seq + 1, batch, 1)
    first = (torch.arange(seq_len + 1, device=emissions.device) == 0).view(-1, 1, 1)  # (seq + 1, 1, 1)

    def step(alpha: torch.Tensor, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        emit, step_on, is_first = x
        summed = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emit  # (batch, tags)
        nxt = torch.where(is_first, start + emit, torch.where(step_on, summed, alpha))
        return nxt, nxt.clone()

    _, alphas = _scan(step, emissions.new_zeros(emissions.size(0), emissions.size(2)), (steps, on, first))
    return alphas[:seq_len]


@torch.jit.unused  # graph capture only; TorchScript keeps the loops
def _log_space_backward_scan(emissions, mask, end, transitions):  # tensors, untyped for TorchScript
    """`_log_space_backward_scores` as a reverse scan: beta `(seq, batch, tags)`."""
    batch, seq_len, num_tags = emissions.shape
    # Step k reads position k + 1: the emissions and mask shifted left, off past the end.
    ahead, ahead_on = _with_an_off_step(emissions[:, 1:], mask[:, 1:])  # (seq, batch, tags), (seq, batch, 1)
    ahead = torch.cat([ahead, ahead.new_zeros(1, batch, num_tags)], 0)  # (seq + 1, batch, tags)
    ahead_on = torch.cat([ahead_on, ahead_on.new_zeros(1, batch, 1)], 0)  # (seq + 1, batch, 1)
    at_end = end.expand(batch, num_tags)  # (batch, tags)

    def step(beta: torch.Tensor, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        emit, step_on = x
        summed = torch.logsumexp(transitions + (emit + beta).unsqueeze(1), dim=2)  # (batch, tags)
        nxt = torch.where(step_on, summed, at_end)
        return nxt, nxt.clone()

    _, betas = _scan(step, at_end.clone(), (ahead, ahead_on), reverse=True)
    return betas[:seq_len]


class _LogPartition(torch.autograd.Function):
    """log Z `(batch,)` of packed input from precomputed exact forward scores, with an analytic backward pass.

    The gradient of log Z is the expected feature count: node marginals for the emissions and start/end scores,
    edge marginals summed over positions for the transitions. One backward recursion and a few batched products
    replace autograd's graph over every step of the forward recursion. Should the backward recursion underflow,
    the gradient comes from autograd through the log-space recursion instead.
    """

    @staticmethod
    def forward(ctx, emissions, mask, start, end, transitions, alphas):  # type: ignore[override]
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)  # (batch,)
        ctx.save_for_backward(emissions, mask, start, end, transitions, alphas, log_z)
        return log_z

    @staticmethod
    def backward(ctx, grad_log_z):  # type: ignore[override]
        emissions, mask, start, end, transitions, alphas, log_z = ctx.saved_tensors
        full: List[bool] = mask.all(0).tolist()
        betas, exact = _scaled_backward_scores(emissions, mask, full, end, transitions)  # (seq, batch, tags)
        if not exact:
            return (*_log_space_gradients(emissions, mask, full, start, end, transitions, grad_log_z), None)
        weight = mask.t().unsqueeze(2).to(emissions.dtype) * grad_log_z.view(1, -1, 1)  # (seq, batch, 1)
        node = (alphas + betas - log_z.view(1, -1, 1)).exp() * weight  # (seq, batch, tags), weighted marginals
        grad_start = node[0].sum(0)  # (tags,)
        last = (mask.sum(1) - 1).clamp(min=0)  # (batch,)
        grad_end = node.gather(0, last.view(1, -1, 1).expand(1, -1, node.size(2))).squeeze(0).sum(0)  # (tags,)
        # Edge marginal (t-1 -> t) = exp(alpha[t-1, i] + trans[i, j] + emit[t, j] + beta[t, j] - log Z): a product of
        # a left factor over i and a right factor over j, summed over (t, batch) by one matrix product.
        steps = emissions.transpose(0, 1)  # (seq, batch, tags)
        shift = alphas[:-1].max(2, keepdim=True).values  # (seq - 1, batch, 1)
        left = (alphas[:-1] - shift).exp().flatten(0, 1)  # ((seq - 1) * batch, tags)
        right = (steps[1:] + betas[1:] + shift - log_z.view(1, -1, 1)).exp() * weight[1:]  # (seq - 1, batch, tags)
        grad_trans = torch.mm(left.t(), right.flatten(0, 1)) * transitions.exp()  # (tags, tags)
        return node.transpose(0, 1), None, grad_start, grad_end, grad_trans, None


def _log_space_gradients(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    full: List[bool],
    start: torch.Tensor,
    end: torch.Tensor,
    transitions: torch.Tensor,
    grad_log_z: torch.Tensor,
) -> tuple[torch.Tensor, None, torch.Tensor, torch.Tensor, torch.Tensor]:
    inputs = [t.detach().requires_grad_(True) for t in (emissions, start, end, transitions)]
    with torch.enable_grad():
        alphas = _log_space_forward_scores(inputs[0], mask, full, inputs[1], inputs[3])
        log_z = torch.logsumexp(alphas[-1] + inputs[2], dim=1)
        grads = torch.autograd.grad(log_z, inputs, grad_log_z)
    return grads[0], None, grads[1], grads[2], grads[3]


@dataclass
class BertCrfTokenClassifierOutput(ModelOutput):
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


# The name says what it is for every family; the BERT name stays for code and checkpoints that import it.
CrfTokenClassifierOutput = BertCrfTokenClassifierOutput


class LexiconFeatures(nn.Module):
    """A learned vector per lexicon feature, summed over the features a token has: `(batch, seq)` feature bits in
    (see `bert_crf_utils.lexicon_bits`), `(batch, seq, size)` out. Starts at zero, so a new lexicon model computes
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
    """A transformer encoder, dropout, a linear classifier and a CRF: what the CRF taggers of every encoder family
    (BERT, ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA) share.

    The model builds its family's body as `self.<base_model_prefix>` (so that `from_pretrained` loads the weights of
    a bare or masked-LM checkpoint of the family), then its head with [`build_head`], and passes its family's inputs
    to [`crf_forward`].
    """

    # The loss is a mean over sentences; the Trainer must scale it for gradient accumulation itself.
    accepts_loss_kwargs = False

    def build_head(self, config: Any) -> None:
        """The layers above the body, as every family's `*ForTokenClassification` builds them: dropout
        (`classifier_dropout`, else `hidden_dropout_prob`), a linear classifier and the CRF; with
        `config.lexicon_types`, the lexicon features (`lexicon_embeddings`, into the input embeddings or the
        emissions), and with `config.layer_mix`, the layer mix."""
        self.num_labels = config.num_labels
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
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
    ) -> BertCrfTokenClassifierOutput | tuple:
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
        output = BertCrfTokenClassifierOutput(
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


__all__ = [
    "CRF",
    "CrfTaggingMixin",
    "EncoderCrfMixin",
    "BertCrfTokenClassifierOutput",
    "CrfTokenClassifierOutput",
    "init_crf_weights",
    "LexiconFeatures",
    "ScalarMix",
]
