"""Tests for BertCrfForTokenClassification on a tiny random BERT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchcrf
from transformers import BertConfig, BertModel

from bertcrf import shipping
from configuration_bert_crf import BertCrfConfig, allowed_transitions
from conftest import ID2LABEL, LABEL2ID, LABELS, REPO_ROOT, TINY_BERT_KWARGS, build_tiny_model, elsewhere, pack
from modeling_bert_crf import FORBIDDEN_SCORE, BertCrfForTokenClassification, CrfTokenClassifierOutput


NUM_LABELS = len(LABELS)
CLS, SEP, PAD = 2, 3, 0
BIO_START, BIO_END, BIO_TRANS = allowed_transitions(dict(ID2LABEL), "BIO")


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def randomize_crf(model, seed=0, scale=1.0):
    """Give the CRF transition scores that matter (the default init is within +-0.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.crf.parameters():
            param.copy_(scale * torch.randn(param.shape, generator=gen))
    return model


def make_batch(seed=0, lengths=(10, 7, 5), seq_len=10, holes=((3, 6), (2,), ())):
    """Right-padded [CLS] w ... w [SEP] [PAD]... rows with labels -100 at [CLS], [SEP], padding and at the given
    "continuation sub-token" positions (holes in the chain)."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    input_ids = torch.randint(5, TINY_BERT_KWARGS["vocab_size"], (batch, seq_len), generator=gen)
    attention_mask = torch.zeros(batch, seq_len, dtype=torch.long)
    labels = torch.randint(NUM_LABELS, (batch, seq_len), generator=gen)
    for b, length in enumerate(lengths):
        input_ids[b, 0] = CLS
        input_ids[b, length - 1] = SEP
        input_ids[b, length:] = PAD
        attention_mask[b, :length] = 1
        labels[b, 0] = -100
        labels[b, length - 1 :] = -100
        for position in holes[b]:
            assert 0 < position < length - 1
            labels[b, position] = -100
    return input_ids, attention_mask, labels


def reference_crf(model, constrained=False):
    """torchcrf.CRF holding the model's CRF parameters (plus its decoding penalties if `constrained`)."""
    ref = torchcrf.CRF(NUM_LABELS, batch_first=True)
    ref.load_state_dict(model.crf.state_dict(), strict=True)
    if constrained:
        with torch.no_grad():
            ref.start_transitions.add_(model.crf.start_penalty)
            ref.end_transitions.add_(model.crf.end_penalty)
            ref.transitions.add_(model.crf.transition_penalty)
    return ref


def reference_predictions(ref, logits, chain):
    """torchcrf Viterbi over the hand-packed chain positions, scattered back with -100 elsewhere."""
    p_em, _, p_mask = pack(logits, torch.zeros(chain.shape, dtype=torch.long), chain)
    expected = torch.full(chain.shape, -100, dtype=torch.long)
    for b in range(chain.size(0)):
        if not chain[b].any():
            continue
        path = ref.decode(p_em[b : b + 1, : int(chain[b].sum())])[0]
        expected[b][chain[b]] = torch.tensor(path)
    return expected


def is_legal_bio(path):
    return BIO_START[path[0]] and BIO_END[path[-1]] and all(BIO_TRANS[a][b] for a, b in zip(path, path[1:]))


# ----------------------------------------------------------------------------------------------------------------
# Loss and predictions against torchcrf on the hand-packed chain


@pytest.mark.parametrize("reduction", ["mean", "sum", "token_mean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_torchcrf_on_packed_chain(reduction, seed):
    model = randomize_crf(build_tiny_model(seed, loss_reduction=reduction), seed)
    input_ids, attention_mask, labels = make_batch(seed)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert isinstance(out, CrfTokenClassifierOutput)
    assert out.logits.shape == (3, 10, NUM_LABELS)

    chain = labels != -100
    p_em, p_tags, p_mask = pack(out.logits.detach(), labels, chain)
    assert (p_mask.sum(1) == torch.tensor([6, 4, 3])).all()  # 10-2-2, 7-2-1, 5-2 labelled words
    llh = reference_crf(model)(p_em, p_tags, p_mask, reduction="none")
    expected = {
        "mean": -llh.mean(),
        "sum": -llh.sum(),
        "token_mean": -llh.sum() / chain.sum(),
    }[reduction]
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_predictions_match_torchcrf_on_packed_chain(seed):
    input_ids, attention_mask, labels = make_batch(seed)
    chain = labels != -100

    free = randomize_crf(build_tiny_model(seed, constrain_decoding=False), seed, scale=3.0)
    assert (free.crf.transition_penalty == 0).all()
    out = free(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert torch.equal(out.predictions, reference_predictions(reference_crf(free), out.logits.detach(), chain))

    constrained = randomize_crf(build_tiny_model(seed), seed, scale=3.0)
    out_c = constrained(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(out_c.logits, out.logits, rtol=0, atol=0)
    torch.testing.assert_close(out_c.loss, out.loss, rtol=0, atol=0)  # the likelihood is unconstrained
    expected = reference_predictions(reference_crf(constrained, constrained=True), out_c.logits.detach(), chain)
    assert torch.equal(out_c.predictions, expected)
    for b in range(chain.size(0)):
        assert is_legal_bio(out_c.predictions[b][chain[b]].tolist())


def test_constrained_predictions_always_legal():
    model = randomize_crf(build_tiny_model(3), 3, scale=4.0)
    with torch.no_grad():  # make the forbidden moves attractive
        model.crf.transitions.add_(10.0 * ~torch.tensor(BIO_TRANS))
        model.crf.start_transitions.add_(10.0 * ~torch.tensor(BIO_START))
    illegal_free = 0
    free = build_tiny_model(3, constrain_decoding=False)
    free.load_state_dict(model.state_dict())
    for seed in range(5):
        input_ids, attention_mask, _ = make_batch(seed, lengths=(10, 9, 8, 3), holes=((), (), (), ()))
        predictions = model(input_ids=input_ids, attention_mask=attention_mask).predictions
        free_predictions = free(input_ids=input_ids, attention_mask=attention_mask).predictions
        for b in range(predictions.size(0)):
            on = predictions[b] != -100
            assert is_legal_bio(predictions[b][on].tolist())
            illegal_free += not is_legal_bio(free_predictions[b][on].tolist())
    assert illegal_free > 0


# ----------------------------------------------------------------------------------------------------------------
# Rows without labels


@pytest.mark.parametrize("reduction", ["mean", "sum", "token_mean"])
def test_empty_row_adds_nothing(reduction):
    model = randomize_crf(build_tiny_model(4, loss_reduction=reduction), 4)
    input_ids, attention_mask, labels = make_batch(4, lengths=(8, 6), holes=((2,), ()))
    labels[1] = -100  # row 1 has tokens but no labelled position
    out_both = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out_a = model(input_ids=input_ids[:1], attention_mask=attention_mask[:1], labels=labels[:1])
    assert torch.isfinite(out_both.loss)
    # "mean" is over sentences that have labels, so the empty row changes none of the three reductions.
    torch.testing.assert_close(out_both.loss, out_a.loss, rtol=1e-5, atol=1e-6)
    assert (out_both.predictions[1] == -100).all()
    assert torch.equal(out_both.predictions[0], out_a.predictions[0])
    model.zero_grad()
    out_both.loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name


def test_empty_row_first_and_in_middle():
    model = randomize_crf(build_tiny_model(5, loss_reduction="sum"), 5)
    input_ids, attention_mask, labels = make_batch(5, lengths=(6, 9, 7), holes=((), (4,), (1,)))
    labels[0] = -100
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    parts = [
        model(input_ids=input_ids[b : b + 1], attention_mask=attention_mask[b : b + 1], labels=labels[b : b + 1]).loss
        for b in (1, 2)
    ]
    torch.testing.assert_close(out.loss, parts[0] + parts[1], rtol=1e-5, atol=1e-5)


def test_all_rows_empty():
    model = build_tiny_model(6)
    input_ids, attention_mask, labels = make_batch(6)
    labels[:] = -100
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.loss.item() == 0.0
    assert (out.predictions == -100).all()
    out.loss.backward()  # the graph is intact
    assert model.classifier.weight.grad is not None
    assert (model.classifier.weight.grad == 0).all()


# ----------------------------------------------------------------------------------------------------------------
# Which positions get predictions


def _assert_predictions_on(predictions, chain):
    assert predictions.dtype == torch.long
    assert (predictions[~chain] == -100).all()
    on = predictions[chain]
    assert ((on >= 0) & (on < NUM_LABELS)).all()


def test_predictions_with_labels_follow_labels():
    model = build_tiny_model(7)
    input_ids, attention_mask, labels = make_batch(7)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    _assert_predictions_on(out.predictions, labels != -100)


def test_word_start_mask_used_without_labels():
    model = randomize_crf(build_tiny_model(8), 8)
    input_ids, attention_mask, _ = make_batch(8)
    word_start = torch.zeros_like(attention_mask)
    word_start[0, [1, 2, 5, 8]] = 1
    word_start[1, [1, 3, 4]] = 1
    word_start[1, 8] = 1  # padding: must stay out of the chain
    word_start[2, [2, 3]] = 1
    chain = word_start.bool() & attention_mask.bool()
    out = model(input_ids=input_ids, attention_mask=attention_mask, word_start_mask=word_start)
    assert out.loss is None
    _assert_predictions_on(out.predictions, chain)
    expected = reference_predictions(reference_crf(model, constrained=True), out.logits, chain)
    assert torch.equal(out.predictions, expected)
    # The same positions given as labels give the same predictions.
    labels = torch.where(chain, torch.zeros_like(word_start), torch.full_like(word_start, -100))
    assert torch.equal(model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).predictions, expected)


def test_labels_take_precedence_over_word_start_mask():
    model = build_tiny_model(9)
    input_ids, attention_mask, labels = make_batch(9)
    word_start = attention_mask.clone()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, word_start_mask=word_start)
    _assert_predictions_on(out.predictions, labels != -100)


def test_special_token_ids_used_without_labels():
    model = build_tiny_model(10, special_token_ids=[PAD, CLS, SEP])
    input_ids, attention_mask, _ = make_batch(10)
    input_ids[0, 4] = SEP  # a sentence-pair separator in the middle is special too
    chain = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor([PAD, CLS, SEP]))
    assert not chain[0, 4] and chain[0, 5]
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    _assert_predictions_on(out.predictions, chain)


def test_first_and_last_attended_excluded_by_default():
    model = build_tiny_model(11)
    assert model.config.special_token_ids is None
    input_ids, attention_mask, _ = make_batch(11)
    input_ids[0, 4] = SEP  # not special without special_token_ids: stays in the chain
    chain = attention_mask.bool().clone()
    for b in range(chain.size(0)):
        attended = attention_mask[b].nonzero().flatten()
        chain[b, attended[0]] = False
        chain[b, attended[-1]] = False
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    _assert_predictions_on(out.predictions, chain)
    # Without an attention mask every position is attended: the first and the last are left out.
    out = model(input_ids=input_ids)
    full = torch.ones_like(chain)
    full[:, 0] = False
    full[:, -1] = False
    _assert_predictions_on(out.predictions, full)


def test_first_and_last_attended_excluded_with_left_padding():
    """Left-padded rows: the first attended position ([CLS]) is not position 0 and must still be left out."""
    model = build_tiny_model(12)
    seq_len, lengths = 8, (8, 5)
    input_ids = torch.randint(5, 100, (2, seq_len))
    attention_mask = torch.zeros(2, seq_len, dtype=torch.long)
    for b, length in enumerate(lengths):
        attention_mask[b, seq_len - length :] = 1
        input_ids[b, : seq_len - length] = PAD
        input_ids[b, seq_len - length] = CLS
        input_ids[b, -1] = SEP
    chain = attention_mask.bool().clone()
    chain[0, [0, 7]] = False
    chain[1, [3, 7]] = False  # row 1: [PAD] [PAD] [PAD] [CLS] w w w [SEP]
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    assert out.predictions[1, 3].item() == -100, f"[CLS] of a left-padded row got a tag: {out.predictions[1].tolist()}"
    _assert_predictions_on(out.predictions, chain)


def test_predictions_in_train_mode():
    model = build_tiny_model(13).train()
    input_ids, attention_mask, labels = make_batch(13)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.loss is not None and out.predictions is None  # no Viterbi while training with labels
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    assert out.loss is None and out.predictions is not None


def test_decode_method_matches_forward():
    model = randomize_crf(build_tiny_model(14), 14)
    input_ids, attention_mask, labels = make_batch(14)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert torch.equal(model.decode(out.logits, labels != -100), out.predictions)


# ----------------------------------------------------------------------------------------------------------------
# Gradients and freezing


def test_gradients_reach_every_part():
    model = randomize_crf(build_tiny_model(15), 15)
    input_ids, attention_mask, labels = make_batch(15)
    model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    parts = {
        "bert.embeddings.word_embeddings.weight": model.bert.embeddings.word_embeddings.weight,
        "bert.embeddings.position_embeddings.weight": model.bert.embeddings.position_embeddings.weight,
        "bert.encoder.layer.0.attention.self.query.weight": model.bert.encoder.layer[0].attention.self.query.weight,
        "bert.encoder.layer.1.output.dense.weight": model.bert.encoder.layer[1].output.dense.weight,
        "classifier.weight": model.classifier.weight,
        "classifier.bias": model.classifier.bias,
        "crf.transitions": model.crf.transitions,
        "crf.start_transitions": model.crf.start_transitions,
        "crf.end_transitions": model.crf.end_transitions,
    }
    for name, param in parts.items():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def _frozen_names(model):
    return {name for name, param in model.named_parameters() if not param.requires_grad}


def _is_body_low(name, num_layers):
    if name.startswith("bert.embeddings."):
        return True
    return any(name.startswith(f"bert.encoder.layer.{i}.") for i in range(num_layers))


def test_freeze_encoder_layers():
    model = build_tiny_model(16)
    names = {name for name, _ in model.named_parameters()}
    model.freeze_encoder_layers(1)
    frozen = _frozen_names(model)
    assert frozen == {name for name in names if _is_body_low(name, 1)}
    assert any(name.startswith("bert.encoder.layer.0.") for name in frozen)
    assert not any(name.startswith("bert.encoder.layer.1.") for name in frozen)

    input_ids, attention_mask, labels = make_batch(16)
    model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    for name, param in model.named_parameters():
        if name in frozen:
            assert param.grad is None, name
    assert model.bert.encoder.layer[1].attention.self.key.weight.grad is not None
    assert model.crf.transitions.grad is not None

    model.freeze_encoder_layers(2)
    assert _frozen_names(model) == {name for name in names if _is_body_low(name, 2)}
    model.freeze_encoder_layers(1)  # does not accumulate: layer 1 trainable again
    assert _frozen_names(model) == frozen
    model.freeze_encoder_layers(0)
    assert _frozen_names(model) == set()
    model.freeze_encoder_layers(2)
    model.unfreeze_encoder()
    assert _frozen_names(model) == set()


@pytest.mark.parametrize("bad", [-1, 3, 1.5, "1", None])
def test_freeze_encoder_layers_out_of_range(bad):
    model = build_tiny_model(17)
    model.freeze_encoder_layers(1)
    before = _frozen_names(model)
    with pytest.raises(ValueError, match=f"num_layers must be an int between 0 and 2, got {bad!r}"):
        model.freeze_encoder_layers(bad)
    assert _frozen_names(model) == before  # a rejected call changes nothing


# ----------------------------------------------------------------------------------------------------------------
# Output formats


def test_return_dict_false_gives_tuple():
    model = build_tiny_model(18)
    input_ids, attention_mask, labels = make_batch(18)
    as_dict = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    as_tuple = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, return_dict=False)
    assert type(as_tuple) is tuple and len(as_tuple) == 3
    torch.testing.assert_close(as_tuple[0], as_dict.loss, rtol=0, atol=0)
    torch.testing.assert_close(as_tuple[1], as_dict.logits, rtol=0, atol=0)
    assert torch.equal(as_tuple[2], as_dict.predictions)

    no_labels = model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)
    assert type(no_labels) is tuple and len(no_labels) == 2
    torch.testing.assert_close(no_labels[0], as_dict.logits, rtol=0, atol=0)

    model.config.return_dict = False
    from_config = model(input_ids=input_ids, attention_mask=attention_mask)
    assert type(from_config) is tuple and len(from_config) == 2
    assert isinstance(model(input_ids=input_ids, return_dict=True), CrfTokenClassifierOutput)


