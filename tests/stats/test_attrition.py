import pytest

from flip.stats.attrition import combine_attrition


def test_combined_steps_mark_what_a_site_did_not_release():
    sites = {"a": [120, 60, "<10"], "b": [200, "withheld", 30]}
    assert combine_attrition(sites) == [320, "60+", "31+"], "a hidden <10 holds at least 1"
    with pytest.raises(ValueError, match="different numbers"):
        combine_attrition({"a": [1], "b": [1, 2]})


def test_a_site_not_heard_from_is_unknown_at_every_step():
    assert combine_attrition({"a": [120, "<10"], "b": None}, 2) == ["120+", "1+"]
    assert combine_attrition({"a": None}, 3) == ["0+", "0+", "0+"]
    with pytest.raises(ValueError, match="different numbers"):
        combine_attrition({"a": [1, 2]}, 3)


def test_step_names_come_from_a_circe_expressions_rules_and_flip_json_has_none():
    from flip.stats.attrition import step_names

    circe = {"ConceptSets": [], "PrimaryCriteria": {}, "InclusionRules": [{"name": "old"}, {}]}
    assert step_names(circe) == ["primary criteria", "old", "rule 2"]
    assert step_names({"name": "x", "expression": circe}) == step_names(circe)
    assert step_names({"name": "x", "include": []}) == []


def test_a_step_every_site_hid_is_at_least_one_per_site_never_zero():
    assert combine_attrition({"a": [120, "<10"], "b": [80, "<10"]}) == [200, "2+"]
    assert combine_attrition({"a": [120, "withheld"], "b": [80, "<10"]}) == [200, "1+"]
