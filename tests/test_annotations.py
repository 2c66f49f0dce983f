"""bertcrf/annotations.py: doccano, Label Studio and brat readers (through data_files.read_file too), and the doccano
and Label Studio pre-annotations that tag.py writes, read back."""

from __future__ import annotations

import json
import logging

import pytest

import evaluate_pipeline
import tag
from bertcrf import annotations, data_files
from bertcrf.annotations import example_entities, read_brat, read_doccano, read_label_studio
from bertcrf.data_files import read_file, sniff_format
from bertcrf.ner_data import DataFormatError


LOGGER = "bertcrf.annotations"


def write(path, text, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text.replace("\n", newline))
    return path


def write_jsonl(path, records):
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_json(path, value):
    return write(path, json.dumps(value, ensure_ascii=False, indent=2))


def tagged(example):
    return list(zip(example["tokens"], example["tags"]))


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def infos_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


def assert_error(info, *words):
    message = str(info.value)
    assert "expected" in message and "found" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# ----------------------------------------------------------------------------------------------------------------
# Tokens and spans

ENGLISH = "Tim Cook visited New York's Apple store."


def test_chinese_text_is_split_per_character_and_english_by_words():
    assert annotations.token_offsets("北京\u3000上海")[0] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    offsets, split = annotations.token_offsets(ENGLISH)
    assert [ENGLISH[a:b] for a, b in offsets] == [
        "Tim",
        "Cook",
        "visited",
        "New",
        "York",
        "'",
        "s",
        "Apple",
        "store",
        ".",
    ]
    assert split == 0
    # Chinese with spaces is read by words: each ideograph alone, Latin runs whole, spaces dropped.
    offsets, _ = annotations.token_offsets("2024年 AI大会")
    assert [("2024年 AI大会")[a:b] for a, b in offsets] == ["2024", "年", "AI", "大", "会"]


def test_a_word_an_entity_starts_or_ends_inside_is_split_there(tmp_path, caplog):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "buy iPhone15 now", "label": [[4, 10, "PRODUCT"]]}])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        (example,) = read_doccano(path)
    assert tagged(example) == [("buy", "O"), ("iPhone", "B-PRODUCT"), ("15", "O"), ("now", "O")]
    assert example["offsets"] == [(0, 3), (4, 10), (10, 12), (13, 16)]
    assert example_entities(example) == [("PRODUCT", 4, 10)]
    assert any("split 1 words" in m for m in infos_of(caplog))


def test_whitespace_at_entity_edges_is_left_out_with_a_warning(tmp_path, caplog):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "hi Tim Cook !", "label": [[2, 12, "PER"]]}])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (example,) = read_doccano(path)
    assert example_entities(example) == [("PER", 3, 11)]
    assert any("whitespace at the edges of 1 entities" in m and f"{path}:1" in m for m in warnings_of(caplog))


# ----------------------------------------------------------------------------------------------------------------
# doccano


def test_doccano_both_forms_chinese_and_english(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "export.jsonl",
        [
            {"id": 7, "text": "张三在北京大学工作", "label": [[0, 2, "PER"], [3, 7, "ORG"]], "Comments": []},
            {
                "id": 8,
                "text": ENGLISH,
                "entities": [
                    {"id": 1, "start_offset": 0, "end_offset": 8, "label": "PER"},
                    {"id": 2, "start_offset": 17, "end_offset": 25, "label": "LOC"},
                    {"id": 3, "start_offset": 28, "end_offset": 33, "label": "ORG"},
                ],
                "relations": [{"id": 1, "from_id": 1, "to_id": 3, "type": "works_at"}],
            },
            {"text": "李四", "labels": [[0, 2, "PER"]]},
        ],
    )
    assert sniff_format(path) == "doccano"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        chinese, english, old = read_file(path)
    assert chinese["id"] == f"{path}:1" and english["id"] == f"{path}:2"
    assert chinese["tokens"] == list("张三在北京大学工作") and chinese["text"] == "张三在北京大学工作"
    assert chinese["tags"] == ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]
    assert example_entities(chinese) == [("PER", 0, 2), ("ORG", 3, 7)]
    assert english["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "B-ORG", "O", "O"]
    assert example_entities(english) == [("PER", 0, 8), ("LOC", 17, 25), ("ORG", 28, 33)]
    assert old["tags"] == ["B-PER", "I-PER"]
    summary = " ".join(infos_of(caplog))
    assert "3 records (0 untagged), 6 entities (LOC 1, ORG 2, PER 3)" in summary and "1 relation" in summary


def test_doccano_empty_label_is_all_o_and_no_label_is_untagged(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"text": "没有实体", "label": []}, {"text": "no entity", "entities": []}, {"text": "未标注"}],
    )
    reviewed, english, untagged = read_doccano(path)
    assert reviewed["tags"] == ["O"] * 4 and english["tags"] == ["O", "O"]
    assert untagged["tags"] is None and untagged["tokens"] == list("未标注")


def test_doccano_schemes(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "张三在北京大学", "label": [[0, 2, "PER"], [2, 3, "X"], [3, 7, "ORG"]]}]
    )
    assert read_file(path, span_scheme="BIOES")[0]["tags"] == [
        "B-PER",
        "E-PER",
        "S-X",
        "B-ORG",
        "I-ORG",
        "I-ORG",
        "E-ORG",
    ]
    assert read_file(path, span_scheme="BMES")[0]["tags"] == [
        "B-PER",
        "E-PER",
        "S-X",
        "B-ORG",
        "M-ORG",
        "M-ORG",
        "E-ORG",
    ]