def test_output_hidden_states():
    model = build_tiny_model(19)
    input_ids, attention_mask, _ = make_batch(19)
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    assert len(out.hidden_states) == TINY_BERT_KWARGS["num_hidden_layers"] + 1
    for hidden in out.hidden_states:
        assert hidden.shape == (3, 10, TINY_BERT_KWARGS["hidden_size"])
    # In eval mode the logits are the classifier applied to the last hidden state.
    torch.testing.assert_close(model.classifier(out.hidden_states[-1]), out.logits)
    assert model(input_ids=input_ids, attention_mask=attention_mask).hidden_states is None


def test_output_attentions():
    # sdpa attention in transformers returns no attention maps (for BertModel too); eager does.
    model = build_tiny_model(20, attn_implementation="eager")
    input_ids, attention_mask, _ = make_batch(20)
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    assert len(out.attentions) == TINY_BERT_KWARGS["num_hidden_layers"]
    heads = TINY_BERT_KWARGS["num_attention_heads"]
    for attention in out.attentions:
        assert attention.shape == (3, heads, 10, 10)
        torch.testing.assert_close(attention.sum(-1), torch.ones(3, heads, 10))
        assert (attention[1, :, :, 7:] < 1e-6).all()  # padding of row 1 gets no attention
    assert model(input_ids=input_ids, attention_mask=attention_mask).attentions is None


