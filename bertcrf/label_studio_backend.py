"""A Label Studio ML backend for a bert-crf model: Label Studio's ML backend protocol (as the official
label-studio-ml-backend serves it) on the standard library's ThreadingHTTPServer, pre-annotation with the CRF's
scores, and retraining in the background on the annotations made in Label Studio.

Routes (JSON in and out; a request Label Studio or a user got wrong answers 400 `{"error": message}`):

- `GET /health`, `GET /`: `{"status": "UP", "model_class", "model_version", "training"}`.
- `POST /setup` `{"project": "ID.TIMESTAMP", "schema": label config, "hostname", "access_token", ...}`: checks
  the labeling config against the model's labels, remembers Label Studio's address and token (to fetch the
  project's annotations for training) and answers `{"model_version"}`.
- `POST /predict` `{"tasks": [...], "label_config", "project", "params"}`: `{"results": [{"result": [...],
  "score", "model_version"}, ...]}`, one per task, in order. Each result is a "labels" span (character offsets,
  the entity's score from the CRF marginals); the task's score is the text's mistake probability (the model's
  probability that the text still holds a wrong or missed entity).
- `POST /webhook` `{"action", "project", "task", "annotation", ...}`: annotation events keep the project's
  annotations up to date and (by default) start a training; START_TRAINING (the Start Training button) starts
  one. `POST /train` (Label Studio's older training call, the annotated tasks in the body) does too.
- `GET /metrics`: counters (requests, tasks, entities dropped for labels missing from the config, trainings).
- `GET /versions`: `{"versions": [...]}`, the model versions served since start, the current one last.

Training (`Trainer`) runs run_ner.py in a subprocess, warm-started from the model being served, on the project's
annotations: Label Studio's JSON export of the project (fetched with the token from /setup or LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY) or, when that cannot be fetched, the annotations the webhooks carried. One training at a
time; a trigger during one schedules one more afterwards. When it succeeds, the new folder is loaded and served
(a new model version); when it fails, the model being served stays, and the log says why.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bertcrf.annotations import label_studio_task
from handler import _check_encodable, _limit


logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_NER = REPO_ROOT / "run_ner.py"
MODEL_CLASS = "BertCrfBackend"
# Webhook actions that change the annotations (and start a training with --train_on annotation).
ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED")
DELETE_EVENTS = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")
TRAIN_ON = ("annotation", "start", "never")
# Request bodies beyond this are refused before they are read (a webhook carries one task and its annotation).
MAX_BODY_BYTES = 16 * 1024 * 1024
# A labeling config is a few hundred bytes; this bounds what the XML parser is given.
MAX_CONFIG_CHARS = 100_000
# Small warm-start fine-tuning: a few dozen annotated texts, a few passes (run_ner.py options, see docs).
DEFAULT_TRAIN_OPTIONS = {
    "num_train_epochs": "5",
    "per_device_train_batch_size": "8",
    "learning_rate": "5e-5",
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": "true",
    "seed": "42",
}


class RequestError(ValueError):
    """A request that Label Studio or the user got wrong: answered 400 with this message."""


# ----------------------------------------------------------------------------------------------------------------
# The labeling config


@dataclass(frozen=True)
class LabelConfig:
    """What the backend needs of a labeling config: the <Labels> control, the <Text> it labels and its labels."""

    from_name: str
    to_name: str
    field: str
    labels: tuple[str, ...]


def parse_label_config(config: Any) -> LabelConfig:
    """The first <Labels name=... toName=...> over a <Text name=... value="$field"> of a Label Studio labeling
    config, or RequestError saying what is missing."""
    if not isinstance(config, str) or not config.strip():
        raise RequestError(f"the label config must be a non-empty XML string, got {config!r:.80}")
    if len(config) > MAX_CONFIG_CHARS:
        raise RequestError(f"the label config has {len(config)} characters, more than {MAX_CONFIG_CHARS}")
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as error:
        raise RequestError(f"the label config is not valid XML ({error})") from None
    texts = {node.get("name"): node.get("value", "") for node in root.iter("Text")}
    for node in root.iter("Labels"):
        to_name = node.get("toName", "")
        value = texts.get(to_name)
        if node.get("name") and value is not None and value.startswith("$") and len(value) > 1:
            labels = tuple(label.get("value", "") for label in node.iter("Label") if label.get("value"))
            return LabelConfig(node.get("name", ""), to_name, value[1:], labels)
    raise RequestError(
        'the label config has no <Labels name="..." toName="T"> over a <Text name="T" value="$field">: this backend '
        "labels spans of text (Label Studio's Named Entity Recognition template)"
    )


def entity_types(id2label: Mapping[Any, str]) -> tuple[str, ...]:
    """The entity types of a tagger's labels ("B-PER", "I-PER", "O" -> "PER"), in order of first appearance."""
    types = (label.split("-", 1)[1] if "-" in label else label for label in id2label.values() if label != "O")
    return tuple(dict.fromkeys(types))