def test_doccano_nested_spans_keep_the_longer_and_warn(tmp_path, caplog):
    label = [[0, 2, "LOC"], [0, 4, "ORG"], [5, 7, "LOC"], [4, 6, "X"]]
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "你好", "label": []}, {"text": "北京大学在北京", "label": label}]
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _, example = read_doccano(path)
    assert example["tags"] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "B-X", "I-X", "O"]
    dropped = [m for m in warnings_of(caplog) if "dropped LOC" in m]
    assert len(dropped) == 2 and all(f"{path}:2" in m for m in dropped)
    assert "[0, 2) '北京'" in dropped[0] and "ORG [0, 4) '北京大学'" in dropped[0]
    assert "[5, 7)" in dropped[1] and "X [4, 6)" in dropped[1]  # equal length: the earlier is kept


@pytest.mark.parametrize(
    "record, words",
    [
        ('{"text": "ab", "label": [[0, 1]]}', ['[start, end, "TYPE"]', "label[0]=[0, 1]"]),
        ('{"text": "ab", "label": [[1, 1, "X"]]}', ["end <= start"]),
        ('{"text": "ab", "label": [[1, 0, "X"]]}', ["end <= start"]),
        ('{"text": "ab", "label": [[0, 5, "X"]]}', ["outside the text of 2 characters", "0 <= start < end <= 2"]),
        ('{"text": "ab", "label": [[-1, 1, "X"]]}', ["outside the text"]),
        ('{"text": "ab", "label": [["0", 1, "X"]]}', ["integer character offsets"]),
        ('{"text": "ab", "label": [[true, 1, "X"]]}', ["integer character offsets"]),
        ('{"text": "ab", "label": [[0, 1, 5]]}', ["an entity type"]),
        ('{"text": "a b", "label": [[1, 2, "X"]]}', ["a non-blank entity"]),
        ('{"label": []}', ['a non-blank string in "text"']),
        ('{"text": "  ", "label": []}', ['a non-blank string in "text"']),
        ('{"text": "ab", "label": [[0, 1, "X"]]', ["one JSON object per line", "invalid JSON"]),
        ('{"text": "ab", "entities": [{"start_offset": 0, "label": "X"}]}', ['"start_offset": int', "entities[0]"]),
        ('{"text": "ab", "entities": {"a": 1}}', ["a list of"]),
        ('{"text": "ab", "label": [[0, 1, "X"]], "entities": [{"start_offset": 1}]}', ["one list of spans"]),
    ],
)
def test_doccano_malformed(tmp_path, record, words):
    path = write(tmp_path / "bad.jsonl", '{"text": "好", "label": []}\n' + record + "\n")
    with pytest.raises(DataFormatError) as info:
        read_file(path, data_format="doccano")
    assert info.value.path == str(path) and info.value.line == 2
    assert_error(info, f"{path}:2", *words)


EMOJI_TEXT = "😀张三在北京工作。"


@pytest.mark.parametrize("offsets", ["auto", "utf-16"])
def test_doccano_utf16_offsets_read_as_doccano_counts(tmp_path, caplog, offsets):
    """doccano counts UTF-16 code units (JavaScript's indices): the emoji is two, so 张三 is [2, 4) and 北京 [5, 7)."""
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"text": EMOJI_TEXT, "label": [[2, 4, "PER"], [5, 7, "LOC"]]}, {"text": "李四", "label": [[0, 2, "PER"]]}],
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        example, _ = read_file(path, doccano_offsets=offsets)
    assert [(t, EMOJI_TEXT[a:b]) for t, a, b in example_entities(example)] == [("PER", "张三"), ("LOC", "北京")]
    if offsets == "auto":  # nothing in the spans tells the units apart: doccano's, said in a warning
        (warning,) = warnings_of(caplog)
        assert "1 records hold characters outside the BMP" in warning and "--doccano_offsets characters" in warning
    spans = example_entities(read_file(path, doccano_offsets="characters")[0])
    assert [EMOJI_TEXT[a:b] for _, a, b in spans] == ["三在", "京工"]  # what the offsets mean as characters


