import pytest

from flip.stats.attrition import combine_attrition, release_attrition


def test_small_counts_are_hidden_and_small_drops_withheld():
    assert release_attrition([120, 115, 60, 4, 0], 10) == [120, "withheld", 60, "<10", 0]
    assert release_attrition([50, 50, 38], 10) == [50, 50, 38]


def test_a_withheld_step_is_not_a_baseline_for_the_next():
    assert release_attrition([100, 95, 91, 80], 10) == [100, "withheld", "withheld", 20 * 4]


def test_growing_counts_are_refused():
    with pytest.raises(ValueError, match="must not grow"):
        release_attrition([10, 12], 10)


def test_combined_steps_mark_what_a_site_did_not_release():
    sites = {"a": [120, 60, "<10"], "b": [200, "withheld", 30]}
    assert combine_attrition(sites) == [320, "60+", "30+"]
    with pytest.raises(ValueError, match="different numbers"):
        combine_attrition({"a": [1], "b": [1, 2]})
