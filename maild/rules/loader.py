"""Load and validate the classification rules data (config/rules.toml).

The classifier is a generic engine; what it looks for lives in data so that
the help desk can extend vocabulary without touching code. Everything is
validated and compiled here, once, at start: a typo in the rules file fails
with a ``RulesError`` naming the file, the key and the reason, and the
per-message hot path only runs precompiled regular expressions.

Schema (every table and key is checked; unknown keys are errors)::

    version = 1
    [engine]     threshold, precedence, max_chars
    [text]       abbreviations            words whose "." does not end a sentence
    [text.emoji] "<symbol>" = "<words>"   optional: a symbol written for words ("🔒" = "bloccare")
    [subject]    reply_prefix, strip      regexes on the folded subject
    [language]   <code> = [stop-words]    e.g. it = [...], en = [...]
    [negation]   post_window, exceptions, post (templates), terminators (words), optional relatives and
                 relative_stops and post_stops (words), relative_window
    [[negation.cues]]  name, window, terms (templates), optional stops (words), spares (words), act, categories,
                       rules
    [acts]       question_openers, request_cues, no_request, optional retractions and subject_disowned
                 (templates), done_item and malfunction
                 (regexes on a folded line)
    [adoption]   phrases, blockers, optional limits, answers_yes, answers_no, answers_no_turn, answers_object,
                 answers_object_not, answers_object_to, answers_confirm (templates), answer_max_words and
                 answer_object_max_words
    [cleaning]   quote_line, header_line, optional subject_line, closing, closing_max_lines,
                 closing_max_chars, separator, optional postscript, and arrays of
                 {name, pattern} tables: history, signatures, disclaimers; optional arrays of
                 {name, pattern, examples, counter_examples} tables (lines): notices, requests
    [vocab]      <class> = [terms]        "@other" includes another class
    [tolerance]  terms (one-word terms or "@class"), min_length: regional and misspelt forms (optional);
                 swap_min_length, shuffle_min_length: shuffled inner letters of any spelled word
    [[rule]]     id, category, weight, zones ("subject", "body"), patterns
                 (templates), optional negatable (default true), optional mention, state, net, pronoun and
                 clause_start (default false),
                 optional examples and counter_examples (sentences the tests run the rule on)

Terms are folded words; a trailing ``*`` on a word means "any continuation"
(``sblocc*`` matches sblocco, sbloccare, SBLOCCATO). A *template* is a
sequence of space-separated pieces matched on consecutive words of the same
clause:

    word / word*    a literal term          word? / word*?  optional literal
    {class}         one term of a class     {class?}        optional
    {class*}        up to three of a class  {~N}            up to N other words
    {~N!class}      up to N words, none of them a term of the class
    {~~N}           up to N words or punctuation marks: crosses clauses, not paragraphs
    {!class}        the next word is not a term of the class (matches no word): "firma" but not "firma digitale"
    <piece>         marks the action: negation cues are looked for before it
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from maild.errors import RulesError
from maild.records import Category
from maild.rules.patterns import (
    MAX_GAP,
    PIECE,
    TERM_WORD,
    WORD,
    Lexicon,
    Template,
    TemplateIndex,
    factored,
    gap_regex,
    guard,
    lead,
    lexicon,
)
from maild.rules.textclean import NO_SYMBOLS, CleanRules, Marker, any_marker, fold
from maild.rules.tolerance import Tolerance, tolerance

_EMOJI_STYLE = "\ufe0f"
"""The variation selector that asks for a symbol's emoji picture: no word of its own."""

ZONES = frozenset({"subject", "body"})
ACTS = frozenset({"negation", "question", "withdrawal", "report", "thanks"})
"""What a sender may do with an action other than asking for it."""
PAST_REQUESTS = ("past request", "past request of another")
"""The negation cue groups whose cues tell a request made before, by the sender or by someone else: ``[acts]
renewal`` asks such a request again."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One family of evidence for a category, e.g. "create or delete a mailbox"."""

    id: str
    category: Category
    weight: int
    zones: frozenset[str]
    patterns: tuple[Template, ...]
    negatable: bool = True
    """False for mentions that are not actions ("rubrica"): a "non" nearby denies something else."""
    examples: tuple[str, ...] = ()
    """Sentences written for the rule that it must count as requests (checked by tests/test_rule_examples.py)."""
    counter_examples: tuple[str, ...] = ()
    """Look-alike sentences it must not count."""
    clause_start: bool = False
    """True when a match counts only where a clause starts: a verbless need is a clause of its own."""
    state: bool = False
    """True when a hit tells a state that implies the request ("l'account si e bloccato"): it yields when the
    sender declines the action itself ("non procedete con lo sblocco")."""
    net: bool = False
    """True for the wide net under the frames: an action and a privileged object near each other in any order.
    It counts only where no other rule read the action, and not in a question or beside an inability."""
    mention: bool = False
    """True when a hit names a topic ("password", "nuova casella") without an action on an object: such
    evidence below the threshold is a topic, not a request, and does not make triage fail closed."""
    pronoun: bool = False
    """True for an action on a bare pronoun with no object of its own: it yields where a frame of another category
    read the same pronoun as taking up the object it named first ("la risposta automatica ... potete attivarla")."""
    names_action: bool = False
    """True for a mention that names the action itself ("il reset"): a verdict after it ("il reset non serve piu")
    declines the action, so the states of its category yield as they do to a declined frame."""