def test_doccano_auto_offsets_read_characters_where_utf16_cannot_fit(tmp_path, caplog):
    """A file written by a Python tool counts characters: its spans cut words or surrogate pairs as UTF-16."""
    english = "😀 Tim Cook visited Paris"
    records = [
        {"text": english, "label": [[2, 10, "PER"], [19, 24, "LOC"]]},  # as UTF-16: " Tim Coo", "Pari"+...
        {"text": "😀张三", "label": [[1, 3, "PER"]]},  # as UTF-16, 1 is inside the emoji's surrogate pair
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first, second = read_file(path)
    assert example_entities(first) == [("PER", 2, 10), ("LOC", 19, 24)] and example_entities(second) == [("PER", 1, 3)]
    assert any("offsets read as characters" in m for m in infos_of(caplog))
    assert not warnings_of(caplog)
    with pytest.raises(DataFormatError) as info:
        read_doccano(path, offsets="utf-16")
    assert info.value.line == 2
    assert_error(info, "PER span [1, 3) in utf-16 offsets", "surrogate pair", "--doccano_offsets")


def test_doccano_grapheme_mode_offsets(tmp_path):
    """A project with "Count grapheme clusters as one character" counts the family emoji (5 code points) as one."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    text = f"{family}张三在北京"
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": text, "label": [[1, 3, "PER"], [4, 6, "LOC"]]}])
    (example,) = read_doccano(path, offsets="grapheme")
    assert [text[a:b] for _, a, b in example_entities(example)] == ["张三", "北京"]
    with pytest.raises(ValueError, match="doccano offsets must be one of"):
        read_file(path, doccano_offsets="bytes")


NON_BMP_TEXT = "𠀐明在北京工作😀，Tim Cook也在。"


def pipeline_entity(text, label, start, end):
    return {"entity_group": label, "start": start, "end": end, "score": 0.9, "word": text[start:end]}


def test_doccano_writer_counts_as_doccano_shows(tmp_path):
    """tag.py --format doccano writes UTF-16 offsets: doccano (JavaScript) shows each entity where it is, and the
    file reads back to the same character spans."""
    entities = [(0, 2, "PER"), (3, 5, "LOC"), (9, 17, "PER")]
    assert [NON_BMP_TEXT[a:b] for a, b, _ in entities] == ["𠀐明", "北京", "Tim Cook"]
    out = tmp_path / "out.jsonl"
    with open(out, "w", encoding="utf-8") as handle:
        texts = [(1, NON_BMP_TEXT, [pipeline_entity(NON_BMP_TEXT, t, a, b) for a, b, t in entities])]
        assert annotations.write_doccano(handle, texts) == 1
    (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["label"] == [[0, 3, "PER"], [4, 6, "LOC"], [11, 19, "PER"]]
    assert [js_slice(NON_BMP_TEXT, a, b) for a, b, _ in record["label"]] == ["𠀐明", "北京", "Tim Cook"]
    (example,) = read_file(out)
    assert example_entities(example) == [(t, a, b) for a, b, t in entities]


def test_doccano_writer_grapheme_and_character_offsets(caplog):
    import io

    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    text = f"{family}张三e\u0301"  # the family emoji is 1 cluster; e + combining acute is 1
    entities = [pipeline_entity(text, "PER", 5, 7), pipeline_entity(text, "X", 7, 8)]
    out = io.StringIO()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        annotations.write_doccano(out, [(1, text, entities)], offsets="grapheme")
    assert json.loads(out.getvalue())["label"] == [[1, 3, "PER"], [3, 4, "X"]]  # "e" alone widened to "é"
    assert any("widened 1 entities" in m for m in warnings_of(caplog))
    out = io.StringIO()
    annotations.write_doccano(out, [(1, text, entities)], offsets="characters")
    assert json.loads(out.getvalue())["label"] == [[5, 7, "PER"], [7, 8, "X"]]
    with pytest.raises(ValueError, match="doccano offsets to write"):
        annotations.write_doccano(out, [], offsets="auto")


def test_doccano_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match="no records"):
        read_doccano(write(tmp_path / "e.jsonl", "\n"))


# ----------------------------------------------------------------------------------------------------------------
# Label Studio


def span(start, end, label, text=None, **extra):
    value = {"start": start, "end": end, "labels": [label]}
    if text is not None:
        value["text"] = text
    return {"id": f"r{start}", "from_name": "label", "to_name": "text", "type": "labels", "value": value, **extra}


def annotation(id_, result, cancelled=False, **times):
    return {"id": id_, "result": result, "was_cancelled": cancelled, **times}


def test_label_studio_reads_labels_spans(tmp_path, caplog):
    tasks = [
        {
            "id": 11,
            "data": {"text": "张三在北京大学工作"},
            "annotations": [annotation(1, [span(0, 2, "PER", "张三"), span(3, 7, "ORG", "北京大学")])],
        },
        {
            "id": 12,
            "data": {"text": ENGLISH, "meta_info": 3},
            "annotations": [
                annotation(
                    2,
                    [
                        span(0, 8, "PER", "Tim Cook"),
                        span(28, 33, "ORG", "Apple"),
                        {"id": "rel", "type": "relation", "from_id": "r0", "to_id": "r28"},
                        {"id": "c", "type": "choices", "value": {"choices": ["news"]}},
                    ],
                )
            ],
        },
        {"id": 13, "data": {"text": "没有人标注"}},
    ]
    path = write_json(tmp_path / "export.json", tasks)
    assert sniff_format(path) == "label-studio"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        chinese, english = read_file(path)  # task 13, which nobody annotated, is left out
    assert example_entities(chinese) == [("PER", 0, 2), ("ORG", 3, 7)]
    assert example_entities(english) == [("PER", 0, 8), ("ORG", 28, 33)]
    assert "task 12 (index 1)" in english["id"]
    summary = " ".join(infos_of(caplog))
    assert "2 tasks (0 untagged), 4 entities" in summary and "1 relation" in summary and "1 choices result" in summary
    (warning,) = warnings_of(caplog)
    assert "left out 1 of 3 tasks" in warning and "1 not annotated" in warning and "task 13 (index 2)" in warning


def test_label_studio_latest_annotation_skips_a_cancelled_newest(tmp_path, caplog):
    results = {k: [span(0, 2, name)] for k, name in ((1, "OLD"), (2, "CANCELLED"), (3, "NEWEST"), (4, "MIDDLE"))}
    tasks = [
        {
            "id": 5,
            "data": {"text": "张三来了"},
            "annotations": [
                annotation(1, results[1], created_at="2024-01-01T10:00:00.000000Z"),
                annotation(2, results[2], cancelled=True, created_at="2024-03-01T10:00:00Z"),
                # updated after the cancelled one was made: the latest that counts
                annotation(3, results[3], created_at="2024-01-02T10:00:00Z", updated_at="2024-03-02T10:00:00.5Z"),
                annotation(4, results[4], created_at="2024-02-01T10:00:00+00:00"),
            ],
        },
        {"id": 6, "data": {"text": "李四"}, "annotations": [annotation(9, [span(0, 2, "PER")]), annotation(8, [])]},
        {"id": 7, "data": {"text": "王五"}, "annotations": [{"result": []}, {"result": [span(0, 2, "PER")]}]},
    ]
    path = write_json(tmp_path / "export.json", tasks)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first, by_id, by_order = read_label_studio(path)
    assert example_entities(first) == [("NEWEST", 0, 2)]
    assert example_entities(by_id) == [("PER", 0, 2)]  # no times: the highest id
    assert example_entities(by_order) == [("PER", 0, 2)]  # neither: the last listed
    infos = infos_of(caplog)
    assert any("task 5 (index 0): 4 annotations (1 cancelled); read annotation 3, the latest" in m for m in infos)
    assert any("task 6 (index 1)" in m and "read annotation 9, the highest id" in m for m in infos)
    assert any("3 tasks have several annotations" in m for m in infos)


def test_label_studio_reads_annotations_only_and_leaves_out_the_rest(tmp_path, caplog):
    """Skipped tasks (only cancelled annotations), tasks nobody annotated and tasks with predictions only are left
    out with counts, as label-studio-sdk's converter does; predictions are never read, as objects or as ids."""
    predictions = [
        {"id": 1, "model_version": "v1", "created_at": "2024-01-01T00:00:00Z", "result": [span(0, 2, "OLD")]},
        {"id": 2, "model_version": "v2", "created_at": "2024-02-01T00:00:00Z", "result": [span(0, 2, "PER")]},
    ]
    tasks = [
        {"id": 1, "data": {"text": "张三"}, "annotations": [annotation(3, [], cancelled=True)], "predictions": [286]},
        {"id": 2, "data": {"text": "李四"}, "predictions": predictions[:1]},
        {"id": 3, "data": {"text": "王五"}, "annotations": [annotation(4, [span(0, 2, "ANN")])], "predictions": [7]},
        {"id": 4, "data": {"text": "赵六"}, "annotations": [annotation(5, [], cancelled=True)]},
        {"id": 5, "data": {"text": "孙七"}, "annotations": [annotation(6, [])], "predictions": predictions},
        {"id": 6, "data": {"text": "周八"}, "annotations": []},
        {"id": 7, "data": {"text": "吴九"}, "annotations": [{"id": 8, "skipped": True, "result": []}]},
    ]
    path = write_json(tmp_path / "export.json", tasks)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        annotated, reviewed = read_label_studio(path)
    assert example_entities(annotated) == [("ANN", 0, 2)]  # an annotation, whatever the predictions say
    assert reviewed["tags"] == ["O", "O"]  # a submitted annotation without spans: no entities
    (warning,) = warnings_of(caplog)
    assert "left out 5 of 7 tasks" in warning and "task 1 (index 0)" in warning
    assert "3 skipped, 1 not annotated, 1 with predictions only" in warning
    assert any("2 tasks list their predictions by id only: ignored" in m for m in infos_of(caplog))
    # Nothing annotated at all is an error, which says what the tasks hold.
    path = write_json(tmp_path / "none.json", [tasks[0], tasks[1], tasks[3]])
    with pytest.raises(DataFormatError) as info:
        read_label_studio(path)
    assert_error(info, "no annotated task among 3 (2 skipped, 1 with predictions only)", "submit or correct them")


def test_label_studio_prediction_ids_only_export(tmp_path):
    """Label Studio's JSON export of a project holding predictions lists them by id: the annotations read."""
    tasks = [
        {
            "id": 286,
            "data": {"text": "张三在北京", "line": 3},
            "annotations": [annotation(1, [span(0, 2, "PER", "张三"), span(3, 5, "LOC", "北京")])],
            "predictions": [286],
        }
    ]
    (example,) = read_file(write_json(tmp_path / "export.json", tasks))
    assert example_entities(example) == [("PER", 0, 2), ("LOC", 3, 5)]
    tasks[0]["predictions"] = ["286"]
    with pytest.raises(DataFormatError, match="a list of predictions objects or prediction ids"):
        read_file(write_json(tmp_path / "bad.json", tasks))


def test_label_studio_value_text_with_collapsed_whitespace_warns(tmp_path, caplog):
    """Label Studio writes runs of spaces in value.text as one: the offsets are read, with a counted warning."""
    text = "Text: Berlin,  Germany. Paris  \t France"
    results = [span(6, 22, "LOC", "Berlin, Germany"), span(24, 39, "LOC", "Paris France"), span(0, 4, "X", "Text")]
    tasks = [{"id": 1, "data": {"text": text}, "annotations": [annotation(1, results)]}]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (example,) = read_label_studio(write_json(tmp_path / "export.json", tasks))
    assert example_entities(example) == [("X", 0, 4), ("LOC", 6, 22), ("LOC", 24, 39)]
    (warning,) = warnings_of(caplog)
    assert "2 spans whose value.text differs from the text at start:end only in whitespace" in warning
    # A difference beyond whitespace is still an error.
    tasks[0]["annotations"][0]["result"] = [span(6, 22, "LOC", "Berlin,Germany")]
    with pytest.raises(DataFormatError, match="text there: 'Berlin,  Germany'"):
        read_label_studio(write_json(tmp_path / "bad.json", tasks))


def test_label_studio_text_key_and_the_only_string(tmp_path):
    tasks = [{"id": 1, "data": {"sentence": "张三", "n": 1}, "annotations": [annotation(1, [span(0, 2, "PER")])]}]
    path = write_json(tmp_path / "a.json", tasks)
    assert example_entities(read_label_studio(path)[0]) == [("PER", 0, 2)]
    tasks[0]["data"]["title"] = "x"
    path = write_json(tmp_path / "b.json", tasks)
    with pytest.raises(DataFormatError) as info:
        read_label_studio(path)
    assert_error(info, "task 1 (index 0)", "data keys ['n', 'sentence', 'title'] (2 strings)", "--text_key KEY")
    assert example_entities(read_label_studio(path, text_key="sentence")[0]) == [("PER", 0, 2)]
    assert example_entities(read_file(path, text_key="sentence")[0]) == [("PER", 0, 2)]
    with pytest.raises(DataFormatError, match=r"the text in data\['body'\] \(--text_key\)"):
        read_label_studio(path, text_key="body")


def test_label_studio_data_line_is_never_the_text(tmp_path):
    """tag.py's tasks carry the input line in data.line: a number, which the "only string" rule passes over."""
    task = annotations.label_studio_task(7, "张三", [], "m")
    assert task["data"] == {"text": "张三", "line": 7}
    tasks = [
        dict(task, annotations=[annotation(1, [span(0, 2, "PER")])]),
        {"id": 8, "data": {"line": 8, "content": "李四"}, "annotations": [annotation(2, [span(0, 2, "PER")])]},
    ]
    first, second = read_label_studio(write_json(tmp_path / "a.json", tasks))
    assert first["text"] == "张三" and second["text"] == "李四"


def test_label_studio_utf16_offsets_of_old_exports_are_converted(tmp_path, caplog):
    text = "😀 Tim Cook 😀 Apple"
    # Label Studio before 1.4 counted UTF-16 units: each emoji is two.
    tasks = [
        {
            "id": 1,
            "data": {"text": text},
            "annotations": [annotation(1, [span(3, 11, "PER", "Tim Cook"), span(15, 20, "ORG", "Apple")])],
        }
    ]
    tasks[0]["annotations"][0]["result"][1]["value"]["labels"].append("BRAND")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (example,) = read_label_studio(write_json(tmp_path / "old.json", tasks))
    assert example_entities(example) == [("PER", 2, 10), ("ORG", 13, 18)]
    (warning,) = warnings_of(caplog)
    assert "1 spans with several labels, read as their first" in warning
    assert "2 spans in UTF-16 offsets (older Label Studio), converted" in warning


def ls_task(result, **fields):
    return {"id": 5, "data": {"text": "张三在北京"}, "annotations": [annotation(1, result)], **fields}


@pytest.mark.parametrize(
    "task, words",
    [
        (
            ls_task([span(0, 2, "PER", "张")]),
            ["result 0", "text[start:end] to equal", "'张' at [0, 2) (text there: '张三')"],
        ),
        (ls_task([span(2, 2, "PER")]), ["end <= start"]),
        (ls_task([span(3, 9, "LOC")]), ["outside the text of 5 characters"]),
        (ls_task([span(0, 2.0, "PER")]), ["integer character offsets"]),
        (
            ls_task([{"type": "rectanglelabels", "value": {"x": 1}}]),
            ['{"type": "labels", "value": {"start"', "rectanglelabels"],
        ),
        (ls_task([{"type": "labels", "value": {"start": 0, "end": 2, "labels": []}}]), ['"labels": ["TYPE"]']),
        (ls_task([{"type": "labels", "value": {"start": 0, "labels": ["X"]}}]), ['"labels": ["TYPE"]']),
        (ls_task(None), ["result=None", "a result list"]),
        ({"id": 5, "text": "张三", "label": []}, ["not JSON-MIN"]),
        ({"id": 5, "data": {"text": ""}}, ['a non-blank string in data["text"]']),
        (
            {"id": 5, "data": {"text": "张三"}, "annotations": [annotation(1, [], cancelled="no")]},
            ["was_cancelled='no'"],
        ),
        ({"id": 5, "data": {"text": "张三"}, "annotations": {"result": []}}, ["a list of annotations objects"]),
        (
            {
                "id": 5,
                "data": {"text": "张三"},
                "annotations": [annotation(1, [], created_at="yesterday"), annotation(2, [])],
            },
            ["time 'yesterday'", "ISO 8601"],
        ),
    ],
)
def test_label_studio_malformed(tmp_path, task, words):
    path = write_json(tmp_path / "bad.json", [{"id": 4, "data": {"text": "好"}}, task])
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    assert info.value.path == str(path) and "task 5 (index 1)" in info.value.item
    assert_error(info, f"{path}, task 5 (index 1)", *words)


def test_label_studio_not_a_list_and_invalid_json(tmp_path):
    with pytest.raises(DataFormatError) as info:
        read_label_studio(write_json(tmp_path / "one.json", {"id": 1, "data": {"text": "x"}}))
    assert_error(info, "a JSON list of Label Studio tasks", "a JSON dict")
    path = write(tmp_path / "broken.json", '[\n  {"id": 1,\n   "data": {"text": "x"}\n  \n]\n')
    with pytest.raises(DataFormatError) as info:
        read_file(path)
    assert info.value.line == 5
    assert_error(info, f"{path}:5", "invalid JSON")
    with pytest.raises(DataFormatError) as info:
        read_label_studio(write(tmp_path / "empty.json", "[]\n"))
    assert_error(info, "no tasks")


# ----------------------------------------------------------------------------------------------------------------
# brat

BRAT_TEXT = "张三在北京大学工作。\n\nTim Cook visited New York.\n"


def brat_folder(root, ann, text=BRAT_TEXT, name="doc", newline="\n"):
    write(root / f"{name}.txt", text, newline)
    write(root / f"{name}.ann", ann)
    return root


def test_brat_folder_lines_are_examples(tmp_path, caplog):
    ann = (
        "T1\tPER 0 2\t张三\n"
        "T2\tORG 3 7\t北京大学\n"
        "T3\tPER 12 20\tTim Cook\n"
        "T4\tLOC 29 37\tNew York\n"
        "R1\tWorks Arg1:T1 Arg2:T2\n"
        "A1\tFamous T3\n"
        "#1\tAnnotatorNotes T1\tnote\n"
        "N1\tReference T4 Wikipedia:1 New York\n"
    )
    root = brat_folder(tmp_path / "brat", ann)
    brat_folder(tmp_path / "brat" / "sub", "T1\tLOC 2 4\t上海\n", text="我去上海")
    assert sniff_format(root) == "brat"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        chinese, english, sub = read_file(root)
    assert chinese["id"] == f"{root / 'doc.txt'}:1" and english["id"] == f"{root / 'doc.txt'}:3"
    assert chinese["text"] == "张三在北京大学工作。" and english["text"] == "Tim Cook visited New York."
    assert example_entities(chinese) == [("PER", 0, 2), ("ORG", 3, 7)]
    assert example_entities(english) == [("PER", 0, 8), ("LOC", 17, 25)]  # shifted into the line
    assert tagged(english) == [
        ("Tim", "B-PER"),
        ("Cook", "I-PER"),
        ("visited", "O"),
        ("New", "B-LOC"),
        ("York", "I-LOC"),
        (".", "O"),
    ]
    assert sub["id"] == f"{root / 'sub' / 'doc.txt'}:1" and example_entities(sub) == [("LOC", 2, 4)]
    summary = " ".join(infos_of(caplog))
    assert "3 lines of 2 documents (0 untagged), 5 entities (LOC 2, ORG 1, PER 2)" in summary
    assert "1 attribute, 1 normalization, 1 note, 1 relation" in summary
    assert read_brat(root) == read_file(root, data_format="brat")


def test_brat_crlf_text_counts_the_carriage_returns(tmp_path):
    root = brat_folder(tmp_path, "T1\tLOC 6 8\t北京\n", text="张三\n我在北京\n", newline="\r\n")
    first, second = read_brat(root)
    assert first["text"] == "张三" and second["text"] == "我在北京"
    assert example_entities(second) == [("LOC", 2, 4)]


def test_brat_discontinuous_entity_keeps_its_longest_fragment(tmp_path, caplog):
    root = brat_folder(tmp_path, "T1\tORG 0 2;3 7\t张三 北京大学\nT2\tPER 0 1;2 3\t张 在\n", text="张三在北京大学")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (example,) = read_brat(root)
    assert example_entities(example) == [("PER", 0, 1), ("ORG", 3, 7)]
    warnings = warnings_of(caplog)
    ann = root / "doc.ann"
    assert any(
        f"{ann}:1: ORG entity in 2 fragments" in m and "kept the longest, [3, 7) '北京大学'" in m for m in warnings
    )
    assert any(f"{ann}:2: PER entity in 2 fragments" in m and "[0, 1) '张'" in m for m in warnings)  # the earlier


def test_brat_discontinuous_entity_across_lines_keeps_its_longest_fragment(tmp_path, caplog):
    """Fragments on two lines of the text: a warning naming the .ann line and the text's lines, as within a line."""
    ann = "T1\tORG 3 7;12 15\t北京大学 Tim\nT2\tPER 0 1;12 20\t张 Tim Cook\n"
    root = brat_folder(tmp_path, ann)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        chinese, english = read_brat(root)
    assert example_entities(chinese) == [("ORG", 3, 7)]
    assert example_entities(english) == [("PER", 0, 8)]  # the longer fragment, on line 3
    warnings = warnings_of(caplog)
    ann_path = root / "doc.ann"
    assert any(
        f"{ann_path}:1: ORG entity in 2 fragments" in m
        and "on 2 lines (doc.txt:1, doc.txt:3)" in m
        and "kept the longest, [3, 7) '北京大学' at doc.txt:1" in m
        for m in warnings
    )
    assert any(f"{ann_path}:2: PER entity" in m and "'Tim Cook' at doc.txt:3" in m for m in warnings)


def test_brat_event_triggers_are_not_entities(tmp_path, caplog):
    ann = (
        "T1\tPER 0 2\t张三\n"
        "T2\tAttack 2 3\t打\n"
        "T3\tPER 4 6\t李四\n"
        "E1\tAttack:T2 Attacker:T1 Target:T3\n"
        "T4\tMarry 12 19\tmarried\n"
        "E2\tMarry:T4\n"
    )
    root = brat_folder(tmp_path, ann, text="张三打了李四\n\nTim Cook married.\n")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        chinese, english = read_brat(root)
    assert example_entities(chinese) == [("PER", 0, 2), ("PER", 4, 6)]
    assert example_entities(english) == []
    summary = " ".join(infos_of(caplog))
    assert "2 event, 2 event trigger" in summary and "2 entities (PER 2)" in summary


def test_brat_overlap_names_the_ann_line_of_the_dropped_entity(tmp_path, caplog):
    root = brat_folder(tmp_path, "T1\tLOC 3 5\t北京\nT2\tORG 3 7\t北京大学\n", text="张三在北京大学")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (example,) = read_brat(root)
    assert example_entities(example) == [("ORG", 3, 7)]
    (dropped,) = [m for m in warnings_of(caplog) if "dropped LOC" in m]
    assert dropped.startswith(f"{root / 'doc.ann'}:1: dropped LOC span [3, 5)")


@pytest.mark.parametrize(
    "ann, line, words",
    [
        (
            "T1\tPER 0 2\t张三\nT2\tORG 1 13\t三在北京大学工作。\n\nTim\n",
            2,
            ["across the end of line 1 of doc.txt", "within one line"],
        ),
        ("T1\tPER 0 2\t张\n", 1, ["'张' at [0, 2) (text there: '张三')"]),
        ("T1\tPER 0 2;3 5\t张三北京\n", 1, ["[0, 2) [3, 5) (text there: '张三 北京')"]),
        ("T1\tPER 2 1\t张\n", 1, ["end <= start"]),
        ("T1\tPER 30 99\tx\n", 1, ["outside the text of 39 characters"]),
        ("T1\tPER 0 two\t张三\n", 1, ["TYPE START END", "'T1\\tPER 0 two\\t张三'"]),
        ("T1 PER 0 2 张三\n", 1, ["TYPE START END"]),
        ("T1\tPER\t张三\n", 1, ["TYPE START END"]),
        ("T1\tPER 0 2\t张三\nX1\tsomething\n", 2, ["a brat annotation line (T, R, E, A, M, N, # or *)"]),
    ],
)
def test_brat_malformed(tmp_path, ann, line, words):
    root = brat_folder(tmp_path, ann)
    with pytest.raises(DataFormatError) as info:
        read_file(root)
    assert info.value.path == str(root / "doc.ann") and info.value.line == line
    assert_error(info, f"{root / 'doc.ann'}:{line}", *words)


def test_brat_needs_both_files_of_each_pair(tmp_path):
    root = brat_folder(tmp_path / "a", "T1\tPER 0 2\t张三\n")
    write(root / "notes.txt", "not annotated")
    with pytest.raises(DataFormatError) as info:
        read_brat(root)
    assert info.value.path == str(root / "notes.txt")
    assert_error(info, "no notes.ann beside it", "add an empty one")
    (root / "notes.txt").unlink()
    write(root / "lost.ann", "T1\tPER 0 2\t张三\n")
    with pytest.raises(DataFormatError) as info:
        read_brat(root)
    assert_error(info, str(root / "lost.ann"), "no lost.txt beside it")


def test_brat_text_that_is_not_utf8_names_its_line(tmp_path):
    root = tmp_path / "gbk"
    root.mkdir()
    (root / "doc.txt").write_bytes("好\n".encode() + "张三".encode("gbk"))
    (root / "doc.ann").write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"doc.txt:2: expected UTF-8 text .*iconv"):
        read_brat(root)


