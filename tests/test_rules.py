"""The compiled rules: a template skipped by the word index could never have matched.

The classifier runs only the templates the index names for a text, and each
one only where a word its first piece starts with does, so neither may leave
out a match: these tests run every template on real messages and on generated
texts made of the rules' own words, and compare with a plain search of the
whole text. They also pin what the compilation does to gaps and stems.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.rules import Rules, Template, load_rules, loader
from maild.rules.patterns import factored
from maild.rules.textclean import fold
from maild.settings import DEFAULT_RULES
from tests.factories import CORPUS, REPO

_CANON_TOKEN = re.compile(r"[a-z0-9]+|[.,;:!?|]")


@cache
def rules() -> Rules:
    return load_rules(DEFAULT_RULES)


@cache
def vocabulary() -> tuple[str, ...]:
    """Every word of the rules file's vocabulary and templates, stems without their ``*``."""
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    words = set(re.findall(r"[a-z0-9]+\*?", fold(text)))
    return tuple(sorted(words))


def canonical(text: str) -> tuple[str, tuple[str, ...]]:
    """A canonical text as the classifier builds it: words and clause marks, single spaces."""
    tokens = tuple(_CANON_TOKEN.findall(fold(text)))
    return " ".join(tokens), tokens


def starts_of(tokens: tuple[str, ...]) -> list[int]:
    """Where each token starts in the tokens joined by single spaces."""
    return [sum(len(t) + 1 for t in tokens[:i]) for i in range(len(tokens))]


def positions(text: str, tokens: tuple[str, ...]) -> dict[str, list[int]]:
    """``Lexicon.positions`` of a canonical text."""
    return rules().lexicon.positions(text, tokens, starts_of(tokens))


def every_template() -> list[Template]:
    return [template for _rule, template in rules().templates]


def missed_by_the_index(text: str, tokens: tuple[str, ...]) -> list[str]:
    """Templates that match ``text`` although the index does not name them."""
    words = frozenset(positions(text, tokens))
    named = set(rules().index.candidates(words))
    missed = [template.pattern.pattern[:80] for position, template in enumerate(every_template())
              if position not in named and template.pattern.search(text)]
    adoption = rules().adoption
    named_phrases = set(adoption.index.candidates(words))
    missed += [phrase.pattern.pattern[:80] for position, phrase in enumerate(adoption.phrases)
               if position not in named_phrases and phrase.pattern.search(text)]
    return missed


def test_every_template_has_needs_and_is_filed_in_the_index() -> None:
    templates = every_template()
    assert templates and all(template.needs for template in templates)
    filed = 0
    for found in rules().index.filed_of.values():
        filed |= found
    assert filed == (1 << len(templates)) - 1  # bit p: the template at position p


@pytest.mark.parametrize("folder", ["corpus", "heldout"])
def test_the_index_names_every_template_that_matches_a_real_message(folder: str) -> None:
    path = CORPUS if folder == "corpus" else REPO / "tests" / "data" / "heldout"
    matched = 0
    for message in sorted(path.glob("*.eml")):
        text, tokens = canonical(message.read_text(encoding="utf-8", errors="replace"))
        assert missed_by_the_index(text, tokens) == [], message.name
        matched += any(t.pattern.search(text) for t in every_template())
    assert matched > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(vocabulary()), min_size=1, max_size=30))
def test_the_index_names_in_file_order_each_filed_template_whose_needs_the_words_meet(words: list[str]) -> None:
    index = rules().index
    present = frozenset(words)
    met = [any(word in index.needs_of and index.needs_of[word] >> n & 1 for word in present)
           for n in range(max(w.bit_length() for w in index.wants))]
    filed = [any(index.filed_of.get(word, 0) >> p & 1 for word in present) for p in range(len(index.wants))]
    plain = [p for p, wants in enumerate(index.wants)
             if filed[p] and all(met[n] for n in range(wants.bit_length()) if wants >> n & 1)]
    assert index.candidates(present) == plain


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    """Texts made of the rules' own words (stems with endings), some fillers and clause marks."""
    pieces = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            pieces.append(draw(st.sampled_from([".", ",", "|", "?"])))
        elif kind == 1:
            pieces.append(draw(st.sampled_from(["xyz", "qualcosa", "the", "di", "la", "non", "emailaddr"])))
        else:
            word = draw(st.sampled_from(vocabulary()))
            ending = draw(st.sampled_from(["", "o", "a", "are", "ata", "ed", "s"]))
            pieces.append(word[:-1] + ending if word.endswith("*") else word)
    return " ".join(pieces)


