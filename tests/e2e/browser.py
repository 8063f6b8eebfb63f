"""Debian's Chromium under Playwright for the browser journeys, and the check every page gets:
a screenshot, and no serious or critical axe-core violation."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("FLIP_CHROMIUM", "/usr/bin/chromium")


def chromium() -> Iterator:
    """Headless Debian Chromium; skipped where it or Playwright is missing (never in CI)."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        if IN_CI:
            pytest.fail(f"{CHROMIUM} must be installed in CI (make test-services)")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (make test-services)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def scan(page, shot: Path) -> None:
    """Save a screenshot of `page` to `shot`; fail on any serious or critical axe-core violation."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        return
    violations = Axe().run(page).response["violations"]
    bad = [(v["id"], v["impact"]) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{shot.stem}: {bad}"
