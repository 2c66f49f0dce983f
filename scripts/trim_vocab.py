"""Trim a checkpoint's Unigram (SentencePiece-style) vocabulary to the pieces a corpus uses.

Multilingual encoders such as multilingual-e5-small spend most of their parameters on a 250k-row word-embedding
matrix, mostly pieces of scripts a Chinese model never sees. This script keeps the pieces that the given text
tokenizes to (plain text lines, or NER files in any format `bertcrf.data_files.read_file` reads), the special
tokens, the pieces of an optional character list and (by default) every single CJK ideograph piece, then writes a
checkpoint whose tokenizer and embedding rows agree: kept pieces keep their scores and relative order and get
new contiguous ids, and the embedding matrix keeps exactly their rows.

    python scripts/trim_vocab.py --model outputs/multilingual-e5-small --output outputs/multilingual-e5-small-zh \\
        --text data/resume/train.char.bmes data/msra/msra_train_bio data/cluener/train.json

Why the given text segments exactly as before: a Unigram tokenizer picks the best-scoring segmentation; removing
pieces only removes competitors, so a best path whose pieces are all kept stays best. Two details keep that true:
the unknown-token score is derived from the vocabulary's lowest score (so the lowest-scored piece is kept), and
the single-character pieces of every kept piece's characters are kept (so no new <unk> node appears in the text).

The trimmed folder is written beside --output and renamed into place when complete, so an interrupted run leaves
nothing half-written. --output may not be (or hold) the --model folder or a text file; a non-empty --output is
refused unless --overwrite, which replaces it as a whole once the new folder is complete.
"""

import argparse
import copy
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
CJK_FIRST, CJK_LAST = 0x4E00, 0x9FFF
BATCH = 2048


def folder_size(path: str | Path) -> int:
    """Bytes of the files directly in (and below) a folder."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def read_texts(path: str) -> tuple[list[str], list[list[str]]]:
    """Lines of a text file, and for NER data files also the token lists.

    NER files (column, JSON lines or CLUENER spans, sniffed by `data_files`) give one line per sentence: the tokens
    joined (without spaces when every token is one character, as in Chinese data) plus the token list itself,
    because training tokenizes the tokens as separate words. A file that is not a column file (nor JSON of a known
    format) is plain text; a JSON export that fails to read is an error, not text."""
    from bertcrf import data_files, ner_data

    try:
        kind = data_files.sniff_format(path)
    except ner_data.DataFormatError:  # a first line that opens but is not JSON: text
        kind = "column"
    try:
        examples = data_files.read_file(path)
    except ner_data.DataFormatError:
        if kind != "column":
            raise
        return list(ner_data.read_text_lines(path)), []
    lines = []
    for example in examples:
        tokens = example["tokens"]
        lines.append(("" if all(len(t) == 1 for t in tokens) else " ").join(tokens))
    return lines, [example["tokens"] for example in examples]


def keep_chars_text(value: str) -> str:
    """The characters of `--keep_chars`: a file's content when `value` names a file, else `value` itself."""
    if os.path.isfile(value):
        return Path(value).read_text(encoding="utf-8")
    return value


def count_pieces(backend: Any, lines: Sequence[str], words: Sequence[Sequence[str]]) -> Counter[int]:
    """How often each piece id occurs when tokenizing `lines` as text and `words` as pre-split word lists."""
    counts: Counter[int] = Counter()
    for start in range(0, len(lines), BATCH):
        for enc in backend.encode_batch(list(lines[start : start + BATCH]), add_special_tokens=False):
            counts.update(enc.ids)
    for start in range(0, len(words), BATCH):
        batch = [list(w) for w in words[start : start + BATCH] if w]
        for enc in backend.encode_batch(batch, is_pretokenized=True, add_special_tokens=False):
            counts.update(enc.ids)
    return counts