# ----------------------------------------------------------------------------------------------------------------
# Detection and explicit formats


def test_sniffing_keeps_the_other_formats(tmp_path):
    column = write(tmp_path / "c.txt", "[ O\n张 B-PER\n] O\n")
    assert sniff_format(column) == "column" and read_file(column)[0]["tokens"] == ["[", "张", "]"]
    cluener = write_jsonl(tmp_path / "s.json", [{"text": "张三", "label": {"PER": {"张三": [[0, 1]]}}}])
    assert sniff_format(cluener) == "spans" and read_file(cluener, data_format="cluener")[0]["tags"] == [
        "B-PER",
        "I-PER",
    ]
    lists = write_jsonl(tmp_path / "j.jsonl", [{"tokens": ["张"], "labels": ["B-PER"]}])
    assert sniff_format(lists) == "jsonl"
    minified = write(tmp_path / "m.json", json.dumps([{"id": 1, "data": {"text": "张三"}}]))
    assert sniff_format(minified) == "label-studio"


def test_explicit_formats_and_folders(tmp_path):
    doccano = write_jsonl(tmp_path / "d.jsonl", [{"text": "张三", "label": [[0, 2, "PER"]]}])
    assert read_file(doccano, data_format="doccano") == read_doccano(doccano)
    with pytest.raises(DataFormatError, match="pass --data_format doccano"):
        read_file(doccano, data_format="cluener")  # the CLUENER reader says what it found
    with pytest.raises(DataFormatError, match="pass --data_format doccano"):
        read_file(write_jsonl(tmp_path / "d2.jsonl", [{"text": "张三"}, {"text": "张三", "label": [[0, 2, "PER"]]}]))
    with pytest.raises(DataFormatError, match="a brat folder"):
        read_file(doccano, data_format="brat")
    with pytest.raises(IsADirectoryError, match="is a directory, not a data file"):
        read_file(tmp_path, data_format="doccano")
    with pytest.raises(IsADirectoryError, match="no .ann file"):
        read_file(tmp_path)
    with pytest.raises(ValueError, match="data format must be one of"):
        read_file(doccano, data_format="conll")


