"""The Label Studio ML backend (bertcrf/label_studio_backend.py, scripts/label_studio_backend.py): its routes served
in-process over the tiny BERT-CRF, background retraining with run_ner.py, and a round trip with a real Label Studio
1.23 (installed by `make label-studio` into outputs/label-studio-venv; skipped without it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bertcrf import label_studio_backend as lsb
from conftest import REPO_ROOT


pytestmark = pytest.mark.slow

CONFIG = (
    '<View><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/><Label value="ORG"/>'
    '<Label value="MISC"/></Labels><Text name="text" value="$text"/></View>'
)
# Another field name and control names, and only PER: the model's LOC and ORG entities are left out.
PER_ONLY = '<View><Text name="doc" value="$body"/><Labels name="ner" toName="doc"><Label value="PER"/></Labels></View>'
CHINESE = "北京是中国的首都，张三在上海工作。"
ENGLISH = "tim cook is apple ceo in new york"
LIMITS = lsb.Limits(max_text_chars=60, max_items=4, max_request_chars=100)
LABEL_STUDIO = REPO_ROOT / "outputs" / "label-studio-venv" / "bin" / "label-studio"


def call(base: str, path: str, body: object = None, method: str | None = None) -> tuple[int, dict]:
    """(status, JSON answer) of a request to the backend (POST when there is a body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def start(model_folder: Path, work_dir: Path, **settings: object) -> tuple[str, lsb.Backend, object]:
    """An in-process backend over `model_folder` on a free port: (base URL, backend, server)."""
    options = dict(lsb.DEFAULT_TRAIN_OPTIONS, num_train_epochs="1", max_seq_length="32")
    train = lsb.TrainSettings(work_dir, options, **settings)
    model = lsb.load_model(str(model_folder), lsb.version_name("tiny", 0))
    backend = lsb.Backend(model, train, LIMITS, {})
    server = lsb.make_server(backend, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", backend, server


@pytest.fixture(scope="module")
def served(crf_checkpoint, tmp_path_factory):
    base, backend, server = start(crf_checkpoint, tmp_path_factory.mktemp("backend_work"))
    yield base, backend
    server.shutdown()


def tasks(*texts: str, key: str = "text") -> list[dict]:
    return [{"id": 10 + k, "data": {key: text}} for k, text in enumerate(texts)]


def wait_idle(backend: lsb.Backend, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while backend.trainer.busy():
        assert time.monotonic() < deadline, "the training did not finish in time"
        time.sleep(0.2)


# ----------------------------------------------------------------------------------------------------------------
# The labeling config


def test_parse_label_config_finds_the_labels_over_the_text():
    config = lsb.parse_label_config(PER_ONLY)
    assert config == lsb.LabelConfig("ner", "doc", "body", ("PER",))
    assert lsb.parse_label_config(CONFIG).labels == ("PER", "LOC", "ORG", "MISC")


@pytest.mark.parametrize(
    "config, message",
    [
        ("<View><Text name='t' value='$text'/></View>", "no <Labels"),
        ("<View><Labels name='l' toName='x'><Label value='PER'/></Labels><Text name='t' value='$t'/></View>", "no"),
        ("<View><Labels", "not valid XML"),
        ("", "non-empty XML string"),
        (None, "non-empty XML string"),
    ],
)
def test_parse_label_config_says_what_is_wrong(config, message):
    with pytest.raises(lsb.RequestError, match=message):
        lsb.parse_label_config(config)


def test_entity_types_strip_the_tag_prefixes():
    assert lsb.entity_types({0: "O", 1: "B-PER", 2: "I-PER", 3: "S-LOC"}) == ("PER", "LOC")


# ----------------------------------------------------------------------------------------------------------------
# Routes


def test_health_and_root_say_up_with_the_model_version(served):
    base, backend = served
    for path in ("/health", "/"):
        status, answer = call(base, path)
        assert status == 200
        assert answer["status"] == "UP" and answer["model_class"] == lsb.MODEL_CLASS
        assert answer["model_version"] == backend.model.version


def test_setup_answers_the_model_version(served):
    base, backend = served
    status, answer = call(
        base, "/setup", {"project": "3.1700000000", "schema": CONFIG, "hostname": "", "access_token": ""}
    )
    assert (status, answer) == (200, {"model_version": backend.model.version})


@pytest.mark.parametrize(
    "schema, message",
    [
        ("<View><Text name='text' value='$text'/></View>", "no <Labels"),
        (
            "<View><Labels name='l' toName='t'><Label value='Food'/></Labels><Text name='t' value='$t'/></View>",
            "none of the labels",
        ),
    ],
)
def test_setup_refuses_a_config_the_model_cannot_label(served, schema, message):
    base, _ = served
    status, answer = call(base, "/setup", {"project": "3.1700000000", "schema": schema})
    assert status == 400 and message in answer["error"]


def test_predict_gives_spans_at_the_text_offsets_with_scores(served):
    base, backend = served
    status, answer = call(
        base, "/predict", {"tasks": tasks(CHINESE, ENGLISH), "label_config": CONFIG, "project": "3.1"}
    )
    assert status == 200
    results = answer["results"]
    assert len(results) == 2
    expected = backend.model.tag([CHINESE, ENGLISH])
    for text, made, tagged in zip((CHINESE, ENGLISH), results, expected):
        assert made["model_version"] == backend.model.version
        assert made["score"] == pytest.approx(tagged["mistake_probability"], abs=1e-4)
        assert 0 < made["score"] < 1
        spans = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in made["result"]]
        assert spans == [(e["start"], e["end"], e["entity_group"]) for e in tagged["entities"]]
        assert spans, "the tiny model tags entities in both texts"
        for item in made["result"]:
            value = item["value"]
            assert text[value["start"] : value["end"]] == value["text"]
            assert (item["from_name"], item["to_name"], item["type"]) == ("label", "text", "labels")
            assert 0 < item["score"] <= 1


def test_predict_leaves_out_labels_the_config_lacks_and_reads_its_field(served):
    base, backend = served
    before = backend.counts["dropped_entities"]
    status, answer = call(base, "/predict", {"tasks": tasks(CHINESE, key="body"), "label_config": PER_ONLY})
    assert status == 200
    tagged = backend.model.tag([CHINESE])[0]["entities"]
    result = answer["results"][0]["result"]
    assert [r["value"]["start"] for r in result] == [e["start"] for e in tagged if e["entity_group"] == "PER"]
    assert all((r["from_name"], r["to_name"], r["value"]["labels"]) == ("ner", "doc", ["PER"]) for r in result)
    others = sum(e["entity_group"] != "PER" for e in tagged)
    assert others > 0 and backend.counts["dropped_entities"] - before == others


@pytest.mark.parametrize(
    "body, message",
    [
        ({"tasks": tasks("x" * 61), "label_config": CONFIG}, "tasks[0] has a text of 61 characters"),
        ({"tasks": tasks("a", "b", "c", "d", "e"), "label_config": CONFIG}, "5 tasks, more than 4"),
        ({"tasks": tasks("x" * 60, "y" * 50), "label_config": CONFIG}, "110 characters in all"),
        ({"tasks": "北京", "label_config": CONFIG}, '"tasks" must be a list'),
        ({"tasks": [{"id": 1}], "label_config": CONFIG}, 'tasks[0] must be a task object with a "data"'),
        ({"tasks": [{"data": {"body": "x"}}], "label_config": CONFIG}, "data['text']"),
        ({"tasks": [{"data": {"text": 3}}], "label_config": CONFIG}, "must be a string"),
        ({"tasks": tasks("北京"), "label_config": "<View/>"}, "no <Labels"),
        ({"tasks": tasks("北京"), "label_config": "<View"}, "not valid XML"),
        ({"tasks": tasks("北京")}, 'no "label_config"'),
    ],
)
def test_bad_requests_get_400_with_a_message_and_the_server_goes_on(served, body, message):
    base, _ = served
    status, answer = call(base, "/predict", body)
    assert status == 400 and message in answer["error"], answer
    assert call(base, "/health")[0] == 200


def test_a_body_that_is_not_json_gets_400(served):
    base, _ = served
    request = urllib.request.Request(base + "/predict", b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400 and "not JSON" in json.load(caught.value)["error"]
    assert call(base, "/nowhere")[0] == 404


def annotation_event(project: int, task_id: int, text: str, spans: list[tuple[int, int, str]]) -> dict:
    """The body of Label Studio's ANNOTATION_CREATED webhook (the fields the backend reads)."""
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": a, "end": b, "text": text[a:b], "labels": [label]},
        }
        for a, b, label in spans
    ]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": CONFIG},
        "task": {"id": task_id, "data": {"text": text}},
        "annotation": {"id": task_id + 100, "result": result, "was_cancelled": False},
    }


