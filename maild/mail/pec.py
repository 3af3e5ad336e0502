"""Read PEC (Posta Elettronica Certificata) from raw bytes: what kind it is, daticert.xml, the message inside.

Nothing read here is trusted. A PEC message is a provider's envelope around the
sender's message; anyone can write its header fields, so this module only says
what the message *claims*: ``certified_sender_candidate`` is the sender the
provider would certify, and it becomes certified only when ``maild.mail.smime``
finds the provider's signature valid.

The work is bounded the way ``maild.mail.parsing`` bounds it, with its readers: one
pass over the top-level header block, MIME parts found by offsets (no copies, no
recursion), at most ``MAX_WRAP_DEPTH`` levels searched for the signed part, and
only the parts PEC defines are read: ``daticert.xml`` (at most
``MAX_DATICERT_BYTES``, through defusedxml, since it is attacker-supplied),
the headers of ``postacert.eml`` and the detached ``smime.p7s``. Every problem
is a short string in ``defects``; nothing here raises on hostile input.
"""

from __future__ import annotations

import enum
import logging
import re
import xml.etree.ElementTree as StdET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from xml.etree.ElementTree import Element

import defusedxml
import defusedxml.ElementTree as SafeET

from maild.mail.parsing import HEADER_BLOCK_FACTOR
from maild.mail.parsing.addresses import read_address_list, read_from
from maild.mail.parsing.defects import Defects, clean_header
from maild.mail.parsing.headers import Headers, read_header_block, read_header_date, read_message_ids
from maild.mail.parsing.mime import (
    MIME_FIELD_BYTES,
    PART_HEADER_BYTES,
    Node,
    mime_info,
    split_multipart,
    transfer_decode,
)
from maild.records import Address
from maild.settings import Limits

log = logging.getLogger("maild.mail.pec")

MAX_DATICERT_BYTES = 64 * 1024
"""Real daticert.xml files are about 1 KB; anything far larger is not one."""
MAX_SIGNATURE_BYTES = 256 * 1024
"""A detached signature holds the signer and one or two CA certificates: a few KB."""
MAX_WRAP_DEPTH = 3
"""Levels searched for multipart/signed: a mailing list may wrap the PEC message once."""
MAX_TEXT_CHARS = 998
MAX_RECIPIENTS = 1000

_DEFAULT_LIMITS = Limits()
_MIME_FIELDS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})
_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_MARKERS = ("x-ricevuta", "x-trasporto", "x-tiporicevuta", "x-riferimento-message-id")
_LINE_END = re.compile(rb"\r?\n")
_ADDR_SPEC = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+")
_PER_CONTO_DI = re.compile(r"\s*per\s+conto\s+di\s*:\s*(.*)", re.IGNORECASE | re.DOTALL)
_DAY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_TIME = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})")
_ZONE = re.compile(r"([+-])(\d{2}):?(\d{2})")


class PecKind(enum.StrEnum):
    """What a PEC message is: only an envelope can carry a certified sender."""

    ENVELOPE = "envelope"
    """Busta di trasporto (``X-Trasporto: posta-certificata``): a certified message inside."""
    ANOMALY = "anomaly"
    """Busta di anomalia (``X-Trasporto: errore``): ordinary, uncertified mail inside."""
    RECEIPT = "receipt"
    """Ricevute and avvisi (``X-Ricevuta``): never a request."""


RECEIPT_TYPES = frozenset({
    "accettazione", "non-accettazione", "presa-in-carico", "avvenuta-consegna",
    "posta-certificata", "errore-consegna", "preavviso-errore-consegna", "rilevazione-virus",
})
"""The ``X-Ricevuta`` / daticert ``tipo`` values of the technical rules."""

