"""The screening data: validated when loaded, machine addresses, JSON records, and gates that hide nothing.

The screener runs a pattern only on a text that holds what the pattern needs (its
``needs``, ``any_of`` and ``fragment``, read from the pattern itself) and only the
patterns a text's words name (``FieldIndex``): these tests compare both with a plain
search of every pattern, on real messages and on texts made of the data's own words.
"""

from __future__ import annotations

import copy
import pickle
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.errors import RulesError
from maild.records import ScreenKind
from maild.rules.screening import (
    Pattern,
    ScreeningRules,
    is_machine_address,
    json_notification,
    load_screening,
    parse_screening,
    words_of,
)
from maild.settings import DEFAULT_SCREENING
from tests.factories import REPO


@cache
def rules() -> ScreeningRules:
    return load_screening()


def data() -> dict[str, Any]:
    with DEFAULT_SCREENING.open("rb") as fh:
        loaded: dict[str, Any] = tomllib.load(fh)
    return loaded


# --------------------------------------------------------------------------
# The file as shipped


def test_the_shipped_file_loads_and_uses_every_kind_but_own_mail() -> None:
    loaded = rules()
    assert loaded.count == len(loaded.addresses) + len(loaded.rules) + len(loaded.human) + len(loaded.json) >= 40
    kinds = {a.kind for a in loaded.addresses} | {r.kind for r in loaded.rules} | {j.kind for j in loaded.json}
    assert kinds == set(ScreenKind) - {ScreenKind.OWN_MAIL}  # own mail is the settings' business
    assert {"subject", "body", "attachment", "link"} <= set(loaded.fields)


def test_the_compiled_data_pickles_for_a_worker_process() -> None:
    copied = pickle.loads(pickle.dumps(rules()))
    assert copied.count == rules().count
    assert is_machine_address("MAILER-DAEMON@mx.example.it", copied) == is_machine_address("MAILER-DAEMON@x", rules())


def test_every_rule_says_why_and_shows_both_sides() -> None:
    for table in ("address", "rule", "human", "json"):
        for item in data()[table]:
            assert item["reason"].strip() and item["examples"] and item["counter_examples"], item["id"]


# --------------------------------------------------------------------------
# Validation: every fault is a RulesError naming the file and the key


def broken(change: Any) -> str:
    """The RulesError message of the shipped data after ``change(data)``."""
    tampered = copy.deepcopy(data())
    change(tampered)
    with pytest.raises(RulesError) as caught:
        parse_screening(tampered, "screening.toml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(version=2), "version: must be 1"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d["engine"].pop("max_body_chars"), "engine.max_body_chars: missing"),
        (lambda d: d["engine"].update(max_body_chars=0), "engine.max_body_chars: must be a positive integer"),
        (lambda d: d["rule"][0].update(kind="junk"), "rule[0].kind: must be one of"),
        (lambda d: d["rule"][0].update(on=["footer"]), "rule[0].on: 'footer'"),
        (lambda d: d["rule"][0].update(colour=1), "rule[0].colour: unknown key"),
        (lambda d: d["rule"][0].pop("reason"), "rule[0].reason: missing"),
        (lambda d: d["rule"][0].update(patterns=["(unclosed"]), "rule[0].patterns[0]: not a valid regular expression"),
        (lambda d: d["rule"][0].update(patterns=["Upper"]), "rule[0].patterns[0]: write it in lower case"),
        (lambda d: d["rule"][0].update(patterns=["È stato"]), "rule[0].patterns[0]: write it in lower case"),
        (lambda d: d["rule"][0].update(examples=[]), "rule[0].examples: give at least one"),
        (lambda d: d["rule"][0].update(counter_examples=["anything at all"]),
         "rule[0].counter_examples: list_header matches"),
        (lambda d: d["address"][0].update(examples=["mario.rossi@example.it"]),
         "address[0].examples: mail_system does not match"),
        (lambda d: d["rule"][8].update(**{"with": ["nobody"]}),
         "rule[8].with: no address, rule or json shape is called nobody"),
        (lambda d: d["rule"][0].update(**{"with": ["mail_system"]}),
         "rule[0].with: a rule that counts alone needs no partner"),
        (lambda d: d["rule"][0].update(unless=["nobody"]), "rule[0].unless: no human mark is called nobody"),
        (lambda d: d["rule"][8].update(unless=["greeting"]), "rule[8].unless: only a rule that counts alone"),
        (lambda d: d["rule"][1].update(id="list_header"), "id: used twice: list_header"),
        (lambda d: d["human"][0].update(on="body"), "human[0].on: must be one of lead, subject"),
        (lambda d: d["human"][0].update(kinds=["junk"]), "human[0].kinds: must be one of"),
        (lambda d: d["json"][0].update(path="a..b"), "json[0].path: an empty key"),
        (lambda d: d["json"][0].update(examples=['{"notificationType": "Open"}']),
         "json[0].examples: ses_bounce does not match"),
        (lambda d: d["address"][0].update(id="Mail System"), "address[0].id: lower-case letters"),
    ],
)
def test_a_fault_in_the_data_names_the_file_and_the_key(change: Any, expected: str) -> None:
    message = broken(change)
    assert message.startswith("screening.toml: ") and expected in message, message


