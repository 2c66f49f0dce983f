"""The machine a benchmark row was measured on: the CPU's model name and the vector extensions that decide which
kernels torch and ONNX Runtime run (AVX-512 and VNNI machines run wider and INT8 kernels). One home for every
benchmark's CPU column."""

from __future__ import annotations

import platform
from pathlib import Path


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")


def cpu_info() -> dict:
    """`{"model_name": str, "flags": {flag: bool}}` for CPU_FLAGS, from the first processor in /proc/cpuinfo (the
    platform's name and no flags where it cannot be read)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    return {"model_name": name, "flags": {flag: flag in flags for flag in CPU_FLAGS}}


def present_flags(cpu: dict) -> list[str]:
    return [flag for flag, has in cpu["flags"].items() if has]


def cpu_label(cpu: dict | None = None) -> str:
    """`AMD EPYC (avx2, avx512f, avx512_vnni)`: the model name and the CPU_FLAGS it has (this machine's by default)."""
    cpu = cpu if cpu is not None else cpu_info()
    return f"{cpu['model_name']} ({', '.join(present_flags(cpu)) or 'none of ' + ', '.join(CPU_FLAGS)})"
