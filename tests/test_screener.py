"""The screener: automatic mail is ignored, human mail goes on, with reasons."""

from __future__ import annotations

from typing import Any

import pytest

from maild.records import Address
from maild.screener import screen
from tests.factories import message

OWN = ("helpdesk-posta@servizi.example.it",)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"auto_submitted": "auto-replied"}, "Auto-Submitted"),
        ({"auto_submitted": "auto-generated (vacation)"}, "Auto-Submitted"),
        ({"x_autoreply": True}, "X-Autoreply"),
        ({"precedence": "bulk"}, "Precedence: bulk"),
        ({"precedence": "Junk"}, "Precedence: junk"),
        ({"precedence": "list"}, "Precedence: list"),
        ({"precedence": "auto_reply"}, "Precedence: auto_reply"),
        ({"content_type": "multipart/report", "report_type": "delivery-status"}, "delivery-status"),
        ({"content_type": "multipart/report", "report_type": "disposition-notification"}, "disposition"),
        ({"return_path": "<>"}, "empty Return-Path"),
        ({"return_path": ""}, "empty Return-Path"),
        ({"from_addresses": (Address("Mail Delivery System", "MAILER-DAEMON@mx.example.it"),)}, "mail system"),
        ({"from_addresses": (Address("", "postmaster@ateneo.example.it"),)}, "mail system"),
        ({"from_addresses": (Address("Help", "Helpdesk-Posta@Servizi.Example.IT"),)}, "own address"),
        ({"from_addresses": ()}, "no From"),
    ],
)
def test_automatic_mail_is_not_human(changes: dict[str, Any], reason: str) -> None:
    result = screen(message(**changes), OWN)
    assert not result.human
    assert any(reason in r for r in result.reasons), result.reasons


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"auto_submitted": "no"},
        {"auto_submitted": "No (human)"},
        {"precedence": "first-class"},
        {"return_path": None},
        {"content_type": "multipart/mixed"},
    ],
)
def test_human_mail_passes(changes: dict[str, Any]) -> None:
    result = screen(message(**changes), OWN)
    assert result.human
    assert result.reasons


def test_every_sign_is_reported() -> None:
    result = screen(message(auto_submitted="auto-replied", x_autoreply=True, precedence="bulk"), OWN)
    assert len(result.reasons) == 3
