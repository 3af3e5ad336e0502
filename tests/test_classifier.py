"""The classifier: corpus accuracy, each rule family, held-out messages, rules-file errors.

The held-out messages at the end are written for these tests (not copied from
the corpus, different wording) to check that the rules generalize instead of
memorizing the development set.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import html2text
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.classifier import classify, classify_text
from maild.errors import RulesError
from maild.mail.parsing import parse_message
from maild.records import Attachment, Category, Classification
from maild.rules import Rules, load_rules
from maild.rules.canonical import tokens
from maild.rules.tolerance import scrambled
from maild.settings import DEFAULT_RULES, Limits
from tests.factories import CORPUS, message

LABELS: dict[str, dict[str, object]] = json.loads((CORPUS / "labels.json").read_text())
ANAGRAFICA, PASSWORD, LIFECYCLE, OTHER = (Category.ANAGRAFICA, Category.PASSWORD_RESET, Category.LIFECYCLE,
                                           Category.OTHER)


@cache
def rules() -> Rules:
    return load_rules(DEFAULT_RULES)


def run(body: str, subject: str = "", hints: tuple[str, ...] = ()) -> Classification:
    return classify_text(subject, body, hints, rules())


def category(body: str, subject: str = "") -> Category:
    return run(body, subject).category


# -- corpus --------------------------------------------------------------------


def _corpus_results() -> dict[str, tuple[Category, Category]]:
    """(got, labelled) category of every message that reaches the classifier, parsed by maild.mail.parsing."""
    out = {}
    for name, label in LABELS.items():
        if label["decision"] == "ignored":  # screened out before the classifier
            continue
        parsed = parse_message((CORPUS / name).read_bytes(), Limits())
        out[name] = (classify(parsed, rules()).category, Category(str(label["category"])))
    return out


def test_corpus_category_accuracy_on_messages_that_reach_the_classifier() -> None:
    results = _corpus_results()
    wrong = {name: (got.value, want.value) for name, (got, want) in results.items() if got is not want}
    assert len(results) == 49
    assert 1 - len(wrong) / len(results) >= 0.95, wrong


def test_corpus_never_downgrades_a_privileged_request() -> None:
    """Fail closed: a privileged label must never come out as a non-privileged category."""
    downgraded = [n for n, (got, want) in _corpus_results().items() if want.privileged and not got.privileged]
    assert downgraded == []


def test_classify_reads_subject_body_and_hints_from_the_parsed_message() -> None:
    parsed = message(subject="Nuova casella", body_text="Hello,\nsee subject, thanks.", language_hints=("en-gb",))
    result = classify(parsed, rules())
    assert result.category is LIFECYCLE
    assert result.language == "en"


# -- negation ------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("Non serve il reset della password, vi chiedo solo di aggiornare il mio numero di telefono in rubrica.",
     ANAGRAFICA),
    ("No need to reset my password - just update my phone number in the directory, please.", ANAGRAFICA),
    ("Va tolta dalla lista docenti-fisica. Attenzione: la casella NON deve essere disattivata.", ANAGRAFICA),
    ("Non vi chiedo di eliminare la lista, solo di sapere quanti iscritti può avere.", OTHER),
    ("Please don't close or suspend my mailbox, but forward my mail to anna.b@example.org until June.",
     ANAGRAFICA),
    ("La password è stata reimpostata ieri e ora funziona, grazie.", OTHER),
])
def test_negated_actions_are_not_requests(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons
    assert any(r.startswith("negated:") for r in result.reasons), result.reasons


@pytest.mark.parametrize("body", ["Vorrei attivare l'inoltro verso la collega; la casella deve restare attiva.",
                                  "Deve rimanere attiva la casella: chiedo solo l'inoltro verso la collega.",
                                  "Please set up forwarding to my colleague; the mailbox must stay open."])
def test_keeping_a_mailbox_active_is_not_a_lifecycle_request(body: str) -> None:
    assert category(body) is ANAGRAFICA


@pytest.mark.parametrize("body", [
    "Lo sblocco della casella di cui vi avevo parlato al telefono la settimana scorsa non serve più.",
    "The reset that I asked for on the phone last week is not needed any more.",
    "Lo sblocco della casella di Mario Rossi di cui vi avevo parlato al telefono non serve più.",
    "Il reset della password di Anna Neri (a.neri@ateneo.example.it) che vi ho anticipato non va fatto.",
])
def test_a_verdict_after_a_relative_clause_judges_the_action(body: str) -> None:
    assert category(body) is OTHER


@pytest.mark.parametrize("body", [
    "Eliminate la casella che non serve più.",
    "Please delete the list which is no longer needed.",
    "Chiudete la casella di cui vi ho parlato ieri perché non serve più.",
    "Eliminate la casella di Mario Rossi che non serve più.",
])
def test_a_verdict_on_the_object_in_a_relative_clause_leaves_the_action_asked(body: str) -> None:
    assert category(body) is LIFECYCLE


@pytest.mark.parametrize("body", [
    "Could you unlock my account? - actually no, ignore that: it works again.",
    "Chiudete la lista corso-2019, anzi no, lasciate stare.",
    "Please delete the list old-staff. Never mind, I found another way.",
    "Mi resettate la password? Come non detto, l'ho ritrovata.",
    "They say that when the mailbox is full you simply delete it. Please, don't do this with my mailbox!",
])
def test_a_retraction_right_after_an_action_takes_it_back(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert any("act withdrawal" in r for r in result.reasons), result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # It goes on, so it is no retraction of the action; nor is a correction of a value alone.
    ("Please reset my password, never mind the delay.", PASSWORD),
    ("Aggiornate la descrizione della lista docenti in 2027 - anzi no, scusate: 2026.", ANAGRAFICA),
    ("Resettate la password di Marco. Grazie, lasciate stare il resto.", PASSWORD),
    ("Please delete the mailbox old-lab@ateneo.example.it. Don't do it before Friday.", LIFECYCLE),
])
def test_what_is_no_whole_retraction_leaves_the_action_asked(body: str, expected: Category) -> None:
    assert category(body) is expected


@pytest.mark.parametrize("body", [
    "Con riserva di chiedere, tramite il referente e dopo il riordino delle sezioni, la soppressione della casella "
    "segreteria e la creazione di una casella unica.",
    "Ci riserviamo, all'esito della vostra verifica, di chiedere il reset della password e, se del caso, il blocco "
    "della casella.",
    "We reserve the right to ask for the deletion of the lab mailbox once the audit is over.",
])
def test_a_request_reserved_for_later_is_not_asked_now(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert any("act report" in r for r in result.reasons), result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A turn, a word of now, a request cue or a new clause after ";" asks now, whatever was reserved before it.
    ("Ci riserviamo di chiedere la creazione di una lista, ma intanto serve la chiusura della casella.", LIFECYCLE),
    ("Ci riserviamo di chiedere la creazione di una lista, intanto bloccate la casella di Rossi.", LIFECYCLE),
    ("Ci riserviamo di chiedere altro in seguito; resettate la password di Marco.", PASSWORD),
    ("Ci riserviamo di chiedere altro in seguito, potete resettare la password di Marco?", PASSWORD),
    # An action commanded, not named by article and noun, or a verb of its own before it, asks now.
    ("Con riserva di chiedere altro in seguito, resettate la password di Mario Rossi.", PASSWORD),
    ("Ci riserviamo di chiedere altre modifiche, eliminate la casella di Rossi.", LIFECYCLE),
    ("Con riserva di chiedere altro, la casella di Rossi va cancellata.", LIFECYCLE),
    ("Con riserva di chiedere altro, la chiudete voi la casella di Rossi?", LIFECYCLE),
    ("Con riserva di chiedere altro, serve la chiusura della casella di Rossi.", LIFECYCLE),
    ("Con riserva di chiedere altro, chiediamo la chiusura della casella di Rossi.", LIFECYCLE),
    ("Con riserva di chiedere altro, fate la chiusura della casella di Rossi.", LIFECYCLE),
    ("Con riserva di chiedere altro, attendiamo la chiusura della casella di Rossi.", LIFECYCLE),
    ("We reserve the right to ask for more, and we await the deletion of the mailbox of Rossi.", LIFECYCLE),
])
def test_what_a_reservation_does_not_govern_is_asked(body: str, expected: Category) -> None:
    assert category(body) is expected


@pytest.mark.parametrize("body", [
    "Vorrei sapere chi e abilitato a chiedervi l'apertura di una casella: la segreteria o il referente?",
    "Se una casella e compromessa, chi puo chiedervi di bloccarla? Lo scriviamo nella procedura.",
])
def test_who_may_ask_for_an_action_is_a_question(body: str) -> None:
    assert category(body) is OTHER


def test_a_subject_labelled_a_question_asks_for_no_directory_change_but_a_privileged_frame_counts() -> None:
    body = "Possono due persone usare insieme la casella della segreteria da due postazioni?"
    assert category(body, "CASELLA DI SEZIONE - Accesso condiviso - Quesito") is OTHER
    assert category(body, "Accesso condiviso") is ANAGRAFICA
    assert category("Vedi oggetto.", "Quesito: chiusura della casella segreteria") is LIFECYCLE


def test_inability_is_not_negation() -> None:
    assert category("Non riesco a eliminare la lista da solo: potete farlo voi? Si tratta della lista "
                    "progetto-x, potete eliminarla?") is LIFECYCLE
    assert category("I cannot log in and I forgot my password, please reset it.") is PASSWORD


def test_nothing_else_bounds_the_request_and_does_not_deny_it() -> None:
    assert category("The directory still lists me as Technician.\n\nNo other change (phone and room stay the "
                    "same).") is ANAGRAFICA
    assert category("Nella rubrica risulto ancora al vecchio interno. Nessun'altra modifica.") is ANAGRAFICA


def test_negation_stops_at_the_clause_boundary() -> None:
    result = run("Non ricordo il nome della lista, comunque vi chiedo di eliminare la casella mario.x@example.it.")
    assert result.category is LIFECYCLE
    assert run("Don't worry about the list. Please delete the mailbox of the old lab.").category is LIFECYCLE


def test_topics_named_beside_a_declined_action_are_not_a_request() -> None:
    result = run("Outlook mi chiede la password ogni ora. La password e giusta, quindi non si tratta di resettarla. "
                 "Nelle impostazioni ho messo la password normale: devo cambiare porta?")
    assert result.category is OTHER, result.reasons
    assert any(r.startswith("topic named, not asked for:") for r in result.reasons), result.reasons


def test_a_request_verb_starts_a_clause_without_punctuation() -> None:
    assert category("salve mi dice che la pass word e scaduta e non me la fa cambiare potete resettarmela "
                    "grazie") is PASSWORD


def test_a_negated_match_does_not_hide_a_request_starting_inside_it() -> None:
    result = run("La casella lab@example.it NON va cancellata, la usiamo. Chiedevo solo di togliere dalla lista "
                 "lab-utenti@example.it il dott. Neri.", subject="Cancellazione casella")
    assert result.category is ANAGRAFICA, result.reasons


@pytest.mark.parametrize("body", ["Il modulo online per le modifiche alla rubrica da \"Errore 500\" quando invio.",
                                  "The staff directory page is not working since this morning.",
                                  "The form for alias requests returns an error when I press Send."])
def test_a_topic_named_in_a_tool_fault_report_is_not_a_request(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert any(r.startswith("tool fault reported:") for r in result.reasons), result.reasons


def test_a_framed_action_beside_a_tool_fault_still_counts() -> None:
    assert category("Il modulo da errore, quindi vi chiedo di aggiornare il mio numero di telefono "
                    "in rubrica.") is ANAGRAFICA
    assert category("Il modulo da errore 500: potete reimpostare la mia password?") is PASSWORD


def test_a_thing_already_in_place_told_in_thanks_is_not_a_request() -> None:
    quoted = "\n\nIl giorno 8 set 2027 Help Desk <hd@example.it> ha scritto:\n> l'alias e stato associato.\n"
    assert category("Funziona, ricevo gia le mail sull'alias. Grazie!" + quoted, subject="Re: alias") is OTHER
    assert category("Ricevo gia le mail sull'alias, ma vorrei un secondo alias per la segreteria.") is ANAGRAFICA


def test_thanks_for_a_done_action_is_not_a_new_request() -> None:
    assert category("Grazie mille per la disattivazione della vecchia casella, tutto a posto.") is OTHER
    assert category("Thanks a lot for creating the list so quickly!") is OTHER
    assert category("Thanks in advance for deleting the mailbox of the old project.") is LIFECYCLE


# -- quoted history and adoption -------------------------------------------------


QUOTED_RESET = ("\n\n-----Messaggio originale-----\nDa: Elena Lodi <elena.lodi@example.it>\n"
                "Inviato: lunedì 18 gennaio 2027 10:52\nA: Referente\nOggetto: password\n\n"
                "Non ricordo più la password, si può reimpostare?\nElena\n")


def test_quoted_request_is_context_only() -> None:
    result = run("Ho ricevuto questa mail, la giro per conoscenza." + QUOTED_RESET)
    assert result.category is OTHER
    assert "Non ricordo" not in result.text


@pytest.mark.parametrize("own", ["Autorizzo, procedete pure.", "Procedete come sotto.", "Vedi sotto: confermo.",
                                 "Please proceed with the request below.", "I approve.",
                                 "As requested below, thanks.", "+1, vale anche per me.",
                                 "Same goes for me, please."])
def test_adopted_quoted_request_counts_as_the_senders_own(own: str) -> None:
    result = run(own + QUOTED_RESET)
    assert result.category is PASSWORD, result.reasons
    assert any(r.startswith("quoted request adopted") for r in result.reasons)
    assert "Non ricordo più la password" in result.text


QUOTED_COMMENT = ("\n\n---------- Forwarded message ---------\nFrom: Shared Docs <notify@docs.example.com>\n"
                  "Subject: New comment\n\nGiulia Neri commented:\n\"{comment}\"\n")


def test_an_adopted_comment_wholly_in_quotes_is_read_as_the_request() -> None:
    comment = "The list old-project@example.it is no longer used. Delete it."
    assert run("See the comment below, can you do this?" + QUOTED_COMMENT.format(comment=comment)).category is LIFECYCLE
    assert run("FYI only." + QUOTED_COMMENT.format(comment=comment)).category is OTHER


def test_adoption_can_be_negated() -> None:
    assert run("Non autorizzo questa richiesta." + QUOTED_RESET).category is OTHER


THREAD = ("\n\nFrom: Anna Riva <a.riva@example.it>\nSent: Monday, 3 May 2027 10:00\nTo: Luca\nSubject: RE: lab\n\n"
          "{newer}\n\nAnna\n\nFrom: Luca Bo <l.bo@example.it>\nSent: Monday, 3 May 2027 09:00\nTo: Anna\n"
          "Subject: lab\n\n{older}\n\nLuca\n")


def test_an_adopted_quote_that_only_agrees_adopts_the_older_request_below_it() -> None:
    result = run("See below, please action." + THREAD.format(
        newer="Fine by me.", older="Could the help desk delete the old lab mailbox lab-x@example.it?"))
    assert result.category is LIFECYCLE, result.reasons
    assert "the adopted quote asks nothing itself: the thread's older messages are read" in result.reasons


def test_an_action_withdrawn_in_a_newer_message_stays_withdrawn_in_the_older_one() -> None:
    result = run("See below, please action." + THREAD.format(
        newer="Scratch the password bit, I sorted it myself.",
        older="Could you reset my password? And please add Rita to the staff list staff@example.it."))
    assert result.category is ANAGRAFICA, result.reasons


def test_an_older_message_is_not_read_when_the_adopted_quote_asks_something() -> None:
    result = run("See below, please action." + THREAD.format(
        newer="Please add Rita to the staff list staff@example.it.", older="Could you reset my password?"))
    assert result.category is ANAGRAFICA, result.reasons


FORWARD_OF_A_SUBJECT = ("\n\n---------- Messaggio inoltrato ---------\nDa: Pia Sanna <p.sanna@example.it>\n"
                        "Data: lunedì 3 maggio 2027 10:00\nOggetto: {subject}\nA: Referente <ref@example.it>\n\n\n")


def test_an_adopted_forward_whose_only_content_is_its_subject_is_read_by_that_subject() -> None:
    result = run("Procedete." + FORWARD_OF_A_SUBJECT.format(subject="Reset password casella p.sanna, scaduta"),
                 subject="I: reset")
    assert result.category is PASSWORD, result.reasons
    assert "adopted message's subject read: 'Reset password casella p.sanna, scaduta'" in result.reasons


def test_a_forwarded_subject_not_adopted_is_context_only() -> None:
    result = run("Vi giro per conoscenza." + FORWARD_OF_A_SUBJECT.format(subject="Reset password casella p.sanna"),
                 subject="I: reset")
    assert result.category is OTHER, result.reasons
    assert not any(r.startswith("adopted message's subject") for r in result.reasons)


QUOTED_LIST_REQUEST = ("\n\nIl giorno mer 12 mag 2027 alle ore 09:10 Anna Riva <a.riva@example.it> ha scritto:\n"
                       "> Buongiorno,\n> potete aggiungermi alla lista turni@example.it?\n> Grazie\n")


@pytest.mark.parametrize("own", ["Idem per me, grazie.", "Lo stesso per me, per favore.", "Same for me, thanks."])
def test_the_same_again_adopts_the_quoted_request(own: str) -> None:
    result = run(own + QUOTED_LIST_REQUEST, subject="R: lista turni")
    assert result.category is ANAGRAFICA, result.reasons
    assert any(r.startswith("quoted request adopted") for r in result.reasons), result.reasons


def test_the_same_again_over_a_forwarded_confirmation_asks_the_same_action() -> None:
    done = FORWARD_OF_A_SUBJECT.format(subject="[HD-1] Sospensione casella m.rossi - eseguita") + (
        "la casella m.rossi@example.it è stata sospesa da oggi.\n")
    result = run("Idem per la Bianchi (l.bianchi@example.it), per favore." + done, subject="I: [HD-1] Sospensione")
    assert result.category is LIFECYCLE, result.reasons


def test_the_same_again_without_quoted_text_adopts_nothing() -> None:
    assert run("Idem per me, grazie.", subject="R: lista turni").category is OTHER


QUOTED_CREATION = ("\n\nIl giorno mar 2 feb 2027 alle 17:50 Anna Riva <a.riva@example.it> ha scritto:\n"
                   "> Ci servirebbe una nuova casella turni@example.it e andrebbe messo anche nella lista.\n")


@pytest.mark.parametrize("own", ["Per ora procedete solo con l'inserimento di Luca Neri nella lista turni@example.it.",
                                 "Please go ahead only with adding Luca Neri to the shifts list."])
def test_a_proceed_limited_to_the_senders_own_request_adopts_nothing_quoted(own: str) -> None:
    result = run(own + " Per la casella ne parliamo col referente." + QUOTED_CREATION)
    assert result.category is ANAGRAFICA, result.reasons
    assert any(r.startswith("quoted text not adopted by") for r in result.reasons), result.reasons
    assert "nuova casella" not in result.text


@pytest.mark.parametrize("own", ["Procedete con il reset della password della collega, confermato.",
                                 "Procedete solo con la pratica qui sotto."])
def test_a_proceed_that_confirms_or_names_no_request_of_its_own_adopts_the_quote(own: str) -> None:
    result = run(own + QUOTED_RESET)
    assert result.category is PASSWORD, result.reasons
    assert any(r.startswith("quoted request adopted") for r in result.reasons), result.reasons


def test_without_limits_a_limited_proceed_adopts_the_quote(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    shipped = DEFAULT_RULES.read_text(encoding="utf-8")
    path.write_text(re.sub(r"(?m)^limits = .*\n", "", shipped), encoding="utf-8")
    body = "Per ora procedete solo con l'inserimento di Luca Neri nella lista turni@example.it." + QUOTED_CREATION
    result = classify_text("", body, (), load_rules(path))
    assert load_rules(path).adoption.limits is None
    assert result.category is LIFECYCLE, result.reasons


QUOTED_DESK_QUESTION = ("\n\nIl 9 mar 2027 alle 11:02 Help Desk <helpdesk@example.it> ha scritto:\n"
                        "> Gentile utente,\n> abbiamo aggiornato il suo numero in rubrica.\n>\n"
                        "> Ci risulta anche la richiesta di chiudere la vecchia casella archivio@example.it e di\n"
                        "> lasciare l'alias sulla lista docenti: vuole che procediamo con la chiusura?\n>\n"
                        "> Il reset delle password si chiede al referente.\n")


@pytest.mark.parametrize("own", ["Sì, confermo.\n\nMarta", "Yes please.", "Certo, grazie.", "Ok.", "Sì grazie!"])
def test_a_bare_yes_to_a_quoted_question_asks_what_the_question_names(own: str) -> None:
    result = run(own + QUOTED_DESK_QUESTION, subject="R: [HD-7] casella archivio")
    assert result.category is LIFECYCLE, result.reasons
    assert any(r.startswith("act adoption:") for r in result.reasons), result.reasons
    assert "vuole che procediamo con la chiusura?" in result.text
    assert "Il reset delle password" not in result.text  # only the paragraph of the question is answered


def test_a_bare_yes_turns_what_the_question_asks_about_into_a_request() -> None:
    quoted = ("\n\nOn 3 May 2027, Help Desk <helpdesk@example.it> wrote:\n"
              "> The registry office wrote to us about the mailbox exams@example.it.\n"
              "> As the procedure asks, shall we date the suspension of the mailbox from Monday 10 May?\n")
    result = run("Yes, confirmed." + quoted)
    assert result.category is LIFECYCLE, result.reasons
    assert any(r.startswith("asked by the answer:") for r in result.reasons), result.reasons


@pytest.mark.parametrize("own", ["No, solo l'alias sulla lista.", "No, just the alias on the list, thanks."])
def test_a_bare_no_declines_the_quoted_question_but_what_it_keeps(own: str) -> None:
    result = run(own + QUOTED_DESK_QUESTION)
    assert result.category is ANAGRAFICA, result.reasons
    assert any(r.startswith("declined by the answer: 'no ... chiudere la vecchia casella") for r in result.reasons)


@pytest.mark.parametrize("own", ["No.", "No grazie, non serve.", "Nope."])
def test_a_bare_no_declines_everything_the_quoted_question_names(own: str) -> None:
    assert run(own + QUOTED_DESK_QUESTION).category is OTHER


@pytest.mark.parametrize("own", [
    # A first clause that goes on is no bare answer; nor is a longer reply, a question, or a specimen.
    "Si prega di attendere, ne parlo con il responsabile.",
    "Ok, grazie per l'aggiornamento della rubrica. Per il resto ci sentiamo la settimana prossima con il referente.",
    "Sì, ma prima: chi ha chiesto la chiusura?",
    "Sì, è phishing.",
])
def test_what_is_no_bare_answer_adopts_nothing(own: str) -> None:
    result = run(own + QUOTED_DESK_QUESTION)
    assert result.category is not LIFECYCLE, result.reasons
    assert not any(r.startswith("act adoption:") for r in result.reasons), result.reasons


def test_a_bare_yes_over_quoted_text_without_a_question_adopts_nothing() -> None:
    quoted = "\n\nIl 9 mar 2027 Help Desk ha scritto:\n> La casella archivio@example.it sarà chiusa venerdì.\n"
    assert run("Sì, grazie." + quoted).category is OTHER


def test_forwarded_phishing_lure_is_other_even_if_it_says_suspended() -> None:
    body = ("Vi inoltro questo messaggio, chiaramente phishing. Vedi sotto.\n\n---------- Forwarded message ---------\n"
            "From: Admin <admin@verify.example.net>\nSubject: Account suspension\n\n"
            "Your account will be suspended in 24 hours. Reset your password here.\n")
    result = run(body, subject="Fwd: Account suspension")
    assert result.category is OTHER
    assert any("not adopted" in r for r in result.reasons)


def test_inline_lure_in_quotation_marks_is_not_a_request() -> None:
    body = 'Ho ricevuto una mail che dice "la sua casella verrà disattivata, reimposti la password qui". È phishing?'
    assert category(body) is OTHER


# -- subject versus body ---------------------------------------------------------


def test_body_beats_a_contradicting_subject() -> None:
    result = run("Scusate l'oggetto: non mi serve nessuna casella. Potete correggere il mio ufficio in rubrica?",
                 subject="Nuova casella")
    assert result.category is ANAGRAFICA
    assert "subject ignored: body decides" in result.reasons


def test_subject_decides_when_the_body_has_no_signal() -> None:
    result = run("Buongiorno, come da oggetto. Grazie.", subject="Eliminazione lista progetto-alfa")
    assert result.category is LIFECYCLE
    assert "subject used: the body carries no decisive signal" in result.reasons


def test_reply_or_forward_subject_is_quoted_context() -> None:
    result = run("Perfetto, grazie!", subject="Re: [HD-2026-1191] Reimpostazione password")
    assert result.category is OTHER
    assert any(r.startswith("subject not used") for r in result.reasons)


# -- mixed requests --------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("Mi aggiornate la stanza in rubrica? E poi il mio account risulta bloccato, potete sbloccarlo?", PASSWORD),
    ("Please add Anna to the staff list and create a new list for the PhD students.", LIFECYCLE),
    ("Aumentate la quota della casella e chiudete la casella del collega in pensione.", LIFECYCLE),
])
def test_a_privileged_request_wins_over_a_non_privileged_one(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected
    assert any("privileged" in r and "fail closed" in r for r in result.reasons), result.reasons


# -- lists: membership versus lifecycle ------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("Aggiungete Marco Neri alla lista tecnici@ateneo.example.it", ANAGRAFICA),
    ("Please remove j.doe@example.org from the alumni mailing list.", ANAGRAFICA),
    ("Potete cancellarmi dalla lista seminari?", ANAGRAFICA),
    ("Vorrei che la proprietaria della lista fosse la dott.ssa Rossi.", ANAGRAFICA),
    ("Could you change the description of the list lab-news?", ANAGRAFICA),
    ("Create a new mailing list for the physics seminars, please.", LIFECYCLE),
    ("Chiedo l'eliminazione della vecchia lista eventi-2023.", LIFECYCLE),
    ("Please delete the hr-announcements list, the project is over.", LIFECYCLE),
    ("La lista eventi-2023 non serve piu e va eliminata.", LIFECYCLE),
    ("The seminar list is not needed anymore and can be closed.", LIFECYCLE),
    ("Ci servirebbe una lista di distribuzione per il nuovo corso.", LIFECYCLE),
    ("Modifiche alla lista docenti-fisica:\nAzione | Nome | Indirizzo\nAggiungere | Anna Neri | a.neri@example.org",
     ANAGRAFICA),
])
def test_list_membership_is_anagrafica_and_list_creation_or_deletion_is_lifecycle(
        body: str, expected: Category) -> None:
    assert run(body).category is expected


# -- each category, Italian and English ------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("Vi chiedo di bloccare la casella di Bruno, trasferito ad altro ente.", LIFECYCLE),
    ("Please lift the block on the mailbox, the transfer was cancelled.", LIFECYCLE),
    ("Si chiede l'attivazione di una casella PEC per l'Ufficio Legale.", LIFECYCLE),
    ("Please deactivate the email account of Dr. Smith, who retired.", LIFECYCLE),
    ("sbloccare account d.piras, 5 tentativi falliti", PASSWORD),
    ("ho dimenticato la password della posta", PASSWORD),
    ("Si chiede il ripristino delle credenziali della casella PEC.", PASSWORD),
    ("My password expired while I was abroad, could you reset it?", PASSWORD),
    ("I'm locked out of webmail.", PASSWORD),
    ("Stamattina mi si e bloccato l'account dopo tre tentativi: me lo sbloccate?", PASSWORD),
    ("Potete impostare l'inoltro della posta verso la mia casella personale?", ANAGRAFICA),
    ("Could you give me more storage? My mailbox is almost full.", ANAGRAFICA),
    ("Vorrei un alias mario.rossi@ateneo.example.it sulla mia casella.", ANAGRAFICA),
    ("Please change my title in the staff directory to Associate Professor.", ANAGRAFICA),
    ("Quale server IMAP devo usare sull'iPhone?", OTHER),
    ("The projector in room 5 does not work.", OTHER),
    ("RICEVO TROPPO SPAM, AVETE CAMBIATO QUALCOSA NEL FILTRO?", OTHER),
])
def test_typical_requests(body: str, expected: Category) -> None:
    assert run(body).category is expected, run(body).reasons


@pytest.mark.parametrize("body", ["SBLOCCARE ACCOUNT MARIO.ROSSI, TROPPI TENTATIVI FALLITI",
                                  "sbloccare l’account di mario rossi: troppi tentativi falliti",
                                  "nn mi ricordo piu la pasword, potete resettarla?"])
def test_case_accents_and_typos_do_not_matter(body: str) -> None:
    assert category(body) is PASSWORD


# -- language --------------------------------------------------------------------


def test_language_comes_from_the_requesters_own_words() -> None:
    assert run("Buongiorno, vorrei sapere come configurare la posta.").language == "it"
    assert run("Hello, how do I set up my mail on Android?").language == "en"
    body = "Please proceed, thanks.\n\n-----Messaggio originale-----\nDa: A\nOggetto: x\n\n" \
           "Buongiorno, non ricordo la password della mia casella e vorrei che la reimpostaste."
    assert run(body).language == "en"


def test_language_hints_only_break_ties() -> None:
    assert run("OK", hints=("en-US",)).language == "en"
    assert run("OK", hints=("it-IT",)).language == "it"
    assert run("Buongiorno, la casella è piena.", hints=("en-US",)).language == "it"
    assert classify_text("", "OK", (), rules(), default_language="en").language == "en"


def test_language_falls_back_to_the_subject_when_the_body_is_empty() -> None:
    assert run("", subject="Please reset the password of the lab mailbox").language == "en"


# -- acts: what the sender does with an action -------------------------------------


@pytest.mark.parametrize(("body", "act"), [
    ("Se un giorno dovessi perdere la password della PEC, a chi devo scrivere?", "question"),
    ("Nel caso in cui la casella di un tirocinante venga sospesa, le mail restano in archivio?", "question"),
    ("Quanto ci vuole, in media, per attivare una casella nuova?", "question"),
    ("Hypothetically, if someone asked you to delete our team list, would the archive survive?", "question"),
    ("Lasciate perdere la chiusura della casella di cui vi scrivevo lunedi.", "withdrawal"),
    ("Please scratch my request to close the seminar list, we still need it.", "withdrawal"),
    ("A febbraio avevo chiesto lo sblocco della casella e ci sono voluti due giorni.", "report"),
    ("Per la cronaca: la reimpostazione della password ha funzionato al primo colpo.", "report"),
    ("Ieri abbiamo chiuso la vecchia lista del convegno dal pannello di gestione.", "report"),
    ("Solo per conoscenza: in rubrica c'era il mio vecchio interno, l'ho sistemato io dal portale.", "report"),
])
def test_an_action_only_asked_about_withdrawn_or_told_is_not_a_request(body: str, act: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None, result.reasons
    assert any(r.startswith(f"not requested, act {act}:") for r in result.reasons), result.reasons


@pytest.mark.parametrize("body", [
    "Se possibile, potete sospendere la casella del tirocinante da domani?",
    "Potete eliminare la lista del convegno? Non serve piu a nessuno.",
    "Non chiedo nulla per me, ma potete chiudere la casella del laboratorio?",
    "If you could, please delete the old seminar list this week.",
    "Se possibile sospendete la casella del tirocinante da domani.",
    "We would be grateful if you could close the old seminar list.",
    "I would be grateful if the old seminar list could be closed this week.",
    "We would appreciate it if the old seminar list could be deleted.",
    "I was wondering if the seminar list could be closed now that the course is over.",
    "Vi sarei grata se la casella del tirocinante potesse essere chiusa da domani.",
])
def test_a_polite_condition_or_a_request_cue_keeps_the_request(body: str) -> None:
    assert run(body).category is LIFECYCLE


@pytest.mark.parametrize("body", [
    "Una domanda: mi resettate la password della casella?",
    "Quick question: do you reset my password today?",
    "Come da accordi, mi resettate la password della casella?",
    "Come detto al telefono, mi reimpostate la password entro oggi?",
])
def test_a_yes_no_question_announced_as_a_question_still_asks_for_a_privileged_action(body: str) -> None:
    """Fail closed: an announced yes/no question to the desk ("una domanda: mi resettate…?") is a request."""
    assert run(body).category is PASSWORD, run(body).reasons


@pytest.mark.parametrize(("body", "category"), [
    ("Non è richiesta alcuna operazione sulla lista. Resettate la password della casella di Mario.", PASSWORD),
    ("Solo per sapere. Mi resettate la password?", PASSWORD),
    ("Nessuna azione sulla lista. Intanto cancellate la casella mario.rossi.", LIFECYCLE),
    ("Just so you know, no action is needed. Reset my password anyway.", PASSWORD),
    ("Per vostra conoscenza l'account di Verdi si è bloccato: potete sbloccarlo?", PASSWORD),
    ("Non si chiede alcun intervento sulla lista. Cancellate la casella di Verdi.", LIFECYCLE),
    ("Per la lista abbiamo risolto, non serve nulla. Potete sbloccare l'account di Verdi?", PASSWORD),
    # An obligation asks as a command does.
    ("Il backup è già fatto, non serve nulla: la casella di Rossi va chiusa.", LIFECYCLE),
    ("No action is needed on the list. The mailbox of Rossi must be deleted.", LIFECYCLE),
])
def test_a_command_still_asks_in_a_message_that_says_it_asks_for_nothing(body: str, category: Category) -> None:
    """Fail closed: an action opening its clause as a command is asked for, whatever the message declares."""
    assert run(body).category is category, run(body).reasons


@pytest.mark.parametrize("body", [
    "Per vostra informazione, nessuna azione richiesta: la casella e stata chiusa ieri dal referente.",
    "Non è richiesta alcuna operazione: la password è stata resettata ieri, grazie.",
    # Impersonal, as an office writes; a copy sent for knowledge.
    "Si chiede il numero di caselle in attesa di cancellazione. Non si chiede alcun intervento sulle caselle.",
    "Solo per vostra conoscenza: stanotte l'account di Verdi si è bloccato dopo molti tentativi falliti.",
    # A matter settled, then nothing needed.
    "Lo sblocco è già fatto, non serve nulla. La soglia dei tentativi falliti è configurabile?",
    "Per la password abbiamo risolto, quindi non serve più nulla. La quota va benissimo.",
    "We already sorted it out, nothing is needed: the password was found in the safe.",
])
def test_a_deed_told_in_a_message_that_asks_for_nothing_stays_told(body: str) -> None:
    assert run(body).category is OTHER, run(body).reasons


def test_the_subject_does_not_ask_what_the_body_only_asks_about() -> None:
    result = run("Quanto tempo serve di solito per creare una casella? Devo pianificare.",
                 subject="Creazione casella")
    assert result.category is OTHER, result.reasons
    assert any(r.startswith("subject names the topic the body does not ask for") for r in result.reasons)


def test_a_state_told_is_no_request_when_the_sender_declines_the_action() -> None:
    result = run("Non procedete con lo sblocco! L'account si e bloccato per colpa mia, aspetto e riprovo.")
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None, result.reasons
    assert any(r.startswith("state told, not asked for:") for r in result.reasons), result.reasons


@pytest.mark.parametrize("body", [
    "L'account risulta bloccato: non chiudete la casella, procedete con lo sblocco.",
    "La password e scaduta. Non disattivate l'account, per favore.",
])
def test_a_state_stays_a_request_when_another_action_is_declined(body: str) -> None:
    assert run(body).category is PASSWORD, run(body).reasons


def test_a_label_and_its_verdict_negate_the_labelled_action() -> None:
    result = run("Riepilogo:\n- reset della password: non serve piu\n- alias m.rossi sulla mia casella: si, grazie")
    assert result.category is ANAGRAFICA, result.reasons


def test_a_message_that_asks_for_nothing_does_not_ask_through_its_subject() -> None:
    result = run("Per la cronaca: la casella e stata riattivata ieri sera, tutto a posto.",
                 subject="Sospensione della casella del laboratorio")
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None


def test_a_frame_below_the_threshold_is_kept_as_privileged_evidence() -> None:
    result = run("Ok, go ahead and delete it.")
    assert result.category is OTHER
    assert result.privileged_evidence is LIFECYCLE
    assert result.review.startswith("requested lifecycle evidence below the threshold")


def test_the_net_keeps_an_action_near_a_mailbox_as_privileged_evidence() -> None:
    result = run("La lista del coro, per piacere, cancellare entro venerdi.")
    assert result.privileged_evidence is LIFECYCLE, result.reasons
    assert any("frame lifecycle.net" in r for r in result.reasons), result.reasons
    assert result.review.startswith("requested lifecycle evidence below the threshold")


@pytest.mark.parametrize("body", [
    "Please remove me from the seminar mailing list.",  # another rule read the action: membership
    "Le caselle dei pensionati vengono chiuse automaticamente?",  # a yes/no question
    "La casella e piena e non posso cancellare niente.",  # an inability
    "La casella e lenta quando cancello le mail vecchie.",  # the action is on the mail
    "Please confirm that the list you created last week works.",  # a deed told
])
def test_the_net_leaves_what_is_no_request_for_a_privileged_action(body: str) -> None:
    result = run(body)
    assert not result.category.privileged, result.reasons
    assert result.privileged_evidence is None, result.reasons


@pytest.mark.parametrize("body", [
    "I would like to be removed from the seminar list, is possible?",  # the net's words inside a frame
    "Could you take me off the choir mailing list?",
])
def test_the_net_does_not_read_again_the_words_of_a_frame(body: str) -> None:
    result = run(body)
    assert result.category is ANAGRAFICA, result.reasons
    assert result.privileged_evidence is None, result.reasons


def test_a_mention_inside_a_frame_of_its_category_adds_nothing() -> None:
    result = run("Potete attivare la casella eventi@ateneo.example.it? Mandate le credenziali a me.")
    assert result.category is LIFECYCLE, result.reasons


@pytest.mark.parametrize("body", [
    "Riepilogo:\n1. creazione casella m.neri \u2714\n2. reset password iniziale - fatto\n"
    "3. rubrica: interno 4410 da aggiornare",
    "Stato:\n- [FATTO] disattivazione vecchie caselle\n- [DA FARE] telefono in rubrica: 051 123",
    "Status:\n* create the lab mailbox: done\n* please update my office in the address book to B21",
])
def test_an_item_marked_done_is_told_not_asked_for(body: str) -> None:
    result = run(body)
    assert result.category is ANAGRAFICA, result.reasons
    assert any(r.startswith("item marked done:") for r in result.reasons), result.reasons


def test_an_item_not_marked_done_is_still_asked_for() -> None:
    result = run("Da fare:\n1. disattivazione della casella m.neri\n2. rubrica: interno 4410 - fatto")
    assert result.category is LIFECYCLE, result.reasons


def test_an_item_that_asks_in_words_is_asked_for_even_beside_a_done_mark() -> None:
    result = run("Stato:\n1. backup fatto, potete chiudere la casella m.neri?\n2. rubrica: interno 4410 - fatto")
    assert result.category is LIFECYCLE, result.reasons


@pytest.mark.parametrize("body", [
    "Vi inoltro il verbale per conoscenza: la chiusura delle caselle dei corsi e prevista a settembre. "
    "Per ora nessuna azione da parte vostra.",
    "Circolare: la password scadra ogni 180 giorni. Nessun adempimento e richiesto all'help desk.",
    "FYI the old lists will be deleted in September; no action is needed on your side.",
    "Per la relazione annuale ci servono i tempi medi di disattivazione delle caselle e del reset delle password. "
    "Non e necessario alcun intervento sulle utenze.",
    "For the report we would like the number of mailboxes closed last year. No operation is required.",
    "Quando un collega dimentica la password, il reset lo chiede lui o posso farlo io? "
    "Oggi funziona tutto, chiedo per il futuro.",
    "If a student locks his account during exams, who unblocks it? Just asking for next time.",
])
def test_a_message_that_says_no_action_is_asked_reports_its_actions(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None, result.reasons


@pytest.mark.parametrize("body", [
    "Non e richiesta alcuna modifica alla rubrica, ma potete resettare la password di m.neri?",
    "Chiedo per il futuro, ma intanto vi prego di chiudere la casella del convegno.",
])
def test_a_request_cue_still_asks_beside_a_declaration_of_no_work(body: str) -> None:
    result = run(body)
    assert result.category in {LIFECYCLE, PASSWORD}, result.reasons


@pytest.mark.parametrize("body", [
    "Verbale, punto 2: il Direttore ricorda inoltre che il reset delle password scadute si chiede con il modulo.",
    "At the meeting the chair reminded everyone that locked accounts are unblocked by the referente.",
])
def test_what_a_third_party_says_is_reported(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None, result.reasons


def test_the_sender_reminding_still_asks() -> None:
    result = run("Vi ricordo che la casella del convegno va chiusa entro venerdi.")
    assert result.category is LIFECYCLE, result.reasons


def test_a_clitic_taking_up_the_request_closes_no_mailbox() -> None:
    result = run("ho cambiato la password da solo, la richiesta di ieri non serve piu potete chiuderla grazie")
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None, result.reasons


def test_a_subject_that_is_a_question_names_a_topic_not_a_request() -> None:
    result = run("Grazie,\nMario Zanetti", subject="Quota massima delle caselle PEC?")
    assert result.category is OTHER, result.reasons
    assert any(r.startswith("not requested, act question: '?") for r in result.reasons), result.reasons
    assert run("Grazie,\nMario Zanetti", subject="Quota massima delle caselle PEC").category is ANAGRAFICA


def test_a_privileged_frame_in_a_question_subject_still_counts() -> None:
    result = run("", subject="Sbloccate la casella di Rossi?")
    assert result.category is LIFECYCLE, result.reasons


def test_a_polite_conditional_asks() -> None:
    result = run("Vi sarei riconoscente se poteste aggiungere l'alias segreteria.corso alla mia casella.")
    assert result.category is ANAGRAFICA, result.reasons


def test_a_hypothesis_on_ones_own_will_is_no_polite_conditional() -> None:
    result = run("Se volessi cancellare la mia casella, come dovrei fare?")
    assert result.category is OTHER, result.reasons


def test_a_command_after_a_condition_asks_even_unpunctuated() -> None:
    asked = run("La casella non va: se e bloccata sbloccatela, se no ditemi voi.")
    assert asked.category is LIFECYCLE, asked.reasons
    hypothesis = run("Se la casella e bloccata per troppi tentativi, cosa devo fare?")
    assert hypothesis.category is OTHER, hypothesis.reasons


def test_a_topic_mention_is_no_privileged_evidence() -> None:
    result = run("Outlook mi chiede la password ogni mattina, come mai?")
    assert result.privileged_evidence is None


def test_a_category_from_the_subject_alone_is_marked_for_review() -> None:
    result = run("Buongiorno, grazie.", subject="Eliminazione casella PEC ufficio gare")
    assert result.category is LIFECYCLE
    assert result.review == "category lifecycle decided from the subject alone"


def test_a_narrow_margin_is_marked_for_review() -> None:
    result = run("Potete aggiungere Anna alla lista docenti e sospendere la casella di Marco?")
    assert result.category is LIFECYCLE
    assert result.review.startswith("narrow margin"), result.reasons


def test_a_clear_request_is_not_marked_for_review() -> None:
    assert run("Potete eliminare la casella del laboratorio di fisica?").review == ""


# -- tolerance: regional and misspelt forms of the privileged actions ---------------


@pytest.mark.parametrize(("word", "read"), [
    ("cancillatila", "cancellatela"),  # Sicilian: e written i
    ("sbluccatimilla", "sbloccatemilla"),  # o written u, then the rest of the word
    ("sblocar", "sbloccar"),  # Venetian: a single consonant for a double one
    ("scurdato", "scordato"),
    ("disattivatila", "disattivatela"),  # a whole word beats the stem it also starts with
    ("rirnuovete", "rimuovete"),  # a scanned letter: "m" read by OCR as "rn"
    ("rernoved", "removed"),
])
def test_tolerance_reads_a_regional_form_as_the_term(word: str, read: str) -> None:
    tolerance = rules().tolerance
    assert tolerance is not None
    assert tolerance.reread(frozenset({word})) == {word: read}


@pytest.mark.parametrize("word", ["chiedete", "eliminarli", "ristorante", "elementi", "cancellatela", "suspended",
                                  "casa", "segreteria"])
def test_tolerance_leaves_other_words_as_they_are(word: str) -> None:
    tolerance = rules().tolerance
    assert tolerance is not None
    assert tolerance.reread(frozenset({word})) == {}


@pytest.mark.parametrize(("word", "read"), [
    ("cacnellare", "cancellare"),  # one swap of neighbours inside a spelled-out word
    ("lsita", "lista"),  # a short word: one swap is enough to be read
    ("rbruica", "rubrica"),  # a long word: any shuffle inside
    ("pasworsd", "password"),
    ("slboccarla", "sbloccarla"),  # a stem shuffled, then the ending as written
])
def test_tolerance_reads_a_word_with_its_inner_letters_shuffled(word: str, read: str) -> None:
    tolerance = rules().tolerance
    assert tolerance is not None
    assert tolerance.reread(frozenset({word})) == {word: read}


@pytest.mark.parametrize("word", ["lsiat", "ltsia", "aslita", "lista", "casella", "dllea"])
def test_tolerance_reads_a_short_word_only_from_one_swap_of_neighbours(word: str) -> None:
    tolerance = rules().tolerance
    assert tolerance is not None
    assert tolerance.reread(frozenset({word})) == {}


def test_a_shuffle_two_spelled_words_share_is_read_as_neither() -> None:
    scramble = scrambled(["torta", "trota", "rubrica"], 5, 7)
    assert scramble.read("torta") is None  # a spelled word is never read as another
    assert scramble.read("totra") is None
    assert scramble.read("rbruica") == "rubrica"
    assert scramble.read("rbu") is None


def test_a_category_read_from_a_scrambled_word_says_so_and_is_marked_for_review() -> None:
    result = run("Vorrei cacnellare la lsita progetto-serra@ateneo.example.it, non la usa nessuno.")
    assert result.category is LIFECYCLE, result.reasons
    assert "'cacnellare' as 'cancellare'" in result.review
    assert any("reading 'cacnellare' as 'cancellare'" in r for r in result.reasons), result.reasons


def test_a_category_read_from_a_regional_word_says_so_and_is_marked_for_review() -> None:
    result = run("A lista do coru un servi cchiu. Cancillatila, pi favuri.")
    assert result.category is LIFECYCLE, result.reasons
    assert "'cancillatila' as 'cancellatela'" in result.review
    assert any("reading 'cancillatila' as 'cancellatela'" in r for r in result.reasons), result.reasons


# -- reasons and text ------------------------------------------------------------


def test_reasons_say_which_rule_matched_where() -> None:
    body = "Buongiorno,\n\nvi chiedo la creazione della casella per il nuovo collega.\n\nCordiali saluti\nMario"
    result = run(body)
    assert result.category is LIFECYCLE
    hit = next(r for r in result.reasons if r.startswith("lifecycle:"))
    assert re.fullmatch(r"lifecycle: act request, frame \S+ 'creazione della casella' in body line 3 \(weight \d\)",
                        hit), hit
    assert "signature removed from line 5 (closing formula)" in result.reasons
    assert result.reasons[-1].startswith("language it")


def test_text_is_the_cleaned_text_that_was_classified() -> None:
    body = "Aggiungete Anna alla lista.\n\nOn Mon, 1 Feb 2027, X <x@example.it> wrote:\n> old text\n"
    assert run(body).text == "Aggiungete Anna alla lista."


def _tokens_one_match_at_a_time(text: str, abbreviations: frozenset[str]) -> list[str]:
    """The clause-mark rules of ``tokens`` spelled out: each mark looks at the character after it."""
    out: list[str] = []
    text = text.replace("|", " , ")  # a table cell ends a clause of its row, not a paragraph
    for match in re.finditer(r"[a-z0-9]+|[.,;:!?\u2022]|(?<!\S)-+(?!\S)", text):
        token = match.group()
        if token[0].isalnum():
            out.append(token)
            continue
        if token in ".,:" and text[match.end():match.end() + 1].isalnum():
            continue
        if token == "." and out and (out[-1] in abbreviations or (len(out[-1]) == 1 and out[-1].isalpha())):
            continue
        out.append("." if token.startswith("-") else token)
    return out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([*"abez09 .,:;!?|-\u2022_'\t\u00e9\u03b1\u00b2\u00bd\u0663\u2028", "dott", "ing"]),
                max_size=40).map("".join))
def test_tokens_keep_the_clause_marks_the_rules_say(text: str) -> None:
    assert tokens(text, rules().abbreviations) == _tokens_one_match_at_a_time(text, rules().abbreviations)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.text(max_size=80))
def test_any_text_gets_a_category_and_a_language(body: str, subject: str) -> None:
    result = classify_text(subject, body, (), rules())
    assert result.category in set(Category)
    assert result.language in {"it", "en"}


# -- rules file errors -----------------------------------------------------------


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "key"), [
    ("threshold = 2", "threshold = 0", "engine.threshold"),
    ("threshold = 2", 'threshold = "2"', "engine.threshold"),
    ("[engine]\n", "[engine]\nspeed = 1\n", "engine.speed"),
    ('category = "lifecycle"', 'category = "lifecycel"', "rule[0] (lifecycle.action_object).category"),
    ('"<{lc_verb}> {mods*} {lc_object}",', '"<{lc_verbs}> {mods*} {lc_object}",',
     "rule[0] (lifecycle.action_object).patterns[0]"),
    ('"<{lc_verb}> {mods*} {lc_object}",', '"{mods*} <{lc_verb}>",', "rule[0] (lifecycle.action_object).patterns[0]"),
    ('"<{lc_verb}> {mods*} {lc_object}",', '"{!adj} <{lc_verb}> {lc_object}",',
     "rule[0] (lifecycle.action_object).patterns[0]"),
    ('"<{lc_verb}> {mods*} {lc_object}",', '"{lc_object} <{!adj}>",', "rule[0] (lifecycle.action_object).patterns[0]"),
    ('"<{lc_verb}> {mods*} {lc_object}",', '"<{lc_verb}> {lc_object?} {!adj}",',
     "rule[0] (lifecycle.action_object).patterns[0]"),
    ('"<{lc_verb}> {mods*} {lc_object}",', '"<{lc_verb}> {lc_object} {!adjs}",',
     "rule[0] (lifecycle.action_object).patterns[0]"),
    ("quote_line = '^\\s*>'", "quote_line = '^(>'", "cleaning.quote_line"),
    ('zones = ["subject", "body"]', 'zones = ["subject", "footer"]', "rule[0] (lifecycle.action_object).zones"),
    ('id = "lifecycle.object_modal_action"', 'id = "lifecycle.action_object"', "rule[1].id"),
    ('mods = ["@det", "@adj"]', 'mods = ["@det", "@adjective"]', "vocab.mods[1]"),
    ('mods = ["@det", "@adj"]', 'mods = ["@det", "@mods"]', "vocab.mods"),
    ('it = ["il",', 'it = ["il two",', "language.it[0]"),
    ('precedence = ["lifecycle", "password_reset", "anagrafica", "other"]',
     'precedence = ["lifecycle", "password_reset", "anagrafica"]', "engine.precedence"),
    ('name = "gratitude"\nwindow = 12', 'name = "gratitude"\nwindow = -1', "negation.cues[7].window"),
    ("version = 1", "version = 2", "version"),
    ('"🔑" = "password"', '"k" = "password"', "text.emoji.'k'"),
    ('"🔑" = "password"', '"🔑🔒" = "password"', "text.emoji.'🔑🔒'"),
    ('"🔑" = "password"', '"🔑" = "pass-word"', "text.emoji.'🔑'"),
    ('"🔑" = "password"', '"🔑" = 3', "text.emoji.'🔑'"),
    ('"rigener*", "scorda*"', '"rigener*", "scorda re*"', "tolerance.terms[18]"),
    ('"@lc_clitic", "@pw_infinitive",', '"@lc_clitics", "@pw_infinitive",', "tolerance.terms[22]"),
    ('"@lc_clitic", "@pw_infinitive",', '"@lc_clitic", "@lc_lift",', "vocab.lc_lift[0]"),
    ("min_length = 6", "min_length = 0", "tolerance.min_length"),
    ("swap_min_length = 5", "swap_min_length = 0", "tolerance.swap_min_length"),
    ("shuffle_min_length = 7", "shuffle_min_length = -7", "tolerance.shuffle_min_length"),
    ('rules = ["lifecycle.net", "password.net"]', 'rules = ["lifecycle.nett", "password.net"]',
     "negation.cues[5].rules[0]"),
    ('categories = ["lifecycle"]', 'categories = ["lifecycel"]', "negation.cues[3].categories[0]"),
    ('limits = ["{only} {proceed_prep}"', 'limits = ["{onlyy} {proceed_prep}"', "adoption.limits[0]"),
    ("[acts.reservation]\n", "[acts.reservation]\nstop = []\n", "acts.reservation.stop"),
    ('name = "past request"\n', 'name = "request made before"\n', "acts.renewal"),
    ("verb = '\\b(?!tramite", "verb = '(\\b(?!tramite", "acts.reservation.verb"),
    ('named = ["{det} {pw_noun}"', 'named = ["{det} {pw_nouns}"', "acts.reservation.named[0]"),
])
def test_a_bad_rules_file_names_the_file_and_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: {key}:"), str(caught.value)


def test_missing_or_invalid_rules_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_rules(bad)


@pytest.mark.parametrize(("subject", "body", "category"), [
    # A lock on an address: block the mailbox.
    ("", "Buongiorno,\n🔒 casella m.rossi@ateneo.example.it subito: manda spam da ieri.\nGrazie", LIFECYCLE),
    # A mailbox, an arrow, a wastebasket: delete it.
    ("", "Hello,\nthe 📧 old.lab@ateneo.example.it ➡️ 🗑️ please, nobody reads it any more\nthanks", LIFECYCLE),
    # A full box and an up arrow: more space.
    ("", "Hi,\nmy 📧 📦 is 💯% full ➡️ ⬆️ please\nthanks", ANAGRAFICA),
    # A key with a cross before the reset: no reset, only the directory.
    ("", "Ciao,\n🔑 ❌ non resettatela, va bene così\nin rubrica il mio interno ora è 4411\ngrazie", ANAGRAFICA),
    # A key that is new: a new password.
    ("", "Ciao,\nho sbagliato la 🔑 tre volte, potete darmi una 🔑 🆕?\nGrazie", PASSWORD),
    # Faces and gestures say how the sender feels, not what they ask.
    ("Riunione", "Ciao, la riunione è alle 15 👍 🎉 😅 grazie", OTHER),
])
def test_symbols_written_for_words_are_read_as_the_words(subject: str, body: str, category: Category) -> None:
    assert classify_text(subject, body, (), rules()).category is category


def test_a_rules_file_without_symbols_reads_none(tmp_path: Path) -> None:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    start = text.index("[text.emoji]")
    path = tmp_path / "rules.toml"
    path.write_text(text[:start] + text[text.index("\n[", start):], encoding="utf-8")
    loaded = load_rules(path)
    assert not loaded.cleaning.symbols
    body = "Buongiorno,\n🔒 casella m.rossi@ateneo.example.it subito\nGrazie"
    assert classify_text("", body, (), loaded).category is OTHER


def test_shipped_rules_load_and_are_frozen() -> None:
    loaded = rules()
    assert loaded.threshold == 2
    assert {r.category for r in loaded.rules} == {LIFECYCLE, PASSWORD, ANAGRAFICA}
    with pytest.raises(AttributeError):
        loaded.threshold = 3  # type: ignore[misc]


# -- held-out messages -----------------------------------------------------------

_H10_HTML = ("<p>Ciao,</p><p>potreste <b>togliere</b> dalla lista <a href='mailto:coro-ateneo@ateneo.example.it'>"
             "coro-ateneo@ateneo.example.it</a> questi due indirizzi?</p><ul><li>paolo.re@ateneo.example.it</li>"
             "<li>sara.mele@ateneo.example.it</li></ul><p>Grazie!<br>Elisa</p>")

HELD_OUT: list[tuple[str, str, str, Category, str]] = [
    ("h01", "Richiesta chiusura casella dipendente trasferito",
     "Gentili colleghi,\n\nil sig. Franco Deiana è stato trasferito all'Università di Cagliari dal 1° giugno. "
     "Vi preghiamo di procedere con la chiusura della sua casella franco.deiana@ateneo.example.it, previa "
     "esportazione dei contenuti.\n\nCordiali saluti\nUfficio Personale Tecnico-Amministrativo\n\n"
     "Ai sensi del D.Lgs. 196/2003 e del GDPR, questo messaggio è riservato ai destinatari indicati.",
     LIFECYCLE, "it"),
    ("h02", "New mailbox needed",
     "Hi there,\r\n\r\nWe have a new postdoc, Dr. Amara Okafor, joining the Chemistry department on 3 May. "
     "Could you please set up a university mailbox for her (amara.okafor@ateneo.example.it)?\r\n\r\n"
     "Many thanks,\r\nRuth\r\n", LIFECYCLE, "en"),
    ("h03", "non entro piu",
     "salve, da ieri non riesco piu ad entrare nella mail, credo di aver sbagliato la pasword troppe volte e "
     "adesso l'account e bloccato. potete sbloccarmelo? grazie\nGianni", PASSWORD, "it"),
    ("h04", "Locked out",
     "Hello,\n\nI changed my password last week and now none of my devices will accept it. I'm completely "
     "locked out of my account. Could you please reset my password so I can log in again?\n\nThanks,\nOwen",
     PASSWORD, "en"),
    ("h05", "Aspettativa - posta",
     "Buongiorno,\nda settembre sarò in aspettativa per un anno. Non disattivate la mia casella: vorrei però "
     "che i messaggi in arrivo fossero inoltrati all'indirizzo della mia collega, laura.bassi@ateneo.example.it."
     "\nGrazie,\nMarta", ANAGRAFICA, "it"),
    ("h06", "Password reset not needed",
     "Hi,\nJust to clarify my earlier call: there is no need to reset my password, I found it. What I do need "
     "is my phone extension updated in the staff directory to 4512.\nCheers,\nLiam", ANAGRAFICA, "en"),
    ("h07", "I: richiesta casella PEC",
     "Procedete come da richiesta qui sotto, confermo io.\nAlberto Guidi\n\n-----Messaggio originale-----\n"
     "Da: Segreteria Dottorato <dottorato@ateneo.example.it>\nInviato: martedì 9 febbraio 2027 11:20\n"
     "A: Guidi Alberto <referente.tecnico@ateneo.example.it>\nOggetto: richiesta casella PEC\n\n"
     "Gentile dott. Guidi,\nper le comunicazioni ufficiali con i dottorandi ci servirebbe una casella PEC "
     "dedicata. È possibile attivarla?\nCordiali saluti\nSegreteria Dottorato", LIFECYCLE, "it"),
    ("h08", "Fwd: Your mailbox will be suspended",
     "Hello, a few colleagues received the message below. It looks like phishing to me, just letting you know."
     "\nPriya\n\n---------- Forwarded message ---------\nFrom: Mail Admin <admin@mailbox-verify.example.net>\n"
     "Date: Thu, 11 Feb 2027 at 07:02\nSubject: Your mailbox will be suspended\nTo: <priya.nair@ateneo.example.it>"
     "\n\nDear user, your mailbox will be suspended within 24 hours. Click here to reset your password and keep "
     "your account active.", OTHER, "en"),
    ("h09", "R: [HD-2027-0420] Sblocco account",
     "Buongiorno, confermo che ora riesco ad accedere regolarmente. Grazie per la disponibilità.\n\nLuisa\n\n"
     "Da: Helpdesk Posta <helpdesk-posta@servizi.example.it>\nInviato: giovedì 11 febbraio 2027 15:03\n"
     "A: Luisa Ferri <luisa.ferri@ateneo.example.it>\nOggetto: [HD-2027-0420] Sblocco account\n\n"
     "Gentile utente, il suo account è stato sbloccato e la password reimpostata.", OTHER, "it"),
    ("h10", "coro", html2text.html2text(_H10_HTML), ANAGRAFICA, "it"),
    ("h11", "Old list cleanup",
     "Hello,\nThe summer-school-2024 list is no longer used. Please delete the list entirely rather than just "
     "removing its members.\nThanks,\nGiulia", LIFECYCLE, "en"),
    ("h12", "SOSPENSIONE PEC",
     "BUONGIORNO,\nA SEGUITO DI ACCESSI SOSPETTI VI CHIEDIAMO DI SOSPENDERE SUBITO LA CASELLA PEC "
     "UFFICIO.GARE@PEC.ATENEO.EXAMPLE.IT.\nDISTINTI SALUTI\nAREA SISTEMI", LIFECYCLE, "it"),
    ("h13", "Mailbox almost full",
     "Hi,\nmy mailbox keeps warning me that it's almost full and I need to keep years of project "
     "correspondence. Would it be possible to get more storage?\nBest regards,\nHenrik", ANAGRAFICA, "en"),
    ("h14", "Alias per ufficio relazioni internazionali",
     "Salve,\nvorrei che le mail inviate a international@ateneo.example.it arrivassero anche nella mia casella, "
     "come alias. Inoltre il nome visualizzato andrebbe corretto in \"Ufficio Relazioni Internazionali\".\n"
     "Grazie\nIrene", ANAGRAFICA, "it"),
    ("h15", "IMAP settings",
     "Hello,\nI'm setting up the Mail app on my new MacBook. Which IMAP server and port should I use, and do I "
     "need an app password?\nThanks,\nNoah", OTHER, "en"),
    ("h16", "Disservizio posta",
     "Buongiorno,\nè la terza volta questo mese che la webmail non è raggiungibile per ore. Vorrei sapere se è "
     "previsto un intervento per risolvere il problema definitivamente.\nCordiali saluti\nProf. Ettore Sala",
     OTHER, "it"),
    ("h17", "Richieste varie",
     "Buongiorno,\ndue cose per l'utente marco.sini@ateneo.example.it:\n1) aggiornare la qualifica in rubrica "
     "(ora è Funzionario);\n2) reimpostare la password, che l'interessato non ricorda più.\nGrazie\n"
     "Chiara Vitali", PASSWORD, "it"),
    ("h18", "Reactivation request",
     "Dear Help Desk,\nProf. Lindqvist has returned from her sabbatical. Her account was suspended in January; "
     "please reactivate it from Monday.\nKind regards,\nSandro Pini", LIFECYCLE, "en"),
    ("h19", "Creazione lista",
     "Buongiorno,\nla lista ricerca-clinica esiste già, non serve crearla: chiedo solo di cambiarne la "
     "descrizione in \"Gruppo Ricerca Clinica\" e di nominare me come proprietario.\nGrazie\nDr. Fabio Leone",
     ANAGRAFICA, "it"),
    ("h20", "FW: cannot access email",
     "I approve this request, please go ahead.\n\nRegards,\nAlberto Guidi\n\nFrom: Tom Reed "
     "<tom.reed@ateneo.example.it>\nSent: Friday, 12 February 2027 09:14\nTo: Alberto Guidi "
     "<referente.tecnico@ateneo.example.it>\nSubject: cannot access email\n\nHi Alberto, I forgot my email "
     "password after the holidays. Could you ask the help desk to reset it?\nThanks, Tom", PASSWORD, "en"),
]


@pytest.mark.parametrize(("name", "subject", "body", "expected", "language"), HELD_OUT,
                         ids=[h[0] for h in HELD_OUT])
def test_held_out_message(name: str, subject: str, body: str, expected: Category, language: str) -> None:
    result = run(body, subject)
    assert (result.category, result.language) == (expected, language), (name, result.reasons)


def test_an_action_that_takes_a_message_out_of_mailboxes_is_no_mailbox_deletion() -> None:
    result = run("Ho mandato per errore una mail a tutto il dipartimento: potete cancellarla dalle loro caselle?")
    assert result.category is OTHER, result.reasons
    assert result.privileged_evidence is None, result.reasons


@pytest.mark.parametrize("body", [
    "Dal 12 aprile l'indirizzo per i giornalisti e stampa@ateneo.example.it, che Giorgio vi ha gia chiesto di "
    "attivare come alias. Una sola domanda: il limite degli allegati e ancora 25 MB?",
    "The new list Anna has already asked you to create will be announced on Monday.",
])
def test_what_another_has_already_asked_of_the_help_desk_is_told_not_asked(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons
    assert any("act report: 'vi ha gia chiesto" in r or "act report: 'has already asked you" in r
               for r in result.reasons), result.reasons


def test_the_sender_asking_beside_another_s_past_request_still_asks() -> None:
    result = run("Giorgio vi ha gia chiesto l'alias; io vi chiedo di aggiungere Anna alla lista stampa.")
    assert result.category is ANAGRAFICA, result.reasons


def test_others_troubles_reported_are_not_asked_for() -> None:
    result = run("Ci arrivano lamentele di docenti che trovano la casella piena. Possiamo vederci per parlarne?")
    assert result.category is OTHER, result.reasons


def test_a_request_after_others_troubles_still_asks() -> None:
    result = run("Ci arrivano segnalazioni di colleghi che la casella condivisa e piena: potete aumentare lo spazio?")
    assert result.category is ANAGRAFICA, result.reasons
    result = run("Segnalazioni di studenti: la casella di m.rossi e bloccata, potete sbloccarla?")
    assert result.category is LIFECYCLE, result.reasons


# -- the subject read on into the body ---------------------------------------------


@pytest.mark.parametrize(("subject", "body", "expected"), [
    ("Please add me", "...to the reading-group@example.it list, I joined this term.", ANAGRAFICA),
    ("Casella del laboratorio di chimica (piano terra)", "da chiudere: il progetto e finito.", LIFECYCLE),
    ("Lista del convegno 2026", "Da eliminare, grazie.", LIFECYCLE),
])
def test_a_request_running_from_the_subject_into_the_body_is_read_across(
        subject: str, body: str, expected: Category) -> None:
    result = run(body, subject=subject)
    assert result.category is expected, result.reasons
    assert any("the subject read on into body line 1" in r for r in result.reasons), result.reasons
    assert result.review == f"category {expected.value} decided from the subject read on into the body"


@pytest.mark.parametrize(("subject", "body"), [
    ("Casella del laboratorio", "Non da chiudere: serve ancora per il progetto."),
    ("Re: casella del laboratorio", "da chiudere: il progetto e finito."),
    ("Casella del laboratorio", "Vorrei sapere quanto tempo resta prima che venga chiusa per inattività, "
                                "non chiedo di chiuderla."),
])
def test_the_subject_is_not_read_on_into_a_negated_or_long_opening_or_from_a_reply(subject: str, body: str) -> None:
    result = run(body, subject=subject)
    assert result.category is OTHER, result.reasons
    assert not any("read on into" in r for r in result.reasons), result.reasons


# -- attachments' file names under a short body ---------------------------------------


def _with_attachment(body: str, filename: str) -> Classification:
    return classify(message(body_text=body, subject="richiesta",
                            attachments=(Attachment(filename, "application/pdf", 2048),)), rules())


@pytest.mark.parametrize(("body", "filename", "expected"), [
    ("Come da allegato.", "richiesta_reset_password_PEC_ufficio.pdf", PASSWORD),
    ("Questi tre, da cancellare.", "caselle_da_eliminare_cessati_marzo.csv", LIFECYCLE),
])
def test_a_short_body_leaves_the_request_to_the_attachments_file_names(
        body: str, filename: str, expected: Category) -> None:
    result = _with_attachment(body, filename)
    assert result.category is expected, result.reasons
    assert any(f"in the attachment's file name '{filename}'" in r for r in result.reasons), result.reasons
    assert result.review == f"category {expected.value} decided from the subject and the attachments' file names"


def test_a_long_body_is_not_overruled_by_an_attachments_file_name() -> None:
    body = ("Buongiorno, vi mando il verbale della riunione di ieri sulla migrazione delle caselle, "
            "da leggere con calma prima di giovedì.")
    assert _with_attachment(body, "richiesta_reset_password_PEC_ufficio.pdf").category is OTHER


def test_a_file_name_that_asks_nothing_adds_nothing() -> None:
    assert _with_attachment("Come da allegato.", "verbale_riunione_12_maggio.pdf").category is OTHER


def test_a_mention_inside_a_frame_not_asked_for_is_not_asked_for_either() -> None:
    result = run("The notice says my password will get expired on Friday. I would like to know how to change the "
                 "password myself.")
    assert result.category is OTHER, result.reasons


@pytest.mark.parametrize("body", [
    "Per il collega Verdi lasciate stare lo sblocco che vi avevo chiesto ieri: e riuscito a entrare.",
    "Il mese prossimo vi chiederemo di disattivare le caselle dei borsisti; vi mandero l'elenco.",
    "Next month I will ask you to delete the old project lists, once the audit is over.",
    "Vi avviso che cambiera il responsabile della lista: per ora non fate nulla, vi scrivo io con i nomi.",
    "The lab will move in June. For now do nothing about the shared mailbox; I will write again.",
    "Non uso quasi mai la webmail perche dimentico sempre la password, ma non e un problema.",
    "In case my account gets locked while I am abroad, what should I do? It's just to be prepared.",
    "I forgot my password. Is the reset page on the portal the official one? If so I will do it myself.",
])
def test_an_action_taken_back_announced_or_habitual_is_not_asked_for(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("La casella eventi@ateneo.example.it manda spam da stanotte. Non sarebbe il caso di bloccarla?", LIFECYCLE),
    ("The old choir list is never used. Shouldn't we delete it?", LIFECYCLE),
    ("Sarebbe possibile avere una nuova password per la casella del laboratorio?", PASSWORD),
    ("Il mese prossimo vi chiedero di chiudere la casella; intanto potete sospenderla?", LIFECYCLE),
    ("Dimentico sempre la password: ho dimenticato anche quella nuova, potete resettarla?", PASSWORD),
    ("Non e il caso di chiudere la casella: serve ancora.", OTHER),
])
def test_a_rhetorical_or_polite_request_is_asked_for_and_a_denial_is_not(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("My mailbox got locked after a few wrong tries. You wouldn't be able to unlock my account, would you?",
     PASSWORD),
    ("The project list is dead now. I don't suppose you could delete the list for us?", LIFECYCLE),
    ("You couldn't reset my password, could you? The portal keeps refusing it.", PASSWORD),
    ("Please don't unlock my account: I will change my password myself tomorrow.", OTHER),
    ("I do not want the old choir mailbox deleted, it is still read.", OTHER),
    ("I don't suppose the list needs deleting yet, so leave it for now.", OTHER),
    ("I haven't managed to set up an automatic forward to my deputy myself; could you do it?", ANAGRAFICA),
    ("I don't want an automatic forward set up to my deputy, thanks.", OTHER),
])
def test_a_hedged_request_in_the_negative_is_asked_for_and_a_real_denial_is_not(body: str,
                                                                                expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Richiesta (segnare con una X):\n[ ] Creazione casella\n[ ] Cancellazione casella\n[X] Aggiornamento rubrica\n"
     "Dettagli: il mio interno nuovo e 4410", ANAGRAFICA),
    ("Request type:\n\u2610 New mailbox\n\u2612 Password reset for my account\n\u2610 Directory update", PASSWORD),
    ("Tipo:\n(x) Aumento spazio casella\n( ) Chiusura della casella\n( ) Reset della password", ANAGRAFICA),
    # A ticked box that only names a new box chooses its creation; left empty, it asks for nothing.
    ("Services wanted:\n[X] Visitor email account\n[ ] Parking permit", LIFECYCLE),
    ("Servizi:\n[ ] Casella temporanea\n[X] Badge di accesso", OTHER),
])
def test_in_a_tick_box_form_only_the_ticked_boxes_are_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A checklist's empty box is an item still to do: what it names is asked for (fail closed).
    ("Checklist nuovo assunto\n[X] contratto\n[X] badge\n[ ] casella di posta m.rossi@example.it da attivare",
     LIFECYCLE),
    ("Onboarding checklist\n[x] contract signed\n[ ] add Anna to the list staff@example.it", ANAGRAFICA),
    ("[X] visita medica\n[ ] disattivare la casella m.rossi@example.it\nLe voci aperte sono per voi.", LIFECYCLE),
    ("[x] badge returned\n[ ] reset the password of m.rossi@example.it  <-- to you", PASSWORD),
    ("[X] contratto\n[ ] togliere Rossi dalla lista staff@example.it  <-- a voi", ANAGRAFICA),
    # Without those words it stays a form: the empty box is an option left out.
    ("Richiesta:\n[X] Aggiornamento rubrica\n[ ] Cancellazione casella\nil mio interno nuovo e 4410", ANAGRAFICA),
])
def test_a_checklists_empty_boxes_are_items_still_to_do(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


def test_a_first_person_ask_is_a_request_even_beside_what_is_not_asked() -> None:
    result = run("We are not asking you to close any account. We ask you to remove Dr Ryan from the list "
                 "staff@example.it.")
    assert result.category is ANAGRAFICA, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ('Tipo di richiesta:   Cancellazione casella\nDescrizione:         interno 4410 in rubrica\n\n'
     'Ho riusato il vecchio modulo: il campo "Tipo di richiesta" e rimasto quello di marzo.', ANAGRAFICA),
    ('Azione:   Reset password\nNote:     aggiungere Rita alla lista staff@example.it\n\n'
     'The fields "Azione" and "Casella" are left over from last month.', ANAGRAFICA),
    # Named but not said to be old: the field still asks.
    ('Azione:   Reset password\nNote:     aggiungere Rita alla lista staff@example.it\n\n'
     'Il campo "Azione" e importante.', PASSWORD),
])
def test_a_reused_forms_fields_disowned_by_name_are_not_asked(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Cose da fare:\n[ ] reset della password di m.neri\n[ ] interno 4410 in rubrica", PASSWORD),
    ("Checklist:\n- [x] add Anna to the staff list\n- [ ] please delete the old-lab mailbox", LIFECYCLE),
])
def test_empty_boxes_without_a_ticked_one_or_under_bullets_are_things_to_do(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize("body", [
    "Vi ringrazio per aver sistemato ieri il mio nome in rubrica, ora e giusto.",
    "Thank you for fixing my name in the directory yesterday.",
    "Incrociando l'esportazione della rubrica con l'anagrafica abbiamo trovato dodici caselle di cessati.",
    "Il collega che ieri avete inserito nella lista non riceve le convocazioni: sapete dirmi perche?",
])
def test_a_directory_or_list_change_thanked_for_used_or_told_as_done_is_not_asked(body: str) -> None:
    assert run(body).category is OTHER, run(body).reasons


@pytest.mark.parametrize("body", [
    "Il mio nome non compare in rubrica.",
    "Grazie per la risposta, ma in rubrica il mio interno e ancora sbagliato.",
    "Grazie per aver sistemato il nome; potete correggere anche il numero in rubrica?",
    "Avete inserito Rossi nella lista? Inserite anche Bianchi nella lista giunta.",
])
def test_a_directory_or_list_change_beside_thanks_or_a_deed_told_is_still_asked(body: str) -> None:
    assert run(body).category is ANAGRAFICA, run(body).reasons


@pytest.mark.parametrize("body", [
    "il computer ce lo danno gli informatici ma la mail non so quindi in pratica servirebbe una casella a nome suo",
    "non ho capito bene dunque servirebbe una casella nuova per lei",
    "La casella non va quindi cancellata.",  # the doubt a "quindi" leaves is read the more privileged way
])
def test_a_negation_ends_at_a_consequence_word(body: str) -> None:
    """"quindi", "dunque" open a new clause: a "non" before them does not deny what follows (fail closed)."""
    assert run(body).category is LIFECYCLE, run(body).reasons


def test_a_negation_in_its_own_clause_still_denies() -> None:
    assert run("Vi scrivo per la nuova collega: non serve creare una casella, usera quella del progetto.").category \
        is OTHER


@pytest.mark.parametrize(("subject", "body"), [
    ("Sblocco account urgente", "Please forget the subject: I got back in with the new password. "
                                "Add Ana Ruiz to the staff list?"),
    ("Chiusura casella", "Ignorate l'oggetto, l'ho scritto per sbaglio. Aggiungete Luca Bini alla lista docenti."),
    ("Reset password", "Scusate, ho riusato una vecchia mail. Aggiungete Luca Bini alla lista docenti."),
    ("Mailbox deletion", "Sorry, I reused an old email. Please add Ana Ruiz to the staff list."),
])
def test_a_subject_the_body_sets_aside_asks_nothing(subject: str, body: str) -> None:
    result = run(body, subject)
    assert (result.category, result.privileged_evidence) == (ANAGRAFICA, None), result.reasons


def test_a_subject_not_set_aside_still_counts() -> None:
    """Without the body disowning it, a privileged subject over a list request still fails closed."""
    result = run("I got back in with the new password. Could you add Ana Ruiz to the staff list?",
                 "Sblocco account urgente")
    assert result.privileged_evidence is PASSWORD, result.reasons


@pytest.mark.parametrize("body", [
    "In allegato la bozza della procedura: in caso di password scaduta il coordinatore chiede il reset al "
    "referente. Vi chiediamo solo un parere sul flusso.",
    "Attached is our draft on closing mailboxes of leavers; we are only asking for your opinion on it.",
])
def test_only_an_opinion_asked_on_a_draft_asks_nothing_it_describes(body: str) -> None:
    assert run(body).category is OTHER, run(body).reasons


def test_a_state_yields_to_a_verdict_on_the_bare_action() -> None:
    result = run("La password era scaduta, ma l'ho cambiata da solo: il reset non serve piu. In rubrica il mio "
                 "interno e sbagliato, quello giusto e 4411.")
    assert result.category is ANAGRAFICA, result.reasons


@pytest.mark.parametrize("body", [
    "Non so fare il reset da solo: la password e scaduta.",
    "La password e scaduta e non ho fatto il reset.",
    "La password e scaduta e non ho nessun modo di fare il reset.",
])
def test_a_state_does_not_yield_to_a_bare_action_merely_near_a_no(body: str) -> None:
    assert run(body).category is PASSWORD, run(body).reasons


def test_a_bare_action_refused_by_its_determiner_declines_the_state_told() -> None:
    result = run("La password mi era scaduta ma l'ho gia cambiata da sola. Nessun reset.")
    assert result.category is OTHER, result.reasons


def test_a_password_policy_named_is_no_password_of_the_sender() -> None:
    assert run("Nel manuale devo citare la politica delle password e i requisiti della password.").category is OTHER


@pytest.mark.parametrize("body", [
    "Last week you added the two new interns to the lab list. They both get the mail now, thanks: no further "
    "action needed.",
    "La correzione del numero in rubrica e arrivata, grazie. Nessun altro intervento.",
])
def test_nothing_further_after_a_thing_done_asks_nothing(body: str) -> None:
    assert run(body).category is OTHER, run(body).reasons


@pytest.mark.parametrize("body", [
    "Ve ne giro tre, senza alcuna richiesta operativa: chi puo chiedere di prorogare la casella?",
    "Numero e stanza aggiornati in rubrica. Niente altro da chiedere, buon weekend!",
    "Quanto spazio ho nella casella? Non vi chiedo di aumentarla adesso, sono al 40%.",
    "Preferite che vi chiediamo una casella guest ciascuno? Non devo aprire niente adesso.",
])
def test_a_message_that_says_it_asks_nothing_asks_nothing(body: str) -> None:
    assert run(body).category is OTHER, run(body).reasons


def test_nothing_further_beside_a_privileged_request_still_asks_it() -> None:
    result = run("Please delete the mailbox old-lab@ateneo.example.it. No further action needed on the lists.")
    assert result.category is LIFECYCLE, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Ok nothing to do with the list, I need my account unlocked today.", Category.PASSWORD_RESET),
    ("The list is fine as it is, nothing to do. The account was unlocked yesterday.", Category.OTHER),
])
def test_nothing_to_do_with_a_thing_says_what_a_request_is_not_about(body: str, expected: Category) -> None:
    assert category(body) is expected


@pytest.mark.parametrize("body", [
    "La password della casella dell'ufficio [...] scaduta da ieri, non entriamo. Potete rinnovarla?",
    "The password of the lab mailbox (...) expired yesterday; could you renew it?",
])
def test_a_transcriber_s_elision_is_a_gap_in_the_clause_not_its_end(body: str) -> None:
    result = run(body)
    assert result.category is PASSWORD, result.reasons


@pytest.mark.parametrize("body", [
    "Mi e scaduta la password. Non vi chiedo di resettarla subito: prima ditemi i requisiti, poi resettatela "
    "voi per favore.",
    "Non vi chiedo di cambiare le regole. Vi chiedo di resettarla, per favore.",
    "Non vi chiedo i requisiti: resettatemi la password, grazie.",
    "Non vi chiedo di spiegarmi nulla. Potete resettare la password?",
    "I'm not asking about the rules: please reset my password.",
    "Non chiedo di resettarla io da sola: serve che la resettiate voi.",
    "Il reset non lo faccio io. Chiediamo che la password venga reimpostata da voi.",
])
def test_a_subject_state_is_asked_beside_a_declined_action_and_a_real_request(body: str) -> None:
    result = run(body, subject="Password scaduta")
    assert result.category is PASSWORD, result.reasons


@pytest.mark.parametrize(("subject", "body", "expected"), [
    ("borrare casella vecchia", "La seconda casella non la uso mai: vi chiedo per favore di borrarla.", LIFECYCLE),
    ("", 'La lista progetto@ateneo.example.it non serve piu. Potreste "apagarla"?', LIFECYCLE),
    ("", "Konnten Sie die Mailbox m.neri@ateneo.example.it bitte wieder freischalten?", LIFECYCLE),
    ("", "Mi cuenta ha caducado (la contrasena, no la cuenta). Podriais restablecerla?", PASSWORD),
    ("", "Ho olvidado la contrasena della casella. Potete mandarmene una nuova?", PASSWORD),
    ("", "A senha nao funciona mais. Podem me dar uma senha nova, por favor?", PASSWORD),
    ("", "Queria pedir que me anadais a la lista erasmus@ateneo.example.it.", Category.ANAGRAFICA),
    ("", "Vi scrivo per sollecitare l'iscrizione della mia collega alla lista francofonia@ateneo.example.it.",
     Category.ANAGRAFICA),
])
def test_the_writer_s_own_language_names_the_action_and_its_object(subject: str, body: str,
                                                                      expected: Category) -> None:
    result = run(body, subject=subject)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ('Potete "eliminare" la casella vecchia@ateneo.example.it?', LIFECYCLE),
    ('Il messaggio diceva "your account will be suspended": e phishing?', OTHER),
])
def test_one_word_in_quotes_is_the_writer_s_own_word_a_longer_span_a_quotation(body: str,
                                                                              expected: Category) -> None:
    assert category(body) is expected


@pytest.mark.parametrize("body", [
    "Per il personale in aspettativa (senza assegni) sospendete le caselle da ottobre.",
    "Senza indugio bloccate la casella compromessa di Verdi.",
    "Senza aspettare il referente, chiudete la casella del convegno.",
    "Senza modifiche alla lista, eliminate la casella del vecchio progetto.",
    "Senza toccare la posta arrivata: la casella di Rossi va chiusa.",
    "Senza altre formalita vi chiediamo di disattivare la casella del borsista.",
    "Le caselle senza titolare non servono piu: la chiudete voi, quella del convegno?",
])
def test_without_before_a_command_does_not_deny_it(body: str) -> None:
    """Fail closed: "senza" governs an infinitive or a noun, never a command given after it."""
    assert run(body).category is LIFECYCLE, run(body).reasons


@pytest.mark.parametrize("body", [
    "Vi scrivo senza chiedere di chiudere la casella: volevo solo ringraziarvi.",
    "Potete spostare la posta senza sospendere la casella?",
])
def test_without_before_an_infinitive_still_denies_it(body: str) -> None:
    assert run(body).category is not LIFECYCLE, run(body).reasons


@pytest.mark.parametrize("body", [
    "Vorrei che la casella di mio padre fosse cancellata: continuano ad arrivare messaggi.",
    "Bloccate subito l'accesso alla casella b.neri@ateneo.example.it, la posta continui ad arrivare.",
    "Please block access to the mailbox of the former contractor.",
])
def test_a_wished_deletion_or_a_blocked_access_is_a_lifecycle_request(body: str) -> None:
    assert run(body).category is LIFECYCLE, run(body).reasons


@pytest.mark.parametrize("body", [
    "Ho ottenuto l'ok del direttore: attivate la casella per il nuovo tecnico.",
    "Una volta ottenuta la firma chiudete la casella del convegno.",
    "Abbiamo ottenuto il via libera, eliminate la casella di Rossi.",
    "Ottenuto il nulla osta, vi chiediamo la chiusura della casella del borsista.",
    "Il borsista ha ottenuto il rinnovo ma la casella del convegno va chiusa.",
    "La casella restera attiva fino a dicembre, poi chiudetela.",
    "Mi dicono che la casella restera attiva: eliminate invece la lista del convegno.",
    "La casella di Rossi restera aperta o va eliminata? Eliminatela pure.",
    "Please tell me if the mailbox will stay active; otherwise delete the mailbox of the old lab.",
])
def test_a_thing_obtained_or_kept_beside_a_real_request_still_asks_it(body: str) -> None:
    """Fail closed: "ottenuto" and a future "restera" deny only the action right after them."""
    assert run(body).category is LIFECYCLE, run(body).reasons


@pytest.mark.parametrize("body", [
    "Il collega titolare della casella ha ottenuto l'attivazione della carriera alias.",
    "Mi e stato detto che la casella restera attiva fino a dicembre.",
])
def test_a_thing_obtained_or_kept_as_it_is_asks_no_lifecycle_action(body: str) -> None:
    assert run(body).category is not LIFECYCLE, run(body).reasons


@pytest.mark.parametrize("body", [
    "Vi diffidiamo dal procedere oltre con i ritardi: sospendete la casella di Rossi.",
    "Diffidiamo codesto Servizio dal procedere con lentezza e chiudete la casella compromessa.",
    "Vi diffido dal dare corso alle richieste di Verdi; la casella di Verdi va bloccata subito.",
    "La ditta e stata diffidata dal procedere con i lavori, quindi bloccate la casella del fornitore.",
    "Diffidati dall'eseguire altri accessi, vi chiediamo di sospendere la casella del consulente.",
    "Vi diffidiamo dal procedere a sospensioni diverse: sospendete solo la casella di Neri.",
])
def test_a_formal_warning_beside_a_real_request_still_asks_it(body: str) -> None:
    """Fail closed: "diffidare dal procedere" forbids only the action it governs, not a command after it."""
    assert run(body).category is LIFECYCLE, run(body).reasons


def test_a_formal_warning_off_a_suspension_asks_for_no_suspension() -> None:
    result = run("La RSU diffida codesto Servizio dal procedere a qualsiasi sospensione o blocco di caselle.")
    assert result.category is not LIFECYCLE, result.reasons


@pytest.mark.parametrize("body", [
    "Next spring we plan to open a mailbox for the new lab. How long does it take? For now it is only a question.",
    "Per ora e solo una domanda: quanto ci vuole per creare una casella per il nuovo progetto?",
    "Should I better ask for a new list for the course? I don't ask it now, first I want to know the rules.",
    "Conviene chiedere una lista per il corso? Non la chiedo adesso, prima voglio sapere i limiti.",
])
def test_a_message_called_only_a_question_for_now_asks_nothing(body: str) -> None:
    assert run(body).category is OTHER, run(body).reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("For now it is only a question. Please delete the mailbox of Mario Rossi.", LIFECYCLE),
    ("For now it is only a question, but could you reset my password? It expired.", PASSWORD),
    ("Per ora e solo una domanda. Potete chiudere la casella di Mario Rossi?", LIFECYCLE),
    ("Per ora e solo una domanda; intanto chiudete la casella x@ateneo.example.it.", LIFECYCLE),
    ("I don't ask it now for the list; please reset my password today.", PASSWORD),
    ("Non lo chiedo adesso per la lista. Vi chiedo di resettarmi la password.", PASSWORD),
    ("Non la chiedo ora la lista: la casella di Rossi va chiusa.", LIFECYCLE),
    ("Solo una domanda per ora: resettatemi la password, e scaduta.", PASSWORD),
    ("For now it's only a question. Kindly unlock my account.", PASSWORD),
    ("For now it is only a question. I need my password reset, it expired.", PASSWORD),
    ("For now it is only a question. I need you to reset my password.", PASSWORD),
    ("I don't ask it now for the list. We need the mailbox of Rossi deleted today.", LIFECYCLE),
    ("For the record. We need the mailbox of Rossi deleted today.", LIFECYCLE),
    ("Per ora e solo una domanda. Ci serve che chiudiate la casella di Rossi.", LIFECYCLE),
    ("Per ora e solo una domanda. Mi serve la disattivazione della casella di Rossi.", LIFECYCLE),
])
def test_a_request_beside_a_message_called_only_a_question_is_still_asked(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Piano del primo mese:\n - formazione sicurezza (fatta)\n - casella istituzionale: da creare a cura vostra\n"
     "Procedete con l'ultimo punto.", LIFECYCLE),
    ("Piano del primo mese:\n - casella istituzionale: da non creare prima di lunedi", OTHER),
    ("Potete mettere sulla casella della segreteria questa firma automatica?", ANAGRAFICA),
    ("Potete mettere sulla casella della segreteria la firma digitale del dirigente?", OTHER),
])
def test_a_plan_item_and_a_signature_put_on_a_named_mailbox(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Volevo il reset della password, ma non serve piu: chiudete invece la casella m.rossi@ateneo.example.it.",
     LIFECYCLE),
    ("Resettate la password di m.rossi@ateneo.example.it, ma non serve piu farlo entro oggi.", PASSWORD),
    ("La casella vecchia non la uso, ma non serve piu tenerla: chiudetela.", LIFECYCLE),
    ("Avevo chiesto di chiudere la casella m.rossi@ateneo.example.it, ma non serve piu aspettare: la chiudete oggi?",
     LIFECYCLE),
    ("Volevo il reset, ma non serve piu. Serve invece il reset della password di m.rossi@ateneo.example.it.",
     PASSWORD),
    ("I asked for a reset of my password, but it is no longer needed. Please delete the mailbox "
     "old.box@ateneo.example.it.", LIFECYCLE),
    ("Chiudete la casella m.rossi@ateneo.example.it, non serve piu.", LIFECYCLE),
    ("Volevo chiudere la lista, ma non serve piu; please delete the mailbox m.rossi@ateneo.example.it.", LIFECYCLE),
])
def test_a_request_beside_an_action_ruled_out_by_a_turn_is_still_asked(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


def test_an_action_ruled_out_by_a_turn_is_withdrawn() -> None:
    body = "Ieri volevo il reset della password, ma non serve piu, l'ho ricordata. Mettete in rubrica il mio cellulare."
    result = run(body)
    assert result.category is ANAGRAFICA, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("La risposta automatica va bene cosi. La casella di Rossi invece potete disattivarla?", LIFECYCLE),
    ("La risposta automatica e gia tolta; la casella m.rossi@ateneo.example.it potete eliminarla.", LIFECYCLE),
    ("Ho messo la risposta automatica. Potete disattivarla e poi chiudere la casella m.rossi@ateneo.example.it?",
     LIFECYCLE),
    ("La risposta automatica non serve: la casella di Rossi, in pensione, potete chiuderla?", LIFECYCLE),
    ("Risposta automatica: sistemata. Casella di Bianchi: disattivatela.", LIFECYCLE),
    ("La regola di inoltro l'ho tolta, la casella invece potete eliminarla?", LIFECYCLE),
    ("Ho dimenticato di mettere la risposta automatica. Potete attivarla voi sulla mia casella?", ANAGRAFICA),
])
def test_a_pronoun_takes_up_the_nearest_named_object(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Vi prego di  N O N  chiudere la sua casella, ma soltanto di aggiornare il suo numero nella rubrica.", ANAGRAFICA),
    ("La casella x@ateneo.example.it  N O N  va cancellata, come vi hanno scritto: va soltanto  S O S P E S A  "
     "fino a gennaio.", LIFECYCLE),
    ("La casella N O N va tenuta: chiudetela subito.", LIFECYCLE),
    ("N O N aspettate lunedi, resettate la password di Rossi oggi.", PASSWORD),
    ("Il collega N O N lavora piu qui, please delete his mailbox.", LIFECYCLE),
    ("N O N ricordo piu la password: serve una password nuova.", PASSWORD),
    ("La lista N O N serve piu, chiediamo di eliminarla.", LIFECYCLE),
    ("La casella del convegno N O N la usiamo: la chiudete entro venerdi?", LIFECYCLE),
    ("Vi prego di N O N aspettare: sbloccate l'account di Rossi.", PASSWORD),
])
def test_a_word_set_letter_by_letter_is_read_as_the_word(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


def test_letters_set_apart_become_one_word() -> None:
    assert tokens("vi prego di  n o n  chiudere", frozenset()) == ["vi", "prego", "di", "non", "chiudere"]
    assert tokens("c'e a roma", frozenset()) == ["c", "e", "a", "roma"]


@pytest.mark.parametrize(("body", "expected"), [
    ("La parola d'ordine del computer non me la prende piu, esce scritto che e scaduta.", PASSWORD),
    ("Mettete in rubrica il mio cellulare nuovo; e fategli anche cambiare la password della mia casella.", PASSWORD),
    ("Fatemi sapere come cambiare la password da solo.", OTHER),
])
def test_a_password_refused_in_speech_or_changed_by_a_causative(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Is my mailbox scheduled to be closed on the 31st, and if so, who has to tell you about the extension?", OTHER),
    ("The list of the old course is due to be deleted in June.", OTHER),
    ("The mailbox is scheduled to be closed in June; please close it today instead.", LIFECYCLE),
    ("The list was due to be closed in May. Please delete it now.", LIFECYCLE),
    ("We are going to end the project: the mailbox must be closed.", LIFECYCLE),
    ("Our list is about to be archived, but the list needs to be deleted today.", LIFECYCLE),
    ("The mailbox is set to be closed next year: we ask that it be closed this week.", LIFECYCLE),
    ("The mailbox is going to be closed anyway; kindly delete the mailbox of Rossi as well.", LIFECYCLE),
    ("I am due to leave: the mailbox of the project has to be deleted.", LIFECYCLE),
    ("The mailbox is scheduled to be closed next year, but it must be closed this week.", LIFECYCLE),
])
def test_a_schedule_told_or_asked_about_is_no_obligation(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("L'Agente segnalava di aver dimenticato la password della casella di servizio. Si precisa che NON si chiede il "
     "ripristino della password, gia effettuato. Si chiede di aggiornare in rubrica il cellulare: 335 710 4420.",
     ANAGRAFICA),
    ("Ho dimenticato la password. Non chiedo il ripristino via telefono: resettatela per mail.", PASSWORD),
    ("Ho dimenticato la password della PEC: non serve il ripristino della vecchia, mandatemi una password nuova.",
     PASSWORD),
    ("L'agente ha dimenticato la password; non chiediamo il ripristino della sua, ma vi chiediamo di resettare la "
     "password della casella di servizio.", PASSWORD),
    ("Non chiedo il ripristino della password per me: la collega ha dimenticato la password, reimpostatela.", PASSWORD),
    ("Ho dimenticato la password e no, non chiedo il reset: potete sbloccarmi l'account?", PASSWORD),
    ("Ho dimenticato la password. Il reset non serve per la PEC, serve per la casella normale: please reset my "
     "password.", PASSWORD),
])
def test_a_forgotten_password_yields_when_its_reset_is_declined(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("> 1. La vecchia casella va cancellata?\nno\n> 2. Va aggiornato il numero in rubrica?\nsi, 051 209 4410\n",
     ANAGRAFICA),
    ("> 1. Desidera la chiusura della casella?\nno!\n> 2. Conferma l'alias sulla casella principale?\nsi\n",
     ANAGRAFICA),
    ("> 1. La casella va creata?\nsi\n> 2. Serve anche una casella PEC?\nno\n> 3. Va inserita nella lista?\nsi\n",
     LIFECYCLE),
    ("> 1. Va tolto l'inoltro?\nno\n> 2. Va sbloccato l'account?\nsi\n", PASSWORD),
])
def test_bare_answers_typed_under_each_quoted_question_answer_the_one_above(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("> 1. La casella va cancellata?\nno, ma resettate la password di Rossi\n> 2. Serve l'alias?\nsi\n", PASSWORD),
    ("> 1. La vecchia casella va cancellata?\nno\n> 2. Va aggiornato il numero in rubrica?\nsi\n\n"
     "Invece chiudete la lista del convegno, per favore.", LIFECYCLE),
    ("> 1. Va resettata la password?\nno\n> 2. Serve l'alias?\nsi\nPero la casella di Bianchi la chiudete voi?",
     LIFECYCLE),
    ("> 1. Should the mailbox be deleted?\nno\n> 2. Should we add the alias?\nyes\n"
     "Please reset the password of m.rossi@ateneo.example.it.", PASSWORD),
    ("> 1. Desidera la chiusura della casella?\nno!\n> 2. Conferma l'alias?\nsi\n"
     "PS: serve pero eliminare la lista del laboratorio.", LIFECYCLE),
])
def test_a_no_under_one_quoted_question_leaves_the_sender_s_own_request_asked(body: str, expected: Category) -> None:
    """Fail closed: a no declines only the quoted question right above it, never the sender's own new clause."""
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Premessa: password ≠ da resettare, la ricordo e funziona.", OTHER),
    ("password ≠ da resettare, ma l'account di Rossi va sbloccato.", PASSWORD),
    ("account ≠ da chiudere; chiudete la casella del convegno.", LIFECYCLE),
    ("password ≠ da resettare, please delete the list of the old project.", LIFECYCLE),
    ("password ≠ da resettare. Vi chiedo di eliminare la casella del convegno.", LIFECYCLE),
    ("la casella ≠ da chiudere: resettatemi la password, e scaduta.", PASSWORD),
])
def test_not_equal_written_for_not_denies_its_own_action_only(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ('Comment 1: "Please confirm that the list must be created and not only renamed."\n'
     "Response: we confirm: it must be created new.", LIFECYCLE),
    ('Comment 1: "Is a new list needed?"\nResponse: it must not be created.', OTHER),
])
def test_an_obligation_on_it_answering_a_quotation_fails_closed(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Solo se lunedi non riesce ad entrare, allora resettatele la password. Se entra, lasciate stare.", PASSWORD),
    ("Resettate la password di Rossi. Anzi no, lasciate stare.", OTHER),
    ("Chiudete la lista del convegno, no, lasciate stare.", OTHER),
])
def test_a_retraction_under_a_condition_is_the_other_branch_not_a_take_back(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # Only an answer wanted: what the message names is not asked...
    ("We want a list for the night nurses. Can a list include people from the ASL? No action yet, just the "
     "answer please.", OTHER),
    # ...but a privileged request in a clause of its own still is (fail closed).
    ("No action yet on the list, just the answer please. But delete the mailbox lab@ateneo.example.it today.",
     LIFECYCLE),
    ("Just the answer please; and please reset my password.", PASSWORD),
    ("Solo la risposta, grazie. Poi chiudete la casella lab@ateneo.example.it.", LIFECYCLE),
    ("Solo la risposta per la lista; la casella lab@ateneo.example.it invece la chiudete oggi.", LIFECYCLE),
    ("Per la lista solo la risposta, grazie; serve invece la chiusura della casella lab@ateneo.example.it.",
     LIFECYCLE),
    ("Only the answer for now. Chiediamo la cancellazione della casella lab@ateneo.example.it.", LIFECYCLE),
    ("No action yet, just the answer please. We need the mailbox lab@ateneo.example.it deleted.", LIFECYCLE),
    ("No action yet on the alias: the mailbox lab@ateneo.example.it must be deleted today.", LIFECYCLE),
])
def test_only_an_answer_wanted_asks_nothing_but_a_privileged_request_beside_it_counts(
        body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A request called off by naming it asks nothing...
    ("Update: no longer needed, so please cancel my quota request.", OTHER),
    # ...but an action asked after it, in the same sentence or the next, still counts (fail closed).
    ("Please cancel my quota request and delete the mailbox lab@ateneo.example.it.", LIFECYCLE),
    ("Please cancel my quota request and please delete the mailbox lab@ateneo.example.it.", LIFECYCLE),
    ("Please cancel my quota request, then delete the mailbox lab@ateneo.example.it.", LIFECYCLE),
    ("Please cancel my quota request and reset my password.", PASSWORD),
    ("Annullo la richiesta di quota e chiudete la casella lab@ateneo.example.it.", LIFECYCLE),
    ("Ritiro la richiesta e chiudete la lista corso@ateneo.example.it.", LIFECYCLE),
    ("Cancel the alias request; please close the list staff@ateneo.example.it.", LIFECYCLE),
    ("Please cancel my mailbox, I am retiring.", LIFECYCLE),
    ("Please cancel the forwarding to my gmail address.", ANAGRAFICA),
    # A verb of its own after "and" is read as a command: the withdrawal governs the infinitive it names, no more.
    ("Cancel my request to delete the list and delete the mailbox lab@ateneo.example.it.", LIFECYCLE),
    ("Annullate la mia richiesta di cancellare la lista e cancellate la casella lab@ateneo.example.it.", LIFECYCLE),
    ("Cancel my request to delete the list and the mailbox.", OTHER),
])
def test_a_request_called_off_by_name_leaves_the_next_request_standing(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A verb glossed by another before the forwarding: the forwarding is what stops, not the mailbox...
    ("Terapia sulla casella: inoltro verso la vecchia casella dell'universita.\nSospendere (STOP) l'inoltro da oggi.",
     ANAGRAFICA),
    # ...and a mailbox action asked beside it still counts (fail closed).
    ("Sospendere (STOP) l'inoltro e chiudete la casella m.rossi@ateneo.example.it.", LIFECYCLE),
    ("Sospendere (STOP) l'inoltro. Poi sospendete la casella m.rossi@ateneo.example.it.", LIFECYCLE),
    ("Stop the forwarding and please delete the account of the intern.", LIFECYCLE),
    ("Sospendere (STOP) l'inoltro; la casella m.rossi@ateneo.example.it va chiusa.", LIFECYCLE),
    ("Sospendere (STOP) l'inoltro, serve anche la disattivazione della casella m.rossi@ateneo.example.it.",
     LIFECYCLE),
])
def test_a_verb_glossed_before_the_forwarding_suspends_the_forwarding(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("Recommendation: please create p.nair@ospedale.example.it and add her to the directory.", LIFECYCLE),
    ("Il tecnico deve poter leggere la PEC radiologia@pec.example.it con le sue credenziali personali.", ANAGRAFICA),
])
def test_a_new_address_created_and_a_mailbox_read_with_own_credentials(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # "When you have time" lets the reader choose the moment: it asks, it does not ask when.
    ("Quando avete tempo, mi cambiate il titolo in rubrica?", ANAGRAFICA),
    ("Quando avete tempo, chiudete la casella lab@ateneo.example.it?", LIFECYCLE),
    ("Quando chiudete la casella di Rossi?", OTHER),
])
def test_when_you_have_time_asks_rather_than_asking_when(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A mailbox's signature said to show an old value still, its new text given: a change asked.
    ('La firma automatica della casella cup@example.it riporta ancora il vecchio orario.\nNuova firma:\n'
     '"CUP - Lun-Ven 8-13"', ANAGRAFICA),
    ("La firma digitale riporta ancora il vecchio certificato: la rinnovo io dal portale.", OTHER),
])
def test_a_signature_still_showing_an_old_value_asks_its_change(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("The mailbox, scheduled for June, must be closed now.", LIFECYCLE),
    ("The list, as agreed, should be deleted.", LIFECYCLE),
    ("Our mailbox, the one for the conference, has to be deactivated.", LIFECYCLE),
    ("Rossi's mailbox, sadly, needs to be deleted.", LIFECYCLE),
    ("This list, created for the 2025 conference, should now be closed.", LIFECYCLE),
    ("La lista, come d'accordo, va cancellata.", LIFECYCLE),
    ("The mailbox, as discussed with the head of department last week, must be deleted.", LIFECYCLE),
    ("The shared mailbox, after the project ended, needs to be closed.", LIFECYCLE),
    ("The mailbox, unfortunately, must urgently be suspended.", LIFECYCLE),
    ("The mailbox of the old lab, as I said on the phone, should now be closed.", LIFECYCLE),
    ("The mailbox, per our policy, has to be deactivated by Friday.", LIFECYCLE),
    ("The PEC mailbox, as requested by the director, must be deleted.", LIFECYCLE),
    ("Our list, ie the one for alumni, needs to be closed.", LIFECYCLE),
    ("The list, as agreed, should definitely be deleted.", LIFECYCLE),
    ("The mailbox, I think, should be closed.", LIFECYCLE),
    ("La casella, purtroppo, deve essere chiusa.", LIFECYCLE),
    ("La casella del convegno, come sapete, va eliminata.", LIFECYCLE),
    ("La lista, purtroppo, deve urgentemente essere chiusa.", LIFECYCLE),
    ("The account of the intern, who left in May, needs to be unblocked.", PASSWORD),
    ("The password of the lab account, as you know, must be reset.", PASSWORD),
    ("My password, unfortunately, needs to be reset.", PASSWORD),
    ("La password dell'account, come sapete, va reimpostata.", PASSWORD),
    ("Il suo account, purtroppo, va sbloccato.", PASSWORD),
])
def test_an_aside_or_an_adverb_before_the_obligation_leaves_it_owed(body: str, expected: Category) -> None:
    """Fail closed: words set off between commas, or an adverb after the modal, do not hide the obligation."""
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize("body", [
    "Does the mailbox, once expired, have to be deleted?",
    "The mailbox, as planned, will be closed in June.",
    "The list, as agreed, must not be deleted.",
    "The list, as you know, is due to be deleted in June.",
    "La lista, come d'accordo, non va cancellata.",
    "The password, as you know, must not be reset.",
    "Does the password, once expired, have to be reset?",
])
def test_an_aside_does_not_turn_a_question_a_schedule_or_a_denial_into_a_request(body: str) -> None:
    result = run(body)
    assert result.category is OTHER, result.reasons


