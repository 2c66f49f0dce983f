"""Two reference figures for the quality table (issue 23): a classic feature CRF without any encoder, and how much of
each dataset's gold entities jieba's dictionary (the model's lexicon) already holds.

1. Feature CRF (python-crfsuite, L-BFGS): each character is described by itself, its neighbours at offsets -2..+2,
   the bigrams c-2c-1, c-1c0, c0c+1, c+1c+2, the trigram c-1c0c+1, BOS/EOS flags and a bias feature; sentence edges
   are padded with <s> and </s>. Trained and scored on the splits of bench_quality.py's DATASETS (MSRA: the first
   10,000 training sentences, as the BERT runs use; People's Daily: trained on dev; CLUENER: scored on dev), read
   by the repo's reader and scored by run_ner's own seqeval scoring (strict entity F1). Training seconds cover
   feature extraction and L-BFGS, as wall time and as the process's CPU time (the figure to trust on a busy core);
   crfsuite runs on one thread (run it on one core: OMP_NUM_THREADS=1 taskset -c 1).
2. Lexicon coverage: on each dataset's scored split, the share of gold entities whose exact surface string is a word
   of jieba's dict.txt, read through bertcrf.lexicon.read_lexicon with its default types (as the model's lexicon
   sees it), overall and by type; and, for the types with a jieba counterpart (PER <- nr/nrt/nrfg, LOC <- ns,
   ORG <- nt; see JIEBA_COUNTERPART), the share whose dictionary entry carries that type.

Needs `pip install python-crfsuite` (a benchmark-only dependency) and jieba, and ../shared/data beside the repo.

Usage: OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_feature_crf.py [--datasets msra resume ...]
       [--max_train_samples N] [--iterations 100] [--coverage_datasets msra peoples_daily cluener resume]
Writes benchmarks/results/bench_feature_crf.{json,md}; a later run replaces the rows it measures again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench_quality import DATA, DATASETS
from bertcrf import data_files, ner_data
from machine import cpu_label
from ner_lexicon import Lexicon
from ner_tags import tags_to_spans


ROOT = Path(__file__).resolve().parent.parent


CHINESE_DATASETS = ("msra", "peoples_daily", "cluener", "resume")
DEFAULT_TRAIN_SAMPLES = {"msra": 10000}  # the BERT runs' MSRA sample (bench_quality --msra_train_samples)
# Each dataset type's counterpart among read_lexicon's default jieba types; types missing here have none.
JIEBA_COUNTERPART = {
    "msra": {"PER": "PER", "LOC": "LOC", "ORG": "ORG"},
    "peoples_daily": {"PER": "PER", "LOC": "LOC", "ORG": "ORG"},
    "resume": {"NAME": "PER", "LOC": "LOC", "ORG": "ORG"},
    "cluener": {"name": "PER", "address": "LOC", "organization": "ORG", "company": "ORG", "government": "ORG"},
}
OFFSETS = (-2, -1, 0, 1, 2)
BEFORE, AFTER = "<s>", "</s>"
OUT = ROOT / "benchmarks" / "results" / "bench_feature_crf"


def char_features(chars: Sequence[str], i: int) -> list[str]:
    """The features of character `i` of `chars`: unigrams at -2..+2, four bigrams, one trigram, BOS/EOS, bias."""

    def at(offset: int) -> str:
        j = i + offset
        return BEFORE if j < 0 else AFTER if j >= len(chars) else chars[j]

    c = {offset: at(offset) for offset in OFFSETS}
    features = ["bias"] + [f"c[{offset}]={c[offset]}" for offset in OFFSETS]
    for first, second in ((-2, -1), (-1, 0), (0, 1), (1, 2)):
        features.append(f"c[{first}]c[{second}]={c[first]}|{c[second]}")
    features.append(f"c[-1]c[0]c[1]={c[-1]}|{c[0]}|{c[1]}")
    if i == 0:
        features.append("BOS")
    if i == len(chars) - 1:
        features.append("EOS")
    return features


def sentence_features(chars: Sequence[str]) -> list[list[str]]:
    return [char_features(chars, i) for i in range(len(chars))]


def scored_split(name: str) -> str:
    """The split a dataset's figures are reported on: test where it has a labelled one, else dev (CLUENER)."""
    return "test" if DATASETS[name]["test"] else "dev"


def read_split(name: str, split: str) -> list[dict[str, Any]]:
    return data_files.read_file(DATA / DATASETS[name][split])


def train_limit(name: str, max_train_samples: int | None) -> int | None:
    """--max_train_samples for every dataset when given (0: all), else MSRA's 10,000 and all of the others."""
    if max_train_samples is None:
        return DEFAULT_TRAIN_SAMPLES.get(name)
    return max_train_samples or None


