"""Export a trained bert-crf folder to ONNX for CPU serving.

    python scripts/export_onnx.py --model outputs/demo --output outputs/demo-onnx --int8

Writes model.onnx, model.int8.onnx with `--int8` (7-bit weights, 8-bit activations quantized per token on the fly,
exact on every x86 CPU; see quantize_int8), crf.json (transition scores, decoding constraints, labels, tag scheme,
window size, special token ids), the tokenizer, and the torch-free runtime (ner_onnx.py and the ner_*.py files it imports) with a
README.md, so that the folder serves without this repository.

The graph decodes: inputs `input_ids`, `attention_mask` (a lexicon model: `lexicon_features`) and `word_starts`
(batch, words: each word's first sub-token position, then -1); outputs `logits` (batch, seq, labels: emission
scores), `tags` (batch, words: the constrained Viterbi path, -1 past a row's words) and `scores` (batch, words: each
chosen tag's marginal probability). Batch, length and word count are dynamic; the CRF runs as ONNX Scan loops, so
any runtime that loads the file (onnxruntime for Python, Node.js, Java, C#, C++, the browser) tags without code of
its own beyond the tokenizer and the word positions. ner_onnx.py decodes a text that fits one window in the graph;
a longer text's windows are stitched from `logits` and decoded with numpy under the same scores (crf.json), as are
texts under a dictionary. `--emissions_only` writes the earlier graph (ids in, `logits` out; the CRF all in numpy).
No code
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
import warnings
from pathlib import Path

import torch
from transformers import AutoTokenizer

from bertcrf import cli, shipping
from bertcrf.crf_models import check_model_path, load_crf_model
from bertcrf.safe_files import listing, replace_folder, same_path, staged_folder, within
from modeling_crf_tagger import CrfTaggingMixin
from modeling_encoder_crf import EncoderCrfMixin
from ner_lexicon import LEXICON_FILE
from ner_windows import backend_words, isolates_cjk, max_positions, special_wrapping


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

# The runtime that travels with every export, and the Node.js example (node/ in this repository), copied beside
# them when the graph decodes: their one list is bertcrf.shipping's.
RUNTIME_FILES = tuple(shipping.onnx_runtime_code())
NODE_FILES = shipping.NODE_FILES
# crf.json's list of the files the export wrote (name -> SHA-256), which a later export may replace.
MANIFEST_KEY = "exported_files"
# What an export writes besides the tokenizer's files (checked before the work; the exact list after it).
EXPORT_FILES = ("model.onnx", "model.int8.onnx", "crf.json", "README.md", LEXICON_FILE, *RUNTIME_FILES, *NODE_FILES)
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

Files: model.onnx ({graph}), {int8_file}crf.json (CRF scores, constraints, labels), tokenizer.json, and the
runtime: ner_onnx.py (windows; numpy Viterbi and marginals for stitched windows) and the ner_*.py files it imports
(tags, windows, lexicon).
{decoding}"""

DECODING_README = """
The graph decodes. Inputs: `input_ids`, `attention_mask`{lexicon_input} (batch, seq; int64) and `word_starts`
(batch, words; int64: the position of each word's first sub-token in its row, in order, then -1). Outputs: `logits`
(batch, seq, labels), `tags` (batch, words; the label ids of crf.json's `labels`, -1 past a row's words) and
`scores` (batch, words; each tag's marginal probability). A text longer than `max_length` sub-tokens (crf.json) goes
in overlapping windows; ner_onnx.py then stitches their `logits` and decodes them with numpy.

From Node.js (ner_onnx.mjs: onnxruntime-node and @huggingface/tokenizers, from the npm registry):

    npm install
    node ner_onnx.mjs . "梁一鸣在济民中医院工作。"
    node ner_onnx.mjs . --jsonl < texts.txt

It tags as ner_onnx.py does texts that fit one window; a longer text is cut into consecutive windows, each decoded
alone (an entity across a cut can differ). Offsets are JavaScript string indices. Lexicon models: Python only.
"""


