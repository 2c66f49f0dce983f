"""scripts/serve.py under load on localhost, driven by locust, against scripts/tag.py offline on the same texts.

Texts: MSRA test sentences (real news, data/msra/test.json), one per request. In one run, each phase bounded in
time:

1. offline: tag.py over the texts (batch 32, every core), its throughput from --stats;
2. one replica (every core): one request at a time (the latency of a request alone); saturation (closed loop,
   --users clients sending as fast as answered); then open load at 25%, 50% and 90% of saturation (p50/p95/p99);
   2x saturation (the share answered 503, the latency of the accepted); a soak at 50% (--soak_s, 10 minutes) with
   the replica's resident memory sampled every 10 s;
3. two replicas (a core each): saturation.

Targets: saturation >= 80% of offline; p99 at 50% <= 3x the p50 of a request alone; 0 requests without an answer
(a status other than 200 or 503, or no status); memory flat within 10% over the soak (after its first minute);
2 replicas >= 1.7x one where the cores allow. locust and serve.py share the machine's cores: say how many.

Usage: python benchmarks/bench_serving_load.py [--model outputs/demo] [--phase_s 30] [--soak_s 600]
Results: benchmarks/results/bench_serving_load.{json,md}, written after every phase.
"""

from __future__ import annotations

# isort: skip_file
# locust patches sockets with gevent (and ssl): before anything else imports them.
import locust
import gevent
from locust import FastHttpUser, constant, constant_throughput, task
from locust.env import Environment

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from machine import cpu_info, cpu_label


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_serving_load"
PORT = 8765
MAX_CHARS = 200  # news sentences; longer ones are a different workload (windows)
PER_REQUEST = 8  # the other request shape: a paragraph's sentences in one request


def read_texts(path: Path, count: int) -> list[str]:
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [text for text in texts if 0 < len(text) <= MAX_CHARS][:count]


