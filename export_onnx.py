"""Export a trained bert-crf folder to ONNX for CPU serving.

    python export_onnx.py --model outputs/demo --output outputs/demo-onnx --int8

Writes model.onnx (encoder + classifier: emission scores, dynamic batch and sequence axes), model.int8.onnx with
`--int8` (7-bit weights, 8-bit activations quantized per token on the fly, exact on every x86 CPU; see
quantize_int8), crf.json (transition scores, decoding constraints, labels, tag scheme, window size, special token
ids), the tokenizer, and the torch-free runtime (ner_onnx.py, bert_crf_utils.py) with a README.md, so that the
folder serves without this repository. The CRF stays outside the graph: ner_onnx.py decodes with numpy. No code
from the model folder runs: the tokenizer loads with trust_remote_code=False, the model with this repo's classes.

Nothing is lost in the output folder. The export is written into a temporary folder beside it and moved in once
complete, so an interrupted export leaves the folder as it was. The output may be a new or empty folder, or one
that holds other files (a Hub repository's .gitattributes): it is refused when it is the model folder or holds it,
and when it holds a file the export would overwrite that the export did not write (a model card, say). A folder
of an earlier export is refreshed: crf.json lists the files an export wrote with their SHA-256, so those are
replaced (or removed, model.int8.onnx without --int8), unless they changed since. To ship ONNX inside a model's own
repository, export into a subfolder of it, as Hub repositories do: --output outputs/demo/onnx.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch
from transformers import AutoTokenizer

from bert_crf_utils import LEXICON_FILE, max_positions, special_wrapping
from bertcrf import cli
from bertcrf.crf_models import check_model_path, load_crf_model
from bertcrf.safe_files import listing, replace_folder, same_path, staged_folder, within
from modeling_crf import CrfTaggingMixin, EncoderCrfMixin


logger = logging.getLogger("export_onnx")

# ONNX Runtime's u8s8 kernels on CPUs without VNNI (AVX2, AVX-512BW) add each pair of uint8 x int8 products into a
# saturating int16 (vpmaddubsw). A pair is exact only while 2 * 255 * max|w| <= 32767: the weights get 7 bits
# (|w| <= 63) and the activations keep 8 (uint8 1..255 around zero point 128).
INT16_MAX = 32767
WEIGHT_MAX = 63
ACTIVATION_MAX = 127
ACTIVATION_ZERO_POINT = 128
if 2 * (ACTIVATION_ZERO_POINT + ACTIVATION_MAX) * WEIGHT_MAX > INT16_MAX:
    raise ValueError(f"WEIGHT_MAX={WEIGHT_MAX} would overflow the int16 pair sums of the u8s8 kernels")

# The runtime that travels with every export.
RUNTIME_FILES = ("ner_onnx.py", "bert_crf_utils.py")
# crf.json's list of the files the export wrote (name -> SHA-256), which a later export may replace.
MANIFEST_KEY = "exported_files"
# What an export writes besides the tokenizer's files (checked before the work; the exact list after it).
EXPORT_FILES = ("model.onnx", "model.int8.onnx", "crf.json", "README.md", LEXICON_FILE, *RUNTIME_FILES)
EXPORT_README = """# A bert-crf named-entity tagger in ONNX

Exported by export_onnx.py from {source}. Needs three packages, not torch and not the bert-crf repository:

    pip install onnxruntime tokenizers numpy

From this folder (or with it on PYTHONPATH):

    python -c "from ner_onnx import OnnxNerTagger; print(OnnxNerTagger('.')('梁一鸣在济民中医院工作。'))"

In code:

    from ner_onnx import OnnxNerTagger
    tagger = OnnxNerTagger("path/to/this/folder")  # quantized=True for model.int8.onnx
    tagger("梁一鸣在济民中医院工作。")  # [{{"entity_group": ..., "score": ..., "word": ..., "start": ..., "end": ...}}]
    tagger(["...", "..."], batch_size=32)

