"""bertcrf/active_learning.py: the ranking key, the near-duplicate guard and the ranked files."""

from __future__ import annotations

import json

import pytest

from bertcrf import active_learning
from bertcrf.active_learning import pick_diverse, rank, ranked_output, shingles, similarity


def test_shingles_collapse_whitespace_and_keep_short_texts():
    assert shingles("北京 \n 上海") == {"北京 ", "京 上", " 上海"}
    assert shingles("北京") == {"北京"}
    assert similarity(shingles("abcd"), shingles("abcd")) == 1.0
    assert similarity(shingles("abcd"), shingles("wxyz")) == 0.0


def test_pick_diverse_passes_over_near_duplicates_in_order():
    base = "国务院总理在北京会见了来访的法国外长"
    texts = [base, "今天天气很好，我们去公园散步吧", base + "。", base, "完全不同的一句话，关于足球比赛"]
    taken, skipped = pick_diverse(texts, [0, 1, 2, 3, 4], count=3)
    assert taken == [0, 1, 4]
    assert skipped == [(2, 0), (3, 0)]


def test_pick_diverse_follows_the_order_and_the_count():
    texts = ["甲乙丙丁", "戊己庚辛", "子丑寅卯", "辰巳午未"]
    assert pick_diverse(texts, [3, 1, 0, 2], count=2) == ([3, 1], [])
    # At 1, only a text more than identical would be skipped: duplicates stay.
    assert pick_diverse(["同一句话", "同一句话"], [0, 1], count=2, max_similarity=1.0) == ([0, 1], [])


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_pick_diverse_refuses_a_similarity_outside_0_1(bad):
    with pytest.raises(ValueError, match=f"max_similarity must be between 0 and 1, got {bad}"):
        pick_diverse(["a"], [0], 1, bad)


def test_rank_most_expected_errors_first_ties_by_position():
    texts = ["一二三四五", "六七八九十", "甲乙丙丁戊", "子丑寅卯辰"]
    answers = [{"expected_errors": e} for e in (0.5, 2.0, 0.5, 1.0)]
    assert rank(texts, answers, 3) == ([1, 3, 0], [])


def test_uncertainties_are_the_pipelines_answers_in_batches(crf_pipeline, monkeypatch):
    monkeypatch.setattr(active_learning, "RANK_BATCH", 2)
    texts = ["武汉市长江大桥", "", "张三在北京工作", "上海"]
    seen = []
    answers = active_learning.uncertainties(crf_pipeline, texts, seen.append)
    assert seen == [2, 2]
    expected = crf_pipeline(texts, aggregation_strategy="simple", return_mistake_probability=True)
    assert answers == expected


ANSWER = {
    "entities": [{"entity_group": "LOC", "score": 0.91234, "word": "北京", "start": 3, "end": 5}],
    "mistake_probability": 0.34567,
    "expected_errors": 0.81234,
}


def test_ranked_label_studio_tasks_carry_the_scores():
    tasks = json.loads(ranked_output([(7, "张三在北京", ANSWER)], "label-studio", "v1", "ner", "doc"))
    (task,) = tasks
    assert task["id"] == 7
    assert task["data"] == {
        "text": "张三在北京",
        "line": 7,
        "rank": 1,
        "mistake_probability": 0.3457,
        "expected_errors": 0.812,
    }
    (prediction,) = task["predictions"]
    assert prediction["score"] == 0.3457 and prediction["model_version"] == "v1"
    (result,) = prediction["result"]
    assert (result["from_name"], result["to_name"], result["score"]) == ("ner", "doc", 0.9123)
    assert result["value"] == {"start": 3, "end": 5, "text": "北京", "labels": ["LOC"]}


def test_ranked_doccano_and_jsonl_records():
    chosen = [(2, "张三在北京", ANSWER), (9, "没有实体", {**ANSWER, "entities": []})]
    doccano = [json.loads(line) for line in ranked_output(chosen, "doccano").splitlines()]
    assert [r["rank"] for r in doccano] == [1, 2] and [r["line"] for r in doccano] == [2, 9]
    assert doccano[0]["label"] == [[3, 5, "LOC"]] and doccano[1]["label"] == []
    records = [json.loads(line) for line in ranked_output(chosen, "jsonl").splitlines()]
    assert records[0]["entities"][0]["score"] == 0.9123 and records[0]["mistake_probability"] == 0.3457


def test_ranked_output_refuses_other_formats():
    with pytest.raises(ValueError, match="a ranking is written as one of"):
        ranked_output([], "column")
