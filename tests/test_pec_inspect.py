"""``maild pec inspect``: what an operator reads before pinning a PEC CA in ca_file."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from maild.cli import main
from maild.mail.smime import fingerprint
from tests import pec_kit
from tests.factories import REFERENTE
from tests.pec_kit import Pec


def write_config(tmp_path: Path, ca_file: Path | None) -> Path:
    path = tmp_path / "maild.toml"
    pec = f'[pec]\nca_file = "{ca_file}"\n' if ca_file else ""
    path.write_text('[helpdesk]\naddress = "helpdesk-posta@servizi.example.it"\nname = "HD"\n'
                    'trusted_authserv_ids = ["mx.servizi.example.it"]\n'
                    f'[[administrations]]\nname = "Ateneo"\nreferente = "{REFERENTE}"\n' + pec)
    return path


def inspect(tmp_path: Path, raw: bytes, ca_file: Path | None, capsys: pytest.CaptureFixture[str],
            *extra: str) -> tuple[int, str]:
    message = tmp_path / "pec.eml"
    message.write_bytes(raw)
    status = main(["pec", "inspect", *extra, "--config", str(write_config(tmp_path, ca_file)), str(message)])
    return status, capsys.readouterr().out


def test_inspect_verifies_against_ca_file_and_shows_the_chain(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, out = inspect(tmp_path, pec_kit.build(Pec()), pec_kit.pki().write_root(tmp_path), capsys, "--pem")
    assert status == 0
    assert "kind                envelope" in out
    assert "mittente          referente.tecnico@pec.ateneo.example.it" in out
    assert "signature           valid against" in out
    intermediate = pec_kit.pki().intermediate
    assert f"SHA-256         {fingerprint(intermediate.certificate.public_bytes(Encoding.DER))}" in out
    assert "CN=AgID CA1 di prova" in out
    assert "-----BEGIN CERTIFICATE-----" in out
    assert "  signer\n    subject         C=IT, O=Gestore di prova S.p.A." in out


def test_inspect_without_ca_file_shows_what_the_message_carries(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    status, out = inspect(tmp_path, pec_kit.build(Pec(kind="receipt", receipt_type="errore-consegna")), None, capsys)
    assert status == 0
    assert "kind                receipt (errore-consegna)" in out
    assert "signature           not_checked (no [pec] ca_file" in out
    assert "certificates carried (2)" in out
    assert "-----BEGIN CERTIFICATE-----" not in out


def test_inspect_of_ordinary_mail_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = inspect(tmp_path, b"From: a@b.example\r\nSubject: x\r\n\r\nciao\r\n", None, capsys)
    assert status == 2
    assert "not PEC" in out
