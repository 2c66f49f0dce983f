"""The linear-chain [`CRF`]: a drop-in for pytorch-crf's `torchcrf.CRF` (same constructor, parameters, `forward` and
`decode`), with decoding constraints, marginals at a confidence temperature and graph-safe forms. Its recursions
live beside it, one module per concern: crf_forward_backward.py (log Z, marginals), crf_viterbi.py (the best path),
crf_capture.py (what changes while a graph is captured).

Travels with every checkpoint as remote code: imports only torch and its siblings.
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch
from torch import nn


try:  # in a checkpoint folder (remote code)
    from .crf_capture import _full_steps, _is_capturing, _is_exporting
    from .crf_forward_backward import (
        SAFE_TRANSITION_SCORE,
        _log_space_backward_scan,
        _log_space_backward_scores,
        _log_space_forward_scan,
        _log_space_forward_scores,
        _LogPartition,
        _scaled_backward_scores,
        _scaled_forward_scores,
    )
    from .crf_viterbi import viterbi
except ImportError:  # in this repository
    from crf_capture import _full_steps, _is_capturing, _is_exporting
    from crf_forward_backward import (
        SAFE_TRANSITION_SCORE,
        _log_space_backward_scan,
        _log_space_backward_scores,
        _log_space_forward_scan,
        _log_space_forward_scores,
        _LogPartition,
        _scaled_backward_scores,
        _scaled_forward_scores,
    )
    from crf_viterbi import viterbi


# Score added to forbidden transitions when decoding is constrained: far below any reachable path score, yet finite
# so that sums of several penalties stay finite in float32 and marginals never see inf - inf.
FORBIDDEN_SCORE = -10000.0


def _at_least_float32(scores: torch.Tensor) -> torch.Tensor:
    # bf16/fp16 emissions (a model in reduced precision) are scored exactly as the same values in float32: a
    # recursion summing hundreds of steps in 8 bits of mantissa would drift by tenths.
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def _path_score(
    emissions: torch.Tensor,
    tags: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    transitions: torch.Tensor,
) -> torch.Tensor:
    """Score `(batch,)` of each row's tag path (packed input): its emissions, transitions, start and end; 0 for an
    empty row."""
    seq_len = emissions.size(1)
    mask_f = mask.to(emissions.dtype)  # (batch, seq)
    tags = tags.masked_fill(~mask, 0)  # padding may hold -100 or garbage
    score = (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * mask_f).sum(1)  # (batch,)
    if seq_len > 1:
        pair_scores = transitions[tags[:, :-1], tags[:, 1:]]  # (batch, seq - 1)
        score = score + (pair_scores * mask_f[:, 1:]).sum(1)
    lengths = mask.sum(1)  # (batch,)
    last_tags = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # (batch,)
    boundary = start[tags[:, 0]] + end[last_tags]  # (batch,)
    return score + boundary * (lengths > 0).to(emissions.dtype)


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
      argmax of the same scores at any temperature, and the likelihood do not see it. `path_temperature` does the
      same for the probability of a whole path (`path_probability_packed`), calibrated on its own.

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
        # float32 whatever the default dtype: a model built or loaded in bf16/fp16 keeps its CRF exact (taggers list
        # it in transformers' `_keep_in_fp32_modules_strict`, which asks for the dtype here).
        fp32 = torch.float32
        self.start_transitions = nn.Parameter(torch.empty(num_tags, dtype=fp32))
        self.end_transitions = nn.Parameter(torch.empty(num_tags, dtype=fp32))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags, dtype=fp32))
        # Non-persistent, so pytorch-crf state dicts load unchanged; owners re-apply constraints after loading.
        self.register_buffer("start_penalty", torch.zeros(num_tags, dtype=fp32), persistent=False)
        self.register_buffer("end_penalty", torch.zeros(num_tags, dtype=fp32), persistent=False)
        self.register_buffer("transition_penalty", torch.zeros(num_tags, num_tags, dtype=fp32), persistent=False)
        self.temperature = 1.0  # a plain float: captured graphs (ONNX, torch.export) hold it as a constant
        self.path_temperature = 1.0
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
        """Take a tagger config's decoding constraints (`allowed_transitions()`), its `confidence_temperature` and
        its `mistake_temperature`."""
        self.set_constraints(*config.allowed_transitions())
        self.temperature = float(getattr(config, "confidence_temperature", 1.0))
        self.path_temperature = float(getattr(config, "mistake_temperature", 1.0))

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

    # Every algorithm runs in float32 or wider whatever the emissions' dtype and whatever autocast context it is
    # called in (TorchScript does not autocast).

    def log_likelihood_packed(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sequence log-likelihood `(batch,)` for packed input (see above)."""
        if not torch.jit.is_scripting():  # TorchScript does not autocast
            if torch.is_autocast_enabled(emissions.device.type):  # its matrix products would run in bf16/fp16
                with torch.autocast(emissions.device.type, enabled=False):
                    return self._log_likelihood(_at_least_float32(emissions), tags, mask)
        return self._log_likelihood(_at_least_float32(emissions), tags, mask)

    def _log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._gold_score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def _potentials(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start, end and transition scores in `dtype` (differentiable; a CRF kept in bf16 computes in float32)."""
        return self.start_transitions.to(dtype), self.end_transitions.to(dtype), self.transitions.to(dtype)

    def _gold_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        start, end, transitions = self._potentials(emissions.dtype)
        return _path_score(emissions, tags, mask, start, end, transitions)

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sequence `(batch,)`, unconstrained; 0 for empty rows."""
        start, end, transitions = self._potentials(emissions.dtype)
        nonempty = mask[:, 0].to(emissions.dtype)  # (batch,)
        if _is_exporting():
            alpha = _log_space_forward_scan(emissions, mask, start, transitions)[-1]
            return torch.logsumexp(alpha + end, dim=1) * nonempty
        full = _full_steps(mask)
        if not torch.jit.is_scripting() and not _is_capturing():
            with torch.no_grad():
                alphas, exact = _scaled_forward_scores(emissions, mask, full, start, transitions)
            # The analytic backward factorizes edge marginals through exp(transitions): safe for moderate scores.
            if exact and bool(transitions.detach().abs().max() <= SAFE_TRANSITION_SCORE):
                log_z = _LogPartition.apply(emissions, mask, start, end, transitions, alphas)
                return log_z * nonempty
        alphas = _log_space_forward_scores(emissions, mask, full, start, transitions)
        return torch.logsumexp(alphas[-1] + end, dim=1) * nonempty

    def viterbi_packed(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best path `(batch, seq)` for packed input, respecting the constraints; past a row's end, its last tag.

        Ties go to the lowest tag, at the end and for every back-pointer, as in pytorch-crf.
        """
        # No gradient flows through a path, and the helpers' out= buffers refuse inputs that require one. Their
        # buffers take one dtype: the promoted one, in which the sums happen anyway (the casts are exact).
        dtype = torch.promote_types(torch.promote_types(emissions.dtype, self.transitions.dtype), torch.float32)
        emissions = emissions.detach().to(dtype)
        start = self.start_transitions.detach().to(dtype) + self.start_penalty.to(dtype)  # (tags,)
        transitions = self.transitions.detach().to(dtype) + self.transition_penalty.to(dtype)  # (tags, tags)
        end_transitions = self.end_transitions.detach().to(dtype)
        end_penalty = self.end_penalty.to(dtype)
        return viterbi(emissions, mask, start, end_transitions, end_penalty, transitions)

    def marginals_packed(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position tag posteriors `(batch, seq, tags)` for packed input, respecting the constraints, at the
        CRF's `temperature`.

        Computed in float64 and normalized per position: forward and backward scores grow with the length of the
        chain, and float32 rounding of scores in the thousands would put probabilities off by a percent.
        """
        emissions64, start, end, transitions = self._calibrated_potentials(emissions, self.temperature)
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

    def _calibrated_potentials(
        self, emissions: torch.Tensor, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Emissions, start, end and transition scores in float64 with the constraints' penalties, every potential
        divided by `temperature`: the potentials of the calibrated, constrained distribution."""
        scale = 1.0 / temperature
        start = (self.start_transitions.double() + self.start_penalty.double()) * scale
        end = (self.end_transitions.double() + self.end_penalty.double()) * scale
        transitions = (self.transitions.double() + self.transition_penalty.double()) * scale
        return emissions.double() * scale, start, end, transitions

    def path_probability_packed(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Probability `(batch,)` of each row's `tags` (its Viterbi path, say) for packed input, under the same
        distribution as the marginals (constrained) at the CRF's `path_temperature`; 1 for an empty row.

        One minus it is the model's probability that the path is wrong somewhere: under BIO or BIOES constraints
        paths and entity sets correspond one to one, so that is the probability that the text holds at least one
        wrong or missed entity. Costs one forward pass over the tags, as the likelihood; float64 as the marginals.
        """
        emissions64, start, end, transitions = self._calibrated_potentials(emissions.detach(), self.path_temperature)
        score = _path_score(emissions64, tags, mask, start, end, transitions)  # (batch,)
        full: List[bool] = mask.all(0).tolist()
        alphas, exact = _scaled_forward_scores(emissions64, mask, full, start, transitions)  # (seq, batch, tags)
        if not exact:
            alphas = _log_space_forward_scores(emissions64, mask, full, start, transitions)
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)  # (batch,)
        probability = (score - log_z).exp().clamp(max=1.0)  # rounding may put the best path a hair above 1
        return torch.where(mask[:, 0], probability, torch.ones_like(probability)).to(emissions.dtype)

    def log_marginals_packed(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position log tag posteriors `(batch, seq, tags)` of the unconstrained model, differentiable (exact
        log-space forward-backward; for training, e.g. distillation towards another CRF's marginals). Positions
        past a row's end hold garbage: mask them."""
        if not torch.jit.is_scripting():  # TorchScript does not autocast
            if torch.is_autocast_enabled(emissions.device.type):  # its matrix products would run in bf16/fp16
                with torch.autocast(emissions.device.type, enabled=False):
                    return self._log_marginals(_at_least_float32(emissions), mask)
        return self._log_marginals(_at_least_float32(emissions), mask)

    def _log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        start, end, transitions = self._potentials(emissions.dtype)
        full = _full_steps(mask)
        alphas = _log_space_forward_scores(emissions, mask, full, start, transitions)
        betas = _log_space_backward_scores(emissions, mask, full, end, transitions)
        scores = alphas + betas  # (seq, batch, tags)
        return (scores - torch.logsumexp(scores, dim=2, keepdim=True)).transpose(0, 1)  # (batch, seq, tags)
