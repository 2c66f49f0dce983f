"""Tests for modeling_bert_crf.CRF against pytorch-crf (torchcrf.CRF) and against brute-force enumeration."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torchcrf

from configuration_crf import allowed_transitions
from conftest import LABELS, pack
from crf_forward_backward import (
    _log_space_backward_scan,
    _log_space_backward_scores,
    _log_space_forward_scan,
    _log_space_forward_scores,
)
from crf_viterbi import (
    VITERBI_MIN_RECOMPUTE_BATCH,
    VITERBI_MIN_RECOMPUTE_SUMS,
    _viterbi_back_pointers,
    _viterbi_recomputed,
    _viterbi_scan,
)
from modeling_crf import CRF


REDUCTIONS = ("none", "sum", "mean", "token_mean")
BIOES_LABELS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def make_pair(num_tags: int, batch_first: bool, seed: int = 0, scale: float = 1.0):
    """Our CRF and a torchcrf.CRF with the same, deliberately non-small, random parameters."""
    torch.manual_seed(seed)
    ref = torchcrf.CRF(num_tags, batch_first=batch_first)
    with torch.no_grad():
        for param in ref.parameters():
            param.normal_(0.0, scale)
    ours = CRF(num_tags, batch_first=batch_first)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def random_batch(batch, seq_len, num_tags, gen, holes=False, dtype=torch.float32):
    """Batch-first emissions, tags and a bool mask whose first column is on.

    Without holes the mask is a ragged prefix (row 0 full length, some rows of length 1); with holes positions after
    the first are switched on at random.
    """
    emissions = torch.randn(batch, seq_len, num_tags, generator=gen, dtype=dtype)
    tags = torch.randint(num_tags, (batch, seq_len), generator=gen)
    if holes:
        mask = torch.rand(batch, seq_len, generator=gen) < 0.6
        mask[:, 0] = True
    else:
        lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
        lengths[0] = seq_len
        if batch > 1:
            lengths[-1] = 1
        mask = torch.arange(seq_len).unsqueeze(0) < lengths.unsqueeze(1)
    return emissions, tags, mask


def to_layout(batch_first: bool, *tensors):
    """Turn batch-first tensors into the layout a CRF with `batch_first` expects."""
    if batch_first:
        return tensors
    return tuple(t.transpose(0, 1).contiguous() for t in tensors)


# Brute-force oracle over all tag paths of one sequence, in float64.


def path_score(emissions, start, end, trans, path):
    score = start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        score = score + trans[path[t - 1], path[t]] + emissions[t, path[t]]
    return score + end[path[-1]]


def oracle(emissions, start, end, trans, allowed=None):
    """Scores of all paths of one (length, tags) emission matrix; optionally only the allowed ones.

    Returns (paths, scores, log_z, best_path, marginals (length, tags)).
    """
    length, num_tags = emissions.shape
    paths, scores = [], []
    for path in itertools.product(range(num_tags), repeat=length):
        if allowed is not None and not allowed(path):
            continue
        paths.append(path)
        scores.append(float(path_score(emissions, start, end, trans, path)))
    assert paths, "no allowed path"
    log_z = torch.logsumexp(torch.tensor(scores, dtype=torch.float64), 0).item()
    best = list(paths[max(range(len(paths)), key=lambda i: scores[i])])
    marginals = torch.zeros(length, num_tags, dtype=torch.float64)
    for path, score in zip(paths, scores):
        p = math.exp(score - log_z)
        for t, tag in enumerate(path):
            marginals[t, tag] += p
    return paths, scores, log_z, best, marginals


def params64(crf):
    return (
        crf.start_transitions.detach().double(),
        crf.end_transitions.detach().double(),
        crf.transitions.detach().double(),
    )


# ----------------------------------------------------------------------------------------------------------------
# Drop-in compatibility: parameters, repr, state dicts


@pytest.mark.parametrize("num_tags", [1, 5])
@pytest.mark.parametrize("batch_first", [False, True])
def test_parameters_and_repr_match(num_tags, batch_first):
    ours, ref = CRF(num_tags, batch_first=batch_first), torchcrf.CRF(num_tags, batch_first=batch_first)
    ours_shapes = {name: tuple(p.shape) for name, p in ours.named_parameters()}
    ref_shapes = {name: tuple(p.shape) for name, p in ref.named_parameters()}
    assert ours_shapes == ref_shapes
    assert ours_shapes == {
        "start_transitions": (num_tags,),
        "end_transitions": (num_tags,),
        "transitions": (num_tags, num_tags),
    }
    assert repr(ours) == repr(ref) == f"CRF(num_tags={num_tags})"
    assert ours.num_tags == ref.num_tags and ours.batch_first == ref.batch_first
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_reset_parameters_range():
    crf = CRF(50)
    for param in crf.parameters():
        assert param.min() >= -0.1 and param.max() <= 0.1
        assert param.std() > 0.01


def test_state_dict_loads_both_ways():
    ref = torchcrf.CRF(4)
    with torch.no_grad():
        for param in ref.parameters():
            param.normal_()
    ours = CRF(4)
    ours.set_constraints([True, False, True, True], None, None)
    ours.load_state_dict(ref.state_dict(), strict=True)
    for name, param in ref.named_parameters():
        assert torch.equal(getattr(ours, name), param), name

    ours2 = CRF(4)
    with torch.no_grad():
        for param in ours2.parameters():
            param.normal_()
    ours2.set_constraints([True, False, True, True], None, None)  # buffers are not part of the state dict
    ref2 = torchcrf.CRF(4)
    ref2.load_state_dict(ours2.state_dict(), strict=True)
    for name, param in ours2.named_parameters():
        assert torch.equal(getattr(ref2, name), param), name


# ----------------------------------------------------------------------------------------------------------------
# Numerical equivalence with torchcrf on prefix masks


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_tags", [1, 2, 5, 9])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_torchcrf(seed, num_tags, batch_first):
    ours, ref = make_pair(num_tags, batch_first, seed)
    gen = torch.Generator().manual_seed(100 + seed)
    for batch, seq_len in [(1, 1), (4, 1), (1, 6), (5, 7)]:
        emissions, tags, mask = to_layout(batch_first, *random_batch(batch, seq_len, num_tags, gen))
        for reduction in REDUCTIONS:
            got = ours(emissions, tags, mask, reduction=reduction)
            want = ref(emissions, tags, mask, reduction=reduction)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        # Without a mask: every position on.
        torch.testing.assert_close(ours(emissions, tags), ref(emissions, tags), rtol=1e-5, atol=1e-6)
        assert ours.decode(emissions, mask) == ref.decode(emissions, mask)
        assert ours.decode(emissions) == ref.decode(emissions)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_match_torchcrf(seed, batch_first, reduction):
    num_tags = 5
    ours, ref = make_pair(num_tags, batch_first, seed)
    gen = torch.Generator().manual_seed(200 + seed)
    emissions, tags, mask = to_layout(batch_first, *random_batch(6, 8, num_tags, gen))
    em_ours = emissions.clone().requires_grad_(True)
    em_ref = emissions.clone().requires_grad_(True)
    ours(em_ours, tags, mask, reduction=reduction).sum().backward()
    ref(em_ref, tags, mask, reduction=reduction).sum().backward()
    torch.testing.assert_close(em_ours.grad, em_ref.grad, rtol=0, atol=1e-4)
    for name in ("start_transitions", "end_transitions", "transitions"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(ref, name).grad, rtol=0, atol=1e-4)
        assert getattr(ours, name).grad.abs().sum() > 0


def test_mask_dtypes_equivalent():
    ours, _ = make_pair(4, True)
    gen = torch.Generator().manual_seed(3)
    emissions, tags, mask = random_batch(3, 5, 4, gen)
    want = ours(emissions, tags, mask, reduction="none")
    for dtype in (torch.uint8, torch.long, torch.float32):
        torch.testing.assert_close(ours(emissions, tags, mask.to(dtype), reduction="none"), want)
        assert ours.decode(emissions, mask.to(dtype)) == ours.decode(emissions, mask)


def test_large_emissions_stay_finite():
    ours, ref = make_pair(5, True, scale=3.0)
    gen = torch.Generator().manual_seed(4)
    emissions, tags, mask = random_batch(4, 9, 5, gen)
    emissions = emissions * 40.0
    got = ours(emissions, tags, mask, reduction="none")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref(emissions, tags, mask, reduction="none"), rtol=1e-5, atol=1e-3)
    probs = ours.marginal_probabilities(emissions, mask)
    assert torch.isfinite(probs).all()


def test_forbidding_transition_parameters_match_torchcrf():
    """pytorch-crf users forbid a pair by setting its transition score to -10000; with confident emissions
    (a gap of 80 between tags at a position) the log-likelihood and its gradients must still match."""
    ref = torchcrf.CRF(3, batch_first=True)
    with torch.no_grad():
        for param in ref.parameters():
            param.zero_()
        ref.transitions[0, 2] = -10000.0
    ours = CRF(3, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    emissions = torch.tensor([[[80.0, 0.0, 0.0], [0.0, 0.0, 80.0]]])
    tags = torch.tensor([[1, 2]])
    # Paths scoring 80: [0, 0], [0, 1], [1, 2], [2, 2]; so log p([1, 2]) = -log 4 (up to e^-80 terms).
    torch.testing.assert_close(ref(emissions, tags).item(), -math.log(4), rtol=1e-5, atol=1e-5)
    em_ours = emissions.clone().requires_grad_(True)
    em_ref = emissions.clone().requires_grad_(True)
    got, want = ours(em_ours, tags), ref(em_ref, tags)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    want.backward()
    torch.testing.assert_close(em_ours.grad, em_ref.grad, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours.transitions.grad, ref.transitions.grad, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# Brute-force oracle


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch_first", [False, True])
def test_brute_force_oracle(seed, batch_first):
    num_tags = 3
    torch.manual_seed(seed)
    crf = CRF(num_tags, batch_first=batch_first).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    gen = torch.Generator().manual_seed(300 + seed)
    lengths = [4, 3, 1, 2]
    emissions = torch.randn(len(lengths), 4, num_tags, generator=gen, dtype=torch.float64)
    tags = torch.randint(num_tags, (len(lengths), 4), generator=gen)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    em_l, tags_l, mask_l = to_layout(batch_first, emissions, tags, mask)

    llh = crf(em_l, tags_l, mask_l, reduction="none")
    decoded = crf.decode(em_l, mask_l)
    padded = crf.decode_padded(em_l, mask_l)
    probs = crf.marginal_probabilities(em_l, mask_l)
    if not batch_first:
        padded, probs = padded.t(), probs.transpose(0, 1)
    start, end, trans = params64(crf)
    for b, length in enumerate(lengths):
        _, _, log_z, best, marginals = oracle(emissions[b, :length], start, end, trans)
        gold = path_score(emissions[b, :length], start, end, trans, tags[b, :length].tolist())
        torch.testing.assert_close(llh[b].item(), float(gold) - log_z, rtol=1e-10, atol=1e-10)
        # log Z alone: the log-likelihood of a path is its score minus log Z for every path.
        assert decoded[b] == best
        assert padded[b, :length].tolist() == best and (padded[b, length:] == -1).all()
        torch.testing.assert_close(probs[b, :length], marginals, rtol=1e-9, atol=1e-10)
        assert (probs[b, length:] == 0).all()


def test_brute_force_log_partition_via_all_paths():
    """Sum over every path of exp(log-likelihood) is 1: the normalizer covers exactly the path set."""
    crf = CRF(3, batch_first=True).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    emissions = torch.randn(1, 4, 3, dtype=torch.float64)
    paths = torch.tensor(list(itertools.product(range(3), repeat=4)))
    llh = crf(emissions.expand(len(paths), -1, -1), paths, reduction="none")
    torch.testing.assert_close(llh.exp().sum().item(), 1.0, rtol=1e-10, atol=1e-10)
    start, end, trans = params64(crf)
    _, _, log_z, _, _ = oracle(emissions[0], start, end, trans)
    gold = path_score(emissions[0], start, end, trans, paths[7].tolist())
    torch.testing.assert_close(llh[7].item(), float(gold) - log_z, rtol=1e-10, atol=1e-10)


# A 3-tag constraint set under which every length from 1 to 4 keeps at least one allowed path.
ALLOWED_START = [True, True, False]
ALLOWED_END = [True, False, True]
ALLOWED_TRANS = [
    [True, False, True],
    [True, True, False],
    [False, True, True],
]


def is_allowed_path(path):
    return (
        ALLOWED_START[path[0]] and ALLOWED_END[path[-1]] and all(ALLOWED_TRANS[a][b] for a, b in zip(path, path[1:]))
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch_first", [False, True])
def test_brute_force_oracle_with_constraints(seed, batch_first):
    num_tags = 3
    torch.manual_seed(seed)
    crf = CRF(num_tags, batch_first=batch_first).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_(0.0, 2.0)
    crf.set_constraints(ALLOWED_START, ALLOWED_END, ALLOWED_TRANS)
    gen = torch.Generator().manual_seed(400 + seed)
    lengths = [4, 2, 3, 1]
    emissions = 3 * torch.randn(len(lengths), 4, num_tags, generator=gen, dtype=torch.float64)
    tags = torch.randint(num_tags, (len(lengths), 4), generator=gen)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    em_l, tags_l, mask_l = to_layout(batch_first, emissions, tags, mask)

    llh = crf(em_l, tags_l, mask_l, reduction="none")
    decoded = crf.decode(em_l, mask_l)
    padded = crf.decode_padded(em_l, mask_l, pad_tag=-100)
    probs = crf.marginal_probabilities(em_l, mask_l)
    if not batch_first:
        padded, probs = padded.t(), probs.transpose(0, 1)
    start, end, trans = params64(crf)
    for b, length in enumerate(lengths):
        em = emissions[b, :length]
        _, _, log_z_all, _, _ = oracle(em, start, end, trans)
        _, _, _, best_allowed, marginals_allowed = oracle(em, start, end, trans, allowed=is_allowed_path)
        assert is_allowed_path(decoded[b])
        assert decoded[b] == best_allowed
        assert padded[b, :length].tolist() == best_allowed and (padded[b, length:] == -100).all()
        torch.testing.assert_close(probs[b, :length], marginals_allowed, rtol=1e-7, atol=1e-9)
        # The likelihood ignores the constraints.
        gold = path_score(em, start, end, trans, tags[b, :length].tolist())
        torch.testing.assert_close(llh[b].item(), float(gold) - log_z_all, rtol=1e-10, atol=1e-10)

    # Clearing the constraints gives back the unconstrained decode.
    crf.set_constraints(None, None, None)
    decoded_free = crf.decode(em_l, mask_l)
    for b, length in enumerate(lengths):
        _, _, _, best_all, _ = oracle(emissions[b, :length], start, end, trans)
        assert decoded_free[b] == best_all


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("constrained", [False, True])
def test_path_probability_brute_force(seed, temperature, constrained):
    """P(path) over the allowed paths at the temperature, for the Viterbi path and a random one; 1 for empty rows."""
    num_tags = 3
    torch.manual_seed(seed)
    crf = CRF(num_tags, batch_first=True)
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_(0.0, 2.0)
    if constrained:
        crf.set_constraints(ALLOWED_START, ALLOWED_END, ALLOWED_TRANS)
    crf.path_temperature = temperature
    gen = torch.Generator().manual_seed(500 + seed)
    lengths = [4, 2, 0, 1]
    emissions = 3 * torch.randn(len(lengths), 4, num_tags, generator=gen)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    best = crf.viterbi_packed(emissions, mask)
    start, end, trans = (t / temperature for t in params64(crf))
    allowed = is_allowed_path if constrained else None
    for tags in (best, torch.randint(num_tags, (len(lengths), 4), generator=gen)):
        probability = crf.path_probability_packed(emissions, tags, mask)
        assert probability.dtype == torch.float32 and probability[2] == 1.0
        for b, length in enumerate(lengths):
            if not length:
                continue
            em = emissions[b, :length].double() / temperature
            paths, scores, _, _, _ = oracle(em, start, end, trans, allowed=allowed)
            path = tuple(tags[b, :length].tolist())
            log_z = torch.logsumexp(torch.tensor(scores, dtype=torch.float64), 0).item()
            expected = math.exp(scores[paths.index(path)] - log_z) if path in paths else 0.0
            assert probability[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_path_probability_is_one_minus_the_mistakes():
    """Summed over every path, the probabilities make 1; a hotter CRF is less sure of its best path."""
    torch.manual_seed(4)
    crf = CRF(3, batch_first=True)
    emissions = torch.randn(1, 5, 3)
    mask = torch.ones(1, 5, dtype=torch.bool)
    paths = torch.tensor(list(itertools.product(range(3), repeat=5)))
    total = crf.path_probability_packed(emissions.expand(len(paths), -1, -1), paths, mask.expand(len(paths), -1))
    assert total.double().sum().item() == pytest.approx(1.0, abs=1e-5)
    best = crf.viterbi_packed(emissions, mask)
    cold = crf.path_probability_packed(emissions, best, mask).item()
    crf.temperature = 3.0  # the marginals' temperature: not the path's
    assert crf.path_probability_packed(emissions, best, mask).item() == cold
    crf.path_temperature = 3.0
    assert crf.path_probability_packed(emissions, best, mask).item() < cold


def test_constraints_change_the_decode():
    """Guard against a vacuous constrained-oracle test: the constraints must matter for these inputs."""
    crf = CRF(3, batch_first=True).double()
    with torch.no_grad():
        crf.start_transitions.zero_()
        crf.end_transitions.zero_()
        crf.transitions.zero_()
    emissions = torch.tensor([[[0.0, 0.0, 5.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0]]], dtype=torch.float64)
    assert crf.decode(emissions) == [[2, 1, 1]]
    crf.set_constraints(ALLOWED_START, ALLOWED_END, ALLOWED_TRANS)  # start 2 and 2->1 and end 1 forbidden
    best = crf.decode(emissions)[0]
    assert is_allowed_path(best)
    # Hand-checked: tag 2 cannot start and tag 1 cannot end, so the best allowed path takes the 5 at position 1
    # only: [1, 1, 0] (1 -> 1 and 1 -> 0 allowed) scores 5; [0, 1, .] is out (0 -> 1 forbidden).
    assert best == [1, 1, 0]


def test_constrained_marginals_with_confident_emissions():
    """Decoding constraints add -10000 to forbidden moves; a large emission gap (80) must not break the marginals.

    Tag 2 may not start a sentence nor follow tag 0. Emissions favour tag 0 then tag 2 by 80, so the allowed paths
    scoring 80 are [0, 0], [0, 1] and [1, 2] (the rest score 0 or are forbidden): marginals 2/3, 1/3, 0 at
    position 0 and 1/3 each at position 1, exactly as for a gap of 10.
    """
    crf = CRF(3, batch_first=True)
    with torch.no_grad():
        for param in crf.parameters():
            param.zero_()
    crf.set_constraints([True, True, False], None, [[True, True, False], [True, True, True], [True, True, True]])
    expected = torch.tensor([[2 / 3, 1 / 3, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    for gap in (10.0, 40.0, 80.0):
        emissions = torch.tensor([[[gap, 0.0, 0.0], [0.0, 0.0, gap]]])
        probs = crf.marginal_probabilities(emissions)[0]
        torch.testing.assert_close(probs, expected, rtol=0, atol=1e-4, msg=lambda m: f"gap {gap}: {m}")


def test_set_constraints_bad_shape():
    crf = CRF(3)
    with pytest.raises(ValueError, match=r"constraint table must have shape \(3,\), got \(2,\)"):
        crf.set_constraints([True, False])
    with pytest.raises(ValueError, match=r"constraint table must have shape \(3, 3\), got \(3,\)"):
        crf.set_constraints(None, None, [True, True, True])


# ----------------------------------------------------------------------------------------------------------------
# Viterbi ties: both strategies (back-pointers for small inputs, recomputed back-pointers for large ones) return
# pytorch-crf's path, ties included. Integer scores make ties common and every sum exact.


def viterbi_oracle(emissions, start, end, trans):
    """Best path of one (length, tags) sequence by enumeration, with the tie rule of Viterbi taking the first
    maximal index everywhere (pytorch-crf's): the lowest last tag, then the lowest tag before it, and so on.

    Returns (path, number of best paths).
    """
    length, num_tags = emissions.shape
    paths = torch.tensor(list(itertools.product(range(num_tags), repeat=length)))  # (paths, length)
    scores = start[paths[:, 0]] + end[paths[:, -1]] + emissions[torch.arange(length), paths].sum(1)  # (paths,)
    if length > 1:
        scores = scores + trans[paths[:, :-1], paths[:, 1:]].sum(1)
    winners = paths[scores == scores.max()].tolist()
    return min(winners, key=lambda path: path[::-1]), len(winners)


def integer_crf(num_tags, gen, low=-2, high=2):
    crf = CRF(num_tags, batch_first=True)
    with torch.no_grad():
        for param in crf.parameters():
            param.copy_(torch.randint(low, high + 1, param.shape, generator=gen).float())
    return crf


def viterbi_both_ways(crf, emissions, mask):
    """Packed input through each helper, as viterbi_packed would call them: back-pointers, recomputed, and the
    scans of a captured graph (run eagerly)."""
    start = (crf.start_transitions + crf.start_penalty).detach()
    transitions = (crf.transitions + crf.transition_penalty).detach()
    args = (start, crf.end_transitions.detach(), crf.end_penalty, transitions)
    return (
        _viterbi_back_pointers(emissions, mask, *args),
        _viterbi_recomputed(emissions, mask, *args),
        _viterbi_scan(emissions, mask, *args),
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("holes", [False, True])
def test_viterbi_ties_brute_force(seed, holes):
    num_tags = 3
    gen = torch.Generator().manual_seed(900 + seed)
    crf = integer_crf(num_tags, gen)
    emissions = torch.randint(-2, 3, (12, 5, num_tags), generator=gen).float()
    _, _, mask = random_batch(12, 5, num_tags, gen, holes=holes)
    start, end, trans = params64(crf)
    decoded = crf.decode(emissions, mask)
    p_em, _, p_mask = pack(emissions, torch.zeros(mask.shape, dtype=torch.long), mask)
    for best in viterbi_both_ways(crf, p_em, p_mask):
        for b in range(mask.size(0)):
            n = int(mask[b].sum())
            assert best[b, :n].tolist() == decoded[b]
            assert (best[b, n:] == best[b, n - 1]).all()  # past a row's end, its last tag
    ties = 0
    for b in range(mask.size(0)):
        want, winners = viterbi_oracle(emissions[b][mask[b]].double(), start, end, trans)
        assert decoded[b] == want, b
        ties += winners > 1
    assert ties >= 3, "the inputs must tie"
    if not holes:
        ref = torchcrf.CRF(num_tags, batch_first=True)
        ref.load_state_dict(crf.state_dict())
        assert ref.decode(emissions, mask) == decoded


@pytest.mark.parametrize("seed", range(3))
def test_viterbi_ties_brute_force_with_constraints(seed):
    """-10000 penalties in integer sums stay exact: ties among allowed paths break as without constraints."""
    gen = torch.Generator().manual_seed(950 + seed)
    crf = integer_crf(3, gen, -1, 1)
    crf.set_constraints(ALLOWED_START, ALLOWED_END, ALLOWED_TRANS)
    emissions = torch.randint(-1, 2, (10, 4, 3), generator=gen).float()
    _, _, mask = random_batch(10, 4, 3, gen)
    start = (crf.start_transitions + crf.start_penalty).detach().double()
    end = (crf.end_transitions + crf.end_penalty).detach().double()
    trans = (crf.transitions + crf.transition_penalty).detach().double()
    decoded = crf.decode(emissions, mask)
    for best in viterbi_both_ways(crf, emissions, mask):
        assert [best[b, : len(d)].tolist() for b, d in enumerate(decoded)] == decoded
    ties = 0
    for b in range(mask.size(0)):
        want, winners = viterbi_oracle(emissions[b][mask[b]].double(), start, end, trans)
        assert decoded[b] == want and is_allowed_path(want), b
        ties += winners > 1
    assert ties >= 2, "the inputs must tie"


@pytest.mark.parametrize("batch, num_tags", [(80, 9), (37, 41), (8, 41)])
@pytest.mark.parametrize("integer", [False, True])
def test_viterbi_strategies_agree_at_scale(batch, num_tags, integer):
    """Large enough for viterbi_packed to recompute back-pointers (batches of whole and padded groups of 16 rows);
    ragged, with an empty row and a full one."""
    assert batch >= VITERBI_MIN_RECOMPUTE_BATCH and batch * num_tags * num_tags >= VITERBI_MIN_RECOMPUTE_SUMS
    gen = torch.Generator().manual_seed(970 + batch)
    ours, ref = make_pair(num_tags, True, num_tags)
    if integer:
        ours = integer_crf(num_tags, gen)
        ref.load_state_dict(ours.state_dict())
        emissions = torch.randint(-3, 4, (batch, 30, num_tags), generator=gen).float()
    else:
        emissions = 3 * torch.randn(batch, 30, num_tags, generator=gen)
    _, _, mask = random_batch(batch, 30, num_tags, gen)
    decoded = ours.decode(emissions, mask)
    assert decoded == ref.decode(emissions, mask)
    packed_mask = mask.clone()
    packed_mask[5] = False  # an empty row: decodes to its first tag's argmax, like the back-pointers
    pointers, recomputed, scanned = viterbi_both_ways(ours, emissions, packed_mask)
    assert torch.equal(pointers, recomputed)
    assert torch.equal(scanned, pointers)
    assert torch.equal(ours.viterbi_packed(emissions, packed_mask), pointers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        scripted = torch.jit.script(ours)
    assert scripted.decode(emissions, mask) == decoded
    assert torch.equal(scripted.viterbi_packed(emissions, packed_mask), pointers)


@pytest.mark.parametrize("seq_len", [1, 2, 7])
def test_log_space_scans_equal_the_loops(seq_len):
    """The forward and backward recursions of a captured graph, run eagerly, against the loops: ragged rows, an
    empty row, a one-step chain."""
    gen = torch.Generator().manual_seed(40 + seq_len)
    crf = integer_crf(5, gen)
    emissions, _, mask = random_batch(6, seq_len, 5, gen, dtype=torch.float64)
    mask[2] = False
    start, end, trans = params64(crf)
    full = [False] * seq_len
    alphas = _log_space_forward_scan(emissions, mask, start, trans)
    betas = _log_space_backward_scan(emissions, mask, end, trans)
    assert alphas.shape == betas.shape == (seq_len, 6, 5)
    torch.testing.assert_close(alphas, _log_space_forward_scores(emissions, mask, full, start, trans))
    torch.testing.assert_close(betas, _log_space_backward_scores(emissions, mask, full, end, trans))


def test_scripted_crf_computes_what_the_eager_one_does():
    """TorchScript compiles the loops; the graph-capture scans stay out of it (pytorch-crf's CRF scripts too)."""
    gen = torch.Generator().manual_seed(5)
    crf = integer_crf(4, gen)
    emissions, tags, mask = random_batch(3, 6, 4, gen, holes=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        scripted = torch.jit.script(crf)
    torch.testing.assert_close(scripted(emissions, tags, mask), crf(emissions, tags, mask))
    assert scripted.decode(emissions, mask) == crf.decode(emissions, mask)
    torch.testing.assert_close(
        scripted.marginal_probabilities(emissions, mask), crf.marginal_probabilities(emissions, mask)
    )


def test_viterbi_dispatch_uses_the_documented_limits(monkeypatch):
    """viterbi() recomputes from exactly VITERBI_MIN_RECOMPUTE_BATCH rows and VITERBI_MIN_RECOMPUTE_SUMS sums on."""
    import crf_viterbi

    calls = []
    monkeypatch.setattr(crf_viterbi, "_viterbi_recomputed", lambda *args: calls.append("recomputed") or args[0])
    monkeypatch.setattr(crf_viterbi, "_viterbi_back_pointers", lambda *args: calls.append("pointers") or args[0])
    tags = 16
    rows = max(VITERBI_MIN_RECOMPUTE_BATCH, -(-VITERBI_MIN_RECOMPUTE_SUMS // (tags * tags)))
    for batch in (rows - 1, rows):
        emissions = torch.zeros(batch, 3, tags)
        crf_viterbi.viterbi(
            emissions, torch.ones(batch, 3, dtype=torch.bool), *([torch.zeros(tags)] * 3), torch.zeros(tags, tags)
        )
    assert calls == ["pointers", "recomputed"]


def test_viterbi_under_autograd():
    """The out= buffers of the recomputing strategy must not see tensors that require grad."""
    crf = CRF(41, batch_first=True)
    emissions = torch.randn(8, 6, 41, requires_grad=True)
    best = crf.viterbi_packed(emissions, torch.ones(8, 6, dtype=torch.bool))
    assert best.shape == (8, 6) and not best.requires_grad
    with torch.no_grad():
        assert torch.equal(crf.viterbi_packed(emissions, torch.ones(8, 6, dtype=torch.bool)), best)


# ----------------------------------------------------------------------------------------------------------------
# Masks with holes


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("batch_first", [False, True])
def test_holes_equal_packed_sequence(seed, batch_first):
    num_tags = 4
    ours, ref = make_pair(num_tags, True, seed)
    ours.batch_first = batch_first
    gen = torch.Generator().manual_seed(500 + seed)
    emissions, tags, mask = random_batch(6, 9, num_tags, gen, holes=True)
    mask[1] = False
    mask[1, 0] = True  # a row of length one
    mask[2] = True  # a row without holes
    assert ((mask[:, 1:] & ~mask[:, :-1]).any(1)).sum() >= 3, "the batch must have holes"
    tags_with_garbage = tags.masked_fill(~mask, -100)  # values at off positions must be ignored
    p_em, p_tags, p_mask = pack(emissions, tags, mask)

    em_l, tags_l, mask_l = to_layout(batch_first, emissions, tags_with_garbage, mask)
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            ours(em_l, tags_l, mask_l, reduction=reduction),
            ref(p_em, p_tags, p_mask, reduction=reduction),
            rtol=1e-5,
            atol=1e-6,
        )

    decoded = ours.decode(em_l, mask_l)
    assert decoded == ref.decode(p_em, p_mask)
    assert [len(d) for d in decoded] == mask.sum(1).tolist()

    for pad_tag in (-1, -100, 7):
        padded = ours.decode_padded(em_l, mask_l, pad_tag=pad_tag)
        assert padded.shape == mask_l.shape and padded.dtype == torch.long
        padded_bf = padded if batch_first else padded.t()
        for b in range(mask.size(0)):
            assert padded_bf[b][mask[b]].tolist() == decoded[b]
            assert (padded_bf[b][~mask[b]] == pad_tag).all()

    ours.batch_first = True
    packed_probs = ours.marginal_probabilities(p_em, p_mask)
    ours.batch_first = batch_first
    probs = ours.marginal_probabilities(em_l, mask_l)
    assert probs.shape == em_l.shape
    probs_bf = probs if batch_first else probs.transpose(0, 1)
    for b in range(mask.size(0)):
        n = int(mask[b].sum())
        torch.testing.assert_close(probs_bf[b][mask[b]], packed_probs[b, :n], rtol=1e-5, atol=1e-6)
        assert (probs_bf[b][~mask[b]] == 0).all()
        torch.testing.assert_close(probs_bf[b][mask[b]].sum(-1), torch.ones(n), rtol=0, atol=1e-5)


def test_holes_gradients_equal_packed():
    num_tags = 3
    ours, ref = make_pair(num_tags, True, 7)
    gen = torch.Generator().manual_seed(7)
    emissions, tags, mask = random_batch(4, 8, num_tags, gen, holes=True)
    p_em, p_tags, p_mask = pack(emissions, tags, mask)
    em = emissions.clone().requires_grad_(True)
    p_em = p_em.clone().requires_grad_(True)
    ours(em, tags, mask).backward()
    ref(p_em, p_tags, p_mask).backward()
    for b in range(4):
        n = int(mask[b].sum())
        torch.testing.assert_close(em.grad[b][mask[b]], p_em.grad[b, :n], rtol=0, atol=1e-5)
        assert (em.grad[b][~mask[b]] == 0).all()
    for name in ("start_transitions", "end_transitions", "transitions"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(ref, name).grad, rtol=0, atol=1e-4)


def test_holes_brute_force():
    """A hole-y mask scores exactly the path over the on positions (no transition across the hole is lost)."""
    crf = CRF(3, batch_first=True).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    emissions = torch.randn(1, 6, 3, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, False, False, True]])
    tags = torch.tensor([[2, 0, 1, 0, 0, 0]])
    start, end, trans = params64(crf)
    on = emissions[0, [0, 2, 5]]
    _, _, log_z, best, marginals = oracle(on, start, end, trans)
    gold = path_score(on, start, end, trans, [2, 1, 0])
    torch.testing.assert_close(crf(emissions, tags, mask).item(), float(gold) - log_z, rtol=1e-10, atol=1e-10)
    assert crf.decode(emissions, mask) == [best]
    torch.testing.assert_close(crf.marginal_probabilities(emissions, mask)[0, [0, 2, 5]], marginals)


# ----------------------------------------------------------------------------------------------------------------
# Error messages: identical to torchcrf's


def _error_message(fn):
    with pytest.raises(ValueError) as excinfo:
        fn()
    return str(excinfo.value)


def _error_cases(batch_first):
    # (name, callable taking a CRF with 5 tags)
    seq_shape = (3, 2) if not batch_first else (2, 3)
    em = torch.randn(*seq_shape, 5)
    tags = torch.zeros(seq_shape, dtype=torch.long)
    mask = torch.ones(seq_shape, dtype=torch.bool)
    first_off = mask.clone()
    if batch_first:
        first_off[1, 0] = False
    else:
        first_off[0, 1] = False
    return [
        ("forward emissions dim 2", lambda crf: crf(em[0], tags)),
        ("forward emissions dim 4", lambda crf: crf(em.unsqueeze(0), tags)),
        ("decode emissions dim 2", lambda crf: crf.decode(em[0])),
        ("forward last dim", lambda crf: crf(torch.randn(*seq_shape, 4), tags)),
        ("decode last dim", lambda crf: crf.decode(torch.randn(*seq_shape, 6))),
        ("tags shape", lambda crf: crf(em, tags[:, :1])),
        ("tags transposed", lambda crf: crf(em, tags.t())),
        ("forward mask shape", lambda crf: crf(em, tags, mask[:1])),
        ("decode mask shape", lambda crf: crf.decode(em, mask.t())),
        ("forward first timestep off", lambda crf: crf(em, tags, first_off)),
        ("decode first timestep off", lambda crf: crf.decode(em, first_off)),
        ("invalid reduction", lambda crf: crf(em, tags, mask, reduction="avg")),
        ("invalid reduction None", lambda crf: crf(em, tags, mask, reduction="mean ")),
    ]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("case", range(len(_error_cases(False))), ids=[c[0] for c in _error_cases(False)])
def test_error_messages_match_torchcrf(batch_first, case):
    name, call = _error_cases(batch_first)[case]
    ours_msg = _error_message(lambda: call(CRF(5, batch_first=batch_first)))
    ref_msg = _error_message(lambda: call(torchcrf.CRF(5, batch_first=batch_first)))
    assert ours_msg == ref_msg, name


@pytest.mark.parametrize("num_tags", [0, -1, -7])
def test_invalid_num_tags_matches_torchcrf(num_tags):
    ours_msg = _error_message(lambda: CRF(num_tags))
    ref_msg = _error_message(lambda: torchcrf.CRF(num_tags))
    assert ours_msg == ref_msg == f"invalid number of tags: {num_tags}"


def test_error_messages_exact_text():
    crf = CRF(5, batch_first=True)
    em = torch.randn(2, 3, 5)
    assert _error_message(lambda: crf(em[0], torch.zeros(2, 3, dtype=torch.long))) == (
        "emissions must have dimension of 3, got 2"
    )
    assert _error_message(lambda: crf.decode(torch.randn(2, 3, 4))) == (
        "expected last dimension of emissions is 5, got 4"
    )
    assert _error_message(lambda: crf(em, torch.zeros(3, 2, dtype=torch.long))) == (
        "the first two dimensions of emissions and tags must match, got (2, 3) and (3, 2)"
    )
    assert _error_message(lambda: crf.decode(em, torch.ones(2, 4, dtype=torch.bool))) == (
        "the first two dimensions of emissions and mask must match, got (2, 3) and (2, 4)"
    )
    assert _error_message(lambda: crf.decode(em, torch.tensor([[1, 1, 1], [0, 1, 1]], dtype=torch.bool))) == (
        "mask of the first timestep must all be on"
    )
    assert _error_message(lambda: crf(em, torch.zeros(2, 3, dtype=torch.long), reduction="max")) == (
        "invalid reduction: max"
    )


# ----------------------------------------------------------------------------------------------------------------
# TorchScript


@pytest.mark.parametrize("batch_first", [False, True])
def test_torchscript_matches_eager(batch_first):
    torch.manual_seed(11)
    crf = CRF(len(LABELS), batch_first=batch_first)
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    crf.set_constraints(*allowed_transitions(dict(enumerate(LABELS)), "BIO"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        scripted = torch.jit.script(crf)
    gen = torch.Generator().manual_seed(12)
    for holes in (False, True):
        emissions, tags, mask = to_layout(batch_first, *random_batch(5, 7, len(LABELS), gen, holes=holes))
        # Scripted code takes the log-space recursion, eager the rescaled matrix products: equal to rounding.
        for reduction in REDUCTIONS:
            torch.testing.assert_close(
                scripted(emissions, tags, mask, reduction), crf(emissions, tags, mask, reduction), rtol=1e-6, atol=1e-6
            )
        torch.testing.assert_close(scripted(emissions, tags), crf(emissions, tags), rtol=1e-6, atol=1e-6)
        assert scripted.decode(emissions, mask) == crf.decode(emissions, mask)
        assert scripted.decode(emissions, None) == crf.decode(emissions)
        assert torch.equal(scripted.decode_padded(emissions, mask, -100), crf.decode_padded(emissions, mask, -100))
        assert torch.equal(scripted.decode_padded(emissions, mask), crf.decode_padded(emissions, mask))
        torch.testing.assert_close(
            scripted.marginal_probabilities(emissions, mask),
            crf.marginal_probabilities(emissions, mask),
            rtol=0,
            atol=0,
        )
    with pytest.raises(Exception, match="mask of the first timestep must all be on"):
        bad = torch.ones(mask.shape, dtype=torch.bool)
        bad[0, 0] = False  # the first timestep of the first sequence, in either layout
        scripted.decode(emissions, bad)


# ----------------------------------------------------------------------------------------------------------------
# Constrained decoding never emits an illegal transition


@pytest.mark.parametrize("labels, scheme", [(LABELS, "BIO"), (BIOES_LABELS, "BIOES"), (LABELS, "IOB1")])
def test_constrained_decoding_is_always_legal(labels, scheme):
    num_tags = len(labels)
    start_ok, end_ok, trans_ok = allowed_transitions(dict(enumerate(labels)), scheme)
    start_ok_t = torch.tensor(start_ok)
    end_ok_t = torch.tensor(end_ok)
    trans_ok_t = torch.tensor(trans_ok)
    gen = torch.Generator().manual_seed(13)
    crf = CRF(num_tags, batch_first=True)
    crf.set_constraints(start_ok, end_ok, trans_ok)
    illegal_seen_unconstrained = 0
    for trial in range(30):
        with torch.no_grad():
            crf.transitions.copy_(3 * torch.randn(num_tags, num_tags, generator=gen))
            crf.start_transitions.copy_(3 * torch.randn(num_tags, generator=gen))
            crf.end_transitions.copy_(3 * torch.randn(num_tags, generator=gen))
            if trial % 2:  # make the forbidden moves attractive
                crf.transitions.add_(20.0 * (~trans_ok_t))
                crf.start_transitions.add_(20.0 * (~start_ok_t))
                crf.end_transitions.add_(20.0 * (~end_ok_t))
        emissions, _, mask = random_batch(16, 12, num_tags, gen, holes=bool(trial % 3 == 0))
        emissions = emissions * 5
        if trial % 5 == 0:  # huge emissions for tags that cannot open an entity at this position
            emissions = emissions + 100.0 * (~start_ok_t).float()
        for path in crf.decode(emissions, mask):
            assert start_ok[path[0]], (trial, path)
            assert end_ok[path[-1]], (trial, path)
            for a, b in zip(path, path[1:]):
                assert trans_ok[a][b], (trial, path)
        padded = crf.decode_padded(emissions, mask)
        for b, path in enumerate(crf.decode(emissions, mask)):
            assert padded[b][mask[b]].tolist() == path
        # Marginals put (almost) no mass on tags that cannot start a sentence.
        probs = crf.marginal_probabilities(emissions, mask)
        assert probs[:, 0][:, ~start_ok_t].max() < 1e-6

        # Same parameters without constraints: the test inputs do provoke illegal paths.
        free = CRF(num_tags, batch_first=True)
        free.load_state_dict(crf.state_dict())
        for path in free.decode(emissions, mask):
            legal = start_ok[path[0]] and end_ok[path[-1]] and all(trans_ok[a][b] for a, b in zip(path, path[1:]))
            illegal_seen_unconstrained += not legal
    assert illegal_seen_unconstrained > 0


# ----------------------------------------------------------------------------------------------------------------
# Packed API: empty rows


def test_log_likelihood_packed_empty_row():
    num_tags = 4
    ours, ref = make_pair(num_tags, True, 21)
    gen = torch.Generator().manual_seed(21)
    emissions, tags, mask = random_batch(3, 5, num_tags, gen)
    mask[1] = False  # row 1 is empty
    tags[1] = -100  # and holds garbage tags
    emissions = emissions.requires_grad_(True)
    llh = ours.log_likelihood_packed(emissions, tags, mask)
    assert llh.shape == (3,)
    assert llh[1].item() == 0.0
    keep = torch.tensor([0, 2])
    torch.testing.assert_close(
        llh[keep], ref(emissions.detach()[keep], tags[keep], mask[keep], reduction="none"), rtol=1e-5, atol=1e-6
    )
    llh.sum().backward()
    assert torch.isfinite(emissions.grad).all()
    assert (emissions.grad[1] == 0).all()
    for param in ours.parameters():
        assert torch.isfinite(param.grad).all()


def test_log_likelihood_packed_all_rows_empty():
    crf = CRF(3, batch_first=True)
    emissions = torch.randn(2, 4, 3, requires_grad=True)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    llh = crf.log_likelihood_packed(emissions, torch.zeros(2, 4, dtype=torch.long), mask)
    assert llh.tolist() == [0.0, 0.0]
    llh.sum().backward()
    assert (emissions.grad == 0).all()
    for param in crf.parameters():
        assert param.grad is None or torch.isfinite(param.grad).all()


def test_packed_viterbi_and_marginals_empty_row():
    crf = CRF(3, batch_first=True)
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, True, False], [False, False, False, False]])
    best = crf.viterbi_packed(emissions, mask)
    assert best.shape == (2, 4)
    assert best[0, :3].tolist() == crf.decode(emissions[:1], mask[:1])[0]
    probs = crf.marginals_packed(emissions, mask)
    assert torch.isfinite(probs).all()
    assert (probs[1] == 0).all() and (probs[0, 3] == 0).all()
    torch.testing.assert_close(probs[0, :3].sum(-1), torch.ones(3))


@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])
def test_gradients_match_torchcrf_at_any_score_scale(scale):
    # Large scores push the rescaled recursions into underflow; the log-space fallback must keep them exact.
    torch.manual_seed(21)
    ref = torchcrf.CRF(4, batch_first=True)
    with torch.no_grad():
        for param in ref.parameters():
            param.normal_(0, scale)
    ours = CRF(4, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    emissions = torch.randn(3, 6, 4) * scale
    tags = torch.randint(4, (3, 6))
    mask = torch.arange(6) < torch.tensor([[6], [4], [1]])
    e_ref = emissions.clone().requires_grad_(True)
    e_ours = emissions.clone().requires_grad_(True)
    ref(e_ref, tags, mask.to(torch.uint8)).backward()
    ours(e_ours, tags, mask).backward()
    torch.testing.assert_close(e_ours.grad, e_ref.grad, rtol=1e-4, atol=1e-4)
    for name in ("start_transitions", "end_transitions", "transitions"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(ref, name).grad, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# Differentiable log-marginals (distillation towards another CRF's posteriors)


@pytest.mark.parametrize("seed", range(3))
def test_log_marginals_brute_force(seed):
    """Unconstrained per-position posteriors equal the brute-force ones, whatever the constraints say."""
    torch.manual_seed(seed)
    crf = CRF(len(LABELS), batch_first=True).double()
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    crf.set_constraints(*allowed_transitions(dict(enumerate(LABELS)), "BIO"))  # must not matter
    lengths = [3, 1, 2]
    gen = torch.Generator().manual_seed(700 + seed)
    emissions = torch.randn(len(lengths), 3, len(LABELS), generator=gen, dtype=torch.float64)
    mask = torch.arange(3).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    log_probs = crf.log_marginals_packed(emissions, mask)
    start, end, trans = params64(crf)
    for b, length in enumerate(lengths):
        marginals = oracle(emissions[b, :length], start, end, trans)[4]
        torch.testing.assert_close(log_probs[b, :length].exp(), marginals, rtol=1e-9, atol=1e-12)


def test_log_marginals_gradients_reach_emissions_and_transitions():
    torch.manual_seed(0)
    crf = CRF(4, batch_first=True).double()
    emissions = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    target = torch.softmax(torch.randn(2, 5, 4, dtype=torch.float64), -1)
    loss = -(target * crf.log_marginals_packed(emissions, mask) * mask.unsqueeze(2)).sum()
    loss.backward()
    assert emissions.grad.abs().sum() > 0 and crf.transitions.grad.abs().sum() > 0
    assert (emissions.grad[1, 3:] == 0).all()  # positions past a row's end have no say
    assert torch.autograd.gradcheck(
        lambda e: crf.log_marginals_packed(e, mask), (emissions.detach().clone().requires_grad_(),)
    )


# ----------------------------------------------------------------------------------------------------------------
# Reduced precision: whatever the autocast context and the emissions' dtype, the CRF computes in float32


def _bio_labels(num_tags):
    types = [f"T{i}" for i in range((num_tags - 1) // 2)]
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def _precision_case(num_tags, seq_len, constrained, seed=0):
    """A CRF with transitions of std 2 and std-4 emissions over ragged rows up to `seq_len` (the issue's setting)."""
    gen = torch.Generator().manual_seed(seed)
    crf = CRF(num_tags, batch_first=True)
    with torch.no_grad():
        for param in crf.parameters():
            param.copy_(2 * torch.randn(param.shape, generator=gen))
    if constrained:
        crf.set_constraints(*allowed_transitions(dict(enumerate(_bio_labels(num_tags))), "BIO"))
    emissions, tags, mask = random_batch(4, seq_len, num_tags, gen)
    return crf, 4 * emissions, tags, mask


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("num_tags, seq_len", [(9, 512), (41, 512), (41, 3), (9, 1)])
@pytest.mark.parametrize("device_dtype", [torch.bfloat16, torch.float16])
def test_autocast_leaves_the_crf_exact(num_tags, seq_len, constrained, device_dtype):
    """Under CPU autocast the likelihood, the paths and the marginals are the float32 ones."""
    crf, emissions, tags, mask = _precision_case(num_tags, seq_len, constrained)
    nll = -crf(emissions, tags, mask, reduction="none")
    paths = crf.decode(emissions, mask)
    probs = crf.marginal_probabilities(emissions, mask)
    log_probs = crf.log_marginals_packed(emissions, mask)
    with torch.autocast("cpu", dtype=device_dtype):
        assert torch.allclose(-crf(emissions, tags, mask, reduction="none"), nll, rtol=1e-6, atol=0)
        assert crf.decode(emissions, mask) == paths
        assert torch.allclose(crf.marginal_probabilities(emissions, mask), probs, rtol=0, atol=1e-6)
        assert torch.allclose(crf.log_marginals_packed(emissions, mask), log_probs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("num_tags", [9, 41])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_emissions_score_as_their_float32_values(num_tags, dtype):
    """bf16/fp16 emissions (a model in reduced precision) give the float32 result of the same values, in float32,
    and a finite gradient of their own dtype, under autocast or not."""
    crf, emissions, tags, mask = _precision_case(num_tags, 512, constrained=False, seed=1)
    low = emissions.to(dtype).requires_grad_(True)
    same_values = low.detach().float().requires_grad_(True)
    expected = crf(same_values, tags, mask, reduction="none")
    expected.sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = crf(low, tags, mask, reduction="none")
        got.sum().backward()  # a backward pass called inside the block, as users write it
    assert got.dtype == torch.float32
    assert torch.allclose(got, expected, rtol=1e-6, atol=0)
    assert low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()
    assert torch.allclose(low.grad.float(), same_values.grad.to(dtype).float())
    assert crf.decode(low, mask) == crf.decode(same_values, mask)
    assert crf.marginal_probabilities(low, mask).dtype == dtype


def test_a_crf_kept_in_bfloat16_computes_in_float32():
    """`model.to(torch.bfloat16)` also rounds the CRF's scores: it then scores as a float32 CRF of those values."""
    crf, emissions, tags, mask = _precision_case(9, 64, constrained=True, seed=2)
    low = CRF(9, batch_first=True)
    low.load_state_dict(crf.state_dict())
    low.set_constraints(*allowed_transitions(dict(enumerate(_bio_labels(9))), "BIO"))
    low = low.to(torch.bfloat16)
    rounded = CRF(9, batch_first=True)
    rounded.load_state_dict({k: v.float() for k, v in low.state_dict().items()})
    rounded.set_constraints(*allowed_transitions(dict(enumerate(_bio_labels(9))), "BIO"))
    assert torch.allclose(
        low(emissions, tags, mask, reduction="none"), rounded(emissions, tags, mask, reduction="none")
    )
    assert low.decode(emissions, mask) == rounded.decode(emissions, mask)
    assert torch.allclose(low.marginal_probabilities(emissions, mask), rounded.marginal_probabilities(emissions, mask))