def test_evaluate_pipeline_reads_annotation_exports(crf_checkpoint, tmp_path, capsys):
    path = write_jsonl(tmp_path / "gold.jsonl", [{"text": "张三在北京", "label": [[0, 2, "PER"], [3, 5, "LOC"]]}])
    evaluate_pipeline.main(
        ["--model", str(crf_checkpoint), "--data", str(path), "--data_format", "doccano", "--brief"]
    )
    assert capsys.readouterr().out.startswith(f"{path} (1 sentences): entity F1 ")


# ----------------------------------------------------------------------------------------------------------------
# Pre-annotations written by tag.py, read back

TAG_LINES = [
    "受台风影响，武汉至上海的航班今天全部取消。",
    "",
    "2024年ＡＩ大会在北京举行, Apple CEO Tim Cook",
    "张三在北京大学工作，李四去了上海。",
    "   ",
    "北京\u3000上海 😀",
    "newyork playing unknown the york",
]


def run_tag(checkpoint, tmp_path, fmt, *options):
    source = write(tmp_path / "in.txt", "\n".join(TAG_LINES) + "\n")
    out = tmp_path / f"out.{fmt}"
    tag.main(
        [
            "--model",
            str(checkpoint),
            "--input",
            str(source),
            "--output",
            str(out),
            "--format",
            fmt,
            "--no_progress",
            "--overwrite",
            *options,
        ]
    )
    return out


