"""The repo's CRF taggers by model type, for the scripts (run_ner.py, distill.py, tag.py, export_onnx.py): they
load any of them with this repo's code, no remote code needed. Also the encoder families run_ner.py fine-tunes
(a BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA body with the CRF head, or with the family's stock softmax head)."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import huggingface_hub
import transformers
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from configuration_bilstm_crf import BiLstmCrfConfig
from modeling_bert_crf import BertCrfForTokenClassification, CrfTaggingMixin
from modeling_bilstm_crf import BiLstmCrfForTokenClassification
from modeling_electra_crf import ElectraCrfForTokenClassification
from modeling_encoder_crf import EncoderCrfMixin
from modeling_ernie_crf import ErnieCrfForTokenClassification
from modeling_roberta_crf import RobertaCrfForTokenClassification
from modeling_xlm_roberta_crf import XLMRobertaCrfForTokenClassification
from ner_windows import OFFSET_POSITION_TYPES


@dataclass(frozen=True)
class Family:
    """An encoder family: the body's model type, its CRF tagger, and its stock softmax tagger (`--head softmax`)."""

    model_type: str
    crf_class: type
    softmax_class: type

    @property
    def config_class(self) -> type:
        return self.crf_class.config_class


# The encoder families run_ner.py fine-tunes: adding one is a file at the top (see docs/model.md) and a line here.
FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("bert", BertCrfForTokenClassification, transformers.BertForTokenClassification),
        Family("ernie", ErnieCrfForTokenClassification, transformers.ErnieForTokenClassification),
        Family("roberta", RobertaCrfForTokenClassification, transformers.RobertaForTokenClassification),
        Family("xlm-roberta", XLMRobertaCrfForTokenClassification, transformers.XLMRobertaForTokenClassification),
        Family("electra", ElectraCrfForTokenClassification, transformers.ElectraForTokenClassification),
    )
}

MODEL_CLASSES: dict[str, type] = {
    **{family.config_class.model_type: family.crf_class for family in FAMILIES.values()},
    BiLstmCrfConfig.model_type: BiLstmCrfForTokenClassification,
}

# AutoConfig / AutoModelForTokenClassification then know every type in this process.
for _config, _model in [
    *((f.config_class, f.crf_class) for f in FAMILIES.values()),
    (BiLstmCrfConfig, BiLstmCrfForTokenClassification),
]:
    transformers.AutoConfig.register(_config.model_type, _config, exist_ok=True)
    transformers.AutoModelForTokenClassification.register(_config, _model, exist_ok=True)


def family_of(model_type: str | None) -> Family:
    """The family of a body's model type ("ernie") or of a trained CRF tagger's ("ernie_crf"); a ValueError naming
    the supported ones otherwise."""
    for family in FAMILIES.values():
        if model_type in (family.model_type, family.config_class.model_type):
            return family
    supported = sorted(FAMILIES) + sorted(f.config_class.model_type for f in FAMILIES.values())
    raise ValueError(f"model_type {model_type!r} is not supported; supported model types: {', '.join(supported)}")


# Weights of a pretrained checkpoint that a token classifier may leave unused: the pooler and pretraining heads
# (masked-LM, next-sentence, ELECTRA's discriminator and generator heads).
UNUSED_PRETRAINING_WEIGHTS = re.compile(
    r"(^|\.)(pooler|cls|lm_head|generator_predictions|generator_lm_head|discriminator_predictions)\."
)
# The token classifier's own head: it may be new (missing from the checkpoint), and a trained tagger's may go unused
# (a CRF tagger's CRF under the softmax head).
HEAD_WEIGHTS = re.compile(r"^(classifier|crf|lexicon_embeddings|layer_mix)\.")
ENCODER_LAYER = re.compile(r"(^|\.)encoder\.layer\.(\d+)\.")


def without_cut_layers(info: dict[str, Iterable[str]], kept: int | None) -> dict:
    """`info` without the unused weights of the encoder layers a `--num_hidden_layers` cut left out (layers from
    `kept` on). `kept` None: unchanged."""
    if kept is None:
        return info

    def dropped(key: str) -> bool:
        match = ENCODER_LAYER.search(key)
        return match is not None and int(match.group(2)) >= kept

    return dict(info, unexpected_keys=[k for k in info.get("unexpected_keys", ()) if not dropped(k)])


def check_padding_id(config: Any, tokenizer: Any, source: str) -> None:
    """Refuse a RoBERTa or XLM-R body whose config's `pad_token_id` is not the tokenizer's padding id. Such bodies
    number positions from `pad_token_id + 1`, and the Trainer rewrites the config's id to the tokenizer's before
    training: the saved model would then number every position differently from the body it was trained as."""
    model_type = getattr(config, "model_type", None)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if model_type not in OFFSET_POSITION_TYPES or pad_id is None or config.pad_token_id == pad_id:
        return
    raise ValueError(
        f"{source}: its {model_type} config has pad_token_id {config.pad_token_id} but the tokenizer pads with id "
        f"{pad_id}. A {model_type} body numbers positions from pad_token_id + 1, so the fine-tuned model would "
        "shift every position; use the checkpoint's own tokenizer, or a config (--config_name) whose pad_token_id is "
        f"{pad_id}"
    )


