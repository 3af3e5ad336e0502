"""The MIME structure, walked iteratively over offsets into the raw bytes."""

from __future__ import annotations

import binascii
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message

from maild.mail.parsing.defects import Defects, clean_body, clean_header
from maild.mail.parsing.encoded_words import decode_base64, decode_bytes, decode_words
from maild.mail.parsing.headers import header_str, read_header_block, unfold
from maild.mail.parsing.html import MAX_LINKS, html_link_texts, html_to_text, html_visible_text
from maild.records import Attachment
from maild.settings import Limits

PART_HEADER_BYTES = 16 * 1024
"""Header block of one MIME part (only Content-* fields matter there)."""
MIME_FIELD_BYTES = 8 * 1024
"""Content-Type/-Disposition cap: the stdlib parameter parser is quadratic."""
MAX_FILENAME_CHARS = 255
BODY_BYTES_PER_CHAR = 6
"""Encoded bytes read per wanted body character (QP-encoded UTF-8: ``=C3=A8``)."""
HTML_SOURCE_FACTOR = 4
"""HTML read per wanted character: style blocks and markup are dropped before html2text."""
MIN_PLAIN_COVERAGE = 0.5
"""Share of the HTML alternative's words a text alternative must hold to be read instead of it."""
_WORDS = re.compile(r"[^\W\d_]{2,}")
_MIME_FIELDS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r?\n|\Z)")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_QP_BROKEN = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*(?:\r?\n|\Z))")


@dataclass(frozen=True, slots=True)
class _Mime:
    """What the Content-* fields of one part say."""

    content_type: str = "text/plain"
    charset: str | None = None
    transfer_encoding: str = ""
    disposition: str | None = None
    filename: str = ""
    boundary: str | None = None
    report_type: str | None = None

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]


@dataclass(frozen=True, slots=True)
class Node:
    mime: _Mime
    start: int
    end: int
    depth: int
    alternative: bool = False
    """A direct part of a multipart/alternative: it competes with its siblings."""


def mime_info(fields: dict[str, list[bytes]], default_type: str, defects: Defects) -> _Mime:
    """Read Content-* fields through the stdlib ``Message`` (RFC 2231 parameters)."""
    if not any(name in fields for name in _MIME_FIELDS):
        return _Mime(content_type=default_type)
    view = Message()
    view.set_default_type(default_type)
    for name in _MIME_FIELDS:
        values = fields.get(name)
        if values:
            view.set_raw(name, unfold(header_str(values[0][:MIME_FIELD_BYTES])[0]))
    try:
        params = _params(view, "content-type")
        disposition = _params(view, "content-disposition")
        return _Mime(
            content_type=_content_type(view, default_type, defects),
            charset=_param(params, "charset", defects),
            transfer_encoding=_transfer_encoding(view.get("content-transfer-encoding")),
            disposition=view.get_content_disposition(),
            filename=_filename(
                _param(disposition, "filename", defects) or _param(params, "name", defects), defects
            ),
            boundary=_param(params, "boundary", defects),
            report_type=_param(params, "report-type", defects),
        )
    except (ValueError, LookupError, UnicodeError, IndexError, TypeError, AttributeError) as exc:
        defects.add("mime-header-invalid", type(exc).__name__)
        return _Mime(content_type=default_type)


def _content_type(view: Message, default_type: str, defects: Defects) -> str:
    """The stdlib's reading, but a malformed type is the default one (RFC 2045 5.2)."""
    content_type = view.get_content_type()
    if _MIME_TYPE.fullmatch(content_type):
        return content_type
    defects.add("content-type-invalid")
    return default_type


def _params(view: Message, header: str) -> dict[str, object]:
    """Parameters of one field, parsed once; the first of a repeated name wins."""
    params: dict[str, object] = {}
    for key, value in view.get_params(header=header) or ():
        params.setdefault(str(key).lower(), value)
    return params


def _param(params: dict[str, object], name: str, defects: Defects) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, latin-1 text)
        charset, _, text = value
        data = str(text).encode("latin-1", "replace")
        return decode_bytes(data, str(charset) if charset else None, defects, where="parameter")
    return str(value)


def _transfer_encoding(value: object) -> str:
    words = str(value or "").split()
    return words[0].lower() if words else ""


def _filename(name: str | None, defects: Defects) -> str:
    """Decoded (RFC 2231 or, as many clients send it, RFC 2047), clean and bounded."""
    if not name:
        return ""
    text = " ".join(clean_header(decode_words(name, defects)).split())
    if len(text) > MAX_FILENAME_CHARS:
        defects.add("filename-truncated")
    return text[:MAX_FILENAME_CHARS]


