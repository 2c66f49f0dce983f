"""transformers' own common model tests (`ModelTesterMixin`, from the test files of the installed version's source
release) against every CRF tagger of this repo: saving and loading, init paths, dtypes, attention options,
training, resizing embeddings. `make transformers-tests` fetches those files into outputs/transformers-tests (part
of `make test`); without them this module skips and says so. Tests that need an accelerator, Flash Attention or
DeepSpeed skip as they do in transformers' CI on a CPU."""

from __future__ import annotations

import importlib
import sys
import types
import unittest
from pathlib import Path

import pytest
import torch
import transformers

from bertcrf import crf_models
from configuration_bilstm_crf import BiLstmCrfConfig
from conftest import FAMILY_SOURCES, ID2LABEL, LABEL2ID, TINY_BERT_KWARGS
from modeling_bilstm_crf import BiLstmCrfForTokenClassification


ROOT = Path(__file__).resolve().parent.parent
COMMON_TESTS = ROOT / "outputs" / "transformers-tests" / transformers.__version__
PACKAGE = "transformers_common_tests"


def load_common_tests(folder: Path) -> types.ModuleType:
    """transformers' tests/test_modeling_common.py from `folder`, imported as a package module. Two mixins it
    imports live in subfolders the source release leaves out (generation and transformers' own exporters): empty
    stand-ins replace them, as a token classifier neither generates nor takes part in those suites."""
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(folder)]
    sys.modules[PACKAGE] = package
    for name, mixin in (
        ("exporters.test_export", "ExportTesterMixin"),
        ("generation.test_utils", "GenerationTesterMixin"),
    ):
        parent = f"{PACKAGE}.{name.split('.')[0]}"
        sys.modules.setdefault(parent, types.ModuleType(parent)).__path__ = []
        stub = types.ModuleType(f"{PACKAGE}.{name}")
        setattr(stub, mixin, type(mixin, (), {}))
        sys.modules[stub.__name__] = stub
    return importlib.import_module(f"{PACKAGE}.test_modeling_common")


if not (COMMON_TESTS / "test_modeling_common.py").is_file():
    pytest.skip(
        f"transformers' common model tests are not in {COMMON_TESTS} (make transformers-tests fetches them from "
        "the source release on PyPI)",
        allow_module_level=True,
    )
common = load_common_tests(COMMON_TESTS)

LABELS = dict(id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))


class TaggerTester:
    """The model tester the mixin expects: a tiny config and a batch of ids with ragged padding."""

    batch_size, seq_length, is_training = 3, 7, True

    def __init__(self, parent: unittest.TestCase, family: str) -> None:
        self.parent, self.family = parent, family
        config = self.get_config()
        # The BiLSTM's states are 2 * hidden_size wide (both directions), its embeddings made as wide.
        self.vocab_size = config.vocab_size
        self.hidden_size = config.hidden_size * (2 if family == "bilstm" else 1)
        self.num_hidden_layers = config.num_hidden_layers
        self.num_attention_heads = getattr(config, "num_attention_heads", None)

    def get_config(self):
        if self.family == "bilstm":
            return BiLstmCrfConfig(vocab_size=99, embedding_size=32, hidden_size=16, num_hidden_layers=2, **LABELS)
        overrides = FAMILY_SOURCES[self.family][4] if self.family in FAMILY_SOURCES else {}
        config_class = crf_models.family_of(self.family).config_class
        return config_class(**(TINY_BERT_KWARGS | overrides | {"vocab_size": 99}), **LABELS)

    def prepare_config_and_inputs_for_common(self):
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = torch.ones(self.batch_size, self.seq_length, dtype=torch.long)
        attention_mask[1, -2:] = 0  # right padding, which every family (and the BiLSTM) takes
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


def tagger_test_case(family: str, model_class: type) -> type:
    class TaggerCommonTest(common.ModelTesterMixin, unittest.TestCase):
        all_model_classes = (model_class,)
        has_attentions = family != "bilstm"

        def setUp(self) -> None:
            self.model_tester = TaggerTester(self, family)

        def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
            # The mixin labels only the classes of transformers' own mappings: tag labels, as for its token
            # classifiers, with [CLS] and padding out of the chain.
            inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
            if return_labels:
                labels = torch.zeros(self.model_tester.batch_size, self.model_tester.seq_length, dtype=torch.long)
                labels[:, 0] = -100
                labels[inputs_dict["attention_mask"] == 0] = -100
                inputs_dict["labels"] = labels
            return inputs_dict

    TaggerCommonTest.__name__ = TaggerCommonTest.__qualname__ = f"Test{model_class.__name__}Common"
    return TaggerCommonTest


for _family in ["bert", *FAMILY_SOURCES]:
    _case = tagger_test_case(_family, crf_models.family_of(_family).crf_class)
    globals()[_case.__name__] = _case
_case = tagger_test_case("bilstm", BiLstmCrfForTokenClassification)
globals()[_case.__name__] = _case
del _case, _family
