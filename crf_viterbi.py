"""Viterbi decoding on packed input (batch first, each row's mask a prefix of ones): the classic back-pointers, the
back-pointer-free form that recomputes while backtracking (faster on CPUs for many tags), and the scan form for
exported graphs. All give the same path: the same float sums, compared the same way, ties to the lowest tag.

Travels with every checkpoint as remote code: imports only torch and its siblings.
"""

from __future__ import annotations

from typing import List

import torch


try:  # in a checkpoint folder (remote code)
    from .crf_capture import _full_steps, _is_capturing, _is_exporting, _scan, _with_an_off_step
except ImportError:  # in this repository
    from crf_capture import _full_steps, _is_capturing, _is_exporting, _scan, _with_an_off_step


# Viterbi on packed input. Both helpers give the same path: the same float sums, compared the same way, with ties to
# the lowest tag (torch.max with a dim and torch.argmax return the first maximal index). Per step, the (batch, tags,
# tags) max with indices costs far more than the elementwise work around it once tags are many (its kernel is scalar,
# on any instruction set). Below this many sums per step, or this many rows (padded to 16, see below), the calls per
# step dominate and the classic back-pointers, with fewer calls, are cheaper (measured on AVX-512 and AVX2 kernels).
VITERBI_MIN_RECOMPUTE_SUMS = 6144
VITERBI_MIN_RECOMPUTE_BATCH = 8


def viterbi(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    end_transitions: torch.Tensor,
    end_penalty: torch.Tensor,
    transitions: torch.Tensor,
    min_batch: int = VITERBI_MIN_RECOMPUTE_BATCH,
    min_sums: int = VITERBI_MIN_RECOMPUTE_SUMS,
) -> torch.Tensor:
    """Best path `(batch, seq)`; past a row's end, its last tag. The form that is fastest here and safe to capture.
    (The limits come in as defaults: TorchScript reads no global variables.)"""
    if _is_exporting():
        return _viterbi_scan(emissions, mask, start, end_transitions, end_penalty, transitions)
    batch, _, num_tags = emissions.shape
    # Only CPUs run the max with indices as a scalar loop; elsewhere the back-pointers' fewer kernel launches win.
    recompute = emissions.device.type == "cpu" and batch >= min_batch and batch * num_tags * num_tags >= min_sums
    if recompute and not _is_capturing():
        return _viterbi_recomputed(emissions, mask, start, end_transitions, end_penalty, transitions)
    return _viterbi_back_pointers(emissions, mask, start, end_transitions, end_penalty, transitions)


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
    order, lengths, rows_on, width_t = _longest_first(mask)
    slabs, scores = _best_scores(emissions, order, width_t, start, transitions)
    path = _backtrack(slabs, scores, lengths, rows_on, width_t, end_transitions, end_penalty, transitions)
    return torch.empty_like(path).index_copy_(1, order, path).t()  # (batch, seq), rows back in input order


def _longest_first(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, List[int], torch.Tensor]:
    """The rows longest first: their order `(batch,)`, lengths `(batch,)` (non-increasing), how many are on at each
    step (a prefix) and the columns computed at each step `(seq,)`."""
    batch, seq_len = mask.shape
    lengths = mask.sum(1)  # (batch,)
    order = torch.argsort(lengths, descending=True, stable=True)  # (batch,)
    lengths = lengths.index_select(0, order)  # (batch,) non-increasing
    positions = torch.arange(seq_len, device=mask.device)  # (seq,)
    rows_on_t = (lengths.unsqueeze(0) > positions.unsqueeze(1)).sum(1)  # (seq,) rows on at each step, a prefix
    rows_on_t[0] = batch  # step 0 holds every row, empty ones too, so that each row has a last score
    # Columns computed at each step: the rows on, rounded up to a multiple of 16. The broadcast add over
    # (tags, tags, columns) measured 2-3x slower at other widths (8, 15 or 24 columns against 16 or 32), with AVX2
    # and AVX-512 kernels alike; the extra columns hold finished or padding rows, never read.
    width_t = (rows_on_t + 15) // 16 * 16  # (seq,)
    rows_on: List[int] = rows_on_t.tolist()
    return order, lengths, rows_on, width_t


def _best_scores(
    emissions: torch.Tensor, order: torch.Tensor, width_t: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor
) -> tuple[torch.Tensor, List[torch.Tensor]]:
    """The forward pass: slabs `(seq, tags, padded batch)` holding each step's best scores (while every column is
    computed, the whole slab; else its first tags * width values as (tags, width), contiguous: reductions are slow
    into strided outputs), and each step's scores as a view into its slab."""
    batch, seq_len, num_tags = emissions.shape
    widths: List[int] = width_t.tolist()
    padded = widths[0]
    sorted_steps = emissions.index_select(0, order).permute(1, 2, 0)  # (seq, tags, batch) view
    if padded == batch:
        steps = sorted_steps.contiguous()
    else:
        steps = emissions.new_zeros(seq_len, num_tags, padded)  # (seq, tags, padded batch)
        steps[:, :, :batch] = sorted_steps
    step_at = steps.unbind(0)  # seq x (tags, padded batch)
    # Whole slabs come with every view the loop needs, made in three calls rather than per step.
    slabs = torch.empty(seq_len, num_tags, padded, dtype=emissions.dtype, device=emissions.device)
    slab_at = slabs.unbind(0)  # seq x (tags, padded batch)
    slab_as_prev = slabs.unsqueeze(2).unbind(0)  # seq x (prev tag, 1, padded batch)
    score = slab_at[0]  # (tags, padded batch): best score of a path ending in each tag
    torch.add(start.unsqueeze(1), step_at[0], out=score)
    scores = [score]
    into = transitions.unsqueeze(2)  # (prev tag, tag, 1)
    sums = torch.empty(num_tags * num_tags * padded, dtype=emissions.dtype, device=emissions.device)
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
    return slabs, scores


def _backtrack(
    slabs: torch.Tensor,
    scores: List[torch.Tensor],
    lengths: torch.Tensor,
    rows_on: List[int],
    width_t: torch.Tensor,
    end_transitions: torch.Tensor,
    end_penalty: torch.Tensor,
    transitions: torch.Tensor,
) -> torch.Tensor:
    """The best path `(seq, batch)` of the sorted rows, from the forward pass's scores, recomputing each step's
    back-pointer for the tag already chosen."""
    seq_len, num_tags, padded = slabs.shape
    batch, device = lengths.size(0), slabs.device
    widths: List[int] = width_t.tolist()
    # Each row's score at its last position: slabs.flatten()[last * slab size + tag * width at last + row].
    last = (lengths - 1).clamp(min=0)  # (batch,)
    index = last * (num_tags * padded) + torch.arange(batch, device=device)  # (batch,)
    index = index.unsqueeze(1) + torch.arange(num_tags, device=device) * width_t.index_select(0, last).unsqueeze(1)
    final = slabs.take(index) + end_transitions + end_penalty  # (batch, tags), summed in pytorch-crf's order
    path = torch.empty(seq_len, batch, dtype=torch.long, device=device)  # (seq, batch)
    path.copy_(final.argmax(1).unsqueeze(0))  # every position starts as the last tag: right past a row's end
    tags_at = path.unbind(0)  # seq x (batch,)
    slab_as_back = slabs[:, :, :batch].transpose(1, 2).unbind(0)  # seq x (batch, prev tag)
    into_t = transitions.t().contiguous()  # (tag, prev tag)
    picked = torch.empty(batch * num_tags, dtype=slabs.dtype, device=device)
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
    return path


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
