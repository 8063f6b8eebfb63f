"""`flip query` prints a Circe query's attrition with its step names as written."""

from rich.console import Console

from flip.cli.query import answers_table


def test_a_step_named_like_rich_markup_is_printed_as_written():
    steps = ["primary criteria", "[/]", "[bold]aged 50[/bold]"]
    query = {
        "id": 1,
        "name": "[/]x",
        "results": {
            "a": {
                "count": 30,
                "suppressed": False,
                "threshold": 10,
                "error": None,
                "attrition": [40, 35, 30],
            }
        },
        "pending": [],
        "total": 30,
        "steps": steps,
        "attrition": [40, 35, 30],
    }
    console = Console(record=True, width=200)
    console.print(answers_table(query))
    text = console.export_text()
    assert "Query 1: [/]x" in text and "[/]" in text and "[bold]aged 50[/bold]" in text


def test_a_sites_error_like_rich_markup_is_printed_as_written():
    query = {
        "id": 2,
        "name": "q",
        "results": {"[b]a": {"count": None, "suppressed": False, "threshold": 10, "error": "[/]"}},
        "pending": ["[/]b"],
        "total": None,
    }
    console = Console(record=True, width=200)
    console.print(answers_table(query))
    text = console.export_text()
    assert "error: [/]" in text and "[b]a" in text and "[/]b" in text
