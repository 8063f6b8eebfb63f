"""`make demo` ends by saying how to open its hub in a browser, with a way in for the researcher."""

from pathlib import Path

from rich.console import Console

from flip.demo.journey import DEMO_PASSWORD, _print_browser_hint


def test_the_demo_says_how_to_open_its_hub_and_sign_in():
    console = Console(record=True, width=200)
    _print_browser_hint(console, Path("demo-out/hub.sqlite"))
    text = console.export_text()
    assert "flip hub serve --db sqlite:///demo-out/hub.sqlite" in text
    assert "http://127.0.0.1:8700/" in text
    assert "researcher" in text and DEMO_PASSWORD in text