_SUBJECT_KINDS: tuple[tuple[str, PecKind, str | None], ...] = (
    # Longest first: "AVVISO DI MANCATA CONSEGNA PER ..." before "AVVISO DI MANCATA CONSEGNA".
    ("AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO:", PecKind.RECEIPT, "preavviso-errore-consegna"),
    ("AVVISO DI MANCATA CONSEGNA PER VIRUS:", PecKind.RECEIPT, "errore-consegna"),
    ("AVVISO DI MANCATA CONSEGNA:", PecKind.RECEIPT, "errore-consegna"),
    ("AVVISO DI NON ACCETTAZIONE PER VIRUS:", PecKind.RECEIPT, "non-accettazione"),
    ("AVVISO DI NON ACCETTAZIONE:", PecKind.RECEIPT, "non-accettazione"),
    ("PROBLEMA DI SICUREZZA:", PecKind.RECEIPT, "rilevazione-virus"),
    ("PRESA IN CARICO:", PecKind.RECEIPT, "presa-in-carico"),
    ("ACCETTAZIONE:", PecKind.RECEIPT, "accettazione"),
    ("CONSEGNA:", PecKind.RECEIPT, "avvenuta-consegna"),
    ("POSTA CERTIFICATA:", PecKind.ENVELOPE, None),
    ("ANOMALIA MESSAGGIO:", PecKind.ANOMALY, None),
)


# --------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why a PEC part could not be read: hostile or broken input is a value, never an exception."""

    reason: str


@dataclass(frozen=True, slots=True)
class Recipient:
    addr: str
    tipo: str
    """``certificato`` (a PEC mailbox) or ``esterno`` (an ordinary one), as written."""


@dataclass(frozen=True, slots=True)
class Daticert:
    """The provider's certification data (daticert.xml); "" for an element that is absent."""

    tipo: str
    errore: str
    mittente: str
    destinatari: tuple[Recipient, ...]
    risposte: str
    oggetto: str
    gestore_emittente: str
    data: datetime | None
    """``dati/data`` with its ``zona``, aware; None when absent or unreadable."""
    identificativo: str
    msgid: str
    ricevuta: str
    """``dati/ricevuta/@tipo``: completa, breve or sintetica."""
    consegna: str
    ricezione: tuple[str, ...]
    errore_esteso: str


@dataclass(frozen=True, slots=True)
class SignedPart:
    """What the provider signed and its detached signature, ready for a verifier."""

    content: bytes
    """The signed MIME entity, headers included, with CRLF line ends (S/MIME canonical form)."""
    signature: bytes
    """The DER CMS SignedData of ``smime.p7s``."""


@dataclass(frozen=True, slots=True)
class PecFacts:
    """What a PEC message says about itself; trusted only after its signature is checked."""

    kind: PecKind
    receipt_type: str | None
    """The ``X-Ricevuta`` value (or, lacking it, daticert's ``tipo``) of a receipt; None otherwise."""
    provider: str
    """The envelope From's domain; "" when the From is not one address."""
    envelope_from: str
    """The envelope From address (``posta-certificata@<provider>``): the signer must be it."""
    refers_to: str | None
    """``X-Riferimento-Message-ID``, else daticert's ``msgid``: the original message."""
    daticert: Daticert | None
    per_conto_di: str | None
    """The address in the envelope From's display name ``Per conto di: <address>``."""
    inner_from: Address | None
    """The single, unambiguous From of postacert.eml; None otherwise."""
    certified_sender_candidate: str | None
    """daticert ``mittente`` of an envelope when "Per conto di" and the inner From agree with it."""
    reply_to: str | None
    """Where an answer goes: risposte, Reply-To, else the sender; never the provider's address."""
    envelope_date: datetime | None
    """daticert ``data`` with its ``zona``, else the envelope's Date: when the signature must hold."""
    original_subject: str
    defects: tuple[str, ...]


# --------------------------------------------------------------------------
# Public API


def read_pec(raw: bytes, limits: Limits | None = None) -> PecFacts | None:
    """The PEC facts of ``raw``, or None for ordinary mail (no PEC header field); never raises."""
    limits = limits or _DEFAULT_LIMITS
    defects = Defects()
    try:
        top = _top_block(raw, limits, defects)
    except Exception as exc:  # the same reader as parse_message's, whose fallback trusts nothing either
        log.warning("header fault on a %d-byte message: %s", len(raw), type(exc).__name__, exc_info=True)
        return None
    if not any(name in top.fields for name in _MARKERS):
        return None
    try:
        return _read(raw, top, limits, defects)
    except Exception as exc:  # hostile input must never stop the daemon
        log.warning("PEC reader fault on a %d-byte message: %s", len(raw), type(exc).__name__, exc_info=True)
        return _fallback(top, exc)


