"""The browser tests' requirements: missing on a laptop they skip, missing in CI they fail."""

from __future__ import annotations

import pytest

from tests import conftest
from tests.e2e import browser


def test_a_missing_playwright_fails_in_ci_and_skips_elsewhere(monkeypatch):
    missing = "flip_no_such_module.sync_api"
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="must be installed in CI"):
        browser.required(missing, "pip install it")
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="is missing"):
        browser.required(missing, "pip install it")


def test_chromium_asks_for_playwright_through_the_same_rule(monkeypatch, tmp_path):
    """With Chromium present and Playwright missing, CI fails instead of skipping."""
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser, "CHROMIUM", str(fake))
    monkeypatch.setattr(conftest, "IN_CI", True)
    real = browser.importlib.import_module

    def without_playwright(name: str, *args):
        if name.startswith("playwright"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(browser.importlib, "import_module", without_playwright)
    with pytest.raises(pytest.fail.Exception, match=r"playwright\.sync_api must be installed"):
        next(browser.chromium())