def special_ids(tok: dict[str, Any]) -> set[int]:
    """Ids of the added (special) tokens and the Unigram unknown token."""
    ids = {t["id"] for t in tok.get("added_tokens", [])}
    if tok["model"].get("unk_id") is not None:
        ids.add(tok["model"]["unk_id"])
    return ids


def select_pieces(
    tok: dict[str, Any], counts: Counter[int], extra: Iterable[int] = (), min_count: int = 1, keep_cjk: bool = True
) -> list[int]:
    """The sorted old ids to keep: pieces used `min_count` times or more, `extra` ids, specials, single-char CJK
    pieces (with `keep_cjk`), the lowest-scored piece, and the single-char pieces of every kept piece."""
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    vocab = tok["model"]["vocab"]
    keep = {i for i, n in counts.items() if n >= min_count} | set(extra) | special_ids(tok)
    single = {piece: i for i, (piece, _) in enumerate(vocab) if len(piece) == 1}
    if keep_cjk:
        keep |= {i for piece, i in single.items() if CJK_FIRST <= ord(piece) <= CJK_LAST}
    # Unigram's <unk> score is the lowest piece score minus 10: keeping that piece keeps <unk>'s score.
    keep.add(min(range(len(vocab)), key=lambda i: vocab[i][1]))
    # A character whose single piece is gone gets an <unk> node: keep them so kept text gains no new competitor.
    for i in list(keep):
        if i < len(vocab):
            keep |= {single[c] for c in vocab[i][0] if c in single}
    return sorted(keep)


def _remap_processor(proc: dict[str, Any] | None, remap: dict[int, int]) -> None:
    """Update the special-token ids that a post-processor stores (in place)."""
    if not proc:
        return
    kind = proc.get("type")
    if kind == "Sequence":
        for sub in proc.get("processors", []):
            _remap_processor(sub, remap)
    elif kind == "TemplateProcessing":
        for special in proc.get("special_tokens", {}).values():
            special["ids"] = [remap[i] for i in special["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            proc[key] = [proc[key][0], remap[proc[key][1]]]


def trim_tokenizer_json(tok: dict[str, Any], kept: Sequence[int]) -> tuple[dict[str, Any], dict[int, int]]:
    """A tokenizer.json dict with only the `kept` old ids (sorted), renumbered 0.. in order; and old id -> new id.

    Normalizer, pre-tokenizer and decoder are copied as they are; the post-processor's and added tokens' ids are
    renumbered. Added tokens outside the Unigram vocabulary (ids past its end) keep their place after it."""
    if tok.get("model", {}).get("type") != "Unigram":
        raise ValueError(f"only Unigram tokenizers can be trimmed, got a {tok.get('model', {}).get('type')!r} model")
    vocab = tok["model"]["vocab"]
    remap = {old: new for new, old in enumerate(kept)}
    lost = sorted(special_ids(tok) - set(remap))
    if lost:
        raise ValueError(f"special token ids {lost} must be kept")
    new = copy.deepcopy({k: v for k, v in tok.items() if k != "model"})
    new["model"] = {k: v for k, v in tok["model"].items() if k != "vocab"}
    new["model"]["vocab"] = [vocab[i] for i in kept if i < len(vocab)]
    if new["model"].get("unk_id") is not None:
        new["model"]["unk_id"] = remap[tok["model"]["unk_id"]]
    for added in new.get("added_tokens", []):
        added["id"] = remap[added["id"]]
    _remap_processor(new.get("post_processor"), remap)
    return new, remap


def load_model(path: str) -> tuple[Any, set[str]]:
    """A checkpoint's model, by its type: a stock transformers type through the architecture class saved in the
    config (so heads are kept) or `AutoModel`; this repo's CRF taggers (e.g. bert_crf) through `load_crf_model`.
    Also the names of weights the checkpoint lacks (e.g. e5's pooler), which must not be saved as random ones."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type not in CONFIG_MAPPING_NAMES:  # only imported when needed: it loads the repo's model code
        from bertcrf.crf_models import load_crf_model

        model, info = load_crf_model(path, output_loading_info=True)
    else:
        config = transformers.AutoConfig.from_pretrained(path)
        architectures = getattr(config, "architectures", None) or []
        model_class = getattr(transformers, architectures[0], None) if architectures else None
        model, info = (model_class or transformers.AutoModel).from_pretrained(
            path, config=config, output_loading_info=True
        )
    return model, set(info.get("missing_keys", ()))


def slice_embeddings(model: Any, kept: Sequence[int], remap: dict[int, int]) -> None:
    """Keep the word-embedding rows of `kept` (in order) and renumber the config's token ids (in place)."""
    import torch

    old = model.get_input_embeddings()
    if old is None:
        raise ValueError(f"{type(model).__name__} has no input embeddings to trim")
    if kept[-1] >= old.num_embeddings:
        raise ValueError(f"token id {kept[-1]} has no embedding row (the matrix has {old.num_embeddings} rows)")
    index = torch.tensor(kept, dtype=torch.long)
    config = model.config
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "unk_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            setattr(config, key, remap.get(value))
    padding_idx = remap.get(old.padding_idx) if old.padding_idx is not None else None
    new = torch.nn.Embedding(len(kept), old.embedding_dim, padding_idx=padding_idx)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])
    new.to(dtype=old.weight.dtype, device=old.weight.device)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = output is not None and output.weight is old.weight
    model.set_input_embeddings(new)
    if output is not None:  # an LM head: its rows (and bias) follow the same ids
        output.weight = new.weight if tied else torch.nn.Parameter(output.weight.detach()[index].clone())
        if getattr(output, "bias", None) is not None:
            output.bias = torch.nn.Parameter(output.bias.detach()[index].clone())
        output.out_features = len(kept)
    config.vocab_size = len(kept)
    if hasattr(config, "get_text_config"):
        config.get_text_config().vocab_size = len(kept)


