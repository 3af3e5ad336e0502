"""The operators' commands: queue, ticket show/resolve/reopen and stats, against the real servers."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from maild.ops.views import age, group_reasons, stats_rows, totals
from maild.records import MessageCount, MessageKind, ScreenKind
from tests.daemon_kit import FakeClock, daemon, db_rows, run_cli, sqlite_url
from tests.factories import REFERENTE
from tests.mailgen import corpus_mix
from tests.ops_kit import SPOOFED, TRUSTED_PASS, cli_json, ops_config, request
from tests.servers import CapturedMail, ImapAccount, SmtpCapture, seed_imap

DATABASES = ("sqlite", "postgresql")


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


def parsed(mail: CapturedMail) -> EmailMessage:
    message = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


# --------------------------------------------------------------------------- pure helpers


def test_age_reads_at_a_glance() -> None:
    assert age(timedelta(seconds=59)) == "0m"
    assert age(timedelta(minutes=125)) == "2h 05m"
    assert age(timedelta(days=3, hours=4, minutes=59)) == "3d 04h"
    assert age(timedelta(seconds=-30)) == "0m"


def test_reasons_are_grouped_by_the_question_they_answer() -> None:
    groups = group_reasons([
        "screen: no sign of automatic mail",
        "password_reset: reset.password 'reset della password' in body line 1 (weight 3)",
        "language it: stop-words it=5",
        "administration: Ateneo (the only one configured)",
        "auth: From x@ateneo.example.it is an authorized sender of Ateneo",
        "auth: Authentication-Results #1 (mx.servizi.example.it) reports dmarc=fail",
        "received 2027-01-16 14:20 CET (Saturday)",
        "2027-01-16: after closing time (08:00-14:00)",
        "2027-01-17: closed on Sundays",
        "taken in at 2027-01-18 08:00 CET: the next opening",
    ])
    assert groups.screen == ("screen: no sign of automatic mail",)
    assert [r.split(":")[0] for r in groups.category] == ["password_reset", "language it"]
    assert len(groups.administration) == 1
    assert len(groups.authorization) == 2
    assert len(groups.take_in) == 4 and groups.take_in[-1].startswith("taken in at")


def test_stats_sum_the_kinds_and_count_new_tickets() -> None:
    counts = [MessageCount("anagrafica", "accepted", "Ateneo", MessageKind.NEW, 3),
              MessageCount("anagrafica", "accepted", "Ateneo", MessageKind.FOLLOWUP, 2),
              MessageCount("other", "ignored", None, MessageKind.IGNORED, 4),
              MessageCount("lifecycle", "rejected", "Ateneo", MessageKind.NEW, 1)]
    rows = stats_rows(counts)
    assert [(r.category, r.decision, r.messages, r.tickets) for r in rows] == [
        ("anagrafica", "accepted", 5, 3), ("lifecycle", "rejected", 1, 1), ("other", "ignored", 4, 0)]
    assert totals(rows, "administration") == (("Ateneo", 6), ("-", 4))
    assert totals(rows, "decision") == (("accepted", 5), ("ignored", 4), ("rejected", 1))


# --------------------------------------------------------------------------- queue


def test_queue_after_an_out_of_hours_backlog_is_in_take_in_order(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, db_url: str) -> None:
    saturday = [  # received Saturday 16 January 2027 after closing time, in this order
        request("mario.rossi@ateneo.example.it", "Domanda", "Che orari ha il servizio di assistenza?",
                "Sat, 16 Jan 2027 14:05:00 +0100"),
        request("anna.verdi@ateneo.example.it", "Telefono", "Vi chiedo di aggiornare il mio numero di telefono "
                "in rubrica: 010 555 1234.", "Sat, 16 Jan 2027 14:10:00 +0100"),
        request(REFERENTE, "Reset", "Vi chiedo il reset della password della casella di Carla Neri, "
                "l'ha dimenticata.", "Sat, 16 Jan 2027 14:20:00 +0100", auth=TRUSTED_PASS),
        request(REFERENTE, "Nuova casella", "Vi chiedo di creare una nuova casella per il neoassunto "
                "Paolo Gialli.", "Sat, 16 Jan 2027 14:30:00 +0100", auth=TRUSTED_PASS),
        request("luca.bianchi@ateneo.example.it", "Rubrica", "Per favore aggiornate il mio numero di telefono "
                "in rubrica: 010 555 9876.", "Sat, 16 Jan 2027 14:40:00 +0100"),
        request("carla.neri@ateneo.example.it", "Rubrica: numero di telefono sbagliato", "Buongiorno, grazie.",
                "Sat, 16 Jan 2027 14:45:00 +0100"),
    ]
    seed_imap(imap_account, [raw for _, raw in saturday])
    clock = FakeClock(datetime(2027, 1, 16, 15, 0, tzinfo=UTC))
    config = ops_config(tmp_path, imap_account, smtp_server, db_url)
    _, d = daemon(config, clock)
    assert d.run(once=True) == 0

    rows = cli_json(config, "queue")
    assert [r["category"] for r in rows] == ["lifecycle", "password_reset", "anagrafica", "anagrafica", "anagrafica",
                                             "other"]
    assert [r["review_reason"] for r in rows][4] == "category anagrafica decided from the subject alone"
    assert [r["review"] for r in rows] == [False, False, False, False, True, False]
    assert [r["requester"] for r in rows][2:4] == ["anna.verdi@ateneo.example.it", "luca.bianchi@ateneo.example.it"]
    monday = "2027-01-18T07:00:00+00:00"  # 08:00 in Rome: the next opening
    assert {r["take_in_at"] for r in rows} == {monday}
    assert {r["state"] for r in rows} == {"waiting"}
    assert all(r["ticket"].startswith("HD-2027-") and r["administration"] == "Ateneo" for r in rows)

    table = run_cli(config, "queue")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["TICKET", "PRIORITY", "CATEGORY", "DECISION", "REVIEW"]
    assert lines[5].split()[4] == "yes"
    assert [line.split()[0] for line in lines[1:]] == [r["ticket"] for r in rows]
    assert "2027-01-16 14:10" in lines[3] and "2027-01-18 08:00" in lines[3]  # received, take-in: local time

    clock.current = datetime(2027, 1, 18, 7, 0, tzinfo=UTC)
    assert d.take_in_due() == 6
    after = cli_json(config, "queue")
    assert [r["ticket"] for r in after] == [r["ticket"] for r in rows]
    assert {r["state"] for r in after} == {"taken in"}
    assert {r["taken_in_at"] for r in after} == {monday}


# --------------------------------------------------------------------------- ticket show


def test_ticket_show_explains_a_refused_spoofing_attempt(tmp_path: Path, imap_account: ImapAccount,
                                                        smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    spoof_id, spoof = request(REFERENTE, "Reset urgente", "Vi chiedo il reset della password della casella del "
                              "rettore, grazie.", "Tue, 12 Jan 2027 10:00:00 +0100", auth=SPOOFED)
    seed_imap(imap_account, [spoof])
    config = ops_config(tmp_path, imap_account, smtp_server, url)
    _, d = daemon(config, FakeClock(datetime(2027, 1, 12, 9, 5, tzinfo=UTC)))
    assert d.run(once=True) == 0
    (row,) = cli_json(config, "queue")
    ref = row["ticket"]
    assert (row["category"], row["decision"]) == ("password_reset", "rejected")

    shown = run_cli(config, "ticket", "show", ref)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith(f"{ref}  taken in  (password_reset, rejected, priority 2)")
    assert f"Message-ID: {spoof_id}" in text
    assert "Authentication-Results: mx.servizi.example.it; dkim=none; spf=fail" in text
    assert "| Vi chiedo il reset della password della casella del rettore, grazie." in text  # the text classified
    why_category = text[text.index("Why this category:"):text.index("Administration:")]
    assert "password_reset" in why_category
    why_refused = text[text.index("Why authorized or refused:"):text.index("Why this take-in time:")]
    assert f"auth: From {REFERENTE} is an authorized sender of Ateneo" in why_refused
    assert "reports dmarc=fail" in why_refused
    assert "within service hours 08:00-17:00: taken in at once" in text
    assert "rejected" in text[text.index("Events ("):]
    replies = text[text.index("Replies (2)"):]
    assert "refusal" in replies and "referente_notice" in replies and replies.count(" sent 2027-01-12") == 2

    (story,) = cli_json(config, "ticket", "show", ref)
    assert story["ticket"] == ref and story["decision"] == "rejected"
    (message,) = story["messages"]
    assert message["message_id"] == spoof_id
    assert any("dmarc=fail" in r for r in message["reasons"]["authorization"])
    assert message["reasons"]["take_in"]
    assert {(r["kind"], r["state"]) for r in story["replies"]} == {("refusal", "sent"), ("referente_notice", "sent")}
    assert [e["kind"] for e in story["events"]][:3] == ["received", "rejected", "opened"]

    # Resolving a refused request closes it without telling the (possibly forged) sender anything more.
    sent = len(smtp_server.messages)
    done = run_cli(config, "ticket", "resolve", ref)
    assert done.returncode == 0 and "no notice sent" in done.stdout
    assert daemon(config)[1].run(once=True) == 0
    assert len(smtp_server.messages) == sent


def test_ticket_show_of_an_unknown_reference_fails(tmp_path: Path, imap_account: ImapAccount,
                                                  smtp_server: SmtpCapture) -> None:
    config = ops_config(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path))
    done = run_cli(config, "ticket", "show", "HD-2027-999999")
    assert done.returncode == 1 and "no ticket HD-2027-999999" in done.stderr
    assert "`maild queue` lists the references of the open tickets" in done.stderr  # where to find a reference
    assert done.stdout == ""


# --------------------------------------------------------------------------- resolve and reopen


def test_resolve_sends_exactly_one_threaded_notice(tmp_path: Path, imap_account: ImapAccount,
                                                   smtp_server: SmtpCapture, db_url: str) -> None:
    original_id, original = request("anna.verdi@ateneo.example.it", "Telefono", "Vi chiedo di aggiornare il mio "
                                    "numero di telefono in rubrica: 010 555 1234.", "Tue, 12 Jan 2027 10:00:00 +0100")
    seed_imap(imap_account, [original])
    config = ops_config(tmp_path, imap_account, smtp_server, db_url)
    clock = FakeClock(datetime(2027, 1, 12, 9, 5, tzinfo=UTC))
    assert daemon(config, clock)[1].run(once=True) == 0
    assert len(smtp_server.messages) == 1  # the acknowledgment
    (row,) = cli_json(config, "queue")
    ref = row["ticket"]

    done = run_cli(config, "ticket", "resolve", ref, "--note", "Numero aggiornato in rubrica.")
    assert done.returncode == 0, done.stderr
    assert f"{ref} resolved" in done.stdout
    assert daemon(config, clock)[1].run(once=True) == 0
    assert len(smtp_server.messages) == 2
    notice = parsed(smtp_server.messages[1])
    assert notice["In-Reply-To"] == original_id
    assert original_id in str(notice["References"])
    assert str(notice["To"]) == "anna.verdi@ateneo.example.it"
    assert f"[{ref}]" in str(notice["Subject"]) and str(notice["Subject"]).startswith("Re: Telefono")
    assert str(notice["Auto-Submitted"]) == "auto-generated" and str(notice["Content-Language"]) == "it"
    body = notice.get_content()
    assert "è stata risolta" in body and "Numero aggiornato in rubrica." in body
    assert smtp_server.messages[1].mail_from in ("", "<>")  # the null envelope sender

    again = run_cli(config, "ticket", "resolve", ref)
    assert again.returncode == 1 and "already resolved" in again.stderr
    assert daemon(config, clock)[1].run(once=True) == 0
    assert len(smtp_server.messages) == 2  # still exactly one notice
    assert cli_json(config, "queue") == []
    (closed,) = cli_json(config, "queue", "--all")
    assert closed["state"] == "resolved"

    assert run_cli(config, "ticket", "reopen", ref, "--note", "Il numero è ancora sbagliato").returncode == 0
    assert run_cli(config, "ticket", "reopen", ref).returncode == 1  # not resolved any more
    (story,) = cli_json(config, "ticket", "show", ref)
    kinds = [e["kind"] for e in story["events"]]
    assert kinds.count("resolved") == 1 and kinds.count("reopened") == 1
    resolved = next(e for e in story["events"] if e["kind"] == "resolved")
    assert resolved["reasons"] == ["note: Numero aggiornato in rubrica."]
    assert resolved["data"]["by"].startswith("cli")
    assert story["state"] != "resolved"

    # A second resolution is a second notice, with a Message-ID of its own.
    assert run_cli(config, "ticket", "resolve", ref).returncode == 0
    assert daemon(config, clock)[1].run(once=True) == 0
    assert len(smtp_server.messages) == 3
    second = parsed(smtp_server.messages[2])
    assert second["Message-ID"] != notice["Message-ID"] and second["In-Reply-To"] == original_id


# --------------------------------------------------------------------------- stats


def test_stats_count_by_category_decision_and_administration(tmp_path: Path, imap_account: ImapAccount,
                                                            smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    seed_imap(imap_account, [s.raw for s in corpus_mix(60, tag="stats")])
    config = ops_config(tmp_path, imap_account, smtp_server, url)
    assert daemon(config)[1].run(once=True) == 0
    truth: Counter[tuple[Any, ...]] = Counter()
    for category, decision, administration, count in db_rows(
            url, "SELECT category, decision, administration, COUNT(*) FROM messages "
                 "GROUP BY category, decision, administration"):
        truth[(category, decision, administration)] = count
    rows = cli_json(config, "stats")
    assert {(r["category"], r["decision"], r["administration"]): r["messages"] for r in rows} == dict(truth)
    assert sum(r["messages"] for r in rows) == 60
    assert sum(r["tickets"] for r in rows) == db_rows(url, "SELECT COUNT(*) FROM tickets")[0][0]
    assert all(r["tickets"] == 0 for r in rows if r["decision"] == "ignored")

    table = run_cli(config, "stats")
    assert table.returncode == 0, table.stderr
    decisions = Counter({d: 0 for d in ("accepted", "rejected", "ignored")})
    for (_, decision, _), count in truth.items():
        decisions[decision] += count
    line = next(x for x in table.stdout.splitlines() if x.startswith("by decision:"))
    for decision, count in decisions.items():
        assert f"{decision} {count}" in line
    kinds = next(x for x in table.stdout.splitlines() if x.startswith("ignored by kind:"))
    split = dict(pair.rsplit(" ", 1) for pair in kinds.split(":", 1)[1].strip().split(", "))
    assert sum(int(n) for n in split.values()) == decisions["ignored"] > 0
    assert set(split) <= {k.value for k in ScreenKind}
    assert rows and run_cli(config, "stats", "--since", "2999-01-01", "--json").stdout == ""