def check_labels(config: LabelConfig, known: Sequence[str]) -> None:
    """RequestError when no label of the config is one the model tags (every prediction would be empty)."""
    if not set(config.labels) & set(known):
        raise RequestError(
            f"none of the labels of <Labels name={config.from_name!r}> ({', '.join(config.labels) or 'none'}) is one "
            f"the model tags ({', '.join(known)}): add <Label value=...> tags for the model's labels"
        )


# ----------------------------------------------------------------------------------------------------------------
# The served model


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and its version: replaced as a whole when a training succeeds."""

    version: str
    folder: str
    pipeline: Any
    labels: tuple[str, ...]
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def tag(self, texts: list[str]) -> list[dict[str, Any]]:
        # One request at a time on a model: the pipeline is not meant for concurrent calls.
        with self.lock:
            return self.pipeline(texts, aggregation_strategy="simple", return_mistake_probability=True)


def load_model(folder: str, version: str, device: str = "cpu") -> ServedModel:
    """The CRF pipeline of a bert-crf folder, as a ServedModel of `version`."""
    from bertcrf.crf_models import load_crf_pipeline

    pipe = load_crf_pipeline(folder, device=device)
    return ServedModel(version, folder, pipe, entity_types(pipe.model.config.id2label))


def version_name(base: str, number: int) -> str:
    """A model version: the first model's name, the training's number and the time it finished."""
    return f"{base}-v{number}-{time.strftime('%Y%m%d-%H%M%S')}"


# ----------------------------------------------------------------------------------------------------------------
# Predictions


@dataclass(frozen=True)
class Limits:
    """The input limits of handler.py (its defaults and BERT_CRF_MAX_* variables) that apply here."""

    max_text_chars: int
    max_items: int
    max_request_chars: int

    @classmethod
    def from_environment(cls, **given: int | None) -> Limits:
        """The limits given (None: not given), else from the BERT_CRF_MAX_* variables, else handler.py's defaults."""
        return cls(
            **{name: _limit(name, given.get(name)) for name in ("max_text_chars", "max_items", "max_request_chars")}
        )


def task_texts(tasks: Any, config: LabelConfig, limits: Limits) -> list[str]:
    """The text of each task (task["data"][field]), checked against the limits before any model work."""
    if not isinstance(tasks, list):
        raise RequestError(f'"tasks" must be a list of tasks, got {type(tasks).__name__}')
    if len(tasks) > limits.max_items:
        raise RequestError(f"the request holds {len(tasks)} tasks, more than {limits.max_items} (BERT_CRF_MAX_ITEMS)")
    texts = [task_text(task, index, config.field) for index, task in enumerate(tasks)]
    for index, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise RequestError(
                f"tasks[{index}] has a text of {len(text)} characters, more than {limits.max_text_chars} "
                "(BERT_CRF_MAX_TEXT_CHARS)"
            )
    total = sum(map(len, texts))
    if total > limits.max_request_chars:
        raise RequestError(
            f"the request's texts hold {total} characters in all, more than {limits.max_request_chars} "
            "(BERT_CRF_MAX_REQUEST_CHARS): ask for fewer tasks at a time"
        )
    return texts


