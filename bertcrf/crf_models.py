"""The repo's CRF taggers by model type, for the scripts (run_ner.py, distill.py, tag.py, export_onnx.py): they
load any of them with this repo's code, no remote code needed. Also the encoder families run_ner.py fine-tunes
(a BERT, ERNIE, RoBERTa, XLM-RoBERTa or ELECTRA body with the CRF head, or with the family's stock softmax head)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

import transformers

from configuration_bert_crf import BertCrfConfig
from configuration_bilstm_crf import BiLstmCrfConfig
from configuration_electra_crf import ElectraCrfConfig
from configuration_ernie_crf import ErnieCrfConfig
from configuration_roberta_crf import RobertaCrfConfig
from configuration_xlm_roberta_crf import XLMRobertaCrfConfig
from modeling_bert_crf import BertCrfForTokenClassification, CrfTaggingMixin
from modeling_bilstm_crf import BiLstmCrfForTokenClassification
from modeling_crf import EncoderCrfMixin
from modeling_electra_crf import ElectraCrfForTokenClassification
from modeling_ernie_crf import ErnieCrfForTokenClassification
from modeling_roberta_crf import RobertaCrfForTokenClassification
from modeling_xlm_roberta_crf import XLMRobertaCrfForTokenClassification


@dataclass(frozen=True)
class Family:
    """An encoder family: the body's model type, its CRF tagger and config, and its stock softmax tagger."""

    model_type: str
    config_class: type
    crf_class: type
    softmax_class: type


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("bert", BertCrfConfig, BertCrfForTokenClassification, transformers.BertForTokenClassification),
        Family("ernie", ErnieCrfConfig, ErnieCrfForTokenClassification, transformers.ErnieForTokenClassification),
        Family(
            "roberta", RobertaCrfConfig, RobertaCrfForTokenClassification, transformers.RobertaForTokenClassification
        ),
        Family(
            "xlm-roberta",
            XLMRobertaCrfConfig,
            XLMRobertaCrfForTokenClassification,
            transformers.XLMRobertaForTokenClassification,
        ),
        Family(
            "electra", ElectraCrfConfig, ElectraCrfForTokenClassification, transformers.ElectraForTokenClassification
        ),
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
HEAD_WEIGHTS = re.compile(r"^(classifier|crf)\.")


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


def load_crf_model(path: str, eager_attention: bool = False, **kwargs: Any) -> CrfTaggingMixin:
    """A CRF tagger checkpoint of any family or a BiLSTM-CRF (folder or Hub id), by the model type in its config;
    with `eager_attention`, the encoder's attention as plain operators (for export)."""
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
    try:
        config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError):  # no config, or a model type only remote code knows: AutoTokenizer decides
        return transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    return transformers.AutoTokenizer.from_pretrained(
        path, config=config, trust_remote_code=trust_remote_code, **kwargs
    )


def load_crf_pipeline(path: str, device: str | None = None, trust_remote_code: bool = False) -> Any:
    """The CRF pipeline for a CRF tagger folder or Hub id (any family, or a BiLSTM-CRF), with this repo's code;
    only the tokenizer could need remote code, and runs it only with `trust_remote_code`."""
    import torch

    from pipeline_bert_crf import BertCrfTokenClassificationPipeline

    return BertCrfTokenClassificationPipeline(
        model=load_crf_model(path).eval(),
        tokenizer=load_tokenizer(path, trust_remote_code),
        task="token-classification",
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
    )
