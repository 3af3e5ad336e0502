"""Decode one raw message into a ``ParsedMessage``, with bounded work on hostile input.

Mail from the Internet is hostile. The stdlib header decoder is quadratic on some
malformed encoded-words, its recursive MIME parser falls over on a thousand nested
multiparts, and mail-parser decodes (and re-encodes) every attachment. So the work
here is bounded *by construction*, not by a timer (``Limits.parse_timeout`` is not
needed and not used; ``max_message_bytes`` is only reported, since the work is linear
in the size anyway):

* the header block is split here, in one pass over the bytes: each field is cut to
  ``max_header_bytes`` and the block to ``HEADER_BLOCK_FACTOR`` times that;
* MIME structure is walked iteratively over offsets into ``raw`` (no copies, no
  recursion), stopping at ``max_parts`` parts and ``max_depth`` levels; only the
  ``Content-*`` fields of a part are kept, each cut to ``MIME_FIELD_BYTES``;
* attachments are never decoded: their size is estimated from the encoded length;
* a text part is decoded only up to the remaining ``max_body_chars`` budget, and an
  HTML part only when the message has no plain text;
* encoded-words are decoded here, linearly, at most ``MAX_ENCODED_WORDS`` per field,
  and only with real text charsets (never ``unicode-escape``, ``rot13``, ``idna``...).

The well-kept parts of the libraries do the rest: mail-parser's structural address
parser (which also reports the ambiguities the authorizer must not trust) and its
date parser, the stdlib ``email.message.Message`` for MIME parameters (RFC 2231),
and html2text for HTML-only bodies. Every problem becomes a short string in
``defects`` (``code`` or ``code: detail``); ``parse_message`` never raises.
"""

from __future__ import annotations

import logging

from maild.mail.parsing.addresses import read_address_list, read_from
from maild.mail.parsing.defects import Defects, clean_header
from maild.mail.parsing.headers import (
    Headers,
    read_header_block,
    read_header_date,
    read_keyword,
    read_language_hints,
    read_message_id,
    read_message_ids,
    read_received_at,
    read_received_by,
    read_return_path,
    read_screened_fields,
    synthetic_id,
)
from maild.mail.parsing.mime import Node, mime_info, walk_mime
from maild.records import ParsedMessage
from maild.settings import Limits

log = logging.getLogger("maild.parsing")
HEADER_BLOCK_FACTOR = 4
"""The whole top-level header block may hold this many ``max_header_bytes``."""


def parse_message(raw: bytes, limits: Limits) -> ParsedMessage:
    """Decode ``raw`` into a frozen record; never raises (problems go to ``defects``)."""
    try:
        return _parse(raw, limits)
    except Exception as exc:  # hostile input must never stop the daemon
        log.warning("parser fault on a %d-byte message: %s", len(raw), type(exc).__name__, exc_info=True)
        return _fallback(raw, exc)


def _parse(raw: bytes, limits: Limits) -> ParsedMessage:
    defects = Defects()
    end = len(raw)
    if end > limits.max_message_bytes:  # noted for the caller; the work stays linear in the size
        defects.add("message-too-large", str(end))
    block = read_header_block(
        raw, 0, end, field_cap=limits.max_header_bytes,
        block_cap=HEADER_BLOCK_FACTOR * limits.max_header_bytes, keep=None, defects=defects,
    )
    headers = Headers(block.fields, defects)
    top = mime_info(block.fields, "text/plain", defects)
    body = walk_mime(raw, Node(top, block.body_start, end, 0), limits, defects)
    from_addresses, from_ambiguous = read_from(headers, defects)
    return ParsedMessage(
        message_id=read_message_id(headers.single("message-id"), raw, defects),
        from_addresses=from_addresses,
        from_ambiguous=from_ambiguous,
        reply_to=read_address_list(headers, "reply-to", defects),
        sender=read_address_list(headers, "sender", defects),
        to=read_address_list(headers, "to", defects),
        cc=read_address_list(headers, "cc", defects),
        subject=headers.text("subject") or "",
        date=read_header_date(headers.single("date"), "date", defects),
        received_at=read_received_at(headers.first("received"), defects),
        auth_results=tuple(" ".join(clean_header(v).split()) for v in headers.all("authentication-results")),
        return_path=read_return_path(headers.first("return-path")),
        auto_submitted=read_keyword(headers.first("auto-submitted")),
        precedence=read_keyword(headers.first("precedence")),
        x_autoreply="x-autoreply" in block.fields or "x-autorespond" in block.fields,
        content_type=top.content_type,
        report_type=read_keyword(top.report_type) or None,
        in_reply_to=read_message_ids(headers.all("in-reply-to")),
        references=read_message_ids(headers.all("references")),
        language_hints=read_language_hints(headers),
        body_text=body.text,
        body_from_html=body.from_html,
        attachments=body.attachments,
        received_by=read_received_by(headers.first("received")),
        defects=defects.freeze(),
        size=len(raw),
        screened_fields=read_screened_fields(headers),
        link_texts=body.link_texts,
    )


def _fallback(raw: bytes, exc: Exception) -> ParsedMessage:
    """The record for a message the parser could not handle: nothing trusted in it."""
    return ParsedMessage(
        message_id=synthetic_id(raw), from_addresses=(), from_ambiguous=True, reply_to=(), sender=(),
        to=(), cc=(), subject="", date=None, received_at=None, auth_results=(), return_path=None,
        auto_submitted=None, precedence=None, x_autoreply=False, content_type="text/plain",
        report_type=None, in_reply_to=(), references=(), language_hints=(), body_text="",
        body_from_html=False, attachments=(), defects=(f"parser-fault: {type(exc).__name__}",), size=len(raw),
    )