def task_text(task: Any, index: int, key: str) -> str:
    where = f"tasks[{index}]"
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        raise RequestError(f'{where} must be a task object with a "data" object, got {task!r:.80}')
    text = data.get(key)
    if not isinstance(text, str):
        found = f"data keys {sorted(data)}" if key not in data else f"{type(text).__name__}"
        raise RequestError(
            f'{where}: the text of <Text value="${key}"> must be a string in data[{key!r}], got {found}'
        )
    try:
        _check_encodable(text, where)
    except ValueError as error:
        raise RequestError(str(error)) from None
    return text


def prediction(
    task: Mapping[str, Any], text: str, tagged: Mapping[str, Any], model: ServedModel, config: LabelConfig
) -> tuple[dict[str, Any], int]:
    """A task's prediction: its entities whose label the config has, as "labels" results, and the text's mistake
    probability as its score; and the number of entities dropped for labels missing from the config."""
    kept = [e for e in tagged["entities"] if e["entity_group"] in config.labels]
    task_id = task.get("id") if isinstance(task.get("id"), int) else 0
    made = label_studio_task(
        task_id, text, kept, model.version, config.from_name, config.to_name, tagged["mistake_probability"]
    )["predictions"][0]
    return made, len(tagged["entities"]) - len(kept)


# ----------------------------------------------------------------------------------------------------------------
# Annotations for training


def filtered_tasks(tasks: Sequence[Mapping[str, Any]], config: LabelConfig, known: Sequence[str]) -> tuple[list, int]:
    """The tasks with their annotations' spans of labels the model does not know left out (run_ner.py refuses
    them when it continues a tagger), and how many were left out. Other results are kept for the reader."""
    dropped = 0
    out = []
    for task in tasks:
        annotations = []
        for annotation in task.get("annotations") or []:
            result = annotation.get("result") if isinstance(annotation, dict) else None
            if not isinstance(result, list):
                continue
            kept = [item for item in result if _known_span(item, config, known)]
            dropped += len(result) - len(kept)
            annotations.append({**annotation, "result": kept})
        out.append({**task, "annotations": annotations})
    return out, dropped


def _known_span(item: Any, config: LabelConfig, known: Sequence[str]) -> bool:
    if not isinstance(item, dict) or item.get("type") != "labels" or item.get("from_name") != config.from_name:
        return False
    labels = (item.get("value") or {}).get("labels") or []
    return bool(labels) and labels[0] in known


def annotated(tasks: Sequence[Mapping[str, Any]]) -> int:
    """The number of tasks with an annotation that is neither cancelled nor skipped."""
    return sum(
        any(not a.get("was_cancelled") and not a.get("skipped") for a in task.get("annotations") or [])
        for task in tasks
    )


def fetch_export(hostname: str, token: str, project: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The project's tasks with their annotations, from Label Studio's JSON export API. A personal access token
    (a JWT refresh token) is exchanged for an access token first; a legacy token is sent as it is."""
    base = hostname.rstrip("/")
    header = f"Token {token}"
    if token.count(".") == 2:  # a JWT: Label Studio's personal access token
        body = json.dumps({"refresh": token}).encode()
        request = urllib.request.Request(
            f"{base}/api/token/refresh", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            header = f"Bearer {json.load(answer)['access']}"
    url = f"{base}/api/projects/{project}/export?exportType=JSON&download_all_tasks=false"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": header}), timeout=timeout) as r:
        tasks = json.load(r)
    if not isinstance(tasks, list):
        raise ValueError(f"the export of project {project} is a JSON {type(tasks).__name__}, not a list of tasks")
    return tasks


@dataclass
class Project:
    """What the backend knows of a Label Studio project: its config, where Label Studio is, and the annotated
    tasks the webhooks carried (by task id)."""

    id: str
    config: LabelConfig | None = None
    hostname: str = ""
    token: str = ""
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, task: Mapping[str, Any], annotation: Mapping[str, Any]) -> None:
        """Keep `annotation` of `task` (replacing an earlier version of it)."""
        held = self.tasks.setdefault(task["id"], {"id": task["id"], "data": task.get("data"), "annotations": []})
        held["annotations"] = [a for a in held["annotations"] if a.get("id") != annotation.get("id")]
        held["annotations"].append(dict(annotation))

    def remove(self, annotation_ids: set[int]) -> None:
        for task in self.tasks.values():
            task["annotations"] = [a for a in task["annotations"] if a.get("id") not in annotation_ids]


# ----------------------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class TrainSettings:
    """How the backend trains: where the runs go, run_ner.py's options, which events start one."""

    work_dir: Path
    options: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TRAIN_OPTIONS))
    extra_args: tuple[str, ...] = ()
    train_on: str = "annotation"
    python: str = sys.executable


