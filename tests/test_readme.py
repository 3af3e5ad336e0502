"""The README runs: every command of its ``console`` blocks, as written, after a `make run` of its own.

`make run` is mirrored in a fresh directory that links to everything in the repository but
``var/``: the configuration is ``config/maild.toml`` as shipped, the database and the Maildirs are
new. The daemon runs there as `make run` runs it (seeded with the examples) until the README
says "After Ctrl-C"; then it is stopped with SIGINT. Each command runs in bash from that
directory, in the README's order, and must exit 0 (a command meant to fail shows its status with
``; echo "exit $?"``). The output shown must be the output (standard output and error, as a
terminal shows them), except for what follows the clock (``MASKS``); a line ``...`` stands for
lines left out.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from maild.cli.main import build_parser
from tests.factories import REPO
from tests.servers import wait_until

README = REPO / "README.md"
STOP = "After Ctrl-C"
"""A paragraph starting with this stops the daemon before the next block runs, as Ctrl-C would."""
ELLIPSIS = "..."

MASKS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), placeholder) for pattern, placeholder in (
    # Where the repository is checked out.
    (r"/\S+/maild/defaults", "<repo>/maild/defaults"),
    # Times and dates: ISO 8601, the tables' "YYYY-MM-DD HH:MM", the digest's "Mon 07/12", the zone's name.
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", "<time>"),
    (r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?", "<time>"),
    (r"\d{4}-\d\d-\d\d", "<date>"),
    (r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d/\d\d\b", "<day>"),
    (r"\((Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\)", "(<weekday>)"),
    (r"\bCES?T\b", "<zone>"),
    # Ages, the years in ticket numbers, the daemon's host and pid, the Maildir names of delivered files.
    (r"\b\d+[dhm]( \d+[hm])?\b", "<age>"),
    (r'"age_seconds": \d+', '"age_seconds": <age>'),
    (r"\bHD-\d{4}-(\d{6})", r"HD-<year>-\1"),
    (r"\b(?=[\w.-]*[A-Za-z])[\w.-]+:\d+\b", "<host:pid>"),
    (r"\b\d+\.\d+\.[0-9a-f]{32}_\d+\.maild-seed\b", "<seeded file>"),
    # Whether the examples wait for the next opening or were taken in at once: the hour of `make run`.
    (r"next take-in\s+(none pending|<time> \(\d+ ticket\(s\) waiting\))", "next take-in <next take-in>"),
    (r"\btaken in\s+(-|<time>)$", "taken in <time or ->"),
    (r'"taken_in_at": (null|"<time>")', '"taken_in_at": <time or null>'),
    (r"\b\d+ (taken in|waiting for take-in)\b", r"<n> \1"),
    (r"\((in|out of) hours\)", "(<in or out of> hours)"),
    (r"\b(waiting|due|taken in)\b", "<take-in state>"),
    # A PIN's hash is salted afresh each time.
    (r"(scrypt\$n=\d+,r=\d+,p=\d+)\$\S+", r"\1$<salt>$<hash>"),
))


@dataclass(frozen=True, slots=True)
class Command:
    """One ``$`` line of a ``console`` block (with its continuation lines) and the output shown under it."""

    line: int
    text: str
    shown: tuple[str, ...]
    after_stop: bool


def console_commands(text: str) -> list[Command]:
    """Every command of the ``console`` blocks of ``text``, in order."""
    commands: list[Command] = []
    lines = text.splitlines()
    stopped, index = False, 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith(STOP):
            stopped = True
        if line.strip() != "```console":
            continue
        block_start = index
        while lines[index].strip() != "```":
            index += 1
        commands.extend(_commands(lines[block_start:index], block_start + 1, after_stop=stopped))
        index += 1
    return commands


def _commands(block: Sequence[str], first_line: int, *, after_stop: bool) -> Iterator[Command]:
    assert block and block[0].startswith("$ "), f"README.md:{first_line}: a console block starts with a command"
    starts = [n for n, line in enumerate(block) if line.startswith("$ ")]
    for start, end in zip(starts, [*starts[1:], len(block)], strict=True):
        text, n = block[start].removeprefix("$ "), start
        while text.endswith("\\"):
            n += 1
            text = f"{text[:-1]}\n{block[n]}"
        yield Command(first_line + start, text, tuple(block[n + 1:end]), after_stop)


def masked(line: str) -> str:
    """``line`` with what follows the clock replaced, and its runs of spaces made one (tables realign)."""
    for pattern, placeholder in MASKS:
        line = pattern.sub(placeholder, line)
    return re.sub(r"\s+", " ", line).strip()


def shows(shown: Sequence[str], output: Sequence[str]) -> bool:
    """Whether ``output`` is what ``shown`` shows: line by line, masked, ``...`` matching any lines."""
    want, got = [masked(line) for line in shown], [masked(line) for line in output]
    parts = list(_split(want))
    if len(parts) == 1:
        return want == got
    head, *middle, tail = parts
    position, end = len(head), len(got) - len(tail)
    if position > end or got[:position] != head or got[end:] != tail:
        return False
    for part in middle:
        found = next((at for at in range(position, end - len(part) + 1) if got[at:at + len(part)] == part), None)
        if found is None:
            return False
        position = found + len(part)
    return True


def _split(lines: Sequence[str]) -> Iterator[list[str]]:
    part: list[str] = []
    for line in lines:
        if line == ELLIPSIS:
            yield part
            part = []
        else:
            part.append(line)
    yield part


# ---------------------------------------------------------------- the checker itself


def test_the_checker_masks_the_clock_and_nothing_else() -> None:
    shown = ["HD-2026-000003  1  lifecycle  rejected  2026-12-07 02:39  2h 5m   waiting"]
    assert shows(shown, ["HD-2027-000003  1  lifecycle  rejected  2027-05-17 14:30  21h 12m  waiting"])
    assert not shows(shown, ["HD-2027-000003  1  lifecycle  accepted  2027-05-17 14:30  21h 12m  waiting"])
    assert not shows(shown, ["HD-2027-000004  1  lifecycle  rejected  2027-05-17 14:30  21h 12m  waiting"])
    assert not shows(shown, [*shown, "one line more"])
    assert not shows(shown, [])


def test_the_checker_lets_an_ellipsis_stand_for_lines_left_out() -> None:
    output = ["first", "second", "third", "fourth"]
    assert shows(["first", "...", "fourth"], output)
    assert shows(["first", "second", "...", "third", "fourth"], output)
    assert shows(["...", "third", "..."], output)
    assert shows(["first", "..."], output)
    assert not shows(["first", "...", "second", "first"], output)
    assert not shows(["second", "..."], output)
    assert not shows(["...", "third"], output)


def test_the_reader_finds_commands_their_output_and_the_stop() -> None:
    text = "\n".join([
        "```console", "$ .venv/bin/maild queue \\", "    --json", '{"ticket": 1}', "$ true", "```",
        "After Ctrl-C:", "```console", "$ echo hi", "hi", "```", "```sh", "$ not run", "```"])
    assert console_commands(text) == [
        Command(2, ".venv/bin/maild queue \n    --json", ('{"ticket": 1}',), after_stop=False),
        Command(5, "true", (), after_stop=False),
        Command(9, "echo hi", ("hi",), after_stop=True),
    ]


# ---------------------------------------------------------------- the README


def subcommands() -> list[str]:
    """Every command of ``maild --help``, with its action for the commands that have actions."""
    found: list[str] = []
    for name, parser in _choices(build_parser()).items():
        actions = _choices(parser)
        found += [f"maild {name} {action}" for action in actions] if actions else [f"maild {name}"]
    return found


def _choices(parser: object) -> dict[str, object]:
    for action in getattr(parser, "_actions", []):
        if action.choices and isinstance(action.choices, dict):
            return dict(action.choices)
    return {}


def test_every_command_is_in_the_command_table() -> None:
    table = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `maild ")]
    commands = subcommands()
    assert len(commands) > 15
    missing = [command for command in commands
               if not any(row.startswith((f"| `{command}`", f"| `{command} ")) for row in table)]
    assert missing == []


@dataclass(frozen=True, slots=True)
class Site:
    """A `make run` of the test's own: the repository but var/, and the daemon it started."""

    path: Path
    daemon: subprocess.Popen[bytes]
    log: Path

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """``command`` as pasted in a terminal at the repository: bash, standard output and error together."""
        return subprocess.run(["bash", "-c", command], cwd=self.path, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8",
                              timeout=120, check=False)

    def interrupt(self) -> int:
        """Ctrl-C: the daemon's exit status."""
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGINT)
        return self.daemon.wait(timeout=60)

    def end(self) -> None:
        if self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(timeout=60)


