#!/usr/bin/env python
"""A web demo of a bert-crf named-entity recognizer: type a text, see its entities highlighted by type, with the
CRF's scores. It follows the Hugging Face Spaces convention (a Gradio `app.py` at the top of the repository).

    python app.py                                   # outputs/demo (run `make demo` first)
    python app.py --model outputs/mine --port 7861  # any run_ner.py output folder, or a Hub id
    cd outputs/demo && python app.py                # inside an output folder: its own model

run_ner.py copies this file and a requirements.txt into every output folder, so the folder serves its own demo
and works as a Gradio Space. It therefore imports only gradio, torch, transformers and the files that travel with
checkpoints (pipeline_bert_crf.py, the model code), which sit beside it in the repository and in an output folder
alike; never the `bertcrf` library. Texts of any length go through the CRF pipeline's overlapping windows, never
truncated.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence


# The shipped model code sits beside this file (`python app.py` puts this folder first on sys.path).
APP_DIR = Path(__file__).resolve().parent
# No telemetry and no version check unless asked for: the demo also runs offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (after the setting above, which gradio reads on import)
import torch  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub import ModelCard, metadata_load  # noqa: E402


# Inside an output folder (a Space), the folder's own model; in the repository, the one `make demo` trains.
DEFAULT_MODEL = str(APP_DIR) if (APP_DIR / "config.json").is_file() else str(APP_DIR / "outputs" / "demo")
# The characters of one request (the text box's whole text), as handler.py's default `max_request_chars`: one request
# cannot hold the demo for minutes (README, "Inference": seconds per maximal request on a 2-core CPU).
DEFAULT_MAX_CHARS = 10_000
# Everyday sentences (data/check/everyday.txt): names, places and organisations the demo's training text lacks.
EXAMPLES = [
    "张伟昨天从杭州出差回来，给大家带了龙井茶。",
    "王晓峰在阿里巴巴做了五年产品经理。",
    "我妈妈在浦东的招商银行排了一个小时的队。",
    "陈思远和赵敏都是暨南大学的校友。",
    "明天的航班从首都机场起飞，经停郑州到大理。",
    "杨帆是人民医院的护士长，已经工作了十年。",
    "小米的新手机据说下周在合肥发布。",
    "今天天气不错，适合出去走走。",
]
# Colours of the usual entity types; other types get the rest in turn.
TYPE_COLORS = {"PER": "#f59e0b", "LOC": "#22c55e", "ORG": "#3b82f6"}
PALETTE = ["#ec4899", "#a855f7", "#14b8a6", "#ef4444", "#84cc16", "#06b6d4", "#f97316", "#6366f1"]
TABLE_HEADERS = ["entity", "type", "score", "start", "end"]

_state: dict[str, Any] = {"ner": None, "max_chars": DEFAULT_MAX_CHARS, "dictionary": None}


class ModelNotFound(Exception):
    """The model folder or Hub id cannot be loaded; the message says what to do."""


# What each `auto_map` entry app.py reads must name, and an example.
AUTO_MAP_EXPECTED = {
    "AutoConfig": ("a configuration class (a transformers PretrainedConfig)", "configuration_bert_crf.BertCrfConfig"),
    "AutoModelForTokenClassification": (
        "a model class (a transformers PreTrainedModel with a CRF)",
        "modeling_bert_crf.BertCrfForTokenClassification",
    ),
}


def _config_file(model: str) -> str:
    """How messages name the config.json of a folder or Hub id."""
    return str(Path(model) / "config.json") if Path(model).is_dir() else f"config.json of {model}"


def _local_class(model: str, auto_map: dict[str, Any], key: str) -> type | None:
    """The class the `auto_map` entry `key` names ("modeling_bert_crf.BertCrfForTokenClassification", or with a Hub
    repo prefix "user/repo--modeling_...") when its module sits beside this file, else None; a ModelNotFound naming
    the file, the key and what was expected when the entry names no such class, or a class of another kind."""
    reference = auto_map.get(key)
    if not reference:
        return None
    expected, example = AUTO_MAP_EXPECTED[key]
    where = f'{_config_file(model)}: auto_map["{key}"] is {reference!r}'
    module_name, _, class_name = reference.split("--")[-1].rpartition(".") if isinstance(reference, str) else ("",) * 3
    if not (module_name and class_name):
        raise ModelNotFound(f'{where}: expected "module.Class" naming {expected}, e.g. "{example}"')
    if not (APP_DIR / f"{module_name}.py").is_file():
        return None
    found = getattr(importlib.import_module(module_name), class_name, None)
    base = transformers.PretrainedConfig if key == "AutoConfig" else transformers.PreTrainedModel
    if isinstance(found, type) and issubclass(found, base):
        return found
    if found is None:
        what = f"which {module_name}.py beside {Path(__file__).name} does not define"
    elif isinstance(found, type) and issubclass(found, transformers.PretrainedConfig):
        what = "a configuration class"
    elif isinstance(found, type) and issubclass(found, transformers.PreTrainedModel):
        what = "a model class"
    elif isinstance(found, type):
        bases = ", ".join(base.__name__ for base in found.__mro__[1:-1]) or "object"
        what = f"a class that is neither a model nor a configuration (bases: {bases})"
    else:
        what = f"a {type(found).__name__}, not a class"
    raise ModelNotFound(f'{where}, {what}: expected {expected}, e.g. "{example}"')


def load_pipeline(model: str, device: str | None = None, trust_remote_code: bool = False) -> Any:
    """The CRF pipeline of a CRF tagger folder or Hub id, built from the model code beside this file (the
    repository's, or the output folder's own copy), so no code runs from elsewhere; a folder whose code is not
    here needs `trust_remote_code`. A model without a CRF (`--head softmax`) gets transformers' stock pipeline."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        config_dict, _ = transformers.PretrainedConfig.get_config_dict(model)
    except OSError as error:
        raise ModelNotFound(f"{model} is no model folder here, and its config cannot be loaded: {error}") from None
    auto_map = config_dict.get("auto_map") or {}
    if not isinstance(auto_map, dict):
        raise ModelNotFound(
            f"{_config_file(model)}: auto_map is {auto_map!r}: expected an object naming the classes of the model's "
            'code, e.g. {"AutoModelForTokenClassification": "modeling_bert_crf.BertCrfForTokenClassification"}'
        )
    if not auto_map:  # a stock transformers model: its own pipeline, long texts in overlapping windows
        tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        stride = min(tokenizer.model_max_length, 512) // 4 if tokenizer.is_fast else None
        return transformers.pipeline(
            "token-classification",
            model=model,
            tokenizer=tokenizer,
            device=device,
            stride=stride,
            aggregation_strategy="simple",
        )
    config_class = _local_class(model, auto_map, "AutoConfig")
    model_class = _local_class(model, auto_map, "AutoModelForTokenClassification")
    if config_class is not None and model_class is not None:
        from pipeline_bert_crf import CrfTokenClassificationPipeline

        # AutoTokenizer looks the model type up when the tokenizer config names no class.
        transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        config = config_class.from_pretrained(model)
        tagger = model_class.from_pretrained(model, config=config).eval()
        try:
            return CrfTokenClassificationPipeline(
                model=tagger,
                tokenizer=transformers.AutoTokenizer.from_pretrained(model, config=config),
                task="token-classification",
                device=device,
            )
        except ValueError as error:  # a model without a CRF
            raise ModelNotFound(
                f'{_config_file(model)}: auto_map["AutoModelForTokenClassification"] is '
                f"{auto_map['AutoModelForTokenClassification']!r}: {error}"
            ) from None
    if not trust_remote_code:
        raise ModelNotFound(
            f"{model} needs model code that is not beside {Path(__file__).name} ({auto_map}): pass "
            "--trust_remote_code to run the model's own code"
        )
    return transformers.pipeline("token-classification", model=model, device=device, trust_remote_code=True)