def accept_predictions(path):
    """tag.py's Label Studio tasks as Label Studio exports them once each task's pre-annotations were submitted
    unchanged: an annotation with the prediction's results, the predictions listed by id."""
    tasks = json.loads(path.read_text(encoding="utf-8"))
    for task in tasks:
        (prediction,) = task["predictions"]
        task["annotations"] = [{"id": task["id"], "was_cancelled": False, "result": prediction["result"]}]
        task["predictions"] = [1000 + task["id"]]
    return write_json(path.with_name("export.json"), tasks)


def pipeline_spans(pipe, text):
    return [(e["entity_group"], e["start"], e["end"]) for e in pipe(text, aggregation_strategy="simple")]


@pytest.mark.parametrize("fmt", ["label-studio", "doccano"])
def test_pre_annotations_read_back_exactly(crf_checkpoint, crf_pipeline, tmp_path, fmt):
    out = run_tag(crf_checkpoint, tmp_path, fmt)
    assert sniff_format(out) == fmt
    examples = read_file(accept_predictions(out) if fmt == "label-studio" else out)
    texts = [line for line in TAG_LINES if line.strip()]
    assert [e["text"] for e in examples] == texts
    read_back = [example_entities(e) for e in examples]
    assert read_back == [pipeline_spans(crf_pipeline, text) for text in texts]
    assert sum(map(len, read_back)) >= 5, "the tiny checkpoint should find entities"
    assert all(e["tags"] is not None for e in examples)


