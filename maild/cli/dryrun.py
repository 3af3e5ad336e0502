"""Commands that show what maild would do, touching nothing: check-config, triage, takein, render.

Their JSON output is a contract other tools call: one object per line.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from maild.cli.output import EXIT_CONFIG, EXIT_FAULT, fail, print_table, read_file, redact
from maild.hours import ServiceCalendar
from maild.pipeline import Triager
from maild.records import Decision, Disposition, OutgoingMail, PecSummary
from maild.responder import Responder, make_message_id
from maild.settings import DEFAULT_RULES, DEFAULT_TEMPLATES, DEFAULT_WORD_MODEL, Settings

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
          f"mailbox {settings.mailbox.kind}, replies {settings.smtp.kind}, database {redact(settings.database.url)})")
    print(f"  rules      {_in_use(settings.triage.rules, DEFAULT_RULES)}")
    model = settings.triage.word_model
    print(f"  word model {'none' if model is None else _in_use(model, DEFAULT_WORD_MODEL)}")
    print(f"  templates  {_in_use(settings.templates.path, DEFAULT_TEMPLATES)}")
    return 0


def _in_use(path: Path, shipped: Path) -> str:
    """Where a data file comes from: operators copy the shipped one to change it."""
    return f"{path} (shipped with maild)" if path == shipped else str(path.resolve())


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
            status = fail(f"cannot read {path}: {exc.strerror}")
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
        "review": bool(d.review),
        "review_reason": d.review or None,
        "pec": pec_row(d.pec),
    }


def pec_row(pec: PecSummary | None) -> dict[str, object] | None:
    """The ``pec`` key of a triage result: null for ordinary mail."""
    if pec is None:
        return None
    return {"kind": pec.kind, "receipt_type": pec.receipt_type, "signature": pec.signature,
            "certified_sender": pec.certified_sender, "provider": pec.provider, "refers_to": pec.refers_to}


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
            status = fail(str(exc), EXIT_CONFIG)
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
    cmd.add_argument("--language", choices=("it", "en"), default="it",
                     help="language of the notice to the referente (default it)")
    cmd.add_argument("--text", action="store_true",
                     help="print what the person reads: To, Subject and the decoded text, not the raw message")
    cmd.add_argument("file", type=Path, metavar="FILE")
    cmd.set_defaults(handler=_render)


def _render(args: argparse.Namespace, settings: Settings) -> int:
    raw = read_file(args.file)
    if raw is None:
        return EXIT_FAULT
    now = datetime.now(UTC)
    received = _localize(args.received, settings) if args.received else None
    disposition = Triager.from_settings(settings).triage(raw, now=now, received_at=received)
    if disposition.decision is Decision.IGNORED:
        print(f"maild: {args.file} is ignored; maild sends no reply:", file=sys.stderr)
        for reason in disposition.reasons:
            print(f"  {reason}", file=sys.stderr)
        return 0
    responder = Responder(settings.templates.path, settings.helpdesk, timezone=settings.service_hours.timezone)
    reply = dry_run_reply(responder, settings, disposition, raw, now, notice=args.notice, language=args.language)
    if reply is None:
        print(f"maild: {args.file} was refused but no Administration (so no referente) matched", file=sys.stderr)
        return 0
    if args.text:
        sys.stdout.write(_readable(reply.data))
    else:
        sys.stdout.buffer.write(reply.data)
    sys.stdout.flush()
    return 0


def _readable(data: bytes) -> str:
    """A rendered reply as its reader sees it: the headers that matter and the decoded text."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # the default policy's factory
    headers = "".join(f"{name}: {message[name]}\n" for name in ("To", "Subject") if message[name])
    return f"{headers}\n{message.get_content()}"


def dry_run_reply(responder: Responder, settings: Settings, d: Disposition, raw: bytes, now: datetime,
                  *, notice: bool = False, language: str = "it") -> OutgoingMail | None:
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
    return responder.referente_notice(d, ref, message_id, now, admin.referente, language=language)


DRY_RUN_COMMANDS = (_add_check_config, _add_triage, _add_takein, _add_render)
