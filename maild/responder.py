"""Rendering of every message maild sends: acknowledgments, refusals, notices.

Pure: the caller passes ``now`` and the Message-ID to use, so the same outbox
row always renders to the same bytes and a re-sent reply keeps its Message-ID.
Templates are loaded and compiled once, at construction, so a missing or
broken template stops the daemon at start instead of at the first reply.

Everything a sender wrote (subject, display name, message ids) is hostile: it
is cleaned before it reaches a header or a body. The bytes are written by
``maild.mail.compose``, which produces exactly what the stdlib ``email`` package
would and hands it every draft it cannot prove it writes the same.
"""

from __future__ import annotations

import logging
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.headerregistry import Address as HeaderAddress
from pathlib import Path
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

import idna
import jinja2

from maild.errors import TemplateError
from maild.logs import context
from maild.mail.compose import Composer, Draft
from maild.records import Address, Category, Decision, Disposition, OutgoingMail, RefusalCause, UnsentReply
from maild.rules.screening import ScreeningRules, is_machine_address
from maild.settings import DEFAULT_NAMES, Helpdesk, Settings

KINDS: Final = ("ack", "refusal", "referente_notice", "referente_notice_subject", "resolution")
LANGUAGES: Final = ("it", "en")
TEMPLATE_NAMES: Final = tuple(f"{kind}.{lang}.txt.j2" for kind in KINDS for lang in LANGUAGES)
"""Every template the Responder needs; all are compiled at construction."""

SUBJECT_LIMIT: Final = 200
"""Characters of the sender's subject kept in a reply subject."""
NAME_LIMIT: Final = 80
REFERENCES_LIMIT: Final = 10
_MSGID_LIMIT: Final = 250