def test_a_webhook_retrains_in_the_background_and_the_new_model_serves(served):
    base, backend = served
    old = backend.model.version
    status, answer = call(base, "/webhook", annotation_event(7, 1, CHINESE, [(0, 2, "LOC"), (9, 11, "PER")]))
    assert status == 201 and answer["status"] == "ok"
    assert call(base, "/webhook", annotation_event(7, 2, ENGLISH, [(0, 8, "PER"), (12, 17, "ORG")]))[0] == 201
    # While it trains, predictions keep coming from the model being served.
    answered_during = 0
    while backend.trainer.busy():
        status, answer = call(base, "/predict", {"tasks": tasks(CHINESE), "label_config": CONFIG})
        # A later training may switch in between the answer and this check: any version served so far will do.
        assert status == 200 and answer["results"][0]["model_version"] in call(base, "/versions")[1]["versions"]
        answered_during += backend.trainer.busy()
        time.sleep(0.1)
    assert answered_during > 0, "no prediction was answered during the training"
    new = backend.model.version
    assert new != old and "-v" in new
    assert call(base, "/health")[1]["model_version"] == new
    assert call(base, "/setup", {"project": "7.1", "schema": CONFIG})[1] == {"model_version": new}
    _, answer = call(base, "/predict", {"tasks": tasks(ENGLISH), "label_config": CONFIG})
    assert answer["results"][0]["model_version"] == new
    versions = call(base, "/versions")[1]["versions"]  # one or two trainings (the second event came during one)
    assert versions[0] == old and versions[-1] == new and len(versions) in (2, 3)
    # The last training holds both tasks (a first one may have started before the second event came).
    runs = Path(backend.trainer.settings.work_dir).glob("run-*/train.json")
    last = max(runs, key=lambda path: int(path.parent.name.removeprefix("run-")))
    trained = json.loads(last.read_text("utf-8"))
    assert sorted(task["data"]["text"] for task in trained) == sorted([CHINESE, ENGLISH])
    assert call(base, "/metrics")[1]["trainings trained"] >= 1