class Trainer:
    """At most one training at a time, in a thread; a request during one schedules one more afterwards."""

    def __init__(self, backend: Backend, settings: TrainSettings) -> None:
        self.backend, self.settings = backend, settings
        self._condition = threading.Condition()
        self._wanted: str | None = None  # the project of the next training
        self.running = False
        self.runs = Counter[str]()
        threading.Thread(target=self._loop, name="trainer", daemon=True).start()

    def request(self, project: str) -> None:
        with self._condition:
            self._wanted = project
            self._condition.notify()

    def busy(self) -> bool:
        with self._condition:
            return self.running or self._wanted is not None

    def _loop(self) -> None:
        while True:
            with self._condition:
                while self._wanted is None:
                    self._condition.wait()
                project, self._wanted, self.running = self._wanted, None, True
            try:
                self.runs[self._train(project)] += 1
            except Exception:  # a bug in one training must not end the trainer
                logger.exception("training for project %s failed", project)
                self.runs["failed"] += 1
            finally:
                with self._condition:
                    self.running = False

    def _train(self, project_id: str) -> str:
        """One training: "trained", "failed" or "skipped" (no annotations yet)."""
        project = self.backend.project(project_id)
        current = self.backend.model
        if project.config is None:
            logger.warning("project %s: no label config yet (connect the backend first), no training", project_id)
            return "skipped"
        tasks, dropped = filtered_tasks(self._tasks(project), project.config, current.labels)
        if not annotated(tasks):
            logger.info("project %s: no annotated task yet, no training", project_id)
            return "skipped"
        number = self.backend.next_number(self.settings.work_dir)
        run = self.settings.work_dir / f"run-{number}"
        run.mkdir(parents=True)
        train_file = run / "train.json"
        train_file.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
        logger.info(
            "training %d: %d annotated tasks of project %s (%d results left out: labels the model does not know, "
            "other controls), from %s; log: %s",
            number,
            annotated(tasks),
            project_id,
            dropped,
            current.version,
            run / "train.log",
        )
        output = run / "model"
        if not self._run_ner(current.folder, train_file, project.config.field, output, run / "train.log"):
            return "failed"
        self.backend.serve(load_model(str(output), version_name(self.backend.base_name, number)))
        return "trained"

    def _tasks(self, project: Project) -> list[dict[str, Any]]:
        """Label Studio's export of the project when it can be fetched, else what the webhooks carried."""
        if project.hostname and project.token:
            try:
                return fetch_export(project.hostname, project.token, project.id)
            except (OSError, ValueError, KeyError) as error:
                logger.warning(
                    "project %s: could not fetch its annotations from %s (%s); training on the %d annotated tasks "
                    "the webhooks carried",
                    project.id,
                    project.hostname,
                    error,
                    len(project.tasks),
                )
        return [dict(task) for task in project.tasks.copy().values()]  # copied at once: webhooks add to it

    def _run_ner(self, model: str, train_file: Path, text_key: str, output: Path, log: Path) -> bool:
        options = {"model_name_or_path": model, "train_file": str(train_file), "output_dir": str(output)}
        options |= {"data_format": "label-studio", "text_key": text_key, **self.settings.options}
        command = [self.settings.python, str(RUN_NER), "--do_train"]
        command += [item for key, value in options.items() for item in (f"--{key}", value)]
        command += self.settings.extra_args
        with open(log, "w", encoding="utf-8") as handle:
            status = subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
        if status == 0 and (output / "config.json").is_file():
            return True
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        logger.error(
            "training failed (exit status %d), still serving the model before it:\n%s", status, "\n".join(tail)
        )
        return False


# ----------------------------------------------------------------------------------------------------------------
# The backend: what each route does


