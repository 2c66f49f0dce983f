"""Tests for modeling_bilstm_crf: the BiLSTM against torch's bidirectional LSTM, padding, the CRF head, saving,
remote code, the pipeline and the ONNX export of a student checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from bertcrf import shipping
from configuration_bilstm_crf import BiLstmCrfConfig
from conftest import DEMO_DIR, ID2LABEL, load_crf_pipeline
from modeling_bilstm_crf import BiLstmCrfForTokenClassification, reverse_padded


def tiny_student(seed: int = 0, layers: int = 1, **overrides) -> BiLstmCrfForTokenClassification:
    config = BiLstmCrfConfig(
        vocab_size=40,
        embedding_size=6,
        hidden_size=5,
        num_hidden_layers=layers,
        id2label=dict(ID2LABEL),
        special_token_ids=[1, 2],
        **overrides,
    )
    torch.manual_seed(seed)
    return BiLstmCrfForTokenClassification(config).eval()


def right_padded_batch(seed: int = 0):
    """[CLS] ... [SEP] rows of lengths 7, 4 and 2 (an empty sentence), padded with 0."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for length in (5, 2, 0):
        rows.append([1] + torch.randint(3, 40, (length,), generator=gen).tolist() + [2])
    width = max(map(len, rows))
    input_ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    return input_ids, (input_ids != 0).long()


def test_reverse_padded_flips_each_row_within_its_length():
    x = torch.arange(2 * 5).reshape(2, 5, 1).float()
    lengths = torch.tensor([5, 3])
    out = reverse_padded(x, lengths)
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]  # padding stays put
    assert torch.equal(reverse_padded(out, lengths), x)


@pytest.mark.parametrize("layers", [1, 2])
def test_matches_torch_bidirectional_lstm_on_packed_sequences(layers):
    """Our forward/backward LSTM pair per layer computes what nn.LSTM(bidirectional=True) computes on packed rows."""
    model = tiny_student(layers=layers)
    model.config.hidden_dropout_prob = 0.0
    reference = nn.LSTM(6, 5, num_layers=layers, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer, (ahead, behind) in enumerate(zip(model.forward_lstms, model.backward_lstms)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(ahead, f"{name}_l0"))
                getattr(reference, f"{name}_l{layer}_reverse").copy_(getattr(behind, f"{name}_l0"))
    input_ids, attention_mask = right_padded_batch()
    lengths = attention_mask.sum(1)
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(
            model.embeddings(input_ids), lengths, batch_first=True, enforce_sorted=False
        )
        hidden, _ = nn.utils.rnn.pad_packed_sequence(
            reference(packed)[0], batch_first=True, total_length=input_ids.size(1)
        )
        expected = model.classifier(hidden)
        got = model.emissions(input_ids, attention_mask)
    on = attention_mask.bool()
    torch.testing.assert_close(got[on], expected[on], rtol=1e-5, atol=1e-6)


def test_padding_never_reaches_a_real_token():
    model = tiny_student(layers=2)
    input_ids, attention_mask = right_padded_batch()
    with torch.no_grad():
        batch = model.emissions(input_ids, attention_mask)
        for row in range(input_ids.size(0)):
            length = int(attention_mask[row].sum())
            alone = model.emissions(input_ids[row : row + 1, :length], attention_mask[row : row + 1, :length])
            torch.testing.assert_close(batch[row, :length], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask", [[0, 1, 1, 1], [1, 0, 1, 0]], ids=["left padding", "hole"])
def test_input_that_is_not_right_padded_raises(mask):
    model = tiny_student()
    with pytest.raises(ValueError, match="needs right-padded input: each attention_mask row must be ones, then zeros"):
        model(input_ids=torch.tensor([[1, 5, 6, 2]]), attention_mask=torch.tensor([mask]))


def test_loss_and_predictions_are_the_crf_on_the_chain():
    model = tiny_student(3)
    input_ids, attention_mask = right_padded_batch(3)
    labels = torch.full_like(input_ids, -100)
    labels[0, 1:6] = torch.tensor([1, 2, 0, 3, 4])
    labels[1, 1:3] = torch.tensor([0, 1])
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    logits = out.logits.detach()
    expected = (
        -(
            model.crf(logits[0:1, 1:6], labels[0:1, 1:6], reduction="sum")
            + model.crf(logits[1:2, 1:3], labels[1:2, 1:3], reduction="sum")
        )
        / 2
    )  # the empty row adds nothing
    torch.testing.assert_close(out.loss, expected)
    assert out.predictions[0, 1:6].tolist() == model.crf.decode(logits[0:1, 1:6])[0]
    assert (out.predictions[2] == -100).all()
    model.train()
    model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    for name in (
        "embeddings.weight",
        "forward_lstms.0.weight_ih_l0",
        "backward_lstms.0.weight_ih_l0",
        "classifier.weight",
        "crf.transitions",
    ):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_save_and_load_round_trip(tmp_path):
    model = tiny_student(5, layers=2)
    model.save_pretrained(tmp_path)
    loaded = BiLstmCrfForTokenClassification.from_pretrained(tmp_path).eval()
    input_ids, attention_mask = right_padded_batch()
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=input_ids, attention_mask=attention_mask).logits,
            model(input_ids=input_ids, attention_mask=attention_mask).logits,
        )
    assert torch.equal(loaded.crf.transition_penalty, model.crf.transition_penalty)
    names = {p.name for p in tmp_path.iterdir()}
    assert {name for name in names if name.endswith(".py")} == set(
        shipping.model_code(BiLstmCrfForTokenClassification)
    )
    assert "modeling_bert_crf.py" not in names  # the student needs the CRF head, not the BERT model


REMOTE_SCRIPT = """
import json, sys
from transformers import pipeline
pipe = pipeline("token-classification", model=sys.argv[1], trust_remote_code=True)
print(json.dumps({"class": type(pipe.model).__name__, "module": type(pipe.model).__module__,
                  "entities": [[e["entity_group"], e["start"], e["end"]] for e in pipe(sys.argv[2], aggregation_strategy="simple")]}))
"""


def test_remote_code_pipeline_in_a_fresh_process(student_checkpoint, tmp_path):
    text = "我在北京的清华大学读书"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(student_checkpoint), text],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["class"] == "BiLstmCrfForTokenClassification"
    assert result["module"].startswith("transformers_modules.")
    pipe = load_crf_pipeline(student_checkpoint)
    assert result["entities"] == [
        [e["entity_group"], e["start"], e["end"]] for e in pipe(text, aggregation_strategy="simple")
    ]


def test_onnx_export_matches_the_pipeline(student_checkpoint, tmp_path):
    import export_onnx
    from bertcrf import ner_data
    from ner_onnx import OnnxNerTagger

    folder = export_onnx.export(str(student_checkpoint), str(tmp_path / "onnx"))
    texts = ["".join(e["tokens"]) for e in ner_data.read_column_file(DEMO_DIR / "dev.txt")][:40]
    texts.append("".join(texts[:10]))  # longer than a window
    pipe = load_crf_pipeline(student_checkpoint)
    want = pipe(texts, aggregation_strategy="simple")
    got = OnnxNerTagger(folder)(texts, batch_size=8)
    assert any(want)
    for g, w in zip(got, want):
        assert [(e["entity_group"], e["start"], e["end"]) for e in g] == [
            (e["entity_group"], e["start"], e["end"]) for e in w
        ]