def test_other_webhook_events_do_not_train(served):
    base, backend = served
    status, answer = call(base, "/webhook", {"action": "PROJECT_UPDATED", "project": {"id": 7}})
    assert (status, answer) == (200, {"status": "ok"})
    assert not backend.trainer.busy()
    assert call(base, "/webhook", {"action": "START_TRAINING"})[0] == 400


def test_a_failed_training_leaves_the_old_model_serving(crf_checkpoint, tmp_path):
    base, backend, server = start(crf_checkpoint, tmp_path, extra_args=("--no_such_option",))
    try:
        old = backend.model.version
        assert call(base, "/webhook", annotation_event(8, 1, CHINESE, [(0, 2, "LOC")]))[0] == 201
        time.sleep(0.5)
        wait_idle(backend)
        assert backend.model.version == old
        assert call(base, "/health")[1]["model_version"] == old
        assert call(base, "/metrics")[1]["trainings failed"] == 1
        assert "no_such_option" in (tmp_path / "run-1" / "train.log").read_text("utf-8")
        _, answer = call(base, "/predict", {"tasks": tasks(CHINESE), "label_config": CONFIG})
        assert answer["results"][0]["model_version"] == old
    finally:
        server.shutdown()


def test_train_on_never_keeps_the_annotations_without_training(crf_checkpoint, tmp_path):
    base, backend, server = start(crf_checkpoint, tmp_path, train_on="never")
    try:
        assert call(base, "/webhook", annotation_event(9, 1, CHINESE, [(0, 2, "LOC")])) == (200, {"status": "ok"})
        exported = [{"id": 2, "data": {"text": ENGLISH}, "annotations": [{"id": 5, "result": []}]}]
        body = {"annotations": exported, "project": "9.1700000000", "label_config": CONFIG}
        assert call(base, "/train", body) == (200, {"status": "ok"})
        assert sorted(backend.project("9").tasks) == [1, 2] and not backend.trainer.busy()
        deleted = {"action": "ANNOTATIONS_DELETED", "project": {"id": 9}, "annotations": [{"id": 101}]}
        assert call(base, "/webhook", deleted)[0] == 200
        assert backend.project("9").tasks[1]["annotations"] == []
    finally:
        server.shutdown()


