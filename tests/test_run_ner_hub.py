"""The Hub-dataset path of run_ner.py, exercised on a local dataset folder (the Hub itself is unreachable here)."""

import datasets
import pytest

from bertcrf import arguments, training


@pytest.fixture()
def local_dataset(tmp_path):
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
        }
    )
    rows = {"tokens": [list("张三在北京"), list("李四")], "ner_tags": [[1, 2, 0, 3, 4], [1, 2]]}
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    return tmp_path


def test_hub_dataset_tags_become_label_names(local_dataset):
    model_args = arguments.ModelArguments(model_name_or_path="unused")
    data_args = arguments.DataTrainingArguments(dataset_name=str(local_dataset))
    splits = training.load_hub_dataset(model_args, data_args)
    assert set(splits) == {"train", "validation", "test"}
    first = splits["train"][0]
    assert first["tokens"] == list("张三在北京")
    assert first["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert first["id"].endswith("train:0")


def test_hub_dataset_custom_columns(local_dataset):
    model_args = arguments.ModelArguments(model_name_or_path="unused")
    data_args = arguments.DataTrainingArguments(
        dataset_name=str(local_dataset), text_column_name="tokens", label_column_name="ner_tags"
    )
    splits = training.load_hub_dataset(model_args, data_args)
    assert splits["validation"][1]["tags"] == ["B-PER", "I-PER"]
