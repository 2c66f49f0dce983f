"""Lexicon matching on jieba's dictionary: build time, memory and cost per character, against a plain baseline.

`ner_lexicon.Lexicon` looks up, from each character, only the lengths of the words that start with it. The
baseline, in the same run on the same text, is the obvious alternative: a set of the words and, from each
character, every piece up to the longest word's length looked up. Both must find the same occurrences (checked).
The text: MSRA's test sentences from ../shared/data (data/demo's sentences otherwise). The lexicon: jieba's
dict.txt (`pip install jieba`; 349k words), read through `bertcrf.lexicon.read_lexicon` with its default types.

Usage: python benchmarks/bench_lexicon.py [--sentences 2000] [--repeats 3]
Writes benchmarks/results/bench_lexicon.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

from bertcrf import data_files
from bertcrf.lexicon import read_lexicon
from machine import cpu_label
from ner_lexicon import Lexicon


ROOT = Path(__file__).resolve().parent.parent


MSRA_TEST = ROOT.parent / "shared" / "data" / "msra" / "msra_test_bio"
DEMO_TEST = ROOT / "data" / "demo" / "test.txt"


def jieba_dictionary() -> Path:
    try:
        import jieba
    except ImportError:
        sys.exit("this benchmark reads jieba's dictionary: pip install jieba")
    return Path(jieba.__file__).with_name("dict.txt")


def sentences(limit: int) -> tuple[list[str], str]:
    source = MSRA_TEST if MSRA_TEST.is_file() else DEMO_TEST
    texts = ["".join(example["tokens"]) for example in data_files.read_file(source)[:limit]]
    return texts, source.name


class WindowLookup:
    """The baseline: every piece up to the longest word's length, looked up in a dict."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.types = lexicon.types
        self.longest = max(map(len, lexicon.words))

    def matches(self, text: str) -> list[tuple[int, int, str]]:
        found = []
        for start in range(len(text)):
            for end in range(start + 1, min(len(text), start + self.longest) + 1):
                for kind in self.types.get(text[start:end], ()):
                    found.append((start, end, kind))
        return found


def timed(call, repeats: int) -> float:
    """Median seconds of `call()` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_lexicon"))
    args = parser.parse_args()
    path = jieba_dictionary()
    start = time.perf_counter()
    lexicon = read_lexicon(path)
    build_s = time.perf_counter() - start
    tracemalloc.start()  # a second build, for its memory: tracing slows it
    read_lexicon(path)
    build_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    baseline = WindowLookup(lexicon)
    texts, source = sentences(args.sentences)
    chars = sum(map(len, texts))
    ours = [lexicon.matches(t) for t in texts]
    assert ours == [sorted(baseline.matches(t)) for t in texts], "the two matchers disagree"
    ours_s = timed(lambda: [lexicon.matches(t) for t in texts], args.repeats)
    base_s = timed(lambda: [baseline.matches(t) for t in texts], args.repeats)
    features_s = timed(lambda: [lexicon.char_features(t) for t in texts], args.repeats)
    row = {
        "lexicon": f"jieba dict.txt ({len(lexicon)} words, types {', '.join(lexicon.type_names)})",
        "build_s": round(build_s, 2),
        "build_peak_mb": round(build_mb, 1),
        "text": f"{source}, {len(texts)} sentences, {chars} characters",
        "matches_per_char": round(sum(map(len, ours)) / chars, 2),
        "ours_us_per_char": round(1e6 * ours_s / chars, 2),
        "baseline_us_per_char": round(1e6 * base_s / chars, 2),
        "speedup": round(base_s / ours_s, 2),
        "features_us_per_char": round(1e6 * features_s / chars, 2),
        "longest_word": baseline.longest,
        "cpu": cpu_label(),
        "repeats": args.repeats,
    }
    table = "\n".join(
        [
            "| lexicon | build s | build peak MB | text | matches/char | Lexicon µs/char | window lookup µs/char | "
            "speed-up | char features µs/char | CPU |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {row['lexicon']} | {row['build_s']} | {row['build_peak_mb']} | {row['text']} | "
            f"{row['matches_per_char']} | {row['ours_us_per_char']} | {row['baseline_us_per_char']} | "
            f"{row['speedup']}x | {row['features_us_per_char']} | {row['cpu']} |",
        ]
    )
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(row, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(
        table + f"\n\nMedian of {args.repeats} runs; single thread. The window lookup checks every piece up to the "
        f"longest word ({row['longest_word']} characters) in a dict; both find the same occurrences.\n"
    )


if __name__ == "__main__":
    main()