@pytest.mark.parametrize("body", [
    "c'è un errore sulla casella quindi mi sbloccate l'account?",
    "c'è scritto \"account bloccato\" quindi potete sbloccarmi l'account?",
    "ci sono problemi con il login, percio mi sbloccate l'account?",
    "there is an error on my login, therefore could you unlock my account?",
    "QUIZ: cosa faccio?\na) aspetto\nb) mi sbloccate l'account ✅",
    "mi fate respawnare l'account pls?",
])
def test_an_opener_or_a_tick_before_a_new_clause_leaves_the_unlock_asked(body: str) -> None:
    assert category(body) is PASSWORD


@pytest.mark.parametrize("body", ["è possibile avere una casella per l'associazione? ce la fate?",
                                  "Can we get a new mailbox for the alumni office?"])
def test_whether_one_may_have_a_new_mailbox_asks_for_it(body: str) -> None:
    assert category(body) is LIFECYCLE


def test_a_topic_named_in_a_message_that_asks_for_nothing_is_no_request() -> None:
    assert category("Tutto funziona: casella, liste, rubrica.\nVolevo solo dirvi grazie!") is OTHER
    assert category("Volevo solo dirvi grazie. Rubrica: aggiornate il mio interno, e 4567.") is ANAGRAFICA


def test_a_member_found_inside_a_list_is_taken_out_in_gaming_words() -> None:
    assert category("Il vecchio segretario e ancora dentro la lista del coro.\nKickatelo pls") is ANAGRAFICA


