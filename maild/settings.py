"""Frozen settings parsed once from the TOML configuration file.

The schema is a contract (other tools write these files), so parsing is strict:
an unknown key, a bad address, time zone, date or time fails at start with a
``ConfigError`` naming the dotted key and the reason. Nothing reads the file
again; the frozen ``Settings`` is passed explicitly to whatever needs it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from maild.errors import ConfigError
from maild.pins import check_hash
from maild.records import Category

HEALTH_MAX_AGE = timedelta(seconds=120)
"""Oldest acceptable heartbeat and last successful poll: ``maild status --max-age`` overrides it."""
HEALTH_STARTING_FOR = timedelta(minutes=5)
"""How long a daemon that has not finished its first read of the mailbox counts as starting, not unhealthy:
the first read drains the backlog, which may take minutes."""
RECEIVED_HEADER_LEAD = timedelta(minutes=30)
"""How much earlier than the mailbox server's time our receiving server's Received stamp may be and still
be the received time: the time a message may wait in our own queue; anything earlier is not believed."""
HEALTH_PROBE_TIMEOUT = 5.0
"""Seconds the health check's mailbox probe may take: ``maild status --timeout`` overrides it."""


def _shipped(name: str) -> Path:
    """A data file installed inside the package, found wherever pip put it."""
    return Path(str(resources.files("maild") / "defaults" / name))


DEFAULT_RULES = _shipped("rules.toml")
"""The shipped classification rules: ``[triage] rules`` replaces them."""
DEFAULT_WORD_MODEL = _shipped("wordmodel.json")
"""The shipped word model, trained on the project's labelled mail: ``[triage] word_model`` replaces it."""
DEFAULT_TEMPLATES = _shipped("templates")
"""The shipped reply templates: ``[templates] path`` replaces them."""
DEFAULT_SCREENING = _shipped("screening.toml")
"""The shipped signs of automatic mail beyond RFC 3834."""
DEFAULT_NAMES = _shipped("names.toml")
"""Titles and role words that tell a display name from a person's name, for the greeting of replies."""

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_ADDRESS = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

T = TypeVar("T")
_KIND_NAMES: dict[type, str] = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


@dataclass(frozen=True, slots=True)
class Administration:
    """One Administration served by the help desk."""

    name: str
    referente: str
    delegates: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    pin_referente_hash: str | None = field(default=None, repr=False)
    """From ``maild pin hash``; None: no PIN opens the referente's role."""
    pin_users_hash: str | None = field(default=None, repr=False)
    pec: tuple[str, ...] = ()
    """Certified (PEC) addresses of the referente and delegates, lower case: only these authorize by PEC."""

    @property
    def authorized_senders(self) -> frozenset[str]:
        """Lower-cased addresses allowed to make privileged requests."""
        return frozenset({self.referente, *self.delegates})


