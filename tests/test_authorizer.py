"""The authorizer against every spoofing pattern of the corpus README, and more."""

from __future__ import annotations

from typing import Any

import pytest

from maild.authorizer import authorize, resolve_administration
from maild.mail.authresults import parse_auth_results, strip_comments
from maild.records import Address, RefusalCause
from maild.settings import parse_settings
from tests.factories import PASS, REFERENTE, TRUSTED, message, settings

ADMIN = settings().administrations[0]
IDS = (TRUSTED,)
FAIL = f"{TRUSTED}; dkim=none; spf=softfail smtp.mailfrom=ateneo.example.it; dmarc=fail (p=quarantine)"


def decide(**changes: Any) -> tuple[bool, tuple[str, ...]]:
    result = authorize(message(**changes), ADMIN, IDS)
    assert (result.cause is None) is result.authorized
    return result.authorized, result.reasons


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({}, "dmarc=pass"),
        ({"from_addresses": (Address("Sandro", "DELEGATO.SISTEMI@ATENEO.EXAMPLE.IT"),)}, "dmarc=pass"),
        ({"from_addresses": (Address("Vitali, Chiara", "vice.referente@ateneo.example.it"),)}, "dmarc=pass"),
        ({"auth_results": (f"{TRUSTED}; dkim=pass header.d=ateneo.example.it header.s=sel",)}, "dkim=pass"),
        ({"auth_results": (f"{TRUSTED} 1; spf=pass; dmarc=pass (p=none) header.from=ateneo.example.it",)},
         "dmarc=pass"),
        ({"auth_results": ("evil.example.net; dmarc=fail", PASS)}, "#2"),
        ({"auth_results": ("MX.Servizi.Example.IT; dmarc=pass",)}, "dmarc=pass"),
    ],
)
def test_authorized(changes: dict[str, Any], why: str) -> None:
    ok, reasons = decide(**changes)
    assert ok, reasons
    assert any(why in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        # wrong address, look-alike domain
        ({"from_addresses": (Address("Sandro Pini", "delegato.sistemi@ateneo.exarnple.it"),)}, "not the referente"),
        # display name imitating an authorized sender
        ({"from_addresses": (Address("Referente Tecnico Posta", "referente.posta@gmail.example.com"),)},
         "not the referente"),
        ({"from_addresses": (Address(REFERENTE, "mario.rossi@ateneo.example.it"),)}, "not the referente"),
        # authorized address only in Reply-To or Sender
        ({"from_addresses": (Address("", "mario.rossi@ateneo.example.it"),),
          "reply_to": (Address("", REFERENTE),)}, "not the referente"),
        ({"from_addresses": (Address("", "mario.rossi@ateneo.example.it"),),
          "sender": (Address("", REFERENTE),)}, "not the referente"),
        # more than one From address; none; ambiguous
        ({"from_addresses": (Address("", "vice.referente@ateneo.example.it"),
                             Address("", "mario.rossi@ateneo.example.it"))}, "2 addresses"),
        ({"from_addresses": ()}, "0 addresses"),
        ({"from_ambiguous": True}, "more than one way"),
        # dmarc=fail on the trusted header
        ({"auth_results": (FAIL,)}, "dmarc=fail"),
        # topmost trusted says fail; a forged lower one with the trusted id says pass
        ({"auth_results": (FAIL, PASS)}, "#1"),
        # no Authentication-Results at all
        ({"auth_results": ()}, "no Authentication-Results"),
        # only untrusted or look-alike authserv-ids report pass
        ({"auth_results": ("relay.studenti.ateneo.example.it; dmarc=pass",)}, "no Authentication-Results"),
        ({"auth_results": (f"{TRUSTED}.evil.example.net; dmarc=pass",)}, "no Authentication-Results"),
        ({"auth_results": ("mx-servizi.example.it; dmarc=pass",)}, "no Authentication-Results"),
        ({"auth_results": (f"x{TRUSTED}; dmarc=pass",)}, "no Authentication-Results"),
        # pass only inside a comment or a reason
        ({"auth_results": (f"{TRUSTED}; spf=pass (dmarc=pass) smtp.mailfrom=ateneo.example.it",)}, "neither"),
        ({"auth_results": (f'{TRUSTED}; dkim=fail reason="dmarc=pass"',)}, "neither"),
        # DKIM pass for another domain is not aligned
        ({"auth_results": (f"{TRUSTED}; dkim=pass header.d=mailer.example.net",)}, "neither"),
        ({"auth_results": (f"{TRUSTED}; dkim=pass header.d=sub.ateneo.example.it",)}, "neither"),
        # an explicit DMARC failure is final, even beside an aligned DKIM pass
        ({"auth_results": (f"{TRUSTED}; dkim=pass header.d=ateneo.example.it; dmarc=fail",)}, "dmarc=fail"),
        # unreadable trusted header
        ({"auth_results": (f"{TRUSTED} junk here; dmarc=pass",)}, "no Authentication-Results"),
        ({"auth_results": (f"{TRUSTED}; none",)}, "neither"),
    ],
)
def test_refused(changes: dict[str, Any], why: str) -> None:
    ok, reasons = decide(**changes)
    assert not ok
    assert any(why in r for r in reasons), reasons


