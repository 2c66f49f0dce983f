"""Tagging faster on the hardware at hand: bf16 weights where the CPU or GPU multiplies bf16 natively (and only when
a measurement shows it faster), and `torch.compile` of the emissions with bucketed lengths. The CRF itself always
decodes in float32 (see modeling_crf.py), so reduced precision touches the encoder's scores only.

Travels with every checkpoint as remote code (the pipeline uses it): imports only torch.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F


PRECISIONS = ("float32", "bfloat16", "auto")
# "auto" takes bf16 only when the measured forward pass is at least this much faster: a smaller gain is within the
# noise of a short measurement, and bf16 scores are not bit-identical to float32 ones.
AUTO_MIN_SPEEDUP = 1.15
# Compiled emissions pad each batch's length up to a multiple of this: never 0 or 1 (which torch.compile
# specializes on), so one dynamic graph serves every length.
LENGTH_BUCKET = 16


def _cpuinfo(*keys: str) -> str:
    """The value of the first /proc/cpuinfo line whose key starts with one of `keys` ("" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_flags() -> set[str]:
    return set(_cpuinfo("flags", "Features").split())  # x86, Arm


def bf16_hardware(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices natively: a GPU with bf16 units, a CPU with AMX or AVX512-BF16
    (x86) or the BF16 extension (Arm). Elsewhere bf16 is emulated and several times slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    if (
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    ):
        return True
    flags = _cpu_flags()
    return bool(flags & {"amx_bf16", "avx512_bf16"}) or (
        platform.machine() in ("aarch64", "arm64") and "bf16" in flags
    )


def to_precision(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model` in `dtype`, its CRF kept in float32 (as `from_pretrained(..., dtype=...)` loads it)."""
    model.to(dtype)
    crf = getattr(model, "crf", None)
    if crf is not None:
        crf.float()
    return model


def choose_dtype(
    precision: str,
    model: torch.nn.Module,
    device: torch.device,
    measure: Optional[Callable[[torch.nn.Module, torch.device], float]] = None,
) -> torch.dtype:
    """The dtype to tag in: float32, bfloat16, or for "auto" bfloat16 only where `device` has bf16 hardware and
    bf16 emissions measure at least `AUTO_MIN_SPEEDUP` times faster (measured once per machine, torch version,
    thread count and model shape, then read from a cache file; see `cache_file`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return getattr(torch, precision)
    if not bf16_hardware(device):
        return torch.float32
    key = _measurement_key(model, device)
    cache = _read_cache()
    if key not in cache:
        cache[key] = (measure or measure_bf16_speedup)(model, device)
        _write_cache(cache)
    return torch.bfloat16 if cache[key] >= AUTO_MIN_SPEEDUP else torch.float32


def measure_bf16_speedup(model: torch.nn.Module, device: torch.device, batch: int = 8, length: int = 128) -> float:
    """float32 time over bf16 time of the emissions of a `batch` x `length` batch of random ids (best of three)."""
    config = model.config
    ids = torch.randint(0, config.vocab_size, (batch, length), device=device)
    mask = torch.ones_like(ids)
    low = to_precision(copy.deepcopy(model), torch.bfloat16)

    def best_time(tagger: Any) -> float:
        times = []
        with torch.inference_mode():
            for _ in range(4):  # the first call warms up
                start = time.perf_counter()
                tagger.emissions(input_ids=ids, attention_mask=mask)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
        return min(times[1:])

    return best_time(model) / best_time(low)


def cache_file() -> str:
    """Where "auto" keeps its measurements: $BERT_CRF_CACHE, else bert-crf/precision.json in $XDG_CACHE_HOME or
    ~/.cache."""
    if os.environ.get("BERT_CRF_CACHE"):
        return os.environ["BERT_CRF_CACHE"]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "bert-crf", "precision.json")


def _measurement_key(model: torch.nn.Module, device: torch.device) -> str:
    config = model.config
    shape = [getattr(config, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size")]
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{_cpu_name()} x{torch.get_num_threads()}"
    return json.dumps([where, torch.__version__, shape])


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _read_cache() -> dict[str, float]:
    try:
        with open(cache_file(), encoding="utf-8") as cached:
            data = json.load(cached)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}


def _write_cache(cache: dict[str, float]) -> None:
    path = cache_file()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(cache, out, indent=1)
        os.replace(temporary, path)  # whole or not at all, with other processes measuring too
    except OSError:  # a read-only home: measure again next time
        pass


class CompiledEmissions:
    """`model.emissions` through `torch.compile`, each batch's length padded to a multiple of `LENGTH_BUCKET` (the
    padding masked off, then cut from the scores). The batch and length dimensions are compiled dynamic, so after
    the first batch of one row and the first of several rows nothing compiles again, whatever the lengths.

    Args:
        model: a CRF tagger (its `emissions` method).
        backend: torch.compile's backend ("inductor" by default).
    """

    def __init__(self, model: Any, backend: Any = "inductor") -> None:
        self.model = model
        self._compiled = torch.compile(model.emissions, dynamic=True, backend=backend)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lexicon_features: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        length = input_ids.size(1)
        pad = -length % LENGTH_BUCKET  # rows of 16, 32, ... positions
        extra = {}
        if lexicon_features is not None:
            extra["lexicon_features"] = F.pad(lexicon_features, (0, pad))
        logits = self._compiled(
            input_ids=F.pad(input_ids, (0, pad)), attention_mask=F.pad(attention_mask, (0, pad)), **extra
        )
        return logits[:, :length]