@pytest.mark.parametrize(("body", "expected"), [
    # A no that turns to an action of its own on what the question named: that thing is still asked about (fail
    # closed), whatever the pronoun hides...
    ("> Do you want the mailbox deleted?\nno, but block it", LIFECYCLE),
    ("> 1. Do you want the mailbox deleted?\nno, but block it\n> 2. Update the phone?\nyes", LIFECYCLE),
    ("> Volete cancellare la casella?\nNo, ma piuttosto sospendetela.", LIFECYCLE),
    ("> Do you want the password reset?\nNo, but instead unlock it.", PASSWORD),
    # ...while a no that only thanks or keeps a thing of its own declines as before.
    ("> Do you want the mailbox deleted?\nNo, but thanks for asking.", OTHER),
    ("> Do you want the mailbox deleted?\nNo thanks.", OTHER),
])
def test_a_no_that_turns_to_another_action_keeps_the_question_asked(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A need or a wish on "it", the thing named before: asked for (fail closed), a schedule told before it or not.
    ("The list is scheduled to be closed; we need it closed now.", LIFECYCLE),
    ("The list corso@ateneo.example.it: we need it closed now.", LIFECYCLE),
    ("The mailbox of Rossi: we want it deleted.", LIFECYCLE),
    ("The list is fine, we do not need it closed.", OTHER),
])
def test_a_need_on_it_asks_for_the_thing_named_before(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A password change asked of the help desk in so many words is a reset asked for (fail closed)...
    ("Potete cambiare la password di Rossi?", PASSWORD),
    ("Cambiate la password di m.rossi@ateneo.example.it, per favore.", PASSWORD),
    ("Could you change the password of m.rossi?", PASSWORD),
    ("Please change my password.", PASSWORD),
    # ...not the sender's own change, a question of how, or a change refused.
    ("Vorrei cambiare la password: come faccio?", OTHER),
    ("Potete dirmi come cambiare la password?", OTHER),
    ("Non cambiate la password, funziona.", OTHER),
    ("I had to change my password yesterday, please update my phone in the directory.", ANAGRAFICA),
    # A new one given to someone named between the verb and the password: asked for; one told set is not.
    ("Please give m.rossi a new password.", PASSWORD),
    ("Mandate a Rossi una password nuova.", PASSWORD),
    ("Date al collega Rossi una nuova password provvisoria.", PASSWORD),
    ("Ho impostato ieri sera una nuova password, ora funziona.", OTHER),
    ("Please give m.rossi a new mailbox signature.", OTHER),
])
def test_a_password_change_asked_of_the_help_desk_is_a_reset(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A new one added or made, or a thing wanted done in so many words: asked for (fail closed)...
    ("Please add a new mailbox for the lab.", LIFECYCLE),
    ("Fate una nuova lista per il corso di chimica.", LIFECYCLE),
    ("Can we please have the list corso@ateneo.example.it removed?", LIFECYCLE),
    ("I'd like the mailbox old@ateneo.example.it gone by Friday.", LIFECYCLE),
    # ...not a member added, a thing wanted as it is, nor a ticket reopened.
    ("Please add a new member to the list of the lab.", ANAGRAFICA),
    ("We would like the list of the lab to stay as it is.", OTHER),
    ("Riaprite il ticket 123, la casella non va ancora.", OTHER),
])
def test_a_thing_wanted_new_or_done_in_so_many_words_is_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A new one made, given or needed in plain words is asked for (fail closed): a bare address with an indefinite
    # article for an office or a person, a verb of giving or making, a need said with "avere bisogno"...
    ("Serve un indirizzo per la segreteria del nuovo corso", LIFECYCLE),
    ("Ci serve un indirizzo per la segreteria", LIFECYCLE),
    ("Create me an address for the project", LIFECYCLE),
    ("Per favore create un indirizzo per il progetto", LIFECYCLE),
    ("Potreste attivare un indirizzo per il corso di laurea?", LIFECYCLE),
    ("Va attivato un indirizzo per il nuovo centro", LIFECYCLE),
    ("An address needs to be created for the project", LIFECYCLE),
    ("We need a new address for the office", LIFECYCLE),
    ("Please make a mailbox for the new secretary", LIFECYCLE),
    ("Make a mailbox for Anna please", LIFECYCLE),
    ("Make us a mailing list for the seminar", LIFECYCLE),
    ("Fate una casella per il nuovo collega", LIFECYCLE),
    ("Potete fare un indirizzo per il laboratorio?", LIFECYCLE),
    ("Assegnate una casella al nuovo dipendente", LIFECYCLE),
    ("Please assign an address to the new technician", LIFECYCLE),
    ("Give the new colleague a mailbox, please", LIFECYCLE),
    ("Please provide a mailbox for the new secretary", LIFECYCLE),
    ("Fornite una casella al nuovo dottorando", LIFECYCLE),
    ("Istituite una casella per il comitato etico", LIFECYCLE),
    ("Ci dareste un indirizzo per il convegno?", LIFECYCLE),
    ("Il collega ha bisogno di una casella", LIFECYCLE),
    ("Abbiamo bisogno di un indirizzo email per il convegno", LIFECYCLE),
    ("Il nuovo tecnico ha bisogno di un account", LIFECYCLE),
    # ...a new one taken up by a pronoun, and a closed one opened again by command.
    ("Could you please create one for him?", LIFECYCLE),
    ("Il tecnico non ha una casella. Potete fargliene una?", LIFECYCLE),
    ("The project has no mailbox yet. Can you make one?", LIFECYCLE),
    ("Riaprite la casella di Neri", LIFECYCLE),
    ("Riaprite la casella di Neri come da ticket 123.", LIFECYCLE),
    ("Per il ticket 123: chiudete la casella di Neri.", LIFECYCLE),
    ("Come da pratica 45, disattivate l'account di Rossi.", LIFECYCLE),
    ("Please close the mailbox mentioned in ticket 123.", LIFECYCLE),
    ("Eliminate la casella indicata nella segnalazione.", LIFECYCLE),
    # Not an address for someone, a thing sent there, another thing given, a need denied, a client opened again,
    # a full box's folder or copy (its quota).
    ("Mi serve un indirizzo per spedire il pacco", OTHER),
    ("Ho bisogno di un indirizzo per la spedizione dei badge", OTHER),
    ("Can you give me an address for the invoices?", OTHER),
    ("Please give me an address where I can send the form", OTHER),
    ("Please provide an account number for the payment", OTHER),
    ("Can you provide a mailbox size estimate?", OTHER),
    ("Fornite un elenco delle caselle attive", OTHER),
    ("Please give us an account of what happened", OTHER),
    ("Il collega ha bisogno di una mano con la casella", OTHER),
    ("Non ho bisogno di una casella", OTHER),
    ("Non riesco a riaprire la casella dopo il crash di Outlook", OTHER),
    ("Is it possible to give them a temporary mailbox, and who would have to request it?", OTHER),
    ("The mailbox is full. Can you make one of the folders smaller?", ANAGRAFICA),
    ("Ho una casella piena: potete farne una copia?", ANAGRAFICA),
    ("Grazie per aver creato la casella", OTHER),
    ("How do I create a mailbox?", OTHER),
    ("Please do not create the mailbox", OTHER),
])
def test_a_new_one_made_given_or_needed_in_plain_words_is_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # Ending a mailbox, an account or a list in plain words is asked for (fail closed): participles the verb's stem does
    # not give, after an obligation...
    ("La casella di Verdi va tolta.", LIFECYCLE),
    ("La casella m.verdi va rimossa.", LIFECYCLE),
    ("La casella m.verdi deve essere spenta.", LIFECYCLE),
    ("La PEC dell'ufficio gare va dismessa.", LIFECYCLE),
    ("La mailing list del corso va soppressa.", LIFECYCLE),
    ("Va spenta la casella della segreteria.", LIFECYCLE),
    # ...taking away, switching off, wiping...
    ("Togliete la casella m.verdi.", LIFECYCLE),
    ("Bisogna togliere la casella di Rossi.", LIFECYCLE),
    ("Levate la casella di Verdi.", LIFECYCLE),
    ("Can you wipe the account of m.rossi?", LIFECYCLE),
    ("Wipe the account of m.rossi.", LIFECYCLE),
    ("Please switch off the old project mailbox.", LIFECYCLE),
    ("Can you turn off the inbox for the old project?", LIFECYCLE),
    ("Take down the old project mailbox, please.", LIFECYCLE),
    # ...an address named as such, the credentials or the login of a person...
    ("Could you remove the address m.verdi@ateneo.example.it?", LIFECYCLE),
    ("L'indirizzo m.verdi@ateneo.example.it va eliminato.", LIFECYCLE),
    ("Serve disattivare l'indirizzo di Verdi.", LIFECYCLE),
    ("Disattivate le credenziali di Verdi.", LIFECYCLE),
    ("Le credenziali di Verdi vanno disattivate.", LIFECYCLE),
    ("Please disable m.rossi's login.", LIFECYCLE),
    # ...and access revoked or taken away.
    ("Revocate l'accesso di Bianchi alla casella.", LIFECYCLE),
    ("Toglietegli l'accesso alla casella.", LIFECYCLE),
    ("Va tolto l'accesso di Bianchi alla casella condivisa.", LIFECYCLE),
    ("Please revoke m.rossi's mail access.", LIFECYCLE),
    ("Revoke m.rossi's mail access.", LIFECYCLE),
    ("Please revoke m.rossi's access to the mailbox.", LIFECYCLE),
    # A password set back to nothing is a reset asked for.
    ("Potreste azzerare la password di Verdi?", PASSWORD),
    ("Azzerate la password di Verdi.", PASSWORD),
])
def test_ending_a_mailbox_in_plain_words_is_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # The same words denied, told done, or said of a directory entry, a member, another system or a counter ask nothing.
    ("La casella di Verdi non va tolta.", OTHER),
    ("La casella m.verdi non va rimossa.", OTHER),
    ("Togliete la casella m.verdi dalla rubrica.", ANAGRAFICA),
    ("Togliete Rossi dalla rubrica.", ANAGRAFICA),
    ("Nella lista tecnici-lab vanno tolti Marco Fiorini e Sara Landi.", ANAGRAFICA),
    ("Non disattivate le credenziali di Verdi, e rientrato.", OTHER),
    ("Non revocate l'accesso di Bianchi alla casella.", OTHER),
    ("Please revoke m.rossi's VPN access.", OTHER),
    ("Was m.rossi's mail access revoked?", OTHER),
    ("Non azzerate la password, funziona.", OTHER),
    ("Potete azzerare il contatore delle stampe?", OTHER),
    ("I turned off the phone, then the mailbox worked.", OTHER),
    ("The mailbox was deleted yesterday, thanks.", OTHER),
    ("How do I delete a mailbox?", OTHER),
])
def test_plain_words_for_ending_denied_or_told_ask_nothing(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # "Nothing to do" on one step of a plan speaks for that step: the next step still asks.
    ("Piano di migrazione, fasi per voi:\n  T-1  (lun 12/04) nessuna azione help desk\n  T-0  (mar 13/04, ore 18) "
     "disattivare la casella vecchia@example.org\n  T+5  verifica finale", LIFECYCLE),
    ("Passi:\n- lista docenti: nessun intervento per ora\n- entro venerdi 16 aprile eliminare la casella "
     "rossi@example.org", LIFECYCLE),
    ("Fasi:\n1) lunedi: nessuna azione da parte vostra\n2) martedi mattina, dopo le 9: resettare la password di "
     "m.bianchi@example.org", PASSWORD),
    # ...while the list's last word for the reader still speaks for the message: the timeline above only tells.
    ("Cronologia\n  15:00  due utenti chiedono il reset della password\n\nAzioni\n  AC-1  Facility: batterie\n"
     "  AC-2  Help desk: nessuna azione, ve lo mando solo per conoscenza", OTHER),
    ("Fasi:\n  T-1  nessuna azione\n  T-0  verifica con l'archivio", OTHER),
    # Mail that came to the help desk's own mailbox is no forwarding asked of it.
    ("Delle 14 schede inoltrate alla vostra casella, per 5 non e arrivata la presa in carico.", OTHER),
    ("Potete inoltrare la mia posta al collega Neri?", ANAGRAFICA),
])
def test_a_word_on_one_item_of_a_list_speaks_for_that_item(body: str, expected: Category) -> None:
    assert category(body) is expected


