"""What travels with a model, in one place: the code a checkpoint carries as remote code, the serving files beside a
trained model (run_ner.py's output folder, and so its Hub repository), and the torch-free runtime of an ONNX export.
run_ner.py, distill.py, export_onnx.py and the tests all read these lists.

The files live at the top of this repository, as they lie in a checkpoint folder or a Hub repository: a checkpoint
folder is flat, and transformers loads its remote code by relative imports between the files in it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

from transformers.dynamic_module_utils import get_relative_import_files

from bertcrf.safe_files import copy_file


REPO_ROOT = Path(__file__).resolve().parent.parent

# Beside a trained model: Inference Endpoints' handler (looked for at the repository root) and the web demo, which
# also runs the folder as a Gradio Space.
SERVING_FILES = ("handler.py", "app.py")

# The torch-free runtime of an ONNX export (it runs as a script there: its siblings are plain imports).
ONNX_RUNTIME = "ner_onnx.py"

# The Node.js example of an ONNX export of the decoding graph, from node/ (its .npmrc keeps npm's cache local).
NODE_FILES = ("ner_onnx.mjs", "package.json", ".npmrc")


def model_code(model_class: type) -> list[str]:
    """The files a checkpoint of `model_class` carries as remote code: its modeling file and, recursively, every
    file that file imports relatively (transformers' own rule, which save_pretrained follows). The CRF pipeline is
    among them: modeling_crf_tagger.py imports it so that it travels."""
    module_file = REPO_ROOT / f"{model_class.__module__.split('.')[-1]}.py"
    names = {Path(name).name for name in get_relative_import_files(str(module_file))}
    return sorted(names | {module_file.name})


def onnx_runtime_code() -> list[str]:
    """ner_onnx.py and the files of this repository it imports (by plain imports: it runs as a script)."""
    return sorted({ONNX_RUNTIME, *_sibling_imports(REPO_ROOT / ONNX_RUNTIME, set())})


def _sibling_imports(path: Path, seen: set[str]) -> set[str]:
    """The top-level files of this repository that `path` imports, recursively (relative or plain imports)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for module in modules:
            name = f"{module}.py"
            if name not in seen and (REPO_ROOT / name).is_file():
                seen.add(name)
                _sibling_imports(REPO_ROOT / name, seen)
    return seen


def copy_files(names: Iterable[str], folder: str | Path, source: Path = REPO_ROOT) -> None:
    """Copy the files `names` from `source` (this repository's top) into `folder`, each replaced in one step."""
    for name in names:
        copy_file(source / name, Path(folder) / name)
