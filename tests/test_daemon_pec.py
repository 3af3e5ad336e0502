"""PEC through the daemon, against the real Dovecot and SMTP server.

An envelope opens a ticket for the certified sender, answered once at the
right address; the provider's receipts for that acknowledgment land on the
ticket as delivery events, a non-delivery notice shows in ``ticket show`` and
in the digest, and no receipt ever produces a reply or a ticket.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import pec_kit
from tests.daemon_kit import classify_reply, daemon, db_rows, imap_table, run_cli, smtp_table, sqlite_url, write_config
from tests.pec_kit import HELPDESK, SENDER, Pec
from tests.servers import ImapAccount, SmtpCapture, seed_imap

QUESTION = "Buongiorno,\r\nvorrei sapere come configurare la casella sul telefono.\r\n"
ANSWER_AT = "segreteria@pec.ateneo.example.it"


@pytest.fixture(params=("sqlite", "postgresql"))
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


def pec_config(tmp_path: Path, account: ImapAccount, smtp: SmtpCapture, url: str) -> Path:
    path = write_config(tmp_path / "maild.toml", mailbox=imap_table(account), smtp=smtp_table(smtp),
                        database_url=url)
    ca_file = pec_kit.pki().write_root(tmp_path)
    with path.open("a", encoding="utf-8") as out:  # the file ends inside its [[administrations]] table
        out.write(f'pec = ["{SENDER}"]\n\n[pec]\nca_file = "{ca_file}"\naddresses = ["{HELPDESK}"]\n')
    return path


def receipt(receipt_type: str, refers_to: str) -> bytes:
    return pec_kit.build(Pec(kind="receipt", receipt_type=receipt_type, sender=HELPDESK, recipient=ANSWER_AT,
                             original_id=refers_to, subject="Re: Configurazione casella"))


def test_an_envelope_is_answered_once_and_its_receipts_land_on_the_ticket(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, db_url: str) -> None:
    config = pec_config(tmp_path, imap_account, smtp_server, db_url)
    started = datetime.now(UTC) - timedelta(minutes=1)
    seed_imap(imap_account, [pec_kit.build(Pec(subject="Configurazione casella", body=QUESTION,
                                               reply_to=ANSWER_AT))])
    assert daemon(config)[1].run(once=True) == 0

    assert len(smtp_server.messages) == 1
    ack = classify_reply(smtp_server.messages[0])
    assert (ack.kind, ack.to) == ("reply", ANSWER_AT)
    assert ack.in_reply_to == "<orig.20250314.1@pec.ateneo.example.it>"
    assert ack.subject.startswith("Re: Configurazione casella [HD-")
    assert db_rows(db_url, "SELECT requester, subject FROM tickets") == [(SENDER, "Configurazione casella")]
    reference = db_rows(db_url, "SELECT reference FROM tickets")[0][0]

    seed_imap(imap_account, [receipt("accettazione", ack.message_id), receipt("avvenuta-consegna", ack.message_id),
                             receipt("errore-consegna", ack.message_id),
                             receipt("avvenuta-consegna", "<someone.else@servizi.example.it>")])
    assert daemon(config)[1].run(once=True) == 0

    assert len(smtp_server.messages) == 1  # receipts are never answered
    assert db_rows(db_url, "SELECT COUNT(*) FROM tickets")[0][0] == 1
    assert sorted(r[0] for r in db_rows(db_url, "SELECT decision FROM messages")) == ["accepted", *["ignored"] * 4]
    events = db_rows(db_url, "SELECT kind FROM events WHERE kind IN ('delivery', 'undelivered') ORDER BY id")
    assert [e[0] for e in events] == ["delivery", "delivery", "undelivered"]  # the unmatched one is only recorded

    shown = run_cli(config, "ticket", "show", reference)
    assert shown.returncode == 0, shown.stderr
    assert "outcome=accepted by the provider" in shown.stdout
    assert "outcome=delivered" in shown.stdout
    assert "outcome=not delivered: 5.1.1 - Gestore di prova - indirizzo non valido" in shown.stdout
    assert "pec: PEC envelope from posta-certificata@pec.provider.example" in shown.stdout

    digest = run_cli(config, "digest", "--since", started.isoformat(), "--print")
    assert digest.returncode == 0, digest.stderr
    assert "PEC REPLIES NOT DELIVERED: 1" in digest.stdout
    assert f"{reference}  not delivered: 5.1.1 - Gestore di prova - indirizzo non valido" in digest.stdout