@pytest.mark.parametrize(("body", "expected"), [
    # A ticket record's closing code is a field of the record, no closing of the mailbox named before it...
    ("Esito: richiesta passata alla casella del servizio posta.\nCodice chiusura: INOLTRATO", OTHER),
    # ...while a closing asked beside it is still asked (fail closed).
    ("Codice chiusura: INOLTRATO. Chiudete la casella rossi@example.org.", LIFECYCLE),
    ("Esito: inoltrata alla casella del servizio. Codice chiusura 12. Vi chiediamo la chiusura della casella di "
     "Rossi.", LIFECYCLE),
    ("Codice di chiusura: OK; la casella bianchi@example.org va chiusa.", LIFECYCLE),
    ("Closing code: 7. Please delete the mailbox of Tom Berg.", LIFECYCLE),
    ("La casella del servizio, codice chiusura 44: la chiudete entro venerdi.", LIFECYCLE),
    ("Casella del servizio posta, codice chiusura INOLTRATO. Serve la disattivazione della casella "
     "neri@example.org.", LIFECYCLE),
])
def test_a_ticket_closing_code_closes_no_mailbox(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected
    if expected is OTHER:  # no privileged evidence left below the threshold either
        assert result.privileged_evidence is None


@pytest.mark.parametrize(("body", "expected"), [
    # A password wanted in the state a reset leaves it in, in English, asks the reset.
    ("I need my password changed, I think someone saw me typing it.", PASSWORD),
    ("We'd like the intern's password reset before Monday.", PASSWORD),
    ("I don't need my mailbox closed, but I need my password changed.", PASSWORD),
    # One more mailbox, asked as whether one may have it, is a new one.
    ("Posso avere una seconda casella per le attivita del progetto?", LIFECYCLE),
    ("Can I get a second mailbox for the lab?", LIFECYCLE),
    # A mailbox switched on again is reactivated.
    ("Riaccendete la casella della segreteria, era stata spenta per errore.", LIFECYCLE),
    # Members put into a list, or swapped in it, and access given with one's own credentials are attributes.
    ("Il nuovo indirizzo del prof. Neri va messo nella lista del consiglio al posto del vecchio.", ANAGRAFICA),
    ("La lista dei tutor va aggiornata: esce Neri ed entra Galli.", ANAGRAFICA),
    ("Occorre dare al collega l'accesso alla casella condivisa del laboratorio, con le sue credenziali.", ANAGRAFICA),
])
def test_wanted_states_second_boxes_and_list_swaps_are_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    ("I don't need my password changed, it works.", OTHER),
    ("I needed my password changed last year and it went fine.", OTHER),
    ("Ho riacceso il computer ma la casella non si apre.", OTHER),
    ("La seconda casella non funziona.", OTHER),
    ("Ho messo in copia la lista docenti.", OTHER),
    ("La lista docenti non funziona: quando entra un messaggio esce un errore.", OTHER),
])
def test_the_same_words_told_or_denied_ask_nothing(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A numbered or lettered item is a clause of its own, as after "2." or "- ": a denial on one item does not
    # reach the action of the next (fail closed).
    ("Buongiorno,\n1) nessuna azione da parte vostra\n2) resettare la password di m.rossi", PASSWORD),
    ("Cose da fare:\na) nessuna modifica\nb) chiudere la casella m.verdi", LIFECYCLE),
    ("To do:\n1) nothing on the list\n2) delete the mailbox m.verdi", LIFECYCLE),
    # Within an item the denial still holds.
    ("Vi chiedo:\n1) di non chiudere la casella m.verdi\n2) di aggiornare il telefono", ANAGRAFICA),
    ("1) aggiornate il mio telefono\n2) niente altro", ANAGRAFICA),
])
def test_a_numbered_item_is_a_clause_of_its_own(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A privileged request told as made before is asked again by a go-ahead or a not-yet (fail closed).
    ("Vi ho chiesto ieri di resettare la password, fatelo per favore.", PASSWORD),
    ("Vi avevo chiesto di chiudere la casella m.verdi, procedete pure.", LIFECYCLE),
    ("I had asked for the deletion of the list x, please go ahead.", LIFECYCLE),
    ("Vi avevo chiesto la chiusura della casella m.verdi la settimana scorsa, ma non è ancora stata fatta.",
     LIFECYCLE),
    ("Sollecito: la settimana scorsa avevo chiesto il reset della password di m.rossi, ancora nulla.", PASSWORD),
    ("I asked for the deletion of the list x two weeks ago and it is still there.", LIFECYCLE),
    # Told as done, withdrawn, or followed by another request, it is not asked again.
    ("Avevo chiesto il reset della password, ora funziona, grazie.", OTHER),
    ("Vi avevo chiesto di chiudere la casella m.verdi: non procedete, serve ancora.", OTHER),
    ("I had asked for the deletion of the list x; it is done, thanks.", OTHER),
    ("Avevo chiesto la chiusura della casella, ora aggiornate il mio numero di telefono in rubrica.", ANAGRAFICA),
    # Asked before by someone else, a go-ahead makes it the sender's own request; told or stopped, it is not.
    ("Un collega vi ha chiesto di chiudere la casella m.verdi: procedete pure.", LIFECYCLE),
    ("My colleague has asked you to delete the list x, please go ahead.", LIFECYCLE),
    ("Un collega vi ha chiesto di chiudere la casella m.verdi, ma non procedete: serve ancora.", OTHER),
    ("La lista che Giorgio vi ha chiesto di creare funziona benissimo, grazie.", OTHER),
])
def test_a_request_told_as_made_before_is_asked_again_by_a_go_ahead(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # Plain privileged requests once read as other (fail-open), rules alone:
    # a demonstrative standing for a password named in the sentence before, "quella della casella X";
    ("La password della casella istituzionale funziona. Vi chiediamo di reimpostare quella della casella del "
     "protocollo.", PASSWORD),
    ("La password dell'account del direttore e a posto; vi chiedo di sbloccare quello della segretaria.", PASSWORD),
    # a mailbox or list that has to "go", or "sparire";
    ("The distribution list needs to go", LIFECYCLE),
    ("the old mailbox has to go", LIFECYCLE),
    ("this list can go now", LIFECYCLE),
    ("La vecchia lista del convegno deve sparire.", LIFECYCLE),
    ("We need the test list gone.", LIFECYCLE),
    # a "box" that is someone's or an office's is their mailbox;
    ("cancellate il box di Verdi", LIFECYCLE),
    ("occorre un box per la segreteria", LIFECYCLE),
    # a user name with no domain after a delete is the mailbox;
    ("vi chiedo di cancellare l'indirizzo m.verdi", LIFECYCLE),
    # an obligation on a given password is a reset;
    ("La password di Verdi va cambiata", PASSWORD),
    ("Anna's password must be changed.", PASSWORD),
    ("Please change Verdi's password.", PASSWORD),
    ("Potete cambiarmi la password?", PASSWORD),
    # "get" someone a mailbox is a new one (not a password);
    ("get Anna a mailbox", LIFECYCLE),
    # a mailbox cut off, restored or reopened in plain words.
    ("Potete staccare la casella di Verdi?", LIFECYCLE),
    ("ripristinate la casella m.verdi", LIFECYCLE),
    ("bisogna riaprire la casella", LIFECYCLE),
    ("Please unsuspend my mailbox.", LIFECYCLE),
])
def test_plain_privileged_requests_once_read_as_other_are_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # Everyday idioms and learners' English name the privileged operations.
    # "Rifare" a password is a reset, by command or asked of the reader.
    ("Mi rifate la password della casella del magazzino? Non entro piu.", PASSWORD),
    ("Rifate la password di g.neri@ateneo.example.it, per favore.", PASSWORD),
    # The beneficiary between the verb and its object, as Italians write English.
    ("Could you please reset me the password? I can't get in since Friday.", PASSWORD),
    # A first password that never came for an existing mailbox is a reset.
    ("My account is ready but the first password never arrived. Can you send it again?", PASSWORD),
    ("Non ho mai ricevuto la password della casella nuova.", PASSWORD),
    # An email set up or opened for a newcomer named by the job, or a bare mailbox for one, is a new mailbox.
    ("Can you set up an email for the new driver? He starts next week.", LIFECYCLE),
    ("We would need to open a new mail for the stores office, something like stores@ateneo.example.it.", LIFECYCLE),
    ("Casella per la nuova cuoca, grazie. Comincia lunedi.", LIFECYCLE),
    # A personal address asked for someone who uses another's mailbox is a new mailbox.
    ("Il tirocinante usa la mia casella. Serve un indirizzo suo, p.neri@ateneo.example.it.", LIFECYCLE),
    # "Fare fuori" and "togliere di mezzo" a mailbox delete it; a run of addresses with one domain is read whole.
    ("Fate fuori la casella del vecchio magazzino, non la usa piu nessuno.", LIFECYCLE),
    ("Ho trovato la casella fiera2020@ateneo.example.it. La fiera e finita: potete toglierla di mezzo?", LIFECYCLE),
    ("Sospendete stage1@ e stage2@ateneo.example.it da domani.", LIFECYCLE),
    # An unblock after the password was got wrong is a password unlock.
    ("Mi sbloccate la casella di Rossi? Ha sbagliato la password tre volte stamattina.", PASSWORD),
    # The same idiom on a list member keeps the category of its object.
    ("Fate fuori il collega Bassi dalla lista turni@ateneo.example.it, la sua casella resta.", ANAGRAFICA),
])
def test_everyday_idioms_for_the_operations_are_asked_for(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # The same words as a rule of the service, another sense, a place or a going on ask for nothing.
    ("La password va cambiata ogni 90 giorni.", OTHER),  # a policy, not a request
    ("Ogni quanto va cambiata la password?", OTHER),  # a question on the policy
    ("Passwords must be changed every 90 days.", OTHER),
    ("Il box di ricerca non funziona in webmail.", OTHER),  # a box on a screen
    ("Nella box delle impostazioni non trovo la voce firma.", OTHER),
    ("Il box in basso a destra mostra un errore.", OTHER),  # no owner named
    ("The list can go on as it is.", OTHER),  # going on, not going away
    ("The old mailbox has to go through the migration first?", OTHER),
    ("My mailbox is slow and I have to go.", OTHER),  # the sender goes
    ("Potete ripristinare le mail cancellate dalla cartella archivio?", OTHER),  # messages restored
    ("Cancellate l'indirizzo a cui scrivevo, e sbagliato nel modulo.", OTHER),  # no user name
    ("I get a mailbox full warning every morning.", ANAGRAFICA),  # nobody named to get one: its quota
])
def test_plain_words_for_privileged_actions_in_another_sense_ask_nothing(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # The same words on another object, told as done, or asked about, ask nothing privileged.
    ("Rifate la firma della casella con il logo nuovo, per favore.", OTHER),
    ("Ho rifatto la password ieri sera e ora funziona.", OTHER),
    ("Please reset me the phone settings, the app froze.", OTHER),
    ("The password arrived this morning by SMS, thanks.", OTHER),
    ("I need to open a new mail but Outlook freezes every time.", OTHER),
    ("Could you create an email for the new regulations page?", OTHER),
    ("La casella per il nuovo autista funziona, grazie.", OTHER),
    ("Fate fuori le mail vecchie dalla casella, per favore.", OTHER),
    ("Mi serve un indirizzo suo per spedirgli il contratto.", OTHER),
    ("La casella del bando serve ancora: non toglietela di mezzo.", OTHER),
])
def test_the_same_idioms_on_other_objects_or_told_ask_nothing_privileged(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


# -- Threads with the help desk (sentences written for these tests) ---------------------------------------

DESK_WHICH_QUESTION = ("\n\nIl giorno mar 9 mar 2027 Help Desk <helpdesk@example.it> ha scritto:\n"
                       "> Gentile utente,\n> quale casella va disattivata? Nel messaggio ne cita due.\n"
                       "> Help Desk\n")


@pytest.mark.parametrize(("body", "expected"), [
    # A demonstrative naming the thing the quoted which-question asks for adopts the question's action.
    ("Quella del vecchio laboratorio di ottica." + DESK_WHICH_QUESTION, LIFECYCLE),
    # A bare address, and the office it is for, answer it too.
    ("lab.ottica@ateneo.example.it, grazie." + DESK_WHICH_QUESTION, LIFECYCLE),
    ("Per il Servizio Orientamento; l'altra resta." + DESK_WHICH_QUESTION, LIFECYCLE),
    # An English which-question answered by "the one of ...": the unlock it names is asked.
    ("The one of our secretary, g.neri@ateneo.example.it.\n\nOn Tue, Help Desk wrote:\n"
     "> Which account should be unlocked? Your message names none.\n", PASSWORD),
    # A number answering which number goes in the directory is a directory change.
    ("Il 051 209 7788, quello dell'ufficio.\n\nIl giorno mar Help Desk ha scritto:\n"
     "> Quale numero va inserito in rubrica accanto al Suo nome?\n", ANAGRAFICA),
    # A negation, a "for now" or a question of the sender's own names no object: nothing is adopted.
    ("Quella non serve più, ma lasciatela stare." + DESK_WHICH_QUESTION, OTHER),
    ("Per il momento nessuna, ne parlo con il direttore." + DESK_WHICH_QUESTION, OTHER),
    ("Quella di Verdi? Non ricordo, vi faccio sapere." + DESK_WHICH_QUESTION, OTHER),
    # A question that does not ask which one is not answered by naming a thing.
    ("Quella del laboratorio.\n\nIl giorno mar Help Desk ha scritto:\n> La casella va disattivata entro venerdì?\n",
     OTHER),
])
def test_an_answer_naming_the_object_of_a_quoted_which_question_adopts_its_action(body: str,
                                                                                 expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # Answers typed under each quoted question with a blank line between still answer the one above.
    ("Rispondo sotto.\n\n> 1) Quale lista va chiusa?\n\nQuella del convegno 2025.\n\n"
     "> 2) La lista del convegno 2026 resta?\n\nSì, resta.\n", LIFECYCLE),
    ("> 1) Il nome da visualizzare è Laura Conti?\n\nSì, senza titolo.\n\n> 2) La vecchia casella va chiusa?\n\n"
     "No, resta attiva.\n", ANAGRAFICA),
])
def test_answers_under_quoted_questions_may_stand_a_blank_line_below_them(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # An address with its domain left out is one word: the frame around it still reads.
    ("Le liste (corso-estivo-2025@ e tutor-estivi-2025@) si possono eliminare: il corso è finito.", LIFECYCLE),
    # A request someone else had made, told in the pluperfect, is a report...
    ("La lista che il direttore vi aveva chiesto di creare funziona bene, grazie.", OTHER),
    # ...asked again when a go-ahead or a not-yet goes with it.
    ("Il direttore vi aveva chiesto la chiusura della lista del convegno: non è ancora stata fatta.", LIFECYCLE),
    # The ticket closed is not a mailbox named after it; a mailbox coordinated with it is.
    ("Potete chiudere il ticket: la casella del laboratorio adesso funziona.", OTHER),
    ("Chiudete il ticket e anche la lista del convegno.", LIFECYCLE),
    # The help desk's inability taken note of asks nothing; a request after it still asks.
    ("Capisco che non potete creare caselle per gli ospiti, nessun problema.", OTHER),
    ("I understand that you cannot create mailboxes for guests. Could you add Dr Lee to the list "
     "guests@ateneo.example.it?", ANAGRAFICA),
    ("I understand that you cannot create it, but please create the mailbox anyway.", LIFECYCLE),
])
def test_reports_around_a_ticket_ask_nothing_but_a_request_beside_them_counts(body: str, expected: Category) -> None:
    result = run(body)
    # The net's weak evidence is refused by the pipeline (fail closed), not by its category.
    got = result.privileged_evidence if result.category is OTHER and result.privileged_evidence else result.category
    assert got is expected, result.reasons


