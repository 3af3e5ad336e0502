"""The command line contract: triage, takein, render and check-config, as other tools call them."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path

from tests.factories import CORPUS, REPO

CONFIG = str(REPO / "config" / "maild.toml")


def maild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maild.cli", *args], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=120)


def test_check_config_accepts_the_shipped_file() -> None:
    done = maild("check-config", "--config", CONFIG)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_triage_json_contract_over_the_whole_corpus() -> None:
    files = sorted(str(p) for p in CORPUS.glob("*.eml"))
    done = maild("triage", "--config", CONFIG, "--json", *files)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    labels = json.loads((CORPUS / "labels.json").read_text())
    assert [r["file"] for r in rows] == files
    for row in rows:
        assert {"file", "message_id", "category", "decision", "privileged", "priority", "take_in_at", "in_hours",
                "reasons", "review", "review_reason"} <= set(row)
        label = labels[Path(row["file"]).name]
        assert (row["decision"], row["category"]) == (label["decision"], label["category"]), row
        assert row["reasons"] and all(isinstance(r, str) for r in row["reasons"])
        assert (row["take_in_at"] is None) == (row["decision"] == "ignored")
        assert row["privileged"] == (row["category"] in ("password_reset", "lifecycle"))
        assert row["review"] is (row["review_reason"] is not None)
        if row["review"]:
            assert f"review: {row['review_reason']}" in row["reasons"]


def test_triage_received_override_and_table() -> None:
    done = maild("triage", "--config", CONFIG, "--received", "2027-03-27T14:00:00+01:00", "--json",
                 str(CORPUS / "d030.eml"))
    row = json.loads(done.stdout)
    assert row["take_in_at"] == "2027-03-30T08:00:00+02:00" and row["in_hours"] is False
    table = maild("triage", "--config", CONFIG, str(CORPUS / "d030.eml"), str(CORPUS / "d024.eml"))
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["FILE", "DECISION", "CATEGORY"]
    assert "ignored" in table.stdout and "accepted" in table.stdout


def test_triage_of_a_missing_file_is_a_clear_error_and_the_rest_go_on() -> None:
    done = maild("triage", "--config", CONFIG, "--json", "/nonexistent.eml", str(CORPUS / "d030.eml"))
    assert done.returncode == 1
    assert "cannot read /nonexistent.eml" in done.stderr
    assert json.loads(done.stdout)["category"] == "anagrafica"


def test_takein_json() -> None:
    done = maild("takein", "--config", CONFIG, "--json", "2027-03-27T14:00:00+01:00", "2026-10-05T09:00:00Z",
                 "2027-01-12T10:00:00")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows == [
        {"received": "2027-03-27T14:00:00+01:00", "take_in_at": "2027-03-30T08:00:00+02:00", "in_hours": False},
        {"received": "2026-10-05T09:00:00Z", "take_in_at": "2026-10-05T11:00:00+02:00", "in_hours": True},
        {"received": "2027-01-12T10:00:00", "take_in_at": "2027-01-12T10:00:00+01:00", "in_hours": True},
    ]
    bad = maild("takein", "--config", CONFIG, "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601" in bad.stderr


def test_render_prints_the_reply_as_rfc5322() -> None:
    done = subprocess.run([sys.executable, "-m", "maild.cli", "render", "--config", CONFIG,
                           str(CORPUS / "d055.eml")], cwd=REPO, capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    reply = email.message_from_bytes(done.stdout, policy=email.policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] and reply["Message-ID"]
    assert "HD-" in str(reply["Subject"])


def test_render_refusal_and_notice_and_ignored() -> None:
    spoofed = str(CORPUS / "d011.eml")
    refusal = maild("render", "--config", CONFIG, spoofed)
    notice = maild("render", "--config", CONFIG, "--notice", spoofed)
    assert refusal.returncode == notice.returncode == 0
    assert "referente" in refusal.stdout.lower()
    assert "To: referente.tecnico@ateneo.example.it" in notice.stdout
    ignored = maild("render", "--config", CONFIG, str(CORPUS / "d024.eml"))
    assert ignored.returncode == 0 and ignored.stdout == "" and "ignored" in ignored.stderr


def test_render_text_shows_what_the_reader_reads_in_either_language() -> None:
    refused = str(CORPUS / "d027.eml")  # the referente's address, DMARC failed
    italian = maild("render", "--config", CONFIG, "--text", "--notice", refused)
    english = maild("render", "--config", CONFIG, "--text", "--notice", "--language", "en", refused)
    assert italian.returncode == english.returncode == 0
    assert italian.stdout.startswith("To: referente.tecnico@ateneo.example.it\nSubject: Richiesta privilegiata")
    assert "perché il messaggio non ha superato i controlli sul mittente del nostro server di ricezione (DMARC " \
           "non superato)." in " ".join(italian.stdout.split())
    assert "because the message did not pass the sender checks of our receiving server (DMARC failed)." \
           in " ".join(english.stdout.split())
    assert "=\n" not in english.stdout and "dmarc=fail" not in english.stdout


_QUICK_COMMANDS = """
import json
import sys
from maild.cli import main
config, message = sys.argv[1:]
statuses = [main(["check-config", "--config", config]), main(["triage", "--config", config, message]),
            main(["takein", "--config", config, "2027-03-27T14:00:00+01:00"]),
            main(["render", "--config", config, message])]
heavy = ("sqlalchemy", "alembic", "imapclient", "apscheduler", "maild.daemon.wiring", "maild.store.core")
sys.stdout.write("\\n" + json.dumps({"exit": statuses, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def test_the_quick_commands_load_no_database_mailbox_or_scheduler_code() -> None:
    """check-config, triage, takein and render, run in one process: none imports the daemon's wiring,
    the database layer (SQLAlchemy, Alembic) or the IMAP and scheduler libraries."""
    done = subprocess.run([sys.executable, "-c", _QUICK_COMMANDS, CONFIG, str(CORPUS / "d055.eml")], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"exit": [0, 0, 0, 0], "loaded": []}
