"""``maild pec inspect``: what maild reads in a PEC message, so an operator can check and pin its CA."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from maild.cli.output import EXIT_CONFIG, EXIT_FAULT, read_file
from maild.mail.pec import Daticert, PecFacts, SignedPart, read_pec, signed_part
from maild.mail.smime import Certificate, OpenSSLVerifier, carried_certificates, check_signature
from maild.responder import clean_line
from maild.settings import Settings


def _add_pec(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    pec = commands.add_parser("pec", help="certified mail (PEC) tools")
    sub = pec.add_subparsers(dest="pec_command", required=True, metavar="COMMAND")
    cmd = sub.add_parser("inspect", parents=[common],
                         help="kind, daticert.xml, signer and chain of a PEC message, and whether it verifies")
    cmd.add_argument("--pem", action="store_true", help="also print each certificate in PEM, to pin it")
    cmd.add_argument("file", type=Path, metavar="FILE")
    cmd.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    raw = read_file(args.file)
    if raw is None:
        return EXIT_FAULT
    facts = read_pec(raw, settings.limits)
    if facts is None:
        print(f"{args.file}: not PEC (no X-Ricevuta, X-Trasporto or X-Riferimento-Message-ID header field)")
        return EXIT_CONFIG
    print("\n".join(inspect_lines(raw, facts, settings, pem=args.pem)))
    return 0


def inspect_lines(raw: bytes, facts: PecFacts, settings: Settings, *, pem: bool = False) -> list[str]:
    """The report: the message's facts, daticert.xml, the signature's verdict and every certificate it carries."""
    lines = [
        f"kind                {facts.kind.value}" + (f" ({facts.receipt_type})" if facts.receipt_type else ""),
        f"envelope From       {facts.envelope_from or '-'} (provider {facts.provider or '-'})",
        f"Per conto di        {facts.per_conto_di or '-'}",
        f"inner From          {facts.inner_from.addr if facts.inner_from else '-'}",
        f"sender candidate    {facts.certified_sender_candidate or '- (daticert, Per conto di, inner From disagree)'}",
        f"reply to            {facts.reply_to or '-'}",
        f"refers to           {facts.refers_to or '-'}",
        f"envelope date       {_iso(facts.envelope_date)}",
        f"subject             {clean_line(facts.original_subject, 200)}",
        f"defects             {', '.join(facts.defects) or 'none'}",
        "", "daticert.xml", *_daticert_lines(facts.daticert), "",
    ]
    verifier = OpenSSLVerifier(settings.pec.ca_file) if settings.pec.ca_file is not None else None
    check = check_signature(raw, facts, verifier)
    where = f"against {settings.pec.ca_file}" if verifier else "(no [pec] ca_file: only what the message carries)"
    lines += [f"signature           {check.status.value} {where}", f"                    {check.reason}"]
    certificates = check.certificates or _carried(raw)
    signer = check.signer.sha256 if check.signer else None
    lines += ["", f"certificates carried ({len(certificates)})"]
    for cert in certificates:
        lines += _certificate_lines(cert, signer=cert.sha256 == signer or _looks_like_signer(cert, facts), pem=pem)
    if verifier is not None:
        lines += ["", f"trusted in {settings.pec.ca_file} ({len(verifier.trusted)})"]
        for cert in verifier.trusted:
            lines.append(f"  {clean_line(cert.subject, 200)}  SHA-256 {cert.sha256}")
    return lines


def _carried(raw: bytes) -> tuple[Certificate, ...]:
    found = signed_part(raw)
    return carried_certificates(found.signature) if isinstance(found, SignedPart) else ()


def _looks_like_signer(cert: Certificate, facts: PecFacts) -> bool:
    return not cert.ca and facts.envelope_from.lower() in {e.lower() for e in cert.emails}


def _certificate_lines(cert: Certificate, *, signer: bool, pem: bool) -> list[str]:
    lines = [
        f"  {'signer' if signer else 'CA' if cert.ca else 'certificate'}",
        f"    subject         {cert.subject}",
        f"    issuer          {cert.issuer}",
        f"    valid           {_iso(cert.not_before)} to {_iso(cert.not_after)}",
        f"    SHA-256         {cert.sha256}",
        f"    e-mail          {', '.join(cert.emails) or '-'}",
    ]
    if pem:
        lines += [f"    {line}" for line in cert.pem.splitlines()]
    return lines


def _daticert_lines(d: Daticert | None) -> list[str]:
    if d is None:
        return ["  none"]
    fields = (
        ("tipo", d.tipo), ("errore", d.errore), ("mittente", d.mittente),
        ("destinatari", ", ".join(f"{r.addr} ({r.tipo})" for r in d.destinatari)), ("risposte", d.risposte),
        ("oggetto", d.oggetto), ("gestore-emittente", d.gestore_emittente), ("data", _iso(d.data)),
        ("identificativo", d.identificativo), ("msgid", d.msgid), ("ricevuta", d.ricevuta),
        ("consegna", d.consegna), ("ricezione", ", ".join(d.ricezione)), ("errore-esteso", d.errore_esteso),
    )
    return [f"  {name:<18}{clean_line(value, 300)}" for name, value in fields if value]


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "-"


PEC_COMMANDS = (_add_pec,)