def check_loading_info(info: dict[str, Iterable[str]], source: str) -> None:
    """Raise a ValueError naming every encoder weight that `from_pretrained(..., output_loading_info=True)` found
    missing from `source` or left unused in it: the body would otherwise be silently random or incomplete (a
    checkpoint of another family, a renamed prefix, a truncated file). The classifier and the CRF may be new or go
    unused; the pooler and pretraining heads may go unused."""
    encoder = [
        k
        for k in (*info.get("missing_keys", ()), *info.get("unexpected_keys", ()))
        if not HEAD_WEIGHTS.search(k) and not UNUSED_PRETRAINING_WEIGHTS.search(k)
    ]
    missing = sorted(k for k in encoder if k in set(info.get("missing_keys", ())))
    unused = sorted(k for k in encoder if k not in set(info.get("missing_keys", ())))
    problems = []
    if missing:
        problems.append(f"encoder weights missing from the checkpoint (they would be random): {', '.join(missing)}")
    if unused:
        problems.append(f"checkpoint weights the model does not use: {', '.join(unused)}")
    if problems:
        raise ValueError(f"{source} does not fit the model: " + "; ".join(problems))


def check_model_path(path: str) -> None:
    """Stop early, with a message naming `path`, when it is neither a local folder nor shaped like a Hub id
    (transformers would answer with the Hub's "Repo id must be ..."). A Hub-shaped id that is no folder here is
    left to `hub_errors`, since only loading it can tell."""
    local = Path(path).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise NotADirectoryError(f"{path} is a file: a model is a folder (with config.json) or a Hub id")
    try:
        validate_repo_id(path)
    except HFValidationError:
        raise FileNotFoundError(
            f"{path}: no such folder. A model is a local folder or a Hub id such as org/name (which needs network "
            "access)"
        ) from None


@contextlib.contextmanager
def hub_errors(path: str) -> Iterator[None]:
    """Say that `path` is no folder here when loading it as a Hub id fails (offline, or no such repository)."""
    try:
        yield
    except OSError as error:
        if Path(path).expanduser().exists():
            raise
        offline = " (HF_HUB_OFFLINE is set)" if huggingface_hub.constants.HF_HUB_OFFLINE else ""
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(
            f"{path}: no such folder, and loading it as a Hub id failed: a Hub id needs network access{offline} "
            f"or a copy in the Hub cache ({first_line})"
        ) from error


def check_device(device: str | None) -> None:
    """A ValueError that says what is wrong with `device` (an unknown name, CUDA or MPS absent, an index past the
    GPUs), where torch would raise an AssertionError ("Torch not compiled with CUDA enabled") or a RuntimeError."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"--device {device!r} is not a device torch knows: use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise ValueError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}, {built}, "
                f"{torch.cuda.device_count()} GPUs found): use --device cpu, or leave --device out"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: there are {torch.cuda.device_count()} GPUs (cuda:0 to cuda:N-1)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here: use --device cpu, or leave --device out")


def load_crf_model(path: str, eager_attention: bool = False, **kwargs: Any) -> CrfTaggingMixin:
    """A CRF tagger checkpoint of any family or a BiLSTM-CRF (folder or Hub id), by the model type in its config;
    with `eager_attention`, the encoder's attention as plain operators (for export). A path that is neither a
    folder nor a loadable Hub id is a FileNotFoundError that says so."""
    check_model_path(path)
    with hub_errors(path):
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    model_class = MODEL_CLASSES.get(getattr(config, "model_type", None))
    if model_class is None:
        raise ValueError(
            f"{path} is a {config.model_type!r} model, not one of {sorted(MODEL_CLASSES)}: train it with "
            "run_ner.py or distill.py first"
        )
    if eager_attention and issubclass(model_class, EncoderCrfMixin):
        kwargs["attn_implementation"] = "eager"
    return model_class.from_pretrained(path, config=config, **kwargs)


def load_tokenizer(path: str, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """The tokenizer of a checkpoint (folder or Hub id), without running code from it unless `trust_remote_code`.

    The config is loaded here (this repo's model types need no remote code) and handed over, because
    `AutoTokenizer` otherwise loads it itself and asks whether to run the config's remote code."""
    check_model_path(path)
    try:
        config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError):  # no config, or a model type only remote code knows: AutoTokenizer decides
        with hub_errors(path):
            return transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    return transformers.AutoTokenizer.from_pretrained(
        path, config=config, trust_remote_code=trust_remote_code, **kwargs
    )


def load_crf_pipeline(
    path: str,
    device: str | None = None,
    trust_remote_code: bool = False,
    precision: str | None = None,
    compile: bool = False,
) -> Any:
    """The CRF pipeline for a CRF tagger folder or Hub id (any family, or a BiLSTM-CRF), with this repo's code;
    only the tokenizer could need remote code, and runs it only with `trust_remote_code`. `precision` and `compile`
    are the pipeline's (see ner_acceleration.py)."""
    import torch

    from pipeline_bert_crf import CrfTokenClassificationPipeline

    check_device(device)
    return CrfTokenClassificationPipeline(
        model=load_crf_model(path).eval(),
        tokenizer=load_tokenizer(path, trust_remote_code),
        task="token-classification",
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        precision=precision,
        compile=compile,
    )