Files: model.onnx (encoder and classifier: emission scores), {int8_file}crf.json (CRF scores, constraints, labels),
tokenizer.json, and the runtime: ner_onnx.py (windows, numpy Viterbi and marginals) and bert_crf_utils.py.
"""


class _Emissions(torch.nn.Module):
    """The graph to export: token ids in, emission scores out."""

    def __init__(self, model: CrfTaggingMixin) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.emissions(input_ids, attention_mask=attention_mask)


class _LexiconEmissions(_Emissions):
    """The graph of a lexicon model: token ids and each token's lexicon feature bits in, emission scores out."""

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lexicon_features: torch.Tensor
    ) -> torch.Tensor:
        return self.model.emissions(input_ids, attention_mask=attention_mask, lexicon_features=lexicon_features)


def crf_metadata(model: CrfTaggingMixin, tokenizer, max_length: int) -> dict:
    """What the numpy runtime needs besides the graph: CRF scores, constraints, labels and tokenizer facts."""
    crf = model.crf
    head, tail = special_wrapping(tokenizer)
    config = model.config
    return {
        "labels": [config.id2label[i] for i in range(config.num_labels)],
        "tag_scheme": config.resolved_tag_scheme,
        "max_length": max_length,
        "special_head": head,
        "special_tail": tail,
        "pad_id": tokenizer.pad_token_id,
        "unk_token": tokenizer.unk_token,
        # A lexicon model's feature types, in bit order; its words are in lexicon.tsv beside the graph.
        "lexicon_types": list(config.lexicon_types) if getattr(config, "lexicon_types", None) else None,
        **{
            name: getattr(crf, name).detach().cpu().tolist()
            for name in (
                "start_transitions",
                "end_transitions",
                "transitions",
                "start_penalty",
                "end_penalty",
                "transition_penalty",
            )
        },
    }