def train_crf(examples: list[dict[str, Any]], model_path: Path, c1: float, c2: float, iterations: int) -> dict:
    """Fit an L-BFGS CRF on the examples into `model_path`; what the optimiser reports of its run."""
    import pycrfsuite  # benchmark-only: the feature functions above work without it

    trainer = pycrfsuite.Trainer(verbose=False)
    for example in examples:
        if example["tokens"]:
            trainer.append(sentence_features(example["tokens"]), example["tags"])
    trainer.select("lbfgs")
    trainer.set_params({"c1": c1, "c2": c2, "max_iterations": iterations, "feature.possible_transitions": True})
    trainer.train(str(model_path))
    last = trainer.logparser.last_iteration or {}
    return {"iterations_run": len(trainer.logparser.iterations), "final_loss": last.get("loss")}


def tag_all(model_path: Path, examples: list[dict[str, Any]]) -> tuple[list[list[str]], int]:
    """Predicted tags of every example, and the number of non-zero state features of the model."""
    import pycrfsuite

    tagger = pycrfsuite.Tagger()
    tagger.open(str(model_path))
    predicted = [tagger.tag(sentence_features(e["tokens"])) if e["tokens"] else [] for e in examples]
    features = len(tagger.info().state_features)
    tagger.close()
    return predicted, features


