"""The other channels on the command line: ``maild web``, ``maild pin hash`` and ``maild ticket open``.

The web room (Flask, waitress) is imported by the handlers that use it, never
while the parser is built (see ``maild.cli.main``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from maild.authorizer import answer_address
from maild.cli.output import fail, operator_login
from maild.errors import ConfigError
from maild.hours import ServiceCalendar
from maild.pins import hash_pin
from maild.records import Category, Channel, ChannelRequest, Decision, PinRole
from maild.responder import format_when
from maild.settings import Settings

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]

PIN_LIMIT = 16


def read_pin(prompt: str, stream: TextIO | None = None, *, confirm: bool = False) -> str:
    """A PIN from the terminal without echo, or one line of standard input when that is not a terminal."""
    stream = stream if stream is not None else sys.stdin
    if stream.isatty():
        pin = getpass.getpass(prompt)
        if confirm and getpass.getpass("Again: ") != pin:
            raise ConfigError("PIN", "the two PINs differ")
    else:
        pin = stream.readline().rstrip("\r\n")
    pin = pin.strip()
    if not pin or len(pin) > PIN_LIMIT or any(c.isspace() for c in pin):
        raise ConfigError("PIN", f"must be 1 to {PIN_LIMIT} characters without blanks")
    return pin


# --------------------------------------------------------------------------
# maild pin hash


def _add_pin(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    pin = commands.add_parser("pin", help="PIN hashes for the configuration")
    actions = pin.add_subparsers(dest="action", required=True, metavar="ACTION")
    hashed = actions.add_parser("hash", parents=[common],
                                help="read a PIN (no echo; standard input when not a terminal) and print its hash")
    hashed.set_defaults(handler=_pin_hash)


def _pin_hash(_args: argparse.Namespace, _settings: Settings) -> int:
    print(hash_pin(read_pin("PIN: ", confirm=True)))
    return 0


# --------------------------------------------------------------------------
# maild web


def _add_web(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    web = commands.add_parser("web", parents=[common], help="serve the web request form ([web] listen)")
    web.set_defaults(handler=_web)


def _web(_args: argparse.Namespace, settings: Settings) -> int:
    from maild.web.serve import serve  # noqa: PLC0415 - see the module docstring

    print(f"maild web form: http://{settings.web.listen}/", flush=True)
    serve(settings)
    return 0


# --------------------------------------------------------------------------
# maild ticket open (registered under ``ticket`` by maild.cli.operators)


def add_open(actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    cmd = actions.add_parser("open", parents=[common], help="record a request received by phone or fax")
    cmd.add_argument("--channel", required=True, choices=(Channel.PHONE.value, Channel.FAX.value))
    cmd.add_argument("--administration", required=True, metavar="NAME")
    cmd.add_argument("--requester", required=True, metavar="ADDRESS", help="where the answer goes")
    cmd.add_argument("--name", default="", metavar="TEXT")
    cmd.add_argument("--pin-role", choices=[r.value for r in PinRole],
                     help="fax only: the role the signed fax proves (phone: the caller's PIN is asked for)")
    cmd.add_argument("--category", choices=[c.value for c in Category],
                     help="the type the requester asked for (default: read from the text)")
    cmd.add_argument("--subject", required=True, metavar="TEXT")
    text = cmd.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", metavar="TEXT")
    text.add_argument("--file", type=Path, metavar="PATH")
    cmd.set_defaults(handler=_open)


def _open(args: argparse.Namespace, settings: Settings) -> int:
    channel = Channel(args.channel)
    now = datetime.now(UTC)
    return open_ticket(args, settings, channel, now, lambda: read_pin("Caller's PIN: "))


def open_ticket(args: argparse.Namespace, settings: Settings, channel: Channel, now: datetime,
                ask_pin: Callable[[], str]) -> int:
    """``maild ticket open``: the checks an operator cannot skip, then the same intake as the web form."""
    from maild.web.desk import new_request_id  # noqa: PLC0415 - see the module docstring
    from maild.web.serve import open_desk  # noqa: PLC0415

    adm = next((a for a in settings.administrations if a.name == args.administration), None)
    if adm is None:
        raise ConfigError("--administration", f"no Administration named {args.administration!r}")
    operator = operator_login()
    tz = settings.service_hours.timezone
    if channel is Channel.PHONE:
        calendar = ServiceCalendar(settings.service_hours)
        if args.pin_role:
            raise ConfigError("--pin-role", "is for fax only: by phone the caller's PIN decides the role")
        if not calendar.is_open(now):
            return fail(f"the phone channel is closed outside service hours (next opening "
                        f"{format_when(calendar.next_opening(now), 'en', tz)}); e-mail, fax and the web "
                        f"form stay open")
    elif not args.pin_role:
        raise ConfigError("--pin-role", "is required for fax: state the role the signed fax proves")
    text = args.text if args.text is not None else _read_text(args.file)
    with open_desk(settings) as desk:
        if channel is Channel.PHONE:
            checked = desk.check_pin(adm, ask_pin(), operator, channel, now)
            if checked.locked is not None:
                return fail(f"PINs for {adm.name} are locked out until "
                            f"{checked.locked.until.astimezone(tz):%H:%M} (too many wrong PINs)")
            if checked.role is None:
                return fail("wrong PIN: refused and recorded (the referente is told)")
            role = checked.role
            reason = f"auth: the PIN the caller gave by phone is the {role.value} PIN of {adm.name} " \
                     f"(typed by operator {operator})"
        else:
            role = PinRole(args.pin_role)
            reason = f"auth: role {role.value} of {adm.name} stated by operator {operator} after checking " \
                     f"the signed fax"
        answer = answer_address(adm, role, args.requester)
        if answer is None:
            return fail(f"with the users' role the answer can only go to an address in {adm.name}'s domains "
                        f"({', '.join(adm.domains) or 'none configured'})")
        done = desk.submit(ChannelRequest(
            request_id=new_request_id(), channel=channel, administration=adm.name, requester=answer,
            name=args.name, subject=args.subject, text=text,
            chosen=Category(args.category) if args.category else None, role=role, role_reason=reason,
            origin=f"operator {operator}", received_at=now), now)
    verdict = "accepted" if done.decision is Decision.ACCEPTED else "REFUSED (the referente is told)"
    print(f"{done.reference} opened ({channel.value}, {done.category}, {verdict}); take-in "
          f"{format_when(done.take_in_at, 'en', tz)}; the answer goes to {answer} (the daemon sends it)")
    return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--file", f"cannot read {path}: {exc}") from exc


CHANNEL_COMMANDS: tuple[Register, ...] = (_add_pin, _add_web)