def test_fetch_export_trades_a_personal_access_token_for_an_access_token():
    import http.server

    seen = []

    class LabelStudio(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self._json({"access": "ACCESS"})

        def do_GET(self):
            seen.append((self.path, self.headers["Authorization"]))
            self._json([{"id": 1, "data": {"text": "x"}, "annotations": []}])

        def _json(self, value):
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LabelStudio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}/"
        assert lsb.fetch_export(host, "a.b.c", "3") == [{"id": 1, "data": {"text": "x"}, "annotations": []}]
        assert seen[0] == ("/api/token/refresh", {"refresh": "a.b.c"})
        assert seen[1][0].startswith("/api/projects/3/export?exportType=JSON") and seen[1][1] == "Bearer ACCESS"
        lsb.fetch_export(host, "legacy0123", "3")
        assert seen[-1][1] == "Token legacy0123"
    finally:
        server.shutdown()


def test_training_numbers_follow_the_runs_a_work_dir_holds(served, tmp_path):
    _, backend = served
    (tmp_path / "run-4").mkdir()
    (tmp_path / "run-x").mkdir()
    assert backend.next_number(tmp_path) == 5
    assert backend.next_number(tmp_path) == 6


def test_training_drops_spans_of_labels_the_model_does_not_know():
    config = lsb.parse_label_config(CONFIG)
    span = {"from_name": "label", "type": "labels", "value": {"start": 0, "end": 2, "labels": ["MISC"]}}
    known = dict(span, value={"start": 0, "end": 2, "labels": ["LOC"]})
    kept, dropped = lsb.filtered_tasks([{"id": 1, "annotations": [{"result": [span, known]}]}], config, ("LOC",))
    assert dropped == 1 and kept[0]["annotations"][0]["result"] == [known]


def test_limits_come_from_options_then_the_handler_variables(monkeypatch):
    monkeypatch.setenv("BERT_CRF_MAX_ITEMS", "7")
    assert lsb.Limits.from_environment(max_text_chars=5) == lsb.Limits(5, 7, 10_000)
    with pytest.raises(ValueError, match="max_items must be a positive integer"):
        lsb.Limits.from_environment(max_items=0)


def test_the_script_refuses_a_folder_without_a_model(tmp_path):
    import label_studio_backend as script

    with pytest.raises(FileNotFoundError, match="not a model folder"):
        script.main(["--model", str(tmp_path)])


# ----------------------------------------------------------------------------------------------------------------
# A real Label Studio

USER, PASSWORD, TOKEN = "test@example.com", "bert-crf-test-pass", "0123456789abcdef0123456789abcdef01234567"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer in {seconds} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio 1.23 on a free port with a user whose (legacy) API token is TOKEN: its base URL."""
    if not LABEL_STUDIO.exists():
        pytest.skip(f"Label Studio is not installed ({LABEL_STUDIO} missing): run make label-studio")
    folder = tmp_path_factory.mktemp("label_studio")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "LABEL_STUDIO"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(folder),
        LABEL_STUDIO_USERNAME=USER,
        LABEL_STUDIO_PASSWORD=PASSWORD,
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        # Label Studio 1.23 accepts legacy tokens only when asked; and refuses ML backends and webhooks on local
        # addresses unless told (both are on localhost here).
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        SECRET_KEY="bert-crf-test-secret",
    )
    log = folder / "label-studio.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(LABEL_STUDIO), "start", "--no-browser", "--port", str(port), "--host", f"http://127.0.0.1:{port}"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(base + "/health", process, 240, log)
        yield base
    finally:
        stop(process)


@pytest.fixture(scope="module")
def backend_process(crf_checkpoint, tmp_path_factory):
    """scripts/label_studio_backend.py over the tiny BERT-CRF on a free port, one training epoch: its base URL."""
    folder = tmp_path_factory.mktemp("backend_process")
    port = free_port()
    log = folder / "backend.log"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "label_studio_backend.py"), "--model", str(crf_checkpoint)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--work_dir", str(folder / "work"), "--epochs", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_up(f"http://127.0.0.1:{port}/health", process, 120, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop(process)


def rest(base: str, path: str, body: object = None, method: str | None = None, **params: object) -> object:
    """Label Studio's REST API with the test user's token: the JSON answer (an error fails the test)."""
    query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"}
    request = urllib.request.Request(base + path + query, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            raw = answer.read()
    except urllib.error.HTTPError as error:
        pytest.fail(f"{method or ('POST' if body is not None else 'GET')} {path}: {error.code} {error.read()[:500]!r}")
    return json.loads(raw) if raw.strip() else None


def predictions(base: str, project: int) -> dict[str, list[dict]]:
    """Ask Label Studio to fetch predictions for every task ("Retrieve Predictions"), then each text's."""
    rest(
        base,
        "/api/dm/actions",
        {"selectedItems": {"all": True, "excluded": []}},
        id="retrieve_tasks_predictions",
        project=project,
    )
    listed = rest(base, "/api/tasks", project=project, fields="all", page_size=100)["tasks"]
    return {task["data"]["text"]: task["predictions"] for task in listed}