def postacert(raw: bytes, limits: Limits | None = None) -> bytes | None:
    """The message inside a PEC envelope (postacert.eml), as it was sent; None when there is none.

    Only the postacert.eml inside the signed part is taken when the message is signed,
    so the message unwrapped is the one the signature covers.
    """
    limits = limits or _DEFAULT_LIMITS
    defects = Defects()
    try:
        top = _top_block(raw, limits, defects)
        return _postacert_bytes(raw, _layout(raw, top.body_start, top.fields, limits, defects), defects)
    except Exception as exc:  # hostile input must never stop the daemon
        log.warning("PEC reader fault on a %d-byte message: %s", len(raw), type(exc).__name__, exc_info=True)
        return None


def signed_part(raw: bytes, limits: Limits | None = None) -> SignedPart | Unreadable | None:
    """The S/MIME signed content and signature of ``raw``; None when it carries no S/MIME signature."""
    limits = limits or _DEFAULT_LIMITS
    defects = Defects()
    try:
        top = _top_block(raw, limits, defects)
        return _signed_part(raw, _layout(raw, top.body_start, top.fields, limits, defects), defects)
    except Exception as exc:  # hostile input must never stop the daemon
        log.warning("PEC reader fault on a %d-byte message: %s", len(raw), type(exc).__name__, exc_info=True)
        return Unreadable(f"reader fault: {type(exc).__name__}")


def canonical(content: bytes) -> bytes:
    """Line ends as CRLF, the form S/MIME signs: Maildirs and mbox files store LF."""
    return _LINE_END.sub(b"\r\n", content)


def parse_daticert(data: bytes) -> Daticert | Unreadable:
    """Read daticert.xml with entities, external references and oversize input refused."""
    if len(data) > MAX_DATICERT_BYTES:
        return Unreadable("daticert.xml too large")
    try:
        root = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        return Unreadable(f"daticert.xml refused: {type(exc).__name__}")
    except (StdET.ParseError, ValueError, LookupError, UnicodeError) as exc:
        return Unreadable(f"daticert.xml malformed: {type(exc).__name__}")
    if _local(root.tag) != "postacert":
        return Unreadable("daticert.xml root is not postacert")
    return _daticert(root)


def _read(raw: bytes, top: _TopBlock, limits: Limits, defects: Defects) -> PecFacts | None:
    headers = Headers(top.fields, defects)
    layout = _layout(raw, top.body_start, top.fields, limits, defects)
    daticert = _read_daticert(raw, layout, defects)
    kind, receipt_type = _kind(headers, daticert, defects)
    if kind is None:
        return None
    inner = _inner_headers(raw, layout, limits, defects)
    return _facts(kind, receipt_type, headers, daticert, inner, layout, defects)


def _fallback(top: _TopBlock, exc: Exception) -> PecFacts:
    """The facts of a PEC message the reader could not handle: a receipt if it says so, else uncertified."""
    kind = PecKind.RECEIPT if "x-ricevuta" in top.fields else PecKind.ANOMALY
    return PecFacts(
        kind=kind, receipt_type=None, provider="", envelope_from="", refers_to=None, daticert=None,
        per_conto_di=None, inner_from=None, certified_sender_candidate=None, reply_to=None, envelope_date=None,
        original_subject="", defects=(f"pec-reader-fault: {type(exc).__name__}",),
    )


def _signed_part(raw: bytes, layout: _Layout, defects: Defects) -> SignedPart | Unreadable | None:
    if layout.signed is None:
        return None
    content, signature = layout.signed
    if signature.end - signature.body > 2 * MAX_SIGNATURE_BYTES:
        return Unreadable("signature too large")
    der = transfer_decode(raw[signature.body:signature.end], signature.encoding, defects)
    if len(der) > MAX_SIGNATURE_BYTES:
        return Unreadable("signature too large")
    if not der:
        return Unreadable("signature empty")
    return SignedPart(content=canonical(raw[content.start:content.end]), signature=der)