def test_an_unreadable_or_invalid_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read screening file"):
        load_screening(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"bad\.toml: not valid TOML"):
        load_screening(bad)


# --------------------------------------------------------------------------
# Machine addresses (the outbox never writes to them)


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("MAILER-DAEMON@mx.comune.example.it", "mail_system"),
        ("postmaster@ateneo.example.it", "mail_system"),
        ("post_master@relay.example.org", "mail_system"),
        ("MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@comune.example.it", "mail_system"),
        ("docenti-bounces+mario=example.it@liste.example.it", "list_envelope"),
        ("seminari-request@liste.example.it", "list_envelope"),
        ("owner-tecnici@liste.example.it", "list_envelope"),
        ("tecnici-admin@liste.example.it", "list_admin"),
        ("noreply@notifiche.example.it", "no_reply"),
        ("no-reply@example.com", "no_reply"),
        ("Do-Not-Reply@example.org", "no_reply"),
        ("bounce-7781@esp.example.net", "bounce_mailbox"),
        ("posta-certificata@pec.provider.example.it", "pec_system"),
        ("Virus_Alert_Gateway@example.org", "mail_filter"),
    ],
)
def test_machine_addresses_are_named_with_their_rule(address: str, rule: str) -> None:
    reason = is_machine_address(address, rules())
    assert reason is not None and reason.endswith(f"({rule})")


@pytest.mark.parametrize(
    "address",
    [
        "mario.rossi@comune.example.it", "postale@example.it", "bounce.castle@example.org", "admin@example.it",
        "request@example.it", "reply@example.com", "noreen@example.ie", '"Mario Rossi"@example.it',
        "jdöe@mächine.example", "", "not an address",
    ],
)
def test_people_and_odd_addresses_are_not_machines(address: str) -> None:
    assert is_machine_address(address, rules()) is None


# --------------------------------------------------------------------------
# JSON notification bodies


def shape_of(body: str) -> str | None:
    loaded = rules()
    found = json_notification(body, loaded.json, max_chars=loaded.max_json_chars, envelopes=loaded.json_envelopes)
    return None if found is None else found[0].id


def test_a_record_inside_an_sns_envelope_is_read_first() -> None:
    inner = '{\\"notificationType\\": \\"Complaint\\", \\"complaint\\": {}}'
    body = '{"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": "' + inner + '"}\n--\nUnsubscribe: https://x'
    assert shape_of(body) == "ses_complaint"
    assert shape_of('{"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": "hello"}') == "sns_notification"


@pytest.mark.parametrize(
    "body",
    [
        'Buongiorno, mi arriva questo: {"notificationType": "Bounce"}',
        '{"notificationType": "Bounce"',  # cut: not JSON
        '{"notificationType": true}',
        "[]",
        "{" + " " * 200_000 + '"notificationType": "Bounce"}',  # longer than max_json_chars: not read
        "",
    ],
)
def test_what_is_not_a_notification_record(body: str) -> None:
    assert shape_of(body) is None