def unk_positions(encoding: Any, unk_id: int) -> set[int]:
    """Character offsets of the line that a tokenizer encoding covers with the unknown token."""
    return {c for i, (s, e) in zip(encoding.ids, encoding.offsets) if i == unk_id for c in range(s, e)}


def compare(old: Any, new: Any, remap: dict[int, int], unk_id: int, lines: Sequence[str]) -> dict[str, int]:
    """Tokenize `lines` with both tokenizers: lines whose (renumbered) ids differ, characters newly <unk>."""
    new_unk = remap[unk_id]
    changed = new_unk_chars = 0
    for start in range(0, len(lines), BATCH):
        batch = list(lines[start : start + BATCH])
        for a, b in zip(
            old.encode_batch(batch, add_special_tokens=False), new.encode_batch(batch, add_special_tokens=False)
        ):
            mapped = [remap.get(i, new_unk) for i in a.ids]
            changed += mapped != b.ids
            new_unk_chars += len(unk_positions(b, new_unk) - unk_positions(a, unk_id))
    return {"lines": len(lines), "changed_lines": changed, "new_unk_chars": new_unk_chars}


def copy_extras(source: Path, output: Path, target: Path | None = None) -> None:
    """Copy the folder's other files (label maps, model cards, code) that `save_pretrained` does not write; not the
    folder being written (`output`, or the final `target`) when it lies inside `source`."""
    from bertcrf.safe_files import within

    for item in source.iterdir():
        if item.name in TOKENIZER_FILES or item.name == "config.json" or item.name.endswith(WEIGHT_SUFFIXES):
            continue
        if within(output, item) or (target is not None and within(target, item)):
            continue
        if item.is_dir():
            shutil.copytree(item, output / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, output / item.name)