def make_run(where: Path) -> Site:
    """Start what `make run` starts, in ``where`` (the web form aside: no command here uses it)."""
    assert (REPO / ".venv" / "bin" / "maild").exists(), "make .venv/.installed first"
    where.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in {"var", ".git"}:
            (where / entry.name).symlink_to(entry)
    upgrade = subprocess.run([".venv/bin/maild", "db", "upgrade", "--config", "config/maild.toml"], cwd=where,
                             capture_output=True, text=True, timeout=120, check=False)
    assert upgrade.returncode == 0, upgrade.stderr
    log = where.parent / "make-run.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([".venv/bin/maild", "run", "--config", "config/maild.toml", "--seed-examples"],
                                  cwd=where, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    site = Site(where, daemon, log)
    if not wait_until(lambda: _settled(site), 90, interval=0.5):
        site.end()
        pytest.fail(f"make run did not settle:\n{log.read_text()}")
    return site


def _settled(site: Site) -> bool:
    """Whether the examples are recorded, moved, answered and marked sent, and the first read is done."""
    examples = len(list((REPO / "examples").glob("*.eml")))
    mail = site.path / "var" / "mail"
    # Every example but the auto-reply is answered; the spoofed one also gets a referente notice.
    if len(_files(mail / "inbox" / ".Processed" / "cur")) != examples or len(_files(mail / "sent" / "new")) != examples:
        return False
    done = site.run(".venv/bin/maild status --json --config config/maild.toml")
    if done.returncode != 0:
        return False
    status = json.loads(done.stdout)
    return ([d["state"] for d in status["daemons"]] == ["running"] and status["mailbox"]["waiting"] == 0
            and status["outbox"]["pending"] == 0)


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.exists() else []


def test_every_console_command_of_the_readme_runs_as_shown(tmp_path: Path) -> None:
    commands = console_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 20 and any(c.after_stop for c in commands)
    site = make_run(tmp_path / "repo")
    running = True
    try:
        for command in commands:
            if command.after_stop and running:
                assert site.daemon.poll() is None, f"make run ended before Ctrl-C:\n{site.log.read_text()}"
                assert site.interrupt() == 0, site.log.read_text()
                running = False
            done = site.run(command.text)
            output = done.stdout.splitlines()
            where = f"README.md:{command.line}: $ {command.text}"
            assert done.returncode == 0, f"{where}\nexit {done.returncode}\n{done.stdout}"
            assert shows(command.shown, output), (
                f"{where}\n--- shown (masked)\n" + "\n".join(masked(line) for line in command.shown)
                + "\n--- output (masked)\n" + "\n".join(masked(line) for line in output))
    finally:
        site.end()