class Backend:
    """The protocol's routes over a served model (swapped atomically by the trainer)."""

    def __init__(self, model: ServedModel, settings: TrainSettings, limits: Limits, environment: Mapping[str, str]):
        self.model = model
        self.base_name = Path(model.folder).resolve().name if Path(model.folder).is_dir() else model.folder
        self.limits = limits
        self.versions = [model.version]
        self.counts = Counter[str]()
        self._projects: dict[str, Project] = {}
        self._lock = threading.Lock()
        self._number = 0
        self._default_host = environment.get("LABEL_STUDIO_URL", "")
        self._default_token = environment.get("LABEL_STUDIO_API_KEY", "")
        self.trainer = Trainer(self, settings)

    def serve(self, model: ServedModel) -> None:
        self.model = model  # one assignment: a request sees the old model or the new one, whole
        with self._lock:
            self.versions.append(model.version)
        logger.info("now serving %s (%s)", model.version, model.folder)

    def next_number(self, work_dir: Path) -> int:
        """The next training's number: past every run-N in `work_dir` (a restarted backend keeps the old runs)."""
        with self._lock:
            held = [int(p.name[4:]) for p in work_dir.glob("run-*") if p.name[4:].isdigit()]
            self._number = max([self._number, *held]) + 1
            return self._number

    def project(self, project_id: str) -> Project:
        with self._lock:
            if project_id not in self._projects:
                self._projects[project_id] = Project(project_id, None, self._default_host, self._default_token)
            return self._projects[project_id]

    # Routes

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP",
            "model_class": MODEL_CLASS,
            "model_version": self.model.version,
            "training": self.trainer.busy(),
        }

    def setup(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project = self.project(project_id(body.get("project")))
        config = parse_label_config(body.get("schema"))
        check_labels(config, self.model.labels)
        if config != project.config:  # Label Studio calls /setup often: said once per config
            self._warn_unknown(config)
        project.config = config
        # Label Studio sends its address and the project owner's token: kept to fetch annotations for training.
        if isinstance(body.get("hostname"), str) and body["hostname"]:
            project.hostname = body["hostname"]
        if isinstance(body.get("access_token"), str) and body["access_token"]:
            project.token = body["access_token"]
        return {"model_version": self.model.version}

    def predict(self, body: Mapping[str, Any]) -> dict[str, Any]:
        model = self.model  # the same model for the whole request, whatever training finishes meanwhile
        config = self._config(body)
        check_labels(config, model.labels)
        tasks = body.get("tasks")
        texts = task_texts(tasks, config, self.limits)
        results, dropped = [], 0
        for task, text, tagged in zip(tasks, texts, model.tag(texts) if texts else []):
            made, lost = prediction(task, text, tagged, model, config)
            results.append(made)
            dropped += lost
        self.counts.update(predict_requests=1, tasks=len(texts), dropped_entities=dropped)
        if dropped:
            logger.info("left out %d entities of labels that the label config does not have", dropped)
        return {"results": results}

    def webhook(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        action = body.get("action")
        info = body.get("project")
        if not isinstance(action, str) or not isinstance(info, dict) or "id" not in info:
            raise RequestError('a webhook must be {"action": "...", "project": {"id": ..., "label_config": ...}, ...}')
        project = self.project(str(info["id"]))
        if isinstance(info.get("label_config"), str):
            project.config = parse_label_config(info["label_config"])
        self.counts[f"webhook {action}"] += 1
        if action in DELETE_EVENTS:
            project.remove({a.get("id") for a in body.get("annotations") or [] if isinstance(a, dict)})
            return HTTPStatus.OK, {"status": "ok"}
        if action in ANNOTATION_EVENTS:
            self._keep_annotations(project, body)
        if action == "START_TRAINING" or (
            action in ANNOTATION_EVENTS and self.trainer.settings.train_on == "annotation"
        ):
            if self.trainer.settings.train_on != "never":
                self.trainer.request(project.id)
                return HTTPStatus.CREATED, {"status": "ok", "result": "training scheduled"}
        return HTTPStatus.OK, {"status": "ok"}

    def train(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Label Studio's older training call: the annotated tasks come in the body."""
        project = self.project(project_id(body.get("project")))
        project.config = self._config(body)
        for task in body.get("annotations") or []:
            for annotation in task.get("annotations") or [] if isinstance(task, dict) else []:
                if isinstance(task.get("id"), int):
                    project.add(task, annotation)
        if self.trainer.settings.train_on != "never":
            self.trainer.request(project.id)
        return {"status": "ok"}

    def metrics(self) -> dict[str, Any]:
        return {
            "model_version": self.model.version,
            **self.counts,
            **{f"trainings {k}": n for k, n in self.trainer.runs.items()},
        }

    def list_versions(self) -> dict[str, Any]:
        with self._lock:
            return {"versions": list(self.versions), "model_version": self.model.version}

    # Helpers

    def _config(self, body: Mapping[str, Any]) -> LabelConfig:
        """The request's label config, else the one its project was set up with."""
        if body.get("label_config") is not None:
            return parse_label_config(body["label_config"])
        config = self.project(project_id(body.get("project"))).config if body.get("project") else None
        if config is None:
            raise RequestError('the request has no "label_config" and its project was not set up (POST /setup)')
        return config

    def _keep_annotations(self, project: Project, body: Mapping[str, Any]) -> None:
        tasks, annotation = body.get("task"), body.get("annotation")
        pairs = (
            zip(tasks, annotation)
            if isinstance(tasks, list) and isinstance(annotation, list)
            else [(tasks, annotation)]
        )
        for task, item in pairs:
            if isinstance(task, dict) and isinstance(task.get("id"), int) and isinstance(item, dict):
                project.add(task, item)

    def _warn_unknown(self, config: LabelConfig) -> None:
        unknown = [label for label in config.labels if label not in self.model.labels]
        missing = [label for label in self.model.labels if label not in config.labels]
        if unknown:
            logger.warning(
                "labels of the config that the model does not tag (never predicted): %s", ", ".join(unknown)
            )
        if missing:
            logger.warning(
                "labels the model tags that the config lacks (their entities are left out): %s", ", ".join(missing)
            )


def project_id(value: Any) -> str:
    """The project id of Label Studio's "ID.TIMESTAMP" project string (or a bare id)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.split(".", 1)[0]:
        raise RequestError(f'"project" must be Label Studio\'s "ID.TIMESTAMP" project string, got {value!r:.80}')
    return text.split(".", 1)[0]


# ----------------------------------------------------------------------------------------------------------------
# HTTP


def make_server(backend: Backend, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP server of `backend` on (host, port); port 0 picks a free one (`server.server_address`)."""
    routes: dict[tuple[str, str], Callable[[Mapping[str, Any]], Any]] = {
        ("GET", "/"): lambda _: backend.health(),
        ("GET", "/health"): lambda _: backend.health(),
        ("GET", "/metrics"): lambda _: backend.metrics(),
        ("GET", "/versions"): lambda _: backend.list_versions(),
        ("POST", "/setup"): backend.setup,
        ("POST", "/predict"): backend.predict,
        ("POST", "/webhook"): backend.webhook,
        ("POST", "/train"): backend.train,
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _answer(self, method: str) -> None:
            route = routes.get((method, self.path.split("?", 1)[0].rstrip("/") or "/"))
            try:
                if route is None:
                    raise LookupError(f"no route {method} {self.path}")
                answer = route(self._body() if method == "POST" else {})
                status, answer = answer if isinstance(answer, tuple) else (HTTPStatus.OK, answer)
            except LookupError as error:
                status, answer = HTTPStatus.NOT_FOUND, {"error": str(error)}
            except RequestError as error:
                logger.warning("%s %s: %s", method, self.path, error)
                status, answer = HTTPStatus.BAD_REQUEST, {"error": str(error)}
            except Exception as error:  # a bug: logged with its traceback, answered, and the server goes on
                logger.exception("%s %s failed", method, self.path)
                status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"}
            self._send(status, answer)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                raise RequestError(f"the request body has {length} bytes, more than {MAX_BODY_BYTES}")
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise RequestError(f"the request body is not JSON ({error})") from None
            if not isinstance(body, dict):
                raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
            return body

        def _send(self, status: int, answer: Mapping[str, Any]) -> None:
            data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def environment() -> Mapping[str, str]:
    """The variables the backend reads (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)."""
    return {key: os.environ[key] for key in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY") if os.environ.get(key)}
