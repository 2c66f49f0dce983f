"""CRF taggers of every encoder family (ERNIE, RoBERTa, XLM-RoBERTa, ELECTRA beside BERT): run_ner.py picks the
family from the checkpoint's model_type, loads the pretrained body exactly (bare or with its pretraining head),
refuses a checkpoint whose encoder weights do not fit, and the trained folder loads as remote code anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import run_ner
from bertcrf import arguments, crf_models, shipping, training
from configuration_crf import CrfConfigMixin
from conftest import CRF_LABELS, DEMO_DIR, FAMILY_SOURCES, FAMILY_VARIANTS, LABELS, elsewhere
from modeling_bert_crf import BertCrfForTokenClassification
from modeling_encoder_crf import EncoderCrfMixin


FAMILIES = list(FAMILY_SOURCES)
CRF_TYPES = {
    "ernie": "ernie_crf",
    "roberta": "roberta_crf",
    "xlm-roberta": "xlm_roberta_crf",
    "electra": "electra_crf",
}
# A demo sentence whose characters are all in the tiny vocabularies.
SENTENCE = "受台风影响"


def source_model(folder, family: str, variant: str) -> torch.nn.Module:
    """The checkpoint in `folder` loaded with the class that wrote it (FAMILY_SOURCES), in eval mode."""
    _, bare, with_head, _, _ = FAMILY_SOURCES[family]
    return getattr(transformers, bare if variant == "bare" else with_head).from_pretrained(folder).eval()


def padded_batch(tokenizer) -> dict[str, torch.Tensor]:
    """Two right-padded demo sentences as the tokenizer encodes them (padding changes RoBERTa's position ids)."""
    return tokenizer([SENTENCE, "受台风影响较大的地区"], padding=True, return_tensors="pt")


def body_states(body: torch.nn.Module, batch: dict[str, torch.Tensor], **extra) -> torch.Tensor:
    with torch.no_grad():
        return body(batch["input_ids"], attention_mask=batch["attention_mask"], **extra).last_hidden_state


def load(folder, head: str = "crf", labels=LABELS) -> tuple[torch.nn.Module, object]:
    """run_ner's model for `folder` and its tokenizer."""
    tokenizer = crf_models.load_tokenizer(str(folder))
    args = arguments.ModelArguments(model_name_or_path=str(folder), head=head)
    return training.load_model(args, list(labels), "BIO", tokenizer).eval(), tokenizer


def copy_without(folder, target, key: str, extra: dict[str, torch.Tensor] | None = None):
    """A copy of checkpoint `folder` in `target` whose weights lack `key` (and hold `extra`)."""
    shutil.copytree(folder, target)
    weights = load_file(target / "model.safetensors")
    del weights[key]
    weights.update(extra or {})
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


# ----------------------------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("family", FAMILIES)
def test_family_config(family, tmp_path):
    config_class = crf_models.family_of(family).config_class
    assert config_class.model_type == CRF_TYPES[family]
    assert issubclass(config_class, CrfConfigMixin)
    config = config_class(id2label=dict(enumerate(LABELS)), loss_reduction="sum", hidden_size=32)
    assert config.resolved_tag_scheme == "BIO" and config.label2id["B-PER"] == 1
    pipeline_class = config.custom_pipelines["token-classification"]["impl"]
    assert pipeline_class == "pipeline_bert_crf.CrfTokenClassificationPipeline"
    config.save_pretrained(tmp_path)
    again = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(again) is config_class and again.loss_reduction == "sum" and again.hidden_size == 32
    with pytest.raises(ValueError, match="loss_reduction must be one of .* got 'max'"):
        config_class(loss_reduction="max")
    with pytest.raises(ValueError, match="classifier_dropout must be in \\[0, 1\\), got 1.5"):
        config_class(classifier_dropout=1.5)


def test_family_of_names_the_supported_types():
    assert crf_models.family_of("bert_crf").crf_class is BertCrfForTokenClassification
    with pytest.raises(
        ValueError,
        match="model_type 'gpt2' is not supported; supported model types: bert, electra, "
        "ernie, roberta, xlm-roberta, bert_crf",
    ):
        crf_models.family_of("gpt2")


def test_unsupported_checkpoint_is_a_value_error(tmp_path, family_checkpoint):
    shutil.copytree(family_checkpoint("ernie"), tmp_path / "gpt2")
    transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="'gpt2' is not supported; supported model types: bert, electra, ernie"):
        load(tmp_path / "gpt2")


