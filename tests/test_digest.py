"""The operators' digest: periods, content, text and HTML with the chart, once per period across restarts."""

from __future__ import annotations

import email
import email.policy
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maild.hours import ServiceCalendar
from maild.ops.digest import (
    Chart,
    DigestContent,
    DigestRenderer,
    NewTickets,
    QuarantineLine,
    RefusedAttempt,
    ReplyLine,
    ReviewLine,
    TicketLine,
    WaitingGroup,
    chart_of,
    chart_svg,
    chart_text,
    digest_period,
    next_digest_at,
)
from maild.records import MessageFact, MessageKind
from maild.settings import DEFAULT_TEMPLATES, Settings
from tests.daemon_kit import FakeClock, daemon, db_rows, run_cli, sqlite_url
from tests.factories import REFERENTE, settings
from tests.ops_kit import OPERATORS, SPOOFED, ops_config, request
from tests.servers import CapturedMail, ImapAccount, SmtpCapture, seed_imap, wait_until

ROME = ZoneInfo("Europe/Rome")
SVG = "{http://www.w3.org/2000/svg}"


def rome(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ROME)


def with_digest() -> Settings:
    return settings(digest={"recipients": OPERATORS})


def fact(received: datetime, category: str, decision: str = "accepted") -> MessageFact:
    return MessageFact(id=1, message_id="<m@x>", from_addr="a@ateneo.example.it", subject="s",
                       kind=MessageKind.IGNORED if decision == "ignored" else MessageKind.NEW, category=category,
                       decision=decision, administration="Ateneo", ticket=None, received_at=received,
                       recorded_at=received, reasons=())


def flat(text: str) -> str:
    """Whitespace collapsed: what a reader sees, whatever the column widths."""
    return " ".join(text.split())


def bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def counts_by_day(svg: str) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for rect in bars(svg):
        totals[rect.get("data-day", "")] += int(rect.get("data-count", "0"))
    return dict(totals)


# --------------------------------------------------------------------------- periods


@pytest.mark.parametrize(("moment", "period"), [
    (rome(2027, 1, 18, 7, 44), None),                 # Monday, before [digest] time
    (rome(2027, 1, 18, 7, 45), "2027-01-18"),
    (rome(2027, 1, 18, 23, 59), "2027-01-18"),        # late (the daemon was down): still today's
    (rome(2027, 1, 16, 9, 0), "2027-01-16"),          # Saturday is an opening day
    (rome(2027, 1, 17, 9, 0), None),                  # Sunday
    (rome(2027, 1, 6, 9, 0), None),                   # Epiphany
    (rome(2027, 8, 16, 9, 0), None),                  # a configured closure day
    (rome(2027, 3, 29, 9, 0), None),                  # Easter Monday, the day after the spring DST change
    (rome(2027, 3, 30, 7, 50), "2027-03-30"),         # the first opening day on summer time
])
def test_a_digest_is_due_once_its_time_has_come_on_an_opening_day(moment: datetime, period: str | None) -> None:
    s = with_digest()
    assert digest_period(moment.astimezone(UTC), s, ServiceCalendar(s.service_hours)) == period


def test_next_digest_skips_closed_days_and_sent_periods() -> None:
    s = with_digest()
    calendar = ServiceCalendar(s.service_hours)
    saturday = rome(2027, 1, 16, 15, 0)
    assert next_digest_at(saturday, s, calendar, lambda p: p == "2027-01-16") == rome(2027, 1, 18, 7, 45)
    assert next_digest_at(saturday, s, calendar, lambda p: False) == rome(2027, 1, 16, 7, 45)  # overdue
    assert next_digest_at(saturday, settings(), calendar, lambda p: False) is None  # nobody to send to


# --------------------------------------------------------------------------- chart


def test_chart_counts_messages_per_local_day_and_series() -> None:
    today = date(2027, 1, 18)
    facts = [
        fact(rome(2027, 1, 18, 0, 30), "anagrafica"),       # 23:30 UTC the day before: Rome's day counts
        fact(rome(2027, 1, 18, 9, 0), "lifecycle", "rejected"),
        fact(rome(2027, 1, 17, 12, 0), "other", "ignored"),
        fact(rome(2027, 1, 5, 12, 0), "anagrafica"),        # first day of the window
        fact(rome(2027, 1, 4, 12, 0), "anagrafica"),        # outside it
    ]
    chart = chart_of([f for f in facts], today, ROME)
    assert len(chart.days) == 14 and chart.days[0] == date(2027, 1, 5) and chart.days[-1] == today
    assert chart.counts[-1][chart.series.index("anagrafica")] == 1
    assert chart.counts[-1][chart.series.index("lifecycle")] == 1
    assert chart.counts[-2][chart.series.index("ignored")] == 1
    assert chart.total(0) == 1 and sum(chart.total(i) for i in range(14)) == 4
    assert chart.peak == 2


