"""The web request form against a real database: PIN roles, lockout, CSRF, limits, hostile text, double submits."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from maild.daemon.outbox.sender import OutboxSender
from maild.daemon.outbox.transport import make_transport
from maild.daemon.wiring import build_intake
from maild.records import Channel, EventKind, OutboxState
from maild.settings import Settings
from maild.sources import Incoming
from maild.store import Store
from maild.web.app import LIMITS, SECURITY_HEADERS, client_address, create_app
from maild.web.serve import open_desk
from tests.daemon_kit import FakeClock
from tests.factories import REFERENTE
from tests.servers import SmtpCapture
from tests.web_kit import (
    MONDAY_10,
    REFERENTE_PIN,
    SATURDAY_18,
    USER,
    USERS_PIN,
    Browserless,
    Clock,
    header_map,
    ticket_on,
    web_settings,
)

NEUTRAL = "Vi scrivo per la pratica di cui abbiamo parlato, grazie."


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/maild.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def config(db_url: str) -> Settings:
    return web_settings(db_url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def browser(config: Settings, clock: Clock) -> Iterator[Browserless]:
    with open_desk(config) as desk:
        app = create_app(desk, clock=clock)
        yield Browserless(app.test_client())


@pytest.fixture
def store(config: Settings, browser: Browserless) -> Iterator[Store]:
    with Store.open(config.database.url, timezone=config.service_hours.timezone) as opened:
        yield opened


def replies(store: Store) -> list[tuple[str, tuple[str, ...]]]:
    return [(r.kind, r.recipients) for r in store.outbox()]


@pytest.mark.parametrize("category", ["anagrafica", "other", "password_reset", "lifecycle"])
@pytest.mark.parametrize("pin", ["referente", "users"])
def test_each_pin_role_and_category(browser: Browserless, store: Store, pin: str, category: str) -> None:
    status, page = browser.submit(pin=REFERENTE_PIN if pin == "referente" else USERS_PIN, category=category,
                                  description=NEUTRAL)
    assert status == 200
    ticket = store.ticket(ticket_on(page))
    assert ticket is not None and ticket.channel == "web" and ticket.category == category
    refused = pin == "users" and category in ("password_reset", "lifecycle")
    assert ticket.decision == ("rejected" if refused else "accepted")
    if pin == "referente":  # the referente's address, never the typed one
        assert ticket.requester == REFERENTE
        assert replies(store) == [("ack", (REFERENTE,))]
    elif refused:
        assert 'id="refusal"' in page
        assert replies(store) == [("refusal", (USER,)), ("referente_notice", (REFERENTE,))]
    else:
        assert ticket.requester == USER
        assert replies(store) == [("ack", (USER,))]


def test_text_asking_for_more_than_the_chosen_type_wins_and_is_refused_with_the_users_pin(
        browser: Browserless, store: Store) -> None:
    _, page = browser.submit(category="other",
                             description="Buongiorno, vi chiedo di cancellare la casella mario.rossi@ateneo.example.it")
    ticket = store.ticket(ticket_on(page))
    assert ticket is not None and (ticket.category, ticket.decision) == ("lifecycle", "rejected")
    story = store.ticket_story(ticket.reference)
    assert story is not None
    assert any("more privileged than the other chosen" in r for r in story.messages[0].reasons)


def test_the_users_pin_answers_only_an_address_of_the_administrations_domains(
        browser: Browserless, store: Store) -> None:
    status, page = browser.submit(email="anna@gmail.example.com")
    assert status == 400
    assert "ateneo.example.it" in page and 'id="email-error"' in page
    assert store.queue() == ()
    status, page = browser.submit(email="Anna.Verdi@Sub.Ateneo.Example.It")
    assert status == 200
    assert replies(store) == [("ack", ("Anna.Verdi@sub.ateneo.example.it",))]


def test_a_form_sent_twice_opens_one_ticket(browser: Browserless, store: Store) -> None:
    _, first = browser.submit()
    _, second = browser.submit()
    assert ticket_on(first) == ticket_on(second)
    assert len(store.queue()) == 1 and len(store.outbox()) == 1
    browser.open_form()  # a new page is a new request
    _, third = browser.submit()
    assert ticket_on(third) != ticket_on(first)


def test_the_confirmation_shows_the_ticket_and_the_take_in_at_the_next_opening(
        browser: Browserless, store: Store, clock: Clock) -> None:
    clock.now = SATURDAY_18
    _, page = browser.submit()
    assert "lunedì 17 maggio 2027 alle 08:00" in page
    browser.lang = "en"
    browser.open_form()
    _, page = browser.submit()
    assert "Monday 17 May 2027 at 08:00" in page and "outside service hours" in page


def test_wrong_pins_lock_the_administration_out_for_the_rest_of_the_hour(
        browser: Browserless, store: Store, clock: Clock) -> None:
    for attempt in range(5):
        clock.now = MONDAY_10 + timedelta(minutes=attempt)
        status, page = browser.submit(pin="0000")
        assert status == (403 if attempt < 4 else 429), attempt
        assert "0000" not in page
    assert "11:00" in page  # the first failure leaves the hour at 11:00
    clock.now = MONDAY_10 + timedelta(minutes=30)
    status, page = browser.submit(pin=USERS_PIN)  # even the right PIN is not read while locked
    assert status == 429 and 'id="pin-error"' in page
    assert store.queue() == ()
    failures = store.pin_failures(MONDAY_10 - timedelta(hours=1))
    assert [(f.administration, f.channel) for f in failures] == [("Ateneo", "web")] * 5
    events = [e for e in store.recent_events(100) if e.kind == EventKind.PIN_FAILED]
    assert len(events) == 5 and all(dict(e.data)["client"] == "127.0.0.1" for e in events)
    assert [r for r in replies(store) if r[0] == "referente_notice"] == [("referente_notice", (REFERENTE,))] * 5
    clock.now = MONDAY_10 + timedelta(hours=1, seconds=1)  # the first failure is an hour old: unlocked
    status, page = browser.submit(pin=USERS_PIN)
    assert status == 200 and store.ticket(ticket_on(page)) is not None


def test_a_client_is_locked_out_across_administrations(db_url: str, clock: Clock) -> None:
    config = web_settings(db_url, limits={"max_pin_failures_per_client_per_hour": 3,
                                          "max_pin_failures_per_administration_per_hour": 10})
    with open_desk(config) as desk:
        browser = Browserless(create_app(desk, clock=clock).test_client())
        codes = [browser.submit(pin="9999")[0] for _ in range(3)]
        assert codes == [403, 403, 429]


def test_no_pin_is_ever_logged_or_stored(browser: Browserless, store: Store, caplog: pytest.LogCaptureFixture,
                                         db_url: str) -> None:
    browser.submit(pin="7777")
    browser.open_form()
    _, page = browser.submit(pin=REFERENTE_PIN)
    ref = ticket_on(page)
    assert "7777" not in caplog.text and REFERENTE_PIN not in caplog.text
    story = store.ticket_story(ref)
    assert story is not None
    stored = repr(story) + repr(store.recent_events(100)) + repr(store.message_raw(story.messages[0].id))
    assert REFERENTE_PIN not in stored and "7777" not in stored
    if db_url.startswith("sqlite"):
        assert REFERENTE_PIN.encode() not in Path(db_url.removeprefix("sqlite:///")).read_bytes()


def test_a_post_without_the_csrf_token_is_refused(browser: Browserless, store: Store) -> None:
    browser.open_form()
    browser.fields["csrf_token"] = "forged"
    status, page = browser.submit()
    assert status == 400 and 'id="problem"' in page
    fresh = Browserless(browser.client.application.test_client())  # another browser: no session cookie
    fresh.fields = {"request_id": "0" * 32, "lang": "it"}
    assert fresh.submit()[0] == 400
    assert store.queue() == () and store.pin_failures(MONDAY_10 - timedelta(days=1)) == ()


@pytest.mark.parametrize("name", ["name", "subject", "description", "email", "pin"])
def test_every_field_has_a_size_limit(browser: Browserless, store: Store, name: str) -> None:
    value = "x" * (LIMITS[name] + 1) if name != "email" else "a" * 250 + "@ateneo.example.it"
    status, page = browser.submit(**{name: value})
    assert status == 400 and f'id="{name}-error"' in page
    assert store.queue() == ()


def test_a_huge_body_is_refused_before_it_is_read(browser: Browserless) -> None:
    browser.open_form()
    response = browser.client.post("/", data={**browser.fields, "description": "x" * 200_000})
    assert response.status_code == 413


def test_the_security_headers_are_on_every_page(browser: Browserless) -> None:
    browser.open_form()
    for response in (browser.client.get("/"), browser.client.post("/", data={"x": "y"})):
        headers = header_map(response.headers)
        for name, value in SECURITY_HEADERS.items():
            assert headers[name.lower()] == value
    cookie = browser.client.get("/").headers.get("Set-Cookie", "")
    assert cookie == "" or ("HttpOnly" in cookie and "SameSite=Strict" in cookie)


def test_the_form_is_labelled_and_errors_stand_next_to_their_field(browser: Browserless) -> None:
    page = browser.open_form()
    for name in ("administration", "pin", "name", "email", "subject", "description"):
        assert f'<label for="{name}">' in page and f'id="{name}"' in page
    assert "<legend>" in page and "<script" not in page
    status, page = browser.submit(name="", subject="")
    assert status == 400
    assert 'aria-describedby="name-error"' in page and 'id="name-error"' in page and 'id="subject-error"' in page
    assert 'name="pin" type="password"' in page and USERS_PIN not in page


def test_the_language_follows_the_browser_and_the_switch(browser: Browserless) -> None:
    english = browser.client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)
    assert "Help desk request" in english and 'lang="en"' in english
    italian = browser.client.get("/", headers={"Accept-Language": "de,it;q=0.5"}).get_data(as_text=True)
    assert "Richiesta di assistenza" in italian
    switched = browser.client.get("/?lang=en", headers={"Accept-Language": "it"}).get_data(as_text=True)
    assert "Help desk request" in switched


def test_hostile_text_never_reaches_a_page_unescaped_or_a_header(
        browser: Browserless, store: Store, smtp_server: SmtpCapture, config: Settings) -> None:
    name = '<script>alert(1)</script>\r\nBcc: victim@evil.example'
    subject = 'Ciao\r\nBcc: victim@evil.example\r\nX-Injected: yes <b>bold</b>'
    status, page = browser.submit(name=name, subject=subject, description="<img src=x onerror=alert(1)>")
    assert status == 200 and "<script>" not in page and "<b>" not in page
    ref = ticket_on(page)
    status, page = browser.submit(name=name, email="not an address <x>")  # errors echo the values, escaped
    assert "<x>" not in page and "&lt;script&gt;" in page
    sent = _send_outbox(config, store, smtp_server)
    ack = email.message_from_bytes(sent[0], policy=email.policy.default)
    assert ack["Bcc"] is None and ack["X-Injected"] is None
    assert ref in ack["Subject"] and "\n" not in ack["Subject"]
    assert ack["To"] == USER


def test_the_acknowledgment_reaches_the_smtp_server(browser: Browserless, store: Store, smtp_server: SmtpCapture,
                                                    config: Settings) -> None:
    _, page = browser.submit()
    ref = ticket_on(page)
    sent = _send_outbox(config, store, smtp_server)
    assert len(sent) == 1
    ack = email.message_from_bytes(sent[0], policy=email.policy.default)
    assert ref in ack["Subject"] and ack["To"] == USER
    assert ref in ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert [r.state for r in store.outbox()] == [OutboxState.SENT]


def test_a_web_request_outside_hours_is_taken_in_at_the_opening_in_priority_order_with_the_mail(
        browser: Browserless, store: Store, clock: Clock, config: Settings) -> None:
    intake = build_intake(config, store)
    mail = (b"From: Mario Rossi <mario.rossi@ateneo.example.it>\r\nTo: helpdesk-posta@servizi.example.it\r\n"
            b"Subject: Domanda\r\nDate: Sat, 15 May 2027 17:00:00 +0200\r\n"
            b"Message-ID: <sat-mail@ateneo.example.it>\r\n\r\nUna domanda sul servizio di posta, grazie.\r\n"
            )
    intake.process(Incoming("sat.1", len(mail), mail, ""), SATURDAY_18 - timedelta(hours=1))
    clock.now = SATURDAY_18
    _, page = browser.submit(pin=REFERENTE_PIN, category="password_reset", description=NEUTRAL)
    web_ref = ticket_on(page)
    monday = MONDAY_10.replace(hour=8)
    assert store.due_take_ins(monday - timedelta(seconds=1)) == []
    due = store.take_in(monday)
    assert len(due) == 2 and due[0].take_in_at == monday
    assert due[0].reference == web_ref  # password_reset (2) before other (4), though it came later


def test_the_client_address_comes_only_from_a_trusted_proxy() -> None:
    trusted = frozenset({"10.0.0.1"})
    assert client_address("203.0.113.9", "198.51.100.7", trusted) == "203.0.113.9"
    assert client_address("10.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("10.0.0.1", "6.6.6.6, 198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("10.0.0.1", "198.51.100.7, 10.0.0.1", trusted) == "198.51.100.7"
    assert client_address("10.0.0.1", "junk", trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", None, trusted) == "10.0.0.1"


def test_behind_a_trusted_proxy_failures_are_counted_for_the_forwarded_client(db_url: str, clock: Clock) -> None:
    config = web_settings(db_url, web={"trusted_proxies": ["127.0.0.1"]})
    with open_desk(config) as desk, Store.open(db_url) as store:
        client = create_app(desk, clock=clock).test_client()
        browser = Browserless(client)
        browser.open_form()
        client.post("/", data={**browser.fields, "administration": "Ateneo", "pin": "0000", "name": "A",
                               "email": USER, "category": "other", "subject": "s", "description": "d"},
                    headers={"X-Forwarded-For": "198.51.100.7"})
        assert [f.client for f in store.pin_failures(MONDAY_10 - timedelta(hours=1))] == ["198.51.100.7"]


def _send_outbox(config: Settings, store: Store, smtp: SmtpCapture) -> list[bytes]:
    from dataclasses import replace  # noqa: PLC0415

    settings = replace(config, smtp=replace(config.smtp, kind="smtp", host=smtp.host, port=smtp.port))
    sender = OutboxSender(store, make_transport(settings), FakeClock(MONDAY_10 + timedelta(days=7)),
                          settings.limits, "test:web")
    sender.drain()
    sender.transport.close()
    return [m.data for m in smtp.messages]


def test_channel_is_recorded_on_the_message_too(browser: Browserless, store: Store) -> None:
    _, page = browser.submit()
    story = store.ticket_story(ticket_on(page))
    assert story is not None and story.messages[0].source_id == "web:127.0.0.1"
    assert Channel(story.ticket.channel) is Channel.WEB