# --------------------------------------------------------------------------
# MIME layout


@dataclass(frozen=True, slots=True)
class _Part:
    start: int
    """Where the part's own header block starts."""
    node: Node
    """Its Content-* fields and its body (``node.start`` is where the body starts)."""

    @property
    def content_type(self) -> str:
        return self.node.mime.content_type

    @property
    def maintype(self) -> str:
        return self.node.mime.maintype

    @property
    def filename(self) -> str:
        return self.node.mime.filename.strip().lower()

    @property
    def encoding(self) -> str:
        return self.node.mime.transfer_encoding

    @property
    def body(self) -> int:
        return self.node.start

    @property
    def end(self) -> int:
        return self.node.end


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the parts PEC defines are, inside the signed part when there is one."""

    signed: tuple[_Part, _Part] | None
    daticert: tuple[_Part, ...]
    postacert: tuple[_Part, ...]


@dataclass(slots=True)
class _Budget:
    parts: int


def _top_block(raw: bytes, limits: Limits, defects: Defects) -> _TopBlock:
    block = read_header_block(
        raw, 0, len(raw), field_cap=limits.max_header_bytes,
        block_cap=HEADER_BLOCK_FACTOR * limits.max_header_bytes, keep=None, defects=defects,
    )
    return _TopBlock(block.fields, block.body_start)


@dataclass(frozen=True, slots=True)
class _TopBlock:
    fields: dict[str, list[bytes]]
    body_start: int


def _layout(
    raw: bytes, body_start: int, fields: dict[str, list[bytes]], limits: Limits, defects: Defects
) -> _Layout:
    """Find multipart/signed (the top or a wrapped one), then daticert.xml and postacert.eml in it."""
    top = _Part(0, Node(mime_info(fields, "text/plain", defects), body_start, len(raw), 0))
    budget = _Budget(limits.max_parts)
    signed, root = _find_signed(raw, top, budget, defects)
    children = _children(raw, root, budget, defects) if root.maintype == "multipart" else []
    daticert = tuple(c for c in children if _is_daticert(c))
    messages = tuple(c for c in children if c.content_type == "message/rfc822")
    named = tuple(c for c in messages if c.filename == "postacert.eml")
    if not named:
        named = messages
        if named:
            defects.add("postacert-unnamed")
    return _Layout(signed=signed, daticert=daticert, postacert=named)


def _find_signed(
    raw: bytes, top: _Part, budget: _Budget, defects: Defects
) -> tuple[tuple[_Part, _Part] | None, _Part]:
    """The (content, signature) of the first S/MIME multipart/signed, and the part to read PEC from."""
    queue = [top]
    while queue:
        part = queue.pop(0)
        if part.content_type == "multipart/signed":
            children = _children(raw, part, budget, defects)
            if len(children) >= 2 and children[1].content_type in _SIGNATURE_TYPES:
                return (children[0], children[1]), children[0]
            defects.add("signature-not-smime")
            return None, children[0] if children else part
        if part.maintype == "multipart" and part.node.depth < MAX_WRAP_DEPTH:
            queue.extend(_children(raw, part, budget, defects))
    return None, top


def _children(raw: bytes, part: _Part, budget: _Budget, defects: Defects) -> list[_Part]:
    """The body parts of one multipart, as far as the part budget reaches."""
    boundary = part.node.mime.boundary
    if not boundary or len(boundary) > 200 or budget.parts <= 0:
        defects.add("multipart-unreadable")
        return []
    spans = split_multipart(raw, part.node, boundary, budget.parts, defects) or []
    spans = spans[:budget.parts]
    budget.parts -= len(spans)
    children = []
    for start, end in spans:
        block = read_header_block(
            raw, start, end, field_cap=MIME_FIELD_BYTES, block_cap=PART_HEADER_BYTES,
            keep=_MIME_FIELDS, defects=defects,
        )
        mime = mime_info(block.fields, "text/plain", defects)
        children.append(_Part(start, Node(mime, block.body_start, end, part.node.depth + 1)))
    return children


def _is_daticert(part: _Part) -> bool:
    return part.filename == "daticert.xml" and (part.content_type in _XML_TYPES or part.maintype == "application")


def _postacert_bytes(raw: bytes, layout: _Layout, defects: Defects) -> bytes | None:
    if not layout.postacert:
        return None
    part = layout.postacert[0]
    return transfer_decode(raw[part.body:part.end], part.encoding, defects)


# --------------------------------------------------------------------------
# daticert.xml


def _read_daticert(raw: bytes, layout: _Layout, defects: Defects) -> Daticert | None:
    if not layout.daticert:
        defects.add("daticert-missing")
        return None
    if len(layout.daticert) > 1:
        defects.add("daticert-repeated")
    part = layout.daticert[0]
    if part.end - part.body > 2 * MAX_DATICERT_BYTES:
        defects.add("daticert-unreadable", "daticert.xml too large")
        return None
    data = transfer_decode(raw[part.body:part.end], part.encoding, defects)
    result = parse_daticert(data)
    if isinstance(result, Unreadable):
        defects.add("daticert-unreadable", result.reason)
        return None
    return result


def _daticert(root: Element) -> Daticert:
    header = _child(root, "intestazione")
    data = _child(root, "dati")
    recipients = tuple(
        Recipient(addr=_text(e), tipo=_attr(e, "tipo"))
        for e in _children_named(header, "destinatari")
    )[:MAX_RECIPIENTS]
    return Daticert(
        tipo=_attr(root, "tipo"),
        errore=_attr(root, "errore"),
        mittente=_text(_child(header, "mittente")),
        destinatari=recipients,
        risposte=_text(_child(header, "risposte")),
        oggetto=_text(_child(header, "oggetto")),
        gestore_emittente=_text(_child(data, "gestore-emittente")),
        data=_daticert_date(_child(data, "data")),
        identificativo=_text(_child(data, "identificativo")),
        msgid=_text(_child(data, "msgid")),
        ricevuta=_attr(_child(data, "ricevuta"), "tipo"),
        consegna=_text(_child(data, "consegna")),
        ricezione=tuple(_text(e) for e in _children_named(data, "ricezione"))[:MAX_RECIPIENTS],
        errore_esteso=_text(_child(data, "errore-esteso")),
    )


def _local(tag: object) -> str:
    """An element's name without its namespace: providers differ, the names do not."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _children_named(parent: Element | None, name: str) -> Iterator[Element]:
    if parent is not None:
        yield from (e for e in parent if _local(e.tag) == name)