@dataclass(frozen=True, slots=True)
class Helpdesk:
    address: str
    name: str
    trusted_authserv_ids: tuple[str, ...]
    ticket_prefix: str = "HD"


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Opening interval of one weekday; ``closes`` is exclusive."""

    opens: time
    closes: time


def _default_week() -> tuple[OpeningHours | None, ...]:
    weekday = OpeningHours(time(8), time(17))
    return (weekday,) * 5 + (OpeningHours(time(8), time(14)), None)


@dataclass(frozen=True, slots=True)
class ServiceHours:
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Rome"))
    country: str = "IT"
    subdivision: str | None = None
    closed_dates: frozenset[date] = frozenset()
    week: tuple[OpeningHours | None, ...] = field(default_factory=_default_week)
    """Monday first; None means closed all day."""


@dataclass(frozen=True, slots=True)
class Priorities:
    lifecycle: int = 1
    password_reset: int = 2
    anagrafica: int = 3
    other: int = 4

    def of(self, category: Category) -> int:
        value: int = getattr(self, category.value)
        return value


@dataclass(frozen=True, slots=True)
class Triage:
    rules: Path = DEFAULT_RULES
    default_language: str = "it"
    word_model: Path | None = DEFAULT_WORD_MODEL
    """None: no word model, the rules alone decide whether a privileged request was asked."""


@dataclass(frozen=True, slots=True)
class Templates:
    path: Path = DEFAULT_TEMPLATES


@dataclass(frozen=True, slots=True)
class Mailbox:
    kind: str = "maildir"
    path: Path = Path("var/mail/inbox")
    host: str = "127.0.0.1"
    port: int = 143
    tls: str = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    idle: bool = True
    poll_interval: float = 60.0
    batch_size: int = 200
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Smtp:
    kind: str = "maildir"
    path: Path = Path("var/mail/sent")
    host: str = "127.0.0.1"
    port: int = 25
    tls: str = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    ca_file: Path | None = None
    first_retry_seconds: float = 1.0
    """A reply refused for now waits about this long (jittered) before its second try; each later wait
    grows exponentially, up to ``RETRY_CAP``: short, so that a few refusals by chance cost seconds."""
    give_up_after_hours: float = 120.0
    """A reply refused for now (4xx, server down) is retried until it is this old, then failed for good."""


RETRY_CAP = timedelta(minutes=30)
"""The longest wait between two tries of a reply refused for now: a relay down for days is still tried
twice an hour."""


@dataclass(frozen=True, slots=True)
class Database:
    url: str = "sqlite:///var/maild.db"


@dataclass(frozen=True, slots=True)
class Limits:
    max_replies_per_sender_per_hour: int = 20
    max_replies_per_sender_per_day: int = 50
    max_referente_notices_per_hour: int = 10
    max_referente_notices_per_day: int = 30
    max_message_bytes: int = 30 * 1024 * 1024
    max_pin_failures_per_administration_per_hour: int = 5
    max_pin_failures_per_client_per_hour: int = 5
    max_header_bytes: int = 64 * 1024
    max_parts: int = 200
    max_depth: int = 20
    max_body_chars: int = 200_000
    parse_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Digest:
    recipients: tuple[str, ...] = ()
    time: time = time(7, 45)


@dataclass(frozen=True, slots=True)
class PecTrust:
    ca_file: Path | None = None
    """Certificates trusted to sign PEC; None: no PEC envelope authorizes anything."""
    addresses: tuple[str, ...] = ()
    """The help desk's own certified addresses: a verified envelope must be addressed to one of them."""


@dataclass(frozen=True, slots=True)
class Metrics:
    listen: str | None = None


@dataclass(frozen=True, slots=True)
class Web:
    listen: str = "127.0.0.1:8025"
    trusted_proxies: frozenset[str] = frozenset()
    """Addresses whose X-Forwarded-For is believed; nobody else's."""

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class Settings:
    helpdesk: Helpdesk
    administrations: tuple[Administration, ...]
    service_hours: ServiceHours = field(default_factory=ServiceHours)
    priorities: Priorities = field(default_factory=Priorities)
    triage: Triage = field(default_factory=Triage)
    templates: Templates = field(default_factory=Templates)
    mailbox: Mailbox = field(default_factory=Mailbox)
    smtp: Smtp = field(default_factory=Smtp)
    database: Database = field(default_factory=Database)
    limits: Limits = field(default_factory=Limits)
    digest: Digest = field(default_factory=Digest)
    metrics: Metrics = field(default_factory=Metrics)
    web: Web = field(default_factory=Web)
    pec: PecTrust = field(default_factory=PecTrust)
    source: Path | None = None
    """The file these settings came from, for messages."""


# --------------------------------------------------------------------------
# Loading