class _Emissions(torch.nn.Module):
    """The graph to export: token ids in, emission scores out."""

    def __init__(self, model: CrfTaggingMixin) -> None:
        super().__init__()
        self.model = model
        self.eval()  # a new module trains by default; the exporters restore its mode to the model after export

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.emissions(input_ids, attention_mask=attention_mask)


class _LexiconEmissions(_Emissions):
    """The graph of a lexicon model: token ids and each token's lexicon feature bits in, emission scores out."""

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lexicon_features: torch.Tensor
    ) -> torch.Tensor:
        return self.model.emissions(input_ids, attention_mask=attention_mask, lexicon_features=lexicon_features)


class _Tagger(torch.nn.Module):
    """The decoding graph: token ids and each word's first sub-token position in; emission scores, the Viterbi tag
    of each word and its marginal probability out. `word_starts` `(batch, words)` lists each row's word positions
    in order, then -1 (a row's words first); the tags are -1 there. Decoding applies the tag scheme's constraints
    (the model's penalties), as in PyTorch. Dynamic batch, length and word count: the CRF runs as ONNX Scans."""

    def __init__(self, model: CrfTaggingMixin) -> None:
        super().__init__()
        self.model = model
        self.eval()  # a new module trains by default; the exporters restore its mode to the model after export

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.model.emissions(input_ids, attention_mask=attention_mask)  # (batch, seq, labels)
        return self.decode(logits, word_starts)

    def decode(
        self, logits: torch.Tensor, word_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        on = word_starts >= 0  # (batch, words), a prefix of each row
        index = word_starts.clamp(min=0).unsqueeze(2).expand(-1, -1, logits.size(2))  # (batch, words, labels)
        emissions = logits.float().gather(1, index)  # (batch, words, labels)
        tags = self.model.crf.viterbi_packed(emissions, on)  # (batch, words)
        probs = self.model.crf.marginals_packed(emissions, on)  # (batch, words, labels)
        scores = probs.gather(2, tags.unsqueeze(2)).squeeze(2)  # (batch, words)
        return logits, tags.masked_fill(~on, -1), scores * on.to(scores.dtype)


class _LexiconTagger(_Tagger):
    """The decoding graph of a lexicon model: also each token's lexicon feature bits in."""

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lexicon_features: torch.Tensor, word_starts
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.model.emissions(input_ids, attention_mask=attention_mask, lexicon_features=lexicon_features)
        return self.decode(logits, word_starts)


class _Decoder(_Tagger):
    """The decoding graph's CRF part alone: emission scores and word positions in, tags and scores out."""

    def forward(  # type: ignore[override]
        self, logits: torch.Tensor, word_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(logits, word_starts)[1:]


def example_word_starts(mask: torch.Tensor) -> torch.Tensor:
    """Word positions `(batch, words)` for the export's example batch: every token after the first of each row but
    the last, then -1 (rows of different word counts, so the padding path is what gets exported)."""
    lengths = mask.sum(1) - 2  # (batch,)
    positions = torch.arange(1, mask.size(1) - 1).expand(mask.size(0), -1)  # (batch, words)
    return torch.where(positions <= lengths.unsqueeze(1), positions, -1)


def _dynamo_export(
    graph: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    inputs: list[str],
    outputs: list[str],
    path: Path,
    max_length: int,
    opset: int,
) -> None:
    """torch.onnx's exporter (torch.export) with dynamic batch, length and word count."""
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=max_length)
    words = torch.export.Dim("words", max=max_length)
    dims = {name: {0: batch, 1: words if name == "word_starts" else seq} for name in inputs}
    torch.onnx.export(
        graph,
        example,
        str(path),
        dynamo=True,
        external_data=False,
        dynamic_shapes=dims,
        input_names=inputs,
        output_names=outputs,
        opset_version=opset,
    )


def join_decoder(encoder_path: Path, decoder_path: Path) -> None:
    """Feed the decoder graph's `logits` input from the encoder graph's output, in one model written over the
    encoder's; `logits` stays an output (stitched windows and dictionaries decode from it)."""
    import onnx
    from onnx import compose

    encoder, decoder = onnx.load(str(encoder_path)), onnx.load(str(decoder_path))
    decoder.ir_version = encoder.ir_version = max(encoder.ir_version, decoder.ir_version)
    versions = {op.domain: op.version for op in [*encoder.opset_import, *decoder.opset_import]}
    for model in (encoder, decoder):
        del model.opset_import[:]
        model.opset_import.extend(onnx.helper.make_opsetid(domain, v) for domain, v in versions.items())
    # The encoder's names get a prefix, not the decoder's: its Scan bodies read outer values by name.
    encoder = compose.add_prefix(encoder, "encoder/", rename_inputs=False, rename_outputs=False)
    joined = compose.merge_models(encoder, decoder, io_map=[("logits", "logits")])
    logits = next(o for o in encoder.graph.output if o.name == "logits")
    joined.graph.output.insert(0, logits)
    onnx.checker.check_model(joined)
    onnx.save(joined, str(encoder_path))


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
        # Whose words the runtimes tag: the tokenizer's own (BERT's pre-tokenizer) or split from the raw text.
        "word_split": "tokenizer" if isolates_cjk(backend_words(tokenizer.backend_tokenizer)) else "text",
        # A lexicon model's feature types, in bit order; its words are in lexicon.tsv beside the graph.
        "lexicon_types": list(config.lexicon_types) if getattr(config, "lexicon_types", None) else None,
        # The confidence temperature (config.json's), for the numpy marginals; the graph holds it as a constant.
        "temperature": crf.temperature,
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
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    targets = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights][:-1]
    _add_quantize_constants(graph)
    quantized_inputs: dict[str, str] = {}
    replaced = {id(n) for n in targets}
    nodes = []
    for node in graph.node:
        if id(node) not in replaced:
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in quantized_inputs:  # Q, K and V share their input: quantize it once
            quantized_inputs[x] = f"{x}_q"
            nodes += _quantize_activation_nodes(x, quantized_inputs[x])
        nodes += _int8_matmul_nodes(graph, weights[node.input[1]], quantized_inputs[x], node.output[0])
    del graph.node[:]
    graph.node.extend(nodes)
    used = _names_used(graph)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes of replaced outputs are re-inferred
    onnx.save(model, str(target))