@dataclass(frozen=True, slots=True)
class CueGroup:
    """Cues that cancel an action when found within ``window`` words before it.

    Groups differ by reach: "non" reaches six words ("non vi chiedo di
    eliminare"), "e stata" only the next few ("e stata reimpostata"), so a
    past tense earlier in the sentence does not cancel a later request.
    """

    name: str
    window: int
    pattern: re.Pattern[str]
    stops: frozenset[str] = frozenset()
    """Words that end this group's window, besides the shared terminators."""
    spares: frozenset[str] = frozenset()
    """Actions the group never cancels: a command after a condition asks for it ("se e bloccata sbloccatela")."""
    act: str = "negation"
    """What the sender does with the action instead of asking for it: negation, question, withdrawal, report."""
    categories: frozenset[Category] = frozenset()
    """The categories whose actions the group cancels; all when empty ("ho chiuso la lista" is a deed told,
    "ho dimenticato la password" a request)."""
    rules: frozenset[str] = frozenset()
    """The rules (ids) whose actions the group cancels; all when empty."""
    words: frozenset[str] = frozenset()
    """The words a cue of the group can start with: a window holding none of them is not searched."""
    stems: tuple[str, ...] = ()
    """The stems (``stem*`` leads, without the star) a cue of the group can start with."""


@dataclass(frozen=True, slots=True)
class Negation:
    """How a cue before (or a phrase after) an action cancels it.

    Windows stop at clause punctuation and at ``terminators`` ("ma", "but").
    ``exceptions`` are removed from a window first: "non riesco a" is
    inability, not denial. ``post`` phrases cancel a hit they follow within
    ``post_window`` words ("il reset non serve").
    """

    cues: tuple[CueGroup, ...]
    post_window: int
    exceptions: re.Pattern[str] | None
    post: re.Pattern[str] | None
    terminators: frozenset[str]
    reach: int
    """The widest cue window."""
    leading: Mapping[str, int] = field(default_factory=dict)
    """For each word a cue can start with, the groups (bit ``i`` for ``cues[i]``) whose cues can."""
    stems: tuple[tuple[str, int], ...] = ()
    """The same for the stems a cue can start with (``stem*`` leads, without the star)."""
    prefixes: tuple[str, ...] = ()
    """The stems of ``stems`` alone, for one ``str.startswith`` test a word."""
    post_words: frozenset[str] = frozenset()
    """The words a ``post`` phrase can start with (whole words)."""
    post_stems: tuple[str, ...] = ()
    """The stems a ``post`` phrase can start with."""
    relatives: frozenset[str] = frozenset()
    """Words that open a relative clause after the action's object ("che", "cui", "which")."""
    relative_window: int = 0
    """How far past a relative clause a ``post`` phrase still judges the action ("lo sblocco di cui vi avevo
    parlato al telefono ... non serve piu")."""
    relative_stops: frozenset[str] = frozenset()
    """Words that end that longer window: a reason or a second clause ("perche", "e")."""
    post_stops: frozenset[str] = frozenset()
    """Words that end the window a ``post`` verdict is looked for in: the terminators and a reason after the action,
    which judges something else ("eliminate la casella perche non serve piu" asks)."""

    def may_follow(self, words: Iterable[str]) -> bool:
        """False when no ``post`` phrase can start at any of ``words``: they are not searched."""
        stems = self.post_stems
        return any(word in self.post_words or (stems and word.startswith(stems)) for word in words)

    def may_cancel(self, words: Iterable[str]) -> int:
        """The groups (bits, as in ``leading``) whose cues can start at one of ``words``: only those are searched."""
        found = 0
        prefixes = self.prefixes
        for word in words:
            found |= self.leading.get(word, 0)
            if prefixes and word.startswith(prefixes):
                for stem, bits in self.stems:
                    if word.startswith(stem):
                        found |= bits
        return found


@dataclass(frozen=True, slots=True)
class Reservation:
    """A request kept for later ("ci riserviamo di chiedere"): what it governs in its sentence is not asked now."""

    phrases: re.Pattern[str]
    named: re.Pattern[str]
    """An action named as a thing, article and noun ("la soppressione"): only an action so named is kept for later."""
    stops: re.Pattern[str]
    """What after a reservation asks now ("intanto", "serve", "potete"): the reservation governs nothing past it."""
    verb: re.Pattern[str]
    """A verb of its own after a reservation ("fate", "attendiamo"): its clause may ask now, so it is not kept."""


@dataclass(frozen=True, slots=True)
class Acts:
    """What a sentence or a message does, beyond the clause around each action.

    A sentence ending in "?" that opens an information question ("quanto
    tempo ci vuole per...", "who has to ask...") and holds no request cue
    ("potete", "could you") asks about an action, it does not ask for it. A
    message that declares it asks for nothing ("non chiedo nulla", "just so
    you know") reports what it names, except where a request cue stands in
    the same clause as the action, or the action opens its clause as a
    command ("Resettate la password", "mi cancellate la casella?": only
    ``command_lead`` words before it). An item of a list marked done ("✔",
    "[FATTO]", "- reset password: done") tells what was done; in a form with a
    ticked box ("[X] Modifica rubrica"), a box left empty ("[ ] Reset password")
    names nothing asked, and a ticked one is chosen, not done. A line that
    reports a fault of a tool ("il modulo per la rubrica da errore") names
    the tool's purpose between the two, not a request.
    """

    question_openers: re.Pattern[str]
    request_cues: re.Pattern[str]
    no_request: re.Pattern[str]
    done_item: re.Pattern[str] | None = None
    malfunction: re.Pattern[str] | None = None
    ticked_box: re.Pattern[str] | None = None
    """A form's box ticked at the start of a line ("[X] Reimpostazione password"): the item is chosen."""
    unticked_box: re.Pattern[str] | None = None
    """A form's box left empty ("[ ] Attivazione nuova casella"): in a form with a ticked box, not chosen."""
    open_items: re.Pattern[str] | None = None
    """The sender's text calling its boxes a checklist or its empty boxes work to do ("le voci aperte sono per
    voi"): then an empty box is an item still open, not an option left out."""
    stale_fields: re.Pattern[str] | None = None
    """The sender disowning a reused form's fields by name ('i campi "Azione" e "Note" sono rimasti quelli del mese
    scorso'): group ``names`` holds the quoted names; what those fields say is not asked."""
    command_lead: frozenset[str] = frozenset()
    """Words that may stand before an action that opens its clause as a command (pronouns, "intanto")."""
    clitics: frozenset[str] = frozenset()
    """Object clitics that may stand right before a privileged action given as a command ("la chiudete")."""
    command_endings: tuple[str, ...] = ()
    """Endings of a command's verb after a clitic ("-ate", "-ete", "-ite": "la chiudete", "le eliminate")."""
    obligation_lead: frozenset[str] = frozenset()
    """Words of an obligation just before a privileged action ("va chiusa", "should be deleted"): asked for."""
    need_lead: frozenset[str] = frozenset()
    question_breaks: frozenset[str] = frozenset()
    """Words that open a new clause inside a question's sentence ("c'è un errore quindi me la sbloccate?"): an
    opener before them asks nothing about the action after them."""
    """Words of a need anywhere in a privileged action's clause ("we need the mailbox deleted"): asked for."""
    retractions: re.Pattern[str] | None = None
    """What, opening the clause right after an action, takes it back ("? - actually no, ignore that")."""
    retraction_conditions: frozenset[str] = frozenset()
    """Words opening a condition before a retraction ("Se entra, lasciate stare"): the other branch, not a take-back."""
    subject_disowned: re.Pattern[str] | None = None
    """The sender's body setting its own subject aside ("please forget the subject"): the subject asks nothing."""
    subject_question: re.Pattern[str] | None = None
    """A subject that labels itself a question ("... – Quesito"): what it names is asked about, not asked for."""
    reservation: Reservation | None = None
    """A request kept for later ("ci riserviamo di chiedere la soppressione"): not asked now."""
    renewal: re.Pattern[str] | None = None
    """A go-ahead or a not-yet in the sender's text ("procedete pure", "non è ancora stata fatta"): a privileged
    request told as asked before is asked again."""