def quantize_int8(source: str | Path, target: str | Path) -> None:
    """7-bit weights and per-token 8-bit activations for every MatMul with a constant weight but the last one (the
    classifier, kept in fp32).

    Weights get one scale per output column, symmetric, |w| <= 63 (stored as int8). Each token's activation vector
    gets its own scale at run time (symmetric, -127..127, stored as uint8 1..255 with zero point 128 for the fast
    u8s8 kernels): `MatMulInteger`, then one float multiply by the two scales. The 7-bit weights keep the sum of two
    products, at most 2 * 255 * 63 = 32130, inside the int16 at which the u8s8 kernels of CPUs without VNNI (AVX2,
    AVX-512BW) saturate; 8-bit weights (2 * 255 * 127 = 64770) gave wrong results on those CPUs. ONNX Runtime's
    `quantize_dynamic` uses one activation scale per tensor, so a single outlying token (or the padding of a batch)
    coarsens every other token; on Resume dev with the fine-tuned MiniLM it cost 0.73 F1 points
    (benchmarks/RESULTS.md).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    targets = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights][:-1]
    constants = {
        "q_axes": np.array([-1], dtype=np.int64),
        "q_max": np.array(ACTIVATION_MAX, dtype=np.float32),
        "q_eps": np.array(1e-12, dtype=np.float32),
        "q_shift": np.array(ACTIVATION_ZERO_POINT, dtype=np.float32),
        "q_zero_point": np.array(ACTIVATION_ZERO_POINT, dtype=np.uint8),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    quantized_inputs: dict[str, str] = {}
    replaced = {id(n) for n in targets}
    nodes = []
    for node in graph.node:
        if id(node) not in replaced:
            nodes.append(node)
            continue
        x, w_name, y = node.input[0], node.input[1], node.output[0]
        if x not in quantized_inputs:  # Q, K and V share their input: quantize it once
            p = f"{x}_q"
            nodes += [
                helper.make_node("Abs", [x], [f"{p}_abs"]),
                helper.make_node("ReduceMax", [f"{p}_abs", "q_axes"], [f"{p}_max"], keepdims=1),  # (..., 1)
                helper.make_node("Max", [f"{p}_max", "q_eps"], [f"{p}_max_eps"]),
                helper.make_node("Div", [f"{p}_max_eps", "q_max"], [f"{p}_scale"]),  # per-token scale
                helper.make_node("Div", [x, f"{p}_scale"], [f"{p}_scaled"]),
                helper.make_node("Round", [f"{p}_scaled"], [f"{p}_rounded"]),
                helper.make_node("Add", [f"{p}_rounded", "q_shift"], [f"{p}_shifted"]),  # [1, 255]
                helper.make_node("Cast", [f"{p}_shifted"], [p], to=TensorProto.UINT8),
            ]
            quantized_inputs[x] = p
        p = quantized_inputs[x]
        w = numpy_helper.to_array(weights[w_name]).astype(np.float32)  # (in, out)
        w_scale = np.maximum(np.abs(w).max(0), 1e-12) / WEIGHT_MAX  # (out,)
        graph.initializer.append(numpy_helper.from_array(np.round(w / w_scale).astype(np.int8), f"{w_name}_int8"))
        graph.initializer.append(numpy_helper.from_array(w_scale.astype(np.float32), f"{w_name}_scale"))
        nodes += [
            helper.make_node("MatMulInteger", [p, f"{w_name}_int8", "q_zero_point"], [f"{y}_int32"]),
            helper.make_node("Cast", [f"{y}_int32"], [f"{y}_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{y}_float", f"{p}_scale"], [f"{y}_token_scaled"]),
            helper.make_node("Mul", [f"{y}_token_scaled", f"{w_name}_scale"], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes of replaced outputs are re-inferred
    onnx.save(model, str(target))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def previous_export(folder: Path) -> dict[str, str]:
    """The files an earlier export wrote into `folder` (name -> SHA-256, from its crf.json); empty when none."""
    try:
        meta = json.loads((folder / "crf.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = meta.get(MANIFEST_KEY) if isinstance(meta, dict) else None
    return {**files, "crf.json": ""} if isinstance(files, dict) else {}


def check_output(model_path: str, output: str | Path, names: tuple[str, ...] = EXPORT_FILES) -> dict[str, str]:
    """Refuse, before any work, an output folder where writing `names` would lose something: the model folder or
    one that holds it, a file, or a folder holding one of `names` that an earlier export did not write or that
    changed since. Returns the earlier export's files (see `previous_export`)."""
    out = Path(output)
    if Path(model_path).exists() and within(model_path, out):
        where = "is the model folder" if same_path(model_path, out) else f"holds the model folder {model_path}"
        raise ValueError(
            f"--output {output} {where}: the export would overwrite its files (README.md, the tokenizer). Export "
            f"into another folder, or into a subfolder such as {Path(model_path) / 'onnx'}"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {output} is a file, not a folder")
    if not out.is_dir():
        return {}
    previous = previous_export(out)
    foreign = [name for name in names if (out / name).exists() and name not in previous]
    if foreign:
        legacy = (
            " (its crf.json lists no files: an export from before exports listed them; remove it to export there)"
            if "crf.json" in foreign
            else ""
        )
        raise ValueError(
            f"--output {output} holds {listing(foreign)}, which an export did not write: it would be overwritten"
            f"{legacy}. Export into another folder or a subfolder, or move those files away"
        )
    changed = [
        name
        for name, digest in previous.items()
        if digest and name in names and (out / name).is_file() and sha256(out / name) != digest
    ]
    if changed:
        raise ValueError(
            f"--output {output}: {listing(changed)} changed since an export wrote them and would be overwritten. "
            "Export into another folder, or move those files away"
        )
    return previous


def publish(staging: Path, out: Path, model_path: str) -> None:
    """Move the complete export in `staging` into `out`: renamed as a whole when `out` is new or empty, else file by
    file (each rename atomic, crf.json last) after checking the exact names, and the earlier export's files that
    this one did not write are removed."""
    if not out.is_dir() or not any(out.iterdir()):
        out.parent.mkdir(parents=True, exist_ok=True)
        replace_folder(staging, out)
        return
    names = tuple(sorted(p.name for p in staging.iterdir()))
    previous = check_output(model_path, out, names)
    for name in sorted(names, key=lambda n: n == "crf.json"):
        os.replace(staging / name, out / name)
    for name in sorted(set(previous) - set(names)):
        (out / name).unlink(missing_ok=True)
    staging.rmdir()


def export(model_path: str, output: str, int8: bool = False, opset: int = 18) -> Path:
    """Export `model_path` (a bert-crf or BiLSTM-CRF folder) to the serving folder `output`; returns its path. The
    folder is written aside and moved in when complete; one where that would lose a file is refused first (see
    the module docstring)."""
    out = Path(output)
    check_model_path(model_path)
    check_output(model_path, out)
    model = load_crf_model(model_path, eager_attention=True).eval()
    with staged_folder(out, lambda staging, _: publish(staging, out, model_path)) as staging:
        _export_into(staging, model, model_path, int8, opset)
    logger.info("exported %s to %s%s", model_path, out, " (+ int8)" if int8 else "")
    return out


def _export_into(out: Path, model: CrfTaggingMixin, model_path: str, int8: bool, opset: int) -> None:
    """Write the serving folder's files into the empty folder `out`; crf.json, written last, lists them."""
    # The tokenizer needs no code from the folder; whatever its tokenizer_config.json names must not run here.
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    max_length = min(tokenizer.model_max_length, max_positions(model.config))
    example = torch.full((2, 8), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.ones_like(example)
    mask[1, 5:] = 0  # padding in the example, so the masking path is what gets exported
    lexicon = getattr(model, "lexicon", None) if getattr(model.config, "lexicon_types", None) else None
    inputs = ["input_ids", "attention_mask"] + (["lexicon_features"] if lexicon is not None else [])
    names = dict(input_names=inputs, output_names=["logits"], opset_version=opset)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if isinstance(model, EncoderCrfMixin):
            # The legacy TorchScript exporter gives wrong logits for transformers 5's encoders; torch.export is right.
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=max_length)
            graph, example_inputs = _Emissions(model), (example, mask)
            if lexicon is not None:  # bits that vary, so no feature is folded away as a constant
                features = torch.arange(example.numel(), dtype=torch.long).reshape(example.shape) * 7919 % 2**20
                graph, example_inputs = _LexiconEmissions(model), (example, mask, features)
            torch.onnx.export(
                graph,
                example_inputs,
                str(out / "model.onnx"),
                dynamo=True,
                external_data=False,
                dynamic_shapes={name: {0: batch, 1: seq} for name in inputs},
                **names,
            )
        else:
            # torch.export fixes nn.LSTM's sequence length to the example's; the TorchScript exporter keeps it dynamic.
            axes = {0: "batch", 1: "seq"}
            torch.onnx.export(
                _Emissions(model),
                (example, mask),
                str(out / "model.onnx"),
                dynamo=False,
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
                **names,
            )
    if int8:
        quantize_int8(out / "model.onnx", out / "model.int8.onnx")
    tokenizer.save_pretrained(out)
    if lexicon is not None:
        (out / LEXICON_FILE).write_text(lexicon.to_tsv(), encoding="utf-8")
    here = Path(__file__).resolve().parent
    for name in RUNTIME_FILES:
        shutil.copyfile(here / name, out / name)
    (out / "README.md").write_text(
        EXPORT_README.format(
            source=Path(model_path).name or model_path, int8_file="model.int8.onnx (INT8), " if int8 else ""
        ),
        encoding="utf-8",
    )
    written = {p.name: sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
    meta = dict(crf_metadata(model, tokenizer, max_length), **{MANIFEST_KEY: written})
    (out / "crf.json").write_text(json.dumps(meta, ensure_ascii=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained bert-crf folder (run_ner.py output)")
    parser.add_argument("--output", required=True, help="folder for model.onnx, crf.json and the tokenizer")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (see quantize_int8)")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    export(args.model, args.output, args.int8, args.opset)


if __name__ == "__main__":
    cli.run(main)