# -- Thread answers, a forwarded request taken up, idioms, hedges (sentences written for these tests) ------

HD_IT = "\n\nIl giorno lun 4 gen 2027, Helpdesk <helpdesk-posta@servizi.example.it> ha scritto:\n"
HD_EN = "\n\nOn Mon, Jan 4, 2027 at 9:12 AM Helpdesk <helpdesk-posta@servizi.example.it> wrote:\n"


@pytest.mark.parametrize(("body", "expected"), [
    # A warmer yes still answers the quoted question: it asks for what the question names.
    ("Ok grazie" + HD_IT + "> Vuole che sblocchiamo il suo account?\n", PASSWORD),
    ("Assolutamente sì." + HD_IT + "> La casella va cancellata definitivamente?\n", LIFECYCLE),
    ("Esattamente così." + HD_IT + "> Quindi va creata una nuova lista per il corso di dottorato?\n", LIFECYCLE),
    # A quoted paragraph asking a confirmation without a "?" is answered like a question.
    ("Per me va bene." + HD_IT + "> Per chiudere la lista serve una Sua conferma.\n", LIFECYCLE),
    ("Confirmed." + HD_EN + "> Please confirm that the list alumni-2019 should be deleted.\n", LIFECYCLE),
    # ...but an acknowledgement that asks nothing is not: thanks for a done deed stay thanks.
    ("Perfetto, grazie!" + HD_IT + "> La casella è stata disattivata come richiesto.\n", OTHER),
    # The desk's own action asked about ("should we delete?") is asked by a yes to that sentence.
    ("yes, the old one" + HD_EN + "> Which mailbox should we delete, the old one or the new one?\n", LIFECYCLE),
    # Both, an ordinal, the sender's own, or the object named again answer a which- or either-or question.
    ("Tutte e due." + HD_IT + "> Quali liste vanno eliminate, la lista-a o la lista-b?\n", LIFECYCLE),
    ("Entrambe, grazie." + HD_IT + "> Vanno chiuse entrambe le caselle o solo quella del laboratorio?\n", LIFECYCLE),
    ("Il mio, m.rossi@ateneo.example.it." + HD_IT + "> Di quale account va resettata la password?\n", PASSWORD),
    ("La lista dei dottorandi 2024." + HD_IT + "> Ci può dire quale lista desidera cancellare?\n", LIFECYCLE),
    # The same answers to a non-privileged question ask the non-privileged change.
    ("Tutte e due." + HD_IT + "> Quali alias vanno aggiunti, nome.cognome o n.cognome?\n", ANAGRAFICA),
    # A no still declines.
    ("No, lasciatela attiva." + HD_IT + "> Dobbiamo eliminare la lista convegno2025@ateneo.example.it?\n", OTHER),
])
def test_probe20_bare_answers_to_the_desks_quoted_question(body: str, expected: Category) -> None:
    result = run(body)
    # The net's weak evidence is refused by the pipeline (fail closed), not by its category.
    got = result.privileged_evidence if result.category is OTHER and result.privileged_evidence else result.category
    assert got is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A forwarded request said to hold for the sender too is adopted.
    ("Anche per me, grazie.\n\n----- Messaggio inoltrato -----\nDa: Laura Bianchi\n\n"
     "Mi resettate la password? Non riesco ad entrare.\n", PASSWORD),
    ("Me too please.\n\n---------- Forwarded message ---------\nFrom: Jane Doe\n\n"
     "Please close my mailbox, I'm leaving the university.\n", LIFECYCLE),
    # ...and so is a non-privileged one; a forwarded thanks asks nothing.
    ("Anche per me, grazie.\n\n----- Messaggio inoltrato -----\nDa: Laura Bianchi\n\n"
     "Aggiungetemi alla lista seminari per favore.\n", ANAGRAFICA),
    ("Idem, grazie anche da parte mia.\n\n----- Messaggio inoltrato -----\nDa: Laura Bianchi\n\n"
     "Grazie per aver sbloccato l'account così velocemente!\n", OTHER),
])
def test_probe20_a_forwarded_request_taken_up_for_the_sender(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # Idioms for creating, retiring, pausing and bringing back a mailbox or a list.
    ("Please stand up a mailing list for the new PhD cohort.", LIFECYCLE),
    ("We'd like to sunset the mailbox alumni-office@ateneo.example.it at the end of the month.", LIFECYCLE),
    ("Please pull the plug on the project mailbox.", LIFECYCLE),
    ("Mettete in stand-by la casella del laboratorio fino a settembre.", LIFECYCLE),
    ("Mettete in pausa la casella della dott.ssa Neri durante la maternità.", LIFECYCLE),
    ("Ibernate la casella del progetto fino al prossimo bando.", LIFECYCLE),
    ("Scongelate pure la casella del laboratorio, il progetto riparte.", LIFECYCLE),
    ("Please unfreeze my mailbox, I'm back from leave.", LIFECYCLE),
    ("Please reinstate the mailbox of Dr Lee, her contract was renewed.", LIFECYCLE),
    ("Riesumate la casella del vecchio laboratorio, ci serve di nuovo.", LIFECYCLE),
    ("Rimettete in vita la casella di Bianchi, è rientrata.", LIFECYCLE),
    ("Mandate in pensione la casella del vecchio ufficio.", LIFECYCLE),
    ("Tirate su una casella per il nuovo master.", LIFECYCLE),
    ("Can you get me a new password? Mine doesn't work any more.", PASSWORD),
    # The same words said of other things, or told, ask nothing privileged.
    ("We are winding down for the holidays: when is the help desk closed?", OTHER),
    ("Il progetto è in stand-by, ma la casella resta com'è.", OTHER),
    ("Il prof. Verdi va in pensione a marzo, la sua casella resta attiva.", OTHER),
])
def test_probe20_idioms_for_the_operations(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A request hedged as a question or a wish asks.
    ("Is there any chance you could create a mailbox for our new postdoc?", LIFECYCLE),
    ("Non è che potreste eliminare la lista del convegno?", LIFECYCLE),
    ("Vi dispiacerebbe disattivare la casella di Bianchi?", LIFECYCLE),
    # "Non è che" denying a need still denies.
    ("Non è che mi serva il reset: volevo solo sapere come si cambia la password.", OTHER),
])
def test_probe20_hedged_requests(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


# -- Everyday verbs and the English varieties' own turns (sentences written for these tests)

@pytest.mark.parametrize(("body", "expected"), [
    # A negative hedge asking someone to switch a mailbox back on, the verb split around its object.
    ("I don't suppose someone could switch the old seminar mailbox back on for the spring?", LIFECYCLE),
    ("Please turn the intern's account off from Friday.", LIFECYCLE),
    # "Bring back" with the object between, or with a holder of three words.
    ("Could you bring the choir list back for the new season?", LIFECYCLE),
    ("Please bring back Anna Maria Rossi's mailbox, she is back from leave.", LIFECYCLE),
    # Indian English "mail ids" are mailboxes.
    ("Kindly create mail ids for the two new project fellows and do the needful.", LIFECYCLE),
    # A first password still to come for an existing mailbox is a reset.
    ("The mailbox is active but I am yet to receive the password for it.", PASSWORD),
    ("I have not yet received my initial password, kindly assist.", PASSWORD),
    # Asking "if it would be possible" after "I would like to ask you" is a polite request.
    ("I would like to ask you if it would be possible to reactivate my old student mailbox.", LIFECYCLE),
    # A paused mailbox or one put on hold is a suspension; "make that ... is paused" lays it down as a state.
    ("Could you please make that the account of our exchange student is paused until March?", LIFECYCLE),
    ("The visitor's mailbox should be put on hold from January, not deleted.", LIFECYCLE),
    ("Please pause the mailbox of the guest lecturer while she is away.", LIFECYCLE),
    # Unfreezing a mailbox named with a short name before it is an unblock.
    ("Please unfreeze the workshop mailbox, the audit is over.", LIFECYCLE),
    # Mailboxes that need to be made are to be created.
    ("Two mailboxes need to be made for the incoming fellows.", LIFECYCLE),
    # A verbless need for a newcomer written "post-doc", or for a new password, closed by a thanks.
    ("Casella per il nuovo post-doc, grazie.", LIFECYCLE),
    ("Nuova password per la casella condivisa portineria@ateneo.example.it, grazie.", PASSWORD),
    # "Can go" said of a mailbox whose address stands between commas.
    ("The mailbox of the old project, proj-x@ateneo.example.it, can go now.", LIFECYCLE),
])
def test_everyday_verbs_and_varieties_turns_ask_for_the_operations(body: str, expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # The same words on another object, or told as done, ask nothing privileged.
    ("I switched my phone back on and the mailbox synced again.", OTHER),
    ("Please bring the projector back to room 4.", OTHER),
    ("Please put my call on hold and ring me back.", OTHER),
    ("The shared mailbox needs to be made bigger before the exams.", OTHER),  # made into something: no creation
    ("I am yet to receive the invoice for the licence.", OTHER),
    ("La nuova password per la casella e arrivata, grazie.", OTHER),
    ("Nuova password per la casella: funziona, grazie.", OTHER),
    ("The mailbox of the project, proj-x@ateneo.example.it, can go on as it is.", OTHER),
    # A question whether it would be possible, with nothing asked now, stays a question.
    ("Can you tell me if it would be possible to reactivate a mailbox later? I am not asking anything now.", OTHER),
    # A password told expired and already changed by the sender yields to the request beside it.
    ("My password expired in May but I already changed it myself. Could you add the alias l.rossi@ateneo.example.it?",
     ANAGRAFICA),
    # "Change it" after a display name named between is no password change.
    ("The password works but the display name is wrong, can you change it?", ANAGRAFICA),
])
def test_the_same_everyday_verbs_on_other_objects_or_told_ask_nothing_privileged(body: str,
                                                                                 expected: Category) -> None:
    result = run(body)
    assert result.category is expected, result.reasons