# --------------------------------------------------------------------------
# The gates: a pattern not run could never have matched


def test_what_a_pattern_needs_is_read_from_it() -> None:
    cases = {
        r"\bcould not be delivered\b": ({"could", "not", "be", "delivered"}, set(), "could not be delivered"),
        r"\b(your|the) message (was )?returned": ({"message"}, {"your", "the"}, " message "),
        r"^\s*(accettazione|consegna)\s*:": (set(), {"accettazione", "consegna"}, ":"),
        r"\bfoo\s*bar": (set(), set(), "foo"),  # "foobar" is one word: neither is needed whole
        r"undeliver(able|ed)": (set(), set(), "undeliver"),  # no \b: may start inside a word
        r"a|b": (set(), set(), ""),
        r"\bfoo*+ bar\b": ({"bar"}, set(), " bar"),  # possessive: "fo bar" matches, so "foo" is not needed
        r"\bmessaggio(?<!mio messaggio) non\b": ({"messaggio", "non"}, set(), "messaggio non"),
        r"\bsaid:\s*[45]\d\d\b": ({"said"}, set(), "said:"),
    }
    for source, (needs, any_of, fragment) in cases.items():
        pattern = Pattern.compile(source)
        assert (set(pattern.needs), set(pattern.any_of), pattern.fragment) == (needs, any_of, fragment), source


def every_pattern() -> list[tuple[str, Pattern]]:
    loaded = rules()
    return [(r.id, p) for r in loaded.rules for p in r.patterns] + [(h.id, p) for h in loaded.human for p in h.patterns]


def plain(pattern: Pattern, text: str) -> bool:
    """The pattern's own regex over the whole text, ``\\b`` put back: no gate, no index."""
    source = ("\\b" if pattern.word_start else "") + pattern.regex.pattern
    return re.search(source, text, re.MULTILINE) is not None


def hidden_by_the_gates(text: str) -> list[str]:
    """Patterns a plain search finds in ``text`` that the gates or the field index would not run."""
    lower = text.lower()
    words = words_of(lower)
    loaded = rules()
    missed = [ident for ident, p in every_pattern() if plain(p, lower) and not (p.may_match(lower, words)
                                                                                  and p.find(lower))]
    for name, index in loaded.fields.items():
        scanned = index.scan(lower, words)
        missed += [f"{name}: {r.id}" for position, r in enumerate(loaded.rules)
                   if name in r.on and position not in scanned and any(plain(p, lower) for p in r.patterns)]
    return missed


def real_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted((REPO / "tests" / "data").glob("*/*.eml"))]
    for table in ("rule", "human"):
        for item in data()[table]:
            texts += item["examples"] + item["counter_examples"]
    return texts


def test_the_gates_hide_no_match_in_real_messages_and_in_the_examples() -> None:
    for text in real_texts():
        assert hidden_by_the_gates(text) == [], text[:80]


@cache
def vocabulary() -> tuple[str, ...]:
    return tuple(sorted(set(re.findall(r"[a-zà-ù']+", DEFAULT_SCREENING.read_text(encoding="utf-8").lower()))))


@st.composite
def data_texts(draw: st.DrawFn) -> str:
    """Texts made of the data's own words, digits, punctuation and line breaks."""
    pieces = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            pieces.append(draw(st.sampled_from([".", ":", "-", "\n", "?", "<", "--", "550", "5.1.1", "http://x"])))
        else:
            pieces.append(draw(st.sampled_from(vocabulary())))
    glue = draw(st.sampled_from([" ", "", "  "]))
    return glue.join(pieces) if draw(st.booleans()) else " ".join(pieces)


@settings(max_examples=400, deadline=None)
@given(data_texts())
def test_the_gates_hide_no_match_in_texts_of_the_datas_words(text: str) -> None:
    assert hidden_by_the_gates(text) == []
