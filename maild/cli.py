"""The ``maild`` command line.

Every subcommand takes ``--config PATH``. Exit codes: 0 done, 1 a fault while
doing it (reported on stderr), 2 bad configuration or usage. The triage,
takein and render commands are a contract other tools call: their JSON output
is one object per line.

``maild.app`` (the daemon's wiring, and with it the database layer, the
IMAP, SMTP and scheduler libraries) is imported by the handlers that use it,
never by this module: a spawned triage worker (a replacement) re-imports the
main module (this one, under ``python -m maild.cli`` and the ``maild``
script), and ``maild triage`` or ``check-config`` need none of it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from maild.cli_ops import OPERATOR_COMMANDS
from maild.errors import ConfigError, MaildError
from maild.hours import ServiceCalendar
from maild.logs import configure
from maild.pipeline import Triager
from maild.records import Decision, Disposition, OutgoingMail
from maild.responder import Responder, make_message_id
from maild.settings import Settings, load_settings

EXIT_FAULT = 1
EXIT_CONFIG = 2
DEFAULT_CONFIG = "config/maild.toml"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_format, args.log_level)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"maild: configuration error in {args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ConfigError as exc:
        print(f"maild: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except MaildError as exc:
        print(f"maild: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAULT
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maild", description="First-line e-mail help desk daemon.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, help=f"TOML configuration (default {DEFAULT_CONFIG})")
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    common.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRY:
        register(commands, common)
    return parser


# --------------------------------------------------------------------------
# check-config


def _add_check_config(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                      common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("check-config", parents=[common], help="validate the configuration and exit")
    cmd.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace, settings: Settings) -> int:
    Triager.from_settings(settings)  # loads rules and the holiday calendar: fails here, not at 3 a.m.
    Responder(settings.templates.path, settings.helpdesk)
    admins = ", ".join(a.name for a in settings.administrations)
    print(f"{args.config}: OK ({len(settings.administrations)} administration(s): {admins}; "
          f"mailbox {settings.mailbox.kind}, replies {settings.smtp.kind}, database {_redact(settings.database.url)})")
    return 0


def _redact(url: str) -> str:
    """Database URL without its password, for printing."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    credentials, _, host = tail.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}"


# --------------------------------------------------------------------------
# triage


def _add_triage(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("triage", parents=[common], help="dry run: what maild would decide for .eml files")
    cmd.add_argument("--received", type=_timestamp, help="received time (ISO 8601) instead of the headers")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.add_argument("files", nargs="+", type=Path, metavar="FILE")
    cmd.set_defaults(handler=_triage)


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 timestamp") from exc
    return parsed


def _localize(moment: datetime, settings: Settings) -> datetime:
    """A timestamp without offset means help desk local time."""
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.service_hours.timezone)


def _triage(args: argparse.Namespace, settings: Settings) -> int:
    triager = Triager.from_settings(settings)
    now = datetime.now(UTC)
    received = _localize(args.received, settings) if args.received else None
    rows: list[dict[str, object]] = []
    status = 0
    for path in args.files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"maild: cannot read {path}: {exc.strerror}", file=sys.stderr)
            status = EXIT_FAULT
            continue
        row = disposition_row(str(path), triager.triage(raw, now=now, received_at=received))
        if args.json:
            print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    if not args.json:
        print_table(rows, ("file", "decision", "category", "priority", "take_in_at", "in_hours", "from"))
    return status


def disposition_row(name: str, d: Disposition) -> dict[str, object]:
    """The JSON shape of one triage result (a contract: keys only ever added)."""
    sender = d.message.from_addresses[0].addr if d.message.from_addresses else None
    return {
        "file": name,
        "message_id": d.message.message_id,
        "from": sender,
        "subject": d.message.subject,
        "category": d.category.value,
        "decision": d.decision.value,
        "privileged": d.privileged,
        "priority": d.priority,
        "administration": d.administration,
        "language": d.language,
        "received_at": d.received_at.isoformat(),
        "take_in_at": d.take_in.take_in_at.isoformat() if d.take_in else None,
        "in_hours": d.take_in.in_hours if d.take_in else None,
        "reasons": list(d.reasons),
    }


