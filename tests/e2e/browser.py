"""Debian's Chromium under Playwright for the browser journeys, and the check every page gets:
a screenshot, and no serious or critical axe-core violation."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests import conftest

CHROMIUM = os.environ.get("FLIP_CHROMIUM", "/usr/bin/chromium")


def required(module: str, why: str) -> ModuleType:
    """`module`, imported; where it is missing, the test fails in CI and is skipped elsewhere
    with `why` (what to install)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if conftest.IN_CI:
            pytest.fail(f"{module} must be installed in CI: {why}")
        pytest.skip(f"{module} is missing: {why}")


def chromium() -> Iterator:
    """Headless Debian Chromium; skipped where it or Playwright is missing (never in CI)."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        if conftest.IN_CI:
            pytest.fail(f"{CHROMIUM} must be installed in CI (make test-services)")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (make test-services)")
    playwright_api = required("playwright.sync_api", "pip install -e '.[dev]'")
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
        if conftest.IN_CI:
            pytest.fail("axe-playwright-python must be installed in CI: every page is scanned")
        return
    violations = Axe().run(page).response["violations"]
    bad = [(v["id"], v["impact"]) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{shot.stem}: {bad}"