def _add_quantize_constants(graph) -> None:
    """The scalars the activation quantizers and `MatMulInteger` read, as initializers of `graph`."""
    import numpy as np
    from onnx import numpy_helper

    constants = {
        "q_axes": np.array([-1], dtype=np.int64),
        "q_max": np.array(ACTIVATION_MAX, dtype=np.float32),
        "q_eps": np.array(1e-12, dtype=np.float32),
        "q_shift": np.array(ACTIVATION_ZERO_POINT, dtype=np.float32),
        "q_zero_point": np.array(ACTIVATION_ZERO_POINT, dtype=np.uint8),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())


def _quantize_activation_nodes(x: str, p: str) -> list:
    """Nodes that quantize activation `x` per token into uint8 `p`, with its scale in `{p}_scale`."""
    from onnx import TensorProto, helper

    return [
        helper.make_node("Abs", [x], [f"{p}_abs"]),
        helper.make_node("ReduceMax", [f"{p}_abs", "q_axes"], [f"{p}_max"], keepdims=1),  # (..., 1)
        helper.make_node("Max", [f"{p}_max", "q_eps"], [f"{p}_max_eps"]),
        helper.make_node("Div", [f"{p}_max_eps", "q_max"], [f"{p}_scale"]),  # per-token scale
        helper.make_node("Div", [x, f"{p}_scale"], [f"{p}_scaled"]),
        helper.make_node("Round", [f"{p}_scaled"], [f"{p}_rounded"]),
        helper.make_node("Add", [f"{p}_rounded", "q_shift"], [f"{p}_shifted"]),  # [1, 255]
        helper.make_node("Cast", [f"{p}_shifted"], [p], to=TensorProto.UINT8),
    ]