@dataclass(frozen=True, slots=True)
class Adoption:
    """When quoted text is the sender's own: an adoption phrase, and no blocker ("phishing")."""

    phrases: tuple[Template, ...]
    blockers: re.Pattern[str] | None
    index: TemplateIndex
    limits: re.Pattern[str] | None = None
    """What, right after a phrase, limits it to an object of the sender's own ("procedete solo con ...")."""
    answers_yes: re.Pattern[str] | None = None
    """A bare yes opening a short reply ("Sì, confermo."): it adopts the quoted question it answers."""
    answers_no: re.Pattern[str] | None = None
    """A bare no opening a short reply ("No, solo la lista."): it declines the quoted question but what it keeps."""
    answers_no_turn: re.Pattern[str] | None = None
    """A no that turns to a privileged action of its own ("No, but block it"): what the question named stays asked."""
    answer_max_words: int = 0
    """The most words of the sender's own text read as a bare answer."""
    answers_object: re.Pattern[str] | None = None
    """A first clause that only names a thing ("Quella di m.bianchi.", "Per l'Ufficio Tirocini."): under a quoted
    question asking which one, it answers it, and adopts the action the question names."""
    answers_object_not: re.Pattern[str] | None = None
    """What such a first clause never holds: a negation, a "for now", a courtesy ("Per il momento nessuna")."""
    answers_object_to: re.Pattern[str] | None = None
    """What makes a quoted question one that asks which thing ("quale casella va sbloccata?", "which list?")."""
    answer_object_max_words: int = 0
    """The most words of the sender's own text read as an answer naming the question's object."""
    answers_confirm: re.Pattern[str] | None = None
    """A quoted paragraph asking a confirmation without a "?" ("Ci dia conferma.", "Please confirm that ..."): a bare
    answer answers it as it answers a question."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The whole rules file, validated and compiled; shared read-only by every classification."""

    source: Path
    threshold: int
    precedence: tuple[Category, ...]
    max_chars: int
    abbreviations: frozenset[str]
    reply_prefix: re.Pattern[str]
    subject_strip: re.Pattern[str]
    stopwords: tuple[tuple[str, frozenset[str]], ...]
    negation: Negation
    acts: Acts
    adoption: Adoption
    cleaning: CleanRules
    rules: tuple[Rule, ...]
    lexicon: Lexicon
    templates: tuple[tuple[Rule, Template], ...]
    """Every rule's templates in file order, each with its rule; ``index`` holds the same order."""
    index: TemplateIndex
    tolerance: Tolerance | None = None
    """How a word the rules do not know may still be read as one of a few privileged actions."""

    def compile(self) -> Rules:
        """Compile every template's regex now (``RulesError`` if one will not); returns ``self``.

        ``load_rules`` does so unless told not to. The daemon is: compiling is
        most of loading the rules, so its forked triage worker does it while
        the daemon connects to the mailbox.
        """
        for template in (*self.adoption.phrases, *(template for _rule, template in self.templates)):
            template.pattern  # noqa: B018 - compiled, and kept, on first use
        return self


