#!/usr/bin/env python
"""Serve a bert-crf model as a Label Studio ML backend: pre-annotations with the CRF's scores, and retraining in
the background on the annotations made in Label Studio (see docs/label-studio-backend.md).

    python scripts/label_studio_backend.py --model outputs/demo --port 9090
    # Label Studio: Project > Settings > Model > Connect Model, URL http://localhost:9090

Each training fine-tunes the model being served with run_ner.py (options: --epochs, --batch_size,
--learning_rate, --train_arg for any other) into WORK_DIR/run-N/model, and serves it once it is done; the log of
each run is WORK_DIR/run-N/train.log. --train_on says which events start one: "annotation" (every submitted or
updated annotation, and the Start Training button), "start" (the button only) or "never". Label Studio's address
and token for fetching the project's annotations come from /setup, or LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.
Input limits are handler.py's (BERT_CRF_MAX_TEXT_CHARS, BERT_CRF_MAX_ITEMS, BERT_CRF_MAX_REQUEST_CHARS).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bertcrf import cli
from bertcrf import label_studio_backend as backend


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the bert-crf folder to serve (and to start training from)")
    parser.add_argument("--host", default="0.0.0.0", help="the address to listen on (default: every interface)")
    parser.add_argument("--port", type=int, default=9090, help="the port to listen on (0: a free one; default 9090)")
    parser.add_argument("--device", default="cpu", help='the device of the model, e.g. "cpu" or "cuda"')
    parser.add_argument(
        "--work_dir",
        default="outputs/label-studio-backend",
        help="where each training writes its data, log and model (run-N/; default outputs/label-studio-backend)",
    )
    parser.add_argument("--train_on", choices=backend.TRAIN_ON, default="annotation", help="what starts a training")
    parser.add_argument(
        "--epochs", default=backend.DEFAULT_TRAIN_OPTIONS["num_train_epochs"], help="run_ner.py's --num_train_epochs"
    )
    parser.add_argument(
        "--batch_size",
        default=backend.DEFAULT_TRAIN_OPTIONS["per_device_train_batch_size"],
        help="run_ner.py's --per_device_train_batch_size",
    )
    parser.add_argument(
        "--learning_rate",
        default=backend.DEFAULT_TRAIN_OPTIONS["learning_rate"],
        help="run_ner.py's --learning_rate (the encoder's)",
    )
    parser.add_argument(
        "--train_arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for run_ner.py, e.g. --train_arg=--crf_learning_rate --train_arg=0.05 (repeat it)",
    )
    for name, what in (("max_text_chars", "characters a text"), ("max_items", "tasks a request")):
        parser.add_argument(f"--{name}", type=int, help=f"{what} (default: BERT_CRF_{name.upper()} or handler.py's)")
    parser.add_argument(
        "--max_request_chars",
        type=int,
        help="characters of a request's texts together; Retrieve Predictions sends all selected tasks in one request "
        "(default: BERT_CRF_MAX_REQUEST_CHARS or handler.py's 10000)",
    )
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING"), help="what is logged")
    return parser


def train_settings(args: argparse.Namespace) -> backend.TrainSettings:
    options = dict(backend.DEFAULT_TRAIN_OPTIONS)
    options.update(num_train_epochs=str(args.epochs), per_device_train_batch_size=str(args.batch_size))
    options["learning_rate"] = str(args.learning_rate)
    return backend.TrainSettings(Path(args.work_dir), options, tuple(args.train_arg), args.train_on)


def check_model(folder: str) -> None:
    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"--model {folder}: not a model folder (no config.json); train one with run_ner.py")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_model(args.model)
    limits = backend.Limits.from_environment(
        max_text_chars=args.max_text_chars, max_items=args.max_items, max_request_chars=args.max_request_chars
    )
    model = backend.load_model(args.model, backend.version_name(Path(args.model).resolve().name, 0), args.device)
    server = backend.make_server(
        backend.Backend(model, train_settings(args), limits, backend.environment()), args.host, args.port
    )
    host, port = server.server_address[:2]
    logging.getLogger(__name__).info("serving %s on http://%s:%d", model.version, host, port)
    print(f"Label Studio ML backend for {args.model} on http://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    cli.run(main)
