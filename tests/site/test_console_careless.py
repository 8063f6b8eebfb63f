"""The site console under careless input: refused with a page in words, never a 500."""

from __future__ import annotations

import pytest

from flip.site.console.policy import MAX_NUMBER
from tests.site.test_console import Site, hub  # noqa: F401 - the module's hub fixture

HUGE = str(10**30)


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/policy", {"min_cell_size": HUGE}),
        ("/policy", {"min_cell_size": "10", "min_rows": HUGE}),
        ("/policy/rules", {"kinds": "custom", "projects": f"3, {HUGE}"}),
        ("/policy/rules", {"kinds": "custom", "max_rounds": "9" * 20}),
    ],
)
def test_a_number_past_what_the_ledger_keeps_is_refused_in_words(hub, tmp_path, path, form):  # noqa: F811
    site = Site(hub, tmp_path)
    try:
        site.sign_in()
        before = site.config.read_text()
        answer = site.post(path, form, "/policy")
        assert answer.status_code == 422, answer.text
        assert str(MAX_NUMBER) in answer.text or "less than or equal" in answer.text
        assert site.config.read_text() == before, "nothing written"
    finally:
        site.client.close()


def test_a_mistyped_address_is_a_page_in_words(hub, tmp_path):  # noqa: F811
    site = Site(hub, tmp_path)
    try:
        answer = site.http.get("/aprovals")
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html") and "<h1>" in answer.text
    finally:
        site.client.close()