def offline(model: str, texts: list[str], work: Path) -> float:
    """tag.py's texts per second over `texts` (its own count: the model's load is not in it)."""
    (work / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    argv = [sys.executable, str(ROOT / "scripts" / "tag.py"), "--model", model, "--input", str(work / "texts.txt")]
    argv += ["--output", str(work / "tagged.jsonl"), "--overwrite", "--batch_size", "32", "--no_progress"]
    argv += ["--stats", str(work / "stats.json")]
    subprocess.run(argv, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return json.loads((work / "stats.json").read_text())["records_per_s"]


class Server:
    """scripts/serve.py in a subprocess until `stop`."""

    def __init__(self, model: str, replicas: int, log: Path) -> None:
        argv = [sys.executable, str(ROOT / "scripts" / "serve.py"), "--model", model, "--port", str(PORT)]
        argv += ["--replicas", str(replicas)]
        self.log = log.open("w")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.base = f"http://127.0.0.1:{PORT}"
        deadline = time.monotonic() + 300
        while "Serving " not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.py did not start: see {log}")
            time.sleep(1)
        self.pids = self.replica_pids(replicas)

    def replica_pids(self, replicas: int) -> list[int]:
        pids: set[int] = set()
        for _ in range(50 * replicas):
            with urllib.request.urlopen(self.base + "/ready", timeout=30) as answer:
                pids.add(json.load(answer)["pid"])
            if len(pids) == replicas:
                break
        return sorted(pids)

    def memory_mb(self) -> list[float]:
        """Each replica's resident memory (VmRSS) in MB."""
        sizes = []
        for pid in self.pids:
            status = Path(f"/proc/{pid}/status").read_text()
            kilobytes = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            sizes.append(kilobytes / 1024)
        return sizes

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=180)
        self.log.close()


def run_load(base: str, bodies: list[bytes], users: int, rate: float | None, seconds: float, every=None) -> dict:
    """`users` locust clients for `seconds`, each sending as fast as answered (`rate` None) or `rate` requests per
    second; `every` (a callable) is called every 10 s. Returns the phase's figures over its last `seconds` - 2."""
    records: list[tuple[float, int, float]] = []  # (end time, status, milliseconds)
    payloads = itertools.cycle(bodies)

    class Client(FastHttpUser):
        host = base
        wait_time = constant(0) if rate is None else constant_throughput(rate)
        network_timeout = 300.0
        connection_timeout = 30.0

        @task
        def tag(self) -> None:
            with self.client.post(
                "/", data=next(payloads), headers={"Content-Type": "application/json"}, catch_response=True
            ) as answer:
                answer.success()  # statuses are counted here, not by locust

    environment = Environment(user_classes=[Client], events=locust.events)

    def on_request(response_time: float, response=None, exception=None, **_: object) -> None:
        status = getattr(response, "status_code", 0) or 0
        records.append((time.monotonic(), int(status), float(response_time)))

    environment.events.request.add_listener(on_request)
    runner = environment.create_local_runner()
    # Paced clients start spread over one period, so that their requests do not arrive in step; the figures count
    # from the end of that ramp (and 2 s more).
    ramp = 0.0 if rate is None else 1.0 / rate
    begin = time.monotonic()
    runner.start(users, spawn_rate=users if rate is None else users / ramp)
    samples = []
    while time.monotonic() - begin < ramp + seconds:
        gevent.sleep(min(10.0, ramp + seconds - (time.monotonic() - begin)))
        if every is not None:
            samples.append(every())
    runner.quit()
    environment.events.request.remove_listener(on_request)
    return summarize(records, begin + ramp + 2.0, begin + ramp + seconds, samples)


def summarize(records: list[tuple[float, int, float]], start: float, end: float, samples: list) -> dict:
    kept = [(status, ms) for at, status, ms in records if start <= at <= end]
    accepted = [ms for status, ms in kept if status == 200]
    seconds = max(end - start, 1e-9)
    percentiles = np.percentile(accepted, [50, 95, 99]).round(1).tolist() if accepted else [None] * 3
    return {
        "requests": len(kept),
        "answered_per_s": round(len(accepted) / seconds, 2),
        "offered_per_s": round(len(kept) / seconds, 2),
        "share_503": round(sum(status == 503 for status, _ in kept) / max(len(kept), 1), 4),
        "unanswered": sum(status not in (200, 503) for status, _ in kept),
        "p50_ms": percentiles[0],
        "p95_ms": percentiles[1],
        "p99_ms": percentiles[2],
        "memory_mb": samples,
    }


def alone(base: str, bodies: list[bytes], count: int = 100) -> float:
    """The p50 milliseconds of requests sent one at a time."""
    times = []
    for body in bodies[:count]:
        request = urllib.request.Request(base, body, {"Content-Type": "application/json"})
        begin = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
        times.append((time.perf_counter() - begin) * 1000)
    return round(float(np.median(times)), 1)


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    RESULTS.with_suffix(".md").write_text(render(results))


def render(results: dict) -> str:
    """The table of whatever phases are done."""
    cpu = cpu_label(results["cpu"])
    header = "| phase | replicas | texts per request | offered req/s | answered req/s | answered texts/s | 503 share "
    lines = [header + "| p50 ms | p95 ms | p99 ms | unanswered | CPU |", "|---" * 12 + "|"]
    keys = ("offered_per_s", "answered_per_s", "texts_per_s", "share_503", "p50_ms", "p95_ms", "p99_ms", "unanswered")
    for name, phase in results["phases"].items():
        cells = [phase["replicas"], phase.get("texts_per_request", 1), *(phase.get(k) for k in keys), cpu]
        lines.append(f"| {name} | " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    lines += [
        "",
        f"MSRA test sentences; tag.py offline on the same texts: {results.get('offline_texts_per_s')} texts/s.",
    ]
    lines += [f"{results['cores']} cores, shared by serve.py (Ray, its proxy, the replicas) and locust.", ""]
    for key, value in results["summary"].items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "outputs" / "demo"), help="the folder to serve")
    parser.add_argument("--data", default=str(ROOT / "data" / "msra" / "test.json"), help="JSON lines with text")
    parser.add_argument("--texts", type=int, default=2000, help="texts to cycle through")
    parser.add_argument("--phase_s", type=float, default=30.0, help="seconds of each load phase")
    parser.add_argument("--soak_s", type=float, default=600.0, help="seconds of the soak (0: none)")
    parser.add_argument("--users", type=int, default=32, help="clients (within serve.py's 32 + 16 by default)")
    args = parser.parse_args()
    texts = read_texts(Path(args.data), args.texts)
    results = {"cpu": cpu_info(), "cores": os.cpu_count(), "model": args.model, "phases": {}, "summary": {}}
    with tempfile.TemporaryDirectory() as work:
        results["offline_texts_per_s"] = offline(args.model, texts, Path(work))
        print(f"offline tag.py: {results['offline_texts_per_s']} texts/s", flush=True)
        bodies = [json.dumps({"inputs": text}, ensure_ascii=False).encode() for text in texts]
        one_replica(args, texts, bodies, results, Path(work))
        two_replicas(args, bodies, results, Path(work))
    print(render(results))


