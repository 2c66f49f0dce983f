"""The feature CRF baseline's character features (benchmarks/bench_feature_crf.py), without python-crfsuite."""

from __future__ import annotations

import sys

from conftest import REPO_ROOT


sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench_feature_crf import char_features, sentence_features  # noqa: E402


def test_features_of_a_three_character_sentence():
    features = sentence_features(list("我爱你"))
    assert len(features) == 3
    assert features[0] == [
        "bias",
        "c[-2]=<s>",
        "c[-1]=<s>",
        "c[0]=我",
        "c[1]=爱",
        "c[2]=你",
        "c[-2]c[-1]=<s>|<s>",
        "c[-1]c[0]=<s>|我",
        "c[0]c[1]=我|爱",
        "c[1]c[2]=爱|你",
        "c[-1]c[0]c[1]=<s>|我|爱",
        "BOS",
    ]
    assert "c[-1]c[0]c[1]=我|爱|你" in features[1] and not {"BOS", "EOS"} & set(features[1])
    assert features[2][-1] == "EOS" and "c[1]c[2]=</s>|</s>" in features[2]


def test_a_one_character_sentence_is_both_first_and_last():
    features = char_features(["京"], 0)
    assert features[-2:] == ["BOS", "EOS"]
    assert "c[-1]c[0]c[1]=<s>|京|</s>" in features