def load_settings(path: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration file at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError("", f"configuration file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    return parse_settings(data, environ=os.environ if environ is None else environ, source=path)


def parse_settings(
    data: Mapping[str, Any], *, environ: Mapping[str, str] | None = None, source: Path | None = None
) -> Settings:
    """Validate an already decoded TOML document."""
    env = environ if environ is not None else {}
    _known(data, "", {
        "helpdesk", "service_hours", "administrations", "priorities", "triage", "templates",
        "mailbox", "smtp", "database", "limits", "digest", "metrics", "web", "pec",
    })
    return Settings(
        helpdesk=_helpdesk(_table(data, "helpdesk", required=True)),
        administrations=_administrations(data.get("administrations")),
        service_hours=_service_hours(_table(data, "service_hours")),
        priorities=_priorities(_table(data, "priorities")),
        triage=_triage(_table(data, "triage")),
        templates=Templates(path=_path(_table(data, "templates"), "templates", "path", DEFAULT_TEMPLATES)),
        mailbox=_mailbox(_table(data, "mailbox"), env),
        smtp=_smtp(_table(data, "smtp"), env),
        database=_database(_table(data, "database")),
        limits=_limits(_table(data, "limits")),
        digest=_digest(_table(data, "digest")),
        metrics=_metrics(_table(data, "metrics")),
        web=_web(_table(data, "web")),
        pec=_pec(_table(data, "pec")),
        source=source,
    )


def _known(table: Mapping[str, Any], prefix: str, keys: set[str]) -> None:
    for key in table:
        if key not in keys:
            dotted = f"{prefix}.{key}" if prefix else key
            raise ConfigError(dotted, f"unknown key (expected one of: {', '.join(sorted(keys))})")


def _table(data: Mapping[str, Any], key: str, *, required: bool = False) -> Mapping[str, Any]:
    if key not in data:
        if required:
            raise ConfigError(key, "missing required table")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _get(table: Mapping[str, Any], prefix: str, key: str, kind: type[T], default: T) -> T:
    if key not in table:
        return default
    value = table[key]
    # bool is an int in Python; never accept one for the other.
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return kind(value)  # type: ignore[call-arg]
        raise ConfigError(f"{prefix}.{key}", f"must be {_KIND_NAMES[kind]}, not {value!r}")
    return value


def _required_str(table: Mapping[str, Any], prefix: str, key: str) -> str:
    if key not in table:
        raise ConfigError(f"{prefix}.{key}", "missing required key")
    value = _get(table, prefix, key, str, "")
    if not value.strip():
        raise ConfigError(f"{prefix}.{key}", "must not be empty")
    return value


def _address(value: object, key: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
        raise ConfigError(key, f"{value!r} is not a valid e-mail address")
    return value.strip().lower()


def _str_list(table: Mapping[str, Any], prefix: str, key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{prefix}.{key}", "must be a list of strings")
    return tuple(value)


def _addresses(table: Mapping[str, Any], prefix: str, key: str) -> tuple[str, ...]:
    return tuple(_address(v, f"{prefix}.{key}") for v in _str_list(table, prefix, key))


def _positive(table: Mapping[str, Any], prefix: str, key: str, default: T, kind: type[T]) -> T:
    value = _get(table, prefix, key, kind, default)
    if value <= 0:  # type: ignore[operator]
        raise ConfigError(f"{prefix}.{key}", "must be greater than zero")
    return value


def _choice(table: Mapping[str, Any], prefix: str, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = _get(table, prefix, key, str, default)
    if value not in choices:
        raise ConfigError(f"{prefix}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def _path(table: Mapping[str, Any], prefix: str, key: str, default: Path) -> Path:
    value = _get(table, prefix, key, str, "")
    return Path(value) if value else default


def _helpdesk(table: Mapping[str, Any]) -> Helpdesk:
    _known(table, "helpdesk", {"address", "name", "trusted_authserv_ids", "ticket_prefix"})
    ids = _str_list(table, "helpdesk", "trusted_authserv_ids")
    if not ids or not all(i.strip() for i in ids):
        raise ConfigError("helpdesk.trusted_authserv_ids", "must list at least one non-empty authserv-id")
    prefix = _get(table, "helpdesk", "ticket_prefix", str, "HD")
    if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}", prefix):
        raise ConfigError("helpdesk.ticket_prefix", "must be 1-10 upper-case letters or digits")
    return Helpdesk(
        address=_address(_required_str(table, "helpdesk", "address"), "helpdesk.address"),
        name=_required_str(table, "helpdesk", "name"),
        trusted_authserv_ids=tuple(i.strip().lower() for i in ids),
        ticket_prefix=prefix,
    )


def _administrations(value: object) -> tuple[Administration, ...]:
    if value is None:
        raise ConfigError("administrations", "at least one [[administrations]] table is required")
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise ConfigError("administrations", "must be one or more [[administrations]] tables")
    admins = tuple(_administration(t, f"administrations[{i}]") for i, t in enumerate(value))
    names = [a.name for a in admins]
    if len(set(names)) != len(names):
        raise ConfigError("administrations", "names must be unique")
    return admins


def _administration(table: Mapping[str, Any], prefix: str) -> Administration:
    _known(table, prefix, {"name", "referente", "delegates", "addresses", "domains", "pin_referente_hash",
                           "pin_users_hash", "pec"})
    domains = _str_list(table, prefix, "domains")
    for d in domains:
        if not _DOMAIN.match(d):
            raise ConfigError(f"{prefix}.domains", f"{d!r} is not a valid domain")
    return Administration(
        name=_required_str(table, prefix, "name"),
        referente=_address(_required_str(table, prefix, "referente"), f"{prefix}.referente"),
        delegates=_addresses(table, prefix, "delegates"),
        addresses=_addresses(table, prefix, "addresses"),
        domains=tuple(d.lower() for d in domains),
        pin_referente_hash=_pin_hash(table, prefix, "pin_referente_hash"),
        pin_users_hash=_pin_hash(table, prefix, "pin_users_hash"),
        pec=_addresses(table, prefix, "pec"),
    )


def _pin_hash(table: Mapping[str, Any], prefix: str, key: str) -> str | None:
    """A PIN hash as ``maild pin hash`` prints it; the value itself never goes into a message."""
    value = _get(table, prefix, key, str, "")
    if not value:
        return None
    problem = check_hash(value)
    if problem is not None:
        raise ConfigError(f"{prefix}.{key}", problem)
    return value


def _service_hours(table: Mapping[str, Any]) -> ServiceHours:
    p = "service_hours"
    _known(table, p, {"timezone", "country", "subdivision", "closed_dates", "week"})
    tz_name = _get(table, p, "timezone", str, "Europe/Rome")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{p}.timezone", f"{tz_name!r} is not a known time zone") from exc
    country = _get(table, p, "country", str, "IT").upper()
    subdivision = _get(table, p, "subdivision", str, "") or None
    _check_holiday_region(country, subdivision)
    closed: set[date] = set()
    for raw in _str_list(table, p, "closed_dates"):
        try:
            closed.add(date.fromisoformat(raw))
        except ValueError as exc:
            raise ConfigError(f"{p}.closed_dates", f"{raw!r} is not a date (YYYY-MM-DD)") from exc
    return ServiceHours(
        timezone=tz, country=country, subdivision=subdivision,
        closed_dates=frozenset(closed), week=_week(_table(table, "week")),
    )


def _check_holiday_region(country: str, subdivision: str | None) -> None:
    try:
        holidays.country_holidays(country, subdiv=subdivision, years=2026)
    except NotImplementedError as exc:
        key = "service_hours.subdivision" if subdivision else "service_hours.country"
        raise ConfigError(key, f"no holiday calendar for {country}/{subdivision or '-'}") from exc


def _week(table: Mapping[str, Any]) -> tuple[OpeningHours | None, ...]:
    """``[service_hours.week] saturday = "08:00-14:00"`` or ``sunday = "closed"``."""
    _known(table, "service_hours.week", set(WEEKDAYS))
    week = list(_default_week())
    for i, day in enumerate(WEEKDAYS):
        if day in table:
            week[i] = _opening(table[day], f"service_hours.week.{day}")
    return tuple(week)


def _opening(value: object, key: str) -> OpeningHours | None:
    if value == "closed":
        return None
    if not isinstance(value, str) or value.count("-") != 1:
        raise ConfigError(key, f"{value!r} must be \"HH:MM-HH:MM\" or \"closed\"")
    start, end = (_hhmm(part.strip(), key) for part in value.split("-"))
    if end <= start:
        raise ConfigError(key, "closing time must be after opening time")
    return OpeningHours(start, end)


def _hhmm(value: str, key: str) -> time:
    match = _HHMM.match(value)
    if not match:
        raise ConfigError(key, f"{value!r} is not a time (HH:MM)")
    return time(int(match[1]), int(match[2]))


def _priorities(table: Mapping[str, Any]) -> Priorities:
    keys = {c.value for c in Category}
    _known(table, "priorities", keys)
    values = {k: _positive(table, "priorities", k, getattr(Priorities(), k), int) for k in keys}
    return Priorities(**values)


def _triage(table: Mapping[str, Any]) -> Triage:
    _known(table, "triage", {"rules", "default_language", "word_model"})
    return Triage(
        rules=_path(table, "triage", "rules", DEFAULT_RULES),
        default_language=_choice(table, "triage", "default_language", "it", ("it", "en")),
        word_model=_word_model(table),
    )


def _word_model(table: Mapping[str, Any]) -> Path | None:
    """A path, or ``false`` for none."""
    value = table.get("word_model", DEFAULT_WORD_MODEL)
    if value is False:
        return None
    if isinstance(value, Path) or (isinstance(value, str) and value):
        return Path(value)
    raise ConfigError("triage.word_model", "must be the path of a word model file, or false for none")


def _secret(table: Mapping[str, Any], prefix: str, env: Mapping[str, str]) -> str:
    """One of ``password``, ``password_file`` or ``password_env``; never logged."""
    given = [k for k in ("password", "password_file", "password_env") if k in table]
    if len(given) > 1:
        raise ConfigError(f"{prefix}.{given[1]}", f"give only one of {', '.join(given)}")
    if not given:
        return ""
    key = given[0]
    value = _get(table, prefix, key, str, "")
    if key == "password":
        return value
    if key == "password_env":
        if value not in env:
            raise ConfigError(f"{prefix}.password_env", f"environment variable {value!r} is not set")
        return env[value]
    try:
        return Path(value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{prefix}.password_file", f"cannot read {value!r}: {exc.strerror}") from exc


_CONNECTION_KEYS = {"kind", "host", "port", "tls", "username", "password", "password_file",
                    "password_env", "path", "ca_file"}


def _port(table: Mapping[str, Any], prefix: str, default: int) -> int:
    port = _get(table, prefix, "port", int, default)
    if not 0 < port < 65536:
        raise ConfigError(f"{prefix}.port", f"{port} is not a TCP port")
    return port


def _ca_file(table: Mapping[str, Any], prefix: str) -> Path | None:
    value = _get(table, prefix, "ca_file", str, "")
    return Path(value) if value else None


def _mailbox(table: Mapping[str, Any], env: Mapping[str, str]) -> Mailbox:
    p = "mailbox"
    _known(table, p, _CONNECTION_KEYS | {"folder", "processed_folder", "quarantine_folder", "idle",
                                         "poll_interval", "batch_size"})
    kind = _choice(table, p, "kind", "maildir", ("imap", "maildir"))
    tls = _choice(table, p, "tls", "starttls", ("ssl", "starttls", "none"))
    folders = {k: _get(table, p, k, str, getattr(Mailbox(), k))
               for k in ("folder", "processed_folder", "quarantine_folder")}
    if len(set(folders.values())) != 3:
        raise ConfigError(f"{p}.processed_folder", "folder, processed_folder and quarantine_folder must differ")
    if kind == "imap":
        _required_str(table, p, "username")
    return Mailbox(
        kind=kind, path=_path(table, p, "path", Mailbox().path),
        host=_get(table, p, "host", str, "127.0.0.1"),
        port=_port(table, p, 993 if tls == "ssl" else 143),
        tls=tls, username=_get(table, p, "username", str, ""), password=_secret(table, p, env),
        idle=_get(table, p, "idle", bool, True),
        poll_interval=_positive(table, p, "poll_interval", 60.0, float),
        batch_size=_positive(table, p, "batch_size", 200, int),
        ca_file=_ca_file(table, p), **folders,
    )


def _smtp(table: Mapping[str, Any], env: Mapping[str, str]) -> Smtp:
    p = "smtp"
    _known(table, p, _CONNECTION_KEYS | {"timeout", "first_retry_seconds", "give_up_after_hours"})
    first_retry = _positive(table, p, "first_retry_seconds", Smtp().first_retry_seconds, float)
    if first_retry > RETRY_CAP.total_seconds():
        raise ConfigError(f"{p}.first_retry_seconds", f"must be at most {RETRY_CAP.total_seconds():.0f} "
                          "(the longest wait between two tries)")
    tls = _choice(table, p, "tls", "none", ("ssl", "starttls", "none"))
    return Smtp(
        kind=_choice(table, p, "kind", "maildir", ("smtp", "maildir")),
        path=_path(table, p, "path", Smtp().path),
        host=_get(table, p, "host", str, "127.0.0.1"),
        port=_port(table, p, 465 if tls == "ssl" else 25),
        tls=tls, username=_get(table, p, "username", str, ""), password=_secret(table, p, env),
        timeout=_positive(table, p, "timeout", 30.0, float), ca_file=_ca_file(table, p),
        first_retry_seconds=first_retry,
        give_up_after_hours=_positive(table, p, "give_up_after_hours", 120.0, float),
    )


def _database(table: Mapping[str, Any]) -> Database:
    _known(table, "database", {"url"})
    url = _get(table, "database", "url", str, Database().url)
    if not url.startswith(("sqlite://", "postgresql")):
        raise ConfigError("database.url", "must be a sqlite:/// or postgresql+psycopg:// URL")
    return Database(url=url)


def _limits(table: Mapping[str, Any]) -> Limits:
    defaults = Limits()
    names = set(defaults.__dataclass_fields__)
    _known(table, "limits", names)
    values: dict[str, Any] = {}
    for name in names:
        default = getattr(defaults, name)
        values[name] = _positive(table, "limits", name, default, type(default))
    return Limits(**values)


def _digest(table: Mapping[str, Any]) -> Digest:
    _known(table, "digest", {"recipients", "time"})
    raw_time = _get(table, "digest", "time", str, "07:45")
    return Digest(recipients=_addresses(table, "digest", "recipients"), time=_hhmm(raw_time, "digest.time"))


def _metrics(table: Mapping[str, Any]) -> Metrics:
    _known(table, "metrics", {"listen"})
    listen = _get(table, "metrics", "listen", str, "") or None
    if listen is not None and not re.fullmatch(r"[^:\s]+:\d{1,5}", listen):
        raise ConfigError("metrics.listen", f"{listen!r} must be HOST:PORT")
    return Metrics(listen=listen)


def _web(table: Mapping[str, Any]) -> Web:
    _known(table, "web", {"listen", "trusted_proxies"})
    listen = _get(table, "web", "listen", str, Web().listen)
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):(\d{1,5})", listen)
    if match is None or not 0 < int(match[2]) < 65536:
        raise ConfigError("web.listen", f"{listen!r} must be HOST:PORT")
    proxies: set[str] = set()
    for value in _str_list(table, "web", "trusted_proxies"):
        try:
            proxies.add(str(ipaddress.ip_address(value.strip())))
        except ValueError as exc:
            raise ConfigError("web.trusted_proxies", f"{value!r} is not an IP address") from exc
    return Web(listen=listen, trusted_proxies=frozenset(proxies))
def _pec(table: Mapping[str, Any]) -> PecTrust:
    _known(table, "pec", {"ca_file", "addresses"})
    ca_file = _ca_file(table, "pec")
    if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
        raise ConfigError("pec.ca_file", f"{ca_file} is not a readable file")
    return PecTrust(ca_file=ca_file, addresses=_addresses(table, "pec", "addresses"))