def write_tokenizer(source: Path, output: Path, tok: dict[str, Any], remap: dict[int, int]) -> None:
    """Write tokenizer.json and the tokenizer configs, with added-token ids renumbered."""
    (output / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            data = json.loads((source / name).read_text(encoding="utf-8"))
            decoder = data.get("added_tokens_decoder")
            if isinstance(decoder, dict):
                data["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in decoder.items() if int(k) in remap}
            (output / name).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def trim(
    model_dir: str,
    output_dir: str,
    texts: Sequence[str],
    keep_chars: str | None = None,
    min_count: int = 1,
    keep_cjk: bool = True,
    check_texts: Sequence[str] = (),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trim `model_dir` into `output_dir` (see the module docstring); returns the report's numbers.

    The output is written into a temporary folder beside `output_dir` and renamed into place when complete. It is
    refused when it is (or holds) the model or a text file, and when it is not empty unless `overwrite` (the old
    folder is then replaced as a whole)."""
    from tokenizers import Tokenizer

    source = Path(model_dir)
    _check_trim_paths(model_dir, output_dir, texts, keep_chars, check_texts, overwrite)
    tok = _read_unigram_tokenizer(model_dir)
    backend = Tokenizer.from_file(str(source / "tokenizer.json"))
    lines, words = _read_all_texts(texts)
    kept = _kept_pieces(backend, tok, lines, words, keep_chars, min_count, keep_cjk)
    new_tok, remap = trim_tokenizer_json(tok, kept)

    model, missing = load_model(model_dir)
    before_rows = model.get_input_embeddings().num_embeddings
    slice_embeddings(model, kept, remap)
    size_before = folder_size(source)
    size_after = _write_trimmed(source, output_dir, model, missing, tok, new_tok, remap, keep_cjk)
    new_backend = Tokenizer.from_file(str(Path(output_dir) / "tokenizer.json"))
    unk_id = tok["model"]["unk_id"]
    report: dict[str, Any] = {
        "pieces_before": len(tok["model"]["vocab"]),
        "pieces_after": len(new_tok["model"]["vocab"]),
        "embedding_rows_before": before_rows,
        "embedding_rows_after": len(kept),
        "size_before": size_before,
        "size_after": size_after,
        "text": compare(backend, new_backend, remap, unk_id, lines),
    }
    check_lines = [line for path in check_texts for line in read_texts(path)[0]]
    if check_lines:
        report["check_text"] = compare(backend, new_backend, remap, unk_id, check_lines)
    return report


def _check_trim_paths(
    model_dir: str,
    output_dir: str,
    texts: Sequence[str],
    keep_chars: str | None,
    check_texts: Sequence[str],
    overwrite: bool,
) -> None:
    """Refuse a model without tokenizer.json, and an output folder that is (or holds) an input or is not empty."""
    from bertcrf.safe_files import check_output_folder

    if not (Path(model_dir) / "tokenizer.json").is_file():
        raise ValueError(f"{model_dir} has no tokenizer.json (a fast Unigram tokenizer is needed)")
    inputs = {"--model folder": model_dir}
    inputs.update({f"--text file {i + 1}": path for i, path in enumerate(texts)})
    inputs.update({f"--check_text file {i + 1}": path for i, path in enumerate(check_texts)})
    if keep_chars and os.path.isfile(keep_chars):
        inputs["--keep_chars file"] = keep_chars
    check_output_folder(output_dir, inputs, "--output", overwrite)


def _read_unigram_tokenizer(model_dir: str) -> dict[str, Any]:
    """The model's tokenizer.json; only a Unigram vocabulary can be trimmed here."""
    tok = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    if tok.get("model", {}).get("type") != "Unigram":
        raise ValueError(
            f"{model_dir}: only Unigram tokenizers can be trimmed, got {tok.get('model', {}).get('type')!r}"
        )
    return tok


def _read_all_texts(texts: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The lines and the words of all the text files, in order."""
    lines: list[str] = []
    words: list[list[str]] = []
    for path in texts:
        file_lines, file_words = read_texts(path)
        lines += file_lines
        words += file_words
    return lines, words


def _kept_pieces(
    backend: Any,
    tok: dict[str, Any],
    lines: Sequence[str],
    words: Sequence[Sequence[str]],
    keep_chars: str | None,
    min_count: int,
    keep_cjk: bool,
) -> list[int]:
    """The ids of the pieces to keep: those the texts use, and those that spell the `keep_chars` characters."""
    counts = count_pieces(backend, lines, words)
    extra: set[int] = set()
    if keep_chars:
        chars = sorted({c for c in keep_chars_text(keep_chars) if not c.isspace()})
        extra = set(count_pieces(backend, chars, [[c] for c in chars]))
    return select_pieces(tok, counts, extra, min_count, keep_cjk)


def _write_trimmed(
    source: Path,
    output_dir: str,
    model: Any,
    missing: set[str],
    tok: dict[str, Any],
    new_tok: dict[str, Any],
    remap: dict[int, int],
    keep_cjk: bool,
) -> int:
    """Write the trimmed model into `output_dir` (staged, then renamed into place); return the folder's size."""
    from bertcrf.model_card import note_derivation
    from bertcrf.safe_files import staged_folder

    with staged_folder(output_dir) as output:
        copy_extras(source, output, Path(output_dir))
        # Weights the checkpoint lacked (e.g. e5's pooler) are left out, not saved as the random ones loaded.
        state = {k: v for k, v in model.state_dict().items() if k not in missing}
        model.save_pretrained(output, state_dict=state)
        write_tokenizer(source, output, new_tok, remap)
        note_derivation(
            output,
            f"vocabulary trimmed from {len(tok['model']['vocab']):,} to {len(new_tok['model']['vocab']):,} pieces "
            "(those of the given text"
            + (", every CJK character" if keep_cjk else "")
            + ") by bert-crf's trim_vocab.py",
        )
        return folder_size(output)


def format_report(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    mib = 1024 * 1024
    out = [
        f"pieces: {report['pieces_before']:,} -> {report['pieces_after']:,} "
        f"(embedding rows {report['embedding_rows_before']:,} -> {report['embedding_rows_after']:,})",
        f"folder size: {report['size_before'] / mib:.1f} MiB -> {report['size_after'] / mib:.1f} MiB "
        f"({100 * report['size_after'] / report['size_before']:.1f}%)",
    ]
    for key in ("text", "check_text"):
        if key in report:
            r = report[key]
            out.append(
                f"{key}: {r['lines']:,} lines, {r['changed_lines']} with a changed segmentation, "
                f"[UNK] characters that were not before: {r['new_unk_chars']}"
            )
    return "\n".join(out)


def parse_bool(value: str) -> bool:
    """true/false (also 1/0, yes/no) for a command-line flag."""
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder with a Unigram tokenizer.json")
    parser.add_argument("--output", required=True, help="folder for the trimmed checkpoint")
    parser.add_argument("--text", nargs="+", required=True, help="text or NER data files whose pieces to keep")
    parser.add_argument("--keep_chars", default=None, help="file of characters (or the characters inline) to keep")
    parser.add_argument("--min_count", type=int, default=1, help="keep text pieces used at least this often")
    parser.add_argument(
        "--keep_cjk",
        type=parse_bool,
        default=True,
        help="keep every single-character piece in U+4E00-U+9FFF (default true)",
    )
    parser.add_argument("--check_text", nargs="*", default=[], help="extra files to count new [UNK] characters in")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --output folder as a whole, once the new one is complete (never the --model)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    report = trim(
        args.model,
        args.output,
        args.text,
        args.keep_chars,
        args.min_count,
        args.keep_cjk,
        args.check_text,
        args.overwrite,
    )
    print(format_report(report))
    print(f"written to {args.output} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return report


if __name__ == "__main__":
    from bertcrf import cli

    cli.run(main)