@settings(max_examples=400, deadline=None)
@given(rule_texts())
def test_the_index_names_every_template_that_matches_a_text_of_rule_words(text: str) -> None:
    canon, tokens = canonical(text)
    assert missed_by_the_index(canon, tokens) == []


def found_by_a_plain_search(text: str, tokens: tuple[str, ...]) -> list[str]:
    """Templates whose ``matches`` (tried only where their first piece's words start) differ from a
    ``finditer`` over the whole text, in any span or group."""
    at = positions(text, tokens)
    words = frozenset(at)
    every = [*every_template(), *rules().adoption.phrases]

    def spans(found: Iterable[re.Match[str]]) -> list[tuple[int, ...]]:
        return [(*m.span(), *(i for g in range(1, m.re.groups + 1) for i in m.span(g))) for m in found]

    return [t.pattern.pattern[:80] for t in every
            if spans(t.matches(text, words, at)) != spans(t.pattern.finditer(text))]


@pytest.mark.parametrize("folder", ["corpus", "heldout"])
def test_templates_tried_at_their_first_words_find_what_a_plain_search_finds_in_real_messages(
    folder: str,
) -> None:
    path = CORPUS if folder == "corpus" else REPO / "tests" / "data" / "heldout"
    for message in sorted(path.glob("*.eml")):
        text, tokens = canonical(message.read_text(encoding="utf-8", errors="replace"))
        assert found_by_a_plain_search(text, tokens) == [], message.name


@settings(max_examples=400, deadline=None)
@given(rule_texts())
def test_templates_tried_at_their_first_words_find_what_a_plain_search_finds(text: str) -> None:
    canon, tokens = canonical(text)
    assert found_by_a_plain_search(canon, tokens) == []


