"""The repository's scripts as modules, for benchmarks that call their functions in this process (a script is run,
not imported: scripts/ is not on sys.path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load(name: str) -> ModuleType:
    """scripts/`name`.py, loaded once per process."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses and pickling look their module up by name
        spec.loader.exec_module(module)
    return sys.modules[name]
