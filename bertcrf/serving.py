"""A bert-crf folder behind Ray Serve: handler.py's JSON, checks, limits and errors, with Serve's dynamic batching,
replicas, autoscaling and back-pressure (scripts/serve.py is the command; docs/serving.md the guide).

One request is handler.py's `{"inputs": ..., "parameters": {...}}`. A replica checks it alone (a bad request is
answered 400 at once and never joins a batch), then hands its texts to `NerServer.tag_batch`, which Serve calls with
the requests that arrived within `batch_wait_timeout_s` (at most `max_batch_size` of them). Requests with the same
parameters are tagged in one pipeline call, in the handler's groups of similar length; each request gets back exactly
its own texts' results. The model runs in one worker thread, so the replica's event loop keeps accepting requests
(and answering /health) while a batch is tagged; the next batch is the requests that arrived meanwhile.

Routes: POST / (the handler's JSON), GET /health (the replica answers), GET /ready (the model is loaded: its name,
backend, replica and process). Serve's proxy answers GET /-/healthz and /-/routes itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any, Callable

from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig
from starlette.requests import Request
from starlette.responses import JSONResponse

from handler import DEFAULT_LIMITS, EndpointHandler, _limit


ROUTE_PREFIX = "/"
APP_NAME = "bert-crf"
# Parameters the ONNX Runtime tagger (ner_onnx.py) does not take: its windows are the export's.
ONNX_UNSUPPORTED = ("max_length", "delimiter")


@dataclass
class Work:
    """One checked request: its texts (strings or lists of words), their sizes, and its parameters."""

    texts: list[Any]
    sizes: list[int]
    parameters: dict[str, Any]


@dataclass
class Settings:
    """What a replica loads and how it batches (JSON-serializable: Serve ships it to every replica, on any node)."""

    model: str
    int8: bool = False
    threads: int | None = None
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.005
    limits: dict[str, int | None] | None = None


def is_onnx_folder(model: str) -> bool:
    """An export_onnx.py folder (crf.json beside model.onnx), served by ONNX Runtime instead of PyTorch."""
    return (Path(model) / "crf.json").is_file()


class OnnxHandler(EndpointHandler):
    """handler.py's checks and limits in front of an exported folder's ONNX Runtime tagger (no torch)."""

    def __init__(self, path: str, quantized: bool = False, threads: int | None = None, **limits: int | None) -> None:
        from ner_onnx import OnnxNerTagger

        for name in DEFAULT_LIMITS:
            setattr(self, name, _limit(name, limits.get(name)))
        self.pipeline = OnnxNerTagger(path, quantized=quantized, threads=threads)

    def _check_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        unsupported = [name for name in ONNX_UNSUPPORTED if name in parameters]
        if unsupported:
            raise ValueError(
                f"{unsupported} are not supported by an ONNX folder's tagger (its windows are the export's); "
                "serve the PyTorch folder to use them"
            )
        return super()._check_parameters(parameters)


def load_handler(settings: Settings) -> EndpointHandler:
    """The handler of `settings.model`: ONNX Runtime for an exported folder, else the PyTorch pipeline."""
    limits = {name: value for name, value in (settings.limits or {}).items() if value is not None}
    if is_onnx_folder(settings.model):
        return OnnxHandler(settings.model, quantized=settings.int8, threads=settings.threads, **limits)
    if settings.int8:
        raise ValueError(f"--int8 needs an ONNX folder (export_onnx.py --int8), not {settings.model}")
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    return EndpointHandler(settings.model, **limits)


def parameters_key(parameters: dict[str, Any]) -> str:
    return json.dumps(parameters, sort_keys=True, ensure_ascii=False)


def tag_works(handler: EndpointHandler, works: list[Work]) -> list[list[Any] | Exception]:
    """Each request's results, in order: requests with the same parameters are tagged in one call of the handler
    (which groups texts of similar length), then split back, each request getting its own texts' results. A failure
    is returned as the exception of each request of its call, and does not touch the others'."""
    answers: list[list[Any] | Exception] = [[] for _ in works]
    keys = [parameters_key(work.parameters) for work in works]
    for _, group in groupby(sorted(range(len(works)), key=keys.__getitem__), key=keys.__getitem__):
        chosen = list(group)
        texts = [text for index in chosen for text in works[index].texts]
        sizes = [size for index in chosen for size in works[index].sizes]
        parameters = works[chosen[0]].parameters
        if "batch_size" not in parameters:  # the batch's texts in one forward pass where they fit: why it waited
            parameters = {**parameters, "batch_size": max(1, min(len(texts), handler.max_batch_size))}
        try:
            results = handler.tag(texts, sizes, parameters)
        except Exception as error:  # one bad call must not fail the batch's other requests
            for index in chosen:
                answers[index] = error
            continue
        begin = 0
        for index in chosen:
            end = begin + len(works[index].texts)
            answers[index] = results[begin:end]
            begin = end
    return answers