def load_rules(path: Path, *, compiled: bool = True) -> Rules:
    """Read, validate and compile the rules file at ``path`` (the templates only on first use
    unless ``compiled``: see ``Rules.compile``)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from exc
    rules = _Loader(path).rules(data)
    return rules.compile() if compiled else rules


class _Loader:
    """Validation helpers that know the file name, so every error can name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.vocab: dict[str, str] = {}
        self.vocab_leads: dict[str, frozenset[str]] = {}
        self.raw_vocab: dict[str, list[str]] = {}
        self.rule_ids: set[str] = set()
        self.spelled: set[str] = set()
        """Every one-word vocabulary term, a stem with its "*"."""

    def fail(self, key: str, reason: str) -> RulesError:
        return RulesError(f"{self.path}: {key}: {reason}")

    def rules(self, data: Mapping[str, Any]) -> Rules:
        self.known(data, "", {"version", "engine", "text", "subject", "language", "negation", "acts", "adoption",
                              "cleaning", "vocab", "rule", "tolerance"})
        if data.get("version") != 1:
            raise self.fail("version", "must be 1")
        self.vocab = self.load_vocab(self.table(data, "vocab"))
        engine = self.table(data, "engine")
        self.known(engine, "engine", {"threshold", "precedence", "max_chars"})
        subject = self.table(data, "subject")
        self.known(subject, "subject", {"reply_prefix", "strip"})
        text = self.table(data, "text")
        self.known(text, "text", {"abbreviations", "emoji"})
        adoption = self.adoption(self.table(data, "adoption"))
        rules = self.rule_list(data.get("rule"))
        templates = tuple((rule, template) for rule in rules for template in rule.patterns)
        every = (*adoption.phrases, *(template for _rule, template in templates))
        stopwords = self.stopwords(self.table(data, "language"))
        negation = self.negation(self.table(data, "negation"))
        acts = self.acts(self.table(data, "acts"))
        missing = [name for name in PAST_REQUESTS if all(group.name != name for group in negation.cues)]
        if acts.renewal is not None and missing:
            raise self.fail("acts.renewal", f"needs the [[negation.cues]] group named {missing[0]!r}, whose cues "
                            "tell a request made before")
        return Rules(
            source=self.path,
            threshold=self.positive(engine, "engine", "threshold"),
            precedence=self.precedence(engine),
            max_chars=self.positive(engine, "engine", "max_chars"),
            abbreviations=frozenset(self.words(text, "text", "abbreviations")),
            reply_prefix=self.regex(subject, "subject", "reply_prefix"),
            subject_strip=self.regex(subject, "subject", "strip"),
            stopwords=stopwords,
            negation=negation,
            acts=acts,
            adoption=adoption,
            cleaning=replace(self.cleaning(self.table(data, "cleaning")), symbols=self.symbols(text)),
            rules=rules,
            lexicon=lexicon(key for template in every for need in template.needs for key in need),
            templates=templates,
            index=TemplateIndex.of([template for _rule, template in templates]),
            tolerance=self.tolerance(data, {word for _code, words in stopwords for word in words}),
        )

    # -- generic readers ---------------------------------------------------

    def known(self, table: Mapping[str, Any], prefix: str, keys: set[str]) -> None:
        for key in table:
            if key not in keys:
                raise self.fail(_dot(prefix, key), f"unknown key (expected one of: {', '.join(sorted(keys))})")

    def table(self, data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(_dot(prefix, key), "missing table" if value is None else "must be a table")
        return value

    def value(self, table: Mapping[str, Any], prefix: str, key: str, kind: type) -> Any:
        if key not in table:
            raise self.fail(_dot(prefix, key), "missing required key")
        value = table[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise self.fail(_dot(prefix, key), f"must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def positive(self, table: Mapping[str, Any], prefix: str, key: str) -> int:
        value: int = self.value(table, prefix, key, int)
        if value <= 0:
            raise self.fail(_dot(prefix, key), "must be greater than zero")
        return value

    def strings(self, table: Mapping[str, Any], prefix: str, key: str, *, empty_ok: bool = False) -> list[str]:
        value = self.value(table, prefix, key, list)
        if not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(_dot(prefix, key), "must be a list of non-empty strings")
        if not value and not empty_ok:
            raise self.fail(_dot(prefix, key), "must not be empty")
        return list(value)

    def words(self, table: Mapping[str, Any], prefix: str, key: str) -> list[str]:
        out = []
        for i, raw in enumerate(self.strings(table, prefix, key)):
            word = fold(raw).strip()
            if not re.fullmatch(r"[a-z0-9]+", word):
                raise self.fail(f"{_dot(prefix, key)}[{i}]", f"{raw!r} must be one word of letters and digits")
            out.append(word)
        return out

    def symbols(self, text: Mapping[str, Any]) -> Mapping[int, str]:
        """The ``str.translate`` table of ``[text.emoji]``: each symbol (with or without its emoji
        variation selector) read as its words, spaced so it never glues to the word beside it."""
        if "emoji" not in text:
            return NO_SYMBOLS
        table = text["emoji"]
        if not isinstance(table, dict):
            raise self.fail("text.emoji", "must be a table of symbol = words")
        out: dict[int, str] = {}
        for raw, words in table.items():
            key = f"text.emoji.{raw!r}"
            symbol = raw.removesuffix(_EMOJI_STYLE)
            if len(symbol) != 1 or symbol.isascii() or symbol.isalnum():
                raise self.fail(key, "must be one non-ASCII symbol (optionally followed by U+FE0F)")
            folded = fold(words).strip() if isinstance(words, str) else ""
            if not re.fullmatch(r"[a-z0-9]+(?: [a-z0-9]+)*", folded):
                raise self.fail(key, f"{words!r} must be words of letters and digits")
            out[ord(symbol)] = f" {folded} "
        return MappingProxyType({**out, ord(_EMOJI_STYLE): ""}) if out else NO_SYMBOLS

    def regex(self, table: Mapping[str, Any], prefix: str, key: str, flags: int = 0) -> re.Pattern[str]:
        return self.compile(self.value(table, prefix, key, str), _dot(prefix, key), flags)

    def compile(self, source: str, key: str, flags: int = 0) -> re.Pattern[str]:
        try:
            return re.compile(source, flags)
        except re.error as exc:
            raise self.fail(key, f"invalid regular expression: {exc}") from exc

    # -- terms, classes, templates ----------------------------------------

    def term(self, raw: str, key: str) -> str:
        """Regex for one term: folded words, optional ``*`` suffix per word."""
        words = fold(raw).replace("'", " ").replace("-", " ").split()
        if not words or not all(TERM_WORD.match(w) for w in words):
            raise self.fail(key, f"{raw!r} is not a term (words of letters/digits, optional trailing *)")
        return " ".join(re.escape(w.rstrip("*")) + (f"{WORD}*" if w.endswith("*") else "") for w in words)

    def load_vocab(self, table: Mapping[str, Any]) -> dict[str, str]:
        raw: dict[str, list[str]] = {}
        for name in table:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise self.fail(f"vocab.{name}", "class names are lower-case identifiers")
            raw[name] = self.strings(table, "vocab", name)
            folded = (fold(term).strip() for term in raw[name])
            self.spelled.update(term for term in folded if re.fullmatch(r"[a-z0-9]+\*?", term))
        self.raw_vocab = raw
        vocab = {}
        for name in raw:
            terms = self.expand(name, raw, ())
            alternation = self.alternation(terms, f"vocab.{name}")
            leads = self.vocab_leads[name] = frozenset(lead(term) for term, _key in terms)
            # The look-ahead is implied by every term, so it changes no match; it only lets the regex
            # engine drop a word in a few steps instead of trying each of the class's terms on it.
            vocab[name] = f"(?={guard(leads)}){alternation}"
        return vocab

    def expand(self, name: str, raw: Mapping[str, list[str]], seen: tuple[str, ...]) -> list[tuple[str, str]]:
        """Terms of a class with ``@class`` includes resolved, as (term, key) pairs."""
        if name in seen:
            raise self.fail(f"vocab.{name}", f"includes itself ({' -> '.join((*seen, name))})")
        out: list[tuple[str, str]] = []
        for i, term in enumerate(raw[name]):
            key = f"vocab.{name}[{i}]"
            if term.startswith("@"):
                if term[1:] not in raw:
                    raise self.fail(key, f"unknown class {term!r}")
                out.extend(self.expand(term[1:], raw, (*seen, name)))
            else:
                out.append((term, key))
        return out

    def alternation(self, terms: Sequence[tuple[str, str]], key: str) -> str:
        regexes = sorted({self.term(term, k) for term, k in terms}, key=len, reverse=True)
        if not regexes:
            raise self.fail(key, "has no terms")
        return factored(regexes)

    def template(self, source: str, key: str) -> Template:
        """Compile a template (see the module docstring) into a regex over canonical text."""
        needs: list[frozenset[str]] = []
        body = self.template_body(source, key, needs=needs)
        # The first piece is required and is a word or a class (see template_body): its leads come first.
        return Template(f"(?<!{WORD})" + body + f"(?!{WORD})", tuple(needs), needs[0], f"{self.path}: {key}")

    def template_list(self, table: Mapping[str, Any], prefix: str, key: str,
                      *, required: bool = False) -> re.Pattern[str] | None:
        """Templates without <action> joined into one bounded alternation (None when empty).

        A lookahead trie of the words the templates start with goes first: at most offsets it fails on
        a letter or two, where the alternation would try each template in turn.
        """
        dotted = _dot(prefix, key)
        sources = self.strings(table, prefix, key, empty_ok=not required)
        if not sources:
            return None
        bodies = [self.template_body(src, f"{dotted}[{i}]", action_ok=False) for i, src in enumerate(sources)]
        starts = guard(self.leads(table, prefix, key))
        return self.compile(f"(?<!{WORD})(?={starts})(?:" + "|".join(bodies) + f")(?!{WORD})", dotted)

    def leads(self, table: Mapping[str, Any], prefix: str, key: str) -> frozenset[str]:
        """The leads of the first pieces of a template list: every match of it starts at a word fitting one."""
        dotted = _dot(prefix, key)
        out: set[str] = set()
        for i, src in enumerate(self.strings(table, prefix, key, empty_ok=True)):
            needs: list[frozenset[str]] = []
            self.template_body(src, f"{dotted}[{i}]", action_ok=False, needs=needs)
            out.update(needs[0])  # the first piece is required (see template_body)
        return frozenset(out)

    def template_body(self, source: str, key: str, *, action_ok: bool = True,
                      needs: list[frozenset[str]] | None = None) -> str:
        """The regex of a template; the leads of its required pieces are added to ``needs``.

        Adjacent gaps of the same kind become one gap of their summed size:
        "{~~12} {~~4}" matches the same words as "{~~16}", and a regex engine
        trying it tries the same lengths in the same order (longest first),
        but 17 instead of 13 x 5 splits before giving up on a word.
        """
        pieces = source.split()
        if not pieces:
            raise self.fail(key, "empty template")
        parts: list[str] = []
        gaps: list[tuple[str, int] | None] = []
        actions = 0
        unless: list[str | None] = [m["unless"] if (m := PIECE.match(piece)) is not None else None
                                    for piece in pieces]
        last = max((i for i, name in enumerate(unless) if name is None), default=0)
        for index, piece in enumerate(pieces):
            name = unless[index]
            if name is not None:
                if index == 0:
                    raise self.fail(key, f"piece {piece!r}: a template cannot start with what must not follow")
                parts.append(f"(?! {self.class_regex(name, key)}(?!{WORD}))")
                gaps.append(None)
                continue
            action = piece.startswith("<") and piece.endswith(">")
            body, quantifier, leads = self.piece(piece[1:-1] if action else piece, key)
            gap = None if action else self.gap(piece, key)
            if gap is not None and gaps and gaps[-1] is not None and gaps[-1][0] == gap[0]:
                gap = (gap[0], gaps[-1][1] + gap[1])
                parts[-1] = f"(?: {gap_regex(*gap)}){quantifier}"
                gaps[-1] = gap
                continue
            gaps.append(gap)
            if needs is not None and not quantifier and leads:
                needs.append(leads)
            edge = index in (0, last)
            if quantifier and (edge or action):
                raise self.fail(key, f"piece {piece!r}: the first, last and action pieces must be required")
            if action:
                if not action_ok:
                    raise self.fail(key, f"piece {piece!r}: no <action> piece in this list")
                actions += 1
                body = f"(?P<act>{body})"
            parts.append(body if index == 0 else f"(?: {body}){quantifier}")
        if actions > 1:
            raise self.fail(key, "only one <action> piece per template")
        return "".join(parts)

    def piece(self, piece: str, key: str) -> tuple[str, str, frozenset[str]]:
        """(regex, quantifier, leads) of one template piece.

        ``leads`` are the first words of the piece's terms (see ``Template``);
        empty for a gap, which needs no particular word.
        """
        match = PIECE.match(piece)
        if match is None:
            raise self.fail(key, f"piece {piece!r} is not a word, {{class}}, {{class?}}, {{class*}}, {{~N}}, "
                                 "{~N!class} or {!class}")
        if match["unless"] is not None:
            raise self.fail(key, f"piece {piece!r}: what must not follow is no action")
        gap = self.gap(piece, key)
        if gap is not None:
            return gap_regex(*gap), "?", frozenset()
        if match["cls"] is not None:
            regex = self.class_regex(match["cls"], key)
            return regex, {"": "", "?": "?", "*": "{0,3}"}[match["cq"]], self.vocab_leads[match["cls"]]
        return self.term(match["lit"], key), match["lq"], frozenset({lead(match["lit"])})

    def gap(self, piece: str, key: str) -> tuple[str, int] | None:
        """(regex of one word, size) of a gap piece; None for any other (valid) piece."""
        match = PIECE.match(piece)
        if match is None or match["gap"] is None:
            return None
        size = int(match["gap"])
        if not 1 <= size <= MAX_GAP:
            raise self.fail(key, f"gap {{~{size}}} must be between 1 and {MAX_GAP}")
        word = "[^ |]+" if match["wide"] else f"{WORD}+"
        if match["but"] is not None:
            word = f"(?!{self.class_regex(match['but'], key)}(?!{WORD})){word}"
        return word, size

    def class_regex(self, name: str, key: str) -> str:
        if name not in self.vocab:
            raise self.fail(key, f"unknown vocab class {{{name}}}")
        return self.vocab[name]

    # -- sections ----------------------------------------------------------

    def tolerance(self, data: Mapping[str, Any], stopwords: set[str]) -> Tolerance | None:
        if "tolerance" not in data:
            return None
        table = self.table(data, "tolerance")
        self.known(table, "tolerance", {"terms", "min_length", "swap_min_length", "shuffle_min_length"})
        terms = []
        for i, raw in enumerate(self.strings(table, "tolerance", "terms")):
            key = f"tolerance.terms[{i}]"
            if raw.startswith("@") and raw[1:] not in self.raw_vocab:
                raise self.fail(key, f"unknown class {raw!r}")
            expanded = self.expand(raw[1:], self.raw_vocab, ()) if raw.startswith("@") else [(raw, key)]
            for term, where in expanded:
                word = fold(term).strip()
                if not re.fullmatch(r"[a-z0-9]+\*?", word):
                    raise self.fail(where, f"{term!r} must be one word of letters and digits, optional trailing *")
                terms.append(word)
        scramble = (self.positive(table, "tolerance", "swap_min_length"),
                    self.positive(table, "tolerance", "shuffle_min_length"))
        return tolerance(terms, self.spelled | stopwords, self.positive(table, "tolerance", "min_length"), scramble)

    def precedence(self, engine: Mapping[str, Any]) -> tuple[Category, ...]:
        names = self.strings(engine, "engine", "precedence")
        valid = {c.value for c in Category}
        if sorted(names) != sorted(valid):
            raise self.fail("engine.precedence", f"must list each of {', '.join(sorted(valid))} exactly once")
        return tuple(Category(n) for n in names)

    def stopwords(self, table: Mapping[str, Any]) -> tuple[tuple[str, frozenset[str]], ...]:
        if not table:
            raise self.fail("language", "needs at least one language")
        out = []
        for code in table:
            if not re.fullmatch(r"[a-z]{2}", code):
                raise self.fail(f"language.{code}", "language codes are two lower-case letters")
            out.append((code, frozenset(self.words(table, "language", code))))
        return tuple(out)

    def negation(self, table: Mapping[str, Any]) -> Negation:
        p = "negation"
        self.known(table, p, {"post_window", "cues", "exceptions", "post", "terminators", "relatives",
                              "relative_window", "relative_stops", "post_stops"})
        groups = self.value(table, p, "cues", list)
        if not groups:
            raise self.fail(f"{p}.cues", "needs at least one [[negation.cues]] group")
        cues = tuple(self.cue_group(item, f"{p}.cues[{i}]") for i, item in enumerate(groups))
        stems = tuple(sorted(_bits((stem, i) for i, group in enumerate(cues) for stem in group.stems).items()))
        post_leads = self.leads(table, p, "post") if "post" in table else frozenset()
        return Negation(
            cues=cues,
            post_window=self.positive(table, p, "post_window"),
            exceptions=self.template_list(table, p, "exceptions"),
            post=self.template_list(table, p, "post"),
            terminators=frozenset(self.words(table, p, "terminators")),
            reach=max(group.window for group in cues),
            leading=_bits((word, i) for i, group in enumerate(cues) for word in group.words),
            stems=stems,
            prefixes=tuple(stem for stem, _ in stems),
            post_words=_whole(post_leads),
            post_stems=_stems(post_leads),
            relatives=frozenset(self.words(table, p, "relatives")) if "relatives" in table else frozenset(),
            relative_window=self.positive(table, p, "relative_window") if "relative_window" in table else 0,
            relative_stops=frozenset(self.words(table, p, "relative_stops")) if "relative_stops" in table
            else frozenset(),
            post_stops=frozenset(self.words(table, p, "terminators")).union(
                self.words(table, p, "post_stops") if "post_stops" in table else ()),
        )

    def cue_group(self, item: object, key: str) -> CueGroup:
        if not isinstance(item, dict):
            raise self.fail(key, "must be a table with name, window and terms")
        self.known(item, key, {"name", "window", "terms", "stops", "spares", "act", "categories", "rules"})
        pattern = self.template_list(item, key, "terms", required=True)
        assert pattern is not None
        leads = self.leads(item, key, "terms")
        stops = frozenset(self.words(item, key, "stops")) if "stops" in item else frozenset()
        spares = frozenset(self.words(item, key, "spares")) if "spares" in item else frozenset()
        act = self.value(item, key, "act", str) if "act" in item else "negation"
        if act not in ACTS:
            raise self.fail(f"{key}.act", f"must be one of {', '.join(sorted(ACTS))}, not {act!r}")
        categories = frozenset(self.category_names(item, key, "categories")) if "categories" in item else frozenset()
        rules = frozenset(self.strings(item, key, "rules")) if "rules" in item else frozenset()
        for i, rule_id in enumerate(sorted(rules)):
            if rule_id not in self.rule_ids:
                raise self.fail(f"{key}.rules[{i}]", f"unknown rule {rule_id!r}")
        return CueGroup(name=self.value(item, key, "name", str), window=self.positive(item, key, "window"),
                        pattern=pattern, stops=stops, spares=spares, act=act, categories=categories, rules=rules,
                        words=_whole(leads), stems=_stems(leads))

    def acts(self, table: Mapping[str, Any]) -> Acts:
        p = "acts"
        self.known(table, p, {"question_openers", "request_cues", "no_request", "done_item", "malfunction",
                              "ticked_box", "unticked_box", "open_items", "command_lead", "clitics",
                              "obligation_lead", "need_lead", "retractions", "retraction_conditions", "stale_fields",
                              "subject_disowned", "reservation", "subject_question", "command_endings",
                              "question_breaks", "renewal"})
        return Acts(question_openers=self.required_templates(table, p, "question_openers"),
                    request_cues=self.required_templates(table, p, "request_cues"),
                    no_request=self.required_templates(table, p, "no_request"),
                    done_item=self.regex(table, p, "done_item") if "done_item" in table else None,
                    malfunction=self.regex(table, p, "malfunction") if "malfunction" in table else None,
                    ticked_box=self.regex(table, p, "ticked_box") if "ticked_box" in table else None,
                    unticked_box=self.regex(table, p, "unticked_box") if "unticked_box" in table else None,
                    open_items=self.regex(table, p, "open_items") if "open_items" in table else None,
                    renewal=self.regex(table, p, "renewal") if "renewal" in table else None,
                    stale_fields=self.regex(table, p, "stale_fields") if "stale_fields" in table else None,
                    command_lead=frozenset(self.words(table, p, "command_lead")) if "command_lead" in table
                    else frozenset(),
                    obligation_lead=frozenset(self.words(table, p, "obligation_lead")) if "obligation_lead" in table
                    else frozenset(),
                    clitics=frozenset(self.words(table, p, "clitics")) if "clitics" in table else frozenset(),
                    command_endings=tuple(self.words(table, p, "command_endings")) if "command_endings" in table
                    else (),
                    need_lead=frozenset(self.words(table, p, "need_lead")) if "need_lead" in table else frozenset(),
                    question_breaks=frozenset(self.words(table, p, "question_breaks"))
                    if "question_breaks" in table else frozenset(),
                    retractions=self.template_list(table, p, "retractions") if "retractions" in table else None,
                    retraction_conditions=frozenset(self.words(table, p, "retraction_conditions"))
                    if "retraction_conditions" in table else frozenset(),
                    subject_disowned=self.template_list(table, p, "subject_disowned")
                    if "subject_disowned" in table else None,
                    subject_question=self.regex(table, p, "subject_question") if "subject_question" in table else None,
                    reservation=self.reservation(self.table(table, "reservation", p)) if "reservation" in table
                    else None)

    def reservation(self, table: Mapping[str, Any]) -> Reservation:
        p = "acts.reservation"
        self.known(table, p, {"phrases", "named", "stops", "verb"})
        return Reservation(phrases=self.required_templates(table, p, "phrases"),
                           named=self.required_templates(table, p, "named"),
                           stops=self.required_templates(table, p, "stops"),
                           verb=self.regex(table, p, "verb"))

    def required_templates(self, table: Mapping[str, Any], prefix: str, key: str) -> re.Pattern[str]:
        pattern = self.template_list(table, prefix, key, required=True)
        assert pattern is not None  # required: an empty list already failed
        return pattern

    def adoption(self, table: Mapping[str, Any]) -> Adoption:
        p = "adoption"
        self.known(table, p, {"phrases", "blockers", "limits", "answers_yes", "answers_no", "answers_no_turn",
                              "answer_max_words", "answers_object", "answers_object_not", "answers_object_to",
                              "answer_object_max_words", "answers_confirm"})
        phrases = self.strings(table, p, "phrases")
        templates = tuple(self.template(t, f"{p}.phrases[{i}]") for i, t in enumerate(phrases))
        return Adoption(
            phrases=templates,
            blockers=self.template_list(table, p, "blockers"),
            index=TemplateIndex.of(templates),
            limits=self.template_list(table, p, "limits") if "limits" in table else None,
            answers_yes=self.template_list(table, p, "answers_yes") if "answers_yes" in table else None,
            answers_no=self.template_list(table, p, "answers_no") if "answers_no" in table else None,
            answers_no_turn=self.template_list(table, p, "answers_no_turn") if "answers_no_turn" in table else None,
            answer_max_words=self.positive(table, p, "answer_max_words") if "answer_max_words" in table else 0,
            answers_object=self.template_list(table, p, "answers_object") if "answers_object" in table else None,
            answers_object_not=(self.template_list(table, p, "answers_object_not")
                                if "answers_object_not" in table else None),
            answers_object_to=(self.template_list(table, p, "answers_object_to")
                               if "answers_object_to" in table else None),
            answer_object_max_words=(self.positive(table, p, "answer_object_max_words")
                                     if "answer_object_max_words" in table else 0),
            answers_confirm=self.template_list(table, p, "answers_confirm") if "answers_confirm" in table else None,
        )

    def cleaning(self, table: Mapping[str, Any]) -> CleanRules:
        p = "cleaning"
        self.known(table, p, {"quote_line", "header_line", "closing", "closing_max_lines", "closing_max_chars",
                              "separator", "postscript", "history", "signatures", "disclaimers", "subject_line",
                              "notices", "requests"})
        cleaning = CleanRules(
            quote_line=self.regex(table, p, "quote_line"),
            history=self.markers(table, "history", re.MULTILINE),
            header_line=self.regex(table, p, "header_line"),
            signatures=self.markers(table, "signatures"),
            closing=self.regex(table, p, "closing"),
            closing_max_lines=self.positive(table, p, "closing_max_lines"),
            closing_max_chars=self.positive(table, p, "closing_max_chars"),
            separator=self.regex(table, p, "separator"),
            disclaimers=self.markers(table, "disclaimers"),
            subject_line=self.regex(table, p, "subject_line", re.IGNORECASE) if "subject_line" in table else None,
            postscript=self.regex(table, p, "postscript") if "postscript" in table else None,
            notices=self.markers(table, "notices", examples=True) if "notices" in table else (),
            requests=self.markers(table, "requests", examples=True) if "requests" in table else (),
        )
        return replace(cleaning, history_any=any_marker(cleaning.history),
                       signatures_any=any_marker(cleaning.signatures))

    def markers(self, table: Mapping[str, Any], key: str, flags: int = 0, *,
                examples: bool = False) -> tuple[Marker, ...]:
        """The marker tables under ``cleaning.key``; with ``examples``, each carries the lines that justify it."""
        items = self.value(table, "cleaning", key, list)
        out = []
        for i, item in enumerate(items):
            k = f"cleaning.{key}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(k, "must be a table with name and pattern")
            if not examples:
                self.known(item, k, {"name", "pattern"})
                out.append(Marker(self.value(item, k, "name", str), self.regex(item, k, "pattern", flags)))
                continue
            self.known(item, k, {"name", "pattern", "examples", "counter_examples"})
            out.append(Marker(self.value(item, k, "name", str), self.regex(item, k, "pattern", flags),
                              tuple(self.strings(item, k, "examples")),
                              tuple(self.strings(item, k, "counter_examples"))))
        return tuple(out)

    def rule_list(self, value: object) -> tuple[Rule, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("rule", "must be a non-empty array of [[rule]] tables")
        seen: set[str] = set()
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"rule[{i}]", "must be a table")
            rule = self.rule(item, f"rule[{i}]")
            if rule.id in seen:
                raise self.fail(f"rule[{i}].id", f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            out.append(rule)
        self.rule_ids = seen
        return tuple(out)

    def rule(self, item: Mapping[str, Any], key: str) -> Rule:
        self.known(item, key, {"id", "category", "weight", "zones", "patterns", "negatable", "mention", "examples",
                               "counter_examples", "clause_start", "state", "net", "names_action", "pronoun"})
        rule_id: str = self.value(item, key, "id", str)
        key = f"{key} ({rule_id})"
        category = self.category(item, key)
        zones = self.strings(item, key, "zones")
        for zone in zones:
            if zone not in ZONES:
                raise self.fail(f"{key}.zones", f"unknown zone {zone!r} (expected subject or body)")
        templates = self.strings(item, key, "patterns")
        return Rule(
            id=rule_id, category=category, weight=self.positive(item, key, "weight"), zones=frozenset(zones),
            patterns=tuple(self.template(t, f"{key}.patterns[{i}]") for i, t in enumerate(templates)),
            negatable=self.value(item, key, "negatable", bool) if "negatable" in item else True,
            mention=self.value(item, key, "mention", bool) if "mention" in item else False,
            clause_start=self.value(item, key, "clause_start", bool) if "clause_start" in item else False,
            state=self.value(item, key, "state", bool) if "state" in item else False,
            net=self.value(item, key, "net", bool) if "net" in item else False,
            names_action=self.value(item, key, "names_action", bool) if "names_action" in item else False,
            pronoun=self.value(item, key, "pronoun", bool) if "pronoun" in item else False,
            examples=tuple(self.strings(item, key, "examples")) if "examples" in item else (),
            counter_examples=tuple(self.strings(item, key, "counter_examples")) if "counter_examples" in item else (),
        )

    def category_names(self, table: Mapping[str, Any], prefix: str, key: str) -> list[Category]:
        choices = [c.value for c in Category]
        out = []
        for i, name in enumerate(self.strings(table, prefix, key)):
            if name not in choices:
                raise self.fail(f"{_dot(prefix, key)}[{i}]", f"must be one of {', '.join(choices)}, not {name!r}")
            out.append(Category(name))
        return out

    def category(self, table: Mapping[str, Any], prefix: str) -> Category:
        value: str = self.value(table, prefix, "category", str)
        choices = [c.value for c in Category]
        if value not in choices:
            raise self.fail(_dot(prefix, "category"), f"must be one of {', '.join(choices)}, not {value!r}")
        return Category(value)


def _dot(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _bits(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Each key with the bits of the numbers paired with it."""
    out: dict[str, int] = {}
    for key, number in pairs:
        out[key] = out.get(key, 0) | 1 << number
    return out


def _whole(leads: Iterable[str]) -> frozenset[str]:
    """The leads that are whole words."""
    return frozenset(lead for lead in leads if not lead.endswith("*"))


def _stems(leads: Iterable[str]) -> tuple[str, ...]:
    """The ``stem*`` leads, without their star, in order."""
    return tuple(sorted(lead[:-1] for lead in leads if lead.endswith("*")))
