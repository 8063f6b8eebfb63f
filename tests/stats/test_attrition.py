import pytest

from flip.stats.attrition import combine_attrition


def test_combined_steps_mark_what_a_site_did_not_release():
    sites = {"a": [120, 60, "<10"], "b": [200, "withheld", 30]}
    assert combine_attrition(sites) == [320, "60+", "30+"]
    with pytest.raises(ValueError, match="different numbers"):
        combine_attrition({"a": [1], "b": [1, 2]})