def _child(parent: Element | None, name: str) -> Element | None:
    return next(_children_named(parent, name), None)


def _text(element: Element | None) -> str:
    if element is None:
        return ""
    return " ".join(clean_header("".join(element.itertext())[:4 * MAX_TEXT_CHARS]).split())[:MAX_TEXT_CHARS]


def _attr(element: Element | None, name: str) -> str:
    if element is None:
        return ""
    return " ".join(clean_header(element.get(name, "")[:MAX_TEXT_CHARS]).split()).lower()


def _daticert_date(element: Element | None) -> datetime | None:
    """``<data zona="+0100"><giorno>dd/mm/yyyy</giorno><ora>hh:mm:ss</ora></data>``, aware."""
    day = _DAY.fullmatch(_text(_child(element, "giorno")))
    time = _TIME.fullmatch(_text(_child(element, "ora")))
    zone = _ZONE.fullmatch(element.get("zona", "").strip() if element is not None else "")
    if day is None or time is None or zone is None:
        return None
    offset = timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3)))
    try:
        tz = timezone(-offset if zone.group(1) == "-" else offset)
        return datetime(
            int(day.group(3)), int(day.group(2)), int(day.group(1)),
            int(time.group(1)), int(time.group(2)), int(time.group(3)), tzinfo=tz,
        )
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Kind