# ----------------------------------------------------------------------------------------------------------------
# Loading a pretrained body


@pytest.mark.parametrize("variant", FAMILY_VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_pretrained_body_loads_exactly(family, variant, head, family_checkpoint):
    folder = family_checkpoint(family, variant)
    model, tokenizer = load(folder, head)
    crf = crf_models.family_of(family)
    assert type(model) is (crf.crf_class if head == "crf" else crf.softmax_class)
    source = source_model(folder, family, variant).base_model
    batch = padded_batch(tokenizer)
    extra = {"task_type_ids": torch.full_like(batch["input_ids"], 2)} if family == "ernie" else {}
    expected = body_states(source, batch, **extra)
    torch.testing.assert_close(body_states(model.base_model, batch, **extra), expected, atol=1e-5, rtol=0)
    if head == "crf":
        with torch.no_grad():
            logits = model(**batch, **extra).logits
            emissions = model.emissions(batch["input_ids"], attention_mask=batch["attention_mask"], **extra)
        torch.testing.assert_close(emissions, logits)
        torch.testing.assert_close(logits, model.classifier(expected))
        assert model.config.special_token_ids == sorted(set(tokenizer.all_special_ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_windows_fit_the_position_embeddings(family, family_checkpoint):
    model, tokenizer = load(family_checkpoint(family))
    config = model.config
    config.max_position_embeddings = 34
    window = training.window_length(arguments.DataTrainingArguments(), tokenizer, config)
    assert window == (32 if family in ("roberta", "xlm-roberta") else 34)  # RoBERTa's positions start at pad + 1 = 2


def test_ernie_task_type_ids_reach_the_body(family_checkpoint):
    model, tokenizer = load(family_checkpoint("ernie"))
    assert model.config.use_task_id and model.ernie.embeddings.task_type_embeddings.num_embeddings == 3
    batch = padded_batch(tokenizer)
    with torch.no_grad():
        plain = model(**batch).logits
        zeros = model(**batch, task_type_ids=torch.zeros_like(batch["input_ids"])).logits
        tasked = model(**batch, task_type_ids=torch.ones_like(batch["input_ids"])).logits
    torch.testing.assert_close(plain, zeros)  # as ErnieForTokenClassification: zeros by default
    assert not torch.allclose(plain, tasked, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_encoder_weight_is_an_error(family, family_checkpoint, tmp_path):
    key = "embeddings.task_type_embeddings.weight" if family == "ernie" else "encoder.layer.1.output.dense.weight"
    folder = copy_without(family_checkpoint(family), tmp_path / "broken", key)
    prefix = crf_models.family_of(family).crf_class.base_model_prefix
    with pytest.raises(ValueError, match=rf"encoder weights missing from the checkpoint .*: {prefix}\.{key}$"):
        load(folder)
    with pytest.raises(ValueError, match=rf"missing .*: {prefix}\.{key}$"):
        load(folder, head="softmax")


def test_unused_encoder_weight_is_an_error(family_checkpoint, tmp_path):
    source = family_checkpoint("roberta", "head")
    extra = {"roberta.encoder.layer.2.output.dense.weight": torch.zeros(32, 37)}  # a layer the config lacks
    folder = copy_without(source, tmp_path / "extra", "lm_head.dense.weight", extra)
    unused = r"weights the model does not use: roberta\.encoder\.layer\.2\.output\.dense\.weight$"
    with pytest.raises(ValueError, match=unused):
        load(folder)


def test_masked_lm_checkpoint_of_another_family_is_an_error(family_checkpoint, tmp_path):
    # What run_ner.py did before: an ERNIE masked-LM checkpoint read as BERT left the body random (all keys missing).
    folder = tmp_path / "ernie_as_bert"
    shutil.copytree(family_checkpoint("ernie", "head"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "bert"}))
    with pytest.raises(
        ValueError,
        match=r"missing from the checkpoint .*bert\.embeddings\.word_embeddings\.weight.*"
        r"does not use: .*ernie\.embeddings\.task_type_embeddings\.weight",
    ):
        load(folder)


@pytest.mark.parametrize("family", FAMILIES)
def test_freeze_encoder_layers(family, family_checkpoint):
    model, _ = load(family_checkpoint(family))
    model.freeze_encoder_layers(1)
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    prefix = model.base_model_prefix
    assert frozen and all(n.startswith((f"{prefix}.embeddings", f"{prefix}.encoder.layer.0.")) for n in frozen)
    assert f"{prefix}.encoder.layer.0.output.dense.weight" in frozen
    assert f"{prefix}.embeddings.word_embeddings.weight" in frozen
    if family == "electra":
        assert "electra.embeddings_project.weight" in frozen  # 16-wide embeddings projected to 32
    model.freeze_encoder_layers(0)
    assert all(param.requires_grad for param in model.parameters())
    with pytest.raises(ValueError, match="num_layers must be an int between 0 and 2, got 3"):
        model.freeze_encoder_layers(3)


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_model_accepts_no_loss_kwargs(family):
    # The CRF loss is a mean over sentences: the Trainer must scale it for gradient accumulation itself.
    assert crf_models.family_of(family).crf_class.accepts_loss_kwargs is False


def test_bert_crf_checkpoint_keeps_its_class(crf_checkpoint):
    model, _ = load(crf_checkpoint, labels=CRF_LABELS)
    assert type(model) is BertCrfForTokenClassification
    saved = load_file(crf_checkpoint / "model.safetensors")
    for name, value in model.state_dict().items():
        if name in saved:
            assert torch.equal(value, saved[name]), name
    assert set(saved) <= set(model.state_dict())


# ----------------------------------------------------------------------------------------------------------------
# run_ner.py end to end: nothing learns (learning rates 0), so the saved encoder must be the pretrained one


@pytest.fixture(scope="module")
def trained(tmp_path_factory, family_checkpoint):
    """Per family, run_ner.py on its masked-LM (ELECTRA: discriminator) checkpoint for 2 steps at learning rate 0."""
    folders = {}
    for family in FAMILIES:
        out = tmp_path_factory.mktemp(f"trained_{family}") / "run"
        argv = [
            "--model_name_or_path",
            str(family_checkpoint(family, "head")),
            "--train_file",
            str(DEMO_DIR / "train.txt"),
            "--output_dir",
            str(out),
            "--do_train",
            "--max_train_samples",
            "16",
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--max_seq_length",
            "32",
            "--learning_rate",
            "0",
            "--head_learning_rate",
            "0",
            "--crf_learning_rate",
            "0",
            "--save_strategy",
            "no",
            "--seed",
            "3",
            "--report_to",
            "none",
            "--disable_tqdm",
            "True",
        ]
        run_ner.main(argv)
        folders[family] = out
    return folders


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import json
    import sys

    import torch

    for name in ("modeling_crf", "modeling_bert_crf", "crf_models", "run_ner"):
        assert importlib.util.find_spec(name) is None, f"the repo's {name} is importable"

    from transformers import AutoModelForTokenClassification

    jobs = json.loads(open(sys.argv[1]).read())
    report = {}
    for family, job in jobs.items():
        try:
            AutoModelForTokenClassification.from_pretrained(job["folder"])
            untrusted = None
        except ValueError as exc:
            untrusted = str(exc)
        model = AutoModelForTokenClassification.from_pretrained(job["folder"], trust_remote_code=True).eval()
        input_ids, attention_mask = torch.tensor(job["input_ids"]), torch.tensor(job["attention_mask"])
        with torch.no_grad():
            hidden = model.base_model(input_ids, attention_mask=attention_mask).last_hidden_state
            out = model(input_ids=input_ids, attention_mask=attention_mask)
        torch.save({"hidden": hidden, "logits": out.logits, "predictions": out.predictions}, job["output"])
        report[family] = {
            "untrusted": untrusted, "class": type(model).__name__, "config": type(model.config).__name__,
            "module": type(model).__module__, "file": sys.modules[type(model).__module__].__file__,
        }
    with open(sys.argv[2], "w") as handle:
        json.dump(report, handle)
    """
)


@pytest.mark.slow
def test_trained_folder_loads_as_remote_code_with_the_pretrained_encoder(trained, family_checkpoint, tmp_path):
    jobs, expected = {}, {}
    for family, folder in trained.items():
        config = json.loads((folder / "config.json").read_text())
        crf_class = crf_models.family_of(family).crf_class
        module, config_module = crf_class.__module__, crf_models.family_of(family).config_class.__module__
        assert config["model_type"] == CRF_TYPES[family]
        assert config["auto_map"] == {
            "AutoConfig": f"{config_module}.{crf_models.family_of(family).config_class.__name__}",
            "AutoModel": f"{module}.{crf_class.__name__}",
            "AutoModelForTokenClassification": f"{module}.{crf_class.__name__}",
        }
        # The model's code (the one list: bertcrf.shipping) and the serving files, nothing else.
        shipped = {*shipping.model_code(crf_class), *shipping.SERVING_FILES}
        assert {p.name for p in folder.glob("*.py")} == shipped
        assert not (folder / "modeling_bert_crf.py").exists()  # no BERT code in another family's folder
        tokenizer = crf_models.load_tokenizer(str(folder))
        batch = padded_batch(tokenizer)
        source = source_model(family_checkpoint(family, "head"), family, "head").base_model
        in_process = crf_models.load_crf_model(str(folder)).eval()
        assert type(in_process) is crf_class
        with torch.no_grad():
            out = in_process(**{k: batch[k] for k in ("input_ids", "attention_mask")})
        expected[family] = {"hidden": body_states(source, batch), "logits": out.logits, "predictions": out.predictions}
        jobs[family] = {
            "folder": str(folder),
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "output": str(tmp_path / f"{family}.pt"),
        }
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    (workdir / "load_remote.py").write_text(elsewhere(REMOTE_SCRIPT))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRUST_REMOTE_CODE="false",
        HF_MODULES_CACHE=str(tmp_path / "modules_cache"),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, str(workdir / "load_remote.py"), str(tmp_path / "jobs.json"), str(tmp_path / "report.json")],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads((tmp_path / "report.json").read_text())
    for family in trained:
        got = report[family]
        assert got["untrusted"] is not None and "trust_remote_code=True" in got["untrusted"]
        assert got["class"] == crf_models.family_of(family).crf_class.__name__
        assert got["config"] == crf_models.family_of(family).config_class.__name__
        assert got["module"].startswith("transformers_modules.") and str(tmp_path / "modules_cache") in got["file"]
        outputs = torch.load(tmp_path / f"{family}.pt", weights_only=True)
        # The "done when": the saved encoder is the pretrained one.
        torch.testing.assert_close(outputs["hidden"], expected[family]["hidden"], atol=1e-4, rtol=0)
        torch.testing.assert_close(outputs["logits"], expected[family]["logits"], atol=1e-5, rtol=0)
        assert torch.equal(outputs["predictions"], expected[family]["predictions"])


@pytest.mark.parametrize("family", FAMILIES)
def test_trained_tagger_keeps_its_class(family, trained):
    config = training.checkpoint_config(arguments.ModelArguments(model_name_or_path=str(trained[family])))
    assert type(config) is crf_models.family_of(family).config_class  # run_ner.py keeps its labels and scheme
    model, _ = load(trained[family], labels=[config.id2label[i] for i in range(config.num_labels)])
    assert type(model) is crf_models.family_of(family).crf_class
    saved = load_file(trained[family] / "model.safetensors")
    state = model.state_dict()
    assert set(saved) == set(state)
    for name, value in saved.items():
        assert torch.equal(state[name], value), name


def test_softmax_head_from_a_trained_crf_tagger(trained):
    # The CRF goes unused (not an encoder weight); the body and the classifier load.
    config = training.checkpoint_config(arguments.ModelArguments(model_name_or_path=str(trained["ernie"])))
    labels = [config.id2label[i] for i in range(config.num_labels)]
    model, _ = load(trained["ernie"], head="softmax", labels=labels)
    assert type(model) is transformers.ErnieForTokenClassification
    assert not hasattr(model.config, "tag_scheme") and not getattr(model.config, "custom_pipelines", None)
    saved = load_file(trained["ernie"] / "model.safetensors")
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name


@pytest.mark.parametrize("family", FAMILIES)
def test_crf_pipeline_tags_with_exact_offsets(family, trained):
    pipe = crf_models.load_crf_pipeline(str(trained[family]), device="cpu")
    text = f"{SENTENCE}，{SENTENCE}"
    words = pipe(text, ignore_labels=[])  # every character, O included
    assert [(w["start"], w["end"]) for w in words] == [(i, i + 1) for i in range(len(text))]
    assert [w["word"] for w in words] == list(text)
    torch.manual_seed(0)
    with torch.no_grad():  # emissions that vary strongly from character to character: entities appear
        pipe.model.classifier.weight.normal_(0.0, 1.0)
    entities = pipe(text, aggregation_strategy="simple")
    assert entities, "no entity with a strong random classifier"
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["word"]
        assert entity["entity_group"] in {label[2:] for label in pipe.model.config.label2id if label != "O"}


def test_every_crf_tagger_is_an_encoder_crf():
    for family in crf_models.FAMILIES.values():
        assert issubclass(family.crf_class, EncoderCrfMixin)
        model_type = family.config_class.model_type
        assert crf_models.MODEL_CLASSES[model_type] is family.crf_class
        assert type(transformers.AutoConfig.for_model(model_type)) is family.config_class


def test_bert_modules_re_export_the_shared_head():
    # Scripts and older code import the head and its config from the BERT files; the old names stay importable.
    import configuration_bert_crf
    import configuration_crf
    import modeling_bert_crf
    import modeling_crf
    import modeling_crf_tagger
    import pipeline_bert_crf

    for name in ("CRF", "FORBIDDEN_SCORE"):
        assert getattr(modeling_bert_crf, name) is getattr(modeling_crf, name), name
    for name in ("CrfTaggingMixin", "CrfTokenClassifierOutput", "BertCrfTokenClassifierOutput"):
        assert getattr(modeling_bert_crf, name) is getattr(modeling_crf_tagger, name), name
    assert modeling_crf_tagger.BertCrfTokenClassifierOutput is modeling_crf_tagger.CrfTokenClassifierOutput
    assert pipeline_bert_crf.BertCrfTokenClassificationPipeline is pipeline_bert_crf.CrfTokenClassificationPipeline
    for name in (
        "CrfConfigMixin",
        "TAG_SCHEMES",
        "SCHEME_PREFIXES",
        "CUSTOM_PIPELINE",
        "allowed_transitions",
        "detect_tag_scheme",
    ):
        assert getattr(configuration_bert_crf, name) is getattr(configuration_crf, name), name
    assert configuration_bert_crf.BertCrfConfig.model_type == "bert_crf"
    assert issubclass(configuration_bert_crf.BertCrfConfig, configuration_crf.CrfConfigMixin)


# ----------------------------------------------------------------------------------------------------------------
# Downstream: each family as a distillation teacher, and masked-language-model adaptation of each family's body


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_distill_from_a_teacher_of_every_family(family, trained, tmp_path):
    import distill
    from modeling_bilstm_crf import BiLstmCrfForTokenClassification

    teacher = distill.load_teacher(str(trained[family]))
    assert type(teacher) is crf_models.FAMILIES[family].crf_class  # its own body, not BERT's over other keys
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    out = tmp_path / "student"
    results = distill.main(
        [
            "--teacher_name_or_path",
            str(trained[family]),
            "--train_file",
            str(DEMO_DIR / "train.txt"),
            "--validation_file",
            str(DEMO_DIR / "dev.txt"),
            "--output_dir",
            str(out),
            "--do_train",
            "--do_eval",
            "--max_train_samples",
            "16",
            "--max_eval_samples",
            "8",
            "--max_steps",
            "2",
            "--max_seq_length",
            "32",
            "--per_device_train_batch_size",
            "8",
            "--distill_target",
            "kl",
            "--alpha",
            "0.5",
            "--report_to",
            "none",
            "--disable_tqdm",
            "True",
        ]
    )
    assert results["eval_samples"] == 8
    student = crf_models.load_crf_model(str(out))
    assert isinstance(student, BiLstmCrfForTokenClassification)
    assert student.config.id2label == teacher.config.id2label
    # the student starts from the teacher's embeddings and reads the teacher's tokenizer
    assert student.config.vocab_size == teacher.get_input_embeddings().weight.shape[0]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_run_mlm_adapts_every_family(family, family_checkpoint, tmp_path):
    import run_mlm

    out = tmp_path / "mlm"
    results = run_mlm.main(
        [
            "--model_name_or_path",
            str(family_checkpoint(family, "head")),
            "--ner_files",
            str(DEMO_DIR / "train.txt"),
            "--max_seq_length",
            "32",
            "--max_train_lines",
            "40",
            "--output_dir",
            str(out),
            "--do_train",
            "True",
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "1e-3",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--disable_tqdm",
            "True",
        ]
    )
    assert results["train_loss"] > 0
    # the adapted encoder is a body run_ner.py takes: its masked-LM head is allowed to go unused, nothing else
    model = training.load_model(
        arguments.ModelArguments(model_name_or_path=str(out)),
        LABELS,
        "BIO",
        crf_models.load_tokenizer(str(out)),
    )
    assert type(model) is crf_models.FAMILIES[family].crf_class


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_round_trip_of_every_family(family, trained, tmp_path):
    """run_ner.py output -> ONNX (the family's inputs: no token type ids) -> the torch-free tagger gives the
    PyTorch pipeline's entities; INT8 exports and stays close."""
    pytest.importorskip("onnxruntime")
    import export_onnx
    from ner_onnx import OnnxNerTagger

    pipe = crf_models.load_crf_pipeline(str(trained[family]), device="cpu")
    with torch.no_grad():  # a strong random classifier, so that there are entities to compare
        pipe.model.classifier.weight.normal_(0.0, 1.0)
    strong = tmp_path / "strong"
    pipe.model.save_pretrained(strong)
    pipe.tokenizer.save_pretrained(strong)
    folder = export_onnx.export(str(strong), str(tmp_path / "onnx"), int8=True)
    texts = [SENTENCE, SENTENCE * 20]  # and one text longer than a window
    tagger = OnnxNerTagger(folder)
    got, want = tagger(texts), pipe(texts, aggregation_strategy="simple")
    assert any(want)
    for text, ours, reference in zip(texts, got, want):
        assert [(e["entity_group"], e["start"], e["end"]) for e in ours] == [
            (e["entity_group"], e["start"], e["end"]) for e in reference
        ], text
    int8 = OnnxNerTagger(folder, quantized=True)(texts)
    fp32_spans = {(i, e["entity_group"], e["start"], e["end"]) for i, ents in enumerate(got) for e in ents}
    int8_spans = {(i, e["entity_group"], e["start"], e["end"]) for i, ents in enumerate(int8) for e in ents}
    assert 2 * len(fp32_spans & int8_spans) / (len(fp32_spans) + len(int8_spans)) >= 0.8


# ----------------------------------------------------------------------------------------------------------------
# Init paths, forward kwargs, padding ids


def tagger_of(family: str, family_checkpoint) -> torch.nn.Module:
    """A tiny CRF tagger of `family`, BERT included (built from the tiny config: there is no BERT family
    checkpoint here)."""
    if family == "bert":
        from conftest import build_tiny_model

        return build_tiny_model()
    return load(family_checkpoint(family))[0]


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_constraints_hold_without_weight_init(family, family_checkpoint):
    """A tagger built under transformers' no_init_weights (accelerate's empty-weights loading, quantizers), then
    given a state dict, decodes under BIO: the penalties are not in the state dict, __init__ sets them."""
    from transformers.initialization import no_init_weights

    model = tagger_of(family, family_checkpoint)
    with no_init_weights():
        bare = type(model)(model.config)
    bare.load_state_dict(model.state_dict())
    buffers = dict(bare.named_buffers())
    for name, buffer in model.named_buffers():
        assert torch.equal(buffers[name], buffer), name
    inside = [i for i, label in model.config.id2label.items() if label.startswith("I-")]
    assert inside and all(bare.crf.start_penalty[i] < -1000 for i in inside)  # I-X cannot start a sentence


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_forward_passes_kwargs_on_and_refuses_padding_free_batches(family, family_checkpoint):
    model = tagger_of(family, family_checkpoint)
    seen = {}
    model.base_model.register_forward_pre_hook(lambda _, args, kwargs: seen.update(kwargs), with_kwargs=True)
    input_ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 8, 3, 0]])
    attention_mask = (input_ids != 0).long()
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=attention_mask, is_causal=False)
        assert seen["is_causal"] is False
        with pytest.raises(ValueError, match=r"does not take padding-free batches \(cu_seq_lens_k, cu_seq_lens_q\)"):
            model(input_ids=input_ids, cu_seq_lens_q=torch.tensor([0, 5]), cu_seq_lens_k=torch.tensor([0, 5]))


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta"])
def test_padding_id_mismatch_of_a_roberta_body_is_refused_by_name(family, family_checkpoint, tmp_path):
    folder = tmp_path / "other_pad"
    shutil.copytree(family_checkpoint(family), folder)
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = 0  # the tokenizer pads with 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config has pad_token_id 0 but the tokenizer pads with id 1\. .* shift"):
        load(folder)
