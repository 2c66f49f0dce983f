"""Graph capture (torch.compile, torch.export and through it ONNX): whether a graph is being captured, and the
`scan` that replaces a Python loop over time there. The CRF's recursions read these to take their graph-safe forms.

Travels with every checkpoint as remote code: imports only torch.
"""

from __future__ import annotations

from typing import Any, List

import torch


@torch.jit.unused
def _exporting_now() -> bool:
    compiler = getattr(torch, "compiler", None)
    exporting = getattr(compiler, "is_exporting", None)
    return bool(exporting and exporting()) or torch.jit.is_tracing()


@torch.jit.unused
def _compiling_now() -> bool:
    compiler = getattr(torch, "compiler", None)
    compiling = getattr(compiler, "is_compiling", None)
    return bool(compiling and compiling())


def _is_exporting() -> bool:
    """Whether torch.export (and so torch.onnx's exporter) or a TorchScript trace is capturing this call."""
    if torch.jit.is_scripting():
        return False
    return _exporting_now()


def _is_capturing() -> bool:
    """Whether a graph is being captured (torch.compile, torch.export): no Python branch may then read a tensor's
    values, so the CRF takes its graph-safe paths (every step masked, log-space sums, no early exits)."""
    if torch.jit.is_scripting():
        return False
    return _compiling_now() or _exporting_now()


def _full_steps(mask: torch.Tensor) -> List[bool]:
    """Per step of a packed mask `(batch, seq)`, whether every row is on (such steps skip the mask select). All
    False while a graph is captured: reading the mask's values would break the graph."""
    if _is_capturing():
        return [False] * mask.size(1)
    return mask.all(0).tolist()


# The same recursions for graphs with a dynamic length (torch.export, and through it ONNX): a Python loop would be
# unrolled to the example's length, so each runs as one `scan` over time, which torch.onnx writes as an ONNX Scan.
# Every step is masked (no step can be known to be full). Each scan runs over the chain plus one step that is off:
# an exported graph assumes a dynamic size is at least 2, and the extra step keeps one-word chains inside it.


def _scan(combine: Any, init: torch.Tensor, xs: Any, reverse: bool = False) -> Any:
    from torch._higher_order_ops.scan import scan

    return scan(combine, init, xs, reverse=reverse)


def _with_an_off_step(emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-major emissions `(seq + 1, batch, tags)` and mask `(seq + 1, batch, 1)`, with a last step that is off."""
    steps = torch.cat([emissions, emissions.new_zeros(emissions.size(0), 1, emissions.size(2))], 1).transpose(0, 1)
    on = torch.cat([mask, mask.new_zeros(mask.size(0), 1)], 1).t().unsqueeze(2)
    return steps, on
