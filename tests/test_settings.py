"""Configuration: parsed once, strict, with errors that name the key and the reason."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from maild.errors import ConfigError
from maild.records import Category
from maild.settings import load_settings, parse_settings
from tests.factories import REPO, settings

BASE: dict[str, Any] = {
    "helpdesk": {"address": "helpdesk-posta@servizi.example.it", "name": "HD",
                 "trusted_authserv_ids": ["mx.servizi.example.it"]},
    "administrations": [{"name": "Ateneo", "referente": "referente.tecnico@ateneo.example.it"}],
}


def with_table(table: str, value: Any) -> dict[str, Any]:
    return {**BASE, table: value}


def test_shipped_config_loads() -> None:
    s = load_settings(REPO / "config" / "maild.toml")
    assert s.helpdesk.address == "helpdesk-posta@servizi.example.it"
    assert s.service_hours.subdivision == "GE"
    assert date(2026, 12, 24) in s.service_hours.closed_dates
    assert s.mailbox.kind == "maildir" and s.smtp.kind == "maildir"
    assert s.database.url == "sqlite:///var/maild.db"


def test_defaults() -> None:
    s = parse_settings(BASE)
    assert s.service_hours.timezone.key == "Europe/Rome"
    week = s.service_hours.week
    assert week[0] is not None and (week[0].opens, week[0].closes) == (time(8), time(17))
    assert week[5] is not None and week[5].closes == time(14)
    assert week[6] is None
    assert [s.priorities.of(c) for c in Category] == [3, 2, 1, 4]
    assert s.limits.max_replies_per_sender_per_hour == 20
    assert (s.smtp.first_retry_seconds, s.smtp.give_up_after_hours) == (1.0, 120.0)


def test_the_retry_of_a_reply_refused_for_now_is_configured_in_smtp() -> None:
    s = parse_settings(with_table("smtp", {"first_retry_seconds": 30, "give_up_after_hours": 48}))
    assert (s.smtp.first_retry_seconds, s.smtp.give_up_after_hours) == (30.0, 48.0)
    assert parse_settings(with_table("smtp", {"first_retry_seconds": 1800})).smtp.first_retry_seconds == 1800.0


def test_week_and_priorities_override() -> None:
    s = parse_settings({**BASE, "service_hours": {"week": {"saturday": "closed", "friday": "08:30-13:00"}},
                        "priorities": {"other": 9}})
    assert s.service_hours.week[5] is None
    assert s.service_hours.week[4] is not None and s.service_hours.week[4].opens == time(8, 30)
    assert s.priorities.other == 9


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        ({**BASE, "bogus": 1}, "bogus", "unknown key"),
        (with_table("helpdesk", {**BASE["helpdesk"], "adress": "x"}), "helpdesk.adress", "unknown key"),
        (with_table("helpdesk", {**BASE["helpdesk"], "address": "not-an-address"}), "helpdesk.address",
         "not a valid e-mail address"),
        (with_table("helpdesk", {**BASE["helpdesk"], "trusted_authserv_ids": []}),
         "helpdesk.trusted_authserv_ids", "at least one"),
        ({"administrations": BASE["administrations"]}, "helpdesk", "missing"),
        ({"helpdesk": BASE["helpdesk"]}, "administrations", "required"),
        (with_table("administrations", [{"name": "A", "referente": "bad@"}]), "administrations[0].referente",
         "not a valid e-mail address"),
        (with_table("administrations", [{"name": "A", "referente": "a@b.it", "delegates": ["x"]}]),
         "administrations[0].delegates", "not a valid"),
        (with_table("service_hours", {"timezone": "Europe/Roma"}), "service_hours.timezone", "not a known time zone"),
        (with_table("service_hours", {"closed_dates": ["2026-02-30"]}), "service_hours.closed_dates", "not a date"),
        (with_table("service_hours", {"country": "XX"}), "service_hours.country", "no holiday calendar"),
        (with_table("service_hours", {"subdivision": "ZZ"}), "service_hours.subdivision", "no holiday calendar"),
        (with_table("service_hours", {"week": {"monday": "17:00-08:00"}}), "service_hours.week.monday", "after"),
        (with_table("service_hours", {"week": {"funday": "closed"}}), "service_hours.week.funday", "unknown"),
        (with_table("priorities", {"other": 0}), "priorities.other", "greater than zero"),
        (with_table("priorities", {"other": "high"}), "priorities.other", "must be an integer"),
        (with_table("mailbox", {"kind": "pop3"}), "mailbox.kind", "must be one of"),
        (with_table("mailbox", {"kind": "imap"}), "mailbox.username", "missing"),
        (with_table("mailbox", {"port": 70000}), "mailbox.port", "not a TCP port"),
        (with_table("mailbox", {"idle": "yes"}), "mailbox.idle", "must be true or false"),
        (with_table("mailbox", {"password": "a", "password_env": "B"}), "mailbox.password_env", "only one"),
        (with_table("mailbox", {"password_env": "MAILD_NO_SUCH_VARIABLE"}), "mailbox.password_env", "not set"),
        (with_table("smtp", {"first_retry_seconds": 0}), "smtp.first_retry_seconds", "greater than zero"),
        (with_table("smtp", {"first_retry_seconds": "1s"}), "smtp.first_retry_seconds", "must be a number"),
        (with_table("smtp", {"first_retry_seconds": 3600}), "smtp.first_retry_seconds", "at most 1800"),
        (with_table("database", {"url": "mysql://x"}), "database.url", "must be a sqlite"),
        (with_table("limits", {"max_replies_per_sender_per_hour": -1}),
         "limits.max_replies_per_sender_per_hour", "greater than zero"),
        (with_table("digest", {"time": "7:45"}), "digest.time", "not a time"),
        (with_table("metrics", {"listen": "9464"}), "metrics.listen", "HOST:PORT"),
        (with_table("triage", {"word_model": ""}), "triage.word_model", "or false for none"),
        (with_table("triage", {"word_model": True}), "triage.word_model", "or false for none"),
    ],
)
def test_bad_config_names_key_and_reason(data: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, environ={})
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_the_word_model_is_shipped_replaced_by_a_path_or_turned_off() -> None:
    assert settings().triage.word_model == REPO / "maild" / "defaults" / "wordmodel.json"
    assert settings(triage={"word_model": "site/model.json"}).triage.word_model == Path("site/model.json")
    assert settings(triage={"word_model": False}).triage.word_model is None


def test_password_sources(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    s = parse_settings(with_table("smtp", {"password_file": str(secret)}))
    assert s.smtp.password == "from-file"
    s = parse_settings(with_table("mailbox", {"password_env": "PW"}), environ={"PW": "from-env"})
    assert s.mailbox.password == "from-env"
    assert "from-env" not in repr(s)


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(AttributeError):
        s.helpdesk = s.helpdesk  # type: ignore[misc]


def test_cli_exit_code_2_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[helpdesk]\naddress = "nope"\nname = "x"\ntrusted_authserv_ids = ["a"]\n')
    done = subprocess.run([sys.executable, "-m", "maild.cli", "check-config", "--config", str(bad)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "helpdesk.address" in done.stderr and "not a valid e-mail address" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "maild.cli", "check-config", "--config",
                              str(tmp_path / "none.toml")], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
