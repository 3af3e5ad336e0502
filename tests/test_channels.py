"""PIN hashes, the [web] settings, ``maild pin hash`` and ``maild ticket open`` for phone and fax."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from maild.cli.channels import open_ticket, read_pin
from maild.errors import ConfigError
from maild.ops.digest import DigestRenderer, build_digest
from maild.ops.views import queue_cells, queue_json, queue_rows, story_json, story_lines
from maild.pins import check_hash, hash_pin, pin_role, verify_pin
from maild.records import Channel, PinRole
from maild.settings import DEFAULT_TEMPLATES, Settings
from maild.store import Store
from maild.web.app import create_app
from maild.web.serve import open_desk
from tests.factories import REFERENTE
from tests.factories import settings as make_settings
from tests.web_kit import (
    MONDAY_10,
    REFERENTE_HASH,
    REFERENTE_PIN,
    ROME,
    SATURDAY_18,
    USER,
    USERS_HASH,
    USERS_PIN,
    Browserless,
    Clock,
    ticket_on,
    web_settings,
)


def test_a_pin_hash_is_salted_self_describing_and_checked_in_constant_time() -> None:
    one, two = hash_pin("1234"), hash_pin("1234")
    assert one != two and one.startswith("scrypt$n=16384,r=8,p=1$")
    assert verify_pin("1234", one) and verify_pin("1234", two)
    assert not verify_pin("1235", one) and not verify_pin("1234", "garbage")
    assert check_hash(one) is None
    assert check_hash("scrypt$n=3,r=8,p=1$AAAA$AAAA") is not None
    assert check_hash("md5$abc") is not None


def test_the_more_privileged_role_wins_when_a_pin_matches_both() -> None:
    same = hash_pin("2468")
    assert pin_role("2468", same, same) is PinRole.REFERENTE
    assert pin_role(REFERENTE_PIN, REFERENTE_HASH, USERS_HASH) is PinRole.REFERENTE
    assert pin_role(USERS_PIN, REFERENTE_HASH, USERS_HASH) is PinRole.USERS
    assert pin_role("0000", REFERENTE_HASH, USERS_HASH) is None
    assert pin_role(USERS_PIN, REFERENTE_HASH, None) is None


def test_pin_hashes_and_the_web_table_are_parsed_strictly() -> None:
    config = web_settings("sqlite://", web={"listen": "0.0.0.0:8080", "trusted_proxies": ["10.0.0.1", "::1"]})
    assert config.administrations[0].pin_users_hash == USERS_HASH
    assert USERS_HASH not in repr(config)
    assert (config.web.host, config.web.port, config.web.trusted_proxies) == ("0.0.0.0", 8080,
                                                                              frozenset({"10.0.0.1", "::1"}))
    assert make_settings().web.listen == "127.0.0.1:8025"
    bad: list[tuple[dict[str, dict[str, object]], str]] = [
        ({"web": {"listen": "8025"}}, "web.listen"), ({"web": {"trusted_proxies": ["proxy"]}}, "web.trusted_proxies"),
        ({"web": {"port": 1}}, "web.port")]
    for tables, key in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            make_settings(**tables)
    with pytest.raises(ConfigError, match=r"administrations\[0\]\.pin_users_hash"):
        make_settings(administrations=[{"name": "A", "referente": REFERENTE, "pin_users_hash": "1357"}])


def test_pin_hash_reads_standard_input_when_it_is_not_a_terminal(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "maild.cli", "pin", "hash"], input="5150\n", text=True,
                          capture_output=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    printed = done.stdout.strip()
    assert verify_pin("5150", printed) and "5150" not in done.stderr + printed
    assert read_pin("PIN: ", io.StringIO("  1234 \n")) == "1234"
    with pytest.raises(ConfigError):
        read_pin("PIN: ", io.StringIO("12 34\n"))


# ---------------------------------------------------------------- maild ticket open


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path}/maild.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return web_settings(url)


@pytest.fixture
def store(config: Settings) -> Iterator[Store]:
    with Store.open(config.database.url, timezone=config.service_hours.timezone) as opened:
        yield opened


def _args(channel: str, **values: object) -> argparse.Namespace:
    base: dict[str, object] = {"channel": channel, "administration": "Ateneo", "requester": USER,
                               "name": "Anna Verdi", "pin_role": None, "category": None,
                               "subject": "Telefono", "text": "Vorrei aggiornare il mio numero in rubrica.",
                               "file": None}
    return argparse.Namespace(**{**base, **values})


def test_a_phone_request_with_the_users_pin_opens_a_ticket(config: Settings, store: Store,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert open_ticket(_args("phone"), config, Channel.PHONE, MONDAY_10, lambda: USERS_PIN) == 0
    ref = capsys.readouterr().out.split()[0]
    story = store.ticket_story(ref)
    assert story is not None and story.ticket.channel == "phone" and story.ticket.requester == USER
    assert story.messages[0].source_id.startswith("phone:operator ")
    assert [(r.kind, r.recipients) for r in story.replies] == [("ack", (USER,))]
    assert any("typed by operator" in r for r in story.messages[0].reasons)


def test_phone_is_closed_outside_service_hours(config: Settings, store: Store,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[bool] = []

    def ask() -> str:
        asked.append(True)
        return USERS_PIN

    assert open_ticket(_args("phone"), config, Channel.PHONE, SATURDAY_18, ask) == 1
    assert "phone channel is closed" in capsys.readouterr().err
    assert asked == [] and store.queue() == ()


def test_a_wrong_phone_pin_is_refused_and_counted_like_a_web_failure(config: Settings, store: Store) -> None:
    for minute in range(5):
        assert open_ticket(_args("phone"), config, Channel.PHONE, MONDAY_10 + timedelta(minutes=minute),
                           lambda: "0000") == 1
    assert open_ticket(_args("phone"), config, Channel.PHONE, MONDAY_10 + timedelta(minutes=6),
                       lambda: USERS_PIN) == 1  # locked out
    failures = store.pin_failures(MONDAY_10 - timedelta(hours=1))
    assert len(failures) == 5 and {f.channel for f in failures} == {"phone"}
    assert store.queue() == ()


def test_a_fax_takes_the_role_the_operator_states(config: Settings, store: Store,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = _args("fax", pin_role="referente", category="lifecycle", text="Chiediamo di creare la lista x.")
    assert open_ticket(args, config, Channel.FAX, SATURDAY_18, lambda: pytest.fail("no PIN for a fax")) == 0
    ref = capsys.readouterr().out.split()[0]
    ticket = store.ticket(ref)
    assert ticket is not None and (ticket.channel, ticket.decision, ticket.requester) == ("fax", "accepted",
                                                                                         REFERENTE)
    assert not ticket.in_hours  # fax is open out of hours; taken in at the next opening
    refused = _args("fax", pin_role="users", category="password_reset")
    assert open_ticket(refused, config, Channel.FAX, MONDAY_10, lambda: "") == 0
    ref = capsys.readouterr().out.split()[0]
    story = store.ticket_story(ref)
    assert story is not None and story.ticket.decision == "rejected"
    assert [r.kind for r in story.replies] == ["refusal", "referente_notice"]
    with pytest.raises(ConfigError, match="pin-role"):
        open_ticket(_args("fax"), config, Channel.FAX, MONDAY_10, lambda: "")


# ---------------------------------------------------------------- what operators read


def test_the_digest_queue_and_ticket_show_name_the_channels_and_the_failed_pins(
        config: Settings, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert open_ticket(_args("phone"), config, Channel.PHONE, MONDAY_10, lambda: USERS_PIN) == 0
    phone_ref = capsys.readouterr().out.split()[0]
    assert open_ticket(_args("phone"), config, Channel.PHONE, MONDAY_10 + timedelta(minutes=1), lambda: "9999") == 1
    with open_desk(config) as desk:
        browser = Browserless(create_app(desk, clock=Clock(MONDAY_10 + timedelta(minutes=2))).test_client())
        web_ref = ticket_on(browser.submit()[1])
    later = MONDAY_10 + timedelta(hours=2)
    content = build_digest(store, config, later, MONDAY_10 - timedelta(hours=1))
    renderer = DigestRenderer(DEFAULT_TEMPLATES, ROME)
    text, html = renderer.text(content), renderer.html(content)
    assert "REQUESTS BY WEB, PHONE AND FAX: 2" in text and "FAILED PIN ATTEMPTS: 1" in text
    assert f"{phone_ref}  phone anagrafica" in text and f"{web_ref}  web" in text
    assert "2027-05-17 10:01  Ateneo  phone from " in text
    assert "Failed PIN attempts: 1" in html and f"{web_ref} (web)" in html
    rows = queue_rows(store.queue(), later)
    assert [(r.ticket, queue_cells(r, ROME)["channel"], queue_json(r)["channel"]) for r in rows] == [
        (phone_ref, "phone", "phone"), (web_ref, "web", "web")]
    story = store.ticket_story(phone_ref)
    assert story is not None
    lines = story_lines(story, {}, ROME, later)
    assert any(line.split()[:2] == ["channel", "phone"] and "operator" in line for line in lines)
    assert story_json(story, {}, later)["channel"] == "phone"