def phase(results: dict, name: str, replicas: int, figures: dict, per_request: int = 1) -> dict:
    if "answered_per_s" in figures:
        figures["texts_per_s"] = round(figures["answered_per_s"] * per_request, 2)
    results["phases"][name] = {"replicas": replicas, "texts_per_request": per_request, **figures}
    save(results)
    print(name, json.dumps(figures), flush=True)
    return figures


def one_replica(args: argparse.Namespace, texts: list[str], bodies: list[bytes], results: dict, work: Path) -> None:
    soak_name = f"soak at 50% ({args.soak_s / 60:g} min)"
    server = Server(args.model, 1, work / "serve-1.log")
    try:
        alone_ms = alone(server.base, bodies)
        phase(results, "one request at a time", 1, {"p50_ms": alone_ms})
        saturation = phase(results, "saturation", 1, run_load(server.base, bodies, args.users, None, args.phase_s))
        top = saturation["answered_per_s"]
        groups = [texts[i : i + PER_REQUEST] for i in range(0, len(texts), PER_REQUEST)]
        grouped = [json.dumps({"inputs": group}, ensure_ascii=False).encode() for group in groups]
        load = run_load(server.base, grouped, args.users, None, args.phase_s)
        phase(results, f"saturation, {PER_REQUEST} texts per request", 1, load, PER_REQUEST)
        for share in (0.25, 0.5, 0.9):
            load = run_load(server.base, bodies, args.users, top * share / args.users, args.phase_s)
            phase(results, f"{share:.0%} of saturation", 1, load)
        overload_users = 16 * args.users  # enough clients to offer 2x while the accepted wait their turn
        overload = run_load(server.base, bodies, overload_users, 2 * top / overload_users, args.phase_s)
        phase(results, "2x saturation", 1, overload)
        if args.soak_s:
            soak = run_load(server.base, bodies, args.users, top * 0.5 / args.users, args.soak_s, server.memory_mb)
            phase(results, soak_name, 1, soak)
    finally:
        server.stop()
    summary = results["summary"]
    summary["saturation / offline tag.py"] = round(top / results["offline_texts_per_s"], 3)
    grouped_top = results["phases"][f"saturation, {PER_REQUEST} texts per request"]["texts_per_s"]
    summary[f"saturation with {PER_REQUEST} texts per request / offline tag.py"] = round(
        grouped_top / results["offline_texts_per_s"], 3
    )
    summary["p99 at 50% / p50 alone"] = round(results["phases"]["50% of saturation"]["p99_ms"] / alone_ms, 2)
    summary["unanswered requests (all phases)"] = sum(p.get("unanswered", 0) for p in results["phases"].values())
    if args.soak_s:
        memory = [m[0] for m in results["phases"][soak_name]["memory_mb"]]
        settled = memory[6:] or memory  # after the first minute
        summary["soak memory MB (first, last, max/min after 1 min)"] = (
            f"{memory[0]:.0f}, {memory[-1]:.0f}, {max(settled) / min(settled):.3f}"
        )
    save(results)


def two_replicas(args: argparse.Namespace, bodies: list[bytes], results: dict, work: Path) -> None:
    server = Server(args.model, 2, work / "serve-2.log")
    try:
        phase(results, "saturation, 2 replicas", 2, run_load(server.base, bodies, args.users, None, args.phase_s))
    finally:
        server.stop()
    two = results["phases"]["saturation, 2 replicas"]["answered_per_s"]
    results["summary"]["2 replicas / 1"] = round(two / results["phases"]["saturation"]["answered_per_s"], 3)
    save(results)


if __name__ == "__main__":
    main()
