"""Shared setup for the test suite: offline Hugging Face, the repository and its scripts on sys.path, tiny configs and
models."""

from __future__ import annotations

import os
import sys
from pathlib import Path


# Must happen before transformers / huggingface_hub / datasets are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs two workers (pytest-xdist) on a 2-core machine: one thread each, in-process and in the processes
# the tests start, or they would take each other's cores (the CRF's small ops slow down many times over).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

REPO_ROOT = Path(__file__).resolve().parent.parent
# The tests import the model code, the library and the scripts (whose functions they call in-process).
for _folder in (REPO_ROOT / "scripts", REPO_ROOT):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import pytest  # noqa: E402
import torch  # noqa: E402


def elsewhere(script: str) -> str:
    """`script` as run on a machine that has a checkpoint but not this repository: its first line takes the
    repository off sys.path (make setup's bert-crf.pth puts it on the venv's path for every process)."""
    return f"import sys; sys.path[:] = [p for p in sys.path if p.rstrip('/') != {str(REPO_ROOT)!r}]\n" + script


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ID2LABEL = dict(enumerate(LABELS))
LABEL2ID = {label: i for i, label in ID2LABEL.items()}

TINY_BERT_KWARGS = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    vocab_size=100,
    max_position_embeddings=64,
    type_vocab_size=2,
)


def build_tiny_config(**overrides):
    """A tiny random BertCrfConfig over LABELS; keyword arguments override any field."""
    from configuration_bert_crf import BertCrfConfig

    kwargs = dict(TINY_BERT_KWARGS)
    kwargs.update(id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
    kwargs.update(overrides)
    return BertCrfConfig(**kwargs)


def build_tiny_model(seed: int = 0, **overrides):
    """A BertCrfForTokenClassification with tiny random weights, in eval mode (dropout off)."""
    from modeling_bert_crf import BertCrfForTokenClassification

    torch.manual_seed(seed)
    model = BertCrfForTokenClassification(build_tiny_config(**overrides))
    return model.eval()


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_config():
    return build_tiny_config()


@pytest.fixture
def make_config():
    return build_tiny_config


@pytest.fixture
def make_model():
    return build_tiny_model


def pytest_configure(config):
    # pytorch-crf builds a uint8 mask itself when none is given, which newer torch warns about.
    config.addinivalue_line("filterwarnings", "ignore:where received a uint8 condition tensor:UserWarning")
    config.addinivalue_line("markers", "slow: runs subprocesses or trains models (still run by default)")


def pack(emissions, tags, mask):
    """Hand-pack batch-first inputs, one position at a time: each row's on positions, in order, at the front.

    Returns (emissions, tags, mask) of width max(on positions per row), zeros past each row's end and a prefix mask.
    """
    batch, seq_len, num_tags = emissions.shape
    width = int(mask.sum(1).max())
    packed_em = torch.zeros(batch, width, num_tags, dtype=emissions.dtype)
    packed_tags = torch.zeros(batch, width, dtype=torch.long)
    packed_mask = torch.zeros(batch, width, dtype=torch.bool)
    for b in range(batch):
        positions = [t for t in range(seq_len) if mask[b, t]]
        for k, t in enumerate(positions):
            packed_em[b, k] = emissions[b, t]
            packed_tags[b, k] = tags[b, t]
            packed_mask[b, k] = True
    return packed_em, packed_tags, packed_mask


# ----------------------------------------------------------------------------------------------------------------
# A tiny local BERT checkpoint (vocabulary from data/demo) for the data pipeline and run_ner.py tests.

DEMO_DIR = REPO_ROOT / "data" / "demo"
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
FULLWIDTH_SPACE = "\u3000"
# Latin words and word pieces, so that some words split into several sub-tokens ("newyork" -> new ##york).
EXTRA_WORDPIECES = ["new", "##york", "york", "##s", "##er", "the", "play", "##ing", "un", "##know", "##n"]
# The tiny shape again, with the vocabulary taken from the tokenizer and room for longer windows.
TINY_CHECKPOINT_BERT = {k: v for k, v in TINY_BERT_KWARGS.items() if k != "vocab_size"} | {
    "max_position_embeddings": 128
}


def demo_characters(path=DEMO_DIR / "train.txt"):
    """The distinct tokens of a demo column file, in order of first appearance, without U+3000."""
    seen = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line:
                token = line.rsplit(" ", 1)[0]
                if token != FULLWIDTH_SPACE:
                    seen.setdefault(token, None)
    return list(seen)


def write_tiny_checkpoint(folder):
    """vocab.txt, tokenizer_config.json and a tiny random BertModel in `folder`; returns the folder."""
    import json

    from transformers import BertConfig, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *demo_characters(), *EXTRA_WORDPIECES]:
        vocab.setdefault(token, None)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 64}),
        encoding="utf-8",
    )
    torch.manual_seed(1234)
    config = BertConfig(vocab_size=len(vocab), pad_token_id=0, **TINY_CHECKPOINT_BERT)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Folder of a tiny random BERT with a character vocabulary for data/demo (read-only: copy it to change it)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def tiny_tokenizer(tiny_checkpoint):
    """A fresh fast tokenizer of the tiny checkpoint (each test may extend its vocabulary)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def subprocess_env() -> dict:
    """Environment for subprocesses: one OpenMP thread each, Hugging Face offline, the repository importable."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def omp_env():
    return subprocess_env()