@pytest.mark.parametrize(("body", "expected"), [
    # A password changed at the system's demand, which one was set not remembered, and a
    # new one asked with "me ne date": a reset.
    ("Il portale mi ha obbligato a cambiare la password a gennaio e ora non ricordo più quale ho scelto. "
     "Me ne date una nuova?", PASSWORD),
    # ...not a mailbox one does not remember, nor a new signature asked with the same words.
    ("La password va bene, non ricordo però quale casella ho usato per il modulo.", OTHER),
    ("La password funziona; la firma l'ho cancellata per sbaglio, me ne date una nuova?", OTHER),
    # A new address needed for a thesis student or a postdoc is a creation; the address of one is not.
    ("Avrei bisogno di un indirizzo per il mio laureando, che lavora in un'azienda esterna.", LIFECYCLE),
    ("Mi serve l'indirizzo della laureanda per mandarle le correzioni.", OTHER),
    # A visitor's account extended to a date past its expiry is a postponed end; a quota extended is not.
    ("My visiting account ends in April: could you extend the account until the end of August?", LIFECYCLE),
    ("Could you extend the mailbox quota until the end of August?", ANAGRAFICA),
    # A removed course mailbox wanted back in business, or set up again, is made again; a phone set up is not.
    ("The tutoring mailbox was closed after the summer. We need the tutoring mailbox back in business "
     "for the new term.", LIFECYCLE),
    ("The shared mailbox disappeared from my phone after the update. Can you set it up again?", OTHER),
    # The ownership of a list passed on; the displayed name changed by an obligation; a line added to a signature.
    ("Dal mese prossimo vi chiedo di passare la proprietà della lista seminari@ateneo.example.it al dott. Riva.",
     ANAGRAFICA),
    ("Sulla casella della biblioteca va cambiato il nome che compare nelle risposte.", ANAGRAFICA),
    ("Nella firma della casella del dottorato andrebbe aggiunto il numero di telefono della segreteria.",
     ANAGRAFICA),
    # A creation and a reset had done by someone else, told in the past, ask for nothing.
    ("La collega mi aveva fatto creare la casella per il progetto e la password me l'aveva fatta resettare lei: "
     "ora funziona tutto, grazie.", OTHER),
    # Whether it is normal that a mailbox was closed is a question on what happened.
    ("È normale che la casella di un dottorando venga disattivata a fine corso? Non so cosa rispondergli.", OTHER),
])
def test_teaching_staff_requests_and_reports(body: str, expected: Category) -> None:
    result = run(body)
    # The net's weak evidence is refused by the pipeline (fail closed), not by its category.
    got = result.privileged_evidence if result.category is OTHER and result.privileged_evidence else result.category
    assert got is expected, result.reasons