def _kind(
    headers: Headers, daticert: Daticert | None, defects: Defects
) -> tuple[PecKind | None, str | None]:
    """From the header fields; daticert's tipo, then the subject, only when they leave it open."""
    ricevuta = _keyword(headers.first("x-ricevuta"))
    if ricevuta is not None:
        if ricevuta not in RECEIPT_TYPES:
            defects.add("receipt-type-unknown", ricevuta)
        return PecKind.RECEIPT, ricevuta or (daticert.tipo if daticert else None) or None
    transport = _keyword(headers.first("x-trasporto"))
    if transport == "posta-certificata":
        return PecKind.ENVELOPE, None
    if transport == "errore":
        return PecKind.ANOMALY, None
    if transport is not None:
        defects.add("transport-unknown", transport)
    kind, receipt_type = _secondary_kind(headers, daticert, defects)
    if kind is None and transport is not None:
        return PecKind.ANOMALY, None  # PEC it says it is; which kind, nothing says: never certified
    return kind, receipt_type


def _secondary_kind(
    headers: Headers, daticert: Daticert | None, defects: Defects
) -> tuple[PecKind | None, str | None]:
    if daticert is not None and daticert.tipo in RECEIPT_TYPES:
        defects.add("kind-from-daticert")
        if daticert.tipo == "posta-certificata":
            return PecKind.ENVELOPE, None
        return PecKind.RECEIPT, daticert.tipo
    subject = (headers.text("subject") or "").upper()
    for prefix, kind, receipt_type in _SUBJECT_KINDS:
        if subject.startswith(prefix):
            defects.add("kind-from-subject")
            return kind, receipt_type
    return None, None


def _keyword(value: str | None) -> str | None:
    return None if value is None else " ".join(clean_header(value).split()).lower()[:64]


# --------------------------------------------------------------------------
# The message inside and the facts


@dataclass(frozen=True, slots=True)
class _Inner:
    """What postacert.eml's header says, when there is exactly one postacert.eml."""

    from_: Address | None
    reply_to: tuple[Address, ...]
    subject: str | None


def _inner_headers(raw: bytes, layout: _Layout, limits: Limits, defects: Defects) -> _Inner | None:
    if not layout.postacert:
        return None
    if len(layout.postacert) > 1:
        defects.add("postacert-repeated")
    inner = _postacert_bytes(raw, layout, defects)
    if not inner:
        return None
    inner_defects = Defects()
    block = read_header_block(
        inner, 0, len(inner), field_cap=limits.max_header_bytes,
        block_cap=HEADER_BLOCK_FACTOR * limits.max_header_bytes, keep=None, defects=inner_defects,
    )
    headers = Headers(block.fields, inner_defects)
    addresses, ambiguous = read_from(headers, inner_defects)
    result = _Inner(
        from_=addresses[0] if len(addresses) == 1 and not ambiguous else None,
        reply_to=read_address_list(headers, "reply-to", inner_defects),
        subject=headers.text("subject"),
    )
    for defect in inner_defects.freeze():
        defects.add("postacert", defect)
    return result


def _facts(
    kind: PecKind, receipt_type: str | None, headers: Headers, daticert: Daticert | None,
    inner: _Inner | None, layout: _Layout, defects: Defects,
) -> PecFacts:
    envelope = _envelope_from(headers, defects)
    per_conto_di = _per_conto_di(envelope.name) if envelope else None
    envelope_addr = envelope.addr if envelope else ""
    candidate = _candidate(kind, daticert, per_conto_di, inner, layout, defects)
    if layout.signed is None:
        defects.add("signature-missing")
    answerable = kind is not PecKind.RECEIPT
    return PecFacts(
        kind=kind,
        receipt_type=receipt_type if kind is PecKind.RECEIPT else None,
        provider=envelope.domain if envelope else "",
        envelope_from=envelope_addr,
        refers_to=_refers_to(headers, daticert),
        daticert=daticert,
        per_conto_di=per_conto_di,
        inner_from=inner.from_ if inner else None,
        certified_sender_candidate=candidate,
        reply_to=_reply_to(headers, daticert, inner, candidate, envelope_addr, defects) if answerable else None,
        envelope_date=_envelope_date(headers, daticert, defects),
        original_subject=_original_subject(headers, daticert, inner),
        defects=defects.freeze(),
    )