# ----------------------------------------------------------------------------------------------------------------
# A tiny BertCrfForTokenClassification checkpoint (model, tokenizer, remote code) for the inference-side tests:
# pipeline_bert_crf.py, handler.py, tag.py and evaluate_pipeline.py.

CRF_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
CRF_MAX_POSITIONS = 64  # [CLS] + 62 sub-tokens + [SEP]: long texts need several windows
# Latin words and digits beyond the demo characters, so that mixed texts have known words and multi-piece words.
CRF_EXTRA_TOKENS = ["apple", "ceo", "tim", "cook", "ai", *"0123456789", *(f"##{d}" for d in "0123456789")]


def write_crf_checkpoint(folder, seed: int = 0):
    """A tiny random BERT-CRF saved with save_pretrained (weights, config, remote code, tokenizer) in `folder`.

    The classifier gets large random weights, so that emissions vary strongly from character to character and the
    (constrained) Viterbi path holds entities of every type, O words and multi-word entities."""
    import json

    from transformers import AutoTokenizer

    from configuration_bert_crf import BertCrfConfig
    from modeling_bert_crf import BertCrfForTokenClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for token in [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *demo_characters(),
        *EXTRA_WORDPIECES,
        *CRF_EXTRA_TOKENS,
    ]:
        vocab.setdefault(token, None)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": CRF_MAX_POSITIONS}),
        encoding="utf-8",
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)  # before config.json exists: no remote-code question
    config = BertCrfConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        type_vocab_size=2,
        vocab_size=len(vocab),
        max_position_embeddings=CRF_MAX_POSITIONS,
        pad_token_id=0,
        id2label=dict(enumerate(CRF_LABELS)),
        label2id={label: i for i, label in enumerate(CRF_LABELS)},
    )
    torch.manual_seed(seed)
    return save_with_strong_classifier(BertCrfForTokenClassification(config), tokenizer, folder, 0.5)


def save_with_strong_classifier(model, tokenizer, folder, std: float):
    """Give `model` large random classifier weights (emissions that vary strongly from token to token), then save
    it and `tokenizer` in `folder`."""
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, std)
        model.classifier.bias.zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


@pytest.fixture(scope="session")
def crf_checkpoint(tmp_path_factory):
    """Folder of a tiny BERT-CRF checkpoint as save_pretrained writes it (read-only: copy it to change it)."""
    return write_crf_checkpoint(tmp_path_factory.mktemp("tiny_bert_crf"))


def load_crf_pipeline(folder, **options):
    """The CRF pipeline over a BERT-CRF or BiLSTM-CRF checkpoint folder, built from this repo's classes (no remote
    code)."""
    from bertcrf import crf_models

    return crf_models.load_crf_pipeline(str(folder), device="cpu", **options)


@pytest.fixture(scope="session")
def crf_pipeline(crf_checkpoint):
    """The in-process CRF pipeline of `crf_checkpoint` (shared: do not modify; monkeypatch attributes if needed)."""
    return load_crf_pipeline(crf_checkpoint)


# ----------------------------------------------------------------------------------------------------------------
# A tiny BiLSTM-CRF student checkpoint over the tiny BERT-CRF's tokenizer and labels.


def write_student_checkpoint(folder, teacher_folder, seed: int = 0):
    """A tiny random BiLSTM-CRF with `teacher_folder`'s labels and tokenizer, saved like distill.py saves one."""
    from bertcrf import crf_models
    from configuration_bert_crf import BertCrfConfig
    from configuration_bilstm_crf import BiLstmCrfConfig
    from modeling_bilstm_crf import BiLstmCrfForTokenClassification

    teacher = BertCrfConfig.from_pretrained(teacher_folder)
    tokenizer = crf_models.load_tokenizer(str(teacher_folder))
    config = BiLstmCrfConfig(
        vocab_size=teacher.vocab_size,
        embedding_size=16,
        hidden_size=12,
        num_hidden_layers=2,
        max_position_embeddings=teacher.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(teacher.id2label),
        label2id=dict(teacher.label2id),
        special_token_ids=sorted(tokenizer.all_special_ids),
    )
    torch.manual_seed(seed)
    return save_with_strong_classifier(BiLstmCrfForTokenClassification(config), tokenizer, folder, 1.0)


