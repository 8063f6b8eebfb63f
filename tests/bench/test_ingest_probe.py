"""The ingest bench reads its RSS probe's figure whatever else the child printed."""

import pytest

from flip.bench.ingest import _peak_rss_kib


def test_the_figure_is_read_past_a_progress_bar_on_stdout():
    bar = "\r[=====>      ] 45%\r[============] 100%\n"
    assert _peak_rss_kib(f"{bar}peak_rss 480000\n") == 480000
    assert _peak_rss_kib("peak_rss 12\n") == 12


def test_no_figure_is_an_error_naming_what_was_printed():
    with pytest.raises(RuntimeError, match="printed no figure: 'oops"):
        _peak_rss_kib("oops\n")
