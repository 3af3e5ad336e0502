"""HTML-only bodies to text, tamed first so html2text stays linear."""

from __future__ import annotations

import re
from html import unescape
from types import MappingProxyType

import html2text

from maild.mail.parsing.defects import TRAILING_SPACE, Defects, clean_body

MAX_HTML_NESTING = 8
"""html2text output grows with the square of list/quote nesting."""
MAX_LINKS = 64
"""Link texts kept per HTML part: a bulk mail's way out is one of its few links."""
MAX_LINK_CHARS = 120
"""A link text longer than this is a sentence, not a button: kept cut."""


# HTML taming
_HTML_BLOCK = re.compile(r"<!--|<(style|script|head)\b", re.IGNORECASE)
_HTML_CLOSERS = MappingProxyType({
    "style": re.compile(r"</style\s*>", re.IGNORECASE),
    "script": re.compile(r"</script\s*>", re.IGNORECASE),
    "head": re.compile(r"</head\s*>", re.IGNORECASE),
    "": re.compile(r"-->"),
})
_HTML_UNCLOSED_LT = re.compile(r"<(?![^<>]*>)")
_HTML_NESTING = re.compile(r"<(/?)(?:ul|ol|dl|blockquote)\b[^>]*>", re.IGNORECASE)


def html_to_text(html: str, limit: int, defects: Defects) -> str:
    """html2text on HTML first tamed so that its work and output stay linear."""
    html = _tame_html(html, limit)
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    try:
        text = converter.handle(html)
    except Exception as exc:  # html2text/HTMLParser fault on hostile markup
        defects.add("html-conversion-failed", type(exc).__name__)
        text = re.sub(r"<[^<>]*>", " ", html)
    return TRAILING_SPACE.sub("\n", clean_body(text))


def html_visible_text(html: str, limit: int) -> str:
    """The shown words of an HTML part, roughly and cheaply: enough to weigh it against a text part."""
    return unescape(_TAG.sub(" ", _drop_hidden(html)[:limit]))


_TAG = re.compile(r"<[^<>]*>")
_LINK_OPEN = re.compile(r"<a\s[^<>]*>", re.IGNORECASE)
_LINK_CLOSE = re.compile(r"</a\s*>", re.IGNORECASE)


def html_link_texts(html: str, limit: int) -> tuple[str, ...]:
    """The shown text of each ``<a href>`` of an HTML part, in order: what a reader clicks on.

    Linear: each link's end is searched for once, from its start, and the next link is looked
    for after it; a link never closed ends the search.
    """
    html = _tame_html(html, limit)
    texts: list[str] = []
    pos = 0
    while len(texts) < MAX_LINKS and (opener := _LINK_OPEN.search(html, pos)) is not None:
        if "href" not in opener.group(0).lower():  # a named anchor, not a link
            pos = opener.end()
            continue
        closer = _LINK_CLOSE.search(html, opener.end())
        if closer is None:
            break
        text = " ".join(unescape(_TAG.sub(" ", html[opener.end():closer.start()])).split())
        if text:
            texts.append(text[:MAX_LINK_CHARS])
        pos = closer.end()
    return tuple(texts)


def _tame_html(html: str, limit: int) -> str:
    """Drop what is never shown, close the door on the parser's quadratic cases.

    Comments, style, script and head go (an unclosed one swallows the rest, as in a
    browser); a ``<`` that opens no complete tag becomes text; list and quote
    nesting is capped.
    """
    html = _drop_hidden(html)[:limit]
    html = _HTML_UNCLOSED_LT.sub("&lt;", html)
    return _cap_nesting(html)


def _drop_hidden(html: str) -> str:
    """Linear: once a closer is known to be absent, it is never searched for again."""
    out: list[str] = []
    pos = 0
    unclosed_head = False
    while (opener := _HTML_BLOCK.search(html, pos)) is not None:
        out.append(html[pos:opener.start()])
        tag = (opener.group(1) or "").lower()
        closer = None if tag == "head" and unclosed_head else _HTML_CLOSERS[tag].search(html, opener.end())
        if closer is None:
            if tag == "head":  # an unclosed head often wraps the whole message: show it
                unclosed_head = True
                pos = opener.end()
                continue
            return "".join(out)
        pos = closer.end()
    out.append(html[pos:])
    return "".join(out)


def _cap_nesting(html: str) -> str:
    depth = dropped = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal depth, dropped
        if match.group(1):
            if dropped:
                dropped -= 1
                return ""
            depth = max(depth - 1, 0)
            return match.group(0)
        if depth >= MAX_HTML_NESTING:
            dropped += 1
            return ""
        depth += 1
        return match.group(0)

    return _HTML_NESTING.sub(keep, html)