@cache
def flat_rules() -> Rules:
    """The rules with each vocabulary class a flat alternation of its terms, as the loader wrote it before."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "factored", lambda regexes: "(?:" + "|".join(regexes) + ")")
        flat = load_rules(DEFAULT_RULES)
    assert flat.templates[0][1].source != rules().templates[0][1].source
    return flat


def found_otherwise_than_flat(text: str) -> list[str]:
    """The templates and template lists whose matches (spans and groups) in ``text`` differ with flat classes."""
    def spans(pattern: re.Pattern[str]) -> list[tuple[int, ...]]:
        return [(*m.span(), *(i for g in range(1, m.re.groups + 1) for i in m.span(g))) for m in pattern.finditer(text)]

    def patterns(r: Rules) -> list[re.Pattern[str]]:
        lists = [r.acts.question_openers, r.acts.request_cues, r.acts.no_request, r.adoption.blockers,
                 r.adoption.limits, r.negation.exceptions, r.negation.post, *(g.pattern for g in r.negation.cues)]
        return [*(t.pattern for _rule, t in r.templates), *(p.pattern for p in r.adoption.phrases),
                *(p for p in lists if p is not None)]

    pairs = zip(patterns(rules()), patterns(flat_rules()), strict=True)
    return [flat.pattern[:80] for factored, flat in pairs if spans(factored) != spans(flat)]


@pytest.mark.parametrize("folder", ["corpus", "heldout"])
def test_classes_sharing_their_leading_letters_find_what_flat_classes_find_in_real_messages(folder: str) -> None:
    path = CORPUS if folder == "corpus" else REPO / "tests" / "data" / "heldout"
    for message in sorted(path.glob("*.eml")):
        text, _tokens = canonical(message.read_text(encoding="utf-8", errors="replace"))
        assert found_otherwise_than_flat(text) == [], message.name


@settings(max_examples=300, deadline=None)
@given(rule_texts())
def test_classes_sharing_their_leading_letters_find_what_flat_classes_find(text: str) -> None:
    assert found_otherwise_than_flat(canonical(text)[0]) == []


TERMS = st.lists(st.text(alphabet="ab ", min_size=1, max_size=4).filter(lambda t: t[0] != " ")
                 .map(lambda t: t.rstrip() or "a") | st.sampled_from(["a", "ab", "b"]).map(lambda t: t + "[a-z0-9]*"),
                 min_size=1, max_size=8, unique=True)


@settings(max_examples=500, deadline=None)
@given(TERMS, st.text(alphabet="ab c", max_size=20))
def test_a_factored_alternation_matches_as_the_flat_one_even_when_what_follows_backtracks(
    terms: list[str], text: str,
) -> None:
    def spans(alternation: str) -> list[tuple[int, int, int, int]]:
        pattern = re.compile(f"(?P<x>{alternation})(?: (?P<y>{alternation}))?(?![a-z0-9])")
        return [(*m.span("x"), *m.span("y")) for m in pattern.finditer(text)]

    assert spans(factored(terms)) == spans("(?:" + "|".join(terms) + ")")


def template_lists() -> list[re.Pattern[str]]:
    """Every template list of the rules: each regex opens with a lookahead on the words it can start with."""
    r = rules()
    lists = [r.acts.question_openers, r.acts.request_cues, r.acts.no_request, r.adoption.blockers,
             r.adoption.limits, r.negation.exceptions, r.negation.post, *(group.pattern for group in r.negation.cues)]
    return [pattern for pattern in lists if pattern is not None]


def without_lookahead(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """The same template list as a bare alternation: the lookahead on its first words removed."""
    source = pattern.pattern
    start = source.index("(?=")
    depth = 0
    for end in range(start, len(source)):
        depth += {"(": 1, ")": -1}.get(source[end], 0) if source[end - 1] != "\\" else 0
        if depth == 0:
            return re.compile(source[:start] + source[end + 1:], pattern.flags)
    raise AssertionError(f"unbalanced lookahead in {source[:80]}")


def lists_finding_otherwise(text: str) -> list[str]:
    return [p.pattern[:80] for p in template_lists()
            if [m.span() for m in p.finditer(text)] != [m.span() for m in without_lookahead(p).finditer(text)]]


@pytest.mark.parametrize("folder", ["corpus", "heldout"])
def test_a_template_list_finds_what_its_bare_alternation_finds_in_real_messages(folder: str) -> None:
    path = CORPUS if folder == "corpus" else REPO / "tests" / "data" / "heldout"
    found = 0
    for message in sorted(path.glob("*.eml")):
        text, _tokens = canonical(message.read_text(encoding="utf-8", errors="replace"))
        assert lists_finding_otherwise(text) == [], message.name
        found += sum(1 for p in template_lists() if p.search(text))
    assert found > 0


@settings(max_examples=300, deadline=None)
@given(rule_texts())
def test_a_template_list_finds_what_its_bare_alternation_finds(text: str) -> None:
    assert lists_finding_otherwise(text) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(vocabulary()), min_size=1, max_size=30), st.sampled_from(["", "o", "ione"]))
def test_lexicon_positions_are_where_each_token_and_each_stem_it_starts_with_start(
    words: list[str], ending: str,
) -> None:
    tokens = tuple(w[:-1] + ending if w.endswith("*") else w for w in words)
    tokens = tuple(t for t in tokens if t)
    text = " ".join(tokens)
    starts = starts_of(tokens)
    stems = set(rules().lexicon.implied)
    expected: dict[str, list[int]] = {}
    for token, start in zip(tokens, starts, strict=True):
        for word in [token, *(f"{stem}*" for stem in sorted(stems) if token.startswith(stem))]:
            expected.setdefault(word, []).append(start)
    assert rules().lexicon.positions(text, tokens, starts) == expected


def stems_filed_otherwise(text: str, tokens: tuple[str, ...]) -> dict[str, list[int]]:
    """The stems ``Lexicon.positions`` files otherwise than a plain ``finditer`` of ``stems`` over the text."""
    lexicon = rules().lexicon
    assert lexicon.stems is not None
    plain: dict[str, list[int]] = {}
    for match in lexicon.stems.finditer(text):
        for stem in lexicon.implied[match.group()]:
            plain.setdefault(stem, []).append(match.start())
    filed = {word: found for word, found in positions(text, tokens).items() if word.endswith("*")}
    return {} if filed == plain else {stem: filed.get(stem, []) for stem in {*filed, *plain}
                                      if filed.get(stem) != plain.get(stem)}


@pytest.mark.parametrize("folder", ["corpus", "heldout"])
def test_stems_filed_after_spaces_are_those_a_plain_search_finds_in_real_messages(folder: str) -> None:
    path = CORPUS if folder == "corpus" else REPO / "tests" / "data" / "heldout"
    filed = 0
    for message in sorted(path.glob("*.eml")):
        text, tokens = canonical(message.read_text(encoding="utf-8", errors="replace"))
        assert stems_filed_otherwise(text, tokens) == {}, message.name
        filed += any(word.endswith("*") for word in positions(text, tokens))
    assert filed > 0


@settings(max_examples=300, deadline=None)
@given(rule_texts())
def test_stems_filed_after_spaces_are_those_a_plain_search_finds(text: str) -> None:
    canon, tokens = canonical(text)
    assert stems_filed_otherwise(canon, tokens) == {}


# -- compilation of gaps -------------------------------------------------------------


def _gap_rule(tmp_path: Path, template: str) -> re.Pattern[str]:
    """The compiled ``template``, from the shipped rules file with one more rule."""
    extra = (f'\n[[rule]]\nid = "test.gaps"\ncategory = "other"\nweight = 1\nzones = ["body"]\n'
             f'patterns = ["{template}"]\n')
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT_RULES.read_text(encoding="utf-8") + extra, encoding="utf-8")
    rule = next(rule for rule in load_rules(path).rules if rule.id == "test.gaps")
    return rule.patterns[0].pattern


@pytest.mark.parametrize("between", range(8))
def test_adjacent_wide_gaps_reach_their_summed_size(tmp_path: Path, between: int) -> None:
    pattern = _gap_rule(tmp_path, "zzfirst {~~3} {~~2} zzlast")
    words = " ".join(["w"] * between)
    text = f"zzfirst {words} zzlast" if words else "zzfirst zzlast"
    assert (pattern.search(text) is not None) is (between <= 5)
    crossing = "zzfirst w . w , w zzlast"  # wide gaps cross clause marks...
    assert pattern.search(crossing) is not None
    assert pattern.search("zzfirst w | w zzlast") is None  # ...but not paragraphs


def test_adjacent_gaps_of_different_kinds_keep_their_own_rules(tmp_path: Path) -> None:
    pattern = _gap_rule(tmp_path, "zzfirst {~2} {~~2} zzlast")
    assert pattern.search("zzfirst a b . c zzlast") is not None  # 2 words, then a mark and a word
    assert pattern.search("zzfirst a . b c zzlast") is None  # the narrow gap cannot take the mark
    excluding = _gap_rule(tmp_path, "zzfirst {~2!lc_object} {~2!lc_object} zzlast")
    assert excluding.search("zzfirst a b c d zzlast") is not None
    assert excluding.search("zzfirst a b casella d zzlast") is None


def test_rules_loaded_uncompiled_compile_each_template_on_first_use_or_all_at_once() -> None:
    lazy = load_rules(DEFAULT_RULES, compiled=False)
    templates = [*lazy.adoption.phrases, *(template for _rule, template in lazy.templates)]
    assert not any(t.compiled for t in templates)
    first = templates[0]
    assert first.pattern is first.pattern  # compiled once, then kept
    assert [t.compiled for t in templates].count(True) == 1
    assert lazy.compile() is lazy
    assert all(t.compiled for t in templates)
    eager = load_rules(DEFAULT_RULES)
    assert all(t.compiled for t in [*eager.adoption.phrases, *(template for _rule, template in eager.templates)])
    assert [t.pattern.pattern for t in templates] == [t.source for t in templates]


def cue_groups_missed(text: str, tokens: tuple[str, ...]) -> list[str]:
    """Cue groups whose pattern finds a cue in ``text`` although ``may_cancel`` of its words rules them out."""
    negation = rules().negation
    possible = negation.may_cancel(tokens)
    missed = [group.name for number, group in enumerate(negation.cues)
              if not possible >> number & 1 and group.pattern.search(text)]
    if negation.post is not None and not negation.may_follow(tokens) and negation.post.search(text):
        missed.append("post")
    return missed


@pytest.mark.parametrize("folder", ["corpus", "heldout"])
def test_a_cue_group_ruled_out_by_the_words_of_a_real_message_finds_nothing_in_it(folder: str) -> None:
    path = CORPUS if folder == "corpus" else REPO / "tests" / "data" / "heldout"
    for message in sorted(path.glob("*.eml")):
        text, tokens = canonical(message.read_text(encoding="utf-8", errors="replace"))
        assert cue_groups_missed(text, tokens) == [], message.name


@settings(max_examples=400, deadline=None)
@given(rule_texts())
def test_a_cue_group_ruled_out_by_the_words_of_a_text_finds_nothing_in_it(text: str) -> None:
    canon, tokens = canonical(text)
    assert cue_groups_missed(canon, tokens) == []


def test_may_cancel_names_the_groups_whose_cues_start_with_a_word_or_a_stem() -> None:
    negation = rules().negation
    names = [g.name for n, g in enumerate(negation.cues) if negation.may_cancel(["ringraziamo"]) >> n & 1]
    assert names and all("gratitude" in name for name in names)
    assert negation.may_cancel(["xyzzy", "qwerty"]) == 0
    plain = next(n for n, g in enumerate(negation.cues) if g.name == "negation")
    assert negation.may_cancel(["non"]) >> plain & 1  # the plain group: "non" and its kin
    assert not negation.may_follow(["xyzzy", "qwerty"])
