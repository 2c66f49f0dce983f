"""The forward and backward recursions on packed input (batch first, each row's mask a prefix of ones): log Z and
the marginals. Scaled recursions (matrix products of probabilities rescaled per step) where they are exact, else
log-space loops; the scan forms that exported graphs run beside the loops they mirror; log Z with an analytic
backward pass for training.

Travels with every checkpoint as remote code: imports only torch and its siblings.
"""

from __future__ import annotations

from typing import List, Optional

import torch


try:  # in a checkpoint folder (remote code)
    from .crf_capture import _scan, _with_an_off_step
except ImportError:  # in this repository
    from crf_capture import _scan, _with_an_off_step


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
        emissions = ctx.saved_tensors[0]
        # A backward pass called inside an autocast block runs under it: the products below must stay float32.
        with torch.autocast(emissions.device.type, enabled=False):
            return _LogPartition._gradients(ctx.saved_tensors, grad_log_z.to(emissions.dtype))

    @staticmethod
    def _gradients(saved: tuple[torch.Tensor, ...], grad_log_z: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        emissions, mask, start, end, transitions, alphas, log_z = saved
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
