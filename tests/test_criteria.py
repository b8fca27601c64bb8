"""Criteria as data: built-ins, user files, weights, ensembles."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from rd_inference.criteria import (
    Criterion,
    aggregate,
    builtin_criteria,
    builtin_pairwise,
    load_criteria_file,
    resolve_criteria,
)

ALIGNMENT_PARTS = ["object_consistency", "text_accuracy", "style_consistency", "environment_relevance"]


def test_builtins_cover_the_documented_criteria():
    names = set(builtin_criteria())
    assert {"alignment", *ALIGNMENT_PARTS, "visual_quality", "plausibility", "aesthetics"} <= names
    for c in [*builtin_criteria().values(), *builtin_pairwise().values()]:
        assert "{prompt}" in c.template and c.description
        assert "a cat" in c.render("a cat") and "{prompt}" not in c.render("a cat")
    assert all("image 2 better than image 1" in c.template for c in builtin_pairwise().values())


def test_resolve_names_weights_mappings_and_objects():
    crits = resolve_criteria("alignment, aesthetics:0.5")
    assert [(c.name, c.weight) for c in crits] == [("alignment", 1.0), ("aesthetics", 0.5)]
    assert [c.name for c in resolve_criteria(None)] == ["alignment"]
    assert [c.name for c in resolve_criteria(None, pairwise=True)] == ["pairwise_alignment"]
    assert resolve_criteria({"plausibility": 3})[0].weight == 3.0
    own = Criterion("mine", "Is {prompt} shown? Answer yes or no.")
    assert resolve_criteria([own, "aesthetics"])[0] is own
    assert resolve_criteria([own.to_dict()])[0] == own


def test_template_braces_other_than_prompt_are_kept():
    c = Criterion("json", 'Prompt: {prompt}. Reply like {"answer": "yes"}.')
    assert c.render("a dog") == 'Prompt: a dog. Reply like {"answer": "yes"}.'


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([{"name": "bad", "template": "Is this image good?"}], r"must contain \{prompt\}"),
        ("nope", "unknown pointwise criterion 'nope'; known: aesthetics, alignment"),
        ("alignment,alignment", "unique"),
        ("alignment:x", "weight must be a number"),
        ({"alignment": -1}, "weight must be >= 0"),
        ({"alignment": 0}, "must not all be zero"),
        ([], "no criteria"),
    ],
)
def test_bad_criteria_are_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_criteria(spec)


def test_user_json_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "format": "rd_inference.criteria/1",
                "criteria": [
                    {"name": "red", "template": "For {prompt}: is it red? Answer yes or no.", "weight": 2},
                    {"name": "round", "template": "For {prompt}: is it round? Answer yes or no."},
                ],
                "pairwise": [{"name": "p", "template": "For {prompt}: is image 2 better than image 1?"}],
            }
        )
    )
    pointwise, pairwise = load_criteria_file(path)
    assert list(pairwise) == ["p"]
    assert list(pointwise) == ["red", "round"] and pointwise["red"].weight == 2.0
    assert [c.name for c in resolve_criteria(f"{path},aesthetics")] == ["red", "round", "aesthetics"]
    assert [c.name for c in resolve_criteria(str(path), pairwise=True)] == ["p"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_user_toml_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[criteria]]\nname = "red"\ntemplate = "For {prompt}: is it red? Answer yes or no."\n')
    assert resolve_criteria(str(path))[0].name == "red"


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_criteria_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"criteria": [{"name": "x", "template": "no placeholder"}]}))
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        load_criteria_file(bad)
    bad.write_text(json.dumps({"criteria": [{"name": "x", "template": "{prompt}", "wieght": 2}]}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_criteria_file(bad)
    txt = tmp_path / "c.txt"
    txt.write_text("")
    with pytest.raises(ValueError, match=r"\.json or \.toml"):
        load_criteria_file(txt)


def test_aggregate_mean_and_rank():
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.1, 0.2]])
    assert torch.allclose(aggregate(probs, [1, 1]), torch.tensor([0.5, 0.5, 0.15]))
    assert torch.allclose(aggregate(probs, [3, 1]), torch.tensor([0.7, 0.5, 0.125]))
    # Rank: criterion 0 ranks images 2,1,0 -> 1, 0.5, 0; criterion 1 -> 0, 1, 0.5.
    assert torch.allclose(aggregate(probs, [1, 1], "rank"), torch.tensor([0.5, 0.75, 0.25]))
    # An over-confident criterion cannot dominate the rank ensemble.
    gamed = torch.tensor([[1.0, 0.2], [0.0, 0.9]])
    assert aggregate(gamed, [1, 1])[0] > aggregate(gamed, [1, 1])[1]
    assert torch.allclose(aggregate(gamed, [1, 1], "rank"), torch.tensor([0.5, 0.5]))
    assert aggregate(probs[:1], [1, 1], "rank").item() == 0.5
    ties = aggregate(torch.tensor([[0.3], [0.3], [0.9]]), [1], "rank")
    assert torch.allclose(ties, torch.tensor([0.25, 0.25, 1.0]))
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(probs, [1, 1], "median")