def set_pipeline(ner: Any, max_chars: int = DEFAULT_MAX_CHARS, dictionary: dict[str, str] | None = None) -> None:
    """Serve `ner` (a pipeline from `load_pipeline`): `predict` and the web page use it, with `dictionary`
    ({word: TYPE or "O"}) forced on every text when given. A dictionary the model cannot take is a ValueError."""
    _state["ner"], _state["max_chars"], _state["dictionary"] = ner, max_chars, None
    if dictionary:
        # Checked and indexed once, by the pipeline's own code (the checkpoint's ner_lexicon).
        check = getattr(sys.modules[type(ner).__module__], "checked_dictionary", None)
        if check is None:
            raise ValueError(
                f"the model's pipeline code ({type(ner).__module__}) predates dictionaries: copy this repository's "
                "pipeline_bert_crf.py and the ner_*.py files into the model folder"
            )
        _state["dictionary"] = check(dictionary, ner.model.config.id2label.values())


def read_dictionary(path: str) -> dict[str, str]:
    """`word<TAB>TYPE` lines (TYPE O forbids the word) as a dict; a ValueError naming the file and line of a
    malformed one, or a word given two types."""
    dictionary: dict[str, str] = {}
    with open(path, encoding="utf-8-sig") as source:
        for number, line in enumerate(source, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            word, tab, kind = line.partition("\t")
            if not tab or not word.strip() or not kind.strip() or "\t" in kind:
                raise ValueError(f"{path}:{number}: expected word<TAB>TYPE, found {line!r}")
            if dictionary.get(word.strip(), kind.strip()) != kind.strip():
                raise ValueError(f"{path}:{number}: {word.strip()!r} is {dictionary[word.strip()]} on an earlier line")
            dictionary[word.strip()] = kind.strip()
    return dictionary


def _pipeline() -> Any:
    if _state["ner"] is None:
        set_pipeline(load_pipeline(check_model(DEFAULT_MODEL)), _state["max_chars"])
    return _state["ner"]


def entities(text: str) -> list[dict[str, Any]]:
    """The pipeline's entities of `text` (`{"entity_group", "score", "word", "start", "end"}`), the whole text
    through overlapping windows; a gr.Error (shown on the page) for a text over the length limit or one that is
    not valid Unicode."""
    if not isinstance(text, str):
        raise gr.Error(f"expected a text, got {type(text).__name__}")
    if len(text) > _state["max_chars"]:
        raise gr.Error(
            f"The text has {len(text)} characters, more than this demo's limit of {_state['max_chars']} "
            "(start it with --max_chars to raise it)."
        )
    if not text.strip():
        return []
    try:
        options = {"dictionary": _state["dictionary"]} if _state["dictionary"] is not None else {}
        found = _pipeline()(text, aggregation_strategy="simple", **options)
    except ValueError as error:  # a lone surrogate, which JSON can carry
        raise gr.Error(str(error)) from None
    # The stock pipeline's `word` is decoded from sub-tokens ("张 三"): the text's own characters instead.
    return [
        {
            **e,
            "score": float(e["score"]),
            "word": text[e["start"] : e["end"]],
            "start": int(e["start"]),
            "end": int(e["end"]),
        }
        for e in found
    ]


def predict(text: str) -> tuple[dict[str, Any], list[list[Any]]]:
    """What the page shows for `text`: the text with its entities for gr.HighlightedText (the pipeline's entity
    dicts as they are), and one table row per entity with its score (the CRF's marginal probability)."""
    found = entities(text)
    rows = [[e["word"], e["entity_group"], round(e["score"], 4), e["start"], e["end"]] for e in found]
    return {"text": text, "entities": found}, rows


def entity_types(ner: Any) -> list[str]:
    """The model's entity types, from its labels ("B-PER" -> "PER"), in label order."""
    types: dict[str, None] = {}
    for label in ner.model.config.id2label.values():
        if label != "O":
            types.setdefault(label.split("-", 1)[1] if re.match(r"^[BIESMLU]-", label) else label, None)
    return list(types)


def _readme(model: str) -> str | None:
    """The path of the model card (README.md) of a folder or Hub id; None when there is none."""
    try:
        return transformers.utils.cached_file(
            model,
            "README.md",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        return None


def _card(model: str) -> ModelCard | None:
    """The model card of a folder or Hub id, read by huggingface_hub; None when there is none."""
    readme = _readme(model)
    return ModelCard.load(readme, ignore_metadata_errors=True) if readme else None


def card_examples(model: str) -> list[str]:
    """The `widget` example texts of the model card's metadata (`widget: - text: ...`), if it has any."""
    card = _card(model)
    widget = card.data.to_dict().get("widget") if card is not None else None
    return [w["text"] for w in widget or [] if isinstance(w, dict) and isinstance(w.get("text"), str) and w["text"]]


def model_title(model: str) -> str:
    """What the page calls the model: the name in the card's model-index (the Hub id or the training run's folder;
    a Space's folder is called "app"), else the folder's name or the Hub id."""
    card = _card(model)
    name = card.data.model_name if card is not None else None
    if name is None and card is not None:  # a model-index with a name and no results, which ModelCard drops
        index = metadata_load(_readme(model)).get("model-index")
        name = index[0].get("name") if isinstance(index, list) and index and isinstance(index[0], dict) else None
    return name or (Path(model).resolve().name if Path(model).is_dir() else model)


def card_figures(model: str) -> str:
    """The card's evaluations as one Markdown line each: data, split, entity F1 and the scores' calibration error."""
    card = _card(model)
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for result in (card.data.eval_results or []) if card is not None else []:
        rows.setdefault((result.dataset_name, result.dataset_split or ""), {})[result.metric_type] = (
            result.metric_value
        )
    lines = [
        f"- {name} ({split}): entity F1 {100 * values['f1']:.1f}"
        + (f", score calibration error (ECE) {values['ece']:.3f}" if "ece" in values else "")
        for (name, split), values in rows.items()
        if "f1" in values
    ]
    return "Measured (model card):\n" + "\n".join(lines) if lines else ""


def build_demo(ner: Any, model_name: str, examples: Sequence[str] = EXAMPLES, figures: str = "") -> gr.Blocks:
    """The page: a text box (its limit in characters shown below its label), the text with its entities highlighted
    by type, a table of the entities and their scores, and examples to click. Its API: `/predict` (what the page
    shows) and `/entities` (the pipeline's entity dicts)."""
    types = entity_types(ner)
    spare = iter(PALETTE * (1 + len(types) // len(PALETTE)))
    colors = {t: TYPE_COLORS.get(t) or next(spare) for t in types}
    with gr.Blocks(title=f"{model_name}: named-entity recognition") as demo:
        gr.Markdown(
            f"## {model_name}\nNamed-entity recognition with a BERT-CRF (bert-crf): "
            f"{', '.join(types) or 'no entity types'}. Scores are the CRF's marginal probabilities at the model's "
            "confidence temperature, averaged over an entity's characters; long texts go through overlapping windows "
            "and one Viterbi pass, never truncated." + (f"\n\n{figures}" if figures else "")
        )
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(
                    label="Text",
                    info=f"At most {_state['max_chars']:,} characters in all (--max_chars)",
                    lines=6,
                    max_lines=30,
                    placeholder=examples[0] if examples else "",
                )
                submit = gr.Button("Find entities", variant="primary", elem_id="submit")
            with gr.Column():
                highlighted = gr.HighlightedText(label="Entities", color_map=colors, elem_id="entities")
                table = gr.Dataframe(
                    headers=TABLE_HEADERS,
                    datatype=["str", "str", "number", "number", "number"],
                    label="Entities and scores",
                    interactive=False,
                    elem_id="scores",
                )
        # One tagging at a time across the page's events and the API: each request is bounded, and so is the wait.
        submit.click(predict, inputs=text, outputs=[highlighted, table], api_name="predict", concurrency_id="ner")
        text.submit(predict, inputs=text, outputs=[highlighted, table], api_visibility="private", concurrency_id="ner")
        if examples:
            gr.Examples(
                examples=[[e] for e in examples],
                inputs=text,
                outputs=[highlighted, table],
                fn=predict,
                run_on_click=True,
                cache_examples=False,
            )
        gr.api(entities, api_name="entities")
    # One tagging at a time, whichever event or API call asks (Gradio runs one per event by default, and the page has
    # four): each request is bounded, and so is the work running at once. gr.Examples takes no concurrency_id.
    for function in demo.fns.values():
        if function.fn in (predict, entities):
            function.concurrency_id = "ner"
    return demo


def check_model(model: str) -> str:
    """`model` if it is a folder with a config.json or may be a Hub id; a ModelNotFound saying what to do else."""
    path = Path(model)
    if path.resolve() == Path(DEFAULT_MODEL).resolve() and not (path / "config.json").is_file():
        raise ModelNotFound(
            f"{model} {'holds no model' if path.is_dir() else 'does not exist'}: run `make demo` first (it trains "
            "the demo model there), or pass --model with a run_ner.py output folder or a Hub id"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{model} holds no config.json: pass a run_ner.py output folder or a Hub id")
        return model
    if path.exists() or model.startswith((".", "/", "~")) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model):
        raise ModelNotFound(f"{model} is not a model folder (no such folder) nor a Hub id")
    return model  # a Hub id


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="a run_ner.py output folder or a Hub id (default: this folder when it holds a model, else outputs/demo)",
    )
    # Spaces set GRADIO_SERVER_NAME (0.0.0.0) and GRADIO_SERVER_PORT; elsewhere the demo listens on this machine only.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="default 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default Gradio's (7860, or the next free port)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument(
        "--max_chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help=f"most characters of one request, the text box's whole text (default {DEFAULT_MAX_CHARS}, as handler.py)",
    )
    parser.add_argument(
        "--dictionary",
        default=None,
        metavar="FILE",
        help="word<TAB>TYPE lines forced on every text: each occurrence one entity of TYPE, or none with TYPE O",
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="run the model's own code when it is not beside app.py"
    )
    args = parser.parse_args(argv)
    if args.max_chars < 1:
        parser.error(f"--max_chars must be a positive integer, got {args.max_chars}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        ner = load_pipeline(check_model(args.model), args.device, args.trust_remote_code)
    except ModelNotFound as error:
        sys.exit(f"app.py: {error}")
    try:
        set_pipeline(ner, args.max_chars, read_dictionary(args.dictionary) if args.dictionary else None)
    except (OSError, ValueError) as error:
        sys.exit(f"app.py: --dictionary: {error}")
    code = Path(sys.modules[type(ner).__module__].__file__ or "?").parent
    print(f"Serving {args.model} with {type(ner).__name__} from {code}", flush=True)
    examples = list(dict.fromkeys([*card_examples(args.model), *EXAMPLES]))
    build_demo(ner, model_title(args.model), examples, card_figures(args.model)).launch(
        server_name=args.host, server_port=args.port, share=False
    )


if __name__ == "__main__":
    main()
