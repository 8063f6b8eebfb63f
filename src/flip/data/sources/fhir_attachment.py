"""The text of a FHIR Attachment sent inline (`data`): plain text as sent, HTML as the text it
shows. An attachment of other content (a PDF, an image) or given by `url` alone has no text
FLIP reads.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

#: Content types whose bytes are text, read as such (no contentType: text, as FHIR examples send).
PLAIN = ("text/plain", "")
#: Content types whose bytes are markup, read as the text they show.
MARKUP = ("text/html", "application/xhtml+xml")

#: HTML elements that end a line of the text they show.
_BLOCKS = frozenset(
    ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre")
)


class _Text(HTMLParser):
    """Collects the text an HTML document shows, one line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def shown_text(markup: str) -> str:
    """The text an HTML document shows: its lines trimmed, runs of blank lines made one."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _media(content_type: str | None) -> tuple[str, str]:
    """(media type, charset) of a contentType (`text/plain; charset=utf-8`), lower case."""
    media, *params = (content_type or "").split(";")
    charset = next(
        (
            p.split("=", 1)[1].strip().strip('"')
            for p in params
            if p.strip().lower().startswith("charset=")
        ),
        "utf-8",
    )
    return media.strip().lower(), charset or "utf-8"


def textual(content_type: object) -> bool:
    """Whether an Attachment's contentType says its bytes are plain text or HTML."""
    return isinstance(content_type, str | None) and _media(content_type)[0] in (*PLAIN, *MARKUP)


def is_text(attachment: Any) -> bool:
    """Whether an Attachment carries text inline: `data` of a plain text or HTML type."""
    return attachment.data is not None and textual(attachment.contentType)


def attachment_text(attachment: Any) -> str:
    """The text of an Attachment for which `is_text` holds; raises ValueError (a
    UnicodeDecodeError, or an unknown charset's LookupError as one) when its bytes are not
    text in the charset it names."""
    media, charset = _media(attachment.contentType)
    data = attachment.data
    try:
        text = data.decode(charset) if isinstance(data, bytes) else str(data)
    except LookupError as exc:
        raise ValueError(f"unknown charset {charset}") from exc
    return shown_text(text) if media in MARKUP else text