@pytest.mark.parametrize(("changes", "cause"), [
    ({"from_addresses": (Address("", "mario.rossi@ateneo.example.it"),)}, RefusalCause.NOT_AUTHORIZED_SENDER),
    ({"from_addresses": ()}, RefusalCause.FROM_NOT_ONE),
    ({"from_ambiguous": True}, RefusalCause.FROM_AMBIGUOUS),
    ({"auth_results": (FAIL,)}, RefusalCause.DMARC_FAILED),
    ({"auth_results": ()}, RefusalCause.NOT_CHECKED),
    ({"auth_results": (f"{TRUSTED}; dkim=pass header.d=mailer.example.net",)}, RefusalCause.NOT_ALIGNED),
])
def test_a_refusal_names_its_cause(changes: dict[str, Any], cause: RefusalCause) -> None:
    assert authorize(message(**changes), ADMIN, IDS).cause is cause


def test_no_administration_fails_closed() -> None:
    result = authorize(message(), None, IDS)
    assert not result.authorized
    assert "no configured Administration" in result.reasons[0]


def test_strip_comments_handles_nesting_and_quotes() -> None:
    assert strip_comments('a (b (c) d) "x (y)" e').split() == ["a", '"x', '(y)"', "e"]
    assert strip_comments('a "b\\" c" d) e') == 'a "b\\" c" d) e'  # no comment opens: unchanged


def test_parse_auth_results_reads_properties() -> None:
    parsed = parse_auth_results(
        "mx.servizi.example.it;\r\n\tdkim=pass (2048-bit key) header.d=Ateneo.example.it header.s=sel;"
        " dmarc=pass (p=QUARANTINE) header.from=ateneo.example.it"
    )
    assert parsed is not None
    assert parsed.authserv_id == "mx.servizi.example.it"
    assert [(r.method, r.result) for r in parsed.results] == [("dkim", "pass"), ("dmarc", "pass")]
    assert parsed.results[0].prop("header.d") == "Ateneo.example.it"
    assert parse_auth_results(";dmarc=pass") is None


MULTI = parse_settings({
    "helpdesk": {"address": "hd@servizi.example.it", "name": "HD", "trusted_authserv_ids": [TRUSTED]},
    "administrations": [
        {"name": "Ateneo", "referente": REFERENTE, "addresses": ["ateneo@servizi.example.it"],
         "domains": ["ateneo.example.it"]},
        {"name": "Comune", "referente": "ced@comune.example.it", "addresses": ["comune@servizi.example.it"],
         "domains": ["comune.example.it"]},
    ],
}).administrations


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"to": (Address("", "comune@servizi.example.it"),)}, "Comune"),
        ({"to": (Address("", "hd@servizi.example.it"),), "cc": (Address("", "Ateneo@servizi.example.it"),)},
         "Ateneo"),
        ({"to": (Address("", "hd@servizi.example.it"),),
          "from_addresses": (Address("", "anna@uffici.comune.example.it"),)}, "Comune"),
        ({"to": (Address("", "hd@servizi.example.it"),),
          "from_addresses": (Address("", "x@elsewhere.example.org"),)}, None),
        ({"to": (Address("", "comune@servizi.example.it"), Address("", "ateneo@servizi.example.it"))}, None),
    ],
)
def test_resolve_administration_with_several(changes: dict[str, Any], expected: str | None) -> None:
    admin, reason = resolve_administration(message(**changes), MULTI)
    assert (admin.name if admin else None) == expected
    assert reason.startswith("administration:")


def test_the_only_administration_owns_every_message() -> None:
    admin, _ = resolve_administration(message(from_addresses=(Address("", "x@y.example.org"),)), (ADMIN,))
    assert admin is ADMIN
