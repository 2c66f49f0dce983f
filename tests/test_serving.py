"""Serving on Ray Serve (bertcrf/serving.py, scripts/serve.py): batches split back per request, the ONNX handler, and
a real serve.py over the tiny BERT-CRF under concurrency, bad input, overload, a killed replica and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import DEMO_DIR, REPO_ROOT, subprocess_env
from handler import EndpointHandler


serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -r requirements-test.txt)")

from bertcrf import ner_data, serving  # noqa: E402


pytestmark = pytest.mark.slow

SERVE = REPO_ROOT / "scripts" / "serve.py"
LIMITS = {"max_request_chars": 2000, "max_text_chars": 1000, "max_items": 16}


@pytest.fixture(scope="module")
def texts():
    return ["".join(e["tokens"]) for e in ner_data.read_column_file(DEMO_DIR / "dev.txt")][:48]


@pytest.fixture(scope="module")
def handler(crf_checkpoint):
    return EndpointHandler(str(crf_checkpoint), **LIMITS)


def same(answer, expected) -> bool:
    """Equal entities, scores within float noise (a batch's padding changes the last bits)."""
    if isinstance(expected, list) and expected and isinstance(expected[0], list):
        return len(answer) == len(expected) and all(same(a, e) for a, e in zip(answer, expected))
    key = lambda e: (e["entity_group"], e["start"], e["end"], e["word"])  # noqa: E731
    if [key(e) for e in answer] != [key(e) for e in expected]:
        return False
    return all(abs(a["score"] - e["score"]) < 1e-4 for a, e in zip(answer, expected))


# --- batches, without Ray --------------------------------------------------------------------------------------


def work(handler: EndpointHandler, inputs, parameters=None) -> serving.Work:
    texts, sizes, _, checked = handler.check({"inputs": inputs, "parameters": parameters or {}})
    return serving.Work(texts, sizes, checked)


def test_a_batch_gives_each_request_its_own_results(handler, texts):
    works = [
        work(handler, texts[0:3]),
        work(handler, texts[3:4], {"aggregation_strategy": "none"}),
        work(handler, texts[4:9]),
        work(handler, list(texts[9]), {"is_split_into_words": True}),
    ]
    answers = serving.tag_works(handler, works)
    assert same(answers[0], handler({"inputs": texts[0:3]}))
    assert answers[1] == handler({"inputs": texts[3:4], "parameters": {"aggregation_strategy": "none"}})
    assert same(answers[2], handler({"inputs": texts[4:9]}))
    assert same(answers[3][0], handler({"inputs": list(texts[9]), "parameters": {"is_split_into_words": True}}))


def test_a_failing_call_fails_only_its_requests(handler, texts, monkeypatch):
    real = handler.tag

    def tag(batch, sizes, parameters):
        if parameters.get("aggregation_strategy") == "none":
            raise RuntimeError("boom")
        return real(batch, sizes, parameters)

    monkeypatch.setattr(handler, "tag", tag)
    answers = serving.tag_works(
        handler, [work(handler, texts[:2]), work(handler, texts[2:3], {"aggregation_strategy": "none"})]
    )
    assert same(answers[0], handler({"inputs": texts[:2]}))
    assert isinstance(answers[1], RuntimeError)


def test_serve_py_refuses_a_bad_command_line_before_starting_ray(tmp_path):
    for argv, message in (
        (["--model", str(tmp_path / "missing")], "no such folder"),
        (["--model", str(tmp_path)], "no config.json"),
        (["--model", "user/model", "--min_replicas", "2"], "--min_replicas needs --max_replicas"),
        (["--model", "user/model", "--max_ongoing_requests", "2"], "must be at least --max_batch_size"),
    ):
        done = subprocess.run([sys.executable, str(SERVE), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


# --- a real serve.py -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(base: str, body, timeout: float = 60) -> tuple[int, object, dict]:
    """(status, JSON answer, headers); `body` bytes go as they are."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(base, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        return error.code, answer, dict(error.headers)


def get(url: str) -> tuple[int, object]:
    """(status, JSON answer or text); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
            return answer.status, json.loads(text) if text.startswith(("{", "[")) else text
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


class Server:
    """scripts/serve.py in a subprocess, on a free port, until stopped."""

    def __init__(self, model: Path, env: dict, *options: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, str(SERVE), "--model", str(model), "--port", str(self.port), *options]
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 180
        while not any(line.startswith("Serving ") for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("serve.py did not start:\n" + "".join(self.lines[-40:]))
            time.sleep(0.2)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@pytest.fixture(scope="module")
def server(crf_checkpoint):
    options = ["--max_batch_size", "4", "--max_ongoing_requests", "4", "--max_queued_requests", "4"]
    options += ["--threads", "1", "--graceful_shutdown_s", "10"]
    for name, value in LIMITS.items():
        options += [f"--{name}", str(value)]
    running = Server(crf_checkpoint, subprocess_env(), *options)
    yield running
    assert running.stop() == 0, "".join(running.lines[-40:])


def test_concurrent_answers_are_each_requests_own(server, handler, texts):
    requests = [texts[i : i + 1 + i % 3] for i in range(0, 40)]
    requests += [texts[i] for i in range(40, 48)]  # single texts: a single answer
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda inputs: post(server.base, {"inputs": inputs}), requests))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) > len(requests) // 2 and set(statuses) <= {200, 503}, answers
    for inputs, (status, answer, _) in zip(requests, answers):
        if status == 200:
            assert same(answer, handler({"inputs": inputs})), (inputs, answer)


def test_bad_requests_get_the_handlers_errors(server, handler):
    cases = [
        (b"{not json", "Expecting property name"),
        ({"text": "x"}, 'expected a JSON object {"inputs"'),
        ({"inputs": "张三", "parameters": {"top_k": 3}}, "unknown parameters ['top_k']"),
        ({"inputs": "张" * 1001}, "more than the limit of 1000 (max_text_chars"),
        ({"inputs": ["张"] * 17}, "more than the limit of 16 (max_items"),
        ({"inputs": "\ud800"}, "lone surrogate"),
    ]
    for body, message in cases:
        status, answer, _ = post(server.base, body)
        assert status == 400 and message in answer["error"], (body, answer)
    assert get(server.base + "/nowhere")[0] == 404
    assert get(server.base + "/")[0] == 405
    assert post(server.base, {"inputs": []})[:2] == (200, [])
    status, answer, _ = post(server.base, {"inputs": "张三在北京。"})
    assert status == 200 and same(answer, handler({"inputs": "张三在北京。"}))


def test_health_and_readiness(server, crf_checkpoint):
    assert get(server.base + "/health") == (200, {"status": "ok"})
    status, ready = get(server.base + "/ready")
    assert status == 200 and ready["ready"] and ready["backend"] == "pytorch" and ready["model"] == str(crf_checkpoint)
    assert get(server.base + "/-/healthz")[0] == 200


def test_overload_is_answered_503_at_once_and_the_server_keeps_serving(server, texts):
    big = {"inputs": ["".join(texts)[:125]] * 16}  # 2,000 characters: the largest request allowed
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: post(server.base, big, timeout=120), range(32)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) >= 8, statuses
    assert all(headers.get("retry-after") == "1" for status, _, headers in answers if status == 503)
    assert post(server.base, {"inputs": texts[0]})[0] == 200


