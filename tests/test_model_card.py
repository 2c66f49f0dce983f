"""The model card: Hub metadata through huggingface_hub (round trip), base model by Hub id, added evaluations."""

from huggingface_hub import ModelCard, ModelCardData

import run_ner
from bertcrf import model_card


def _args(tmp_path, **extra):
    options = dict(
        model_name_or_path=str(tmp_path / "encoder"),
        train_file=str(tmp_path / "data" / "train.json"),
        output_dir=str(tmp_path / "run"),
        do_train=True,
        language="zh",
        **extra,
    )
    argv = [item for key, value in options.items() for item in (f"--{key}", str(value))]
    return run_ner.parse_args(argv)


def _write(tmp_path, scores, **extra):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "train.json").write_text('{"text": "张三", "label": {}}\n', encoding="utf-8")
    (tmp_path / "encoder").mkdir(exist_ok=True)
    (tmp_path / "run").mkdir(exist_ok=True)
    model_args, data_args, training_args = _args(tmp_path, **extra)
    model_card.write_model_card(
        str(tmp_path / "run"), model_args, data_args, training_args, ["O", "B-PER", "I-PER"], scores, "BIO"
    )
    return ModelCard.load(tmp_path / "run" / "README.md")


SCORES = {
    "eval_f1": 0.9,
    "eval_ece": 0.04,
    "predict_f1": 0.85,
    "predict_precision": 0.8,
    "confidence_temperature": 1.7,
}


def test_metadata_round_trips_through_model_card_data(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("## Training data\n\nNews only.", encoding="utf-8")
    card = _write(tmp_path, SCORES, card_datasets="levow/msra_ner", card_notes=notes)
    data = card.data
    assert data.pipeline_tag == "token-classification" and data.library_name == "transformers"
    assert data.datasets == ["levow/msra_ner"] and data.language == "zh"
    assert [w["text"] for w in data.widget] == model_card.WIDGET_EXAMPLES["zh"]
    assert data.model_name == "run"
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert found == {
        ("validation", "f1"): 0.9,
        ("validation", "ece"): 0.04,
        ("test", "f1"): 0.85,
        ("test", "precision"): 0.8,
    }
    assert {r.dataset_type for r in data.eval_results} == {"levow/msra_ner"}
    again = ModelCardData(**data.to_dict())
    assert again.to_dict() == data.to_dict()
    assert "News only." in card.text and "confidence temperature of 1.7" in card.text
    assert "| data | test | 80.00 |  | 85.00 |  |  |" in card.text  # named after the training folder


def test_a_local_encoder_folder_names_its_hub_base(tmp_path):
    (tmp_path / "encoder").mkdir()
    model_card.note_derivation(tmp_path / "encoder", "dequantized from 4 bits", "intfloat/multilingual-e5-small")
    model_card.note_derivation(tmp_path / "encoder", "vocabulary trimmed to Chinese")
    assert model_card.base_model_name(str(tmp_path / "encoder")) == ("intfloat/multilingual-e5-small", True)
    assert model_card.base_model_changes(str(tmp_path / "encoder")) == [
        "dequantized from 4 bits",
        "vocabulary trimmed to Chinese",
    ]
    card = _write(tmp_path, {})
    assert card.data.base_model == "intfloat/multilingual-e5-small"
    assert "dequantized from 4 bits; vocabulary trimmed to Chinese" in card.text
    assert "https://huggingface.co/intfloat/multilingual-e5-small" in card.text
    assert card.data.eval_results is None and "(not evaluated)" in card.text


def test_added_results_join_the_model_index_and_the_table(tmp_path):
    _write(tmp_path, SCORES)
    metrics = {"f1": 0.5, "precision": 0.4, "recall": 0.6, "accuracy": 0.9, "ece": 0.07}
    model_card.add_card_results(tmp_path / "run", "Weibo NER", "hltcoe/weibo_ner", "test", metrics)
    model_card.add_card_results(tmp_path / "run", "Weibo NER", "hltcoe/weibo_ner", "test", dict(metrics, f1=0.55))
    card = ModelCard.load(tmp_path / "run" / "README.md")
    weibo = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_name == "Weibo NER"}
    assert weibo == dict(metrics, f1=0.55)  # replaced, not added twice
    assert len([r for r in card.data.eval_results if r.dataset_name == "data"]) == 4
    assert "| Weibo NER | test | 40.00 | 60.00 | 55.00 | 90.00 | 0.070 |" in card.text
    assert card.text.count("| Weibo NER |") == 1