class Merger:
    """Runs `run(works)` in one worker thread, one call at a time; the batches that arrive while a call runs are
    merged into the next call (at most `limit` requests).

    Serve's batch handler forms its next batch while the previous one runs, from what arrives within its wait: on a
    CPU, where tagging a batch takes far longer than the wait, it would hand over batches of one or two requests,
    one after another. Its batches come here instead, and a call takes every request that is waiting."""

    def __init__(self, run: Callable[[list[Work]], list[Any]], limit: int) -> None:
        self.run, self.limit = run, limit
        self.waiting: list[tuple[Work, asyncio.Future]] = []
        self.busy = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger")

    def submit(self, works: list[Work]) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in works]
        self.waiting.extend(zip(works, futures))
        if not self.busy:
            self.busy = True
            loop.create_task(self._drain())
        return futures

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                taken, self.waiting = self.waiting[: self.limit], self.waiting[self.limit :]
                try:
                    answers = await loop.run_in_executor(self.executor, self.run, [work for work, _ in taken])
                except Exception as error:  # tag_works answers its failures; this is a bug in it
                    answers = [error] * len(taken)
                for (_, future), answer in zip(taken, answers):
                    if not future.done():  # a client that went away cancels its future
                        future.set_result(answer)
        finally:
            self.busy = False  # no await since the loop's last check: nothing was added in between


@serve.deployment
class NerServer:
    """One replica: the handler of the folder, and a worker thread running its batches."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        self.handler = load_handler(self.settings)
        onnx = isinstance(self.handler, OnnxHandler)
        self.backend = ("onnx-int8" if self.settings.int8 else "onnx") if onnx else "pytorch"
        self.merger = Merger(partial(tag_works, self.handler), self.settings.max_batch_size)
        self.tag_batch.set_max_batch_size(self.settings.max_batch_size)
        self.tag_batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path in ("/health", "/ready"):
            return JSONResponse(self.health() if path == "/health" else self.ready())
        if path != "":
            return JSONResponse({"error": f"no route {request.url.path}: POST / or GET /health, /ready"}, 404)
        if request.method != "POST":
            return JSONResponse({"error": f'{request.method} /: POST {{"inputs": ...}} instead'}, 405)
        try:
            data = json.loads(await request.body())
            texts, sizes, single, parameters = self.handler.check(data)
        except ValueError as error:  # json's errors, and bad UTF-8, are ValueErrors too
            return JSONResponse({"error": str(error)}, 400)
        if not texts:
            return JSONResponse([])
        results = await (await self.tag_batch(Work(texts, sizes, parameters)))
        if isinstance(results, Exception):
            status = 400 if isinstance(results, ValueError) else 500
            return JSONResponse({"error": f"{type(results).__name__}: {results}"}, status)
        return JSONResponse(results[0] if single else results)

    @serve.batch  # its size and wait are set per deployment in __init__
    async def tag_batch(self, works: list[Work]) -> list[asyncio.Future]:
        """Each request's future answer: the batch goes to the merger and this returns at once (see Merger)."""
        return self.merger.submit(works)

    def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    def ready(self) -> dict[str, Any]:
        return {
            "ready": True,
            "model": self.settings.model,
            "backend": self.backend,
            "replica": serve.get_replica_context().replica_id.unique_id,
            "pid": os.getpid(),
        }


@dataclass
class Scaling:
    """How many replicas, how much each takes at once, and what happens past it."""

    replicas: int = 1
    min_replicas: int | None = None  # with max_replicas: Serve's autoscaling instead of a fixed count
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 32
    max_queued_requests: int = 16
    retry_after_s: float = 1.0
    cpus_per_replica: float = 1.0
    graceful_shutdown_timeout_s: float = 60.0


def build_app(settings: Settings, scaling: Scaling) -> Application:
    """The Serve application: `NerServer` with the replica count (or autoscaling), per-replica bound, back-pressure
    answer (503 with Retry-After) and CPUs of `scaling`."""
    options: dict[str, Any] = {
        "max_ongoing_requests": scaling.max_ongoing_requests,
        "max_queued_requests": scaling.max_queued_requests,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=scaling.retry_after_s),
        "ray_actor_options": {"num_cpus": scaling.cpus_per_replica},
        "graceful_shutdown_timeout_s": scaling.graceful_shutdown_timeout_s,
        "graceful_shutdown_wait_loop_s": 0.5,
    }
    if scaling.max_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas if scaling.min_replicas is not None else 1,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = scaling.replicas
    return NerServer.options(**options).bind(asdict(settings))


# How long a draining proxy reports itself unhealthy before it may count as drained: long enough for a load balancer
# polling /-/healthz to stop sending; Serve's default is 30 s. Read by the proxies when Ray starts them.
MIN_DRAINING_VARIABLE = "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S"


def drain_proxies(timeout_s: float, poll_s: float = 0.2) -> bool:
    """Drain every Serve proxy and wait, at most `timeout_s`, until none holds a request: a draining proxy still
    takes and answers requests (its /-/healthz says 503, so a load balancer stops sending), so that the requests
    queued in it, not only those a replica holds, are answered before Serve stops. Returns whether all drained.

    Serve's own shutdown drops what its proxies queue; this uses the proxy's draining, which Serve itself uses when
    a node goes away (Serve's internals: ray[serve] is pinned in requirements-serve.txt)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    proxies = list(ray.get(controller.get_proxies.remote()).values())
    ray.get([proxy.update_draining.remote(True) for proxy in proxies])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(ray.get([proxy.is_drained.remote() for proxy in proxies])):
            return True
        time.sleep(poll_s)
    return False