def test_the_svg_chart_draws_every_count_to_scale() -> None:
    days = tuple(date(2027, 1, 5) + timedelta(days=i) for i in range(14))
    series = ("anagrafica", "password_reset", "lifecycle", "other", "ignored")
    counts = [[0] * 5 for _ in days]
    counts[3] = [2, 1, 0, 0, 0]
    counts[10] = [5, 0, 1, 2, 4]
    counts[13] = [0, 0, 0, 1, 0]
    chart = Chart(days=days, series=series, counts=tuple(tuple(c) for c in counts))
    svg = chart_svg(chart)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert counts_by_day(svg) == {"2027-01-08": 3, "2027-01-15": 12, "2027-01-18": 1}
    scale = (230 - 28 - 36) / 12  # the plot's height over the busiest day's count
    for rect in bars(svg):  # one scale for every bar (heights are written to 0.1 px)
        assert float(rect.get("height", "0")) == pytest.approx(int(rect.get("data-count", "0")) * scale, abs=0.06)
    tallest = sum(float(r.get("height", "0")) for r in bars(svg) if r.get("data-day") == "2027-01-15")
    assert tallest == pytest.approx(230 - 28 - 36, abs=0.5)  # the peak fills the plot
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "12" in labels and "15/01" in labels and "ignored" in labels
    lines = chart_text(chart)
    assert len(lines) == 14 and lines[10].count("█") == 40 and lines[13].count("█") == round(40 / 12)


# --------------------------------------------------------------------------- rendering


def content(**changes: object) -> DigestContent:
    now = rome(2027, 1, 18, 7, 45)
    base = DigestContent(
        helpdesk_name="Help Desk Posta Elettronica", period="2027-01-18", since=now - timedelta(days=3),
        until=now, timezone=ROME,
        new=(NewTickets("anagrafica", 4, 0), NewTickets("password_reset", 1, 2)), ignored=3, followups=1,
        waiting=(WaitingGroup(2, ("password_reset",), 3, rome(2027, 1, 18, 8, 0)),),
        oldest=(TicketLine("HD-2027-000001", "anagrafica", "accepted", "anna.verdi@ateneo.example.it",
                           now - timedelta(days=2), timedelta(days=2), True),),
        review=(ReviewLine("HD-2027-000003", "other", "accepted", "mario.blu@ateneo.example.it",
                           "category other decided from the subject alone"),),
        refused=(RefusedAttempt("HD-2027-000007", REFERENTE, "password_reset", "<script>alert(1)</script>",
                                now - timedelta(hours=5), ("auth: Authentication-Results #1 reports dmarc=fail",)),),
        quarantined=(QuarantineLine(4, now - timedelta(hours=1), "7:42", 31_000_000, "over max_message_bytes",
                                    "quarantined"),),
        held=(ReplyLine("ack", "loop@example.org", "<a@x>", 0, now, "max_replies_per_sender_per_hour: 20"),),
        failed=(ReplyLine("ack", "gone@example.org", "<b@x>", 1, now, "550 5.1.1 no such user"),),
        retrying=(),
        chart=chart_of([fact(rome(2027, 1, 17, 10, 0), "anagrafica")], date(2027, 1, 18), ROME),
    )
    return DigestContent(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def test_the_ignored_mail_is_split_by_the_kind_of_automatic_mail(tmp_path: Path) -> None:
    renderer = DigestRenderer(tmp_path, ROME)
    split = content(ignored=4, ignored_by_kind=(("bounce", 3), ("list", 1)))
    assert "ignored: 4 (bounce 3, list 1)." in flat(renderer.text(split))
    assert "ignored: 4 (bounce 3, list 1)." in renderer.html(split)
    assert "ignored: 3." in flat(renderer.text(content()))  # nothing to split: no parentheses


def test_text_and_html_show_every_section_and_html_escapes_what_senders_wrote(tmp_path: Path) -> None:
    renderer = DigestRenderer(tmp_path, ROME)  # no digest templates there: the shipped ones are used
    text = flat(renderer.text(content()))
    for needle in ("digest 2027-01-18", "NEW TICKETS: 7", "password_reset 1 accepted 2 refused",
                   "ignored: 3", "WAITING FOR TAKE-IN: 3", "priority 2 (password_reset): 3",
                   "OLDEST OPEN TICKETS", "HD-2027-000001 2d 00h", f"from {REFERENTE}: password_reset",
                   "reports dmarc=fail", "#4", "over max_message_bytes", "max_replies_per_sender_per_hour",
                   "550 5.1.1 no such user", "Sun 17/01", "TO REVIEW FIRST (triage was unsure): 1",
                   "HD-2027-000003 other accepted mario.blu@ateneo.example.it: category other decided from the "
                   "subject alone"):
        assert needle in text, needle
    page = renderer.html(content())
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "To review first (triage was unsure): 1" in page and "decided from the subject alone" in page
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    assert counts_by_day(svg) == {"2027-01-17": 1}


def test_the_digest_mail_is_multipart_text_and_html_to_every_operator() -> None:
    s = with_digest()
    mail = DigestRenderer(DEFAULT_TEMPLATES, ROME).mail(content(), s, rome(2027, 1, 18, 7, 45))
    assert mail.kind == "digest" and mail.recipients == tuple(OPERATORS) and mail.envelope_from == ""
    msg = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] == mail.message_id == "<digest.2027-01-18.HD@servizi.example.it>"
    assert [a.addr_spec for a in msg["To"].addresses] == OPERATORS
    assert str(msg["Auto-Submitted"]) == "auto-generated"
    assert "7 new, 1 refused, 3 waiting, 1 quarantined" in str(msg["Subject"])
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "NEW TICKETS: 7" in plain.get_content() and "<svg" in html.get_content()