def _int8_matmul_nodes(graph, weight, p: str, y: str) -> list:
    """Nodes that compute `y` from quantized activation `p` and `weight` as 7-bit int8 columns (their initializers
    are added to `graph`), rescaled to float by the token's and the column's scales."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w_name = weight.name
    w = numpy_helper.to_array(weight).astype(np.float32)  # (in, out)
    w_scale = np.maximum(np.abs(w).max(0), 1e-12) / WEIGHT_MAX  # (out,)
    graph.initializer.append(numpy_helper.from_array(np.round(w / w_scale).astype(np.int8), f"{w_name}_int8"))
    graph.initializer.append(numpy_helper.from_array(w_scale.astype(np.float32), f"{w_name}_scale"))
    return [
        helper.make_node("MatMulInteger", [p, f"{w_name}_int8", "q_zero_point"], [f"{y}_int32"]),
        helper.make_node("Cast", [f"{y}_int32"], [f"{y}_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{y}_float", f"{p}_scale"], [f"{y}_token_scaled"]),
        helper.make_node("Mul", [f"{y}_token_scaled", f"{w_name}_scale"], [y]),
    ]


def _names_used(graph) -> set[str]:
    """The value names the nodes of `graph` read, those of nested graphs included (a Scan's body reads the CRF's
    scores from the outer graph)."""
    from onnx import AttributeProto

    used = set()
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                used |= _names_used(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    used |= _names_used(subgraph)
    return used


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


def export(model_path: str, output: str, int8: bool = False, opset: int = 18, emissions_only: bool = False) -> Path:
    """Export `model_path` (a bert-crf or BiLSTM-CRF folder) to the serving folder `output`; returns its path. The
    folder is written aside and moved in when complete; one where that would lose a file is refused first (see
    the module docstring)."""
    out = Path(output)
    check_model_path(model_path)
    check_output(model_path, out)
    model = load_crf_model(model_path, eager_attention=True).eval()
    with staged_folder(out, lambda staging, _: publish(staging, out, model_path)) as staging:
        _export_into(staging, model, model_path, int8, opset, emissions_only)
    logger.info("exported %s to %s%s", model_path, out, " (+ int8)" if int8 else "")
    return out


def _export_into(
    out: Path, model: CrfTaggingMixin, model_path: str, int8: bool, opset: int, emissions_only: bool = False
) -> None:
    """Write the serving folder's files into the empty folder `out`; crf.json, written last, lists them."""
    # The tokenizer needs no code from the folder; whatever its tokenizer_config.json names must not run here.
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    max_length = min(tokenizer.model_max_length, max_positions(model.config))
    lexicon = getattr(model, "lexicon", None) if getattr(model.config, "lexicon_types", None) else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        _export_graph(out, model, tokenizer.pad_token_id or 0, lexicon is not None, max_length, opset, emissions_only)
    if int8:
        quantize_int8(out / "model.onnx", out / "model.int8.onnx")
    tokenizer.save_pretrained(out)
    if lexicon is not None:
        (out / LEXICON_FILE).write_text(lexicon.to_tsv(), encoding="utf-8")
    _copy_runtime_files(out, emissions_only)
    (out / "README.md").write_text(
        _export_readme(model_path, int8, emissions_only, lexicon is not None), encoding="utf-8"
    )
    written = {p.name: sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
    meta = dict(crf_metadata(model, tokenizer, max_length), **{MANIFEST_KEY: written})
    (out / "crf.json").write_text(json.dumps(meta, ensure_ascii=False))


def _export_graph(
    out: Path,
    model: CrfTaggingMixin,
    pad_id: int,
    has_lexicon: bool,
    max_length: int,
    opset: int,
    emissions_only: bool,
) -> None:
    """Write `out`/model.onnx: the encoder's emissions, and unless `emissions_only` the CRF decoding too."""
    example = torch.full((2, 8), pad_id, dtype=torch.long)
    mask = torch.ones_like(example)
    mask[1, 5:] = 0  # padding in the example, so the masking path is what gets exported
    inputs = ["input_ids", "attention_mask"] + (["lexicon_features"] if has_lexicon else [])
    outputs = ["logits"] + ([] if emissions_only else ["tags", "scores"])
    if not isinstance(model, EncoderCrfMixin):
        _export_recurrent(out, model, (example, mask), inputs, outputs, max_length, opset)
        return
    # The legacy TorchScript exporter gives wrong logits for transformers 5's encoders; torch.export is right.
    example_inputs: tuple[torch.Tensor, ...] = (example, mask)
    if has_lexicon:  # bits that vary, so no feature is folded away as a constant
        features = torch.arange(example.numel(), dtype=torch.long).reshape(example.shape) * 7919 % 2**20
        example_inputs = (example, mask, features)
    if emissions_only:
        graph: torch.nn.Module = _LexiconEmissions(model) if has_lexicon else _Emissions(model)
    else:
        graph = _LexiconTagger(model) if has_lexicon else _Tagger(model)
        example_inputs, inputs = (*example_inputs, example_word_starts(mask)), [*inputs, "word_starts"]
    _dynamo_export(graph, example_inputs, inputs, outputs, out / "model.onnx", max_length, opset)


def _export_recurrent(
    out: Path,
    model: CrfTaggingMixin,
    batch: tuple[torch.Tensor, torch.Tensor],
    inputs: list[str],
    outputs: list[str],
    max_length: int,
    opset: int,
) -> None:
    """model.onnx of a recurrent (BiLSTM) tagger: emissions, then the decoder (when `outputs` has tags) joined on.

    torch.export fixes nn.LSTM's sequence length to the example's; the TorchScript exporter keeps it dynamic. The
    decoder is exported on its own (torch.export: Scans) and joined to it."""
    example, mask = batch
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(
        _Emissions(model),
        (example, mask),
        str(out / "model.onnx"),
        dynamo=False,
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
        input_names=inputs,
        output_names=["logits"],
        opset_version=opset,
    )
    decoder_outputs = outputs[1:]  # tags and scores; none when only emissions are exported
    if decoder_outputs:
        decoder = _Decoder(model)
        with torch.no_grad():
            logits = model.emissions(example, attention_mask=mask)
        decoder_file = out / "decoder.onnx"
        words = example_word_starts(mask)
        _dynamo_export(
            decoder, (logits, words), ["logits", "word_starts"], decoder_outputs, decoder_file, max_length, opset
        )
        join_decoder(out / "model.onnx", decoder_file)
        decoder_file.unlink()


def _copy_runtime_files(out: Path, emissions_only: bool) -> None:
    """The numpy runtime beside the graph, and the Node.js one where the graph decodes (it reads tags)."""
    shipping.copy_files(RUNTIME_FILES, out)
    if not emissions_only:
        shipping.copy_files(NODE_FILES, out, source=shipping.REPO_ROOT / "node")


def _export_readme(model_path: str, int8: bool, emissions_only: bool, has_lexicon: bool) -> str:
    """The serving folder's README.md: what the graph computes and what it takes."""
    return EXPORT_README.format(
        source=Path(model_path).name or model_path,
        int8_file="model.int8.onnx (INT8), " if int8 else "",
        graph="encoder and classifier: emission scores" if emissions_only else "encoder, classifier, CRF decoding",
        decoding=""
        if emissions_only
        else DECODING_README.format(lexicon_input=", `lexicon_features`" if has_lexicon else ""),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained bert-crf folder (run_ner.py output)")
    parser.add_argument("--output", required=True, help="folder for model.onnx, crf.json and the tokenizer")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (see quantize_int8)")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument(
        "--emissions_only",
        action="store_true",
        help="write the graph without CRF decoding (ids in, emission scores out; ner_onnx.py decodes with numpy)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    export(args.model, args.output, args.int8, args.opset, args.emissions_only)


if __name__ == "__main__":
    cli.run(main)