def wait_for_version(backend_base: str, old: str, seconds: float = 180) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = call(backend_base, "/health")[1]
        if health["model_version"] != old and not health["training"]:
            return health["model_version"]
        time.sleep(1)
    pytest.fail(f"the backend still serves {old} after {seconds} s")


def test_label_studio_round_trip(label_studio, backend_process):
    backend_base, backend_log = backend_process
    texts = [CHINESE, ENGLISH, "上海和北京都是大城市"]
    project = rest(label_studio, "/api/projects", {"title": "bert-crf backend test", "label_config": CONFIG})["id"]
    connected = rest(label_studio, "/api/ml", {"project": project, "url": backend_base, "title": "bert-crf"})
    first = call(backend_base, "/health")[1]["model_version"]
    assert connected["state"] == "CO", connected  # Label Studio checked /health and /setup
    assert connected["model_version"] == first
    rest(label_studio, f"/api/projects/{project}/import", [{"text": text} for text in texts])

    made = predictions(label_studio, project)
    assert sorted(made) == sorted(texts)
    for text, held in made.items():
        assert [p["model_version"] for p in held] == [first]
        assert 0 < held[0]["score"] < 1
        assert held[0]["result"], f"no entities for {text!r}"
        for item in held[0]["result"]:
            assert text[item["value"]["start"] : item["value"]["end"]] == item["value"]["text"]

    # Submitting annotations sends ANNOTATION_CREATED webhooks: the backend trains on the project's export.
    listed = rest(label_studio, "/api/tasks", project=project, fields="all")["tasks"]
    task_of = {task["data"]["text"]: task["id"] for task in listed}
    for text, spans in ((CHINESE, [(0, 2, "LOC"), (9, 11, "PER")]), (ENGLISH, [(0, 8, "PER"), (12, 17, "ORG")])):
        result = annotation_event(project, 0, text, spans)["annotation"]["result"]
        rest(label_studio, f"/api/tasks/{task_of[text]}/annotations", {"result": result})
    second = wait_for_version(backend_base, first)

    # The Start Training button (a START_TRAINING webhook) trains once more, from the model just trained.
    rest(label_studio, f"/api/ml/{connected['id']}/train", {})
    third = wait_for_version(backend_base, second)
    log = backend_log.read_text()
    assert "could not fetch" not in log, log[-2000:]  # the training data came from Label Studio's export
    runs = sorted((backend_log.parent / "work").glob("run-*"), key=lambda run: int(run.name.split("-")[1]))
    assert len(runs) >= 2 and all((run / "model" / "config.json").is_file() for run in runs)
    exported = json.loads((runs[-1] / "train.json").read_text("utf-8"))
    spans = {
        task["data"]["text"]: [(r["value"]["start"], r["value"]["end"]) for r in task["annotations"][0]["result"]]
        for task in exported
    }
    assert spans == {CHINESE: [(0, 2), (9, 11)], ENGLISH: [(0, 8), (12, 17)]}

    made = predictions(label_studio, project)
    for text, held in made.items():
        assert held[-1]["model_version"] == third, [p["model_version"] for p in held]
        for item in held[-1]["result"]:
            assert text[item["value"]["start"] : item["value"]["end"]] == item["value"]["text"]
    state = rest(label_studio, f"/api/ml/{connected['id']}")
    assert state["model_version"] == third