def test_inputs_embeds():
    model = build_tiny_model(21)
    input_ids, attention_mask, labels = make_batch(21)
    by_ids = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    embeds = model.bert.embeddings.word_embeddings(input_ids)
    by_embeds = model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(by_embeds.logits, by_ids.logits)
    torch.testing.assert_close(by_embeds.loss, by_ids.loss)
    assert torch.equal(by_embeds.predictions, by_ids.predictions)


# ----------------------------------------------------------------------------------------------------------------
# Saving and loading


def test_save_load_round_trip(tmp_path):
    model = randomize_crf(build_tiny_model(22, tag_scheme="BIO", loss_reduction="token_mean"), 22)
    input_ids, attention_mask, labels = make_batch(22)
    before = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    model.save_pretrained(tmp_path)
    loaded = BertCrfForTokenClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.config, BertCrfConfig)
    assert loaded.config.loss_reduction == "token_mean" and loaded.config.tag_scheme == "BIO"
    assert loaded.config.id2label == ID2LABEL

    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    for key in state:
        assert torch.equal(state[key], loaded_state[key]), key

    # The decoding penalties are not saved; they are rebuilt from the config.
    assert (loaded.crf.transition_penalty != 0).any()
    assert loaded.crf.transition_penalty[LABEL2ID["O"], LABEL2ID["I-PER"]].item() == FORBIDDEN_SCORE
    assert loaded.crf.start_penalty[LABEL2ID["I-LOC"]].item() == FORBIDDEN_SCORE
    assert loaded.crf.transition_penalty[LABEL2ID["B-PER"], LABEL2ID["I-PER"]].item() == 0.0
    for name in ("start_penalty", "end_penalty", "transition_penalty"):
        assert torch.equal(getattr(loaded.crf, name), getattr(model.crf, name)), name

    after = loaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert torch.equal(after.logits, before.logits)
    assert torch.equal(after.predictions, before.predictions)
    assert torch.equal(after.loss, before.loss)


