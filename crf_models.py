"""The repo's CRF taggers by model type, for the scripts (run_ner.py, distill.py, tag.py, export_onnx.py): they
load either kind of checkpoint with this repo's code, no remote code needed."""

from __future__ import annotations

from typing import Any

import transformers

from configuration_bert_crf import BertCrfConfig
from configuration_bilstm_crf import BiLstmCrfConfig
from modeling_bert_crf import BertCrfForTokenClassification, CrfTaggingMixin
from modeling_bilstm_crf import BiLstmCrfForTokenClassification

MODEL_CLASSES: dict[str, type] = {
    BertCrfConfig.model_type: BertCrfForTokenClassification,
    BiLstmCrfConfig.model_type: BiLstmCrfForTokenClassification,
}

# AutoConfig / AutoModelForTokenClassification then know both types in this process.
for _config, _model in ((BertCrfConfig, BertCrfForTokenClassification), (BiLstmCrfConfig, BiLstmCrfForTokenClassification)):
    transformers.AutoConfig.register(_config.model_type, _config, exist_ok=True)
    transformers.AutoModelForTokenClassification.register(_config, _model, exist_ok=True)


def load_crf_model(path: str, eager_attention: bool = False, **kwargs: Any) -> CrfTaggingMixin:
    """A bert-crf or BiLSTM-CRF checkpoint (folder or Hub id), by the model type in its config; with
    `eager_attention`, BERT's attention as plain operators (for export)."""
    config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    model_class = MODEL_CLASSES.get(getattr(config, "model_type", None))
    if model_class is None:
        raise ValueError(f"{path} is a {config.model_type!r} model, not one of {sorted(MODEL_CLASSES)}: train it with "
                         "run_ner.py or distill.py first")
    if eager_attention and model_class is BertCrfForTokenClassification:
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
    return transformers.AutoTokenizer.from_pretrained(path, config=config, trust_remote_code=trust_remote_code, **kwargs)


def load_crf_pipeline(path: str, device: str | None = None, trust_remote_code: bool = False) -> Any:
    """The CRF pipeline for a bert-crf or BiLSTM-CRF folder or Hub id, with this repo's code; only the tokenizer
    could need remote code, and runs it only with `trust_remote_code`."""
    import torch

    from pipeline_bert_crf import BertCrfTokenClassificationPipeline

    return BertCrfTokenClassificationPipeline(
        model=load_crf_model(path).eval(), tokenizer=load_tokenizer(path, trust_remote_code), task="token-classification",
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
    )
