"""bertcrf.shipping, the one list of what travels with a model, and the layout it relies on: the model code at the
top of the repository (as in a checkpoint folder), scripts in scripts/, the library in bertcrf/."""

import ast
import sys
from pathlib import Path

from bertcrf import shipping
from conftest import REPO_ROOT


# The design's entry point stays at the top, beside the model code it trains.
TOP_LEVEL_SCRIPTS = {"run_ner.py"}


def _top_level_files() -> set[str]:
    return {path.name for path in REPO_ROOT.glob("*.py")}


def test_the_top_holds_the_model_code_and_run_ner_only():
    from bertcrf import crf_models

    shipped = {name for model in crf_models.MODEL_CLASSES.values() for name in shipping.model_code(model)}
    shipped |= {*shipping.SERVING_FILES, *shipping.onnx_runtime_code()}
    assert _top_level_files() == shipped | TOP_LEVEL_SCRIPTS


def test_make_setup_puts_the_top_on_sys_path():
    # make setup writes bert-crf.pth into the venv, so that scripts/, benchmarks/ and a user's code import the model
    # code and bertcrf without editing sys.path; a new family's file needs no list of modules kept in step.
    import sysconfig

    assert '"bert-crf.pth"' in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    pth = Path(sysconfig.get_path("purelib")) / "bert-crf.pth"
    if pth.is_file():  # in a venv make setup built
        assert Path(pth.read_text(encoding="utf-8").strip()).resolve() == REPO_ROOT.resolve()


def _imported_roots(name: str) -> set[str]:
    """The top-level packages a file of the repository's top imports (not relative imports)."""
    roots = set()
    for node in ast.walk(ast.parse((REPO_ROOT / name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
    return roots


def test_model_code_imports_only_torch_transformers_and_its_siblings():
    allowed = {"torch", "transformers", "huggingface_hub", "tokenizers", "numpy", "onnxruntime", "gradio"}
    siblings = {name[:-3] for name in _top_level_files() - TOP_LEVEL_SCRIPTS}
    for name in _top_level_files() - TOP_LEVEL_SCRIPTS:
        unexpected = _imported_roots(name) - allowed - siblings - sys.stdlib_module_names
        assert not unexpected, f"{name} imports {sorted(unexpected)}"


def test_every_model_file_travels_with_some_checkpoint():
    from bertcrf import crf_models

    for model in crf_models.MODEL_CLASSES.values():
        code = shipping.model_code(model)
        assert f"{model.__module__}.py" in code and "pipeline_bert_crf.py" in code
        assert all((REPO_ROOT / name).is_file() for name in code)


def test_the_onnx_runtime_is_torch_free():
    code = shipping.onnx_runtime_code()
    assert "ner_onnx.py" in code
    for name in code:
        assert not _imported_roots(name) & {"torch", "transformers"}, name
