"""One unit per character with SentencePiece tokenizers (XLM-R, multilingual-e5): raw Chinese text is split into one
word per character, and a lone "▁" is never a word's first (label-carrying) unit; the same rule in training
windows, the pipeline and the ONNX runtime. BERT tokenizers keep their own word splitting."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from bertcrf import crf_models, ner_data
from bertcrf.ner_data import WindowConfig, encode_examples
from conftest import DEMO_DIR
from ner_windows import METASPACE, backend_words, bare_prefix_id, drop_bare_prefix, isolates_cjk, split_text


TEXT = "梁一鸣在济民中医院工作，newyork 2024年！"


def test_split_text_isolates_cjk_and_punctuation():
    spans = split_text(TEXT)
    words = [TEXT[s:e] for s, e in spans]
    assert words == [*"梁一鸣在济民中医院工作", "，", "newyork", "2024", "年", "！"]
    assert split_text("  a\u0301b  c ") == [(2, 5), (7, 8)]  # a combining mark stays in its word
    assert split_text("") == [] and split_text(" \u3000 ") == []


def test_drop_bare_prefix_keeps_content_and_lone_marks():
    assert drop_bare_prefix([[6, 10], [6], [11, 12], [6, 6, 13]], 6) == [[10], [6], [11, 12], [6, 13]]
    assert drop_bare_prefix([[6, 10]], None) == [[6, 10]]


def test_tokenizer_facts(sentencepiece_checkpoint, tiny_checkpoint):
    spm = AutoTokenizer.from_pretrained(sentencepiece_checkpoint)
    bert = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert not isolates_cjk(backend_words(spm.backend_tokenizer))
    assert isolates_cjk(backend_words(bert.backend_tokenizer))
    assert bare_prefix_id(spm.backend_tokenizer.token_to_id, spm.unk_token_id) == spm.convert_tokens_to_ids(METASPACE)
    assert bare_prefix_id(bert.backend_tokenizer.token_to_id, bert.unk_token_id) is None
    # the problem: fed alone, most characters come out as a lone mark and then the character
    encoding = spm(list("济民中医院"), is_split_into_words=True, add_special_tokens=False)
    assert spm.convert_ids_to_tokens(encoding["input_ids"]).count(METASPACE) >= 3


def test_training_windows_give_each_character_one_content_unit(sentencepiece_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(sentencepiece_checkpoint)
    words = list("济民中医院的梁一鸣")
    example = {"id": "x:1", "tokens": words, "tags": ["B-ORG", *["I-ORG"] * 4, "O", "B-PER", "I-PER", "I-PER"]}
    label2id = {label: i for i, label in enumerate(["O", "B-PER", "I-PER", "B-ORG", "I-ORG"])}
    rows, units = encode_examples([example], tokenizer, label2id, WindowConfig(max_seq_length=64), overlap=False)
    (row,) = rows
    assert units == [[1] * len(words)]
    assert len(row["input_ids"]) == len(words) + 2  # <s>, one unit per character, </s>
    content = tokenizer.convert_ids_to_tokens(row["input_ids"])[1:-1]
    assert METASPACE not in content
    assert [t.lstrip(METASPACE) for t in content] == words


def test_pipeline_tags_raw_chinese_one_word_per_character(sentencepiece_checkpoint):
    pipe = crf_models.load_crf_pipeline(str(sentencepiece_checkpoint), device="cpu")
    words = pipe(TEXT, ignore_labels=[])
    assert [w["word"] for w in words] == [TEXT[s:e] for s, e in split_text(TEXT)]
    for w in words:
        assert TEXT[w["start"] : w["end"]] == w["word"]
    # raw text and the same characters pre-split give the same tags
    chinese = "梁一鸣在济民中医院工作"
    raw = pipe(chinese, ignore_labels=[])
    pre_split = pipe(list(chinese), is_split_into_words=True, ignore_labels=[])
    assert [(w["entity"], w["start"], w["end"]) for w in raw] == [
        (w["entity"], w["start"], w["end"]) for w in pre_split
    ]
    assert pipe("   ") == [] and pipe(TEXT, aggregation_strategy="simple") is not None


def test_onnx_runtime_follows_the_same_rule(sentencepiece_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    import export_onnx
    from ner_onnx import OnnxNerTagger

    folder = export_onnx.export(str(sentencepiece_checkpoint), str(tmp_path / "onnx"))
    tagger = OnnxNerTagger(folder)
    pipe = crf_models.load_crf_pipeline(str(sentencepiece_checkpoint), device="cpu")
    chinese = "梁一鸣在济民中医院工作"
    planned = tagger._prepare(chinese, False, None)
    assert len(planned["spans"]) == len(chinese)  # one word per character, as the pipeline
    bare = tagger.tokenizer.token_to_id(METASPACE)
    assert all(w.input_ids[c] != bare for w in planned["windows"] for c in w.chain)  # no lone "▁" carries a label
    texts = [TEXT, TEXT * 6, "   "]
    for text in texts:
        planned = tagger._prepare(text, False, None)
        expected = [(w["start"], w["end"]) for w in pipe(text, ignore_labels=[])]
        assert planned["spans"] == expected, text
    ours = tagger(texts)
    reference = pipe(texts, aggregation_strategy="simple")
    assert [[(e["entity_group"], e["start"], e["end"]) for e in r] for r in ours] == [
        [(e["entity_group"], e["start"], e["end"]) for e in r] for r in reference
    ]


def awkward_and_demo_texts() -> list[str]:
    """Texts whose words a tokenizer treats unevenly (spaces, emoji, zero-width and combining marks, full-width
    letters, a lone "▁"), then the demo's dev sentences."""
    awkward = [
        TEXT,
        TEXT * 6,
        "北京\u3000上海 😀",
        "Apple CEO Tim Cook 在 2024年",
        "\u200b张三\u0301",
        "ａｂｃ　ＡＢ",
        "▁ ▁",
    ]
    return awkward + ["".join(e["tokens"]) for e in ner_data.read_column_file(DEMO_DIR / "dev.txt")]