@pytest.fixture(scope="session")
def student_checkpoint(crf_checkpoint, tmp_path_factory):
    """Folder of a tiny BiLSTM-CRF checkpoint (read-only)."""
    return write_student_checkpoint(tmp_path_factory.mktemp("tiny_bilstm_crf"), crf_checkpoint)


def untrusted_copy(folder, target):
    """A copy of checkpoint `folder` whose tokenizer_config.json points AutoTokenizer at a local file that writes
    `target/RAN` when imported: a tool that loads it without being asked to trust remote code must not run it.
    Returns (copy, marker)."""
    import json
    import shutil

    copy = Path(target) / "untrusted"
    shutil.copytree(folder, copy)
    marker = Path(target) / "RAN"
    (copy / "evil_tokenizer.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import BertTokenizer as EvilTokenizer\n",
        encoding="utf-8",
    )
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", "evil_tokenizer.EvilTokenizer"]}
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return copy, marker


# ----------------------------------------------------------------------------------------------------------------
# Tiny random pretrained checkpoints of every encoder family (tests/test_families.py): each saved bare (e.g.
# ErnieModel) and with its pretraining head (e.g. ErnieForMaskedLM), beside a tokenizer that fits.

# (family model_type, bare class, class with the pretraining head, config class, config overrides), by family name.
FAMILY_SOURCES = {
    "ernie": (
        "ernie",
        "ErnieModel",
        "ErnieForMaskedLM",
        "ErnieConfig",
        dict(use_task_id=True, task_type_vocab_size=3, pad_token_id=0),
    ),
    "roberta": (
        "roberta",
        "RobertaModel",
        "RobertaForMaskedLM",
        "RobertaConfig",
        dict(type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    ),
    "xlm-roberta": (
        "xlm-roberta",
        "XLMRobertaModel",
        "XLMRobertaForMaskedLM",
        "XLMRobertaConfig",
        dict(type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    ),
    "electra": (
        "electra",
        "ElectraModel",
        "ElectraForPreTraining",
        "ElectraConfig",
        dict(embedding_size=16, pad_token_id=0),
    ),
}
FAMILY_VARIANTS = ("bare", "head")
# RoBERTa-style vocabularies: these specials first (<s> 0, <pad> 1, </s> 2, <unk> 3), the demo characters and some
# Latin words, <mask> last.
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def write_bert_vocab_tokenizer(folder) -> int:
    """The tiny BERT tokenizer files (vocab.txt over the demo characters) in `folder`; returns the vocabulary size."""
    import json

    vocab = {}
    for token in [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *demo_characters(),
        *EXTRA_WORDPIECES,
        *CRF_EXTRA_TOKENS,
    ]:
        vocab.setdefault(token, None)
    (Path(folder) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (Path(folder) / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 64}),
        encoding="utf-8",
    )
    return len(vocab)


def write_roberta_style_tokenizer(folder) -> int:
    """A RoBERTa/XLM-R style fast tokenizer (<s> text </s>, <pad> 1, right padding) over the demo characters, built
    with the `tokenizers` library: word-level, CJK characters split apart as BERT's normalizer does. Returns the
    vocabulary size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {}
    for token in [*ROBERTA_SPECIALS, *demo_characters(), "new", "york", "the", "play", *CRF_EXTRA_TOKENS, "<mask>"]:
        if not token.startswith("##"):
            vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=64,
        padding_side="right",
    )
    tokenizer.save_pretrained(folder)
    return len(vocab)


def write_family_checkpoint(folder, family: str, variant: str, seed: int = 1234):
    """A tiny random pretrained checkpoint of `family` (a key of FAMILY_SOURCES) in `folder`: the bare body
    (`variant` "bare") or the body with its pretraining head ("head"), and its tokenizer. Returns the folder."""
    import transformers

    _, bare, with_head, config_name, overrides = FAMILY_SOURCES[family]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if family in ("roberta", "xlm-roberta"):
        vocab_size = write_roberta_style_tokenizer(folder)
    else:
        vocab_size = write_bert_vocab_tokenizer(folder)
    config = getattr(transformers, config_name)(vocab_size=vocab_size, **(TINY_CHECKPOINT_BERT | overrides))
    torch.manual_seed(seed)
    model = getattr(transformers, bare if variant == "bare" else with_head)(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory):
    """`family_checkpoint(family, variant)`: the folder of that tiny pretrained checkpoint, written once per session
    (read-only: copy it to change it)."""
    folders = {}

    def get(family: str, variant: str = "bare"):
        if (family, variant) not in folders:
            folder = tmp_path_factory.mktemp(f"{family}_{variant}")
            folders[family, variant] = write_family_checkpoint(folder, family, variant)
        return folders[family, variant]

    return get


# ----------------------------------------------------------------------------------------------------------------
# A SentencePiece-style (Unigram, "▁" word starts, XLM-R ids) tokenizer, as multilingual-e5 and XLM-R have, over
# the demo characters, and a tiny BERT-CRF that reads it.


def write_sentencepiece_tokenizer(folder) -> int:
    """A Unigram tokenizer with a Metaspace pre-tokenizer: a Chinese sentence is one word to it, and a character fed
    alone comes out as "▁" then the character unless "▁<char>" is a piece (here: for the first 40 characters).
    Returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in demo_characters() if not c.isspace()]
    pieces = [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        "\u2581",
        *chars,
        *(f"\u2581{c}" for c in chars[:40]),
        "\u2581new",
        "york",
    ]
    vocab = [(piece, 0.0 if i < 4 else -1.0 - 0.001 * i) for i, piece in enumerate(dict.fromkeys(pieces))]
    vocab.append(("<mask>", 0.0))
    backend = Tokenizer(models.Unigram(vocab, unk_id=3))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=CRF_MAX_POSITIONS,
    )
    tokenizer.save_pretrained(folder)
    return len(vocab)