# --------------------------------------------------------------------------- the daemon, real servers


def digests(smtp: SmtpCapture) -> list[EmailMessage]:
    found = []
    for mail in smtp.messages:
        msg = email.message_from_bytes(mail.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if str(msg.get("Message-ID", "")).startswith("<digest."):
            assert sorted(mail.rcpt_tos) == sorted(OPERATORS)
            found.append(msg)
    return found


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    return str(plain.get_content()), str(html.get_content())


def not_digest(mail: CapturedMail) -> bool:
    return b"Message-ID: <digest." not in mail.data


@pytest.fixture(params=("sqlite", "postgresql"))
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


def test_a_digest_is_sent_once_per_period_across_restarts_with_the_right_counts(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, db_url: str) -> None:
    config = ops_config(tmp_path, imap_account, smtp_server, db_url, tables={"digest": {"recipients": OPERATORS}})
    clock = FakeClock(rome(2027, 1, 15, 7, 0).astimezone(UTC))  # Friday, before 07:45

    def run_once() -> None:
        assert daemon(config, clock)[1].run(once=True) == 0

    friday = [request(f"utente{i}@ateneo.example.it", "Telefono", "Vi chiedo di aggiornare il mio numero di "
                      f"telefono in rubrica: 010 555 12{i}.", f"Fri, 15 Jan 2027 06:{10 + i}:00 +0100")[1]
              for i in range(3)]
    seed_imap(imap_account, friday)
    run_once()
    assert digests(smtp_server) == []  # not yet 07:45
    clock.current = rome(2027, 1, 15, 7, 50).astimezone(UTC)
    run_once()
    (first,) = digests(smtp_server)
    text, html = parts(first)
    assert "NEW TICKETS: 3" in flat(text) and "anagrafica 3 accepted 0 refused" in flat(text)

    sunday = [  # Sunday: closed, no digest; a refused attempt, a request and an auto-reply
        request(REFERENTE, "Reset urgente", "Vi chiedo il reset della password della casella del rettore.",
                "Sun, 17 Jan 2027 11:00:00 +0100", auth=SPOOFED)[1],
        request("anna.verdi@ateneo.example.it", "Lista", "Vi chiedo di aggiungermi alla lista docenti.",
                "Sun, 17 Jan 2027 11:05:00 +0100")[1],
        request("anna.verdi@ateneo.example.it", "Fuori sede", "Sono fuori sede fino al 20 gennaio.",
                "Sun, 17 Jan 2027 11:10:00 +0100", auth="Auto-Submitted: auto-replied\r\n")[1],
    ]
    seed_imap(imap_account, sunday)
    clock.current = rome(2027, 1, 17, 12, 0).astimezone(UTC)
    run_once()
    seed_imap(imap_account, [request("luca.bianchi@ateneo.example.it", "Domanda", "Che orari ha il servizio "
                                     "di assistenza?", "Mon, 18 Jan 2027 07:30:00 +0100")[1]])
    clock.current = rome(2027, 1, 18, 7, 40).astimezone(UTC)
    run_once()
    assert len(digests(smtp_server)) == 1  # Sunday is closed; Monday's is not due before 07:45

    clock.current = rome(2027, 1, 18, 7, 50).astimezone(UTC)
    run_once()
    clock.current = rome(2027, 1, 18, 8, 30).astimezone(UTC)
    run_once()  # a restart: Monday's digest is not sent again
    first, monday = digests(smtp_server)
    assert monday["Message-ID"] == "<digest.2027-01-18.HD@servizi.example.it>"
    text, html = parts(monday)
    text = flat(text)
    assert "NEW TICKETS: 3" in text  # Sunday's two requests and Monday's question: Friday's were in Friday's
    assert "lifecycle" not in text.split("WAITING")[0]
    assert "password_reset 0 accepted 1 refused" in text
    assert "ignored: 1 (auto_reply 1)." in text  # the split says what kind of automatic mail it was
    assert "REFUSED PRIVILEGED ATTEMPTS: 1" in text and f"from {REFERENTE}: password_reset" in text
    assert "reports dmarc=fail" in text
    assert "QUARANTINED MESSAGES: 0" in text
    svg = html[html.index("<svg"):html.index("</svg>") + len("</svg>")]
    assert counts_by_day(svg) == {"2027-01-15": 3, "2027-01-17": 3, "2027-01-18": 1}
    assert db_rows(db_url, "SELECT key FROM state WHERE key LIKE 'digest:%' ORDER BY key") == [
        ("digest:2027-01-15",), ("digest:2027-01-18",)]

    clock.current = rome(2027, 1, 19, 9, 0).astimezone(UTC)
    missed_digest_goes_out_at_start(config, clock, smtp_server)
    assert sum(1 for m in smtp_server.messages if not_digest(m)) == 7  # 6 acks/refusals + 1 notice


def missed_digest_goes_out_at_start(config: Path, clock: FakeClock, smtp_server: SmtpCapture) -> None:
    """The running daemon: a digest missed while it was down goes out at start; the cron job waits for 07:45."""
    _, d = daemon(config, clock)
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: len(digests(smtp_server)) == 3, 60)
        job = d.next_digest_job()
        assert job is not None and job.astimezone(ROME).time().isoformat() == "07:45:00"
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert [m["Message-ID"] for m in digests(smtp_server)][-1] == "<digest.2027-01-19.HD@servizi.example.it>"


