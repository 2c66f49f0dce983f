"""Tests for trim_vocab.py on a tiny Unigram tokenizer and a tiny random BERT (and the real e5 folder if built)."""

import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch

import trim_vocab
from conftest import REPO_ROOT, build_tiny_model


SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
HANZI = "中国北京上海人民银行公司经理工作大学教授学历硕士研究生市场部主任技术员有限责任我你他的是在了和"
WORDS = ["hello", "world", "bank", "china", "beijing", "manager", "the", "of", "data"]
OTHER = "абвгдежзиклмнопрстуфхцчшщыэюяαβγδεζηθικλμνξοπρστυφχψωابتثجحخدذرزسشصضطظعغفقكلمنهوي"
TEXT = ["中国银行北京分行经理", "hello world, the bank of china", "上海大学教授，硕士研究生。", "data 工作 manager"]
REAL = REPO_ROOT / "outputs" / "multilingual-e5-small"


def tiny_vocab() -> list[tuple[str, float]]:
    """A few hundred pieces with seeded scores: CJK single and double characters, Latin letters, ▁-prefixed and
    bare word pieces, other scripts (never in the text), and competing splits of the same strings."""
    rng = random.Random(0)
    pieces = ["▁", ",", "，", "。", *HANZI, *"abcdefghijklmnopqrstuvwxyz", *OTHER.replace("ω", "")]
    pieces += [HANZI[i : i + 2] for i in range(0, len(HANZI) - 1)]
    pieces += ["▁" + c for c in HANZI[:20]]
    pieces += [p for w in WORDS for p in ("▁" + w, w, w[:2], w[2:], "▁" + w[:3])]
    pieces += ["▁" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces = list(dict.fromkeys(pieces))
    vocab = [(p, 0.0) for p in SPECIALS] + [(p, -rng.uniform(2.0, 15.0)) for p in pieces]
    vocab.append(("ω", -20.0))  # the lowest score: trimming keeps it (it sets the <unk> score)
    return vocab + [("<mask>", 0.0)]


def save_tiny_tokenizer(folder: Path) -> None:
    """tokenizer.json (Unigram, Metaspace, <s> $A </s>) and a tokenizer_config like convert_e5.py writes."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = tiny_vocab()
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "backend": "tokenizers",
        "tokenizer_class": "PreTrainedTokenizerFast",
        **dict(bos_token="<s>", cls_token="<s>", eos_token="</s>", sep_token="</s>", pad_token="<pad>"),
        **dict(unk_token="<unk>", mask_token="<mask>", model_max_length=64),
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny BertModel folder with the Unigram tokenizer, a text file, and the trimmed folder plus its report."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("trim")
    source = root / "full"
    save_tiny_tokenizer(source)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tiny_vocab()) + 5,  # spare rows past the tokenizer, as in e5 (250,037 rows, 250,002 pieces)
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    BertModel(config).eval().save_pretrained(source)
    text = root / "text.txt"
    text.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
    check = root / "check.txt"
    check.write_text("中国бank\n", encoding="utf-8")  # б is not in the text: it becomes <unk>
    output = root / "trimmed"
    report = trim_vocab.main(
        ["--model", str(source), "--output", str(output), "--text", str(text), "--check_text", str(check)]
    )
    return source, output, report


def _load(folder):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def _remap(full_tok, trimmed_tok):
    """Old id -> new id, through the piece strings (independent of the script's own remap)."""
    return {i: trimmed_tok.convert_tokens_to_ids(p) for p, i in full_tok.get_vocab().items() if p in trimmed_tok.vocab}


def test_text_ids_and_hidden_states_unchanged(tiny):
    source, output, report = tiny
    full_tok, full_model = _load(source)
    tok, model = _load(output)
    remap = _remap(full_tok, tok)
    for line in TEXT:
        before, after = full_tok(line, return_tensors="pt"), tok(line, return_tensors="pt")
        assert [remap[i] for i in before["input_ids"][0].tolist()] == after["input_ids"][0].tolist(), line
        # 分 is in no piece: <unk> before and after, nowhere else
        assert after["input_ids"][0].tolist().count(3) == line.count("分")
        with torch.no_grad():
            expected = full_model(**before).last_hidden_state
            actual = model(**after).last_hidden_state
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    assert report["text"] == {"lines": len(TEXT), "changed_lines": 0, "new_unk_chars": 0}


def test_trimmed_folder_loads_plainly_with_fewer_pieces(tiny):
    source, output, report = tiny
    tok, model = _load(output)
    assert report["pieces_before"] == len(tiny_vocab())
    assert report["pieces_after"] == len(tok) == model.config.vocab_size
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert report["pieces_after"] < report["pieces_before"] // 2
    assert report["size_after"] < report["size_before"]
    assert set(OTHER) & set(tok.vocab) == {"ω"}  # scripts the text never uses are gone, but the lowest piece
    assert set(HANZI) <= set(tok.vocab)  # every single CJK piece stays (--keep_cjk)
    config = json.loads((output / "config.json").read_text())
    assert config["vocab_size"] == len(tok) and config["pad_token_id"] == 1


def test_unknown_characters_become_unk_and_are_counted(tiny):
    _, output, report = tiny
    tok, _ = _load(output)
    assert tok("бank", add_special_tokens=False)["input_ids"][1] == tok.unk_token_id
    assert report["check_text"] == {"lines": 1, "changed_lines": 1, "new_unk_chars": 1}


def test_special_tokens_still_work(tiny):
    _, output, _ = tiny
    tok, model = _load(output)
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.mask_token_id == len(tok) - 1
    batch = tok(["中国", "中国银行北京分行经理"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, -1].item() == 1 and batch["attention_mask"][0, -1].item() == 0
    assert batch["input_ids"][1, 0].item() == 0 and batch["input_ids"][1, -1].item() == 2
    assert tok.mask_token_id in tok("中国 <mask>")["input_ids"]
    with torch.no_grad():
        assert model(**batch).last_hidden_state.shape[:2] == batch["input_ids"].shape


def test_ner_files_are_read_as_tokens(tmp_path):
    column = tmp_path / "train.char.bmes"
    column.write_text("高 B-NAME\n勇 E-NAME\n\nhello O\nworld O\n", encoding="utf-8")
    spans = tmp_path / "train.json"
    spans.write_text(json.dumps({"text": "浙商银行", "label": {"company": {"浙商银行": [[0, 3]]}}}) + "\n", "utf-8")
    assert trim_vocab.read_texts(str(column)) == (["高勇", "hello world"], [["高", "勇"], ["hello", "world"]])
    assert trim_vocab.read_texts(str(spans))[0] == ["浙商银行"]
    plain = tmp_path / "plain.txt"
    plain.write_text("中国银行\n\n北京\n", encoding="utf-8")
    assert trim_vocab.read_texts(str(plain)) == (["中国银行", "北京"], [])


def test_read_texts_refuses_an_export_it_cannot_read(tmp_path):
    # A Label Studio export with no annotated task is an error, not JSON lines to read as plain text.
    export = tmp_path / "tasks.json"
    export.write_text('[{"id": 1, "data": {"text": "中国银行"}, "annotations": []}]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="tasks.json"):
        trim_vocab.read_texts(str(export))


def test_keep_chars_and_no_cjk(tiny, tmp_path):
    source, _, _ = tiny
    text = tmp_path / "t.txt"
    text.write_text("中国\n", encoding="utf-8")
    report = trim_vocab.trim(str(source), str(tmp_path / "out"), [str(text)], keep_chars="北京", keep_cjk=False)
    tok, _ = _load(tmp_path / "out")
    assert {"中", "国", "北", "京"} <= set(tok.vocab) and "海" not in tok.vocab
    assert report["pieces_after"] == len(tok)


def test_select_pieces_keeps_lowest_score_and_single_characters():
    tok = {"model": {"type": "Unigram", "unk_id": 1, "vocab": [["<s>", 0.0], ["<unk>", 0.0], ["ab", -1.0]]}}
    tok["model"]["vocab"] += [["a", -2.0], ["b", -3.0], ["z", -9.0], ["c", -4.0]]
    tok["added_tokens"] = [{"id": 0, "content": "<s>"}]
    # "ab" alone is used; "a", "b" (its characters) and "z" (the lowest score, which sets <unk>'s) stay, "c" goes;
    # with min_count 2, "ab" (used once) goes and so do its characters.
    assert trim_vocab.select_pieces(tok, {2: 5}) == [0, 1, 2, 3, 4, 5]
    assert trim_vocab.select_pieces(tok, {2: 1, 6: 3}, min_count=2) == [0, 1, 5, 6]


def test_bad_values_raise_clear_errors(tiny, tmp_path):
    source, _, _ = tiny
    tok = json.loads((source / "tokenizer.json").read_text())
    with pytest.raises(ValueError, match="min_count must be at least 1, got 0"):
        trim_vocab.select_pieces(tok, {}, min_count=0)
    with pytest.raises(ValueError, match="--output .* is the --model folder"):
        trim_vocab.trim(str(source), str(source), [])
    with pytest.raises(ValueError, match="'WordPiece'"):
        trim_vocab.trim_tokenizer_json({"model": {"type": "WordPiece"}}, [0])
    with pytest.raises(ValueError, match=r"special token ids \[3, "):
        trim_vocab.trim_tokenizer_json(tok, [0, 1, 2])
    with pytest.raises(ValueError, match="'maybe'"):
        trim_vocab.parse_bool("maybe")


def test_crf_checkpoint_rows_follow_the_tokenizer(tiny, tmp_path):
    from transformers import AutoTokenizer

    from bertcrf.crf_models import load_crf_model

    source, _, _ = tiny
    crf_dir = tmp_path / "crf"
    build_tiny_model(vocab_size=len(tiny_vocab()), pad_token_id=1).save_pretrained(crf_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (crf_dir / name).write_bytes((source / name).read_bytes())
    text = tmp_path / "t.txt"
    text.write_text(TEXT[0] + "\n", encoding="utf-8")
    trim_vocab.trim(str(crf_dir), str(tmp_path / "out"), [str(text)])
    full, trimmed = load_crf_model(str(crf_dir)).eval(), load_crf_model(str(tmp_path / "out")).eval()
    full_tok, tok = AutoTokenizer.from_pretrained(crf_dir), AutoTokenizer.from_pretrained(tmp_path / "out")
    assert trimmed.get_input_embeddings().num_embeddings == len(tok) == trimmed.config.vocab_size
    before, after = full_tok(TEXT[0], return_tensors="pt"), tok(TEXT[0], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(trimmed(**after).logits, full(**before).logits, atol=1e-6, rtol=0)


@pytest.mark.skipif(not (REAL / "tokenizer.json").is_file(), reason="outputs/multilingual-e5-small not built")
def test_real_e5_folder_keeps_chinese_segmentation(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("高勇：男，中国国籍，无境外居留权。\nEmail: gao@example.com 2013年\n", encoding="utf-8")
    tok = json.loads((REAL / "tokenizer.json").read_text(encoding="utf-8"))
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(REAL / "tokenizer.json"))
    lines = text.read_text(encoding="utf-8").splitlines()
    kept = trim_vocab.select_pieces(tok, trim_vocab.count_pieces(backend, lines, []))
    new_tok, remap = trim_vocab.trim_tokenizer_json(tok, kept)
    new_backend = Tokenizer.from_str(json.dumps(new_tok))
    result = trim_vocab.compare(backend, new_backend, remap, tok["model"]["unk_id"], lines)
    assert result == {"lines": 2, "changed_lines": 0, "new_unk_chars": 0}
    assert new_backend.token_to_id("<mask>") == len(kept) - 1 and new_backend.token_to_id("<pad>") == 1
    assert 5_000 < len(kept) < 20_000  # mostly XLM-R's ~7.7k single CJK ideograph pieces


def test_dropped_single_character_cannot_steal_the_best_path():
    """ "abc" segments as ab+c (-24) while a+bc costs -31. Were "a" dropped (only ab, c and bc are used), an <unk>
    node for "a" scoring min(kept) - 10 = -22 would make <unk>+bc (-23) win; select_pieces keeps "a"."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = [("<unk>", 0.0), ("▁", -1.0), ("ab", -12.0), ("c", -12.0), ("bc", -1.0), ("b", -5.0), ("a", -30.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok_json = json.loads(tok.to_str())
    lines = ["abc", "bc"]
    assert [e.tokens for e in tok.encode_batch(lines)] == [["ab", "c"], ["bc"]]
    kept = trim_vocab.select_pieces(tok_json, trim_vocab.count_pieces(tok, lines, []))
    assert kept == [0, 2, 3, 4, 5, 6]  # "a" and "b" (characters of kept pieces) kept; "▁" (unused) dropped
    new_json, remap = trim_vocab.trim_tokenizer_json(tok_json, kept)
    new = Tokenizer.from_str(json.dumps(new_json))
    assert trim_vocab.compare(tok, new, remap, 0, lines) == {"lines": 2, "changed_lines": 0, "new_unk_chars": 0}


# ----------------------------------------------------------------------------------------------------------------
# Nothing lost on disk


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_that_is_or_holds_an_input_is_refused(tiny, tmp_path):
    source, _, _ = tiny
    text = tmp_path / "text.txt"
    text.write_text(TEXT[0] + "\n", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(source)
    before = _snapshot(source)
    for output, message in (
        (link, "is the --model folder"),
        (source.parent, "holds the --model folder"),
        (tmp_path, "holds the --text file 1"),
    ):
        with pytest.raises(ValueError, match=f"--output {re.escape(str(output))} {message}"):
            trim_vocab.main(["--model", str(source), "--output", str(output), "--text", str(text), "--overwrite"])
    assert _snapshot(source) == before


def test_a_non_empty_output_needs_overwrite_and_is_replaced_whole(tiny, tmp_path):
    source, trimmed, _ = tiny
    text = tmp_path / "text.txt"
    text.write_text(TEXT[0] + "\n", encoding="utf-8")
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine", encoding="utf-8")
    argv = ["--model", str(source), "--output", str(output), "--text", str(text)]
    with pytest.raises(ValueError, match=r"--output .* is not empty \(notes.txt\): pass --overwrite"):
        trim_vocab.main(argv)
    assert _snapshot(output) == {Path("notes.txt"): b"mine"}
    trim_vocab.main(argv + ["--overwrite"])
    assert not (output / "notes.txt").exists() and (output / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "text.txt"]  # no staging or old folder left


def test_an_interrupted_trim_leaves_the_earlier_output(tiny, tmp_path, monkeypatch):
    source, _, _ = tiny
    text = tmp_path / "text.txt"
    text.write_text(TEXT[0] + "\n", encoding="utf-8")
    output = tmp_path / "out"
    argv = ["--model", str(source), "--output", str(output), "--text", str(text)]
    trim_vocab.main(argv)
    before = _snapshot(output)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trim_vocab, "write_tokenizer", stop)  # after the weights are saved, before the tokenizer
    with pytest.raises(KeyboardInterrupt):
        trim_vocab.main(argv + ["--overwrite"])
    assert _snapshot(output) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "text.txt"]


def test_an_output_inside_the_model_folder_does_not_copy_itself(tiny, tmp_path):
    source, _, _ = tiny
    model = tmp_path / "model"
    shutil.copytree(source, model)
    text = tmp_path / "text.txt"
    text.write_text(TEXT[0] + "\n", encoding="utf-8")
    trim_vocab.main(["--model", str(model), "--output", str(model / "zh"), "--text", str(text)])
    assert (model / "zh" / "tokenizer.json").is_file() and not (model / "zh" / "zh").exists()
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == []
