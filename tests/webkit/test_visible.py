"""Every page writes out the characters that would hide or reorder text (Trojan Source)."""

from markupsafe import Markup

from flip.webkit.render import templates_in


def test_bidi_overrides_and_invisible_characters_are_written_out_on_every_page(tmp_path):
    env = templates_in(tmp_path).env
    page = env.from_string("<td>{{ name }}</td><pre>{{ code }}</pre>{{ n }}")
    name = "approved\u202e\u2066txt.exe\u200b <b>"
    code = Markup("<span>if ok:\u202e\n    run()</span>")
    shown = page.render(name=name, code=code, n=3)
    assert "\u202e" not in shown and "\u2066" not in shown and "\u200b" not in shown
    assert "<td>approved\\u202e\\u2066txt.exe\\u200b &lt;b&gt;</td>" in shown
    assert "<pre><span>if ok:\\u202e\n    run()</span></pre>3" in shown


def test_ordinary_text_in_any_script_is_left_as_it_is(tmp_path):
    env = templates_in(tmp_path).env
    text = "Łódź — 東京 — مرحبا\ttab\nline"
    assert env.from_string("{{ t }}").render(t=text) == text