def test_the_digest_command_prints_text_and_writes_html(tmp_path: Path, imap_account: ImapAccount,
                                                        smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    config = ops_config(tmp_path, imap_account, smtp_server, url, tables={"digest": {"recipients": OPERATORS}})
    seed_imap(imap_account, [request("anna.verdi@ateneo.example.it", "Telefono", "Vi chiedo di aggiornare il mio "
                                     "numero di telefono in rubrica.", "Tue, 12 Jan 2027 10:00:00 +0100")[1]])
    assert daemon(config)[1].run(once=True) == 0  # the real clock: today's news
    page = tmp_path / "digest.html"
    done = run_cli(config, "digest", "--since", "2000-01-01", "--print", "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert "NEW TICKETS: 1" in flat(done.stdout) and "anagrafica 1 accepted" in flat(done.stdout)
    html = page.read_text(encoding="utf-8")
    svg = html[html.index("<svg"):html.index("</svg>") + len("</svg>")]
    assert sum(counts_by_day(svg).values()) == 1
    only_html = run_cli(config, "digest", "--html", str(page))
    assert only_html.returncode == 0 and only_html.stdout == ""


def test_mail_marked_as_spam_is_recorded_unanswered_and_counted_as_spam(tmp_path: Path, imap_account: ImapAccount,
                                                                        smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    config = ops_config(tmp_path, imap_account, smtp_server, url, tables={"digest": {"recipients": OPERATORS}})
    body = "Vi chiedo di aggiornare il mio numero di telefono in rubrica."
    seed_imap(imap_account, [
        request("anna.verdi@ateneo.example.it", "Telefono", body, "Tue, 12 Jan 2027 10:00:00 +0100")[1],
        request("luca.bianchi@ateneo.example.it", "Telefono", body, "Tue, 12 Jan 2027 10:01:00 +0100",
                auth="X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-1.1 required=5.0 tests=AWL\r\n")[1],
        request("offerte@promo.example.net", "Offerta", body, "Tue, 12 Jan 2027 10:02:00 +0100",
                auth="X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=9.3 required=5.0 tests=BAYES_99\r\n")[1],
    ])
    assert daemon(config)[1].run(once=True) == 0
    assert db_rows(url, "SELECT decision, COUNT(*) FROM messages GROUP BY decision ORDER BY decision") == [
        ("accepted", 2), ("ignored", 1)]
    answered = sorted(m.rcpt_tos for m in smtp_server.messages if not set(m.rcpt_tos) & set(OPERATORS))
    assert answered == [("anna.verdi@ateneo.example.it",), ("luca.bianchi@ateneo.example.it",)]  # not the spam
    digest = run_cli(config, "digest", "--since", "2000-01-01", "--print")
    assert digest.returncode == 0, digest.stderr
    assert "ignored: 1 (spam 1)." in flat(digest.stdout)
    stats = run_cli(config, "stats", "--since", "2000-01-01")
    assert stats.returncode == 0, stats.stderr
    assert next(x for x in stats.stdout.splitlines() if x.startswith("ignored by kind:")).endswith(" spam 1")
