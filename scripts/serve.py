#!/usr/bin/env python
"""Serve a bert-crf folder over HTTP on Ray Serve: replicas, dynamic batching, a bounded queue (docs/serving.md).

    python scripts/serve.py --model outputs/demo --port 8000                  # PyTorch, one replica
    python scripts/serve.py --model outputs/demo-onnx --int8 --replicas 2     # ONNX Runtime INT8, two replicas
    curl -s localhost:8000 -d '{"inputs": "梁一鸣在济民中医院工作。"}'

POST / takes and returns handler.py's JSON (`{"inputs": ..., "parameters": {...}}`), with its checks, limits and
errors (400 `{"error": message}`). Requests that arrive within --batch_wait_ms of each other are tagged together
(at most --max_batch_size requests). Each replica takes at most --max_ongoing_requests at once; past them requests
wait in a queue of --max_queued_requests, and past that they are answered 503 with Retry-After at once. GET /health
and GET /ready answer from a replica; Ray's proxy answers GET /-/healthz. Ctrl-C or SIGTERM stops taking requests,
finishes those in flight (up to --graceful_shutdown_s), then exits.

On a Ray cluster of several machines (each with this repository set up, `make setup`, and the model at the same
path or on the Hub): `ray start --head` on one, `ray start --address HEAD:6379` on the others, then on the head
`python scripts/serve.py --address auto --host 0.0.0.0 --model FOLDER --replicas N`: Serve places the replicas on
the machines with free CPUs, and every machine answers on --port.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from bertcrf import cli


if TYPE_CHECKING:
    from bertcrf import serving


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a run_ner.py folder, an export_onnx.py folder, or a Hub id")
    parser.add_argument("--int8", action="store_true", help="an ONNX folder's model.int8.onnx instead of model.onnx")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="the port to listen on (default 8000)")
    parser.add_argument("--replicas", type=int, default=1, help="copies of the model, each a process (default 1)")
    parser.add_argument("--min_replicas", type=int, help="with --max_replicas: autoscaling from this many (default 1)")
    parser.add_argument("--max_replicas", type=int, help="autoscaling up to this many replicas (Serve's autoscaler)")
    parser.add_argument(
        "--target_ongoing_requests", type=float, default=2.0, help="autoscaling's target of requests per replica"
    )
    parser.add_argument("--threads", type=int, help="CPU threads per replica (default: the CPUs / the replicas)")
    parser.add_argument("--max_batch_size", type=int, default=32, help="requests tagged together, at most (32)")
    parser.add_argument("--batch_wait_ms", type=float, default=5.0, help="how long a batch waits to fill (5 ms)")
    parser.add_argument("--max_ongoing_requests", type=int, help="requests a replica takes at once (a batch)")
    parser.add_argument(
        "--max_queued_requests", type=int, default=16, help="requests waiting for a replica; past them: 503 (16)"
    )
    parser.add_argument("--retry_after_s", type=float, default=1.0, help="the 503 answers' Retry-After (1 s)")
    parser.add_argument("--request_timeout_s", type=float, default=300.0, help="a request's deadline (300 s)")
    parser.add_argument("--graceful_shutdown_s", type=float, default=60.0, help="time to finish requests on exit")
    parser.add_argument("--address", help='a running Ray cluster ("auto" on its head node); default: a local one')
    parser.add_argument("--max_request_chars", type=int, help="handler.py's limit (default: its variable or 10000)")
    parser.add_argument("--max_text_chars", type=int, help="handler.py's limit (default: its variable or 10000)")
    parser.add_argument("--max_items", type=int, help="handler.py's limit on texts per request (default 256)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """A ValueError or FileNotFoundError naming the bad option, before Ray starts."""
    model = Path(args.model)
    if model.exists():
        if not ((model / "config.json").is_file() or (model / "crf.json").is_file()):
            raise FileNotFoundError(
                f"--model {args.model}: no config.json (a run_ner.py folder) or crf.json (an export_onnx.py folder)"
            )
    elif args.model.startswith((".", "/")) or args.model.count("/") != 1:
        raise FileNotFoundError(f"--model {args.model}: no such folder (nor a Hub id, which reads user/name)")
    for name in ("replicas", "max_batch_size", "max_queued_requests"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.min_replicas is not None and args.max_replicas is None:
        raise ValueError("--min_replicas needs --max_replicas (autoscaling between the two)")
    if args.max_replicas is not None and args.max_replicas < max(1, args.min_replicas or 1):
        raise ValueError(f"--max_replicas must be at least --min_replicas and 1, got {args.max_replicas}")
    if args.max_ongoing_requests is not None and args.max_ongoing_requests < args.max_batch_size:
        raise ValueError(
            f"--max_ongoing_requests ({args.max_ongoing_requests}) must be at least --max_batch_size "
            f"({args.max_batch_size}): a replica could never fill a batch"
        )


def settings_and_scaling(args: argparse.Namespace) -> tuple[serving.Settings, serving.Scaling]:
    from bertcrf import serving  # imports Ray (seconds): only once the command line is known to be right

    replicas = args.max_replicas or args.replicas
    threads = args.threads or max(1, (os.cpu_count() or 1) // replicas)
    limits = {name: getattr(args, name) for name in ("max_request_chars", "max_text_chars", "max_items")}
    settings = serving.Settings(args.model, args.int8, threads, args.max_batch_size, args.batch_wait_ms / 1000, limits)
    scaling = serving.Scaling(
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
        max_ongoing_requests=args.max_ongoing_requests or args.max_batch_size,
        max_queued_requests=args.max_queued_requests,
        retry_after_s=args.retry_after_s,
        cpus_per_replica=threads,
        graceful_shutdown_timeout_s=args.graceful_shutdown_s,
    )
    return settings, scaling


def start(args: argparse.Namespace, settings: serving.Settings, scaling: serving.Scaling) -> None:
    """Ray (local, or the cluster at --address), Serve's proxy on --host:--port, then the application, once every
    replica has loaded the model."""
    import ray
    from ray import serve

    from bertcrf import serving

    # The proxies' drain before a stop (serving.drain_proxies): 1 s of /-/healthz saying 503 unless set.
    os.environ.setdefault(serving.MIN_DRAINING_VARIABLE, "1")
    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    http = {"host": args.host, "port": args.port, "request_timeout_s": args.request_timeout_s}
    serve.start(http_options=http)
    serve.run(serving.build_app(settings, scaling), name=serving.APP_NAME, route_prefix=serving.ROUTE_PREFIX)


def wait_for_signal() -> None:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()


def stop(args: argparse.Namespace) -> None:
    """Answer every request already taken (for at most --graceful_shutdown_s; new ones are still answered while
    the proxies drain), then stop Serve and Ray."""
    import ray
    from ray import serve

    from bertcrf import serving

    print("Stopping: answering the requests in flight", flush=True)
    if not serving.drain_proxies(args.graceful_shutdown_s):
        print(f"Requests still in flight after {args.graceful_shutdown_s:g} s: stopping anyway", flush=True)
    serve.shutdown()
    ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    check_args(args)
    settings, scaling = settings_and_scaling(args)
    start(args, settings, scaling)
    replicas = f"{args.min_replicas or 1} to {args.max_replicas}" if args.max_replicas else str(args.replicas)
    print(f"Serving {args.model} on http://{args.host}:{args.port} ({replicas} replicas)", flush=True)
    wait_for_signal()
    stop(args)


if __name__ == "__main__":
    cli.run(main)
