"""Rules as tested data: each rule's own examples and counter-examples, sentences written for it.

Every example must be counted as a request by its rule, every pattern of the
rule must be needed by at least one example (a pattern no example needs goes),
and no counter-example may be counted by the rule. The labelled sets stay as
regression tests; these sentences say what each pattern is for.
"""

from __future__ import annotations

from functools import cache

import pytest

from maild.rules import Rule, Rules, load_rules
from maild.rules.canonical import canon
from maild.rules.hits import _hit, _starts_clause
from maild.rules.textclean import split_lines
from maild.settings import DEFAULT_RULES


@cache
def rules() -> Rules:
    return load_rules(DEFAULT_RULES)


RULES = {rule.id: rule for rule in rules().rules}
WITH_EXAMPLES = sorted(rule_id for rule_id, rule in RULES.items() if rule.examples)


def requested(rule: Rule, sentence: str) -> set[int]:
    """Indexes of the rule's patterns that count ``sentence`` as a request, in any zone the rule reads."""
    read = canon(split_lines(sentence), rules())
    zone = "body" if "body" in rule.zones else "subject"
    return {i for i, template in enumerate(rule.patterns)
            for match in template.matches(read.text, read.words, read.at)
            if not rule.clause_start or _starts_clause(read, read.token_at(match.start()))
            if _hit(read, zone, rule, match, rules(), None).cue is None}


def test_every_rule_has_examples_and_counter_examples() -> None:
    missing = sorted(rule_id for rule_id, rule in RULES.items() if not rule.examples or not rule.counter_examples)
    assert not missing, missing


@pytest.mark.parametrize("rule_id", WITH_EXAMPLES)
def test_each_example_is_a_request_for_its_rule(rule_id: str) -> None:
    rule = RULES[rule_id]
    for sentence in rule.examples:
        assert requested(rule, sentence), sentence


@pytest.mark.parametrize("rule_id", WITH_EXAMPLES)
def test_each_pattern_is_needed_by_an_example(rule_id: str) -> None:
    rule = RULES[rule_id]
    used = set().union(*(requested(rule, sentence) for sentence in rule.examples))
    unused = [rule.patterns[i].where for i in range(len(rule.patterns)) if i not in used]
    assert not unused, unused


@pytest.mark.parametrize("rule_id", WITH_EXAMPLES)
def test_no_counter_example_is_a_request_for_its_rule(rule_id: str) -> None:
    rule = RULES[rule_id]
    for sentence in rule.counter_examples:
        assert not requested(rule, sentence), sentence