def test_save_load_unconstrained(tmp_path):
    model = build_tiny_model(23, constrain_decoding=False)
    model.save_pretrained(tmp_path)
    loaded = BertCrfForTokenClassification.from_pretrained(tmp_path)
    assert loaded.config.constrain_decoding is False
    assert (loaded.crf.transition_penalty == 0).all() and (loaded.crf.start_penalty == 0).all()


def test_apply_decoding_constraints_after_config_change():
    model = build_tiny_model(24, constrain_decoding=False)
    assert (model.crf.transition_penalty == 0).all()
    model.config.constrain_decoding = True
    model.apply_decoding_constraints()
    start, end, trans = allowed_transitions(dict(ID2LABEL), "BIO")
    expected = torch.where(torch.tensor(trans), 0.0, FORBIDDEN_SCORE)
    assert torch.equal(model.crf.transition_penalty, expected)
    model.config.tag_scheme = "IOB1"
    model.apply_decoding_constraints()
    assert model.crf.start_penalty[LABEL2ID["B-PER"]].item() == FORBIDDEN_SCORE
    assert model.crf.start_penalty[LABEL2ID["I-PER"]].item() == 0.0


def test_load_plain_bert_checkpoint(tmp_path):
    torch.manual_seed(25)
    bert = BertModel(BertConfig(**TINY_BERT_KWARGS)).eval()  # with a pooler, which the CRF model drops
    bert.save_pretrained(tmp_path)
    model = BertCrfForTokenClassification.from_pretrained(
        tmp_path, num_labels=NUM_LABELS, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID)
    )
    assert model.config.num_labels == NUM_LABELS
    assert model.config.id2label == ID2LABEL and model.config.label2id == LABEL2ID
    body = {key: value for key, value in bert.state_dict().items() if not key.startswith("pooler.")}
    loaded_body = model.bert.state_dict()
    assert body.keys() == loaded_body.keys()
    for key, value in body.items():
        assert torch.equal(loaded_body[key], value), key
    # The head is freshly initialized.
    assert model.classifier.weight.shape == (NUM_LABELS, TINY_BERT_KWARGS["hidden_size"])
    for name, param in list(model.classifier.named_parameters()) + list(model.crf.named_parameters()):
        assert torch.isfinite(param).all(), name
    assert model.classifier.weight.abs().sum() > 0
    for param in model.crf.parameters():
        assert param.abs().max() <= 0.1 and param.abs().sum() > 0
    # BIO was detected from the labels, so decoding is constrained.
    assert model.crf.start_penalty[LABEL2ID["I-PER"]].item() == FORBIDDEN_SCORE
    input_ids, attention_mask, labels = make_batch(25)
    out = model.eval()(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()


# ----------------------------------------------------------------------------------------------------------------
# Remote code


SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import json
    import sys

    import torch

    folder, inputs_path, output_path, repo_root = sys.argv[1:5]
    assert importlib.util.find_spec("modeling_bert_crf") is None, "the repo's module is importable"
    assert importlib.util.find_spec("configuration_bert_crf") is None, "the repo's module is importable"

    from transformers import AutoModelForTokenClassification

    result = {}
    try:
        AutoModelForTokenClassification.from_pretrained(folder)
        result["untrusted_error"] = None
    except Exception as exc:  # noqa: BLE001 - the type is checked by the test
        result["untrusted_error"] = [type(exc).__name__, str(exc)]

    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
    with open(inputs_path) as handle:
        inputs = json.load(handle)
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(inputs["input_ids"]),
            attention_mask=torch.tensor(inputs["attention_mask"]),
        )
    result["model_module"] = type(model).__module__
    result["model_class"] = type(model).__name__
    result["config_class"] = type(model.config).__name__
    result["model_file"] = sys.modules[type(model).__module__].__file__
    torch.save(
        {"logits": out.logits, "predictions": out.predictions, "transition_penalty": model.crf.transition_penalty},
        output_path,
    )
    with open(output_path + ".json", "w") as handle:
        json.dump(result, handle)
    """
)


def test_remote_code_round_trip(tmp_path, monkeypatch):
    # register_for_auto_class sets a class attribute; undo it after the test.
    monkeypatch.setattr(BertCrfForTokenClassification, "_auto_class", None, raising=False)
    monkeypatch.setattr(BertCrfConfig, "_auto_class", None, raising=False)

    model = randomize_crf(build_tiny_model(26), 26, scale=2.0)
    model.register_for_auto_class("AutoModelForTokenClassification")
    model.config.register_for_auto_class()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)

    # The model's file and every sibling it imports: the one list of what travels (bertcrf.shipping).
    assert {p.name for p in folder.glob("*.py")} == set(shipping.model_code(BertCrfForTokenClassification))
    config_json = json.loads((folder / "config.json").read_text())
    assert config_json["auto_map"] == {
        "AutoConfig": "configuration_bert_crf.BertCrfConfig",
        "AutoModel": "modeling_bert_crf.BertCrfForTokenClassification",
        "AutoModelForTokenClassification": "modeling_bert_crf.BertCrfForTokenClassification",
    }

    input_ids, attention_mask, _ = make_batch(26)
    inputs_path = tmp_path / "inputs.json"
    inputs_path.write_text(json.dumps({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()}))
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask)

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    script = workdir / "load_remote.py"
    script.write_text(elsewhere(SUBPROCESS_SCRIPT))
    output_path = tmp_path / "outputs.pt"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules_cache"),
        TRUST_REMOTE_CODE="false",
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(inputs_path), str(output_path), str(REPO_ROOT)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    result = json.loads((tmp_path / "outputs.pt.json").read_text())
    assert result["untrusted_error"] is not None, "loading custom code without trust_remote_code did not fail"
    assert result["untrusted_error"][0] == "ValueError"
    assert "trust_remote_code=True" in result["untrusted_error"][1]
    assert result["model_class"] == "BertCrfForTokenClassification"
    assert result["config_class"] == "BertCrfConfig"
    assert result["model_module"].startswith("transformers_modules.")
    assert str(tmp_path / "modules_cache") in result["model_file"]

    got = torch.load(output_path, weights_only=True)
    assert torch.equal(got["logits"], expected.logits)
    assert torch.equal(got["predictions"], expected.predictions)
    assert torch.equal(got["transition_penalty"], model.crf.transition_penalty)


# ----------------------------------------------------------------------------------------------------------------
# Lexicon features and the layer mix


LEXICON_TYPES = ["LOC", "PER"]


def lexicon_model(combination="input", seed=0, layer_mix=False):
    from ner_lexicon import Lexicon

    model = build_tiny_model(
        seed,
        lexicon_types=LEXICON_TYPES,
        lexicon_file="lexicon.tsv",
        lexicon_combination=combination,
        layer_mix=layer_mix,
    )
    model.lexicon = Lexicon([("北京", "LOC"), ("张三", "PER"), ("三", "PER")])
    return model


def random_bits(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2 ** (4 * len(LEXICON_TYPES)), shape, generator=gen)


def test_lexicon_feature_vectors_sum_the_vectors_of_the_bits_that_are_on():
    from modeling_encoder_crf import LexiconFeatures

    features = LexiconFeatures(6, 3)
    with torch.no_grad():
        features.weight.copy_(torch.randn(6, 3))
    bits = torch.tensor([[0, 1, 2, 5, 63, 40]])  # (1, 6)
    out = features(bits)  # (1, 6, 3)
    for position, value in enumerate(bits[0].tolist()):
        expected = sum((features.weight[k] for k in range(6) if value >> k & 1), torch.zeros(3))
        torch.testing.assert_close(out[0, position], expected)


@pytest.mark.parametrize("combination", ["input", "emissions"])
def test_a_new_lexicon_model_computes_what_the_model_without_one_does(combination):
    plain = build_tiny_model(0)
    model = lexicon_model(combination, seed=0)
    ids = torch.randint(5, 100, (2, 9))
    bits = random_bits((2, 9))
    # The lexicon vectors start at zero: same emissions as the plain model, with or without features.
    torch.testing.assert_close(model.emissions(ids, lexicon_features=bits), plain.emissions(ids))
    torch.testing.assert_close(model.emissions(ids), plain.emissions(ids))


def test_lexicon_features_enter_the_emissions_as_a_learned_bias():
    model = lexicon_model("emissions")
    with torch.no_grad():
        model.lexicon_embeddings.weight.normal_()
    ids, bits = torch.randint(5, 100, (2, 9)), random_bits((2, 9))
    expected = model.emissions(ids) + model.lexicon_embeddings(bits)
    torch.testing.assert_close(model.emissions(ids, lexicon_features=bits), expected)
    assert model.lexicon_embeddings.weight.shape == (8, NUM_LABELS)


def test_lexicon_features_enter_the_input_embeddings():
    model = lexicon_model("input")
    with torch.no_grad():
        model.lexicon_embeddings.weight.normal_()
    ids, bits = torch.randint(5, 100, (2, 9)), random_bits((2, 9))
    embeds = model.bert.embeddings.word_embeddings(ids) + model.lexicon_embeddings(bits)
    hidden = model.bert(inputs_embeds=embeds).last_hidden_state
    torch.testing.assert_close(model.emissions(ids, lexicon_features=bits), model.classifier(hidden))
    assert not torch.allclose(model.emissions(ids, lexicon_features=bits), model.emissions(ids))
    # The training forward pass uses the same emissions.
    out = model(ids, lexicon_features=bits, word_start_mask=torch.ones_like(ids))
    torch.testing.assert_close(out.logits, model.emissions(ids, lexicon_features=bits))


def test_layer_mix_starts_as_the_average_of_all_states_and_learns_weights():
    model = build_tiny_model(0, layer_mix=True)
    ids = torch.randint(5, 100, (2, 7))
    states = model.bert(ids, output_hidden_states=True).hidden_states
    assert model.layer_mix.weights.shape == (len(states),) == (TINY_BERT_KWARGS["num_hidden_layers"] + 1,)
    expected = model.classifier(torch.stack(states).mean(0))
    torch.testing.assert_close(model.emissions(ids), expected)
    with torch.no_grad():
        model.layer_mix.weights.copy_(torch.tensor([-1e4, -1e4, 0.0]))
        model.layer_mix.scale.fill_(2.0)
    torch.testing.assert_close(model.emissions(ids), model.classifier(2.0 * states[-1]))
    labels = torch.zeros_like(ids)
    model.train()
    model(ids, labels=labels).loss.backward()
    assert model.layer_mix.weights.grad is not None and model.layer_mix.scale.grad is not None


def test_lexicon_model_saves_and_loads_its_lexicon(tmp_path):
    model = lexicon_model("input", layer_mix=True)
    with torch.no_grad():
        model.lexicon_embeddings.weight.normal_()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "lexicon.tsv").read_text(encoding="utf-8") == "三\tPER\n北京\tLOC\n张三\tPER\n"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lexicon_types"] == LEXICON_TYPES and config["lexicon_file"] == "lexicon.tsv"
    loaded = BertCrfForTokenClassification.from_pretrained(tmp_path).eval()
    assert loaded.lexicon.words == model.lexicon.words
    ids, bits = torch.randint(5, 100, (2, 9)), random_bits((2, 9))
    torch.testing.assert_close(
        loaded.emissions(ids, lexicon_features=bits), model.emissions(ids, lexicon_features=bits)
    )
    (tmp_path / "lexicon.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"lexicon\.tsv not found: the checkpoint's config names"):
        BertCrfForTokenClassification.from_pretrained(tmp_path)


def test_a_model_without_lexicon_writes_none(tmp_path):
    build_tiny_model(0).save_pretrained(tmp_path)
    assert not (tmp_path / "lexicon.tsv").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lexicon_types"] is None and config["layer_mix"] is False
    assert BertCrfForTokenClassification.from_pretrained(tmp_path).lexicon is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lexicon_types=["PER", "PER"], lexicon_file="x"), "lexicon_types must be a list of distinct"),
        (dict(lexicon_types=[], lexicon_file="x"), "lexicon_types must be a list of distinct"),
        (dict(lexicon_types=[f"T{i}" for i in range(16)], lexicon_file="x"), "lexicon_types holds at most 15"),
        (dict(lexicon_types=["PER"]), "lexicon_file must name the lexicon's file"),
        (dict(lexicon_combination="concat"), "lexicon_combination must be one of"),
        (dict(layer_mix="yes"), "layer_mix must be a bool, got 'yes'"),
    ],
)
def test_bad_lexicon_and_layer_mix_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        BertCrfConfig(**overrides)


def test_automodel_loads_the_tagger_with_its_lexicon(tmp_path):
    """`AutoModel.from_pretrained(folder, trust_remote_code=True)`, the design's promised call, gives the CRF tagger
    (with its lexicon) in a fresh process, from the folder's own code."""
    model = lexicon_model("emissions")
    with torch.no_grad():
        model.lexicon_embeddings.weight.normal_()
    model.save_pretrained(tmp_path / "model")
    auto_map = json.loads((tmp_path / "model" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == auto_map["AutoModelForTokenClassification"]
    script = textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert type(model).__name__ == "BertCrfForTokenClassification", type(model)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        ids = torch.tensor([[2, 7, 8, 9, 3]])
        bits = torch.tensor([[0, 1, 2, 3, 0]])
        print(len(model.lexicon), model.emissions(ids, lexicon_features=bits).sum().item())
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    size, total = done.stdout.split()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    expected = model.emissions(ids, lexicon_features=torch.tensor([[0, 1, 2, 3, 0]])).sum().item()
    assert int(size) == 3 and float(total) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loading_in_reduced_precision_keeps_the_crf_in_float32(tmp_path, dtype):
    """`from_pretrained(..., dtype=bf16/fp16)` (transformers' convention) halves the encoder and keeps the CRF's
    scores exact: its paths are those of the float32 CRF on the reduced-precision emissions."""
    model = randomize_crf(build_tiny_model(22, tag_scheme="BIO"), 22)
    model.save_pretrained(tmp_path)
    loaded = BertCrfForTokenClassification.from_pretrained(tmp_path, dtype=dtype).eval()
    assert loaded.classifier.weight.dtype == dtype
    assert {p.dtype for p in loaded.crf.parameters()} == {torch.float32}
    assert {b.dtype for b in loaded.crf.buffers()} == {torch.float32}  # the decoding penalties, exact
    for name, param in loaded.crf.named_parameters():
        assert torch.equal(param, getattr(model.crf, name)), name
    input_ids, attention_mask, _ = make_batch(22)
    out = loaded(input_ids=input_ids, attention_mask=attention_mask)
    assert out.logits.dtype == dtype
    model.eval()
    expected = model.decode(out.logits.float(), loaded.chain_mask(input_ids, attention_mask))
    assert torch.equal(out.predictions, expected)