def _envelope_date(headers: Headers, daticert: Daticert | None, defects: Defects) -> datetime | None:
    """daticert's data and zona, which the signature covers; else the envelope's Date."""
    if daticert is not None and daticert.data is not None:
        return daticert.data
    return read_header_date(headers.single("date"), "date", defects)


def _envelope_from(headers: Headers, defects: Defects) -> Address | None:
    """The envelope From when it is exactly one field with exactly one address."""
    values = headers.all("from")
    if len(values) != 1:
        defects.add("envelope-from-not-one-field", str(len(values)))
        return None
    found = read_address_list(headers, "from", defects)
    if len(found) != 1 or not _ADDR_SPEC.fullmatch(found[0].addr):
        defects.add("envelope-from-not-one-address")
        return None
    return found[0]


def _per_conto_di(display_name: str) -> str | None:
    """The address of ``Per conto di: <address>`` (bare, or in angle brackets)."""
    match = _PER_CONTO_DI.fullmatch(display_name)
    if match is None:
        return None
    rest = match.group(1).strip()
    if "<" in rest and rest.endswith(">"):
        rest = rest[rest.rfind("<") + 1:-1].strip()
    return rest if _ADDR_SPEC.fullmatch(rest) else None


def _candidate(
    kind: PecKind, daticert: Daticert | None, per_conto_di: str | None, inner: _Inner | None,
    layout: _Layout, defects: Defects,
) -> str | None:
    """daticert's mittente, when an envelope's three statements of the sender agree and nothing is doubled."""
    if kind is not PecKind.ENVELOPE or daticert is None or not daticert.mittente:
        return None
    if daticert.tipo != "posta-certificata":
        defects.add("daticert-tipo-disagrees", daticert.tipo)
        return None
    if len(layout.daticert) != 1 or len(layout.postacert) != 1:
        return None
    sender = daticert.mittente.lower()
    inner_from = inner.from_.key if inner and inner.from_ else None
    if per_conto_di is None or per_conto_di.lower() != sender or inner_from != sender:
        defects.add("sender-disagrees")
        return None
    return daticert.mittente


def _refers_to(headers: Headers, daticert: Daticert | None) -> str | None:
    ids = read_message_ids(headers.all("x-riferimento-message-id"))
    if ids:
        return ids[0]
    if daticert is None or not daticert.msgid:
        return None
    msgid = daticert.msgid if "<" in daticert.msgid else f"<{daticert.msgid}>"
    ids = read_message_ids([msgid])
    return ids[0] if ids else None


def _reply_to(
    headers: Headers, daticert: Daticert | None, inner: _Inner | None, candidate: str | None,
    envelope_addr: str, defects: Defects,
) -> str | None:
    """risposte, the envelope's Reply-To, the inner Reply-To, the sender: never the provider's address."""
    options: list[str] = [daticert.risposte] if daticert else []
    options += [a.addr for a in read_address_list(headers, "reply-to", defects)[:1]]
    if inner is not None:
        options += [a.addr for a in inner.reply_to[:1]]
    options += [candidate or "", inner.from_.addr if inner and inner.from_ else ""]
    provider = envelope_addr.lower()
    return next((a for a in options if _ADDR_SPEC.fullmatch(a) and a.lower() != provider), None)


def _original_subject(headers: Headers, daticert: Daticert | None, inner: _Inner | None) -> str:
    """postacert.eml's Subject, else daticert's oggetto, else the envelope's without its prefix."""
    if inner is not None and inner.subject is not None:
        return inner.subject
    if daticert is not None and daticert.oggetto:
        return daticert.oggetto
    subject = headers.text("subject") or ""
    upper = subject.upper()
    for prefix, _, _ in _SUBJECT_KINDS:
        if upper.startswith(prefix):
            return subject[len(prefix):].strip()
    return subject