@dataclass(frozen=True, slots=True)
class _Body:
    text: str
    from_html: bool
    attachments: tuple[Attachment, ...]
    link_texts: tuple[str, ...] = ()
    """The texts of the HTML body's links, when the body is read from HTML."""


@dataclass(slots=True)
class _Collector:
    """State of one walk: what was found, and what is left of the budgets."""

    limits: Limits
    defects: Defects
    parts: int = 0
    plain_chars: int = 0
    plain: list[str] = field(default_factory=list)
    plain_alternatives: list[int] = field(default_factory=list)
    """Indexes in ``plain`` of the text parts that have an HTML alternative."""
    html_nodes: list[Node] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def walk_mime(raw: bytes, top: Node, limits: Limits, defects: Defects) -> _Body:
    """Visit the parts depth-first, in document order, without recursion."""
    found = _Collector(limits, defects)
    stack = [top]
    while stack:
        node = stack.pop()
        mime = node.mime
        if mime.maintype == "multipart":
            if node.depth >= limits.max_depth:
                defects.add("nesting-truncated")
                _attachment(raw, node, found)
            elif not mime.boundary or len(mime.boundary) > 200:
                defects.add("multipart-without-boundary")
                _text_leaf(raw, node, found)
            else:
                stack.extend(reversed(_children(raw, node, mime.boundary, found)))
        elif _is_body(mime):
            _text_leaf(raw, node, found)
        else:
            _attachment(raw, node, found)
    text, from_html, links = _body_text(raw, found)
    return _Body(text, from_html, tuple(found.attachments), links)


def _is_body(mime: _Mime) -> bool:
    if mime.content_type not in _BODY_TYPES or mime.disposition == "attachment":
        return False
    return not mime.filename or mime.disposition == "inline"


def _children(raw: bytes, node: Node, boundary: str, found: _Collector) -> list[Node]:
    """The parts of one multipart, as far as the part budget reaches."""
    budget = found.limits.max_parts - found.parts
    spans = split_multipart(raw, node, boundary, budget + 1, found.defects)
    if spans is None:
        _text_leaf(raw, node, found)
        return []
    if len(spans) > budget:
        found.defects.add("parts-truncated", str(found.limits.max_parts))
        spans = spans[:max(budget, 0)]
    found.parts += len(spans)
    default = "message/rfc822" if node.mime.content_type == "multipart/digest" else "text/plain"
    alternative = node.mime.content_type == "multipart/alternative"
    children = []
    for start, end in spans:
        block = read_header_block(
            raw, start, end, field_cap=MIME_FIELD_BYTES, block_cap=PART_HEADER_BYTES,
            keep=_MIME_FIELDS, defects=found.defects,
        )
        mime = mime_info(block.fields, default, found.defects)
        children.append(Node(mime, block.body_start, end, node.depth + 1, alternative))
    return children


def split_multipart(
    raw: bytes, node: Node, boundary: str, limit: int, defects: Defects
) -> list[tuple[int, int]] | None:
    """Spans of the body parts between boundary lines; None when there is none at all.

    The delimiter is found with ``bytes.find`` over offsets, so a large part is
    scanned once at C speed and never copied.
    """
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    needle = b"\n" + delimiter
    lines: list[tuple[int, int]] = []
    pos, end, closed = node.start, node.end, False
    while len(lines) <= limit:
        if pos == node.start and raw.startswith(delimiter, pos, end):
            at = pos
        else:
            found = raw.find(needle, max(pos - 1, node.start), end)
            if found < 0:
                break
            at = found + 1
        tail = _DELIMITER_TAIL.match(raw, at + len(delimiter), end)
        pos = at + len(delimiter)
        if tail is None:
            continue
        lines.append((at, tail.end()))
        pos = tail.end()
        if tail.group(1):
            closed = True
            break
    if not lines:
        defects.add("multipart-start-missing")
        return None
    if not closed and len(lines) <= limit:
        defects.add("multipart-close-missing")
        lines.append((end, end))
    pairs = itertools.pairwise(lines)
    return [(a_end, _before_newline(raw, b_start, a_end)) for (_, a_end), (b_start, _) in pairs]


def _before_newline(raw: bytes, at: int, floor: int) -> int:
    """The CRLF before a delimiter line belongs to the delimiter (RFC 2046)."""
    if at > floor and raw[at - 1:at] == b"\n":
        at -= 1
        if at > floor and raw[at - 1:at] == b"\r":
            at -= 1
    return at


def _attachment(raw: bytes, node: Node, found: _Collector) -> None:
    mime = node.mime
    size = _estimated_size(raw, node.start, node.end, mime.transfer_encoding)
    found.attachments.append(Attachment(filename=mime.filename, content_type=mime.content_type, size=size))