def test_label_studio_tasks(crf_checkpoint, crf_pipeline, tmp_path):
    out = run_tag(crf_checkpoint, tmp_path, "label-studio", "--from_name", "ner", "--to_name", "body")
    tasks = json.loads(out.read_text(encoding="utf-8"))
    # Blank lines are skipped; each task's id is its input line.
    assert [t["id"] for t in tasks] == [n for n, line in enumerate(TAG_LINES, 1) if line.strip()]
    for task in tasks:
        text = task["data"]["text"]
        assert text == TAG_LINES[task["id"] - 1]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == crf_checkpoint.name
        entities = crf_pipeline(text, aggregation_strategy="simple")
        assert len(prediction["result"]) == len(entities)
        for result, entity in zip(prediction["result"], entities):
            assert result["type"] == "labels" and (result["from_name"], result["to_name"]) == ("ner", "body")
            assert result["value"] == {
                "start": entity["start"],
                "end": entity["end"],
                "text": entity["word"],
                "labels": [entity["entity_group"]],
            }
            assert result["score"] == pytest.approx(entity["score"], abs=6e-5)
        if entities:
            mean = sum(e["score"] for e in entities) / len(entities)
            assert prediction["score"] == pytest.approx(mean, abs=6e-5)
        else:
            assert "score" not in prediction
    assert len({r["id"] for t in tasks for r in t["predictions"][0]["result"]}) == sum(
        len(t["predictions"][0]["result"]) for t in tasks
    )
    assert all(task["data"]["line"] == task["id"] for task in tasks)  # Label Studio replaces imported ids
    # Pre-annotations nobody submitted are not gold data: read back as they are, nothing is annotated.
    with pytest.raises(DataFormatError, match=f"no annotated task among {len(tasks)} .{len(tasks)} with predictions"):
        read_file(out)
    out = run_tag(crf_checkpoint, tmp_path, "label-studio", "--model_version", "demo-v2")
    assert {t["predictions"][0]["model_version"] for t in json.loads(out.read_text(encoding="utf-8"))} == {"demo-v2"}


