#!/usr/bin/env python3
"""Cut the real Chinese text that `make demo` trains and judges on from its public sources (data/README.md).

    python3 data/make_real_data.py --msra ../shared/data/msra --weibo PATH/TO/golden-horse/data

writes, as CLUENER-style JSON lines (`{"text": ..., "label": {TYPE: {surface: [[start, end_inclusive], ...]}}}`):

- msra/train.json: a fixed-seed sample of MSRA's training sentences (news; PER, LOC, ORG) in random order (so that
  its first N lines, `--max_train_samples N`, are a random sample too), every sentence with an entity kept and one
  in EMPTY_KEPT of those without (training time goes to the sentences that teach entities);
- msra/dev.json: other MSRA training sentences, for choosing the checkpoint and fitting the confidence temperature;
- msra/test.json: MSRA's test set (never trained on);
- weibo/test.json: Weibo NER's revised test set (social media), its named mentions only (PER.NAM, ORG.NAM; LOC.NAM
  and GPE.NAM as LOC), a domain the model never sees.

Standard library only; the same sources give byte-identical files. Each source file's sha256 is checked first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import Counter
from pathlib import Path


SEED = 20261206
MSRA_TRAIN, MSRA_DEV = 8000, 1000
EMPTY_KEPT = 4
SOURCES = {
    "msra_train_bio": "4f7f24a28b6a5377a768eb740f6e4cc8df37cd5fe06777d0279c7180948d233b",
    "msra_test_bio": "2be8e580bcb22e9086e4403d82a7ec0f6e18019ebef35b0fd52941724bdf89a3",
    "weiboNER_2nd_conll.test": "faaf6c0ebde5348b935cfd5c89f0f22c9e0779d60667d8b5efbc647b6707d50e",
}
# Weibo NER's named mentions as MSRA's types; nominal mentions (.NOM: "导演", "朋友") are not names and are dropped.
WEIBO_TYPES = {"PER.NAM": "PER", "ORG.NAM": "ORG", "LOC.NAM": "LOC", "GPE.NAM": "LOC"}


def checked(path: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SOURCES[path.name]:
        sys.exit(f"{path}: sha256 {digest}, expected {SOURCES[path.name]} (a different copy of the source)")
    return path


def read_columns(path: Path, separator: str) -> list[list[tuple[str, str]]]:
    """Sentences of (character, tag) pairs from a one-character-per-line file."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
            continue
        char, tag = line.rsplit(separator, 1)
        current.append((char, tag))
    if current:
        sentences.append(current)
    return sentences


def to_record(pairs: list[tuple[str, str]], types: dict[str, str] | None = None) -> dict:
    """A CLUENER-style record; `types` maps source types to ours (others become O). An I- tag that starts an
    entity (a source slip) starts one."""
    text = "".join(char for char, _ in pairs)
    label: dict[str, dict[str, list[list[int]]]] = {}
    spans, open_span = [], None
    for i, (_, tag) in enumerate(pairs):
        prefix, _, kind = tag.partition("-")
        kind = (types or {}).get(kind, None if types else kind) if kind else None
        if open_span and (prefix != "I" or kind != open_span[0]):
            spans.append(open_span)
            open_span = None
        if kind and open_span is None:
            open_span = [kind, i, i]
        elif open_span:
            open_span[2] = i
    if open_span:
        spans.append(open_span)
    for kind, start, end in spans:
        label.setdefault(kind, {}).setdefault(text[start : end + 1], []).append([start, end])
    return {"text": text, "label": label}


def write(records: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    counts = Counter(kind for r in records for kind, found in r["label"].items() for s in found.values() for _ in s)
    chars = sum(len(r["text"]) for r in records)
    print(f"{path}: {len(records)} sentences, {chars} characters, entities {dict(sorted(counts.items()))}")


def msra_splits(folder: Path) -> dict[str, list[dict]]:
    train = [to_record(s) for s in read_columns(checked(folder / "msra_train_bio"), "\t")]
    order = random.Random(SEED).sample(range(len(train)), len(train))
    dev, rest = order[:MSRA_DEV], order[MSRA_DEV:]
    empty = [i for i in rest if not train[i]["label"]][::EMPTY_KEPT]
    kept = {i for i in rest if train[i]["label"]} | set(empty)
    return {
        "train": [train[i] for i in rest if i in kept][:MSRA_TRAIN],
        "dev": [train[i] for i in sorted(dev)],
        "test": [to_record(s) for s in read_columns(checked(folder / "msra_test_bio"), "\t")],
    }


def weibo_test(folder: Path) -> list[dict]:
    # Each character carries its position in its word ("节1"): the token is the first character.
    sentences = read_columns(checked(folder / "weiboNER_2nd_conll.test"), "\t")
    return [to_record([(c[0], t) for c, t in s], WEIBO_TYPES) for s in sentences]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--msra", type=Path, required=True, help="folder with msra_train_bio and msra_test_bio")
    parser.add_argument("--weibo", type=Path, help="golden-horse's data/ folder (weiboNER_2nd_conll.test)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    for split, records in msra_splits(args.msra).items():
        write(records, args.out / "msra" / f"{split}.json")
    if args.weibo:
        write(weibo_test(args.weibo), args.out / "weibo" / "test.json")


if __name__ == "__main__":
    main()