@pytest.fixture(scope="session")
def sentencepiece_checkpoint(tmp_path_factory):
    """A tiny BERT-CRF checkpoint with the SentencePiece-style tokenizer (read-only)."""
    from configuration_bert_crf import BertCrfConfig
    from modeling_bert_crf import BertCrfForTokenClassification

    folder = tmp_path_factory.mktemp("tiny_sentencepiece_crf")
    vocab_size = write_sentencepiece_tokenizer(folder)
    config = BertCrfConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        type_vocab_size=2,
        vocab_size=vocab_size,
        max_position_embeddings=CRF_MAX_POSITIONS,
        pad_token_id=1,
        id2label=dict(enumerate(CRF_LABELS)),
        label2id={label: i for i, label in enumerate(CRF_LABELS)},
    )
    torch.manual_seed(5)
    model = BertCrfForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
        model.classifier.bias.zero_()
    model.save_pretrained(folder)
    return folder


def write_demo_lexicon(folder):
    """A word<TAB>TYPE file of the demo training entities and a jieba-style file of a few words."""
    from bertcrf import ner_data

    typed = set()
    for example in ner_data.read_column_file(DEMO_DIR / "train.txt"):
        for kind, first, last in ner_data.tags_to_spans(example["tags"], "BIO"):
            typed.add(("".join(example["tokens"][first:last]), kind))
    tsv = Path(folder) / "entities.tsv"
    tsv.write_text("".join(f"{word}\t{kind}\n" for word, kind in sorted(typed)), encoding="utf-8")
    jieba = Path(folder) / "jieba.txt"
    jieba.write_text("北京 100 ns\n公司 50 n\n在\n", encoding="utf-8")
    return tsv, jieba


@pytest.fixture(scope="session")
def lexicon_checkpoint(tmp_path_factory, tiny_checkpoint):
    """A tiny BERT-CRF trained by run_ner.py on 64 demo sentences with --lexicon (the demo's entities and a few
    jieba lines), --layer_mix and --layer_lr_decay (read-only)."""
    import run_ner

    folder = tmp_path_factory.mktemp("lexicon")
    tsv, jieba = write_demo_lexicon(folder)
    out = folder / "run"
    options = dict(
        model_name_or_path=tiny_checkpoint,
        train_file=DEMO_DIR / "train.txt",
        test_file=DEMO_DIR / "test.txt",
        output_dir=out,
        do_train=True,
        do_predict=True,
        max_train_samples=64,
        max_predict_samples=30,
        num_train_epochs=6,
        max_seq_length=32,
        extend_vocab=True,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        head_learning_rate=1e-2,
        crf_learning_rate=5e-2,
        save_strategy="no",
        seed=42,
        layer_mix=True,
        layer_lr_decay=0.9,
        report_to="none",
        disable_tqdm=True,
    )
    argv = [item for key, value in options.items() for item in (f"--{key}", str(value))]
    run_ner.main(argv + ["--lexicon", str(tsv), str(jieba)])
    return out
