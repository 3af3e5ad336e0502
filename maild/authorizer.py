"""Authorization of privileged requests (password resets, mailbox lifecycle).

A privileged request is authorized only when all of these hold, and every
check that fails is named in the reasons:

1. the From header holds exactly one address, unambiguously;
2. that address (case-insensitive, never the display name, never Reply-To,
   Sender or the body) is the Administration's referente or a delegate;
3. the *topmost* Authentication-Results header whose authserv-id is exactly a
   trusted one reports ``dmarc=pass``, or ``dkim=pass`` with ``header.d``
   equal to the From domain. Headers from any other authserv-id are ignored:
   anyone can write them. An explicit DMARC failure is final.

Fail closed: anything unreadable or missing means "not authorized".

A request inside a PEC envelope is judged by ``authorize_pec`` instead: the
provider's verified signature and the certified sender stand in for the
Authentication-Results, which there only authenticate the provider's envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from maild.mail.authresults import AuthResults, parse_auth_results
from maild.mail.pec import PecFacts, PecKind
from maild.mail.smime import SignatureCheck, SignatureStatus
from maild.records import AuthDecision, Category, ParsedMessage, PinRole, RefusalCause
from maild.settings import Administration

_DMARC_FAILURES = frozenset({"fail", "permerror", "quarantine", "reject"})


def authorize(
    message: ParsedMessage, administration: Administration | None, trusted_ids: Iterable[str]
) -> AuthDecision:
    """Decide whether the sender may make a privileged request."""
    refused = _sender_check(message, administration)
    if refused is not None:
        return AuthDecision(authorized=False, reasons=(refused[1],), cause=refused[0])
    sender = message.from_addresses[0]
    cause, auth_reason = _authentication_check(message.auth_results, frozenset(trusted_ids), sender.domain)
    who = f"auth: From {sender.addr} is an authorized sender of {administration.name}"  # type: ignore[union-attr]
    return AuthDecision(authorized=cause is None, reasons=(who, auth_reason), cause=cause)


def authorize_pec(
    facts: PecFacts, check: SignatureCheck, administration: Administration | None, helpdesk: frozenset[str]
) -> AuthDecision:
    """A privileged request in a PEC envelope: a valid provider signature and a certified sender of the
    Administration, in an envelope addressed to the help desk (``helpdesk``: its addresses, lower case)."""
    if facts.kind is not PecKind.ENVELOPE:
        return AuthDecision(False, ("auth: a PEC anomaly envelope carries uncertified mail: it authorizes nothing",),
                            RefusalCause.PEC_ANOMALY)
    found: list[tuple[RefusalCause, str]] = []
    if check.status is SignatureStatus.NOT_CHECKED:
        found.append((RefusalCause.PEC_SIGNATURE, f"auth: {check.reason}; no PEC envelope authorizes anything "
                                                  "without it"))
    elif check.status is not SignatureStatus.VALID:
        found.append((RefusalCause.PEC_SIGNATURE, f"auth: {check.reason}"))
    sender = facts.certified_sender_candidate
    if sender is None:
        found.append((RefusalCause.PEC_NO_SENDER, "auth: no certified sender: daticert mittente, the envelope's "
                                                  "Per conto di and the inner From do not agree"))
    elif administration is None:
        found.append((RefusalCause.NO_ADMINISTRATION, "auth: the message belongs to no configured Administration"))
    elif sender.lower() not in administration.pec:
        found.append((RefusalCause.PEC_NOT_AUTHORIZED, f"auth: certified sender {sender} not authorized: not a PEC "
                                                       f"address of {administration.name}"))
    recipients = {r.addr.lower() for r in facts.daticert.destinatari} if facts.daticert else set()
    if not recipients & helpdesk:
        found.append((RefusalCause.PEC_NOT_ADDRESSED, "auth: PEC envelope not addressed to the help desk (daticert "
                      f"destinatari: {', '.join(sorted(recipients)) or 'none'}): a certified message cannot be "
                      "replayed here"))
    if found:
        return AuthDecision(False, tuple(reason for _, reason in found), found[0][0])
    assert administration is not None and sender is not None
    return AuthDecision(True, (f"auth: {check.reason}",
                               f"auth: certified sender {sender} is a PEC address of {administration.name}"))


def _sender_check(message: ParsedMessage, administration: Administration | None
                  ) -> tuple[RefusalCause, str] | None:
    """The refusal on the sender alone, or None when the sender is allowed."""
    if message.from_ambiguous:
        return RefusalCause.FROM_AMBIGUOUS, "auth: the From header can be read in more than one way; no single sender"
    if len(message.from_addresses) != 1:
        return (RefusalCause.FROM_NOT_ONE,
                f"auth: the From header holds {len(message.from_addresses)} addresses, not exactly one")
    if administration is None:
        return RefusalCause.NO_ADMINISTRATION, "auth: the message belongs to no configured Administration"
    sender = message.from_addresses[0]
    if sender.key not in administration.authorized_senders:
        return (RefusalCause.NOT_AUTHORIZED_SENDER,
                f"auth: From {sender.addr} is not the referente or a delegate of {administration.name}")
    return None


def _authentication_check(
    headers: tuple[str, ...], trusted: frozenset[str], from_domain: str
) -> tuple[RefusalCause | None, str]:
    """The refusal (None when authenticated) and its reason."""
    header = _topmost_trusted(headers, trusted)
    if header is None:
        return RefusalCause.NOT_CHECKED, "auth: no Authentication-Results header from a trusted authserv-id"
    position, results = header
    where = f"Authentication-Results #{position} ({results.authserv_id})"
    dmarc = [r.result for r in results.results if r.method == "dmarc"]
    if any(result in _DMARC_FAILURES for result in dmarc):
        failed = next(r for r in dmarc if r in _DMARC_FAILURES)
        return RefusalCause.DMARC_FAILED, f"auth: {where} reports dmarc={failed}"
    if "pass" in dmarc:
        return None, f"auth: {where} reports dmarc=pass"
    for result in results.results:
        if result.method == "dkim" and result.result == "pass":
            domain = (result.prop("header.d") or "").lower()
            if domain == from_domain:
                return None, f"auth: {where} reports dkim=pass with header.d={domain} aligned with From"
    return (RefusalCause.NOT_ALIGNED,
            f"auth: {where} reports neither dmarc=pass nor dkim=pass aligned with {from_domain}")


def _topmost_trusted(headers: tuple[str, ...], trusted: frozenset[str]) -> tuple[int, AuthResults] | None:
    for position, value in enumerate(headers, start=1):
        results = parse_auth_results(value)
        if results is not None and results.authserv_id in trusted:
            return position, results
    return None


def resolve_administration(
    message: ParsedMessage, administrations: tuple[Administration, ...]
) -> tuple[Administration | None, str]:
    """Which Administration a message belongs to, and why.

    With one Administration every message belongs to it. With several, the
    help desk alias written to wins, then the sender's domain, then the
    sender being a referente or delegate; no match means none (fail closed).
    """
    if len(administrations) == 1:
        return administrations[0], f"administration: {administrations[0].name} (the only one configured)"
    recipients = {a.key for a in (*message.to, *message.cc)}
    senders = message.from_addresses
    rules: tuple[tuple[str, Callable[[Administration], bool]], ...] = (
        ("it was written to its alias", lambda adm: bool(recipients & {x.lower() for x in adm.addresses})),
        ("the sender's domain is its own",
         lambda adm: any(_domain_matches(s.domain, adm.domains) for s in senders)),
        ("the sender is its referente or a delegate",
         lambda adm: any(s.key in adm.authorized_senders or s.key in adm.pec for s in senders)),
    )
    for why, matches in rules:
        found = [adm for adm in administrations if matches(adm)]
        if len(found) == 1:
            return found[0], f"administration: {found[0].name} ({why})"
        if len(found) > 1:
            return None, f"administration: ambiguous, {why} for {', '.join(a.name for a in found)}"
    return None, "administration: none matches the recipients or the sender"


def _domain_matches(domain: str, domains: tuple[str, ...]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


def authorize_role(category: Category, role: PinRole, administration: Administration, reason: str) -> AuthDecision:
    """A request by PIN (web, phone) or by a fax whose signature an operator checked.

    The referente's role opens every category; the users' role only the
    ordinary ones, so a privileged request with it is refused like a
    privileged e-mail from someone who is not the referente or a delegate.
    """
    if role is PinRole.REFERENTE:
        return AuthDecision(True, (reason, f"auth: the referente's role of {administration.name} opens every category"))
    if not category.privileged:
        return AuthDecision(True, (reason, f"auth: the users' role of {administration.name} opens {category.value}"))
    return AuthDecision(False, (reason, f"auth: the users' role of {administration.name} opens only anagrafica "
                                        f"and other, not {category.value}"), RefusalCause.USERS_ROLE)


def answer_address(administration: Administration, role: PinRole, typed: str) -> str | None:
    """Where the answer to a PIN request goes: never to an address a stranger could type.

    With the referente's role, the referente's configured address whatever was
    typed; with the users' role the typed address, only when it is in one of
    the Administration's domains. None when there is nowhere safe to answer.
    """
    if role is PinRole.REFERENTE:
        return administration.referente
    address = typed.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not _domain_matches(domain.lower(), administration.domains):
        return None
    return f"{local}@{domain.lower()}"
