"""Hugging Face Inference Endpoints handler for a bert-crf checkpoint.

run_ner.py copies this file into every output folder. The endpoint calls `EndpointHandler(path)` once, then the
handler with `{"inputs": str | list[str] | list[list[str]], "parameters": {...}}` per request; parameters are the
pipeline's (`aggregation_strategy`, `is_split_into_words`, `stride`, `ignore_labels`, ...).
"""

from __future__ import annotations

from typing import Any

from transformers import pipeline


class EndpointHandler:
    def __init__(self, path: str = "") -> None:
        # The checkpoint carries its own pipeline, which decodes with the CRF (see config.json: custom_pipelines).
        self.pipeline = pipeline("token-classification", model=path, trust_remote_code=True)

    def __call__(self, data: dict[str, Any]) -> list[Any]:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected a JSON object {"inputs": ..., "parameters": {...}}')
        inputs = data["inputs"]
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f'"parameters" must be an object, got {type(parameters).__name__}')
        parameters = dict(parameters)
        parameters.setdefault("aggregation_strategy", "simple")
        if isinstance(inputs, str) or (parameters.get("is_split_into_words") and inputs and isinstance(inputs[0], str)):
            return self.pipeline(inputs, **parameters)
        if not isinstance(inputs, list):
            raise ValueError(f'"inputs" must be a string or a list, got {type(inputs).__name__}')
        return [self.pipeline(item, **parameters) for item in inputs] if inputs else []
