"""Every CRF tagger's whole forward (encoder, classifier, CRF loss and Viterbi) under torch.export and
torch.compile(fullgraph=True): the captured graph gives the eager loss and paths. Chains are ragged, with a hole
(a continuation sub-token inside a row) and a one-word row, so the graph-safe paths of modeling_crf (every step
masked, log-space sums, scans for a dynamic length) are exercised where they differ from the eager ones."""

from __future__ import annotations

import pytest
import torch

from bertcrf import crf_models
from configuration_bilstm_crf import BiLstmCrfConfig
from conftest import FAMILY_SOURCES, ID2LABEL, LABEL2ID, TINY_BERT_KWARGS
from modeling_bilstm_crf import BiLstmCrfForTokenClassification


FAMILIES = ["bert", *FAMILY_SOURCES]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles from scratch: every encoder family's tagger runs the one shared forward
    (EncoderCrfMixin.forward), and dynamo counts the recompiles of a code object across a process (8 at most)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def tiny_tagger(family: str) -> torch.nn.Module:
    """A tiny random CRF tagger of `family` ("bilstm" for the student), in eval mode."""
    labels = dict(id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
    torch.manual_seed(0)
    if family == "bilstm":
        config = BiLstmCrfConfig(vocab_size=50, embedding_size=16, hidden_size=16, num_hidden_layers=2, **labels)
        return BiLstmCrfForTokenClassification(config).eval()
    overrides = FAMILY_SOURCES[family][4] if family in FAMILY_SOURCES else {}
    config_class = crf_models.family_of(family).config_class
    config = config_class(**(TINY_BERT_KWARGS | overrides | {"vocab_size": 50}), **labels)
    return crf_models.family_of(family).crf_class(config).eval()


def batch(rows: int = 3, seq_len: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded ids and labels: one full row, one shorter with a hole, one with a single labelled word."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 50, (rows, seq_len), generator=gen)
    attention_mask = torch.ones(rows, seq_len, dtype=torch.long)
    labels = torch.randint(0, len(ID2LABEL), (rows, seq_len), generator=gen)
    labels[:, 0] = -100  # [CLS]
    labels[0, -1] = -100  # [SEP]
    labels[0, 4] = -100  # a continuation sub-token: a hole in the chain
    attention_mask[1, seq_len - 3 :] = 0
    labels[1, seq_len - 4 :] = -100
    attention_mask[-1, 3:] = 0
    labels[-1, 2:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def assert_same(got, want) -> None:
    if want.loss is not None:
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.logits, want.logits)
    assert torch.equal(got.predictions, want.predictions)


@pytest.mark.parametrize("family", [*FAMILIES, "bilstm"])
def test_torch_export_gives_the_eager_loss_and_paths(family):
    model = tiny_tagger(family)
    inputs = batch()
    with torch.no_grad():
        program = torch.export.export(model, (), inputs)
        assert_same(program.module()(**inputs), model(**inputs))
    if family == "bilstm":
        return  # torch.export fixes nn.LSTM's length to the example's
    # Without labels, over dynamic batch and length: the scans decode any chain, one word included.
    unlabelled = {k: v for k, v in inputs.items() if k != "labels"}
    dims = {"input_ids": {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", max=64)}}
    dims["attention_mask"] = dims["input_ids"]
    with torch.no_grad():
        program = torch.export.export(model, (), unlabelled, dynamic_shapes=dims)
        for rows, seq_len in ((3, 9), (5, 17), (2, 6)):
            other = {k: v for k, v in batch(rows, seq_len, seed=rows).items() if k != "labels"}
            assert_same(program.module()(**other), model(**other))


@pytest.mark.parametrize("family", [*FAMILIES, "bilstm"])
def test_torch_compile_fullgraph_gives_the_eager_loss_and_paths(family):
    model = tiny_tagger(family)
    inputs = batch()
    # Inductor once, the backend users get by default; the others check that dynamo captures the whole forward.
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager" if family != "bert" else "inductor")
    # Dynamo captures nn.LSTM only when asked (a torch setting, experimental): the student's CRF needs nothing more.
    with torch._dynamo.config.patch(allow_rnn=family == "bilstm"), torch.no_grad():
        assert_same(compiled(**inputs), model(**inputs))
        unlabelled = {k: v for k, v in inputs.items() if k != "labels"}
        assert_same(compiled(**unlabelled), model(**unlabelled))


def test_compiled_training_step_gives_the_eager_gradients():
    """The loss of a captured graph trains: its gradients are the eager ones (log-space sums by autograd)."""
    model = tiny_tagger("bert").train()
    model.config.hidden_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    inputs = batch()
    model(**inputs).loss.backward()
    eager = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.compile(model, fullgraph=True, backend="aot_eager")(**inputs).loss.backward()
    for name, grad in eager.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-5)