def test_doccano_records(crf_checkpoint, crf_pipeline, tmp_path):
    out = run_tag(crf_checkpoint, tmp_path, "doccano")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [n for n, line in enumerate(TAG_LINES, 1) if line.strip()]
    for record in records:
        assert set(record) == {"line", "text", "label"} and record["text"] == TAG_LINES[record["line"] - 1]
        expected = pipeline_spans(crf_pipeline, record["text"])
        # doccano's offsets are UTF-16 code units: the emoji of "北京\u3000上海 😀" counts two.
        text = record["text"]
        assert record["label"] == [[utf16(text, start), utf16(text, end), etype] for etype, start, end in expected]
        assert [js_slice(text, start, end) for start, end, _ in record["label"]] == [
            text[start:end] for _, start, end in expected
        ]
    assert any(len(r["text"]) != len(r["text"].encode("utf-16-le")) // 2 and r["label"] for r in records)
    # --doccano_offsets characters: Python's count, for tools other than doccano.
    out = run_tag(crf_checkpoint, tmp_path, "doccano", "--doccano_offsets", "characters")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in records] == [
        [[start, end, etype] for etype, start, end in pipeline_spans(crf_pipeline, r["text"])] for r in records
    ]


def utf16(text, position):
    """A character position of `text` as a UTF-16 code unit index (JavaScript's, doccano's)."""
    return len(text[:position].encode("utf-16-le")) // 2


def js_slice(text, start, end):
    """`text.slice(start, end)` in JavaScript: what doccano shows for a span."""
    return text.encode("utf-16-le")[2 * start : 2 * end].decode("utf-16-le")


def test_writers_skip_blank_texts():
    import io

    out = io.StringIO()
    entity = {"entity_group": "PER", "start": 0, "end": 2, "score": 0.5, "word": "张三"}
    assert annotations.write_doccano(out, [(1, "张三", [entity]), (2, "", []), (3, " \u3000", [])]) == 1
    assert json.loads(out.getvalue()) == {"line": 1, "text": "张三", "label": [[0, 2, "PER"]]}
    out = io.StringIO()
    assert annotations.write_label_studio(out, [(1, "", []), (2, "张三", [entity])], "m") == 1
    (task,) = json.loads(out.getvalue())
    assert task["id"] == 2 and task["predictions"][0]["score"] == 0.5
    assert data_files.DATA_FORMATS[0] == "auto"


def test_predictions_keep_the_exported_text_and_offsets(tmp_path):
    """run_ner's predictions_*.jsonl give English exports their own text back ("York's", two spaces), not the tokens
    joined by spaces; examples without offsets (column files) are still joined."""
    from bertcrf.outputs import entities_of

    text = "She moved to New York's  centre."
    path = tmp_path / "en.jsonl"
    path.write_text(json.dumps({"text": text, "label": [[13, 21, "LOC"]]}) + "\n", encoding="utf-8")
    (example,) = read_doccano(path)
    assert example["tokens"] != text.split()  # "York", "'", "s": joining them with spaces would change the text
    scores = [1.0] * len(example["tokens"])
    got_text, entities = entities_of(example, example["tags"], scores, "BIO")
    assert got_text == text
    assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in entities] == [("LOC", 13, 21, "New York")]
    joined, _ = entities_of({"tokens": ["New", "York"]}, ["B-LOC", "I-LOC"], [1.0, 1.0], "BIO")
    assert joined == "New York"