def crf_row(name: str, args: argparse.Namespace) -> dict:
    """Train on the dataset's training split (its first N sentences), score its scored split."""
    from bertcrf.training import score_entities  # run_ner's own scoring (imports torch: only here)

    limit = train_limit(name, args.max_train_samples)
    train = read_split(name, "train")[:limit]
    split = scored_split(name)
    scored = read_split(name, split)
    scheme = ner_data.detect_examples_scheme(train)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / f"{name}.crfsuite"
        start, cpu_start = time.perf_counter(), time.process_time()
        fit = train_crf(train, model_path, args.c1, args.c2, args.iterations)
        train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        start = time.perf_counter()
        predicted, features = tag_all(model_path, scored)
        tag_seconds = time.perf_counter() - start
    scores = score_entities([e["tags"] for e in scored], predicted, scheme, entity_level=True)
    per_type = {key[: -len("_f1")]: value for key, value in scores.items() if key.endswith("_f1") and key != "f1"}
    return {
        "dataset": name,
        "train_file": DATASETS[name]["train"],
        "max_train_samples": limit,
        "train_sentences": len(train),
        "scored_split": split,
        "scored_sentences": len(scored),
        "scheme": scheme,
        "iterations": args.iterations,
        "c1": args.c1,
        "c2": args.c2,
        **fit,
        "state_features": features,
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1": scores["f1"],
        "per_type_f1": per_type,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "tag_seconds": tag_seconds,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def jieba_lexicon() -> Lexicon:
    try:
        import jieba
    except ImportError:
        sys.exit("the coverage figures read jieba's dictionary: pip install jieba")
    from bertcrf.lexicon import read_lexicon

    return read_lexicon(Path(jieba.__file__).with_name("dict.txt"))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def entity_coverage(
    examples: list[dict[str, Any]], scheme: str, lexicon: Lexicon, counterpart: dict[str, str]
) -> dict[str, Any]:
    """Gold entities whose surface string is a lexicon word, overall and by type; of the types with a jieba
    counterpart, those whose word carries that type."""
    by_type: dict[str, dict[str, Any]] = {}
    surfaces: set[str] = set()
    for example in examples:
        for kind, start, end in tags_to_spans(example["tags"] or [], scheme):
            surface = "".join(example["tokens"][start:end])
            surfaces.add(surface)
            jieba_type = counterpart.get(kind)
            counts = by_type.setdefault(
                kind, {"jieba_type": jieba_type, "entities": 0, "in_dictionary": 0, "type_match": 0}
            )
            counts["entities"] += 1
            counts["in_dictionary"] += surface in lexicon.types
            counts["type_match"] += jieba_type is not None and jieba_type in lexicon.types.get(surface, ())
    for counts in by_type.values():
        counts["in_dictionary_share"] = _share(counts["in_dictionary"], counts["entities"])
        typed = counts["jieba_type"] is not None
        counts["type_match_share"] = _share(counts["type_match"], counts["entities"]) if typed else None
    typed = [c for c in by_type.values() if c["jieba_type"] is not None]
    entities = sum(c["entities"] for c in by_type.values())
    in_dictionary = sum(c["in_dictionary"] for c in by_type.values())
    typed_entities, matches = sum(c["entities"] for c in typed), sum(c["type_match"] for c in typed)
    distinct_in = sum(surface in lexicon.types for surface in surfaces)
    return {
        "entities": entities,
        "in_dictionary": in_dictionary,
        "in_dictionary_share": _share(in_dictionary, entities),
        "distinct_surfaces": len(surfaces),
        "distinct_in_dictionary_share": _share(distinct_in, len(surfaces)),
        "entities_with_jieba_type": typed_entities,
        "type_match": matches,
        "type_match_share": _share(matches, typed_entities),
        "by_type": dict(sorted(by_type.items())),
    }


def coverage_row(name: str, lexicon: Lexicon) -> dict:
    split = scored_split(name)
    examples = read_split(name, split)
    scheme = ner_data.detect_examples_scheme(examples)
    coverage = entity_coverage(examples, scheme, lexicon, JIEBA_COUNTERPART[name])
    return {"dataset": name, "split": split, "file": DATASETS[name][split], "lexicon_words": len(lexicon), **coverage}


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def render(crf_rows: list[dict], coverage_rows: list[dict]) -> str:
    lines = [
        "Feature CRF (python-crfsuite, L-BFGS; character n-gram features), seqeval strict entity F1",
        "",
        "| dataset | train sentences | scored split | iterations (run) | c1 | c2 | state features | P | R | F1 | "
        "train s (CPU s) | tag s | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in crf_rows:
        lines.append(
            f"| {r['dataset']} | {r['train_sentences']} | {r['scored_split']} ({r['scored_sentences']}) | "
            f"{r['iterations']} ({r['iterations_run']}) | {r['c1']} | {r['c2']} | {r['state_features']} | "
            f"{_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} | "
            f"{r['train_seconds']:.0f} ({r['train_cpu_seconds']:.0f}) | {r['tag_seconds']:.0f} | {r['cpu']} |"
        )
    lines.append("")
    for r in crf_rows:
        types = ", ".join(f"{t} {100 * f:.1f}" for t, f in sorted(r["per_type_f1"].items()))
        lines.append(f"- {r['dataset']}, F1 by type: {types}")
    lines += [
        "",
        "Gold entities of the scored split found in jieba's dictionary (exact surface string; read_lexicon's types)",
        "",
        "| dataset | split | entities | in dictionary % | distinct surfaces | distinct in dictionary % | "
        "entities with a jieba type | jieba type matches % | CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in coverage_rows:
        lines.append(
            f"| {r['dataset']} | {r['split']} | {r['entities']} | {_pct(r['in_dictionary_share'])} | "
            f"{r['distinct_surfaces']} | {_pct(r['distinct_in_dictionary_share'])} | "
            f"{r['entities_with_jieba_type']} | {_pct(r['type_match_share'])} | {r['cpu']} |"
        )
    lines += ["", "| dataset | type | jieba type | entities | in dictionary % | jieba type matches % |"]
    lines.append("|---|---|---|---|---|---|")
    for r in coverage_rows:
        for kind, c in r["by_type"].items():
            lines.append(
                f"| {r['dataset']} | {kind} | {c['jieba_type'] or 'no jieba type'} | {c['entities']} | "
                f"{_pct(c['in_dictionary_share'])} | {_pct(c['type_match_share'])} |"
            )
    return "\n".join(lines)


def _crf_key(row: dict) -> tuple:
    return (row["dataset"], row["max_train_samples"], row["iterations"])


def save(crf_rows: list[dict], coverage_rows: list[dict], out: Path) -> dict:
    """Merge the new rows into the results file (a new row replaces the old one of the same dataset and settings)."""
    path = out.with_suffix(".json")
    previous = json.loads(path.read_text()) if path.exists() else {"feature_crf": [], "coverage": []}
    new_crf, new_coverage = {_crf_key(r) for r in crf_rows}, {r["dataset"] for r in coverage_rows}
    merged = {
        "feature_crf": [r for r in previous["feature_crf"] if _crf_key(r) not in new_crf] + crf_rows,
        "coverage": [r for r in previous["coverage"] if r["dataset"] not in new_coverage] + coverage_rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(render(merged["feature_crf"], merged["coverage"]) + "\n")
    return merged


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["msra"], choices=CHINESE_DATASETS, help="feature CRF runs")
    parser.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="first N training sentences of every dataset (0: all); default: 10,000 for MSRA, all for the others",
    )
    parser.add_argument("--iterations", type=int, default=100, help="L-BFGS iterations at most")
    parser.add_argument("--c1", type=float, default=0.1, help="L1 penalty")
    parser.add_argument("--c2", type=float, default=0.01, help="L2 penalty")
    parser.add_argument("--coverage_datasets", nargs="*", default=list(CHINESE_DATASETS), choices=CHINESE_DATASETS)
    parser.add_argument("--out", default=str(OUT))
    return parser.parse_args()


def run_coverage(names: list[str], cpu: str) -> list[dict]:
    if not names:
        return []
    lexicon = jieba_lexicon()
    rows = [{**coverage_row(name, lexicon), "cpu": cpu} for name in names]
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k != "by_type"}, ensure_ascii=False), flush=True)
    return rows


def run_crf(names: list[str], args: argparse.Namespace, cpu: str, coverage: list[dict]) -> list[dict]:
    """Each dataset's row, saved as soon as it is measured."""
    rows: list[dict] = []
    for name in names:
        rows.append({**crf_row(name, args), "cpu": cpu})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
        save(rows, coverage, Path(args.out))
    return rows


def main() -> None:
    args = parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the public datasets beside the repo")
    cpu = cpu_label()
    coverage = run_coverage(args.coverage_datasets, cpu)
    crf = run_crf(args.datasets, args, cpu, coverage)
    merged = save(crf, coverage, Path(args.out))
    print(render(merged["feature_crf"], merged["coverage"]))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