def test_a_killed_replica_is_replaced_and_every_request_is_answered(server, texts):
    pid = get(server.base + "/ready")[1]["pid"]
    outcomes: list[int] = []

    def client(offset: int) -> None:
        for i in range(12):
            outcomes.append(post(server.base, {"inputs": texts[(offset + i) % len(texts)]}, timeout=120)[0])
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert len(outcomes) == 36 and set(outcomes) <= {200, 500, 503}, outcomes  # each answered, errors said so
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, ready = get(server.base + "/ready")
        if status == 200 and ready["pid"] != pid:
            break
        time.sleep(1)
    else:
        pytest.fail("no new replica answered /ready within 2 minutes")
    assert post(server.base, {"inputs": texts[0]})[0] == 200


def test_sigterm_finishes_the_requests_in_flight_then_exits(server, handler, texts):
    """Last: it stops the module's server."""
    requests = [["".join(texts[i : i + 8])[:120]] * 8 for i in range(6)]  # within the 4 ongoing + 4 queued
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(post, server.base, {"inputs": inputs}, 120) for inputs in requests]
        time.sleep(0.3)
        assert server.stop() == 0, "".join(server.lines[-40:])
    outcomes = [answer.result() for answer in answers]
    # Every request taken is answered in full; one turned away (503: the queue was full) was never taken.
    assert sum(status == 200 for status, _, _ in outcomes) >= 4, outcomes
    for inputs, (status, results, _) in zip(requests, outcomes):
        assert status == 503 or (status == 200 and same(results, handler({"inputs": inputs}))), (status, results)
    assert get(server.base + "/health")[0] == 0  # nothing listens any more