def print_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> None:
    """A plain aligned table: readable in a terminal, no dependency."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 48 else text[:47] + "…"


# --------------------------------------------------------------------------
# takein


def _add_takein(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("takein", parents=[common], help="when requests received at TIMESTAMPs are taken in")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.add_argument("timestamps", nargs="+", metavar="TIMESTAMP")
    cmd.set_defaults(handler=_takein)


def _takein(args: argparse.Namespace, settings: Settings) -> int:
    calendar = ServiceCalendar(settings.service_hours)
    rows: list[dict[str, object]] = []
    status = 0
    for given in args.timestamps:
        try:
            received = _localize(_timestamp(given), settings)
        except argparse.ArgumentTypeError as exc:
            print(f"maild: {exc}", file=sys.stderr)
            status = EXIT_CONFIG
            continue
        take_in = calendar.take_in(received)
        row: dict[str, object] = {"received": given, "take_in_at": take_in.take_in_at.isoformat(),
                                  "in_hours": take_in.in_hours}
        if args.json:
            print(json.dumps(row), flush=True)
        rows.append(row)
    if not args.json:
        print_table(rows, ("received", "take_in_at", "in_hours"))
    return status


# --------------------------------------------------------------------------
# render


def _add_render(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("render", parents=[common], help="print the reply maild would send to FILE")
    cmd.add_argument("--received", type=_timestamp, help="received time (ISO 8601) instead of the headers")
    cmd.add_argument("--notice", action="store_true",
                     help="for a refused request, print the notice to the referente instead")
    cmd.add_argument("file", type=Path, metavar="FILE")
    cmd.set_defaults(handler=_render)


def _render(args: argparse.Namespace, settings: Settings) -> int:
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        print(f"maild: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAULT
    now = datetime.now(UTC)
    received = _localize(args.received, settings) if args.received else None
    disposition = Triager.from_settings(settings).triage(raw, now=now, received_at=received)
    if disposition.decision is Decision.IGNORED:
        print(f"maild: {args.file} is ignored; maild sends no reply:", file=sys.stderr)
        for reason in disposition.reasons:
            print(f"  {reason}", file=sys.stderr)
        return 0
    reply = dry_run_reply(Responder(settings.templates.path, settings.helpdesk), settings, disposition,
                          raw, now, notice=args.notice)
    if reply is None:
        print(f"maild: {args.file} was refused but no Administration (so no referente) matched", file=sys.stderr)
        return 0
    sys.stdout.buffer.write(reply.data)
    sys.stdout.flush()
    return 0


def dry_run_reply(responder: Responder, settings: Settings, d: Disposition, raw: bytes, now: datetime,
                  *, notice: bool = False) -> OutgoingMail | None:
    """The reply for a dry run: a placeholder ticket number, a deterministic Message-ID."""
    year = (d.take_in.take_in_at if d.take_in else d.received_at).year
    ref = f"{settings.helpdesk.ticket_prefix}-{year}-000000"
    token = "dryrun." + hashlib.sha256(raw).hexdigest()[:24]
    message_id = make_message_id(settings.helpdesk.address, token)
    if d.decision is Decision.ACCEPTED:
        return responder.acknowledgment(d, ref, message_id, now)
    if not notice:
        senders = tuple(sorted({s for a in settings.administrations for s in a.authorized_senders}))
        return responder.refusal(d, ref, message_id, now, senders)
    admin = next((a for a in settings.administrations if a.name == d.administration), None)
    if admin is None:
        return None
    return responder.referente_notice(d, ref, message_id, now, admin.referente)


# --------------------------------------------------------------------------
# run, db upgrade, quarantine


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    cmd.add_argument("--once", action="store_true", help="drain the mailbox and the outbox, then exit")
    cmd.add_argument("--seed-examples", action="store_true",
                     help="first deliver examples/*.eml into a Maildir mailbox (used by `make run`)")
    cmd.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from maild.app import build_daemon, seed_maildir  # noqa: PLC0415 - see the module docstring

    if args.seed_examples:
        if settings.mailbox.kind != "maildir":
            raise ConfigError("mailbox.kind", "--seed-examples needs a maildir mailbox")
        count = seed_maildir(settings.mailbox.path, list(EXAMPLES.glob("*.eml")))
        print(f"maild: delivered {count} example messages into {settings.mailbox.path}/new", file=sys.stderr)
    daemon = build_daemon(settings)
    # What is built so far (modules, compiled rules, templates) lives as long as the process: moved
    # out of the cyclic collector's reach, it is not traversed by every full collection, nor at exit
    # (about 0.15 s of CPU), and a forked child does not touch, and so copy, its pages doing so.
    gc.freeze()

    def stop(signum: int, _frame: object) -> None:
        print(f"maild: {signal.Signals(signum).name} received, finishing the message in hand", file=sys.stderr)
        daemon.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return daemon.run(once=args.once)


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser],
            common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("db", parents=[common], help="database maintenance")
    cmd.add_argument("action", choices=("upgrade",), help="upgrade: apply the migrations")
    cmd.set_defaults(handler=_db)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from maild.app import open_store  # noqa: PLC0415 - see the module docstring

    store = open_store(settings)
    print(f"database {_redact(settings.database.url)} at revision {store.revision()}")
    store.close()
    return 0


def _add_quarantine(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("quarantine", parents=[common], help="list or retry quarantined messages")
    cmd.add_argument("action", choices=("list", "retry"))
    cmd.add_argument("id", nargs="?", type=int, help="the entry to retry")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.set_defaults(handler=_quarantine)


def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from maild.app import open_store  # noqa: PLC0415 - see the module docstring

    store = open_store(settings)
    try:
        if args.action == "retry":
            if args.id is None:
                print("maild: quarantine retry needs an ID (see `maild quarantine list`)", file=sys.stderr)
                return EXIT_CONFIG
            if not store.request_retry(args.id, datetime.now(UTC), by="cli"):
                print(f"maild: quarantine entry {args.id} does not exist or is not quarantined", file=sys.stderr)
                return EXIT_FAULT
            print(f"quarantine entry {args.id} will be retried by the daemon")
            return 0
        rows: list[dict[str, object]] = [{"id": e.id, "source_id": e.source_id, "size": e.size, "state": e.state.value,
                 "at": e.at.isoformat(), "error": e.error} for e in store.quarantine_list()]
        if args.json:
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            print_table(rows, ("id", "state", "at", "size", "source_id", "error"))
        return 0
    finally:
        store.close()


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]
_REGISTRY: tuple[Register, ...] = (
    _add_check_config, _add_triage, _add_takein, _add_render, _add_run, _add_db, _add_quarantine,
    *OPERATOR_COMMANDS,
)


if __name__ == "__main__":
    sys.exit(main())