def test_onnx_words_tokenized_one_by_one_as_in_one_call(sentencepiece_checkpoint, tmp_path):
    """ner_onnx.py remembers each pre-split word's ids (raw SentencePiece text, or is_split_into_words) instead of
    encoding the word list again: the same windows."""
    pytest.importorskip("onnxruntime")
    import export_onnx
    from ner_onnx import OnnxNerTagger

    tagger = OnnxNerTagger(export_onnx.export(str(sentencepiece_checkpoint), str(tmp_path / "onnx")))
    assert tagger._split_raw and tagger._per_word
    texts = awkward_and_demo_texts()
    inputs = (
        [(t, False) for t in texts] + [(t.split() or ["x"], True) for t in texts] + [(list(t), True) for t in texts]
    )
    for text, split in inputs:
        tagger._per_word = True
        remembered = tagger._prepare(text, split, None)
        tagger._per_word = False
        encoded = tagger._prepare(text, split, None)
        assert remembered["spans"] == encoded["spans"], text
        assert [(w.input_ids, w.chain) for w in remembered["windows"]] == [
            (w.input_ids, w.chain) for w in encoded["windows"]
        ], text


@pytest.mark.parametrize("checkpoint", ["sentencepiece_checkpoint", "crf_checkpoint"])
def test_pipeline_words_tokenized_one_by_one_as_in_one_call(checkpoint, request):
    """The pipeline remembers each pre-split word's ids (raw SentencePiece text, or is_split_into_words) instead of
    encoding the word list again: the same windows, so the same words and tags."""
    pipe = crf_models.load_crf_pipeline(str(request.getfixturevalue(checkpoint)), device="cpu")
    assert pipe._per_word
    texts = awkward_and_demo_texts()[:47]
    inputs = (
        [(t, False) for t in texts] + [(t.split() or ["x"], True) for t in texts] + [(list(t), True) for t in texts]
    )
    for text, split in inputs:
        if not split and not pipe._split_raw:
            continue
        pipe._per_word = True
        remembered = list(pipe.preprocess(text, is_split_into_words=split))
        pipe._per_word = False
        encoded = list(pipe.preprocess(text, is_split_into_words=split))
        assert [w["chunk"].spans for w in remembered[:1]] == [w["chunk"].spans for w in encoded[:1]], text
        assert [w["input_ids"].tolist() for w in remembered] == [w["input_ids"].tolist() for w in encoded], text
        assert [w["word_start_mask"].tolist() for w in remembered] == [w["word_start_mask"].tolist() for w in encoded]


def test_a_metaspace_prefixing_the_first_word_only_is_encoded_whole():
    from ner_windows import _prepend_schemes

    first = {"type": "Sequence", "pretokenizers": [{"type": "Metaspace", "prepend_scheme": "first"}]}
    assert _prepend_schemes(first) == {"first"}
    assert _prepend_schemes({"type": "Metaspace", "prepend_scheme": "always", "split": True}) == {"always"}
    assert _prepend_schemes(None) == set()


def test_extend_vocab_on_a_sentencepiece_tokenizer_says_what_to_do(sentencepiece_checkpoint):
    """A user who fine-tunes e5 with --extend_vocab True (make demo's MiniLM fallback turns it on) is told to turn it
    off, with the share of unknown words that shows there is nothing to add."""
    tokenizer = AutoTokenizer.from_pretrained(sentencepiece_checkpoint)
    examples = [{"id": "a:1", "tokens": list("张三在北京"), "tags": ["O"] * 5}]
    with pytest.raises(ValueError, match=r"got Unigram \(0\.00% of the training words .*pass --extend_vocab False"):
        ner_data.extend_vocabulary(tokenizer, examples)
