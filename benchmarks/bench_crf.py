"""Time this repo's CRF against pytorch-crf on the same inputs, in the same run.

Usage: python benchmarks/bench_crf.py [--repeats N] [--threads N] [--out benchmarks/results/bench_crf.json]

Prints the CPU (model name, vector extensions, the kernels torch picked) and a table of median milliseconds per call
and the speed-up (pytorch-crf time / ours), and writes both as JSON. The two implementations alternate call by call,
so that a busy machine slows both alike. One thread unless --threads says otherwise. Targets: decode >= 3x at
64x128x9, >= 2x at 64x128x41 and 16x128x41, >= 1x at 1x128x9; log-likelihood forward+backward >= 2x at 16x128x41.

On an AVX-512 machine, `ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_crf.py` runs torch's AVX2 kernels instead
(the table then says "torch kernels: AVX2"): an approximation of an AVX2-only CPU, same cores and caches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from machine import cpu_info, cpu_label, present_flags
from modeling_bert_crf import CRF


try:
    import torchcrf
except ImportError:  # pragma: no cover - the benchmark needs the reference
    sys.exit("pytorch-crf is needed for this benchmark: pip install -r requirements-test.txt")

# (task, batch, length, tags, target speed-up)
CASES = [
    ("decode", 64, 128, 9, 3.0),
    ("decode", 64, 128, 41, 2.0),
    ("decode", 16, 128, 41, 2.0),
    ("decode", 1, 128, 9, 1.0),
    ("nll fwd+bwd", 16, 128, 41, 2.0),
    ("nll fwd+bwd", 64, 128, 9, None),
]


def median_ms_pair(ref: Callable[[], object], ours: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median milliseconds of each, timed alternately."""
    ref(), ours()  # warm-up
    ref_times, ours_times = [], []
    for _ in range(repeats):
        for fn, times in ((ref, ref_times), (ours, ours_times)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(ref_times), statistics.median(ours_times)


def make_inputs(batch: int, length: int, tags: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    emissions = torch.randn(batch, length, tags, generator=gen)
    labels = torch.randint(tags, (batch, length), generator=gen)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen)
    lengths[0] = length
    mask = torch.arange(length) < lengths.unsqueeze(1)  # ragged, as real batches are
    return emissions, labels, mask


def run_case(task: str, batch: int, length: int, tags: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    ref = torchcrf.CRF(tags, batch_first=True)
    ours = CRF(tags, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    emissions, labels, mask = make_inputs(batch, length, tags)
    ref_mask = mask.to(torch.uint8)

    if task == "decode":
        with torch.no_grad():
            return median_ms_pair(
                lambda: ref.decode(emissions, ref_mask), lambda: ours.decode(emissions, mask), repeats
            )

    def step(crf: torch.nn.Module, m: torch.Tensor) -> Callable[[], None]:
        em = emissions.clone().requires_grad_(True)

        def run() -> None:
            crf.zero_grad()
            (-crf(em, labels, m, reduction="mean")).backward()

        return run

    return median_ms_pair(step(ref, ref_mask), step(ours, mask), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_crf.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cpu = cpu_info()
    cpu = dict(cpu, flags=present_flags(cpu), torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    print(f"CPU: {cpu_label()}; torch kernels: {cpu['torch_cpu_capability']}; threads: {torch.get_num_threads()}")
    rows = []
    header = "| task | batch x len x tags | pytorch-crf ms | ours ms | speed-up | target |"
    print(header)
    print("|---|---|---|---|---|---|")
    for task, batch, length, tags, target in CASES:
        ref_ms, ours_ms = run_case(task, batch, length, tags, args.repeats)
        speedup = ref_ms / ours_ms
        ok = "" if target is None else (f">= {target:g}x " + ("met" if speedup >= target else "MISSED"))
        print(f"| {task} | {batch}x{length}x{tags} | {ref_ms:.2f} | {ours_ms:.2f} | {speedup:.2f}x | {ok} |")
        rows.append(
            dict(
                task=task,
                batch=batch,
                length=length,
                tags=tags,
                pytorch_crf_ms=ref_ms,
                ours_ms=ours_ms,
                speedup=speedup,
                target=target,
            )
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(torch=torch.__version__, threads=torch.get_num_threads(), repeats=args.repeats, cpu=cpu)
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