_WEEKDAYS: Final = MappingProxyType({
    "it": ("lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
})
_MONTHS: Final = MappingProxyType({
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
           "settembre", "ottobre", "novembre", "dicembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
})
_CATEGORY_WORDS: Final[Mapping[tuple[Category, str], str]] = MappingProxyType({
    (Category.ANAGRAFICA, "it"): "aggiornamento di dati anagrafici, di casella o di lista",
    (Category.ANAGRAFICA, "en"): "update of directory, mailbox or mailing list details",
    (Category.PASSWORD_RESET, "it"): "reimpostazione o sblocco della password",
    (Category.PASSWORD_RESET, "en"): "password reset or unlock",
    (Category.LIFECYCLE, "it"): "creazione, cancellazione o blocco di caselle o liste",
    (Category.LIFECYCLE, "en"): "creation, deletion or blocking of a mailbox or list",
    (Category.OTHER, "it"): "richiesta di informazioni o assistenza",
    (Category.OTHER, "en"): "information or general assistance",
})

_ZONE_WORDS: Final = MappingProxyType({
    "Europe/Rome": {"it": "ora italiana", "en": "Italian time"},
})
_REFUSAL_WORDS: Final[Mapping[RefusalCause, tuple[str, str]]] = MappingProxyType({
    RefusalCause.FROM_AMBIGUOUS: (
        "il suo mittente (From) si può leggere in più di un modo",
        "its sender (From) can be read in more than one way"),
    RefusalCause.FROM_NOT_ONE: (
        "non indica uno e un solo mittente (From)",
        "it does not name exactly one sender (From)"),
    RefusalCause.NO_ADMINISTRATION: (
        "non è stato possibile stabilire a quale Amministrazione si riferisca",
        "we could not tell which Administration it concerns"),
    RefusalCause.NOT_AUTHORIZED_SENDER: (
        "il mittente non è il referente tecnico né un suo delegato",
        "the sender is neither the referente tecnico nor one of their delegates"),
    RefusalCause.NOT_CHECKED: (
        "il nostro server di ricezione non ha potuto verificare il mittente",
        "our receiving server could not check the sender"),
    RefusalCause.DMARC_FAILED: (
        "il messaggio non ha superato i controlli sul mittente del nostro server di ricezione (DMARC non superato)",
        "the message did not pass the sender checks of our receiving server (DMARC failed)"),
    RefusalCause.NOT_ALIGNED: (
        "il nostro server di ricezione non ha potuto confermare che il messaggio venga dal dominio del mittente "
        "(né DMARC né una firma DKIM del dominio superati)",
        "our receiving server could not confirm that the message comes from the sender's domain "
        "(neither DMARC nor a DKIM signature of that domain passed)"),
    RefusalCause.PEC_ANOMALY: (
        "è arrivato in una busta di anomalia PEC, che non certifica il mittente",
        "it arrived in a PEC anomaly envelope, which does not certify the sender"),
    RefusalCause.PEC_SIGNATURE: (
        "non è stato possibile verificare la firma del gestore PEC",
        "the PEC provider's signature could not be verified"),
    RefusalCause.PEC_NO_SENDER: (
        "non è stato possibile stabilire il mittente certificato",
        "the certified sender could not be established"),
    RefusalCause.PEC_NOT_AUTHORIZED: (
        "il mittente certificato non è un indirizzo PEC autorizzato dell'Amministrazione",
        "the certified sender is not an authorized PEC address of the Administration"),
    RefusalCause.PEC_NOT_ADDRESSED: (
        "il messaggio certificato non era indirizzato all'help desk",
        "the certified message was not addressed to the help desk"),
    RefusalCause.USERS_ROLE: (
        "è stata fatta con il PIN degli utenti, che non consente questo tipo di richiesta",
        "it was made with the users' PIN, which does not allow this kind of request"),
})
"""Why a privileged request was refused, in Italian and English, as the end of one plain sentence."""
_NAME_CUT: Final = re.compile(r"\s+[-–—|/:]+\s+|[;|(\[<\"]|\s[-–—]+$")
"""Where a display name stops being the name: a separator before a job title, a comment, a bracket."""
_NAME_WORD: Final = re.compile(r"[^\W\d_]\.|[^\W\d_]+(?:['’-][^\W\d_]+)*")
"""One word of a name: letters, joined by an apostrophe or a hyphen, or an initial."""

_REPLY_PREFIX: Final = re.compile(r"^(?:(?:re|r|rif|aw|sv|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_MSGID_CORE: Final = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII without < > or space
_MAILBOX: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_TOKEN_BAD: Final = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
log = logging.getLogger("maild.intake")

_ASCII_CONTROLS: Final[Mapping[int, str]] = MappingProxyType({c: " " for c in (*range(0x20), 0x7F)})
""":meth:`str.translate` table: every ASCII control (category Cc) becomes a space."""


# --------------------------------------------------------------------------
# Small pure helpers (public: the daemon threads replies with them)


def ticket_tag(ticket_ref: str) -> str:
    """The tag put in every subject, so replies can be threaded back to the ticket."""
    return f"[{ticket_ref}]"


def find_ticket_refs(subject: str, prefix: str) -> tuple[str, ...]:
    """Ticket references tagged in ``subject`` (``[HD-2027-000123]``), in order, once each.

    Mail clients sometimes change case or pad the brackets, so the match is
    lenient; the result is normalised to upper case.
    """
    pattern = re.compile(rf"\[\s*({re.escape(prefix)}-\d{{4}}-\d{{1,12}})\s*\]", re.IGNORECASE)
    found = (m.group(1).upper() for m in pattern.finditer(subject))
    return tuple(dict.fromkeys(found))


def make_message_id(helpdesk_address: str, token: str) -> str:
    """``<token@helpdesk-domain>``: the same token always yields the same id.

    The daemon derives ``token`` from the outbox row, so a reply re-sent after
    a crash carries the Message-ID of the first attempt and the recipient's
    client sees one message. Characters not allowed in a msg-id are replaced;
    a token with nothing usable left is a caller bug (``TemplateError``).
    """
    domain = helpdesk_address.rpartition("@")[2].lower()
    left = re.sub(r"\.{2,}", ".", _TOKEN_BAD.sub("-", token)).strip(".")
    if not left or not domain:
        raise TemplateError(f"cannot build a Message-ID from {token!r} and {helpdesk_address!r}")
    return f"<{left}@{domain}>"


def clean_line(value: str, limit: int) -> str:
    """One line of sender text, safe to echo: no controls, no bidi tricks, capped.

    Line breaks and other controls become spaces; format characters (bidi
    overrides, zero-width) and lone surrogates are dropped; ``=?`` is split so
    the result can never be read back as an RFC 2047 encoded word (which
    could smuggle a decoded CR/LF into a header).
    """
    text = " ".join(_without_controls(value).split()).replace("=?", "= ?")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _without_controls(value: str) -> str:
    """Controls and line separators as spaces, format characters and surrogates dropped.

    Printable text, nearly all of it, has none of these and is returned as
    it is. Other ASCII text needs no character database: its only controls
    are C0 and DEL, and it has no format characters or surrogates.
    """
    if value.isprintable():
        return value
    if value.isascii():
        return value.translate(_ASCII_CONTROLS)
    kept = []
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif cat not in ("Cf", "Cs"):
            kept.append(ch)
    return "".join(kept)


def clean_text(value: str, limit: int = 4000) -> str:
    """Multi-line text (an operator note): keeps line breaks, drops every other control."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    text = "\n".join(clean_line(line, limit) for line in lines).strip("\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reply_subject(original: str, ticket_ref: str) -> str:
    """``Re: <original> [HD-…]``: one ``Re:``, one tag, sanitised and capped."""
    tag = ticket_tag(ticket_ref)
    text = _REPLY_PREFIX.sub("", clean_line(original, len(original) + 1))
    text = clean_line(text, SUBJECT_LIMIT)
    prefix = ticket_ref.partition("-")[0]
    if ticket_ref.upper() not in find_ticket_refs(text, prefix):
        text = f"{text} {tag}" if text else tag
    return f"Re: {text}"


def format_when(moment: datetime, language: str, tz: tzinfo) -> str:
    """``lunedì 2 novembre 2026 alle 08:00`` / ``Monday 2 November 2026 at 08:00``.

    Names are spelled here rather than through ``locale``: the process locale
    is global state and rarely has it_IT installed on a server.
    """
    local = moment.astimezone(tz) if moment.tzinfo is not None else moment
    lang = _lang(language)
    day = f"{_WEEKDAYS[lang][local.weekday()]} {local.day} {_MONTHS[lang][local.month - 1]} {local.year}"
    clock = f"{local.hour:02d}:{local.minute:02d}"  # %H:%M without strftime's cost
    if lang == "en":
        return f"{day} at {clock}"
    return f"{day} all'{clock}" if local.hour == 1 else f"{day} alle {clock}"


def format_when_zoned(moment: datetime, language: str, tz: tzinfo) -> str:
    """``format_when`` with the time zone named: ``… alle 08:00 (ora italiana)`` / ``… at 08:00 (Italian time)``."""
    return f"{format_when(moment, language, tz)} ({zone_words(tz, language)})"


def zone_words(tz: tzinfo, language: str) -> str:
    """The help desk's time zone as a person says it: ``ora italiana``, ``Italian time``, else its name."""
    lang = _lang(language)
    key = str(getattr(tz, "key", tz))
    words = _ZONE_WORDS.get(key)
    if words is not None:
        return words[lang]
    return f"ora di {key}" if lang == "it" else f"{key} time"


def refusal_words(cause: RefusalCause | None, language: str) -> str:
    """Why a privileged request was refused, as the end of a sentence ("… because <this>")."""
    if cause is None:  # a disposition from before causes were recorded: say what is always true
        cause = RefusalCause.NOT_AUTHORIZED_SENDER
    italian, english = _REFUSAL_WORDS[cause]
    return english if _lang(language) == "en" else italian


@dataclass(frozen=True, slots=True)
class NameWords:
    """The titles dropped from a greeting and the role words that make a display name no name (lower case)."""

    titles: frozenset[str]
    roles: frozenset[str]

    @classmethod
    def load(cls, path: Path = DEFAULT_NAMES) -> NameWords:
        """Read the word lists (``config/names.toml``); a broken file is a ``TemplateError``."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            titles, roles = data["titles"], data["roles"]
            return cls(frozenset(_fold(t) for t in titles), frozenset(_fold(r) for r in roles))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise TemplateError(f"{path}: cannot read the greeting word lists ({exc})") from exc


def greeting_name(display: str, words: NameWords) -> str:
    """The person's name in a display name, for a greeting; ``""`` when it is not a name.

    ``Guidi Alberto - Referente Tecnico`` is greeted ``Guidi Alberto``, ``Dott.ssa
    Anna Verdi`` ``Anna Verdi``; an address, a role or an office (``Ufficio
    Protocollo``), or anything that is not words of letters gets the neutral greeting.
    """
    text = clean_line(display, NAME_LIMIT)
    if "@" in text:
        return ""
    text = _NAME_CUT.split(text, maxsplit=1)[0]
    surname, comma, rest = text.partition(",")
    name = _person(surname, words)
    if comma and name and (given := _person(rest, words)):  # "Verdi, Anna": surname first, then the given name
        name = f"{given} {name}"
    return name.title() if name.isupper() or name.islower() else name


def _person(text: str, words: NameWords) -> str:
    """``text`` without titles when it is only a person's name, else ``""``."""
    names = [w for w in text.strip(" '\"").split() if _fold(w) not in words.titles]
    if not names or len(names) > 5 or not all(_NAME_WORD.fullmatch(w) for w in names):
        return ""
    return "" if any(_fold(w) in words.roles for w in names) else " ".join(names)


def _fold(word: str) -> str:
    return word.casefold().rstrip(".")


def category_words(category: Category, language: str) -> str:
    """The category as the requester reads it."""
    return _CATEGORY_WORDS[(category, _lang(language))]


def _lang(language: str) -> str:
    """Italian unless English was asked for: the help desk's users are Italian first."""
    return "en" if language == "en" else "it"


def _clean_msgid(raw: str) -> str | None:
    """``<id>`` when ``raw`` is a plausible msg-id, else None (never echo junk into headers)."""
    core = raw.strip().removeprefix("<").removesuffix(">")
    if not core or len(core) > _MSGID_LIMIT or not _MSGID_CORE.fullmatch(core):
        return None
    return f"<{core}>"


def thread_ids(in_reply_to: str, references: Iterable[str]) -> tuple[str | None, tuple[str, ...]]:
    """In-Reply-To and References for a reply (RFC 5322 3.6.4).

    References is the original's References plus its Message-ID, deduplicated;
    when too long it keeps the thread root and the most recent ids.
    """
    parent = _clean_msgid(in_reply_to)
    ids = [i for i in (_clean_msgid(r) for r in references) if i is not None and i != parent]
    ids = list(dict.fromkeys(ids))
    if parent is not None:
        ids.append(parent)
    if len(ids) > REFERENCES_LIMIT:
        ids = [ids[0], *ids[-(REFERENCES_LIMIT - 1):]]
    return parent, tuple(ids)


def writable(addr: str) -> tuple[str | None, str]:
    """``addr`` as maild writes to it (a non-ASCII domain as IDNA), or None and why it cannot.

    The same string goes into the SMTP envelope, so anything exotic (a quoted or
    non-ASCII local part, which would need SMTPUTF8) is refused rather than trusted
    to the transport.
    """
    local, at, domain = addr.rpartition("@")
    if not addr:
        return None, "the message gives no address to answer"
    if not at or not local:
        return None, f"{addr!r} is not a mailbox address"
    if local.startswith('"'):
        return None, f"{addr!r} has a quoted local part"
    if not local.isascii():
        return None, f"{addr!r} has a non-ASCII local part (it needs SMTPUTF8)"
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except UnicodeError:
            return None, f"the domain of {addr!r} is not a valid internationalized domain name"
    if not _MAILBOX.fullmatch(ascii_addr := f"{local}@{domain}"):
        return None, f"{addr!r} is not a plain mailbox address"
    return ascii_addr, ""


def unwritable(addr: str, screening: ScreeningRules) -> str | None:
    """Why no reply may go to ``addr``: maild cannot write to it, or it is never a person; None to write."""
    written, why = writable(addr)
    if written is None:
        return why
    machine = is_machine_address(addr, screening)
    return None if machine is None else f"{addr} is never a person: {machine}"


def _recipient(addr: str) -> HeaderAddress:
    """A header Address for ``addr``, refusing anything that is not a plain ASCII mailbox (``writable``)."""
    written, why = writable(addr)
    if written is None:
        raise TemplateError(f"cannot send to {addr!r}: {why}")
    local, _, domain = written.rpartition("@")
    return HeaderAddress(username=local, domain=domain)


# --------------------------------------------------------------------------
# Composition


class Responder:
    """Renders maild's outgoing messages from the Jinja2 templates in one folder."""

    def __init__(self, templates_dir: Path, helpdesk: Helpdesk, *, timezone: tzinfo | None = None,
                 names: NameWords | None = None) -> None:
        """Compile every template now; ``timezone`` is the help desk's (default Europe/Rome), ``names`` the
        greeting's word lists (default the shipped ones)."""
        self._helpdesk = helpdesk
        self._names = names if names is not None else NameWords.load()
        self._tz = timezone if timezone is not None else ZoneInfo("Europe/Rome")
        if not Path(templates_dir).is_dir():
            raise TemplateError(f"templates folder {templates_dir} does not exist")
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "html.j2"), default_for_string=False, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        templates: dict[str, jinja2.Template] = {}
        for name in TEMPLATE_NAMES:
            try:
                templates[name] = env.get_template(name)
            except jinja2.TemplateError as exc:
                raise TemplateError(f"template {name} in {templates_dir}: {_describe(exc)}") from exc
        self._templates: Mapping[str, jinja2.Template] = MappingProxyType(templates)
        # Jinja's globals (range, namespace…) as every template sees them, in a plain map.
        self._globals: Mapping[str, object] = MappingProxyType(dict(env.globals))
        self._composer = Composer(helpdesk, self._tz)

    # -- public renderers -------------------------------------------------

    def acknowledgment(self, d: Disposition, ticket_ref: str, message_id: str, now: datetime) -> OutgoingMail:
        """Accepted request: ticket reference, category, and when it is taken in."""
        if d.take_in is None:
            raise TemplateError(f"cannot acknowledge {ticket_ref}: the disposition has no take-in time")
        lang = _lang(d.language)
        sender = self._from(d, ticket_ref)
        body = self._render("ack", lang, self._common(ticket_ref, d.category, lang) | {
            "requester_name": greeting_name(sender.name, self._names),
            "in_hours": d.take_in.in_hours,
            "take_in_text": format_when_zoned(d.take_in.take_in_at, lang, self._tz),
        })
        return self._reply("ack", d, sender=sender, ticket_ref=ticket_ref, body=body, message_id=message_id, now=now)

    def refusal(
        self, d: Disposition, ticket_ref: str, message_id: str, now: datetime,
        authorized_senders: tuple[str, ...],
    ) -> OutgoingMail:
        """Refused privileged request: how to proceed, without the reasons or the allowed addresses.

        ``authorized_senders`` is never shown to the template; it is only used
        to check that the rendered body does not disclose any of them.
        """
        lang = _lang(d.language)
        sender = self._from(d, ticket_ref)
        body = self._render("refusal", lang, self._common(ticket_ref, d.category, lang))
        lowered = body.lower()
        if any(a.strip() and a.strip().lower() in lowered for a in authorized_senders):
            raise TemplateError(f"refusal.{lang}.txt.j2 would disclose an authorized sender address")
        return self._reply(
            "refusal", d, sender=sender, ticket_ref=ticket_ref, body=body, message_id=message_id, now=now,
        )

    def referente_notice(
        self, d: Disposition, ticket_ref: str, message_id: str, now: datetime, referente: str,
        *, language: str = "it",
    ) -> OutgoingMail:
        """Tell the Administration's referente that a privileged request was refused, and why, in one sentence.

        The whole trace stays with the ticket (``maild ticket show``); ``reasons`` is still given to
        templates that want it.
        """
        lang = _lang(language)
        msg = d.message
        first = msg.from_addresses[0].addr if msg.from_addresses else ""
        context = self._common(ticket_ref, d.category, lang) | {
            "sender_address": clean_line(first, 254),
            "refusal_reason": refusal_words(d.refusal, lang),
            "senders": tuple(_show(a) for a in msg.from_addresses),
            "reply_to": tuple(_show(a) for a in msg.reply_to),
            "sender_header": tuple(_show(a) for a in msg.sender),
            "original_subject": clean_line(msg.subject, SUBJECT_LIMIT),
            "original_message_id": _clean_msgid(msg.message_id) or "",
            "received_text": format_when_zoned(d.received_at, lang, self._tz),
            "administration": clean_line(d.administration or "", NAME_LIMIT),
            "reasons": tuple(clean_line(r, 300) for r in d.reasons),
        }
        subject = clean_line(self._render("referente_notice_subject", lang, context), SUBJECT_LIMIT + 40)
        body = self._render("referente_notice", lang, context)
        return self._compose(Draft(
            kind="referente_notice", recipient=referente, subject=subject, body=body, language=lang,
            message_id=message_id, now=now, auto_submitted="auto-generated",
        ))

    def resolution(
        self, *, ticket_ref: str, requester: Address, subject: str, language: str, category: Category,
        note: str | None, in_reply_to: str, references: tuple[str, ...], message_id: str, now: datetime,
    ) -> OutgoingMail:
        """The ticket is resolved; ``note`` is the operator's optional message.

        ``in_reply_to`` and ``references`` are the original message's
        Message-ID and References; the reply's References is built from both.
        """
        lang = _lang(language)
        body = self._render("resolution", lang, self._common(ticket_ref, category, lang) | {
            "requester_name": greeting_name(requester.name, self._names),
            "note": clean_text(note) if note and note.strip() else "",
        })
        parent, refs = thread_ids(in_reply_to, references)
        return self._compose(Draft(
            kind="resolution", recipient=requester.addr, subject=reply_subject(subject, ticket_ref),
            body=body, language=lang, message_id=message_id, now=now, auto_submitted="auto-generated",
            in_reply_to=parent, references=refs,
        ))

    def notice(self, *, kind: str, recipient: str, subject: str, body: str, language: str, message_id: str,
               now: datetime) -> OutgoingMail:
        """A message to a person of the help desk's side (a referente) whose text the caller rendered."""
        return self._compose(Draft(
            kind=kind, recipient=recipient, subject=clean_line(subject, SUBJECT_LIMIT + 40), body=body,
            language=_lang(language), message_id=message_id, now=now, auto_submitted="auto-generated",
        ))

    # -- internals --------------------------------------------------------

    def _common(self, ticket_ref: str, category: Category, lang: str) -> dict[str, object]:
        return {
            "helpdesk_name": self._helpdesk.name,
            "helpdesk_address": self._helpdesk.address,
            "ticket_ref": ticket_ref,
            "tag": ticket_tag(ticket_ref),
            "category": category.value,
            "category_words": category_words(category, lang),
            "language": lang,
        }

    @staticmethod
    def requester(d: Disposition) -> Address | None:
        """Who a reply goes to: always the From address, never Reply-To (which anyone can set); None without one.

        A PEC request is answered where PEC says (daticert risposte, Reply-To, the
        sender), which is never the provider's address, greeted by the From's name.
        """
        if not d.message.from_addresses:
            return None
        sender = d.message.from_addresses[0]
        if d.pec is not None and d.pec.reply_to:
            return Address(sender.name, d.pec.reply_to)
        return sender

    @classmethod
    def _from(cls, d: Disposition, ticket_ref: str) -> Address:
        sender = cls.requester(d)
        if sender is None:
            raise TemplateError(f"cannot reply for {ticket_ref}: the message has no From address")
        return sender

    def _render(self, kind: str, lang: str, context: Mapping[str, object]) -> str:
        name = f"{kind}.{lang}.txt.j2"
        try:
            return _rendered(self._templates[name], {**self._globals, **context})
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {_describe(exc)}") from exc

    def _reply(
        self, kind: str, d: Disposition, *, sender: Address, ticket_ref: str, body: str, message_id: str,
        now: datetime,
    ) -> OutgoingMail:
        parent, refs = thread_ids(d.message.message_id, d.message.references)
        return self._compose(Draft(
            kind=kind, recipient=sender.addr, subject=reply_subject(d.message.subject, ticket_ref),
            body=body, language=_lang(d.language), message_id=message_id, now=now,
            auto_submitted="auto-replied", in_reply_to=parent, references=refs,
        ))

    def _compose(self, draft: Draft) -> OutgoingMail:
        """Bytes of the message (CRLF, quoted-printable UTF-8), for a plain-mailbox recipient only."""
        to = _recipient(draft.recipient)
        return OutgoingMail(
            kind=draft.kind, message_id=draft.message_id, envelope_from="",
            recipients=(to.addr_spec,), data=self._composer.compose(draft, to),
        )


def _rendered(template: jinja2.Template, context: dict[str, object]) -> str:
    """``template.render(context)`` for a context that already holds the globals, by Jinja's low-level API.

    ``render`` merges the template's layered globals map into the context key
    by key on every call, which costs more than the rendering itself; here the
    context is handed over as it is. Errors are raised as ``render`` raises
    them, with the traceback pointing at the template's lines.
    """
    ctx = template.new_context(context, shared=True)
    try:
        return "".join(template.root_render_func(ctx))
    except Exception:
        template.environment.handle_exception()


def _show(address: Address) -> str:
    """``Name <addr>`` as declared by the sender, cleaned for a plain-text body."""
    name = clean_line(address.name, NAME_LIMIT)
    addr = clean_line(address.addr, 254)
    return f'"{name}" <{addr}>' if name else f"<{addr}>"


def _describe(exc: jinja2.TemplateError) -> str:
    where = f" (line {exc.lineno})" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
    return f"{type(exc).__name__}: {exc.message or exc}{where}"


def replies_for(d: Disposition, ref: str, key: str, now: datetime, responder: Responder, settings: Settings,
                screening: ScreeningRules, *, followup: bool) -> tuple[OutgoingMail | UnsentReply, ...]:
    """Acknowledge a new accepted request; refuse (and tell the referente) a refused one.

    A follow-up gets no acknowledgment, but a privileged request inside it is
    authorized like any other and refused when it fails. Message-IDs are
    derived from the ticket, the kind and the incoming message, so re-running
    the same intake can never queue a second, different reply. A reply to an
    address maild cannot write to, or that is never a person (``unwritable``),
    is not rendered: it comes back as an ``UnsentReply`` with the reason.
    """

    def message_id(kind: str) -> str:
        return make_message_id(settings.helpdesk.address, f"{ref}.{kind}.{key[:16]}")

    def reply(kind: str, recipient: str, render: Callable[[str], OutgoingMail], *, token: str = "",
              ) -> OutgoingMail | UnsentReply:
        why = unwritable(recipient, screening)
        if why is None:
            return render(message_id(token or kind))
        unsent = UnsentReply(kind, recipient, why)
        log.warning("%s", unsent.description, extra=context(d.message.message_id, ref))
        return unsent

    requester = Responder.requester(d)
    to = requester.addr if requester is not None else ""
    if d.decision is Decision.ACCEPTED:
        return () if followup else (reply("ack", to, lambda mid: responder.acknowledgment(d, ref, mid, now)),)
    if d.decision is not Decision.REJECTED:
        return ()
    senders = tuple(sorted({s for a in settings.administrations for s in a.authorized_senders}))
    replies = [reply("refusal", to, lambda mid: responder.refusal(d, ref, mid, now, senders))]
    admin = next((a for a in settings.administrations if a.name == d.administration), None)
    if admin is not None:
        replies.append(reply("referente_notice", admin.referente,
                             lambda mid: responder.referente_notice(d, ref, mid, now, admin.referente),
                             token="notice"))
    else:
        log.warning("refused attempt matches no Administration: no referente to tell",
                    extra=context(d.message.message_id, ref))
    return tuple(replies)