def _estimated_size(raw: bytes, start: int, end: int, encoding: str) -> int:
    """Decoded size from the encoded length alone: no attachment is ever decoded."""
    length = max(end - start, 0)
    if encoding == "base64":
        spaces = sum(raw.count(c, start, end) for c in (b"\n", b"\r", b" ", b"\t"))
        padding = raw.count(b"=", max(start, end - 8), end)
        return max((length - spaces) * 3 // 4 - padding, 0)
    if encoding == "quoted-printable":
        return max(length - 2 * raw.count(b"=", start, end), 0)
    return length


def _text_leaf(raw: bytes, node: Node, found: _Collector) -> None:
    if node.mime.content_type == "text/html":
        found.html_nodes.append(node)  # decoded only if there is no plain text
        return
    remaining = found.limits.max_body_chars - found.plain_chars
    if remaining <= 0:
        found.defects.add("body-truncated")
        return
    text = _decode_leaf(raw, node, remaining, found.defects)
    if node.alternative:
        found.plain_alternatives.append(len(found.plain))
    found.plain.append(text)
    found.plain_chars += len(text)


def _decode_leaf(raw: bytes, node: Node, chars: int, defects: Defects) -> str:
    """Transfer- and charset-decode at most about ``chars`` characters of one part."""
    end = node.end
    cap = chars * BODY_BYTES_PER_CHAR + 8
    if end - node.start > cap:
        defects.add("body-truncated")
        cut = raw.rfind(b"\n", node.start, node.start + cap)
        end = node.start + cap if cut <= node.start else cut + 1
    data = transfer_decode(raw[node.start:end], node.mime.transfer_encoding, defects)
    text = decode_bytes(data, node.mime.charset, defects, where="body")
    return clean_body(text)[:chars]


def transfer_decode(data: bytes, encoding: str, defects: Defects) -> bytes:
    if encoding == "base64":
        return decode_base64(data, defects)
    if encoding == "quoted-printable":
        if _QP_BROKEN.search(data):
            defects.add("quoted-printable-invalid")
        return binascii.a2b_qp(data)
    if encoding not in ("", "7bit", "8bit", "binary"):
        defects.add("transfer-encoding-unknown", encoding)
    return data


def _body_text(raw: bytes, found: _Collector) -> tuple[str, bool, tuple[str, ...]]:
    """Plain text when there is any and it says what the HTML says; otherwise the HTML, made readable.

    With the HTML body come its links' texts: what a reader of the HTML clicks on.
    """
    limit = found.limits.max_body_chars
    plain = _joined(found.plain)
    if plain and found.plain_alternatives:
        html_alternatives = [node for node in found.html_nodes if node.alternative]
        shown = " ".join(html_visible_text(_decode_leaf(raw, node, limit * HTML_SOURCE_FACTOR, found.defects), limit)
                         for node in html_alternatives)
        if html_alternatives and _poorer(_joined(found.plain[i] for i in found.plain_alternatives), shown):
            kept = [t for i, t in enumerate(found.plain) if i not in found.plain_alternatives]
            text, links = _html_text(raw, html_alternatives, found)
            return _joined([text, *kept])[:limit], True, links
    if plain or not found.html_nodes:
        return plain[:limit], False, ()
    text, links = _html_text(raw, found.html_nodes, found)
    return text[:limit], True, links


def _joined(texts: Iterable[str]) -> str:
    return "\n\n".join(t.strip("\n") for t in texts if t.strip())


def _html_text(raw: bytes, nodes: Sequence[Node], found: _Collector) -> tuple[str, tuple[str, ...]]:
    texts: list[str] = []
    links: list[str] = []
    budget = found.limits.max_body_chars
    for node in nodes:
        if budget <= 0:
            found.defects.add("body-truncated")
            break
        html = _decode_leaf(raw, node, budget * HTML_SOURCE_FACTOR, found.defects)
        text = html_to_text(html, budget, found.defects).strip("\n")
        texts.append(text)
        links.extend(html_link_texts(html, budget * HTML_SOURCE_FACTOR))
        budget -= len(text)
    return _joined(texts), tuple(links[:MAX_LINKS])


def _poorer(plain: str, html: str) -> bool:
    """True when the text alternative is shorter than the HTML and holds only a fraction of its words.

    A "view this message in HTML" notice, an empty part or a stub shares few
    words with the message it stands in for, in any language; a faithful text
    alternative holds nearly all of them.
    """
    wanted = {w.casefold() for w in _WORDS.findall(html)}
    held = {w.casefold() for w in _WORDS.findall(plain)}
    return len(held) < len(wanted) and len(wanted & held) < MIN_PLAIN_COVERAGE * len(wanted)
